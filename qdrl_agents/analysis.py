r"""Trainability probe: the variance of cost gradients over random circuit weights.

Paper Sec. III-D2 measures a quantum model's trainability by
:math:`\mathrm{Var}_\theta[\partial C / \partial \theta_k]
= \mathbb{E}_\theta[(\partial_k C)^2] - \mathbb{E}_\theta[\partial_k C]^2`. When it vanishes
exponentially in the number of qubits the landscape is a *barren plateau* (McClean et al.,
Nat. Commun. 9, 4812 (2018)): gradients are then too small to estimate with polynomially many
shots. Global costs (an observable on every qubit) plateau even for shallow circuits, local
costs (one or a few qubits) only once the circuit is deep (Cerezo et al., Nat. Commun. 12, 1791
(2021)).

* `gradient_variance`: Monte-Carlo estimate of the variance of every weight's gradient for a
  `CircuitSpec` (or a user's circuit, a `BuiltCircuit` from `circuit_from_qiskit`), weights
  drawn uniformly in :math:`[0, 2\pi)`, with exact gradients from the statevector executor,
  batched over the samples (or, as a cross-check, parameter-shift gradients from the
  ``"qiskit"`` executor, one sample at a time).
* `gradient_variance_sweep`: the same over a range of qubit counts and/or depths, a
  barren-plateau curve; `variance_decay_rate` fits :math:`\mathrm{Var} \propto 2^{-r n}`.

Example:
    >>> from qdrl_agents import CircuitSpec, gradient_variance_sweep, variance_decay_rate
    >>> curve = gradient_variance_sweep(CircuitSpec(n_qubits=2, n_layers=8),
    ...                                 n_qubits=[2, 4, 6], cost="global", n_samples=100)
    >>> [f"{r.mean_variance:.3f}" for r in curve]  # doctest: +SKIP
    ['0.115', '0.035', '0.009']
    >>> variance_decay_rate(curve) > 0.5  # Var shrinks like 2^(-r n)
    True
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from qiskit.quantum_info import SparsePauliOp

from qdrl_agents.circuits import BuiltCircuit, CircuitSpec, build_circuit, is_int
from qdrl_agents.executors import EXECUTORS, make_executor
from qdrl_agents.executors.statevector import StatevectorExecutor

__all__ = [
    "COSTS",
    "GradientVariance",
    "cost_observable",
    "gradient_variance",
    "gradient_variance_sweep",
    "variance_decay_rate",
]

#: Named costs of `gradient_variance`: ``"local"`` is :math:`\langle Z_0\rangle`, ``"global"``
#: is :math:`\langle Z_0 Z_1 \cdots Z_{n-1}\rangle`, ``"readout"`` is the mean of the spec's
#: readout observables (what a policy built on the spec would see).
COSTS: tuple[str, ...] = ("local", "global", "readout")


@dataclass(frozen=True)
class GradientVariance:
    r"""Result of `gradient_variance`.

    Attributes:
        spec: The circuit probed; ``None`` for a user's circuit (see ``circuit``).
        cost: Name of the cost (one of `COSTS`) or ``"custom"`` for a user observable.
        executor: ``"statevector"`` or ``"qiskit"``.
        n_samples: Number of random weight vectors.
        variances: ``(n_weights,)`` unbiased sample variance (``ddof=1``) of
            :math:`\partial C / \partial \theta_k` for every weight ``k``.
        means: ``(n_weights,)`` sample mean of each gradient (its expectation is exactly 0 for
            uniformly random angles: the cost is periodic in each weight).
        gradients: ``(n_samples, n_weights)`` every sampled gradient.
        weights: ``(n_samples, n_weights)`` the sampled weights, radians in :math:`[0, 2\pi)`.
        circuit: The built circuit probed (with the cost as its one observable).
    """

    spec: CircuitSpec | None
    cost: str
    executor: str
    n_samples: int
    variances: np.ndarray
    means: np.ndarray
    gradients: np.ndarray
    weights: np.ndarray
    circuit: BuiltCircuit | None = None

    @property
    def mean_variance(self) -> float:
        """Mean over the weights of the per-weight gradient variances."""
        return float(np.mean(self.variances))

    @property
    def n_qubits(self) -> int:
        """Number of qubits of the probed circuit."""
        if self.spec is not None:
            return self.spec.n_qubits
        if self.circuit is None:
            raise ValueError("GradientVariance holds neither a spec nor a circuit")
        return self.circuit.n_qubits

    @property
    def n_layers(self) -> int | None:
        """Number of layers of the probed circuit (``None`` for a user's circuit)."""
        return self.spec.n_layers if self.spec is not None else None


def cost_observable(
    spec: CircuitSpec | BuiltCircuit, cost: str | SparsePauliOp = "local"
) -> SparsePauliOp:
    """The observable whose expectation is the cost of `gradient_variance`.

    Args:
        spec: The circuit: a `CircuitSpec`, or a `BuiltCircuit` (a user's circuit from
            `circuit_from_qiskit`, whose observables ``"readout"`` averages).
        cost: One of `COSTS`, or a Hermitian ``SparsePauliOp`` on ``spec.n_qubits`` qubits
            (Qiskit little-endian order).

    Returns:
        The observable.

    Raises:
        ValueError: If ``cost`` is an unknown name or an operator of the wrong size.
    """
    n = spec.n_qubits
    if isinstance(cost, SparsePauliOp):
        if cost.num_qubits != n:
            raise ValueError(f"cost acts on {cost.num_qubits} qubits, the circuit has {n}")
        return cost
    if not isinstance(cost, str) or cost not in COSTS:
        raise ValueError(f"cost={cost!r} is not one of {list(COSTS)} or a SparsePauliOp")
    if cost == "local":
        return SparsePauliOp.from_sparse_list([("Z", [0], 1.0)], n)
    if cost == "global":
        return SparsePauliOp.from_sparse_list([("Z" * n, list(range(n)), 1.0)], n)
    built = spec if isinstance(spec, BuiltCircuit) else build_circuit(spec)
    observables = built.observables
    return (sum(observables[1:], observables[0]) / len(observables)).simplify()


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an int >= {minimum}")
    return int(value)


def gradient_variance(
    spec: CircuitSpec | BuiltCircuit,
    *,
    n_samples: int = 200,
    cost: str | SparsePauliOp = "local",
    executor: str = "statevector",
    executor_kwargs: Mapping[str, Any] | None = None,
    inputs: Sequence[float] | torch.Tensor | None = None,
    seed: int | None = 0,
    batch_size: int = 256,
) -> GradientVariance:
    r"""Estimate :math:`\mathrm{Var}_\theta[\partial C/\partial\theta_k]` for every weight.

    Draws ``n_samples`` weight vectors uniformly in :math:`[0, 2\pi)` (``torch.rand`` in
    float64 from a generator seeded with ``seed``, scaled by :math:`2\pi`), computes the
    gradient of :math:`C(\theta) = \langle\psi(x, \theta)|O|\psi(x, \theta)\rangle` at
    each, and returns the per-weight sample variances (paper Sec. III-D2).

    With ``executor="statevector"`` the weights are fed to the compiled statevector program in
    the role of its batched inputs (the circuit is affine in both vectors, so the program is
    the same), so ``batch_size`` samples are simulated, and differentiated by autograd, in one
    call: a thousand samples of a 10-qubit circuit take about a second on a CPU. With
    ``executor="qiskit"`` each sample is one ``EstimatorQNN`` forward and parameter-shift
    backward (``2 * n_weights`` circuits): a hardware-faithful cross-check, orders of
    magnitude slower.

    Args:
        spec: The circuit: a `CircuitSpec`, or a user's circuit as a `BuiltCircuit`
            (`circuit_from_qiskit`; ``"statevector"`` needs one it compiles).
        n_samples: Number of random weight vectors, >= 2.
        cost: ``"local"`` (default, :math:`Z_0`), ``"global"`` (:math:`Z^{\otimes n}`),
            ``"readout"`` (mean of the spec's readout observables) or a ``SparsePauliOp``.
        executor: ``"statevector"`` (exact autograd, batched) or ``"qiskit"`` (parameter
            shift, per sample).
        executor_kwargs: Options of the executor's constructor (e.g. ``shots=`` for
            ``"qiskit"``, ``max_fused_qubits=`` for ``"statevector"``).
        inputs: The encoding angles, ``(n_input_params,)``; ``None`` (default) means zeros,
            i.e. the ansatz alone for a spec (an RY/RX/RZ encoding of 0 is the identity; a
            user's feature map at 0 need not be).
        seed: Seed of the weight draws; ``None`` uses torch's global generator.
        batch_size: Samples per statevector call (bounds memory: the state is
            ``batch_size * 2^n`` complex128 numbers per gate layer kept for autograd).

    Returns:
        The :class:`GradientVariance` (per-weight variances, their mean, every gradient).

    Raises:
        TypeError: If ``spec`` is not a `CircuitSpec` or a `BuiltCircuit`.
        ValueError: If an argument is invalid (the message names it).
    """
    if not isinstance(spec, CircuitSpec | BuiltCircuit):
        raise TypeError(f"spec must be a CircuitSpec or a BuiltCircuit, got {type(spec).__name__}")
    n_samples = _check_int("n_samples", n_samples, 2)
    batch_size = _check_int("batch_size", batch_size, 1)
    if seed is not None:
        if not is_int(seed):
            raise ValueError(f"seed={seed!r} must be an int or None")
        seed = int(seed)
    if not isinstance(executor, str) or executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not one of {list(EXECUTORS)}")
    observable = cost_observable(spec, cost)
    base = spec if isinstance(spec, BuiltCircuit) else build_circuit(spec)
    built = dataclasses.replace(base, observables=(observable,))
    n_w, n_in = built.n_weights, built.n_input_params
    if inputs is None:
        x = torch.zeros(n_in, dtype=torch.float64)
    else:
        x = torch.as_tensor(inputs, dtype=torch.float64).detach().cpu()
        if x.shape != (n_in,):
            raise ValueError(
                f"inputs must have shape ({n_in},) (n_input_params), got {tuple(x.shape)}"
            )
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    thetas = torch.rand((n_samples, n_w), generator=generator, dtype=torch.float64) * (2 * math.pi)
    kwargs = dict(executor_kwargs or {})

    grads = []
    if executor == "statevector":
        # Swap the roles of the two parameter vectors: the weights become the batched rows.
        swapped = BuiltCircuit(
            spec=built.spec,
            circuit=built.circuit,
            inputs=built.weights,
            weights=built.inputs,
            observables=built.observables,
        )
        engine = StatevectorExecutor(swapped, **kwargs)
        for chunk in thetas.split(batch_size):
            theta = chunk.clone().requires_grad_(True)
            with torch.enable_grad():
                values = engine(theta, x)[:, 0]
                (grad,) = torch.autograd.grad(values.sum(), theta)
            grads.append(grad.detach())
    else:
        engine = make_executor(executor, built, **kwargs)
        for theta_row in thetas:
            theta = theta_row.clone().requires_grad_(True)
            with torch.enable_grad():
                value = engine(x.unsqueeze(0), theta)[0, 0]
                (grad,) = torch.autograd.grad(value, theta)
            grads.append(grad.detach().unsqueeze(0))
    gradients = torch.cat(grads).numpy()
    return GradientVariance(
        spec=built.spec,
        cost=cost if isinstance(cost, str) else "custom",
        executor=executor,
        n_samples=n_samples,
        variances=gradients.var(axis=0, ddof=1),
        means=gradients.mean(axis=0),
        gradients=gradients,
        weights=thetas.numpy(),
        circuit=built,
    )


def gradient_variance_sweep(
    spec: CircuitSpec,
    *,
    n_qubits: Sequence[int] | None = None,
    n_layers: Sequence[int] | None = None,
    **kwargs: Any,
) -> list[GradientVariance]:
    """`gradient_variance` over qubit counts and/or depths: a barren-plateau curve.

    Every point is ``spec`` with ``n_qubits`` and ``n_layers`` replaced (all other fields
    kept, so ``n_inputs`` and ``parity_groups`` must fit every size; leave them ``None``).

    Args:
        spec: The template circuit.
        n_qubits: Qubit counts; ``None`` keeps ``spec.n_qubits``.
        n_layers: Depths; ``None`` keeps ``spec.n_layers``.
        **kwargs: Options of `gradient_variance` (``cost``, ``n_samples``, ``seed``, ...),
            the same for every point.

    Returns:
        One :class:`GradientVariance` per (n_qubits, n_layers) pair, qubit counts outermost.

    Raises:
        ValueError: If neither ``n_qubits`` nor ``n_layers`` is given, or a point is invalid.
    """
    if n_qubits is None and n_layers is None:
        raise ValueError("give n_qubits and/or n_layers to sweep over")
    if not isinstance(spec, CircuitSpec):
        raise TypeError(
            f"spec must be a CircuitSpec (a sweep resizes it), got {type(spec).__name__}"
        )
    qubits = [spec.n_qubits] if n_qubits is None else list(n_qubits)
    layers = [spec.n_layers] if n_layers is None else list(n_layers)
    if not qubits or not layers:
        raise ValueError("n_qubits and n_layers must not be empty")
    return [
        gradient_variance(dataclasses.replace(spec, n_qubits=q, n_layers=depth), **kwargs)
        for q, depth in itertools.product(qubits, layers)
    ]


def variance_decay_rate(results: Sequence[GradientVariance]) -> float:
    r"""Fit :math:`\mathrm{Var}[\partial C] \approx A \cdot 2^{-r n}` over the qubit counts.

    A least-squares line through :math:`(n, \log_2 \overline{\mathrm{Var}})`, using
    `GradientVariance.mean_variance`. :math:`r \approx 1` is the 2-design (barren plateau)
    rate of a global cost; :math:`r \approx 0` means no exponential decay.

    Args:
        results: Results at (at least two) different qubit counts.

    Returns:
        The rate :math:`r`, in bits of variance lost per added qubit.

    Raises:
        ValueError: With fewer than two distinct qubit counts or a non-positive variance.
    """
    n = np.array([r.n_qubits for r in results], dtype=float)
    var = np.array([r.mean_variance for r in results], dtype=float)
    if len(set(n.tolist())) < 2:
        raise ValueError("variance_decay_rate needs results at two or more qubit counts")
    if np.any(var <= 0):
        raise ValueError("variance_decay_rate needs positive variances")
    slope = np.polyfit(n, np.log2(var), 1)[0]
    return float(-slope)
