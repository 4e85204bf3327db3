/* Register-tiled inner blocks of the stride-1 direct kernels.
 *
 * Forward tile (also grad_input, which is a forward correlation of grad_output):
 *
 *   out[j] = sum_{c < cig, k < ksz} w[c*ksz + k] * x[c*plane + off[k] + j],  j < FC_TILE
 *
 * The FC_TILE accumulators live in registers for the whole (c, k) loop, so each
 * multiply-add costs one load (a quarter of one with four output channels).
 *
 * grad_weight block: NR output channels x NK taps of one input channel,
 *
 *   acc[r][t] = sum_{i < n} gy[r*gstride + i] * x[off[t] + i]
 *
 * as NR*NK vector accumulators over FC_VL(T) lanes: NR + NK loads feed NR*NK
 * multiply-adds (4 x 6: 10 loads, 24 multiply-adds, 29 of the 32 vector
 * registers); at the end of a call (one image's plane) each accumulator is
 * folded to FC_GW_ACC lanes in T and added into FC_GW_ACC doubles, so the full
 * horizontal sum happens once per weight, not once per call.
 *
 * GCC and Clang get explicit vector types (lowered to AVX-512, AVX2 or SSE as
 * the target allows); other compilers get plain loops. (GCC left to itself
 * vectorizes the forward loop nest across k with gathers, ten times slower.)
 */
#ifndef FASTCONV_DIRECT_TILE_H
#define FASTCONV_DIRECT_TILE_H
#include <string.h>
#include <stddef.h>

#define FC_TILE 64     /* outputs per forward register tile */
#define FC_OBLOCK 4    /* output channels per forward tile / grad_weight block */
#define FC_GW_TAPS 6   /* taps per grad_weight register block, at most */
#define FC_GW_ACC 4    /* double lanes kept per weight between grad_weight calls */
#define FC_GW_OCH 128  /* output channels per grad_weight task, at most (FC_OBLOCK per block) */
#define FC_VBYTES 64   /* bytes per grad_weight vector accumulator */
#define FC_VL_F32 (FC_VBYTES / 4)
#define FC_VL_F64 (FC_VBYTES / 8)

#if defined(__GNUC__) || defined(__clang__)
typedef float fc_f32x16 __attribute__((vector_size(64)));
typedef double fc_f64x8 __attribute__((vector_size(64)));
/* The tiles below spell out 16 float / 8 double lanes per vector, 4 vectors per tile. */
_Static_assert(sizeof(fc_f32x16) == 16 * sizeof(float), "16 float lanes");
_Static_assert(sizeof(fc_f64x8) == 8 * sizeof(double), "8 double lanes");
_Static_assert(FC_TILE == 4 * 16 && FC_TILE == 8 * 8, "a tile is 4 float / 8 double vectors");
_Static_assert(FC_VBYTES == sizeof(fc_f32x16), "grad_weight lanes = one vector");
_Static_assert(FC_OBLOCK == 4, "fc_tile4_* hold 4 output channels");

static inline void fc_tile_f32(const float *x, const float *w, const ptrdiff_t *off,
                               ptrdiff_t cig, ptrdiff_t plane, ptrdiff_t ksz, float *out)
{
    fc_f32x16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, v0, v1, v2, v3;
    for (ptrdiff_t c = 0; c < cig; c++) {
        const float *xc = x + c * plane;
        const float *wc = w + c * ksz;
        for (ptrdiff_t k = 0; k < ksz; k++) {
            const float *p = xc + off[k];
            float wv = wc[k];
            memcpy(&v0, p, 64); memcpy(&v1, p + 16, 64);
            memcpy(&v2, p + 32, 64); memcpy(&v3, p + 48, 64);
            a0 += wv * v0; a1 += wv * v1; a2 += wv * v2; a3 += wv * v3;
        }
    }
    memcpy(out, &a0, 64); memcpy(out + 16, &a1, 64);
    memcpy(out + 32, &a2, 64); memcpy(out + 48, &a3, 64);
}

/* Four output channels at once: each loaded input vector feeds four
 * multiply-adds, which cuts the cache traffic per flop by four.
 * w0 points at output channel 0's weights; channel r's are at w0 + r*wstride.
 * out[r*ostride + j] receives channel r's tile. */
static inline void fc_tile4_f32(const float *x, const float *w0, const ptrdiff_t *off,
                                ptrdiff_t cig, ptrdiff_t plane, ptrdiff_t ksz,
                                ptrdiff_t wstride, float *out, ptrdiff_t ostride)
{
    for (int half = 0; half < 2; half++) {
        fc_f32x16 a[4][2] = {{{0}}}, v0, v1;
        const float *xh = x + 32 * half;
        for (ptrdiff_t c = 0; c < cig; c++) {
            const float *xc = xh + c * plane;
            const float *wc = w0 + c * ksz;
            for (ptrdiff_t k = 0; k < ksz; k++) {
                const float *p = xc + off[k];
                memcpy(&v0, p, 64); memcpy(&v1, p + 16, 64);
                for (int r = 0; r < 4; r++) {
                    float wv = wc[r * wstride + k];
                    a[r][0] += wv * v0; a[r][1] += wv * v1;
                }
            }
        }
        for (int r = 0; r < 4; r++) {
            memcpy(out + r * ostride + 32 * half, &a[r][0], 64);
            memcpy(out + r * ostride + 32 * half + 16, &a[r][1], 64);
        }
    }
}

static inline void fc_tile4_f64(const double *x, const double *w0, const ptrdiff_t *off,
                                ptrdiff_t cig, ptrdiff_t plane, ptrdiff_t ksz,
                                ptrdiff_t wstride, double *out, ptrdiff_t ostride)
{
    for (int q = 0; q < 4; q++) {
        fc_f64x8 a[4][2] = {{{0}}}, v0, v1;
        const double *xq = x + 16 * q;
        for (ptrdiff_t c = 0; c < cig; c++) {
            const double *xc = xq + c * plane;
            const double *wc = w0 + c * ksz;
            for (ptrdiff_t k = 0; k < ksz; k++) {
                const double *p = xc + off[k];
                memcpy(&v0, p, 64); memcpy(&v1, p + 8, 64);
                for (int r = 0; r < 4; r++) {
                    double wv = wc[r * wstride + k];
                    a[r][0] += wv * v0; a[r][1] += wv * v1;
                }
            }
        }
        for (int r = 0; r < 4; r++) {
            memcpy(out + r * ostride + 16 * q, &a[r][0], 64);
            memcpy(out + r * ostride + 16 * q + 8, &a[r][1], 64);
        }
    }
}

static inline void fc_tile_f64(const double *x, const double *w, const ptrdiff_t *off,
                               ptrdiff_t cig, ptrdiff_t plane, ptrdiff_t ksz, double *out)
{
    fc_f64x8 a[8] = {{0}}, v;
    for (ptrdiff_t c = 0; c < cig; c++) {
        const double *xc = x + c * plane;
        const double *wc = w + c * ksz;
        for (ptrdiff_t k = 0; k < ksz; k++) {
            const double *p = xc + off[k];
            double wv = wc[k];
            for (int t = 0; t < 8; t++) {
                memcpy(&v, p + 8 * t, 64);
                a[t] += wv * v;
            }
        }
    }
    memcpy(out, a, 8 * 64);
}

/* Vector-list tiles: the same sums, but each vector of lanes has its own base
 * (an index into the buffer), so a tile may cover parts of several rows and
 * skip the padding columns between them (see _direct.pyx, "seg" layout).
 *
 *   fc_pair4_*: 4 output channels x 2 vectors at b0, b1;
 *               out[r*ostride + l] (vector b0), out[r*ostride + VL + l] (vector b1)
 *   fc_quad1_*: 1 output channel x 4 vectors at vb[0..3]; out[v*VL + l]
 */
#define FC_PAIR4(T, VT, VL, NAME)                                                      \
static inline void NAME(const T *x, const T *w0, const ptrdiff_t *off, ptrdiff_t cig,  \
                        ptrdiff_t plane, ptrdiff_t ksz, ptrdiff_t wstride, ptrdiff_t b0, \
                        ptrdiff_t b1, T *out, ptrdiff_t ostride)                       \
{                                                                                      \
    VT a[4][2], v0, v1;                                                                \
    memset(a, 0, sizeof(a));                                                           \
    const T *x0 = x + b0, *x1 = x + b1;                                                \
    for (ptrdiff_t c = 0; c < cig; c++) {                                              \
        const T *wc = w0 + c * ksz;                                                    \
        for (ptrdiff_t k = 0; k < ksz; k++) {                                          \
            memcpy(&v0, x0 + off[k], sizeof(VT)); memcpy(&v1, x1 + off[k], sizeof(VT)); \
            for (int r = 0; r < 4; r++) {                                              \
                T wv = wc[r * wstride + k];                                            \
                a[r][0] += wv * v0; a[r][1] += wv * v1;                                \
            }                                                                          \
        }                                                                              \
        x0 += plane; x1 += plane;                                                      \
    }                                                                                  \
    for (int r = 0; r < 4; r++) {                                                      \
        memcpy(out + r * ostride, &a[r][0], sizeof(VT));                               \
        memcpy(out + r * ostride + VL, &a[r][1], sizeof(VT));                          \
    }                                                                                  \
}
#define FC_QUAD1(T, VT, VL, NAME)                                                      \
static inline void NAME(const T *x, const T *w, const ptrdiff_t *off, ptrdiff_t cig,   \
                        ptrdiff_t plane, ptrdiff_t ksz, const ptrdiff_t *vb, T *out)   \
{                                                                                      \
    VT a0, a1, a2, a3, v0, v1, v2, v3;                                                 \
    memset(&a0, 0, sizeof(VT)); a1 = a0; a2 = a0; a3 = a0;                             \
    const T *x0 = x + vb[0], *x1 = x + vb[1], *x2 = x + vb[2], *x3 = x + vb[3];        \
    for (ptrdiff_t c = 0; c < cig; c++) {                                              \
        const T *wc = w + c * ksz;                                                     \
        for (ptrdiff_t k = 0; k < ksz; k++) {                                          \
            T wv = wc[k];                                                              \
            memcpy(&v0, x0 + off[k], sizeof(VT)); memcpy(&v1, x1 + off[k], sizeof(VT)); \
            memcpy(&v2, x2 + off[k], sizeof(VT)); memcpy(&v3, x3 + off[k], sizeof(VT)); \
            a0 += wv * v0; a1 += wv * v1; a2 += wv * v2; a3 += wv * v3;                \
        }                                                                              \
        x0 += plane; x1 += plane; x2 += plane; x3 += plane;                            \
    }                                                                                  \
    memcpy(out, &a0, sizeof(VT)); memcpy(out + VL, &a1, sizeof(VT));                   \
    memcpy(out + 2 * VL, &a2, sizeof(VT)); memcpy(out + 3 * VL, &a3, sizeof(VT));      \
}
FC_PAIR4(float, fc_f32x16, 16, fc_pair4_f32)
FC_PAIR4(double, fc_f64x8, 8, fc_pair4_f64)
FC_QUAD1(float, fc_f32x16, 16, fc_quad1_f32)
FC_QUAD1(double, fc_f64x8, 8, fc_quad1_f64)

/* Load once, use from a register: without this GCC folds the loads into every
 * multiply-add as memory operands (NR*NK loads instead of NR + NK per step).
 * Only with AVX-512: the hint is applied to 64-byte vectors, which no register
 * of a narrower instruction set holds ("impossible constraint": a portable or
 * AVX2 build failed to compile). */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__AVX512F__)
#define FC_IN_REGISTER(v) __asm__("" : "+x"(v))
#else
#define FC_IN_REGISTER(v) ((void)0)
#endif

typedef float fc_f32x8 __attribute__((vector_size(32)));
typedef float fc_f32x4 __attribute__((vector_size(16)));
typedef double fc_f64x4 __attribute__((vector_size(32)));

/* Fold one accumulator to 4 lanes (fixed order) and add them into out[0..3] (double).
 * Shuffles, not memcpy: taking the accumulator's address made GCC keep small
 * blocks' accumulators on the stack inside the loop. */
#if defined(__clang__) || __GNUC__ >= 12
#define FC_LO8(a) __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7)
#define FC_HI8(a) __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15)
#define FC_LO4(a) __builtin_shufflevector(a, a, 0, 1, 2, 3)
#define FC_HI4(a) __builtin_shufflevector(a, a, 4, 5, 6, 7)
static inline void fc_fold_float(fc_f32x16 a, double *out)
{
    fc_f32x8 h = FC_LO8(a) + FC_HI8(a);
    fc_f32x4 q = FC_LO4(h) + FC_HI4(h);
    fc_f64x4 o;
    memcpy(&o, out, 32);
    o += __builtin_convertvector(q, fc_f64x4);
    memcpy(out, &o, 32);
}
static inline void fc_fold_double(fc_f64x8 a, double *out)
{
    fc_f64x4 o;
    memcpy(&o, out, 32);
    o += FC_LO4(a) + FC_HI4(a);
    memcpy(out, &o, 32);
}
#else
static inline void fc_fold_float(fc_f32x16 a, double *out)
{
    fc_f32x8 h0, h1; fc_f32x4 q0, q1; fc_f64x4 o;
    memcpy(&h0, &a, 32); memcpy(&h1, (char *)&a + 32, 32);
    h0 += h1;
    memcpy(&q0, &h0, 16); memcpy(&q1, (char *)&h0 + 16, 16);
    q0 += q1;
    memcpy(&o, out, 32);
    o += __builtin_convertvector(q0, fc_f64x4);
    memcpy(out, &o, 32);
}
static inline void fc_fold_double(fc_f64x8 a, double *out)
{
    fc_f64x4 h0, h1, o;
    memcpy(&h0, &a, 32); memcpy(&h1, (char *)&a + 32, 32);
    memcpy(&o, out, 32);
    o += h0 + h1;
    memcpy(out, &o, 32);
}
#endif

/* grad_weight block; NR, NK compile-time so the accumulators stay in registers.
 * n is a multiple of the lane count; out[(r*ostride + t)*FC_GW_ACC + l] += lane
 * group l of acc[r][t] (see fc_fold_*). */
#define FC_GW_BLOCK(T, VT, VL, NR, NK)                                                   \
static void fc_gw_##T##_##NR##_##NK(const T *x, const ptrdiff_t *off, const T *gy,       \
                                    ptrdiff_t gstride, ptrdiff_t n, double *out,          \
                                    ptrdiff_t ostride)                                    \
{                                                                                         \
    VT acc[NR][NK], g[NR], v, zero;                                                       \
    const T *xt[NK];                                                                      \
    memset(&zero, 0, sizeof(zero));    /* (a memset of acc kept it in memory) */          \
    for (int r = 0; r < NR; r++)                                                          \
        for (int t = 0; t < NK; t++) acc[r][t] = zero;                                    \
    for (int t = 0; t < NK; t++) xt[t] = x + off[t];                                      \
    for (ptrdiff_t i = 0; i < n; i += VL) {                                               \
        for (int r = 0; r < NR; r++) {                                                    \
            memcpy(&g[r], gy + r * gstride + i, sizeof(VT));                              \
            FC_IN_REGISTER(g[r]);                                                         \
        }                                                                                 \
        for (int t = 0; t < NK; t++) {                                                    \
            memcpy(&v, xt[t] + i, sizeof(VT));                                            \
            FC_IN_REGISTER(v);                                                            \
            for (int r = 0; r < NR; r++) acc[r][t] += g[r] * v;                           \
        }                                                                                 \
    }                                                                                     \
    for (int r = 0; r < NR; r++)                                                          \
        for (int t = 0; t < NK; t++)                                                      \
            fc_fold_##T(acc[r][t], out + (r * ostride + t) * FC_GW_ACC);                  \
}
#define FC_GW_ROW(T, VT, VL, NR)                                                  \
    FC_GW_BLOCK(T, VT, VL, NR, 1) FC_GW_BLOCK(T, VT, VL, NR, 2)                   \
    FC_GW_BLOCK(T, VT, VL, NR, 3) FC_GW_BLOCK(T, VT, VL, NR, 4)                   \
    FC_GW_BLOCK(T, VT, VL, NR, 5) FC_GW_BLOCK(T, VT, VL, NR, 6)
#define FC_GW_ALL(T, VT, VL) \
    FC_GW_ROW(T, VT, VL, 1) FC_GW_ROW(T, VT, VL, 2) FC_GW_ROW(T, VT, VL, 3) FC_GW_ROW(T, VT, VL, 4)
FC_GW_ALL(float, fc_f32x16, 16)
FC_GW_ALL(double, fc_f64x8, 8)
_Static_assert(FC_GW_TAPS == 6, "fc_gw_* are instantiated for 1..6 taps");
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
#define FC_PAIR4_GENERIC(T, VL, NAME)                                                  \
static inline void NAME(const T *x, const T *w0, const ptrdiff_t *off, ptrdiff_t cig,  \
                        ptrdiff_t plane, ptrdiff_t ksz, ptrdiff_t wstride, ptrdiff_t b0, \
                        ptrdiff_t b1, T *out, ptrdiff_t ostride)                       \
{                                                                                      \
    for (int r = 0; r < 4; r++)                                                        \
        for (int h = 0; h < 2; h++) {                                                  \
            const T *xb = x + (h ? b1 : b0);                                           \
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
FC_PAIR4_GENERIC(float, FC_VL_F32, fc_pair4_f32)
FC_PAIR4_GENERIC(double, FC_VL_F64, fc_pair4_f64)
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

/* One grad_weight block of nr (1..FC_OBLOCK) output channels x nk (1..FC_GW_TAPS) taps. */
#if defined(__GNUC__) || defined(__clang__)
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
#define fc_gw_f32 fc_gw_float
#define fc_gw_f64 fc_gw_double
#endif
