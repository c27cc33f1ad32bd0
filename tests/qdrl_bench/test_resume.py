"""A sweep killed at any moment loses no finished result; Ctrl-C stops cleanly."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

from tests.qdrl_bench.conftest import popen_cli, proc_state, stop_when

SWEEP = """\
name: resume
store: sqlite:///{db}
seeds: 4
timesteps: 384
eval: {{every: 128, episodes: 2}}
envs:
  - id: CartPole-v1
    max_episode_steps: 30
agents:
  - name: ppo
    kwargs: {{n_steps: 64, batch_size: 32, n_epochs: 2}}
  - name: a2c
  - random
"""


def _rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(
            "SELECT run_id, agent, seed, status, finished_at, final_score, attempts, "
            "(SELECT COUNT(*) FROM evals e WHERE e.run_id = runs.run_id) FROM runs").fetchall()
    finally:
        conn.close()


def _count(db: Path, status: str) -> int:
    if not db.exists():
        return 0
    try:
        return sum(r[3] == status for r in _rows(db))
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def test_sigkill_mid_sweep_then_resume(tmp_path: Path) -> None:
    db = tmp_path / "resume.db"
    sweep = tmp_path / "resume.yaml"
    sweep.write_text(SWEEP.format(db=db))
    proc = popen_cli("run", str(sweep), "--quiet")
    stop_when(proc, lambda: _count(db, "finished") >= 3, "3 finished runs")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    before = {r[0]: r for r in _rows(db)}
    done_before = {k: r for k, r in before.items() if r[3] == "finished"}
    assert 3 <= len(done_before) < 12, "kill landed outside the sweep"
    assert all(r[7] >= 2 for r in done_before.values()), "a finished run lacks its curve"

    proc = popen_cli("run", str(sweep), "--quiet")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"{len(done_before)} already done" in out
    after = _rows(db)
    assert len(after) == 12 == len({r[0] for r in after})
    assert len({(r[1], r[2]) for r in after}) == 12
    assert all(r[3] == "finished" for r in after)
    for r in after:
        if r[0] in done_before:  # untouched: same score, same finish time, not re-run
            assert r == done_before[r[0]]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_ctrl_c_marks_interrupted_and_store_stays_consistent(tmp_path: Path) -> None:
    db = tmp_path / "int.db"
    sweep = tmp_path / "int.yaml"
    sweep.write_text(SWEEP.format(db=db).replace("timesteps: 384", "timesteps: 2048"))
    proc = popen_cli("run", str(sweep), "--quiet")
    # Ctrl-C lands while a run is in flight: one finished, the next marked running.
    stop_when(proc, lambda: _count(db, "finished") >= 1 and _count(db, "running") == 1,
              "a run in flight after a finished one")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in out
    rows = _rows(db)
    statuses = [r[3] for r in rows]
    assert "running" not in statuses
    assert statuses.count("interrupted") == 1
    assert all(r[7] == 0 for r in rows if r[3] != "finished")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def _is_resource_tracker(pid: int) -> bool:
    """Whether a child is multiprocessing's resource tracker (one gone meanwhile is not)."""
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return True  # exited between the listing and the read: not a worker to wait for


def _gone(pid: int) -> bool:
    """Exited (a zombie counts: nobody may reap orphans in a container)."""
    return proc_state(pid) in (None, "Z", "X")


def test_workers_exit_when_the_driver_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "orphans.db"
    sweep = tmp_path / "orphans.yaml"
    sweep.write_text(f"""\
name: orphans
store: sqlite:///{db}
seeds: 2
timesteps: 1000000
eval: {{every: 500000, episodes: 1}}
executor: {{kind: local, workers: 2}}
envs: [CartPole-v1]
agents: [ppo]
""")
    proc = popen_cli("run", str(sweep), "--quiet")
    workers: set[int] = set()

    def both_running() -> bool:  # two runs started: both workers are training
        nonlocal workers
        if _count(db, "running") < 2:
            return False
        workers = {c for c in _children(proc.pid) if not _is_resource_tracker(c)}
        return len(workers) == 2

    stop_when(proc, both_running, "two runs in flight")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 120
    while not all(_gone(w) for w in workers):  # each notices within its watch interval
        assert time.monotonic() < deadline, f"workers {workers} outlived their driver"
        time.sleep(0.1)
