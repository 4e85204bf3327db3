"""Plans (fastconv.plan, plan_layer, Plan.with_weight): decided once, called many
times, equal to the plain functions bit for bit."""
from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

import fastconv
from fastconv import _dispatch, _plan
from fastconv import reference as ref

RNG = np.random.default_rng(7)


def _arrays(x_shape, w_shape, dtype=np.float32, **kw):
    spec = fastconv.make_spec(x_shape, w_shape, dtype=dtype, **kw)
    x = RNG.standard_normal(x_shape).astype(dtype)
    w = RNG.standard_normal(w_shape).astype(dtype)
    gy = RNG.standard_normal(spec.output_shape).astype(dtype)
    return x, w, gy


# (input, weight, keyword arguments, strategy): every strategy, stride, dilation,
# groups, asymmetric padding, 1-D to 3-D
CASES = [
    ((2, 3, 9, 11), (4, 3, 3, 2), dict(padding=((1, 0), (2, 1))), "direct"),
    ((2, 4, 10, 10), (6, 2, 3, 3), dict(padding=1, groups=2), "im2col"),
    ((1, 3, 20, 17), (2, 3, 5, 7), dict(padding=2, dilation=(1, 2)), "fft"),
    ((2, 8, 12, 12), (8, 8, 3, 3), dict(padding=1), "winograd"),
    ((3, 2, 31), (4, 2, 4), dict(stride=2, padding=(3,)), "auto"),
    ((1, 2, 5, 6, 7), (3, 2, 3, 1, 3), dict(padding=1), "auto"),
]


def _plain(op, x, w, gy, strategy, kw):
    if op == "forward":
        return fastconv.conv(x, w, strategy=strategy, **kw)
    if op == "grad_input":
        return fastconv.grad_input(x.shape, w, gy, strategy=strategy, **kw)
    return fastconv.grad_weight(x, w.shape, gy, strategy=strategy, **kw)


def _operands(op, x, w, gy):
    return {"forward": (x, w), "grad_input": (w, gy), "grad_weight": (x, gy)}[op]


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_a_plan_called_many_times_equals_fresh_calls_bitwise(op, case):
    x_shape, w_shape, kw, strategy = CASES[case]
    x, w, gy = _arrays(x_shape, w_shape, **kw)
    p = fastconv.plan(op, x_shape, w_shape, strategy=strategy, **kw)
    assert p.op == op and p.spec.input_shape == x_shape
    want = _plain(op, x, w, gy, strategy, kw)
    for _ in range(5):
        assert np.array_equal(p(*_operands(op, x, w, gy)), want)
    # and against the naive reference
    ref_fn = {"forward": lambda: ref.conv_forward(x.astype(np.float64), w.astype(np.float64),
                                                  **kw),
              "grad_input": lambda: ref.conv_grad_input(x.shape, w.astype(np.float64),
                                                        gy.astype(np.float64), **kw),
              "grad_weight": lambda: ref.conv_grad_weight(x.astype(np.float64), w.shape,
                                                          gy.astype(np.float64), **kw)}[op]
    np.testing.assert_allclose(want, ref_fn(), rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("op", ["forward", "grad_input"])
@pytest.mark.parametrize("strategy", ["direct", "im2col", "fft", "winograd"])
def test_a_bound_weight_gives_the_unbound_result(op, strategy):
    x, w, gy = _arrays((2, 8, 12, 12), (8, 8, 3, 3), padding=1)
    p = fastconv.plan(op, x.shape, w.shape, padding=1, strategy=strategy)
    bound = p.with_weight(w)
    data = x if op == "forward" else gy
    want = p(*_operands(op, x, w, gy))
    for _ in range(3):   # the first call makes the transforms, the next reuse them
        np.testing.assert_allclose(bound(data), want, rtol=1e-6, atol=1e-6)
    if strategy in ("fft", "winograd"):
        assert bound._memo, "the weight's transforms are kept"


def test_a_changed_weight_never_reaches_a_bound_plan():
    x, w, _ = _arrays((2, 8, 12, 12), (8, 8, 3, 3), padding=1)
    p = fastconv.plan("forward", x.shape, w.shape, padding=1, strategy="winograd")
    bound = p.with_weight(w)
    before = bound(x)
    w *= 2   # the caller's array changes
    assert np.array_equal(bound(x), before)
    assert not bound.weight.flags.writeable
    with pytest.raises(ValueError):
        bound.weight[0, 0, 0, 0] = 1
    np.testing.assert_allclose(p.with_weight(w)(x), 2 * before, rtol=1e-5, atol=1e-5)


def test_grad_weight_plans_have_no_weight_to_bind():
    p = fastconv.plan("grad_weight", (1, 2, 6, 6), (2, 2, 3, 3))
    with pytest.raises(ValueError, match="no weight"):
        p.with_weight(np.ones((2, 2, 3, 3), np.float32))


def test_concurrent_calls_of_one_plan_from_8_threads():
    x, w, gy = _arrays((4, 8, 16, 16), (8, 8, 3, 3), padding=1)
    plans = [fastconv.plan(op, x.shape, w.shape, padding=1, strategy=s)
             for op in ("forward", "grad_input", "grad_weight")
             for s in ("direct", "im2col", "fft", "winograd")]
    want = [p(*_operands(p.op, x, w, gy)) for p in plans]
    bound = plans[0].with_weight(w)
    errors = []

    def work():
        try:
            for _ in range(3):
                for p, r in zip(plans, want):
                    assert np.array_equal(p(*_operands(p.op, x, w, gy)), r)
                assert np.array_equal(bound(x), want[0])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_plans_pickle_and_plan_again_on_load():
    x, w, gy = _arrays((2, 3, 10, 10), (4, 3, 3, 3), padding=1)
    with fastconv.config(allow_fft=False):
        p = fastconv.plan("forward", x.shape, w.shape, padding=1)
    q = pickle.loads(pickle.dumps(p))
    assert q is not p and q.spec == p.spec and q.options == p.options
    assert np.array_equal(q(x, w), p(x, w))
    b = pickle.loads(pickle.dumps(p.with_weight(w)))
    assert np.array_equal(b(x), p(x, w))
    lp = pickle.loads(pickle.dumps(fastconv.plan_layer(x.shape, w.shape, padding=1)))
    assert np.array_equal(lp.grad_input(w, gy), fastconv.grad_input(x.shape, w, gy, padding=1))


def test_a_plan_keeps_the_options_it_was_made_under():
    x, w, _ = _arrays((1, 2, 40, 40), (2, 2, 11, 11))
    with fastconv.config(strategy="im2col", n_threads=1, memory_budget="3 MiB"):
        p = fastconv.plan("forward", x.shape, w.shape)
        inside = p.options
    assert p.strategy == "im2col" and p.threads == 1
    assert fastconv.get_config() is not inside
    # outside the block the plan still runs as planned, with the block's options
    # (the strategy is handed them in its plan; it reads no global configuration)
    seen = []
    real = p._strategy.run

    def spy(plan, *a, **k):
        seen.append((plan.threads, plan.budget))
        return real(plan, *a, **k)

    p._strategy.run = spy
    try:
        with fastconv.config(n_threads=2, memory_budget="1 GiB"):
            y = p(x, w)
    finally:
        del p._strategy.run
    assert seen == [(1, 3 << 20)]
    np.testing.assert_allclose(y, fastconv.conv(x, w), rtol=1e-4, atol=1e-4)


def test_layer_plan_backward_equals_conv_backward():
    x, w, gy = _arrays((2, 4, 9, 9), (6, 4, 3, 3), padding=1)
    lp = fastconv.plan_layer(x.shape, w.shape, padding=1)
    got = lp.backward(x, w, gy)
    want = fastconv.conv_backward(x, w, gy, padding=1)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
    gx, gw, gb = lp.backward(x, w, gy, needs=("weight",))
    assert gx is None and gb is None and gw.shape == w.shape
    assert "LayerPlan" in repr(lp)
    # an operand that is not needed is not looked at, as in conv_backward
    gx, gw, gb = lp.backward(None, w, gy, needs=("input",))
    np.testing.assert_array_equal(gx, want[0])


def test_layer_plan_backward_runs_the_fused_fft_pass(monkeypatch):
    """Where both backward ops run FFT, a LayerPlan's backward transforms
    grad_output once for both, as conv_backward does, with the same result."""
    from fastconv._strategies import fft

    x, w, gy = _arrays((2, 3, 20, 20), (4, 3, 9, 9), np.float64, padding=4)
    lp = fastconv.plan_layer(x.shape, w.shape, padding=4, dtype=np.float64, strategy="fft")
    calls = []
    fused = fft.FFTStrategy.backward
    monkeypatch.setattr(fft.FFTStrategy, "backward",
                        lambda self, *a: calls.append(1) or fused(self, *a))
    got = lp.backward(x, w, gy)
    want = fastconv.conv_backward(x, w, gy, padding=4, strategy="fft")
    assert len(calls) == 2
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_mode_plans(mode):
    x, w, gy = _arrays((2, 3, 8, 9), (4, 3, 3, 3), padding=(1, 2))
    kw = dict(padding=(1, 2), padding_mode=mode)
    for op in ("forward", "grad_input", "grad_weight"):
        p = fastconv.plan(op, x.shape, w.shape, **kw)
        assert p.padding_mode == mode
        np.testing.assert_array_equal(p(*_operands(op, x, w, gy)),
                                      _plain(op, x, w, gy, "auto", kw))
    b = fastconv.plan("forward", x.shape, w.shape, **kw).with_weight(w)
    np.testing.assert_allclose(b(x), fastconv.conv(x, w, **kw), rtol=1e-6, atol=1e-6)


def test_calls_check_their_arrays():
    p = fastconv.plan("forward", (2, 3, 8, 8), (4, 3, 3, 3))
    x, w = np.ones((2, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"x must have the plan's shape \(2, 3, 8, 8\)"):
        p(np.ones((1, 3, 8, 8), np.float32), w)
    with pytest.raises(ValueError, match="bias must have shape"):
        p(x, w, bias=np.ones(3))
    gp = fastconv.plan("grad_input", (2, 3, 8, 8), (4, 3, 3, 3))
    with pytest.raises(ValueError, match="grad_output must have the output shape"):
        gp(w, np.ones((2, 4, 5, 5), np.float32))
    with pytest.raises(TypeError, match="no bias"):
        gp(w, np.ones((2, 4, 6, 6), np.float32), bias=np.ones(4))
    # other dtypes are converted (as the plain functions do); the result is the plan's
    assert p(x.astype(np.float64), w.astype(np.int64)).dtype == np.float32
    out = np.empty((2, 4, 6, 6), np.float32)
    assert p(x, w, out=out) is out and np.array_equal(out, p(x, w))
    with pytest.raises(ValueError, match="out must have shape"):
        p(x, w, out=np.empty((2, 4, 6, 6), np.float64))
    with pytest.raises(ValueError, match="op must be one of"):
        fastconv.plan("backward", (2, 3, 8, 8), (4, 3, 3, 3))
    with pytest.raises(ValueError, match="strategy"):
        fastconv.plan("forward", (2, 3, 8, 8), (4, 3, 3, 3), strategy="nope")


def test_explain_repr_and_empty_batch():
    p = fastconv.plan("forward", (4, 16, 20, 20), (16, 16, 3, 3), padding=1,
                      dtype=np.float64)
    d = p.explain()
    assert d.strategy == p.strategy and d.op == "forward"
    d.strategy = "changed"   # a copy
    assert p.explain().strategy == p.strategy
    r = repr(p)
    assert p.strategy in r and "float64" in r and "(4, 16, 20, 20)" in r
    e = fastconv.plan("grad_weight", (0, 2, 5, 5), (3, 2, 3, 3))
    assert e.explain().decided_by == "empty-batch"
    gw = e(np.ones((0, 2, 5, 5)), np.ones((0, 3, 3, 3)))
    assert gw.shape == (3, 2, 3, 3) and not gw.any()


def test_plain_calls_reuse_one_memoized_plan(monkeypatch):
    x, w, _ = _arrays((1, 2, 8, 8), (2, 2, 3, 3))
    _dispatch.clear_memo()
    made = []
    real = _plan.Plan.__init__

    def counting(self, *a, **k):
        made.append(a[0])
        real(self, *a, **k)

    monkeypatch.setattr(_plan.Plan, "__init__", counting)
    for _ in range(10):
        fastconv.conv2d(x, w)
    assert made == ["forward"]
    # a different argument type validates (and plans) again: True is not a stride
    with pytest.raises(TypeError):
        fastconv.conv2d(x, w, stride=True)
    with fastconv.config(n_threads=1):   # other options: another plan
        fastconv.conv2d(x, w)
    assert made.count("forward") == 3
    _dispatch.clear_memo()   # clears the plans too
    fastconv.conv2d(x, w)
    assert made.count("forward") == 4


def test_the_plan_memo_forgets_the_least_recently_used(monkeypatch):
    from fastconv import _plan_memo

    _dispatch.clear_memo()
    monkeypatch.setattr(_plan_memo, "_MEMO_MAX", 2)
    w = np.ones((1, 1, 3, 3), np.float32)
    a, b, c = (np.ones((1, 1, n, n), np.float32) for n in (5, 6, 7))
    fastconv.conv2d(a, w)
    fastconv.conv2d(b, w)
    kept = dict(_plan_memo._memo)
    fastconv.conv2d(a, w)   # a used again: b is now the least recent
    fastconv.conv2d(c, w)
    assert len(_plan_memo._memo) == 2
    by_shape = {p.spec.input_shape: p for p in _plan_memo._memo.values()}
    assert set(by_shape) == {a.shape, c.shape}
    assert any(by_shape[a.shape] is p for p in kept.values())   # the same plan, kept


@pytest.mark.parametrize("strategy", ["direct", "fft", "winograd"])
def test_bound_weight_with_flip_and_float64(strategy):
    x, w, gy = _arrays((2, 4, 10, 10), (4, 4, 3, 3), dtype=np.float64, padding=1)
    for op, data in (("forward", x), ("grad_input", gy)):
        p = fastconv.plan(op, x.shape, w.shape, padding=1, flip=True, dtype=np.float64,
                          strategy=strategy)
        want = _plain(op, x, w, gy, strategy, dict(padding=1, flip=True))
        np.testing.assert_allclose(p.with_weight(w)(data), want, rtol=1e-12, atol=1e-12)


def test_the_bench_reports_the_per_call_cost():
    from fastconv.bench.report import _per_call_section
    from fastconv.bench.run import PER_CALL, per_call

    rows = per_call(False, 1, calls=3, rounds=1)
    assert [(tuple(r["input_shape"]), tuple(r["weight_shape"])) for r in rows] == list(PER_CALL)
    assert all(r["plain_s"] > 0 and r["plan_s"] > 0 and r["torch_s"] is None for r in rows)
    text = "\n".join(_per_call_section(rows))
    assert "## Per call" in text and "| (1, 1, 8, 8) | (1, 1, 3, 3) |" in text
