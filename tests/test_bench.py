"""`fastconv bench` on tiny layers: files written, JSON schema, no-matplotlib path."""
import copy
import json
import sys
import time

import pytest

import fastconv
from fastconv.bench import layers as _layers
from fastconv.bench import run as _run
from fastconv.bench.schema import load_schema, validate_results
from fastconv.bench.timing import time_interleaved
from fastconv.cli import main


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
    assert validate_results(obj)
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
    validate_results(obj)
    assert obj["plots"] == []
    assert "matplotlib" in obj["plots_skipped"]
    assert {r["impl"] for r in obj["results"]} == {"direct", "auto"}
    assert "Plots skipped" in (out / "report.md").read_text()
    assert not list(out.glob("*.png"))
    assert "plots skipped" in capsys.readouterr().out


def test_validator_rejects_bad_results(tmp_path):
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


def test_results_validate_with_jsonschema_too(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    _run.run(size="tiny", names=["conv3d"], ops=("grad_weight",), peers=(),
               out=str(tmp_path), repeat=1, sweep=False, plots=False)
    jsonschema.validate(_load(tmp_path), load_schema())


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
