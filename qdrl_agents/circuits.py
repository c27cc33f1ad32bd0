"""Variational quantum circuits for policies: a validated spec in, a Qiskit circuit out.

The circuits follow paper Sec. III-D1: each layer is an angle-encoding block (data
re-uploading), a rotational block (RY-RZ or U3 on every qubit, the paper's
:math:`U_{rot}`) and an entanglement block (:math:`U_{ent}`: linear, circular, all-to-all or the
paper's parallel-CNOT brickwork, with CNOT or CZ). An optional last rotational block follows the
final layer. The readout is Pauli-Z on every qubit, or Z...Z parities over groups of qubits.

The circuit is *linear in its parameters*: every gate angle is one parameter of either the
``inputs`` vector (encoding angles) or the ``weights`` vector (trainable rotation angles).
Observation squashing, trainable input scaling (angle = lambda * x per layer and qubit) and
output scaling live in torch, on top of an executor (:mod:`qdrl_agents.executors`).

Layout, for ``n_qubits=n``, ``n_layers=L``, ``n_inputs=m``, ``k`` angles per rotation block
(2 for ``"ryrz"``, 3 for ``"u3"``):

=====================  ===========================================================
``inputs[l*m + i]``    encoding angle of input ``i`` (on qubit ``i``) in layer ``l``
                       (``l = 0`` only when ``reupload=False``)
``weights[(l*n + q)*k + j]``  angle ``j`` of the rotation on qubit ``q`` in layer ``l``;
                       ``l = L`` is the final rotation block when ``final_rotation``
=====================  ===========================================================

Example:
    >>> built = build_circuit(CircuitSpec(n_qubits=4, n_layers=5))
    >>> built.n_input_params, built.n_weights, built.n_outputs
    (20, 48, 4)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit
from qiskit.quantum_info import Pauli, SparsePauliOp

__all__ = [
    "ENCODINGS",
    "ENTANGLEMENTS",
    "ENTANGLERS",
    "READOUTS",
    "ROTATIONS",
    "BuiltCircuit",
    "CircuitSpec",
    "build_circuit",
    "circuit_from_qiskit",
    "entangling_pairs",
    "to_observables",
]

ROTATIONS: tuple[str, ...] = ("ryrz", "u3")
ENTANGLEMENTS: tuple[str, ...] = ("linear", "circular", "all_to_all", "parallel", "none")
ENTANGLERS: tuple[str, ...] = ("cnot", "cz")
ENCODINGS: tuple[str, ...] = ("rx", "ry", "rz")
READOUTS: tuple[str, ...] = ("z", "parity")

_ANGLES_PER_ROTATION = {"ryrz": 2, "u3": 3}


def _check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"CircuitSpec.{field}={value!r} is not one of {list(allowed)}")


MAX_QUBITS = 30
"""The widest circuit a spec describes: a statevector of ``2**30`` amplitudes is 16 GiB."""

MAX_LAYERS = 1000
"""The deepest circuit a spec describes (qiskit's compiler fails far beyond, with no message
that names the depth)."""


def _check_int(field: str, value: object, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"CircuitSpec.{field}={value!r} must be an int >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"CircuitSpec.{field}={value!r} must be <= {maximum}")


@dataclass(frozen=True)
class CircuitSpec:
    """What circuit to build (paper Sec. III-D1); validated on construction.

    Attributes:
        n_qubits: Number of qubits, in [1, MAX_QUBITS] (30).
        n_layers: Number of (encoding, rotation, entanglement) layers, in [1, MAX_LAYERS] (1000).
        n_inputs: Number of features angle-encoded, on qubits ``0 .. n_inputs-1``; defaults to
            ``n_qubits``. Must be in ``[1, n_qubits]``: wider observations need a classical
            encoder in front (see the torch layers), not a wider circuit.
        rotation: Rotational block: ``"ryrz"`` (RY then RZ, 2 weights per qubit) or ``"u3"``
            (one U3, 3 weights per qubit, the paper's :math:`U_{rot}`).
        entanglement: Entanglement pattern: ``"linear"`` (0-1, 1-2, ...), ``"circular"``
            (linear plus n-1 - 0, for n >= 3), ``"all_to_all"`` (every pair i < j),
            ``"parallel"`` (the paper's parallel-CNOT brickwork: pairs (0,1), (2,3), ... then
            (1,2), (3,4), ...; the paper's product bound floor(n/2)+1 is clipped to the pairs
            that exist) or ``"none"``.
        entangler: Two-qubit gate of the entanglement block: ``"cnot"`` or ``"cz"``.
        encoding: Angle-encoding gate: ``"rx"``, ``"ry"`` or ``"rz"``.
        reupload: Encode the inputs in every layer (data re-uploading) instead of only the first.
        readout: ``"z"``: one Pauli-Z expectation per qubit. ``"parity"``: one Z...Z expectation
            per group in ``parity_groups``.
        parity_groups: Qubit groups for ``readout="parity"``: non-empty tuples of distinct qubit
            indices in ``[0, n_qubits)``. Defaults to one group of all qubits. Must be ``None``
            for ``readout="z"``.
        final_rotation: Add one more rotational block after the last layer.

    Raises:
        ValueError: On any invalid field; the message names the field, its value and the
            allowed values.
    """

    n_qubits: int
    n_layers: int = 1
    n_inputs: int | None = None
    rotation: str = "ryrz"
    entanglement: str = "circular"
    entangler: str = "cz"
    encoding: str = "ry"
    reupload: bool = True
    readout: str = "z"
    parity_groups: tuple[tuple[int, ...], ...] | None = None
    final_rotation: bool = True

    def __post_init__(self) -> None:
        _check_int("n_qubits", self.n_qubits, 1, MAX_QUBITS)
        _check_int("n_layers", self.n_layers, 1, MAX_LAYERS)
        if self.n_inputs is not None:
            _check_int("n_inputs", self.n_inputs, 1)
            if self.n_inputs > self.n_qubits:
                raise ValueError(
                    f"CircuitSpec.n_inputs={self.n_inputs} exceeds n_qubits={self.n_qubits}: "
                    "angle encoding takes at most one input per qubit; reduce the observation "
                    "with a classical encoder first"
                )
        _check_choice("rotation", self.rotation, ROTATIONS)
        _check_choice("entanglement", self.entanglement, ENTANGLEMENTS)
        _check_choice("entangler", self.entangler, ENTANGLERS)
        _check_choice("encoding", self.encoding, ENCODINGS)
        _check_choice("readout", self.readout, READOUTS)
        for name in ("reupload", "final_rotation"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"CircuitSpec.{name}={getattr(self, name)!r} must be a bool")
        if self.readout == "z":
            if self.parity_groups is not None:
                raise ValueError(
                    f"CircuitSpec.parity_groups={self.parity_groups!r} is only allowed with "
                    "readout='parity' (readout is 'z')"
                )
        elif self.parity_groups is not None:
            groups = self.parity_groups
            if not isinstance(groups, tuple) or len(groups) == 0:
                raise ValueError(
                    f"CircuitSpec.parity_groups={groups!r} must be a non-empty tuple of tuples"
                )
            for group in groups:
                if (
                    not isinstance(group, tuple)
                    or len(group) == 0
                    or any(isinstance(q, bool) or not isinstance(q, int) for q in group)
                    or any(q < 0 or q >= self.n_qubits for q in group)
                    or len(set(group)) != len(group)
                ):
                    raise ValueError(
                        f"CircuitSpec.parity_groups contains {group!r}: each group must be a "
                        f"non-empty tuple of distinct qubit indices in [0, {self.n_qubits})"
                    )

    @property
    def inputs_encoded(self) -> int:
        """Number of features encoded per layer (``n_inputs`` or ``n_qubits``)."""
        return self.n_qubits if self.n_inputs is None else self.n_inputs

    @property
    def groups(self) -> tuple[tuple[int, ...], ...]:
        """The qubit groups read out, one per output (single qubits for ``readout="z"``)."""
        if self.readout == "z":
            return tuple((q,) for q in range(self.n_qubits))
        if self.parity_groups is None:
            return (tuple(range(self.n_qubits)),)
        return self.parity_groups


@dataclass(frozen=True)
class BuiltCircuit:
    """A built circuit with its parameter vectors and observables.

    Made by :func:`build_circuit` from a :class:`CircuitSpec`, or by
    :func:`circuit_from_qiskit` from a circuit the user brings (then ``spec`` is ``None``).

    Attributes:
        spec: The spec it was built from; ``None`` for a user's circuit.
        circuit: The Qiskit circuit (drawable with ``circuit.draw()``). A spec's circuit is
            linear in its parameters; a user's may use any parameter expressions.
        inputs: The input parameters, in the order of the input vector. For a spec: encoding
            angles, one per (layer, input), length ``n_inputs * (n_layers if reupload else 1)``,
            layer-major.
        weights: The trainable parameters, in the order of the weight vector.
        observables: One ``SparsePauliOp`` per output (Qiskit little-endian qubit order).
    """

    spec: CircuitSpec | None
    circuit: QuantumCircuit
    inputs: Sequence[Parameter]
    weights: Sequence[Parameter]
    observables: tuple[SparsePauliOp, ...]

    @property
    def n_outputs(self) -> int:
        """Number of expectation values the circuit returns."""
        return len(self.observables)

    @property
    def n_weights(self) -> int:
        """Number of trainable rotation angles."""
        return len(self.weights)

    @property
    def n_input_params(self) -> int:
        """Number of encoding angles (inputs times encoded layers)."""
        return len(self.inputs)

    @property
    def n_qubits(self) -> int:
        """Number of qubits."""
        return self.circuit.num_qubits


def entangling_pairs(n_qubits: int, entanglement: str) -> list[tuple[int, int]]:
    """(control, target) pairs of one entanglement block, in application order.

    Args:
        n_qubits: Number of qubits.
        entanglement: One of :data:`ENTANGLEMENTS`.

    Returns:
        The pairs; empty for one qubit or ``"none"``.

    Raises:
        ValueError: If ``entanglement`` is unknown.
    """
    _check_choice("entanglement", entanglement, ENTANGLEMENTS)
    n = n_qubits
    if entanglement == "none" or n < 2:
        return []
    if entanglement == "linear":
        return [(q, q + 1) for q in range(n - 1)]
    if entanglement == "circular":
        pairs = [(q, q + 1) for q in range(n - 1)]
        return [*pairs, (n - 1, 0)] if n >= 3 else pairs
    if entanglement == "all_to_all":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    # parallel: paper Sec. III-D1, CNOTs on (2q-1, 2q) then (2q, 2q+1), 1-indexed
    return [(q, q + 1) for q in range(0, n - 1, 2)] + [(q, q + 1) for q in range(1, n - 1, 2)]


def _z_string(n_qubits: int, group: tuple[int, ...]) -> SparsePauliOp:
    return SparsePauliOp.from_sparse_list([("Z" * len(group), list(group), 1.0)], n_qubits)


def build_circuit(spec: CircuitSpec) -> BuiltCircuit:
    """Build the Qiskit circuit described by ``spec``.

    Args:
        spec: A validated :class:`CircuitSpec`.

    Returns:
        The :class:`BuiltCircuit` (circuit, ``inputs`` and ``weights`` parameter vectors,
        observables).

    Raises:
        TypeError: If ``spec`` is not a :class:`CircuitSpec`.
    """
    if not isinstance(spec, CircuitSpec):
        raise TypeError(f"spec must be a CircuitSpec, got {type(spec).__name__}")
    n, m = spec.n_qubits, spec.inputs_encoded
    k = _ANGLES_PER_ROTATION[spec.rotation]
    encoded_layers = spec.n_layers if spec.reupload else 1
    rotation_blocks = spec.n_layers + (1 if spec.final_rotation else 0)
    inputs = ParameterVector("x", m * encoded_layers)
    weights = ParameterVector("w", n * k * rotation_blocks)
    qc = QuantumCircuit(n, name=f"vqc_{n}x{spec.n_layers}")
    encode = {"rx": qc.rx, "ry": qc.ry, "rz": qc.rz}[spec.encoding]
    pairs = entangling_pairs(n, spec.entanglement)

    def rotation_block(block: int) -> None:
        for q in range(n):
            w = [weights[(block * n + q) * k + j] for j in range(k)]
            if spec.rotation == "ryrz":
                qc.ry(w[0], q)
                qc.rz(w[1], q)
            else:
                qc.u(w[0], w[1], w[2], q)

    for layer in range(spec.n_layers):
        if layer < encoded_layers:
            for i in range(m):
                encode(inputs[layer * m + i], i)
        rotation_block(layer)
        for control, target in pairs:
            if spec.entangler == "cz":
                qc.cz(control, target)
            else:
                qc.cx(control, target)
    if spec.final_rotation:
        rotation_block(spec.n_layers)
    observables = tuple(_z_string(n, group) for group in spec.groups)
    return BuiltCircuit(
        spec=spec, circuit=qc, inputs=inputs, weights=weights, observables=observables
    )


def to_observables(
    observables: SparsePauliOp | Pauli | str | Sequence[SparsePauliOp | Pauli | str] | None,
    n_qubits: int,
) -> tuple[SparsePauliOp, ...]:
    """Observables as qiskit-machine-learning's ``EstimatorQNN`` takes them, one per output.

    Args:
        observables: A ``SparsePauliOp``, ``Pauli`` or Pauli string (``"ZIZ"``, Qiskit order:
            the rightmost letter is qubit 0), or a sequence of them (one output each). ``None``
            is ``EstimatorQNN``'s default: one output, Z on every qubit.
        n_qubits: The circuit's width; every observable must act on exactly this many qubits.

    Returns:
        One Hermitian ``SparsePauliOp`` per output.

    Raises:
        ValueError: If there are none, one is not a valid Pauli string, has the wrong width or
            is not Hermitian (complex coefficients whose expectation is not real).
        TypeError: If one is of another type.
    """
    if observables is None:
        return (SparsePauliOp("Z" * n_qubits),)
    if isinstance(observables, (SparsePauliOp, Pauli, str)):
        observables = [observables]
    if not isinstance(observables, Sequence) or len(observables) == 0:
        raise ValueError("observables must be one or more SparsePauliOp, Pauli or Pauli strings")
    result = []
    for index, item in enumerate(observables):
        if isinstance(item, str):
            try:
                item = SparsePauliOp(item)
            except Exception as exc:  # qiskit raises QiskitError on a bad label
                raise ValueError(f"observables[{index}]={item!r} is not a Pauli string: {exc}") \
                    from None
        elif isinstance(item, Pauli):
            item = SparsePauliOp(item)
        elif not isinstance(item, SparsePauliOp):
            raise TypeError(
                f"observables[{index}] must be a SparsePauliOp, Pauli or Pauli string, got "
                f"{type(item).__name__}"
            )
        if item.num_qubits != n_qubits:
            raise ValueError(
                f"observables[{index}] acts on {item.num_qubits} qubits, the circuit has "
                f"{n_qubits}"
            )
        if not item.adjoint().equiv(item):
            raise ValueError(f"observables[{index}]={item} is not Hermitian")
        result.append(item)
    return tuple(result)


def _parameter_list(name: str, params: object, circuit: QuantumCircuit) -> tuple[Parameter, ...]:
    if isinstance(params, Parameter):
        params = [params]
    if not isinstance(params, Iterable) or isinstance(params, str):
        raise TypeError(
            f"{name} must be a sequence of qiskit Parameters (a ParameterVector, a "
            f"circuit's .parameters), got "
            f"{type(params).__name__}"
        )
    result = tuple(params)
    for index, p in enumerate(result):
        if not isinstance(p, Parameter):
            raise TypeError(f"{name}[{index}]={p!r} is not a qiskit Parameter")
        if p not in circuit.parameters:
            raise ValueError(f"{name}[{index}]={p} is not a parameter of the circuit")
    repeated = sorted({str(p) for p in result if result.count(p) > 1})
    if repeated:
        raise ValueError(f"{name} lists {repeated} more than once")
    return result


def circuit_from_qiskit(
    circuit: QuantumCircuit,
    input_params: Sequence[Parameter] | ParameterVector | None = None,
    weight_params: Sequence[Parameter] | ParameterVector | None = None,
    observables: SparsePauliOp | Pauli | str | Sequence[SparsePauliOp | Pauli | str] | None = None,
) -> BuiltCircuit:
    """A user's Qiskit circuit as a :class:`BuiltCircuit`, in ``EstimatorQNN``'s vocabulary.

    The usual recipe is qiskit-machine-learning's: a feature map composed with an ansatz,

    >>> from qiskit.circuit.library import real_amplitudes, zz_feature_map
    >>> fmap, ansatz = zz_feature_map(2), real_amplitudes(2, reps=1)
    >>> qc = fmap.compose(ansatz)
    >>> built = circuit_from_qiskit(qc, fmap.parameters, ansatz.parameters, ["ZI", "IZ"])
    >>> built.n_input_params, built.n_weights, built.n_outputs
    (2, 4, 2)

    Args:
        circuit: The circuit. Which instructions an executor can run is its business (the
            ``statevector`` executor refuses non-unitary ones when it compiles the circuit).
        input_params: The parameters fed by the input vector, in its order. ``None``: none.
        weight_params: The trainable parameters, in the weight vector's order. ``None``: every
            parameter of the circuit that is not an input, in ``circuit.parameters`` order.
        observables: See :func:`to_observables`; ``None`` is one Z on every qubit.

    Returns:
        The built circuit, with ``spec=None``.

    Raises:
        TypeError: If ``circuit`` is not a ``QuantumCircuit`` or a parameter list holds
            something else than Parameters.
        ValueError: If a listed parameter is not in the circuit, listed twice or both an input
            and a weight, a circuit parameter is neither, or an observable does not fit.
    """
    if not isinstance(circuit, QuantumCircuit):
        raise TypeError(f"circuit must be a qiskit QuantumCircuit, got {type(circuit).__name__}")
    inputs = () if input_params is None else _parameter_list("input_params", input_params,
                                                               circuit)
    if weight_params is None:
        weights = tuple(p for p in circuit.parameters if p not in set(inputs))
    else:
        weights = _parameter_list("weight_params", weight_params, circuit)
    both = sorted(str(p) for p in set(inputs) & set(weights))
    if both:
        raise ValueError(f"parameters {both} are in both input_params and weight_params")
    unbound = sorted(str(p) for p in set(circuit.parameters) - set(inputs) - set(weights))
    if unbound:
        raise ValueError(
            f"circuit parameters {unbound} are neither in input_params nor in weight_params"
        )
    return BuiltCircuit(
        spec=None,
        circuit=circuit,
        inputs=inputs,
        weights=weights,
        observables=to_observables(observables, circuit.num_qubits),
    )
