"""Learning benchmark: quantum PPO on CartPole-v1, steps to a mean return of 475.

Target: `QuantumActorCriticPolicy` (4 qubits, 5 layers, data re-uploading, trainable input and
output scaling) reaches a mean evaluation return of 475 within 200k environment steps in at
least 3 of 5 seeds. A classical ``MlpPolicy`` PPO runs in the same invocation as the reference.

Evaluation: every ``eval_freq`` steps, ``n_eval_episodes`` deterministic episodes (greedy
action) on a separate vectorised CartPole-v1. A run reports the training steps until its first
mean return >= 475 ("steps-to-475") and, because a first hit can flatter (quantum PPO first
reached 475 at 20-25k steps in 3 of 3 seeds and later fell to 327 and 349 in two of them), it
trains on to the end of its budget and reports its final score over ``final_episodes``
(default 100) episodes and the mean of its last 3 evaluations. ``--stop-at-solve`` restores
the old stop at the first hit.

Hyperparameters (`QUANTUM_PPO`) follow Jerbi et al. 2021 and Skolik et al. 2022: high learning
rates for the circuit (1e-2 for the input scaling and weights, 1e-1 for the output scaling),
an MLP critic, logits read directly from scaled parity expectations ``Z0Z1`` and ``Z2Z3``.

Measured (2026-11-26, 2 shared CPU cores, two seeds at a time, statevector executor):
quantum PPO solved 5/5 seeds, steps-to-475 = 20k, 25k, 50k, 30k, 25k (median 25k); the
classical reference 15k, 30k, 20k, 10k, 10k (median 15k): median ratio quantum / classical
1.67x in steps. (Steps per second are printed too, but the two use different PPO settings:
for a like-for-like throughput ratio see ``vqc_throughput.ppo_steps_per_second``.)

Usage::

    python -m qdrl_bench.perf.cartpole_learning --seeds 0 1 2 3 4 --processes 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SOLVED = 475.0

QUANTUM_PPO: dict[str, Any] = {
    "n_envs": 8,
    "n_steps": 256,
    "batch_size": 256,
    "n_epochs": 10,
    "learning_rate": 1e-3,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "ent_coef": 0.0,
    "policy_kwargs": {
        "n_qubits": 4,
        "n_layers": 5,
        "reupload": True,
        "rotation": "ryrz",
        "entanglement": "circular",
        "entangler": "cz",
        "squash": "arctan",
        "input_scaling": True,
        "output_scaling": True,
        "output_head": "direct",
        "critic": "mlp",
        "critic_net_arch": [64, 64],
        "lr_input_scaling": 1e-2,
        "lr_weights": 1e-2,
        "lr_output_scaling": 1e-1,
    },
}

# SB3 RL-zoo's tuned CartPole-v1 PPO (constant rates instead of the zoo's linear decay).
CLASSICAL_PPO: dict[str, Any] = {
    "n_envs": 8,
    "n_steps": 32,
    "batch_size": 256,
    "n_epochs": 20,
    "learning_rate": 1e-3,
    "gamma": 0.98,
    "gae_lambda": 0.8,
    "clip_range": 0.2,
    "ent_coef": 0.0,
    "policy_kwargs": {},
}


@dataclass
class RunResult:
    """Outcome of one training run.

    Attributes:
        kind: ``"quantum"`` or ``"classical"``.
        seed: Training seed.
        steps_to_solve: Training steps until the first evaluation >= 475, or None.
        best_eval: Best mean evaluation return seen.
        final_eval: Mean return of ``final_episodes`` deterministic episodes after training.
        last_evals: Mean of the last 3 evaluations (stability).
        evals: ``(steps, mean return)`` of every evaluation.
        wall_s: Wall time of the run, seconds.
        steps_per_s: Training steps per second (evaluation excluded).
    """

    kind: str
    seed: int
    steps_to_solve: int | None
    best_eval: float
    final_eval: float = float("nan")
    last_evals: float = float("nan")
    evals: list[tuple[int, float]] = field(default_factory=list)
    wall_s: float = 0.0
    steps_per_s: float = 0.0


def run_one(
    kind: str,
    seed: int,
    total_steps: int = 200_000,
    eval_freq: int = 5_000,
    n_eval_episodes: int = 10,
    overrides: dict[str, Any] | None = None,
    stop_at_solve: bool = False,
    final_episodes: int = 100,
) -> RunResult:
    """Train one PPO agent on CartPole-v1 until solved or out of steps.

    Args:
        kind: ``"quantum"`` (`QuantumActorCriticPolicy`, `QUANTUM_PPO`) or ``"classical"``
            (``MlpPolicy``, `CLASSICAL_PPO`).
        seed: Seed of training and evaluation.
        total_steps: Training budget in environment steps.
        eval_freq: Evaluate every this many training steps.
        n_eval_episodes: Deterministic evaluation episodes per evaluation.
        overrides: Keys replacing those of the hyperparameter dict (``policy_kwargs`` merged).
        stop_at_solve: Stop at the first evaluation >= 475 instead of training on.
        final_episodes: Deterministic episodes of the final evaluation.

    Returns:
        The run's `RunResult`.

    Raises:
        ValueError: If ``kind`` is unknown.
    """
    # heavy (torch, SB3, qiskit): imported by the process that trains, not by the launcher
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from qdrl_agents import QuantumActorCriticPolicy

    torch.set_num_threads(1)
    if kind not in ("quantum", "classical"):
        raise ValueError(f"kind must be 'quantum' or 'classical', got {kind!r}")
    hp = dict(QUANTUM_PPO if kind == "quantum" else CLASSICAL_PPO)
    hp["policy_kwargs"] = dict(hp["policy_kwargs"])
    for key, value in (overrides or {}).items():
        if key == "policy_kwargs":
            hp["policy_kwargs"].update(value)
        else:
            hp[key] = value
    n_envs = hp.pop("n_envs")
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=n_eval_episodes, seed=10_000 + seed)
    policy = QuantumActorCriticPolicy if kind == "quantum" else "MlpPolicy"
    model = PPO(policy, env, seed=seed, device="cpu", verbose=0, **hp)

    result = RunResult(kind=kind, seed=seed, steps_to_solve=None, best_eval=-np.inf)
    eval_time = [0.0]

    class _Eval(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self._next = eval_freq

        def _on_step(self) -> bool:
            if self.num_timesteps < self._next:
                return True
            self._next += eval_freq
            t0 = time.perf_counter()
            mean, _ = evaluate_policy(
                self.model, eval_env, n_eval_episodes=n_eval_episodes, deterministic=True
            )
            eval_time[0] += time.perf_counter() - t0
            result.evals.append((int(self.num_timesteps), float(mean)))
            result.best_eval = max(result.best_eval, float(mean))
            if mean >= SOLVED and result.steps_to_solve is None:
                result.steps_to_solve = int(self.num_timesteps)
                return not stop_at_solve
            return True

    t0 = time.perf_counter()
    model.learn(total_timesteps=total_steps, callback=_Eval())
    result.wall_s = time.perf_counter() - t0
    trained = model.num_timesteps
    result.steps_per_s = trained / max(result.wall_s - eval_time[0], 1e-9)
    final, _ = evaluate_policy(model, eval_env, n_eval_episodes=final_episodes,
                               deterministic=True)
    result.final_eval = float(final)
    tail = [m for _, m in result.evals[-3:]]
    result.last_evals = float(np.mean(tail)) if tail else float("nan")
    return result


def _run_args(args: tuple[str, int, int, int, dict[str, Any] | None, bool]) -> RunResult:
    kind, seed, total, freq, overrides, stop = args
    res = run_one(kind, seed, total_steps=total, eval_freq=freq, overrides=overrides,
                  stop_at_solve=stop)
    print(json.dumps(asdict(res)), file=sys.stderr, flush=True)
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print per-seed steps-to-475 for quantum and classical PPO.

    Args:
        argv: Command-line arguments (see ``--help``).

    Returns:
        A summary dict (also printed as JSON on the last line).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--total-steps", type=int, default=200_000)
    parser.add_argument("--eval-freq", type=int, default=5_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", default=["quantum", "classical"])
    parser.add_argument("--stop-at-solve", action="store_true",
                        help="stop each run at its first evaluation >= 475")
    parser.add_argument(
        "--overrides", type=json.loads, default=None, help="JSON dict over QUANTUM_PPO"
    )
    args = parser.parse_args(argv)

    jobs = [
        (
            kind,
            seed,
            args.total_steps,
            args.eval_freq,
            args.overrides if kind == "quantum" else None,
            args.stop_at_solve,
        )
        for kind in args.kinds
        for seed in args.seeds
    ]
    t0 = time.perf_counter()
    if args.processes > 1:
        with mp.get_context("spawn").Pool(args.processes) as pool:
            results = pool.map(_run_args, jobs, chunksize=1)
    else:
        results = [_run_args(job) for job in jobs]
    summary: dict[str, Any] = {"wall_s": round(time.perf_counter() - t0, 1), "kinds": {}}
    print(f"CartPole-v1 PPO, target mean eval return {SOLVED} within {args.total_steps} steps")
    print(f"{'kind':<10} {'seed':>4} {'steps-to-475':>13} {'best eval':>10} "
          f"{'final':>8} {'last-3':>8} {'steps/s':>8}")
    for res in results:
        solved = "-" if res.steps_to_solve is None else str(res.steps_to_solve)
        print(
            f"{res.kind:<10} {res.seed:>4} {solved:>13} {res.best_eval:>10.1f} "
            f"{res.final_eval:>8.1f} {res.last_evals:>8.1f} {res.steps_per_s:>8.0f}"
        )
    for kind in args.kinds:
        mine = [r for r in results if r.kind == kind]
        solved = [r.steps_to_solve for r in mine if r.steps_to_solve is not None]
        summary["kinds"][kind] = {
            "solved": len(solved),
            "seeds": len(mine),
            "steps_to_solve": [r.steps_to_solve for r in mine],
            "median_steps_solved": float(np.median(solved)) if solved else None,
            "final_eval": [r.final_eval for r in mine],
            "last_evals": [r.last_evals for r in mine],
            "still_solved_at_end": sum(r.final_eval >= SOLVED for r in mine),
            "steps_per_s": float(np.mean([r.steps_per_s for r in mine])),
        }
        print(f"{kind}: solved {len(solved)}/{len(mine)} seeds; still >= {SOLVED} at the end "
              f"({'final' if not args.stop_at_solve else 'at the stop'}): "
              f"{summary['kinds'][kind]['still_solved_at_end']}/{len(mine)}")
    if {"quantum", "classical"} <= set(summary["kinds"]):
        q, c = summary["kinds"]["quantum"], summary["kinds"]["classical"]
        if q["median_steps_solved"] and c["median_steps_solved"]:
            ratio = q["median_steps_solved"] / c["median_steps_solved"]
            summary["median_steps_ratio_quantum_to_classical"] = ratio
            print(f"median steps-to-475, quantum / classical: {ratio:.2f}x")
        summary["target_met"] = q["solved"] >= 3
        print(f"target (quantum solves >= 3 of 5 seeds): {'met' if q['solved'] >= 3 else 'MISSED'}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
