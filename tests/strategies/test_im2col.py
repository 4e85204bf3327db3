"""im2col-specific behaviour: bounded workspace, MemoryError, and the code paths
the general grid (tests/test_correctness.py) does not reach with its default
budget: output-row chunking, the serial "blas" mode, the 1x1 no-unfold path.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from _helpers import assert_close, oracle, planned, random_array

import fastconv
import fastconv.grad as fgrad
from fastconv import reference as ref
from fastconv._spec import make_spec
from fastconv._strategies import im2col

MiB = 1 << 20


def _run(op, x, w, gy, kw):
    """Run ``op`` with im2col on 2-D or 3-D arrays; returns the result."""
    ndim = w.ndim - 2
    if op == "forward":
        return fastconv.conv(x, w, strategy="im2col", **kw)
    if op == "grad_input":
        return getattr(fgrad, f"conv{ndim}d_input")(x.shape, w, gy, strategy="im2col", **kw)
    return getattr(fgrad, f"conv{ndim}d_weight")(x, w.shape, gy, strategy="im2col", **kw)


def _problem(rng, x_shape, w_shape, dtype, **kw):
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    spec = make_spec(x_shape, w_shape, kw.get("stride", 1), kw.get("padding", 0),
                     kw.get("dilation", 1), kw.get("groups", 1), dtype=dtype)
    gy = random_array(rng, spec.output_shape, dtype)
    return x, w, gy, spec


# Non-square, odd sizes; each case exercises a different part of the planner.
PATH_CASES = {
    # 3-D, stride + dilation + groups + asymmetric padding
    "3d_mixed": ((3, 4, 9, 8, 11), (6, 2, 3, 2, 3),
                 dict(stride=(2, 1, 3), padding=((1, 0), (0, 2), (2, 1)), dilation=(1, 2, 1),
                      groups=2)),
    # 2-D depthwise with stride
    "2d_depthwise": ((2, 6, 13, 10), (6, 1, 3, 5),
                     dict(stride=(1, 2), padding=(1, 2), groups=6)),
    # 1x1 kernel, stride 1, padded: unfolds (the border needs zeros)
    "2d_pointwise_padded": ((3, 6, 7, 5), (8, 3, 1, 1), dict(padding=(1, 0), groups=2)),
    # 1x1 kernel, stride 1, unpadded: the no-unfold path (the input is the column matrix)
    "2d_pointwise": ((3, 6, 7, 5), (8, 3, 1, 1), dict(groups=2)),
    # 1x1 kernel with stride: needs the unfold (subsampling)
    "2d_pointwise_strided": ((2, 5, 9, 7), (4, 5, 1, 1), dict(stride=(2, 3))),
}


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
@pytest.mark.parametrize("case", sorted(PATH_CASES))
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("budget", [None, "one_row"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paths_match_reference(rng, op, case, threads, budget, dtype):
    x_shape, w_shape, kw = PATH_CASES[case]
    x, w, gy, spec = _problem(rng, x_shape, w_shape, dtype, **kw)
    opts = dict(n_threads=threads)
    if budget == "one_row":
        # exactly one output row per thread: the smallest chunking there is
        # (with 2 threads every case runs OpenMP over units, and grad_weight
        # then also keeps one partial sum of the weight gradient per extra thread)
        _, row_elems, wsz = im2col._geometry(spec)
        part = wsz * (threads - 1) if op == "grad_weight" else 0
        opts["memory_budget"] = max(1, (threads * row_elems + part) * spec.itemsize)
    with fastconv.config(**opts):
        plan = im2col._plan(spec, op, threads, fastconv.get_config().memory_budget)
        if budget == "one_row" and not im2col._no_unfold(spec):
            assert plan.rows == 1
        got = _run(op, x, w, gy, kw)
    assert_close(got, oracle(op, x, w, gy, kw), dtype=dtype, strategy="im2col", spec=spec,
                 what=f"{case} {op} threads={threads} budget={budget}")


def test_workspace_is_reported_and_within_budget():
    spec = make_spec((8, 16, 40, 40), (32, 16, 3, 3), padding=1, dtype=np.float32)
    s = im2col.Im2colStrategy()
    for budget in (256 * MiB, 1 * MiB, 100_000):
        with fastconv.config(memory_budget=budget, n_threads=2):
            for op in ("forward", "grad_input", "grad_weight"):
                ws = s.workspace(spec, op, fastconv.get_config())
                assert 0 < ws <= budget
    pointwise = make_spec((8, 16, 40, 40), (32, 16, 1, 1), dtype=np.float32)
    with fastconv.config(n_threads=1):
        assert s.workspace(pointwise, "forward", fastconv.get_config()) == 0


def test_memory_error_when_one_row_cannot_fit(rng):
    x = random_array(rng, (2, 16, 20, 64), np.float32)
    w = random_array(rng, (4, 16, 3, 3), np.float32)
    need = 16 * 9 * 62 * 4  # channels x taps x output columns x itemsize
    with fastconv.config(memory_budget=need - 1, n_threads=1):
        with pytest.raises(MemoryError, match=rf"{need} bytes.*budget is {need - 1} bytes"):
            fastconv.conv2d(x, w, strategy="im2col")
        # the dispatcher does not pick a strategy that cannot fit
        assert fastconv.explain("forward", x.shape, w.shape, dtype=np.float32).strategy != "im2col"
    with fastconv.config(memory_budget=need, n_threads=1):
        y = fastconv.conv2d(x, w, strategy="im2col")
    assert y.shape == (2, 4, 18, 62)


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
def test_bounded_workspace_large_layer(op):
    """Unbuffered unfold > 1 GiB; a 64 MiB budget bounds the peak; same result."""
    rng = np.random.default_rng(3)
    # 15x15 kernel: 225 column rows per input channel, cheap output (C_out = 2)
    x_shape, w_shape, kw = (8, 10, 128, 128), (2, 10, 15, 15), dict(padding=7)
    x, w, gy, spec = _problem(rng, x_shape, w_shape, np.float32, **kw)
    cols_bytes = (spec.batch * spec.in_channels * spec.kernel_size
                  * int(np.prod(spec.out_spatial)) * spec.itemsize)
    assert cols_bytes > 1 << 30

    budget = 64 * MiB
    with fastconv.config(memory_budget=budget):
        tracemalloc.start()
        try:
            bounded = _run(op, x, w, gy, kw)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # Besides the workspace, the call holds the padded input (or padded
    # grad_input) and its result; allow those and a little slack.
    io = np.prod(spec.padded_shape5) * 4 * 2 + bounded.nbytes + 2 * MiB
    assert peak <= budget + io, f"peak {peak / MiB:.1f} MiB"

    with fastconv.config(memory_budget=4096 * MiB):
        unbounded = _run(op, x, w, gy, kw)
    assert bounded.shape == unbounded.shape
    scale = float(np.abs(unbounded).max())
    np.testing.assert_allclose(bounded, unbounded, rtol=1e-4, atol=1e-5 * scale)


def test_grad_weight_is_bitwise_deterministic():
    """30 identical calls give one result (issue: 4 different ones before), in
    both parallel modes; the two modes agree to rounding."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 3, 28, 28)).astype(np.float32)
    gy = rng.standard_normal((5, 4, 14, 14)).astype(np.float32)
    results = {}
    for mode in ("omp", "blas"):
        with fastconv.config(n_threads=2), im2col.parallel_mode(mode):
            first = fgrad.conv2d_weight(x, (4, 3, 3, 3), gy, stride=2, padding=1,
                                        strategy="im2col")
            for _ in range(29):
                again = fgrad.conv2d_weight(x, (4, 3, 3, 3), gy, stride=2, padding=1,
                                            strategy="im2col")
                np.testing.assert_array_equal(again, first)
        results[mode] = first
    exact = ref.conv_grad_weight(x.astype(np.float64), (4, 3, 3, 3), gy.astype(np.float64),
                                 stride=2, padding=1)
    for got in results.values():
        np.testing.assert_allclose(got, exact, rtol=1e-4, atol=1e-5 * np.abs(exact).max())


@pytest.mark.parametrize("mode", ["omp", "blas", im2col.ParallelMode.OMP])
def test_parallel_mode_can_be_forced(rng, mode):
    spec = make_spec((3, 4, 9, 9), (5, 4, 3, 3), padding=1, dtype=np.float32)
    with fastconv.config(n_threads=2), im2col.parallel_mode(mode):
        plan = im2col._plan(spec, "forward", 2, fastconv.get_config().memory_budget)
    want = mode if isinstance(mode, im2col.ParallelMode) else im2col.ParallelMode[mode.upper()]
    assert plan.mode == want
    with pytest.raises(ValueError, match="parallel mode"):
        with im2col.parallel_mode("gpu"):
            pass


def test_units_sized_to_l2_and_workspace_kept(rng):
    """A unit's column block fits L2 (or spans the minimum GEMM width) whatever
    the budget; the buffer is reused."""
    spec = make_spec((4, 48, 80, 80), (48, 48, 5, 5), padding=2, dtype=np.float32)
    _, row_elems, _ = im2col._geometry(spec)
    plan = im2col._plan(spec, "forward", 2, 256 * MiB)   # (grad_weight: 2x L2)
    min_rows = -(-im2col._MIN_COLS // spec.output_shape5[4])
    assert plan.rows * row_elems * 4 <= max(im2col.L2_BYTES, min_rows * row_elems * 4)
    assert plan.rows < spec.output_shape5[3]
    assert plan.nbytes == plan.threads * plan.rows * row_elems * 4
    x = random_array(rng, (2, 8, 12, 12), np.float32)
    w = random_array(rng, (4, 8, 3, 3), np.float32)
    im2col.release_workspace()
    fastconv.conv2d(x, w, padding=1, strategy="im2col")
    kept = im2col._kept.buf
    assert kept is not None
    fastconv.conv2d(x, w, padding=1, strategy="im2col")
    assert im2col._kept.buf is kept
    # a smaller budget than the kept buffer replaces it
    with fastconv.config(memory_budget=max(1, kept.nbytes - 1)):
        fastconv.conv2d(x, w, padding=1, strategy="im2col")
    assert im2col._kept.buf is not kept and im2col._kept.buf.nbytes < kept.nbytes


def test_workspace_is_exact_under_tracemalloc(rng):
    """Peak traced memory of a run beyond its inputs and output is workspace()."""
    spec = make_spec((4, 16, 40, 40), (16, 16, 3, 3), padding=1, dtype=np.float32)
    x = random_array(rng, spec.input_shape5, np.float32)
    w = random_array(rng, spec.weight_shape5, np.float32)
    gy = random_array(rng, spec.output_shape5, np.float32)
    args = {"forward": (x, w), "grad_input": (gy, w), "grad_weight": (x, gy)}
    s = im2col.Im2colStrategy()
    for op in ("forward", "grad_input", "grad_weight"):
        with fastconv.config(memory_budget=2 * MiB, n_threads=2):
            ws = s.workspace(spec, op, fastconv.get_config())
            assert 0 < ws <= 2 * MiB
            planned(s, op, spec, *args[op], threads=2)     # one-off state (threadpoolctl) outside
            im2col.release_workspace()
            tracemalloc.start()
            try:
                out = planned(s, op, spec, *args[op], threads=2)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert ws <= peak - out.nbytes <= ws + 16 * 1024, (op, peak - out.nbytes, ws)
