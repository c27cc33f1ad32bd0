"""`QuantumSACPolicy`: a quantum stochastic actor for SB3's SAC.

The actor's latent is the circuit's Pauli-Z expectations on every qubit (a user's circuit,
``circuit=``: its observables), with trainable input and output scaling; SB3's own linear
``mu`` and ``log_std`` layers and its squashed Gaussian distribution follow, unchanged. (A
direct readout would fix the mean but still need a classical ``log_std`` map, so SAC always
uses this quantum -> linear form.) The critic is SB3's MLP (``critic="mlp"``, default) or
quantum (``critic="quantum"``, see `QuantumContinuousCritic`).
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.sac.policies import Actor, SACPolicy
from torch import nn

from qdrl_agents.policies._common import QuantumNetConfig, build_quantum_net, readout_width
from qdrl_agents.policies.continuous import QuantumOffPolicyMixin

__all__ = ["QuantumSACActor", "QuantumSACPolicy"]


class QuantumSACActor(Actor):
    """SB3 SAC ``Actor`` whose ``latent_pi`` is a quantum network.

    Args:
        observation_space: Observation space.
        action_space: Box action space.
        net_arch: Unused (the actor latent is quantum); kept for SB3's constructor contract.
        features_extractor: SB3 features extractor.
        features_dim: Its output width.
        activation_fn: Unused; kept for SB3's constructor contract.
        use_sde: gSDE exploration.
        log_std_init: Initial log standard deviation (gSDE).
        full_std: gSDE option.
        use_expln: gSDE option.
        clip_mean: Clip of the gSDE mean.
        normalize_images: SB3 image normalisation.
        quantum_config: The quantum configuration.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: nn.Module,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        log_std_init: float = -3,
        full_std: bool = True,
        use_expln: bool = False,
        clip_mean: float = 2.0,
        normalize_images: bool = True,
        *,
        quantum_config: QuantumNetConfig,
    ) -> None:
        who = "QuantumSACPolicy actor"
        # SB3 sizes mu and log_std on the latent width: the circuit's n_qubits Z readouts (a
        # user's circuit: its observables).
        latent_dim = readout_width(quantum_config, features_dim, who)
        super().__init__(
            observation_space,
            action_space,
            [],
            features_extractor,
            latent_dim,
            activation_fn=activation_fn,
            use_sde=use_sde,
            log_std_init=log_std_init,
            full_std=full_std,
            use_expln=use_expln,
            clip_mean=clip_mean,
            normalize_images=normalize_images,
        )
        self.features_dim = features_dim
        self.net_arch = list(net_arch)
        self.quantum_config = quantum_config
        self.latent_pi = build_quantum_net(quantum_config, features_dim, who=who)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(quantum_config=self.quantum_config)
        return data


class QuantumSACPolicy(QuantumOffPolicyMixin, SACPolicy):
    """SAC policy with a quantum actor (critic MLP or quantum).

    Use as ``SAC(QuantumSACPolicy, env, policy_kwargs=dict(n_layers=3))``.

    Args:
        observation_space: Flat observation space.
        action_space: Box action space.
        lr_schedule: Learning-rate schedule (from the algorithm).
        net_arch: Hidden widths of the MLP critic (SB3 default ``[256, 256]``); the actor is
            quantum and ignores it.
        activation_fn: Activation of the MLP critic.
        use_sde: gSDE exploration.
        log_std_init: Initial log standard deviation (gSDE).
        use_expln: gSDE option.
        clip_mean: Clip of the gSDE mean.
        features_extractor_class: SB3 features extractor (default: flatten).
        features_extractor_kwargs: Its keyword arguments.
        normalize_images: SB3 image normalisation.
        optimizer_class: Torch optimiser class.
        optimizer_kwargs: Its extra arguments.
        n_critics: Number of critics.
        share_features_extractor: Share the features extractor between actor and critic.
        critic: ``"mlp"`` (default) or ``"quantum"``.
        critic_n_qubits: Qubits of a quantum critic (None: one per observation feature and
            action dimension).
        lr_input_scaling: Initial learning rate of the input scalings (None: the algorithm's).
        lr_weights: Initial learning rate of the circuit weights.
        lr_output_scaling: Initial learning rate of the output scalings.
        lr_classical: Initial learning rate of the classical parameters.
        **quantum_kwargs: Fields of `QuantumNetConfig`.

    Raises:
        ValueError: For a space the policy cannot take or an invalid option.
        TypeError: For an unknown keyword.
    """

    _actor_class = QuantumSACActor
    # As SB3's SAC: a shared features extractor is trained by the actor loss only.
    _critic_trains_shared_extractor = False

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        log_std_init: float = -3,
        use_expln: bool = False,
        clip_mean: float = 2.0,
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
        lr_input_scaling: float | None = None,
        lr_weights: float | None = None,
        lr_output_scaling: float | None = None,
        lr_classical: float | None = None,
        **quantum_kwargs: Any,
    ) -> None:
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
            use_sde=use_sde,
            log_std_init=log_std_init,
            use_expln=use_expln,
            clip_mean=clip_mean,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            n_critics=n_critics,
            share_features_extractor=share_features_extractor,
        )
