"""fastconv.torch: custom ops, functions, modules, convert(), fallback and strict mode.

Skipped without PyTorch. Problems are tiny and run on one thread (set per test,
restored after): correctness, not speed, is checked here.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from _helpers import REPO_ROOT, strategy_params

import fastconv
from fastconv._spec import make_spec

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


@pytest.mark.parametrize("strategy, case", strategy_params(
    lambda c: make_spec(*c[1:]), GRAD_CASES, ids=[lambda c: f"{c[0]}d"]))
def test_gradcheck_every_strategy(strategy, case):
    nd, xs, ws, stride, padding, dilation, groups = case
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
    orig = fastconv._plan.Plan.__call__
    monkeypatch.setattr(fastconv._plan.Plan, "__call__",
                        lambda self, *a, **k: calls.append(self.op) or orig(self, *a, **k))
    x, w = _t(1, 2, 6, 5), _t(3, 2, 3, 3, grad=True)
    fct.conv2d(x, w, padding=1).sum().backward()
    assert calls == ["forward", "grad_weight"]
    calls.clear()
    x.requires_grad_()
    w.requires_grad_(False)
    fct.conv2d(x, w, padding=1).sum().backward()
    assert calls == ["forward", "grad_input"]


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
    orig = fastconv._plan.Plan.__call__

    def spy(plan, x, w, *a, **k):
        seen["x"], seen["w"] = x, w
        return orig(plan, x, w, *a, **k)

    monkeypatch.setattr(fastconv._plan.Plan, "__call__", spy)
    x, w = _t(2, 3, 6, 6, dtype=torch.float32), _t(4, 3, 3, 3, dtype=torch.float32, grad=True)
    fct.conv2d(x, w)
    assert np.shares_memory(seen["x"], x.numpy())
    assert np.shares_memory(seen["w"], w.detach().numpy())


def test_threads_follow_torch_unless_configured(monkeypatch):
    seen = []
    orig = fastconv._plan.Plan.__call__
    monkeypatch.setattr(fastconv._plan.Plan, "__call__", lambda self, *a, **k: seen.append(
        self.options.threads) or orig(self, *a, **k))
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
    # the same repr plus the strategy of each fastconv module
    assert repr(fm).splitlines() == [line[:-1] + ", strategy='auto')" if "Conv" in line else line
                                     for line in repr(tm).splitlines()]
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
    assert [n for n, _ in report.swapped] == ["0", "2", "3", "4"]  # circular padding too
    assert report.left == []
    assert "4 swapped, 0 left" in str(report)
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
    assert [n for n, _, r in again.left if "already a fastconv module" in r] == ["0", "2", "3",
                                                                                 "4"]
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

    readme = pathlib.Path(REPO_ROOT) / "README.md"
    if not readme.exists():
        pytest.skip("README.md not beside the tests")
    text = readme.read_text()
    section = text[text.index("## Using fastconv from PyTorch"):text.index("### Measured")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    env = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), env)
    assert [n for n, _ in env["report"].swapped] == ["0", "2"]  # reflect padding too
    assert env["y"].shape == (32, 8, 28, 28) and env["conv"].grads["weight"].shape == (8, 1, 3, 3)


# ------------------------------------------------------------------ forward-mode AD
_JVP_CASES = [  # nd, x, w, stride, padding, dilation, groups
    (1, (2, 4, 9), (6, 2, 3), 2, ((1, 2),), 1, 2),
    (2, (1, 2, 5, 6), (3, 2, 3, 2), (1, 2), 1, (2, 1), 1),
    (3, (1, 2, 4, 3, 5), (2, 2, 2, 1, 3), 1, (1, 0, 1), 1, 1),
]


def _torch_conv(nd, x, w, b, stride, padding, dilation, groups):
    """F.conv{nd}d with fastconv's (before, after) pairs padded explicitly."""
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        pad = [v for p in reversed(padding) for v in p]
        x, padding = F.pad(x, pad), 0
    return getattr(F, f"conv{nd}d")(x, w, b, stride, padding, dilation, groups)


@pytest.mark.parametrize("case", _JVP_CASES, ids=["1d", "2d", "3d"])
def test_forward_mode_ad_matches_torch(case):
    """torch.func.jvp, jacfwd and forward_ad through every op: the tangents were zero."""
    nd, xs, ws, stride, padding, dilation, groups = case
    x, w, b = _t(*xs), _t(*ws), _t(ws[0])
    tangents = (torch.randn_like(x), torch.randn_like(w), torch.randn_like(b))
    conv = getattr(fct, f"conv{nd}d")
    y, t = torch.func.jvp(lambda x, w, b: conv(x, w, b, stride, padding, dilation, groups),
                          (x, w, b), tangents)
    y_ref, t_ref = torch.func.jvp(
        lambda x, w, b: _torch_conv(nd, x, w, b, stride, padding, dilation, groups),
        (x, w, b), tangents)
    assert t_ref.abs().max() > 0.1
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(t, t_ref, rtol=1e-10, atol=1e-10)
    jac = torch.func.jacfwd(lambda x: conv(x, w, None, stride, padding, dilation, groups))(x)
    jac_ref = torch.func.jacfwd(
        lambda x: _torch_conv(nd, x, w, None, stride, padding, dilation, groups))(x)
    torch.testing.assert_close(jac, jac_ref, rtol=1e-10, atol=1e-10)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(w, tangents[1])
        out = torch.autograd.forward_ad.unpack_dual(
            conv(x, dual, None, stride, padding, dilation, groups))
    assert out.tangent is not None
    t_w = torch.func.jvp(lambda w: _torch_conv(nd, x, w, None, stride, padding, dilation,
                                               groups), (w,), (tangents[1],))[1]
    torch.testing.assert_close(out.tangent, t_w, rtol=1e-10, atol=1e-10)
    # the transposed convolution against torch's
    tconv = getattr(fct, f"conv_transpose{nd}d")
    if not isinstance(padding, tuple) or not isinstance(padding[0], tuple):
        yt = _t(*y.shape)
        args = (stride, padding, 0, groups, dilation)
        tt = (torch.randn_like(yt), torch.randn_like(w))
        got = torch.func.jvp(lambda a, c: tconv(a, c, None, *args), (yt, w), tt)[1]
        want = torch.func.jvp(lambda a, c: getattr(F, f"conv_transpose{nd}d")(a, c, None, *args),
                              (yt, w), tt)[1]
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_forward_mode_gradcheck_every_op():
    """Forward-mode (and forward-over-reverse) derivatives of the four ops,
    against finite differences."""
    for op, args in _opcheck_samples():
        args = [a.detach().double().requires_grad_() if isinstance(a, torch.Tensor) else a
                for a in args]
        tensors = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]

        def f(*ts, _args=args, _op=op, _idx=tensors):
            full = list(_args)
            for i, t in zip(_idx, ts):
                full[i] = t
            return _op(*full)

        inputs = tuple(args[i] for i in tensors)
        assert torch.autograd.gradcheck(f, inputs, check_forward_ad=True,
                                        check_backward_ad=False, fast_mode=True), op
        assert torch.autograd.gradgradcheck(f, inputs, check_fwd_over_rev=True,
                                            check_rev_over_rev=False, check_undefined_grad=False,
                                            fast_mode=True), op


# ------------------------------------------------------------------ argument checks
def test_same_padding_with_stride_refused_like_torch():
    x, w = _t(1, 2, 9, 9), _t(4, 2, 3, 3)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        fct.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        fct.conv1d(x[:, :, 0], w[:, :, 0], stride=(2,), padding="same")
    assert fct.conv2d(x, w, stride=1, padding="same").shape == (1, 4, 9, 9)


def test_argument_types_like_torch():
    x, w = _t(1, 2, 7, 7), _t(4, 2, 3, 3)
    ref = F.conv2d(x, w, stride=2)
    for stride in (np.int64(2), torch.tensor(2), (np.int64(2), torch.tensor(2)), [2]):
        torch.testing.assert_close(fct.conv2d(x, w, stride=stride), ref, rtol=1e-12, atol=1e-12)
    assert fct.conv2d(x, w, groups=np.int64(1)).shape == (1, 4, 5, 5)
    with pytest.raises(TypeError, match="groups must be an int, got bool"):
        fct.conv2d(x, w, groups=True)
    with pytest.raises(TypeError, match="stride must be an int"):
        fct.conv2d(x, w, stride=2.0)
    # plain arguments' geometry is kept for the next call, and never serves the
    # equal (and equally hashed) floats and bools that torch refuses
    torch.testing.assert_close(fct.conv2d(x, w, stride=(2, 2), groups=1), ref, rtol=1e-12,
                               atol=1e-12)
    for bad in (dict(stride=(2.0, 2)), dict(stride=(2, 2), groups=True),
                dict(stride=(2, 2), dilation=(True, 1))):
        with pytest.raises(TypeError, match="must be an int"):
            fct.conv2d(x, w, **bad)
    with pytest.raises(ValueError, match="weight must have 3 dimensions .* 4-D weight"):
        fct.conv1d(x[0], w)
    with pytest.raises(ValueError, match="expected a 3-D .unbatched. or 4-D .batched. input"):
        fct.conv2d(x[0, 0, 0], w)
    with pytest.raises(TypeError, match="groups must be an int"):
        fct.conv_transpose2d(x, w.transpose(0, 1), groups=True)


def test_compiled_call_with_zero_stride_is_a_value_error():
    torch._dynamo.reset()
    x, w = _t(1, 2, 7, 7), _t(4, 2, 3, 3)
    f = torch.compile(lambda x, w: fct.conv2d(x, w, stride=0), backend="aot_eager")
    with pytest.raises(ValueError, match="stride must be >= 1"):
        f(x, w)
    # the op itself, traced: its fake implementation checks too
    g = torch.compile(lambda x, w: OPS.conv(x, w, None, [0, 1], [0, 0, 0, 0], [1, 1], 1, "auto"),
                      backend="aot_eager")
    with pytest.raises(Exception, match="stride must be >= 1") as info:
        g(x, w)
    assert "ZeroDivisionError" not in repr(info.value)


_THREADS_SCRIPT = """
import torch, fastconv.torch as fct
torch.set_num_threads(100)
x, w = torch.randn(1, 2, 6, 6, requires_grad=True), torch.randn(3, 2, 3, 3)
y = fct.conv2d(x, w, padding=1)
y.sum().backward()
print("OK", tuple(y.shape), tuple(x.grad.shape))
"""


def test_torch_thread_count_above_fastconv_limit_is_clamped(tmp_path):
    """torch.set_num_threads(100) on a small machine: fastconv.torch calls work (a child
    process, so the thread setting does not leak into the other tests)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(fastconv.__file__))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("FASTCONV_CONFIG", None)
    env.pop("OMP_NUM_THREADS", None)
    r = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "OK (1, 3, 6, 6) (1, 2, 6, 6)" in r.stdout


def test_threads_clamped_to_what_fastconv_accepts(monkeypatch):
    seen = []
    orig = fastconv._plan.Plan.__call__
    monkeypatch.setattr(fastconv._plan.Plan, "__call__", lambda self, *a, **k: seen.append(
        self.options.threads) or orig(self, *a, **k))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 10**6)
    with fastconv.config(n_threads=None):
        fct.conv2d(_t(1, 2, 5, 5), _t(2, 2, 3, 3))
    from fastconv._resources import max_threads
    assert seen == [max_threads()]


# ------------------------------------------------------------------ drop-in details
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_jit_script_runs_fastconvs_op():
    mods = [fct.Conv2d(2, 4, 3), fct.Conv1d(2, 3, 4, padding="same", padding_mode="reflect"),
            fct.Conv3d(2, 2, 2, padding=(1, 0, 1), padding_mode="circular", groups=2),
            fct.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1)]
    for m in mods:
        m.double()
        scripted = torch.jit.script(m)
        assert "fastconv::conv" in str(scripted.inlined_graph)
        x = _t(*([2, 2] + [6] * (m.weight.dim() - 2)))
        torch.testing.assert_close(scripted(x), m(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(scripted(x[0]), m(x[0]), rtol=1e-12, atol=1e-12)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        buf.seek(0)
        torch.testing.assert_close(torch.jit.load(buf)(x), m(x), rtol=1e-12, atol=1e-12)
        # torch's kernels for what fastconv does not compute, as unscripted
        m16 = m.to(torch.bfloat16)
        assert torch.jit.script(m16)(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_autocast_returns_what_torch_returns():
    x = _t(2, 3, 8, 8, dtype=torch.float32)
    for tm, fm in ((torch.nn.Conv2d(3, 4, 3), fct.Conv2d(3, 4, 3)),
                   (torch.nn.ConvTranspose2d(3, 4, 3), fct.ConvTranspose2d(3, 4, 3))):
        fm.load_state_dict(tm.state_dict())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            want, got = tm(x), fm(x)
        assert got.dtype == want.dtype == torch.bfloat16
        torch.testing.assert_close(got, want)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float64 is not cast, as in torch
        assert fct.conv2d(x.double(), _t(4, 3, 3, 3)).dtype == torch.float64


@pytest.mark.parametrize("nd", [2, 3])
def test_channels_last_in_channels_last_out(nd):
    fmt = torch.channels_last if nd == 2 else torch.channels_last_3d
    x = _t(*([2, 3] + [6] * nd)).contiguous(memory_format=fmt).requires_grad_()
    xr = x.detach().clone().requires_grad_()
    for cls, tcls in (((fct.Conv2d, torch.nn.Conv2d), (fct.Conv3d, torch.nn.Conv3d))[nd - 2],
                      ((fct.ConvTranspose2d, torch.nn.ConvTranspose2d),
                       (fct.ConvTranspose3d, torch.nn.ConvTranspose3d))[nd - 2]):
        tm = tcls(3, 4, 3, padding=1).double()
        fm = cls(3, 4, 3, padding=1).double()
        fm.load_state_dict(tm.state_dict())
        y, y_ref = fm(x), tm(xr)
        # (torch's float64 3-D kernels return the default layout; its float32 ones,
        # and all its 2-D ones, channels_last: fastconv always does)
        assert y.is_contiguous(memory_format=fmt)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
        g, = torch.autograd.grad(y.square().sum(), x)
        g_ref, = torch.autograd.grad(y_ref.square().sum(), xr)
        assert g.is_contiguous(memory_format=fmt)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    # a contiguous input stays contiguous, without a copy of the output
    y = fct.conv2d(_t(1, 3, 5, 5), _t(4, 3, 3, 3)) if nd == 2 else None
    assert y is None or y.is_contiguous()


def test_print_after_convert_shows_swapped_layers():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Conv2d(2, 2, 3).half())
    fct.convert(model, strategy="direct")
    lines = repr(model).splitlines()
    assert "strategy='direct'" in lines[1] and "strategy" not in lines[2]
