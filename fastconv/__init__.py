"""fastconv: 1-D, 2-D and 3-D convolution layers for NumPy, forward and backward.

Three compiled strategies (direct, im2col-GEMM, FFT) and a dispatcher that picks
one per call. Layouts follow PyTorch: input ``(N, C_in, *spatial)`` (or without
``N``), weight ``(C_out, C_in / groups, *kernel)``.

>>> import numpy as np, fastconv
>>> x = np.ones((1, 3, 8, 8), np.float32); w = np.ones((4, 3, 3, 3), np.float32)
>>> fastconv.conv2d(x, w, padding=1).shape
(1, 4, 8, 8)
"""
from ._version import __version__
from ._config import config, get_config, load_config, set_config
from ._spec import ConvSpec, make_spec, output_shape
from ._api import conv, conv1d, conv2d, conv3d, conv_backward, explain, grad_input, grad_weight
from . import grad, params
from ._info import show_config, strategies
from ._configfile import ConfigError
from ._tuning import clear_cache
from ._config import load_env_config as _load_env_config

_load_env_config()

__all__ = [
    "__version__", "conv", "conv1d", "conv2d", "conv3d", "conv_backward", "grad",
    "grad_input", "grad_weight", "output_shape", "explain", "strategies", "config",
    "set_config", "get_config", "load_config", "ConfigError", "clear_cache", "show_config", "params", "ConvSpec", "make_spec",
]
