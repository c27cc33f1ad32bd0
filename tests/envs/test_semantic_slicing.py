"""Tests of ``qdrl/SemanticSlicing-v1``: RB shares, physics, baselines, bad input, extremes.

The checks every registered id passes (checkers, determinism, vector twin, ...): test_envs.py.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from hypothesis import given, settings
from hypothesis import strategies as st

import qdrl_envs  # noqa: F401
from qdrl_envs.baselines import baseline_names, make_baseline
from qdrl_envs.baselines.semantic_slicing import SlotOraclePolicy
from qdrl_envs.semantic_slicing import (
    SemanticSlicingConfig,
    SemanticSlicingEnv,
    SemanticSlicingVectorEnv,
    semantic_similarity,
    shares_to_rbs,
)
from tests.envs.helpers import assert_rollout_in_space, baseline_returns, render_after_step

SAME = AutoresetMode.SAME_STEP  # these tests read final_obs / every step's info

ENV_ID = "qdrl/SemanticSlicing-v1"

EXTREME = {
    "overload": {"critical_msg_rate": 2000.0, "routine_msg_rate": 5000.0,
                 "embb_load_bps": 1e9, "urllc_load_bps": 2e8},
    "empty": {"critical_msg_rate": 0.0, "routine_msg_rate": 0.0, "embb_load_bps": 0.0,
              "urllc_load_bps": 0.0},
    "deep-fade": {"semantic_snr_db": -50.0, "embb_snr_db": -50.0, "urllc_snr_db": -50.0},
    "one-rb": {"n_rbs": 1},
    "long-budgets": {"semantic_delay_budget_s": 5.0, "embb_delay_budget_s": 10.0,
                     "slot_s": 0.01, "violation_penalty": 50.0},
}


# ----------------------------------------------------------------------------- shares -> RBs


def test_shares_to_rbs_examples() -> None:
    np.testing.assert_array_equal(shares_to_rbs([1.0, 1.0, 1.0], 50), [17, 17, 16])
    np.testing.assert_array_equal(shares_to_rbs([0.0, 0.0, 0.0], 50), [17, 17, 16])
    np.testing.assert_array_equal(shares_to_rbs([0.5, 0.25, 0.25], 50), [25, 13, 12])
    np.testing.assert_array_equal(shares_to_rbs([0.0, 1.0, 0.0], 7), [0, 7, 0])
    np.testing.assert_array_equal(shares_to_rbs([[0.1, 0.2, 0.7], [1, 0, 0]], 10),
                                  [[1, 2, 7], [10, 0, 0]])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8), st.integers(0, 500))
def test_slice_rb_counts_always_sum_to_b(shares: list[float], b: int) -> None:
    counts = shares_to_rbs(shares, b)
    assert counts.sum() == b and (counts >= 0).all()
    x = np.asarray(shares)
    quota = x / x.sum() * b if x.sum() > 0 else np.full(x.size, b / x.size)
    assert np.all(np.abs(counts - quota) < 1.0 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.1, 0.25, 1 / 3, 0.5, 1.0, 5e-324]), min_size=1,
                max_size=6), st.integers(0, 200))
def test_largest_remainder_matches_hamiltons_method_with_ties(shares: list[float],
                                                               b: int) -> None:
    # The definition, with NumPy: floors, then one block each to the largest fractional
    # parts in a stable order (ties to the lower slice index).
    x = np.asarray(shares)
    x = x + (x.sum() <= 0.0)
    quota = x / x.sum() * b
    base = np.floor(quota)
    order = np.argsort(base - quota, kind="stable")
    expected = base.astype(np.int64)
    expected[order[: int(b - base.sum())]] += 1
    np.testing.assert_array_equal(shares_to_rbs(shares, b), expected)


@pytest.mark.parametrize(("shares", "b"), [([-0.1, 1.0], 5), ([np.nan, 1.0], 5), ([], 5),
                                           ([1.0], -1), ([1.0], 2.5)],
                         ids=["negative", "nan", "empty", "negative-b", "fractional-b"])
def test_shares_to_rbs_rejects_bad_input(shares: list[float], b: object) -> None:
    with pytest.raises(ValueError, match=r"shares|n_rbs"):
        shares_to_rbs(shares, b)  # type: ignore[arg-type]


def test_semantic_similarity_is_a_smooth_increasing_logistic() -> None:
    snr = np.linspace(-30, 40, 200)
    xi = semantic_similarity(snr, 0.25, 0.92, 0.45, -0.3)
    assert np.all(np.diff(xi) > 0) and xi.min() >= 0.25 and xi.max() <= 0.92
    mid = 0.3 / 0.45  # slope * snr + offset = 0
    assert semantic_similarity(mid, 0.25, 0.92, 0.45, -0.3) == pytest.approx((0.25 + 0.92) / 2)
    assert semantic_similarity(1e6, 0.2, 0.9, 1.0, 0.0) == pytest.approx(0.9)


# ----------------------------------------------------------------------------- physics


def test_slot_service_follows_shannon_rates_and_critical_priority() -> None:
    env = gym.make(ENV_ID)
    env.reset(seed=3)
    core = env.unwrapped.core
    c = core.config
    for _ in range(30):
        snr = core.snr_db[0].copy()
        content = core.queues.backlog[0] + core.pending[0]
        action = env.action_space.sample()
        rbs = shares_to_rbs((action.astype(np.float64) + 1.0) * 0.5, c.n_rbs)  # x = (a + 1) / 2
        xi = semantic_similarity(snr[0], c.sim_low, c.sim_high, c.sim_slope_per_db, c.sim_offset)
        _, rew, _, _, info = env.step(action)
        np.testing.assert_array_equal(info["rbs"], rbs)
        bits = rbs[1:] * c.rb_bandwidth_hz * c.slot_s * np.log2(1 + 10 ** (snr[1:] / 10))
        np.testing.assert_allclose(info["served"][2:], np.minimum(content[2:], bits), rtol=1e-9)
        words = rbs[0] * c.rb_bandwidth_hz * c.slot_s / c.symbols_per_word
        crit = min(words, content[0])
        assert info["served"][0] == pytest.approx(crit, rel=1e-9)
        assert info["served"][1] == pytest.approx(min(words - crit, content[1]), rel=1e-9)
        assert info["semantic_similarity"] == pytest.approx(xi, rel=1e-12)
        np.testing.assert_allclose(info["throughput"], [
            (info["served"][0] + info["served"][1]) * xi / c.slot_s,
            info["served"][2] / c.slot_s, info["served"][3] / c.slot_s], rtol=1e-9)
        assert np.all(info["delay_s"] <= np.array([0.13, 0.2, 0.01]) + 1e-12)
        terms = info["reward_terms"]
        assert rew == pytest.approx(terms["satisfaction"] + terms["violation"], rel=1e-12)
        assert 0.0 <= terms["satisfaction"] <= 1.0 and terms["violation"] <= 0.0


def test_starved_urllc_and_semantic_slices_violate_with_critical_weighting() -> None:
    env = gym.make(ENV_ID, semantic_delay_budget_s=0.01, embb_weight=0.0)
    env.reset(seed=0)
    core = env.unwrapped.core
    c = core.config
    pending = core.pending[0].copy()
    _, rew, _, _, info = env.step(np.array([-1.0, 1.0, -1.0], dtype=np.float32))
    np.testing.assert_array_equal(info["rbs"], [0, 50, 0])
    # Nothing served: every semantic word and URLLC bit misses its one-slot budget.
    np.testing.assert_allclose(info["sla_violations"][[0, 2]],
                               [pending[0] + pending[1], pending[3]])
    assert info["critical_violations"] == pytest.approx(pending[0])
    np.testing.assert_allclose(info["sla_satisfaction"][[0, 2]], [0.0, 0.0])
    w = c.critical_weight
    mean = core.mean_arrivals
    sem_v = (w * pending[0] + pending[1]) / (w * mean[0] + mean[1])
    urllc_v = pending[3] / mean[3]
    expected = -c.violation_penalty * (sem_v + urllc_v) / 2  # weights 1, 0, 1 normalised
    assert info["reward_terms"]["violation"] == pytest.approx(expected, rel=1e-9)
    assert info["reward_terms"]["satisfaction"] == pytest.approx(0.0)
    assert rew == pytest.approx(expected, rel=1e-9)


def test_semantic_words_below_min_similarity_are_violations() -> None:
    env = gym.make(ENV_ID, semantic_snr_db=-40.0, semantic_delay_budget_s=0.5)
    env.reset(seed=1)
    for _ in range(5):
        _, _, _, _, info = env.step(np.array([1.0, -1.0, -1.0], dtype=np.float32))
        assert info["semantic_similarity"] < 0.6
        served_sem = info["served"][0] + info["served"][1]
        assert served_sem > 0
        assert info["sla_violations"][0] == pytest.approx(served_sem + info["expired"][:2].sum())
        assert info["sla_satisfaction"][0] == 0.0


# ----------------------------------------------------------------------------- baselines


def test_slot_outcomes_are_what_the_step_reports() -> None:
    env = gym.make(ENV_ID)
    env.reset(seed=4)
    core = env.unwrapped.core
    rng = np.random.default_rng(0)
    for _ in range(30):
        candidates = rng.uniform(-1, 1, (5, 3)).astype(np.float32)
        before = core.queues.storage.copy(), core.pending.copy(), core.xi.copy()
        out = core.slot_outcomes(0, candidates)
        # Nothing of the env changed ...
        np.testing.assert_array_equal(core.queues.storage, before[0])
        np.testing.assert_array_equal(core.pending, before[1])
        np.testing.assert_array_equal(core.xi, before[2])
        # ... and the step of candidate 2 reports exactly its outcome.
        _, reward, *_, info = env.step(candidates[2])
        assert reward == out["reward"][2]
        np.testing.assert_array_equal(info["served"], out["served"][2])
        np.testing.assert_array_equal(core.queues.backlog[0], out["backlog"][2])


def test_slot_oracle_searches_every_split_and_beats_every_baseline() -> None:
    env = gym.make(ENV_ID, n_rbs=6)
    oracle = make_baseline("slot-oracle", env)
    assert len(oracle.splits) == 28 and (oracle.splits.sum(1) == 6).all()
    assert len({tuple(x) for x in oracle.splits}) == 28
    obs, _ = env.reset(seed=1)
    core = env.unwrapped.core
    for _ in range(10):  # each candidate action gives the split it stands for
        a, _ = oracle.predict(obs)
        out = core.slot_outcomes(0, oracle._actions)
        assert out["reward"][np.flatnonzero((oracle._actions == a).all(1))[0]] \
            == out["reward"].max()
        obs, _, _, _, info = env.step(a)
        assert tuple(info["rbs"]) in {tuple(x) for x in oracle.splits}
    env = gym.make(ENV_ID, max_episode_steps=60)
    seeds = range(3000, 3004)
    scores = {name: baseline_returns(env, name, seeds, range(4)).mean()
              for name in baseline_names(env)}
    assert scores["slot-oracle"] > max(v for k, v in scores.items() if k != "slot-oracle")
    with pytest.raises(ValueError, match="serve_weight"):
        make_baseline("slot-oracle", env, serve_weight=-1.0)
    with pytest.raises(ValueError, match="single"):
        SlotOraclePolicy(gym.make("CartPole-v1"))


def test_best_baseline_beats_random_clearly_over_20_episodes() -> None:
    env = gym.make(ENV_ID)
    assert baseline_names(env) == ["equal-split", "proportional", "random",
                                   "semantic-priority", "slot-oracle"]
    random_score, best_score = (baseline_returns(env, name, range(2000, 2020), range(20)).mean()
                                for name in ("random", "semantic-priority"))
    assert best_score > random_score + 0.2 * abs(random_score)


def test_proportional_splits_equally_on_empty_queues() -> None:
    env = gym.make(ENV_ID)
    obs = np.zeros(15, dtype=np.float32)  # empty queues -> equal split
    np.testing.assert_allclose(make_baseline("proportional", env).predict(obs)[0], 1.0)


# ----------------------------------------------------------------------------- bad input


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3).filter(
    lambda a: not all(-1.0 <= x <= 1.0 for x in a)))
def test_fuzzed_out_of_space_actions_raise(action: list[float]) -> None:
    env = SemanticSlicingEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.array(action))


@pytest.mark.parametrize(("field", "value"), [("n_rbs", 0), ("n_rbs", 3.0), ("slot_s", 0.0),
                                              ("critical_weight", 0.5),
                                              ("sim_high", 1.5), ("min_similarity", -0.1),
                                              ("urllc_delay_budget_s", 0.001),
                                              ("embb_load_bps", float("nan")),
                                              ("urllc_load_bps", 1e11)],
                         ids=lambda x: str(x))
def test_invalid_config_values_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        gym.make(ENV_ID, **{field: value})


def test_cross_field_config_checks() -> None:
    with pytest.raises(ValueError, match="sim_high"):
        SemanticSlicingConfig(sim_low=0.8, sim_high=0.5)
    with pytest.raises(ValueError, match="must not all be 0"):
        SemanticSlicingConfig(semantic_weight=0.0, embb_weight=0.0, urllc_weight=0.0)
    env = gym.make(ENV_ID)
    with pytest.raises(ValueError, match="reset options"):
        env.reset(options={"queues": 0})


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["rb_bandwidth_hz", "symbols_per_word", "words_per_message",
                        "routine_msg_rate", "semantic_snr_db", "violation_penalty"]),
       st.one_of(st.floats(max_value=-100.0), st.floats(min_value=1e13, allow_infinity=True),
                 st.just(float("nan"))))
def test_fuzzed_invalid_configs_raise(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SemanticSlicingConfig(**{field: value})


# ----------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("kwargs", EXTREME.values(), ids=EXTREME.keys())
def test_extreme_configs_keep_observations_in_space_and_rewards_finite(kwargs: dict) -> None:
    def check(obs: np.ndarray, rew: np.ndarray, info: dict) -> None:
        assert np.all(np.isfinite(info["throughput"]))

    venv = SemanticSlicingVectorEnv(num_envs=4, max_episode_steps=100, **kwargs,
                                    autoreset_mode=SAME)
    assert_rollout_in_space(venv, seed=2, steps=250, check=check)
    venv = SemanticSlicingVectorEnv(num_envs=4, max_episode_steps=200, **kwargs,
                                    autoreset_mode=SAME)
    zeros = np.zeros((4, 3), dtype=np.float32)  # all-zero shares (equal split) work too
    assert_rollout_in_space(venv, seed=3, steps=50, actions=lambda t: zeros)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 200), st.floats(0.0, 1e3), st.floats(0.0, 1e3), st.floats(0.0, 1e9),
       st.floats(0.0, 5e8), st.floats(-50.0, 80.0), st.floats(0.1, 1000.0),
       st.integers(0, 2**16))
def test_fuzzed_valid_configs_stay_in_space_and_finite(n_rbs: int, crit: float, routine: float,
                                                       embb: float, urllc: float, snr: float,
                                                       k: float, seed: int) -> None:
    env = SemanticSlicingEnv(n_rbs=n_rbs, critical_msg_rate=crit, routine_msg_rate=routine,
                             embb_load_bps=embb, urllc_load_bps=urllc, semantic_snr_db=snr,
                             urllc_snr_db=snr, symbols_per_word=k)

    def check(obs: np.ndarray, rew: float, info: dict) -> None:
        assert info["rbs"].sum() == n_rbs

    assert_rollout_in_space(env, seed=seed, steps=15, check=check)


def test_render_ansi_names_the_slices() -> None:
    text = render_after_step(ENV_ID, "ansi")
    assert "semantic-critical" in text and "urllc" in text and "RBs" in text
