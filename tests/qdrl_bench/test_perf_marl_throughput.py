"""The multi-agent throughput benchmark's functions and CLI (behaviour only, never timings)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from qdrl_bench.perf import marl_throughput as mt
from qdrl_envs import marl

IDS = list(marl.MARL_ENV_IDS)


@pytest.mark.parametrize("env_id", IDS)
def test_single_env_rate_counts_agent_steps_and_resets_episodes(env_id):
    n_agents = len(marl.make_parallel(env_id).possible_agents)
    # 7 steps through episodes of 2: a missing reset would raise on the third step.
    rate = mt.measure_parallel(lambda: marl.make_parallel(env_id, max_cycles=2), seconds=0.0,
                               n_actions=3, max_steps=7)
    assert rate.env_sps > 0
    assert rate.agent_sps == pytest.approx(n_agents * rate.env_sps, rel=1e-12)


@pytest.mark.parametrize("env_id", IDS)
def test_batched_rate(env_id):
    n_agents = len(marl.make_parallel(env_id).possible_agents)
    rate = mt.measure_batched(env_id, 3, seconds=0.0, n_actions=2, max_steps=3)
    assert rate.env_sps > 0
    assert rate.agent_sps == pytest.approx(n_agents * rate.env_sps, rel=1e-12)


def test_run_without_references_reports_our_envs(tmp_path):
    report = mt.run(IDS, references=(), seconds=0.0, repeats=2, sizes=[2, 3], max_steps=2)
    assert report.references == {}
    assert [(m.env_id, m.mode) for m in report.results] == [
        (i, mode) for i in IDS for mode in ("single", "batched@2", "batched@3")]
    assert all(m.env_sps > 0 and m.pairs == {} for m in report.results)
    text = mt.format_report(report)
    assert "qdrl/SecrecyJamming-v0 (3 agents)" in text
    assert "batched core @ 3" in text and "single (ParallelEnv)" in text
    json.dumps(mt.to_json(report))


def test_measurement_keeps_the_best_round_and_median_pairs():
    m = mt.Measurement("x", "single", 2)
    m.add(mt.Rate(10.0, 20.0), {"ref": mt.Rate(5.0, 15.0)})
    m.add(mt.Rate(30.0, 60.0), {"ref": mt.Rate(10.0, 30.0)})
    m.add(mt.Rate(20.0, 40.0), {"ref": mt.Rate(20.0, 60.0)})
    assert (m.env_sps, m.agent_sps) == (30.0, 60.0)
    assert m.pairs == {"ref": [2.0, 3.0, 1.0]} and m.ratio("ref") == 2.0


def _hide_reference_packages(monkeypatch):
    for name in list(sys.modules):
        if name.startswith(("pettingzoo.butterfly", "pettingzoo.mpe", "mpe2", "pygame",
                            "pymunk")):
            monkeypatch.delitem(sys.modules, name)
    for name in ("pygame", "pymunk", "mpe2"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails: "not installed"


@pytest.mark.parametrize("name", mt.REFERENCES)
def test_missing_reference_fails_with_the_install_advice(monkeypatch, capsys, name):
    _hide_reference_packages(monkeypatch)
    with pytest.raises(mt.ReferenceUnavailable, match=r'pettingzoo\[butterfly\]==1\.25\.0'):
        mt.load_reference(name)
    status = mt.main(["--env", IDS[0], "--reference", name, "--seconds", "0.01",
                      "--repeats", "1", "--sizes", "2"])
    assert status == 2
    err = capsys.readouterr().err
    assert f"the reference {name} cannot be imported" in err and "--reference" in err


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown reference"):
        mt.load_reference("pong_v3")
    with pytest.raises(ValueError, match="unknown multi-agent environment"):
        mt.check_ids(["qdrl/Nope-v0"])
    with pytest.raises(SystemExit):
        mt.main(["--env", "qdrl/Nope-v0"])
    with pytest.raises(SystemExit):
        mt.main(["--seconds", "0"])
    with pytest.raises(SystemExit):
        mt.main(["--reference", "pong_v3"])


@pytest.mark.skipif(importlib.util.find_spec("pymunk") is None
                    or importlib.util.find_spec("pygame") is None,
                    reason='the references need pip install "pettingzoo[butterfly]==1.25.0"')
def test_references_smoke(tmp_path, capsys):
    report = mt.run([IDS[0]], references=mt.REFERENCES, seconds=0.0, repeats=1, sizes=[2],
                    max_steps=2)
    assert set(report.references) == set(mt.REFERENCES)
    assert report.references["pistonball_v6"].n_agents == 20
    assert report.references["simple_spread_v3"].n_agents == 3
    # simple_spread's episodes are 25 steps: its 3 agents are all live in each of them.
    spread = mt.measure_parallel(mt.load_reference("simple_spread_v3")[0], seconds=0.0,
                                 max_steps=30)
    assert spread.agent_sps == pytest.approx(3 * spread.env_sps, rel=1e-12)
    for m in report.results:
        assert set(m.pairs) == set(mt.REFERENCES)
        assert all(m.ratio(name) > 0 for name in mt.REFERENCES)
    out = tmp_path / "marl.json"
    assert mt.main(["--env", IDS[0], "--seconds", "0.01", "--repeats", "1", "--sizes", "2",
                    "--json", str(out)]) == 0
    assert "x simple_spread_v3" in capsys.readouterr().out
    assert set(json.loads(out.read_text())["references"]) == set(mt.REFERENCES)
