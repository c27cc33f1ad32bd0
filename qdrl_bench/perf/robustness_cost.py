"""Cost of the robustness conditions: evaluation time per episode, batched against per observation.

A quantum agent's evaluation under an ``executor`` condition runs every step's circuit on
qiskit-aer (:mod:`qdrl_bench.robustness`). The runner plays the evaluation episodes in
lockstep, so one estimator call serves the observations of all episodes at a step
(``batched``); the alternative is one call per observation, episode after episode
(``per observation``: :func:`qdrl_bench.execute.evaluate` under the swapped executor). This
script times both on the same agent (q-ppo as the registry builds it: the weights do not
change the cost) and prints seconds per episode, for

* ``statevector``: the clean evaluation (torch, float32), the reference;
* ``exact``: Aer's statevector, no shots, no noise;
* ``1024 shots + depolarizing``: the figure the issue asks for (``--p2``, ``--p1``);
* ``1024 shots + <backend>``: a fake IBM device's noise model (``--backend``; ``""`` skips).

Usage::

    python -m qdrl_bench.perf.robustness_cost [--episodes 4] [--steps 20]
        [--env qdrl/SecrecyPowerControl-v1] [--backend FakeTorino]

Every number is from this run on this machine, with one torch thread (as in the runner's
workers); ``--steps`` caps the episode length (the secrecy env's episodes are 100 steps), so
seconds per episode scale with it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from qdrl_bench import registry
from qdrl_bench.execute import evaluate
from qdrl_bench.robustness import evaluate_lockstep, make_device_executor

__all__ = ["main", "measure"]


def _agent(env_id: str, env_kwargs: dict[str, Any], steps: int) -> Any:
    settings = registry.train_settings("q-ppo", env_id)
    venv, _ = registry.make_train_env(env_id, env_kwargs, n_envs=1, max_episode_steps=steps)
    model, _ = registry.build_agent("q-ppo", venv, seed=0, timesteps=1024,
                                    kwargs=settings.algo_kwargs)
    return model


def measure(env_id: str, env_kwargs: dict[str, Any], episodes: int, steps: int,
            settings: Sequence[tuple[str, int | None, tuple[dict[str, Any], ...]]],
            seed: int = 100_000) -> list[dict[str, Any]]:
    """Seconds per episode of each setting ``(label, shots, noise)``, batched and per step."""
    from qdrl_agents.layers import swap_executor

    model = _agent(env_id, env_kwargs, steps)

    def make() -> Any:
        return registry.make_env(env_id, env_kwargs, steps)

    _play(model, make, 2, seed, "batched")  # warm-up: first-call costs out of the timings
    _play(model, make, 1, seed, "per observation")
    rows = []
    for label, shots, noise in settings:
        times = {}
        for mode in ("batched", "per observation"):
            if label == "statevector":
                swap = None
            else:
                swap = swap_executor(model.policy, lambda layer, s=shots, n=noise:
                                     make_device_executor(layer.built, shots=s, noise=n,
                                                          seed=(0,)))
            t0 = time.perf_counter()
            if swap is None:
                returns = _play(model, make, episodes, seed, mode)
            else:
                with swap:
                    returns = _play(model, make, episodes, seed, mode)
            times[mode] = (time.perf_counter() - t0) / episodes
        rows.append({"setting": label, "batched_s_per_episode": times["batched"],
                     "per_observation_s_per_episode": times["per observation"],
                     "speedup": times["per observation"] / times["batched"],
                     "mean_return": float(np.mean(returns))})
    return rows


def _play(model: Any, make: Any, episodes: int, seed: int, mode: str) -> list[float]:
    if mode == "batched":
        return evaluate_lockstep(model, [make() for _ in range(episodes)], seed)[0]
    return evaluate(model, make(), episodes, seed)[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement and print a Markdown table (``--json``: the rows as JSON)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="qdrl/SecrecyPowerControl-v1")
    p.add_argument("--n-aps", type=int, default=2, help="secrecy env only (default 2)")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--steps", type=int, default=20, help="episode length cap (default 20)")
    p.add_argument("--p1", type=float, default=0.0005)
    p.add_argument("--p2", type=float, default=0.01)
    p.add_argument("--backend", default="FakeTorino", help="fake backend ('' to skip)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # as in the runner's workers: one thread per evaluation
    kwargs = {"n_aps": args.n_aps} if "Secrecy" in args.env else {}
    dep = ({"kind": "depolarizing", "p1": args.p1, "p2": args.p2},)
    settings: list[tuple[str, int | None, tuple[dict[str, Any], ...]]] = [
        ("statevector", None, ()), ("exact", None, ()),
        (f"1024 shots + depolarizing p2={args.p2:g}", 1024, dep)]
    if args.backend:
        settings.append((f"1024 shots + {args.backend}", 1024, (
            {"kind": "fake_backend", "backend": args.backend, "qubits": None,
             "optimization_level": 1, "seed_transpiler": 0},)))
    rows = measure(args.env, kwargs, args.episodes, args.steps, settings)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{args.env} {kwargs}, q-ppo, {args.episodes} episodes x {args.steps} steps")
    print("| setting | batched s/episode | per observation s/episode | speedup |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['batched_s_per_episode']:.3f} | "
              f"{r['per_observation_s_per_episode']:.3f} | {r['speedup']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
