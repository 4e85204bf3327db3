/* Register-tiled inner blocks of the stride-1 direct kernels, written once and
 * compiled once per instruction-set level (pyx/_kern.c; vector width from
 * pyx/_simd.h). Callers reach them through the level's table (pyx/_kernels.h).
 *
 * Forward tile (also grad_input, which is a forward correlation of grad_output):
 *
 *   out[j] = sum_{c < cig, k < ksz} w[c*ksz + k] * x[c*plane + off[k] + j],  j < FC_TILE
 *
 * The accumulators live in registers for the whole (c, k) loop, so each
 * multiply-add costs one load (a quarter of one with four output channels).
 * The contracts below are in 64-byte granules (FC_VL_F32 / FC_VL_F64 lanes),
 * the same at every level; inside, a level runs passes of named register
 * accumulators sized for its register file:
 *
 *   4 output channels x 2 registers (fc_k4x2_*): 8 accumulators, 2 vector loads
 *     and 4 weight broadcasts per tap; fits 16 registers (AVX2, SSE2) and is one
 *     pass per granule pair on AVX-512;
 *   1 output channel x 4 or 8 registers (fc_k1x4_*, fc_k1x8_*).
 *
 * (Accumulators in arrays indexed by loops are not kept in registers by GCC
 * once they outnumber the registers' budget; named ones are.)
 *
 * grad_weight block: NR output channels x NK taps of one input channel,
 *
 *   acc[r][t] = sum_{i < n} gy[r*gstride + i] * x[off[t] + i]
 *
 * as NR*NK register accumulators: NR + NK loads feed NR*NK multiply-adds. The
 * largest block a level uses (its table's gw_nr x gw_nk) keeps NR*NK + NR + 1
 * registers within its register file. At the end of a call (one image's plane)
 * each accumulator is folded to FC_GW_ACC double lanes and added into
 * FC_GW_ACC doubles, so the full horizontal sum happens once per weight.
 *
 * GCC and Clang get explicit vector types; other compilers get plain loops.
 * (GCC left to itself vectorizes the forward loop nest across k with gathers,
 * ten times slower.)
 */
#ifndef FASTCONV_DIRECT_TILE_H
#define FASTCONV_DIRECT_TILE_H
#include <string.h>
#include <stddef.h>
#include "_simd.h"
#include "_kconst.h"

/* Forward passes of 4 channels x 3 registers (fc_k4x3_*) where the register
 * file is 16 registers of FMA (AVX2); elsewhere 4 x 2 (AVX-512: 32 registers,
 * and its 2-register pass already reaches the matmul rate; SSE2: no FMA, so a
 * product needs a register of its own). -DFC_PAIRS_K3=0/1 overrides. */
#ifndef FC_PAIRS_K3
#define FC_PAIRS_K3 (FC_LEVEL_ID == 1)
#endif

#ifdef FC_HAVE_VEC
_Static_assert(sizeof(fc_vf) == FC_RB && sizeof(fc_vd) == FC_RB, "one register per vector");

/* 4 output channels (weights w0 + r*ws) x 2 registers read at x0 and x1;
 * channel r's results go to o0 + r*os and o1 + r*os. */
#define FC_K4X2(T, VT, S)                                                              \
static inline void fc_k4x2_##S(const T *x0, const T *x1, const T *w0, ptrdiff_t ws,    \
                               const ptrdiff_t *off, ptrdiff_t cig, ptrdiff_t plane,   \
                               ptrdiff_t ksz, T *o0, T *o1, ptrdiff_t os)              \
{                                                                                      \
    VT a00, a01, a10, a11, a20, a21, a30, a31, v0, v1;                                 \
    memset(&a00, 0, sizeof(VT));                                                       \
    a01 = a00; a10 = a00; a11 = a00; a20 = a00; a21 = a00; a30 = a00; a31 = a00;       \
    for (ptrdiff_t c = 0; c < cig; c++) {                                              \
        const T *wc = w0 + c * ksz;                                                    \
        for (ptrdiff_t k = 0; k < ksz; k++) {                                          \
            memcpy(&v0, x0 + off[k], sizeof(VT)); memcpy(&v1, x1 + off[k], sizeof(VT)); \
            T w_0 = wc[k], w_1 = wc[ws + k], w_2 = wc[2 * ws + k], w_3 = wc[3 * ws + k]; \
            a00 += w_0 * v0; a01 += w_0 * v1; a10 += w_1 * v0; a11 += w_1 * v1;        \
            a20 += w_2 * v0; a21 += w_2 * v1; a30 += w_3 * v0; a31 += w_3 * v1;        \
        }                                                                              \
        x0 += plane; x1 += plane;                                                      \
    }                                                                                  \
    memcpy(o0, &a00, sizeof(VT)); memcpy(o1, &a01, sizeof(VT));                        \
    memcpy(o0 + os, &a10, sizeof(VT)); memcpy(o1 + os, &a11, sizeof(VT));             \
    memcpy(o0 + 2 * os, &a20, sizeof(VT)); memcpy(o1 + 2 * os, &a21, sizeof(VT));     \
    memcpy(o0 + 3 * os, &a30, sizeof(VT)); memcpy(o1 + 3 * os, &a31, sizeof(VT));     \
}

/* 4 output channels x 3 registers read at x0, x1, x2: 12 accumulators, 3 loads
 * and 1 broadcast register fill 16 registers (AVX2), and 12 independent
 * multiply-adds per tap hide the FMA latency that 8 only just cover. */
#define FC_K4X3(T, VT, S)                                                              \
static inline void fc_k4x3_##S(const T *x0, const T *x1, const T *x2, const T *w0,     \
                               ptrdiff_t ws, const ptrdiff_t *off, ptrdiff_t cig,      \
                               ptrdiff_t plane, ptrdiff_t ksz, T *o0, T *o1, T *o2,    \
                               ptrdiff_t os)                                           \
{                                                                                      \
    VT a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32, v0, v1, v2;         \
    memset(&a00, 0, sizeof(VT));                                                       \
    a01 = a00; a02 = a00; a10 = a00; a11 = a00; a12 = a00;                             \
    a20 = a00; a21 = a00; a22 = a00; a30 = a00; a31 = a00; a32 = a00;                  \
    for (ptrdiff_t c = 0; c < cig; c++) {                                              \
        const T *wc = w0 + c * ksz;                                                    \
        for (ptrdiff_t k = 0; k < ksz; k++) {                                          \
            ptrdiff_t q = off[k];                                                      \
            memcpy(&v0, x0 + q, sizeof(VT)); memcpy(&v1, x1 + q, sizeof(VT));          \
            memcpy(&v2, x2 + q, sizeof(VT));                                           \
            T w_0 = wc[k], w_1 = wc[ws + k], w_2 = wc[2 * ws + k], w_3 = wc[3 * ws + k]; \
            a00 += w_0 * v0; a01 += w_0 * v1; a02 += w_0 * v2;                         \
            a10 += w_1 * v0; a11 += w_1 * v1; a12 += w_1 * v2;                         \
            a20 += w_2 * v0; a21 += w_2 * v1; a22 += w_2 * v2;                         \
            a30 += w_3 * v0; a31 += w_3 * v1; a32 += w_3 * v2;                         \
        }                                                                              \
        x0 += plane; x1 += plane; x2 += plane;                                         \
    }                                                                                  \
    memcpy(o0, &a00, sizeof(VT)); memcpy(o1, &a01, sizeof(VT)); memcpy(o2, &a02, sizeof(VT)); \
    memcpy(o0 + os, &a10, sizeof(VT)); memcpy(o1 + os, &a11, sizeof(VT));             \
    memcpy(o2 + os, &a12, sizeof(VT));                                                 \
    memcpy(o0 + 2 * os, &a20, sizeof(VT)); memcpy(o1 + 2 * os, &a21, sizeof(VT));     \
    memcpy(o2 + 2 * os, &a22, sizeof(VT));                                             \
    memcpy(o0 + 3 * os, &a30, sizeof(VT)); memcpy(o1 + 3 * os, &a31, sizeof(VT));     \
    memcpy(o2 + 3 * os, &a32, sizeof(VT));                                             \
}

/* 1 output channel x 4 registers read at p[0..3]; results to o + i*L. */
#define FC_K1X4(T, VT, L, S)                                                           \
static inline void fc_k1x4_##S(const T *p0, const T *p1, const T *p2, const T *p3,     \
                               const T *w, const ptrdiff_t *off, ptrdiff_t cig,        \
                               ptrdiff_t plane, ptrdiff_t ksz, T *o)                   \
{                                                                                      \
    VT a0, a1, a2, a3, v0, v1, v2, v3;                                                 \
    memset(&a0, 0, sizeof(VT)); a1 = a0; a2 = a0; a3 = a0;                             \
    for (ptrdiff_t c = 0; c < cig; c++) {                                              \
        const T *wc = w + c * ksz;                                                     \
        for (ptrdiff_t k = 0; k < ksz; k++) {                                          \
            T wv = wc[k];                                                              \
            memcpy(&v0, p0 + off[k], sizeof(VT)); memcpy(&v1, p1 + off[k], sizeof(VT)); \
            memcpy(&v2, p2 + off[k], sizeof(VT)); memcpy(&v3, p3 + off[k], sizeof(VT)); \
            a0 += wv * v0; a1 += wv * v1; a2 += wv * v2; a3 += wv * v3;                \
        }                                                                              \
        p0 += plane; p1 += plane; p2 += plane; p3 += plane;                            \
    }                                                                                  \
    memcpy(o, &a0, sizeof(VT)); memcpy(o + L, &a1, sizeof(VT));                        \
    memcpy(o + 2 * L, &a2, sizeof(VT)); memcpy(o + 3 * L, &a3, sizeof(VT));            \
}

/* 1 output channel x 8 registers read at p[0..7]; results to o + i*L. */
#define FC_K1X8(T, VT, L, S)                                                           \
static inline void fc_k1x8_##S(const T *const *p, const T *w, const ptrdiff_t *off,    \
                               ptrdiff_t cig, ptrdiff_t plane, ptrdiff_t ksz, T *o)    \
{                                                                                      \
    VT a0, a1, a2, a3, a4, a5, a6, a7, v;                                              \
    const T *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];                            \
    const T *p4 = p[4], *p5 = p[5], *p6 = p[6], *p7 = p[7];                            \
    memset(&a0, 0, sizeof(VT));                                                        \
    a1 = a0; a2 = a0; a3 = a0; a4 = a0; a5 = a0; a6 = a0; a7 = a0;                     \
    for (ptrdiff_t c = 0; c < cig; c++) {                                              \
        const T *wc = w + c * ksz;                                                     \
        for (ptrdiff_t k = 0; k < ksz; k++) {                                          \
            T wv = wc[k];                                                              \
            ptrdiff_t q = off[k];                                                      \
            memcpy(&v, p0 + q, sizeof(VT)); a0 += wv * v;                              \
            memcpy(&v, p1 + q, sizeof(VT)); a1 += wv * v;                              \
            memcpy(&v, p2 + q, sizeof(VT)); a2 += wv * v;                              \
            memcpy(&v, p3 + q, sizeof(VT)); a3 += wv * v;                              \
            memcpy(&v, p4 + q, sizeof(VT)); a4 += wv * v;                              \
            memcpy(&v, p5 + q, sizeof(VT)); a5 += wv * v;                              \
            memcpy(&v, p6 + q, sizeof(VT)); a6 += wv * v;                              \
            memcpy(&v, p7 + q, sizeof(VT)); a7 += wv * v;                              \
        }                                                                              \
        p0 += plane; p1 += plane; p2 += plane; p3 += plane;                            \
        p4 += plane; p5 += plane; p6 += plane; p7 += plane;                            \
    }                                                                                  \
    memcpy(o, &a0, sizeof(VT)); memcpy(o + L, &a1, sizeof(VT));                        \
    memcpy(o + 2 * L, &a2, sizeof(VT)); memcpy(o + 3 * L, &a3, sizeof(VT));            \
    memcpy(o + 4 * L, &a4, sizeof(VT)); memcpy(o + 5 * L, &a5, sizeof(VT));            \
    memcpy(o + 6 * L, &a6, sizeof(VT)); memcpy(o + 7 * L, &a7, sizeof(VT));            \
}

/* One output channel over nreg registers whose bases are base(i) (i < nreg, a
 * multiple of 4); results to o + i*L: one pass of 4 registers, else passes of 8. */
#define FC_ONE_CHANNEL(T, S, L, nreg, base, w, off, cig, plane, ksz, o)                \
    do {                                                                               \
        if ((nreg) == 4) {                                                             \
            fc_k1x4_##S(base(0), base(1), base(2), base(3), w, off, cig, plane, ksz, o); \
        } else {                                                                       \
            for (int i0_ = 0; i0_ < (nreg); i0_ += 8) {                                \
                const T *p_[8];                                                        \
                for (int i_ = 0; i_ < 8; i_++) p_[i_] = base(i0_ + i_);                \
                fc_k1x8_##S(p_, w, off, cig, plane, ksz, (o) + i0_ * (L));             \
            }                                                                          \
        }                                                                              \
    } while (0)

/* The contracts the Cython kernels call (pyx/_direct.pyx):
 *   fc_tile_*:  1 output channel x FC_TILE outputs from x; out[j]
 *   fc_tile4_*: FC_OBLOCK channels x FC_TILE outputs; out[r*ostride + j]
 *   fc_pairs4_*: 4 channels x ng granules (ng even) at vb[0..ng); granule v to
 *               out[r*ostride + v*VL + l]
 *   fc_quad1_*: 1 channel x 4 granules at vb[0..3]; out[v*VL + l] */
#define FC_TILES(T, VT, L, VL, S)                                                      \
FC_K4X2(T, VT, S)                                                                      \
FC_K4X3(T, VT, S)                                                                      \
FC_K1X4(T, VT, L, S)                                                                   \
FC_K1X8(T, VT, L, S)                                                                   \
static void fc_pairs4_##S(const T *x, const T *w0, const ptrdiff_t *off, ptrdiff_t cig,\
                          ptrdiff_t plane, ptrdiff_t ksz, ptrdiff_t wstride,           \
                          const ptrdiff_t *vb, ptrdiff_t ng, T *out, ptrdiff_t ostride)\
{                                                                                      \
    /* register i of the run (FC_REG_) writes its outputs at out + i*L */              \
    const int L_ = L;                                                                  \
    ptrdiff_t nreg = ng * FC_G, i = 0;                                                 \
    if (FC_PAIRS_K3)                                                                   \
        /* threes while more than four are left; four left go as two pairs */          \
        for (; nreg - i >= 3 && nreg - i != 4; i += 3)                                 \
            fc_k4x3_##S(FC_REG_(i), FC_REG_(i + 1), FC_REG_(i + 2), w0, wstride, off,   \
                        cig, plane, ksz, out + i * L, out + (i + 1) * L,               \
                        out + (i + 2) * L, ostride);                                   \
    for (; i < nreg; i += 2)                                                           \
        fc_k4x2_##S(FC_REG_(i), FC_REG_(i + 1), w0, wstride, off, cig, plane, ksz,     \
                    out + i * L, out + (i + 1) * L, ostride);                          \
}                                                                                      \
static void fc_tile4_##S(const T *x, const T *w0, const ptrdiff_t *off, ptrdiff_t cig, \
                         ptrdiff_t plane, ptrdiff_t ksz, ptrdiff_t wstride, T *out,    \
                         ptrdiff_t ostride)                                            \
{                                                                                      \
    for (int q = 0; q < FC_TILE / L; q += 2)                                           \
        fc_k4x2_##S(x + q * L, x + (q + 1) * L, w0, wstride, off, cig, plane, ksz,     \
                    out + q * L, out + (q + 1) * L, ostride);                          \
}                                                                                      \
static void fc_tile_##S(const T *x, const T *w, const ptrdiff_t *off, ptrdiff_t cig,   \
                        ptrdiff_t plane, ptrdiff_t ksz, T *out)                        \
{                                                                                      \
    const int L_ = L;                                                                  \
    FC_ONE_CHANNEL(T, S, L, FC_TILE / L, FC_TILE_BASE_, w, off, cig, plane, ksz, out); \
}                                                                                      \
static void fc_quad1_##S(const T *x, const T *w, const ptrdiff_t *off, ptrdiff_t cig,  \
                         ptrdiff_t plane, ptrdiff_t ksz, const ptrdiff_t *vb, T *out)  \
{                                                                                      \
    const int L_ = L;                                                                  \
    FC_ONE_CHANNEL(T, S, L, 4 * FC_G, FC_REG_, w, off, cig, plane, ksz, out);        \
}
#define FC_TILE_BASE_(i) (x + (i) * L_)
/* register i of granules at vb: granule i / FC_G, lanes (i % FC_G)*L of it */
#define FC_REG_(i) (x + vb[(i) / FC_G] + ((i) % FC_G) * L_)
FC_TILES(float, fc_vf, FC_LF, FC_VL_F32, f32)
FC_TILES(double, fc_vd, FC_LD, FC_VL_F64, f64)

/* Fold one accumulator to 4 lanes (fixed order) and add them into out[0..3]
 * (double). Shuffles, not memcpy or subscripts: taking the accumulator's
 * address, or indexing it, made GCC keep every accumulator of the block on the
 * stack inside the loop. */
typedef float fc_f32x4 __attribute__((vector_size(16)));
typedef double fc_f64x4 __attribute__((vector_size(32)));
static inline void fc_add4(fc_f64x4 v, double *out)
{
    fc_f64x4 o;
    memcpy(&o, out, sizeof(o));
    o += v;
    memcpy(out, &o, sizeof(o));
}
#if FC_RB == 64
static inline void fc_fold_float(fc_vf a, double *out)
{
    typedef float f8_ __attribute__((vector_size(32)));
    f8_ h = __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7)
            + __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
    fc_f32x4 q = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
    fc_add4(__builtin_convertvector(q, fc_f64x4), out);
}
static inline void fc_fold_double(fc_vd a, double *out)
{
    fc_add4(__builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7), out);
}
#elif FC_RB == 32
static inline void fc_fold_float(fc_vf a, double *out)
{
    fc_f32x4 q = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    fc_add4(__builtin_convertvector(q, fc_f64x4), out);
}
static inline void fc_fold_double(fc_vd a, double *out) { fc_add4(a, out); }
#else
static inline void fc_fold_float(fc_vf a, double *out)
{
    fc_add4(__builtin_convertvector(a, fc_f64x4), out);
}
static inline void fc_fold_double(fc_vd a, double *out)
{
    fc_vd z = {0, 0};
    fc_add4(__builtin_shufflevector(a, z, 0, 1, 2, 3), out);
}
#endif

/* grad_weight block; NR, NK compile-time. The body is written once for the
 * largest block (4 x 6) with named accumulators a<r><t>; the tests on NR and NK
 * are constant, so a smaller block compiles to its own accumulators only (an
 * array acc[NR][NK] was kept on the stack with 16 registers).
 * n is a multiple of the granule's lanes; out[(r*ostride + t)*FC_GW_ACC + l] +=
 * lane group l of a<r><t> (see fc_fold_*). */
#define FC_GW_FMA(t)                                                                      \
    if (NK_ > t) {                                                                         \
        memcpy(&v, x##t + i, sizeof(v));                                                  \
        FC_IN_REGISTER(v);                                                                \
        if (NR_ > 0) a0##t += g0 * v;                                                      \
        if (NR_ > 1) a1##t += g1 * v;                                                      \
        if (NR_ > 2) a2##t += g2 * v;                                                      \
        if (NR_ > 3) a3##t += g3 * v;                                                      \
    }
#define FC_GW_G(r)                                                                        \
    if (NR_ > r) { memcpy(&g##r, gy + r * gstride + i, sizeof(g##r)); FC_IN_REGISTER(g##r); }
#define FC_GW_FOLD(T, r, t)                                                               \
    if (NR_ > r && NK_ > t) fc_fold_##T(a##r##t, out + (r * ostride + t) * FC_GW_ACC);
#define FC_GW_FOLD_ROW(T, r) FC_GW_FOLD(T, r, 0) FC_GW_FOLD(T, r, 1) FC_GW_FOLD(T, r, 2)   \
    FC_GW_FOLD(T, r, 3) FC_GW_FOLD(T, r, 4) FC_GW_FOLD(T, r, 5)
#define FC_GW_BLOCK(T, VT, VL, NR, NK)                                                   \
static void fc_gw_##T##_##NR##_##NK(const T *x, const ptrdiff_t *off, const T *gy,       \
                                    ptrdiff_t gstride, ptrdiff_t n, double *out,          \
                                    ptrdiff_t ostride)                                    \
{                                                                                         \
    enum { NR_ = NR, NK_ = NK };                                                          \
    VT z, g0, g1, g2, g3, v;                                                              \
    memset(&z, 0, sizeof(z));                                                             \
    g0 = z; g1 = z; g2 = z; g3 = z;                                                       \
    VT a00 = z, a01 = z, a02 = z, a03 = z, a04 = z, a05 = z;                              \
    VT a10 = z, a11 = z, a12 = z, a13 = z, a14 = z, a15 = z;                              \
    VT a20 = z, a21 = z, a22 = z, a23 = z, a24 = z, a25 = z;                              \
    VT a30 = z, a31 = z, a32 = z, a33 = z, a34 = z, a35 = z;                              \
    const T *x0 = x + off[0];                                                             \
    const T *x1 = x + (NK > 1 ? off[1] : 0), *x2 = x + (NK > 2 ? off[2] : 0);              \
    const T *x3 = x + (NK > 3 ? off[3] : 0), *x4 = x + (NK > 4 ? off[4] : 0);              \
    const T *x5 = x + (NK > 5 ? off[5] : 0);                                              \
    for (ptrdiff_t i = 0; i < n; i += VL) {                                               \
        FC_GW_G(0) FC_GW_G(1) FC_GW_G(2) FC_GW_G(3)                                       \
        FC_GW_FMA(0) FC_GW_FMA(1) FC_GW_FMA(2) FC_GW_FMA(3) FC_GW_FMA(4) FC_GW_FMA(5)     \
    }                                                                                     \
    FC_GW_FOLD_ROW(T, 0) FC_GW_FOLD_ROW(T, 1) FC_GW_FOLD_ROW(T, 2) FC_GW_FOLD_ROW(T, 3)   \
}
#define FC_GW_ROW(T, VT, VL, NR)                                                  \
    FC_GW_BLOCK(T, VT, VL, NR, 1) FC_GW_BLOCK(T, VT, VL, NR, 2)                   \
    FC_GW_BLOCK(T, VT, VL, NR, 3) FC_GW_BLOCK(T, VT, VL, NR, 4)                   \
    FC_GW_BLOCK(T, VT, VL, NR, 5) FC_GW_BLOCK(T, VT, VL, NR, 6)
#define FC_GW_ALL(T, VT, VL) \
    FC_GW_ROW(T, VT, VL, 1) FC_GW_ROW(T, VT, VL, 2) FC_GW_ROW(T, VT, VL, 3) FC_GW_ROW(T, VT, VL, 4)
FC_GW_ALL(float, fc_vf, FC_LF)
FC_GW_ALL(double, fc_vd, FC_LD)
_Static_assert(FC_GW_NR_MAX == 4 && FC_GW_NK_MAX == 6, "fc_gw_* are instantiated for 1..4 x 1..6");
_Static_assert(FC_GW_ACC == 4, "fc_fold_* fold to 4 lanes");

#else  /* no vector extensions: plain loops with the same contracts */

#define FC_TILE_GENERIC(T, NAME)                                                     \
static inline void NAME(const T *x, const T *w, const ptrdiff_t *off, ptrdiff_t cig, \
                        ptrdiff_t plane, ptrdiff_t ksz, T *out)                      \
{                                                                                    \
    for (int j = 0; j < FC_TILE; j++) out[j] = 0;                                    \
    for (ptrdiff_t c = 0; c < cig; c++)                                              \
        for (ptrdiff_t k = 0; k < ksz; k++) {                                        \
            const T *p = x + c * plane + off[k];                                     \
            T wv = w[c * ksz + k];                                                   \
            for (int j = 0; j < FC_TILE; j++) out[j] += wv * p[j];                   \
        }                                                                            \
}
FC_TILE_GENERIC(float, fc_tile_f32)
FC_TILE_GENERIC(double, fc_tile_f64)
#define FC_TILE4_GENERIC(T, NAME, ONE)                                                \
static inline void NAME(const T *x, const T *w0, const ptrdiff_t *off, ptrdiff_t cig, \
                        ptrdiff_t plane, ptrdiff_t ksz, ptrdiff_t wstride, T *out,    \
                        ptrdiff_t ostride)                                            \
{                                                                                     \
    for (int r = 0; r < FC_OBLOCK; r++)                                               \
        ONE(x, w0 + r * wstride, off, cig, plane, ksz, out + r * ostride);            \
}
FC_TILE4_GENERIC(float, fc_tile4_f32, fc_tile_f32)
FC_TILE4_GENERIC(double, fc_tile4_f64, fc_tile_f64)
#define FC_PAIRS4_GENERIC(T, VL, NAME)                                                 \
static inline void NAME(const T *x, const T *w0, const ptrdiff_t *off, ptrdiff_t cig,  \
                        ptrdiff_t plane, ptrdiff_t ksz, ptrdiff_t wstride,             \
                        const ptrdiff_t *vb, ptrdiff_t ng, T *out, ptrdiff_t ostride)  \
{                                                                                      \
    for (int r = 0; r < 4; r++)                                                        \
        for (ptrdiff_t h = 0; h < ng; h++) {                                           \
            const T *xb = x + vb[h];                                                   \
            T *o = out + r * ostride + h * VL;                                         \
            for (int l = 0; l < VL; l++) o[l] = 0;                                     \
            for (ptrdiff_t c = 0; c < cig; c++)                                        \
                for (ptrdiff_t k = 0; k < ksz; k++) {                                  \
                    T wv = w0[r * wstride + c * ksz + k];                              \
                    for (int l = 0; l < VL; l++) o[l] += wv * xb[c * plane + off[k] + l]; \
                }                                                                      \
        }                                                                              \
}
#define FC_QUAD1_GENERIC(T, VL, NAME)                                                  \
static inline void NAME(const T *x, const T *w, const ptrdiff_t *off, ptrdiff_t cig,   \
                        ptrdiff_t plane, ptrdiff_t ksz, const ptrdiff_t *vb, T *out)   \
{                                                                                      \
    for (int v = 0; v < 4; v++) {                                                      \
        T *o = out + v * VL;                                                           \
        for (int l = 0; l < VL; l++) o[l] = 0;                                         \
        for (ptrdiff_t c = 0; c < cig; c++)                                            \
            for (ptrdiff_t k = 0; k < ksz; k++) {                                      \
                T wv = w[c * ksz + k];                                                 \
                for (int l = 0; l < VL; l++) o[l] += wv * x[vb[v] + c * plane + off[k] + l]; \
            }                                                                          \
    }                                                                                  \
}
FC_PAIRS4_GENERIC(float, FC_VL_F32, fc_pairs4_f32)
FC_PAIRS4_GENERIC(double, FC_VL_F64, fc_pairs4_f64)
FC_QUAD1_GENERIC(float, FC_VL_F32, fc_quad1_f32)
FC_QUAD1_GENERIC(double, FC_VL_F64, fc_quad1_f64)

#define FC_GW_GENERIC(T, VL)                                                              \
static void fc_gw_##T##_any(const T *x, const ptrdiff_t *off, const T *gy,                \
                            ptrdiff_t gstride, ptrdiff_t n, double *out, ptrdiff_t ostride,\
                            int nr, int nk)                                               \
{                                                                                         \
    for (int r = 0; r < nr; r++)                                                          \
        for (int t = 0; t < nk; t++)                                                      \
        {                                                                                 \
            T s = 0;                                                                      \
            for (ptrdiff_t i = 0; i < n; i++) s += gy[r * gstride + i] * x[off[t] + i];  \
            out[(r * ostride + t) * FC_GW_ACC] += (double)s;                              \
        }                                                                                 \
}
FC_GW_GENERIC(float, FC_VL_F32)
FC_GW_GENERIC(double, FC_VL_F64)
#endif

/* One grad_weight block of nr (1..FC_GW_NR_MAX) output channels x nk (1..FC_GW_NK_MAX) taps. */
#ifdef FC_HAVE_VEC
#define FC_GW_CASE(T, NR, NK) \
    case (NR) * 8 + (NK): fc_gw_##T##_##NR##_##NK(x, off, gy, gstride, n, out, ostride); break;
#define FC_GW_CASES(T, NR) FC_GW_CASE(T, NR, 1) FC_GW_CASE(T, NR, 2) FC_GW_CASE(T, NR, 3) \
    FC_GW_CASE(T, NR, 4) FC_GW_CASE(T, NR, 5) FC_GW_CASE(T, NR, 6)
#define FC_GW_DISPATCH(T)                                                                 \
static inline void fc_gw_##T(const T *x, const ptrdiff_t *off, const T *gy,               \
                             ptrdiff_t gstride, ptrdiff_t n, double *out,                 \
                             ptrdiff_t ostride, int nr, int nk)                           \
{                                                                                         \
    switch (nr * 8 + nk) {                                                                \
    FC_GW_CASES(T, 1) FC_GW_CASES(T, 2) FC_GW_CASES(T, 3) FC_GW_CASES(T, 4)               \
    default: break;                                                                       \
    }                                                                                     \
}
#else
#define FC_GW_DISPATCH(T)                                                                 \
static inline void fc_gw_##T(const T *x, const ptrdiff_t *off, const T *gy,               \
                             ptrdiff_t gstride, ptrdiff_t n, double *out,                 \
                             ptrdiff_t ostride, int nr, int nk)                           \
{ fc_gw_##T##_any(x, off, gy, gstride, n, out, ostride, nr, nk); }
#endif
FC_GW_DISPATCH(float)
FC_GW_DISPATCH(double)
#endif
