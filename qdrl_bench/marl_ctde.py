"""Centralised training, decentralised execution (MAPPO / IPPO) on the qdrl multi-agent envs.

The engine is TorchRL (``torchrl``, ``tensordict``): its PettingZoo wrapper, data collector,
generalised advantage estimator and clipped PPO loss, put together as BenchMARL's MAPPO and
IPPO put them (one agent group per action space, one loss per group). BenchMARL itself is not
imported: its configuration layer (hydra-core, omegaconf) needs ``antlr4-python3-runtime==4.9.*``
while the project's Qiskit stack has 4.13; TorchRL needs neither.

Agents are grouped by action space: on ``qdrl/SecrecyJamming-v0`` by role (``"tx"``,
``"jam"``, ``"choose"``: transmitters and jammers have different action widths), on the other
envs all agents form one group ``"agents"``. Within a group the actor's parameters are shared
and each agent acts on its own observation only (decentralised execution). The critics:

* ``"mappo"``: one centralised critic per group over the environment's global ``state()``
  (``critic_input="state"``) or over the concatenated observations of all agents
  (``critic_input="joint_obs"``), with one value output per agent of the group;
* ``"ippo"``: a critic per group (shared within it) on each agent's own observation.

Network families (``family``):

* ``"quantum"``: actor = linear encoder into ``n_qubits`` qubits, then a
  `qdrl_agents.layers.QuantumLayer` (`ClassicalToQuantum`) whose per-qubit Z readouts give the
  action means (a state-independent log standard deviation, as in stable-baselines3); critic =
  the same construction over the critic input with ``critic_qubits`` qubits, output scaling and
  bias, one readout per value;
* ``"mlp"``: one hidden ``tanh`` layer for actor and critic, its width chosen so that each
  network's trainable parameter count is the closest to its quantum twin's (on the same env,
  algorithm and qubit settings); see :func:`matched_widths`.

Usage::

    from qdrl_bench.marl_ctde import train_ctde, evaluate_ctde, CTDEAgents

    result = train_ctde("qdrl/SecrecyJamming-v0", "mappo", family="quantum",
                        total_steps=20_000, seed=0)
    print(evaluate_ctde(result.agents, n_episodes=10, seed=100))
    result.agents.save("mappo_q.pt")
    agents = CTDEAgents.load("mappo_q.pt")
    actions = agents.predict(observations)          # dict agent -> action, deterministic
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from qdrl_agents.circuits import CircuitSpec
from qdrl_agents.layers import ClassicalToQuantum, QuantumLayer, make_encoder, parameter_counts
from qdrl_bench.agents import CTDE_ALGOS
from qdrl_bench.marl_eval import MarlEvaluation, TorchThreads, agent_roles, play_episodes
from qdrl_envs.config import check_choice, check_int, check_real
from qdrl_envs.marl import MARL_ENV_IDS, make_parallel, marl_entry

__all__ = [
    "ALGORITHMS",
    "CRITIC_INPUTS",
    "FAMILIES",
    "SWEEP_SET",
    "CTDEAgents",
    "CTDEConfig",
    "CTDEResult",
    "check_sweep_kwargs",
    "evaluate_ctde",
    "group_map",
    "matched_widths",
    "train_ctde",
]

ALGORITHMS: tuple[str, ...] = tuple(CTDE_ALGOS)
"""The training algorithms: MAPPO (centralised critic) and IPPO (independent critics)."""

FAMILIES: tuple[str, ...] = ("quantum", "mlp")
"""The network families of actor and critic."""

CRITIC_INPUTS: tuple[str, ...] = ("state", "joint_obs")
"""What MAPPO's centralised critic reads: the env's ``state()`` or all observations."""

_FORMAT = "qdrl-marl-ctde"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class CTDEConfig:
    """Everything that defines one MAPPO / IPPO run (saved with the agents).

    Attributes:
        env_id: A multi-agent env id (:data:`qdrl_envs.marl.MARL_ENV_IDS`).
        algorithm: ``"mappo"`` or ``"ippo"``.
        family: ``"quantum"`` or ``"mlp"`` (matched parameter counts).
        env_kwargs: Config fields of the env (``n_aps=4``, ``max_cycles=50``, ...).
        critic_input: MAPPO's critic input, ``"state"`` or ``"joint_obs"`` (unused by IPPO).
        n_qubits: Qubits of each quantum actor (raised to the action width if smaller).
        n_layers: Re-uploading layers of each quantum actor.
        critic_qubits: Qubits of each quantum critic (raised to its output count if smaller).
        critic_layers: Layers of each quantum critic.
        total_steps: Environment steps of training (one step moves every agent).
        frames_per_batch: Environment steps collected per PPO iteration.
        n_epochs: Passes over each batch.
        minibatch_size: Environment steps per gradient step.
        lr: Adam learning rate (all parameters).
        gamma: Discount factor.
        lmbda: GAE lambda.
        clip_epsilon: PPO clipping range.
        entropy_coef: Entropy bonus weight (0 disables it).
        critic_coef: Weight of the critic loss.
        max_grad_norm: Gradient norm clip.
        log_std_init: Initial log standard deviation of the (pre-tanh) Gaussian actions.
        seed: Seeds torch (network initialisation, sampling) and the training env.
    """

    env_id: str
    algorithm: str = "mappo"
    family: str = "quantum"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    critic_input: str = "state"
    n_qubits: int = 4
    n_layers: int = 2
    critic_qubits: int = 4
    critic_layers: int = 2
    total_steps: int = 10_000
    frames_per_batch: int = 500
    n_epochs: int = 4
    minibatch_size: int = 125
    lr: float = 5e-3
    gamma: float = 0.99
    lmbda: float = 0.95
    clip_epsilon: float = 0.2
    entropy_coef: float = 0.0
    critic_coef: float = 1.0
    max_grad_norm: float = 1.0
    log_std_init: float = -0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str):
            raise ValueError(f"unknown multi-agent environment {self.env_id!r}; the ids are "
                             f"{list(MARL_ENV_IDS)}")
        marl_entry(self.env_id)  # ValueError naming the id and listing the known ones
        check_choice("CTDEConfig.algorithm", self.algorithm, ALGORITHMS)
        check_choice("CTDEConfig.family", self.family, FAMILIES)
        check_choice("CTDEConfig.critic_input", self.critic_input, CRITIC_INPUTS)
        if not isinstance(self.env_kwargs, Mapping):
            raise ValueError(f"CTDEConfig.env_kwargs must be a mapping of env config fields, "
                             f"got {self.env_kwargs!r}")
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        for name in ("n_qubits", "n_layers", "critic_qubits", "critic_layers", "total_steps",
                     "frames_per_batch", "n_epochs", "minibatch_size"):
            check_int(f"CTDEConfig.{name}", getattr(self, name), low=1)
        check_int("CTDEConfig.seed", self.seed, low=0)
        if self.minibatch_size > self.frames_per_batch:
            raise ValueError(f"CTDEConfig.minibatch_size={self.minibatch_size} exceeds "
                             f"frames_per_batch={self.frames_per_batch}")
        check_real("CTDEConfig.lr", self.lr, 0.0, 10.0, low_inclusive=False)
        check_real("CTDEConfig.gamma", self.gamma, 0.0, 1.0)
        check_real("CTDEConfig.lmbda", self.lmbda, 0.0, 1.0)
        check_real("CTDEConfig.clip_epsilon", self.clip_epsilon, 0.0, 1.0, low_inclusive=False)
        check_real("CTDEConfig.entropy_coef", self.entropy_coef, 0.0, 100.0)
        check_real("CTDEConfig.critic_coef", self.critic_coef, 0.0, 100.0, low_inclusive=False)
        check_real("CTDEConfig.max_grad_norm", self.max_grad_norm, 0.0, 1e6,
                   low_inclusive=False)
        check_real("CTDEConfig.log_std_init", self.log_std_init, -20.0, 5.0)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain Python values (what :meth:`CTDEAgents.save` stores)."""
        d = dataclasses.asdict(self)
        d["env_kwargs"] = dict(self.env_kwargs)
        return d


SWEEP_SET = ("env_id", "algorithm", "family", "env_kwargs", "total_steps", "seed")
"""The :class:`CTDEConfig` fields a sweep run sets itself (from its env, agent name, budget and
seed); an agent's ``kwargs`` give the others."""


def check_sweep_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Check a sweep agent's ``kwargs`` as :class:`CTDEConfig` fields (see :data:`SWEEP_SET`).

    Raises:
        ValueError: Naming an unknown or sweep-set key (listing the allowed ones), or the
            field whose value is invalid.
    """
    allowed = [f.name for f in dataclasses.fields(CTDEConfig) if f.name not in SWEEP_SET]
    for key in kwargs:
        if key not in allowed:
            why = ("is set by the sweep (its env, agent name, timesteps or seed)"
                   if key in SWEEP_SET else "is not a CTDEConfig field")
            raise ValueError(f"{key!r} {why}; MAPPO / IPPO kwargs: {allowed}")
    CTDEConfig(env_id=MARL_ENV_IDS[0], **dict(kwargs))


# ----------------------------------------------------------------------------- groups, shapes


def group_map(env: Any) -> dict[str, list[str]]:
    """Agent groups of a ParallelEnv: one per role (:func:`qdrl_bench.marl_eval.agent_roles`).

    ``qdrl/SecrecyJamming-v0`` groups by role (``"tx"``, ``"jam"``, ``"choose"``); every other
    env has the one group ``"agents"``. Groups are ordered by their first agent. Agents of a
    group share the group's actor (and critic), so they must share their spaces.

    Raises:
        ValueError: If a group mixes action shapes, or an action space is not ``Box(-1, 1)``
            (the actors' tanh-squashed Gaussians cover exactly that box).
    """
    groups: dict[str, list[str]] = {}
    for agent, role in agent_roles(env).items():
        groups.setdefault(role, []).append(agent)
    for name, agents in groups.items():
        shapes = {env.action_space(a).shape for a in agents}
        if len(shapes) != 1:
            raise ValueError(f"group {name!r} mixes action shapes {sorted(shapes)}")
        for a in agents:
            space = env.action_space(a)
            if (not isinstance(space, gym.spaces.Box) or not np.all(space.low == -1.0)
                    or not np.all(space.high == 1.0)):
                raise ValueError(f"agent {a!r} acts in {space}; MAPPO / IPPO here need "
                                 f"Box(-1, 1) actions")
    return groups


@dataclass(frozen=True)
class _Dims:
    obs: dict[str, int]          # group -> observation width
    act: dict[str, int]          # group -> action width
    n: dict[str, int]            # group -> number of agents
    state: int                   # width of env.state()
    joint_obs: int               # width of all observations concatenated

    def critic_in(self, cfg: CTDEConfig, group: str) -> int:
        if cfg.algorithm == "ippo":
            return self.obs[group]
        return self.state if cfg.critic_input == "state" else self.joint_obs

    def critic_out(self, cfg: CTDEConfig, group: str) -> int:
        return 1 if cfg.algorithm == "ippo" else self.n[group]


def _dims(env: Any, groups: Mapping[str, list[str]]) -> _Dims:
    obs, act, n = {}, {}, {}
    for g, agents in groups.items():
        obs[g] = int(np.prod(env.observation_space(agents[0]).shape))
        act[g] = int(np.prod(env.action_space(agents[0]).shape))
        n[g] = len(agents)
    state_space = getattr(env.unwrapped, "state_space", None)
    state = int(np.prod(state_space.shape)) if state_space is not None else 0
    return _Dims(obs, act, n, state, sum(obs[g] * n[g] for g in groups))


# ----------------------------------------------------------------------------- networks


class _Flat(nn.Module):
    """Apply a ``(B, d_in) -> (B, d_out)`` network over any leading dimensions."""

    def __init__(self, net: nn.Module, out_features: int) -> None:
        super().__init__()
        self.net = net
        self.out_features = int(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self.net(x.reshape(-1, x.shape[-1]))
        return y.reshape(*lead, self.out_features)


class _GaussianActor(nn.Module):
    """Observation -> (loc, scale) of a tanh-squashed Gaussian; state-independent log std."""

    def __init__(self, net: nn.Module, act_dim: int, log_std_init: float) -> None:
        super().__init__()
        self.body = _Flat(net, act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc = self.body(obs)
        return loc, self.log_std.exp().expand_as(loc)


class _Critic(nn.Module):
    """Critic input -> one value per output, shaped ``(..., k, 1)`` as TorchRL's groups are.

    For MAPPO the input is the global state (or the group observations, concatenated); for
    IPPO it is each agent's own observation (``k = 1``, leading agent dimension kept).
    """

    def __init__(self, net: nn.Module, out_features: int, joint: bool, ippo: bool) -> None:
        super().__init__()
        self.body = _Flat(net, out_features)
        self.joint = joint
        self.ippo = ippo

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.joint:  # each (..., n_g, obs_g) -> (..., n_g * obs_g), concatenated
            x = torch.cat([t.flatten(-2) for t in inputs], dim=-1)
        else:
            x = inputs[0]
        v = self.body(x)
        return v if self.ippo else v.unsqueeze(-1)


def _quantum_net(in_dim: int, out_dim: int, n_qubits: int, n_layers: int, *,
                 critic: bool) -> ClassicalToQuantum:
    q = max(int(n_qubits), int(out_dim))
    spec = CircuitSpec(n_qubits=q, n_layers=int(n_layers), readout="parity",
                       parity_groups=tuple((i,) for i in range(out_dim)))
    layer = QuantumLayer(spec, output_bias=critic, output_scaling_init=2.0 if not critic else 1.0)
    return ClassicalToQuantum(layer, in_dim)


def _mlp_net(in_dim: int, out_dim: int, hidden: int) -> nn.Sequential:
    return make_encoder(in_dim, out_dim, hidden=(int(hidden),), activation=nn.Tanh)


def _count(module: nn.Module) -> int:
    return sum(parameter_counts(module).values())


def _match_width(target: int, build: Callable[[int], nn.Module]) -> int:
    """The hidden width whose module's parameter count is closest to ``target`` (ties: smaller).

    The count grows with the width, so bisection over actual modules finds it.
    """
    lo, hi = 1, 1
    while _count(build(hi)) < target and hi < 1 << 14:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _count(build(mid)) < target:
            lo = mid
        else:
            hi = mid
    return min((lo, hi), key=lambda h: (abs(_count(build(h)) - target), h))


def _build_quantum(cfg: CTDEConfig, dims: _Dims, groups: Sequence[str]
                   ) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    actors, critics = {}, {}
    for g in groups:
        actors[g] = _GaussianActor(
            _quantum_net(dims.obs[g], dims.act[g], cfg.n_qubits, cfg.n_layers, critic=False),
            dims.act[g], cfg.log_std_init)
        k = dims.critic_out(cfg, g)
        critics[g] = _Critic(
            _quantum_net(dims.critic_in(cfg, g), k, cfg.critic_qubits, cfg.critic_layers,
                         critic=True),
            k, joint=cfg.algorithm == "mappo" and cfg.critic_input == "joint_obs",
            ippo=cfg.algorithm == "ippo")
    return actors, critics


def _widths(cfg: CTDEConfig, dims: _Dims, groups: Sequence[str]
            ) -> dict[str, dict[str, int]]:
    q_cfg = dataclasses.replace(cfg, family="quantum")
    with torch.random.fork_rng():
        q_actors, q_critics = _build_quantum(q_cfg, dims, groups)
    out: dict[str, dict[str, int]] = {"actor": {}, "critic": {}}
    for g in groups:
        out["actor"][g] = _match_width(
            _count(q_actors[g]),
            lambda h, g=g: _GaussianActor(_mlp_net(dims.obs[g], dims.act[g], h), dims.act[g],
                                          cfg.log_std_init))
        k = dims.critic_out(cfg, g)
        out["critic"][g] = _match_width(
            _count(q_critics[g]),
            lambda h, g=g, k=k: _mlp_net(dims.critic_in(cfg, g), k, h))
    return out


def matched_widths(config: CTDEConfig) -> dict[str, dict[str, int]]:
    """Hidden widths of the ``"mlp"`` family: ``{"actor": {group: h}, "critic": {group: h}}``.

    Each is the width whose network's trainable parameter count is closest to the quantum
    twin's (same env, algorithm, critic input and qubit settings), found by bisection over the
    built modules.
    """
    env = make_parallel(config.env_id, **config.env_kwargs)
    groups = group_map(env)
    return _widths(config, _dims(env, groups), list(groups))


def _build(cfg: CTDEConfig, env: Any) -> tuple[dict[str, list[str]], nn.ModuleDict,
                                               nn.ModuleDict, _Dims]:
    groups = group_map(env)
    dims = _dims(env, groups)
    if cfg.algorithm == "mappo" and cfg.critic_input == "state" and dims.state == 0:
        raise ValueError(f"{cfg.env_id} has no state(); use critic_input='joint_obs'")
    names = list(groups)
    if cfg.family == "quantum":
        actors, critics = _build_quantum(cfg, dims, names)
    else:
        widths = _widths(cfg, dims, names)
        actors, critics = {}, {}
        for g in names:
            actors[g] = _GaussianActor(_mlp_net(dims.obs[g], dims.act[g], widths["actor"][g]),
                                       dims.act[g], cfg.log_std_init)
            k = dims.critic_out(cfg, g)
            critics[g] = _Critic(_mlp_net(dims.critic_in(cfg, g), k, widths["critic"][g]), k,
                                 joint=cfg.algorithm == "mappo"
                                 and cfg.critic_input == "joint_obs",
                                 ippo=cfg.algorithm == "ippo")
    return groups, nn.ModuleDict(actors), nn.ModuleDict(critics), dims


# ----------------------------------------------------------------------------- agents


class CTDEAgents(nn.Module):
    """The trained actors (and critics) of a MAPPO / IPPO run; acts on PettingZoo dicts.

    Build it with :func:`train_ctde` or :meth:`load`. :meth:`predict` is decentralised: each
    agent's action is computed from its own observation by its group's actor.

    Attributes:
        config: The run's :class:`CTDEConfig`.
        groups: Group name -> agent names.
        actors: Group name -> actor module (``obs -> (loc, scale)``).
        critics: Group name -> critic module.
    """

    def __init__(self, config: CTDEConfig) -> None:
        super().__init__()
        if not isinstance(config, CTDEConfig):
            raise TypeError(f"config must be a CTDEConfig, got {type(config).__name__}")
        self.config = config
        env = make_parallel(config.env_id, **config.env_kwargs)
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            self.groups, self.actors, self.critics, self._dims = _build(config, env)
        self._group_of = {a: g for g, agents in self.groups.items() for a in agents}
        self.possible_agents = list(env.possible_agents)

    def make_env(self, **overrides: Any) -> Any:
        """A fresh ParallelEnv of the run's env id and env config (``overrides`` on top)."""
        return make_parallel(self.config.env_id, **{**self.config.env_kwargs, **overrides})

    def parameter_counts(self) -> dict[str, dict[str, int]]:
        """Trainable parameters per network: ``{"actor": {group: n}, "critic": {group: n}}``.

        Also ``"actor_quantum"`` / ``"critic_quantum"``: how many of them are circuit weights.
        """
        out: dict[str, dict[str, int]] = {"actor": {}, "critic": {}, "actor_quantum": {},
                                          "critic_quantum": {}}
        for part, modules in (("actor", self.actors), ("critic", self.critics)):
            for g, m in modules.items():
                counts = parameter_counts(m)
                out[part][g] = int(sum(counts.values()))
                out[f"{part}_quantum"][g] = int(counts["quantum"])
        return out

    def distributions(self, observations: Mapping[str, Any]) -> dict[str, Any]:
        """The action distribution of each agent in ``observations`` (TorchRL ``TanhNormal``)."""
        from torchrl.modules import TanhNormal

        self._check_agents(observations)
        out = {}
        for g in self.groups:
            agents = [a for a in self.groups[g] if a in observations]
            if not agents:
                continue
            obs = torch.as_tensor(np.stack([np.asarray(observations[a], np.float32)
                                            for a in agents]))
            loc, scale = self.actors[g](obs)
            for i, a in enumerate(agents):
                out[a] = TanhNormal(loc[i], scale[i], low=-1.0, high=1.0)
        return out

    def _check_agents(self, observations: Mapping[str, Any]) -> None:
        if not isinstance(observations, Mapping):
            raise ValueError(f"observations must be a dict agent -> observation, got "
                             f"{type(observations).__name__}")
        unknown = [a for a in observations if a not in self._group_of]
        if unknown:
            raise ValueError(f"unknown agent(s) {unknown}; the agents are "
                             f"{self.possible_agents}")

    @torch.no_grad()
    def predict(self, observations: Mapping[str, Any], deterministic: bool = True
                ) -> dict[str, np.ndarray]:
        """One action per agent of ``observations`` (a ParallelEnv's observation dict).

        Deterministic actions are ``tanh`` of the Gaussian means; stochastic ones are samples
        (torch's global generator).

        Raises:
            ValueError: If ``observations`` is not a dict of known agents.
        """
        dists = self.distributions(observations)
        actions = {}
        for a, d in dists.items():
            x = d.deterministic_sample if deterministic else d.sample()
            actions[a] = x.clamp(-1.0, 1.0).numpy().astype(np.float32)
        return actions

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write config and weights to ``path`` (``torch.save``; :meth:`load` reads it)."""
        torch.save({"format": _FORMAT, "version": _FORMAT_VERSION,
                    "config": self.config.to_dict(), "groups": self.groups,
                    "state_dict": self.state_dict()}, os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CTDEAgents:
        """Rebuild the agents saved by :meth:`save` (weights only, no pickled code).

        Raises:
            ValueError: If the file is not a saved :class:`CTDEAgents`.
        """
        blob = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a saved CTDEAgents file")
        if blob.get("version") != _FORMAT_VERSION:
            raise ValueError(f"{os.fspath(path)!r} has format version {blob.get('version')}; "
                             f"this qdrl reads version {_FORMAT_VERSION}")
        agents = cls(CTDEConfig(**blob["config"]))
        if blob.get("groups") != agents.groups:
            raise ValueError(f"{os.fspath(path)!r} was saved with agent groups "
                             f"{blob.get('groups')}, the env now gives {agents.groups}")
        agents.load_state_dict(blob["state_dict"], strict=True)
        return agents


# ----------------------------------------------------------------------------- training


@dataclass
class CTDEResult:
    """What :func:`train_ctde` returns.

    Attributes:
        agents: The trained :class:`CTDEAgents`.
        history: One dict per PPO iteration: ``steps`` (env steps so far), ``reward`` (mean
            per-step reward of each group in the batch), ``loss_objective``, ``loss_critic``.
    """

    agents: CTDEAgents
    history: list[dict[str, Any]]


def _torchrl_modules(agents: CTDEAgents) -> tuple[Any, dict[str, Any]]:
    from tensordict.nn import TensorDictModule
    from torchrl.modules import ProbabilisticActor, TanhNormal

    cfg = agents.config
    actors, critics = [], {}
    for g in agents.groups:
        module = TensorDictModule(agents.actors[g], in_keys=[(g, "observation")],
                                  out_keys=[(g, "loc"), (g, "scale")])
        actors.append(ProbabilisticActor(
            module, in_keys=[(g, "loc"), (g, "scale")], out_keys=[(g, "action")],
            distribution_class=TanhNormal, distribution_kwargs={"low": -1.0, "high": 1.0},
            return_log_prob=True, log_prob_key=(g, "log_prob")))
        if cfg.algorithm == "ippo":
            in_keys: list[Any] = [(g, "observation")]
        elif cfg.critic_input == "state":
            in_keys = ["state"]
        else:
            in_keys = [(h, "observation") for h in agents.groups]
        critics[g] = TensorDictModule(agents.critics[g], in_keys=in_keys,
                                      out_keys=[(g, "state_value")])
    return actors, critics


def train_ctde(env_id: str, algorithm: str = "mappo", *, family: str = "quantum",
               callback: Callable[[dict[str, Any], CTDEAgents], bool | None] | None = None,
               torch_threads: int | None = 1, **config: Any) -> CTDEResult:
    """Train MAPPO or IPPO on a qdrl multi-agent env with quantum or matched-MLP networks.

    Args:
        env_id: A multi-agent env id (:data:`qdrl_envs.marl.MARL_ENV_IDS`).
        algorithm: ``"mappo"`` (centralised critic) or ``"ippo"``.
        family: ``"quantum"`` or ``"mlp"``.
        callback: Called with each iteration's history entry and the agents, after the
            iteration's update; returning ``False`` stops training there (a sweep's
            evaluation hook, a pruner).
        torch_threads: torch's intra-op threads while training (restored after; ``None``
            leaves torch's setting; why 1: :class:`qdrl_bench.marl_eval.TorchThreads`).
        **config: Other :class:`CTDEConfig` fields (``env_kwargs``, ``total_steps``, ...).

    Returns:
        The trained agents and the training history.

    Raises:
        ValueError: On an unknown env id, algorithm or family, or an invalid config field
            (the message names the value).
    """
    cfg = CTDEConfig(env_id=env_id, algorithm=algorithm, family=family, **config)
    with TorchThreads(torch_threads):
        return _train(cfg, callback)


def _train(cfg: CTDEConfig, callback: Callable[[dict[str, Any], CTDEAgents], bool | None] | None
           ) -> CTDEResult:
    from tensordict.nn import TensorDictSequential
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper
    from torchrl.objectives import ClipPPOLoss, ValueEstimators

    torch.manual_seed(cfg.seed)
    agents = CTDEAgents(cfg)
    actors, critics = _torchrl_modules(agents)
    groups = agents.groups

    par = agents.make_env()
    needs_state = cfg.algorithm == "mappo" and cfg.critic_input == "state"
    with warnings.catch_warnings():  # "tested with pettingzoo 1.24.3": ours is 1.25
        warnings.filterwarnings("ignore", message="PettingZoo in TorchRL is tested",
                                category=UserWarning)
        env = PettingZooWrapper(env=par, group_map=groups, return_state=needs_state,
                                use_mask=False, categorical_actions=True, seed=cfg.seed,
                                device="cpu")
    losses = {}
    for g, actor in zip(groups, actors, strict=True):
        loss = ClipPPOLoss(actor_network=actor, critic_network=critics[g],
                           clip_epsilon=cfg.clip_epsilon, entropy_bonus=cfg.entropy_coef > 0,
                           entropy_coeff=cfg.entropy_coef if cfg.entropy_coef > 0 else None,
                           critic_coeff=cfg.critic_coef, normalize_advantage=True,
                           normalize_advantage_exclude_dims=(-2,),  # per agent
                           log_explained_variance=False)
        loss.set_keys(reward=(g, "reward"), action=(g, "action"), done=(g, "done"),
                      terminated=(g, "terminated"), advantage=(g, "advantage"),
                      value_target=(g, "value_target"), value=(g, "state_value"),
                      sample_log_prob=(g, "log_prob"))
        loss.make_value_estimator(ValueEstimators.GAE, gamma=cfg.gamma, lmbda=cfg.lmbda,
                                  deactivate_vmap=True)  # QuantumLayer checks inputs
        losses[g] = loss

    params, seen = [], set()
    for loss in losses.values():
        for p in loss.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    policy = TensorDictSequential(*actors)
    try:  # torchrl >= 0.11 (SyncDataCollector is deprecated there, removed in 0.13)
        from torchrl.collectors import Collector
    except ImportError:  # pragma: no cover - older torchrl
        from torchrl.collectors import SyncDataCollector as Collector
    collector = Collector(env, policy, frames_per_batch=cfg.frames_per_batch,
                          total_frames=cfg.total_steps, device="cpu")
    history: list[dict[str, Any]] = []
    steps = 0
    generator = torch.Generator().manual_seed(cfg.seed)
    try:
        for batch in collector:
            batch = batch.reshape(-1)
            steps += int(batch.numel())
            for loss in losses.values():
                with torch.no_grad():
                    loss.value_estimator(batch, params=loss.critic_network_params,
                                         target_params=loss.target_critic_network_params)
            n = int(batch.numel())
            sums: dict[str, float] = {"loss_objective": 0.0, "loss_critic": 0.0}
            n_updates = 0
            for _ in range(cfg.n_epochs):
                perm = torch.randperm(n, generator=generator)
                for start in range(0, n - cfg.minibatch_size + 1, cfg.minibatch_size):
                    mb = batch[perm[start:start + cfg.minibatch_size]]
                    total = torch.zeros(())
                    for loss in losses.values():
                        vals = loss(mb)
                        total = total + vals["loss_objective"] + vals["loss_critic"]
                        if "loss_entropy" in vals.keys():
                            total = total + vals["loss_entropy"]
                        sums["loss_objective"] += float(vals["loss_objective"].detach())
                        sums["loss_critic"] += float(vals["loss_critic"].detach())
                    optimizer.zero_grad()
                    total.backward()
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    optimizer.step()
                    n_updates += 1
            collector.update_policy_weights_()
            entry = {"steps": steps,
                     "reward": {g: float(batch.get(("next", g, "reward")).mean())
                                for g in groups},
                     "loss_objective": sums["loss_objective"] / max(n_updates, 1),
                     "loss_critic": sums["loss_critic"] / max(n_updates, 1)}
            history.append(entry)
            if callback is not None and callback(entry, agents) is False:
                break
    finally:
        collector.shutdown()
        env.close()
    agents.eval()
    return CTDEResult(agents=agents, history=history)


# ----------------------------------------------------------------------------- evaluation


def evaluate_ctde(agents: CTDEAgents, n_episodes: int = 10, seed: int = 0, *,
                  deterministic: bool = True, torch_threads: int | None = 1,
                  **env_overrides: Any) -> MarlEvaluation:
    """Run ``n_episodes`` seeded episodes (``reset(seed=seed + i)``) with decentralised actions.

    Args:
        agents: Trained agents.
        n_episodes: Episodes to run.
        seed: Seed of episode 0 (stochastic actions also seed torch's generator with it).
        deterministic: Deterministic (default) or sampled actions.
        torch_threads: torch's intra-op threads while playing (see :func:`train_ctde`).
        **env_overrides: Env config fields on top of the run's (e.g. ``max_cycles``); they
            must keep the agents and spaces the networks were built for.

    Returns:
        Per-agent, per-role and team returns (:class:`qdrl_bench.marl_eval.MarlEvaluation`).

    Raises:
        ValueError: If ``n_episodes`` is not a positive integer.
    """
    check_int("n_episodes", n_episodes, low=1)
    threads = TorchThreads(torch_threads)
    env = agents.make_env(**env_overrides)
    try:
        with threads, torch.random.fork_rng():
            torch.manual_seed(int(seed))
            return play_episodes(env, lambda obs: agents.predict(obs, deterministic),
                                 episodes=int(n_episodes), seed=int(seed))
    finally:
        env.close()
