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

Memory: a strategy's workspace counts every byte it allocates beyond its
operands and result (the strategies pad inside their kernels: no padded copy of
an operand is made). A forced strategy (1, 2) whose workspace exceeds the
budget raises MemoryError with the numbers instead of exceeding it. A result
larger than the memory the machine has available raises MemoryError before
anything is allocated (:func:`check_available`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from . import _cpu, _resources, _strategies, _tuning
from ._config import get_config
from ._spec import OPS


@dataclass
class Candidate:
    """One strategy's standing for a problem, in :attr:`Decision.candidates`.

    Attributes
    ----------
    name : str
        The strategy.
    estimate_s : float or None
        The cost model's estimate in seconds (None when excluded).
    measured_s : float or None
        The time measured by autotune, from the tuning cache (None if not measured).
    workspace_bytes : int or None
        Memory the strategy would allocate, padded copies included.
    excluded : str or None
        Why the dispatcher may not choose it (cannot run the problem, over the
        memory budget, FFT forbidden or too inaccurate, ...); None if it may.
    threads : int or None
        Threads its estimate is for (fewer than configured when more would
        not pay).
    """

    name: str
    estimate_s: float | None = None
    measured_s: float | None = None
    workspace_bytes: int | None = None
    excluded: str | None = None
    threads: int | None = None


@dataclass
class Decision:
    """What the dispatcher chose for one op, and why (:func:`fastconv.explain`).

    ``print(decision)`` shows the choice and every candidate's estimate or the
    reason it was excluded.

    Attributes
    ----------
    op : {"forward", "grad_input", "grad_weight"}
        The op decided for.
    strategy : str or None
        The chosen strategy's name; None when nothing fits the memory budget.
    decided_by : str
        What decided: "argument" (``strategy=``), "context" (the ``strategy``
        option), "config-rule", "tuning-cache", "cost-model", "empty-batch" (a
        zero-size batch: nothing runs) or "nothing-fits" (no strategy fits the
        memory budget; a call raises MemoryError).
    detail : str
        The rule or cache entry that decided, or a short explanation.
    candidates : list of Candidate
        Every strategy's estimate or reason for exclusion (empty when the
        strategy was forced).
    threads : int or None
        Threads the call runs on: the configured count, or 1 when the cost
        model says the problem is too small for more to pay
        (:func:`fastconv._tuning.run_threads`).
    level : str
        The instruction-set level of the kernels the estimates are for
        ("baseline", "avx2" or "avx512"; ``FASTCONV_CPU`` caps it).
    """

    op: str
    strategy: str
    decided_by: str
    detail: str = ""
    candidates: list = field(default_factory=list)
    threads: int | None = None
    level: str = field(default_factory=lambda: _cpu.level())

    def __str__(self):
        lines = [f"{self.op}: {self.strategy} (decided by {self.decided_by}"
                 + (f": {self.detail}" if self.detail else "")
                 + (f"; {self.threads} thread{'s' if self.threads != 1 else ''}"
                    if self.threads else "") + f"; {self.level} kernels)"]
        for c in self.candidates:
            if c.excluded:
                lines.append(f"  {c.name:8s} excluded: {c.excluded}")
            else:
                est = f"{c.estimate_s * 1e3:10.3f} ms est" if c.estimate_s is not None else ""
                meas = f"  {c.measured_s * 1e3:10.3f} ms measured" if c.measured_s is not None else ""
                ws = (f"  workspace {c.workspace_bytes / 2**20:.1f} MiB"
                      if c.workspace_bytes is not None else "")
                th = f"  on {c.threads} thread(s)" if c.threads is not None else ""
                lines.append(f"  {c.name:8s}{est}{th}{meas}{ws}")
        return "\n".join(lines)


def total_workspace(strategy, spec, op, opts):
    """The strategy's scratch bytes for ``op`` under ``opts`` (every strategy pads
    inside its kernels: no padded copy of an operand is made for it)."""
    return int(strategy.workspace(spec, op, opts))


# Below this, a result cannot matter to the machine's memory: skip the /proc read.
_CHECK_ABOVE = 64 << 20


def check_available(nbytes, what, spec):
    """MemoryError (with the numbers) if ``nbytes`` exceed the memory available now."""
    if nbytes <= _CHECK_ABOVE:
        return
    avail = _resources.available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(
            f"the {what} needs {nbytes} bytes ({nbytes / 2**30:.2f} GiB) but the machine has "
            f"{avail} bytes ({avail / 2**30:.2f} GiB) available (input {spec.input_shape}, "
            f"weight {spec.weight_shape}, padding {spec.padding}, dtype {spec.dtype})")


def _candidates(op, spec, opts):
    """Every strategy with its guard verdict, workspace and calibrated estimate."""
    from ._tuning import run_threads

    out = []
    for s in _strategies.all_strategies():
        c = Candidate(s.name)
        reason = s.supports(spec, op)
        if reason is None and hasattr(s, "guard"):   # what the options rule out
            reason = s.guard(spec, op, opts)
        if reason is None:
            c.workspace_bytes = total_workspace(s, spec, op, opts)
            if c.workspace_bytes > opts.memory_budget:
                reason = (f"workspace {c.workspace_bytes} bytes "
                          f"exceeds the memory budget {opts.memory_budget} bytes")
        if reason is None:
            c.threads, c.estimate_s = run_threads(s, op, spec, opts)
        c.excluded = reason
        out.append(c)
    return out


def _forced(op, spec, name, decided_by, detail, opts):
    strat = _strategies.get(name)
    reason = strat.supports(spec, op)
    if reason is not None:
        raise ValueError(f"strategy {name!r} cannot run {op} for this problem: {reason}")
    ws = total_workspace(strat, spec, op, opts)
    if ws > opts.memory_budget:
        raise MemoryError(
            f"strategy {name!r} needs {ws} bytes of workspace for {op} (input "
            f"{spec.input_shape}, weight {spec.weight_shape}) but the budget is "
            f"{opts.memory_budget} bytes: with a "
            f"memory budget of {opts.memory_budget} bytes use strategy='auto' (it picks one "
            "that fits) or raise fastconv.config(memory_budget=...)")
    return Decision(op, name, decided_by, detail, threads=_tuning.run_threads(
        strat, op, spec, opts)[0])


# Autotune measures one problem at a time in a process: two threads timing at
# once would skew each other's numbers (and both would measure the same key).
_measure_lock = threading.Lock()


def _tuned_entry(op, spec, ok, opts):
    from ._tuning import measure, problem_key, tuning_cache

    key = problem_key(op, spec, opts.threads)
    entry = tuning_cache.entries(opts).get(key)
    if entry is None and opts.mode == "autotune":
        with _measure_lock:
            entry = tuning_cache.entries(opts).get(key)  # another thread may have measured
            if entry is None:
                names = sorted(ok, key=lambda n: ok[n].estimate_s)
                secs = measure(op, spec, names, opts)
                entry = {"strategy": min(secs, key=secs.get), "seconds": secs}
                tuning_cache.store(opts, {key: entry})
                tuning_cache.remember(opts, key, entry)
    return key, entry


def _decide(op, spec, strategy, opts):
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be a string, got {type(strategy).__name__}")
    if spec.batch == 0:
        if strategy != "auto" or opts.strategy != "auto":
            _strategies.get(strategy if strategy != "auto" else opts.strategy)
        return Decision(op, strategy if strategy != "auto" else opts.strategy, "empty-batch",
                        "a zero-size batch: nothing to compute")
    if strategy != "auto":
        return _forced(op, spec, strategy, "argument", f"strategy={strategy!r}", opts)
    if opts.strategy != "auto":
        return _forced(op, spec, opts.strategy, "context", f"config strategy={opts.strategy!r}",
                       opts)
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
                return Decision(op, rule.strategy, "config-rule", rule.source, cands,
                                ok[rule.strategy].threads)
            # a rule naming a strategy that is excluded here does not decide
    if opts.mode in ("autotune", "cache-only"):
        key, entry = _tuned_entry(op, spec, ok, opts)
        if entry is not None and entry.get("strategy") in ok:
            for name, t in entry.get("seconds", {}).items():
                if name in ok:
                    ok[name].measured_s = t
            return Decision(op, entry["strategy"], "tuning-cache", key, cands,
                            ok[entry["strategy"]].threads)
    best = min(ok.values(), key=lambda c: c.estimate_s)
    return Decision(op, best.name, "cost-model", "lowest estimated time", cands, best.threads)


def explain_decision(op, spec, strategy="auto", opts=None):
    """:func:`decide`, but when nothing fits the budget a Decision that says so.

    ``strategy`` is None and ``decided_by`` is "nothing-fits"; the candidates
    give each strategy's reason.
    """
    opts = opts or get_config()
    try:
        return decide(op, spec, strategy, opts)
    except MemoryError as e:
        cands = _candidates(op, spec, opts) if strategy == "auto" == opts.strategy else []
        return Decision(op, None, "nothing-fits", str(e), cands)


# Decisions are pure functions of (op, problem, strategy argument, options, cache
# files); remembering them keeps a repeated call's dispatch to a dict lookup. The
# key holds the cache files' (mtime, size, inode), so a calibration, an autotune
# or a `tune --clear` by another process is seen by the next call.
_memo = {}


def _files_signature(opts, threads=None):
    from ._tuning import calibration_cache, tuning_cache

    sig = calibration_cache.signature(opts, threads)
    if opts.mode != "heuristic":
        sig = (sig, tuning_cache.signature(opts, threads))
    return sig


def decide(op, spec, strategy="auto", opts=None):
    """Return the :class:`Decision` for ``op`` on ``spec`` (see the module docstring)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    opts = opts or get_config()
    try:
        # the thread count too: with n_threads=None it follows $OMP_NUM_THREADS
        threads = opts.threads
        key = (op, spec, strategy, opts, threads, _files_signature(opts, threads))
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


# Called by clear_memo: what is made of decisions (fastconv._plan's plans) goes too.
on_clear = []


def clear_memo():
    """Forget remembered decisions (after calibration or cache changes), and the
    plans made of them."""
    _memo.clear()
    for f in on_clear:
        f()


def choose(op, spec, strategy="auto"):
    """The strategy object to run ``op`` on ``spec``."""
    return _strategies.get(decide(op, spec, strategy).strategy)


def choose_run(op, spec, strategy="auto"):
    """``(strategy object, threads)`` to run ``op`` on ``spec`` with."""
    d = decide(op, spec, strategy)
    return _strategies.get(d.strategy), d.threads or get_config().threads


# A new calibration or a cleared cache changes what remembered decisions rest on.
_tuning.on_cache_change.append(clear_memo)
_cpu.on_level_change(clear_memo)
