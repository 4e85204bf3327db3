# cython: language_level=3
"""Direct strategy: explicit loops over kernel taps, zero padding done inside.

All kernels work on 5-D C-contiguous arrays (N, C, D, H, W); 1-D and 2-D problems
arrive with singleton axes. The input arrives *unpadded*: each thread copies the
planes it works on into its own zero-bordered buffer (inside the parallel loop,
so the copy is parallel and its size is bounded by the thread count), and
grad_input is written straight into the unpadded grad_x. The kernel is already
flipped where ``flip=True``.

Three paths (see :func:`fastconv._strategies.direct_plan.plan`): "wide" register tiles at unit stride, and at
stride s on the polyphase components of the input (forward, grad_weight);
"poly", grad_input at stride s by polyphase components of grad_x; "rows",
scalar row loops on the unpadded arrays with no scratch (``general=True``, a
grad_input with non-finite weights, or a call whose buffers exceed the budget).

Parallelism is over independent outputs only (no two threads write the same
element, no reduction across threads), so results are deterministic for a
fixed thread count:

* forward:     one task per (n, group, block of OBLOCK output channels)
  [wide] or per (n, c_out) [rows]
* grad_input:  stride 1: the forward kernel run on grad_output (padded by
  dilation*(K-1) - padding) with the transposed, flipped kernel, per (n, group,
  block of input channels); poly: the same tasks, one stride-1 correlation per
  component; rows: one task per (n, c_in), a scatter.
* grad_weight: one task per (group, block of up to GW_OCH output channels, block of
  input channels) [wide] or per (c_out, c_in/g) [rows], summed over the batch
  in a fixed order.

Names: ``B*`` are the padded buffer's dims, ``O*`` the output's, ``P`` a
buffer plane, ``wlen`` the number of outputs in the buffer's row pitch.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport isfinite
from libc.string cimport memcpy, memset
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_Free, PyMem_Malloc

import numpy as np

from fastconv._spec import conv_output_size

from _openmp cimport FASTCONV_HAVE_OPENMP, omp_get_thread_num
from _geom cimport Geom, make_geom

HAVE_OPENMP = bool(FASTCONV_HAVE_OPENMP)

cdef extern from "_kernels.h" nogil:
    enum: FC_TILE       # outputs per forward register tile
    enum: FC_OBLOCK     # output channels per forward tile
    enum: FC_GW_NR      # grad_weight register block: output channels (the level's)
    enum: FC_GW_NK      # ... taps, and taps with fewer than FC_GW_NR channels
    enum: FC_GW_NK_FEW
    enum: FC_GW_OCH     # output channels per grad_weight task
    enum: FC_GW_ACC     # double lanes per weight in grad_weight's accumulators
    enum: FC_VL_F32     # lanes of a planned vector (64 bytes), float32
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
    void fc_pairs4_f32(const float* x, const float* w0, const Py_ssize_t* off, Py_ssize_t cig,
                       Py_ssize_t plane, Py_ssize_t ksz, Py_ssize_t wstride,
                       const Py_ssize_t* vb, Py_ssize_t ng, float* out, Py_ssize_t ostride)
    void fc_pairs4_f64(const double* x, const double* w0, const Py_ssize_t* off,
                       Py_ssize_t cig, Py_ssize_t plane, Py_ssize_t ksz, Py_ssize_t wstride,
                       const Py_ssize_t* vb, Py_ssize_t ng, double* out, Py_ssize_t ostride)
    void fc_quad1_f32(const float* x, const float* w, const Py_ssize_t* off, Py_ssize_t cig,
                      Py_ssize_t plane, Py_ssize_t ksz, const Py_ssize_t* vb, float* out)
    void fc_quad1_f64(const double* x, const double* w, const Py_ssize_t* off,
                      Py_ssize_t cig, Py_ssize_t plane, Py_ssize_t ksz, const Py_ssize_t* vb,
                      double* out)
    void fc_gw_f32(const float* x, const Py_ssize_t* off, const float* gy, Py_ssize_t gstride,
                   Py_ssize_t n, double* out, Py_ssize_t ostride, int nr, int nk)
    void fc_gw_f64(const double* x, const Py_ssize_t* off, const double* gy,
                   Py_ssize_t gstride, Py_ssize_t n, double* out, Py_ssize_t ostride,
                   int nr, int nk)
    enum: FC_ROWS_KMAX  # kernel rows the row blocks are compiled for (2..FC_ROWS_KMAX)
    void fc_rows4_f32(const float* x, const float* w, const Py_ssize_t* offr, Py_ssize_t cig,
                      Py_ssize_t plane, Py_ssize_t ksz, Py_ssize_t KD, Py_ssize_t KH,
                      Py_ssize_t KW, Py_ssize_t pitch, float* out, Py_ssize_t orow, int nrow,
                      int nv)
    void fc_rows4_f64(const double* x, const double* w, const Py_ssize_t* offr,
                      Py_ssize_t cig, Py_ssize_t plane, Py_ssize_t ksz, Py_ssize_t KD,
                      Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t pitch, double* out,
                      Py_ssize_t orow, int nrow, int nv)
    ctypedef struct fc_kern:
        const char* name
    const fc_kern* fc_k
    const fc_kern* fc_table(int level)
    int fc_cpu_level()
    int fc_select(int level)
    int fc_absmax_bits(const int* u, Py_ssize_t n)


# The kernels' constants, for the cost model (fastconv/_strategies/direct.py).
TILE = FC_TILE
OBLOCK = FC_OBLOCK
GW_OCH = FC_GW_OCH
GW_ACC = FC_GW_ACC
ROWS_KMAX = FC_ROWS_KMAX
LANES = {4: FC_VL_F32, 8: FC_VL_F64}
LEVELS = ("baseline", "avx2", "avx512")


def compiled_levels():
    """Names of the instruction-set levels this build holds kernels for."""
    return tuple(name for i, name in enumerate(LEVELS) if fc_table(i) != NULL)


def cpu_level():
    """Name of the highest level this CPU supports (compiled or not)."""
    return LEVELS[fc_cpu_level()]


def select_level(int level_id):
    """Run this module's register kernels at level ``LEVELS[level_id]``
    (fastconv._cpu chooses); ValueError if it was not compiled or the CPU cannot
    run it."""
    if fc_select(level_id) != 0:
        raise ValueError(f"instruction-set level {level_id} is not available here "
                         f"(compiled: {compiled_levels()}, CPU: {cpu_level()})")


def level():
    """Name of the level whose kernels run now."""
    return fc_k.name.decode()


def gw_block():
    """The level's grad_weight register block: (channels, taps, taps with fewer channels)."""
    return FC_GW_NR, FC_GW_NK, FC_GW_NK_FEW

# ---------------------------------------------------------------------------
# zero-bordered buffers
# ---------------------------------------------------------------------------
cdef struct Pad:
    Py_ssize_t BD, BH, BW      # buffer plane
    Py_ssize_t SD, SH, SW      # source plane
    Py_ssize_t qd, qh, qw      # source index = buffer index * step - q
    Py_ssize_t sd, sh, sw      # step (1, or the stride for a polyphase component)


cdef inline Pad _pad_of(Py_ssize_t BD, Py_ssize_t BH, Py_ssize_t BW, Py_ssize_t SD,
                        Py_ssize_t SH, Py_ssize_t SW, Py_ssize_t qd, Py_ssize_t qh,
                        Py_ssize_t qw) noexcept nogil:
    cdef Pad p
    p.BD, p.BH, p.BW, p.SD, p.SH, p.SW, p.qd, p.qh, p.qw = BD, BH, BW, SD, SH, SW, qd, qh, qw
    p.sd = p.sh = p.sw = 1
    return p


cdef void _fill(floating* dst, const floating* src, Pad* p) noexcept nogil:
    """dst[z, r, c] = src[z*sd - qd, r*sh - qh, c*sw - qw] where that exists, else 0."""
    cdef Py_ssize_t z, r, c, sz, sr
    cdef Py_ssize_t x0 = min(p.BW, (p.qw + p.sw - 1) // p.sw if p.qw > 0 else 0)
    cdef Py_ssize_t x1 = (p.SW - 1 + p.qw) // p.sw + 1 if p.SW - 1 + p.qw >= 0 else 0
    cdef floating* d
    cdef const floating* srow
    x1 = max(x0, min(p.BW, x1))
    for z in range(p.BD):
        sz = z * p.sd - p.qd
        for r in range(p.BH):
            d = dst + (z * p.BH + r) * p.BW
            sr = r * p.sh - p.qh
            if sz < 0 or sz >= p.SD or sr < 0 or sr >= p.SH or x1 == x0:
                memset(d, 0, p.BW * sizeof(floating))
                continue
            memset(d, 0, x0 * sizeof(floating))
            srow = src + (sz * p.SH + sr) * p.SW - p.qw
            if p.sw == 1:
                memcpy(d + x0, srow + x0, (x1 - x0) * sizeof(floating))
            else:
                for c in range(x0, x1):
                    d[c] = srow[c * p.sw]
            memset(d + x1, 0, (p.BW - x1) * sizeof(floating))


cdef void _fill_phases(floating* dst, const floating* src, Pad* p, Py_ssize_t nph,
                       Py_ssize_t P1, const Py_ssize_t* phq, Py_ssize_t sax=0,
                       Py_ssize_t o0=0) noexcept nogil:
    """The nph polyphase components of one source plane, P1 apart (q from ``phq``).

    ``o0``: the buffer starts at output ``o0`` along axis ``sax`` (a slab)."""
    cdef Pad lp = p[0]
    cdef Py_ssize_t f
    for f in range(nph):
        lp.qd, lp.qh, lp.qw = phq[3 * f], phq[3 * f + 1], phq[3 * f + 2]
        if sax == 0:
            lp.qd -= o0 * lp.sd
        else:
            lp.qh -= o0 * lp.sh
        _fill(dst + f * P1, src, &lp)


# ---------------------------------------------------------------------------
# the "wide" layout (stride 1, and stride s through polyphase components)
#
# With unit stride, output (od, oh, ow) and tap k read the padded buffer at flat
# index i + off[k], i = (od*BH + oh)*BW + ow (the output's position in the
# buffer's row pitch), off[k] = (kd*dd*BH + kh*dh)*BW + kw*dw. So the N-d
# correlation becomes one 1-D loop over i < wlen = ((OD-1)*BH + OH-1)*BW + OW;
# positions with ow >= OW are computed and dropped. With B = O + d*(K-1) per
# axis, wlen + off[last] = P: the buffer plus a slack of one tile (zeros) lets
# the last tile run full.
#
# With stride s, tap k reads xpad[o*s + k*d] = X_f[o + a] where k*d = a*s + f:
# X_f (f < s, per axis) is the polyphase component xpad[j*s + f]. Each channel's
# buffer holds the components its taps use, P1 apart, each with B = O + (K-1)*d//s;
# off[k] adds the component's place, and the same stride-1 tiles run unchanged.
#
# The tiles run over a list of vectors of VL lanes (LANES), each with its own
# base in the buffer, two vectors (four output channels) per call:
# * "flat": vector v covers flat indices [v*VL, (v+1)*VL) of the row-pitch
#   layout above (the padding columns between rows are computed and dropped);
# * "seg": each output row is cut into ceil(OW/VL) vectors, so no padding
#   column is computed, only the last vector's lanes beyond OW (dropped).
# :func:`plan` picks the layout with fewer vectors: "seg" wins where the
# padding is a large part of a row and OW is (nearly) a multiple of VL
# (e.g. 32 wide with a 7x7 kernel: 64 vectors instead of 76). The outputs land
# in a staging buffer (vector v at v*VL), rows srd/srh apart, and are copied out.
# ---------------------------------------------------------------------------
cdef struct Wide:
    Py_ssize_t G, CIG, COG, CI, CO     # groups, channels per group, totals (source, output)
    Py_ssize_t ksz, P, wlen, wpad      # taps, buffer plane, wide outputs, wlen rounded up
    Py_ssize_t OD, OH, OW
    Py_ssize_t nph, P1                 # polyphase components per channel, P1 apart
    const Py_ssize_t* phq              # each component's q (3 per component)
    Pad pad                            # source plane -> buffer plane (steps = stride)
    const Py_ssize_t* vb               # each vector's base in the buffer (nv4 of them)
    Py_ssize_t nv4, npair, VL          # vectors (a multiple of 4), pairs to run, lanes
    bint flat                          # vmode "flat" (else "seg")
    Py_ssize_t srd, srh                # staging index of output (od, oh, 0) = od*srd + oh*srh
    Py_ssize_t YD, YH                  # the whole output's depth and height
    Py_ssize_t sax, dsl, nsl           # slabs: dsl outputs along axis sax (0: D, 1: H) each
    Py_ssize_t BP1, BP2                # slab buffer pitch: B[1]*B[2], B[2]
    bint rows4                         # one channel at a time: row blocks (_direct_rows.h)
    const Py_ssize_t* offr             # ... offset of each tap column (kd, kh=0, kw)
    Py_ssize_t KD, KH, KW, nseg


cdef void _wide_task(const floating* src, const floating* w, floating* y, Wide* s,
                     const Py_ssize_t* off, Py_ssize_t task, floating* xbuf, floating* wide,
                     Py_ssize_t* key) noexcept nogil:
    """y[n, block of output channels, slab] for task (n, group, slab, block);
    ``key``: what xbuf holds."""
    cdef Py_ssize_t nob = (s.COG + FC_OBLOCK - 1) // FC_OBLOCK
    cdef Py_ssize_t nsg = task // nob                   # (n, group, slab)
    cdef Py_ssize_t sl = nsg % s.nsl, n = nsg // (s.nsl * s.G), grp = (nsg // s.nsl) % s.G
    cdef Py_ssize_t o0 = grp * s.COG + (task % nob) * FC_OBLOCK
    cdef Py_ssize_t nout = min(FC_OBLOCK, (grp + 1) * s.COG - o0)
    cdef Py_ssize_t wstride = s.CIG * s.ksz, splane = s.pad.SD * s.pad.SH * s.pad.SW
    cdef Py_ssize_t q, r, c, od, oh, npair = s.npair, nq = s.nv4 // 4, nv
    # this slab's outputs along the slab axis: [s0, s0 + ns)
    cdef Py_ssize_t s0 = sl * s.dsl
    cdef Py_ssize_t ns = min(s.dsl, (s.YD if s.sax == 0 else s.YH) - s0)
    cdef Py_ssize_t od_n = s.OD, oh_n = s.OH, yd0 = 0, yh0 = 0
    if s.sax == 0:
        od_n, yd0 = ns, s0
    else:
        oh_n, yh0 = ns, s0
    if ns < s.dsl:   # a short last slab: a prefix of the vectors covers it
        if s.flat:
            nv = (((od_n - 1) * s.BP1 + (oh_n - 1) * s.BP2 + s.OW) + s.VL - 1) // s.VL
        else:
            nv = od_n * oh_n * ((s.OW + s.VL - 1) // s.VL)
        npair = (nv + 1) // 2
        nq = (nv + 3) // 4
    if key[0] != nsg:
        # tasks of one thread are consecutive (static schedule): pad each (n, group,
        # slab) once
        for c in range(s.CIG):
            _fill_phases(xbuf + c * s.P, src + (n * s.CI + grp * s.CIG + c) * splane, &s.pad,
                         s.nph, s.P1, s.phq, s.sax, s0)
        memset(xbuf + s.CIG * s.P, 0, FC_TILE * sizeof(floating))
        key[0] = nsg
    if s.rows4 and nout < FC_OBLOCK:
        _rows_blocks(xbuf, w, s, o0, nout, od_n, oh_n, wide)
    elif nout == FC_OBLOCK:
        if floating is float:
            fc_pairs4_f32(xbuf, w + o0 * wstride, off, s.CIG, s.P, s.ksz, wstride, s.vb,
                          2 * npair, wide, s.wpad)
        else:
            fc_pairs4_f64(xbuf, w + o0 * wstride, off, s.CIG, s.P, s.ksz, wstride, s.vb,
                          2 * npair, wide, s.wpad)
    else:
        for q in range(nq):
            for r in range(nout):
                if floating is float:
                    if s.flat:   # four consecutive vectors: one float tile, one base
                        fc_tile_f32(xbuf + s.vb[4 * q], w + (o0 + r) * wstride, off, s.CIG,
                                    s.P, s.ksz, wide + r * s.wpad + 4 * q * s.VL)
                    else:
                        fc_quad1_f32(xbuf, w + (o0 + r) * wstride, off, s.CIG, s.P, s.ksz,
                                     s.vb + 4 * q, wide + r * s.wpad + 4 * q * s.VL)
                else:
                    fc_quad1_f64(xbuf, w + (o0 + r) * wstride, off, s.CIG, s.P, s.ksz,
                                 s.vb + 4 * q, wide + r * s.wpad + 4 * q * s.VL)
    for r in range(nout):
        for od in range(od_n):
            for oh in range(oh_n):
                memcpy(y + (((n * s.CO + o0 + r) * s.YD + yd0 + od) * s.YH + yh0 + oh) * s.OW,
                       wide + r * s.wpad + od * s.srd + oh * s.srh, s.OW * sizeof(floating))


cdef void _rows_blocks(const floating* xbuf, const floating* w, Wide* s, Py_ssize_t o0,
                       Py_ssize_t nout, Py_ssize_t od_n, Py_ssize_t oh_n,
                       floating* wide) noexcept nogil:
    """The "seg" vectors of one slab, four output rows and two vectors of a row at
    a time, for each of ``nout`` (< FC_OBLOCK) output channels."""
    cdef Py_ssize_t wstride = s.CIG * s.ksz, od, oh, sg, r, v
    cdef int nrow
    for r in range(nout):
        for od in range(od_n):
            for oh in range(0, oh_n, 4):
                nrow = <int>min(4, oh_n - oh)
                for sg in range(0, s.nseg, 2):
                    v = (od * s.OH + oh) * s.nseg + sg
                    if floating is float:
                        fc_rows4_f32(xbuf + s.vb[v], w + (o0 + r) * wstride, s.offr, s.CIG,
                                     s.P, s.ksz, s.KD, s.KH, s.KW, s.BP2,
                                     wide + r * s.wpad + v * s.VL, s.nseg * s.VL, nrow,
                                     2 if sg + 1 < s.nseg else 1)
                    else:
                        fc_rows4_f64(xbuf + s.vb[v], w + (o0 + r) * wstride, s.offr, s.CIG,
                                     s.P, s.ksz, s.KD, s.KH, s.KW, s.BP2,
                                     wide + r * s.wpad + v * s.VL, s.nseg * s.VL, nrow,
                                     2 if sg + 1 < s.nseg else 1)


cdef void _gw_wide_task(const floating* x, const floating* gy, floating* gw, Geom* g,
                        Pad* pad, const Py_ssize_t* off, Py_ssize_t task, Py_ssize_t ncb,
                        Py_ssize_t och, Py_ssize_t wpad, Py_ssize_t nph, const Py_ssize_t* phq,
                        Py_ssize_t cpp, floating* gyw, floating* xbuf,
                        double* acc) noexcept nogil:
    """grad_w[block of ``och`` output channels, block of input channels, all taps].

    For each image: grad_output rows of the block in the wide layout (zeros where
    ow >= OW), then per pass of ``cpp`` (1 or 2) input channels their padded
    planes (filled once for all the block's output channels, ``xs`` apart), then
    the level's register blocks of FC_GW_NR channels x up to FC_GW_NK taps over the
    whole plane (fc_gw_*), the pass's taps (``off``: ``cpp`` * ksz offsets, the
    second channel's ``xs`` further) split evenly into blocks, added into ``acc``
    (FC_GW_ACC doubles per weight; per pass, output channel, then the pass's
    taps) once per image; the lanes are summed once per weight at the end.
    """
    cdef Py_ssize_t nob = (g.COG + och - 1) // och
    cdef Py_ssize_t cb = (g.CIG + ncb - 1) // ncb
    cdef Py_ssize_t grp = task // (nob * ncb)
    cdef Py_ssize_t o0 = grp * g.COG + ((task // ncb) % nob) * och
    cdef Py_ssize_t nout = min(och, (grp + 1) * g.COG - o0)
    cdef Py_ssize_t c0 = (task % ncb) * cb, c1 = min(g.CIG, (task % ncb + 1) * cb)
    cdef Py_ssize_t P1 = pad.BD * pad.BH * pad.BW, ksz = g.K, xplane = g.D * g.H * g.W
    cdef Py_ssize_t vl = FC_VL_F32 if floating is float else FC_VL_F64
    cdef Py_ssize_t xs = nph * P1 + vl   # one channel's planes and their slack
    cdef Py_ssize_t kk = cpp * ksz       # taps of a pass (the accumulators' row)
    # taps per block: the level's block with FC_GW_NR channels; with fewer
    # channels (depthwise) fewer taps (fewer loads per block)
    cdef Py_ssize_t tpb = FC_GW_NK if nout >= FC_GW_NR else FC_GW_NK_FEW
    cdef Py_ssize_t n, r, r0, c, j, m, ntap, nblk, k, kb, ke, b, od, oh
    cdef double* a
    cdef double sm
    if c1 <= c0:
        return
    memset(acc, 0, ((c1 - c0 + cpp - 1) // cpp) * och * kk * FC_GW_ACC * sizeof(double))
    # every image writes the same places of gyw: its zeros (the wide layout's
    # columns ow >= OW, the tail) are set once
    memset(gyw, 0, nout * wpad * sizeof(floating))
    for n in range(g.N):
        for r in range(nout):
            for od in range(g.OD):
                for oh in range(g.OH):
                    memcpy(gyw + r * wpad + (od * pad.BH + oh) * pad.BW,
                           gy + (((n * g.CO + o0 + r) * g.OD + od) * g.OH + oh) * g.OW,
                           g.OW * sizeof(floating))
        c = c0
        while c < c1:
            m = min(cpp, c1 - c)   # channels in this pass
            for j in range(m):
                _fill_phases(xbuf + j * xs, x + (n * g.C + grp * g.CIG + c + j) * xplane, pad,
                             nph, P1, phq)
                memset(xbuf + j * xs + nph * P1, 0, vl * sizeof(floating))
            ntap = m * ksz
            nblk = (ntap + tpb - 1) // tpb
            r0 = 0
            while r0 < nout:
                for b in range(nblk):
                    kb, ke = b * ntap // nblk, (b + 1) * ntap // nblk
                    a = acc + ((((c - c0) // cpp) * och + r0) * kk + kb) * FC_GW_ACC
                    if floating is float:
                        fc_gw_f32(xbuf, off + kb, gyw + r0 * wpad, wpad, wpad, a, kk,
                                  min(FC_GW_NR, nout - r0), ke - kb)
                    else:
                        fc_gw_f64(xbuf, off + kb, gyw + r0 * wpad, wpad, wpad, a, kk,
                                  min(FC_GW_NR, nout - r0), ke - kb)
                r0 += FC_GW_NR
            c += m
    for c in range(c0, c1):
        for r in range(nout):
            for k in range(ksz):
                a = acc + ((((c - c0) // cpp) * och + r) * kk + ((c - c0) % cpp) * ksz
                           + k) * FC_GW_ACC
                sm = (a[0] + a[1]) + (a[2] + a[3])
                if not isfinite(sm):
                    # The wide layout also multiplies its zero columns (ow >= OW) by
                    # the input there: 0 * Inf = NaN would reach taps that never touch
                    # the Inf. Redo this weight over the valid outputs only.
                    sm = _gw_weight(x, gy, g, o0 + r, c, k)
                gw[((o0 + r) * g.CIG + c) * ksz + k] = <floating>sm


# ---------------------------------------------------------------------------
# grad_input at stride s > 1: polyphase components of grad_x
#
# Padded position j*s + f of grad_x (f < s per axis) receives gy[j - a] * w[k] from
# the taps with k*d = a*s + f only: component f is a stride-1 correlation of
# grad_output (front-padded by amax = (K-1)*d // s) with those taps at offsets
# amax - a. Each component runs the forward register tiles over its outputs
# j0 <= j < j1 (the ones inside grad_x) and is scattered into grad_x with step s.
# ---------------------------------------------------------------------------
cdef enum:
    PM = 13   # meta entries per component: nk, w offset, off offset, j0[3], n[3], f[3], wpad

PM_META = PM   # (for the planner, fastconv/_strategies/direct_plan.py)

cdef struct Poly:
    Py_ssize_t G, CIG, COG, CI, CO     # CI: grad_output channels, CO: grad_x channels
    Py_ssize_t P, BH, BW, wmax, nph    # buffer plane, pitch, wide row pitch, components
    Py_ssize_t D, H, W, sd, sh, sw, pd, ph, pw
    const Py_ssize_t* meta
    Pad pad


cdef void _gin_poly_task(const floating* gy, const floating* wt, const Py_ssize_t* offs,
                         floating* gx, Poly* s, Py_ssize_t task, floating* xbuf,
                         floating* wide, Py_ssize_t* key) noexcept nogil:
    cdef Py_ssize_t nob = (s.COG + FC_OBLOCK - 1) // FC_OBLOCK
    cdef Py_ssize_t n = task // (s.G * nob), grp = (task // nob) % s.G
    cdef Py_ssize_t o0 = grp * s.COG + (task % nob) * FC_OBLOCK
    cdef Py_ssize_t nout = min(FC_OBLOCK, (grp + 1) * s.COG - o0)
    cdef Py_ssize_t splane = s.pad.SD * s.pad.SH * s.pad.SW, xplane = s.D * s.H * s.W
    cdef Py_ssize_t f, b, i0, r, c, td, th, tw, nk, wstride, base
    cdef const Py_ssize_t* m
    cdef const floating* w0
    cdef const floating* src
    cdef floating* grow
    if key[0] != n * s.G + grp:
        for c in range(s.CIG):
            _fill(xbuf + c * s.P, gy + (n * s.CI + grp * s.CIG + c) * splane, &s.pad)
        memset(xbuf + s.CIG * s.P, 0, FC_TILE * sizeof(floating))
        key[0] = n * s.G + grp
    for r in range(nout):   # positions no tap reaches stay zero
        memset(gx + (n * s.CO + o0 + r) * xplane, 0, xplane * sizeof(floating))
    for f in range(s.nph):
        m = s.meta + f * PM
        nk = m[0]
        if nk == 0:
            continue
        w0 = wt + m[1]
        wstride = s.CIG * nk
        base = (m[3] * s.BH + m[4]) * s.BW + m[5]
        for b in range(m[12] // FC_TILE):
            i0 = b * FC_TILE
            if nout == FC_OBLOCK:
                if floating is float:
                    fc_tile4_f32(xbuf + base + i0, w0 + o0 * wstride, offs + m[2], s.CIG, s.P,
                                 nk, wstride, wide + i0, s.wmax)
                else:
                    fc_tile4_f64(xbuf + base + i0, w0 + o0 * wstride, offs + m[2], s.CIG, s.P,
                                 nk, wstride, wide + i0, s.wmax)
            else:
                for r in range(nout):
                    if floating is float:
                        fc_tile_f32(xbuf + base + i0, w0 + (o0 + r) * wstride, offs + m[2],
                                    s.CIG, s.P, nk, wide + r * s.wmax + i0)
                    else:
                        fc_tile_f64(xbuf + base + i0, w0 + (o0 + r) * wstride, offs + m[2],
                                    s.CIG, s.P, nk, wide + r * s.wmax + i0)
        for r in range(nout):
            for td in range(m[6]):
                for th in range(m[7]):
                    grow = gx + (((n * s.CO + o0 + r) * s.D + (m[3] + td) * s.sd + m[9] - s.pd)
                                 * s.H + (m[4] + th) * s.sh + m[10] - s.ph) * s.W
                    src = wide + r * s.wmax + (td * s.BH + th) * s.BW
                    for tw in range(m[8]):
                        grow[(m[5] + tw) * s.sw + m[11] - s.pw] = src[tw]


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
# the dispatcher's float32 overflow guard
# ---------------------------------------------------------------------------
def absmax(const float[::1] a, int n_threads=1):
    """max |a| of a float32 array in one pass over it, on ``n_threads`` threads.

    Inf when ``a`` holds an Inf, NaN when it holds a NaN (the largest NaN bit
    pattern); 0 for an empty array.
    """
    # one thread per 64 Ki values at most: below that, starting threads costs more
    cdef Py_ssize_t n = a.shape[0], t, nt = max(1, min(n_threads, n // 65536 + 1, 64))
    if n == 0:
        return 0.0
    cdef Py_ssize_t chunk = -(-n // nt)
    cdef int[64] part
    cdef const int* u = <const int*> &a[0]
    if nt == 1:   # no parallel region to enter
        part[0] = fc_absmax_bits(u, n)
    else:
        with nogil:
            for t in prange(nt, num_threads=nt, schedule="static"):
                part[t] = fc_absmax_bits(u + t * chunk, min(chunk, n - t * chunk))
    cdef int m = 0
    for t in range(nt):
        m = part[t] if part[t] > m else m
    return np.array([m], dtype=np.int32).view(np.float32)[0].item()


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------
def _buffers(info, dtype):
    """Allocate the per-thread buffers of ``info`` (one row per thread)."""
    kinds = {"x": dtype, "f8": np.float64, "intp": np.intp}
    return {name: (np.full((info.threads, n), -1, np.intp) if name == "key"
                   else np.empty((info.threads, n), kinds[k]))
            for name, (n, k) in info.per_thread.items()}


cdef Geom _geom(info) except *:
    """The problem's geometry, from the call a plan was made for."""
    cdef Py_ssize_t a[5]
    cdef Py_ssize_t b[5]
    cdef Py_ssize_t c[5]
    cdef int i
    xs, ws, ys, padding = info.xs, info.ws, info.ys, info.padding
    for i in range(5):
        a[i], b[i], c[i] = xs[i], ws[i], ys[i]
    cdef Geom g = make_geom(a, b, c, info.stride, info.dilation, info.groups)
    g.pd, g.ph, g.pw = padding[0][0], padding[1][0], padding[2][0]
    return g


cdef Wide _wide(info, Py_ssize_t CI, Py_ssize_t CO, tuple outs, tuple src3) except *:
    """The wide kernel's geometry from a plan (forward, or grad_input as the forward
    correlation of grad_output: ``CI`` channels into ``CO`` over ``outs`` from a
    source of ``src3``). Its pointers point into the plan's arrays: the caller
    keeps the plan alive while it runs."""
    cdef const Py_ssize_t[::1] phq = info.phq
    cdef const Py_ssize_t[::1] vb = info.vb
    cdef const Py_ssize_t[::1] offr = info.offr
    cdef Wide s
    cdef Py_ssize_t G = info.groups
    B, k3 = info.B, info.ws[2:]
    s.vb, s.phq, s.offr = &vb[0], &phq[0], &offr[0]
    s.nv4 = vb.shape[0]
    s.npair = (info.nv + 1) // 2
    s.VL = info.wpad // s.nv4
    s.flat = info.vmode == "flat"
    if s.flat:
        s.srd, s.srh = B[1] * B[2], B[2]
    else:
        s.srd, s.srh = outs[1] * info.nseg * s.VL, info.nseg * s.VL
    s.G, s.CI, s.CO, s.CIG, s.COG = G, CI, CO, CI // G, CO // G
    s.KD, s.KH, s.KW = k3
    s.ksz, s.P1, s.wlen, s.wpad = k3[0] * k3[1] * k3[2], info.P1, info.wlen, info.wpad
    s.nph = info.nph
    s.P = s.nph * s.P1
    s.OD, s.OH, s.OW = info.souts   # one slab's
    s.YD, s.YH = outs[0], outs[1]
    s.sax, s.dsl, s.nsl = info.sax, info.dsl, info.nsl
    s.BP1, s.BP2 = B[1] * B[2], B[2]
    s.rows4 = info.rows4
    s.nseg = info.nseg
    s.pad = _pad_of(B[0], B[1], B[2], src3[0], src3[1], src3[2], 0, 0, 0)
    s.pad.sd, s.pad.sh, s.pad.sw = info.stride
    return s


cdef void _run_poly(const floating* gy, w5, floating* gx, info, Geom* g) except *:
    """grad_input by polyphase components (stride > 1): gather the weights, run."""
    K = g.K
    bufs = _buffers(info, w5.dtype)
    cdef floating[::1] wt = np.empty(g.CO * g.CIG * K, dtype=w5.dtype)
    cdef const Py_ssize_t[::1] offs = info.off
    cdef const Py_ssize_t[::1] mv = info.meta_table
    # wt, per component: (C_in, C_out/g, its taps), the channel axes swapped per group
    cdef const floating[::1] wf = w5.reshape(-1)
    cdef Py_ssize_t t, k, nk, wofs, gi, c, o
    for m in info.meta:
        nk, wofs = m.ntaps, m.wofs
        for t, (k, _) in enumerate(m.taps):
            for gi in range(g.G):
                for c in range(g.CIG):
                    for o in range(g.COG):
                        wt[wofs + (((gi * g.CIG + c) * g.COG + o) * nk + t)] = \
                            wf[((gi * g.COG + o) * g.CIG + c) * K + k]
    cdef Poly s
    B = info.B
    s.G, s.CI, s.CO, s.CIG, s.COG = g.G, g.CO, g.C, g.COG, g.CIG
    s.P, s.BH, s.BW, s.wmax, s.nph = B[0] * B[1] * B[2], B[1], B[2], info.wmax, len(info.meta)
    s.D, s.H, s.W, s.sd, s.sh, s.sw = g.D, g.H, g.W, g.sd, g.sh, g.sw
    s.pd, s.ph, s.pw = g.pd, g.ph, g.pw
    s.meta = &mv[0]
    amax = info.amax
    s.pad = _pad_of(B[0], B[1], B[2], g.OD, g.OH, g.OW, amax[0], amax[1], amax[2])
    cdef floating[:, ::1] xbuf = bufs["xbuf"]
    cdef floating[:, ::1] wide = bufs["wide"]
    cdef Py_ssize_t[:, ::1] key = bufs["key"]
    cdef Py_ssize_t t2, tasks = info.tasks
    cdef int tid, nthr = info.threads
    with nogil:
        for t2 in prange(tasks, num_threads=nthr, schedule="static"):
            tid = omp_get_thread_num()
            _gin_poly_task(gy, &wt[0], &offs[0], gx, &s, t2, &xbuf[tid, 0], &wide[tid, 0],
                           &key[tid, 0])


cdef enum:
    OP_FORWARD, OP_GRAD_INPUT, OP_GRAD_WEIGHT


cdef class WideCall:
    """A planned call of the wide path (forward; grad_input at unit stride;
    grad_weight): everything :func:`forward`, :func:`grad_input` and
    :func:`grad_weight` derive from the plan (the checks, the geometry, the
    pointers into its index arrays) made once, so that a call only takes its
    arrays' addresses, allocates its buffers in one block and runs the tasks.
    Read-only once made: any number of threads may call it at once.

    Called as ``(x, w, y)``, ``(grad_output, w, grad_x)`` or ``(x, grad_output,
    grad_w)``: C-contiguous arrays of the shapes and itemsize it was made for
    (the caller checks; the object trusts them). grad_input raises
    :class:`NonFiniteWeights` for weights that are not all finite (the row-loop
    plan handles them).
    """
    cdef Wide s                      # forward, grad_input: the register tiles' geometry
    cdef Geom g                      # the problem (grad_input's weight, grad_weight)
    cdef Pad pad                     # grad_weight: the input planes' padding
    cdef const Py_ssize_t* off
    cdef const Py_ssize_t* phq
    cdef object keep                 # the plan, whose arrays the pointers point into
    cdef Py_ssize_t tasks, ncb, och, wpad, nph, cpp
    cdef Py_ssize_t b0, b1, b2       # a thread's buffers in bytes, each a multiple of 64
    cdef int nthr, itemsize, op

    def __init__(self, info):
        if info.path != "wide" or (info.op == "grad_input" and any(
                st != 1 for st in info.stride)):
            raise ValueError(f"WideCall: a plan of {info.op}'s {info.path!r} path, not the "
                             "wide path")
        self.keep = info
        self.op = {"forward": OP_FORWARD, "grad_input": OP_GRAD_INPUT,
                   "grad_weight": OP_GRAD_WEIGHT}[info.op]
        cdef const Py_ssize_t[::1] off = info.off
        cdef const Py_ssize_t[::1] phq = info.phq
        self.off, self.phq = &off[0], &phq[0]
        xs, ws, ys = info.xs, info.ws, info.ys
        self.g = _geom(info)
        self.tasks, self.nthr, self.itemsize = info.tasks, info.threads, info.itemsize
        self.b2 = 0
        if self.op == OP_FORWARD:
            self.s = _wide(info, xs[1], ws[0], ys[2:], xs[2:])
        elif self.op == OP_GRAD_INPUT:
            # the forward correlation of grad_output with the transposed, flipped kernel
            self.s = _wide(info, self.g.CO, self.g.C, xs[2:], ys[2:])
        else:
            B = info.B
            self.pad = _pad_of(B[0], B[1], B[2], self.g.D, self.g.H, self.g.W, 0, 0, 0)
            self.pad.sd, self.pad.sh, self.pad.sw = info.stride
            self.ncb, self.och, self.wpad = info.ncb, info.och, info.wpad
            self.nph, self.cpp = info.nph, info.cpp
            self.b0, self.b1 = info.thread_bytes("gyw"), info.thread_bytes("xbuf")
            self.b2 = info.thread_bytes("acc")
            return
        self.b0, self.b1 = info.thread_bytes("xbuf"), info.thread_bytes("wide")

    @property
    def plan(self):
        """The :class:`~fastconv._strategies.direct_plan.KernelPlan` it runs."""
        return self.keep

    def __call__(self, a, b, out):
        cdef Py_buffer ba, bb, bo
        cdef Py_ssize_t per = self.b0 + self.b1 + self.b2, t, nw = 0
        cdef int nthr = self.nthr
        cdef char* mem
        cdef char* buf
        cdef char* extra
        cdef bint finite = True
        if self.op == OP_GRAD_INPUT:
            nw = self.g.CO * self.g.CIG * self.g.K   # the transposed kernel's elements
        PyObject_GetBuffer(a, &ba, PyBUF_SIMPLE)
        try:
            PyObject_GetBuffer(b, &bb, PyBUF_SIMPLE)
            try:
                PyObject_GetBuffer(out, &bo, PyBUF_SIMPLE | PyBUF_WRITABLE)
                try:
                    # each thread's buffers, 64-byte aligned, then the threads' keys
                    # (forward, grad_input) and grad_input's transposed kernel
                    mem = <char*> PyMem_Malloc(nthr * per + nthr * sizeof(Py_ssize_t)
                                               + nw * self.itemsize + 64)
                    if mem == NULL:
                        raise MemoryError()
                    try:
                        buf = mem + (-(<Py_ssize_t> mem) & 63)
                        extra = buf + nthr * per
                        with nogil:
                            if self.itemsize == 4:
                                finite = self._run(<const float*> ba.buf,
                                                   <const float*> bb.buf, <float*> bo.buf,
                                                   buf, extra, nw)
                            else:
                                finite = self._run(<const double*> ba.buf,
                                                   <const double*> bb.buf, <double*> bo.buf,
                                                   buf, extra, nw)
                    finally:
                        PyMem_Free(mem)
                finally:
                    PyBuffer_Release(&bo)
            finally:
                PyBuffer_Release(&bb)
        finally:
            PyBuffer_Release(&ba)
        if not finite:
            raise NonFiniteWeights("grad_input: the plan was made for finite weights (plan "
                                   "with finite=False for these)")

    cdef bint _run(self, const floating* a, const floating* b, floating* out, char* buf,
                   char* extra, Py_ssize_t nw) noexcept nogil:
        """The tasks (False: grad_input's weights are not all finite; nothing ran).
        Everything the parallel loops read is a struct or a pointer: nothing in
        them may need a check that can raise (the bounds-checked build checks
        attribute access)."""
        cdef Py_ssize_t t, per = self.b0 + self.b1 + self.b2
        cdef Py_ssize_t* key = <Py_ssize_t*> extra
        cdef floating* wt = <floating*> (extra + self.nthr * sizeof(Py_ssize_t))
        if self.op == OP_GRAD_WEIGHT:
            _gw_tasks(a, b, out, &self.g, &self.pad, self.off, self.tasks, self.ncb,
                      self.och, self.wpad, self.nph, self.phq, self.cpp, self.nthr, buf,
                      self.b0, self.b1, per)
            return True
        for t in range(self.nthr):
            key[t] = -1
        if self.op == OP_FORWARD:
            _wide_tasks(a, b, out, &self.s, self.off, self.tasks, self.nthr, buf, self.b0,
                        per, key)
            return True
        # grad_input: a = grad_output, b = the weight
        if not _all_finite(b, nw):
            return False
        _transpose_kernel(b, wt, &self.g)
        _wide_tasks(a, wt, out, &self.s, self.off, self.tasks, self.nthr, buf, self.b0, per,
                    key)
        return True


cdef void _transpose_kernel(const floating* w, floating* wt, Geom* g) noexcept nogil:
    """grad_input's kernel: ``w`` (C_out, C_in/g, taps) flipped in every spatial axis
    (the flat tap order reversed) and its channel axes swapped within each group,
    (C_in, C_out/g, taps)."""
    cdef Py_ssize_t gi, c, o, t, K = g.K
    cdef const floating* src
    cdef floating* dst
    for gi in range(g.G):
        for c in range(g.CIG):
            for o in range(g.COG):
                src = w + ((gi * g.COG + o) * g.CIG + c) * K
                dst = wt + ((gi * g.CIG + c) * g.COG + o) * K
                for t in range(K):
                    dst[t] = src[K - 1 - t]


cdef void _wide_tasks(const floating* x, const floating* w, floating* y, Wide* s,
                      const Py_ssize_t* off, Py_ssize_t tasks, int nthr, char* buf,
                      Py_ssize_t xb, Py_ssize_t stride, Py_ssize_t* key) noexcept nogil:
    """:class:`WideCall`'s forward and grad_input tasks: each thread's two buffers are
    at ``buf + tid * stride`` (the input buffer) and ``xb`` bytes after it (the wide
    outputs)."""
    cdef Py_ssize_t t
    cdef int tid
    cdef char* b
    if nthr == 1:   # no parallel region to enter
        for t in range(tasks):
            _wide_task(x, w, y, s, off, t, <floating*> buf, <floating*> (buf + xb), key)
        return
    for t in prange(tasks, num_threads=nthr, schedule="static"):
        tid = omp_get_thread_num()
        b = buf + tid * stride
        _wide_task(x, w, y, s, off, t, <floating*> b, <floating*> (b + xb), key + tid)


cdef void _gw_tasks(const floating* x, const floating* gy, floating* gw, Geom* g, Pad* pad,
                    const Py_ssize_t* off, Py_ssize_t tasks, Py_ssize_t ncb, Py_ssize_t och,
                    Py_ssize_t wpad, Py_ssize_t nph, const Py_ssize_t* phq, Py_ssize_t cpp,
                    int nthr, char* buf, Py_ssize_t b0, Py_ssize_t b1,
                    Py_ssize_t stride) noexcept nogil:
    """:class:`WideCall`'s grad_weight tasks: each thread's grad_output rows, input
    planes and accumulators at ``buf + tid * stride``, ``b0`` and ``b0 + b1``
    bytes further."""
    cdef Py_ssize_t t
    cdef int tid
    cdef char* b
    if nthr == 1:
        for t in range(tasks):
            _gw_wide_task(x, gy, gw, g, pad, off, t, ncb, och, wpad, nph, phq, cpp,
                          <floating*> buf, <floating*> (buf + b0), <double*> (buf + b0 + b1))
        return
    for t in prange(tasks, num_threads=nthr, schedule="dynamic"):
        tid = omp_get_thread_num()
        b = buf + tid * stride
        _gw_wide_task(x, gy, gw, g, pad, off, t, ncb, och, wpad, nph, phq, cpp,
                      <floating*> b, <floating*> (b + b0), <double*> (b + b0 + b1))


class NonFiniteWeights(ValueError):
    """grad_input was given a plan made for finite weights, and they are not: the
    caller runs the row-loop plan (``finite=False``) instead."""


def _shape(a):
    return tuple(a.shape[:5])


def _check(info, str op, xs, ws, ys, Py_ssize_t itemsize):
    """Refuse arrays other than the ones the plan was made for (the kernels trust
    the plan: a mismatch would read or write out of bounds)."""
    if info.op != op or info.xs != xs or info.ws != ws or info.ys != ys \
            or info.itemsize != itemsize:
        raise ValueError(f"{op}: arrays {xs}, {ws}, {ys} (itemsize {itemsize}) do not fit "
                         f"the plan, made for {info.op} {info.xs}, {info.ws}, {info.ys} "
                         f"(itemsize {info.itemsize})")


def forward(const floating[:, :, :, :, ::1] x,  # IN  (N, C_in, D, H, W), unpadded
            const floating[:, :, :, :, ::1] w,  # IN  (C_out, C_in/g, KD, KH, KW)
            floating[:, :, :, :, ::1] y,        # OUT (N, C_out, OD, OH, OW)
            info):
    """y = the zero-padded, strided, dilated cross-correlation of x with w, as
    ``info`` (:func:`fastconv._strategies.direct_plan.plan`) says."""
    xs, ws, ys = _shape(x), _shape(w), _shape(y)
    _check(info, "forward", xs, ws, ys, x.itemsize)
    if info.path == "wide":
        WideCall(info)(x, w, y)
        return
    cdef Geom g = _geom(info)   # (_check: the arrays are the plan's)
    cdef Py_ssize_t t, tasks = info.tasks
    cdef int nthr = info.threads
    with nogil:
        for t in prange(tasks, num_threads=nthr, schedule="dynamic"):
            _fwd_task(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &y[0, 0, 0, 0, 0], &g, t)


def grad_input(const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
               const floating[:, :, :, :, ::1] w,   # IN  (C_out, C_in/g, KD, KH, KW)
               floating[:, :, :, :, ::1] gx,        # OUT (N, C_in, D, H, W), unpadded
               info):
    """grad_x, the adjoint of :func:`forward` in x, written unpadded.

    With non-finite weights only the scatter (row) kernel may run (a plan made
    with ``finite=False``), so that the zeros of a padded grad_output never meet
    an Inf weight (0 * Inf = NaN where PyTorch and the other strategies give a
    finite value).
    """
    xs, ws, ys = _shape(gx), _shape(w), _shape(gy)
    _check(info, "grad_input", xs, ws, ys, gy.itemsize)
    if info.path == "wide":
        # grad_x is the forward correlation of grad_output, zero-padded by
        # d*(K-1) - padding_before (negative: cropped), with the kernel flipped and
        # its channel axes swapped within each group
        WideCall(info)(gy, w, gx)
        return
    cdef Geom g = _geom(info)   # (_check: the arrays are the plan's)
    if info.path == "poly" and not _all_finite(&w[0, 0, 0, 0, 0], g.CO * g.CIG * g.K):
        raise NonFiniteWeights("grad_input: the plan was made for finite weights (plan "
                               "with finite=False for these)")
    cdef Py_ssize_t t, tasks = info.tasks
    cdef int nthr = info.threads
    if info.path == "poly":
        _run_poly(&gy[0, 0, 0, 0, 0], np.asarray(w), &gx[0, 0, 0, 0, 0], info, &g)
        return
    with nogil:
        for t in prange(tasks, num_threads=nthr, schedule="dynamic"):
            _gin_task(&gy[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &gx[0, 0, 0, 0, 0], &g, t)


def grad_weight(const floating[:, :, :, :, ::1] x,   # IN  (N, C_in, D, H, W), unpadded
                const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
                floating[:, :, :, :, ::1] gw,        # OUT (C_out, C_in/g, KD, KH, KW)
                info):
    """grad_w, the adjoint of :func:`forward` in w, summed over the batch.

    Deterministic for a fixed thread count: the partition into tasks and each
    task's summation order depend on the shapes and the plan's threads only.
    """
    xs, ws, ys = _shape(x), _shape(gw), _shape(gy)
    _check(info, "grad_weight", xs, ws, ys, x.itemsize)
    if info.path == "wide":
        WideCall(info)(x, gy, gw)
        return
    cdef Geom g = _geom(info)   # (_check: the arrays are the plan's)
    cdef Py_ssize_t t, tasks = info.tasks
    cdef int tid, nthr = info.threads
    bufs = _buffers(info, np.asarray(gw).dtype)
    cdef double[:, ::1] acc = bufs["acc"]
    with nogil:
        for t in prange(tasks, num_threads=nthr, schedule="dynamic"):
            tid = omp_get_thread_num()
            _gw_task(&x[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], &gw[0, 0, 0, 0, 0], &g, t,
                     &acc[tid, 0])
