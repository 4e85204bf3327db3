"""``fastconv bench``: time every strategy on the benchmark layers and write a report.

Usage::

    fastconv bench                       # quick suite (~1 minute on 2 cores)
    fastconv bench --full                # the DESIGN.md layer sizes
    fastconv bench --layer depthwise --op forward --strategy direct --strategy auto
    fastconv bench --ndim 1 --out my-report --repeat 7

Every number comes from runs made in this invocation: for each case one warm-up
call, then ``--repeat`` timed calls (fewer if they exceed ``--max-time``); the
best and the median are reported. The layers are those of
:mod:`fastconv._layers`, the same table the pytest-benchmark suites in
``benchmarks/`` use.

Output folder (``--out``, default ``bench-report``)
---------------------------------------------------
``report.md``
    Header (date, CPU, threads, versions, BLAS, the matmul ceiling), a summary
    table, then a table per layer: time per strategy, GFLOP/s, fraction of the
    matmul ceiling, what "auto" chose and its regret, PyTorch's time and ratio
    (when installed), conv vs dense parameter counts.
``results.json``
    The raw results; schema ``fastconv-bench/1`` in ``fastconv/bench_schema.json``
    (JSON Schema), checked by :func:`validate_results`. In short::

        {"schema": "fastconv-bench/1", "created": ISO time, "suite": "quick",
         "dtype": "float32", "repeat": 5, "elapsed_s": 58.1,
         "machine": {"cpu", "threads", "python", "numpy", "scipy", "torch",
                     "fastconv", "openmp", "strategies", "blas"},
         "ceiling": {"n": 1024, "gflops": 80.1, "best_s": 0.027},
         "layers":  [{"name", "group", "size", "ndim", "input_shape", "weight_shape",
                      "output_shape", "stride", "padding", "groups", "macs", "flops",
                      "params": {"conv_total", "dense_total", "ratio", ...}}],
         "results": [{"layer", "op", "impl", "kind": "strategy"|"auto"|"peer",
                      "status": "ok"|"skipped"|"error", "reason", "times_s",
                      "warmup_s", "best_s", "median_s", "gflops", "ceiling_fraction",
                      "workspace_bytes", "chosen", "decided_by"}],
         "summary": [{"layer", "op", "best", "best_s", "auto", "auto_s", "regret",
                      "choice_regret", "torch_s", "torch_ratio"}],
         "sweeps":  [{"name": "kernel"|"input", "x_label", "op",
                      "points": [{"x", "layer", "impl", "status", "best_s", "macs"}]}],
         "plots": ["kernel_sweep.png", ...], "plots_skipped": null | reason}

    ``regret`` is time(auto) / time(fastest strategy); ``choice_regret`` is
    time(the strategy auto chose, timed as itself) / time(fastest strategy): the
    quality of the decision alone, free of the noise of timing the same kernel
    twice (auto runs exactly the chosen strategy, plus microseconds of
    dispatch); ``torch_ratio`` is time(fastest strategy) / time(torch) (above 1:
    PyTorch is faster).
``kernel_sweep.png``, ``input_sweep.png``, ``params.png``
    Time per strategy against kernel size and against input size (2-D forward,
    where the crossovers are), and conv vs dense parameter counts (log scale).
    Written only when matplotlib is installed (``pip install "fastconv[bench]"``).

The helpers below (:func:`make_arrays`, :func:`fastconv_call`, :func:`torch_call`,
:func:`scipy_calls`, :func:`matmul_ceiling`, :func:`workspace_bytes`) are shared
with ``benchmarks/``.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import platform
import statistics
import sys
import time
from importlib import resources

import numpy as np

from . import _layers
from ._api import conv, explain, grad_input, grad_weight
from ._config import config, get_config
from ._info import config_info, strategies
from ._spec import OPS
from ._tuning import time_call
from .params import from_spec

__all__ = ["add_bench_arguments", "run_bench", "run", "validate_results", "load_schema",
           "matmul_ceiling", "make_arrays", "fastconv_call", "torch_call", "scipy_calls",
           "workspace_bytes", "auto_decision", "time_interleaved", "SCHEMA_ID"]

SCHEMA_ID = "fastconv-bench/1"
PEERS = ("torch", "scipy")
_SCIPY_MAX_CALLS = 4096  # single-channel peers loop in Python over (batch, channel)


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------
def matmul_ceiling(n=1024, repeat=3):
    """The machine's float32 GEMM speed through numpy: ``{"n", "gflops", "best_s"}``.

    Every GFLOP/s figure of the report is quoted as a fraction of this.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    best = time_call(lambda: a @ b, repeat=repeat)  # one warm-up, best of `repeat`
    return {"n": n, "gflops": 2.0 * n ** 3 / best / 1e9, "best_s": best}


def make_arrays(layer, dtype=np.float32, seed=0):
    """Random ``(x, w, grad_output)`` for ``layer`` (a :class:`fastconv._layers.Layer`)."""
    rng = np.random.default_rng(seed)
    spec = layer.spec(dtype)
    x = rng.standard_normal(layer.input_shape, dtype=np.float32).astype(dtype, copy=False)
    w = rng.standard_normal(layer.weight_shape, dtype=np.float32).astype(dtype, copy=False)
    gy = rng.standard_normal(spec.output_shape, dtype=np.float32).astype(dtype, copy=False)
    return x, w, gy


def fastconv_call(layer, op, strategy, x, w, gy):
    """A no-argument callable running ``op`` of ``layer`` with ``strategy`` (or "auto")."""
    kw = dict(layer.conv_kwargs, strategy=strategy)
    if op == "forward":
        return lambda: conv(x, w, **kw)
    if op == "grad_input":
        return lambda: grad_input(x.shape, w, gy, **kw)
    if op == "grad_weight":
        return lambda: grad_weight(x, w.shape, gy, **kw)
    raise ValueError(f"op must be one of {OPS}, got {op!r}")


def torch_version():
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def torch_call(layer, op, x, w, gy, threads=None):
    """``torch.nn.functional.conv*d`` (forward) or ``torch.nn.grad.conv*d_*`` (backward)
    on the same arrays; a no-argument callable. Raises ImportError without torch.

    Uneven padding (e.g. causal) is applied with ``F.pad`` inside the timed call.
    """
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(threads or get_config().threads))
    nd = layer.ndim
    xt, wt, gyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(gy)
    pairs = [p if isinstance(p, tuple) else (p, p) for p in layer.padding]
    even = all(b == a for b, a in pairs)
    stride, groups = tuple(layer.stride), layer.groups
    conv_fn = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    g_in = getattr(torch.nn.grad, f"conv{nd}d_input")
    g_w = getattr(torch.nn.grad, f"conv{nd}d_weight")
    if even:
        pad = tuple(b for b, _ in pairs)
        if op == "forward":
            return lambda: conv_fn(xt, wt, None, stride, pad, 1, groups)
        if op == "grad_input":
            return lambda: g_in(tuple(xt.shape), wt, gyt, stride, pad, 1, groups)
        return lambda: g_w(xt, tuple(wt.shape), gyt, stride, pad, 1, groups)
    # F.pad takes (before, after) pairs from the last axis backwards
    fpad = tuple(v for b, a in reversed(pairs) for v in (b, a))
    if op == "forward":
        return lambda: conv_fn(F.pad(xt, fpad), wt, None, stride, 0, 1, groups)
    if op == "grad_input":
        padded = tuple(xt.shape[:2]) + tuple(n + b + a for n, (b, a) in zip(xt.shape[2:], pairs))
        crop = (slice(None), slice(None)) + tuple(slice(b, b + n) for n, (b, _) in zip(xt.shape[2:], pairs))
        return lambda: g_in(padded, wt, gyt, stride, 0, 1, groups)[crop]
    return lambda: g_w(F.pad(xt, fpad), tuple(wt.shape), gyt, stride, 0, 1, groups)


def scipy_applicable(layer):
    """Reason the single-channel SciPy peers do not apply to ``layer``, or None."""
    if layer.in_channels // layer.groups != 1:
        return "scipy peers need one input channel per group"
    if any(s != 1 for s in layer.stride):
        return "scipy peers need stride 1"
    if layer.batch * layer.out_channels > _SCIPY_MAX_CALLS:
        return f"more than {_SCIPY_MAX_CALLS} single-channel correlations"
    return None


def scipy_calls(layer, x, w):
    """``{"scipy.correlate": fn, "scipy.oaconvolve": fn}``: the forward pass of a layer
    with one input channel per group, as a loop of single-channel N-d correlations
    (``scipy.signal.correlate``, method "auto"; ``oaconvolve`` with the kernel flipped).
    Zero padding is applied once per call, inside the timed function.
    """
    import scipy.signal as ss

    reason = scipy_applicable(layer)
    if reason:
        raise ValueError(reason)
    pairs = [p if isinstance(p, tuple) else (p, p) for p in layer.padding]
    cout_g = layer.out_channels // layer.groups
    nd = layer.ndim
    flip = (slice(None, None, -1),) * nd

    def run(one):
        xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pairs])
        return np.stack([np.stack([one(xp[n, c // cout_g], w[c, 0])
                                   for c in range(layer.out_channels)])
                         for n in range(layer.batch)])

    return {
        "scipy.correlate": lambda: run(lambda a, k: ss.correlate(a, k, mode="valid")),
        "scipy.oaconvolve": lambda: run(lambda a, k: ss.oaconvolve(a, k[flip], mode="valid")),
    }


def auto_decision(layer, op, dtype=np.float32):
    """The dispatcher's :class:`~fastconv._dispatch.Decision` for ``op`` with strategy="auto"."""
    return explain(op, layer.input_shape, layer.weight_shape, layer.stride, layer.padding, 1,
                   layer.groups, dtype=dtype, strategy="auto")


def _candidates(decision):
    return {c.name: c for c in (getattr(decision, "candidates", None) or [])}


def workspace_bytes(layer, op, strategy, dtype=np.float32, decision=None):
    """Workspace bytes the dispatcher lists for ``strategy`` (None when unknown)."""
    if decision is None:
        try:
            decision = auto_decision(layer, op, dtype)
        except (MemoryError, ValueError):
            return None
    c = _candidates(decision).get(strategy)
    return None if c is None else c.workspace_bytes


def excluded(layer, op, strategy, dtype=np.float32, decision=None):
    """Why ``strategy`` should not be timed on ``op`` of ``layer`` (too slow, or excluded
    by the dispatcher: unsupported or over the memory budget), or None."""
    spec = layer.spec(dtype)
    reason = _layers.too_big(strategy, spec)
    if reason:
        return reason
    if decision is not None:
        c = _candidates(decision).get(strategy)
        if c is not None and c.excluded:
            return f"excluded by the dispatcher: {c.excluded}"
        est = getattr(c, "estimate_s", None)
        if est is not None and est > _layers.MAX_ESTIMATE_S:
            return (f"{strategy} skipped: the cost model estimates {est:.3g} s per call "
                    f"(benchmark limit {_layers.MAX_ESTIMATE_S:g} s)")
    return None


# ---------------------------------------------------------------------------
# machine description
# ---------------------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _matplotlib_version():
    try:
        import matplotlib
    except ImportError:
        return None
    return getattr(matplotlib, "__version__", None)


def machine_info():
    import scipy

    info = config_info()
    return {
        "cpu": cpu_model(),
        "threads": int(get_config().threads),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch_version(),
        "matplotlib": _matplotlib_version(),
        "fastconv": info["version"],
        "openmp": info.get("openmp"),
        "strategies": list(strategies()),
        "blas": [str(b) for b in info.get("blas", [])],
        "loadavg_start": _loadavg(),
        "loadavg_end": None,
    }


def _loadavg():
    """1-minute load average (None where the OS does not tell)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------------------
# schema
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_schema():
    """The JSON Schema of ``results.json`` (``fastconv/bench_schema.json``)."""
    return json.loads(resources.files("fastconv").joinpath("bench_schema.json").read_text())


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _check(value, schema, path, errors):
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}, got {value!r}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: expected one of {schema['enum']}, got {value!r}")
        return
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            errors.append(f"{path}: expected {' or '.join(types)}, got {type(value).__name__} {value!r:.60}")
            return
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing required key {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(value[key], sub, f"{path}.{key}", errors)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{i}]", errors)


def validate_results(obj):
    """Check a results.json object against :func:`load_schema`.

    Implements the part of JSON Schema the schema uses (type, const, enum,
    minimum, required, properties, items), so it needs no extra package.

    Raises
    ------
    ValueError
        Listing every violation (path: what was expected, what came).
    """
    errors = []
    _check(obj, load_schema(), "$", errors)
    if errors:
        raise ValueError("results do not match the fastconv-bench/1 schema:\n  "
                         + "\n  ".join(errors[:50]))
    return True


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------
def _ok_result(times, warm, flops, ceiling_gflops):
    best = min(times)
    gflops = flops / best / 1e9 if best > 0 else None
    return {
        "status": "ok", "reason": None, "times_s": times, "warmup_s": warm, "best_s": best,
        "median_s": statistics.median(times), "gflops": gflops,
        "ceiling_fraction": (gflops / ceiling_gflops) if gflops and ceiling_gflops else None,
    }


def _empty(layer, op, impl, kind, status, reason):
    return {"layer": layer, "op": op, "impl": impl, "kind": kind, "status": status,
            "reason": reason, "times_s": [], "warmup_s": None, "best_s": None,
            "median_s": None, "gflops": None, "ceiling_fraction": None,
            "workspace_bytes": None, "chosen": None, "decided_by": None}


class _Progress:
    def __init__(self, total, stream):
        self.total, self.done, self.stream = total, 0, stream
        self.width = len(str(total))

    def line(self, what, res):
        self.done += 1
        if res["status"] == "ok":
            msg = f"{res['best_s'] * 1e3:10.3f} ms"
            if res.get("gflops"):
                msg += f"  {res['gflops']:7.2f} GFLOP/s"
            if res.get("chosen"):
                msg += f"  (chose {res['chosen']})"
        else:
            msg = f"{res['status']}: {res['reason']}"
        print(f"[{self.done:{self.width}d}/{self.total}] {what:48s} {msg}", file=self.stream,
              flush=True)


def _plan(layers, ops, impls, peers):
    """(layer, op, impl, kind) in run order."""
    cases = []
    for lay in layers:
        for op in ops:
            for s in impls:
                cases.append((lay, op, s, "auto" if s == "auto" else "strategy"))
            if "torch" in peers:
                cases.append((lay, op, "torch", "peer"))
            if "scipy" in peers and op == "forward" and scipy_applicable(lay) is None:
                cases.append((lay, op, "scipy.correlate", "peer"))
                cases.append((lay, op, "scipy.oaconvolve", "peer"))
    return cases


def _exc_result(res, e):
    if isinstance(e, (ValueError, NotImplementedError, MemoryError)):
        res.update(status="skipped", reason=f"{type(e).__name__}: {e}")
    else:  # a benchmark run reports a failing case and goes on
        res.update(status="error", reason=f"{type(e).__name__}: {e}")
    return res


def _prepare_case(lay, op, impl, kind, arrays, dtype, decision, threads):
    """``(result skeleton, callable or None)``; None when the case is skipped."""
    spec = lay.spec(dtype)
    res = _empty(lay.name, op, impl, kind, "ok", None)
    x, w, gy = arrays
    try:
        if kind == "strategy":
            reason = excluded(lay, op, impl, dtype, decision)
            if reason:
                res.update(status="skipped", reason=reason)
                return res, None
            res["workspace_bytes"] = workspace_bytes(lay, op, impl, dtype, decision)
            return res, fastconv_call(lay, op, impl, x, w, gy)
        if kind == "auto":
            if decision is None:
                res.update(status="error", reason="the dispatcher found no strategy")
                return res, None
            res["chosen"], res["decided_by"] = decision.strategy, decision.decided_by
            res["workspace_bytes"] = workspace_bytes(lay, op, decision.strategy, dtype, decision)
            reason = _layers.too_big(decision.strategy, spec)
            if reason:
                res.update(status="skipped", reason=f"auto chose {decision.strategy}; {reason}")
                return res, None
            return res, fastconv_call(lay, op, "auto", x, w, gy)
        if impl == "torch":
            return res, torch_call(lay, op, x, w, gy, threads)
        return res, scipy_calls(lay, x, w)[impl]
    except Exception as e:
        return _exc_result(res, e), None


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


def _run_group(cases, arrays, dtype, repeat, max_time, min_time, ceiling, decision, threads):
    """Run the cases of one (layer, op), interleaved; results in case order."""
    prepared = []
    for lay, op, impl, kind in cases:
        prepared.append(_prepare_case(lay, op, impl, kind, arrays, dtype, decision, threads))
    fns = {i: fn for i, (_, fn) in enumerate(prepared) if fn is not None}
    times, warm, errors = time_interleaved(fns, repeat, max_time, min_time)
    out = []
    for i, ((lay, _, _, _), (res, fn)) in enumerate(zip(cases, prepared)):
        if fn is not None:
            if i in errors:
                _exc_result(res, errors[i])
            else:
                res.update(_ok_result(times[i], warm[i], lay.spec(dtype).flops, ceiling))
        out.append(res)
    return out


def _summarize(layers, ops, results):
    by = {}
    for r in results:
        by.setdefault((r["layer"], r["op"]), []).append(r)
    out = []
    for lay in layers:
        for op in ops:
            rs = by.get((lay.name, op), [])
            strat = [r for r in rs if r["kind"] == "strategy" and r["status"] == "ok"]
            best = min(strat, key=lambda r: r["best_s"]) if strat else None
            auto = next((r for r in rs if r["kind"] == "auto"), None)
            tor = next((r for r in rs if r["impl"] == "torch" and r["status"] == "ok"), None)
            auto_s = auto["best_s"] if auto and auto["status"] == "ok" else None
            chosen = next((r for r in strat if auto and r["impl"] == auto["chosen"]), None)
            out.append({
                "layer": lay.name, "op": op,
                "best": best["impl"] if best else None,
                "best_s": best["best_s"] if best else None,
                "auto": auto["chosen"] if auto else None,
                "auto_s": auto_s,
                "regret": auto_s / best["best_s"] if auto_s and best else None,
                "choice_regret": chosen["best_s"] / best["best_s"] if chosen and best else None,
                "torch_s": tor["best_s"] if tor else None,
                "torch_ratio": best["best_s"] / tor["best_s"] if best and tor else None,
            })
    return out


def _run_sweeps(size, impls, dtype, repeat, max_time, min_time, threads, progress, have_torch):
    sweeps = []
    labels = {"kernel": "kernel size (K x K)", "input": "input size (N x N)"}
    for name, pts in _layers.sweep_layers(size).items():
        points = []
        for xval, lay in pts:
            arrays = make_arrays(lay, dtype)
            try:
                decision = auto_decision(lay, "forward", dtype)
            except (MemoryError, ValueError):
                decision = None
            impl_list = list(impls) + (["torch"] if have_torch else [])
            cases = [(lay, "forward", impl, "peer" if impl == "torch" else "strategy")
                     for impl in impl_list]
            for (_, _, impl, _), r in zip(cases, _run_group(cases, arrays, dtype, repeat, max_time,
                                                            min_time, None, decision, threads)):
                progress.line(f"sweep {lay.name:12s} forward {impl}", r)
                points.append({"x": xval, "layer": lay.name, "impl": impl,
                               "status": r["status"], "reason": r["reason"],
                               "best_s": r["best_s"], "macs": lay.spec(dtype).macs})
        sweeps.append({"name": name, "x_label": labels[name], "op": "forward", "points": points})
    return sweeps


def run(size="quick", names=None, ndims=None, ops=OPS, impls=None, peers=PEERS, out="bench-report",
        repeat=5, max_time=None, min_time=None, dtype="float32", sweep=True, plots=True,
        stream=None, argv=None):
    """Run the benchmark and write ``report.md``, ``results.json`` and plots into ``out``.

    Parameters
    ----------
    size : {"quick", "full", "tiny"}
    names : list of str, optional
        Layer names or groups (default: all).
    ndims : list of int, optional
    ops : sequence of str
    impls : sequence of str, optional
        Strategies to time, and/or "auto" (default: every registered strategy and "auto").
    peers : sequence of {"torch", "scipy"}
        Peers to time where installed/applicable.
    out : str
        Output folder (created).
    repeat : int
        Least number of timed calls per case after one warm-up.
    max_time : float, optional
        Stop repeating a case once its timed calls exceed this many seconds
        (default 1 s for quick/tiny, 10 s for full).
    min_time : float, optional
        Keep repeating short calls (up to 200) until the timed calls add up to
        this many seconds (default 0.05 s quick, 0 tiny, 0.5 s full).

    Returns
    -------
    dict
        The results object written to ``results.json``.
    """
    stream = stream or sys.stdout
    t_start = time.perf_counter()
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    dtype = np.dtype(dtype)
    if max_time is None:
        max_time = 10.0 if size == "full" else 1.0
    if min_time is None:
        min_time = {"tiny": 0.0, "quick": 0.05, "full": 0.5}[size]
    layers = _layers.layers(size, names, ndims)
    if impls is None:
        impls = list(strategies()) + ["auto"]
    have_torch = "torch" in peers and torch_version() is not None
    peers = [p for p in peers if p != "torch" or have_torch]
    threads = get_config().threads
    machine = machine_info()

    print(f"fastconv bench: {size} suite, {len(layers)} layer(s), ops {', '.join(ops)}, "
          f"implementations {', '.join(list(impls) + list(peers))}; {threads} thread(s); "
          f"output in {out}/", file=stream, flush=True)
    ceiling = matmul_ceiling(256 if size == "tiny" else 1024)
    time.sleep(0.2)  # let the BLAS threads stop spinning before timing anything else
    print(f"matmul ceiling: numpy float32 {ceiling['n']}x{ceiling['n']} @ "
          f"{ceiling['gflops']:.1f} GFLOP/s", file=stream, flush=True)

    cases = _plan(layers, ops, impls, peers)
    n_sweep = 0
    do_sweep = sweep and (not ndims or 2 in ndims)
    sw_impls = [s for s in impls if s != "auto"]
    if do_sweep:
        n_pts = sum(len(v) for v in _layers.sweep_layers(size).values())
        n_sweep = n_pts * (len(sw_impls) + (1 if have_torch else 0))
    progress = _Progress(len(cases) + n_sweep, stream)

    results, layer_info = [], []
    for lay in layers:
        spec = lay.spec(dtype)
        info = lay.as_dict()
        info.update(output_shape=list(spec.output_shape), macs=int(spec.macs),
                    flops=int(spec.flops), params=from_spec(spec).as_dict())
        layer_info.append(info)
        lay_cases = [c for c in cases if c[0] is lay]
        if not lay_cases:
            continue
        arrays = make_arrays(lay, dtype)
        decisions = {}
        for op in ops:
            try:
                decisions[op] = auto_decision(lay, op, dtype)
            except (MemoryError, ValueError):
                decisions[op] = None
        for op in ops:
            group = [c for c in lay_cases if c[1] == op]
            for (_, _, impl, _), r in zip(group, _run_group(group, arrays, dtype, repeat, max_time,
                                                            min_time, ceiling["gflops"],
                                                            decisions[op], threads)):
                results.append(r)
                progress.line(f"{lay.name:14s} {op:11s} {impl}", r)
        del arrays

    sweeps = []
    if do_sweep and sw_impls + (["torch"] if have_torch else []):
        sweeps = _run_sweeps(size, sw_impls, dtype, min(repeat, 3), max_time, min_time, threads,
                             progress, have_torch)

    obj = {
        "schema": SCHEMA_ID, "created": created, "suite": size, "dtype": dtype.name,
        "repeat": int(repeat), "min_time_s": float(min_time), "elapsed_s": 0.0, "argv": list(argv or []),
        "machine": machine, "ceiling": ceiling, "layers": layer_info, "results": results,
        "summary": _summarize(layers, ops, results), "sweeps": sweeps, "plots": [],
        "plots_skipped": None,
    }
    os.makedirs(out, exist_ok=True)
    if plots:
        try:
            obj["plots"] = write_plots(obj, out)
        except ImportError as e:
            obj["plots_skipped"] = (f"matplotlib is not installed ({e}); "
                                    "pip install \"fastconv[bench]\" for the plots")
    else:
        obj["plots_skipped"] = "disabled with --no-plots"
    obj["elapsed_s"] = time.perf_counter() - t_start
    machine["loadavg_end"] = _loadavg()
    obj = _jsonable(obj)
    validate_results(obj)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(obj, f, indent=1)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(render_report(obj))
    if obj["plots_skipped"]:
        print(f"plots skipped: {obj['plots_skipped']}", file=stream)
    print(f"wrote {out}/report.md, {out}/results.json"
          + "".join(f", {out}/{p}" for p in obj["plots"])
          + f" in {obj['elapsed_s']:.1f} s", file=stream, flush=True)
    return obj


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    return v


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------
def _ms(s):
    if s is None:
        return "—"
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def _num(v, fmt="{:.2f}"):
    return "—" if v is None else fmt.format(v)


def _count(n):
    return f"{n:,d}" if n < 1e9 else f"{n:.3g}"


def _bytes(b):
    if b is None:
        return "—"
    if b == 0:
        return "0"
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= k:
            return f"{b / k:.1f} {unit}"
    return f"{b} B"


def render_report(obj):
    """The Markdown report of a results object."""
    m, c = obj["machine"], obj["ceiling"]
    created = obj["created"].replace("T", " ").replace("+00:00", " UTC")
    size_note = {"quick": "scaled-down layers; `fastconv bench --full` runs the DESIGN.md sizes",
                 "full": "the DESIGN.md layer sizes",
                 "tiny": "tiny layers (a test of the benchmark itself, not a measurement)"}
    L = ["# fastconv benchmark report", ""]
    L += [
        f"- **Date:** {created}; the run took {obj['elapsed_s']:.0f} s",
        f"- **Suite:** {obj['suite']} ({size_note[obj['suite']]}), {obj['dtype']}; each case: "
        f"1 warm-up call, then at least {obj['repeat']} timed calls (short calls repeated up to "
        f"{obj.get('min_time_s', 0):g} s or 200 calls); times are the best of them (median "
        "too in the per-layer tables)",
        f"- **CPU:** {m['cpu']}, {os.cpu_count()} logical CPUs; **threads:** {m['threads']} "
        "(fastconv n_threads" + (f", torch.set_num_threads({m['threads']})" if m.get("torch") else "")
        + "); 1-minute load average " + f"{m.get('loadavg_start')} at the start, "
        f"{m.get('loadavg_end')} at the end (above the thread count, other processes competed "
        "for the cores and times are noisy)",
        "- **Timing:** the implementations of each (layer, op) run in interleaved rounds, so "
        "bursts of load from other processes hit them alike",
        f"- **Versions:** fastconv {m['fastconv']} (strategies: {', '.join(m['strategies'])}; "
        f"OpenMP {'on' if m.get('openmp') else 'off'}), numpy {m['numpy']}, scipy {m['scipy']}, "
        f"torch {m.get('torch') or 'not installed'}, Python {m['python']}",
        f"- **BLAS:** {'; '.join(m['blas']) or 'unknown'}",
        f"- **Ceiling:** numpy float32 matmul {c['n']}x{c['n']}: **{c['gflops']:.1f} GFLOP/s**, "
        "measured in this run. GFLOP/s below count 2 x the multiply-adds of the direct "
        "definition for every implementation (FFT too), so they are comparable effective rates.",
        "",
    ]
    # summary
    L += ["## Summary", "",
          "*regret* = time(auto) / time(fastest strategy); *choice* = time(the strategy auto "
          "chose, timed as itself) / time(fastest strategy), the decision's cost free of timing "
          "noise; *best / torch* > 1 means PyTorch is faster.",
          "", "| layer | op | fastest strategy | ms | auto chose | regret | choice | torch ms "
          "| best / torch |",
          "|---|---|---|--:|---|--:|--:|--:|--:|"]
    for s in obj["summary"]:
        L.append(f"| {s['layer']} | {s['op']} | {s['best'] or '—'} | {_ms(s['best_s'])} | "
                 f"{s['auto'] or '—'} | {_num(s['regret'])} | {_num(s.get('choice_regret'))} | "
                 f"{_ms(s['torch_s'])} | {_num(s['torch_ratio'])} |")
    regrets = [s["regret"] for s in obj["summary"] if s.get("regret")]
    choices = [s["choice_regret"] for s in obj["summary"] if s.get("choice_regret")]
    if regrets:
        gm = lambda v: math.exp(sum(map(math.log, v)) / len(v))  # noqa: E731
        L += ["", f"Geometric-mean regret {gm(regrets):.3f} (worst {max(regrets):.2f}) over "
                  f"{len(regrets)} cases; decision only: {gm(choices):.3f} (worst "
                  f"{max(choices):.2f})." if choices else ""]
    L.append("")
    # per layer
    L += ["## Layers", ""]
    res_by_layer = {}
    for r in obj["results"]:
        res_by_layer.setdefault(r["layer"], []).append(r)
    summ = {(s["layer"], s["op"]): s for s in obj["summary"]}
    for info in obj["layers"]:
        rs = res_by_layer.get(info["name"])
        if not rs:
            continue
        p = info["params"]
        x = lambda t: "x".join(map(str, t))  # noqa: E731
        L += [f"### {info['name']} ({info['group']})", "",
              f"input {x(info['input_shape'])}, weight {x(info['weight_shape'])}, output "
              f"{x(info['output_shape'])}, stride {x(info['stride'])}, groups {info['groups']}; "
              f"{_count(info['macs'])} multiply-adds per pass.  ",
              f"Parameters: conv **{_count(p['conv_total'])}** vs dense **{_count(p['dense_total'])}**"
              f" ({p['ratio']:.3g}x); multiply-adds per example: conv {_count(p['conv_macs'])} vs "
              f"dense {_count(p['dense_macs'])}.", "",
              "| op | implementation | best ms | median ms | GFLOP/s | % of ceiling | workspace | note |",
              "|---|---|--:|--:|--:|--:|--:|---|"]
        for r in rs:
            s = summ.get((r["layer"], r["op"]), {})
            note = ""
            if r["status"] != "ok":
                note = f"{r['status']}: {r['reason']}"
            elif r["kind"] == "auto":
                note = f"chose {r['chosen']} ({r['decided_by']})"
                if s.get("regret") is not None:
                    note += f", regret {s['regret']:.2f}"
            elif r["kind"] == "strategy" and s.get("best") == r["impl"]:
                note = "fastest strategy"
            elif r["impl"] == "torch" and s.get("torch_ratio") is not None:
                note = f"best / torch = {s['torch_ratio']:.2f}"
            pct = None if r["ceiling_fraction"] is None else 100 * r["ceiling_fraction"]
            L.append(f"| {r['op']} | {r['impl']} | {_ms(r['best_s'])} | {_ms(r['median_s'])} | "
                     f"{_num(r['gflops'])} | {_num(pct, '{:.1f}')} | {_bytes(r['workspace_bytes'])} "
                     f"| {note.replace('|', '/')} |")
        L.append("")
    # sweeps
    if obj["sweeps"]:
        L += ["## Crossovers (2-D forward)", ""]
        for sw in obj["sweeps"]:
            impls = list(dict.fromkeys(pt["impl"] for pt in sw["points"]))
            xs = list(dict.fromkeys(pt["x"] for pt in sw["points"]))
            t = {(pt["x"], pt["impl"]): pt["best_s"] for pt in sw["points"]}
            L += [f"Time (ms) against {sw['x_label']}:", "",
                  "| " + sw["name"] + " | " + " | ".join(impls) + " |",
                  "|--:|" + "--:|" * len(impls)]
            for xv in xs:
                L.append(f"| {xv} | " + " | ".join(_ms(t.get((xv, i))) for i in impls) + " |")
            L.append("")
    if obj["plots"]:
        L += ["## Plots", ""] + [f"![{p}]({p})" for p in obj["plots"]] + [""]
    else:
        L += [f"Plots skipped: {obj['plots_skipped']}", ""]
    return "\n".join(L)


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(obj, out):
    """Write the PNG plots; returns their file names. Raises ImportError without matplotlib."""
    plt = _pyplot()
    files = []
    for sw in obj["sweeps"]:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        impls = list(dict.fromkeys(pt["impl"] for pt in sw["points"]))
        for impl in impls:
            pts = [(pt["x"], pt["best_s"] * 1e3) for pt in sw["points"]
                   if pt["impl"] == impl and pt["status"] == "ok"]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", linestyle="--" if impl == "torch" else "-", label=impl)
        ax.set_yscale("log")
        ax.set_xlabel(sw["x_label"])
        ax.set_ylabel("time per call (ms, best)")
        ax.set_title(f"2-D {sw['op']}: time per strategy vs {sw['name']} size ({obj['suite']})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"{sw['name']}_sweep.png"
        fig.savefig(os.path.join(out, name), dpi=100)
        plt.close(fig)
        files.append(name)
    if obj["layers"]:
        fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(obj["layers"]) + 1.5))
        names = [lay["name"] for lay in obj["layers"]]
        y = np.arange(len(names))
        conv_p = [lay["params"]["conv_total"] for lay in obj["layers"]]
        dense_p = [lay["params"]["dense_total"] for lay in obj["layers"]]
        ax.barh(y - 0.2, conv_p, height=0.4, label="conv layer")
        ax.barh(y + 0.2, dense_p, height=0.4, label="dense layer, same input and output")
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("parameters (weights + biases), log scale")
        ax.set_title(f"conv vs fully connected parameter counts ({obj['suite']} sizes)")
        ax.grid(True, axis="x", which="major", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / len(names)), ncol=2,
                  frameon=False)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "params.png"), dpi=100, bbox_inches="tight")
        plt.close(fig)
        files.append("params.png")
    return files


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------
def add_bench_arguments(parser):
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="size", action="store_const", const="quick",
                      help="scaled-down layers, about a minute on 2 cores (default)")
    size.add_argument("--full", dest="size", action="store_const", const="full",
                      help="the DESIGN.md layer sizes (minutes)")
    size.add_argument("--size", dest="size", choices=_layers.SIZES,
                      help="tiny | quick | full (tiny: checks the machinery in seconds)")
    parser.set_defaults(size="quick")
    parser.add_argument("--layer", action="append", metavar="NAME",
                        help="only this layer (name or group; repeatable). "
                             f"Names: {', '.join(_layers.LAYER_NAMES)}; "
                             f"'{_layers.HELD_OUT_GROUP}' selects shapes the cost model was "
                             "not fitted to")
    parser.add_argument("--ndim", action="append", type=int, choices=(1, 2, 3),
                        help="only layers with this many spatial axes (repeatable)")
    parser.add_argument("--op", action="append", choices=OPS,
                        help="only this op (repeatable; default all three)")
    parser.add_argument("--strategy", action="append", metavar="NAME",
                        help="only this strategy, or 'auto' (repeatable; default: every "
                             "registered strategy and auto)")
    parser.add_argument("--no-peers", action="store_true", help="do not time PyTorch or SciPy")
    parser.add_argument("--out", default="bench-report", metavar="DIR",
                        help="output folder (default: bench-report)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="least number of timed calls per case after one warm-up (default 5)")
    parser.add_argument("--max-time", type=float, default=None, metavar="SECONDS",
                        help="stop repeating a case after this many seconds of timed calls "
                             "(default 1 for quick, 10 for full)")
    parser.add_argument("--min-time", type=float, default=None, metavar="SECONDS",
                        help="repeat short calls (up to 200) until they add up to this "
                             "(default 0.05 for quick, 0.5 for full)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for fastconv (and torch); default: all available")
    parser.add_argument("--no-sweep", action="store_true",
                        help="skip the kernel-size / input-size sweeps")
    parser.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    parser.add_argument("--list", action="store_true", help="list the layers and exit")
    parser.add_argument("--mode", choices=("heuristic", "autotune", "cache-only"), default=None,
                        help="dispatcher mode for 'auto' (default: the configured one)")


def run_bench(args):
    if args.list:
        for lay in _layers.layers(args.size, args.layer):
            print(f"{lay.name:15s} {lay.group:13s} {lay.describe()}  "
                  f"({lay.spec().macs:.3g} multiply-adds)")
        return 0
    if args.repeat < 1:
        print("fastconv bench: --repeat must be >= 1", file=sys.stderr)
        return 2
    known = set(strategies()) | {"auto"}
    impls = None
    if args.strategy:
        bad = [s for s in args.strategy if s not in known]
        if bad:
            print(f"fastconv bench: unknown strategy {bad}; available: {sorted(known)}",
                  file=sys.stderr)
            return 2
        impls = list(dict.fromkeys(args.strategy))
    try:
        names = args.layer
        _layers.layers(args.size, names)
    except ValueError as e:
        print(f"fastconv bench: {e}", file=sys.stderr)
        return 2
    opts = {} if args.threads is None else {"n_threads": args.threads}
    if args.mode:
        opts["mode"] = args.mode
    with config(**opts):
        run(size=args.size, names=names, ndims=args.ndim, ops=tuple(args.op or OPS),
            impls=impls, peers=() if args.no_peers else PEERS, out=args.out,
            repeat=args.repeat, max_time=args.max_time, min_time=args.min_time,
            dtype=args.dtype,
            sweep=not args.no_sweep, plots=not args.no_plots)
    return 0
