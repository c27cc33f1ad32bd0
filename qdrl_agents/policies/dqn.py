"""`QuantumDQNPolicy`: a quantum Q-network for SB3's DQN.

The Q-network is a circuit with trainable input scaling and, since Q-values exceed
``[-1, 1]``, trainable output scaling and bias per action (Skolik et al. 2022). With
``output_head="direct"`` (the default when ``n_actions <= n_qubits``) each action's Q-value is
a scaled parity expectation of its group of qubits (``Z0Z1`` and ``Z2Z3`` on CartPole); with
``"linear"`` Pauli-Z on every qubit feeds a classical linear layer. With a user's ``circuit=``
(`QuantumNetConfig`) its observables are the Q-values when there is one per action, else a
linear layer reads them. The target network is a second instance with its own (identical after
sync) parameters.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn

from qdrl_agents.policies._common import (
    OUTPUT_HEADS,
    OutputHead,
    QuantumNetConfig,
    QuantumPolicyMixin,
    build_readout_net,
    check_action_space,
    check_choice,
    check_observation_space,
    learning_rates,
)

__all__ = ["QuantumDQNPolicy", "QuantumQNetwork"]


class QuantumQNetwork(QNetwork):
    """SB3 ``QNetwork`` whose ``q_net`` is a quantum network.

    Args:
        observation_space: Observation space.
        action_space: Discrete action space.
        features_extractor: SB3 features extractor.
        features_dim: Its output width.
        net_arch: Unused (the Q-network is quantum); kept for SB3's constructor contract.
        activation_fn: Unused; kept for SB3's constructor contract.
        normalize_images: SB3 image normalisation.
        quantum_config: The quantum configuration.
        output_head: ``"auto"``, ``"direct"`` or ``"linear"``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        *,
        quantum_config: QuantumNetConfig,
        output_head: OutputHead = "auto",
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor,
            features_dim,
            net_arch=[],
            activation_fn=activation_fn,
            normalize_images=normalize_images,
        )
        self.net_arch = list(net_arch) if net_arch is not None else []
        self.quantum_config = quantum_config
        self.output_head = output_head
        self.q_net = build_readout_net(
            quantum_config,
            features_dim,
            int(action_space.n),
            output_head,
            who="QuantumDQNPolicy Q-network",
            bias_if_direct=True,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(quantum_config=self.quantum_config, output_head=self.output_head)
        return data


class QuantumDQNPolicy(QuantumPolicyMixin, DQNPolicy):
    """DQN policy with a quantum Q-network.

    Use as ``DQN(QuantumDQNPolicy, env, policy_kwargs=dict(n_qubits=4, n_layers=3))``.

    Args:
        observation_space: Flat observation space.
        action_space: Discrete action space.
        lr_schedule: Learning-rate schedule (from the algorithm).
        net_arch: Unused by the quantum Q-network; accepted for SB3 compatibility.
        activation_fn: Unused; accepted for SB3 compatibility.
        features_extractor_class: SB3 features extractor (default: flatten).
        features_extractor_kwargs: Its keyword arguments.
        normalize_images: SB3 image normalisation.
        optimizer_class: Torch optimiser class.
        optimizer_kwargs: Its extra arguments.
        output_head: ``"auto"`` (default), ``"direct"`` or ``"linear"`` (module docstring).
        lr_input_scaling: Initial learning rate of the input scalings (None: the algorithm's).
        lr_weights: Initial learning rate of the circuit weights.
        lr_output_scaling: Initial learning rate of the output scaling and bias.
        lr_classical: Initial learning rate of the classical parameters.
        **quantum_kwargs: Fields of `QuantumNetConfig`.

    Raises:
        ValueError: For a space the policy cannot take or an invalid option.
        TypeError: For an unknown keyword.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        *,
        output_head: OutputHead = "auto",
        lr_input_scaling: float | None = None,
        lr_weights: float | None = None,
        lr_output_scaling: float | None = None,
        lr_classical: float | None = None,
        **quantum_kwargs: Any,
    ) -> None:
        who = type(self).__name__
        check_observation_space(observation_space, features_extractor_class, who)
        check_action_space(action_space, spaces.Discrete, who)
        check_choice("output_head", output_head, OUTPUT_HEADS)
        self.quantum_config = QuantumNetConfig.from_kwargs(quantum_kwargs, who)
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
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )

    def make_q_net(self) -> QNetwork:
        """Build a quantum Q-network (called for the online and the target network).

        Returns:
            A `QuantumQNetwork` with its own features extractor.
        """
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return QuantumQNetwork(
            **net_args, quantum_config=self.quantum_config, output_head=self.output_head
        ).to(self.device)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        self.optimizer = self._grouped_optimizer(self.q_net, lr_schedule(1))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            output_head=self.output_head,
            **self._lr_constructor_parameters(),
            **self.quantum_config.as_kwargs(),
        )
        return data

    def _circuit_module(self) -> nn.Module:
        """The online Q-network."""
        return self.q_net

    def _counted_modules(self) -> list[nn.Module]:
        """The online Q-network (the target is a copy)."""
        return [self.q_net]
