"""Keep BLAS threads and OpenMP threads from oversubscribing the cores.

BLAS thread counts are process-wide, so concurrent fastconv calls (threads of
one process) share one limiter: the first call to enter saves the BLAS
libraries' counts, every active call's request is honoured by setting the
smallest of them, and the last call to leave restores the saved counts. With
threadpoolctl's own ``limit`` context per call, overlapping calls restored each
other's saved values and could leave BLAS at 1 thread for the whole process.

Per-call cost: the kernels call BLAS through ``scipy.linalg.cython_blas``, so
only the BLAS library scipy loaded is limited (numpy's own OpenBLAS is never
called from inside an OpenMP loop); when scipy's cannot be told apart, every
loaded BLAS is. A library already at the requested count is not touched: a
``set_num_threads`` costs a few microseconds each way, which on a tiny
convolution was a measurable share of the call.

threadpoolctl (3.8 and later) lets only one Python thread change a
pthreads OpenBLAS's count, the first to try, and silently ignores the others
until that thread ends. The limiter's own lock already serializes its
changes, so after each change it hands that control back
(:func:`_set_threads`): otherwise the thread that lowered the count could be a
different one from the thread that must restore it, and the restore was
ignored, leaving BLAS at one thread for the rest of the process.

In a child forked while another thread held the lock or was inside a call,
that thread does not exist: the child gets a fresh lock and forgets the
parent's active calls (:func:`_reset_in_child`), so its next call restores
the saved counts on leaving.
"""
from __future__ import annotations

import contextlib
import os
import platform
import threading

_lock = threading.Lock()
_controller = None
_libs = None     # the BLAS library controllers the limiter acts on
_active = {}     # request token -> requested thread count
_saved = None    # [(library controller, its thread count before the first call)]
_current = None  # [thread count now set on each library of _saved]


def _scipy_dirs():
    """Folders holding scipy and the libraries its wheel bundles."""
    try:
        import scipy
    except ImportError:  # pragma: no cover - a declared dependency
        return ()
    root = os.path.dirname(os.path.realpath(scipy.__file__))
    return (root + os.sep, root + ".libs" + os.sep)


def _blas_libraries():
    """The BLAS libraries to limit: scipy's when it can be told apart, else all."""
    global _controller, _libs
    if _libs is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a declared dependency
            return None
        # created lazily: by then the compiled modules have loaded scipy's BLAS
        _controller = ThreadpoolController()
        libs = [lib for lib in _controller.lib_controllers if lib.user_api == "blas"]
        dirs = _scipy_dirs()
        ours = [lib for lib in libs
                if os.path.realpath(lib.filepath).startswith(dirs)] if dirs else []
        _libs = ours or libs
    return _libs


def _set_threads(lib, n):
    """Set ``lib``'s thread count, then release threadpoolctl's per-library
    controlling thread if this call took it (see the module docstring)."""
    lib.set_num_threads(n)
    release = getattr(type(lib), "clear_controlling_thread", None)
    if release is not None:
        release()


def _apply(n):
    for i, (lib, _) in enumerate(_saved):
        if _current[i] != n:
            _set_threads(lib, n)
            _current[i] = n


def _reset_in_child():
    # the threads of the parent's active calls do not exist in a forked child:
    # a lock one of them held would never be released, and their requests
    # would never leave; the saved counts stay, so the child's next call
    # restores them when it leaves
    global _lock, _active
    _lock = threading.Lock()
    _active = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


#: On x86-64, OpenBLAS runs a GEMM of fewer multiply-adds (m*n*k) than this on the
#: calling thread alone, whatever its thread count (interface/gemm.c:
#: SMP_THRESHOLD_MIN times the default GEMM_MULTITHREAD_THRESHOLD)
OPENBLAS_MT_MNK = 65536 * 4
#: ... and on every architecture below this: on ARM64, POWER and RISC-V a GEMM
#: with m or n of 1 goes to GEMV, which threads from m*n = 2304 * 4 (m*n <= m*n*k),
#: and Neoverse V1/V2 thread their sgemm from fewer multiply-adds than x86-64
_OPENBLAS_MT_ANY = 2304 * 4
_X86_64 = platform.machine().lower() in ("x86_64", "amd64")
_all_openblas = None


def _runs_alone(gemm_macs):
    """True when every BLAS call of at most ``gemm_macs`` multiply-adds runs on one
    thread anyway: the limited libraries are all OpenBLAS and it is below their
    threading threshold."""
    global _all_openblas
    if gemm_macs is None or gemm_macs >= (OPENBLAS_MT_MNK if _X86_64 else _OPENBLAS_MT_ANY):
        return False
    if _all_openblas is None:
        libs = _blas_libraries()
        _all_openblas = bool(libs) and all(
            getattr(lib, "internal_api", None) == "openblas" for lib in libs)
    return _all_openblas


@contextlib.contextmanager
def blas_limit(n, gemm_macs=None):
    """Context manager limiting the kernels' BLAS library to ``n`` threads.

    Used around kernels that call BLAS from inside an OpenMP loop, so the two
    thread pools never run at full width at once. Safe to nest and to enter
    from several threads at once (see the module docstring). A no-op when
    threadpoolctl is unavailable, and for a limit of one thread around BLAS
    calls of at most ``gemm_macs`` multiply-adds each that OpenBLAS runs on one
    thread anyway (setting the count and restoring it cost more than a tiny
    convolution).
    """
    if n <= 1 and _runs_alone(gemm_macs):
        yield
        return
    global _saved, _current
    token = object()
    with _lock:
        if _saved is None:
            libs = _blas_libraries()
            if libs is None:
                entered = False
            else:
                _saved = [(lib, lib.num_threads) for lib in libs]
                _current = [count for _, count in _saved]
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
                    for i, (lib, count) in enumerate(_saved):
                        if _current[i] != count:
                            _set_threads(lib, count)
                    _saved, _current = None, None


def blas_threads():
    """{library path: thread count} of the BLAS libraries the limiter acts on (for tests)."""
    libs = _blas_libraries() or []
    return {lib.filepath: lib.num_threads for lib in libs}
