"""Public convolution functions: validate (ConvSpec), prepare, dispatch, run."""
from __future__ import annotations

import copy

import numpy as np

from . import _padmode
from . import _prepare as prep
from ._dispatch import Decision, explain_decision
from ._docstrings import CONV, shared_parameters
from ._plan import _NEEDS, _check_needs, check_shape, layer_backward
from ._plan_memo import cached
from ._spec import make_spec, result_dtype
from ._typing import ArrayLike, DTypeLike, Needs, Op, Padding, PaddingMode, PerAxis, Shape


@shared_parameters(CONV)
def conv(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride: PerAxis = 1,
         padding: Padding = 0, dilation: PerAxis = 1, groups: int = 1, *, flip: bool = False,
         strategy: str = "auto", padding_mode: PaddingMode = "zeros") -> np.ndarray:
    """N-d convolution layer forward pass; N = ``weight.ndim - 2`` (1, 2 or 3).

    Parameters
    ----------
    x : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
        Input; without the batch axis the result has none either.
    weight : array_like, shape (C_out, C_in / groups, *kernel)
        Kernels; the number of its axes sets the number of spatial axes.
    bias : array_like, shape (C_out,), optional
        Added to every output position of its channel.

    Returns
    -------
    y : ndarray, shape (N, C_out, *out_spatial) or (C_out, *out_spatial)
        dtype ``np.result_type(x, weight, bias)``, at least float32. Spatial sizes
        are ``(I + pad_before + pad_after - dilation*(K-1) - 1) // stride + 1``.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument or shapes that do not fit together; the
        message names the argument and the shapes.
    MemoryError
        When a forced strategy's workspace exceeds the memory budget, no
        strategy fits it, or the result is larger than the memory available.

    Notes
    -----
    NaN and Inf propagate. With the FFT strategy, one NaN or Inf in an input map
    spreads over that whole output map; use ``fastconv.config(allow_fft=False)``
    where that matters. With winograd it spreads over the output tiles it touches.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(5.0).reshape(1, 1, 5)
    >>> fastconv.conv(x, np.array([[[1.0, 0.0, -1.0]]]))
    array([[[-2., -2., -2.]]])
    >>> fastconv.conv(x, np.array([[[1.0, 0.0, -1.0]]]), padding="same", flip=True)
    array([[[ 1.,  2.,  2.,  2., -3.]]])
    """
    x = prep.as_array(x, "x")
    weight = prep.as_array(weight, "weight")
    b = None if bias is None else prep.as_array(bias, "bias")
    dtype = result_dtype(x.dtype, weight.dtype) if b is None else result_dtype(
        x.dtype, weight.dtype, b.dtype)
    return cached("forward", x.shape, weight.shape, stride, padding, dilation, groups, flip,
                  dtype, strategy, padding_mode)(x, weight, bias=b)



def _fixed(ndim, name):
    def f(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride: PerAxis = 1,
          padding: Padding = 0, dilation: PerAxis = 1, groups: int = 1, *, flip: bool = False,
          strategy: str = "auto", padding_mode: PaddingMode = "zeros") -> np.ndarray:
        w = prep.as_array(weight, "weight")
        if w.ndim != ndim + 2:
            raise ValueError(
                f"{name}: weight must have {ndim + 2} dimensions (C_out, C_in/groups, "
                f"{', '.join('K' + a for a in 'DHW'[3 - ndim:])}), got shape {w.shape}"
            )
        return conv(x, w, bias, stride, padding, dilation, groups, flip=flip, strategy=strategy,
                    padding_mode=padding_mode)

    f.__name__ = f.__qualname__ = name
    axes = ", ".join("DHW"[3 - ndim:])
    kernel = ", ".join("K" + a for a in "DHW"[3 - ndim:])
    f.__doc__ = f"""{ndim}-D convolution layer forward pass (:func:`fastconv.conv` for {ndim}-D).

    Parameters
    ----------
    x : array_like, shape (N, C_in, {axes}) or (C_in, {axes})
        Input; without the batch axis the result has none either.
    weight : array_like, shape (C_out, C_in / groups, {kernel})
        Kernels.
    bias : array_like, shape (C_out,), optional
        Added to every output position of its channel.

    Returns
    -------
    y : ndarray, shape (N, C_out, *out_spatial) or (C_out, *out_spatial)
        dtype and sizes as :func:`fastconv.conv` gives them.

    Raises
    ------
    TypeError, ValueError
        As :func:`fastconv.conv`, and for a weight without {ndim + 2} dimensions.
    MemoryError
        As :func:`fastconv.conv`.
    """
    shared_parameters(CONV)(f)
    return f


conv1d = _fixed(1, "conv1d")
conv2d = _fixed(2, "conv2d")
conv3d = _fixed(3, "conv3d")


@shared_parameters(CONV)
def grad_input(input_shape: Shape, weight: ArrayLike, grad_output: ArrayLike,
               stride: PerAxis = 1, padding: Padding = 0, dilation: PerAxis = 1,
               groups: int = 1, *, flip: bool = False, strategy: str = "auto",
               ndim: int | None = None, padding_mode: PaddingMode = "zeros") -> np.ndarray:
    """Gradient of the loss with respect to the input of a convolution.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of the forward input, ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``.
    weight : array_like, shape (C_out, C_in / groups, *kernel)
        The forward pass's kernels.
    grad_output : array_like
        dL/dy, of the forward output's shape.

    Returns
    -------
    grad_x : ndarray of shape ``input_shape``
        dL/dx, in the dtype of ``weight`` and ``grad_output`` (at least float32).

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, or a ``grad_output`` whose shape is not the
        forward output's.
    MemoryError
        As :func:`fastconv.conv`.

    Examples
    --------
    The input gradient of a sum of outputs counts the windows each input is in:

    >>> import numpy as np, fastconv
    >>> fastconv.grad_input((1, 1, 5), np.ones((1, 1, 3)), np.ones((1, 1, 3)))
    array([[[1., 2., 3., 2., 1.]]])
    """
    weight = prep.as_array(weight, "weight")
    gy = prep.as_array(grad_output, "grad_output")
    return cached("grad_input", input_shape, weight.shape, stride, padding, dilation, groups,
                  flip, result_dtype(weight.dtype, gy.dtype), strategy, padding_mode,
                  ndim)(weight, gy)


@shared_parameters(CONV)
def grad_weight(input: ArrayLike, weight_shape: Shape, grad_output: ArrayLike,
                stride: PerAxis = 1, padding: Padding = 0, dilation: PerAxis = 1,
                groups: int = 1, *, flip: bool = False, strategy: str = "auto",
                ndim: int | None = None, padding_mode: PaddingMode = "zeros") -> np.ndarray:
    """Gradient of the loss with respect to the weight of a convolution.

    Parameters
    ----------
    input : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
        The forward pass's input.
    weight_shape : tuple of int
        ``(C_out, C_in / groups, *kernel)``.
    grad_output : array_like
        dL/dy, of the forward output's shape.

    Returns
    -------
    grad_w : ndarray of shape ``weight_shape``
        dL/dw, summed over the batch, in the dtype of ``input`` and
        ``grad_output`` (at least float32).

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, or a ``grad_output`` whose shape is not the
        forward output's.
    MemoryError
        As :func:`fastconv.conv`.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(5.0).reshape(1, 1, 5)
    >>> fastconv.grad_weight(x, (1, 1, 3), np.ones((1, 1, 3)))
    array([[[3., 6., 9.]]])
    """
    x = prep.as_array(input, "input")
    gy = prep.as_array(grad_output, "grad_output")
    return cached("grad_weight", x.shape, weight_shape, stride, padding, dilation, groups,
                  flip, result_dtype(x.dtype, gy.dtype), strategy, padding_mode, ndim)(x, gy)



@shared_parameters(CONV)
def conv_backward(x: ArrayLike, weight: ArrayLike, grad_output: ArrayLike,
                  stride: PerAxis = 1, padding: Padding = 0, dilation: PerAxis = 1,
                  groups: int = 1, *, flip: bool = False, strategy: str = "auto",
                  needs: Needs = _NEEDS, padding_mode: PaddingMode = "zeros",
                  ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Both backward passes of a convolution layer at once.

    Each op picks its own strategy; when both pick FFT, one fused pass reuses
    the transform of ``grad_output`` (if it fits the memory budget).

    Parameters
    ----------
    x : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
        The forward pass's input.
    weight : array_like, shape (C_out, C_in / groups, *kernel)
        The forward pass's kernels.
    grad_output : array_like, the forward output's shape
        dL/dy.

    Returns
    -------
    grad_x : ndarray, shape of ``x``, or None
        dL/dx (None unless "input" is in ``needs``).
    grad_w : ndarray, shape of ``weight``, or None
        dL/dw (None unless "weight" is in ``needs``).
    grad_b : ndarray, shape (C_out,), or None
        Gradient for a bias, ``grad_output`` summed over batch and space.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, an unknown name in ``needs``, or a
        ``grad_output`` whose shape is not the forward output's.
    MemoryError
        As :func:`fastconv.conv`.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x, w = np.ones((2, 3, 8, 8)), np.ones((4, 3, 3, 3))
    >>> gx, gw, gb = fastconv.conv_backward(x, w, np.ones((2, 4, 6, 6)))
    >>> gx.shape, gw.shape, gb
    ((2, 3, 8, 8), (4, 3, 3, 3), array([72., 72., 72., 72.]))
    >>> fastconv.conv_backward(x, w, np.ones((2, 4, 6, 6)), needs=("bias",))[:2]
    (None, None)
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
    check_shape("grad_output", gy.shape, spec.output_shape, spec)
    want = _check_needs(needs)
    args = (x.shape, weight.shape, stride, padding, dilation, groups, flip, dtype, strategy,
            "zeros")
    return layer_backward(spec, cached("grad_input", *args) if "input" in want else None,
                          cached("grad_weight", *args) if "weight" in want else None,
                          x, weight, gy, want)



@shared_parameters(CONV)
def explain(op: Op, input_shape: Shape, weight_shape: Shape, stride: PerAxis = 1,
            padding: Padding = 0, dilation: PerAxis = 1, groups: int = 1, *,
            flip: bool = False, dtype: DTypeLike = np.float32,
            strategy: str = "auto") -> Decision:
    """Say which strategy ``op`` would use for this problem, and why.

    Nothing is computed: the dispatcher decides as a call with these arguments
    would, under the options in force here (:func:`fastconv.get_config`).

    Parameters
    ----------
    op : {"forward", "grad_input", "grad_weight"}
        The op a call would run; :func:`fastconv.conv_backward` runs
        "grad_input" and "grad_weight", each deciding for itself.
    input_shape : tuple of int
        ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``: the forward input's shape.
    weight_shape : tuple of int
        ``(C_out, C_in / groups, *kernel)``.
    dtype : dtype-like, default float32
        The dtype the call would compute in (float32 or float64; others are
        promoted as the operands would be).

    Returns
    -------
    Decision
        ``.strategy``, ``.decided_by``, ``.detail``, ``.threads``, ``.level``
        and ``.candidates`` (each with its estimated or measured seconds,
        workspace bytes, or why it was excluded). ``print(decision)`` gives a
        readable summary. When no strategy fits the memory budget,
        ``.strategy`` is None, ``.decided_by`` is "nothing-fits" and
        ``.detail`` says why (a call would raise MemoryError).

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, an unknown ``op`` or ``strategy``.

    Examples
    --------
    >>> import fastconv
    >>> d = fastconv.explain("forward", (8, 3, 32, 32), (16, 3, 3, 3), strategy="im2col")
    >>> d.strategy, d.decided_by
    ('im2col', 'argument')
    >>> d = fastconv.explain("grad_weight", (8, 3, 32, 32), (16, 3, 3, 3))
    >>> d.strategy in fastconv.strategies()
    True
    """
    spec = make_spec(input_shape, weight_shape, stride, padding, dilation, groups, flip=flip,
                     dtype=result_dtype(dtype))
    # a copy: the dispatcher remembers its decisions, callers may modify theirs
    return copy.deepcopy(explain_decision(op, spec, strategy))
