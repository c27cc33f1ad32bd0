"""The statevector executor on any unitary Qiskit circuit (the general path, and unrolling)."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from qiskit.circuit import (
    AnnotatedOperation,
    ControlModifier,
    InverseModifier,
    Parameter,
    ParameterVector,
    QuantumCircuit,
)
from qiskit.circuit.library import (
    PauliEvolutionGate,
    RXGate,
    RYGate,
    StatePreparation,
    UnitaryGate,
    efficient_su2,
    excitation_preserving,
    get_standard_gate_name_mapping,
    n_local,
    pauli_feature_map,
    real_amplitudes,
    z_feature_map,
    zz_feature_map,
)
from qiskit.quantum_info import Operator, SparsePauliOp, Statevector, random_unitary

from qdrl_agents.circuits import BuiltCircuit, CircuitSpec, build_circuit, circuit_from_qiskit
from qdrl_agents.executors import StatevectorExecutor
from qdrl_agents.executors.statevector_general import _basis, _fit, unroll


def _reference(built: BuiltCircuit, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Expectation values by Qiskit's own Statevector, row by row."""
    rows = []
    for row in np.atleast_2d(inputs):
        binding = dict(zip(built.inputs, row.tolist(), strict=True))
        binding.update(zip(built.weights, weights.tolist(), strict=True))
        state = Statevector(built.circuit.assign_parameters(binding))
        rows.append([state.expectation_value(obs).real for obs in built.observables])
    return np.array(rows)


def _z_each(n: int) -> list[SparsePauliOp]:
    return [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], n) for q in range(n)]


def _data(built: BuiltCircuit, batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, built.n_input_params, generator=gen, dtype=torch.float64) * 4 - 2
    w = torch.rand(built.n_weights, generator=gen, dtype=torch.float64) * 4 - 2
    return x, w


def _check_gradients(executor: StatevectorExecutor, x: torch.Tensor, w: torch.Tensor,
                     atol: float = 1e-6) -> None:
    """Autograd against central finite differences of the (float64) forward."""
    gen = torch.Generator().manual_seed(7)
    v = torch.randn(x.shape[0], executor.built.n_outputs, generator=gen, dtype=torch.float64)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    (executor(xg, wg) * v).sum().backward()
    eps = 1e-5

    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (executor(a, b) * v).sum(1)

    for j in range(x.shape[1]):  # rows are independent: one column at a time for all rows
        e = torch.zeros_like(x)
        e[:, j] = eps
        fd = (f(x + e, w) - f(x - e, w)) / (2 * eps)
        np.testing.assert_allclose(xg.grad[:, j].numpy(), fd.numpy(), atol=atol)
    for j in range(w.shape[0]):
        e = torch.zeros_like(w)
        e[j] = eps
        fd = ((f(x, w + e) - f(x, w - e)) / (2 * eps)).sum()
        np.testing.assert_allclose(wg.grad[j].item(), fd.item(), atol=atol)


def _agree(built: BuiltCircuit, path: str | None = None, batch: int = 3) -> StatevectorExecutor:
    executor = StatevectorExecutor(built)
    if path is not None:
        assert executor.path == path
    x, w = _data(built, batch)
    expected = _reference(built, x.numpy(), w.numpy())
    got = executor(x.clone().requires_grad_(), w)
    assert got.dtype == torch.float64 and got.shape == expected.shape
    np.testing.assert_allclose(got.detach().numpy(), expected, atol=1e-10)
    got32 = executor(x.float(), w.float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, atol=2e-5)
    _check_gradients(executor, x, w)
    return executor


# --------------------------------------------------------------- feature map x ansatz matrix

_FMAPS: dict[str, Callable[..., QuantumCircuit]] = {
    "zz": lambda n, ent: zz_feature_map(n, reps=2, entanglement=ent),
    "z": lambda n, ent: z_feature_map(n, reps=2),
    "pauli": lambda n, ent: pauli_feature_map(n, reps=1, entanglement=ent,
                                              paulis=["Y", "XZ"] if n > 1 else ["Y"]),
}
_ANSATZES: dict[str, Callable[..., QuantumCircuit]] = {
    "real_amplitudes": lambda n, ent, r: real_amplitudes(n, reps=r, entanglement=ent),
    "efficient_su2": lambda n, ent, r: efficient_su2(n, reps=r, entanglement=ent),
    "n_local_crx": lambda n, ent, r: n_local(n, "ry", "crx", entanglement=ent, reps=r),
    "n_local_rzz": lambda n, ent, r: n_local(n, ["ry", "rz"], "rzz", entanglement=ent, reps=r),
    "excitation_preserving": lambda n, ent, r: excitation_preserving(
        n, entanglement=ent, reps=r),
}
# (feature map, ansatz, entanglement, qubits, reps, expected path): every feature map,
# ansatz and entanglement, 1-4 qubits, reps 1-2.
MATRIX = [
    ("z", "real_amplitudes", "linear", 1, 2, "fused"),
    ("z", "efficient_su2", "full", 3, 1, "fused"),
    ("zz", "real_amplitudes", "linear", 2, 1, "general"),
    ("zz", "efficient_su2", "full", 3, 2, "general"),
    ("zz", "n_local_crx", "linear", 4, 1, "general"),
    ("zz", "excitation_preserving", "full", 3, 1, "general"),
    ("pauli", "n_local_rzz", "full", 2, 2, "general"),
    ("pauli", "real_amplitudes", "full", 4, 1, "general"),
    ("z", "n_local_crx", "full", 3, 2, "general"),
    ("pauli", "excitation_preserving", "linear", 4, 1, "general"),
    ("zz", "n_local_rzz", "linear", 4, 2, "general"),
    ("pauli", "efficient_su2", "linear", 1, 1, "fused"),
]


@pytest.mark.parametrize(
    ("fmap", "ansatz", "entanglement", "n", "reps", "path"),
    MATRIX,
    ids=[f"{m[0]}-{m[1]}-{m[2]}-{m[3]}q-r{m[4]}" for m in MATRIX],
)
def test_feature_map_and_ansatz_agree_with_qiskit(
    fmap: str, ansatz: str, entanglement: str, n: int, reps: int, path: str
) -> None:
    fm = _FMAPS[fmap](n, entanglement)
    an = _ANSATZES[ansatz](n, entanglement, reps)
    built = circuit_from_qiskit(fm.compose(an), fm.parameters, an.parameters, _z_each(n))
    _agree(built, path)


def test_class_forms_are_unrolled() -> None:
    """The (deprecated) class forms are single composite gates: unrolled through definitions."""
    from qiskit.circuit.library import RealAmplitudes, TwoLocal, ZZFeatureMap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fm, an = ZZFeatureMap(3), RealAmplitudes(3, reps=2)
        two_local = TwoLocal(2, "ry", "crz", reps=1)
        fm2 = ZZFeatureMap(2)
    built = circuit_from_qiskit(fm.compose(an), fm.parameters, an.parameters, _z_each(3))
    _agree(built, "general")
    # a class form alone on the fused path: the unrolled RealAmplitudes is RY + CX
    ra = circuit_from_qiskit(an, None, an.parameters, _z_each(3))
    assert StatevectorExecutor(ra).path == "fused"
    built = circuit_from_qiskit(fm2.compose(two_local), fm2.parameters, two_local.parameters,
                                ["ZZ", "XI", "IY"])
    _agree(built, "general")


def test_agreement_with_estimator_qnn() -> None:
    """Values, input and weight gradients against EstimatorQNN (exact StatevectorEstimator)."""
    from qiskit.primitives import StatevectorEstimator
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    fm, an = zz_feature_map(3, reps=1), real_amplitudes(3, reps=1)
    built = circuit_from_qiskit(fm.compose(an), fm.parameters, an.parameters,
                                ["ZII", "IXI", "IIZ"])
    qnn = EstimatorQNN(circuit=built.circuit, estimator=StatevectorEstimator(),
                       observables=list(built.observables), input_params=list(built.inputs),
                       weight_params=list(built.weights), input_gradients=True,
                       default_precision=0.0)  # its default adds shot-like noise
    executor = StatevectorExecutor(built)
    x, w = _data(built, batch=2)
    np.testing.assert_allclose(executor(x, w).numpy(), qnn.forward(x.numpy(), w.numpy()),
                               atol=1e-10)
    input_jac, weight_jac = qnn.backward(x.numpy(), w.numpy())  # (B, out, in), (B, out, w)
    ours_x = torch.autograd.functional.jacobian(lambda a: executor(a, w), x)  # (B, out, B, in)
    ours_w = torch.autograd.functional.jacobian(lambda b: executor(x, b), w)  # (B, out, w)
    ours_x = torch.einsum("bobi->boi", ours_x)
    np.testing.assert_allclose(ours_x.numpy(), input_jac, atol=1e-6)
    np.testing.assert_allclose(ours_w.numpy(), weight_jac, atol=1e-6)


# ------------------------------------------------------------------------ individual gates

_GATES = ["rzz", "rxx", "ryy", "rzx", "crx", "cry", "crz", "cp", "cu", "cu1", "cu3", "ch",
          "ecr", "ccx", "cswap", "xx_plus_yy", "xx_minus_yy", "iswap", "dcx", "csx", "r", "u",
          "u2", "rccx", "c3sx"]


@pytest.mark.parametrize("name", _GATES)
def test_every_gate_agrees_with_qiskit(name: str) -> None:
    x, w = ParameterVector("x", 2), ParameterVector("w", 4)
    gate = get_standard_gate_name_mapping()[name].to_mutable()
    k, m = gate.num_qubits, len(gate.params)
    n = max(3, k)
    angles = [w[1] + x[0], 2 * w[2], w[3] * x[1], x[0] ** 2][:m]
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.ry(x[q % 2] + 0.2 * q, q)
    qc.h(0)
    qc.rx(w[0], 2)
    gate.params = angles
    qc.append(gate, list(range(k)))  # contiguous, ascending
    qc.append(gate, [n - 1 - j for j in range(k)])  # descending
    if n >= 3:
        spread = [0, n - 1, *range(1, k - 1)][:k]
        qc.append(gate, spread)  # non-contiguous
    qc.ry(w[1], 0)
    qc.cx(0, 1)
    params = [p for p in (*x, *w) if p in qc.parameters]
    observables = [SparsePauliOp(["Z" * n, "X" + "I" * (n - 2) + "Y"], [0.5, 0.3])]
    observables += _z_each(n)
    built = circuit_from_qiskit(qc, [p for p in params if p in set(x)], None, observables)
    # affine one-qubit gates and fixed permutation-with-phase gates stay on the fused path
    fused = {"r", "u2", "ccx", "cswap", "iswap", "dcx", "rccx"}
    _agree(built, "fused" if name in fused else "general")


def test_fitted_standard_gate_matrices_are_exact() -> None:
    """Every parameterised standard gate's fitted matrix equals Qiskit's at random angles."""
    rng = np.random.default_rng(1)
    for name, gate in get_standard_gate_name_mapping().items():
        if not gate.params or name in ("global_phase", "delay"):
            continue
        fit = _fit(gate)
        assert fit is not None, name
        for _ in range(3):
            t = rng.uniform(-10, 10, size=len(gate.params))
            b = _basis(t)
            weights = np.prod(b[np.arange(len(t))[None, :], fit.terms], axis=1)
            g = gate.to_mutable()
            g.params = list(t)
            np.testing.assert_allclose(np.tensordot(weights, fit.coefs, 1), Operator(g).data,
                                       atol=1e-12, err_msg=name)


def test_fixed_composite_controlled_and_annotated_gates() -> None:
    x, w = ParameterVector("x", 2), ParameterVector("w", 3)
    sub = QuantumCircuit(2, global_phase=w[0] * x[0])  # a phase that matters once controlled
    sub.rx(w[1], 0)
    sub.rzz(x[1], 0, 1)
    sub.h(1)
    qc = QuantumCircuit(4)
    qc.h(0)
    qc.ry(x[0], 1)
    qc.ry(x[1], 3)
    qc.append(sub.to_gate().control(1), [0, 1, 2])
    qc.append(sub.to_gate().control(1, ctrl_state=0), [3, 0, 2])
    qc.append(UnitaryGate(random_unitary(4, seed=3)), [3, 0])
    qc.append(StatePreparation([0.6, 0.8j]), [1])
    qc.append(PauliEvolutionGate(SparsePauliOp(["XY", "ZZ"]), time=w[2] * x[1]), [0, 2])
    qc.append(AnnotatedOperation(RXGate(w[2]), [InverseModifier(), ControlModifier(1)]), [0, 1])
    qc.append(AnnotatedOperation(UnitaryGate(random_unitary(2, seed=1)), [ControlModifier(1)]),
              [2, 3])
    qc.append(RYGate(x[0] + w[0]).control(2, annotated=False), [0, 1, 2])
    qc.barrier()
    qc.id(0)
    qc.delay(10, 0)
    qc.cry(w[1], 1, 2)
    built = circuit_from_qiskit(qc, x, None, ["ZZIX", "IXYI", "ZIII", "IIIZ"])
    _agree(built, "general")


def test_box_is_inlined() -> None:
    x, w = ParameterVector("x", 2), ParameterVector("w", 2)
    boxed, plain = QuantumCircuit(2), QuantumCircuit(2)
    for qc in (boxed, plain):
        qc.ry(x[0], 0)
    with boxed.box():
        boxed.crx(w[0], 0, 1)
        boxed.ry(x[1] * w[1], 1)
    plain.crx(w[0], 0, 1)
    plain.ry(x[1] * w[1], 1)
    a = StatevectorExecutor(circuit_from_qiskit(boxed, x, None))
    b = StatevectorExecutor(circuit_from_qiskit(plain, x, None))
    xs, ws = torch.randn(3, 2, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    torch.testing.assert_close(a(xs, ws), b(xs, ws), atol=1e-14, rtol=0)
    np.testing.assert_allclose(b(xs, ws).numpy(), _reference(b.built, xs.numpy(), ws.numpy()),
                               atol=1e-10)


# ---------------------------------------------------------------------- angle expressions


@pytest.mark.parametrize(
    "angle",
    [
        lambda x, w: (x[0] * w[0]).sin() + x[1].exp() * 0.3,
        lambda x, w: (x[0] - w[1]).cos() * w[0] ** 3,
        lambda x, w: (x[1] * x[1] + 1.5).log() - w[0].arctan(),
        lambda x, w: (x[0] + w[1]).abs() + (0.5 * x[1]).tan(),
        lambda x, w: 2 * (np.pi - x[0]) * (np.pi - x[1]) + w[0] / 3,
        lambda x, w: (x[0] * 0.3).arcsin() + (x[1] * 0.2).arccos() * w[1],
        lambda x, w: (x[0] * w[0] * w[1] - x[1]) ** 2,
    ],
    ids=["sin-exp", "cos-pow3", "log-arctan", "abs-tan", "zz-product", "arcsin-arccos",
         "square"],
)
def test_angle_expressions_are_differentiable(angle: Callable) -> None:
    x, w = ParameterVector("x", 2), ParameterVector("w", 2)
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.ry(angle(x, w), 0)
    qc.rzz(angle(x, w) * 0.5, 0, 1)
    qc.crx(angle(x, w), 0, 1)
    qc.p(angle(x, w), 1)
    qc.rx(w[0] + w[1] + x[0] + x[1], 1)
    built = circuit_from_qiskit(qc, x, w, ["XZ", "YI", "IZ"])
    _agree(built, "general")


def test_parameter_outside_inputs_and_weights_is_refused() -> None:
    x, z = ParameterVector("x", 1), Parameter("z")
    qc = QuantumCircuit(2)
    qc.ry(x[0], 0)
    qc.rzz(z * x[0], 0, 1)
    built = BuiltCircuit(None, qc, tuple(x), (), (SparsePauliOp("ZZ"),))
    with pytest.raises(ValueError, match="'z'"):
        StatevectorExecutor(built)


# --------------------------------------------------------------------------------- refusals


def _with(build: Callable[[QuantumCircuit], object], clbits: int = 0) -> BuiltCircuit:
    x = ParameterVector("x", 1)
    qc = QuantumCircuit(2, clbits)
    qc.ry(x[0], 0)
    qc.rzz(x[0] * x[0], 0, 1)
    build(qc)
    return circuit_from_qiskit(qc, x, None, ["ZZ"])


def _if_else(qc: QuantumCircuit) -> None:
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(0)


def _for_loop(qc: QuantumCircuit) -> None:
    with qc.for_loop(range(2)):
        qc.x(0)


def _while_loop(qc: QuantumCircuit) -> None:
    with qc.while_loop((qc.clbits[0], 0)):
        qc.x(0)


def _nested_measure(qc: QuantumCircuit) -> None:
    inner = QuantumCircuit(1, 1)
    inner.h(0)
    inner.measure(0, 0)
    qc.append(inner.to_instruction(), [1], [0])


@pytest.mark.parametrize(
    ("build", "clbits", "match"),
    [
        (lambda qc: qc.measure_all(), 0, r"'measure'.*remove the measurements"),
        (lambda qc: qc.measure(0, 0), 1, r"'measure'.*expectation values"),
        (lambda qc: qc.reset(1), 0, r"'reset'"),
        (lambda qc: qc.initialize([0, 1], 1), 0, r"'initialize'.*StatePreparation"),
        (_if_else, 1, r"'if_else'.*control flow"),
        (_for_loop, 0, r"'for_loop'.*control flow"),
        (_while_loop, 1, r"'while_loop'.*control flow"),
        (_nested_measure, 1, r"'measure'.*inside 'circuit"),
    ],
    ids=["measure-all", "measure", "reset", "initialize", "if-else", "for-loop", "while-loop",
         "nested-measure"],
)
def test_non_unitary_instructions_are_refused_at_construction(
    build: Callable, clbits: int, match: str
) -> None:
    built = _with(build, clbits)
    with pytest.raises(ValueError, match=match):
        StatevectorExecutor(built)
    with pytest.raises(ValueError, match=match):
        unroll(built.circuit)


# ----------------------------------------------------------------------------- the executor


def test_project_circuits_keep_the_fused_path() -> None:
    for spec in (CircuitSpec(n_qubits=4, n_layers=5),
                 CircuitSpec(n_qubits=3, rotation="u3", entangler="cnot", encoding="rx")):
        built = build_circuit(spec)
        assert StatevectorExecutor(built).path == "fused"
        general = StatevectorExecutor(built, path="general")
        assert general.path == "general"
        x, w = _data(built)
        torch.testing.assert_close(general(x, w), StatevectorExecutor(built)(x, w),
                                   atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="path"):
        StatevectorExecutor(built, path="fast")


def test_numpy_inputs_raise_a_clear_type_error() -> None:
    fm, an = zz_feature_map(2, reps=1), real_amplitudes(2, reps=1)
    built = circuit_from_qiskit(fm.compose(an), fm.parameters, an.parameters)
    executor = StatevectorExecutor(built)
    with pytest.raises(TypeError, match=r"inputs must be a torch\.Tensor.*torch\.as_tensor"):
        executor(np.zeros((1, 2)), torch.zeros(4))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"weights must be a torch\.Tensor"):
        executor(torch.zeros(1, 2), np.zeros(4))  # type: ignore[arg-type]
    text = repr(executor)
    assert "n_qubits=2" in text and "n_weights=4" in text and "path='general'" in text


def test_general_path_pickles_batches_and_unbatched() -> None:
    fm, an = zz_feature_map(3, reps=1), n_local(3, "ry", "crx", reps=1)
    built = circuit_from_qiskit(fm.compose(an), fm.parameters, an.parameters, _z_each(3))
    executor = StatevectorExecutor(built)
    x, w = _data(built, batch=4)
    expected = executor(x, w)
    for clone in (copy.deepcopy(executor), pickle.loads(pickle.dumps(executor))):
        torch.testing.assert_close(clone(x, w), expected)
    torch.testing.assert_close(executor(x[1], w), expected[1])
    for batch in (1, 2, 33):  # no batch-size special cases on the general path
        xb = x[:1].expand(batch, -1)
        torch.testing.assert_close(executor(xb, w), expected[:1].expand(batch, -1))
    with torch.no_grad():
        torch.testing.assert_close(executor(x, w), expected)
    x32 = x.float().requires_grad_()
    out = executor(x32, w.float())
    out.sum().backward()
    assert out.dtype == torch.float32 and x32.grad is not None and x32.grad.dtype == torch.float32
    forced = StatevectorExecutor(built, dtype=torch.float64)(x.float(), w.float())
    assert forced.dtype == torch.float32
    np.testing.assert_allclose(forced.numpy(), expected.numpy(), atol=1e-6)


def test_weight_only_and_input_only_circuits() -> None:
    an = n_local(2, "rx", "rzz", reps=1)
    _agree(circuit_from_qiskit(an, None, an.parameters, _z_each(2)), "general")
    fm = zz_feature_map(2, reps=1)
    _agree(circuit_from_qiskit(fm, fm.parameters, None, _z_each(2)), "general")
    fm = z_feature_map(2, reps=2)
    _agree(circuit_from_qiskit(fm, fm.parameters, None, _z_each(2)), "fused")
    fixed = QuantumCircuit(2)
    fixed.h(0)
    fixed.ch(0, 1)
    built = circuit_from_qiskit(fixed, None, None, _z_each(2))
    executor = StatevectorExecutor(built)
    out = executor(torch.zeros(3, 0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64))
    np.testing.assert_allclose(out.numpy(), _reference(built, np.zeros((3, 0)), np.zeros(0)),
                               atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_general_path_on_cuda() -> None:
    fm, an = zz_feature_map(3, reps=1), n_local(3, "ry", "crx", reps=1)
    built = circuit_from_qiskit(fm.compose(an), fm.parameters, an.parameters, _z_each(3))
    executor = StatevectorExecutor(built)
    x, w = _data(built)
    got = executor(x.cuda().requires_grad_(), w.cuda())
    assert got.device.type == "cuda"
    np.testing.assert_allclose(got.detach().cpu().numpy(),
                               _reference(built, x.numpy(), w.numpy()), atol=1e-10)
    got.sum().backward()
