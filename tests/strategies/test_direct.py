"""The direct kernels: padding done inside (halo cases), both code paths (the
stride-1 wide kernels and the row loops), shape checks at the kernel entry,
exact scratch accounting, non-finite values, determinism."""

import dataclasses
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from _helpers import traced_direct_call

import fastconv
from fastconv import reference
from fastconv._ext import _direct
from fastconv._spec import make_spec
from fastconv._strategies import direct_plan

HALO = [
    ((1, 2, 5, 6), (3, 2, 2, 3), dict(padding=4)),                          # pad > kernel
    ((2, 3, 7, 9), (5, 3, 3, 2), dict(padding=((2, 0), (1, 3)))),           # asymmetric
    ((1, 2, 6, 8), (2, 2, 3, 3), dict(padding=((0, 0), (2, 2)))),           # one axis only
    ((2, 3, 11), (2, 3, 4), dict(padding=((3, 1),))),                       # 1-D
    ((1, 2, 4, 5, 6), (3, 2, 2, 3, 2), dict(padding=1)),                    # 3-D
    ((1, 2, 9, 10), (2, 2, 3, 2), dict(padding=3, dilation=(2, 3))),        # dilation
    ((2, 2, 9, 11), (3, 2, 3, 3), dict(padding=(1, 2), stride=(2, 3))),     # stride
    ((1, 4, 7, 8), (6, 2, 3, 3), dict(padding=1, groups=2)),                # groups
    ((2, 5, 6, 7), (5, 1, 3, 3), dict(padding=(2, 1), groups=5)),           # depthwise
    ((1, 1, 2, 2), (1, 1, 3, 3), dict(padding=2)),                          # tiny output
    ((2, 5, 13, 17), (6, 5, 3, 3), dict(padding=1)),                        # partial tile
    ((1, 3, 3, 4, 70), (9, 3, 1, 2, 5), dict(padding=((1, 0), (0, 1), (2, 2)))),
    ((2, 6, 7, 9), (6, 1, 3, 2), dict(padding="same", groups=6, dilation=(2, 1))),
    # strided: polyphase components in the wide kernels
    ((1, 2, 9, 10), (3, 2, 1, 1), dict(stride=2)),                          # one component
    ((2, 3, 17), (4, 3, 5), dict(stride=3, padding=2, dilation=2)),
    ((1, 2, 7, 8, 9), (2, 2, 3, 2, 3), dict(stride=(2, 1, 3), padding=(1, 0, 2))),
    ((1, 3, 20, 23), (5, 3, 7, 7), dict(stride=2, padding=3)),              # stem-like
    ((2, 4, 11, 12), (4, 1, 3, 3), dict(stride=2, padding=(4, 1), groups=4)),
    # strides beyond the sizes: phases no tap reaches, phases holding no grad_x
    ((1, 2, 5, 6), (3, 2, 3, 2), dict(stride=(7, 9), padding=(2, 1), dilation=(2, 1))),
    ((2, 1, 5), (2, 1, 3), dict(stride=1000, padding=((1, 4),))),
    ((1, 1, 4, 3, 5), (2, 1, 2, 3, 2), dict(stride=(5, 11, 3), padding=(0, 2, 2), dilation=(3, 2, 3))),
]


def _plan(op, spec, n_threads, general=False, finite=True):
    return direct_plan.plan(op, spec.input_shape5, spec.weight_shape5, spec.output_shape5,
                            spec.stride3, spec.dilation3, spec.padding3, spec.groups,
                            n_threads, spec.itemsize, general, finite)


def _kernels(x, w, gy, kw, general, n_threads=2):
    """The three kernels called directly on float64 5-D arrays, each with its plan."""
    spec = make_spec(x.shape, w.shape, dtype=np.float64, **kw)
    x5, w5 = x.reshape(spec.input_shape5), w.reshape(spec.weight_shape5)
    gy5 = gy.reshape(spec.output_shape5)
    y, gx, gw = (np.empty(s) for s in (spec.output_shape5, spec.input_shape5,
                                        spec.weight_shape5))
    finite = bool(np.isfinite(w5).all())
    _direct.forward(x5, w5, y, _plan("forward", spec, n_threads, general))
    _direct.grad_input(gy5, w5, gx, _plan("grad_input", spec, n_threads, general, finite))
    _direct.grad_weight(x5, gy5, gw, _plan("grad_weight", spec, n_threads, general))
    return y.reshape(spec.output_shape), gx.reshape(x.shape), gw.reshape(w.shape)


@pytest.mark.parametrize("general", [False, True], ids=["wide", "rows"])
@pytest.mark.parametrize("xs, ws, kw", HALO)
def test_halo_cases_match_the_reference(xs, ws, kw, general):
    rng = np.random.default_rng(len(xs) * 7 + ws[0])
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    gy = rng.standard_normal(fastconv.output_shape(xs, ws, **kw))
    y, gx, gw = _kernels(x, w, gy, kw, general)
    np.testing.assert_allclose(y, reference.conv_forward(x, w, **kw), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gx, reference.conv_grad_input(xs, w, gy, **kw),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw, reference.conv_grad_weight(x, ws, gy, **kw),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("xs, ws, kw", [HALO[1], HALO[8], HALO[10]])
def test_float32_through_the_api(xs, ws, kw):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    gy = rng.standard_normal(fastconv.output_shape(xs, ws, **kw)).astype(np.float32)
    for got, want in [
        (fastconv.conv(x, w, **kw, strategy="direct"), reference.conv_forward(x, w, **kw)),
        (fastconv.grad_input(xs, w, gy, **kw, strategy="direct"),
         reference.conv_grad_input(xs, w, gy, **kw)),
        (fastconv.grad_weight(x, ws, gy, **kw, strategy="direct"),
         reference.conv_grad_weight(x, ws, gy, **kw)),
    ]:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_inf_weight_meets_no_padding_zero_in_grad_input():
    """Issue 13 item 7(a): 0 * Inf from a zero-padded grad_output gave NaN."""
    w = np.array([[[np.inf, 1.0, 1.0]]])
    got = fastconv.grad.conv1d_input((1, 1, 8), w, np.ones((1, 1, 6)), strategy="direct")
    np.testing.assert_array_equal(got[0, 0], [np.inf] * 6 + [2.0, 1.0])
    want = fastconv.grad.conv1d_input((1, 1, 8), w, np.ones((1, 1, 6)), strategy="im2col")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("where", ["inside", "last column", "first column"])
def test_grad_weight_keeps_nonfinite_local(where):
    """A non-finite input reaches only the weights whose taps touch it, also when
    the wide layout puts it beside zero columns (ow >= OW) of grad_output."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 20))
    col = {"inside": 7, "last column": 19, "first column": 0}[where]
    x[1, 2, 4, col] = np.inf
    gy = rng.standard_normal((2, 8, 9, 18))
    got = fastconv.grad_weight(x, (8, 3, 3, 3), gy, padding=(1, 0), strategy="direct")
    want = reference.conv_grad_weight(x, (8, 3, 3, 3), gy, padding=(1, 0))
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    fin = np.isfinite(want)
    assert fin.any() and not fin.all()
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("threads", [1, 3])
def test_grad_weight_is_deterministic_and_threads_agree(threads):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 6, 12, 13)).astype(np.float32)
    gy = rng.standard_normal((3, 10, 12, 13)).astype(np.float32)
    with fastconv.config(n_threads=threads):
        runs = [fastconv.grad_weight(x, (10, 6, 3, 3), gy, padding=1, strategy="direct")
                for _ in range(4)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])
    want = reference.conv_grad_weight(x, (10, 6, 3, 3), gy, padding=1)
    np.testing.assert_allclose(runs[0], want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
def test_arrays_that_do_not_fit_the_plan_are_a_value_error_at_the_kernel(op):
    x, w = np.ones((1, 2, 6, 6)), np.ones((3, 2, 3, 3))
    spec = make_spec(x.shape, w.shape, padding=1, dtype=np.float64)
    x5, w5 = x.reshape(spec.input_shape5), w.reshape(spec.weight_shape5)
    gy5 = np.ones(spec.output_shape5)
    info = _plan(op, spec, 2)
    short = lambda s: np.empty(s[:-1] + (s[-1] - 1,))  # noqa: E731
    with pytest.raises(ValueError, match="do not fit the plan"):
        if op == "forward":
            _direct.forward(x5, w5, short(spec.output_shape5), info)
        elif op == "grad_input":
            _direct.grad_input(gy5, w5, short(spec.input_shape5), info)
        else:
            _direct.grad_weight(x5, gy5, np.empty((3, 1, 1, 3, 3)), info)
    with pytest.raises(ValueError, match="do not fit the plan"):   # another op's plan
        other = _plan("forward" if op != "forward" else "grad_weight", spec, 2)
        getattr(_direct, op)(*{"forward": (x5, w5, np.empty(spec.output_shape5)),
                               "grad_input": (gy5, w5, np.empty(spec.input_shape5)),
                               "grad_weight": (x5, gy5, np.empty(spec.weight_shape5))}[op],
                             other)
    with pytest.raises(ValueError, match="output shape"):   # the planner checks the call
        direct_plan.plan("forward", spec.input_shape5, spec.weight_shape5, (1, 3, 1, 7, 6),
                         spec.stride3, spec.dilation3, spec.padding3, 1, 2, 8)


@pytest.mark.parametrize("op,stride", [("forward", 1), ("grad_input", 1), ("grad_input", 2),
                                       ("grad_weight", 2)])
def test_kernel_plan_is_frozen_and_runs_unchanged(op, stride):
    """A kernel plan is shared by every Plan and thread that runs its problem: no
    field can be replaced, no index array written, and a call leaves it as it was."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 4, 3, 3))
    spec = make_spec(x.shape, w.shape, stride=stride, padding=1, dtype=np.float64)
    info = _plan(op, spec, 2)
    assert info.path == ("poly" if op == "grad_input" and stride > 1 else "wide")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.tasks = 1
    arrays = {k: getattr(info, k) for k in ("off", "phq", "vb", "offr", "meta_table")
              if getattr(info, k) is not None}
    assert arrays
    for a in arrays.values():
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 0
    before = {k: a.copy() for k, a in arrays.items()}
    x5, w5 = x.reshape(spec.input_shape5), w.reshape(spec.weight_shape5)
    gy5 = rng.standard_normal(spec.output_shape5)
    ref = {"forward": lambda: reference.conv_forward(x, w, stride=stride, padding=1),
           "grad_input": lambda: reference.conv_grad_input(x.shape, w, gy5.reshape(
               (2, 6) + spec.output_shape5[3:]), stride=stride, padding=1),
           "grad_weight": lambda: reference.conv_grad_weight(x, w.shape, gy5.reshape(
               (2, 6) + spec.output_shape5[3:]), stride=stride, padding=1)}[op]()
    for _ in range(2):
        if op == "forward":
            out = np.empty(spec.output_shape5)
            _direct.forward(x5, w5, out, info)
        elif op == "grad_input":
            out = np.empty(spec.input_shape5)
            _direct.grad_input(gy5, w5, out, info)
        else:
            out = np.empty(spec.weight_shape5)
            _direct.grad_weight(x5, gy5, out, info)
        np.testing.assert_allclose(out.reshape(ref.shape), ref, rtol=1e-12, atol=1e-12)
    assert all(np.array_equal(before[k], getattr(info, k)) for k in arrays)


def test_a_plan_for_finite_weights_refuses_non_finite_ones():
    x, w = np.ones((1, 2, 6, 6)), np.ones((3, 2, 3, 3))
    spec = make_spec(x.shape, w.shape, padding=1, dtype=np.float64)
    w5 = w.reshape(spec.weight_shape5).copy()
    w5[0, 0, 0, 1, 1] = np.inf
    gy5, gx = np.ones(spec.output_shape5), np.empty(spec.input_shape5)
    assert np.isinf(w5).any()
    with pytest.raises(_direct.NonFiniteWeights, match="finite"):
        _direct.grad_input(gy5, w5, gx, _plan("grad_input", spec, 2))
    rows = _plan("grad_input", spec, 2, finite=False)
    assert rows.path == "rows"
    _direct.grad_input(gy5, w5, gx, rows)
    assert np.isinf(gx).any() and not np.isnan(gx).any()


def test_kernel_constants_are_exported():
    assert _direct.TILE == 64 and _direct.OBLOCK == 4
    assert _direct.LANES[4] * 4 == _direct.LANES[8] * 8


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
@pytest.mark.parametrize("kw", [dict(padding=2), dict(padding=(1, 3), stride=2)])
def test_workspace_is_every_byte_beyond_inputs_and_output(op, kw):
    info, ws_bytes, extra = traced_direct_call(op, (3, 8, 40, 44), (12, 8, 5, 3), kw)
    assert ws_bytes == direct_plan.scratch_bytes(info, 4)
    assert ws_bytes > 10_000
    assert abs(extra - ws_bytes) < 16384, (extra, ws_bytes)  # the rest: Python objects


def test_huge_strides_plan_grad_input_by_taps_not_stride():
    # grad_input's polyphase plan listed every phase of every axis (s per axis,
    # a product over three axes, outside any budget): 1-D stride 1e7 took ~1 GB
    # and seconds, 3-D stride 800 minutes. Now at most one component per tap.
    # In a child with a timeout, as a regression would run for minutes.
    code = """
    import numpy as np, fastconv
    from fastconv import reference
    from fastconv._strategies import direct_plan

    import tracemalloc
    one = np.ones((1, 1, 1))
    tracemalloc.start()
    gx = fastconv.grad_input((1, 1, 5), np.ones((1, 1, 3)), one, stride=10**7,
                             strategy="direct")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(gx, [[[1, 1, 1, 0, 0]]]), gx
    assert peak < 16 << 20, peak   # a problem of a few numbers
    for s in (200, 800):
        w = np.arange(27.0).reshape(1, 1, 3, 3, 3)
        gy = np.full((1, 1, 1, 1, 1), 2.0)
        gx = fastconv.grad_input((1, 1, 5, 5, 5), w, gy, stride=s, strategy="direct")
        np.testing.assert_array_equal(
            gx, reference.conv_grad_input((1, 1, 5, 5, 5), w, gy, stride=s))
        info = direct_plan.plan("grad_input", (1, 1, 5, 5, 5), w.shape, (1, 1, 1, 1, 1),
                                (s,) * 3, (1,) * 3, ((0, 0),) * 3, 1, 1, 8)
        assert info.path == "poly" and len(info.meta) <= 27, info.path
    y = fastconv.conv_transpose3d(np.ones((1, 1, 1, 1, 1)), np.ones((1, 1, 3, 3, 3)),
                                  stride=600)
    assert y.shape == (1, 1, 3, 3, 3) and np.all(y == 1), y.shape
    text = fastconv.explain("grad_input", (1, 1, 5, 5, 5), (1, 1, 3, 3, 3), stride=800)
    assert "direct" in str(text), text
    print("ok")
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, cwd=root, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout[-2000:] + p.stderr[-2000:]


def test_direct_reports_and_bounds_its_scratch():
    from fastconv import _strategies
    from fastconv._spec import make_spec

    direct = _strategies.get("direct")
    spec = make_spec((1, 1, 40, 40, 40), (8, 1, 5, 5, 5), padding=2, dtype=np.float32)
    x = np.ones(spec.input_shape, np.float32)
    w = np.ones(spec.weight_shape, np.float32)
    peaks = {}
    for threads in (1, 8):
        with fastconv.config(n_threads=threads):
            ws = direct.workspace(spec, "forward", fastconv.get_config())
            tracemalloc.start()
            fastconv.conv3d(x, w, padding=2, strategy="direct")
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        out = 8 * 40 ** 3 * 4
        assert ws > 0 and peak <= out + ws + (1 << 16)  # padding is done inside
        peaks[threads] = ws
    # two blocks of 4 output channels, cut into depth slabs for 8 threads: each
    # thread has one slab's buffers, smaller than those of one thread (which cuts
    # the slabs of two)
    info = direct_plan.plan("forward", spec.input_shape5, spec.weight_shape5,
                            spec.output_shape5, spec.stride3, spec.dilation3, spec.padding3,
                            1, 8, 4)
    once = direct_plan.scratch_bytes(dataclasses.replace(info, threads=0), 4)  # tap offsets: not per thread
    per = direct_plan.scratch_bytes(dataclasses.replace(info, threads=1), 4) - once
    assert info.threads == 8 and info.tasks >= 16 and peaks[8] - once == 8 * per
    assert per < (peaks[1] - once) / 1.5
    with fastconv.config(memory_budget=peaks[1] // 2):
        # over the budget, direct runs its row loops, which need no scratch
        assert direct.workspace(spec, "forward", fastconv.get_config()) == 0


@pytest.mark.parametrize("ci, n_threads", [(4, 1), (5, 1), (5, 2), (7, 3), (9, 2)])
def test_grad_weight_passes_of_two_input_channels(ci, n_threads):
    # the register blocks take their taps from two input planes at once (an odd
    # channel count leaves one pass of one); every weight must still be its own sum
    rng = np.random.default_rng(ci)
    x = rng.standard_normal((2, ci, 9, 10))
    ws = (6, ci, 3, 3)
    gy = rng.standard_normal(fastconv.output_shape(x.shape, ws, padding=1))
    spec = make_spec(x.shape, ws, padding=1, dtype=np.float64)
    info = _plan("grad_weight", spec, n_threads)
    assert info.path == "wide" and info.cpp == 2
    gw = np.empty(spec.weight_shape5)
    _direct.grad_weight(x.reshape(spec.input_shape5), gy.reshape(spec.output_shape5), gw, info)
    np.testing.assert_allclose(gw.reshape(ws), reference.conv_grad_weight(x, ws, gy, padding=1),
                               rtol=1e-12, atol=1e-12)
