"""Executors: evaluate a built circuit on a batch of input angles, differentiably.

``make_executor("statevector" | "qiskit" | executor, built, **options)`` (or, in
``EstimatorQNN``'s vocabulary, ``make_executor(name, circuit=qc, input_params=...,
weight_params=..., observables=...)``) returns an :class:`Executor`:

* ``"statevector"`` (default for training): :class:`StatevectorExecutor`, an exact batched
  torch simulation compiled from the Qiskit circuit; gradients by autograd; CPU or CUDA.
* ``"qiskit"``: :class:`QiskitExecutor`, qiskit-machine-learning's ``EstimatorQNN`` on any V2
  estimator (exact ``StatevectorEstimator``, qiskit-aer with shots and noise, IBM Runtime);
  gradients by parameter shift or SPSA. The hardware-faithful path, orders of magnitude slower.
"""

from __future__ import annotations

from typing import Any

from qiskit.circuit import QuantumCircuit

from qdrl_agents.circuits import (
    BuiltCircuit,
    CircuitSpec,
    ObservablesLike,
    ParametersLike,
    UserCircuit,
    as_built_circuit,
)
from qdrl_agents.executors.base import Executor
from qdrl_agents.executors.qiskit_estimator import QiskitExecutor
from qdrl_agents.executors.statevector import StatevectorExecutor

__all__ = ["EXECUTORS", "Executor", "QiskitExecutor", "StatevectorExecutor", "make_executor"]

EXECUTORS: dict[str, type[Executor]] = {
    "statevector": StatevectorExecutor,
    "qiskit": QiskitExecutor,
}


def make_executor(
    executor: str | Executor = "statevector",
    built: BuiltCircuit | CircuitSpec | None = None,
    *,
    circuit: QuantumCircuit | BuiltCircuit | UserCircuit | None = None,
    input_params: ParametersLike | None = None,
    weight_params: ParametersLike | None = None,
    observables: ObservablesLike | None = None,
    **options: Any,
) -> Executor:
    """Create (or pass through) the executor for a circuit.

    The circuit is named either as ``built`` (a `BuiltCircuit`, or a `CircuitSpec` to build)
    or, as qiskit-machine-learning's ``EstimatorQNN`` takes it, as ``circuit=`` with
    ``input_params=``, ``weight_params=`` and ``observables=`` (see
    `qdrl_agents.circuits.circuit_from_qiskit`)::

        make_executor("qiskit", circuit=qc, input_params=fmap.parameters,
                      weight_params=ansatz.parameters, observables=["ZI", "IZ"])

    Args:
        executor: ``"statevector"`` (default), ``"qiskit"``, or an :class:`Executor` instance
            (returned as is; it must have been built for a circuit with the same parameter
            counts).
        built: The circuit to evaluate, as a `BuiltCircuit` or a `CircuitSpec`.
        circuit: Instead of ``built``: a Qiskit ``QuantumCircuit``, a `BuiltCircuit` or a fixed
            `UserCircuit`.
        input_params: The circuit's parameters fed by the inputs, in order (with a
            ``QuantumCircuit``).
        weight_params: Its trainable parameters, in order; ``None``: every other parameter.
        observables: One ``SparsePauliOp``, ``Pauli`` or Pauli string per output; ``None``: one
            output, Z on every qubit (``EstimatorQNN``'s default).
        **options: Keyword options of the executor's constructor (e.g. ``shots=1024`` for
            ``"qiskit"``, ``dtype=torch.float64`` for ``"statevector"``).

    Returns:
        The executor.

    Raises:
        ValueError: If the name is unknown (the message lists the choices), options are given
            with an instance, an instance does not fit the circuit, both or neither of
            ``built`` and ``circuit`` are given, or parameters or observables do not fit it.
        TypeError: If ``executor`` is neither a string nor an :class:`Executor`, or the circuit
            is of another type.
    """
    if built is None and circuit is None:
        raise ValueError(
            "make_executor needs a circuit: built= (a BuiltCircuit or CircuitSpec) or circuit= "
            "(a QuantumCircuit, with input_params=, weight_params=, observables=)"
        )
    if built is not None and circuit is not None:
        raise ValueError("give either built= or circuit=, not both")
    built = as_built_circuit(built, circuit, input_params, weight_params, observables)
    if isinstance(executor, Executor):
        if options:
            raise ValueError(
                f"executor options {sorted(options)} given with an Executor instance; "
                "configure the instance instead"
            )
        mine, theirs = built, executor.built
        if (mine.n_input_params, mine.n_weights, mine.n_outputs) != (
            theirs.n_input_params,
            theirs.n_weights,
            theirs.n_outputs,
        ):
            raise ValueError(
                "executor instance was built for a circuit with (n_input_params, n_weights, "
                f"n_outputs)={(theirs.n_input_params, theirs.n_weights, theirs.n_outputs)}, "
                f"expected {(mine.n_input_params, mine.n_weights, mine.n_outputs)}"
            )
        return executor
    if not isinstance(executor, str):
        raise TypeError(f"executor must be a name or an Executor, got {type(executor).__name__}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not one of {sorted(EXECUTORS)}")
    return EXECUTORS[executor](built, **options)
