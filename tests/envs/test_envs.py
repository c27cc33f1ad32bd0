"""Conformance suite: every registered id, and non-default configs of each, through the same checks.

After Gymnasium's ``tests/envs/test_envs.py``: the checkers of gymnasium and stable-baselines3,
seeded determinism, the vector twin against single envs, long random rollouts inside the
observation space, bad actions and config keys, render modes, the registered figures, a tiny PPO
run and every baseline's ``predict``. What is particular to one environment (closed forms,
physics, baseline margins, fuzzed configs) stays in its own ``test_<module>.py``.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import qdrl_envs
from qdrl_envs.baselines import baseline_names, make_baseline
from qdrl_envs.dt_migration import DTMigrationEnv, DTMigrationVectorEnv
from qdrl_envs.dt_sync import _BLOCK_SLOTS, DTSyncAoIEnv, DTSyncAoIVectorEnv
from qdrl_envs.mobile_transmitter import MobileTransmitterEnv, MobileTransmitterVectorEnv
from qdrl_envs.secrecy import (
    _MAX_BLOCK_STEPS,
    SecrecyPowerControlEnv,
    SecrecyPowerControlVectorEnv,
)
from qdrl_envs.semantic_slicing import SemanticSlicingEnv, SemanticSlicingVectorEnv
from tests.envs.helpers import (
    CONFIGS,
    assert_rgb_frame,
    assert_rollout_in_space,
    assert_trajectories_equal,
    assert_vector_twin_matches_single,
    base_action,
    invalid_actions,
    render_after_step,
    rollout,
    short_id,
)


@dataclass(frozen=True)
class Figures:
    """What an id is registered as, and its default spaces."""

    env_cls: type[gym.Env]
    vector_cls: type[gym.vector.VectorEnv]
    max_episode_steps: int
    action_space: spaces.Space
    obs_shape: tuple[int, ...]
    vector_horizon: int
    """Episode length of the vector-twin check; its run lasts ``vector_steps`` steps."""
    vector_steps: int


ENVS: dict[str, Figures] = {
    "qdrl/SecrecyPowerControl-v1": Figures(
        SecrecyPowerControlEnv, SecrecyPowerControlVectorEnv, 100,
        spaces.Box(-1.0, 1.0, (2,), np.float32), (8,),
        # Episodes longer than the core's channel blocks (at most _MAX_BLOCK_STEPS slots), so
        # each uses a block up and draws the next; two episode ends.
        vector_horizon=_MAX_BLOCK_STEPS + 12, vector_steps=2 * (_MAX_BLOCK_STEPS + 12) + 10),
    "qdrl/DTSyncAoI-v0": Figures(
        DTSyncAoIEnv, DTSyncAoIVectorEnv, 200, spaces.Discrete(15), (30,),
        # Two episode ends, and episodes longer than the blocks of randomness drawn ahead.
        vector_horizon=_BLOCK_SLOTS + 3, vector_steps=2 * (_BLOCK_SLOTS + 3) + 10),
    "qdrl/DTMigration-v0": Figures(
        DTMigrationEnv, DTMigrationVectorEnv, 100, spaces.MultiDiscrete([5] * 6), (76,),
        vector_horizon=7, vector_steps=16),
    "qdrl/SemanticSlicing-v1": Figures(
        SemanticSlicingEnv, SemanticSlicingVectorEnv, 200,
        spaces.Box(-1.0, 1.0, (3,), np.float32), (15,),
        vector_horizon=9, vector_steps=20),
    "qdrl/MobileTransmitter-v1": Figures(
        MobileTransmitterEnv, MobileTransmitterVectorEnv, 100,
        spaces.Box(-1.0, 1.0, (6,), np.float32), (14,),
        vector_horizon=30, vector_steps=70),
}

IDS = [pytest.param(env_id, id=short_id(env_id)) for env_id in qdrl_envs.ENV_IDS]
"""Every registered id, readable."""

ID_CONFIGS = [pytest.param(env_id, kwargs, id=f"{short_id(env_id)}-{name}")
              for env_id in qdrl_envs.ENV_IDS for name, kwargs in CONFIGS[env_id].items()]
"""Every registered id with each config of :data:`helpers.CONFIGS` (the default first)."""

ID_TWO_CONFIGS = [pytest.param(env_id, kwargs, id=f"{short_id(env_id)}-{name}")
                  for env_id in qdrl_envs.ENV_IDS
                  for name, kwargs in list(CONFIGS[env_id].items())[:2]]
"""Every registered id with its default and its first non-default config (costlier checks)."""


def test_every_registered_id_is_in_the_suite() -> None:
    assert set(ENVS) == set(CONFIGS) == set(qdrl_envs.ENV_IDS)
    assert all(next(iter(configs.items())) == ("default", {}) for configs in CONFIGS.values())


# ------------------------------------------------------------------------- API conformance


@pytest.mark.parametrize(("env_id", "kwargs"), ID_CONFIGS)
def test_gymnasium_check_env(env_id: str, kwargs: dict[str, Any]) -> None:
    # The default config also goes through gymnasium's render checks: metadata, and a frame of
    # every declared render mode (made anew from the spec). Rendering in "ansi" here keeps it to
    # one costly rgb_array frame.
    render = {} if kwargs else {"render_mode": "ansi"}
    env = gym.make(env_id, **kwargs, **render)
    gym_check_env(env.unwrapped, skip_render_check=bool(kwargs))


# SB3 recommends a symmetric [-1, 1] Box; the paper's powers and shares live in [0, 1].
@pytest.mark.filterwarnings("ignore:We recommend you to use a symmetric")
@pytest.mark.parametrize(("env_id", "kwargs"), ID_CONFIGS)
def test_sb3_check_env(env_id: str, kwargs: dict[str, Any]) -> None:
    sb3_check_env(gym.make(env_id, **kwargs), warn=True)


@pytest.mark.parametrize("env_id", IDS)
def test_registered_figures(env_id: str) -> None:
    fig = ENVS[env_id]
    env = gym.make(env_id)
    assert env.spec.max_episode_steps == fig.max_episode_steps
    assert type(env.unwrapped) is fig.env_cls
    assert env.action_space == fig.action_space
    assert env.observation_space.shape == fig.obs_shape
    assert env.observation_space.dtype == np.float32
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and np.isfinite(reward)
    venv = gym.make_vec(env_id, num_envs=4, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP)
    assert type(venv.unwrapped) is fig.vector_cls and venv.num_envs == 4
    assert venv.unwrapped.max_episode_steps == fig.max_episode_steps
    assert venv.single_action_space == fig.action_space
    assert venv.single_observation_space == env.observation_space
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (4, *fig.obs_shape)
    obs, rewards, *_ = venv.step(venv.action_space.sample())
    assert venv.observation_space.contains(obs) and np.all(np.isfinite(rewards))


@pytest.mark.parametrize("env_id", IDS)
def test_step_before_reset_raises(env_id: str) -> None:
    with pytest.raises(RuntimeError, match="reset"):
        gym.make(env_id).unwrapped.step(ENVS[env_id].action_space.sample())
    venv = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP)
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(venv.action_space.sample())


@pytest.mark.parametrize("env_id", IDS)
def test_returned_observations_and_infos_are_never_written_later(env_id: str) -> None:
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    kept = [(obs, obs.copy())]
    for _ in range(3):
        obs, _, _, _, _ = env.step(env.action_space.sample())
        kept.append((obs, obs.copy()))
    env.reset()
    for returned, snapshot in kept:
        np.testing.assert_array_equal(returned, snapshot)
    venv = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP)
    vobs, _ = venv.reset(seed=0)
    vobs_copy = vobs.copy()
    _, _, _, _, vinfo = venv.step(venv.action_space.sample())
    vinfo_copy = {k: np.copy(v) for k, v in vinfo.items() if isinstance(v, np.ndarray)}
    venv.step(venv.action_space.sample())
    np.testing.assert_array_equal(vobs, vobs_copy)
    for key, value in vinfo_copy.items():
        np.testing.assert_array_equal(vinfo[key], value, err_msg=key)


# ------------------------------------------------------------------------- determinism, twin


@pytest.mark.parametrize(("env_id", "kwargs"), ID_CONFIGS)
def test_seeded_determinism(env_id: str, kwargs: dict[str, Any]) -> None:
    steps = 50
    a = rollout(gym.make(env_id, **kwargs), seed=7, steps=steps)
    b = rollout(gym.make(env_id, **kwargs), seed=7, steps=steps)
    assert_trajectories_equal(a, b)  # observations, rewards, flags and every info entry
    c = rollout(gym.make(env_id, **kwargs), seed=8, steps=0)
    assert not np.array_equal(a[0][0], c[0][0])  # the seed matters from the first observation


def test_trajectory_comparison_sees_one_ulp_and_dtype() -> None:
    a = rollout(gym.make("qdrl/DTSyncAoI-v0"), seed=0, steps=5)
    b = rollout(gym.make("qdrl/DTSyncAoI-v0"), seed=0, steps=5)
    assert_trajectories_equal(a, b)
    obs, reward, term, trunc, info = b[3]
    b[3] = (obs, np.nextafter(reward, np.inf), term, trunc, info)
    with pytest.raises(AssertionError, match="record 3"):
        assert_trajectories_equal(a, b)
    b[3] = (obs.astype(np.float64), reward, term, trunc, info)
    with pytest.raises(AssertionError, match="dtypes differ"):
        assert_trajectories_equal(a, b)



@pytest.mark.parametrize(("env_id", "kwargs"), ID_CONFIGS)
def test_vector_twin_matches_single_envs_across_episode_ends(env_id: str,
                                                             kwargs: dict[str, Any]) -> None:
    fig = ENVS[env_id]
    ends = assert_vector_twin_matches_single(env_id, kwargs, horizon=fig.vector_horizon,
                                             steps=fig.vector_steps)
    assert ends >= 2 * 3  # every sub-env crossed at least two episode ends


# ------------------------------------------------------------------------- robustness, bad input


@pytest.mark.parametrize(("env_id", "kwargs"), ID_TWO_CONFIGS)
def test_long_random_rollout_stays_in_space_with_finite_rewards(env_id: str,
                                                                kwargs: dict[str, Any]) -> None:
    horizon = ENVS[env_id].max_episode_steps  # the registered one: whole episodes
    venv = gym.make_vec(env_id, num_envs=8, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
    assert_rollout_in_space(venv, seed=3, steps=horizon + 20)  # on past an episode end


@pytest.mark.parametrize(("env_id", "name", "action", "match"), [
    pytest.param(env_id, name, action, match, id=f"{short_id(env_id)}-{name}")
    for env_id in qdrl_envs.ENV_IDS
    for name, (action, match) in invalid_actions(ENVS[env_id].action_space).items()])
def test_bad_actions_raise_value_error(env_id: str, name: str, action: Any, match: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


@pytest.mark.parametrize("copier", [copy.deepcopy, lambda e: pickle.loads(pickle.dumps(e))],
                         ids=["deepcopy", "pickle"])
@pytest.mark.parametrize("env_id", IDS)
def test_a_copy_is_an_independent_env_that_behaves_the_same(env_id: str, copier) -> None:
    # A copy made mid-episode: the same future from the same state, and later seeded resets
    # (reset info and renders included) its own, not the original's. DTSyncAoI's core held
    # views of its state blocks that deepcopy turned into stale copies.
    original = ENVS[env_id].env_cls(render_mode="ansi")
    original.reset(seed=1)
    original.step(original.action_space.sample())
    twin = copier(original)
    assert_trajectories_equal(rollout(original, 7, 12, action_seed=5),
                              rollout(twin, 7, 12, action_seed=5))
    assert original.render() == twin.render()
    frozen = twin.render()
    original.reset(seed=3)
    original.step(original.action_space.sample())
    assert twin.render() == frozen  # the copy shares no state with the original


@pytest.mark.parametrize("env_id", IDS)
def test_the_bad_actions_spoil_a_valid_one(env_id: str) -> None:
    # So each ValueError above is due to the one spoilt entry, not to the rest of the action.
    env = gym.make(env_id)
    env.reset(seed=0)
    space = env.action_space
    action = 0 if isinstance(space, spaces.Discrete) else base_action(space)
    assert space.contains(action)
    obs, reward, *_ = env.step(action)
    assert env.observation_space.contains(obs) and np.isfinite(reward)


@pytest.mark.parametrize("env_id", IDS)
def test_vector_env_rejects_bad_action_batches(env_id: str) -> None:
    venv = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP)
    venv.reset(seed=0)
    batch = venv.action_space.sample()
    with pytest.raises(ValueError, match="batched"):
        venv.step(batch[:2])
    bad = batch.astype(np.float64)
    bad.reshape(3, -1)[1, 0] = np.nan  # one entry of sub-env 1
    with pytest.raises(ValueError, match="NaN"):
        venv.step(bad)


@pytest.mark.parametrize("env_id", IDS)
def test_unknown_config_key_raises_value_error(env_id: str) -> None:
    with pytest.raises(ValueError, match=r"unknown.*no_such_field"):
        gym.make(env_id, no_such_field=1)
    with pytest.raises(ValueError, match=r"unknown.*no_such_field"):
        gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point",
                     autoreset_mode=AutoresetMode.SAME_STEP,
                     no_such_field=1)


# ------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("env_id", IDS)
def test_render_modes_return_the_right_types(env_id: str) -> None:
    text = render_after_step(env_id, "ansi")
    assert isinstance(text, str) and text.strip()
    assert_rgb_frame(render_after_step(env_id, "rgb_array"))
    env = gym.make(env_id)
    env.reset(seed=0)
    assert env.render() is None  # no render_mode, no rendering
    with pytest.raises(ValueError, match="render_mode"):  # gym.make would wrap it instead
        ENVS[env_id].env_cls(render_mode="human")


# ------------------------------------------------------------------------- learning, baselines


@pytest.mark.parametrize("env_id", IDS)
def test_tiny_ppo_learns_on_the_env(env_id: str) -> None:
    from stable_baselines3 import PPO

    env = gym.make(env_id)
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action), action


@pytest.mark.parametrize(("env_id", "kwargs", "name"), [
    pytest.param(*p.values, name, id=f"{p.id}-{name}")
    for p in ID_TWO_CONFIGS for name in baseline_names(p.values[0])])
def test_baseline_predict_returns_valid_actions(env_id: str, kwargs: dict[str, Any],
                                                name: str) -> None:
    env = gym.make(env_id, **kwargs)
    policy = make_baseline(name, env, seed=0)
    obs, _ = env.reset(seed=0)
    for t in range(3):
        action, state = policy.predict(obs, episode_start=t == 0)
        assert state is None
        assert env.action_space.contains(action), action
        obs, *_ = env.step(action)
    batch = np.stack([obs, obs])
    if policy.needs_state:  # an oracle reads the state of its one env
        with pytest.raises(ValueError, match="batch"):
            policy.predict(batch)
    else:
        actions, _ = policy.predict(batch)
        assert actions.shape == (2, *env.action_space.shape)
        assert all(env.action_space.contains(a) for a in actions)
