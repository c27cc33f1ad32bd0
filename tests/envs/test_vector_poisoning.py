"""Vector poisoning wrappers: row for row the single-env wrappers under SyncVectorEnv."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import qdrl_envs  # noqa: F401 - registers the ids
from qdrl_envs.wrappers import (
    PoisonedObservation,
    PoisonedReward,
    VectorAdversarialObservation,
    VectorPoisonedObservation,
    VectorPoisonedReward,
)

SECRECY = "qdrl/SecrecyPowerControl-v1"


def _single() -> gym.Env:
    env = gym.make(SECRECY, max_episode_steps=7)
    env = PoisonedReward(env, 0.3, "flip", seed=3)
    return PoisonedObservation(env, 0.4, "noise", scale=0.2, seed=5)


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
@pytest.mark.parametrize("twin", [False, True])
def test_vector_wrappers_draw_what_the_single_wrappers_draw(mode, twin) -> None:
    n = 4
    reference = SyncVectorEnv([_single] * n, autoreset_mode=mode)
    if twin:
        inner = gym.make_vec(SECRECY, num_envs=n, vectorization_mode="vector_entry_point",
                             autoreset_mode=mode, max_episode_steps=7)
    else:
        inner = SyncVectorEnv([lambda: gym.make(SECRECY, max_episode_steps=7)] * n,
                              autoreset_mode=mode)
    vec = VectorPoisonedObservation(VectorPoisonedReward(inner, 0.3, "flip", seed=3), 0.4,
                                    "noise", scale=0.2, seed=5)
    a, _ = reference.reset(seed=11)
    b, _ = vec.reset(seed=11)
    np.testing.assert_allclose(a, b, atol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        ra, rb = reference.step(actions), vec.step(actions)
        np.testing.assert_allclose(ra[0], rb[0], atol=1e-6)
        np.testing.assert_allclose(ra[1], rb[1], atol=1e-9)
        if mode == AutoresetMode.SAME_STEP and "_final_obs" in ra[4]:
            for i in np.flatnonzero(ra[4]["_final_obs"]):
                np.testing.assert_allclose(ra[4]["final_obs"][i], rb[4]["final_obs"][i],
                                           atol=1e-6)
    singles = [reference.envs[i] for i in range(n)]
    assert vec.env.poisoned_steps == sum(e.env.poisoned_steps for e in singles)
    assert vec.poisoned_steps == sum(e.poisoned_steps for e in singles)
    assert 0 < vec.env.poisoned_steps < vec.env.steps


def test_vector_wrappers_refuse_what_the_single_ones_refuse() -> None:
    inner = SyncVectorEnv([lambda: gym.make("CartPole-v1")])
    with pytest.raises(ValueError, match=r"fraction=1.5 must be in \[0, 1\]"):
        VectorPoisonedReward(inner, 1.5)
    with pytest.raises(ValueError, match="target_action=7 is not in the action space"):
        VectorPoisonedReward(inner, 0.5, "targeted", target_action=7)
    with pytest.raises(ValueError, match=r"rate=2 must be a number in \[0, 1\]|must be in"):
        VectorAdversarialObservation(inner, 2)


def test_adversarial_observation_attacks_the_drawn_rate_inside_the_space() -> None:
    n = 8
    inner = gym.make_vec(SECRECY, num_envs=n, vectorization_mode="vector_entry_point",
                         autoreset_mode=AutoresetMode.SAME_STEP)
    seen = []

    def attack(rows: np.ndarray) -> np.ndarray:
        seen.append(len(rows))
        return rows + 5.0  # far outside: the wrapper clips into the space

    env = VectorAdversarialObservation(inner, 0.25, attack, seed=0)
    env.reset(seed=0)
    space = inner.single_observation_space
    for _ in range(100):
        obs, *_ = env.step(np.zeros((n, 2), dtype=np.float32))
        assert np.all(obs <= space.high) and np.all(obs >= space.low)
    assert abs(env.attacked_steps / env.steps - 0.25) < 0.06
    assert sum(seen[1:]) == env.attacked_steps  # the reset's rows are attacked, not counted
