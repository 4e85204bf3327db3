"""Strategies that pad inside their kernels (im2col, fft): the zero border.

The input reaches these strategies unpadded, so every border case is the
kernel's own: padding wider than the kernel, asymmetric, on one axis only,
with stride, dilation and groups, 1x1 kernels with padding, 1-D and 3-D.
Each case runs all three ops against the float64 oracle, plus the kernel
entry points' own checks: unfold/fold and pack/unpack tested as adjoint
pairs, wrong shapes refused before any write.
"""
from __future__ import annotations

import numpy as np
import pytest
from _helpers import assert_close, oracle, random_array

import fastconv
import fastconv.grad as fgrad
from fastconv._ext import _im2col
from fastconv._spec import make_spec

HALO_CASES = {
    "pad_wider_than_kernel": ((2, 3, 6, 5), (4, 3, 3, 2), dict(padding=(4, 5))),
    "asymmetric": ((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=((2, 0), (0, 3)))),
    "one_axis": ((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=((0, 0), (2, 2)))),
    "1d": ((3, 2, 11), (3, 2, 4), dict(padding=((3, 1),))),
    "3d": ((2, 2, 5, 4, 6), (3, 2, 2, 3, 3), dict(padding=((1, 2), (0, 1), (2, 2)))),
    "dilation": ((2, 3, 9, 8), (4, 3, 3, 2), dict(padding=(3, 1), dilation=(2, 3))),
    "stride": ((2, 3, 9, 10), (4, 3, 3, 3), dict(padding=((2, 1), (1, 3)), stride=(2, 3))),
    "groups": ((2, 6, 7, 7), (4, 3, 3, 3), dict(padding=2, groups=2)),
    "depthwise_stride": ((2, 4, 9, 7), (4, 1, 3, 3), dict(padding=(1, 2), groups=4, stride=2)),
    "pointwise_pad": ((2, 5, 6, 4), (3, 5, 1, 1), dict(padding=((1, 2), (0, 1)))),
    # padding only after: the grids differ although nothing is padded before
    "pointwise_pad_after": ((1, 1, 1), (1, 1, 1), dict(padding=((0, 1),))),
    "pointwise_pad_stride": ((2, 5, 7, 6), (3, 5, 1, 1), dict(padding=2, stride=(2, 3))),
    "all_border": ((1, 2, 2, 3), (2, 2, 2, 2), dict(padding=5, stride=3)),
}


def _run(strategy, op, x, w, gy, kw):
    nd = w.ndim - 2
    if op == "forward":
        return fastconv.conv(x, w, strategy=strategy, **kw)
    if op == "grad_input":
        return getattr(fgrad, f"conv{nd}d_input")(x.shape, w, gy, strategy=strategy, **kw)
    return getattr(fgrad, f"conv{nd}d_weight")(x, w.shape, gy, strategy=strategy, **kw)


@pytest.mark.parametrize("strategy", ["im2col", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(HALO_CASES))
def test_halo_matches_reference(rng, strategy, dtype, case):
    x_shape, w_shape, kw = HALO_CASES[case]
    spec = make_spec(x_shape, w_shape, kw.get("stride", 1), kw.get("padding", 0),
                     kw.get("dilation", 1), kw.get("groups", 1), dtype=dtype)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    gy = random_array(rng, spec.output_shape, dtype)
    for threads in (1, 2):
        with fastconv.config(n_threads=threads):
            for op in ("forward", "grad_input", "grad_weight"):
                got = _run(strategy, op, x, w, gy, kw)
                assert_close(got, oracle(op, x, w, gy, kw), dtype=dtype, strategy=strategy,
                             spec=spec, what=f"{case} {op} threads={threads}")
            gx, gw, _ = fastconv.conv_backward(x, w, gy, strategy=strategy, **kw)
            assert_close(gx, oracle("grad_input", x, w, gy, kw), dtype=dtype,
                         strategy=strategy, spec=spec, what=f"{case} backward gx")
            assert_close(gw, oracle("grad_weight", x, w, gy, kw), dtype=dtype,
                         strategy=strategy, spec=spec, what=f"{case} backward gw")


# ---------------------------------------------------------------------------
# im2col kernel entry points
# ---------------------------------------------------------------------------
UNFOLD_CASES = [
    # (C, D, H, W), kernel, stride, dilation, padding (before, after)
    ((2, 1, 5, 6), (1, 3, 2), (1, 2, 1), (1, 1, 3), ((0, 0), (2, 1), (0, 4))),
    ((3, 4, 3, 5), (2, 2, 3), (2, 1, 3), (2, 1, 1), ((1, 1), (3, 0), (2, 2))),
    ((1, 1, 1, 7), (1, 1, 1), (1, 1, 2), (1, 1, 1), ((0, 0), (0, 0), (3, 3))),
]


def _out3(in3, k3, s3, d3, p3):
    return tuple((n + b + a - (d * (k - 1) + 1)) // s + 1
                 for n, k, s, d, (b, a) in zip(in3, k3, s3, d3, p3))


@pytest.mark.parametrize("case", range(len(UNFOLD_CASES)))
def test_unfold_fold_are_adjoint(rng, case):
    """<unfold(x), c> == <x, fold(c)> in float64, for random x and c."""
    chw, k3, s3, d3, p3 = UNFOLD_CASES[case]
    o3 = _out3(chw[1:], k3, s3, d3, p3)
    x = rng.standard_normal((1,) + chw)
    c = rng.standard_normal((chw[0] * int(np.prod(k3)), int(np.prod(o3))))
    cols = np.full_like(c, np.nan)  # every element must be written
    _im2col._unfold_for_tests(x, cols, k3, o3, s3, d3, p3)
    gx = np.full_like(x, np.nan)
    _im2col._fold_for_tests(c, gx, k3, o3, s3, d3, p3)
    lhs, rhs = float(np.vdot(cols, c)), float(np.vdot(x, gx))
    assert np.isfinite(lhs) and np.isfinite(rhs)
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    # and the unfold is the zero-padded gather it claims to be
    xp = np.pad(x[0], ((0, 0),) + p3)
    k = 0
    od, oh, ow = o3
    for ci in range(chw[0]):
        for kd in range(k3[0]):
            for kh in range(k3[1]):
                for kw_ in range(k3[2]):
                    patch = xp[ci, kd * d3[0]::s3[0], kh * d3[1]::s3[1], kw_ * d3[2]::s3[2]]
                    np.testing.assert_array_equal(cols[k], patch[:od, :oh, :ow].ravel())
                    k += 1


def _call(op, shapes, **over):
    """Call the im2col kernel ``op`` on float32 zeros of ``shapes`` (x/gy, w/gy, out)."""
    a, b, out = (np.zeros(s, np.float32) for s in shapes)
    args = dict(work=np.zeros(1 << 16, np.float32), stride=(1, 1, 1), dilation=(1, 1, 1),
                padding=((0, 0), (0, 0), (1, 1)), groups=1, rows=1,
                mode=_im2col.ParallelMode.OMP, n_threads=2)
    args.update(over)
    fn = getattr(_im2col, op)
    return fn(a, b, out, args["work"], args["stride"], args["dilation"], args["padding"],
              args["groups"], args["rows"], args["mode"], args["n_threads"])


@pytest.mark.parametrize("op, shapes", [
    # forward: output one column too wide
    ("forward", [(2, 3, 1, 4, 6), (5, 3, 1, 3, 3), (2, 5, 1, 2, 7)]),
    # forward: output batch larger than the input's
    ("forward", [(2, 3, 1, 4, 6), (5, 3, 1, 3, 3), (3, 5, 1, 2, 6)]),
    # forward: more output channels than the weight has
    ("forward", [(2, 3, 1, 4, 6), (5, 3, 1, 3, 3), (2, 9, 1, 2, 6)]),
    # grad_input: grad_x larger than the input grid
    ("grad_input", [(2, 5, 1, 2, 6), (5, 3, 1, 3, 3), (2, 3, 1, 9, 6)]),
    # grad_weight: weight with a wrong channel count
    ("grad_weight", [(2, 3, 1, 4, 6), (2, 5, 1, 2, 6), (5, 4, 1, 3, 3)]),
])
def test_kernel_entry_refuses_wrong_shapes(op, shapes):
    with pytest.raises(ValueError):
        _call(op, shapes)


def test_kernel_entry_accepts_right_shapes_and_checks_work():
    shapes = [(2, 3, 1, 4, 6), (5, 3, 1, 3, 3), (2, 5, 1, 2, 6)]
    _call("forward", shapes)
    with pytest.raises(ValueError, match="workspace"):
        _call("forward", shapes, work=np.zeros(3, np.float32))
    with pytest.raises(ValueError):
        _call("forward", shapes, padding=((0, 0), (0, 0), (-1, 3)))
    with pytest.raises(ValueError):
        _call("forward", shapes, rows=0)
