# cython: language_level=3
"""im2col-GEMM strategy: unfold (vol2col), BLAS GEMM, fold (col2vol).

Kernels work on 5-D C-contiguous arrays (N, C, D, H, W); 1-D and 2-D problems
arrive with singleton axes and the kernel already flipped where ``flip=True``,
so only the strided, dilated, zero-padded cross-correlation and its adjoints
are computed here. The input arrives *unpadded*: the unfold writes the zeros
of the border itself and the fold accumulates only into positions inside the
input, so no padded copy of x or of grad_x exists.

The column matrix of one image has one row per (input channel c, kernel tap k),
row index ``c*K + k`` with ``K = KD*KH*KW``, and one column per output position
(``od*OH*OW + oh*OW + ow``). The rows of group ``g`` are therefore a contiguous
block, and per group

* forward:     Y_g (C_out/g x L)       = W_g (C_out/g x C_in/g*K) @ cols_g
* grad_weight: dW_g (C_out/g x C_in/g*K) += dY_g @ cols_g^T      (over the batch)
* grad_input:  dcols_g                 = W_g^T @ dY_g, then fold (col2vol)

Work is cut into *units*: a run of ``rows`` output rows (``od*OH + oh``, each
OW columns wide) of one image. The caller sizes ``rows`` so one unit's column
block fits the L2 cache. Two parallel modes (:class:`ParallelMode`):

* ``BLAS``: units one after another, unfold / fold serial, GEMMs on all BLAS
  threads;
* ``OMP``: units in an OpenMP loop, each thread with its own slice of
  ``work``, GEMMs with BLAS limited to one thread by the caller.

OpenMP and BLAS are never busy at the same time: running an OpenMP unfold
between multi-threaded GEMMs made the two thread pools spin against each other
(2.7x slower on 2 cores than a serial unfold). No two threads write the same
element: forward units own disjoint output columns; grad_input is parallel
over whole images (the folds of two units of one image overlap); grad_weight
cuts the units into ``B`` fixed contiguous blocks ``[b*U/B, (b+1)*U/B)``, each
with its own partial sum, taken dynamically by the threads (so a descheduled
thread does not hold the others back) and added in block order: the result is
bitwise the same on every call with the same ``B``, whichever thread ran a block.

When the kernel is 1x1x1 with stride 1 and no padding the column matrix *is*
the input (each channel's map, row stride L), so no unfold or fold is done.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

from _blas cimport gemm_rm, NoTrans, TransT
from _openmp cimport FASTCONV_HAVE_OPENMP, omp_get_max_threads
from _geom cimport Geom, make_geom

HAVE_OPENMP = bool(FASTCONV_HAVE_OPENMP)


def omp_max_threads():
    """OpenMP's limit on a team started from the calling thread
    (``omp_get_max_threads``; 1 without OpenMP). fastconv._resources caps the
    default thread count with it."""
    return omp_get_max_threads()


cpdef enum ParallelMode:
    BLAS = 0   # units serial, GEMMs on the BLAS threads
    OMP = 1    # units on OpenMP threads, single-threaded GEMMs


# ---------------------------------------------------------------------------
# unfold / fold of one channel over output rows [r0, r1)
# ---------------------------------------------------------------------------
cdef inline void _col_range(const Geom* g, Py_ssize_t kw, Py_ssize_t* lo,
                            Py_ssize_t* hi) noexcept nogil:
    """Output columns [lo, hi) whose tap kw lands inside the unpadded row."""
    cdef Py_ssize_t off = kw * g.dw - g.pw   # input column of ow = 0
    cdef Py_ssize_t a = 0, b
    if off < 0:
        a = (-off + g.sw - 1) // g.sw
    if g.W - 1 - off < 0:
        b = 0
    else:
        b = (g.W - 1 - off) // g.sw + 1
    if b > g.OW:
        b = g.OW
    if a > g.OW:
        a = g.OW
    if b < a:
        b = a
    lo[0] = a
    hi[0] = b


cdef void _unfold_channel(const floating* xc, floating* dst, Py_ssize_t ld,
                          const Geom* g, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """dst[k, (r - r0)*OW + ow] = x[od*sd + kd*dd - pd, oh*sh + kh*dh - ph, ow*sw + kw*dw - pw],
    zero where that position is in the padding."""
    cdef Py_ssize_t kd, kh, kw, r, od, oh, ow, i_d, i_h, lo, hi, off
    cdef Py_ssize_t OW = g.OW, sw = g.sw
    cdef const floating* src
    cdef floating* d
    cdef floating* drow = dst
    for kd in range(g.KD):
        for kh in range(g.KH):
            for kw in range(g.KW):
                _col_range(g, kw, &lo, &hi)
                off = kw * g.dw - g.pw
                for r in range(r0, r1):
                    od = r // g.OH
                    oh = r - od * g.OH
                    i_d = od * g.sd + kd * g.dd - g.pd
                    i_h = oh * g.sh + kh * g.dh - g.ph
                    d = drow + (r - r0) * OW
                    if i_d < 0 or i_d >= g.D or i_h < 0 or i_h >= g.H or lo == hi:
                        memset(d, 0, OW * sizeof(floating))
                        continue
                    if lo > 0:
                        memset(d, 0, lo * sizeof(floating))
                    if hi < OW:
                        memset(d + hi, 0, (OW - hi) * sizeof(floating))
                    src = xc + (i_d * g.H + i_h) * g.W + (lo * sw + off)
                    if sw == 1:
                        memcpy(d + lo, src, (hi - lo) * sizeof(floating))
                    else:
                        for ow in range(hi - lo):
                            d[lo + ow] = src[ow * sw]
                drow += ld


cdef void _fold_channel(const floating* src, Py_ssize_t ld, floating* gxc,
                        const Geom* g, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Adjoint of _unfold_channel: gxc[...] += src[k, (r - r0)*OW + ow], padding dropped."""
    cdef Py_ssize_t kd, kh, kw, r, od, oh, ow, i_d, i_h, lo, hi, off
    cdef Py_ssize_t OW = g.OW, sw = g.sw
    cdef const floating* srow = src
    cdef const floating* s
    cdef floating* d
    for kd in range(g.KD):
        for kh in range(g.KH):
            for kw in range(g.KW):
                _col_range(g, kw, &lo, &hi)
                off = kw * g.dw - g.pw
                for r in range(r0, r1):
                    od = r // g.OH
                    oh = r - od * g.OH
                    i_d = od * g.sd + kd * g.dd - g.pd
                    i_h = oh * g.sh + kh * g.dh - g.ph
                    if i_d < 0 or i_d >= g.D or i_h < 0 or i_h >= g.H:
                        continue
                    d = gxc + (i_d * g.H + i_h) * g.W + (lo * sw + off)
                    s = srow + (r - r0) * OW + lo
                    if sw == 1:
                        for ow in range(hi - lo):
                            d[ow] += s[ow]
                    else:
                        for ow in range(hi - lo):
                            d[ow * sw] += s[ow]
                srow += ld


# ---------------------------------------------------------------------------
# per-unit GEMMs (one image, output rows [r0, r1)); cols points at column r0*OW
# of a matrix whose rows are ldc apart
# ---------------------------------------------------------------------------
cdef void _fwd_gemms(const floating* cols, Py_ssize_t ldc, const floating* w,
                     floating* y_img, const Geom* g, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    cdef Py_ssize_t grp, CK = g.CIG * g.K, n = (r1 - r0) * g.OW
    for grp in range(g.G):
        gemm_rm(NoTrans, NoTrans, <int>g.COG, <int>n, <int>CK,
                <floating>1, w + grp * g.COG * CK, <int>CK,
                cols + grp * CK * ldc, <int>ldc,
                <floating>0, y_img + grp * g.COG * g.L + r0 * g.OW, <int>g.L)


cdef void _gw_gemms(const floating* cols, Py_ssize_t ldc, const floating* gy_img,
                    floating* gw, const Geom* g, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    cdef Py_ssize_t grp, CK = g.CIG * g.K, n = (r1 - r0) * g.OW
    for grp in range(g.G):
        gemm_rm(NoTrans, TransT, <int>g.COG, <int>CK, <int>n,
                <floating>1, gy_img + grp * g.COG * g.L + r0 * g.OW, <int>g.L,
                cols + grp * CK * ldc, <int>ldc,
                <floating>1, gw + grp * g.COG * CK, <int>CK)


cdef void _gin_gemms(const floating* gy_img, const floating* w, floating* dcols,
                     Py_ssize_t ldc, const Geom* g, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    cdef Py_ssize_t grp, CK = g.CIG * g.K, n = (r1 - r0) * g.OW
    for grp in range(g.G):
        gemm_rm(TransT, NoTrans, <int>CK, <int>n, <int>g.COG,
                <floating>1, w + grp * g.COG * CK, <int>CK,
                gy_img + grp * g.COG * g.L + r0 * g.OW, <int>g.L,
                <floating>0, dcols + grp * CK * ldc, <int>ldc)


# ---------------------------------------------------------------------------
# one unit of each op
# ---------------------------------------------------------------------------
cdef inline bint _no_unfold(const Geom* g) noexcept nogil:
    """1x1x1, stride 1, no padding (before or after: the grids are equal): the
    input is its own column matrix."""
    return (g.pointwise and g.pd == 0 and g.ph == 0 and g.pw == 0
            and g.D == g.OD and g.H == g.OH and g.W == g.OW)


cdef void _unfold_image(const floating* x_img, floating* cols, Py_ssize_t ldc,
                        const Geom* g, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    cdef Py_ssize_t c, CHW = g.D * g.H * g.W
    for c in range(g.C):
        _unfold_channel(x_img + c * CHW, cols + c * g.K * ldc, ldc, g, r0, r1)


cdef void _fold_image(const floating* dcols, Py_ssize_t ldc, floating* gx_img,
                      const Geom* g, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    cdef Py_ssize_t c, CHW = g.D * g.H * g.W
    for c in range(g.C):
        _fold_channel(dcols + c * g.K * ldc, ldc, gx_img + c * CHW, g, r0, r1)


cdef void _fwd_unit(const floating* x, const floating* w, floating* y, floating* cols,
                    const Geom* g, Py_ssize_t n, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    cdef const floating* x_img = x + n * g.C * g.D * g.H * g.W
    cdef floating* y_img = y + n * g.CO * g.L
    cdef Py_ssize_t ldc = (r1 - r0) * g.OW
    if _no_unfold(g):
        _fwd_gemms(x_img + r0 * g.OW, g.L, w, y_img, g, r0, r1)
        return
    _unfold_image(x_img, cols, ldc, g, r0, r1)
    _fwd_gemms(cols, ldc, w, y_img, g, r0, r1)


cdef void _gw_unit(const floating* x, const floating* gy, floating* gw, floating* cols,
                   const Geom* g, Py_ssize_t n, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    cdef const floating* x_img = x + n * g.C * g.D * g.H * g.W
    cdef const floating* gy_img = gy + n * g.CO * g.L
    cdef Py_ssize_t ldc = (r1 - r0) * g.OW
    if _no_unfold(g):
        _gw_gemms(x_img + r0 * g.OW, g.L, gy_img, gw, g, r0, r1)
        return
    _unfold_image(x_img, cols, ldc, g, r0, r1)
    _gw_gemms(cols, ldc, gy_img, gw, g, r0, r1)


cdef void _gin_image(const floating* gy, const floating* w, floating* gx, floating* cols,
                     const Geom* g, Py_ssize_t n, Py_ssize_t rows) noexcept nogil:
    """All units of image n (their folds overlap, so one thread does them all)."""
    cdef Py_ssize_t r0, r1, ldc
    cdef const floating* gy_img = gy + n * g.CO * g.L
    cdef floating* gx_img = gx + n * g.C * g.D * g.H * g.W
    r0 = 0
    if _no_unfold(g):
        # the input grid is the output grid: W^T @ dY lands straight in grad_input
        _gin_gemms(gy_img, w, gx_img, g.L, g, 0, g.R)
        return
    memset(gx_img, 0, g.C * g.D * g.H * g.W * sizeof(floating))
    while r0 < g.R:
        r1 = min(r0 + rows, g.R)
        ldc = (r1 - r0) * g.OW
        _gin_gemms(gy_img, w, cols, ldc, g, r0, r1)
        _fold_image(cols, ldc, gx_img, g, r0, r1)
        r0 = r1


# ---------------------------------------------------------------------------
# argument checks (cheap, before nogil: bounds checking is off in the kernels)
# ---------------------------------------------------------------------------
cdef Geom _checked_geom(const Py_ssize_t* xs, const Py_ssize_t* ws, const Py_ssize_t* ys,
                        tuple stride, tuple dilation, tuple padding, int groups,
                        Py_ssize_t rows, int n_threads) except *:
    """Geom of (input xs, weight ws, output ys) or ValueError when they disagree."""
    cdef Geom g
    cdef Py_ssize_t i, span, size
    cdef tuple pads
    if len(stride) != 3 or len(dilation) != 3 or len(padding) != 3:
        raise ValueError("stride, dilation and padding must have 3 entries")
    if groups < 1 or ws[0] % groups or xs[1] != ws[1] * groups:
        raise ValueError(f"groups={groups} does not fit input channels {xs[1]}, "
                         f"weight shape {tuple(ws[i] for i in range(5))}")
    if xs[0] != ys[0] or ys[1] != ws[0]:
        raise ValueError(f"output shape {tuple(ys[i] for i in range(5))} does not match "
                         f"input {tuple(xs[i] for i in range(5))} and weight "
                         f"{tuple(ws[i] for i in range(5))}")
    if rows < 1 or n_threads < 1:
        raise ValueError(f"rows ({rows}) and n_threads ({n_threads}) must be >= 1")
    for i in range(3):
        pads = padding[i]
        if stride[i] < 1 or dilation[i] < 1 or pads[0] < 0 or pads[1] < 0:
            raise ValueError(f"bad stride {stride}, dilation {dilation} or padding {padding}")
        span = dilation[i] * (ws[2 + i] - 1) + 1
        size = xs[2 + i] + pads[0] + pads[1]
        if size < span or ys[2 + i] != (size - span) // stride[i] + 1:
            raise ValueError(f"output shape {tuple(ys[i] for i in range(5))} is not the "
                             f"convolution of input {tuple(xs[i] for i in range(5))} with "
                             f"weight {tuple(ws[i] for i in range(5))}, stride {stride}, "
                             f"dilation {dilation}, padding {padding}")
    g = make_geom(xs, ws, ys, stride, dilation, groups)
    g.pd, g.ph, g.pw = padding[0][0], padding[1][0], padding[2][0]
    return g


cdef int _check_work(Py_ssize_t have, Py_ssize_t need) except -1:
    if have < need:
        raise ValueError(f"im2col workspace has {have} elements, needs {need}")
    return 0


cdef Py_ssize_t _per_slot(const Geom* g, Py_ssize_t rows) noexcept:
    return 0 if _no_unfold(g) else g.C * g.K * rows * g.OW


# ---------------------------------------------------------------------------
# Python entry points
# ---------------------------------------------------------------------------
def forward(const floating[:, :, :, :, ::1] x,  # IN  (N, C_in, D, H, W), unpadded
            const floating[:, :, :, :, ::1] w,  # IN  (C_out, C_in/g, KD, KH, KW)
            floating[:, :, :, :, ::1] y,        # OUT (N, C_out, OD, OH, OW)
            floating[::1] work,                 # scratch, >= slots*C_in*K*rows*OW
            tuple stride, tuple dilation, tuple padding, int groups,
            Py_ssize_t rows, ParallelMode mode, int n_threads):
    """y = strided dilated cross-correlation of zero-padded x with w (see module doc).

    ``padding``: three (before, after) pairs. ``rows``: output rows per unit;
    ``mode``: :class:`ParallelMode`. ``work`` needs C_in*K*rows*OW elements per
    slot (one slot in BLAS mode, ``n_threads`` in OMP mode; none when there is
    no unfold).
    """
    cdef Geom g = _checked_geom(x.shape, w.shape, y.shape, stride, dilation, padding,
                                groups, rows, n_threads)
    cdef Py_ssize_t u, n, r0, per = _per_slot(&g, rows)
    cdef Py_ssize_t nch = (g.R + rows - 1) // rows, U = g.N * nch
    _check_work(work.shape[0], per * (n_threads if mode == OMP else 1))
    if U == 0 or g.L == 0:
        return
    cdef floating* wk = &work[0] if work.shape[0] else NULL
    with nogil:
        if mode == OMP:
            for u in prange(U, num_threads=n_threads, schedule="dynamic"):
                n = u // nch
                r0 = (u - n * nch) * rows
                _fwd_unit(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &y[0, 0, 0, 0, 0],
                          wk + threadid() * per, &g, n, r0, min(r0 + rows, g.R))
        else:
            for u in range(U):
                n = u // nch
                r0 = (u - n * nch) * rows
                _fwd_unit(&x[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &y[0, 0, 0, 0, 0],
                          wk, &g, n, r0, min(r0 + rows, g.R))


def grad_input(const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
               const floating[:, :, :, :, ::1] w,   # IN  (C_out, C_in/g, KD, KH, KW)
               floating[:, :, :, :, ::1] gx,        # OUT (N, C_in, D, H, W), unpadded
               floating[::1] work,
               tuple stride, tuple dilation, tuple padding, int groups,
               Py_ssize_t rows, ParallelMode mode, int n_threads):
    """gx = adjoint of forward w.r.t. the unpadded input (GEMM, then col2vol)."""
    cdef Geom g = _checked_geom(gx.shape, w.shape, gy.shape, stride, dilation, padding,
                                groups, rows, n_threads)
    cdef Py_ssize_t n, per = _per_slot(&g, rows)
    _check_work(work.shape[0], per * (n_threads if mode == OMP else 1))
    if g.N == 0 or g.C * g.D * g.H * g.W == 0:
        return
    if g.L == 0:
        gx[...] = 0
        return
    cdef floating* wk = &work[0] if work.shape[0] else NULL
    with nogil:
        if mode == OMP:
            for n in prange(g.N, num_threads=n_threads, schedule="dynamic"):
                _gin_image(&gy[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &gx[0, 0, 0, 0, 0],
                           wk + threadid() * per, &g, n, rows)
        else:
            for n in range(g.N):
                _gin_image(&gy[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &gx[0, 0, 0, 0, 0],
                           wk, &g, n, rows)


def grad_weight(const floating[:, :, :, :, ::1] x,   # IN  (N, C_in, D, H, W), unpadded
                const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
                floating[:, :, :, :, ::1] gw,        # OUT (C_out, C_in/g, KD, KH, KW)
                floating[::1] work,                  # cols (+ partial sums in OMP mode)
                tuple stride, tuple dilation, tuple padding, int groups,
                Py_ssize_t rows, ParallelMode mode, int n_threads, Py_ssize_t blocks=0):
    """gw = sum over the batch of dY_g @ cols_g^T (see module doc).

    In OMP mode the units are cut into ``blocks`` (default ``n_threads``)
    fixed contiguous ranges, each summed into its own partial gradient (block
    0 into gw itself) by whichever thread takes it, then the partial sums are
    added in block order: the result depends on ``blocks`` only, never on the
    thread schedule. ``work`` holds ``n_threads`` column slots, then
    ``blocks - 1`` partial sums.
    """
    cdef Geom g = _checked_geom(x.shape, gw.shape, gy.shape, stride, dilation, padding,
                                groups, rows, n_threads)
    cdef Py_ssize_t t, i, j, u, u0, u1, n, r0, per = _per_slot(&g, rows)
    cdef Py_ssize_t nch = (g.R + rows - 1) // rows, U = g.N * nch
    cdef Py_ssize_t wsz = g.CO * g.CIG * g.K
    cdef Py_ssize_t T = n_threads if mode == OMP else 1
    cdef Py_ssize_t nblk = (blocks if blocks > 0 else T) if mode == OMP else 1
    if nblk > U:
        nblk = max(U, 1)
    if T > nblk:
        T = nblk
    _check_work(work.shape[0], per * T + wsz * (nblk - 1))
    cdef floating* wk = &work[0] if work.shape[0] else NULL
    cdef floating* part = wk + T * per if wk != NULL else NULL
    cdef floating* out = &gw[0, 0, 0, 0, 0] if wsz else NULL
    cdef floating* acc
    if wsz == 0:
        return
    with nogil:
        if nblk > 1:
            for t in prange(nblk, num_threads=T, schedule="dynamic"):
                acc = out if t == 0 else part + (t - 1) * wsz
                memset(acc, 0, wsz * sizeof(floating))
                u0 = t * U // nblk
                u1 = (t + 1) * U // nblk
                for u in range(u0, u1):
                    n = u // nch
                    r0 = (u - n * nch) * rows
                    _gw_unit(&x[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], acc,
                             wk + threadid() * per, &g, n, r0, min(r0 + rows, g.R))
            for i in prange(wsz, num_threads=T, schedule="static"):
                for j in range(1, nblk):
                    out[i] = out[i] + part[(j - 1) * wsz + i]
        else:
            memset(out, 0, wsz * sizeof(floating))
            for u in range(U):
                n = u // nch
                r0 = (u - n * nch) * rows
                _gw_unit(&x[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], out,
                         wk, &g, n, r0, min(r0 + rows, g.R))


# ---------------------------------------------------------------------------
# For the tests only (nothing in the package calls them): the unfold and fold of
# one image, entry points to test the two kernels as adjoints
# (tests/strategies/test_halo.py).
# ---------------------------------------------------------------------------
def _unfold_for_tests(const floating[:, :, :, :, ::1] x,  # IN  (1, C, D, H, W), unpadded
                      floating[:, ::1] cols,              # OUT (C*K, L)
                      tuple kernel, tuple out_spatial, tuple stride, tuple dilation,
                      tuple padding):
    """For tests: cols = the column matrix of image 0 of x (zero where a tap is in
    the padding)."""
    cdef Py_ssize_t ws[5]
    cdef Py_ssize_t ys[5]
    cdef Geom g
    ws[0], ws[1], ws[2], ws[3], ws[4] = 1, x.shape[1], kernel[0], kernel[1], kernel[2]
    ys[0], ys[1], ys[2], ys[3], ys[4] = x.shape[0], 1, out_spatial[0], out_spatial[1], out_spatial[2]
    g = _checked_geom(x.shape, ws, ys, stride, dilation, padding, 1, 1, 1)
    if x.shape[0] != 1 or cols.shape[0] != g.C * g.K or cols.shape[1] != g.L:
        raise ValueError(f"unfold: x must hold one image and cols be ({g.C * g.K}, {g.L}), "
                         f"got {x.shape[0]} images and ({cols.shape[0]}, {cols.shape[1]})")
    if g.L and g.C * g.K:
        _unfold_image(&x[0, 0, 0, 0, 0], &cols[0, 0], g.L, &g, 0, g.R)


def _fold_for_tests(const floating[:, ::1] cols,          # IN  (C*K, L)
                    floating[:, :, :, :, ::1] gx,         # OUT (1, C, D, H, W), unpadded
                    tuple kernel, tuple out_spatial, tuple stride, tuple dilation,
                    tuple padding):
    """For tests: gx = the adjoint of :func:`_unfold_for_tests` applied to cols
    (overwrites gx)."""
    cdef Py_ssize_t ws[5]
    cdef Py_ssize_t ys[5]
    cdef Geom g
    ws[0], ws[1], ws[2], ws[3], ws[4] = 1, gx.shape[1], kernel[0], kernel[1], kernel[2]
    ys[0], ys[1], ys[2], ys[3], ys[4] = gx.shape[0], 1, out_spatial[0], out_spatial[1], out_spatial[2]
    g = _checked_geom(gx.shape, ws, ys, stride, dilation, padding, 1, 1, 1)
    if gx.shape[0] != 1 or cols.shape[0] != g.C * g.K or cols.shape[1] != g.L:
        raise ValueError(f"fold: gx must hold one image and cols be ({g.C * g.K}, {g.L}), "
                         f"got {gx.shape[0]} images and ({cols.shape[0]}, {cols.shape[1]})")
    gx[...] = 0
    if g.L and g.C * g.K:
        _fold_image(&cols[0, 0], g.L, &gx[0, 0, 0, 0, 0], &g, 0, g.R)
