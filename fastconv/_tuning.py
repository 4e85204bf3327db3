"""Measured strategy selection: the autotune cache and cost-model calibration.

Tuning cache
    ``<cache dir>/tuning-t<threads>.json``: for each problem key (op, ndim, batch, channels,
    spatial size, kernel, stride, padding, dilation, groups, flip, dtype,
    threads) the strategy that measured fastest and every candidate's seconds.
    Human-readable JSON with a header of validators (fastconv, numpy and scipy
    versions, CPU model, thread count); a file whose validators differ from
    this process's is ignored, never trusted. Writes take a lock file, merge
    with what is on disk, write a temporary file and rename it over the old
    one, so concurrent tuners and a process killed mid-write never leave a
    corrupt file. A corrupt or unreadable file is ignored with one warning and
    rebuilt on the next write.

Calibration
    ``fastconv tune --calibrate`` (:mod:`fastconv._calibrate`) times every strategy on a
    small grid of problems and fits ``seconds = factor * estimate + overhead``: the
    overhead per (strategy, op) from a tiny problem on one thread (Python orchestration,
    allocation, FFT planning), the factor per (strategy, op, ndim, dtype) as the
    geometric mean of ``(measured - overhead) / estimate`` over the grid on one thread,
    times one pooled number per strategy for how its work spreads over the configured
    threads (``<name>|parallel``); ``parallel|overhead`` is what a small call loses on
    several threads (below it, calls run on one: :func:`run_threads`). They go to
    ``<cache dir>/calibration-<level>-t<threads>.json`` (same validators, the instruction-set
    level among them), which wins over the
    file shipped in the package for that level (``fastconv/cost_calibration-<level>.json``).

The cache dir is ``Options.cache_dir``, else ``$FASTCONV_CACHE_DIR``, else the
user cache folder from ``platformdirs`` (``$XDG_CACHE_HOME/fastconv`` or
``~/.cache/fastconv`` on Linux, ``~/Library/Caches/fastconv`` on macOS,
``%LOCALAPPDATA%\\fastconv\\Cache`` on Windows). Relative folders are made
absolute once, so ``os.chdir`` does not switch caches.

Robustness: every entry of a file is type-checked (a tuning entry is
``{"strategy": str, "seconds": {str: seconds}}``, a calibration entry a finite
positive factor or non-negative overhead); a file with any wrong entry, deep
nesting, a non-regular file or more than ``MAX_CACHE_BYTES`` is ignored with
one warning. An unusable cache folder (read-only, a file, under ``/proc``, a
lock that is a symlink or cannot be taken within ``LOCK_TIMEOUT_S``) makes
writes no-ops with one warning: a convolution call never fails because of the
cache. Temporary files of writers killed mid-write are removed by the next
write and by :func:`clear_cache`.
"""
from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import stat
import tempfile
import threading
import time
import warnings

import numpy as np

from . import _cpu, _strategies
from . import _prepare as prep
from ._config import Options, get_config
from ._version import __version__

FORMAT = 1
#: The calibration shipped for each instruction-set level (``{level}``), measured on
#: the development machines; a level without a file runs uncalibrated.
SHIPPED_CALIBRATION = os.path.join(os.path.dirname(__file__), "cost_calibration-{level}.json")


# ---------------------------------------------------------------------------
# locations, validators, keys
# ---------------------------------------------------------------------------
_env_dirs = {}


def cache_dir(opts=None):
    """The absolute folder of the cache files for ``opts``."""
    opts = opts or get_config()
    if opts.cache_dir:
        return opts.cache_dir  # absolute: normalized by fastconv.config
    env = os.environ.get("FASTCONV_CACHE_DIR")
    if env:
        # resolved against the working directory the first time it is seen
        if env not in _env_dirs:
            _env_dirs[env] = os.path.abspath(os.path.expanduser(env))
        return _env_dirs[env]
    if "default" not in _env_dirs:
        import platformdirs

        _env_dirs["default"] = os.path.abspath(
            platformdirs.user_cache_dir("fastconv", appauthor=False))
    return _env_dirs["default"]


def validators(threads):
    import scipy

    return {
        "fastconv": __version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu": _cpu.cpu_model(),
        "level": _cpu.level(),
        "threads": int(threads),
    }


def problem_key(op, spec, threads):
    """The tuning-cache key of ``op`` on ``spec`` with ``threads`` threads (a string)."""
    x = lambda t: "x".join(map(str, t))  # noqa: E731
    pads = ",".join(f"{b}-{a}" for b, a in spec.padding)
    return (f"{op}|{spec.ndim}d|N{spec.batch}|C{spec.in_channels}|O{spec.out_channels}"
            f"|in{x(spec.in_spatial)}|k{x(spec.kernel)}|s{x(spec.stride)}|p{pads}"
            f"|d{x(spec.dilation)}|g{spec.groups}|flip{int(spec.flip)}|{spec.dtype.name}"
            f"|t{threads}")


# ---------------------------------------------------------------------------
# a validated JSON file with atomic, locked, merging writes
# ---------------------------------------------------------------------------
# Called after this module changes the cache files (a calibration stored, the cache
# cleared). The dispatcher adds the clearing of its memo of decisions: it imports
# this module, so this module must not import it.
on_cache_change = []

MAX_CACHE_BYTES = 16 << 20
SIGNATURE_TTL_S = 0.2
LOCK_TIMEOUT_S = 10.0
_warned = set()
_warn_lock = threading.Lock()


def _warn_once(key, message):
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_tuning_entry(key, value):
    """Why ``value`` is not a valid tuning-cache entry, or None."""
    if not isinstance(value, dict):
        return f"entry {key!r} is not an object"
    strat, secs = value.get("strategy"), value.get("seconds")
    if not isinstance(strat, str):
        return f"entry {key!r}: 'strategy' is not a string"
    if not isinstance(secs, dict) or not all(
            isinstance(n, str) and _number(t) and t >= 0 for n, t in secs.items()):
        return f"entry {key!r}: 'seconds' is not an object of non-negative numbers"
    return None


def check_calibration_entry(key, value):
    """Why ``value`` is not a valid calibration entry, or None."""
    if not _number(value):
        return f"entry {key!r} is not a finite number"
    if key.endswith("|overhead") and value < 0:
        return f"overhead {key!r} is negative"
    if not key.endswith("|overhead") and value <= 0:
        return f"factor {key!r} is not positive"
    return None


def _read_json(path, want_validators, check=None):
    """The file's ``entries`` if it is valid for this process, else {}.

    A file that is unreadable, malformed, or has any entry ``check`` rejects
    is ignored as a whole, with one warning per path.
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > MAX_CACHE_BYTES:
            raise ValueError(f"{st.st_size} bytes, more than {MAX_CACHE_BYTES}")
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_CACHE_BYTES + 1).decode("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            raise ValueError("not a fastconv cache file")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as e:
        _warn_once(path, f"fastconv: ignoring unreadable cache file {path} ({e}); "
                         "it will be rebuilt")
        return {}
    if data.get("format") != FORMAT or data.get("validators") != want_validators:
        return {}
    entries = data["entries"]
    if check is not None:
        for key, value in entries.items():
            why = check(key, value)
            if why is not None:
                _warn_once(path, f"fastconv: ignoring cache file {path} with a wrong entry "
                                 f"({why}); it will be rebuilt")
                return {}
    return entries


@contextlib.contextmanager
def _locked(path):
    """Hold ``path + '.lock'`` (filelock: flock on POSIX, msvcrt on Windows)."""
    import filelock

    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock_path = path + ".lock"
    # A symlinked lock could make us create or truncate a file elsewhere (a
    # shared cache folder): refuse it rather than follow it.
    if os.path.islink(lock_path):
        raise OSError(f"the lock file {lock_path} is a symbolic link; not following it")
    lock = filelock.FileLock(lock_path, timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise OSError(f"could not lock {lock_path} within {LOCK_TIMEOUT_S} s") from None
    try:
        yield
    finally:
        lock.release()


def _tmp_prefix(path):
    return f".tmp-{os.path.basename(path)}-"


def _remove_stale_tmp(path):
    """Remove temporary files of writers of ``path`` that died mid-write.

    Called under the lock: the lock's holder is the only live writer of
    ``path``, so any of its temporary files left over is stale.
    """
    pattern = os.path.join(glob.escape(os.path.dirname(path)), glob.escape(_tmp_prefix(path)) + "*")
    for tmp in glob.glob(pattern):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _write_json(path, want_validators, new_entries, check=None):
    """Merge ``new_entries`` into the file at ``path`` atomically; return all entries."""
    with _locked(path):
        _remove_stale_tmp(path)
        entries = _read_json(path, want_validators, check)
        entries.update(new_entries)
        data = {"format": FORMAT, "validators": want_validators, "entries": entries}
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".json",
                                   dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return entries


class _FileCache:
    """In-memory view of one validated JSON file, reloaded when it changes."""

    def __init__(self, name, check):
        self.name = name
        self.check = check
        self._loaded = {}  # (path, validators) -> (stat signature, entries)
        self._sigs = {}    # path -> (monotonic time, signature)
        self._paths = {}   # (cache_dir, env, threads) -> path

    def path(self, opts, threads=None):
        # One file per instruction-set level and thread count: both are
        # validators, so processes at different levels or counts must not
        # overwrite each other's file.
        threads = opts.threads if threads is None else threads
        level = _cpu.level()
        key = (opts.cache_dir, os.environ.get("FASTCONV_CACHE_DIR"), threads, level)
        path = self._paths.get(key)
        if path is None:
            stem, ext = os.path.splitext(self.name)
            path = os.path.join(cache_dir(opts), f"{stem}-{level}-t{threads}{ext}")
            if len(self._paths) > 64:
                self._paths.clear()
            self._paths[key] = path
        return path

    def signature(self, opts, threads=None):
        """(mtime, size, inode) of the file, or None: changes when anyone rewrites it.

        Called on every convolution (the dispatcher's memo key), so the file is
        stat'ed at most every ``SIGNATURE_TTL_S`` per path; writes by this
        process (:meth:`store`, :meth:`clear`) are seen at once.
        """
        path = self.path(opts, threads)
        now = time.monotonic()
        hit = self._sigs.get(path)
        if hit is not None and now - hit[0] < SIGNATURE_TTL_S:
            return hit[1]
        try:
            st = os.stat(path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except (OSError, ValueError):
            sig = None
        if len(self._sigs) > 64:
            self._sigs.clear()
        self._sigs[path] = (now, sig)
        return sig

    def entries(self, opts):
        path, val = self.path(opts), validators(opts.threads)
        self._sigs.pop(path, None)
        sig = self.signature(opts)
        key = (path, json.dumps(val, sort_keys=True))
        hit = self._loaded.get(key)
        if hit is None or hit[0] != sig:
            hit = (sig, _read_json(path, val, self.check) if sig is not None else {})
            self._loaded[key] = hit
        return hit[1]

    def remember(self, opts, key, entry):
        """Keep ``entry`` in memory (so an unwritable cache does not re-measure)."""
        self.entries(opts)[key] = entry

    def store(self, opts, new_entries):
        """Merge ``new_entries`` into the file; False (one warning) if it cannot be written."""
        path, val = self.path(opts), validators(opts.threads)
        try:
            _write_json(path, val, new_entries, self.check)
        except OSError as e:
            _warn_once(("write", path), f"fastconv: cannot write the cache file {path} ({e}); "
                                        "results are not cached (set FASTCONV_CACHE_DIR or "
                                        "fastconv.config(cache_dir=...) to a writable folder)")
            return False
        finally:
            self._loaded.pop((path, json.dumps(val, sort_keys=True)), None)
            self._sigs.pop(path, None)
        return True

    def clear(self, opts):
        """Delete the file, its lock and temporary files; return the paths removed."""
        path = self.path(opts)
        removed = []
        for p in [path, path + ".lock",
                  *glob.glob(os.path.join(glob.escape(os.path.dirname(path)),
                                          glob.escape(_tmp_prefix(path)) + "*"))]:
            try:
                os.unlink(p)
                removed.append(p)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                with contextlib.suppress(OSError):
                    os.rmdir(p)
                    removed.append(p)
        self._loaded.clear()
        self._sigs.clear()
        return removed


tuning_cache = _FileCache("tuning.json", check_tuning_entry)
calibration_cache = _FileCache("calibration.json", check_calibration_entry)


def clear_cache(opts: Options | None = None) -> list[str]:
    """Delete this machine's tuning and calibration files for the current thread count.

    Also removes their lock files and temporary files left by killed writers,
    and forgets remembered dispatcher decisions. The next "autotune" call
    measures again; the cost model falls back to the shipped calibration.

    Parameters
    ----------
    opts : Options, optional
        Options whose ``cache_dir`` and thread count name the files; default:
        those in force (:func:`fastconv.get_config`).

    Returns
    -------
    list of str
        The paths removed.
    """
    opts = opts or get_config()
    removed = []
    for cache in (calibration_cache, tuning_cache):
        removed += cache.clear(opts)
    for hook in on_cache_change:
        hook()
    return removed


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------
def random_operands(op, spec, seed=0):
    """Random operands of the right shapes for timing ``op`` on ``spec``."""
    rng = np.random.default_rng(seed)
    rand = lambda shape: rng.standard_normal(shape).astype(spec.dtype)  # noqa: E731
    if op == "forward":
        return prep.input5(rand(spec.input_shape5), spec), rand(spec.weight_shape5)
    if op == "grad_input":
        return rand(spec.output_shape5), rand(spec.weight_shape5)
    return prep.input5(rand(spec.input_shape5), spec), rand(spec.output_shape5)


def time_call(fn, min_time=0.005, repeat=3, max_time=None):
    """Best seconds of one ``fn()`` call: a warm-up, then ``repeat`` timings,
    each looping enough calls to last ``min_time``. Stops early when the warm-up
    alone exceeds ``max_time`` and is long enough (> 50 ms) that one-off costs
    of a first call (allocation, FFT plans, thread pools) cannot explain it."""
    t0 = time.perf_counter()
    fn()
    warm = time.perf_counter() - t0
    if max_time is not None and warm > max(max_time, 0.05):
        return warm
    inner = max(1, math.ceil(min_time / max(warm, 1e-9)))
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def measure(op, spec, names, opts, budget_s=None):
    """Seconds of each strategy in ``names`` (ordered cheapest-estimate first),
    each planned under ``opts`` (on ``opts.threads`` threads).

    A strategy whose warm-up run is already 3x slower than the best so far is
    not timed further (its warm-up time is reported): the per-key budget.
    """
    out, best = {}, math.inf
    for name in names:
        strat = _strategies.get(name)
        a, b = random_operands(op, spec)
        fn = _strategies.planned_call(strat, op, spec, a, b, opts)
        t = time_call(fn, max_time=3 * best if best < math.inf else budget_s)
        out[name] = t
        best = min(best, t)
    return out


# ---------------------------------------------------------------------------
# calibration of the cost model
# ---------------------------------------------------------------------------
def _calibration_key(name, op, ndim, dtype):
    return f"{name}|{op}|{ndim}d|{np.dtype(dtype).name}"


_shipped = None         # the entries shipped for _shipped_level
_shipped_level = None


def _shipped_calibration():
    """The shipped calibration of the running level ({} where none is shipped).

    Another CPU at the same level runs the same kernels, so their relative
    speeds carry over better than no calibration; another level's never does.
    """
    global _shipped, _shipped_level
    level = _cpu.level()
    if _shipped is None or _shipped_level != level:
        entries = {}
        try:
            with open(SHIPPED_CALIBRATION.format(level=level)) as f:
                data = json.load(f)
            if data.get("measured_on", {}).get("level") == level:
                entries = data.get("entries", {})
        except (OSError, ValueError, AttributeError):
            pass
        _shipped, _shipped_level = entries, level
    return _shipped


_cpu.on_level_change(_shipped_calibration)  # loaded before any call at the new level

def _calibration_entry(key, opts, default):
    user = calibration_cache.entries(opts)
    if key in user:
        return user[key]
    return _shipped_calibration().get(key, default)


def calibrated_estimate(strategy, op, spec, opts, threads=None):
    """Seconds the cost model predicts: ``factor * strategy.estimate + overhead``
    on ``threads`` threads (default ``opts.threads``)."""
    name = strategy.name
    factor = _calibration_entry(_calibration_key(name, op, spec.ndim, spec.dtype), opts, 1.0)
    overhead = _calibration_entry(f"{name}|{op}|overhead", opts, 0.0)
    n = opts.threads if threads is None else threads
    return factor * strategy.estimate(spec, op, n, opts) + overhead


#: Default cost of spreading one call over several threads (fork/join of the
#: OpenMP team, waking BLAS threads), when no calibration measured it.
PARALLEL_OVERHEAD_S = 20e-6


def parallel_overhead(opts):
    """Seconds one call loses by running on several threads instead of one
    (measured by ``tune --calibrate`` as ``parallel|overhead``)."""
    return _calibration_entry("parallel|overhead", opts, PARALLEL_OVERHEAD_S)


def run_threads(strategy, op, spec, opts):
    """``(threads, calibrated seconds)`` to run ``op`` with: one thread when the
    estimated gain of ``opts.threads`` threads does not pay for
    :func:`parallel_overhead` (tiny problems), else ``opts.threads``."""
    n = opts.threads
    t_n = calibrated_estimate(strategy, op, spec, opts, n)
    if n <= 1:
        return n, t_n
    t_1 = calibrated_estimate(strategy, op, spec, opts, 1)
    if t_1 <= t_n + parallel_overhead(opts):
        return 1, t_1
    return n, t_n
