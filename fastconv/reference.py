"""Naive NumPy reference for the three ops: the test oracle.

Slow and obviously correct: pad the input, then for every kernel offset take the
strided, dilated slice of the padded input it touches and accumulate. It is
independent of the compiled strategies (it shares only argument normalization,
:func:`fastconv._spec.make_spec`). Computes in float64, returns the result dtype.
"""
from __future__ import annotations

import itertools

import numpy as np

from ._spec import make_spec, result_dtype

__all__ = ["conv_forward", "conv_grad_input", "conv_grad_weight"]


def _spec(input_shape, weight_shape, stride, padding, dilation, groups, flip, *arrays):
    dtype = result_dtype(*(np.asarray(a).dtype for a in arrays))
    return make_spec(input_shape, weight_shape, stride, padding, dilation, groups,
                     flip=flip, dtype=dtype), dtype


def _batched(a, spec):
    a = np.asarray(a, dtype=np.float64)
    return a if spec.batched else a[None]


def _windows(spec):
    """Yield (kernel offset, tuple of slices into the padded input)."""
    for offs in itertools.product(*(range(k) for k in spec.kernel)):
        sl = tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offs, spec.dilation, spec.stride, spec.out_spatial)
        )
        yield offs, sl


def _kernel(w, spec):
    w = np.asarray(w, dtype=np.float64)
    if spec.flip:
        w = w[(Ellipsis,) + (slice(None, None, -1),) * spec.ndim]
    return w


def conv_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False):
    """y[n, o, p] = sum_{c, k} xpad[n, g(o)*Cg + c, p*s + k*d] * w[o, c, k] (+ bias[o])."""
    spec, dtype = _spec(np.shape(x), np.shape(weight), stride, padding, dilation, groups, flip,
                        x, weight)
    x = _batched(x, spec)
    w = _kernel(weight, spec)
    xp = np.pad(x, ((0, 0), (0, 0)) + spec.padding)
    G, Cg, Og = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
    y = np.zeros((spec.batch, spec.out_channels) + spec.out_spatial)
    for g in range(G):
        xg = xp[:, g * Cg:(g + 1) * Cg]
        wg = w[g * Og:(g + 1) * Og]
        for offs, sl in _windows(spec):
            patch = xg[(slice(None), slice(None)) + sl]  # (N, Cg, *out)
            y[:, g * Og:(g + 1) * Og] += np.einsum("nc...,oc->no...", patch, wg[(Ellipsis,) + offs])
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64).reshape((-1,) + (1,) * spec.ndim)
    y = y.astype(dtype)
    return y if spec.batched else y[0]


def conv_grad_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                    *, flip=False):
    """dL/dx: scatter grad_output back through every kernel offset, then crop the padding."""
    spec, dtype = _spec(input_shape, np.shape(weight), stride, padding, dilation, groups, flip,
                        weight, grad_output)
    gy = _batched(grad_output, spec)
    w = _kernel(weight, spec)
    G, Cg, Og = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
    gxp = np.zeros((spec.batch, spec.in_channels) + spec.padded_spatial)
    for g in range(G):
        gyg = gy[:, g * Og:(g + 1) * Og]
        wg = w[g * Og:(g + 1) * Og]
        for offs, sl in _windows(spec):
            gxp[(slice(None), slice(g * Cg, (g + 1) * Cg)) + sl] += np.einsum(
                "no...,oc->nc...", gyg, wg[(Ellipsis,) + offs])
    crop = tuple(slice(b, b + n) for (b, _), n in zip(spec.padding, spec.in_spatial))
    gx = gxp[(slice(None), slice(None)) + crop].astype(dtype)
    return gx if spec.batched else gx[0]


def conv_grad_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1,
                     *, flip=False):
    """dL/dw[o, c, k] = sum_{n, p} xpad[n, g(o)*Cg + c, p*s + k*d] * grad_output[n, o, p]."""
    spec, dtype = _spec(np.shape(input), weight_shape, stride, padding, dilation, groups, flip,
                        input, grad_output)
    x = _batched(input, spec)
    gy = _batched(grad_output, spec)
    xp = np.pad(x, ((0, 0), (0, 0)) + spec.padding)
    G, Cg, Og = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
    gw = np.zeros(spec.weight_shape)
    for g in range(G):
        xg = xp[:, g * Cg:(g + 1) * Cg]
        gyg = gy[:, g * Og:(g + 1) * Og]
        for offs, sl in _windows(spec):
            patch = xg[(slice(None), slice(None)) + sl]
            gw[(slice(g * Og, (g + 1) * Og), slice(None)) + offs] = np.einsum(
                "ncp,nop->oc", patch.reshape(patch.shape[:2] + (-1,)),
                gyg.reshape(gyg.shape[:2] + (-1,)))
    if spec.flip:
        gw = gw[(Ellipsis,) + (slice(None, None, -1),) * spec.ndim]
    return gw.astype(dtype)
