"""A full disk (a file-size limit, which fails writes as ENOSPC does) loses nothing.

The CLI runs in a subprocess under ``RLIMIT_FSIZE``: a write past the limit fails with
``EFBIG``, as a write to a full disk fails with ``ENOSPC``. Each command must stop with one line
on stderr and rc 2, leave no truncated file, and leave the store such that a rerun without the
limit completes the sweep.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.qdrl_bench.conftest import CARTPOLE_SWEEP, REPO, cli

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE semantics")

SWEEP = (CARTPOLE_SWEEP.replace("{name}", "full").replace("{seeds}", "4")
         + "  - name: ppo\n    kwargs: {{n_steps: 32, batch_size: 32, n_epochs: 1}}\n")

_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from qdrl_bench.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", _LIMITED, str(limit), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


def _statuses(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT status FROM runs")]
    finally:
        conn.close()


def test_a_full_disk_during_a_sweep_stops_it_and_a_rerun_completes_it(tmp_path: Path) -> None:
    db, sweep = tmp_path / "full.db", tmp_path / "full.yaml"
    sweep.write_text(SWEEP.format(db=db))
    proc = _limited(300_000, "run", str(sweep), "--quiet", "--workers", "1")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("qdrl-bench run: error: ") and proc.stderr.count("\n") == 1
    assert f"store {db}: write failed" in proc.stderr, proc.stderr
    before = _statuses(db)
    assert before.count("finished") < 12 and "running" not in before, before
    again = cli("run", str(sweep), "--quiet", "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert _statuses(db) == ["finished"] * 12


def test_a_full_disk_during_a_report_leaves_no_truncated_file(tmp_path: Path) -> None:
    db, sweep = tmp_path / "rep.db", tmp_path / "rep.yaml"
    sweep.write_text(SWEEP.format(db=db))
    assert cli("run", str(sweep), "--quiet", "--workers", "1").returncode == 0
    out = tmp_path / "report"
    # Above the store's 32 KB shared-memory file, below the HTML page (its figures inlined).
    proc = _limited(40_000, "report", str(db), "--out", str(out))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("qdrl-bench report: error: ") and proc.stderr.count("\n") == 1
    assert "File too large" in proc.stderr, proc.stderr
    left = sorted(p.name for p in out.iterdir())
    assert not any(name.endswith(".tmp") for name in left), left
    for png in out.glob("*.png"):  # what was written is whole
        assert png.read_bytes().endswith(b"IEND\xaeB`\x82"), png
    assert "report.html" not in left
    full = cli("report", str(db), "--out", str(out))
    assert full.returncode == 0 and (out / "report.html").is_file()
