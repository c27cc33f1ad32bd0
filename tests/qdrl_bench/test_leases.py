"""Several drivers of one sweep: each run is executed once, by the driver that claimed it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from qdrl_bench import registry
from qdrl_bench.runner import expand_runs, run_key, run_sweep
from qdrl_bench.spec import parse_sweep
from qdrl_bench.store import SQLiteStore, new_owner
from tests.qdrl_bench.conftest import CARTPOLE_SWEEP, popen_cli

SWEEP = CARTPOLE_SWEEP.replace("{name}", "leases").replace("{seeds}", "6")


def test_runs_another_driver_holds_are_left_to_it(tmp_path: Path) -> None:
    db = tmp_path / "held.db"
    spec = parse_sweep(SWEEP.format(db=db))
    with SQLiteStore(db) as store:
        runs = expand_runs(spec, baselines_of=registry.baselines_for)
        ids = [store.ensure_run(run_key(r)).run_id for r in runs]
        other = new_owner()  # a live driver (this process) holding three runs
        for rid in ids[:3]:
            assert store.claim(rid, other, lease_s=3600)
    summary = run_sweep(spec, progress=False)
    assert sorted(name for name, _ in summary.held) == sorted(r.name for r in runs[:3])
    assert all(owner == other for _, owner in summary.held)
    assert sum(summary.statuses.values()) == len(runs) - 3
    with SQLiteStore(db) as store:
        recs = {r.run_id: r for r in store.list_runs()}
    assert all(recs[rid].status == "running" and recs[rid].owner == other
               and recs[rid].attempts == 1 for rid in ids[:3])
    assert all(recs[rid].status == "finished" and recs[rid].owner is None for rid in ids[3:])


def test_two_drivers_at_once_execute_each_run_once(tmp_path: Path) -> None:
    db = tmp_path / "two.db"
    sweep = tmp_path / "two.yaml"
    sweep.write_text(SWEEP.format(db=db))
    procs = [popen_cli("run", str(sweep), "--quiet") for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT status, attempts, owner FROM runs").fetchall()
    conn.close()
    assert len(rows) == 12
    assert all(r == ("finished", 1, None) for r in rows), rows  # 12 runs cost 12
