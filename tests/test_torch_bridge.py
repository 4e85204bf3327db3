"""fastconv.torch: custom ops, functions, modules, convert(), fallback and strict mode.

Skipped without PyTorch. Problems are tiny and run on one thread (set per test,
restored after): correctness, not speed, is checked here.
"""
from __future__ import annotations

import io

import numpy as np
import pytest

import fastconv
from fastconv import _strategies
from fastconv._spec import make_spec

from conftest import STRATEGIES

torch = pytest.importorskip("torch")
fct = pytest.importorskip("fastconv.torch")
F = torch.nn.functional
OPS = torch.ops.fastconv


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        with fastconv.config(n_threads=1):
            yield
    finally:
        torch.set_num_threads(n)


def _t(*shape, dtype=torch.float64, grad=False):
    return torch.randn(*shape, dtype=dtype).requires_grad_(grad)


def _skip_unsupported(strategy, spec):
    for op in ("forward", "grad_input", "grad_weight"):
        reason = _strategies.get(strategy).supports(spec, op)
        if reason:
            pytest.skip(f"{strategy}: {reason}")


# ------------------------------------------------------------------ opcheck
def _opcheck_samples():
    """(op, args) covering 1-D/2-D/3-D, bias or not, stride, asymmetric padding,
    dilation, groups, output padding, float32 and float64."""
    x2, w2 = _t(2, 4, 7, 6, dtype=torch.float32), _t(6, 2, 3, 2, dtype=torch.float32)
    b6 = _t(6, dtype=torch.float32)
    g2 = [2, 1], [1, 0, 0, 2], [1, 2], 2  # stride, padding pairs, dilation, groups
    y2 = OPS.conv(x2, w2, None, *g2, "auto")
    x1, w1 = _t(1, 3, 9), _t(2, 3, 4)
    x3, w3 = _t(1, 2, 4, 3, 5), _t(2, 1, 2, 2, 3)
    xt, wt = _t(2, 4, 3, 4), _t(4, 3, 3, 2)
    return [
        (OPS.conv, (x2.requires_grad_(), w2.requires_grad_(), b6.requires_grad_(), *g2,
                    "auto")),
        (OPS.conv, (x1.requires_grad_(), w1.requires_grad_(), None, [2], [1, 2], [1], 1, "auto")),
        (OPS.conv, (x3, w3.requires_grad_(), None, [1, 2, 1], [0, 0, 1, 1, 2, 0], [1, 1, 1], 2,
                    "auto")),
        (OPS.conv_grad_input, (y2.detach().requires_grad_(), w2.detach().requires_grad_(),
                               list(x2.shape), *g2, "auto")),
        (OPS.conv_grad_weight, (x2.detach().requires_grad_(), y2.detach().requires_grad_(),
                                list(w2.shape), *g2, "auto")),
        (OPS.conv_transpose, (xt.requires_grad_(), wt.requires_grad_(),
                              _t(6, grad=True), [2, 3], [1, 1, 0, 2], [1, 2], 2, [1, 1],
                              "auto")),
        (OPS.conv_transpose, (_t(1, 2, 5, grad=True), _t(2, 3, 3, grad=True), None, [1], [1, 1],
                              [1], 1, [2], "auto")),
    ]


def test_opcheck_every_op():
    samples = _opcheck_samples()
    assert {op for op, _ in samples} == {OPS.conv, OPS.conv_grad_input, OPS.conv_grad_weight,
                                         OPS.conv_transpose}
    for op, args in samples:
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, (op, result)


# ------------------------------------------------------------------ gradcheck
GRAD_CASES = [  # nd, x shape, w shape, stride, padding, dilation, groups
    (1, (2, 2, 7), (2, 1, 3), 2, ((1, 2),), 1, 2),
    (2, (1, 2, 5, 4), (3, 2, 2, 3), (1, 2), ((1, 0), (2, 1)), (2, 1), 1),
    (3, (1, 1, 3, 4, 3), (2, 1, 2, 1, 2), 1, 1, (1, 2, 1), 1),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gradcheck_every_strategy(strategy, case):
    nd, xs, ws, stride, padding, dilation, groups = case
    _skip_unsupported(strategy, make_spec(xs, ws, stride, padding, dilation, groups))
    x, w, b = _t(*xs, grad=True), _t(*ws, grad=True), _t(ws[0], grad=True)
    conv = getattr(fct, f"conv{nd}d")
    assert torch.autograd.gradcheck(
        lambda x, w, b: conv(x, w, b, stride, padding, dilation, groups, strategy=strategy),
        (x, w, b), fast_mode=True)
    # transposed: roles swapped (weight (C_in, C_out/g, *k) = the conv weight read back)
    y = conv(x, w, None, stride, padding, dilation, groups).detach().requires_grad_()
    tconv = getattr(fct, f"conv_transpose{nd}d")
    bt = _t(xs[1], grad=True)
    assert torch.autograd.gradcheck(
        lambda y, w, b: tconv(y, w, b, stride, padding, 0, groups, dilation, strategy=strategy),
        (y, w, bt), fast_mode=True)


def test_double_backward():
    x, w = _t(1, 2, 5, 4, grad=True), _t(3, 2, 2, 2, grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w: fct.conv2d(x, w, None, 1, 1), (x, w),
                                        fast_mode=True)
    assert torch.autograd.gradgradcheck(
        lambda x, w: fct.conv_transpose2d(x, w.transpose(0, 1), None, 2, 1, 1), (x, w),
        fast_mode=True)


def test_backward_computes_only_needed(monkeypatch):
    calls = []
    for name in ("grad_input", "grad_weight"):
        orig = getattr(fastconv._api, name)
        monkeypatch.setattr(fastconv._api, name,
                            lambda *a, _o=orig, _n=name, **k: calls.append(_n) or _o(*a, **k))
    x, w = _t(1, 2, 6, 5), _t(3, 2, 3, 3, grad=True)
    fct.conv2d(x, w, padding=1).sum().backward()
    assert calls == ["grad_weight"]
    calls.clear()
    x.requires_grad_()
    w.requires_grad_(False)
    fct.conv2d(x, w, padding=1).sum().backward()
    assert calls == ["grad_input"]


# ------------------------------------------------------------------ functions
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("padding", [0, 1, "same", "valid", (2, 0)])
def test_functions_match_torch(padding):
    x, w, b = _t(2, 4, 8, 7), _t(6, 2, 3, 2), _t(6)
    np.testing.assert_allclose(fct.conv2d(x, w, b, 1, padding, 1, 2),
                               F.conv2d(x, w, b, 1, padding, 1, 2), rtol=1e-12, atol=1e-12)


def test_unbatched_and_transpose_match_torch():
    xu, w = _t(3, 10), _t(2, 3, 4)
    np.testing.assert_allclose(fct.conv1d(xu, w, None, 2, 1), F.conv1d(xu, w, None, 2, 1),
                               rtol=1e-12, atol=1e-12)
    x, wt, b = _t(2, 4, 3, 5, 2), _t(4, 1, 2, 3, 2), _t(2)
    np.testing.assert_allclose(fct.conv_transpose3d(x, wt, b, (2, 1, 2), 1, (1, 0, 0), 2),
                               F.conv_transpose3d(x, wt, b, (2, 1, 2), 1, (1, 0, 0), 2),
                               rtol=1e-12, atol=1e-12)


def test_no_copy_of_contiguous_cpu_tensors(monkeypatch):
    seen = {}
    orig = fastconv._api.conv

    def spy(x, w, *a, **k):
        seen["x"], seen["w"] = x, w
        return orig(x, w, *a, **k)

    monkeypatch.setattr(fastconv._api, "conv", spy)
    x, w = _t(2, 3, 6, 6, dtype=torch.float32), _t(4, 3, 3, 3, dtype=torch.float32, grad=True)
    fct.conv2d(x, w)
    assert np.shares_memory(seen["x"], x.numpy())
    assert np.shares_memory(seen["w"], w.detach().numpy())


def test_threads_follow_torch_unless_configured(monkeypatch):
    seen = []
    orig = fastconv._api.conv
    monkeypatch.setattr(fastconv._api, "conv", lambda *a, **k: seen.append(
        fastconv.get_config().threads) or orig(*a, **k))
    x, w = _t(1, 2, 5, 5), _t(2, 2, 3, 3)
    with fastconv.config(n_threads=None):
        for n in (1, 2):
            torch.set_num_threads(n)
            fct.conv2d(x, w)
        with fastconv.config(n_threads=3):
            fct.conv2d(x, w)
    assert seen == [1, 2, 3]


# ------------------------------------------------------------------ fallback, strict
def test_fallback_and_strict_mode():
    x, w = _t(1, 2, 6, 6, dtype=torch.bfloat16), _t(3, 2, 3, 3, dtype=torch.bfloat16)
    y = fct.conv2d(x, w, padding=((1, 0), (0, 1)))  # torch's kernel (bfloat16)
    ref = F.conv2d(F.pad(x, [0, 1, 1, 0]), w)
    assert y.dtype == torch.bfloat16 and torch.equal(y, ref)
    m = fct.Conv2d(2, 3, 3).to(torch.bfloat16)
    assert m(x).dtype == torch.bfloat16
    with fct.strict():
        assert fct.is_strict()
        with pytest.raises(fct.UnsupportedTensorError, match="bfloat16"):
            m(x)
        with pytest.raises(fct.UnsupportedTensorError, match="mixed dtypes"):
            fct.conv2d(_t(1, 2, 5, 5), _t(3, 2, 3, 3, dtype=torch.float32))
    assert not fct.is_strict()


# ------------------------------------------------------------------ modules
def _model(cls_conv, cls_t):
    torch.manual_seed(1)
    return torch.nn.Sequential(
        cls_conv[0](2, 4, 3, padding=1), torch.nn.ReLU(),
        cls_conv[1](4, 4, (3, 2), stride=(2, 1), padding=(1, 0), groups=2), torch.nn.Tanh(),
        cls_t(4, 3, 3, stride=2, padding=1, output_padding=1))


def test_checkpoint_round_trip(tmp_path):
    tm = _model((torch.nn.Conv2d, torch.nn.Conv2d), torch.nn.ConvTranspose2d)
    fm = _model((fct.Conv2d, fct.Conv2d), fct.ConvTranspose2d)
    assert repr(fm) == repr(tm)
    assert [(k, v.shape) for k, v in fm.state_dict().items()] == \
        [(k, v.shape) for k, v in tm.state_dict().items()]
    torch.save(tm.state_dict(), tmp_path / "torch.pt")
    for p in fm.parameters():
        torch.nn.init.zeros_(p)
    fm.load_state_dict(torch.load(tmp_path / "torch.pt"))
    x = _t(2, 2, 9, 8, dtype=torch.float32)
    torch.testing.assert_close(fm(x), tm(x), rtol=1e-4, atol=1e-5)
    buf = io.BytesIO()
    torch.save(fm, buf)  # the whole module pickles by its public class name
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert type(again[0]) is fct.Conv2d and type(again[4]) is fct.ConvTranspose2d
    torch.testing.assert_close(again(x), fm(x))
    assert "strategy='fft'" in repr(fct.Conv1d(1, 1, 3, strategy="fft"))


def test_convert_matches_outputs_and_gradients():
    torch.manual_seed(2)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(3, 4, 5, padding=2), torch.nn.ReLU(),
        torch.nn.Conv1d(4, 4, 3, padding=1, padding_mode="circular"),
        torch.nn.ConvTranspose1d(4, 2, 4, stride=2, groups=2),
        torch.nn.Conv1d(2, 2, 3, bias=False))
    ref = [p.detach().clone() for p in model.parameters()]
    x = _t(2, 3, 16, dtype=torch.float32)
    y0 = model(x)
    y0.square().sum().backward()
    g0 = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    params_before = list(model.parameters())
    report = fct.convert(model, strategy="fft")
    assert [n for n, _ in report.swapped] == ["0", "3", "4"]
    assert report.left == [("2", "Conv1d", "padding_mode='circular' (fastconv pads with zeros "
                                          "only)")]
    assert "3 swapped, 1 left" in str(report)
    assert type(model[0]) is fct.Conv1d and model[0].strategy == "fft"
    assert all(a is b for a, b in zip(model.parameters(), params_before))  # optimizers keep working
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref))
    y1 = model(x)
    y1.square().sum().backward()
    torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-5)
    for a, b in zip(model.parameters(), g0):
        torch.testing.assert_close(a.grad, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    again = fct.convert(model)
    assert not again.swapped
    assert [n for n, _, r in again.left if "already a fastconv module" in r] == ["0", "3", "4"]
    half = torch.nn.Conv2d(1, 1, 3).to(torch.float16)
    assert "float16" in fct.convert(half).left[0][2]
    with pytest.raises(TypeError, match="Module"):
        fct.convert(object())


# ------------------------------------------------------------------ compile, export
def test_compile_and_export_without_graph_breaks():
    """One small model: fullgraph=True fails on any graph break. The aot_eager
    backend traces through dynamo and AOT autograd (fake tensors, the autograd
    registrations) without inductor's C++ compile, which takes minutes here."""
    model = _model((fct.Conv2d, fct.Conv2d), fct.ConvTranspose2d).double()
    x = _t(2, 2, 9, 8, grad=True)
    y = model(x)
    gx, = torch.autograd.grad(y.square().sum(), x)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    xc = x.detach().clone().requires_grad_()
    yc = compiled(xc)
    gxc, = torch.autograd.grad(yc.square().sum(), xc)
    torch.testing.assert_close(yc, y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gxc, gx, rtol=1e-12, atol=1e-12)
    ep = torch.export.export(model, (x.detach(),))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"fastconv.conv.default", "fastconv.conv_transpose.default"} <= targets
    assert not any("convolution" in t for t in targets)
    torch.testing.assert_close(ep.module()(x.detach()), y.detach(), rtol=1e-12, atol=1e-12)


def test_readme_pytorch_section_runs():
    import pathlib
    import re

    readme = pathlib.Path(__file__).parent.parent / "README.md"
    if not readme.exists():
        pytest.skip("README.md not beside the tests")
    text = readme.read_text()
    section = text[text.index("## Using fastconv from PyTorch"):text.index("### Measured")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    env = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), env)
    assert [n for n, _ in env["report"].swapped] == ["0"]
    assert env["y"].shape == (32, 8, 28, 28) and env["conv"].grads["weight"].shape == (8, 1, 3, 3)
