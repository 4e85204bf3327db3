"""Choose a strategy per op.

Precedence, first that applies: explicit ``strategy=`` argument > the
``fastconv.config(strategy=...)`` context > the cost model. (Config-file rules
and the autotune cache slot in between; see issue "Strategy selection".)
Guards come before costs: a strategy that cannot run the problem, or whose
workspace exceeds the memory budget, is never chosen by the cost model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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


def _candidates(op, spec, opts):
    out = []
    for s in _strategies.all_strategies():
        c = Candidate(s.name)
        reason = s.supports(spec, op)
        if reason is None and s.name == "fft" and not opts.allow_fft:
            reason = "forbidden by allow_fft=False"
        if reason is None:
            c.workspace_bytes = s.workspace(spec, op)
            if c.workspace_bytes > opts.memory_budget:
                reason = (f"workspace {c.workspace_bytes} bytes exceeds the memory budget "
                          f"{opts.memory_budget} bytes")
        if reason is None:
            c.estimate_s = s.estimate(spec, op, opts.threads)
        c.excluded = reason
        out.append(c)
    return out


def _forced(op, spec, name, decided_by, opts):
    strat = _strategies.get(name)
    reason = strat.supports(spec, op)
    if reason is not None:
        raise ValueError(f"strategy {name!r} cannot run {op} for this problem: {reason}")
    return Decision(op, name, decided_by, f"strategy={name!r}")


def decide(op, spec, strategy="auto", opts=None):
    """Return the :class:`Decision` for ``op`` on ``spec``."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    opts = opts or get_config()
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be a string, got {strategy!r}")
    if strategy != "auto":
        return _forced(op, spec, strategy, "argument", opts)
    if opts.strategy != "auto":
        return _forced(op, spec, opts.strategy, "context", opts)
    cands = _candidates(op, spec, opts)
    ok = [c for c in cands if c.excluded is None]
    if not ok:
        raise MemoryError(
            f"no strategy can run {op} within the memory budget of {opts.memory_budget} bytes: "
            + "; ".join(f"{c.name}: {c.excluded}" for c in cands)
        )
    best = min(ok, key=lambda c: c.estimate_s)
    return Decision(op, best.name, "cost-model", "lowest estimated time", cands)


def choose(op, spec, strategy="auto"):
    """The strategy object to run ``op`` on ``spec``."""
    return _strategies.get(decide(op, spec, strategy).strategy)
