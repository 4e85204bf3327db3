"""Backward passes with the argument order of ``torch.nn.grad``.

``conv{1,2,3}d_input(input_shape, weight, grad_output, ...)`` returns dL/dx and
``conv{1,2,3}d_weight(input, weight_shape, grad_output, ...)`` returns dL/dw; the
arguments may be passed by these names, or by torch's ``input_size`` /
``weight_size``.
See :func:`fastconv.grad_input` and :func:`fastconv.grad_weight` for the
parameters.

>>> import numpy as np
>>> from fastconv import grad
>>> grad.conv1d_input((1, 1, 5), np.ones((1, 1, 3)), np.ones((1, 1, 3)))
array([[[1., 2., 3., 2., 1.]]])
>>> grad.conv1d_weight(np.arange(5.0).reshape(1, 1, 5), weight_size=(1, 1, 3),
...                    grad_output=np.ones((1, 1, 3)))
array([[[3., 6., 9.]]])
"""
from __future__ import annotations

import numpy as np

from ._api import grad_input, grad_weight
from ._docstrings import CONV, shared_parameters
from ._typing import ArrayLike, Padding, PaddingMode, PerAxis, Shape

__all__ = ["conv1d_input", "conv2d_input", "conv3d_input",
           "conv1d_weight", "conv2d_weight", "conv3d_weight", "grad_input", "grad_weight"]


_MISSING = object()


def _pick(name, given, alias, alias_value, fname):
    """The value of a parameter passed under its name or its torch alias."""
    if given is not _MISSING and alias_value is not _MISSING:
        raise TypeError(f"{fname}() got both {name} and {alias} (the same argument)")
    value = given if given is not _MISSING else alias_value
    if value is _MISSING:
        raise TypeError(f"{fname}() missing required argument {name!r} (or {alias!r})")
    return value


def _make(ndim, fn, kind):
    name = f"conv{ndim}d_{kind}"
    if kind == "input":
        def f(input_shape: Shape = _MISSING, weight: ArrayLike = _MISSING,
              grad_output: ArrayLike = _MISSING, stride: PerAxis = 1, padding: Padding = 0,
              dilation: PerAxis = 1, groups: int = 1, *, flip: bool = False,
              strategy: str = "auto", input_size: Shape = _MISSING,
              padding_mode: PaddingMode = "zeros") -> np.ndarray:
            shape = _pick("input_shape", input_shape, "input_size", input_size, name)
            for arg, v in (("weight", weight), ("grad_output", grad_output)):
                if v is _MISSING:
                    raise TypeError(f"{name}() missing required argument {arg!r}")
            return fn(shape, weight, grad_output, stride, padding, dilation, groups, flip=flip,
                      strategy=strategy, ndim=ndim, padding_mode=padding_mode)

        f.__doc__ = f"""Gradient of a {ndim}-D convolution with respect to its input.

        :func:`fastconv.grad_input` in ``torch.nn.grad.{name}``'s argument order.

        Parameters
        ----------
        input_shape : tuple of int
            Shape of the forward input, ``(N, C_in, *spatial)`` or
            ``(C_in, *spatial)`` with {ndim} spatial axes.
        weight : array_like, shape (C_out, C_in / groups, *kernel)
            The forward pass's kernels ({ndim + 2} dimensions).
        grad_output : array_like
            dL/dy, of the forward output's shape.
        input_size : tuple of int
            torch.nn.grad's name for ``input_shape``: give one or the other.

        Returns
        -------
        ndarray of shape ``input_shape``
            dL/dx.

        Raises
        ------
        TypeError
            For a missing argument, or both ``input_shape`` and ``input_size``.
        ValueError, MemoryError
            As :func:`fastconv.grad_input`.
        """
    else:
        def f(input: ArrayLike = _MISSING, weight_shape: Shape = _MISSING,
              grad_output: ArrayLike = _MISSING, stride: PerAxis = 1, padding: Padding = 0,
              dilation: PerAxis = 1, groups: int = 1, *, flip: bool = False,
              strategy: str = "auto", weight_size: Shape = _MISSING,
              padding_mode: PaddingMode = "zeros") -> np.ndarray:
            shape = _pick("weight_shape", weight_shape, "weight_size", weight_size, name)
            for arg, v in (("input", input), ("grad_output", grad_output)):
                if v is _MISSING:
                    raise TypeError(f"{name}() missing required argument {arg!r}")
            return fn(input, shape, grad_output, stride, padding, dilation, groups, flip=flip,
                      strategy=strategy, ndim=ndim, padding_mode=padding_mode)

        f.__doc__ = f"""Gradient of a {ndim}-D convolution with respect to its weight.

        :func:`fastconv.grad_weight` in ``torch.nn.grad.{name}``'s argument order.

        Parameters
        ----------
        input : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
            The forward pass's input ({ndim} spatial axes).
        weight_shape : tuple of int
            ``(C_out, C_in / groups, *kernel)``.
        grad_output : array_like
            dL/dy, of the forward output's shape.
        weight_size : tuple of int
            torch.nn.grad's name for ``weight_shape``: give one or the other.

        Returns
        -------
        ndarray of shape ``weight_shape``
            dL/dw, summed over the batch.

        Raises
        ------
        TypeError
            For a missing argument, or both ``weight_shape`` and ``weight_size``.
        ValueError, MemoryError
            As :func:`fastconv.grad_weight`.
        """
    f.__name__ = f.__qualname__ = name
    return shared_parameters(CONV)(f)


conv1d_input, conv2d_input, conv3d_input = (_make(n, grad_input, "input") for n in (1, 2, 3))
conv1d_weight, conv2d_weight, conv3d_weight = (_make(n, grad_weight, "weight") for n in (1, 2, 3))
