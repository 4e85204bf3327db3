"""The direct kernels' buffer layouts (``direct_plan.plan``): "flat" row pitch, "seg"
(each output row cut into vectors) and the kw-shifted buffer (one component per
tap column), each checked against the reference for all three ops, float32 and
float64, with odd sizes, non-square kernels, asymmetric padding, dilation,
groups (including channel counts that leave a partial block of four) and
batched or unbatched input. Each case also asserts which layout ran, so a
change of the layout rule cannot leave one of them untested."""
import numpy as np
import pytest
from _helpers import traced_direct_call

import fastconv
import fastconv._strategies
from fastconv import reference
from fastconv._ext import _direct
from fastconv._spec import make_spec
from fastconv._strategies import direct_plan

OPS = ("forward", "grad_input", "grad_weight")

# (x shape, w shape, conv kwargs, {dtype: {op: layout}}); layout of forward and
# grad_input: "flat", "seg" or "shift"; of grad_weight: "flat" or "shift".
CASES = [
    # 32 wide, a 3x7 kernel: padding columns are 6 of 38 -> rows cut into vectors
    # (grad_weight has no "seg": the shifted buffer)
    ((2, 5, 9, 32), (6, 5, 3, 7), dict(padding=(1, 3)),
     {np.float32: dict(forward="seg", grad_input="seg", grad_weight="shift"),
      np.float64: dict(forward="seg", grad_input="seg", grad_weight="shift")}),
    # 12 wide, 5 columns: the kw-shifted buffer saves a quarter of the vectors
    ((2, 3, 8, 12), (5, 3, 3, 5), dict(padding=(1, 2)),
     {np.float32: dict(forward="shift", grad_input="shift", grad_weight="shift"),
      np.float64: dict(forward="shift", grad_input="shift", grad_weight="shift")}),
    # asymmetric padding, dilation, groups with 3 channels each (partial block)
    ((1, 6, 9, 12), (6, 3, 2, 3), dict(padding=((1, 0), (3, 1)), dilation=(1, 2), groups=2),
     {np.float32: dict(forward="shift", grad_input="shift", grad_weight="shift"),
      np.float64: dict(forward="shift", grad_input="shift", grad_weight="shift")}),
    # a wide row (61 of 63 columns are outputs): the flat layout
    ((1, 4, 7, 61), (9, 4, 3, 3), dict(padding=1),
     {np.float32: dict(forward="flat", grad_input="flat", grad_weight="flat"),
      np.float64: dict(forward="flat", grad_input="flat", grad_weight="flat")}),
    # depthwise, one channel per group (quads of vectors), 16 wide, 5x5
    ((2, 3, 6, 16), (3, 1, 5, 5), dict(padding=2, groups=3),
     {np.float32: dict(forward="flat", grad_input="flat", grad_weight="shift"),
      np.float64: dict(forward="seg", grad_input="seg", grad_weight="shift")}),
    # stride: polyphase components, never the shifted buffer
    ((2, 4, 11, 13), (5, 4, 3, 5), dict(padding=(1, 2), stride=2),
     {np.float32: dict(forward="flat", grad_input="poly", grad_weight="flat"),
      np.float64: dict(forward="seg", grad_input="poly", grad_weight="flat")}),
    # 3-D, non-cubic kernel
    ((1, 2, 4, 5, 12), (4, 2, 2, 3, 5), dict(padding=(1, 1, 2)),
     {np.float32: dict(forward="seg", grad_input="seg", grad_weight="shift"),
      np.float64: dict(forward="seg", grad_input="seg", grad_weight="shift")}),
]


def _layout(info):
    if info.path != "wide":
        return info.path
    if info.wshift:
        return "shift"
    return info.vmode or "flat"


def _run(op, spec, x5, w5, gy5, n_threads):
    info = direct_plan.plan(op, spec.input_shape5, spec.weight_shape5, spec.output_shape5,
                            spec.stride3, spec.dilation3, spec.padding3, spec.groups,
                            n_threads, spec.itemsize)
    if op == "forward":
        out = np.empty(spec.output_shape5, spec.dtype)
        _direct.forward(x5, w5, out, info)
    elif op == "grad_input":
        out = np.empty(spec.input_shape5, spec.dtype)
        _direct.grad_input(gy5, w5, out, info)
    else:
        out = np.empty(spec.weight_shape5, spec.dtype)
        _direct.grad_weight(x5, gy5, out, info)
    return out


@pytest.fixture
def no_row_blocks(monkeypatch):
    """The vector layouts as they run without the row blocks (those force "seg"
    for one-channel groups; tests/test_direct_rows.py covers them)."""
    monkeypatch.setattr(direct_plan, "_NO_ROWS4", True)


@pytest.mark.usefixtures("no_row_blocks")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("xs, ws, kw, layouts", CASES)
def test_each_layout_matches_the_reference(xs, ws, kw, layouts, dtype):
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    gy = rng.standard_normal(fastconv.output_shape(xs, ws, **kw))
    spec = make_spec(xs, ws, dtype=dtype, **kw)
    x5 = x.astype(dtype).reshape(spec.input_shape5)
    w5 = w.astype(dtype).reshape(spec.weight_shape5)
    gy5 = gy.astype(dtype).reshape(spec.output_shape5)
    want = {"forward": reference.conv_forward(x, w, **kw),
            "grad_input": reference.conv_grad_input(xs, w, gy, **kw),
            "grad_weight": reference.conv_grad_weight(x, ws, gy, **kw)}
    for op in OPS:
        info = direct_plan.plan(op, spec.input_shape5, spec.weight_shape5,
                                spec.output_shape5, spec.stride3, spec.dilation3,
                                spec.padding3, spec.groups, 1, spec.itemsize)
        if op in layouts[dtype]:   # (one thread: two may cut the output into slabs)
            assert _layout(info) == layouts[dtype][op], op
        for n_threads in (1, 2):
            got = _run(op, spec, x5, w5, gy5, n_threads).reshape(want[op].shape)
            ref = want[op]
            if dtype == np.float64:
                np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10, err_msg=op)
            else:
                np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max(),
                                           err_msg=op)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("batched", [True, False])
def test_layouts_through_the_api(dtype, batched):
    """The seg and shifted layouts behind fastconv's public functions (direct forced)."""
    rng = np.random.default_rng(5)
    xs, ws = ((3, 4, 9, 32) if batched else (4, 9, 32)), (8, 4, 5, 7)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    kw = dict(padding=(2, 3))
    gy = rng.standard_normal(fastconv.output_shape(xs, ws, **kw)).astype(dtype)
    xr, wr, gyr = (a.astype(np.float64) for a in (x, w, gy))
    tol = (dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else None)
    pairs = [(fastconv.conv(x, w, strategy="direct", **kw),
              reference.conv_forward(xr, wr, **kw)),
             (fastconv.grad_input(xs, w, gy, strategy="direct", **kw),
              reference.conv_grad_input(xs, wr, gyr, **kw)),
             (fastconv.grad_weight(x, ws, gy, strategy="direct", **kw),
              reference.conv_grad_weight(xr, ws, gyr, **kw))]
    for got, want in pairs:
        assert got.dtype == dtype and got.shape == want.shape
        t = tol or dict(rtol=1e-4, atol=1e-5 * np.abs(want).max())
        np.testing.assert_allclose(got, want, **t)


def test_every_layout_is_covered():
    seen = {(op, lay) for *_, layouts in CASES for d in layouts.values()
            for op, lay in d.items()}
    for op in ("forward", "grad_input"):
        assert {(op, "flat"), (op, "seg"), (op, "shift")} <= seen
    assert {("grad_weight", "flat"), ("grad_weight", "shift")} <= seen


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("xs, ws, kw, want", [
    ((3, 8, 20, 32), (12, 8, 3, 7), dict(padding=(1, 3)),
     dict(forward="seg", grad_input="seg", grad_weight="shift")),
    ((3, 8, 30, 12), (12, 8, 3, 5), dict(padding=(1, 2)),
     dict(forward="shift", grad_input="shift", grad_weight="shift")),
])
def test_workspace_of_each_layout_is_exact(op, xs, ws, kw, want):
    """tracemalloc: the seg and shifted buffers (and the vector table) are every
    byte a call allocates beyond its inputs and output."""
    info, ws_bytes, extra = traced_direct_call(op, xs, ws, kw, seed=1)
    assert _layout(info) == want[op]
    assert ws_bytes == direct_plan.scratch_bytes(info, 4) > 10_000
    assert abs(extra - ws_bytes) < 16384, (extra, ws_bytes)
