"""Tests of qdrl/DTSyncAoI-v0: action indexing, the AoI rule, success laws, baselines, extremes.

The checks every registered id passes (checkers, determinism, vector twin, ...): test_envs.py.
"""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import qdrl_envs  # noqa: F401  (registers the ids)
from qdrl_envs.baselines import baseline_names, make_baseline
from qdrl_envs.baselines.dt_sync import decode_observation
from qdrl_envs.dt_sync import (
    MAX_ACTIONS,
    DTSyncAoICore,
    DTSyncAoIEnv,
    DTSyncAoIVectorEnv,
    DTSyncConfig,
    combination_table,
    index_from_subset,
    mean_success_probability,
    subset_from_index,
    success_probability,
)
from tests.envs import helpers

SAME = AutoresetMode.SAME_STEP  # these tests read final_obs / every step's info

ENV_ID = "qdrl/DTSyncAoI-v0"

CONFIGS = helpers.CONFIGS[ENV_ID]  # default, bernoulli-weighted, gen-at-will-nofade

RELIABLE = {"arrival_prob": 1.0, "rayleigh_fading": False, "csi_error_var": 0.0,
            "snr_threshold_db": -100.0}


# ------------------------------------------------------------------ action index <-> subset


@pytest.mark.parametrize("m,c", [(2, 1), (4, 2), (6, 2), (7, 3), (9, 4)], ids=str)
def test_index_subset_mapping_is_lexicographic_combinations(m: int, c: int) -> None:
    expected = list(itertools.combinations(range(m), c))
    assert [subset_from_index(i, m, c) for i in range(len(expected))] == expected
    assert [index_from_subset(s, m) for s in expected] == list(range(len(expected)))
    assert np.array_equal(combination_table(m, c), np.array(expected))
    # Order of the given subset does not matter.
    assert index_from_subset(tuple(reversed(expected[-1])), m) == len(expected) - 1


@settings(max_examples=60, deadline=None)
@given(m=st.integers(2, 40), data=st.data())
def test_index_subset_round_trip(m: int, data: st.DataObject) -> None:
    c = data.draw(st.integers(1, m))
    i = data.draw(st.integers(0, math.comb(m, c) - 1))
    subset = subset_from_index(i, m, c)
    assert len(subset) == c and list(subset) == sorted(set(subset))
    assert index_from_subset(subset, m) == i


def test_index_subset_bad_input() -> None:
    with pytest.raises(ValueError, match="index"):
        subset_from_index(6, 4, 2)
    with pytest.raises(ValueError, match="index"):
        subset_from_index(-1, 4, 2)
    with pytest.raises(ValueError, match="n_channels"):
        subset_from_index(0, 4, 5)
    with pytest.raises(ValueError, match="repeat"):
        index_from_subset([1, 1], 4)
    with pytest.raises(ValueError, match="lie in"):
        index_from_subset([0, 4], 4)
    with pytest.raises(ValueError, match="at least one"):
        index_from_subset([], 4)
    with pytest.raises(ValueError, match="MAX_ACTIONS"):
        combination_table(40, 20)


# ------------------------------------------------------------------ spaces and info


def test_spaces_and_info() -> None:
    env = gym.make(ENV_ID, n_devices=7, n_channels=3)
    assert env.action_space == gym.spaces.Discrete(35)
    assert env.observation_space.shape == (35,)
    _, info = env.reset(seed=1)
    assert set(info) == {"distance_m", "mean_snr_db"}
    assert np.all((info["distance_m"] >= 30.0) & (info["distance_m"] <= 250.0))
    _, r, _, _, info = env.step(0)
    assert set(info) >= {"aoi", "mean_aoi", "peak_aoi", "deliveries", "delivered",
                         "reward_terms"}
    assert info["aoi"].shape == (7,)
    assert r == pytest.approx(info["reward_terms"]["weighted_aoi"])
    assert r == pytest.approx(-info["mean_aoi"])  # unit weights
    assert info["peak_aoi"] == info["aoi"].max()
    assert info["deliveries"] == info["delivered"].sum() <= 3
    assert not np.any(info["delivered"][3:])  # action 0 schedules devices 0, 1, 2


# ------------------------------------------------------------------ physics


@pytest.mark.parametrize("m,c", [(5, 1), (6, 1), (6, 2), (9, 3)], ids=str)
def test_round_robin_reliable_mean_age_closed_form(m: int, c: int) -> None:
    """Reliable links, generate-at-will, round-robin: ages cycle through 1..M/C.

    Slot t = 1, 2, ... schedules the group g = (t - 1) mod (M/C). A twin synced in slot t gets
    age t - (t - 1) = 1 (generated at the start of the slot, read at its end), then 2, 3, ...
    until its group comes round again after M/C slots. From slot M/C on, each group sits at a
    distinct age in 1..M/C, so every slot's mean age is (M/C + 1) / 2 (= (M + 1) / 2 for C = 1)
    and the peak age is M/C.
    """
    env = gym.make(ENV_ID, n_devices=m, n_channels=c, **RELIABLE)
    rr = make_baseline("round-robin", env)
    obs, _ = env.reset(seed=0)
    period = m // c
    for t in range(1, 4 * period + 1):
        action, _ = rr.predict(obs, episode_start=(t == 1))
        obs, reward, _, _, info = env.step(action)
        assert info["deliveries"] == c
        if t >= period:
            assert sorted(set(info["aoi"].tolist())) == list(range(1, period + 1))
            assert info["mean_aoi"] == pytest.approx((period + 1) / 2)
            assert reward == pytest.approx(-(period + 1) / 2)
            assert info["peak_aoi"] == period
        else:  # never-synced twins keep ageing from 1
            assert info["peak_aoi"] == 1 + t


@pytest.mark.parametrize("kwargs", list(CONFIGS.values()), ids=list(CONFIGS))
def test_aoi_update_rule_is_the_papers(kwargs: dict) -> None:
    """xi_m(t) = t - a_m(t) on reception, else xi_m(t-1) + 1; success = scheduled, update
    buffered and SNR >= threshold; LCFS with replacement keeps the newest update."""
    env = DTSyncAoIEnv(**kwargs)
    core = env.core
    env.reset(seed=5)
    rng = np.random.default_rng(1)
    for _ in range(150):
        t_prev, age_prev = int(core.t[0]), core.age[0].copy()
        gen, has, clear = core.gen[0].copy(), core.has_pkt[0].copy(), core.clear[0].copy()
        snr = core.mean_snr[0] * core.fade[0]
        sure = np.abs(snr / core.threshold_lin - 1.0) > 1e-5  # away from float32 rounding
        np.testing.assert_array_equal(clear[sure], (snr >= core.threshold_lin)[sure])
        np.testing.assert_array_equal(core.age_if_delivered()[0],
                                      np.where(has, t_prev + 1 - gen, age_prev + 1))
        a = int(rng.integers(env.action_space.n))
        _, _, _, _, info = env.step(a)
        sched = np.zeros(core.n_devices, bool)
        sched[list(subset_from_index(a, core.n_devices, core.n_channels))] = True
        t = t_prev + 1
        assert core.t[0] == t
        np.testing.assert_array_equal(info["delivered"], sched & has & clear)
        np.testing.assert_array_equal(info["aoi"],
                                      np.where(info["delivered"], t - gen, age_prev + 1))
        # After the slot: an update generated at the start of slot t+1 carries stamp t.
        new_gen = core.gen[0]
        assert np.all((new_gen == gen) | (new_gen == t))
        assert np.all(core.has_pkt[0] >= (new_gen == t))


def test_success_probability_matches_simulation() -> None:
    cfg = DTSyncConfig(n_devices=8, n_channels=1, csi_error_var=0.25, snr_threshold_db=10.0,
                       min_distance_m=60.0, max_distance_m=200.0)
    core = DTSyncAoICore(cfg, 64)
    rngs = [np.random.default_rng(i) for i in range(64)]
    core.reset(rngs, np.arange(64))
    est, mean, clear = [], [], []
    for _ in range(60):
        est.append(core.mean_snr_db + 10 * np.log10(core.fade_est))
        mean.append(core.mean_snr_db.copy())
        clear.append(core.clear.copy())
        core.step(np.zeros(64, dtype=np.int64), rngs)
    est, mean, clear = (np.concatenate([x.ravel() for x in v]) for v in (est, mean, clear))
    p = success_probability(est, mean, 10.0, 0.25)
    pbar = mean_success_probability(mean, 10.0)
    assert abs(clear.mean() - pbar.mean()) < 0.01  # 30720 samples
    for lo, hi in [(0.05, 0.3), (0.3, 0.7), (0.7, 0.95)]:
        sel = (p >= lo) & (p < hi)
        assert sel.sum() > 500
        assert abs(clear[sel].mean() - p[sel].mean()) < 0.04
    # Degenerate cases: exact estimate, no fading.
    np.testing.assert_array_equal(success_probability([4.0, 6.0], [0.0, 0.0], 5.0, 0.0), [0, 1])
    np.testing.assert_array_equal(mean_success_probability([4.0, 6.0], 5.0, False), [0, 1])


# ------------------------------------------------------------------ baselines


def test_baselines_beat_random_over_20_seeded_episodes() -> None:
    env = gym.make(ENV_ID, max_episode_steps=100, weights=(1.0, 1.0, 2.0, 2.0, 4.0, 4.0))
    assert baseline_names(env) == ["max-age-first", "max-weight", "random", "round-robin",
                                   "whittle"]
    scores = {name: helpers.baseline_returns(env, name, range(20), range(20)).mean()
              for name in ["random", "max-age-first", "max-weight", "whittle"]}
    # Rewards are negative (ages): a 40% smaller weighted age than random is a clear margin.
    for name in ["max-weight", "whittle"]:
        assert scores[name] > 0.6 * scores["random"], scores
    assert scores["max-age-first"] > 0.9 * scores["random"], scores


def test_baselines_act_on_observation_batches() -> None:
    venv = DTSyncAoIVectorEnv(num_envs=4, max_episode_steps=20, n_devices=5, n_channels=2,
                              autoreset_mode=SAME)
    env = gym.make(ENV_ID, n_devices=5, n_channels=2)
    obs, _ = venv.reset(seed=0)
    for name in ["max-weight", "whittle", "max-age-first", "round-robin", "random"]:
        policy = make_baseline(name, env, seed=0)
        batch, _ = policy.predict(obs, episode_start=np.ones(4, bool))
        assert batch.shape == (4,) and all(venv.single_action_space.contains(int(a))
                                           for a in batch)
        if name not in ("random", "round-robin"):
            assert batch.tolist() == [int(policy.predict(o)[0]) for o in obs]
    with pytest.raises(ValueError, match="shape"):
        make_baseline("whittle", env).predict(np.zeros(3, np.float32))


def test_observation_decodes_to_state() -> None:
    env = gym.make(ENV_ID, n_devices=5, n_channels=2)
    obs, _ = env.reset(seed=2)
    core = env.unwrapped.core
    for a in range(30):
        obs, *_ = env.step(a % env.action_space.n)
    d = decode_observation(obs, env.unwrapped.config)
    np.testing.assert_allclose(d["age"], core.age[0], rtol=1e-5)
    np.testing.assert_allclose(d["age_if_delivered"], core.age_if_delivered()[0], rtol=1e-5)
    np.testing.assert_allclose(d["mean_snr_db"], np.minimum(core.mean_snr_db[0], 35.0),
                               atol=1e-4)


# ------------------------------------------------------------------ bad input


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=st.one_of(st.integers(max_value=-1), st.integers(min_value=15),
                   st.floats(allow_nan=True, allow_infinity=True).filter(
                       lambda x: not float(x).is_integer())))
def test_fuzzed_bad_actions_raise(a) -> None:
    env = DTSyncAoIEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(a)


@pytest.mark.parametrize("field,value,match", [
    ("n_devices", 1, "n_devices"),
    ("n_channels", 6, "n_channels"),
    ("n_channels", 0, "n_channels"),
    ("arrival_prob", 0.0, "arrival_prob"),
    ("arrival_prob", (0.5, 0.5), "arrival_prob"),
    ("weights", (1.0, 1.0, 1.0, 1.0, 1.0, -1.0), "weights"),
    ("csi_error_var", 1.0, "csi_error_var"),
    ("max_distance_m", 10.0, "max_distance_m"),
    ("rayleigh_fading", 1, "rayleigh_fading"),
    ("age_scale_slots", 0.0, "age_scale_slots"),
    ("snr_threshold_db", float("nan"), "snr_threshold_db"),
], ids=lambda v: str(v)[:20])
def test_invalid_config_raises(field: str, value, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gym.make(ENV_ID, **{field: value})


def test_per_device_fields_take_yaml_lists() -> None:
    # Kwargs from a YAML file (a sweep's): per-device fields arrive as lists, not tuples.
    import yaml

    kwargs = yaml.safe_load("{arrival_prob: [0.2, 0.4, 0.6, 0.8, 1.0, 0.5], "
                            "weights: [1, 2, 3, 4, 5, 6]}")
    env = gym.make(ENV_ID, **kwargs)
    cfg = env.unwrapped.config
    assert cfg.arrival_prob == (0.2, 0.4, 0.6, 0.8, 1.0, 0.5)
    assert cfg.weights == (1, 2, 3, 4, 5, 6) and hash(cfg) == hash(cfg.replace())
    np.testing.assert_array_equal(cfg.arrival_probs(), [0.2, 0.4, 0.6, 0.8, 1.0, 0.5])
    with pytest.raises(ValueError, match="arrival_prob"):
        gym.make(ENV_ID, arrival_prob=[0.5, 0.5])


def test_too_many_actions_and_bad_reset_options() -> None:
    with pytest.raises(ValueError, match="MAX_ACTIONS"):
        DTSyncConfig(n_devices=30, n_channels=10)
    assert math.comb(20, 5) <= MAX_ACTIONS
    env = gym.make(ENV_ID)
    with pytest.raises(ValueError, match="distances_m"):
        env.reset(seed=0, options={"distances_m": [1.0, 2.0]})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(seed=0, options={"speed": 1})
    _, info = env.reset(seed=0, options={"distances_m": [30.0] * 6})
    np.testing.assert_allclose(info["distance_m"], 30.0)


@settings(max_examples=30, deadline=None)
@given(field=st.sampled_from(["tx_power_dbm", "bandwidth_hz", "path_loss_exponent",
                              "min_distance_m", "csi_error_var", "snr_scale_db"]),
       value=st.floats(allow_nan=True, allow_infinity=True))
# Found by this fuzzing: min_distance_m above the default max_distance_m (250 m) once raised an
# error naming only max_distance_m; cross-field checks now name both fields.
@example(field="min_distance_m", value=251.0)
def test_fuzzed_config_values_validate_or_raise(field: str, value: float) -> None:
    cfg = helpers.config_or_field_error(DTSyncConfig, field, value)
    if cfg is not None:
        assert math.isfinite(getattr(cfg, field))


# ------------------------------------------------------------------ extremes, render, Whittle


@pytest.mark.parametrize("kwargs", [
    {"n_devices": 12, "n_channels": 1, "arrival_prob": 0.01, "snr_threshold_db": 150.0,
     "age_scale_slots": 0.001},
    {"n_devices": 4, "n_channels": 3, "csi_error_var": 0.99, "max_distance_m": 1e5,
     "min_distance_m": 1e4, "snr_scale_db": 0.01, "weights": (1e6, 1e-6, 1.0, 1.0)},
    {"n_devices": 16, "n_channels": 8, "tx_power_dbm": 60.0, "min_distance_m": 1.0,
     "max_distance_m": 1.0, "arrival_prob": 1.0},
], ids=["never-delivers", "deep-fades-huge-weights", "huge-snr"])
def test_extreme_configs_keep_observations_in_space(kwargs: dict) -> None:
    venv = DTSyncAoIVectorEnv(num_envs=16, max_episode_steps=400, **kwargs, autoreset_mode=SAME)
    rng = np.random.default_rng(0)
    helpers.assert_rollout_in_space(
        venv, seed=0, steps=600,
        actions=lambda t: rng.integers(venv.single_action_space.n, size=16))
    # Ages far beyond the squashing scale stay inside the space even when saturating float32.
    core = venv.core
    core.age[:] = 10**15
    obs, *_ = venv.step(rng.integers(venv.single_action_space.n, size=16))
    assert np.all(obs <= 1.0) and np.any(obs[:, :core.n_devices] == 1.0)


def test_render_ansi_lists_the_slot_and_every_twin() -> None:
    text = helpers.render_after_step(ENV_ID, "ansi", 3)
    assert "slot 1" in text and text.count("twin") == 6


@pytest.mark.parametrize("p", [1.0, 0.7, 0.3], ids=lambda p: f"p={p}")
def test_whittle_index_is_the_indifference_charge(p: float) -> None:
    """Single client, generate-at-will, reliability p, charge C per transmission: under the
    threshold policy "transmit whenever the age is >= H" the long-run cost per slot is
    E[sum of ages + C * transmissions over a renewal cycle] / E[cycle length]. At C = W(h)
    thresholds h and h + 1 cost the same (the definition of Whittle's index); a larger
    charge favours waiting longer. Cycle moments summed numerically, not in closed form."""
    from qdrl_envs.baselines.dt_sync import whittle_index

    alpha = 2.0

    def cost(threshold: int, charge: float) -> float:
        # The cycle: ages 1..H-1 idle, then G >= 1 transmissions (geometric), ages H..H+G-1.
        g = np.arange(1, 4000)
        pg = p * (1 - p) ** (g - 1) if p < 1 else (g == 1).astype(float)
        last = threshold + g - 1
        ages = last * (last + 1) / 2.0
        length = threshold - 1 + g
        return float((pg * (alpha * ages + charge * g)).sum() / (pg * length).sum())

    for h in (1, 2, 5, 12):
        w = float(whittle_index(h, alpha, p, p))
        assert cost(h, w) == pytest.approx(cost(h + 1, w), rel=1e-9)
        assert cost(h, 1.2 * w) > cost(h + 1, 1.2 * w)
        assert cost(h, 0.8 * w) < cost(h + 1, 0.8 * w)
