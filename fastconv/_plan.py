"""Plans: one convolution op on fixed shapes, decided once and run many times.

A :class:`Plan` holds everything that depends only on the problem (the shapes,
the parameters, the dtype) and the options in force when it was made: the
validated :class:`~fastconv.ConvSpec`, the dispatcher's decision (strategy and
threads), the options the strategy runs under and the padding mode's plan. A call
checks its arrays against the plan and runs the strategy; nothing is decided again.
The plain functions (:func:`fastconv.conv`, :mod:`fastconv.grad`,
:func:`fastconv.conv_backward`) fetch a memoized plan
(:func:`fastconv._plan_memo.cached`) and call it.

Plans are immutable: a plan made inside ``with fastconv.config(...)`` keeps that
block's options after it ends, and several threads may call one plan at once.
A plan bound to a weight (:meth:`Plan.with_weight`) keeps its own copy of the
weight and the strategy's transforms of it (Winograd's transformed kernel, FFT's
kernel spectra), so a later change of the caller's array never reaches it.
Pickling a plan pickles its arguments; unpickling plans again, for the CPU and
the cache files of the process that loads it (a Dask worker plans for itself).
"""
from __future__ import annotations

import math

import numpy as np

from . import _cpu, _padmode
from . import _prepare as prep
from ._config import Options, get_config, with_threads
from ._dispatch import check_available, decide
from ._docstrings import CONV, shared_parameters
from ._ext import _direct
from ._spec import OPS, make_spec, result_dtype
from ._strategies import get as get_strategy
from ._typing import ArrayLike, DTypeLike, Op, Padding, PaddingMode, PerAxis, Shape

__all__ = ["Plan", "BoundPlan", "LayerPlan", "plan", "plan_layer"]

# float32's largest finite value, with a margin for the rounding of the sums.
_F32_SAFE = float(np.finfo(np.float32).max) / 64

# Which arrays each op takes, in the order of the plain functions' arguments.
_ARGS = {"forward": ("x", "weight"), "grad_input": ("weight", "grad_output"),
         "grad_weight": ("input", "grad_output")}


def _max_abs(a):
    """max |a| of a C-contiguous float32 array: one pass over it (Inf or NaN
    when it holds one), on the calling thread. An OpenMP team here would spin,
    waiting for work, while the guarded strategy starts its own threads (FFT's
    pipelines, BLAS's): on two cores the FFT that followed ran at half speed."""
    return _direct.absmax(a.reshape(-1), 1)


class Plan:
    """One convolution op on fixed shapes, decided once; call it many times.

    Made by :func:`fastconv.plan`; see there for the arguments. Calling it runs
    the op (the arrays in the order of the plain function):

    * forward: ``p(x, weight, bias=None, out=None)``, as :func:`fastconv.conv`;
    * grad_input: ``p(weight, grad_output, out=None)``, as :func:`fastconv.grad_input`;
    * grad_weight: ``p(input, grad_output, out=None)``, as :func:`fastconv.grad_weight`.

    Arrays must have the plan's shapes; they are converted to the plan's dtype
    when they differ (a copy). ``out``, when given, receives the result (it must
    have the result's shape and the plan's dtype) and is returned.

    Parameters
    ----------
    op : {"forward", "grad_input", "grad_weight"}
        The op to plan.
    args : tuple
        The arguments of :func:`fastconv.plan` after ``op``, in its order:
        ``(input_shape, weight_shape, stride, padding, dilation, groups, flip,
        dtype, strategy, padding_mode, ndim)``.
    opts : Options
        The options the plan is made under and keeps.

    Attributes
    ----------
    op : str
    spec : ConvSpec
        The validated problem (shapes, padding pairs, dtype).
    strategy : str
        The strategy the plan runs.
    threads : int
        Threads the strategy runs on.
    padding_mode : str
    """

    __slots__ = ("op", "spec", "padding_mode", "_args", "_decision", "_opts", "_strategy",
                 "_threads", "_inner", "_in_shapes", "_out_shape", "_guard", "_alt", "_splan",
                 "_bwd", "__weakref__")

    def __init__(self, op: Op, args: tuple, opts: Options) -> None:
        # args: (input_shape, weight_shape, stride, padding, dilation, groups, flip,
        # dtype, strategy, padding_mode, ndim), validated here
        if op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {op!r}")
        (input_shape, weight_shape, stride, padding, dilation, groups, flip, dtype,
         strategy, padding_mode, ndim) = args
        self.op = op
        self._args = args
        self._opts = opts
        self.padding_mode = _padmode.check_mode(padding_mode)
        if not isinstance(strategy, str):
            raise TypeError(f"strategy must be a string, got {type(strategy).__name__}")
        spec = make_spec(input_shape, weight_shape, stride, padding, dilation, groups,
                         flip=flip, dtype=result_dtype(dtype), ndim=ndim)
        self.spec = spec
        self._in_shapes = {"forward": (spec.input_shape, spec.weight_shape),
                           "grad_input": (spec.weight_shape, spec.output_shape),
                           "grad_weight": (spec.input_shape, spec.output_shape)}[op]
        self._out_shape = {"forward": spec.output_shape, "grad_input": spec.input_shape,
                           "grad_weight": spec.weight_shape}[op]
        self._inner = None
        self._splan = self._bwd = None
        if self.padding_mode != "zeros":
            # convolve the explicitly padded input without padding
            _padmode._check_sizes(self.padding_mode, spec)
            lead = spec.input_shape[:len(spec.input_shape) - spec.ndim]
            check_available(math.prod(lead + spec.padded_spatial) * spec.itemsize,
                            f"{self.padding_mode}-padded input", spec)
            self._inner = Plan(op, (lead + spec.padded_spatial, spec.weight_shape, stride, 0,
                                    dilation, groups, flip, spec.dtype, strategy, "zeros",
                                    ndim), opts)
            self._decision = self._inner._decision
            self._strategy, self._threads = self._inner._strategy, self._inner._threads
            self._guard = self._alt = None
            return
        check_available(math.prod(self._out_shape) * spec.itemsize,
                        {"forward": "output"}.get(op, op), spec)
        self._decision = decide(op, spec, strategy, opts)
        if spec.batch == 0:
            self._strategy, self._threads = None, 0
            self._guard = self._alt = None
            return
        self._strategy = get_strategy(self._decision.strategy)
        self._threads = self._decision.threads or opts.threads
        # the strategy's own decisions, under the plan's options on its threads
        sopts = self._strategy_options()
        self._splan = self._strategy.plan(spec, op, sopts)
        # "auto" never runs a float32 FFT or winograd where its intermediates could
        # overflow: a bound from the operands' largest magnitudes decides per call
        self._guard = None
        self._alt = None
        bound = getattr(self._strategy, "overflow_factor", None)
        if (bound is not None and spec.dtype == np.float32 and strategy == "auto"
                and opts.strategy == "auto"):
            factor = bound(spec, op, sopts)
            self._guard = _F32_SAFE / factor if factor > 0 else math.inf

    def _strategy_options(self, threads=None):
        """The plan's options with the thread count its strategy runs on."""
        n = self._threads if threads is None else threads
        return self._opts if n == self._opts.threads else with_threads(self._opts, n)

    # ------------------------------------------------------------------ info
    @property
    def strategy(self):
        """The strategy's name (None for an empty batch: nothing runs)."""
        return None if self._strategy is None else self._strategy.name

    @property
    def threads(self):
        """Threads the strategy runs on."""
        return self._threads

    @property
    def options(self):
        """The :class:`~fastconv._config.Options` the plan was made under."""
        return self._opts

    def explain(self):
        """The dispatcher's decision for this plan, and why.

        Returns
        -------
        Decision
            A copy of the plan's decision (see :func:`fastconv.explain`).
        """
        import copy

        return copy.deepcopy(self._decision)

    def __repr__(self):
        s = self.spec
        extra = "" if self.padding_mode == "zeros" else f", padding_mode={self.padding_mode!r}"
        return (f"<fastconv.Plan {self.op} input={s.input_shape} weight={s.weight_shape} "
                f"{np.dtype(s.dtype).name}{extra}: {self.strategy}, {self._threads} "
                f"thread{'s' if self._threads != 1 else ''}, {_cpu.level()} kernels "
                f"(decided by {self._decision.decided_by})>")

    def __reduce__(self):
        return (_unpickle, (self.op, self._args, self._opts))

    # ------------------------------------------------------------------ call
    def _array(self, a, i):
        """``a`` as an array of the plan's shape and dtype (a copy only when needed)."""
        if type(a) is not np.ndarray or a.dtype != self.spec.dtype:
            a = prep.as_array(a, _ARGS[self.op][i])
        check_shape(_ARGS[self.op][i], a.shape, self._in_shapes[i], self.spec)
        return a

    def _chosen(self, data, other, mb=None):
        """The plan to run on these operands: this one, unless the overflow guard
        sends a float32 call elsewhere (the plan without its strategy). ``mb``:
        max |other| when known (a bound weight)."""
        if self._guard is None:
            return self
        ma = _max_abs(data)
        mb = _max_abs(other) if mb is None else mb
        if not (np.isfinite(ma) and np.isfinite(mb)) or ma * mb <= self._guard:
            return self  # NaN/Inf: the exact result is not finite
        alt = self._alt
        if alt is None:   # the plan without the strategies that could overflow
            alt = self._fallback()
        return alt._chosen(data, other, mb)

    def _fallback(self):
        """The plan made without this plan's strategy (the option that keeps the
        dispatcher from it); it guards its own choice in turn."""
        from ._config import _validated

        self._alt = Plan(self.op, self._args, _validated(self._opts, **self._strategy.avoid))
        return self._alt

    def _run(self, a5, b5, memo=None):
        """The strategy's result on prepared 5-D operands."""
        return self._strategy.run(self._splan, a5, b5, memo=memo)

    def _backward_plan(self, threads):
        """The strategy's plan of both backward passes at once on ``threads``
        threads (this plan's problem and options), or None when the strategy has
        none or it does not fit the budget. Made on first use and kept."""
        bwd = self._bwd
        if bwd is None:
            bwd = self._bwd = {}
        bp = bwd.get(threads)
        if bp is None:
            backward = getattr(self._strategy, "backward", None)
            bp = (None if backward is None
                  else self._strategy.plan(self.spec, "backward",
                                           self._strategy_options(threads)))
            # the fused pass holds more at once than either op alone
            bp = bwd[threads] = bp if bp is not None and bp.workspace <= bp.budget else False
        return bp or None

    def __call__(self, a, b, *, bias=None, out=None):
        a = self._array(a, 0)
        b = self._array(b, 1)
        if self.op != "forward" and bias is not None:
            raise TypeError(f"a {self.op} plan takes no bias")
        return self._call(a, b, bias, out, None, None)

    def _call(self, a, b, bias, out, memo, mb):
        spec = self.spec
        if bias is not None:
            bias = prep.as_array(bias, "bias")
            if bias.shape != (spec.out_channels,):
                raise ValueError(
                    f"bias must have shape ({spec.out_channels},) (one value per output "
                    f"channel), got shape {bias.shape}")
        if out is not None:
            _check_out(out, self._out_shape, spec.dtype)
        if self._inner is not None:
            r = self._padded_call(a, b, bias, memo, mb)
        elif spec.batch == 0:
            r = np.zeros(self._out_shape, dtype=spec.dtype)
        else:
            r = self._kernel_call(a, b, bias, memo, mb)
        if out is None:
            return r
        np.copyto(out, r)
        return out

    def _kernel_call(self, a, b, bias, memo, mb):
        spec, op = self.spec, self.op
        if op == "grad_weight":
            x5, gy5 = prep.input5(a, spec), prep.grad_output5(b, spec)
            gw5 = self._run(x5, gy5)
            if (self._guard is not None and not np.isfinite(gw5).all()
                    and np.isfinite(_max_abs(x5) * _max_abs(gy5))):
                # overflow inside the strategy (the result is small: checking it
                # costs nothing, where a bound on the operands costs a pass over both)
                gw5 = (self._alt or self._fallback())._run(x5, gy5)
            if spec.flip:
                gw5 = prep.flip_kernel(gw5)
            return np.ascontiguousarray(gw5).reshape(spec.weight_shape)
        if op == "forward":
            d5 = prep.input5(a, spec)
            w5 = b if memo is not None else prep.weight5(b, spec)
        else:
            d5 = prep.grad_output5(b, spec)
            w5 = a if memo is not None else prep.weight5(a, spec)
        p = self._chosen(d5, w5, mb)
        # (the transforms kept in memo are this plan's strategy's)
        r = p._run(d5, w5, memo if p is self else None)
        if op == "grad_input":
            return r.reshape(spec.input_shape)
        if bias is not None:
            r += bias.astype(spec.dtype).reshape(1, -1, 1, 1, 1)
        return r.reshape(spec.output_shape)

    def _padded_call(self, a, b, bias, memo, mb):
        spec, mode, inner = self.spec, self.padding_mode, self._inner
        if self.op == "forward":
            return inner._call(_padmode.pad(a, spec.padding, mode), b, bias, None, memo, mb)
        if self.op == "grad_input":
            return _padmode.fold(inner._call(a, b, None, None, memo, mb), spec.padding, mode)
        return inner._call(_padmode.pad(a, spec.padding, mode), b, None, None, None, None)

    # ----------------------------------------------------------- weights
    def with_weight(self, weight):
        """This plan bound to ``weight``: forward and grad_input plans only.

        The bound plan keeps a copy of ``weight`` (later changes of the array do not
        reach it; bind again with the new values) and the strategy's transforms of
        it, made on its first call and reused by every later one: Winograd's
        transformed kernel and FFT's kernel spectra, which otherwise are computed on
        every call. Call it with the other operand only: ``bound(x)`` (forward),
        ``bound(grad_output)`` (grad_input).

        Parameters
        ----------
        weight : array_like, shape (C_out, C_in / groups, *kernel)
            The weight every call of the bound plan uses (copied).

        Returns
        -------
        BoundPlan
            Called with the other operand only.
        """
        return BoundPlan(self, weight)


def check_shape(name, got, shape, spec):
    """ValueError naming ``name`` unless its shape ``got`` is ``shape`` (grad_output's
    is the forward output's; the others the plan's)."""
    if got != shape:
        what = "the output shape" if name == "grad_output" else "the plan's shape"
        raise ValueError(f"{name} must have {what} {shape} (input {spec.input_shape}, "
                         f"weight {spec.weight_shape}), got shape {got}")


def _check_out(out, shape, dtype):
    if type(out) is not np.ndarray:
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"out must have shape {shape} and dtype {np.dtype(dtype).name}, "
                         f"got shape {out.shape} and dtype {out.dtype}")


class BoundPlan:
    """A forward or grad_input :class:`Plan` with its weight bound.

    Made by :meth:`Plan.with_weight`; called as ``bound(x, bias=None, out=None)``
    (forward) or ``bound(grad_output, out=None)`` (grad_input).

    Parameters
    ----------
    plan : Plan
        A forward or grad_input plan.
    weight : array_like
        The weight, of the plan's weight shape (copied).

    Attributes
    ----------
    plan : Plan
    weight : ndarray
        The plan's own read-only copy of the weight.
    """

    __slots__ = ("plan", "weight", "_w5", "_memo", "_mb")

    def __init__(self, plan: Plan, weight: ArrayLike) -> None:
        if plan.op == "grad_weight":
            raise ValueError("a grad_weight plan has no weight operand to bind")
        spec = plan.spec
        w = prep.as_array(weight, "weight")
        if w.shape != spec.weight_shape:
            raise ValueError(f"weight must have shape {spec.weight_shape} (the plan's), "
                             f"got {w.shape}")
        self.plan = plan
        self.weight = np.array(w, dtype=spec.dtype, copy=True)
        self.weight.flags.writeable = False
        self._w5 = prep.weight5(self.weight, spec)
        self._w5.flags.writeable = False
        # the strategy's transforms of the weight, filled by the first call (a race
        # between two first calls computes the same values twice, harmlessly)
        self._memo = {}
        self._mb = _max_abs(self._w5) if plan._guard is not None else None

    def __call__(self, a, *, bias=None, out=None):
        p = self.plan
        i = 0 if p.op == "forward" else 1
        a = p._array(a, i)
        if p.op != "forward" and bias is not None:
            raise TypeError(f"a {p.op} plan takes no bias")
        if p.op == "forward":
            return p._call(a, self._w5, bias, out, self._memo, self._mb)
        return p._call(self._w5, a, None, out, self._memo, self._mb)

    def __repr__(self):
        return f"<fastconv.BoundPlan of {self.plan!r}>"

    def __reduce__(self):
        return (BoundPlan, (self.plan, self.weight))


_NEEDS = ("input", "weight", "bias")


def _check_needs(needs):
    """``needs`` as a set of names from ``_NEEDS``; a clear error otherwise."""
    if isinstance(needs, str):
        needs = (needs,)
    try:
        got = set(needs)
    except TypeError:
        raise TypeError(f"needs must be a sequence of names from {_NEEDS}, got {needs!r}") from None
    bad = got - set(_NEEDS)
    if bad:
        raise ValueError(f"needs: unknown gradient name(s) {sorted(bad)}; valid: {_NEEDS}")
    return got


def layer_backward(spec, p_in, p_w, x, weight, gy, want):
    """``(grad_x, grad_w, grad_b)`` of one layer from its grad_input and grad_weight
    plans (None where not wanted) and prepared arrays ``x``, ``weight``, ``gy``.

    When both plans run the same strategy and it has a fused pass (FFT: one
    transform of grad_output serves both) that fits the budget, that runs;
    otherwise one op after the other, each holding only its own workspace, so
    the peak stays within the budget the dispatcher checked per op.
    """
    gx = gw = None
    if (spec.batch and p_in is not None and p_w is not None and p_in._inner is None
            and p_w._inner is None and p_in.strategy == p_w.strategy
            and hasattr(p_in._strategy, "backward")):
        x5, w5, gy5 = prep.input5(x, spec), prep.weight5(weight, spec), prep.grad_output5(gy, spec)
        pi, pw = p_in._chosen(gy5, w5), p_w._chosen(x5, gy5)
        bp = (pi._backward_plan(max(pi.threads, pw.threads)) if pi._strategy is pw._strategy
              else None)
        if bp is not None:
            gx, gw5 = pi._strategy.backward(bp, x5, w5, gy5)
            gx = gx.reshape(spec.input_shape)
            if spec.flip:
                gw5 = prep.flip_kernel(gw5)
            gw = np.ascontiguousarray(gw5).reshape(spec.weight_shape)
    if gx is None and gw is None:
        gx = None if p_in is None else p_in(weight, gy)
        gw = None if p_w is None else p_w(x, gy)
    gb = prep.grad_output5(gy, spec).sum(axis=(0, 2, 3, 4)) if "bias" in want else None
    return gx, gw, gb


class LayerPlan:
    """The three ops of one convolution layer (:func:`fastconv.plan_layer`).

    Parameters
    ----------
    forward, grad_input, grad_weight : Plan
        The plans of the three ops, on the same problem.

    Attributes
    ----------
    forward, grad_input, grad_weight : Plan
    """

    __slots__ = ("forward", "grad_input", "grad_weight")

    def __init__(self, forward: Plan, grad_input: Plan, grad_weight: Plan) -> None:
        self.forward, self.grad_input, self.grad_weight = forward, grad_input, grad_weight

    def backward(self, x, weight, grad_output, *, needs=_NEEDS):
        """Both backward passes, as :func:`fastconv.conv_backward`.

        Parameters
        ----------
        x : array_like
            The forward pass's input.
        weight : array_like
            The forward pass's weight.
        grad_output : array_like
            dL/dy, of the forward output's shape.
        needs : sequence of {"input", "weight", "bias"}, default all three
            The gradients to compute; the others are returned as None.

        Returns
        -------
        grad_x, grad_w, grad_b : ndarray or None
            The gradients for the input, the weight and a bias.
        """
        want = _check_needs(needs)
        gy = self.grad_weight._array(grad_output, 1)
        if "weight" in want:
            x = self.grad_weight._array(x, 0)
        if "input" in want:
            weight = self.grad_input._array(weight, 0)
        return layer_backward(self.forward.spec, self.grad_input if "input" in want else None,
                              self.grad_weight if "weight" in want else None, x, weight, gy,
                              want)

    def __repr__(self):
        p = self.forward
        return (f"<fastconv.LayerPlan input={p.spec.input_shape} weight={p.spec.weight_shape}: "
                f"forward {p.strategy}, grad_input {self.grad_input.strategy}, grad_weight "
                f"{self.grad_weight.strategy}>")


def _unpickle(op, args, opts):
    return Plan(op, args, opts)


@shared_parameters(CONV)
def plan(op: Op, input_shape: Shape, weight_shape: Shape, stride: PerAxis = 1,
         padding: Padding = 0, dilation: PerAxis = 1, groups: int = 1, *, flip: bool = False,
         dtype: DTypeLike = np.float32, strategy: str = "auto",
         padding_mode: PaddingMode = "zeros", ndim: int | None = None) -> Plan:
    """Decide once how to run ``op`` on these shapes; return a :class:`Plan` to call.

    Parameters
    ----------
    op : {"forward", "grad_input", "grad_weight"}
        The op to plan.
    input_shape : tuple of int
        ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``.
    weight_shape : tuple of int
        ``(C_out, C_in / groups, *kernel)``.
    dtype : dtype-like, default float32
        The compute dtype (float32 or float64; others as :func:`fastconv.conv`
        promotes them).
    ndim : int, optional
        Spatial axes; by default ``len(weight_shape) - 2``.

    Returns
    -------
    Plan
        Call it with the op's arrays: ``p(x, w)`` (forward), ``p(w, grad_output)``
        (grad_input), ``p(x, grad_output)`` (grad_weight). The options in force now
        (``fastconv.config``) are the plan's for good.

    Raises
    ------
    ValueError, TypeError
        For malformed arguments, as the plain functions.
    MemoryError
        When a forced strategy, or every strategy, exceeds the memory budget.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> p = fastconv.plan("forward", (8, 3, 32, 32), (16, 3, 3, 3), padding=1)
    >>> x = np.ones((8, 3, 32, 32), np.float32); w = np.ones((16, 3, 3, 3), np.float32)
    >>> p(x, w).shape
    (8, 16, 32, 32)
    >>> infer = p.with_weight(w)     # weight transforms made once, kept
    >>> bool(np.array_equal(infer(x), p(x, w)))
    True
    """
    return Plan(op, (input_shape, weight_shape, stride, padding, dilation, groups, flip,
                     dtype, strategy, padding_mode, ndim), get_config())


@shared_parameters(CONV)
def plan_layer(input_shape: Shape, weight_shape: Shape, stride: PerAxis = 1,
               padding: Padding = 0, dilation: PerAxis = 1, groups: int = 1, *,
               flip: bool = False, dtype: DTypeLike = np.float32, strategy: str = "auto",
               padding_mode: PaddingMode = "zeros") -> LayerPlan:
    """Plans of a layer's three ops (a :class:`LayerPlan`), each decided separately.

    Parameters
    ----------
    input_shape : tuple of int
        ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``.
    weight_shape : tuple of int
        ``(C_out, C_in / groups, *kernel)``.
    dtype : dtype-like, default float32
        The compute dtype.

    Returns
    -------
    LayerPlan
        ``.forward``, ``.grad_input``, ``.grad_weight`` and ``.backward``.

    Examples
    --------
    >>> import fastconv
    >>> lp = fastconv.plan_layer((8, 3, 32, 32), (16, 3, 3, 3), padding=1)
    >>> sorted({lp.forward.op, lp.grad_input.op, lp.grad_weight.op})
    ['forward', 'grad_input', 'grad_weight']
    """
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, flip=flip,
              dtype=dtype, strategy=strategy, padding_mode=padding_mode)
    return LayerPlan(*(plan(op, input_shape, weight_shape, **kw) for op in OPS))
