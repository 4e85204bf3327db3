"""Dispatcher: precedence, guards, config-file rules and errors, tuning cache."""
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv import _cpu
from fastconv import _calibrate, _dispatch, _strategies, _tuning
from fastconv._configfile import ConfigError, read_config_file
from fastconv._spec import make_spec

from _helpers import REPO_ROOT

EXAMPLE = os.path.join(REPO_ROOT, "docs", "fastconv.example.toml")


class FakeStrategy:
    """A stand-in strategy with a fixed estimate and workspace; runs the direct one."""

    pads_inside = True  # as the direct strategy it runs

    def __init__(self, name, est, workspace=0):
        self.name, self.est, self.ws = name, est, workspace

    def supports(self, spec, op):
        return None

    def workspace(self, spec, op):
        return self.ws

    def estimate(self, spec, op, n_threads=1):
        return self.est

    def run(self, op, spec, a, b, n_threads):
        return _strategies.get("direct").run(op, spec, a, b, n_threads)


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    """Registry = {direct, fast, slow, fft(fake)} with known estimates; private cache dir."""
    reg = {
        "direct": _strategies._REGISTRY["direct"],
        "fast": FakeStrategy("fast", 1e-12),
        "slow": FakeStrategy("slow", 1.0),
        "fft": FakeStrategy("fft", 1e-15, workspace=10),
    }
    monkeypatch.setattr(_strategies, "_REGISTRY", reg)
    monkeypatch.setattr(_tuning, "_shipped", {})  # uncalibrated: factors are 1
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    _dispatch.clear_memo()
    yield reg
    _dispatch.clear_memo()


SPEC = dict(input_shape=(2, 4, 9, 7), weight_shape=(6, 4, 3, 2), dtype=np.float32)


def spec(**kw):
    args = {**SPEC, **kw}
    return make_spec(args.pop("input_shape"), args.pop("weight_shape"), **args)


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
    err = _dispatch.fft_error_estimate(big)
    with fastconv.config(fft_rtol=err / 2):
        assert _dispatch.decide("forward", big).strategy == "fast"
    with fastconv.config(fft_rtol=err * 2):
        assert _dispatch.decide("forward", big).strategy == "fft"
    # float64 is far below any sensible tolerance: not excluded
    with fastconv.config(fft_rtol=err / 2):
        assert _dispatch.decide("forward", spec(input_shape=(1, 4, 512, 512), dtype=np.float64)).strategy == "fft"


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


def test_example_config_loads_and_applies(fakes, monkeypatch):
    monkeypatch.setitem(fakes, "im2col", FakeStrategy("im2col", 1.0))
    values = read_config_file(EXAMPLE)
    assert values["memory_budget"] == 512 * 2**20
    assert [r.strategy for r in values["rules"]] == ["im2col", "fft", "fft"]
    with fastconv.config(**values):
        d = _dispatch.decide("forward", spec(weight_shape=(6, 4, 1, 1)))
        assert (d.strategy, d.decided_by) == ("im2col", "config-rule")
        assert "rules[0]" in d.detail


@pytest.mark.parametrize("text, match", [
    ("mode = 'fastest'", "mode"),
    ("bogus = 1", "bogus"),
    ("n_threads = 'two'", "n_threads"),
    ("memory_budget = 'lots'", "memory_budget"),
    ("allow_fft = 1", "allow_fft"),
    ("[[rules]]\nstrategy = 'wavelet'", "wavelet"),
    ("[[rules]]\nkernel = 3", "strategy"),
    ("[[rules]]\nstrategy = 'direct'\nkernel = 'big'", "kernel"),
    ("[[rules]]\nstrategy = 'direct'\ncolour = 'red'", "colour"),
    ("[[rules]]\nstrategy = 'direct'\nop = 'backward'", "op"),
    ("mode = ", "syntax"),
])
def test_bad_config_file(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        fastconv.load_config(path)
    assert str(path) in str(e.value)


def test_pyproject_tool_table(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text("[project]\nname='x'\n[tool.fastconv]\nmemory_budget = '1GiB'\n"
                    "[[tool.fastconv.rules]]\nstrategy = 'direct'\n")
    values = read_config_file(path)
    assert values["memory_budget"] == 2**30 and values["rules"][0].strategy == "direct"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text("[project]\nname='x'\n")
    with pytest.raises(ConfigError, match="tool.fastconv"):
        read_config_file(tmp_path / "sub" / "pyproject.toml")


def test_load_config_is_process_wide(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("memory_budget = 12345\n")
    old = fastconv.get_config()
    try:
        fastconv.load_config(path)
        assert fastconv.get_config().memory_budget == 12345
        import threading

        seen = []
        t = threading.Thread(target=lambda: seen.append(fastconv.get_config().memory_budget))
        t.start()
        t.join()
        assert seen == [12345]
    finally:
        fastconv.set_config(memory_budget=old.memory_budget)


# Subprocesses start outside the source tree, so they import the installed
# (compiled) package rather than ./fastconv.
_CWD = tempfile.gettempdir()


def _run(code, env_extra):
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=_CWD,
                          capture_output=True, text=True, timeout=300)


def test_env_config_read_at_import(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("memory_budget = '3MiB'\nallow_fft = false\n")
    r = _run("import fastconv; c = fastconv.get_config(); print(c.memory_budget, c.allow_fft)",
             {"FASTCONV_CONFIG": str(path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(3 * 2**20), "False"]


def _tuning_file(folder, threads=None):
    return folder / f"tuning-{_cpu.level()}-t{threads or fastconv.get_config().threads}.json"


AUTOTUNE = """
import numpy as np, fastconv
from fastconv import _dispatch
fastconv.set_config(mode="{mode}")
x = np.random.default_rng(0).standard_normal((2, 3, 10, 9)).astype(np.float32)
w = np.ones((4, 3, 3, 2), np.float32)
fastconv.conv2d(x, w, padding=1)
d = fastconv.explain("forward", x.shape, w.shape, padding=1)
print(d.decided_by, d.strategy)
"""


def test_autotune_cache_persists_across_processes(tmp_path):
    env = {"FASTCONV_CACHE_DIR": str(tmp_path)}
    r = _run(AUTOTUNE.format(mode="autotune"), env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "tuning-cache"
    data = json.loads(_tuning_file(tmp_path).read_text())
    assert data["validators"]["threads"] >= 1 and len(data["entries"]) == 1
    entry = next(iter(data["entries"].values()))
    timings = entry["seconds"]  # what autotune measured per strategy (not checked: noisy)
    assert entry["strategy"] in fastconv.strategies() and set(timings) <= set(fastconv.strategies())
    assert entry["strategy"] in timings
    # a new process in cache-only mode uses the entry without measuring
    r = _run(AUTOTUNE.format(mode="cache-only"), env)
    assert r.stdout.split() == ["tuning-cache", entry["strategy"]], r.stderr


def test_validator_mismatch_ignores_file(tmp_path):
    env = {"FASTCONV_CACHE_DIR": str(tmp_path)}
    assert _run(AUTOTUNE.format(mode="autotune"), env).returncode == 0
    path = _tuning_file(tmp_path)
    data = json.loads(path.read_text())
    data["validators"]["numpy"] = "0.0.1"
    path.write_text(json.dumps(data))
    r = _run(AUTOTUNE.format(mode="cache-only"), env)
    assert r.stdout.split()[0] == "cost-model", r.stderr


def test_corrupt_file_is_survived_and_rebuilt(tmp_path):
    env = {"FASTCONV_CACHE_DIR": str(tmp_path)}
    _tuning_file(tmp_path).write_text('{"format": 1, "entries": {"trunc')
    r = _run(AUTOTUNE.format(mode="autotune"), env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("ignoring unreadable cache file") == 1
    assert r.stdout.split()[0] == "tuning-cache"
    assert len(json.loads(_tuning_file(tmp_path).read_text())["entries"]) == 1


CONCURRENT = """
import numpy as np, fastconv
fastconv.set_config(mode="autotune")
for k in range({start}, {start} + 6):
    fastconv.conv1d(np.ones((1, 2, 40 + k)), np.ones((3, 2, 3)))
"""


def test_two_processes_tuning_at_once_leave_a_valid_file(tmp_path):
    env = {**os.environ, "FASTCONV_CACHE_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT.format(start=s)], env=env,
                              cwd=_CWD, stderr=subprocess.PIPE, text=True) for s in (0, 100)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    data = json.loads(_tuning_file(tmp_path).read_text())
    assert len(data["entries"]) == 12  # the lock makes the merges lose nothing
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


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
    monkeypatch.setattr(_tuning, "measure", lambda op, spec, names, threads, budget_s=None:
                        {n: 0.0 for n in names})
    monkeypatch.setattr(_calibrate, "_parallel_overhead", lambda make_spec, threads: 0.0)
    seen = []

    def timed(op, spec, names, threads, rounds=2, repeat=3):
        seen.append(threads)
        return {n: (0.01 if threads == 1 else 0.015) * fakes[n].estimate(spec, op, threads)
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


def test_thread_counts_keep_separate_tuning_files(fakes):
    s = spec()
    with fastconv.config(mode="autotune", n_threads=1):
        assert _dispatch.decide("forward", s).decided_by == "tuning-cache"
    with fastconv.config(mode="autotune", n_threads=2):
        assert _dispatch.decide("forward", s).decided_by == "tuning-cache"
    with fastconv.config(mode="cache-only", n_threads=1):
        _dispatch.clear_memo()
        assert _dispatch.decide("forward", s).decided_by == "tuning-cache"
    folder = _tuning.cache_dir()
    lv = _cpu.level()
    assert sorted(os.listdir(folder)) == [f"tuning-{lv}-t1.json", f"tuning-{lv}-t1.json.lock",
                                          f"tuning-{lv}-t2.json", f"tuning-{lv}-t2.json.lock"]


def test_readme_config_example_is_valid(tmp_path):
    readme = os.path.join(REPO_ROOT, "README.md")
    if not os.path.exists(readme):
        pytest.skip("README.md not beside the tests")
    text = open(readme).read()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.toml"
    path.write_text(block)
    values = read_config_file(path)
    assert values["mode"] == "autotune" and values["rules"][0].strategy == "fft"
