"""Shared parts of the off-policy continuous-control policies (TD3/DDPG, SAC)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from qdrl_agents.circuits import is_int
from qdrl_agents.policies._common import (
    CRITIC_KINDS,
    QuantumNetConfig,
    QuantumPolicyMixin,
    build_quantum_net,
    check_action_space,
    check_choice,
    check_observation_space,
    learning_rates,
)

__all__ = ["QuantumContinuousCritic"]


class QuantumContinuousCritic(ContinuousCritic):
    """SB3 ``ContinuousCritic`` whose Q-networks are quantum.

    Each of the ``n_critics`` Q-networks is its own circuit on ``concat(features, action)``
    (Pauli-Z on every qubit, trainable output scaling) followed by a classical linear map to
    one Q-value. Unless ``quantum_config.n_qubits`` is set, the circuit has one qubit per input.
    With a user's ``circuit=`` each Q-network runs that circuit (a callable is called with
    ``features_dim + action_dim``) and the linear map reads its observables.

    Args:
        observation_space: Observation space.
        action_space: Box action space.
        net_arch: Unused (the Q-networks are quantum); kept for SB3's constructor contract.
        features_extractor: SB3 features extractor.
        features_dim: Its output width.
        activation_fn: Unused; kept for SB3's constructor contract.
        normalize_images: SB3 image normalisation.
        n_critics: Number of Q-networks.
        share_features_extractor: Whether the features extractor is the actor's.
        quantum_config: The quantum configuration.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 2,
        share_features_extractor: bool = True,
        *,
        quantum_config: QuantumNetConfig,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            [],
            features_extractor,
            features_dim,
            activation_fn=activation_fn,
            normalize_images=normalize_images,
            n_critics=n_critics,
            share_features_extractor=share_features_extractor,
        )
        # SB3's ContinuousCritic keeps none of these; _get_constructor_parameters needs them.
        self.net_arch = list(net_arch)
        self.features_dim = features_dim
        self.activation_fn = activation_fn
        self.quantum_config = quantum_config
        in_features = features_dim + get_action_dim(action_space)
        self.q_networks = []
        for idx in range(n_critics):
            q_net = build_quantum_net(
                quantum_config, in_features, who=f"quantum critic {idx}", head_outputs=1
            )
            self.add_module(f"qf{idx}", q_net)
            self.q_networks.append(q_net)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            features_extractor=self.features_extractor,
            features_dim=self.features_dim,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            share_features_extractor=self.share_features_extractor,
            quantum_config=self.quantum_config,
        )
        return data


class QuantumOffPolicyMixin(QuantumPolicyMixin):
    """What TD3 and SAC policies share: quantum actor, MLP or quantum critic, grouped optimisers.

    Listed before SB3's policy class (``class QuantumTD3Policy(QuantumOffPolicyMixin,
    TD3Policy)``); ``make_actor``, ``make_critic``, ``_build`` and
    ``_get_constructor_parameters`` extend SB3's. The policy calls `_init_quantum` before SB3's
    constructor and sets the class attributes below.

    Attributes:
        _actor_class: The quantum actor ``make_actor`` builds (it takes ``quantum_config`` and
            the `_actor_options` as keywords).
        _actor_options: Names of policy attributes passed to the actor and saved with the
            policy (TD3: ``("output_head",)``).
        _critic_trains_shared_extractor: Whether the critic's optimiser also trains a features
            extractor shared with the actor (as in SB3: True for TD3, False for SAC, whose
            shared extractor is trained by the actor loss only).
    """

    _actor_class: ClassVar[type[BasePolicy]]
    _actor_options: ClassVar[tuple[str, ...]] = ()
    _critic_trains_shared_extractor: ClassVar[bool]

    actor: BasePolicy
    critic: ContinuousCritic
    actor_kwargs: dict[str, Any]
    critic_kwargs: dict[str, Any]
    share_features_extractor: bool

    def _init_quantum(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        features_extractor_class: type[BaseFeaturesExtractor],
        critic: str,
        critic_n_qubits: int | None,
        lrs: tuple[float | None, float | None, float | None, float | None],
        quantum_kwargs: dict[str, Any],
    ) -> None:
        who = type(self).__name__
        check_observation_space(observation_space, features_extractor_class, who)
        check_action_space(action_space, spaces.Box, who)
        check_choice("critic", critic, CRITIC_KINDS)
        if critic_n_qubits is not None:
            if not is_int(critic_n_qubits) or critic_n_qubits < 1:
                raise ValueError(
                    f"critic_n_qubits must be a positive int or None, got {critic_n_qubits}"
                )
            critic_n_qubits = int(critic_n_qubits)
        self.quantum_config = QuantumNetConfig.from_kwargs(quantum_kwargs, who)
        if critic_n_qubits is not None and self.quantum_config.circuit is not None:
            raise ValueError(
                f"critic_n_qubits={critic_n_qubits} sizes the built-in critic circuit, but "
                "circuit= brings your own: a quantum critic uses it too, on features + action "
                "(a callable circuit= is called with that width; a fixed one needs encoder=)"
            )
        self.critic_kind = critic
        self.critic_n_qubits = critic_n_qubits
        self.group_lrs = learning_rates(*lrs)

    def _actor_option_values(self) -> dict[str, Any]:
        """The `_actor_options` as keywords, e.g. ``{"output_head": "auto"}`` for TD3."""
        return {name: getattr(self, name) for name in self._actor_options}

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> BasePolicy:
        """Build the quantum actor (online, and target for TD3).

        Args:
            features_extractor: A features extractor to share, or None for a new one.

        Returns:
            An ``_actor_class`` (`QuantumTD3Actor`, `QuantumSACActor`).
        """
        actor_kwargs = self._update_features_extractor(  # type: ignore[attr-defined]
            self.actor_kwargs, features_extractor
        )
        return self._actor_class(
            **actor_kwargs, quantum_config=self.quantum_config, **self._actor_option_values()
        ).to(self.device)  # type: ignore[attr-defined]

    def make_critic(
        self, features_extractor: BaseFeaturesExtractor | None = None
    ) -> ContinuousCritic:
        """Build the critic (online or target): SB3's MLP or a `QuantumContinuousCritic`.

        Args:
            features_extractor: A features extractor to share, or None for a new one.

        Returns:
            The critic.
        """
        if self.critic_kind == "mlp":
            return super().make_critic(features_extractor)  # type: ignore[misc]
        critic_kwargs = self._update_features_extractor(  # type: ignore[attr-defined]
            self.critic_kwargs, features_extractor
        )
        critic_config = dataclasses.replace(self.quantum_config, n_qubits=self.critic_n_qubits)
        return QuantumContinuousCritic(**critic_kwargs, quantum_config=critic_config).to(
            self.device  # type: ignore[attr-defined]
        )

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        # Replace SB3's optimisers by grouped ones (per-group learning rates).
        base_lr = lr_schedule(1)
        self.actor.optimizer = self._grouped_optimizer(self.actor, base_lr)
        critic_params = [
            p
            for name, p in self.critic.named_parameters()
            if self._critic_trains_shared_extractor
            or not (self.share_features_extractor and "features_extractor" in name)
        ]
        self.critic.optimizer = self._grouped_optimizer(
            self.critic, base_lr, parameters=critic_params
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data.update(
            **self._actor_option_values(),
            critic=self.critic_kind,
            critic_n_qubits=self.critic_n_qubits,
            **self._lr_constructor_parameters(),
            share_features_extractor=self.share_features_extractor,
            **self.quantum_config.as_kwargs(),
        )
        return data

    def _circuit_module(self) -> nn.Module:
        """The actor."""
        return self.actor

    def _counted_modules(self) -> list[nn.Module]:
        """Actor and critic (target networks are copies)."""
        return [self.actor, self.critic]
