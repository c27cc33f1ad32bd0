"""swap_executor: every QuantumLayer of a module on another executor, restored on exit."""

from __future__ import annotations

import pytest
import torch

from qdrl_agents import CircuitSpec, ClassicalToQuantum, QuantumLayer, swap_executor
from qdrl_agents.executors import StatevectorExecutor


def test_swap_executor_swaps_every_layer_and_restores_them() -> None:
    torch.manual_seed(0)
    a = QuantumLayer(CircuitSpec(n_qubits=2, n_layers=1))
    b = QuantumLayer(CircuitSpec(n_qubits=2, n_layers=1))
    model = torch.nn.Sequential(ClassicalToQuantum(a, 3), b)
    x = torch.rand(4, 3)
    with torch.no_grad():
        clean = model(x)
    old = (a.executor, b.executor)
    with swap_executor(model, "qiskit", estimator="aer") as layers:
        assert layers == [a, b]
        assert {layer.executor.name for layer in layers} == {"qiskit"}
        with torch.no_grad():
            torch.testing.assert_close(model(x), clean, atol=1e-5, rtol=0)
    assert (a.executor, b.executor) == old
    with pytest.raises(RuntimeError, match="boom"), swap_executor(
            model, lambda layer: StatevectorExecutor(layer.built)):
        assert a.executor is not old[0]
        raise RuntimeError("boom")
    assert (a.executor, b.executor) == old  # restored after an exception too
    with pytest.raises(ValueError, match="options with an executor name"):
        with swap_executor(model, lambda layer: layer.executor, shots=10):
            pass
