"""Edge cases found in review: NaN locality, budgets of the fused backward pass and
of direct's scratch, limits."""
import tracemalloc

import numpy as np
import pytest

import fastconv
from fastconv import reference
from fastconv._configfile import ConfigError, read_config_file

# FFT spreads NaN over the map, winograd over the tiles it touches, by design
LOCAL = [s for s in fastconv.strategies() if s not in ("fft", "winograd")]


@pytest.mark.parametrize("strategy", LOCAL)
@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_nonfinite_input_reaches_only_the_taps_that_touch_it(strategy, bad, ndim):
    # The Inf sits in the first column: with a wider padded row than output
    # row, a flat sum over the row pitch would also multiply it by zeros.
    spatial = (4, 5, 6)[-ndim:]
    x = np.ones((1, 1) + spatial)
    x[(0, 0) + tuple(s // 2 for s in spatial[:-1]) + (0,)] = bad
    ws = (1, 1) + (3,) * ndim
    gy = np.ones((1, 1) + tuple(s - 2 for s in spatial))
    got = fastconv.grad_weight(x, ws, gy, strategy=strategy)
    want = reference.conv_grad_weight(x, ws, gy)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert fin.any() and not fin.all()
    np.testing.assert_allclose(got[fin], want[fin])


@pytest.mark.skipif("fft" not in fastconv.strategies(), reason="no fft strategy")
def test_conv_backward_fused_pass_respects_the_budget():
    """Both ops fit the budget alone but the fused FFT pass does not: run them apart."""
    from fastconv import _strategies
    from fastconv._spec import make_spec

    fft = _strategies.get("fft")
    spec = make_spec((4, 8, 48, 48), (8, 8, 15, 15), padding=7, dtype=np.float32)
    with fastconv.config(memory_budget=1 << 40):
        sizes = {op: fft.workspace(spec, op) for op in ("grad_input", "grad_weight", "backward")}
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
            ws = direct.workspace(spec, "forward")
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
    from fastconv._ext import _direct
    info = _direct.plan("forward", spec.input_shape5, spec.weight_shape5, spec.output_shape5,
                        spec.stride3, spec.dilation3, spec.padding3, 1, 8, 4)
    once = _direct.scratch_bytes(dict(info, threads=0), 4)  # tap offsets: not per thread
    per = _direct.scratch_bytes(dict(info, threads=1), 4) - once
    assert info["threads"] == 8 and info["tasks"] >= 16 and peaks[8] - once == 8 * per
    assert per < (peaks[1] - once) / 1.5
    with fastconv.config(memory_budget=peaks[1] // 2):
        # over the budget, direct runs its row loops, which need no scratch
        assert direct.workspace(spec, "forward") == 0


@pytest.mark.parametrize("kw, name", [
    (dict(stride=2**63), "stride"), (dict(dilation=(1, 2**40)), "dilation"),
    (dict(padding=2**40), "padding"), (dict(padding=((0, 2**40), (0, 0))), "padding"),
])
def test_huge_values_are_value_errors(kw, name):
    with pytest.raises(ValueError, match=name):
        fastconv.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 2, 2)), **kw)


@pytest.mark.parametrize("kw", [dict(n_threads=True), dict(memory_budget=True),
                                dict(fft_max_stride=False)])
def test_bool_is_not_a_count(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        with fastconv.config(**kw):
            pass


def test_rule_range_min_above_max(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[[rules]]\nstrategy = 'direct'\nkernel = {min = 10, max = 5}\n")
    with pytest.raises(ConfigError, match="kernel"):
        read_config_file(path)


def test_explain_returns_a_copy():
    d = fastconv.explain("forward", (1, 2, 8, 8), (2, 2, 3, 3))
    d.strategy = "bogus"
    assert fastconv.explain("forward", (1, 2, 8, 8), (2, 2, 3, 3)).strategy != "bogus"
