"""Bad input (docs/architecture.md, "Testing"): every wrong call raises
TypeError/ValueError naming the argument; odd-but-valid arrays (non-contiguous, Fortran,
read-only, lists) work; inputs are never modified; NaN/Inf propagate, and only to
the outputs whose taps touch them (strategies that do not transform); integer/float16
inputs promote.
"""
from __future__ import annotations

import numpy as np
import pytest
from _helpers import STRATEGIES, assert_close, strategies_for, upcast

import fastconv
import fastconv.grad as fgrad
from fastconv import reference as ref

X1 = np.ones((2, 4, 9))
W1 = np.ones((6, 2, 3))
X2 = np.ones((2, 4, 9, 8))
W2 = np.ones((6, 2, 3, 2))


def _gy(x, w, **kw):
    return np.ones(fastconv.output_shape(x.shape, w.shape, **kw))


# (id, callable, exception, regex the message must match)
BAD_CALLS = [
    # wrong ndim of x / weight
    ("x_ndim_low", lambda: fastconv.conv2d(np.ones((4, 9)), W2), ValueError, "input"),
    ("x_ndim_high", lambda: fastconv.conv1d(np.ones((1, 2, 4, 9)), W1), ValueError, "input"),
    ("w_ndim_conv2d", lambda: fastconv.conv2d(X2, np.ones((6, 2, 3))), ValueError, "weight"),
    ("w_ndim_conv", lambda: fastconv.conv(X1, np.ones((6, 2))), ValueError, "weight"),
    ("w_ndim_conv_6d", lambda: fastconv.conv(X1, np.ones((1, 1, 1, 1, 1, 1))), ValueError,
     "weight"),
    ("w_ndim_grad_input", lambda: fgrad.conv2d_input((2, 4, 9, 8), W1, np.ones((2, 6, 7, 7))),
     ValueError, "weight"),
    ("w_shape_grad_weight", lambda: fgrad.conv1d_weight(X1, (6, 2, 3, 3), np.ones((2, 6, 7))),
     ValueError, "weight"),
    # channels / groups
    ("channel_mismatch", lambda: fastconv.conv1d(np.ones((2, 5, 9)), W1, groups=2), ValueError,
     "groups|channels"),
    ("weight_channel_mismatch", lambda: fastconv.conv1d(np.ones((2, 3, 9)), W1), ValueError,
     "channels"),
    ("cout_not_divisible", lambda: fastconv.conv1d(X1, np.ones((5, 2, 3)), groups=2),
     ValueError, "groups"),
    ("groups_zero", lambda: fastconv.conv1d(X1, W1, groups=0), ValueError, "groups"),
    ("groups_float", lambda: fastconv.conv1d(X1, W1, groups=2.0), TypeError, "groups"),
    # kernel larger than padded input
    ("kernel_too_big", lambda: fastconv.conv1d(np.ones((1, 1, 3)), np.ones((1, 1, 5))),
     ValueError, "kernel"),
    ("kernel_too_big_dilated",
     lambda: fastconv.conv1d(np.ones((1, 1, 5)), np.ones((1, 1, 3)), dilation=3), ValueError,
     "kernel"),
    ("kernel_too_big_padded",
     lambda: fastconv.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 7, 3)), padding=1),
     ValueError, "kernel"),
    # zero / negative sizes
    ("x_zero_channels", lambda: fastconv.conv1d(np.ones((2, 0, 9)), W1, groups=2), ValueError,
     "input"),
    ("x_zero_spatial", lambda: fastconv.conv1d(np.ones((2, 4, 0)), W1, groups=2), ValueError,
     "input"),
    ("w_zero", lambda: fastconv.conv1d(X1, np.ones((0, 4, 3))), ValueError, "weight"),
    ("input_shape_negative", lambda: fgrad.conv1d_input((2, 4, -9), W1, np.ones((2, 6, 7)),
                                                        groups=2), ValueError, "input"),
    ("weight_shape_negative", lambda: fgrad.conv1d_weight(X1, (6, 2, -3), np.ones((2, 6, 7)),
                                                          groups=2), ValueError, "weight"),
    ("input_shape_float", lambda: fgrad.conv1d_input((2, 4, 9.0), W1, np.ones((2, 6, 7)),
                                                     groups=2), TypeError, "input shape"),
    # stride / dilation
    ("stride_zero", lambda: fastconv.conv1d(X1, W1, groups=2, stride=0), ValueError, "stride"),
    ("stride_negative", lambda: fastconv.conv2d(X2, W2, groups=2, stride=(1, -1)), ValueError,
     "stride"),
    ("stride_wrong_len", lambda: fastconv.conv2d(X2, W2, groups=2, stride=(1, 1, 1)),
     ValueError, "stride"),
    ("stride_bool", lambda: fastconv.conv1d(X1, W1, groups=2, stride=True), TypeError,
     "stride"),
    ("stride_float", lambda: fastconv.conv1d(X1, W1, groups=2, stride=1.0), TypeError,
     "stride"),
    ("stride_float_tuple", lambda: fastconv.conv2d(X2, W2, groups=2, stride=(1, 1.5)),
     ValueError, "stride"),
    ("stride_bool_tuple", lambda: fastconv.conv2d(X2, W2, groups=2, stride=(1, True)),
     ValueError, "stride"),
    ("dilation_zero", lambda: fastconv.conv1d(X1, W1, groups=2, dilation=0), ValueError,
     "dilation"),
    ("dilation_negative", lambda: fastconv.conv2d(X2, W2, groups=2, dilation=(-1, 1)),
     ValueError, "dilation"),
    ("dilation_float", lambda: fastconv.conv1d(X1, W1, groups=2, dilation=2.0), TypeError,
     "dilation"),
    # padding
    ("padding_negative", lambda: fastconv.conv1d(X1, W1, groups=2, padding=-1), ValueError,
     "padding"),
    ("padding_negative_axis", lambda: fastconv.conv2d(X2, W2, groups=2, padding=(1, -1)),
     ValueError, "padding"),
    ("padding_negative_pair", lambda: fastconv.conv2d(X2, W2, groups=2,
                                                      padding=((1, 0), (0, -2))),
     ValueError, "padding"),
    ("padding_wrong_len", lambda: fastconv.conv2d(X2, W2, groups=2, padding=(1, 1, 1)),
     ValueError, "padding"),
    ("padding_triple", lambda: fastconv.conv1d(X1, W1, groups=2, padding=((1, 2, 3),)),
     ValueError, "padding"),
    ("padding_bad_string", lambda: fastconv.conv1d(X1, W1, groups=2, padding="sam"),
     ValueError, "padding"),
    ("padding_float", lambda: fastconv.conv1d(X1, W1, groups=2, padding=1.5), TypeError,
     "padding"),
    ("padding_none", lambda: fastconv.conv1d(X1, W1, groups=2, padding=None), TypeError,
     "padding"),
    ("same_with_stride", lambda: fastconv.conv1d(X1, W1, groups=2, padding="same", stride=2),
     ValueError, "same"),
    # dtypes
    ("x_complex", lambda: fastconv.conv1d(X1.astype(complex), W1, groups=2), TypeError, "x"),
    ("w_complex", lambda: fastconv.conv1d(X1, W1.astype(np.complex64), groups=2), TypeError,
     "weight"),
    ("x_object", lambda: fastconv.conv1d(X1.astype(object), W1, groups=2), TypeError, "x"),
    ("x_string", lambda: fastconv.conv1d(np.full((1, 4, 5), "a"), W1, groups=2), TypeError,
     "x"),
    ("gy_complex", lambda: fgrad.conv1d_input(X1.shape, W1, _gy(X1, W1, groups=2) + 0j,
                                              groups=2), TypeError, "grad_output"),
    ("x_ragged_list", lambda: fastconv.conv1d([[[1.0, 2.0], [1.0]]], W1), TypeError, "x"),
    ("x_none", lambda: fastconv.conv1d(None, W1), TypeError, "x"),
    # bias
    ("bias_wrong_len", lambda: fastconv.conv1d(X1, W1, np.ones(5), groups=2), ValueError,
     "bias"),
    ("bias_2d", lambda: fastconv.conv1d(X1, W1, np.ones((6, 1)), groups=2), ValueError, "bias"),
    ("bias_complex", lambda: fastconv.conv1d(X1, W1, np.ones(6, complex), groups=2), TypeError,
     "bias"),
    # grad_output of the wrong shape
    ("gy_shape_grad_input", lambda: fgrad.conv1d_input(X1.shape, W1, np.ones((2, 6, 8)),
                                                       groups=2), ValueError, "grad_output"),
    ("gy_shape_grad_weight", lambda: fgrad.conv1d_weight(X1, W1.shape, np.ones((2, 5, 7)),
                                                         groups=2), ValueError, "grad_output"),
    ("gy_shape_backward", lambda: fastconv.conv_backward(X1, W1, np.ones((6, 7)), groups=2),
     ValueError, "grad_output"),
    ("gy_unbatched_for_batched", lambda: fgrad.conv2d_input(X2.shape, W2,
                                                            np.ones((6, 7, 7)), groups=2),
     ValueError, "grad_output"),
    # strategy
    ("strategy_unknown", lambda: fastconv.conv1d(X1, W1, groups=2, strategy="nope"),
     ValueError, "direct"),
    ("strategy_unknown_grad", lambda: fgrad.conv1d_input(X1.shape, W1, _gy(X1, W1, groups=2),
                                                         groups=2, strategy="nope"),
     ValueError, "strategy"),
    ("strategy_none", lambda: fastconv.conv1d(X1, W1, groups=2, strategy=None), TypeError,
     "strategy"),
    ("config_strategy_unknown", lambda: fastconv.config(strategy="nope").__enter__(),
     ValueError, "strategy"),
    # flip
    ("flip_not_bool", lambda: fastconv.conv1d(X1, W1, groups=2, flip="yes"), TypeError,
     "flip"),
    # output_shape / explain
    ("output_shape_bad", lambda: fastconv.output_shape((1, 3, 4), (2, 3, 5)), ValueError,
     "kernel"),
    ("explain_bad_op", lambda: fastconv.explain("backward", (1, 3, 8), (2, 3, 3)), ValueError,
     "op"),
]


@pytest.mark.parametrize("call, exc, match", [c[1:] for c in BAD_CALLS],
                         ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(ValueError) as info:
        fastconv.conv1d(X1, W1, groups=2, strategy="nope")
    for name in fastconv.strategies():
        assert name in str(info.value)
    assert "nope" in str(info.value)


def test_errors_print_shapes():
    with pytest.raises(ValueError) as info:
        fastconv.conv1d(np.ones((2, 3, 9)), W1)
    assert "(2, 3, 9)" in str(info.value) and "(6, 2, 3)" in str(info.value)
    with pytest.raises(ValueError) as info:
        fgrad.conv1d_input(X1.shape, W1, np.ones((2, 6, 8)), groups=2)
    assert "(2, 6, 7)" in str(info.value) and "(2, 6, 8)" in str(info.value)


# ---------------------------------------------------------------------------
# odd but valid arrays
# ---------------------------------------------------------------------------
KW = dict(stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2), groups=2)


def _running(x_shape, w_shape, strategies=STRATEGIES, **kw):
    """The strategies that run this problem (winograd only 3x3 at stride 1)."""
    return strategies_for(fastconv.make_spec(x_shape, w_shape, **kw), strategies=strategies)


def _problem(rng):
    x = rng.standard_normal((2, 4, 9, 11))
    w = rng.standard_normal((6, 2, 3, 2))
    gy = rng.standard_normal(fastconv.output_shape(x.shape, w.shape, **KW))
    return x, w, gy


def _all_ops(x, w, gy, strategy):
    return (fastconv.conv2d(x, w, strategy=strategy, **KW),
            fgrad.conv2d_input((2, 4, 9, 11), w, gy, strategy=strategy, **KW),
            fgrad.conv2d_weight(x, (6, 2, 3, 2), gy, strategy=strategy, **KW),
            *fastconv.conv_backward(x, w, gy, strategy=strategy, **KW))


def _noncontig(a):
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],))
    big[..., ::2] = a
    v = big[..., ::2]
    assert not v.flags.c_contiguous
    return v


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


def _transposed_view(a):
    # a C-contiguous array of the transposed shape, viewed back: strides reversed
    v = np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1)
    assert not v.flags.c_contiguous
    return v


LAYOUTS = {
    "noncontiguous": _noncontig,
    "fortran": np.asfortranarray,
    "readonly": _readonly,
    "swapped_axes": _transposed_view,
    "list": lambda a: a.tolist(),
    "negative_strides": lambda a: a[..., ::-1].copy()[..., ::-1],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("strategy", _running((2, 4, 9, 11), (6, 2, 3, 2), **KW))
def test_odd_layouts_give_same_result(strategy, layout, rng):
    x, w, gy = _problem(rng)
    want = _all_ops(x, w, gy, strategy)
    f = LAYOUTS[layout]
    got = _all_ops(f(x), f(w), f(gy), strategy)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("strategy", _running((2, 4, 9, 11), (6, 2, 3, 2), **KW))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_are_never_modified(strategy, dtype, rng):
    x, w, gy = (a.astype(dtype) for a in _problem(rng))
    b = rng.standard_normal(6).astype(dtype)
    # also a Fortran and a non-contiguous version, where a wrapper might reuse memory
    variants = [(x, w, gy), (np.asfortranarray(x), np.asfortranarray(w), np.asfortranarray(gy)),
                (_noncontig(x).astype(dtype, copy=False), w, gy)]
    for xx, ww, gg in variants:
        saved = [a.copy() for a in (xx, ww, gg, b)]
        fastconv.conv2d(xx, ww, b, strategy=strategy, **KW)
        fgrad.conv2d_input(xx.shape, ww, gg, strategy=strategy, **KW)
        fgrad.conv2d_weight(xx, ww.shape, gg, strategy=strategy, **KW)
        fastconv.conv_backward(xx, ww, gg, strategy=strategy, **KW)
        fastconv.conv2d(xx, ww, b, strategy=strategy, flip=True, **KW)
        fastconv.conv_backward(xx, ww, gg, strategy=strategy, flip=True, **KW)
        for before, after in zip(saved, (xx, ww, gg, b)):
            np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("strategy", _running((1, 3, 5), (3, 1, 1), groups=3))
def test_result_does_not_alias_inputs(strategy, rng):
    # a 1x1 kernel with no padding: a lazy implementation could return a view of x
    x = rng.standard_normal((1, 3, 5))
    w = np.ones((3, 1, 1))
    y = fastconv.conv1d(x, w, groups=3, strategy=strategy)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(y, x)
    y[...] = 0
    assert np.all(x != 0)


# ---------------------------------------------------------------------------
# NaN / Inf
# ---------------------------------------------------------------------------
def _touched(spec_kw, x_shape, w_shape, pos):
    """Boolean mask of outputs whose window touches input position ``pos``."""
    x = np.zeros(x_shape)
    x[pos] = 1.0
    return ref.conv_forward(x, np.ones(w_shape), **spec_kw) != 0


NAN_KW = dict(stride=(2, 1), padding=((1, 0), (0, 2)), dilation=(1, 2))


@pytest.mark.parametrize("strategy", _running((1, 2, 11, 12), (3, 2, 3, 2), **NAN_KW))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_propagate_forward(strategy, bad, rng):
    kw = NAN_KW
    x = np.abs(rng.standard_normal((1, 2, 11, 12))) + 0.1
    w = np.abs(rng.standard_normal((3, 2, 3, 2))) + 0.1   # positive: Inf stays +Inf
    pos = (0, 1, 5, 6)
    x[pos] = bad
    y = fastconv.conv2d(x, w, strategy=strategy, **kw)
    touched = _touched(kw, x.shape, w.shape, pos)
    assert touched.any() and not touched.all()
    if bad != bad:
        assert np.isnan(y[touched]).all()
    else:
        assert (~np.isfinite(y[touched])).all()
    if strategy != "fft":   # FFT is documented to spread NaN/Inf over the whole map
        if bad == bad:
            assert (y[touched] == np.inf).all()
        assert np.isfinite(y[~touched]).all()
        want = ref.conv_forward(np.where(np.isfinite(x), x, 0.0), w, **kw)
        np.testing.assert_allclose(y[~touched], want[~touched], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_nan_propagates_backward(strategy, rng):
    x = rng.standard_normal((1, 2, 9))
    w = rng.standard_normal((2, 2, 3))
    gy = rng.standard_normal((1, 2, 7))
    gy[0, 0, 3] = np.nan
    gx = fgrad.conv1d_input(x.shape, w, gy, strategy=strategy)
    assert np.isnan(gx[0, :, 3:6]).all()
    gw = fgrad.conv1d_weight(x, w.shape, gy, strategy=strategy)
    assert np.isnan(gw[0]).all()
    if strategy != "fft":
        assert np.isfinite(gx[0, :, :3]).all() and np.isfinite(gx[0, :, 6:]).all()
        assert np.isfinite(gw[1]).all()


# ---------------------------------------------------------------------------
# dtype promotion
# ---------------------------------------------------------------------------
PROMOTIONS = [
    (np.int32, np.int32, np.float64),
    (np.int64, np.float32, np.float64),
    (np.int8, np.float32, np.float32),
    (np.uint8, np.uint8, np.float32),
    (np.int16, np.float32, np.float32),
    (np.float16, np.float16, np.float32),
    (np.float16, np.float32, np.float32),
    (np.float16, np.float64, np.float64),
    (np.float32, np.float64, np.float64),
    (np.float32, np.float32, np.float32),
    (np.bool_, np.float32, np.float32),
]


@pytest.mark.parametrize("xd, wd, want", PROMOTIONS,
                         ids=[f"{np.dtype(a).name}-{np.dtype(b).name}" for a, b, _ in PROMOTIONS])
@pytest.mark.parametrize("strategy", _running((2, 4, 7, 6), (4, 2, 3, 2), padding=1, groups=2))
def test_dtype_promotion(strategy, xd, wd, want, rng):
    x = (rng.integers(0, 3, (2, 4, 7, 6)) if np.dtype(xd).kind == "b"
         else rng.integers(-3, 4, (2, 4, 7, 6))).astype(xd)
    w = rng.integers(-3, 4, (4, 2, 3, 2)).astype(wd)
    assert want == np.result_type(xd, wd, np.float32)
    kw = dict(padding=1, groups=2)
    y = fastconv.conv2d(x, w, strategy=strategy, **kw)
    assert y.dtype == want
    yref = ref.conv_forward(upcast(x), upcast(w), **kw)
    assert_close(y, yref, dtype=want, strategy=strategy,
                 spec=fastconv.make_spec(x.shape, w.shape, dtype=want, **kw))
    gy = rng.integers(-2, 3, y.shape).astype(xd)
    gx, gw, gb = fastconv.conv_backward(x, w, gy, strategy=strategy, **kw)
    assert gx.dtype == gw.dtype == want
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (4,)
    gi = fgrad.conv2d_input(x.shape, w, gy, strategy=strategy, **kw)
    assert gi.dtype == np.result_type(wd, xd, np.float32)


def test_bias_dtype_promotes():
    x = np.ones((1, 2, 5), np.float32)
    w = np.ones((3, 2, 2), np.float32)
    assert fastconv.conv1d(x, w, np.ones(3, np.float32)).dtype == np.float32
    assert fastconv.conv1d(x, w, np.ones(3, np.float64)).dtype == np.float64
    assert fastconv.conv1d(x, w, np.ones(3, np.int8)).dtype == np.float32


# ---------------------------------------------------------------------------
# memory budget: chunk, pick another strategy, or MemoryError with the numbers
# ---------------------------------------------------------------------------
BUDGET_KW = dict(padding=((2, 1), (0, 2)), groups=2, stride=(1, 2))


@pytest.mark.parametrize("budget", [4096, 64 * 1024, 1 << 20])
@pytest.mark.parametrize("strategy", _running((2, 6, 30, 27), (8, 3, 5, 4),
                                              ("auto",) + STRATEGIES, **BUDGET_KW))
def test_memory_budget_is_respected(strategy, budget, rng):
    x = rng.standard_normal((2, 6, 30, 27))
    w = rng.standard_normal((8, 3, 5, 4))
    kw = BUDGET_KW
    gy = rng.standard_normal(fastconv.output_shape(x.shape, w.shape, **kw))
    with fastconv.config(memory_budget=budget):
        try:
            y = fastconv.conv2d(x, w, strategy=strategy, **kw)
            gx, gw, _ = fastconv.conv_backward(x, w, gy, strategy=strategy, **kw)
        except MemoryError as e:
            if strategy == "auto":  # only when no strategy fits (padded copies included)
                for op in ("forward", "grad_input", "grad_weight"):
                    d = fastconv.explain(op, x.shape, w.shape, dtype=x.dtype, **kw)
                    assert d.strategy is None or op != "forward", d
            assert "budget" in str(e) and str(budget) in str(e)
            return
    np.testing.assert_allclose(y, ref.conv_forward(x, w, **kw), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gx, ref.conv_grad_input(x.shape, w, gy, **kw), rtol=1e-9,
                               atol=1e-9)
    np.testing.assert_allclose(gw, ref.conv_grad_weight(x, w.shape, gy, **kw), rtol=1e-9,
                               atol=1e-9)


@pytest.mark.usefixtures("default_options")
def test_bad_arguments():
    x, w = np.ones((1, 1, 8, 8)), np.ones((1, 1, 3, 3))
    with pytest.raises(TypeError, match="padding"):
        fastconv.conv2d(x, w, padding={0: 1, 1: 1})
    with pytest.raises(TypeError, match="stride"):
        fastconv.conv2d(x, w, stride={1, 2})
    with pytest.raises(TypeError, match="ndim"):
        fastconv.grad_input((1, 1, 8, 8), w, np.ones((1, 1, 6, 6)), ndim=2.0)
    with pytest.warns(RuntimeWarning, match="float64"):
        y = fastconv.conv2d(x.astype(np.longdouble), w)
    assert y.dtype == np.float64
    # an array where a shape was expected: type and shape, not 80 lines of numbers
    with pytest.raises((TypeError, ValueError)) as e:
        fastconv.conv2d(x, w, stride=np.ones((100, 100)))
    assert "shape (100, 100)" in str(e.value) and len(str(e.value)) < 300
    with pytest.raises(TypeError) as e:
        fastconv.grad_input(np.ones((50, 50)), w, np.ones((1, 1, 6, 6)))
    assert len(str(e.value)) < 300


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
    want = ref.conv_grad_weight(x, ws, gy)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    assert fin.any() and not fin.all()
    np.testing.assert_allclose(got[fin], want[fin])
