"""Tests of the qdrl/SecrecyPowerControl-v1 baselines (docs/design.md §3.1, §4).

That every baseline's ``predict`` gives valid actions (and how oracles refuse batches) is checked
for every id in test_envs.py.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import qdrl_envs  # noqa: F401  (registers the ids)
from qdrl_envs.baselines import baseline_names, make_baseline
from qdrl_envs.baselines.secrecy import BASELINES, FullPowerPolicy, SecrecyOraclePolicy
from qdrl_envs.secrecy import SecrecyPowerControlVectorEnv, secrecy_rates
from tests.envs.helpers import baseline_returns

ENV_ID = "qdrl/SecrecyPowerControl-v1"


def _secrecy_sum(core, gains, p):
    m = core.n_aps
    return secrecy_rates(gains[:, :m], gains[:, m:], p, core.p_max_w, core.noise_w)[2].sum(-1)


def test_registry_lists_the_three_baselines():
    assert set(BASELINES) == {"random", "full-power", "oracle"}
    assert baseline_names(ENV_ID) == ["full-power", "oracle", "random"]
    env = gym.make(ENV_ID)
    assert isinstance(make_baseline("oracle", env), SecrecyOraclePolicy)
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("water-filling", env)


def test_full_power_is_all_ones():
    env = gym.make(ENV_ID, n_aps=4)
    action, _ = FullPowerPolicy(env).predict(env.observation_space.sample())
    np.testing.assert_array_equal(action, np.ones(4, dtype=np.float32))


@pytest.mark.parametrize("m", [2, 3, 4, 5], ids=lambda m: f"M{m}")
def test_oracle_beats_every_other_baseline_on_every_step(m):
    env = gym.make(ENV_ID, n_aps=m)
    core = env.unwrapped.core
    policies = {name: make_baseline(name, env, seed=1) for name in BASELINES}
    rng = np.random.default_rng(m)
    obs, _ = env.reset(seed=m)
    for _ in range(12):
        gains = core.gains[0].copy()
        actions = {name: pol.predict(obs)[0] for name, pol in policies.items()}
        values = {name: float(_secrecy_sum(core, gains, core.coefficients(a)))
                  for name, a in actions.items()}
        # ... and every one of many random power vectors, linear and log-uniform.
        probes = np.concatenate([rng.random((2000, m)), 10.0 ** (-5.0 * rng.random((2000, m)))])
        received = core.coefficients(core.action_of(probes))  # what the env can be asked for
        best_probe = float(_secrecy_sum(core, gains, received).max())
        others = max(v for k, v in values.items() if k != "oracle")
        assert values["oracle"] >= max(others, best_probe) - 1e-9
        obs, reward, *_ = env.step(actions["oracle"])
        assert reward == pytest.approx(values["oracle"], rel=1e-12)


def test_oracle_matches_a_fine_exhaustive_grid_for_two_aps():
    env = gym.make(ENV_ID)
    core = env.unwrapped.core
    oracle = SecrecyOraclePolicy(env)
    axis = np.concatenate(([0.0], np.logspace(-6, 0, 300), np.linspace(0, 1, 101)))
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    env.reset(seed=4)
    for _ in range(5):
        gains = core.gains[0].copy()
        p, value = oracle.solve(gains)
        assert value == pytest.approx(float(_secrecy_sum(core, gains, p)))
        received = core.coefficients(core.action_of(grid))
        assert value >= float(_secrecy_sum(core, gains, received).max()) - 1e-6
        _, reward, *_ = env.step(oracle.best_action(gains))
        assert reward == pytest.approx(value, rel=1e-12)


def test_oracle_reads_true_channels_even_with_statistical_eve_csi():
    env = gym.make(ENV_ID, eve_csi="statistical")
    core = env.unwrapped.core
    oracle = SecrecyOraclePolicy(env)
    obs, _ = env.reset(seed=0)
    action, _ = oracle.predict(obs)
    np.testing.assert_array_equal(action, oracle.best_action(core.gains[0]))


def test_baselines_rank_over_twenty_seeded_episodes():
    env = gym.make(ENV_ID, max_episode_steps=8)
    # One policy (seed 0) per baseline plays the 20 episodes.
    means = {name: float(baseline_returns(env, name, range(1000, 1020), policy_seeds=0).mean())
             for name in ("random", "full-power", "oracle")}
    assert means["oracle"] > 1.2 * max(means["random"], means["full-power"])
    assert means["random"] > 0.0


@pytest.mark.parametrize("kwargs, match", [
    ({"grid_levels": 1}, "grid_levels"), ({"grid_levels": 2.5}, "grid_levels"),
    ({"n_starts": -1}, "n_starts"), ({"max_grid_aps": True}, "max_grid_aps"),
    ({"n_random": "many"}, "n_random"), ({"grid_levels": 3000}, "points"),
], ids=["levels-1", "levels-float", "starts", "grid-aps-bool", "random-str", "too-many"])
def test_oracle_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SecrecyOraclePolicy(gym.make(ENV_ID), **kwargs)


def test_oracle_rejects_other_environments():
    with pytest.raises(ValueError, match="SecrecyPowerControl"):
        SecrecyOraclePolicy(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="SecrecyPowerControl"):
        SecrecyOraclePolicy(SecrecyPowerControlVectorEnv(num_envs=2))
