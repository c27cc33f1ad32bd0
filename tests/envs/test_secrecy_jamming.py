"""Tests of the multi-agent qdrl/SecrecyJamming-v0 (PettingZoo ParallelEnv, paper Fig. 9)."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test
from pettingzoo.utils.conversions import parallel_to_aec_wrapper

import qdrl_envs
from qdrl_envs import marl
from qdrl_envs.secrecy import SecrecyPowerControlEnv, secrecy_rates
from qdrl_envs.secrecy_jamming import (
    SecrecyJammingConfig,
    SecrecyJammingCore,
    SecrecyJammingEnv,
    jamming_rates,
    parallel_env,
)
from qdrl_envs.secrecy_jamming import env as aec_env
from tests.envs.helpers import assert_rgb_frame, config_or_field_error, invalid_actions

ENV_ID = "qdrl/SecrecyJamming-v0"

CONFIGS = {
    "default": {},
    "M2": {"n_aps": 2},
    "choose": {"roles": ("choose", "tx", "choose")},
    "M4-two-jammers-team": {"n_aps": 4, "roles": ("tx", "jam", "tx", "jam"),
                            "reward_mode": "team"},
    "M3-stat-rho-linear": {"eve_csi": "statistical", "fading_rho": 0.7, "power_scale": "linear"},
    "all-choose-null": {"roles": ("choose", "choose"), "n_aps": 2, "jam_user_leakage_db": 20.0},
}
CASES = list(CONFIGS.items())
IDS = list(CONFIGS)


def _known_option_warning():
    """PettingZoo's API tests pass ``options={"options": 1}``: ignored with a warning."""
    return pytest.warns(UserWarning, match=r"reset option\(s\) \['options'\] ignored")


def _actions(env, rng, agents=None):
    """Uniform actions from a seeded generator (the spaces' own samplers are not seeded)."""
    return {a: rng.uniform(-1.0, 1.0, env.action_space(a).shape).astype(np.float32)
            for a in (env.agents if agents is None else agents)}


def _rollout(env, seed, steps, action_seed=0):
    rng = np.random.default_rng(action_seed)
    records = [env.reset(seed=seed)]
    for _ in range(steps):
        records.append(env.step(_actions(env, rng)))
        if not env.agents:
            break
    return records


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b and type(a) is type(b)


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
    assert isinstance(env.unwrapped, SecrecyJammingEnv)
    with _known_option_warning():
        api_test(env, num_cycles=40)


@pytest.mark.parametrize(("name", "kwargs"), CASES[:3], ids=IDS[:3])
def test_pettingzoo_seed_tests(name, kwargs):
    parallel_seed_test(lambda: parallel_env(**kwargs, max_cycles=20), num_cycles=20)
    seed_test(lambda: aec_env(**kwargs, max_cycles=20), num_cycles=20)


# --------------------------------------------------------------------------------------------
# Spaces, registry, determinism, episode end
# --------------------------------------------------------------------------------------------


def test_role_specific_spaces_and_targets():
    env = parallel_env(n_aps=4, roles=("tx", "jam", "choose", "tx"))
    assert env.possible_agents == ["ap_0", "ap_1", "ap_2", "ap_3"]
    assert env.metadata["name"] == "secrecy_jamming_v0"
    assert set(env.metadata["render_modes"]) >= {"ansi"}
    # Jammer ap_1 may aim at the eavesdroppers of APs that may transmit: 0, 2, 3.
    assert env.targets("ap_1") == (0, 2, 3) and env.targets("ap_2") == (0, 3)
    shapes = {a: env.action_space(a).shape for a in env.possible_agents}
    assert shapes == {"ap_0": (1,), "ap_1": (4,), "ap_2": (4,), "ap_3": (1,)}
    for a in env.possible_agents:
        assert env.action_space(a) is env.action_space(a)
        assert env.observation_space(a) is env.observation_space(a)
        assert env.observation_space(a) == gym.spaces.Box(-1, 1, (2 * 16 + 4,), np.float32)
        assert env.action_space(a).dtype == np.float32
    assert env.state_space.shape == (32,)
    # One target: no weights; the default roles: all transmit but the last.
    two = parallel_env(n_aps=2)
    assert two.roles == {"ap_0": "tx", "ap_1": "jam"}
    assert two.action_space("ap_1").shape == (1,)
    assert parallel_env(n_aps=1).roles == {"ap_0": "tx"}
    with pytest.raises(ValueError, match=r"unknown agent 'ap_9'.*ap_0"):
        env.action_space("ap_9")
    with pytest.raises(ValueError, match="unknown agent"):
        env.observation_space("ap_9")


def test_registry():
    assert ENV_ID in qdrl_envs.MARL_ENV_IDS
    par = qdrl_envs.make_parallel(ENV_ID, n_aps=2, render_mode="ansi")
    assert isinstance(par, SecrecyJammingEnv) and par.config.n_aps == 2
    aec = qdrl_envs.make_aec(ENV_ID, n_aps=2)
    assert isinstance(aec.unwrapped, SecrecyJammingEnv)
    assert marl.marl_entry(aec).id == ENV_ID and marl.marl_entry(par).id == ENV_ID
    with pytest.raises(ValueError, match=r"unknown multi-agent environment.*SecrecyJamming-v0"):
        qdrl_envs.make_parallel("qdrl/Nope-v0")
    with pytest.raises(ValueError, match="unknown SecrecyJammingConfig field"):
        qdrl_envs.make_parallel(ENV_ID, n_apps=3)
    assert ENV_ID not in gym.registry  # not a Gymnasium env


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=IDS)
def test_seeded_determinism(name, kwargs):
    a = _rollout(parallel_env(**kwargs), seed=7, steps=25)
    b = _rollout(parallel_env(**kwargs), seed=7, steps=25)
    _assert_same(a, b)
    c = _rollout(parallel_env(**kwargs), seed=8, steps=1)
    assert not np.array_equal(a[0][0]["ap_0"], c[0][0]["ap_0"])
    # A reset without a seed carries on the generator; reseeding repeats the episode.
    env = parallel_env(**kwargs)
    first = env.reset(seed=3)[0]
    assert not np.array_equal(env.reset()[0]["ap_0"], first["ap_0"])
    _assert_same(env.reset(seed=3)[0], first)
    assert env.np_random_seed == 3


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=IDS)
def test_observations_infos_and_truncation(name, kwargs):
    env = parallel_env(**kwargs, max_cycles=5)
    obs, infos = env.reset(seed=0)
    m = env.config.n_aps
    assert set(obs) == set(infos) == set(env.possible_agents) and env.agents == env.possible_agents
    rng = np.random.default_rng(1)
    for t in range(1, 6):
        for j, a in enumerate(env.agents):
            space = env.observation_space(a)
            assert obs[a].dtype == np.float32 and space.contains(obs[a])
            np.testing.assert_array_equal(obs[a][: 2 * m * m], env.state())
            np.testing.assert_array_equal(obs[a][2 * m * m:], np.eye(m)[j])
        obs, rewards, terms, truncs, infos = env.step(_actions(env, rng))
        assert set(rewards) == set(terms) == set(truncs) == set(infos) == set(env.possible_agents)
        assert not any(terms.values())
        assert all(truncs.values()) == (t == 5) and any(truncs.values()) == (t == 5)
        total = infos["ap_0"]["secrecy_sum"]
        assert total == pytest.approx(sum(i["secrecy_rate"] for i in infos.values()))
        for a, info in infos.items():
            assert np.isfinite(rewards[a]) and type(rewards[a]) is float
            assert info["secrecy_sum"] == total and info["role"] in ("tx", "jam")
            assert info["team_reward"] == env.config.varsigma * total
            if info["role"] == "jam":
                assert info["user_rate"] == info["eve_rate"] == info["secrecy_rate"] == 0.0
                assert info["eve_rate_reduction"] >= 0.0 and info["user_rate_loss"] >= 0.0
            else:
                assert info["eve_rate_reduction"] == info["user_rate_loss"] == 0.0
                assert info["secrecy_rate"] == max(info["user_rate"] - info["eve_rate"], 0.0)
    assert env.agents == []
    with pytest.raises(RuntimeError, match="episode ended"):
        env.step({})
    assert env.reset(seed=1)[0].keys() == set(env.possible_agents)


def test_reset_options():
    env = parallel_env(n_aps=2)
    pos = {"ap_positions_m": [[10.0, 10.0], [190.0, 190.0]],
           "user_positions_m": [[20.0, 10.0], [180.0, 190.0]],
           "eve_positions_m": [[25.0, 12.0], [170.0, 185.0]]}
    env.reset(seed=0, options=pos)
    np.testing.assert_array_equal(env.core.eve_positions_m[0], pos["eve_positions_m"])
    with pytest.raises(ValueError, match="eve_positions_m"):
        env.reset(options={"eve_positions_m": [[1.0, 2.0]]})
    with pytest.warns(UserWarning, match=r"\['eve_positoins_m'\] ignored"):
        env.reset(options={"eve_positoins_m": [[1.0, 2.0], [3.0, 4.0]]})


# --------------------------------------------------------------------------------------------
# Physics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"fading_rho": 0.6, "eve_csi": "statistical"},
                                    {"n_aps": 4, "roles": ("tx", "jam", "tx", "choose")}],
                         ids=["default", "rho-statistical", "M4"])
def test_silent_jammers_give_secrecy_power_control_bit_for_bit(kwargs):
    """Same seed and fields: the channels of SecrecyPowerControl, and with every jammer silent
    its rates (the jamming APs switched off there), slot by slot."""
    jam_env = parallel_env(**kwargs)
    shared = {k: v for k, v in jam_env.config.to_dict().items()
              if k in SecrecyPowerControlEnv.config_cls.field_names()}
    single = SecrecyPowerControlEnv(**shared)
    m = jam_env.config.n_aps
    rng = np.random.default_rng(5)
    for episode in range(2):
        obs, _ = jam_env.reset(seed=11 + episode)
        h, _ = single.reset(seed=11 + episode)
        for _ in range(12):
            np.testing.assert_array_equal(obs["ap_0"][: 2 * m * m], h)
            power = rng.uniform(-1, 1, m).astype(np.float32)
            actions = {}
            for j, a in enumerate(jam_env.agents):
                jams = jam_env.roles[a] == "jam"
                if jams:
                    power[j] = -1.0  # silent (off in the single env)
                actions[a] = jam_env.agent_action(a, jam=jams, power=float(power[j]),
                                                  weights=rng.uniform(-1, 1, m))
            g = jam_env.core.gains[0].copy()
            obs, _, _, _, infos = jam_env.step(actions)
            h, reward, _, _, info = single.step(power)
            last = jam_env.core.last_info
            assert not last["jam_powers"].any()
            np.testing.assert_array_equal(last["secrecy_rates"][0], info["secrecy_rates"])
            np.testing.assert_array_equal(last["user_rates"][0], info["user_rates"])
            np.testing.assert_array_equal(last["eve_rates"][0], info["eve_rates"])
            assert infos["ap_0"]["secrecy_sum"] == reward
            # ... which is secrecy_rates on the channels shown, the jamming APs off.
            p = jam_env.core.coefficients(power)
            expected = secrecy_rates(g[:, :m], g[:, m:], p, jam_env.core.p_max_w,
                                     jam_env.core.noise_w)
            np.testing.assert_array_equal(last["secrecy_rates"][0], expected[2])
            for a in jam_env.possible_agents:
                if jam_env.roles[a] == "jam":
                    assert infos[a]["eve_rate_reduction"] == infos[a]["user_rate_loss"] == 0.0


def test_step_is_jamming_rates_on_the_channels_shown():
    env = parallel_env(n_aps=4, roles=("tx", "jam", "tx", "jam"), jam_user_leakage_db=3.0)
    env.reset(seed=2)
    core, m = env.core, 4
    rng = np.random.default_rng(0)
    for _ in range(10):
        g = core.gains[0].copy()
        env.step(_actions(env, rng))
        info = core.last_info
        p = info["powers"][0] / core.p_max_w
        q = info["beam_powers"][0] / core.p_max_w
        np.testing.assert_allclose(q.sum(-1), info["jam_powers"][0] / core.p_max_w,
                                   rtol=1e-12)
        user, eve, sec, jam = jamming_rates(g[:, :m], g[:, m:], p, q, core.p_max_w,
                                            core.noise_w, 12.0, 3.0)
        np.testing.assert_allclose(info["user_rates"][0], user, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(info["eve_rates"][0], eve, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(info["secrecy_rates"][0], sec, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(info["jamming_w"][0], jam, rtol=1e-12)


def test_jamming_lowers_eavesdropper_and_user_sinr():
    env = parallel_env(n_aps=3)  # ap_0, ap_1 transmit; ap_2 jams at eavesdroppers 0 and 1
    env.reset(seed=4)
    core = env.core
    for _ in range(20):
        tx = {"ap_0": env.agent_action("ap_0", jam=False, power=1.0),
              "ap_1": env.agent_action("ap_1", jam=False, power=0.5)}
        silent = env.joint_action({**tx, "ap_2": env.agent_action("ap_2", jam=True, power=-1)})
        loud = env.joint_action({**tx, "ap_2": env.agent_action("ap_2", jam=True, power=1)})
        at_0 = env.joint_action({**tx, "ap_2": env.agent_action("ap_2", jam=True, power=1,
                                                                weights=[1, -1, -1])})
        off, on, aimed = (core.evaluate(x[None]) for x in (silent, loud, at_0))
        # Jamming is noise for everybody: both served users and both eavesdroppers lose.
        assert np.all(on["eve_rates"][0, :2] < off["eve_rates"][0, :2])
        assert np.all(on["user_rates"][0, :2] < off["user_rates"][0, :2])
        assert on["jamming_w"][0, [0, 1, 3, 4]].min() > 0.0
        assert off["jamming_w"].max() == 0.0
        # The beam gain: aimed only at eavesdropper 0, it jams eavesdropper 0 harder (12 dB
        # on half the power) and eavesdropper 1 less; the users see the same total power.
        assert aimed["jamming_w"][0, 3] > on["jamming_w"][0, 3]
        assert aimed["jamming_w"][0, 4] < on["jamming_w"][0, 4]
        np.testing.assert_allclose(aimed["jamming_w"][0, :3], on["jamming_w"][0, :3])
        # The jammer's reward terms are its own counterfactual.
        assert on["eve_rate_reduction"][0, 2] == pytest.approx(
            (off["eve_rates"][0] - on["eve_rates"][0]).sum(), rel=1e-12)
        assert on["user_rate_loss"][0, 2] == pytest.approx(
            (off["user_rates"][0] - on["user_rates"][0]).sum(), rel=1e-12)
        assert on["rewards"][0, 2] == pytest.approx(
            on["eve_rate_reduction"][0, 2] - on["user_rate_loss"][0, 2], rel=1e-12)
        assert off["rewards"][0, 2] == 0.0
        np.testing.assert_array_equal(on["rewards"][0, :2], on["secrecy_rates"][0, :2])
        env.step(tx | {"ap_2": env.agent_action("ap_2", jam=True, power=0.0)})


def test_null_steering_and_isotropic_jammer():
    kw = {"n_aps": 2, "jam_beam_gain_db": 0.0}
    env, nulled = parallel_env(**kw), parallel_env(**kw, jam_user_leakage_db=30.0)
    env.reset(seed=1)
    nulled.reset(seed=1)
    a = {"ap_0": np.array([1.0], np.float32), "ap_1": np.array([1.0], np.float32)}
    full, part = env.core.evaluate(env.joint_action(a)[None]), \
        nulled.core.evaluate(nulled.joint_action(a)[None])
    np.testing.assert_allclose(part["jamming_w"][0, :2], full["jamming_w"][0, :2] * 1e-3)
    np.testing.assert_array_equal(part["jamming_w"][0, 2:], full["jamming_w"][0, 2:])
    assert part["user_rates"][0, 0] > full["user_rates"][0, 0]
    # With no beam gain a jammer is an isotropic interferer: its noise at receiver r is
    # P g[1, r] whoever r is.
    g = env.core.gains[0]
    np.testing.assert_allclose(full["jamming_w"][0], env.core.p_max_w * g[1], rtol=1e-12)


def test_choose_roles_and_team_rewards():
    env = parallel_env(roles=("choose", "tx", "choose"), reward_mode="team", varsigma=2.0)
    env.reset(seed=0)
    act = {"ap_0": np.array([0.3, 1.0, 1.0, 1.0], np.float32),   # role > 0: jams
           "ap_1": np.array([1.0], np.float32),
           "ap_2": np.array([0.0, 1.0, 1.0, 1.0], np.float32)}   # role 0: transmits
    _, rewards, _, _, infos = env.step(act)
    assert infos["ap_0"]["role"] == "jam" and infos["ap_2"]["role"] == "tx"
    assert infos["ap_0"]["secrecy_rate"] == 0.0  # its user is idle while it jams
    total = infos["ap_1"]["secrecy_sum"]
    assert all(r == pytest.approx(2.0 * total, rel=1e-15) for r in rewards.values())
    assert infos["ap_2"]["reward_terms"] == {"secrecy_sum": total}
    assert env.core.last_info["jamming"][0].tolist() == [True, False, False]


def test_batched_core_rows_are_single_envs():
    kwargs = {"roles": ("choose", "tx", "jam"), "fading_rho": 0.5, "max_cycles": 1000}
    seeds = [3, 4, 5]
    singles = [parallel_env(**kwargs) for _ in seeds]
    for e, s in zip(singles, seeds, strict=True):
        e.reset(seed=s)
    config = SecrecyJammingConfig(**kwargs)
    core = SecrecyJammingCore(config, len(seeds))
    rngs = [gym.utils.seeding.np_random(s)[0] for s in seeds]
    core.reset(rngs, np.arange(len(seeds)))
    rng = np.random.default_rng(0)
    for _ in range(2 * core.block_steps + 3):  # across channel blocks
        joints = [e.joint_action(_actions(e, rng)) for e in singles]
        for i, e in enumerate(singles):
            np.testing.assert_array_equal(core.observe()[i], e.state())
        result = core.step(np.stack(joints), rngs)
        for i, (e, joint) in enumerate(zip(singles, joints, strict=True)):
            e.step({a: e.agent_action(a, jam=bool(joint[j, 0]), power=joint[j, 1],
                                      weights=joint[j, 2:])
                    for j, a in enumerate(e.possible_agents)})
            for key, value in result.info.items():
                np.testing.assert_array_equal(value[i], e.core.last_info[key][0], err_msg=key)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("agent", ["ap_0", "ap_1", "ap_2"])
def test_bad_actions_name_the_agent(agent):
    env = parallel_env(roles=("tx", "jam", "choose"))
    env.reset(seed=0)
    good = {a: np.zeros(env.action_space(a).shape, np.float32) for a in env.agents}
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
    good = {a: np.zeros(env.action_space(a).shape, np.float32) for a in env.agents}
    with pytest.raises(ValueError, match=re.escape("no action for agent(s) ['ap_2']")):
        env.step({k: v for k, v in good.items() if k != "ap_2"})
    with pytest.raises(ValueError, match=r"agent\(s\) \['ap_7'\] that are not live"):
        env.step({**good, "ap_7": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="dict agent -> action"):
        env.step([good[a] for a in env.agents])
    with pytest.raises(ValueError, match="fixed role 'tx'"):
        env.agent_action("ap_0", jam=True, power=1.0)


@pytest.mark.parametrize(("field", "value"), [
    ("roles", ("tx", "jam")),
    ("roles", ("tx", "jam", "relay")),
    ("roles", ("jam", "jam", "jam")),
    ("roles", "tx,jam,jam"),
    ("jam_beam_gain_db", -1.0),
    ("jam_beam_gain_db", float("nan")),
    ("jam_user_leakage_db", 101.0),
    ("jam_user_weight", -0.5),
    ("reward_mode", "shared"),
    ("max_cycles", 0),
    ("max_cycles", 2.5),
    ("n_aps", 0),
    ("eve_csi", "none"),
])
def test_bad_configs_name_the_field(field, value):
    assert config_or_field_error(SecrecyJammingConfig, field, value) is None
    with pytest.raises(ValueError, match=field):
        parallel_env(**{field: value})


def test_config_roles_and_lists():
    cfg = SecrecyJammingConfig(n_aps=2, roles=["jam", "tx"])  # YAML lists become tuples
    assert cfg.roles == ("jam", "tx") and cfg.agent_roles == ("jam", "tx")
    assert SecrecyJammingConfig(n_aps=5).agent_roles == ("tx",) * 4 + ("jam",)
    assert SecrecyJammingConfig().replace(n_aps=4).agent_roles == ("tx", "tx", "tx", "jam")
    with pytest.raises(ValueError, match="render_mode"):
        parallel_env(render_mode="human")


def test_jamming_rates_checks_and_reduces_to_secrecy_rates():
    rng = np.random.default_rng(0)
    gu, ge = rng.exponential(1e-9, (5, 3, 3)), rng.exponential(1e-10, (5, 3, 3))
    p = rng.uniform(0, 1, (5, 3))
    base = secrecy_rates(gu, ge, p, 1.0, 1e-13)
    got = jamming_rates(gu, ge, p, np.zeros((5, 3, 3)), 1.0, 1e-13, 12.0, 3.0)
    for x, y in zip(base, got[:3], strict=True):
        np.testing.assert_array_equal(x, y)
    assert not got[3].any()
    with pytest.raises(ValueError, match="q must have shape"):
        jamming_rates(gu, ge, p, np.zeros((5, 3)), 1.0, 1e-13)
    with pytest.raises(ValueError, match="p must have shape"):
        jamming_rates(gu, ge, p[:, :2], np.zeros((5, 3, 3)), 1.0, 1e-13)
    with pytest.raises(ValueError, match="noise_w"):
        jamming_rates(gu, ge, p, np.zeros((5, 3, 3)), 1.0, 0.0)
    with pytest.raises(ValueError, match="beam_gain_db"):
        jamming_rates(gu, ge, p, np.zeros((5, 3, 3)), 1.0, 1e-13, -1.0)


# --------------------------------------------------------------------------------------------
# Baselines and rendering
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs"), [CASES[0], CASES[2], CASES[3]],
                         ids=[IDS[0], IDS[2], IDS[3]])
def test_baselines_run_and_the_oracle_tops_them(name, kwargs):
    env = parallel_env(**kwargs, max_cycles=6)
    names = marl.baseline_names(env)
    assert names == ["full-power", "full-power-jam", "oracle", "random"]
    policies = {n: marl.make_baseline(n, env, seed=0) for n in names}
    obs, _ = env.reset(seed=9)
    sums = {n: [] for n in names}
    while env.agents:
        core = env.core
        for n, policy in policies.items():
            actions, state = policy.predict(obs)
            assert state is None and set(actions) == set(env.agents)
            for a, act in actions.items():
                assert env.action_space(a).contains(act), (n, a, act)
            sums[n].append(float(core.evaluate(env.joint_action(actions)[None])
                                 ["secrecy_rate"][0]))
        assert policies["oracle"].solve()[1] == sums["oracle"][-1]
        obs, *_ = env.step(policies["oracle"].predict(obs)[0])
    for n in ("full-power", "full-power-jam", "random"):
        assert all(o >= v for o, v in zip(sums["oracle"], sums[n], strict=True)), n
    assert np.mean(sums["oracle"]) > np.mean(sums["random"])
    if env.roles["ap_2"] == "jam":  # silent vs loud fixed jammer differ
        assert sums["full-power"] != sums["full-power-jam"]
    full = policies["full-power"].predict(obs if obs else env.reset(seed=0)[0])[0]
    assert all(act[-1] == 1.0 or env.roles[a] == "jam" for a, act in full.items())


def test_baselines_in_the_aec_loop_and_bad_input():
    env = aec_env(max_cycles=3)
    policy = marl.make_baseline("oracle", env)
    env.reset(seed=0)
    steps = 0
    for agent in env.agent_iter():
        obs, _, term, trunc, _ = env.last()
        env.step(None if term or trunc else policy.act(agent, obs))
        steps += 1
    assert steps == 3 * 3 + 3
    with pytest.raises(ValueError, match=r"unknown baseline 'greedy'.*oracle"):
        marl.make_baseline("greedy", env)
    with pytest.raises(ValueError, match="dict agent -> observation"):
        policy.predict(np.zeros(21, np.float32))
    with pytest.raises(ValueError, match="unknown agent"):
        policy.predict({"ap_5": np.zeros(21, np.float32)})
    with pytest.raises(ValueError, match="levels"):
        marl.make_baseline("oracle", env, levels=1)


def test_random_baseline_is_seeded():
    env = parallel_env(roles=("choose", "tx", "jam"))
    obs, _ = env.reset(seed=0)
    a = marl.make_baseline("random", env, seed=3).predict(obs)[0]
    b = marl.make_baseline("random", env, seed=3).predict(obs)[0]
    _assert_same(a, b)


def test_render_ansi_and_rgb():
    env = parallel_env(render_mode="ansi", roles=("tx", "choose", "jam"))
    env.reset(seed=0)
    before = env.render()
    assert isinstance(before, str) and "SecrecyJamming" in before and "jam" in before
    env.step({a: np.ones(env.action_space(a).shape, np.float32) for a in env.agents})
    text = env.render()
    assert "last step: secrecy sum" in text and len(text.splitlines()) >= 9
    assert parallel_env().render() is None
    aec = aec_env(render_mode="ansi")
    aec.reset(seed=0)
    assert isinstance(aec.render(), str)
    rgb = parallel_env(render_mode="rgb_array")
    rgb.reset(seed=0)
    assert_rgb_frame(rgb.render())
    rgb.step({a: np.ones(rgb.action_space(a).shape, np.float32) for a in rgb.agents})
    assert_rgb_frame(rgb.render())
    rgb.close()


def test_aec_form_is_parallel_to_aec():
    env = aec_env()
    assert isinstance(env.env, parallel_to_aec_wrapper)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.reset(seed=0)
    assert env.agents == ["ap_0", "ap_1", "ap_2"]


def test_modules_import_neither_agents_nor_heavy_packages():
    import subprocess
    import sys

    code = ("import sys, qdrl_envs.secrecy_jamming, qdrl_envs.baselines.secrecy_jamming\n"
            "bad = [m for m in ('stable_baselines3', 'qdrl_agents', 'torch', 'qiskit')\n"
            "       if m in sys.modules]\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
