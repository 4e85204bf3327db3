# cython: language_level=3
"""Direct strategy: explicit loops over kernel taps, zero padding done inside.

All kernels work on 5-D C-contiguous arrays (N, C, D, H, W); 1-D and 2-D problems
arrive with singleton axes. The input arrives *unpadded*: each thread copies the
planes it works on into its own zero-bordered buffer (inside the parallel loop,
so the copy is parallel and its size is bounded by the thread count), and
grad_input is written straight into the unpadded grad_x. The kernel is already
flipped where ``flip=True``.

Parallelism is over independent outputs only (no two threads write the same
element, no reduction across threads), so results are deterministic:

* forward:     one task per (n, group, block of OBLOCK output channels)
  [stride 1] or per (n, c_out) [general]
* grad_input:  stride 1: the forward kernel run on grad_output (padded by
  dilation*(K-1) - padding) with the transposed, flipped kernel, per (n, group,
  block of input channels); general: one task per (n, c_in), a scatter.
* grad_weight: one task per (group, block of output channels, block of input
  channels) [stride 1] or per (c_out, c_in/g) [general], summed over the batch
  in a fixed order.

Names: ``B*`` are the padded buffer's dims, ``O*`` the output's, ``P`` a
buffer plane, ``wlen`` the number of outputs in the buffer's row pitch.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite
from libc.string cimport memcpy, memset

import numpy as np

from _openmp cimport FASTCONV_HAVE_OPENMP, omp_get_thread_num
from _geom cimport Geom, make_geom

HAVE_OPENMP = bool(FASTCONV_HAVE_OPENMP)

cdef extern from "_direct_tile.h" nogil:
    enum: FC_TILE       # outputs per forward register tile
    enum: FC_OBLOCK     # output channels per forward tile / grad_weight block
    enum: FC_GW_TAPS    # taps per grad_weight register block
    enum: FC_VL_F32     # lanes of a grad_weight accumulator, float32
    enum: FC_VL_F64     # ... float64
    void fc_tile_f32(const float* x, const float* w, const Py_ssize_t* off, Py_ssize_t cig,
                     Py_ssize_t plane, Py_ssize_t ksz, float* out)
    void fc_tile_f64(const double* x, const double* w, const Py_ssize_t* off, Py_ssize_t cig,
                     Py_ssize_t plane, Py_ssize_t ksz, double* out)
    void fc_tile4_f32(const float* x, const float* w0, const Py_ssize_t* off, Py_ssize_t cig,
                      Py_ssize_t plane, Py_ssize_t ksz, Py_ssize_t wstride, float* out,
                      Py_ssize_t ostride)
    void fc_tile4_f64(const double* x, const double* w0, const Py_ssize_t* off,
                      Py_ssize_t cig, Py_ssize_t plane, Py_ssize_t ksz, Py_ssize_t wstride,
                      double* out, Py_ssize_t ostride)
    void fc_gw_f32(const float* x, const Py_ssize_t* off, const float* gy, Py_ssize_t gstride,
                   Py_ssize_t n, double* out, Py_ssize_t ostride, int nr, int nk)
    void fc_gw_f64(const double* x, const Py_ssize_t* off, const double* gy,
                   Py_ssize_t gstride, Py_ssize_t n, double* out, Py_ssize_t ostride,
                   int nr, int nk)

# The kernels' constants, for the cost model (fastconv/_strategies/direct.py).
TILE = FC_TILE
OBLOCK = FC_OBLOCK
GW_TAPS = FC_GW_TAPS
LANES = {4: FC_VL_F32, 8: FC_VL_F64}

# ---------------------------------------------------------------------------
# zero-bordered buffers
# ---------------------------------------------------------------------------
cdef struct Pad:
    Py_ssize_t BD, BH, BW      # buffer plane
    Py_ssize_t SD, SH, SW      # source plane
    Py_ssize_t qd, qh, qw      # buffer index - source index (negative: a crop)


cdef inline Pad _pad_of(Py_ssize_t BD, Py_ssize_t BH, Py_ssize_t BW, Py_ssize_t SD,
                        Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t qd, Py_ssize_t qh,
                        Py_ssize_t qw) noexcept nogil:
    cdef Pad p
    p.BD, p.BH, p.BW, p.SD, p.SH, p.SW, p.qd, p.qh, p.qw = BD, BH, BW, SD, SH, SW, qd, qh, qw
    return p


cdef void _fill(floating* dst, const floating* src, Pad* p) noexcept nogil:
    """dst[z, y, x] = src[z - qd, y - qh, x - qw] where that exists, else 0."""
    cdef Py_ssize_t z, r, sz, sr
    cdef Py_ssize_t x0 = max(0, min(p.BW, p.qw)), x1 = max(x0, min(p.BW, p.SW + p.qw))
    cdef floating* d
    for z in range(p.BD):
        sz = z - p.qd
        for r in range(p.BH):
            d = dst + (z * p.BH + r) * p.BW
            sr = r - p.qh
            if sz < 0 or sz >= p.SD or sr < 0 or sr >= p.SH or x1 == x0:
                memset(d, 0, p.BW * sizeof(floating))
                continue
            memset(d, 0, x0 * sizeof(floating))
            memcpy(d + x0, src + (sz * p.SH + sr) * p.SW + x0 - p.qw, (x1 - x0) * sizeof(floating))
            memset(d + x1, 0, (p.BW - x1) * sizeof(floating))


# ---------------------------------------------------------------------------
# stride 1: the "wide" layout
#
# With unit stride, output (od, oh, ow) and tap k read the padded buffer at flat
# index i + off[k], i = (od*BH + oh)*BW + ow (the output's position in the
# buffer's row pitch), off[k] = (kd*dd*BH + kh*dh)*BW + kw*dw. So the N-d
# correlation becomes one 1-D loop over i < wlen = ((OD-1)*BH + OH-1)*BW + OW;
# positions with ow >= OW are computed and dropped. With B = O + d*(K-1) per
# axis, wlen + off[last] = P: the buffer plus a slack of one tile (zeros) lets
# the last tile run full.
# ---------------------------------------------------------------------------
cdef struct Wide:
    Py_ssize_t G, CIG, COG, CI, CO     # groups, channels per group, totals (source, output)
    Py_ssize_t ksz, P, wlen, wpad      # taps, buffer plane, wide outputs, wlen rounded up
    Py_ssize_t OD, OH, OW
    Pad pad                            # source plane -> buffer plane


cdef void _wide_task(const floating* src, const floating* w, floating* y, Wide* s,
                     const Py_ssize_t* off, Py_ssize_t task, floating* xbuf, floating* wide,
                     Py_ssize_t* key) noexcept nogil:
    """y[n, block of output channels] for task (n, group, block); ``key``: what xbuf holds."""
    cdef Py_ssize_t nob = (s.COG + FC_OBLOCK - 1) // FC_OBLOCK
    cdef Py_ssize_t n = task // (s.G * nob), grp = (task // nob) % s.G
    cdef Py_ssize_t o0 = grp * s.COG + (task % nob) * FC_OBLOCK
    cdef Py_ssize_t nout = min(FC_OBLOCK, (grp + 1) * s.COG - o0)
    cdef Py_ssize_t wstride = s.CIG * s.ksz, splane = s.pad.SD * s.pad.SH * s.pad.SW
    cdef Py_ssize_t b, i0, r, c, od, oh
    if key[0] != n * s.G + grp:
        # tasks of one thread are consecutive (static schedule): pad each (n, group) once
        for c in range(s.CIG):
            _fill(xbuf + c * s.P, src + (n * s.CI + grp * s.CIG + c) * splane, &s.pad)
        memset(xbuf + s.CIG * s.P, 0, FC_TILE * sizeof(floating))
        key[0] = n * s.G + grp
    for b in range(s.wpad // FC_TILE):
        i0 = b * FC_TILE
        if nout == FC_OBLOCK:
            if floating is float:
                fc_tile4_f32(xbuf + i0, w + o0 * wstride, off, s.CIG, s.P, s.ksz, wstride,
                             wide + i0, s.wpad)
            else:
                fc_tile4_f64(xbuf + i0, w + o0 * wstride, off, s.CIG, s.P, s.ksz, wstride,
                             wide + i0, s.wpad)
        else:
            for r in range(nout):
                if floating is float:
                    fc_tile_f32(xbuf + i0, w + (o0 + r) * wstride, off, s.CIG, s.P, s.ksz,
                                wide + r * s.wpad + i0)
                else:
                    fc_tile_f64(xbuf + i0, w + (o0 + r) * wstride, off, s.CIG, s.P, s.ksz,
                                wide + r * s.wpad + i0)
    for r in range(nout):
        for od in range(s.OD):
            for oh in range(s.OH):
                memcpy(y + (((n * s.CO + o0 + r) * s.OD + od) * s.OH + oh) * s.OW,
                       wide + r * s.wpad + (od * s.pad.BH + oh) * s.pad.BW,
                       s.OW * sizeof(floating))


cdef void _gw_wide_task(const floating* x, const floating* gy, floating* gw, Geom* g,
                        Pad* pad, const Py_ssize_t* off, Py_ssize_t task, Py_ssize_t ncb,
                        Py_ssize_t wpad, floating* gyw, floating* xbuf,
                        double* acc) noexcept nogil:
    """grad_w[block of output channels, block of input channels, all taps].

    For each image: grad_output rows of the block in the wide layout (zeros where
    ow >= OW), then per input channel its padded plane, then register blocks of
    nout channels x FC_GW_TAPS taps over the whole plane (fc_gw_*), whose lanes
    are added into ``acc`` (double, per lane) once per image. Lanes are summed
    once per weight at the end.
    """
    cdef Py_ssize_t nob = (g.COG + FC_OBLOCK - 1) // FC_OBLOCK
    cdef Py_ssize_t cb = (g.CIG + ncb - 1) // ncb
    cdef Py_ssize_t grp = task // (nob * ncb)
    cdef Py_ssize_t o0 = grp * g.COG + ((task // ncb) % nob) * FC_OBLOCK
    cdef Py_ssize_t nout = min(FC_OBLOCK, (grp + 1) * g.COG - o0)
    cdef Py_ssize_t c0 = (task % ncb) * cb, c1 = min(g.CIG, (task % ncb + 1) * cb)
    cdef Py_ssize_t P = pad.BD * pad.BH * pad.BW, ksz = g.K, xplane = g.D * g.H * g.W
    cdef Py_ssize_t vl = FC_VL_F32 if floating is float else FC_VL_F64
    cdef Py_ssize_t n, r, c, k, kb, od, oh, l, idx
    cdef double sm
    if c1 <= c0:
        return
    memset(acc, 0, (c1 - c0) * FC_OBLOCK * ksz * vl * sizeof(double))
    for n in range(g.N):
        memset(gyw, 0, nout * wpad * sizeof(floating))
        for r in range(nout):
            for od in range(g.OD):
                for oh in range(g.OH):
                    memcpy(gyw + r * wpad + (od * pad.BH + oh) * pad.BW,
                           gy + (((n * g.CO + o0 + r) * g.OD + od) * g.OH + oh) * g.OW,
                           g.OW * sizeof(floating))
        for c in range(c0, c1):
            _fill(xbuf, x + (n * g.C + grp * g.CIG + c) * xplane, pad)
            memset(xbuf + P, 0, vl * sizeof(floating))
            kb = 0
            while kb < ksz:
                if floating is float:
                    fc_gw_f32(xbuf, off + kb, gyw, wpad, wpad,
                              acc + ((c - c0) * FC_OBLOCK * ksz + kb) * vl, ksz * vl,
                              nout, min(FC_GW_TAPS, ksz - kb))
                else:
                    fc_gw_f64(xbuf, off + kb, gyw, wpad, wpad,
                              acc + ((c - c0) * FC_OBLOCK * ksz + kb) * vl, ksz * vl,
                              nout, min(FC_GW_TAPS, ksz - kb))
                kb += FC_GW_TAPS
    for c in range(c0, c1):
        for r in range(nout):
            for k in range(ksz):
                idx = (((c - c0) * FC_OBLOCK + r) * ksz + k) * vl
                sm = 0.0
                for l in range(vl):
                    sm += acc[idx + l]
                if not isfinite(sm):
                    # The wide layout also multiplies its zero columns (ow >= OW) by
                    # the input there: 0 * Inf = NaN would reach taps that never touch
                    # the Inf. Redo this weight over the valid outputs only.
                    sm = _gw_weight(x, gy, g, o0 + r, c, k)
                gw[((o0 + r) * g.CIG + c) * ksz + k] = <floating>sm


# ---------------------------------------------------------------------------
# any stride: row loops on the unpadded arrays, no scratch
#
# Tap k meets output o at input index o*s + k*d - p along each axis; the outputs
# for which that index lies inside the input form one range [lo, hi) per axis
# (_valid), so the loops visit only real input values. Padding zeros meet a
# value only where it matters: an Inf or NaN weight (forward) or grad_output
# (grad_weight) times a padding zero is NaN, as with a zero-padded copy; the
# *_exact loops handle those taps. grad_input is a scatter of the real
# grad_output values, so 0 * Inf never arises there (as in PyTorch).
# ---------------------------------------------------------------------------
cdef inline void _valid(Py_ssize_t n_in, Py_ssize_t n_out, Py_ssize_t s, Py_ssize_t shift,
                        Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi): the outputs o < n_out with 0 <= o*s + shift < n_in."""
    lo[0] = (-shift + s - 1) // s if shift < 0 else 0
    hi[0] = min(n_out, (n_in - 1 - shift) // s + 1) if n_in - 1 - shift >= 0 else 0
    if hi[0] < lo[0]:
        hi[0] = lo[0]


cdef struct Span:       # the valid outputs of one tap and where its input starts
    Py_ssize_t d0, d1, h0, h1, w0, w1, zd, zh, zw


cdef inline Span _span(Geom* g, Py_ssize_t kd, Py_ssize_t kh, Py_ssize_t kw) noexcept nogil:
    cdef Span t
    t.zd, t.zh, t.zw = kd * g.dd - g.pd, kh * g.dh - g.ph, kw * g.dw - g.pw
    _valid(g.D, g.OD, g.sd, t.zd, &t.d0, &t.d1)
    _valid(g.H, g.OH, g.sh, t.zh, &t.h0, &t.h1)
    _valid(g.W, g.OW, g.sw, t.zw, &t.w0, &t.w1)
    return t


cdef inline floating _at(const floating* xc, Geom* g, Py_ssize_t z, Py_ssize_t r,
                         Py_ssize_t c) noexcept nogil:
    """x[z, r, c] of one plane, 0 in the padding."""
    if z < 0 or z >= g.D or r < 0 or r >= g.H or c < 0 or c >= g.W:
        return 0
    return xc[(z * g.H + r) * g.W + c]


cdef void _fwd_task(const floating* x, const floating* w, floating* y, Geom* g,
                    Py_ssize_t task) noexcept nogil:
    cdef Py_ssize_t n = task // g.CO, o = task % g.CO, grp = o // g.COG
    cdef Py_ssize_t c, kd, kh, kw, od, oh, ow, sw = g.sw
    cdef floating* yo = y + task * g.L
    cdef const floating* xc
    cdef const floating* xrow
    cdef floating* yrow
    cdef floating wv
    cdef Span t
    memset(yo, 0, g.L * sizeof(floating))
    for c in range(g.CIG):
        xc = x + (n * g.C + grp * g.CIG + c) * g.D * g.H * g.W
        for kd in range(g.KD):
            for kh in range(g.KH):
                for kw in range(g.KW):
                    wv = w[(o * g.CIG + c) * g.K + (kd * g.KH + kh) * g.KW + kw]
                    t = _span(g, kd, kh, kw)
                    if not isfinite(wv):
                        for od in range(g.OD):
                            for oh in range(g.OH):
                                for ow in range(g.OW):
                                    yo[(od * g.OH + oh) * g.OW + ow] += wv * _at(
                                        xc, g, od * g.sd + t.zd, oh * g.sh + t.zh,
                                        ow * sw + t.zw)
                        continue
                    for od in range(t.d0, t.d1):
                        for oh in range(t.h0, t.h1):
                            xrow = xc + ((od * g.sd + t.zd) * g.H
                                         + oh * g.sh + t.zh) * g.W + t.zw
                            yrow = yo + (od * g.OH + oh) * g.OW
                            for ow in range(t.w0, t.w1):
                                yrow[ow] += wv * xrow[ow * sw]


cdef void _gin_task(const floating* gy, const floating* w, floating* gx, Geom* g,
                    Py_ssize_t task) noexcept nogil:
    cdef Py_ssize_t n = task // g.C, ci = task % g.C
    cdef Py_ssize_t grp = ci // g.CIG, c = ci % g.CIG
    cdef Py_ssize_t o, kd, kh, kw, od, oh, ow, sw = g.sw
    cdef floating* gxc = gx + task * g.D * g.H * g.W
    cdef const floating* gyo
    cdef const floating* gyrow
    cdef floating* gxrow
    cdef floating wv
    cdef Span t
    memset(gxc, 0, g.D * g.H * g.W * sizeof(floating))
    for o in range(grp * g.COG, (grp + 1) * g.COG):
        gyo = gy + (n * g.CO + o) * g.L
        for kd in range(g.KD):
            for kh in range(g.KH):
                for kw in range(g.KW):
                    wv = w[(o * g.CIG + c) * g.K + (kd * g.KH + kh) * g.KW + kw]
                    t = _span(g, kd, kh, kw)
                    for od in range(t.d0, t.d1):
                        for oh in range(t.h0, t.h1):
                            gxrow = gxc + ((od * g.sd + t.zd) * g.H
                                           + oh * g.sh + t.zh) * g.W + t.zw
                            gyrow = gyo + (od * g.OH + oh) * g.OW
                            for ow in range(t.w0, t.w1):
                                gxrow[ow * sw] += wv * gyrow[ow]


cdef double _gw_rows(const floating* xc, const floating* gyo, Geom* g, Py_ssize_t k,
                     bint exact) noexcept nogil:
    """One image's grad_w sum for tap k, rows in the working precision.

    ``exact``: also multiply the padding zeros (for a non-finite grad_output)."""
    cdef Py_ssize_t kd = k // (g.KH * g.KW), kh = (k // g.KW) % g.KH, kw = k % g.KW
    cdef Py_ssize_t od, oh, ow, sw = g.sw
    cdef const floating* xrow
    cdef const floating* gyrow
    cdef floating row
    cdef double acc = 0.0
    cdef Span t = _span(g, kd, kh, kw)
    if exact:
        for od in range(g.OD):
            for oh in range(g.OH):
                row = 0
                for ow in range(g.OW):
                    row = row + gyo[(od * g.OH + oh) * g.OW + ow] * _at(
                        xc, g, od * g.sd + t.zd, oh * g.sh + t.zh, ow * sw + t.zw)
                acc += row
        return acc
    for od in range(t.d0, t.d1):
        for oh in range(t.h0, t.h1):
            xrow = xc + ((od * g.sd + t.zd) * g.H + oh * g.sh + t.zh) * g.W + t.zw
            gyrow = gyo + (od * g.OH + oh) * g.OW
            row = 0
            for ow in range(t.w0, t.w1):
                row = row + xrow[ow * sw] * gyrow[ow]
            acc += row
    return acc


cdef bint _all_finite(const floating* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef floating s[8]
    for j in range(8):
        s[j] = 0
    for i in range(0, n - n % 8, 8):
        for j in range(8):
            s[j] = s[j] + a[i + j] * 0   # stays 0 unless some a[i] is Inf or NaN
    for i in range(n - n % 8, n):
        s[0] = s[0] + a[i] * 0
    for j in range(1, 8):
        s[0] = s[0] + s[j]
    return s[0] == 0


cdef double _gw_weight(const floating* x, const floating* gy, Geom* g, Py_ssize_t o,
                       Py_ssize_t c, Py_ssize_t k) noexcept nogil:
    """grad_w[o, c, tap k] over the batch, valid outputs only."""
    cdef Py_ssize_t n, grp = o // g.COG
    cdef const floating* gyo
    cdef double acc = 0.0
    for n in range(g.N):
        gyo = gy + (n * g.CO + o) * g.L
        acc += _gw_rows(x + (n * g.C + grp * g.CIG + c) * g.D * g.H * g.W, gyo, g, k,
                        not _all_finite(gyo, g.L))
    return acc


cdef void _gw_task(const floating* x, const floating* gy, floating* gw, Geom* g,
                   Py_ssize_t task, double* acc) noexcept nogil:
    cdef Py_ssize_t o = task // g.CIG, c = task % g.CIG, grp = o // g.COG
    cdef Py_ssize_t n, k
    cdef const floating* gyo
    cdef const floating* xc
    cdef bint exact
    memset(acc, 0, g.K * sizeof(double))
    for n in range(g.N):
        gyo = gy + (n * g.CO + o) * g.L
        xc = x + (n * g.C + grp * g.CIG + c) * g.D * g.H * g.W
        exact = not _all_finite(gyo, g.L)
        for k in range(g.K):
            acc[k] += _gw_rows(xc, gyo, g, k, exact)
    for k in range(g.K):
        gw[task * g.K + k] = <floating>acc[k]


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------
def _check(str op, tuple xs, tuple ws, tuple ys, tuple stride, tuple dilation, tuple padding,
           int groups):
    """ValueError unless input ``xs`` (unpadded), weight ``ws`` and output ``ys`` fit."""
    if len(xs) != 5 or len(ws) != 5 or len(ys) != 5 or len(stride) != 3 \
            or len(dilation) != 3 or len(padding) != 3:
        raise ValueError(f"{op}: expected 5-D shapes and 3 strides, dilations, padding pairs")
    if groups < 1 or ws[0] % groups or xs[1] != ws[1] * groups:
        raise ValueError(f"{op}: weight shape {ws} does not fit input shape {xs} with "
                         f"groups={groups}")
    if ys[0] != xs[0] or ys[1] != ws[0]:
        raise ValueError(f"{op}: output shape {ys} does not fit input {xs} and weight {ws}")
    for i in range(3):
        s, d, (pb, pa) = stride[i], dilation[i], padding[i]
        if s < 1 or d < 1 or pb < 0 or pa < 0:
            raise ValueError(f"{op}: stride {stride}, dilation {dilation} must be >= 1 and "
                             f"padding {padding} >= 0")
        o = (xs[2 + i] + pb + pa - d * (ws[2 + i] - 1) - 1) // s + 1
        if o < 1 or ys[2 + i] != o:
            raise ValueError(f"{op}: output shape {ys} does not match input {xs}, weight "
                             f"{ws}, stride {stride}, padding {padding}, dilation {dilation}")
    if min(xs + ws + ys) < 1:
        raise ValueError(f"{op}: empty shapes {xs}, {ws}, {ys}")


def _rup(Py_ssize_t a, Py_ssize_t m):
    return (a + m - 1) // m * m


def plan(str op, tuple xs, tuple ws, tuple ys, tuple stride, tuple dilation, tuple padding,
         int groups, int n_threads, int itemsize, bint general=False, bint finite=True):
    """How a kernel call runs and every scratch buffer it allocates.

    Parameters are the call's: ``xs`` the unpadded input shape, ``ws`` the weight's,
    ``ys`` the output's (all 5-D); ``general`` forces the row loops; ``finite``
    (grad_input) says whether the weights are all finite.

    Returns
    -------
    dict
        ``path`` ("wide" or "rows"), ``tasks``, ``threads`` (that get work),
        ``B`` (buffer plane dims), ``per_thread`` and ``once``: name -> (elements,
        kind) with kind "x" (the working dtype), "f8" or "intp".
    """
    cdef Py_ssize_t N = xs[0], C = xs[1], CO = ws[0], CIG = ws[1], G = groups
    cdef Py_ssize_t COG = CO // G, ksz = ws[2] * ws[3] * ws[4]
    cdef Py_ssize_t cig, cog, P, wlen, wpad, nob, base, ncb = 1, cb, vl
    span = [d * (k - 1) for k, d in zip(ws[2:], dilation)]
    unit = (all(s == 1 for s in stride) and not general and (finite or op != "grad_input"))
    per, once = {}, {}
    info = {"path": "wide" if unit else "rows"}
    if unit:
        once["off"] = (ksz, "intp")
        outs = tuple(xs[2:]) if op == "grad_input" else tuple(ys[2:])
        B = [o + e for o, e in zip(outs, span)]
        P = B[0] * B[1] * B[2]
        wlen = ((outs[0] - 1) * B[1] + outs[1] - 1) * B[2] + outs[2]
        if op == "grad_weight":
            vl = LANES[itemsize]
            nob = (COG + FC_OBLOCK - 1) // FC_OBLOCK
            base = G * nob
            # enough tasks to balance the threads: split the input channels too
            if base < 2 * n_threads:
                ncb = min(CIG, (2 * n_threads + base - 1) // base)
            cb = (CIG + ncb - 1) // ncb
            ncb = (CIG + cb - 1) // cb
            tasks = base * ncb
            wpad = _rup(wlen, vl)
            per["gyw"] = (min(FC_OBLOCK, COG) * wpad, "x")
            per["xbuf"] = (P + vl, "x")
            per["acc"] = (cb * FC_OBLOCK * ksz * vl, "f8")
            info["ncb"] = ncb
        else:
            cig, cog = (COG, CIG) if op == "grad_input" else (CIG, COG)
            tasks = N * G * ((cog + FC_OBLOCK - 1) // FC_OBLOCK)
            wpad = _rup(wlen, FC_TILE)
            per["xbuf"] = (cig * P + FC_TILE, "x")
            per["wide"] = (FC_OBLOCK * wpad, "x")
            per["key"] = (1, "intp")
            if op == "grad_input":
                once["wt"] = (CO * CIG * ksz, "x")  # the transposed, flipped kernel
        info.update(wlen=wlen, wpad=wpad)
    else:
        B = ys[2:]
        tasks = {"forward": N * CO, "grad_input": N * C, "grad_weight": CO * CIG}[op]
        if op == "grad_weight":
            per["acc"] = (ksz, "f8")
    info.update(tasks=tasks, threads=max(1, min(n_threads, tasks)), B=tuple(B),
                per_thread=per, once=once)
    return info


def scratch_bytes(info, int itemsize):
    """Bytes of every buffer :func:`plan`'s ``info`` allocates."""
    size = {"x": itemsize, "f8": 8, "intp": np.dtype(np.intp).itemsize}
    return (info["threads"] * sum(n * size[k] for n, k in info["per_thread"].values())
            + sum(n * size[k] for n, k in info["once"].values()))


def _buffers(info, dtype):
    """Allocate the per-thread buffers of ``info`` (one row per thread)."""
    kinds = {"x": dtype, "f8": np.float64, "intp": np.intp}
    return {name: (np.full((info["threads"], n), -1, np.intp) if name == "key"
                   else np.empty((info["threads"], n), kinds[k]))
            for name, (n, k) in info["per_thread"].items()}


def _offsets(tuple k3, tuple d3, tuple b3):
    """Flat offset of each tap in a buffer plane of dims ``b3``."""
    cdef Py_ssize_t[::1] off = np.empty(k3[0] * k3[1] * k3[2], dtype=np.intp)
    cdef Py_ssize_t kd, kh, kw, t = 0
    for kd in range(k3[0]):
        for kh in range(k3[1]):
            for kw in range(k3[2]):
                off[t] = (kd * d3[0] * b3[1] + kh * d3[1]) * b3[2] + kw * d3[2]
                t += 1
    return np.asarray(off)


cdef Geom _geom(tuple xs, tuple ws, tuple ys, tuple stride, tuple dilation, tuple padding,
                int groups):
    cdef Py_ssize_t a[5]
    cdef Py_ssize_t b[5]
    cdef Py_ssize_t c[5]
    cdef int i
    for i in range(5):
        a[i], b[i], c[i] = xs[i], ws[i], ys[i]
    cdef Geom g = make_geom(a, b, c, stride, dilation, groups)
    g.pd, g.ph, g.pw = padding[0][0], padding[1][0], padding[2][0]
    return g


cdef Wide _wide(info, Py_ssize_t G, Py_ssize_t CI, Py_ssize_t CO, Py_ssize_t ksz,
                tuple outs, tuple src3, tuple q3):
    cdef Wide s
    B = info["B"]
    s.G, s.CI, s.CO, s.CIG, s.COG = G, CI, CO, CI // G, CO // G
    s.ksz, s.P, s.wlen, s.wpad = ksz, B[0] * B[1] * B[2], info["wlen"], info["wpad"]
    s.OD, s.OH, s.OW = outs
    s.pad = _pad_of(B[0], B[1], B[2], src3[0], src3[1], src3[2], q3[0], q3[1], q3[2])
    return s


cdef void _run_wide(const floating* src, const floating* w, floating* y, Wide* s, info,
                    tuple k3, tuple d3) except *:
    cdef Py_ssize_t[::1] off = _offsets(k3, d3, info["B"])
    bufs = _buffers(info, np.float32 if floating is float else np.float64)
    cdef floating[:, ::1] xbuf = bufs["xbuf"]
    cdef floating[:, ::1] wide = bufs["wide"]
    cdef Py_ssize_t[:, ::1] key = bufs["key"]
    cdef Py_ssize_t t, tasks = info["tasks"]
    cdef int tid, nthr = info["threads"]
    with nogil:
        # static: each thread's tasks are consecutive, so it pads each (n, group) once
        for t in prange(tasks, num_threads=nthr, schedule="static"):
            tid = omp_get_thread_num()
            _wide_task(src, w, y, s, &off[0], t, &xbuf[tid, 0], &wide[tid, 0], &key[tid, 0])


def _shape(a):
    return tuple(a.shape[:5])


def forward(const floating[:, :, :, :, ::1] x,  # IN  (N, C_in, D, H, W), unpadded
            const floating[:, :, :, :, ::1] w,  # IN  (C_out, C_in/g, KD, KH, KW)
            floating[:, :, :, :, ::1] y,        # OUT (N, C_out, OD, OH, OW)
            tuple stride, tuple dilation, tuple padding, int groups, int n_threads,
            bint general=False):
    """y = the zero-padded, strided, dilated cross-correlation of x with w.

    ``padding``: ((before, after),) * 3. ``general``: use the row loops even at
    unit stride (for tests).
    """
    xs, ws, ys = _shape(x), _shape(w), _shape(y)
    _check("forward", xs, ws, ys, stride, dilation, padding, groups)
    cdef Geom g = _geom(xs, ws, ys, stride, dilation, padding, groups)
    info = plan("forward", xs, ws, ys, stride, dilation, padding, groups, n_threads,
                x.itemsize, general)
    cdef Wide s
    cdef Py_ssize_t t, tasks = info["tasks"]
    cdef int nthr = info["threads"]
    if info["path"] == "wide":
        s = _wide(info, groups, g.C, g.CO, g.K, ys[2:], xs[2:], (g.pd, g.ph, g.pw))
        _run_wide(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &y[0, 0, 0, 0, 0], &s, info,
                  ws[2:], dilation)
        return
    with nogil:
        for t in prange(tasks, num_threads=nthr, schedule="dynamic"):
            _fwd_task(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &y[0, 0, 0, 0, 0], &g, t)


def grad_input(const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
               const floating[:, :, :, :, ::1] w,   # IN  (C_out, C_in/g, KD, KH, KW)
               floating[:, :, :, :, ::1] gx,        # OUT (N, C_in, D, H, W), unpadded
               tuple stride, tuple dilation, tuple padding, int groups, int n_threads,
               bint general=False):
    """grad_x, the adjoint of :func:`forward` in x, written unpadded.

    With non-finite weights the scatter (row) kernel runs, so that the zeros of a
    padded grad_output never meet an Inf weight (0 * Inf = NaN where PyTorch and
    the other strategies give a finite value).
    """
    xs, ws, ys = _shape(gx), _shape(w), _shape(gy)
    _check("grad_input", xs, ws, ys, stride, dilation, padding, groups)
    cdef Geom g = _geom(xs, ws, ys, stride, dilation, padding, groups)
    cdef bint finite = _all_finite(&w[0, 0, 0, 0, 0], g.CO * g.CIG * g.K)
    info = plan("grad_input", xs, ws, ys, stride, dilation, padding, groups, n_threads,
                gy.itemsize, general, finite)
    cdef Wide s
    cdef Py_ssize_t t, tasks = info["tasks"]
    cdef int nthr = info["threads"]
    cdef floating[:, :, :, :, ::1] wt
    if info["path"] == "wide":
        # grad_x is the forward correlation of grad_output, zero-padded by
        # d*(K-1) - padding_before (negative: cropped), with the kernel flipped and
        # its channel axes swapped within each group.
        wn = np.asarray(w)[:, :, ::-1, ::-1, ::-1]
        wt = np.ascontiguousarray(
            wn.reshape((groups, g.COG, g.CIG) + ws[2:]).swapaxes(1, 2)
        ).reshape((g.C, g.COG) + ws[2:])
        q3 = tuple(d * (k - 1) - p[0] for k, d, p in zip(ws[2:], dilation, padding))
        s = _wide(info, groups, g.CO, g.C, g.K, xs[2:], ys[2:], q3)
        _run_wide(&gy[0, 0, 0, 0, 0], &wt[0, 0, 0, 0, 0], &gx[0, 0, 0, 0, 0], &s, info,
                  ws[2:], dilation)
        return
    with nogil:
        for t in prange(tasks, num_threads=nthr, schedule="dynamic"):
            _gin_task(&gy[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &gx[0, 0, 0, 0, 0], &g, t)


def grad_weight(const floating[:, :, :, :, ::1] x,   # IN  (N, C_in, D, H, W), unpadded
                const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
                floating[:, :, :, :, ::1] gw,        # OUT (C_out, C_in/g, KD, KH, KW)
                tuple stride, tuple dilation, tuple padding, int groups, int n_threads,
                bint general=False):
    """grad_w, the adjoint of :func:`forward` in w, summed over the batch.

    Deterministic for a fixed thread count: the partition into tasks and each
    task's summation order depend on the shapes and ``n_threads`` only.
    """
    xs, ws, ys = _shape(x), _shape(gw), _shape(gy)
    _check("grad_weight", xs, ws, ys, stride, dilation, padding, groups)
    cdef Geom g = _geom(xs, ws, ys, stride, dilation, padding, groups)
    info = plan("grad_weight", xs, ws, ys, stride, dilation, padding, groups, n_threads,
                x.itemsize, general)
    B = info["B"]
    cdef Pad pad = _pad_of(B[0], B[1], B[2], g.D, g.H, g.W, g.pd, g.ph, g.pw)
    cdef Py_ssize_t t, tasks = info["tasks"], ncb, wpad
    cdef int tid, nthr = info["threads"]
    bufs = _buffers(info, np.asarray(gw).dtype)
    cdef double[:, ::1] acc = bufs["acc"]
    cdef floating[:, ::1] xbuf
    cdef floating[:, ::1] gyw
    cdef Py_ssize_t[::1] off
    if info["path"] == "wide":
        off = _offsets(ws[2:], dilation, B)
        gyw, xbuf = bufs["gyw"], bufs["xbuf"]
        ncb, wpad = info["ncb"], info["wpad"]
        with nogil:
            for t in prange(tasks, num_threads=nthr, schedule="dynamic"):
                tid = omp_get_thread_num()
                _gw_wide_task(&x[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], &gw[0, 0, 0, 0, 0], &g,
                              &pad, &off[0], t, ncb, wpad, &gyw[tid, 0], &xbuf[tid, 0],
                              &acc[tid, 0])
        return
    with nogil:
        for t in prange(tasks, num_threads=nthr, schedule="dynamic"):
            tid = omp_get_thread_num()
            _gw_task(&x[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], &gw[0, 0, 0, 0, 0], &g, t,
                     &acc[tid, 0])
