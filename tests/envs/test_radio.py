"""Closed-form checks of the shared radio maths (qdrl_envs.radio)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qdrl_envs import radio

C = 299_792_458.0


def test_db_watt_conversions():
    assert radio.dbm_to_watt(30.0) == pytest.approx(1.0)
    assert radio.dbm_to_watt(0.0) == pytest.approx(1e-3)
    assert radio.watt_to_dbm(1.0) == pytest.approx(30.0)
    assert radio.watt_to_dbm(0.0) == -300.0  # zero power clamps at the floor
    assert radio.db_to_linear(3.0) == pytest.approx(1.9952623, rel=1e-7)
    assert radio.linear_to_db(100.0) == pytest.approx(20.0)
    assert radio.linear_to_db(-1.0) == -300.0
    x = np.array([1e-12, 0.5, 7.0])
    np.testing.assert_allclose(radio.db_to_linear(radio.linear_to_db(x)), x, rtol=1e-12)


def test_noise_power_of_10_mhz_and_7_db_is_minus_97_dbm():
    assert radio.watt_to_dbm(radio.noise_power_w(10e6, 7.0)) == pytest.approx(-97.0)
    # kT at 290 K is -174 dBm/Hz: 1 Hz, no noise figure.
    assert radio.watt_to_dbm(radio.noise_power_w(1.0)) == pytest.approx(-174.0)
    np.testing.assert_allclose(radio.watt_to_dbm(radio.noise_power_w([1e6, 1e8], 0.0)),
                               [-114.0, -94.0])


def test_free_space_path_loss_at_1_m_and_3_5_ghz():
    expected = 20 * math.log10(4 * math.pi * 3.5e9 / C)
    assert expected == pytest.approx(43.3, abs=0.05)
    assert radio.free_space_path_loss_db(1.0, 3.5e9) == pytest.approx(expected)
    # Friis: 20 dB per decade of distance and of frequency.
    assert (radio.free_space_path_loss_db(10.0, 3.5e9)
            - radio.free_space_path_loss_db(1.0, 3.5e9)) == pytest.approx(20.0)
    assert (radio.free_space_path_loss_db(1.0, 35e9)
            - radio.free_space_path_loss_db(1.0, 3.5e9)) == pytest.approx(20.0)


@pytest.mark.parametrize("exponent", [2.0, 3.0, 3.7])
def test_log_distance_slope_is_10n_per_decade(exponent):
    pl = radio.log_distance_path_loss_db(np.array([1.0, 10.0, 100.0, 50.0]), 3.5e9, exponent)
    fspl_1m = radio.free_space_path_loss_db(1.0, 3.5e9)
    assert pl[0] == pytest.approx(fspl_1m)
    assert pl[1] - pl[0] == pytest.approx(10 * exponent)
    assert pl[2] - pl[1] == pytest.approx(10 * exponent)
    assert pl[3] == pytest.approx(fspl_1m + 10 * exponent * math.log10(50.0))


def test_log_distance_clamps_below_the_minimum_distance():
    pl = radio.log_distance_path_loss_db(np.array([0.0, 0.3, 1.0]), 3.5e9, 3.0)
    assert pl[0] == pl[1] == pl[2]  # never a gain for d < 1 m
    assert radio.log_distance_path_loss_db(2.0, 3.5e9, 3.0, min_distance_m=5.0) == \
        pytest.approx(radio.log_distance_path_loss_db(5.0, 3.5e9, 3.0))


def test_path_gain_is_the_inverse_loss_with_extra_loss():
    pl = radio.log_distance_path_loss_db(40.0, 3.5e9, 3.0)
    assert radio.path_gain(40.0, 3.5e9, 3.0) == pytest.approx(10 ** (-pl / 10))
    assert radio.path_gain(40.0, 3.5e9, 3.0, 10.0) == pytest.approx(10 ** (-(pl + 10) / 10))
    per_column = radio.path_gain(np.full((2, 2), 40.0), 3.5e9, 3.0, np.array([0.0, 20.0]))
    assert per_column[0, 0] / per_column[0, 1] == pytest.approx(100.0)


def test_shannon_rate_and_capacity():
    np.testing.assert_allclose(radio.shannon_rate([0.0, 1.0, 3.0, 255.0]), [0, 1, 2, 8])
    assert radio.shannon_rate(-0.5) == 0.0  # negative SINR clamps to zero rate
    assert radio.shannon_capacity_bps(1e6, 3.0) == pytest.approx(2e6)


def test_interference_sinr_by_hand():
    p = np.array([1.0, 2.0, 0.5])
    g = np.array([[1.0, 0.1, 0.2],
                  [0.3, 2.0, 0.4],
                  [0.5, 0.6, 3.0]])
    noise = 0.1
    expected = [1.0 * 1.0 / (2.0 * 0.3 + 0.5 * 0.5 + noise),
                2.0 * 2.0 / (1.0 * 0.1 + 0.5 * 0.6 + noise),
                0.5 * 3.0 / (1.0 * 0.2 + 2.0 * 0.4 + noise)]
    np.testing.assert_allclose(radio.interference_sinr(p, g, noise), expected, rtol=1e-12)
    # Batched: a leading axis of instances, each its own powers and gains.
    batch = radio.interference_sinr(np.stack([p, 2 * p]), np.stack([g, g]), noise)
    np.testing.assert_allclose(batch[0], expected, rtol=1e-12)
    assert batch.shape == (2, 3)
    assert np.all(batch[1] > batch[0])  # more power everywhere beats the noise better


def test_interference_sinr_is_exact_when_the_signal_dwarfs_everything():
    # total - signal would cancel to 0 (inf SINR) or below; the exact sum keeps the noise.
    g = np.array([[1.0, 1e-30], [1e-30, 1.0]])
    sinr = radio.interference_sinr(np.array([1e3, 1e3]), g, 1e-21)
    np.testing.assert_allclose(sinr, 1e3 / (1e3 * 1e-30 + 1e-21), rtol=1e-12)
    assert np.all(np.isfinite(sinr))


def test_serving_sinr_several_receivers_per_transmitter():
    # Two transmitters, three receivers: 0 and 2 decode transmitter 0, 1 decodes transmitter 1.
    p = np.array([1.0, 2.0])
    g = np.array([[0.5, 0.1, 0.2],
                  [0.3, 0.4, 0.6]])
    got = radio.serving_sinr(p, g, (0, 1, 0), 0.1)
    np.testing.assert_allclose(got, [0.5 / (0.6 + 0.1), 0.8 / (0.1 + 0.1), 0.2 / (1.2 + 0.1)])
    with pytest.raises(ValueError, match="serving"):
        radio.serving_sinr(p, g, (0, 2, 0), 0.1)
    with pytest.raises(ValueError, match="serving"):
        radio.serving_sinr(p, g, (0, 1), 0.1)


def test_rayleigh_coefficients_have_unit_power_and_are_seeded():
    h = radio.rayleigh_coefficients(np.random.default_rng(0), (200_000,))
    assert h.dtype == np.complex128
    power = radio.fading_power(h)
    assert power.mean() == pytest.approx(1.0, abs=0.01)
    assert np.mean(power < 1.0) == pytest.approx(1 - math.exp(-1.0), abs=0.01)  # Exp(1)
    assert abs(h.mean()) < 0.01
    h2 = radio.rayleigh_coefficients(np.random.default_rng(0), (200_000,))
    np.testing.assert_array_equal(h, h2)


def test_gauss_markov_keeps_unit_power_and_the_lag_correlation():
    rng = np.random.default_rng(1)
    rho = 0.8
    h0 = radio.rayleigh_coefficients(rng, (50_000,))
    h = h0
    for _ in range(20):
        h = radio.gauss_markov_step(h, rho, rng)
    assert radio.fading_power(h).mean() == pytest.approx(1.0, abs=0.03)
    h1 = radio.gauss_markov_step(h, rho, rng)
    corr = np.mean(h1 * np.conj(h)).real
    assert corr == pytest.approx(rho, abs=0.02)
    # rho = 1 is a static channel, rho = 0 a fresh draw.
    np.testing.assert_array_equal(radio.gauss_markov_step(h0, 1.0, rng), h0)
    fresh = radio.gauss_markov_step(h0, 0.0, rng)
    assert abs(np.mean(fresh * np.conj(h0))) < 0.02


def test_pairwise_distance():
    a = np.array([[0.0, 0.0], [3.0, 0.0]])
    b = np.array([[0.0, 4.0], [3.0, 4.0], [6.0, 8.0]])
    d = radio.pairwise_distance(a, b)
    np.testing.assert_allclose(d, [[4.0, 5.0, 10.0], [5.0, 4.0, 8.54400374531753]])
    batched = radio.pairwise_distance(np.stack([a, a]), np.stack([b, b]))
    assert batched.shape == (2, 2, 3)


def test_gauss_markov_update_is_the_step_with_a_given_innovation() -> None:
    from qdrl_envs import radio

    h = radio.rayleigh_coefficients(np.random.default_rng(0), (5,))
    drawn = radio.gauss_markov_step(h, 0.6, np.random.default_rng(1))
    w = radio.rayleigh_coefficients(np.random.default_rng(1), (5,))
    np.testing.assert_array_equal(radio.gauss_markov_update(h, w, 0.6), drawn)
    # Real (re, im) planes follow the same recursion entry by entry.
    planes = radio.gauss_markov_update(np.stack([h.real, h.imag]), np.stack([w.real, w.imag]), 0.6)
    np.testing.assert_allclose(planes[0] + 1j * planes[1], drawn, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(radio.gauss_markov_update(h, w, 1.0), h)
