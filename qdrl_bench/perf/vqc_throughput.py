"""Throughput of the variational-circuit executors: statevector, qiskit and PennyLane.

The ``executors`` section: forward and forward+backward wall time at batch 1, 32 and 256 for
4 qubits x 5 layers, 8 x 5 and 12 x 3 (re-uploading, RY-RZ, circular CZ, Z on every qubit),
for the ``statevector`` executor, the ``qiskit`` executor (``EstimatorQNN`` on the exact
``StatevectorEstimator`` with parameter-shift gradients; batch 1 and 32 only) and, when
PennyLane imports (optional extra), PennyLane ``default.qubit`` with the torch interface and
backprop on the same circuit.

Targets (forward+backward): ``statevector`` >= 1000x faster than ``qiskit`` at batch 32 and
>= 3x faster than PennyLane at batch 256, on every size.

The ``estimators`` section times the ``qiskit`` executor on its two exact estimators, Qiskit's
reference ``StatevectorEstimator`` (the default) and qiskit-aer's ``EstimatorV2``
(``estimator="aer"``), forward and forward+backward at batch 1 and forward at batch 32, as
ratios measured in the same run, and checks that the two agree to 1e-10 (values and
parameter-shift gradients).

The ``tutorial`` section times qiskit-machine-learning's tutorial network, a *user* circuit
(:func:`~qdrl_agents.circuits.circuit_from_qiskit`, compiled by the ``statevector`` executor's
general path: ``zz_feature_map``'s angles are not affine): ``zz_feature_map(4)`` (reps 2, full
entanglement) composed with ``real_amplitudes(4, reps=3)`` (reverse-linear CX, qiskit's
default), 4 inputs, 16 weights, Z on every qubit (4 outputs). Forward and forward+backward
(inputs and weights require grad; backward of the sum) at batch 1, 32 and 256 for
``statevector`` in float64 and float32 (inputs, weights and simulation in that precision),
PennyLane ``lightning.qubit`` with adjoint differentiation (float64; when PennyLane and
pennylane-lightning import) and the ``qiskit`` executor (exact ``StatevectorEstimator``,
parameter shift), measured once per cell at batch 1 and 32; its batch-256 row is extrapolated
linearly through those two and marked ``qiskit-extr`` (``--tutorial-qiskit-batches 1 32 256``
measures it instead, in minutes; in the one run that took both, the measured batch-256
forward+backward was about 1.4x above the line and the forward on it, so the extrapolated
ratio errs low). Before timing it prints the largest value and gradient
differences of statevector float64 against float32, PennyLane and qiskit (tolerance 1e-6 on the
values; 1e-5 for float32). Targets (forward+backward): >= 1000x faster than ``qiskit`` at batch
32, >= 10x faster than PennyLane lightning at batch 256. Run it with ``OMP_NUM_THREADS`` set
(e.g. 1): lightning's OpenMP threads follow it, torch's follow ``--threads``.

The ``paths`` section is the fused path's regression check: ``StatevectorExecutor(built)``
(fused) against ``StatevectorExecutor(built, path="general")`` on the 4x5 project circuit
(``--paths-size``) at ``--batches``, interleaved in the same run; it prints general / fused
time ratios (> 1: the fused program is faster, as it must be) and the largest value difference.

Run: ``python -m qdrl_bench.perf.vqc_throughput`` (``--help`` for options; ``--sections
tutorial paths`` for a subset). Importable pieces: :func:`bench_executors` returns the rows,
:func:`format_report` prints them; likewise :func:`bench_estimators`, :func:`bench_tutorial`
(with :func:`tutorial_circuit`, :func:`pennylane_tutorial_function`,
:func:`check_tutorial_agrees`) and :func:`bench_paths`; :func:`main` calls the sections in turn
(``executors``, ``estimators``, ``tutorial``, ``paths``, ``ppo``).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from qiskit.circuit.library import real_amplitudes, zz_feature_map
from stable_baselines3 import PPO

from qdrl_agents import QuantumActorCriticPolicy
from qdrl_agents.circuits import (
    BuiltCircuit,
    CircuitSpec,
    build_circuit,
    circuit_from_qiskit,
    entangling_pairs,
)
from qdrl_agents.executors import QiskitExecutor, StatevectorExecutor
from qdrl_agents.executors.qiskit_estimator import ESTIMATORS

SIZES: tuple[tuple[int, int], ...] = ((4, 5), (8, 5), (12, 3))
BATCHES: tuple[int, ...] = (1, 32, 256)
QISKIT_BATCHES: tuple[int, ...] = (1, 32)
TARGET_VS_QISKIT = 1000.0  # at batch 32, forward+backward
TARGET_VS_PENNYLANE = 3.0  # at batch 256, forward+backward
ESTIMATOR_BATCH = 1  # the estimators section: a forward+backward takes seconds per row
ESTIMATOR_FORWARD_BATCH = 32  # the estimators section's forward-only timing
EXACT_TOLERANCE = 1e-10  # reference vs Aer, values and gradients


@dataclass(frozen=True)
class Timing:
    """One measured cell: seconds per call (median over repeats; best of the rounds)."""

    backend: str
    n_qubits: int
    n_layers: int
    batch: int
    forward_s: float
    forward_backward_s: float
    repeats: int


def bench_spec(n_qubits: int, n_layers: int) -> CircuitSpec:
    """The benchmark circuit: re-uploading, RY-RZ, circular CZ, Z on every qubit."""
    return CircuitSpec(
        n_qubits=n_qubits,
        n_layers=n_layers,
        rotation="ryrz",
        entanglement="circular",
        entangler="cz",
        encoding="ry",
        reupload=True,
        readout="z",
    )


def pennylane_function(
    built: BuiltCircuit,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The same circuit as a PennyLane ``default.qubit`` QNode (torch, backprop), or None.

    Args:
        built: A circuit built from :func:`bench_spec`.

    Returns:
        ``f(inputs (B, n_input_params), weights) -> (B, n_qubits)``, or ``None`` if PennyLane
        does not import.
    """
    try:
        import pennylane as qml  # an optional extra
    except ImportError:
        return None
    spec = built.spec
    n, layers = spec.n_qubits, spec.n_layers
    pairs = entangling_pairs(n, spec.entanglement)
    device = qml.device("default.qubit", wires=n)

    @qml.qnode(device, interface="torch", diff_method="backprop")
    def circuit(x: torch.Tensor, w: torch.Tensor) -> list:
        def rotations(block: int) -> None:
            for q in range(n):
                qml.RY(w[(block * n + q) * 2], wires=q)
                qml.RZ(w[(block * n + q) * 2 + 1], wires=q)

        for layer in range(layers):
            for q in range(n):
                qml.RY(x[..., layer * n + q], wires=q)
            rotations(layer)
            for a, b in pairs:
                qml.CZ(wires=[a, b])
        rotations(layers)
        return [qml.expval(qml.PauliZ(q)) for q in range(n)]

    def run(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out = torch.stack(list(circuit(x, w)), dim=-1)
        return out if out.dim() == 2 else out.unsqueeze(0)

    return run


def _time(
    fn: Callable[[], object], min_seconds: float, max_repeats: int, warmup: bool = True
) -> tuple[float, int]:
    if warmup:
        fn()  # compilation, caches
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < max_repeats:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if time.perf_counter() - start > min_seconds and len(samples) >= 3:
            break
    return statistics.median(samples), len(samples)


def time_executor(
    name: str,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    built: BuiltCircuit,
    batch: int,
    *,
    min_seconds: float = 1.0,
    max_repeats: int = 200,
    seed: int = 0,
    warmup: bool = True,
    backward_repeats: int | None = None,
    dtype: torch.dtype = torch.float32,
    n_layers: int | None = None,
) -> Timing:
    """Time forward (no grad) and forward+backward (grad of the sum) of one executor.

    Args:
        name: Backend label.
        fn: ``f(inputs, weights) -> (B, n_outputs)``.
        built: The circuit (for parameter counts).
        batch: Batch size.
        min_seconds: Keep repeating until this much time was spent (at least 3 repeats).
        max_repeats: At most this many repeats (1 forces a single timed call).
        seed: Seed of the random angles.
        warmup: Make one untimed call first (skip it for slow backends already warmed up by
            an earlier, smaller cell: a qiskit call at batch 32 takes minutes).
        backward_repeats: At most this many forward+backward repeats (default
            ``max_repeats``).
        dtype: The dtype of the input and weight tensors.
        n_layers: The layer count in the row (default: ``built.spec.n_layers``; give it for a
            user circuit, whose ``spec`` is None).

    Returns:
        The median seconds per call.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, built.n_input_params, generator=gen, dtype=dtype) * 2 - 1
    w = torch.rand(built.n_weights, generator=gen, dtype=dtype) * 6 - 3

    def forward() -> None:
        with torch.no_grad():
            fn(x, w)

    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()

    def forward_backward() -> None:
        xg.grad = wg.grad = None
        fn(xg, wg).sum().backward()

    fwd, n1 = _time(forward, min_seconds, max_repeats, warmup)
    fwb, n2 = _time(forward_backward, min_seconds, backward_repeats or max_repeats, warmup)
    if n_layers is None:
        n_layers = built.spec.n_layers
    return Timing(name, built.n_qubits, n_layers, batch, fwd, fwb, min(n1, n2))


def _keep_best(old: Timing | None, row: Timing) -> Timing:
    """The faster of two rounds of one cell, per column (repeats add up)."""
    if old is None:
        return row
    return Timing(
        row.backend,
        row.n_qubits,
        row.n_layers,
        row.batch,
        min(old.forward_s, row.forward_s),
        min(old.forward_backward_s, row.forward_backward_s),
        old.repeats + row.repeats,
    )


def bench_executors(
    sizes: Sequence[tuple[int, int]] = SIZES,
    batches: Sequence[int] = BATCHES,
    qiskit_batches: Sequence[int] = QISKIT_BATCHES,
    *,
    pennylane: bool = True,
    min_seconds: float = 0.5,
    rounds: int = 3,
    log: Callable[[str], None] | None = print,
) -> list[Timing]:
    """Time every backend on every size and batch.

    The fast backends (``statevector``, PennyLane) are timed in ``rounds`` interleaved rounds
    per (size, batch) and the best round is kept, so that load from other processes on a
    shared machine hits both alike and inflates neither ratio. The ``qiskit`` executor is timed
    once per cell (a single call takes seconds to minutes).

    Args:
        sizes: ``(n_qubits, n_layers)`` pairs.
        batches: Batch sizes for ``statevector`` and PennyLane.
        qiskit_batches: Batch sizes for the ``qiskit`` executor (one timed call each).
        pennylane: Include PennyLane when it imports.
        min_seconds: Minimum timing time per cell and round (fast backends).
        rounds: Interleaved rounds for the fast backends.
        log: Progress printer, or None.

    Returns:
        One :class:`Timing` per measured cell.
    """
    rows: list[Timing] = []

    def report(row: Timing) -> None:
        rows.append(row)
        if log is not None:
            log(
                f"  {row.backend:>11} {row.n_qubits:>2}x{row.n_layers} B={row.batch:<4} "
                f"fwd {row.forward_s * 1e3:10.3f} ms  "
                f"fwd+bwd {row.forward_backward_s * 1e3:10.3f} ms  ({row.repeats} reps)"
            )

    for n_qubits, n_layers in sizes:
        built = build_circuit(bench_spec(n_qubits, n_layers))
        fast: list[tuple[str, Callable, int]] = [("statevector", StatevectorExecutor(built), 500)]
        pl = pennylane_function(built) if pennylane else None
        if pl is not None:
            fast.append(("pennylane", pl, 100))
        for batch in batches:
            best: dict[str, Timing] = {}
            for _ in range(rounds):
                for name, fn, max_repeats in fast:
                    row = time_executor(
                        name, fn, built, batch, min_seconds=min_seconds, max_repeats=max_repeats
                    )
                    best[name] = _keep_best(best.get(name), row)
            for name, _, _ in fast:
                report(best[name])
        qiskit = QiskitExecutor(built)
        for i, batch in enumerate(qiskit_batches):
            report(time_executor("qiskit", qiskit, built, batch, max_repeats=1, warmup=i == 0))
    return rows


def check_pennylane_agrees(n_qubits: int = 4, n_layers: int = 2) -> float | None:
    """Max |statevector - PennyLane| on one random batch (float64), or None without PennyLane.

    Args:
        n_qubits: Qubits of the checked circuit.
        n_layers: Layers of the checked circuit.

    Returns:
        The largest absolute difference of the expectation values.
    """
    built = build_circuit(bench_spec(n_qubits, n_layers))
    pl = pennylane_function(built)
    if pl is None:
        return None
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, built.n_input_params, generator=gen, dtype=torch.float64)
    w = torch.randn(built.n_weights, generator=gen, dtype=torch.float64)
    return float((StatevectorExecutor(built)(x, w) - pl(x, w)).abs().max())


def _lookup(rows: Sequence[Timing], backend: str, size: tuple[int, int], batch: int) -> Timing:
    for row in rows:
        if (row.backend, row.n_qubits, row.n_layers, row.batch) == (backend, *size, batch):
            return row
    raise KeyError((backend, size, batch))


def format_report(rows: Sequence[Timing]) -> str:
    """A table of all timings, then the target ratios with pass/fail.

    Args:
        rows: Output of :func:`bench_executors`.

    Returns:
        The report text.
    """
    lines = [
        f"{'backend':>11} {'size':>5} {'batch':>5} {'fwd ms':>11} {'fwd+bwd ms':>11}",
    ]
    for r in rows:
        lines.append(
            f"{r.backend:>11} {r.n_qubits:>2}x{r.n_layers:<2} {r.batch:>5} "
            f"{r.forward_s * 1e3:11.3f} {r.forward_backward_s * 1e3:11.3f}"
        )
    lines.append("")
    lines.append("ratios (other / statevector, same run), forward+backward [forward]:")
    sizes = sorted({(r.n_qubits, r.n_layers) for r in rows})
    for size in sizes:
        for backend, batch, target in (
            ("qiskit", 32, TARGET_VS_QISKIT),
            ("pennylane", 256, TARGET_VS_PENNYLANE),
        ):
            try:
                other = _lookup(rows, backend, size, batch)
                sv = _lookup(rows, "statevector", size, batch)
            except KeyError:
                continue
            ratio = other.forward_backward_s / sv.forward_backward_s
            ratio_fwd = other.forward_s / sv.forward_s
            verdict = "PASS" if ratio >= target else "FAIL"
            lines.append(
                f"  {size[0]:>2}x{size[1]} B={batch:<3} vs {backend:<9} {ratio:10.1f}x "
                f"[{ratio_fwd:8.1f}x]  target >= {target:g}x  {verdict}"
            )
    return "\n".join(lines)


def section_executors(args: argparse.Namespace) -> None:
    """Print the executor timing table and ratios."""
    print(f"== executor throughput (CPU threads: {torch.get_num_threads()}) ==")
    diff = check_pennylane_agrees()
    if diff is not None:
        print(f"PennyLane vs statevector, max |difference| of the values: {diff:.1e}")
    rows = bench_executors(
        sizes=args.sizes,
        batches=args.batches,
        qiskit_batches=args.qiskit_batches,
        pennylane=not args.no_pennylane,
        min_seconds=args.min_seconds,
        rounds=args.rounds,
    )
    print()
    print(format_report(rows))


# ----------------------------------------------------------------------------- exact estimators


@dataclass(frozen=True)
class EstimatorAgreement:
    """Max |reference - Aer| on one circuit: values and parameter-shift gradients (float64)."""

    n_qubits: int
    n_layers: int
    values: float
    gradients: float


def _no_grad_call(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, w: torch.Tensor
) -> Callable[[], None]:
    def call() -> None:
        with torch.no_grad():
            fn(x, w)

    return call


def bench_estimators(
    sizes: Sequence[tuple[int, int]] = SIZES,
    batch: int = ESTIMATOR_BATCH,
    forward_batch: int | None = ESTIMATOR_FORWARD_BATCH,
    *,
    min_seconds: float = 0.5,
    rounds: int = 2,
    log: Callable[[str], None] | None = print,
) -> tuple[list[Timing], list[EstimatorAgreement]]:
    """Time the ``qiskit`` executor on each exact estimator, and check that they agree.

    For each size, ``QiskitExecutor(built, estimator=name)`` for every name in
    ``ESTIMATORS`` (``"reference"``: ``StatevectorEstimator``, the default; ``"aer"``:
    qiskit-aer's ``EstimatorV2``). First one float64 forward+backward per estimator on random
    angles at ``batch`` (this also warms them up) gives the agreement; then ``rounds``
    interleaved rounds of: forward at ``batch`` (repeated for ``min_seconds``, at most 50
    times) and one forward+backward, then forward alone at ``forward_batch``; the best round of
    each is kept.

    Args:
        sizes: ``(n_qubits, n_layers)`` pairs.
        batch: Batch size of the forward and forward+backward timings (parameter shift costs
            2 estimator pubs per parameter, row and observable: seconds per row).
        forward_batch: Batch size of an extra forward-only timing (``forward_backward_s`` is
            NaN in its rows), or None to skip it.
        min_seconds: Minimum forward timing time per estimator and round.
        rounds: Interleaved rounds.
        log: Progress printer, or None.

    Returns:
        The timings (backend ``"qiskit-<estimator name>"``) and one agreement per size.
    """
    rows: list[Timing] = []
    agreement: list[EstimatorAgreement] = []
    for n_qubits, n_layers in sizes:
        built = build_circuit(bench_spec(n_qubits, n_layers))
        executors = {f"qiskit-{name}": QiskitExecutor(built, estimator=name) for name in ESTIMATORS}
        gen = torch.Generator().manual_seed(n_qubits)
        x0 = torch.rand(batch, built.n_input_params, generator=gen, dtype=torch.float64) * 4 - 2
        w0 = torch.rand(built.n_weights, generator=gen, dtype=torch.float64) * 6 - 3
        results = []
        for executor in executors.values():
            x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
            out = executor(x, w)
            gx, gw = torch.autograd.grad(out.sum(), (x, w))
            results.append((out.detach(), torch.cat([gx.flatten(), gw])))
        (v1, g1), (v2, g2) = results
        check = EstimatorAgreement(
            n_qubits,
            n_layers,
            float((v1 - v2).abs().max()),
            float((g1 - g2).abs().max()),
        )
        agreement.append(check)
        if log is not None:
            log(
                f"  {n_qubits:>2}x{n_layers} B={batch}: max |reference - aer| values "
                f"{check.values:.1e}, gradients {check.gradients:.1e}"
            )
        xf = torch.rand(forward_batch or 1, built.n_input_params, generator=gen) * 2 - 1
        wf = torch.rand(built.n_weights, generator=gen) * 6 - 3
        best: dict[tuple[str, int], Timing] = {}
        for _ in range(rounds):
            for name, executor in executors.items():
                row = time_executor(
                    name,
                    executor,
                    built,
                    batch,
                    min_seconds=min_seconds,
                    max_repeats=50,
                    backward_repeats=1,
                    warmup=False,
                )
                best[name, batch] = _keep_best(best.get((name, batch)), row)
                if forward_batch:
                    seconds, repeats = _time(_no_grad_call(executor, xf, wf), min_seconds, 20)
                    row = Timing(
                        name, n_qubits, n_layers, forward_batch, seconds, math.nan, repeats
                    )
                    best[name, forward_batch] = _keep_best(best.get((name, forward_batch)), row)
        for row in best.values():
            rows.append(row)
            if log is not None:
                log(
                    f"  {row.backend:>16} {n_qubits:>2}x{n_layers} B={row.batch:<3} "
                    f"fwd {row.forward_s * 1e3:10.3f} ms  "
                    f"fwd+bwd {row.forward_backward_s * 1e3:10.1f} ms"
                )
    return rows, agreement


def format_estimator_report(
    rows: Sequence[Timing],
    agreement: Sequence[EstimatorAgreement],
    batch: int = ESTIMATOR_BATCH,
    forward_batch: int | None = ESTIMATOR_FORWARD_BATCH,
) -> str:
    """Reference / Aer time ratios per size (same run), with the agreement of the two.

    Args:
        rows: Timings from :func:`bench_estimators`.
        agreement: Agreements from :func:`bench_estimators`.
        batch: The batch of the forward and forward+backward timings.
        forward_batch: The batch of the forward-only timing, or None.

    Returns:
        The report text: per size, the forward+backward and forward ratios at ``batch``, the
        forward ratio at ``forward_batch`` (> 1: Aer is faster), and the largest value and
        gradient differences.
    """
    extra = f" [fwd B={forward_batch}]" if forward_batch else ""
    lines = [
        "reference (StatevectorEstimator) / aer (EstimatorV2) time, same run: "
        f"fwd+bwd B={batch}, fwd B={batch}{extra}; max |reference - aer| values, gradients:"
    ]
    for check in agreement:
        size = (check.n_qubits, check.n_layers)
        ref = _lookup(rows, "qiskit-reference", size, batch)
        aer = _lookup(rows, "qiskit-aer", size, batch)
        ratios = (
            f"{ref.forward_backward_s / aer.forward_backward_s:6.2f}x "
            f"{ref.forward_s / aer.forward_s:6.2f}x"
        )
        if forward_batch:
            ref_f = _lookup(rows, "qiskit-reference", size, forward_batch)
            aer_f = _lookup(rows, "qiskit-aer", size, forward_batch)
            ratios += f" [{ref_f.forward_s / aer_f.forward_s:6.2f}x]"
        exact = max(check.values, check.gradients) <= EXACT_TOLERANCE
        lines.append(
            f"  {size[0]:>2}x{size[1]:<2} {ratios}  {check.values:.1e}, {check.gradients:.1e}  "
            f"{'agree' if exact else 'DISAGREE'} (<= {EXACT_TOLERANCE:g})"
        )
    return "\n".join(lines)


def section_estimators(args: argparse.Namespace) -> None:
    """Print the qiskit executor's time on StatevectorEstimator vs exact Aer, as ratios."""
    forward_batch = args.estimator_forward_batch or None
    print(
        f"\n== qiskit executor, exact estimators (CPU threads: {torch.get_num_threads()}, "
        f"batch {args.estimator_batch}, forward-only batch {forward_batch}) =="
    )
    rows, agreement = bench_estimators(
        sizes=args.sizes,
        batch=args.estimator_batch,
        forward_batch=forward_batch,
        min_seconds=args.min_seconds,
        rounds=args.estimator_rounds,
    )
    print()
    print(format_estimator_report(rows, agreement, args.estimator_batch, forward_batch))


# ----------------------------------------------------------------------------- tutorial network

TUTORIAL_QUBITS = 4
TUTORIAL_FEATURE_REPS = 2  # zz_feature_map's default
TUTORIAL_ANSATZ_REPS = 3
TUTORIAL_BATCHES: tuple[int, ...] = (1, 32, 256)
# The qiskit executor is measured at these; larger batches are extrapolated (see below).
TUTORIAL_QISKIT_BATCHES: tuple[int, ...] = (1, 32)
TARGET_TUTORIAL_VS_LIGHTNING = 10.0  # at batch 256, forward+backward
AGREEMENT_TOLERANCE = 1e-6  # statevector float64 vs PennyLane and vs qiskit
FLOAT32_TOLERANCE = 1e-5  # statevector float32 vs float64, values
EXTRAPOLATED = "qiskit-extr"  # backend label of extrapolated qiskit rows


def tutorial_circuit(
    n_qubits: int = TUTORIAL_QUBITS,
    feature_reps: int = TUTORIAL_FEATURE_REPS,
    ansatz_reps: int = TUTORIAL_ANSATZ_REPS,
) -> BuiltCircuit:
    """qiskit-machine-learning's tutorial network as a user circuit (``spec`` is None).

    ``zz_feature_map(n_qubits, reps=feature_reps)`` (inputs) composed with
    ``real_amplitudes(n_qubits, reps=ansatz_reps)`` (weights), one output per qubit: Z on it.

    Args:
        n_qubits: Qubits (= inputs).
        feature_reps: Repetitions of the feature map.
        ansatz_reps: Repetitions of the ansatz (``(ansatz_reps + 1) * n_qubits`` weights).

    Returns:
        The circuit, from :func:`~qdrl_agents.circuits.circuit_from_qiskit`.
    """
    fmap = zz_feature_map(n_qubits, reps=feature_reps)
    ansatz = real_amplitudes(n_qubits, reps=ansatz_reps)
    observables = ["I" * (n_qubits - 1 - q) + "Z" + "I" * q for q in range(n_qubits)]
    return circuit_from_qiskit(
        fmap.compose(ansatz), fmap.parameters, ansatz.parameters, observables
    )


def pennylane_tutorial_function(
    n_qubits: int = TUTORIAL_QUBITS,
    feature_reps: int = TUTORIAL_FEATURE_REPS,
    ansatz_reps: int = TUTORIAL_ANSATZ_REPS,
    *,
    device: str = "lightning.qubit",
    diff_method: str = "adjoint",
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """:func:`tutorial_circuit` as a PennyLane QNode (torch interface), or None.

    The gates mirror qiskit 2.6's ``zz_feature_map`` and ``real_amplitudes`` exactly. Per
    feature-map repetition: H on every qubit, ``P(2 x_i)`` on qubit ``i``, then for every pair
    ``i < j`` in ``full`` order ((0,1), (0,2), ..., (n-2,n-1)):
    ``CX(i,j) P(2 (pi - x_i)(pi - x_j)) on j CX(i,j)``. The ansatz: per repetition ``r`` an RY
    layer (``RY(theta[r n + q])`` on qubit ``q``) and CX ``reverse_linear`` entanglement
    (``real_amplitudes``' default: (n-2,n-1), ..., (1,2), (0,1)), then a final RY layer. A
    batch of inputs is broadcast (``x[..., i]``); PennyLane splits it into one tape per row
    on ``lightning.qubit``. With float64 inputs the values come back as float64 (lightning
    simulates in complex128 but returns Python floats, which PennyLane's torch interface would
    turn into torch's default float32: the call runs with float64 as the default dtype).

    Args:
        n_qubits: Qubits.
        feature_reps: Repetitions of the feature map.
        ansatz_reps: Repetitions of the ansatz.
        device: PennyLane device name.
        diff_method: PennyLane differentiation method (``"adjoint"``: one forward and one
            backward sweep per tape).

    Returns:
        ``f(inputs (B, n_qubits), weights) -> (B, n_qubits)``, or ``None`` if PennyLane or the
        device is not installed.
    """
    try:
        import pennylane as qml  # an optional extra

        if device.startswith("lightning."):
            import pennylane_lightning  # noqa: F401  (its own package)
    except ImportError:
        return None
    dev = qml.device(device, wires=n_qubits)
    pairs = [(i, j) for i in range(n_qubits) for j in range(i + 1, n_qubits)]
    reverse_linear = [(i, i + 1) for i in reversed(range(n_qubits - 1))]

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
    def circuit(x: torch.Tensor, w: torch.Tensor) -> list:
        for _ in range(feature_reps):
            for q in range(n_qubits):
                qml.Hadamard(wires=q)
                qml.PhaseShift(2.0 * x[..., q], wires=q)
            for i, j in pairs:
                qml.CNOT(wires=[i, j])
                qml.PhaseShift(2.0 * (math.pi - x[..., i]) * (math.pi - x[..., j]), wires=j)
                qml.CNOT(wires=[i, j])
        for r in range(ansatz_reps + 1):
            for q in range(n_qubits):
                qml.RY(w[r * n_qubits + q], wires=q)
            if r < ansatz_reps:
                for a, b in reverse_linear:
                    qml.CNOT(wires=[a, b])
        return [qml.expval(qml.PauliZ(q)) for q in range(n_qubits)]

    def run(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # lightning returns Python floats, which PennyLane's torch interface turns into
        # torch's default dtype (float32): with float64 inputs, make that float64 for the call.
        default = torch.get_default_dtype()
        if x.dtype == torch.float64:
            torch.set_default_dtype(torch.float64)
        try:
            out = torch.stack(list(circuit(x, w)), dim=-1)
        finally:
            torch.set_default_dtype(default)
        return out if out.dim() == 2 else out.unsqueeze(0)

    return run


def _values_and_gradients(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, w: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs and the gradient of their sum in (inputs, weights), flattened."""
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = fn(xg, wg)
    gx, gw = torch.autograd.grad(out.sum(), (xg, wg))
    return out.detach().to(torch.float64), torch.cat([gx.flatten(), gw]).to(torch.float64)


def check_tutorial_agrees(
    batch: int = 4, *, pennylane: bool = True, qiskit: bool = True
) -> dict[str, tuple[float, float]]:
    """Max |statevector float64 - other| on one random batch of :func:`tutorial_circuit`.

    Args:
        batch: Rows of the random batch (inputs in [-2, 2), weights in [-3, 3)).
        pennylane: Compare with :func:`pennylane_tutorial_function` (when it imports).
        qiskit: Compare with the ``qiskit`` executor (exact reference estimator, parameter
            shift: about 0.4 s per row).

    Returns:
        ``{name: (values, gradients)}`` (the largest absolute differences of the outputs and
        of the gradients of their sum in inputs and weights), for ``"statevector float32"``
        and, where included, ``"pennylane"`` and ``"qiskit"``.
    """
    built = tutorial_circuit()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(batch, built.n_input_params, generator=gen, dtype=torch.float64) * 4 - 2
    w = torch.rand(built.n_weights, generator=gen, dtype=torch.float64) * 6 - 3
    sv = StatevectorExecutor(built)
    v0, g0 = _values_and_gradients(sv, x, w)
    others: dict[str, tuple[Callable, torch.dtype]] = {"statevector float32": (sv, torch.float32)}
    if pennylane:
        pl = pennylane_tutorial_function()
        if pl is not None:
            others["pennylane"] = (pl, torch.float64)
    if qiskit:
        others["qiskit"] = (QiskitExecutor(built), torch.float64)
    result = {}
    for name, (fn, dtype) in others.items():
        v, g = _values_and_gradients(fn, x.to(dtype), w.to(dtype))
        result[name] = (float((v - v0).abs().max()), float((g - g0).abs().max()))
    return result


def _extrapolate(rows: Sequence[Timing], batch: int) -> Timing | None:
    """The qiskit cell at ``batch``, linear through its two largest measured batches."""
    measured = sorted((r for r in rows if r.backend == "qiskit"), key=lambda r: r.batch)
    if len(measured) < 2 or batch <= measured[-1].batch:
        return None
    a, b = measured[-2], measured[-1]
    t = (batch - a.batch) / (b.batch - a.batch)
    return Timing(
        EXTRAPOLATED,
        b.n_qubits,
        b.n_layers,
        batch,
        a.forward_s + t * (b.forward_s - a.forward_s),
        a.forward_backward_s + t * (b.forward_backward_s - a.forward_backward_s),
        0,
    )


def bench_tutorial(
    batches: Sequence[int] = TUTORIAL_BATCHES,
    qiskit_batches: Sequence[int] = TUTORIAL_QISKIT_BATCHES,
    *,
    pennylane: bool = True,
    min_seconds: float = 0.5,
    rounds: int = 3,
    log: Callable[[str], None] | None = print,
) -> list[Timing]:
    """Time the tutorial network: statevector (float64, float32), PennyLane, qiskit.

    ``statevector`` float64 and float32 (inputs and weights in that dtype) and PennyLane
    ``lightning.qubit`` with adjoint differentiation (float64) are timed in ``rounds``
    interleaved rounds per batch, keeping the best; the ``qiskit`` executor (exact reference
    ``StatevectorEstimator``, parameter shift) once per cell of ``qiskit_batches``. Batches
    above the largest of those get an extrapolated qiskit row (backend ``"qiskit-extr"``,
    0 repeats): linear in the batch through the two largest measured ones (parameter shift
    costs the same per row; the straight line keeps the fixed per-call cost).

    Args:
        batches: Batch sizes of the fast backends.
        qiskit_batches: Batch sizes at which the ``qiskit`` executor is measured (one call).
        pennylane: Include PennyLane when it imports.
        min_seconds: Minimum timing time per cell and round (fast backends).
        rounds: Interleaved rounds for the fast backends.
        log: Progress printer, or None.

    Returns:
        One :class:`Timing` per cell (``n_layers`` is the ansatz's repetitions).
    """
    built = tutorial_circuit()
    layers = TUTORIAL_ANSATZ_REPS
    rows: list[Timing] = []

    def report(row: Timing) -> None:
        rows.append(row)
        if log is not None:
            log(
                f"  {row.backend:>11} B={row.batch:<4} fwd {row.forward_s * 1e3:10.3f} ms  "
                f"fwd+bwd {row.forward_backward_s * 1e3:10.3f} ms  ({row.repeats} reps)"
            )

    sv = StatevectorExecutor(built)
    fast: list[tuple[str, Callable, int, torch.dtype]] = [
        ("sv-float64", sv, 500, torch.float64),
        ("sv-float32", sv, 500, torch.float32),
    ]
    pl = pennylane_tutorial_function() if pennylane else None
    if pl is not None:
        fast.append(("lightning", pl, 20, torch.float64))
    for batch in batches:
        best: dict[str, Timing] = {}
        for _ in range(rounds):
            for name, fn, max_repeats, dtype in fast:
                row = time_executor(
                    name,
                    fn,
                    built,
                    batch,
                    min_seconds=min_seconds,
                    max_repeats=max_repeats,
                    dtype=dtype,
                    n_layers=layers,
                )
                best[name] = _keep_best(best.get(name), row)
        for name, *_ in fast:
            report(best[name])
    qiskit = QiskitExecutor(built)
    for i, batch in enumerate(qiskit_batches):
        report(
            time_executor(
                "qiskit", qiskit, built, batch, max_repeats=1, warmup=i == 0, n_layers=layers
            )
        )
    for batch in batches:
        row = _extrapolate(rows, batch)
        if row is not None:
            report(row)
    return rows


def format_tutorial_report(rows: Sequence[Timing]) -> str:
    """The tutorial table, then other / statevector ratios per batch, with the targets.

    Args:
        rows: Output of :func:`bench_tutorial`.

    Returns:
        The report text; extrapolated qiskit rows are marked as such.
    """
    lines = [f"{'backend':>11} {'batch':>5} {'fwd ms':>12} {'fwd+bwd ms':>12}"]
    for r in rows:
        note = "  (extrapolated, not measured)" if r.backend == EXTRAPOLATED else ""
        lines.append(
            f"{r.backend:>11} {r.batch:>5} {r.forward_s * 1e3:12.3f} "
            f"{r.forward_backward_s * 1e3:12.3f}{note}"
        )
    lines.append("")
    lines.append("ratios (other / statevector, same run), forward+backward [forward]:")
    targets = {("qiskit", 32): TARGET_VS_QISKIT, ("lightning", 256): TARGET_TUTORIAL_VS_LIGHTNING}
    size = (TUTORIAL_QUBITS, TUTORIAL_ANSATZ_REPS)
    for batch in sorted({r.batch for r in rows}):
        for other in ("qiskit", EXTRAPOLATED, "lightning"):
            for sv in ("sv-float64", "sv-float32"):
                try:
                    o, s = _lookup(rows, other, size, batch), _lookup(rows, sv, size, batch)
                except KeyError:
                    continue
                ratio = o.forward_backward_s / s.forward_backward_s
                text = (
                    f"  B={batch:<4} {other:>11} / {sv:<10} {ratio:10.1f}x "
                    f"[{o.forward_s / s.forward_s:9.1f}x]"
                )
                target = targets.get((other, batch))
                if target is not None:
                    verdict = "PASS" if ratio >= target else "FAIL"
                    text += f"  target >= {target:g}x  {verdict}"
                elif other == EXTRAPOLATED:
                    text += "  (qiskit time extrapolated)"
                lines.append(text)
    return "\n".join(lines)


def section_tutorial(args: argparse.Namespace) -> None:
    """Print the tutorial network's agreement checks, timing table and ratios."""
    print(
        f"\n== qiskit-machine-learning tutorial network: zz_feature_map({TUTORIAL_QUBITS}) + "
        f"real_amplitudes({TUTORIAL_QUBITS}, reps={TUTORIAL_ANSATZ_REPS}), Z on every qubit "
        f"(CPU threads: torch {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}) =="
    )
    built = tutorial_circuit()
    print(
        f"statevector path: {StatevectorExecutor(built).path}; {built.n_input_params} inputs, "
        f"{built.n_weights} weights, {built.n_outputs} outputs"
    )
    pennylane = not args.no_pennylane
    agreement = check_tutorial_agrees(pennylane=pennylane)
    if pennylane and "pennylane" not in agreement:
        print("PennyLane lightning.qubit is not installed: its rows are skipped")
    for name, (values, gradients) in agreement.items():
        tol = FLOAT32_TOLERANCE if "float32" in name else AGREEMENT_TOLERANCE
        verdict = "agree" if values <= tol else "DISAGREE"
        print(
            f"statevector float64 vs {name}: max |difference| values {values:.1e}, "
            f"gradients {gradients:.1e}  {verdict} (values <= {tol:g})"
        )
    rows = bench_tutorial(
        batches=args.tutorial_batches,
        qiskit_batches=args.tutorial_qiskit_batches,
        pennylane=pennylane,
        min_seconds=args.min_seconds,
        rounds=args.rounds,
    )
    print()
    print(format_tutorial_report(rows))


# ----------------------------------------------------------------------------- fused vs general


def bench_paths(
    size: tuple[int, int] = (4, 5),
    batches: Sequence[int] = BATCHES,
    *,
    min_seconds: float = 0.5,
    rounds: int = 3,
    log: Callable[[str], None] | None = print,
) -> tuple[list[Timing], float]:
    """The ``statevector`` executor's fused program vs its general one on a project circuit.

    ``StatevectorExecutor(built)`` (``path="auto"``, which picks the fused program for every
    project circuit) and ``StatevectorExecutor(built, path="general")`` on
    :func:`bench_spec` ``(*size)``, float32, timed in ``rounds`` interleaved rounds per batch
    (best kept). A regression check of the fused path: it must be the faster.

    Args:
        size: ``(n_qubits, n_layers)``.
        batches: Batch sizes.
        min_seconds: Minimum timing time per cell and round.
        rounds: Interleaved rounds.
        log: Progress printer, or None.

    Returns:
        The timings (backends ``"fused"`` and ``"general"``) and the largest value difference
        of the two programs on a random float64 batch.
    """
    built = build_circuit(bench_spec(*size))
    executors = {
        "fused": StatevectorExecutor(built),
        "general": StatevectorExecutor(built, path="general"),
    }
    if executors["fused"].path != "fused":
        raise RuntimeError(f"the {size} benchmark circuit no longer compiles to the fused path")
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(8, built.n_input_params, generator=gen, dtype=torch.float64)
    w = torch.randn(built.n_weights, generator=gen, dtype=torch.float64)
    diff = float((executors["fused"](x, w) - executors["general"](x, w)).abs().max())
    rows: list[Timing] = []
    for batch in batches:
        best: dict[str, Timing] = {}
        for _ in range(rounds):
            for name, executor in executors.items():
                row = time_executor(
                    name, executor, built, batch, min_seconds=min_seconds, max_repeats=500
                )
                best[name] = _keep_best(best.get(name), row)
        for row in best.values():
            rows.append(row)
            if log is not None:
                log(
                    f"  {row.backend:>7} {size[0]}x{size[1]} B={row.batch:<4} "
                    f"fwd {row.forward_s * 1e3:9.3f} ms  "
                    f"fwd+bwd {row.forward_backward_s * 1e3:9.3f} ms  ({row.repeats} reps)"
                )
    return rows, diff


def format_paths_report(rows: Sequence[Timing], diff: float) -> str:
    """General / fused time per batch (same run); > 1 means the fused program is faster."""
    size = (rows[0].n_qubits, rows[0].n_layers)
    lines = [
        f"general / fused time, {size[0]}x{size[1]} project circuit, same run, "
        f"forward+backward [forward] (max |fused - general| values {diff:.1e}):"
    ]
    for batch in sorted({r.batch for r in rows}):
        fused, general = _lookup(rows, "fused", size, batch), _lookup(rows, "general", size, batch)
        ratio = general.forward_backward_s / fused.forward_backward_s
        ratio_fwd = general.forward_s / fused.forward_s
        verdict = "fused faster" if min(ratio, ratio_fwd) > 1 else "FUSED NOT FASTER"
        lines.append(f"  B={batch:<4} {ratio:7.2f}x [{ratio_fwd:7.2f}x]  {verdict}")
    return "\n".join(lines)


def section_paths(args: argparse.Namespace) -> None:
    """Print the fused vs general statevector program ratios on the 4x5 project circuit."""
    size = args.paths_size
    print(
        f"\n== statevector: fused vs general program, {size[0]}x{size[1]} project circuit "
        f"(CPU threads: {torch.get_num_threads()}) =="
    )
    rows, diff = bench_paths(size, args.batches, min_seconds=args.min_seconds, rounds=args.rounds)
    print()
    print(format_paths_report(rows, diff))


def _size(text: str) -> tuple[int, int]:
    n, layers = text.lower().split("x")
    return int(n), int(layers)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=_size,
        nargs="+",
        default=list(SIZES),
        help="qubits x layers, e.g. 4x5 8x5 12x3",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--qiskit-batches", type=int, nargs="*", default=list(QISKIT_BATCHES))
    parser.add_argument("--estimator-batch", type=int, default=ESTIMATOR_BATCH)
    parser.add_argument(
        "--estimator-forward-batch",
        type=int,
        default=ESTIMATOR_FORWARD_BATCH,
        help="batch of the estimators section's forward-only timing (0: skip it)",
    )
    parser.add_argument("--estimator-rounds", type=int, default=2)
    parser.add_argument("--tutorial-batches", type=int, nargs="+", default=list(TUTORIAL_BATCHES))
    parser.add_argument(
        "--tutorial-qiskit-batches",
        type=int,
        nargs="*",
        default=list(TUTORIAL_QISKIT_BATCHES),
        help="batches at which the tutorial section measures the qiskit executor (larger "
        "tutorial batches are extrapolated, on the low side; add 256 to measure it: minutes)",
    )
    parser.add_argument(
        "--paths-size",
        type=_size,
        default=(4, 5),
        help="project circuit of the fused-vs-general section (qubits x layers)",
    )
    parser.add_argument("--no-pennylane", action="store_true")
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    parser.add_argument(
        "--sections",
        nargs="+",
        default=None,
        choices=sorted(SECTIONS),
        help="which sections to run (default: all, in order)",
    )
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- PPO steps/s


def ppo_steps_per_second(
    total_steps: int = 4096,
    n_qubits: int = 4,
    n_layers: int = 5,
    repeats: int = 2,
    ppo_kwargs: dict | None = None,
) -> dict[str, float]:
    """SB3 PPO training throughput on CartPole-v1: quantum actor vs ``MlpPolicy``, same run.

    Both use SB3's PPO defaults (one env, ``n_steps=2048``, ``batch_size=64``, ``n_epochs=10``)
    on the current torch thread count, so the figure holds the rollout (batch-1 forwards) and
    the update (forward+backward on minibatches of 64). The quantum policy is
    ``QuantumActorCriticPolicy`` with ``n_qubits`` x ``n_layers`` (re-uploading, RY-RZ,
    circular CZ, ``statevector`` executor, logits from parity readouts) and SB3's MLP critic.
    Runs alternate between the two policies; the best of ``repeats`` is kept for each.
    Target: ratio >= 0.5.

    Args:
        total_steps: Training steps per timed run (a multiple of ``n_steps``).
        n_qubits: Qubits of the quantum actor.
        n_layers: Layers of the quantum actor.
        repeats: Timed runs per policy.
        ppo_kwargs: Overrides of the PPO arguments (e.g. ``{"batch_size": 256}``).

    Returns:
        ``{"quantum_steps_per_s": ..., "mlp_steps_per_s": ..., "ratio": quantum / mlp}``.
    """
    kwargs = {"n_steps": 2048, "batch_size": 64, "n_epochs": 10, **(ppo_kwargs or {})}
    policies = {
        "quantum": (QuantumActorCriticPolicy, {"n_qubits": n_qubits, "n_layers": n_layers}),
        "mlp": ("MlpPolicy", {}),
    }
    best = dict.fromkeys(policies, 0.0)
    for _ in range(repeats):
        for name, (policy, policy_kwargs) in policies.items():
            model = PPO(
                policy, "CartPole-v1", seed=0, device="cpu", policy_kwargs=policy_kwargs, **kwargs
            )
            t0 = time.perf_counter()
            model.learn(total_timesteps=total_steps)
            best[name] = max(best[name], total_steps / (time.perf_counter() - t0))
    return {
        "quantum_steps_per_s": best["quantum"],
        "mlp_steps_per_s": best["mlp"],
        "ratio": best["quantum"] / best["mlp"],
    }


def section_ppo(args: argparse.Namespace) -> None:
    """Print SB3 PPO steps/s on CartPole-v1, quantum (4 x 5) vs MlpPolicy, as a ratio."""
    print(f"\n== SB3 PPO on CartPole-v1, steps/s (CPU threads: {torch.get_num_threads()}) ==")
    r = ppo_steps_per_second()
    verdict = "met" if r["ratio"] >= 0.5 else "MISSED"
    print(
        f"SB3 defaults (1 env, n_steps 2048, batch 64, 10 epochs), quantum 4x5 vs MlpPolicy: "
        f"{r['quantum_steps_per_s']:.0f} vs {r['mlp_steps_per_s']:.0f} steps/s "
        f"-> [{r['ratio']:.2f}x]  target >= 0.5x  {verdict}"
    )


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "executors": section_executors,
    "estimators": section_estimators,
    "tutorial": section_tutorial,
    "paths": section_paths,
    "ppo": section_ppo,
}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the selected sections (default: all registered ones) and print their reports."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.sections or list(SECTIONS):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
