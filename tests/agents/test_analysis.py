"""The trainability probe (qdrl_agents.analysis) against brute-force gradients."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from qiskit.quantum_info import SparsePauliOp

from qdrl_agents import (
    CircuitSpec,
    build_circuit,
    gradient_variance,
    gradient_variance_sweep,
    variance_decay_rate,
)
from qdrl_agents.analysis import cost_observable
from qdrl_agents.executors import StatevectorExecutor

TINY = CircuitSpec(n_qubits=3, n_layers=2, rotation="u3", entangler="cnot")


def _param_shift_gradients(spec, cost, weights, inputs):
    """Per-sample parameter-shift gradients with the ordinary (unswapped) statevector executor."""
    built = dataclasses.replace(build_circuit(spec), observables=(cost_observable(spec, cost),))
    run = StatevectorExecutor(built)
    x = torch.as_tensor(inputs, dtype=torch.float64)[None]
    out = np.zeros_like(weights)
    for s, w in enumerate(torch.as_tensor(weights)):
        for k in range(w.numel()):
            plus, minus = w.clone(), w.clone()
            plus[k] += math.pi / 2
            minus[k] -= math.pi / 2
            out[s, k] = 0.5 * float(run(x, plus)[0, 0] - run(x, minus)[0, 0])
    return out


@pytest.mark.parametrize("cost", ["local", "global", "readout"])
def test_gradients_match_parameter_shift_per_sample(cost):
    x = np.array([0.3, -1.2, 0.8] * 2)
    result = gradient_variance(TINY, n_samples=6, cost=cost, inputs=x, seed=4, batch_size=4)
    brute = _param_shift_gradients(TINY, cost, result.weights, x)
    np.testing.assert_allclose(result.gradients, brute, atol=1e-10)
    np.testing.assert_allclose(result.variances, brute.var(axis=0, ddof=1), atol=1e-12)
    assert result.mean_variance == pytest.approx(float(brute.var(axis=0, ddof=1).mean()))
    assert result.gradients.shape == (6, build_circuit(TINY).n_weights)
    assert np.all((result.weights >= 0) & (result.weights < 2 * math.pi))


def test_statevector_probe_matches_qiskit_parameter_shift():
    spec = CircuitSpec(n_qubits=2, n_layers=1)
    exact = gradient_variance(spec, n_samples=3, cost="global", seed=9)
    shifted = gradient_variance(spec, n_samples=3, cost="global", seed=9, executor="qiskit")
    np.testing.assert_allclose(exact.weights, shifted.weights)
    np.testing.assert_allclose(exact.gradients, shifted.gradients, atol=1e-10)
    assert shifted.executor == "qiskit"


def test_result_is_seeded_and_independent_of_batch_size():
    a = gradient_variance(TINY, n_samples=20, seed=1, batch_size=256)
    b = gradient_variance(TINY, n_samples=20, seed=1, batch_size=3)
    c = gradient_variance(TINY, n_samples=20, seed=2)
    np.testing.assert_allclose(a.gradients, b.gradients, atol=1e-12)
    assert not np.allclose(a.weights, c.weights)


def test_custom_observable_equals_named_cost():
    z0 = SparsePauliOp.from_sparse_list([("Z", [0], 1.0)], 3)
    named = gradient_variance(TINY, n_samples=10, cost="local")
    custom = gradient_variance(TINY, n_samples=10, cost=z0)
    np.testing.assert_allclose(named.gradients, custom.gradients, atol=1e-12)
    assert custom.cost == "custom"


def test_global_cost_variance_shrinks_exponentially_with_qubits():
    """The barren plateau (McClean 2018): deep circuit, global cost, Var ~ 2^-n."""
    curve = gradient_variance_sweep(
        CircuitSpec(n_qubits=2, n_layers=8), n_qubits=[2, 4, 6], cost="global", n_samples=200
    )
    variances = [r.mean_variance for r in curve]
    # measured with these seeds: 0.108, 0.027, 0.0069 (a factor ~4 per 2 qubits)
    assert variances[1] < variances[0] / 2
    assert variances[2] < variances[1] / 2
    assert variance_decay_rate(curve) > 0.7
    assert [r.n_qubits for r in curve] == [2, 4, 6]


def test_local_cost_decays_slower_than_global_cost_on_shallow_circuits():
    """Cerezo 2021: shallow circuits plateau for global, not (exponentially) for local costs."""
    spec = CircuitSpec(n_qubits=2, n_layers=2)
    rates = {}
    for cost in ("local", "global"):
        curve = gradient_variance_sweep(spec, n_qubits=[2, 4, 6, 8], cost=cost, n_samples=150)
        rates[cost] = variance_decay_rate(curve)
    # measured with these seeds: local 0.41, global 1.05
    assert rates["global"] > 0.8
    assert rates["local"] < rates["global"] - 0.3


def test_sweep_over_layers_keeps_qubits():
    curve = gradient_variance_sweep(TINY, n_layers=[1, 3], n_samples=4)
    assert [(r.n_qubits, r.n_layers) for r in curve] == [(3, 1), (3, 3)]
    assert curve[1].gradients.shape[1] > curve[0].gradients.shape[1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 1}, "n_samples"),
        ({"n_samples": 2.0}, "n_samples"),
        ({"batch_size": 0}, "batch_size"),
        ({"cost": "energy"}, "cost"),
        ({"cost": SparsePauliOp("ZZ")}, "qubits"),
        ({"executor": "gpu"}, "executor"),
        ({"seed": "x"}, "seed"),
        ({"inputs": [0.0, 1.0]}, "inputs"),
    ],
    ids=lambda v: None,
)
def test_gradient_variance_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gradient_variance(TINY, **kwargs)


def test_bad_spec_and_sweep_arguments():
    with pytest.raises(TypeError, match="CircuitSpec"):
        gradient_variance({"n_qubits": 2})
    with pytest.raises(ValueError, match="n_qubits and/or n_layers"):
        gradient_variance_sweep(TINY)
    with pytest.raises(ValueError, match="n_qubits"):
        gradient_variance_sweep(TINY, n_qubits=[0])
    one = gradient_variance_sweep(TINY, n_layers=[1, 2], n_samples=3)
    with pytest.raises(ValueError, match="two or more qubit counts"):
        variance_decay_rate(one)
