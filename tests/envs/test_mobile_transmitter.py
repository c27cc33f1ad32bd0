"""Tests of qdrl/MobileTransmitter-v1: rates, flight, baselines, bad input, extremes.

The checks every registered id passes (checkers, determinism, vector twin, ...): test_envs.py.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from hypothesis import given, settings
from hypothesis import strategies as st

import qdrl_envs  # noqa: F401  (registers the ids)
from qdrl_envs import radio
from qdrl_envs.baselines import baseline_names, make_baseline
from qdrl_envs.mobile_transmitter import (
    MobileTransmitterConfig,
    MobileTransmitterEnv,
    MobileTransmitterVectorEnv,
    powers_from_action,
    user_rates,
)
from tests.envs.helpers import (
    assert_rgb_frame,
    assert_rollout_in_space,
    baseline_returns,
    config_or_field_error,
    render_after_step,
)

SAME = AutoresetMode.SAME_STEP  # these tests read final_obs / every step's info

ENV_ID = "qdrl/MobileTransmitter-v1"

def _action(k: int, power: float | list[float], move=(0.0, 0.0)) -> np.ndarray:
    """The action of power coefficients ``c`` in [0, 1] (entries ``2c - 1``) and a move."""
    c = np.broadcast_to(np.asarray(power, dtype=np.float64), (k,))
    return np.concatenate([2.0 * c - 1.0, move]).astype(np.float32)


# ------------------------------------------------------------------ spaces and info


def test_spaces_and_info() -> None:
    env = gym.make(ENV_ID, n_users=5)
    assert env.action_space.shape == (7,)
    assert env.observation_space.shape == (17,)
    _, info = env.reset(seed=0)
    assert info["uav_position_m"].shape == (2,) and info["user_positions_m"].shape == (5, 2)
    _, r, term, trunc, info = env.step(env.action_space.sample())
    assert not term and not trunc
    assert set(info) >= {"rates", "sum_rate", "powers_w", "distance_m", "reward_terms"}
    assert r == pytest.approx(info["sum_rate"]) == pytest.approx(info["rates"].sum())
    assert r == info["reward_terms"]["sum_rate"]


# ------------------------------------------------------------------ physics


@pytest.mark.parametrize("distance_xy,altitude", [(0.0, 50.0), (300.0, 50.0), (10.0, 1.0)],
                         ids=["overhead", "far", "low"])
def test_single_user_fixed_channel_gives_shannon_rate(distance_xy: float, altitude: float
                                                      ) -> None:
    cfg = {"n_users": 1, "area_m": 400.0, "altitude_m": altitude, "p_max_dbm": 23.0,
           "bandwidth_hz": 5e6, "noise_figure_db": 9.0, "carrier_hz": 3.5e9,
           "path_loss_exponent": 3.0, "rate_weight": 2.0}
    env = gym.make(ENV_ID, **cfg)
    env.reset(seed=0, options={"uav_position_m": (50.0, 50.0),
                               "user_positions_m": [[50.0 + distance_xy, 50.0]]})
    _, reward, *_, info = env.step(_action(1, 1.0))
    d = math.hypot(distance_xy, altitude)
    g = float(radio.path_gain(d, 3.5e9, 3.0))
    p = 10 ** ((23.0 - 30.0) / 10)
    noise = float(radio.noise_power_w(5e6, 9.0))
    shannon = math.log2(1.0 + p * g / noise)
    assert info["distance_m"][0] == pytest.approx(d, rel=1e-12)
    assert info["rates"][0] == pytest.approx(shannon, rel=1e-12)
    assert reward == pytest.approx(2.0 * shannon, rel=1e-12)  # w * sum_k R_k
    assert info["powers_w"][0] == pytest.approx(p, rel=1e-12)


def test_multi_user_rates_and_power_budget() -> None:
    k = 3
    env = gym.make(ENV_ID, n_users=k)
    users = np.array([[100.0, 100.0], [200.0, 300.0], [350.0, 20.0]])
    env.reset(seed=0, options={"uav_position_m": (150.0, 150.0), "user_positions_m": users})
    core = env.unwrapped.core
    gains = core.path_gains()[0]
    for coeffs in ([1.0, 1.0, 1.0], [0.2, 0.3, 0.1], [1.0, 0.0, 0.5]):
        action = _action(k, coeffs)
        _, r, *_, info = env.step(action)
        coefficients = 0.5 * (action[:k].astype(np.float64) + 1.0)  # c = (a + 1) / 2
        np.testing.assert_allclose(coefficients, coeffs, atol=1e-7)
        powers = powers_from_action(coefficients, core.p_max_w)
        assert powers.sum() <= core.p_max_w * (1 + 1e-12)
        np.testing.assert_allclose(info["powers_w"], powers, rtol=1e-12)
        expected = user_rates(powers, gains, core.noise_w)
        np.testing.assert_allclose(info["rates"], expected, rtol=1e-12)
        # Orthogonal equal split: R_k = (1/K) log2(1 + P_k g_k K / sigma^2).
        np.testing.assert_allclose(
            expected, np.log2(1 + powers * gains * k / core.noise_w) / k, rtol=1e-12)
        assert r == pytest.approx(expected.sum())
    # Coefficients below the budget are fractions of it; all-ones is the equal split.
    np.testing.assert_allclose(powers_from_action([0.2, 0.3, 0.1], 1.0), [0.2, 0.3, 0.1])
    np.testing.assert_allclose(powers_from_action([1, 1, 1], 3.0), [1.0, 1.0, 1.0])


def test_flight_speed_limit_and_area_clamp() -> None:
    env = gym.make(ENV_ID, area_m=100.0, max_speed_m_s=10.0, slot_s=2.0)
    env.reset(seed=0, options={"uav_position_m": (50.0, 50.0)})
    core = env.unwrapped.core
    env.step(_action(4, 1.0, (1.0, 1.0)))  # diagonal: scaled onto the unit disc
    np.testing.assert_allclose(core.uav[0], 50.0 + 20.0 / math.sqrt(2.0))
    env.step(_action(4, 1.0, (-0.5, 0.0)))
    np.testing.assert_allclose(core.uav[0], [50.0 + 20.0 / math.sqrt(2.0) - 10.0,
                                             50.0 + 20.0 / math.sqrt(2.0)])
    for _ in range(5):  # pushes against the border: stops there
        obs, *_ = env.step(_action(4, 1.0, (1.0, 0.0)))
    assert core.uav[0, 0] == 100.0
    assert obs[4] == 1.0
    # Rates are served before the move: the distances in the step info are the old ones.
    before = core.distance_m[0].copy()
    _, _, _, _, info = env.step(_action(4, 1.0, (-1.0, -1.0)))
    np.testing.assert_array_equal(info["distance_m"], before)


def test_static_users_stay_and_moving_users_stay_inside() -> None:
    env = gym.make(ENV_ID)
    _, info = env.reset(seed=0)
    for _ in range(20):
        env.step(env.action_space.sample())
    np.testing.assert_array_equal(env.unwrapped.core.users[0], info["user_positions_m"])
    env = gym.make(ENV_ID, user_speed_m_s=50.0, area_m=60.0)
    env.reset(seed=0)
    core = env.unwrapped.core
    prev = core.users[0].copy()
    for _ in range(50):
        env.step(env.action_space.sample())
        step = np.linalg.norm(core.users[0] - prev, axis=1)
        assert np.all(step <= 50.0 + 1e-9)
        assert np.all((core.users >= 0.0) & (core.users <= 60.0))
        prev = core.users[0].copy()


def test_fading_powers_are_exponential_and_walk_directions_uniform() -> None:
    n, step = 4000, 5.0
    venv = MobileTransmitterVectorEnv(num_envs=n, n_users=1, rayleigh_fading=True,
                                      user_speed_m_s=step)
    venv.reset(seed=0, options={"uav_position_m": (200.0, 200.0),
                                "user_positions_m": [[150.0, 250.0]]})
    core = venv.core
    snr = core.p_max_w * core.path_gains()[:, 0] / core.noise_w
    users = core.users[:, 0].copy()
    _, _, _, _, info = venv.step(np.tile(_action(1, 1.0), (n, 1)))
    # |h|^2 from R = log2(1 + |h|^2 SNR): Exp(1), mean 1 and P(|h|^2 > 1) = 1/e.
    power = np.expm1(info["rates"][:, 0] * math.log(2.0)) / snr
    assert np.all(power >= 0.0)
    assert abs(power.mean() - 1.0) < 0.1
    assert abs((power > 1.0).mean() - math.exp(-1.0)) < 0.05
    # Every user took one step of exactly ``step`` m, in a uniformly random direction.
    move = (core.users[:, 0] - users) / step
    np.testing.assert_allclose(np.hypot(move[:, 0], move[:, 1]), 1.0, rtol=1e-9)
    assert np.all(np.abs(move.mean(axis=0)) < 0.08)
    assert abs((move[:, 0] ** 2).mean() - 0.5) < 0.05
    assert abs((move[:, 0] * move[:, 1]).mean()) < 0.05


# ------------------------------------------------------------------ baselines


def test_hover_centroid_beats_random_over_20_seeded_episodes() -> None:
    env = gym.make(ENV_ID)
    assert baseline_names(env) == ["hover-centroid", "random"]
    hover, rand = (baseline_returns(env, name, range(20), range(20))
                   for name in ("hover-centroid", "random"))
    assert hover.mean() > 1.15 * rand.mean(), (hover.mean(), rand.mean())
    assert (hover > rand).mean() >= 0.8


def test_hover_centroid_reaches_and_holds_the_centroid() -> None:
    env = gym.make(ENV_ID)
    policy = make_baseline("hover-centroid", env)
    obs, info = env.reset(seed=4)
    centroid = info["user_positions_m"].mean(axis=0)
    for _ in range(40):
        action, _ = policy.predict(obs)
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)
    np.testing.assert_allclose(env.unwrapped.core.uav[0], centroid, atol=1e-3)
    batch, _ = policy.predict(np.stack([obs, obs]))
    assert batch.shape == (2, 6)


# ------------------------------------------------------------------ bad input


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=6,
                max_size=6))
def test_fuzzed_actions_step_or_raise(values: list[float]) -> None:
    env = MobileTransmitterEnv()
    env.reset(seed=0)
    a = np.asarray(values, dtype=np.float32)
    if env.action_space.contains(a):
        obs, r, *_ = env.step(a)
        assert env.observation_space.contains(obs) and math.isfinite(r)
    else:
        with pytest.raises(ValueError, match="action"):
            env.step(a)


@pytest.mark.parametrize("field,value", [
    ("n_users", 0), ("area_m", 0.0), ("altitude_m", 0.5), ("max_speed_m_s", -1.0),
    ("slot_s", 0.0), ("p_max_dbm", float("inf")), ("path_loss_exponent", 1.0),
    ("rayleigh_fading", "yes"), ("user_speed_m_s", -0.1), ("rate_weight", 0.0),
])
def test_invalid_config_raises(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        gym.make(ENV_ID, **{field: value})


@settings(max_examples=30, deadline=None)
@given(field=st.sampled_from(["area_m", "altitude_m", "bandwidth_hz", "carrier_hz",
                              "max_speed_m_s", "rate_weight"]),
       value=st.floats(allow_nan=True, allow_infinity=True))
def test_fuzzed_config_values_validate_or_raise(field: str, value: float) -> None:
    cfg = config_or_field_error(MobileTransmitterConfig, field, value)
    if cfg is not None:
        assert math.isfinite(getattr(cfg, field))


def test_bad_reset_options_raise() -> None:
    env = gym.make(ENV_ID)
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"eve": 1})
    with pytest.raises(ValueError, match="shape"):
        env.reset(options={"user_positions_m": [[1.0, 2.0]]})
    with pytest.raises(ValueError, match="lie in"):
        env.reset(options={"uav_position_m": (-1.0, 5.0)})


# ------------------------------------------------------------------ extremes, render


@pytest.mark.parametrize("kwargs", [
    {"n_users": 8, "area_m": 1e6, "altitude_m": 1.0, "p_max_dbm": -50.0,
     "path_loss_exponent": 6.0, "rayleigh_fading": True, "user_speed_m_s": 1e3},
    {"n_users": 2, "area_m": 1.0, "altitude_m": 1.0, "p_max_dbm": 60.0,
     "path_loss_exponent": 1.5, "max_speed_m_s": 1e3, "bandwidth_hz": 1.0},
], ids=["huge-area-weak", "tiny-area-strong"])
def test_extreme_configs_keep_observations_in_space(kwargs: dict) -> None:
    venv = MobileTransmitterVectorEnv(num_envs=16, max_episode_steps=100, **kwargs,
                                      autoreset_mode=SAME)

    def check(obs: np.ndarray, rew: np.ndarray, info: dict) -> None:
        assert np.all(rew >= 0.0)

    assert_rollout_in_space(venv, seed=0, steps=300, check=check)


def test_render_modes() -> None:
    text = render_after_step(ENV_ID, "ansi", _action(4, 1.0, (1.0, 0.0)))
    assert "UAV at" in text and text.count("user") == 4
    env = gym.make(ENV_ID, render_mode="rgb_array")
    env.reset(seed=0)
    for _ in range(5):
        env.step(_action(4, 1.0, (1.0, 0.5)))
    assert len(env.unwrapped.core.trails[0]) == 6
    assert_rgb_frame(env.render())  # the map with a six-point flight trail
