"""ConvSpec: the one normalized description of a convolution problem.

Every public entry point turns its arguments into a :class:`ConvSpec` with
:func:`make_spec`. All argument checking happens here; strategies and kernels
trust a spec and the arrays prepared for it.
"""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Set
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._docstrings import CONV, shared_parameters
from ._typing import DTypeLike, Padding, PerAxis, Shape

__all__ = ["ConvSpec", "make_spec", "output_shape", "OPS"]

OPS = ("forward", "grad_input", "grad_weight")
_PAD_STRINGS = ("valid", "same", "full")
# Largest stride, dilation or padding: kernels index with C integers, and a
# larger value than this cannot describe a problem that fits in memory anyway.
_MAX = 2**31 - 1


# The two size formulas are written only here; the kernels' checks, the transposed
# convolution and the torch bridge's shape functions call them. Plain arithmetic on
# their arguments, so they also work on torch's symbolic sizes (SymInt).
def conv_output_size(size, kernel, stride=1, pad_before=0, pad_after=0, dilation=1):
    """Output length of a convolution along one axis.

    Parameters
    ----------
    size, kernel : int
        Input and kernel length along the axis.
    stride, pad_before, pad_after, dilation : int
        The layer's geometry along the axis.

    Returns
    -------
    int
        ``(size + pad_before + pad_after - dilation*(kernel - 1) - 1) // stride + 1``;
        below 1 when the dilated kernel is longer than the padded input.
    """
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size, kernel, stride=1, pad_before=0, pad_after=0,
                               output_padding=0, dilation=1):
    """Output length of a transposed convolution along one axis.

    The largest input length whose convolution output is ``size`` long, less the
    stride's remainder not asked for by ``output_padding`` (as PyTorch computes it).

    Parameters
    ----------
    size, kernel : int
        Input and kernel length along the axis.
    stride, pad_before, pad_after, output_padding, dilation : int
        The layer's geometry along the axis.

    Returns
    -------
    int
        ``(size - 1)*stride - pad_before - pad_after + dilation*(kernel - 1)
        + output_padding + 1``.
    """
    return ((size - 1) * stride - pad_before - pad_after + dilation * (kernel - 1)
            + output_padding + 1)


@dataclass(frozen=True)
class ConvSpec:
    """A normalized N-d (N = 1, 2, 3) convolution layer problem.

    Derived shapes are computed once per spec (``cached_property``): specs are
    remembered and reused by :func:`make_spec`, so repeated calls skip the work.

    Attributes
    ----------
    ndim : int
        Number of spatial axes (1, 2 or 3).
    batch : int
        Batch size ``N`` (1 for unbatched input).
    batched : bool
        Whether the user's input carried a batch axis.
    in_channels, out_channels, groups : int
    in_spatial, kernel, stride, dilation : tuple of int, length ``ndim``
    padding : tuple of (int, int), length ``ndim``
        Zeros added (before, after) each spatial axis.
    flip : bool
        True convolution (kernel flipped) instead of cross-correlation.
    dtype : numpy.dtype
        Compute and result dtype, float32 or float64.
    input_shape, weight_shape, output_shape : tuple of int
        The arrays' shapes (``input_shape`` and ``output_shape`` without the
        batch axis when unbatched).
    out_spatial : tuple of int
        Output size per spatial axis.
    in_channels_per_group, out_channels_per_group : int
        Channels of one group.
    kernel_size : int
        Taps of one kernel, ``prod(kernel)``.
    macs, flops : int
        Multiply-adds of one forward pass (each backward pass does as many),
        and twice that.
    itemsize : int
        Bytes of one element of ``dtype``.

    Notes
    -----
    The 5-D shapes and 3-entry tuples (``input_shape5``, ``stride3``, ...)
    describe the 3-D view every kernel works on: they are for the strategies.
    """

    ndim: int
    batch: int
    batched: bool
    in_channels: int
    out_channels: int
    groups: int
    in_spatial: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    flip: bool
    dtype: np.dtype

    # ---- shapes -----------------------------------------------------------
    @cached_property
    def padded_spatial(self):
        return tuple(i + b + a for i, (b, a) in zip(self.in_spatial, self.padding))

    @cached_property
    def out_spatial(self):
        return tuple(
            conv_output_size(i, k, s, b, a, d)
            for i, k, s, (b, a), d in zip(self.in_spatial, self.kernel, self.stride,
                                          self.padding, self.dilation)
        )

    @property
    def in_channels_per_group(self):
        """Input channels of one group."""
        return self.in_channels // self.groups

    @property
    def out_channels_per_group(self):
        """Output channels of one group."""
        return self.out_channels // self.groups

    @cached_property
    def input_shape(self):
        """Shape of the user's input (without batch axis if unbatched)."""
        lead = (self.batch,) if self.batched else ()
        return lead + (self.in_channels,) + self.in_spatial

    @cached_property
    def weight_shape(self):
        return (self.out_channels, self.in_channels_per_group) + self.kernel

    @cached_property
    def output_shape(self):
        lead = (self.batch,) if self.batched else ()
        return lead + (self.out_channels,) + self.out_spatial

    # ---- the 3-D view every kernel works on ------------------------------
    @staticmethod
    def _as3(t, fill):
        return (fill,) * (3 - len(t)) + tuple(t)

    @cached_property
    def input_shape5(self):
        return (self.batch, self.in_channels) + self._as3(self.in_spatial, 1)

    @cached_property
    def padded_shape5(self):
        return (self.batch, self.in_channels) + self._as3(self.padded_spatial, 1)

    @cached_property
    def weight_shape5(self):
        return (self.out_channels, self.in_channels_per_group) + self._as3(self.kernel, 1)

    @cached_property
    def output_shape5(self):
        return (self.batch, self.out_channels) + self._as3(self.out_spatial, 1)

    @cached_property
    def stride3(self):
        return self._as3(self.stride, 1)

    @cached_property
    def dilation3(self):
        return self._as3(self.dilation, 1)

    @cached_property
    def padding3(self):
        return self._as3(self.padding, (0, 0))

    @cached_property
    def kernel3(self):
        return self._as3(self.kernel, 1)

    # ---- work -------------------------------------------------------------
    @property
    def kernel_size(self):
        """Taps of one kernel, ``prod(kernel)``."""
        return math.prod(self.kernel)

    @cached_property
    def macs(self):
        """Multiply-adds of one forward pass (each backward pass does as many)."""
        return (
            self.batch
            * self.out_channels
            * math.prod(self.out_spatial)
            * self.in_channels_per_group
            * self.kernel_size
        )

    @property
    def flops(self):
        """Floating-point operations of one forward pass, ``2 * macs``."""
        return 2 * self.macs

    @property
    def itemsize(self):
        """Bytes of one element of ``dtype``."""
        return self.dtype.itemsize

    def key(self) -> tuple:
        """Hashable problem key (used by caches).

        Returns
        -------
        tuple
            Every field, the dtype as its ``str``: equal for equal problems.
        """
        return (
            self.ndim, self.batch, self.in_channels, self.out_channels, self.groups,
            self.in_spatial, self.kernel, self.stride, self.padding, self.dilation,
            self.flip, self.dtype.str,
        )


# ---------------------------------------------------------------------------
# argument normalization
# ---------------------------------------------------------------------------
def _is_int(v):
    """A Python or NumPy integer, not a bool (``True`` is no stride or size)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _show(v):
    """An argument or option for an error message: arrays by type, shape and dtype,
    long reprs cut."""
    if isinstance(v, np.ndarray):
        return f"{type(v).__name__} of shape {v.shape} and dtype {v.dtype}"
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _sequence(value):
    """``tuple(value)`` for a list, tuple or array; TypeError for anything else.

    A dict or set would iterate over its keys in some order: never what was meant.
    """
    if isinstance(value, (str, bytes, Mapping, Set)):
        raise TypeError
    return tuple(value)


def _per_axis(value, ndim, name, minimum):
    """int or length-ndim sequence of ints, each >= minimum -> tuple."""
    if _is_int(value):
        out = (int(value),) * ndim
    else:
        try:
            out = _sequence(value)
        except TypeError:
            raise TypeError(
                f"{name} must be an int or a tuple of {ndim} ints, got "
                f"{type(value).__name__} {_show(value)}"
            ) from None
        if len(out) != ndim or not all(_is_int(v) for v in out):
            raise ValueError(
                f"{name} must be an int or a tuple of {ndim} ints for a {ndim}-d "
                f"convolution, got {_show(value)}"
            )
        out = tuple(int(v) for v in out)
    if any(v < minimum for v in out):
        raise ValueError(f"{name} must be >= {minimum} on every axis, got {_show(value)}")
    if any(v > _MAX for v in out):
        raise ValueError(f"{name} must be at most {_MAX} on every axis, got {_show(value)}")
    return out


def _padding(padding, ndim, kernel, stride, dilation):
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in _PAD_STRINGS:
            raise ValueError(
                f"padding must be an int, a tuple, or one of {_PAD_STRINGS}, got {padding!r}"
            )
        if mode == "valid":
            return ((0, 0),) * ndim
        if mode == "full":
            return tuple((d * (k - 1),) * 2 for k, d in zip(kernel, dilation))
        # "same": output size equals input size; defined (like PyTorch) for stride 1 only.
        if any(s != 1 for s in stride):
            raise ValueError(
                f"padding='same' is not supported for stride != 1 (got stride={stride}); "
                "give explicit padding instead"
            )
        pads = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if _is_int(padding):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if padding > _MAX:
            raise ValueError(f"padding must be at most {_MAX}, got {padding}")
        return ((int(padding),) * 2,) * ndim
    try:
        items = _sequence(padding)
    except TypeError:
        raise TypeError(
            f"padding must be an int, a tuple, or a string, got {type(padding).__name__} "
            f"{_show(padding)}"
        ) from None
    if len(items) != ndim:
        raise ValueError(
            f"padding must have one entry per spatial axis ({ndim}), got {_show(padding)}"
        )
    pads = []
    for p in items:
        if _is_int(p):
            pair = (int(p), int(p))
        else:
            try:
                pair = _sequence(p)
            except TypeError:
                raise TypeError(f"padding entries must be ints or (before, after) pairs, "
                                f"got {_show(padding)}") from None
            if len(pair) != 2 or not all(_is_int(v) for v in pair):
                raise ValueError(
                    f"padding entries must be ints or (before, after) pairs, got {_show(padding)}"
                )
            pair = (int(pair[0]), int(pair[1]))
        if min(pair) < 0:
            raise ValueError(f"padding must be >= 0, got {_show(padding)}")
        if max(pair) > _MAX:
            raise ValueError(f"padding must be at most {_MAX}, got {_show(padding)}")
        pads.append(pair)
    return tuple(pads)


_result_dtypes = {}


def result_dtype(*dtypes):
    """Compute dtype: ``np.result_type`` of the inputs, at least float32.

    Raises TypeError for complex, object, string and other non-real dtypes.
    """
    try:
        return _result_dtypes[dtypes]   # float32/float64 results of common inputs
    except (KeyError, TypeError):
        pass
    dt = _result_dtype(dtypes)
    if dt is not None:
        try:
            if len(_result_dtypes) < 256:
                _result_dtypes[dtypes] = dt
        except TypeError:  # an unhashable dtype-like
            pass
        return dt
    warnings.warn(f"fastconv computes in float32 or float64: {np.result_type(*dtypes)} "
                  "input is computed and returned in float64", RuntimeWarning, stacklevel=3)
    return np.dtype(np.float64)


def _result_dtype(dtypes):
    """The compute dtype, or None when it must fall back to float64 with a warning."""
    for dt in dtypes:
        dt = np.dtype(dt)
        if dt.kind not in "biuf":
            raise TypeError(
                f"fastconv computes in float32 or float64; arrays of dtype {dt} "
                "(complex, object, string, ...) are not supported"
            )
    dt = np.result_type(*dtypes, np.float32)
    if dt not in (np.float32, np.float64):  # float16 -> float32 handled above; longdouble
        return None
    return np.dtype(dt)


def _shape(shape, name):
    try:
        shp = _sequence(shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints, got {type(shape).__name__} "
                        f"{_show(shape)}") from None
    if not all(_is_int(v) for v in shp):
        raise TypeError(f"{name} must be a tuple of ints, got {_show(shape)}")
    return tuple(int(v) for v in shp)


_spec_cache = {}


@shared_parameters(CONV)
def make_spec(input_shape: Shape, weight_shape: Shape, stride: PerAxis = 1,
              padding: Padding = 0, dilation: PerAxis = 1, groups: int = 1, *,
              flip: bool = False, dtype: DTypeLike = np.float64,
              ndim: int | None = None) -> ConvSpec:
    """Validate every argument of a convolution and return its :class:`ConvSpec`.

    Parameters
    ----------
    input_shape : tuple of int
        ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.
    weight_shape : tuple of int
        ``(C_out, C_in / groups, *kernel)``.
    dtype : dtype-like, default float64
        Compute dtype (float32 or float64).

    Returns
    -------
    ConvSpec
        The normalized problem: padding as ``(before, after)`` pairs, output
        shape, work. Equal arguments give the same (frozen) object.

    Raises
    ------
    TypeError, ValueError
        For every malformed argument, with a message naming it.

    Examples
    --------
    >>> import fastconv
    >>> spec = fastconv.make_spec((8, 3, 32, 32), (16, 3, 3, 3), padding="same")
    >>> spec.padding, spec.output_shape, spec.macs
    (((1, 1), (1, 1)), (8, 16, 32, 32), 3538944)
    """
    # Validated specs are remembered by their (hashable) arguments, so a layer
    # called again with the same shapes skips validation. The key includes the
    # argument types, as 2 and 2.0 (or True and 1) compare equal but validate
    # differently.
    args = (input_shape, weight_shape, stride, padding, dilation, groups, flip, dtype, ndim)
    try:
        key = _plain_key(args) or _typed(args)
        return _spec_cache[key]
    except KeyError:
        pass
    except TypeError:  # unhashable argument (a list, an array): validate every time
        return _make_spec(*args)
    spec = _make_spec(*args)
    if len(_spec_cache) >= 1024:
        _spec_cache.clear()
    _spec_cache[key] = spec
    return spec


def _plain(a):
    """True for an int, or a tuple of ints or of tuples of ints (not bools): what
    array shapes and the usual stride and padding arguments (pairs too) are."""
    t = type(a)
    if t is int:
        return True
    if t is not tuple:
        return False
    for v in a:
        if type(v) is not int and not (type(v) is tuple and all(type(u) is int for u in v)):
            return False
    return True


def _plain_key(args):
    """A cheap cache key when every argument is plain (the common call), else None.

    Tagged with its own first element, so it never equals a :func:`_typed` key.
    """
    *shapes, flip, dtype, ndim = args
    if (type(flip) is bool and (ndim is None or type(ndim) is int)
            and all(map(_plain, shapes))):
        return (_plain_key, *shapes, flip, type(dtype), dtype, ndim)
    return None


def _typed(a):
    """Hashable key of an argument that tells 2 from 2.0 and True, also when nested."""
    if isinstance(a, tuple):
        return (tuple, tuple(_typed(v) for v in a))
    return (type(a), a)


def _make_spec(input_shape, weight_shape, stride, padding, dilation, groups, flip, dtype, ndim):
    input_shape = _shape(input_shape, "input shape")
    weight_shape = _shape(weight_shape, "weight shape")
    if ndim is not None and not _is_int(ndim):
        raise TypeError(f"ndim must be None or an int (1, 2 or 3), got {_show(ndim)}")
    if ndim is not None and ndim not in (1, 2, 3):
        raise ValueError(f"ndim must be 1, 2 or 3, got {ndim}")
    if ndim is None:
        ndim = len(weight_shape) - 2
        if ndim not in (1, 2, 3):
            raise ValueError(
                f"weight must have 3, 4 or 5 dimensions (C_out, C_in/groups, *kernel), "
                f"got shape {weight_shape}"
            )
    elif len(weight_shape) != ndim + 2:
        raise ValueError(
            f"weight for a {ndim}-d convolution must have {ndim + 2} dimensions "
            f"(C_out, C_in/groups, *kernel), got shape {weight_shape}"
        )
    if len(input_shape) == ndim + 2:
        batched = True
        batch, cin, spatial = input_shape[0], input_shape[1], input_shape[2:]
    elif len(input_shape) == ndim + 1:
        batched = False
        batch, cin, spatial = 1, input_shape[0], input_shape[1:]
    else:
        raise ValueError(
            f"input for a {ndim}-d convolution must have {ndim + 2} dimensions "
            f"(N, C_in, *spatial) or {ndim + 1} (C_in, *spatial), got shape {input_shape}"
        )
    # A zero-size batch is allowed (as in PyTorch: empty output, zero weight
    # gradient); the public functions return without running a kernel.
    if min(input_shape[1:] if batched else input_shape) <= 0 or batch < 0:
        raise ValueError(f"input has a zero or negative size: shape {input_shape}")
    if min(weight_shape) <= 0:
        raise ValueError(f"weight has a zero or negative size: shape {weight_shape}")
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    cout, cin_g = weight_shape[0], weight_shape[1]
    if cin % groups:
        raise ValueError(
            f"input channels ({cin}, input shape {input_shape}) must be divisible by "
            f"groups ({groups})"
        )
    if cout % groups:
        raise ValueError(
            f"output channels ({cout}, weight shape {weight_shape}) must be divisible by "
            f"groups ({groups})"
        )
    if cin_g * groups != cin:
        raise ValueError(
            f"weight shape {weight_shape} expects {cin_g * groups} input channels "
            f"({cin_g} per group x {groups} groups), but the input shape {input_shape} "
            f"has {cin}"
        )
    kernel = weight_shape[2:]
    stride = _per_axis(stride, ndim, "stride", 1)
    dilation = _per_axis(dilation, ndim, "dilation", 1)
    pads = _padding(padding, ndim, kernel, stride, dilation)
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError(f"flip must be True or False, got {flip!r}")
    spec = ConvSpec(
        ndim=ndim, batch=batch, batched=batched, in_channels=cin, out_channels=cout,
        groups=groups, in_spatial=tuple(spatial), kernel=tuple(kernel), stride=stride,
        padding=pads, dilation=dilation, flip=bool(flip), dtype=np.dtype(dtype),
    )
    for ax, (p, k, d) in enumerate(zip(spec.padded_spatial, kernel, dilation)):
        span = d * (k - 1) + 1
        if span > p:
            raise ValueError(
                f"kernel larger than the padded input on spatial axis {ax}: the dilated "
                f"kernel spans {span} but the padded input has {p} "
                f"(input shape {input_shape}, weight shape {weight_shape}, "
                f"padding {pads}, dilation {dilation})"
            )
    return spec


@shared_parameters(CONV)
def output_shape(input_shape: Shape, weight_shape: Shape, stride: PerAxis = 1,
                 padding: Padding = 0, dilation: PerAxis = 1, groups: int = 1) -> Shape:
    """Output shape of a convolution, following ``(I + pads - d*(K-1) - 1)//s + 1``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``.
    weight_shape : tuple of int
        ``(C_out, C_in/groups, *kernel)``.

    Returns
    -------
    tuple of int
        ``(N, C_out, *out_spatial)`` (without ``N`` for unbatched input).

    Raises
    ------
    TypeError, ValueError
        For a malformed argument or shapes that do not fit together.

    Examples
    --------
    >>> from fastconv import output_shape
    >>> output_shape((1, 3, 32, 32), (6, 3, 5, 5))
    (1, 6, 28, 28)
    """
    return make_spec(input_shape, weight_shape, stride, padding, dilation, groups).output_shape
