"""im2col's knobs side by side: units sized to L2 vs to the whole image, and the
two parallel modes (OMP over units, BLAS-threaded GEMMs).

    pytest benchmarks/test_bench_im2col_units.py [--quick]

Layers B (8, 48, 80x80) -> 48 5x5 p2 and C (2, 16, 24^3) -> 16 3^3 p1 are the
ones where sizing units to the memory budget streamed the unfold from DRAM.
"""
import numpy as np
import pytest

import fastconv
import fastconv.grad as fgrad
from fastconv._strategies import im2col

LAYERS = {
    "full": {"B": ((8, 48, 80, 80), (48, 48, 5, 5), 2),
             "C": ((2, 16, 24, 24, 24), (16, 16, 3, 3, 3), 1)},
    "quick": {"B": ((2, 16, 40, 40), (16, 16, 5, 5), 2),
              "C": ((1, 8, 12, 12, 12), (8, 8, 3, 3, 3), 1)},
}


@pytest.mark.parametrize("units", ["l2", "image"])
@pytest.mark.parametrize("mode", ["omp", "blas"])
@pytest.mark.parametrize("op", ["forward", "grad_weight"])
@pytest.mark.parametrize("layer", ["B", "C"])
def test_im2col_units(benchmark, monkeypatch, bench_size, layer, op, mode, units):
    x_shape, w_shape, pad = LAYERS[bench_size][layer]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    nd = len(w_shape) - 2
    if units == "image":
        monkeypatch.setattr(im2col, "_L2_FRACTION", 1 << 12)
    if op == "forward":
        fn = lambda: fastconv.conv(x, w, padding=pad, strategy="im2col")  # noqa: E731
    else:
        gy = fastconv.conv(x, w, padding=pad, strategy="direct")
        fn = lambda: getattr(fgrad, f"conv{nd}d_weight")(  # noqa: E731
            x, w.shape, gy, padding=pad, strategy="im2col")
    with fastconv.config(n_threads=2), im2col.parallel_mode(mode):
        fn()
        benchmark(fn)
    benchmark.extra_info.update(layer=layer, op=op, mode=mode, units=units,
                                l2_bytes=im2col.L2_BYTES)
