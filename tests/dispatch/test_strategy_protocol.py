"""The strategy protocol (fastconv._strategies.Strategy) and the registry."""
import dataclasses
import inspect
import pathlib

import numpy as np
import pytest
from _helpers import oracle

import fastconv
from fastconv import _strategies


def test_every_registered_strategy_follows_the_protocol():
    for s in _strategies.all_strategies():
        assert isinstance(s, _strategies.Strategy), s.name
        # (isinstance checks the names only: the signatures too)
        for meth in ("supports", "workspace", "estimate", "plan", "run"):
            want = list(inspect.signature(getattr(_strategies.Strategy, meth)).parameters)[1:]
            got = list(inspect.signature(getattr(s, meth)).parameters)
            assert got[:len(want)] == want, (s.name, meth, got)


def test_an_object_without_run_is_not_a_strategy():
    class Half:
        name = "half"

        def supports(self, spec, op):
            return None

        def workspace(self, spec, op, options):
            return 0

        def estimate(self, spec, op, n_threads, options):
            return 1.0

        def plan(self, spec, op, options):
            return None

    assert not isinstance(Half(), _strategies.Strategy)


def test_strategies_are_handed_their_options_and_read_no_global_config():
    """A strategy takes threads, budget and tolerances from its arguments: no module
    under fastconv/_strategies reads the configuration in force."""
    root = pathlib.Path(_strategies.__file__).parent
    for path in root.glob("*.py"):
        src = path.read_text()
        assert "get_config" not in src and "_current" not in src, path.name


@pytest.mark.parametrize("name", _strategies.names())
@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
def test_a_strategy_plan_is_frozen_and_runs_into_out(name, op):
    """plan() decides (a frozen StrategyPlan on the options' threads and budget); run()
    executes it, into ``out`` when given, the same values as into a new array."""
    s = _strategies.get(name)
    spec = fastconv.make_spec((2, 3, 9, 8), (4, 3, 3, 3), padding=1, dtype=np.float64)
    with fastconv.config(n_threads=2, memory_budget="64 MiB"):
        opts = fastconv.get_config()
    plan = s.plan(spec, op, opts)
    assert isinstance(plan, _strategies.StrategyPlan)
    assert (plan.strategy, plan.op, plan.spec, plan.threads, plan.budget) == (
        name, op, spec, 2, 64 << 20)
    assert plan.workspace == s.workspace(spec, op, opts)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.threads = 1
    rng = np.random.default_rng(0)
    x, w, gy = (rng.standard_normal(sh) for sh in (spec.input_shape5, spec.weight_shape5,
                                                  spec.output_shape5))
    a, b = {"forward": (x, w), "grad_input": (gy, w), "grad_weight": (x, gy)}[op]
    fresh = s.run(plan, a, b)
    out = np.full(fresh.shape, np.nan)
    assert s.run(plan, a, b, out) is out
    np.testing.assert_array_equal(out, fresh)
    want = oracle(op, x.reshape(spec.input_shape), w.reshape(spec.weight_shape),
                  gy.reshape(spec.output_shape), dict(padding=1))
    np.testing.assert_allclose(fresh.reshape(want.shape), want, rtol=1e-9, atol=1e-9)


def test_direct_estimates_the_plan_its_budget_allows():
    """Within a budget too small for direct's wide buffers the row loops run, and the
    estimate prices them (not the wide plan that would not run)."""
    d = _strategies.get("direct")
    spec = fastconv.make_spec((8, 32, 32, 32), (32, 32, 3, 3), padding=1, dtype=np.float32)
    with fastconv.config(n_threads=2, memory_budget="64 KiB"):
        small = fastconv.get_config()
        assert d.plan(spec, "grad_input", small).kernel.path == "rows"
    with fastconv.config(n_threads=2):
        big = fastconv.get_config()
        assert d.plan(spec, "grad_input", big).kernel.plan.path == "wide"
    assert d.estimate(spec, "grad_input", 2, small) > 5 * d.estimate(spec, "grad_input", 2, big)


def test_fft_workspace_counts_the_dft_buffers_of_every_thread():
    """When FFT's chunking falls back to one pipeline, the kernel's DFT still runs on
    every thread, each with its own buffers: the workspace counts them all."""
    fft = _strategies.get("fft")
    spec = fastconv.make_spec((1, 1, 32, 32), (1, 1, 3, 3), padding=1, dtype=np.float32)
    sizes = {}
    for n in (1, 2):
        with fastconv.config(n_threads=n, memory_budget=119052):
            sizes[n] = fft.workspace(spec, "forward", fastconv.get_config())
    assert sizes[2] > sizes[1]


def test_the_fused_fft_backward_runs_on_the_larger_thread_count(monkeypatch):
    """conv_backward's fused FFT pass runs on the more threads of its two ops' plans."""
    fft = _strategies.get("fft")
    seen = []
    orig = fft.backward
    monkeypatch.setattr(fft, "backward", lambda plan, *a: seen.append(plan.threads) or orig(plan, *a))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 64, 8, 8)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 64, 8, 8)).astype(np.float32)
    with fastconv.config(n_threads=2):
        fastconv.conv_backward(x, w, gy, padding=1, strategy="fft")
        args = (x.shape, w.shape, 1, 1, 1, 1, False, np.float32, "fft", "zeros")
        want = max(fastconv._plan_memo.cached("grad_input", *args).threads,
                   fastconv._plan_memo.cached("grad_weight", *args).threads)
    assert seen == [want]


def test_a_forced_im2col_mode_stays_in_its_thread():
    """parallel_mode() is per thread: plans made inside it are memoized apart from
    the automatic ones, so another thread's call at the same time is not forced."""
    import threading

    from fastconv._strategies import im2col

    args = ((4, 8, 12, 12), (8, 8, 3, 3), 1, 1, 1, 1, False, np.float32, "im2col", "zeros")
    got = {}
    with fastconv.config(n_threads=2):
        opts = fastconv.get_config()
        with im2col.parallel_mode("blas"):
            got["forced"] = fastconv._plan_memo.cached("forward", *args)

            def other():
                with fastconv.config(**{"n_threads": opts.n_threads}):
                    got["other"] = fastconv._plan_memo.cached("forward", *args)

            t = threading.Thread(target=other)
            t.start()
            t.join()
        got["after"] = fastconv._plan_memo.cached("forward", *args)
    assert got["forced"]._splan.kernel.mode == im2col.ParallelMode.BLAS
    assert got["other"] is got["after"] and got["other"] is not got["forced"]
    assert got["other"]._splan.kernel.mode == im2col.ParallelMode.OMP


def test_memoized_plans_with_unhashable_options_are_made_each_time():
    opts = dataclasses.replace(fastconv.get_config(), rules=([],))
    made = []
    for _ in range(2):
        fastconv._plan_memo.memoized(("k",), opts, lambda: made.append(1) or object())
    assert made == [1, 1]
