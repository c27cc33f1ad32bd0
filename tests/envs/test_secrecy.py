"""Tests of qdrl/SecrecyPowerControl-v1 (docs/design.md §3.1): info, physics, extremes, bad input.

The checks every registered id passes (checkers, determinism, vector twin, ...): test_envs.py.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qdrl_envs  # noqa: F401  (registers the ids)
from qdrl_envs import radio
from qdrl_envs.secrecy import (
    SecrecyConfig,
    SecrecyPowerControlEnv,
    SecrecyPowerControlVectorEnv,
    secrecy_rates,
)
from tests.envs.helpers import assert_rollout_in_space, config_or_field_error

SAME = AutoresetMode.SAME_STEP  # these tests read final_obs / every step's info

ENV_ID = "qdrl/SecrecyPowerControl-v1"
INFO_KEYS = {"secrecy_rate", "user_rates", "eve_rates", "secrecy_rates", "powers",
             "reward_terms"}


def _make(**kwargs):
    return gym.make(ENV_ID, **kwargs)


# --------------------------------------------------------------------------------------------
# Spaces, info and reward
# --------------------------------------------------------------------------------------------

def test_spaces_and_info_keys():
    env = _make(n_aps=3)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    assert env.observation_space.shape == (18,)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32
    a = np.array([1.0, 0.0, -1.0], dtype=np.float32)  # full, -20 dB (log scale), off
    p = np.array([1.0, 0.01, 0.0])
    _, reward, terminated, truncated, info = env.step(a)
    assert set(info) == INFO_KEYS
    assert not terminated and not truncated
    assert info["secrecy_rate"] == pytest.approx(info["secrecy_rates"].sum())
    assert reward == pytest.approx(info["secrecy_rate"])
    assert info["reward_terms"] == {"secrecy_rate": pytest.approx(info["secrecy_rate"])}
    np.testing.assert_allclose(info["powers"], p * 1.0, rtol=1e-12)  # P_max = 30 dBm = 1 W
    np.testing.assert_allclose(info["secrecy_rates"],
                               np.maximum(info["user_rates"] - info["eve_rates"], 0.0))
    assert info["secrecy_rates"][2] == 0.0  # AP 2 silent: no rate for anybody


@pytest.mark.parametrize("scale", ["log", "linear"])
def test_action_scales_map_the_symmetric_box_onto_power_coefficients(scale):
    env = _make(n_aps=2, power_scale=scale, power_range_db=30.0)
    core = env.unwrapped.core
    a = np.array([-1.0, -0.999, -0.5, 0.0, 0.5, 1.0])
    p = core.coefficients(a)
    if scale == "log":
        # a in dB over 30 dB: 1 -> 0 dB, 0 -> -15 dB, just above -1 -> about -30 dB; -1 off.
        expected = np.concatenate([[0.0], 10.0 ** (-30.0 * (1.0 - a[1:]) / 20.0)])
        assert p[3] == pytest.approx(10 ** -1.5)
    else:
        expected = (a + 1.0) / 2.0
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    assert p[0] == 0.0 and p[-1] == 1.0 and np.all(np.diff(p) > 0)
    np.testing.assert_allclose(core.action_of(p), a, atol=1e-6)  # the inverse (in float32)
    assert core.action_of([0.0, 1e-9, 1.0]).tolist() == (
        [-1.0, -1.0, 1.0] if scale == "log" else [-1.0, pytest.approx(-1.0), 1.0])
    env.reset(seed=0)
    *_, info = env.step(np.array([1.0, -1.0], dtype=np.float32))
    assert info["powers"].tolist() == [core.p_max_w, 0.0]
    with pytest.raises(ValueError, match="power_scale"):
        _make(power_scale="dB")
    with pytest.raises(ValueError, match="power_range_db"):
        _make(power_range_db=0.5)


def test_varsigma_scales_reward():
    a, b = _make(), _make(varsigma=2.5)
    a.reset(seed=3)
    b.reset(seed=3)
    for _ in range(5):
        act = np.array([0.7, 0.2], dtype=np.float32)
        _, ra, *_, ia = a.step(act)
        _, rb, *_, ib = b.step(act)
        assert rb == pytest.approx(2.5 * ra)
        assert ib["reward_terms"]["secrecy_rate"] == pytest.approx(ia["secrecy_rate"])


def test_episode_truncates_at_time_limit():
    env = _make()
    env.reset(seed=0)
    for t in range(100):
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (t == 99)


# --------------------------------------------------------------------------------------------
# Physics
# --------------------------------------------------------------------------------------------


def test_secrecy_rates_hand_worked_2x2():
    # g[m, k]: AP m -> receiver k. P_max = 1 W, noise 1e-12 W, p = (1, 0.5).
    g_user = np.array([[1e-9, 1e-10],
                       [2e-11, 4e-10]])
    g_eve = np.array([[1e-10, 0.0],
                      [5e-12, 4e-10]])
    p = np.array([1.0, 0.5])
    user, eve, sec = secrecy_rates(g_user, g_eve, p, 1.0, 1e-12)
    # User 0: 1e-9 / (0.5 * 2e-11 + 1e-12) = 1e-9 / 1.1e-11 = 1000/11.
    # User 1: 0.5 * 4e-10 / (1 * 1e-10 + 1e-12) = 2e-10 / 1.01e-10 = 200/101.
    # Eve 0: 1e-10 / (0.5 * 5e-12 + 1e-12) = 1e-10 / 3.5e-12 = 200/7.
    # Eve 1: 0.5 * 4e-10 / (1 * 0 + 1e-12) = 200: no interference, it out-rates user 1.
    exp_user = [math.log2(1 + 1000 / 11), math.log2(1 + 200 / 101)]
    exp_eve = [math.log2(1 + 200 / 7), math.log2(1 + 200)]
    np.testing.assert_allclose(user, exp_user, rtol=1e-12)
    np.testing.assert_allclose(eve, exp_eve, rtol=1e-12)
    np.testing.assert_allclose(sec, [exp_user[0] - exp_eve[0], 0.0], rtol=1e-12)
    assert sec[1] == 0.0  # clipped at zero, never negative
    assert (g_eve <= g_user).all()  # the concealment rule holds, yet eve 1 wins on interference


def test_secrecy_rates_broadcasts_over_batch():
    rng = np.random.default_rng(0)
    gu, ge = rng.exponential(1e-9, (5, 3, 3)), rng.exponential(1e-10, (5, 3, 3))
    p = rng.random((5, 3))
    batched = secrecy_rates(gu, ge, p, 2.0, 1e-12)
    for i in range(5):
        single = secrecy_rates(gu[i], ge[i], p[i], 2.0, 1e-12)
        for b, s in zip(batched, single, strict=True):
            np.testing.assert_allclose(b[i], s, rtol=1e-12)
    # One channel, many power vectors (what the oracle's grid search does).
    many = secrecy_rates(gu[0], ge[0], p, 2.0, 1e-12)[2]
    assert many.shape == (5, 3)
    np.testing.assert_allclose(many[3], secrecy_rates(gu[0], ge[0], p[3], 2.0, 1e-12)[2])


def test_secrecy_rates_zero_power_and_huge_snr_are_finite():
    g = np.array([[1.0, 1e-30], [1e-30, 1.0]])
    user, _, sec = secrecy_rates(g, g * 0.0, np.zeros(2), 1e3, 1e-21)
    assert np.all(user == 0.0) and np.all(sec == 0.0)
    user, _, sec = secrecy_rates(g, g * 1e-3, np.ones(2), 1e3, 1e-21)
    assert np.all(np.isfinite(user)) and np.all(sec > 0.0)
    # SINR ~ 1e24/1e-30-ish would make "total - signal" cancel to zero; the exact sum does not.
    np.testing.assert_allclose(user, math.log2(1 + 1e3 / (1e3 * 1e-30 + 1e-21)), rtol=1e-9)


@pytest.mark.parametrize("args, match", [
    ((np.ones((2, 3)), np.ones((2, 3)), np.ones(2)), "shape"),
    ((np.ones((2, 2)), np.ones((3, 3)), np.ones(2)), "shape"),
    ((np.ones((2, 2)), np.ones((2, 2)), np.ones(3)), "p must"),
], ids=["non-square", "mismatched", "bad-p"])
def test_secrecy_rates_rejects_bad_shapes(args, match):
    with pytest.raises(ValueError, match=match):
        secrecy_rates(*args, 1.0, 1e-12)
    with pytest.raises(ValueError, match="noise_w"):
        secrecy_rates(np.ones((2, 2)), np.ones((2, 2)), np.ones(2), 1.0, 0.0)


def test_link_budget_closed_forms():
    env = SecrecyPowerControlEnv()
    core = env.core
    # -174 dBm/Hz + 70 dB (10 MHz) + 7 dB = -97 dBm; 30 dBm = 1 W.
    assert radio.watt_to_dbm(core.noise_w) == pytest.approx(-97.0)
    assert core.p_max_w == pytest.approx(1.0)
    ap = np.array([[0.0, 0.0], [100.0, 0.0]])
    user = np.array([[10.0, 0.0], [100.0, 20.0]])
    eve = np.array([[10.0, 5.0], [100.0, 20.0]])
    env.reset(seed=0, options={"ap_positions_m": ap, "user_positions_m": user,
                               "eve_positions_m": eve})
    fspl_1m = 20 * math.log10(4 * math.pi * 3.5e9 / 299_792_458.0)
    d_user = np.linalg.norm(ap[:, None] - user[None], axis=-1)
    d_eve = np.linalg.norm(ap[:, None] - eve[None], axis=-1)
    pl_user = fspl_1m + 30 * np.log10(d_user)
    pl_eve = fspl_1m + 30 * np.log10(d_eve) + 10.0
    np.testing.assert_allclose(core.path_gains[0, :, :2], 10 ** (-pl_user / 10), rtol=1e-9)
    np.testing.assert_allclose(core.path_gains[0, :, 2:], 10 ** (-pl_eve / 10), rtol=1e-9)
    np.testing.assert_array_equal(core.ap_positions_m[0], ap)


def test_observation_scaling_and_statistical_csi():
    ap = np.array([[0.0, 0.0], [100.0, 0.0]])
    pos = {"ap_positions_m": ap, "user_positions_m": ap + np.array([[10.0, 0.0], [0.0, 30.0]]),
           "eve_positions_m": ap + np.array([[20.0, 0.0], [0.0, 40.0]])}
    env = SecrecyPowerControlEnv(eve_csi="statistical")
    obs, _ = env.reset(seed=1, options=pos)
    core = env.core
    snr_db = 10 * np.log10(core.gains[0] * core.p_max_w / core.noise_w)
    expected_user = np.clip((snr_db[:, :2] - 25.0) / 60.0, -1, 1)
    np.testing.assert_allclose(obs.reshape(2, 4)[:, :2], expected_user, atol=1e-6)
    # Statistical eavesdropper CSI: large-scale gains only, constant over the episode.
    pl_db = 10 * np.log10(core.path_gains[0, :, 2:] * core.p_max_w / core.noise_w)
    expected_eve = np.clip((pl_db - 25.0) / 60.0, -1, 1)
    np.testing.assert_allclose(obs.reshape(2, 4)[:, 2:], expected_eve, atol=1e-6)
    obs2, *_ = env.step(np.ones(2, dtype=np.float32))
    np.testing.assert_array_equal(obs2.reshape(2, 4)[:, 2:], obs.reshape(2, 4)[:, 2:])
    assert not np.array_equal(obs2.reshape(2, 4)[:, :2], obs.reshape(2, 4)[:, :2])


@pytest.mark.parametrize("m", [2, 3])
def test_reward_is_secrecy_rates_of_the_observed_channel(m):
    # The env evaluates exactly secrecy_rates (its operator built ahead of time): bit-equal.
    env = SecrecyPowerControlEnv(n_aps=m, varsigma=1.0)
    env.reset(seed=5)
    for _ in range(env.core.block_steps + 12):  # across a channel block boundary
        g = env.core.gains.copy()  # (1, M, 2M), the channel the action acts on
        a = env.action_space.sample()
        _, reward, *_, info = env.step(a)
        p = env.core.coefficients(a)
        user, eve, sec = secrecy_rates(g[..., :m], g[..., m:], p[None], env.core.p_max_w,
                                       env.core.noise_w)
        assert reward == sec.sum()
        np.testing.assert_array_equal(info["user_rates"], user[0])
        np.testing.assert_array_equal(info["eve_rates"], eve[0])
        np.testing.assert_array_equal(info["secrecy_rates"], sec[0])


@pytest.mark.parametrize("kwargs", [
    {"n_aps": 3}, {"n_aps": 2, "fading_rho": 0.95}, {"n_aps": 4, "eve_extra_loss_db": 0.0},
], ids=["M3", "M2-gauss-markov", "M4-no-extra-loss"])
def test_concealed_eavesdropper_rule_holds_every_step(kwargs):
    m = kwargs["n_aps"]
    venv = SecrecyPowerControlVectorEnv(num_envs=16, max_episode_steps=50, **kwargs,
                                        autoreset_mode=SAME)
    venv.reset(seed=0)
    actions = np.random.default_rng(0).random((150, 16, m))
    for t in range(150):
        venv.step(actions[t])
        g = venv.core.gains
        g_user, g_eve = g[..., :m], g[..., m:]
        assert (g_eve <= g_user).all()  # per link, hence also ...
        assert (np.diagonal(g_eve, 0, 1, 2) <= np.diagonal(g_user, 0, 1, 2)).all()  # serving
        assert (g_eve.sum(axis=1) <= g_user.sum(axis=1)).all()  # ... and vector norm


def test_lifting_the_rule_lets_eavesdroppers_win_some_links():
    venv = SecrecyPowerControlVectorEnv(num_envs=16, concealed_eves=False, eve_extra_loss_db=0.0)
    venv.reset(seed=0)
    violated = 0
    for _ in range(20):
        venv.step(np.ones((16, 2)))
        violated += int((venv.core.gains[..., 2:] > venv.core.gains[..., :2]).sum())
    assert violated > 0


def test_concealment_redraw_has_the_conditional_law():
    # Users and eavesdroppers co-located, no extra loss: equal path gains on every link, so the
    # rule reads x_eve <= x_user for Exp(1) fading powers. The redraw keeps x_user = X and draws
    # x_eve from Exp(1) truncated to [0, X]: P(x_eve / x_user <= t) = E[(1-e^{-tX})/(1-e^{-X})].
    from scipy.integrate import quad

    t = 0.5
    expected = quad(lambda x: math.exp(-x) * (-math.expm1(-t * x)) / (-math.expm1(-x)),
                    0, math.inf)[0]
    ap = np.array([[0.0, 0.0], [60.0, 0.0]])
    user = np.array([[20.0, 10.0], [50.0, 20.0]])
    venv = SecrecyPowerControlVectorEnv(num_envs=32, eve_extra_loss_db=0.0)
    venv.reset(seed=2, options={"ap_positions_m": ap, "user_positions_m": user,
                                "eve_positions_m": user})
    ratios = []
    for _ in range(40):
        g = venv.core.gains
        ratios.append((g[..., 2:] / g[..., :2]).ravel())
        venv.step(np.ones((32, 2)))
    ratios = np.concatenate(ratios)
    assert ratios.max() <= 1.0
    assert np.mean(ratios <= t) == pytest.approx(expected, abs=0.03)


EXTREME_CONFIGS = [
    pytest.param({"area_m": 1.0, "user_radius_m": 0.5, "eve_radius_m": 0.1}, id="tiny-area"),
    pytest.param({"area_m": 1e6, "user_radius_m": 4e5, "eve_radius_m": 1e5,
                  "path_loss_exponent": 6.0, "ap_layout": "uniform"}, id="huge-area"),
    pytest.param({"p_max_dbm": 60.0, "bandwidth_hz": 1.0, "noise_figure_db": 0.0,
                  "path_loss_exponent": 1.5, "area_m": 2.0}, id="huge-snr"),
    pytest.param({"p_max_dbm": -30.0, "bandwidth_hz": 1e11, "noise_figure_db": 30.0,
                  "eve_extra_loss_db": 100.0, "n_aps": 4}, id="tiny-snr"),
    pytest.param({"fading_rho": 1.0, "n_aps": 3, "eve_csi": "statistical"}, id="static"),
    pytest.param({"concealed_eves": False, "eve_extra_loss_db": 0.0, "user_radius_m": 0.0,
                  "eve_radius_m": 0.0}, id="colocated"),
]


@pytest.mark.parametrize("kwargs", EXTREME_CONFIGS)
def test_observations_in_space_and_rewards_finite_on_extreme_draws(kwargs):
    m = kwargs.get("n_aps", 2)
    venv = SecrecyPowerControlVectorEnv(num_envs=32, max_episode_steps=25, **kwargs,
                                        autoreset_mode=SAME)
    rng = np.random.default_rng(0)

    def actions(t):  # every third step all-or-nothing powers, the others uniform
        return rng.random((32, m)) if t % 3 else rng.integers(0, 2, (32, m)).astype(float)

    def check(obs, rew, info):
        assert np.all(rew >= 0.0)
        for key in ("user_rates", "eve_rates", "secrecy_rates"):
            assert np.all(np.isfinite(info[key])) and np.all(info[key] >= 0.0)

    assert_rollout_in_space(venv, seed=0, steps=100, actions=actions, check=check)


def test_deep_fades_and_extreme_placements_stay_in_space():
    # Receivers on top of their AP (distance clamps to 1 m) or ten km away.
    env = SecrecyPowerControlEnv(area_m=2e4)
    ap = np.array([[0.0, 0.0], [2e4, 2e4]])
    for user in (ap.copy(), ap + np.array([[1e4, 0.0], [-1e4, 0.0]])):
        obs, _ = env.reset(seed=0, options={"ap_positions_m": ap, "user_positions_m": user,
                                            "eve_positions_m": user})
        assert env.observation_space.contains(obs)
        _, reward, *_ = env.step(np.ones(2, dtype=np.float32))
        assert math.isfinite(reward)
    # Fades far beyond any realistic draw (and zero gain) still map inside the space.
    core = env.core
    for scale in (0.0, 1e-300, 1e-30, 1e30, 1e300):
        for csi in ("perfect", "statistical"):
            core._view = core._view._replace(statistical_csi=csi == "statistical")
            obs = core._observation(np.full((1, 2, 4), scale), core._pg_obs[:1])
            assert obs.shape == (1, 8) and env.observation_space.contains(obs[0])


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(action=hnp.arrays(np.float64, st.sampled_from([(2,), (3,), (1, 2)]),
                         elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_fuzzed_actions_step_or_raise_value_error(action):
    env = SecrecyPowerControlEnv()
    env.reset(seed=0)
    valid = action.shape == (2,) and np.all(np.isfinite(action)) and np.all(
        (action >= -1) & (action <= 1))
    if valid:
        _, reward, *_ = env.step(action)
        assert math.isfinite(reward)
    else:
        with pytest.raises(ValueError):
            env.step(action)


@pytest.mark.parametrize("kwargs, field", [
    ({"n_aps": 0}, "n_aps"), ({"n_aps": 2.5}, "n_aps"), ({"n_aps": True}, "n_aps"),
    ({"area_m": 0.0}, "area_m"), ({"area_m": float("nan")}, "area_m"),
    ({"ap_layout": "hex"}, "ap_layout"), ({"eve_csi": "none"}, "eve_csi"),
    ({"fading_rho": 1.5}, "fading_rho"), ({"concealed_eves": 1}, "concealed_eves"),
    ({"varsigma": 0.0}, "varsigma"), ({"p_max_dbm": "30"}, "p_max_dbm"),
    ({"path_loss_exponent": 7.0}, "path_loss_exponent"),
], ids=lambda v: str(v) if isinstance(v, str) else None)
def test_invalid_config_raises_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        _make(**kwargs)
    with pytest.raises(ValueError, match=field):
        gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point",
                     autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)


_FIELD_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**7), st.booleans(),
    st.text(max_size=5), st.none(), st.sampled_from(["grid", "uniform", "perfect",
                                                      "statistical"]))


@settings(max_examples=40, deadline=None)
@given(field=st.sampled_from(SecrecyConfig.field_names()), value=_FIELD_VALUES)
def test_fuzzed_configs_construct_or_raise_value_error(field, value):
    cfg = config_or_field_error(SecrecyConfig, field, value)
    if cfg is None:
        return
    env = SecrecyPowerControlEnv(cfg)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and math.isfinite(reward)


@pytest.mark.parametrize("options, match", [
    ({"ap_positions": np.zeros((2, 2))}, "unknown reset option"),
    ({"ap_positions_m": np.zeros((3, 2))}, r"shape \(2, 2\)"),
    ({"user_positions_m": np.full((2, 2), np.nan)}, "finite"),
    ({"eve_positions_m": "here"}, "eve_positions_m"),
    ({"ap_positions_m": [[10.0, 10.0], [250.0, 10.0]]},
     r"ap_positions_m: rows \[1\] lie outside the area \[0, 200.0\]\^2 m"),
    ({"user_positions_m": [[-1.0, 10.0], [20.0, 10.0]]}, r"user_positions_m: rows \[0\]"),
], ids=["unknown", "shape", "nan", "string", "ap-outside", "user-negative"])
def test_bad_reset_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        _make().reset(seed=0, options=options)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def test_render_ansi_shows_geometry_channels_and_last_step():
    env = _make(n_aps=3, render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and text.startswith("SecrecyPowerControl  M=3")
    core = env.unwrapped.core
    assert f"{core.ap_positions_m[0, 2, 0]:6.1f}" in text
    assert "last step" not in text
    _, reward, *_ = env.step(np.array([1.0, 0.5, 0.0], dtype=np.float32))
    text = env.render()
    assert f"last step: secrecy sum {reward:.3f} bit/s/Hz" in text
    assert len(text.splitlines()) == 2 + 3 + 2 + 3


def test_render_rgb_array_draws_the_map():
    env = _make(n_aps=2, render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()  # uint8 HxWx3: test_envs.py checks the type for every id
    assert before.std() > 10  # a picture, not a blank canvas
    env.step(np.array([1.0, 0.0], dtype=np.float32))
    after = env.render()
    assert after.shape == before.shape and not np.array_equal(after, before)
