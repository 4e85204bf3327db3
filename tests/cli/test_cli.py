"""The command line: help, --version, one-line errors (exit 2), shapes, demo, tune's progress."""
import argparse
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from _helpers import run_child

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


def _child_env():
    """The environment of a child ``python -m fastconv`` that imports the package this
    test imported (the installed one; a checkout's when it is not installed) and never
    the uncompiled sources of the cwd."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    return env


def test_error_in_a_real_process_has_no_traceback(tmp_path):
    # cwd outside the source tree: `-m` puts the cwd first on sys.path
    r = subprocess.run([sys.executable, "-m", "fastconv", "explain", "forward", "--input",
                        "(8, 3, 9, 9)", "--weight", "4,2,3,3"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env=_child_env())
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


def test_tune_calibrate_draws_a_progress_bar(tiny_calibration, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    _dispatch._memo["stale"] = "decision"
    assert main(["tune", "--calibrate"]) == 0
    cap = capsys.readouterr()
    steps = len(fastconv._spec.OPS) * 2  # one problem, two dtypes
    assert f"[{steps}/{steps}] measured {steps} of {steps} grid steps" in cap.err
    assert cap.out.count("\n") == 1 and cap.out.startswith("wrote ")
    # tqdm's bar on stderr, with its count and rate/ETA fields
    assert "calibrate" in cap.err and f"{steps}/{steps}" in cap.err and "<" in cap.err
    # the on_cache_change hook cleared the dispatcher's memo of decisions
    assert "stale" not in _dispatch._memo
    assert main(["tune", "--show"]) == 0
    assert "direct|forward|1d|float64" in capsys.readouterr().out


@pytest.mark.parametrize("why", ["no tqdm", "stderr not a terminal"])
def test_progress_without_a_bar_prints_whole_lines_with_eta(why, monkeypatch, capsys):
    if why == "no tqdm":
        monkeypatch.setitem(sys.modules, "tqdm", None)
        monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    else:  # a log file: a bar's redraws would land between the lines
        monkeypatch.setattr(cli, "_stderr_is_tty", lambda: False)
    p = cli.Progress("x")
    p("first", 1, 2)
    p("a note")
    p("second", 2, 2)
    p.close()
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert re.fullmatch(r"\[1/2, ETA \d+:\d\d\] first", lines[0]), lines
    assert lines[1] == "a note"
    assert re.fullmatch(r"\[2/2, \d+:\d\d elapsed\] second", lines[2]), lines
    assert cap.err == "" and "\r" not in cap.out


class _FakeBar:
    """Enough of tqdm.tqdm to follow what Progress does with a bar."""

    def __init__(self, total, **kw):
        self.total, self.n, self.closed, self.written = total, 0, False, []
        self.file = kw["file"]

    def write(self, text, file=None):
        self.written.append(text)
        print(text, file=file)

    def update(self, k):
        self.n += k
        print(f"bar {self.n}/{self.total}", file=self.file)

    def refresh(self):
        pass

    def close(self):
        self.closed = True


def test_progress_total_may_change(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=_FakeBar))
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    p = cli.Progress("x")
    p("first", 1, 5)
    p("second", 2, 3)  # a time budget cut the run short
    p("done", 3, 3)
    assert p.bar is None  # closed when done reached the new total
    assert "3/3" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fastconv", "bench", "--list", "--size", "tiny",
                        "--ndim", "3"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env=_child_env())
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert names == ["conv3d", "conv3d-volume"]
    assert np.all([("multiply-adds" in line) for line in r.stdout.splitlines()])


# --- explain: ambiguous ranks, --strategy, negative sizes, pointers to help ----------
def test_explain_refuses_a_3d_input_with_a_2d_kernel_naming_both_readings(capsys):
    assert main(["explain", "forward", "--input", "8,3,32", "--weight", "16,3,3,3"]) == 2
    cap = capsys.readouterr()
    err = cap.err.splitlines()
    assert len(err) == 1 and not cap.out
    msg = err[0]
    # what was read ...
    assert "unbatched 2-D example (C_in=8, H=3, W=32)" in msg and "expects C_in=3" in msg
    # ... and what was probably meant: a batched 1-D input (1-D kernel) or a 4-D input
    assert "batch of 8 1-D inputs of 3 channels" in msg and "--weight 16,3,3" in msg
    assert "--input 8,3,32,32" in msg
    assert msg.endswith("(see fastconv explain --help)")


def test_explain_says_when_it_reads_an_unbatched_input(capsys):
    assert main(["explain", "forward", "--input", "3,32,32", "--weight", "16,3,3,3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "input 3,32,32 read as one unbatched example (C_in=3); a batch needs 4 axes"
    assert out[1].startswith("forward: ")


def test_explain_strategy_forces_and_shows_its_estimate(capsys):
    base = ["explain", "forward", "--input", "8,3,32,32", "--weight", "16,3,3,3"]
    assert main(base) == 0
    auto = capsys.readouterr().out.splitlines()
    picked = auto[0].split(":")[1].split()[0]
    other = next(s for s in fastconv.strategies() if s not in (picked, "winograd"))
    assert main(base + ["--strategy", other]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"forward: {other} (decided by argument")
    assert re.match(rf"  {other} +[0-9.]+ ms est  on \d thread\(s\)  workspace", out[1]), out
    assert out[2].startswith(f"auto would pick {picked} (")
    assert main(base + ["--strategy", picked]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith(f"auto picks {picked} too")


@pytest.mark.parametrize("extra, says", [
    (["--strategy", "nope"], "strategy must be 'auto' or one of"),
    (["--strategy", "winograd", "--stride", "2"], "winograd needs stride 1"),
])
def test_explain_strategy_errors(extra, says, capsys):
    assert main(["explain", "forward", "--input", "8,3,32,32", "--weight", "16,3,3,3",
                 *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "(see fastconv explain --help)" in err


@pytest.mark.parametrize("flag, value", [("--input", "-8,3,32,32"), ("--weight", "(-16, 3, 3, 3)"),
                                         ("--input", "8,3,-32,32")])
def test_negative_sizes_are_refused_clearly(flag, value, capsys):
    args = {"--input": "8,3,32,32", "--weight": "16,3,3,3", flag: value}
    assert main(["explain", "forward", *[t for kv in args.items() for t in kv]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected one argument" not in err
    assert f"argument {flag}: negative size -" in err and "must be 0 or more" in err
    assert "(see fastconv explain --help)" in err


def test_negative_padding_reaches_the_library_check(capsys):
    assert main(["explain", "forward", "--input", "8,3,32,32", "--weight", "16,3,3,3",
                 "--padding", "-1"]) == 2
    err = capsys.readouterr().err
    assert "padding" in err and ">= 0" in err and "(see fastconv explain --help)" in err


def test_help_points_only_to_what_is_installed(capsys):
    parser = cli.build_parser()
    texts = [parser.format_help()] + [p.format_help() for p in _subparsers(parser).values()
                                      if p.add_help]
    for text in texts:
        assert "docs/" not in text and "README" not in text and ".md" not in text
    assert "python -m pydoc fastconv" in " ".join(texts[0].split())


def test_info_prints_the_budget_human_readable(capsys):
    with fastconv.config(memory_budget=256 << 20):
        assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "memory budget: 256 MiB (268435456 bytes)" in out


@pytest.mark.parametrize("argv, says", [
    (["tune", "--show", "--quick"], "go with --calibrate"),
    (["tune", "--calibrate", "--quick", "--full"], "not allowed with"),
    (["tune", "--calibrate", "--time-budget", "0"], "positive number of seconds"),
])
def test_tune_option_errors(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "fastconv tune --help" in err


# --- calibration within a time budget ---------------------------------------------
_GRID = [((1, 2, 16), (2, 2, 3), {}), ((1, 2, 8, 8), (2, 2, 3, 3), dict(padding=1)),
         ((1, 2, 16), (2, 2, 5), {}), ((1, 2, 8, 8), (2, 2, 1, 1), {})]


@pytest.fixture
def small_grid(monkeypatch, tmp_path):
    monkeypatch.setattr(_calibrate, "calibration_grid", lambda quick=False: list(_GRID))
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_tuning, "_shipped", {})
    # what is stored, and how, is the cache's business (tested with it); here: what is fitted
    stored = []
    monkeypatch.setattr(_tuning.calibration_cache, "store", lambda opts, f: stored.append(f))
    return stored


def _all_keys(dtypes):
    from fastconv import _strategies
    from fastconv._spec import make_spec

    keys = set()
    for ishape, wshape, kw in _GRID:
        for dtype in dtypes:
            spec = make_spec(ishape, wshape, dtype=dtype, **kw)
            for op in fastconv._spec.OPS:
                keys |= {_tuning._calibration_key(s.name, op, spec.ndim, dtype)
                         for s in _strategies.all_strategies() if s.supports(spec, op) is None}
    return keys


def test_time_budget_cuts_the_grid_but_measures_every_key(small_grid):
    lines = []
    factors = _calibrate.calibrate(dtypes=("float64",), time_budget=1e-6,
                                   progress=lambda m, d=None, t=None: lines.append((m, d, t)))
    # the steps that bring new keys ran (the first problem of each ndim), the rest not
    assert _all_keys(("float64",)) <= set(factors)
    ops = len(fastconv._spec.OPS)
    assert lines[-1][0].startswith(f"measured {2 * ops} of {4 * ops} grid steps")
    assert f"{2 * ops} steps left out" in lines[-1][0]
    assert lines[-1][1] == lines[-1][2] == 2 * ops  # the bar ends complete
    assert all(d <= t for _, d, t in lines)


def test_full_calibration_measures_the_whole_grid(small_grid):
    lines = []
    _calibrate.calibrate(dtypes=("float64",), full=True,
                         progress=lambda m, d=None, t=None: lines.append(m))
    n = 4 * len(fastconv._spec.OPS)
    assert lines[-1] == f"measured {n} of {n} grid steps in {lines[-1].split(' in ')[1]}"
    assert "left out" not in lines[-1]


def test_the_grid_puts_every_strategy_and_dimensionality_first():
    from fastconv import _strategies
    from fastconv._config import get_config
    from fastconv._spec import make_spec

    grid = _calibrate.calibration_grid()
    first = grid[:3]
    assert sorted(len(i) - 2 for i, _, _ in first) == [1, 2, 3]
    for ishape, wshape, kw in first:
        spec = make_spec(ishape, wshape, **kw)
        for op in fastconv._spec.OPS:
            assert all(s.supports(spec, op) is None for s in _strategies.all_strategies())
    steps = _calibrate._plan_steps(grid, ("float32", "float64"), get_config(), make_spec)
    new = [i for i, st in enumerate(steps) if st[5]]
    assert new == list(range(len(new))) and len(new) == 3 * 2 * len(fastconv._spec.OPS)
    assert _calibrate.calibration_grid(quick=True) == grid[:9]


def test_cli_tune_clear_works_with_a_broken_config(tmp_path):
    env = {"FASTCONV_CONFIG": str(tmp_path / "missing.toml"),
           "FASTCONV_CACHE_DIR": str(tmp_path / "cache")}
    rc, out, err = run_child("from fastconv.cli import main; main(['tune', '--clear'])", env=env)
    assert rc == 0, err[-2000:]
