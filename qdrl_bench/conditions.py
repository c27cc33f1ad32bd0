"""The sweep file's robustness syntax: evaluation conditions, poisoned and adversarial training.

What the entries *do* is :mod:`qdrl_bench.robustness`; this module reads and validates them
(light: the CLI imports it through :mod:`qdrl_bench.spec`). Every error is the sweep parser's
``SpecError`` (``file:line: eval.conditions[2].noise.p2: ...``), raised before any run starts.

Evaluation conditions (``eval.conditions``): every finished run of a learning agent is also
evaluated under each condition, on the same evaluation episodes and seeds as its clean score::

    eval:
      episodes: 10
      conditions:
        - name: shots                  # required, unique; names the result in the store
          kind: executor               # the trained circuit on qiskit-aer (quantum agents)
          shots: [128, 1024, 8192]     # one knob may be a list: one condition per value,
                                       #   named shots=128, shots=1024, ... (one series)
        - name: depolarizing
          kind: executor
          shots: 1024                  # null / absent: exact expectation values
          noise: {kind: depolarizing, p1: 0.0005, p2: [0.001, 0.01, 0.05]}
        - name: thermal
          kind: executor
          noise: {kind: thermal, t1_us: 100, t2_us: 80, gate_time_1q_ns: 50,
                  gate_time_2q_ns: 300}
        - name: readout
          kind: executor
          noise: [{kind: depolarizing, p2: 0.01}, {kind: readout, p: 0.02}]  # combined
        - name: guadalupe
          kind: executor
          shots: 1024
          noise: {kind: fake_backend, backend: FakeGuadalupeV2}  # qiskit-ibm-runtime's
        - {name: obs-noise, kind: obs_noise, scale: [0.01, 0.05]}  # x observation range
        - name: fgsm
          kind: adversarial
          attack: fgsm                 # fgsm | pgd
          epsilon: [0.01, 0.05, 0.1]   # L-inf budget, x observation range, in [0, 1]
          objective: kl                # kl (action distribution) | value (the critic's)
        - {name: pgd, kind: adversarial, attack: pgd, epsilon: 0.05, steps: 10,
           objective: value, agents: [ppo]}   # agents: only these agent labels

Knobs of each kind (defaults in brackets):

* ``executor``: ``shots`` (int >= 1 [null: exact]), ``noise`` (a mapping or a list of them,
  combined into one noise model [none]), ``seed`` (int [0]). Noise kinds:
  ``depolarizing`` ``p1`` (every one-qubit gate), ``p2`` (every two-qubit gate), each in
  [0, 1] [0]; ``thermal`` ``t1_us``, ``t2_us`` (> 0, t2 <= 2 t1, required),
  ``gate_time_1q_ns`` [50], ``gate_time_2q_ns`` [300] (> 0); ``readout`` ``p`` (the chance a
  measured bit flips, in [0, 0.5], required); ``fake_backend`` ``backend`` (a class of
  ``qiskit_ibm_runtime.fake_provider``, required), ``qubits`` (physical qubits to place the
  circuit on [the best connected set]), ``optimization_level`` (0-3 [1]),
  ``seed_transpiler`` [0]; a fake backend is the whole noise model (no other component).
* ``obs_noise``: ``scale`` (>= 0, required: Gaussian noise of ``scale`` times each feature's
  range, clipped into the observation space), ``seed`` [0].
* ``adversarial``: ``attack`` (``fgsm`` | ``pgd``, required), ``epsilon`` (in [0, 1],
  required), ``objective`` (``kl`` | ``value`` [kl]), ``steps`` (pgd only [10]),
  ``step_size`` (pgd only, x observation range, in (0, 1] [2.5 epsilon / steps]),
  ``random_start`` (bool [true for kl, false for value]; FGSM on ``kl`` needs it: the
  divergence's gradient vanishes at the clean observation), ``seed`` [0].

Every entry also takes ``series`` (groups entries in the report's figure [its name]) and
``agents`` (the agent labels it applies to [every learning agent]). The figure plots each
series against its strength: the listed knob, else the kind's main knob (``shots``;
``p2`` / ``t1_us`` / ``p`` of the first noise component; ``scale``; ``epsilon``).

Training wrappers, on an agent entry (they change what the run trains on, so they are part of
its configuration and hash; give the entry its own ``label``)::

    - name: ppo-small
      label: ppo-small-flip10
      train_wrappers:                  # applied to the training env only, in order
        - {kind: reward, fraction: 0.1, mode: flip}          # qdrl_envs PoisonedReward
        - {kind: observation, fraction: 0.05, mode: noise, scale: 0.1}  # PoisonedObservation
      adversarial_training:            # a defence: attacked training observations
        {attack: fgsm, epsilon: 0.05, objective: kl, rate: 0.5}

``train_wrappers`` take the wrappers' own arguments (``fraction``, ``mode``, ``scale``,
``bias``, ``target_action``, ``target_tol``, ``seed``; ``trigger_features``,
``trigger_value``); ``seed`` defaults to the run's seed. ``adversarial_training`` takes the
``adversarial`` knobs plus ``rate`` (the fraction of training observations attacked, in
[0, 1], required).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qdrl_envs.poisoning import OBSERVATION_MODES, REWARD_MODES

__all__ = [
    "ATTACKS",
    "CONDITION_KINDS",
    "NOISE_KINDS",
    "OBJECTIVES",
    "TRAIN_WRAPPER_KINDS",
    "ConditionSpec",
    "Knobs",
    "parse_adversarial_training",
    "parse_conditions",
    "parse_train_wrappers",
]

CONDITION_KINDS = ("executor", "obs_noise", "adversarial")
NOISE_KINDS = ("depolarizing", "thermal", "readout", "fake_backend")
ATTACKS = ("fgsm", "pgd")
OBJECTIVES = ("kl", "value")
TRAIN_WRAPPER_KINDS = ("reward", "observation")

Path_ = tuple[Any, ...]
ErrorFn = Callable[[Path_, str], Exception]

_COMMON = ("name", "kind", "series", "agents")
_KNOBS = {
    "executor": ("shots", "noise", "seed"),
    "obs_noise": ("scale", "seed"),
    "adversarial": ("attack", "epsilon", "objective", "steps", "step_size", "random_start",
                    "seed"),
}
_NOISE_KNOBS = {
    "depolarizing": ("p1", "p2"),
    "thermal": ("t1_us", "t2_us", "gate_time_1q_ns", "gate_time_2q_ns"),
    "readout": ("p",),
    "fake_backend": ("backend", "qubits", "optimization_level", "seed_transpiler"),
}
_NOISE_STRENGTH = {"depolarizing": "p2", "thermal": "t1_us", "readout": "p"}
_STRENGTH = {"executor": "shots", "obs_noise": "scale", "adversarial": "epsilon"}
_WRAPPER_KNOBS = {
    "reward": ("fraction", "mode", "scale", "bias", "target_action", "target_tol", "seed"),
    "observation": ("fraction", "mode", "scale", "trigger_features", "trigger_value", "seed"),
}


@dataclass(frozen=True)
class ConditionSpec:
    """One evaluation condition (after list expansion), picklable (sent to workers).

    Attributes:
        name: Unique name (``shots=1024`` for an entry ``shots`` listing 1024).
        kind: ``executor``, ``obs_noise`` or ``adversarial``.
        params: The kind's knobs, defaults filled in (``executor``: ``shots``, ``noise`` as a
            tuple of component mappings, ``seed``).
        series: The entry it came from (the report's figure draws one line per series).
        axis: The knob the series varies (``shots``, ``p2``, ``epsilon``; ``""``: none).
        strength: That knob's value (``None`` where the knob is null, e.g. exact shots).
        agents: The agent labels it applies to (``None``: every learning agent).
        line: Its line in the sweep file.
        entry: The index of its entry in ``eval.conditions``.
    """

    name: str
    kind: str
    params: Mapping[str, Any]
    series: str = ""
    axis: str = ""
    strength: float | None = None
    agents: tuple[str, ...] | None = None
    line: int = 0
    entry: int = 0

    @property
    def config(self) -> dict[str, Any]:
        """What the condition's result depends on (beyond the run): its kind and knobs."""
        return {"kind": self.kind, **_plain(self.params)}

    @property
    def config_hash(self) -> str:
        """16 hex digits of the SHA-256 of :attr:`config` as canonical JSON."""
        text = json.dumps(self.config, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def applies_to(self, agent_label: str) -> bool:
        """Whether runs of this agent label are evaluated under the condition."""
        return self.agents is None or agent_label in self.agents


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------- knob checks


class Knobs:
    """Typed reads of a sweep file's values, each error naming its path.

    The sweep parser of :mod:`qdrl_bench.spec` builds on this class too.
    """

    def __init__(self, error: ErrorFn) -> None:
        self.error = error

    def number(self, value: Any, path: Path_, low: float | None = None,
               high: float | None = None, *, low_open: bool = False) -> float:
        """A finite number in ``[low, high]`` (``low_open``: above ``low``), as a float."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise self.error(path, f"must be a finite number, got {value!r}")
        if low is not None and (value < low or (low_open and value == low)):
            rel = ">" if low_open else ">="
            raise self.error(path, f"must be {rel} {low}, got {value}")
        if high is not None and value > high:
            raise self.error(path, f"must be <= {high}, got {value}")
        return float(value)

    def integer(self, value: Any, path: Path_, low: int, high: int | None = None) -> int:
        """An int (not a bool) in ``[low, high]``."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"must be an integer, got {type(value).__name__} {value!r}")
        if value < low:
            raise self.error(path, f"must be >= {low}, got {value}")
        if high is not None and value > high:
            raise self.error(path, f"must be <= {high}, got {value}")
        return value

    def choice(self, value: Any, path: Path_, allowed: Sequence[str]) -> str:
        """One of ``allowed``."""
        if not isinstance(value, str) or value not in allowed:
            raise self.error(path, f"must be one of {list(allowed)}, got {value!r}")
        return value

    def boolean(self, value: Any, path: Path_) -> bool:
        """``true`` or ``false``."""
        if not isinstance(value, bool):
            raise self.error(path, f"must be true or false, got {value!r}")
        return value

    def text(self, value: Any, path: Path_) -> str:
        """A non-empty string."""
        if not isinstance(value, str) or not value.strip():
            raise self.error(path, f"must be a non-empty string, got {value!r}")
        return value

    def seed(self, value: Any, path: Path_) -> int:
        """A seed in ``[0, 2**32)``."""
        return self.integer(value, path, 0, 2**32 - 1)

    def mapping(self, value: Any, path: Path_, allowed: Sequence[str]) -> dict[str, Any]:
        """A mapping whose keys are all in ``allowed``, as a dict."""
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be a mapping, got {type(value).__name__} {value!r}")
        for key in value:
            if key not in allowed:
                raise self.error((*path, key), f"unknown key {key!r}; allowed: {list(allowed)}")
        return dict(value)

    def required(self, m: Mapping[str, Any], key: str, path: Path_, why: str = "") -> Any:
        """``m[key]``, which must be there and not null (``why`` ends the message)."""
        if key not in m or m[key] is None:
            raise self.error(path, f"missing required key {key!r}{why}")
        return m[key]


def _adversarial_knobs(k: Knobs, m: Mapping[str, Any], path: Path_) -> dict[str, Any]:
    """The ``adversarial`` knobs (condition and adversarial training share them)."""
    attack = k.choice(k.required(m, "attack", path), (*path, "attack"), ATTACKS)
    epsilon = k.number(k.required(m, "epsilon", path), (*path, "epsilon"), 0.0, 1.0)
    objective = k.choice(m.get("objective", "kl"), (*path, "objective"), OBJECTIVES)
    if attack == "fgsm":
        for key in ("steps", "step_size"):
            if key in m:
                raise k.error((*path, key), f"only attack: pgd takes {key!r} (FGSM is one step "
                                            "of the whole budget)")
        steps, step_size = 1, None
    else:
        steps = k.integer(m.get("steps", 10), (*path, "steps"), 1, 10_000)
        step_size = None if m.get("step_size") is None else k.number(
            m["step_size"], (*path, "step_size"), 0.0, 1.0, low_open=True)
    random_start = k.boolean(m.get("random_start", objective == "kl"), (*path, "random_start"))
    if attack == "fgsm" and objective == "kl" and not random_start:
        raise k.error((*path, "random_start"), "FGSM on the kl objective needs random_start: "
                                               "the divergence's gradient is zero at the clean "
                                               "observation, so one step from it moves nothing")
    return {"attack": attack, "epsilon": epsilon, "objective": objective, "steps": steps,
            "step_size": step_size, "random_start": random_start,
            "seed": k.seed(m.get("seed", 0), (*path, "seed"))}


def _noise_component(k: Knobs, raw: Any, path: Path_) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise k.error(path, f"must be a mapping with a 'kind', got {raw!r}")
    kind = k.choice(k.required(raw, "kind", path), (*path, "kind"), NOISE_KINDS)
    m = k.mapping(raw, path, ("kind", *_NOISE_KNOBS[kind]))
    if kind == "depolarizing":
        out = {"p1": k.number(m.get("p1", 0.0), (*path, "p1"), 0.0, 1.0),
               "p2": k.number(m.get("p2", 0.0), (*path, "p2"), 0.0, 1.0)}
    elif kind == "thermal":
        t1 = k.number(k.required(m, "t1_us", path), (*path, "t1_us"), 0.0, low_open=True)
        t2 = k.number(k.required(m, "t2_us", path), (*path, "t2_us"), 0.0, low_open=True)
        if t2 > 2 * t1:
            raise k.error((*path, "t2_us"), f"T2 <= 2 T1 holds for any qubit; got t2_us={t2} "
                                            f"> 2 * t1_us={2 * t1}")
        out = {"t1_us": t1, "t2_us": t2,
               "gate_time_1q_ns": k.number(m.get("gate_time_1q_ns", 50.0),
                                           (*path, "gate_time_1q_ns"), 0.0, low_open=True),
               "gate_time_2q_ns": k.number(m.get("gate_time_2q_ns", 300.0),
                                           (*path, "gate_time_2q_ns"), 0.0, low_open=True)}
    elif kind == "readout":
        out = {"p": k.number(k.required(m, "p", path), (*path, "p"), 0.0, 0.5)}
    else:
        qubits = m.get("qubits")
        if qubits is not None:
            if not isinstance(qubits, list) or not qubits:
                raise k.error((*path, "qubits"), f"must be a non-empty list of physical qubit "
                                                 f"indices, got {qubits!r}")
            qubits = [k.integer(q, (*path, "qubits", i), 0) for i, q in enumerate(qubits)]
            if len(set(qubits)) != len(qubits):
                raise k.error((*path, "qubits"), f"must be distinct, got {qubits}")
        out = {"backend": k.text(k.required(m, "backend", path), (*path, "backend")),
               "qubits": qubits,
               "optimization_level": k.integer(m.get("optimization_level", 1),
                                               (*path, "optimization_level"), 0, 3),
               "seed_transpiler": k.seed(m.get("seed_transpiler", 0),
                                         (*path, "seed_transpiler"))}
    return {"kind": kind, **out}


def _kind_knobs(k: Knobs, kind: str, m: Mapping[str, Any], path: Path_) -> dict[str, Any]:
    """The knobs of one (expanded) condition entry, defaults filled."""
    if kind == "executor":
        shots = m.get("shots")
        shots = None if shots is None else k.integer(shots, (*path, "shots"), 1, 10**9)
        raw = m.get("noise")
        items = [] if raw is None else (list(raw) if isinstance(raw, list) else [raw])
        sub = (lambda i: (*path, "noise", i)) if isinstance(raw, list) else \
            (lambda i: (*path, "noise"))
        noise = tuple(_noise_component(k, c, sub(i)) for i, c in enumerate(items))
        kinds = [c["kind"] for c in noise]
        if "fake_backend" in kinds and len(kinds) > 1:
            raise k.error((*path, "noise"), "a fake_backend is the whole noise model (its gate, "
                                            "relaxation and readout errors); give it alone")
        if len(set(kinds)) != len(kinds):
            raise k.error((*path, "noise"), f"each noise kind at most once, got {kinds}")
        return {"shots": shots, "noise": noise, "seed": k.seed(m.get("seed", 0),
                                                               (*path, "seed"))}
    if kind == "obs_noise":
        return {"scale": k.number(k.required(m, "scale", path), (*path, "scale"), 0.0),
                "seed": k.seed(m.get("seed", 0), (*path, "seed"))}
    return _adversarial_knobs(k, m, path)


def _list_knob(k: Knobs, entry: Mapping[str, Any], path: Path_
               ) -> tuple[Path_, str, list[Any]] | None:
    """The one knob given as a list (its key path inside the entry, name, values), or None."""
    found: list[tuple[Path_, str, list[Any]]] = []
    for key, value in entry.items():
        if key in _COMMON or key == "noise":
            continue
        if isinstance(value, list):
            found.append(((key,), key, value))
    noise = entry.get("noise")
    comps = noise if isinstance(noise, list) else [noise] if isinstance(noise, Mapping) else []
    for i, comp in enumerate(comps):
        if not isinstance(comp, Mapping):
            continue
        for key, value in comp.items():
            if isinstance(value, list) and key != "qubits":
                where = ("noise", i, key) if isinstance(noise, list) else ("noise", key)
                found.append((where, key, value))
    if len(found) > 1:
        names = [".".join(str(p) for p in f[0]) for f in found]
        raise k.error(path, f"at most one knob may list values (one series per entry), got "
                            f"lists for {names}")
    if found and not found[0][2]:
        raise k.error((*path, *found[0][0]), "the list of values is empty")
    return found[0] if found else None


def _with(entry: Mapping[str, Any], where: Path_, value: Any) -> dict[str, Any]:
    """A copy of ``entry`` with the knob at ``where`` set to ``value``."""
    out = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, Mapping) else v)
           for k, v in entry.items()}
    if len(where) == 1:
        out[where[0]] = value
    elif len(where) == 2:
        out["noise"] = {**out["noise"], where[1]: value}
    else:
        comps = [dict(c) if isinstance(c, Mapping) else c for c in out["noise"]]
        comps[where[1]] = {**comps[where[1]], where[2]: value}
        out["noise"] = comps
    return out


def _default_axis(kind: str, params: Mapping[str, Any]) -> tuple[str, float | None]:
    if kind == "executor":
        for comp in params["noise"]:
            key = _NOISE_STRENGTH.get(comp["kind"])
            if key is not None:
                return key, float(comp[key])
        shots = params["shots"]
        return "shots", None if shots is None else float(shots)
    key = _STRENGTH[kind]
    return key, float(params[key])


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "null" if value is None else str(value)


def parse_conditions(raw: Any, path: Path_, error: ErrorFn, agent_labels: Sequence[str],
                     lines: Callable[[Path_], int] = lambda _: 0) -> tuple[ConditionSpec, ...]:
    """Read ``eval.conditions`` (see the module manual).

    Args:
        raw: The list from the YAML file.
        path: Its key path (``("eval", "conditions")``).
        error: ``error(path, message) -> Exception`` (the sweep parser's, with file:line).
        agent_labels: The sweep's agent labels (an entry's ``agents`` must name some of them).
        lines: ``lines(path) -> line`` for each condition's line.

    Returns:
        The conditions, lists expanded, in file order.

    Raises:
        Exception: What ``error`` makes: unknown kinds or knobs, values out of range (negative
            shots or rates, epsilon outside [0, 1], T2 > 2 T1, ...), more than one listed
            knob, duplicate names, unknown agent labels.
    """
    k = Knobs(error)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise error(path, f"must be a list of condition entries, got {raw!r}")
    out: list[ConditionSpec] = []
    where_named: dict[str, int] = {}
    for i, entry in enumerate(raw):
        at = (*path, i)
        if not isinstance(entry, Mapping):
            raise error(at, f"must be a mapping with 'name' and 'kind', got {entry!r}")
        kind = k.choice(k.required(entry, "kind", at), (*at, "kind"), CONDITION_KINDS)
        m = k.mapping(entry, at, (*_COMMON, *_KNOBS[kind]))
        name = k.text(k.required(m, "name", at), (*at, "name"))
        series = k.text(m["series"], (*at, "series")) if "series" in m else name
        agents = m.get("agents")
        if agents is not None:
            if not isinstance(agents, list) or not agents:
                raise error((*at, "agents"), f"must be a non-empty list of agent labels, got "
                                             f"{agents!r}")
            agents = tuple(k.text(a, (*at, "agents", j)) for j, a in enumerate(agents))
            unknown = sorted(set(agents) - set(agent_labels))
            if unknown:
                raise error((*at, "agents"), f"unknown agent label(s) {unknown}; the sweep's "
                                             f"agents are {sorted(agent_labels)}")
        listed = _list_knob(k, m, at)
        variants = [(None, m)] if listed is None else [
            (v, _with(m, listed[0], v)) for v in listed[2]]
        for j, (value, one) in enumerate(variants):
            knobs = k if listed is None else Knobs(_at_item(error, listed[0], j, at))
            params = _kind_knobs(knobs, kind, one, at)
            if listed is None:
                axis, strength = _default_axis(kind, params)
                cname = name
            else:
                axis = listed[1]
                strength = None if value is None else float(value)
                cname = f"{name}={_label(value)}"
            if cname in where_named:
                raise error(at, f"duplicate condition name {cname!r} (also from entry "
                                f"{where_named[cname]}); names must be unique")
            where_named[cname] = i
            out.append(ConditionSpec(name=cname, kind=kind, params=params, series=series,
                                     axis=axis, strength=strength, agents=agents,
                                     line=lines(at), entry=i))
    return tuple(out)


def _at_item(error: ErrorFn, where: Path_, j: int, at: Path_) -> ErrorFn:
    """An error function that names the listed knob's item ``j`` for errors about that knob."""
    knob = (*at, *where)

    def err(path: Path_, message: str) -> Exception:
        if tuple(path) == knob:
            return error((*knob, j), message)
        return error(path, message)

    return err


def parse_train_wrappers(raw: Any, path: Path_, error: ErrorFn) -> tuple[dict[str, Any], ...]:
    """Read an agent entry's ``train_wrappers`` (see the module manual).

    Ranges and modes are checked here; what needs the env (a ``target_action`` in its action
    space, trigger features in range) is checked by building the wrappers on the env before
    any run starts (:func:`qdrl_bench.runner.check_train_wrappers`).

    Returns:
        One mapping per wrapper: ``kind`` and the wrapper's keyword arguments.
    """
    k = Knobs(error)
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise error(path, f"must be a non-empty list of wrapper entries, got {raw!r}")
    out = []
    for i, entry in enumerate(raw):
        at = (*path, i)
        if not isinstance(entry, Mapping):
            raise error(at, f"must be a mapping with a 'kind', got {entry!r}")
        kind = k.choice(k.required(entry, "kind", at), (*at, "kind"), TRAIN_WRAPPER_KINDS)
        m = k.mapping(entry, at, ("kind", *_WRAPPER_KNOBS[kind]))
        one: dict[str, Any] = {"kind": kind,
                               "fraction": k.number(k.required(m, "fraction", at),
                                                    (*at, "fraction"), 0.0, 1.0)}
        modes = REWARD_MODES if kind == "reward" else OBSERVATION_MODES
        one["mode"] = k.choice(m.get("mode", modes[0]), (*at, "mode"), modes)
        for key in ("scale", "bias", "target_tol", "trigger_value"):
            if key in m:
                one[key] = k.number(m[key], (*at, key), 0.0 if key in ("scale", "target_tol")
                                    else None)
        for key in ("target_action", "trigger_features"):
            if key in m:
                one[key] = m[key]
        if "seed" in m:
            one["seed"] = k.seed(m["seed"], (*at, "seed"))
        out.append(one)
    return tuple(out)


def parse_adversarial_training(raw: Any, path: Path_, error: ErrorFn) -> dict[str, Any] | None:
    """Read an agent entry's ``adversarial_training``: the adversarial knobs and ``rate``."""
    if raw is None:
        return None
    k = Knobs(error)
    m = k.mapping(raw, path, (*_KNOBS["adversarial"], "rate"))
    knobs = _adversarial_knobs(k, m, path)
    knobs["rate"] = k.number(k.required(m, "rate", path), (*path, "rate"), 0.0, 1.0)
    return knobs
