"""Direct strategy: loops over kernel offsets (``pyx/_direct.pyx``).

Its workspace is small: per-thread output tiles and, for the backward passes,
a re-laid copy of grad_output (see :meth:`DirectStrategy.workspace`).

The cost model follows the kernels' structure, because their speed varies 20x
with the problem's shape:

* unit stride, forward (and grad_input, which runs the same kernel on the
  padded grad_output with the transposed kernel): register tiles of 64
  outputs in the input's row pitch; each kernel tap costs ``_TAP4`` for a block
  of 4 output channels, ``_TAP1`` per channel when a group has fewer than 4
  (depthwise); a partial last tile costs about ``_PARTIAL`` full ones;
* unit stride, grad_weight: one dot product per (c_out, c_in, tap, image)
  over the output in the input's row pitch;
* any stride > 1: a row loop with strided loads, per multiply-add and per row.

Coefficients are single-thread float32 seconds measured on the development
machine (AVX-512); ``fastconv tune --calibrate`` rescales them per op, ndim
and dtype.
"""
from __future__ import annotations

import math

import numpy as np

from .._config import get_config
from .._ext import _direct

_TAP4 = 9.1e-9      # one tap, 4 output channels x 64 outputs
_TAP1 = 5.6e-9      # one tap, 1 output channel x 64 outputs
_PARTIAL = 2.5      # cost of a partial last tile, in full tiles
_DOT = 0.167e-9     # grad_weight: per element of a tiled dot product
_DOT_TAIL = 3.0e-9  # ... per element of its scalar tail (< 64)
_DOT_CALL = 30e-9   # ... per dot product
_GEN_MAC = {"forward": 0.35e-9, "grad_input": 0.7e-9, "grad_weight": 0.9e-9}
_GEN_ROW = 5.4e-9   # strided path: per row of outputs
_COPY = 0.5e-9      # per element copied (outputs out of the wide layout, padding)
_F64 = 1.8          # float64 / float32 for the vectorized paths
_F64_GEN = 1.1      # ... and for the strided row loops


def _wide_length(out3, plane3):
    """Outputs of the stride-1 kernel: ``out3`` positions in the row pitch of ``plane3``."""
    (od, oh, ow), (_, h, w) = out3, plane3
    return (od - 1) * h * w + (oh - 1) * w + ow


def _tiled_s1(n, groups, cout_g, cin_g, ksz, length):
    """Seconds and task count of the stride-1 tiled correlation."""
    nob, rest = divmod(cout_g, 4)
    tiles = length // 64 + (_PARTIAL if length % 64 else 0)
    per_tile = cin_g * ksz * (nob * _TAP4 + rest * _TAP1)
    return n * groups * tiles * per_tile, n * groups * (nob + (rest > 0))


def _parallel(seconds, tasks, n_threads):
    """Spread ``seconds`` of ``tasks`` equal tasks over ``n_threads``."""
    threads = max(1, min(int(n_threads), tasks))
    return seconds * math.ceil(tasks / threads) / tasks


class DirectStrategy:
    name = "direct"

    def supports(self, spec, op):
        return None

    def workspace(self, spec, op):
        """Scratch bytes: the unit-stride paths' per-thread output tiles and copies."""
        if any(s != 1 for s in spec.stride3):
            return 0
        out3, plane3 = spec.output_shape5[2:], spec.padded_shape5[2:]
        N, G = spec.batch, spec.groups
        threads = get_config().threads
        if op == "forward":
            tasks = N * G * -(-spec.out_channels_per_group // 4)
            elems = min(threads, tasks) * 4 * out3[0] * math.prod(plane3[1:])
        elif op == "grad_input":
            span = tuple(d * (k - 1) for k, d in zip(spec.kernel3, spec.dilation3))
            gplane = tuple(p + e for p, e in zip(plane3, span))
            tasks = N * G * -(-spec.in_channels_per_group // 4)
            elems = (N * spec.out_channels * math.prod(gplane)         # padded grad_output
                     + min(threads, tasks) * 4 * plane3[0] * math.prod(gplane[1:]))
        else:
            elems = N * spec.out_channels * out3[0] * math.prod(plane3[1:])  # wide grad_output
        return elems * spec.itemsize

    def estimate(self, spec, op, n_threads=1):
        k3, d3, s3 = spec.kernel3, spec.dilation3, spec.stride3
        out3 = spec.output_shape5[2:]
        plane3 = spec.padded_shape5[2:]
        N, G = spec.batch, spec.groups
        cin_g, cout_g, ksz = spec.in_channels_per_group, spec.out_channels_per_group, spec.kernel_size
        f64 = spec.itemsize == 8
        if any(s != 1 for s in s3):
            rows = N * spec.out_channels * cin_g * ksz * out3[0] * out3[1]
            t = spec.macs * _GEN_MAC[op] + rows * _GEN_ROW
            tasks = {"forward": N * spec.out_channels, "grad_input": N * spec.in_channels,
                     "grad_weight": spec.out_channels * cin_g}[op]
            return _parallel(t * (_F64_GEN if f64 else 1.0), tasks, n_threads)
        if op == "forward":
            t, tasks = _tiled_s1(N, G, cout_g, cin_g, ksz, _wide_length(out3, plane3))
            t += N * spec.out_channels * math.prod(out3) * _COPY
        elif op == "grad_input":
            # forward of grad_output padded by d*(K-1), channels swapped
            span = tuple(d * (k - 1) for k, d in zip(k3, d3))
            gplane = tuple(p + e for p, e in zip(plane3, span))
            t, tasks = _tiled_s1(N, G, cin_g, cout_g, ksz, _wide_length(plane3, gplane))
            t += N * (spec.in_channels * math.prod(plane3)
                      + spec.out_channels * math.prod(gplane)) * _COPY
        else:
            length = _wide_length(out3, plane3)
            per_dot = (length // 64) * 64 * _DOT + (length % 64) * _DOT_TAIL + _DOT_CALL
            t, tasks = spec.out_channels * cin_g * ksz * N * per_dot, spec.out_channels * cin_g
            t += N * spec.out_channels * out3[0] * math.prod(plane3[1:]) * _COPY
        return _parallel(t * (_F64 if f64 else 1.0), tasks, n_threads)

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
