"""Physics written once, run single or batched.

Every qdrl environment is built from three pieces:

* a :class:`BatchedCore` — the model of the environment on ``N`` independent instances, its
  state held in NumPy arrays with a leading axis of length ``N``;
* :class:`CoreEnv` — the single :class:`gymnasium.Env`, which drives a core with ``N = 1``;
* :class:`CoreVectorEnv` — the NumPy-batched :class:`gymnasium.vector.VectorEnv` twin registered
  as ``vector_entry_point``, which drives the same core with ``N = num_envs``.

Because both run the same core, the batched twin cannot drift from the single environment.

Randomness. Each instance owns its own ``np.random.Generator``; the single env's is its
``self.np_random``. The vector env seeds instance ``i`` exactly as Gymnasium's
``SyncVectorEnv`` would (``seed + i``), and resets finished instances in the next step
(``AutoresetMode.NEXT_STEP``, Gymnasium's default) or in the same step (``SAME_STEP``, the
final observation in ``info["final_obs"]``), so every instance consumes its generator in the
same order as a single env that calls ``reset()`` at the end of each episode: for the same
seeds and actions, sub-env ``i`` reproduces ``gym.make(id)`` reset with ``seed + i``. Cores
draw through :func:`draw`, which calls each instance's generator once per draw and stacks the
results, or through :class:`Uniforms`, which draws the same numbers in
a compiled loop (cores whose model runs in :mod:`qdrl_envs.jit` kernels).

A core's state may live in NumPy arrays updated by NumPy expressions (the secrecy env) or by
compiled kernels looping over instances (the other four, where a slot is dozens of tiny
operations). Either way ``reset``, ``step`` and ``observe`` take and return NumPy arrays with the
leading instance axis, and the arrays they hand out are never written again.

Writing a core: the template
----------------------------

Every core, compiled or NumPy, names its constants and rows the same way (the five
single-agent envs of this package are the examples; copy the one closest to a new model):

* **Constants** are fixed for the core's life, worked out from the config once in
  ``__init__``, and held in up to three packs, each a :class:`typing.NamedTuple` declared
  beside the model, each field that is not a config field documented:

  - ``_Model`` — what a step computes from state and action: dynamics, costs, the reward's
    weights (a nested pack is a field: ``_Model.queues`` holds a
    :class:`~qdrl_envs.traffic.FifoParams`);
  - ``_World`` — what is drawn: geometry, arrival and mobility laws
    (:class:`~qdrl_envs.traffic.InverseCdf`), fading;
  - ``_View`` — the observation's scaling.

  A core keeps them as ``self._model``, ``self._world``, ``self._view`` (those it needs).
  A field is named after the config field when it is one (``carrier_hz``) and after what it
  is otherwise, unit last (``snr_per_gain``, ``inv_capacity``, ``max_step_m``). ``slot``
  always means a time slot (an index, or ``_draw_slot``, which draws the next one), never a
  pack.
* **Kernels** (:mod:`qdrl_envs.jit`) take the packs first, in the order model, world, view,
  then the arrays. numba's dispatcher types a plain tuple in C but a NamedTuple in Python
  (numba 0.68, a 9-field pack holding two nested ones: 4.4-4.9 us a call as NamedTuples,
  1.0-1.7 us as plain tuples, re-wrapped in the kernel or not), so a compiled core stores
  each pack as :func:`~qdrl_envs.jit.plain` of it, the same values as plain tuples, and every
  kernel re-wraps its packs as its first lines::

      self._world = plain(_World(n_edges=e, cell_radius_m=..., ...))   # in __init__

      @kernel
      def _step_kernel(model, world, view, actions, ...):
          model = _Model(*model)     # compiles to nothing
          world = _World(*world)
          ...
          _place_user(world, ...)    # row functions read fields by name: world.cell_radius_m

  A nested pack is re-wrapped where it is read (``FifoParams(*model.queues)``;
  :func:`~qdrl_envs.traffic.inverse_cdf_draw` takes an ``InverseCdf`` either way). A NumPy
  core (the secrecy env) keeps the NamedTuples themselves and reads them by name
  (``self._view.obs_a``): it has no kernel boundary to cross.
* **State** lives in arrays with the instance axis first, one attribute each
  (:meth:`BatchedCore.state_arrays` finds them). Where rows of one shape share a block so
  that an instance's state lies together (``DTSyncAoICore._f``, ``(N, rows, M)``), and for
  the rows of the figures a kernel writes (``stats[row, m]``), the rows are named by a *row
  map*: a NamedTuple of int fields, ``_F = row_map(_FloatRows)`` (:func:`~qdrl_envs.jit.row_map`
  numbers them ``0..n-1``). Kernels index ``f[n, _F.pending, i]`` (numba freezes the global:
  a compile-time constant, no cost), allocations take ``len(_F)`` rows, and Python reads
  ``stats[_STAT.reward]``; a state row that is public is a named view, ``gen =
  row_view("_f", _F.gen, doc)`` (:func:`row_view`). No row is ever a bare integer.
"""

from __future__ import annotations

import abc
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import numba
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from qdrl_envs.config import EnvConfig, check_int, resolve_config
from qdrl_envs.jit import kernel
from qdrl_envs.validation import check_action

ConfigT = TypeVar("ConfigT", bound=EnvConfig)


def row_view(block: str, row: int, doc: str) -> property:
    """A property naming one row of a core's state block: ``getattr(core, block)[:, row]``.

    A property, not a view stored at construction: ``copy.deepcopy`` copies arrays one by one,
    so a stored view would go on showing the original's block (stale reset info and renders).

    Args:
        block: Attribute holding the block, ``(N, rows, ...)``.
        row: The row, from the block's row map (``_F.gen``).
        doc: The property's docstring.
    """
    return property(lambda self: getattr(self, block)[:, row], doc=doc)


def draw(rngs: Sequence[np.random.Generator],
         fn: Callable[[np.random.Generator], np.ndarray]) -> np.ndarray:
    """Draw one block of random numbers per instance and stack them on a leading axis.

    Args:
        rngs: One generator per instance.
        fn: Called once with each generator, e.g. ``lambda g: g.standard_normal((M, K))``.

    Returns:
        Array of shape ``(len(rngs), *block_shape)``.
    """
    if len(rngs) == 1:
        return np.asarray(fn(rngs[0]))[None]
    return np.stack([np.asarray(fn(g)) for g in rngs])


@kernel
def _fill_draws(gens, rows, n_uniform, out):  # pragma: no cover - compiled
    for j in range(rows.shape[0]):
        g = gens[rows[j]]
        for k in range(n_uniform):
            out[j, k] = g.random()
        for k in range(n_uniform, out.shape[1]):
            out[j, k] = g.standard_exponential()


class Uniforms:
    """Each instance's uniforms, drawn from its own generator: ``take(rngs, idx, width)``.

    ``take`` returns exactly what ``np.stack([g.random(width) for g in rngs])`` would, and
    leaves every generator in the same state; with ``exponential=k`` the last ``k`` columns are
    ``g.standard_exponential(k)`` drawn after the uniforms instead (an ``Exp(1)`` fading power
    without a logarithm per draw). With one instance it calls the generator; with several, a
    compiled loop draws from the generators directly (numba's ``Generator`` support
    reproduces NumPy's streams, which a test checks), removing the Python call per instance
    that otherwise bounds a cheap vector env (about 0.7 us each: at 1024 instances the calls
    alone would cost more than the model). The compiled loop needs the generators as a numba
    typed list; it is kept for all ``N`` instances and rebuilt only when one of them is
    replaced (a seeded reset), about 50 us per instance.

    Args:
        num_envs: Number of instances ``N``.
    """

    def __init__(self, num_envs: int) -> None:
        check_int("num_envs", num_envs, low=1)
        self.num_envs = num_envs
        self._py: list[np.random.Generator | None] = [None] * num_envs
        self._typed: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"num_envs": self.num_envs}  # the generators belong to the env, not to this

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["num_envs"])  # type: ignore[misc]

    def take(self, rngs: Sequence[np.random.Generator], idx: np.ndarray | None,
             width: int, exponential: int = 0) -> np.ndarray:
        """The next ``width`` draws of each instance in ``idx`` (all when ``None``).

        Args:
            rngs: The generators of those instances (``rngs[j]`` belongs to ``idx[j]``).
            idx: Instance indices, or ``None`` for ``0..N-1``.
            width: Draws per instance.
            exponential: How many of the ``width`` (the last ones) are standard exponentials;
                the others are uniforms in ``[0, 1)``.

        Returns:
            Shape ``(len(rngs), width)``.
        """
        n_uniform = width - exponential
        if len(rngs) == 1:
            g = rngs[0]
            if not exponential:
                return g.random(width)[None]
            out = np.empty((1, width))
            g.random(out=out[0, :n_uniform])
            g.standard_exponential(out=out[0, n_uniform:])
            return out
        rows = np.arange(len(rngs)) if idx is None else np.asarray(idx, dtype=np.int64)
        py = self._py
        known = py if idx is None else [py[i] for i in rows.tolist()]
        if self._typed is None or not all(map(operator.is_, rngs, known)):
            for g, i in zip(rngs, rows.tolist(), strict=True):
                py[i] = g
            # Instances never seen yet hold a stand-in until their own generator arrives.
            self._typed = numba.typed.List([rngs[0] if g is None else g for g in py])
        out = np.empty((len(rngs), width))
        _fill_draws(self._typed, rows, n_uniform, out)
        return out


@dataclass
class StepResult:
    """What :meth:`BatchedCore.step` returns for the whole batch.

    Attributes:
        reward: ``(N,)`` float64 rewards.
        terminated: ``(N,)`` bool, genuine terminal states only (time limits truncate).
        info: Metric name -> array with leading axis ``N`` (physical units, see each env).
    """

    reward: np.ndarray
    terminated: np.ndarray
    info: dict[str, np.ndarray]


class BatchedCore(abc.ABC, Generic[ConfigT]):
    """The model of one environment on ``num_envs`` independent instances.

    Subclasses set ``single_observation_space`` and ``single_action_space`` in ``__init__`` and
    implement :meth:`reset`, :meth:`step` and :meth:`observe` on arrays with a leading batch axis,
    and draw one instance in :meth:`render_ansi` and :meth:`render_rgb_array`.

    Args:
        config: The validated environment config.
        num_envs: Number of instances ``N``.

    Attributes:
        rendering: Set by the env when it has a render mode: a core may then keep what only a
            picture needs (a trajectory).
        not_state: Attributes :meth:`state_arrays` must not walk (rendering history, views
            selected again from the state on a restore).
    """

    single_observation_space: spaces.Space
    single_action_space: spaces.Space
    not_state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ConfigT, num_envs: int) -> None:
        self.config = config
        self.num_envs = num_envs
        self.rendering = False

    @abc.abstractmethod
    def reset(self, rngs: Sequence[np.random.Generator], idx: np.ndarray,
              options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Start new episodes for the instances ``idx`` (``rngs[j]`` belongs to ``idx[j]``).

        Returns:
            Reset info: metric name -> array with leading axis ``len(idx)`` (may be empty).
        """

    @abc.abstractmethod
    def step(self, actions: np.ndarray, rngs: Sequence[np.random.Generator]) -> StepResult:
        """Advance every instance one step with validated ``actions`` (leading axis ``N``)."""

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The arrays holding the instances' state, each with the instance axis first.

        By default every writeable NumPy array whose first axis has length ``num_envs`` found
        among the core's attributes, in tuples and lists of them, and in the attributes of the
        qdrl objects it holds (queues, arrival processes), keyed by its path (constants of that
        shape, and several views of one array, are harmless to include; read-only arrays are
        constants and left out: :meth:`restore_rows` could not write them). A core keeping
        state elsewhere overrides this. :meth:`save_rows` / :meth:`restore_rows` rely on it.
        """
        found: dict[str, np.ndarray] = {}
        seen: set[int] = set()

        def walk(value: Any, path: str) -> None:
            if id(value) in seen:
                return
            seen.add(id(value))
            if isinstance(value, np.ndarray):
                if value.ndim and value.shape[0] == self.num_envs and value.flags.writeable:
                    found[path] = value
            elif isinstance(value, (tuple, list)):
                for i, item in enumerate(value):
                    walk(item, f"{path}[{i}]")
            elif (type(value).__module__.startswith("qdrl_envs") and hasattr(value, "__dict__")
                  and not isinstance(value, Uniforms)):
                for key, item in vars(value).items():
                    walk(item, f"{path}.{key}")

        for key, value in vars(self).items():
            if key not in self.not_state:
                walk(value, key)
        return found

    def save_rows(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Copies of the state of instances ``idx``, for :meth:`restore_rows`."""
        return {k: v[idx].copy() for k, v in self.state_arrays().items()}

    def restore_rows(self, idx: np.ndarray, saved: dict[str, np.ndarray]) -> None:
        """Put instances ``idx`` back in the state :meth:`save_rows` copied, in place."""
        arrays = self.state_arrays()
        for k, v in saved.items():
            arrays[k][idx] = v

    @abc.abstractmethod
    def observe(self) -> np.ndarray:
        """Return the float32 observations of all instances, shape ``(N, *obs_shape)``.

        A new array after every ``reset`` and ``step`` (the single env hands its row out as
        is), which later calls never write into.
        """

    def render_ansi(self, row: int = 0) -> str:
        """Instance ``row`` as text (by default its observation)."""
        return f"{type(self).__name__} obs={np.array2string(self.observe()[row], precision=3)}"

    def render_rgb_array(self, row: int = 0) -> np.ndarray:
        """Instance ``row`` as a ``uint8`` ``(H, W, 3)`` picture."""
        raise NotImplementedError(f"{type(self).__name__} has no rgb_array rendering")


def with_masks(info: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """Lay out a batched info the way Gymnasium's vector envs do: each key with its ``_key`` mask.

    Args:
        info: Metric name -> array with leading axis ``N`` (nested dicts allowed).
        mask: ``(N,)`` bool, the rows that have these entries.

    Returns:
        A new dict: every key as given (nested dicts recursively laid out), and beside it
        ``_key``, a copy of ``mask``.
    """
    out: dict[str, Any] = {}
    for key, value in info.items():
        out[key] = with_masks(value, mask) if isinstance(value, dict) else value
        out[f"_{key}"] = mask.copy()
    return out


def merge_rows(info: dict[str, Any], rows_info: dict[str, Any], idx: np.ndarray,
               rows: np.ndarray) -> None:
    """Make rows ``idx`` of a masked vector info hold ``rows_info`` and nothing else, in place.

    What Gymnasium's ``SAME_STEP`` autoreset shows for a sub-env that was just reset: the reset
    info of its new episode, with every other key masked off for that row (the step's info is
    in ``final_info``); a key then masked off in every row is removed.

    Args:
        info: A vector info laid out by :func:`with_masks` (keys and ``_key`` masks).
        rows_info: Name -> array with leading axis ``len(idx)`` (nested dicts allowed).
        idx: The rows, as indices.
        rows: The same rows as an ``(N,)`` bool mask.
    """
    n = rows.shape[0]
    for key in [k for k in info if not k.startswith("_") and k not in rows_info
                and k not in ("final_obs", "final_info")]:
        mask = info[f"_{key}"]
        mask[rows] = False
        if isinstance(info[key], dict):
            merge_rows(info[key], {}, idx, rows)
    for key, value in rows_info.items():
        mask = info.get(f"_{key}")
        if mask is None:
            mask = np.zeros(n, dtype=bool)
        if isinstance(value, dict):
            sub = info.get(key)
            if not isinstance(sub, dict):
                sub = {}
            merge_rows(sub, value, idx, rows)
            info[key] = sub
        else:
            value = np.asarray(value)
            old = info.get(key)
            if old is None or not isinstance(old, np.ndarray) or old.shape[1:] != value.shape[1:]:
                old = np.zeros((n, *value.shape[1:]), dtype=value.dtype)
            else:
                old = old.copy()  # the step's array may be handed out as final_info too
            old[idx] = value
            info[key] = old
        mask[rows] = True
        info[f"_{key}"] = mask
    # A key no row has any more is absent, as SyncVectorEnv builds its info from the rows'.
    for key in [k for k in info if not k.startswith("_")
                and k not in ("final_obs", "final_info")]:
        mask = info.get(f"_{key}")
        if mask is not None and not mask.any():
            del info[key], info[f"_{key}"]


class CoreEnv(gym.Env, Generic[ConfigT]):
    """A single Gymnasium environment driven by a :class:`BatchedCore` with one instance.

    Subclasses set ``config_cls`` and ``core_cls`` and write the manual in their docstring;
    the core draws (:meth:`BatchedCore.render_ansi`, :meth:`BatchedCore.render_rgb_array`).

    Args:
        config: A config instance or mapping (defaults when ``None``).
        render_mode: ``None``, ``"ansi"`` or ``"rgb_array"``.
        **kwargs: Config field overrides (what ``gym.make(id, **kwargs)`` forwards).

    Raises:
        ValueError: On unknown config fields, invalid values or an unknown render mode.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    config_cls: type[ConfigT]
    core_cls: type[BatchedCore[ConfigT]]

    def __init__(self, config: ConfigT | dict[str, Any] | None = None,
                 render_mode: str | None = None, **kwargs: Any) -> None:
        self.config: ConfigT = resolve_config(self.config_cls, config, kwargs)
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.core: BatchedCore[ConfigT] = self.core_cls(self.config, 1)
        self.core.rendering = render_mode is not None
        self.observation_space = self.core.single_observation_space
        self.action_space = self.core.single_action_space
        self._needs_reset = True

    @staticmethod
    def _unbatch(info: dict[str, np.ndarray]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in info.items():
            if isinstance(value, np.ndarray):  # the common case, kept cheap
                out[key] = value.item(0) if value.ndim == 1 else value[0]
            elif isinstance(value, dict):
                out[key] = CoreEnv._unbatch(value)
            else:
                item = np.asarray(value)[0]
                out[key] = item.item() if item.ndim == 0 else item
        return out

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` makes it fully reproducible. See the class manual."""
        super().reset(seed=seed)
        info = self.core.reset([self.np_random], np.array([0]), options)
        self._needs_reset = False
        return self.core.observe()[0], self._unbatch(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` for one slot. Raises ``ValueError`` on an invalid action."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        act = check_action(self.action_space, action)
        result = self.core.step(act[None], [self.np_random])
        obs = self.core.observe()[0]
        return (obs, float(result.reward[0]), bool(result.terminated[0]), False,
                self._unbatch(result.info))

    def render(self) -> str | np.ndarray | None:
        """Render according to ``render_mode`` (``None`` renders nothing)."""
        return _render(self.core, self.render_mode, 0)


class CoreVectorEnv(VectorEnv, Generic[ConfigT]):
    """The NumPy-batched twin of a :class:`CoreEnv`: one core with ``num_envs`` instances.

    It follows Gymnasium's ``SyncVectorEnv`` over ``gym.make(id)`` row for row (observations,
    rewards, dones and ``info``, for the same seeds and actions), in either autoreset mode:

    * ``AutoresetMode.NEXT_STEP`` (Gymnasium's default): a row that terminated or truncated is
      reset by the next ``step``, which ignores that row's action and returns the new
      episode's first observation, reward 0, not done, and its reset info.
    * ``AutoresetMode.SAME_STEP`` (what SB3 and :class:`qdrl_agents.VectorEnvAdapter` need): a
      finished row is reset within the same ``step``; ``info["final_obs"][i]`` (an object
      array, ``None`` elsewhere) and ``info["final_info"]`` hold the episode's last observation
      and step info (masked by ``_final_obs`` / ``_final_info``), and the top-level keys of
      that row hold the new episode's reset info only.

    The mode is chosen with ``gym.make_vec(id, n, autoreset_mode=...)`` and declared in
    ``metadata["autoreset_mode"]``. Every ``info`` key comes with its ``_key`` mask of the rows
    that have it. ``reset`` takes ``seed`` as an int (row ``i`` gets ``seed + i``), a list or
    tuple (``None`` entries keep that row's generator) and ``options={"reset_mask": mask}``
    (only those rows reset). ``np_random_seed`` is the tuple of each row's seed (``-1`` for a
    row seeded from entropy), as ``SyncVectorEnv`` reports it.

    The rows share one core and one config, so ``get_attr`` / ``call`` return a tuple with one
    entry per row of what the single env would give (``observation_space`` and
    ``action_space`` are the single spaces, ``np_random`` / ``np_random_seed`` per row, config
    fields and other attributes the twin's own), and ``set_attr`` sets an attribute of the
    twin when every row gets the same value (config fields are refused: build a new env).
    With a ``render_mode`` (``"ansi"`` or ``"rgb_array"``), ``render()`` returns one frame per
    row, each what the single env in that row's state renders (``SyncVectorEnv``'s tuple);
    without one, ``(None,) * num_envs``.

    Args:
        num_envs: Number of sub-environments.
        max_episode_steps: Truncation horizon (``gym.make_vec`` passes the registered one);
            ``None`` never truncates.
        config: A config instance or mapping; ``**kwargs`` override its fields.
        render_mode: ``None``, ``"ansi"`` or ``"rgb_array"``.
        autoreset_mode: ``NEXT_STEP`` (default) or ``SAME_STEP`` (an ``AutoresetMode`` or its
            value).

    Raises:
        ValueError: On invalid ``num_envs``, ``max_episode_steps``, ``autoreset_mode`` or
            config, or a batch whose state would not fit in the memory available.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.NEXT_STEP,
                                          "render_modes": ["ansi", "rgb_array"],
                                          "render_fps": 4}
    config_cls: type[ConfigT]
    core_cls: type[BatchedCore[ConfigT]]

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None,
                 config: ConfigT | dict[str, Any] | None = None,
                 render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 **kwargs: Any) -> None:
        check_int("num_envs", num_envs, low=1)
        if max_episode_steps is not None:
            check_int("max_episode_steps", max_episode_steps, low=1)
        check_render_mode(render_mode, CoreEnv.metadata["render_modes"])
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            mode = None
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode must be AutoresetMode.NEXT_STEP or SAME_STEP, "
                             f"got {autoreset_mode!r}")
        self.autoreset_mode = mode
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.config: ConfigT = resolve_config(self.config_cls, config, kwargs)
        self._check_memory(num_envs)
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.core: BatchedCore[ConfigT] = self.core_cls(self.config, num_envs)
        self.core.rendering = render_mode is not None
        self.single_observation_space = self.core.single_observation_space
        self.single_action_space = self.core.single_action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._rngs: list[np.random.Generator] = []
        self._seeds: list[int] = []
        for _ in range(num_envs):
            rng, seed = seeding.np_random(None)
            self._rngs.append(rng)
            self._seeds.append(-1 if seed is None else int(seed))
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._autoreset = np.zeros(num_envs, dtype=bool)  # NEXT_STEP: rows to reset next step
        self._needs_reset = True

    def _check_memory(self, num_envs: int) -> None:
        """Refuse, before allocating, a batch whose state alone exceeds the memory available."""
        if num_envs < 64:
            return
        available = available_memory()
        if available is None:
            return
        per_row = sum(a.nbytes for a in self.core_cls(self.config, 1).state_arrays().values())
        need = per_row * num_envs
        if need > 0.8 * available:
            raise ValueError(
                f"num_envs={num_envs}: the state of {type(self).__name__} with this config "
                f"takes {per_row / 1e3:.1f} kB per row, {need / 1e9:.1f} GB in all, more than "
                f"this machine can give it ({available / 1e9:.1f} GB available); use fewer "
                "rows, a smaller config, or several processes")

    @property
    def np_random_seed(self) -> tuple[int, ...]:  # type: ignore[override]
        """Each row's seed, as ``SyncVectorEnv`` reports its sub-envs' (``-1``: from entropy)."""
        return tuple(self._seeds)

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:  # type: ignore[override]
        """Each row's generator."""
        return tuple(self._rngs)

    def _reset_mask(self, options: dict[str, Any] | None) -> np.ndarray | None:
        if options is None or "reset_mask" not in options:
            return None
        mask = options.pop("reset_mask")
        if not isinstance(mask, np.ndarray):
            raise TypeError(f"options['reset_mask'] must be a numpy array, got "
                            f"{type(mask).__name__}")
        if mask.shape != (self.num_envs,):
            raise ValueError(f"options['reset_mask'] must have shape ({self.num_envs},), got "
                             f"{mask.shape}")
        if mask.dtype != np.bool_:
            raise TypeError(f"options['reset_mask'] must have dtype bool, got {mask.dtype}")
        if not mask.any():
            raise ValueError("options['reset_mask'] must select at least one row")
        return mask

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every row (or those of ``options["reset_mask"]``); see the class manual.

        Raises:
            ValueError: If a seed sequence does not have ``num_envs`` entries, or the reset
                mask is of the wrong shape or selects nothing.
            TypeError: If the reset mask is not a bool NumPy array.
        """
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed list must have num_envs={self.num_envs} entries, "
                                 f"got {len(seeds)}")
        options = None if options is None else dict(options)  # reset_mask is popped
        mask = self._reset_mask(options)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        elif self._needs_reset:
            raise RuntimeError("reset() every row (no reset_mask) before a masked reset")
        idx = np.flatnonzero(mask)
        for i in idx.tolist():
            if seeds[i] is not None:
                self._rngs[i], used = seeding.np_random(seeds[i])
                self._seeds[i] = int(used)
        info = self.core.reset([self._rngs[i] for i in idx], idx, options or None)
        self._elapsed[idx] = 0
        self._autoreset[idx] = False
        self._needs_reset = False
        return self.core.observe().copy(), with_masks(info, mask.copy()) if mask.all() else \
            _rows_info(info, idx, self.num_envs)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        """Step every row; finished rows are reset as the autoreset mode says.

        Raises:
            ValueError: On an invalid batch of actions (shape, NaN/inf, outside the space).
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        acts = check_action(self.single_action_space, actions, batch=self.num_envs)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP and self._autoreset.any():
            return self._step_next(acts)
        result = self.core.step(acts, self._rngs)
        obs = self.core.observe().copy()
        self._elapsed += 1
        terminated = np.asarray(result.terminated, dtype=bool)
        truncated = self._truncations(terminated)
        done = terminated | truncated
        every = np.ones(self.num_envs, dtype=bool)
        info = with_masks(result.info, every)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._autoreset = done
        elif done.any():
            idx = np.flatnonzero(done)
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in idx.tolist():
                final_obs[i] = obs[i]
            info["final_obs"], info["_final_obs"] = final_obs, done.copy()
            info["final_info"], info["_final_info"] = with_masks(result.info, done), done.copy()
            reset_info = self.core.reset([self._rngs[i] for i in idx], idx, None)
            self._elapsed[idx] = 0
            obs = self.core.observe().copy()
            merge_rows(info, reset_info, idx, done)
        return obs, np.asarray(result.reward, dtype=np.float64), terminated, truncated, info

    def _truncations(self, terminated: np.ndarray) -> np.ndarray:
        if self.max_episode_steps is None:
            return np.zeros(self.num_envs, dtype=bool)
        return (self._elapsed >= self.max_episode_steps) & ~terminated

    def _step_next(self, acts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray, dict[str, Any]]:
        """A ``NEXT_STEP`` step with rows to reset: those reset, the others step.

        The core steps every row at once; the rows being reset are put back afterwards as
        their reset left them (their state arrays and their generators), so they consume
        their randomness exactly as a sub-env that only calls ``reset()`` in this step.
        """
        rows = self._autoreset.copy()
        idx = np.flatnonzero(rows)
        reset_info = self.core.reset([self._rngs[i] for i in idx], idx, None)
        kept = self.core.save_rows(idx)
        streams = [self._rngs[i].bit_generator.state for i in idx.tolist()]
        result = self.core.step(acts, self._rngs)
        self.core.restore_rows(idx, kept)
        for i, state in zip(idx.tolist(), streams, strict=True):
            self._rngs[i].bit_generator.state = state
        obs = self.core.observe().copy()
        self._elapsed += 1
        self._elapsed[idx] = 0
        reward = np.asarray(result.reward, dtype=np.float64).copy()
        terminated = np.asarray(result.terminated, dtype=bool).copy()
        reward[idx], terminated[idx] = 0.0, False
        truncated = self._truncations(terminated)
        truncated[idx] = False
        stepped = ~rows
        info = with_masks(result.info, stepped) if stepped.any() else {}
        merge_rows(info, reset_info, idx, rows)
        self._autoreset = terminated | truncated
        return obs, reward, terminated, truncated, info

    # -- Gymnasium's vector-env attribute access, for rows that share one core -------------

    def _row_value(self, name: str) -> tuple[Any, ...]:
        if name == "np_random":
            return self.np_random
        if name == "np_random_seed":
            return self.np_random_seed
        single = {"observation_space": self.single_observation_space,
                  "action_space": self.single_action_space}
        if name in single:
            return (single[name],) * self.num_envs
        if name in type(self.config).field_names():
            return (getattr(self.config, name),) * self.num_envs
        if name.startswith("_") or not hasattr(self, name):
            raise AttributeError(f"{type(self).__name__} rows have no attribute {name!r}")
        return (getattr(self, name),) * self.num_envs

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """One value per row of attribute ``name`` (see the class manual)."""
        return self._row_value(name)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """One result per row: ``name``'s value, or its call when it is a method of the twin.

        ``render`` gives :meth:`render`'s tuple. A method of the twin acts on every row at
        once, so it is called once and its result repeated per row.
        """
        if name == "render":
            return self.render()
        values = self._row_value(name)
        if callable(values[0]) and not isinstance(values[0], spaces.Space):
            result = values[0](*args, **kwargs)
            return (result,) * self.num_envs
        return values

    def set_attr(self, name: str, values: Any) -> None:
        """Set attribute ``name`` of the twin: one value, or one per row, all equal.

        Raises:
            ValueError: For a list of the wrong length, per-row values that differ (the rows
                share one core), a config field or a read-only attribute.
        """
        if isinstance(values, (list, tuple)):
            if len(values) != self.num_envs:
                raise ValueError(f"set_attr({name!r}): values must have one entry per row "
                                 f"(num_envs={self.num_envs}), got {len(values)}")
            first = values[0]
            if any(v is not first and v != first for v in values[1:]):
                raise ValueError(f"set_attr({name!r}): the rows of {type(self).__name__} "
                                 "share one core; per-row values that differ are not supported")
            values = first
        if name in type(self.config).field_names() or name in ("np_random", "np_random_seed",
                                                   "observation_space", "action_space",
                                                   "num_envs", "autoreset_mode"):
            raise ValueError(f"set_attr({name!r}): not settable on a running "
                             f"{type(self).__name__}; build a new one "
                             f"(gym.make_vec(id, n, {name}=...))")
        setattr(self, name, values)

    def render(self) -> tuple[str | np.ndarray | None, ...]:  # type: ignore[override]
        """One frame per row in ``render_mode`` (``None`` for each row without one)."""
        return tuple(_render(self.core, self.render_mode, row) for row in range(self.num_envs))


def _render(core: BatchedCore[Any], mode: str | None, row: int) -> str | np.ndarray | None:
    if mode == "ansi":
        return core.render_ansi(row)
    if mode == "rgb_array":
        return core.render_rgb_array(row)
    return None


def check_render_mode(render_mode: str | None, modes: Sequence[str]) -> str | None:
    """``render_mode`` itself if it is ``None`` or one of ``modes``.

    Raises:
        ValueError: Naming the mode and the allowed ones.
    """
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode must be None or one of {list(modes)}, "
                         f"got {render_mode!r}")
    return render_mode


def agg_figure(width_in: float, height_in: float, dpi: int = 80) -> Any:
    """A matplotlib ``Figure`` on an Agg canvas, for a core's ``render_rgb_array``.

    Imports matplotlib only when an env first renders a picture, and never switches the
    backend of a process that has already chosen one (the figure draws on its own canvas).
    Hand the drawn figure to :func:`figure_rgb`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_rgb(fig: Any) -> np.ndarray:
    """The pixels of an :func:`agg_figure` figure: a fresh ``(H, W, 3)`` uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rows_info(info: dict[str, Any], idx: np.ndarray, n: int) -> dict[str, Any]:
    """A reset info of rows ``idx`` laid out for all ``n`` rows (masked elsewhere)."""
    rows = np.zeros(n, dtype=bool)
    rows[idx] = True
    out: dict[str, Any] = {}
    merge_rows(out, info, idx, rows)
    return out
