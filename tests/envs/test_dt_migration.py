"""Tests of ``qdrl/DTMigration-v0``: physics, baselines, bad input, extremes.

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
from qdrl_envs.dt_migration import (
    DTMigrationConfig,
    DTMigrationCore,
    DTMigrationEnv,
    DTMigrationVectorEnv,
    ring_hops,
)
from tests.envs.helpers import (
    assert_rgb_frame,
    assert_rollout_in_space,
    baseline_returns,
    render_after_step,
)

SAME = AutoresetMode.SAME_STEP  # these tests read final_obs / every step's info

ENV_ID = "qdrl/DTMigration-v0"

EXTREME = {
    "heavy-load": {"task_rate": 300.0, "edge_capacity_twins": 1, "n_users": 8},
    "no-tasks": {"task_rate": 0.0},
    "deep-fade": {"tx_power_dbm": -30.0, "cell_radius_m": 1e5, "path_loss_exponent": 6.0},
    "one-edge": {"n_edges": 1, "n_users": 1, "edge_capacity_twins": 1, "p_stay": 0.0},
    "free-everything": {"beta_migration": 0.0, "gamma_energy": 0.0, "overload_penalty": 0.0,
                        "twin_state_bits": 0.0, "hop_delay_s": 0.0, "cloud_delay_s": 0.0},
}


# ----------------------------------------------------------------------------- physics


def _core(**kwargs: object) -> DTMigrationCore:
    return DTMigrationCore(DTMigrationConfig(**kwargs), 1)


def test_processor_sharing_n_equal_tasks_take_n_times_the_solo_time() -> None:
    u = 5
    core = _core(n_users=u, edge_capacity_twins=u, n_edges=3)
    solo_edge = core.config.cycles_per_bit * core.config.task_bits / core.config.edge_cpu_hz
    solo_cloud = core.config.cycles_per_bit * core.config.task_bits / core.config.cloud_cpu_hz
    area = np.zeros((1, u), dtype=np.int64)
    huge_rate = np.full((1, u), 1e30)  # no uplink time
    for n in range(1, u + 1):
        tasks = np.zeros((1, u), dtype=np.int64)
        tasks[0, :n] = 1
        host = np.zeros((1, u), dtype=np.int64)
        ev = core.evaluate(host, host, area, tasks, huge_rate)
        np.testing.assert_allclose(ev.user_latency_s[0, :n], n * solo_edge, rtol=1e-12)
        np.testing.assert_allclose(ev.latency_s, n * solo_edge, rtol=1e-12)
        cloud = np.full((1, u), 3)
        ev = core.evaluate(cloud, cloud, area, tasks, huge_rate)
        far = core.config.cloud_delay_s + core.config.task_bits / core.config.cloud_link_bps
        np.testing.assert_allclose(ev.user_latency_s[0, :n], far + n * solo_cloud, rtol=1e-12)
    # One user with k tasks shares every stage among them: all k finish at k x solo.
    tasks = np.array([[4, 0, 0, 0, 0]])
    rate = np.full((1, u), 1e7)
    ev = core.evaluate(np.zeros((1, u), np.int64), np.zeros((1, u), np.int64), area, tasks, rate)
    expected = 4 * core.config.task_bits / 1e7 + 4 * solo_edge
    assert ev.user_latency_s[0, 0] == pytest.approx(expected, rel=1e-12)


def test_backhaul_latency_migration_cost_and_energy_closed_forms() -> None:
    c = DTMigrationConfig(n_edges=5, n_users=1, edge_capacity_twins=1)
    core = DTMigrationCore(c, 1)
    np.testing.assert_array_equal(ring_hops(5)[0], [0, 1, 2, 2, 1])
    area = np.array([[0]])
    tasks = np.array([[1]])
    rate = np.array([[50e6]])
    solo = c.cycles_per_bit * c.task_bits / c.edge_cpu_hz
    # Twin on edge 2 (two hops away), staying there.
    ev = core.evaluate(np.array([[2]]), np.array([[2]]), area, tasks, rate)
    expected = c.task_bits / 50e6 + 2 * (c.hop_delay_s + c.task_bits / c.edge_link_bps) + solo
    assert ev.user_latency_s[0, 0] == pytest.approx(expected, rel=1e-12)
    assert ev.downtime_s[0] == 0.0 and not ev.migrated[0, 0]
    e_task = 2 * c.hop_energy_j_per_bit * c.task_bits + c.cycles_per_bit * c.task_bits \
        * c.edge_energy_j_per_cycle
    assert ev.energy_j[0] == pytest.approx(e_task, rel=1e-12)
    # Migrate 2 -> 0 (two hops): downtime = 2 (delay + S / rate), energy = 2 S e_hop.
    ev = core.evaluate(np.array([[0]]), np.array([[2]]), area, tasks, rate)
    assert ev.migrated[0, 0]
    assert ev.downtime_s[0] == pytest.approx(
        2 * (c.hop_delay_s + c.twin_state_bits / c.edge_link_bps), rel=1e-12)
    e_mig = 2 * c.twin_state_bits * c.hop_energy_j_per_bit
    e_local = c.cycles_per_bit * c.task_bits * c.edge_energy_j_per_cycle
    assert ev.energy_j[0] == pytest.approx(e_mig + e_local, rel=1e-12)
    # Migrate to the cloud.
    ev = core.evaluate(np.array([[5]]), np.array([[0]]), area, tasks, rate)
    assert ev.downtime_s[0] == pytest.approx(
        c.cloud_delay_s + c.twin_state_bits / c.cloud_link_bps, rel=1e-12)
    # The reward is the sum of its documented terms.
    terms = ev.reward_terms
    assert ev.reward[0] == pytest.approx(sum(v[0] for v in terms.values()), rel=1e-12)
    assert terms["latency"][0] == pytest.approx(-ev.latency_s[0] / c.latency_scale_s)
    assert terms["migration"][0] == pytest.approx(
        -c.beta_migration * ev.downtime_s[0] / c.latency_scale_s)
    assert terms["energy"][0] == pytest.approx(-c.gamma_energy * ev.energy_j[0])


def test_evaluate_rejects_bad_shapes_and_indices_and_broadcasts_the_rest() -> None:
    core = _core(n_users=3, n_edges=2)
    area = np.zeros((1, 3), dtype=np.int64)
    tasks = np.ones((1, 3), dtype=np.int64)
    rate = np.full((1, 3), 1e8)
    with pytest.raises(ValueError, match=r"shape \(M, 3\)"):
        core.evaluate(np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64), area[:, :2],
                      tasks[:, :2], rate[:, :2])
    with pytest.raises(ValueError, match=r"target must be in \[0, 2\]"):
        core.evaluate(np.array([[0, 3, 0]]), area, area, tasks, rate)
    with pytest.raises(ValueError, match=r"area must be in \[0, 1\]"):
        core.evaluate(area, area, np.array([[0, 2, 0]]), tasks, rate)
    # One current placement scored against several candidates at once.
    candidates = np.array([[0, 0, 0], [2, 2, 2], [1, 1, 1]])
    ev = core.evaluate(candidates, area, area, tasks, rate)
    assert ev.reward.shape == (3,)
    single = [core.evaluate(c[None], area, area, tasks, rate).reward[0] for c in candidates]
    np.testing.assert_array_equal(ev.reward, single)


def test_admission_refuses_over_capacity_placements_in_user_order() -> None:
    core = _core(n_edges=3, n_users=3, edge_capacity_twins=1)
    host = np.array([[0, 1, 3]])  # edge 2 free, cloud index 3
    area = np.zeros((1, 3), dtype=np.int64)
    tasks = np.ones((1, 3), dtype=np.int64)
    rate = np.full((1, 3), 1e8)
    # Users 0 and 2 both ask for edge 2: user 0 gets it, user 2 is refused and stays in cloud.
    ev = core.evaluate(np.array([[2, 1, 2]]), host, area, tasks, rate)
    np.testing.assert_array_equal(ev.host, [[2, 1, 3]])
    np.testing.assert_array_equal(ev.refused, [[False, False, True]])
    assert ev.reward_terms["overload"][0] == pytest.approx(-core.config.overload_penalty / 3)
    # A swap between two full edges is refused both ways (capacity free at slot start only).
    ev = core.evaluate(np.array([[1, 0, 3]]), host, area, tasks, rate)
    np.testing.assert_array_equal(ev.host, host)
    assert ev.refused.sum() == 2
    # Stepping the env: occupancy never exceeds capacity.
    env = gym.make(ENV_ID, n_edges=3, n_users=6, edge_capacity_twins=1)
    env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(50):
        _, _, _, _, info = env.step(env.action_space.sample())
        occ = np.bincount(info["hosts"], minlength=4)
        assert occ[:3].max() <= 1


def test_uplink_rate_is_the_shannon_rate_of_the_observed_snr() -> None:
    env = gym.make(ENV_ID)
    env.reset(seed=5)
    core = env.unwrapped.core
    snr = 10 ** (core.snr_db / 10)
    np.testing.assert_allclose(core.uplink_bps, core.config.bandwidth_hz * np.log2(1 + snr),
                               rtol=1e-9)
    # One user who never moves, its twin on its access edge: latency = D / r + solo compute.
    env = gym.make(ENV_ID, n_users=1, n_edges=2, p_stay=1.0)
    env.reset(seed=2)
    core = env.unwrapped.core
    assert core.host[0, 0] == core.area[0, 0]
    while core.tasks[0, 0] != 1:
        env.step(core.host[0].copy())
    r = core.uplink_bps[0, 0]
    c = core.config
    _, _, _, _, info = env.step(core.host[0].copy())
    expected = c.task_bits / r + c.cycles_per_bit * c.task_bits / c.edge_cpu_hz
    assert info["latency_s"] == pytest.approx(min(expected, c.max_latency_s), rel=1e-9)


# ----------------------------------------------------------------------------- baselines


def test_best_baseline_beats_random_clearly_over_20_episodes() -> None:
    env = gym.make(ENV_ID)
    assert baseline_names(env) == ["cloud-only", "follow-me", "greedy", "never-migrate",
                                   "random"]
    random_score, greedy_score, follow_score = (
        baseline_returns(env, name, range(1000, 1020), range(20)).mean()
        for name in ("random", "greedy", "follow-me"))
    assert greedy_score > random_score + 0.3 * abs(random_score)
    assert follow_score > random_score + 0.3 * abs(random_score)


def test_simple_baselines_behave_as_documented() -> None:
    env = gym.make(ENV_ID, n_edges=3, n_users=6, edge_capacity_twins=2)
    never = make_baseline("never-migrate", env)
    cloud = make_baseline("cloud-only", env)
    follow = make_baseline("follow-me", env)
    obs, _ = env.reset(seed=0)
    start = env.unwrapped.core.host[0].copy()
    for _ in range(20):
        obs, _, _, _, info = env.step(never.predict(obs)[0])
        assert info["migrations"] == 0 and info["overloads"] == 0
    np.testing.assert_array_equal(info["hosts"], start)
    for _ in range(20):
        obs, _, _, _, info = env.step(follow.predict(obs)[0])
        assert info["overloads"] == 0
    obs, _, _, _, info = env.step(cloud.predict(obs)[0])
    np.testing.assert_array_equal(info["hosts"], 3)
    batch = np.stack([obs, obs])
    assert follow.predict(batch)[0].shape == (2, 6)
    with pytest.raises(ValueError, match="cannot act on a batch"):
        make_baseline("greedy", env).predict(batch)


# ----------------------------------------------------------------------------- bad input


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-5, 12), min_size=6, max_size=6).filter(
    lambda a: min(a) < 0 or max(a) > 4))
def test_fuzzed_out_of_space_actions_raise(action: list[int]) -> None:
    env = DTMigrationEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.array(action))


@pytest.mark.parametrize(("field", "value"), [("n_edges", 0), ("n_users", 33),
                                              ("p_stay", 1.5), ("task_rate", -1.0),
                                              ("edge_cpu_hz", float("nan")),
                                              ("max_latency_s", 0.0), ("n_users", 2.5),
                                              ("beta_migration", -0.1)],
                         ids=lambda x: str(x))
def test_invalid_config_values_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        gym.make(ENV_ID, **{field: value})


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["task_rate", "p_stay", "hop_delay_s", "latency_scale_s"]),
       st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1e5, allow_infinity=True),
                 st.just(float("nan"))))
def test_fuzzed_invalid_configs_raise(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        DTMigrationConfig(**{field: value})


@pytest.mark.parametrize("field", ["latency_scale_s", "energy_scale_j"])
def test_reward_scales_have_a_lower_bound_that_keeps_rewards_finite(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DTMigrationConfig(**{field: 5e-324})
    env = gym.make(ENV_ID, **{field: 1e-9 if field == "energy_scale_j" else 1e-6})
    env.reset(seed=0)
    for _ in range(5):
        _, reward, *_ = env.step(env.action_space.sample())
        assert np.isfinite(reward)


def test_unknown_reset_options_raise() -> None:
    env = gym.make(ENV_ID)
    with pytest.raises(ValueError, match="reset options"):
        env.reset(options={"area": [0]})


# ----------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("kwargs", EXTREME.values(), ids=EXTREME.keys())
def test_extreme_configs_keep_observations_in_space_and_rewards_finite(kwargs: dict) -> None:
    venv = DTMigrationVectorEnv(num_envs=4, max_episode_steps=60, **kwargs, autoreset_mode=SAME)

    def check(obs: np.ndarray, rew: np.ndarray, info: dict) -> None:
        assert np.all(info["latency_s"] <= venv.config.max_latency_s)

    assert_rollout_in_space(venv, seed=1, steps=240, check=check)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 8), st.integers(1, 10), st.integers(1, 4), st.floats(0.0, 200.0),
       st.floats(-30.0, 60.0), st.floats(1.0, 1e5), st.floats(0.0, 1.0), st.integers(0, 2**16))
def test_fuzzed_valid_configs_stay_in_space_and_finite(n_edges: int, n_users: int, cap: int,
                                                       rate: float, power: float, radius: float,
                                                       p_stay: float, seed: int) -> None:
    env = DTMigrationEnv(n_edges=n_edges, n_users=n_users, edge_capacity_twins=cap,
                         task_rate=rate, tx_power_dbm=power, cell_radius_m=radius, p_stay=p_stay)

    def check(obs: np.ndarray, rew: float, info: dict) -> None:
        occ = np.bincount(info["hosts"], minlength=n_edges + 1)
        assert occ[:n_edges].max() <= cap

    assert_rollout_in_space(env, seed=seed, steps=15, check=check)


def test_render_modes() -> None:
    text = render_after_step(ENV_ID, "ansi")
    assert "DTMigration" in text and "cloud" in text and "latency" in text
    # test_envs.py renders the default layout; five edges draw another ring.
    assert_rgb_frame(render_after_step(ENV_ID, "rgb_array", n_edges=5))
