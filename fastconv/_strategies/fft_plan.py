"""The FFT strategy's plan, without kernels: transform geometry, the cost model
(with the overlap-add block plan it chooses) and the memory model (the phases
of a call and the chunking that keeps them within the budget).

:mod:`fastconv._strategies.fft` runs what this module plans.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import scipy.fft

from .fft_dft import dft_bytes, dft_cmacs

# ---------------------------------------------------------------------------
# Cost model coefficients: single-thread float32 seconds. Only ratios to the
# other strategies' figures matter; `fastconv tune --calibrate` may rescale
# them. The timings they were fitted to: docs/bench/notes.md ("FFT's cost model").
# ---------------------------------------------------------------------------
#: seconds per element per log2(F) of one real N-d transform lane (r2c or c2r)
FFT_S_PER_NLOGN = 2.5e-10
#: seconds per complex multiply-add of the spectral contraction: batched
#: cgemm, ``CMAC_GEMM_S * (1 + GEMM_SMALL / d)`` with ``d`` the smallest
#: dimension of the per-frequency product (a thin product runs far below the
#: GEMM's rate), and the hand loop for few channels per group
CMAC_GEMM_S = 1.2e-10
GEMM_SMALL = 5.0
CMAC_LOOP_S = 1.6e-9
#: ... and the depthwise loop (one channel per group)
CMAC_DW_S = 0.8e-9
#: seconds per complex multiply-add (as counted by :func:`dft_cmacs`) of a
#: kernel DFT by matrix products (:mod:`fft_dft`, with the conjugate-symmetric
#: full axes)
CMAC_DFT_S = 2.0e-10
#: ... and of the inverse (grad_weight's taps, :func:`fft_dft.kernel_taps`): no
#: conjugate-symmetric shortcut and a contiguous copy per step, so about twice
#: the forward's cost
CMAC_IDFT_S = 4.5e-10
#: seconds per byte of a kernel spectrum (``CO*CIG`` planes of the spectrum
#: size) written and read once per call and pipeline (every pipeline reads
#: all of W, or has its own grad_weight sum): memory-bound, and grad_weight's
#: zeroed sum is a one-thread memset, so it is not divided by the threads.
#: A compromise between small and large spectra (the gap between whole calls
#: and the sum of their parts grows less than the bytes), which keeps the
#: unblocked plan where it is the faster one
SPECTRUM_S = 1.0e-10
#: seconds per real element moved by pack (zeroing included) / unpack, Cython
#: loops on all threads, with the buffers kept between calls
COPY_S = 0.6e-9
#: seconds per real element of the overlap-add block copies (numpy, one thread)
BLOCK_COPY_S = 1.5e-9
#: fixed seconds per transform lane (per-transform overhead of pocketfft)
LANE_S = 2.0e-7
#: float64 costs this much more than float32
F64_FACTOR = 1.8
#: a whole call costs this much more than the sum of its parts measured alone
#: (spectra streamed through memory between phases); small since the buffers
#: are kept between calls instead of page-faulted on every one
IN_SITU = 1.1
#: the GEMM contraction is used when a group's channel product CIG*COG is at least this
GEMM_MIN_CHANNELS = 64
#: a block plan must beat the unblocked cost by this factor to be used
BLOCK_GAIN = 0.75
#: equal tiles over all axes must beat the per-axis plan by this factor (1:
#: tiles beat equal-cost strips in practice -- smaller spectra -- which the
#: model does not see)
TILE_GAIN = 1.0

# ---------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------
def _span3(spec):
    return tuple(d * (k - 1) + 1 for k, d in zip(spec.kernel3, spec.dilation3))


def _fft_geom(spatial3):
    """(F, axes, spectrum shape) for padded spatial sizes ``spatial3``."""
    F = tuple(scipy.fft.next_fast_len(p, real=True) if p > 1 else 1 for p in spatial3)
    axes = tuple(i for i in range(3) if F[i] > 1) or (2,)
    mshape = list(F)
    mshape[axes[-1]] = F[axes[-1]] // 2 + 1
    return F, axes, tuple(mshape)


def _sub_spec(spec, **kw):
    return dataclasses.replace(spec, **kw)


def _with_axis(spec, axis, length, batch):
    """Spec of one block: spatial axis ``axis`` (0..2 of the 3-D view) of
    length ``length`` with no padding (the block copies hold the padding of
    that axis), the other axes as they are, batch ``batch``."""
    j = axis - (3 - spec.ndim)
    sp, pads = list(spec.in_spatial), list(spec.padding)
    sp[j], pads[j] = length, (0, 0)
    return _sub_spec(spec, batch=batch, in_spatial=tuple(sp), padding=tuple(pads))


# ---------------------------------------------------------------------------
# cost model and plans
# ---------------------------------------------------------------------------
def _lane_cost(ftot):
    """Seconds per transform lane of ``ftot`` real elements (pack + transform)."""
    return FFT_S_PER_NLOGN * ftot * math.log2(max(ftot, 2)) + LANE_S + COPY_S * ftot


def _kernel_by_dft(spec, F, axes, inverse=False):
    """True when the kernel's (inverse) transform is cheaper as DFT-matrix
    products (:mod:`fft_dft`) than as zero-padded transforms."""
    return _dft_s(inverse) * dft_cmacs(F, axes, spec.kernel3, inverse) < _lane_cost(math.prod(F))


def _dft_s(inverse):
    return CMAC_IDFT_S if inverse else CMAC_DFT_S


def _cmac_s(spec, batch):
    """Seconds per complex multiply-add of the per-frequency contraction
    (``batch``: the samples of one pipeline's GEMM)."""
    CIG, COG = spec.in_channels_per_group, spec.out_channels_per_group
    if CIG == COG == 1:
        return CMAC_DW_S
    if CIG * COG < GEMM_MIN_CHANNELS:
        return CMAC_LOOP_S
    return CMAC_GEMM_S * (1.0 + GEMM_SMALL / max(1, min(batch, CIG, COG)))


def _cost(spec, op, spatial3, batch, n_threads=1):
    """Seconds for ``op`` with padded spatial sizes ``spatial3`` and ``batch``
    (the batch includes folded overlap-add blocks)."""
    F, axes, mshape = _fft_geom(spatial3)
    ftot = math.prod(F)
    m = math.prod(mshape)
    C, CO, CIG = spec.in_channels, spec.out_channels, spec.in_channels_per_group
    # data lanes: forward x, y^-1; grad_input gy, gx^-1; grad_weight x, gy;
    # backward x, gy, gx^-1 -- and the kernel's lanes (w, gw^-1 or both)
    data = batch * (2 * C + CO if op == "backward" else C + CO)
    t = data * _lane_cost(ftot)
    for inverse in {"forward": (False,), "grad_input": (False,), "grad_weight": (True,),
                    "backward": (False, True)}[op]:
        per = _lane_cost(ftot)
        if _kernel_by_dft(spec, F, axes, inverse):
            per = _dft_s(inverse) * dft_cmacs(F, axes, spec.kernel3, inverse)
        t += CO * CIG * per
    n_contr = 2 if op == "backward" else 1
    # on n threads each pipeline contracts its slice of the batch (fft._batched)
    per_pipe = max(1, batch // max(1, min(n_threads, batch)))
    t += n_contr * _cmac_s(spec, per_pipe) * m * batch * CO * CIG
    # the kernel spectra (W, the grad_weight sum or both) pass through memory,
    # once per pipeline: each reads all of W (or zeroes and fills its own sum)
    spectra = (2 if op == "backward" else 1) * max(1, min(n_threads, batch))
    serial = SPECTRUM_S * spectra * m * CO * CIG * 2 * spec.itemsize
    if spec.dtype == np.float64:
        t *= F64_FACTOR
    return IN_SITU * t / max(1, n_threads) + serial


def _fast_candidates(lo, hi):
    """A geometric grid (ratio ~1.15) of fast transform lengths in [lo, hi)."""
    out, f = [], scipy.fft.next_fast_len(max(lo, 1), real=True)
    while f < hi:
        out.append(f)
        f = scipy.fft.next_fast_len(max(f + 1, int(f * 1.15)), real=True)
    return out


def _blocked_geometry(spec, plan):
    """(innermost spec, bytes of the block copies) for an overlap-add plan."""
    sub, extra = spec, 0
    for axis, B in plan:
        P = sub.padded_shape5[2 + axis]
        L = _span3(sub)[axis]
        nb = -(-(P - L + 1) // B)
        nxt = _with_axis(sub, axis, B - sub.stride3[axis] + L, sub.batch * nb)
        # input segments, output pieces and their joined copy (forward); the
        # grad_output segments, input pieces, their padded and summed copies
        # (grad_input)
        extra += (3 * math.prod(nxt.input_shape5)
                  + 2 * math.prod(nxt.output_shape5)) * spec.itemsize
        sub = nxt
    return sub, extra


def _plan_cost(spec, op, plan, n_threads=1):
    """Estimated seconds of ``op`` run with the overlap-add ``plan``: the core
    on the blocked geometry plus the block copies (numpy, one thread)."""
    sub, extra = _blocked_geometry(spec, plan)
    return (_cost(spec, op, sub.padded_shape5[2:], sub.batch, n_threads)
            + BLOCK_COPY_S * extra / spec.itemsize)


def _greedy_plan(spec, op):
    """Axis by axis, longest relative to the kernel first: block an axis
    where that lowers the cost of the core by the factor ``BLOCK_GAIN``."""
    P = list(spec.padded_shape5[2:])
    L = _span3(spec)
    s = spec.stride3
    batch = spec.batch
    plan = []
    order = sorted(range(3), key=lambda i: -P[i] / L[i])
    for i in order:
        o1 = P[i] - L[i] + 1
        if o1 <= s[i]:
            continue
        best_cost, best = _cost(spec, op, P, batch), None
        if L[i] == 1:
            # the kernel does not span this axis: fold it into the batch, no transform
            best = (s[i], -(-o1 // s[i]))
        else:
            for f in _fast_candidates(L[i], P[i]):
                B = (f - L[i] + s[i]) // s[i] * s[i]
                if B < s[i] or B >= o1:
                    continue
                nb = -(-o1 // B)
                trial = list(P)
                trial[i] = B - s[i] + L[i]
                c = _cost(spec, op, trial, batch * nb)
                if c < BLOCK_GAIN * best_cost:
                    best_cost, best = c, (B, nb)
        if best is not None:
            B, nb = best
            plan.append((i, B))
            P[i] = B - s[i] + L[i]
            batch *= nb
    return plan


def _tile_plans(spec):
    """Overlap-save tiles in every axis the kernel spans, one transform length
    ``f`` for all of them (the axes it does not span folded into the batch):
    small tiles make the kernel's spectrum small and the per-frequency GEMM
    tall (N = batch x tiles)."""
    P = spec.padded_shape5[2:]
    L = _span3(spec)
    s = spec.stride3
    spanned = [i for i in range(3) if L[i] > 1 and P[i] - L[i] + 1 > s[i]]
    if len(spanned) < 2:
        return []
    fold = [(i, s[i]) for i in range(3) if L[i] == 1 and P[i] > s[i]]
    out = []
    for f in _fast_candidates(max(L[i] for i in spanned) + 1, max(P[i] for i in spanned)):
        plan = []
        for i in spanned:
            B = (f - L[i] + s[i]) // s[i] * s[i]
            if s[i] <= B < P[i] - L[i] + 1:
                plan.append((i, B))
        if len(plan) == len(spanned):
            out.append(fold + plan)
    return out


# A pure function of (problem, op): remembered, so the plan search (hundreds of
# microseconds) stays out of repeated calls. Returns a list: callers must not mutate it.
@functools.lru_cache(maxsize=1024)
def _block_plan(spec, op="forward"):
    """Overlap-add / overlap-save plan: list of (axis, B) with B outputs
    (stride-1 positions, a multiple of the stride) per block.

    The greedy per-axis plan (:func:`_greedy_plan`), unless equal tiles over
    all spanned axes (:func:`_tile_plans`) cost less by :func:`_plan_cost`
    (times ``TILE_GAIN``).
    """
    best = _greedy_plan(spec, op)
    best_cost = bar = _plan_cost(spec, op, best)
    for plan in _tile_plans(spec):
        c = _plan_cost(spec, op, plan)
        if c < TILE_GAIN * bar and c < best_cost:
            best, best_cost = plan, c
    return best


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------
def _phases(spec, op, kept=True, threads=1, dft_threads=None):
    """[(fixed bytes, bytes per batch sample)] alive at each peak of the unblocked core.

    The peak of a chunk of ``nb`` samples is ``max(fixed + nb * per)`` over the
    phases. Per transform lane: ``f`` real elements of the zeroed buffer,
    ``c`` real elements of its spectrum. The last phase is the whole set of
    buffers: a call keeps the buffers it frees for the next one
    (:func:`fastconv._strategies.fft.kept_buffers`), so all of them can be
    held at once; the others are the live arrays of each step. With
    ``kept=False`` that phase is left out (a budget too small to keep every
    buffer: the call then keeps only what fits its workspace). On ``threads``
    threads grad_weight keeps one spectrum sum per pipeline
    (:func:`fastconv._strategies.fft._batched`); the kernel's DFT runs on
    ``dft_threads`` (default ``threads``), each with its own buffers.
    """
    dt = threads if dft_threads is None else dft_threads
    F, axes, mshape = _fft_geom(spec.padded_shape5[2:])
    isz = spec.itemsize
    f, c = math.prod(F) * isz, 2 * math.prod(mshape) * isz
    C, CO, wl = spec.in_channels, spec.out_channels, spec.out_channels * spec.in_channels_per_group
    # the kernel's transform (w -> W) and inverse (GW -> gw), beyond W / GW
    kf = (dft_bytes(F, axes, spec.kernel3, wl, isz, threads=dt)
          if _kernel_by_dft(spec, F, axes) else wl * (f + c))
    ki = (dft_bytes(F, axes, spec.kernel3, wl, isz, True, threads=dt)
          if _kernel_by_dft(spec, F, axes, True) else wl * f)
    # kept between calls: the same without the DFT matrices (cached once made)
    kfk = (dft_bytes(F, axes, spec.kernel3, wl, isz, cached=True)
           if _kernel_by_dft(spec, F, axes) else kf)
    kik = (dft_bytes(F, axes, spec.kernel3, wl, isz, True, cached=True)
           if _kernel_by_dft(spec, F, axes, True) else ki)
    if op in ("forward", "grad_input"):
        a, z = (C, CO) if op == "forward" else (CO, C)   # transformed, inverted
        return [(kf, 0),                                # the kernel's transform
                (c * wl, (f + c) * a),                  # the input's transform
                (c * wl, c * (a + z)),                  # the contraction
                (c * wl, (c + f) * z),                  # the inverse
                (c * wl + kfk, (f + c) * (a + z))][:None if kept else -1]   # all kept
    gws = (min(threads, spec.batch) - 1) * c * wl    # the other pipelines' sums
    if op == "grad_weight":
        return [(c * wl + gws, (f + c) * C),                  # x's transform
                (c * wl + gws, c * C + (f + c) * CO),   # grad_output's transform
                (wl * c + ki, 0),                       # the inverse of the sum
                (wl * c + gws + kik, (f + c) * (C + CO))][:None if kept else -1]  # all kept
    # backward: W spectrum and the grad_weight sum live throughout
    return [(kf, 0),
            (2 * c * wl + gws, (f + c) * C),
            (2 * c * wl + gws, c * C + (f + c) * CO),
            (2 * c * wl + gws, c * (C + CO)),           # x's spectrum freed, GX made
            (2 * c * wl + gws, (c + f) * C),            # GX's inverse
            (wl * c + ki, 0),                           # the inverse of the sum
            (2 * c * wl + gws + kfk + kik, (f + c) * (2 * C + CO))][:None if kept else -1]


def _mem(spec, op, kept=True, threads=1, dft_threads=None):
    """(fixed bytes, bytes per batch sample): bounds over the phases of the core."""
    ph = _phases(spec, op, kept, threads, dft_threads)
    return max(p[0] for p in ph), max(p[1] for p in ph)


def _peak(spec, op, nb, kept=True, threads=1, dft_threads=None):
    return max(fx + nb * per for fx, per in _phases(spec, op, kept, threads, dft_threads))


def _group_extra(spec, sub, op):
    """Bytes held when the groups run in chunks of ``sub``: contiguous copies of
    one chunk's inputs, and every chunk's result until they are concatenated."""
    if sub.groups == spec.groups:
        return 0
    n_out = spec.batch * math.prod(spec.output_shape5[2:])
    n_in = spec.batch * math.prod(spec.input_shape5[2:])
    ins = {"forward": sub.in_channels * n_in,
           "grad_input": sub.out_channels * n_out}.get(
        op, sub.in_channels * n_in + sub.out_channels * n_out)
    ins += sub.out_channels * spec.in_channels_per_group * math.prod(spec.kernel3)
    outs = {"forward": math.prod(spec.output_shape5),
            "grad_input": math.prod(spec.input_shape5),
            "grad_weight": math.prod(spec.weight_shape5),
            "backward": math.prod(spec.input_shape5) + math.prod(spec.weight_shape5)}[op]
    return (ins + outs) * spec.itemsize


@functools.lru_cache(maxsize=512)   # pure in (problem, op, budget): kept out of repeated calls
def _chunks(spec, op, budget, threads=1):
    """(groups per chunk, samples per chunk, workspace bytes, pipelines) or
    raise MemoryError.

    Pipelines (:func:`fastconv._strategies.fft._batched`): one per thread,
    unless their extra spectrum sums (grad_weight) do not fit, then one.
    Every buffer is kept between calls when that costs no smaller chunks
    than the live buffers alone would need; otherwise the live buffers set
    the chunks and the call keeps only what fits that workspace."""
    threads = max(1, int(threads))
    for pipes in dict.fromkeys((threads, 1)):
        try:
            live = _chunks_for(spec, op, budget, False, pipes, threads)
        except MemoryError:
            if pipes == 1:
                raise
            continue
        try:
            kept = _chunks_for(spec, op, budget, True, pipes, threads)
        except MemoryError:
            return live + (pipes,)
        return (kept if kept[:2] == live[:2] else live) + (pipes,)


def _chunks_for(spec, op, budget, kept, threads, dft_threads=None):
    G = spec.groups
    gc = G
    while True:
        sub = spec if gc == G else _group_spec(spec, gc)
        extra = _group_extra(spec, sub, op)
        if _peak(sub, op, 1, kept, threads, dft_threads) + extra <= budget or gc == 1:
            break
        gc = max(1, gc // 2)
    room = budget - extra
    nbc = min([(room - fx) // per for fx, per in _phases(sub, op, kept, threads, dft_threads) if per]
              + [spec.batch]) if _peak(sub, op, 1, kept, threads, dft_threads) <= room else 0
    if nbc < 1:
        raise MemoryError(
            f"fft {op}: one sample of one group needs "
            f"{_peak(sub, op, 1, kept, threads, dft_threads) + extra} bytes "
            f"of transform buffers (transform size {_fft_geom(spec.padded_shape5[2:])[0]}), "
            f"more than the memory budget of {budget} bytes; raise "
            "fastconv.config(memory_budget=...) or use another strategy"
        )
    nbc = int(min(nbc, spec.batch))
    return gc, nbc, _peak(sub, op, nbc, kept, threads, dft_threads) + extra


def _group_spec(spec, gc):
    return _sub_spec(spec, groups=gc, in_channels=gc * spec.in_channels_per_group,
                     out_channels=gc * spec.out_channels_per_group)
