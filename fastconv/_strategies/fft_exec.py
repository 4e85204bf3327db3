"""How the FFT strategy's core runs: the buffers it keeps between calls and
its one pipeline per thread (:mod:`fastconv._strategies.fft` runs the steps,
:mod:`fft_plan` sizes them).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from .._ext import _fft


# ---------------------------------------------------------------------------
# buffers kept between calls
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def kept_buffers(cap):
    """Within the block, NumPy buffers allocated by this thread and freed again
    are kept in a pool and reused by later allocations of the same size
    (``pyx/_fft_pool.h``), instead of being mapped and page-faulted afresh on
    every call: scipy.fft allocates every transform's output itself.

    The buffers handed out inside the block plus the pool never exceed ``cap``
    bytes; on leaving, the pool is trimmed to ``cap`` (a later call with a
    smaller budget trims it further). NumPy's allocator setting is
    context-local, so other threads are unaffected; the pool itself is shared
    under a lock. Kept buffers stay visible to ``tracemalloc``.
    """
    _fft.pool_trim(cap)
    handler = _fft.pool_handler(cap)
    old = _fft.set_mem_handler(handler)
    try:
        yield
    finally:
        _fft.set_mem_handler(old)
        _fft.pool_close(handler)
        _fft.pool_trim(cap)


def release_buffers():
    """Give every buffer kept between FFT calls back to the C library."""
    _fft.pool_trim(0)


# ---------------------------------------------------------------------------
# one pipeline per thread
# ---------------------------------------------------------------------------
# Why: the moves and contractions run in OpenMP loops, the transforms in
# pocketfft's own thread pool. Alternating the two on the same cores, the
# OpenMP team spins after each loop (libgomp waits actively for the next one)
# while pocketfft's workers need those cores, so two threads ran slower than one.
# Instead, each of ``k`` threads runs
# the whole chain (move, transform, contraction, inverse, move) single-threaded
# on its own slice of the chunk's samples; scipy.fft and the Cython kernels
# release the GIL.
_executor = None
_executor_lock = threading.Lock()


def _forget_executor_in_child():
    # a forked child has none of the parent's worker threads, but the executor
    # believes its idle workers still exist and queues tasks nobody runs (the
    # call then waits forever); its lock may have been held by another thread
    global _executor, _executor_lock
    _executor = None
    _executor_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_executor_in_child)


def _lanes_split(n, nbc):
    """Pipelines per chunk: one per thread (``n``: as many as the memory model
    allows, :func:`fft_plan._chunks`) while every pipeline gets a sample."""
    return max(1, min(int(n), int(nbc)))


def _pool(workers):
    global _executor
    with _executor_lock:
        if _executor is None or _executor._max_workers < workers:
            # a smaller one is not shut down: another thread may be submitting
            # to it; its idle workers exit once it is garbage-collected
            _executor = ThreadPoolExecutor(workers, "fastconv-fft")
        return _executor


def _batched(part, N, nbc, n, k):
    """``part(s0, ns, threads, j)`` over the chunks of ``nbc`` samples of ``N``:
    one call with ``n`` threads when ``k == 1``, else ``k`` single-threaded
    calls per chunk on slices of it, the ``j``-th in the ``j``-th pipeline (the
    calling thread runs the last one)."""
    for n0 in range(0, N, nbc):
        na = min(nbc, N - n0)
        kk = min(k, na)
        if kk <= 1:
            part(n0, na, n, 0)
            continue
        cuts = [n0 + na * j // kk for j in range(kk + 1)]
        ex = _pool(kk - 1)
        # each task needs its own copy of the context: the memory handler of
        # kept_buffers is a context variable
        futs = [ex.submit(contextvars.copy_context().run, part, cuts[j], cuts[j + 1] - cuts[j],
                          1, j) for j in range(kk - 1)]
        try:
            part(cuts[kk - 1], cuts[kk] - cuts[kk - 1], 1, kk - 1)
        finally:
            errors = [f.exception() for f in futs]
        for e in errors:
            if e is not None:
                raise e


def _summed(parts):
    """Sum of the pipelines' spectrum sums, in pipeline order (deterministic)."""
    total = parts[0]
    for p in parts[1:]:
        total += p
    return total
