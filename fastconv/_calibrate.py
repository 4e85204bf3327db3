"""Calibration of the cost model: ``fastconv tune --calibrate``.

Times every strategy on a grid of problems (:func:`calibration_grid`) and fits
``seconds = factor * estimate + overhead`` (see :mod:`fastconv._tuning`, which
stores the factors and reads them back for the dispatcher). Only the command
line and the tests import this module; a call never does.
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import _config, _strategies, _tuning
from ._config import get_config
from ._spec import OPS


def calibration_grid(quick=False):
    """(input_shape, weight_shape, kwargs) problems timed by ``tune --calibrate``.

    Mixed sizes so the fit is not tied to one regime: small and large channel
    counts, small and large kernels, strides, groups, in 1-D, 2-D and 3-D.

    The problems come most informative first, because a time budget cuts the
    list from the end: first a stride-1 kernel of extent 3 in 1-D, 2-D and 3-D
    (every strategy runs these, so every strategy, op and dimensionality gets
    a factor), then a large kernel in each (FFT's regime), then the shapes
    where strategies cross over (1x1, depthwise, strided, 5x5/7x7, many
    channels), then more of each. ``quick=True`` keeps the first nine.
    """
    grid = [
        # every strategy, in 1-D, 2-D and 3-D
        ((8, 32, 28, 28), (32, 32, 3, 3), dict(padding=1)),
        ((8, 64, 2048), (64, 64, 3), dict(padding=1)),
        ((2, 8, 16, 16, 16), (16, 8, 3, 3, 3), dict(padding=1)),
        # large kernels: FFT against direct and im2col
        ((4, 16, 48, 48), (16, 16, 11, 11), dict(padding=5)),
        ((4, 16, 8192), (16, 16, 257), dict(padding=128)),
        ((1, 4, 24, 24, 24), (4, 4, 7, 7, 7), dict(padding=3)),
        # crossovers: pointwise, depthwise, strided
        ((4, 64, 14, 14), (256, 64, 1, 1), {}),
        ((4, 32, 28, 28), (32, 1, 3, 3), dict(padding=1, groups=32)),
        ((8, 64, 1024), (64, 64, 3), dict(padding=1, stride=2)),
        # kernels and strides the cost model had missed: 5x5, 7x7 and rectangular
        # kernels with tens of channels (direct's register tiles vs the GEMM),
        # strided 2-D and 1-D (polyphase direct vs im2col), long 1-D signals with
        # mid-size and large kernels (direct vs FFT)
        ((8, 32, 32, 32), (32, 32, 5, 5), dict(padding=2)),
        ((2, 3, 96, 96), (32, 3, 7, 7), dict(padding=3, stride=2)),
        ((1, 1, 40, 40, 40), (4, 1, 5, 5, 5), dict(padding=2)),
        ((4, 128, 14, 14), (128, 128, 3, 3), dict(padding=1)),
        ((4, 16, 8192), (16, 16, 33), dict(padding=16)),
        ((4, 16, 64, 64), (32, 16, 7, 7), dict(padding=3)),
        ((2, 16, 16, 16, 16), (32, 16, 3, 3, 3), dict(padding=1)),
        ((4, 64, 32, 32), (64, 64, 3, 3), dict(padding=1, stride=2)),
        ((8, 32, 4096), (64, 32, 5), dict(padding=2, stride=2)),
        ((2, 16, 32, 32), (16, 1, 15, 15), dict(padding=7, groups=16)),
        ((4, 32, 40, 40), (64, 32, 3, 5), dict(padding=(1, 2))),
        ((8, 256, 7, 7), (256, 256, 3, 3), dict(padding=1)),
        ((8, 32, 2048), (32, 32, 9), dict(padding=4)),
        ((8, 64, 28, 28), (64, 64, 3, 3), dict(padding=1)),
        ((4, 8, 16384), (8, 1, 2047), dict(padding=((2046, 0),), groups=8)),
        ((2, 32, 16384), (32, 32, 129), dict(padding=64)),
    ]
    if quick:
        grid = grid[:9]
    return grid


#: Seconds ``tune --calibrate`` may spend, by mode (None: the whole grid, untimed).
#: The budget cuts the grid from its least informative end; the steps that give
#: a (strategy, op, dimensionality, dtype) its first measurement always run.
TIME_BUDGETS = {"quick": 15.0, "default": 60.0, "full": None}

#: (rounds, timings per round) of each strategy on each grid step, by mode.
#: Rounds are interleaved across strategies; each timing loops to 5 ms at least.
_TIMINGS = {"quick": (1, 2), "default": (2, 2), "full": (2, 3)}


def _parallel_overhead(make_spec, opts):
    """Seconds a small direct call loses on ``opts.threads`` threads against one.

    The direct kernels split every call into an OpenMP team's tasks; on a
    problem this small the split gains little, so the difference is mostly the
    team's fork/join (more when the cores are busy with other work).
    """
    threads = opts.threads
    if threads <= 1:
        return 0.0
    spec = make_spec((2, 8, 24, 24), (8, 8, 3, 3), padding=1, dtype=np.float32)
    strat = _strategies.get("direct")
    one = _config.with_threads(opts, 1)
    diffs = []
    # Three passes over the ops, the smallest difference kept: on a shared
    # machine a burst of other work makes a team wait for a descheduled thread
    # (milliseconds, where a team costs microseconds), which is the load of the
    # moment, not this machine's cost of a team.
    for _ in range(3):
        for op in OPS:
            a, b = _tuning.random_operands(op, spec)
            t1 = _tuning.time_call(_strategies.planned_call(strat, op, spec, a, b, one),
                                   repeat=5)
            tn = _tuning.time_call(_strategies.planned_call(strat, op, spec, a, b, opts),
                                   repeat=5)
            # the ideal parallel time is t1 / threads: what tn exceeds it by is the cost
            diffs.append(max(0.0, tn - t1 / threads))
    return min(diffs)


def _measure(op, spec, names, opts, repeat):
    """Seconds of each strategy in ``names``, cheapest estimate first: as
    :func:`fastconv._tuning.measure`, with ``repeat`` timings per strategy. A
    strategy whose warm-up is already 3x the best so far is not timed further
    (its warm-up is its time)."""
    names = sorted(names, key=lambda n: _strategies.get(n).estimate(spec, op, opts.threads,
                                                                    opts))
    out, best = {}, math.inf
    for name in names:
        strat = _strategies.get(name)
        a, b = _tuning.random_operands(op, spec)
        fn = _strategies.planned_call(strat, op, spec, a, b, opts)
        t = _tuning.time_call(fn, repeat=repeat, max_time=3 * best if best < math.inf else 2.0)
        out[name] = t
        best = min(best, t)
    return out


def _timed(op, spec, names, opts, rounds=2, repeat=3):
    """Best seconds of each strategy over interleaved rounds: a burst of other
    processes' work then rarely hits every round of one strategy."""
    secs = {}
    for _ in range(rounds):
        for name, t in _measure(op, spec, names, opts, repeat).items():
            secs[name] = min(t, secs.get(name, math.inf))
    return secs


def _predicted_seconds(op, spec, names, opts, rounds, repeat):
    """What timing one grid step should take by the cost model (before the
    load of the moment, which :func:`calibrate` measures as it goes)."""
    total = 0.0
    for threads in {1, opts.threads}:
        est = {n: _tuning.calibrated_estimate(_strategies.get(n), op, spec, opts, threads)
               for n in names}
        best = min(est.values(), default=0.0)
        for t in est.values():
            # a warm-up; then, unless over 3x the best and 50 ms, looped timings
            # of 5 ms at least
            total += t if t > max(3 * best, 0.05) else t + rounds * repeat * max(t, 0.005)
    return total


def _plan_steps(problems, dtypes, opts, make_spec):
    """Grid steps ``(spec, op, names, ishape, wshape, new_keys)`` in run order;
    ``new_keys`` are the calibration keys no earlier step measures."""
    steps, seen = [], set()
    for ishape, wshape, kw in problems:
        for dtype in dtypes:
            spec = make_spec(ishape, wshape, dtype=dtype, **kw)
            for op in OPS:
                names = [s.name for s in _strategies.all_strategies()
                         if s.supports(spec, op) is None
                         and s.workspace(spec, op, opts) <= opts.memory_budget]
                keys = {_tuning._calibration_key(n, op, spec.ndim, dtype) for n in names}
                steps.append((spec, op, names, ishape, wshape, keys - seen))
                seen |= keys
    return steps


def calibrate(quick=False, dtypes=("float32", "float64"), progress=None, opts=None, *,
              full=False, time_budget=None):
    """Time the calibration grid and store the fitted factors; return them.

    ``progress(message, done, total)``, if given, is called after each
    (problem, dtype, op) step with a line of timings (``fastconv tune
    --calibrate`` draws it as a progress bar); ``total`` is the number of
    steps expected to fit in the time budget, updated as the run goes. A
    closing ``progress(message)`` says how much of the grid was measured.
    Then runs the :data:`fastconv._tuning.on_cache_change` hooks.

    The time budget (``time_budget`` seconds; else :data:`TIME_BUDGETS`: 15 s
    with ``quick``, none with ``full``, else 60 s) cuts the grid, which comes
    most informative first (:func:`calibration_grid`): a step is skipped when
    its cost-model time, scaled by how much slower than the model the steps so
    far ran (the load of the moment), would overrun the budget. Steps that give
    a (strategy, op, dimensionality, dtype) its first measurement always run,
    so every factor is refitted. ``quick`` and the default also time fewer
    repeats than ``full``.

    Each factor is the product of two fits. How each (strategy, op, ndim,
    dtype) runs against its estimate is fitted on one thread, where timings
    are steady even on a shared machine; how each strategy's work spreads over
    ``opts.threads`` threads, against what its model says, is one number per
    strategy (``<name>|parallel``, the median over the measured grid), so a
    burst of other processes' work during a few timings does not skew one op's
    factor (on a loaded 2-core machine the direct 2-D factors fitted on two
    threads alone came out 1.3-1.6 against 0.95 on one thread, and auto chose
    im2col where direct was 1.3-1.5x faster). The per-call overheads are
    timed on one thread (tiny calls run on one:
    :func:`fastconv._tuning.run_threads`); what several threads cost a small
    call is ``parallel|overhead``.
    """
    from ._spec import make_spec

    mode = "full" if full else "quick" if quick else "default"
    budget = TIME_BUDGETS[mode] if time_budget is None else time_budget
    rounds, repeat = _TIMINGS[mode]
    t_start = time.perf_counter()
    opts = opts or get_config()
    n = opts.threads
    factors = {}
    # Fixed per-call cost: a problem too small for the work to matter.
    tiny = make_spec((1, 2, 6, 6), (2, 2, 3, 3), padding=1, dtype=np.float64)
    for op in OPS:
        names = [s.name for s in _strategies.all_strategies() if s.supports(tiny, op) is None]
        for name, t in _tuning.measure(op, tiny, names, _config.with_threads(opts, 1)).items():
            factors[f"{name}|{op}|overhead"] = t
    factors["parallel|overhead"] = _parallel_overhead(make_spec, opts)
    logs, spread = {}, {}
    steps = _plan_steps(calibration_grid(quick and not full), dtypes, opts, make_spec)
    predicted = [_predicted_seconds(op, spec, names, opts, rounds, repeat)
                 for spec, op, names, *_ in steps]
    # actual / predicted seconds of the steps run so far: the load of the moment
    slow = [0.0, 0.0]

    def fits(i, now):
        if budget is None or steps[i][5]:
            return True
        scale = slow[0] / slow[1] if slow[1] > 0 else 1.0
        return now + scale * predicted[i] <= t_start + budget

    def expected_total(i, done):
        """Steps done plus the steps from ``i`` on that should still fit."""
        now, count = time.perf_counter(), done
        scale = slow[0] / slow[1] if slow[1] > 0 else 1.0
        for j in range(i, len(steps)):
            if budget is None or steps[j][5] or now + scale * predicted[j] <= t_start + budget:
                now += scale * predicted[j]
                count += 1
        return max(count, done + 1) if i < len(steps) else done

    def log_ratio(name, op, spec, t, threads):
        est = _strategies.get(name).estimate(spec, op, threads, opts)
        work = max(t - factors.get(f"{name}|{op}|overhead", 0.0), 0.1 * t)
        return math.log(work / est)

    done, skipped = 0, 0
    for i, (spec, op, names, ishape, wshape, _) in enumerate(steps):
        if not fits(i, time.perf_counter()):
            skipped += 1
            continue
        dtype = spec.dtype.name
        t_step = time.perf_counter()
        one = _timed(op, spec, names, _config.with_threads(opts, 1), rounds, repeat)
        ref = {name: log_ratio(name, op, spec, t, 1) for name, t in one.items()}
        for name, r in ref.items():
            key = _tuning._calibration_key(name, op, spec.ndim, dtype)
            logs.setdefault(key, []).append(r)
        many = _timed(op, spec, names, opts, rounds, repeat) if n > 1 else {}
        for name, t in many.items():
            spread.setdefault(name, []).append(
                log_ratio(name, op, spec, t, n) - ref[name])
        slow[0] += time.perf_counter() - t_step
        slow[1] += predicted[i]
        done += 1
        if progress:
            progress(f"{op:11s} {dtype} in={ishape} w={wshape} "
                     + " ".join(f"{k}={t * 1e3:.2f}ms" for k, t in one.items())
                     + (f" | {n} threads: " + " ".join(
                         f"{k}={t * 1e3:.2f}ms" for k, t in many.items())
                        if many else ""),
                     done, expected_total(i + 1, done))
    if progress:
        # with done as the total, a progress bar ends complete
        elapsed = time.perf_counter() - t_start
        progress(f"measured {done} of {len(steps)} grid steps in {elapsed:.0f} s"
                 + (f" (time budget {budget:.0f} s; {skipped} steps left out, every "
                    "strategy, op, dimensionality and dtype measured)" if skipped else ""),
                 done, done)
    par = {name: math.exp(sorted(v)[len(v) // 2]) for name, v in spread.items()}
    factors.update({f"{name}|parallel": f for name, f in par.items()})
    factors.update({k: math.exp(sum(v) / len(v)) * par.get(k.split("|", 1)[0], 1.0)
                    for k, v in logs.items()})
    _tuning.calibration_cache.store(opts, factors)
    for hook in _tuning.on_cache_change:
        hook()
    return factors
