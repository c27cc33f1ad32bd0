"""The shared core machinery (qdrl_envs.core), exercised through the secrecy environment."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from qdrl_envs.core import CoreEnv, Uniforms, draw
from qdrl_envs.secrecy import SecrecyConfig, SecrecyPowerControlEnv, SecrecyPowerControlVectorEnv

SAME = AutoresetMode.SAME_STEP  # these tests read final_obs / every step's info


def test_draw_calls_each_generator_once_and_stacks():
    rngs = [np.random.default_rng(s) for s in (1, 2, 3)]
    out = draw(rngs, lambda g: g.standard_normal((2, 2)))
    assert out.shape == (3, 2, 2)
    for s, block in zip((1, 2, 3), out, strict=True):
        np.testing.assert_array_equal(block, np.random.default_rng(s).standard_normal((2, 2)))
    single = draw([np.random.default_rng(1)], lambda g: g.random(3))
    assert single.shape == (1, 3)


def test_uniforms_match_each_generators_own_stream_and_state():
    seeds = [5, 6, 7, 8]
    rngs = [np.random.default_rng(s) for s in seeds]
    refs = [np.random.default_rng(s) for s in seeds]
    source = Uniforms(4)
    np.testing.assert_array_equal(source.take(rngs, None, 3),
                                  np.stack([g.random(3) for g in refs]))
    # A subset (a vector env resetting some instances), then the single-instance path.
    np.testing.assert_array_equal(source.take([rngs[1], rngs[3]], np.array([1, 3]), 5),
                                  np.stack([refs[1].random(5), refs[3].random(5)]))
    np.testing.assert_array_equal(source.take([rngs[2]], np.array([2]), 2),
                                  refs[2].random(2)[None])
    # The generators are left exactly where on-demand draws would leave them.
    for g, ref in zip(rngs, refs, strict=True):
        assert g.random() == ref.random()


def test_exponential_columns_follow_the_uniforms_in_each_generators_stream():
    rngs = [np.random.default_rng(s) for s in (11, 12, 13)]
    got = Uniforms(3).take(rngs, None, 5, exponential=2)
    for s, row in zip((11, 12, 13), got, strict=True):
        ref = np.random.default_rng(s)
        np.testing.assert_array_equal(row, np.concatenate([ref.random(3),
                                                           ref.standard_exponential(2)]))
    single = Uniforms(1).take([np.random.default_rng(11)], None, 5, exponential=2)
    np.testing.assert_array_equal(single, got[:1])


def test_uniforms_follow_a_replaced_generator_and_survive_pickling():
    rngs = [np.random.default_rng(s) for s in (1, 2)]
    source = Uniforms(2)
    source.take(rngs, None, 4)
    rngs[1] = np.random.default_rng(99)  # a seeded reset hands the instance a new generator
    got = source.take(rngs, None, 4)
    ref = np.random.default_rng(1)
    ref.random(4)
    np.testing.assert_array_equal(got, np.stack([ref.random(4),
                                                 np.random.default_rng(99).random(4)]))
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone.take([np.random.default_rng(3)] * 2, None, 1),
                                  np.random.default_rng(3).random(2).reshape(2, 1))


def test_unbatch_takes_instance_zero_and_recurses():
    info = {"a": np.array([1.5]), "b": np.array([[1, 2]]), "terms": {"c": np.array([3.0])}}
    out = CoreEnv._unbatch(info)
    assert out["a"] == 1.5 and isinstance(out["a"], float)
    np.testing.assert_array_equal(out["b"], [1, 2])
    assert out["terms"] == {"c": 3.0}


def test_config_as_instance_mapping_or_kwargs():
    cfg = SecrecyConfig(n_aps=3)
    assert SecrecyPowerControlEnv(cfg).config == cfg
    assert SecrecyPowerControlEnv({"n_aps": 3}).config == cfg
    assert SecrecyPowerControlEnv(cfg, eve_csi="statistical").config.eve_csi == "statistical"
    venv = SecrecyPowerControlVectorEnv(num_envs=2, config=cfg, n_aps=4)
    assert venv.config.n_aps == 4
    with pytest.raises(TypeError, match="config must be"):
        SecrecyPowerControlEnv(config=3)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_envs": 0}, ValueError, "num_envs"),
    ({"num_envs": 2.0}, ValueError, "num_envs"),
    ({"max_episode_steps": 0}, ValueError, "max_episode_steps"),
    ({"render_mode": "human"}, ValueError, "render_mode must be None or one of"),
    ({"bogus": 1}, ValueError, "unknown"),
], ids=["zero-envs", "float-envs", "zero-steps", "render", "unknown-field"])
def test_vector_env_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        SecrecyPowerControlVectorEnv(**kwargs)


def test_single_env_rejects_unknown_render_mode():
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        SecrecyPowerControlEnv(render_mode="human")


def test_step_before_reset_raises_in_both():
    with pytest.raises(RuntimeError, match="reset"):
        SecrecyPowerControlVectorEnv(num_envs=2).step(np.ones((2, 2)))
    with pytest.raises(RuntimeError, match="reset"):
        SecrecyPowerControlEnv().step(np.ones(2))


def test_spaces_are_batched_and_metadata_says_the_autoreset_mode():
    assert SecrecyPowerControlVectorEnv(num_envs=2).metadata["autoreset_mode"] \
        == AutoresetMode.NEXT_STEP  # Gymnasium's default
    venv = SecrecyPowerControlVectorEnv(num_envs=5, autoreset_mode=AutoresetMode.SAME_STEP)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert type(venv).metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP  # per instance
    assert venv.single_action_space == gym.spaces.Box(-1, 1, (2,), np.float32)
    assert venv.action_space.shape == (5, 2)
    assert venv.observation_space.shape == (5, 8)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (5, 8) and isinstance(info, dict)
    assert venv.observation_space.contains(obs)


def test_seed_int_list_and_none():
    n = 3
    venv = SecrecyPowerControlVectorEnv(num_envs=n)
    obs_int, _ = venv.reset(seed=10)
    obs_list, _ = venv.reset(seed=[10, 11, 12])
    np.testing.assert_array_equal(obs_int, obs_list)
    for i, s in enumerate([10, 11, 12]):
        np.testing.assert_array_equal(obs_list[i], SecrecyPowerControlEnv().reset(seed=s)[0])
    mixed, _ = venv.reset(seed=[12, 11, 10])
    np.testing.assert_array_equal(mixed[0], obs_list[2])
    with pytest.raises(ValueError, match="seed list must have num_envs=3 entries, got 2"):
        venv.reset(seed=[1, 2])
    unseeded, _ = venv.reset()
    assert venv.observation_space.contains(unseeded)


def test_truncation_and_same_step_autoreset_with_final_obs():
    horizon = 3
    venv = SecrecyPowerControlVectorEnv(num_envs=2, max_episode_steps=horizon, autoreset_mode=SAME)
    single = [SecrecyPowerControlEnv() for _ in range(2)]
    venv.reset(seed=5)
    for i, env in enumerate(single):
        env.reset(seed=5 + i)
    act = np.full((2, 2), 0.5)
    for t in range(2 * horizon):
        obs, rew, term, trunc, info = venv.step(act)
        assert not term.any()
        last = (t + 1) % horizon == 0
        assert trunc.tolist() == [last, last]
        for i, env in enumerate(single):
            s_obs, s_rew, *_ = env.step(act[i])
            assert rew[i] == s_rew
            if last:
                # The episode's last observation is in final_obs; obs starts the next one.
                assert info["_final_obs"][i] and info["_final_info"][i]
                np.testing.assert_array_equal(info["final_obs"][i], s_obs)
                assert info["final_info"]["secrecy_rate"][i] == s_rew
                s_obs, _ = env.reset()
            np.testing.assert_array_equal(obs[i], s_obs)
        if not last:
            assert "final_obs" not in info


def test_no_time_limit_never_truncates():
    venv = SecrecyPowerControlVectorEnv(num_envs=2, max_episode_steps=None)
    venv.reset(seed=0)
    for _ in range(150):
        *_, trunc, _ = venv.step(np.ones((2, 2)))
        assert not trunc.any()


def test_returned_observations_are_not_overwritten_by_later_steps():
    venv = SecrecyPowerControlVectorEnv(num_envs=2)
    env = SecrecyPowerControlEnv()
    v0, _ = venv.reset(seed=0)
    s0, _ = env.reset(seed=0)
    v_keep, s_keep = v0.copy(), s0.copy()
    for _ in range(2 * venv.core.block_steps + 5):  # across internal channel blocks
        venv.step(np.ones((2, 2)))
        env.step(np.ones(2))
    np.testing.assert_array_equal(v0, v_keep)
    np.testing.assert_array_equal(s0, s_keep)


def test_make_vec_passes_kwargs_and_the_registered_horizon():
    venv = gym.make_vec("qdrl/SecrecyPowerControl-v1", num_envs=2,
                        vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP, n_aps=3)
    assert venv.unwrapped.max_episode_steps == 100
    assert venv.unwrapped.config.n_aps == 3
    assert venv.single_action_space.shape == (3,)


@pytest.mark.parametrize("rho", [0.0, 0.7], ids=["iid", "gauss-markov"])
def test_instances_out_of_phase_still_match_single_envs(rho):
    # Instance 1 restarts its episode early (as a terminating env would), so the instances'
    # channel blocks run out at different steps: each must still equal its own single env.
    from qdrl_envs.secrecy import SecrecyCore

    n, seeds = 3, [21, 22, 23]
    cfg = SecrecyConfig(fading_rho=rho)
    core = SecrecyCore(cfg, n)
    rngs = [np.random.default_rng(s) for s in seeds]
    core.reset(rngs, np.arange(n))
    singles = []
    for s in seeds:
        env = SecrecyPowerControlEnv(cfg)
        env.reset(seed=0)
        env.np_random = np.random.default_rng(s)  # the same generator stream as instance i
        env.core.reset([env.np_random], np.array([0]))
        singles.append(env)
    steps = 2 * core.block_steps + 20  # blocks run out at different steps per instance
    actions = np.random.default_rng(0).random((steps, n, 2))
    for t in range(steps):
        if t == 7:
            core.reset([rngs[1]], np.array([1]))
            singles[1].core.reset([singles[1].np_random], np.array([0]))
        result = core.step(actions[t], rngs)
        for i, env in enumerate(singles):
            s_res = env.core.step(actions[t, i][None], [env.np_random])
            assert result.reward[i] == s_res.reward[0]
            np.testing.assert_array_equal(core.observe()[i], env.core.observe()[0])
