"""The store contract (BaseStore docstring), run against every backend."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from qdrl_bench.store import (
    SCHEMA_VERSION,
    BaseStore,
    EvalPoint,
    InMemoryStore,
    RunKey,
    RunResult,
    SQLiteStore,
    StoreError,
    get_store,
    new_owner,
)


def key(i: int = 0, *, sweep: str = "s", chash: str = "h0") -> RunKey:
    return RunKey(sweep=sweep, env="E", agent=f"a{i}", seed=i % 3, config_hash=chash,
                  env_id="Env-v0", agent_name="ppo", config={"i": i})


def finished(score: float = 1.5, n: int = 3) -> RunResult:
    return RunResult(status="finished", adapter="BoxToDiscrete", wall_s=0.5, params_quantum=4,
                     params_classical=10, final_score=score, final_std=0.1,
                     metrics={"secrecy_rate": 2.0},
                     curve=tuple(EvalPoint(step=s * 10, mean=float(s), std=0.0,
                                           returns=(float(s), float(s)))
                                 for s in range(n)))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseStore]:
    s = InMemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "r.db")
    yield s
    s.close()


def test_ensure_run_is_idempotent(store: BaseStore) -> None:
    a = store.ensure_run(key(1))
    b = store.ensure_run(key(1))
    assert a.run_id == b.run_id == key(1).run_id
    assert a.status == "pending"
    assert len(store.list_runs()) == 1
    store.ensure_run(key(1, chash="h1"))  # a changed config is a new run
    assert len(store.list_runs()) == 2
    assert store.list_runs(sweep="other") == []
    assert store.sweeps() == ["s"]


def test_result_roundtrip(store: BaseStore) -> None:
    rid = store.ensure_run(key(2)).run_id
    assert store.mark_running(rid)
    rec = store.get_run(rid)
    assert rec is not None and rec.status == "running" and rec.attempts == 1
    assert store.record_result(rid, finished(3.25))
    rec = store.get_run(rid)
    assert rec is not None and rec.status == "finished" and rec.result is not None
    assert rec.result.final_score == 3.25
    assert rec.result.adapter == "BoxToDiscrete"
    assert (rec.result.params_quantum, rec.result.params_classical) == (4, 10)
    assert rec.result.metrics == {"secrecy_rate": 2.0}
    assert rec.key.config == {"i": 2}
    curve = store.get_curve(rid)
    assert [p.step for p in curve] == [0, 10, 20]
    assert curve[2].returns == (2.0, 2.0)


def test_finished_is_final(store: BaseStore) -> None:
    rid = store.ensure_run(key(3)).run_id
    store.mark_running(rid)
    store.record_result(rid, finished(1.0))
    assert not store.mark_running(rid)
    assert not store.record_result(rid, finished(9.0, n=1))
    assert store.mark_interrupted([rid]) == 0
    rec = store.get_run(rid)
    assert rec is not None and rec.status == "finished"
    assert rec.result is not None and rec.result.final_score == 1.0
    assert len(store.get_curve(rid)) == 3


def test_not_applicable_is_done_failed_is_redone(store: BaseStore) -> None:
    na = store.ensure_run(key(4)).run_id
    store.record_result(na, RunResult(status="not_applicable", reason="cap exceeded"))
    assert not store.mark_running(na)
    rec = store.get_run(na)
    assert rec is not None and rec.result is not None and rec.result.reason == "cap exceeded"
    failed = store.ensure_run(key(5)).run_id
    store.mark_running(failed)
    store.record_result(failed, RunResult(status="failed", reason="boom"))
    assert store.mark_running(failed)
    rec = store.get_run(failed)
    assert rec is not None and rec.attempts == 2


def test_mark_interrupted_only_touches_running(store: BaseStore) -> None:
    ids = [store.ensure_run(key(i)).run_id for i in range(3)]
    store.mark_running(ids[0])
    store.mark_running(ids[1])
    assert store.mark_interrupted(ids) == 2
    assert [store.get_run(i).status for i in ids] == ["interrupted", "interrupted", "pending"]


def test_unknown_run_and_bad_result(store: BaseStore) -> None:
    with pytest.raises(KeyError, match="no run"):
        store.mark_running("nope")
    with pytest.raises(KeyError, match="no run"):
        store.record_result("nope", finished())
    assert store.get_run("nope") is None
    assert store.get_curve("nope") == []
    with pytest.raises(ValueError, match="status must be one of"):
        RunResult(status="done")
    with pytest.raises(ValueError, match="needs a final_score"):
        RunResult(status="finished")


def test_threads_lose_nothing(store: BaseStore) -> None:
    def write(offset: int) -> None:
        for i in range(offset, offset + 25):
            rid = store.ensure_run(key(i)).run_id
            store.ensure_run(key(1000))  # shared key, written by all
            store.mark_running(rid)
            store.record_result(rid, finished(float(i), n=2))

    threads = [threading.Thread(target=write, args=(o,)) for o in (0, 25, 50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = store.list_runs()
    assert len(runs) == 76
    done = [r for r in runs if r.status == "finished"]
    assert sorted(r.result.final_score for r in done) == [float(i) for i in range(75)]


def _process_writer(path: str, offset: int) -> None:
    store = SQLiteStore(path)
    for i in range(offset, offset + 30):
        rid = store.ensure_run(key(i)).run_id
        store.ensure_run(key(1000))
        store.mark_running(rid)
        store.record_result(rid, finished(float(i), n=4))
    store.close()


def test_two_processes_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteStore(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(path, o)) for o in (0, 30)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = SQLiteStore(path)
    runs = store.list_runs()
    assert len(runs) == 61
    scores = sorted(r.result.final_score for r in runs if r.status == "finished")
    assert scores == [float(i) for i in range(60)]
    assert all(len(store.get_curve(r.run_id)) == 4 for r in runs if r.status == "finished")
    assert store.integrity_check() == "ok"
    store.close()


def test_get_store_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(get_store(None), InMemoryStore)
    assert isinstance(get_store("memory://"), InMemoryStore)
    mem = InMemoryStore()
    assert get_store(mem) is mem
    monkeypatch.chdir(tmp_path)
    rel = get_store("sqlite:///sub/rel.db")
    assert isinstance(rel, SQLiteStore) and (tmp_path / "sub" / "rel.db").exists()
    rel.close()
    absolute = get_store(f"sqlite:///{tmp_path / 'abs.db'}")
    assert (tmp_path / "abs.db").exists()
    absolute.close()
    with pytest.raises(ValueError, match="unknown store 'postgres://x'"):
        get_store("postgres://x")
    with pytest.raises(TypeError, match="store must be"):
        get_store(3)  # type: ignore[arg-type]


def test_sqlite_persists_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    s = SQLiteStore(path)
    rid = s.ensure_run(key(7)).run_id
    s.record_result(rid, finished(7.0))
    s.close()
    s2 = SQLiteStore(path)
    assert s2.get_run(rid).result.final_score == 7.0
    s2.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_corrupt_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    junk = b"this is not a database\n" * 100
    path.write_bytes(junk)
    with pytest.raises(StoreError, match="not a SQLite database"):
        SQLiteStore(path)
    assert path.read_bytes() == junk


def test_damaged_sqlite_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    s = SQLiteStore(path)
    for i in range(200):
        rid = s.ensure_run(key(i)).run_id
        s.record_result(rid, finished(float(i), n=5))
    s.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page + 8: 2 * page + 8 + 2000] = b"\xff" * 2000  # smash a b-tree page
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"damaged\.db"):
        SQLiteStore(path)
    assert path.read_bytes() == before


def test_foreign_database_and_directory_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match="another application"):
        SQLiteStore(foreign)
    assert foreign.read_bytes() == before
    with pytest.raises(StoreError, match="is a directory"):
        SQLiteStore(tmp_path)


@pytest.mark.parametrize(("name", "victim"), [
    ("victim#x.db", "victim"), ("q?mode=ro.db", "q"), ("pct%41.db", "pctA.db"),
    ("sp ace.db", None)])
def test_odd_file_names_open_the_file_named(tmp_path: Path, name: str, victim: str | None
                                            ) -> None:
    # Another application's database where an unencoded URI of the name would point.
    if victim is not None:
        conn = sqlite3.connect(tmp_path / victim)
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.commit()
        conn.close()
        before = (tmp_path / victim).read_bytes()
    store = SQLiteStore(tmp_path / name)
    store.ensure_run(RunKey(sweep="s", env="e", agent="a", seed=0, config_hash="h"))
    store.close()
    assert (tmp_path / name).is_file()
    if victim is not None:
        assert (tmp_path / victim).read_bytes() == before
    assert [r.key.agent for r in SQLiteStore(tmp_path / name).list_runs()] == ["a"]


def test_code_version_roundtrip(store: BaseStore) -> None:
    rid = store.ensure_run(key(8)).run_id
    store.record_result(rid, RunResult(status="finished", final_score=1.0, code_version="abc"))
    assert store.get_run(rid).result.code_version == "abc"


def test_replace_result_swaps_a_done_result_at_once(store: BaseStore) -> None:
    rid = store.ensure_run(key(10)).run_id
    other = store.ensure_run(key(11)).run_id
    for r in (rid, other):
        store.mark_running(r)
        store.record_result(r, replace(finished(1.0, n=3), code_version="v1"))
    store.replace_result(rid, replace(finished(9.0, n=2), code_version="v2",
                                      metrics={"secrecy_rate": 5.0}))
    rec = store.get_run(rid)
    assert rec is not None and rec.status == "finished" and rec.attempts == 2
    assert (rec.result.final_score, rec.result.code_version) == (9.0, "v2")
    assert rec.result.metrics == {"secrecy_rate": 5.0}
    assert [p.step for p in store.get_curve(rid)] == [0, 10]  # the old curve is gone
    assert store.get_run(other).result.code_version == "v1"  # the other run is untouched
    assert len(store.get_curve(other)) == 3
    assert not store.record_result(rid, finished(0.0))  # still done: finished is final
    store.replace_result(rid, RunResult(status="not_applicable", reason="cap", code_version="v3"))
    rec = store.get_run(rid)
    assert rec.status == "not_applicable" and rec.result.reason == "cap"
    assert store.get_curve(rid) == []


def test_replace_result_never_undoes_a_done_run(store: BaseStore) -> None:
    rid = store.ensure_run(key(12)).run_id
    store.record_result(rid, replace(finished(2.0), code_version="v1"))
    for status in ("failed", "unavailable"):
        with pytest.raises(ValueError, match=f"needs a done result.*got '{status}'"):
            store.replace_result(rid, RunResult(status=status, reason="boom"))
    rec = store.get_run(rid)
    assert rec.status == "finished" and rec.attempts == 0
    assert (rec.result.final_score, rec.result.code_version) == (2.0, "v1")
    assert len(store.get_curve(rid)) == 3
    with pytest.raises(KeyError, match="no run"):
        store.replace_result("nope", finished())
    pending = store.ensure_run(key(13)).run_id  # a run that is not done may be replaced too
    store.replace_result(pending, finished(4.0))
    assert store.get_run(pending).status == "finished"


def test_the_legacy_unavailable_status_is_never_written(store: BaseStore) -> None:
    rid = store.ensure_run(key(14)).run_id
    with pytest.raises(ValueError, match="'unavailable' is only read from stores older"):
        store.record_result(rid, RunResult(status="unavailable", reason="old"))
    assert store.get_run(rid).status == "pending" and store.get_run(rid).result is None
    with pytest.raises(ValueError, match="must be one of"):
        RunResult(status="no_such_status")


def test_rows_an_older_version_left_unavailable_are_read_and_redone(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    s = SQLiteStore(path)
    rid = s.ensure_run(key(15)).run_id
    s.close()
    conn = sqlite3.connect(path)  # what an older version wrote for an env that did not import
    conn.execute("UPDATE runs SET status='unavailable', reason='env X is not importable' "
                 "WHERE run_id=?", (rid,))
    conn.commit()
    conn.close()
    for read_only in (True, False):
        s = SQLiteStore(path, read_only=read_only)
        rec = s.get_run(rid)
        assert rec.status == "unavailable"
        assert rec.result.status == "unavailable"
        assert rec.result.reason == "env X is not importable"
        s.close()
    s = SQLiteStore(path)
    assert s.claim(rid, new_owner(), lease_s=60)  # not done: a rerun redoes it
    assert s.record_result(rid, finished(1.0))
    assert s.get_run(rid).status == "finished"
    s.close()


def test_schema_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    s = SQLiteStore(path)
    rid = s.ensure_run(key(9)).run_id
    s.record_result(rid, finished(4.0))
    s.close()
    conn = sqlite3.connect(path)  # make it look like a store written by schema 1
    for column in ("code_version", "owner", "heartbeat_at"):
        conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    conn.execute("UPDATE qdrl_meta SET value='1' WHERE key='schema'")
    conn.commit()
    conn.close()
    s = SQLiteStore(path)
    assert s.get_run(rid).result.final_score == 4.0
    assert s.get_run(rid).result.code_version is None
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM qdrl_meta").fetchone()[0] == SCHEMA_VERSION
    conn.execute("UPDATE qdrl_meta SET value='99' WHERE key='schema'")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="has schema '99'"):
        SQLiteStore(path)
    assert path.read_bytes() == before


def test_a_malformed_qdrl_table_is_refused_and_the_file_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "malformed.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE qdrl_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO qdrl_meta VALUES ('schema', '2')")
    conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    for read_only in (False, True):
        with pytest.raises(StoreError, match=r"table runs lacks the columns adapter, agent, .*"
                                             r"\(22 in all\); refusing"):
            SQLiteStore(path, read_only=read_only)
        assert path.read_bytes() == before  # not even the journal mode flipped to WAL
        assert sorted(p.name for p in tmp_path.iterdir()) == ["malformed.db"]


def test_read_only_store_reads_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    with SQLiteStore(path) as s:
        rid = s.ensure_run(key(1)).run_id
        s.record_result(rid, finished(2.0, n=3))
    before = path.read_bytes()
    ro = SQLiteStore(path, read_only=True)
    assert [r.status for r in ro.list_runs()] == ["finished"]
    assert [p.step for p in ro.get_curve(rid)] == [p.step for p in finished(2.0, n=3).curve]
    for write in (lambda: ro.ensure_run(key(2)), lambda: ro.mark_running(rid),
                  lambda: ro.mark_interrupted([rid])):
        with pytest.raises(StoreError, match="is open read-only"):
            write()
    ro.close()
    assert path.read_bytes() == before
    with pytest.raises(StoreError, match="no store at"):
        SQLiteStore(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_opens_read_only(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    with SQLiteStore(folder / "s.db") as s:
        s.ensure_run(key(1))
    folder.chmod(0o555)
    try:
        ro = SQLiteStore(folder / "s.db", read_only=True)
        assert len(ro.list_runs()) == 1
        ro.close()
    finally:
        folder.chmod(0o755)


def test_a_live_lease_keeps_a_run_to_its_owner(store: BaseStore) -> None:
    a, b = new_owner(), new_owner()
    rid = store.ensure_run(key(20)).run_id
    assert store.claim(rid, a, lease_s=3600)
    assert not store.claim(rid, b, lease_s=3600)  # a's process (this one) is alive
    assert store.claim(rid, a, lease_s=3600)  # its own owner may claim again
    assert store.get_run(rid).owner == a and store.get_run(rid).attempts == 2
    assert store.renew([rid], a) == [] and store.renew([rid], b) == [rid]
    assert store.claim(rid, b, lease_s=-1.0)  # a lapsed lease (no renewal in time) is taken
    assert store.get_run(rid).owner == b and store.renew([rid], a) == [rid]
    store.record_result(rid, finished(1.0))
    rec = store.get_run(rid)
    assert (rec.status, rec.owner, rec.heartbeat_at) == ("finished", None, None)
    assert not store.claim(rid, a, lease_s=3600)  # done
    # A redo takes only the lease: the run stays finished until its result is replaced.
    assert store.claim(rid, a, lease_s=3600, redo=True)
    assert not store.claim(rid, b, lease_s=3600, redo=True)
    assert store.get_run(rid).status == "finished"
    store.replace_result(rid, finished(2.0))
    assert store.get_run(rid).owner is None and store.claim(rid, b, lease_s=3600, redo=True)
    other = store.ensure_run(key(21)).run_id
    assert not store.claim(other, a, lease_s=3600, redo=True)  # not done: nothing to redo
    assert store.claim(other, a, lease_s=3600)
    assert store.mark_interrupted([other]) == 1 and store.get_run(other).owner is None
    with pytest.raises(KeyError):
        store.claim("nope", a, lease_s=1)


def test_the_lease_of_an_exited_process_is_taken_over_at_once(store: BaseStore) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c",
                           "from qdrl_bench.store import new_owner; print(new_owner())"],
                          capture_output=True, text=True, check=True)
    gone = proc.stdout.strip()  # the owner of a process that has exited
    rid = store.ensure_run(key(22)).run_id
    assert store.claim(rid, gone, lease_s=3600)
    assert store.claim(rid, new_owner(), lease_s=3600)
    remote = "another-host.invalid:1:abcd"  # a process elsewhere: only its heartbeat counts
    far = store.ensure_run(key(23)).run_id
    assert store.claim(far, remote, lease_s=3600)
    assert not store.claim(far, new_owner(), lease_s=3600)


def test_claims_from_many_processes_give_each_run_one_owner(tmp_path: Path) -> None:
    path = tmp_path / "claims.db"
    with SQLiteStore(path) as s:
        ids = [s.ensure_run(key(i)).run_id for i in range(40)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        taken = pool.starmap(_claim_all, [(str(path), ids)] * 4)
    assert sorted(r for t in taken for r in t) == sorted(ids)  # every run claimed exactly once
    with SQLiteStore(path) as s:
        assert all(r.attempts == 1 for r in s.list_runs())


def _claim_all(path: str, ids: list[str]) -> list[str]:
    owner = new_owner()
    with SQLiteStore(path) as s:
        return [rid for rid in ids if s.claim(rid, owner, lease_s=3600)]


def test_a_read_only_store_of_schema_2_reads(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with SQLiteStore(path) as s:
        rid = s.ensure_run(key(3)).run_id
        s.record_result(rid, finished(3.0))
    conn = sqlite3.connect(path)
    for column in ("owner", "heartbeat_at"):
        conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    conn.execute("UPDATE qdrl_meta SET value='2' WHERE key='schema'")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with SQLiteStore(path, read_only=True) as ro:
        assert ro.get_run(rid).result.final_score == 3.0 and ro.get_run(rid).owner is None
    assert path.read_bytes() == before
