"""Agreement matrix of the statevector executor on qiskit-machine-learning style circuits.

For every feature map (zz, z,
pauli) x ansatz (real_amplitudes, efficient_su2, n_local with crx and with rzz entanglers,
excitation_preserving) x entanglement (linear, full) x qubits x reps, the circuit
``feature_map.compose(ansatz)`` with Z on every qubit is evaluated by
:class:`~qdrl_agents.executors.StatevectorExecutor` (whichever path it takes, float64 and
float32) and compared with

* Qiskit's ``Statevector(bound).expectation_value`` (values), and
* qiskit-machine-learning's ``EstimatorQNN`` on the exact ``StatevectorEstimator`` (values,
  and its parameter-shift input and weight gradients), up to ``--qnn-qubits`` qubits (the
  parameter-shift reference costs ``2 * n_params`` circuits per row).

Prints one row per (feature map, ansatz) with the maximum errors over the rest, then the overall
maxima. Usage::

    python -m qdrl_bench.perf.circuit_agreement --qubits 1-8 --reps 1-3 --qnn-qubits 4
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from qiskit.circuit import QuantumCircuit
from qiskit.circuit.library import (
    efficient_su2,
    excitation_preserving,
    n_local,
    pauli_feature_map,
    real_amplitudes,
    z_feature_map,
    zz_feature_map,
)
from qiskit.quantum_info import SparsePauliOp, Statevector

from qdrl_agents.circuits import BuiltCircuit, circuit_from_qiskit
from qdrl_agents.executors import StatevectorExecutor

FEATURE_MAPS: dict[str, Callable[[int, str, int], QuantumCircuit]] = {
    "zz_feature_map": lambda n, ent, r: zz_feature_map(n, reps=r, entanglement=ent),
    "z_feature_map": lambda n, ent, r: z_feature_map(n, reps=r),
    "pauli_feature_map": lambda n, ent, r: pauli_feature_map(
        n, reps=r, entanglement=ent, paulis=["Y", "XZ"] if n > 1 else ["Y"]
    ),
}
ANSATZES: dict[str, Callable[[int, str, int], QuantumCircuit]] = {
    "real_amplitudes": lambda n, ent, r: real_amplitudes(n, reps=r, entanglement=ent),
    "efficient_su2": lambda n, ent, r: efficient_su2(n, reps=r, entanglement=ent),
    "n_local(ry,crx)": lambda n, ent, r: n_local(n, "ry", "crx", entanglement=ent, reps=r),
    "n_local(ry rz,rzz)": lambda n, ent, r: n_local(
        n, ["ry", "rz"], "rzz", entanglement=ent, reps=r
    ),
    "excitation_preserving": lambda n, ent, r: excitation_preserving(
        n, entanglement=ent, reps=r
    ),
}
ENTANGLEMENTS = ("linear", "full")
METRICS = ("sv64", "sv32", "qnn_val", "qnn_dx64", "qnn_dw64", "qnn_dx32", "qnn_dw32",
           "dx32_rel")


def _range(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def _statevector(built: BuiltCircuit, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    rows = []
    for row in x:
        binding = dict(zip(built.inputs, row.tolist(), strict=True))
        binding.update(zip(built.weights, w.tolist(), strict=True))
        state = Statevector(built.circuit.assign_parameters(binding))
        rows.append([state.expectation_value(o).real for o in built.observables])
    return np.array(rows)


def _jacobians(executor: StatevectorExecutor, x: torch.Tensor, w: torch.Tensor
               ) -> tuple[np.ndarray, np.ndarray]:
    """(B, out, n_in) and (B, out, n_w) by autograd."""
    jx = torch.autograd.functional.jacobian(lambda a: executor(a, w), x)  # (B, out, B, in)
    jw = torch.autograd.functional.jacobian(lambda b: executor(x, b), w)  # (B, out, w)
    return torch.einsum("bobi->boi", jx).double().numpy(), jw.double().numpy()


def _max(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def run_case(fmap: str, ansatz: str, ent: str, n: int, reps: int, batch: int,
             with_qnn: bool, seed: int) -> dict[str, object] | None:
    """Errors of one circuit; ``None`` if Qiskit cannot build it (e.g. zz on one qubit)."""
    try:
        fm, an = FEATURE_MAPS[fmap](n, ent, reps), ANSATZES[ansatz](n, ent, reps)
    except Exception:  # qiskit refuses e.g. a two-qubit Pauli on one qubit
        return None
    observables = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], n) for q in range(n)]
    built = circuit_from_qiskit(fm.compose(an), fm.parameters, an.parameters, observables)
    executor = StatevectorExecutor(built)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-math.pi, math.pi, (batch, built.n_input_params))
    w = rng.uniform(-math.pi, math.pi, built.n_weights)
    x64, w64 = torch.tensor(x), torch.tensor(w)
    start = time.perf_counter()
    v64 = executor(x64, w64).numpy()
    elapsed = time.perf_counter() - start
    v32 = executor(x64.float(), w64.float()).double().numpy()
    reference = _statevector(built, x, w)
    result: dict[str, object] = {
        "path": executor.path,
        "sv64": _max(v64, reference),
        "sv32": _max(v32, reference),
        "forward_s": elapsed,
    }
    if with_qnn:
        from qiskit.primitives import StatevectorEstimator
        from qiskit_machine_learning.neural_networks import EstimatorQNN

        qnn = EstimatorQNN(circuit=built.circuit, estimator=StatevectorEstimator(),
                           observables=observables, input_params=list(built.inputs),
                           weight_params=list(built.weights), input_gradients=True,
                           default_precision=0.0)
        result["qnn_val"] = _max(v64, np.asarray(qnn.forward(x, w)))
        qdx, qdw = qnn.backward(x, w)
        dx64, dw64 = _jacobians(executor, x64, w64)
        dx32, dw32 = _jacobians(executor, x64.float(), w64.float())
        result["qnn_dx64"] = _max(dx64, np.asarray(qdx))
        result["qnn_dw64"] = _max(dw64, np.asarray(qdw))
        result["qnn_dx32"] = _max(dx32, np.asarray(qdx))
        result["qnn_dw32"] = _max(dw32, np.asarray(qdw))
        scale = float(np.max(np.abs(qdx))) if np.asarray(qdx).size else 0.0
        if scale > 1e-3:  # (a circuit whose outputs ignore the inputs has no scale)
            result["dx32_rel"] = result["qnn_dx32"] / scale
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the matrix, print the table and the maximum errors; return the maxima."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qubits", default="1-8", help="qubit range, e.g. 1-8")
    parser.add_argument("--reps", default="1-3", help="reps range (feature map and ansatz)")
    parser.add_argument("--qnn-qubits", type=int, default=4,
                        help="compare with EstimatorQNN up to this many qubits (0: never)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.set_num_threads(1)

    overall: dict[str, float] = dict.fromkeys(METRICS, 0.0)
    counts = {"fused": 0, "general": 0, "qnn": 0}
    header = f"{'feature map':18s} {'ansatz':22s} {'cases':>5s} {'fused':>5s} " + " ".join(
        f"{m:>9s}" for m in METRICS)
    print(header)
    print("-" * len(header))
    start = time.perf_counter()
    for fmap in FEATURE_MAPS:
        for ansatz in ANSATZES:
            row: dict[str, float] = {}
            cases = fused = 0
            for ent in ENTANGLEMENTS:
                for n in _range(args.qubits):
                    for reps in _range(args.reps):
                        res = run_case(fmap, ansatz, ent, n, reps, args.batch,
                                       n <= args.qnn_qubits, args.seed + n + 10 * reps)
                        if res is None:
                            continue
                        cases += 1
                        fused += res["path"] == "fused"
                        counts[str(res["path"])] += 1
                        counts["qnn"] += "qnn_val" in res
                        for m in METRICS:
                            if m in res:
                                row[m] = max(row.get(m, 0.0), float(res[m]))
                                overall[m] = max(overall[m], float(res[m]))
            cells = " ".join(f"{row[m]:9.1e}" if m in row else f"{'-':>9s}" for m in METRICS)
            print(f"{fmap:18s} {ansatz:22s} {cases:5d} {fused:5d} {cells}", flush=True)
    print("-" * len(header))
    print(f"{counts['fused'] + counts['general']} circuits ({counts['fused']} fused, "
          f"{counts['general']} general path; {counts['qnn']} also against EstimatorQNN) in "
          f"{time.perf_counter() - start:.0f} s")
    print("max errors: " + ", ".join(f"{m}={overall[m]:.2e}" for m in METRICS))
    print("  sv64/sv32: values vs Statevector (float64 / float32 simulation); qnn_val: float64 "
          "values vs EstimatorQNN; qnn_dx*/qnn_dw*: input / weight gradients vs EstimatorQNN; "
          "dx32_rel: qnn_dx32 relative to the circuit's largest input gradient")
    return overall


if __name__ == "__main__":
    main()
