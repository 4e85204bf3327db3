/* Register-resident tile transforms of the Winograd strategy (pyx/_winograd.pyx)
 * for square tiles, alpha = 4, 6, 8 (F(2x2), F(4x4), F(6x6)), one vector
 * register of channels at a time (compiled once per instruction-set level, see
 * pyx/_kern.c: a vector wider than the level's registers would live in memory,
 * and GCC takes minutes to lower the unrolled transforms written in one).
 *
 * Why: the generic transforms (_in_tile/_out_tile) are chains of scaled vector
 * adds of C elements through a tmp buffer in memory, one call per nonzero
 * coefficient. With 16-32 channels every add is one or two vectors, so loop
 * set-up, the load/store of the accumulator and the run-time zero tests cost
 * more than the arithmetic: on conv3d (4, 16, 32^3) -> 32 they took about 60%
 * of a forward call against 25% for the GEMMs. Here the coefficient matrices
 * are compile-time constants (the loops unroll completely, zero coefficients
 * vanish, +-1 become adds), the intermediate stays in registers or a small
 * stack block, and each tile input/output is loaded/stored once.
 *
 * The tables repeat _wino_matrices.matrices(m); wg_tf_match() checks at set-up
 * that the caller's matrices are these (else the generic code runs). The
 * arithmetic is that of the generic code: the same coefficients rounded to the
 * data type, summed in the same order.
 *
 * grad_weight's transform of grad_output (WG_GY_TILE) is the adjoint of the
 * output transform, on the same terms.
 *
 * Channel count must be a multiple of the vector length (the caller checks). */
#ifndef FASTCONV_WINOGRAD_TF_H
#define FASTCONV_WINOGRAD_TF_H
#include <stddef.h>
#include <string.h>
#include "_simd.h"

static const double WG_BT4[4][4] = {
    {-1, 0, 1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, -1, 0, 1}};
static const double WG_AT4[2][4] = {{1, 1, 1, 0}, {0, 1, -1, 1}};
static const double WG_BT6[6][6] = {
    {4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const double WG_AT6[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
static const double WG_BT8[8][8] = {
    {-1, 0, 5.25, 0, -5.25, 0, 1, 0}, {0, 1, 1, -4.25, -4.25, 1, 1, 0},
    {0, -1, 1, 4.25, -4.25, -1, 1, 0}, {0, 0.5, 0.25, -2.5, -1.25, 2, 1, 0},
    {0, -0.5, 0.25, 2.5, -1.25, -2, 1, 0}, {0, 2, 4, -2.5, -5, 0.5, 1, 0},
    {0, -2, 4, 2.5, -5, -0.5, 1, 0}, {0, -1, 0, 5.25, 0, -5.25, 0, 1}};
static const double WG_AT8[6][8] = {
    {1, 1, 1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0.5, -0.5, 0},
    {0, 1, 1, 4, 4, 0.25, 0.25, 0}, {0, 1, -1, 8, -8, 0.125, -0.125, 0},
    {0, 1, 1, 16, 16, 0.0625, 0.0625, 0}, {0, 1, -1, 32, -32, 0.03125, -0.03125, 1}};

/* 1 when (bt: alpha x alpha, at stored transposed as the set-up does: at[j*alpha + i]
 * = AT[j][i]) are this header's tables for ``alpha`` */
static int wg_tf_match(int alpha, const double *bt, const double *at)
{
    const double *B, *A;
    int m = alpha - 2;
    switch (alpha) {
    case 4: B = &WG_BT4[0][0]; A = &WG_AT4[0][0]; break;
    case 6: B = &WG_BT6[0][0]; A = &WG_AT6[0][0]; break;
    case 8: B = &WG_BT8[0][0]; A = &WG_AT8[0][0]; break;
    default: return 0;
    }
    for (int i = 0; i < alpha * alpha; i++)
        if (bt[i] != B[i]) return 0;
    for (int i = 0; i < m * alpha; i++)
        if (at[i] != A[i]) return 0;
    return 1;
}

#ifdef FC_HAVE_VEC
#define WG_HAVE_TF 1
/* one register of the level (pyx/_simd.h) */
typedef float wg_vf __attribute__((vector_size(FC_RB)));
typedef double wg_vd __attribute__((vector_size(FC_RB)));
#define WG_UNROLL _Pragma("GCC unroll 8")

/* acc = sum over k_ < N of COEF * X (both written in terms of k_), skipping the
 * zero coefficients: the matrices are compile-time constants, so after unrolling
 * only the nonzero terms are emitted, the first one without an addition. */
#define WG_COMBINE(acc, T, N, COEF, X)                                                 \
    do {                                                                               \
        int first_ = 1;                                                                \
        WG_UNROLL for (int k_ = 0; k_ < (N); k_++) {                                   \
            if ((COEF) != 0) {                                                         \
                if (first_) acc = (T)(COEF) * (X);                                     \
                else acc += (T)(COEF) * (X);                                           \
                first_ = 0;                                                            \
            }                                                                          \
        }                                                                              \
    } while (0)

/* V[(i*A + j)*ps] = (B^T d B)[i][j] for the tile at (h0, w0) of plane (H, W, C),
 * zero outside the plane; lanes c0..c0+VL of every position. */
#define WG_IN_TILE(NAME, T, VT, A, BT)                                                 \
static inline __attribute__((always_inline))                                          \
void NAME(const T *plane, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C, ptrdiff_t h0,         \
          ptrdiff_t w0, T *v, ptrdiff_t ps)                                            \
{                                                                                      \
    const int VL = sizeof(VT) / sizeof(T);                                             \
    const int inside = h0 >= 0 && h0 + A <= H && w0 >= 0 && w0 + A <= W;              \
    VT t[A][A];                                                                        \
    for (ptrdiff_t c0 = 0; c0 < C; c0 += VL) {                                         \
        WG_UNROLL for (int s = 0; s < A; s++) {                                        \
            VT x[A];                                                                   \
            const ptrdiff_t w = w0 + s;                                                \
            WG_UNROLL for (int r = 0; r < A; r++) {                                    \
                const ptrdiff_t h = h0 + r;                                            \
                if (inside || (h >= 0 && h < H && w >= 0 && w < W))                    \
                    memcpy(&x[r], plane + (h * W + w) * C + c0, sizeof(VT));           \
                else                                                                   \
                    x[r] = (VT){0};                                                    \
            }                                                                          \
            WG_UNROLL for (int i = 0; i < A; i++) {                                    \
                VT acc = {0}; WG_COMBINE(acc, T, A, BT[i][k_], x[k_]);                 \
                t[i][s] = acc;                                                         \
            }                                                                          \
        }                                                                              \
        WG_UNROLL for (int i = 0; i < A; i++)                                          \
            WG_UNROLL for (int j = 0; j < A; j++) {                                    \
                VT acc = {0}; WG_COMBINE(acc, T, A, BT[j][k_], t[i][k_]);              \
                memcpy(v + (i * A + j) * ps + c0, &acc, sizeof(VT));                   \
            }                                                                          \
    }                                                                                  \
}

/* plane (OH, OW, CO) tile at (h0, w0) = A^T M A, cropped; M[(i*A + j)*ps + co] */
#define WG_OUT_TILE(NAME, T, VT, A, AT)                                                \
static inline __attribute__((always_inline))                                          \
void NAME(const T *m, ptrdiff_t ps, T *plane, ptrdiff_t OH, ptrdiff_t OW,              \
          ptrdiff_t CO, ptrdiff_t h0, ptrdiff_t w0)                                    \
{                                                                                      \
    const int VL = sizeof(VT) / sizeof(T), MM = A - 2;                                 \
    VT u[A][A - 2];                                                                    \
    for (ptrdiff_t c0 = 0; c0 < CO; c0 += VL) {                                        \
        WG_UNROLL for (int i = 0; i < A; i++) {                                        \
            VT x[A];                                                                   \
            WG_UNROLL for (int j = 0; j < A; j++)                                      \
                memcpy(&x[j], m + (i * A + j) * ps + c0, sizeof(VT));                  \
            WG_UNROLL for (int r = 0; r < MM; r++) {                                   \
                VT acc = {0}; WG_COMBINE(acc, T, A, AT[r][k_], x[k_]);                 \
                u[i][r] = acc;                                                         \
            }                                                                          \
        }                                                                              \
        WG_UNROLL for (int q = 0; q < MM; q++) {                                       \
            if (h0 + q >= OH) break;                                                   \
            WG_UNROLL for (int r = 0; r < MM; r++) {                                   \
                if (w0 + r >= OW) break;                                               \
                VT acc = {0}; WG_COMBINE(acc, T, A, AT[q][k_], u[k_][r]);              \
                memcpy(plane + ((h0 + q) * OW + w0 + r) * CO + c0, &acc, sizeof(VT)); \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
}

/* adjoint of WG_OUT_TILE: M[(i*A + j)*ps] = (A gy A^T)[i][j] for the tile at (h0, w0)
 * of plane (OH, OW, CO), gy zero outside the plane */
#define WG_GY_TILE(NAME, T, VT, A, AT)                                                 \
static inline __attribute__((always_inline))                                          \
void NAME(const T *plane, ptrdiff_t OH, ptrdiff_t OW, ptrdiff_t CO, ptrdiff_t h0,      \
          ptrdiff_t w0, T *m, ptrdiff_t ps)                                            \
{                                                                                      \
    const int VL = sizeof(VT) / sizeof(T), MM = A - 2;                                 \
    VT t[A][A - 2];                                                                    \
    for (ptrdiff_t c0 = 0; c0 < CO; c0 += VL) {                                        \
        WG_UNROLL for (int r = 0; r < MM; r++) {                                       \
            VT x[A - 2];                                                               \
            WG_UNROLL for (int q = 0; q < MM; q++) {                                   \
                if (h0 + q < OH && w0 + r < OW)                                        \
                    memcpy(&x[q], plane + ((h0 + q) * OW + w0 + r) * CO + c0, sizeof(VT)); \
                else                                                                   \
                    x[q] = (VT){0};                                                    \
            }                                                                          \
            WG_UNROLL for (int i = 0; i < A; i++) {                                    \
                VT acc = {0}; WG_COMBINE(acc, T, MM, AT[k_][i], x[k_]);                \
                t[i][r] = acc;                                                         \
            }                                                                          \
        }                                                                              \
        WG_UNROLL for (int i = 0; i < A; i++)                                          \
            WG_UNROLL for (int j = 0; j < A; j++) {                                    \
                VT acc = {0}; WG_COMBINE(acc, T, MM, AT[k_][j], t[i][k_]);             \
                memcpy(m + (i * A + j) * ps + c0, &acc, sizeof(VT));                   \
            }                                                                          \
    }                                                                                  \
}

/* every tile size of one (data type, vector) pair, and dispatchers on alpha */
#define WG_TF_SET(SFX, T, VT)                                                          \
WG_IN_TILE(wg_in4_##SFX, T, VT, 4, WG_BT4)                                             \
WG_IN_TILE(wg_in6_##SFX, T, VT, 6, WG_BT6)                                             \
WG_IN_TILE(wg_in8_##SFX, T, VT, 8, WG_BT8)                                             \
WG_OUT_TILE(wg_out4_##SFX, T, VT, 4, WG_AT4)                                           \
WG_OUT_TILE(wg_out6_##SFX, T, VT, 6, WG_AT6)                                           \
WG_OUT_TILE(wg_out8_##SFX, T, VT, 8, WG_AT8)                                           \
WG_GY_TILE(wg_gy4_##SFX, T, VT, 4, WG_AT4)                                             \
WG_GY_TILE(wg_gy6_##SFX, T, VT, 6, WG_AT6)                                             \
WG_GY_TILE(wg_gy8_##SFX, T, VT, 8, WG_AT8)                                             \
static void wg_in_tile_##SFX(int A, const T *plane, ptrdiff_t H, ptrdiff_t W,          \
                             ptrdiff_t C, ptrdiff_t h0, ptrdiff_t w0, T *v, ptrdiff_t ps) \
{                                                                                      \
    switch (A) {                                                                       \
    case 4: wg_in4_##SFX(plane, H, W, C, h0, w0, v, ps); break;                        \
    case 6: wg_in6_##SFX(plane, H, W, C, h0, w0, v, ps); break;                        \
    default: wg_in8_##SFX(plane, H, W, C, h0, w0, v, ps); break;                       \
    }                                                                                  \
}                                                                                      \
static void wg_out_tile_##SFX(int A, const T *m, ptrdiff_t ps, T *plane, ptrdiff_t OH, \
                              ptrdiff_t OW, ptrdiff_t CO, ptrdiff_t h0, ptrdiff_t w0)  \
{                                                                                      \
    switch (A) {                                                                       \
    case 4: wg_out4_##SFX(m, ps, plane, OH, OW, CO, h0, w0); break;                    \
    case 6: wg_out6_##SFX(m, ps, plane, OH, OW, CO, h0, w0); break;                    \
    default: wg_out8_##SFX(m, ps, plane, OH, OW, CO, h0, w0); break;                   \
    }                                                                                  \
}                                                                                      \
static void wg_gy_tile_##SFX(int A, const T *plane, ptrdiff_t OH, ptrdiff_t OW,        \
                             ptrdiff_t CO, ptrdiff_t h0, ptrdiff_t w0, T *m, ptrdiff_t ps) \
{                                                                                      \
    switch (A) {                                                                       \
    case 4: wg_gy4_##SFX(plane, OH, OW, CO, h0, w0, m, ps); break;                     \
    case 6: wg_gy6_##SFX(plane, OH, OW, CO, h0, w0, m, ps); break;                     \
    default: wg_gy8_##SFX(plane, OH, OW, CO, h0, w0, m, ps); break;                    \
    }                                                                                  \
}

/* Vectors of one register: float32 16 lanes with AVX-512 (8, one ymm, when the
 * channels are a multiple of 8 but not of 16), 8 with AVX2, 4 with SSE2; float64
 * half as many. The "f8" variant is the one the caller takes for float lanes
 * other than 16; below AVX-512 it is the only one (pyx/_kern.c). */
#if FC_RB == 64
typedef float wg_vf8 __attribute__((vector_size(32)));
WG_TF_SET(f, float, wg_vf)
WG_TF_SET(f8, float, wg_vf8)
static int wg_tf_lanes_f(ptrdiff_t n) { return n % 16 == 0 ? 16 : (n % 8 == 0 ? 8 : 0); }
#else
WG_TF_SET(f8, float, wg_vf)
static int wg_tf_lanes_f(ptrdiff_t n) { return n % FC_LF == 0 ? FC_LF : 0; }
#endif
WG_TF_SET(d, double, wg_vd)
static int wg_tf_lanes_d(ptrdiff_t n) { return n % FC_LD == 0 ? FC_LD : 0; }
#else
#define WG_TF_STUBS(SFX, T)                                                            \
static void wg_in_tile_##SFX(int A, const T *plane, ptrdiff_t H, ptrdiff_t W,          \
                             ptrdiff_t C, ptrdiff_t h0, ptrdiff_t w0, T *v, ptrdiff_t ps) {} \
static void wg_out_tile_##SFX(int A, const T *m, ptrdiff_t ps, T *plane, ptrdiff_t OH, \
                              ptrdiff_t OW, ptrdiff_t CO, ptrdiff_t h0, ptrdiff_t w0) {} \
static void wg_gy_tile_##SFX(int A, const T *plane, ptrdiff_t OH, ptrdiff_t OW,        \
                             ptrdiff_t CO, ptrdiff_t h0, ptrdiff_t w0, T *m, ptrdiff_t ps) {}
WG_TF_STUBS(f, float)
WG_TF_STUBS(f8, float)
WG_TF_STUBS(d, double)
static int wg_tf_lanes_f(ptrdiff_t n) { return 0; }
static int wg_tf_lanes_d(ptrdiff_t n) { return 0; }
#endif
#endif
