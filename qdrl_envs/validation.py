"""Action checking shared by every environment.

Actions are checked, not silently repaired (docs/design.md §2): a wrong shape, NaN/inf, or a value
outside the action space raises ``ValueError`` saying what was wrong. stable-baselines3 clips
Box actions before ``step``, so honest agents never pay for this.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

_SHOWN = 3  # offending entries a message names (it stays short at 100,000 envs)


def _short(arr: np.ndarray) -> str:
    """The array itself when small, else its shape: messages stay a line at any batch size."""
    return repr(arr.tolist()) if arr.size <= 16 else f"an array of shape {arr.shape}"


def _first(mask: np.ndarray) -> tuple[list[list[int]], str]:
    """The first offending indices and how many more there are (for a message)."""
    idx = [[int(i) for i in row] for row in np.argwhere(mask)[:_SHOWN]]
    more = int(np.count_nonzero(mask)) - len(idx)
    return idx, (f" and {more} more" if more > 0 else "")


def check_action(space: spaces.Space, action: Any, *, batch: int | None = None) -> np.ndarray:
    """Validate ``action`` against ``space`` and return it as a NumPy array.

    Args:
        space: The (single-environment) action space: Box, Discrete or MultiDiscrete.
        action: The action as given to ``step``.
        batch: For vector environments, the number of sub-environments; the action then carries
            a leading axis of that length.

    Returns:
        The action as an ``ndarray`` (float64 for Box, int64 for discrete spaces).

    Raises:
        ValueError: If the shape is wrong, an entry is NaN or infinite, or a value lies outside
            the space (the message names the offending entries).
    """
    lead: tuple[int, ...] = () if batch is None else (batch,)
    # Fast path for the common case (a float ndarray of the right shape inside a Box): a handful
    # of vectorised checks instead of the full diagnosis below, which only runs to explain a
    # failure: validation must not cost the vector twins their speed (a check per step of
    # every row).
    if (isinstance(space, spaces.Box) and isinstance(action, np.ndarray)
            and action.dtype.kind == "f" and action.shape == lead + space.shape):
        fast = action.astype(np.float64)
        inside = np.isfinite(fast) & (fast >= space.low) & (fast <= space.high)
        if np.count_nonzero(inside) == inside.size:
            return fast
    # Same for a valid Discrete action given as an integer scalar (what SB3 and most loops pass)
    # or, batched, as an integer array.
    if isinstance(space, spaces.Discrete):
        lo_fast, hi_fast = int(space.start), int(space.start + space.n)
        if (batch is None and isinstance(action, (int, np.integer))
                and not isinstance(action, bool) and lo_fast <= action < hi_fast):
            return np.asarray(action, dtype=np.int64)
        if (isinstance(action, np.ndarray) and action.dtype.kind in "iu"
                and action.shape == lead and action.size
                and action.min() >= lo_fast and action.max() < hi_fast):
            return action.astype(np.int64)
    # And for an integer array inside a MultiDiscrete (single or batched).
    if (isinstance(space, spaces.MultiDiscrete) and isinstance(action, np.ndarray)
            and action.dtype.kind in "iu" and action.shape == lead + space.shape):
        fast_md = action.astype(np.int64)
        rel = fast_md - space.start
        if np.count_nonzero((rel >= 0) & (rel < space.nvec)) == rel.size:
            return fast_md
    where = "" if batch is None else " (batched)"
    try:
        arr = np.asarray(action)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise ValueError(f"action{where} could not be converted to an array: {exc}") from exc
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"action{where} must be numeric, got dtype {arr.dtype}: "
                         f"{_short(arr) if arr.dtype != object else type(action).__name__}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"action{where} must be real, got dtype {arr.dtype} (an imaginary part "
                         "would be dropped)")

    if isinstance(space, spaces.Discrete):
        expected: tuple[int, ...] = lead
    elif isinstance(space, (spaces.Box, spaces.MultiDiscrete)):
        expected = lead + tuple(space.shape)
    else:  # pragma: no cover - programming error in an env
        raise TypeError(f"check_action does not support {type(space).__name__}")

    if arr.shape != expected:
        # A Discrete action may carry one trailing axis of 1 (SB3 passes arrays of shape (1,)).
        if isinstance(space, spaces.Discrete) and arr.shape == (*expected, 1):
            arr = arr.reshape(expected)
        else:
            raise ValueError(f"action{where} must have shape {expected}, got {arr.shape}")

    finite = np.isfinite(arr.astype(np.float64))
    if not finite.all():
        idx, more = _first(~finite)
        raise ValueError(f"action{where} contains NaN or inf at index {idx}{more}: "
                         f"{_short(arr)}")

    if isinstance(space, spaces.Box):
        arr = arr.astype(np.float64)
        lo = np.broadcast_to(space.low, expected)
        hi = np.broadcast_to(space.high, expected)
        out = (arr < lo) | (arr > hi)
        if out.any():
            idx, more = _first(out)
            shown = ", ".join(f"{float(arr[tuple(i)])!r} not in [{float(lo[tuple(i)])}, "
                              f"{float(hi[tuple(i)])}]" for i in idx)
            raise ValueError(f"action{where} outside the action space at index {idx}{more}: "
                             f"{shown}")
        return arr

    as_float = arr.astype(np.float64)
    integral = as_float == np.round(as_float)
    if not integral.all():
        idx, more = _first(~integral)
        raise ValueError(f"action{where} must be integral for {space}, not at index {idx}{more}:"
                         f" {_short(arr)}")
    arr = as_float.astype(np.int64)
    if isinstance(space, spaces.Discrete):
        lo_d, hi_d = int(space.start), int(space.start + space.n - 1)
        bad_d = (arr < lo_d) | (arr > hi_d)
        if bad_d.any():
            idx, more = _first(bad_d.reshape(arr.shape or (1,)))
            raise ValueError(f"action{where} must be in [{lo_d}, {hi_d}], got {_short(arr)}"
                             + (f" (index {idx}{more})" if arr.ndim else ""))
        return arr
    nvec = np.broadcast_to(space.nvec, expected)
    start = np.broadcast_to(space.start, expected)
    out = (arr < start) | (arr >= start + nvec)
    if out.any():
        idx, more = _first(out)
        shown = ", ".join(f"{int(arr[tuple(i)])} not in [{int(start[tuple(i)])}, "
                          f"{int(start[tuple(i)] + nvec[tuple(i)] - 1)}]" for i in idx)
        raise ValueError(f"action{where} outside {space} at index {idx}{more}: {shown}")
    return arr
