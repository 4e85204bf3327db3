"""Backward passes with the argument order of ``torch.nn.grad``.

``conv{1,2,3}d_input(input_shape, weight, grad_output, ...)`` returns dL/dx and
``conv{1,2,3}d_weight(input, weight_shape, grad_output, ...)`` returns dL/dw; the
arguments may be passed by these names, or by torch's ``input_size`` /
``weight_size``.
See :func:`fastconv.grad_input` and :func:`fastconv.grad_weight` for the
parameters.
"""
from __future__ import annotations

from ._api import grad_input, grad_weight

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
        def f(input_shape=_MISSING, weight=_MISSING, grad_output=_MISSING, stride=1, padding=0,
              dilation=1, groups=1, *, flip=False, strategy="auto", input_size=_MISSING,
              padding_mode="zeros"):
            shape = _pick("input_shape", input_shape, "input_size", input_size, name)
            for arg, v in (("weight", weight), ("grad_output", grad_output)):
                if v is _MISSING:
                    raise TypeError(f"{name}() missing required argument {arg!r}")
            return fn(shape, weight, grad_output, stride, padding, dilation, groups, flip=flip,
                      strategy=strategy, ndim=ndim, padding_mode=padding_mode)

        f.__doc__ = (f"dL/dx of a {ndim}-D convolution: ``{name}(input_shape, weight, "
                     "grad_output, stride=1, padding=0, dilation=1, groups=1, *, flip=False, "
                     "strategy='auto', padding_mode='zeros')``; ``input_size=`` (torch.nn.grad's "
                     "name) is accepted for ``input_shape``. See :func:`fastconv.grad_input`.")
    else:
        def f(input=_MISSING, weight_shape=_MISSING, grad_output=_MISSING, stride=1, padding=0,
              dilation=1, groups=1, *, flip=False, strategy="auto", weight_size=_MISSING,
              padding_mode="zeros"):
            shape = _pick("weight_shape", weight_shape, "weight_size", weight_size, name)
            for arg, v in (("input", input), ("grad_output", grad_output)):
                if v is _MISSING:
                    raise TypeError(f"{name}() missing required argument {arg!r}")
            return fn(input, shape, grad_output, stride, padding, dilation, groups, flip=flip,
                      strategy=strategy, ndim=ndim, padding_mode=padding_mode)

        f.__doc__ = (f"dL/dw of a {ndim}-D convolution: ``{name}(input, weight_shape, "
                     "grad_output, stride=1, padding=0, dilation=1, groups=1, *, flip=False, "
                     "strategy='auto', padding_mode='zeros')``; ``weight_size=`` (torch.nn.grad's "
                     "name) is accepted for ``weight_shape``. See :func:`fastconv.grad_weight`.")
    f.__name__ = f.__qualname__ = name
    return f


conv1d_input, conv2d_input, conv3d_input = (_make(n, grad_input, "input") for n in (1, 2, 3))
conv1d_weight, conv2d_weight, conv3d_weight = (_make(n, grad_weight, "weight") for n in (1, 2, 3))
