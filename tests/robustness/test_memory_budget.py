"""The memory budget bounds what a call allocates beyond its inputs and outputs.

For every strategy (forced) and for ``conv_backward``, on padded layers whose
unbounded workspace is far above the budget: the peak traced by tracemalloc
(NumPy reports its allocations to it) minus the results is at most 1.1 x the
budget, or the call raises MemoryError before allocating. Also: an output larger
than the memory available, a forced strategy over the budget, padded copies
counted against it, and the fused backward pass within it.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from _helpers import STRATEGIES, strategy_params

import fastconv
from fastconv import _dispatch, reference

# every test starts from the default options (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("default_options")

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


def _layer_spec(layer):
    xs, ws, kw = LAYERS[layer]
    return fastconv.make_spec(xs, ws, **kw)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("strategy, layer", strategy_params(
    _layer_spec, LAYERS, strategies=("auto",) + STRATEGIES))
def test_peak_memory_within_budget(operands, layer, strategy, op, request):
    if (layer, strategy, op) in KNOWN:
        request.applymarker(pytest.mark.xfail(reason=KNOWN[layer, strategy, op], strict=False))
    x, w, gy, kw = operands[layer]
    with fastconv.config(memory_budget=BUDGET):
        extra, err = _extra_peak(op, x, w, gy, kw, strategy)
    if extra is None:
        assert strategy != "auto" or op == "backward", err
        return
    assert extra <= 1.1 * BUDGET, (
        f"{layer} {strategy} {op}: {extra / MiB:.1f} MiB beyond the results, "
        f"budget {BUDGET / MiB:.0f} MiB")


# an output that cannot fit in memory: MemoryError before allocating
def test_output_larger_than_available_memory_raises_memoryerror():
    # a 400,000 x 400,000 float64 output: 1.2 TiB
    with pytest.raises(MemoryError, match=r"output needs \d+ bytes.*available"):
        fastconv.conv2d(np.ones((1, 1, 8, 8)), np.ones((1, 1, 3, 3)), padding=200_000)
    with pytest.raises(MemoryError, match=r"grad_input needs \d+ bytes.*available"):
        fastconv.grad_input((1, 1, 400_000, 400_000), np.ones((1, 1, 3, 3)),
                            np.ones((1, 1, 1, 1)), stride=400_000)


def test_forced_strategy_over_budget_raises_with_numbers():
    """A forced strategy that cannot fit raises with the numbers; one that fits runs."""
    from fastconv import _strategies

    x, w = np.ones((2, 4, 64, 64)), np.ones((4, 4, 3, 3))
    spec = fastconv.make_spec(x.shape, w.shape, padding=1)
    raised = 0
    for s in fastconv.strategies():
        with fastconv.config(memory_budget=1024):
            need = _dispatch.total_workspace(_strategies.get(s), spec, "forward",
                                             fastconv.get_config())
            if need > 1024:
                raised += 1
                with pytest.raises(MemoryError, match=r"needs \d+ bytes.*budget is 1024 bytes"):
                    fastconv.conv2d(x, w, padding=1, strategy=s)
            else:  # e.g. a strategy that pads inside with no scratch
                fastconv.conv2d(x, w, padding=1, strategy=s)
    assert raised >= 1


def test_conv_backward_fused_pass_respects_the_budget():
    """Both ops fit the budget alone but the fused FFT pass does not: run them apart."""
    from fastconv import _strategies
    from fastconv._spec import make_spec

    fft = _strategies.get("fft")
    spec = make_spec((4, 8, 48, 48), (8, 8, 15, 15), padding=7, dtype=np.float32)
    with fastconv.config(memory_budget=1 << 40):
        sizes = {op: fft.workspace(spec, op, fastconv.get_config())
                 for op in ("grad_input", "grad_weight", "backward")}
    budget = max(sizes["grad_input"], sizes["grad_weight"])
    assert sizes["backward"] > budget
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 48, 48)).astype(np.float32)
    w = rng.standard_normal((8, 8, 15, 15)).astype(np.float32)
    gy = rng.standard_normal((4, 8, 48, 48)).astype(np.float32)
    with fastconv.config(memory_budget=budget):
        gx, gw, _ = fastconv.conv_backward(x, w, gy, padding=7, strategy="fft")
    scale = np.abs(gx).max()
    np.testing.assert_allclose(gx, reference.conv_grad_input(x.shape, w, gy, padding=7),
                               atol=1e-4 * scale)
    np.testing.assert_allclose(gw, reference.conv_grad_weight(x, w.shape, gy, padding=7),
                               atol=1e-4 * np.abs(gw).max())
