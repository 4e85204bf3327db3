"""Every strategy x op x ndim x dtype against the naive reference, on a designed
set of parameter cases (small, non-square, odd sizes; each parameter kind covered).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from _helpers import (
    DTYPES,
    NDIMS,
    OPS,
    assert_close,
    naive_loop_forward,
    random_array,
    strategies_for,
    strategy_params,
    upcast,
)

import fastconv
import fastconv.grad as fgrad
from fastconv import reference as ref


@dataclass
class Case:
    """One parameter set; 3-tuples are per axis and cut to the first ``ndim``."""

    name: str
    in_sp: tuple = (7, 6, 5)
    k: tuple = (3, 2, 3)
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    cin: int = 3
    cout: int = 4
    batch: int | None = 2          # None: unbatched input
    flip: bool = False
    bias: bool = False
    extra: dict = field(default_factory=dict)

    def args(self, ndim):
        def cut(v):
            if isinstance(v, tuple):
                return tuple(v[:ndim])
            return v
        x_shape = ((self.batch,) if self.batch is not None else ()) + (self.cin,) + cut(self.in_sp)
        w_shape = (self.cout, self.cin // self.groups) + cut(self.k)
        kw = dict(stride=cut(self.stride), padding=cut(self.padding),
                  dilation=cut(self.dilation), groups=self.groups)
        return x_shape, w_shape, kw


CASES = [
    Case("basic", bias=True),
    Case("stride_int", in_sp=(9, 8, 7), stride=2),
    Case("stride_axis", in_sp=(9, 8, 7), stride=(3, 1, 2)),
    Case("stride_gt_kernel", in_sp=(10, 9, 8), k=(2, 1, 2), stride=(3, 4, 3)),
    Case("pad_int", in_sp=(5, 6, 4), k=(3, 4, 2), padding=1),
    Case("pad_axis", in_sp=(5, 6, 4), k=(3, 4, 2), padding=(2, 0, 1)),
    Case("pad_pairs", in_sp=(5, 6, 4), k=(3, 4, 2), padding=((0, 2), (3, 1), (1, 0))),
    Case("pad_pairs_stride", in_sp=(8, 7, 6), k=(3, 2, 3), padding=((2, 0), (0, 1), (1, 3)),
         stride=(2, 3, 2)),
    Case("valid", padding="valid"),
    Case("same_odd", in_sp=(7, 6, 5), k=(3, 5, 3), padding="same"),
    Case("same_even", in_sp=(7, 6, 5), k=(2, 4, 2), padding="same"),
    Case("same_dilated", in_sp=(9, 8, 7), k=(2, 3, 2), padding="same", dilation=(2, 1, 3)),
    Case("full", in_sp=(4, 5, 3), k=(3, 2, 4), padding="full"),
    Case("full_stride_dil", in_sp=(6, 5, 4), k=(3, 2, 2), padding="full", stride=2, dilation=2),
    Case("dilation_int", in_sp=(9, 8, 7), dilation=2),
    Case("dilation_axis", in_sp=(9, 8, 7), k=(2, 3, 2), dilation=(1, 3, 2)),
    Case("groups", cin=4, cout=6, groups=2, bias=True),
    Case("depthwise", cin=3, cout=3, groups=3, padding=1),
    Case("depthwise_mult", cin=2, cout=4, groups=2, stride=2, padding=1),
    Case("flip", flip=True, padding=((0, 2), (1, 0), (2, 1)), stride=(2, 1, 3)),
    Case("flip_groups_dil", in_sp=(9, 8, 7), flip=True, cin=3, cout=6, groups=3,
         dilation=2, padding=2),
    Case("unbatched", batch=None, bias=True),
    Case("unbatched_combo", batch=None, in_sp=(10, 9, 8), stride=2, dilation=(2, 1, 2),
         padding=((1, 0), (2, 2), (0, 3)), cin=4, cout=2, groups=2, flip=True),
    Case("batch1", batch=1, in_sp=(6, 7, 5)),
    Case("batch3_bias", batch=3, in_sp=(5, 4, 6), k=(2, 3, 1), bias=True),
    Case("pointwise", k=(1, 1, 1), stride=2, cin=5, cout=3),
    Case("kernel_covers_input", in_sp=(4, 3, 5), k=(4, 3, 5)),
    Case("one_channel", cin=1, cout=1, in_sp=(11, 9, 6), k=(5, 4, 3)),
    # 3-tap kernels at stride 1: the problems the winograd strategy runs
    Case("k3_pad", in_sp=(9, 7, 6), k=(3, 3, 3), padding=1, bias=True),
    Case("k3_pad_pairs", in_sp=(6, 9, 5), k=(3, 3, 3), padding=((0, 3), (2, 0), (1, 2))),
    Case("k3_groups_flip", in_sp=(7, 6, 5), k=(3, 3, 3), padding="same", cin=4, cout=6,
         groups=2, flip=True),
    Case("k3_depthwise_unbatched", batch=None, in_sp=(8, 5, 7), k=(3, 1, 3), cin=3, cout=3,
         groups=3, padding="full"),
]


def _spec(case, ndim):
    x_shape, w_shape, kw = case.args(ndim)
    return fastconv.make_spec(x_shape, w_shape, flip=case.flip, **kw)


def _name(case):
    return case.name


def _nd(ndim):
    return f"{ndim}d"


def _run(op, ndim, case, dtype, strategy, rng):
    """Run ``op`` with fastconv and the reference.

    Returns [(name, got, want, spec, operands)].
    """
    x_shape, w_shape, kw = case.args(ndim)
    spec = fastconv.make_spec(x_shape, w_shape, flip=case.flip, dtype=dtype, **kw)
    x = random_array(rng, x_shape, dtype)
    w = random_array(rng, w_shape, dtype)
    gy = random_array(rng, spec.output_shape, dtype)
    b = random_array(rng, (case.cout,), dtype) if case.bias else None
    common = dict(kw, flip=case.flip)
    convnd = getattr(fastconv, f"conv{ndim}d")
    if op == "forward":
        got = convnd(x, w, b, strategy=strategy, **common)
        want = ref.conv_forward(upcast(x), upcast(w), None if b is None else upcast(b), **common)
        return [("forward", got, want, spec, (x, w))]
    if op == "grad_input":
        got = getattr(fgrad, f"conv{ndim}d_input")(x_shape, w, gy, strategy=strategy, **common)
        want = ref.conv_grad_input(x_shape, upcast(w), upcast(gy), **common)
        return [("grad_input", got, want, spec, (gy, w))]
    if op == "grad_weight":
        got = getattr(fgrad, f"conv{ndim}d_weight")(x, w_shape, gy, strategy=strategy, **common)
        want = ref.conv_grad_weight(upcast(x), w_shape, upcast(gy), **common)
        return [("grad_weight", got, want, spec, (x, gy))]
    gx, gw, gb = fastconv.conv_backward(x, w, gy, strategy=strategy, **common)
    batch_axes = (0,) if case.batch is not None else ()
    sum_axes = batch_axes + tuple(range(len(batch_axes) + 1, gy.ndim))
    return [
        ("backward.grad_x", gx, ref.conv_grad_input(x_shape, upcast(w), upcast(gy), **common),
         spec, (gy, w)),
        ("backward.grad_w", gw, ref.conv_grad_weight(upcast(x), w_shape, upcast(gy), **common),
         spec, (x, gy)),
        ("backward.grad_b", gb, upcast(gy).sum(axis=sum_axes), spec, ()),
    ]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("strategy, case, ndim",
                         strategy_params(_spec, CASES, NDIMS, ids=[_name, _nd]))
def test_against_reference(strategy, case, op, ndim, dtype, rng):
    for what, got, want, spec, operands in _run(op, ndim, case, dtype, strategy, rng):
        assert_close(got, want, dtype=dtype, strategy=strategy, spec=spec,
                     what=f"{case.name} {ndim}d {what}", operands=operands)


@pytest.mark.parametrize("strategy, case, ndim",
                         strategy_params(_spec, CASES[::3], NDIMS, ids=[_name, _nd]))
def test_adjoint_identity(strategy, case, ndim, rng):
    """<conv(x, w), g> == <x, grad_input(g)> == <w, grad_weight(x, g)> (no oracle)."""
    x_shape, w_shape, kw = case.args(ndim)
    common = dict(kw, flip=case.flip, strategy=strategy)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    y = fastconv.conv(x, w, **common)
    g = rng.standard_normal(y.shape)
    gx = fastconv.grad_input(x_shape, w, g, **common)
    gw = fastconv.grad_weight(x, w_shape, g, **common)
    lhs = float(np.sum(y * g))
    tol = 1e-9 * (1 + np.abs(y).sum() * np.abs(g).max())
    assert abs(lhs - float(np.sum(x * gx))) <= tol
    assert abs(lhs - float(np.sum(w * gw))) <= tol


@pytest.mark.parametrize("ndim", NDIMS, ids=lambda n: f"{n}d")
@pytest.mark.parametrize("case", CASES[1::4], ids=lambda c: c.name)
def test_reference_matches_scalar_loops(case, ndim, rng):
    """The oracle itself against plain scalar loops."""
    x_shape, w_shape, kw = case.args(ndim)
    spec = fastconv.make_spec(x_shape, w_shape, flip=case.flip, **kw)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    xb = x if case.batch is not None else x[None]
    want = naive_loop_forward(xb, w, spec.stride, spec.padding, spec.dilation, spec.groups,
                              flip=case.flip)
    got = ref.conv_forward(x, w, flip=case.flip, **kw)
    np.testing.assert_allclose(got if case.batch is not None else got[None], want,
                               rtol=1e-12, atol=1e-12)


FLIP_CASE = Case("flipcheck", padding=((1, 0), (0, 2), (1, 1)), stride=(1, 2, 1))


@pytest.mark.parametrize("strategy, ndim",
                         strategy_params(lambda n: _spec(FLIP_CASE, n), NDIMS, ids=[_nd]))
def test_flip_is_correlation_with_flipped_kernel(strategy, ndim, rng):
    case = FLIP_CASE
    x_shape, w_shape, kw = case.args(ndim)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    wf = np.ascontiguousarray(w[(Ellipsis,) + (slice(None, None, -1),) * ndim])
    a = fastconv.conv(x, w, flip=True, strategy=strategy, **kw)
    b = fastconv.conv(x, wf, flip=False, strategy=strategy, **kw)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    y = rng.standard_normal(a.shape)
    gwf = fastconv.grad_weight(x, w_shape, y, flip=True, strategy=strategy, **kw)
    gw = fastconv.grad_weight(x, w_shape, y, flip=False, strategy=strategy, **kw)
    np.testing.assert_allclose(gwf, gw[(Ellipsis,) + (slice(None, None, -1),) * ndim],
                               rtol=1e-12, atol=1e-12)


LARGE = ((3, 16, 23, 19), (12, 8, 5, 3),
         dict(stride=(2, 1), padding=((2, 1), (1, 1)), dilation=(1, 2), groups=2))


@pytest.mark.parametrize("strategy", strategies_for(fastconv.make_spec(*LARGE[:2], **LARGE[2])))
def test_strategies_agree_on_a_larger_problem(strategy, rng):
    """A moderately sized 2-D layer (more channels, multi-thread chunks)."""
    x = rng.standard_normal(LARGE[0]).astype(np.float32)
    w = rng.standard_normal(LARGE[1]).astype(np.float32)
    kw = LARGE[2]
    y = fastconv.conv2d(x, w, strategy=strategy, **kw)
    spec = fastconv.make_spec(x.shape, w.shape, dtype=np.float32, **kw)
    assert_close(y, ref.conv_forward(upcast(x), upcast(w), **kw), dtype=np.float32,
                 strategy=strategy, spec=spec, what="large forward")
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx, gw, gb = fastconv.conv_backward(x, w, gy, strategy=strategy, **kw)
    assert_close(gx, ref.conv_grad_input(x.shape, upcast(w), upcast(gy), **kw),
                 dtype=np.float32, strategy=strategy, spec=spec, what="large grad_input")
    assert_close(gw, ref.conv_grad_weight(upcast(x), w.shape, upcast(gy), **kw),
                 dtype=np.float32, strategy=strategy, spec=spec, what="large grad_weight")
