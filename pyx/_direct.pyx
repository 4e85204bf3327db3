# cython: language_level=3
"""Direct strategy: explicit loops over kernel offsets, no workspace.

All kernels work on 5-D C-contiguous arrays (N, C, D, H, W); 1-D and 2-D problems
arrive with singleton axes. The input is already zero-padded by the Python
wrapper and the kernel already flipped where ``flip=True``, so every kernel here
computes a *valid*, strided, dilated cross-correlation or one of its adjoints.

Parallelism is over independent outputs only, so no two threads ever write the
same element:

* forward:     one task per (n, c_out), owning y[n, c_out]
* grad_input:  one task per (n, c_in), owning grad_xp[n, c_in]  (the adjoint of
  the forward map restricted to that slice: a full convolution of the
  stride-dilated grad_output with the kernel, accumulated row by row)
* grad_weight: one task per (c_out, c_in/groups), owning grad_w[c_out, c_in/g]
  (a cross-correlation of the input with grad_output, summed over the batch)
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from _openmp cimport FASTCONV_HAVE_OPENMP, omp_get_max_threads

HAVE_OPENMP = bool(FASTCONV_HAVE_OPENMP)


def max_threads():
    return omp_get_max_threads()


cdef struct Geom:
    # input (padded) and output spatial sizes, kernel, stride, dilation
    Py_ssize_t N, C, D, H, W
    Py_ssize_t CO, CIG, COG, KD, KH, KW
    Py_ssize_t OD, OH, OW
    Py_ssize_t sd, sh, sw, dd, dh, dw


cdef Geom _geom(const Py_ssize_t* xs, const Py_ssize_t* ws, const Py_ssize_t* ys,
                tuple stride, tuple dilation, int groups):
    cdef Geom g
    g.N, g.C, g.D, g.H, g.W = xs[0], xs[1], xs[2], xs[3], xs[4]
    g.CO, g.CIG, g.KD, g.KH, g.KW = ws[0], ws[1], ws[2], ws[3], ws[4]
    g.OD, g.OH, g.OW = ys[2], ys[3], ys[4]
    g.sd, g.sh, g.sw = stride
    g.dd, g.dh, g.dw = dilation
    g.COG = g.CO // groups
    return g


cdef void _fwd_task(const floating* x, const floating* w, floating* y,
                    Geom* g, Py_ssize_t task) noexcept nogil:
    cdef Py_ssize_t n = task // g.CO, o = task % g.CO
    cdef Py_ssize_t grp = o // g.COG
    cdef Py_ssize_t osz = g.OD * g.OH * g.OW, ksz = g.KD * g.KH * g.KW
    cdef Py_ssize_t c, kd, kh, kw, od, oh, ow, sw = g.sw
    cdef floating* yo = y + task * osz
    cdef const floating* xc
    cdef const floating* xrow
    cdef floating* yrow
    cdef floating wv
    memset(yo, 0, osz * sizeof(floating))
    for c in range(g.CIG):
        xc = x + (n * g.C + grp * g.CIG + c) * g.D * g.H * g.W
        for kd in range(g.KD):
            for kh in range(g.KH):
                for kw in range(g.KW):
                    wv = w[(o * g.CIG + c) * ksz + (kd * g.KH + kh) * g.KW + kw]
                    for od in range(g.OD):
                        for oh in range(g.OH):
                            xrow = xc + ((od * g.sd + kd * g.dd) * g.H
                                         + oh * g.sh + kh * g.dh) * g.W + kw * g.dw
                            yrow = yo + (od * g.OH + oh) * g.OW
                            if sw == 1:
                                for ow in range(g.OW):
                                    yrow[ow] += wv * xrow[ow]
                            else:
                                for ow in range(g.OW):
                                    yrow[ow] += wv * xrow[ow * sw]


cdef void _gin_task(const floating* gy, const floating* w, floating* gx,
                    Geom* g, Py_ssize_t task) noexcept nogil:
    cdef Py_ssize_t n = task // g.C, ci = task % g.C
    cdef Py_ssize_t grp = ci // g.CIG, c = ci % g.CIG
    cdef Py_ssize_t osz = g.OD * g.OH * g.OW, ksz = g.KD * g.KH * g.KW
    cdef Py_ssize_t o, kd, kh, kw, od, oh, ow, sw = g.sw
    cdef floating* gxc = gx + task * g.D * g.H * g.W
    cdef const floating* gyo
    cdef const floating* gyrow
    cdef floating* gxrow
    cdef floating wv
    memset(gxc, 0, g.D * g.H * g.W * sizeof(floating))
    for o in range(grp * g.COG, (grp + 1) * g.COG):
        gyo = gy + (n * g.CO + o) * osz
        for kd in range(g.KD):
            for kh in range(g.KH):
                for kw in range(g.KW):
                    wv = w[(o * g.CIG + c) * ksz + (kd * g.KH + kh) * g.KW + kw]
                    for od in range(g.OD):
                        for oh in range(g.OH):
                            gxrow = gxc + ((od * g.sd + kd * g.dd) * g.H
                                           + oh * g.sh + kh * g.dh) * g.W + kw * g.dw
                            gyrow = gyo + (od * g.OH + oh) * g.OW
                            if sw == 1:
                                for ow in range(g.OW):
                                    gxrow[ow] += wv * gyrow[ow]
                            else:
                                for ow in range(g.OW):
                                    gxrow[ow * sw] += wv * gyrow[ow]


cdef void _gw_task(const floating* x, const floating* gy, floating* gw,
                   Geom* g, Py_ssize_t task) noexcept nogil:
    cdef Py_ssize_t o = task // g.CIG, c = task % g.CIG
    cdef Py_ssize_t grp = o // g.COG
    cdef Py_ssize_t osz = g.OD * g.OH * g.OW, ksz = g.KD * g.KH * g.KW
    cdef Py_ssize_t n, kd, kh, kw, od, oh, ow, sw = g.sw
    cdef const floating* xc
    cdef const floating* xrow
    cdef const floating* gyrow
    cdef floating row
    cdef double acc
    for kd in range(g.KD):
        for kh in range(g.KH):
            for kw in range(g.KW):
                # Rows are summed in the working precision (vectorizable), the
                # row sums in double: long batch x spatial sums stay accurate.
                acc = 0.0
                for n in range(g.N):
                    xc = x + (n * g.C + grp * g.CIG + c) * g.D * g.H * g.W
                    for od in range(g.OD):
                        for oh in range(g.OH):
                            xrow = xc + ((od * g.sd + kd * g.dd) * g.H
                                         + oh * g.sh + kh * g.dh) * g.W + kw * g.dw
                            gyrow = gy + ((n * g.CO + o) * g.OD + od) * g.OH * g.OW + oh * g.OW
                            row = 0
                            if sw == 1:
                                for ow in range(g.OW):
                                    row = row + xrow[ow] * gyrow[ow]
                            else:
                                for ow in range(g.OW):
                                    row = row + xrow[ow * sw] * gyrow[ow]
                            acc += row
                gw[task * ksz + (kd * g.KH + kh) * g.KW + kw] = <floating>acc


def forward(const floating[:, :, :, :, ::1] xp,  # IN  (N, C_in, D, H, W), padded
            const floating[:, :, :, :, ::1] w,   # IN  (C_out, C_in/g, KD, KH, KW)
            floating[:, :, :, :, ::1] y,         # OUT (N, C_out, OD, OH, OW)
            tuple stride, tuple dilation, int groups, int n_threads):
    cdef Geom g = _geom(xp.shape, w.shape, y.shape,
                        stride, dilation, groups)
    cdef Py_ssize_t t
    with nogil:
        for t in prange(g.N * g.CO, num_threads=n_threads, schedule="dynamic"):
            _fwd_task(&xp[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &y[0, 0, 0, 0, 0], &g, t)


def grad_input(const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
               const floating[:, :, :, :, ::1] w,   # IN  (C_out, C_in/g, KD, KH, KW)
               floating[:, :, :, :, ::1] gxp,       # OUT (N, C_in, D, H, W), padded
               tuple stride, tuple dilation, int groups, int n_threads):
    cdef Geom g = _geom(gxp.shape, w.shape, gy.shape,
                        stride, dilation, groups)
    cdef Py_ssize_t t
    with nogil:
        for t in prange(g.N * g.C, num_threads=n_threads, schedule="dynamic"):
            _gin_task(&gy[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &gxp[0, 0, 0, 0, 0], &g, t)


def grad_weight(const floating[:, :, :, :, ::1] xp,  # IN  (N, C_in, D, H, W), padded
                const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
                floating[:, :, :, :, ::1] gw,        # OUT (C_out, C_in/g, KD, KH, KW)
                tuple stride, tuple dilation, int groups, int n_threads):
    cdef Geom g = _geom(xp.shape, gw.shape, gy.shape,
                        stride, dilation, groups)
    cdef Py_ssize_t t
    with nogil:
        for t in prange(g.CO * g.CIG, num_threads=n_threads, schedule="dynamic"):
            _gw_task(&xp[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], &gw[0, 0, 0, 0, 0], &g, t)
