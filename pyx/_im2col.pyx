# cython: language_level=3
"""im2col-GEMM strategy: unfold (vol2col), BLAS GEMM, fold (col2vol).

Kernels work on 5-D C-contiguous arrays (N, C, D, H, W); 1-D and 2-D problems
arrive with singleton axes, the input already zero-padded and the kernel already
flipped where ``flip=True``, so only the *valid*, strided, dilated
cross-correlation and its adjoints are computed here.

The column matrix of one image has one row per (input channel c, kernel tap k),
row index ``c*K + k`` with ``K = KD*KH*KW``, and one column per output position
(``od*OH*OW + oh*OW + ow``). The rows of group ``g`` are therefore a contiguous
block, and per group

* forward:     Y_g (C_out/g x L)       = W_g (C_out/g x C_in/g*K) @ cols_g
* grad_weight: dW_g (C_out/g x C_in/g*K) += dY_g @ cols_g^T      (over the batch)
* grad_input:  dcols_g                 = W_g^T @ dY_g, then fold (col2vol)

Work is chunked so the column buffer (``work``, allocated by the Python caller
from the memory budget) is never exceeded: a chunk is a run of ``rows`` output
rows (``od*OH + oh``, each OW columns wide) of one image. The caller picks

* mode 0 ("blas"): images and chunks one after another, unfold / fold serial,
  GEMMs on all BLAS threads (used when there are fewer images than threads);
* mode 1 ("omp"): images in an OpenMP loop, each thread with its own slice of
  ``work``, GEMMs with BLAS limited to one thread by the caller.

OpenMP and BLAS are never busy at the same time: running an OpenMP unfold
between multi-threaded GEMMs made the two thread pools spin against each other
(2.7x slower on 2 cores than a serial unfold). No two threads write the same
element: per-image outputs are disjoint, fold only writes the image its thread
owns, and grad_weight in mode 1 accumulates into per-thread partial sums that
are reduced afterwards.

When the kernel is 1x1x1 with stride 1 the column matrix *is* the input (each
channel's map, row stride L), so no unfold or fold is done at all.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

from _blas cimport gemm_rm, NoTrans, TransT
from _openmp cimport FASTCONV_HAVE_OPENMP
from _geom cimport Geom, make_geom

HAVE_OPENMP = bool(FASTCONV_HAVE_OPENMP)


# ---------------------------------------------------------------------------
# unfold / fold of one channel over output rows [r0, r1)
# ---------------------------------------------------------------------------
cdef void _unfold_channel(const floating* xc, floating* dst, Py_ssize_t ld,
                          const Geom* g, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """dst[k, (r - r0)*OW + ow] = xc[od*sd + kd*dd, oh*sh + kh*dh, ow*sw + kw*dw]."""
    cdef Py_ssize_t kd, kh, kw, r, od, oh, ow, OW = g.OW, sw = g.sw
    cdef const floating* src
    cdef floating* d
    cdef floating* drow = dst
    for kd in range(g.KD):
        for kh in range(g.KH):
            for kw in range(g.KW):
                for r in range(r0, r1):
                    od = r // g.OH
                    oh = r - od * g.OH
                    src = xc + ((od * g.sd + kd * g.dd) * g.H
                                + oh * g.sh + kh * g.dh) * g.W + kw * g.dw
                    d = drow + (r - r0) * OW
                    if sw == 1:
                        memcpy(d, src, OW * sizeof(floating))
                    else:
                        for ow in range(OW):
                            d[ow] = src[ow * sw]
                drow += ld


cdef void _fold_channel(const floating* src, Py_ssize_t ld, floating* gxc,
                        const Geom* g, Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    """Adjoint of _unfold_channel: gxc[...] += src[k, (r - r0)*OW + ow]."""
    cdef Py_ssize_t kd, kh, kw, r, od, oh, ow, OW = g.OW, sw = g.sw
    cdef const floating* srow = src
    cdef const floating* s
    cdef floating* d
    for kd in range(g.KD):
        for kh in range(g.KH):
            for kw in range(g.KW):
                for r in range(r0, r1):
                    od = r // g.OH
                    oh = r - od * g.OH
                    d = gxc + ((od * g.sd + kd * g.dd) * g.H
                               + oh * g.sh + kh * g.dh) * g.W + kw * g.dw
                    s = srow + (r - r0) * OW
                    if sw == 1:
                        for ow in range(OW):
                            d[ow] += s[ow]
                    else:
                        for ow in range(OW):
                            d[ow * sw] += s[ow]
                srow += ld


# ---------------------------------------------------------------------------
# per-chunk GEMMs (one image, output rows [r0, r1))
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
                     Py_ssize_t ldc, floating beta, const Geom* g,
                     Py_ssize_t r0, Py_ssize_t r1) noexcept nogil:
    cdef Py_ssize_t grp, CK = g.CIG * g.K, n = (r1 - r0) * g.OW
    for grp in range(g.G):
        gemm_rm(TransT, NoTrans, <int>CK, <int>n, <int>g.COG,
                <floating>1, w + grp * g.COG * CK, <int>CK,
                gy_img + grp * g.COG * g.L + r0 * g.OW, <int>g.L,
                beta, dcols + grp * CK * ldc, <int>ldc)


# ---------------------------------------------------------------------------
# one image, all its row chunks (mode 1 body; mode 0 parallelizes inside)
# ---------------------------------------------------------------------------
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


cdef void _fwd_image(const floating* x, const floating* w, floating* y, floating* cols,
                     const Geom* g, Py_ssize_t n, Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t r0, r1, ldc
    cdef const floating* x_img = x + n * g.C * g.D * g.H * g.W
    cdef floating* y_img = y + n * g.CO * g.L
    if g.direct:
        _fwd_gemms(x_img, g.L, w, y_img, g, 0, g.R)
        return
    r0 = 0
    while r0 < g.R:
        r1 = min(r0 + rows, g.R)
        ldc = (r1 - r0) * g.OW
        _unfold_image(x_img, cols, ldc, g, r0, r1)
        _fwd_gemms(cols, ldc, w, y_img, g, r0, r1)
        r0 = r1


cdef void _gw_image(const floating* x, const floating* gy, floating* gw, floating* cols,
                    const Geom* g, Py_ssize_t n, Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t r0, r1, ldc
    cdef const floating* x_img = x + n * g.C * g.D * g.H * g.W
    cdef const floating* gy_img = gy + n * g.CO * g.L
    if g.direct:
        _gw_gemms(x_img, g.L, gy_img, gw, g, 0, g.R)
        return
    r0 = 0
    while r0 < g.R:
        r1 = min(r0 + rows, g.R)
        ldc = (r1 - r0) * g.OW
        _unfold_image(x_img, cols, ldc, g, r0, r1)
        _gw_gemms(cols, ldc, gy_img, gw, g, r0, r1)
        r0 = r1


cdef void _gin_image(const floating* gy, const floating* w, floating* gx, floating* cols,
                     const Geom* g, Py_ssize_t n, Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t r0, r1, ldc
    cdef const floating* gy_img = gy + n * g.CO * g.L
    cdef floating* gx_img = gx + n * g.C * g.D * g.H * g.W
    if g.direct:
        # padded input == output grid: W^T @ dY lands straight in grad_input
        _gin_gemms(gy_img, w, gx_img, g.L, <floating>0, g, 0, g.R)
        return
    memset(gx_img, 0, g.C * g.D * g.H * g.W * sizeof(floating))
    r0 = 0
    while r0 < g.R:
        r1 = min(r0 + rows, g.R)
        ldc = (r1 - r0) * g.OW
        _gin_gemms(gy_img, w, cols, ldc, <floating>0, g, r0, r1)
        _fold_image(cols, ldc, gx_img, g, r0, r1)
        r0 = r1


# ---------------------------------------------------------------------------
# Python entry points
# ---------------------------------------------------------------------------
cdef int _check_work(Py_ssize_t have, Py_ssize_t need) except -1:
    if have < need:
        raise ValueError(f"im2col workspace has {have} elements, needs {need}")
    return 0


def forward(const floating[:, :, :, :, ::1] xp,  # IN  (N, C_in, D, H, W), padded
            const floating[:, :, :, :, ::1] w,   # IN  (C_out, C_in/g, KD, KH, KW)
            floating[:, :, :, :, ::1] y,         # OUT (N, C_out, OD, OH, OW)
            floating[::1] work,                  # scratch, >= slots*C_in*K*rows*OW
            tuple stride, tuple dilation, int groups,
            Py_ssize_t rows, int mode, int n_threads):
    """y = valid strided dilated cross-correlation of xp with w (see module doc).

    ``rows``: output rows per chunk; ``mode`` 0 = serial loop, GEMMs on the BLAS
    threads; 1 = OpenMP over images on ``n_threads`` threads, one column buffer
    each (the caller limits BLAS to one thread). ``work`` needs
    C_in*K*rows*OW elements per buffer (none for a 1x1x1 stride-1 kernel).
    """
    cdef Geom g = make_geom(xp.shape, w.shape, y.shape, stride, dilation, groups)
    cdef Py_ssize_t n, per = 0 if g.direct else g.C * g.K * rows * g.OW
    cdef floating* wk = &work[0] if work.shape[0] else NULL
    _check_work(work.shape[0], per * (n_threads if mode == 1 else 1))
    with nogil:
        if mode == 1:
            for n in prange(g.N, num_threads=n_threads, schedule="dynamic"):
                _fwd_image(&xp[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &y[0, 0, 0, 0, 0],
                           wk + threadid() * per, &g, n, rows)
        else:
            for n in range(g.N):
                _fwd_image(&xp[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &y[0, 0, 0, 0, 0],
                           wk, &g, n, rows)


def grad_input(const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
               const floating[:, :, :, :, ::1] w,   # IN  (C_out, C_in/g, KD, KH, KW)
               floating[:, :, :, :, ::1] gxp,       # OUT (N, C_in, D, H, W), padded
               floating[::1] work,
               tuple stride, tuple dilation, int groups,
               Py_ssize_t rows, int mode, int n_threads):
    """gxp = adjoint of forward w.r.t. the padded input (GEMM, then col2vol)."""
    cdef Geom g = make_geom(gxp.shape, w.shape, gy.shape, stride, dilation, groups)
    cdef Py_ssize_t n, per = 0 if g.direct else g.C * g.K * rows * g.OW
    cdef floating* wk = &work[0] if work.shape[0] else NULL
    _check_work(work.shape[0], per * (n_threads if mode == 1 else 1))
    with nogil:
        if mode == 1:
            for n in prange(g.N, num_threads=n_threads, schedule="dynamic"):
                _gin_image(&gy[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &gxp[0, 0, 0, 0, 0],
                           wk + threadid() * per, &g, n, rows)
        else:
            for n in range(g.N):
                _gin_image(&gy[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &gxp[0, 0, 0, 0, 0],
                           wk, &g, n, rows)


def grad_weight(const floating[:, :, :, :, ::1] xp,  # IN  (N, C_in, D, H, W), padded
                const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
                floating[:, :, :, :, ::1] gw,        # OUT (C_out, C_in/g, KD, KH, KW)
                floating[::1] work,                  # cols (+ partial sums in mode 1)
                tuple stride, tuple dilation, int groups,
                Py_ssize_t rows, int mode, int n_threads):
    """gw = sum over the batch of dY_g @ cols_g^T (see module doc)."""
    cdef Geom g = make_geom(xp.shape, gw.shape, gy.shape, stride, dilation, groups)
    cdef Py_ssize_t n, t, i, per = 0 if g.direct else g.C * g.K * rows * g.OW
    cdef Py_ssize_t wsz = g.CO * g.CIG * g.K
    cdef floating* wk = &work[0] if work.shape[0] else NULL
    cdef floating* part
    cdef floating* out = &gw[0, 0, 0, 0, 0]
    cdef floating s
    if mode == 1:
        _check_work(work.shape[0], (per + wsz) * n_threads)
    else:
        _check_work(work.shape[0], per)
    with nogil:
        if mode == 1:
            part = wk + n_threads * per
            memset(part, 0, n_threads * wsz * sizeof(floating))
            for n in prange(g.N, num_threads=n_threads, schedule="dynamic"):
                _gw_image(&xp[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], part + threadid() * wsz,
                          wk + threadid() * per, &g, n, rows)
            for i in prange(wsz, num_threads=n_threads, schedule="static"):
                s = 0
                for t in range(n_threads):
                    s = s + part[t * wsz + i]
                out[i] = s
        else:
            memset(out, 0, wsz * sizeof(floating))
            for n in range(g.N):
                _gw_image(&xp[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], out,
                          wk, &g, n, rows)
