"""Exact, batched, differentiable statevector simulation of a Qiskit circuit in torch.

The executor runs any *unitary*, parameterised Qiskit circuit: the project's own circuits
(:func:`~qdrl_agents.circuits.build_circuit`) and a user's
(:func:`~qdrl_agents.circuits.circuit_from_qiskit`: feature maps, ansatzes, library gates, any
ParameterExpression of inputs and weights). The circuit is compiled once, when the executor is
made, into one of two torch programs; ``executor.path`` says which (``path=`` forces one).

**What is refused** (a ``ValueError`` at construction, naming the instruction and what to do
instead): non-unitary instructions: ``measure`` (the executor returns expectation values;
remove the measurements), ``reset``, ``initialize`` (use ``StatePreparation``, a unitary gate),
classical control flow (``if_else``, ``for_loop``, ``while_loop``, ``switch_case``), anything on
classical bits. Also refused: a parameter outside ``inputs``/``weights``, an angle using a
function torch cannot evaluate (supported: ``+ * **``, sin, cos, tan, their inverses, exp, log,
abs, sign, sinh/cosh/tanh and inverses), a wrong-size or non-Hermitian observable.
``barrier``, ``delay``, ``id`` and global phases are dropped (no expectation value sees a
global phase); ``box`` scopes are inlined.

**Unrolling** (both paths). Composite and library gates (the class forms ``RealAmplitudes``,
``ZZFeatureMap``, ``TwoLocal``; ``PauliEvolutionGate``; a ``circuit.to_gate()``; controlled or
annotated gates outside Qiskit's standard set) are expanded through their definitions,
recursively, keeping their ParameterExpressions. The leaves are Qiskit's standard gates and
parameter-free gates of up to 10 qubits (``UnitaryGate``, a fixed sub-circuit: one exact matrix
from ``Operator``). Controlled-gate phases are Qiskit's own (its definitions and matrices).

**The fused path** takes a circuit whose parameterised leaves all act on one qubit (``rx``,
``ry``, ``rz``, ``p``, ``u``, ``u1``-``u3``, ``r``) with angles *affine* in the parameters
(``2*x + 0.3``, ``x - w``), and whose multi-qubit leaves are fixed permutation-with-phase gates
(``cx``, ``cz``, ``cy``, ``swap``, ``ccx``, ``cswap``, ...): every project circuit, and e.g.
``z_feature_map``, ``real_amplitudes``, ``efficient_su2`` with ``cx``/``cz`` entanglers. It is a
short program whose cost is dominated by a handful of batched matrix products per layer, not by
one kernel launch per gate:

1. **Blocks.** The gates are sorted, respecting their order on every qubit, into alternating
   *single-qubit blocks* and *monomial blocks* (fixed multi-qubit gates whose matrix has one
   non-zero per row and column: CNOT, CZ, CY, SWAP, Toffoli, ...). A single-qubit gate on a
   qubit no monomial gate has touched since a block joins that earlier block.
2. **Single-qubit gates** become chains of RZ/RY rotations whose angles are *affine* in the
   circuit parameters (``a . params + b``). Adjacent rotations about one axis merge
   (``RY(x) RY(w) = RY(x + w)``), and each RZ-RY-RZ window becomes one U3 (up to a global
   phase, which no expectation value sees). For the usual re-uploading RY-RZ circuit this
   leaves a single U3 per qubit and layer.
3. **All U3 matrices of the whole circuit** are built in one vectorised pass: one matrix
   product maps the batch of parameters to every gate angle, one ``cos`` gives every real and
   imaginary matrix entry (sines are shifted cosines).
4. **Fusion.** Per block, the 2x2 matrices of up to ``max_fused_qubits`` neighbouring qubits are
   Kronecker-multiplied into one ``2^k x 2^k`` matrix per batch row (all blocks at once),
   applied with one ``bmm`` while the qubit axes are cycled so the chunk always sits in the low
   bits. Elementwise work uses a "planes" layout (matrix entry, ..., batch) so the batch is
   the contiguous inner loop, and tensors are taken apart with ``split``/``unbind`` (whose
   backward is one ``cat``/``stack``) rather than slicing (whose backward writes zeros). A
   monomial block is one precomputed gather index and phase vector (for CZ layers only a sign
   vector, for CNOT layers only a permutation), folded into the gather that restores the qubit
   order after the last chunk; where the whole register fits one chunk it is folded into the
   layer matrix instead, so a layer costs a single batched matrix-vector product.
5. **Readout.** All observables come from one state: diagonal Pauli terms are a precomputed
   ``(2^n, n_outputs)`` matrix applied to ``|psi|^2`` in one matmul; off-diagonal Pauli terms
   (supported for user-built observables) use one gather per distinct X-mask.

**The general path** (:mod:`~qdrl_agents.executors.statevector_general`) takes every other
unitary circuit: non-affine angles (``zz_feature_map``'s ``2*(pi - x0)*(pi - x1)``, ``sin(x)``),
parameterised multi-qubit gates (``rzz``, ``rxx``, ``ryy``, ``rzx``, ``crx``, ``cry``, ``crz``,
``cp``, ``cu``, ``xx_plus_yy``, ``xx_minus_yy``, ...), fixed non-monomial gates (``ch``,
``ecr``, ``csx``, a ``UnitaryGate``). It simulates gate by gate on a ``(B, 2^n)`` state:

1. **Angles.** Polynomial angles (affine ones included) are expanded into monomials of the
   parameters: all of them come out of one gather-product and one matrix product. Other
   expressions (sin, exp, ...) are evaluated as torch expression trees (taken from
   ``ParameterExpression.sympify()``), so autograd sees through every angle.
2. **Gate matrices.** A standard gate's matrix is, in each angle ``t``, a combination of
   ``1, cos(t/2), sin(t/2), cos(t), sin(t)``: its coefficient matrices are fitted once, exactly,
   from Qiskit's own matrices on a 5-point grid per angle (and verified), so every phase
   convention is Qiskit's. All gates of one kind are built in one batched matrix product.
3. **Phase-and-permutation runs.** The gates are reordered (respecting each qubit's order) so
   that diagonal gates (``rz``, ``p``, ``rzz``, ``cp``, ``crz``, ``cz``, ``s``, ``t``, ...) and
   permutation gates (``cx``, ``swap``, ...) form long runs; a run is one gather and one
   ``exp(i (angles @ pattern + offset))`` factor (diagonal gates commute through permutations
   by permuting their patterns). ``zz_feature_map``'s whole ``cx p cx`` entangling block is one
   such step.
4. **Dense gates.** Consecutive single-qubit dense gates on a qubit are multiplied, those on up
   to 4 neighbouring qubits Kronecker-multiplied, and applied as one batched matrix product on
   a view of the state; a multi-qubit dense gate is one matrix product on contiguous qubits, or
   after one permutation of the state axes otherwise. The readout is the fused path's.

Both paths: gradients are exact (autograd through the program), in inputs and weights. float32
inputs simulate in complex64, float64 in complex128; tensors on CUDA run on CUDA (the constants
are cached per device and dtype). The inputs must be torch tensors (a ``TypeError`` otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from qiskit.circuit import Gate, Parameter, ParameterExpression
from qiskit.quantum_info import Operator, SparsePauliOp
from qiskit.synthesis import OneQubitEulerDecomposer

from qdrl_agents.circuits import BuiltCircuit
from qdrl_agents.executors.base import Executor
from qdrl_agents.executors.statevector_general import (
    GeneralProgram,
    _monomial,
    compile_general,
    general_constants,
    run_general,
    unroll,
)

__all__ = ["StatevectorExecutor", "compile_circuit"]

_HALF_PI = math.pi / 2
# With automatic fusion, batches up to _SMALL_BATCH on circuits of up to
# _SMALL_BATCH_FULL_FUSION_QUBITS qubits run one dense matrix per layer (measured crossover).
_SMALL_BATCH = 2
_SMALL_BATCH_FULL_FUSION_QUBITS = 5

# An affine function of the parameter columns: ({column: coefficient}, constant).
_Affine = tuple[dict[int, float], float]
_ZERO: _Affine = ({}, 0.0)


def _const(value: float) -> _Affine:
    return ({}, float(value))


def _add(a: _Affine, b: _Affine, scale_b: float = 1.0) -> _Affine:
    coefs = dict(a[0])
    for col, c in b[0].items():
        coefs[col] = coefs.get(col, 0.0) + scale_b * c
    return coefs, a[1] + scale_b * b[1]


def _is_zero(a: _Affine) -> bool:
    return a[1] == 0.0 and all(c == 0.0 for c in a[0].values())


def _affine(value: Any, columns: Mapping[Parameter, int], gate: str) -> _Affine:
    """Express a gate parameter as an affine function of the circuit parameters."""
    if isinstance(value, Parameter) and value in columns:
        return {columns[value]: 1.0}, 0.0
    if not isinstance(value, ParameterExpression):
        return _const(float(value))
    params = list(value.parameters)
    if not params:
        return _const(float(value.numeric()))
    for p in params:
        if p not in columns:
            raise ValueError(
                f"gate {gate!r} uses parameter {p.name!r}, which is neither in the circuit's "
                "inputs nor its weights ParameterVector"
            )
    zero = {p: 0.0 for p in params}
    const = float(value.bind(zero).numeric())
    coefs: dict[int, float] = {}
    for p in params:
        coefs[columns[p]] = (
            coefs.get(columns[p], 0.0) + float(value.bind({**zero, p: 1.0}).numeric()) - const
        )
    probe = {p: 0.3 + 0.17 * i for i, p in enumerate(params)}
    expected = const + sum(coefs[columns[p]] * v for p, v in probe.items())
    if abs(float(value.bind(probe).numeric()) - expected) > 1e-9 * (1 + abs(expected)):
        raise _Unsupported(
            f"gate {gate!r} has angle {value}, which is not affine in its parameters; the "
            "fused path compiles circuits linear in their parameters only"
        )
    return coefs, const


def _primitives(op: Gate, columns: Mapping[Parameter, int]) -> list[tuple[str, _Affine]]:
    """A single-qubit gate as RZ/RY rotations in application order (global phase dropped)."""
    name = op.name
    symbolic = any(isinstance(p, ParameterExpression) and len(p.parameters) > 0 for p in op.params)
    par = [_affine(p, columns, name) for p in op.params] if symbolic else None
    if par is not None:
        if name == "ry":
            return [("y", par[0])]
        if name in ("rz", "p", "u1"):
            return [("z", par[0])]
        if name == "rx":
            return [("z", _const(_HALF_PI)), ("y", par[0]), ("z", _const(-_HALF_PI))]
        if name in ("u", "u3"):
            return [("z", par[2]), ("y", par[0]), ("z", par[1])]
        if name == "u2":
            return [("z", par[1]), ("y", _const(_HALF_PI)), ("z", par[0])]
        if name == "r":  # R(theta, phi) = U3(theta, phi - pi/2, -phi + pi/2)
            lam = _add(_const(_HALF_PI), par[1], -1.0)
            phi = _add(_const(-_HALF_PI), par[1])
            return [("z", lam), ("y", par[0]), ("z", phi)]
        raise _Unsupported(
            f"the fused path cannot compile parameterised gate {name!r}; supported "
            "parameterised single-qubit gates: rx, ry, rz, p, u1, u2, u, u3, r"
        )
    matrix = op.to_matrix() if hasattr(op, "to_matrix") else Operator(op).data
    theta, phi, lam = OneQubitEulerDecomposer("U3").angles(np.asarray(matrix, dtype=complex))
    return [("z", _const(lam)), ("y", _const(theta)), ("z", _const(phi))]


def _windows(prims: list[tuple[str, _Affine]]) -> list[tuple[_Affine, _Affine, _Affine]]:
    """Merge same-axis neighbours, then group RZ(lam) RY(theta) RZ(phi) into U3 angles."""
    merged: list[tuple[str, _Affine]] = []
    for axis, angle in prims:
        if merged and merged[-1][0] == axis:
            merged[-1] = (axis, _add(merged[-1][1], angle))
        else:
            merged.append((axis, angle))
    merged = [(a, ang) for a, ang in merged if not _is_zero(ang)]
    out: list[tuple[_Affine, _Affine, _Affine]] = []
    i = 0
    while i < len(merged):
        lam = theta = phi = _ZERO
        if merged[i][0] == "z":
            lam = merged[i][1]
            i += 1
        if i < len(merged) and merged[i][0] == "y":
            theta = merged[i][1]
            i += 1
            if i < len(merged) and merged[i][0] == "z":
                phi = merged[i][1]
                i += 1
        out.append((theta, phi, lam))
    return out


@dataclass
class _Program:
    """The compiled circuit as numpy constants (device- and dtype-free)."""

    n_qubits: int
    n_inputs: int
    a_in: np.ndarray  # (n_inputs, 12 * G): input columns -> gate angle arguments
    a_w: np.ndarray  # (n_weights, 12 * G)
    b: np.ndarray  # (12 * G,)
    n_gates: int  # G, including the identity gate at index G - 1
    table: np.ndarray  # (S, n, D) gate index per block, qubit, slot (application order)
    chunks: list[tuple[int, int]]  # (first qubit, size), low qubits first
    active: np.ndarray  # (S, C) bool: block s has a gate on chunk c
    perms: list[np.ndarray | None]  # per block: monomial gather index after it (or None)
    phases: list[np.ndarray | None]  # per block: monomial phase after it (or None)
    diag: np.ndarray  # (2^n, n_out) real: diagonal Pauli terms
    offdiag: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    # (gather index i ^ xmask, (2^n, n_out) complex weights) per off-diagonal X-mask

    @property
    def n_blocks(self) -> int:
        return self.table.shape[0]


def _chunks(n: int, max_fused: int) -> list[tuple[int, int]]:
    count = -(-n // max_fused)
    sizes = [n // count + (1 if c < n % count else 0) for c in range(count)]
    starts = np.cumsum([0, *sizes[:-1]])
    return [(int(s), int(z)) for s, z in zip(starts, sizes, strict=True)]


def _observables(observables: Sequence[SparsePauliOp], n: int) -> tuple[np.ndarray, list]:
    dim = 2**n
    diag = np.zeros((dim, len(observables)))
    off: dict[int, np.ndarray] = {}
    rows = np.arange(dim)
    for o, obs in enumerate(observables):
        if not isinstance(obs, SparsePauliOp):
            obs = SparsePauliOp(obs)
        if obs.num_qubits != n:
            raise ValueError(f"observable {o} acts on {obs.num_qubits} qubits, the circuit has {n}")
        for pauli, coeff in zip(obs.paulis, obs.coeffs, strict=True):
            xmask = int(sum(1 << q for q in range(n) if pauli.x[q]))
            mat = pauli.to_matrix(sparse=True).tocsr()
            cols = mat.indices[mat.indptr[:-1]]  # one entry per row
            if not np.array_equal(cols, rows ^ xmask):
                raise ValueError(f"unexpected Pauli matrix layout for {pauli}")
            values = coeff * mat.data[mat.indptr[:-1]]
            if xmask == 0:
                if np.max(np.abs(values.imag)) > 1e-12:
                    raise ValueError(f"observable {o} is not Hermitian (term {pauli}, {coeff})")
                diag[:, o] += values.real
            else:
                off.setdefault(xmask, np.zeros((dim, len(observables)), dtype=complex))
                off[xmask][:, o] += values
    return diag, [(rows ^ x, w) for x, w in off.items()]


PATHS: tuple[str, ...] = ("auto", "fused", "general")


class _Unsupported(ValueError):
    """A construct the fused path does not compile (the general path does)."""


def compile_circuit(
    built: BuiltCircuit, *, max_fused_qubits: int = 4, path: str = "auto"
) -> _Program | GeneralProgram:
    """Compile a built circuit into the statevector program's constants.

    Args:
        built: The circuit, its parameter vectors and observables.
        max_fused_qubits: Largest number of qubits whose single-qubit gates are fused into one
            dense matrix per block (fused path only).
        path: ``"auto"`` (default): the fused program where the circuit fits it, else the
            general one; ``"fused"``: the fused program or a ``ValueError`` saying why not;
            ``"general"``: the general program (any unitary circuit).

    Returns:
        The compiled program (numpy constants): a ``_Program`` (fused) or a
        :class:`~qdrl_agents.executors.statevector_general.GeneralProgram`.

    Raises:
        ValueError: If the circuit contains a non-unitary instruction (the message names it and
            says what to do instead), a parameter outside ``inputs``/``weights``, an angle
            function that cannot be evaluated in torch, or an observable of the wrong size or
            not Hermitian; with ``path="fused"``, also a construct the fused path does not
            compile.
    """
    if path not in PATHS:
        raise ValueError(f"path={path!r} is not one of {list(PATHS)}")
    leaves = unroll(built.circuit)  # refuses non-unitary instructions, whichever the path
    diag, offdiag = _observables(built.observables, built.n_qubits)
    if path != "general":
        try:
            return _compile_fused(built, leaves, max_fused_qubits, diag, offdiag)
        except _Unsupported:
            if path == "fused":
                raise
    return compile_general(built, leaves, diag, offdiag)


def _compile_fused(
    built: BuiltCircuit,
    leaves: Sequence[tuple[Any, list[int]]],
    max_fused_qubits: int,
    diag: np.ndarray,
    offdiag: list[tuple[np.ndarray, np.ndarray]],
) -> _Program:
    """The fused program of unrolled leaves; raises ``_Unsupported`` where it does not fit."""
    n = built.n_qubits
    n_in, n_w = built.n_input_params, built.n_weights
    columns: dict[Parameter, int] = {p: i for i, p in enumerate(built.inputs)}
    columns.update({p: n_in + j for j, p in enumerate(built.weights)})

    one_q: list[list[list[tuple[str, _Affine]]]] = [[[] for _ in range(n)]]
    mono: list[tuple[np.ndarray, np.ndarray] | None] = [None]
    last_mono_touch = [-1] * n
    last_one_q = [0] * n
    current_mono = 0
    for op, qubits in leaves:
        if not isinstance(op, Gate):
            raise _Unsupported(f"the fused path cannot compile operation {op.name!r}")
        if len(qubits) == 1:
            q = qubits[0]
            block = last_mono_touch[q] + 1
            while len(one_q) <= block:
                one_q.append([[] for _ in range(n)])
                mono.append(None)
            one_q[block][q].extend(_primitives(op, columns))
            last_one_q[q] = block
            continue
        if any(isinstance(p, ParameterExpression) and len(p.parameters) > 0 for p in op.params):
            raise _Unsupported(
                f"the fused path cannot compile parameterised multi-qubit gate "
                f"{op.name!r}; parameterised gates must act on one qubit"
            )
        try:
            perm, phase = _monomial(np.asarray(Operator(op).data), qubits, n)
        except ValueError:
            raise _Unsupported(
                f"the fused path cannot compile multi-qubit gate {op.name!r}: only "
                "fixed permutation-with-phase gates (cx, cz, cy, swap, ccx, ...) are supported"
            ) from None
        block = max(current_mono, *(last_one_q[q] for q in qubits))
        while len(one_q) <= block + 1:
            one_q.append([[] for _ in range(n)])
            mono.append(None)
        previous = mono[block]
        if previous is not None:  # compose: first previous, then this gate
            perm, phase = previous[0][perm], phase * previous[1][perm]
        mono[block] = (perm, phase)
        current_mono = block
        for q in qubits:
            last_mono_touch[q] = block
    while len(one_q) > 1 and mono[-1] is None and not any(one_q[-1]):
        one_q.pop()
        mono.pop()

    # U3 angle rows of every gate; the last gate is the identity (all-zero rows).
    gates: list[tuple[_Affine, _Affine, _Affine]] = []
    slots: list[list[list[int]]] = []
    for block in one_q:
        slots.append([])
        for prims in block:
            slots[-1].append([])
            for window in _windows(prims):
                slots[-1][-1].append(len(gates))
                gates.append(window)
    gates.append((_ZERO, _ZERO, _ZERO))
    n_gates = len(gates)
    depth = max(1, max(len(s) for block in slots for s in block))
    table = np.full((len(one_q), n, depth), n_gates - 1, dtype=np.int64)
    for b, block in enumerate(slots):
        for q, s in enumerate(block):
            table[b, q, : len(s)] = s

    # Angle arguments per gate: rows 0-3 magnitudes cos(theta/2 + {0, pi/2, -pi/2, 0}),
    # rows 4-7 phases {0, lam, phi, phi + lam}, rows 8-11 the same minus pi/2 (sines).
    a_all = np.zeros((n_in + n_w, 12, n_gates))
    b_all = np.zeros((12, n_gates))
    for g, (theta, phi, lam) in enumerate(gates):
        half = (theta[0], theta[1])
        rows: list[tuple[_Affine, float, float]] = [
            (half, 0.5, 0.0),
            (half, 0.5, _HALF_PI),
            (half, 0.5, -_HALF_PI),
            (half, 0.5, 0.0),
            (_ZERO, 1.0, 0.0),
            (lam, 1.0, 0.0),
            (phi, 1.0, 0.0),
            (_add(phi, lam), 1.0, 0.0),
        ]
        rows += [(aff, s, off - _HALF_PI) for aff, s, off in rows[4:8]]
        for r, (aff, scale, offset) in enumerate(rows):
            for col, c in aff[0].items():
                a_all[col, r, g] += scale * c
            b_all[r, g] = scale * aff[1] + offset
    chunks = _chunks(n, max_fused_qubits)
    active = np.zeros((len(one_q), len(chunks)), dtype=bool)
    for c, (start, size) in enumerate(chunks):
        active[:, c] = np.any(table[:, start : start + size, :] != n_gates - 1, axis=(1, 2))
    return _Program(
        n_qubits=n,
        n_inputs=n_in,
        a_in=a_all[:n_in].reshape(n_in, 12 * n_gates),
        a_w=a_all[n_in:].reshape(n_w, 12 * n_gates),
        b=b_all.reshape(-1),
        n_gates=n_gates,
        table=table,
        chunks=chunks,
        active=active,
        perms=[m[0] if m is not None else None for m in mono],
        phases=[m[1] if m is not None else None for m in mono],
        diag=diag,
        offdiag=offdiag,
    )


def _identity_if(perm: np.ndarray | None) -> np.ndarray | None:
    if perm is None or np.array_equal(perm, np.arange(perm.size)):
        return None
    return perm


def _ones_if(phase: np.ndarray | None) -> np.ndarray | None:
    if phase is None or np.allclose(phase, 1.0, rtol=0, atol=0):
        return None
    return phase


class StatevectorExecutor(Executor):
    """Exact torch statevector executor (the default for training).

    See the module docstring for how the circuit is compiled. Differentiable in inputs and
    weights by autograd; float32 (complex64) and float64 (complex128); runs wherever the input
    tensors live (CPU or CUDA).

    Args:
        built: The circuit to evaluate.
        dtype: Simulation precision, ``torch.float32`` or ``torch.float64``; ``None`` (default)
            simulates in the dtype of the inputs. The result always has the inputs' dtype.
        max_fused_qubits: Largest group of qubits whose single-qubit gates are fused into one
            dense ``2^k x 2^k`` matrix per layer. ``None`` (default) picks 2 up to 5 qubits and
            3 above, the fastest measured on CPU for the 4x5, 8x5 and 12x3 benchmark circuits
            (``qdrl_bench/perf/vqc_throughput.py``); larger chunks mean fewer, bigger kernels.
            With ``None``, batches of 1-2 on up to 5 qubits (e.g. environment steps) use one
            dense matrix per layer instead, which is dispatch-cheaper there; when no gradient
            is needed (``torch.no_grad()``, as in a rollout) such a batch on the CPU runs that
            same program in NumPy (float64), whose per-op overhead is a fraction of torch's.
            Fused path only.
        path: ``"auto"`` (default): the fused program where the circuit fits it, else the
            general one (see the module docstring); ``"fused"`` refuses a circuit the fused
            path cannot compile; ``"general"`` forces the general program (for checks).

    Attributes:
        path: The program that runs: ``"fused"`` or ``"general"``.

    Raises:
        ValueError: If the circuit has a non-unitary instruction (the message names it and
            says what to do instead), a parameter outside the circuit's inputs and weights, an
            angle function torch cannot evaluate, or an option is invalid.
    """

    def __init__(
        self,
        built: BuiltCircuit,
        *,
        dtype: torch.dtype | None = None,
        max_fused_qubits: int | None = None,
        path: str = "auto",
    ) -> None:
        super().__init__(built)
        if dtype not in (None, torch.float32, torch.float64):
            raise ValueError(f"dtype={dtype!r} must be None, torch.float32 or torch.float64")
        if path not in PATHS:
            raise ValueError(f"path={path!r} is not one of {list(PATHS)}")
        auto = max_fused_qubits is None
        if max_fused_qubits is None:
            max_fused_qubits = 2 if built.n_qubits <= 5 else 3
        if (
            isinstance(max_fused_qubits, bool)
            or not isinstance(max_fused_qubits, int)
            or max_fused_qubits < 1
        ):
            raise ValueError(f"max_fused_qubits={max_fused_qubits!r} must be an int >= 1 or None")
        self.dtype = dtype
        self.max_fused_qubits = max_fused_qubits
        self.program = compile_circuit(built, max_fused_qubits=max_fused_qubits, path=path)
        self.path = "general" if isinstance(self.program, GeneralProgram) else "fused"
        # Small batches are dispatch-bound: there one dense matrix per layer (a single bmm per
        # layer, few ops) beats the chunked program, whose op count grows with the chunks.
        self._small_program: _Program | None = None
        if self.path == "fused" and auto and built.n_qubits <= _SMALL_BATCH_FULL_FUSION_QUBITS:
            if built.n_qubits > max_fused_qubits:
                self._small_program = compile_circuit(  # type: ignore[assignment]
                    built, max_fused_qubits=built.n_qubits, path="fused"
                )
        self._cache: dict[tuple[int, torch.device, torch.dtype], dict[str, Any]] = {}

    @property
    def name(self) -> str:
        """``"statevector"``."""
        return "statevector"

    def _repr_extra(self) -> str:
        return (
            f", dtype={self.dtype}, max_fused_qubits={self.max_fused_qubits}, path={self.path!r}"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}  # device tensors are rebuilt on first use, wherever that is
        return state

    def _constants(self, p: _Program, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        key = (id(p), device, dtype)
        if key in self._cache:
            return self._cache[key]
        cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        dim = 2**p.n_qubits

        def real(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=dtype, device=device)

        def index(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=torch.long, device=device)

        def cplx(a: np.ndarray) -> torch.Tensor:  # complex even when real: no promotion per call
            return torch.as_tensor(np.asarray(a), dtype=cdtype, device=device)

        # Chunks of equal size form a group; inside a group the gathered 2x2 matrices are laid
        # out (t, chunk) so that qubit t of every chunk of the group is one contiguous slice.
        groups: dict[int, list[int]] = {}
        for c, (_, size) in enumerate(p.chunks):
            groups.setdefault(size, []).append(c)
        qorder: list[int] = []
        group_info = []
        split: list[int] = []
        for size, cs in groups.items():
            group_info.append((size, len(cs), len(split)))
            qorder += [p.chunks[c][0] + t for t in range(size) for c in cs]
            split += [len(cs)] * size
        where = {c: (g, i) for g, (_, cs) in enumerate(groups.items()) for i, c in enumerate(cs)}
        # gathered layout (D, n in qorder, S): table is (S, n, D)
        table = p.table[:, qorder, :].transpose(2, 1, 0).reshape(-1)
        consts: dict[str, Any] = {
            "a_in_t": real(p.a_in.T.copy()),
            "a_w": real(p.a_w),
            "b": real(p.b),
            "table": index(table),
            "groups": group_info,
            "split": split,
            "where": where,
            "diag": real(p.diag),
            "offdiag": [
                (index(i), torch.as_tensor(w, dtype=cdtype, device=device)) for i, w in p.offdiag
            ],
            "single": len(p.chunks) == 1,
        }
        perms = [_identity_if(x) for x in p.perms]
        phases = [_ones_if(x) for x in p.phases]
        if consts["single"]:
            ident = np.arange(dim)
            fold_perm = np.stack([x if x is not None else ident for x in perms])
            fold_phase = np.stack([x if x is not None else np.ones(dim) for x in phases])
            consts["fold_perm"] = (
                None if all(x is None for x in perms) else index(fold_perm)[:, None, None, :]
            )
            consts["fold_phase"] = (
                None if all(x is None for x in phases) else cplx(fold_phase)[:, None, None, :]
            )
        else:
            last_size = p.chunks[-1][1]
            rot = np.arange(dim).reshape(dim >> last_size, 1 << last_size).T.reshape(-1)
            consts["first"] = (
                index(perms[0]) if perms[0] is not None else None,
                cplx(phases[0]) if phases[0] is not None else None,
            )
            consts["after"] = [
                (index(rot[x]) if x is not None else None, cplx(y) if y is not None else None)
                for x, y in zip(perms, phases, strict=True)
            ]
        self._cache[key] = consts
        return consts

    def _forward(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out_dtype = inputs.dtype
        dtype = self.dtype or inputs.dtype
        inputs, weights = inputs.to(dtype), weights.to(dtype)
        if isinstance(self.program, GeneralProgram):
            key = (id(self.program), inputs.device, dtype)
            if key not in self._cache:
                self._cache[key] = general_constants(self.program, inputs.device, dtype)
            return run_general(self.program, self._cache[key], inputs, weights).to(out_dtype)
        p = self.program
        if self._small_program is not None and inputs.shape[0] <= _SMALL_BATCH:
            p = self._small_program
        k = self._constants(p, inputs.device, dtype)
        if (k["single"] and inputs.device.type == "cpu" and inputs.shape[0] <= _SMALL_BATCH
                and not (torch.is_grad_enabled()
                         and (inputs.requires_grad or weights.requires_grad))):
            # Inference on a few rows (an environment step): the same program in NumPy, whose
            # per-op overhead is a fraction of torch's on 2^n-sized arrays.
            out = _run_single_numpy(p, self._numpy_constants(p, k), inputs.numpy(),
                                    weights.numpy())
            return torch.from_numpy(out).to(out_dtype)
        batch, dim, n = inputs.shape[0], 2**p.n_qubits, p.n_qubits
        n_blocks, depth, n_gates = p.n_blocks, p.table.shape[2], p.n_gates

        # Every gate's 2x2 matrix in "planes" layout (entry, gate, batch): the batch is the
        # contiguous inner axis, so every elementwise op below is one long vectorised loop.
        args = torch.addmm((weights @ k["a_w"] + k["b"]).unsqueeze(1), k["a_in_t"], inputs.T)
        cos = torch.cos(args.view(12, n_gates, batch))
        mag, phase_cos, phase_sin = cos.split(4)
        mats = torch.complex(mag * phase_cos, mag * phase_sin)
        g = mats.index_select(1, k["table"]).view(2, 2, depth, n, n_blocks, batch).unbind(2)
        u = g[0]  # (2, 2, n, S, B): product of each block's gates per qubit
        for gd in g[1:]:
            u = gd[:, 0:1] * u[0:1] + gd[:, 1:2] * u[1:2]
        # Kronecker product per chunk, then K^T as (S, C_g, B, 2^k, 2^k) for bmm.
        # (split/unbind, not slicing: their backward is one cat/stack, not zeros + copy.)
        parts = u.split(k["split"], dim=2)
        kts = []
        for size, n_chunks, first in k["groups"]:
            # Outer products of the flattened 2x2 matrices, (i_top j_top ... i_0 j_0, C, S, B);
            # the Kronecker index order is restored by the one permute+copy at the end. (A
            # broadcast over interleaved axes would make autograd reduce over them: ~7x slower.)
            kr = parts[first + size - 1].reshape(4, n_chunks, n_blocks, batch)
            for t in range(size - 2, -1, -1):
                ut = parts[first + t].reshape(4, n_chunks, n_blocks, batch)
                kr = (kr.unsqueeze(1) * ut.unsqueeze(0)).reshape(-1, n_chunks, n_blocks, batch)
            kr = kr.view(*([2] * (2 * size)), n_chunks, n_blocks, batch)
            order = [2 * size + 1, 2 * size, 2 * size + 2]
            order += [2 * m + 1 for m in range(size)] + [2 * m for m in range(size)]
            kt = kr.permute(order).reshape(n_blocks, n_chunks, batch, 2**size, 2**size)
            kts.append(kt)

        if k["single"]:
            mt = kts[0].squeeze(1)  # (S, B, dim, dim): M^T per block
            if k["fold_perm"] is not None:
                mt = mt.gather(3, k["fold_perm"].expand(n_blocks, batch, dim, dim))
            if k["fold_phase"] is not None:
                mt = mt * k["fold_phase"]
            mts = mt.unbind(0)
            psi = mts[0][:, 0, :]
            for m in mts[1:]:
                psi = torch.bmm(psi.unsqueeze(1), m).squeeze(1)
        else:
            psi = self._run_chunked(p, kts, k, batch, n_blocks, dim)

        probs = psi.real.square() + psi.imag.square()
        out = probs @ k["diag"]
        for gather_idx, w in k["offdiag"]:
            out = out + ((psi.conj() * psi[:, gather_idx]) @ w).real
        return out.to(out_dtype)

    def _numpy_constants(self, p: _Program, k: dict[str, Any]) -> dict[str, Any]:
        """The single-chunk program's constants as float64 / complex128 NumPy arrays."""
        key = ("numpy", id(p))
        if key not in self._cache:
            def arr(t: torch.Tensor | None, dtype: Any) -> np.ndarray | None:
                return None if t is None else t.detach().cpu().numpy().astype(dtype)

            self._cache[key] = {
                "a_in_t": arr(k["a_in_t"], np.float64),
                "a_w": arr(k["a_w"], np.float64),
                "b": arr(k["b"], np.float64),
                "table": arr(k["table"], np.int64),
                "diag": arr(k["diag"], np.float64),
                "offdiag": [(arr(i, np.int64), arr(w, np.complex128))
                            for i, w in k["offdiag"]],
                "fold_perm": arr(k["fold_perm"], np.int64),
                "fold_phase": arr(k["fold_phase"], np.complex128),
            }
        return self._cache[key]

    def _run_chunked(
        self,
        p: _Program,
        kts: list[torch.Tensor],
        k: dict[str, Any],
        batch: int,
        n_blocks: int,
        dim: int,
    ) -> torch.Tensor:
        where = k["where"]
        mats = [[kc.unbind(0) for kc in kt.unbind(0)] for kt in kts]  # [group][block][chunk]
        # block 0 acts on |0...0>: the state is the product of each chunk matrix's column 0
        psi = None
        for c in range(len(p.chunks) - 1, -1, -1):
            g, i = where[c]
            col = mats[g][0][i][:, 0, :]  # row 0 of K^T = column 0 of K, (B, 2^k)
            psi = col if psi is None else (psi[:, :, None] * col[:, None, :]).reshape(batch, -1)
        assert psi is not None
        perm, phase = k["first"]
        if perm is not None:
            psi = psi[:, perm]
        if phase is not None:
            psi = psi * phase
        last = len(p.chunks) - 1
        for s in range(1, n_blocks):
            for c, (_, size) in enumerate(p.chunks):
                x = psi.view(batch, dim >> size, 1 << size)
                if p.active[s, c]:
                    g, i = where[c]
                    x = torch.bmm(x, mats[g][s][i])
                if c < last:
                    psi = x.transpose(1, 2).reshape(batch, dim)
                    continue
                perm, phase = k["after"][s]
                if perm is None:
                    psi = x.transpose(1, 2).reshape(batch, dim)
                else:
                    psi = x.reshape(batch, dim)[:, perm]
                if phase is not None:
                    psi = psi * phase
        return psi


def _run_single_numpy(p: _Program, k: Mapping[str, Any], inputs: np.ndarray,
                      weights: np.ndarray) -> np.ndarray:
    """`StatevectorExecutor._forward` for a single-chunk program, in NumPy (no gradients).

    Step for step the torch program's single-chunk branch, in float64 / complex128: gate
    matrices from one ``cos``, per-qubit products of each block's gates, their Kronecker
    product as one ``2^n x 2^n`` matrix per block, the folded monomial layers, a chain of
    matrix-vector products from ``|0...0>``, and the readout.
    """
    batch, n, n_blocks, n_gates = inputs.shape[0], p.n_qubits, p.n_blocks, p.n_gates
    depth, dim = p.table.shape[2], 2**p.n_qubits
    args = (weights.astype(np.float64) @ k["a_w"] + k["b"])[:, None] \
        + k["a_in_t"] @ inputs.astype(np.float64).T
    cos = np.cos(args).reshape(12, n_gates, batch)
    mats = cos[0:4] * (cos[4:8] + 1j * cos[8:12])
    g = mats[:, k["table"]].reshape(2, 2, depth, n, n_blocks, batch)
    u = g[:, :, 0]
    for d in range(1, depth):
        gd = g[:, :, d]
        u = gd[:, 0:1] * u[0:1] + gd[:, 1:2] * u[1:2]
    kr = u[:, :, n - 1].reshape(4, n_blocks, batch)
    for t in range(n - 2, -1, -1):
        kr = (kr[:, None] * u[:, :, t].reshape(4, n_blocks, batch)[None]).reshape(
            -1, n_blocks, batch)
    kr = kr.reshape(*([2] * (2 * n)), n_blocks, batch)
    order = [2 * n, 2 * n + 1] + [2 * m + 1 for m in range(n)] + [2 * m for m in range(n)]
    mt = kr.transpose(order).reshape(n_blocks, batch, dim, dim)
    if k["fold_perm"] is not None:
        mt = np.take_along_axis(mt, np.broadcast_to(k["fold_perm"], mt.shape), axis=3)
    if k["fold_phase"] is not None:
        mt = mt * k["fold_phase"]
    psi = mt[0][:, 0, :]
    for s in range(1, n_blocks):
        psi = (psi[:, None, :] @ mt[s])[:, 0, :]
    out = (psi.real**2 + psi.imag**2) @ k["diag"]
    for gather_idx, w in k["offdiag"]:
        out = out + ((psi.conj() * psi[:, gather_idx]) @ w).real
    return out
