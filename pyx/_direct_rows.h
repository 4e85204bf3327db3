/* Row-blocked tile of the stride-1 direct kernels for one output channel
 * (depthwise layers, and a grad_input into few input channels).
 *
 * With one output channel the vector tiles (fc_quad1_*) load an input vector
 * for every multiply-add. Four consecutive output rows share input rows: at
 * unit stride and row dilation 1, input row r of a tap column (kd, kw) feeds
 * output row i with kernel row kh = r - i. So the block walks the KH + 3 input
 * rows once and adds each loaded vector into every output row it reaches:
 *
 *   out[i*orow + h*VL + l] = sum_{c, kd, kw, kh} w[c*ksz + (kd*KH + kh)*KW + kw]
 *                             * x[c*plane + offr[kd*KW + kw] + (i + kh)*pitch + h*VL + l]
 *
 * for i < nrow (<= 4) rows and h < nv (1 or 2) vectors of VL lanes per row, KH
 * from 2 to FC_ROWS_KMAX (the caller checks):
 * (KH + 3)*NV loads feed 4*KH*NV multiply-adds (5x5: 0.4 loads per multiply-add
 * instead of 1). Rows i >= nrow are computed over whatever lies below the
 * plane (the caller leaves slack) and dropped.
 */
#ifndef FASTCONV_DIRECT_ROWS_H
#define FASTCONV_DIRECT_ROWS_H
#include <string.h>
#include <stddef.h>

#include "_simd.h"
#include "_kconst.h"

#ifdef FC_HAVE_VEC
/* KHC (the kernel's rows) is a compile-time constant, so the row loop unrolls,
 * the tests on kh vanish and the column's KHC weights stay in registers. */
#define FC_PRAGMA(x) _Pragma(#x)
#define FC_ROWS4(T, VT, VL, NV, KHC, NAME)                                               \
static void NAME(const T *x, const T *w, const ptrdiff_t *offr, ptrdiff_t cig,           \
                 ptrdiff_t plane, ptrdiff_t ksz, ptrdiff_t KD, ptrdiff_t KW,               \
                 ptrdiff_t pitch, T *out, ptrdiff_t orow, int nrow)                        \
{                                                                                        \
    VT a[4][NV], v[NV], zero;                                                            \
    memset(&zero, 0, sizeof(zero));                                                      \
    for (int i = 0; i < 4; i++)                                                          \
        for (int h = 0; h < NV; h++) a[i][h] = zero;                                     \
    for (ptrdiff_t c = 0; c < cig; c++) {                                                \
        const T *xc = x + c * plane, *wc = w + c * ksz;                                  \
        for (ptrdiff_t kd = 0; kd < KD; kd++)                                            \
            for (ptrdiff_t kw = 0; kw < KW; kw++) {                                      \
                const T *p = xc + offr[kd * KW + kw];                                    \
                const T *wk = wc + kd * KHC * KW + kw;                                   \
                T wr[KHC];                                                               \
                for (int k = 0; k < KHC; k++) wr[k] = wk[k * KW];                        \
                FC_PRAGMA(GCC unroll 16)                                                 \
                for (int r = 0; r < KHC + 3; r++) {                                      \
                    for (int h = 0; h < NV; h++)                                         \
                        memcpy(&v[h], p + r * pitch + h * VL, sizeof(VT));               \
                    FC_PRAGMA(GCC unroll 4)                                              \
                    for (int i = 0; i < 4; i++) {                                        \
                        if (r - i >= 0 && r - i < KHC)                                   \
                            for (int h = 0; h < NV; h++) a[i][h] += wr[r - i] * v[h];    \
                    }                                                                    \
                }                                                                        \
            }                                                                            \
    }                                                                                    \
    for (int i = 0; i < 4; i++)                                                          \
        if (i < nrow)                                                                    \
            for (int h = 0; h < NV; h++)                                                 \
                memcpy(out + i * orow + h * VL, &a[i][h], sizeof(VT));                   \
}
#define FC_ROWS4_KH(T, VT, VL, NV)                                                       \
    FC_ROWS4(T, VT, VL, NV, 2, fc_rows4_##T##_##NV##_2)                                  \
    FC_ROWS4(T, VT, VL, NV, 3, fc_rows4_##T##_##NV##_3)                                  \
    FC_ROWS4(T, VT, VL, NV, 4, fc_rows4_##T##_##NV##_4)                                  \
    FC_ROWS4(T, VT, VL, NV, 5, fc_rows4_##T##_##NV##_5)                                  \
    FC_ROWS4(T, VT, VL, NV, 6, fc_rows4_##T##_##NV##_6)                                  \
    FC_ROWS4(T, VT, VL, NV, 7, fc_rows4_##T##_##NV##_7)
FC_ROWS4_KH(float, fc_vf, FC_LF, 1)
FC_ROWS4_KH(float, fc_vf, FC_LF, 2)
FC_ROWS4_KH(double, fc_vd, FC_LD, 1)
FC_ROWS4_KH(double, fc_vd, FC_LD, 2)

#define FC_ROWS4_CASE(T, NV, K)                                                          \
    case (K) * 4 + (NV): fc_rows4_##T##_##NV##_##K(xq, w, offr, cig, plane, ksz, KD, KW, \
                                                   pitch, oq, orow, nrow); break;
/* nv granules (1 or 2) of each row = nv*FC_G registers, in passes of at most
 * two registers per row (8 accumulators: they and the loads fit 16 registers) */
#define FC_ROWS4_DISPATCH(T, L, NAME)                                                    \
static void NAME(const T *x, const T *w, const ptrdiff_t *offr, ptrdiff_t cig,           \
                 ptrdiff_t plane, ptrdiff_t ksz, ptrdiff_t KD, ptrdiff_t KH,               \
                 ptrdiff_t KW, ptrdiff_t pitch, T *out, ptrdiff_t orow, int nrow, int nv)  \
{                                                                                        \
    for (int q = 0; q < nv * FC_G; q += 2) {                                             \
    const T *xq = x + q * (L);                                                           \
    T *oq = out + q * (L);                                                               \
    int np = nv * FC_G - q < 2 ? 1 : 2;                                                  \
    switch (KH * 4 + np) {                                                               \
    FC_ROWS4_CASE(T, 1, 2) FC_ROWS4_CASE(T, 2, 2) FC_ROWS4_CASE(T, 1, 3)                 \
    FC_ROWS4_CASE(T, 2, 3) FC_ROWS4_CASE(T, 1, 4) FC_ROWS4_CASE(T, 2, 4)                 \
    FC_ROWS4_CASE(T, 1, 5) FC_ROWS4_CASE(T, 2, 5) FC_ROWS4_CASE(T, 1, 6)                 \
    FC_ROWS4_CASE(T, 2, 6) FC_ROWS4_CASE(T, 1, 7) FC_ROWS4_CASE(T, 2, 7)                 \
    default: break;                                                                      \
    }                                                                                    \
    }                                                                                    \
}
FC_ROWS4_DISPATCH(float, FC_LF, fc_rows4_f32)
FC_ROWS4_DISPATCH(double, FC_LD, fc_rows4_f64)

#else  /* plain loops, the same contract */

#define FC_ROWS4_GENERIC(T, NAME)                                                        \
static void NAME(const T *x, const T *w, const ptrdiff_t *offr, ptrdiff_t cig,    \
                        ptrdiff_t plane, ptrdiff_t ksz, ptrdiff_t KD, ptrdiff_t KH,        \
                        ptrdiff_t KW, ptrdiff_t pitch, T *out, ptrdiff_t orow, int nrow,   \
                        int nv)                                                           \
{                                                                                        \
    int VL = 64 / (int)sizeof(T);                                                        \
    for (int i = 0; i < nrow; i++)                                                       \
        for (int l = 0; l < nv * VL; l++) {                                              \
            T s = 0;                                                                     \
            for (ptrdiff_t c = 0; c < cig; c++)                                          \
                for (ptrdiff_t kd = 0; kd < KD; kd++)                                    \
                    for (ptrdiff_t kh = 0; kh < KH; kh++)                                \
                        for (ptrdiff_t kw = 0; kw < KW; kw++)                            \
                            s += w[c * ksz + (kd * KH + kh) * KW + kw]                   \
                                 * x[c * plane + offr[kd * KW + kw] + (i + kh) * pitch + l]; \
            out[i * orow + l] = s;                                                       \
        }                                                                                \
}
FC_ROWS4_GENERIC(float, fc_rows4_f32)
FC_ROWS4_GENERIC(double, fc_rows4_f64)
#endif
#endif
