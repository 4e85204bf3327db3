"""What a strategy provides (:class:`Strategy`) and what it plans (:class:`StrategyPlan`).

A strategy plans once per problem and executes that plan many times: a
:class:`fastconv.Plan` asks it for a :class:`StrategyPlan` when the plan is made
(under the options in force then, handed in) and runs it on every call. Nothing
in a strategy reads the global configuration; the options arrive as arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, eq=False)
class StrategyPlan:
    """Every decision a strategy made for one op on one problem.

    Made by a strategy's ``plan`` and executed by its ``run``; immutable, so
    several threads may run one plan at once.

    Attributes
    ----------
    strategy : str
        The name of the strategy that made it (and runs it).
    op : str
        "forward", "grad_input", "grad_weight", or "backward" (both backward
        passes at once, for a strategy with ``backward``).
    spec : ConvSpec
        The problem.
    threads : int
        Threads the kernels run on.
    budget : int
        The memory budget (bytes) the plan was made within.
    workspace : int
        Scratch bytes a call holds beyond its operands and result.
    kernel : object
        The strategy's own plan of its kernels: direct's kernel plan
        (a :class:`fastconv._strategies.direct_plan.KernelPlan`, or the
        ``_direct.WideCall`` that runs one on the wide path), im2col's and
        winograd's work plans (frozen dataclasses),
        FFT's block plan.
    fallback : object, optional
        A second kernel plan the strategy may switch to on a call (direct's
        grad_input: the row loops, for weights that are not all finite).
    """

    strategy: str
    op: str
    spec: Any
    threads: int
    budget: int
    workspace: int
    kernel: Any
    fallback: Any = None


@runtime_checkable
class Strategy(Protocol):
    """What every strategy provides.

    ``guard(spec, op, options) -> str | None`` (why the options keep "auto" from
    it), ``overflow_factor(spec, op, options)`` with ``avoid`` (a bound on its
    float32 values per unit of max|a| * max|b|, and the options that keep "auto"
    from it where that could overflow) and ``backward(plan, x, w, gy)`` (both
    backward passes at once, on a plan made for op "backward") are optional,
    looked up with ``getattr``.
    """

    name: str

    def supports(self, spec, op: str) -> str | None:
        """None if it can run ``op`` on ``spec``, else the reason it cannot."""

    def workspace(self, spec, op: str, options) -> int:
        """Scratch bytes a call would hold (beyond operands and result) on
        ``options.threads`` threads within ``options.memory_budget``."""

    def estimate(self, spec, op: str, n_threads: int, options) -> float:
        """Cost-model estimate in seconds on ``n_threads`` threads (``options``:
        the tolerances that shape a plan, e.g. winograd's tile)."""

    def plan(self, spec, op: str, options) -> StrategyPlan:
        """Every decision for ``op`` on ``spec``, on ``options.threads`` threads
        within ``options.memory_budget`` (MemoryError if nothing fits)."""

    def run(self, plan: StrategyPlan, a: np.ndarray, b: np.ndarray,
            out: np.ndarray | None = None, memo: dict | None = None) -> np.ndarray:
        """Execute ``plan`` on prepared operands; return the result.

        ``a`` and ``b`` are 5-D C-contiguous arrays of ``spec.dtype`` (see
        :mod:`fastconv._prepare`), the kernel already flipped when
        ``spec.flip``, so a strategy computes only the strided, dilated
        cross-correlation and its adjoints, with the zero padding
        (``spec.padding3``) inside its kernels: forward(x, w) -> y
        (``spec.output_shape5``), grad_input(gy, w) -> grad_x,
        grad_weight(x, gy) -> grad_w (``spec.weight_shape5``). The result goes
        to ``out`` (C-contiguous, of that shape and dtype) when given, else to
        a new array; ``a`` and ``b`` are never written. ``memo``: None, or a
        dict that a caller whose weight ``b`` never changes (a plan bound to a
        weight, :meth:`fastconv.Plan.with_weight`) passes to every call: the
        strategy may keep its transforms of the weight there.
        """


_RESULT = {"forward": "output_shape5", "grad_input": "input_shape5",
           "grad_weight": "weight_shape5"}


def result_shape(spec, op):
    """The 5-D shape of ``op``'s result on ``spec``."""
    return getattr(spec, _RESULT[op])


def result_array(spec, op, out):
    """``out``, or a new array of ``op``'s 5-D result shape and ``spec.dtype``."""
    if out is not None:
        return out
    return np.empty(getattr(spec, _RESULT[op]), dtype=spec.dtype)
