"""Random specs (hypothesis): every strategy and op against the reference."""
from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from _helpers import STRATEGIES, assert_close, supported, upcast  # noqa: E402
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastconv  # noqa: E402
import fastconv.grad as fgrad  # noqa: E402
from fastconv import reference as ref  # noqa: E402


def _padding(draw, ndim):
    kind = draw(st.sampled_from(["int", "axis", "pairs", "mixed", "valid", "same", "full"]))
    p = st.integers(0, 3)
    if kind == "int":
        return draw(p)
    if kind == "axis":
        return tuple(draw(p) for _ in range(ndim))
    if kind == "pairs":
        return tuple((draw(p), draw(p)) for _ in range(ndim))
    if kind == "mixed":
        return tuple(draw(st.one_of(p, st.tuples(p, p))) for _ in range(ndim))
    return kind


def _per_axis(draw, ndim, lo, hi):
    if draw(st.booleans()):
        return draw(st.integers(lo, hi))
    return tuple(draw(st.integers(lo, hi)) for _ in range(ndim))


@st.composite
def conv_problems(draw):
    ndim = draw(st.integers(1, 3))
    hi = {1: 12, 2: 8, 3: 5}[ndim]
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    batch = draw(st.one_of(st.none(), st.integers(1, 2)))
    in_sp = tuple(draw(st.integers(1, hi)) for _ in range(ndim))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    stride = _per_axis(draw, ndim, 1, 3)
    dilation = _per_axis(draw, ndim, 1, 2)
    padding = _padding(draw, ndim)
    flip = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x_shape = ((batch,) if batch is not None else ()) + (cin,) + in_sp
    w_shape = (cout, cin // groups) + kernel
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    try:
        spec = fastconv.make_spec(x_shape, w_shape, flip=flip, dtype=dtype, **kw)
    except ValueError:
        assume(False)
    seed = draw(st.integers(0, 2**32 - 1))
    return x_shape, w_shape, kw, flip, dtype, spec, seed


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(conv_problems())
def test_random_specs_match_reference(problem):
    x_shape, w_shape, kw, flip, dtype, spec, seed = problem
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    common = dict(kw, flip=flip)
    y_ref = ref.conv_forward(upcast(x), upcast(w), upcast(b), **common)
    gx_ref = ref.conv_grad_input(x_shape, upcast(w), upcast(gy), **common)
    gw_ref = ref.conv_grad_weight(upcast(x), w_shape, upcast(gy), **common)
    assert y_ref.shape == spec.output_shape == fastconv.output_shape(x_shape, w_shape, **kw)
    ndim = spec.ndim
    for s in STRATEGIES:
        if not supported(s, spec):
            continue
        check = dict(dtype=dtype, strategy=s, spec=spec)
        opts = dict(common, strategy=s)
        fw, gi, gwt = (dict(check, operands=o) for o in ((x, w), (gy, w), (x, gy)))
        assert_close(fastconv.conv(x, w, b, **opts), y_ref, what=f"forward {spec}", **fw)
        assert_close(getattr(fgrad, f"conv{ndim}d_input")(x_shape, w, gy, **opts), gx_ref,
                     what=f"grad_input {spec}", **gi)
        assert_close(getattr(fgrad, f"conv{ndim}d_weight")(x, w_shape, gy, **opts), gw_ref,
                     what=f"grad_weight {spec}", **gwt)
        gx, gw, _ = fastconv.conv_backward(x, w, gy, **opts)
        assert_close(gx, gx_ref, what=f"backward grad_x {spec}", **gi)
        assert_close(gw, gw_ref, what=f"backward grad_w {spec}", **gwt)
