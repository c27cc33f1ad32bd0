"""Playing a joint policy on a multi-agent env: per-agent, per-role and team returns.

One evaluation serves every kind of multi-agent player, so their scores are comparable: the
parameter-shared SB3 policies (:func:`qdrl_bench.marl_train.evaluate_shared`), the MAPPO / IPPO
agents (:func:`qdrl_bench.marl_ctde.evaluate_ctde`) and the envs' baselines
(:func:`qdrl_envs.marl.make_baseline`), in the sweep runner (:mod:`qdrl_bench.marl_run`)::

    from qdrl_bench.marl_eval import play_episodes
    from qdrl_envs.marl import make_baseline, make_parallel

    env = make_parallel("qdrl/SecrecyJamming-v0")
    oracle = make_baseline("oracle", env)
    ev = play_episodes(env, lambda obs: oracle.predict(obs)[0], episodes=10, seed=10_000)
    ev.mean_team_return, ev.role_returns

The *team return* of an episode is the sum over its steps of the env's shared objective, the
``team_reward`` entry every agent's ``info`` carries (``SecrecyJamming-v0``: ``varsigma`` times
the secrecy sum; ``SliceOrchestration-v0``: the global SLA objective). It is what the sweep
report scores and normalises; the agents' own rewards (which, with individual rewards, need not
sum to it) are kept per agent and per role.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from qdrl_bench.robustness import scalar_infos
from qdrl_envs import marl
from qdrl_envs.config import check_int

__all__ = ["ONE_ROLE", "JointAct", "MarlEvaluation", "TorchThreads", "agent_roles",
           "play_episodes"]

JointAct = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""A joint policy: the live agents' observations -> one action per agent."""

ONE_ROLE = "agents"
"""The role of every agent of an env without roles (``SliceOrchestration-v0``'s cells)."""


class TorchThreads:
    """A block run with torch's intra-op threads at ``n`` (``None``: unchanged), restored after.

    The multi-agent trainers and evaluations take ``torch_threads=1`` by default, what the
    sweep's workers use (:mod:`qdrl_bench.executors`): their networks are far too small to gain
    from threads, and on a busy machine two threads made shared PPO on ``SecrecyJamming-v0``
    27 times slower (30 against 800 agent-steps/s, 2 cores). ``n`` is checked when the object
    is made, so a bad value fails before any env is built.

    Raises:
        ValueError: If ``n`` is neither ``None`` nor an integer >= 1.
    """

    def __init__(self, n: int | None) -> None:
        if n is not None:
            check_int("torch_threads", n, low=1)
        self.n = n
        self._saved: list[int] = []

    def __enter__(self) -> TorchThreads:
        import torch

        self._saved.append(torch.get_num_threads())
        if self.n is not None:
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self._saved.pop())


def agent_roles(env: Any) -> dict[str, str]:
    """Each agent's role: the env's ``roles`` mapping where it has one, else :data:`ONE_ROLE`.

    ``SecrecyJamming-v0`` has roles (``"tx"``, ``"jam"``, ``"choose"``, fixed by its config);
    agents of one role share their action and observation spaces.
    """
    roles = getattr(env.unwrapped, "roles", None)
    if isinstance(roles, Mapping):
        return {a: str(roles[a]) for a in env.possible_agents}
    return dict.fromkeys(env.possible_agents, ONE_ROLE)


@dataclass(frozen=True)
class MarlEvaluation:
    """Returns of a joint policy over seeded episodes of a ``ParallelEnv``.

    Attributes:
        agents: The agents, in ``possible_agents`` order (the columns of ``returns``).
        roles: The role of each agent (:func:`agent_roles`), in the same order.
        seeds: The reset seed of each episode (the rows).
        returns: Per-agent episode returns, shape ``(episodes, agents)``.
        team_returns: Per-episode sums of the env's team reward (``infos[a]["team_reward"]``),
            shape ``(episodes,)``.
        lengths: Steps of each episode.
        metrics: ``eval/<key>``: mean over steps, episodes and agents of each finite numeric
            ``info`` entry (:func:`qdrl_bench.robustness.scalar_infos`: ``eval/secrecy_rate``,
            ``eval/sla_satisfaction``, ...).
    """

    agents: tuple[str, ...]
    roles: tuple[str, ...]
    seeds: tuple[int, ...]
    returns: np.ndarray
    team_returns: np.ndarray
    lengths: np.ndarray
    metrics: dict[str, float]

    @property
    def mean_returns(self) -> dict[str, float]:
        """Mean episode return of each agent."""
        return {a: float(self.returns[:, i].mean()) for i, a in enumerate(self.agents)}

    @property
    def role_returns(self) -> dict[str, float]:
        """Per role, the mean episode return of one of its agents (mean over its agents)."""
        roles = np.asarray(self.roles)
        return {r: float(self.returns[:, roles == r].mean()) for r in dict.fromkeys(self.roles)}

    @property
    def mean_team_return(self) -> float:
        """Mean of :attr:`team_returns`."""
        return float(self.team_returns.mean())


def _team_reward(env: Any, infos: Mapping[str, Mapping[str, Any]]) -> float:
    first = next(iter(infos.values()), {})
    if "team_reward" in first:
        return float(first["team_reward"])
    raise ValueError(f"{marl.marl_entry(env).id} reports no team reward in its infos")


def play_episodes(env: Any, act: JointAct, *, episodes: int, seed: int) -> MarlEvaluation:
    """Play ``act`` on ``env``; episode ``k`` is reset with ``seed + k``.

    Args:
        env: A ``ParallelEnv`` of :data:`qdrl_envs.MARL_ENV_IDS` (or one wrapping it, whose
            infos keep ``team_reward``). Not closed here.
        act: The joint policy (see :data:`JointAct`).
        episodes: Number of episodes (>= 1).
        seed: Seed of the first episode.

    Raises:
        ValueError: If ``episodes < 1``, or the env's infos have no ``team_reward``.
    """
    check_int("episodes", episodes, low=1)
    agents = tuple(env.possible_agents)
    roles = agent_roles(env)
    returns = np.zeros((episodes, len(agents)))
    team = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=int)
    sums: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)
    seeds = tuple(int(seed) + k for k in range(episodes))
    for k, s in enumerate(seeds):
        observations, _ = env.reset(seed=s)
        while env.agents:
            observations, rewards, _, _, infos = env.step(dict(act(observations)))
            for i, a in enumerate(agents):
                returns[k, i] += float(rewards.get(a, 0.0))
            team[k] += _team_reward(env, infos)
            lengths[k] += 1
            for info in infos.values():
                for key, value in scalar_infos(info).items():
                    sums[key] += value
                    counts[key] += 1
    metrics = {f"eval/{key}": sums[key] / counts[key] for key in sorted(sums)}
    return MarlEvaluation(agents=agents, roles=tuple(roles[a] for a in agents), seeds=seeds,
                          returns=returns, team_returns=team, lengths=lengths, metrics=metrics)
