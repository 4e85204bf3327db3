# cython: language_level=3
"""Winograd minimal filtering F(m, 3) on the H and W axes, taps summed along D.

Arrays arrive 5-D C-contiguous (N, C, D, H, W) and *unpadded*: padding is an
offset ``off`` per axis (input index = output index + tap + off) and every
position outside the image reads as zero inside the tile gather. A kernel axis
of extent 1 uses the trivial transform (alpha = m = 1). The depth axis is never
transformed: its KD taps are stacked into the GEMM's inner dimension (planes
od..od+KD-1 of the transformed input are adjacent), which needs 2.25x (F(4x4))
instead of 8x (F(2x2x2)) the input in buffers.

Per unit of work (``nb`` images, or one image when D > 1), one thread:

1. transposes its images to channel-last (``xt``, (D, H, W, C) per image), so
   every transform below is a loop over channels that the compiler vectorizes;
2. per block of ``tc`` tiles and ``odc`` output planes, transforms the input
   tiles (V[p][tile][plane][c], p = i*aw + j a transform position), runs one
   GEMM per transform position (and output plane) through scipy's BLAS, and
   transforms the result straight into a channel-last output (``yt``);
3. transposes ``yt`` back to (C_out, OD, OH, OW).

The transformed block (V, M) is sized by the caller to stay in cache: the
transforms never round-trip through memory. grad_input is this forward pass
on grad_output with the flipped, transposed kernel (the caller passes its
transform and offsets). grad_weight runs the adjoint: dM = A gy A^T per tile,
dU[p] += V[p]^T dM[p], one partial dU per thread, summed in thread order.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memset

import numpy as np

from _blas cimport gemm_rm, NoTrans, TransT
from _openmp cimport FASTCONV_HAVE_OPENMP

HAVE_OPENMP = bool(FASTCONV_HAVE_OPENMP)

cdef enum:
    MAXA = 8      # largest alpha (F(6,3))
    # elements between transform positions' blocks beyond their size: a power-of-two
    # stride would put all 36-64 position streams of a tile transform in one cache set
    PAD = 16


cdef struct WG:
    Py_ssize_t N, C, D, H, W          # input of the Winograd pass
    Py_ssize_t CO, OD, OH, OW         # its output
    Py_ssize_t G, CIG, COG, KD
    Py_ssize_t offd, offh, offw       # input index = output index + tap + off
    Py_ssize_t mh, mw, ah, aw, P      # tile sizes, alphas, positions
    Py_ssize_t TH, TW, T2             # tiles per plane
    Py_ssize_t nb, tc, odc, Pl        # images per unit, tiles per block, planes per block
    Py_ssize_t nunits
    Py_ssize_t xt_sz, yt_sz, v_sz, m_sz, tmp_sz, du_sz, per_thread
    double bth[MAXA * MAXA]
    double btw[MAXA * MAXA]
    double ath[MAXA * MAXA]
    double atw[MAXA * MAXA]


cdef int _setup(WG* g, Py_ssize_t N, Py_ssize_t C, Py_ssize_t D, Py_ssize_t H, Py_ssize_t W,
                Py_ssize_t CO, Py_ssize_t OD, Py_ssize_t OH, Py_ssize_t OW,
                int groups, int KD, tuple offsets,
                const double[:, ::1] BTh, const double[:, ::1] BTw,
                const double[:, ::1] ATh, const double[:, ::1] ATw,
                Py_ssize_t nb, Py_ssize_t tc, Py_ssize_t odc, bint gw) except -1:
    cdef Py_ssize_t i, j
    g.N, g.C, g.D, g.H, g.W = N, C, D, H, W
    g.CO, g.OD, g.OH, g.OW = CO, OD, OH, OW
    g.G, g.KD = groups, KD
    g.CIG, g.COG = C // groups, CO // groups
    g.offd, g.offh, g.offw = offsets
    g.ah, g.aw = BTh.shape[0], BTw.shape[0]
    g.mh, g.mw = ATh.shape[0], ATw.shape[0]
    if g.ah > MAXA or g.aw > MAXA or ATh.shape[1] != g.ah or ATw.shape[1] != g.aw:
        raise ValueError("winograd: bad transform matrices")
    g.P = g.ah * g.aw
    for i in range(g.ah):
        for j in range(g.ah):
            g.bth[i * g.ah + j] = BTh[i, j]
        for j in range(g.mh):
            g.ath[j * g.ah + i] = ATh[j, i]
    for i in range(g.aw):
        for j in range(g.aw):
            g.btw[i * g.aw + j] = BTw[i, j]
        for j in range(g.mw):
            g.atw[j * g.aw + i] = ATw[j, i]
    g.TH = (OH + g.mh - 1) // g.mh
    g.TW = (OW + g.mw - 1) // g.mw
    g.T2 = g.TH * g.TW
    g.nb = nb if D == 1 else 1
    g.odc = min(odc, OD)
    g.Pl = g.odc + KD - 1
    g.tc = tc
    g.nunits = (N + g.nb - 1) // g.nb
    sizes = unit_sizes(C, D * H * W, CO, OD * OH * OW, g.P, g.ah * max(g.aw, g.mw),
                       g.nb, tc, g.Pl, KD, groups, gw)
    g.xt_sz, g.yt_sz, g.v_sz, g.m_sz, g.tmp_sz, g.du_sz = sizes
    g.per_thread = sum(sizes)
    return 0


def unit_sizes(C, S, CO, SO, P, A2, nb, tc, Pl, KD, groups, gw):
    """Scratch elements of one thread: (xt, yt, V, M, tmp, dU)."""
    return (nb * C * S, nb * CO * SO, P * (tc * Pl * C + 16), P * (tc * CO + 16),
            A2 * max(C, CO), (P * KD * (C // groups) * CO) if gw else 0)


cdef extern from "_winograd_xf.h" nogil:
    void wg_axpy_f(float* d, const float* s, float a, Py_ssize_t n, int first)
    void wg_axpy_d(double* d, const double* s, double a, Py_ssize_t n, int first)
    void wg_transpose_f(const float* src, Py_ssize_t rows, Py_ssize_t cols, float* dst)
    void wg_transpose_d(const double* src, Py_ssize_t rows, Py_ssize_t cols, double* dst)
    void wg_axpy16_d(double* d, const double* s, double a)
    void wg_zero_d(double* d, Py_ssize_t n)


# ---------------------------------------------------------------------------
# layout changes (channel-first <-> channel-last), cache-blocked
# ---------------------------------------------------------------------------
cdef inline void _to_last(const floating* src, floating* dst, Py_ssize_t C,
                          Py_ssize_t S) noexcept nogil:
    """dst[s*C + c] = src[c*S + s]."""
    if floating is float:
        wg_transpose_f(src, C, S, dst)
    else:
        wg_transpose_d(src, C, S, dst)


cdef inline void _to_first(const floating* src, floating* dst, Py_ssize_t C,
                           Py_ssize_t S) noexcept nogil:
    """dst[c*S + s] = src[s*C + c]."""
    if floating is float:
        wg_transpose_f(src, S, C, dst)
    else:
        wg_transpose_d(src, S, C, dst)


# ---------------------------------------------------------------------------
# tile transforms; the inner loops run over channels (contiguous)
# ---------------------------------------------------------------------------
cdef inline void _axpy(floating* d, const floating* s, floating a, Py_ssize_t n,
                       bint first) noexcept nogil:
    """d = a*s (first) or d += a*s, over n elements; d and s do not overlap."""
    if floating is float:
        wg_axpy_f(d, s, a, n, first)
    else:
        wg_axpy_d(d, s, a, n, first)


cdef void _in_tile(const WG* g, const floating* plane, Py_ssize_t h0, Py_ssize_t w0,
                   floating* v, Py_ssize_t pstride, floating* tmp) noexcept nogil:
    """v[p*pstride + c] = (B^T d B)[p] for the tile of ``plane`` (H, W, C) at (h0, w0)."""
    cdef Py_ssize_t i, j, r, s, h, w, C = g.C, ah = g.ah, aw = g.aw
    cdef double b
    cdef bint first
    cdef floating* t
    # pass 1 over H: tmp[i][s] = sum_r BTh[i][r] d[r][s]  (zeros outside the image);
    # a tile inside the image in W reads whole row segments (aw*C contiguous)
    if w0 >= 0 and w0 + aw <= g.W:
        for i in range(ah):
            t = tmp + i * aw * C
            first = True
            for r in range(ah):
                b = g.bth[i * ah + r]
                h = h0 + r
                if b != 0 and 0 <= h < g.H:
                    _axpy(t, plane + (h * g.W + w0) * C, <floating>b, aw * C, first)
                    first = False
            if first:
                memset(t, 0, aw * C * sizeof(floating))
    else:
        _in_tile_edge(g, plane, h0, w0, tmp)
    # pass 2 over W: v[i][j] = sum_s BTw[j][s] tmp[i][s]
    for i in range(ah):
        for j in range(aw):
            t = v + (i * aw + j) * pstride
            first = True
            for s in range(aw):
                b = g.btw[j * aw + s]
                if b != 0:
                    _axpy(t, tmp + (i * aw + s) * C, <floating>b, C, first)
                    first = False
            if first:
                memset(t, 0, C * sizeof(floating))


cdef void _in_tile_edge(const WG* g, const floating* plane, Py_ssize_t h0, Py_ssize_t w0,
                        floating* tmp) noexcept nogil:
    """Pass 1 of _in_tile for a tile that crosses the left or right border."""
    cdef Py_ssize_t i, r, s, h, w, C = g.C, ah = g.ah, aw = g.aw
    cdef double b
    cdef bint first
    cdef floating* t
    for i in range(ah):
        for s in range(aw):
            t = tmp + (i * aw + s) * C
            first = True
            w = w0 + s
            if 0 <= w < g.W:
                for r in range(ah):
                    b = g.bth[i * ah + r]
                    h = h0 + r
                    if b != 0 and 0 <= h < g.H:
                        _axpy(t, plane + (h * g.W + w) * C, <floating>b, C, first)
                        first = False
            if first:
                memset(t, 0, C * sizeof(floating))


cdef void _out_tile(const WG* g, const floating* m, Py_ssize_t pstride, floating* plane,
                    Py_ssize_t h0, Py_ssize_t w0, floating* tmp) noexcept nogil:
    """plane (OH, OW, CO) tile at (h0, w0) = A^T M A, cropped to the output."""
    cdef Py_ssize_t i, j, q, r, CO = g.CO, ah = g.ah, aw = g.aw, mw = g.mw
    cdef double a
    cdef bint first
    cdef floating* t
    for i in range(ah):
        for r in range(mw):
            if w0 + r >= g.OW:
                break
            t = tmp + (i * mw + r) * CO
            first = True
            for j in range(aw):
                a = g.atw[r * aw + j]
                if a != 0:
                    _axpy(t, m + (i * aw + j) * pstride, <floating>a, CO, first)
                    first = False
            if first:
                memset(t, 0, CO * sizeof(floating))
    if w0 + mw <= g.OW:  # whole row segments (mw*CO contiguous)
        for q in range(g.mh):
            if h0 + q >= g.OH:
                break
            t = plane + ((h0 + q) * g.OW + w0) * CO
            first = True
            for i in range(ah):
                a = g.ath[q * ah + i]
                if a != 0:
                    _axpy(t, tmp + i * mw * CO, <floating>a, mw * CO, first)
                    first = False
            if first:
                memset(t, 0, mw * CO * sizeof(floating))
        return
    for q in range(g.mh):
        if h0 + q >= g.OH:
            break
        for r in range(mw):
            if w0 + r >= g.OW:
                break
            t = plane + ((h0 + q) * g.OW + w0 + r) * CO
            first = True
            for i in range(ah):
                a = g.ath[q * ah + i]
                if a != 0:
                    _axpy(t, tmp + (i * mw + r) * CO, <floating>a, CO, first)
                    first = False
            if first:
                memset(t, 0, CO * sizeof(floating))


cdef void _gy_tile(const WG* g, const floating* plane, Py_ssize_t h0, Py_ssize_t w0,
                   floating* m, Py_ssize_t pstride, floating* tmp) noexcept nogil:
    """Adjoint of _out_tile: m[p] = (A gy A^T)[p], gy zero outside the output."""
    cdef Py_ssize_t i, j, q, r, CO = g.CO, ah = g.ah, aw = g.aw, mh = g.mh, mw = g.mw
    cdef Py_ssize_t nr = min(mw, g.OW - w0)
    cdef double a
    cdef bint first
    cdef floating* t
    # pass 1 over H: tmp[i][r] = sum_q ATh[q][i] gy[h0 + q][w0 + r] (row segments of
    # the nr columns inside the output; the rest are zero)
    for i in range(ah):
        t = tmp + i * mw * CO
        first = True
        for q in range(mh):
            a = g.ath[q * ah + i]
            if a != 0 and h0 + q < g.OH:
                _axpy(t, plane + ((h0 + q) * g.OW + w0) * CO, <floating>a, nr * CO, first)
                first = False
        if first:
            memset(t, 0, nr * CO * sizeof(floating))
    # pass 2 over W: m[i][j] = sum_r ATw[r][j] tmp[i][r]
    for i in range(ah):
        for j in range(aw):
            t = m + (i * aw + j) * pstride
            first = True
            for r in range(nr):
                a = g.atw[r * aw + j]
                if a != 0:
                    _axpy(t, tmp + (i * mw + r) * CO, <floating>a, CO, first)
                    first = False
            if first:
                memset(t, 0, CO * sizeof(floating))


cdef void _in_block(const WG* g, const floating* xt, Py_ssize_t t0, Py_ssize_t nt,
                    Py_ssize_t od0, floating* V, floating* tmp) noexcept nogil:
    """V[p][tt][pl][c] for tiles t0..t0+nt of the unit, planes od0+offd+pl."""
    cdef Py_ssize_t tt, t, img, t2, th, tw, pl, d, p
    cdef Py_ssize_t pstride = g.tc * g.Pl * g.C + PAD, S = g.D * g.H * g.W
    cdef floating* v
    for tt in range(nt):
        t = t0 + tt
        img = t // g.T2
        t2 = t - img * g.T2
        th = t2 // g.TW
        tw = t2 - th * g.TW
        for pl in range(g.Pl):
            d = od0 + g.offd + pl
            v = V + (tt * g.Pl + pl) * g.C
            if 0 <= d < g.D:
                _in_tile(g, xt + (img * S + d * g.H * g.W) * g.C,
                         th * g.mh + g.offh, tw * g.mw + g.offw, v, pstride, tmp)
            else:
                for p in range(g.P):
                    memset(v + p * pstride, 0, g.C * sizeof(floating))


# ---------------------------------------------------------------------------
# one unit of work
# ---------------------------------------------------------------------------
cdef void _fwd_unit(const WG* g, const floating* x, const floating* U, floating* y,
                    floating* wk, Py_ssize_t u) noexcept nogil:
    cdef floating* xt = wk
    cdef floating* yt = xt + g.xt_sz
    cdef floating* V = yt + g.yt_sz
    cdef floating* M = V + g.v_sz
    cdef floating* tmp = M + g.m_sz
    cdef Py_ssize_t n0 = u * g.nb, nimg = min(g.nb, g.N - u * g.nb)
    cdef Py_ssize_t S = g.D * g.H * g.W, SO = g.OD * g.OH * g.OW
    cdef Py_ssize_t i, od0, od, t0, nt, p, grp, kd, tt, t, img, t2, th, tw, ob, tb
    cdef Py_ssize_t vstride = g.tc * g.Pl * g.C + PAD, mstride = g.tc * g.CO + PAD
    cdef Py_ssize_t KC = g.KD * g.CIG, ucs = g.G * KC * g.COG
    for i in range(nimg):
        _to_last(x + (n0 + i) * g.C * S, xt + i * g.C * S, g.C, S)
    for ob in range((g.OD + g.odc - 1) // g.odc):
        od0 = ob * g.odc
        for tb in range((nimg * g.T2 + g.tc - 1) // g.tc):
            t0 = tb * g.tc
            nt = min(g.tc, nimg * g.T2 - t0)
            _in_block(g, xt, t0, nt, od0, V, tmp)
            for od in range(od0, min(od0 + g.odc, g.OD)):
                for p in range(g.P):
                    if g.G == 1:
                        gemm_rm(NoTrans, NoTrans, <int>nt, <int>g.CO, <int>KC, <floating>1,
                                V + p * vstride + (od - od0) * g.C, <int>(g.Pl * g.C),
                                U + p * ucs, <int>g.CO, <floating>0, M + p * mstride, <int>g.CO)
                    else:
                        for grp in range(g.G):
                            for kd in range(g.KD):
                                gemm_rm(NoTrans, NoTrans, <int>nt, <int>g.COG, <int>g.CIG,
                                        <floating>1,
                                        V + p * vstride + (od - od0 + kd) * g.C + grp * g.CIG,
                                        <int>(g.Pl * g.C),
                                        U + p * ucs + (grp * KC + kd * g.CIG) * g.COG, <int>g.COG,
                                        <floating>(1 if kd else 0),
                                        M + p * mstride + grp * g.COG, <int>g.CO)
                for tt in range(nt):
                    t = t0 + tt
                    img = t // g.T2
                    t2 = t - img * g.T2
                    th = t2 // g.TW
                    tw = t2 - th * g.TW
                    _out_tile(g, M + tt * g.CO, mstride,
                              yt + (img * SO + od * g.OH * g.OW) * g.CO,
                              th * g.mh, tw * g.mw, tmp)
    for i in range(nimg):
        _to_first(yt + i * g.CO * SO, y + (n0 + i) * g.CO * SO, g.CO, SO)


cdef void _gw_unit(const WG* g, const floating* x, const floating* gy, floating* dU,
                   floating* wk, Py_ssize_t u) noexcept nogil:
    cdef floating* xt = wk
    cdef floating* gyt = xt + g.xt_sz
    cdef floating* V = gyt + g.yt_sz
    cdef floating* M = V + g.v_sz
    cdef floating* tmp = M + g.m_sz
    cdef Py_ssize_t n0 = u * g.nb, nimg = min(g.nb, g.N - u * g.nb)
    cdef Py_ssize_t S = g.D * g.H * g.W, SO = g.OD * g.OH * g.OW
    cdef Py_ssize_t i, od0, od, t0, nt, p, grp, kd, tt, t, img, t2, th, tw, ob, tb
    cdef Py_ssize_t vstride = g.tc * g.Pl * g.C + PAD, mstride = g.tc * g.CO + PAD
    cdef Py_ssize_t KC = g.KD * g.CIG, ucs = g.G * KC * g.COG
    for i in range(nimg):
        _to_last(x + (n0 + i) * g.C * S, xt + i * g.C * S, g.C, S)
        _to_last(gy + (n0 + i) * g.CO * SO, gyt + i * g.CO * SO, g.CO, SO)
    for ob in range((g.OD + g.odc - 1) // g.odc):
        od0 = ob * g.odc
        for tb in range((nimg * g.T2 + g.tc - 1) // g.tc):
            t0 = tb * g.tc
            nt = min(g.tc, nimg * g.T2 - t0)
            _in_block(g, xt, t0, nt, od0, V, tmp)
            for od in range(od0, min(od0 + g.odc, g.OD)):
                for tt in range(nt):
                    t = t0 + tt
                    img = t // g.T2
                    t2 = t - img * g.T2
                    th = t2 // g.TW
                    tw = t2 - th * g.TW
                    _gy_tile(g, gyt + (img * SO + od * g.OH * g.OW) * g.CO,
                             th * g.mh, tw * g.mw, M + tt * g.CO, mstride, tmp)
                for p in range(g.P):
                    if g.G == 1:
                        gemm_rm(TransT, NoTrans, <int>KC, <int>g.CO, <int>nt, <floating>1,
                                V + p * vstride + (od - od0) * g.C, <int>(g.Pl * g.C),
                                M + p * mstride, <int>g.CO, <floating>1, dU + p * ucs, <int>g.CO)
                    else:
                        for grp in range(g.G):
                            for kd in range(g.KD):
                                gemm_rm(TransT, NoTrans, <int>g.CIG, <int>g.COG, <int>nt,
                                        <floating>1,
                                        V + p * vstride + (od - od0 + kd) * g.C + grp * g.CIG,
                                        <int>(g.Pl * g.C),
                                        M + p * mstride + grp * g.COG, <int>g.CO, <floating>1,
                                        dU + p * ucs + (grp * KC + kd * g.CIG) * g.COG,
                                        <int>g.COG)


# ---------------------------------------------------------------------------
# Python entry points
# ---------------------------------------------------------------------------
cdef int _check(Py_ssize_t have, Py_ssize_t need) except -1:
    if have < need:
        raise ValueError(f"winograd workspace has {have} elements, needs {need}")
    return 0


def forward(const floating[:, :, :, :, ::1] x,   # IN  (N, C, D, H, W), unpadded
            const floating[:, :, :, ::1] U,      # IN  (P, G, KD*CIG, COG) transformed kernel
            floating[:, :, :, :, ::1] y,         # OUT (N, CO, OD, OH, OW)
            floating[::1] work,
            const double[:, ::1] BTh, const double[:, ::1] BTw,
            const double[:, ::1] ATh, const double[:, ::1] ATw,
            tuple offsets, int KD, int groups,
            Py_ssize_t nb, Py_ssize_t tc, Py_ssize_t odc, int mode, int n_threads):
    """y = correlation of x (zero outside) with the kernel whose transform is U.

    ``offsets``: (d, h, w) with input index = output index + tap + offset.
    ``mode`` 1: OpenMP over units on ``n_threads`` threads (BLAS limited to one
    thread by the caller); 0: units in turn, BLAS threaded.
    """
    cdef WG g
    _setup(&g, x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4],
           y.shape[1], y.shape[2], y.shape[3], y.shape[4], groups, KD, offsets,
           BTh, BTw, ATh, ATw, nb, tc, odc, False)
    cdef Py_ssize_t u, slots = n_threads if mode == 1 else 1
    _check(work.shape[0], g.per_thread * slots)
    if U.shape[0] != g.P or U.shape[2] * U.shape[1] != KD * g.C or U.shape[3] * groups != g.CO:
        raise ValueError("winograd: transformed kernel has the wrong shape")
    with nogil:
        if mode == 1:
            for u in prange(g.nunits, num_threads=n_threads, schedule="dynamic"):
                _fwd_unit(&g, &x[0, 0, 0, 0, 0], &U[0, 0, 0, 0], &y[0, 0, 0, 0, 0],
                          &work[0] + threadid() * g.per_thread, u)
        else:
            for u in range(g.nunits):
                _fwd_unit(&g, &x[0, 0, 0, 0, 0], &U[0, 0, 0, 0], &y[0, 0, 0, 0, 0],
                          &work[0], u)


def grad_weight(const floating[:, :, :, :, ::1] x,   # IN  (N, C, D, H, W), unpadded
                const floating[:, :, :, :, ::1] gy,  # IN  (N, CO, OD, OH, OW)
                floating[:, :, :, ::1] dU,           # OUT (P, G, KD*CIG, COG), summed
                floating[::1] work,
                const double[:, ::1] BTh, const double[:, ::1] BTw,
                const double[:, ::1] ATh, const double[:, ::1] ATw,
                tuple offsets, int KD, int groups,
                Py_ssize_t nb, Py_ssize_t tc, Py_ssize_t odc, int mode, int n_threads):
    """dU[p] = sum over tiles of V[p]^T (A gy A^T)[p]; the caller applies G^T . G.

    Deterministic for a fixed thread count: units go to threads round-robin
    (static schedule) and the per-thread partial sums are added in thread order.
    """
    cdef WG g
    _setup(&g, x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4],
           gy.shape[1], gy.shape[2], gy.shape[3], gy.shape[4], groups, KD, offsets,
           BTh, BTw, ATh, ATw, nb, tc, odc, mode == 1)
    cdef Py_ssize_t u, i, t, slots = n_threads if mode == 1 else 1
    cdef Py_ssize_t dsz = g.du_sz
    cdef floating* wk = &work[0]
    cdef floating* out = &dU[0, 0, 0, 0]
    cdef floating s
    _check(work.shape[0], g.per_thread * slots)
    if dU.shape[0] * dU.shape[1] * dU.shape[2] * dU.shape[3] != g.P * KD * g.CIG * g.CO:
        raise ValueError("winograd: dU has the wrong shape")
    with nogil:
        if mode != 1:  # one thread: accumulate straight into dU
            memset(out, 0, g.P * KD * g.CIG * g.CO * sizeof(floating))
            for u in range(g.nunits):
                _gw_unit(&g, &x[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], out, wk, u)
        else:
            # each thread's partial dU is the last part of its slot
            for t in range(slots):
                memset(wk + t * g.per_thread + g.per_thread - dsz, 0, dsz * sizeof(floating))
            for u in prange(g.nunits, num_threads=n_threads, schedule="static", chunksize=1):
                _gw_unit(&g, &x[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0],
                         wk + threadid() * g.per_thread + g.per_thread - dsz,
                         wk + threadid() * g.per_thread, u)
            # fixed order over threads: the same sum for the same thread count
            for i in prange(dsz, num_threads=n_threads, schedule="static"):
                s = 0
                for t in range(slots):
                    s = s + wk[t * g.per_thread + g.per_thread - dsz + i]
                out[i] = s


# ---------------------------------------------------------------------------
# kernel transforms (small: done once per call, in double)
# ---------------------------------------------------------------------------
def kernel_transform(const floating[:, :, :, :, ::1] w,   # (CO, CIG, KD, KH, KW), flipped if flip
                     const double[:, ::1] Gh, const double[:, ::1] Gw,
                     floating[:, :, :, ::1] U, int groups, bint adjoint, int n_threads=1):
    """U[i*aw + j, g, kd*ci + c, co] = (Gh w Gw^T)[i, j] of the effective kernel.

    Forward: the effective kernel is ``w`` (ci = C_in/g, co = C_out/g).
    ``adjoint`` (grad_input): it is ``w`` with in/out channels swapped and every
    spatial axis reversed (ci = C_out/g, co = C_in/g).

    Works on 16 consecutive columns of U at a time, so that every transform
    position is written one cache line at a time (positions lie C*C_out apart,
    often a power of two: writing them one column at a time missed every time).
    """
    cdef Py_ssize_t CO = w.shape[0], CIG = w.shape[1], KD = w.shape[2]
    cdef Py_ssize_t KH = w.shape[3], KW = w.shape[4], COG = CO // groups
    cdef Py_ssize_t ah = Gh.shape[0], aw = Gw.shape[0], i, j, a, b, o, c, kd, grp, cog
    cdef Py_ssize_t row, col0, ci, co, nrows, q, cb, ncb, nblk, K2 = KH * KW
    cdef double[:, ::1] scratch = np.empty((max(1, n_threads), 9 * 16 + 2 * 24 * 16 + 64 * 16))
    cdef double* blk
    cdef double* tk
    cdef double* res
    cdef const floating* w0 = &w[0, 0, 0, 0, 0]
    cdef floating* u0 = &U[0, 0, 0, 0]
    cdef const double* gh = &Gh[0, 0]
    cdef const double* gw = &Gw[0, 0]
    cdef const floating* src
    if Gh.shape[1] != KH or Gw.shape[1] != KW or U.shape[0] != ah * aw or KH * KW > 9:
        raise ValueError("winograd: kernel transform shapes do not match")
    ci = COG if adjoint else CIG
    co = CIG if adjoint else COG
    if U.shape[1] != groups or U.shape[2] != KD * ci or U.shape[3] != co:
        raise ValueError("winograd: U has the wrong shape")
    nrows = KD * ci
    nblk = (co + 15) // 16
    cdef Py_ssize_t pstride = groups * nrows * co
    with nogil:
        for q in prange(groups * nrows * nblk, num_threads=n_threads, schedule="static"):
            blk = &scratch[threadid(), 0]
            tk = blk + 9 * 16
            res = tk + 24 * 16
            grp = q // (nrows * nblk)
            row = (q // nblk) % nrows
            col0 = (q % nblk) * 16
            ncb = min(16, co - col0)
            # blk[a*KW + b][cb]: the effective kernel's taps for the 16 columns
            for cb in range(16):
                for a in range(K2):
                    blk[a * 16 + cb] = 0
            for cb in range(ncb):
                if adjoint:
                    kd = KD - 1 - row // COG
                    cog = row % COG
                    o = grp * COG + cog
                    c = col0 + cb
                    src = w0 + ((o * CIG + c) * KD + kd) * K2
                    for a in range(K2):
                        blk[a * 16 + cb] = src[K2 - 1 - a]
                else:
                    kd = row // CIG
                    c = row % CIG
                    o = grp * COG + col0 + cb
                    src = w0 + ((o * CIG + c) * KD + kd) * K2
                    for a in range(K2):
                        blk[a * 16 + cb] = src[a]
            # tk[a][j] = sum_b Gw[j, b] blk[a][b]; res[i][j] = sum_a Gh[i, a] tk[a][j]
            for a in range(KH):
                for j in range(aw):
                    wg_zero_d(tk + (a * aw + j) * 16, 16)
                    for b in range(KW):
                        wg_axpy16_d(tk + (a * aw + j) * 16, blk + (a * KW + b) * 16, gw[j * KW + b])
            for i in range(ah):
                for j in range(aw):
                    wg_zero_d(res + (i * aw + j) * 16, 16)
                    for a in range(KH):
                        wg_axpy16_d(res + (i * aw + j) * 16, tk + (a * aw + j) * 16, gh[i * KH + a])
            for i in range(ah * aw):
                for cb in range(ncb):
                    u0[i * pstride + (grp * nrows + row) * co + col0 + cb] = <floating>res[i * 16 + cb]


def kernel_untransform(const floating[:, :, :, ::1] dU,  # (P, G, KD*CIG, COG)
                       const double[:, ::1] Gh, const double[:, ::1] Gw,
                       floating[:, :, :, :, ::1] dw, int groups, int n_threads=1):
    """dw[g*COG + co, c, kd] = Gh^T dU[:, :, g, kd*CIG + c, co] Gw (adjoint of the forward)."""
    cdef Py_ssize_t CO = dw.shape[0], CIG = dw.shape[1], KD = dw.shape[2]
    cdef Py_ssize_t KH = dw.shape[3], KW = dw.shape[4], COG = CO // groups
    cdef Py_ssize_t ah = Gh.shape[0], aw = Gw.shape[0], i, j, a, b, o, c, kd, grp, cog
    cdef double s, t
    cdef double[:, ::1] scratch = np.empty((max(1, n_threads), MAXA * MAXA * 16 + 2 * 24 * 16))
    cdef double* tk
    cdef double* blk
    cdef double* res
    if Gh.shape[1] != KH or Gw.shape[1] != KW or dU.shape[0] != ah * aw \
            or dU.shape[2] != KD * CIG or dU.shape[3] != COG:
        raise ValueError("winograd: kernel untransform shapes do not match")
    cdef const floating* du0 = &dU[0, 0, 0, 0]
    cdef floating* dw0 = &dw[0, 0, 0, 0, 0]
    cdef const floating* src
    cdef floating* dst
    cdef const double* gh = &Gh[0, 0]
    cdef const double* gw = &Gw[0, 0]
    cdef Py_ssize_t pstride = groups * KD * CIG * COG
    cdef Py_ssize_t nblk = (COG + 15) // 16, q, cb, cog0, ncb
    with nogil:
        # per block of 16 output channels: read one cache line of each position per
        # (c, kd), write 16 contiguous streams of dw (positions lie a power of two
        # apart: reading them one channel at a time missed in cache on every read)
        for q in prange(groups * nblk, num_threads=n_threads, schedule="static"):
            blk = &scratch[threadid(), 0]
            tk = blk + MAXA * MAXA * 16
            res = tk + 24 * 16
            grp = q // nblk
            cog0 = (q - grp * nblk) * 16
            ncb = min(16, COG - cog0)
            for c in range(CIG):
                for kd in range(KD):
                    src = du0 + ((grp * KD + kd) * CIG + c) * COG + cog0
                    for i in range(ah * aw):
                        for b in range(ncb):
                            blk[i * 16 + b] = src[i * pstride + b]
                    # tk[i][b] = sum_j Gw[j, b] dU[i, j], then dw[a][b] = sum_i Gh[i, a] tk[i][b],
                    # 16 output channels at a time (the vectorized inner loops)
                    for i in range(ah):
                        for b in range(KW):
                            wg_zero_d(tk + (i * KW + b) * 16, 16)
                            for j in range(aw):
                                wg_axpy16_d(tk + (i * KW + b) * 16, blk + (i * aw + j) * 16,
                                            gw[j * KW + b])
                    for a in range(KH):
                        for b in range(KW):
                            wg_zero_d(res + (a * KW + b) * 16, 16)
                            for i in range(ah):
                                wg_axpy16_d(res + (a * KW + b) * 16, tk + (i * KW + b) * 16,
                                            gh[i * KH + a])
                    for cb in range(ncb):
                        o = grp * COG + cog0 + cb
                        dst = dw0 + ((o * CIG + c) * KD + kd) * KH * KW
                        for a in range(KH * KW):
                            dst[a] = <floating>res[a * 16 + cb]
