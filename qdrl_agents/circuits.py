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

**A user's circuit.** :func:`circuit_from_qiskit` takes any Qiskit circuit in
qiskit-machine-learning's ``EstimatorQNN`` vocabulary (``input_params``, ``weight_params``,
``observables``) and gives a :class:`BuiltCircuit` with ``spec=None``; its angles may be any
parameter expressions (what an executor can run is the executor's business).
:class:`UserCircuit` holds such a circuit, or a callable that builds one per input width, for
the layers and policies, and pickles as ``qiskit.qpy`` bytes so that a saved model carries the
circuit itself rather than pickled qiskit objects or the code that made it.
:func:`as_built_circuit` resolves either way of naming a circuit (a spec, or ``circuit=``).
"""

from __future__ import annotations

import dataclasses
import io
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import qpy
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
    "ObservablesLike",
    "ParametersLike",
    "UserCircuit",
    "as_built_circuit",
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

#: What ``input_params=`` / ``weight_params=`` take: qiskit Parameters in order (a
#: ``ParameterVector``, a circuit's ``.parameters``, a list).
ParametersLike = Sequence[Parameter] | ParameterVector
#: What ``observables=`` takes, as ``EstimatorQNN`` does: one or a sequence of
#: ``SparsePauliOp``, ``Pauli`` or Pauli strings (Qiskit order: the rightmost letter is qubit 0).
ObservablesLike = SparsePauliOp | Pauli | str | Sequence[SparsePauliOp | Pauli | str]


def _check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"CircuitSpec.{field}={value!r} is not one of {list(allowed)}")


MAX_QUBITS = 30
"""The widest circuit a spec describes: a statevector of ``2**30`` amplitudes is 16 GiB."""

MAX_LAYERS = 1000
"""The deepest circuit a spec describes (qiskit's compiler fails far beyond, with no message
that names the depth)."""


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer: a Python ``int`` or a NumPy integer, not a ``bool``.

    Args:
        value: Anything.

    Returns:
        True for ``numbers.Integral`` values other than ``bool`` (and ``numpy.bool_``).
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_int(field: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if not is_int(value) or value < minimum:  # type: ignore[operator]
        raise ValueError(f"CircuitSpec.{field}={value!r} must be an int >= {minimum}")
    if maximum is not None and value > maximum:  # type: ignore[operator]
        raise ValueError(f"CircuitSpec.{field}={value!r} must be <= {maximum}")
    return int(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CircuitSpec:
    """What circuit to build (paper Sec. III-D1); validated on construction.

    Integer fields take Python or NumPy integers (``np.int64(4)``, as a Gymnasium space's
    ``n`` is); they are stored as Python ints.

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
        # NumPy integers (a space's ``n``, ``sum(nvec)``) are accepted and stored as ints.
        object.__setattr__(self, "n_qubits", _check_int("n_qubits", self.n_qubits, 1, MAX_QUBITS))
        object.__setattr__(self, "n_layers", _check_int("n_layers", self.n_layers, 1, MAX_LAYERS))
        if self.n_inputs is not None:
            object.__setattr__(self, "n_inputs", _check_int("n_inputs", self.n_inputs, 1))
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
                    or not all(is_int(q) for q in group)
                    or any(q < 0 or q >= self.n_qubits for q in group)
                    or len(set(group)) != len(group)
                ):
                    raise ValueError(
                        f"CircuitSpec.parity_groups contains {group!r}: each group must be a "
                        f"non-empty tuple of distinct qubit indices in [0, {self.n_qubits})"
                    )
            object.__setattr__(
                self, "parity_groups", tuple(tuple(int(q) for q in group) for group in groups)
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
    input_params: ParametersLike | None = None,
    weight_params: ParametersLike | None = None,
    observables: ObservablesLike | None = None,
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
        observables: See :func:`to_observables`; ``None`` is one output, Z on every qubit.

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


def as_built_circuit(
    spec: CircuitSpec | BuiltCircuit | None = None,
    circuit: QuantumCircuit | BuiltCircuit | UserCircuit | None = None,
    input_params: ParametersLike | None = None,
    weight_params: ParametersLike | None = None,
    observables: ObservablesLike | None = None,
) -> BuiltCircuit:
    """Resolve the two ways of naming a circuit (a spec, or ``EstimatorQNN``'s vocabulary).

    What `QuantumLayer` and `make_executor` do with their arguments: exactly one of ``spec``
    and ``circuit`` is given.

    Args:
        spec: A :class:`CircuitSpec` (built with :func:`build_circuit`) or a
            :class:`BuiltCircuit` (used as is).
        circuit: A ``QuantumCircuit`` (with ``input_params``, ``weight_params`` and
            ``observables``, see :func:`circuit_from_qiskit`), a :class:`BuiltCircuit` or a
            fixed :class:`UserCircuit`.
        input_params: See :func:`circuit_from_qiskit`; only with a ``QuantumCircuit``.
        weight_params: See :func:`circuit_from_qiskit`; only with a ``QuantumCircuit``.
        observables: See :func:`circuit_from_qiskit`; only with a ``QuantumCircuit``.

    Returns:
        The built circuit.

    Raises:
        TypeError: If an argument is of the wrong type (a callable ``circuit`` included: it
            needs the input width, which only a policy knows).
        ValueError: If both or neither of ``spec`` and ``circuit`` are given, parameter roles
            or observables come without a ``QuantumCircuit``, or they do not fit it.
    """
    extras = {
        name: value
        for name, value in (
            ("input_params", input_params),
            ("weight_params", weight_params),
            ("observables", observables),
        )
        if value is not None
    }
    if spec is not None and circuit is not None:
        raise ValueError("give either spec= or circuit=, not both")
    if spec is not None:
        if extras:
            raise ValueError(f"{sorted(extras)} only go with circuit= (a QuantumCircuit)")
        if isinstance(spec, CircuitSpec):
            return build_circuit(spec)
        if isinstance(spec, BuiltCircuit):
            return spec
        raise TypeError(
            f"spec must be a CircuitSpec or a BuiltCircuit, got {type(spec).__name__}"
            + ("; pass a QuantumCircuit as circuit=" if isinstance(spec, QuantumCircuit) else "")
        )
    if circuit is None:
        if extras:
            raise ValueError(f"{sorted(extras)} given without circuit=")
        raise ValueError("give spec= (a CircuitSpec) or circuit= (a QuantumCircuit)")
    if isinstance(circuit, QuantumCircuit):
        return circuit_from_qiskit(circuit, input_params, weight_params, observables)
    if isinstance(circuit, (BuiltCircuit, UserCircuit)):
        if extras:
            raise ValueError(
                f"{sorted(extras)} given with a {type(circuit).__name__}, which has them already"
            )
        return circuit if isinstance(circuit, BuiltCircuit) else circuit.built
    if callable(circuit):
        raise TypeError(
            "a callable circuit= builds the circuit for an input width, which only a policy "
            "knows; here pass the QuantumCircuit itself (or call UserCircuit(fn).build(width))"
        )
    raise TypeError(
        "circuit must be a qiskit QuantumCircuit, a BuiltCircuit or a UserCircuit, got "
        f"{type(circuit).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# A user's circuit that travels with a saved model as QPY.
# ---------------------------------------------------------------------------------------------

_QPY_RECORD_FORMAT = 1


def _record(built: BuiltCircuit) -> tuple[Any, ...]:
    """A pickle-safe description of a built circuit: QPY bytes, parameter names, Pauli lists."""
    if built.spec is not None:
        return ("spec", dataclasses.asdict(built.spec))
    buffer = io.BytesIO()
    try:
        qpy.dump(built.circuit, buffer)
    except Exception as exc:  # qpy raises QpyError (and others) on what it cannot store
        raise ValueError(
            f"the circuit cannot be stored with qiskit.qpy, so a model using it could not be "
            f"saved: {type(exc).__name__}: {exc}"
        ) from exc
    return (
        "qpy",
        buffer.getvalue(),
        [p.name for p in built.inputs],
        [p.name for p in built.weights],
        [op.to_list() for op in built.observables],
    )


def _from_record(record: Sequence[Any]) -> BuiltCircuit:
    """Rebuild a :class:`BuiltCircuit` from :func:`_record`'s description."""
    if record[0] == "spec":
        fields = dict(record[1])
        if fields.get("parity_groups") is not None:
            fields["parity_groups"] = tuple(tuple(g) for g in fields["parity_groups"])
        return build_circuit(CircuitSpec(**fields))
    _, data, input_names, weight_names, observables = record
    (circuit,) = qpy.load(io.BytesIO(data))
    by_name = {p.name: p for p in circuit.parameters}
    n = circuit.num_qubits
    return BuiltCircuit(
        spec=None,
        circuit=circuit,
        inputs=tuple(by_name[name] for name in input_names),
        weights=tuple(by_name[name] for name in weight_names),
        observables=tuple(SparsePauliOp.from_list(terms, num_qubits=n) for terms in observables),
    )


def _same_built(a: BuiltCircuit, b: BuiltCircuit) -> bool:
    if a is b:
        return True
    if a.spec is not None or b.spec is not None:
        return a.spec == b.spec
    return (
        [p.name for p in a.inputs] == [p.name for p in b.inputs]
        and [p.name for p in a.weights] == [p.name for p in b.weights]
        and len(a.observables) == len(b.observables)
        and all(x == y for x, y in zip(a.observables, b.observables, strict=True))
        and a.circuit == b.circuit
    )


def _from_recipe(result: object, n_features: int, name: str) -> BuiltCircuit:
    """The :class:`BuiltCircuit` of what a circuit factory returned."""
    if isinstance(result, BuiltCircuit):
        return result
    if isinstance(result, UserCircuit) and not result.is_factory:
        return result.built
    if isinstance(result, Mapping):
        allowed = {"circuit", "input_params", "weight_params", "observables"}
        unknown = sorted(set(result) - allowed)
        if unknown or "circuit" not in result:
            raise TypeError(
                f"circuit factory {name}({n_features}) returned a mapping with keys "
                f"{sorted(result)}; expected 'circuit' and optionally 'input_params', "
                "'weight_params', 'observables'"
            )
        result = (
            result["circuit"],
            result.get("input_params"),
            result.get("weight_params"),
            result.get("observables"),
        )
    if isinstance(result, tuple) and 1 <= len(result) <= 4:
        if not isinstance(result[0], QuantumCircuit):
            raise TypeError(
                f"circuit factory {name}({n_features}) returned a tuple whose first item is a "
                f"{type(result[0]).__name__}, not a QuantumCircuit"
            )
        return circuit_from_qiskit(*result)
    raise TypeError(
        f"circuit factory {name}({n_features}) returned {type(result).__name__}; it must "
        "return (circuit, input_params, weight_params, observables) (the last two may be "
        "left out or None), a mapping with those keys, or a BuiltCircuit"
    )


class UserCircuit:
    """A user's circuit for the quantum layers and policies; pickles as QPY, not as objects.

    This is what ``circuit=`` becomes inside `QuantumNetConfig`, and what to put in an
    algorithm's ``policy_kwargs`` so that ``model.save`` stores the circuit as ``qiskit.qpy``
    bytes: SB3 pickles ``policy_kwargs`` as given (with cloudpickle), and this object's pickled
    form is the QPY bytes of its circuit, the names of its input and weight parameters and its
    observables as Pauli lists. Loading rebuilds the circuit with ``qpy.load``, in any process,
    without the code that made it.

    Two forms:

    * **fixed**, in ``EstimatorQNN``'s vocabulary:
      ``UserCircuit(circuit, input_params, weight_params, observables)`` (see
      :func:`circuit_from_qiskit` for the defaults), or ``UserCircuit(built)`` for a
      :class:`BuiltCircuit`. Every network of a policy uses this circuit (each with its own
      weights); a network whose input is wider or narrower than ``len(input_params)`` needs
      the policy's ``encoder=``.
    * **factory**: ``UserCircuit(fn)``, where ``fn(n_features)`` builds the circuit for a
      network whose input is ``n_features`` wide (SB3 builds a policy only once it knows the
      observation space). ``fn`` returns ``(circuit, input_params, weight_params,
      observables)`` (the last two may be left out or ``None``), a mapping with those keys, or
      a :class:`BuiltCircuit`. It is called once per distinct width (a policy's actor, critic
      and target networks of one width share the result), and the circuits it made are what
      is pickled: a factory loaded from a save rebuilds exactly those widths and no others.
      Without an ``encoder=`` the circuit must have ``n_features`` input parameters.

    Two ``UserCircuit`` s are equal when they hold equal circuits (same gates, parameter
    names, observables; for factories, the same circuits for the same widths, and the same
    ``fn`` when both still have one).

    Args:
        circuit: A ``QuantumCircuit``, a :class:`BuiltCircuit`, or a callable
            ``n_features -> recipe`` (see above).
        input_params: Parameters fed by the inputs, in order (fixed form with a
            ``QuantumCircuit`` only).
        weight_params: Trainable parameters, in order; ``None``: every other parameter.
        observables: ``SparsePauliOp`` s, ``Pauli`` s or Pauli strings, one per output;
            ``None``: one output, Z on every qubit.

    Raises:
        TypeError: If ``circuit`` is of another type, or parameter lists hold non-Parameters.
        ValueError: If parameter roles or observables do not fit the circuit, they are given
            with a callable or a :class:`BuiltCircuit`, or the circuit cannot be stored with
            QPY.

    Example:
        >>> from qiskit.circuit.library import real_amplitudes, zz_feature_map
        >>> def make(n_features):
        ...     fmap, ansatz = zz_feature_map(n_features), real_amplitudes(n_features, reps=1)
        ...     return fmap.compose(ansatz), fmap.parameters, ansatz.parameters, None
        >>> UserCircuit(make).build(3).n_weights
        6
    """

    def __init__(
        self,
        circuit: QuantumCircuit | BuiltCircuit | Callable[[int], Any],
        input_params: ParametersLike | None = None,
        weight_params: ParametersLike | None = None,
        observables: ObservablesLike | None = None,
    ) -> None:
        self._fn: Callable[[int], Any] | None = None
        self._fixed: BuiltCircuit | None = None
        self._made: dict[int, BuiltCircuit] = {}
        self._records: dict[int, tuple[Any, ...]] = {}
        if isinstance(circuit, UserCircuit):
            raise TypeError("circuit is already a UserCircuit; pass it as is")
        if isinstance(circuit, (QuantumCircuit, BuiltCircuit)):
            self._fixed = as_built_circuit(
                circuit=circuit,
                input_params=input_params,
                weight_params=weight_params,
                observables=observables,
            )
            self._fixed_record = _record(self._fixed)
        elif callable(circuit):
            given = [
                name
                for name, value in (
                    ("input_params", input_params),
                    ("weight_params", weight_params),
                    ("observables", observables),
                )
                if value is not None
            ]
            if given:
                raise ValueError(
                    f"{given} given with a callable circuit; return them from it: "
                    "(circuit, input_params, weight_params, observables)"
                )
            self._fn = circuit
        else:
            raise TypeError(
                "circuit must be a qiskit QuantumCircuit, a BuiltCircuit or a callable "
                f"n_features -> (circuit, input_params, weight_params, observables), got "
                f"{type(circuit).__name__}"
            )

    @property
    def is_factory(self) -> bool:
        """Whether this builds one circuit per input width (the callable form)."""
        return self._fixed is None

    @property
    def built(self) -> BuiltCircuit:
        """The circuit of the fixed form.

        Raises:
            TypeError: For the factory form, whose circuits depend on the width (`build`).
        """
        if self._fixed is None:
            raise TypeError(
                "this UserCircuit is a factory: its circuit depends on the input width; "
                "call .build(n_features)"
            )
        return self._fixed

    @property
    def circuits(self) -> dict[int, BuiltCircuit]:
        """The circuits a factory has built so far, by input width (empty for the fixed form)."""
        return dict(self._made)

    def build(self, n_features: int | None = None) -> BuiltCircuit:
        """The circuit for a network whose input is ``n_features`` wide.

        Args:
            n_features: The input width (an int; NumPy integers are accepted). The fixed form
                ignores it (whether the circuit fits is the caller's check).

        Returns:
            The built circuit; for a factory the same object for every call with one width.

        Raises:
            ValueError: If ``n_features`` is not a positive int (factory form), or this
                factory was loaded from a save that holds no circuit of that width.
            TypeError: If the factory returns something else than its contract says.
        """
        if self._fixed is not None:
            return self._fixed
        if not is_int(n_features) or n_features < 1:  # type: ignore[operator]
            raise ValueError(f"n_features={n_features!r} must be an int >= 1")
        width = int(n_features)  # type: ignore[arg-type]
        if width in self._made:
            return self._made[width]
        if self._fn is None:
            raise ValueError(
                f"this UserCircuit was loaded from a save and holds circuits for input widths "
                f"{sorted(self._made)} only, not {width}; pass the original callable as "
                "circuit= to build others"
            )
        built = _from_recipe(self._fn(width), width, getattr(self._fn, "__name__", "circuit"))
        self._records[width] = _record(built)
        self._made[width] = built
        return built

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as QPY bytes and names (a factory: the circuits it built, not the callable).

        A factory that has built nothing yet pickles its callable (cloudpickle can, the
        standard pickle only for module-level functions).
        """
        state: dict[str, Any] = {"format": _QPY_RECORD_FORMAT}
        if self._fixed is not None:
            state["fixed"] = self._fixed_record
        else:
            state["made"] = dict(self._records)
            if not self._records:
                state["fn"] = self._fn
        return (_restore_user_circuit, (state,))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserCircuit):
            return NotImplemented
        if self is other:
            return True
        if self._fixed is not None or other._fixed is not None:
            return (
                self._fixed is not None
                and other._fixed is not None
                and _same_built(self._fixed, other._fixed)
            )
        if self._fn is not None and other._fn is not None and self._fn is not other._fn:
            return False
        return self._made.keys() == other._made.keys() and all(
            _same_built(b, other._made[w]) for w, b in self._made.items()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self._fixed is not None:
            b = self._fixed
            return (
                f"UserCircuit({b.n_qubits} qubits, {b.n_input_params} inputs, "
                f"{b.n_weights} weights, {b.n_outputs} observables)"
            )
        name = getattr(self._fn, "__qualname__", None) if self._fn is not None else None
        source = name or ("loaded" if self._fn is None else "callable")
        return f"UserCircuit(factory={source}, widths={sorted(self._made)})"


def _restore_user_circuit(state: Mapping[str, Any]) -> UserCircuit:
    """Unpickle a :class:`UserCircuit` (see ``UserCircuit.__reduce__``)."""
    if state.get("format") != _QPY_RECORD_FORMAT:
        raise ValueError(
            f"UserCircuit saved in record format {state.get('format')!r}; this version of "
            f"qdrl_agents reads format {_QPY_RECORD_FORMAT}"
        )
    obj = UserCircuit.__new__(UserCircuit)
    obj._fn = None
    obj._fixed = None
    obj._made = {}
    obj._records = {}
    if "fixed" in state:
        obj._fixed = _from_record(state["fixed"])
        obj._fixed_record = tuple(state["fixed"])
    else:
        obj._fn = state.get("fn")
        for width, record in state["made"].items():
            obj._made[int(width)] = _from_record(record)
            obj._records[int(width)] = tuple(record)
    return obj
