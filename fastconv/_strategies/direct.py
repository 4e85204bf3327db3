"""Direct strategy: loops over kernel taps (``pyx/_direct.pyx``), padding inside.

The kernels take the input unpadded. Each thread copies the
planes it works on into a zero-bordered buffer and runs register tiles over
them ("wide" path); at stride s > 1 the same tiles run on polyphase components
(see below). The row loops on the unpadded arrays, with no scratch at all
("rows" path), run when the wide path's buffers exceed the memory budget, so
direct always fits, and for grad_input with non-finite weights.

The cost model follows the kernels' structure, because their speed varies 20x
with the problem's shape:

* wide forward (and grad_input, the same kernel on grad_output with the
  transposed kernel): register tiles of ``TILE`` outputs in the buffer's row
  pitch, the last one full over slack; each tap of an input channel costs
  ``_TAP4`` for a block of ``OBLOCK`` output channels, ``_TAP1`` per channel
  when a group has fewer (depthwise); plus filling the buffers and copying the
  outputs out of the wide layout. With few (image, group, block) tasks the
  outputs are cut into slabs (the plan's ``nsl``), which the tasks count, each
  slab's buffer filled with its halo; depthwise-like groups with 4-7 kernel
  rows run row blocks (``rows4``), ``_ROWS4`` of the quads' tap cost;
* wide grad_weight: the level's register blocks of nr output channels x nk
  taps (``_direct.gw_block()``) over the plane, one register of outputs at a
  time: nr*nk multiply-adds against nr aligned grad_output loads and nk
  unaligned input loads (two load slots each), which overlap: ``_GW_SLOT`` per
  step of the larger count; ``_GW_CALL`` per block and plane; each input plane
  is filled once per task's block of output channels (the plan's ``och``, at most
  ``GW_OCH``);
* stride s > 1 runs the same wide kernels on polyphase components: of the
  input (forward, grad_weight), of grad_x (grad_input, "poly");
* over the memory budget, or with non-finite weights in grad_input, row loops:
  per multiply-add and per row of outputs.

Coefficients are single-thread float32 seconds of the avx512 kernels, taken as
process CPU time (steady on a shared machine); ``fastconv tune --calibrate``
rescales them per op, ndim and dtype, so only their ratios to each other matter.
How they were fitted: ``docs/bench/notes.md`` ("direct's cost model").
"""
from __future__ import annotations

import math

from .. import _cpu
from .._ext import _direct
from . import direct_plan
from .protocol import StrategyPlan, result_array

TILE, OBLOCK, LANES = _direct.TILE, _direct.OBLOCK, _direct.LANES
GW_OCH = _direct.GW_OCH

_TAP4 = 4.9e-9      # wide: one tap of one input channel, OBLOCK output channels x TILE
_TAP1 = 4.2e-9      # ... one output channel x TILE (groups with < OBLOCK channels)
# ... of which a part is paid per tile, not per tap (the accumulators loaded and
# stored, the tile's set-up): a tap costs _TAP1 * (_TAP1_TAP + _TAP1_TILE / K), so
# few-tap depthwise kernels cost more per tap than many-tap ones.
_TAP1_TAP, _TAP1_TILE = 0.51, 8.1
# wide grad_weight: the multiply-adds and loads of a step overlap, so a step costs
# the larger count, not the sum (a 4x6 block is bound by its 24 multiply-adds, its
# 16 load slots hide behind them). Both coefficients are scaled so that the
# estimates keep the level the shipped calibration factors were fitted to.
_GW_SLOT = 0.51e-9  # one step slot (a vector multiply-add, or a load slot)
_GW_CALL = 68e-9    # one register block over one plane (call, lane sums)
# (no extra cost when a block's grad_output rows outgrow L1: the hardware
# prefetcher streams those rows, and a term for it made such estimates too high)
# Strided ops: each polyphase component past the first adds a share of the whole
# tap work (short component rows, a tile's accumulators loaded and stored per
# component); grad_weight on phase-split planes runs slower than at stride 1.
_POLY_COMPONENT = 0.4
_GW_POLY = 1.23
# row blocks (one channel in and out per group, 4-7 kernel rows) share their input
# loads between four output rows: a fraction of the quads' tap cost
_ROWS4 = 0.65
# The rates above are those of the avx512 tiles (64-byte registers). A level with
# narrower registers runs the same contracts in more passes, and not every path
# loses alike: per level, the scale of (4-channel tiles, one-channel tiles, row
# blocks, grad_weight blocks). avx2: the lanes it lacks (2x), less for the
# one-channel tiles, which run 8 ymm accumulators in one pass where avx512 has 4
# zmm, and less for the 4-channel tiles, whose passes of 3 registers run ~1.15x
# the rate of the passes of 2 that the avx2 calibration was fitted with; baseline:
# avx2's times the baseline/avx2 time ratio of each path on one CPU (where both
# run). A level's calibration corrects each op's overall rate, not the ratios
# between paths, so these must be right relative to each other.
_LEVEL_SCALE = {"avx512": (1.0, 1.0, 1.0, 1.0), "avx2": (1.75, 1.3, 2.0, 2.0),
                "baseline": (3.2, 1.6, 3.8, 2.6)}
_GEN_MAC = {"forward": 0.35e-9, "grad_input": 0.48e-9, "grad_weight": 0.9e-9}
_GEN_ROW = 5.4e-9   # rows path: per row of outputs and tap
_PLANE_S = 25e-9    # per input plane and block of output channels (a task's set-up,
#                     which on maps of a few rows outweighs the taps)
_COPY = 0.15e-9     # per element copied (buffer fills, outputs out of the wide layout)
_F64 = 1.8          # float64 / float32 for the vectorized paths
_F64_GEN = 1.1      # ... and for the row loops


def _plan(spec, op, n_threads, general=False, finite=True):
    """The kernel's plan (:func:`.direct_plan.plan`) for ``op`` on ``spec``."""
    return direct_plan.plan(op, spec.input_shape5, spec.weight_shape5, spec.output_shape5,
                            spec.stride3, spec.dilation3, spec.padding3, spec.groups,
                            int(n_threads), spec.itemsize, general, finite)


# The one cache of the kernel's plans: a pure function of (problem, op, threads,
# budget, finite weights); remembering them keeps the planner out of a repeated
# call (tens of microseconds on a tiny one). A plan is frozen, so one may serve
# any number of Plans and threads.
_plans = {}


def _choose_plan(spec, op, n_threads, budget, finite=True):
    """The wide (or poly) plan if its buffers fit ``budget``, else the row loops
    (also for a grad_input with non-finite weights: ``finite=False``)."""
    key = (spec, op, int(n_threads), budget, finite)
    info = _plans.get(key)
    if info is not None:
        return info
    info = _plan(spec, op, n_threads, finite=finite)
    if info.path != "rows" and direct_plan.scratch_bytes(info, spec.itemsize) > budget:
        info = _plan(spec, op, n_threads, general=True, finite=finite)
    if len(_plans) >= 1024:
        _plans.clear()
    _plans[key] = info
    return info


# (a cost-model call without options: no budget, the wide plan)
_NO_BUDGET = 1 << 62


def _parallel(seconds, tasks, n_threads):
    """Spread ``seconds`` of ``tasks`` equal tasks over ``n_threads``."""
    threads = max(1, min(int(n_threads), tasks))
    return seconds * math.ceil(tasks / threads) / tasks


def _wide_seconds(spec, op, info):
    """Single-thread seconds of the wide path at the running level."""
    s4, s1, srows, sgw = _LEVEL_SCALE.get(_cpu.level(), (1.0, 1.0, 1.0, 1.0))
    N, G, K = spec.batch, spec.groups, spec.kernel_size
    P = math.prod(info.B)
    if op == "grad_weight":
        cig, cog = spec.in_channels_per_group, spec.out_channels_per_group
        vecs = info.wpad // LANES[spec.itemsize]
        # the level's register block (gw_nr channels x up to gw_nk taps, fewer
        # taps when a task has fewer channels), taps split evenly as the kernel does
        gw_nr, gw_nk, gw_nk_few = _direct.gw_block()
        tpb = gw_nk if min(info.och, cog) >= gw_nr else gw_nk_few
        # a pass takes the taps of cpp input channels (the kernel's pairs)
        cpp = info.cpp
        taps = cpp * K
        blocks = -(-taps // tpb)
        nks = [(b + 1) * taps // blocks - b * taps // blocks for b in range(blocks)]
        nob, rest = divmod(cog, gw_nr)
        per_c = 0.0   # one input channel of one image, all output channels of a group
        for nr, count in ((gw_nr, nob), (rest, 1 if rest else 0)):
            slots = sum(max(nr * nk, nr + 2 * nk) for nk in nks)
            per_c += count * (vecs * slots * _GW_SLOT * sgw + blocks * _GW_CALL) / cpp
        # strided: taps of one block in different phases (not the kw-shifted
        # layout, whose components are per tap column at stride 1)
        if spec.stride3 != (1, 1, 1):
            per_c *= _GW_POLY
        # each input plane is filled once per task's block of output channels
        fills = (G * (-(-cog // info.och)) * cig * P
                 + spec.out_channels * info.wpad)
        return N * (G * cig * per_c + fills * _COPY)
    cig, cog = ((spec.out_channels_per_group, spec.in_channels_per_group)
                if op == "grad_input" else
                (spec.in_channels_per_group, spec.out_channels_per_group))
    nob, rest = divmod(cog, OBLOCK)
    if info.path == "poly":   # components: their own tiles and taps
        tile_taps = sum(m.wpad // TILE * m.ntaps for m in info.meta)
        tile_taps *= 1 + _POLY_COMPONENT * (info.ncomp - 1)
        fills = N * G * cig * P * min(info.threads, -(-cog // OBLOCK))
    else:
        # the vectors run over all slabs (each a multiple of the call's 2 or 4)
        tile_taps = info.vrun * LANES[spec.itemsize] / TILE * K
        # static schedule, tasks in (n, group, slab) order: each thread fills each
        # of its slab buffers once, a buffer split between two threads twice
        fills = (N * G * info.nsl + info.threads - 1) * cig * P
    # (row blocks are priced as a fraction of the per-tap model, fills included)
    one = _TAP1 * (_ROWS4 * srows if info.rows4 else (_TAP1_TAP + _TAP1_TILE / K) * s1)
    t = N * G * cig * (tile_taps * (nob * _TAP4 * s4 + rest * one)
                       + (nob + (1 if rest else 0)) * _PLANE_S)
    outs = math.prod(spec.input_shape5 if op == "grad_input" else spec.output_shape5)
    return t + (outs + fills) * _COPY


class DirectStrategy:
    name = "direct"

    def supports(self, spec, op):
        return None

    def workspace(self, spec, op, options):
        """The bytes a call allocates beyond its inputs and output, and the index
        arrays its kernel plan holds (:func:`.direct_plan.scratch_bytes`).

        Wide path: per-thread zero-bordered buffers, output tiles and
        accumulators and, for grad_input, the transposed kernel. Row loops:
        grad_weight's per-thread accumulators only.
        """
        info = _choose_plan(spec, op, options.threads, options.memory_budget)
        return direct_plan.scratch_bytes(info, spec.itemsize)

    def estimate(self, spec, op, n_threads, options):
        # the plan a call would run: within a small budget, the row loops
        budget = _NO_BUDGET if options is None else options.memory_budget
        info = _choose_plan(spec, op, n_threads, budget)
        f64 = spec.itemsize == 8
        if info.path != "rows":
            t = _wide_seconds(spec, op, info)
            return _parallel(t * (_F64 if f64 else 1.0), info.tasks, n_threads)
        out3 = spec.output_shape5[2:]
        rows = (spec.batch * spec.out_channels * spec.in_channels_per_group
                * spec.kernel_size * out3[0] * out3[1])
        t = spec.macs * _GEN_MAC[op] + rows * _GEN_ROW
        return _parallel(t * (_F64_GEN if f64 else 1.0), info.tasks, n_threads)

    def plan(self, spec, op, options):
        """The kernel's plan within the memory budget, its wide path set up once
        (``_direct.WideCall``), and for grad_input the row-loop plan that runs when
        the weights are not all finite."""
        n, budget = options.threads, options.memory_budget
        info = _choose_plan(spec, op, n, budget)
        kernel = _direct.WideCall(info) if info.path == "wide" else info
        rows = (_choose_plan(spec, op, n, budget, finite=False)
                if op == "grad_input" and info.path != "rows" else None)
        return StrategyPlan(self.name, op, spec, n, budget,
                            direct_plan.scratch_bytes(info, spec.itemsize), kernel, rows)

    def run(self, plan, a, b, out=None, memo=None):
        # (memo: nothing of the weight is worth keeping across calls here)
        out = result_array(plan.spec, plan.op, out)
        kernel = plan.kernel
        try:
            if type(kernel) is _direct.WideCall:
                kernel(a, b, out)
            else:
                getattr(_direct, plan.op)(a, b, out, kernel)
        except _direct.NonFiniteWeights:
            # grad_input's kernel learns in its one pass over the weights that
            # they are not all finite: the row loops handle them
            _direct.grad_input(a, b, out, plan.fallback)
        return out
