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

1. transposes its images to channel-last (``xt``, (D, H, W, C) per image; a
   3-D forward pass only the planes of the current block), so every transform
   below is a loop over channels that the compiler vectorizes (whole vectors
   of channels: the register-resident transforms of ``_winograd_tf.h``);
2. per block of ``tc`` tiles and ``odc`` output planes, transforms the input
   tiles (V[p][tile][plane][c], p = i*aw + j a transform position), runs one
   GEMM per transform position (and output plane) through scipy's BLAS, and
   transforms the result straight into a channel-last output (``yt``);
3. transposes ``yt`` back to (C_out, OD, OH, OW) (3-D forward: per block).

The transformed block (V, M) is sized by the caller to stay in cache: the
transforms never round-trip through memory. grad_input is this forward pass
on grad_output with the flipped, transposed kernel (the caller passes its
transform and offsets). grad_weight runs the adjoint: dM = A gy A^T per tile,
dU[p] += V[p]^T dM[p], one partial dU per thread, summed in thread order.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memset

from collections import namedtuple

import numpy as np

from _blas cimport gemm_rm, NoTrans, TransT
from _openmp cimport FASTCONV_HAVE_OPENMP

HAVE_OPENMP = bool(FASTCONV_HAVE_OPENMP)

cdef enum:
    MAXA = 8      # largest alpha (F(6,3))
    # elements between transform positions' blocks beyond their size: a power-of-two
    # stride would put all 36-64 position streams of a tile transform in one cache set
    PAD = 16
    # the same between the positions of U and dU (C_in*C_out apart: a power of two
    # for most layers, so a block's 16-64 position writes all fell in one cache set)
    UPAD = 32

#: elements between transform positions of U beyond C_in*C_out/groups*KD
U_PAD = UPAD


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
    Py_ssize_t ups                    # position stride of U / dU
    int fast_in, fast_out             # vector lanes of the register-resident tile
    #                                   transforms (_winograd_tf.h); 0: generic
    bint bp                           # 3-D forward pass: channel-last planes per block
    double bth[MAXA * MAXA]
    double btw[MAXA * MAXA]
    double ath[MAXA * MAXA]
    double atw[MAXA * MAXA]


cdef int _setup(WG* g, Py_ssize_t N, Py_ssize_t C, Py_ssize_t D, Py_ssize_t H, Py_ssize_t W,
                Py_ssize_t CO, Py_ssize_t OD, Py_ssize_t OH, Py_ssize_t OW,
                int groups, int KD, tuple offsets,
                const double[:, ::1] BTh, const double[:, ::1] BTw,
                const double[:, ::1] ATh, const double[:, ::1] ATw,
                Py_ssize_t nb, Py_ssize_t tc, Py_ssize_t odc, bint gw,
                bint dbl, bint fwd) except -1:
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
    _copy_matrices(g, BTh, BTw, ATh, ATw)
    g.TH = (OH + g.mh - 1) // g.mh
    g.TW = (OW + g.mw - 1) // g.mw
    g.T2 = g.TH * g.TW
    g.nb = nb if D == 1 else 1
    g.odc = min(odc, OD)
    g.Pl = g.odc + KD - 1
    g.tc = tc
    g.nunits = (N + g.nb - 1) // g.nb
    g.bp = D > 1 and fwd
    sizes = unit_sizes(channels=C, in_spatial=D * H * W, out_channels=CO,
                       out_spatial=OD * OH * OW, positions=g.P,
                       tmp_per_channel=g.ah * max(g.aw, g.mw), images=g.nb, tiles=tc,
                       planes=g.Pl, kernel_depth=KD, groups=groups, dw_partials=gw,
                       block_plane=H * W if g.bp else 0, out_block_plane=OH * OW)
    g.xt_sz, g.yt_sz, g.v_sz, g.m_sz, g.tmp_sz, g.du_sz = sizes
    g.per_thread = sum(sizes)
    g.ups = KD * g.CIG * CO + UPAD
    g.fast_in, g.fast_out = _fast_sides(g, dbl)
    return 0


cdef void _copy_matrices(WG* g, const double[:, ::1] BTh, const double[:, ::1] BTw,
                         const double[:, ::1] ATh, const double[:, ::1] ATw):
    """B^T row-major and A^T transposed (column i of A^T contiguous) per axis into
    ``g`` (its ah, aw, mh, mw set, at most MAXA)."""
    cdef Py_ssize_t i, j
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


cdef (int, int) _fast_sides(const WG* g, bint dbl):
    """Vector lanes of the (input, output) side's tile transforms in _winograd_tf.h
    (0: generic): square tiles with this module's matrices and whole vectors of
    channels on that side."""
    cdef bint sq = (_fast_tf and g.ah == g.aw and g.mh == g.mw
                    and wg_tf_match(<int>g.ah, g.bth, g.ath) and wg_tf_match(<int>g.aw, g.btw, g.atw))
    if not sq:
        return 0, 0
    if dbl:
        return wg_tf_lanes_d(g.C), wg_tf_lanes_d(g.CO)
    return wg_tf_lanes_f(g.C), wg_tf_lanes_f(g.CO)


def fast_sides(const double[:, ::1] BTh, const double[:, ::1] BTw,
               const double[:, ::1] ATh, const double[:, ::1] ATw,
               Py_ssize_t C, Py_ssize_t CO, dtype):
    """(input, output): vector lanes of the register-resident tile transforms of a
    pass from C to CO channels, 0 where the generic ones run (tests check the fast
    path is taken where it should be)."""
    cdef WG g
    g.ah, g.aw, g.mh, g.mw, g.C, g.CO = BTh.shape[0], BTw.shape[0], ATh.shape[0], ATw.shape[0], C, CO
    if g.ah > MAXA or g.aw > MAXA:
        return False, False
    _copy_matrices(&g, BTh, BTw, ATh, ATw)
    return _fast_sides(&g, np.dtype(dtype) == np.float64)


cdef bint _fast_tf = True


cdef extern from "_kernels.h" nogil:
    int fc_select(int level)


def select_level(int level_id):
    """Run this module's register kernels at level ``level_id`` (0 baseline, 1
    avx2, 2 avx512; fastconv._cpu chooses); ValueError if not available."""
    if fc_select(level_id) != 0:
        raise ValueError(f"instruction-set level {level_id} is not available here")


def _tf_tables_match_for_tests(const double[:, ::1] BT, const double[:, ::1] AT):
    """For tests only (nothing in the package calls it): whether (BT, AT) are the
    constant tables of _winograd_tf.h."""
    if BT.shape[0] != BT.shape[1] or AT.shape[1] != BT.shape[0] or BT.shape[0] > MAXA:
        return False
    return bool(wg_tf_match(<int>BT.shape[0], &BT[0, 0], &AT[0, 0]))


def fast_transforms(enable=None):
    """Whether the register-resident tile transforms run where they apply (the
    previous setting; ``enable`` sets it: tests compare both paths)."""
    global _fast_tf
    old = bool(_fast_tf)
    if enable is not None:
        _fast_tf = bool(enable)
    return old


#: Scratch elements of one thread (:func:`unit_sizes`), in the order :func:`_parts`
#: cuts them: ``xt`` channel-last input, ``yt`` channel-last output (grad_output in
#: grad_weight), ``v`` transformed input tiles, ``m`` their products with U, ``tmp``
#: the tile temporary, ``du`` the thread's partial sum of dU (0 without one).
UnitSizes = namedtuple("UnitSizes", "xt yt v m tmp du")


def unit_sizes(*, channels, in_spatial, out_channels, out_spatial, positions,
               tmp_per_channel, images, tiles, planes, kernel_depth, groups, dw_partials,
               block_plane=0, out_block_plane=0):
    """Scratch elements of one thread (:data:`UnitSizes`) for one unit of work.

    Parameters
    ----------
    channels, out_channels : int
        Channels of the pass's input and output (C, CO).
    in_spatial, out_spatial : int
        Elements of one input and one output image (D*H*W, OD*OH*OW).
    positions : int
        Transform positions of a tile (alpha_h * alpha_w).
    tmp_per_channel : int
        Elements per channel of the tile transforms' temporary.
    images : int
        Images per unit (1 when D > 1).
    tiles : int
        Tiles per block.
    planes : int
        Input planes per block (output planes per block + kernel_depth - 1).
    kernel_depth : int
        Kernel taps along D, stacked into the GEMMs' inner dimension.
    groups : int
    dw_partials : bool
        grad_weight on several threads: each keeps a partial sum of dU.
    block_plane, out_block_plane : int
        Elements of one input and one output plane, when a 3-D forward pass keeps
        only a block's planes channel-last (``planes`` input planes,
        ``planes - kernel_depth + 1`` output planes); 0: whole images.
    """
    C, CO, P, Pl, KD = channels, out_channels, positions, planes, kernel_depth
    if block_plane:
        xt, yt = Pl * C * block_plane, (Pl - KD + 1) * CO * out_block_plane
    else:
        xt, yt = images * C * in_spatial, images * CO * out_spatial
    return UnitSizes(xt, yt, P * (tiles * Pl * C + PAD), P * (tiles * CO + PAD),
                     tmp_per_channel * max(C, CO),
                     P * (KD * (C // groups) * CO + UPAD) if dw_partials else 0)


cdef inline void _parts(const WG* g, floating* wk, floating** xt, floating** yt,
                        floating** V, floating** M, floating** tmp) noexcept nogil:
    """One thread's scratch ``wk`` cut into the parts of :func:`unit_sizes`, in its
    order: channel-last input and output (or grad_output), V, M, the tile temporary."""
    xt[0] = wk
    yt[0] = xt[0] + g.xt_sz
    V[0] = yt[0] + g.yt_sz
    M[0] = V[0] + g.v_sz
    tmp[0] = M[0] + g.m_sz


cdef extern from "_kernels.h" nogil:
    int wg_tf_match(int alpha, const double* bt, const double* at)
    void wg_in_tile_f8(int A, const float* plane, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                       Py_ssize_t h0, Py_ssize_t w0, float* v, Py_ssize_t ps)
    void wg_out_tile_f8(int A, const float* m, Py_ssize_t ps, float* plane, Py_ssize_t OH,
                        Py_ssize_t OW, Py_ssize_t CO, Py_ssize_t h0, Py_ssize_t w0)
    void wg_gy_tile_f8(int A, const float* plane, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t CO,
                       Py_ssize_t h0, Py_ssize_t w0, float* m, Py_ssize_t ps)
    int wg_tf_lanes_f(Py_ssize_t n)
    int wg_tf_lanes_d(Py_ssize_t n)
    void wg_in_tile_f(int A, const float* plane, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                      Py_ssize_t h0, Py_ssize_t w0, float* v, Py_ssize_t ps)
    void wg_in_tile_d(int A, const double* plane, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                      Py_ssize_t h0, Py_ssize_t w0, double* v, Py_ssize_t ps)
    void wg_out_tile_f(int A, const float* m, Py_ssize_t ps, float* plane, Py_ssize_t OH,
                       Py_ssize_t OW, Py_ssize_t CO, Py_ssize_t h0, Py_ssize_t w0)
    void wg_out_tile_d(int A, const double* m, Py_ssize_t ps, double* plane, Py_ssize_t OH,
                       Py_ssize_t OW, Py_ssize_t CO, Py_ssize_t h0, Py_ssize_t w0)
    void wg_gy_tile_f(int A, const float* plane, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t CO,
                      Py_ssize_t h0, Py_ssize_t w0, float* m, Py_ssize_t ps)
    void wg_gy_tile_d(int A, const double* plane, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t CO,
                      Py_ssize_t h0, Py_ssize_t w0, double* m, Py_ssize_t ps)


cdef extern from "_kernels.h" nogil:
    void wg_transpose_ld_f(const float* src, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t lds,
                           float* dst, Py_ssize_t ldd)
    void wg_transpose_ld_d(const double* src, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t lds,
                           double* dst, Py_ssize_t ldd)
    void wg_axpy_f(float* d, const float* s, float a, Py_ssize_t n, int first)
    void wg_axpy_d(double* d, const double* s, double a, Py_ssize_t n, int first)
    void wg_transpose_f(const float* src, Py_ssize_t rows, Py_ssize_t cols, float* dst)
    void wg_transpose_d(const double* src, Py_ssize_t rows, Py_ssize_t cols, double* dst)


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


cdef inline void _tr_ld(const floating* src, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t lds,
                        floating* dst, Py_ssize_t ldd) noexcept nogil:
    """dst[j*ldd + i] = src[i*lds + j] (i < rows, j < cols)."""
    if floating is float:
        wg_transpose_ld_f(src, rows, cols, lds, dst, ldd)
    else:
        wg_transpose_ld_d(src, rows, cols, lds, dst, ldd)


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
    if g.fast_in:
        if floating is float:
            if g.fast_in == 16:
                wg_in_tile_f(<int>ah, plane, g.H, g.W, C, h0, w0, v, pstride)
            else:
                wg_in_tile_f8(<int>ah, plane, g.H, g.W, C, h0, w0, v, pstride)
        else:
            wg_in_tile_d(<int>ah, plane, g.H, g.W, C, h0, w0, v, pstride)
        return
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
    if g.fast_out:
        if floating is float:
            if g.fast_out == 16:
                wg_out_tile_f(<int>ah, m, pstride, plane, g.OH, g.OW, CO, h0, w0)
            else:
                wg_out_tile_f8(<int>ah, m, pstride, plane, g.OH, g.OW, CO, h0, w0)
        else:
            wg_out_tile_d(<int>ah, m, pstride, plane, g.OH, g.OW, CO, h0, w0)
        return
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
    if g.fast_out:
        if floating is float:
            if g.fast_out == 16:
                wg_gy_tile_f(<int>ah, plane, g.OH, g.OW, CO, h0, w0, m, pstride)
            else:
                wg_gy_tile_f8(<int>ah, plane, g.OH, g.OW, CO, h0, w0, m, pstride)
        else:
            wg_gy_tile_d(<int>ah, plane, g.OH, g.OW, CO, h0, w0, m, pstride)
        return
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
                    Py_ssize_t od0, floating* V, floating* tmp, Py_ssize_t d0) noexcept nogil:
    """V[p][tt][pl][c] for tiles t0..t0+nt of the unit, planes od0+offd+pl (``xt``
    starts at plane ``d0``)."""
    cdef Py_ssize_t tt
    for tt in range(nt):
        _in_one(g, xt, t0 + tt, tt, od0, V, tmp, d0)


cdef void _in_one(const WG* g, const floating* xt, Py_ssize_t t, Py_ssize_t tt,
                  Py_ssize_t od0, floating* V, floating* tmp, Py_ssize_t d0) noexcept nogil:
    """Tile t of the unit into row tt of the block V (all its planes)."""
    cdef Py_ssize_t img, t2, th, tw, pl, d, p
    cdef Py_ssize_t pstride = g.tc * g.Pl * g.C + PAD, S = g.D * g.H * g.W
    cdef floating* v
    img = t // g.T2
    t2 = t - img * g.T2
    th = t2 // g.TW
    tw = t2 - th * g.TW
    for pl in range(g.Pl):
        d = od0 + g.offd + pl
        v = V + (tt * g.Pl + pl) * g.C
        if 0 <= d < g.D:
            _in_tile(g, xt + (img * S + (d - d0) * g.H * g.W) * g.C,
                     th * g.mh + g.offh, tw * g.mw + g.offw, v, pstride, tmp)
        else:
            for p in range(g.P):
                memset(v + p * pstride, 0, g.C * sizeof(floating))


# ---------------------------------------------------------------------------
# one unit of work
# ---------------------------------------------------------------------------
cdef void _fwd_unit(const WG* g, const floating* x, const floating* U, floating* y,
                    floating* wk, Py_ssize_t u) noexcept nogil:
    cdef floating *xt, *yt, *V, *M, *tmp
    _parts(g, wk, &xt, &yt, &V, &M, &tmp)
    cdef Py_ssize_t n0 = u * g.nb, nimg = min(g.nb, g.N - u * g.nb)
    cdef Py_ssize_t S = g.D * g.H * g.W, SO = g.OD * g.OH * g.OW
    cdef Py_ssize_t i, od0, od, t0, nt, p, grp, kd, tt, t, img, t2, th, tw, ob, tb
    cdef Py_ssize_t vstride = g.tc * g.Pl * g.C + PAD, mstride = g.tc * g.CO + PAD
    cdef Py_ssize_t KC = g.KD * g.CIG, ucs = g.ups
    cdef Py_ssize_t d0 = 0, d1, y0 = 0, HW = g.H * g.W, OHW = g.OH * g.OW
    if not g.bp:
        for i in range(nimg):
            _to_last(x + (n0 + i) * g.C * S, xt + i * g.C * S, g.C, S)
    for ob in range((g.OD + g.odc - 1) // g.odc):
        od0 = ob * g.odc
        if g.bp:
            # one 3-D image (nb = 1): only this block's input planes channel-last,
            # its output planes transposed back as soon as they are done (both stay
            # in the caches; whole-image buffers went through memory: 2 + 4 MB per
            # image of conv3d (16, 32^3) -> 32)
            d0 = max(0, od0 + g.offd)
            d1 = min(g.D, od0 + g.offd + g.Pl)
            y0 = od0
            if d1 > d0:
                _tr_ld(x + n0 * g.C * S + d0 * HW, g.C, (d1 - d0) * HW, S, xt, g.C)
        for tb in range((nimg * g.T2 + g.tc - 1) // g.tc):
            t0 = tb * g.tc
            nt = min(g.tc, nimg * g.T2 - t0)
            _in_block(g, xt, t0, nt, od0, V, tmp, d0)
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
                              yt + (img * SO + (od - y0) * OHW) * g.CO,
                              th * g.mh, tw * g.mw, tmp)
        if g.bp:
            _tr_ld(yt, (min(od0 + g.odc, g.OD) - od0) * OHW, g.CO, g.CO,
                   y + n0 * g.CO * SO + od0 * OHW, SO)
    if not g.bp:
        for i in range(nimg):
            _to_first(yt + i * g.CO * SO, y + (n0 + i) * g.CO * SO, g.CO, SO)


cdef void _gw_unit(const WG* g, const floating* x, const floating* gy, floating* dU,
                   floating* wk, Py_ssize_t u) noexcept nogil:
    cdef floating *xt, *gyt, *V, *M, *tmp
    _parts(g, wk, &xt, &gyt, &V, &M, &tmp)
    cdef Py_ssize_t n0 = u * g.nb, nimg = min(g.nb, g.N - u * g.nb)
    cdef Py_ssize_t S = g.D * g.H * g.W, SO = g.OD * g.OH * g.OW
    cdef Py_ssize_t i, od0, od, t0, nt, p, grp, kd, tt, t, img, t2, th, tw, ob, tb
    cdef Py_ssize_t vstride = g.tc * g.Pl * g.C + PAD, mstride = g.tc * g.CO + PAD
    cdef Py_ssize_t KC = g.KD * g.CIG, ucs = g.ups
    for i in range(nimg):
        _to_last(x + (n0 + i) * g.C * S, xt + i * g.C * S, g.C, S)
        _to_last(gy + (n0 + i) * g.CO * SO, gyt + i * g.CO * SO, g.CO, SO)
    for ob in range((g.OD + g.odc - 1) // g.odc):
        od0 = ob * g.odc
        for tb in range((nimg * g.T2 + g.tc - 1) // g.tc):
            t0 = tb * g.tc
            nt = min(g.tc, nimg * g.T2 - t0)
            _in_block(g, xt, t0, nt, od0, V, tmp, 0)
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
# mode 2: every image in one unit, each phase parallel on its own axis
# ---------------------------------------------------------------------------
# Small maps (a few tiles per image) with many channels: per-image units gave
# GEMMs of a few dozen rows, and BLAS re-packs U (C_in x C_out per position) on
# every call -- as much time as the multiply itself. Here one block holds the
# tiles of all images (or as many as the budget allows), so each position's U is
# packed once per block: layout changes in parallel over images, tile transforms
# over tiles, and the GEMMs over transform positions (single-threaded BLAS).
# 2-D only (D == KD == 1). Deterministic: each output element has one owner.
cdef void _fwd_all(const WG* g, const floating* x, const floating* U, floating* y,
                   floating* wk, int nth) noexcept nogil:
    cdef floating *xt, *yt, *V, *M, *tmp0
    _parts(g, wk, &xt, &yt, &V, &M, &tmp0)
    cdef Py_ssize_t S = g.H * g.W, SO = g.OH * g.OW, nbi = g.tc // g.T2
    cdef Py_ssize_t i, i0, ni, p, t2, th, tw, grp, img, blk
    cdef Py_ssize_t vstride = g.tc * g.C + PAD, mstride = g.tc * g.CO + PAD
    # three parallel regions per block of nbi images (each barrier waits for the
    # slowest thread: few regions and dynamic schedules keep a loaded machine
    # from stalling them)
    for blk in range((g.N + nbi - 1) // nbi):
        i0 = blk * nbi
        ni = min(nbi, g.N - i0)
        for i in prange(ni, num_threads=nth, schedule="dynamic"):
            img = i0 + i
            _to_last(x + img * g.C * S, xt + img * g.C * S, g.C, S)
            for t2 in range(g.T2):
                _in_one(g, xt, img * g.T2 + t2, i * g.T2 + t2, 0, V,
                        tmp0 + threadid() * g.tmp_sz, 0)
        for p in prange(g.P, num_threads=nth, schedule="dynamic"):
            for grp in range(g.G):
                gemm_rm(NoTrans, NoTrans, <int>(ni * g.T2), <int>g.COG, <int>g.CIG,
                        <floating>1, V + p * vstride + grp * g.CIG, <int>g.C,
                        U + p * g.ups + grp * g.CIG * g.COG, <int>g.COG, <floating>0,
                        M + p * mstride + grp * g.COG, <int>g.CO)
        for i in prange(ni, num_threads=nth, schedule="dynamic"):
            img = i0 + i
            for t2 in range(g.T2):
                th = t2 // g.TW
                tw = t2 - th * g.TW
                _out_tile(g, M + (i * g.T2 + t2) * g.CO, mstride, yt + img * SO * g.CO,
                          th * g.mh, tw * g.mw, tmp0 + threadid() * g.tmp_sz)
            _to_first(yt + img * g.CO * SO, y + img * g.CO * SO, g.CO, SO)


cdef void _gw_all(const WG* g, const floating* x, const floating* gy, floating* dU,
                  floating* wk, int nth) noexcept nogil:
    cdef floating *xt, *gyt, *V, *M, *tmp0
    _parts(g, wk, &xt, &gyt, &V, &M, &tmp0)
    cdef Py_ssize_t S = g.H * g.W, SO = g.OH * g.OW, nbi = g.tc // g.T2
    cdef Py_ssize_t i, i0, ni, p, t2, th, tw, grp, img, blk
    cdef Py_ssize_t vstride = g.tc * g.C + PAD, mstride = g.tc * g.CO + PAD
    for blk in range((g.N + nbi - 1) // nbi):
        i0 = blk * nbi
        ni = min(nbi, g.N - i0)
        for i in prange(ni, num_threads=nth, schedule="dynamic"):
            img = i0 + i
            _to_last(x + img * g.C * S, xt + img * g.C * S, g.C, S)
            _to_last(gy + img * g.CO * SO, gyt + img * g.CO * SO, g.CO, SO)
            for t2 in range(g.T2):
                th = t2 // g.TW
                tw = t2 - th * g.TW
                _in_one(g, xt, img * g.T2 + t2, i * g.T2 + t2, 0, V,
                        tmp0 + threadid() * g.tmp_sz, 0)
                _gy_tile(g, gyt + img * SO * g.CO, th * g.mh, tw * g.mw,
                         M + (i * g.T2 + t2) * g.CO, mstride, tmp0 + threadid() * g.tmp_sz)
        for p in prange(g.P, num_threads=nth, schedule="dynamic"):
            for grp in range(g.G):
                gemm_rm(TransT, NoTrans, <int>g.CIG, <int>g.COG, <int>(ni * g.T2), <floating>1,
                        V + p * vstride + grp * g.CIG, <int>g.C,
                        M + p * mstride + grp * g.COG, <int>g.CO,
                        <floating>(1 if i0 else 0),
                        dU + p * g.ups + grp * g.CIG * g.COG, <int>g.COG)


# ---------------------------------------------------------------------------
# Python entry points
# ---------------------------------------------------------------------------
cdef int _check_u(Py_ssize_t[8] shape, Py_ssize_t[8] strides, Py_ssize_t item) except -1:
    """U / dU: rows and channels contiguous inside a position, any position stride."""
    if strides[3] != item or strides[2] != shape[3] * item or strides[1] != shape[2] * strides[2] \
            or strides[0] < shape[1] * strides[1]:
        raise ValueError("winograd: U must be contiguous within each transform position")
    return 0


cdef int _check_all(const WG* g) except -1:
    if g.D != 1 or g.KD != 1 or g.OD != 1 or g.nb < g.N or g.tc % g.T2 or g.tc < g.T2:
        raise ValueError("winograd mode 2 needs a 2-D problem, nb >= N and whole images "
                         "per block")
    return 0


cdef int _check(Py_ssize_t have, Py_ssize_t need) except -1:
    if have < need:
        raise ValueError(f"winograd workspace has {have} elements, needs {need}")
    return 0


def forward(const floating[:, :, :, :, ::1] x,   # IN  (N, C, D, H, W), unpadded
            const floating[:, :, :, :] U,        # IN  (P, G, KD*CIG, COG) transformed kernel
            floating[:, :, :, :, ::1] y,         # OUT (N, CO, OD, OH, OW)
            floating[::1] work,
            const double[:, ::1] BTh, const double[:, ::1] BTw,
            const double[:, ::1] ATh, const double[:, ::1] ATw,
            tuple offsets, int KD, int groups,
            Py_ssize_t nb, Py_ssize_t tc, Py_ssize_t odc, int mode, int n_threads):
    """y = correlation of x (zero outside) with the kernel whose transform is U.

    ``offsets``: (d, h, w) with input index = output index + tap + offset.
    ``mode`` 1: OpenMP over units on ``n_threads`` threads (BLAS limited to one
    thread by the caller); 0: units in turn, BLAS threaded; 2: all images in one
    unit (``nb`` = N), phases parallel over images, tiles and positions (2-D only,
    BLAS limited to one thread by the caller).
    """
    cdef WG g
    _setup(&g, x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4],
           y.shape[1], y.shape[2], y.shape[3], y.shape[4], groups, KD, offsets,
           BTh, BTw, ATh, ATw, nb, tc, odc, False,
           floating is double, True)
    cdef Py_ssize_t u, slots = n_threads if mode == 1 else 1
    if mode == 2:
        _check_all(&g)
        _check(work.shape[0], g.per_thread + (n_threads - 1) * g.tmp_sz)
    else:
        _check(work.shape[0], g.per_thread * slots)
    _check_u(U.shape, U.strides, sizeof(floating))
    if U.shape[0] != g.P or U.shape[2] * U.shape[1] != KD * g.C or U.shape[3] * groups != g.CO \
            or U.strides[0] != g.ups * sizeof(floating) or U.strides[1] != U.shape[2] * U.strides[2]:
        raise ValueError("winograd: transformed kernel has the wrong shape or strides")
    with nogil:
        if mode == 2:
            _fwd_all(&g, &x[0, 0, 0, 0, 0], &U[0, 0, 0, 0], &y[0, 0, 0, 0, 0], &work[0],
                     n_threads)
        elif mode == 1:
            for u in prange(g.nunits, num_threads=n_threads, schedule="dynamic"):
                _fwd_unit(&g, &x[0, 0, 0, 0, 0], &U[0, 0, 0, 0], &y[0, 0, 0, 0, 0],
                          &work[0] + threadid() * g.per_thread, u)
        else:
            for u in range(g.nunits):
                _fwd_unit(&g, &x[0, 0, 0, 0, 0], &U[0, 0, 0, 0], &y[0, 0, 0, 0, 0],
                          &work[0], u)


def grad_weight(const floating[:, :, :, :, ::1] x,   # IN  (N, C, D, H, W), unpadded
                const floating[:, :, :, :, ::1] gy,  # IN  (N, CO, OD, OH, OW)
                floating[:, :, :, :] dU,             # OUT (P, G, KD*CIG, COG), summed
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
           BTh, BTw, ATh, ATw, nb, tc, odc, mode == 1,
           floating is double, False)
    cdef Py_ssize_t u, i, t, slots = n_threads if mode == 1 else 1
    cdef Py_ssize_t dsz = g.du_sz
    cdef floating* wk = &work[0]
    cdef floating* out = &dU[0, 0, 0, 0]
    cdef floating s
    if mode == 2:
        _check_all(&g)
        _check(work.shape[0], g.per_thread + (n_threads - 1) * g.tmp_sz)
    else:
        _check(work.shape[0], g.per_thread * slots)
    _check_u(dU.shape, dU.strides, sizeof(floating))
    if dU.shape[0] * dU.shape[1] * dU.shape[2] * dU.shape[3] != g.P * KD * g.CIG * g.CO \
            or dU.strides[0] != g.ups * sizeof(floating) \
            or dU.strides[1] != dU.shape[2] * dU.strides[2]:
        raise ValueError("winograd: dU has the wrong shape or strides")
    with nogil:
        if mode == 2:  # each position's dU has one owner: no partial sums
            _gw_all(&g, &x[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], out, wk, n_threads)
        elif mode != 1:  # one thread: accumulate straight into dU
            for i in range(g.P):
                memset(out + i * g.ups, 0, KD * g.CIG * g.CO * sizeof(floating))
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
            for i in prange(dsz - UPAD, num_threads=n_threads, schedule="static"):
                s = 0
                for t in range(slots):
                    s = s + wk[t * g.per_thread + g.per_thread - dsz + i]
                out[i] = s


# ---------------------------------------------------------------------------
# kernel transforms (once per call, in double; blocks of 16 x 16 channels)
# ---------------------------------------------------------------------------
cdef extern from "_kernels.h" nogil:
    void wg_kt_block_f(const float* w, Py_ssize_t CIG, Py_ssize_t COG, Py_ssize_t KD,
                       Py_ssize_t KH, Py_ssize_t KW, const double* gh, Py_ssize_t ah,
                       const double* gw, Py_ssize_t aw, int adjoint, Py_ssize_t grp,
                       Py_ssize_t o0, Py_ssize_t no, Py_ssize_t c0, Py_ssize_t nc,
                       float* U, Py_ssize_t pstride, double* scratch, int stream)
    void wg_kt_block_d(const double* w, Py_ssize_t CIG, Py_ssize_t COG, Py_ssize_t KD,
                       Py_ssize_t KH, Py_ssize_t KW, const double* gh, Py_ssize_t ah,
                       const double* gw, Py_ssize_t aw, int adjoint, Py_ssize_t grp,
                       Py_ssize_t o0, Py_ssize_t no, Py_ssize_t c0, Py_ssize_t nc,
                       double* U, Py_ssize_t pstride, double* scratch, int stream)
    void wg_sfence()
    void wg_kut_block_f(const float* dU, Py_ssize_t CIG, Py_ssize_t COG, Py_ssize_t KD,
                        Py_ssize_t KH, Py_ssize_t KW, const double* gh, Py_ssize_t ah,
                        const double* gw, Py_ssize_t aw, Py_ssize_t grp,
                        Py_ssize_t o0, Py_ssize_t no, Py_ssize_t c0, Py_ssize_t nc,
                        float* dw, Py_ssize_t pstride, double* scratch)
    void wg_kut_block_d(const double* dU, Py_ssize_t CIG, Py_ssize_t COG, Py_ssize_t KD,
                        Py_ssize_t KH, Py_ssize_t KW, const double* gh, Py_ssize_t ah,
                        const double* gw, Py_ssize_t aw, Py_ssize_t grp,
                        Py_ssize_t o0, Py_ssize_t no, Py_ssize_t c0, Py_ssize_t nc,
                        double* dw, Py_ssize_t pstride, double* scratch)


#: U larger than this is written with non-temporal stores
STREAM_BYTES = 16 << 20


def kt_scratch(Py_ssize_t KD, Py_ssize_t K2, int n_threads):
    """Doubles of scratch the (un)transforms use (one block per thread)."""
    return max(1, n_threads) * (256 * KD * K2 + 2048)


def kernel_transform(const floating[:, :, :, :, ::1] w,   # (CO, CIG, KD, KH, KW)
                     const double[:, ::1] Gh, const double[:, ::1] Gw,
                     floating[:, :, :, :] U, int groups, bint adjoint, int n_threads=1):
    """U[i*aw + j, g, kd*ci + c, co] = (Gh w Gw^T)[i, j] of the effective kernel.

    Forward: the effective kernel is ``w`` (ci = C_in/g, co = C_out/g).
    ``adjoint`` (grad_input): it is ``w`` with in/out channels swapped and every
    spatial axis reversed (ci = C_out/g, co = C_in/g).

    Blocks of 16 output x 16 input channels in parallel: a block reads 16
    contiguous runs of w and writes 16 channels (one cache line of float32) per
    transform position and row of U.
    """
    cdef Py_ssize_t CO = w.shape[0], CIG = w.shape[1], KD = w.shape[2]
    cdef Py_ssize_t KH = w.shape[3], KW = w.shape[4], COG = CO // groups
    cdef Py_ssize_t ah = Gh.shape[0], aw = Gw.shape[0], ci, co, q, grp, ob, cb
    if Gh.shape[1] != KH or Gw.shape[1] != KW or U.shape[0] != ah * aw or KH * KW > 9 \
            or ah > MAXA or aw > MAXA:
        raise ValueError("winograd: kernel transform shapes do not match")
    ci = COG if adjoint else CIG
    co = CIG if adjoint else COG
    if U.shape[1] != groups or U.shape[2] != KD * ci or U.shape[3] != co:
        raise ValueError("winograd: U has the wrong shape")
    _check_u(U.shape, U.strides, sizeof(floating))
    cdef Py_ssize_t nob = (COG + 15) // 16, ncb = (CIG + 15) // 16
    cdef Py_ssize_t per = kt_scratch(KD, KH * KW, 1)
    cdef double[::1] scratch = np.empty(kt_scratch(KD, KH * KW, n_threads))
    cdef Py_ssize_t pstride = U.strides[0] // sizeof(floating)
    # non-temporal stores when U is far larger than the caches
    cdef int stream = U.shape[0] * pstride * sizeof(floating) > STREAM_BYTES
    with nogil:
        for q in prange(groups * nob * ncb, num_threads=n_threads, schedule="dynamic"):
            grp = q // (nob * ncb)
            ob = (q // ncb) % nob
            cb = q % ncb
            if floating is float:
                wg_kt_block_f(&w[0, 0, 0, 0, 0], CIG, COG, KD, KH, KW, &Gh[0, 0], ah,
                              &Gw[0, 0], aw, adjoint, grp, ob * 16, min(16, COG - ob * 16),
                              cb * 16, min(16, CIG - cb * 16), &U[0, 0, 0, 0], pstride,
                              &scratch[0] + threadid() * per, stream)
                wg_sfence()
            else:
                wg_kt_block_d(&w[0, 0, 0, 0, 0], CIG, COG, KD, KH, KW, &Gh[0, 0], ah,
                              &Gw[0, 0], aw, adjoint, grp, ob * 16, min(16, COG - ob * 16),
                              cb * 16, min(16, CIG - cb * 16), &U[0, 0, 0, 0], pstride,
                              &scratch[0] + threadid() * per, stream)


def kernel_untransform(const floating[:, :, :, :] dU,  # (P, G, KD*CIG, COG)
                       const double[:, ::1] Gh, const double[:, ::1] Gw,
                       floating[:, :, :, :, ::1] dw, int groups, int n_threads=1):
    """dw[g*COG + co, c, kd] = Gh^T dU[:, :, g, kd*CIG + c, co] Gw (adjoint of the forward)."""
    cdef Py_ssize_t CO = dw.shape[0], CIG = dw.shape[1], KD = dw.shape[2]
    cdef Py_ssize_t KH = dw.shape[3], KW = dw.shape[4], COG = CO // groups
    cdef Py_ssize_t ah = Gh.shape[0], aw = Gw.shape[0], q, grp, ob, cb
    if Gh.shape[1] != KH or Gw.shape[1] != KW or dU.shape[0] != ah * aw \
            or dU.shape[2] != KD * CIG or dU.shape[3] != COG or KH * KW > 9 \
            or ah > MAXA or aw > MAXA:
        raise ValueError("winograd: kernel untransform shapes do not match")
    _check_u(dU.shape, dU.strides, sizeof(floating))
    cdef Py_ssize_t nob = (COG + 15) // 16, ncb = (CIG + 15) // 16
    cdef Py_ssize_t per = kt_scratch(KD, KH * KW, 1)
    cdef double[::1] scratch = np.empty(kt_scratch(KD, KH * KW, n_threads))
    cdef Py_ssize_t pstride = dU.strides[0] // sizeof(floating)
    with nogil:
        for q in prange(groups * nob * ncb, num_threads=n_threads, schedule="dynamic"):
            grp = q // (nob * ncb)
            ob = (q // ncb) % nob
            cb = q % ncb
            if floating is float:
                wg_kut_block_f(&dU[0, 0, 0, 0], CIG, COG, KD, KH, KW, &Gh[0, 0], ah,
                               &Gw[0, 0], aw, grp, ob * 16, min(16, COG - ob * 16),
                               cb * 16, min(16, CIG - cb * 16), &dw[0, 0, 0, 0, 0], pstride,
                               &scratch[0] + threadid() * per)
            else:
                wg_kut_block_d(&dU[0, 0, 0, 0], CIG, COG, KD, KH, KW, &Gh[0, 0], ah,
                               &Gw[0, 0], aw, grp, ob * 16, min(16, COG - ob * 16),
                               cb * 16, min(16, CIG - cb * 16), &dw[0, 0, 0, 0, 0], pstride,
                               &scratch[0] + threadid() * per)
