"""``qdrl-bench``: run sweeps, write reports, list what can be benchmarked, run the perf suite.

Usage::

    qdrl-bench run SWEEP.yaml [--store URL] [--executor local|ray] [--workers N]
                              [--rerun stale|all] [--report DIR] [--quiet]
    qdrl-bench report STORE [--sweep NAME] [--out DIR]
    qdrl-bench tune SWEEP.yaml --trials N [--storage URL] [--out DIR] [--seed S]
                              [--confirm K [--confirm-seeds S]] [--quiet]
    qdrl-bench list [--env ID ...]
    qdrl-bench perf [MODULE] [ARGS ...]

Exit status: 0 success; 1 some runs or condition evaluations failed (``tune``: a study gave up
after failed trials);
2 bad input (sweep file, store, arguments), with the message on stderr and no traceback; 130
interrupted by Ctrl-C (the store stays consistent; rerun to resume; ``tune`` marks the trial
in flight failed and runs only the missing trials next time).

The commands are thin layers over :func:`qdrl_bench.runner.run_sweep`,
:func:`qdrl_bench.report.write_report`, :func:`qdrl_bench.tune.tune_sweep` and
:mod:`qdrl_bench.registry`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
import runpy
import sys
from collections.abc import Sequence
from typing import TextIO

import gymnasium as gym

import qdrl_bench.perf as perf_suite
import qdrl_envs
from qdrl_bench import registry
from qdrl_bench.hyperparams import DEFAULT_DIR
from qdrl_bench.runner import RERUN_MODES, run_sweep, select_part
from qdrl_bench.spec import SpecError, SweepSpec, load_sweep
from qdrl_bench.store import StoreError
from qdrl_envs.wrappers import AdapterNotApplicable, adapt_action_space, adapter_for

# The report (scipy, matplotlib) and the tuner (optuna) are imported by their commands only:
# every other command starts without them.

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qdrl-bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) a sweep")
    run.add_argument("sweep", help="the sweep YAML file")
    run.add_argument("--store", help="store URL, overriding the sweep's (sqlite:///path.db)")
    run.add_argument("--executor", choices=("local", "ray"), help="override the executor kind")
    run.add_argument("--workers", type=int, help="override the number of workers")
    run.add_argument("--rerun", choices=RERUN_MODES,
                     help="also redo finished runs: 'stale' those produced by another code "
                          "version, 'all' every run of this sweep (old results are kept until "
                          "the new run finishes)")
    _part_options(run, "run", "the runs join the whole sweep's in its store",
                  "its label, or 'baselines'")
    run.add_argument("--report", metavar="DIR", help="write the report to DIR afterwards")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    rep = sub.add_parser("report", help="write the report of a store")
    rep.add_argument("store", help="store URL or .db path")
    rep.add_argument("--sweep", help="only this sweep (default: every sweep in the store)")
    rep.add_argument("--out", default="report", help="output folder (default: ./report)")
    tune = sub.add_parser("tune", help="tune each learning agent of a sweep with optuna "
                                       "(same trials and steps per trial for every agent)")
    tune.add_argument("sweep", help="the sweep YAML file (its envs, agents, timesteps, eval)")
    tune.add_argument("--trials", type=int, required=True,
                      help="complete + pruned trials per (env, agent) study")
    tune.add_argument("--storage", help="optuna storage URL (default: "
                                        "sqlite:///results/<sweep name>-tune.db); resumable")
    tune.add_argument("--out", default=None,
                      help="where <agent>.yml and tuning.json go (default: "
                           "qdrl_bench/hyperparams/tuned)")
    tune.add_argument("--seed", type=int, default=0, help="sampler and trial seed (default 0)")
    tune.add_argument("--confirm", type=int, default=0, metavar="K",
                      help="rerun each study's K best complete trials (and its starting one) "
                           "on more seeds and write the best mean (default 0: the single-seed "
                           "best)")
    tune.add_argument("--confirm-seeds", type=int, default=2, metavar="S",
                      help="further seeds per finalist (default 2)")
    _part_options(tune, "tune", "its studies are the whole sweep's, so parts can run side by "
                                "side with their own --storage and --out", "its label")
    tune.add_argument("--quiet", action="store_true", help="no progress lines")
    lst = sub.add_parser("list", help="list environments, agents, baselines and adapters")
    lst.add_argument("--env", action="append", help="only these env ids (repeatable)")
    perf = sub.add_parser("perf", help="run a module of the performance suite")
    perf.add_argument("module", nargs="?", help="module of qdrl_bench.perf (default: list)")
    perf.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the module")
    return p


def _part_options(parser: argparse.ArgumentParser, verb: str, joins: str, agent: str) -> None:
    """``--env`` / ``--agent``: the part of the sweep a command works on (see _load_part)."""
    parser.add_argument("--env", action="append", default=[], metavar="LABEL",
                        help=f"{verb} only this env of the sweep (label or id; repeatable); "
                             f"{joins}")
    parser.add_argument("--agent", action="append", default=[], metavar="LABEL",
                        help=f"{verb} only this agent of the sweep ({agent}; repeatable)")


def _load_part(args: argparse.Namespace) -> SweepSpec:
    """The sweep file, cut to the ``--env`` / ``--agent`` selection when one is given."""
    spec = load_sweep(args.sweep)
    return select_part(spec, args.env, args.agent) if args.env or args.agent else spec


def _cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    spec = _load_part(args)
    if args.workers is not None and args.workers < 1:
        raise SpecError(f"--workers must be >= 1, got {args.workers}")
    if args.executor or args.workers:
        executor = dataclasses.replace(spec.executor,
                                       kind=args.executor or spec.executor.kind,
                                       workers=args.workers or spec.executor.workers)
        spec = dataclasses.replace(spec, executor=executor)
    if args.store:
        spec = dataclasses.replace(spec, store=args.store)
    summary = run_sweep(spec, progress=not args.quiet, rerun=args.rerun)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "nothing to do"
    stale = (f" ({summary.stale} by another code version; --rerun stale redoes them)"
             if summary.stale else "")
    redo = (f", {summary.redo} done run(s) redone ({summary.replaced} replaced)"
            if summary.redo else "")
    out.write(f"sweep {summary.sweep}: {summary.total} runs, {summary.skipped} already done"
              f"{stale}{redo}; this time: {counts} in {summary.wall_s:.1f} s; store "
              f"{spec.store}\n")
    if summary.conditions or summary.from_saved or summary.retrained:
        done = ", ".join(f"{n} {s}" for s, n in sorted(summary.conditions.items())) or "none"
        out.write(f"  conditions: {done}; {summary.from_saved} finished run(s) evaluated from "
                  f"their saved agent, {summary.retrained} trained again (no saved agent)\n")
    for name, reason in summary.failures:
        out.write(f"  FAILED {name}: {reason}\n")
    for name, reason in summary.condition_failures:
        out.write(f"  FAILED condition {name}: {_one_line(reason)}\n")
    for name, status in summary.kept:
        out.write(f"  kept the old result of {name}: its rerun ended {status}\n")
    for name, owner in summary.held:
        out.write(f"  left to another driver {name}: running there ({owner})\n")
    if summary.interrupted:
        out.write("interrupted: runs in flight are marked 'interrupted' (runs being redone keep "
                  "their old result); rerun the same command to resume\n")
        return 130
    if args.report:
        from qdrl_bench.report import write_report  # heavy: see the top

        paths = write_report(spec.store, args.report, sweep=spec.name)
        out.write(f"report: {paths['html']}\n")
    return 1 if summary.failures or summary.condition_failures else 0


def _cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from qdrl_bench.report import write_report  # heavy: see the top

    paths = write_report(args.store, args.out, sweep=args.sweep)
    out.write(f"markdown: {paths['markdown']}\nhtml: {paths['html']}\n")
    stale: dict[str, list[int]] = {}
    for rep in paths["reports"]:
        counts = stale.setdefault(rep.sweep, [0, 0])
        counts[0] += rep.stale
        counts[1] += sum(len(row.scores) for row in rep.rows)
    for sweep, (n, total) in stale.items():
        if n:
            out.write(f"sweep {sweep}: {n} of {total} results are from another code version "
                      "(qdrl-bench run SWEEP --rerun stale recomputes them)\n")
    return 0


def _cmd_tune(args: argparse.Namespace, out: TextIO) -> int:
    from qdrl_bench.tune import tune_sweep  # heavy: see the top

    spec = _load_part(args)
    if args.trials < 1:
        raise SpecError(f"--trials must be >= 1, got {args.trials}")
    storage = args.storage or f"sqlite:///results/{spec.name}-tune.db"
    out_dir = args.out or str(DEFAULT_DIR / "tuned")
    for flag, value, least in (("--confirm", args.confirm, 0),
                               ("--confirm-seeds", args.confirm_seeds, 1)):
        if value < least:
            raise SpecError(f"{flag} must be >= {least}, got {value}")
    summary = tune_sweep(spec, trials=args.trials, storage=storage, out_dir=out_dir,
                         seed=args.seed, progress=False if args.quiet else out,
                         confirm=args.confirm, confirm_seeds=args.confirm_seeds)
    gave_up = False
    out.write(f"sweep {summary.sweep}: {len(summary.studies)} studies of {summary.trials} "
              f"trials x {summary.timesteps} steps in {summary.wall_s:.1f} s; storage "
              f"{summary.storage}\n")
    for r in summary.studies:
        counts = f"{r.complete} complete, {r.pruned} pruned, {r.failed} failed"
        seeds = f", mean of {r.best_seeds} seeds" if r.best_seeds > 1 else ""
        best = (f"best {r.best_value:.4g} (trial {r.best_trial}{seeds})"
                if r.best_value is not None else "no best trial")
        note = f" -- {r.status}: {r.reason}" if r.status != "tuned" else ""
        out.write(f"  {r.env}/{r.agent}: {counts}; {best}{note}\n")
        gave_up |= r.status == "gave_up"
    for path in summary.files:
        out.write(f"wrote {path}\n")
    return 1 if gave_up else 0


def _cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    env_ids = args.env or [*qdrl_envs.ENV_IDS, *qdrl_envs.MARL_ENV_IDS]
    unknown = [e for e in env_ids if e not in gym.registry and not registry.is_marl_env(e)]
    if unknown:
        raise SpecError(f"--env: unknown environment id(s) {unknown}")
    agents = registry.describe_agents()
    out.write("Agents (name, family, algorithm, action space needed, description):\n")
    for name, family, algo, need, description in agents:
        out.write(f"  {name:<16} {family:<9} {algo:<5} {need:<8} {description}\n")
    out.write("\nEnvironments:\n")
    needs = ("any", "discrete", "box")
    sb3 = [e for e in registry.agent_entries().values() if e.engine == "sb3"]
    for env_id in env_ids:
        env = registry.make_env(env_id)
        if registry.is_marl_env(env_id):  # PettingZoo: spaces per agent
            out.write(f"  {env_id} (multi-agent)\n")
            for agent in env.possible_agents:
                out.write(f"    {agent:<8} observation {env.observation_space(agent)}, "
                          f"action {env.action_space(agent)}\n")
            out.write(f"    baselines   {', '.join(registry.baselines_for(env_id))}\n")
            env.close()
            continue
        out.write(f"  {env_id}\n    observation {env.observation_space}\n"
                  f"    action      {env.action_space}\n"
                  f"    baselines   {', '.join(registry.baselines_for(env_id))}\n")
        for need in needs:
            try:
                name = adapter_for(env.action_space, need)
                adapt_action_space(env, need)  # applies the caps
                what = name or "none needed"
            except AdapterNotApplicable as exc:
                what = f"not applicable ({exc})"
            users = sorted({e.algo for e in sb3 if e.action_need == need})
            out.write(f"    adapter for {need:<8} ({'/'.join(users)}): {what}\n")
        env.close()
    return 0


def _cmd_perf(args: argparse.Namespace, out: TextIO) -> int:
    modules = sorted(m.name for m in pkgutil.iter_modules(perf_suite.__path__)
                     if not m.name.startswith("_"))
    if not args.module:
        out.write("performance suite modules (qdrl-bench perf MODULE [ARGS]):\n")
        for m in modules:
            out.write(f"  {m}\n")
        return 0
    if args.module not in modules:
        raise SpecError(f"unknown perf module {args.module!r}; available: {modules}")
    importlib.invalidate_caches()
    argv = sys.argv
    sys.argv = [f"qdrl_bench.perf.{args.module}", *args.args]
    try:
        runpy.run_module(f"qdrl_bench.perf.{args.module}", run_name="__main__")
    finally:
        sys.argv = argv
    return 0


def _one_line(text: str) -> str:
    return (text.splitlines() or [""])[0]


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status (see the module docstring).

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).
        out: Where results are printed (default: stdout). Errors go to stderr.

    Returns:
        The exit status.
    """
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    commands = {"run": _cmd_run, "report": _cmd_report, "tune": _cmd_tune, "list": _cmd_list,
                "perf": _cmd_perf}
    try:
        return commands[args.command](args, out)
    except (SpecError, StoreError, ValueError) as exc:
        sys.stderr.write(f"qdrl-bench {args.command}: error: {_one_line(str(exc))}\n")
        return 2
    except OSError as exc:  # an output path that is a file, a read-only folder, a full disk
        where = f": {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"qdrl-bench {args.command}: error: {exc.strerror or exc}{where}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
