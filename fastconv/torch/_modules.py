"""Drop-in modules (subclasses of torch's conv modules) and :func:`convert`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import torch
import torch.nn as tnn
from torch import Tensor

from . import _functional as Fc

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d", "convert", "ConvertReport"]


class _FastConvMixin:
    """``strategy`` attribute and its repr; state_dict and init stay torch's."""

    strategy = "auto"  # class default: a module converted in place has it too

    def extra_repr(self) -> str:
        """The arguments of the module's repr, ``strategy`` included.

        Returns
        -------
        str
            torch's arguments, then ``strategy=...``.
        """
        # always shown: after convert(), print(model) tells which layers fastconv runs
        return f"{super().extra_repr()}, strategy={self.strategy!r}"


# TorchScript cannot compile fastconv.torch's Python functions (routing, strict
# mode, argument normalization); a scripted module calls the custom ops through
# these two functions instead, which TorchScript compiles. They read the
# module's normalized attributes (``_reversed_padding_repeated_twice`` is the
# padding torch's modules give F.pad, also for "same"). Strict mode and
# autocast are Python-side only and do not apply in TorchScript.
def _script_pads(rp: List[int]) -> List[int]:
    """F.pad's list (last axis first) as fastconv's ``[before_0, after_0, ...]``."""
    nd = len(rp) // 2
    out: List[int] = []
    for a in range(nd):
        i = 2 * (nd - 1 - a)
        out += [rp[i], rp[i + 1]]
    return out


def _script_runs_fastconv(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> bool:
    ok = (x.device.type == "cpu" and weight.device.type == "cpu"
          and (x.dtype == torch.float32 or x.dtype == torch.float64)
          and weight.dtype == x.dtype and x.layout == torch.strided)
    if bias is not None:
        ok = ok and bias.device.type == "cpu" and bias.dtype == x.dtype
    return ok


def _script_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int],
                 rp: List[int], dilation: List[int], groups: int, strategy: str,
                 padding_mode: str) -> Tensor:
    nd = weight.dim() - 2
    if padding_mode != "zeros":
        x = torch.nn.functional.pad(x, rp, mode=padding_mode)
        rp = [0] * (2 * nd)
    if not _script_runs_fastconv(x, weight, bias):
        return torch.convolution(torch.nn.functional.pad(x, rp), weight, bias, stride,
                                 [0] * nd, dilation, False, [0] * nd, groups)
    batched = x.dim() == nd + 2
    xb = x if batched else x.unsqueeze(0)
    y = torch.ops.fastconv.conv(xb, weight, bias, stride, _script_pads(rp), dilation, groups,
                                strategy)
    return y if batched else y.squeeze(0)


def _script_conv_transpose(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                           stride: List[int], padding: List[int], output_padding: List[int],
                           groups: int, dilation: List[int], strategy: str) -> Tensor:
    nd = weight.dim() - 2
    if not _script_runs_fastconv(x, weight, bias):
        return torch.convolution(x, weight, bias, stride, padding, dilation, True,
                                 output_padding, groups)
    batched = x.dim() == nd + 2
    xb = x if batched else x.unsqueeze(0)
    pads: List[int] = []
    for p in padding:
        pads += [p, p]
    y = torch.ops.fastconv.conv_transpose(xb, weight, bias, stride, pads, output_padding,
                                          groups, dilation, strategy)
    return y if batched else y.squeeze(0)


def _conv_class(nd, base):
    fn = (Fc.conv1d, Fc.conv2d, Fc.conv3d)[nd - 1]

    class C(_FastConvMixin, base):
        def __init__(self, *args, strategy="auto", **kwargs):
            super().__init__(*args, **kwargs)
            self.strategy = strategy

        def _conv_forward(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]):
            if torch.jit.is_scripting():
                return _script_conv(input, weight, bias, list(self.stride),
                                    self._reversed_padding_repeated_twice,
                                    list(self.dilation), self.groups, self.strategy,
                                    self.padding_mode)
            else:
                return fn(input, weight, bias, self.stride, self.padding, self.dilation,
                          self.groups, strategy=self.strategy, padding_mode=self.padding_mode)

    C.__name__ = C.__qualname__ = base.__name__
    C.__module__ = "fastconv.torch"
    C.__doc__ = f"""``torch.nn.{base.__name__}`` computed by fastconv.

    The same constructor and state_dict, plus the keyword ``strategy``; the repr
    adds ``strategy=``. Every padding_mode runs on fastconv (F.pad pads, then
    fastconv convolves); a module moved to another device or dtype runs on
    torch's kernels (see :func:`fastconv.torch.set_strict`). ``torch.jit.script``
    compiles it: the scripted module calls ``torch.ops.fastconv.conv`` (import
    fastconv.torch before loading a saved one); strict mode and autocast do not
    apply there.

    Parameters
    ----------
    *args
        ``torch.nn.{base.__name__}``'s arguments (``in_channels``, ``out_channels``,
        ``kernel_size``, ...), by position or by name.
    strategy : str, default "auto"
        fastconv's strategy for every pass ("auto" lets the dispatcher decide;
        see :func:`fastconv.strategies`).
    **kwargs
        ``torch.nn.{base.__name__}``'s keyword arguments (``padding_mode``, ``device``,
        ``dtype``, ...).
    """
    return C


def _transpose_class(nd, base):
    fn = (Fc.conv_transpose1d, Fc.conv_transpose2d, Fc.conv_transpose3d)[nd - 1]
    only_zeros = f"Only `zeros` padding mode is supported for {base.__name__}"  # torch's words

    class C(_FastConvMixin, base):
        def __init__(self, *args, strategy="auto", **kwargs):
            super().__init__(*args, **kwargs)
            self.strategy = strategy

        def forward(self, input: Tensor, output_size: Optional[List[int]] = None) -> Tensor:
            """The transposed convolution of ``input``, as torch's module computes it.

            Parameters
            ----------
            input : Tensor, shape (N, C_in, *spatial) or (C_in, *spatial)
                Input.
            output_size : list of int, optional
                The output's spatial size (or full shape); it chooses the
                output padding, as in torch.

            Returns
            -------
            Tensor
                Differentiable; computed by fastconv for CPU float32/float64
                tensors, else by torch.
            """
            if torch.jit.is_scripting():
                if self.padding_mode != "zeros":
                    raise ValueError("Only `zeros` padding mode is supported for ConvTranspose")
                output_padding = self._output_padding(input, output_size, self.stride,
                                                      self.padding, self.kernel_size,
                                                      self.weight.dim() - 2, self.dilation)
                return _script_conv_transpose(input, self.weight, self.bias, list(self.stride),
                                              list(self.padding), output_padding, self.groups,
                                              list(self.dilation), self.strategy)
            else:
                if self.padding_mode != "zeros":
                    raise ValueError(only_zeros)
                output_padding = self._output_padding(input, output_size, self.stride,
                                                      self.padding, self.kernel_size, nd,
                                                      self.dilation)
                return fn(input, self.weight, self.bias, self.stride, self.padding,
                          output_padding, self.groups, self.dilation, strategy=self.strategy)

    C.__name__ = C.__qualname__ = base.__name__
    C.__module__ = "fastconv.torch"
    C.__doc__ = f"""``torch.nn.{base.__name__}`` computed by fastconv.

    The same constructor and state_dict, plus the keyword ``strategy``; the repr
    adds ``strategy=``; scriptable as the convolution modules are.

    Parameters
    ----------
    *args
        ``torch.nn.{base.__name__}``'s arguments (``in_channels``, ``out_channels``,
        ``kernel_size``, ...), by position or by name.
    strategy : str, default "auto"
        fastconv's strategy for every pass ("auto" lets the dispatcher decide;
        see :func:`fastconv.strategies`).
    **kwargs
        ``torch.nn.{base.__name__}``'s keyword arguments (``padding_mode``, ``device``,
        ``dtype``, ...).
    """
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
    return Fc.unsupported_reason(m.weight, m.bias)


def convert(model: tnn.Module, *, strategy: str = "auto") -> ConvertReport:
    """Swap the model's torch conv modules for fastconv's, in place.

    Each supported ``torch.nn.Conv{1,2,3}d`` / ``ConvTranspose{1,2,3}d`` (exactly
    that type, any ``padding_mode``, float32/float64 on the CPU) changes class to the
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

    Raises
    ------
    TypeError
        When ``model`` is not a ``torch.nn.Module``.

    Examples
    --------
    >>> import torch, fastconv.torch as fct
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
    ...                             torch.nn.Conv2d(8, 8, 3).double())
    >>> print(fct.convert(model))
    fastconv.torch.convert: 2 swapped, 0 left
      swapped 0 (Conv2d)
      swapped 2 (Conv2d)
    >>> type(model[0]).__module__
    'fastconv.torch'
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
