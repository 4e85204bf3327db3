"""Choose a strategy per op (forward, grad_input, grad_weight separately).

Precedence, first that applies:

1. the explicit ``strategy=`` argument;
2. ``strategy`` in the options (``with fastconv.config(strategy=...)``,
   ``set_config`` or the config file's top-level ``strategy``);
3. the first config-file rule that matches the problem;
4. in "autotune" / "cache-only" mode, the measured winner in the tuning cache
   (autotune measures and stores it on a miss);
5. the cost model: the lowest calibrated estimate.

Guards come before 3-5: a strategy that cannot run the problem, whose workspace
exceeds the memory budget, or (FFT) that the user forbids, whose strides waste
most of its work, or whose float32 error estimate exceeds ``fft_rtol``, is
never chosen there, nor winograd when even its most accurate tile's float32
error estimate exceeds ``winograd_rtol``; :func:`fastconv.explain` lists why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import _strategies
from ._config import get_config
from ._spec import OPS


@dataclass
class Candidate:
    """One strategy's standing for a problem."""

    name: str
    estimate_s: float | None = None
    measured_s: float | None = None
    workspace_bytes: int | None = None
    excluded: str | None = None


@dataclass
class Decision:
    """What the dispatcher chose for one op, and why.

    Attributes
    ----------
    op : str
    strategy : str
        The chosen strategy's name.
    decided_by : str
        "argument", "context", "config-rule", "tuning-cache" or "cost-model".
    detail : str
        The rule or cache entry that decided, or a short explanation.
    candidates : list of Candidate
    """

    op: str
    strategy: str
    decided_by: str
    detail: str = ""
    candidates: list = field(default_factory=list)

    def __str__(self):
        lines = [f"{self.op}: {self.strategy} (decided by {self.decided_by}"
                 + (f": {self.detail}" if self.detail else "") + ")"]
        for c in self.candidates:
            if c.excluded:
                lines.append(f"  {c.name:8s} excluded: {c.excluded}")
            else:
                est = f"{c.estimate_s * 1e3:10.3f} ms est" if c.estimate_s is not None else ""
                meas = f"  {c.measured_s * 1e3:10.3f} ms measured" if c.measured_s is not None else ""
                ws = f"  workspace {c.workspace_bytes / 2**20:.1f} MiB" if c.workspace_bytes is not None else ""
                lines.append(f"  {c.name:8s}{est}{meas}{ws}")
        return "\n".join(lines)


def fft_error_estimate(spec):
    """Rough relative error of the FFT strategy on ``spec`` (vs max |output|).

    FFT rounding error grows about like eps * log2(transform size).
    """
    eps = float(np.finfo(spec.dtype).eps)
    n = math.prod(spec.padded_spatial)
    return 2.0 * eps * max(1.0, math.log2(n))


def _candidates(op, spec, opts):
    """Every strategy with its guard verdict, workspace and calibrated estimate."""
    from ._tuning import calibrated_estimate

    out = []
    for s in _strategies.all_strategies():
        c = Candidate(s.name)
        reason = s.supports(spec, op)
        if reason is None and s.name == "fft":
            if not opts.allow_fft:
                reason = "forbidden by allow_fft=False"
            elif max(spec.stride) > opts.fft_max_stride:
                reason = (f"stride {spec.stride} > fft_max_stride={opts.fft_max_stride}: "
                          "FFT would compute and discard most outputs")
            elif opts.fft_rtol is not None and spec.dtype == np.float32 and (
                    fft_error_estimate(spec) > opts.fft_rtol):
                reason = (f"estimated float32 FFT error {fft_error_estimate(spec):.1e} "
                          f"> fft_rtol={opts.fft_rtol:g}")
        if reason is None and s.name == "winograd" and opts.winograd_rtol is not None and (
                spec.dtype == np.float32 and s.error_estimate(spec) > opts.winograd_rtol):
            reason = (f"estimated float32 winograd error {s.error_estimate(spec):.1e} (F(2,3)) "
                      f"> winograd_rtol={opts.winograd_rtol:g}")
        if reason is None:
            c.workspace_bytes = s.workspace(spec, op)
            if c.workspace_bytes > opts.memory_budget:
                reason = (f"workspace {c.workspace_bytes} bytes exceeds the memory budget "
                          f"{opts.memory_budget} bytes")
        if reason is None:
            c.estimate_s = calibrated_estimate(s, op, spec, opts)
        c.excluded = reason
        out.append(c)
    return out


def _forced(op, spec, name, decided_by, detail):
    strat = _strategies.get(name)
    reason = strat.supports(spec, op)
    if reason is not None:
        raise ValueError(f"strategy {name!r} cannot run {op} for this problem: {reason}")
    return Decision(op, name, decided_by, detail)


def _decide(op, spec, strategy, opts):
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be a string, got {strategy!r}")
    if strategy != "auto":
        return _forced(op, spec, strategy, "argument", f"strategy={strategy!r}")
    if opts.strategy != "auto":
        return _forced(op, spec, opts.strategy, "context", f"config strategy={opts.strategy!r}")
    cands = _candidates(op, spec, opts)
    ok = {c.name: c for c in cands if c.excluded is None}
    if not ok:
        raise MemoryError(
            f"no strategy can run {op} for input {spec.input_shape}, weight "
            f"{spec.weight_shape} within the memory budget of {opts.memory_budget} bytes: "
            + "; ".join(f"{c.name}: {c.excluded}" for c in cands)
        )
    for rule in opts.rules:
        if rule.matches(op, spec):
            if rule.strategy in ok:
                return Decision(op, rule.strategy, "config-rule", rule.source, cands)
            # a rule naming a strategy that is excluded here does not decide
    if opts.mode in ("autotune", "cache-only"):
        from ._tuning import measure, problem_key, tuning_cache

        key = problem_key(op, spec, opts.threads)
        entry = tuning_cache.entries(opts).get(key)
        if entry is None and opts.mode == "autotune":
            names = sorted(ok, key=lambda n: ok[n].estimate_s)
            secs = measure(op, spec, names, opts.threads)
            entry = {"strategy": min(secs, key=secs.get), "seconds": secs}
            tuning_cache.store(opts, {key: entry})
        if entry is not None and entry.get("strategy") in ok:
            for name, t in entry.get("seconds", {}).items():
                if name in ok:
                    ok[name].measured_s = t
            return Decision(op, entry["strategy"], "tuning-cache", key, cands)
    best = min(ok.values(), key=lambda c: c.estimate_s)
    return Decision(op, best.name, "cost-model", "lowest estimated time", cands)


# Decisions are pure functions of (op, problem, strategy argument, options, cache
# files); remembering them keeps a repeated call's dispatch to a dict lookup.
_memo = {}


def decide(op, spec, strategy="auto", opts=None):
    """Return the :class:`Decision` for ``op`` on ``spec`` (see the module docstring)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    opts = opts or get_config()
    key = (op, spec, strategy, opts)
    try:
        return _memo[key]
    except KeyError:
        pass
    except TypeError:  # unhashable strategy argument: let _decide raise
        return _decide(op, spec, strategy, opts)
    d = _decide(op, spec, strategy, opts)
    if d.decided_by != "cost-model" or opts.mode == "heuristic":
        if len(_memo) > 4096:
            _memo.clear()
        _memo[key] = d
    return d


def clear_memo():
    """Forget remembered decisions (after calibration or cache changes)."""
    _memo.clear()


def choose(op, spec, strategy="auto"):
    """The strategy object to run ``op`` on ``spec``."""
    return _strategies.get(decide(op, spec, strategy).strategy)
