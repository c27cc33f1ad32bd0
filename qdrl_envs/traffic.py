"""Shared traffic pieces: Poisson arrivals, FIFO backlog queues and Markov mobility.

Everything here is batched over a leading axis of ``N`` environment instances and built for the
:mod:`qdrl_envs.core` pattern, where each instance owns its own ``np.random.Generator``:

* :class:`InverseCdf` — exact inverse-transform sampling of discrete distributions from
  uniforms, with guide tables; the samplers below are built on it, so an environment can take
  *one* block of uniforms per instance and slot and turn it into arrivals, fading and moves.
* :class:`PoissonArrivals` — Poisson counts for ``K`` streams with fixed rates.
* :class:`FifoQueues` — ``Q`` first-in-first-out backlogs per instance (bits, tasks, words: any
  divisible unit) tracked by arrival cohort, so every served unit knows its delay. Per slot:
  the arrivals enter (the part that overflows the buffer is dropped), a service capacity drains
  the oldest content first, then content ages by one slot and what can no longer meet its
  queue's deadline expires. Served, expired and overflow amounts are returned separately.
* :class:`MarkovMobility` — users moving between ``K`` areas by a row-stochastic transition
  matrix (:func:`ring_mobility` builds the common "stay or step to a neighbour" chain).

Each sampler has a ``*_from_uniform`` method (the maths, on arrays of uniforms) and a ``sample``
method that draws those uniforms through :func:`qdrl_envs.core.draw`, so a single env and its
vector twin consume their generators identically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qdrl_envs.core import draw
from qdrl_envs.jit import jitable, kernel, row_map

__all__ = [
    "QUEUE_STEP_ROWS",
    "FifoParams",
    "FifoQueues",
    "InverseCdf",
    "MarkovMobility",
    "PoissonArrivals",
    "QueueStep",
    "QueueStepRows",
    "fifo_backlog_and_head_age",
    "fifo_step",
    "inverse_cdf",
    "inverse_cdf_draw",
    "inverse_cdf_table",
    "ring_mobility",
]

_MAX_POISSON_RATE = 1e5


def _poisson_cdf(rate: float) -> NDArray[np.float64]:
    """CDF of Poisson(rate) on ``0..k_max`` with ``k_max`` far in the tail (mass < 1e-15)."""
    if rate == 0.0:
        return np.ones(1)
    k_max = math.ceil(rate + 14.0 * math.sqrt(rate) + 30.0)
    k = np.arange(k_max + 1, dtype=np.float64)
    log_fact = np.concatenate(([0.0], np.cumsum(np.log(k[1:]))))
    log_pmf = k * math.log(rate) - rate - log_fact
    cdf = np.cumsum(np.exp(log_pmf))
    return np.minimum(cdf, 1.0)


class InverseCdf(NamedTuple):
    """Discrete distributions on ``0..n_r - 1`` (one per row ``r``), drawn by inverse transform.

    ``draw(r, u) = min{i : F_r(i) > u}`` (capped at ``n_r - 1``), found with a *guide table*
    (Chen and Asau 1974; Devroye, *Non-Uniform Random Variate Generation*, 1986, §III.2.4):
    ``guide`` holds, for each of ``n_r`` equal slices of ``[0, 1)``, an index at or below the
    answer for every ``u`` in the slice, so a draw starts there and scans forward, about two
    comparisons whatever ``n_r`` (a binary search over a Poisson table takes nine, with
    mispredicted branches). Build it with :func:`inverse_cdf_table`; draw with
    :func:`inverse_cdf_draw` (compiled kernels, one value) or :func:`inverse_cdf` (arrays).
    Kernels take it as a plain tuple (:func:`qdrl_envs.jit.plain`), which numba dispatches
    much faster than a named one; :func:`inverse_cdf_draw` takes either.

    Attributes:
        cdf: Every row's CDF, concatenated (row ``r`` at ``start[r]: start[r] + size[r]``).
        guide: Every row's guide table, laid out like ``cdf`` (indices relative to the row).
        start: Where each row begins.
        size: Each row's number of outcomes ``n_r``.
    """

    cdf: NDArray[np.float64]
    guide: NDArray[np.int64]
    start: NDArray[np.int64]
    size: NDArray[np.int64]


def inverse_cdf_table(cdfs: Sequence[NDArray[np.float64]]) -> InverseCdf:
    """Build the :class:`InverseCdf` of the non-decreasing CDF rows ``cdfs`` (each non-empty)."""
    guides = []
    for cdf in cdfs:
        n = cdf.size
        # Slice j of [0, 1) starts at j / n; a float u with floor(u n) == j may lie an ulp
        # below that, so guide from a threshold just under it: never past the answer.
        lower = np.arange(n) / n * (1.0 - 1e-9)
        guides.append(np.minimum(np.searchsorted(cdf, lower, side="right"), n - 1))
    sizes = np.array([c.size for c in cdfs], dtype=np.int64)
    return InverseCdf(cdf=np.concatenate(cdfs).astype(np.float64),
                      guide=np.concatenate(guides).astype(np.int64),
                      start=np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64),
                      size=sizes)


@jitable
def inverse_cdf_draw(tab: InverseCdf, row: int, u: float) -> int:
    """One draw of row ``row`` of ``tab`` from the uniform ``u`` in ``[0, 1)`` (unchecked).

    ``tab`` is an :class:`InverseCdf` or its plain tuple.
    """
    tab = InverseCdf(*tab)
    s, n = tab.start[row], tab.size[row]
    for i in range(tab.guide[s + min(int(u * n), n - 1)], n - 1):
        if tab.cdf[s + i] > u:
            return i
    return n - 1


@kernel
def _inverse_cdf_kernel(tab, rows, u, out):  # pragma: no cover - compiled
    for j in range(u.shape[0]):
        out[j] = inverse_cdf_draw(tab, rows[j], u[j])


def inverse_cdf(tab: InverseCdf, rows: ArrayLike, u: ArrayLike) -> NDArray[np.int64]:
    """:func:`inverse_cdf_draw` over arrays: ``rows`` and ``u`` broadcast; unchecked."""
    r, x = np.broadcast_arrays(np.asarray(rows, dtype=np.int64), np.asarray(u, dtype=np.float64))
    out = np.empty(r.shape, dtype=np.int64)
    # Copies: broadcast views may not be handed to a kernel as writeable arrays.
    _inverse_cdf_kernel(tuple(tab), np.array(r, order="C").ravel(),
                        np.array(x, order="C").ravel(), out.reshape(-1))
    return out


class PoissonArrivals:
    """Poisson arrival counts for ``K`` independent streams with fixed per-slot rates.

    Counts are drawn by inverse transform: ``count = min{k : F(k) > u}`` with ``F`` the Poisson
    CDF tabulated once at construction (exact up to a tail mass below 1e-15), so one uniform per
    stream and slot gives one count (an :class:`InverseCdf` draw, in :attr:`table`).

    Args:
        rates: Mean arrivals per slot, one per stream (shape ``(K,)``), each in ``[0, 1e5]``.

    Raises:
        ValueError: If a rate is negative, not finite or above ``1e5``, or ``rates`` is not 1-D.

    Example:
        >>> arr = PoissonArrivals([0.5, 3.0])
        >>> counts = arr.from_uniform(np.array([[0.1, 0.99]]))  # shape (1, 2)
    """

    def __init__(self, rates: ArrayLike) -> None:
        r = np.asarray(rates, dtype=np.float64)
        if r.ndim != 1 or r.size == 0:
            raise ValueError(f"rates must be a non-empty 1-D sequence, got shape {r.shape}")
        bad = ~np.isfinite(r) | (r < 0.0) | (r > _MAX_POISSON_RATE)
        if bad.any():
            raise ValueError(f"rates must be finite and in [0, {_MAX_POISSON_RATE:g}], got "
                             f"{r.tolist()} (bad at index {np.flatnonzero(bad).tolist()})")
        self.rates = r
        self.num_streams = r.size
        self.table = inverse_cdf_table([_poisson_cdf(float(x)) for x in r])
        """Row ``k``: the Poisson CDF of stream ``k`` (see :class:`InverseCdf`)."""
        self._streams = np.arange(self.num_streams)

    def from_uniform(self, u: ArrayLike) -> NDArray[np.int64]:
        """Turn uniforms in ``[0, 1)`` of shape ``(..., K)`` into Poisson counts ``(..., K)``.

        Raises:
            ValueError: If the last axis of ``u`` is not ``K``.
        """
        u = np.asarray(u, dtype=np.float64)
        if u.shape[-1:] != (self.num_streams,):
            raise ValueError(f"u must end with an axis of {self.num_streams} streams, "
                             f"got shape {u.shape}")
        return inverse_cdf(self.table, self._streams, u)

    def sample(self, rngs: Sequence[np.random.Generator]) -> NDArray[np.int64]:
        """Draw one slot of counts for each instance: shape ``(len(rngs), K)``."""
        k = self.num_streams
        return self.from_uniform(draw(rngs, lambda g: g.random(k)))


@dataclass
class QueueStep:
    """What one slot of :meth:`FifoQueues.step` did, per instance and queue (shape ``(N, Q)``).

    Attributes:
        served: Units served this slot.
        delay_sum_slots: Sum over served units of their delay in slots (a unit that arrived
            this slot and is served in it has delay 1). ``delay_sum_slots / served`` is the mean.
        max_delay_slots: Delay of the oldest unit served this slot (0 when nothing was served).
        expired: Units dropped at the end of the slot because, unserved, they can no longer
            meet the queue's deadline.
        overflow: Arriving units dropped because the buffer was full.
        accepted: Arriving units that entered the buffer.
    """

    served: NDArray[np.float64]
    delay_sum_slots: NDArray[np.float64]
    max_delay_slots: NDArray[np.float64]
    expired: NDArray[np.float64]
    overflow: NDArray[np.float64]
    accepted: NDArray[np.float64]


QueueStepRows = NamedTuple("QueueStepRows", [(f.name, int) for f in fields(QueueStep)])
QueueStepRows.__doc__ = """Rows of what :func:`fifo_step` writes: :class:`QueueStep`'s fields."""
QUEUE_STEP_ROWS = row_map(QueueStepRows)
"""``out[QUEUE_STEP_ROWS.served, q]``...: the row of each :class:`QueueStep` figure."""
_ROW = QUEUE_STEP_ROWS


class FifoParams(NamedTuple):
    """The constants of :func:`fifo_step` (:attr:`FifoQueues.params`), ``Q`` queues, ``L`` ages.

    Attributes:
        buffer: ``(Q,)`` the most units each buffer holds (``inf``: unbounded).
        delay: ``(L,)`` ``delay[j - 1]`` is the delay (slots) of a unit served from column
            ``j``.
        expire_col: ``(Q,)`` the column that reaches queue ``q``'s deadline.
        after_previous: ``(Q,)`` whether queue ``q`` is served from what ``q - 1`` leaves.
    """

    buffer: NDArray[np.float64]
    delay: NDArray[np.float64]
    expire_col: NDArray[np.int64]
    after_previous: NDArray[np.bool_]


@jitable
def fifo_step(a, arrivals, capacity, buffer, delay, expire_col, after_previous, out
              ):  # pragma: no cover - compiled
    """One slot of :meth:`FifoQueues.step` for one instance, in place.

    ``a`` is the instance's storage ``(Q, L + 1)``, oldest first (column ``j`` holds content of
    age ``L - j``; columns up to ``expire_col[q]`` are always empty for queue ``q``);
    ``arrivals`` and ``capacity`` are this slot's units per queue; ``buffer``, ``delay``,
    ``expire_col`` and ``after_previous`` are the fields of :attr:`FifoQueues.params`
    (:class:`FifoParams`). Writes ``out[row, q]``, the six figures of :class:`QueueStep` in the
    rows of :data:`QUEUE_STEP_ROWS`. Compiled kernels call it row by row;
    :meth:`FifoQueues.step` runs it over the batch.
    """
    n_queues, width = a.shape
    left = 0.0
    for q in range(n_queues):
        # Columns up to expire_col[q] are always empty (their content expired), so every loop
        # starts after it: a queue with a short deadline costs only its few live columns.
        first = expire_col[q] + 1
        # 1. admit arrivals (age 0, the last column) up to the free buffer.
        arrived = arrivals[q]
        admit = arrived
        if buffer[q] < np.inf:
            backlog = 0.0
            for j in range(first, width):
                backlog += a[q, j]
            admit = min(arrived, max(buffer[q] - backlog, 0.0))
        a[q, width - 1] = admit
        # 2. serve oldest first, 3. age by one slot (shift left) as we go.
        start = left if after_previous[q] else capacity[q]
        room = start
        total = 0.0
        weighted = 0.0
        oldest = 0.0
        for j in range(first, width):
            live = a[q, j]
            s = min(live, max(room, 0.0))
            room -= live
            a[q, j - 1] = max(live - s, 0.0)
            total += s
            weighted += s * delay[j - 1]
            if s > 1e-12:
                oldest = max(oldest, delay[j - 1])
        a[q, width - 1] = 0.0
        left = max(start - total, 0.0)
        # The column that reaches the queue's deadline unserved expires.
        out[_ROW.expired, q] = a[q, expire_col[q]]
        a[q, expire_col[q]] = 0.0
        out[_ROW.served, q] = total
        out[_ROW.delay_sum_slots, q] = weighted
        out[_ROW.max_delay_slots, q] = oldest
        out[_ROW.overflow, q] = arrived - admit
        out[_ROW.accepted, q] = admit


@jitable
def fifo_backlog_and_head_age(a, q):  # pragma: no cover - compiled
    """Units waiting in queue ``q`` of one instance's storage, and the age of the oldest.

    The maths of :attr:`FifoQueues.backlog` and :attr:`FifoQueues.head_age_slots`.
    """
    width = a.shape[1]
    backlog = 0.0
    age = 0.0
    for j in range(width):
        backlog += a[q, j]
        if a[q, j] > 1e-12:
            age = max(age, float(width - 1 - j))
    return backlog, age


@kernel
def _fifo_step_kernel(a, arrivals, capacity, buffer, delay, expire_col, after_previous, out
                      ):  # pragma: no cover - compiled
    for m in range(a.shape[0]):
        fifo_step(a[m], arrivals[m], capacity[m], buffer, delay, expire_col, after_previous,
                  out[:, m])


@kernel
def _fifo_summary_kernel(a, out):  # pragma: no cover - compiled
    for m in range(a.shape[0]):
        for q in range(a.shape[1]):
            out[0, m, q], out[1, m, q] = fifo_backlog_and_head_age(a[m], q)


class FifoQueues:
    """``Q`` FIFO backlogs on each of ``N`` instances, tracked by arrival cohort.

    Content is a divisible amount (bits, tasks, words); :attr:`amount` ``[n, q, a]`` is the
    content of queue ``q`` that arrived ``a`` slots ago. One :meth:`step` is one slot:

    1. the arrivals enter at age 0, up to the free buffer (``buffer[q]`` units); the rest
       overflows (counted in ``overflow``);
    2. up to ``capacity`` units are served, oldest first (FIFO); a unit of age ``a`` served now
       has delay ``a + 1`` slots, so every unit ever served had delay ``<= deadline_slots[q]``;
    3. content ages by one slot; content of queue ``q`` that reaches age ``deadline_slots[q]``
       unserved can no longer meet its deadline and expires (counted in ``expired`` of this
       slot), so what is left waiting can always still be served in time.

    The slot is :func:`fifo_step` on each instance's :attr:`storage` row with :attr:`params`;
    compiled environment kernels call it directly.

    Args:
        num_envs: Number of instances ``N``.
        deadline_slots: Per queue, the largest delay (slots) a unit may have when served
            (shape ``(Q,)``, each ``>= 1``).
        buffer: Per queue, the most units the buffer holds (``inf`` for unbounded).
        after_previous: Per queue, whether it is served from the capacity queue ``q - 1``
            leaves instead of its own (strict priority of ``q - 1`` over ``q`` on a shared
            server; its ``capacity`` entry in :meth:`step` is then ignored). Default: none.

    Raises:
        ValueError: On a non-positive ``num_envs`` or deadline, a negative buffer, lengths
            that do not match, or ``after_previous`` set for the first queue.
    """

    def __init__(self, num_envs: int, deadline_slots: Sequence[int],
                 buffer: Sequence[float] | ArrayLike,
                 after_previous: Sequence[bool] | None = None) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        d = np.asarray(deadline_slots)
        if d.ndim != 1 or d.size == 0 or not np.issubdtype(d.dtype, np.integer) or (d < 1).any():
            raise ValueError(f"deadline_slots must be a non-empty 1-D sequence of integers >= 1, "
                             f"got {list(np.atleast_1d(d))}")
        b = np.asarray(buffer, dtype=np.float64)
        if b.shape != d.shape or np.isnan(b).any() or (b < 0).any():
            raise ValueError(f"buffer must hold {d.size} non-negative numbers (inf allowed), "
                             f"got {np.atleast_1d(b).tolist()}")
        chained = np.zeros(d.size, dtype=np.bool_)
        if after_previous is not None:
            chained = np.asarray(after_previous, dtype=np.bool_)
            if chained.shape != d.shape or chained[0]:
                raise ValueError(f"after_previous must hold {d.size} flags, the first False, "
                                 f"got {list(np.atleast_1d(after_previous))}")
        self.num_envs = int(num_envs)
        self.num_queues = d.size
        self.deadline_slots = d.astype(np.int64)
        self.buffer = b
        self.max_age = big = int(d.max())
        self._a = np.zeros((self.num_envs, self.num_queues, big + 1))
        # Storage is oldest first: column j holds age L - j (L = max_age), so column L holds
        # this slot's arrivals and serving walks columns 1..L forward.
        delay = big - np.arange(1, big + 1, dtype=np.float64) + 1.0  # of columns 1..L
        self.params = FifoParams(buffer=b, delay=delay,
                                 expire_col=(big - self.deadline_slots).astype(np.int64),
                                 after_previous=chained)
        """The constants of :func:`fifo_step`."""

    @property
    def storage(self) -> NDArray[np.float64]:
        """Content by age, oldest first ``(N, Q, L + 1)`` (what :func:`fifo_step` updates)."""
        return self._a

    @property
    def amount(self) -> NDArray[np.float64]:
        """Content by age, ``(N, Q, L + 1)``: ``amount[n, q, a]`` arrived ``a`` slots ago."""
        return self._a[..., ::-1]

    def reset(self, idx: ArrayLike) -> None:
        """Empty the queues of the instances ``idx``."""
        self._a[np.asarray(idx)] = 0.0

    def _summary(self) -> NDArray[np.float64]:
        out = np.empty((2, self.num_envs, self.num_queues))
        _fifo_summary_kernel(self._a, out)
        return out

    @property
    def backlog(self) -> NDArray[np.float64]:
        """Units waiting in each queue, shape ``(N, Q)``."""
        return self._summary()[0]

    @property
    def head_age_slots(self) -> NDArray[np.float64]:
        """Slots the oldest waiting unit of each queue has waited (0 when empty), ``(N, Q)``.

        Content left over from the last slot has waited 1 slot; served in the next slot its
        delay would be one more than this.
        """
        return self._summary()[1]

    def step(self, arrivals: ArrayLike, capacity: ArrayLike) -> QueueStep:
        """Advance one slot: admit ``arrivals``, serve up to ``capacity``, then age and expire.

        Args:
            arrivals: Units arriving this slot, shape ``(N, Q)`` (non-negative).
            capacity: Units each queue can serve this slot, shape ``(N, Q)`` (non-negative).

        Returns:
            The :class:`QueueStep` accounting of the slot.
        """
        shape = (self.num_envs, self.num_queues)
        arr = np.array(np.broadcast_to(np.asarray(arrivals, dtype=np.float64), shape))
        cap = np.array(np.broadcast_to(np.asarray(capacity, dtype=np.float64), shape))
        out = np.empty((len(_ROW), *shape))
        _fifo_step_kernel(self._a, arr, cap, *self.params, out)
        return QueueStep(**{name: out[row] for name, row in _ROW._asdict().items()})


class MarkovMobility:
    """Users moving between ``K`` areas by a Markov chain, batched over instances and users.

    ``P[i, j]`` is the probability that a user in area ``i`` is in area ``j`` one slot later.
    A move is drawn by inverse transform from one uniform per user and slot (an
    :class:`InverseCdf` draw, in :attr:`table`).

    Args:
        transition: Row-stochastic matrix ``(K, K)`` (rows sum to 1 within 1e-9).

    Raises:
        ValueError: If the matrix is not square, has negative or non-finite entries, or a row
            does not sum to 1.
    """

    def __init__(self, transition: ArrayLike) -> None:
        p = np.asarray(transition, dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] == 0:
            raise ValueError(f"transition must be a square (K, K) matrix, got shape {p.shape}")
        if not np.all(np.isfinite(p)) or (p < 0).any():
            raise ValueError("transition entries must be finite and non-negative")
        sums = p.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-9):
            raise ValueError(f"transition rows must sum to 1, got row sums {sums.tolist()}")
        self.transition = p
        self.num_areas = p.shape[0]
        cum = np.cumsum(p, axis=1)
        cum[:, -1] = 1.0
        self.table = inverse_cdf_table(list(cum))
        """Row ``i``: where a user in area ``i`` goes next (see :class:`InverseCdf`)."""

    def step_from_uniform(self, area: ArrayLike, u: ArrayLike) -> NDArray[np.int64]:
        """Next areas given current ``area`` (ints in ``[0, K)``) and uniforms ``u`` (same shape).

        Raises:
            ValueError: If shapes differ or an area is out of range.
        """
        s = np.asarray(area, dtype=np.int64)
        u = np.asarray(u, dtype=np.float64)
        if s.shape != u.shape:
            raise ValueError(f"area and u must have the same shape, got {s.shape} and {u.shape}")
        if s.size and (s.min() < 0 or s.max() >= self.num_areas):
            raise ValueError(f"areas must be in [0, {self.num_areas - 1}], got {s.tolist()}")
        return self.step_unchecked(s, u)

    def step_unchecked(self, area: NDArray[np.int64], u: NDArray[np.float64]) -> NDArray[np.int64]:
        """:meth:`step_from_uniform` without argument checks, for callers whose areas are valid."""
        return inverse_cdf(self.table, area, u)

    def sample(self, rngs: Sequence[np.random.Generator], area: ArrayLike) -> NDArray[np.int64]:
        """Draw the next areas, ``area`` of shape ``(len(rngs), U)``."""
        s = np.asarray(area, dtype=np.int64)
        shape = s.shape[1:]
        return self.step_from_uniform(s, draw(rngs, lambda g: g.random(shape)))


def ring_mobility(num_areas: int, p_stay: float) -> MarkovMobility:
    """Areas on a ring: stay with ``p_stay``, else step to either neighbour with equal chance.

    With two areas the only neighbour gets ``1 - p_stay``; with one area users always stay.

    Args:
        num_areas: Number of areas ``K >= 1``.
        p_stay: Probability of staying in the current area, in ``[0, 1]``.

    Returns:
        The :class:`MarkovMobility` chain.

    Raises:
        ValueError: On ``num_areas < 1`` or ``p_stay`` outside ``[0, 1]``.
    """
    if not isinstance(num_areas, (int, np.integer)) or num_areas < 1:
        raise ValueError(f"num_areas must be an integer >= 1, got {num_areas!r}")
    if not (isinstance(p_stay, (int, float)) and 0.0 <= p_stay <= 1.0):
        raise ValueError(f"p_stay must be in [0, 1], got {p_stay!r}")
    k = int(num_areas)
    p = np.zeros((k, k))
    if k == 1:
        p[0, 0] = 1.0
        return MarkovMobility(p)
    idx = np.arange(k)
    p[idx, idx] = p_stay
    move = 1.0 - p_stay
    if k == 2:
        p[idx, 1 - idx] += move
    else:
        p[idx, (idx + 1) % k] += move / 2.0
        p[idx, (idx - 1) % k] += move / 2.0
    return MarkovMobility(p)
