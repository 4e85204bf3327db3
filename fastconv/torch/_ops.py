"""The ``fastconv::`` custom operators: four ops whose gradients are each other.

==============================  ==============================================
op                              its gradients (what ``backward`` runs)
==============================  ==============================================
conv(x, w, b)                   x: conv_grad_input(gy, w); w: conv_grad_weight(x, gy); b: sum
conv_grad_input(gy, w)          gy: conv(g, w); w: conv_grad_weight(g, gy)
conv_grad_weight(x, gy)         x: conv_grad_input(gy, g); gy: conv(x, g)
conv_transpose(x, w, b)         x: conv(gy, w); w: conv_grad_weight(gy, x); b: sum
==============================  ==============================================

Each backward computes only what ``ctx.needs_input_grad`` asks for, and since
the gradients are again these ops, double backward works too. Ops take batched
tensors and padding as a flat list ``[before_0, after_0, before_1, ...]``; the
public functions in :mod:`fastconv.torch` normalize their arguments to that.
Every op has a fake (meta) implementation computing only the output shape, so
``torch.compile`` and ``torch.export`` trace them as single graph nodes.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from .. import _api, _transpose
from .._config import config as _fc_config, get_config as _fc_get_config

__all__ = ["conv", "conv_grad_input", "conv_grad_weight", "conv_transpose"]


def _np(t):
    """A NumPy view of a CPU tensor (no copy; non-contiguous views stay strided)."""
    return t.detach().resolve_conj().resolve_neg().numpy()


def _pairs(flat):
    return tuple((int(flat[2 * i]), int(flat[2 * i + 1])) for i in range(len(flat) // 2))


@contextlib.contextmanager
def _threads():
    """Run fastconv at torch's thread count unless fastconv's was configured."""
    if _fc_get_config().n_threads is None:
        with _fc_config(n_threads=max(1, torch.get_num_threads())):
            yield
    else:
        yield


def _check_batched(x, weight, op):
    # the fake implementations assume a batch axis: keep the real ones consistent
    if x.dim() != weight.dim():
        raise ValueError(f"fastconv::{op} takes a batched input (N, C, *spatial) for weight of "
                         f"shape {tuple(weight.shape)}, got shape {tuple(x.shape)}; "
                         "fastconv.torch's functions also take unbatched input")


def _out(t):
    return torch.from_numpy(t)


def _conv_size(i, k, s, pb, pa, d):
    # plain arithmetic, so the fake implementations also work on SymInts
    return (i + pb + pa - d * (k - 1) - 1) // s + 1


def _sum_but_channels(gy):
    return gy.sum(dim=[0] + list(range(2, gy.dim())))


# ---------------------------------------------------------------- conv
@torch.library.custom_op("fastconv::conv", mutates_args=(), device_types="cpu")
def conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int],
         padding: list[int], dilation: list[int], groups: int, strategy: str) -> Tensor:
    """Convolution forward, ``(N, C_in, *sp)`` x ``(C_out, C_in/g, *k)``."""
    _check_batched(x, weight, "conv")
    with _threads():
        y = _api.conv(_np(x), _np(weight), None if bias is None else _np(bias), tuple(stride),
                      _pairs(padding), tuple(dilation), groups, strategy=strategy)
    return _out(y)


@conv.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, strategy):
    nd = weight.dim() - 2
    sp = [_conv_size(x.shape[2 + a], weight.shape[2 + a], stride[a], padding[2 * a],
                     padding[2 * a + 1], dilation[a]) for a in range(nd)]
    return x.new_empty([x.shape[0], weight.shape[0]] + sp)


def _conv_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, strategy = inputs
    ctx.save_for_backward(x, weight)
    ctx.geom = (stride, padding, dilation, groups, strategy)
    ctx.has_bias = bias is not None


def _conv_backward(ctx, gy):
    x, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    gx = gw = gb = None
    if need[0]:
        gx = conv_grad_input(gy, weight, list(x.shape), *ctx.geom)
    if need[1]:
        gw = conv_grad_weight(x, gy, list(weight.shape), *ctx.geom)
    if ctx.has_bias and need[2]:
        gb = _sum_but_channels(gy)
    return gx, gw, gb, None, None, None, None, None


conv.register_autograd(_conv_backward, setup_context=_conv_setup)


# ---------------------------------------------------------------- grad_input
@torch.library.custom_op("fastconv::conv_grad_input", mutates_args=(), device_types="cpu")
def conv_grad_input(grad_output: Tensor, weight: Tensor, input_size: list[int],
                    stride: list[int], padding: list[int], dilation: list[int], groups: int,
                    strategy: str) -> Tensor:
    """dL/dx of :func:`conv` (``input_size`` is the forward input's shape)."""
    with _threads():
        gx = _api.grad_input(tuple(input_size), _np(weight), _np(grad_output), tuple(stride),
                             _pairs(padding), tuple(dilation), groups, strategy=strategy)
    return _out(gx)


@conv_grad_input.register_fake
def _(grad_output, weight, input_size, stride, padding, dilation, groups, strategy):
    return grad_output.new_empty(input_size)


def _gi_setup(ctx, inputs, output):
    gy, weight, input_size, stride, padding, dilation, groups, strategy = inputs
    ctx.save_for_backward(gy, weight)
    ctx.geom = (stride, padding, dilation, groups, strategy)


def _gi_backward(ctx, g):
    gy, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    d_gy = conv(g, weight, None, *ctx.geom) if need[0] else None
    d_w = conv_grad_weight(g, gy, list(weight.shape), *ctx.geom) if need[1] else None
    return d_gy, d_w, None, None, None, None, None, None


conv_grad_input.register_autograd(_gi_backward, setup_context=_gi_setup)


# ---------------------------------------------------------------- grad_weight
@torch.library.custom_op("fastconv::conv_grad_weight", mutates_args=(), device_types="cpu")
def conv_grad_weight(input: Tensor, grad_output: Tensor, weight_size: list[int],
                     stride: list[int], padding: list[int], dilation: list[int], groups: int,
                     strategy: str) -> Tensor:
    """dL/dw of :func:`conv` (``weight_size`` is the weight's shape)."""
    with _threads():
        gw = _api.grad_weight(_np(input), tuple(weight_size), _np(grad_output), tuple(stride),
                              _pairs(padding), tuple(dilation), groups, strategy=strategy)
    return _out(gw)


@conv_grad_weight.register_fake
def _(input, grad_output, weight_size, stride, padding, dilation, groups, strategy):
    return input.new_empty(weight_size)


def _gw_setup(ctx, inputs, output):
    x, gy, weight_size, stride, padding, dilation, groups, strategy = inputs
    ctx.save_for_backward(x, gy)
    ctx.geom = (stride, padding, dilation, groups, strategy)


def _gw_backward(ctx, g):
    x, gy = ctx.saved_tensors
    need = ctx.needs_input_grad
    d_x = conv_grad_input(gy, g, list(x.shape), *ctx.geom) if need[0] else None
    d_gy = conv(x, g, None, *ctx.geom) if need[1] else None
    return d_x, d_gy, None, None, None, None, None, None


conv_grad_weight.register_autograd(_gw_backward, setup_context=_gw_setup)


# ---------------------------------------------------------------- conv_transpose
@torch.library.custom_op("fastconv::conv_transpose", mutates_args=(), device_types="cpu")
def conv_transpose(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int],
                   padding: list[int], output_padding: list[int], groups: int,
                   dilation: list[int], strategy: str) -> Tensor:
    """Transposed convolution, ``(N, C_in, *sp)`` x ``(C_in, C_out/g, *k)``."""
    _check_batched(x, weight, "conv_transpose")
    with _threads():
        y = _transpose.conv_transpose(
            _np(x), _np(weight), None if bias is None else _np(bias), tuple(stride),
            _pairs(padding), tuple(output_padding), groups, tuple(dilation), strategy=strategy)
    return _out(y)


def _transpose_size(i, k, s, pb, pa, op, d):
    return (i - 1) * s - pb - pa + d * (k - 1) + op + 1


@conv_transpose.register_fake
def _(x, weight, bias, stride, padding, output_padding, groups, dilation, strategy):
    nd = weight.dim() - 2
    sp = [_transpose_size(x.shape[2 + a], weight.shape[2 + a], stride[a], padding[2 * a],
                          padding[2 * a + 1], output_padding[a], dilation[a]) for a in range(nd)]
    return x.new_empty([x.shape[0], weight.shape[1] * groups] + sp)


def _ct_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, output_padding, groups, dilation, strategy = inputs
    ctx.save_for_backward(x, weight)
    ctx.geom = (stride, padding, dilation, groups, strategy)
    # output padding of a stride or more adds outputs no input reaches: the
    # convolution of the gradient then has `extra` more rows, cut off (or, for
    # grad_weight, matched by zeros after x)
    ctx.extra = [op // s for op, s in zip(output_padding, stride)]
    ctx.has_bias = bias is not None


def _ct_backward(ctx, gy):
    x, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    gx = gw = gb = None
    if need[0]:
        gx = conv(gy, weight, None, *ctx.geom)
        for a, e in enumerate(ctx.extra):
            if e:
                gx = gx.narrow(2 + a, 0, x.shape[2 + a])
    if need[1]:
        xe = x
        if any(ctx.extra):
            pad = []
            for e in reversed(ctx.extra):  # F.pad lists the last axis first
                pad += [0, e]
            xe = torch.nn.functional.pad(x, pad)
        gw = conv_grad_weight(gy, xe, list(weight.shape), *ctx.geom)
    if ctx.has_bias and need[2]:
        gb = _sum_but_channels(gy)
    return gx, gw, gb, None, None, None, None, None, None


conv_transpose.register_autograd(_ct_backward, setup_context=_ct_setup)
