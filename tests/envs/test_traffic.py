"""Tests of the shared traffic pieces: Poisson arrivals, FIFO queues, Markov mobility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from qdrl_envs.traffic import (
    FifoQueues,
    MarkovMobility,
    PoissonArrivals,
    inverse_cdf,
    inverse_cdf_draw,
    inverse_cdf_table,
    ring_mobility,
)

# ----------------------------------------------------------------------------- inverse CDF


def _searchsorted_draw(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The definition: min{i : F(i) > u}, capped at the last outcome."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40), min_size=1, max_size=4),
       st.integers(0, 2**32 - 1))
def test_guide_table_draws_are_the_inverse_cdf(weights: list[list[float]], seed: int) -> None:
    cdfs = []
    for w in weights:
        p = np.asarray(w) + 1e-3
        cdfs.append(np.minimum(np.cumsum(p / p.sum()), 1.0))
    tab = inverse_cdf_table(cdfs)
    rng = np.random.default_rng(seed)
    for row, cdf in enumerate(cdfs):
        n = cdf.size
        # Random uniforms, every slice boundary of the guide table and the floats just below
        # them, and the CDF values themselves (ties: F(i) == u must move past i).
        edges = np.arange(n) / n
        u = np.concatenate([rng.random(200), edges, np.nextafter(edges, -1.0)[1:], cdf[cdf < 1]])
        u = u[(u >= 0.0) & (u < 1.0)]
        expected = _searchsorted_draw(cdf, u)
        np.testing.assert_array_equal(inverse_cdf(tab, row, u), expected)
        scalar = [inverse_cdf_draw(tab, row, float(x)) for x in u[:20]]  # the Python path
        np.testing.assert_array_equal(scalar, expected[:20])


def test_guide_table_caps_a_truncated_tail_at_the_last_outcome() -> None:
    tab = inverse_cdf_table([np.array([0.5, 0.9, 0.99])])  # mass 0.01 beyond the table
    np.testing.assert_array_equal(inverse_cdf(tab, 0, [0.0, 0.5, 0.95, 0.995, 0.9999]),
                                  [0, 1, 2, 2, 2])

# ----------------------------------------------------------------------------- Poisson


@pytest.mark.parametrize("rates", [[0.0, 0.5, 3.0], [40.0], [2500.0, 0.1]],
                         ids=["mixed", "one-stream", "heavy"])
def test_poisson_from_uniform_is_the_inverse_cdf(rates: list[float]) -> None:
    arr = PoissonArrivals(rates)
    u = np.random.default_rng(0).random((500, len(rates)))
    counts = arr.from_uniform(u)
    expected = stats.poisson.ppf(u, np.asarray(rates)[None, :])
    expected = np.where(np.asarray(rates)[None, :] == 0.0, 0.0, expected)
    np.testing.assert_array_equal(counts, expected.astype(np.int64))


def test_poisson_sample_moments_match_rates() -> None:
    rates = np.array([0.2, 1.0, 7.5])
    arr = PoissonArrivals(rates)
    rngs = [np.random.default_rng(s) for s in range(4000)]
    counts = arr.sample(rngs)
    assert counts.shape == (4000, 3) and counts.dtype == np.int64
    se = np.sqrt(rates / 4000)
    np.testing.assert_array_less(np.abs(counts.mean(0) - rates), 5 * se)
    np.testing.assert_allclose(counts.var(0), rates, rtol=0.15)


def test_poisson_batched_draw_equals_single_draws() -> None:
    arr = PoissonArrivals([1.0, 4.0])
    batch = arr.sample([np.random.default_rng(s) for s in (3, 4, 5)])
    singles = [arr.sample([np.random.default_rng(s)])[0] for s in (3, 4, 5)]
    np.testing.assert_array_equal(batch, np.stack(singles))


@pytest.mark.parametrize("rates", [[-1.0], [np.nan], [1e6], [], [[1.0]]],
                         ids=["negative", "nan", "too-large", "empty", "2-d"])
def test_poisson_rejects_bad_rates(rates: list) -> None:
    with pytest.raises(ValueError, match="rates"):
        PoissonArrivals(rates)


def test_poisson_rejects_wrong_stream_axis() -> None:
    with pytest.raises(ValueError, match="2 streams"):
        PoissonArrivals([1.0, 2.0]).from_uniform(np.zeros((4, 3)))


# ----------------------------------------------------------------------------- FIFO queues


def test_fifo_serves_oldest_first_with_exact_delays() -> None:
    q = FifoQueues(1, deadline_slots=[10], buffer=[np.inf])
    out = [q.step([[10.0]], [[4.0]]) for _ in range(3)]
    # slot 1: 4 of cohort 1 (delay 1); slot 2: 4 of cohort 1 (delay 2);
    # slot 3: last 2 of cohort 1 (delay 3) then 2 of cohort 2 (delay 2).
    np.testing.assert_allclose([o.served[0, 0] for o in out], [4, 4, 4])
    np.testing.assert_allclose([o.delay_sum_slots[0, 0] for o in out], [4, 8, 2 * 3 + 2 * 2])
    np.testing.assert_allclose([o.max_delay_slots[0, 0] for o in out], [1, 2, 3])
    np.testing.assert_allclose(q.backlog, [[18.0]])
    np.testing.assert_allclose(q.head_age_slots, [[2.0]])  # cohort 2 has waited 2 slots


def test_fifo_expires_content_past_its_deadline() -> None:
    q = FifoQueues(1, deadline_slots=[2], buffer=[np.inf])
    s1 = q.step([[10.0]], [[3.0]])
    assert s1.expired[0, 0] == 0.0 and q.head_age_slots[0, 0] == 1.0
    s2 = q.step([[0.0]], [[3.0]])
    assert s1.served[0, 0] == 3 and s2.served[0, 0] == 3 and s2.max_delay_slots[0, 0] == 2
    assert s2.expired[0, 0] == pytest.approx(4.0)  # unserved after its second slot
    assert q.backlog[0, 0] == 0.0 and q.head_age_slots[0, 0] == 0.0


def test_fifo_buffer_overflow_and_per_queue_deadlines() -> None:
    q = FifoQueues(2, deadline_slots=[1, 3], buffer=[5.0, 100.0])
    s = q.step(np.array([[8.0, 8.0], [2.0, 0.0]]), np.zeros((2, 2)))
    np.testing.assert_allclose(s.overflow, [[3.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(s.accepted, [[5.0, 8.0], [2.0, 0.0]])
    np.testing.assert_allclose(s.expired, [[5.0, 0.0], [2.0, 0.0]])  # deadline 1 slot
    s = q.step(np.zeros((2, 2)), np.zeros((2, 2)))
    np.testing.assert_allclose(s.expired, [[0.0, 0.0], [0.0, 0.0]])
    q.reset([0])
    np.testing.assert_allclose(q.backlog, [[0.0, 0.0], [0.0, 0.0]])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0, 50)), min_size=1, max_size=30),
       st.integers(1, 6), st.floats(1, 200))
def test_fifo_conserves_content(seq: list[tuple[float, float]], deadline: int,
                                buf: float) -> None:
    q = FifoQueues(1, deadline_slots=[deadline], buffer=[buf])
    accepted = served = expired = 0.0
    for arr, cap in seq:
        s = q.step([[arr]], [[cap]])
        assert s.served[0, 0] <= cap + 1e-9
        assert s.max_delay_slots[0, 0] <= deadline
        assert s.accepted[0, 0] + s.overflow[0, 0] == pytest.approx(arr)
        accepted += s.accepted[0, 0]
        served += s.served[0, 0]
        expired += s.expired[0, 0]
        assert q.backlog[0, 0] <= buf + 1e-9
    assert accepted == pytest.approx(served + expired + q.backlog[0, 0], abs=1e-6)


@pytest.mark.parametrize("kwargs", [dict(num_envs=0, deadline_slots=[1], buffer=[1.0]),
                                    dict(num_envs=1, deadline_slots=[0], buffer=[1.0]),
                                    dict(num_envs=1, deadline_slots=[1], buffer=[-1.0]),
                                    dict(num_envs=1, deadline_slots=[1, 2], buffer=[1.0])],
                         ids=["no-envs", "zero-deadline", "negative-buffer", "length-mismatch"])
def test_fifo_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FifoQueues(**kwargs)


def test_fifo_after_previous_serves_from_what_the_previous_queue_leaves() -> None:
    q = FifoQueues(1, deadline_slots=[5, 5], buffer=[np.inf, np.inf],
                   after_previous=[False, True])
    # Queue 0 takes 3 of the shared 10 units; queue 1 gets the 7 left (its own entry ignored).
    out = q.step([[3.0, 20.0]], [[10.0, 1000.0]])
    np.testing.assert_allclose(out.served, [[3.0, 7.0]])
    np.testing.assert_allclose(q.backlog, [[0.0, 13.0]])
    # Queue 0 now needs more than the capacity: queue 1 gets nothing.
    out = q.step([[12.0, 0.0]], [[10.0, 1000.0]])
    np.testing.assert_allclose(out.served, [[10.0, 0.0]])


@pytest.mark.parametrize("flags", [[True, False], [False], [False, True, False]],
                         ids=["first-set", "too-short", "too-long"])
def test_fifo_rejects_bad_after_previous(flags: list[bool]) -> None:
    with pytest.raises(ValueError, match="after_previous"):
        FifoQueues(1, deadline_slots=[2, 2], buffer=[np.inf, np.inf], after_previous=flags)


# ----------------------------------------------------------------------------- mobility


def test_markov_mobility_frequencies_match_the_transition_matrix() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    mob = MarkovMobility(p)
    u = np.random.default_rng(1).random((3, 20000))
    area = np.repeat(np.arange(3)[:, None], 20000, axis=1)
    nxt = mob.step_from_uniform(area, u)
    freq = np.stack([np.bincount(nxt[i], minlength=3) / 20000 for i in range(3)])
    np.testing.assert_allclose(freq, p, atol=0.015)


def test_ring_mobility_structure_and_batched_sample() -> None:
    mob = ring_mobility(4, 0.6)
    np.testing.assert_allclose(mob.transition[1], [0.2, 0.6, 0.2, 0.0])
    np.testing.assert_allclose(ring_mobility(2, 0.9).transition, [[0.9, 0.1], [0.1, 0.9]])
    np.testing.assert_allclose(ring_mobility(1, 0.0).transition, [[1.0]])
    area = np.array([[0, 3, 2], [1, 1, 1]])
    batch = mob.sample([np.random.default_rng(7), np.random.default_rng(8)], area)
    single = mob.sample([np.random.default_rng(8)], area[1:])
    np.testing.assert_array_equal(batch[1:], single)
    assert np.all(np.abs((batch - area + 1) % 4 - 1) <= 1)  # at most one step on the ring


@pytest.mark.parametrize("p", [[[0.5, 0.4], [0.5, 0.5]], [[1.0, 0.0]], [[-0.1, 1.1], [0, 1]]],
                         ids=["row-sum", "not-square", "negative"])
def test_markov_mobility_rejects_bad_matrices(p: list) -> None:
    with pytest.raises(ValueError, match="transition"):
        MarkovMobility(p)


def test_mobility_rejects_bad_areas_and_arguments() -> None:
    mob = ring_mobility(3, 0.5)
    with pytest.raises(ValueError, match="areas"):
        mob.step_from_uniform([[3]], [[0.5]])
    with pytest.raises(ValueError, match="p_stay"):
        ring_mobility(3, 1.5)
    with pytest.raises(ValueError, match="num_areas"):
        ring_mobility(0, 0.5)
