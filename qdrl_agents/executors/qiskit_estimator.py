"""The hardware-faithful executor: qiskit-machine-learning's ``EstimatorQNN`` on a V2 estimator.

Named ``qiskit_estimator`` (not ``qiskit``) so that ``import qiskit`` inside this package can
never resolve to this module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from qiskit.primitives import BaseEstimatorV2, StatevectorEstimator
from qiskit_machine_learning.gradients import (
    BaseEstimatorGradient,
    ParamShiftEstimatorGradient,
    SPSAEstimatorGradient,
)
from qiskit_machine_learning.neural_networks import EstimatorQNN

from qdrl_agents.circuits import BuiltCircuit
from qdrl_agents.executors.base import Executor

__all__ = ["GRADIENTS", "QiskitExecutor"]

GRADIENTS: tuple[str, ...] = ("param_shift", "spsa")


class _QNNFunction(torch.autograd.Function):
    """Autograd bridge to ``EstimatorQNN.forward`` / ``backward``.

    This is qiskit-machine-learning's ``TorchConnector`` function, minus two things that do not
    fit an engine: ``TorchConnector`` owns the weights as its own ``nn.Parameter`` (here they
    are passed in), and it casts every result to float32 (here the inputs' dtype is kept, so
    float64 runs agree with the exact simulator to 1e-6 and better).

    Device round trip: both passes call ``.detach().cpu().numpy()`` on inputs and weights and
    move the results back to the inputs' device. Nothing of this path runs on a GPU.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, inputs: torch.Tensor, weights: torch.Tensor, qnn: EstimatorQNN
    ) -> torch.Tensor:
        ctx.qnn = qnn
        ctx.save_for_backward(inputs, weights)
        result = qnn.forward(inputs.detach().cpu().numpy(), weights.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(result), dtype=inputs.dtype).to(inputs.device)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        inputs, weights = ctx.saved_tensors
        input_grad, weight_grad = ctx.qnn.backward(
            inputs.detach().cpu().numpy(), weights.detach().cpu().numpy()
        )
        g = grad_output.detach().cpu().to(torch.float64)
        grad_inputs = grad_weights = None
        if input_grad is not None and ctx.needs_input_grad[0]:
            jac = torch.as_tensor(np.asarray(input_grad), dtype=torch.float64)  # (B, out, in)
            grad_inputs = torch.einsum("bo,boi->bi", g, jac).to(inputs.dtype).to(inputs.device)
        if weight_grad is not None and ctx.needs_input_grad[1]:
            jac = torch.as_tensor(np.asarray(weight_grad), dtype=torch.float64)  # (B, out, w)
            grad_weights = torch.einsum("bo,bow->w", g, jac).to(weights.dtype).to(weights.device)
        return grad_inputs, grad_weights, None


class QiskitExecutor(Executor):
    """``EstimatorQNN`` over any Qiskit V2 estimator, with parameter-shift or SPSA gradients.

    Which estimator runs the circuit:

    * default: ``qiskit.primitives.StatevectorEstimator`` — exact (precision 0, no shot noise).
    * ``shots=N`` and/or ``noise_model=...``: qiskit-aer's ``EstimatorV2``. Aer computes the
      (noisy) expectation value and, with ``shots``, adds Gaussian noise of the shot-noise scale
      ``1/sqrt(N)`` (that is how Aer's V2 estimator implements precision).
    * ``estimator=...``: any ``BaseEstimatorV2`` you supply (e.g. an IBM Runtime
      ``EstimatorV2``; transpile the circuit for it beforehand, this class does not).

    ``EstimatorQNN`` passes ``default_precision=0.015625`` to the estimator unless told
    otherwise, which makes even ``StatevectorEstimator`` add shot noise to a supposedly exact
    run; this class always passes the precision explicitly (``precision``, default 0.0 = exact).
    The gradient classes call the estimator without a precision, so they use the estimator's
    own default: the estimators built here get ``default_precision`` set to the same value.

    Device round trip: every forward and backward pass sends inputs and weights through
    ``.detach().cpu().numpy()`` (in ``_QNNFunction``) and the results back to the inputs'
    device.

    Args:
        built: The circuit to evaluate.
        estimator: A V2 estimator to use instead of the built-in choice; excludes ``shots``,
            ``noise_model`` and ``seed``.
        shots: Shot count for qiskit-aer's estimator (sets precision ``1/sqrt(shots)``).
        precision: Target precision passed to the estimator's ``run`` (0.0: exact on
            simulators); ``None`` leaves it to ``estimator``'s own default. Excludes ``shots``.
        gradient: ``"param_shift"`` (exact on exact estimators; 2 circuits per parameter) or
            ``"spsa"`` (2 circuits per batch row, a stochastic estimate), or a
            ``BaseEstimatorGradient`` instance.
        noise_model: A ``qiskit_aer.noise.NoiseModel`` (selects qiskit-aer's estimator).
        seed: Seed for the estimator's sampling and for SPSA's perturbations.
        spsa_epsilon: SPSA's perturbation size.
        spsa_batch_size: SPSA's number of averaged perturbations per gradient.

    Raises:
        ValueError: On an invalid or conflicting option (the message names it).
        TypeError: If ``estimator`` is not a ``BaseEstimatorV2``.
    """

    def __init__(
        self,
        built: BuiltCircuit,
        *,
        estimator: BaseEstimatorV2 | None = None,
        shots: int | None = None,
        precision: float | None = 0.0,
        gradient: str | BaseEstimatorGradient = "param_shift",
        noise_model: Any = None,
        seed: int | None = None,
        spsa_epsilon: float = 1e-2,
        spsa_batch_size: int = 1,
    ) -> None:
        super().__init__(built)
        if shots is not None and (
            isinstance(shots, bool) or not isinstance(shots, int) or shots < 1
        ):
            raise ValueError(f"shots={shots!r} must be a positive int or None")
        if precision is not None and (
            not isinstance(precision, (int, float)) or precision < 0 or math.isnan(precision)
        ):
            raise ValueError(f"precision={precision!r} must be a float >= 0 or None")
        if shots is not None and precision not in (0.0, None):
            raise ValueError(
                f"give shots={shots} or precision={precision}, not both (shots sets the "
                "precision to 1/sqrt(shots))"
            )
        if estimator is not None:
            if not isinstance(estimator, BaseEstimatorV2):
                raise TypeError(
                    f"estimator must be a qiskit BaseEstimatorV2, got {type(estimator).__name__}"
                )
            for name, value in (("shots", shots), ("noise_model", noise_model), ("seed", seed)):
                if value is not None:
                    raise ValueError(
                        f"{name}={value!r} cannot be combined with a user-supplied estimator; "
                        "configure the estimator instead"
                    )
        if isinstance(gradient, str) and gradient not in GRADIENTS:
            raise ValueError(f"gradient={gradient!r} is not one of {list(GRADIENTS)}")
        if not isinstance(gradient, (str, BaseEstimatorGradient)):
            raise TypeError(
                f"gradient must be a name or a BaseEstimatorGradient, got {type(gradient).__name__}"
            )

        if shots is not None:
            precision = 1.0 / math.sqrt(shots)
        if estimator is None:
            if shots is None and noise_model is None:
                estimator = StatevectorEstimator(default_precision=float(precision), seed=seed)
            else:
                from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2

                backend_options: dict[str, Any] = {}
                if noise_model is not None:
                    backend_options["noise_model"] = noise_model
                run_options: dict[str, Any] = {}
                if seed is not None:
                    run_options["seed_simulator"] = seed
                estimator = AerEstimatorV2(
                    options={
                        "default_precision": float(precision or 0.0),
                        "backend_options": backend_options,
                        "run_options": run_options,
                    }
                )
        if isinstance(gradient, str):
            if gradient == "param_shift":
                gradient_obj: BaseEstimatorGradient = ParamShiftEstimatorGradient(estimator)
            else:
                gradient_obj = SPSAEstimatorGradient(
                    estimator, epsilon=spsa_epsilon, batch_size=spsa_batch_size, seed=seed
                )
        else:
            gradient_obj = gradient

        self.estimator = estimator
        self.shots = shots
        self.precision = precision
        self.gradient = gradient
        self.noise_model = noise_model
        self.seed = seed
        self.spsa_epsilon = spsa_epsilon
        self.spsa_batch_size = spsa_batch_size
        qnn_kwargs: dict[str, Any] = {}
        if precision is not None:
            qnn_kwargs["default_precision"] = float(precision)
        self.qnn = EstimatorQNN(
            circuit=built.circuit,
            estimator=estimator,
            observables=list(built.observables),
            input_params=list(built.inputs),
            weight_params=list(built.weights),
            gradient=gradient_obj,
            input_gradients=True,
            **qnn_kwargs,
        )
        if precision is None:
            # EstimatorQNN.forward always passes its default_precision; None defers to the
            # estimator's own default.
            self.qnn._default_precision = None

    @property
    def name(self) -> str:
        """``"qiskit"``."""
        return "qiskit"

    def _repr_extra(self) -> str:
        return (
            f", estimator={type(self.estimator).__name__}, precision={self.precision}, "
            f"gradient={self.gradient!r}"
        )

    def _forward(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return _QNNFunction.apply(inputs, weights, self.qnn)
