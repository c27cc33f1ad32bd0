"""``make demo``: run ``qdrl_bench/configs/quick.yaml`` and print the path of its HTML report.

Usage::

    python -m qdrl_bench.demo [--sweep FILE] [--store URL] [--out DIR] [--workers N]

Rerunning resumes: finished runs are kept in the store (``results/quick.db`` by default) and
skipped. The report goes to ``results/quick-report/`` (``report.html``, ``report.md``, PNGs).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from qdrl_bench.report import write_report
from qdrl_bench.runner import run_sweep
from qdrl_bench.spec import SpecError, load_sweep
from qdrl_bench.store import StoreError

QUICK = Path(__file__).resolve().parent / "configs" / "quick.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo sweep and write its report; return the exit status.

    Args:
        argv: Arguments without the program name.

    Returns:
        0 on success, 1 if some runs failed, 2 on bad input, 130 when interrupted.
    """
    p = argparse.ArgumentParser(prog="python -m qdrl_bench.demo",
                                description=__doc__.split("\n")[0])
    p.add_argument("--sweep", default=str(QUICK), help="sweep file (default: quick.yaml)")
    p.add_argument("--store", help="store URL (default: the sweep's)")
    p.add_argument("--out", help="report folder (default: results/<sweep>-report)")
    p.add_argument("--workers", type=int, help="local worker processes (default: the sweep's)")
    args = p.parse_args(argv)
    try:
        spec = load_sweep(args.sweep)
        if args.store:
            spec = dataclasses.replace(spec, store=args.store)
        if args.workers:
            spec = dataclasses.replace(
                spec, executor=dataclasses.replace(spec.executor, workers=args.workers))
        summary = run_sweep(spec)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()))
        print(f"sweep {spec.name}: {summary.total} runs ({summary.skipped} already done"
              + (f"; {counts}" if counts else "") + f") in {summary.wall_s:.0f} s")
        for name, reason in summary.failures:
            print(f"  FAILED {name}: {reason.splitlines()[0]}")
        if summary.interrupted:
            print("interrupted; rerun to resume")
            return 130
        out = args.out or str(Path("results") / f"{spec.name}-report")
        paths = write_report(spec.store, out, sweep=spec.name)
    except (SpecError, StoreError, ValueError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {Path(paths['html']).resolve()}")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
