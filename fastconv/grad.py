"""Backward passes with the argument order of ``torch.nn.grad``.

``conv{1,2,3}d_input(input_shape, weight, grad_output, ...)`` returns dL/dx and
``conv{1,2,3}d_weight(input, weight_shape, grad_output, ...)`` returns dL/dw.
See :func:`fastconv.grad_input` and :func:`fastconv.grad_weight` for the
parameters.
"""
from __future__ import annotations

from ._api import grad_input, grad_weight

__all__ = ["conv1d_input", "conv2d_input", "conv3d_input",
           "conv1d_weight", "conv2d_weight", "conv3d_weight", "grad_input", "grad_weight"]


def _make(ndim, fn, kind):
    def f(a, shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *, flip=False,
          strategy="auto"):
        return fn(a, shape, grad_output, stride, padding, dilation, groups, flip=flip,
                  strategy=strategy, ndim=ndim)

    name = f"conv{ndim}d_{kind}"
    f.__name__ = f.__qualname__ = name
    if kind == "input":
        f.__doc__ = (f"dL/dx of a {ndim}-D convolution: ``{name}(input_shape, weight, "
                     "grad_output, stride=1, padding=0, dilation=1, groups=1, *, flip=False, "
                     "strategy='auto')``; see :func:`fastconv.grad_input`.")
    else:
        f.__doc__ = (f"dL/dw of a {ndim}-D convolution: ``{name}(input, weight_shape, "
                     "grad_output, stride=1, padding=0, dilation=1, groups=1, *, flip=False, "
                     "strategy='auto')``; see :func:`fastconv.grad_weight`.")
    return f


conv1d_input, conv2d_input, conv3d_input = (_make(n, grad_input, "input") for n in (1, 2, 3))
conv1d_weight, conv2d_weight, conv3d_weight = (_make(n, grad_weight, "weight") for n in (1, 2, 3))
