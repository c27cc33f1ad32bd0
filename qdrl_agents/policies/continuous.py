"""Shared parts of the off-policy continuous-control policies (TD3/DDPG, SAC)."""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from qdrl_agents.policies._common import (
    QuantumNetConfig,
    build_quantum_net,
    check_choice,
    check_observation_space,
    count_parameters,
    first_circuit,
    learning_rates,
    make_grouped_optimizer,
)

__all__ = ["QuantumContinuousCritic"]


class QuantumContinuousCritic(ContinuousCritic):
    """SB3 ``ContinuousCritic`` whose Q-networks are quantum.

    Each of the ``n_critics`` Q-networks is its own circuit on ``concat(features, action)``
    (Pauli-Z on every qubit, trainable output scaling) followed by a classical linear map to
    one Q-value. Unless ``quantum_config.n_qubits`` is set, the circuit has one qubit per input.

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
        self.quantum_config = quantum_config
        in_features = features_dim + get_action_dim(action_space)
        self.q_networks = []
        for idx in range(n_critics):
            q_net = build_quantum_net(
                quantum_config, in_features, who=f"quantum critic {idx}", head_outputs=1
            )
            self.add_module(f"qf{idx}", q_net)
            self.q_networks.append(q_net)


class QuantumOffPolicyMixin:
    """Quantum configuration, grouped optimisers and reporting for TD3 and SAC policies."""

    actor: BasePolicy
    critic: ContinuousCritic
    critic_kwargs: dict[str, Any]
    optimizer_class: type[torch.optim.Optimizer]
    optimizer_kwargs: dict[str, Any]
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
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"{who} takes Box actions, got {type(action_space).__name__}")
        check_choice("critic", critic, ("mlp", "quantum"))
        if critic_n_qubits is not None and (
            isinstance(critic_n_qubits, bool)
            or not isinstance(critic_n_qubits, int)
            or critic_n_qubits < 1
        ):
            raise ValueError(
                f"critic_n_qubits must be a positive int or None, got {critic_n_qubits}"
            )
        self.quantum_config = QuantumNetConfig.from_kwargs(quantum_kwargs, who)
        self.critic_kind = critic
        self.critic_n_qubits = critic_n_qubits
        self.group_lrs = learning_rates(*lrs)

    def _critic_config(self) -> QuantumNetConfig:
        import dataclasses

        return dataclasses.replace(self.quantum_config, n_qubits=self.critic_n_qubits)

    def _make_quantum_critic(self, critic_kwargs: dict[str, Any]) -> ContinuousCritic:
        return QuantumContinuousCritic(**critic_kwargs, quantum_config=self._critic_config()).to(
            self.device  # type: ignore[attr-defined]
        )

    def _regroup_optimizers(self, lr_schedule: Schedule, exclude_shared_extractor: bool) -> None:
        base_lr = lr_schedule(1)
        self.actor.optimizer = make_grouped_optimizer(
            self.actor, self.optimizer_class, base_lr, self.optimizer_kwargs, self.group_lrs
        )
        critic_params = [
            p
            for name, p in self.critic.named_parameters()
            if not (
                exclude_shared_extractor
                and self.share_features_extractor
                and "features_extractor" in name
            )
        ]
        self.critic.optimizer = make_grouped_optimizer(
            self.critic,
            self.optimizer_class,
            base_lr,
            self.optimizer_kwargs,
            self.group_lrs,
            parameters=critic_params,
        )

    def _quantum_constructor_parameters(self) -> dict[str, Any]:
        return dict(
            critic=self.critic_kind,
            critic_n_qubits=self.critic_n_qubits,
            lr_input_scaling=self.group_lrs["input_scaling"],
            lr_weights=self.group_lrs["weights"],
            lr_output_scaling=self.group_lrs["output_scaling"],
            lr_classical=self.group_lrs["classical"],
            share_features_extractor=self.share_features_extractor,
            **self.quantum_config.as_kwargs(),
        )

    @property
    def circuit(self) -> Any:
        """The actor's Qiskit ``QuantumCircuit``."""
        return first_circuit(self.actor)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameter counts of actor and critic (target networks are copies).

        Returns:
            ``{"quantum": circuit weights, "classical": everything else}``.
        """
        return count_parameters([self.actor, self.critic])
