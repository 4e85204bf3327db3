"""FFT strategy: all three passes of a convolution in the frequency domain.

How it works
------------
Every op sees the prepared problem (:mod:`fastconv._prepare`): the input
*unpadded*, a kernel already flipped when ``flip=True``. The
input is packed at its padding offset into a zeroed transform buffer, so the
zero border costs nothing; ``P`` is the padded spatial size.
Along each axis the kernel is *dilated* (zeros inserted, span
``L = dilation*(K-1) + 1``) and every transform has the length
``F = scipy.fft.next_fast_len(P, real=True)`` (axes of size 1 are not
transformed). With ``Z`` the stride-1 valid cross-correlation,

* forward:     ``Y = X * conj(W)``, then ``y = Z[::stride]`` (crop + subsample);
* grad_input:  ``GX = GZ * W`` where ``gz`` is grad_output *stride-dilated*
  (zeros inserted): the full convolution, cropped to the input (the padding
  is dropped while unpacking);
* grad_weight: ``GW = sum_n X * conj(GZ)``, then every dilation-th tap.

Cross-correlation is multiplication by the conjugate spectrum of the kernel (no
reversed copy), so ``F >= P`` is enough: no valid output wraps around. The
channel contraction per frequency (``sum_c``, ``sum_o``, ``sum_n``, per group),
the zero padding / dilation / stride dilation into the transform buffers and
the cropping / subsampling out of them are Cython loops in ``pyx/_fft.pyx``;
the transforms are ``scipy.fft.rfftn/irfftn`` with ``workers=n_threads``.

Transform reuse: :meth:`FFTStrategy.backward` computes grad_input and
grad_weight from one transform of grad_output and one each of x and w: 3
forward transform sets instead of the 4 of two separate calls (a training
step is then 6 transform sets -- x, w, y^-1, gy, gx^-1, gw^-1 -- instead of 9).

Overlap-add: when an axis of the input is much longer than the kernel, the
axis is cut into blocks of ``B`` stride-1 output positions (``B/s`` outputs);
each block needs ``B - s + L`` inputs (``B + L - 1`` at stride 1), so the
blocks are folded into the batch axis and transformed with the short length
``next_fast_len(B - s + L)``. Axes the kernel does not span (``L == 1``) are
always folded, never transformed. Forward and grad_weight partition the
*outputs* (the input segments overlap: overlap-save form, every output written
once); grad_input partitions grad_output and adds the overlapping pieces of the
input gradient (overlap-add proper). ``B`` is chosen per axis by minimizing the
cost model (:func:`_cost`), not a constant, so work stays ~ ``P log(B+L)``
instead of ``P log P`` and memory is linear in ``P``.

Tiles: for 2-D and 3-D layers the plan may instead cut every axis the
kernel spans into equal overlap-save tiles (one transform length for all),
chosen when the cost model prices them lower than the per-axis plan: small
tiles make the kernel's spectrum small and each frequency's GEMM taller
(N = batch x tiles).

Kernel spectra: the kernel has ``K`` taps in a transform of length ``F``, so
its ``CO*CIG`` planes are mostly zeros. When the cost model says so
(:func:`fft_plan._kernel_by_dft`, nearly always for mid-size kernels) its
spectrum is computed by DFT-matrix products along each axis
(:mod:`fft_dft`: ``M*K`` complex multiply-adds per lane and axis, one
batched cgemm over all lanes), and grad_weight's inverse computes only the
``K`` taps it keeps; otherwise the kernel is packed and transformed like the
data.

Threads: on ``n`` threads each chunk of the batch is cut into ``n`` slices,
and each slice runs the whole chain (pack, transform, contraction, inverse,
unpack) single-threaded in its own thread (:func:`fft_exec._batched`): the
OpenMP loops and pocketfft's own thread pool, alternated on the same cores,
fought for them (see :mod:`fft_exec`). grad_weight keeps one spectrum
sum per pipeline and adds them in a fixed order. A batch of one (after
blocking) runs every step on all threads instead.

Stride: the stride-1 correlation is computed in full and subsampled, so a
stride ``s`` wastes a factor ``s**ndim`` of the work. FFT is a poor choice for
large strides; :meth:`FFTStrategy.estimate` charges the full work whatever the
stride, so the dispatcher sees the waste.

Numerics
--------
* float32 inputs are transformed in complex64, float64 in complex128. The
  rounding error of an FFT grows like ``log2(F)`` times the unit roundoff,
  relative to the *norm* of the map, not elementwise: small outputs next to
  large ones carry the absolute error of the large ones. Expect about
  ``1e-7 * log2(prod(F)) * max|y|`` in float32 and ``1e-16 * ...`` in float64.
* A NaN or Inf anywhere in an input map spreads over the *whole* output map
  of every output channel after the inverse transform -- with a block or tile
  plan, over every block or tile whose transform window contains it -- unlike
  the direct and im2col strategies where it stays in the outputs it touches.
  A NaN or Inf in the kernel poisons the whole map of its output channel (its
  DFT, by transform or by DFT matrix, has it in every bin). Forbid this
  strategy with ``fastconv.config(allow_fft=False)`` where that matters.

Memory
------
Complex buffers are chunked over the batch (then over groups) so that the
workspace stays within the plan's memory budget (``memory_budget``); if a single
sample of a single group does not fit, ``MemoryError`` says how many bytes
were needed. The buffers a call frees are kept for the next call
(:func:`kept_buffers`): scipy.fft allocates every transform's output itself,
and fresh buffers of several MiB would be page-faulted on every call, which
can cost more than the transforms. :meth:`FFTStrategy.workspace` reports
the bytes the call holds at its worst: every buffer of the core (:func:`_phases`;
kept, they can all be held at once), and the overlap-add and group-chunk
copies, which are taken from the budget first. The multi-axis inverse runs
in place (no pocketfft temporary). It overestimates in three places: the
kernel DFT's matrices and their construction temporaries are counted on
every call though they are cached after the first (:func:`fft_dft.dft_bytes`);
the block copies are counted as alive all at once (segments, pieces and joined
copy of every level); and the phases of a chunked batch are charged at their
largest chunk.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import as_strided

from .._ext import _fft
from .._threads import blas_limit as _blas_limit
from .fft_dft import kernel_spectrum, kernel_taps
from .fft_exec import _batched, _lanes_split, _summed, kept_buffers, release_buffers  # noqa: F401
from .fft_plan import (
    BLOCK_COPY_S,
    GEMM_MIN_CHANNELS,
    _block_plan,
    _blocked_geometry,
    _chunks,
    _cost,
    _fft_geom,
    _group_extra,
    _group_spec,
    _kernel_by_dft,
    _peak,
    _span3,
    _with_axis,
)
from .protocol import StrategyPlan, result_shape

_UNIT = (1, 1, 1)
_ZERO = (0, 0, 0)


# The transform functions are module-level so tests can count calls.
def _rfftn(a, axes, workers):
    return scipy.fft.rfftn(a, axes=axes, workers=workers, overwrite_x=True)


def _irfftn(a, s, axes, workers):
    # scipy's multi-axis c2r first copies its input into a complex temporary
    # (pocketfft's own allocation: page-faulted every call, and invisible to
    # the pool of kept buffers and to tracemalloc). The spectrum is scratch, so
    # the leading axes are inverted in place and only the last by c2r.
    if len(axes) > 1:
        a = scipy.fft.ifftn(a, axes=axes[:-1], workers=workers, overwrite_x=True)
    return scipy.fft.irfft(a, n=s[-1], axis=axes[-1], workers=workers)


def _kernel_spectrum(w, F, axes, mshape, dil, n):
    return kernel_spectrum(w, F, axes, mshape, dil, n)


# ---------------------------------------------------------------------------
# the unblocked core
# ---------------------------------------------------------------------------
class _Core:
    """Transforms and contractions of one (unblocked, one group chunk) problem."""

    def __init__(self, spec, n_threads):
        self.spec = spec
        self.n = n_threads
        self.F, self.axes, self.mshape = _fft_geom(spec.padded_shape5[2:])
        self.s_axes = [self.F[i] for i in self.axes]
        self.m = math.prod(self.mshape)
        self.rdt = spec.dtype
        self.gemm = spec.in_channels_per_group * spec.out_channels_per_group >= GEMM_MIN_CHANNELS

    def transform(self, src, a0, na, step, offset=_ZERO, n=None):
        """Spectrum (mshape..., na, src.shape[1]) of src[a0:a0+na], zero-inserted by
        step and placed at ``offset`` (the padding before each axis) in the buffer,
        on ``n`` threads (default: the core's)."""
        n = self.n if n is None else n
        buf = np.empty(self.F + (na, src.shape[1]), dtype=self.rdt)
        _fft.pack(src, buf, a0, step, offset, n, True)
        return np.ascontiguousarray(_rfftn(buf, self.axes, n))

    def kernel(self, w):
        """Spectrum (mshape..., CO, CIG) of the dilated kernel ``w``."""
        sp = self.spec
        if _kernel_by_dft(sp, self.F, self.axes):
            return _kernel_spectrum(w, self.F, self.axes, self.mshape, sp.dilation3, self.n)
        return self.transform(w, 0, sp.out_channels, sp.dilation3)

    def kernel_inverse(self, GW):
        """The kernel (CO, CIG, K...) whose spectrum is ``GW``: every
        dilation-th tap of its inverse transform."""
        sp = self.spec
        if _kernel_by_dft(sp, self.F, self.axes, inverse=True):
            return kernel_taps(GW, self.F, self.axes, sp.kernel3, sp.dilation3, self.rdt, self.n)
        gw = np.empty(sp.weight_shape5, dtype=sp.dtype)
        self.inverse(GW, gw, 0, sp.dilation3)
        return gw

    def inverse(self, spec_arr, dst, a0, step, offset=_ZERO, n=None):
        n = self.n if n is None else n
        r = np.ascontiguousarray(_irfftn(spec_arr, self.s_axes, self.axes, n))
        _fft.unpack(r, dst, a0, step, offset, n)

    def rv(self, a):
        """(m, rows, 2*cols) real view of a spectrum, as the kernels take it."""
        return a.reshape(self.m, a.shape[-2], a.shape[-1]).view(self.rdt)

    def empty(self, rows, cols):
        return np.empty(self.mshape + (rows, cols), dtype=np.result_type(self.rdt, 1j))


def _core_run(op, spec, a, b, n, nbc, pipes, memo=None, mkey=None):
    sp = spec
    core = _Core(sp, n)
    pb = tuple(p[0] for p in sp.padding3)  # x sits at this offset in its buffers
    G, N = sp.groups, sp.batch
    C, CO, CIG = sp.in_channels, sp.out_channels, sp.in_channels_per_group
    st = sp.stride3
    k = _lanes_split(pipes, nbc)
    # one thread's pipeline over samples [s0, s0 + ns); t is its thread count
    if op == "forward":
        xp, w = a, b
        Ws = _kernel_memo(core, w, memo, mkey)
        y = np.empty(sp.output_shape5, dtype=sp.dtype)

        def part(s0, ns, t, _):
            X = core.transform(xp, s0, ns, _UNIT, pb, t)
            Y = core.empty(ns, CO)
            _fft.contract_forward(core.rv(X), core.rv(Ws), core.rv(Y), G, core.gemm, t)
            del X
            core.inverse(Y, y, s0, st, _ZERO, t)
        _batched(part, N, nbc, n, k)
        return y
    if op == "grad_input":
        gy, w = a, b
        Ws = _kernel_memo(core, w, memo, mkey)
        gx = np.empty(sp.input_shape5, dtype=sp.dtype)

        def part(s0, ns, t, _):
            GY = core.transform(gy, s0, ns, st, _ZERO, t)
            GX = core.empty(ns, C)
            _fft.contract_grad_input(core.rv(GY), core.rv(Ws), core.rv(GX), G, core.gemm, t)
            del GY
            core.inverse(GX, gx, s0, _UNIT, pb, t)
        _batched(part, N, nbc, n, k)
        return gx
    # grad_weight and backward: one spectrum sum per pipeline, added in a fixed order
    GWs = [np.zeros(core.mshape + (CO, CIG), dtype=np.result_type(sp.dtype, 1j))
           for _ in range(k)]
    if op == "grad_weight":
        xp, gy = a, b

        def part(s0, ns, t, j):
            X = core.transform(xp, s0, ns, _UNIT, pb, t)
            GY = core.transform(gy, s0, ns, st, _ZERO, t)
            _fft.contract_grad_weight(core.rv(X), core.rv(GY), core.rv(GWs[j]), G, True,
                                      core.gemm, t)
        _batched(part, N, nbc, n, k)
        return core.kernel_inverse(_summed(GWs))
    # backward: a = (xp, w), b = gy
    (xp, w), gy = a, b
    Ws = core.kernel(w)
    gx = np.empty(sp.input_shape5, dtype=sp.dtype)

    def part(s0, ns, t, j):
        X = core.transform(xp, s0, ns, _UNIT, pb, t)
        GY = core.transform(gy, s0, ns, st, _ZERO, t)
        _fft.contract_grad_weight(core.rv(X), core.rv(GY), core.rv(GWs[j]), G, True,
                                  core.gemm, t)
        del X
        GX = core.empty(ns, C)
        _fft.contract_grad_input(core.rv(GY), core.rv(Ws), core.rv(GX), G, core.gemm, t)
        del GY
        core.inverse(GX, gx, s0, _UNIT, pb, t)
    _batched(part, N, nbc, n, k)
    Ws = None  # the spectrum's memory back before the inverse transform
    return gx, core.kernel_inverse(_summed(GWs))


def _kernel_memo(core, w, memo, mkey):
    """The kernel's spectrum, kept in ``memo`` (by problem and group chunk) when given."""
    if memo is None:
        return core.kernel(w)
    key = ("W",) + mkey
    Ws = memo.get(key)
    if Ws is None:
        Ws = memo[key] = core.kernel(w)
    return Ws


# ---------------------------------------------------------------------------
# group chunking
# ---------------------------------------------------------------------------
def _grouped(op, spec, a, b, n, budget, memo=None):
    gc, nbc, _, pipes = _chunks(spec, op, budget, n)
    G = spec.groups
    if gc >= G:
        return _core_run(op, spec, a, b, n, nbc, pipes, memo, (spec, 0))
    CIG, COG = spec.in_channels_per_group, spec.out_channels_per_group
    outs = []
    for g0 in range(0, G, gc):
        g1 = min(G, g0 + gc)
        sub = _group_spec(spec, g1 - g0)
        _, nbc, _, pipes = _chunks(sub, op, budget - _group_extra(spec, _group_spec(spec, gc), op),
                                   n)
        ci, co = slice(g0 * CIG, g1 * CIG), slice(g0 * COG, g1 * COG)
        if op == "forward":
            args = (np.ascontiguousarray(a[:, ci]), np.ascontiguousarray(b[co]))
        elif op == "grad_input":
            args = (np.ascontiguousarray(a[:, co]), np.ascontiguousarray(b[co]))
        elif op == "grad_weight":
            args = (np.ascontiguousarray(a[:, ci]), np.ascontiguousarray(b[:, co]))
        else:
            (xp, w) = a
            args = ((np.ascontiguousarray(xp[:, ci]), np.ascontiguousarray(w[co])),
                    np.ascontiguousarray(b[:, co]))
        outs.append(_core_run(op, sub, *args, n, nbc, pipes, memo, (sub, g0)))
    if op == "forward":
        return np.concatenate(outs, axis=1)
    if op == "grad_input":
        return np.concatenate(outs, axis=1)
    if op == "grad_weight":
        return np.concatenate(outs, axis=0)
    return (np.concatenate([o[0] for o in outs], axis=1),
            np.concatenate([o[1] for o in outs], axis=0))


# ---------------------------------------------------------------------------
# overlap-add blocking
# ---------------------------------------------------------------------------
def _segments(a, axis, nb, step, seglen, before=0):
    """(N*nb, C, ...) copy of ``nb`` windows of length ``seglen``, ``step`` apart,
    along spatial ``axis`` (0..2) of the 5-D array ``a`` zero-padded by
    ``before`` in front (and with zeros past its end): window j covers padded
    positions [j*step, j*step + seglen)."""
    ax = 2 + axis
    have = a.shape[ax]
    if before == 0 and (nb - 1) * step + seglen <= have:
        # every window inside: one strided copy
        st = a.strides
        shape = a.shape[:ax] + (nb, seglen) + a.shape[ax + 1:]
        strides = st[:ax] + (step * st[ax], st[ax]) + st[ax + 1:]
        v = as_strided(a, shape, strides, writeable=False)  # (N, C, .., nb, seg, ..)
        v = np.ascontiguousarray(np.moveaxis(v, ax, 1))     # (N, nb, C, .., seg, ..)
        return v.reshape((a.shape[0] * nb,) + v.shape[2:])
    out = np.zeros((a.shape[0], nb) + a.shape[1:ax] + (seglen,) + a.shape[ax + 1:],
                   dtype=a.dtype)
    for j in range(nb):
        lo = j * step - before              # input position of the window's start
        s0, s1 = max(lo, 0), min(lo + seglen, have)
        if s1 <= s0:
            continue
        src = [slice(None)] * 5
        src[ax] = slice(s0, s1)
        dst = [slice(None), j] + [slice(None)] * 4
        dst[ax + 1] = slice(s0 - lo, s1 - lo)
        out[tuple(dst)] = a[tuple(src)]
    return out.reshape((a.shape[0] * nb,) + out.shape[2:])


def _join(y, axis, nb, length):
    """Inverse of non-overlapping :func:`_segments`: (N*nb, C, .., b, ..) ->
    (N, C, .., length, ..) (blocks concatenated, cropped)."""
    ax = 2 + axis
    N = y.shape[0] // nb
    v = y.reshape((N, nb) + y.shape[1:])
    v = np.moveaxis(v, 1, ax)                           # (N, C, .., nb, b, ..)
    shape = v.shape[:ax] + (nb * v.shape[ax + 1],) + v.shape[ax + 2:]
    v = np.ascontiguousarray(v).reshape(shape)
    idx = [slice(None)] * 5
    idx[ax] = slice(0, length)
    return np.ascontiguousarray(v[tuple(idx)])


def _overlap_add(g, axis, nb, B, before, length):
    """Overlap-add (N*nb, C, .., B+L-1, ..) pieces placed B apart (in padded
    positions), cropped to the input: -> (N, C, .., length, ..) starting at
    padded position ``before``."""
    ax = 2 + axis
    N = g.shape[0] // nb
    seg = g.shape[ax]
    mpieces = -(-seg // B)
    v = g.reshape((N, nb) + g.shape[1:])
    v = np.moveaxis(v, 1, ax)                           # (N, C, .., nb, seg, ..)
    padshape = list(v.shape)
    padshape[ax + 1] = mpieces * B
    p = np.zeros(padshape, dtype=g.dtype)
    idx = [slice(None)] * 6
    idx[ax + 1] = slice(0, seg)
    p[tuple(idx)] = v
    # (N, C, .., nb, m, B, ..): piece j of block b lands in output block b + j
    p = p.reshape(v.shape[:ax] + (nb, mpieces, B) + v.shape[ax + 2:])
    outshape = v.shape[:ax] + (nb + mpieces - 1, B) + v.shape[ax + 2:]
    out = np.zeros(outshape, dtype=g.dtype)
    for j in range(mpieces):
        oi = [slice(None)] * 6
        oi[ax] = slice(j, j + nb)
        pi = [slice(None)] * 7
        pi[ax + 1] = j
        out[tuple(oi)] += p[tuple(pi)]
    out = out.reshape(v.shape[:ax] + ((nb + mpieces - 1) * B,) + v.shape[ax + 2:])
    # crop the padding: the input starts at padded position ``before``
    hi = min(before + length, out.shape[ax])
    shape = list(out.shape)
    shape[ax] = length
    res = np.zeros(shape, dtype=g.dtype) if hi - before < length else np.empty(shape, dtype=g.dtype)
    if hi > before:
        idx = [slice(None)] * 5
        idx[ax] = slice(0, hi - before)
        src = [slice(None)] * 5
        src[ax] = slice(before, hi)
        res[tuple(idx)] = out[tuple(src)]
    return res


def _execute(op, spec, a, b, n, plan, budget, memo=None):
    if not plan:
        return _grouped(op, spec, a, b, n, budget, memo)
    (axis, B), rest = plan[0], plan[1:]
    P = spec.padded_shape5[2 + axis]
    pb = spec.padding3[axis][0]
    n_in = spec.input_shape5[2 + axis]
    L = _span3(spec)[axis]
    s = spec.stride3[axis]
    O = spec.output_shape5[2 + axis]
    nb = -(-(P - L + 1) // B)
    bo = B // s
    seg = B - s + L
    sub = _with_axis(spec, axis, seg, spec.batch * nb)
    if op == "forward":
        y = _execute(op, sub, _segments(a, axis, nb, B, seg, pb), b, n, rest, budget, memo)
        return _join(y, axis, nb, O)
    if op == "grad_weight":
        return _execute(op, sub, _segments(a, axis, nb, B, seg, pb),
                        _segments(b, axis, nb, bo, bo), n, rest, budget)
    if op == "grad_input":
        g = _execute(op, sub, _segments(a, axis, nb, bo, bo), b, n, rest, budget, memo)
        return _overlap_add(g, axis, nb, B, pb, n_in)
    (x, w), gy = a, b
    gx, gw = _execute(op, sub, (_segments(x, axis, nb, B, seg, pb), w),
                      _segments(gy, axis, nb, bo, bo), n, rest, budget)
    return _overlap_add(gx, axis, nb, B, pb, n_in), gw


def error_estimate(spec):
    """Rough relative error of the FFT strategy on ``spec`` (vs max |output|).

    FFT rounding error grows about like eps * log2(transform size).
    """
    eps = float(np.finfo(spec.dtype).eps)
    n = math.prod(spec.padded_spatial)
    return 2.0 * eps * max(1.0, math.log2(n))


def overflow_factor(spec, op):
    """Bound on a float32 FFT's values, per unit of max|a| * max|b|.

    A transform's coefficients are bounded by the sum of |values| it transforms;
    the product of two spectra summed over the contracted channels, before the
    inverse transform's 1/n, bounds every intermediate.
    """
    n = math.prod(p + d * (k - 1) for p, k, d in zip(spec.padded_spatial, spec.kernel,
                                                        spec.dilation))
    terms = {"forward": spec.in_channels_per_group * spec.kernel_size,
             "grad_input": spec.out_channels_per_group * spec.kernel_size,
             "grad_weight": spec.batch * math.prod(spec.out_spatial)}[op]
    return float(n) * float(terms)


class FFTStrategy:
    """Frequency-domain convolution (see the module docstring)."""

    name = "fft"
    #: the option that keeps "auto" from FFT where its float32 values could overflow
    avoid = {"allow_fft": False}

    def supports(self, spec, op):
        if spec.dtype not in (np.float32, np.float64):
            return f"dtype {spec.dtype} is not float32/float64"
        return None

    def guard(self, spec, op, opts):
        """Why the options keep "auto" from FFT on this problem, or None."""
        if not opts.allow_fft:
            return "forbidden by allow_fft=False"
        if max(spec.stride) > opts.fft_max_stride:
            return (f"stride {spec.stride} > fft_max_stride={opts.fft_max_stride}: "
                    "FFT would compute and discard most outputs")
        if (opts.fft_rtol is not None and spec.dtype == np.float32
                and error_estimate(spec) > opts.fft_rtol):
            return (f"estimated float32 FFT error {error_estimate(spec):.1e} "
                    f"> fft_rtol={opts.fft_rtol:g}")
        return None

    def overflow_factor(self, spec, op, options):
        """:func:`overflow_factor` (the float32 overflow guard of plans)."""
        return overflow_factor(spec, op)

    def workspace(self, spec, op, options):
        """Bytes the call allocates beyond its inputs and output: the block
        copies of an overlap-add plan, then the transform buffers of the core
        chunked to the rest of the budget (all of them: the call keeps them
        for the next one)."""
        sub, extra = _blocked_geometry(spec, _block_plan(spec, op))
        try:
            ws = _chunks(sub, op, options.memory_budget - extra, options.threads)[2]
        except MemoryError:
            ws = _peak(_group_spec(sub, 1), op, 1, False, dft_threads=options.threads)
        return int(ws + extra)

    def estimate(self, spec, op, n_threads, options):
        sub, extra = _blocked_geometry(spec, _block_plan(spec, op))
        # the block copies (numpy, one thread) do not divide by the thread count
        serial = BLOCK_COPY_S * extra / spec.itemsize
        return _cost(spec, op, sub.padded_shape5[2:], sub.batch, n_threads) + serial

    def plan(self, spec, op, options):
        """The overlap-add blocks (:func:`fft_plan._block_plan`; ``op`` may be
        "backward", both backward passes at once, for :meth:`backward`)."""
        return StrategyPlan(self.name, op, spec, options.threads, options.memory_budget,
                            self.workspace(spec, op, options), _block_plan(spec, op))

    def run(self, plan, a, b, out=None, memo=None):
        """Execute ``plan`` (see :class:`~.protocol.Strategy`). ``memo``: a dict in
        which a caller whose weight ``b`` never changes keeps its spectra."""
        spec, op = plan.spec, plan.op
        # the contractions call cgemm/zgemm inside OpenMP loops: one BLAS thread each
        with _blas_limit(1), kept_buffers(_cap(plan)):
            r = _execute(op, spec, a, b, plan.threads, plan.kernel, _inner_budget(plan),
                         None if op == "grad_weight" else memo)
        if out is None:
            return r
        np.copyto(out, r)
        return out

    def backward(self, plan, x, w, gy):
        """Both backward passes on a plan made for op "backward" (the transforms
        of grad_output made once): ``(grad_x, grad_w)``."""
        with _blas_limit(1), kept_buffers(_cap(plan)):
            return _execute("backward", plan.spec, (x, w), gy, plan.threads, plan.kernel,
                            _inner_budget(plan))


def _inner_budget(plan):
    """The budget left for the core once the block copies are made."""
    return plan.budget - _blocked_geometry(plan.spec, plan.kernel)[1]


def _cap(plan):
    """Bytes the buffer pool may hold during a call: the plan's workspace (which
    counts every buffer kept) plus its outputs (allocated inside the call)."""
    spec = plan.spec
    n_out = (math.prod(spec.input_shape5) + math.prod(spec.weight_shape5)
             if plan.op == "backward" else math.prod(result_shape(spec, plan.op)))
    return plan.workspace + n_out * spec.itemsize
