"""Poisoned training wrappers: the corrupted fraction, the identity at 0, check_env, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import qdrl_envs
from qdrl_envs.wrappers import PoisonedObservation, PoisonedReward

SECRECY = "qdrl/SecrecyPowerControl-v1"
STEPS = 2000


def _rollout(env: gym.Env, steps: int, seed: int = 0) -> tuple[list, list, list]:
    """Step observations, rewards and poisoned flags of ``steps`` seeded random-action steps
    (episodes restart as they end)."""
    env.action_space.seed(seed)
    env.reset(seed=seed)
    observations, rewards, flags = [], [], []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        observations.append(obs)
        rewards.append(float(reward))
        flags.append(bool(info.get("poisoned", False)))
        if terminated or truncated:
            env.reset()
    return observations, rewards, flags


@pytest.mark.parametrize("fraction", [0.1, 0.3])
@pytest.mark.parametrize("mode", ["flip", "scale", "bias"])
def test_reward_poisoning_corrupts_the_requested_fraction(mode: str, fraction: float) -> None:
    clean = _rollout(gym.make(SECRECY), STEPS)
    env = PoisonedReward(gym.make(SECRECY), fraction, mode, scale=3.0, bias=-2.0, seed=7)
    obs, rewards, flags = _rollout(env, STEPS)
    # The env's own randomness is untouched: the same observations as the clean run.
    np.testing.assert_array_equal(np.asarray(obs), np.asarray(clean[0]))
    rate = np.mean(flags)
    sd = np.sqrt(fraction * (1 - fraction) / STEPS)
    assert abs(rate - fraction) < 4 * sd, (rate, fraction)
    assert env.unwrapped is env.env.unwrapped and env.poisoned_steps == sum(flags)
    want = {"flip": lambda r: -r, "scale": lambda r: 3.0 * r, "bias": lambda r: r - 2.0}[mode]
    for got, r, hit in zip(rewards, clean[1], flags, strict=True):
        assert got == pytest.approx(want(r) if hit else r)


def test_targeted_reward_poisoning_only_rewards_the_target_action() -> None:
    env = PoisonedReward(gym.make("CartPole-v1"), 1.0, "targeted", bias=5.0, target_action=1,
                         seed=0)
    env.reset(seed=0)
    _, r0, *_, info0 = env.step(0)
    _, r1, *_, info1 = env.step(1)
    assert (r0, info0["poisoned"]) == (1.0, False)
    assert (r1, info1["poisoned"]) == (6.0, True)
    box = PoisonedReward(gym.make(SECRECY), 1.0, "targeted", bias=1.0,
                         target_action=np.zeros(2, dtype=np.float32), target_tol=0.1, seed=0)
    box.reset(seed=0)
    assert box.step(np.full(2, 0.05, dtype=np.float32))[4]["poisoned"]
    assert not box.step(np.full(2, 0.5, dtype=np.float32))[4]["poisoned"]


@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_observation_noise_corrupts_the_requested_fraction_inside_the_space(
        fraction: float) -> None:
    clean_obs, clean_rewards, _ = _rollout(gym.make(SECRECY), STEPS)
    env = PoisonedObservation(gym.make(SECRECY), fraction, "noise", scale=0.05, seed=3)
    obs, rewards, flags = _rollout(env, STEPS)
    assert rewards == clean_rewards  # what is corrupted is the agent's view, not the world
    space = env.observation_space
    assert all(space.contains(o) for o in obs)
    changed = [not np.array_equal(o, c) for o, c in zip(obs, clean_obs, strict=True)]
    assert changed == flags  # exactly the flagged observations differ from the clean ones
    rate = np.mean(flags)
    assert abs(rate - fraction) < 4 * np.sqrt(fraction * (1 - fraction) / STEPS)


def test_observation_trigger_sets_the_trigger_features() -> None:
    env = PoisonedObservation(gym.make(SECRECY), 1.0, "trigger", trigger_features=[0, 2],
                              trigger_value=0.25, seed=0)
    obs, info = env.reset(seed=0)
    assert info["poisoned"] and obs[0] == obs[2] == np.float32(0.25)
    clean, _ = gym.make(SECRECY).reset(seed=0)
    np.testing.assert_array_equal(np.delete(obs, [0, 2]), np.delete(clean, [0, 2]))


@pytest.mark.parametrize("make", [
    lambda env: PoisonedReward(env, 0.0, "flip", seed=0),
    lambda env: PoisonedObservation(env, 0.0, "noise", scale=0.5, seed=0),
], ids=["reward", "observation"])
def test_fraction_zero_is_the_identity(make) -> None:
    clean = _rollout(gym.make(SECRECY), 500)
    poisoned = _rollout(make(gym.make(SECRECY)), 500)
    np.testing.assert_array_equal(np.asarray(poisoned[0]), np.asarray(clean[0]))
    assert poisoned[1] == clean[1] and not any(poisoned[2])


def test_poisoning_restarts_with_each_seeded_reset() -> None:
    def flags(seed: int) -> list[bool]:
        return _rollout(PoisonedReward(gym.make(SECRECY), 0.5, "flip"), 300, seed)[2]

    assert flags(1) == flags(1)
    assert flags(1) != flags(2)


@pytest.mark.filterwarnings("ignore:.*is different from the unwrapped version")
@pytest.mark.parametrize("env_id", qdrl_envs.ENV_IDS)
def test_poisoned_envs_pass_check_env(env_id: str) -> None:
    check_env(PoisonedReward(gym.make(env_id).unwrapped, 0.3, "scale", scale=2.0, seed=0),
              skip_render_check=True)
    check_env(PoisonedObservation(gym.make(env_id).unwrapped, 0.3, "noise", seed=0),
              skip_render_check=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"fraction": 1.5}, r"fraction=1.5 must be in \[0, 1\]"),
    ({"fraction": float("nan")}, r"fraction=nan must be in \[0, 1\]"),
    ({"fraction": "0.1"}, "fraction='0.1' must be a number"),
    ({"fraction": 0.1, "mode": "swap"}, "mode='swap' is not one of"),
    ({"fraction": 0.1, "mode": "scale", "scale": float("inf")}, "scale=inf must be a finite"),
    ({"fraction": 0.1, "mode": "targeted"}, "needs target_action"),
    ({"fraction": 0.1, "mode": "targeted", "target_action": 3}, "not in the action space"),
    ({"fraction": 0.1, "mode": "flip", "target_action": 1}, "only used with mode='targeted'"),
    ({"fraction": 0.1, "seed": -1}, "seed=-1 must be None or an int >= 0"),
], ids=["fraction-high", "fraction-nan", "fraction-str", "mode", "scale", "no-target",
        "bad-target", "stray-target", "seed"])
def test_reward_poisoning_refuses_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        PoisonedReward(gym.make("CartPole-v1"), **kwargs)


@pytest.mark.parametrize("env_id, kwargs, match", [
    ("FrozenLake-v1", {"fraction": 0.1}, "needs a Box observation space"),
    (SECRECY, {"fraction": 0.1, "scale": -0.1}, "scale=-0.1 must be >= 0"),
    (SECRECY, {"fraction": 0.1, "mode": "trigger"}, "needs trigger_features"),
    (SECRECY, {"fraction": 0.1, "mode": "trigger", "trigger_features": [0, 0]}, "distinct"),
    (SECRECY, {"fraction": 0.1, "mode": "trigger", "trigger_features": [10_000]}, "distinct"),
    (SECRECY, {"fraction": 0.1, "trigger_features": [0]}, "only used with mode='trigger'"),
], ids=["not-box", "scale", "no-trigger", "repeated", "out-of-range", "stray-trigger"])
def test_observation_poisoning_refuses_bad_arguments(env_id, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        PoisonedObservation(gym.make(env_id), **kwargs)
