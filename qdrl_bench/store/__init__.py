"""Where sweep results live: an abstract store with a written contract, and its backends.

Pick a backend with :func:`get_store`::

    store = get_store(None)                          # in memory (tests, notebooks)
    store = get_store("sqlite:///results/quick.db")  # one SQLite file (the default for sweeps)
    store = get_store(store)                         # an existing store passes through

The package holds the contract (:mod:`qdrl_bench.store.contract`: :class:`BaseStore`, the run
key, record and result types, the statuses, :class:`StoreError`) and one module per backend
(:mod:`~qdrl_bench.store.memory`, :mod:`~qdrl_bench.store.sqlite`); every name is importable
from ``qdrl_bench.store`` itself.
"""

from __future__ import annotations

import os

from qdrl_bench.store.contract import (
    DONE_STATUSES,
    FAILED,
    FINISHED,
    INTERRUPTED,
    LEGACY_STATUSES,
    NOT_APPLICABLE,
    PENDING,
    RESULT_STATUSES,
    RUNNING,
    STATUSES,
    UNAVAILABLE,
    BaseStore,
    ConditionResult,
    EvalPoint,
    RunKey,
    RunRecord,
    RunResult,
    StoreError,
    lease_is_live,
    new_owner,
)
from qdrl_bench.store.memory import InMemoryStore
from qdrl_bench.store.sqlite import SCHEMA_VERSION, SQLiteStore

__all__ = [
    "DONE_STATUSES",
    "FAILED",
    "FINISHED",
    "INTERRUPTED",
    "LEGACY_STATUSES",
    "NOT_APPLICABLE",
    "PENDING",
    "RESULT_STATUSES",
    "RUNNING",
    "SCHEMA_VERSION",
    "STATUSES",
    "UNAVAILABLE",
    "BaseStore",
    "ConditionResult",
    "EvalPoint",
    "InMemoryStore",
    "RunKey",
    "RunRecord",
    "RunResult",
    "SQLiteStore",
    "StoreError",
    "get_store",
    "lease_is_live",
    "new_owner",
]

_SCHEMA_VERSION = SCHEMA_VERSION  # the name this module had before it became a package


def get_store(store: str | os.PathLike[str] | BaseStore | None) -> BaseStore:
    """Return a store from ``None`` (in memory), a URL / path, or a store (passed through).

    Args:
        store: ``None``; ``"memory://"``; ``"sqlite:///relative/path.db"`` (three slashes:
            relative to the working directory) or ``"sqlite:////absolute/path.db"``; a plain
            path ending in ``.db`` / ``.sqlite``; or a :class:`BaseStore`.

    Returns:
        The store.

    Raises:
        ValueError: If the URL's scheme is unknown (the message lists the accepted forms).
        StoreError: If a SQLite store cannot be opened (see :class:`SQLiteStore`).
    """
    if store is None:
        return InMemoryStore()
    if isinstance(store, BaseStore):
        return store
    if isinstance(store, os.PathLike):
        return SQLiteStore(store)
    if not isinstance(store, str):
        raise TypeError(f"store must be None, a URL string, a path or a BaseStore, got "
                        f"{type(store).__name__}")
    if store in ("memory://", ":memory:"):
        return InMemoryStore()
    if store.startswith("sqlite:///"):
        path = store[len("sqlite:///"):]
        if not path:
            raise ValueError(f"store URL {store!r} names no file")
        return SQLiteStore(path)
    if "://" not in store and store.endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteStore(store)
    raise ValueError(f"unknown store {store!r}; use None, 'memory://', 'sqlite:///rel/path.db', "
                     "'sqlite:////abs/path.db' or a path ending in .db")
