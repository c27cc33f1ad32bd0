"""Rerunning done runs (``--rerun stale|all``): stale detection, nothing lost, other sweeps kept."""

from __future__ import annotations

import io
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from qdrl_bench.cli import main
from qdrl_bench.report import build_reports
from qdrl_bench.runner import run_sweep
from qdrl_bench.spec import parse_sweep
from qdrl_bench.store import SQLiteStore
from tests.qdrl_bench.conftest import cli, popen_cli, stop_when
from tests.qdrl_bench.test_resume import SWEEP as RESUME_SWEEP
from tests.qdrl_bench.test_resume import _rows

FLAKY = "FlakyCartPole-v0"


class FlakyCartPole(CartPoleEnv):
    """CartPole whose ``reset`` raises ``fault`` when set: a run that breaks on a rerun."""

    fault: type[BaseException] | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if FlakyCartPole.fault is not None:
            raise FlakyCartPole.fault("flaky env broken on purpose")
        return super().reset(seed=seed, options=options)


@pytest.fixture
def flaky() -> Iterator[type[FlakyCartPole]]:
    if FLAKY not in gym.registry:
        gym.register(FLAKY, entry_point=FlakyCartPole)
    FlakyCartPole.fault = None
    yield FlakyCartPole
    FlakyCartPole.fault = None


def sweep(name: str = "r", seeds: int = 2, timesteps: int = 32, envs: str = "") -> str:
    envs = envs or "[{id: CartPole-v1, max_episode_steps: 10}]"
    return (f"name: {name}\nseeds: {seeds}\ntimesteps: {timesteps}\n"
            f"eval: {{every: 32, episodes: 1}}\nenvs: {envs}\nagents: [random, ppo]\n")


FLAKY_ENVS = f"[{{id: CartPole-v1, max_episode_steps: 5}}, {{id: {FLAKY}, max_episode_steps: 5}}]"


def snapshot(db: Path, *, leases: bool = True) -> dict[str, tuple]:
    """Every column of every run, with its whole curve, keyed by run id.

    ``leases=False`` leaves out the lease columns (``owner``, ``heartbeat_at``): a driver
    killed mid-run leaves its lease, which the next driver takes over.
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        runs = conn.execute("SELECT * FROM runs").fetchall()
        if not leases:
            names = [d[1] for d in conn.execute("PRAGMA table_info(runs)")]
            keep = [i for i, n in enumerate(names) if n not in ("owner", "heartbeat_at")]
            runs = [tuple(r[i] for i in keep) for r in runs]
        return {r[0]: (r, tuple(conn.execute("SELECT * FROM evals WHERE run_id=? ORDER BY step",
                                             (r[0],)).fetchall())) for r in runs}
    finally:
        conn.close()


def versions(db: Path) -> dict[tuple[str, str, int], tuple[str, str | None, int]]:
    """``(sweep, env, agent, seed)`` -> (status, code version, attempts)."""
    store = SQLiteStore(db)
    try:
        return {(r.key.sweep, r.key.env, r.key.agent, r.key.seed):
                (r.status, r.result and r.result.code_version, r.attempts)
                for r in store.list_runs()}
    finally:
        store.close()


def test_rerun_stale_redoes_only_results_of_another_version(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    first = run_sweep(parse_sweep(sweep()), store=url, progress=False, version="v1")
    assert first.statuses == {"finished": 4}
    same = run_sweep(parse_sweep(sweep()), store=url, progress=False, rerun="stale", version="v1")
    assert (same.skipped, same.stale, same.redo, same.statuses) == (4, 0, 0, {})
    before = snapshot(db)
    plain = run_sweep(parse_sweep(sweep()), store=url, progress=False, version="v2")
    assert (plain.skipped, plain.stale, plain.redo, plain.statuses) == (4, 4, 0, {})
    assert snapshot(db) == before  # no flag: staleness is reported, nothing is redone
    # seed 2 is added under v2: the store now holds results of two code versions
    run_sweep(parse_sweep(sweep(seeds=3)), store=url, progress=False, version="v2")
    mixed = snapshot(db)
    (rep,) = build_reports(SQLiteStore(db), version="v2")
    assert rep.stale == 4 and rep.code_versions == ("v1", "v2")

    stale = run_sweep(parse_sweep(sweep(seeds=3)), store=url, progress=False, rerun="stale",
                      version="v2")
    assert (stale.skipped, stale.stale, stale.redo, stale.replaced) == (2, 0, 4, 4)
    after = versions(db)
    assert {v[:2] for v in after.values()} == {("finished", "v2")}
    for (_, _, _, seed), (_, _, attempts) in after.items():
        assert attempts == (1 if seed == 2 else 2)
    now = snapshot(db)
    for run_id, (row, curve) in mixed.items():
        if row[5] == 2:  # seed 2 was already v2: untouched, row and curve
            assert now[run_id] == (row, curve)
        else:  # redone: the same (seeded) scores, a new finish time, a full curve
            assert now[run_id][0][20] == row[20] and now[run_id][0][14] > row[14]
            assert len(now[run_id][1]) == len(curve) >= 2
    (rep,) = build_reports(SQLiteStore(db), version="v2")
    assert rep.stale == 0 and rep.code_versions == ("v2",)


def test_rerun_all_touches_only_this_sweep(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    url = f"sqlite:///{db}"
    run_sweep(parse_sweep(sweep("a", timesteps=48)), store=url, progress=False, version="v1")
    run_sweep(parse_sweep(sweep("a")), store=url, progress=False, version="v1")
    run_sweep(parse_sweep(sweep("b")), store=url, progress=False, version="v1")
    before = snapshot(db)
    assert len(before) == 12
    summary = run_sweep(parse_sweep(sweep("a")), store=url, progress=False, rerun="all",
                        version="v1")  # all: even results of the current version are redone
    assert (summary.skipped, summary.redo, summary.replaced) == (0, 4, 4)
    after = snapshot(db)
    current_a = {run_id for run_id, (row, _) in before.items()
                 if row[2] == "a" and '"timesteps": 32' in row[9]}
    assert len(current_a) == 4
    for run_id, (row, curve) in before.items():
        if run_id in current_a:
            assert after[run_id][0][11] == row[11] + 1  # attempts
        else:  # sweep b, and a's superseded configuration: not one byte changed
            assert after[run_id] == (row, curve)


def test_failed_or_interrupted_rerun_keeps_the_old_results(tmp_path: Path, flaky) -> None:
    db = tmp_path / "f.db"
    url = f"sqlite:///{db}"
    text = sweep(envs=FLAKY_ENVS).replace("agents: [random, ppo]", "agents: [random]")
    assert run_sweep(parse_sweep(text), store=url, progress=False,
                     version="v1").statuses == {"finished": 4}
    before = snapshot(db)

    flaky.fault = RuntimeError  # the rerun of the flaky env's runs fails
    failed = run_sweep(parse_sweep(text), store=url, progress=False, rerun="all", version="v2")
    assert failed.statuses == {"finished": 2, "failed": 2} and failed.replaced == 2
    assert sorted(failed.kept) == [(f"r/{FLAKY}/random/0", "failed"),
                                   (f"r/{FLAKY}/random/1", "failed")]
    got = versions(db)
    assert {k[1]: v[:2] for k, v in got.items()} == {"CartPole-v1": ("finished", "v2"),
                                                     FLAKY: ("finished", "v1")}
    after = snapshot(db)
    for run_id, (row, curve) in before.items():
        if row[3] == FLAKY:
            assert after[run_id] == (row, curve)

    flaky.fault = KeyboardInterrupt  # Ctrl-C lands inside the rerun of the flaky runs
    stopped = run_sweep(parse_sweep(text), store=url, progress=False, rerun="all", version="v3")
    assert stopped.interrupted and stopped.replaced == 2
    got = versions(db)
    assert {k[1]: v[:2] for k, v in got.items()} == {"CartPole-v1": ("finished", "v3"),
                                                     FLAKY: ("finished", "v1")}
    after = snapshot(db)
    for run_id, (row, curve) in before.items():
        if row[3] == FLAKY:  # not 'interrupted', not emptied: exactly the old result
            assert after[run_id] == (row, curve)

    flaky.fault = None  # resuming with --rerun stale redoes only what is still old
    resumed = run_sweep(parse_sweep(text), store=url, progress=False, rerun="stale",
                        version="v3")
    assert (resumed.skipped, resumed.redo, resumed.replaced) == (2, 2, 2)
    assert {v[:2] for v in versions(db).values()} == {("finished", "v3")}
    store = SQLiteStore(db)
    assert store.integrity_check() == "ok"
    store.close()


def test_sigkill_mid_rerun_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    path = tmp_path / "k.yaml"
    path.write_text(RESUME_SWEEP.format(db=db))
    done = cli("run", str(path), "--quiet")
    assert done.returncode == 0, done.stderr
    before = {r[0]: r for r in _rows(db)}
    assert len(before) == 12 and all(r[3] == "finished" for r in before.values())
    full_before = snapshot(db, leases=False)

    proc = popen_cli("run", str(path), "--quiet", "--rerun", "all")
    stop_when(proc, lambda: sum(r[6] >= 2 for r in _rows(db)) >= 3, "3 redone runs")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    after = {r[0]: r for r in _rows(db)}
    redone = [k for k, r in after.items() if r[6] == 2]
    full_after = snapshot(db, leases=False)
    assert 3 <= len(redone) < 12, "kill landed outside the rerun"
    assert set(after) == set(before)
    for run_id, r in after.items():
        assert r[3] == "finished" and r[7] >= 2, r  # every run keeps a result and its curve
        assert r[5] == before[run_id][5]  # seeded: the redone score equals the old one
        if run_id not in redone:
            assert full_after[run_id] == full_before[run_id]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


# ----------------------------------------------------------------------------- the CLI


def test_cli_shows_staleness_and_reruns_stale(write_sweep, tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    path = write_sweep(sweep("c").replace("agents: [random, ppo]", "agents: [random]")
                       + f"store: sqlite:///{db}\n")
    run_sweep(parse_sweep(path.read_text()), progress=False, version="old")
    out = io.StringIO()
    assert main(["run", str(path), "--quiet"], out=out) == 0
    assert ("2 runs, 2 already done (2 by another code version; --rerun stale redoes them)"
            in out.getvalue())
    out = io.StringIO()
    assert main(["report", str(db), "--out", str(tmp_path / "rep")], out=out) == 0
    assert "sweep c: 2 of 2 results are from another code version" in out.getvalue()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Stale: 2 of 2 results shown were produced by another code version" in md
    out = io.StringIO()
    assert main(["run", str(path), "--quiet", "--rerun", "stale"], out=out) == 0
    assert "0 already done, 2 done run(s) redone (2 replaced)" in out.getvalue()
    out = io.StringIO()
    assert main(["run", str(path), "--quiet", "--rerun", "stale"], out=out) == 0
    assert "2 already done; this time: nothing to do" in out.getvalue()
    out = io.StringIO()
    assert main(["report", str(db), "--out", str(tmp_path / "rep")], out=out) == 0
    assert "another code version" not in out.getvalue()


def test_bad_rerun_value_is_named(write_sweep, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep("name: x\nenvs: [CartPole-v1]\nagents: [random]\n")
    with pytest.raises(SystemExit) as exc:
        main(["run", str(path), "--quiet", "--store", "memory://", "--rerun", "stail"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --rerun: invalid choice: 'stail'" in err and "Traceback" not in err
    with pytest.raises(ValueError, match=r"rerun must be one of \['stale', 'all'\].*'stail'"):
        run_sweep(parse_sweep(path.read_text()), store="memory://", progress=False,
                  rerun="stail")


@pytest.mark.parametrize("flag", ["stale", "all"])
def test_rerun_refuses_corrupt_and_unknown_schema_stores(write_sweep, tmp_path: Path, flag: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    path = write_sweep("name: x\nseeds: 1\nenvs: [{id: CartPole-v1, max_episode_steps: 5}]\n"
                       "agents: [random]\n")
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\x00garbage" * 64)
    assert main(["run", str(path), "--quiet", "--rerun", flag, "--store",
                 f"sqlite:///{bad}"]) == 2
    assert "not a SQLite database" in capsys.readouterr().err
    assert bad.read_bytes() == b"\x00garbage" * 64

    future = tmp_path / "future.db"
    run_sweep(parse_sweep(path.read_text()), store=f"sqlite:///{future}", progress=False)
    conn = sqlite3.connect(future)
    conn.execute("UPDATE qdrl_meta SET value='99' WHERE key='schema'")
    conn.commit()
    conn.close()
    before = future.read_bytes()
    assert main(["run", str(path), "--quiet", "--rerun", flag, "--store",
                 f"sqlite:///{future}"]) == 2
    err = capsys.readouterr().err
    assert "has schema '99'" in err and "Traceback" not in err
    assert future.read_bytes() == before
