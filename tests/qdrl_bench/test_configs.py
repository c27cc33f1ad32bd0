from __future__ import annotations

from pathlib import Path

import pytest

import qdrl_envs
from qdrl_bench import demo, registry
from qdrl_bench.runner import check_env_kwargs
from qdrl_bench.spec import expand_runs, load_sweep

CONFIGS = sorted((Path(demo.__file__).parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_sweeps_are_valid(path: Path) -> None:
    spec = load_sweep(path)
    registry.check_sweep_names(spec)
    check_env_kwargs(spec)
    assert expand_runs(spec, baselines_of=registry.baselines_for)


def test_quick_covers_every_registered_env() -> None:
    spec = load_sweep(demo.QUICK)
    assert tuple(e.id for e in spec.envs) == qdrl_envs.ENV_IDS
    assert {"q-ppo-hybrid", "ppo", "baselines"} <= {a.name for a in spec.agents}
    assert len(spec.seeds) == 2


def test_fig11_is_the_papers_setting() -> None:
    spec = load_sweep(demo.QUICK.parent / "paper_fig11.yaml")
    (env,) = spec.envs
    assert env.id == "qdrl/SecrecyPowerControl-v1" and env.kwargs == {"n_aps": 2}
    assert len(spec.seeds) == 10
    assert {"q-ppo", "ppo-small", "baselines"} <= {a.name for a in spec.agents}


def test_demo_runs_a_sweep_and_prints_the_report(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text("name: tiny\nseeds: 1\ntimesteps: 16\neval: {every: 16, episodes: 1}\n"
                     "envs: [{id: CartPole-v1, max_episode_steps: 5}]\nagents: [random, a2c]\n")
    out = tmp_path / "rep"
    assert demo.main(["--sweep", str(sweep), "--store", f"sqlite:///{tmp_path / 't.db'}",
                      "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {(out / 'report.html').resolve()}" in printed
    assert (out / "report.html").exists()
