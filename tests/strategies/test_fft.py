"""FFT strategy specifics: transform reuse, overlap-add, accuracy, memory budget.

(The general correctness grid in test_correctness.py covers "fft" for every
op x ndim x parameter case.)
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from _helpers import planned

import fastconv
import fastconv.grad as fgrad
from fastconv import reference as ref
from fastconv._spec import make_spec
from fastconv._strategies import fft as fftmod

pytestmark = pytest.mark.skipif("fft" not in fastconv.strategies(), reason="fft not registered")


def _problem(rng, x_shape, w_shape, dtype=np.float64, **kw):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    gy = rng.standard_normal(ref.conv_forward(x, w, **kw).shape).astype(dtype)
    return x, w, gy


def _all_ops(x, w, gy, **kw):
    nd = w.ndim - 2
    y = fastconv.conv(x, w, strategy="fft", **kw)
    gx = getattr(fgrad, f"conv{nd}d_input")(x.shape, w, gy, strategy="fft", **kw)
    gw = getattr(fgrad, f"conv{nd}d_weight")(x, w.shape, gy, strategy="fft", **kw)
    gx2, gw2, _ = fastconv.conv_backward(x, w, gy, strategy="fft", **kw)
    return y, gx, gw, gx2, gw2


def _refs(x, w, gy, **kw):
    y = ref.conv_forward(x, w, **kw)
    gx = ref.conv_grad_input(x.shape, w, gy, **kw)
    gw = ref.conv_grad_weight(x, w.shape, gy, **kw)
    return y, gx, gw, gx, gw


def _rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.fixture
def counter(monkeypatch):
    """Count calls of the forward transforms the strategy uses (pocketfft, or
    the kernel's DFT-matrix products)."""
    calls = []
    real = fftmod._rfftn
    real_k = fftmod._kernel_spectrum

    def counting(a, axes, workers):
        calls.append(a.shape)
        return real(a, axes, workers)

    def counting_k(w, *args):
        calls.append(w.shape)
        return real_k(w, *args)

    monkeypatch.setattr(fftmod, "_rfftn", counting)
    monkeypatch.setattr(fftmod, "_kernel_spectrum", counting_k)
    return calls


def test_backward_reuses_transforms(counter, rng):
    kw = dict(stride=2, padding=1, groups=2)
    x, w, gy = _problem(rng, (2, 4, 12, 11), (6, 2, 3, 4), **kw)
    # one thread: on more, each transform is cut into one call per pipeline
    with fastconv.config(n_threads=1):
        fgrad.conv2d_input(x.shape, w, gy, strategy="fft", **kw)
        fgrad.conv2d_weight(x, w.shape, gy, strategy="fft", **kw)
        separate = len(counter)
        counter.clear()
        gx, gw, _ = fastconv.conv_backward(x, w, gy, strategy="fft", **kw)
        together = len(counter)
    # grad_input: gy, w; grad_weight: x, gy  ->  backward: x, w, gy (gy once)
    assert separate == 4
    assert together == 3
    np.testing.assert_allclose(gx, ref.conv_grad_input(x.shape, w, gy, **kw), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gw, ref.conv_grad_weight(x, w.shape, gy, **kw), rtol=1e-9, atol=1e-9)


def test_cost_model_blocks_long_inputs():
    spec = make_spec((2, 3, 200000), (4, 3, 9), padding=4)
    plan = fftmod._block_plan(spec)
    assert plan and plan[0][0] == 2
    B = plan[0][1]
    assert 9 <= B < 200000
    # a short input of the same kernel is transformed whole
    assert fftmod._block_plan(make_spec((2, 3, 40), (4, 3, 9), padding=4)) == []
    # estimated work of the blocked plan is near-linear: 10x input -> < 12x cost
    est = functools.partial(fftmod.FFTStrategy().estimate, n_threads=1, options=None)
    big = make_spec((2, 3, 2000000), (4, 3, 9), padding=4)
    assert est(big, "forward") < 12 * est(spec, "forward")


@pytest.mark.parametrize("B", [None, 16, 5, 3])  # None: the cost model's own plan
@pytest.mark.parametrize("kw", [dict(padding=4),
                                dict(padding=((7, 2),), stride=3, dilation=2),
                                dict(padding="full", stride=2),
                                dict(groups=3, flip=True, padding=((3, 0),)),
                                dict(padding=((20, 13),), stride=2)])  # wider than the kernel
def test_overlap_add_1d_matches_reference(monkeypatch, rng, B, kw):
    x, w, gy = _problem(rng, (2, 3, 1500), (6, 3 // kw.get("groups", 1), 9), **kw)
    if B is not None:
        s = kw.get("stride", 1)
        # force a block length (a multiple of the stride), including blocks
        # shorter than the kernel span (several pieces overlap one output block)
        monkeypatch.setattr(fftmod, "_block_plan", lambda spec, op="forward": [(2, B * s)])
    for got, want in zip(_all_ops(x, w, gy, **kw), _refs(x, w, gy, **kw)):
        assert got.shape == want.shape
        assert _rel_err(got, want) <= 1e-12


def test_overlap_add_2d_two_axes(monkeypatch, rng):
    kw = dict(padding=((2, 1), (0, 3)), stride=(1, 2), dilation=(2, 1))
    x, w, gy = _problem(rng, (2, 2, 40, 37), (3, 2, 3, 4), **kw)
    monkeypatch.setattr(fftmod, "_block_plan", lambda spec, op="forward": [(2, 6), (1, 7)])
    for got, want in zip(_all_ops(x, w, gy, **kw), _refs(x, w, gy, **kw)):
        assert _rel_err(got, want) <= 1e-12


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((2, 8, 3000), (8, 8, 301), dict(padding=150)),
    ((2, 16, 48, 40), (32, 16, 11, 9), dict(padding=5)),
    ((1, 4, 20, 18, 16), (4, 2, 7, 5, 6), dict(padding=2, groups=2, stride=(1, 2, 1))),
    ((1, 16, 4096), (16, 1, 4096), dict(padding=((4095, 0),), groups=16)),
])
def test_float64_accuracy_larger(rng, x_shape, w_shape, kw):
    x, w, gy = _problem(rng, x_shape, w_shape, **kw)
    for got, want in zip(_all_ops(x, w, gy, **kw), _refs(x, w, gy, **kw)):
        assert _rel_err(got, want) <= 1e-9


def test_memory_error_under_tiny_budget(rng):
    x, w, gy = _problem(rng, (2, 3, 30, 30), (4, 3, 5, 5))
    with fastconv.config(memory_budget=4096):
        with pytest.raises(MemoryError, match=r"needs \d+ bytes.*memory budget of 4096 bytes"):
            fastconv.conv2d(x, w, strategy="fft")
        with pytest.raises(MemoryError, match="4096"):
            fastconv.conv_backward(x, w, gy, strategy="fft")


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight", "backward"])
def test_small_budget_chunks_batch_and_groups(rng, op):
    kw = dict(padding=2, groups=4)
    x, w, gy = _problem(rng, (5, 8, 24, 20), (8, 2, 5, 5), **kw)
    spec = make_spec(x.shape, w.shape, **kw)
    # one sample of one group of the innermost (overlap-add block) problem; budgets
    # this small keep only the live buffers between calls (kept=False)
    inner, blocks = fftmod._blocked_geometry(spec, fftmod._block_plan(spec, op))
    full = fftmod._peak(inner, op, inner.batch, False) + blocks
    one = fftmod._group_spec(inner, 1)
    smallest = fftmod._peak(one, op, 1, False) + fftmod._group_extra(inner, one, op) + blocks
    results = []
    for budget in (1 << 30, smallest + (full - smallest) // 3, smallest + 16):
        with fastconv.config(memory_budget=int(budget)):
            if budget < 1 << 30:
                gc, nbc, ws, _ = fftmod._chunks(inner, op, int(budget) - blocks, 2)
                ws += blocks
                assert (gc, nbc) != (spec.groups, spec.batch)   # really chunked
                assert ws <= budget
            if op == "forward":
                results.append([fastconv.conv2d(x, w, strategy="fft", **kw)])
            elif op == "grad_input":
                results.append([fgrad.conv2d_input(x.shape, w, gy, strategy="fft", **kw)])
            elif op == "grad_weight":
                results.append([fgrad.conv2d_weight(x, w.shape, gy, strategy="fft", **kw)])
            else:
                results.append(list(fastconv.conv_backward(x, w, gy, strategy="fft", **kw)[:2]))
    want = {"forward": [ref.conv_forward(x, w, **kw)],
            "grad_input": [ref.conv_grad_input(x.shape, w, gy, **kw)],
            "grad_weight": [ref.conv_grad_weight(x, w.shape, gy, **kw)],
            "backward": [ref.conv_grad_input(x.shape, w, gy, **kw),
                         ref.conv_grad_weight(x, w.shape, gy, **kw)]}[op]
    for res in results:
        for got, exp in zip(res, want):
            assert _rel_err(got, exp) <= 1e-12


def test_workspace_within_budget_when_chunked():
    spec = make_spec((64, 32, 64, 64), (32, 32, 15, 15), padding=7, dtype=np.float32)
    budget = 128 << 20
    with fastconv.config(memory_budget=budget):
        assert fftmod.FFTStrategy().workspace(spec, "forward", fastconv.get_config()) <= budget
    gc, nbc, _, _ = fftmod._chunks(spec, "forward", budget)
    assert nbc < spec.batch


def test_nan_spreads_over_the_map(rng):
    # documented behaviour: one NaN poisons the whole output map under FFT
    x = rng.standard_normal((1, 1, 32))
    x[0, 0, 3] = np.nan
    y = fastconv.conv1d(x, np.ones((1, 1, 3)), strategy="fft")
    assert np.isnan(y).all()
    with fastconv.config(allow_fft=False):
        assert fastconv.explain("forward", x.shape, (1, 1, 3)).strategy != "fft"


def test_float32_uses_single_precision_spectra(counter, rng):
    x = rng.standard_normal((2, 3, 50)).astype(np.float32)
    w = rng.standard_normal((4, 3, 7)).astype(np.float32)
    y = fastconv.conv1d(x, w, strategy="fft")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ref.conv_forward(x, w), rtol=1e-4,
                               atol=1e-5 * 8 * np.abs(y).max())


@pytest.mark.parametrize("step, offset", [((1, 1, 1), (0, 0, 0)), ((1, 2, 3), (2, 0, 1)),
                                          ((2, 1, 1), (1, 3, 0))])
def test_pack_unpack_are_adjoint(rng, step, offset):
    """<pack(x), z> == <x, unpack(z)> with the same step and offset."""
    from fastconv._ext import _fft
    A, B, Q = 5, 3, (2, 4, 6)
    F = tuple(o + (q - 1) * e + 1 + 2 for q, e, o in zip(Q, step, offset))
    a0, na = 1, 3
    x = rng.standard_normal((A, B) + Q)
    z = rng.standard_normal(F + (na, B))
    for threads in (1, 2):
        px = np.zeros(F + (na, B))
        _fft.pack(x, px, a0, step, offset, threads)
        ux = np.full_like(x, np.nan)
        ux[:a0], ux[a0 + na:] = 0, 0
        _fft.unpack(z, ux, a0, step, offset, threads)
        assert np.isfinite(ux).all()     # the lanes [a0, a0 + na) are all written
        lhs, rhs = float(np.vdot(px, z)), float(np.vdot(x[a0:a0 + na], ux[a0:a0 + na]))
        assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("fn, src, dst, kw", [
    ("pack", (3, 2, 1, 4, 5), (1, 6, 5, 2, 2), dict(offset=(0, 3, 0))),   # past F1
    ("pack", (3, 2, 1, 4, 5), (1, 6, 5, 4, 2), dict()),                   # lanes past A
    ("pack", (3, 2, 1, 4, 5), (1, 6, 5, 2, 3), dict()),                   # channels differ
    ("unpack", (1, 6, 5, 2, 2), (3, 2, 1, 4, 5), dict(step=(1, 2, 1))),   # 1 + 3*2 > 6
    ("unpack", (1, 6, 5, 2, 2), (3, 2, 1, 4, 5), dict(offset=(0, 0, -1))),
])
def test_pack_unpack_refuse_out_of_bounds(fn, src, dst, kw):
    from fastconv._ext import _fft
    args = dict(a0=1, step=(1, 1, 1), offset=(0, 0, 0))
    args.update(kw)
    with pytest.raises(ValueError):
        getattr(_fft, fn)(np.zeros(src), np.zeros(dst), args["a0"], args["step"],
                          args["offset"], 2)


@pytest.mark.parametrize("x_shape, w_shape, kw, budget", [
    ((4, 8, 24, 24), (8, 8, 7, 7), dict(padding=3), 256 << 20),
    ((4, 8, 24, 24), (8, 8, 7, 7), dict(padding=3), 550_000),       # chunked batch
    ((4, 8, 20, 24), (8, 2, 5, 5), dict(padding=2, groups=4), 200_000),   # chunked groups
    ((2, 3, 1500), (6, 3, 9), dict(padding=((6, 2),)), 256 << 20),  # overlap-add
    ((1, 16, 128, 128), (16, 16, 11, 11), dict(padding=5), 256 << 20),  # tiles in 2 axes
])
def test_workspace_bounds_traced_memory(rng, x_shape, w_shape, kw, budget):
    """Peak traced memory of a run beyond its inputs and output never exceeds
    workspace(); unblocked, it is within pocketfft's untraced temporary of it."""
    import tracemalloc
    spec = make_spec(x_shape, w_shape, padding=kw["padding"], groups=kw.get("groups", 1),
                     dtype=np.float32)
    x = rng.standard_normal(spec.input_shape5).astype(np.float32)
    w = rng.standard_normal(spec.weight_shape5).astype(np.float32)
    gy = rng.standard_normal(spec.output_shape5).astype(np.float32)
    s = fftmod.FFTStrategy()
    calls = {"forward": lambda: [planned(s, "forward", spec, x, w, threads=2)],
             "grad_input": lambda: [planned(s, "grad_input", spec, gy, w, threads=2)],
             "grad_weight": lambda: [planned(s, "grad_weight", spec, x, gy, threads=2)],
             "backward": lambda: list(planned(s, "backward", spec, x, w, gy, threads=2))}
    for op, call in calls.items():
        with fastconv.config(memory_budget=budget, n_threads=2):
            ws = s.workspace(spec, op, fastconv.get_config())
            if ws > budget:         # one sample does not fit: refused before allocating
                with pytest.raises(MemoryError):
                    call()
                continue
            call()                    # one-off state (threadpoolctl, FFT plans) outside
            tracemalloc.start()
            try:
                out = call()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        extra = peak - sum(o.nbytes for o in out)
        assert extra <= ws + 16 * 1024, (op, extra, ws)
        if not fftmod._block_plan(spec, op):
            assert extra >= 0.6 * ws, (op, extra, ws)


@pytest.mark.parametrize("fn, shapes", [
    ("contract_forward", [(4, 2, 6), (4, 5, 6), (4, 2, 12)]),          # Y too wide
    ("contract_forward", [(4, 2, 6), (3, 5, 6), (4, 2, 10)]),          # fewer W frequencies
    ("contract_grad_input", [(4, 3, 10), (4, 5, 6), (4, 2, 6)]),       # batch differs
    ("contract_grad_weight", [(4, 2, 6), (4, 2, 10), (4, 5, 8)]),      # GW per-group width
])
def test_contractions_refuse_mismatched_spectra(fn, shapes):
    from fastconv._ext import _fft
    a, b, c = (np.zeros(s, np.float64) for s in shapes)
    # (X|GY, W, Y|GX) or, for grad_weight, (X, GY, GW)
    args = (1, False, 2) if fn != "contract_grad_weight" else (1, True, False, 2)
    with pytest.raises(ValueError):
        getattr(_fft, fn)(a, b, c, *args)
