"""PyTorch (CPU) as a second oracle: torch.nn.functional.conv{1,2,3}d and
torch.nn.grad.conv{1,2,3}d_input / _weight, float64. Skipped without torch.
"""
from __future__ import annotations

import numpy as np
import pytest
from _helpers import NDIMS, assert_close, strategies_for, strategy_params

import fastconv
import fastconv.grad as fgrad

torch = pytest.importorskip("torch")
F = torch.nn.functional
tgrad = torch.nn.grad


def cut(v, ndim):
    return tuple(v[:ndim]) if isinstance(v, tuple) else v


# (id, in spatial, kernel, stride, padding, dilation, groups, cin, cout, batch, flip)
PARAMS = [
    ("sym_pad_stride", (9, 8, 7), (3, 2, 3), 2, 1, 1, 1, 3, 4, 2, False),
    ("pairs_groups_dil", (10, 9, 8), (3, 2, 2), (1, 2, 1), ((2, 0), (1, 3), (0, 1)),
     (2, 1, 2), 2, 4, 6, 2, False),
    ("depthwise_same_dil", (9, 7, 8), (3, 2, 3), 1, "same", 2, 3, 3, 3, 1, False),
    ("depthwise_mult", (8, 9, 6), (2, 3, 2), 2, (1, 0, 2), 1, 2, 2, 6, 2, False),
    ("valid_stride3", (11, 10, 9), (2, 3, 2), 3, "valid", 1, 1, 2, 3, 2, False),
    ("full", (5, 4, 3), (2, 3, 4), 1, "full", 1, 1, 2, 2, 1, False),
    ("flip_groups", (8, 7, 9), (3, 3, 2), (2, 1, 2), ((0, 1), (2, 2), (1, 0)), 1, 2, 4, 2,
     3, True),
    ("unbatched", (7, 8, 6), (2, 3, 3), 1, ((1, 1), (0, 2), (2, 0)), (1, 2, 1), 1, 3, 2,
     None, False),
]


def _shapes(params, ndim):
    """(x shape, w shape, conv kwargs) of ``params`` cut to ``ndim`` axes."""
    _, in_sp, k, stride, padding, dilation, groups, cin, cout, batch, flip = params
    x_shape = ((batch,) if batch is not None else ()) + (cin,) + cut(in_sp, ndim)
    w_shape = (cout, cin // groups) + cut(k, ndim)
    kw = dict(stride=cut(stride, ndim), padding=cut(padding, ndim),
              dilation=cut(dilation, ndim), groups=groups)
    return x_shape, w_shape, kw


def _spec(params, ndim):
    x_shape, w_shape, kw = _shapes(params, ndim)
    return fastconv.make_spec(x_shape, w_shape, flip=params[-1], **kw)


def _pairs(spec):
    return [list(p) for p in spec.padding]


@pytest.mark.parametrize("strategy, params, ndim", strategy_params(
    _spec, PARAMS, NDIMS, ids=[lambda p: p[0], lambda n: f"{n}d"]))
def test_against_torch(strategy, params, ndim, rng):
    groups, cout, batch, flip = params[6], params[8], params[9], params[10]
    x_shape, w_shape, kw = _shapes(params, ndim)
    spec = fastconv.make_spec(x_shape, w_shape, flip=flip, **kw)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(cout)
    gy = rng.standard_normal(spec.output_shape)

    # torch sees the explicitly padded batched input, a flipped kernel if flip,
    # and padding 0; per-axis ints of the spec for stride and dilation.
    xb = x if batch is not None else x[None]
    gyb = gy if batch is not None else gy[None]
    pad_np = ((0, 0), (0, 0)) + spec.padding
    xp = np.pad(xb, pad_np)
    wt = w[(Ellipsis,) + (slice(None, None, -1),) * ndim] if flip else w
    tconv = getattr(F, f"conv{ndim}d")
    targs = dict(stride=spec.stride, padding=0, dilation=spec.dilation, groups=groups)
    T = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731

    y_t = tconv(T(xp), T(wt), T(b), **targs).numpy()
    gxp_t = getattr(tgrad, f"conv{ndim}d_input")(xp.shape, T(wt), T(gyb), **targs).numpy()
    crop = tuple(slice(bf, bf + n) for (bf, _), n in zip(spec.padding, spec.in_spatial))
    gx_t = gxp_t[(slice(None), slice(None)) + crop]
    gw_t = getattr(tgrad, f"conv{ndim}d_weight")(T(xp), wt.shape, T(gyb), **targs).numpy()
    if flip:
        gw_t = gw_t[(Ellipsis,) + (slice(None, None, -1),) * ndim]
    if batch is None:
        y_t, gx_t = y_t[0], gx_t[0]

    convnd = getattr(fastconv, f"conv{ndim}d")
    common = dict(kw, flip=flip, strategy=strategy)
    check = dict(dtype=np.float64, strategy=strategy, spec=spec)
    assert_close(convnd(x, w, b, **common), y_t, what="forward", **check)
    assert_close(getattr(fgrad, f"conv{ndim}d_input")(x_shape, w, gy, **common), gx_t,
                 what="grad_input", **check)
    assert_close(getattr(fgrad, f"conv{ndim}d_weight")(x, w_shape, gy, **common), gw_t,
                 what="grad_weight", **check)
    gx, gw, gb = fastconv.conv_backward(x, w, gy, **common)
    assert_close(gx, gx_t, what="backward grad_x", **check)
    assert_close(gw, gw_t, what="backward grad_w", **check)
    sum_axes = (0,) + tuple(range(2, gyb.ndim))
    assert_close(gb, gyb.sum(axis=sum_axes), what="backward grad_b", **check)


def _symmetric(ndim):
    x_shape = (2, 4) + (8, 7, 6)[:ndim]
    w_shape = (6, 2) + (3, 2, 3)[:ndim]
    kw = dict(stride=(2, 1, 1)[:ndim], padding=(1, 2, 0)[:ndim], dilation=(1, 1, 2)[:ndim],
              groups=2)
    return x_shape, w_shape, kw


@pytest.mark.parametrize("strategy, ndim", strategy_params(
    lambda n: fastconv.make_spec(*_symmetric(n)[:2], **_symmetric(n)[2]), NDIMS,
    ids=[lambda n: f"{n}d"]))
def test_torch_symmetric_padding_and_autograd(strategy, ndim, rng):
    """Torch's own padding argument and autograd (no numpy pre-padding)."""
    x_shape, w_shape, kw = _symmetric(ndim)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    wt = torch.from_numpy(w.copy()).requires_grad_(True)
    yt = getattr(F, f"conv{ndim}d")(xt, wt, **kw)
    gy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(gy))
    spec = fastconv.make_spec(x_shape, w_shape, **kw)
    check = dict(dtype=np.float64, strategy=strategy, spec=spec)
    assert_close(getattr(fastconv, f"conv{ndim}d")(x, w, strategy=strategy, **kw),
                 yt.detach().numpy(), what="forward", **check)
    gx, gw, _ = fastconv.conv_backward(x, w, gy, strategy=strategy, **kw)
    assert_close(gx, xt.grad.numpy(), what="grad_x", **check)
    assert_close(gw, wt.grad.numpy(), what="grad_w", **check)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("strategy", strategies_for(
    fastconv.make_spec((2, 3, 10, 9), (4, 3, 4, 3), padding="same", dilation=(1, 2))))
def test_torch_same_padding_string(strategy, rng):
    x = rng.standard_normal((2, 3, 10, 9))
    w = rng.standard_normal((4, 3, 4, 3))     # even kernel: asymmetric "same"
    y_t = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same",
                   dilation=(1, 2)).numpy()
    y = fastconv.conv2d(x, w, padding="same", dilation=(1, 2), strategy=strategy)
    spec = fastconv.make_spec(x.shape, w.shape, padding="same", dilation=(1, 2))
    assert_close(y, y_t, dtype=np.float64, strategy=strategy, spec=spec, what="same")
