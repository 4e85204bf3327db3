"""`fastconv bench` on tiny layers: files written, JSON schema, no-matplotlib path, the
other suites' hook, missing peers, the report's opening, a fourth strategy."""
import copy
import importlib.util
import io
import json
import os
import sys
import time
import types

import pytest

import fastconv
from fastconv.bench import layers as _layers
from fastconv.bench import run as _run
from fastconv.bench.schema import validate_results
from fastconv.bench.timing import LOADED_FACTOR, time_interleaved
from fastconv.cli import main


def _valid(obj):
    """validate_results where jsonschema (the bench extra) is installed; with the test
    extra alone the run itself skips the check and says so."""
    if importlib.util.find_spec("jsonschema") is None:
        return True
    return validate_results(obj)


def _load(out):
    with open(out / "results.json") as f:
        return json.load(f)


def test_bench_tiny_writes_report_json_and_plots(tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["bench", "--size", "tiny", "--layer", "resnet3x3-56", "--layer", "conv1d",
               "--repeat", "1", "--max-time", "0.5", "--out", str(out)])
    assert rc == 0
    assert (out / "report.md").is_file()
    obj = _load(out)
    assert _valid(obj)
    assert obj["suite"] == "tiny"
    assert {lay["name"] for lay in obj["layers"]} == {"resnet3x3-56", "conv1d"}
    impls = {r["impl"] for r in obj["results"]}
    assert set(fastconv.strategies()) | {"auto"} <= impls
    # every (layer, op) pair has a summary row; auto names the strategy it chose
    assert len(obj["summary"]) == 2 * 3
    for r in obj["results"]:
        if r["impl"] == "auto" and r["status"] == "ok":
            assert r["chosen"] in fastconv.strategies()
        if r["status"] == "ok":
            assert r["best_s"] > 0 and len(r["times_s"]) >= 1
    assert {s["name"] for s in obj["sweeps"]} == {"kernel", "input"}
    report = (out / "report.md").read_text()
    for text in ("# fastconv benchmark report", "resnet3x3-56", "conv1d", "regret",
                 "GFLOP/s", "Ceiling", obj["machine"]["cpu"]):
        assert text in report
    assert "[" in capsys.readouterr().out  # progress lines "[ i/n]"
    if obj["machine"]["matplotlib"]:
        assert obj["plots"] and obj["plots_skipped"] is None
        for p in obj["plots"]:
            assert (out / p).stat().st_size > 0
            assert f"({p})" in report


def test_bench_without_matplotlib(tmp_path, monkeypatch, capsys):
    # an entry of None in sys.modules makes `import matplotlib` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    out = tmp_path / "r"
    rc = main(["bench", "--size", "tiny", "--layer", "pointwise", "--op", "forward",
               "--strategy", "direct", "--strategy", "auto", "--no-peers", "--no-sweep",
               "--repeat", "1", "--out", str(out)])
    assert rc == 0
    obj = _load(out)
    _valid(obj)
    assert obj["plots"] == []
    assert "matplotlib" in obj["plots_skipped"]
    assert {r["impl"] for r in obj["results"]} == {"direct", "auto"}
    assert "Plots skipped" in (out / "report.md").read_text()
    assert not list(out.glob("*.png"))
    assert "plots skipped" in capsys.readouterr().out


def test_validator_rejects_bad_results(tmp_path):
    pytest.importorskip("jsonschema")
    _run.run(size="tiny", names=["depthwise"], ops=("forward",), impls=["direct"], peers=(),
               out=str(tmp_path), repeat=1, sweep=False, plots=False)
    good = _load(tmp_path)
    validate_results(good)
    bad = copy.deepcopy(good)
    del bad["ceiling"]
    with pytest.raises(ValueError, match="ceiling"):
        validate_results(bad)
    bad = copy.deepcopy(good)
    bad["results"][0]["status"] = "fine"
    with pytest.raises(ValueError, match=r"results\[0\]\.status"):
        validate_results(bad)
    bad = copy.deepcopy(good)
    bad["results"][0]["best_s"] = "fast"
    with pytest.raises(ValueError, match="best_s"):
        validate_results(bad)
    bad = copy.deepcopy(good)
    bad["schema"] = "fastconv-bench/0"
    with pytest.raises(ValueError):
        validate_results(bad)


def test_time_interleaved():
    calls = []

    def boom():
        raise RuntimeError("nope")

    times, warm, errors = time_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b"), "c": boom}, repeat=3)
    assert len(times["a"]) >= 3 and len(times["b"]) >= 3
    assert set(warm) == {"a", "b"} and isinstance(errors["c"], RuntimeError)
    # warm-ups, then interleaved rounds whose order rotates (no one always goes first)
    assert calls[:6] == ["a", "b", "b", "a", "a", "b"]
    # a call slower than max_time runs once: its warm-up is its only sample
    slow = []
    times, warm, _ = time_interleaved(
        {"slow": lambda: slow.append(time.sleep(0.02)), "fast": lambda: None},
        repeat=3, max_time=0.01)
    assert len(slow) == 1 and times["slow"] == [warm["slow"]]
    assert len(times["fast"]) >= 3


@pytest.mark.parametrize("size", _layers.SIZES)
def test_layer_table_is_valid(size):
    lays = _layers.layers(size)
    assert tuple(lay.name for lay in lays) == _layers.LAYER_NAMES
    for lay in lays:
        spec = lay.spec()
        assert spec.macs > 0 and lay.size == size
        assert lay.input_shape[1] == spec.in_channels
    for pts in _layers.sweep_layers(size).values():
        for _, lay in pts:
            assert lay.spec().out_spatial == lay.spatial  # "same" padding


def test_layer_selection():
    assert [lay.name for lay in _layers.layers("quick", ndims=[1])] == ["conv1d", "long1d-causal"]
    assert len(_layers.layers("full", ["resnet 3x3"])) == 2  # by group
    with pytest.raises(ValueError, match="unknown layer"):
        _layers.layers("quick", ["nope"])
    assert _layers.too_big("direct", _layers.get_layer("long1d-causal", "full").spec())
    assert _layers.too_big("direct", _layers.get_layer("long1d-causal", "quick").spec()) is None


def test_bench_cli_errors_and_list(capsys):
    assert main(["bench", "--strategy", "nope"]) == 2
    assert "unknown strategy" in capsys.readouterr().err
    assert main(["bench", "--layer", "nope"]) == 2
    assert main(["bench", "--list", "--full"]) == 0
    assert "long1d-causal" in capsys.readouterr().out


# --- other suites (fastconv bench --suite torch|dask): the lazy hook -----------------
def test_suite_hook_calls_run_suite(monkeypatch, tmp_path, capsys):
    seen = {}

    def run_suite(out_dir, *, size, n_threads, progress):
        seen.update(out_dir=out_dir, size=size, n_threads=n_threads)
        progress("step one", 1, 2)
        progress("a note without a count")
        progress("step two", 2, 2)
        path = tmp_path / "torch.md"
        path.write_text("# stand-in\n")
        return str(path)

    monkeypatch.setitem(sys.modules, "fastconv.bench.suite_torch",
                        types.SimpleNamespace(run_suite=run_suite))
    assert main(["bench", "--suite", "torch", "--size", "tiny", "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    assert seen == {"out_dir": str(tmp_path), "size": "tiny", "n_threads": 1}
    out = capsys.readouterr().out
    assert "step two" in out and "a note without a count" in out
    assert out.splitlines()[-1] == f"wrote {tmp_path / 'torch.md'}"


def test_suite_missing_dependency_is_one_line(monkeypatch, tmp_path, capsys):
    # a real suite module on the package path whose optional dependency is missing
    (tmp_path / "suite_dask.py").write_text("import fastconv_no_such_dependency\n")
    # first on the path: it shadows the real suite_dask (whose dependencies may be installed)
    monkeypatch.setattr(fastconv.bench, "__path__", [str(tmp_path), *fastconv.bench.__path__])
    monkeypatch.delitem(sys.modules, "fastconv.bench.suite_dask", raising=False)
    assert main(["bench", "--suite", "dask"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fastconv: error: the dask suite needs")
    assert "fastconv_no_such_dependency" in err[0] and 'pip install "fastconv[dask]"' in err[0]

    def run_suite(out_dir, **kw):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setitem(sys.modules, "fastconv.bench.suite_torch",
                        types.SimpleNamespace(run_suite=run_suite))
    assert main(["bench", "--suite", "torch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs torch" in err and "fastconv[torch]" in err


def test_suite_not_installed(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastconv.bench.suite_dask", None)
    assert main(["bench", "--suite", "dask"]) == 2
    assert "not part of this installation" in capsys.readouterr().err
    assert main(["bench", "--suite", "dask", "--layer", "conv1d", "--list"]) == 2
    assert "--layer, --list select(s) within the layers suite" in capsys.readouterr().err


# --- missing peers, the report's opening, a fourth strategy --------------------------
def test_missing_torch_is_said_first_and_last(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    out = tmp_path / "r"
    assert main(["bench", "--size", "tiny", "--layer", "conv1d", "--op", "forward",
                 "--strategy", "direct", "--strategy", "auto", "--no-sweep", "--no-plots",
                 "--repeat", "1", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line in (lines[0], lines[-1]):
        assert "PyTorch" in line and "pip install torch==2.13.0" in line
        assert "SciPy" not in line  # scipy is installed: not listed as missing
    obj = _load(out)
    assert obj["machine"]["torch"] is None
    assert {r["impl"] for r in obj["results"]} >= {"direct", "auto"}
    assert "torch" not in {r["impl"] for r in obj["results"]}
    report = (out / "report.md").read_text()
    opening = report.split("## This run")[0]
    assert "PyTorch** was not timed: it is not installed" in opening


class _Fourth:
    """A fourth registered strategy (as Winograd will be), running the direct kernels."""

    name = "fourth"

    def __getattr__(self, attr):
        return getattr(fastconv._strategies._REGISTRY_DIRECT, attr)


@pytest.fixture
def four_strategies(monkeypatch):
    from fastconv import _dispatch, _strategies

    monkeypatch.setattr(_strategies, "_REGISTRY_DIRECT", _strategies.get("direct"), raising=False)
    monkeypatch.setattr(_strategies, "_REGISTRY", {**_strategies._REGISTRY, "fourth": _Fourth()})
    _dispatch.clear_memo()
    yield
    _dispatch.clear_memo()


def test_a_fourth_strategy_appears_everywhere(four_strategies, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    labels = []
    real_plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, *a, **kw: labels.append(kw.get("label"))
                        or real_plot(self, *a, **kw))
    obj = _run.run(size="tiny", names=["resnet3x3-14"], peers=(), out=str(tmp_path),
                   repeat=1, stream=io.StringIO())
    assert obj["machine"]["strategies"] == list(fastconv.strategies())
    assert "fourth" in obj["machine"]["strategies"]
    for op in ("forward", "grad_input", "grad_weight"):
        impls = {r["impl"] for r in obj["results"] if r["op"] == op and r["status"] == "ok"}
        assert impls >= set(fastconv.strategies()) | {"auto"}
    for sw in obj["sweeps"]:
        assert "fourth" in {pt["impl"] for pt in sw["points"]}
    report = (tmp_path / "report.md").read_text()
    for op in ("forward", "grad_input", "grad_weight"):
        assert f"| {op} | fourth |" in report
    assert "| fourth |" in report.split("## Crossovers")[1].splitlines()[4]  # sweep header
    assert labels.count("fourth") == len(obj["sweeps"])  # one line per sweep plot


def _summary_row(layer, op, best, auto, choice, torch_ratio):
    return {"layer": layer, "op": op, "best": best, "best_s": 1e-3, "auto": auto,
            "auto_s": 1e-3 * choice, "regret": choice, "choice_regret": choice,
            "torch_s": 1e-3 / torch_ratio, "torch_ratio": torch_ratio}


def test_recommendation_comes_from_the_data():
    from fastconv.bench.report import recommendation

    obj = {"machine": {"threads": 2, "torch": "2.13.0"}, "summary": [
        _summary_row("a", "forward", "fft", "fft", 1.0, 0.5),
        _summary_row("a", "grad_input", "fft", "direct", 1.5, 0.8),
        _summary_row("b", "forward", "winograd", "winograd", 1.02, 2.0),
    ]}
    text = "\n".join(recommendation(obj))
    assert "**fft** in 2 (a); **winograd** in 1 (b)" in text
    assert "within 10% of it in 2 of 3 cases" in text
    assert "a grad_input, direct 1.50x the time of fft" in text
    assert "faster in 2 of 3 cases" in text
    assert f"{(0.5 * 0.8 * 2.0) ** (1 / 3):.2f}" in text  # geometric mean of the ratios
    assert "Best: a forward (0.50); worst: b forward (2.00)" in text
    assert "regret* below 1" in text and "noise" in text
    obj["summary"] = [dict(s, best="direct") for s in obj["summary"]]
    assert "**direct** in 3 (a, b)" in "\n".join(recommendation(obj))


def test_report_names_layers_by_their_shapes(tmp_path):
    obj = _run.run(size="tiny", names=["resnet3x3-56", "long1d-causal"], ops=("forward",),
                   impls=["direct"], peers=(), out=str(tmp_path), repeat=1, sweep=False,
                   plots=False, stream=io.StringIO())
    report = (tmp_path / "report.md").read_text()
    for info in obj["layers"]:
        shape = "x".join(map(str, info["input_shape"]))
        assert f"| {info['name']} | in {shape}, w " in report  # summary row
        assert f"### {info['name']}: in {shape}, w " in report  # layer heading
    assert "groups 2" in report  # long1d-causal is depthwise in its tiny size
    assert report.index("## In short") < report.index("## This run")


# --- honest under load: spread, load, noisy cases, re-runs, a disturbed ceiling -------
def test_each_case_has_its_spread_and_load(tmp_path, capsys):
    obj = _run.run(size="tiny", names=["conv1d"], ops=("forward",), impls=["direct", "auto"],
                   peers=(), out=str(tmp_path), repeat=3, sweep=False, plots=False)
    _valid(obj)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and all(" spread " in line for line in lines)
    for r in obj["results"]:
        assert r["spread"] == pytest.approx(r["median_s"] / r["best_s"])
        assert r["noisy"] == (r["spread"] > 1.25 or _run.loaded(r)) and r["rerun"] is False
        if obj["machine"]["loadavg_start"] is not None:
            assert r["loadavg"] is not None and f"load {r['loadavg']:.1f}" in lines[0] + lines[1]
    c = obj["ceiling"]
    assert len(c["times_s"]) >= 3 and c["spread"] >= 1 and c["recheck_gflops"] > 0
    report = (tmp_path / "report.md").read_text()
    assert "| spread | load |" in report and "**Noise:**" in report


def _fake_timings(monkeypatch, rounds, load=0.5):
    """time_interleaved returning, call after call, the given {index: times} rounds,
    at a 1-minute load average of ``load``."""
    calls = []
    monkeypatch.setattr(_run, "loadavg", lambda: load)
    monkeypatch.setattr(_run, "cpu_snapshot", lambda: None)  # judged by ``load`` alone

    def fake(fns, repeat=5, max_time=None, min_time=0.0):
        for fn in fns.values():
            fn()
        times = rounds[min(len(calls), len(rounds) - 1)]
        calls.append(times)
        return ({i: list(times(i)) for i in fns}, {i: 1e-3 for i in fns}, {})

    monkeypatch.setattr(_run, "time_interleaved", fake)
    return calls


QUIET = lambda i: [1e-3 * (i + 1)] * 3  # noqa: E731  (auto is index 1: as fast as... )
NOISY = lambda i: [1e-3 * (i + 1), 2e-3 * (i + 1), 2e-3 * (i + 1)]  # noqa: E731


def test_a_noisy_group_is_timed_again_and_the_quieter_timing_kept(tmp_path, monkeypatch):
    calls = _fake_timings(monkeypatch, [NOISY, QUIET])
    obj = _run.run(size="tiny", names=["conv1d"], ops=("forward",), impls=["direct", "auto"],
                   peers=(), out=str(tmp_path), repeat=3, sweep=False, plots=False,
                   stream=io.StringIO(), rerun=True)
    assert len(calls) == 2
    assert all(r["rerun"] and not r["noisy"] and r["spread"] == 1.0 for r in obj["results"])
    assert obj["summary"][0]["noisy"] is False


def test_cases_timed_on_a_loaded_machine_are_noisy(tmp_path, monkeypatch):
    """Oversubscribed cores slow some strategies steadily: a small spread at a load
    above LOADED_FACTOR x the CPUs is still not evidence for a choice."""
    _fake_timings(monkeypatch, [QUIET], load=LOADED_FACTOR * (os.cpu_count() or 1) + 1)
    obj = _run.run(size="tiny", names=["conv1d"], ops=("forward",), impls=["direct", "auto"],
                   peers=(), out=str(tmp_path), repeat=3, sweep=False, plots=False,
                   stream=io.StringIO(), rerun=True)
    assert all(r["noisy"] and r["spread"] == 1.0 for r in obj["results"])
    assert all(s["noisy"] for s in obj["summary"])
    assert "other processes" in (tmp_path / "report.md").read_text()


def test_other_processes_cpu_share_is_measured_and_judged():
    from fastconv.bench.machine import cpu_snapshot, others_share

    a = cpu_snapshot()
    t = time.perf_counter()
    while time.perf_counter() - t < 0.2:  # this process's own work is not "others"
        pass
    share = others_share(a, cpu_snapshot())
    if a is not None:
        assert share is not None and 0 <= share <= 1
    assert others_share(None, a) is None
    assert _run.loaded({"others_cpu": 0.6, "loadavg": 0.1})
    assert not _run.loaded({"others_cpu": 0.05, "loadavg": 99})
    assert _run.loaded({"others_cpu": None, "loadavg": LOADED_FACTOR * (os.cpu_count() or 1) + 1})


def test_noisy_cases_are_marked_and_left_out_of_the_summary(tmp_path, monkeypatch):
    calls = _fake_timings(monkeypatch, [NOISY])
    obj = _run.run(size="tiny", names=["conv1d", "pointwise"], ops=("forward",),
                   impls=["direct", "auto"], peers=(), out=str(tmp_path), repeat=3,
                   sweep=False, plots=False, stream=io.StringIO(), rerun=True)
    assert len(calls) == 4  # each of the two groups timed twice
    assert all(r["noisy"] and r["rerun"] for r in obj["results"])
    assert all(s["noisy"] for s in obj["summary"])
    _valid(obj)
    opening = (tmp_path / "report.md").read_text().split("## This run")[0]
    assert "Every case was noisy" in opening and "within 10%" not in opening
    assert "| noisy |" in (tmp_path / "report.md").read_text()


def test_recommendation_counts_only_quiet_cases():
    from fastconv.bench.report import recommendation

    rows = [_summary_row("a", "forward", "fft", "fft", 1.0, 0.5),
            _summary_row("a", "grad_input", "fft", "direct", 1.5, 0.8),
            _summary_row("b", "forward", "winograd", "direct", 1.6, 2.0)]
    rows[2]["noisy"] = True  # its mis-pick rests on noise
    obj = {"machine": {"threads": 2, "torch": "2.13.0"}, "ceiling": {"gflops": 100.0},
           "summary": rows}
    text = "\n".join(recommendation(obj))
    assert "**fft** in 2 (a)" in text and "winograd" not in text.split("noisy case")[0]
    assert "within 10% of it in 1 of 2 quiet cases (1 noisy cases not counted)" in text
    assert "faster in 2 of 2 quiet cases" in text
    assert "1 noisy case(s) not counted above** (b forward)" in text
    assert "ceiling" not in text.lower()


def test_a_disturbed_ceiling_is_said(tmp_path, monkeypatch):
    from fastconv.bench import timing

    seen = []

    def ceiling(n=1024, repeat=5):
        seen.append(n)
        g = 40.0 if len(seen) == 1 else 199.0  # a transient at the start
        best = 2.0 * n ** 3 / g / 1e9
        return {"n": n, "gflops": g, "best_s": best, "times_s": [best] * 3, "spread": 1.0}

    monkeypatch.setattr(_run, "matmul_ceiling", ceiling)
    out = io.StringIO()
    obj = _run.run(size="tiny", names=["conv1d"], ops=("forward",), impls=["direct"], peers=(),
                   out=str(tmp_path), repeat=1, sweep=False, plots=False, stream=out)
    c = obj["ceiling"]
    assert len(seen) == 2 and c["gflops"] == 199.0 and c["recheck_gflops"] == 199.0
    assert "differ 4.97x" in c["disturbed"]
    r = obj["results"][0]
    assert r["ceiling_fraction"] == pytest.approx(r["gflops"] / 199.0)
    assert "DISTURBED" in out.getvalue()
    opening = (tmp_path / "report.md").read_text().split("## This run")[0]
    assert "The ceiling measurement was disturbed" in opening and "199.0 GFLOP/s" in opening
    assert timing.spread([1.0, 1.3, 1.5]) == pytest.approx(1.3)
    assert timing.spread([1.0]) is None


def test_sweep_tables_name_the_sweep_layer(tmp_path):
    obj = _run.run(size="tiny", names=["conv1d"], ops=("forward",), impls=["direct"], peers=(),
                   out=str(tmp_path), repeat=1, plots=False, stream=io.StringIO())
    lay = _layers.sweep_layers("tiny")["kernel"][0][1]
    want = f"batch {lay.batch}, {lay.in_channels} -> {lay.out_channels} channels"
    assert [sw["layer"][:len(want)] for sw in obj["sweeps"]] == [want, want]
    assert "input " in obj["sweeps"][0]["layer"] and "kernel " in obj["sweeps"][1]["layer"]
    _valid(obj)
    report = (tmp_path / "report.md").read_text()
    assert report.count(f"({want}") == 2


def test_sweep_plot_titles_name_the_sweep_layer(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    from fastconv.bench.plots import write_plots

    titles = []
    real = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, t, *a, **kw: titles.append(t) or real(self, t, *a, **kw))
    point = {"x": 3, "layer": "sweep-k3", "impl": "direct", "status": "ok", "best_s": 1e-3}
    obj = {"suite": "tiny", "layers": [], "sweeps": [
        {"name": "kernel", "x_label": "kernel size", "op": "forward", "points": [point],
         "layer": "batch 2, 8 -> 8 channels, input 16x16, stride 1, same padding"}]}
    write_plots(obj, str(tmp_path))
    assert titles and "batch 2, 8 -> 8 channels, input 16x16" in titles[0]


def test_progress_to_a_file_is_whole_lines(tmp_path):
    """`fastconv bench > log 2>&1`: no bar redraws between the per-case lines."""
    import os
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastconv.__file__)))
    log = tmp_path / "log"
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-m", "fastconv", "bench", "--size", "tiny",
                            "--layer", "conv1d", "--op", "forward", "--no-peers", "--no-sweep",
                            "--no-plots", "--repeat", "2", "--out", str(tmp_path / "r")],
                           stdout=f, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
                           timeout=300)
    text = log.read_text()
    assert r.returncode == 0, text
    assert "\r" not in text and "%|" not in text
    cases = [line for line in text.splitlines() if line.startswith("[")]
    n = len(fastconv.strategies()) + 1
    assert len(cases) == n and cases[-1].startswith(f"[{n}/{n}, ")
    assert all(" ms " in line or "skipped" in line for line in cases)


def test_a_run_without_torch_says_so_even_when_every_case_was_noisy():
    from fastconv.bench import report

    obj = {"summary": [{"layer": "conv1d", "op": "forward", "best": "direct", "noisy": True}],
           "machine": {"torch": None, "threads": 2}}
    lines = report.recommendation(obj)
    assert lines[0].startswith("- **Every case was noisy**")
    assert any("PyTorch** was not timed: it is not installed" in ln for ln in lines)
