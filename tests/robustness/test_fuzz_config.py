"""Fuzz (hypothesis) the option values, config files and cache files.

Whatever they hold, a call through the public API raises nothing but
ConfigError / ValueError / TypeError / MemoryError, loading ``$FASTCONV_CONFIG``
(what ``import fastconv`` does) raises nothing at all, and a bad cache file is
warned about once and ignored. Crashes are covered by the child-process tests
in tests/config (test_threads.py, test_config_file.py); values here stay
in-process-safe because the options are validated before any kernel runs.
"""
from __future__ import annotations

import atexit
import itertools
import json
import math
import os
import shutil
import tempfile
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastconv  # noqa: E402
from fastconv import _config, _configfile, _cpu, _dispatch, _tuning  # noqa: E402

ALLOWED = (fastconv.ConfigError, ValueError, TypeError, MemoryError)
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
_TMP = tempfile.mkdtemp(prefix="fastconv-fuzz-")
atexit.register(shutil.rmtree, _TMP, True)
_counter = itertools.count()
X = np.ones((2, 2, 9, 8), np.float32)
W = np.ones((3, 2, 3, 3), np.float32)


def _fresh_dir():
    d = os.path.join(_TMP, f"d{next(_counter)}")
    os.makedirs(d)
    return d


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """Fast fake timings, a private cache, process-wide options restored."""
    monkeypatch.setattr(_tuning, "time_call", lambda fn, **kw: (fn(), 1e-3)[1])
    monkeypatch.setenv("FASTCONV_CACHE_DIR", os.path.join(_TMP, "cache"))
    saved = _config._global
    _config._global = _config.Options()  # another test may have loaded a config file
    yield
    _config._global = saved
    _dispatch.clear_memo()


def _call_all(backward=True):
    fastconv.conv2d(X, W, padding=1)
    fastconv.explain("forward", X.shape, W.shape, padding=1)
    if backward:
        gy = np.ones(fastconv.output_shape(X.shape, W.shape, padding=1), np.float32)
        fastconv.conv_backward(X, W, gy, padding=1)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(0, 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["auto", "direct", "im2col", "fft", "heuristic", "autotune", "cache-only",
                     "64MiB", "1.5GB", "0B", "1e999GiB", "-1", "/proc/fastconv", "~/x"]),
    st.binary(max_size=4), st.builds(np.int64, st.integers(-5, 100)),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.text(max_size=5), scalars, max_size=2))
OPTION_NAMES = ["strategy", "mode", "memory_budget", "n_threads", "allow_fft", "fft_rtol",
                "cache_dir", "fft_max_stride", "rules", "bogus"]


def _cache_dir_value(v):
    # never let a random relative path create folders in the working directory
    return os.path.join(_TMP, "cd", v) if isinstance(v, str) and not v.startswith("/") else v


@settings(SETTINGS, max_examples=25)
@given(st.dictionaries(st.sampled_from(OPTION_NAMES), values, max_size=4))
def test_fuzz_option_values(kw):
    if "cache_dir" in kw:
        kw["cache_dir"] = _cache_dir_value(kw["cache_dir"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with fastconv.config(**kw):
                _call_all()
        except ALLOWED:
            pass


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (bytes, type(None))):
        return json.dumps(str(v))
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise AssertionError(v)


RULE_KEYS = ["strategy", "op", "ndim", "dtype", "kernel", "spatial", "channels", "batch",
             "stride", "groups", "bogus"]
config_texts = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.builds(
        lambda top, rules: "".join(f"{k} = {_toml_value(v)}\n" for k, v in top.items())
        + "".join("[[rules]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in r.items())
                  for r in rules),
        st.dictionaries(st.sampled_from(OPTION_NAMES[:-2] + ["bogus"]), values, max_size=4),
        st.lists(st.dictionaries(st.sampled_from(RULE_KEYS), values, max_size=4), max_size=2)),
)


@SETTINGS
@given(config_texts, st.sampled_from(["fastconv.toml", "pyproject.toml"]),
       st.sampled_from(["utf-8", "utf-16"]))
def test_fuzz_config_files(text, name, encoding):
    d = _fresh_dir()
    path = os.path.join(d, name)
    if name == "pyproject.toml" and not text.startswith("["):
        text = "[tool.fastconv]\n" + text
    with open(path, "wb") as f:
        f.write(text.encode(encoding, errors="replace"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.environ["FASTCONV_CONFIG"] = path
        try:
            _configfile.load_env_config()  # what `import fastconv` does: never raises
        finally:
            del os.environ["FASTCONV_CONFIG"]
        try:
            fastconv.load_config(path)
        except fastconv.ConfigError:
            return
        try:
            _call_all()
        except ALLOWED:
            pass


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10**20),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
              st.sampled_from(["direct", "im2col", "fft"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["strategy", "seconds", "direct",
                                                             "fft", "x"]), inner, max_size=3)),
    max_leaves=8)


def _calibration_keys():
    keys = []
    for s in fastconv.strategies():
        for op in ("forward", "grad_input", "grad_weight"):
            keys += [f"{s}|{op}|2d|float32", f"{s}|{op}|overhead"]
    return keys


@settings(SETTINGS, max_examples=30)
@given(st.sampled_from(["calibration", "tuning"]),
       st.one_of(st.dictionaries(st.one_of(st.sampled_from(_calibration_keys()),
                                           st.just("TUNING_KEY"), st.text(max_size=6)),
                                 json_values, max_size=4),
                 json_values, st.binary(max_size=40)),
       st.sampled_from(["heuristic", "cache-only", "autotune"]))
def test_fuzz_cache_files(which, entries, mode):
    d = _fresh_dir()
    threads = fastconv.get_config().threads
    path = os.path.join(d, f"{which}-{_cpu.level()}-t{threads}.json")
    spec = fastconv.make_spec(X.shape, W.shape, padding=1, dtype=np.float32)
    if isinstance(entries, dict):
        entries = {(_tuning.problem_key("forward", spec, threads) if k == "TUNING_KEY" else k): v
                   for k, v in entries.items()}
    if isinstance(entries, bytes):
        raw = entries
    else:
        raw = json.dumps({"format": _tuning.FORMAT, "validators": _tuning.validators(threads),
                          "entries": entries}).encode()
    with open(path, "wb") as f:
        f.write(raw)
    check = (_tuning.check_calibration_entry if which == "calibration"
             else _tuning.check_tuning_entry)
    bad = not isinstance(entries, dict) or any(check(k, v) for k, v in entries.items())
    read = which == "calibration" or mode != "heuristic"  # heuristic never reads tuning
    _tuning._warned.clear()
    _dispatch.clear_memo()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with fastconv.config(cache_dir=d, mode=mode):
            for _ in range(2):
                try:
                    _call_all(backward=False)
                except ALLOWED:
                    pass
                _dispatch.clear_memo()
    about_file = [str(r.message) for r in rec if path in str(r.message)]
    assert len(about_file) == (1 if bad and read else 0), (entries, about_file)
