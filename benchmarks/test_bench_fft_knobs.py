"""The FFT strategy's knobs side by side on mid-size kernels: the kernel's
spectrum by DFT-matrix products or by zero-padded transforms, and the plan
the cost model picks against no blocking and against equal tiles.

    pytest benchmarks/test_bench_fft_knobs.py [--quick]

Layers: ho-7x7 (4, 64, 32x32) -> 64 7x7 p3, ho-5x5 (16, 32, 28x28) -> 64
5x5 p2, large-k11 (16, 16, 64x64) -> 16 11x11 p5 and a (1, 32, 256x256) 11x11
layer where tiles are chosen.
"""
import numpy as np
import pytest

import fastconv
import fastconv.grad as fgrad
from fastconv._spec import make_spec
from fastconv._strategies import fft as fftmod
from fastconv._strategies import fft_plan

LAYERS = {
    "full": {"ho-7x7": ((4, 64, 32, 32), (64, 64, 7, 7), 3),
             "ho-5x5": ((16, 32, 28, 28), (64, 32, 5, 5), 2),
             "k11": ((16, 16, 64, 64), (16, 16, 11, 11), 5),
             "k11-256": ((1, 32, 256, 256), (32, 32, 11, 11), 5)},
    "quick": {"ho-7x7": ((2, 16, 16, 16), (16, 16, 7, 7), 3),
              "ho-5x5": ((4, 8, 14, 14), (16, 8, 5, 5), 2),
              "k11": ((2, 8, 32, 32), (8, 8, 11, 11), 5),
              "k11-256": ((1, 8, 96, 96), (8, 8, 11, 11), 5)},
}


def _plan(kind, spec, op):
    if kind == "auto":
        return fft_plan._block_plan(spec, op)
    if kind == "none":
        return []
    tiles = fft_plan._tile_plans(spec)
    if not tiles:
        pytest.skip("no tile plan for this layer")
    return min(tiles, key=lambda p: fft_plan._plan_cost(spec, op, p))


def _fft_call(op, x, w, pad):
    """A no-argument call of the forced FFT strategy: forward, or grad_weight
    (its grad_output computed once, here)."""
    if op == "forward":
        return lambda: fastconv.conv(x, w, padding=pad, strategy="fft")
    gy = fastconv.conv(x, w, padding=pad, strategy="direct")
    return lambda: fgrad.conv2d_weight(x, w.shape, gy, padding=pad, strategy="fft")


@pytest.mark.parametrize("kernel", ["dft", "transform"])
@pytest.mark.parametrize("plan", ["auto", "none", "tiles"])
@pytest.mark.parametrize("op", ["forward", "grad_weight"])
@pytest.mark.parametrize("layer", ["ho-7x7", "ho-5x5", "k11", "k11-256"])
def test_fft_knobs(benchmark, monkeypatch, bench_size, layer, op, plan, kernel):
    x_shape, w_shape, pad = LAYERS[bench_size][layer]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    spec = make_spec(x_shape, w_shape, padding=pad, dtype=np.float32)
    chosen = _plan(plan, spec, op)
    monkeypatch.setattr(fftmod, "_block_plan", lambda spec, op="forward": chosen)
    monkeypatch.setattr(fftmod, "_kernel_by_dft", lambda *a, **k: kernel == "dft")
    fn = _fft_call(op, x, w, pad)
    with fastconv.config(n_threads=2, memory_budget=1 << 30):
        fn()
        benchmark(fn)
    benchmark.extra_info.update(layer=layer, op=op, plan=str(chosen), kernel=kernel,
                                estimate_s=fft_plan._plan_cost(spec, op, chosen, 2))


@pytest.mark.parametrize("threads", ["pipelines", "steps"])
@pytest.mark.parametrize("buffers", ["kept", "released"])
@pytest.mark.parametrize("op", ["forward", "grad_weight"])
@pytest.mark.parametrize("layer", ["ho-5x5", "k11"])
def test_fft_buffers_and_threads(benchmark, monkeypatch, bench_size, layer, op, buffers,
                                 threads):
    """Buffers kept between calls against given back after each call (fresh
    ones page-faulted), and one pipeline per thread against every step on all
    threads (OpenMP loops alternating with pocketfft's pool), on 2 threads."""
    x_shape, w_shape, pad = LAYERS[bench_size][layer]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    if threads == "steps":
        monkeypatch.setattr(fftmod, "_lanes_split", lambda n, nbc: 1)
    call = _fft_call(op, x, w, pad)

    def fn():
        call()
        if buffers == "released":
            fftmod.release_buffers()

    with fastconv.config(n_threads=2):
        fn()
        benchmark(fn)
    benchmark.extra_info.update(layer=layer, op=op, buffers=buffers, threads=threads)
