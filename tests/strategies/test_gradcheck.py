"""Hand-computed examples (issue 2's worked 1-D example) and finite-difference
gradient checks: oracles that do not go through fastconv.reference.
"""
from __future__ import annotations

import numpy as np
import pytest
from _helpers import strategies_for, strategy_params

import fastconv
import fastconv.grad as fgrad
from fastconv import make_spec

# x1..x5, w1..w3, d1..d3 as small integers: every result below is exact.
X = np.array([2.0, -1.0, 3.0, 5.0, -4.0])
W = np.array([1.0, 3.0, -2.0])
D = np.array([4.0, -3.0, 2.0])


def _x(a):
    return a.reshape(1, 1, -1)


def _eq(got, want, strategy):
    """Exact for direct and im2col (small integers); FFT rounds, so a tolerance there."""
    got = np.asarray(got).ravel()
    want = np.asarray(want, dtype=np.float64).ravel()
    if strategy == "fft":
        tol = (1e-5 if got.dtype == np.float32 else 1e-12) * max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("strategy", strategies_for(make_spec((1, 1, 5), (1, 1, 3))))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
class TestWorked1D:
    """Input (x1..x5), kernel (w1, w2, w3), stride 1: three outputs."""

    def test_forward(self, strategy, dtype):
        x1, x2, x3, x4, x5 = X
        w1, w2, w3 = W
        y = fastconv.conv1d(_x(X).astype(dtype), _x(W).astype(dtype), strategy=strategy)
        want = [w1 * x1 + w2 * x2 + w3 * x3,
                w1 * x2 + w2 * x3 + w3 * x4,
                w1 * x3 + w2 * x4 + w3 * x5]
        assert y.shape == (1, 1, 3) and y.dtype == dtype
        _eq(y.ravel(), want, strategy)

    def test_grad_weight(self, strategy, dtype):
        # dL/dw_j = d1*x_j + d2*x_(j+1) + d3*x_(j+2): correlation of x with d
        d1, d2, d3 = D
        want = [d1 * X[j] + d2 * X[j + 1] + d3 * X[j + 2] for j in range(3)]
        gw = fgrad.conv1d_weight(_x(X).astype(dtype), (1, 1, 3), _x(D).astype(dtype),
                                 strategy=strategy)
        assert gw.shape == (1, 1, 3) and gw.dtype == dtype
        _eq(gw.ravel(), want, strategy)

    def test_grad_input(self, strategy, dtype):
        # y_i = sum_j w_j x_(i+j-1)  =>  dL/dx_k = sum_i d_i w_(k-i+1) (a full convolution)
        want = np.zeros(5)
        for i in range(3):
            for j in range(3):
                want[i + j] += D[i] * W[j]
        w1, w2, w3 = W
        d1, d2, d3 = D
        assert list(want) == [d1 * w1, d1 * w2 + d2 * w1, d1 * w3 + d2 * w2 + d3 * w1,
                              d2 * w3 + d3 * w2, d3 * w3]
        gx = fgrad.conv1d_input((1, 1, 5), _x(W).astype(dtype), _x(D).astype(dtype),
                                strategy=strategy)
        assert gx.shape == (1, 1, 5) and gx.dtype == dtype
        _eq(gx.ravel(), want, strategy)
        gx2, gw2, gb2 = fastconv.conv_backward(_x(X).astype(dtype), _x(W).astype(dtype),
                                               _x(D).astype(dtype), strategy=strategy)
        _eq(gx2.ravel(), want, strategy)
        _eq(gb2, [D.sum()], strategy)

    def test_flip_is_true_convolution(self, strategy, dtype):
        x1, x2, x3, x4, x5 = X
        w1, w2, w3 = W
        y = fastconv.conv1d(_x(X).astype(dtype), _x(W).astype(dtype), flip=True,
                            strategy=strategy)
        want = [w3 * x1 + w2 * x2 + w1 * x3,
                w3 * x2 + w2 * x3 + w1 * x4,
                w3 * x3 + w2 * x4 + w1 * x5]
        _eq(y.ravel(), want, strategy)
        # equals numpy's true convolution, "valid" part
        _eq(y.ravel(), np.convolve(X, W, mode="valid"), strategy)
        # and correlation with the reversed kernel
        y2 = fastconv.conv1d(_x(X).astype(dtype), _x(W[::-1].copy()).astype(dtype),
                             strategy=strategy)
        _eq(y.ravel(), y2.ravel(), strategy)
        # gradient of the flipped kernel: y_i = sum_j w_j x_(i+3-j)
        gw = fgrad.conv1d_weight(_x(X).astype(dtype), (1, 1, 3), _x(D).astype(dtype),
                                 flip=True, strategy=strategy)
        want_gw = [sum(D[i] * X[i + 2 - j] for i in range(3)) for j in range(3)]
        _eq(gw.ravel(), want_gw, strategy)


# stride 2 and dilation 2: not for the strategies that refuse them (winograd)
@pytest.mark.parametrize("strategy", strategies_for(
    make_spec((1, 1, 5), (1, 1, 3), stride=2),
    strategies=strategies_for(make_spec((1, 1, 5), (1, 1, 3), dilation=2))))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_worked_1d_stride_and_padding(strategy, dtype):
    w1, w2, w3 = W
    xp = np.concatenate([[0.0], X, [0.0, 0.0]])       # padding (1, 2)
    y = fastconv.conv1d(_x(X).astype(dtype), _x(W).astype(dtype), stride=2,
                        padding=((1, 2),), strategy=strategy)
    want = [w1 * xp[i] + w2 * xp[i + 1] + w3 * xp[i + 2] for i in (0, 2, 4)]
    _eq(y.ravel(), want, strategy)
    # dilation 2: taps x_i, x_(i+2), x_(i+4)
    y = fastconv.conv1d(_x(X).astype(dtype), _x(W).astype(dtype), dilation=2,
                        strategy=strategy)
    _eq(y.ravel(), [w1 * X[0] + w2 * X[2] + w3 * X[4]], strategy)
    # full padding == numpy's full correlation
    y = fastconv.conv1d(_x(X).astype(dtype), _x(W).astype(dtype), padding="full",
                        strategy=strategy)
    _eq(y.ravel(), np.correlate(X, W, mode="full"), strategy)
    y = fastconv.conv1d(_x(X).astype(dtype), _x(W).astype(dtype), padding="same",
                        strategy=strategy)
    _eq(y.ravel(), np.correlate(X, W, mode="same"), strategy)


@pytest.mark.parametrize("strategy", strategies_for(make_spec((1, 2, 3, 4), (2, 2, 2, 2))))
def test_worked_2d_multichannel(strategy):
    """Two input channels, two kernels: each output map sums over the channels."""
    x = np.arange(2 * 3 * 4, dtype=np.float64).reshape(1, 2, 3, 4) - 7
    w = np.array([[[[1, 0], [0, -1]], [[2, 1], [0, 0]]],
                  [[[0, 1], [1, 0]], [[-1, 0], [0, 3]]]], dtype=np.float64)
    y = fastconv.conv2d(x, w, strategy=strategy)
    want = np.zeros((1, 2, 2, 3))
    for o in range(2):
        for i in range(2):
            for j in range(3):
                want[0, o, i, j] = sum(x[0, c, i + a, j + b] * w[o, c, a, b]
                                       for c in range(2) for a in range(2) for b in range(2))
    _eq(y, want, strategy)


# ---------------------------------------------------------------------------
# finite differences
# ---------------------------------------------------------------------------
FD_CASES = [
    (1, dict(stride=2, padding=((1, 2),), dilation=1, groups=1), (2, 2, 9), (3, 2, 3)),
    (1, dict(stride=1, padding="same", dilation=2, groups=2, flip=True), (1, 4, 8), (2, 2, 2)),
    (2, dict(stride=(1, 2), padding=((0, 1), (2, 0)), dilation=(2, 1), groups=1),
     (1, 2, 6, 5), (2, 2, 2, 3)),
    (2, dict(stride=1, padding=1, dilation=1, groups=3, flip=True), (3, 5, 4), (3, 1, 3, 2)),
    (3, dict(stride=(2, 1, 1), padding=((1, 0), (0, 1), (1, 1)), dilation=(1, 1, 2),
             groups=2), (1, 2, 4, 3, 5), (2, 1, 2, 2, 2)),
]


def _fd_check(f, a, grad, rng, n_max=16, eps=1e-6):
    """Central differences of the scalar function ``f`` at ``a`` against ``grad``,
    on all entries of a small array, else on ``n_max`` random ones (incl. corners)."""
    idxs = list(np.ndindex(*a.shape))
    if len(idxs) > n_max:
        pick = rng.choice(len(idxs), n_max - 2, replace=False)
        idxs = [idxs[0], idxs[-1]] + [idxs[i] for i in pick]
    a = a.copy()
    for idx in idxs:
        old = a[idx]
        a[idx] = old + eps
        fp = f(a)
        a[idx] = old - eps
        fm = f(a)
        a[idx] = old
        fd = (fp - fm) / (2 * eps)
        assert abs(grad[idx] - fd) <= 1e-7 + 1e-6 * abs(fd), (idx, grad[idx], fd)


@pytest.mark.parametrize("strategy, case", strategy_params(
    lambda c: make_spec(c[2], c[3], **c[1]), FD_CASES,
    ids=[lambda c: f"{c[0]}d-{FD_CASES.index(c)}"]))
def test_finite_differences(strategy, case, rng):
    ndim, kw, x_shape, w_shape = case
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    conv = getattr(fastconv, f"conv{ndim}d")
    g = rng.standard_normal(conv(x, w, b, strategy=strategy, **kw).shape)

    def loss_x(xx):
        return float(np.sum(conv(xx, w, b, strategy=strategy, **kw) * g))

    def loss_w(ww):
        return float(np.sum(conv(x, ww, b, strategy=strategy, **kw) * g))

    def loss_b(bb):
        return float(np.sum(conv(x, w, bb, strategy=strategy, **kw) * g))

    gx = getattr(fgrad, f"conv{ndim}d_input")(x.shape, w, g, strategy=strategy, **kw)
    gw = getattr(fgrad, f"conv{ndim}d_weight")(x, w.shape, g, strategy=strategy, **kw)
    _fd_check(loss_x, x, gx, rng)
    _fd_check(loss_w, w, gw, rng)
    bx, bw, bb = fastconv.conv_backward(x, w, g, strategy=strategy, **kw)
    np.testing.assert_allclose(bx, gx, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(bw, gw, rtol=1e-9, atol=1e-9)
    _fd_check(loss_b, b, bb, rng)
