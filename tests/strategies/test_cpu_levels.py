"""Kernels per instruction-set level: which level is loaded, FASTCONV_CPU, and the
same results at every level this machine can run."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import _cpu
from fastconv.reference import conv_forward, conv_grad_input, conv_grad_weight


def _child(code, env_cpu):
    """Run ``code`` in a fresh interpreter with FASTCONV_CPU=env_cpu (None: unset)."""
    env = dict(os.environ)
    env.pop(_cpu.ENV, None)
    if env_cpu is not None:
        env[_cpu.ENV] = env_cpu
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, cwd="/",
                          capture_output=True, text=True, timeout=120)


def test_the_expected_level_is_loaded():
    # CI runs the suite once per level with FASTCONV_CPU set; unset, the best one
    want = os.environ.get(_cpu.ENV) or _cpu.available_levels()[-1]
    assert _cpu.level() == want
    assert want in _cpu.compiled_levels()


def test_levels_are_consistent():
    avail = _cpu.available_levels()
    assert avail[0] == "baseline"
    assert set(avail) <= set(_cpu.compiled_levels())
    assert all(_cpu.LEVELS.index(lv) <= _cpu.LEVELS.index(_cpu.cpu_level()) for lv in avail)
    info = fastconv._info.config_info()["instruction set"]
    assert info["in use"] == _cpu.level() and info["cpu supports"] == _cpu.cpu_level()


@pytest.mark.parametrize("value", ["baseline", "BASELINE "])
def test_env_caps_the_level(value):
    r = _child("from fastconv import _cpu; print(_cpu.level())", value)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "baseline"
    assert "RuntimeWarning" not in r.stderr


@pytest.mark.parametrize("value", ["sse9", "avx512" if _cpu.cpu_level() != "avx512" else "sse9"])
def test_a_level_this_cpu_cannot_run_is_refused_with_a_warning(value):
    """Never an illegal instruction: a warning, and the best available level."""
    r = _child("import fastconv, numpy as np; from fastconv import _cpu; "
               "y = fastconv.conv2d(np.ones((1, 4, 9, 9), np.float32), "
               "np.ones((4, 4, 3, 3), np.float32), strategy='direct'); "
               "print(_cpu.level(), float(y.max()))", value)
    assert r.returncode == 0, r.stderr
    level, ymax = r.stdout.split()
    assert level == _cpu.available_levels()[-1]
    assert float(ymax) == 36.0
    assert "RuntimeWarning" in r.stderr and _cpu.ENV in r.stderr


def test_set_level_refuses_what_is_not_available():
    with pytest.raises(ValueError, match="not available"):
        _cpu.set_level("sse9")
    for lv in _cpu.LEVELS:
        if lv not in _cpu.available_levels():
            with pytest.raises(ValueError, match="not available"):
                _cpu.set_level(lv)


_CASES = [  # (x shape, w shape, kwargs): the tiles' passes, remainders and row blocks
    ((2, 8, 13, 17), (8, 8, 3, 5), dict(padding=(1, 2))),
    ((2, 6, 11, 9), (6, 1, 5, 3), dict(padding=2, groups=6)),
    ((2, 3, 40, 37), (3, 1, 5, 5), dict(padding=2, groups=3)),
    ((2, 6, 30), (5, 6, 7), dict(padding=3)),
    ((1, 4, 7, 9, 8), (6, 4, 3, 3, 3), dict(padding=1)),
    ((2, 4, 21, 19), (8, 4, 3, 3), dict(stride=2, padding=1)),
    ((1, 16, 12, 12), (24, 16, 3, 3), dict(padding=1)),
]


@pytest.fixture
def each_level():
    """Yields a runner that calls ``fn`` at every available level, then restores."""
    before = _cpu.level()

    def run(fn):
        out = {}
        for lv in _cpu.available_levels():
            _cpu.set_level(lv)
            out[lv] = fn()
        return out

    yield run
    _cpu.set_level(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(_CASES)))
def test_every_level_matches_the_reference(case, dtype, each_level):
    xs, ws, kw = _CASES[case]
    rng = np.random.default_rng(case)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    spec = fastconv.make_spec(xs, ws, **kw)
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    x64, w64, gy64 = (a.astype(np.float64) for a in (x, w, gy))
    want = (conv_forward(x64, w64, **kw), conv_grad_input(xs, w64, gy64, **kw),
            conv_grad_weight(x64, ws, gy64, **kw))
    names = ["direct"] + (["winograd"] if ws[2:] == (3,) * (len(ws) - 2)
                          and spec.stride == (1,) * (len(ws) - 2) and ws[1] > 1 else [])
    for name in names:
        got = each_level(lambda name=name: (fastconv.conv(x, w, strategy=name, **kw),
                                  fastconv.grad_input(xs, w, gy, strategy=name, **kw),
                                  fastconv.grad_weight(x, ws, gy, strategy=name, **kw)))
        tol = 1e-4 if dtype == np.float32 else 1e-10
        for lv, outs in got.items():
            for op, a, b in zip(("forward", "grad_input", "grad_weight"), outs, want):
                err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
                assert err < tol, (name, lv, op, err)
