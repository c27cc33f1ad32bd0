"""Each vector twin behaves as Gymnasium's SyncVectorEnv over gym.make, in both autoreset modes.

Observations, rewards, dones and the whole ``info`` (keys, ``_key`` masks, values, and in
``SAME_STEP`` the ``final_obs`` / ``final_info`` rows) are compared on every step, across
episode ends staggered by a masked reset, with the seed forms Gymnasium accepts; then the
attribute access (``np_random_seed``, ``get_attr``, ``call``, ``set_attr``, ``render``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import qdrl_envs

HORIZON = 6
N = 3


def _pair(env_id: str, mode: AutoresetMode) -> tuple[Any, SyncVectorEnv]:
    twin = gym.make_vec(env_id, num_envs=N, vectorization_mode="vector_entry_point",
                        max_episode_steps=HORIZON, autoreset_mode=mode)
    ref = SyncVectorEnv([lambda: gym.make(env_id, max_episode_steps=HORIZON)] * N,
                        autoreset_mode=mode)
    return twin, ref


def _same_info(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: {type(got).__name__}, not a dict"
        assert sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            _same_info(got[key], want[key], f"{where}.{key}")
        return
    want_a, got_a = np.asarray(want), np.asarray(got)
    if want_a.dtype == object:  # final_obs: None or an observation per row
        assert got_a.shape == want_a.shape, where
        for i, (g, w) in enumerate(zip(got_a, want_a, strict=True)):
            if w is None:
                assert g is None, f"{where}[{i}]"
            else:
                np.testing.assert_array_equal(g, w, err_msg=f"{where}[{i}]")
        return
    np.testing.assert_array_equal(got_a, want_a, err_msg=where)


def _masked(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with each value kept only on the rows its mask marks (the rest is filler)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_"):
            out[key] = value
            continue
        mask = info.get(f"_{key}")
        if isinstance(value, dict):
            out[key] = _masked(value)
        elif (mask is not None and not isinstance(value, np.ndarray)) or mask is None:
            out[key] = value
        else:
            kept = np.full(value.shape[0], None, dtype=object)
            for i in np.flatnonzero(mask).tolist():
                kept[i] = value[i]
            out[key] = kept
    return out


def _compare(step: tuple, want: tuple, where: str) -> None:
    (obs, rew, term, trunc, info), (wobs, wrew, wterm, wtrunc, winfo) = step, want
    np.testing.assert_array_equal(obs, wobs, err_msg=f"{where}: obs", strict=True)
    np.testing.assert_array_equal(rew, wrew, err_msg=f"{where}: reward")
    np.testing.assert_array_equal(term, wterm, err_msg=f"{where}: terminated")
    np.testing.assert_array_equal(trunc, wtrunc, err_msg=f"{where}: truncated")
    _same_info(_masked(info), _masked(winfo), f"{where}: info")


@pytest.mark.parametrize(("mode", "stagger"), [
    pytest.param(AutoresetMode.NEXT_STEP, True, id="NEXT_STEP"),
    pytest.param(AutoresetMode.SAME_STEP, True, id="SAME_STEP"),
    pytest.param(AutoresetMode.NEXT_STEP, False, id="NEXT_STEP-in-step"),
    pytest.param(AutoresetMode.SAME_STEP, False, id="SAME_STEP-in-step"),
])
@pytest.mark.parametrize("env_id", qdrl_envs.ENV_IDS)
def test_the_twin_is_a_sync_vector_env(env_id: str, mode: AutoresetMode, stagger: bool) -> None:
    # Staggered: a masked reset puts the rows out of phase. In step: every row's episode ends
    # at the same step (the secrecy twin's NEXT_STEP autoreset once skipped a slot of its
    # channel blocks there, the rows it put back being selected at the slot after theirs;
    # SAME_STEP there once kept the step's keys with all-False masks, where SyncVectorEnv has
    # none).
    twin, ref = _pair(env_id, mode)
    assert twin.metadata["autoreset_mode"] == mode
    obs, info = twin.reset(seed=(5, 6, 7))  # a tuple, as Gymnasium allows
    wobs, winfo = ref.reset(seed=[5, 6, 7])
    _compare((obs, 0, 0, 0, info), (wobs, 0, 0, 0, winfo), "reset")
    assert twin.np_random_seed == ref.np_random_seed == (5, 6, 7)
    space = ref.action_space
    space.seed(3)
    ends = 0
    for t in range(4 * HORIZON):
        if stagger and t == 2:  # stagger the episodes: row 1 starts again, with a new seed
            mask = np.array([False, True, False])
            got = twin.reset(seed=[None, 40, None], options={"reset_mask": mask.copy()})
            want = ref.reset(seed=[None, 40, None], options={"reset_mask": mask.copy()})
            _compare((*got[:1], 0, 0, 0, got[1]), (*want[:1], 0, 0, 0, want[1]), "masked reset")
            assert twin.np_random_seed == ref.np_random_seed == (5, 40, 7)
        actions = space.sample()
        got, want = twin.step(actions), ref.step(actions)
        _compare(got, want, f"step {t}")
        ends += int(np.sum(want[2] | want[3]))
    assert ends >= 2 * N  # the comparison crossed episode ends in every row
    twin.close()
    ref.close()


def test_constants_shaped_like_the_batch_are_not_taken_for_state() -> None:
    # DTSyncAoI with M = 5 devices and C = 1 channel has comb(5, 1) = 5 actions: with 5 rows its
    # read-only action tables, (5, 1) and (5, 5), looked like state, and the first NEXT_STEP
    # autoreset (which puts the reset rows back after the step) failed writing into them.
    env_id, kwargs, n = "qdrl/DTSyncAoI-v0", {"n_devices": 5, "n_channels": 1}, 5
    twin = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point",
                        max_episode_steps=HORIZON, **kwargs)
    ref = SyncVectorEnv([lambda: gym.make(env_id, max_episode_steps=HORIZON, **kwargs)] * n)
    obs, info = twin.reset(seed=2)
    wobs, winfo = ref.reset(seed=2)
    _compare((obs, 0, 0, 0, info), (wobs, 0, 0, 0, winfo), "reset")
    space = ref.action_space
    space.seed(4)
    for t in range(3 * HORIZON):
        actions = space.sample()
        _compare(twin.step(actions), ref.step(actions), f"step {t}")
    twin.close()
    ref.close()


@pytest.mark.parametrize("env_id", qdrl_envs.ENV_IDS)
def test_attribute_access_as_sync_vector_env(env_id: str) -> None:
    twin, ref = _pair(env_id, AutoresetMode.NEXT_STEP)
    twin.reset(seed=1)
    ref.reset(seed=1)
    assert twin.render() == ref.render() == (None,) * N  # no render mode
    assert twin.call("render") == (None,) * N
    for name in ("observation_space", "action_space", "np_random_seed"):
        assert twin.get_attr(name) == ref.get_attr(name), name
    field = next(iter(type(twin.config).field_names()))
    assert twin.get_attr(field) == (getattr(twin.config, field),) * N
    with pytest.raises(AttributeError, match="rows have no attribute 'nope'"):
        twin.get_attr("nope")
    twin.set_attr("tag", "x")
    twin.set_attr("label", ["a"] * N)
    assert twin.get_attr("tag") == ("x",) * N and twin.get_attr("label") == ("a",) * N
    with pytest.raises(ValueError, match="share one core"):
        twin.set_attr("tag", ["a", "b", "c"])
    with pytest.raises(ValueError, match="one entry per row"):
        twin.set_attr("tag", ["a"])
    with pytest.raises(ValueError, match="not settable"):
        twin.set_attr(field, getattr(twin.config, field))


def test_bad_autoreset_modes_and_masks_are_refused() -> None:
    env_id = qdrl_envs.ENV_IDS[0]
    with pytest.raises(ValueError, match="autoreset_mode must be"):
        gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point",
                     autoreset_mode="Disabled")
    twin = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
    assert twin.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP  # Gymnasium's default
    with pytest.raises(RuntimeError, match="before a masked reset"):
        twin.reset(options={"reset_mask": np.array([True, False])})
    twin.reset(seed=0)
    for mask, error, message in (([True, False], TypeError, "numpy array"),
                                 (np.array([True]), ValueError, r"shape \(2,\)"),
                                 (np.array([1, 0]), TypeError, "dtype bool"),
                                 (np.array([False, False]), ValueError, "at least one")):
        with pytest.raises(error, match=message):
            twin.reset(options={"reset_mask": mask})
    with pytest.raises(ValueError, match="num_envs=2 entries"):
        twin.reset(seed=(1, 2, 3))


def test_a_batch_too_big_for_the_memory_is_refused_before_allocating(monkeypatch) -> None:
    from qdrl_envs import core

    monkeypatch.setattr(core, "available_memory", lambda: 2 * 10**9)
    with pytest.raises(ValueError, match=r"num_envs=100000: the state of "
                                         r"SecrecyPowerControlVectorEnv .* kB per row, "
                                         r".* GB in all, more than .* \(2.0 GB available\)"):
        gym.make_vec("qdrl/SecrecyPowerControl-v1", num_envs=100_000,
                     vectorization_mode="vector_entry_point", n_aps=16)
    twin = gym.make_vec("qdrl/SecrecyPowerControl-v1", num_envs=1024,
                        vectorization_mode="vector_entry_point")  # what fits is built
    assert twin.num_envs == 1024


@pytest.mark.parametrize("render_mode", ["ansi", "rgb_array"])
@pytest.mark.parametrize("env_id", qdrl_envs.ENV_IDS)
def test_render_gives_each_rows_frame_as_sync_vector_env(env_id: str, render_mode: str) -> None:
    """Row ``i`` of the twin draws what the single env in the same state draws."""
    twin = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point",
                        max_episode_steps=HORIZON, render_mode=render_mode)
    ref = SyncVectorEnv([lambda: gym.make(env_id, max_episode_steps=HORIZON,
                                          render_mode=render_mode)] * 2)
    assert twin.render_mode == ref.render_mode == render_mode
    twin.reset(seed=5)
    ref.reset(seed=5)
    space = twin.action_space
    space.seed(0)
    for _ in range(3):
        actions = space.sample()
        twin.step(actions)
        ref.step(actions)
    got, want = twin.render(), ref.render()
    assert len(got) == len(want) == 2
    for row, (g, w) in enumerate(zip(got, want, strict=True)):
        if render_mode == "ansi":
            assert g == w, f"row {row}"
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"row {row}")
    assert got[0] is not got[1] and (
        got[0] != got[1] if render_mode == "ansi" else not np.array_equal(got[0], got[1]))
    twin.close()
    ref.close()


def test_twin_refuses_an_unknown_render_mode() -> None:
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        gym.make_vec(qdrl_envs.ENV_IDS[0], num_envs=2, vectorization_mode="vector_entry_point",
                     render_mode="human")
