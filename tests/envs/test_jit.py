"""The compilation helpers (qdrl_envs.jit): dual-use maths and the source-keyed kernel cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qdrl_envs import jit, radio
from qdrl_envs.jit import kernel


@kernel
def _radio_in_a_kernel(distance_m, snr):  # pragma: no cover - compiled
    out = np.empty((distance_m.shape[0], 3))
    for i in range(distance_m.shape[0]):
        out[i, 0] = radio.path_gain(distance_m[i], 3.5e9, 3.0)
        out[i, 1] = radio.linear_to_db(snr[i])
        out[i, 2] = radio.shannon_rate(snr[i])
    return out


def test_jitable_maths_gives_the_same_numbers_compiled_and_in_numpy() -> None:
    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 1e4, 64)
    snr = rng.exponential(10.0, 64)
    compiled = _radio_in_a_kernel(d, snr)
    np.testing.assert_allclose(compiled[:, 0], radio.path_gain(d, 3.5e9, 3.0), rtol=1e-14)
    np.testing.assert_allclose(compiled[:, 1], radio.linear_to_db(snr), rtol=1e-14)
    np.testing.assert_allclose(compiled[:, 2], radio.shannon_rate(snr), rtol=1e-14)


def _fresh_cache_dir(monkeypatch: pytest.MonkeyPatch, value: str | None) -> Path | None:
    if value is None:
        monkeypatch.delenv("QDRL_NUMBA_CACHE_DIR", raising=False)
    else:
        monkeypatch.setenv("QDRL_NUMBA_CACHE_DIR", value)
    return jit.cache_dir.__wrapped__()


def test_cache_dir_is_keyed_by_a_digest_of_the_package_sources(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = _fresh_cache_dir(monkeypatch, str(tmp_path))
    assert where is not None and where.parent == tmp_path and where.is_dir()
    assert len(where.name) == 16 and int(where.name, 16) >= 0
    assert _fresh_cache_dir(monkeypatch, str(tmp_path)) == where  # stable for the same sources
    # Any change to a source file of the package moves the cache elsewhere.
    fake = tmp_path / "pkg"
    fake.mkdir()
    (fake / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(jit, "_PACKAGE_DIR", fake)
    first = _fresh_cache_dir(monkeypatch, str(tmp_path))
    (fake / "a.py").write_text("x = 2\n")
    assert _fresh_cache_dir(monkeypatch, str(tmp_path)) != first


def test_cache_can_be_switched_off_and_survives_an_unusable_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _fresh_cache_dir(monkeypatch, "") is None
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # fails even for root, unlike permission bits
    assert _fresh_cache_dir(monkeypatch, str(blocker / "cache")) is None
