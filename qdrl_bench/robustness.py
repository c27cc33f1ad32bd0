"""Robustness and security of trained agents: evaluation conditions, attacks, adversarial training.

The sweep syntax is :mod:`qdrl_bench.conditions`; this module is what the entries do. Every
finished learning run is evaluated under each condition of its sweep right after training (in
the worker, from the model in memory), on the *same* evaluation episodes and seeds as its clean
score (``eval.seed + 1000 * run seed + k`` for episode ``k``), with deterministic actions. The
episodes run in lockstep: one env per episode, every observation of a step across episodes
goes to the policy in one batch (:func:`evaluate_lockstep`), so an estimator call on qiskit-aer
serves all episodes at once. Its agent is exported (:func:`qdrl_bench.sharing.export_agent`:
tensors + JSON, no pickles) beside the store, so a condition added to the sweep later is
evaluated from the saved agent without retraining (:func:`evaluate_saved`).

**executor** (quantum and hybrid agents; a classical agent's result is *not applicable*). Each
``QuantumLayer`` of the trained policy is evaluated, through
:func:`qdrl_agents.layers.swap_executor`, by :func:`make_device_executor`: the layer's own
circuit on qiskit-aer's ``EstimatorV2`` (the estimator of the ``qiskit`` executor), which
computes the *noisy* expectation values exactly (density matrix with a noise model,
statevector without), and on top of them the measurement: readout errors and shot noise.
Each call is one pub holding every row and every Pauli term of the observables, one Aer
simulation per row; the ``qiskit`` executor's ``EstimatorQNN`` sends one pub per observable,
and Aer simulates each pub anew (twice the work for a two-output actor, measured; four times
for four). Evaluation needs no gradients, which is all ``EstimatorQNN`` would add.

* Shot noise is drawn here, not by Aer: measuring a Pauli term of expectation ``e`` ``N``
  times gives ``2 k / N - 1`` with ``k ~ Binomial(N, (1 + e) / 2)`` (each Pauli term of an
  observable measured with its own ``N`` shots). Aer's ``EstimatorV2`` would add
  ``Normal(0, 1 / sqrt(N))`` instead, from a generator it re-seeds with ``seed_simulator`` on
  every pub: with a fixed seed every call and every observable get the *same* draws (the
  noise of output 0 equals that of output 1, step after step), and without one the
  evaluation is not reproducible. Here one seeded generator per layer and condition advances
  call by call.
* Readout errors are applied as their exact effect on the measured expectation: a Pauli term
  is measured by reading each qubit of its support, and a bit that flips with probability
  ``p`` scales the term by ``1 - 2 p`` (per qubit, symmetric flips). Aer's estimator computes
  expectation values from the state (``save_expectation_value``) and would silently ignore a
  noise model's readout errors.
* Noise models on the *logical* circuit (an abstract device, every gate of the trained
  circuit noisy): ``depolarizing`` (``p1`` on every one-qubit gate, ``p2`` on every two-qubit
  gate), ``thermal`` (``thermal_relaxation_error(T1, T2, gate time)`` on every gate, both
  qubits of a two-qubit gate), ``readout``; components compose gate by gate.
* ``fake_backend``: a device of qiskit-ibm-runtime's fake provider. Its noise model only
  means something on the circuit the device would run, so the circuit is transpiled to the
  device: placed on ``n`` connected physical qubits (``qubits``, or the connected set with the
  lowest two-qubit and readout errors, grown greedily), routed on the coupling map restricted
  to them, in the device's basis gates; the observables follow the layout
  (``SparsePauliOp.apply_layout``), and the noise model is the device's own
  (``basic_device_gate_errors`` on its target: depolarising gate errors with thermal
  relaxation over each gate's duration, what ``NoiseModel.from_backend`` builds) restricted
  to those qubits and renumbered, plus its readout errors as above. Simulating only the
  circuit's qubits is what makes this possible at all: the device has 16-133 qubits, and Aer's
  estimator keeps every qubit of the circuit it is given. ``NoiseModel.from_backend`` with
  the logical circuit would be wrong: its errors are keyed by the device's gate names and
  physical qubits, which the logical circuit's gates (``ry``, ``cz`` on qubits 0..n-1)
  mostly do not match, so most of them would never apply. Idle relaxation (delays) is not
  modelled: the circuit is not scheduled (as with ``from_backend`` on an unscheduled circuit).

With no noise and ``shots: null`` the condition is the clean evaluation on another simulator:
Aer's double-precision statevector instead of the torch statevector (float32 in the policy),
equal to about 1e-6 in each action, so scores agree to a relative 1e-5 or so, not bit for bit.

**obs_noise**: Gaussian noise of ``scale`` times each feature's range (the absolute ``scale``
where the range is infinite) on every observation the agent sees, clipped into the
observation space. The noise of episode ``k`` comes from its own generator (seeded by the
condition's ``seed`` and the episode's seed), so every agent and every strength of a series
sees the same draws (common random numbers: differences are the agents', not the draws').

**adversarial**: an L-infinity-bounded attack on the observations, from the policy's own
input gradient (MLP and quantum policies are both differentiable in their inputs: the
statevector executor by autograd). The budget is ``epsilon`` times each feature's range, in
*raw* observation units, and every attacked observation stays inside the observation space.
When the agent trained under ``VecNormalize`` the attack works on what the policy sees: the
gradient flows through the frozen normaliser ``clip((o - mean) / sqrt(var + eps))`` into the
raw observation, which is what an attacker on the measurements controls (a budget on the
normalised input would give each feature a budget of ``epsilon * range / std``, different per
agent and feature, and could leave the space). Objectives (the attacker minimises):

* ``kl``: minus the divergence of the action distribution from the clean one (SB3's
  distributions: Gaussian, categorical, multi-categorical, Bernoulli; SAC's pre-squash
  Gaussian, whose KL the tanh keeps; DQN's Boltzmann ``softmax(Q)``; TD3's / DDPG's
  deterministic actor: the squared action distance, the KL of two Gaussians of one fixed
  width up to a factor);
* ``value``: the critic's value of the attacked observation (PPO / A2C ``V(s)``; SAC, TD3,
  DDPG ``Q(s, pi(s))``; DQN ``max_a Q(s, a)``).

FGSM is one signed-gradient step of the whole budget; for ``kl`` it starts from a random
point of the budget box (the divergence's gradient is zero at the clean observation; Wong et
al. 2020 do the same). PGD takes ``steps`` signed steps of ``step_size`` (default
``2.5 epsilon / steps``, Madry et al. 2018), each projected onto the budget box intersected
with the observation space, and keeps each row's best iterate (its start included, so PGD on
``value`` never raises the value). ``epsilon: 0`` returns the clean observations exactly.
The result's metrics hold ``attack/kl`` (mean divergence from the clean action distribution)
and, where there is a critic, ``attack/value_drop`` (mean clean minus attacked value).

**Adversarial training** (an agent entry's ``adversarial_training``): a seeded ``rate`` of the
training observations (rows of each step) is replaced by their attacked version, computed with
the current policy and the current ``VecNormalize`` statistics
(:class:`AdversarialTraining` inside :class:`qdrl_envs.poisoning.VectorAdversarialObservation`).
**Poisoned training** (``train_wrappers``) applies :mod:`qdrl_envs.poisoning`'s vector wrappers
to the training env only (its vector twin keeps its speed): see
:func:`qdrl_bench.registry.make_train_env`.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qdrl_bench import registry
from qdrl_bench.conditions import ConditionSpec
from qdrl_bench.learning_curve import error_text
from qdrl_bench.provenance import code_version
from qdrl_bench.spec import RunSpec
from qdrl_bench.store import FAILED, FINISHED, NOT_APPLICABLE, ConditionResult

# torch, stable-baselines3, qiskit, qiskit-aer and qdrl_agents are imported where a condition
# is evaluated: the runner imports this module, and the CLI must start at once.

__all__ = [
    "BASELINE",
    "CLASSICAL_EXECUTOR",
    "MAX_NOISY_QUBITS",
    "AdversarialTraining",
    "ConditionNotApplicable",
    "ConditionTask",
    "attack_observations",
    "conditions_for",
    "device_circuit",
    "eval_env_factory",
    "evaluate_conditions",
    "evaluate_lockstep",
    "evaluate_saved",
    "fake_backend",
    "has_saved_agent",
    "make_device_executor",
    "make_noise_model",
    "not_applicable_results",
    "promote_agent",
    "staging_dir",
    "training_metrics",
]

MAX_NOISY_QUBITS = 12
"""The most qubits a noisy condition simulates (a density matrix of 4**n entries)."""

_NON_GATES = frozenset({"measure", "reset", "delay", "barrier", "for_loop", "if_else",
                        "switch_case", "while_loop", "box"})


CLASSICAL_EXECUTOR = "a classical agent: no quantum circuit to run on another executor"
"""The reason a classical agent's ``executor`` condition is not applicable."""
BASELINE = "a baseline: conditions evaluate trained agents"
"""The reason a baseline's conditions are not applicable."""


class ConditionNotApplicable(ValueError):
    """The condition does not apply to this agent or env (the message says why)."""


# ----------------------------------------------------------------------------- saved agents


@dataclass(frozen=True)
class ConditionTask:
    """Evaluate a finished run's missing conditions from its saved agent (sent to a worker)."""

    run: RunSpec
    conditions: tuple[ConditionSpec, ...]
    agent_dir: str


def staging_dir(agent_dir: str | Path) -> Path:
    """Where a run writes its exported agent until the driver has stored its result."""
    return Path(f"{agent_dir}.new")


def has_saved_agent(agent_dir: str | Path | None) -> bool:
    """Whether ``agent_dir`` holds an exported agent (its ``agent.json`` and ``policy.pt``)."""
    if agent_dir is None:
        return False
    base = Path(agent_dir)
    return (base / "agent.json").is_file() and (base / "policy.pt").is_file()


def promote_agent(agent_dir: str | Path, keep: bool = True) -> None:
    """Move a run's staged export into ``agent_dir`` (``keep``) or discard it.

    Called by the driver once the run's result is in the store: the saved agent is the one
    whose result is stored (a redo that did not finish leaves the old agent in place).
    """
    new, final = staging_dir(agent_dir), Path(agent_dir)
    if not new.exists():
        return
    if not keep:
        shutil.rmtree(new, ignore_errors=True)
        return
    old = Path(f"{agent_dir}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def conditions_for(run: RunSpec) -> tuple[ConditionSpec, ...]:
    """The sweep's conditions that apply to this run's agent label."""
    return tuple(c for c in run.eval.conditions if c.applies_to(run.agent.label))


def _result(cond: ConditionSpec, status: str, **kw: Any) -> ConditionResult:
    config = {**cond.config, "series": cond.series, "axis": cond.axis,
              "strength": cond.strength}
    return ConditionResult(name=cond.name, config_hash=cond.config_hash, kind=cond.kind,
                           status=status, config=config, code_version=code_version(), **kw)


def not_applicable_results(conditions: Iterable[ConditionSpec],
                           reason: str) -> tuple[ConditionResult, ...]:
    """``not_applicable`` results of ``conditions``, all for ``reason``."""
    return tuple(_result(c, NOT_APPLICABLE, reason=reason) for c in conditions)


# ----------------------------------------------------------------------------- lockstep evaluation


def scalar_infos(info: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a step's info (the physics an evaluation averages)."""
    out: dict[str, float] = {}
    for k, v in info.items():
        if isinstance(v, (bool, np.bool_)) or k.startswith("_") or k in ("episode",
                                                                           "TimeLimit.truncated"):
            continue
        if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v):
            out[k] = float(v)
    return out


Transform = Callable[[np.ndarray, Sequence[int]], np.ndarray]
"""``transform(observations of the active episodes, their episode indices) -> what the agent
sees`` (raw observations in, raw observations out; the normaliser comes after)."""


def evaluate_lockstep(policy: Any, envs: Sequence[Any], seed: int, *,
                      obs_filter: Callable[[np.ndarray], np.ndarray] | None = None,
                      transform: Transform | None = None,
                      ) -> tuple[list[float], dict[str, float]]:
    """Play one episode per env in lockstep, every step's observations in one ``predict``.

    Env ``k`` is reset with ``seed + k``, so the episodes are those of
    :func:`qdrl_bench.execute.evaluate` with ``len(envs)`` episodes: same returns (up to the
    float rounding of a batch against single rows) and the same ``eval/`` info means.

    Args:
        policy: SB3-style ``predict(obs_batch, deterministic=True) -> (actions, state)``.
        envs: One single env per episode (the agent's action adapter applied).
        seed: Seed of the first episode.
        obs_filter: The agent's frozen observation normaliser (after ``transform``).
        transform: Changes what the agent sees (observation noise, an attack).

    Returns:
        The episode returns and the ``eval/<info key>`` means.
    """
    k_total = len(envs)
    obs: list[Any] = [env.reset(seed=seed + k)[0] for k, env in enumerate(envs)]
    totals = np.zeros(k_total)
    steps = np.zeros(k_total, dtype=np.int64)
    ep_sums: list[dict[str, float]] = [defaultdict(float) for _ in range(k_total)]
    active = list(range(k_total))
    while active:
        batch = np.stack([np.asarray(obs[k]) for k in active])
        seen = batch if transform is None else transform(batch, active)
        if obs_filter is not None:
            seen = obs_filter(seen)
        actions, _ = policy.predict(seen, deterministic=True)
        still = []
        for j, k in enumerate(active):
            obs[k], reward, terminated, truncated, info = envs[k].step(actions[j])
            totals[k] += float(reward)
            steps[k] += 1
            for key, value in scalar_infos(info).items():
                ep_sums[k][key] += value
            if not (terminated or truncated):
                still.append(k)
        active = still
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for k in range(k_total):
        for key, value in ep_sums[k].items():
            sums[key] += value / steps[k]
            counts[key] += 1
    return [float(t) for t in totals], {f"eval/{k}": sums[k] / counts[k] for k in sums}


# ----------------------------------------------------------------------------- noise models


def _gate_arities(circuit: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for inst in circuit.data:
        name = inst.operation.name
        if name in _NON_GATES:
            continue
        out[name] = inst.operation.num_qubits
    return out


def make_noise_model(circuit: Any, components: Sequence[Mapping[str, Any]]) -> Any:
    """The Aer noise model of an ``executor`` condition's logical noise, for ``circuit``.

    ``depolarizing`` and ``thermal`` errors go on every gate of the circuit by its arity (one-
    and two-qubit gates), composed where both are given; ``readout`` is not part of it (see
    the module manual). Returns ``None`` when nothing is noisy.

    Raises:
        ValueError: If the circuit has gates on more than two qubits.
    """
    from qiskit_aer.noise import NoiseModel, depolarizing_error, thermal_relaxation_error

    arities = _gate_arities(circuit)
    wide = sorted(n for n, a in arities.items() if a > 2)
    if wide:
        raise ValueError(f"noise on gates of more than two qubits is not modelled; the circuit "
                         f"has {wide} (transpile it to one- and two-qubit gates)")
    errors: dict[int, Any] = {}

    def add(arity: int, error: Any) -> None:
        errors[arity] = error if arity not in errors else errors[arity].compose(error)

    for comp in components:
        if comp["kind"] == "depolarizing":
            for arity, key in ((1, "p1"), (2, "p2")):
                if comp[key] > 0:
                    add(arity, depolarizing_error(comp[key], arity))
        elif comp["kind"] == "thermal":
            t1, t2 = comp["t1_us"] * 1e3, comp["t2_us"] * 1e3  # ns
            one = thermal_relaxation_error(t1, t2, comp["gate_time_1q_ns"])
            two = thermal_relaxation_error(t1, t2, comp["gate_time_2q_ns"])
            add(1, one)
            add(2, two.expand(two))
    if not errors:
        return None
    model = NoiseModel()
    for arity, error in sorted(errors.items()):
        names = sorted(n for n, a in arities.items() if a == arity)
        if names:
            model.add_all_qubit_quantum_error(error, names)
    return model


_BACKENDS: dict[str, Any] = {}


def fake_backend(name: str) -> Any:
    """An instance of ``qiskit_ibm_runtime.fake_provider.<name>`` (cached per process).

    Raises:
        ImportError: If qiskit-ibm-runtime is not installed.
        ValueError: If there is no such fake backend (the message lists some).
    """
    if name not in _BACKENDS:
        from qiskit_ibm_runtime import fake_provider

        cls = getattr(fake_provider, name, None)
        if not isinstance(cls, type) or not name.startswith("Fake"):
            names = sorted(n for n in dir(fake_provider) if n.startswith("Fake"))
            raise ValueError(f"no fake backend {name!r} in qiskit_ibm_runtime.fake_provider; "
                             f"e.g. {names[:8]} ({len(names)} in all)")
        _BACKENDS[name] = cls()
    return _BACKENDS[name]


def _readout_p(target: Any, qubit: int) -> float:
    meas = target.get("measure") if "measure" in target.operation_names else None
    prop = None if meas is None else meas.get((qubit,))
    if prop is None or prop.error is None:
        return 0.0
    p01 = getattr(prop, "prob_meas1_prep0", None)
    p10 = getattr(prop, "prob_meas0_prep1", None)
    if p01 is not None and p10 is not None and abs(p01 - p10) > 1e-12:
        raise ValueError(f"qubit {qubit}: asymmetric readout errors ({p01}, {p10}) are not "
                         "modelled (symmetric flips only)")
    return float(prop.error)


def _best_qubits(backend: Any, n: int) -> list[int]:
    """A connected set of ``n`` physical qubits with low two-qubit and readout errors (greedy)."""
    target = backend.target
    edges: dict[tuple[int, int], float] = {}
    for name in target.operation_names:
        if name in _NON_GATES:
            continue
        for qargs, prop in (target[name] or {}).items():
            if qargs is not None and len(qargs) == 2:
                err = 0.0 if prop is None or prop.error is None else float(prop.error)
                a, b = sorted(qargs)
                edges[(a, b)] = min(edges.get((a, b), 1.0), err)
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    readout = [_readout_p(target, q) for q in range(backend.num_qubits)]
    best: tuple[float, list[int]] | None = None
    for start in range(backend.num_qubits):
        chosen, cost = [start], readout[start]
        while len(chosen) < n:
            options = [(edges[tuple(sorted((q, r)))] + readout[r], r)
                       for q in chosen for r in neighbours[q] if r not in chosen]
            if not options:
                break
            c, r = min(options)
            chosen.append(r)
            cost += c
        if len(chosen) == n and (best is None or cost < best[0]):
            best = (cost, chosen)
    if best is None:
        raise ValueError(f"{backend.name} has no connected set of {n} qubits")
    return sorted(best[1])


def device_circuit(built: Any, params: Mapping[str, Any]) -> tuple[Any, Any, list[float],
                                                                      list[int]]:
    """Transpile a built circuit for a fake backend (see the module manual).

    Returns:
        ``(built circuit on the chosen qubits renumbered 0..n-1, its noise model, readout
        flip probability per qubit, the physical qubits)``.

    Raises:
        ConditionNotApplicable: If the circuit needs more qubits than the device has.
        ValueError: On a bad ``qubits`` list (not ``n`` connected qubits of the device) or a
            transpilation that drops parameters.
    """
    from qiskit import transpile
    from qiskit.transpiler import CouplingMap
    from qiskit_aer.noise import NoiseModel
    from qiskit_aer.noise.device import basic_device_gate_errors

    from qdrl_agents import circuit_from_qiskit

    backend = fake_backend(params["backend"])
    n = built.n_qubits
    if n > backend.num_qubits:
        raise ConditionNotApplicable(f"the circuit has {n} qubits, {params['backend']} "
                                     f"{backend.num_qubits}")
    phys = list(params["qubits"]) if params.get("qubits") else _best_qubits(backend, n)
    if len(phys) != n or max(phys) >= backend.num_qubits:
        raise ValueError(f"qubits={phys}: need {n} distinct physical qubits of "
                         f"{params['backend']} (0..{backend.num_qubits - 1})")
    index = {q: i for i, q in enumerate(phys)}
    pairs = [(index[a], index[b]) for a, b in backend.coupling_map.get_edges()
             if a in index and b in index]
    coupling = CouplingMap(pairs)
    if n > 1 and (coupling.size() != n or not coupling.is_connected()):
        raise ValueError(f"qubits {phys} of {params['backend']} are not connected")
    basis = [g for g in backend.operation_names if g not in _NON_GATES]
    isa = transpile(built.circuit, basis_gates=basis, coupling_map=coupling if n > 1 else None,
                    initial_layout=list(range(n)),
                    optimization_level=params["optimization_level"],
                    seed_transpiler=params["seed_transpiler"])
    observables = [o.apply_layout(isa.layout, num_qubits=n) if isa.layout is not None else o
                   for o in built.observables]
    lost = sorted(str(p) for p in set(built.inputs) | set(built.weights)
                  if p not in set(isa.parameters))
    if lost:
        raise ValueError(f"transpiling for {params['backend']} dropped parameters {lost[:5]}; "
                         "use optimization_level 0 or 1")
    device = circuit_from_qiskit(isa, input_params=list(built.inputs),
                                 weight_params=list(built.weights), observables=observables)
    model = NoiseModel(basis_gates=basis)
    for name, qubits, error in basic_device_gate_errors(target=backend.target):
        if all(q in index for q in qubits):
            model.add_quantum_error(error, name, [index[q] for q in qubits])
    readout = [_readout_p(backend.target, q) for q in phys]
    return device, model, readout, phys


# ----------------------------------------------------------------------------- the executor


def _device_executor_class() -> type:
    """The class of :func:`make_device_executor`, defined on first use (it imports torch)."""
    global _DEVICE_EXECUTOR
    if _DEVICE_EXECUTOR is not None:
        return _DEVICE_EXECUTOR
    import torch
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2

    from qdrl_agents.executors import Executor

    class DeviceExecutor(Executor):
        __doc__ = make_device_executor.__doc__

        def __init__(self, built: Any, *, shots: int | None,
                     noise: Sequence[Mapping[str, Any]], seed: Sequence[int]) -> None:
            super().__init__(built)
            device = next((c for c in noise if c["kind"] == "fake_backend"), None)
            if device is not None:
                circuit_built, model, readout, self.physical_qubits = device_circuit(
                    built, device)
            else:
                circuit_built, model = built, make_noise_model(built.circuit, noise)
                p = next((c["p"] for c in noise if c["kind"] == "readout"), 0.0)
                readout, self.physical_qubits = [p] * built.n_qubits, []
            n = circuit_built.n_qubits
            if model is not None and n > MAX_NOISY_QUBITS:
                raise ConditionNotApplicable(
                    f"a noisy condition simulates the circuit's density matrix: {n} qubits > "
                    f"MAX_NOISY_QUBITS={MAX_NOISY_QUBITS}")
            terms: dict[str, int] = {}
            rows: list[list[tuple[int, float]]] = []  # per output: (term index, coefficient)
            const = np.zeros(built.n_outputs)
            factors: list[float] = []
            for k, obs in enumerate(circuit_built.observables):
                row = []
                for label, coeff in obs.to_list():
                    if abs(complex(coeff).imag) > 1e-12:
                        raise ValueError(f"observable {k} has a complex coefficient {coeff}")
                    c = float(complex(coeff).real)
                    if set(label) <= {"I"}:
                        const[k] += c
                        continue
                    if label not in terms:
                        terms[label] = len(terms)
                        support = [q for q, ch in enumerate(reversed(label)) if ch != "I"]
                        factors.append(float(np.prod([1.0 - 2.0 * readout[q] for q in support])))
                    row.append((terms[label], c))
                rows.append(row)
            self.shots = shots
            self.noise = tuple(noise)
            self.noise_model = model
            self.readout = readout
            self.n_qubits_simulated = n
            self._const = const
            self._factors = np.asarray(factors)
            self._combine = np.zeros((built.n_outputs, len(terms)))
            for k, row in enumerate(rows):
                for t, c in row:
                    self._combine[k, t] += c
            self._rng = np.random.default_rng(list(seed))
            options: dict[str, Any] = {"method": "density_matrix" if model is not None
                                       else "statevector"}
            if model is not None:
                options["noise_model"] = model
            self.estimator = AerEstimatorV2(options={"default_precision": 0.0,
                                                     "backend_options": options})
            self.circuit = circuit_built.circuit
            self._parameters = (*circuit_built.inputs, *circuit_built.weights)
            self._terms = [[SparsePauliOp(label)] for label in terms]
            self.calls = 0

        @property
        def name(self) -> str:
            return "device"

        def expectations(self, inputs: Any, weights: Any) -> np.ndarray:
            """Exact (noisy) expectation of every Pauli term, ``(B, terms)``: one pub."""
            x = inputs.detach().cpu().double().numpy()
            w = np.broadcast_to(weights.detach().cpu().double().numpy(), (len(x), weights.numel()))
            if not self._terms:
                return np.zeros((len(x), 0))
            values = {self._parameters: np.concatenate([x, w], axis=1)}
            result = self.estimator.run([(self.circuit, self._terms, values)]).result()
            return np.asarray(result[0].data.evs, dtype=np.float64).T

        def _forward(self, inputs: Any, weights: Any) -> Any:
            self.calls += 1
            e = np.clip(self.expectations(inputs, weights) * self._factors, -1.0, 1.0)
            if self.shots is not None:
                counts = self._rng.binomial(self.shots, (1.0 + e) / 2.0)
                e = 2.0 * counts / self.shots - 1.0
            out = e @ self._combine.T + self._const
            return torch.as_tensor(out, dtype=inputs.dtype, device=inputs.device)

        def _repr_extra(self) -> str:
            kinds = [c["kind"] for c in self.noise]
            return f", shots={self.shots}, noise={kinds}, qubits={self.n_qubits_simulated}"

    _DEVICE_EXECUTOR = DeviceExecutor
    return _DEVICE_EXECUTOR


_DEVICE_EXECUTOR: type | None = None


def make_device_executor(built: Any, *, shots: int | None = None,
                         noise: Sequence[Mapping[str, Any]] = (),
                         seed: Sequence[int] = (0,)) -> Any:
    """A circuit on qiskit-aer with a condition's noise, readout errors and shots (forward only).

    Returns an :class:`qdrl_agents.executors.Executor` (so ``QuantumLayer`` takes it; its class
    is defined on first use, as it imports torch): the ``qiskit``
    executor computes the exact (noisy) expectation value of every distinct Pauli term of the
    observables, on the logical circuit or, for a ``fake_backend``, on the device circuit
    (:func:`device_circuit`); readout errors scale each term, shots sample it (see the module
    manual). Not differentiable: it is for evaluation.

    Args:
        built: The layer's circuit.
        shots: Shots per Pauli term and call (``None``: exact expectation values).
        noise: The condition's noise components.
        seed: Seeds the shot-noise generator (a sequence of ints).
    """
    return _device_executor_class()(built, shots=shots, noise=noise, seed=seed)


# ----------------------------------------------------------------------------- attacks


def _policy_parts(policy: Any) -> tuple[Callable[[Any, Any], Any], Callable[[Any], Any]]:
    """``(divergence(clean input, attacked input) -> (B,), value(input) -> (B,))`` of a policy."""
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.dqn.policies import DQNPolicy
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy
    from torch.distributions import Categorical, Normal, kl_divergence

    def kl(p: Any, q: Any) -> Any:
        if isinstance(p, list):
            return sum(kl(a, b) for a, b in zip(p, q, strict=True))
        d = kl_divergence(p, q)
        return d.sum(dim=tuple(range(1, d.dim()))) if d.dim() > 1 else d

    if isinstance(policy, ActorCriticPolicy):
        def dist(x: Any) -> Any:
            return policy.get_distribution(x).distribution

        def value(x: Any) -> Any:
            return policy.predict_values(x).reshape(-1)
    elif isinstance(policy, SACPolicy):
        def dist(x: Any) -> Any:
            mean, log_std, _ = policy.actor.get_action_dist_params(x)
            return Normal(mean, log_std.exp())

        def value(x: Any) -> Any:
            a = policy.actor(x, deterministic=True)
            return torch.min(torch.cat(policy.critic(x, a), dim=1), dim=1).values
    elif isinstance(policy, TD3Policy):
        def divergence(clean: Any, adv: Any) -> Any:
            with torch.no_grad():
                a = policy.actor(clean)
            return ((policy.actor(adv) - a) ** 2).sum(dim=1)

        def value(x: Any) -> Any:
            return policy.critic.q1_forward(x, policy.actor(x)).reshape(-1)

        return divergence, value
    elif isinstance(policy, DQNPolicy):
        def dist(x: Any) -> Any:
            return Categorical(logits=policy.q_net(x))

        def value(x: Any) -> Any:
            return policy.q_net(x).max(dim=1).values
    else:
        raise ConditionNotApplicable(f"no attack objective for {type(policy).__name__}")

    def divergence(clean: Any, adv: Any) -> Any:
        with torch.no_grad():
            p = dist(clean)
        return kl(p, dist(adv))

    return divergence, value


def _torch_normalizer(normalizer: Any, dtype: Any) -> Callable[[Any], Any]:
    import torch

    if normalizer is None:
        return lambda x: x
    mean = torch.as_tensor(normalizer.mean, dtype=dtype)
    std = torch.as_tensor(np.sqrt(normalizer.var + normalizer.epsilon), dtype=dtype)
    clip = normalizer.clip_obs
    return lambda x: torch.clamp((x - mean) / std, -clip, clip)


def _budget_scale(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    span = (np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64))
    return np.where(np.isfinite(span), span, 1.0)


def attack_observations(policy: Any, obs: np.ndarray, *, low: np.ndarray, high: np.ndarray,
                        knobs: Mapping[str, Any], normalizer: Any = None,
                        rngs: Sequence[np.random.Generator] | None = None,
                        ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """FGSM or PGD on a batch of raw observations (see the module manual).

    Args:
        policy: An SB3 policy (MLP or quantum; SB3's PPO, A2C, SAC, TD3, DDPG, DQN policies).
        obs: Raw observations, ``(B, n)``.
        low: The observation space's lower bounds (the attacked observations stay inside).
        high: Its upper bounds.
        knobs: ``attack``, ``epsilon`` (x range), ``objective``, ``steps``, ``step_size``,
            ``random_start`` (as the ``adversarial`` condition's).
        normalizer: The agent's frozen ``VecNormalize`` statistics
            (:class:`qdrl_bench.sharing.ObsNormalizer`), or ``None``.
        rngs: One generator per row for the random start (default: one seeded with 0).

    Returns:
        The attacked raw observations (``obs``'s dtype) and per-row measures: ``kl``
        (divergence from the clean action distribution) and ``value_drop`` (clean minus
        attacked value).
    """
    import torch

    obs = np.asarray(obs)
    flat = obs.reshape(len(obs), -1).astype(np.float64)
    low64 = np.broadcast_to(np.asarray(low, dtype=np.float64).reshape(-1), flat.shape[1:])
    high64 = np.broadcast_to(np.asarray(high, dtype=np.float64).reshape(-1), flat.shape[1:])
    scale = _budget_scale(low64, high64)
    eps = float(knobs["epsilon"]) * scale
    lo, hi = np.maximum(low64, flat - eps), np.minimum(high64, flat + eps)
    divergence, value = _policy_parts(policy)
    dtype = next(policy.parameters()).dtype
    norm = _torch_normalizer(normalizer, dtype)
    shape = obs.shape

    def seen(x: np.ndarray | Any) -> Any:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=dtype)
        return norm(t.reshape(shape))

    clean_in = seen(flat)
    objective = knobs["objective"]

    def losses(x: Any) -> Any:
        if objective == "kl":
            return -divergence(clean_in, seen(x))
        return value(seen(x))

    x = flat.copy()
    if float(knobs["epsilon"]) > 0:
        if knobs["random_start"]:
            gens = rngs or [np.random.default_rng(0)] * len(flat)
            noise = np.stack([g.uniform(-1.0, 1.0, flat.shape[1]) for g in gens])
            x = np.clip(flat + noise * eps, lo, hi)
        pgd = knobs["attack"] == "pgd"
        steps = int(knobs["steps"]) if pgd else 1
        size = knobs.get("step_size")
        alpha = (float(size) if size else 2.5 * float(knobs["epsilon"]) / steps) * scale \
            if pgd else eps
        best, best_loss = x.copy(), np.full(len(flat), np.inf)
        with torch.enable_grad():
            for _ in range(steps):
                xt = torch.as_tensor(x, dtype=dtype).requires_grad_(True)
                loss = losses(xt)
                (grad,) = torch.autograd.grad(loss.sum(), xt)
                current = loss.detach().double().numpy()
                better = current < best_loss
                best[better], best_loss[better] = x[better], current[better]
                x = np.clip(x - alpha * np.sign(grad.double().numpy()), lo, hi)
        if pgd:
            with torch.no_grad():
                last = losses(torch.as_tensor(x, dtype=dtype)).double().numpy()
            better = last < best_loss
            best[better] = x[better]
            x = best
    with torch.no_grad():
        adv_in = seen(x)
        kl = divergence(clean_in, adv_in).double().numpy()
        drop = (value(clean_in) - value(adv_in)).double().numpy()
    out = x.reshape(shape).astype(obs.dtype if obs.dtype.kind == "f" else np.float32)
    return out, {"kl": kl, "value_drop": drop}


class AdversarialTraining:
    """The attack of adversarial training: ``attack(raw observation rows) -> attacked rows``.

    Set as the ``attack`` of :class:`qdrl_envs.poisoning.VectorAdversarialObservation` (which
    draws the ``rate`` of rows); until :meth:`bind` gives it the model's policy it returns the
    rows unchanged. It attacks with the current policy and, when a ``VecNormalize`` is bound,
    its current statistics.

    Args:
        knobs: The agent entry's ``adversarial_training`` (adversarial knobs and ``rate``).
        low: The observation space's lower bounds.
        high: Its upper bounds.
        seed: Seeds the random starts.
    """

    def __init__(self, knobs: Mapping[str, Any], low: np.ndarray, high: np.ndarray,
                 seed: int) -> None:
        self.knobs = dict(knobs)
        self.rate = float(knobs["rate"])
        self.low, self.high = np.asarray(low), np.asarray(high)
        self.rng = np.random.default_rng([int(knobs.get("seed", 0)), int(seed), 0xAD7])
        self.policy: Any = None
        self.vec_normalize: Any = None

    def bind(self, policy: Any, vec_normalize: Any = None) -> None:
        """Attack with ``policy`` (and ``vec_normalize``'s live statistics) from now on."""
        self.policy, self.vec_normalize = policy, vec_normalize

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The attacked version of ``rows`` (raw observations)."""
        if self.policy is None or len(rows) == 0:
            return rows
        from qdrl_bench.sharing import ObsNormalizer

        vn = self.vec_normalize
        normalizer = ObsNormalizer.of(vn) if vn is not None and vn.norm_obs else None
        was_training = self.policy.training
        self.policy.set_training_mode(False)
        try:
            out, _ = attack_observations(self.policy, rows, low=self.low, high=self.high,
                                         knobs=self.knobs, normalizer=normalizer,
                                         rngs=[self.rng] * len(rows))
        finally:
            self.policy.set_training_mode(was_training)
        return out


# ----------------------------------------------------------------------------- conditions


def _episode_rngs(seed: int, eval_seed: int, episodes: int) -> list[np.random.Generator]:
    return [np.random.default_rng([int(seed), int(eval_seed) + k]) for k in range(episodes)]


def _evaluate_one(model: Any, normalizer: Any, cond: ConditionSpec, make_env: Callable[[], Any],
                  episodes: int, eval_seed: int) -> tuple[list[float], dict[str, float]]:
    from gymnasium import spaces

    from qdrl_agents.layers import QuantumLayer, swap_executor

    envs = [make_env() for _ in range(episodes)]
    try:
        space = envs[0].observation_space
        p = cond.params
        if cond.kind == "executor":
            layers = [m for m in model.policy.modules() if isinstance(m, QuantumLayer)]
            if not layers:
                raise ConditionNotApplicable(CLASSICAL_EXECUTOR)
            index = {id(layer): i for i, layer in enumerate(layers)}

            def factory(layer: Any) -> Any:
                return make_device_executor(layer.built, shots=p["shots"], noise=p["noise"],
                                            seed=(p["seed"], eval_seed, index[id(layer)]))

            with swap_executor(model.policy, factory) as swapped:
                returns, metrics = evaluate_lockstep(model, envs, eval_seed,
                                                     obs_filter=normalizer)
                metrics["executor/qubits"] = float(max(e.executor.n_qubits_simulated
                                                       for e in swapped))
                metrics["executor/calls"] = float(sum(e.executor.calls for e in swapped))
            return returns, metrics
        if not isinstance(space, spaces.Box):
            raise ConditionNotApplicable(f"{cond.kind} needs a Box observation space, got "
                                         f"{space}")
        rngs = _episode_rngs(p["seed"], eval_seed, episodes)
        low, high = space.low, space.high
        if cond.kind == "obs_noise":
            sigma = p["scale"] * _budget_scale(low, high).reshape(space.shape)

            def noisy(batch: np.ndarray, active: Sequence[int]) -> np.ndarray:
                noise = np.stack([rngs[k].normal(0.0, 1.0, space.shape) for k in active])
                return np.clip(batch + noise * sigma, low, high).astype(space.dtype)

            return evaluate_lockstep(model, envs, eval_seed, obs_filter=normalizer,
                                     transform=noisy)
        measures: dict[str, list[float]] = defaultdict(list)
        policy = model.policy
        policy.set_training_mode(False)

        def attacked(batch: np.ndarray, active: Sequence[int]) -> np.ndarray:
            out, info = attack_observations(policy, batch, low=low, high=high, knobs=p,
                                            normalizer=normalizer,
                                            rngs=[rngs[k] for k in active])
            for key, values in info.items():
                measures[key].extend(float(v) for v in values)
            return out

        returns, metrics = evaluate_lockstep(model, envs, eval_seed, obs_filter=normalizer,
                                             transform=attacked)
        for key, values in measures.items():
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                metrics[f"attack/{key}"] = float(np.mean(finite))
        return returns, metrics
    finally:
        for env in envs:
            env.close()


def evaluate_conditions(model: Any, normalizer: Any, run: RunSpec,
                        conditions: Sequence[ConditionSpec],
                        make_env: Callable[[], Any]) -> tuple[ConditionResult, ...]:
    """Evaluate a trained agent under each condition (never raises for one that fails).

    Args:
        model: The trained SB3 model.
        normalizer: Its frozen observation normaliser (:class:`qdrl_bench.sharing.
            ObsNormalizer`), or ``None``.
        run: The run (its evaluation episodes and seeds).
        conditions: The conditions to evaluate.
        make_env: Builds one evaluation env (the agent's action adapter applied).

    Returns:
        One result per condition: ``finished``, ``not_applicable`` (with the reason) or
        ``failed`` (with the error).
    """
    out = []
    eval_seed = run.eval.seed + 1000 * run.seed
    for cond in conditions:
        t0 = time.perf_counter()
        try:
            returns, metrics = _evaluate_one(model, normalizer, cond, make_env,
                                             run.eval.episodes, eval_seed)
        except ConditionNotApplicable as exc:
            out.append(_result(cond, NOT_APPLICABLE, reason=str(exc)))
            continue
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # a library's BaseException (qiskit's Rust panics)
            out.append(_result(cond, FAILED, reason=error_text(exc),
                               wall_s=time.perf_counter() - t0))
            continue
        arr = np.asarray(returns, dtype=np.float64)
        out.append(_result(cond, FINISHED, mean=float(arr.mean()), std=float(arr.std()),
                           returns=tuple(float(r) for r in arr), metrics=metrics,
                           wall_s=time.perf_counter() - t0))
    return tuple(out)


def eval_env_factory(run: RunSpec) -> Callable[[], Any]:
    """Builds the run's evaluation env with the agent's action adapter (as the run's own)."""
    from qdrl_envs.wrappers import adapt_action_space

    entry = registry.get_agent(run.agent.name)
    adapter = dict(run.agent.kwargs.get("adapter") or {})

    def make() -> Any:
        env = registry.make_env(run.env.id, run.env.kwargs, run.env.max_episode_steps)
        return adapt_action_space(env, entry.action_need, **adapter)[0]

    return make


def evaluate_saved(task: ConditionTask) -> tuple[ConditionResult, ...]:
    """Evaluate the missing conditions of a finished run from its saved agent.

    Returns:
        One result per condition of the task (``failed`` for all, with the reason, when the
        saved agent cannot be loaded).
    """
    from qdrl_bench.sharing import import_agent

    try:
        model, normalizer = import_agent(task.agent_dir)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:
        reason = f"cannot load the saved agent {task.agent_dir}: {error_text(exc)}"
        return tuple(_result(c, FAILED, reason=reason) for c in task.conditions)
    return evaluate_conditions(model, normalizer, task.run, task.conditions,
                               eval_env_factory(task.run))


def training_metrics(vec_env: Any) -> dict[str, float]:
    """What the training wrappers of a training env did, as ``train/`` metrics.

    ``train/poisoned_reward_fraction`` and ``train/poisoned_observation_fraction``: the
    fraction of row-steps the poisoning wrappers corrupted; ``train/attacked_fraction``: of
    row-steps adversarial training attacked.
    """
    from qdrl_envs.wrappers import (
        VectorAdversarialObservation,
        VectorPoisonedObservation,
        VectorPoisonedReward,
    )

    env, seen = vec_env, 0
    while hasattr(env, "venv") and seen < 16:  # SB3 wrappers, then the VectorEnvAdapter
        env, seen = env.venv, seen + 1
    out: dict[str, float] = {}
    while env is not None and seen < 32:
        if isinstance(env, VectorPoisonedReward) and env.steps:
            out["train/poisoned_reward_fraction"] = env.poisoned_steps / env.steps
        elif isinstance(env, VectorPoisonedObservation) and env.steps:
            out["train/poisoned_observation_fraction"] = env.poisoned_steps / env.steps
        elif isinstance(env, VectorAdversarialObservation) and env.steps:
            out["train/attacked_fraction"] = env.attacked_steps / env.steps
        env, seen = getattr(env, "env", None), seen + 1
    return out
