"""Public API: output_shape, conv vs conv{1,2,3}d, grad module, strategies,
explain, config, show_config."""
from __future__ import annotations

import numpy as np
import pytest
from _helpers import NDIMS, STRATEGIES, strategies_for, strategy_params, supported

import fastconv
import fastconv.grad as fgrad
from fastconv import reference as ref


@pytest.mark.parametrize("args, kwargs, want", [
    (((1, 3, 32, 32), (6, 3, 5, 5)), {}, (1, 6, 28, 28)),
    (((8, 3, 224, 224), (64, 3, 7, 7)), dict(stride=2, padding=3), (8, 64, 112, 112)),
    (((3, 32, 32), (6, 3, 5, 5)), {}, (6, 28, 28)),                       # unbatched
    (((2, 4, 10, 7), (5, 4, 3, 2)), dict(padding="same"), (2, 5, 10, 7)),
    (((2, 4, 10, 7), (5, 4, 3, 2)), dict(padding="full"), (2, 5, 12, 8)),
    (((2, 4, 10, 7), (5, 4, 3, 2)), dict(padding="valid"), (2, 5, 8, 6)),
    (((2, 4, 10, 7), (6, 2, 3, 2)), dict(groups=2), (2, 6, 8, 6)),
    # (10 + 1 + 2 - 2*(3-1) - 1)//3 + 1 = 3 ; (7 + 0 + 0 - 1*(2-1) - 1)//1 + 1 = 6
    (((1, 1, 10, 7), (1, 1, 3, 2)), dict(stride=(3, 1), padding=((1, 2), (0, 0)),
                                         dilation=(2, 1)), (1, 1, 3, 6)),
    (((1, 2, 16384), (2, 1, 16384)), dict(padding=((16383, 0),), groups=2), (1, 2, 16384)),
    (((4, 16, 9, 8, 7), (32, 16, 3, 2, 1)), dict(stride=2, padding=1), (4, 32, 5, 5, 5)),
    (((2, 9), (4, 2, 9)), {}, (4, 1)),                                   # kernel = input
])
def test_output_shape_examples(args, kwargs, want):
    assert fastconv.output_shape(*args, **kwargs) == want


def _convnd_shapes(ndim):
    return (2, 4) + (7, 6, 5)[:ndim], (6, 2) + (3, 2, 2)[:ndim]


@pytest.mark.parametrize("strategy, ndim", strategy_params(
    lambda n: fastconv.make_spec(*_convnd_shapes(n), stride=2, padding=1, groups=2), NDIMS))
def test_conv_equals_convnd(strategy, ndim, rng):
    x_shape, w_shape = _convnd_shapes(ndim)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(6)
    kw = dict(stride=2, padding=1, dilation=1, groups=2, flip=True, strategy=strategy)
    a = fastconv.conv(x, w, b, **kw)
    c = getattr(fastconv, f"conv{ndim}d")(x, w, b, **kw)
    np.testing.assert_array_equal(a, c)
    # positional order (x, weight, bias, stride, padding, dilation, groups) as in torch
    d = getattr(fastconv, f"conv{ndim}d")(x, w, b, 2, 1, 1, 2, flip=True, strategy=strategy)
    np.testing.assert_array_equal(a, d)


@pytest.mark.parametrize("ndim", NDIMS)
def test_grad_module_matches_generic(ndim, rng):
    x = rng.standard_normal((2, 3) + (6, 5, 4)[:ndim])
    w = rng.standard_normal((4, 3) + (2, 3, 2)[:ndim])
    gy = rng.standard_normal(fastconv.output_shape(x.shape, w.shape, padding=1))
    gi = getattr(fgrad, f"conv{ndim}d_input")(x.shape, w, gy, 1, 1)
    np.testing.assert_array_equal(gi, fastconv.grad_input(x.shape, w, gy, padding=1))
    gw = getattr(fgrad, f"conv{ndim}d_weight")(x, w.shape, gy, 1, 1)
    np.testing.assert_array_equal(gw, fastconv.grad_weight(x, w.shape, gy, padding=1))
    np.testing.assert_allclose(gi, ref.conv_grad_input(x.shape, w, gy, padding=1),
                               rtol=1e-10, atol=1e-10)


def test_conv_backward_returns_three_gradients(rng):
    x = rng.standard_normal((3, 2, 6, 5))
    w = rng.standard_normal((4, 2, 2, 3))
    gy = rng.standard_normal(fastconv.output_shape(x.shape, w.shape))
    gx, gw, gb = fastconv.conv_backward(x, w, gy)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (4,)
    np.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3)), rtol=1e-12)
    # unbatched
    gx, gw, gb = fastconv.conv_backward(x[0], w, gy[0])
    assert gx.shape == x[0].shape
    np.testing.assert_allclose(gb, gy[0].sum(axis=(1, 2)), rtol=1e-12)


def test_strategies():
    names = fastconv.strategies()
    assert isinstance(names, tuple)
    assert "direct" in names
    assert len(set(names)) == len(names)
    assert set(names) <= {"direct", "im2col", "fft", "winograd"}


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
def test_explain_returns_decision(op):
    d = fastconv.explain(op, (4, 16, 20, 18), (32, 16, 3, 3), padding=1)
    assert d.strategy in fastconv.strategies()
    assert d.op == op
    assert isinstance(str(d), str) and d.strategy in str(d)
    d = fastconv.explain(op, (4, 16, 20, 18), (32, 16, 3, 3), strategy="direct")
    assert (d.strategy, d.decided_by) == ("direct", "argument")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_config_strategy_is_honored(strategy, monkeypatch, rng):
    from fastconv import _strategies

    calls = []
    obj = _strategies.get(strategy)
    orig_run = obj.run

    def spy(plan, *args, **kwargs):
        calls.append(plan.op)
        return orig_run(plan, *args, **kwargs)

    monkeypatch.setattr(obj, "run", spy)
    x = rng.standard_normal((1, 2, 9, 8))
    w = rng.standard_normal((3, 2, 3, 3))
    with fastconv.config(strategy=strategy):
        assert fastconv.get_config().strategy == strategy
        d = fastconv.explain("forward", x.shape, w.shape)
        assert (d.strategy, d.decided_by) == (strategy, "context")
        y = fastconv.conv2d(x, w)
        fastconv.grad_input(x.shape, w, y)
        fastconv.grad_weight(x, w.shape, y)
    assert calls == ["forward", "grad_input", "grad_weight"]
    assert fastconv.get_config().strategy == "auto"       # restored on exit
    np.testing.assert_allclose(y, ref.conv_forward(x, w), rtol=1e-9, atol=1e-9)


def test_config_argument_beats_context():
    other = [s for s in STRATEGIES if s != "direct"]
    if not other:
        pytest.skip("only one strategy registered")
    with fastconv.config(strategy=other[0]):
        d = fastconv.explain("forward", (1, 2, 9, 8), (3, 2, 3, 3), strategy="direct")
        assert (d.strategy, d.decided_by) == ("direct", "argument")


def test_config_nests_and_restores():
    with fastconv.config(strategy="direct", n_threads=1):
        assert fastconv.get_config().threads == 1
        with fastconv.config(n_threads=2):
            assert fastconv.get_config().strategy == "direct"
            assert fastconv.get_config().threads == 2
        assert fastconv.get_config().threads == 1
    assert fastconv.get_config().strategy == "auto"


def test_config_rejects_unknown_option():
    with pytest.raises(TypeError, match="nonsense"):
        with fastconv.config(nonsense=1):
            pass


@pytest.mark.skipif("fft" not in STRATEGIES, reason="fft strategy not registered")
def test_allow_fft_false_excludes_fft():
    # a large kernel, where FFT is the natural choice
    shape_x, shape_w = (2, 8, 128, 128), (8, 8, 31, 31)
    with fastconv.config(allow_fft=False):
        for op in ("forward", "grad_input", "grad_weight"):
            assert fastconv.explain(op, shape_x, shape_w).strategy != "fft"


def test_single_thread_matches_default(rng):
    x = rng.standard_normal((3, 4, 11, 10))
    w = rng.standard_normal((6, 4, 3, 2))
    for s in strategies_for(fastconv.make_spec(x.shape, w.shape, padding=1)):
        a = fastconv.conv2d(x, w, padding=1, strategy=s)
        with fastconv.config(n_threads=1):
            b = fastconv.conv2d(x, w, padding=1, strategy=s)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_show_config_reports_openmp(capsys):
    fastconv.show_config()
    out = capsys.readouterr().out
    assert fastconv.__version__ in out
    assert "openmp" in out.lower()
    assert "_direct" in out
    from fastconv._info import config_info

    info = config_info()
    assert isinstance(info["openmp"], bool)
    assert info["compiled modules"]["_direct"] == "loaded"


def test_version_and_public_names():
    assert isinstance(fastconv.__version__, str)
    for name in ("conv", "conv1d", "conv2d", "conv3d", "conv_backward", "grad", "output_shape",
                 "explain", "strategies", "config", "show_config", "make_spec"):
        assert hasattr(fastconv, name), name
    for name in ("conv1d_input", "conv2d_input", "conv3d_input", "conv1d_weight",
                 "conv2d_weight", "conv3d_weight"):
        assert callable(getattr(fgrad, name)), name


def test_make_spec_normalizes():
    s = fastconv.make_spec((2, 4, 10, 7), (6, 2, 3, 2), stride=(2, 1), padding=(1, (0, 2)),
                           dilation=2, groups=2)
    assert s.ndim == 2 and s.batch == 2 and s.batched
    assert s.padding == ((1, 1), (0, 2))
    assert s.stride == (2, 1) and s.dilation == (2, 2)
    assert s.out_spatial == ((10 + 2 - 4 - 1) // 2 + 1, (7 + 2 - 2 - 1) // 1 + 1)
    s = fastconv.make_spec((4, 10, 7), (6, 4, 4, 2), padding="same")
    assert not s.batched and s.padding == ((1, 2), (0, 1))


@pytest.mark.parametrize("shape_x, shape_w, kw", [
    ((2, 8, 20, 18), (16, 8, 3, 3), dict(padding=1)),
    ((1, 4, 40), (4, 4, 31), dict(padding="same")),
    ((1, 2, 6, 7, 5), (4, 1, 2, 3, 2), dict(groups=2, stride=2)),
    ((2, 16, 9, 9), (16, 1, 3, 3), dict(groups=16, padding=1)),
])
def test_auto_strategy_is_correct(shape_x, shape_w, kw, rng):
    x = rng.standard_normal(shape_x)
    w = rng.standard_normal(shape_w)
    y = fastconv.conv(x, w, **kw)
    np.testing.assert_allclose(y, ref.conv_forward(x, w, **kw), rtol=1e-9, atol=1e-9)
    gy = rng.standard_normal(y.shape)
    gx, gw, _ = fastconv.conv_backward(x, w, gy, **kw)
    np.testing.assert_allclose(gx, ref.conv_grad_input(x.shape, w, gy, **kw), rtol=1e-9,
                               atol=1e-9)
    np.testing.assert_allclose(gw, ref.conv_grad_weight(x, w.shape, gy, **kw), rtol=1e-9,
                               atol=1e-9)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_concurrent_calls_from_python_threads(strategy, rng):
    """Kernels release the GIL: calls from several threads must not share buffers."""
    from concurrent.futures import ThreadPoolExecutor

    problems = [(rng.standard_normal((2, 4, 13 + i, 11)),
                 rng.standard_normal((6, 4, 3, 2 + i % 2)))
                for i in range(6)]
    # those the strategy runs (winograd: the 3x3 kernels)
    problems = [(x, w) for x, w in problems
                if supported(strategy, fastconv.make_spec(x.shape, w.shape, padding=1))]

    def work(p):
        x, w = p
        y = fastconv.conv2d(x, w, padding=1, strategy=strategy)
        gx, gw, _ = fastconv.conv_backward(x, w, y, padding=1, strategy=strategy)
        return y, gx, gw

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(work, problems * 2))
    for (x, w), (y, gx, gw) in zip(problems * 2, results):
        np.testing.assert_allclose(y, ref.conv_forward(x, w, padding=1), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(gx, ref.conv_grad_input(x.shape, w, y, padding=1),
                                   rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(gw, ref.conv_grad_weight(x, w.shape, y, padding=1),
                                   rtol=1e-9, atol=1e-9)
