"""Kernel spectra by DFT-matrix products (fastconv._strategies.fft_dft) match
the zero-padded transforms they replace, and the FFT strategy is right
whichever of the two it picks."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

import fastconv
import fastconv.grad as fgrad
from fastconv import reference as ref
from fastconv._ext import _fft
from fastconv._strategies import fft as fftmod
from fastconv._strategies.fft_dft import dft_cmacs, kernel_spectrum, kernel_taps
from fastconv._strategies.fft_plan import _fft_geom

CASES = [  # (kernel taps Q, dilation, padded spatial size)
    ((1, 7, 7), (1, 1, 1), (1, 38, 38)),
    ((3, 2, 5), (1, 2, 3), (9, 8, 21)),      # 3-D, dilated, odd transform length
    ((1, 1, 9), (1, 1, 2), (1, 1, 40)),      # 1-D
    ((1, 3, 1), (1, 1, 1), (1, 10, 1)),      # the kernel spans a non-last axis only
    ((1, 1, 1), (1, 1, 1), (1, 1, 1)),       # nothing to transform
    ((1, 5, 4), (1, 1, 1), (1, 5, 4)),       # kernel as large as the transform
]


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-13), (np.float32, 2e-6)])
@pytest.mark.parametrize("Q, dil, P", CASES)
def test_kernel_spectrum_and_taps_match_pocketfft(rng, Q, dil, P, dtype, tol):
    F, axes, mshape = _fft_geom(P)
    w = rng.standard_normal((5, 3) + Q).astype(dtype)
    buf = np.zeros(F + (5, 3), dtype)
    _fft.pack(w, buf, 0, dil, (0, 0, 0), 1)
    want = scipy.fft.rfftn(buf, axes=axes)
    got = kernel_spectrum(w, F, axes, mshape, dil, 2)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.abs(got - want).max() <= tol * np.abs(want).max()
    # the inverse: only the taps, and imaginary parts of self-conjugate bins ignored
    G = (rng.standard_normal(mshape + (5, 3))
         + 1j * rng.standard_normal(mshape + (5, 3))).astype(want.dtype)
    full = np.ascontiguousarray(scipy.fft.irfftn(G, s=[F[i] for i in axes], axes=axes))
    taps = np.empty((5, 3) + Q, dtype)
    _fft.unpack(full, taps, 0, dil, (0, 0, 0), 1)
    got = kernel_taps(G, F, axes, Q, dil, dtype, 2)
    assert got.shape == taps.shape and got.dtype == taps.dtype
    assert np.abs(got - taps).max() <= tol * np.abs(taps).max()


def test_dft_cmacs_counts_the_matrix_products():
    # 7x7 kernel in a 40x40 transform: 7 rows x 21 bins x 7 taps, then 40 x 21 x 7
    assert dft_cmacs((1, 40, 40), (1, 2), (1, 7, 7)) == 7 * 21 * 7 + 40 * 21 * 7
    assert dft_cmacs((1, 40, 40), (1, 2), (1, 7, 7), inverse=True) == 7 * 21 * 40 + 7 * 7 * 21


def test_dft_axis_refuses_mismatched_shapes():
    src, D, dst = np.zeros((2, 3, 8)), np.zeros((5, 6)), np.zeros((2, 4, 8))
    with pytest.raises(ValueError, match="dft_axis"):
        _fft.dft_axis(src, D, dst, 1)


@pytest.mark.parametrize("use_dft", [True, False])
@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((2, 4, 13, 11), (6, 2, 5, 3), dict(padding=((2, 1), (0, 3)), dilation=(1, 2), groups=2)),
    ((3, 2, 7, 6, 5), (4, 2, 3, 2, 3), dict(padding=1, stride=(2, 1, 1))),
    ((2, 3, 40), (5, 3, 9), dict(padding=4, dilation=2)),
])
def test_both_kernel_paths_match_reference(monkeypatch, rng, use_dft, x_shape, w_shape, kw):
    monkeypatch.setattr(fftmod, "_kernel_by_dft", lambda *a, **k: use_dft)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    gy = rng.standard_normal(ref.conv_forward(x, w, **kw).shape)
    nd = w.ndim - 2
    y = fastconv.conv(x, w, strategy="fft", **kw)
    gx = getattr(fgrad, f"conv{nd}d_input")(x.shape, w, gy, strategy="fft", **kw)
    gw = getattr(fgrad, f"conv{nd}d_weight")(x, w.shape, gy, strategy="fft", **kw)
    gx2, gw2, _ = fastconv.conv_backward(x, w, gy, strategy="fft", **kw)
    rgx, rgw = ref.conv_grad_input(x.shape, w, gy, **kw), ref.conv_grad_weight(x, w.shape, gy, **kw)
    for got, want in [(y, ref.conv_forward(x, w, **kw)), (gx, rgx), (gw, rgw), (gx2, rgx),
                      (gw2, rgw)]:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((2, 3, 29, 31), (4, 3, 5, 3), dict(padding=((2, 3), (1, 0)), stride=(2, 1), dilation=(1, 2))),
    ((1, 2, 14, 13, 12), (3, 2, 3, 3, 2), dict(padding=1, stride=(1, 2, 1))),
    ((2, 2, 1, 40), (2, 2, 1, 5), dict(padding=(0, 2))),   # a kernel-free axis is folded
])
def test_tile_plans_match_reference(monkeypatch, rng, x_shape, w_shape, kw):
    """Every candidate tile plan (overlap-save in all spanned axes) runs every
    op exactly; the plans tile only spanned axes, in multiples of the stride."""
    from fastconv._spec import make_spec
    from fastconv._strategies.fft_plan import _span3, _tile_plans
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    gy = rng.standard_normal(ref.conv_forward(x, w, **kw).shape)
    spec = make_spec(x_shape, w_shape, **kw)
    plans = _tile_plans(spec)
    L, P, s = _span3(spec), spec.padded_shape5[2:], spec.stride3
    spanned = [i for i in range(3) if L[i] > 1 and P[i] - L[i] + 1 > s[i]]
    if len(spanned) < 2:
        assert plans == []
        return
    assert plans
    for plan in plans[:3]:
        tiled = [i for i, B in plan if L[i] > 1]
        assert sorted(tiled) == spanned
        assert all(B % s[i] == 0 and s[i] <= B for i, B in plan)
        monkeypatch.setattr(fftmod, "_block_plan", lambda spec, op="forward", p=plan: p)
        nd = w.ndim - 2
        y = fastconv.conv(x, w, strategy="fft", **kw)
        gx = getattr(fgrad, f"conv{nd}d_input")(x.shape, w, gy, strategy="fft", **kw)
        gw = getattr(fgrad, f"conv{nd}d_weight")(x, w.shape, gy, strategy="fft", **kw)
        gx2, gw2, _ = fastconv.conv_backward(x, w, gy, strategy="fft", **kw)
        rgx = ref.conv_grad_input(x.shape, w, gy, **kw)
        rgw = ref.conv_grad_weight(x, w.shape, gy, **kw)
        for got, want in [(y, ref.conv_forward(x, w, **kw)), (gx, rgx), (gw, rgw),
                          (gx2, rgx), (gw2, rgw)]:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("F", [7, 8, 24])
def test_dft_axis_sym_matches_the_complex_product(rng, F):
    """The conjugate-symmetric form (two real GEMMs) equals the complex
    product with the full DFT matrix, odd and even lengths, lanes not a
    multiple of its 256-lane blocks."""
    from fastconv._strategies.fft_dft import _matrix
    q, pre, post = 3, 2, 300
    D = _matrix((1, 1, F), 2, F, q, 2, 2, False, np.dtype(np.complex128))
    src = rng.standard_normal((pre, q, post)) + 1j * rng.standard_normal((pre, q, post))
    want = np.einsum("kq,pql->pkl", D, src)
    h = F // 2 + 1
    got = np.empty((pre, F, post), np.complex128)
    _fft.dft_axis_sym(src.view(np.float64), np.ascontiguousarray(D[:h].real),
                      np.ascontiguousarray(D[:h].imag), got.view(np.float64), 2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    with pytest.raises(ValueError, match="dft_axis_sym"):
        _fft.dft_axis_sym(src.view(np.float64), np.zeros((h + 1, q)), np.zeros((h + 1, q)),
                          got.view(np.float64), 2)
