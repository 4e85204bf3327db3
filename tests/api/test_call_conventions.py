"""Calling conventions shared with PyTorch: the grad functions' argument names
(documented and torch.nn.grad's), empty batches, and explain() handing out a copy."""
from __future__ import annotations

import numpy as np
import pytest

import fastconv
import fastconv.grad as fgrad
from fastconv import reference as ref

# Every test starts from the default options (another may have loaded a config file).
pytestmark = pytest.mark.usefixtures("default_options")


def test_grad_functions_accept_documented_and_torch_names():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 2))
    gy = rng.standard_normal(fastconv.output_shape(x.shape, w.shape, padding=1))
    want_x = ref.conv_grad_input(x.shape, w, gy, padding=1)
    want_w = ref.conv_grad_weight(x, w.shape, gy, padding=1)
    for got in (fgrad.conv2d_input(input_shape=x.shape, weight=w, grad_output=gy, padding=1),
                fgrad.conv2d_input(input_size=x.shape, weight=w, grad_output=gy, padding=1),
                fgrad.conv2d_input(x.shape, w, gy, 1, 1)):
        np.testing.assert_allclose(got, want_x, atol=1e-10)
    for got in (fgrad.conv2d_weight(input=x, weight_shape=w.shape, grad_output=gy, padding=1),
                fgrad.conv2d_weight(x, weight_size=w.shape, grad_output=gy, padding=1),
                fgrad.conv2d_weight(x, w.shape, gy, 1, 1)):
        np.testing.assert_allclose(got, want_w, atol=1e-10)
    with pytest.raises(TypeError, match="both"):
        fgrad.conv2d_input(x.shape, w, gy, input_size=x.shape)
    with pytest.raises(TypeError, match="weight_shape"):
        fgrad.conv2d_weight(x, grad_output=gy)


@pytest.mark.parametrize("strategy", ("auto",) + tuple(fastconv.strategies()))
def test_zero_size_batch_follows_pytorch(strategy):
    x, w = np.ones((0, 4, 9, 7), np.float32), np.ones((6, 2, 3, 3), np.float32)
    kw = dict(groups=2, padding=1, strategy=strategy)
    y = fastconv.conv2d(x, w, **kw)
    assert y.shape == (0, 6, 9, 7) and y.dtype == np.float32
    gy = np.ones(y.shape, np.float32)
    gx, gw, gb = fastconv.conv_backward(x, w, gy, **kw)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (6,)
    assert not gw.any() and not gb.any()
    assert fgrad.conv2d_weight(x, w.shape, gy, **kw).shape == w.shape
    assert fgrad.conv2d_input(x.shape, w, gy, **kw).shape == x.shape
    with pytest.raises(ValueError, match="strategy"):
        fastconv.conv2d(x, w, groups=2, strategy="nope")


def test_zero_size_batch_matches_torch():
    torch = pytest.importorskip("torch")
    x, w = torch.zeros((0, 4, 9)), torch.ones((6, 4, 3), requires_grad=True)
    y = torch.nn.functional.conv1d(x, w)
    y.sum().backward()
    ours = fastconv.conv1d(x.numpy(), w.detach().numpy())
    assert ours.shape == tuple(y.shape)
    gw = fastconv.grad_weight(x.numpy(), w.shape, np.zeros(ours.shape, np.float32))
    np.testing.assert_array_equal(gw, w.grad.numpy())


def test_explain_returns_a_copy():
    d = fastconv.explain("forward", (1, 2, 8, 8), (2, 2, 3, 3))
    d.strategy = "bogus"
    assert fastconv.explain("forward", (1, 2, 8, 8), (2, 2, 3, 3)).strategy != "bogus"
