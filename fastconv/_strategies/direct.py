"""Direct strategy: loops over kernel offsets (``pyx/_direct.pyx``), no workspace."""
from __future__ import annotations

import numpy as np

from .._ext import _direct

# Sustained multiply-adds per second per thread of the direct kernels on one
# AVX-512 core (measured on the development machine; `fastconv tune --calibrate`
# refits these). Only their ratio to the other strategies' figures matters.
_MACS_PER_S = 2.0e9


class DirectStrategy:
    name = "direct"

    def supports(self, spec, op):
        return None

    def workspace(self, spec, op):
        return 0

    def estimate(self, spec, op, n_threads=1):
        return spec.macs / (_MACS_PER_S * max(1, n_threads))

    def run(self, op, spec, a, b, n_threads):
        args = (spec.stride3, spec.dilation3, spec.groups, n_threads)
        if op == "forward":
            out = np.empty(spec.output_shape5, dtype=spec.dtype)
            _direct.forward(a, b, out, *args)
        elif op == "grad_input":
            out = np.empty(spec.padded_shape5, dtype=spec.dtype)
            _direct.grad_input(a, b, out, *args)
        else:
            out = np.empty(spec.weight_shape5, dtype=spec.dtype)
            _direct.grad_weight(a, b, out, *args)
        return out
