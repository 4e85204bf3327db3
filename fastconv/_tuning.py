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
    ``fastconv tune --calibrate`` times every strategy on a small grid of
    problems and fits ``seconds = factor * estimate + overhead``: the overhead
    per (strategy, op) from a tiny problem (Python orchestration, allocation,
    FFT planning), the factor per (strategy, op, ndim, dtype) as the geometric
    mean of ``(measured - overhead) / estimate`` over the grid. They go to
    ``<cache dir>/calibration-t<threads>.json`` (same validators), which wins over the
    file shipped in the package (``fastconv/cost_calibration.json``).

The cache dir is ``Options.cache_dir``, else ``$FASTCONV_CACHE_DIR``, else
``$XDG_CACHE_HOME/fastconv``, else ``~/.cache/fastconv``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tempfile
import time
import warnings

import numpy as np

from . import _prepare as prep
from . import _strategies
from ._config import get_config
from ._spec import OPS
from ._version import __version__

FORMAT = 1
SHIPPED_CALIBRATION = os.path.join(os.path.dirname(__file__), "cost_calibration.json")


# ---------------------------------------------------------------------------
# locations, validators, keys
# ---------------------------------------------------------------------------
def cache_dir(opts=None):
    opts = opts or get_config()
    if opts.cache_dir:
        return os.path.expanduser(opts.cache_dir)
    if os.environ.get("FASTCONV_CACHE_DIR"):
        return os.path.expanduser(os.environ["FASTCONV_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastconv")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def validators(threads):
    import scipy

    return {
        "fastconv": __version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu": _cpu_model(),
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
_warned = set()


def _read_json(path, want_validators):
    """The file's ``entries`` if it is valid for this process, else {}."""
    try:
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            raise ValueError("not a fastconv cache file")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        if path not in _warned:
            _warned.add(path)
            warnings.warn(f"fastconv: ignoring unreadable cache file {path} ({e}); "
                          "it will be rebuilt", RuntimeWarning, stacklevel=3)
        return {}
    if data.get("format") != FORMAT or data.get("validators") != want_validators:
        return {}
    return data["entries"]


@contextlib.contextmanager
def _locked(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a") as lockf:
        try:
            import fcntl

            fcntl.flock(lockf, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX: atomic rename only
            pass
        yield


def _write_json(path, want_validators, new_entries):
    """Merge ``new_entries`` into the file at ``path`` atomically; return all entries."""
    with _locked(path):
        entries = _read_json(path, want_validators)
        entries.update(new_entries)
        data = {"format": FORMAT, "validators": want_validators, "entries": entries}
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=os.path.dirname(path))
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

    def __init__(self, name):
        self.name = name
        self._loaded = {}  # (path, validators) -> (mtime, entries)

    def path(self, opts):
        # One file per thread count: the thread count is a validator, so
        # processes with different counts must not overwrite each other's file.
        stem, ext = os.path.splitext(self.name)
        return os.path.join(cache_dir(opts), f"{stem}-t{opts.threads}{ext}")

    def entries(self, opts):
        path, val = self.path(opts), validators(opts.threads)
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            mtime = None
        key = (path, json.dumps(val, sort_keys=True))
        hit = self._loaded.get(key)
        if hit is None or hit[0] != mtime:
            hit = (mtime, _read_json(path, val) if mtime is not None else {})
            self._loaded[key] = hit
        return hit[1]

    def store(self, opts, new_entries):
        path, val = self.path(opts), validators(opts.threads)
        _write_json(path, val, new_entries)
        self._loaded.pop((path, json.dumps(val, sort_keys=True)), None)


tuning_cache = _FileCache("tuning.json")
calibration_cache = _FileCache("calibration.json")


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------
def random_operands(op, spec, seed=0, strategy=None):
    """Prepared operands of the right shapes for timing ``op`` on ``spec``
    (the input unpadded for a ``strategy`` that pads inside)."""
    rng = np.random.default_rng(seed)
    rand = lambda shape: rng.standard_normal(shape).astype(spec.dtype)  # noqa: E731
    pad = (lambda x, s: x) if getattr(strategy, "pads_inside", False) else prep.padded_input
    if op == "forward":
        return pad(rand(spec.input_shape5), spec), rand(spec.weight_shape5)
    if op == "grad_input":
        return rand(spec.output_shape5), rand(spec.weight_shape5)
    return pad(rand(spec.input_shape5), spec), rand(spec.output_shape5)


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


def measure(op, spec, names, threads, budget_s=None):
    """Seconds of each strategy in ``names`` (ordered cheapest-estimate first).

    A strategy whose warm-up run is already 3x slower than the best so far is
    not timed further (its warm-up time is reported): the per-key budget.
    """
    operands = {}
    out, best = {}, math.inf
    for name in names:
        strat = _strategies.get(name)
        inside = bool(getattr(strat, "pads_inside", False))
        if inside not in operands:
            operands[inside] = random_operands(op, spec, strategy=strat)
        a, b = operands[inside]
        fn = lambda: strat.run(op, spec, a, b, threads)  # noqa: E731
        t = time_call(fn, max_time=3 * best if best < math.inf else budget_s)
        out[name] = t
        best = min(best, t)
    return out


# ---------------------------------------------------------------------------
# calibration of the cost model
# ---------------------------------------------------------------------------
def _calibration_key(name, op, ndim, dtype):
    return f"{name}|{op}|{ndim}d|{np.dtype(dtype).name}"


_shipped = None


def _shipped_calibration():
    global _shipped
    if _shipped is None:
        try:
            with open(SHIPPED_CALIBRATION) as f:
                _shipped = json.load(f).get("entries", {})
        except (OSError, ValueError):
            _shipped = {}
    return _shipped


def _calibration_entry(key, opts, default):
    user = calibration_cache.entries(opts)
    if key in user:
        return user[key]
    return _shipped_calibration().get(key, default)


def calibrated_estimate(strategy, op, spec, opts):
    """Seconds the cost model predicts: ``factor * strategy.estimate + overhead``."""
    name = strategy.name
    factor = _calibration_entry(_calibration_key(name, op, spec.ndim, spec.dtype), opts, 1.0)
    overhead = _calibration_entry(f"{name}|{op}|overhead", opts, 0.0)
    return factor * strategy.estimate(spec, op, opts.threads) + overhead


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
    ]
    if quick:
        grid = grid[::3]
    return grid


def calibrate(quick=False, dtypes=("float32", "float64"), progress=print, opts=None):
    """Time the calibration grid and store the fitted factors; return them."""
    from ._spec import make_spec

    opts = opts or get_config()
    factors = {}
    # Fixed per-call cost: a problem too small for the work to matter.
    tiny = make_spec((1, 2, 6, 6), (2, 2, 3, 3), padding=1, dtype=np.float64)
    for op in OPS:
        names = [s.name for s in _strategies.all_strategies() if s.supports(tiny, op) is None]
        for name, t in measure(op, tiny, names, opts.threads).items():
            factors[f"{name}|{op}|overhead"] = t
    logs = {}
    problems = calibration_grid(quick)
    total = len(problems) * len(dtypes) * len(OPS)
    done = 0
    for dtype in dtypes:
        for ishape, wshape, kw in problems:
            spec = make_spec(ishape, wshape, dtype=dtype, **kw)
            for op in OPS:
                done += 1
                names = [s.name for s in _strategies.all_strategies()
                         if s.supports(spec, op) is None
                         and s.workspace(spec, op) <= opts.memory_budget]
                secs = measure(op, spec, names, opts.threads, budget_s=2.0)
                for name, t in secs.items():
                    est = _strategies.get(name).estimate(spec, op, opts.threads)
                    work = max(t - factors.get(f"{name}|{op}|overhead", 0.0), 0.1 * t)
                    logs.setdefault(_calibration_key(name, op, spec.ndim, dtype), []).append(
                        math.log(work / est))
                if progress:
                    progress(f"[{done:3d}/{total}] {op:11s} {dtype} in={ishape} w={wshape} "
                             + " ".join(f"{n}={t * 1e3:.2f}ms" for n, t in secs.items()))
    factors.update({k: math.exp(sum(v) / len(v)) for k, v in logs.items()})
    calibration_cache.store(opts, factors)
    from ._dispatch import clear_memo

    clear_memo()
    return factors


# ---------------------------------------------------------------------------
# command line: fastconv explain / fastconv tune
# ---------------------------------------------------------------------------
def _ints(text):
    return tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())


def _param(text):
    """'1' -> 1, '1,2' -> (1, 2), 'same' -> 'same', '(1,2),(0,1)' -> ((1,2),(0,1))."""
    import ast

    text = text.strip()
    if text.isalpha():
        return text
    v = ast.literal_eval(text)
    return v


def add_explain_arguments(p):
    p.add_argument("op", choices=OPS)
    p.add_argument("--input", required=True, type=_ints, help="input shape, e.g. 32,64,56,56")
    p.add_argument("--weight", required=True, type=_ints, help="weight shape, e.g. 64,64,3,3")
    p.add_argument("--stride", default="1", type=_param)
    p.add_argument("--padding", default="0", type=_param,
                   help="int, per-axis tuple, ((b,a),...) pairs, valid, same or full")
    p.add_argument("--dilation", default="1", type=_param)
    p.add_argument("--groups", default=1, type=int)
    p.add_argument("--flip", action="store_true")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))


def run_explain(args):
    from ._api import explain

    d = explain(args.op, args.input, args.weight, args.stride, args.padding, args.dilation,
                args.groups, flip=args.flip, dtype=args.dtype)
    print(d)


def add_tune_arguments(p):
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--calibrate", action="store_true",
                   help="refit the cost model on this machine (15-60 s)")
    g.add_argument("--show", action="store_true", help="print the cache files and their entries")
    g.add_argument("--clear", action="store_true", help="delete this machine's tuning cache")
    p.add_argument("--quick", action="store_true", help="with --calibrate: a smaller grid")


def run_tune(args):
    opts = get_config()
    if args.calibrate:
        factors = calibrate(quick=args.quick)
        print(f"wrote {len(factors)} factors to {calibration_cache.path(opts)}")
    elif args.show:
        for cache in (calibration_cache, tuning_cache):
            entries = cache.entries(opts)
            print(f"{cache.path(opts)}: {len(entries)} entries")
            for k, v in sorted(entries.items()):
                print(f"  {k}: {v}")
    else:
        for cache in (calibration_cache, tuning_cache):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(cache.path(opts))
                print(f"removed {cache.path(opts)}")
