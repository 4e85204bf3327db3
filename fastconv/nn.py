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

import numpy as np

from ._api import conv as _conv
from ._api import conv_backward as _conv_backward
from ._padmode import check_mode as _check_padding_mode
from ._spec import _is_int, _sequence
from ._transpose import conv_transpose as _conv_transpose
from ._transpose import conv_transpose_backward as _conv_transpose_backward

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

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", *, output_padding=0,
                 dtype=np.float32, rng=None, strategy="auto", needs_input_grad=True):
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
    def parameters(self):
        """Yield ``(name, array, grad)`` for the weight and (if any) the bias.

        ``array`` is the parameter itself (update it in place); ``grad`` is its
        gradient summed over the ``backward`` calls since the layer was made or
        :meth:`zero_grad` last ran (zeros before any).
        """
        yield "weight", self.weight, self._grad("weight")
        if self.bias is not None:
            yield "bias", self.bias, self._grad("bias")

    def zero_grad(self):
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
    def n_parameters(self):
        """Number of trainable values (weight and bias)."""
        return self.weight.size + (0 if self.bias is None else self.bias.size)

    # -- passes -----------------------------------------------------------------
    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        """Output for ``x`` of shape ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``.

        Keeps a reference to ``x`` (not a copy) for :meth:`backward`: do not
        modify ``x`` in place before calling it.
        """
        x = np.asarray(x)
        self._x = x
        if self._transposed:
            return _conv_transpose(x, self.weight, self.bias, self.stride, self.padding,
                                   self.output_padding, self.groups, self.dilation,
                                   strategy=self.strategy)
        return _conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                     self.groups, strategy=self.strategy, padding_mode=self.padding_mode)

    def backward(self, grad_out, *, needs_input_grad=None):
        """Add dL/dweight and dL/dbias to ``.grads`` and return dL/dx.

        The gradients accumulate over calls until :meth:`zero_grad`, as in
        PyTorch.

        Parameters
        ----------
        grad_out : ndarray, the shape of the last ``forward``'s output
        needs_input_grad : bool, optional
            False skips computing dL/dx (a first layer needs none) and returns
            None; default: the layer's ``needs_input_grad``.

        Returns
        -------
        ndarray of the input's shape, or None
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


def _make(nd, transposed):
    name = f"{'ConvTranspose' if transposed else 'Conv'}{nd}d"
    sig = ("in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, "
           "groups=1, bias=True, padding_mode='zeros', *, output_padding=0"
           if transposed else
           "in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, "
           "groups=1, bias=True, padding_mode='zeros'")
    doc = f"""{nd}-D {'transposed ' if transposed else ''}convolution layer on NumPy arrays.

    ``{name}({sig}, dtype=np.float32, rng=None, strategy="auto", needs_input_grad=True)``

    Arguments as ``torch.nn.{name}`` (``padding`` also takes fastconv's
    ``(before, after)`` pairs{'' if transposed else ' and "same"/"valid"'}; ``padding_mode``
    {'"zeros" only, as in torch' if transposed
     else '"zeros", "reflect", "replicate" or "circular", as in torch'}), plus

    dtype : float32 or float64
    rng : numpy.random.Generator or int, optional
        Source of the initial weights (PyTorch's default initialization); an
        int is a seed (``numpy.random.default_rng(rng)``), None fresh entropy.
    strategy : str, default "auto"
        fastconv strategy for every pass.
    needs_input_grad : bool, default True
        False: :meth:`backward` skips dL/dx and returns None (a first layer).

    Attributes
    ----------
    weight : ndarray, {'(C_in, C_out/groups, *kernel)' if transposed
                       else '(C_out, C_in/groups, *kernel)'}
    bias : ndarray (C_out,) or None
    grads : dict
        ``{{"weight": ..., "bias": ...}}``: the gradients summed over the
        :meth:`backward` calls since the layer was made or :meth:`zero_grad`
        last ran (zeros before any; the bias entry is None without a bias).
        They accumulate as in PyTorch: call :meth:`zero_grad` once per step.
    """
    attrs = {"_nd": nd, "_transposed": transposed, "__doc__": doc, "__module__": __name__}
    if transposed:
        # torch's ConvTranspose order: (..., padding, output_padding, groups, bias, dilation)
        def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                     output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                     *, dtype=np.float32, rng=None, strategy="auto", needs_input_grad=True):
            _Layer.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                            dilation, groups, bias, padding_mode,
                            output_padding=output_padding, dtype=dtype, rng=rng,
                            strategy=strategy, needs_input_grad=needs_input_grad)
        attrs["__init__"] = __init__
        attrs["__doc__"] = doc.replace(sig, "in_channels, out_channels, kernel_size, stride=1, "
                                       "padding=0, output_padding=0, groups=1, bias=True, "
                                       "dilation=1, padding_mode='zeros'")
    return type(name, (_Layer,), attrs)


Conv1d, Conv2d, Conv3d = (_make(n, False) for n in (1, 2, 3))
ConvTranspose1d, ConvTranspose2d, ConvTranspose3d = (_make(n, True) for n in (1, 2, 3))
