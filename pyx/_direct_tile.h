/* Register-tiled inner block of the stride-1 direct kernel.
 *
 * out[j] = sum_{c < cig, k < ksz} w[c*ksz + k] * x[c*plane + off[k] + j],  j < 64
 *
 * The 64 accumulators live in registers for the whole (c, k) loop, so each
 * multiply-add costs one load. GCC and Clang get explicit vector types
 * (lowered to AVX-512, AVX2 or SSE as the target allows); other compilers get
 * the plain loop. (GCC left to itself vectorizes this loop nest across k with
 * gathers, ten times slower.)
 */
#ifndef FASTCONV_DIRECT_TILE_H
#define FASTCONV_DIRECT_TILE_H
#include <string.h>
#include <stddef.h>

#define FC_TILE 64

#if defined(__GNUC__) || defined(__clang__)
typedef float fc_f32x16 __attribute__((vector_size(64)));
typedef double fc_f64x8 __attribute__((vector_size(64)));

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
#else
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
    for (int r = 0; r < 4; r++)                                                       \
        ONE(x, w0 + r * wstride, off, cig, plane, ksz, out + r * ostride);            \
}
FC_TILE4_GENERIC(float, fc_tile4_f32, fc_tile_f32)
FC_TILE4_GENERIC(double, fc_tile4_f64, fc_tile_f64)
#endif
#endif
