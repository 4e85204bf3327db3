"""im2col-GEMM strategy: unfold to a column matrix, then BLAS GEMMs per image and group.

The Cython kernels (``pyx/_im2col.pyx``) do the unfold (vol2col), fold
(col2vol) and call sgemm/dgemm without the GIL. This module plans the work so
the column buffer stays within ``fastconv.config(memory_budget=...)``:

* the batch is processed one image at a time (or one image per thread), and
  when a single image's column matrix is larger than the budget, in chunks of
  output rows (``od*OH + oh``);
* the buffer is allocated here with NumPy (so ``tracemalloc`` and the budget see
  it) and handed to the kernels;
* if not even one output row fits, :class:`MemoryError` states the bytes needed
  and the budget.

Threading: with at least two images and two threads, an OpenMP loop over
images, each thread unfolding into its own buffer and calling a single-threaded
BLAS (limited with threadpoolctl) -- "omp" mode. Otherwise the images and
chunks run one after another with the GEMMs on all BLAS threads -- "blas" mode.
The two pools never run at full width at once. Measured on 2 cores, float32,
3x3 pad 1 layers, GFLOP/s of omp mode vs blas mode (serial unfold) in one run:

    (32, 64, 56x56, 64)    forward 114 vs 92, grad_input 133 vs 98, grad_weight 122 vs 91
    (32, 256, 14x14, 256)  forward 161 vs 108, grad_input 151 vs 112, grad_weight 141 vs 145

With an OpenMP-parallel unfold between BLAS-threaded GEMMs, blas mode fell to
33-47 GFLOP/s: the idle pool's spinning threads compete for the two cores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._config import get_config
from .._ext import _im2col
from .._threads import blas_limit as _blas_limit

# Cost-model coefficients, measured on the development machine (2 AVX-512 cores,
# scipy's OpenBLAS, float32, 3x3 ResNet layers with the cores otherwise idle):
# the single-threaded sgemm rate our per-image GEMMs reach (161 GFLOP/s on two
# threads for the 32x256x14x14 layer, unfold included), and the bandwidth of one
# pass over the column matrix (unfold write, GEMM read, fold read-scatter).
# float64 ran at 0.45-0.5x the float32 rate. GEMMs with few output channels are
# memory-bound and slower than this model says.
_SGEMM_FLOPS_PER_CORE = 8.0e10
_DGEMM_FACTOR = 0.5
_COLS_BYTES_PER_S = 1.0e10

# OpenMP over images (single-threaded BLAS) whenever there are >= 2 images and
# threads; see the module docstring for the measurements behind it.
_OMP_OVER_IMAGES = bool(_im2col.HAVE_OPENMP)

_MODE_BLAS, _MODE_OMP = 0, 1


@dataclass(frozen=True)
class _Plan:
    mode: int          # _MODE_BLAS or _MODE_OMP
    threads: int       # OpenMP threads (mode omp: images in flight)
    rows: int          # output rows (od*OH + oh) per chunk
    work_elems: int    # scratch elements to allocate
    itemsize: int

    @property
    def nbytes(self):
        return self.work_elems * self.itemsize


def _is_direct(spec):
    """1x1x1 kernel with stride 1: the padded input already is the column matrix."""
    return spec.kernel_size == 1 and all(s == 1 for s in spec.stride)


def _geometry(spec):
    od, oh, ow = spec.output_shape5[2:]
    row_elems = 0 if _is_direct(spec) else spec.in_channels * spec.kernel_size * ow
    wsz = spec.out_channels * spec.in_channels_per_group * spec.kernel_size
    return od * oh, row_elems, wsz


def _plan(spec, op, n_threads, budget):
    """Choose mode, chunking and scratch size, or raise MemoryError."""
    item = spec.itemsize
    n_rows, row_elems, wsz = _geometry(spec)
    cap = budget // item
    threads = max(1, min(int(n_threads), spec.batch))
    if threads > 1 and _OMP_OVER_IMAGES:
        part = wsz if op == "grad_weight" else 0
        per_thread = cap // threads - part
        rows = n_rows if row_elems == 0 else min(n_rows, per_thread // row_elems)
        if per_thread >= 0 and rows >= 1:
            return _Plan(_MODE_OMP, threads, rows,
                         threads * (rows * row_elems + part), item)
    if row_elems == 0:
        return _Plan(_MODE_BLAS, max(1, int(n_threads)), n_rows, 0, item)
    rows = min(n_rows, cap // row_elems)
    if rows < 1:
        need = row_elems * item
        raise MemoryError(
            f"im2col needs at least {need} bytes of workspace for {op} (one output row "
            f"of one image: {spec.in_channels} channels x {spec.kernel_size} taps x "
            f"{row_elems // (spec.in_channels * spec.kernel_size)} columns x {item} bytes), "
            f"but the memory budget is {budget} bytes; raise it with "
            f"fastconv.config(memory_budget=...) or use another strategy"
        )
    return _Plan(_MODE_BLAS, max(1, int(n_threads)), rows, rows * row_elems, item)




class Im2colStrategy:
    name = "im2col"

    def supports(self, spec, op):
        # BLAS takes 32-bit dimensions and leading dimensions.
        dims = {"output positions per channel": math.prod(spec.out_spatial),
                "unfolded rows per group": spec.in_channels_per_group * spec.kernel_size}
        for what, n in dims.items():
            if n >= 2**31:
                return f"{what} ({n}) exceed the 32-bit sizes BLAS accepts"
        return None

    def workspace(self, spec, op):
        """Bytes of scratch under the current memory budget.

        If the problem cannot be chunked to fit, the smallest workspace it would
        need (which then exceeds the budget, so the dispatcher skips im2col).
        """
        opts = get_config()
        try:
            return _plan(spec, op, opts.threads, opts.memory_budget).nbytes
        except MemoryError:
            return _geometry(spec)[1] * spec.itemsize

    def estimate(self, spec, op, n_threads=1):
        threads = max(1, int(n_threads))
        rate = _SGEMM_FLOPS_PER_CORE * threads * (1.0 if spec.itemsize == 4 else _DGEMM_FACTOR)
        gemm = spec.flops / rate
        if _is_direct(spec):
            return gemm
        cols = spec.batch * spec.in_channels * spec.kernel_size * math.prod(spec.out_spatial)
        # unfold writes cols once and the GEMM reads it; fold reads and scatters it
        passes = 3 if op == "grad_input" else 2
        return gemm + passes * cols * spec.itemsize / _COLS_BYTES_PER_S

    def run(self, op, spec, a, b, n_threads):
        opts = get_config()
        plan = _plan(spec, op, n_threads, opts.memory_budget)
        work = np.empty(plan.work_elems, dtype=spec.dtype)
        if op == "forward":
            out, fn = np.empty(spec.output_shape5, dtype=spec.dtype), _im2col.forward
        elif op == "grad_input":
            out, fn = np.empty(spec.padded_shape5, dtype=spec.dtype), _im2col.grad_input
        else:
            out, fn = np.empty(spec.weight_shape5, dtype=spec.dtype), _im2col.grad_weight
        blas_threads = 1 if plan.mode == _MODE_OMP else plan.threads
        with _blas_limit(blas_threads):
            fn(a, b, out, work, spec.stride3, spec.dilation3, spec.groups,
               plan.rows, plan.mode, plan.threads)
        return out
