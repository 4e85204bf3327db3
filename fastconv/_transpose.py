"""Transposed convolution: the adjoint of a convolution, in PyTorch's argument order.

A transposed convolution of ``x`` with ``weight`` is the grad_input of the
convolution that maps the transposed output back to ``x``: its weight
``(C_in, C_out / groups, *kernel)`` is, read as a convolution weight, exactly
``(C_out_conv, C_in_conv / groups, *kernel)``. Its two backward passes are the
other two convolution ops with the roles swapped:

==========================  =============================================
transposed op               convolution op it runs
==========================  =============================================
forward(x, w)               grad_input(y_shape, w, grad_output=x)
grad_input(gy, w)           forward(gy, w)
grad_weight(x, gy)          grad_weight(input=gy, grad_output=x)
==========================  =============================================

so every strategy runs every transposed op.
"""
from __future__ import annotations

import numpy as np

from . import _api
from . import _prepare as prep
from ._docstrings import TRANSPOSE, shared_parameters
from ._spec import _sequence, conv_transpose_output_size, result_dtype
from ._typing import ArrayLike, Needs, PerAxis, Shape, TransposePadding

__all__ = ["conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "conv_transpose_grad_input", "conv_transpose_grad_weight",
           "conv_transpose_backward", "conv_transpose_output_shape"]

def _per_axis(v, ndim, name, minimum):
    t = (v,) * ndim if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
    try:
        # (a set or dict would give its keys in some order, bytes their codes)
        t = _sequence(t)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {ndim} ints, got {v!r}") from None
    if len(t) != ndim or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                                 for a in t):
        raise TypeError(f"{name} must be an int or a tuple of {ndim} ints, got {v!r}")
    if any(a < minimum for a in t):
        raise ValueError(f"{name} must be >= {minimum} on every axis, got {v!r}")
    return tuple(int(a) for a in t)


def _pairs(padding, ndim):
    if isinstance(padding, str):
        raise ValueError(
            f"padding: a transposed convolution takes ints or (before, after) pairs, "
            f"not {padding!r} (the output size would be ambiguous)")
    if isinstance(padding, (tuple, list)) and any(isinstance(p, (tuple, list)) for p in padding):
        if len(padding) != ndim:
            raise ValueError(f"padding: need {ndim} (before, after) pairs, got {padding!r}")
        pairs = tuple(tuple(_per_axis(p, 2, "padding pair", 0)) for p in padding)
    else:
        pairs = tuple((p, p) for p in _per_axis(padding, ndim, "padding", 0))
    return pairs


def _geometry(x_shape, w_shape, stride, padding, output_padding, dilation, groups):
    """(conv input shape, pads, stride, dilation, extra): the convolution this transposes.

    ``extra`` per axis is ``output_padding // stride``: output padding of a
    stride or more (allowed when smaller than the dilation) adds output rows
    that no input reaches; the convolution then has ``extra`` more outputs
    along that axis, which are zeros in ``x``.
    """
    w_shape = tuple(int(s) for s in w_shape)
    ndim = len(w_shape) - 2
    if ndim not in (1, 2, 3):
        raise ValueError(f"weight must have 3, 4 or 5 dimensions (C_in, C_out/groups, *kernel), "
                         f"got shape {w_shape}")
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) not in (ndim + 1, ndim + 2):
        raise ValueError(f"x must have {ndim + 2} dimensions (N, C_in, *spatial) or {ndim + 1} "
                         f"(unbatched) for weight of shape {w_shape}, got shape {x_shape}")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    c_in = x_shape[-ndim - 1]
    if c_in != w_shape[0]:
        raise ValueError(f"x has {c_in} channels (shape {x_shape}) but weight of shape {w_shape} "
                         f"expects {w_shape[0]} (weight is (C_in, C_out/groups, *kernel))")
    if w_shape[0] % groups:
        raise ValueError(f"groups={groups} must divide the input channels {w_shape[0]} "
                         f"(weight shape {w_shape})")
    stride = _per_axis(stride, ndim, "stride", 1)
    dilation = _per_axis(dilation, ndim, "dilation", 1)
    opad = _per_axis(output_padding, ndim, "output_padding", 0)
    pads = _pairs(padding, ndim)
    for a, (op, s, d) in enumerate(zip(opad, stride, dilation)):
        if op >= s and op >= d:
            raise ValueError(f"output_padding {opad} must be smaller than the stride {stride} "
                             f"or the dilation {dilation} on every axis (axis {a})")
    out = []
    for a in range(ndim):
        i, k = x_shape[len(x_shape) - ndim + a], w_shape[2 + a]
        n = conv_transpose_output_size(i, k, stride[a], pads[a][0], pads[a][1], opad[a],
                                       dilation[a])
        if n < 1:
            raise ValueError(f"the transposed output would be empty on axis {a} (size {n}): "
                             f"x {x_shape}, weight {w_shape}, stride {stride}, padding {pads}, "
                             f"dilation {dilation}")
        out.append(n)
    extra = tuple(op // s for op, s in zip(opad, stride))
    conv_in = x_shape[:-ndim - 1] + (w_shape[1] * groups,) + tuple(out)
    return conv_in, pads, stride, dilation, extra


@shared_parameters(TRANSPOSE)
def conv_transpose_output_shape(input_shape: Shape, weight_shape: Shape,
                                stride: PerAxis = 1, padding: TransposePadding = 0,
                                output_padding: PerAxis = 0, groups: int = 1,
                                dilation: PerAxis = 1) -> Shape:
    """Shape of :func:`conv_transpose`'s result (as ``torch.nn.functional`` computes it).

    Spatial sizes are ``(I - 1)*stride - pad_before - pad_after + dilation*(K - 1)
    + output_padding + 1``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``.
    weight_shape : tuple of int
        ``(C_in, C_out / groups, *kernel)``.

    Returns
    -------
    tuple of int
        ``(N, C_out, *out_spatial)`` (without ``N`` for unbatched input).

    Raises
    ------
    TypeError, ValueError
        For a malformed argument, shapes that do not fit together, or an
        empty output.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.conv_transpose_output_shape((1, 16, 7, 7), (16, 8, 3, 3), stride=2)
    (1, 8, 15, 15)
    >>> fastconv.conv_transpose_output_shape((1, 16, 7, 7), (16, 8, 3, 3), stride=2,
    ...                                      padding=1, output_padding=1)
    (1, 8, 14, 14)
    """
    return _geometry(input_shape, weight_shape, stride, padding, output_padding, dilation,
                     groups)[0]


def _pad_extra(a, extra):
    """``a`` with ``extra`` zeros after each spatial axis (no copy when none)."""
    if not any(extra):
        return a
    ndim = len(extra)
    return np.pad(a, [(0, 0)] * (a.ndim - ndim) + [(0, e) for e in extra])


def _crop_extra(a, extra):
    if not any(extra):
        return a
    ndim = len(extra)
    return np.ascontiguousarray(a[(Ellipsis,) + tuple(slice(0, a.shape[a.ndim - ndim + i] - e)
                                                      for i, e in enumerate(extra))])


@shared_parameters(TRANSPOSE)
def conv_transpose(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
                   stride: PerAxis = 1, padding: TransposePadding = 0,
                   output_padding: PerAxis = 0, groups: int = 1, dilation: PerAxis = 1, *,
                   strategy: str = "auto") -> np.ndarray:
    """N-d transposed convolution, as ``torch.nn.functional.conv_transpose1d/2d/3d``.

    The adjoint of a convolution (its grad_input), with ``weight.ndim - 2``
    spatial axes: it upsamples by ``stride``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
        Input; without the batch axis the result has none either.
    weight : array_like, shape (C_in, C_out / groups, *kernel)
        Kernels, in PyTorch's transposed layout (input channels first).
    bias : array_like, shape (C_out,), optional
        Added to every output position of its channel.

    Returns
    -------
    y : ndarray, shape (N, C_out, *out_spatial) or without N
        See :func:`conv_transpose_output_shape`; dtype as :func:`fastconv.conv`.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument or shapes that do not fit together.
    MemoryError
        As :func:`fastconv.conv`.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.conv_transpose(np.ones((1, 1, 3)), np.ones((1, 1, 2)), stride=2)
    array([[[1., 1., 1., 1., 1., 1.]]])
    """
    x = prep.as_array(x, "x")
    weight = prep.as_array(weight, "weight")
    conv_in, pads, stride, dilation, extra = _geometry(
        x.shape, weight.shape, stride, padding, output_padding, dilation, groups)
    b = None if bias is None else prep.as_array(bias, "bias")
    if b is not None and b.shape != (conv_in[-len(extra) - 1],):
        raise ValueError(f"bias must have shape ({conv_in[-len(extra) - 1]},) (one value per "
                         f"output channel), got shape {b.shape}")
    if b is not None:
        # computed in the dtype of all three inputs, as fastconv.conv does (a
        # float64 bias with float32 x and weight gives float64)
        dtype = result_dtype(x.dtype, weight.dtype, b.dtype)
        if dtype != result_dtype(x.dtype, weight.dtype):
            weight = weight.astype(dtype)
    y = _api.grad_input(conv_in, weight, _pad_extra(x, extra), stride, pads, dilation, groups,
                        strategy=strategy)
    if b is not None:
        y += b.astype(y.dtype).reshape((-1,) + (1,) * len(extra))
    return y


def _fixed(ndim):
    name = f"conv_transpose{ndim}d"

    def f(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, stride: PerAxis = 1,
          padding: TransposePadding = 0, output_padding: PerAxis = 0, groups: int = 1,
          dilation: PerAxis = 1, *, strategy: str = "auto") -> np.ndarray:
        w = prep.as_array(weight, "weight")
        if w.ndim != ndim + 2:
            raise ValueError(f"{name}: weight must have {ndim + 2} dimensions (C_in, "
                             f"C_out/groups, *kernel), got shape {w.shape}")
        return conv_transpose(x, w, bias, stride, padding, output_padding, groups, dilation,
                              strategy=strategy)

    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"""{ndim}-D transposed convolution (:func:`fastconv.conv_transpose` for {ndim}-D).

    ``torch.nn.functional.{name}``'s arguments plus ``strategy=``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
        Input with {ndim} spatial axes; without the batch axis the result has none.
    weight : array_like, shape (C_in, C_out / groups, *kernel)
        Kernels with {ndim} spatial axes.
    bias : array_like, shape (C_out,), optional
        Added to every output position of its channel.

    Returns
    -------
    y : ndarray, shape (N, C_out, *out_spatial) or without N
        See :func:`fastconv.conv_transpose_output_shape`.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument or shapes that do not fit together.
    MemoryError
        As :func:`fastconv.conv`.
    """
    shared_parameters(TRANSPOSE)(f)
    return f


conv_transpose1d, conv_transpose2d, conv_transpose3d = (_fixed(n) for n in (1, 2, 3))


@shared_parameters(TRANSPOSE)
def conv_transpose_grad_input(input_shape: Shape, weight: ArrayLike, grad_output: ArrayLike,
                              stride: PerAxis = 1, padding: TransposePadding = 0,
                              output_padding: PerAxis = 0, groups: int = 1,
                              dilation: PerAxis = 1, *, strategy: str = "auto") -> np.ndarray:
    """Gradient of a transposed convolution with respect to its input.

    It is the forward convolution of ``grad_output`` with ``weight``.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of the transposed convolution's input ``x``.
    weight : array_like, shape (C_in, C_out / groups, *kernel)
        The transposed convolution's kernels.
    grad_output : array_like, the transposed output's shape
        dL/dy.

    Returns
    -------
    grad_x : ndarray of shape ``input_shape``
        dL/dx.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument or shapes that do not fit together.
    MemoryError
        As :func:`fastconv.conv`.
    """
    weight = prep.as_array(weight, "weight")
    gy = prep.as_array(grad_output, "grad_output")
    conv_in, pads, stride, dilation, extra = _geometry(
        input_shape, weight.shape, stride, padding, output_padding, dilation, groups)
    _check_gy(gy, conv_in)
    gx = _api.conv(gy, weight, None, stride, pads, dilation, groups, strategy=strategy)
    return _crop_extra(gx, extra)


@shared_parameters(TRANSPOSE)
def conv_transpose_grad_weight(input: ArrayLike, weight_shape: Shape, grad_output: ArrayLike,
                               stride: PerAxis = 1, padding: TransposePadding = 0,
                               output_padding: PerAxis = 0, groups: int = 1,
                               dilation: PerAxis = 1, *, strategy: str = "auto") -> np.ndarray:
    """Gradient of a transposed convolution with respect to its weight.

    It is the convolution's grad_weight with the roles of input and
    grad_output swapped.

    Parameters
    ----------
    input : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
        The transposed convolution's input.
    weight_shape : tuple of int, (C_in, C_out / groups, *kernel)
        Shape of its weight.
    grad_output : array_like, the transposed output's shape
        dL/dy.

    Returns
    -------
    grad_w : ndarray of shape ``weight_shape``
        dL/dw, summed over the batch.

    Raises
    ------
    TypeError, ValueError
        For a malformed argument or shapes that do not fit together.
    MemoryError
        As :func:`fastconv.conv`.
    """
    x = prep.as_array(input, "input")
    gy = prep.as_array(grad_output, "grad_output")
    conv_in, pads, stride, dilation, extra = _geometry(
        x.shape, weight_shape, stride, padding, output_padding, dilation, groups)
    _check_gy(gy, conv_in)
    return _api.grad_weight(gy, tuple(weight_shape), _pad_extra(x, extra), stride, pads,
                            dilation, groups, strategy=strategy)


@shared_parameters(TRANSPOSE)
def conv_transpose_backward(x: ArrayLike, weight: ArrayLike, grad_output: ArrayLike,
                            stride: PerAxis = 1, padding: TransposePadding = 0,
                            output_padding: PerAxis = 0, groups: int = 1,
                            dilation: PerAxis = 1, *, strategy: str = "auto",
                            needs: Needs = ("input", "weight", "bias"),
                            ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """The backward passes of a transposed convolution layer.

    Parameters
    ----------
    x : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
        The forward pass's input.
    weight : array_like, shape (C_in, C_out / groups, *kernel)
        The forward pass's kernels.
    grad_output : array_like, the transposed output's shape
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
        For a malformed argument or shapes that do not fit together.
    MemoryError
        As :func:`fastconv.conv`.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x, w = np.ones((1, 1, 3)), np.ones((1, 1, 2))
    >>> gx, gw, gb = fastconv.conv_transpose_backward(x, w, np.ones((1, 1, 6)), stride=2)
    >>> gx, gw, gb
    (array([[[2., 2., 2.]]]), array([[[3., 3.]]]), array([6.]))
    """
    x = prep.as_array(x, "x")
    weight = prep.as_array(weight, "weight")
    gy = prep.as_array(grad_output, "grad_output")
    want = _api._check_needs(needs)
    args = (stride, padding, output_padding, groups, dilation)
    conv_in = _geometry(x.shape, weight.shape, stride, padding, output_padding, dilation,
                        groups)[0]
    _check_gy(gy, conv_in)
    gx = (conv_transpose_grad_input(x.shape, weight, gy, *args, strategy=strategy)
          if "input" in want else None)
    gw = (conv_transpose_grad_weight(x, weight.shape, gy, *args, strategy=strategy)
          if "weight" in want else None)
    gb = None
    if "bias" in want:
        ndim = weight.ndim - 2
        axes = tuple(i for i in range(gy.ndim) if i != gy.ndim - ndim - 1)
        gb = gy.sum(axis=axes, dtype=result_dtype(x.dtype, weight.dtype, gy.dtype))
    return gx, gw, gb


def _check_gy(gy, shape):
    if gy.shape != tuple(shape):
        raise ValueError(f"grad_output must have the transposed output shape {tuple(shape)}, "
                         f"got shape {gy.shape}")

