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

from dataclasses import dataclass

from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

__all__ = [
    "ENCODINGS",
    "ENTANGLEMENTS",
    "ENTANGLERS",
    "READOUTS",
    "ROTATIONS",
    "BuiltCircuit",
    "CircuitSpec",
    "build_circuit",
    "entangling_pairs",
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

    Attributes:
        spec: The spec it was built from.
        circuit: The Qiskit circuit, linear in its parameters (drawable with ``circuit.draw()``).
        inputs: Encoding angles, one per (layer, input): length
            ``n_inputs * (n_layers if reupload else 1)``, layer-major.
        weights: Trainable rotation angles.
        observables: One ``SparsePauliOp`` per output (Qiskit little-endian qubit order).
    """

    spec: CircuitSpec
    circuit: QuantumCircuit
    inputs: ParameterVector
    weights: ParameterVector
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
