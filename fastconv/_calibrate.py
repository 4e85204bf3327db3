"""Calibration of the cost model: ``fastconv tune --calibrate``.

Times every strategy on a grid of problems (:func:`calibration_grid`) and fits
``seconds = factor * estimate + overhead`` (see :mod:`fastconv._tuning`, which
stores the factors and reads them back for the dispatcher). Only the command
line and the tests import this module; a call never does.
"""
from __future__ import annotations

import math

import numpy as np

from . import _strategies, _tuning
from ._config import get_config
from ._spec import OPS


def calibration_grid(quick=False):
    """(input_shape, weight_shape, kwargs) problems timed by ``tune --calibrate``.

    Mixed sizes so the fit is not tied to one regime: small and large channel
    counts, small and large kernels, strides, groups, in 1-D, 2-D and 3-D.
    """
    grid = [
        # 1-D
        ((8, 32, 2048), (32, 32, 9), dict(padding=4)),
        ((4, 16, 8192), (16, 16, 257), dict(padding=128)),
        ((8, 64, 1024), (64, 64, 3), dict(padding=1, stride=2)),
        ((4, 8, 16384), (8, 1, 2047), dict(padding=((2046, 0),), groups=8)),
        # 2-D
        ((8, 32, 28, 28), (32, 32, 3, 3), dict(padding=1)),
        ((4, 128, 14, 14), (128, 128, 3, 3), dict(padding=1)),
        ((4, 64, 14, 14), (256, 64, 1, 1), {}),
        ((4, 16, 48, 48), (16, 16, 11, 11), dict(padding=5)),
        ((2, 3, 96, 96), (32, 3, 7, 7), dict(padding=3, stride=2)),
        ((4, 32, 28, 28), (32, 1, 3, 3), dict(padding=1, groups=32)),
        ((2, 16, 32, 32), (16, 1, 15, 15), dict(padding=7, groups=16)),
        ((8, 64, 28, 28), (64, 64, 3, 3), dict(padding=1)),
        ((8, 256, 7, 7), (256, 256, 3, 3), dict(padding=1)),
        # 3-D
        ((2, 8, 16, 16, 16), (16, 8, 3, 3, 3), dict(padding=1)),
        ((2, 16, 16, 16, 16), (32, 16, 3, 3, 3), dict(padding=1)),
        ((1, 1, 40, 40, 40), (4, 1, 5, 5, 5), dict(padding=2)),
        ((1, 4, 24, 24, 24), (4, 4, 7, 7, 7), dict(padding=3)),
        # kernels and strides the cost model had missed: 5x5, 7x7 and rectangular
        # kernels with tens of channels (direct's register tiles vs the GEMM),
        # strided 2-D and 1-D (polyphase direct vs im2col), long 1-D signals with
        # mid-size and large kernels (direct vs FFT)
        ((8, 32, 32, 32), (32, 32, 5, 5), dict(padding=2)),
        ((4, 16, 64, 64), (32, 16, 7, 7), dict(padding=3)),
        ((4, 32, 40, 40), (64, 32, 3, 5), dict(padding=(1, 2))),
        ((4, 64, 32, 32), (64, 64, 3, 3), dict(padding=1, stride=2)),
        ((8, 32, 4096), (64, 32, 5), dict(padding=2, stride=2)),
        ((8, 64, 2048), (64, 64, 3), dict(padding=1)),
        ((4, 16, 8192), (16, 16, 33), dict(padding=16)),
        ((2, 32, 16384), (32, 32, 129), dict(padding=64)),
    ]
    if quick:
        grid = grid[::3]
    return grid


def _parallel_overhead(make_spec, threads):
    """Seconds a small direct call loses on ``threads`` threads against one.

    The direct kernels split every call into an OpenMP team's tasks; on a
    problem this small the split gains little, so the difference is mostly the
    team's fork/join (more when the cores are busy with other work).
    """
    if threads <= 1:
        return 0.0
    spec = make_spec((2, 8, 24, 24), (8, 8, 3, 3), padding=1, dtype=np.float32)
    strat = _strategies.get("direct")
    diffs = []
    # Three passes over the ops, the smallest difference kept: on a shared
    # machine a burst of other work makes a team wait for a descheduled thread
    # (measured here: 21-26 us between bursts, 6-8 ms during one), which is the
    # load of the moment, not this machine's cost of a team.
    for _ in range(3):
        for op in OPS:
            a, b = _tuning.random_operands(op, spec, strategy=strat)
            t1 = _tuning.time_call(lambda: strat.run(op, spec, a, b, 1), repeat=5)
            tn = _tuning.time_call(lambda: strat.run(op, spec, a, b, threads), repeat=5)
            # the ideal parallel time is t1 / threads: what tn exceeds it by is the cost
            diffs.append(max(0.0, tn - t1 / threads))
    return min(diffs)


_CALIBRATION_ROUNDS = 2


def _timed(op, spec, names, threads):
    """Best seconds of each strategy over interleaved rounds: a burst of other
    processes' work then rarely hits every round of one strategy."""
    secs = {}
    for _ in range(_CALIBRATION_ROUNDS):
        for name, t in _tuning.measure(op, spec, names, threads, budget_s=2.0).items():
            secs[name] = min(t, secs.get(name, math.inf))
    return secs


def calibrate(quick=False, dtypes=("float32", "float64"), progress=None, opts=None):
    """Time the calibration grid and store the fitted factors; return them.

    ``progress(message, done, total)``, if given, is called after each
    (problem, op) with a line of timings (``fastconv tune --calibrate`` draws it
    as a progress bar). Then runs the
    :data:`fastconv._tuning.on_cache_change` hooks.

    Each factor is the product of two fits. How each (strategy, op, ndim,
    dtype) runs against its estimate is fitted on one thread, where timings
    are steady even on a shared machine; how each strategy's work spreads over
    ``opts.threads`` threads, against what its model says, is one number per
    strategy (``<name>|parallel``, the median over the whole grid), so a burst
    of other processes' work during a few timings does not skew one op's
    factor (on a loaded 2-core machine the direct 2-D factors fitted on two
    threads alone came out 1.3-1.6 against 0.95 on one thread, and auto chose
    im2col where direct was 1.3-1.5x faster). The per-call overheads are
    timed on one thread (tiny calls run on one:
    :func:`fastconv._tuning.run_threads`); what several threads cost a small
    call is ``parallel|overhead``.
    """
    from ._spec import make_spec

    opts = opts or get_config()
    n = opts.threads
    factors = {}
    # Fixed per-call cost: a problem too small for the work to matter.
    tiny = make_spec((1, 2, 6, 6), (2, 2, 3, 3), padding=1, dtype=np.float64)
    for op in OPS:
        names = [s.name for s in _strategies.all_strategies() if s.supports(tiny, op) is None]
        for name, t in _tuning.measure(op, tiny, names, 1).items():
            factors[f"{name}|{op}|overhead"] = t
    factors["parallel|overhead"] = _parallel_overhead(make_spec, n)
    logs, spread = {}, {}
    problems = calibration_grid(quick)
    total = len(problems) * len(dtypes) * len(OPS)
    done = 0

    def log_ratio(name, op, spec, t, threads):
        est = _strategies.get(name).estimate(spec, op, threads)
        work = max(t - factors.get(f"{name}|{op}|overhead", 0.0), 0.1 * t)
        return math.log(work / est)

    for dtype in dtypes:
        for ishape, wshape, kw in problems:
            spec = make_spec(ishape, wshape, dtype=dtype, **kw)
            for op in OPS:
                done += 1
                names = [s.name for s in _strategies.all_strategies()
                         if s.supports(spec, op) is None
                         and s.workspace(spec, op) <= opts.memory_budget]
                one = _timed(op, spec, names, 1)
                ref = {name: log_ratio(name, op, spec, t, 1) for name, t in one.items()}
                for name, r in ref.items():
                    key = _tuning._calibration_key(name, op, spec.ndim, dtype)
                    logs.setdefault(key, []).append(r)
                many = _timed(op, spec, names, n) if n > 1 else {}
                for name, t in many.items():
                    spread.setdefault(name, []).append(
                        log_ratio(name, op, spec, t, n) - ref[name])
                if progress:
                    progress(f"{op:11s} {dtype} in={ishape} w={wshape} "
                             + " ".join(f"{k}={t * 1e3:.2f}ms" for k, t in one.items())
                             + (f" | {n} threads: " + " ".join(
                                 f"{k}={t * 1e3:.2f}ms" for k, t in many.items())
                                if many else ""),
                             done, total)
    par = {name: math.exp(sorted(v)[len(v) // 2]) for name, v in spread.items()}
    factors.update({f"{name}|parallel": f for name, f in par.items()})
    factors.update({k: math.exp(sum(v) / len(v)) * par.get(k.split("|", 1)[0], 1.0)
                    for k, v in logs.items()})
    _tuning.calibration_cache.store(opts, factors)
    for hook in _tuning.on_cache_change:
        hook()
    return factors
