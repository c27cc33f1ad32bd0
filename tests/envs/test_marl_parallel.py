"""Tests of the shared ParallelEnv scaffolding (qdrl_envs._parallel.CoreParallelEnv)."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.utils.conversions import parallel_to_aec_wrapper

from qdrl_envs import marl
from qdrl_envs._parallel import CoreParallelEnv
from qdrl_envs.slice_orchestration import SliceOrchestrationConfig, SliceOrchestrationCore

CASES = {
    "qdrl/SecrecyJamming-v0": {"roles": ("choose", "tx", "jam"), "fading_rho": 0.5},
    "qdrl/SliceOrchestration-v0": {"n_cells": 3, "coupling": 2.0},
}


def _actions(env, rng):
    return {a: rng.uniform(-1.0, 1.0, env.action_space(a).shape).astype(np.float32)
            for a in env.agents}


def _assert_row(batched, i, single):
    """Row ``i`` of a batched info is the single env's info (row 0), key for key, exactly."""
    assert batched.keys() == single.keys()
    for key, value in batched.items():
        if isinstance(value, dict):
            _assert_row(value, i, single[key])
        else:
            np.testing.assert_array_equal(value[i], single[key][0], err_msg=key)


@pytest.mark.parametrize("env_id", list(CASES))
def test_batched_form_rows_are_the_single_env(env_id):
    """core_cls(config, N) with instance_rngs(seed_i) runs N single envs in lockstep."""
    seeds = [11, 12, 13]
    singles = [marl.make_parallel(env_id, **CASES[env_id]) for _ in seeds]
    template = singles[0]
    assert isinstance(template, CoreParallelEnv)
    core = template.core_cls(template.config, len(seeds))
    rngs = [template.instance_rngs(s) for s in seeds]
    core.reset(rngs, np.arange(len(seeds)))
    for env, seed in zip(singles, seeds, strict=True):
        env.reset(seed=seed)
    rng = np.random.default_rng(0)
    for _ in range(12):
        for i, env in enumerate(singles):
            np.testing.assert_array_equal(core.observe()[i], env.core.observe()[0])
        actions = [_actions(env, rng) for env in singles]
        result = core.step(np.stack([e.joint_action(a) for e, a in
                                     zip(singles, actions, strict=True)]), rngs)
        for i, (env, act) in enumerate(zip(singles, actions, strict=True)):
            _, rewards, _, _, _ = env.step(act)
            _assert_row(result.info, i, env.core.last_info)
            assert list(rewards.values()) == result.info["rewards"][i].tolist()
    assert template.instance_rngs(5) is not template.instance_rngs(5)  # fresh each call


@pytest.mark.parametrize("env_id", list(CASES))
def test_scaffolding_bookkeeping(env_id):
    env = marl.make_parallel(env_id, max_cycles=3)
    prefix = env.agent_prefix
    assert env.possible_agents == [f"{prefix}_{i}" for i in range(env.core.n_agents)]
    assert env.agents == [] and env.np_random_seed is None
    for bad in ("nobody", 0, None):
        with pytest.raises(ValueError, match="unknown agent"):
            env.action_space(bad)
        with pytest.raises(ValueError, match="unknown agent"):
            env.observation_space(bad)
    a0 = env.possible_agents[0]
    assert env.action_space(a0) is env.action_spaces[a0]
    assert env.observation_space(a0) is env.observation_spaces[a0]
    with pytest.warns(UserWarning, match=r"reset option\(s\) \['zz'\] ignored"):
        env.reset(seed=4, options={"zz": 1})
    assert env.np_random_seed == 4
    rng = np.random.default_rng(1)
    for t in range(3):
        _, _, terms, truncs, _ = env.step(_actions(env, rng))
        assert not any(terms.values()) and all(truncs.values()) == (t == 2)
    assert env.agents == []
    with pytest.raises(RuntimeError, match="episode ended"):
        env.step({})
    aec = type(env).aec_env(max_cycles=3)
    assert isinstance(aec.env, parallel_to_aec_wrapper)
    assert isinstance(aec.unwrapped, type(env))
    with pytest.raises(ValueError, match="render_mode"):
        type(env)(render_mode="human")


def test_slice_core_takes_no_reset_options():
    core = SliceOrchestrationCore(SliceOrchestrationConfig(n_cells=2), 1)
    env = marl.make_parallel("qdrl/SliceOrchestration-v0", n_cells=2)
    rngs = [env.instance_rngs(0)]
    core.reset(rngs, np.array([0]), None)
    core.reset(rngs, np.array([0]), {})
    with pytest.raises(ValueError, match=r"takes no options, got \['x'\]"):
        core.reset(rngs, np.array([0]), {"x": 1})
