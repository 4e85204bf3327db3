"""``torch.nn.functional``-style entry points: normalize, route, fall back.

CPU float32/float64 tensors (all operands of one dtype, strided layout) go to
the ``fastconv::`` ops; anything else (another device, half precision, mixed
dtypes, sparse) runs on torch's own kernels, or raises
:class:`UnsupportedTensorError` in strict mode.
"""
from __future__ import annotations

import contextlib
import operator

import torch
import torch.nn.functional as F

from .._docstrings import CONV, TRANSPOSE, shared_parameters, table
from .._padmode import check_mode as _check_padding_mode
from .._spec import _plain
from . import _ops

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "set_strict", "strict", "is_strict", "UnsupportedTensorError",
           "unsupported_reason"]

_DTYPES = (torch.float32, torch.float64)
# A plain dict (not a contextvar): torch.compile reads and guards on it.
_state = {"strict": False}


class UnsupportedTensorError(RuntimeError):
    """A tensor fastconv cannot compute on, met in strict mode."""


def set_strict(enabled: bool = True) -> None:
    """Strict mode on or off for the whole process.

    In strict mode a tensor fastconv cannot compute on (not on the CPU, not
    float32/float64, mixed dtypes) raises :class:`UnsupportedTensorError`
    instead of silently running on torch's own kernels.

    Parameters
    ----------
    enabled : bool, default True
        True turns strict mode on, False off.
    """
    _state["strict"] = bool(enabled)


def is_strict() -> bool:
    """Whether strict mode is on.

    Returns
    -------
    bool
        True in strict mode (:func:`set_strict`, :func:`strict`).
    """
    return _state["strict"]


@contextlib.contextmanager
def strict(enabled: bool = True):
    """Context manager form of :func:`set_strict`; restores the previous mode.

    Parameters
    ----------
    enabled : bool, default True
        Strict mode on (True) or off (False) inside the ``with`` block.

    Yields
    ------
    None
        Nothing: the block runs with the mode set.

    Examples
    --------
    >>> import torch, fastconv.torch as fct
    >>> x, w = torch.ones(1, 1, 5, dtype=torch.float16), torch.ones(1, 1, 3, dtype=torch.float16)
    >>> with fct.strict():
    ...     fct.conv1d(x, w)
    Traceback (most recent call last):
    ...
    fastconv.torch._functional.UnsupportedTensorError: fastconv.torch.conv1d: cannot run on ...
    """
    old = _state["strict"]
    _state["strict"] = bool(enabled)
    try:
        yield
    finally:
        _state["strict"] = old


def unsupported_reason(*tensors: torch.Tensor | None) -> str | None:
    """Why fastconv would not run on these tensors, or None if it would.

    Parameters
    ----------
    *tensors : Tensor or None
        The operands of one call (None for a missing bias is skipped).

    Returns
    -------
    str or None
        The reason (device, layout, dtype or mixed dtypes), None if fastconv
        computes on them.

    Examples
    --------
    >>> import torch, fastconv.torch as fct
    >>> fct.unsupported_reason(torch.ones(2), torch.ones(2, dtype=torch.float64))
    "mixed dtypes ['torch.float32', 'torch.float64']"
    """
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


_F_PAD_MODE = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def _int(v, name):
    """``v`` as a Python int: an int, a NumPy integer or a one-element integer
    tensor (what torch takes); a bool or a float is refused, as torch does."""
    if isinstance(v, (bool, float)) or (isinstance(v, torch.Tensor) and
                                        (v.dtype == torch.bool or v.is_floating_point())):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}") from None


def _ntuple(v, nd, name, minimum=1):
    if isinstance(v, torch.Tensor) and v.dim() == 0:
        v = [v]
    if isinstance(v, (str, bytes, dict, set, frozenset)) or not hasattr(v, "__iter__"):
        v = [_int(v, name)]
    else:
        v = [_int(a, name) for a in v]
    if len(v) == 1 and nd > 1:
        v = v * nd
    if len(v) != nd:
        raise ValueError(f"{name} must be an int or {nd} ints, got {v!r}")
    if any(a < minimum for a in v):
        raise ValueError(f"{name} must be >= {minimum} on every axis, got {v!r}")
    return v


def _groups(groups):
    g = _int(groups, "groups")
    if g < 1:
        raise ValueError(f"groups must be a positive int, got {g}")
    return g


def _check_dims(nd, x, weight, what):
    """The weight's and the input's number of dimensions, before anything else."""
    if weight.dim() != nd + 2:
        lead = "C_in, C_out/groups" if "transpose" in what else "C_out, C_in/groups"
        kernel = ", ".join("K" + a for a in "DHW"[3 - nd:])
        raise ValueError(f"{what}: weight must have {nd + 2} dimensions ({lead}, {kernel}), "
                         f"got a {weight.dim()}-D weight of shape {tuple(weight.shape)}")
    if x.dim() not in (nd + 1, nd + 2):
        raise ValueError(f"{what}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) "
                         f"input, got input of shape {tuple(x.shape)}")


def _autocast(*tensors):
    """The tensors as torch's autocast casts a convolution's arguments.

    Under ``torch.autocast("cpu", dtype)`` convolutions are computed in the
    autocast dtype: floating tensors other than float64 on the CPU are cast to
    it. fastconv computes float32/float64 only, so such a call then runs on
    torch's kernels, and returns what torch's modules return.
    """
    if not torch.is_autocast_enabled("cpu"):
        return tensors
    dt = torch.get_autocast_dtype("cpu")
    return tuple(t.to(dt) if (t is not None and t.device.type == "cpu" and t.is_floating_point()
                              and t.dtype != torch.float64) else t for t in tensors)


def _flat_padding(padding, nd, kernel, dilation, stride=None):
    """Padding as ``[before_0, after_0, ...]`` from torch's or fastconv's forms."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0] * (2 * nd)
        if padding == "same":
            if stride is not None and any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            out = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                out += [total // 2, total - total // 2]  # the odd zero after, as torch does
            return out
        raise ValueError(f"padding must be 'valid', 'same', an int or a tuple, got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == nd and all(
            isinstance(p, (tuple, list)) for p in padding):
        flat = [_int(v, "padding") for p in padding for v in p]
        if len(flat) != 2 * nd:
            raise ValueError(f"padding: (before, after) pairs need 2 ints each, got {padding!r}")
        if any(v < 0 for v in flat):
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        return flat
    return [p for p in _ntuple(padding, nd, "padding", 0) for _ in range(2)]


def _f_pad(flat):
    """fastconv's flat ``[before_0, after_0, ...]`` as ``F.pad``'s list (last axis first)."""
    pad = []
    for a in reversed(range(len(flat) // 2)):
        pad += [flat[2 * a], flat[2 * a + 1]]
    return pad


def _torch_padding(flat):
    """torch's symmetric padding, or None when the pairs are asymmetric."""
    pairs = list(zip(flat[0::2], flat[1::2]))
    return [b for b, _ in pairs] if all(b == a for b, a in pairs) else None


def _unsqueeze(x, nd):
    return (x, True) if x.dim() == nd + 2 else (x.unsqueeze(0), False)


def _output_format(x, weight, nd):
    """torch's convolutions return channels_last when the input or the weight is."""
    if x.dim() != nd + 2:
        return torch.contiguous_format
    fmt = _ops.memory_format(x)
    return fmt if fmt is not torch.contiguous_format else _ops.memory_format(weight)


# The normalized geometry of plain arguments (ints, tuples of ints, "same" or
# "valid": what torch's modules hold), so that a module's every call does not
# validate the same attributes again
_GEOMETRY = {}


def _conv_geometry(nd, kernel, stride, padding, dilation, groups):
    """``(stride, dilation, groups, flat padding)``, validated and normalized."""
    key = None
    if (type(groups) is int and _plain(stride) and _plain(dilation)
            and (type(padding) is str or _plain(padding))):
        key = (nd, kernel, stride, padding, dilation, groups)
        geometry = _GEOMETRY.get(key)
        if geometry is not None:
            return geometry
    stride = _ntuple(stride, nd, "stride")
    dilation = _ntuple(dilation, nd, "dilation")
    groups = _groups(groups)
    # tuples: one geometry serves every later call
    geometry = (tuple(stride), tuple(dilation), groups,
                tuple(_flat_padding(padding, nd, list(kernel), dilation, stride)))
    if key is not None:
        if len(_GEOMETRY) >= 1024:
            _GEOMETRY.clear()
        _GEOMETRY[key] = geometry
    return geometry


def _conv(nd, x, weight, bias, stride, padding, dilation, groups, strategy,
          padding_mode="zeros"):
    what = f"conv{nd}d"
    _check_dims(nd, x, weight, what)
    stride, dilation, groups, pads = _conv_geometry(nd, tuple(weight.shape[2:]), stride,
                                                    padding, dilation, groups)
    if _check_padding_mode(padding_mode) != "zeros" and any(pads):
        # torch's own padding op (its autograd is the padding's adjoint), then
        # the convolution without padding, as torch's modules do
        x, pads = F.pad(x, _f_pad(pads), mode=_F_PAD_MODE[padding_mode]), [0] * (2 * nd)
    x, weight, bias = _autocast(x, weight, bias)
    if not _route(unsupported_reason(x, weight, bias), what):
        tf = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
        sym = _torch_padding(pads)
        if sym is None:  # fastconv's (before, after) pairs: pad explicitly for torch
            x, sym = F.pad(x, _f_pad(pads)), [0] * nd
        return tf(x, weight, bias, stride, sym, dilation, groups)
    fmt = _output_format(x, weight, nd)
    xb, batched = _unsqueeze(x, nd)
    y = _ops.conv(xb, weight, bias, stride, pads, dilation, groups, strategy)
    return _ops.in_format(y, fmt) if batched else y.squeeze(0)


def _conv_transpose(nd, x, weight, bias, stride, padding, output_padding, groups, dilation,
                    strategy):
    _check_dims(nd, x, weight, f"conv_transpose{nd}d")
    stride = _ntuple(stride, nd, "stride")
    dilation = _ntuple(dilation, nd, "dilation")
    opad = _ntuple(output_padding, nd, "output_padding", 0)
    groups = _groups(groups)
    if isinstance(padding, str):
        raise ValueError(f"conv_transpose{nd}d: padding must be ints, got {padding!r}")
    pads = _flat_padding(padding, nd, None, dilation)
    x, weight, bias = _autocast(x, weight, bias)
    if not _route(unsupported_reason(x, weight, bias), f"conv_transpose{nd}d"):
        sym = _torch_padding(pads)
        if sym is None:
            raise ValueError(f"conv_transpose{nd}d: torch's kernels (the fallback for "
                             f"{unsupported_reason(x, weight, bias)}) take symmetric padding "
                             f"only, got {padding!r}")
        tf = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
        return tf(x, weight, bias, stride, sym, opad, groups, dilation)
    fmt = _output_format(x, weight, nd)
    xb, batched = _unsqueeze(x, nd)
    y = _ops.conv_transpose(xb, weight, bias, stride, pads, opad, groups, dilation, strategy)
    return _ops.in_format(y, fmt) if batched else y.squeeze(0)


# The torch functions' own parameters; the others are fastconv's (CONV, TRANSPOSE).
_TORCH = table('''
input : Tensor, shape (N, C_in, *spatial) or (C_in, *spatial)
    Input; without the batch axis the result has none either.
bias : Tensor, shape (C_out,), optional
    Added to every output position of its channel.
''')


def _make_conv(nd):
    def f(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
          stride=1, padding=0, dilation=1, groups: int = 1, *, strategy: str = "auto",
          padding_mode: str = "zeros") -> torch.Tensor:
        return _conv(nd, input, weight, bias, stride, padding, dilation, groups, strategy,
                     padding_mode)

    f.__name__ = f.__qualname__ = f"conv{nd}d"
    f.__doc__ = f"""{nd}-D convolution with the signature of ``torch.nn.functional.conv{nd}d``.

    Plus fastconv's ``strategy=`` and ``padding_mode=``.

    Parameters
    ----------
    weight : Tensor, shape (C_out, C_in / groups, *kernel)
        Kernels with {nd} spatial axes.
    padding : int, tuple, "valid", "same", or (before, after) pairs, default 0
        As torch takes it (zeros on both sides of each axis; "same" for stride
        1 only), or fastconv's ``(before, after)`` pair per axis.

    Returns
    -------
    Tensor
        Differentiable (``fastconv::conv``, forward and reverse mode); computed
        by fastconv for CPU float32/float64 tensors, else by torch (see
        :func:`set_strict`); under ``torch.autocast("cpu")`` in the autocast
        dtype, by torch. channels_last when the input or the weight is.

    Raises
    ------
    UnsupportedTensorError
        In strict mode, for tensors fastconv cannot compute on.
    TypeError, ValueError
        For a malformed argument, as torch.
    """
    return shared_parameters(CONV, _TORCH)(f)


def _make_conv_transpose(nd):
    def f(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
          stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1, *,
          strategy: str = "auto") -> torch.Tensor:
        return _conv_transpose(nd, input, weight, bias, stride, padding, output_padding,
                               groups, dilation, strategy)

    f.__name__ = f.__qualname__ = f"conv_transpose{nd}d"
    f.__doc__ = f"""{nd}-D transposed convolution, as ``torch.nn.functional.conv_transpose{nd}d``.

    The same arguments, plus ``strategy=``.

    Parameters
    ----------
    weight : Tensor, shape (C_in, C_out / groups, *kernel)
        Kernels with {nd} spatial axes.

    Returns
    -------
    Tensor
        Differentiable (``fastconv::conv_transpose``); computed by fastconv
        for CPU float32/float64 tensors, else by torch (see :func:`set_strict`).

    Raises
    ------
    UnsupportedTensorError
        In strict mode, for tensors fastconv cannot compute on.
    TypeError, ValueError
        For a malformed argument, as torch.
    """
    return shared_parameters(TRANSPOSE, _TORCH)(f)


conv1d, conv2d, conv3d = (_make_conv(n) for n in (1, 2, 3))
conv_transpose1d, conv_transpose2d, conv_transpose3d = (_make_conv_transpose(n)
                                                        for n in (1, 2, 3))
