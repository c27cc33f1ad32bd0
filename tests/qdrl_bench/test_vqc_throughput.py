"""The VQC throughput benchmark's tutorial and paths sections (behaviour only, never timings)."""

from __future__ import annotations

import math

import pytest
import torch

from qdrl_agents.executors import QiskitExecutor, StatevectorExecutor
from qdrl_bench.perf import vqc_throughput as vt


def _row(backend: str, batch: int, fwd: float, fwb: float) -> vt.Timing:
    return vt.Timing(backend, vt.TUTORIAL_QUBITS, vt.TUTORIAL_ANSATZ_REPS, batch, fwd, fwb, 1)


def test_tutorial_circuit_is_the_qiskit_ml_network_on_the_general_path():
    built = vt.tutorial_circuit()
    assert built.spec is None
    assert (built.n_qubits, built.n_input_params, built.n_weights, built.n_outputs) == (4, 4, 16, 4)
    assert [str(p) for p in built.inputs] == [f"x[{i}]" for i in range(4)]
    # one output per qubit, Z on it (Qiskit order: the rightmost letter is qubit 0)
    assert [op.paulis[0].to_label() for op in built.observables] == [
        "IIIZ", "IIZI", "IZII", "ZIII"
    ]
    assert StatevectorExecutor(built).path == "general"


def test_tutorial_statevector_matches_the_qiskit_executor():
    built = vt.tutorial_circuit()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4, generator=gen, dtype=torch.float64) * 4 - 2
    w = torch.rand(16, generator=gen, dtype=torch.float64) * 6 - 3
    with torch.no_grad():
        ref = QiskitExecutor(built)(x, w)
    assert torch.allclose(StatevectorExecutor(built)(x, w), ref, atol=1e-10)


def test_pennylane_tutorial_circuit_matches_statevector_values_and_gradients():
    pytest.importorskip("pennylane")
    pytest.importorskip("pennylane_lightning")
    pl = vt.pennylane_tutorial_function()
    assert pl is not None
    built = vt.tutorial_circuit()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(5, 4, generator=gen, dtype=torch.float64) * 4 - 2
    w = torch.rand(16, generator=gen, dtype=torch.float64) * 6 - 3
    v_pl, g_pl = vt._values_and_gradients(pl, x, w)
    v_sv, g_sv = vt._values_and_gradients(StatevectorExecutor(built), x, w)
    assert pl(x, w).dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32  # restored after the call
    assert (v_pl - v_sv).abs().max() < vt.AGREEMENT_TOLERANCE
    assert (g_pl - g_sv).abs().max() < vt.AGREEMENT_TOLERANCE
    one = pl(x[0], w)  # an unbatched input gives one row too
    assert one.shape == (1, 4)


def test_check_tutorial_agrees_reports_float32_without_the_optional_backends():
    result = vt.check_tutorial_agrees(batch=2, pennylane=False, qiskit=False)
    assert set(result) == {"statevector float32"}
    values, gradients = result["statevector float32"]
    assert values < vt.FLOAT32_TOLERANCE and math.isfinite(gradients)


def test_extrapolate_is_linear_through_the_two_largest_measured_batches():
    rows = [_row("qiskit", 1, 1.0, 10.0), _row("qiskit", 32, 32.0, 320.0)]
    row = vt._extrapolate(rows, 256)
    assert row is not None and row.backend == vt.EXTRAPOLATED and row.repeats == 0
    assert row.forward_s == pytest.approx(256.0)
    assert row.forward_backward_s == pytest.approx(2560.0)
    assert vt._extrapolate(rows, 32) is None  # measured, nothing to extrapolate
    assert vt._extrapolate(rows[:1], 256) is None  # one point is no line


def test_format_tutorial_report_marks_targets_and_extrapolation():
    rows = [
        _row("sv-float64", 32, 0.001, 0.002),
        _row("sv-float32", 32, 0.001, 0.004),
        _row("qiskit", 32, 1.0, 3.0),
        _row("sv-float64", 256, 0.01, 0.02),
        _row("sv-float32", 256, 0.01, 0.02),
        _row("lightning", 256, 0.1, 0.1),
        _row(vt.EXTRAPOLATED, 256, 8.0, 24.0),
    ]
    text = vt.format_tutorial_report(rows)
    assert "extrapolated, not measured" in text
    assert "qiskit time extrapolated" in text
    lines = text.splitlines()
    vs_qiskit = [line for line in lines if "B=32" in line and "qiskit /" in line]
    assert len(vs_qiskit) == 2
    assert "1500.0x" in vs_qiskit[0] and "PASS" in vs_qiskit[0]  # vs float64
    assert "750.0x" in vs_qiskit[1] and "FAIL" in vs_qiskit[1]  # vs float32
    vs_lightning = [line for line in lines if "lightning /" in line]
    assert len(vs_lightning) == 2 and all("FAIL" in line for line in vs_lightning)  # 5x < 10x


def test_bench_paths_times_both_programs_and_they_agree():
    rows, diff = vt.bench_paths((3, 2), batches=(1, 4), min_seconds=0.0, rounds=1, log=None)
    assert {(r.backend, r.batch) for r in rows} == {
        (name, b) for name in ("fused", "general") for b in (1, 4)
    }
    assert diff < 1e-10
    text = vt.format_paths_report(rows, diff)
    assert "general / fused" in text and "B=1" in text and "B=4" in text


def test_bench_tutorial_rows_without_pennylane():
    rows = vt.bench_tutorial(
        batches=(1, 2), qiskit_batches=(1,), pennylane=False, min_seconds=0.0, rounds=1, log=None
    )
    assert {(r.backend, r.batch) for r in rows} == {
        ("sv-float64", 1), ("sv-float32", 1), ("sv-float64", 2), ("sv-float32", 2), ("qiskit", 1)
    }
    assert all(r.n_layers == vt.TUTORIAL_ANSATZ_REPS and r.forward_backward_s > 0 for r in rows)


def test_sections_are_registered_and_options_parse():
    assert {"tutorial", "paths"} <= set(vt.SECTIONS)
    args = vt.parse_args(
        ["--sections", "tutorial", "paths", "--tutorial-qiskit-batches", "--paths-size", "8x5"]
    )
    assert args.sections == ["tutorial", "paths"]
    assert args.tutorial_qiskit_batches == [] and args.paths_size == (8, 5)
    assert vt.parse_args([]).tutorial_batches == list(vt.TUTORIAL_BATCHES)
