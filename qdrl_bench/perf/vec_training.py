"""SB3 training throughput through ``VectorEnvAdapter``: env-steps/s of PPO, as same-run ratios.

For each environment id (default: every id in ``qdrl_envs.ENV_IDS``), four PPO setups are
built, each once, with the same PPO settings (a rollout of ``--rollout-size`` samples, 2048 by
default, so ``n_steps`` = rollout size / n_envs; ``batch_size=64``, ``n_epochs=10``, SB3
defaults otherwise, ``device="cpu"``, seed 0):

* ``adapter``: ``PPO("MlpPolicy")`` on ``VecMonitor(VectorEnvAdapter(venv, info_keys=()))``,
  ``venv = gym.make_vec(id, num_envs=64, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP)`` (the
  NumPy-batched twin);
* ``single``: the same PPO on SB3's usual path, ``make_vec_env(id, n_envs=1)`` (a
  ``DummyVecEnv`` of one ``Monitor(gym.make(id))``), ``n_steps`` = the rollout size;
* ``dummy64``: the same PPO on ``make_vec_env(id, n_envs=64)`` (``DummyVecEnv`` over 64
  ``gym.make`` envs);
* ``quantum``: ``QuantumActorCriticPolicy`` (``n_qubits=4, n_layers=5, encoder="linear"``: a
  linear encoder to 4 qubits, SB3's MLP critic) through the adapter at 64 envs.

Every model first learns one rollout untimed (numba kernels and torch compile on first use);
then, in each of ``--repeats`` rounds, every setup in turn learns ``--rollouts`` more rollouts
(``reset_num_timesteps=False``) and its rate is timesteps learned / wall-clock of
``model.learn``. The setups alternate within a round, so load on a shared machine that drifts
between rounds hits each pair alike; the ratios are the median over rounds of the per-round
ratios, the printed rates the best of the rounds. The time inside PPO's ``train()`` (the
update: ``n_epochs`` x rollout / ``batch_size`` minibatch steps, the same work in every MLP
setup) is also recorded, which splits each rate into a rollout phase and an update phase: the
update share bounds what a faster env can give (Amdahl), and the rollout-phase ratio
(timesteps / time outside ``train()``) is what the adapter itself speeds up.

Figures (one markdown table each, then a summary):

1. ``adapter`` / ``single``: target >= 5x on every env (PASS/FAIL per env);
2. ``adapter`` / ``dummy64``: what the batched twin saves over SB3's Python loop of envs;
3. ``quantum`` / ``adapter``: target >= 0.5x.

Run: ``python -m qdrl_bench.perf.vec_training`` (a few minutes on 2 cores), ``--quick`` for a
very short smoke run, ``--envs ID [ID ...]`` for a subset, ``--help`` for the rest. Importable
pieces: :func:`measure_env` returns one :class:`EnvResult`, :func:`format_report` prints them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

import qdrl_envs
from qdrl_agents import QuantumActorCriticPolicy, VectorEnvAdapter

N_ENVS = 64
ROLLOUT_SIZE = 2048
"""Samples per rollout in every setup (``n_steps`` x ``n_envs``)."""
PPO_KWARGS: dict[str, Any] = {"batch_size": 64, "n_epochs": 10, "device": "cpu"}
QUANTUM_KWARGS: dict[str, Any] = {"n_qubits": 4, "n_layers": 5, "encoder": "linear"}
SPEEDUP_TARGET = 5.0
"""``adapter`` at 64 envs must reach this multiple of ``single``'s env-steps/s."""
QUANTUM_TARGET = 0.5
"""``quantum`` must reach this fraction of ``adapter``'s (MlpPolicy) env-steps/s."""

SETUPS: tuple[str, ...] = ("adapter", "single", "dummy64", "quantum")
"""The setups, in the order they are timed within a round."""
SETUP_LABELS: dict[str, str] = {
    "adapter": f"MlpPolicy, VectorEnvAdapter @ {N_ENVS}",
    "single": "MlpPolicy, DummyVecEnv @ 1",
    "dummy64": f"MlpPolicy, DummyVecEnv @ {N_ENVS}",
    "quantum": f"Quantum 4x5 (linear encoder), VectorEnvAdapter @ {N_ENVS}",
}


@dataclass
class EnvResult:
    """Training throughput of the setups on one environment.

    ``rates[setup]`` holds the env-steps/s of each round, in round order (the setups of a round
    were timed back to back); ``update_shares[setup]`` the fraction of each timed learn spent
    in PPO's ``train()``.
    """

    env_id: str
    rollout_size: int
    rollouts: int
    rates: dict[str, list[float]] = field(default_factory=dict)
    update_shares: dict[str, list[float]] = field(default_factory=dict)

    def best(self, setup: str) -> float:
        """Best env-steps/s of ``setup`` over the rounds."""
        return max(self.rates[setup])

    def ratio(self, numerator: str, denominator: str) -> float:
        """Median over rounds of the per-round rate ratio ``numerator / denominator``."""
        pairs = [a / b for a, b in zip(self.rates[numerator], self.rates[denominator],
                                       strict=True)]
        return float(statistics.median(pairs))

    def update_share(self, setup: str) -> float:
        """Median over rounds of the fraction of ``setup``'s learn time spent in ``train()``."""
        return float(statistics.median(self.update_shares[setup]))

    def rollout_ratio(self, numerator: str, denominator: str) -> float:
        """Median over rounds of the rollout-phase rate ratio (time outside ``train()``)."""
        pairs = [(a / max(1.0 - ua, 1e-9)) / (b / max(1.0 - ub, 1e-9)) for a, ua, b, ub in zip(
            self.rates[numerator], self.update_shares[numerator],
            self.rates[denominator], self.update_shares[denominator], strict=True)]
        return float(statistics.median(pairs))

    @property
    def speedup(self) -> float:
        """Figure 1: ``adapter`` / ``single``."""
        return self.ratio("adapter", "single")

    @property
    def vs_dummy(self) -> float:
        """Figure 2: ``adapter`` / ``dummy64``."""
        return self.ratio("adapter", "dummy64")

    @property
    def quantum_ratio(self) -> float:
        """Figure 3: ``quantum`` / ``adapter``."""
        return self.ratio("quantum", "adapter")

    @property
    def speedup_ok(self) -> bool:
        """Whether figure 1 meets its target."""
        return self.speedup >= SPEEDUP_TARGET

    @property
    def quantum_ok(self) -> bool:
        """Whether figure 3 meets its target."""
        return self.quantum_ratio >= QUANTUM_TARGET


def make_venv(setup: str, env_id: str, n_envs: int = N_ENVS, seed: int = 0) -> VecEnv:
    """The SB3 ``VecEnv`` a setup trains on (see the module docstring).

    Args:
        setup: One of :data:`SETUPS`.
        env_id: A registered id (with a ``vector_entry_point`` for the adapter setups).
        n_envs: Envs of the 64-env setups (``single`` always has 1).
        seed: Seed of the single envs (the adapter setups are seeded by PPO's ``seed``).

    Returns:
        The vec env.
    """
    if setup in ("adapter", "quantum"):
        venv = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point",
                            autoreset_mode=AutoresetMode.SAME_STEP)
        return VecMonitor(VectorEnvAdapter(venv, info_keys=()))
    if setup == "single":
        return make_vec_env(env_id, n_envs=1, seed=seed)
    if setup == "dummy64":
        return make_vec_env(env_id, n_envs=n_envs, seed=seed)
    raise ValueError(f"unknown setup {setup!r}; expected one of {SETUPS}")


def make_model(setup: str, env_id: str, rollout_size: int = ROLLOUT_SIZE,
               n_envs: int = N_ENVS, seed: int = 0) -> PPO:
    """PPO for ``setup``: ``n_steps`` chosen so a rollout has ``rollout_size`` samples.

    Raises:
        ValueError: If ``rollout_size`` is not a multiple of the setup's env count or of the
            batch size.
    """
    venv = make_venv(setup, env_id, n_envs, seed)
    if rollout_size % venv.num_envs or rollout_size % PPO_KWARGS["batch_size"]:
        raise ValueError(f"rollout size {rollout_size} must be a multiple of {venv.num_envs} "
                         f"envs and of batch_size {PPO_KWARGS['batch_size']}")
    policy: Any = "MlpPolicy"
    policy_kwargs: dict[str, Any] | None = None
    if setup == "quantum":
        policy, policy_kwargs = QuantumActorCriticPolicy, dict(QUANTUM_KWARGS)
    return PPO(policy, venv, n_steps=rollout_size // venv.num_envs, seed=seed,
               policy_kwargs=policy_kwargs, verbose=0, **PPO_KWARGS)


def _timed_train(model: PPO) -> list[float]:
    """Make ``model.train`` add its wall-clock to the returned one-item list (per instance)."""
    spent = [0.0]
    train = model.train

    def timed() -> None:
        t0 = time.perf_counter()
        train()
        spent[0] += time.perf_counter() - t0

    model.train = timed  # type: ignore[method-assign]
    return spent


def time_learn(model: PPO, timesteps: int) -> tuple[float, float]:
    """Time ``model.learn(timesteps, reset_num_timesteps=False)``.

    Returns:
        ``(env-steps/s, update share)``: timesteps learned (SB3's counter, so whole rollouts)
        / wall-clock seconds, and the fraction of that wall-clock spent in ``train()``.
    """
    spent = getattr(model, "_bench_train_seconds", None)
    if spent is None:
        spent = model._bench_train_seconds = _timed_train(model)
    before, train_before = model.num_timesteps, spent[0]
    t0 = time.perf_counter()
    model.learn(total_timesteps=timesteps, reset_num_timesteps=False)
    elapsed = time.perf_counter() - t0
    return (model.num_timesteps - before) / elapsed, (spent[0] - train_before) / elapsed


def measure_env(env_id: str, rollouts: int = 2, repeats: int = 2,
                rollout_size: int = ROLLOUT_SIZE, n_envs: int = N_ENVS,
                setups: Sequence[str] = SETUPS,
                log: Callable[[str], None] | None = None) -> EnvResult:
    """Time every setup on one environment in ``repeats`` interleaved rounds.

    Args:
        env_id: A registered id with a ``vector_entry_point``.
        rollouts: Rollouts learned per timed run.
        repeats: Rounds; in each, every setup is timed once, in ``setups`` order.
        rollout_size: Samples per rollout (all setups).
        n_envs: Envs of the 64-env setups.
        setups: Which setups to time (the figures need all of :data:`SETUPS`).
        log: Progress printer, or None.

    Returns:
        The per-round rates and update shares.
    """
    result = EnvResult(env_id, rollout_size, rollouts, {s: [] for s in setups},
                       {s: [] for s in setups})
    models: dict[str, PPO] = {}
    for setup in setups:
        t0 = time.perf_counter()
        models[setup] = make_model(setup, env_id, rollout_size, n_envs)
        time_learn(models[setup], rollout_size)  # warm-up: compile, first reset
        if log is not None:
            log(f"  {env_id} {setup}: built and warmed up in {time.perf_counter() - t0:.1f} s")
    for r in range(repeats):
        for setup in setups:
            sps, share = time_learn(models[setup], rollouts * rollout_size)
            result.rates[setup].append(sps)
            result.update_shares[setup].append(share)
            if log is not None:
                log(f"  {env_id} round {r + 1}/{repeats} {setup}: {sps:,.0f} env-steps/s "
                    f"({share:.0%} in train())")
    for model in models.values():
        model.get_env().close()
    return result


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def format_report(results: Sequence[EnvResult], threads: int) -> str:
    """The three markdown tables (rates best of rounds, ratios median of rounds) and a summary."""
    if not results:
        return "no environments measured"
    r0 = results[0]
    repeats = len(r0.rates[SETUPS[0]])
    lines = [
        f"SB3 PPO training throughput (env-steps/s = timesteps learned / wall-clock of "
        f"model.learn), torch threads {threads}; rollout {r0.rollout_size} samples "
        f"(n_steps x n_envs), batch_size {PPO_KWARGS['batch_size']}, n_epochs "
        f"{PPO_KWARGS['n_epochs']}, {r0.rollouts} rollout(s) per timed learn after a one-rollout "
        f"warm-up; rates: best of {repeats} round(s); ratios: median of the per-round ratios "
        "(setups interleaved within a round).",
        "",
        f"### 1. {SETUP_LABELS['adapter']} vs {SETUP_LABELS['single']} "
        f"(target >= {SPEEDUP_TARGET:g}x)",
        "",
    ]
    lines += _table(
        ["env", "adapter @ 64", "DummyVecEnv @ 1", "ratio", "target", "rollout-phase ratio",
         "update share adapter / single"],
        [[r.env_id, f"{r.best('adapter'):,.0f}", f"{r.best('single'):,.0f}",
          f"{r.speedup:.2f}x", "PASS" if r.speedup_ok else "FAIL",
          f"{r.rollout_ratio('adapter', 'single'):.1f}x",
          f"{r.update_share('adapter'):.0%} / {r.update_share('single'):.0%}"]
         for r in results])
    lines += ["", f"### 2. {SETUP_LABELS['adapter']} vs {SETUP_LABELS['dummy64']}", ""]
    lines += _table(
        ["env", "adapter @ 64", "DummyVecEnv @ 64", "ratio", "rollout-phase ratio"],
        [[r.env_id, f"{r.best('adapter'):,.0f}", f"{r.best('dummy64'):,.0f}",
          f"{r.vs_dummy:.2f}x", f"{r.rollout_ratio('adapter', 'dummy64'):.1f}x"]
         for r in results])
    lines += ["", f"### 3. {SETUP_LABELS['quantum']} vs {SETUP_LABELS['adapter']} "
                  f"(target >= {QUANTUM_TARGET:g}x)", ""]
    lines += _table(
        ["env", "quantum @ 64", "MlpPolicy @ 64", "ratio", "target",
         "update share quantum / MLP"],
        [[r.env_id, f"{r.best('quantum'):,.0f}", f"{r.best('adapter'):,.0f}",
          f"{r.quantum_ratio:.2f}x", "PASS" if r.quantum_ok else "FAIL",
          f"{r.update_share('quantum'):.0%} / {r.update_share('adapter'):.0%}"]
         for r in results])
    n = len(results)
    speedup_pass = sum(r.speedup_ok for r in results)
    quantum_pass = sum(r.quantum_ok for r in results)
    lines += [
        "",
        "### Summary",
        "",
        f"- adapter @ 64 / DummyVecEnv @ 1: {speedup_pass}/{n} envs >= {SPEEDUP_TARGET:g}x "
        f"(min {min(r.speedup for r in results):.2f}x, "
        f"max {max(r.speedup for r in results):.2f}x) "
        f"{'PASS' if speedup_pass == n else 'FAIL'}",
        f"- the update (train()) takes {min(r.update_share('adapter') for r in results):.0%}"
        f"-{max(r.update_share('adapter') for r in results):.0%} of adapter @ 64's learn time: "
        "with the same PPO update in both setups, adapter / single cannot exceed "
        "1 / (update share of single) "
        f"(here at most {min(1.0 / r.update_share('single') for r in results):.1f}x"
        f"-{max(1.0 / r.update_share('single') for r in results):.1f}x)",
        f"- adapter @ 64 / DummyVecEnv @ 64: min {min(r.vs_dummy for r in results):.2f}x, "
        f"max {max(r.vs_dummy for r in results):.2f}x",
        f"- quantum / MlpPolicy @ 64: {quantum_pass}/{n} envs >= {QUANTUM_TARGET:g}x "
        f"(min {min(r.quantum_ratio for r in results):.2f}x, "
        f"max {max(r.quantum_ratio for r in results):.2f}x) "
        f"{'PASS' if quantum_pass == n else 'FAIL'}",
    ]
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--quick`` overrides ``--rollouts``, ``--repeats``,
    ``--rollout-size``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", metavar="ID", default=None,
                        help="environment ids (default: every id in qdrl_envs.ENV_IDS)")
    parser.add_argument("--rollouts", type=int, default=2,
                        help="rollouts learned per timed run (default 2)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="interleaved rounds; ratios are their median (default 2)")
    parser.add_argument("--rollout-size", type=int, default=ROLLOUT_SIZE,
                        help=f"samples per rollout, a multiple of {N_ENVS} "
                             f"(default {ROLLOUT_SIZE})")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="very short smoke run: 1 round of 1 rollout of 512 samples "
                             "(figures are not meaningful)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if any target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.rollouts, args.repeats, args.rollout_size = 1, 1, 512
    if args.rollouts < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--rollouts, --repeats and --threads must be >= 1")
    if args.rollout_size < 1 or args.rollout_size % N_ENVS or \
            args.rollout_size % PPO_KWARGS["batch_size"]:
        parser.error(f"--rollout-size must be a positive multiple of {N_ENVS} and of "
                     f"batch_size {PPO_KWARGS['batch_size']}")
    envs = list(qdrl_envs.ENV_IDS if args.envs is None else args.envs)
    for env_id in envs:
        if env_id not in gym.registry:
            parser.error(f"{env_id!r} is not a registered environment id")
        if gym.registry[env_id].vector_entry_point is None:
            parser.error(f"{env_id!r} has no vector_entry_point for the adapter")
    args.envs = envs
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 with ``--check`` on a miss)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    log = None if args.quiet else _log
    results = [measure_env(env_id, args.rollouts, args.repeats, args.rollout_size, log=log)
               for env_id in args.envs]
    print(format_report(results, torch.get_num_threads()))
    if args.json:
        payload = {"n_envs": N_ENVS, "ppo_kwargs": PPO_KWARGS, "quantum_kwargs": QUANTUM_KWARGS,
                   "threads": torch.get_num_threads(),
                   "results": [asdict(r) | {"speedup": r.speedup, "vs_dummy": r.vs_dummy,
                                            "quantum_ratio": r.quantum_ratio,
                                            "rollout_ratio_vs_single":
                                                r.rollout_ratio("adapter", "single"),
                                            "rollout_ratio_vs_dummy64":
                                                r.rollout_ratio("adapter", "dummy64"),
                                            "speedup_ok": r.speedup_ok,
                                            "quantum_ok": r.quantum_ok} for r in results]}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
    if args.check and not all(r.speedup_ok and r.quantum_ok for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
