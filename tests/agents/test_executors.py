from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.circuit.library import U2Gate
from qiskit.quantum_info import SparsePauliOp, Statevector

from qdrl_agents.circuits import BuiltCircuit, CircuitSpec, build_circuit
from qdrl_agents.executors import Executor, QiskitExecutor, StatevectorExecutor, make_executor


def _reference(built: BuiltCircuit, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Expectation values by Qiskit's own Statevector, row by row."""
    rows = []
    for row in np.atleast_2d(inputs):
        binding = dict(zip(built.inputs, row.tolist(), strict=True))
        binding.update(zip(built.weights, weights.tolist(), strict=True))
        state = Statevector(built.circuit.assign_parameters(binding))
        rows.append([state.expectation_value(obs).real for obs in built.observables])
    return np.array(rows)


# (id, spec, max_fused_qubits): every rotation, entanglement, entangler, encoding and readout,
# 1-8 qubits, 1-5 layers, single-chunk and multi-chunk fusion.
SPECS = [
    ("1q-1l", CircuitSpec(n_qubits=1), 4),
    (
        "2q-2l-u3-linear-cnot-rx-parity",
        CircuitSpec(
            n_qubits=2,
            n_layers=2,
            rotation="u3",
            entanglement="linear",
            entangler="cnot",
            encoding="rx",
            readout="parity",
        ),
        4,
    ),
    (
        "3q-2l-all2all-cnot-rz",
        CircuitSpec(
            n_qubits=3, n_layers=2, entanglement="all_to_all", entangler="cnot", encoding="rz"
        ),
        4,
    ),
    ("4q-5l-circular-cz", CircuitSpec(n_qubits=4, n_layers=5), 4),
    (
        "4q-3l-u3-parallel-cz-noreupload",
        CircuitSpec(n_qubits=4, n_layers=3, rotation="u3", entanglement="parallel", reupload=False),
        4,
    ),
    (
        "5q-2l-circular-cnot-rx-parity-chunk2",
        CircuitSpec(
            n_qubits=5,
            n_layers=2,
            entangler="cnot",
            encoding="rx",
            readout="parity",
            parity_groups=((0, 1), (2, 3, 4)),
        ),
        2,
    ),
    (
        "6q-2l-u3-all2all-cz-inputs3",
        CircuitSpec(n_qubits=6, n_layers=2, rotation="u3", entanglement="all_to_all", n_inputs=3),
        4,
    ),
    (
        "7q-1l-parallel-cnot-chunk3-nofinal",
        CircuitSpec(n_qubits=7, entanglement="parallel", entangler="cnot", final_rotation=False),
        3,
    ),
    ("8q-2l-circular-cz", CircuitSpec(n_qubits=8, n_layers=2), 4),
    (
        "8q-1l-u3-none-rx",
        CircuitSpec(n_qubits=8, rotation="u3", entanglement="none", encoding="rx"),
        4,
    ),
    (
        "6q-3l-linear-cnot-perqubit",
        CircuitSpec(n_qubits=6, n_layers=3, entanglement="linear", entangler="cnot"),
        1,
    ),
]


class ExecutorContractMixin:
    """Behaviour every statevector run must show, on the device of the subclass."""

    device = "cpu"

    def _executor(self, built: BuiltCircuit, **options: object) -> Executor:
        return make_executor("statevector", built, **options)

    @pytest.mark.parametrize(("spec", "fused"), [s[1:] for s in SPECS], ids=[s[0] for s in SPECS])
    def test_matches_qiskit_statevector(self, spec: CircuitSpec, fused: int) -> None:
        built = build_circuit(spec)
        executor = self._executor(built, max_fused_qubits=fused)
        gen = torch.Generator().manual_seed(spec.n_qubits)
        x = torch.rand(3, built.n_input_params, generator=gen, dtype=torch.float64) * 6 - 3
        w = torch.rand(built.n_weights, generator=gen, dtype=torch.float64) * 6 - 3
        expected = _reference(built, x.numpy(), w.numpy())
        got = executor(x.to(self.device), w.to(self.device))
        assert got.dtype == torch.float64 and got.device.type == self.device
        np.testing.assert_allclose(got.cpu().numpy(), expected, atol=1e-10)
        got32 = executor(x.float().to(self.device), w.float().to(self.device))
        assert got32.dtype == torch.float32
        np.testing.assert_allclose(got32.cpu().numpy(), expected, atol=2e-5)

    @pytest.mark.parametrize("fused", [1, 2, 3], ids=["chunk1", "chunk2", "chunk3"])
    def test_gradcheck_inputs_and_weights(self, fused: int) -> None:
        spec = CircuitSpec(n_qubits=3, n_layers=2, rotation="u3", entangler="cnot")
        built = build_circuit(spec)
        executor = self._executor(built, max_fused_qubits=fused)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(2, built.n_input_params, generator=gen, dtype=torch.float64)
        w = torch.randn(built.n_weights, generator=gen, dtype=torch.float64)
        x = x.to(self.device).requires_grad_()
        w = w.to(self.device).requires_grad_()
        assert torch.autograd.gradcheck(executor, (x, w), eps=1e-6, atol=1e-7)

    def test_unbatched_input(self) -> None:
        built = build_circuit(CircuitSpec(n_qubits=2, n_layers=2))
        executor = self._executor(built)
        x = torch.linspace(-1, 1, built.n_input_params, device=self.device)
        w = torch.linspace(0, 2, built.n_weights, device=self.device)
        single = executor(x, w)
        assert single.shape == (built.n_outputs,)
        torch.testing.assert_close(single, executor(x[None], w)[0])

    def test_weights_cast_to_input_dtype(self) -> None:
        built = build_circuit(CircuitSpec(n_qubits=2))
        executor = self._executor(built)
        x = torch.zeros(4, built.n_input_params, dtype=torch.float64, device=self.device)
        w = torch.ones(built.n_weights, dtype=torch.float32, device=self.device, requires_grad=True)
        out = executor(x, w)
        assert out.dtype == torch.float64
        out.sum().backward()
        assert w.grad is not None and w.grad.dtype == torch.float32

    def test_forced_simulation_dtype(self) -> None:
        built = build_circuit(CircuitSpec(n_qubits=3, n_layers=3))
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(2, built.n_input_params, generator=gen).to(self.device)
        w = torch.randn(built.n_weights, generator=gen).to(self.device)
        expected = _reference(built, x.cpu().double().numpy(), w.cpu().double().numpy())
        out = self._executor(built, dtype=torch.float64)(x, w)
        assert out.dtype == torch.float32
        np.testing.assert_allclose(out.cpu().numpy(), expected, atol=1e-7)

    @pytest.mark.parametrize("batch", [1, 2, 16])
    def test_automatic_fusion_every_batch_size(self, batch: int) -> None:
        # auto mode switches to one dense matrix per layer for batches of 1-2
        built = build_circuit(CircuitSpec(n_qubits=4, n_layers=2, entangler="cnot"))
        executor = self._executor(built)
        gen = torch.Generator().manual_seed(batch)
        x = torch.randn(batch, built.n_input_params, generator=gen, dtype=torch.float64)
        w = torch.randn(built.n_weights, generator=gen, dtype=torch.float64)
        expected = _reference(built, x.numpy(), w.numpy())
        got = executor(x.to(self.device), w.to(self.device))
        np.testing.assert_allclose(got.cpu().numpy(), expected, atol=1e-10)


class TestStatevectorCPU(ExecutorContractMixin):
    device = "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
class TestStatevectorCUDA(ExecutorContractMixin):
    device = "cuda"


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small() -> tuple[BuiltCircuit, StatevectorExecutor]:
    built = build_circuit(CircuitSpec(n_qubits=2, n_layers=2))
    return built, StatevectorExecutor(built)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "match"),
    [
        ((3, 5), (12,), r"inputs must have shape \(B, 4\)"),
        ((3,), (12,), r"inputs must have shape \(B, 4\) or \(4,\)"),
        ((2, 3, 4), (12,), r"inputs must have shape \(B, 4\)"),
        ((3, 4), (11,), r"weights must have shape \(12,\)"),
        ((3, 4), (1, 12), r"weights must have shape \(12,\)"),
    ],
    ids=["inputs-width", "unbatched-width", "inputs-3d", "weights-length", "weights-2d"],
)
def test_wrong_shapes_say_expected_shape(
    small: tuple[BuiltCircuit, StatevectorExecutor], x_shape: tuple, w_shape: tuple, match: str
) -> None:
    built, executor = small
    assert (built.n_input_params, built.n_weights) == (4, 12)
    with pytest.raises(ValueError, match=match):
        executor(torch.zeros(x_shape), torch.zeros(w_shape))


def test_wrong_types(small: tuple[BuiltCircuit, StatevectorExecutor]) -> None:
    _, executor = small
    with pytest.raises(TypeError, match="float32 or float64"):
        executor(torch.zeros(1, 4, dtype=torch.int64), torch.zeros(12))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        executor(np.zeros((1, 4)), torch.zeros(12))  # type: ignore[arg-type]


def _custom(build: callable, observables: tuple | None = None) -> BuiltCircuit:
    x, w = ParameterVector("x", 1), ParameterVector("w", 1)
    qc = QuantumCircuit(2)
    build(qc, x, w)
    obs = observables or (SparsePauliOp("IZ"), SparsePauliOp("ZI"))
    return BuiltCircuit(CircuitSpec(n_qubits=2, n_inputs=1), qc, x, w, obs)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda qc, x, w: (qc.ry(x[0], 0), qc.rz(w[0], 1), qc.measure_all()), "'measure'"),
        (
            lambda qc, x, w: (qc.ry(x[0], 0), qc.rz(w[0], 1), qc.rx(ParameterVector("z", 1)[0], 1)),
            "'z\\[0\\]'",
        ),
    ],
    ids=["measure", "foreign-parameter"],
)
def test_uncompilable_circuits_name_the_problem(build: callable, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StatevectorExecutor(_custom(build))


@pytest.mark.parametrize(
    "build",
    [
        lambda qc, x, w: (qc.ry(x[0], 0), qc.rzz(w[0], 0, 1)),
        lambda qc, x, w: (qc.ry(x[0], 0), qc.ch(0, 1), qc.rz(w[0], 1)),
        lambda qc, x, w: (qc.ry(x[0] * w[0], 0),),
    ],
    ids=["param-two-qubit", "non-monomial", "non-affine"],
)
def test_circuits_beyond_the_fused_path_run_on_the_general_path(build: callable) -> None:
    """What the fused path cannot compile runs on the general path, with the same values."""
    built = _custom(build)
    with pytest.raises(ValueError, match="fused path"):
        StatevectorExecutor(built, path="fused")
    executor = StatevectorExecutor(built)
    assert executor.path == "general"
    x = torch.tensor([[0.3], [-1.2]], dtype=torch.float64)
    w = torch.tensor([0.8], dtype=torch.float64)
    np.testing.assert_allclose(executor(x, w).numpy(), _reference(built, x.numpy(), w.numpy()),
                               atol=1e-12)


def test_general_gates_and_observables() -> None:
    """Fixed gates, affine angles, multi-qubit monomials and off-diagonal Pauli observables."""

    def build(qc: QuantumCircuit, x: ParameterVector, w: ParameterVector) -> None:
        qc.h(0)
        qc.sx(1)
        qc.rx(2 * x[0] + 0.3, 0)
        qc.u(w[0], x[0] - w[0], 0.7, 1)
        qc.cy(0, 1)
        qc.swap(0, 1)
        qc.r(w[0], 0.4, 0)
        qc.p(x[0], 1)
        qc.s(1)
        qc.cx(1, 0)
        qc.t(0)
        qc.append(U2Gate(0.1, w[0]), [1])

    observables = (
        SparsePauliOp(["XY", "ZZ"], coeffs=[0.5, -1.0]),
        SparsePauliOp("YI"),
        SparsePauliOp(["IX", "II"], coeffs=[2.0, 0.25]),
    )
    built = _custom(build, observables)
    executor = StatevectorExecutor(built)
    x = torch.tensor([[0.3], [-1.2]], dtype=torch.float64)
    w = torch.tensor([0.8], dtype=torch.float64)
    reference = _reference(built, x.numpy(), w.numpy())
    # Without gradients a batch this small runs the NumPy path; with them, the torch program.
    np.testing.assert_allclose(executor(x, w).numpy(), reference, atol=1e-12)
    with_grad = executor(x.clone().requires_grad_(), w).detach().numpy()
    np.testing.assert_allclose(with_grad, reference, atol=1e-12)


def test_make_executor_choices() -> None:
    built = build_circuit(CircuitSpec(n_qubits=2))
    executor = make_executor("statevector", built)
    assert isinstance(executor, StatevectorExecutor)
    assert make_executor(executor, built) is executor
    with pytest.raises(ValueError, match=r"\['qiskit', 'statevector'\]"):
        make_executor("pennylane", built)
    with pytest.raises(ValueError, match="options"):
        make_executor(executor, built, dtype=torch.float64)
    with pytest.raises(ValueError, match="n_input_params"):
        make_executor(executor, build_circuit(CircuitSpec(n_qubits=3)))
    with pytest.raises(TypeError, match="Executor"):
        make_executor(3, built)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_fused_qubits"):
        StatevectorExecutor(built, max_fused_qubits=0)
    with pytest.raises(ValueError, match="dtype"):
        StatevectorExecutor(built, dtype=torch.int32)


# ------------------------------------------------------------- agreement with the qiskit path

# Each case costs 2 * (inputs + weights) * batch * outputs estimator pubs for the parameter-shift
# gradient, so the larger circuits read out one parity and run on qiskit-aer's exact estimator
# (estimator="aer"); the smallest covers the default (StatevectorEstimator).
AGREEMENT = [
    ("1q-1l-default-estimator", CircuitSpec(n_qubits=1), "default"),
    (
        "2q-5l-u3-linear-cnot-rx-parity",
        CircuitSpec(
            n_qubits=2,
            n_layers=5,
            rotation="u3",
            entanglement="linear",
            entangler="cnot",
            encoding="rx",
            readout="parity",
        ),
        "aer",
    ),
    (
        "3q-2l-all2all-cnot-rz-z",
        CircuitSpec(
            n_qubits=3, n_layers=2, entanglement="all_to_all", entangler="cnot", encoding="rz"
        ),
        "aer",
    ),
    (
        "4q-3l-u3-parallel-cz-noreupload-pairs",
        CircuitSpec(
            n_qubits=4,
            n_layers=3,
            rotation="u3",
            entanglement="parallel",
            reupload=False,
            readout="parity",
            parity_groups=((0, 1), (2, 3)),
        ),
        "aer",
    ),
    (
        "5q-2l-circular-cnot-rx-parity",
        CircuitSpec(n_qubits=5, n_layers=2, entangler="cnot", encoding="rx", readout="parity"),
        "aer",
    ),
    (
        "6q-1l-u3-all2all-cz-parity",
        CircuitSpec(n_qubits=6, rotation="u3", entanglement="all_to_all", readout="parity"),
        "aer",
    ),
    (
        "7q-4l-circular-cz-inputs3-parity",
        CircuitSpec(n_qubits=7, n_layers=4, n_inputs=3, readout="parity"),
        "aer",
    ),
    (
        "8q-1l-none-cnot-rx-nofinal-parity",
        CircuitSpec(
            n_qubits=8,
            entanglement="none",
            entangler="cnot",
            encoding="rx",
            readout="parity",
            parity_groups=((0, 3), (5, 7)),
            final_rotation=False,
        ),
        "aer",
    ),
]


def _aer_exact():
    from qiskit_aer.primitives import EstimatorV2

    return EstimatorV2(options={"default_precision": 0.0})


@pytest.mark.parametrize(
    ("spec", "estimator"), [a[1:] for a in AGREEMENT], ids=[a[0] for a in AGREEMENT]
)
def test_statevector_agrees_with_qiskit_executor(spec: CircuitSpec, estimator: str) -> None:
    built = build_circuit(spec)
    qiskit_executor = QiskitExecutor(built, estimator=None if estimator == "default" else estimator)
    gen = torch.Generator().manual_seed(spec.n_qubits + 10 * spec.n_layers)
    x0 = torch.rand(2, built.n_input_params, generator=gen, dtype=torch.float64) * 4 - 2
    w0 = torch.rand(built.n_weights, generator=gen, dtype=torch.float64) * 4 - 2
    upstream = torch.randn(2, built.n_outputs, generator=gen, dtype=torch.float64)
    results = []
    for executor in (StatevectorExecutor(built), qiskit_executor):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        out = executor(x, w)
        gx, gw = torch.autograd.grad(out, (x, w), upstream)
        results.append((out.detach(), gx, gw))
    (o1, gx1, gw1), (o2, gx2, gw2) = results
    assert o2.dtype == torch.float64
    torch.testing.assert_close(o1, o2, atol=1e-6, rtol=0)
    torch.testing.assert_close(gx1, gx2, atol=1e-5, rtol=0)
    torch.testing.assert_close(gw1, gw2, atol=1e-5, rtol=0)
    assert gx1.abs().max() > 1e-3 and gw1.abs().max() > 1e-3  # the gradients are not trivial


@pytest.fixture(scope="module")
def two_qubits() -> BuiltCircuit:
    return build_circuit(CircuitSpec(n_qubits=2, n_layers=2))


def test_qiskit_exact_path_has_no_shot_noise(two_qubits: BuiltCircuit) -> None:
    executor = QiskitExecutor(two_qubits)
    # EstimatorQNN's own default (0.015625) would add shot noise of that size.
    assert executor.qnn.default_precision == 0.0
    x = torch.linspace(-1, 1, 3 * two_qubits.n_input_params, dtype=torch.float64).view(3, -1)
    w = torch.linspace(-2, 2, two_qubits.n_weights, dtype=torch.float64)
    first, second = executor(x, w), executor(x, w)
    exact = StatevectorExecutor(two_qubits)(x, w)
    torch.testing.assert_close(first, exact, atol=1e-12, rtol=0)
    torch.testing.assert_close(second, exact, atol=1e-12, rtol=0)
    single = executor(x[0].float(), w.float())
    assert single.shape == (two_qubits.n_outputs,) and single.dtype == torch.float32


def _values_and_gradients(
    executor: Executor, x: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = executor(x, w)
    gx, gw = torch.autograd.grad(out.sum(), (x, w))
    return out.detach(), torch.cat([gx.flatten(), gw])


@pytest.mark.parametrize(("spec", "fused"), [s[1:] for s in SPECS], ids=[s[0] for s in SPECS])
def test_aer_estimator_is_exact(spec: CircuitSpec, fused: int) -> None:
    from qiskit_aer.primitives import EstimatorV2

    built = build_circuit(spec)
    executor = QiskitExecutor(built, estimator="aer")
    assert isinstance(executor.estimator, EstimatorV2)
    assert executor.estimator.options.default_precision == 0.0
    assert executor.estimator.options.backend_options == {"method": "statevector"}
    assert executor.qnn.default_precision == 0.0
    gen = torch.Generator().manual_seed(spec.n_qubits)
    x = torch.rand(3, built.n_input_params, generator=gen, dtype=torch.float64) * 6 - 3
    w = torch.rand(built.n_weights, generator=gen, dtype=torch.float64) * 6 - 3
    first, second = executor(x, w), executor(x, w)
    assert torch.equal(first, second)  # no sampling noise
    expected = _reference(built, x.numpy(), w.numpy())
    np.testing.assert_allclose(first.numpy(), expected, atol=1e-10, rtol=0)
    # precision=None defers to the estimator's own default, 0 for the built-in ones
    for name in ("aer", "reference"):
        deferred = QiskitExecutor(built, estimator=name, precision=None)(x, w)
        np.testing.assert_allclose(deferred.numpy(), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "spec",
    [
        CircuitSpec(n_qubits=2, n_layers=2),
        CircuitSpec(
            n_qubits=3, n_layers=2, entanglement="all_to_all", entangler="cnot", readout="parity"
        ),
    ],
    ids=["2q-2l", "3q-2l-all2all-cnot-parity"],
)
def test_reference_estimator_is_the_default_and_agrees_with_aer(spec: CircuitSpec) -> None:
    from qiskit.primitives import StatevectorEstimator

    built = build_circuit(spec)
    reference = make_executor("qiskit", built, estimator="reference")
    assert isinstance(reference.estimator, StatevectorEstimator)
    assert isinstance(QiskitExecutor(built).estimator, StatevectorEstimator)
    assert "StatevectorEstimator" in repr(reference)
    instance = QiskitExecutor(built, estimator=StatevectorEstimator())
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(2, built.n_input_params, generator=gen, dtype=torch.float64) * 4 - 2
    w = torch.rand(built.n_weights, generator=gen, dtype=torch.float64) * 4 - 2
    ref_values, ref_grads = _values_and_gradients(reference, x, w)
    # exact Aer and the reference agree to 1e-10 on values and parameter-shift gradients
    for other in (QiskitExecutor(built), QiskitExecutor(built, estimator="aer"), instance):
        values, grads = _values_and_gradients(other, x, w)
        torch.testing.assert_close(values, ref_values, atol=1e-10, rtol=0)
        torch.testing.assert_close(grads, ref_grads, atol=1e-10, rtol=0)
    assert ref_grads.abs().max() > 1e-3


def test_qiskit_shots_add_noise_of_the_shot_scale(two_qubits: BuiltCircuit) -> None:
    shots = 400
    executor = QiskitExecutor(two_qubits, shots=shots, seed=7)
    assert executor.precision == pytest.approx(1 / 20)
    x = torch.zeros(64, two_qubits.n_input_params, dtype=torch.float64)
    w = torch.full((two_qubits.n_weights,), 0.4, dtype=torch.float64)
    error = executor(x, w) - StatevectorExecutor(two_qubits)(x, w)
    assert 0.02 < error.std().item() < 0.1


def test_qiskit_noise_model_damps_expectations(two_qubits: BuiltCircuit) -> None:
    from qiskit_aer.noise import NoiseModel, depolarizing_error

    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(0.05, 1), ["ry", "rz"])
    noise.add_all_qubit_quantum_error(depolarizing_error(0.1, 2), ["cz"])
    executor = QiskitExecutor(two_qubits, noise_model=noise, seed=3)
    x = torch.zeros(1, two_qubits.n_input_params, dtype=torch.float64)
    w = torch.zeros(two_qubits.n_weights, dtype=torch.float64)
    noisy = executor(x, w)  # the noiseless circuit leaves |00>: <Z> = 1 on both qubits
    assert torch.all(noisy < 0.97) and torch.all(noisy > 0.3)


def test_qiskit_spsa_gradient_is_a_directional_estimate() -> None:
    built = build_circuit(CircuitSpec(n_qubits=2, n_layers=2, readout="parity"))
    executor = QiskitExecutor(built, gradient="spsa", spsa_epsilon=1e-4, seed=5)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, built.n_input_params, generator=gen, dtype=torch.float64)
    w = torch.rand(built.n_weights, generator=gen, dtype=torch.float64)
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    spsa = torch.cat([g.flatten() for g in torch.autograd.grad(executor(xs, ws).sum(), (xs, ws))])
    xe, we = x.clone().requires_grad_(), w.clone().requires_grad_()
    exact = torch.autograd.grad(StatevectorExecutor(built)(xe, we).sum(), (xe, we))
    exact = torch.cat([exact[0].flatten(), exact[1]])
    # SPSA: g_i = (grad . delta) / delta_i with delta_i = +-1, so |g_i| is one value D and
    # delta = sign(g) * sign(D); the exact gradient along that direction must give |D|.
    magnitude = spsa.abs()
    torch.testing.assert_close(magnitude, magnitude[0].expand_as(magnitude), atol=1e-6, rtol=0)
    directional = (exact * torch.sign(spsa)).sum().abs()
    torch.testing.assert_close(directional, magnitude[0], atol=1e-6, rtol=0)


def test_qiskit_executor_options_are_validated(two_qubits: BuiltCircuit) -> None:
    with pytest.raises(ValueError, match="not both"):
        QiskitExecutor(two_qubits, shots=100, precision=0.1)
    with pytest.raises(ValueError, match="shots"):
        QiskitExecutor(two_qubits, shots=0)
    with pytest.raises(ValueError, match="precision"):
        QiskitExecutor(two_qubits, precision=-0.1)
    with pytest.raises(ValueError, match="gradient"):
        QiskitExecutor(two_qubits, gradient="finite_diff")
    with pytest.raises(ValueError, match="shots"):
        QiskitExecutor(two_qubits, estimator=_aer_exact(), shots=100)
    with pytest.raises(TypeError, match="BaseEstimatorV2"):
        QiskitExecutor(two_qubits, estimator=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'statevector' is not one of \['reference', 'aer'\]"):
        QiskitExecutor(two_qubits, estimator="statevector")
    with pytest.raises(ValueError, match="shots=100 needs qiskit-aer"):
        QiskitExecutor(two_qubits, estimator="reference", shots=100)
    from qiskit_aer.noise import NoiseModel

    with pytest.raises(ValueError, match=r"noise_model=.* needs qiskit-aer"):
        QiskitExecutor(two_qubits, estimator="reference", noise_model=NoiseModel())
    assert QiskitExecutor(two_qubits, estimator="aer", shots=100).precision == pytest.approx(0.1)
    assert isinstance(make_executor("qiskit", two_qubits, shots=10), QiskitExecutor)


@pytest.mark.parametrize("name", ["statevector", "qiskit"])
def test_executors_pickle_and_deepcopy(name: str, two_qubits: BuiltCircuit) -> None:
    import copy
    import pickle

    executor = make_executor(name, two_qubits)
    x = torch.linspace(-1, 1, 2 * two_qubits.n_input_params).view(2, -1)
    w = torch.linspace(0, 1, two_qubits.n_weights)
    expected = executor(x, w)
    for clone in (copy.deepcopy(executor), pickle.loads(pickle.dumps(executor))):
        torch.testing.assert_close(clone(x, w), expected)


@pytest.mark.parametrize("spec", [
    CircuitSpec(n_qubits=1, n_layers=2),
    CircuitSpec(n_qubits=2, n_layers=3, rotation="u3", entanglement="linear", entangler="cnot"),
    CircuitSpec(n_qubits=3, n_layers=2, entanglement="all_to_all", readout="parity"),
    CircuitSpec(n_qubits=4, n_layers=5),
    CircuitSpec(n_qubits=5, n_layers=2, entanglement="parallel", entangler="cnot",
                encoding="rx", reupload=False, final_rotation=False),
], ids=["1q", "2q-u3-linear-cnot", "3q-all2all-parity", "4q-5l", "5q-parallel-rx-noreupload"])
@pytest.mark.parametrize("batch", [1, 2])
def test_numpy_inference_path_matches_the_torch_program(spec: CircuitSpec, batch: int) -> None:
    """Small no-grad batches run the program in NumPy; it must give the torch program's values."""
    from qdrl_agents.executors import StatevectorExecutor

    built = build_circuit(spec)
    ex = StatevectorExecutor(built)
    gen = torch.Generator().manual_seed(batch)
    for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        x = torch.rand(batch, built.n_input_params, generator=gen, dtype=torch.float64) * 6 - 3
        w = torch.rand(built.n_weights, generator=gen, dtype=torch.float64) * 6 - 3
        x, w = x.to(dtype), w.to(dtype)
        with torch.no_grad():
            fast = ex(x, w)
        torch_path = ex(x.clone().requires_grad_(), w).detach()
        assert fast.dtype == dtype and fast.shape == (batch, built.n_outputs)
        torch.testing.assert_close(fast, torch_path, atol=atol, rtol=0)
