"""The PettingZoo ``ParallelEnv`` scaffolding of qdrl's multi-agent environments, written once.

:class:`CoreParallelEnv` is to PettingZoo what :class:`qdrl_envs.core.CoreEnv` is to
Gymnasium: one instance of a batched core, with the agents' bookkeeping around it. A
subclass keeps only what is its own (the model's spaces, how the agents' actions make the
core's joint action, how the core's step info becomes rewards and per-agent infos, the
observations, the manual); this class holds the rest:

* config and ``render_mode`` (checked), the core with one instance;
* ``possible_agents`` (``<agent_prefix>_<i>``) and ``agents`` (all live from ``reset`` until
  the ``max_cycles`` truncation, then none), the cached space dicts and their accessors,
  which reject unknown agents;
* seeding (``reset(seed=...)`` reseeds, ``reset()`` goes on with the same generator), reset
  options (``reset_options``; other keys are ignored with a warning);
* ``step``: the live-agent and action-dict checks (:func:`qdrl_envs.marl.check_action_dict`,
  then :func:`qdrl_envs.validation.check_action` per agent, errors naming it), the core step,
  the termination / truncation dicts;
* ``render`` (the core draws: ``render_ansi`` / ``render_rgb_array``) and ``close``.

This module imports PettingZoo; :mod:`qdrl_envs.marl` (the registry) does not.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec

from qdrl_envs.config import resolve_config
from qdrl_envs.core import BatchedCore, check_render_mode
from qdrl_envs.marl import check_action_dict
from qdrl_envs.validation import check_action

__all__ = ["CoreParallelEnv"]

ConfigT = TypeVar("ConfigT")


class CoreParallelEnv(ParallelEnv, Generic[ConfigT], abc.ABC):
    """A PettingZoo ``ParallelEnv`` driven by a batched core with one instance.

    Subclasses set the class attributes and implement the hooks; their docstring is the
    manual.

    Class attributes:
        metadata: PettingZoo's; a subclass adds its ``"name"``
            (``{"name": ..., **CoreParallelEnv.metadata}``).
        config_cls: The config dataclass (it has a ``max_cycles`` field).
        core_cls: ``core_cls(config, num_envs)``, with ``n_agents``, ``reset(rngs, idx,
            options)``, ``step(joint_actions, rngs)``, ``render_ansi(row)`` and
            ``render_rgb_array(row)``.
        agent_prefix: Agent ``i`` is ``f"{agent_prefix}_{i}"``.
        reset_options: The ``reset(options=...)`` keys handed to the core (others are
            ignored with a warning; PettingZoo's API test passes one).

    Hooks: :meth:`_make_spaces`, :meth:`joint_action`, :meth:`_rewards_and_infos`,
    :meth:`_observations`, :meth:`state`; optionally :meth:`_instance_rng` and
    :meth:`_agent_label`.

    Args:
        config: A config instance or mapping (defaults when ``None``).
        render_mode: ``None`` or one of ``metadata["render_modes"]``.
        **kwargs: Config field overrides.

    Raises:
        ValueError: On unknown config fields, invalid values or an unknown render mode.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 4,
        "is_parallelizable": True,
    }
    config_cls: ClassVar[type]
    core_cls: ClassVar[type]
    agent_prefix: ClassVar[str]
    reset_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ConfigT | Mapping[str, Any] | None = None,
                 render_mode: str | None = None, **kwargs: Any) -> None:
        self.config: ConfigT = resolve_config(self.config_cls, config, kwargs)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.core = self.core_cls(self.config, 1)
        if isinstance(self.core, BatchedCore):
            self.core.rendering = render_mode is not None
        self.possible_agents: list[str] = [f"{self.agent_prefix}_{i}"
                                           for i in range(self.core.n_agents)]
        self.agents: list[str] = []
        self._index = {a: i for i, a in enumerate(self.possible_agents)}
        self.observation_spaces, self.action_spaces, self.state_space = self._make_spaces()
        self._instance_rngs: Any = None  # what the core gets for the one instance
        self._seed: int | None = None
        self._t = 0

    @classmethod
    def aec_env(cls, **kwargs: Any) -> AECEnv:
        """The AEC form, ``pettingzoo.utils.parallel_to_aec(cls(**kwargs))``.

        A module's ``env = TheEnv.aec_env`` is PettingZoo's usual ``env(**kwargs)``.
        """
        return parallel_to_aec(cls(**kwargs))

    # -- hooks -------------------------------------------------------------------------------

    @abc.abstractmethod
    def _make_spaces(self) -> tuple[dict[str, spaces.Space], dict[str, spaces.Space],
                                    spaces.Space]:
        """Set up the agents' tables; return ``(observation_spaces, action_spaces, state)``.

        Called by ``__init__`` once ``config``, ``core``, ``possible_agents`` and ``_index``
        are set; a subclass also sets up its own per-agent tables here.
        """

    @abc.abstractmethod
    def joint_action(self, actions: Mapping[str, Any]) -> np.ndarray:
        """The core's joint action for the instance from the agents' actions.

        Checks them with :meth:`_checked_actions` first.
        """

    @abc.abstractmethod
    def _rewards_and_infos(self, info: Mapping[str, Any]
                           ) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        """The live agents' rewards and infos from the core's step ``info`` (row 0)."""

    @abc.abstractmethod
    def _observations(self) -> dict[str, np.ndarray]:
        """The live agents' observations."""

    @abc.abstractmethod
    def state(self) -> np.ndarray:
        """The global state (``state_space``)."""

    def _instance_rng(self, rng: np.random.Generator, seed: int) -> Any:
        """What the core gets as the instance's generator(s) after seeding with ``seed``.

        ``rng`` is ``seeding.np_random(seed)``'s generator; by default it is the answer.
        """
        return rng

    def _agent_label(self, agent: str) -> str:
        """How an action error names ``agent``."""
        return f"agent {agent!r}"

    # -- agents and spaces -------------------------------------------------------------------

    def _agent(self, agent: Any) -> int:
        try:
            return self._index[agent]
        except (KeyError, TypeError):
            raise ValueError(f"unknown agent {agent!r}; the agents are "
                             f"{self.possible_agents}") from None

    def observation_space(self, agent: str) -> spaces.Space:
        """The observation space of ``agent`` (the same object on every call)."""
        self._agent(agent)
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        """The action space of ``agent`` (the same object on every call; see the manual)."""
        self._agent(agent)
        return self.action_spaces[agent]

    def _checked_actions(self, actions: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Every live agent's action, checked against its space (in ``agents`` order).

        Raises:
            ValueError: If a live agent has no action, an agent is unknown or not live, or an
                action is misshaped, NaN/inf or outside its space (naming the agent).
        """
        check_action_dict(actions, self.agents)
        checked = {}
        for agent in self.agents:
            try:
                checked[agent] = check_action(self.action_spaces[agent], actions[agent])
            except ValueError as exc:
                raise ValueError(f"{self._agent_label(agent)}: {exc}") from None
        return checked

    # -- seeding -----------------------------------------------------------------------------

    @property
    def np_random_seed(self) -> int | None:
        """The seed of the env's randomness (``None`` before the first reset)."""
        return self._seed

    def instance_rngs(self, seed: int | None = None) -> Any:
        """Fresh generator(s) of one core instance, as ``reset(seed=seed)`` makes them.

        The batched form of the env: row ``i`` of ``core_cls(config, N)``, reset and stepped
        with ``instance_rngs(s_i)`` (and joint actions from :meth:`joint_action`), is this env
        after ``reset(seed=s_i)``, step for step.
        """
        rng, drawn = seeding.np_random(seed)
        return self._instance_rng(rng, drawn)

    def _reseed(self, seed: int | None) -> None:
        rng, self._seed = seeding.np_random(seed)  # validates the seed, draws one when None
        self._instance_rngs = self._instance_rng(rng, self._seed)

    # -- episode -----------------------------------------------------------------------------

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """Start an episode; ``seed`` makes it fully reproducible. See the manual."""
        if seed is not None or self._instance_rngs is None:
            self._reseed(seed)
        known: dict[str, Any] = {}
        if options:
            known = {k: v for k, v in options.items() if k in self.reset_options}
            unknown = sorted(str(k) for k in options if k not in self.reset_options)
            if unknown:
                takes = (f"the options are {list(self.reset_options)}" if self.reset_options
                         else "this env takes none")
                warnings.warn(f"{self.metadata['name']}: reset option(s) {unknown} ignored; "
                              f"{takes}", stacklevel=2)
        self.core.reset([self._instance_rngs], np.array([0]), known or None)
        self.agents = self.possible_agents[:]
        self._t = 0
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions: Mapping[str, Any]) -> tuple[
            dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool],
            dict[str, dict[str, Any]]]:
        """Apply every live agent's action for one slot (see the manual).

        Raises:
            RuntimeError: Before ``reset`` or after the episode ended.
            ValueError: On missing, unknown or invalid actions (naming the agent).
        """
        if not self.agents:
            raise RuntimeError("no live agents: call reset() before step() (the episode "
                               "ended)" if self._t else "call reset() before step()")
        joint = self.joint_action(actions)
        result = self.core.step(joint[None], [self._instance_rngs])
        self._t += 1
        rewards, infos = self._rewards_and_infos(result.info)
        done = self._t >= self.config.max_cycles  # type: ignore[attr-defined]
        observations = self._observations()
        terminations = {a: False for a in self.agents}
        truncations = {a: done for a in self.agents}
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def render(self) -> str | np.ndarray | None:
        """Render according to ``render_mode`` (``None`` renders nothing)."""
        if self.render_mode == "ansi":
            return self.core.render_ansi(0)
        if self.render_mode == "rgb_array":
            return self.core.render_rgb_array(0)
        return None

    def close(self) -> None:
        """Nothing to release (rendering draws off-screen)."""
