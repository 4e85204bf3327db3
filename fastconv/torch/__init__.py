"""fastconv from PyTorch: custom ops, ``torch.nn.functional``-style functions, modules.

Install with ``pip install "fastconv[torch]"``.

>>> import torch, fastconv.torch as fct
>>> x = torch.randn(2, 3, 16, 16, requires_grad=True)
>>> conv = fct.Conv2d(3, 8, 5, padding=2)           # a torch.nn.Conv2d subclass
>>> conv(x).sum().backward()                         # forward and backward by fastconv
>>> report = fct.convert(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3)))  # swap in place

What runs where
---------------
CPU float32/float64 tensors (all operands of one dtype) are handed to fastconv
as NumPy views, without a copy when contiguous, and results come back with
``torch.from_numpy``. Other devices and dtypes (CUDA, float16, bfloat16, mixed
dtypes) run on torch's own kernels, so a model moved with ``.to(...)`` keeps
working; :func:`set_strict` (or ``with strict():``) makes that an
:class:`UnsupportedTensorError` instead. fastconv runs at
``torch.get_num_threads()`` threads unless its own thread count was configured
(``fastconv.config(n_threads=...)``, ``set_config`` or a config file).

The ops are ``torch.ops.fastconv.conv``, ``conv_grad_input``,
``conv_grad_weight`` and ``conv_transpose`` (:mod:`torch.library.custom_op`,
with autograd (reverse and forward mode) and fake implementations:
``torch.compile`` and ``torch.export`` trace them without graph breaks;
backward computes only the gradients that are needed). The modules script
with ``torch.jit.script`` (the scripted code calls these ops).
"""
from __future__ import annotations

from . import _ops as ops
from ._functional import (
    UnsupportedTensorError,
    conv1d,
    conv2d,
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    is_strict,
    set_strict,
    strict,
    unsupported_reason,
)
from ._modules import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvertReport,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    convert,
)

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
           "ConvTranspose2d", "ConvTranspose3d", "convert", "ConvertReport", "set_strict",
           "strict", "is_strict", "UnsupportedTensorError", "unsupported_reason", "ops"]
