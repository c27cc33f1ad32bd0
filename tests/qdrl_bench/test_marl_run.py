"""Sweeps over the multi-agent envs: baselines, shared SB3 agents and MAPPO / IPPO in one store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qdrl_bench.marl_ctde import CTDEAgents, evaluate_ctde
from qdrl_bench.marl_eval import play_episodes
from qdrl_bench.marl_run import CTDE_FILE
from qdrl_bench.marl_train import evaluate_shared, load_shared
from qdrl_bench.report import write_report
from qdrl_bench.runner import run_sweep
from qdrl_bench.spec import SpecError, load_sweep
from qdrl_bench.store import SQLiteStore
from qdrl_envs.marl import make_baseline, make_parallel

SJ = "qdrl/SecrecyJamming-v0"
SO = "qdrl/SliceOrchestration-v0"
EVAL_SEED = 100_000  # EvalSpec default: episode k of seed s is reset with it + 1000 s + k

SWEEP = f"""
name: marl-test
seeds: 1
timesteps: 60
eval: {{every: 30, episodes: 2}}
executor: {{kind: local, workers: 1}}
envs:
  - id: {SJ}
    kwargs: {{max_cycles: 10}}
  - id: {SO}
    kwargs: {{max_cycles: 10}}
    label: slicing
agents:
  - name: ppo
    kwargs: {{n_steps: 10, batch_size: 15}}
  - dqn
  - name: q-mappo
    kwargs: {{frames_per_batch: 30, minibatch_size: 15, n_epochs: 1}}
  - name: ippo-small
    kwargs: {{frames_per_batch: 30, minibatch_size: 15, n_epochs: 1}}
    envs: [slicing]
  - random
  - oracle
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[SQLiteStore, Path]:
    root = tmp_path_factory.mktemp("marl")
    path = root / "marl.yaml"
    path.write_text(SWEEP)
    store = SQLiteStore(root / "marl.db")
    summary = run_sweep(load_sweep(path), store=store, progress=False)
    assert summary.failures == []
    return store, root


def _runs(store: SQLiteStore) -> dict[tuple[str, str], object]:
    return {(r.key.env, r.key.agent): r for r in store.list_runs()}


def test_every_kind_of_agent_runs_into_the_same_store(swept) -> None:
    store, _ = swept
    runs = _runs(store)
    assert set(runs) == {(SJ, "ppo"), (SJ, "dqn"), (SJ, "q-mappo"), (SJ, "random"),
                         (SJ, "oracle"), ("slicing", "ppo"), ("slicing", "dqn"),
                         ("slicing", "q-mappo"), ("slicing", "ippo-small"),
                         ("slicing", "random"), ("slicing", "oracle")}
    for key in [(SJ, "ppo"), (SJ, "q-mappo"), ("slicing", "ippo-small")]:
        rec = runs[key]
        assert rec.status == "finished", (key, rec.result.reason)
        # Env steps: one step moves every agent (the shared policy's SB3 count is 3x).
        assert [p.step for p in store.get_curve(rec.run_id)] == [0, 30, 60], key
        m = rec.result.metrics
        assert {"score/stochastic", "score/last_evals"} <= set(m), key
        assert ("agent/ap_0" if key[0] == SJ else "agent/cell_0") in m, key
    assert runs[(SJ, "q-mappo")].result.params_quantum > 0
    assert runs[(SJ, "ppo")].result.params_quantum == 0
    tx = runs[(SJ, "q-mappo")].result.metrics
    assert tx["role/tx"] == pytest.approx((tx["agent/ap_0"] + tx["agent/ap_1"]) / 2)
    assert tx["role/jam"] == pytest.approx(tx["agent/ap_2"])
    # What does not apply says why; conditions and wrappers are single-agent only.
    assert runs[(SJ, "dqn")].status == "not_applicable"
    assert "Discrete" in runs[(SJ, "dqn")].result.reason
    assert runs[("slicing", "oracle")].status == "not_applicable"
    assert "coordinated-oracle" in runs[("slicing", "oracle")].result.reason


def test_baseline_scores_are_the_team_return_of_the_shared_held_out_episodes(swept) -> None:
    store, _ = swept
    rec = _runs(store)[(SJ, "oracle")]
    env = make_parallel(SJ, max_cycles=10)
    oracle = make_baseline("oracle", env, seed=0)
    ev = play_episodes(env, lambda obs: oracle.predict(obs)[0], episodes=2, seed=EVAL_SEED)
    assert rec.result.final_score == pytest.approx(ev.mean_team_return)
    assert rec.result.metrics["role/tx"] == pytest.approx(ev.role_returns["tx"])
    assert ev.team_returns.shape == (2,) and np.all(ev.lengths == 10)


def test_saved_agents_reproduce_the_stored_scores(swept) -> None:
    store, root = swept
    runs = _runs(store)
    agents_dir = root / "marl-agents" / "marl-test"
    ctde = next((agents_dir / "qdrl_SecrecyJamming-v0" / "q-mappo").glob("seed0-*"))
    agents = CTDEAgents.load(ctde / CTDE_FILE)
    ev = evaluate_ctde(agents, 2, EVAL_SEED)
    assert ev.mean_team_return == pytest.approx(runs[(SJ, "q-mappo")].result.final_score)
    shared = next((agents_dir / "slicing" / "ppo").glob("seed0-*"))
    model, obs_filter, spec = load_shared(shared)
    ev = evaluate_shared(model, spec, episodes=2, seed=EVAL_SEED, obs_filter=obs_filter)
    assert ev.mean_team_return == pytest.approx(runs[("slicing", "ppo")].result.final_score)


def test_report_shows_team_and_role_returns(swept, tmp_path: Path) -> None:
    store, _ = swept
    out = write_report(store, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "#### Team and roles" in text
    assert "| jam IQM [95% CI] | tx IQM [95% CI] |" in text
    assert "| agents IQM [95% CI] |" in text
    assert out is not None


def test_a_multi_agent_agent_on_a_single_agent_env_is_not_applicable(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntimesteps: 8\neval: {every: 8, episodes: 1}\n"
                    "envs: [{id: qdrl/SecrecyPowerControl-v1, max_episode_steps: 4}]\n"
                    "agents: [q-ippo]\n")
    store = SQLiteStore(tmp_path / "s.db")
    run_sweep(load_sweep(path), store=store, progress=False)
    (rec,) = store.list_runs()
    assert rec.status == "not_applicable"
    assert "multi-agent envs only" in rec.result.reason


@pytest.mark.parametrize(("env_line", "agent_lines", "needle"), [
    (f"{{id: {SJ}, max_episode_steps: 5}}", "[random]", "max_cycles, not max_episode_steps"),
    (f"{{id: {SJ}, kwargs: {{n_aps: 0}}}}", "[random]", "n_aps"),
    (f"{{id: {SJ}}}", "[{name: q-mappo, kwargs: {lr_rate: 0.1}}]",
     "agents[0].kwargs: 'lr_rate' is not a CTDEConfig field"),
    (f"{{id: {SJ}}}", "[{name: q-mappo, kwargs: {total_steps: 9}}]",
     "'total_steps' is set by the sweep"),
    (f"{{id: {SJ}}}", "[{name: mappo-small, kwargs: {lr: -1.0}}]", "CTDEConfig.lr"),
    (f"{{id: {SJ}}}", "[{name: ppo, train_wrappers: [{kind: reward, fraction: 0.1, mode: flip}]}]",
     "is multi-agent; training wrappers"),
    ("{id: qdrl/NoSuchMarl-v0}", "[random]", "unknown environment 'qdrl/NoSuchMarl-v0'"),
])
def test_bad_multi_agent_sweeps_are_refused_naming_the_entry(tmp_path: Path, env_line: str,
                                                             agent_lines: str,
                                                             needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\ntimesteps: 8\neval: {{every: 8, episodes: 1}}\n"
                    f"envs: [{env_line}]\nagents: {agent_lines}\n")
    with pytest.raises(SpecError) as info:
        run_sweep(load_sweep(path), store=SQLiteStore(tmp_path / "bad.db"), progress=False)
    assert needle in str(info.value)
    assert str(path) in str(info.value)
