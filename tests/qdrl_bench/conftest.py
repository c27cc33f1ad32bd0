from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CARTPOLE_SWEEP = """\
name: {name}
store: sqlite:///{db}
seeds: {seeds}
timesteps: 64
eval: {{every: 64, episodes: 2}}
envs:
  - id: CartPole-v1
    max_episode_steps: 20
agents:
  - random
  - name: a2c
    kwargs: {{n_steps: 8}}
"""
"""A sweep of a few cheap CartPole runs (``random``, a tiny ``a2c``) per seed, to ``.format``."""


def cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m qdrl_bench.cli ARGS`` in a subprocess (one torch thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "qdrl_bench.cli", *args], cwd=cwd or REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def _default_sigint() -> None:
    # A test suite started in the background (``make test &``, some CI runners) inherits SIGINT
    # ignored, and so would the CLI: Python installs its KeyboardInterrupt handler only where
    # SIGINT is not ignored at startup, and the Ctrl-C test would see the sweep finish (rc 0).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_cli(*args: str) -> subprocess.Popen:
    """Start ``python -m qdrl_bench.cli ARGS`` with SIGINT at its default, as at a terminal."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "qdrl_bench.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


@pytest.fixture
def write_sweep(tmp_path: Path):
    def write(text: str, name: str = "sweep.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def proc_state(pid: int) -> str | None:
    """The kernel's state letter for ``pid`` (the state field of /proc/pid/stat); None: gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _stopped(pid: int) -> bool:
    """Whether the kernel reports ``pid`` stopped (or gone)."""
    return proc_state(pid) in (None, "T", "t", "Z", "X")


def stop_when(proc: subprocess.Popen, reached: Callable[[], bool], what: str,
              timeout: float = 120) -> None:
    """Return with ``proc`` frozen (SIGSTOP) at the first moment ``reached()`` holds.

    A check that cannot read the store (``sqlite3.OperationalError``: frozen while it held a WAL
    lock) counts as not reached. Each check freezes the process first and reads its state only
    once the kernel reports it stopped, so what ``reached`` saw is still true when the caller
    signals it: the test cannot race a process that keeps working while the test is descheduled.
    The caller sends its signal and then ``SIGCONT`` (SIGKILL needs none).

    Raises:
        AssertionError: If the process exits first, or ``timeout`` passes (naming ``what``).
    """
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGSTOP)
        while not _stopped(proc.pid):
            time.sleep(0.001)
        try:
            ok = reached()
        except sqlite3.OperationalError:  # frozen mid-write, the store can't be read now
            ok = False
        if ok:
            return
        os.kill(proc.pid, signal.SIGCONT)
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.05)
