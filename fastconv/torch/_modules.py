"""Drop-in modules (subclasses of torch's conv modules) and :func:`convert`."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as tnn

from . import _functional as Fc

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d", "convert", "ConvertReport"]


class _FastConvMixin:
    """``strategy`` attribute and its repr; state_dict and init stay torch's."""

    strategy = "auto"  # class default: a module converted in place has it too

    def extra_repr(self):
        s = super().extra_repr()
        return s if self.strategy == "auto" else f"{s}, strategy={self.strategy!r}"


def _conv_class(nd, base):
    fn = (Fc.conv1d, Fc.conv2d, Fc.conv3d)[nd - 1]

    class C(_FastConvMixin, base):
        def __init__(self, *args, strategy="auto", **kwargs):
            super().__init__(*args, **kwargs)
            self.strategy = strategy

        def _conv_forward(self, input, weight, bias):
            if self.padding_mode != "zeros":  # torch pads, then convolves with its kernels
                return super()._conv_forward(input, weight, bias)
            return fn(input, weight, bias, self.stride, self.padding, self.dilation,
                      self.groups, strategy=self.strategy)

    C.__name__ = C.__qualname__ = base.__name__
    C.__module__ = "fastconv.torch"
    C.__doc__ = (f"``torch.nn.{base.__name__}`` computed by fastconv (same constructor, "
                 "repr and state_dict) plus the keyword ``strategy=\"auto\"``.\n\n"
                 "padding_mode other than 'zeros' runs on torch's kernels; so does a module "
                 "moved to another device or dtype (see :func:`fastconv.torch.set_strict`).")
    return C


def _transpose_class(nd, base):
    fn = (Fc.conv_transpose1d, Fc.conv_transpose2d, Fc.conv_transpose3d)[nd - 1]

    class C(_FastConvMixin, base):
        def __init__(self, *args, strategy="auto", **kwargs):
            super().__init__(*args, **kwargs)
            self.strategy = strategy

        def forward(self, input, output_size=None):
            if self.padding_mode != "zeros":
                return super().forward(input, output_size)  # torch's own error
            output_padding = self._output_padding(input, output_size, self.stride,
                                                  self.padding, self.kernel_size, nd,
                                                  self.dilation)
            return fn(input, self.weight, self.bias, self.stride, self.padding,
                      output_padding, self.groups, self.dilation, strategy=self.strategy)

    C.__name__ = C.__qualname__ = base.__name__
    C.__module__ = "fastconv.torch"
    C.__doc__ = (f"``torch.nn.{base.__name__}`` computed by fastconv (same constructor, "
                 "repr and state_dict) plus the keyword ``strategy=\"auto\"``.")
    return C


Conv1d, Conv2d, Conv3d = (_conv_class(n, b) for n, b in
                          ((1, tnn.Conv1d), (2, tnn.Conv2d), (3, tnn.Conv3d)))
ConvTranspose1d, ConvTranspose2d, ConvTranspose3d = (
    _transpose_class(n, b) for n, b in
    ((1, tnn.ConvTranspose1d), (2, tnn.ConvTranspose2d), (3, tnn.ConvTranspose3d)))

_SWAP = {tnn.Conv1d: Conv1d, tnn.Conv2d: Conv2d, tnn.Conv3d: Conv3d,
         tnn.ConvTranspose1d: ConvTranspose1d, tnn.ConvTranspose2d: ConvTranspose2d,
         tnn.ConvTranspose3d: ConvTranspose3d}
_TORCH_CONV = (tnn.modules.conv._ConvNd,)


@dataclass
class ConvertReport:
    """What :func:`convert` did.

    Attributes
    ----------
    swapped : list of (name, type name)
        Modules now computed by fastconv.
    left : list of (name, type name, reason)
        Convolution modules left as they were, and why.
    """

    swapped: list = field(default_factory=list)
    left: list = field(default_factory=list)

    def __str__(self):
        lines = [f"fastconv.torch.convert: {len(self.swapped)} swapped, {len(self.left)} left"]
        lines += [f"  swapped {n or '<root>'} ({t})" for n, t in self.swapped]
        lines += [f"  left    {n or '<root>'} ({t}): {r}" for n, t, r in self.left]
        return "\n".join(lines)


def _reason(m):
    if isinstance(m, _FastConvMixin):
        return "already a fastconv module"
    if type(m) not in _SWAP:
        return (f"{type(m).__name__} is a subclass of a torch conv module (its forward may "
                "differ); not swapped")
    if m.padding_mode != "zeros":
        return f"padding_mode={m.padding_mode!r} (fastconv pads with zeros only)"
    return Fc.unsupported_reason(m.weight, m.bias)


def convert(model, *, strategy="auto"):
    """Swap the model's torch conv modules for fastconv's, in place.

    Each supported ``torch.nn.Conv{1,2,3}d`` / ``ConvTranspose{1,2,3}d`` (exactly
    that type, zeros padding, float32/float64 on the CPU) changes class to the
    fastconv subclass: its parameters, buffers, hooks and any optimizer that
    holds them are untouched, so results and gradients match the original's.

    Parameters
    ----------
    model : torch.nn.Module
        Converted in place (the root itself too, if it is a conv module).
    strategy : str, default "auto"
        fastconv strategy for the swapped modules.

    Returns
    -------
    ConvertReport
        ``.swapped`` and ``.left`` (with reasons); ``print(report)`` lists them.
    """
    if not isinstance(model, tnn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    report = ConvertReport()
    for name, m in model.named_modules():
        if not isinstance(m, _TORCH_CONV):
            continue
        tname = type(m).__name__
        reason = _reason(m)
        if reason:
            report.left.append((name, tname, reason))
            continue
        m.__class__ = _SWAP[type(m)]
        m.strategy = strategy
        report.swapped.append((name, tname))
    return report
