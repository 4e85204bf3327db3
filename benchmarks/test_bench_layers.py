"""Layer x strategy x op benchmarks (plus "auto"), and PyTorch / SciPy peers.

Each case records in ``extra_info``: FLOPs, GFLOP/s (from the fastest of its
own calls), the conv layer's and the equivalent dense layer's parameter
counts and their ratio, the workspace bytes the dispatcher lists for the
strategy, and the session's numpy matmul GFLOP/s ceiling.
"""
import functools
import time

import numpy as np
import pytest

import fastconv
from fastconv._spec import OPS
from fastconv.bench import calls as _calls
from fastconv.params import from_spec

from layers import LAYER_NAMES, get_layer, too_big

IMPLS = tuple(fastconv.strategies()) + ("auto",)
DTYPE = np.float32


@functools.lru_cache(maxsize=1)
def _arrays(name, size):
    return _calls.make_arrays(get_layer(name, size), DTYPE)


@functools.lru_cache(maxsize=64)
def _decision(name, size, op):
    try:
        return _calls.auto_decision(get_layer(name, size), op, DTYPE)
    except (MemoryError, ValueError):
        return None


def _timed(fn, times):
    def call():
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        return out
    return call


def _run(benchmark, layer, fn, ceiling, **info):
    times = []
    benchmark(_timed(fn, times))
    spec = layer.spec(DTYPE)
    p = from_spec(spec)
    best = min(times)
    gflops = spec.flops / best / 1e9
    benchmark.extra_info.update(
        layer=layer.name, size=layer.size, flops=spec.flops, macs=spec.macs,
        best_s=best, gflops=gflops, matmul_gflops=ceiling["gflops"],
        ceiling_fraction=gflops / ceiling["gflops"],
        conv_params=p.conv_total, dense_params=p.dense_total, params_ratio=p.ratio, **info)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_fastconv(benchmark, bench_size, matmul_ceiling, name, impl, op):
    layer = get_layer(name, bench_size)
    spec = layer.spec(DTYPE)
    decision = _decision(name, bench_size, op)
    if impl == "auto":
        if decision is None:
            pytest.skip("the dispatcher found no strategy within the memory budget")
        strategy = decision.strategy
        reason = too_big(strategy, spec)
        if reason:
            pytest.skip(f"auto chose {strategy}; {reason}")
    else:
        strategy = impl
        reason = _calls.excluded(layer, op, impl, DTYPE, decision)
        if reason:
            pytest.skip(reason)
    x, w, gy = _arrays(name, bench_size)
    fn = _calls.fastconv_call(layer, op, impl, x, w, gy)
    _run(benchmark, layer, fn, matmul_ceiling, op=op, impl=impl, strategy=strategy,
         workspace_bytes=_calls.workspace_bytes(layer, op, strategy, DTYPE, decision),
         decided_by=decision.decided_by if decision is not None and impl == "auto" else "argument")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_torch(benchmark, bench_size, matmul_ceiling, name, op):
    torch = pytest.importorskip("torch")
    layer = get_layer(name, bench_size)
    x, w, gy = _arrays(name, bench_size)
    threads = fastconv.get_config().threads
    fn = _calls.torch_call(layer, op, x, w, gy, threads)
    _run(benchmark, layer, fn, matmul_ceiling, op=op, impl="torch",
         torch_version=torch.__version__, torch_threads=threads)


@pytest.mark.parametrize("method", ["scipy.correlate", "scipy.oaconvolve"])
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_scipy(benchmark, bench_size, matmul_ceiling, name, method):
    layer = get_layer(name, bench_size)
    reason = _calls.scipy_applicable(layer)
    if reason:
        pytest.skip(reason)
    x, w, _ = _arrays(name, bench_size)
    fn = _calls.scipy_calls(layer, x, w)[method]
    _run(benchmark, layer, fn, matmul_ceiling, op="forward", impl=method)
