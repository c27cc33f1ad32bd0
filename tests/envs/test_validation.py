"""Action checking shared by every environment (qdrl_envs.validation.check_action)."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from qdrl_envs.validation import check_action

BOX = spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
BOX_2D = spaces.Box(np.array([[-1.0, 0.0]]), np.array([[1.0, 5.0]]), dtype=np.float64)
DISCRETE = spaces.Discrete(4, start=1)
MULTI = spaces.MultiDiscrete([3, 2])


# -- Box -------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [
    np.array([0.0, 1.0], dtype=np.float32), np.array([0.25, 0.5]), [0.3, 0.7], (1, 0),
    np.array([1, 0], dtype=np.int64),
], ids=["float32", "float64", "list", "int-tuple", "int-array"])
def test_box_accepts_valid_actions_as_float64_copies(action):
    out = check_action(BOX, action)
    assert out.dtype == np.float64 and out.shape == (2,)
    np.testing.assert_array_equal(out, np.asarray(action, dtype=np.float64))
    if isinstance(action, np.ndarray):
        out[0] = 0.123
        assert action[0] != 0.123  # a copy, never a view of the caller's array


@pytest.mark.parametrize("action, message", [
    (np.array([0.5, 0.5, 0.5]), r"action must have shape \(2,\), got \(3,\)"),
    (np.array([[0.5, 0.5]]), r"action must have shape \(2,\), got \(1, 2\)"),
    (np.array([np.nan, 0.5]), r"action contains NaN or inf at index \[\[0\]\]"),
    (np.array([0.5, -np.inf]), r"action contains NaN or inf at index \[\[1\]\]"),
    (np.array([1.5, 0.5]), r"outside the action space at index \[\[0\]\]: 1.5 not in \[0.0, 1.0\]"),
    (np.array([0.5, -0.1], dtype=np.float32), r"outside the action space.*\[\[1\]\]"),
    (np.array(["a", "b"]), "action must be numeric"),
    (np.array([None, None]), "action must be numeric"),
], ids=["long", "extra-axis", "nan", "inf", "above", "below", "strings", "objects"])
def test_box_rejections_name_the_problem(action, message):
    with pytest.raises(ValueError, match=message):
        check_action(BOX, action)


def test_box_with_per_entry_bounds():
    check_action(BOX_2D, np.array([[-1.0, 5.0]]))
    with pytest.raises(ValueError, match=r"index \[\[0, 1\]\]"):
        check_action(BOX_2D, np.array([[0.0, 5.5]]))


def test_box_batched():
    ok = check_action(BOX, np.full((3, 2), 0.5, dtype=np.float32), batch=3)
    assert ok.shape == (3, 2) and ok.dtype == np.float64
    with pytest.raises(ValueError, match=r"action \(batched\) must have shape \(3, 2\)"):
        check_action(BOX, np.full((2, 2), 0.5), batch=3)
    bad = np.full((3, 2), 0.5)
    bad[2, 1] = 2.0
    with pytest.raises(ValueError, match=r"\(batched\) outside the action space.*\[\[2, 1\]\]"):
        check_action(BOX, bad, batch=3)
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"\(batched\) contains NaN or inf at index \[\[2, 1\]\]"):
        check_action(BOX, bad, batch=3)


# -- Discrete --------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [1, 4, np.int64(2), np.array(3), np.array([3]), 2.0],
                         ids=["low", "high", "np-int", "0d", "sb3-shape-1", "integral-float"])
def test_discrete_accepts_valid_actions(action):
    out = check_action(DISCRETE, action)
    assert out.dtype == np.int64 and out.shape == ()
    assert int(out) == int(np.asarray(action).reshape(()))


@pytest.mark.parametrize("action, message", [
    (0, r"action must be in \[1, 4\], got 0"),
    (5, r"action must be in \[1, 4\], got 5"),
    (1.5, "action must be integral"),
    (np.array([1, 2]), r"action must have shape \(\), got \(2,\)"),
    (float("nan"), "NaN or inf"),
    ("2", "action must be numeric"),
], ids=["below-start", "above", "fractional", "two", "nan", "string"])
def test_discrete_rejections(action, message):
    with pytest.raises(ValueError, match=message):
        check_action(DISCRETE, action)


def test_discrete_batched():
    out = check_action(DISCRETE, np.array([1, 2, 4]), batch=3)
    np.testing.assert_array_equal(out, [1, 2, 4])
    with pytest.raises(ValueError, match=r"\(batched\) must be in \[1, 4\]"):
        check_action(DISCRETE, np.array([1, 0, 4]), batch=3)
    with pytest.raises(ValueError, match=r"\(batched\) must have shape \(3,\)"):
        check_action(DISCRETE, np.array([[1, 2], [3, 4]]), batch=3)


# -- MultiDiscrete ---------------------------------------------------------------------------


def test_multidiscrete():
    np.testing.assert_array_equal(check_action(MULTI, [2, 1]), [2, 1])
    with pytest.raises(ValueError, match=r"outside MultiDiscrete\(\[3 2\]\) at index \[\[1\]\]"):
        check_action(MULTI, [2, 2])
    with pytest.raises(ValueError, match=r"must have shape \(2,\)"):
        check_action(MULTI, [1])
    with pytest.raises(ValueError, match="integral"):
        check_action(MULTI, [0.5, 1])
    out = check_action(MULTI, np.array([[0, 0], [2, 1]]), batch=2)
    assert out.shape == (2, 2) and out.dtype == np.int64
    with pytest.raises(ValueError, match=r"\(batched\) outside .* at index \[\[0, 0\]\]"):
        check_action(MULTI, np.array([[-1, 0], [2, 1]]), batch=2)


# -- hostile inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("space, action, message", [
    (BOX, np.array([0.5 + 1j, 0.5]), "must be real"),
    (DISCRETE, np.complex128(2), "must be real"),
    (BOX, np.array([True, False]), "must be numeric, got dtype bool"),
    (DISCRETE, True, "must be numeric, got dtype bool"),
    (DISCRETE, np.array([[2]]), r"must have shape \(\), got \(1, 1\)"),
], ids=["complex-box", "complex-discrete", "bool-box", "bool-discrete", "discrete-1x1"])
def test_complex_bool_and_nested_actions_are_refused(space, action, message):
    with pytest.raises(ValueError, match=message):
        check_action(space, action)


def test_messages_stay_short_and_name_the_entrys_own_bounds():
    mixed = spaces.Box(np.array([0.0, -1.0], np.float32), np.array([1.0, 1.0], np.float32))
    with pytest.raises(ValueError, match=r"at index \[\[0\]\]: -0.5 not in \[0.0, 1.0\]"):
        check_action(mixed, np.array([-0.5, 0.0]))
    n = 100_000
    bad = np.full((n, 2), 0.5)
    bad[::2, 0] = 2.0
    for action, space in ((bad, BOX), (np.where(bad > 1, np.nan, bad), BOX),
                          (np.full(n, 9), DISCRETE), (np.full(n, 0.5), DISCRETE),
                          (np.full((n, 2), 7), MULTI)):
        with pytest.raises(ValueError) as info:
            check_action(space, action, batch=n)
        assert len(str(info.value)) < 400, str(info.value)[:400]
    with pytest.raises(ValueError, match=r"\[\[0, 0\], \[2, 0\], \[4, 0\]\] and 49997 more"):
        check_action(BOX, bad, batch=n)
