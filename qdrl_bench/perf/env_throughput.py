"""Environment throughput: steps/s of every qdrl env, as ratios to CartPole-v1 in the same run.

For each environment id (default: every id in ``qdrl_envs.ENV_IDS``):

* ``single``: steps/s through ``gym.make(id)`` (with its wrappers), random valid actions
  pre-sampled so that sampling is not timed, resetting when an episode ends;
* ``vector@n``: env-steps/s (steps x n) of the vector twin,
  ``gym.make_vec(id, num_envs=n, vectorization_mode="vector_entry_point",
  autoreset_mode=AutoresetMode.SAME_STEP)``, n = 1, 64, 1024.

Each figure is printed as a ratio to Gymnasium's ``CartPole-v1`` through ``gym.make`` measured
in the same run, plus vector@1024 / single. Targets: single >= 0.25x CartPole; vector@1024 >=
20x single. Each env run is paired with a CartPole run right before it; the ratios are the
median over ``--repeats`` rounds of those pairs (load on a shared machine drifts between rounds
but hardly within a pair), the printed rates the best of the rounds.

Usage::

    python -m qdrl_bench.perf.env_throughput                       # every qdrl env
    python -m qdrl_bench.perf.env_throughput --env qdrl/SecrecyPowerControl-v1 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

import qdrl_envs

REFERENCE_ID = "CartPole-v1"
VECTOR_SIZES: tuple[int, ...] = (1, 64, 1024)
SINGLE_TARGET = 0.25
"""The single env must reach this fraction of CartPole-v1's steps/s."""
VECTOR_TARGET = 20.0
"""The vector twin at the largest size must reach this multiple of the single env."""


@dataclass
class Measurement:
    """Throughput figures of one environment.

    Rates are the best of the rounds (steps/s; vector figures env-steps/s). Ratios to
    CartPole-v1 are the median over rounds of back-to-back pairs (CartPole timed right before
    each env run), which cancels load that drifts between rounds on a shared machine; when
    no pairs were recorded they fall back to best rate / best reference.
    """

    env_id: str
    reference_sps: float
    single_sps: float
    vector_sps: dict[int, float] = field(default_factory=dict)
    single_pairs: list[float] = field(default_factory=list)
    vector_pairs: dict[int, list[float]] = field(default_factory=dict)

    @property
    def single_ratio(self) -> float:
        """Single env steps/s over CartPole-v1's."""
        if self.single_pairs:
            return float(np.median(self.single_pairs))
        return self.single_sps / self.reference_sps

    def vector_ratio(self, n: int) -> float:
        """Vector twin env-steps/s at ``n`` envs over CartPole-v1's steps/s."""
        if self.vector_pairs.get(n):
            return float(np.median(self.vector_pairs[n]))
        return self.vector_sps[n] / self.reference_sps

    @property
    def vector_speedup(self) -> float | None:
        """Vector env-steps/s at the largest measured size over the single env's steps/s."""
        if not self.vector_sps:
            return None
        return self.vector_ratio(max(self.vector_sps)) / self.single_ratio

    @property
    def single_ok(self) -> bool:
        """Whether the single-env target holds."""
        return self.single_ratio >= SINGLE_TARGET

    @property
    def vector_ok(self) -> bool:
        """Whether the vector target holds (``False`` without a vector measurement)."""
        speedup = self.vector_speedup
        return speedup is not None and speedup >= VECTOR_TARGET


def check_ids(env_ids: Sequence[str] | None = None) -> list[str]:
    """The ids to measure: ``env_ids``, or every id in ``qdrl_envs.ENV_IDS``.

    Raises:
        ValueError: If an id is not registered.
    """
    ids = list(qdrl_envs.ENV_IDS if env_ids is None else env_ids)
    for env_id in ids:
        if env_id not in gym.registry:
            raise ValueError(f"{env_id!r} is not a registered environment id")
    return ids


def _presampled(space: gym.Space, n: int, seed: int) -> list:
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def measure_single(env_id: str, seconds: float, seed: int = 0, n_actions: int = 1000) -> float:
    """Steps/s of ``gym.make(env_id)`` with pre-sampled random actions, for ``seconds``."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    actions = _presampled(env.action_space, n_actions, seed)
    step, reset = env.step, env.reset
    steps = 0
    start = time.perf_counter()
    while True:
        for action in actions:
            _, _, terminated, truncated, _ = step(action)
            if terminated or truncated:
                reset()
        steps += len(actions)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            env.close()
            return steps / elapsed


def measure_vector(env_id: str, num_envs: int, seconds: float, seed: int = 0,
                   n_actions: int = 32) -> float:
    """Env-steps/s of the vector twin of ``env_id`` with ``num_envs`` sub-envs."""
    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP)
    venv.reset(seed=seed)
    actions = _presampled(venv.action_space, n_actions, seed)
    step = venv.step
    steps = 0
    start = time.perf_counter()
    while True:
        for action in actions:
            step(action)
        steps += len(actions)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            venv.close()
            return steps * num_envs / elapsed


def measure_reference(seconds: float) -> float:
    """Steps/s of Gymnasium's CartPole-v1 through ``gym.make`` (the reference)."""
    return measure_single(REFERENCE_ID, seconds)


def measure_env(env_id: str, seconds: float, reference_sps: float,
                sizes: Sequence[int] = VECTOR_SIZES, repeats: int = 1) -> Measurement:
    """Measure one environment in ``repeats`` rounds, each run paired with a CartPole run.

    Args:
        env_id: A registered id with a ``vector_entry_point`` (else only ``single`` is timed).
        seconds: Duration of each timed run.
        reference_sps: CartPole-v1 steps/s measured in the same run (raised if a paired
            reference run is faster).
        sizes: Vector sizes to time.
        repeats: Rounds per figure.

    Returns:
        The measurement (best rates, median paired ratios).
    """
    result = Measurement(env_id, reference_sps, 0.0)
    has_vector = gym.registry[env_id].vector_entry_point is not None
    for _ in range(repeats):
        ref = measure_reference(seconds)
        sps = measure_single(env_id, seconds)
        result.reference_sps = max(result.reference_sps, ref)
        result.single_sps = max(result.single_sps, sps)
        result.single_pairs.append(sps / ref)
        if not has_vector:
            continue
        for n in sizes:
            ref = measure_reference(seconds)
            sps = measure_vector(env_id, n, seconds)
            result.reference_sps = max(result.reference_sps, ref)
            result.vector_sps[n] = max(result.vector_sps.get(n, 0.0), sps)
            result.vector_pairs.setdefault(n, []).append(sps / ref)
    return result


def format_report(results: Sequence[Measurement], reference_sps: float) -> str:
    """Human-readable table of the ratios and the pass/fail of each target."""
    lines = [f"reference {REFERENCE_ID} via gym.make: {reference_sps:,.0f} steps/s (best); "
             "ratios below are medians of back-to-back pairs with it", ""]
    for r in results:
        lines.append(f"{r.env_id}")
        lines.append(f"  single (gym.make)   {r.single_sps:>12,.0f} steps/s   "
                     f"{r.single_ratio:7.3f}x CartPole   target >= {SINGLE_TARGET}x: "
                     f"{'PASS' if r.single_ok else 'FAIL'}")
        for n, sps in sorted(r.vector_sps.items()):
            lines.append(f"  vector @ {n:<5d}      {sps:>12,.0f} env-steps/s "
                         f"{r.vector_ratio(n):7.3f}x CartPole")
        if r.vector_speedup is not None:
            lines.append(f"  vector @ {max(r.vector_sps)} / single  {r.vector_speedup:8.1f}x"
                         f"{'':26s}target >= {VECTOR_TARGET:g}x: "
                         f"{'PASS' if r.vector_ok else 'FAIL'}")
        else:
            lines.append("  no vector_entry_point: vector target not measured (FAIL)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 with ``--check`` on a miss)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="append", dest="envs", metavar="ID",
                        help="environment id (repeatable; default: every qdrl id)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="duration of each timed run (default 1.0)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds per figure, best kept (default 3)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(VECTOR_SIZES),
                        help="vector sizes (default 1 64 1024)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if any target is missed")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1 or min(args.sizes) < 1:
        parser.error("--seconds must be > 0, --repeats and --sizes >= 1")
    try:
        ids = check_ids(args.envs)
    except ValueError as exc:
        parser.error(str(exc))
    reference = max(measure_reference(args.seconds) for _ in range(args.repeats))
    results = [measure_env(i, args.seconds, reference, args.sizes, args.repeats) for i in ids]
    reference = max([reference] + [r.reference_sps for r in results])
    print(format_report(results, reference))
    if args.json:
        payload = {"reference_id": REFERENCE_ID, "reference_sps": reference,
                   "results": [asdict(r) | {"single_ratio": r.single_ratio,
                                            "vector_ratios": {n: r.vector_ratio(n)
                                                              for n in r.vector_sps},
                                            "vector_speedup": r.vector_speedup,
                                            "single_ok": r.single_ok, "vector_ok": r.vector_ok}
                               for r in results]}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
    if args.check and not all(r.single_ok and r.vector_ok for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
