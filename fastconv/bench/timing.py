"""Timing: interleaved rounds of contenders, and the machine's matmul ceiling.

Speed on a shared machine is only meaningful as a ratio measured in one run
with the contenders alternated, so every (layer, op) is timed by
:func:`time_interleaved`; :func:`matmul_ceiling` gives the reference rate the
report quotes GFLOP/s against.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

__all__ = ["matmul_ceiling", "time_interleaved", "spread", "NOISY_SPREAD"]

#: A case whose median time exceeds its best by more than this factor was
#: disturbed (other processes took the cores during some of its calls): its
#: best time may still be right, but a comparison resting on it is not.
NOISY_SPREAD = 1.25
#: A case is noisy too when other processes used more than this share of all
#: CPUs' time while its group was timed (``/proc/stat`` against this process's
#: own CPU time): oversubscribed cores slow the BLAS-based strategies (their
#: threads wait on each other) far more than the others, steadily, so the
#: spread alone does not show it. The 1-minute load average lags a burst by a
#: minute, so it is only the fallback where /proc/stat is missing: above
#: LOADED_FACTOR x the CPUs.
OTHERS_MAX = 0.25
LOADED_FACTOR = 1.5


def spread(times):
    """median / min of a case's timed calls (None with fewer than two)."""
    if len(times) < 2 or min(times) <= 0:
        return None
    return statistics.median(times) / min(times)


def matmul_ceiling(n=1024, repeat=5):
    """The machine's float32 GEMM speed through numpy:
    ``{"n", "gflops", "best_s", "times_s", "spread"}``.

    Every GFLOP/s figure of the report is quoted as a fraction of this. One
    warm-up, then ``repeat`` products, each timed; the spread tells whether
    other processes disturbed the measurement.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    t0 = time.perf_counter()
    a @ b
    inner = max(1, int(0.005 / max(time.perf_counter() - t0, 1e-9)))  # small n: loop to 5 ms
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            a @ b
        times.append((time.perf_counter() - t0) / inner)
    best = min(times)
    return {"n": n, "gflops": 2.0 * n ** 3 / best / 1e9, "best_s": best, "times_s": times,
            "spread": spread(times)}


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
