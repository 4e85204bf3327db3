"""Timing: interleaved rounds of contenders, and the machine's matmul ceiling.

Speed on a shared machine is only meaningful as a ratio measured in one run
with the contenders alternated, so every (layer, op) is timed by
:func:`time_interleaved`; :func:`matmul_ceiling` gives the reference rate the
report quotes GFLOP/s against.
"""
from __future__ import annotations

import time

import numpy as np

from .._tuning import time_call

__all__ = ["matmul_ceiling", "time_interleaved"]


def matmul_ceiling(n=1024, repeat=3):
    """The machine's float32 GEMM speed through numpy: ``{"n", "gflops", "best_s"}``.

    Every GFLOP/s figure of the report is quoted as a fraction of this.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    best = time_call(lambda: a @ b, repeat=repeat)  # one warm-up, best of `repeat`
    return {"n": n, "gflops": 2.0 * n ** 3 / best / 1e9, "best_s": best}


def time_interleaved(fns, repeat=5, max_time=None, min_time=0.0, max_calls=200):
    """Time several callables doing the same job, in interleaved rounds.

    One warm-up call each, then rounds in which every callable runs once, until
    each has at least ``repeat`` timed calls adding up to ``min_time`` seconds.
    A callable whose warm-up took longer than ``max_time`` is not called again;
    the warm-up is its one sample.
    A callable leaves the rounds early after ``max_calls`` calls or ``max_time``
    seconds. Interleaving spreads every contender's calls over the same stretch
    of time, so a burst of load from other processes hits them alike; the
    order rotates every round, so no contender always follows the same one.

    Returns
    -------
    times : dict name -> list of float
    warm : dict name -> float
    errors : dict name -> Exception
    """
    times, warm, errors = {}, {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:
            errors[name] = e
            continue
        warm[name] = time.perf_counter() - t0
        times[name] = []
    # a call slower than max_time is not repeated: its warm-up is its one sample
    live = []
    for name in times:
        if max_time is not None and warm[name] > max_time:
            times[name] = [warm[name]]
        else:
            live.append(name)

    def satisfied(n):
        return len(times[n]) >= repeat and sum(times[n]) >= min_time

    rnd = 0
    while live and not all(satisfied(n) for n in live):
        # Rotate who goes first: a call can slow the next one (FFT's freed
        # buffers, a BLAS pool still spinning), and a fixed order would charge
        # that to the same contender every round.
        order = list(live)
        rnd += 1
        k = rnd % len(order)
        for n in order[k:] + order[:k]:
            if n not in live:
                continue
            t0 = time.perf_counter()
            try:
                fns[n]()
            except Exception as e:
                errors[n] = e
                live.remove(n)
                continue
            times[n].append(time.perf_counter() - t0)
            total = sum(times[n])
            if len(times[n]) >= max(repeat, max_calls) or (max_time is not None and total > max_time
                                                           and len(times[n]) >= 1):
                live.remove(n)
    for n in errors:
        times.pop(n, None)
    return times, warm, errors
