from __future__ import annotations

import pytest
from qiskit.circuit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp

from qdrl_agents.circuits import (
    ENTANGLEMENTS,
    BuiltCircuit,
    CircuitSpec,
    build_circuit,
    entangling_pairs,
)


def _two_qubit_gates(qc: QuantumCircuit) -> list[tuple[str, tuple[int, ...]]]:
    return [
        (ins.operation.name, tuple(qc.find_bit(q).index for q in ins.qubits))
        for ins in qc.data
        if len(ins.qubits) == 2
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_qubits": 0}, "n_qubits"),
        ({"n_qubits": -1}, "n_qubits"),
        ({"n_qubits": 2.0}, "n_qubits"),
        ({"n_qubits": True}, "n_qubits"),
        ({"n_qubits": 2, "n_layers": 0}, "n_layers"),
        ({"n_qubits": 2, "n_inputs": 3}, "n_inputs"),
        ({"n_qubits": 2, "n_inputs": 0}, "n_inputs"),
        ({"n_qubits": 2, "rotation": "rx"}, "rotation"),
        ({"n_qubits": 2, "entanglement": "ring"}, "entanglement"),
        ({"n_qubits": 2, "entangler": "swap"}, "entangler"),
        ({"n_qubits": 2, "encoding": "amplitude"}, "encoding"),
        ({"n_qubits": 2, "readout": "x"}, "readout"),
        ({"n_qubits": 2, "reupload": 1}, "reupload"),
        ({"n_qubits": 2, "final_rotation": "yes"}, "final_rotation"),
        ({"n_qubits": 2, "parity_groups": ((0, 1),)}, "parity_groups"),
        ({"n_qubits": 2, "readout": "parity", "parity_groups": ((0, 2),)}, "parity_groups"),
        ({"n_qubits": 2, "readout": "parity", "parity_groups": ((0, 0),)}, "parity_groups"),
        ({"n_qubits": 2, "readout": "parity", "parity_groups": ((),)}, "parity_groups"),
        ({"n_qubits": 2, "readout": "parity", "parity_groups": ()}, "parity_groups"),
        ({"n_qubits": 2, "readout": "parity", "parity_groups": [[0, 1]]}, "parity_groups"),
        ({"n_qubits": 62}, r"n_qubits=62 must be <= 30"),
        ({"n_qubits": 2, "n_layers": 10**9}, r"n_layers=1000000000 must be <= 1000"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_spec_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CircuitSpec(**kwargs)


def test_unknown_choice_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match="all_to_all"):
        CircuitSpec(n_qubits=3, entanglement="full")


def test_build_rejects_non_spec() -> None:
    with pytest.raises(TypeError, match="CircuitSpec"):
        build_circuit({"n_qubits": 2})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "n_inputs", "n_weights", "n_outputs"),
    [
        (CircuitSpec(n_qubits=4, n_layers=5), 20, 48, 4),
        (CircuitSpec(n_qubits=4, n_layers=5, reupload=False), 4, 48, 4),
        (CircuitSpec(n_qubits=3, n_layers=2, rotation="u3", final_rotation=False), 6, 18, 3),
        (CircuitSpec(n_qubits=5, n_layers=2, n_inputs=2), 4, 30, 5),
        (CircuitSpec(n_qubits=4, readout="parity", parity_groups=((0, 1), (2, 3))), 4, 16, 2),
        (CircuitSpec(n_qubits=4, readout="parity"), 4, 16, 1),
    ],
    ids=["4x5", "no-reupload", "u3-no-final", "fewer-inputs", "parity-pairs", "parity-all"],
)
def test_parameter_counts(spec: CircuitSpec, n_inputs: int, n_weights: int, n_outputs: int) -> None:
    built = build_circuit(spec)
    assert isinstance(built, BuiltCircuit)
    assert (built.n_input_params, built.n_weights, built.n_outputs) == (
        n_inputs,
        n_weights,
        n_outputs,
    )
    assert set(built.circuit.parameters) == set(built.inputs) | set(built.weights)
    assert built.n_qubits == spec.n_qubits


def test_circuit_is_linear_one_parameter_per_gate() -> None:
    built = build_circuit(CircuitSpec(n_qubits=3, n_layers=2, rotation="u3"))
    for ins in built.circuit.data:
        for param in ins.operation.params:
            assert param in set(built.inputs) | set(built.weights)


def test_reupload_encodes_every_layer_on_the_input_qubits() -> None:
    spec = CircuitSpec(n_qubits=3, n_layers=3, n_inputs=2, encoding="rx")
    built = build_circuit(spec)
    qc = built.circuit
    encoded = [
        (qc.find_bit(ins.qubits[0]).index, ins.operation.params[0])
        for ins in qc.data
        if ins.operation.name == "rx"
    ]
    assert encoded == [(i % 2, built.inputs[i]) for i in range(6)]


@pytest.mark.parametrize(
    ("n", "entanglement", "pairs"),
    [
        (4, "linear", [(0, 1), (1, 2), (2, 3)]),
        (4, "circular", [(0, 1), (1, 2), (2, 3), (3, 0)]),
        (2, "circular", [(0, 1)]),
        (3, "all_to_all", [(0, 1), (0, 2), (1, 2)]),
        (5, "parallel", [(0, 1), (2, 3), (1, 2), (3, 4)]),
        (4, "parallel", [(0, 1), (2, 3), (1, 2)]),
        (4, "none", []),
        (1, "circular", []),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_entangling_pairs(n: int, entanglement: str, pairs: list) -> None:
    assert entangling_pairs(n, entanglement) == pairs


@pytest.mark.parametrize("entangler", ["cnot", "cz"])
@pytest.mark.parametrize("entanglement", ENTANGLEMENTS)
def test_entanglement_block_gates(entanglement: str, entangler: str) -> None:
    spec = CircuitSpec(n_qubits=4, n_layers=2, entanglement=entanglement, entangler=entangler)
    gates = _two_qubit_gates(build_circuit(spec).circuit)
    name = {"cnot": "cx", "cz": "cz"}[entangler]
    assert gates == [(name, p) for p in entangling_pairs(4, entanglement)] * 2


def test_observables() -> None:
    built = build_circuit(CircuitSpec(n_qubits=3))
    assert built.observables == (
        SparsePauliOp("IIZ"),
        SparsePauliOp("IZI"),
        SparsePauliOp("ZII"),
    )
    parity = build_circuit(CircuitSpec(n_qubits=3, readout="parity", parity_groups=((0, 2), (1,))))
    assert parity.observables == (SparsePauliOp("ZIZ"), SparsePauliOp("IZI"))


def test_spec_is_frozen_and_hashable() -> None:
    spec = CircuitSpec(n_qubits=2)
    with pytest.raises(AttributeError):
        spec.n_qubits = 3  # type: ignore[misc]
    assert hash(spec) == hash(CircuitSpec(n_qubits=2))
