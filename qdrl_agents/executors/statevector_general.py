"""The statevector executor's general path: any unitary, parameterised Qiskit circuit.

:mod:`qdrl_agents.executors.statevector` is the manual (its module docstring says which circuits
take this path and what is refused). This module holds the three pieces of the general path:

* :func:`unroll`: the circuit as a flat list of leaf gates (standard gates and parameter-free
  gates), with composite and library gates expanded through their definitions and every
  non-unitary instruction refused with a message naming it. Both paths compile from this list.
* :func:`compile_general`: the leaves as a gate-by-gate torch program (:class:`GeneralProgram`).
* :func:`run_general`: that program on a batch, differentiable by autograd.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy
import torch
from qiskit.circuit import (
    ControlFlowOp,
    Gate,
    Instruction,
    Parameter,
    ParameterExpression,
    QuantumCircuit,
)
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.quantum_info import Operator

__all__ = ["GeneralProgram", "Leaf", "compile_general", "run_general", "unroll"]

# Instructions that do nothing to a pure state's expectation values.
SKIPPED = frozenset({"barrier", "delay", "id", "global_phase"})

# What to do instead, per refused instruction.
_HINTS = {
    "measure": "remove the measurements (e.g. circuit.remove_final_measurements()): the "
    "executor returns the observables' expectation values, not samples",
    "reset": "remove the reset: the simulation starts in |0...0> and stays a pure state",
    "initialize": "use qiskit.circuit.library.StatePreparation instead: a unitary gate that "
    "prepares the same state from the |0...0> start",
    "store": "classical variables have no meaning in an expectation-value circuit",
}
_CONTROL_FLOW_HINT = (
    "classical control flow has no meaning in an expectation-value circuit; remove it (a "
    "for_loop can be unrolled by hand)"
)

# Parameter-free gates wider than this are expanded through their definition (when they have
# one) rather than turned into a dense 2^k x 2^k matrix.
_MAX_MATRIX_QUBITS = 10
_STANDARD = get_standard_gate_name_mapping()


def _refuse(name: str, hint: str) -> ValueError:
    return ValueError(
        f"the statevector executor cannot run instruction {name!r}: it is not unitary; {hint}"
    )


def _has_free_params(op: Any) -> bool:
    return any(
        isinstance(p, ParameterExpression) and len(p.parameters) > 0
        for p in getattr(op, "params", ())
    )


def _is_standard(op: Any) -> bool:
    ref = _STANDARD.get(op.name)
    return ref is not None and type(op) is type(ref) and op.num_qubits == ref.num_qubits


def unroll(circuit: QuantumCircuit) -> list[tuple[Any, list[int]]]:
    """The circuit as leaf gates ``(operation, qubit indices)``, in circuit order.

    Leaves are Qiskit standard gates (``rx``, ``rzz``, ``cu``, ...; parameterised or not) and
    parameter-free gates of at most 10 qubits (``UnitaryGate``, a fixed composite gate: one
    matrix each). Everything else (composite and library gates such as ``RealAmplitudes``,
    ``PauliEvolutionGate``, controlled or annotated gates outside the standard set, ``box``) is
    expanded through its definition, recursively; the ParameterExpressions stay symbolic.
    ``barrier``, ``delay``, ``id`` and global phases are dropped.

    Raises:
        ValueError: On a non-unitary instruction (``measure``, ``reset``, ``initialize``,
            classical control flow, anything acting on classical bits or without a unitary
            definition); the message names it and says what to do instead.
    """
    leaves: list[tuple[Any, list[int]]] = []
    _walk(circuit, list(range(circuit.num_qubits)), leaves, ())
    return leaves


def _walk(
    circ: QuantumCircuit, qmap: list[int], leaves: list, outer: tuple[str, ...]
) -> None:
    for instruction in circ.data:
        op = instruction.operation
        name = op.name
        qubits = [qmap[circ.find_bit(q).index] for q in instruction.qubits]
        where = f" (inside {' > '.join(repr(o) for o in outer)})" if outer else ""
        if name in _HINTS:
            raise ValueError(str(_refuse(name, _HINTS[name])) + where)
        if isinstance(op, ControlFlowOp) and name != "box":
            raise ValueError(str(_refuse(name, _CONTROL_FLOW_HINT)) + where)
        if instruction.clbits:
            if op.definition is not None:  # name the non-unitary instruction inside
                _walk(op.definition, qubits, leaves, (*outer, name))
            raise ValueError(
                str(_refuse(name, "it acts on classical bits; remove it")) + where
            )
        if name in SKIPPED or not qubits:
            continue
        if name == "box":  # a scope around a unitary body: inline it
            _walk(op.blocks[0], qubits, leaves, (*outer, name))
            continue
        if not isinstance(op, Instruction):  # e.g. AnnotatedOperation, Clifford
            if not _has_free_params(op):
                leaves.append((op, qubits))
                continue
            from qiskit.transpiler.passes import HighLevelSynthesis

            one = QuantumCircuit(op.num_qubits)
            one.append(op, range(op.num_qubits))
            _walk(HighLevelSynthesis()(one), qubits, leaves, (*outer, name))
            continue
        if isinstance(op, Gate):
            free = _has_free_params(op)
            if _is_standard(op) or (not free and op.num_qubits <= _MAX_MATRIX_QUBITS):
                leaves.append((op, qubits))
                continue
        definition = op.definition
        if definition is None:
            if isinstance(op, Gate) and not _has_free_params(op):
                leaves.append((op, qubits))  # a wide fixed gate with only a matrix
                continue
            kind = "gate with parameters" if isinstance(op, Gate) else "instruction"
            raise ValueError(
                f"the statevector executor cannot run {kind} {name!r}{where}: it has no "
                "definition in terms of other gates (and, with free parameters, no matrix)"
            )
        _walk(definition, qubits, leaves, (*outer, name))


# ------------------------------------------------------------------------ angle expressions

# An expression tree of one angle: ("c", value) | ("v", column) | ("+", children) |
# ("*", children) | ("^", base, exponent) | ("f", function, child). Plain tuples, so that a
# compiled program pickles.
_FUNCTIONS = {
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "asin": torch.asin,
    "acos": torch.acos,
    "atan": torch.atan,
    "exp": torch.exp,
    "log": torch.log,
    "Abs": torch.abs,
    "sign": torch.sign,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "tanh": torch.tanh,
    "asinh": torch.asinh,
    "acosh": torch.acosh,
    "atanh": torch.atanh,
}
_IDENTITIES = frozenset({"conjugate", "re"})  # of a real angle


def _tree(expr: sympy.Expr, symbols: Mapping[str, int], gate: str) -> tuple:
    if not expr.free_symbols:
        value = complex(expr.evalf())
        if abs(value.imag) > 1e-12:
            raise ValueError(f"gate {gate!r} has a complex angle {expr}")
        return ("c", value.real)
    if isinstance(expr, sympy.Symbol):
        return ("v", symbols[expr.name])
    if isinstance(expr, sympy.Add):
        return ("+", tuple(_tree(a, symbols, gate) for a in expr.args))
    if isinstance(expr, sympy.Mul):
        return ("*", tuple(_tree(a, symbols, gate) for a in expr.args))
    if isinstance(expr, sympy.Pow):
        return ("^", _tree(expr.args[0], symbols, gate), _tree(expr.args[1], symbols, gate))
    fname = type(expr).__name__
    if fname in _IDENTITIES and len(expr.args) == 1:
        return _tree(expr.args[0], symbols, gate)
    if fname in _FUNCTIONS and len(expr.args) == 1:
        return ("f", fname, _tree(expr.args[0], symbols, gate))
    raise ValueError(
        f"gate {gate!r} has angle {expr}, whose function {fname!r} the statevector executor "
        f"cannot evaluate (supported: {', '.join(sorted(_FUNCTIONS))}, +, *, **)"
    )


def _evaluate(node: tuple, columns: Sequence[torch.Tensor]) -> torch.Tensor | float:
    kind = node[0]
    if kind == "c":
        return node[1]
    if kind == "v":
        return columns[node[1]]
    if kind in ("+", "*"):
        values = [_evaluate(a, columns) for a in node[1]]
        out = values[0]
        for v in values[1:]:
            out = out + v if kind == "+" else out * v
        return out
    if kind == "^":
        base, exponent = _evaluate(node[1], columns), _evaluate(node[2], columns)
        if isinstance(exponent, float) and exponent == 2.0:
            return base * base
        if isinstance(base, float):
            return torch.pow(base, exponent)
        return base**exponent
    return _FUNCTIONS[node[1]](_evaluate(node[2], columns))


# Polynomial angles (products of parameters, such as zz_feature_map's
# 2 (pi - x_i)(pi - x_j)) are expanded into monomials, so that every polynomial angle of the
# circuit comes out of one gather-product (the monomials) and one matrix product; only angles
# with other functions (sin, exp, ...) are evaluated tree by tree.
_MAX_POLY_TERMS = 64
_MAX_POLY_DEGREE = 6


@dataclass(frozen=True)
class _Angle:
    """One gate angle: a polynomial, or an expression ``tree``.

    The polynomial is ``terms`` ((monomial, coefficient) pairs, a monomial a sorted tuple of
    parameter columns, repeated for powers) plus ``const``.
    """

    terms: tuple[tuple[tuple[int, ...], float], ...] = ()
    const: float = 0.0
    tree: tuple | None = None


def _angle(value: Any, columns: Mapping[Parameter, int], gate: str) -> _Angle:
    if not isinstance(value, ParameterExpression):
        return _Angle(const=float(value))
    params = list(value.parameters)
    if not params:
        return _Angle(const=float(value.numeric()))
    for p in params:
        if p not in columns:
            raise ValueError(
                f"gate {gate!r} uses parameter {p.name!r}, which is neither in the circuit's "
                "inputs nor its weights ParameterVector"
            )
    symbols = {p.name: columns[p] for p in params}
    if len(symbols) != len(params):
        raise ValueError(f"gate {gate!r} has angle {value} with two parameters of one name")
    expr = value.sympify()
    gens = sorted(expr.free_symbols, key=lambda sym: symbols.get(sym.name, -1))
    if any(sym.name not in symbols for sym in gens):
        raise ValueError(f"gate {gate!r}: cannot map the symbols of angle {value}")
    if expr.is_polynomial(*gens):
        try:
            poly = sympy.Poly(expr, *gens)
            terms = poly.terms()
            if len(terms) <= _MAX_POLY_TERMS and poly.total_degree() <= _MAX_POLY_DEGREE:
                const = 0.0
                out: dict[tuple[int, ...], float] = {}
                for powers, coef in terms:
                    c = float(coef)  # TypeError for a complex coefficient: the tree reports it
                    mono = tuple(sorted(
                        col for sym, e in zip(gens, powers, strict=True)
                        for col in [symbols[sym.name]] * e
                    ))
                    if mono:
                        out[mono] = out.get(mono, 0.0) + c
                    else:
                        const += c
                return _Angle(terms=tuple(sorted(out.items())), const=const)
        except (TypeError, sympy.PolynomialError):
            pass
    return _Angle(tree=_tree(expr, symbols, gate))


# ----------------------------------------------------------------- gate matrices by fitting

# Every standard gate's matrix is, in each angle t, a combination of 1, cos(t/2), sin(t/2),
# cos(t), sin(t) (frequencies 0, 1/2, 1). Sampling the gate on a 5-point grid per angle (a
# discrete Fourier transform of period 4 pi) gives the exact coefficient matrices, taken from
# Qiskit's own matrices (so every phase convention, controlled-gate phases included, is Qiskit's);
# the fit is verified at random angles before use.
_N_BASIS = 5
_GRID = 4 * np.pi * np.arange(_N_BASIS) / _N_BASIS


def _basis(t: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(t), np.cos(t / 2), np.sin(t / 2), np.cos(t), np.sin(t)], -1)


_VINV = np.linalg.inv(_basis(_GRID))


@dataclass(frozen=True)
class _Fit:
    terms: np.ndarray  # (T, m) basis index per angle of each non-zero term
    coefs: np.ndarray  # (T, d, d) complex
    slopes: np.ndarray | None  # diagonal one-angle gates: entry k is exp(i (slope_k t + phase_k))
    phases: np.ndarray | None


_FITS: dict[tuple[str, int], _Fit | None] = {}


def _matrix_at(op: Gate, values: Sequence[float]) -> np.ndarray:
    gate = op.copy()
    gate.params = [float(v) for v in values]
    return np.asarray(Operator(gate).data)


def _fit(op: Gate) -> _Fit | None:
    """The Fourier coefficients of a standard gate's matrix (``None`` if it does not fit)."""
    key = (op.name, op.num_qubits)
    if key in _FITS:
        return _FITS[key]
    m, d = len(op.params), 2**op.num_qubits
    samples = np.empty((_N_BASIS,) * m + (d, d), dtype=complex)
    for idx in itertools.product(range(_N_BASIS), repeat=m):
        samples[idx] = _matrix_at(op, _GRID[list(idx)])
    coefs = samples
    for axis in range(m):  # coefficients = samples contracted with V^-1 along every angle axis
        coefs = np.moveaxis(np.tensordot(_VINV, coefs, axes=([1], [axis])), 0, axis)
    rng = np.random.default_rng(12345)
    fit: _Fit | None = None
    terms = [idx for idx in itertools.product(range(_N_BASIS), repeat=m)
             if np.max(np.abs(coefs[idx])) > 1e-12]
    term_arr = np.array(terms, dtype=np.int64).reshape(len(terms), m)
    coef_arr = np.array([coefs[t] for t in terms]).reshape(len(terms), d, d)
    coef_arr.real[np.abs(coef_arr.real) < 1e-14] = 0.0
    coef_arr.imag[np.abs(coef_arr.imag) < 1e-14] = 0.0
    good = True
    for _ in range(3):
        t = rng.uniform(-7, 7, size=m)
        b = _basis(t)  # (m, 5)
        weights = np.prod(b[np.arange(m)[None, :], term_arr], axis=1)
        if np.max(np.abs(np.tensordot(weights, coef_arr, 1) - _matrix_at(op, t))) > 1e-10:
            good = False
            break
    if good:
        slopes = phases = None
        if m == 1 and all(np.allclose(c, np.diag(np.diag(c)), atol=1e-13) for c in coef_arr):
            slopes, phases = _phase_lines(term_arr[:, 0], coef_arr)
        fit = _Fit(term_arr, coef_arr, slopes, phases)
    _FITS[key] = fit
    return fit


def _phase_lines(terms: np.ndarray, coefs: np.ndarray) -> tuple[np.ndarray | None, ...]:
    """A diagonal one-angle gate as ``exp(i (slope t + phase))`` per entry, or (None, None)."""
    d = coefs.shape[1]
    full = np.zeros((_N_BASIS, d), dtype=complex)
    full[terms] = np.diagonal(coefs, axis1=1, axis2=2)
    # exp(i (a t + c)) in the basis: a=0: (1,0,0,0,0), a=+-1/2: (0,1,+-i,0,0), a=+-1: (0,0,0,1,+-i)
    lines = {0.0: (0, 0.0), 0.5: (1, 1.0), -0.5: (1, -1.0), 1.0: (3, 1.0), -1.0: (3, -1.0)}
    slopes, phases = np.zeros(d), np.zeros(d)
    for k in range(d):
        for slope, (first, sign) in lines.items():
            z = full[first, k]
            pattern = np.zeros(_N_BASIS, dtype=complex)
            pattern[first] = z
            if first:
                pattern[first + 1] = 1j * sign * z
            if abs(abs(z) - 1) < 1e-12 and np.allclose(full[:, k], pattern, atol=1e-12):
                slopes[k], phases[k] = slope, float(np.angle(z))
                break
        else:
            return None, None
    return slopes, phases


# ----------------------------------------------------------------------------- the program


@dataclass
class Leaf:
    """One leaf gate, classified.

    ``kind``: ``"mono"`` (fixed; ``psi'[k] = phase[k] psi[perm[k]]`` locally), ``"phase"``
    (diagonal with one angle: ``exp(i (slope angle + offset))`` per local entry), ``"fixed"``
    (fixed dense matrix) or ``"param"`` (parameterised dense matrix from a fit).
    """

    kind: str
    qubits: list[int]
    perm: np.ndarray | None = None
    phase: np.ndarray | None = None  # complex (mono) or real offsets (phase)
    slopes: np.ndarray | None = None
    matrix: np.ndarray | None = None
    fit_key: tuple[str, int] | None = None
    angles: list[_Angle] = field(default_factory=list)


def _classify(op: Any, qubits: list[int], columns: Mapping[Parameter, int]) -> Leaf:
    if _has_free_params(op):
        fit = _fit(op)
        if fit is None:
            raise ValueError(
                f"the statevector executor cannot build parameterised gate {op.name!r}: its "
                "matrix is not a trigonometric polynomial of its angles"
            )
        angles = [_angle(p, columns, op.name) for p in op.params]
        if fit.slopes is not None:
            return Leaf("phase", qubits, phase=fit.phases, slopes=fit.slopes, angles=angles)
        return Leaf("param", qubits, fit_key=(op.name, op.num_qubits), angles=angles)
    matrix = np.asarray(Operator(op).data, dtype=complex)
    nz = np.abs(matrix) > 1e-12
    if np.all(nz.sum(axis=0) == 1) and np.all(nz.sum(axis=1) == 1):
        src = nz.argmax(axis=1)
        return Leaf("mono", qubits, perm=src, phase=matrix[np.arange(matrix.shape[0]), src])
    return Leaf("fixed", qubits, matrix=matrix)


def _local_index(qubits: Sequence[int], n: int) -> np.ndarray:
    """For every basis state of n qubits, its index in the gate's own (qargs) ordering."""
    k = np.arange(2**n)
    local = np.zeros(2**n, dtype=np.int64)
    for j, q in enumerate(qubits):
        local |= ((k >> q) & 1) << j
    return local


def _monomial(matrix: np.ndarray, qubits: Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Embed a monomial gate matrix as ``psi'[k] = phase[k] * psi[perm[k]]`` on n qubits."""
    dim = matrix.shape[0]
    nz = np.abs(matrix) > 1e-12
    if not (np.all(nz.sum(axis=0) == 1) and np.all(nz.sum(axis=1) == 1)):
        raise ValueError("not monomial")
    src_of_row = nz.argmax(axis=1)  # local output l' <- local input src_of_row[l']
    value = matrix[np.arange(dim), src_of_row]
    return _embed_perm(src_of_row, qubits, n), value[_local_index(qubits, n)]


def _embed_perm(src_of_row: np.ndarray, qubits: Sequence[int], n: int) -> np.ndarray:
    k = np.arange(2**n)
    local = _local_index(qubits, n)
    cleared = k.copy()
    for q in qubits:
        cleared &= ~(1 << q)
    src_local = src_of_row[local]
    perm = cleared.copy()
    for j, q in enumerate(qubits):
        perm |= ((src_local >> j) & 1) << q
    return perm


def _schedule(leaves: Sequence[Leaf], n: int) -> list[int]:
    """A topological order (per-qubit order kept) that groups diagonal/monomial leaves.

    Gates on disjoint qubits commute, so the leaves may be reordered as long as every qubit
    sees its gates in circuit order; greedily taking every ready leaf of the current class
    (phase-and-permutation vs dense) before switching makes the runs of diagonal and
    permutation gates, each one fused step, as long as possible.
    """
    runs = [leaf.kind in ("mono", "phase") for leaf in leaves]
    succ: list[list[int]] = [[] for _ in leaves]
    indeg = [0] * len(leaves)
    last = [-1] * n
    for i, leaf in enumerate(leaves):
        preds = {last[q] for q in leaf.qubits if last[q] >= 0}
        for p in preds:
            succ[p].append(i)
        indeg[i] = len(preds)
        for q in leaf.qubits:
            last[q] = i
    ready: dict[bool, list[int]] = {True: [], False: []}
    for i in range(len(leaves)):
        if indeg[i] == 0:
            heapq.heappush(ready[runs[i]], i)
    order: list[int] = []
    current = runs[0] if leaves else True
    while len(order) < len(leaves):
        if not ready[current]:
            current = not current
            continue
        i = heapq.heappop(ready[current])
        order.append(i)
        for s in succ[i]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(ready[runs[s]], s)
    return order


@dataclass
class GeneralProgram:
    """The general path's compiled circuit as numpy constants (device- and dtype-free).

    Angles: ``features = [inputs | weights | monomials]`` (monomials: products of parameter
    columns, ``mono_index`` rows into ``[inputs | weights | 1]``); the polynomial angles are
    ``features @ a + b``, followed by one column per expression tree.

    ``steps``: ``("phase", perm | None, offset | None, slots | None, pattern | None)`` maps
    ``psi -> exp(i (angles[:, slots] @ pattern + offset)) * psi[:, perm]`` (one fused run of
    diagonal and permutation gates); ``("mat", factors, layout)`` applies one dense matrix: the
    Kronecker product of ``factors`` (lowest qubit first), each the product (in application
    order) of its sources ``("fixed", index)`` or ``("param", group, index)``; layout is
    ``("view", L, d, R)`` (contiguous qubits, matrix in ascending-qubit order) or
    ``("perm", order, inverse, d)``.
    """

    n_qubits: int
    n_inputs: int
    n_weights: int
    a: np.ndarray  # (n_inputs + n_weights + n_monomials, n_poly)
    b: np.ndarray  # (n_poly,)
    mono_index: np.ndarray  # (n_monomials, degree) columns of [inputs | weights | 1]
    trees: list[tuple]  # the other angles, as expression trees
    fixed: list[np.ndarray]  # fixed dense matrices, in their layout's local order
    groups: list[tuple[np.ndarray, np.ndarray, int]]  # (feature index (G, T, m), coefs, d)
    steps: list[tuple]
    diag: np.ndarray
    offdiag: list[tuple[np.ndarray, np.ndarray]]
    n_leaves: int = 0

    @property
    def n_slots(self) -> int:
        """Number of distinct gate angles."""
        return self.b.shape[0] + len(self.trees)


# Consecutive single-qubit dense gates on neighbouring qubits are applied as one Kronecker
# product of up to this many qubits (fewer, larger kernels: the simulation is dispatch-bound).
_KRON_QUBITS = 4


def compile_general(
    built: Any,
    leaves: Sequence[tuple[Any, list[int]]],
    diag: np.ndarray,
    offdiag: list[tuple[np.ndarray, np.ndarray]],
) -> GeneralProgram:
    """Compile unrolled leaves into a :class:`GeneralProgram`.

    Args:
        built: The :class:`~qdrl_agents.circuits.BuiltCircuit` (for its parameter vectors).
        leaves: :func:`unroll` of its circuit.
        diag: Diagonal part of the observables (see the fused path's readout).
        offdiag: Off-diagonal part of the observables.

    Returns:
        The program.

    Raises:
        ValueError: A parameter outside ``inputs``/``weights``, or an angle function or gate
            that cannot be evaluated (the message names it).
    """
    n = built.n_qubits
    dim = 2**n
    n_in, n_w = built.n_input_params, built.n_weights
    columns: dict[Parameter, int] = {p: i for i, p in enumerate(built.inputs)}
    columns.update({p: n_in + j for j, p in enumerate(built.weights)})
    classified = [_classify(op, qubits, columns) for op, qubits in leaves]

    polys: dict[tuple, int] = {}
    trees: dict[tuple, int] = {}

    def slot(angle: _Angle) -> tuple[str, int]:
        if angle.tree is None:
            return "a", polys.setdefault((angle.terms, angle.const), len(polys))
        return "t", trees.setdefault(angle.tree, len(trees))

    steps: list[tuple] = []
    fixed: list[np.ndarray] = []
    group_index: dict[tuple, int] = {}
    group_members: list[list[list[tuple[str, int]]]] = []
    group_keys: list[tuple] = []

    def add_fixed(matrix: np.ndarray) -> tuple[str, int]:
        fixed.append(matrix)
        return ("fixed", len(fixed) - 1)

    def param_source(leaf: Leaf, gidx: np.ndarray) -> tuple[str, int, int]:
        key = (leaf.fit_key, tuple(gidx.tolist()))
        if key not in group_index:
            group_index[key] = len(group_members)
            group_members.append([])
            group_keys.append(key)
        g = group_index[key]
        group_members[g].append([slot(a) for a in leaf.angles])
        return ("param", g, len(group_members[g]) - 1)

    # The run being built: psi -> exp(i (sum_s angle_s * pattern_s + offset)) * psi[perm].
    run: dict[str, Any] = {}

    def reset_run() -> None:
        run.update(perm=np.arange(dim), offset=np.zeros(dim), patterns={}, touched=False)

    def flush_run() -> None:
        if not run["touched"]:
            return
        perm = None if np.array_equal(run["perm"], np.arange(dim)) else run["perm"]
        offset = run["offset"] if np.any(run["offset"] != 0.0) else None
        patterns = {s: p for s, p in run["patterns"].items() if np.any(p != 0.0)}
        if patterns:
            steps.append(("phase", perm, offset, list(patterns), np.stack(list(patterns.values()))))
        elif perm is not None or offset is not None:
            steps.append(("phase", perm, offset, None, None))
        reset_run()

    # Pending single-qubit dense gates, per qubit in application order (sources).
    pending: dict[int, list[tuple]] = {}

    def flush_pending(qubits: Sequence[int]) -> None:
        todo = sorted(q for q in qubits if q in pending)
        chunks: list[list[int]] = []
        for q in todo:  # contiguous runs of qubits, cut into Kronecker chunks
            if chunks and chunks[-1][-1] == q - 1 and len(chunks[-1]) < _KRON_QUBITS:
                chunks[-1].append(q)
            else:
                chunks.append([q])
        for chunk in chunks:
            factors = [pending.pop(q) for q in chunk]
            layout = ("view", 2 ** (n - chunk[0] - len(chunk)), 2 ** len(chunk), 2 ** chunk[0])
            if all(src[0] == "fixed" for f in factors for src in f):
                matrix = np.ones((1, 1), dtype=complex)
                for f in reversed(factors):  # highest qubit is the most significant bit
                    product = np.eye(2, dtype=complex)
                    for src in f:
                        product = fixed[src[1]] @ product
                    matrix = np.kron(matrix, product)
                factors = [[add_fixed(matrix)]]
            steps.append(("mat", factors, layout))

    reset_run()
    for i in _schedule(classified, n):
        leaf = classified[i]
        q = leaf.qubits
        if leaf.kind in ("mono", "phase"):
            flush_pending(list(pending))
            if leaf.kind == "mono":
                perm = _embed_perm(leaf.perm, q, n)
                phase = np.angle(leaf.phase)[_local_index(q, n)]
                run["perm"] = run["perm"][perm]
                run["offset"] = run["offset"][perm] + phase
                run["patterns"] = {s: p[perm] for s, p in run["patterns"].items()}
            else:
                local = _local_index(q, n)
                s = slot(leaf.angles[0])
                run["patterns"][s] = run["patterns"].get(s, np.zeros(dim)) + leaf.slopes[local]
                run["offset"] = run["offset"] + leaf.phase[local]
            run["touched"] = True
            continue
        flush_run()
        if len(q) == 1:
            source = (add_fixed(leaf.matrix) if leaf.kind == "fixed"
                      else param_source(leaf, np.arange(2)))
            pending.setdefault(q[0], []).append(source)
            continue
        flush_pending(q)
        k = len(q)
        d = 2**k
        low = min(q)
        if sorted(q) == list(range(low, low + k)):
            # contiguous: view the state as (B, L, d, R); the gate's matrix is reindexed so that
            # its local bit i is qubit low + i
            gidx = np.zeros(d, dtype=np.int64)
            for ell in range(d):
                for j, qj in enumerate(q):
                    gidx[ell] |= ((ell >> (qj - low)) & 1) << j
            layout: tuple = ("view", 2 ** (n - low - k), d, 2**low)
        else:
            gidx = np.arange(d)
            axis = {qq: n - 1 - qq for qq in range(n)}  # qubit -> state axis (after batch)
            targets = [axis[qq] for qq in reversed(q)]
            rest = [a for a in range(n) if a not in targets]
            order = [0] + [a + 1 for a in rest + targets]
            layout = ("perm", tuple(order), tuple(np.argsort(order).tolist()), d)
        if leaf.kind == "fixed":
            source = add_fixed(leaf.matrix[np.ix_(gidx, gidx)])
        else:
            source = param_source(leaf, gidx)
        steps.append(("mat", [[source]], layout))
    flush_pending(list(pending))
    flush_run()

    # Polynomial angles: features [inputs | weights | monomials of degree >= 2] @ a + b.
    monomials: dict[tuple[int, ...], int] = {}
    for terms, _ in polys:
        for mono, _c in terms:
            if len(mono) > 1:
                monomials.setdefault(mono, len(monomials))
    n_feat = n_in + n_w + len(monomials)
    a = np.zeros((n_feat, len(polys)))
    b = np.zeros(len(polys))
    for (terms, const), j in polys.items():
        for mono, c in terms:
            row = mono[0] if len(mono) == 1 else n_in + n_w + monomials[mono]
            a[row, j] += c
        b[j] = const
    degree = max((len(m) for m in monomials), default=0)
    mono_index = np.full((len(monomials), degree), n_in + n_w, dtype=np.int64)  # pad: the 1
    for mono, r in monomials.items():
        mono_index[r, : len(mono)] = mono

    n_poly = len(polys)

    def slot_index(s: tuple[str, int]) -> int:
        return s[1] if s[0] == "a" else n_poly + s[1]

    final_steps = []
    for step in steps:
        if step[0] == "phase" and step[3] is not None:
            step = (*step[:3], np.array([slot_index(s) for s in step[3]]), step[4])
        final_steps.append(step)

    groups = []
    for (fit_key, gidx), members in zip(group_keys, group_members, strict=True):
        fit = _FITS[fit_key]
        assert fit is not None
        d = fit.coefs.shape[1]
        gi = np.array(gidx)
        coefs = fit.coefs[:, gi[:, None], gi[None, :]].reshape(len(fit.terms), d * d)
        # features: column (slot * 5 + basis index) of the flattened trigonometric table
        members_idx = np.array([[slot_index(s) for s in m] for m in members])  # (G, m)
        feature = members_idx[:, None, :] * _N_BASIS + fit.terms[None, :, :]  # (G, T, m)
        groups.append((feature, np.concatenate([coefs.real, coefs.imag], axis=1), d))
    return GeneralProgram(
        n_qubits=n,
        n_inputs=n_in,
        n_weights=n_w,
        a=a,
        b=b,
        mono_index=mono_index,
        trees=list(trees),
        fixed=fixed,
        groups=groups,
        steps=final_steps,
        diag=diag,
        offdiag=offdiag,
        n_leaves=len(classified),
    )


def general_constants(p: GeneralProgram, device: torch.device, dtype: torch.dtype) -> dict:
    """The program's constants as tensors of one device and (real) dtype."""
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128

    def real(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    def index(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.long, device=device)

    def cplx(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=cdtype, device=device)

    steps = []
    for step in p.steps:
        if step[0] == "phase":
            _, perm, offset, slots, pattern = step
            perm_t = None if perm is None else index(perm)
            if slots is None:
                phase = None if offset is None else cplx(np.exp(1j * offset))
                steps.append(("const", perm_t, phase))
            else:
                offset_t = None if offset is None else real(offset)
                steps.append(("phase", perm_t, offset_t, index(slots), real(pattern)))
        else:
            steps.append(step)
    n_x = p.n_inputs + p.n_weights
    e0 = np.zeros((1, 2**p.n_qubits))
    e0[0, 0] = 1.0
    def real64(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float64, device=device)

    return {
        "dtype": dtype,
        "a_in": real64(p.a[: p.n_inputs]),
        "a_w": real64(p.a[p.n_inputs : n_x]),
        "a_m": real64(p.a[n_x:]),
        "b": real64(p.b),
        "mono_index": index(p.mono_index.reshape(-1)),
        "mono_shape": p.mono_index.shape,
        "fixed": [cplx(m) for m in p.fixed],
        "groups": [(index(f.reshape(-1)), f.shape, cplx(c[:, : d * d] + 1j * c[:, d * d :]), d)
                   for f, c, d in p.groups],
        "steps": steps,
        "kron": {q: index(_kron_order(q)) for q in range(2, _KRON_QUBITS + 1)},
        "e0": cplx(e0),
        "diag": real(p.diag),
        "offdiag": [(index(i), cplx(w)) for i, w in p.offdiag],
    }


def _angles(p: GeneralProgram, k: Mapping[str, Any], inputs: torch.Tensor,
            weights: torch.Tensor) -> torch.Tensor | None:
    """Every distinct gate angle of the circuit, ``(B, n_slots)``, in the simulation dtype.

    The angles are computed in float64 whatever the simulation dtype: a float32 simulation
    gets them reduced modulo 4 pi first (every gate matrix and phase is 4 pi-periodic in its
    angles), so that large angles (``zz_feature_map``'s reach ~80) lose no precision.
    """
    batch = inputs.shape[0]
    dtype = k["dtype"]
    inputs, weights = inputs.to(torch.float64), weights.to(torch.float64)
    parts = []
    if p.b.shape[0]:
        poly = torch.addmm(weights @ k["a_w"] + k["b"], inputs, k["a_in"])
        if p.mono_index.shape[0]:
            ones = torch.ones(batch, 1, dtype=inputs.dtype, device=inputs.device)
            columns = torch.cat([inputs, weights.expand(batch, -1), ones], 1)
            n_mono, degree = k["mono_shape"]
            mono = columns.index_select(1, k["mono_index"]).view(batch, n_mono, degree)
            poly = torch.addmm(poly, mono.prod(2), k["a_m"])
        parts.append(poly)
    if p.trees:
        cols = [*inputs.unbind(1), *weights.unbind(0)]
        values = [_evaluate(t, cols) for t in p.trees]
        parts.append(torch.stack([
            torch.as_tensor(v, dtype=inputs.dtype, device=inputs.device).expand(batch)
            for v in values], 1))
    if not parts:
        return None
    angles = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
    if dtype != torch.float64:
        angles = torch.remainder(angles, 4 * math.pi).to(dtype)
    return angles


def _kron_order(k: int) -> np.ndarray:
    """Gather index from an interleaved outer product to a row-major Kronecker product.

    The outer product of k flattened 2x2 matrices is indexed (i_top j_top ... i_0 j_0); the
    Kronecker product (i_top ... i_0, j_top ... j_0).
    """
    order = [2 * m for m in range(k)] + [2 * m + 1 for m in range(k)]
    return np.arange(4**k).reshape([2] * (2 * k)).transpose(order).reshape(-1)


def _kron(factors: Sequence[torch.Tensor], order: torch.Tensor) -> torch.Tensor:
    """Kronecker product of (batched) 2x2 matrices, the first factor the lowest qubit.

    Outer products of the flattened matrices, then one gather (``order``, from
    :func:`_kron_order`) into row-major order: a broadcast over interleaved axes would make
    autograd reduce over them, and a many-axis permute copy is slower than the gather.
    """
    flat = [f.reshape(-1, 4) for f in factors]
    out = flat[-1]
    for f in reversed(flat[:-1]):
        out = (out.unsqueeze(2) * f.unsqueeze(1)).reshape(max(out.shape[0], f.shape[0]), -1)
    d = 2 ** len(factors)
    return out.index_select(1, order).view(-1, d, d)


def run_general(p: GeneralProgram, k: Mapping[str, Any], inputs: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
    """Expectation values ``(B, n_outputs)`` of the general program (differentiable)."""
    batch, n, dim = inputs.shape[0], p.n_qubits, 2**p.n_qubits
    angles = _angles(p, k, inputs, weights)

    # Every parameterised dense gate's matrix: its Fourier features (products of 1, cos(t/2),
    # sin(t/2), cos(t), sin(t) of its angles) times its fitted coefficients, per group of gates
    # of one kind in one batched matrix product.
    mats: list[Sequence[torch.Tensor]] = []
    if k["groups"]:
        assert angles is not None
        half = angles * 0.5
        c1, s1 = torch.cos(half), torch.sin(half)
        table = torch.stack(
            [torch.ones_like(angles), c1, s1, 1 - 2 * s1 * s1, 2 * s1 * c1], 2
        ).view(batch, -1)
        for feature, shape, coefs, d in k["groups"]:
            g, t, m = shape
            f = table.index_select(1, feature).view(batch, g, t, m)
            f = f.squeeze(3) if m == 1 else f.prod(3)
            # (g, B, d, d): every gate's matrices one contiguous block
            u = f.transpose(0, 1).to(coefs.dtype) @ coefs
            mats.append(u.view(g, batch, d, d).unbind(0))

    def matrix(factors: Sequence[Sequence[tuple]]) -> torch.Tensor:
        products = []
        for sources in factors:
            u = None
            for src in sources:
                m = k["fixed"][src[1]] if src[0] == "fixed" else mats[src[1]][src[2]]
                u = m if u is None else m @ u
            products.append(u)
        return products[0] if len(products) == 1 else _kron(products, k["kron"][len(products)])

    psi = k["e0"]
    for step in k["steps"]:
        kind = step[0]
        if kind == "const":
            _, perm, phase = step
            if perm is not None:
                psi = psi.index_select(1, perm)
            if phase is not None:
                psi = psi * phase
        elif kind == "phase":
            _, perm, offset, slots, pattern = step
            if perm is not None:
                psi = psi.index_select(1, perm)
            phi = angles.index_select(1, slots) @ pattern
            if offset is not None:
                phi = phi + offset
            psi = psi * torch.exp(1j * phi)
        else:
            _, factors, layout = step
            u = matrix(factors)
            b = psi.shape[0]
            if layout[0] == "view":
                _, left, d, right = layout
                if left == 1:
                    psi = (u @ psi.view(b, d, right)).reshape(-1, dim)
                elif right == 1:
                    psi = (psi.view(b, left, d) @ u.transpose(-1, -2)).reshape(-1, dim)
                else:
                    uu = u.unsqueeze(-3) if u.dim() == 3 else u
                    psi = (uu @ psi.view(b, left, d, right)).reshape(-1, dim)
            else:
                _, order, inverse, d = layout
                x = psi.view(b, *([2] * n)).permute(order).reshape(b, dim // d, d)
                x = x @ u.transpose(-1, -2)
                psi = x.view(x.shape[0], *([2] * n)).permute(inverse).reshape(-1, dim)
    if psi.shape[0] != batch:
        psi = psi.expand(batch, dim)
    probs = psi.real.square() + psi.imag.square()
    out = probs @ k["diag"]
    for gather_idx, w in k["offdiag"]:
        out = out + ((psi.conj() * psi[:, gather_idx]) @ w).real
    return out
