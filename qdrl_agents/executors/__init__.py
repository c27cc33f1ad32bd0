"""Executors: evaluate a built circuit on a batch of input angles, differentiably.

``make_executor("statevector" | "qiskit" | executor, built, **options)`` returns an
:class:`Executor`:

* ``"statevector"`` (default for training): :class:`StatevectorExecutor`, an exact batched
  torch simulation compiled from the Qiskit circuit; gradients by autograd; CPU or CUDA.
* ``"qiskit"``: :class:`QiskitExecutor`, qiskit-machine-learning's ``EstimatorQNN`` on any V2
  estimator (exact ``StatevectorEstimator``, qiskit-aer with shots and noise, IBM Runtime);
  gradients by parameter shift or SPSA. The hardware-faithful path, orders of magnitude slower.
"""

from __future__ import annotations

from typing import Any

from qdrl_agents.circuits import BuiltCircuit
from qdrl_agents.executors.base import Executor
from qdrl_agents.executors.qiskit_estimator import QiskitExecutor
from qdrl_agents.executors.statevector import StatevectorExecutor

__all__ = ["EXECUTORS", "Executor", "QiskitExecutor", "StatevectorExecutor", "make_executor"]

EXECUTORS: dict[str, type[Executor]] = {
    "statevector": StatevectorExecutor,
    "qiskit": QiskitExecutor,
}


def make_executor(executor: str | Executor, built: BuiltCircuit, **options: Any) -> Executor:
    """Create (or pass through) the executor for a built circuit.

    Args:
        executor: ``"statevector"``, ``"qiskit"``, or an :class:`Executor` instance (returned
            as is; it must have been built for a circuit with the same parameter counts).
        built: The circuit to evaluate.
        **options: Keyword options of the executor's constructor (e.g. ``shots=1024`` for
            ``"qiskit"``, ``dtype=torch.float64`` for ``"statevector"``).

    Returns:
        The executor.

    Raises:
        ValueError: If the name is unknown (the message lists the choices), options are given
            with an instance, or an instance does not fit ``built``.
        TypeError: If ``executor`` is neither a string nor an :class:`Executor`.
    """
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
