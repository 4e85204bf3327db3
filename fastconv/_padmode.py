"""Padding modes other than zeros: pad explicitly, convolve unpadded, fold gradients back.

``padding_mode`` follows ``torch.nn.Conv{1,2,3}d``:

==============  =====================================  ===================
mode            fills the padding with                 ``np.pad`` mode
==============  =====================================  ===================
``"zeros"``     zeros (the kernels' own padding)       --
``"reflect"``   the input mirrored, edge not repeated  ``"reflect"``
``"replicate"`` the edge value                         ``"edge"``
``"circular"``  the input wrapped around               ``"wrap"``
==============  =====================================  ===================

A convolution with another mode is the convolution without padding of the
explicitly padded input: forward and grad_weight take the padded input; the
padding is linear, so grad_input is the gradient for the padded input folded
back by the padding's adjoint (each padded entry's gradient added to the input
entry it was copied from). The padding acts on each spatial axis separately,
so the fold is done axis by axis. Which paddings a mode allows are torch's
rules: reflect needs padding smaller than the input on its axis, circular at
most the input's size, replicate a non-empty axis.

Every public entry point that takes ``padding_mode`` goes through
:func:`check_mode`; for a mode other than zeros a plan (:mod:`fastconv._plan`)
pads and folds with :func:`pad` and :func:`fold` around its inner plan without
padding, and :func:`conv_backward` does the same for both gradients.
"""
from __future__ import annotations

import math

import numpy as np

from . import _prepare as prep
from ._dispatch import check_available
from ._spec import make_spec

__all__ = ["MODES", "check_mode", "conv_backward", "pad", "fold"]

MODES = ("zeros", "reflect", "replicate", "circular")
_NP_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def check_mode(padding_mode):
    """``padding_mode`` if it is one of :data:`MODES`; torch's ValueError otherwise."""
    if not isinstance(padding_mode, str):
        raise TypeError(f"padding_mode must be a str, one of {MODES}, got "
                        f"{type(padding_mode).__name__} {padding_mode!r}")
    if padding_mode not in MODES:
        raise ValueError(f"padding_mode must be one of {MODES}, but got "
                         f"padding_mode={padding_mode!r}")
    return padding_mode


def _check_sizes(mode, spec):
    """torch's rules (``F.pad``) for the padding a mode can make of this input."""
    lead = len(spec.input_shape) - spec.ndim  # the batch and channel axes
    for a, (n, (b, e)) in enumerate(zip(spec.in_spatial, spec.padding)):
        dim = lead + a
        if not (b or e):
            continue
        if n == 0:
            raise ValueError(f"padding_mode={mode!r} cannot pad the empty dimension {dim} of "
                             f"input shape {spec.input_shape}")
        if mode == "reflect" and max(b, e) >= n:
            raise ValueError(f"padding_mode='reflect': padding size should be less than the "
                             f"corresponding input dimension, but got padding {(b, e)} at "
                             f"dimension {dim} of input shape {spec.input_shape}")
        if mode == "circular" and max(b, e) > n:
            raise ValueError(f"padding_mode='circular': padding value causes wrapping around "
                             f"more than once: padding {(b, e)} at dimension {dim} of input "
                             f"shape {spec.input_shape}")


def _spec(input_shape, weight_shape, stride, padding, dilation, groups, flip, ndim=None):
    """The problem's spec (all arguments validated, padding as (before, after) pairs)."""
    return make_spec(input_shape, weight_shape, stride, padding, dilation, groups, flip=flip,
                     dtype=np.float64, ndim=ndim)


def pad(x, pads, mode):
    """``x`` (``(..., *spatial)``) padded by ``pads`` ((before, after) per spatial axis)."""
    widths = [(0, 0)] * (x.ndim - len(pads)) + [tuple(p) for p in pads]
    return np.pad(x, widths, mode=_NP_MODE[mode])


def fold(g, pads, mode):
    """The adjoint of :func:`pad`: the gradient of the padded input, ``g``, as the
    gradient of the input (each padded entry added where it was copied from)."""
    nd = len(pads)
    for a, (b, e) in enumerate(pads):
        if not (b or e):
            continue
        axis = g.ndim - nd + a
        g = np.moveaxis(g, axis, -1)
        n = g.shape[-1] - b - e
        inner = g[..., b:b + n].copy()
        before, after = g[..., :b], g[..., b + n:]
        if mode == "reflect":       # before[i] = x[b - i], after[j] = x[n - 2 - j]
            inner[..., 1:b + 1] += before[..., ::-1]
            inner[..., n - 1 - e:n - 1] += after[..., ::-1]
        elif mode == "replicate":   # every padded entry is the edge value
            inner[..., 0] += before.sum(axis=-1)
            inner[..., n - 1] += after.sum(axis=-1)
        else:                       # circular: before[i] = x[n - b + i], after[j] = x[j]
            inner[..., n - b:] += before
            inner[..., :e] += after
        g = np.moveaxis(inner, -1, axis)
    return np.ascontiguousarray(g)


def _padded(x, spec, mode):
    _check_sizes(mode, spec)
    shape = spec.input_shape[:len(spec.input_shape) - spec.ndim] + spec.padded_spatial
    check_available(math.prod(shape) * x.dtype.itemsize, f"{mode}-padded input", spec)
    return pad(x, spec.padding, mode)


# ---------------------------------------------------------------- the ops
def conv_backward(core, x, weight, grad_output, stride, padding, dilation, groups, flip,
                  strategy, needs, mode):
    """``core`` (:func:`fastconv.conv_backward`) with ``padding_mode=mode``."""
    x = prep.as_array(x, "x")
    weight = prep.as_array(weight, "weight")
    spec = _spec(x.shape, weight.shape, stride, padding, dilation, groups, flip)
    gx, gw, gb = core(_padded(x, spec, mode), weight, grad_output, stride, 0, dilation, groups,
                      flip=flip, strategy=strategy, needs=needs)
    return (None if gx is None else fold(gx, spec.padding, mode)), gw, gb
