"""Multi-agent env throughput: env steps/s of the qdrl PettingZoo envs, as ratios to PettingZoo's.

For each multi-agent environment id (default: every id in ``qdrl_envs.marl.MARL_ENV_IDS``):

* ``single``: env steps/s of the ``ParallelEnv`` (``qdrl_envs.make_parallel(id)``), one
  ``step`` of every live agent's action being one env step; random valid actions pre-sampled
  so that sampling is not timed, resetting when the episode ends (``max_cycles``);
* ``batched@n``: env steps/s (steps x n) of its batched form, the env's core on ``n``
  instances (``env.core_cls(env.config, n)``, seeded by ``env.instance_rngs``): what a
  vectorised trainer steps. The joint actions are the single env's
  (``env.joint_action``), pre-drawn; every instance resets after ``max_cycles`` steps. The
  envs have no Gymnasium-style vector twin; this core is their batched form.

Agent steps/s (env steps x live agents) are reported too. Each figure is printed as a ratio
to PettingZoo reference envs run through the same loop in the same run:
``simple_spread_v3`` (MPE: 3 agents, vector observations; from the ``mpe2`` package where it
is installed, else PettingZoo 1.25's deprecated ``pettingzoo.mpe``) and ``pistonball_v6``
(butterfly: 20 pistons, pymunk physics, image observations). Both need pygame (pistonball
also pymunk), which qdrl does not depend on: ``pip install "pettingzoo[butterfly]==1.25.0"``
brings both references (pygame 2.6 and pymunk); the script stops with that advice when a
reference it is asked for is missing (``--reference`` picks them).

As in :mod:`qdrl_bench.perf.env_throughput`, each run is paired with a run of each reference
right before it; ratios are the median over ``--repeats`` rounds of those pairs (load on a
shared machine drifts between rounds but hardly within a pair), the printed rates the best
of the rounds.

Usage::

    python -m qdrl_bench.perf.marl_throughput                        # every env, both refs
    python -m qdrl_bench.perf.marl_throughput --env qdrl/SecrecyJamming-v0 \\
        --reference simple_spread_v3 --seconds 2 --sizes 64
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from qdrl_envs import marl

REFERENCES: tuple[str, ...] = ("simple_spread_v3", "pistonball_v6")
"""The PettingZoo reference envs, in report order."""
BATCH_SIZES: tuple[int, ...] = (64, 1024)
INSTALL_HINT = 'pip install "pettingzoo[butterfly]==1.25.0"  (pygame and pymunk)'


class ReferenceUnavailable(RuntimeError):
    """A reference env's optional dependencies are not installed (the message says what)."""


@dataclass
class Rate:
    """One timed run: env steps/s and agent steps/s."""

    env_sps: float
    agent_sps: float


@dataclass
class Measurement:
    """Throughput figures of one env in one mode (``single``, ``batched@n`` or ``reference``).

    ``env_sps`` / ``agent_sps`` are the best round's; ``pairs[ref]`` holds, per round,
    this run's env steps/s over the reference's from the run right before it.
    """

    env_id: str
    mode: str
    n_agents: int
    env_sps: float = 0.0
    agent_sps: float = 0.0
    pairs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, rate: Rate, references: dict[str, Rate] | None = None) -> None:
        """Record one round (the best round's rates kept, a pair per reference)."""
        if rate.env_sps > self.env_sps:
            self.env_sps, self.agent_sps = rate.env_sps, rate.agent_sps
        for name, ref in (references or {}).items():
            self.pairs.setdefault(name, []).append(rate.env_sps / ref.env_sps)

    def ratio(self, reference: str) -> float:
        """Env steps/s over the reference's: the median of the paired rounds."""
        return float(np.median(self.pairs[reference]))


# --------------------------------------------------------------------------------------------
# The envs
# --------------------------------------------------------------------------------------------


def load_reference(name: str) -> tuple[Callable[[], Any], str]:
    """A factory of the PettingZoo reference env ``name`` (``ParallelEnv``) and its module.

    Raises:
        ValueError: On a name not in :data:`REFERENCES`.
        ReferenceUnavailable: If its dependencies are missing (saying what to install).
    """
    if name not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; choose from {list(REFERENCES)}")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    for driver in ("SDL_AUDIODRIVER", "SDL_VIDEODRIVER"):  # headless: no complaints from SDL
        os.environ.setdefault(driver, "dummy")
    if name == "pistonball_v6":
        candidates = ["pettingzoo.butterfly.pistonball_v6"]
    else:
        candidates = ["mpe2.simple_spread_v3", "pettingzoo.mpe.simple_spread_v3"]
    errors = []
    for module_name in candidates:
        try:
            with warnings.catch_warnings():  # pettingzoo.mpe: "moved to mpe2" (deprecated)
                warnings.simplefilter("ignore", DeprecationWarning)
                module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        return module.parallel_env, module_name
    raise ReferenceUnavailable(
        f"the reference {name} cannot be imported ({'; '.join(errors)}). It is an optional "
        f"dependency of this benchmark only: {INSTALL_HINT}, or choose another with "
        f"--reference (one of {list(REFERENCES)})")


def check_ids(env_ids: Sequence[str] | None = None) -> list[str]:
    """The ids to measure: ``env_ids``, or every multi-agent id.

    Raises:
        ValueError: If an id is not a qdrl multi-agent environment.
    """
    ids = list(marl.MARL_ENV_IDS if env_ids is None else env_ids)
    for env_id in ids:
        marl.marl_entry(env_id)
    return ids


def _action_dicts(env: Any, n: int, seed: int) -> list[dict[str, Any]]:
    spaces_ = {a: env.action_space(a) for a in env.possible_agents}
    for i, space in enumerate(spaces_.values()):
        space.seed(seed + i)
    return [{a: s.sample() for a, s in spaces_.items()} for _ in range(n)]


def measure_parallel(make: Callable[[], Any], seconds: float, seed: int = 0,
                     n_actions: int = 256, max_steps: int | None = None) -> Rate:
    """Env and agent steps/s of ``make()`` (a ``ParallelEnv``) under pre-sampled actions.

    Runs for ``seconds`` (at least one step), or ``max_steps`` steps if that comes first,
    after one untimed step (compiled kernels are compiled by then).
    """
    env = make()
    env.reset(seed=seed)
    actions = _action_dicts(env, n_actions, seed)
    env.step(actions[0])
    env.reset(seed=seed)
    n_all = len(env.possible_agents)
    step, reset = env.step, env.reset
    limit = sys.maxsize if max_steps is None else max_steps
    clock = time.perf_counter
    steps = agent_steps = 0
    start = clock()
    while True:
        for action in actions:
            live = env.agents
            n_live = len(live)  # before the step: a wrapper may shrink the list in place
            if n_live != n_all:
                action = {a: action[a] for a in live}
            step(action)
            steps += 1
            agent_steps += n_live
            if not env.agents:
                reset()
            elapsed = clock() - start  # every step: a reference step can take 50 ms
            if elapsed >= seconds or steps >= limit:
                env.close()
                return Rate(steps / elapsed, agent_steps / elapsed)


def measure_batched(env_id: str, num_envs: int, seconds: float, seed: int = 0,
                    n_actions: int = 16, max_steps: int | None = None) -> Rate:
    """Env and agent steps/s of the batched core of ``env_id`` on ``num_envs`` instances.

    Joint actions come from the single env's :meth:`joint_action` on pre-sampled agent
    actions (a pool of 256, drawn at random per row and step); every instance resets after
    ``max_cycles`` steps, as the single env does. One untimed step comes first.
    """
    env = marl.make_parallel(env_id)
    env.reset(seed=seed)
    pool = np.stack([env.joint_action(a) for a in _action_dicts(env, 256, seed)])
    rng = np.random.default_rng(seed)
    batches = [pool[rng.integers(len(pool), size=num_envs)] for _ in range(n_actions)]
    core = env.core_cls(env.config, num_envs)
    rngs = [env.instance_rngs(seed + i) for i in range(num_envs)]
    rows = np.arange(num_envs)
    core.reset(rngs, rows)
    core.step(batches[0], rngs)  # untimed
    core.reset(rngs, rows)
    n_agents, cycle = len(env.possible_agents), env.config.max_cycles
    limit = sys.maxsize if max_steps is None else max_steps
    step, clock = core.step, time.perf_counter
    steps = t = 0
    start = clock()
    while True:
        for joint in batches:
            step(joint, rngs)
            steps += 1
            t += 1
            if t >= cycle:
                core.reset(rngs, rows)
                t = 0
            elapsed = clock() - start
            if elapsed >= seconds or steps >= limit:
                sps = steps * num_envs / elapsed
                return Rate(sps, sps * n_agents)


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class Report:
    """Every measurement of a run: the references' and the envs'."""

    references: dict[str, Measurement]
    reference_modules: dict[str, str]
    results: list[Measurement]


def run(env_ids: Sequence[str] | None = None, references: Sequence[str] = REFERENCES,
        seconds: float = 1.0, repeats: int = 3, sizes: Sequence[int] = BATCH_SIZES,
        max_steps: int | None = None) -> Report:
    """Measure every env (single and batched at each size), paired with each reference.

    Args:
        env_ids: Multi-agent ids (default: all).
        references: Names from :data:`REFERENCES` (may be empty: then no ratios).
        seconds: Duration of each timed run.
        repeats: Rounds per figure.
        sizes: Batch sizes of the batched form.
        max_steps: Cap on the steps of each timed run (a smoke test's handful).

    Raises:
        ValueError: On an unknown id or reference.
        ReferenceUnavailable: If a reference's dependencies are missing.
    """
    ids = check_ids(env_ids)
    factories, modules = {}, {}
    for name in references:
        factories[name], modules[name] = load_reference(name)
    ref_results = {name: Measurement(name, "reference", len(factories[name]().possible_agents))
                   for name in references}

    def paired() -> dict[str, Rate]:
        rates = {name: measure_parallel(make, seconds, max_steps=max_steps)
                 for name, make in factories.items()}
        for name, rate in rates.items():
            ref_results[name].add(rate)
        return rates

    results = []
    for env_id in ids:
        n_agents = len(marl.make_parallel(env_id).possible_agents)
        single = Measurement(env_id, "single", n_agents)
        batched = {n: Measurement(env_id, f"batched@{n}", n_agents) for n in sizes}
        for _ in range(repeats):
            refs = paired()
            single.add(measure_parallel(lambda i=env_id: marl.make_parallel(i), seconds,
                                        max_steps=max_steps), refs)
            for n in sizes:
                refs = paired()
                batched[n].add(measure_batched(env_id, n, seconds, max_steps=max_steps), refs)
        results.extend([single, *batched.values()])
    return Report(ref_results, modules, results)


def format_report(report: Report) -> str:
    """Human-readable table: rates and the ratio to each reference."""
    lines = []
    for name, ref in report.references.items():
        lines.append(f"reference {name} ({report.reference_modules[name]}, {ref.n_agents} "
                     f"agents): {ref.env_sps:,.0f} env-steps/s, {ref.agent_sps:,.0f} "
                     "agent-steps/s (best)")
    if report.references:
        lines.append("ratios: env steps/s over the reference's, medians of back-to-back pairs")
    lines.append("")
    env_id = None
    for r in report.results:
        if r.env_id != env_id:
            env_id = r.env_id
            lines.append(f"{env_id} ({r.n_agents} agents)")
        mode = "single (ParallelEnv)" if r.mode == "single" else f"batched core @ {r.mode[8:]}"
        ratios = "".join(f"  {r.ratio(name):10.2f}x {name}" for name in report.references)
        lines.append(f"  {mode:<22} {r.env_sps:>12,.0f} env-steps/s {r.agent_sps:>13,.0f} "
                     f"agent-steps/s{ratios}")
    return "\n".join(lines)


def to_json(report: Report) -> dict[str, Any]:
    """The figures as a JSON-able dict (ratios included)."""
    def one(m: Measurement) -> dict[str, Any]:
        return asdict(m) | {"ratios": {name: m.ratio(name) for name in m.pairs}}

    return {"references": {name: asdict(m) | {"module": report.reference_modules[name]}
                           for name, m in report.references.items()},
            "results": [one(m) for m in report.results]}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (2 when a reference is missing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="append", dest="envs", metavar="ID",
                        help="multi-agent environment id (repeatable; default: all)")
    parser.add_argument("--reference", action="append", dest="references",
                        choices=REFERENCES, help="PettingZoo reference env (repeatable; "
                        f"default: {' and '.join(REFERENCES)})")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="duration of each timed run (default 1.0)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds per figure (default 3)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(BATCH_SIZES),
                        help="batch sizes of the batched form (default 64 1024)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1 or min(args.sizes) < 1:
        parser.error("--seconds must be > 0, --repeats and --sizes >= 1")
    try:
        check_ids(args.envs)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        report = run(args.envs, tuple(args.references or REFERENCES), args.seconds,
                     args.repeats, args.sizes)
    except ReferenceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(to_json(report), fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
