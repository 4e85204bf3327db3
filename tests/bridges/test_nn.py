"""fastconv.nn: NumPy layers against torch.nn modules with the same weights,
their initialization, parameters(), gradient accumulation and zero_grad(),
needs_input_grad and argument checks."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastconv
from fastconv import nn


@pytest.fixture(autouse=True)
def _one_thread():
    with fastconv.config(n_threads=1):
        yield


# (class name, args, kwargs, input shape)
LAYERS = [
    ("Conv1d", (4, 6, 3), dict(stride=2, padding=1, groups=2), (2, 4, 11)),
    ("Conv2d", (3, 4, (3, 2)), dict(padding="same", dilation=(1, 2)), (2, 3, 7, 8)),
    ("Conv3d", (2, 4, (2, 3, 2)), dict(stride=(1, 2, 1), bias=False), (1, 2, 4, 6, 5)),
    ("ConvTranspose1d", (4, 2, 4), dict(stride=3, padding=1, output_padding=2), (2, 4, 5)),
    ("ConvTranspose2d", (4, 6, (3, 2)), dict(stride=2, padding=(1, 0), output_padding=1,
                                           groups=2), (2, 4, 4, 5)),
    ("ConvTranspose3d", (2, 3, 2), dict(dilation=2), (3, 2, 3, 4, 3)),  # unbatched
]


@pytest.mark.parametrize("name, args, kwargs, shape", LAYERS, ids=[l[0] for l in LAYERS])
def test_matches_torch_module(name, args, kwargs, shape, rng):
    torch = pytest.importorskip("torch")
    layer = getattr(nn, name)(*args, **kwargs, dtype=np.float64, rng=rng)
    tm = getattr(torch.nn, name)(*args, **kwargs, dtype=torch.float64)
    assert layer.weight.shape == tuple(tm.weight.shape)
    assert layer.n_parameters == sum(p.numel() for p in tm.parameters())
    with torch.no_grad():
        tm.weight.copy_(torch.from_numpy(layer.weight))
        if layer.bias is not None:
            tm.bias.copy_(torch.from_numpy(layer.bias))
    x = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = tm(xt)
    y = layer.forward(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(gy))
    gx = layer.backward(gy)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["weight"], tm.weight.grad.numpy(), rtol=1e-10,
                               atol=1e-10)
    if layer.bias is None:
        assert layer.grads["bias"] is None and [n for n, *_ in layer.parameters()] == ["weight"]
    else:
        np.testing.assert_allclose(layer.grads["bias"], tm.bias.grad.numpy(), rtol=1e-10,
                                   atol=1e-10)


@pytest.mark.parametrize("cls, shape, fan_in", [
    (nn.Conv2d, (16, 4, 5, 5), 4 * 25),               # (C_out, C_in/g, k, k)
    (nn.ConvTranspose2d, (8, 8, 5, 5), 8 * 25),      # (C_in, C_out/g, k, k)
])
def test_default_init_is_torchs_and_seedable(cls, shape, fan_in):
    a = cls(8, 16, 5, groups=2, rng=np.random.default_rng(7))
    b = cls(8, 16, 5, groups=2, rng=np.random.default_rng(7))
    assert a.weight.shape == shape and a.weight.dtype == np.float32
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), ...)
    for p in (a.weight, a.bias):
        assert np.abs(p).max() <= bound
    assert np.abs(a.weight).max() > 0.95 * bound
    assert abs(a.weight.std() - bound / math.sqrt(3)) < 0.1 * bound  # std of U(-b, b)
    c = cls(8, 16, 5, groups=2, rng=np.random.default_rng(8))
    assert not np.array_equal(a.weight, c.weight)


def test_training_step_and_needs_input_grad(rng, monkeypatch):
    layer = nn.Conv2d(1, 3, 3, padding=1, rng=rng, needs_input_grad=False)
    x = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    target = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    calls = []
    orig = fastconv._api.conv_backward
    monkeypatch.setattr(fastconv.nn, "_conv_backward",
                        lambda *a, **k: calls.append(k["needs"]) or orig(*a, **k))
    losses = []
    for _ in range(30):
        layer.zero_grad()
        y = layer(x)
        losses.append(float(((y - target) ** 2).mean()))
        assert layer.backward(2 * (y - target) / y.size) is None
        for _, p, g in layer.parameters():
            p -= 0.5 * g
    assert losses[-1] < 0.8 * losses[0]
    assert all("input" not in n for n in calls)
    layer.forward(x)
    assert layer.backward(np.ones((4, 3, 6, 6), np.float32), needs_input_grad=True).shape == x.shape
    assert "input" in calls[-1]


def test_errors_and_repr():
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Conv1d(1, 1, 3).backward(np.ones((1, 1, 3)))
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(1, 1, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(TypeError, match="dtype"):
        nn.Conv2d(1, 1, 3, dtype=np.int32)
    assert repr(nn.ConvTranspose2d(2, 4, 3, stride=2, groups=2, bias=False, strategy="fft")) == (
        "ConvTranspose2d(2, 4, kernel_size=(3, 3), stride=(2, 2), groups=2, bias=False, "
        "strategy='fft')")


@pytest.mark.parametrize("name, args, kwargs, shape", LAYERS[:4], ids=[l[0] for l in LAYERS[:4]])
def test_gradients_accumulate_until_zero_grad_as_torch(name, args, kwargs, shape, rng):
    # backward overwrote .grads on each call; torch adds until zero_grad()
    torch = pytest.importorskip("torch")
    layer = getattr(nn, name)(*args, **kwargs, dtype=np.float64, rng=rng)
    tm = getattr(torch.nn, name)(*args, **kwargs, dtype=torch.float64)
    with torch.no_grad():
        tm.weight.copy_(torch.from_numpy(layer.weight))
        if layer.bias is not None:
            tm.bias.copy_(torch.from_numpy(layer.bias))
    # zeros (not None) before any backward
    grads = {n: g for n, _, g in layer.parameters()}
    assert all(isinstance(g, np.ndarray) and not g.any() for g in grads.values())
    for _ in range(2):   # two batches summed
        x = rng.standard_normal(shape)
        gy = rng.standard_normal(layer.forward(x).shape)
        layer.backward(gy)
        tm(torch.from_numpy(x)).backward(torch.from_numpy(gy))
    np.testing.assert_allclose(layer.grads["weight"], tm.weight.grad.numpy(), rtol=1e-10,
                               atol=1e-10)
    if layer.bias is not None:
        np.testing.assert_allclose(layer.grads["bias"], tm.bias.grad.numpy(), rtol=1e-10,
                                   atol=1e-10)
    # the arrays parameters() gave hold the sums (updated in place)
    assert grads["weight"] is layer.grads["weight"]
    layer.zero_grad()
    assert all(not g.any() for _, _, g in layer.parameters())
    assert grads["weight"] is layer.grads["weight"]
    layer.forward(x)
    layer.backward(gy)   # after zero_grad: this batch's gradient alone
    tm.zero_grad()
    tm(torch.from_numpy(x)).backward(torch.from_numpy(gy))
    np.testing.assert_allclose(layer.grads["weight"], tm.weight.grad.numpy(), rtol=1e-10,
                               atol=1e-10)


def test_float32_layer_accumulates_in_its_dtype(rng):
    layer = nn.Conv1d(2, 3, 3, rng=rng)
    x = rng.standard_normal((2, 2, 9))   # float64 input: float64 gradients ...
    layer.backward(np.ones_like(layer.forward(x)))
    assert layer.grads["weight"].dtype == np.float32 == layer.grads["bias"].dtype  # ... summed
    np.testing.assert_allclose(layer.grads["bias"], 2 * 7 * np.ones(3))


@pytest.mark.parametrize("args, kwargs, match", [
    ((3, 4, 3.0), {}, "kernel_size"),
    ((3, 4, (3, 2.5)), {}, "kernel_size"),
    ((3, 4, {3}), {}, "kernel_size"),
    ((3, 4, True), {}, "kernel_size"),
    ((3.0, 4, 3), {}, "in_channels"),
    ((3, "4", 3), {}, "out_channels"),
    ((3, 4, 3), dict(stride=2.0), "stride"),
    ((3, 4, 3), dict(groups=1.0), "groups"),
    ((3, 4, 3), dict(rng="seed"), "rng"),
    ((3, 4, 3), dict(rng=1.5), "rng"),
])
def test_bad_argument_types_are_type_errors_naming_them(args, kwargs, match):
    # nn.Conv2d(3, 4, 3.0) said "'float' object is not iterable"
    with pytest.raises(TypeError, match=match):
        nn.Conv2d(*args, **kwargs)


def test_rng_takes_an_int_seed():
    # rng=0 raised AttributeError; an int is a seed, as numpy.random.default_rng(0)
    a = nn.Conv2d(3, 4, 3, rng=0)
    b = nn.Conv2d(3, 4, 3, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert nn.ConvTranspose1d(2, 2, 3, rng=np.int64(5)).weight.shape == (2, 2, 3)
