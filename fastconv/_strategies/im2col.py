"""im2col-GEMM strategy: unfold to a column matrix, then BLAS GEMMs per image and group.

The Cython kernels (``pyx/_im2col.pyx``) do the unfold (vol2col), fold
(col2vol) and call sgemm/dgemm without the GIL. The strategy pads inside
(no padded copy): the unfold writes the zero border itself and the fold drops
it, so the input is never copied into a padded array and grad_input is
returned at the input's shape.

Work is cut into *units* of ``rows`` output rows (``od*OH + oh``) of one image,
sized so that one unit's column block fits the L2 cache of a core (read from
the machine; 1 MiB when unknown). Sizing the chunks to the memory budget
instead (one whole image, tens of MiB on the benchmark layers) made the unfold
and the GEMM's packing stream from DRAM. The column buffers are kept between calls, one set per Python
thread (:class:`threading.local`), so calls do not page-fault fresh buffers;
a kept buffer never exceeds the memory budget of the call that made it, and is
replaced when a later call has a smaller budget.

Threading (:class:`ParallelMode`, forced with :func:`parallel_mode`): ``OMP``
runs units in an OpenMP loop, each thread unfolding into its own buffer and
calling a single-threaded BLAS (limited with threadpoolctl); ``BLAS`` runs the
units one after another with the GEMMs on all BLAS threads. The two pools never
run at full width at once: with an OpenMP-parallel unfold between
BLAS-threaded GEMMs, the idle pool's spinning threads compete for the cores.
omp mode is the faster one on ResNet-like 3x3 layers (``docs/bench/notes.md``).

grad_weight is deterministic: the units are cut into fixed blocks (up to 4 per
thread, their partial sums within 8 MiB), each summed on its own and the sums
added in block order; the threads take blocks dynamically, which keeps them
balanced when one is descheduled, without changing the result.
"""
from __future__ import annotations

import contextlib
import contextvars
import glob
import math
import os
import threading
from dataclasses import dataclass

import numpy as np

from .._ext import _im2col
from .._threads import blas_limit as _blas_limit
from .protocol import StrategyPlan, result_array

#: How the units of work are spread over threads (an :class:`enum.IntEnum` from
#: the kernel module): ``ParallelMode.OMP`` or ``ParallelMode.BLAS``.
ParallelMode = _im2col.ParallelMode

# Cost-model coefficients: the single-threaded sgemm rate our per-unit GEMMs
# reach, and the bandwidth of one pass over the column matrix (unfold write, GEMM
# read, fold read-scatter) when the column block stays in L2; float64 runs at
# about half the float32 rate. GEMMs with few output channels are memory-bound
# and slower than this model says.
_SGEMM_FLOPS_PER_CORE = 8.0e10
_DGEMM_FACTOR = 0.5
_COLS_BYTES_PER_S = 1.0e10
# At a horizontal stride s > 1 the unfold gathers (and grad_input's fold
# scatters) one element at a time instead of copying rows: seconds per column
# element on top of the passes. Without it strided layers were estimated too
# cheap, and auto gave the ResNet stem's 7x7 stride-2 grad_weight to im2col. (The
# passes keep their weight: refitting them too misjudged 3-D grad_input.)
_GATHER_S = 0.6e-9
#: seconds per call outside the kernels: none here, the calibrated per-call
#: overhead (timed on a tiny problem) covers planning and the BLAS limiter; a
#: fixed cost here would count it twice and keep auto off im2col on tiny
#: problems where it is fastest
_CALL_S = 0.0

_DEFAULT_L2 = 1 << 20
#: one unit's column block is sized to this fraction of L2
_L2_FRACTION = 1.0
#: grad_weight units twice that: its GEMM sums over the unit's columns into a
#: small weight gradient, so short units mean many short reductions
_GW_UNIT_FACTOR = 2
#: ... and units span at least this many columns: every unit's GEMM packs the whole
#: weight matrix again, so very short units make that packing dominate
_MIN_COLS = 192


def _l2_bytes():
    """Per-core L2 cache size from sysfs or sysconf; 1 MiB when unknown."""
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(os.path.join(d, "level")) as f:
                level = int(f.read())
            with open(os.path.join(d, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(d, "size")) as f:
                size = f.read().strip()
        except (OSError, ValueError):
            continue
        if level == 2 and kind in ("Unified", "Data"):
            mult = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:].upper(), 1)
            try:
                return int(size.rstrip("KkMm")) * mult
            except ValueError:
                break
    try:
        v = os.sysconf("SC_LEVEL2_CACHE_SIZE")
        if v and v > 0:
            return int(v)
    except (ValueError, OSError, AttributeError):
        pass
    return _DEFAULT_L2


L2_BYTES = _l2_bytes()

_forced_mode = contextvars.ContextVar("fastconv_im2col_mode", default=None)


def forced_mode():
    """The mode :func:`parallel_mode` forces in this thread / task, or None. A plan
    keeps the mode it was made under, so the memo of plans keys on it."""
    return _forced_mode.get()


@contextlib.contextmanager
def parallel_mode(mode):
    """Force im2col's :class:`ParallelMode` in this thread / task.

    Plans made inside the block (also the plain functions' memoized ones, which
    are kept per mode) run in the forced mode wherever they are called later.

    Parameters
    ----------
    mode : ParallelMode, {"omp", "blas"} or None
        None restores the automatic choice (OMP over units when there are at
        least as many units as threads, else BLAS).
    """
    if mode is not None and not isinstance(mode, ParallelMode):
        try:
            mode = ParallelMode[str(mode).upper()]
        except KeyError:
            raise ValueError(f"im2col parallel mode must be 'omp', 'blas' or None, "
                             f"got {mode!r}") from None
    token = _forced_mode.set(mode)
    try:
        yield
    finally:
        _forced_mode.reset(token)


@dataclass(frozen=True)
class _Plan:
    mode: ParallelMode
    threads: int       # OpenMP threads (OMP: units in flight)
    rows: int          # output rows (od*OH + oh) per unit
    work_elems: int    # scratch elements
    itemsize: int
    blocks: int = 1    # grad_weight: fixed blocks of units, one partial sum each

    @property
    def nbytes(self):
        return self.work_elems * self.itemsize


def _no_unfold(spec):
    """1x1x1 kernel, stride 1, no padding: the input already is the column matrix."""
    return (spec.kernel_size == 1 and all(s == 1 for s in spec.stride)
            and not any(b or a for b, a in spec.padding3))


def _geometry(spec):
    od, oh, ow = spec.output_shape5[2:]
    row_elems = 0 if _no_unfold(spec) else spec.in_channels * spec.kernel_size * ow
    wsz = spec.out_channels * spec.in_channels_per_group * spec.kernel_size
    return od * oh, row_elems, wsz


def _plan(spec, op, n_threads, budget, mode=None):
    """Choose mode, unit size and scratch size, or raise MemoryError."""
    item = spec.itemsize
    n_rows, row_elems, wsz = _geometry(spec)
    n_threads = max(1, int(n_threads))
    cap = budget // item
    target = L2_BYTES * _L2_FRACTION * (_GW_UNIT_FACTOR if op == "grad_weight" else 1)
    cache_rows = max(1, int(target) // max(1, row_elems * item),
                     -(-_MIN_COLS // max(1, spec.output_shape5[4])))
    rows = n_rows if row_elems == 0 else max(1, min(n_rows, cache_rows))
    units = spec.batch * -(-n_rows // rows) if n_rows else 0
    in_flight = spec.batch if op == "grad_input" else units
    if mode is None:
        mode = _forced_mode.get()
    if mode is None:
        mode = (ParallelMode.OMP if n_threads > 1 and in_flight >= n_threads
                and _im2col.HAVE_OPENMP else ParallelMode.BLAS)
    if mode == ParallelMode.OMP:
        threads = max(1, min(n_threads, in_flight))
        blocks = _gw_blocks(threads, in_flight, wsz * item, cap * item) if op == "grad_weight" else 1
        threads = min(threads, blocks) if op == "grad_weight" else threads
        part = wsz * (blocks - 1)
        if row_elems == 0:
            if part <= cap:
                return _Plan(mode, threads, rows, part, item, blocks)
        else:
            rows = min(rows, (cap - part) // (threads * row_elems))
            if rows >= 1:
                return _Plan(mode, threads, rows, threads * rows * row_elems + part, item,
                             blocks)
        if _forced_mode.get() is None:
            return _plan(spec, op, n_threads, budget, ParallelMode.BLAS)
    if row_elems == 0:
        return _Plan(ParallelMode.BLAS, n_threads, n_rows, 0, item)
    rows = min(rows, cap // row_elems)
    if rows < 1:
        need = row_elems * item
        raise MemoryError(
            f"im2col needs at least {need} bytes of workspace for {op} (one output row "
            f"of one image: {spec.in_channels} channels x {spec.kernel_size} taps x "
            f"{row_elems // (spec.in_channels * spec.kernel_size)} columns x {item} bytes), "
            f"but the memory budget is {budget} bytes; raise it with "
            f"fastconv.config(memory_budget=...) or use another strategy"
        )
    return _Plan(ParallelMode.BLAS, n_threads, rows, rows * row_elems, item)


#: grad_weight blocks per thread (more balance the load when a thread is held
#: up) and the most bytes their partial sums may take
_GW_BLOCKS_PER_THREAD = 4
_GW_PARTIAL_BYTES = 8 << 20


def _gw_blocks(threads, units, wbytes, budget):
    """Blocks of units for grad_weight: a multiple of ``threads`` (at most
    4 per thread) whose partial sums fit 8 MiB and a quarter of the budget."""
    if threads <= 1:
        return 1
    room = min(_GW_PARTIAL_BYTES, budget // 4) // max(1, wbytes) + 1
    per = max(1, min(_GW_BLOCKS_PER_THREAD, room // threads))
    return max(1, min(units, threads * per))


_kept = threading.local()


def _workspace(nbytes, dtype, budget):
    """A scratch array of ``nbytes`` kept for this Python thread between calls.

    Reused when it is large enough and within ``budget``; otherwise replaced
    (the old one is dropped first, so two never coexist).
    """
    itemsize = np.dtype(dtype).itemsize
    if nbytes == 0:
        return np.empty(0, dtype=dtype)
    buf = getattr(_kept, "buf", None)
    if buf is None or buf.nbytes < nbytes or buf.nbytes > budget:
        _kept.buf = None
        del buf
        buf = np.empty(nbytes, dtype=np.uint8)
        _kept.buf = buf
    return buf[:nbytes - nbytes % itemsize].view(dtype)


def release_workspace():
    """Drop the column buffer kept for the calling thread (it is reallocated on demand)."""
    _kept.buf = None


class Im2colStrategy:
    """Unfold + GEMM (see the module docstring)."""

    name = "im2col"
    def supports(self, spec, op):
        # BLAS takes 32-bit dimensions and leading dimensions.
        dims = {"output positions per channel": math.prod(spec.out_spatial),
                "unfolded rows per group": spec.in_channels_per_group * spec.kernel_size}
        for what, n in dims.items():
            if n >= 2**31:
                return f"{what} ({n}) exceed the 32-bit sizes BLAS accepts"
        return None

    def workspace(self, spec, op, options):
        """Bytes of scratch the call holds beyond its inputs and output.

        The column buffers (kept between calls) and, for grad_weight on several
        threads, the partial sums. The input is used as it is (no padded copy).
        If the problem cannot be chunked to fit, the smallest workspace it would
        need (which then exceeds the budget, so the dispatcher skips im2col).
        """
        try:
            return _plan(spec, op, options.threads, options.memory_budget).nbytes
        except MemoryError:
            return _geometry(spec)[1] * spec.itemsize

    def estimate(self, spec, op, n_threads, options):
        threads = max(1, int(n_threads))
        rate = _SGEMM_FLOPS_PER_CORE * threads * (1.0 if spec.itemsize == 4 else _DGEMM_FACTOR)
        gemm = spec.flops / rate
        if _no_unfold(spec):
            return gemm + _CALL_S
        cols = spec.batch * spec.in_channels * spec.kernel_size * math.prod(spec.out_spatial)
        # unfold writes cols once and the GEMM reads it; fold reads and scatters it.
        # The column block stays in L2, so these passes run at cache bandwidth and,
        # in OMP mode, on every thread.
        passes = 3 if op == "grad_input" else 2
        t = passes * cols * spec.itemsize / _COLS_BYTES_PER_S
        if spec.stride3[2] > 1:   # element-wise gather / scatter along rows
            t += cols * _GATHER_S
        return gemm + t / threads + _CALL_S

    def plan(self, spec, op, options):
        """Mode, unit size and scratch size within the memory budget (MemoryError
        when not even one output row's columns fit)."""
        plan = _plan(spec, op, options.threads, options.memory_budget)
        return StrategyPlan(self.name, op, spec, options.threads, options.memory_budget,
                            plan.nbytes, plan)

    def run(self, plan, a, b, out=None, memo=None):
        # (memo: nothing of the weight is worth keeping across calls here)
        spec, op, kp = plan.spec, plan.op, plan.kernel
        out = result_array(spec, op, out)
        fn = getattr(_im2col, op)
        work = _workspace(kp.nbytes, spec.dtype, plan.budget)
        blas_threads = 1 if kp.mode == ParallelMode.OMP else kp.threads
        # (no GEMM of the call has more multiply-adds than the whole op)
        with _blas_limit(blas_threads, spec.macs):
            args = (a, b, out, work, spec.stride3, spec.dilation3, spec.padding3,
                    spec.groups, kp.rows, kp.mode, kp.threads)
            if op == "grad_weight":
                fn(*args, kp.blocks)
            else:
                fn(*args)
        return out
