"""Public convolution functions: validate (ConvSpec), prepare, dispatch, run."""
from __future__ import annotations

import copy

import numpy as np

from . import _padmode
from . import _prepare as prep
from ._config import _current
from ._dispatch import explain_decision, total_workspace
from ._plan import _NEEDS, _check_needs, cached
from ._spec import make_spec, result_dtype

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
    x = prep.as_array(x, "x")
    weight = prep.as_array(weight, "weight")
    b = None if bias is None else prep.as_array(bias, "bias")
    dtype = result_dtype(x.dtype, weight.dtype) if b is None else result_dtype(
        x.dtype, weight.dtype, b.dtype)
    return cached("forward", x.shape, weight.shape, stride, padding, dilation, groups, flip,
                  dtype, strategy, padding_mode)(x, weight, bias=b)


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
    weight = prep.as_array(weight, "weight")
    gy = prep.as_array(grad_output, "grad_output")
    return cached("grad_input", input_shape, weight.shape, stride, padding, dilation, groups,
                  flip, result_dtype(weight.dtype, gy.dtype), strategy, padding_mode,
                  ndim)(weight, gy)


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
    x = prep.as_array(input, "input")
    gy = prep.as_array(grad_output, "grad_output")
    return cached("grad_weight", x.shape, weight_shape, stride, padding, dilation, groups,
                  flip, result_dtype(x.dtype, gy.dtype), strategy, padding_mode, ndim)(x, gy)


grad_input.__doc__ = grad_input.__doc__.format(shared=_SHARED_DOC.strip())
grad_weight.__doc__ = grad_weight.__doc__.format(shared=_SHARED_DOC.strip())


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
    dtype = result_dtype(x.dtype, weight.dtype, gy.dtype)
    spec = make_spec(x.shape, weight.shape, stride, padding, dilation, groups, flip=flip,
                     dtype=dtype)
    _check_grad_output(gy, spec)
    want = _check_needs(needs)
    args = (x.shape, weight.shape, stride, padding, dilation, groups, flip, dtype, strategy,
            "zeros")
    p_in = cached("grad_input", *args) if "input" in want else None
    p_w = cached("grad_weight", *args) if "weight" in want else None
    gx = gw = None
    if (spec.batch and p_in is not None and p_w is not None and p_in.strategy == p_w.strategy
            and hasattr(p_in._strategy, "backward")):
        x5, w5, gy5 = prep.input5(x, spec), prep.weight5(weight, spec), prep.grad_output5(gy, spec)
        s_in, n_in = p_in._chosen(gy5, w5)
        s_w, n_w = p_w._chosen(x5, gy5)
        # The fused pass (FFT reuses its transforms) holds more at once than either
        # op alone: take it only when that fits the budget.
        if (s_in is s_w and hasattr(s_in, "backward")
                and total_workspace(s_in, spec, "backward") <= p_in.options.memory_budget):
            token = _current.set(p_in.options)
            try:
                gx, gw5 = s_in.backward(spec, x5, w5, gy5, max(n_in, n_w))
            finally:
                _current.reset(token)
            gx = gx.reshape(spec.input_shape)
            if spec.flip:
                gw5 = prep.flip_kernel(gw5)
            gw = np.ascontiguousarray(gw5).reshape(spec.weight_shape)
    if gx is None and gw is None:
        # one op after the other, each holding only its own workspace, so the peak
        # stays within the budget the dispatcher checked per op
        gx = None if p_in is None else p_in(weight, gy)
        gw = None if p_w is None else p_w(x, gy)
    gb = prep.grad_output5(gy, spec).sum(axis=(0, 2, 3, 4)) if "bias" in want else None
    return gx, gw, gb


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
