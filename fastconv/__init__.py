"""fastconv: 1-D, 2-D and 3-D convolution layers for NumPy, forward and backward.

Four compiled strategies (direct, im2col-GEMM, FFT, Winograd) and a dispatcher that
picks one per call; transposed convolution here, NumPy layer objects in
:mod:`fastconv.nn`, a PyTorch bridge in :mod:`fastconv.torch` and Dask arrays in
:mod:`fastconv.dask` (the last two need their extras). Those submodules and
:mod:`fastconv.bench` are imported on first use (``fastconv.nn.Conv2d`` works
after ``import fastconv``), so ``import fastconv`` loads neither PyTorch nor Dask.
Layouts follow PyTorch: input ``(N, C_in, *spatial)`` (or without ``N``), weight
``(C_out, C_in / groups, *kernel)``.

>>> import numpy as np, fastconv
>>> x = np.ones((1, 3, 8, 8), np.float32); w = np.ones((4, 3, 3, 3), np.float32)
>>> fastconv.conv2d(x, w, padding=1).shape
(1, 4, 8, 8)
"""
from ._version import __version__
from . import _cpu  # noqa: F401 -- selects the kernels' instruction-set level (FASTCONV_CPU caps it)
from ._config import Options, config, get_config, set_config
from ._spec import ConvSpec, make_spec, output_shape
from ._api import conv, conv1d, conv2d, conv3d, conv_backward, explain, grad_input, grad_weight
from ._plan import BoundPlan, LayerPlan, Plan, plan, plan_layer
from ._dispatch import Candidate, Decision
from ._transpose import (conv_transpose, conv_transpose1d, conv_transpose2d, conv_transpose3d,
                         conv_transpose_backward, conv_transpose_grad_input,
                         conv_transpose_grad_weight, conv_transpose_output_shape)
from . import grad, params
from ._info import show_config, strategies
from ._configfile import ConfigError, load_config
from ._configfile import load_env_config as _load_env_config
from ._tuning import clear_cache
from ._strategies import release_buffers

_load_env_config()

# Submodules reachable as attributes, imported on first access (PEP 562, as SciPy
# does): importing them here would load PyTorch, Dask and the benchmark's
# libraries with every ``import fastconv``. A missing extra raises the
# submodule's ImportError, which says what to install.
_LAZY_SUBMODULES = ("nn", "torch", "dask", "bench")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))

__all__ = [
    "__version__", "conv", "conv1d", "conv2d", "conv3d", "conv_backward", "grad",
    "grad_input", "grad_weight", "output_shape", "explain", "strategies", "config",
    "plan", "plan_layer", "Plan", "BoundPlan", "LayerPlan",
    "set_config", "get_config", "Options", "Decision", "Candidate", "load_config", "ConfigError",
    "clear_cache", "show_config", "release_buffers",
    "params", "ConvSpec", "make_spec",
    "conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv_transpose_grad_input", "conv_transpose_grad_weight", "conv_transpose_backward",
    "conv_transpose_output_shape",
]
