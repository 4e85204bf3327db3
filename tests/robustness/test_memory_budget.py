"""The memory budget bounds what a call allocates beyond its inputs and outputs.

For every strategy (forced) and for ``conv_backward``, on padded layers whose
unbounded workspace is far above the budget: the peak traced by tracemalloc
(NumPy reports its allocations to it) minus the results is at most 1.1 x the
budget, or the call raises MemoryError before allocating.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import fastconv
from fastconv import _config, _dispatch


@pytest.fixture(autouse=True)
def _default_options(monkeypatch):
    """Start from the default options (another test may have loaded a config file)."""
    monkeypatch.setattr(_config, "_global", _config.Options())
    _dispatch.clear_memo()
    yield
    _dispatch.clear_memo()

MiB = 1 << 20
BUDGET = 64 * MiB

# (input, weight, kwargs): a 3x3 layer whose unfold is ~150 MiB, and a 15x15
# layer whose FFT transforms and direct copies are far above the budget
LAYERS = {
    "3x3-pad1": ((8, 32, 128, 128), (32, 32, 3, 3), dict(padding=1)),
    "15x15-pad7": ((2, 16, 96, 96), (16, 16, 15, 15), dict(padding=7)),
}
OPS = ("forward", "grad_input", "grad_weight", "backward")


def _run(op, x, w, gy, kw, strategy):
    if op == "forward":
        return (fastconv.conv(x, w, strategy=strategy, **kw),)
    if op == "grad_input":
        return (fastconv.grad_input(x.shape, w, gy, strategy=strategy, **kw),)
    if op == "grad_weight":
        return (fastconv.grad_weight(x, w.shape, gy, strategy=strategy, **kw),)
    return fastconv.conv_backward(x, w, gy, strategy=strategy, **kw)


def _extra_peak(op, x, w, gy, kw, strategy):
    """Peak bytes beyond the results, or None after a MemoryError that allocated nothing."""
    tracemalloc.start()
    try:
        try:
            out = _run(op, x, w, gy, kw, strategy)
        except MemoryError as e:
            cur, peak = tracemalloc.get_traced_memory()
            assert "budget" in str(e) and peak < MiB, (str(e), peak)
            return None, str(e)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - sum(a.nbytes for a in out), None


@pytest.fixture(scope="module")
def operands():
    rng = np.random.default_rng(0)
    out = {}
    for name, (xs, ws, kw) in LAYERS.items():
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32)
        gy = rng.standard_normal(fastconv.output_shape(xs, ws, **kw), dtype=np.float32)
        out[name] = (x, w, gy, kw)
    return out


# Cases that exceed the bound on this branch, with the measured peak and the reason;
# the bound itself is never loosened.
KNOWN = {}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("strategy", ("auto",) + tuple(fastconv.strategies()))
@pytest.mark.parametrize("layer", LAYERS)
def test_peak_memory_within_budget(operands, layer, strategy, op, request):
    if (layer, strategy, op) in KNOWN:
        request.applymarker(pytest.mark.xfail(reason=KNOWN[layer, strategy, op], strict=False))
    x, w, gy, kw = operands[layer]
    if strategy != "auto":
        from fastconv import _strategies

        spec = fastconv.make_spec(x.shape, w.shape, **kw)
        for o in ("forward", "grad_input", "grad_weight"):
            if _strategies.get(strategy).supports(spec, o) is not None:
                pytest.skip(f"{strategy} cannot run {layer}")
    with fastconv.config(memory_budget=BUDGET):
        extra, err = _extra_peak(op, x, w, gy, kw, strategy)
    if extra is None:
        assert strategy != "auto" or op == "backward", err
        return
    assert extra <= 1.1 * BUDGET, (
        f"{layer} {strategy} {op}: {extra / MiB:.1f} MiB beyond the results, "
        f"budget {BUDGET / MiB:.0f} MiB")
