"""Which code produced a result: the code version fingerprint, and stale results.

Every result carries the :func:`code_version` of the process that produced it, so a report can
tell when the runs it pools were produced by different code, and ``qdrl-bench run --rerun
stale`` can redo the results of another version (a plain rerun skips finished runs even if the
code changed since).
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from pathlib import Path

from qdrl_bench.store import DONE_STATUSES, RunRecord

__all__ = ["CODE_PACKAGES", "code_version", "is_stale"]

CODE_PACKAGES = ("qdrl_envs", "qdrl_agents", "qdrl_bench")
"""The packages whose source the fingerprint covers."""


@cache
def code_version() -> str:
    """Fingerprint (12 hex digits) of the source of ``qdrl_envs``, ``qdrl_agents``, ``qdrl_bench``.

    Computed once per process from the ``.py`` files on disk (``qdrl_bench/perf`` excluded) and
    the registry's hyperparameter files (``qdrl_bench/hyperparams/*.yml``): new defaults make
    results stale too.
    """
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted([*root.rglob("*.py"), *root.glob("hyperparams/*.yml")]):
            rel = path.relative_to(root).as_posix()
            if rel.startswith("perf/"):
                continue
            digest.update(f"{package}/{rel}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def is_stale(record: RunRecord, version: str) -> bool:
    """Whether a done run holds a result of another code version than ``version``.

    A result without a recorded version (a store of schema 1) counts as stale; runs that are
    not done are never stale (a rerun redoes them anyway).
    """
    if record.status not in DONE_STATUSES:
        return False
    return record.result is None or record.result.code_version != version
