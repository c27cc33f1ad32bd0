"""Learning speed: training steps and wall-clock until a learner reaches a normalised score.

Reads a sweep's results from its store (what ``qdrl-bench run`` wrote) and, for every
environment and learning agent, finds the first evaluation at which the agent's mean
evaluation return over seeds, normalised as in the report (0 = ``random``, 1 = the best other
baseline or oracle), reaches ``threshold`` (0.9 by default). The wall-clock to get there is
the agent's mean wall-clock per run times the fraction of its budget trained by then (training
dominates a run; evaluations are spread over it). An agent that never gets there reports its
best normalised mean and at which step.

Usage::

    python -m qdrl_bench.perf.time_to_threshold results/reference.db --sweep reference

Prints a Markdown table (``--json`` for the rows as JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from qdrl_bench.report import build_reports
from qdrl_bench.store import StoreError, get_store

__all__ = ["Reach", "main", "time_to_threshold"]


@dataclass(frozen=True)
class Reach:
    """When one agent on one env first reached the threshold (``step`` ``None``: never).

    Attributes:
        env: Env label.
        agent: Agent label.
        seeds: Seeds whose curves were averaged (every seed evaluated at each step counted).
        step: First evaluation step whose normalised mean is >= the threshold, or ``None``.
        wall_s: Estimated wall-clock seconds to that step (``None`` if never reached).
        best: Best normalised mean over the curve.
        best_step: Its step.
        final: Normalised mean of the last evaluation.
    """

    env: str
    agent: str
    seeds: int
    step: int | None
    wall_s: float | None
    best: float
    best_step: int
    final: float


def time_to_threshold(store: Any, sweep: str, threshold: float = 0.9) -> list[Reach]:
    """Steps and wall-clock to ``threshold`` for every learner of a sweep (see the module).

    Args:
        store: A :class:`qdrl_bench.store.BaseStore`, or a URL / path for
            :func:`qdrl_bench.store.get_store`.
        sweep: The sweep's name.
        threshold: Normalised score to reach.

    Returns:
        One :class:`Reach` per (env, learning agent) where normalisation is defined.

    Raises:
        ValueError: If the sweep is not in the store, or ``threshold`` is not finite.
        StoreError: If the store cannot be opened.
    """
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    store = get_store(store)
    out: list[Reach] = []
    for rep in build_reports(store, sweep):
        if rep.random_score is None or rep.reference is None:
            continue
        lo, hi = rep.random_score, rep.reference[1]
        if hi - lo <= 1e-12:
            continue
        for row in rep.rows:
            if row.is_baseline or not row.curves:
                continue
            by_step: dict[int, list[float]] = {}
            for curve in row.curves:
                for step, mean in curve:
                    by_step.setdefault(int(step), []).append(float(mean))
            steps = sorted(by_step)
            normed = [(float(np.mean(by_step[s])) - lo) / (hi - lo) for s in steps]
            last = max(steps[-1], 1)
            hit = next((s for s, v in zip(steps, normed, strict=True) if v >= threshold), None)
            best = int(np.argmax(normed))
            out.append(Reach(env=rep.env, agent=row.agent, seeds=len(row.curves), step=hit,
                             wall_s=None if hit is None else row.wall_s * hit / last,
                             best=normed[best], best_step=steps[best], final=normed[-1]))
    return out


def _markdown(rows: list[Reach], threshold: float) -> str:
    lines = [f"| env | agent | seeds | steps to {threshold:g} | wall-clock s | best (step) | "
             "final |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.env} | {r.agent} | {r.seeds} | "
                     f"{'-' if r.step is None else r.step} | "
                     f"{'-' if r.wall_s is None else f'{r.wall_s:.0f}'} | "
                     f"{r.best:.3f} ({r.best_step}) | {r.final:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the table of :func:`time_to_threshold`. Exit status 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m qdrl_bench.perf.time_to_threshold",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("store", help="store URL or .db path")
    parser.add_argument("--sweep", required=True, help="the sweep's name")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--json", action="store_true", help="rows as JSON")
    args = parser.parse_args(argv)
    try:
        rows = time_to_threshold(args.store, args.sweep, args.threshold)
    except (ValueError, OSError, StoreError) as exc:
        print(f"time_to_threshold: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps([asdict(r) for r in rows], indent=2) if args.json
          else _markdown(rows, args.threshold))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
