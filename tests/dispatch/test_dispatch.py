"""Dispatcher: precedence, guards, rules, the tuning cache's place in the decision,
calibration. (Config files: tests/config/test_config_file.py; the cache files:
tests/config/test_cache.py.)"""

import numpy as np
import pytest
from _helpers import FakeStrategy
from _helpers import dispatch_spec as spec

import fastconv
from fastconv import _calibrate, _dispatch, _strategies, _tuning
from fastconv._spec import make_spec


def test_cost_model_picks_lowest_estimate(fakes):
    d = _dispatch.decide("forward", spec())
    assert (d.strategy, d.decided_by) == ("fft", "cost-model")
    assert {c.name for c in d.candidates} == set(fakes)


def test_precedence_argument_over_context_over_rules(fakes):
    rule = fastconv._configfile.Rule(strategy="slow", source="test rule")
    with fastconv.config(rules=(rule,)):
        assert _dispatch.decide("forward", spec()).decided_by == "config-rule"
        assert _dispatch.decide("forward", spec()).strategy == "slow"
        with fastconv.config(strategy="fast"):
            d = _dispatch.decide("forward", spec())
            assert (d.strategy, d.decided_by) == ("fast", "context")
            d = _dispatch.decide("forward", spec(), strategy="direct")
            assert (d.strategy, d.decided_by) == ("direct", "argument")


def test_rules_before_tuning_cache(fakes, tmp_path):
    s = spec()
    key = _tuning.problem_key("forward", s, fastconv.get_config().threads)
    with fastconv.config(mode="cache-only"):
        _tuning.tuning_cache.store(fastconv.get_config(), {key: {"strategy": "slow", "seconds": {}}})
        d = _dispatch.decide("forward", s)
        assert (d.strategy, d.decided_by) == ("slow", "tuning-cache")
        rule = fastconv._configfile.Rule(strategy="fast", op=("forward",))
        with fastconv.config(rules=(rule,)):
            assert _dispatch.decide("forward", s).decided_by == "config-rule"
            # the rule names one op only: grad_weight falls through to the cost model
            assert _dispatch.decide("grad_weight", s).decided_by == "cost-model"


def test_guard_allow_fft(fakes):
    with fastconv.config(allow_fft=False):
        d = _dispatch.decide("forward", spec())
    assert d.strategy == "fast"
    fft = next(c for c in d.candidates if c.name == "fft")
    assert "allow_fft" in fft.excluded


def test_guard_large_stride(fakes):
    d = _dispatch.decide("forward", spec(stride=3))
    assert d.strategy == "fast"
    assert "stride" in next(c for c in d.candidates if c.name == "fft").excluded
    with fastconv.config(fft_max_stride=3):
        assert _dispatch.decide("forward", spec(stride=3)).strategy == "fft"


def test_guard_float32_fft_error(fakes):
    big = spec(input_shape=(1, 4, 512, 512))
    from fastconv._strategies import fft as fft_strategy

    err = fft_strategy.error_estimate(big)
    with fastconv.config(fft_rtol=err / 2):
        assert _dispatch.decide("forward", big).strategy == "fast"
    with fastconv.config(fft_rtol=err * 2):
        assert _dispatch.decide("forward", big).strategy == "fft"
    # float64 is far below any sensible tolerance: not excluded
    with fastconv.config(fft_rtol=err / 2):
        f64 = spec(input_shape=(1, 4, 512, 512), dtype=np.float64)
        assert _dispatch.decide("forward", f64).strategy == "fft"


def test_guard_memory_budget(fakes):
    with fastconv.config(memory_budget=5):
        d = _dispatch.decide("forward", spec())
    assert d.strategy == "fast"
    assert "memory budget" in next(c for c in d.candidates if c.name == "fft").excluded


def test_no_strategy_fits_raises_memoryerror(fakes):
    for s in fakes.values():
        if isinstance(s, FakeStrategy):
            s.ws = 100
    fakes["direct"] = FakeStrategy("direct", 1.0, workspace=100)
    with fastconv.config(memory_budget=50), pytest.raises(MemoryError, match="memory budget"):
        _dispatch.decide("forward", spec())


def test_excluded_rule_strategy_does_not_decide(fakes):
    rule = fastconv._configfile.Rule(strategy="fft")
    with fastconv.config(rules=(rule,), allow_fft=False):
        d = _dispatch.decide("forward", spec())
    assert d.decided_by == "cost-model" and d.strategy == "fast"


def test_rule_matching_ranges():
    from fastconv._configfile import Rule

    s = spec()  # 2-D, kernel (3, 2), spatial (9, 7), C_in 4, N 2, float32
    assert Rule("x", kernel=(3, 3)).matches("forward", s)
    assert not Rule("x", kernel=(4, 9)).matches("forward", s)
    assert Rule("x", spatial=(9, 100), channels=(4, 4), batch=(1, 2)).matches("forward", s)
    assert not Rule("x", ndim=(1, 3)).matches("forward", s)
    assert not Rule("x", dtype=("float64",)).matches("forward", s)
    assert not Rule("x", op=("grad_input",)).matches("forward", s)
    assert Rule("x", stride=(1, 1), groups=(1, 1), out_channels=(6, 6)).matches("forward", s)


def test_explain_cli(capsys):
    from fastconv.cli import main

    main(["explain", "grad_weight", "--input", "2,3,16,16", "--weight", "4,3,5,3",
          "--padding", "((2,2),(1,1))", "--dtype", "float64"])
    out = capsys.readouterr().out
    assert out.startswith("grad_weight: ") and "decided by" in out


def test_calibrate_writes_factors(fakes, monkeypatch, tmp_path):
    monkeypatch.setattr(_calibrate, "calibration_grid",
                        lambda quick=False: [((1, 2, 16), (2, 2, 3), {})])
    factors = _calibrate.calibrate(dtypes=("float64",), progress=None)
    ops = fastconv._spec.OPS
    assert set(factors) == ({f"{n}|{op}|1d|float64" for n in fakes for op in ops}
                            | {f"{n}|{op}|overhead" for n in fakes for op in ops}
                            | {"parallel|overhead"}
                            | ({f"{n}|parallel" for n in fakes}
                               if fastconv.get_config().threads > 1 else set()))
    assert factors["parallel|overhead"] >= 0
    s = make_spec((1, 2, 16), (2, 2, 3), dtype=np.float64)
    opts = fastconv.get_config()
    got = _tuning.calibrated_estimate(fakes["slow"], "forward", s, opts)
    want = factors["slow|forward|1d|float64"] * 1.0 + factors["slow|forward|overhead"]
    assert got == pytest.approx(want)
    # calibration is a new fact: remembered decisions must not outlive it
    assert not _dispatch._memo


def test_calibration_fits_one_thread_then_the_spread_over_threads(fakes, monkeypatch):
    # one thread: 10 ms per unit of estimate; two threads: 15 ms (fakes' estimates
    # do not depend on the thread count), so the factor is 0.01 x 1.5
    monkeypatch.setattr(_calibrate, "calibration_grid",
                        lambda quick=False: [((1, 2, 16), (2, 2, 3), {}),
                                             ((1, 2, 3, 16), (2, 2, 3, 3), {})])
    monkeypatch.setattr(_tuning, "measure", lambda op, spec, names, opts, budget_s=None:
                        {n: 0.0 for n in names})
    monkeypatch.setattr(_calibrate, "_parallel_overhead", lambda make_spec, opts: 0.0)
    seen = []

    def timed(op, spec, names, opts, rounds=2, repeat=3):
        threads = opts.threads
        seen.append(threads)
        return {n: (0.01 if threads == 1 else 0.015) * fakes[n].estimate(spec, op, threads, None)
                for n in names if n != "direct"}

    monkeypatch.setattr(_calibrate, "_timed", timed)
    monkeypatch.setattr(_calibrate, "_strategies", _strategies)
    with fastconv.config(n_threads=2):
        factors = _calibrate.calibrate(dtypes=("float32",), progress=None)
    assert sorted(set(seen)) == [1, 2]
    assert factors["slow|parallel"] == pytest.approx(1.5)
    for nd in ("1d", "2d"):
        assert factors[f"slow|grad_input|{nd}|float32"] == pytest.approx(0.015)


def test_calibration_grid_problems_are_valid():
    for quick in (False, True):
        for ishape, wshape, kw in _calibrate.calibration_grid(quick):
            make_spec(ishape, wshape, **kw)


