"""The env throughput benchmark's functions and CLI (behaviour only, never timings)."""

from __future__ import annotations

import json

import pytest

from qdrl_bench.perf import env_throughput as et

SECRECY = "qdrl/SecrecyPowerControl-v1"


def test_check_ids_defaults_to_every_env_and_refuses_unknown_ids():
    import qdrl_envs

    assert et.check_ids(None) == list(qdrl_envs.ENV_IDS)
    assert et.check_ids([SECRECY]) == [SECRECY]
    with pytest.raises(ValueError, match="not a registered"):
        et.check_ids(["qdrl/Nope-v0"])


def test_measurement_ratios_and_targets():
    m = et.Measurement(SECRECY, reference_sps=100.0, single_sps=30.0,
                       vector_sps={1: 25.0, 1024: 900.0})
    assert m.single_ratio == pytest.approx(0.3) and m.single_ok
    assert m.vector_ratio(1024) == pytest.approx(9.0)
    assert m.vector_speedup == pytest.approx(30.0) and m.vector_ok
    slow = et.Measurement(SECRECY, 100.0, 20.0, {1024: 300.0})
    assert not slow.single_ok and not slow.vector_ok
    assert et.Measurement(SECRECY, 100.0, 30.0).vector_speedup is None
    paired = et.Measurement(SECRECY, 100.0, 30.0, {1024: 900.0}, single_pairs=[0.2, 0.4, 0.3],
                            vector_pairs={1024: [6.0, 9.0, 12.0]})
    assert paired.single_ratio == pytest.approx(0.3)  # the median of the pairs
    assert paired.vector_ratio(1024) == pytest.approx(9.0)
    assert paired.vector_speedup == pytest.approx(30.0)
    text = et.format_report([m, slow], 100.0)
    assert "0.300x CartPole" in text and "PASS" in text and "FAIL" in text


def test_measure_functions_return_positive_rates():
    assert et.measure_single(SECRECY, seconds=0.02, n_actions=10) > 0
    assert et.measure_vector(SECRECY, 4, seconds=0.02, n_actions=4) > 0


def test_main_prints_the_report_and_writes_json(tmp_path, capsys):
    out = tmp_path / "perf.json"
    status = et.main(["--env", SECRECY, "--seconds", "0.02", "--repeats", "1",
                      "--sizes", "1", "4", "--json", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    assert text.startswith("reference CartPole-v1 via gym.make:")
    assert "vector @ 4 / single" in text
    payload = json.loads(out.read_text())
    assert payload["results"][0]["env_id"] == SECRECY
    assert set(payload["results"][0]["vector_sps"]) == {"1", "4"}


def test_main_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        et.main(["--seconds", "0"])
    with pytest.raises(SystemExit):
        et.main(["--env", "qdrl/Nope-v0"])
    assert "not a registered" in capsys.readouterr().err
