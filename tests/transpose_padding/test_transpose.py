"""Transposed convolution (fastconv.conv_transpose*) and conv_backward(needs=).

Oracles: the adjoint identity <conv_transpose(x, w), y> = <x, conv(y, w)> with
the naive reference, and torch.nn.functional.conv_transpose{1,2,3}d (float64)
when PyTorch is installed. Every strategy in fastconv.strategies() runs every
case it supports.
"""
from __future__ import annotations

import numpy as np
import pytest
from _helpers import STRATEGIES, assert_close, strategy_params

import fastconv
from fastconv import _strategies, reference
from fastconv._spec import make_spec
from fastconv._transpose import _geometry

# (id, ndim, in spatial, kernel, stride, padding, output_padding, groups, dilation, batch)
CASES = [
    ("stride2_op1", 2, (4, 5), (3, 2), 2, 1, 1, 1, 1, 2),
    ("groups_dil_nonsquare", 2, (5, 3), (2, 3), (1, 2), (0, 1), (0, 1), 2, (2, 1), 1),
    ("op_below_dilation", 1, (6,), (3,), 1, 1, 1, 1, 2, 2),
    ("depthwise_3d", 3, (3, 4, 3), (2, 3, 2), (2, 1, 1), (1, 0, 1), (1, 0, 0), 3, 1, 1),
    ("unbatched_1d", 1, (7,), (4,), 3, 2, 2, 1, 1, None),
    ("stride3_groups", 2, (3, 4), (3, 3), 3, 0, (2, 1), 3, 1, 2),
]


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny problems: one thread avoids OpenMP wake-ups, which dominate on a busy machine
    with fastconv.config(n_threads=1):
        yield


def _arrays(case, dtype, rng):
    _, nd, sp, k, stride, pad, op, g, dil, batch = case
    cin, cout = 2 * g, 3 * g
    x_shape = ((batch,) if batch else ()) + (cin,) + sp
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((cin, cout // g) + k).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    return x, w, b, dict(stride=stride, padding=pad, output_padding=op, groups=g, dilation=dil)


def _conv_spec(x, w, kw, dtype):
    conv_in, pads, stride, dil, _ = _geometry(x.shape, w.shape, kw["stride"], kw["padding"],
                                              kw["output_padding"], kw["dilation"], kw["groups"])
    return make_spec(conv_in, w.shape, stride, pads, dil, kw["groups"], dtype=dtype)


def _case_spec(case):
    """The spec of the convolution whose adjoint ``case`` is (what supports() sees)."""
    x, w, _, kw = _arrays(case, np.float64, np.random.default_rng(0))
    return _conv_spec(x, w, kw, np.float64)


# every strategy on every case it supports (the transposed convolution runs the
# convolution's grad_input forward and its forward and grad_weight backward)
STRATEGY_CASES = strategy_params(_case_spec, CASES, ids=[lambda c: c[0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("strategy, case", STRATEGY_CASES)
def test_adjoint_of_reference_conv(strategy, case, dtype, rng):
    """<T(x), y> = <x, conv(y)>, <gx> = conv(gy), gw = grad_weight(gy, x), per strategy."""
    x, w, b, kw = _arrays(case, dtype, rng)
    spec = _conv_spec(x, w, kw, dtype)
    y = fastconv.conv_transpose(x, w, None, **kw, strategy=strategy)
    assert y.shape == fastconv.conv_transpose_output_shape(x.shape, w.shape, **kw)
    assert y.dtype == dtype
    gy = rng.standard_normal(y.shape).astype(dtype)
    nd = w.ndim - 2
    batched = x.ndim == nd + 2
    xb, yb, gyb = ((a if batched else a[None]).astype(np.float64) for a in (x, y, gy))
    w64 = w.astype(np.float64)
    # output padding of a stride or more: outputs no input reaches, zeros after x
    extra = [o // s for o, s in zip(np.broadcast_to(kw["output_padding"], (nd,)),
                                    np.broadcast_to(kw["stride"], (nd,)))]
    xe = np.pad(xb, [(0, 0), (0, 0)] + [(0, e) for e in extra])
    geo = (spec.stride, spec.padding, spec.dilation, spec.groups)
    # forward = grad_input of the convolution, via the naive reference
    ref_y = reference.conv_grad_input(yb.shape, w64, xe, *geo)
    assert_close(y, ref_y.reshape(y.shape), dtype=dtype, strategy=strategy, spec=spec,
                 what="forward", operands=(x, w))
    gx, gw, gb = fastconv.conv_transpose_backward(x, w, gy, **kw, strategy=strategy)
    ref_gx = reference.conv_forward(gyb, w64, None, *geo)
    ref_gx = ref_gx[(Ellipsis,) + tuple(slice(0, n) for n in x.shape[-nd:])]
    assert_close(gx, ref_gx.reshape(x.shape), dtype=dtype, strategy=strategy, spec=spec,
                 what="grad_input", operands=(gy, w))
    ref_gw = reference.conv_grad_weight(gyb, w.shape, xe, *geo)
    assert_close(gw, ref_gw, dtype=dtype, strategy=strategy, spec=spec, what="grad_weight",
                 operands=(gy, x))
    axes = tuple(i for i in range(gy.ndim) if i != gy.ndim - (w.ndim - 1))
    np.testing.assert_allclose(gb, np.asarray(gy, np.float64).sum(axis=axes), rtol=1e-5)


@pytest.mark.parametrize("strategy, case", STRATEGY_CASES)
def test_against_torch(strategy, case, rng):
    torch = pytest.importorskip("torch")
    x, w, b, kw = _arrays(case, np.float64, rng)
    spec = _conv_spec(x, w, kw, np.float64)
    nd = w.ndim - 2
    tf = getattr(torch.nn.functional, f"conv_transpose{nd}d")
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = tf(xt, wt, bt, kw["stride"], kw["padding"], kw["output_padding"], kw["groups"],
            kw["dilation"])
    y = getattr(fastconv, f"conv_transpose{nd}d")(x, w, b, **kw, strategy=strategy)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    gx, gw, gb = fastconv.conv_transpose_backward(x, w, gy, **kw, strategy=strategy)
    for what, got, want in (("forward", y, yt), ("grad_input", gx, xt.grad),
                            ("grad_weight", gw, wt.grad), ("grad_bias", gb, bt.grad)):
        assert_close(got, want.detach().numpy(), dtype=np.float64, strategy=strategy,
                     spec=spec, what=what)
    # the two backward functions on their own give the same
    np.testing.assert_array_equal(
        fastconv.conv_transpose_grad_input(x.shape, w, gy, **kw, strategy=strategy), gx)
    np.testing.assert_array_equal(
        fastconv.conv_transpose_grad_weight(x, w.shape, gy, **kw, strategy=strategy), gw)


def test_needs_skips_gradients(rng, monkeypatch):
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 2))
    gy = rng.standard_normal(fastconv.output_shape(x.shape, w.shape))
    full = fastconv.conv_backward(x, w, gy)
    calls = []
    for s in _strategies.all_strategies():
        orig = s.run
        monkeypatch.setattr(s, "run", lambda p, *a, _o=orig, **k: calls.append(p.op) or _o(p, *a, **k))
        if hasattr(s, "backward"):
            monkeypatch.setattr(s, "backward", lambda *a, **k: pytest.fail("fused pass ran"))
    gx, gw, gb = fastconv.conv_backward(x, w, gy, needs=("weight",))
    assert gx is None and gb is None and calls == ["grad_weight"]
    np.testing.assert_allclose(gw, full[1], rtol=1e-12)
    calls.clear()
    gx, gw, gb = fastconv.conv_backward(x, w, gy, needs=("input", "bias"))
    assert gw is None and calls == ["grad_input"]
    np.testing.assert_allclose(gx, full[0], rtol=1e-12)
    np.testing.assert_allclose(gb, full[2], rtol=1e-12)
    with pytest.raises(ValueError, match="needs"):
        fastconv.conv_backward(x, w, gy, needs=("inputs",))
    tgx, tgw, tgb = fastconv.conv_transpose_backward(gy, w, x, needs="weight")
    assert tgx is None and tgb is None and tgw.shape == w.shape


@pytest.mark.parametrize("kwargs, match", [
    (dict(padding="same"), "padding"),
    (dict(output_padding=2, stride=2), "output_padding"),
    (dict(stride=0), "stride"),
    (dict(groups=4), "groups"),
    (dict(padding=9), "empty"),
])
def test_bad_arguments(kwargs, match):
    x = np.ones((1, 6, 5, 5))
    w = np.ones((6, 2, 3, 3))
    with pytest.raises(ValueError, match=match):
        fastconv.conv_transpose2d(x, w, **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="channels"):
        fastconv.conv_transpose2d(np.ones((1, 5, 4, 4)), np.ones((6, 2, 3, 3)))
    with pytest.raises(ValueError, match="dimensions"):
        fastconv.conv_transpose2d(np.ones((6, 4)), np.ones((6, 2, 3, 3)))
    with pytest.raises(ValueError, match="bias"):
        fastconv.conv_transpose2d(np.ones((1, 6, 4, 4)), np.ones((6, 2, 3, 3)), np.ones(3))
    with pytest.raises(ValueError, match="grad_output"):
        fastconv.conv_transpose_backward(np.ones((1, 6, 4, 4)), np.ones((6, 2, 3, 3)),
                                         np.ones((1, 2, 5, 5)))


def test_float64_bias_gives_float64_as_conv(rng):
    # a float64 bias with float32 x and weight: fastconv.conv computes in float64,
    # conv_transpose truncated the bias to float32
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4) * 1e-9 + 1.0   # its low digits are lost in float32
    assert fastconv.conv(x, np.ones((4, 3, 3, 3), np.float32), b).dtype == np.float64
    for strategy in STRATEGIES:
        if strategy == "winograd":
            continue   # stride 2: not supported
        y = fastconv.conv_transpose2d(x, w, b, stride=2, strategy=strategy)
        want = fastconv.conv_transpose2d(x.astype(np.float64), w.astype(np.float64), b,
                                         stride=2, strategy=strategy)
        assert y.dtype == np.float64, strategy
        np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    # float32 bias: float32, as before
    assert fastconv.conv_transpose2d(x, w, b.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("kwargs", [
    dict(stride={3, 1}), dict(stride=b"\x03\x01"), dict(dilation={1, 2}),
    dict(padding={1, 2}), dict(padding=b"\x01\x01"), dict(padding=({1, 2}, (0, 0))),
    dict(output_padding={0, 1}, stride=2), dict(stride={2: 1, 1: 1}), dict(stride="ab"),
], ids=repr)
def test_sets_bytes_and_mappings_are_type_errors(kwargs):
    # a set iterated in hash order (stride={3, 1} became (1, 3)), bytes as codes
    name = next(iter(kwargs))
    with pytest.raises(TypeError, match=name):
        fastconv.conv_transpose2d(np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3)), **kwargs)
