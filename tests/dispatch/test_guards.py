"""The dispatcher's numeric guards (auto does not pick FFT or Winograd into a float32
overflow) and its explanation when no strategy fits the budget."""
from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv import _dispatch
from fastconv import reference as ref

# Every test starts from the default options (another may have loaded a config file).
pytestmark = pytest.mark.usefixtures("default_options")


# float32 FFT overflow: auto does not pick FFT into it
def test_auto_avoids_float32_fft_overflow():
    rng = np.random.default_rng(0)
    x = rng.random((2, 8, 64, 64)).astype(np.float32)
    w = rng.random((8, 8, 31, 31)).astype(np.float32)
    assert fastconv.explain("forward", x.shape, w.shape, padding=15).strategy == "fft"
    big_x, big_w = x * np.float32(1e17), w * np.float32(1e17)
    with np.errstate(over="ignore", invalid="ignore"):
        forced = fastconv.conv2d(big_x, big_w, padding=15, strategy="fft")
    assert not np.isfinite(forced).all()          # the defect: FFT overflows ...
    y = fastconv.conv2d(big_x, big_w, padding=15)  # ... auto must not
    want = ref.conv_forward(big_x.astype(np.float64), big_w.astype(np.float64), padding=15)
    assert np.isfinite(want).all() and np.abs(want).max() < np.finfo(np.float32).max
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # ordinary magnitudes still go to FFT
    gy = rng.random((2, 8, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(fastconv.conv2d(x, w, padding=15),
                               ref.conv_forward(x, w, padding=15), rtol=1e-3, atol=1e-3)
    gx, gw, _ = fastconv.conv_backward(big_x, big_w, gy, padding=15)
    assert np.isfinite(gx).all() and np.isfinite(gw).all()


def test_auto_avoids_float32_winograd_overflow():
    # winograd's transforms grow values (F(4x4): up to 10x per axis on the input
    # tiles, 19x on the outputs): float32 overflowed inside the call where the
    # exact result was 10x below float32's largest value and direct was finite
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 64, 32, 32)) * 3e35).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    assert fastconv.explain("forward", x.shape, w.shape, padding=1).strategy == "winograd"
    with np.errstate(over="ignore", invalid="ignore"):
        forced = fastconv.conv2d(x, w, padding=1, strategy="winograd")  # still runs
    assert not np.isfinite(forced).all()
    y = fastconv.conv2d(x, w, padding=1)
    want = fastconv.conv2d(x, w, padding=1, strategy="direct")
    assert np.isfinite(want).all() and np.isfinite(y).all()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())

    x = (rng.standard_normal((4, 32, 24, 24)) * 1e18).astype(np.float32)
    gy = (rng.standard_normal((4, 32, 24, 24)) * 1e17).astype(np.float32)
    ws = (32, 32, 3, 3)
    assert fastconv.explain("grad_weight", x.shape, ws, padding=1).strategy == "winograd"
    with np.errstate(over="ignore", invalid="ignore"):
        forced = fastconv.grad_weight(x, ws, gy, padding=1, strategy="winograd")
    assert not np.isfinite(forced).any()
    want = fastconv.grad_weight(x, ws, gy, padding=1, strategy="direct")
    for gw in (fastconv.grad_weight(x, ws, gy, padding=1),
               fastconv.conv_backward(x, np.ones(ws, np.float32), gy, padding=1)[1]):
        assert np.isfinite(gw).all()
        np.testing.assert_allclose(gw, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_winograd_overflow_guard_leaves_ordinary_magnitudes_alone():
    from fastconv._strategies import winograd as wg

    x = np.random.default_rng(1).standard_normal((8, 64, 32, 32)).astype(np.float32) * 1e6
    w = np.ones((64, 64, 3, 3), np.float32)
    p = fastconv.plan("forward", x.shape, w.shape, padding=1)._chosen(x, w)
    assert p.strategy == "winograd"
    # the bound covers the channel sums: it grows with the channels per group
    spec = fastconv.make_spec((1, 64, 8, 8), (64, 64, 3, 3), padding=1)
    dw = fastconv.make_spec((1, 64, 8, 8), (64, 1, 3, 3), padding=1, groups=64)
    assert wg.overflow_factor(spec, "forward", 2) == 64 * wg.overflow_factor(dw, "forward", 2)


def test_explain_explains_when_nothing_fits(monkeypatch):
    # every strategy needs more than the budget (whatever their real scratch)
    monkeypatch.setattr(_dispatch, "total_workspace", lambda *a, **k: 1 << 40)
    _dispatch.clear_memo()
    with fastconv.config(memory_budget=16):
        d = fastconv.explain("forward", (4, 8, 64, 64), (8, 8, 3, 3), padding=1)
    _dispatch.clear_memo()
    assert d.strategy is None and d.decided_by == "nothing-fits"
    assert all(c.excluded for c in d.candidates) and "budget" in d.detail
    str(d)
