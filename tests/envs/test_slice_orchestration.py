"""Tests of the multi-agent qdrl/SliceOrchestration-v0 (PettingZoo ParallelEnv, Sec. VII-B)."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test
from pettingzoo.utils.conversions import parallel_to_aec_wrapper

import qdrl_envs
from qdrl_envs import marl, radio
from qdrl_envs.semantic_slicing import SemanticSlicingConfig, SemanticSlicingEnv
from qdrl_envs.slice_orchestration import (
    SliceOrchestrationConfig,
    SliceOrchestrationCore,
    SliceOrchestrationEnv,
    active_rbs,
    cell_generators,
    coupling_matrix,
    intercell_interference,
    neighbour_slots,
    parallel_env,
    slice_bands,
)
from qdrl_envs.slice_orchestration import env as aec_env
from tests.envs.helpers import assert_rgb_frame, assert_same, config_or_field_error, invalid_actions

ENV_ID = "qdrl/SliceOrchestration-v0"

SMALL = {"n_rbs": 12, "critical_msg_rate": 3.0, "routine_msg_rate": 10.0,
         "embb_load_bps": 4e6, "urllc_load_bps": 1e6, "slot_s": 0.005}
"""SemanticSlicing's "small-cell" config: few RBs, so every split can be searched fast."""

CONFIGS = {
    "default": {},
    "two-cells-team": {"n_cells": 2, "reward_mode": "team", "coupling": 1.0},
    "line4-loads": {"n_cells": 4, "topology": "line", "cell_load_scales": (1.0, 0.5, 2.0, 0.0)},
    "full4-no-neighbour-obs": {"n_cells": 4, "topology": "full", "neighbour_obs": False},
    "one-cell": {"n_cells": 1},
    "small-decoupled": {**SMALL, "coupling": 0.0},
}
CASES = list(CONFIGS.items())
IDS = list(CONFIGS)

CELL_INFO_KEYS = ("rbs", "throughput", "delay_s", "semantic_similarity", "sla_violations",
                  "critical_violations", "sla_satisfaction", "served", "expired",
                  "reward_terms")


def _known_option_warning():
    """PettingZoo's API tests pass ``options={"options": 1}``: ignored with a warning."""
    return pytest.warns(UserWarning, match=r"reset option\(s\) \['options'\] ignored")


def _actions(env, rng, agents=None):
    """Uniform actions from a seeded generator (the spaces' own samplers are not seeded)."""
    return {a: rng.uniform(-1.0, 1.0, 3).astype(np.float32)
            for a in (env.agents if agents is None else agents)}


def _rollout(env, seed, steps, action_seed=0):
    rng = np.random.default_rng(action_seed)
    records = [env.reset(seed=seed)]
    for _ in range(steps):
        records.append(env.step(_actions(env, rng)))
        if not env.agents:
            break
    return records


# --------------------------------------------------------------------------------------------
# PettingZoo's own conformance tests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=IDS)
def test_parallel_api(name, kwargs):
    env = parallel_env(**kwargs, max_cycles=30)
    with _known_option_warning():
        parallel_api_test(env, num_cycles=40)


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=IDS)
def test_aec_api(name, kwargs):
    env = aec_env(**kwargs, max_cycles=30)
    assert isinstance(env.unwrapped, SliceOrchestrationEnv)
    with _known_option_warning():
        api_test(env, num_cycles=40)


@pytest.mark.parametrize(("name", "kwargs"), CASES[:3], ids=IDS[:3])
def test_pettingzoo_seed_tests(name, kwargs):
    parallel_seed_test(lambda: parallel_env(**kwargs, max_cycles=20), num_cycles=20)
    seed_test(lambda: aec_env(**kwargs, max_cycles=20), num_cycles=20)


# --------------------------------------------------------------------------------------------
# Spaces, topology, registry, determinism, episode end
# --------------------------------------------------------------------------------------------


def test_topologies_and_coupling_matrix():
    assert neighbour_slots(4, "ring") == ((3, 1), (0, 2), (1, 3), (2, 0))
    assert neighbour_slots(2, "ring") == ((1,), (0,))
    assert neighbour_slots(1, "ring") == ((),) == neighbour_slots(1, "line")
    assert neighbour_slots(3, "line") == ((-1, 1), (0, 2), (1, -1))
    assert neighbour_slots(3, "full") == ((1, 2), (2, 0), (0, 1))
    np.testing.assert_array_equal(coupling_matrix(3, "line", 2.0),
                                  [[0, 2, 0], [2, 0, 2], [0, 2, 0]])
    np.testing.assert_array_equal(coupling_matrix(2, "ring", 1.5), [[0, 1.5], [1.5, 0]])
    np.testing.assert_array_equal(coupling_matrix(4, "full", 1.0), 1 - np.eye(4))
    assert not coupling_matrix(5, "ring", 0.0).any()
    with pytest.raises(ValueError, match="topology"):
        neighbour_slots(3, "star")
    with pytest.raises(ValueError, match="coupling"):
        coupling_matrix(3, "ring", -1.0)


@pytest.mark.parametrize(("kwargs", "dim", "slots"), [
    ({}, 30, ("cell_2", "cell_1")),
    ({"n_cells": 2}, 24, ("cell_1",)),
    ({"n_cells": 4, "topology": "line"}, 30, (None, "cell_1")),
    ({"n_cells": 4, "topology": "full"}, 36, ("cell_1", "cell_2", "cell_3")),
    ({"n_cells": 4, "neighbour_obs": False}, 18, ("cell_3", "cell_1")),
    ({"n_cells": 1}, 18, ()),
])
def test_spaces_and_neighbours(kwargs, dim, slots):
    env = parallel_env(**kwargs)
    n = env.config.n_cells
    assert env.possible_agents == [f"cell_{i}" for i in range(n)]
    assert env.metadata["name"] == "slice_orchestration_v0"
    assert env.neighbours("cell_0") == slots
    for a in env.possible_agents:
        assert env.observation_space(a) is env.observation_space(a)
        assert env.action_space(a) is env.action_space(a)
        assert env.observation_space(a) == gym.spaces.Box(0, 1, (dim,), np.float32)
        assert env.action_space(a) == gym.spaces.Box(-1, 1, (3,), np.float32)
    assert env.state_space == gym.spaces.Box(0, 1, (18 * n,), np.float32)
    with pytest.raises(ValueError, match=r"unknown agent 'cell_9'.*cell_0"):
        env.action_space("cell_9")
    with pytest.raises(ValueError, match="unknown agent"):
        env.observation_space("ap_0")


def test_registry():
    assert ENV_ID in qdrl_envs.MARL_ENV_IDS
    par = qdrl_envs.make_parallel(ENV_ID, n_cells=2, render_mode="ansi")
    assert isinstance(par, SliceOrchestrationEnv) and par.config.n_cells == 2
    aec = qdrl_envs.make_aec(ENV_ID, n_cells=2)
    assert isinstance(aec.unwrapped, SliceOrchestrationEnv)
    assert marl.marl_entry(aec).id == ENV_ID and marl.marl_entry(par).id == ENV_ID
    assert marl.marl_entry(ENV_ID).max_cycles == SliceOrchestrationConfig().max_cycles
    with pytest.raises(ValueError, match="unknown SliceOrchestrationConfig field"):
        qdrl_envs.make_parallel(ENV_ID, n_cell=3)
    assert ENV_ID not in gym.registry  # not a Gymnasium env


@pytest.mark.parametrize(("name", "kwargs"), CASES[:4], ids=IDS[:4])
def test_seeded_determinism(name, kwargs):
    a = _rollout(parallel_env(**kwargs), seed=7, steps=25)
    b = _rollout(parallel_env(**kwargs), seed=7, steps=25)
    assert_same(a, b)
    c = _rollout(parallel_env(**kwargs), seed=8, steps=1)
    assert not np.array_equal(a[1][0]["cell_0"], c[1][0]["cell_0"])
    # A reset without a seed carries on the generators; reseeding repeats the episode.
    env = parallel_env(**kwargs)
    first = _rollout(env, seed=3, steps=2)
    again = _rollout(env, seed=None, steps=2)
    assert not np.array_equal(first[1][0]["cell_0"], again[1][0]["cell_0"])
    assert_same(_rollout(env, seed=3, steps=2), first)
    assert env.np_random_seed == 3


def test_cells_draw_independent_streams():
    """Not each other's, nor those of seed + i (runs with consecutive seeds share nothing)."""
    obs = parallel_env().reset(seed=5)[0]
    shifted = parallel_env().reset(seed=6)[0]
    assert not np.array_equal(obs["cell_1"][:15], obs["cell_0"][:15])
    assert not np.array_equal(obs["cell_1"][:15], shifted["cell_0"][:15])


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=IDS)
def test_observations_infos_and_truncation(name, kwargs):
    env = parallel_env(**kwargs, max_cycles=5)
    obs, infos = env.reset(seed=0)
    n = env.config.n_cells
    assert set(obs) == set(infos) == set(env.possible_agents) and env.agents == env.possible_agents
    for a in env.agents:
        assert not obs[a][15:18].any()  # no interference before the first slot
    rng = np.random.default_rng(1)
    for t in range(1, 6):
        state = env.state()
        assert env.state_space.contains(state)
        for i, a in enumerate(env.agents):
            assert obs[a].dtype == np.float32 and env.observation_space(a).contains(obs[a])
            np.testing.assert_array_equal(obs[a][:18], state[18 * i:18 * (i + 1)])
            np.testing.assert_array_equal(obs[a][:15], env.core.cells[i].observe()[0])
            for k, nb in enumerate(env.neighbours(a) if env.config.neighbour_obs else ()):
                block = obs[a][18 + 6 * k:24 + 6 * k]
                if nb is None:
                    assert not block.any()
                else:  # its demand, then its last split, which sums to 1
                    np.testing.assert_array_equal(block[3:], obs[nb][12:15])
                    assert block[3:].sum() == pytest.approx(1.0, abs=1e-5)
        obs, rewards, terms, truncs, infos = env.step(_actions(env, rng))
        assert set(rewards) == set(terms) == set(truncs) == set(infos) == set(env.possible_agents)
        assert not any(terms.values())
        assert all(truncs.values()) == (t == 5) and any(truncs.values()) == (t == 5)
        team = infos["cell_0"]["team_reward"]
        assert team == pytest.approx(np.mean([i["cell_reward"] for i in infos.values()]),
                                     rel=1e-12, abs=1e-12)
        for a, info in infos.items():
            assert type(rewards[a]) is float and np.isfinite(rewards[a])
            assert rewards[a] == (team if env.config.reward_mode == "team"
                                  else info["cell_reward"])
            assert info["team_reward"] == team
            assert set(CELL_INFO_KEYS) <= set(info)
            assert info["rbs"].sum() == env.config.n_rbs
            assert (0 <= info["active_rbs"]).all() and (info["active_rbs"] <= info["rbs"]).all()
            assert (info["interference"] >= 0).all() and (info["sinr_db"] <= info["snr_db"]).all()
            np.testing.assert_allclose(info["sinr_db"], info["snr_db"]
                                       - radio.linear_to_db(1.0 + info["interference"]),
                                       rtol=0, atol=1e-9)
            np.testing.assert_allclose(obs[a][15:18],
                                       info["interference"] / (1 + info["interference"]),
                                       rtol=1e-6)
        if n == 1 or env.config.coupling == 0:
            assert all(not i["interference"].any() for i in infos.values())
    assert env.agents == []
    with pytest.raises(RuntimeError, match="episode ended"):
        env.step({})
    assert env.reset(seed=1)[0].keys() == set(env.possible_agents)


# --------------------------------------------------------------------------------------------
# Decoupled cells are SemanticSlicing-v1, bit for bit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"coupling": 0.0},
    {"coupling": 0.0, "n_cells": 4, "topology": "full", "cell_load_scales": (1, 0.3, 2, 1)},
    {**SMALL, "coupling": 0.0, "n_cells": 2, "urllc_weight": 3.0},
    # Coupled, but the neighbours have no traffic: nothing ever hits cell 0.
    {"coupling": 50.0, "cell_load_scales": (1.0, 0.0, 0.0)},
], ids=["default", "full4-loads", "small", "idle-neighbours"])
def test_decoupled_cells_are_semantic_slicing_bit_for_bit(kwargs):
    """Each cell is SemanticSlicing-v1 (its cell config) driven by the cell's generator."""
    multi = parallel_env(**kwargs)
    n = multi.config.n_cells
    cells = range(1) if kwargs["coupling"] else range(n)
    rng = np.random.default_rng(5)
    seed = 21
    singles = {}
    for i in cells:
        single = SemanticSlicingEnv(config=multi.cell_config(f"cell_{i}"))
        single.np_random = cell_generators(seed, n)[i]
        singles[i] = single
    for episode in range(2):  # the second reset is unseeded: the generators carry on
        obs, _ = multi.reset(seed=seed if episode == 0 else None)
        first = {i: s.reset()[0] for i, s in singles.items()}
        for i in cells:
            np.testing.assert_array_equal(obs[f"cell_{i}"][:15], first[i], strict=True)
        for _ in range(30):
            actions = _actions(multi, rng)
            obs, rewards, _, _, infos = multi.step(actions)
            for i, single in singles.items():
                a = f"cell_{i}"
                s_obs, s_reward, _, _, s_info = single.step(actions[a])
                np.testing.assert_array_equal(obs[a][:15], s_obs, strict=True)
                assert rewards[a] == s_reward
                assert_same({k: infos[a][k] for k in s_info}, s_info, a)
                assert not infos[a]["interference"].any()
                np.testing.assert_array_equal(infos[a]["sinr_db"], infos[a]["snr_db"])
    assert set(singles[0].unwrapped.config.to_dict()) == set(SemanticSlicingConfig.field_names())


def test_cell_configs_scale_the_loads():
    cfg = SliceOrchestrationConfig(n_cells=2, cell_load_scales=(0.5, 2.0), embb_snr_db=12.0)
    c0, c1 = cfg.cell_config(0), cfg.cell_config(1)
    assert c0.embb_snr_db == c1.embb_snr_db == 12.0
    assert c0.embb_load_bps == 10e6 and c1.embb_load_bps == 40e6
    assert c0.critical_msg_rate == 10.0 and c1.routine_msg_rate == 200.0
    assert SliceOrchestrationConfig().cell_config(2) == SemanticSlicingConfig()
    assert SliceOrchestrationConfig(n_cells=2, cell_load_scales=[1, 1]).cell_load_scales == (1, 1)
    with pytest.raises(ValueError, match="cell"):
        cfg.cell_config(2)


# --------------------------------------------------------------------------------------------
# The interference model
# --------------------------------------------------------------------------------------------


def test_slice_bands_and_active_rbs():
    start, end = slice_bands([[10, 25, 15], [0, 50, 0]])
    np.testing.assert_array_equal(start, [[0, 10, 35], [0, 0, 50]])
    np.testing.assert_array_equal(end, [[10, 35, 50], [0, 50, 50]])
    # ceil(units / per-RB), at most the slice's RBs; nothing waiting: idle; no capacity: all.
    np.testing.assert_array_equal(active_rbs([10, 25, 15], [450.0, 1e9, 0.0], [225.0, 9e3, 6e3]),
                                  [2, 25, 0])
    np.testing.assert_array_equal(active_rbs([4, 4, 4], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]),
                                  [4, 0, 1])


def test_interference_hand_computed():
    kappa = coupling_matrix(2, "ring", 2.0)
    # Same split, neighbour loads 5 of its 10 semantic RBs and all of its eMBB RBs.
    rbs = np.array([[10, 30, 10], [10, 30, 10]])
    active = np.array([[10, 30, 10], [5, 30, 0]])
    got = intercell_interference(rbs, active, kappa)
    np.testing.assert_allclose(got[0], [2.0 * 0.5, 2.0 * 1.0, 0.0])
    np.testing.assert_allclose(got[1], [2.0, 2.0, 2.0])
    # Cell 1 shifts its loaded eMBB over cell 0's semantic RBs: semantic RBs [0, 10) of cell 0
    # now meet cell 1's semantic [0, 2) (idle) and eMBB [2, 12) (fully active).
    rbs = np.array([[10, 30, 10], [2, 10, 38]])
    active = np.array([[10, 30, 10], [0, 10, 0]])
    got = intercell_interference(rbs, active, kappa)
    np.testing.assert_allclose(got[0], [2.0 * 8 / 10, 2.0 * 2 / 30, 0.0])
    # Cell 1's slices: semantic [0, 2) under cell 0's full semantic; URLLC [12, 50) meets
    # cell 0's eMBB [10, 40) on 28 RBs and URLLC [40, 50) on 10, all active.
    np.testing.assert_allclose(got[1], [2.0, 2.0, 2.0 * (28 + 10) / 38])
    # An empty slice sees nothing; idle neighbours cause nothing; no coupling, nothing.
    np.testing.assert_array_equal(intercell_interference([[0, 50, 0], [25, 0, 25]],
                                                         [[0, 50, 0], [25, 0, 25]], kappa)[0],
                                  [0.0, 2.0, 0.0])
    assert not intercell_interference(rbs, np.array([[10, 30, 10], [0, 0, 0]]), kappa)[0].any()
    assert not intercell_interference(rbs, active, np.zeros((2, 2))).any()
    # Batched: candidates on a leading axis.
    batch = intercell_interference(np.stack([rbs] * 4), np.stack([active] * 4), kappa)
    np.testing.assert_array_equal(batch, np.stack([got] * 4))
    with pytest.raises(ValueError, match="same shape"):
        intercell_interference(rbs, active[:, :2], kappa)
    with pytest.raises(ValueError, match="kappa"):
        intercell_interference(rbs, active, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"active must lie in \[0, rbs\]"):
        intercell_interference(rbs, rbs + 1, kappa)


def test_step_is_the_interference_model_on_the_state_shown():
    env = parallel_env(n_cells=3, topology="line", coupling=2.0,
                       cell_load_scales=(1.0, 1.5, 0.5))
    env.reset(seed=3)
    core = env.core
    rng = np.random.default_rng(0)
    for _ in range(15):
        actions = _actions(env, rng)
        joint = env.joint_action(actions)
        units, per_rb = core.demand(0)
        snr = np.stack([c.snr_db[0].copy() for c in core.cells])
        predicted = core.evaluate(joint[None])
        bound = core.slot_bound()
        _, rewards, _, _, infos = env.step(actions)
        info = core.last_info
        rbs = info["rbs"][0]
        np.testing.assert_array_equal(rbs, core.rbs_of(joint))
        active = active_rbs(rbs, units, per_rb)
        np.testing.assert_array_equal(info["active_rbs"][0], active)
        expected = intercell_interference(rbs, active, core.kappa)
        np.testing.assert_array_equal(info["interference"][0], expected)
        np.testing.assert_array_equal(info["snr_db"][0], snr)
        for i, a in enumerate(env.possible_agents):
            cell = core.cells[i]
            assert infos[a]["semantic_similarity"] == pytest.approx(
                float(cell.similarity(infos[a]["sinr_db"][0])), rel=1e-12)
            assert rewards[a] == predicted["rewards"][0, i]  # evaluate is the step, exactly
        assert predicted["team_reward"][0] == infos["cell_0"]["team_reward"]
        assert infos["cell_0"]["team_reward"] <= bound + 1e-12


def test_coupling_lowers_performance_when_neighbours_load_the_same_rbs():
    seed, steps = 4, 60
    # Cell 0 plays the same actions on the same traffic and fading (interference draws no
    # random numbers) next to a neighbour with no traffic, then next to a loaded one.
    returns = {}
    for label, scales in (("idle", (1.0, 0.0)), ("loaded", (1.0, 1.0)), ("heavy", (1.0, 3.0))):
        env = parallel_env(n_cells=2, coupling=2.0, cell_load_scales=scales)
        policy = marl.make_baseline("semantic-priority", env)
        obs, _ = env.reset(seed=seed)
        fixed = {"cell_1": np.zeros(3, np.float32)}  # the neighbour splits equally
        total, sims = 0.0, []
        for _ in range(steps):
            actions = {"cell_0": policy.act("cell_0", obs["cell_0"])} | fixed
            obs, rewards, _, _, infos = env.step(actions)
            total += rewards["cell_0"]
            sims.append(infos["cell_0"]["semantic_similarity"])
        returns[label] = (total, np.mean(sims))
    assert returns["idle"][0] > returns["loaded"][0] > returns["heavy"][0]
    assert returns["idle"][1] > returns["loaded"][1] > returns["heavy"][1]
    # Slot by slot, from the same state: any interference only lowers each cell's reward
    # (a coupled env against a decoupled one, reset alike), and the bound holds.
    coupled, free = parallel_env(coupling=3.0), parallel_env(coupling=0.0)
    rng = np.random.default_rng(2)
    lower = 0
    for s in range(3):
        coupled.reset(seed=s)
        free.reset(seed=s)
        cand = rng.uniform(-1, 1, (200, 3, 3)).astype(np.float32).astype(np.float64)
        with_i = coupled.core.evaluate(cand)
        without = free.core.evaluate(cand)
        assert (with_i["rewards"] <= without["rewards"]).all()
        lower += int((with_i["rewards"] < without["rewards"]).sum())
        assert not without["interference"].any()
        assert with_i["team_reward"].max() <= coupled.core.slot_bound() + 1e-12
        assert coupled.core.slot_bound() == free.core.slot_bound()
    assert lower > 100


def test_team_return_falls_with_coupling():
    totals = []
    for coupling in (0.0, 0.5, 2.0):
        env = parallel_env(coupling=coupling, reward_mode="team", max_cycles=40)
        policy = marl.make_baseline("semantic-priority", env)
        obs, _ = env.reset(seed=0)
        total = 0.0
        while env.agents:
            obs, rewards, *_ = env.step(policy.predict(obs)[0])
            total += rewards["cell_0"]
        totals.append(total)
    assert totals[0] > totals[1] > totals[2]


def test_batched_core_rows_are_single_envs():
    kwargs = {"n_cells": 3, "coupling": 1.5, "cell_load_scales": (0.5, 1.0, 2.0),
              "max_cycles": 1000}
    seeds = [3, 4, 5]
    singles = [parallel_env(**kwargs) for _ in seeds]
    for e, s in zip(singles, seeds, strict=True):
        e.reset(seed=s)
    core = SliceOrchestrationCore(SliceOrchestrationConfig(**kwargs), len(seeds))
    rngs = [cell_generators(s, 3) for s in seeds]
    core.reset(rngs, np.arange(len(seeds)))
    rng = np.random.default_rng(0)
    for _ in range(12):
        joints = [e.joint_action(_actions(e, rng)) for e in singles]
        obs = core.observe()
        for i, e in enumerate(singles):
            np.testing.assert_array_equal(core.state()[i], e.state())
            for j, a in enumerate(e.possible_agents):
                np.testing.assert_array_equal(obs[i, j], e._observations()[a])
        result = core.step(np.stack(joints), rngs)
        for i, (e, joint) in enumerate(zip(singles, joints, strict=True)):
            e.step({a: joint[j].astype(np.float32) for j, a in enumerate(e.possible_agents)})
            for key in ("rewards", "team_reward", "interference", "sinr_db", "active_rbs",
                        "rbs", "served"):
                np.testing.assert_array_equal(result.info[key][i], e.core.last_info[key][0],
                                              err_msg=key)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("agent", ["cell_0", "cell_2"])
def test_bad_actions_name_the_agent(agent):
    env = parallel_env()
    env.reset(seed=0)
    good = {a: np.zeros(3, np.float32) for a in env.agents}
    for case, (bad, pattern) in invalid_actions(env.action_space(agent)).items():
        with pytest.raises(ValueError, match=pattern) as err:
            env.step({**good, agent: bad})
        assert f"agent {agent!r}" in str(err.value), case
    env.step(good)  # still usable


def test_missing_unknown_and_misformed_action_dicts():
    env = parallel_env()
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        env.step({})
    env.reset(seed=0)
    good = {a: np.zeros(3, np.float32) for a in env.agents}
    with pytest.raises(ValueError, match=re.escape("no action for agent(s) ['cell_2']")):
        env.step({k: v for k, v in good.items() if k != "cell_2"})
    with pytest.raises(ValueError, match=r"agent\(s\) \['cell_7'\] that are not live"):
        env.step({**good, "cell_7": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="dict agent -> action"):
        env.step([good[a] for a in env.agents])
    with pytest.raises(ValueError, match="render_mode"):
        parallel_env(render_mode="human")


@pytest.mark.parametrize(("field", "value"), [
    ("n_cells", 0),
    ("n_cells", 65),
    ("n_cells", 2.5),
    ("topology", "star"),
    ("coupling", -0.1),
    ("coupling", float("nan")),
    ("coupling", 1e5),
    ("cell_load_scales", (1.0, 1.0)),
    ("cell_load_scales", (1.0, -1.0, 1.0)),
    ("cell_load_scales", "1,1,1"),
    ("cell_load_scales", (1.0, 1.0, float("inf"))),
    ("neighbour_obs", 1),
    ("reward_mode", "shared"),
    ("max_cycles", 0),
    ("n_rbs", 0),
    ("min_similarity", 1.5),
])
def test_bad_configs_name_the_field(field, value):
    assert config_or_field_error(SliceOrchestrationConfig, field, value) is None
    with pytest.raises(ValueError, match=re.escape(field)):
        parallel_env(**{field: value})


def test_scaled_loads_that_break_a_cell_name_the_scale():
    with pytest.raises(ValueError, match=r"cell_load_scales\[1\].*embb_load_bps"):
        SliceOrchestrationConfig(n_cells=2, cell_load_scales=(1.0, 100.0), embb_load_bps=2e8,
                                 embb_packet_bits=1000.0)


# --------------------------------------------------------------------------------------------
# Baselines and rendering
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {**SMALL, "coupling": 3.0},
    {**SMALL, "n_cells": 2, "coupling": 10.0, "cell_load_scales": (2.0, 0.5)},
], ids=["small-3", "small-2-heterogeneous"])
def test_baselines_run_and_the_coordinated_oracle_tops_them(kwargs):
    env = parallel_env(**kwargs, max_cycles=6)
    names = marl.baseline_names(env)
    assert names == ["coordinated-oracle", "equal-split", "proportional", "random",
                     "semantic-priority", "slot-oracle"]
    policies = {n: marl.make_baseline(n, env, seed=0) for n in names}
    obs, _ = env.reset(seed=9)
    values = {n: [] for n in names}
    while env.agents:
        core = env.core
        bound = core.slot_bound()
        for n, policy in policies.items():
            actions, state = policy.predict(obs)
            assert state is None and set(actions) == set(env.agents)
            for a, act in actions.items():
                assert env.action_space(a).contains(act), (n, a, act)
            values[n].append(float(core.evaluate(env.joint_action(actions)[None])
                                   ["team_reward"][0]))
            assert values[n][-1] <= bound + 1e-12
        assert policies["coordinated-oracle"].solve()[1] == values["coordinated-oracle"][-1]
        obs, *_ = env.step(policies["coordinated-oracle"].predict(obs)[0])
    oracle = values["coordinated-oracle"]
    for n in ("slot-oracle", "semantic-priority"):  # its starts
        assert all(o >= v for o, v in zip(oracle, values[n], strict=True)), n
    assert np.mean(oracle) > np.mean(values["random"])
    assert np.mean(oracle) > np.mean(values["slot-oracle"])  # coordination pays


def test_per_cell_baselines_are_semantic_slicings():
    from qdrl_envs.baselines import make_baseline

    env = parallel_env(coupling=0.0, n_cells=2)
    obs, _ = env.reset(seed=1)
    for name in ("equal-split", "proportional", "semantic-priority", "slot-oracle"):
        multi = marl.make_baseline(name, env).predict(obs)[0]
        for i, a in enumerate(env.possible_agents):
            single = make_baseline(name, gym.make("qdrl/SemanticSlicing-v1"))
            if name == "slot-oracle":  # it reads the true state: give it this cell's
                single.core = env.core.cells[i]
            np.testing.assert_array_equal(multi[a], single.predict(obs[a][:15])[0])


def test_baselines_in_the_aec_loop_and_bad_input():
    env = aec_env(**SMALL, max_cycles=3)
    policy = marl.make_baseline("coordinated-oracle", env, rb_step=2)
    env.reset(seed=0)
    steps = 0
    for agent in env.agent_iter():
        obs, _, term, trunc, _ = env.last()
        env.step(None if term or trunc else policy.act(agent, obs))
        steps += 1
    assert steps == 3 * 3 + 3
    with pytest.raises(ValueError, match=r"unknown baseline 'greedy'.*coordinated-oracle"):
        marl.make_baseline("greedy", env)
    with pytest.raises(ValueError, match="dict agent -> observation"):
        policy.predict(np.zeros(30, np.float32))
    with pytest.raises(ValueError, match="unknown agent"):
        policy.predict({"cell_5": np.zeros(30, np.float32)})
    with pytest.raises(ValueError, match="rb_step"):
        marl.make_baseline("coordinated-oracle", env, rb_step=0)
    with pytest.raises(ValueError, match="max_sweeps"):
        marl.make_baseline("coordinated-oracle", env, max_sweeps=0)
    from qdrl_envs.baselines.slice_orchestration import BASELINES
    from qdrl_envs.secrecy_jamming import parallel_env as secrecy_env

    for cls in BASELINES.values():
        if cls is not marl.MultiAgentRandomPolicy:
            with pytest.raises(ValueError, match="expected a qdrl/SliceOrchestration-v0"):
                cls(secrecy_env())


def test_random_baseline_is_seeded():
    env = parallel_env()
    obs, _ = env.reset(seed=0)
    a = marl.make_baseline("random", env, seed=3).predict(obs)[0]
    b = marl.make_baseline("random", env, seed=3).predict(obs)[0]
    assert_same(a, b)


def test_render_ansi_and_rgb():
    env = parallel_env(render_mode="ansi", n_cells=2)
    env.reset(seed=0)
    before = env.render()
    assert isinstance(before, str) and "SliceOrchestration" in before and "cell_1" in before
    env.step({a: np.ones(3, np.float32) for a in env.agents})
    text = env.render()
    assert "team reward" in text and "SINR loss dB" in text and text.count("SemanticSlicing") == 2
    assert parallel_env().render() is None
    aec = aec_env(render_mode="ansi")
    aec.reset(seed=0)
    assert isinstance(aec.render(), str)
    rgb = parallel_env(render_mode="rgb_array")
    rgb.reset(seed=0)
    assert_rgb_frame(rgb.render())
    rgb.step({a: np.zeros(3, np.float32) for a in rgb.agents})
    assert_rgb_frame(rgb.render())
    rgb.close()


def test_aec_form_is_parallel_to_aec():
    env = aec_env()
    assert isinstance(env.env, parallel_to_aec_wrapper)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.reset(seed=0)
    assert env.agents == ["cell_0", "cell_1", "cell_2"]


def test_modules_import_neither_agents_nor_heavy_packages():
    import subprocess
    import sys

    code = ("import sys, qdrl_envs.slice_orchestration, qdrl_envs.baselines.slice_orchestration\n"
            "bad = [m for m in ('stable_baselines3', 'qdrl_agents', 'torch', 'qiskit',\n"
            "                   'matplotlib') if m in sys.modules]\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
