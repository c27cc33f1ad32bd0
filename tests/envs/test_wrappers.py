from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from qdrl_envs.wrappers import (
    AdapterNotApplicable,
    BoxToDiscrete,
    DiscreteToBox,
    MultiDiscreteToDiscrete,
    adapt_action_space,
    adapter_for,
)


class _Echo(gym.Env):
    """Records the last action it received; any action space."""

    def __init__(self, action_space: spaces.Space) -> None:
        self.action_space = action_space
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.last = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), (action, self.action_space)
        self.last = action
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_box_to_discrete_enumerates_the_grid() -> None:
    env = _Echo(spaces.Box(np.array([0.0, -2.0], np.float32), np.array([1.0, 2.0], np.float32)))
    wrapped = BoxToDiscrete(env, levels=3)
    assert wrapped.action_space == spaces.Discrete(9)
    wrapped.reset(seed=0)
    seen = []
    for a in range(9):
        wrapped.step(a)
        seen.append(tuple(np.round(env.last, 6)))
    expected = list(itertools.product([0.0, 0.5, 1.0], [-2.0, 0.0, 2.0]))
    assert seen == expected


def test_box_to_discrete_cap_and_bounds() -> None:
    env = _Echo(spaces.Box(0.0, 1.0, (6,), dtype=np.float32))
    with pytest.raises(AdapterNotApplicable, match=r"5\*\*6 = 15625 .*max_actions=4096"):
        BoxToDiscrete(env)
    assert BoxToDiscrete(env, levels=2).action_space.n == 64
    unbounded = _Echo(spaces.Box(-np.inf, np.inf, (1,), dtype=np.float32))
    with pytest.raises(AdapterNotApplicable, match="finite"):
        BoxToDiscrete(unbounded)
    with pytest.raises(ValueError, match="levels must be >= 2"):
        BoxToDiscrete(_Echo(spaces.Box(0.0, 1.0, (1,))), levels=1)
    with pytest.raises(TypeError, match="levels must be an int"):
        BoxToDiscrete(_Echo(spaces.Box(0.0, 1.0, (1,))), levels=2.5)


def test_index_is_checked() -> None:
    wrapped = BoxToDiscrete(_Echo(spaces.Box(0.0, 1.0, (1,), dtype=np.float32)), levels=4)
    wrapped.reset()
    for bad in (4, -1, 1.5, np.array([1, 2])):
        with pytest.raises(ValueError, match="action must"):
            wrapped.step(bad)
    wrapped.step(np.array([3]))  # SB3 passes shape-(1,) arrays
    assert env_last(wrapped) == pytest.approx([1.0])


def env_last(wrapped: gym.Wrapper) -> list[float]:
    return np.asarray(wrapped.unwrapped.last).tolist()


def test_discrete_to_box_argmax() -> None:
    env = _Echo(spaces.Discrete(3, start=1))
    wrapped = DiscreteToBox(env)
    assert wrapped.action_space == spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    wrapped.reset()
    wrapped.step(np.array([0.1, 0.9, -0.3], np.float32))
    assert env.last == 2
    with pytest.raises(ValueError, match="shape"):
        wrapped.step(np.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        wrapped.step(np.array([np.nan, 0.0, 0.0]))


def test_multidiscrete_to_box_per_segment() -> None:
    env = _Echo(spaces.MultiDiscrete([2, 3]))
    wrapped = DiscreteToBox(env)
    assert wrapped.action_space.shape == (5,)
    wrapped.reset()
    wrapped.step(np.array([-1.0, 1.0, 0.0, 0.2, 0.1], np.float32))
    assert env.last.tolist() == [1, 1]
    with pytest.raises(AdapterNotApplicable, match="max_dims=4"):
        DiscreteToBox(env, max_dims=4)


def test_multidiscrete_to_discrete_is_a_bijection() -> None:
    env = _Echo(spaces.MultiDiscrete([2, 3, 4]))
    wrapped = MultiDiscreteToDiscrete(env)
    assert wrapped.action_space.n == 24
    wrapped.reset()
    seen = set()
    for a in range(24):
        wrapped.step(a)
        seen.add(tuple(env.last.tolist()))
    assert seen == set(itertools.product(range(2), range(3), range(4)))
    with pytest.raises(AdapterNotApplicable, match=r"24 joint actions.*max_actions=10"):
        MultiDiscreteToDiscrete(env, max_actions=10)


@pytest.mark.parametrize(
    ("space", "need", "expected"),
    [
        (spaces.Box(0.0, 1.0, (2,)), "discrete", "BoxToDiscrete"),
        (spaces.Box(0.0, 1.0, (2,)), "box", None),
        (spaces.Box(0.0, 1.0, (2,)), "any", None),
        (spaces.Discrete(4), "discrete", None),
        (spaces.Discrete(4), "box", "DiscreteToBox"),
        (spaces.MultiDiscrete([3, 3]), "discrete", "MultiDiscreteToDiscrete"),
        (spaces.MultiDiscrete([3, 3]), "box", "DiscreteToBox"),
        (spaces.MultiDiscrete([3, 3]), "any", None),
    ],
    ids=lambda v: str(v),
)
def test_adapter_choice(space: spaces.Space, need: str, expected: str | None) -> None:
    assert adapter_for(space, need) == expected
    env, name = adapt_action_space(_Echo(space), need)
    assert name == expected
    if need == "discrete":
        assert isinstance(env.action_space, spaces.Discrete)
    if need == "box":
        assert isinstance(env.action_space, spaces.Box)


def test_adapter_bad_need_and_space() -> None:
    with pytest.raises(ValueError, match="need must be one of"):
        adapter_for(spaces.Discrete(2), "continuous")
    with pytest.raises(AdapterNotApplicable, match="Dict"):
        adapter_for(spaces.Dict({"a": spaces.Discrete(2)}), "box")


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
@pytest.mark.parametrize(("env_id", "need"), [("Pendulum-v1", "discrete"),
                                              ("CartPole-v1", "box")], ids=str)
def test_wrapped_gymnasium_envs_pass_check_env(env_id: str, need: str) -> None:
    env, name = adapt_action_space(gym.make(env_id), need)
    assert name is not None
    check_env(env, skip_render_check=True)
    env.reset(seed=1)
    for _ in range(5):
        env.step(env.action_space.sample())
