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
