"""QuantumLayer and the hybrid compositions (classical->quantum, quantum->classical, parallel)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector
from torch import nn

from qdrl_agents import (
    CircuitSpec,
    ClassicalToQuantum,
    LayerOptions,
    ParallelHybrid,
    QuantumLayer,
    QuantumToClassical,
    make_encoder,
)
from qdrl_agents.executors import make_executor
from qdrl_agents.layers import PARAMETER_GROUPS, parameter_counts, quantum_parameter_groups


def _layer(**kwargs) -> QuantumLayer:
    spec_kwargs = {
        k: kwargs.pop(k)
        for k in list(kwargs)
        if k in ("n_qubits", "n_layers", "n_inputs", "reupload", "readout", "parity_groups")
    }
    spec = CircuitSpec(**{"n_qubits": 3, "n_layers": 2, **spec_kwargs})
    return QuantumLayer(spec, **kwargs)


def _qiskit_expectations(layer: QuantumLayer, x: np.ndarray) -> np.ndarray:
    """Reference: bind lambda * squash(x) and the weights into the Qiskit circuit directly."""
    built = layer.built
    squash = {"arctan": np.arctan, "tanh": np.tanh, "none": lambda v: v}[layer.squash]
    lam = layer.input_scaling.detach().double().numpy()
    angles = (lam * squash(x)[None, :]).reshape(-1)
    binding = dict(zip(built.inputs, angles, strict=True))
    binding.update(zip(built.weights, layer.weights.detach().double().numpy(), strict=True))
    state = Statevector(built.circuit.assign_parameters(binding))
    out = np.array([state.expectation_value(obs).real for obs in built.observables])
    if layer.output_scaling is not None:
        out = out * layer.output_scaling.detach().double().numpy()
    if layer.output_bias is not None:
        out = out + layer.output_bias.detach().double().numpy()
    return out


@pytest.mark.parametrize("squash", ["arctan", "tanh", "none"])
def test_layer_matches_qiskit_statevector(squash: str) -> None:
    torch.manual_seed(0)
    layer = _layer(n_qubits=3, n_layers=2, n_inputs=2, squash=squash, output_bias=True)
    with torch.no_grad():
        layer.input_scaling.uniform_(0.5, 2.0)
        layer.output_scaling.uniform_(0.5, 3.0)
        layer.output_bias.uniform_(-1.0, 1.0)
    x = torch.tensor([[0.3, -1.7], [2.5, 0.1]], dtype=torch.float64)
    got = layer(x).detach().numpy()
    for row in range(2):
        np.testing.assert_allclose(got[row], _qiskit_expectations(layer, x[row].numpy()), atol=1e-5)


def test_encode_is_lambda_times_squash_layer_major() -> None:
    layer = _layer(n_qubits=3, n_layers=2, squash="arctan")
    with torch.no_grad():
        layer.input_scaling.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    x = torch.tensor([[0.5, -1.0, 2.0]])
    expected = torch.cat(
        [layer.input_scaling[0] * torch.atan(x[0]), layer.input_scaling[1] * torch.atan(x[0])]
    )
    torch.testing.assert_close(layer.encode(x)[0], expected)
    assert layer.input_scaling.shape == (2, 3)


def test_no_reupload_has_one_scaling_row() -> None:
    layer = _layer(n_qubits=3, n_layers=3, reupload=False)
    assert layer.input_scaling.shape == (1, 3)
    assert layer(torch.zeros(4, 3)).shape == (4, 3)


def test_shapes_batched_and_unbatched() -> None:
    layer = _layer(n_qubits=3, readout="parity", parity_groups=((0, 1), (2,)))
    assert layer(torch.randn(5, 3)).shape == (5, 2)
    assert layer(torch.randn(3)).shape == (2,)
    assert layer.in_features == 3 and layer.out_features == 2


@pytest.mark.parametrize("shape", [(5, 4), (5, 2), (4,), (2, 3, 3)])
def test_wrong_input_width_raises(shape: tuple[int, ...]) -> None:
    layer = _layer(n_qubits=3)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 3\).*got"):
        layer(torch.zeros(shape))


@pytest.mark.parametrize("squash", ["arctan", "tanh", "none"])
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_inputs_are_named_not_squashed_away(squash: str, bad: float) -> None:
    layer = _layer(n_qubits=3, squash=squash)
    x = torch.zeros(5, 3)
    x[3, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or inf inputs \(rows \[3\] of 5\)"):
        layer(x)
    with pytest.raises(ValueError, match=r"rows \[0\] of 1"):
        layer(x[3])


def test_gradients_reach_every_parameter_and_the_input() -> None:
    layer = _layer(n_qubits=3, output_bias=True)
    x = torch.randn(4, 3, requires_grad=True)
    layer(x).pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.any(p.grad != 0), name
    assert x.grad is not None and torch.any(x.grad != 0)


def test_output_scaling_and_bias_are_affine() -> None:
    torch.manual_seed(1)
    layer = _layer(n_qubits=3, output_bias=True)
    x = torch.randn(6, 3)
    base = layer(x).detach()
    with torch.no_grad():
        layer.output_scaling.mul_(2.5)
        layer.output_bias.fill_(0.75)
    torch.testing.assert_close(layer(x), 2.5 * base + 0.75)


def test_unscaled_outputs_are_expectations() -> None:
    layer = _layer(n_qubits=3, output_scaling=False)
    assert layer.output_scaling is None and layer.output_bias is None
    out = layer(torch.randn(64, 3) * 5)
    assert out.abs().max() <= 1.0 + 1e-6


def test_fixed_input_scaling_is_a_buffer() -> None:
    layer = _layer(n_qubits=3, input_scaling=False, input_scaling_init=0.5)
    names = {n for n, _ in layer.named_parameters()}
    assert "input_scaling" not in names
    assert "input_scaling" in layer.state_dict()
    torch.testing.assert_close(layer.input_scaling, torch.full((2, 3), 0.5))


def test_weight_initialisations() -> None:
    torch.manual_seed(0)
    uniform = _layer(n_qubits=4, n_layers=3, weight_init="uniform").weights
    assert uniform.min() >= 0 and uniform.max() < 2 * math.pi and uniform.std() > 1.0
    normal = _layer(n_qubits=4, n_layers=3, weight_init="normal", weight_init_std=0.01).weights
    assert normal.abs().max() < 0.1
    zeros = _layer(n_qubits=4, weight_init="zeros").weights
    assert torch.all(zeros == 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"squash": "sigmoid"}, "squash"),
        ({"weight_init": "xavier"}, "weight_init"),
        ({"weight_init": "normal", "weight_init_std": 0.0}, "weight_init_std"),
        ({"output_scaling_init": float("nan")}, "output_scaling_init"),
    ],
)
def test_invalid_options_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _layer(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"squash": "sigmoid"}, "LayerOptions.squash='sigmoid' is not one of ['arctan', 'tanh', "
         "'none']"),
        ({"weight_init": "xavier"}, "LayerOptions.weight_init='xavier' is not one of "
         "['uniform', 'normal', 'zeros']"),
        ({"executor": "aer"}, "LayerOptions.executor='aer' is not one of ['qiskit', "
         "'statevector']"),
        ({"weight_init_std": -0.1}, "LayerOptions.weight_init_std=-0.1 must be a positive"),
        ({"input_scaling_init": float("inf")}, "LayerOptions.input_scaling_init=inf must be a "
         "finite number"),
        ({"output_bias": "yes"}, "LayerOptions.output_bias='yes' must be a bool"),
        ({"executor_kwargs": 5}, "LayerOptions.executor_kwargs=5 must be a mapping"),
    ],
)
def test_layer_options_validate_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        LayerOptions(**kwargs)
    assert str(info.value).startswith(message)
    with pytest.raises(ValueError) as layer:
        _layer(**kwargs)
    assert str(layer.value) == str(info.value)


def test_executor_options_with_an_instance_fail_at_construction() -> None:
    spec = CircuitSpec(n_qubits=2)
    executor = make_executor("statevector", spec)
    with pytest.raises(ValueError, match=r"executor_kwargs=\{'shots': 10\} given with an Executor"):
        LayerOptions(executor=executor, executor_kwargs={"shots": 10})
    assert QuantumLayer(spec, executor=executor).executor is executor


def test_options_and_keywords_build_the_same_layer() -> None:
    spec = CircuitSpec(n_qubits=3, n_layers=2)
    options = LayerOptions(squash="tanh", input_scaling_init=0.5, output_bias=True)
    by_options = QuantumLayer(spec, options=options)
    by_keywords = QuantumLayer(spec, squash="tanh", input_scaling_init=0.5, output_bias=True)
    assert by_options.options == by_keywords.options == options
    assert by_options.squash == "tanh" and by_options.output_bias is not None
    torch.testing.assert_close(by_options.input_scaling, torch.full((2, 3), 0.5))
    # Keywords override the fields of options.
    mixed = QuantumLayer(spec, options=options, squash="none", output_bias=False)
    assert mixed.options == LayerOptions(squash="none", input_scaling_init=0.5)
    assert mixed.output_bias is None
    assert QuantumLayer(spec).options == LayerOptions()


def test_integer_scaling_inits_give_float_parameters() -> None:
    layer = _layer(n_qubits=2, output_scaling_init=3, input_scaling_init=2)
    assert layer.output_scaling.dtype == torch.float32
    assert layer.input_scaling.dtype == torch.float32
    assert layer.output_scaling.tolist() == [3.0, 3.0]


def test_unknown_layer_keywords_and_wrong_options_type_raise() -> None:
    spec = CircuitSpec(n_qubits=2)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['squish'\]"):
        QuantumLayer(spec, squish="tanh")
    with pytest.raises(TypeError, match="options must be a LayerOptions, got dict"):
        QuantumLayer(spec, options={"squash": "tanh"})  # type: ignore[arg-type]


def test_spec_type_is_checked() -> None:
    with pytest.raises(TypeError, match="CircuitSpec"):
        QuantumLayer({"n_qubits": 2})  # type: ignore[arg-type]


def test_parameter_groups_and_counts() -> None:
    layer = _layer(n_qubits=3, n_layers=2, output_bias=True)
    groups = layer.parameter_groups()
    assert groups["weights"] == [layer.weights]
    assert groups["input_scaling"] == [layer.input_scaling]
    assert groups["output_scaling"] == [layer.output_scaling, layer.output_bias]
    n_weights = layer.built.n_weights
    assert layer.parameter_counts() == {"quantum": n_weights, "classical": 6 + 3 + 3}


def test_circuit_is_the_qiskit_circuit() -> None:
    layer = _layer(n_qubits=3)
    assert layer.circuit is layer.built.circuit
    assert layer.circuit.num_qubits == 3
    assert "ry" in layer.circuit.count_ops()


def test_classical_to_quantum_maps_wide_inputs() -> None:
    torch.manual_seed(0)
    net = ClassicalToQuantum(_layer(n_qubits=2), in_features=8, hidden=(16,))
    x = torch.randn(5, 8)
    out = net(x)
    assert out.shape == (5, 2)
    out.sum().backward()
    assert all(p.grad is not None for p in net.encoder.parameters())
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 8\)"):
        net(torch.randn(5, 2))
    counts = net.parameter_counts()
    assert counts["quantum"] == net.quantum.built.n_weights
    enc = sum(p.numel() for p in net.encoder.parameters())
    assert counts["classical"] == enc + 2 * 2 + 2
    assert net.circuit.num_qubits == 2


def test_quantum_to_classical_head() -> None:
    net = QuantumToClassical(_layer(n_qubits=3), out_features=5, hidden=(8,))
    assert net(torch.randn(4, 3)).shape == (4, 5)
    assert net.in_features == 3 and net.out_features == 5


def test_parallel_hybrid_concatenates_branches() -> None:
    quantum = _layer(n_qubits=3)
    classical = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    net = ParallelHybrid(quantum, classical, classical_out_features=4)
    x = torch.randn(6, 3)
    out = net(x)
    assert out.shape == (6, 7) and net.out_features == 7
    torch.testing.assert_close(out[:, :3], quantum(x))
    torch.testing.assert_close(out[:, 3:], classical(x))
    with pytest.raises(ValueError, match="classical_out_features"):
        ParallelHybrid(quantum, classical, classical_out_features=0)


def test_make_encoder_widths() -> None:
    enc = make_encoder(6, 2, hidden=(5, 4))
    linears = [m for m in enc if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 5), (5, 4), (4, 2)]
    assert not isinstance(enc[-1], nn.Tanh)
    with pytest.raises(ValueError, match="positive"):
        make_encoder(6, 0)


def test_quantum_parameter_groups_cover_every_parameter_once() -> None:
    net = ParallelHybrid(
        ClassicalToQuantum(_layer(n_qubits=2), in_features=5),
        nn.Linear(5, 3),
        classical_out_features=3,
    )
    groups = quantum_parameter_groups(net)
    assert tuple(groups) == PARAMETER_GROUPS
    flat = [id(p) for ps in groups.values() for p in ps]
    assert len(flat) == len(set(flat)) == len(list(net.parameters()))
    assert parameter_counts(net)["quantum"] == net.quantum.quantum.built.n_weights


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_layer_on_cuda_matches_cpu(dtype: torch.dtype, atol: float) -> None:
    torch.manual_seed(0)
    layer = _layer(n_qubits=4, n_layers=3, output_bias=True)
    x = torch.randn(32, 4, dtype=dtype)
    cpu = layer(x)
    cpu.sum().backward()
    grad_cpu = layer.weights.grad.clone()
    layer.zero_grad()
    layer.cuda()
    gpu = layer(x.cuda())
    gpu.sum().backward()
    assert gpu.device.type == "cuda" and gpu.dtype == dtype
    torch.testing.assert_close(gpu.cpu(), cpu, atol=atol, rtol=0)
    torch.testing.assert_close(layer.weights.grad.cpu(), grad_cpu, atol=10 * atol, rtol=0)


def test_qiskit_executor_gives_the_same_layer() -> None:
    """The hardware-faithful path: same parameters, same outputs and gradients."""
    torch.manual_seed(3)
    fast = _layer(n_qubits=2, n_layers=1, output_bias=True)
    slow = QuantumLayer(
        fast.spec, executor="qiskit", executor_kwargs={"precision": 0.0}, output_bias=True
    )
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(3, 2, dtype=torch.float64)
    out_fast, out_slow = fast(x), slow(x)
    torch.testing.assert_close(out_slow, out_fast, atol=1e-6, rtol=0)
    out_fast.sum().backward()
    out_slow.sum().backward()
    torch.testing.assert_close(slow.weights.grad, fast.weights.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(slow.input_scaling.grad, fast.input_scaling.grad, atol=1e-5, rtol=0)
