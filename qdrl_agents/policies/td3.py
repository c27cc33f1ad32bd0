"""`QuantumTD3Policy`: a quantum deterministic actor for SB3's TD3 and DDPG.

The actor's action is ``tanh`` of the scaled circuit outputs (SB3 rescales ``[-1, 1]`` to the
action bounds). With ``output_head="direct"`` (the default when ``action_dim <= n_qubits``)
each action dimension reads one parity group of qubits, times a trainable output scaling; with
``"linear"`` Pauli-Z on every qubit feeds a linear layer (a user's ``circuit=``: its
observables, direct when there is one per action dimension). The critic is SB3's MLP
(``critic="mlp"``, default, sized by ``net_arch``) or quantum (``critic="quantum"``, see
`QuantumContinuousCritic`).
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.td3.policies import Actor, TD3Policy
from torch import nn

from qdrl_agents.policies._common import (
    OUTPUT_HEADS,
    OutputHead,
    QuantumNetConfig,
    build_readout_net,
    check_choice,
)
from qdrl_agents.policies.continuous import QuantumOffPolicyMixin

__all__ = ["QuantumTD3Actor", "QuantumTD3Policy"]


class QuantumTD3Actor(Actor):
    """SB3 TD3 ``Actor`` whose ``mu`` is ``tanh(quantum network)``.

    Args:
        observation_space: Observation space.
        action_space: Box action space.
        net_arch: Unused (the actor is quantum); kept for SB3's constructor contract.
        features_extractor: SB3 features extractor.
        features_dim: Its output width.
        activation_fn: Unused; kept for SB3's constructor contract.
        normalize_images: SB3 image normalisation.
        quantum_config: The quantum configuration.
        output_head: ``"auto"``, ``"direct"`` or ``"linear"``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: nn.Module,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        *,
        quantum_config: QuantumNetConfig,
        output_head: OutputHead = "auto",
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            [],
            features_extractor,
            features_dim,
            activation_fn=activation_fn,
            normalize_images=normalize_images,
        )
        self.net_arch = list(net_arch)
        self.quantum_config = quantum_config
        self.output_head = output_head
        net = build_readout_net(
            quantum_config,
            features_dim,
            get_action_dim(action_space),
            output_head,
            who="QuantumTD3Policy actor",
        )
        self.mu = nn.Sequential(net, nn.Tanh())

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(quantum_config=self.quantum_config, output_head=self.output_head)
        return data


class QuantumTD3Policy(QuantumOffPolicyMixin, TD3Policy):
    """TD3 / DDPG policy with a quantum actor (critic MLP or quantum).

    Use as ``TD3(QuantumTD3Policy, env, policy_kwargs=dict(n_layers=3, critic="mlp"))``.

    Args:
        observation_space: Flat observation space.
        action_space: Box action space.
        lr_schedule: Learning-rate schedule (from the algorithm).
        net_arch: Hidden widths of the MLP critic (SB3 default ``[400, 300]``); the actor is
            quantum and ignores it.
        activation_fn: Activation of the MLP critic.
        features_extractor_class: SB3 features extractor (default: flatten).
        features_extractor_kwargs: Its keyword arguments.
        normalize_images: SB3 image normalisation.
        optimizer_class: Torch optimiser class.
        optimizer_kwargs: Its extra arguments.
        n_critics: Number of critics (DDPG sets 1).
        share_features_extractor: Share the features extractor between actor and critic.
        critic: ``"mlp"`` (default) or ``"quantum"``.
        critic_n_qubits: Qubits of a quantum critic (None: one per observation feature and
            action dimension).
        output_head: Actor head, ``"auto"`` (default), ``"direct"`` or ``"linear"``.
        lr_input_scaling: Initial learning rate of the input scalings (None: the algorithm's).
        lr_weights: Initial learning rate of the circuit weights.
        lr_output_scaling: Initial learning rate of the output scalings.
        lr_classical: Initial learning rate of the classical parameters.
        **quantum_kwargs: Fields of `QuantumNetConfig`.

    Raises:
        ValueError: For a space the policy cannot take or an invalid option.
        TypeError: For an unknown keyword.
    """

    _actor_class = QuantumTD3Actor
    _actor_options = ("output_head",)
    # As SB3's TD3: a shared features extractor is trained by both optimisers.
    _critic_trains_shared_extractor = True

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
        share_features_extractor: bool = False,
        *,
        critic: str = "mlp",
        critic_n_qubits: int | None = None,
        output_head: OutputHead = "auto",
        lr_input_scaling: float | None = None,
        lr_weights: float | None = None,
        lr_output_scaling: float | None = None,
        lr_classical: float | None = None,
        **quantum_kwargs: Any,
    ) -> None:
        check_choice("output_head", output_head, OUTPUT_HEADS)
        self.output_head = output_head
        self._init_quantum(
            observation_space,
            action_space,
            features_extractor_class,
            critic,
            critic_n_qubits,
            (lr_input_scaling, lr_weights, lr_output_scaling, lr_classical),
            quantum_kwargs,
        )
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            activation_fn=activation_fn,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            n_critics=n_critics,
            share_features_extractor=share_features_extractor,
        )
