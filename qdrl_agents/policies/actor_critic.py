"""`QuantumActorCriticPolicy`: a quantum actor (and optionally critic) for SB3's PPO and A2C.

SB3 composes ``features_extractor -> mlp_extractor -> (action_net, value_net)``. This policy
replaces only the ``mlp_extractor`` (``_build_mlp_extractor``) with a
`QuantumActorCriticExtractor`, which satisfies SB3's extractor interface
(`ActorCriticExtractor`). The action distributions and ``value_net`` stay SB3's.

Actor head (``output_head``):

* ``"direct"``: the circuit reads one parity observable per action-distribution input
  (qubits split into contiguous groups, e.g. ``Z0Z1`` and ``Z2Z3`` for CartPole's two actions,
  as in Jerbi et al. 2021 and Skolik et al. 2022), times a trainable output scaling. These are
  the logits (Discrete, MultiDiscrete, MultiBinary) or the Gaussian means (Box) themselves:
  ``action_net`` is the identity, and the actor's only classical parameters are the input and
  output scalings (plus ``log_std`` for Box).
* ``"linear"``: Pauli-Z on every qubit, then SB3's linear ``action_net``.
* ``"auto"`` (default): ``"direct"`` when the distribution needs at most ``n_qubits`` inputs,
  else ``"linear"``. The direct head keeps the policy quantum end to end and is what the
  CartPole learning benchmark (``qdrl_bench/perf/cartpole_learning.py``) solves with.

Observations wider than ``n_qubits`` raise ``ValueError`` at construction unless ``encoder=``
is given: the policy does not add a classical encoder on its own, so the quantum / classical
split of a model (``parameter_counts()``) is always the one asked for.

A user's circuit (``circuit=``, ``input_params=``, ``weight_params=``, ``observables=``, or a
callable of the observation width; see `QuantumNetConfig`) replaces the built-in one: with one
observable per distribution input the observables are the logits / means (direct head), else
SB3's linear ``action_net`` reads them. ``critic="quantum"`` gives the critic the same circuit,
with its own weights.

Critic (``critic``): ``"mlp"`` (default; ``critic_net_arch`` hidden layers, tanh) or
``"quantum"`` (its own circuit, Pauli-Z on every qubit, output scaling, then SB3's
``value_net``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import StateDependentNoiseDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from qdrl_agents.policies._common import (
    CRITIC_KINDS,
    OUTPUT_HEADS,
    OutputHead,
    QuantumNetConfig,
    QuantumPolicyMixin,
    build_quantum_net,
    check_choice,
    check_observation_space,
    choose_direct,
    learning_rates,
)

__all__ = ["ActorCriticExtractor", "QuantumActorCriticExtractor", "QuantumActorCriticPolicy"]


@runtime_checkable
class ActorCriticExtractor(Protocol):
    """The interface SB3's ``ActorCriticPolicy`` expects of its ``mlp_extractor``.

    Attributes:
        latent_dim_pi: Width of the actor latent (input of ``action_net``).
        latent_dim_vf: Width of the critic latent (input of ``value_net``).
    """

    latent_dim_pi: int
    latent_dim_vf: int

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actor and critic latents from shared features."""
        ...

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """Actor latent (used alone when the features extractor is not shared)."""
        ...

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """Critic latent (used alone when the features extractor is not shared)."""
        ...


class QuantumActorCriticExtractor(nn.Module):
    """Actor and critic networks in place of SB3's ``MlpExtractor``.

    Args:
        actor: The actor network (quantum), with an ``out_features`` attribute.
        critic: The critic network (quantum or MLP).
        latent_dim_vf: Output width of ``critic``.
    """

    def __init__(self, actor: nn.Module, critic: nn.Module, latent_dim_vf: int) -> None:
        super().__init__()
        self.actor = actor
        self.critic = critic
        self.latent_dim_pi = int(actor.out_features)
        self.latent_dim_vf = int(latent_dim_vf)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute both latents.

        Args:
            features: Flattened observations ``(B, features_dim)``.

        Returns:
            ``(latent_pi, latent_vf)``.
        """
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """Actor latent.

        Args:
            features: ``(B, features_dim)``.

        Returns:
            ``(B, latent_dim_pi)``.
        """
        return self.actor(features)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """Critic latent.

        Args:
            features: ``(B, features_dim)``.

        Returns:
            ``(B, latent_dim_vf)``.
        """
        return self.critic(features)


def _mlp(in_features: int, hidden: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    last = in_features
    for h in hidden:
        layers += [nn.Linear(last, int(h)), activation()]
        last = int(h)
    return nn.Sequential(*layers)


def _action_dist_inputs(action_space: spaces.Space) -> int:
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(sum(action_space.nvec))
    if isinstance(action_space, spaces.MultiBinary):
        return int(action_space.n)
    if isinstance(action_space, spaces.Box):
        return int(torch.tensor(action_space.shape).prod())
    raise ValueError(
        "QuantumActorCriticPolicy takes Box, Discrete, MultiDiscrete or MultiBinary actions, "
        f"got {type(action_space).__name__}"
    )


class QuantumActorCriticPolicy(QuantumPolicyMixin, ActorCriticPolicy):
    """Actor-critic policy with a quantum actor, for PPO and A2C.

    Use as ``PPO(QuantumActorCriticPolicy, env, policy_kwargs=dict(n_qubits=4, n_layers=5))``,
    or with your own circuit, ``policy_kwargs=dict(circuit=qc, input_params=...,
    weight_params=..., observables=...)`` (`QuantumNetConfig`). Observations must be flat (Box,
    Discrete, MultiDiscrete, MultiBinary), or Dict with
    ``features_extractor_class=CombinedExtractor``; wider than ``n_qubits`` (or than a user
    circuit's inputs) they need ``encoder=`` (else ``ValueError`` at construction).

    Args:
        observation_space: Observation space.
        action_space: Action space (Box, Discrete, MultiDiscrete, MultiBinary).
        lr_schedule: Learning-rate schedule (from the algorithm).
        net_arch: Ignored by the quantum actor; accepted for SB3 compatibility. Use
            ``critic_net_arch`` for the MLP critic.
        activation_fn: Activation of the MLP critic.
        ortho_init: SB3's orthogonal initialisation of the classical layers.
        use_sde: gSDE exploration (Box actions, ``output_head="linear"`` only).
        log_std_init: Initial log standard deviation (Box actions).
        full_std: gSDE option.
        use_expln: gSDE option.
        squash_output: gSDE option.
        features_extractor_class: SB3 features extractor (default: flatten).
        features_extractor_kwargs: Its keyword arguments.
        share_features_extractor: Share the features extractor between actor and critic.
        normalize_images: SB3 image normalisation.
        optimizer_class: Torch optimiser class.
        optimizer_kwargs: Its extra arguments.
        critic: ``"mlp"`` (default) or ``"quantum"``.
        critic_net_arch: Hidden widths of the MLP critic (default ``[64, 64]``).
        output_head: ``"auto"`` (default), ``"direct"`` or ``"linear"`` (module docstring).
        lr_input_scaling: Initial learning rate of the input scalings (None: the algorithm's).
        lr_weights: Initial learning rate of the circuit weights (None: the algorithm's).
        lr_output_scaling: Initial learning rate of the output scalings (None: the algorithm's).
        lr_classical: Initial learning rate of all classical parameters (None: the algorithm's).
        **quantum_kwargs: Fields of `QuantumNetConfig` (``n_qubits``, ``n_layers``,
            ``entanglement``, ``rotation``, ``executor``, ``executor_kwargs``, ``encoder``,
            ``circuit``, ``input_params``, ``weight_params``, ``observables``, ...).

    The per-group learning rates keep their ratio to the algorithm's learning rate through
    its schedule (see `make_grouped_optimizer`).

    Raises:
        ValueError: For an observation or action space the policy cannot take, an invalid
            option, or features wider than the qubits without an encoder.
        TypeError: For an unknown keyword.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = True,
        normalize_images: bool = True,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        *,
        critic: str = "mlp",
        critic_net_arch: Sequence[int] = (64, 64),
        output_head: OutputHead = "auto",
        lr_input_scaling: float | None = None,
        lr_weights: float | None = None,
        lr_output_scaling: float | None = None,
        lr_classical: float | None = None,
        **quantum_kwargs: Any,
    ) -> None:
        who = type(self).__name__
        check_observation_space(observation_space, features_extractor_class, who)
        _action_dist_inputs(action_space)
        check_choice("critic", critic, CRITIC_KINDS)
        check_choice("output_head", output_head, OUTPUT_HEADS)
        self.quantum_config = QuantumNetConfig.from_kwargs(quantum_kwargs, who)
        self.critic_kind = critic
        self.critic_net_arch = [int(h) for h in critic_net_arch]
        self.output_head = output_head
        self.group_lrs = learning_rates(
            lr_input_scaling, lr_weights, lr_output_scaling, lr_classical
        )
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            activation_fn=activation_fn,
            ortho_init=ortho_init,
            use_sde=use_sde,
            log_std_init=log_std_init,
            full_std=full_std,
            use_expln=use_expln,
            squash_output=squash_output,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            share_features_extractor=share_features_extractor,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )

    def _build_mlp_extractor(self) -> None:
        who = type(self).__name__
        cfg = self.quantum_config
        n_act = _action_dist_inputs(self.action_space)
        self.direct_head = choose_direct(
            cfg, self.output_head, n_act, self.features_dim, f"{who} actor"
        )
        if self.direct_head and isinstance(self.action_dist, StateDependentNoiseDistribution):
            if self.output_head == "direct":
                raise ValueError("use_sde=True needs output_head='linear' (or 'auto')")
            self.direct_head = False
        actor = build_quantum_net(
            cfg,
            self.features_dim,
            who=f"{who} actor",
            n_direct_outputs=n_act if self.direct_head else None,
        )
        if self.critic_kind == "quantum":
            critic: nn.Module = build_quantum_net(cfg, self.features_dim, who=f"{who} critic")
            latent_vf = int(critic.out_features)
        else:
            critic = _mlp(self.features_dim, self.critic_net_arch, self.activation_fn)
            latent_vf = self.critic_net_arch[-1] if self.critic_net_arch else self.features_dim
        self.mlp_extractor = QuantumActorCriticExtractor(actor, critic, latent_vf).to(self.device)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        if self.direct_head:
            # The scaled parity expectations are the distribution's inputs themselves.
            self.action_net = nn.Identity()
        self.optimizer = self._grouped_optimizer(self, lr_schedule(1))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            critic=self.critic_kind,
            critic_net_arch=list(self.critic_net_arch),
            output_head=self.output_head,
            **self._lr_constructor_parameters(),
            share_features_extractor=self.share_features_extractor,
            **self.quantum_config.as_kwargs(),
        )
        return data

    def _circuit_module(self) -> nn.Module:
        """The actor network."""
        return self.mlp_extractor.actor

    def _counted_modules(self) -> list[nn.Module]:
        """The whole policy.

        Features extractor, actor, critic, ``action_net``, ``value_net`` and ``log_std``.
        """
        return [self]
