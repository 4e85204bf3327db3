"""Keep BLAS threads and OpenMP threads from oversubscribing the cores.

BLAS thread counts are process-wide, so concurrent fastconv calls (threads of
one process) share one limiter: the first call to enter saves the BLAS
libraries' counts, every active call's request is honoured by setting the
smallest of them, and the last call to leave restores the saved counts. With
threadpoolctl's own ``limit`` context per call, overlapping calls restored each
other's saved values and could leave BLAS at 1 thread for the whole process.
"""
from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_controller = None
_active = {}     # request token -> requested thread count
_saved = None    # [(library controller, its thread count before the first call)]
_applied = None  # the count currently set, or None


def _blas_libraries():
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a declared dependency
            return None
        # created lazily: by then the compiled modules have loaded scipy's BLAS
        _controller = ThreadpoolController()
    return [lib for lib in _controller.lib_controllers if lib.user_api == "blas"]


def _apply(n):
    global _applied
    if n != _applied:
        for lib, _ in _saved:
            lib.set_num_threads(n)
        _applied = n


@contextlib.contextmanager
def blas_limit(n):
    """Context manager limiting every loaded BLAS library to ``n`` threads.

    Used around kernels that call BLAS from inside an OpenMP loop, so the two
    thread pools never run at full width at once. Safe to nest and to enter
    from several threads at once (see the module docstring). A no-op when
    threadpoolctl is unavailable.
    """
    global _saved, _applied
    token = object()
    with _lock:
        if _saved is None:
            libs = _blas_libraries()
            if libs is None:
                _saved = None
                entered = False
            else:
                _saved = [(lib, lib.num_threads) for lib in libs]
                _applied = None
                entered = True
        else:
            entered = True
        if entered:
            _active[token] = max(1, int(n))
            _apply(min(_active.values()))
    try:
        yield
    finally:
        if entered:
            with _lock:
                del _active[token]
                if _active:
                    _apply(min(_active.values()))
                else:
                    for lib, count in _saved:
                        lib.set_num_threads(count)
                    _saved, _applied = None, None


def blas_threads():
    """{library path: thread count} of the loaded BLAS libraries (for tests)."""
    libs = _blas_libraries() or []
    return {lib.filepath: lib.num_threads for lib in libs}
