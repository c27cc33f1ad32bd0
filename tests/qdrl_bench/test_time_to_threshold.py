"""qdrl_bench.perf.time_to_threshold: steps and wall-clock to a normalised score."""

from __future__ import annotations

from pathlib import Path

import pytest

from qdrl_bench.perf.time_to_threshold import main, time_to_threshold
from qdrl_bench.store import EvalPoint, InMemoryStore, RunKey, RunResult


def _put(store: InMemoryStore, agent: str, seed: int, curve: list[tuple[int, float]],
         wall_s: float = 10.0) -> None:
    key = RunKey(sweep="s", env="E", agent=agent, seed=seed, config_hash="h", env_id="qdrl/E",
                 agent_name=agent)
    rid = store.ensure_run(key).run_id
    store.mark_running(rid)
    store.record_result(rid, RunResult(
        status="finished", final_score=curve[-1][1], final_std=0.0, wall_s=wall_s,
        curve=tuple(EvalPoint(s, m, 0.0, (m,)) for s, m in curve)))


def test_first_step_of_the_seed_mean_at_the_threshold() -> None:
    store = InMemoryStore()
    for seed in range(2):
        _put(store, "random", seed, [(0, 0.0), (100, 0.0)])
        _put(store, "oracle", seed, [(0, 10.0), (100, 10.0)])
        # Mean over seeds: 0, 5, 9 (0.9 normalised, at step 50), 8.5 at the end.
        _put(store, "ppo", seed, [(0, 0.0), (25, 4.0 + 2 * seed), (50, 8.0 + 2 * seed),
                                  (100, 8.0 + seed)], wall_s=20.0 + 20 * seed)
        _put(store, "q-ppo", seed, [(0, 0.0), (50, 6.0), (100, 5.0)])
    rows = {r.agent: r for r in time_to_threshold(store, "s")}
    assert set(rows) == {"ppo", "q-ppo"}  # baselines are the scale, not rows
    ppo = rows["ppo"]
    assert (ppo.step, ppo.seeds, ppo.best_step) == (50, 2, 50)
    assert ppo.wall_s == pytest.approx(30.0 * 50 / 100)  # mean wall-clock x budget fraction
    assert (ppo.best, ppo.final) == (pytest.approx(0.9), pytest.approx(0.85))
    q = rows["q-ppo"]
    assert (q.step, q.wall_s, q.best, q.best_step) == (None, None, pytest.approx(0.6), 50)
    assert time_to_threshold(store, "s", threshold=0.5)[1].step == 50
    with pytest.raises(ValueError, match="threshold"):
        time_to_threshold(store, "s", threshold=float("nan"))
    with pytest.raises(ValueError, match="not in the store"):
        time_to_threshold(store, "other")


def test_cli_prints_a_table_and_refuses_a_bad_store(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("not a database")
    assert main([str(bad), "--sweep", "s"]) == 2
    assert "time_to_threshold: error:" in capsys.readouterr().err
