"""The machine's resources as this process sees them, read in one place.

* CPUs: the affinity mask, capped by a cgroup CPU quota (:func:`cpu_limit`), and
  the largest thread count accepted (:func:`max_threads`);
* threads: ``OMP_NUM_THREADS``, else the CPUs, capped by OpenMP's own limit when
  something lowered it (``omp_set_num_threads``, which
  ``threadpoolctl.threadpool_limits(n, user_api="openmp")`` calls):
  :func:`default_threads`, the count used when ``n_threads`` is None;
* fork state: a process forked from one that imported fastconv runs its kernels
  on one thread (:func:`in_forked_child`, :func:`forked_threads`);
* memory: what the machine and the process's cgroup can still give
  (:func:`available_memory`);
* the instruction-set level of the CPU and of the kernels, re-exported from
  :mod:`fastconv._cpu`, which selects it.

Everything here reads the operating system (``/proc``, ``/sys/fs/cgroup``,
``sched_getaffinity``) or the OpenMP runtime; nothing here decides how a call
uses what it finds (that is :mod:`fastconv._config` and the dispatcher).
"""
from __future__ import annotations

import functools
import math
import os
import time
import warnings

from ._cpu import available_levels, cpu_level, cpu_model, level
from ._ext import _im2col

__all__ = ["cpu_limit", "max_threads", "omp_max_threads", "default_threads",
           "in_forked_child", "forked_threads", "available_memory",
           "level", "cpu_level", "available_levels", "cpu_model"]


# ---------------------------------------------------------------------------
# CPUs
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _cgroup_cpu_quota():
    """CPUs allowed by a cgroup CPU quota (containers), rounded up; None if unlimited.

    cgroup v2 ``cpu.max`` ("max 100000" or "150000 100000") or v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; like loky's ``cpu_count``
    (which scikit-learn's ``_openmp_effective_n_threads`` relies on).
    """
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if quota > 0 and period > 0:
            return max(1, math.ceil(quota / period))
    except (OSError, ValueError):
        pass
    return None


def cpu_limit():
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(n, quota) if quota else n)


def max_threads():
    """Largest ``n_threads`` accepted: 8 threads per usable CPU, at least 64.

    More gains nothing, and very large counts make the OpenMP runtime fail to
    create its threads (libgomp aborts or crashes the process), so they are
    refused up front with a ValueError rather than passed to a kernel.
    """
    return max(64, 8 * _cpu_count())


@functools.lru_cache(maxsize=1)
def _cpu_count():
    # the CPUs the machine has, not those this process may use: fixed for its
    # lifetime, and os.cpu_count() reads /sys on every call
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------
# threads: OMP_NUM_THREADS and OpenMP's own limit
# ---------------------------------------------------------------------------
def omp_max_threads():
    """OpenMP's limit on a team started from this thread (``omp_get_max_threads``).

    ``OMP_NUM_THREADS`` as the runtime read it when it was loaded (else the
    CPUs it found), or what ``omp_set_num_threads`` set since in this thread;
    1 in a build without OpenMP.
    """
    return _im2col.omp_max_threads()


# OpenMP's limit when fastconv was imported. A lower limit later means someone
# (threadpoolctl, a library calling omp_set_num_threads) asked OpenMP code to use
# fewer threads, and fastconv's kernels are OpenMP code: it caps them. The limit
# at import is not a cap itself: the runtime read OMP_NUM_THREADS once, at load,
# while fastconv follows the variable as it is at each call.
_OMP_AT_IMPORT = omp_max_threads()

_omp_warned = set()
# default_threads() runs on every call; the affinity mask is re-read at most this often
_REFRESH_S = 1.0
_default_memo = {}


def default_threads():
    """Threads used when ``n_threads`` is None.

    ``$OMP_NUM_THREADS`` when set to a positive int (its first entry, as the
    OpenMP runtime reads it; clamped with a warning above :func:`max_threads`),
    else :func:`cpu_limit` (affinity mask and container CPU quota); in either
    case at most OpenMP's own limit (:func:`omp_max_threads`) when that was
    lowered after fastconv was imported, so that
    ``threadpoolctl.threadpool_limits(n, user_api="openmp")`` limits fastconv
    as it limits other OpenMP code.
    """
    raw = os.environ.get("OMP_NUM_THREADS", "")
    omp = omp_max_threads()
    key = (raw, omp)
    hit = _default_memo.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < _REFRESH_S:
        return hit[1]
    n = _default_threads(raw)
    if omp < _OMP_AT_IMPORT:
        n = max(1, min(n, omp))
    _default_memo.clear()
    _default_memo[key] = (now, n)
    return n


def _default_threads(raw):
    env = raw.split(",")[0].strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n >= 1:
            cap = max_threads()
            if n > cap:
                if env not in _omp_warned:
                    _omp_warned.add(env)
                    warnings.warn(f"fastconv: OMP_NUM_THREADS={env} is more than {cap} "
                                  f"threads; using {cap}", RuntimeWarning, stacklevel=2)
                n = cap
            return n
    return cpu_limit()


# ---------------------------------------------------------------------------
# fork state
# ---------------------------------------------------------------------------
# GNU OpenMP (libgomp) cannot start threads in a child forked after the parent ran
# a parallel region: the child's first parallel loop hangs for ever (every strategy,
# in a child forked by os.fork or by multiprocessing's "fork" start method).
# A forked child therefore runs fastconv on one thread; one thread per worker is
# also what a pool of forked workers wants (no oversubscription of the cores).
_forked_child = False
_fork_warned = False


def _after_fork_in_child():
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def in_forked_child():
    """Whether this process was forked from one that had imported fastconv."""
    return _forked_child


def forked_threads(requested):
    """Threads in a forked child: 1, with a RuntimeWarning (once) if more were asked for."""
    global _fork_warned
    if requested is not None and requested > 1 and not _fork_warned:
        _fork_warned = True
        warnings.warn(f"fastconv: n_threads={requested} in a forked child process: OpenMP "
                      "cannot start threads after fork, running on 1 thread (start "
                      "processes with the 'spawn' or 'forkserver' method for threads)",
                      RuntimeWarning, stacklevel=3)
    return 1


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------
def available_memory():
    """Bytes the machine (and this process's cgroup) can still give, or None."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                free = int(limit) - int(f.read())
            avail = free if avail is None else min(avail, free)
    except (OSError, ValueError):
        pass
    return avail
