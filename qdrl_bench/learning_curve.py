"""What every learning run shares, single- or multi-agent: its evaluation curve and progress.

:mod:`qdrl_bench.execute` (single-agent runs) and :mod:`qdrl_bench.marl_run` (the multi-agent
envs) build a run's ``curve`` of :class:`~qdrl_bench.store.EvalPoint` the same way, score it
with :func:`score_metrics`, report progress through a :data:`StepReporter` that can never break
the run, and stop where an :data:`EvalHook` says so.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from qdrl_bench.store import EvalPoint

__all__ = [
    "LAST_EVALS",
    "EvalHook",
    "StepReporter",
    "error_text",
    "eval_point",
    "safe_reporter",
    "sb3_eval_callback",
    "score_metrics",
]

StepReporter = Callable[[str, int, int], None]
"""Receives a run's training progress: ``(run name, steps done, total steps)``."""

EvalHook = Callable[[int, float], bool]
"""Called after each evaluation of a learning run with ``(step, mean return)``; returning
``False`` stops training there (a tuner's pruner). The run still finishes with the curve so
far, its last point the evaluation that stopped it."""

LAST_EVALS = 3
"""Evaluation points the stability score averages over (the final one and those before)."""


def score_metrics(curve: Sequence[EvalPoint], sampled: Sequence[float]) -> dict[str, float]:
    """A learning run's scores beside its final deterministic one, as ``score/`` metrics.

    ``score/stochastic``: the mean return of the same evaluation episodes with actions sampled
    from the policy (an untrained policy's mode can be far worse, or better, than the policy);
    ``score/last_evals``: the mean of the last :data:`LAST_EVALS` deterministic evaluations,
    which shows a policy that peaked and then fell.
    """
    tail = [p.mean for p in curve[-LAST_EVALS:]]
    return {"score/stochastic": float(np.mean(sampled)),
            "score/last_evals": float(np.mean(tail))}


def eval_point(step: int, returns: Sequence[float]) -> EvalPoint:
    """The curve point of one evaluation: its episode returns, their mean and std."""
    arr = np.asarray(returns, dtype=np.float64)
    return EvalPoint(step=int(step), mean=float(arr.mean()), std=float(arr.std()),
                     returns=tuple(float(r) for r in arr))


def error_text(exc: BaseException) -> str:
    """A failed run's reason: the exception and the last frames of its traceback."""
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(tb[-3:]).strip()
    return f"{type(exc).__name__}: {exc}\n{tail}"[:4000]


def safe_reporter(reporter: StepReporter | None) -> StepReporter:
    """``reporter`` with its errors swallowed (progress must never break a run)."""

    def report(name: str, steps: int, total: int) -> None:
        if reporter is not None:
            try:
                reporter(name, steps, total)
            except Exception:  # progress must never break a run
                pass

    return report


def sb3_eval_callback(name: str, every: int, total: int, do_eval: Callable[[int], bool],
                      report: StepReporter, *, eval_at_start: bool = False) -> Any:
    """The SB3 callback of a learning run: evaluate every ``every`` steps, report progress.

    Args:
        name: The run's name (for ``report``).
        every: Evaluate when SB3's ``num_timesteps`` passes a multiple of this.
        total: The run's training steps (for ``report``).
        do_eval: Evaluates at a step; returning ``False`` stops training (``callback.stopped``
            then says so).
        report: Receives the progress, at most twice a second and at the end.
        eval_at_start: Also evaluate at step 0, when training starts (for a trainer that
            builds the model itself: the callback's ``model`` is the one to evaluate).
    """
    from stable_baselines3.common.callbacks import BaseCallback  # heavy: torch

    class EvalCallback(BaseCallback):
        """Evaluate every ``every`` steps (stop when the hook says so), report progress."""

        def __init__(self) -> None:
            super().__init__()
            self.next_eval = every
            self.last_report = 0.0
            self.stopped = False

        def _on_training_start(self) -> None:
            if eval_at_start:
                self.stopped = not do_eval(0)

        def _on_step(self) -> bool:
            if self.stopped:
                return False
            n = self.num_timesteps
            if n >= self.next_eval:
                go_on = do_eval(n)
                while self.next_eval <= n:
                    self.next_eval += every
                if not go_on:
                    self.stopped = True
                    return False
            now = time.monotonic()
            if now - self.last_report > 0.5:
                self.last_report = now
                report(name, n, total)
            return True

        def _on_training_end(self) -> None:
            report(name, self.num_timesteps, total)

    return EvalCallback()
