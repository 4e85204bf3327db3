"""Helpers shared by the test modules: the strategies and parameter axes, the
tolerances and comparison against the float64 oracles, the direct kernel's plan
and scratch probes, a scalar-loop oracle.

Test modules import them as ``from _helpers import ...`` (``tests`` is on the path:
``pythonpath`` in pyproject's ``[tool.pytest.ini_options]``). Fixtures live in
conftest.py. The oracles are :mod:`fastconv.reference` (naive NumPy), hand-written
formulas, finite differences and, when installed, PyTorch. Tolerances follow
docs/architecture.md "Testing".
"""
from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv import reference

# The repository's root (README.md, docs/, examples/ are read by some tests).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The folder holding the fastconv package the tests import (the repository's root
# for an in-place build, site-packages for an installed one).
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))

# Collected once, at import time, so strategies registered later (im2col, fft)
# are parametrized automatically.
STRATEGIES = tuple(fastconv.strategies())
DTYPES = (np.float32, np.float64)
NDIMS = (1, 2, 3)
OPS = ("forward", "grad_input", "grad_weight", "backward")


# The ops a strategy's supports() is asked about ("backward" runs the two gradients).
SUPPORT_OPS = ("forward", "grad_input", "grad_weight")


def supported(strategy, spec, ops=SUPPORT_OPS):
    """True if ``strategy`` ("auto" too) can run every op of ``ops`` (one op name,
    "backward" included, or several) on ``spec``: its ``supports()`` refuses none."""
    from fastconv import _strategies

    if strategy == "auto":
        return True
    if isinstance(ops, str):
        ops = ("grad_input", "grad_weight") if ops == "backward" else (ops,)
    s = _strategies.get(strategy)
    return all(s.supports(spec, op) is None for op in ops)


def strategies_for(spec, ops=SUPPORT_OPS, strategies=STRATEGIES):
    """The strategies whose ``supports()`` accepts ``spec`` for every op of ``ops``:
    the parameters of a test that runs every strategy on one problem."""
    return tuple(s for s in strategies if supported(s, spec, ops))


def strategy_params(spec_of, *axes, strategies=STRATEGIES, ops=SUPPORT_OPS, ids=()):
    """``pytest.param(strategy, *values)`` for every strategy and every combination
    of the ``axes``' values, except those whose problem ``spec_of(*values)`` (a
    spec) the strategy's ``supports()`` refuses for an op of ``ops``: a strategy is
    only run where it claims to run (its refusals are tested explicitly, e.g.
    tests/strategies/test_winograd.py). ``ids``: a function per axis giving its
    part of the test id (``str`` where missing); the strategy's name comes first.

    Use as ``@pytest.mark.parametrize("strategy, case", strategy_params(spec_of, CASES))``.
    """
    ids = tuple(ids) + (str,) * (len(axes) - len(ids))
    out = []
    for strategy in strategies:
        for values in itertools.product(*axes):
            if supported(strategy, spec_of(*values), ops):
                name = "-".join([strategy] + [f(v) for f, v in zip(ids, values)])
                out.append(pytest.param(strategy, *values, id=name))
    return out


def tolerances(dtype, strategy, spec=None, scale=1.0):
    """(rtol, atol) for comparing a strategy's result with a float64 oracle.

    ``scale`` is max|reference| (float32 atol is relative to it); ``spec`` gives
    the transform size for the FFT allowance.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        tol = 1e-9 if strategy == "fft" else 1e-10
        return tol, tol
    atol = 1e-5 * scale
    if strategy == "fft":
        atol *= fft_log2_size(spec)
    return 1e-4, atol


def fft_log2_size(spec):
    """A generous log2 of the FFT transform size for ``spec`` (>= 1)."""
    if spec is None:
        return 20.0
    n = 1
    for p, k, d in zip(spec.padded_spatial, spec.kernel, spec.dilation):
        n *= p + d * (k - 1) + 1
    return max(1.0, math.log2(n) + 1.0)


def assert_close(actual, expected, *, dtype, strategy, spec=None, what="", operands=()):
    """Compare ``actual`` (from fastconv) with ``expected`` (float64 oracle).

    ``operands``: the two arrays whose products were summed. The float32 atol
    scale is max|reference|, but at least max|a| * max|b| (the size of one
    term): a reference that is exactly zero (e.g. an input no tap touches) still
    allows the rounding noise a transform method leaves there.
    """
    expected = np.asarray(expected, dtype=np.float64)
    assert isinstance(actual, np.ndarray), f"{what}: got {type(actual).__name__}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype} != {np.dtype(dtype)}"
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    if len(operands) == 2:
        scale = max(scale, float(np.prod([np.abs(np.asarray(a, np.float64)).max()
                                          for a in operands])))
    rtol, atol = tolerances(dtype, strategy, spec, scale)
    np.testing.assert_allclose(
        actual.astype(np.float64), expected, rtol=rtol, atol=atol,
        err_msg=f"{what} strategy={strategy} dtype={np.dtype(dtype)}")


def random_array(rng, shape, dtype):
    """Standard normal data, rounded to ``dtype``."""
    return rng.standard_normal(shape).astype(dtype)


def upcast(a):
    """float64 copy: the oracle sees exactly the values fastconv sees."""
    return np.asarray(a, dtype=np.float64)


def oracle(op, x, w, gy, kw):
    """The naive reference's ``op`` ("forward", "grad_input", "grad_weight") in float64."""
    if op == "forward":
        return reference.conv_forward(upcast(x), upcast(w), **kw)
    if op == "grad_input":
        return reference.conv_grad_input(x.shape, upcast(w), upcast(gy), **kw)
    return reference.conv_grad_weight(upcast(x), w.shape, upcast(gy), **kw)


def direct_plan(op, spec, n_threads=1):
    """The direct kernel's plan (layout, slabs, row blocks) for ``op`` on ``spec``."""
    from fastconv._strategies import direct_plan as planner

    return planner.plan(op, spec.input_shape5, spec.weight_shape5, spec.output_shape5,
                        spec.stride3, spec.dilation3, spec.padding3, spec.groups,
                        n_threads, spec.itemsize)


def direct_checker(op, xs, ws, kw, dtype, seed):
    """``(spec, check)``: ``check(n_threads)`` runs ``op`` ("forward" or "grad_input")
    with the direct strategy forced on float64 operands drawn with ``seed``, cast to
    ``dtype``, and compares it with the reference (float64 1e-10; float32 rtol 1e-4,
    atol 1e-5 x max|reference|)."""
    from fastconv import reference

    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    gy = rng.standard_normal(fastconv.output_shape(xs, ws, **kw))
    spec = fastconv.make_spec(xs, ws, dtype=dtype, **kw)
    if op == "forward":
        want = reference.conv_forward(x, w, **kw)
    else:
        want = reference.conv_grad_input(xs, w, gy, **kw)
    tol = (dict(rtol=1e-10, atol=1e-10) if dtype == np.float64
           else dict(rtol=1e-4, atol=1e-5 * np.abs(want).max()))

    def check(n_threads):
        with fastconv.config(n_threads=n_threads):
            if op == "forward":
                got = fastconv.conv(x.astype(dtype), w.astype(dtype), strategy="direct", **kw)
            else:
                got = fastconv.grad_input(xs, w.astype(dtype), gy.astype(dtype),
                                          strategy="direct", **kw)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, err_msg=f"{n_threads} threads", **tol)

    return spec, check


def traced_direct_call(op, xs, ws, kw, seed=0):
    """Run ``op`` of the direct strategy (2 threads, float32, 2-D) under tracemalloc.

    Returns (plan info, ``workspace()`` bytes, bytes traced beyond the result):
    what the workspace tests compare.
    """
    import tracemalloc

    from fastconv import _strategies
    from fastconv._strategies import direct_plan as planner

    spec = fastconv.make_spec(xs, ws, dtype=np.float32, **kw)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    def call():
        if op == "forward":
            return fastconv.conv2d(x, w, **kw, strategy="direct")
        if op == "grad_input":
            return fastconv.grad_input(xs, w, gy, **kw, strategy="direct")
        return fastconv.grad_weight(x, ws, gy, **kw, strategy="direct")

    with fastconv.config(n_threads=2):
        ws_bytes = _strategies.get("direct").workspace(spec, op, fastconv.get_config())
        info = planner.plan(op, spec.input_shape5, spec.weight_shape5, spec.output_shape5,
                            spec.stride3, spec.dilation3, spec.padding3, 1, 2, 4)
        # Once untraced first: the first call adds its spec and decision to the ones
        # make_spec and the dispatcher remember, and when one of those dicts grows
        # then (by tens of KiB, at a point set by how many specs earlier tests made)
        # the growth would be traced as the call's.
        call()
        tracemalloc.start()
        out = call()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return info, ws_bytes, peak - out.nbytes


def naive_loop_forward(x, w, stride, pads, dilation, groups, flip=False):
    """Scalar-loop forward pass for (N, C, *spatial) input: a third oracle, used to
    check the reference itself. ``pads`` is a list of (before, after) pairs."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    ndim = w.ndim - 2
    if flip:
        w = w[(Ellipsis,) + (slice(None, None, -1),) * ndim]
    N, C = x.shape[:2]
    O, Cg = w.shape[:2]
    Og = O // groups
    ksz = w.shape[2:]
    xp = np.zeros((N, C) + tuple(s + b + a for s, (b, a) in zip(x.shape[2:], pads)))
    xp[(slice(None), slice(None)) + tuple(slice(b, b + s) for s, (b, _) in
                                          zip(x.shape[2:], pads))] = x
    out_sp = tuple((p - d * (k - 1) - 1) // s + 1
                   for p, k, s, d in zip(xp.shape[2:], ksz, stride, dilation))
    y = np.zeros((N, O) + out_sp)
    for n in range(N):
        for o in range(O):
            g = o // Og
            for pos in np.ndindex(*out_sp):
                acc = 0.0
                for c in range(Cg):
                    for k in np.ndindex(*ksz):
                        idx = tuple(p * s + kk * d for p, s, kk, d in
                                    zip(pos, stride, k, dilation))
                        acc += xp[(n, g * Cg + c) + idx] * w[(o, c) + k]
                y[(n, o) + pos] = acc
    return y



def run_child(code, env=None, cwd=None, timeout=120):
    """Run ``code`` (dedented) in a fresh interpreter started in the folder that holds
    the fastconv this process imported; returns (returncode, stdout, stderr). For what
    could crash or hang the test process. ``env``: variables to set (None: unset)."""
    full_env = dict(os.environ, **(env or {}))
    full_env = {k: v for k, v in full_env.items() if v is not None}
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, env=full_env, cwd=cwd or PACKAGE_PARENT, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# Subprocesses start outside the source tree, so they import the installed
# (compiled) package rather than ./fastconv.
OUTSIDE_TREE = tempfile.gettempdir()


def run_outside_tree(code, env_extra):
    """Run ``code`` (dedented) in a fresh interpreter started in the temporary folder;
    returns the ``subprocess.CompletedProcess``."""
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          cwd=OUTSIDE_TREE, capture_output=True, text=True, timeout=300)


def planned(strategy, op, spec, *arrays, threads=None):
    """``strategy`` runs ``op`` on prepared 5-D ``arrays`` with a plan it makes now,
    under the options in force (on ``threads`` threads when given): the
    strategy protocol's ``plan`` then ``run`` (``backward`` for op "backward",
    arrays ``x, w, gy``)."""
    from fastconv._config import with_threads

    opts = fastconv.get_config()
    if threads is not None:
        opts = with_threads(opts, threads)
    plan = strategy.plan(spec, op, opts)
    if op == "backward":
        return strategy.backward(plan, *arrays)
    return strategy.run(plan, *arrays)


class FakeStrategy:
    """A stand-in strategy with a fixed estimate and workspace; runs the direct one
    (the ``fakes`` fixture registers a few)."""

    def __init__(self, name, est, workspace=0):
        self.name, self.est, self.ws = name, est, workspace

    def supports(self, spec, op):
        return None

    def workspace(self, spec, op, options):
        return self.ws

    def estimate(self, spec, op, n_threads, options):
        return self.est

    def plan(self, spec, op, options):
        from fastconv import _strategies

        return _strategies.get("direct").plan(spec, op, options)

    def run(self, plan, a, b, out=None, memo=None):
        from fastconv import _strategies

        return _strategies.get("direct").run(plan, a, b, out)


DISPATCH_SPEC = dict(input_shape=(2, 4, 9, 7), weight_shape=(6, 4, 3, 2), dtype=np.float32)


def dispatch_spec(**kw):
    """A small 2-D float32 spec (``DISPATCH_SPEC``, fields overridden by ``kw``) for
    the dispatcher's and the config rules' tests."""
    args = {**DISPATCH_SPEC, **kw}
    return fastconv.make_spec(args.pop("input_shape"), args.pop("weight_shape"), **args)
