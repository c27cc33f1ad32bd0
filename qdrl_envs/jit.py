"""Numba compilation for the environment models that a NumPy batch axis alone cannot make fast.

Some models (twin migration, semantic slicing) take dozens of small array operations per slot;
with one instance NumPy's per-call overhead dominates and a single env would crawl. Their cores
run a compiled loop over the instances of the batch instead, calling *row functions* that model
one instance. The single env (one row) and its vector twin (``N`` rows) run the very same
compiled code, so the twin still reproduces the single env bit for bit.

Two decorators:

* :func:`jitable` — for the shared maths (:mod:`qdrl_envs.radio`, :mod:`qdrl_envs.traffic`) and
  the row functions: called from Python the function runs unchanged on NumPy arrays; called
  from a :func:`kernel` it is compiled and inlined into it (numba's ``register_jitable``). The
  maths is written once and serves both.
* :func:`kernel` — a compiled entry point, called from Python with NumPy arrays
  (``numba.njit``: nopython, the GIL released, NumPy's floating-point semantics with
  ``error_model="numpy"`` and no fast-math).

**Compilation cache.** A kernel compiles on its first call (seconds), then is cached on disk so
later processes load it in milliseconds. numba keys its cache on the kernel's own source file
only, so an edit to a :func:`jitable` helper in another module would leave a stale kernel in
use; the cache here therefore lives in a directory named after a digest of every source file
of :mod:`qdrl_envs`, and any edit to the package starts a fresh one. The directory is
``$QDRL_NUMBA_CACHE_DIR`` or ``$XDG_CACHE_HOME/qdrl/numba`` (default ``~/.cache/qdrl/numba``);
``QDRL_NUMBA_CACHE_DIR=`` (empty) or an unwritable directory compiles in every process instead.
Old digests' directories are not pruned (a few MB each).

**Named packs and rows.** Kernels take their constants as :class:`typing.NamedTuple` packs
and index blocks of state by row maps (the template in :mod:`qdrl_envs.core`): :func:`plain`
gives a pack as the plain tuple a kernel is called with, :func:`row_map` the row numbers.

``NUMBA_DISABLE_JIT=1`` runs every kernel as plain Python: slow, but steppable in a debugger.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numba
from numba.extending import register_jitable

__all__ = ["cache_dir", "jitable", "kernel", "plain", "row_map"]

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R", bound=tuple)

_PACKAGE_DIR = Path(__file__).resolve().parent


def jitable(fn: F) -> F:
    """Mark ``fn`` as compilable into kernels (inlined there); from Python it runs unchanged.

    ``fn`` must use only what numba compiles in nopython mode (NumPy ufuncs, arithmetic,
    loops, ``np.searchsorted``, ...) and call only other :func:`jitable` functions.
    """
    return register_jitable(inline="always")(fn)


@functools.cache
def cache_dir() -> Path | None:
    """Where compiled kernels are cached for the current sources, or ``None`` (no caching).

    ``<base>/<digest>``: ``<base>`` from ``$QDRL_NUMBA_CACHE_DIR`` (empty disables caching) or
    ``$XDG_CACHE_HOME/qdrl/numba``; ``<digest>`` a SHA-256 prefix over the names and bytes of
    every ``.py`` file of :mod:`qdrl_envs` and numba's version. ``None`` when caching is off
    or the directory cannot be created and written.
    """
    base = os.environ.get("QDRL_NUMBA_CACHE_DIR")
    if base is None:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(xdg) / "qdrl" / "numba")
    if not base:
        return None
    digest = hashlib.sha256(numba.__version__.encode())
    for path in sorted(_PACKAGE_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(_PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    target = Path(base) / digest.hexdigest()[:16]
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError:
        return None
    return target


def kernel(fn: F) -> F:
    """Compile ``fn`` as a nopython kernel (on first call; cached on disk, see the module)."""
    options: dict[str, Any] = {"nogil": True, "error_model": "numpy"}
    where = cache_dir()
    if where is None:
        return numba.njit(**options)(fn)
    # numba's user-provided cache locator reads config.CACHE_DIR when the dispatcher is
    # created; point it at the digest directory for this one decoration only.
    saved = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(where)
    try:
        return numba.njit(cache=True, **options)(fn)
    finally:
        numba.config.CACHE_DIR = saved


def plain(pack: tuple) -> tuple:
    """``pack`` (a :class:`typing.NamedTuple`, nested ones too) as plain tuples, the same values.

    What a kernel is called with: numba's dispatcher types a plain tuple in its C fast path
    but a named one in Python, several microseconds a call. The kernel re-wraps it as its
    first line (``model = _Model(*model)``), which compiles to nothing.
    """
    return tuple(plain(v) if isinstance(v, tuple) else v for v in pack)


def row_map(cls: type[R]) -> R:
    """The row map ``cls(0, 1, ..., n - 1)`` of a :class:`typing.NamedTuple` of ``n`` int fields.

    Names the rows of an array block: ``_STAT = row_map(_StatRows)``, then ``stats[_STAT.reward,
    m]`` in a kernel (numba freezes a global tuple: the index is a compile-time constant) or in
    Python, and ``len(_STAT)`` rows.
    """
    return cls(*range(len(cls._fields)))  # type: ignore[attr-defined]
