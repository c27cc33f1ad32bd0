"""VectorEnvAdapter: a Gymnasium vector env stepped by SB3 exactly as DummyVecEnv steps envs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

import qdrl_envs
from qdrl_agents import VectorEnvAdapter


def assert_same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping), where
        assert sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)


def run_both(dummy: DummyVecEnv, adapted: VectorEnvAdapter, *, steps: int, seed: int,
             info: bool = True) -> int:
    """Step both with the same actions; assert equal results; return the episode ends."""
    dummy.seed(seed)
    adapted.seed(seed)
    np.testing.assert_array_equal(adapted.reset(), dummy.reset(), strict=True)
    assert_same(adapted.reset_infos, dummy.reset_infos, "reset_infos")
    space = dummy.action_space
    space.seed(seed)
    ends = 0
    for t in range(steps):
        actions = np.stack([space.sample() for _ in range(dummy.num_envs)])
        d_obs, d_rew, d_done, d_info = dummy.step(actions)
        a_obs, a_rew, a_done, a_info = adapted.step(actions)
        where = f"step {t}"
        np.testing.assert_array_equal(a_obs, d_obs, err_msg=where, strict=True)
        np.testing.assert_array_equal(a_rew, d_rew, err_msg=where, strict=True)
        np.testing.assert_array_equal(a_done, d_done, err_msg=where, strict=True)
        if info:
            assert_same(a_info, d_info, f"{where} infos")
            assert_same(adapted.reset_infos, dummy.reset_infos, f"{where} reset_infos")
        else:
            for i in range(dummy.num_envs):
                for key in ("terminal_observation", "TimeLimit.truncated"):
                    assert (key in a_info[i]) == (key in d_info[i]), where
                    if key in d_info[i]:
                        assert_same(a_info[i][key], d_info[i][key], f"{where}[{i}][{key}]")
        ends += int(d_done.sum())
    return ends


@pytest.mark.parametrize("env_id", qdrl_envs.ENV_IDS, ids=lambda s: s.split("/")[1])
def test_twin_matches_dummy_vec_env_row_for_row(env_id: str) -> None:
    horizon, n = 7, 3
    dummy = DummyVecEnv([lambda: gym.make(env_id, max_episode_steps=horizon)] * n)
    adapted = VectorEnvAdapter(gym.make_vec(env_id, num_envs=n,
                                            vectorization_mode="vector_entry_point",
                                            autoreset_mode=AutoresetMode.SAME_STEP,
                                            max_episode_steps=horizon))
    ends = run_both(dummy, adapted, steps=3 * horizon + 2, seed=5)
    assert ends == 3 * n  # every row crossed three episode ends (truncations)
    # A second seeded reset restarts the same episodes, and only its seeds are used once.
    adapted.seed(5)
    first = adapted.reset()
    second = adapted.reset()
    dummy.seed(5)
    np.testing.assert_array_equal(first, dummy.reset())
    np.testing.assert_array_equal(second, dummy.reset())


def test_info_keys_limits_rows_to_sb3_keys() -> None:
    env_id = "qdrl/SecrecyPowerControl-v1"
    dummy = DummyVecEnv([lambda: gym.make(env_id, max_episode_steps=4)] * 2)
    adapted = VectorEnvAdapter(gym.make_vec(env_id, num_envs=2,
                                            vectorization_mode="vector_entry_point",
                                            autoreset_mode=AutoresetMode.SAME_STEP,
                                            max_episode_steps=4), info_keys=())
    assert run_both(dummy, adapted, steps=9, seed=0, info=False) == 4
    adapted.step(np.zeros((2, 2), dtype=np.float32))
    _, _, _, infos = adapted.step(np.zeros((2, 2), dtype=np.float32))
    assert infos == [{"TimeLimit.truncated": False}] * 2


def _cartpoles(n: int, mode: AutoresetMode) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: gym.make("CartPole-v1", max_episode_steps=30)] * n,
                         autoreset_mode=mode)


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.DISABLED],
                         ids=lambda m: m.name)
def test_sync_vector_env_matches_dummy_vec_env(mode: AutoresetMode) -> None:
    # CartPole terminates (pole falls) and truncates (30 steps): both kinds of episode end.
    dummy = DummyVecEnv([lambda: gym.make("CartPole-v1", max_episode_steps=30)] * 4)
    adapted = VectorEnvAdapter(_cartpoles(4, mode))
    assert run_both(dummy, adapted, steps=80, seed=3) > 4


def test_next_step_autoreset_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"NEXT_STEP.*SAME_STEP"):
        VectorEnvAdapter(_cartpoles(2, AutoresetMode.NEXT_STEP))
    with pytest.raises(TypeError, match="DummyVecEnv"):
        VectorEnvAdapter(gym.make("CartPole-v1"))  # type: ignore[arg-type]
    adapted = VectorEnvAdapter(_cartpoles(2, AutoresetMode.SAME_STEP))
    adapted.reset()
    with pytest.raises(RuntimeError, match="without step_async"):
        adapted.step_wait()
    twin = VectorEnvAdapter(gym.make_vec("qdrl/SecrecyPowerControl-v1", num_envs=2,
                                         vectorization_mode="vector_entry_point",
                                         autoreset_mode=AutoresetMode.SAME_STEP))
    twin.reset()
    with pytest.raises(ValueError, match=r"NaN|nan|finite"):  # the env's own check, unchanged
        twin.step(np.array([[0.5, np.nan], [0.5, 0.5]], dtype=np.float32))


def test_attributes_and_methods() -> None:
    sync = VectorEnvAdapter(_cartpoles(3, AutoresetMode.SAME_STEP))
    assert sync.get_attr("render_mode") == [None] * 3
    sync.set_attr("custom", 4, indices=[1])
    assert sync.get_attr("custom", indices=1) == [4]
    assert sync.env_method("get_wrapper_attr", "custom", indices=[1]) == [4]
    assert sync.env_is_wrapped(gym.wrappers.TimeLimit) == [True] * 3
    twin = VectorEnvAdapter(gym.make_vec("qdrl/DTMigration-v0", num_envs=2,
                                         vectorization_mode="vector_entry_point",
                                         autoreset_mode=AutoresetMode.SAME_STEP))
    assert twin.get_attr("config")[0] == twin.get_attr("config")[1]
    assert twin.env_is_wrapped(gym.wrappers.TimeLimit) == [False, False]
    with pytest.raises(AttributeError, match="no sub-env objects"):
        twin.env_method("render")
    with pytest.raises(AttributeError, match="no sub-env objects"):
        twin.set_attr("x", 1)
    twin.set_options({"a": 1})
    twin.set_options([{"a": 1}, {"a": 2}])
    with pytest.raises(ValueError, match="different options"):
        twin.reset()


def test_rgb_frames_through_sync_vector_env() -> None:
    venv = SyncVectorEnv([lambda: gym.make("qdrl/SecrecyPowerControl-v1",
                                           render_mode="rgb_array")] * 2,
                         autoreset_mode=AutoresetMode.SAME_STEP)
    adapted = VectorEnvAdapter(venv)
    adapted.reset()
    frames = adapted.get_images()
    assert len(frames) == 2 and frames[0].ndim == 3
    assert adapted.render(mode="rgb_array").shape[2] == 3


def test_trains_under_vec_monitor_and_vec_normalize_and_evaluates() -> None:
    venv = VecNormalize(VecMonitor(VectorEnvAdapter(
        gym.make_vec("qdrl/DTSyncAoI-v0", num_envs=8, vectorization_mode="vector_entry_point",
                     autoreset_mode=AutoresetMode.SAME_STEP,
                     max_episode_steps=16), info_keys=())), gamma=0.9)
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=64, n_epochs=1, seed=0,
                device="cpu").learn(256)
    assert model.num_timesteps == 256
    assert len(model.ep_info_buffer) == 8 * 2  # VecMonitor saw every finished episode
    assert venv.obs_rms.count > 256  # the statistics were updated from every row
    venv.training = False
    returns, lengths = evaluate_policy(model, venv, n_eval_episodes=8, return_episode_rewards=True)
    assert lengths == [16] * 8 and all(np.isfinite(returns))
