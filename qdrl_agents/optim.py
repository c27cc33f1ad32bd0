"""Gradient-free optimisers for circuit weights: Rotosolve and SPSA (paper Sec. III-E).

Both are ``torch.optim.Optimizer`` s driven by a *closure* that returns the scalar loss, as
``torch.optim.LBFGS`` is; they never read ``.grad`` and evaluate the closure under
``torch.no_grad()``, so no backward pass is run. Each loss evaluation is one circuit
execution per batch row: with the ``"qiskit"`` executor that is what a device would run.

* `Rotosolve` (Ostaszewski, Grant, Benedetti, Quantum 5, 391 (2021); paper Sec. III-E1): sets
  one parameter at a time to the exact minimiser of the loss along that coordinate, from three
  loss values. Exact only for losses that are sinusoids of period ``2*pi`` in each parameter —
  affine functions of expectation values of circuits in which the parameter is the angle of
  one Pauli rotation (``QuantumLayer.weights``). Cost: 2 evaluations per parameter, +1 per step.
* `SPSA` (Spall, IEEE Trans. Aerosp. Electron. Syst. 34(3), 817 (1998)): simultaneous
  perturbation stochastic approximation, a gradient estimate from 2 evaluations per step
  whatever the number of parameters; robust to shot noise, any differentiable-in-expectation
  loss.

Parameter-shift gradients (docs/design.md §5, paper Sec. III-E) come from the ``"qiskit"``
executor (``QuantumLayer(spec, executor="qiskit")``) with any torch optimiser.

Example:
    >>> import torch
    >>> from qdrl_agents import CircuitSpec, QuantumLayer, Rotosolve
    >>> _ = torch.manual_seed(0)
    >>> layer = QuantumLayer(CircuitSpec(n_qubits=2, n_layers=2), output_scaling=False)
    >>> x = torch.zeros(1, 2)
    >>> opt = Rotosolve([layer.weights])
    >>> energy = lambda: layer(x).sum()  # <Z_0> + <Z_1>, affine in the expectations
    >>> for _ in range(3):
    ...     loss = opt.step(energy)
    >>> loss < -1.99  # the minimum is -2 (both qubits in |1>)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer

from qdrl_agents.circuits import is_int

__all__ = ["SPSA", "Rotosolve"]

Closure = Callable[[], Any]
_TWO_PI = 2.0 * math.pi


def _loss_value(closure: Closure | None, who: str) -> float:
    """Call ``closure`` (under the caller's ``no_grad``) and return its scalar as a float."""
    if closure is None:
        raise ValueError(
            f"{who}.step needs a closure that re-evaluates the model and returns the loss, "
            f"e.g. opt.step(lambda: loss_fn(model(x), y)); {who} never reads .grad"
        )
    loss = closure()
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(
                f"{who} closure must return a scalar loss, got a tensor of shape "
                f"{tuple(loss.shape)}"
            )
        return float(loss.detach().reshape(()).item())
    return float(loss)


def _make_generator(seed: int | None, generator: torch.Generator | None, who: str) -> Any:
    if seed is not None and generator is not None:
        raise ValueError(f"{who}: give seed or generator, not both")
    if seed is not None:
        if not is_int(seed):
            raise ValueError(f"{who}: seed={seed!r} must be an int or None")
        return torch.Generator().manual_seed(int(seed))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"{who}: generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


def _check_float_params(optimizer: Optimizer, who: str) -> None:
    for group in optimizer.param_groups:
        for p in group["params"]:
            if not p.is_floating_point():
                raise ValueError(f"{who} optimises real floating-point tensors, got {p.dtype}")


def _wrap_angle(theta: float) -> float:
    """Map an angle to ``(-pi, pi]``."""
    return math.pi - ((math.pi - theta) % _TWO_PI)


class Rotosolve(Optimizer):
    r"""Rotosolve: closed-form coordinate minimisation of sinusoidal losses.

    For a loss that, as a function of one parameter :math:`\theta` with the others fixed, is
    :math:`C(\theta) = a \cos(\theta - b) + c` (period :math:`2\pi`), three values
    :math:`C_0 = C(\theta)`, :math:`C_\pm = C(\theta \pm \pi/2)` determine the minimiser:

    .. math::
        \theta^* = \theta - \frac{\pi}{2}
                   - \operatorname{atan2}\left(2 C_0 - C_+ - C_-,\; C_+ - C_-\right),
        \qquad C(\theta^*) = \frac{C_+ + C_-}{2} - \sqrt{\left(C_0 - \frac{C_+ + C_-}{2}\right)^2
                   + \left(\frac{C_+ - C_-}{2}\right)^2}

    (Ostaszewski, Grant, Benedetti, Quantum 5, 391 (2021); the paper's Sec. III-E1 states it at
    :math:`\theta = 0` with ``arctan``, which can land on the maximum: ``atan2`` picks the
    minimum). The new value is wrapped to :math:`(-\pi, \pi]`. One `step` sweeps the
    coordinates in order (every element of every parameter tensor, or a random subset), each
    update seeing the previous ones. The predicted minimum :math:`C(\theta^*)` is reused as
    :math:`C_0` of the next coordinate, so a step costs ``1 + 2 * n_coordinates`` closure
    calls, and every step is monotone: the loss never increases.

    **Only give it parameters in which the loss is such a sinusoid.** That holds for
    `QuantumLayer.weights` (each weight is the angle of one RY/RZ/U3 rotation, i.e. enters as
    :math:`e^{-i\theta P/2}` exactly once) *when the loss is an affine function of the circuit's
    expectation values*, summed over any batch: an energy :math:`\sum_k h_k \langle O_k\rangle`,
    a linear surrogate. It does **not** hold for input scaling (the angle is ``lambda * x``),
    output scaling or bias (linear, unbounded), classical layers, or a squared error of the
    expectations (period :math:`2\pi` but frequency 2): there the update is a heuristic, not a
    minimisation. Optimise those with another optimiser, alternating if need be.

    Like ``torch.optim.LBFGS`` it takes a single parameter group and a closure; the closure is
    called under ``torch.no_grad()`` and must return the scalar loss (a tensor or a float).

    Args:
        params: Parameter tensors (e.g. ``[layer.weights]``); one group.
        params_per_step: Number of coordinates updated per `step`, drawn at random without
            replacement each step (in random order); ``None`` (default) sweeps all coordinates
            in order.
        seed: Seed of the random coordinate subsets (only with ``params_per_step``).
        generator: A ``torch.Generator`` for the subsets, instead of ``seed``.

    Raises:
        ValueError: If an option is invalid (the message names it), there is more than one
            parameter group, or a parameter is not floating point.

    Example:
        >>> opt = Rotosolve([layer.weights])  # doctest: +SKIP
        >>> for sweep in range(5):  # doctest: +SKIP
        ...     energy = opt.step(lambda: hamiltonian_terms(layer(x)).sum())
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        *,
        params_per_step: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if params_per_step is not None:
            if not is_int(params_per_step) or params_per_step < 1:
                raise ValueError(
                    f"params_per_step={params_per_step!r} must be an int >= 1 or None"
                )
            params_per_step = int(params_per_step)
        super().__init__(params, {"params_per_step": params_per_step})
        if len(self.param_groups) != 1:
            raise ValueError(
                "Rotosolve takes one parameter group (like LBFGS); pass the circuit weights as "
                "one list and optimise other parameters with another optimiser"
            )
        _check_float_params(self, "Rotosolve")
        n = self.n_coordinates
        if params_per_step is not None and params_per_step > n:
            raise ValueError(
                f"params_per_step={params_per_step} exceeds the number of coordinates ({n})"
            )
        self._generator = _make_generator(seed, generator, "Rotosolve")

    @property
    def n_coordinates(self) -> int:
        """Number of scalar parameters (coordinates) under optimisation."""
        return sum(p.numel() for group in self.param_groups for p in group["params"])

    def _coordinates(self) -> list[tuple[torch.Tensor, tuple[int, ...]]]:
        params = self.param_groups[0]["params"]
        coords = [
            (p, tuple(int(i) for i in np.unravel_index(j, tuple(p.shape))))
            for p in params
            for j in range(p.numel())
        ]
        k = self.param_groups[0]["params_per_step"]
        if k is None:
            return coords
        pick = torch.randperm(len(coords), generator=self._generator)[:k]
        return [coords[int(i)] for i in pick]

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> float:  # type: ignore[override]
        """Sweep the coordinates once, setting each to its closed-form minimiser.

        Args:
            closure: Re-evaluates the model and returns the scalar loss. Required.

        Returns:
            The loss at the updated parameters, as predicted by the last closed-form
            minimisation (exact when the loss is sinusoidal in every swept parameter; the
            closure is not called again to check it).

        Raises:
            ValueError: If ``closure`` is missing or returns a non-scalar tensor.
        """
        c0 = _loss_value(closure, "Rotosolve")
        for p, index in self._coordinates():
            theta = float(p[index])
            p[index] = theta + math.pi / 2
            c_plus = _loss_value(closure, "Rotosolve")
            p[index] = theta - math.pi / 2
            c_minus = _loss_value(closure, "Rotosolve")
            mid = 0.5 * (c_plus + c_minus)
            amplitude = math.hypot(c0 - mid, 0.5 * (c_plus - c_minus))
            if amplitude <= 1e-14 * (abs(c0) + abs(c_plus) + abs(c_minus)):
                p[index] = theta  # the loss does not depend on this coordinate
                continue
            best = theta - math.pi / 2 - math.atan2(2.0 * c0 - c_plus - c_minus, c_plus - c_minus)
            p[index] = _wrap_angle(best)
            c0 = min(c0, mid - amplitude)  # min(): rounding can never report an increase
        return c0


class SPSA(Optimizer):
    r"""Simultaneous perturbation stochastic approximation (Spall 1998).

    Step :math:`k = 0, 1, \dots` draws a Rademacher vector :math:`\Delta` (entries
    :math:`\pm 1` with equal probability) over all parameters, evaluates the loss at
    :math:`\theta \pm c_k \Delta` and moves

    .. math::
        \theta \leftarrow \theta - a_k\,\frac{C(\theta + c_k\Delta) - C(\theta - c_k\Delta)}
                                            {2 c_k}\,\Delta, \qquad
        a_k = \frac{a}{(k + 1 + A)^\alpha}, \quad c_k = \frac{c}{(k + 1)^\gamma}

    (:math:`1/\Delta_i = \Delta_i`). The gradient estimate is unbiased to :math:`O(c_k^2)` and
    costs 2 closure calls whatever the number of parameters; the decaying gains give
    convergence under shot noise. Defaults ``alpha=0.602``, ``gamma=0.101`` are Spall's
    practical values; ``stability`` (Spall's :math:`A`) of about 10% of the planned steps damps
    the first updates. Per-group ``lr``/``perturbation``/... are allowed (a group's coordinates
    are perturbed by its own :math:`c_k`; the estimate stays valid). Unlike `Rotosolve` any loss
    that is smooth in expectation works (squared errors, scalings, classical layers).

    The step counter :math:`k` is kept per parameter in ``state`` (saved with
    ``state_dict()``); the random generator's state is not.

    Args:
        params: Parameters or parameter groups.
        lr: :math:`a`, the gain numerator, > 0.
        perturbation: :math:`c`, the perturbation size numerator, > 0 (radians for circuit
            weights; of the order of the loss's noise scale helps).
        stability: :math:`A \ge 0`, the stability constant.
        alpha: Decay exponent of :math:`a_k`, > 0.
        gamma: Decay exponent of :math:`c_k`, >= 0.
        seed: Seed of the perturbations, for reproducible runs.
        generator: A CPU ``torch.Generator`` for the perturbations, instead of ``seed``;
            neither means torch's global generator.

    Raises:
        ValueError: If an option is invalid (the message names it) or a parameter is not
            floating point.

    Example:
        >>> opt = SPSA(layer.parameters(), lr=0.2, perturbation=0.1, seed=0)  # doctest: +SKIP
        >>> loss = opt.step(lambda: ((layer(x) - y) ** 2).mean())  # doctest: +SKIP
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.1,
        perturbation: float = 0.1,
        *,
        stability: float = 0.0,
        alpha: float = 0.602,
        gamma: float = 0.101,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "perturbation": perturbation,
            "stability": stability,
            "alpha": alpha,
            "gamma": gamma,
        }
        for name, value in defaults.items():
            _check_gain(name, value)
        super().__init__(params, defaults)
        for group in self.param_groups:  # per-group overrides pass through the same checks
            for name in defaults:
                _check_gain(name, group[name])
        _check_float_params(self, "SPSA")
        self._generator = _make_generator(seed, generator, "SPSA")

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> float:  # type: ignore[override]
        """One SPSA update (2 closure calls).

        Args:
            closure: Re-evaluates the model and returns the scalar loss. Required.

        Returns:
            The mean of the two perturbed losses, an estimate of the loss *before* the update
            (biased by :math:`O(c_k^2)`); the closure is not called at the updated parameters.

        Raises:
            ValueError: If ``closure`` is missing or returns a non-scalar tensor.
        """
        if closure is None:
            _loss_value(closure, "SPSA")
        entries = []  # (param, original, delta, a_k, c_k)
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            k = self.state[params[0]].get("step", 0)
            a_k = group["lr"] / (k + 1 + group["stability"]) ** group["alpha"]
            c_k = group["perturbation"] / (k + 1) ** group["gamma"]
            for p in params:
                delta = torch.randint(0, 2, tuple(p.shape), generator=self._generator) * 2 - 1
                delta = delta.to(device=p.device, dtype=p.dtype)
                entries.append((p, p.detach().clone(), delta, a_k, c_k))
        for p, orig, delta, _, c_k in entries:
            p.copy_(orig + c_k * delta)
        loss_plus = _loss_value(closure, "SPSA")
        for p, orig, delta, _, c_k in entries:
            p.copy_(orig - c_k * delta)
        loss_minus = _loss_value(closure, "SPSA")
        diff = loss_plus - loss_minus
        for p, orig, delta, a_k, c_k in entries:
            p.copy_(orig - (a_k * diff / (2.0 * c_k)) * delta)
            state = self.state[p]
            state["step"] = state.get("step", 0) + 1
        return 0.5 * (loss_plus + loss_minus)


def _check_gain(name: str, value: Any) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= 0 if name in ("stability", "gamma") else value > 0
    if not ok:
        bound = ">= 0" if name in ("stability", "gamma") else "> 0"
        raise ValueError(f"SPSA: {name}={value!r} must be a finite number {bound}")
