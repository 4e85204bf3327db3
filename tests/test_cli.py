"""The command line: help, --version, one-line errors (exit 2), shapes, demo, tune's progress."""
import argparse
import subprocess
import sys
import types

import numpy as np
import pytest

import fastconv
from fastconv import _calibrate, _dispatch, _tuning, cli
from fastconv.cli import main, parse_param, parse_shape


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_no_arguments_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastconv")
    for name in ("bench", "explain", "tune", "info", "demo"):
        assert name in out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastconv {fastconv.__version__}"


def test_every_option_has_help():
    parser = cli.build_parser()
    subs = _subparsers(parser)
    assert set(subs) == {"bench", "explain", "tune", "info", "demo"}
    missing = [f"{name} {a.dest}" for name, p in [("fastconv", parser), *subs.items()]
               for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert not missing, missing


@pytest.mark.parametrize("text, want", [
    ("8,32,64,64", (8, 32, 64, 64)), ("(8, 32, 64, 64)", (8, 32, 64, 64)),
    ("[8,32,64]", (8, 32, 64)), ("8x32x64x64", (8, 32, 64, 64)), (" (5,) ", (5,)),
])
def test_parse_shape(text, want):
    assert parse_shape(text) == want


@pytest.mark.parametrize("text", ["", "()", "8,,3", "8,3.5", "8,-3", "a,b", "((8,3))", "8;3"])
def test_parse_shape_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected a shape"):
        parse_shape(text)


def test_parse_param():
    assert parse_param("1") == 1
    assert parse_param("(1, 2)") == parse_param("1,2") == (1, 2)
    assert parse_param("[1, 2]") == (1, 2)
    assert parse_param("((1,1),(0,2))") == ((1, 1), (0, 2))
    assert parse_param("same") == "same"
    with pytest.raises(argparse.ArgumentTypeError):
        parse_param("(1,")


def test_explain_accepts_both_shape_forms(capsys):
    args = ["explain", "grad_input", "--weight", "6,3,3,2", "--stride", "(2, 1)",
            "--padding", "((1,0),(0,1))", "--dtype", "float64"]
    assert main(args + ["--input", "2,3,9,7"]) == 0
    a = capsys.readouterr().out
    assert main(args + ["--input", "(2, 3, 9, 7)"]) == 0
    b = capsys.readouterr().out
    assert a == b and a.startswith("grad_input: ")


@pytest.mark.parametrize("argv, says", [
    (["nope"], "invalid choice"),
    (["explain", "forward", "--input", "8,3,a", "--weight", "4,3,3,3"], "--input"),
    (["explain", "forward", "--weight", "4,3,3,3"], "--input"),
    (["explain", "forward", "--input", "8,3,9,9", "--weight", "4,2,3,3"], "input channels"),
    (["bench", "--repeat", "0"], "--repeat"),
    (["bench", "--threads", "-1"], "--threads"),
    (["bench", "--layer", "nope", "--list"], "unknown layer"),
    (["bench", "--strategy", "nope"], "unknown strategy"),
    (["tune"], "one of the arguments"),
])
def test_errors_are_one_line_with_status_2(argv, says, capsys):
    assert main(argv) == 2
    cap = capsys.readouterr()
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastconv: error: "), cap.err
    assert says in lines[0] and not cap.out


def test_error_in_a_real_process_has_no_traceback(tmp_path):
    # cwd outside the source tree: `-m` puts the cwd first on sys.path
    r = subprocess.run([sys.executable, "-m", "fastconv", "explain", "forward", "--input",
                        "(8, 3, 9, 9)", "--weight", "4,2,3,3"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("fastconv: error: ") and "Traceback" not in r.stderr


def test_demo_passes_its_arguments_on(monkeypatch):
    seen = []
    demo = types.ModuleType("fastconv.demo")
    demo.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "fastconv.demo", demo)
    assert main(["demo", "--epochs", "2", "-h", "x"]) == 3
    assert main(["demo"]) == 3
    assert seen == [["--epochs", "2", "-h", "x"], []]


def test_demo_missing_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastconv.demo", None)  # import raises ImportError
    assert main(["demo", "--help"]) == 2
    assert capsys.readouterr().err.startswith("fastconv: error: the demo is not part")


@pytest.fixture
def tiny_calibration(monkeypatch, tmp_path):
    monkeypatch.setattr(_calibrate, "calibration_grid",
                        lambda quick=False: [((1, 2, 16), (2, 2, 3), {})])
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_tuning, "_shipped", {})


def test_tune_calibrate_draws_a_progress_bar(tiny_calibration, capsys):
    pytest.importorskip("tqdm")
    _dispatch._memo["stale"] = "decision"
    assert main(["tune", "--calibrate"]) == 0
    cap = capsys.readouterr()
    steps = len(fastconv._spec.OPS) * 2  # one problem, two dtypes
    assert f"[{steps}/{steps}]" in cap.out and "wrote" in cap.out.splitlines()[-1]
    # tqdm's bar on stderr, with its count and rate/ETA fields
    assert "calibrate" in cap.err and f"{steps}/{steps}" in cap.err and "<" in cap.err
    # the on_cache_change hook cleared the dispatcher's memo of decisions
    assert "stale" not in _dispatch._memo
    assert main(["tune", "--show"]) == 0
    assert "direct|forward|1d|float64" in capsys.readouterr().out


def test_progress_without_tqdm_prints_lines(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    p = cli.Progress("x")
    p("first", 1, 2)
    p("a note")
    p("second", 2, 2)
    p.close()
    assert capsys.readouterr().out.splitlines() == ["[1/2] first", "a note", "[2/2] second"]


def test_python_dash_m_runs_the_same_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fastconv", "bench", "--list", "--size", "tiny",
                        "--ndim", "3"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert names == ["conv3d", "conv3d-volume"]
    assert np.all([("multiply-adds" in line) for line in r.stdout.splitlines()])
