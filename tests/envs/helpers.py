"""Shared machinery of the environment tests.

The conformance suite (``test_envs.py``) and the per-environment files use these pieces instead of
each writing its own: the table of configs every check runs on (:data:`CONFIGS`), rollouts with a
policy, baseline scores over seeded episodes, an exact comparison of two trajectories, the
vector-twin check (sub-env ``i`` of ``gym.make_vec`` against ``gym.make`` reset with ``seed + i``,
across episode boundaries), rollouts that keep observations in the space, the invalid actions
every action space must reject, config errors that must name their field, and renders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from qdrl_envs.baselines import make_baseline

Policy = Callable[[np.ndarray], Any]
"""Maps one observation to one action."""

Record = tuple[Any, ...]
"""One entry of a trajectory: ``(obs, info)`` after a reset, ``(obs, reward, terminated,
truncated, info)`` after a step."""


CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "qdrl/SecrecyPowerControl-v1": {
        "default": {},
        "M3": {"n_aps": 3},
        "M3-rho": {"n_aps": 3, "fading_rho": 0.6},
        "M4-statistical": {"n_aps": 4, "eve_csi": "statistical"},
        "M2-stat-rho": {"n_aps": 2, "eve_csi": "statistical", "fading_rho": 0.9},
        "M3-stat-unif": {"n_aps": 3, "eve_csi": "statistical", "ap_layout": "uniform"},
        "M4-unconcealed": {"n_aps": 4, "concealed_eves": False},
    },
    "qdrl/DTSyncAoI-v0": {
        "default": {},
        "bernoulli-weighted": {"n_devices": 5, "n_channels": 1,
                               "arrival_prob": (0.2, 0.4, 0.6, 0.8, 1.0),
                               "weights": (1.0, 2.0, 3.0, 0.5, 1.0), "csi_error_var": 0.3},
        "gen-at-will-nofade": {"n_devices": 8, "n_channels": 3, "arrival_prob": 1.0,
                               "rayleigh_fading": False, "csi_error_var": 0.0},
    },
    "qdrl/DTMigration-v0": {
        "default": {},
        "small": {"n_edges": 2, "n_users": 3, "edge_capacity_twins": 1, "p_stay": 0.3},
        "big": {"n_edges": 6, "n_users": 10, "edge_capacity_twins": 3, "task_rate": 2.5},
    },
    "qdrl/SemanticSlicing-v1": {
        "default": {},
        "small-cell": {"n_rbs": 12, "critical_msg_rate": 3.0, "routine_msg_rate": 10.0,
                       "embb_load_bps": 4e6, "urllc_load_bps": 1e6, "slot_s": 0.005},
        "urllc-heavy": {"urllc_load_bps": 10e6, "urllc_delay_budget_s": 0.02,
                        "urllc_weight": 3.0, "symbols_per_word": 4.0},
    },
    "qdrl/MobileTransmitter-v1": {
        "default": {},
        "fading-moving-users": {"n_users": 3, "rayleigh_fading": True,
                                "user_speed_m_s": 3.0, "rate_weight": 0.5},
        "one-user-fast": {"n_users": 1, "area_m": 1000.0, "altitude_m": 120.0,
                          "max_speed_m_s": 50.0, "path_loss_exponent": 2.0},
    },
}
"""Per registered id, the configs the conformance suite (``test_envs.py``) runs every check on
(name -> ``gym.make`` kwargs, ``"default"`` first); per-env files parametrise their physics
over the same table."""


def short_id(env_id: str) -> str:
    """``"qdrl/DTSyncAoI-v0"`` -> ``"DTSyncAoI"``, for readable test ids."""
    return env_id.split("/")[-1].rsplit("-v", 1)[0]


# ------------------------------------------------------------------------- rollouts and scores


def _snapshot(value: Any) -> Any:
    """Copy the arrays in ``value`` (dicts and tuples recursively): later steps cannot change it."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_snapshot(v) for v in value)
    return value


def rollout(env: gym.Env, seed: int, steps: int,
            actions: Sequence[Any] | Policy | None = None, *, action_seed: int = 0) -> list[Record]:
    """Run ``steps`` steps from ``env.reset(seed=seed)``, resetting (unseeded) when an episode ends.

    Args:
        env: A single environment.
        seed: The reset seed.
        steps: Number of ``step`` calls.
        actions: A sequence of actions (one per step), a policy ``obs -> action``, or ``None``
            for ``env.action_space.sample()`` with the action space seeded by ``action_seed``.
        action_seed: Seed of the action space when ``actions`` is ``None``.

    Returns:
        The records, copies (later steps cannot change them): ``(obs, info)`` for each
        reset and ``(obs, reward, terminated, truncated, info)`` for each step.
    """
    if actions is None:
        env.action_space.seed(action_seed)
    obs, info = env.reset(seed=seed)
    out: list[Record] = [_snapshot((obs, info))]
    for t in range(steps):
        if actions is None:
            action = env.action_space.sample()
        elif callable(actions):
            action = actions(obs)
        else:
            action = actions[t]
        obs, reward, terminated, truncated, info = env.step(action)
        out.append(_snapshot((obs, reward, terminated, truncated, info)))
        if terminated or truncated:
            obs, info = env.reset()
            out.append(_snapshot((obs, info)))
    return out


def episode_return(env: gym.Env, policy: Any, seed: int) -> float:
    """Total reward of one episode from ``env.reset(seed=seed)`` with a baseline-style policy.

    ``policy.predict(obs, episode_start=...)`` gets ``episode_start=True`` on the first step only
    (stateful baselines such as round-robin restart on it; the others ignore it).
    """
    obs, _ = env.reset(seed=seed)
    total, done, first = 0.0, False, True
    while not done:
        action, _ = policy.predict(obs, episode_start=first)
        first = False
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        done = terminated or truncated
    return total


def baseline_returns(env: gym.Env, name: str, reset_seeds: Sequence[int],
                     policy_seeds: int | Sequence[int]) -> np.ndarray:
    """Episode returns of the baseline ``name`` over seeded episodes.

    With one policy per episode, baselines that act on observations alone play their episodes
    side by side in the vector twin of ``env`` (same id, config and time limit): sub-env ``i``
    reset with ``reset_seeds[i]`` is ``env`` reset with it (``test_envs.py`` checks the twin
    step by step) and policy ``i`` acts on row ``i`` only, so the returns are those of the
    episodes played one after the other (to the last bit where the twin is exact; a few envs
    still round some per-row matmuls differently per batch size, ~1e-16 relative, far below
    any margin), at a fraction of the cost. Oracles (``needs_state``: they read
    ``env.unwrapped``) and a shared policy play the episodes one after the other in ``env``.

    Args:
        env: The environment (made with ``gym.make``, so its time limit ends the episodes).
        name: A baseline of that environment.
        reset_seeds: One reset seed per episode.
        policy_seeds: One seed per episode (a fresh policy each episode), or a single seed (one
            policy plays every episode in turn, its generator running on).

    Returns:
        The returns, one per episode, as a float array.
    """
    reset_seeds = list(reset_seeds)
    if isinstance(policy_seeds, int):
        policy = make_baseline(name, env, seed=policy_seeds)
        return np.array([episode_return(env, policy, s) for s in reset_seeds])
    if len(policy_seeds) != len(reset_seeds):
        raise ValueError("give one policy seed per reset seed")
    policies = [make_baseline(name, env, seed=s) for s in policy_seeds]
    if policies[0].needs_state:
        return np.array([episode_return(env, p, s) for p, s in zip(policies, reset_seeds,
                                                                   strict=True)])
    n = len(reset_seeds)
    venv = gym.make_vec(env.spec.id, num_envs=n, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP,
                        max_episode_steps=env.spec.max_episode_steps, config=env.unwrapped.config)
    obs, _ = venv.reset(seed=reset_seeds)
    totals, running, first = np.zeros(n), np.ones(n, dtype=bool), True
    while running.any():  # an ended episode's sub-env autoresets; its rewards no longer count
        actions = np.stack([np.asarray(p.predict(o, episode_start=first)[0])
                            for p, o in zip(policies, obs, strict=True)])
        first = False
        obs, rewards, terminated, truncated, _ = venv.step(actions)
        totals[running] += rewards[running]
        running &= ~(terminated | truncated)
    return totals


# ------------------------------------------------------------------------- exact comparisons


def assert_same(x: Any, y: Any, where: str = "") -> None:
    """Assert two values are identical: dicts key by key, sequences item by item, arrays to the bit.

    Arrays must also agree in dtype; numbers are compared with ``==`` (NaN never equals).
    """
    if isinstance(x, Mapping):
        assert isinstance(y, Mapping), f"{where}: {type(y).__name__} is not a mapping"
        assert set(x) == set(y), f"{where}: keys {sorted(x)} != {sorted(y)}"
        for key in x:
            assert_same(x[key], y[key], f"{where}[{key!r}]")
    elif isinstance(x, (tuple, list)):
        assert isinstance(y, (tuple, list)) and len(x) == len(y), f"{where}: {x!r} != {y!r}"
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            assert_same(u, v, f"{where}[{i}]")
    elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        assert np.asarray(x).dtype == np.asarray(y).dtype, f"{where}: dtypes differ"
        np.testing.assert_array_equal(x, y, err_msg=where, strict=True)
    else:
        assert x == y, f"{where}: {x!r} != {y!r}"


def assert_trajectories_equal(a: Sequence[Record], b: Sequence[Record]) -> None:
    """Assert two trajectories from :func:`rollout` agree exactly, record by record."""
    assert len(a) == len(b), f"trajectories differ in length: {len(a)} != {len(b)}"
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        assert_same(x, y, f"record {t}")


def _assert_info_row(single: Mapping[str, Any], batched: Mapping[str, Any], i: int,
                     where: str) -> None:
    """Assert a single env's info equals row ``i`` of a vector env's info, key by key.

    The vector info is laid out as Gymnasium's: row ``i`` has exactly the keys whose ``_key``
    mask is set there, and those are the single env's keys.
    """
    for key, value in single.items():
        assert key in batched, f"{where}: {key!r} missing from the vector info"
        assert batched[f"_{key}"][i], f"{where}: {key!r} masked off in row {i}"
        if isinstance(value, Mapping):
            _assert_info_row(value, batched[key], i, f"{where}[{key!r}]")
        else:
            np.testing.assert_array_equal(np.asarray(batched[key])[i], value,
                                          err_msg=f"{where}[{key!r}]")
    extra = [k for k in batched if not k.startswith("_") and k not in single
             and k not in ("final_obs", "final_info") and batched[f"_{k}"][i]]
    assert not extra, f"{where}: row {i} has keys the single env has not: {extra}"


def assert_vector_twin_matches_single(env_id: str, kwargs: Mapping[str, Any], *, horizon: int,
                                      steps: int, num_envs: int = 3, seed: int = 11,
                                      action_seed: int = 1) -> int:
    """Assert ``gym.make_vec`` (vector entry point) reproduces ``num_envs`` single envs exactly.

    Sub-environment ``i`` is compared with ``gym.make(env_id, **kwargs)`` reset with
    ``seed + i`` on every step: observations, rewards, termination and truncation flags and
    every info entry (dicts such as ``reward_terms`` recursively). Where an episode ends the
    single env's last observation and info must be the vector env's ``final_obs`` /
    ``final_info`` row (flagged in ``_final_obs`` / ``_final_info``); the single env is then
    reset without a seed, its reset info must be that row's top-level info (Gymnasium's
    ``SAME_STEP`` layout), and it must go on matching the sub-environment that autoreset.

    Args:
        env_id: A registered id with a vector entry point.
        kwargs: Config fields for both.
        horizon: ``max_episode_steps`` of both (pick it so ``steps`` crosses episode ends).
        steps: Number of vector steps.
        num_envs: Number of sub-environments.
        seed: Reset seed of the vector env (sub-env ``i`` gets ``seed + i``).
        action_seed: Seed of the vector action space the batches are sampled from.

    Returns:
        How many episode ends were crossed (the assertion fails if none were).
    """
    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.SAME_STEP,
                        max_episode_steps=horizon, **kwargs)
    singles = [gym.make(env_id, max_episode_steps=horizon, **kwargs) for _ in range(num_envs)]
    venv.action_space.seed(action_seed)
    vobs, vinfo = venv.reset(seed=seed)
    for i, env in enumerate(singles):
        obs, info = env.reset(seed=seed + i)
        np.testing.assert_array_equal(vobs[i], obs, strict=True)
        _assert_info_row(info, vinfo, i, f"reset, sub-env {i}")
    ends = 0
    for t in range(steps):
        actions = venv.action_space.sample()
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions)
        for i, env in enumerate(singles):
            where = f"step {t}, sub-env {i}"
            obs, rew, term, trunc, info = env.step(actions[i])
            assert rew == vrew[i], where
            assert (term, trunc) == (vterm[i], vtrunc[i]), where
            if term or trunc:
                ends += 1
                assert vinfo["_final_obs"][i] and vinfo["_final_info"][i], where
                np.testing.assert_array_equal(vinfo["final_obs"][i], obs, err_msg=where)
                _assert_info_row(info, vinfo["final_info"], i, f"{where} final_info")
                obs, reset_info = env.reset()
                _assert_info_row(reset_info, vinfo, i, f"{where} reset info")
            else:
                _assert_info_row(info, vinfo, i, where)
                if "_final_obs" in vinfo:
                    assert not vinfo["_final_obs"][i], where
            np.testing.assert_array_equal(vobs[i], obs, err_msg=where, strict=True)
    assert ends > 0, "the run crossed no episode boundary: raise steps or lower the horizon"
    return ends


# ------------------------------------------------------------------------- robustness


def assert_rollout_in_space(env: gym.Env | VectorEnv, *, seed: int, steps: int,
                            actions: Callable[[int], Any] | None = None,
                            check: Callable[[np.ndarray, Any, dict[str, Any]], None]
                            | None = None) -> None:
    """Run an env and assert observations stay float32 and in the space, rewards finite.

    A vector env autoresets; the final observations of the episodes that ended
    (``info["final_obs"]``) are checked too. A single env is reset (unseeded) when an episode
    ends and the new first observation checked.

    Args:
        env: A vector or a single environment.
        seed: Reset seed; when ``actions`` is ``None`` it also seeds the action space.
        steps: Number of steps.
        actions: ``t -> action`` (a batch for a vector env), or ``None`` to sample the action
            space.
        check: Extra per-step assertions, called as ``check(obs, rewards, info)`` with the
            step's info (``info["final_info"]`` where every row of a vector env just ended).
    """
    vector = isinstance(env, VectorEnv)
    space = env.observation_space
    single = env.single_observation_space if vector else space
    obs, _ = env.reset(seed=seed)
    assert obs.dtype == np.float32 and space.contains(obs)
    if actions is None:
        env.action_space.seed(seed)
    for t in range(steps):
        action = env.action_space.sample() if actions is None else actions(t)
        obs, rewards, terminated, truncated, info = env.step(action)
        assert obs.dtype == np.float32, obs.dtype
        assert space.contains(obs), f"step {t}: observations outside {space}"
        assert np.all(np.isfinite(rewards)), f"step {t}: {rewards}"
        if vector and "final_obs" in info:  # the last observations of the episodes that ended
            ended = np.stack(list(info["final_obs"][info["_final_obs"]]))
            assert ended.dtype == np.float32
            assert all(single.contains(o) for o in ended), f"step {t}: final_obs outside"
        if check is not None:
            # Where every row of a SAME_STEP vector env ended, the step's info is only in
            # final_info (the top level holds the new episodes' reset info).
            done_all = vector and "final_info" in info and bool(np.all(info["_final_info"]))
            check(obs, rewards, info["final_info"] if done_all else info)
        if not vector and (terminated or truncated):
            obs, _ = env.reset()
            assert space.contains(obs), f"step {t}: first observation outside {space}"


def config_or_field_error(config_cls: type, field: str, value: Any) -> Any:
    """Build ``config_cls(**{field: value})``; a ``ValueError`` must name ``field``.

    Returns:
        The config, or ``None`` where the value was rejected (with a message naming the field).
    """
    try:
        return config_cls(**{field: value})
    except ValueError as exc:
        assert field in str(exc), f"the error does not name {field!r}: {exc}"
        return None


def render_after_step(env_id: str, render_mode: str, action: Any = None,
                      **kwargs: Any) -> Any:
    """``render()`` of ``gym.make(env_id, render_mode=..., **kwargs)`` after a reset and a step.

    Args:
        env_id: A registered id.
        render_mode: ``"ansi"`` or ``"rgb_array"``.
        action: The step's action; ``None`` samples the action space.
        **kwargs: Config fields.

    Returns:
        What ``render()`` returned.
    """
    env = gym.make(env_id, render_mode=render_mode, **kwargs)
    env.reset(seed=0)
    env.step(env.action_space.sample() if action is None else action)
    return env.render()


def assert_rgb_frame(frame: Any) -> None:
    """Assert an ``"rgb_array"`` render is a uint8 ``(H, W, 3)`` picture, not a blank canvas."""
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8, type(frame)
    assert frame.ndim == 3 and frame.shape[2] == 3, frame.shape
    assert frame.std() > 0  # a picture, not a blank canvas


# ------------------------------------------------------------------------- bad input


def base_action(space: spaces.Box | spaces.MultiDiscrete) -> np.ndarray:
    """The valid action :func:`invalid_actions` spoils one entry of: a Box's midpoint (in its
    dtype), a MultiDiscrete's lowest values."""
    if isinstance(space, spaces.Box):
        return ((space.low + space.high) / 2).astype(space.dtype)
    return np.asarray(space.start, dtype=np.int64) + np.zeros(space.shape, np.int64)


def invalid_actions(space: spaces.Space) -> dict[str, tuple[Any, str]]:
    """Actions ``space`` must reject, with the ``ValueError`` message each must match.

    Box: NaN, +inf, a wrong shape, a batch of one, above the high bound and below the low bound
    of the first and last entries (per-entry bounds differ, e.g. powers and moves), strings.
    Discrete: NaN, inf, two entries, ``n``, ``-1``, a fraction, a string. MultiDiscrete: NaN,
    inf, a short vector, a batch of one, ``nvec`` and ``-1`` at the first and last entries, a
    fraction, strings.

    Returns:
        ``{readable id: (action, regex the error message must match)}``.
    """
    if isinstance(space, spaces.Discrete):
        return {"nan": (float("nan"), "action.*NaN or inf"),
                "inf": (float("inf"), "action.*NaN or inf"),
                "wrong-shape": ([0, 1], "action.*shape"),
                "above": (int(space.start + space.n), "action must be in"),
                "below": (int(space.start) - 1, "action must be in"),
                "fraction": (float(space.start) + 0.5, "action.*integral"),
                "string": ("a", "action.*numeric")}
    if isinstance(space, spaces.Box):
        valid = base_action(space)
        out: dict[str, tuple[Any, str]] = {}
        for name, value in (("nan", np.nan), ("inf", np.inf)):
            bad = valid.copy()
            bad.flat[0] = value
            out[name] = (bad, "action.*NaN or inf")
        out["wrong-shape"] = (np.append(valid, valid.flat[0]), "action.*shape")
        out["batched"] = (valid[None], "action.*shape")
        for end, idx in (("first", 0), ("last", -1)):
            above, below = valid.copy(), valid.copy()
            above.flat[idx] = space.high.flat[idx] + 0.01
            below.flat[idx] = space.low.flat[idx] - 0.01
            out[f"above-{end}"] = (above, "action outside the action space")
            out[f"below-{end}"] = (below, "action outside the action space")
        out["strings"] = (np.full(space.shape, "a"), "action.*numeric")
        return out
    if isinstance(space, spaces.MultiDiscrete):
        valid = base_action(space)
        out = {}
        for name, value in (("nan", np.nan), ("inf", np.inf)):
            bad = valid.astype(np.float64)
            bad.flat[-1] = value
            out[name] = (bad, "action.*NaN or inf")
        out["wrong-shape"] = (valid.ravel()[:-1], "action.*shape")
        out["batched"] = (valid[None], "action.*shape")
        for end, idx in (("first", 0), ("last", -1)):
            above, below = valid.copy(), valid.copy()
            above.flat[idx] = valid.flat[idx] + space.nvec.flat[idx]
            below.flat[idx] = valid.flat[idx] - 1
            out[f"above-{end}"] = (above, "action outside MultiDiscrete")
            out[f"below-{end}"] = (below, "action outside MultiDiscrete")
        fraction = valid.astype(np.float64)
        fraction.flat[0] += 0.5
        out["fraction"] = (fraction, "action.*integral")
        out["strings"] = (np.full(space.shape, "a"), "action.*numeric")
        return out
    raise TypeError(f"no invalid actions defined for {space}")
