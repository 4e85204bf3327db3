"""The direct strategy against numpy's matmul GFLOP/s, measured in the same test.

Each case times one direct op on a layer and, alternately, a float32 n x n
matmul, and records both rates and their ratio (``matmul_fraction``) in
``extra_info``. The yardstick: direct grad_weight on resnet3x3-56 at
>= 50% of the matmul's rate. The layers cover the direct kernels' paths: 3x3
(register tiles of 4 output channels), depthwise (1 channel per tile), 3-D, a
strided stem (polyphase components) and 1-D, plus a 3-D volume of one image and
one input channel (its grad_input cut into depth slabs so both threads work) and
a held-out 5x5 depthwise layer (row blocks).
"""
import numpy as np
import pytest

from fastconv._tuning import time_call
from fastconv.bench import calls as _calls

from layers import get_layer

LAYERS = ("resnet3x3-56", "depthwise", "conv3d", "resnet-stem", "conv1d", "conv3d-volume",
          "ho-dw5x5")


@pytest.mark.parametrize("op", ("forward", "grad_input", "grad_weight"))
@pytest.mark.parametrize("name", LAYERS)
def test_direct_vs_matmul(benchmark, bench_size, name, op):
    layer = get_layer(name, bench_size)
    spec = layer.spec(np.float32)
    x, w, gy = _calls.make_arrays(layer, np.float32)
    fn = _calls.fastconv_call(layer, op, "direct", x, w, gy)
    n = 512 if bench_size == "quick" else 1024
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    t_mm, t_conv = np.inf, np.inf
    for _ in range(3):  # interleaved rounds, best of each
        t_mm = min(t_mm, time_call(lambda: a @ a, min_time=0.02, repeat=1))
        t_conv = min(t_conv, time_call(fn, min_time=0.02, repeat=1))
    benchmark(fn)
    mm = 2 * n ** 3 / t_mm
    benchmark.extra_info.update(
        layer=layer.name, op=op, flops=spec.flops, matmul_gflops=mm / 1e9,
        direct_gflops=spec.flops / t_conv / 1e9, matmul_fraction=spec.flops / t_conv / mm)
