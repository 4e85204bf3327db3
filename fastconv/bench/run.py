"""One benchmark run: plan the cases, time them interleaved, summarize, and write
``report.md``, ``results.json`` (validated against the schema) and the plots.

A case is (layer, op, implementation). The implementations are every strategy
registered in :func:`fastconv.strategies` plus "auto", and the peers (PyTorch,
SciPy) where installed and applicable. The command line (``fastconv bench``) is
in :mod:`fastconv.cli`; :func:`run` is its engine.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import statistics
import sys
import time

import numpy as np

from .._api import conv
from .._config import get_config
from .._info import strategies
from .._plan import plan
from .._spec import OPS
from ..params import from_spec
from . import layers as _layers
from .calls import (
    auto_decision,
    excluded,
    fastconv_call,
    make_arrays,
    scipy_applicable,
    scipy_calls,
    torch_call,
    workspace_bytes,
)
from .machine import (
    PEERS,
    cpu_snapshot,
    loadavg,
    machine_info,
    missing_peers,
    missing_peers_line,
    others_share,
)
from .plots import write_plots
from .report import render_report
from .schema import SCHEMA_ID, validate_results
from .timing import LOADED_FACTOR, NOISY_SPREAD, OTHERS_MAX, matmul_ceiling, spread, time_interleaved

__all__ = ["run", "PEERS"]


def _ok_result(times, warm, flops, ceiling_gflops):
    best = min(times)
    gflops = flops / best / 1e9 if best > 0 else None
    sp = spread(times)
    return {
        "status": "ok", "reason": None, "times_s": times, "warmup_s": warm, "best_s": best,
        "median_s": statistics.median(times), "gflops": gflops,
        "ceiling_fraction": (gflops / ceiling_gflops) if gflops and ceiling_gflops else None,
        "spread": sp, "noisy": sp is not None and sp > NOISY_SPREAD,
    }


def _empty(layer, op, impl, kind, status, reason):
    return {"layer": layer, "op": op, "impl": impl, "kind": kind, "status": status,
            "reason": reason, "times_s": [], "warmup_s": None, "best_s": None,
            "median_s": None, "gflops": None, "ceiling_fraction": None,
            "workspace_bytes": None, "chosen": None, "decided_by": None,
            "spread": None, "noisy": False, "rerun": False, "loadavg": None}


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


def _timed_group(cases, prepared, fns, dtype, repeat, max_time, min_time, ceiling):
    """One interleaved timing of ``fns``: fresh copies of the results, in case order."""
    before = cpu_snapshot()
    times, warm, errors = time_interleaved(fns, repeat, max_time, min_time)
    others = others_share(before, cpu_snapshot())
    load = loadavg()
    out = []
    for i, ((lay, _, _, _), (res, fn)) in enumerate(zip(cases, prepared)):
        res = dict(res)
        if fn is not None:
            if i in errors:
                _exc_result(res, errors[i])
            else:
                res.update(_ok_result(times[i], warm[i], lay.spec(dtype).flops, ceiling))
                res["loadavg"] = load
                res["others_cpu"] = others
        out.append(res)
    return out


def _n_noisy(results):
    return sum(1 for r in results if r.get("noisy"))


def _run_group(cases, arrays, dtype, repeat, max_time, min_time, ceiling, decision, threads,
               rerun=True):
    """Run the cases of one (layer, op), interleaved; results in case order.

    When a case's median is more than :data:`NOISY_SPREAD` times its best,
    other processes disturbed the timing: the whole group is timed once more
    (together, so its cases stay comparable) and the timing with fewer noisy
    cases is kept (``rerun=False``: no second timing). A case still noisy then
    stays marked ``noisy``, and so does one timed while other processes competed
    for the CPUs (:func:`loaded`).
    """
    prepared = []
    for lay, op, impl, kind in cases:
        prepared.append(_prepare_case(lay, op, impl, kind, arrays, dtype, decision, threads))
    fns = {i: fn for i, (_, fn) in enumerate(prepared) if fn is not None}
    out = _timed_group(cases, prepared, fns, dtype, repeat, max_time, min_time, ceiling)
    if rerun and _n_noisy(out):
        again = _timed_group(cases, prepared, fns, dtype, repeat, max_time, min_time, ceiling)
        if _n_noisy(again) <= _n_noisy(out):
            out = again
        for r in out:
            if r["status"] == "ok":
                r["rerun"] = True
    for r in out:
        if r["status"] == "ok" and loaded(r):
            r["noisy"] = True
    return out


def loaded(r):
    """Whether other processes competed for the CPUs while result ``r`` was timed."""
    if r.get("others_cpu") is not None:
        return r["others_cpu"] > OTHERS_MAX
    return (r.get("loadavg") or 0) > LOADED_FACTOR * (os.cpu_count() or 1)


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
            involved = [r for r in (best, chosen, auto, tor) if r is not None]
            out.append({
                "layer": lay.name, "op": op,
                "noisy": any(r.get("noisy") for r in involved),
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


def _sweep_layer(name, pts):
    """What a sweep holds fixed, for its tables and plot titles: batch, channels and
    the kernel (input sweep) or input size (kernel sweep)."""
    lay = pts[0][1]
    fixed = (f"input {'x'.join(map(str, lay.spatial))}" if name == "kernel"
             else f"kernel {'x'.join(map(str, lay.kernel))}")
    return (f"batch {lay.batch}, {lay.in_channels} -> {lay.out_channels} channels, {fixed}, "
            "stride 1, same padding")


def _run_sweeps(size, impls, dtype, repeat, max_time, min_time, threads, report, rerun):
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
            cases = [(lay, "forward", impl, "peer" if impl == "torch" else "strategy")
                     for impl in impls]
            for (_, _, impl, _), r in zip(cases, _run_group(cases, arrays, dtype, repeat, max_time,
                                                            min_time, None, decision, threads,
                                                            rerun)):
                report(f"sweep {lay.name:12s} forward {impl}", r)
                points.append({"x": xval, "layer": lay.name, "impl": impl,
                               "status": r["status"], "reason": r["reason"],
                               "best_s": r["best_s"], "macs": lay.spec(dtype).macs,
                               "spread": r["spread"], "noisy": r["noisy"]})
        sweeps.append({"name": name, "x_label": labels[name], "op": "forward",
                       "layer": _sweep_layer(name, pts), "points": points})
    return sweeps


def print_lines(stream=None):
    """The default ``progress`` of :func:`run`: one line per case on ``stream``."""
    def progress(message, done=None, total=None):
        head = f"[{done:{len(str(total))}d}/{total}] " if done is not None and total else ""
        print(head + message, file=stream or sys.stdout, flush=True)

    return progress


def _case_line(what, res):
    if res["status"] == "ok":
        msg = f"{res['best_s'] * 1e3:10.3f} ms"
        if res.get("gflops"):
            msg += f"  {res['gflops']:7.2f} GFLOP/s"
        sp = res.get("spread")
        msg += f"  spread {sp:.2f}" if sp is not None else "  spread  -  "
        if res.get("loadavg") is not None:
            msg += f"  load {res['loadavg']:.1f}"
        if res.get("noisy"):
            msg += "  NOISY" + (" (after a re-run)" if res.get("rerun") else "")
        elif res.get("rerun"):
            msg += "  (re-run)"
        if res.get("chosen"):
            msg += f"  (chose {res['chosen']})"
    else:
        msg = f"{res['status']}: {res['reason']}"
    return f"{what:48s} {msg}"


def _layer_info(lay, dtype):
    spec = lay.spec(dtype)
    info = lay.as_dict()
    info.update(output_shape=list(spec.output_shape), macs=int(spec.macs),
                flops=int(spec.flops), params=from_spec(spec).as_dict())
    return info


def _run_layers(layers, ops, cases, dtype, timing, ceiling, threads, report, rerun):
    results = []
    for lay in layers:
        lay_cases = [c for c in cases if c[0] is lay]
        if not lay_cases:
            continue
        arrays = make_arrays(lay, dtype)
        for op in ops:
            try:
                decision = auto_decision(lay, op, dtype)
            except (MemoryError, ValueError):
                decision = None
            group = [c for c in lay_cases if c[1] == op]
            for (_, _, impl, _), r in zip(group, _run_group(group, arrays, dtype, *timing,
                                                            ceiling, decision, threads, rerun)):
                results.append(r)
                report(f"{lay.name:14s} {op:11s} {impl}", r)
        del arrays
    return results


def run(size="quick", names=None, ndims=None, ops=OPS, impls=None, peers=PEERS, out="bench-report",
        repeat=5, max_time=None, min_time=None, dtype="float32", sweep=True, plots=True,
        stream=None, argv=None, progress=None, rerun=None):
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
        Peers to time where installed/applicable; the first and last lines
        printed say which of them are missing and how to add them.
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
    stream : file, optional
        Where the opening and closing lines go (default stdout).
    progress : callable, optional
        ``progress(message, done, total)`` after each case (default: a line on
        ``stream``); ``fastconv bench`` draws a progress bar with it.
    rerun : bool, optional
        Time a (layer, op) group once more when one of its cases is noisy
        (median / best above :data:`~fastconv.bench.timing.NOISY_SPREAD`).
        Default: yes, except for the tiny suite (a test of the machinery).

    Returns
    -------
    dict
        The results object written to ``results.json``.
    """
    stream = stream or sys.stdout
    progress = progress or print_lines(stream)
    say = lambda text: print(text, file=stream, flush=True)  # noqa: E731
    t_start = time.perf_counter()
    created = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    dtype = np.dtype(dtype)
    if max_time is None:
        max_time = 10.0 if size == "full" else 1.0
    if min_time is None:
        min_time = {"tiny": 0.0, "quick": 0.05, "full": 0.5}[size]
    layers = _layers.layers(size, names, ndims)
    impls = list(strategies()) + ["auto"] if impls is None else list(impls)
    missing = missing_peers(peers)
    peers = [p for p in peers if p not in missing]
    have_torch = "torch" in peers
    threads = get_config().threads
    machine = machine_info()

    if missing:
        say(missing_peers_line(missing))
    say(f"fastconv bench: {size} suite, {len(layers)} layer(s), ops {', '.join(ops)}, "
        f"implementations {', '.join(impls + peers)}; {threads} thread(s); output in {out}/")
    n_ceiling = 256 if size == "tiny" else 1024
    ceiling = matmul_ceiling(n_ceiling)
    if size != "tiny":   # (the tiny suite tests the machinery; its times mean nothing)
        time.sleep(0.2)  # let the BLAS threads stop spinning before timing anything else
    say(f"matmul ceiling: numpy float32 {ceiling['n']}x{ceiling['n']} @ "
        f"{ceiling['gflops']:.1f} GFLOP/s (spread {ceiling['spread']:.2f}, load "
        f"{machine['loadavg_start']})")

    cases = _plan(layers, ops, impls, peers)
    do_sweep = sweep and (not ndims or 2 in ndims)
    sw_impls = [s for s in impls if s != "auto"] + (["torch"] if have_torch else [])
    n_sweep = 0
    if do_sweep:
        n_sweep = sum(len(v) for v in _layers.sweep_layers(size).values()) * len(sw_impls)
    total, done = len(cases) + n_sweep, 0

    def report(what, res):
        nonlocal done
        done += 1
        progress(_case_line(what, res), done, total)

    timing = (repeat, max_time, min_time)
    rerun = size != "tiny" if rerun is None else bool(rerun)
    # the peers run at fastconv's thread count; the caller's torch setting is restored
    # after (torch.set_num_threads also sets the OpenMP runtime's limit for the process)
    torch_threads = _torch_threads() if have_torch else None
    try:
        results = _run_layers(layers, ops, cases, dtype, timing, ceiling["gflops"], threads,
                              report, rerun)
        sweeps = []
        if do_sweep and sw_impls:
            sweeps = _run_sweeps(size, sw_impls, dtype, min(repeat, 3), max_time, min_time,
                                 threads, report, rerun)
        ceiling = _recheck_ceiling(ceiling, n_ceiling, results, say)
        calls = per_call(have_torch, threads, calls=50 if size == "tiny" else 300)
    finally:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
    obj = {
        "schema": SCHEMA_ID, "created": created, "suite": size, "dtype": dtype.name,
        "repeat": int(repeat), "min_time_s": float(min_time), "elapsed_s": 0.0,
        "rerun_noisy": rerun,
        "argv": list(argv or []), "machine": machine, "ceiling": ceiling,
        "layers": [_layer_info(lay, dtype) for lay in layers], "results": results,
        "summary": _summarize(layers, ops, results), "sweeps": sweeps, "per_call": calls,
        "plots": [],
        "plots_skipped": None,
    }
    obj = _write(obj, out, plots, t_start, say)
    if missing:
        say(missing_peers_line(missing))
    return obj


# The smallest problems, where the Python around a kernel is most of a call's time.
PER_CALL = (((1, 1, 8, 8), (1, 1, 3, 3)), ((1, 8, 16, 16), (8, 8, 3, 3)))


def _torch_threads():
    import torch

    return torch.get_num_threads()


def _median_call(fn, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def per_call(have_torch, threads, calls=300, rounds=3):
    """Seconds per call (median of ``calls``, the least of ``rounds`` interleaved
    rounds) of :data:`PER_CALL`'s forward problems: ``fastconv.conv2d``, a
    :func:`fastconv.plan` called with both arrays, and PyTorch's ``F.conv2d``
    (None without torch)."""
    out = []
    for xs, ws in PER_CALL:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32)
        p = plan("forward", xs, ws)
        fns = {"plain": lambda: conv(x, w), "plan": lambda: p(x, w)}  # noqa: B023 (run here)
        if have_torch:
            import torch

            torch.set_num_threads(threads)
            tx, tw = torch.from_numpy(x), torch.from_numpy(w)
            fns["torch"] = lambda: torch.nn.functional.conv2d(tx, tw)  # noqa: B023
        best = {}
        for _ in range(rounds):
            for k, fn in fns.items():
                fn()
                t = _median_call(fn, calls)
                best[k] = min(best.get(k, math.inf), t)
        out.append({"input_shape": list(xs), "weight_shape": list(ws), "strategy": p.strategy,
                    "plain_s": best["plain"], "plan_s": best["plan"],
                    "torch_s": best.get("torch")})
    return out


def _recheck_ceiling(ceiling, n, results, say):
    """Measure the ceiling again at the end; flag it as disturbed when either
    measurement's spread is large or the two disagree, and quote GFLOP/s against
    the higher one (the machine can do at least that)."""
    again = matmul_ceiling(n)
    first = ceiling["gflops"]
    ceiling = dict(ceiling, recheck_gflops=again["gflops"], recheck_spread=again["spread"])
    ratio = max(first, again["gflops"]) / max(min(first, again["gflops"]), 1e-12)
    reasons = []
    for when, sp in (("start", ceiling["spread"]), ("end", again["spread"])):
        if sp is not None and sp > NOISY_SPREAD:
            reasons.append(f"its timings at the {when} spread {sp:.2f}x (median / best)")
    if ratio > NOISY_SPREAD:
        reasons.append(f"the start ({first:.1f} GFLOP/s) and end ({again['gflops']:.1f} "
                       f"GFLOP/s) measurements differ {ratio:.2f}x")
    ceiling["disturbed"] = "; ".join(reasons) or None
    if again["gflops"] > first:
        ceiling.update(gflops=again["gflops"], best_s=again["best_s"])
        for r in results:
            if r.get("gflops"):
                r["ceiling_fraction"] = r["gflops"] / again["gflops"]
    say(f"matmul ceiling again at the end: {again['gflops']:.1f} GFLOP/s; "
        + (f"DISTURBED: {ceiling['disturbed']}" if reasons else "steady")
        + f"; % of ceiling uses {ceiling['gflops']:.1f} GFLOP/s")
    return ceiling


def _write(obj, out, plots, t_start, say):
    """Plots, then results.json (validated) and report.md; returns the final object."""
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
    obj["machine"]["loadavg_end"] = loadavg()
    obj = _jsonable(obj)
    try:
        validate_results(obj)
    except ImportError as e:  # the check guards our own output; the run is still good
        say(f"results.json not validated: {e}")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(obj, f, indent=1)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(render_report(obj))
    if obj["plots_skipped"]:
        say(f"plots skipped: {obj['plots_skipped']}")
    say(f"wrote {out}/report.md, {out}/results.json"
        + "".join(f", {out}/{p}" for p in obj["plots"]) + f" in {obj['elapsed_s']:.1f} s")
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
