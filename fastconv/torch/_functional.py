"""``torch.nn.functional``-style entry points: normalize, route, fall back.

CPU float32/float64 tensors (all operands of one dtype, strided layout) go to
the ``fastconv::`` ops; anything else (another device, half precision, mixed
dtypes, sparse) runs on torch's own kernels, or raises
:class:`UnsupportedTensorError` in strict mode.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from . import _ops

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "set_strict", "strict", "is_strict", "UnsupportedTensorError",
           "unsupported_reason"]

_DTYPES = (torch.float32, torch.float64)
# A plain dict (not a contextvar): torch.compile reads and guards on it.
_state = {"strict": False}


class UnsupportedTensorError(RuntimeError):
    """A tensor fastconv cannot compute on, met in strict mode."""


def set_strict(enabled=True):
    """Strict mode on or off for the whole process.

    In strict mode a tensor fastconv cannot compute on (not on the CPU, not
    float32/float64, mixed dtypes) raises :class:`UnsupportedTensorError`
    instead of silently running on torch's own kernels.
    """
    _state["strict"] = bool(enabled)


def is_strict():
    """Whether strict mode is on."""
    return _state["strict"]


@contextlib.contextmanager
def strict(enabled=True):
    """Context manager form of :func:`set_strict`; restores the previous mode."""
    old = _state["strict"]
    _state["strict"] = bool(enabled)
    try:
        yield
    finally:
        _state["strict"] = old


def unsupported_reason(*tensors):
    """Why fastconv would not run on these tensors, or None if it would."""
    ts = [t for t in tensors if t is not None]
    for t in ts:
        if t.device.type != "cpu":
            return f"device {t.device} (fastconv computes on the CPU)"
        if t.layout != torch.strided:
            return f"layout {t.layout} (fastconv takes dense tensors)"
        if t.dtype not in _DTYPES:
            return f"dtype {t.dtype} (fastconv computes in float32 or float64)"
    if len({t.dtype for t in ts}) > 1:
        return f"mixed dtypes {sorted({str(t.dtype) for t in ts})}"
    return None


def _route(reason, what):
    if reason is None:
        return True
    if _state["strict"]:
        raise UnsupportedTensorError(
            f"fastconv.torch.{what}: cannot run on {reason}; strict mode is on "
            "(fastconv.torch.set_strict(False) falls back to torch's own kernels)")
    return False


def _ntuple(v, nd, name):
    if isinstance(v, int):
        return [v] * nd
    v = list(v)
    if len(v) == 1 and nd > 1:
        v = v * nd
    if len(v) != nd or not all(isinstance(a, int) for a in v):
        raise ValueError(f"{name} must be an int or {nd} ints, got {v!r}")
    return v


def _flat_padding(padding, nd, kernel, dilation):
    """Padding as ``[before_0, after_0, ...]`` from torch's or fastconv's forms."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0] * (2 * nd)
        if padding == "same":
            out = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                out += [total // 2, total - total // 2]  # the odd zero after, as torch does
            return out
        raise ValueError(f"padding must be 'valid', 'same', an int or a tuple, got {padding!r}")
    if isinstance(padding, int):
        return [padding] * (2 * nd)
    padding = list(padding)
    if len(padding) == nd and all(isinstance(p, (tuple, list)) for p in padding):
        return [int(v) for p in padding for v in p]
    return [p for p in _ntuple(padding, nd, "padding") for _ in range(2)]


def _torch_padding(flat):
    """torch's symmetric padding, or None when the pairs are asymmetric."""
    pairs = list(zip(flat[0::2], flat[1::2]))
    return [b for b, _ in pairs] if all(b == a for b, a in pairs) else None


def _unsqueeze(x, nd):
    return (x, True) if x.dim() == nd + 2 else (x.unsqueeze(0), False)


def _conv(nd, x, weight, bias, stride, padding, dilation, groups, strategy):
    kernel = list(weight.shape[2:])
    stride = _ntuple(stride, nd, "stride")
    dilation = _ntuple(dilation, nd, "dilation")
    pads = _flat_padding(padding, nd, kernel, dilation)
    if not _route(unsupported_reason(x, weight, bias), f"conv{nd}d"):
        tf = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
        sym = _torch_padding(pads)
        if sym is None:  # fastconv's (before, after) pairs: pad explicitly for torch
            pad = []
            for a in reversed(range(nd)):
                pad += [pads[2 * a], pads[2 * a + 1]]
            x, sym = F.pad(x, pad), [0] * nd
        return tf(x, weight, bias, stride, sym, dilation, groups)
    xb, batched = _unsqueeze(x, nd)
    y = _ops.conv(xb, weight, bias, stride, pads, dilation, groups, strategy)
    return y if batched else y.squeeze(0)


def _conv_transpose(nd, x, weight, bias, stride, padding, output_padding, groups, dilation,
                    strategy):
    stride = _ntuple(stride, nd, "stride")
    dilation = _ntuple(dilation, nd, "dilation")
    opad = _ntuple(output_padding, nd, "output_padding")
    if isinstance(padding, str):
        raise ValueError(f"conv_transpose{nd}d: padding must be ints, got {padding!r}")
    pads = _flat_padding(padding, nd, None, dilation)
    if not _route(unsupported_reason(x, weight, bias), f"conv_transpose{nd}d"):
        sym = _torch_padding(pads)
        if sym is None:
            raise ValueError(f"conv_transpose{nd}d: torch's kernels (the fallback for "
                             f"{unsupported_reason(x, weight, bias)}) take symmetric padding "
                             f"only, got {padding!r}")
        tf = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
        return tf(x, weight, bias, stride, sym, opad, groups, dilation)
    xb, batched = _unsqueeze(x, nd)
    y = _ops.conv_transpose(xb, weight, bias, stride, pads, opad, groups, dilation, strategy)
    return y if batched else y.squeeze(0)


def _make_conv(nd):
    def f(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
          strategy="auto"):
        return _conv(nd, input, weight, bias, stride, padding, dilation, groups, strategy)

    f.__name__ = f.__qualname__ = f"conv{nd}d"
    f.__doc__ = f"""{nd}-D convolution with the signature of ``torch.nn.functional.conv{nd}d``.

    Parameters
    ----------
    input : Tensor, (N, C_in, *spatial) or (C_in, *spatial)
    weight : Tensor, (C_out, C_in / groups, *kernel)
    bias : Tensor, (C_out,), optional
    stride, dilation : int or tuple
    padding : int, tuple, "valid", "same", or fastconv's (before, after) pairs
    groups : int
    strategy : str, default "auto"
        fastconv's strategy ("auto", "direct", "im2col", "fft", ...).

    Returns
    -------
    Tensor
        Differentiable (``fastconv::conv``); computed by fastconv for CPU
        float32/float64 tensors, else by torch (see :func:`set_strict`).
    """
    return f


def _make_conv_transpose(nd):
    def f(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
          dilation=1, *, strategy="auto"):
        return _conv_transpose(nd, input, weight, bias, stride, padding, output_padding,
                               groups, dilation, strategy)

    f.__name__ = f.__qualname__ = f"conv_transpose{nd}d"
    f.__doc__ = f"""{nd}-D transposed convolution with the signature of
    ``torch.nn.functional.conv_transpose{nd}d``, plus ``strategy=``.

    Parameters
    ----------
    input : Tensor, (N, C_in, *spatial) or (C_in, *spatial)
    weight : Tensor, (C_in, C_out / groups, *kernel)
    bias : Tensor, (C_out,), optional
    stride, output_padding, dilation : int or tuple
    padding : int, tuple, or fastconv's (before, after) pairs
    groups : int
    strategy : str, default "auto"

    Returns
    -------
    Tensor
        Differentiable (``fastconv::conv_transpose``).
    """
    return f


conv1d, conv2d, conv3d = (_make_conv(n) for n in (1, 2, 3))
conv_transpose1d, conv_transpose2d, conv_transpose3d = (_make_conv_transpose(n)
                                                        for n in (1, 2, 3))
