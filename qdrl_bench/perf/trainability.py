"""Trainability: Var[dC/dtheta] against qubit count, local vs global cost (paper Sec. III-D2).

For the package's default circuit (re-uploading RY-RZ, circular CZ) at a fixed depth, the mean
over weights of Var[dC/dtheta_k] over uniformly random weights, for the local cost <Z_0> and the
global cost <Z...Z>, at every qubit count; then the fitted rate r of Var ~ 2^(-r n). A global
cost plateaus (r near 1) at any depth; a local one decays much slower on shallow circuits and
joins it once the circuit is deep (try ``--layers 2`` and ``--layers 20``).

Run: ``python -m qdrl_bench.perf.trainability`` (``--help`` for options). Importable pieces:
:func:`variance_curves` returns the results, :func:`format_report` prints them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from qdrl_agents.analysis import GradientVariance, gradient_variance_sweep, variance_decay_rate
from qdrl_agents.circuits import CircuitSpec


def variance_curves(
    qubits: Sequence[int],
    n_layers: int,
    costs: Sequence[str] = ("local", "global"),
    n_samples: int = 500,
    seed: int = 0,
) -> dict[str, list[GradientVariance]]:
    """One `gradient_variance_sweep` over ``qubits`` per cost."""
    spec = CircuitSpec(n_qubits=min(qubits), n_layers=n_layers)
    return {
        cost: gradient_variance_sweep(
            spec, n_qubits=qubits, cost=cost, n_samples=n_samples, seed=seed
        )
        for cost in costs
    }


def format_report(curves: dict[str, list[GradientVariance]]) -> str:
    """A table of mean Var[dC/dtheta] per qubit count and cost, with the fitted decay rates."""
    costs = list(curves)
    first = curves[costs[0]]
    lines = [
        f"mean Var[dC/dtheta] over {first[0].n_samples} random weight vectors, "
        f"{first[0].n_layers} layers (RY-RZ, circular CZ)",
        "n_qubits  " + "  ".join(f"{c:>10}" for c in costs),
    ]
    for i, point in enumerate(first):
        row = "  ".join(f"{curves[c][i].mean_variance:10.3e}" for c in costs)
        lines.append(f"{point.n_qubits:8d}  {row}")
    if len(first) >= 2:
        rates = "  ".join(f"{variance_decay_rate(curves[c]):10.2f}" for c in costs)
        lines.append(f"{'rate r':>8}  {rates}   (Var ~ 2^(-r n))")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qubits", type=int, nargs="+", default=[2, 4, 6, 8, 10])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--costs", nargs="+", default=["local", "global"])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    curves = variance_curves(args.qubits, args.layers, args.costs, args.samples, args.seed)
    print(format_report(curves))
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
