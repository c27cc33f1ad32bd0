"""qdrl_envs: Gymnasium environments for 6G network control.

Importing the package registers every environment under the ``qdrl/`` namespace (idempotently:
importing twice, or calling :func:`register_envs` again, is harmless)::

    import gymnasium as gym
    import qdrl_envs  # noqa: F401  (registers the ids)

    env = gym.make("qdrl/SecrecyPowerControl-v1", n_aps=3)
    venv = gym.make_vec("qdrl/SecrecyPowerControl-v1", num_envs=1024)  # NumPy-batched twin
    # ... autoresetting as SyncVectorEnv does (NEXT_STEP), or within the step (what SB3 needs):
    venv = gym.make_vec("qdrl/SecrecyPowerControl-v1", num_envs=1024,
                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

Keyword arguments of ``gym.make`` / ``gym.make_vec`` are forwarded to the environment's config
dataclass; unknown or invalid ones raise ``ValueError``.

The multi-agent (PettingZoo) environments have a registry of their own, :mod:`qdrl_envs.marl`
(Gymnasium's holds single-agent envs only)::

    par = qdrl_envs.make_parallel("qdrl/SecrecyJamming-v0", roles=("tx", "tx", "jam"))
    aec = qdrl_envs.make_aec("qdrl/SecrecyJamming-v0")  # the AEC form
    qdrl_envs.MARL_ENV_IDS                               # every multi-agent id
"""

from __future__ import annotations

from dataclasses import dataclass

from gymnasium.envs.registration import register, registry

from qdrl_envs.marl import MARL_ENV_IDS, make_aec, make_parallel

__all__ = ["ENV_IDS", "MARL_ENV_IDS", "EnvEntry", "make_aec", "make_parallel", "register_envs"]

__version__ = "0.1.0"


@dataclass(frozen=True)
class EnvEntry:
    """One registered environment: id, entry points and episode length."""

    id: str
    entry_point: str
    vector_entry_point: str | None
    max_episode_steps: int


_ENTRIES: tuple[EnvEntry, ...] = (
    EnvEntry("qdrl/SecrecyPowerControl-v1", "qdrl_envs.secrecy:SecrecyPowerControlEnv",
             "qdrl_envs.secrecy:SecrecyPowerControlVectorEnv", 100),
    EnvEntry("qdrl/DTSyncAoI-v0", "qdrl_envs.dt_sync:DTSyncAoIEnv",
             "qdrl_envs.dt_sync:DTSyncAoIVectorEnv", 200),
    EnvEntry("qdrl/DTMigration-v0", "qdrl_envs.dt_migration:DTMigrationEnv",
             "qdrl_envs.dt_migration:DTMigrationVectorEnv", 100),
    EnvEntry("qdrl/SemanticSlicing-v1", "qdrl_envs.semantic_slicing:SemanticSlicingEnv",
             "qdrl_envs.semantic_slicing:SemanticSlicingVectorEnv", 200),
    EnvEntry("qdrl/MobileTransmitter-v1", "qdrl_envs.mobile_transmitter:MobileTransmitterEnv",
             "qdrl_envs.mobile_transmitter:MobileTransmitterVectorEnv", 100),
)

ENV_IDS: tuple[str, ...] = tuple(e.id for e in _ENTRIES)
"""Every environment id this package registers."""


def register_envs() -> None:
    """Register every qdrl environment with Gymnasium; ids already registered are left alone."""
    for entry in _ENTRIES:
        if entry.id in registry:
            continue
        register(
            id=entry.id,
            entry_point=entry.entry_point,
            vector_entry_point=entry.vector_entry_point,
            max_episode_steps=entry.max_episode_steps,
        )


register_envs()
