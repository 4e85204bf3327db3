"""The Markdown report of a benchmark run (``report.md``), rendered from the
results object alone (so a saved ``results.json`` can be rendered again).

It opens with a recommendation derived from the run's own numbers (which
strategy won where, how the dispatcher did, how fastconv compares with PyTorch),
then the machine, a summary table, a table per layer, the crossover sweeps and
the plots. Implementations are read from the results, never listed here, so a
newly registered strategy gets its rows and columns without a change.
"""
from __future__ import annotations

import math
import os

from .machine import PEER_INSTALL
from .timing import NOISY_SPREAD, OTHERS_MAX

__all__ = ["render_report", "recommendation", "layer_shape"]

# auto's decision counts as right when the strategy it chose is within this
# factor of the fastest one (timed as itself): closer than timing noise here.
GOOD_CHOICE = 1.10

_SIZE_NOTE = {
    "quick": "scaled-down layers, named below by their actual shapes; `fastconv bench --full` "
             "runs the full-size layers (`fastconv bench --list --full` lists them)",
    "full": "full-size layers, as in real networks (`fastconv bench --list --full`)",
    "tiny": "tiny layers: a test of the benchmark itself, not a measurement",
}


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


def _x(t):
    return "x".join(map(str, t))


def layer_shape(info):
    """``in 2x32x28x28, w 32x32x3x3`` (plus stride and groups when not 1) for a layer entry."""
    s = f"in {_x(info['input_shape'])}, w {_x(info['weight_shape'])}"
    if any(v != 1 for v in info["stride"]):
        s += f", stride {_x(info['stride'])}"
    if info["groups"] != 1:
        s += f", groups {info['groups']}"
    return s


def _gmean(v):
    return math.exp(sum(map(math.log, v)) / len(v))


def _ratio(v):
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"


def _case(s):
    return f"{s['layer']} {s['op']}"


def _noisy_line(noisy):
    names = ", ".join(_case(s) for s in noisy[:8]) + (", ..." if len(noisy) > 8 else "")
    return (f"- **{len(noisy)} noisy case(s) not counted above** ({names}): other processes "
            f"disturbed their timings (median more than {NOISY_SPREAD:.2f}x the best, still "
            f"after a re-run, or other processes using over {OTHERS_MAX:.0%} of the CPUs), so the "
            "comparisons in them rest on noise; see the *spread* and *load* columns below.")


def _ceiling_line(obj):
    c = obj.get("ceiling") or {}
    if not c.get("disturbed"):
        return None
    return (f"- **The ceiling measurement was disturbed**: {c['disturbed']}. *% of ceiling* "
            f"uses the higher, {c['gflops']:.1f} GFLOP/s, and may still overstate how close "
            "an implementation comes to the machine's GEMM speed.")


def _no_torch_line():
    return (f"- **PyTorch** was not timed: it is not installed here "
            f"(`{PEER_INSTALL['torch'][1]}` adds it, the CPU build).")


def recommendation(obj):
    """The report's opening lines (a list of Markdown lines), derived from the summary.

    Only quiet cases count: a (layer, op) whose fastest strategy, chosen strategy,
    auto or torch timing was noisy (see :data:`NOISY_SPREAD`) is named as such
    and left out of the counts and means.
    """
    every = [s for s in obj["summary"] if s.get("best")]
    if not every:
        return ["No strategy ran successfully in this run; see the tables below for why."]
    summ = [s for s in every if not s.get("noisy")]
    noisy = [s for s in every if s.get("noisy")]
    out = []
    if not summ:
        out.append(f"- **Every case was noisy** ({len(noisy)}): other processes disturbed the "
                   f"timings throughout (spread above {NOISY_SPREAD:.2f}, or other processes "
                   f"using over {OTHERS_MAX:.0%} of the CPUs), so this run supports no comparison; "
                   "run it again on a quieter machine.")
        if not obj["machine"].get("torch"):
            out.append(_no_torch_line())
        line = _ceiling_line(obj)
        return out + ([line] if line else [])
    wins = {}
    for s in summ:
        wins.setdefault(s["best"], []).append(s)
    parts = []
    for name in sorted(wins, key=lambda n: -len(wins[n])):
        names = list(dict.fromkeys(s["layer"] for s in wins[name]))
        parts.append(f"**{name}** in {len(wins[name])} ({', '.join(names)})")
    quiet = " quiet" if noisy else ""
    out.append(f"- **Fastest strategy** per (layer, op), {len(summ)}{quiet} cases: "
               + "; ".join(parts) + ".")
    choices = [s for s in summ if s.get("choice_regret") is not None]
    if choices:
        good = [s for s in choices if s["choice_regret"] <= GOOD_CHOICE]
        worst = max(choices, key=lambda s: s["choice_regret"])
        line = (f"- **auto** (the dispatcher) chose the fastest strategy or one within "
                f"{GOOD_CHOICE - 1:.0%} of it in {len(good)} of {len(choices)}{quiet} cases")
        if noisy:
            line += f" ({len(noisy)} noisy cases not counted)"
        if worst["choice_regret"] > GOOD_CHOICE:
            line += (f"; its worst choice: {_case(worst)}, {worst['auto']} "
                     f"{worst['choice_regret']:.2f}x the time of {worst['best']}")
        out.append(line + ".")
    torch = [s for s in summ if s.get("torch_ratio")]
    if torch:
        faster = [s for s in torch if s["torch_ratio"] < 1]
        r = _gmean([s["torch_ratio"] for s in torch])
        best = min(torch, key=lambda s: s["torch_ratio"])
        worst = max(torch, key=lambda s: s["torch_ratio"])
        out.append(
            f"- **Against PyTorch** ({obj['machine']['threads']} threads each): fastconv's "
            f"fastest strategy is faster in {len(faster)} of {len(torch)}{quiet} cases; "
            "geometric mean "
            f"of time(fastconv) / time(torch) {_ratio(r)} (below 1: fastconv faster). Best: "
            f"{_case(best)} ({_ratio(best['torch_ratio'])}); worst: {_case(worst)} "
            f"({_ratio(worst['torch_ratio'])}).")
    elif not obj["machine"].get("torch"):
        out.append(_no_torch_line())
    else:
        out.append("- **PyTorch** was not timed in this run (`--no-peers` or `--strategy`).")
    if noisy:
        out.append(_noisy_line(noisy))
    line = _ceiling_line(obj)
    if line:
        out.append(line)
    out.append("- A *regret* below 1 (auto timed faster than the fastest strategy) is timing "
               "noise: auto runs exactly the strategy it chose plus microseconds of dispatch, "
               "so the two timings of one kernel differ only by the load of other processes. "
               "The *choice* column compares the chosen strategy timed as itself, free of that "
               "noise.")
    return out


def _ceiling_detail(c):
    parts = []
    if c.get("spread") is not None:
        parts.append(f"spread {c['spread']:.2f}")
    if c.get("recheck_gflops") is not None:
        parts.append(f"{c['recheck_gflops']:.1f} GFLOP/s when measured again at the end")
    if c.get("disturbed"):
        parts.append(f"**disturbed**: {c['disturbed']}; the higher is used")
    return f" ({'; '.join(parts)})" if parts else ""


def _spread(r):
    if r.get("spread") is None:
        return "—"
    return f"{r['spread']:.2f}" + (" noisy" if r.get("noisy") else "")


def _us(s):
    return "—" if s is None else f"{s * 1e6:.1f} us"


def _per_call_section(rows):
    """What a call of the smallest problems costs: plain, planned, PyTorch."""
    if not rows:
        return []
    L = ["## Per call", "",
         "The smallest forward problems, where the Python around a kernel is most of a "
         "call: `fastconv.conv2d` (it fetches a remembered plan), a `fastconv.plan` called "
         "with both arrays, and PyTorch's `F.conv2d`; medians per call, the least of "
         "interleaved rounds.", "",
         "| input | weight | strategy | fastconv.conv2d | plan | torch | plain / torch "
         "| plan / torch |", "|---|---|---|--:|--:|--:|--:|--:|"]
    for r in rows:
        t = r.get("torch_s")
        L.append(f"| {tuple(r['input_shape'])} | {tuple(r['weight_shape'])} | {r['strategy']} "
                 f"| {_us(r['plain_s'])} | {_us(r['plan_s'])} | {_us(t)} | "
                 f"{_num(r['plain_s'] / t if t else None)} | "
                 f"{_num(r['plan_s'] / t if t else None)} |")
    return L + [""]


def render_report(obj):
    """The Markdown report of a results object."""
    m, c = obj["machine"], obj["ceiling"]
    created = obj["created"].replace("T", " ").replace("+00:00", " UTC")
    L = ["# fastconv benchmark report", ""]
    L += ["## In short", ""] + recommendation(obj) + ["", "## This run", ""]
    L += [
        f"- **Date:** {created}; the run took {obj['elapsed_s']:.0f} s",
        f"- **Suite:** {obj['suite']} ({_SIZE_NOTE[obj['suite']]}), {obj['dtype']}; each case: "
        f"1 warm-up call, then at least {obj['repeat']} timed calls (short calls repeated up to "
        f"{obj.get('min_time_s', 0):g} s or 200 calls); times are the best of them (median "
        "too in the per-layer tables)",
        f"- **CPU:** {m['cpu']}, {os.cpu_count()} logical CPUs; **threads:** {m['threads']} "
        "(fastconv n_threads" + (f", torch.set_num_threads({m['threads']})" if m.get("torch") else "")
        + "); 1-minute load average " + f"{m.get('loadavg_start')} at the start, "
        f"{m.get('loadavg_end')} at the end (above the thread count, other processes competed "
        "for the cores and times are noisy)",
        *([f"- **fastconv kernels:** {m['isa_level']} instruction-set level (compiled: "
           f"{', '.join(m.get('isa_compiled', []))}; the CPU supports up to "
           f"{m.get('isa_cpu', '?')}; `FASTCONV_CPU` caps it)"] if m.get("isa_level") else []),
        "- **Timing:** the implementations of each (layer, op) run in interleaved rounds, so "
        "bursts of load from other processes hit them alike",
        f"- **Versions:** fastconv {m['fastconv']} (strategies: {', '.join(m['strategies'])}; "
        f"OpenMP {'on' if m.get('openmp') else 'off'}), numpy {m['numpy']}, scipy {m['scipy']}, "
        f"torch {m.get('torch') or 'not installed'}"
        + (f" ({m['torch_cpu']} kernels)" if m.get("torch_cpu") else "")
        + f", Python {m['python']}",
        f"- **BLAS:** {'; '.join(m['blas']) or 'unknown'}",
        f"- **Ceiling:** numpy float32 matmul {c['n']}x{c['n']}: **{c['gflops']:.1f} GFLOP/s**, "
        "measured in this run" + _ceiling_detail(c) + ". GFLOP/s below count 2 x the "
        "multiply-adds of the direct definition for every implementation (FFT too), so they "
        "are comparable effective rates.",
        f"- **Noise:** *spread* = median / best of a case's timed calls, with the 1-minute "
        f"load average when its group finished; a case above {NOISY_SPREAD:.2f} is "
        + ("timed once more (its whole group, interleaved again) and, if still above, "
           if obj.get("rerun_noisy", True) else "")
        + "marked *noisy* and left out of the conclusions",
        "",
    ]
    # summary
    L += ["## Summary", "",
          "*regret* = time(auto) / time(fastest strategy); *choice* = time(the strategy auto "
          "chose, timed as itself) / time(fastest strategy), the decision's cost free of timing "
          "noise; *best / torch* > 1 means PyTorch is faster.",
          "", "| layer | shape | op | fastest strategy | ms | auto chose | regret | choice "
          "| torch ms | best / torch | timing |",
          "|---|---|---|---|--:|---|--:|--:|--:|--:|---|"]
    shapes = {info["name"]: layer_shape(info) for info in obj["layers"]}
    for s in obj["summary"]:
        L.append(f"| {s['layer']} | {shapes.get(s['layer'], '')} | {s['op']} | "
                 f"{s['best'] or '—'} | {_ms(s['best_s'])} | {s['auto'] or '—'} | "
                 f"{_num(s['regret'])} | {_num(s.get('choice_regret'))} | "
                 f"{_ms(s['torch_s'])} | {_num(s['torch_ratio'])} | "
                 f"{'noisy' if s.get('noisy') else 'quiet'} |")
    quiet = [s for s in obj["summary"] if not s.get("noisy")]
    regrets = [s["regret"] for s in quiet if s.get("regret")]
    choices = [s["choice_regret"] for s in quiet if s.get("choice_regret")]
    if regrets:
        L += ["", f"Geometric-mean regret {_gmean(regrets):.3f} (worst {max(regrets):.2f}) over "
                  f"{len(regrets)} quiet cases; decision only: {_gmean(choices):.3f} (worst "
                  f"{max(choices):.2f})." if choices else ""]
    L.append("")
    L += _per_call_section(obj.get("per_call"))
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
        x = _x
        L += [f"### {info['name']}: {layer_shape(info)} ({info['group']}, {info['size']} size)", "",
              f"input {x(info['input_shape'])}, weight {x(info['weight_shape'])}, output "
              f"{x(info['output_shape'])}, stride {x(info['stride'])}, groups {info['groups']}; "
              f"{_count(info['macs'])} multiply-adds per pass.  ",
              f"Parameters: conv **{_count(p['conv_total'])}** vs dense **{_count(p['dense_total'])}**"
              f" ({p['ratio']:.3g}x); multiply-adds per example: conv {_count(p['conv_macs'])} vs "
              f"dense {_count(p['dense_macs'])}.", "",
              "| op | implementation | best ms | median ms | spread | load | GFLOP/s "
              "| % of ceiling | workspace | note |",
              "|---|---|--:|--:|--:|--:|--:|--:|--:|---|"]
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
                     f"{_spread(r)} | {_num(r.get('loadavg'), '{:.1f}')} | {_num(r['gflops'])} | "
                     f"{_num(pct, '{:.1f}')} | {_bytes(r['workspace_bytes'])} "
                     f"| {note.replace('|', '/')} |")
        L.append("")
    # sweeps
    if obj["sweeps"]:
        L += ["## Crossovers (2-D forward)", ""]
        for sw in obj["sweeps"]:
            impls = list(dict.fromkeys(pt["impl"] for pt in sw["points"]))
            xs = list(dict.fromkeys(pt["x"] for pt in sw["points"]))
            t = {(pt["x"], pt["impl"]): pt["best_s"] for pt in sw["points"]}
            layer = f" ({sw['layer']})" if sw.get("layer") else ""
            L += [f"Time (ms) against {sw['x_label']}{layer}:", "",
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
