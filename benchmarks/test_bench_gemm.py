"""im2col against numpy's matmul of the same GEMM (the yardstick of its speed).

For the 3x3 layers with >= 64 channels, each case times one im2col op and, in
the same test, numpy's float32 matmul of the GEMM that op reduces to (the
whole batch as one product), and records both GFLOP/s and their ratio in
``extra_info`` (``gemm_fraction``). The target: forward should reach 70% of the
matmul's rate, the backward ops 60% (they add a fold or a reduction).
"""
import numpy as np
import pytest

import fastconv
from fastconv._tuning import time_call
from fastconv.bench import calls as _calls

from layers import get_layer

LAYERS = ("resnet3x3-56", "resnet3x3-14")


def gemm_shape(spec, op):
    """(M, K, N) of the GEMM that im2col's ``op`` performs, batch included."""
    ck = spec.in_channels_per_group * spec.kernel_size
    L = spec.batch * int(np.prod(spec.out_spatial))
    co = spec.out_channels_per_group
    return {"forward": (co, ck, L), "grad_input": (ck, co, L), "grad_weight": (co, L, ck)}[op]


@pytest.mark.skipif("im2col" not in fastconv.strategies(), reason="no im2col strategy")
@pytest.mark.parametrize("op", ("forward", "grad_input", "grad_weight"))
@pytest.mark.parametrize("name", LAYERS)
def test_im2col_vs_matmul(benchmark, bench_size, name, op):
    layer = get_layer(name, bench_size)
    spec = layer.spec(np.float32)
    x, w, gy = _calls.make_arrays(layer, np.float32)
    fn = _calls.fastconv_call(layer, op, "im2col", x, w, gy)
    M, K, N = gemm_shape(spec, op)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    t_mm = time_call(lambda: a @ b, min_time=0.05, repeat=3)
    t_conv = time_call(fn, min_time=0.05, repeat=3)
    benchmark(fn)
    benchmark.extra_info.update(
        layer=layer.name, op=op, gemm_mkn=[M, K, N], flops=spec.flops,
        matmul_gflops=2 * M * K * N / t_mm / 1e9, im2col_gflops=spec.flops / t_conv / 1e9,
        gemm_fraction=t_mm / t_conv)
