"""Winograd strategy: F(m x m, 3 x 3) minimal filtering for stride-1 3x3 layers.

Scope: stride 1, dilation 1, every kernel extent 1 or 3, and a 3 on the H or W
axis of the 5-D view (so 1-D k=3, 2-D 3x3, 1x3, 3x1, 3-D 3x3x3, ...). Any batch,
channels, groups, padding and flip. The output tile m (2, 4 or 6 on each
transformed axis) is chosen per problem by :func:`plan_tile`: the cheapest by
the cost model among those whose estimated error (:func:`error_estimate`) is
within ``winograd_rtol`` (default :data:`DEFAULT_RTOL`).

How
---
All three ops run in the Winograd domain as batched GEMMs, one per transform
position ``p`` (``pyx/_winograd.pyx``):

* forward: ``M[p] = V[p] U[p]`` with ``V = B^T d B`` (input tiles, channels
  last), ``U = G w G^T``; ``y = A^T M A`` per tile;
* grad_input: the same on grad_output, with the kernel flipped and its channel
  axes swapped (the full correlation), offsets ``pad - 2`` instead of ``-pad``;
* grad_weight: ``dU[p] = sum_tiles V[p]^T (A gy A^T)[p]``, ``dw = G^T dU G``.

The depth axis of a 3-D kernel is not transformed: its taps are stacked into
the GEMM's inner dimension (one GEMM per position and output plane reads
planes od..od+2). F(2x2x2, 3x3x3) was compared by its arithmetic, not built:
it needs 64 products per 8 outputs (8 per output) and 8x the input in
buffers, while F(4x4) per depth tap needs 3*36/16 = 6.75 per output and 2.25x
-- fewer multiplies and less memory.

The tile transforms run over channels (channel-last data). When a side of the
pass has whole vectors of channels (16 float32 / 8 float64) and the tile is
square, that side uses the register-resident transforms of
``pyx/_winograd_tf.h`` (constant matrices, loops unrolled, each tile loaded and
stored once); otherwise chains of scaled vector adds. On conv3d (4, 16, 32^3)
-> 32 the chains took ~60% of a forward call at 16-32 channels; in registers
the transforms take ~15% and the GEMMs ~50%. A 3-D forward pass (forward,
grad_input) keeps only the current block's input and output planes
channel-last, not the whole image.

Padding is done inside the tile gather: the strategy takes
the unpadded input and returns grad_input of the input's shape. Work is in
units of images (several images when a plane has few tiles) on OpenMP threads
with single-threaded BLAS, or one after another with threaded BLAS when there
are fewer units than threads. Blocks of ``tc`` tiles keep the transformed
block (V, M) near the L2 cache.

Small maps with wide channels (2-D, per-image units of fewer than
:data:`ALL_BELOW` tiles, U of at least :data:`ALL_MIN_U` elements per position,
e.g. (16, 512, 7x7)) run in *mode 2*: one block holds the tiles of many images
(up to :data:`ALL_MAX_TILES`), the layout changes and tile transforms run in
parallel over images and the GEMMs in parallel over transform positions. BLAS
packs each position's U once per block instead of once per few-image unit
(per-unit 16-row GEMMs spent as long packing U as multiplying), and grad_weight
needs no per-thread partial sums (each position's dU has one owner).

The kernel transform (``U = G w G^T``, 36 x C_in x C_out elements for F(4x4))
is computed per call in blocks of 16 x 16 channels; its cost and BLAS's packing
of U are part of the cost model (they dominate at small maps).

Numerics: the transforms amplify rounding error (more for larger tiles); see
:func:`error_estimate` and the README's accuracy table. They also grow values:
float32 can overflow inside a call whose exact result is finite, so "auto"
bounds the growth (:func:`overflow_factor`) and avoids winograd where it
could overflow.
"""
from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass

import numpy as np

from .._ext import _winograd
from .._threads import OPENBLAS_MT_MNK
from .._threads import blas_limit as _blas_limit
from ._wino_matrices import matrices
from .protocol import StrategyPlan, result_array

TILES = (2, 4, 6)
#: largest estimated error a tile may have when ``winograd_rtol`` is None: F(4x4)
#: in float32 (1.2e-5), not F(6x6) (2.6e-5); F(6) in 1-D.
DEFAULT_RTOL = 2e-5

# max |error| / max |output| (worst of the three ops) measured against a float64
# reference on N(0, 1) data with 64-512 channels, padding 1, per (tile, number of
# transformed axes) -- ``benchmarks/winograd_accuracy.py``; the README's table.
# The error grows slowly with the channel count (64 -> 512: about 2x) and with the
# number of outputs (16 x 512 x 7x7: F(2x2) float32 7.5e-7, float64 F(4x4) 2.8e-14,
# F(6x6) 3.9e-14, above the single-image maxima).
_ERR = {
    "float32": {(2, 1): 6e-7, (4, 1): 3.5e-6, (6, 1): 4e-6,
                (2, 2): 8e-7, (4, 2): 1.2e-5, (6, 2): 2.6e-5},
    "float64": {(2, 1): 1.5e-15, (4, 1): 4.2e-15, (6, 1): 1e-14,
                (2, 2): 1.5e-15, (4, 2): 3e-14, (6, 2): 4e-14},
}

# Cost model (seconds, float32, one thread; `fastconv tune --calibrate` rescales):
_GEMM_FLOPS = 8.0e10     # single-thread sgemm rate on large blocks
_GEMM_HALF = 12          # a GEMM dimension this small runs at half that rate
_GEMM_CALL = 4.0e-7      # per BLAS call
_XFORM_S = 0.35e-9       # per transformed element (V written / M read), all passes
_XFORM_FAST_S = 0.25e-9  # ... on a side whose transform runs in registers (_fast_sides)
_XFORM_MIN_C = 128       # a chain (not in registers) over a tile costs at least what this
#                          many channels' would: its per-tile set-up outweighs a few
_BLAS_MT_MNK = OPENBLAS_MT_MNK   # OpenBLAS runs a smaller GEMM (m*n*k) on one thread
_COPY_S = 0.6e-9         # per element through the channel-last transposes
_KT_S = 0.6e-9           # per element of U written by the kernel transform
_PACK_S = 0.6e-9         # per element of U BLAS packs (once per block of tiles) ...
_PACK_S_CACHED = 0.15e-9  # ... when the whole U fits in the L2 cache
_L2_BYTES = 1 << 20
_F64 = 2.0

#: elements of V + M per block the plan aims for (about the L2 cache)
BLOCK_ELEMS = 160 * 1024
MIN_TILES = 32
MAX_TILES = 256
#: output planes per block of a 3-D problem (its KD - 1 extra input planes are
#: transformed once per block)
PLANES = 8


def error_estimate(spec, m=2):
    """Estimated max |error| / max |output| of winograd on ``spec`` with tile ``m``
    (F(m, 3); the default, F(2, 3), is the most accurate tile)."""
    _, kh, kw = spec.kernel3
    naxes = max(1, (kh == 3) + (kw == 3))
    return _ERR[spec.dtype.name][(m, naxes)]


def _row_sum(M):
    """Largest sum of |entries| of a row of ``M``: ``|M v| <= _row_sum(M) * max|v|``."""
    return float(np.abs(M).sum(axis=1).max())


def overflow_factor(spec, op, m):
    """``F`` such that every value winograd ``op`` computes with tile ``m`` is at
    most ``F * max|a| * max|b|``, ``a`` and ``b`` being the op's two operands.

    Forward and grad_input: the input tile transform ``B^T d B`` grows values
    by at most the row sums of ``B^T`` (per transformed axis), the kernel
    transform ``G g G^T`` by those of ``G``, the channel sums by their length,
    and the output transform ``A^T M A`` by the row sums of ``A^T``.
    grad_weight: ``dU[p]`` sums ``V[p] * (A gy A^T)[p]`` over every tile of
    the batch (``A``'s row sums are ``A^T``'s column sums); the untransform
    runs in float64. A float32 result can overflow inside these sums where
    the exact result, up to ``sum |a| |b|``, is finite.
    """
    mh, mw = _tile_ms(spec, m)
    BTh, Gh, ATh = matrices(mh)
    BTw, Gw, ATw = matrices(mw)
    grow_in = _row_sum(BTh) * _row_sum(BTw)
    KD = spec.kernel3[0]
    if op == "grad_weight":
        od = spec.output_shape5[2]
        tiles = spec.batch * od * _geo(spec, m, op).T2
        return grow_in * _row_sum(ATh.T) * _row_sum(ATw.T) * tiles
    cig = _chans(spec, op)[0] // spec.groups
    return (grow_in * _row_sum(Gh) * _row_sum(Gw) * KD * cig
            * _row_sum(ATh) * _row_sum(ATw))


def _rtol(opts):
    return DEFAULT_RTOL if opts.winograd_rtol is None else opts.winograd_rtol


def _tile_ms(spec, m):
    _, kh, kw = spec.kernel3
    return (m if kh == 3 else 1, m if kw == 3 else 1)


@dataclass(frozen=True)
class _Geo:
    mh: int
    mw: int
    ah: int
    aw: int
    T2: int      # tiles per plane
    P: int


def _geo(spec, m, op):
    mh, mw = _tile_ms(spec, m)
    oh, ow = spec.input_shape5[3:] if op == "grad_input" else spec.output_shape5[3:]
    ah = mh + 2 if mh > 1 else 1
    aw = mw + 2 if mw > 1 else 1
    T2 = -(-oh // mh) * -(-ow // mw)
    return _Geo(mh, mw, ah, aw, T2, ah * aw)


def _chans(spec, op):
    """(channels in, channels out) of the Winograd pass for ``op``."""
    if op == "grad_input":
        return spec.out_channels, spec.in_channels
    return spec.in_channels, spec.out_channels


def _cost(spec, op, m, n_threads):
    geo = _geo(spec, m, op)
    C, CO = _chans(spec, op)
    KD = spec.kernel3[0]
    G = spec.groups
    N = spec.batch
    od = spec.input_shape5[2] if op == "grad_input" else spec.output_shape5[2]
    tiles = N * od * geo.T2
    plan = _plan(spec, op, m, n_threads, 1 << 62)
    kdim = KD * C // G if G > 1 else KD * C
    eff = 1.0
    for dim in (plan.tc, kdim, CO // G):
        eff *= dim / (dim + _GEMM_HALF)
    gemm = 2.0 * tiles * geo.P * KD * C * CO / G / (_GEMM_FLOPS * eff)
    calls = tiles / plan.tc * geo.P * (G * KD if G > 1 else 1)
    planes = (plan.odc + KD - 1) / plan.odc
    fin, fout = _fast_sides(spec, op, m)
    xform = tiles * geo.P * ((C * _XFORM_FAST_S if fin else max(C, _XFORM_MIN_C) * _XFORM_S)
                             * planes
                             + (CO * _XFORM_FAST_S if fout else max(CO, _XFORM_MIN_C) * _XFORM_S))
    S = math.prod(spec.input_shape5[2:])
    SO = math.prod(spec.output_shape5[2:])
    copy = N * (spec.in_channels * S + spec.out_channels * SO) * _COPY_S
    u = geo.P * KD * C * CO / G
    cached = u * spec.itemsize <= _L2_BYTES
    ukern = u * (_KT_S + (_PACK_S_CACHED if cached else _PACK_S) * -(-tiles // plan.tc))
    t = gemm + xform + copy + calls * _GEMM_CALL
    if plan.omp or plan.allimg:
        par = max(1, plan.threads)
    else:
        # one unit after another on BLAS's threads, which a small GEMM does not use
        big = plan.tc * kdim * (CO // G) >= _BLAS_MT_MNK
        par = min(n_threads, 2) if big else 1
    if cached:
        t += ukern
    else:
        # a U larger than the caches is written and packed at memory bandwidth, which
        # a second thread does not add to (docs/bench/notes.md)
        t += ukern * par
    if spec.dtype == np.float64:
        t *= _F64
    return t / par


def _fast_sides(spec, op, m):
    """(input side, output side): whether the pass's tile transforms run in
    registers (square tiles, channels in whole vectors; ``pyx/_winograd_tf.h``)."""
    mh, mw = _tile_ms(spec, m)
    BTh, _, ATh = matrices(mh)
    BTw, _, ATw = matrices(mw)
    C, CO = _chans(spec, op)
    return _winograd.fast_sides(BTh, BTw, ATh, ATw, C, CO, spec.dtype)


def plan_tile(spec, op, n_threads, options):
    """The output tile m: the cheapest (cost model) whose estimated error is
    within ``options.winograd_rtol`` (default :data:`DEFAULT_RTOL`); F(2, 3) if
    none is."""
    return _plan_tile(spec, op, int(n_threads), _rtol(options), _knobs())


# Plans are pure in (problem, op, threads, budget or rtol) and this module's tuning
# constants, which tests and benchmarks replace (monkeypatch): the memos key on
# their current values (_knobs), so a replaced constant gets its own plan, and a
# repeated problem skips the search (a few _cost/_plan evaluations).
_KNOBS = ("TILES", "PLANES", "BLOCK_ELEMS", "MIN_TILES", "MAX_TILES", "ALL_MIN_TILES",
          "ALL_BELOW", "ALL_MIN_U", "ALL_MAX_TILES", "_GEMM_FLOPS", "_GEMM_HALF",
          "_GEMM_CALL", "_XFORM_S", "_XFORM_FAST_S", "_XFORM_MIN_C", "_BLAS_MT_MNK", "_COPY_S",
          "_KT_S", "_PACK_S", "_PACK_S_CACHED", "_L2_BYTES", "_F64")
# (not _ERR, a dict: replace it, don't edit it)


def _knobs():
    g = globals()
    return tuple([g[k] for k in _KNOBS] + [_winograd.fast_transforms(), id(_ERR)])


@functools.lru_cache(maxsize=1024)
def _plan_tile(spec, op, n_threads, tol, knobs):
    ok = [m for m in TILES if error_estimate(spec, m) <= tol] or [min(TILES)]
    return min(ok, key=lambda m: _cost(spec, op, m, n_threads))


@dataclass(frozen=True)
class _Plan:
    m: int
    omp: bool
    threads: int
    nb: int
    tc: int
    odc: int
    per_thread: int     # elements
    slots: int
    u_elems: int        # transformed kernel (and dU)
    kt_bytes: int       # scratch of the kernel (un)transform (float64)
    allimg: bool = False  # mode 2: all images in one unit, phases parallel inside

    @property
    def mode(self):
        return 2 if self.allimg else (1 if self.omp else 0)

    def nbytes(self, itemsize):
        return (self.per_thread * self.slots + self.u_elems) * itemsize + self.kt_bytes


def _plan(spec, op, m, n_threads, budget):
    """The work plan (:class:`_Plan`) of tile ``m`` within ``budget`` bytes, or
    MemoryError (not remembered) when even the smallest plan exceeds it."""
    return _plan_memo(spec, op, m, int(n_threads), budget, _knobs())


@functools.lru_cache(maxsize=1024)
def _plan_memo(spec, op, m, n_threads, budget, knobs):
    geo = _geo(spec, m, op)
    C, CO = _chans(spec, op)
    KD = spec.kernel3[0]
    N = spec.batch
    item = spec.itemsize
    if op == "grad_input":
        S, SO = math.prod(spec.output_shape5[2:]), math.prod(spec.input_shape5[2:])
        D, OD = spec.output_shape5[2], spec.input_shape5[2]
    else:
        S, SO = math.prod(spec.input_shape5[2:]), math.prod(spec.output_shape5[2:])
        D, OD = spec.input_shape5[2], spec.output_shape5[2]
    odc = min(OD, PLANES) if KD > 1 else 1
    pl = odc + KD - 1
    per_tile = geo.P * (pl * C + CO)
    # BLAS packs U[p] (C x CO) on every call: enough tiles per block to amortize
    # that (fewer than a hundred or so leave the packing a large share of the time).
    tc = max(MIN_TILES, BLOCK_ELEMS // per_tile, min(MAX_TILES, CO))
    threads = max(1, int(n_threads))
    nb = 1 if D > 1 else max(1, min(-(-tc // geo.T2), -(-N // (2 * threads))))
    tc = min(tc, nb * geo.T2)
    units = -(-N // nb)
    omp = threads > 1 and units >= threads and bool(_winograd.HAVE_OPENMP)
    # U with padded position strides, aligned to 64 bytes (see _u_buffer)
    u_elems = geo.P * (KD * C * CO // spec.groups + _winograd.U_PAD) + _ALIGN_SLACK
    kt_bytes = 8 * _winograd.kt_scratch(KD, math.prod(spec.kernel3[1:]), threads)
    if _all_images(spec, geo, tc, C, CO):
        nbi = max(1, min(N, ALL_MAX_TILES // geo.T2))   # whole images per block
        while nbi * geo.T2 >= ALL_MIN_TILES:
            tca = nbi * geo.T2
            sizes = _winograd.unit_sizes(
                channels=C, in_spatial=S, out_channels=CO, out_spatial=SO, positions=geo.P,
                tmp_per_channel=geo.ah * max(geo.aw, geo.mw), images=N, tiles=tca, planes=1,
                kernel_depth=1, groups=spec.groups, dw_partials=False)
            per = sum(sizes) + (threads - 1) * sizes.tmp
            plan = _Plan(m, False, threads, N, tca, 1, per, 1, u_elems, kt_bytes, True)
            if plan.nbytes(item) <= budget:
                return plan
            nbi //= 2
    # a 3-D forward pass keeps only a block's planes channel-last (pyx: g.bp)
    s1 = math.prod(spec.input_shape5[3:] if op != "grad_input" else spec.output_shape5[3:])
    so1 = math.prod(spec.output_shape5[3:] if op != "grad_input" else spec.input_shape5[3:])
    bp = D > 1 and op != "grad_weight"
    while True:
        # grad_weight: per-thread partial sums of dU only with several threads
        gw = op == "grad_weight" and omp
        sizes = _winograd.unit_sizes(
            channels=C, in_spatial=S, out_channels=CO, out_spatial=SO, positions=geo.P,
            tmp_per_channel=geo.ah * max(geo.aw, geo.mw), images=nb, tiles=tc, planes=pl,
            kernel_depth=KD, groups=spec.groups, dw_partials=gw,
            block_plane=s1 if bp else 0, out_block_plane=so1)
        per = sum(sizes)
        slots = min(threads, units) if omp else 1
        plan = _Plan(m, omp, min(threads, units) if omp else threads, nb, tc, odc, per,
                     slots, u_elems, kt_bytes)
        if plan.nbytes(item) <= budget:
            return plan
        if omp and slots > 1:
            omp = False
            continue
        if nb > 1:
            nb = max(1, nb // 2)
            tc = min(tc, nb * geo.T2)
            units = -(-N // nb)
            continue
        if tc > 8:
            tc = max(8, tc // 2)
            continue
        if odc > 1:
            odc = max(1, odc // 2)
            pl = odc + KD - 1
            continue
        err = MemoryError(
            f"winograd {op} needs at least {plan.nbytes(item)} bytes of workspace (one "
            f"image channel-last in and out, {tc} tiles of {geo.P} transform positions, the "
            f"transformed kernel), more than the memory budget of {budget} bytes; raise "
            "fastconv.config(memory_budget=...) or use another strategy")
        err.need = plan.nbytes(item)
        raise err


#: mode 2 (all images in one unit) only with blocks of at least this many tiles
ALL_MIN_TILES = 64
#: ... and when per-image units would give GEMMs of fewer rows than this (BLAS
#: re-packs U on every call: (16, 512, 7x7) F(4x4) had 16-row GEMMs)
ALL_BELOW = 96
#: ... where U is big (C_in x C_out per position; (32, 64, 56x56) and
#: (16, 96, 40x40) ran slower in mode 2: their U is small and their V large)
ALL_MIN_U = 128 * 128
#: tiles per mode-2 block
ALL_MAX_TILES = 512


def _all_images(spec, geo, tc, C, CO):
    """Mode 2 for 2-D problems whose per-image units would give short GEMMs."""
    if spec.input_shape5[2] != 1 or spec.kernel3[0] != 1 or not _winograd.HAVE_OPENMP:
        return False
    return (tc < ALL_BELOW and C * CO // spec.groups >= ALL_MIN_U
            and spec.batch * geo.T2 >= ALL_MIN_TILES)


#: elements allocated beyond U's size so that it can start on a 64-byte boundary
#: (16 float32; float64 needs only 8)
_ALIGN_SLACK = 16


def _u_buffer(P, G, rows, cols, dtype):
    """U (P, G, rows, cols) on a 64-byte boundary, positions ``U_PAD`` elements
    further apart than their size (a power-of-two stride puts a kernel-transform
    block's writes to all positions in one cache set)."""
    ups = G * rows * cols + _winograd.U_PAD
    buf = np.empty(P * ups + _ALIGN_SLACK, dtype=dtype)
    item = buf.itemsize
    off = (-buf.ctypes.data % 64) // item
    return np.lib.stride_tricks.as_strided(
        buf[off:], shape=(P, G, rows, cols),
        strides=(ups * item, rows * cols * item, cols * item, item))


class WinogradStrategy:
    name = "winograd"
    #: the option that keeps "auto" from winograd where its float32 values could
    #: overflow (a tolerance below every tile's error estimate excludes float32)
    avoid = {"winograd_rtol": sys.float_info.min}

    def supports(self, spec, op):
        if any(s != 1 for s in spec.stride):
            return f"stride {spec.stride}: winograd needs stride 1"
        if any(d != 1 for d in spec.dilation):
            return f"dilation {spec.dilation}: winograd needs dilation 1"
        if any(k not in (1, 3) for k in spec.kernel):
            return f"kernel {spec.kernel}: winograd needs extent 3 (or 1) on every axis"
        if 3 not in spec.kernel3[1:]:
            return f"kernel {spec.kernel}: no 3-tap axis in H or W to transform"
        n = max(math.prod(spec.input_shape5[1:]), math.prod(spec.output_shape5[1:]))
        if n >= 2**31 // 64:
            return f"{n} elements per image exceed the 32-bit sizes BLAS accepts"
        return None

    def workspace(self, spec, op, options):
        """Bytes of scratch (per-thread buffers and the transformed kernel)."""
        try:
            return self._kernel_plan(spec, op, options).nbytes(spec.itemsize)
        except MemoryError as e:  # the least it needs (more than the budget)
            return e.need

    @staticmethod
    def _kernel_plan(spec, op, options):
        m = plan_tile(spec, op, options.threads, options)
        return _plan(spec, op, m, options.threads, options.memory_budget)

    def estimate(self, spec, op, n_threads, options):
        return _cost(spec, op, plan_tile(spec, op, n_threads, options), n_threads)

    @staticmethod
    def error_estimate(spec, m=2):
        """See :func:`error_estimate` (the dispatcher's ``winograd_rtol`` guard)."""
        return error_estimate(spec, m)

    def guard(self, spec, op, opts):
        """Why the options keep "auto" from winograd on this problem, or None."""
        if (opts.winograd_rtol is not None and spec.dtype == np.float32
                and error_estimate(spec) > opts.winograd_rtol):
            return (f"estimated float32 winograd error {error_estimate(spec):.1e} (F(2,3)) "
                    f"> winograd_rtol={opts.winograd_rtol:g}")
        return None

    def overflow_factor(self, spec, op, options):
        """:func:`overflow_factor` of the tile a call on ``options.threads`` uses
        (the float32 overflow guard of plans)."""
        return overflow_factor(spec, op, plan_tile(spec, op, options.threads, options))

    def tile(self, spec, op, options):
        """The output tile m (F(m, 3)) a plan of ``op`` on ``spec`` uses."""
        return plan_tile(spec, op, options.threads, options)

    def plan(self, spec, op, options):
        """Tile, mode, blocks and scratch (:class:`_Plan`) within the budget."""
        kp = self._kernel_plan(spec, op, options)
        return StrategyPlan(self.name, op, spec, options.threads, options.memory_budget,
                            kp.nbytes(spec.itemsize), kp)

    def run(self, plan, a, b, out=None, memo=None):
        """Execute ``plan`` (see :class:`~.protocol.Strategy`). ``memo``: a dict in
        which a caller whose weight ``b`` never changes keeps its transform U."""
        spec, op, n_threads = plan.spec, plan.op, plan.threads
        kp = plan.kernel
        mh, mw = _tile_ms(spec, kp.m)
        BTh, Gh, ATh = matrices(mh)
        BTw, Gw, ATw = matrices(mw)
        KD = spec.kernel3[0]
        G = spec.groups
        P = BTh.shape[0] * BTw.shape[0]
        pads = [p[0] for p in spec.padding3]
        kern = spec.kernel3
        C, CO = _chans(spec, op)
        # the transformed kernel first, then the per-thread buffers
        U = None if memo is None or op == "grad_weight" else memo.get((op, kp.m))
        have_u = U is not None
        if not have_u:
            U = _u_buffer(P, G, KD * C // G, CO // G, spec.dtype)
        work = np.empty(kp.per_thread * kp.slots, dtype=spec.dtype)
        blas_threads = 1 if kp.mode else kp.threads
        mode = kp.mode
        args = (BTh, BTw, ATh, ATw)
        # outputs are allocated before the kernel transform: its scratch is part of
        # the peak that workspace() reports (as during grad_weight's untransform)
        if op == "forward":
            y = result_array(spec, op, out)
            if not have_u:
                _winograd.kernel_transform(b, Gh, Gw, U, G, False, n_threads)
                if memo is not None:
                    memo[(op, kp.m)] = U
            offs = tuple(-p for p in pads)
            with _blas_limit(blas_threads):
                _winograd.forward(a, U, y, work, *args, offs, KD, G, kp.nb, kp.tc,
                                  kp.odc, mode, kp.threads)
            return y
        if op == "grad_input":
            gx = result_array(spec, op, out)
            if not have_u:
                _winograd.kernel_transform(b, Gh, Gw, U, G, True, n_threads)
                if memo is not None:
                    memo[(op, kp.m)] = U
            offs = tuple(p - (k - 1) for p, k in zip(pads, kern))
            with _blas_limit(blas_threads):
                _winograd.forward(a, U, gx, work, *args, offs, KD, G, kp.nb, kp.tc,
                                  kp.odc, mode, kp.threads)
            return gx
        gw = result_array(spec, op, out)
        offs = tuple(-p for p in pads)
        with _blas_limit(blas_threads):  # U receives dU, the transformed gradient
            _winograd.grad_weight(a, b, U, work, *args, offs, KD, G, kp.nb, kp.tc,
                                  kp.odc, mode, kp.threads)
        _winograd.kernel_untransform(U, Gh, Gw, gw, G, n_threads)
        return gw
