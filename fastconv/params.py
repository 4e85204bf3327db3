"""Parameter counts: a conv layer against the fully connected layer with the same input and output.

A fully connected (dense) layer needs one weight per (input element, output
element) pair; a convolution slides one small kernel over the whole input, so
its weight count does not grow with the image. :func:`conv_vs_dense` puts the
two side by side for one layer.

Examples
--------
LeNet-5's first layer, C1 (1x32x32 -> 6x28x28, 5x5 kernels):

>>> from fastconv.params import conv_vs_dense
>>> p = conv_vs_dense((1, 32, 32), (6, 1, 5, 5))
>>> p.conv_total, p.dense_total
(156, 4821600)

AlexNet's conv1 (3x227x227 -> 96x55x55, 11x11 kernels, stride 4):

>>> p = conv_vs_dense((3, 227, 227), (96, 3, 11, 11), stride=4)
>>> p.conv_total, f"{p.dense_total:.3g}"
(34944, '4.49e+10')
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ._docstrings import CONV, shared_parameters
from ._spec import ConvSpec, make_spec
from ._typing import Padding, PerAxis, Shape

__all__ = ["ParamCounts", "conv_vs_dense", "from_spec"]


@dataclass(frozen=True)
class ParamCounts:
    """Parameters and multiply-adds of a conv layer and its dense equivalent.

    All counts are for one example (they do not depend on the batch size).

    Attributes
    ----------
    ndim : int
        Number of spatial axes (1, 2 or 3).
    in_shape : tuple of int
        ``(C_in, *in_spatial)``: one example's input.
    out_shape : tuple of int
        ``(C_out, *out_spatial)``: one example's output.
    kernel : tuple of int
        Kernel size per spatial axis.
    groups : int
    bias : bool
        Whether both layers carry a bias (one per output channel for the conv
        layer, one per output element for the dense layer).
    conv_weights, conv_biases : int
        ``C_out * C_in/groups * prod(kernel)`` and ``C_out`` (0 without bias).
    dense_weights, dense_biases : int
        ``prod(in_shape) * prod(out_shape)`` and ``prod(out_shape)`` (0 without bias).
    conv_macs, dense_macs : int
        Multiply-adds of one forward pass: ``prod(out_shape) * C_in/groups *
        prod(kernel)`` for the conv layer, ``dense_weights`` for the dense layer.
    """

    ndim: int
    in_shape: tuple
    out_shape: tuple
    kernel: tuple
    groups: int
    bias: bool
    conv_weights: int
    conv_biases: int
    dense_weights: int
    dense_biases: int
    conv_macs: int
    dense_macs: int

    @property
    def conv_total(self) -> int:
        """Weights plus biases of the conv layer."""
        return self.conv_weights + self.conv_biases

    @property
    def dense_total(self) -> int:
        """Weights plus biases of the dense layer."""
        return self.dense_weights + self.dense_biases

    @property
    def ratio(self) -> float:
        """``dense_total / conv_total``: how many times more parameters the dense layer has."""
        return self.dense_total / self.conv_total

    @property
    def macs_ratio(self) -> float:
        """``dense_macs / conv_macs``."""
        return self.dense_macs / self.conv_macs

    def as_dict(self) -> dict:
        """Plain dict (JSON-ready) of every count, the totals and the ratios.

        Returns
        -------
        dict
            The fields (tuples as lists), ``conv_total``, ``dense_total``,
            ``ratio`` and ``macs_ratio``.
        """
        return {
            "ndim": self.ndim, "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape), "kernel": list(self.kernel),
            "groups": self.groups, "bias": self.bias,
            "conv_weights": self.conv_weights, "conv_biases": self.conv_biases,
            "conv_total": self.conv_total, "dense_weights": self.dense_weights,
            "dense_biases": self.dense_biases, "dense_total": self.dense_total,
            "ratio": self.ratio, "conv_macs": self.conv_macs,
            "dense_macs": self.dense_macs, "macs_ratio": self.macs_ratio,
        }

    def __str__(self):
        shp = lambda t: "x".join(map(str, t))  # noqa: E731
        return (
            f"{shp(self.in_shape)} -> {shp(self.out_shape)}, kernel {shp(self.kernel)}"
            f"{f', groups {self.groups}' if self.groups > 1 else ''}"
            f"{'' if self.bias else ', no bias'}:\n"
            f"  conv  {self.conv_total:>20,d} parameters {self.conv_macs:>20,d} multiply-adds\n"
            f"  dense {self.dense_total:>20,d} parameters {self.dense_macs:>20,d} multiply-adds\n"
            f"  dense / conv: {self.ratio:.4g}x parameters, {self.macs_ratio:.4g}x multiply-adds"
        )


def from_spec(spec: ConvSpec, *, bias: bool = True) -> ParamCounts:
    """:class:`ParamCounts` of the layer a :class:`~fastconv.ConvSpec` describes.

    Parameters
    ----------
    spec : ConvSpec
        The layer, from :func:`fastconv.make_spec`.
    bias : bool, default True
        Count a bias in both layers.

    Returns
    -------
    ParamCounts
        The counts of the conv layer and of its dense equivalent.
    """
    cin_g = spec.in_channels // spec.groups
    in_shape = (spec.in_channels,) + tuple(spec.in_spatial)
    out_shape = (spec.out_channels,) + tuple(spec.out_spatial)
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    k = math.prod(spec.kernel)
    return ParamCounts(
        ndim=spec.ndim, in_shape=in_shape, out_shape=out_shape, kernel=tuple(spec.kernel),
        groups=spec.groups, bias=bool(bias),
        conv_weights=spec.out_channels * cin_g * k,
        conv_biases=spec.out_channels if bias else 0,
        dense_weights=n_in * n_out,
        dense_biases=n_out if bias else 0,
        conv_macs=n_out * cin_g * k,
        dense_macs=n_in * n_out,
    )


@shared_parameters(CONV)
def conv_vs_dense(input_shape: Shape, weight_shape: Shape, stride: PerAxis = 1,
                  padding: Padding = 0, dilation: PerAxis = 1, groups: int = 1, *,
                  bias: bool = True) -> ParamCounts:
    """Parameter and multiply-add counts of a conv layer and of the equivalent dense layer.

    The dense layer maps the same input, flattened (``C_in * prod(in_spatial)``
    values), to the same output (``C_out * prod(out_spatial)`` values).

    Parameters
    ----------
    input_shape : tuple of int
        ``(C_in, *spatial)`` or ``(N, C_in, *spatial)``; ``N`` does not change
        any count.
    weight_shape : tuple of int
        ``(C_out, C_in / groups, *kernel)``; its length sets the number of
        spatial axes (1, 2 or 3).
    bias : bool, default True
        Count a bias in both layers (``C_out`` for the conv layer,
        ``C_out * prod(out_spatial)`` for the dense one).

    Returns
    -------
    ParamCounts
        ``conv_total``, ``dense_total``, ``ratio`` (dense / conv), ``conv_macs``,
        ``dense_macs`` and the parts they are made of.

    Raises
    ------
    TypeError, ValueError
        For the same malformed arguments :func:`fastconv.conv` rejects.

    Examples
    --------
    LeNet-5 C1, 1x32x32 -> 6x28x28 with 5x5 kernels: 6*25 + 6 = 156 parameters,
    against (1*32*32) * (6*28*28) + 6*28*28 = 4,821,600 for a dense layer.

    >>> from fastconv.params import conv_vs_dense
    >>> p = conv_vs_dense((1, 32, 32), (6, 1, 5, 5))
    >>> p.out_shape, p.conv_total, p.dense_total
    ((6, 28, 28), 156, 4821600)
    >>> round(p.ratio)
    30908

    AlexNet conv1, 3x227x227 -> 96x55x55 with 11x11 kernels and stride 4:
    96*3*121 + 96 = 34,944 parameters, against about 4.49e10.

    >>> p = conv_vs_dense((3, 227, 227), (96, 3, 11, 11), stride=4)
    >>> p.out_shape, p.conv_total, p.dense_total
    ((96, 55, 55), 34944, 44892355200)
    >>> p.conv_macs, p.dense_macs
    (105415200, 44892064800)
    """
    spec = make_spec(input_shape, weight_shape, stride, padding, dilation, groups)
    return from_spec(spec, bias=bias)
