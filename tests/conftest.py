"""pytest configuration and the fixtures shared by the test folders.

The helper functions and constants are in _helpers.py (imported by the test
modules as ``from _helpers import ...``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zlib

import numpy as np
import pytest
from _helpers import FakeStrategy

import fastconv
from fastconv import _config, _dispatch, _strategies, _tuning

# With FASTCONV_REQUIRE_EXTRAS=1 (CI sets it) a test skipped because an optional
# package is missing (pytest.importorskip) fails instead: the extras' tests must
# run where the extras are installed, never be skipped silently.
REQUIRE_EXTRAS = os.environ.get("FASTCONV_REQUIRE_EXTRAS", "") not in ("", "0")


def _missing_module_skip(report):
    return report.skipped and "could not import" in str(report.longrepr)


def _fail_missing_module(report):
    if REQUIRE_EXTRAS and _missing_module_skip(report):
        report.outcome = "failed"
        report.longrepr = (f"FASTCONV_REQUIRE_EXTRAS=1 but an optional package is missing: "
                           f"{report.longrepr}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_missing_module(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_missing_module(outcome.get_result())


# The suite never reads the user's tuning cache: a calibration fitted on a
# loaded machine (or autotune winners) would change what "auto" picks and fail
# dispatch tests that hold with the shipped calibration. Tests that exercise the
# cache set FASTCONV_CACHE_DIR to their own folder.
_CACHE_DIR = tempfile.mkdtemp(prefix="fastconv-test-cache-")
os.environ["FASTCONV_CACHE_DIR"] = _CACHE_DIR


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)


# Load the shipped calibration now, so that no traced (tracemalloc) region of a
# test is the first to read it.
fastconv._tuning._shipped_calibration()


@pytest.fixture
def rng(request):
    """A generator seeded from the test id, so every test is reproducible."""
    # hash() of a str is salted per process; crc32 is stable across runs.
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture(autouse=True)
def _fresh_plans():
    """Every test decides and plans afresh: a memoized plan keeps what the modules'
    constants said when it was made, and tests replace them (winograd's TILES,
    MAX_TILES, ...) with monkeypatch; a plan from another test would run with
    another test's constants."""
    _dispatch.clear_memo()


@pytest.fixture
def default_options(monkeypatch):
    """The test starts from the default process-wide options (another test may
    have loaded a config file) and no remembered decisions, and leaves them as it
    found them."""
    monkeypatch.setattr(_config, "_global", _config.Options())
    _dispatch.clear_memo()
    yield
    _dispatch.clear_memo()


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    """Registry = {direct, fast, slow, fft(fake)} with known estimates; private cache dir."""
    reg = {
        "direct": _strategies._REGISTRY["direct"],
        "fast": FakeStrategy("fast", 1e-12),
        "slow": FakeStrategy("slow", 1.0),
        "fft": FakeStrategy("fft", 1e-15, workspace=10),
    }
    reg["fft"].guard = _strategies._REGISTRY["fft"].guard   # the real FFT's option guards
    monkeypatch.setattr(_strategies, "_REGISTRY", reg)
    monkeypatch.setattr(_tuning, "_shipped", {})  # uncalibrated: factors are 1
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    _dispatch.clear_memo()
    yield reg
    _dispatch.clear_memo()
