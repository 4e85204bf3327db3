"""NumPy convolution layers: parameters, ``forward``, ``backward``. Nothing more.

Each layer takes PyTorch's constructor arguments, holds ``.weight`` and
``.bias`` as ndarrays (PyTorch's default initialization, drawn from a NumPy
``Generator`` or an int seed), keeps in ``forward`` what ``backward`` needs, and
in ``backward`` adds dL/dweight and dL/dbias to ``.grads`` and returns dL/dx.
There is no autograd graph and no optimizer: a training step is a few explicit
lines.

Gradients accumulate as in PyTorch: each ``backward`` adds to ``.grads``
(zeros when the layer is made) until :meth:`~Conv2d.zero_grad` sets them back
to zero, so call it once per step (or sum several batches' gradients on
purpose by not calling it).

>>> import numpy as np
>>> from fastconv import nn
>>> conv = nn.Conv2d(1, 4, 3, padding=1, rng=np.random.default_rng(0))
>>> x = np.ones((2, 1, 8, 8), np.float32)
>>> conv.zero_grad()                           # start of a step
>>> y = conv.forward(x)                        # (2, 4, 8, 8)
>>> gx = conv.backward(np.ones_like(y))        # dL/dx; conv.grads += dL/dweight, dL/dbias
>>> for name, p, g in conv.parameters():
...     p -= 0.1 * g                           # plain SGD, in place
>>> conv.n_parameters
40
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from ._api import conv as _conv
from ._api import conv_backward as _conv_backward
from ._docstrings import CONV as _CONV
from ._docstrings import TRANSPOSE as _TRANSPOSE
from ._docstrings import shared_parameters as _shared_parameters
from ._docstrings import table as _table
from ._padmode import check_mode as _check_padding_mode
from ._spec import _is_int, _sequence
from ._transpose import conv_transpose as _conv_transpose
from ._transpose import conv_transpose_backward as _conv_transpose_backward
from ._typing import ArrayLike as _ArrayLike
from ._typing import DTypeLike as _DTypeLike
from ._typing import Padding as _Padding
from ._typing import PerAxis as _PerAxis
from ._typing import TransposePadding as _TransposePadding

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d"]


def _ntuple(v, nd, name):
    if _is_int(v):
        t = (v,) * nd
    else:
        try:
            t = _sequence(v)
        except TypeError:
            raise TypeError(f"{name} must be an int or a tuple of {nd} ints, got "
                            f"{type(v).__name__} {v!r}") from None
        if not all(_is_int(a) for a in t):
            raise TypeError(f"{name} must be an int or a tuple of {nd} ints, got {v!r}")
    if len(t) != nd or not all(a >= 1 for a in t):
        raise ValueError(f"{name} must be a positive int or {nd} positive ints, got {v!r}")
    return tuple(int(a) for a in t)


def _generator(rng):
    """A NumPy random generator from ``rng``: None (fresh entropy), an int seed,
    a ``Generator`` or a legacy ``RandomState`` (as scikit-learn's ``random_state``)."""
    if rng is None or _is_int(rng):
        return np.random.default_rng(rng)
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    raise TypeError(f"rng must be None, an int seed, a numpy.random.Generator or "
                    f"RandomState, got {type(rng).__name__} {rng!r}")


class _Layer:
    """Shared parameter handling; subclasses set ``_transposed`` and ``_nd``."""

    _nd = 2
    _transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _PerAxis,
                 stride: _PerAxis = 1, padding: _Padding = 0, dilation: _PerAxis = 1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *,
                 output_padding: _PerAxis = 0, dtype: _DTypeLike = np.float32,
                 rng: int | np.random.Generator | np.random.RandomState | None = None,
                 strategy: str = "auto", needs_input_grad: bool = True) -> None:
        nd = self._nd
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
            if not _is_int(v):
                raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
            if v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        in_channels, out_channels, groups = int(in_channels), int(out_channels), int(groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        if _check_padding_mode(padding_mode) != "zeros" and self._transposed:
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _ntuple(kernel_size, nd, "kernel_size")
        self.stride = _ntuple(stride, nd, "stride")
        self.dilation = _ntuple(dilation, nd, "dilation")
        self.padding = padding
        self.padding_mode = padding_mode
        self.output_padding = output_padding
        self.strategy = strategy
        self.needs_input_grad = needs_input_grad
        if self._transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        # torch's default: kaiming_uniform_(a=sqrt(5)) for the weight and the same
        # bound for the bias, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in =
        # weight.shape[1] * prod(kernel) for both the conv and the transposed conv.
        rng = _generator(rng)
        bound = 1.0 / math.sqrt(shape[1] * math.prod(self.kernel_size))
        self.weight = rng.uniform(-bound, bound, shape).astype(dtype)
        self.bias = rng.uniform(-bound, bound, out_channels).astype(dtype) if bias else None
        self.grads = {"weight": np.zeros_like(self.weight),
                      "bias": None if self.bias is None else np.zeros_like(self.bias)}
        self._x = None

    # -- parameters -------------------------------------------------------------
    def parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(name, array, grad)`` for the weight and (if any) the bias.

        Yields
        ------
        name : {"weight", "bias"}
            The parameter's name.
        array : ndarray
            The parameter itself: update it in place.
        grad : ndarray
            Its gradient summed over the ``backward`` calls since the layer
            was made or :meth:`zero_grad` last ran (zeros before any).
        """
        yield "weight", self.weight, self._grad("weight")
        if self.bias is not None:
            yield "bias", self.bias, self._grad("bias")

    def zero_grad(self) -> None:
        """Set the accumulated gradients (``.grads``) to zero, in place.

        As ``torch.nn.Module.zero_grad``: :meth:`backward` adds to the
        gradients, so call this once per training step.
        """
        for name in ("weight", "bias"):
            g = self._grad(name)
            if g is not None:
                g.fill(0)

    def _grad(self, name):
        """``.grads[name]`` as an array of the parameter's shape and dtype (a new
        zero array if it was replaced or removed); None for a missing bias."""
        p = getattr(self, name)
        if p is None:
            return None
        g = self.grads.get(name)
        if not isinstance(g, np.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
            g = self.grads[name] = np.zeros_like(p)
        return g

    @property
    def n_parameters(self) -> int:
        """Number of trainable values (weight and bias)."""
        return self.weight.size + (0 if self.bias is None else self.bias.size)

    # -- passes -----------------------------------------------------------------
    def __call__(self, x):
        return self.forward(x)

    def forward(self, x: _ArrayLike) -> np.ndarray:
        """The layer's output for ``x``; calling the layer does the same.

        Keeps a reference to ``x`` (not a copy) for :meth:`backward`: do not
        modify ``x`` in place before calling it.

        Parameters
        ----------
        x : array_like, shape (N, C_in, *spatial) or (C_in, *spatial)
            Input; without the batch axis the output has none either.

        Returns
        -------
        ndarray, shape (N, C_out, *out_spatial) or (C_out, *out_spatial)
            In the dtype of ``x`` and the weight (at least float32).
        """
        x = np.asarray(x)
        self._x = x
        if self._transposed:
            return _conv_transpose(x, self.weight, self.bias, self.stride, self.padding,
                                   self.output_padding, self.groups, self.dilation,
                                   strategy=self.strategy)
        return _conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                     self.groups, strategy=self.strategy, padding_mode=self.padding_mode)

    def backward(self, grad_out: _ArrayLike, *,
                 needs_input_grad: bool | None = None) -> np.ndarray | None:
        """Add dL/dweight and dL/dbias to ``.grads`` and return dL/dx.

        The gradients accumulate over calls until :meth:`zero_grad`, as in
        PyTorch.

        Parameters
        ----------
        grad_out : array_like, the shape of the last ``forward``'s output
            dL/dy.
        needs_input_grad : bool, optional
            False skips computing dL/dx (a first layer needs none) and returns
            None; default: the layer's ``needs_input_grad``.

        Returns
        -------
        ndarray of the input's shape, or None
            dL/dx of the last ``forward``'s input.

        Raises
        ------
        RuntimeError
            When :meth:`forward` has not run.
        ValueError
            When ``grad_out`` does not have the output's shape.
        """
        if self._x is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        need_x = self.needs_input_grad if needs_input_grad is None else needs_input_grad
        needs = ("weight",) + (("input",) if need_x else ()) + (
            ("bias",) if self.bias is not None else ())
        if self._transposed:
            gx, gw, gb = _conv_transpose_backward(
                self._x, self.weight, grad_out, self.stride, self.padding, self.output_padding,
                self.groups, self.dilation, strategy=self.strategy, needs=needs)
        else:
            gx, gw, gb = _conv_backward(self._x, self.weight, grad_out, self.stride,
                                        self.padding, self.dilation, self.groups,
                                        strategy=self.strategy, needs=needs,
                                        padding_mode=self.padding_mode)
        self._grad("weight")[...] += gw
        if gb is not None:
            self._grad("bias")[...] += gb
        return gx

    def __repr__(self):
        s = (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
             f"kernel_size={self.kernel_size}, stride={self.stride}")
        if self.padding not in (0, (0,) * self._nd):
            s += f", padding={self.padding}"
        if self._transposed and self.output_padding not in (0, (0,) * self._nd):
            s += f", output_padding={self.output_padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        if self.strategy != "auto":
            s += f", strategy={self.strategy!r}"
        return s + ")"


# The layers' parameters not in the shared tables (a later table wins): the
# transposed layers' padding_mode, and output_padding, which the convolution
# layers take (one constructor for all) and ignore.
_LAYER = _table('''
padding_mode : {"zeros"}, default "zeros"
    Only "zeros", as in torch's transposed convolution layers.
output_padding : int or tuple of int, default 0
    Not used by a convolution layer: its constructor is the transposed
    layers', which use it.
''')


def _make(nd, transposed):
    name = f"{'ConvTranspose' if transposed else 'Conv'}{nd}d"
    what = "transposed convolution" if transposed else "convolution"
    w_shape = "(C_in, C_out/groups, *kernel)" if transposed else "(C_out, C_in/groups, *kernel)"
    doc = f"""{nd}-D {what} layer on NumPy arrays.

    Arguments as ``torch.nn.{name}``, plus ``dtype``, ``rng``, ``strategy`` and
    ``needs_input_grad``.

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    out_channels : int
        Channels of the output.
    kernel_size : int or tuple of int
        Kernel size: one int for every spatial axis, or one per axis.
    bias : bool, default True
        Whether the layer has a bias (one value per output channel).
    dtype : float32 or float64, default float32
        dtype of the weight and bias.
    rng : int, numpy.random.Generator, numpy.random.RandomState or None, optional
        Source of the initial weights (PyTorch's default initialization); an
        int is a seed (``numpy.random.default_rng(rng)``), None fresh entropy.
    needs_input_grad : bool, default True
        False: :meth:`backward` skips dL/dx and returns None (a first layer).

    Attributes
    ----------
    weight : ndarray, shape {w_shape}
        The kernels, updated in place by a training step.
    bias : ndarray, shape (C_out,), or None
        The bias, None without one.
    grads : dict
        ``grads["weight"]`` and ``grads["bias"]``: the gradients summed over
        the :meth:`backward` calls since the layer was made or :meth:`zero_grad`
        last ran (zeros before any; the bias entry is None without a bias).
        They accumulate as in PyTorch: call :meth:`zero_grad` once per step.
    """
    attrs = {"_nd": nd, "_transposed": transposed, "__doc__": doc, "__module__": __name__}
    if transposed:
        # torch's ConvTranspose order: (..., padding, output_padding, groups, bias, dilation)
        def __init__(self, in_channels: int, out_channels: int, kernel_size: _PerAxis,
                     stride: _PerAxis = 1, padding: _TransposePadding = 0,
                     output_padding: _PerAxis = 0, groups: int = 1, bias: bool = True,
                     dilation: _PerAxis = 1,
                     padding_mode: str = "zeros", *, dtype: _DTypeLike = np.float32,
                     rng: int | np.random.Generator | np.random.RandomState | None = None,
                     strategy: str = "auto", needs_input_grad: bool = True) -> None:
            _Layer.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                            dilation, groups, bias, padding_mode,
                            output_padding=output_padding, dtype=dtype, rng=rng,
                            strategy=strategy, needs_input_grad=needs_input_grad)
        attrs["__init__"] = __init__
    tables = (_LAYER, _TRANSPOSE) if transposed else (_LAYER, _CONV)
    return _shared_parameters(*tables)(type(name, (_Layer,), attrs))


Conv1d, Conv2d, Conv3d = (_make(n, False) for n in (1, 2, 3))
ConvTranspose1d, ConvTranspose2d, ConvTranspose3d = (_make(n, True) for n in (1, 2, 3))
