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
from libc.math cimport isfinite
from libc.string cimport memcpy, memset

import numpy as np

from _openmp cimport FASTCONV_HAVE_OPENMP, omp_get_thread_num
from _geom cimport Geom, make_geom

HAVE_OPENMP = bool(FASTCONV_HAVE_OPENMP)
# Test hook: False routes unit-stride problems through the general kernels too.
FAST = True

cdef extern from "_direct_tile.h" nogil:
    # outputs per register tile of the stride-1 forward kernel
    enum: FC_TILE
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

# output channels per task in the stride-1 forward kernel
cdef enum:
    OBLOCK = 4

# partial sums per dot product in the stride-1 grad_weight kernel
cdef enum:
    TILE = 64


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


cdef double _gw_tap(const floating* x, const floating* gy, Geom* g, Py_ssize_t o,
                    Py_ssize_t c, Py_ssize_t kd, Py_ssize_t kh, Py_ssize_t kw) noexcept nogil:
    """grad_w[o, c, kd, kh, kw], row by row over the valid outputs only."""
    cdef Py_ssize_t grp = o // g.COG
    cdef Py_ssize_t n, od, oh, ow, sw = g.sw
    cdef const floating* xc
    cdef const floating* xrow
    cdef const floating* gyrow
    cdef floating row
    cdef double acc = 0.0
    # Rows are summed in the working precision, the row sums in double: long
    # batch x spatial sums stay accurate.
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
    return acc


cdef void _gw_task(const floating* x, const floating* gy, floating* gw,
                   Geom* g, Py_ssize_t task) noexcept nogil:
    cdef Py_ssize_t o = task // g.CIG, c = task % g.CIG
    cdef Py_ssize_t kd, kh, kw
    for kd in range(g.KD):
        for kh in range(g.KH):
            for kw in range(g.KW):
                gw[(task * g.KD + kd) * g.KH * g.KW + kh * g.KW + kw] = <floating>_gw_tap(
                    x, gy, g, o, c, kd, kh, kw)


# ---------------------------------------------------------------------------
# stride-1 fast paths
#
# With unit stride on every axis, output (od, oh, ow) and kernel tap k read the
# input at flat index i + off[k], where i = od*H*W + oh*W + ow is the output's
# position in the *input's* row pitch ("wide" layout) and off[k] = kd*dd*H*W +
# kh*dh*W + kw*dw. So the whole N-d correlation of one (n, c_out) becomes one
# 1-D loop over i in [0, L), L = (OD-1)*H*W + (OH-1)*W + OW, whose extra
# positions (ow >= OW) are computed and dropped. The largest index read is
# exactly the last input element, so nothing reads out of bounds.
# ---------------------------------------------------------------------------
cdef void _fwd_task_s1(const floating* x, const floating* w, floating* y,
                       Geom* g, Py_ssize_t task, const Py_ssize_t* off,
                       floating* wide) noexcept nogil:
    # task: (n, group, block of up to OBLOCK output channels of that group)
    # wide: this thread's scratch, OBLOCK rows of OD*H*W elements
    cdef Py_ssize_t nob = (g.COG + OBLOCK - 1) // OBLOCK
    cdef Py_ssize_t n = task // (g.CO // g.COG * nob)
    cdef Py_ssize_t grp = (task // nob) % (g.CO // g.COG)
    cdef Py_ssize_t o0 = grp * g.COG + (task % nob) * OBLOCK
    cdef Py_ssize_t nout = min(OBLOCK, (grp + 1) * g.COG - o0)
    cdef Py_ssize_t plane = g.D * g.H * g.W, ksz = g.KD * g.KH * g.KW
    cdef Py_ssize_t wstride = g.CIG * ksz, ostride = g.OD * g.H * g.W
    cdef Py_ssize_t L = (g.OD - 1) * g.H * g.W + (g.OH - 1) * g.W + g.OW
    cdef Py_ssize_t b, i0, j, m, c, k, r, od, oh
    cdef floating wv
    cdef const floating* xc = x + (n * g.C + grp * g.CIG) * plane
    cdef const floating* xk
    cdef const floating* wr
    cdef floating* out
    m = L - L % FC_TILE
    for b in range(m // FC_TILE):
        i0 = b * FC_TILE
        if nout == OBLOCK:
            if floating is float:
                fc_tile4_f32(xc + i0, w + o0 * wstride, off, g.CIG, plane, ksz, wstride,
                             wide + i0, ostride)
            else:
                fc_tile4_f64(xc + i0, w + o0 * wstride, off, g.CIG, plane, ksz, wstride,
                             wide + i0, ostride)
        else:
            for r in range(nout):
                if floating is float:
                    fc_tile_f32(xc + i0, w + (o0 + r) * wstride, off, g.CIG, plane, ksz,
                                wide + r * ostride + i0)
                else:
                    fc_tile_f64(xc + i0, w + (o0 + r) * wstride, off, g.CIG, plane, ksz,
                                wide + r * ostride + i0)
    for r in range(nout):
        # the last partial tile
        out = wide + r * ostride
        wr = w + (o0 + r) * wstride
        for j in range(m, L):
            out[j] = 0
        for c in range(g.CIG):
            for k in range(ksz):
                wv = wr[c * ksz + k]
                xk = xc + c * plane + off[k]
                for j in range(m, L):
                    out[j] += wv * xk[j]
        for od in range(g.OD):
            for oh in range(g.OH):
                memcpy(y + (((n * g.CO + o0 + r) * g.OD + od) * g.OH + oh) * g.OW,
                       out + od * g.H * g.W + oh * g.W, g.OW * sizeof(floating))


cdef void _gw_task_s1(const floating* x, const floating* gyw, const floating* gy,
                      floating* gw, Geom* g, Py_ssize_t task,
                      const Py_ssize_t* off) noexcept nogil:
    # gyw: grad_output in the wide layout (N, C_out, OD, H, W), zeros where ow >= OW
    # or oh >= OH, so the flat dot product over [0, L) sums exactly the valid terms.
    cdef Py_ssize_t o = task // g.CIG, c = task % g.CIG
    cdef Py_ssize_t grp = o // g.COG
    cdef Py_ssize_t plane = g.D * g.H * g.W, wplane = g.OD * g.H * g.W
    cdef Py_ssize_t ksz = g.KD * g.KH * g.KW
    cdef Py_ssize_t L = (g.OD - 1) * g.H * g.W + (g.OH - 1) * g.W + g.OW
    cdef Py_ssize_t n, k, b, i0, j, m
    cdef floating part[TILE]
    cdef double acc
    cdef const floating* xk
    cdef const floating* gyo
    for k in range(ksz):
        acc = 0.0
        for n in range(g.N):
            xk = x + (n * g.C + grp * g.CIG + c) * plane + off[k]
            gyo = gyw + (n * g.CO + o) * wplane
            # TILE independent partial sums vectorize without reassociating a
            # single sum; each tile's partials then go into a double.
            for j in range(TILE):
                part[j] = 0
            m = L - L % TILE
            for b in range(m // TILE):
                i0 = b * TILE
                for j in range(TILE):
                    part[j] += gyo[i0 + j] * xk[i0 + j]
            for j in range(m, L):
                acc += gyo[j] * xk[j]
            for j in range(TILE):
                acc += part[j]
        if not isfinite(acc):
            # The flat sum also multiplies the zeros of the wide layout's extra
            # columns with the input there: 0 * Inf = NaN would reach taps that
            # never touch the Inf. Redo this tap over the valid outputs only.
            acc = _gw_tap(x, gy, g, o, c, k // (g.KH * g.KW), (k // g.KW) % g.KH, k % g.KW)
        gw[task * ksz + k] = <floating>acc


def _offsets(g):
    cdef Py_ssize_t[::1] off = np.empty(g["KD"] * g["KH"] * g["KW"], dtype=np.intp)
    cdef Py_ssize_t kd, kh, kw, t = 0
    for kd in range(g["KD"]):
        for kh in range(g["KH"]):
            for kw in range(g["KW"]):
                off[t] = (kd * g["dd"] * g["H"] + kh * g["dh"]) * g["W"] + kw * g["dw"]
                t += 1
    return np.asarray(off)


def forward(const floating[:, :, :, :, ::1] xp,  # IN  (N, C_in, D, H, W), padded
            const floating[:, :, :, :, ::1] w,   # IN  (C_out, C_in/g, KD, KH, KW)
            floating[:, :, :, :, ::1] y,         # OUT (N, C_out, OD, OH, OW)
            tuple stride, tuple dilation, int groups, int n_threads):
    cdef Geom g = make_geom(xp.shape, w.shape, y.shape,
                        stride, dilation, groups)
    cdef Py_ssize_t t
    cdef Py_ssize_t[::1] off
    cdef floating[:, ::1] wide
    cdef Py_ssize_t ntasks
    cdef int nthr
    if g.sd == 1 and g.sh == 1 and g.sw == 1 and FAST:
        off = _offsets(g)
        ntasks = g.N * (g.CO // g.COG) * ((g.COG + OBLOCK - 1) // OBLOCK)
        nthr = max(1, min(n_threads, ntasks))  # one scratch row per thread that can have work
        wide = np.empty((nthr, OBLOCK * g.OD * g.H * g.W), dtype=np.asarray(y).dtype)
        with nogil:
            for t in prange(ntasks, num_threads=nthr, schedule="dynamic"):
                _fwd_task_s1(&xp[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &y[0, 0, 0, 0, 0], &g, t,
                             &off[0], &wide[omp_get_thread_num(), 0])
        return
    with nogil:
        for t in prange(g.N * g.CO, num_threads=n_threads, schedule="dynamic"):
            _fwd_task(&xp[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &y[0, 0, 0, 0, 0], &g, t)


def grad_input(const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
               const floating[:, :, :, :, ::1] w,   # IN  (C_out, C_in/g, KD, KH, KW)
               floating[:, :, :, :, ::1] gxp,       # OUT (N, C_in, D, H, W), padded
               tuple stride, tuple dilation, int groups, int n_threads):
    cdef Geom g = make_geom(gxp.shape, w.shape, gy.shape,
                        stride, dilation, groups)
    cdef Py_ssize_t t
    if g.sd == 1 and g.sh == 1 and g.sw == 1 and FAST:
        # Unit stride: grad_input is the forward correlation of grad_output,
        # zero-padded by dilation*(K-1) on both sides, with the kernel flipped
        # and its channel axes swapped within each group (the "full" convolution).
        gyn = np.asarray(gy)
        pads = [(0, 0), (0, 0)] + [(d * (k - 1),) * 2 for k, d in
                                   zip((g.KD, g.KH, g.KW), dilation)]
        gyp = np.pad(gyn, pads)
        wn = np.asarray(w)[:, :, ::-1, ::-1, ::-1]
        wt = wn.reshape((groups, g.COG, g.CIG) + wn.shape[2:]).swapaxes(1, 2)
        wt = np.ascontiguousarray(wt).reshape((g.C, g.COG) + wn.shape[2:])
        forward(gyp, wt, gxp, stride, dilation, groups, n_threads)
        return
    with nogil:
        for t in prange(g.N * g.C, num_threads=n_threads, schedule="dynamic"):
            _gin_task(&gy[0, 0, 0, 0, 0], &w[0, 0, 0, 0, 0], &gxp[0, 0, 0, 0, 0], &g, t)


def grad_weight(const floating[:, :, :, :, ::1] xp,  # IN  (N, C_in, D, H, W), padded
                const floating[:, :, :, :, ::1] gy,  # IN  (N, C_out, OD, OH, OW)
                floating[:, :, :, :, ::1] gw,        # OUT (C_out, C_in/g, KD, KH, KW)
                tuple stride, tuple dilation, int groups, int n_threads):
    cdef Geom g = make_geom(xp.shape, gw.shape, gy.shape,
                        stride, dilation, groups)
    cdef Py_ssize_t t
    cdef Py_ssize_t[::1] off
    cdef floating[:, :, :, :, ::1] gyw
    if g.sd == 1 and g.sh == 1 and g.sw == 1 and FAST:
        off = _offsets(g)
        gyw = np.zeros((g.N, g.CO, g.OD, g.H, g.W), dtype=np.asarray(gw).dtype)
        np.asarray(gyw)[:, :, :, :g.OH, :g.OW] = gy
        with nogil:
            for t in prange(g.CO * g.CIG, num_threads=n_threads, schedule="dynamic"):
                _gw_task_s1(&xp[0, 0, 0, 0, 0], &gyw[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0],
                            &gw[0, 0, 0, 0, 0], &g, t, &off[0])
        return
    with nogil:
        for t in prange(g.CO * g.CIG, num_threads=n_threads, schedule="dynamic"):
            _gw_task(&xp[0, 0, 0, 0, 0], &gy[0, 0, 0, 0, 0], &gw[0, 0, 0, 0, 0], &g, t)
