"""How a sweep scales with workers: local 1 worker vs N workers vs a local Ray cluster.

Runs the same sweep (default ``qdrl_bench/configs/quick.yaml``) from scratch three times, each
into a fresh in-memory store, and prints the wall-clock of each and the ratios
``local-1 / local-N`` (target: at least 1.8x with 2 workers on 2 cores) and
``ray-N / local-N``. It also checks that the three executions agree score for score, seed for
seed (they must: every run is fully seeded).

Run: ``python -m qdrl_bench.perf.sweep_scaling [--sweep FILE] [--workers 2] [--no-ray]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence

from qdrl_bench.runner import run_sweep
from qdrl_bench.spec import ExecutorSpec, SweepSpec, load_sweep
from qdrl_bench.store import InMemoryStore

DEFAULT_SWEEP = "qdrl_bench/configs/quick.yaml"
TARGET_SPEEDUP = 1.8


def time_sweep(spec: SweepSpec, kind: str, workers: int) -> tuple[float, dict[tuple, float]]:
    """Run ``spec`` from scratch with the given executor.

    Returns:
        ``(wall-clock seconds, {(env, agent, seed): final score})`` of the finished runs.
    """
    spec = dataclasses.replace(spec, executor=ExecutorSpec(kind=kind, workers=workers))
    store = InMemoryStore()
    t0 = time.perf_counter()
    summary = run_sweep(spec, store=store, progress=False)
    wall = time.perf_counter() - t0
    if summary.failures:
        raise RuntimeError(f"{kind} x{workers}: failed runs {summary.failures}")
    scores = {(r.key.env, r.key.agent, r.key.seed): r.result.final_score
              for r in store.list_runs() if r.result is not None
              and r.result.final_score is not None}
    return wall, scores


def main(argv: Sequence[str] | None = None) -> int:
    """Time the sweep under each executor and print the ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default=DEFAULT_SWEEP)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-ray", action="store_true", help="skip the Ray measurement")
    args = p.parse_args(argv)
    spec = load_sweep(args.sweep)
    rows: dict[str, tuple[float, dict[tuple, float]]] = {}
    rows["local x1"] = time_sweep(spec, "local", 1)
    rows[f"local x{args.workers}"] = time_sweep(spec, "local", args.workers)
    if not args.no_ray:
        rows[f"ray x{args.workers}"] = time_sweep(spec, "ray", args.workers)
    print(f"sweep {spec.name}: {len(rows['local x1'][1])} finished runs")
    for name, (wall, _) in rows.items():
        print(f"  {name:10s} {wall:8.1f} s")
    one = rows["local x1"][0]
    many = rows[f"local x{args.workers}"][0]
    speedup = one / many
    verdict = "PASS" if speedup >= TARGET_SPEEDUP else "FAIL"
    print(f"  local x1 / local x{args.workers}: {speedup:.2f}x "
          f"(target >= {TARGET_SPEEDUP}x: {verdict})")
    if not args.no_ray:
        ray_wall = rows[f"ray x{args.workers}"][0]
        print(f"  ray x{args.workers} / local x{args.workers} wall-clock: {ray_wall / many:.2f}")
    reference = rows["local x1"][1]
    for name, (_, scores) in rows.items():
        same = scores == reference
        print(f"  scores of {name} identical to local x1: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
