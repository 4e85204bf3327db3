"""Public convolution functions: validate (ConvSpec), prepare, dispatch, run."""
from __future__ import annotations

import copy
import math
import sys

import numpy as np

from . import _padmode
from . import _prepare as prep
from ._config import get_config
from ._dispatch import check_available, choose_run, decide, explain_decision, run_budget, total_workspace
from ._spec import make_spec, result_dtype
from ._strategies import get as get_strategy

_SHARED_DOC = """
    stride : int or tuple of int, default 1
        Step of the kernel along each spatial axis (>= 1).
    padding : int, tuple, or {"valid", "same", "full"}, default 0
        Zeros added to both sides of each axis: one int for all axes, one int per
        axis, or one ``(before, after)`` pair per axis. "same" (stride 1 only)
        keeps the spatial size, putting the odd zero after; "full" pads
        ``dilation*(K-1)`` on both sides.
    dilation : int or tuple of int, default 1
        Spacing between kernel taps (>= 1).
    groups : int, default 1
        Channels are split into ``groups`` independent convolutions;
        ``groups == C_in`` with ``C_out == C_in`` is a depthwise convolution.
    flip : bool, default False
        False: cross-correlation (what CNN layers compute). True: true
        convolution (kernel flipped along every spatial axis).
    strategy : {"auto", "direct", "im2col", "fft", "winograd"}, default "auto"
        Force an algorithm; "auto" lets the dispatcher decide (see
        :func:`fastconv.explain`).
    padding_mode : {"zeros", "reflect", "replicate", "circular"}, default "zeros"
        What the padding holds, as ``torch.nn.Conv2d``'s ``padding_mode``: zeros,
        the input mirrored at its edge (the edge not repeated), the edge value,
        or the input wrapped around. Other than zeros, the input is padded
        explicitly and convolved without padding (a padded copy of the input);
        reflect needs padding smaller than the input, circular at most its size."""


def _empty_batch(op, spec, strategy, shape):
    """Zeros of ``shape`` for a zero-size batch (as PyTorch), after checking ``strategy``."""
    decide(op, spec, strategy)
    return np.zeros(shape, dtype=spec.dtype)


# float32's largest finite value, with a margin for the rounding of the sums.
_F32_SAFE = float(np.finfo(np.float32).max) / 64


def _fft_factor(op, spec, n_threads):
    """Bound on a float32 FFT's values, per unit of max|a| * max|b|.

    A transform's coefficients are bounded by the sum of |values| it transforms;
    the product of two spectra summed over the contracted channels, before the
    inverse transform's 1/n, bounds every intermediate.
    """
    n = math.prod(p + d * (k - 1) for p, k, d in zip(spec.padded_spatial, spec.kernel,
                                                        spec.dilation))
    terms = {"forward": spec.in_channels_per_group * spec.kernel_size,
             "grad_input": spec.out_channels_per_group * spec.kernel_size,
             "grad_weight": spec.batch * math.prod(spec.out_spatial)}[op]
    return float(n) * float(terms)


def _winograd_factor(op, spec, n_threads):
    """Bound on winograd's values, per unit of max|a| * max|b| (its transforms
    grow them; see ``WinogradStrategy.overflow_factor``)."""
    return get_strategy("winograd").overflow_factor(spec, op, n_threads)


# Strategies whose float32 intermediates can overflow where the exact result is
# finite: (their bound per unit of max|a| * max|b|, the option that keeps the
# dispatcher away from them).
_OVERFLOW_GUARDS = {
    "fft": (_fft_factor, {"allow_fft": False}),
    # (a tolerance below every tile's error estimate excludes float32 winograd)
    "winograd": (_winograd_factor, {"winograd_rtol": sys.float_info.min}),
}


def _max_abs(a):
    """max |a| (two reductions, no temporary)."""
    return max(abs(float(np.max(a))), abs(float(np.min(a))))


def _choose(op, spec, strategy, a, b):
    """:func:`choose_run` (strategy, threads), but "auto" never picks a float32
    FFT or winograd where its intermediates could overflow.

    A cheap bound from the operands' largest magnitudes decides: the
    strategy's growth factor times ``max|a| * max|b|`` within float32's range
    (with a margin). A forced strategy runs as asked.
    """
    s, n = choose_run(op, spec, strategy)
    if (s.name not in _OVERFLOW_GUARDS or spec.dtype != np.float32 or strategy != "auto"
            or get_config().strategy != "auto"):
        return s, n
    ma, mb = _max_abs(a), _max_abs(b)
    if not (np.isfinite(ma) and np.isfinite(mb)):
        return s, n  # NaN/Inf: the exact result is not finite either
    from ._config import config

    avoid = {}
    while s.name in _OVERFLOW_GUARDS:
        factor, option = _OVERFLOW_GUARDS[s.name]
        if ma * mb * factor(op, spec, n) <= _F32_SAFE:
            break
        avoid.update(option)
        with config(**avoid):
            s, n = choose_run(op, spec, strategy)
    return s, n


def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False,
         strategy="auto", padding_mode="zeros"):
    """N-d convolution layer forward pass; N = ``weight.ndim - 2`` (1, 2 or 3).

    Parameters
    ----------
    x : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
    weight : array_like, shape (C_out, C_in / groups, *kernel)
    bias : array_like, shape (C_out,), optional
    {shared}

    Returns
    -------
    y : ndarray, shape (N, C_out, *out_spatial) or (C_out, *out_spatial)
        dtype ``np.result_type(x, weight, bias)``, at least float32. Spatial sizes
        are ``(I + pad_before + pad_after - dilation*(K-1) - 1) // stride + 1``.

    Notes
    -----
    NaN and Inf propagate. With the FFT strategy, one NaN or Inf in an input map
    spreads over that whole output map; use ``fastconv.config(allow_fft=False)``
    where that matters. With winograd it spreads over the output tiles it touches.
    """
    if _padmode.check_mode(padding_mode) != "zeros":
        return _padmode.conv(conv, x, weight, bias, stride, padding, dilation, groups, flip,
                             strategy, padding_mode)
    x = prep.as_array(x, "x")
    weight = prep.as_array(weight, "weight")
    b = None if bias is None else prep.as_array(bias, "bias")
    dts = [x.dtype, weight.dtype] + ([] if b is None else [b.dtype])
    spec = make_spec(x.shape, weight.shape, stride, padding, dilation, groups, flip=flip,
                     dtype=result_dtype(*dts))
    if b is not None and b.shape != (spec.out_channels,):
        raise ValueError(
            f"bias must have shape ({spec.out_channels},) (one value per output channel), "
            f"got shape {b.shape}"
        )
    check_available(math.prod(spec.output_shape) * spec.itemsize, "output", spec)
    if spec.batch == 0:
        return _empty_batch("forward", spec, strategy, spec.output_shape)
    s, n = _choose("forward", spec, strategy, x, weight)
    with run_budget(s, spec, "forward"):
        y5 = s.run("forward", spec, prep.input5(x, spec, s), prep.weight5(weight, spec), n)
    if b is not None:
        y5 += b.astype(spec.dtype).reshape(1, -1, 1, 1, 1)
    return y5.reshape(spec.output_shape)


conv.__doc__ = conv.__doc__.format(shared=_SHARED_DOC.strip())


def _fixed(ndim, name):
    def f(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False,
          strategy="auto", padding_mode="zeros"):
        w = prep.as_array(weight, "weight")
        if w.ndim != ndim + 2:
            raise ValueError(
                f"{name}: weight must have {ndim + 2} dimensions (C_out, C_in/groups, "
                f"{', '.join('K' + a for a in 'DHW'[3 - ndim:])}), got shape {w.shape}"
            )
        return conv(x, w, bias, stride, padding, dilation, groups, flip=flip, strategy=strategy,
                    padding_mode=padding_mode)

    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"""{ndim}-D convolution layer forward pass (see :func:`fastconv.conv`).

    Parameters
    ----------
    x : array_like, shape (N, C_in, {', '.join('DHW'[3 - ndim:])}) or without N
    weight : array_like, shape (C_out, C_in / groups, {', '.join('K' + a for a in 'DHW'[3 - ndim:])})
    bias : array_like, shape (C_out,), optional
    {_SHARED_DOC.strip()}

    Returns
    -------
    y : ndarray, shape (N, C_out, *out_spatial) or without N
    """
    return f


conv1d = _fixed(1, "conv1d")
conv2d = _fixed(2, "conv2d")
conv3d = _fixed(3, "conv3d")


def _check_grad_output(gy, spec):
    if gy.shape != spec.output_shape:
        raise ValueError(
            f"grad_output must have the output shape {spec.output_shape} (input "
            f"{spec.input_shape}, weight {spec.weight_shape}), got shape {gy.shape}"
        )


def grad_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
               flip=False, strategy="auto", ndim=None, padding_mode="zeros"):
    """Gradient of the loss with respect to the input of a convolution.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of the forward input, ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``.
    weight : array_like, shape (C_out, C_in / groups, *kernel)
    grad_output : array_like
        dL/dy, of the forward output's shape.
    {shared}

    Returns
    -------
    grad_x : ndarray of shape ``input_shape``
    """
    if _padmode.check_mode(padding_mode) != "zeros":
        return _padmode.grad_input(grad_input, input_shape, weight, grad_output, stride, padding,
                                   dilation, groups, flip, strategy, ndim, padding_mode)
    weight = prep.as_array(weight, "weight")
    gy = prep.as_array(grad_output, "grad_output")
    spec = make_spec(input_shape, weight.shape, stride, padding, dilation, groups, flip=flip,
                     dtype=result_dtype(weight.dtype, gy.dtype), ndim=ndim)
    _check_grad_output(gy, spec)
    check_available(math.prod(spec.input_shape) * spec.itemsize, "grad_input", spec)
    if spec.batch == 0:
        return _empty_batch("grad_input", spec, strategy, spec.input_shape)
    s, n = _choose("grad_input", spec, strategy, gy, weight)
    with run_budget(s, spec, "grad_input"):
        gx = s.run("grad_input", spec, prep.grad_output5(gy, spec), prep.weight5(weight, spec),
                   n)
    return prep.unpad_grad(gx, spec, s).reshape(spec.input_shape)


def grad_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                flip=False, strategy="auto", ndim=None, padding_mode="zeros"):
    """Gradient of the loss with respect to the weight of a convolution.

    Parameters
    ----------
    input : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
    weight_shape : tuple of int
        ``(C_out, C_in / groups, *kernel)``.
    grad_output : array_like
        dL/dy, of the forward output's shape.
    {shared}

    Returns
    -------
    grad_w : ndarray of shape ``weight_shape``
    """
    if _padmode.check_mode(padding_mode) != "zeros":
        return _padmode.grad_weight(grad_weight, input, weight_shape, grad_output, stride,
                                    padding, dilation, groups, flip, strategy, ndim,
                                    padding_mode)
    x = prep.as_array(input, "input")
    gy = prep.as_array(grad_output, "grad_output")
    spec = make_spec(x.shape, weight_shape, stride, padding, dilation, groups, flip=flip,
                     dtype=result_dtype(x.dtype, gy.dtype), ndim=ndim)
    _check_grad_output(gy, spec)
    if spec.batch == 0:
        return _empty_batch("grad_weight", spec, strategy, spec.weight_shape)
    s, n = _choose("grad_weight", spec, strategy, x, gy)
    with run_budget(s, spec, "grad_weight"):
        gw5 = s.run("grad_weight", spec, prep.input5(x, spec, s), prep.grad_output5(gy, spec),
                    n)
    if spec.flip:
        gw5 = prep.flip_kernel(gw5)
    return np.ascontiguousarray(gw5).reshape(spec.weight_shape)


grad_input.__doc__ = grad_input.__doc__.format(shared=_SHARED_DOC.strip())
grad_weight.__doc__ = grad_weight.__doc__.format(shared=_SHARED_DOC.strip())


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


def conv_backward(x, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  flip=False, strategy="auto", needs=_NEEDS, padding_mode="zeros"):
    """Both backward passes of a convolution layer at once.

    Parameters
    ----------
    x : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
    weight : array_like, shape (C_out, C_in / groups, *kernel)
    grad_output : array_like, the forward output's shape
    {shared}
    needs : sequence of {{"input", "weight", "bias"}}, default all three
        The gradients to compute (like torch's ``output_mask``); the others
        are not computed and returned as None (a first layer needs no grad_x).

    Returns
    -------
    grad_x : ndarray, shape of ``x``, or None
    grad_w : ndarray, shape of ``weight``, or None
    grad_b : ndarray, shape (C_out,), or None
        Gradient for a bias, ``grad_output`` summed over batch and space.
    """
    if _padmode.check_mode(padding_mode) != "zeros":
        return _padmode.conv_backward(conv_backward, x, weight, grad_output, stride, padding,
                                      dilation, groups, flip, strategy, needs, padding_mode)
    x = prep.as_array(x, "x")
    weight = prep.as_array(weight, "weight")
    gy = prep.as_array(grad_output, "grad_output")
    spec = make_spec(x.shape, weight.shape, stride, padding, dilation, groups, flip=flip,
                     dtype=result_dtype(x.dtype, weight.dtype, gy.dtype))
    _check_grad_output(gy, spec)
    want = _check_needs(needs)
    if "input" in want:
        check_available(math.prod(spec.input_shape) * spec.itemsize, "grad_input", spec)
    if spec.batch == 0:
        return (_empty_batch("grad_input", spec, strategy, spec.input_shape)
                if "input" in want else None,
                _empty_batch("grad_weight", spec, strategy, spec.weight_shape)
                if "weight" in want else None,
                np.zeros(spec.out_channels, dtype=spec.dtype) if "bias" in want else None)
    s_in, n_in = _choose("grad_input", spec, strategy, gy, weight) if "input" in want else (
        None, None)
    s_w, n_w = _choose("grad_weight", spec, strategy, x, gy) if "weight" in want else (
        None, None)
    gy5 = prep.grad_output5(gy, spec)
    n = max(n_in or 1, n_w or 1)
    gx = gw5 = None
    # The fused pass (FFT reuses its transforms) holds more at once than either
    # op alone: take it only when that, padded copies included, fits the budget.
    if (s_in is not None and s_in is s_w and hasattr(s_in, "backward")
            and total_workspace(s_in, spec, "backward") <= get_config().memory_budget):
        with run_budget(s_in, spec, "backward"):
            gx, gw5 = s_in.backward(spec, prep.input5(x, spec, s_w), prep.weight5(weight, spec),
                                    gy5, n)
        gx = prep.unpad_grad(gx, spec, s_in)
    else:
        # one op after the other, each holding only its own padded copy, so
        # the peak stays within the budget the dispatcher checked per op
        if s_in is not None:
            with run_budget(s_in, spec, "grad_input"):
                gx = prep.unpad_grad(s_in.run("grad_input", spec, gy5,
                                              prep.weight5(weight, spec), n_in), spec, s_in)
        if s_w is not None:
            with run_budget(s_w, spec, "grad_weight"):
                gw5 = s_w.run("grad_weight", spec, prep.input5(x, spec, s_w), gy5, n_w)
    if gw5 is not None:
        if spec.flip:
            gw5 = prep.flip_kernel(gw5)
        gw5 = np.ascontiguousarray(gw5).reshape(spec.weight_shape)
    if gx is not None:
        gx = gx.reshape(spec.input_shape)
    gb = gy5.sum(axis=(0, 2, 3, 4)) if "bias" in want else None
    return gx, gw5, gb


conv_backward.__doc__ = conv_backward.__doc__.format(shared=_SHARED_DOC.strip())


def explain(op, input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, *,
            flip=False, dtype=np.float32, strategy="auto"):
    """Say which strategy ``op`` would use for this problem, and why.

    Parameters
    ----------
    op : {"forward", "grad_input", "grad_weight"}
    input_shape, weight_shape : tuple of int
    dtype : dtype-like, default float32

    Returns
    -------
    Decision
        ``.strategy``, ``.decided_by``, ``.detail`` and ``.candidates`` (each with
        its estimated or measured seconds, workspace bytes, or why it was excluded).
        ``print(decision)`` gives a readable summary. When no strategy fits the
        memory budget, ``.strategy`` is None, ``.decided_by`` is "nothing-fits"
        and ``.detail`` says why (a call would raise MemoryError).
    """
    spec = make_spec(input_shape, weight_shape, stride, padding, dilation, groups, flip=flip,
                     dtype=result_dtype(dtype))
    # a copy: the dispatcher remembers its decisions, callers may modify theirs
    return copy.deepcopy(explain_decision(op, spec, strategy))
