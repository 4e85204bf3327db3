# cython: language_level=3
"""FFT strategy kernels: the loops around ``scipy.fft`` transforms.

The transforms themselves are done by ``scipy.fft.rfftn / irfftn`` (pocketfft)
in :mod:`fastconv._strategies.fft`. This module does everything in between:

* ``pack``: copy a 5-D real array ``src[A, B, Q0, Q1, Q2]`` into a zeroed
  transform buffer ``dst[F0, F1, F2, a, B]`` with zero insertion
  ``dst[o + q*e, a, b] = src[a0 + a, b, q]``. One routine does the convolution's
  zero padding (offset o) and the padding to the transform size, the move to *frequency-major* layout (the spatial axes
  first, so the spectrum of every frequency is one small contiguous
  (batch, channels) matrix), the kernel dilation (e = dilation) and the stride
  dilation of grad_output (e = stride).
* ``unpack``: the inverse, with subsampling: ``dst[a0 + a, b, q] = src[o + q*s, a, b]``
  -- cropping to the valid output, stride subsampling (forward), cropping the
  padding off the input gradient (grad_input) and taking every dilation-th kernel tap (grad_weight).
* The spectral channel contractions, per frequency f and group:

  - forward:     Y[f, n, o]  = sum_c X[f, n, c] * conj(W[f, o, c])
  - grad_input:  GX[f, n, c] = sum_o GY[f, n, o] * W[f, o, c]
  - grad_weight: GW[f, o, c] (+)= sum_n X[f, n, c] * conj(GY[f, n, o])

  Cross-correlation is computed as multiplication by the *conjugate* spectrum
  of the (unreversed, dilated) kernel; no reversed copy of the kernel is made,
  and a transform length >= the padded input suffices (the valid outputs never
  wrap around).

Spectra arrive as real arrays viewing interleaved (re, im) pairs, so a single
``floating`` fused type covers complex64 (float) and complex128 (double).
Each contraction has a hand loop and a batched-GEMM version (one cgemm/zgemm
per frequency from ``scipy.linalg.cython_blas``); ``use_gemm`` selects.
Parallelism is over frequencies in the contractions (every frequency owns its
output matrix) and over (row, block of lanes) in the moves, so no two threads
write the same element.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from scipy.linalg.cython_blas cimport cgemm, zgemm

from _openmp cimport FASTCONV_HAVE_OPENMP

HAVE_OPENMP = bool(FASTCONV_HAVE_OPENMP)

# q2 tile of the layout moves (16 floats = one cache line of source)
cdef enum:
    TILE = 16


# --------------------------------------------------------------------------
# layout moves
# --------------------------------------------------------------------------
cdef int _check_move(tuple step, tuple offset, Py_ssize_t a0, Py_ssize_t nA, Py_ssize_t A,
                     Py_ssize_t B, Py_ssize_t Bs, const Py_ssize_t* Q, const Py_ssize_t* F,
                     int n_threads, str what) except -1:
    """ValueError unless every index a move touches is inside both arrays."""
    cdef Py_ssize_t i, e, o
    if len(step) != 3 or len(offset) != 3:
        raise ValueError(f"{what}: step and offset must have 3 entries")
    if n_threads < 1 or a0 < 0 or a0 + nA > A or B != Bs:
        raise ValueError(f"{what}: lanes [{a0}, {a0 + nA}) of {A}, {B} vs {Bs} channels, "
                         f"n_threads={n_threads}")
    for i in range(3):
        e, o = step[i], offset[i]
        if e < 1 or o < 0 or (Q[i] > 0 and o + (Q[i] - 1) * e >= F[i]):
            raise ValueError(f"{what}: {Q[i]} positions with step {e} at offset {o} "
                             f"do not fit a transform axis of {F[i]}")
    return 0


def pack(const floating[:, :, :, :, ::1] src,  # IN  (A, B, Q0, Q1, Q2)
         floating[:, :, :, :, ::1] dst,        # OUT (F0, F1, F2, nA, B), zeroed
         Py_ssize_t a0, tuple step, tuple offset, int n_threads, bint zero=False):
    """``dst[o0 + q0*e0, o1 + q1*e1, o2 + q2*e2, a, b] = src[a0 + a, b, q0, q1, q2]``.

    ``offset`` (o) puts an unpadded input at its padding offset inside the
    zeroed transform buffer; ``step`` (e) inserts zeros (dilation, stride).
    ``zero=True`` zeroes ``dst`` first, on all threads (a buffer kept between
    calls holds the last call's values; a single-threaded memset of several
    MiB would be a serial phase).
    """
    cdef Py_ssize_t nA = dst.shape[3], B = dst.shape[4]
    cdef Py_ssize_t Q[3]
    cdef Py_ssize_t Fs[3]
    Q[0], Q[1], Q[2] = src.shape[2], src.shape[3], src.shape[4]
    Fs[0], Fs[1], Fs[2] = dst.shape[0], dst.shape[1], dst.shape[2]
    _check_move(step, offset, a0, nA, src.shape[0], B, src.shape[1], Q, Fs, n_threads, "pack")
    cdef Py_ssize_t e0 = step[0], e1 = step[1], e2 = step[2]
    cdef Py_ssize_t o0 = offset[0], o1 = offset[1], o2 = offset[2]
    cdef Py_ssize_t a, b, q0, q1, q2, lane = nA * B, u, ab, t0, t1, tt
    cdef Py_ssize_t nab = _lane_blocks(Q[0] * Q[1], nA, n_threads)
    cdef Py_ssize_t U = Q[0] * Q[1] * nab
    cdef const floating* s
    cdef floating* d
    cdef Py_ssize_t total = Fs[0] * Fs[1] * Fs[2] * lane, zc, z0, z1
    cdef floating* base = &dst[0, 0, 0, 0, 0] if total else NULL
    if zero and total:
        zc = (total + 4 * n_threads - 1) // (4 * n_threads)
        with nogil:
            for u in prange(4 * n_threads, num_threads=n_threads, schedule="static"):
                z0 = u * zc
                z1 = z0 + zc if z0 + zc < total else total
                if z1 > z0:
                    memset(base + z0, 0, (z1 - z0) * sizeof(floating))
    if U == 0 or Q[2] == 0 or B == 0:
        return
    with nogil:
        # one task per (destination plane row q0, q1; block of lanes): tasks write
        # disjoint parts of dst, and 1-D / 2-D problems (Q0 = 1) still have
        # enough tasks. Tiles of TILE consecutive q2 keep the TILE destination
        # rows being filled (one per q2) in cache while a and b run over the lanes.
        for u in prange(U, num_threads=n_threads, schedule="static"):
            ab = u % nab
            q1 = (u // nab) % Q[1]
            q0 = u // (nab * Q[1])
            for tt in range((Q[2] + TILE - 1) // TILE):
                t0 = tt * TILE
                t1 = t0 + TILE if t0 + TILE < Q[2] else Q[2]
                for a in range(ab * nA // nab, (ab + 1) * nA // nab):
                    for b in range(B):
                        s = &src[a0 + a, b, q0, q1, 0]
                        d = &dst[o0 + q0 * e0, o1 + q1 * e1, o2, a, b]
                        for q2 in range(t0, t1):
                            d[q2 * e2 * lane] = s[q2]


cdef inline Py_ssize_t _lane_blocks(Py_ssize_t rows, Py_ssize_t nA, int n_threads) noexcept nogil:
    """Blocks to cut the lanes into so rows x blocks gives every thread work."""
    cdef Py_ssize_t want = 4 * n_threads
    if n_threads <= 1 or rows >= want or nA <= 1:
        return 1
    return min(nA, (want + rows - 1) // rows)


def unpack(const floating[:, :, :, :, ::1] src,  # IN  (F0, F1, F2, nA, B)
           floating[:, :, :, :, ::1] dst,        # OUT (A, B, Q0, Q1, Q2)
           Py_ssize_t a0, tuple step, tuple offset, int n_threads):
    """``dst[a0 + a, b, q0, q1, q2] = src[o0 + q0*s0, o1 + q1*s1, o2 + q2*s2, a, b]``.

    The adjoint of :func:`pack` (with the same step and offset) for a crop.
    """
    cdef Py_ssize_t nA = src.shape[3], B = src.shape[4]
    cdef Py_ssize_t Q[3]
    cdef Py_ssize_t Fs[3]
    Q[0], Q[1], Q[2] = dst.shape[2], dst.shape[3], dst.shape[4]
    Fs[0], Fs[1], Fs[2] = src.shape[0], src.shape[1], src.shape[2]
    _check_move(step, offset, a0, nA, dst.shape[0], B, dst.shape[1], Q, Fs, n_threads, "unpack")
    cdef Py_ssize_t s0 = step[0], s1 = step[1], s2 = step[2]
    cdef Py_ssize_t o0 = offset[0], o1 = offset[1], o2 = offset[2]
    cdef Py_ssize_t a, b, q0, q1, q2, lane = nA * B, u, ab, t0, t1, tt
    cdef Py_ssize_t nab = _lane_blocks(Q[0] * Q[1], nA, n_threads)
    cdef Py_ssize_t U = Q[0] * Q[1] * nab
    cdef const floating* s
    cdef floating* d
    if U == 0 or Q[2] == 0 or B == 0:
        return
    with nogil:
        for u in prange(U, num_threads=n_threads, schedule="static"):
            ab = u % nab
            q1 = (u // nab) % Q[1]
            q0 = u // (nab * Q[1])
            for tt in range((Q[2] + TILE - 1) // TILE):
                t0 = tt * TILE
                t1 = t0 + TILE if t0 + TILE < Q[2] else Q[2]
                for a in range(ab * nA // nab, (ab + 1) * nA // nab):
                    for b in range(B):
                        s = &src[o0 + q0 * s0, o1 + q1 * s1, o2, a, b]
                        d = &dst[a0 + a, b, q0, q1, 0]
                        for q2 in range(t0, t1):
                            d[q2] = s[q2 * s2 * lane]


# --------------------------------------------------------------------------
# spectral contractions (complex numbers stored as interleaved re, im)
# --------------------------------------------------------------------------
cdef inline void _gemm(char ta, char tb, int m, int n, int k,
                       floating* a, int lda, floating* b, int ldb,
                       floating beta_re, floating* c, int ldc) noexcept nogil:
    """Column-major complex C = op(A) op(B) + beta*C, on interleaved pointers."""
    cdef float complex one_f = 1, beta_f = beta_re
    cdef double complex one_d = 1, beta_d = beta_re
    if floating is float:
        cgemm(&ta, &tb, &m, &n, &k, &one_f, <float complex*>a, &lda,
              <float complex*>b, &ldb, &beta_f, <float complex*>c, &ldc)
    else:
        zgemm(&ta, &tb, &m, &n, &k, &one_d, <double complex*>a, &lda,
              <double complex*>b, &ldb, &beta_d, <double complex*>c, &ldc)


cdef void _fwd_freq(const floating* X, const floating* W, floating* Y,
                    Py_ssize_t nb, Py_ssize_t C, Py_ssize_t CO, Py_ssize_t G,
                    bint use_gemm) noexcept nogil:
    # X: (nb, C) W: (CO, CIG) Y: (nb, CO), one frequency
    cdef Py_ssize_t CIG = C // G, COG = CO // G
    cdef Py_ssize_t g, n, o, c
    cdef const floating* xr
    cdef const floating* wr
    cdef floating re, im
    if CIG == 1 and COG == 1:
        # depthwise: an elementwise product over the contiguous channel axis
        for n in range(nb):
            for c in range(C):
                Y[2 * (n * C + c)] = X[2 * (n * C + c)] * W[2 * c] + X[2 * (n * C + c) + 1] * W[2 * c + 1]
                Y[2 * (n * C + c) + 1] = X[2 * (n * C + c) + 1] * W[2 * c] - X[2 * (n * C + c)] * W[2 * c + 1]
        return
    for g in range(G):
        if use_gemm:
            # Y^T (COG x nb, col-major ld CO) = conj(W_g) . X_g^T
            _gemm(c'C', c'N', <int>COG, <int>nb, <int>CIG,
                  <floating*>(W + 2 * g * COG * CIG), <int>CIG,
                  <floating*>(X + 2 * g * CIG), <int>C, 0, Y + 2 * g * COG, <int>CO)
            continue
        for n in range(nb):
            xr = X + 2 * (n * C + g * CIG)
            for o in range(g * COG, (g + 1) * COG):
                wr = W + 2 * o * CIG
                re = 0
                im = 0
                for c in range(CIG):
                    # x * conj(w)
                    re = re + xr[2 * c] * wr[2 * c] + xr[2 * c + 1] * wr[2 * c + 1]
                    im = im + xr[2 * c + 1] * wr[2 * c] - xr[2 * c] * wr[2 * c + 1]
                Y[2 * (n * CO + o)] = re
                Y[2 * (n * CO + o) + 1] = im


cdef void _gin_freq(const floating* GY, const floating* W, floating* GX,
                    Py_ssize_t nb, Py_ssize_t C, Py_ssize_t CO, Py_ssize_t G,
                    bint use_gemm) noexcept nogil:
    # GY: (nb, CO) W: (CO, CIG) GX: (nb, C)
    cdef Py_ssize_t CIG = C // G, COG = CO // G
    cdef Py_ssize_t g, n, o, c
    cdef const floating* gyr
    cdef const floating* wr
    cdef floating* gxr
    cdef floating yre, yim
    if CIG == 1 and COG == 1:
        for n in range(nb):
            for c in range(C):
                GX[2 * (n * C + c)] = GY[2 * (n * C + c)] * W[2 * c] - GY[2 * (n * C + c) + 1] * W[2 * c + 1]
                GX[2 * (n * C + c) + 1] = GY[2 * (n * C + c)] * W[2 * c + 1] + GY[2 * (n * C + c) + 1] * W[2 * c]
        return
    for g in range(G):
        if use_gemm:
            # GX^T (CIG x nb, ld C) = W_g^T(col-major view of row-major W_g) . GY_g^T
            _gemm(c'N', c'N', <int>CIG, <int>nb, <int>COG,
                  <floating*>(W + 2 * g * COG * CIG), <int>CIG,
                  <floating*>(GY + 2 * g * COG), <int>CO, 0, GX + 2 * g * CIG, <int>C)
            continue
        for n in range(nb):
            gxr = GX + 2 * (n * C + g * CIG)
            memset(gxr, 0, 2 * CIG * sizeof(floating))
            gyr = GY + 2 * n * CO
            for o in range(g * COG, (g + 1) * COG):
                yre = gyr[2 * o]
                yim = gyr[2 * o + 1]
                wr = W + 2 * o * CIG
                for c in range(CIG):
                    gxr[2 * c] += yre * wr[2 * c] - yim * wr[2 * c + 1]
                    gxr[2 * c + 1] += yre * wr[2 * c + 1] + yim * wr[2 * c]


cdef void _gw_freq(const floating* X, const floating* GY, floating* GW,
                   Py_ssize_t nb, Py_ssize_t C, Py_ssize_t CO, Py_ssize_t G,
                   bint accumulate, bint use_gemm) noexcept nogil:
    # X: (nb, C) GY: (nb, CO) GW: (CO, CIG)
    cdef Py_ssize_t CIG = C // G, COG = CO // G
    cdef Py_ssize_t g, n, o, c
    cdef const floating* xr
    cdef floating* gwr
    cdef floating yre, yim
    if use_gemm:
        for g in range(G):
            # GW_g^T (CIG x COG, ld CIG) = X_g^T . conj(GY_g)
            _gemm(c'N', c'C', <int>CIG, <int>COG, <int>nb,
                  <floating*>(X + 2 * g * CIG), <int>C,
                  <floating*>(GY + 2 * g * COG), <int>CO,
                  1 if accumulate else 0, GW + 2 * g * COG * CIG, <int>CIG)
        return
    if not accumulate:
        memset(GW, 0, 2 * CO * CIG * sizeof(floating))
    if CIG == 1 and COG == 1:
        for n in range(nb):
            for c in range(C):
                # x * conj(gy)
                GW[2 * c] += X[2 * (n * C + c)] * GY[2 * (n * C + c)] + X[2 * (n * C + c) + 1] * GY[2 * (n * C + c) + 1]
                GW[2 * c + 1] += X[2 * (n * C + c) + 1] * GY[2 * (n * C + c)] - X[2 * (n * C + c)] * GY[2 * (n * C + c) + 1]
        return
    for n in range(nb):
        for o in range(CO):
            g = o // COG
            yre = GY[2 * (n * CO + o)]
            yim = -GY[2 * (n * CO + o) + 1]   # conj(gy)
            xr = X + 2 * (n * C + g * CIG)
            gwr = GW + 2 * o * CIG
            for c in range(CIG):
                gwr[2 * c] += xr[2 * c] * yre - xr[2 * c + 1] * yim
                gwr[2 * c + 1] += xr[2 * c] * yim + xr[2 * c + 1] * yre


cdef int _check_contract(Py_ssize_t M, Py_ssize_t nb, Py_ssize_t C2, Py_ssize_t CO2,
                         const Py_ssize_t* ws, const Py_ssize_t* a, const Py_ssize_t* b,
                         int groups, int n_threads, str what) except -1:
    """ValueError unless X/GX (M, nb, 2C), GY/Y (M, nb, 2CO), W (M, CO, 2C/G) agree."""
    cdef Py_ssize_t C = C2 // 2, CO = CO2 // 2
    if (groups < 1 or n_threads < 1 or C2 % 2 or CO2 % 2 or C % groups or CO % groups
            or a[0] != M or b[0] != M or ws[0] != M or a[1] != nb or b[1] != nb
            or ws[1] != CO or ws[2] != 2 * (C // groups)):
        raise ValueError(f"{what}: spectra of shapes ({a[0]}, {a[1]}, {a[2]}), "
                         f"({b[0]}, {b[1]}, {b[2]}) and kernel ({ws[0]}, {ws[1]}, {ws[2]}) "
                         f"do not agree (groups={groups}, n_threads={n_threads})")
    return 0


def contract_forward(const floating[:, :, ::1] X,  # IN  (M, nb, 2*C)
                     const floating[:, :, ::1] W,  # IN  (M, CO, 2*CIG)
                     floating[:, :, ::1] Y,        # OUT (M, nb, 2*CO)
                     int groups, bint use_gemm, int n_threads):
    cdef Py_ssize_t M = X.shape[0], nb = X.shape[1], C = X.shape[2] // 2
    cdef Py_ssize_t CO = W.shape[1], f
    _check_contract(M, nb, X.shape[2], Y.shape[2], W.shape, X.shape, Y.shape, groups,
                    n_threads, "contract_forward")
    with nogil:
        for f in prange(M, num_threads=n_threads, schedule="static"):
            _fwd_freq(&X[f, 0, 0], &W[f, 0, 0], &Y[f, 0, 0], nb, C, CO, groups, use_gemm)


def contract_grad_input(const floating[:, :, ::1] GY,  # IN  (M, nb, 2*CO)
                        const floating[:, :, ::1] W,   # IN  (M, CO, 2*CIG)
                        floating[:, :, ::1] GX,        # OUT (M, nb, 2*C)
                        int groups, bint use_gemm, int n_threads):
    cdef Py_ssize_t M = GY.shape[0], nb = GY.shape[1], C = GX.shape[2] // 2
    cdef Py_ssize_t CO = W.shape[1], f
    _check_contract(M, nb, GX.shape[2], GY.shape[2], W.shape, GX.shape, GY.shape, groups,
                    n_threads, "contract_grad_input")
    with nogil:
        for f in prange(M, num_threads=n_threads, schedule="static"):
            _gin_freq(&GY[f, 0, 0], &W[f, 0, 0], &GX[f, 0, 0], nb, C, CO, groups, use_gemm)


def contract_grad_weight(const floating[:, :, ::1] X,   # IN  (M, nb, 2*C)
                         const floating[:, :, ::1] GY,  # IN  (M, nb, 2*CO)
                         floating[:, :, ::1] GW,        # IN/OUT (M, CO, 2*CIG)
                         int groups, bint accumulate, bint use_gemm, int n_threads):
    cdef Py_ssize_t M = X.shape[0], nb = X.shape[1], C = X.shape[2] // 2
    cdef Py_ssize_t CO = GW.shape[1], f
    _check_contract(M, nb, X.shape[2], GY.shape[2], GW.shape, X.shape, GY.shape, groups,
                    n_threads, "contract_grad_weight")
    with nogil:
        for f in prange(M, num_threads=n_threads, schedule="static"):
            _gw_freq(&X[f, 0, 0], &GY[f, 0, 0], &GW[f, 0, 0], nb, C, CO, groups,
                     accumulate, use_gemm)


# --------------------------------------------------------------------------
# kernel spectra by direct DFT (matrix products along each axis)
# --------------------------------------------------------------------------
def dft_axis(const floating[:, :, ::1] src,  # IN  (pre, Qa, 2*post) complex
             const floating[:, ::1] D,       # IN  (Ma, 2*Qa) complex
             floating[:, :, ::1] dst,        # OUT (pre, Ma, 2*post) complex
             int n_threads):
    """``dst[p] = D @ src[p]`` for every ``p`` (complex, interleaved re/im).

    A kernel is nonzero only on its ``Q`` taps of a transform axis of length
    ``F``; its spectrum along that axis is the product with the ``(M, Q)``
    DFT matrix, ``M*Q`` complex multiply-adds per lane instead of a transform
    of the whole zero-padded axis. The lanes (``post``) are the contiguous
    axis: tasks are (p, block of lanes), one single-threaded gemm each.
    """
    cdef Py_ssize_t pre = src.shape[0], Qa = src.shape[1], post = src.shape[2] // 2
    cdef Py_ssize_t Ma = D.shape[0]
    if (n_threads < 1 or src.shape[2] % 2 or D.shape[1] != 2 * Qa or dst.shape[0] != pre
            or dst.shape[1] != Ma or dst.shape[2] != 2 * post):
        raise ValueError(f"dft_axis: src ({src.shape[0]}, {src.shape[1]}, {src.shape[2]}), "
                         f"D ({D.shape[0]}, {D.shape[1]}), dst ({dst.shape[0]}, "
                         f"{dst.shape[1]}, {dst.shape[2]}) do not agree")
    if pre == 0 or post == 0 or Ma == 0:
        return
    if Qa == 0:
        dst[...] = 0
        return
    # lane blocks of >= 64 columns, enough of them for every thread
    cdef Py_ssize_t nblk = max(1, min(post // 64, (4 * n_threads + pre - 1) // pre))
    cdef Py_ssize_t u, p, b, c0, c1
    with nogil:
        for u in prange(pre * nblk, num_threads=n_threads, schedule="static"):
            p = u // nblk
            b = u % nblk
            c0 = b * post // nblk
            c1 = (b + 1) * post // nblk
            # column-major: dst[p]^T (cols x Ma, ld post) = src[p]^T (cols x Qa) . D^T (Qa x Ma)
            _gemm(c'N', c'N', <int>(c1 - c0), <int>Ma, <int>Qa,
                  <floating*>&src[p, 0, 2 * c0], <int>post,
                  <floating*>&D[0, 0], <int>Qa, 0, &dst[p, 0, 2 * c0], <int>post)


from libc.stdlib cimport malloc, free
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void _rgemm_nn(int m, int n, int k, floating* a, int lda, floating* b, int ldb,
                           floating* c, int ldc) noexcept nogil:
    """Column-major real C = A B."""
    cdef char t = b'N'
    cdef float one_f = 1, zero_f = 0
    cdef double one_d = 1, zero_d = 0
    if floating is float:
        sgemm(&t, &t, &m, &n, &k, &one_f, <float*>a, &lda, <float*>b, &ldb, &zero_f,
              <float*>c, &ldc)
    else:
        dgemm(&t, &t, &m, &n, &k, &one_d, <double*>a, &lda, <double*>b, &ldb, &zero_d,
              <double*>c, &ldc)


def dft_axis_sym(const floating[:, :, ::1] src,  # IN  (pre, Q, 2*post) complex
                 const floating[:, ::1] C,       # IN  (H, Q) cos(2 pi k n / F), k < H
                 const floating[:, ::1] S,       # IN  (H, Q) -sin(2 pi k n / F)
                 floating[:, :, ::1] dst,        # OUT (pre, F, 2*post) complex
                 int n_threads):
    """``dst[p] = D @ src[p]`` for the full forward DFT matrix ``D[k, n] =
    C[k, n] + i S[k, n]`` of length ``F``, using ``D[F-k] = conj(D[k])``:
    with ``A = C @ src`` and ``B = S @ src`` (real coefficients, so two real
    GEMMs on the interleaved data, half the multiplies of a complex one),
    ``dst[k] = A + iB`` and ``dst[F-k] = A - iB``. Tasks are (p, block of
    lanes); A and B of a block stay in a per-task buffer (cache-sized).
    """
    cdef Py_ssize_t pre = src.shape[0], Q = src.shape[1], post = src.shape[2] // 2
    cdef Py_ssize_t H = C.shape[0], F = dst.shape[1]
    if (n_threads < 1 or src.shape[2] % 2 or C.shape[1] != Q or S.shape[0] != H
            or S.shape[1] != Q or dst.shape[0] != pre or dst.shape[2] != 2 * post
            or H != F // 2 + 1 or Q == 0):
        raise ValueError(f"dft_axis_sym: src ({src.shape[0]}, {src.shape[1]}, {src.shape[2]}), "
                         f"C ({C.shape[0]}, {C.shape[1]}), dst ({dst.shape[0]}, "
                         f"{dst.shape[1]}, {dst.shape[2]}) do not agree")
    if pre == 0 or post == 0:
        return
    cdef Py_ssize_t BLK = 256               # lanes per task: A, B = 2 x H x 512 reals
    cdef Py_ssize_t nblk = (post + BLK - 1) // BLK
    cdef Py_ssize_t u, p, b, c0, w, k, j
    cdef floating* buf
    cdef floating* A
    cdef floating* Bm
    cdef floating* d1
    cdef floating* d2
    cdef floating ar, ai, br, bi
    with nogil:
        for u in prange(pre * nblk, num_threads=n_threads, schedule="static"):
            p = u // nblk
            b = u % nblk
            c0 = b * BLK
            w = min(BLK, post - c0)
            buf = <floating*>malloc(4 * H * BLK * sizeof(floating))
            if buf == NULL:
                continue
            A = buf
            Bm = buf + 2 * H * BLK
            # column-major: A^T (2w x H, ld 2w) = src[p][:, c0:c0+w]^T (2w x Q) . C^T (Q x H)
            _rgemm_nn(<int>(2 * w), <int>H, <int>Q, <floating*>&src[p, 0, 2 * c0],
                      <int>(2 * post), <floating*>&C[0, 0], <int>Q, A, <int>(2 * w))
            _rgemm_nn(<int>(2 * w), <int>H, <int>Q, <floating*>&src[p, 0, 2 * c0],
                      <int>(2 * post), <floating*>&S[0, 0], <int>Q, Bm, <int>(2 * w))
            for k in range(H):
                d1 = &dst[p, k, 2 * c0]
                for j in range(w):
                    d1[2 * j] = A[k * 2 * w + 2 * j] - Bm[k * 2 * w + 2 * j + 1]
                    d1[2 * j + 1] = A[k * 2 * w + 2 * j + 1] + Bm[k * 2 * w + 2 * j]
                if k > 0 and 2 * k != F:
                    d2 = &dst[p, F - k, 2 * c0]
                    for j in range(w):
                        d2[2 * j] = A[k * 2 * w + 2 * j] + Bm[k * 2 * w + 2 * j + 1]
                        d2[2 * j + 1] = A[k * 2 * w + 2 * j + 1] - Bm[k * 2 * w + 2 * j]
            free(buf)


# --------------------------------------------------------------------------
# buffers kept between calls (pyx/_fft_pool.h)
# --------------------------------------------------------------------------
cdef extern from "_fft_pool.h" nogil:
    ctypedef struct fc_blk:
        size_t size
    int fc_n
    size_t fc_bytes
    unsigned long long fc_hits, fc_misses
    object fc_new_handler(size_t cap) with gil
    void fc_trim(size_t keep)
    int fc_pool_import() except -1 with gil
    int fc_close(object cap) except -1 with gil

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)

fc_pool_import()


def pool_handler(size_t cap):
    """A NumPy memory-handler capsule that keeps freed buffers in the pool, with
    the buffers it has handed out plus the pool bounded by ``cap`` bytes."""
    return fc_new_handler(cap)


def set_mem_handler(handler):
    """Install ``handler`` (a capsule from :func:`pool_handler`, or one this
    function returned) in the current context; returns the previous one."""
    return PyDataMem_SetHandler(handler)


def pool_close(handler):
    """The call ``handler`` served has ended: buffers it handed out and that
    are freed from now on go back to the C library, not to the pool."""
    fc_close(handler)


def pool_trim(size_t keep):
    """Give pooled buffers back to the C library (oldest first) until at most
    ``keep`` bytes stay pooled."""
    with nogil:
        fc_trim(keep)


def _pool_stats_for_tests():
    """For tests only (nothing in the package calls it): ``(buffers, bytes, hits,
    misses)`` of the pool (since the process started)."""
    return fc_n, fc_bytes, fc_hits, fc_misses
