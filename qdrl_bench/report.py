"""The sweep report: scores with interval estimates, normalised scores, learning curves.

For every sweep in a store and every environment in it, the report gives

* a table of final scores per agent: IQM over seeds with a 95% bootstrap confidence interval,
  mean, the score normalised between ``random`` (0) and the best other baseline or oracle (1),
  the fraction of the oracle's score (where the env has an oracle with a positive score), for
  learning agents the mean of the same episodes played with sampled actions (``stochastic``) and
  the mean of the last three evaluations (stability: a policy that peaked and fell shows here,
  not in the final score alone), parameter counts (quantum / classical), wall-clock per run, the
  action-space adapter, where a learning agent's settings came from (its hyperparameter file
  and line, and for a tuned entry the trials and steps of its study, from the ``tuning.json``
  beside the file), and the final evaluation's physical metrics (``info`` means such as the
  secrecy rate);
* learning curves: mean evaluation return over seeds with a 95% bootstrap CI band per agent,
  baselines as horizontal lines (like paper Fig. 11);
* runs without a result (not applicable, failed, interrupted, ...), with their reasons;
* robustness, where the sweep has evaluation conditions (:mod:`qdrl_bench.conditions`): a table
  of each learning agent's score under each condition as a fraction of its clean score (per
  seed, the condition's mean return over the clean score of the same run; IQM over seeds with
  a 95% bootstrap CI), ``n/a`` where a condition does not apply (an ``executor`` condition of
  a classical agent), and a figure of that fraction against each series' strength (shots,
  error rate, attack epsilon), quantum agents solid, classical dashed, side by side. The
  fraction is of the score itself when every clean score of the env is positive; otherwise of
  the score's margin over the ``random`` baseline, ``(condition - random) / (clean - random)``
  (the note under the table says which);
* poisoned and adversarial training: each agent trained with ``train_wrappers`` or
  ``adversarial_training`` beside the same agent trained clean (same registry agent and
  kwargs), its score as a fraction of the clean one's (paired by seed);

and, across environments, each agent's IQM of normalised scores with a 95% *stratified*
bootstrap CI (seeds resampled within each environment; Agarwal et al. 2021, "Deep RL at the
edge of the statistical precipice", as in rliable). The statistics are implemented here with
NumPy/SciPy (rliable would pull pandas, seaborn, statsmodels and arch); the bootstrap is seeded,
so a report is reproducible.

Outputs: ``report.md`` (+ PNG files next to it) and ``report.html``, one self-contained page
with the images inlined as base64.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from qdrl_bench.agents import get_agent, is_baseline
from qdrl_bench.hyperparams import describe_settings
from qdrl_bench.provenance import code_version, is_stale
from qdrl_bench.store import FINISHED, BaseStore, RunRecord, SQLiteStore, StoreError, get_store

# matplotlib is imported where a figure is drawn (heavy, and only writing a report needs it).

__all__ = [
    "AgentRow",
    "ConditionCell",
    "EnvReport",
    "RobustnessRow",
    "TrainingRow",
    "build_reports",
    "iqm",
    "stratified_bootstrap_ci",
    "write_report",
]

N_BOOT = 2000
_ORACLE = "oracle"
_RANDOM = "random"


def iqm(x: Sequence[float] | np.ndarray, axis: int | None = None) -> Any:
    """Interquartile mean: the mean of the middle 50% of the values (25% trimmed each side).

    Args:
        x: Scores.
        axis: ``None``: over all values (returns a float); else along that axis (an array).

    Returns:
        The IQM (NaN for no values).
    """
    arr = np.asarray(x, dtype=np.float64)
    if axis is None:
        arr = arr.reshape(-1)
        if arr.size == 0:
            return math.nan
        return float(stats.trim_mean(arr, 0.25))
    return stats.trim_mean(arr, 0.25, axis=axis)


def stratified_bootstrap_ci(groups: Sequence[Sequence[float]], statistic: Any = iqm,
                            n_boot: int = N_BOOT, alpha: float = 0.05,
                            seed: int = 0) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap CI, resampling within each group.

    Args:
        groups: One sequence of scores per stratum (per environment; the seeds inside).
        statistic: ``statistic(x, axis=None | 1)`` over all scores pooled (default
            :func:`iqm`); called once on a ``(n_boot, n_scores)`` array with ``axis=1``.
        n_boot: Bootstrap replicates.
        alpha: 1 - confidence level.
        seed: Seed of the bootstrap's generator.

    Returns:
        ``(estimate, low, high)``; ``low == high == estimate`` when every group has one value.

    Raises:
        ValueError: If there are no scores.
    """
    arrays = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if not arrays:
        raise ValueError("stratified_bootstrap_ci needs at least one score")
    point = float(statistic(np.concatenate(arrays)))
    rng = np.random.default_rng(seed)
    # all replicates at once: (n_boot, total) resampled within each stratum
    samples = np.concatenate([a[rng.integers(0, a.size, (n_boot, a.size))] for a in arrays],
                             axis=1)
    reps = np.asarray(statistic(samples, axis=1), dtype=np.float64)
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return point, float(lo), float(hi)


@dataclass
class AgentRow:
    """One agent's line in an environment's table."""

    agent: str
    agent_name: str
    is_baseline: bool
    scores: list[float]
    iqm: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    mean: float = math.nan
    normalised: float | None = None
    normalised_ci: tuple[float, float] | None = None
    of_oracle: float | None = None
    params_quantum: int | None = None
    params_classical: int | None = None
    wall_s: float = math.nan
    adapter: str | None = None
    settings: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    curves: list[list[tuple[int, float]]] = field(default_factory=list)
    roles: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """Multi-agent runs: per role, the IQM over seeds of one agent's mean return, and its CI."""


@dataclass
class ConditionCell:
    """One agent's score under one condition, as a fraction of its clean score."""

    condition: str
    series: str
    axis: str
    strength: float | None
    kind: str
    fractions: list[float] = field(default_factory=list)
    iqm: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    status: str = ""  # "" (scores), "n/a" or "failed": what the cell shows when no scores
    reason: str = ""


@dataclass
class RobustnessRow:
    """One learning agent's line of an env's robustness table."""

    agent: str
    quantum: bool
    clean: float
    cells: dict[str, ConditionCell] = field(default_factory=dict)


@dataclass
class TrainingRow:
    """A poisoned or adversarially trained agent beside its clean counterpart."""

    agent: str
    clean_agent: str
    training: str
    iqm: float
    ci: tuple[float, float]
    fraction: float
    fraction_ci: tuple[float, float]
    seeds: int


@dataclass
class EnvReport:
    """Everything the report shows for one environment of one sweep."""

    sweep: str
    env: str
    env_id: str
    rows: list[AgentRow]
    random_score: float | None
    reference: tuple[str, float] | None
    oracle_score: float | None
    other: list[tuple[str, str, str]]  # (run name, status, reason)
    superseded: int = 0
    code_versions: tuple[str, ...] = ()
    stale: int = 0  # results shown that another code version than the current one produced
    conditions: list[tuple[str, str, str, float | None, str]] = field(default_factory=list)
    robustness: list[RobustnessRow] = field(default_factory=list)
    robustness_anchor: str = ""  # "score" or "margin over random" ("" : no fractions)
    training: list[TrainingRow] = field(default_factory=list)


def _latest_finished(runs: list[RunRecord]) -> tuple[list[RunRecord], int]:
    """Keep one finished run per (env, agent, seed): the latest (config changes supersede)."""
    best: dict[tuple[str, str, int], RunRecord] = {}
    n = 0
    for r in runs:
        if r.status != FINISHED:
            continue
        k = (r.key.env, r.key.agent, r.key.seed)
        if k in best:
            n += 1
            if (r.finished_at or 0) <= (best[k].finished_at or 0):
                continue
        best[k] = r
    return list(best.values()), n


def _normalise(x: float, lo: float, hi: float) -> float:
    return (x - lo) / (hi - lo)


def build_reports(store: BaseStore, sweep: str | None = None, *,
                  version: str | None = None) -> list[EnvReport]:
    """Compute the per-environment reports of one sweep (or every sweep) in a store.

    Args:
        store: The store.
        sweep: Only this sweep (default: every sweep).
        version: The current code version, against which :attr:`EnvReport.stale` counts
            (default: :func:`qdrl_bench.provenance.code_version` of this process).

    Raises:
        ValueError: If ``sweep`` is not in the store (the message lists the sweeps).
    """
    sweeps = store.sweeps()
    if sweep is not None and sweep not in sweeps:
        raise ValueError(f"sweep {sweep!r} is not in the store; sweeps there: {sweeps}")
    current = version if version is not None else code_version()
    out: list[EnvReport] = []
    for sw in [sweep] if sweep else sweeps:
        runs = store.list_runs(sweep=sw)
        finished, _ = _latest_finished(runs)
        for env in dict.fromkeys(r.key.env for r in runs):
            out.append(_env_report(store, sw, env, runs, finished, current))
    return out


def _env_report(store: BaseStore, sweep: str, env: str, runs: list[RunRecord],
                finished: list[RunRecord], current: str) -> EnvReport:
    """The report of one environment of a sweep.

    ``runs`` are all the sweep's runs, ``finished`` the latest finished run of each (env,
    agent, seed) among them (:func:`_latest_finished`).
    """
    env_runs = [r for r in finished if r.key.env == env]
    by_agent: dict[str, list[RunRecord]] = defaultdict(list)
    for r in env_runs:
        by_agent[r.key.agent].append(r)
    rows = [_agent_row(store, agent, recs, seed=i)
            for i, (agent, recs) in enumerate(by_agent.items())]
    rows.sort(key=lambda r: (r.is_baseline, -r.iqm))
    random_score, reference, oracle = _normalise_rows(rows)
    rep = EnvReport(sweep=sweep, env=env, env_id=env_runs[0].key.env_id if env_runs else env,
                    rows=rows, random_score=random_score, reference=reference,
                    oracle_score=oracle, other=_without_result(runs, env, finished),
                    superseded=sum(1 for r in runs if r.key.env == env
                                   and r.status == FINISHED) - len(env_runs),
                    code_versions=tuple(sorted({
                        r.result.code_version for r in env_runs
                        if r.result is not None and r.result.code_version})),
                    stale=sum(is_stale(r, current) for r in env_runs))
    _robustness(store, rep, by_agent)
    rep.training = _training_rows(by_agent)
    return rep


def _family_is_quantum(name: str) -> bool:
    return not is_baseline(name) and get_agent(name).family in ("quantum", "hybrid")


def _robustness(store: BaseStore, rep: EnvReport, by_agent: dict[str, list[RunRecord]]) -> None:
    """Fill the env's robustness table from its learning agents' condition results."""
    learners = {a: recs for a, recs in by_agent.items() if not is_baseline(recs[0].key.agent_name)}
    stored = {r.run_id: store.get_conditions(r.run_id) for recs in learners.values()
              for r in recs}
    learners = {a: recs for a, recs in learners.items()  # agents under no condition: no row
                if any(stored[r.run_id] for r in recs)}
    order: dict[str, tuple[str, str, str, float | None, str]] = {}
    for conds in stored.values():
        for c in conds:
            if c.name not in order:
                cfg = c.config
                strength = cfg.get("strength")
                order[c.name] = (c.name, str(cfg.get("series") or c.name),
                                 str(cfg.get("axis") or ""),
                                 None if strength is None else float(strength), c.kind)
    if not order:
        return
    rep.conditions = list(order.values())
    clean = [float(r.result.final_score) for recs in learners.values() for r in recs
             if r.result is not None and r.result.final_score is not None]
    anchor: float | None = 0.0
    rep.robustness_anchor = "score"
    if clean and min(clean) <= 0:
        anchor = rep.random_score
        rep.robustness_anchor = "margin over random" if anchor is not None else ""
    for i, (agent, recs) in enumerate(sorted(learners.items())):
        row = RobustnessRow(agent=agent, quantum=_family_is_quantum(recs[0].key.agent_name),
                            clean=iqm([r.result.final_score for r in recs if r.result]))
        for j, (name, series, axis, strength, kind) in enumerate(rep.conditions):
            cell = ConditionCell(condition=name, series=series, axis=axis, strength=strength,
                                 kind=kind)
            statuses = []
            for r in recs:
                c = next((c for c in stored[r.run_id] if c.name == name), None)
                if c is None:
                    continue
                statuses.append(c.status)
                if c.status == FINISHED and c.mean is not None and anchor is not None \
                        and r.result is not None and r.result.final_score is not None:
                    span = float(r.result.final_score) - anchor
                    if span > 1e-12:
                        cell.fractions.append((float(c.mean) - anchor) / span)
                elif c.reason and not cell.reason:
                    cell.reason = (c.reason.splitlines() or [""])[0]
            if cell.fractions:
                cell.iqm, lo, hi = stratified_bootstrap_ci([cell.fractions],
                                                           seed=2000 + 97 * i + j)
                cell.ci = (lo, hi)
            elif statuses and all(st == "not_applicable" for st in statuses):
                cell.status = "n/a"
            elif "failed" in statuses:
                cell.status = "failed"
            row.cells[name] = cell
        rep.robustness.append(row)


def _describe_training(config: dict[str, Any], metrics: dict[str, float]) -> str:
    agent = config.get("agent", {})
    parts = []
    for w in agent.get("train_wrappers") or []:
        knobs = ", ".join(f"{k} {v}" for k, v in w.items() if k not in ("kind", "fraction"))
        measured = metrics.get(f"train/poisoned_{w.get('kind')}_fraction")
        got = f", measured {measured:.3f}" if measured is not None else ""
        parts.append(f"{w.get('kind')} poisoning {w.get('fraction')} ({knobs}{got})")
    adv = agent.get("adversarial_training")
    if adv:
        parts.append(f"adversarial training {adv.get('attack')} eps {adv.get('epsilon')} "
                     f"rate {adv.get('rate')} ({adv.get('objective')})")
    return "; ".join(parts)


def _training_rows(by_agent: dict[str, list[RunRecord]]) -> list[TrainingRow]:
    """Poisoned / adversarially trained agents against the same agent trained clean."""
    def plain(rec: RunRecord) -> tuple[str, str]:
        a = rec.key.config.get("agent", {})
        return rec.key.agent_name, repr(sorted((a.get("kwargs") or {}).items()))

    clean = {}
    for agent, recs in by_agent.items():
        a = recs[0].key.config.get("agent", {})
        if not a.get("train_wrappers") and not a.get("adversarial_training"):
            clean.setdefault(plain(recs[0]), agent)
    out = []
    for i, (agent, recs) in enumerate(sorted(by_agent.items())):
        a = recs[0].key.config.get("agent", {})
        if not a.get("train_wrappers") and not a.get("adversarial_training"):
            continue
        base = clean.get(plain(recs[0]))
        scores = [float(r.result.final_score) for r in recs if r.result is not None]
        est, lo, hi = stratified_bootstrap_ci([scores], seed=3000 + i)
        fractions = []
        if base is not None:
            by_seed = {r.key.seed: r.result.final_score for r in by_agent[base]
                       if r.result is not None}
            fractions = [float(r.result.final_score) / by_seed[r.key.seed] for r in recs
                         if r.result is not None and by_seed.get(r.key.seed, 0) > 1e-12]
        if fractions:
            f, flo, fhi = stratified_bootstrap_ci([fractions], seed=4000 + i)
        else:
            f, flo, fhi = math.nan, math.nan, math.nan
        metrics = dict(recs[0].result.metrics) if recs[0].result is not None else {}
        out.append(TrainingRow(agent=agent, clean_agent=base or "-",
                               training=_describe_training(dict(recs[0].key.config), metrics),
                               iqm=est, ci=(lo, hi), fraction=f, fraction_ci=(flo, fhi),
                               seeds=len(scores)))
    return out


def _without_result(runs: list[RunRecord], env: str,
                    finished: list[RunRecord]) -> list[tuple[str, str, str]]:
    """``(agent/seed, status, reason)`` of the env's runs with no finished run of their seed."""
    done = {(r.key.env, r.key.agent, r.key.seed) for r in finished}
    return sorted({(f"{r.key.agent}/{r.key.seed}", r.status,
                    (r.result.reason if r.result else "") or "")
                   for r in runs if r.key.env == env and r.status != FINISHED
                   and (r.key.env, r.key.agent, r.key.seed) not in done})


def _agent_row(store: BaseStore, agent: str, recs: list[RunRecord], seed: int) -> AgentRow:
    """One agent's line of an env's table from its finished runs (``seed``: the bootstrap's)."""
    recs.sort(key=lambda r: r.key.seed)
    res = [r.result for r in recs if r.result is not None]
    scores = [float(x.final_score) for x in res if x.final_score is not None]
    metric_keys = sorted({k for x in res for k in x.metrics})
    metrics = {k: float(np.mean([x.metrics[k] for x in res if k in x.metrics]))
               for k in metric_keys}
    name = recs[0].key.agent_name
    row = AgentRow(
        agent=agent, agent_name=name, is_baseline=is_baseline(name), scores=scores,
        params_quantum=res[0].params_quantum, params_classical=res[0].params_classical,
        wall_s=float(np.mean([x.wall_s or 0.0 for x in res])),
        adapter=res[0].adapter, metrics=metrics,
        settings="" if is_baseline(name) else describe_settings(name, recs[0].key.env_id),
        curves=[[(p.step, p.mean) for p in store.get_curve(r.run_id)] for r in recs])
    row.iqm, lo, hi = stratified_bootstrap_ci([scores], seed=seed)
    row.ci = (lo, hi)
    row.mean = float(np.mean(scores))
    for key in metric_keys:
        if key.startswith(ROLE_PREFIX):
            values = [x.metrics[key] for x in res if key in x.metrics]
            row.roles[key[len(ROLE_PREFIX):]] = stratified_bootstrap_ci([values], seed=seed)
    return row


def _normalise_rows(rows: list[AgentRow]
                    ) -> tuple[float | None, tuple[str, float] | None, float | None]:
    """Fill the rows' normalised scores and oracle fractions from the env's baselines.

    Returns:
        The ``random`` baseline's mean, the reference (the best other baseline: name, mean)
        and the oracle's mean, each ``None`` where the env's table has none.
    """
    base = {r.agent_name: r.mean for r in rows if r.is_baseline}
    random_score = base.get(_RANDOM)
    refs = {k: v for k, v in base.items() if k != _RANDOM}
    reference = max(refs.items(), key=lambda kv: kv[1]) if refs else None
    oracle = base.get(_ORACLE)
    if random_score is not None and reference is not None \
            and reference[1] - random_score > 1e-12:
        for i, row in enumerate(rows):
            normed = [_normalise(s, random_score, reference[1]) for s in row.scores]
            row.normalised, lo, hi = stratified_bootstrap_ci([normed], seed=100 + i)
            row.normalised_ci = (lo, hi)
    if oracle is not None and oracle > 1e-12:  # a fraction only means something > 0
        for row in rows:
            row.of_oracle = row.mean / oracle
    return random_score, reference, oracle


def aggregate(reports: list[EnvReport]) -> dict[str, dict[str, list[tuple[float, float, float]]]]:
    """Per sweep and agent: IQM of normalised scores over envs, stratified bootstrap CI.

    Returns:
        ``{sweep: {agent: (iqm, low, high, n_envs)}}`` over the envs where normalisation is
        defined.
    """
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    per: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    for rep in reports:
        if rep.random_score is None or rep.reference is None:
            continue
        span = rep.reference[1] - rep.random_score
        if span <= 1e-12:
            continue
        for row in rep.rows:
            per[(rep.sweep, row.agent)].append(
                [_normalise(s, rep.random_score, rep.reference[1]) for s in row.scores])
    for i, ((sw, agent), groups) in enumerate(sorted(per.items())):
        est, lo, hi = stratified_bootstrap_ci(groups, seed=1000 + i)
        out[sw][agent] = (est, lo, hi, len(groups))
    return dict(out)


# ----------------------------------------------------------------------------- figures


def _bootstrap_band(values: np.ndarray, seed: int, n_boot: int = 1000) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """95% bootstrap CI of the mean over axis 0 (seeds), per column (step)."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    idx = rng.integers(0, n, (n_boot, n))
    means = values[idx].mean(axis=1)
    return np.quantile(means, 0.025, axis=0), np.quantile(means, 0.975, axis=0)


def _curves_png(rep: EnvReport) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # heavy: see the top
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i}" for i in range(10)]
    learners = [r for r in rep.rows if not r.is_baseline]
    # colours follow the agent's name, not its rank, so figures of one sweep stay comparable
    order = sorted(r.agent for r in learners)
    x_max = 1
    for row in learners:
        i = order.index(row.agent)
        curves = [c for c in row.curves if c]
        if not curves:
            continue
        grid = np.unique(np.concatenate([[s for s, _ in c] for c in curves]))
        ys = np.stack([np.interp(grid, [s for s, _ in c], [m for _, m in c]) for c in curves])
        mean = ys.mean(axis=0)
        color = colors[i % 10]
        ax.plot(grid, mean, color=color, label=f"{row.agent} (n={len(curves)})")
        if len(curves) > 1:
            lo, hi = _bootstrap_band(ys, seed=i)
            ax.fill_between(grid, lo, hi, color=color, alpha=0.2, linewidth=0)
        x_max = max(x_max, int(grid.max()))
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1))]
    for j, row in enumerate(r for r in rep.rows if r.is_baseline):
        ax.axhline(row.mean, color=colors[(len(learners) + j) % 10],
                   linestyle=styles[j % len(styles)], linewidth=1.2,
                   label=f"{row.agent} (baseline)")
    ax.set_xlabel("training steps")
    ax.set_ylabel("evaluation return (mean over seeds, 95% CI)")
    ax.set_title(f"{rep.env}" + (f" — {rep.sweep}" if rep.sweep else ""), fontsize=10)
    ax.set_xlim(0, x_max)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _robustness_png(rep: EnvReport) -> bytes:
    """Score (fraction of clean) against each series' strength, one panel per series."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # heavy: see the top
    from matplotlib.figure import Figure

    series = list(dict.fromkeys(s for _, s, _, _, _ in rep.conditions))
    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig = Figure(figsize=(4.3 * ncols, 3.3 * nrows + 0.9), dpi=100)
    FigureCanvasAgg(fig)
    order = sorted(r.agent for r in rep.robustness)
    for n, name in enumerate(series):
        ax = fig.add_subplot(nrows, ncols, n + 1)
        conds = [c for c in rep.conditions if c[1] == name]
        numeric = all(c[3] is not None for c in conds)
        if numeric:
            conds.sort(key=lambda c: c[3])
        xs = [c[3] if numeric else k for k, c in enumerate(conds)]
        for row in rep.robustness:
            cells = [row.cells.get(c[0]) for c in conds]
            pts = [(x, c) for x, c in zip(xs, cells, strict=True)
                   if c is not None and c.fractions]
            if not pts:
                continue
            color = f"C{order.index(row.agent) % 10}"
            x = np.array([p[0] for p in pts], dtype=float)
            y = np.array([p[1].iqm for p in pts])
            err = np.array([[p[1].iqm - p[1].ci[0] for p in pts],
                            [p[1].ci[1] - p[1].iqm for p in pts]])
            ax.errorbar(x, y, yerr=np.maximum(err, 0), color=color,
                        linestyle="-" if row.quantum else "--",
                        marker="o" if row.quantum else "s", markersize=4, capsize=2,
                        label=f"{row.agent} ({'quantum' if row.quantum else 'classical'})")
        ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle=":")
        if numeric:
            positive = [x for x in xs if x > 0]
            if len(positive) == len(xs) and len(xs) > 1 and max(xs) / min(xs) >= 20:
                ax.set_xscale("log")
            ax.set_xlabel(conds[0][2] or "strength")
        else:
            ax.set_xticks(xs)
            ax.set_xticklabels([c[0] for c in conds], rotation=20, fontsize=7)
        ax.set_title(f"{name} ({conds[0][4]})", fontsize=9)
        ax.set_ylabel("fraction of clean score (IQM, 95% CI)", fontsize=7)
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", fontsize=7,
                   ncol=min(4, len(handles)), frameon=False)
    fig.suptitle(f"{rep.env} — robustness" + (f" — {rep.sweep}" if rep.sweep else ""),
                 fontsize=10)
    rows_of_legend = math.ceil(len(handles) / 4) if handles else 0
    fig.tight_layout(rect=(0, 0.03 + 0.1 * rows_of_legend / nrows, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _aggregate_png(sweep: str, agg: dict[str, tuple[float, float, float, int]]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # heavy: see the top
    from matplotlib.figure import Figure

    names = sorted(agg, key=lambda a: agg[a][0])
    fig = Figure(figsize=(6.5, 0.45 * len(names) + 1.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    est = np.array([agg[n][0] for n in names])
    lo = np.array([agg[n][1] for n in names])
    hi = np.array([agg[n][2] for n in names])
    ax.barh(names, hi - lo, left=lo, color="C0", alpha=0.35, height=0.6)
    ax.plot(est, names, "k|", markersize=14)
    ax.axvline(0.0, color="0.5", linewidth=0.8)
    ax.axvline(1.0, color="0.5", linewidth=0.8, linestyle="--")
    ax.set_xlabel("IQM normalised score (0 = random, 1 = best baseline / oracle), 95% CI")
    ax.set_title(f"{sweep}: all environments", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ----------------------------------------------------------------------------- writing


def _f(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if abs(x) < 1e-9:
        x = 0.0
    return f"{x:.{digits}g}" if abs(x) >= 1e4 or (0 < abs(x) < 1e-3) else f"{x:.{digits}f}"


ROLE_PREFIX = "role/"
"""Metrics of a multi-agent run's per-role returns (:mod:`qdrl_bench.marl_run`)."""

_OWN_TABLE = ("score/", ROLE_PREFIX, "agent/")
"""Metrics shown apart from the main table's first info means (or, per agent, not at all)."""


def _table(rep: EnvReport) -> tuple[list[str], list[list[str]]]:
    metric_keys = sorted({k for r in rep.rows for k in r.metrics
                          if not k.startswith(_OWN_TABLE)})[:4]
    head = ["agent", "seeds", "IQM [95% CI]", "mean", "normalised IQM [95% CI]"]
    if rep.oracle_score is not None:
        head.append("mean / oracle")
    head += ["stochastic mean", "last-3 evals mean"]
    head += ["params q / c", "wall-clock s/run", "adapter", "settings"]
    head += [k for k in metric_keys]
    body = []
    for r in rep.rows:
        cells = [r.agent + (" (baseline)" if r.is_baseline else ""), str(len(r.scores)),
                 f"{_f(r.iqm)} [{_f(r.ci[0])}, {_f(r.ci[1])}]", _f(r.mean),
                 "-" if r.normalised is None or r.normalised_ci is None else
                 f"{_f(r.normalised)} [{_f(r.normalised_ci[0])}, {_f(r.normalised_ci[1])}]"]
        if rep.oracle_score is not None:
            cells.append(_f(r.of_oracle))
        cells += [_f(r.metrics.get("score/stochastic")), _f(r.metrics.get("score/last_evals"))]
        cells += ["-" if r.is_baseline else f"{r.params_quantum} / {r.params_classical}",
                  _f(r.wall_s, 2), r.adapter or "-", r.settings or "-"]
        cells += [_f(r.metrics.get(k)) for k in metric_keys]
        body.append(cells)
    return head, body


def _roles_table(rep: EnvReport) -> tuple[list[str], list[list[str]]]:
    roles = list(dict.fromkeys(r for row in rep.rows for r in row.roles))
    head = ["agent", "team IQM [95% CI]", *[f"{r} IQM [95% CI]" for r in roles], "params q / c"]
    body = []
    for row in rep.rows:
        cells = [row.agent + (" (baseline)" if row.is_baseline else ""),
                 f"{_f(row.iqm)} [{_f(row.ci[0])}, {_f(row.ci[1])}]"]
        for r in roles:
            est = row.roles.get(r)
            cells.append("-" if est is None else f"{_f(est[0])} [{_f(est[1])}, {_f(est[2])}]")
        cells.append("-" if row.is_baseline else f"{row.params_quantum} / {row.params_classical}")
        body.append(cells)
    return head, body


def _robustness_table(rep: EnvReport) -> tuple[list[str], list[list[str]]]:
    head = ["agent", "family", "clean IQM", *[c[0] for c in rep.conditions]]
    body = []
    for row in rep.robustness:
        cells = [row.agent, "quantum" if row.quantum else "classical", _f(row.clean)]
        for name, *_ in rep.conditions:
            c = row.cells.get(name)
            if c is None:
                cells.append("-")
            elif c.fractions:
                cells.append(f"{_f(c.iqm)} [{_f(c.ci[0])}, {_f(c.ci[1])}]")
            else:
                cells.append(c.status or "-")
        body.append(cells)
    return head, body


def _training_table(rep: EnvReport) -> tuple[list[str], list[list[str]]]:
    head = ["agent", "training", "seeds", "IQM [95% CI]", "clean agent",
            "fraction of clean [95% CI]"]
    body = [[t.agent, t.training, str(t.seeds), f"{_f(t.iqm)} [{_f(t.ci[0])}, {_f(t.ci[1])}]",
             t.clean_agent,
             "-" if not math.isfinite(t.fraction) else
             f"{_f(t.fraction)} [{_f(t.fraction_ci[0])}, {_f(t.fraction_ci[1])}]"]
            for t in rep.training]
    return head, body


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def _md(text: str) -> str:
    """Text made inert in Markdown: one line, no HTML, no link, no code span, no table cell end.

    Labels and failure reasons come from sweep files and exceptions; a ``<script>`` or a
    ``[x](javascript:...)`` must show as text, and a newline must not end a table row.
    """
    one_line = " ".join(str(text).splitlines())
    return (one_line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("`", "\\`").replace("](", "]\\("))


def _unique(name: str, used: set[str]) -> str:
    """``name``, or ``name`` with ``_2``, ``_3``, ... before its suffix if already used."""
    stem, dot, suffix = name.rpartition(".")
    candidate, k = name, 1
    while candidate in used:
        k += 1
        candidate = f"{stem}_{k}{dot}{suffix}"
    used.add(candidate)
    return candidate


def _md_table(head: list[str], body: list[list[str]]) -> str:
    esc = [[_md(c) for c in row] for row in [head, *body]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
    return "\n".join(lines)


def _html_table(head: list[str], body: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in body)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{rows}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;
padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:
left}img{max-width:100%;border:1px solid #eee}.note{color:#666;font-size:13px}"""


def _write_file(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a full disk leaves no truncated file behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _open_existing(store: BaseStore | str | os.PathLike[str]) -> tuple[BaseStore, bool]:
    if isinstance(store, BaseStore):
        return store, False
    text = os.fspath(store)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    elif "://" in text:
        return get_store(text), True
    if not Path(text).exists():
        raise StoreError(f"no store at {text}")
    return SQLiteStore(text, read_only=True), True  # a report never writes


def _env_section(rep: EnvReport, out: Path, used: set[str],
                 pngs: list[str]) -> tuple[list[str], list[str]]:
    """One environment's part of the report: its Markdown lines and HTML parts.

    Its figure is written into ``out`` under a name not in ``used`` (then added to it), and
    the figure's path appended to ``pngs``.
    """
    md = [f"### {_md(rep.env)}", ""]
    page = [f"<h3>{html.escape(rep.env)}</h3>"]
    ref = (f"random = {_f(rep.random_score)}, reference = {rep.reference[0]} "
           f"({_f(rep.reference[1])})" if rep.reference and rep.random_score is not None
           else "normalisation needs a random baseline and another baseline")
    if rep.rows:
        head, body = _table(rep)
        png = _curves_png(rep)
        name = _unique(f"{_slug(rep.sweep)}_{_slug(rep.env)}_curves.png", used)
        _write_file(out / name, png)
        pngs.append(str(out / name))
        md += [_md_table(head, body), "", _md(ref), "", f"![learning curves]({name})", ""]
        page += [_html_table(head, body), f"<p class='note'>{html.escape(ref)}</p>",
                 f"<img alt='learning curves {html.escape(rep.env)}' "
                 f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"]
    if any(row.roles for row in rep.rows):
        head, body = _roles_table(rep)
        note = ("Per role: the team return (the score above: the episode's sum of the env's "
                "shared objective) beside the mean episode return of one agent of each role "
                "(its own reward), IQM over seeds [95% bootstrap CI].")
        md += ["#### Team and roles", "", _md_table(head, body), "", _md(note), ""]
        page += ["<h4>Team and roles</h4>", _html_table(head, body),
                 f"<p class='note'>{html.escape(note)}</p>"]
    if rep.robustness:
        head, body = _robustness_table(rep)
        note = ("Robustness: each condition's score as a fraction of the same run's clean "
                "score" + (" (of its margin over the random baseline: the env's scores are not "
                           "all positive)" if rep.robustness_anchor == "margin over random"
                           else "") +
                ", IQM over seeds [95% bootstrap CI]; n/a: the condition does not apply "
                "(an executor condition of a classical agent).")
        if not rep.robustness_anchor:
            note = ("Robustness: the env's scores are not all positive and the sweep has no "
                    "random baseline, so no fraction of the clean score is defined.")
        png = _robustness_png(rep)
        name = _unique(f"{_slug(rep.sweep)}_{_slug(rep.env)}_robustness.png", used)
        _write_file(out / name, png)
        pngs.append(str(out / name))
        md += ["#### Robustness", "", _md_table(head, body), "", _md(note), "",
               f"![robustness]({name})", ""]
        page += ["<h4>Robustness</h4>", _html_table(head, body),
                 f"<p class='note'>{html.escape(note)}</p>",
                 f"<img alt='robustness {html.escape(rep.env)}' "
                 f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"]
    if rep.training:
        head, body = _training_table(rep)
        note = ("Poisoned and adversarial training: the final score beside the same agent "
                "trained clean (fraction paired by seed).")
        md += ["#### Poisoned and adversarial training", "", _md_table(head, body), "",
               _md(note), ""]
        page += ["<h4>Poisoned and adversarial training</h4>", _html_table(head, body),
                 f"<p class='note'>{html.escape(note)}</p>"]
    if rep.other:
        head = ["run", "status", "reason"]
        body = [[n, s, (why.splitlines() or [""])[0][:300]] for n, s, why in rep.other]
        md += ["Runs without a result:", "", _md_table(head, body), ""]
        page += ["<p>Runs without a result:</p>", _html_table(head, body)]
    notes = []
    if len(rep.code_versions) > 1:
        notes.append(f"Warning: these results were produced by {len(rep.code_versions)} "
                     f"different versions of the code ({', '.join(rep.code_versions)}); a "
                     "rerun skips finished runs even when the code changed.")
    if rep.stale:
        n_shown = sum(len(r.scores) for r in rep.rows)
        notes.append(f"Stale: {rep.stale} of {n_shown} results shown were produced by "
                     "another code version than the current one; `qdrl-bench run SWEEP "
                     "--rerun stale` recomputes them (the old results are kept until the "
                     "new runs finish).")
    if rep.superseded:
        notes.append(f"{rep.superseded} finished run(s) of an earlier configuration are "
                     "superseded and not shown.")
    for note in notes:
        md += [note, ""]
        page.append(f"<p class='note'>{html.escape(note)}</p>")
    return md, page


def write_report(store: BaseStore | str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 sweep: str | None = None, *, version: str | None = None) -> dict[str, Any]:
    """Write ``report.md`` (+ PNGs) and a self-contained ``report.html`` into ``out_dir``.

    Args:
        store: A store, a ``sqlite:///`` URL or a ``.db`` path (which must exist).
        out_dir: Output folder (created).
        sweep: Only this sweep (default: every sweep in the store).
        version: The current code version (see :func:`build_reports`).

    Returns:
        ``{"markdown": path, "html": path, "png": [paths], "reports": [EnvReport]}``.

    Raises:
        StoreError: If the store does not exist or cannot be opened.
        ValueError: If ``sweep`` is not in the store, or the store holds no runs.
    """
    db, owned = _open_existing(store)
    try:
        reports = build_reports(db, sweep, version=version)
    finally:
        if owned:
            db.close()
    if not reports:
        raise ValueError("the store holds no runs to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(reports)
    md: list[str] = ["# qdrl benchmark report", ""]
    page: list[str] = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>qdrl benchmark "
                       f"report</title><style>{_CSS}</style></head><body>",
                       "<h1>qdrl benchmark report</h1>"]
    explain = ("Scores are final evaluation returns (mean over the evaluation episodes of a "
               "run). IQM = interquartile mean over seeds, with 95% percentile bootstrap "
               "confidence intervals (2000 resamples, stratified by environment in the "
               "aggregate). Normalised: 0 = random, 1 = the best other baseline or oracle.")
    md += [explain, ""]
    page.append(f"<p class='note'>{html.escape(explain)}</p>")
    pngs: list[str] = []
    used: set[str] = set()  # figure names: 'a-b' and 'a_b' slug alike, and must not collide
    for sw in dict.fromkeys(r.sweep for r in reports):
        md += [f"## Sweep {_md(sw)}", ""]
        page.append(f"<h2>Sweep {html.escape(sw)}</h2>")
        if agg.get(sw):
            rows = sorted(agg[sw].items(), key=lambda kv: -kv[1][0])
            head = ["agent", "envs", "IQM normalised [95% stratified CI]"]
            body = [[a, str(v[3]), f"{_f(v[0])} [{_f(v[1])}, {_f(v[2])}]"] for a, v in rows]
            png = _aggregate_png(sw, agg[sw])
            name = _unique(f"{_slug(sw)}_aggregate.png", used)
            _write_file(out / name, png)
            pngs.append(str(out / name))
            md += ["### All environments", "", _md_table(head, body), "", f"![aggregate]({name})",
                   ""]
            page += ["<h3>All environments</h3>", _html_table(head, body),
                     f"<img alt='aggregate {html.escape(sw)}' src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}'>"]
        for rep in (r for r in reports if r.sweep == sw):
            md_part, page_part = _env_section(rep, out, used, pngs)
            md += md_part
            page += page_part
    page.append("</body></html>")
    md_path, html_path = out / "report.md", out / "report.html"
    _write_file(md_path, "\n".join(md).encode("utf-8"))
    _write_file(html_path, "\n".join(page).encode("utf-8"))
    return {"markdown": str(md_path), "html": str(html_path), "png": pngs, "reports": reports}
