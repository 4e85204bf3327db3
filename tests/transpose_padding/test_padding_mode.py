"""padding_mode ("zeros", "reflect", "replicate", "circular") everywhere it is taken.

Oracles: the padding's adjoint identity <pad(x), g> = <x, fold(g)> (NumPy only);
torch's F.pad + F.conv in float64 (forward, grad_input, grad_weight, every
strategy, 1-D/2-D/3-D, asymmetric and per-axis padding); and PyTorch's own conv
module test definitions that use padding modes (torch.testing._internal.common_nn).
"""
from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest
from _helpers import strategy_params

import fastconv
import fastconv.nn
from fastconv import _padmode
from fastconv._spec import make_spec

MODES = ("reflect", "replicate", "circular")


# ------------------------------------------------------------------ the padding and its adjoint
@pytest.mark.parametrize("mode", MODES)
def test_fold_is_the_adjoint_of_pad(mode):
    rng = np.random.default_rng(1)
    for shape in [(3, 7), (2, 3, 6), (2, 2, 5, 4), (1, 2, 3, 4, 5), (2, 4, 4, 3)]:
        nd = min(3, len(shape) - 1)
        spatial = shape[-nd:]
        for _ in range(4):
            limit = [n - 1 if mode == "reflect" else n for n in spatial]
            pads = tuple((int(rng.integers(0, m + 1)), int(rng.integers(0, m + 1)))
                         for m in limit)
            x = rng.standard_normal(shape)
            xp = _padmode.pad(x, pads, mode)
            assert xp.shape == shape[:-nd] + tuple(n + b + a for n, (b, a) in
                                                   zip(spatial, pads))
            g = rng.standard_normal(xp.shape)
            gx = _padmode.fold(g, pads, mode)
            assert gx.shape == x.shape
            np.testing.assert_allclose(np.vdot(xp, g), np.vdot(x, gx), rtol=1e-12)


# ------------------------------------------------------------------ against torch
CASES = {  # x shape, w shape, stride, padding, dilation, groups
    "1d-stride-asym": ((2, 4, 9), (6, 2, 3), 2, ((2, 1),), 1, 2),
    "2d-3x3-per-axis": ((1, 3, 7, 6), (4, 3, 3, 3), 1, (2, 1), 1, 1),
    "2d-asym-dilated": ((2, 2, 6, 8), (4, 1, 2, 3), (2, 1), ((1, 0), (2, 1)), (1, 2), 2),
    "2d-same-even": ((1, 2, 6, 7), (3, 2, 4, 2), 1, "same", (1, 2), 1),
    "3d-3x3x3": ((1, 2, 4, 5, 6), (3, 2, 3, 3, 3), 1, 1, 1, 1),
    "3d-asym": ((1, 2, 5, 4, 6), (2, 1, 2, 3, 2), (1, 2, 1), ((1, 1), (0, 2), (1, 0)),
                (2, 1, 1), 2),
}


def _torch_reference(torch, x, w, b, gy, stride, pads, dilation, groups, mode):
    """Output and the three gradients from torch: F.pad with ``mode``, then F.conv."""
    F = torch.nn.functional
    nd = w.ndim - 2
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    flat = [v for p in reversed(pads) for v in p]
    xp = F.pad(xt, flat, mode=mode) if mode != "zeros" else F.pad(xt, flat)
    y = getattr(F, f"conv{nd}d")(xp, wt, bt, stride, 0, dilation, groups)
    y.backward(torch.tensor(gy))
    return (y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy())


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


def _padded_spec(case):
    """The problem the strategy runs: the explicitly padded input, padding 0."""
    xs, ws, stride, padding, dilation, groups = CASES[case]
    spec = make_spec(xs, ws, stride, padding, dilation, groups)
    return make_spec(xs[:2] + spec.padded_spatial, ws, stride, 0, dilation, groups)


@pytest.mark.parametrize("mode", MODES + ("zeros",))
@pytest.mark.parametrize("strategy, case", strategy_params(_padded_spec, CASES))
def test_every_op_matches_torch(strategy, case, mode):
    torch = pytest.importorskip("torch")
    xs, ws, stride, padding, dilation, groups = CASES[case]
    spec = make_spec(xs, ws, stride, padding, dilation, groups)
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    gy = rng.standard_normal(spec.output_shape)
    y_ref, gx_ref, gw_ref, gb_ref = _torch_reference(torch, x, w, b, gy, spec.stride,
                                                     spec.padding, spec.dilation, groups, mode)
    args = (stride, padding, dilation, groups)
    kw = dict(strategy=strategy, padding_mode=mode)
    _close(fastconv.conv(x, w, b, *args, **kw), y_ref)
    nd = len(ws) - 2
    _close(getattr(fastconv, f"conv{nd}d")(x, w, b, *args, **kw), y_ref)
    _close(fastconv.grad_input(x.shape, w, gy, *args, **kw), gx_ref)
    _close(fastconv.grad_weight(x, w.shape, gy, *args, **kw), gw_ref)
    _close(getattr(fastconv.grad, f"conv{nd}d_input")(x.shape, w, gy, *args, **kw), gx_ref)
    _close(getattr(fastconv.grad, f"conv{nd}d_weight")(x, w.shape, gy, *args, **kw), gw_ref)
    gx, gw, gb = fastconv.conv_backward(x, w, gy, *args, **kw)
    _close(gx, gx_ref)
    _close(gw, gw_ref)
    _close(gb, gb_ref)
    gx, gw, gb = fastconv.conv_backward(x, w, gy, *args, needs=("input",), **kw)
    assert gw is None and gb is None
    _close(gx, gx_ref)
    # unbatched input
    if xs[0] == 1:
        _close(fastconv.conv(x[0], w, b, *args, **kw), y_ref[0])
        _close(fastconv.grad_input(x.shape[1:], w, gy[0], *args, **kw), gx_ref[0])


def test_flip_with_padding_mode():
    """flip=True is the correlation with the flipped kernel, padding included."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 2, 6, 5)), rng.standard_normal((3, 2, 3, 2))
    wf = np.ascontiguousarray(w[:, :, ::-1, ::-1])
    gy = rng.standard_normal((1, 3, 7, 6))
    for mode in MODES:
        kw = dict(padding=((2, 1), (1, 1)), padding_mode=mode)
        _close(fastconv.conv(x, w, flip=True, **kw), fastconv.conv(x, wf, **kw))
        _close(fastconv.grad_input(x.shape, w, gy, flip=True, **kw),
               fastconv.grad_input(x.shape, wf, gy, **kw))
        _close(fastconv.grad_weight(x, w.shape, gy, flip=True, **kw),
               fastconv.grad_weight(x, w.shape, gy, **kw)[:, :, ::-1, ::-1])


# ------------------------------------------------------------------ torch's rules and errors
def test_invalid_modes_and_paddings_are_refused_like_torch():
    x, w = np.ones((1, 1, 3)), np.ones((1, 1, 3))
    with pytest.raises(ValueError, match="padding_mode must be one of .*, but got "
                                         "padding_mode='mirror'"):
        fastconv.conv(x, w, padding=1, padding_mode="mirror")
    with pytest.raises(TypeError, match="padding_mode must be a str"):
        fastconv.grad_input(x.shape, w, np.ones((1, 1, 3)), padding=1, padding_mode=None)
    with pytest.raises(ValueError, match="padding size should be less than the corresponding "
                                         "input dimension, but got padding .3, 0. at dimension 2"):
        fastconv.conv(x, w, padding=((3, 0),), padding_mode="reflect")
    with pytest.raises(ValueError, match="padding size should be less than"):
        fastconv.grad_input(x.shape, w, np.ones((1, 1, 4)), padding=((0, 3),),
                            padding_mode="reflect")
    with pytest.raises(ValueError, match="wrapping around more than once"):
        fastconv.grad_weight(x, w.shape, np.ones((1, 1, 5)), padding=((4, 0),),
                             padding_mode="circular")
    with pytest.raises(ValueError, match="padding='same' is not supported for stride"):
        fastconv.conv_backward(np.ones((1, 1, 6)), w, np.ones((1, 1, 3)), stride=2,
                               padding="same", padding_mode="replicate")
    # the limits themselves are allowed, as in torch
    assert fastconv.conv(x, w, padding=2, padding_mode="reflect").shape == (1, 1, 5)
    assert fastconv.conv(x, w, padding=3, padding_mode="circular").shape == (1, 1, 7)
    assert fastconv.conv(x, w, padding=5, padding_mode="replicate").shape == (1, 1, 11)


def test_zero_size_batch_and_no_padding():
    w = np.ones((2, 3, 3, 3))
    y = fastconv.conv(np.ones((0, 3, 5, 5)), w, padding=1, padding_mode="reflect")
    assert y.shape == (0, 2, 5, 5)
    gx, gw, gb = fastconv.conv_backward(np.ones((0, 3, 5, 5)), w, np.ones((0, 2, 5, 5)),
                                        padding=1, padding_mode="circular")
    assert gx.shape == (0, 3, 5, 5) and not gw.any() and not gb.any()
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5))
    np.testing.assert_array_equal(fastconv.conv(x, w, padding_mode="reflect"),
                                  fastconv.conv(x, w))


# ------------------------------------------------------------------ fastconv.nn
@pytest.mark.parametrize("mode", MODES)
def test_nn_layers_match_torch_modules(mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    for nd, padding in ((1, 2), (2, (1, 2)), (3, "same")):
        layer = getattr(fastconv.nn, f"Conv{nd}d")(2, 4, 3, padding=padding, padding_mode=mode,
                                                    dtype=np.float64, rng=rng)
        assert f"padding_mode={mode}" in repr(layer)
        tm = getattr(torch.nn, f"Conv{nd}d")(2, 4, 3, padding=padding,
                                             padding_mode=mode).double()
        with torch.no_grad():
            tm.weight.copy_(torch.tensor(layer.weight))
            tm.bias.copy_(torch.tensor(layer.bias))
        x = rng.standard_normal((2, 2) + (5,) * nd)
        xt = torch.tensor(x, requires_grad=True)
        yt = tm(xt)
        y = layer.forward(x)
        _close(y, yt.detach().numpy())
        gy = rng.standard_normal(y.shape)
        yt.backward(torch.tensor(gy))
        _close(layer.backward(gy), xt.grad.numpy())
        _close(layer.grads["weight"], tm.weight.grad.numpy())
        _close(layer.grads["bias"], tm.bias.grad.numpy())


def test_nn_transposed_layers_refuse_modes_like_torch():
    with pytest.raises(ValueError, match='Only "zeros" padding mode is supported for '
                                         'ConvTranspose2d'):
        fastconv.nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        fastconv.nn.Conv2d(2, 2, 3, padding_mode="reflection")


# ------------------------------------------------------------------ fastconv.torch
@pytest.mark.parametrize("mode", MODES)
def test_torch_modules_and_convert_take_padding_modes(mode):
    torch = pytest.importorskip("torch")
    fct = pytest.importorskip("fastconv.torch")
    torch.manual_seed(0)
    for nd, padding, stride in ((1, 2, 1), (2, (1, 2), (2, 1)), (3, "same", 1)):
        tm = getattr(torch.nn, f"Conv{nd}d")(2, 4, 3, stride=stride, padding=padding,
                                             padding_mode=mode, groups=2).double()
        fm = getattr(torch.nn, f"Conv{nd}d")(2, 4, 3, stride=stride, padding=padding,
                                             padding_mode=mode, groups=2).double()
        fm.load_state_dict(tm.state_dict())
        report = fct.convert(fm, strategy="direct")
        assert report.swapped == [("", f"Conv{nd}d")] and not report.left
        assert f"padding_mode={mode}" in repr(fm) and "strategy='direct'" in repr(fm)
        x = torch.randn(*((2, 2) + (5,) * nd), dtype=torch.float64, requires_grad=True)
        xr = x.detach().clone().requires_grad_()
        y, y_ref = fm(x), tm(xr)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
        gy = torch.randn_like(y)
        y.backward(gy)
        y_ref.backward(gy)
        torch.testing.assert_close(x.grad, xr.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(fm.weight.grad, tm.weight.grad, rtol=1e-10, atol=1e-12)
        # the functional form takes padding_mode too
        fn = getattr(fct, f"conv{nd}d")
        torch.testing.assert_close(
            fn(x, fm.weight, fm.bias, stride, padding, 1, 2, padding_mode=mode),
            y_ref, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ PyTorch's own definitions
def _torch_padding_mode_definitions():
    """The conv entries with a padding mode from torch's common_nn test definitions.

    common_nn itself needs torch's test-only dependencies (expecttest) to import;
    the loop that adds its padding-mode conv tests only needs torch, so it is
    read from the source and run alone. None if it cannot be found.
    """
    torch = pytest.importorskip("torch")
    path = pathlib.Path(torch.__file__).parent / "testing" / "_internal" / "common_nn.py"
    if not path.exists():
        return None
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.For) and isinstance(node.target, ast.Tuple)
                and any(isinstance(e, ast.Name) and e.id == "padding_mode"
                        for e in node.target.elts)):
            env = {"torch": torch, "new_module_tests": []}
            exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), env)
            return [d for d in env["new_module_tests"]
                    if d["module_name"].startswith("Conv")]
    return None


def test_pytorchs_own_padding_mode_conv_definitions():
    torch = pytest.importorskip("torch")
    fct = pytest.importorskip("fastconv.torch")
    defs = _torch_padding_mode_definitions()
    if not defs:
        pytest.skip("torch's common_nn padding-mode conv definitions not found")
    modes = [d["constructor_args"][8] for d in defs]
    assert sum(m != "zeros" for m in modes) >= 8
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    for d in defs:
        args = d["constructor_args"]
        tm = getattr(torch.nn, d["module_name"])(*args).double()
        fm = getattr(fct, d["module_name"])(*args).double()
        fm.load_state_dict(tm.state_dict())
        x = torch.randn(*d["input_size"], dtype=torch.float64, requires_grad=True)
        y = fm(x)
        assert tuple(y.shape) == d["output_size"], d["desc"]
        y_ref = tm(x)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
        gy = torch.randn_like(y_ref)
        got = torch.autograd.grad(y, (x, fm.weight, fm.bias), gy)
        want = torch.autograd.grad(y_ref, (x, tm.weight, tm.bias), gy)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        assert torch.autograd.gradcheck(fm, (x,), fast_mode=True)
        # the NumPy layer with the same arguments and parameters
        nd = int(d["module_name"][-2])
        layer = getattr(fastconv.nn, d["module_name"])(*args, dtype=np.float64, rng=rng)
        layer.weight[...] = tm.weight.detach().numpy()
        layer.bias[...] = tm.bias.detach().numpy()
        assert nd == len(d["input_size"]) - 2
        _close(layer.forward(x.detach().numpy()), y_ref.detach().numpy())
        _close(layer.backward(gy.numpy()), want[0].numpy())
        _close(layer.grads["weight"], want[1].numpy())
