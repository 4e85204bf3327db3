/* Kernel (un)transforms of the Winograd strategy, one block of 16 x 16 channels
 * at a time (pyx/_winograd.pyx). Arithmetic in double; w and U in float or double.
 *
 * The old per-(row, 16 columns) loop gathered the 9 taps of 16 output channels
 * from 16 rows of w lying C_in*9 elements apart, one block per U row: the block
 * of 16 output x 16 input channels reads 16 contiguous runs of 16*KD*K2 elements
 * instead, transposes them in a small scratch (L1/L2) and then transforms 16 rows
 * of U with 16 lanes each. */
#ifndef FASTCONV_WINOGRAD_KT_H
#define FASTCONV_WINOGRAD_KT_H
#include <stddef.h>
#include <string.h>

/* res[i*aw + j][l] = sum_a gh[i, a] sum_b gw[j, b] t[a*KW + b][l], 16 lanes */
static inline void wg_kt16(const double *restrict t, ptrdiff_t KH, ptrdiff_t KW,
                           const double *restrict gh, ptrdiff_t ah,
                           const double *restrict gw, ptrdiff_t aw,
                           double *restrict tk, double *restrict res)
{
    for (ptrdiff_t a = 0; a < KH; a++)
        for (ptrdiff_t j = 0; j < aw; j++) {
            double *d = tk + (a * aw + j) * 16;
            for (int l = 0; l < 16; l++) d[l] = 0;
            for (ptrdiff_t b = 0; b < KW; b++) {
                const double *s = t + (a * KW + b) * 16;
                double g = gw[j * KW + b];
                for (int l = 0; l < 16; l++) d[l] += g * s[l];
            }
        }
    for (ptrdiff_t i = 0; i < ah; i++)
        for (ptrdiff_t j = 0; j < aw; j++) {
            double *d = res + (i * aw + j) * 16;
            for (int l = 0; l < 16; l++) d[l] = 0;
            for (ptrdiff_t a = 0; a < KH; a++) {
                const double *s = tk + (a * aw + j) * 16;
                double g = gh[i * KH + a];
                for (int l = 0; l < 16; l++) d[l] += g * s[l];
            }
        }
}

/* out[a*KW + b][l] = sum_i gh[i, a] sum_j gw[j, b] du[i*aw + j][l] (the adjoint) */
static inline void wg_kut16(const double *restrict du, ptrdiff_t KH, ptrdiff_t KW,
                            const double *restrict gh, ptrdiff_t ah,
                            const double *restrict gw, ptrdiff_t aw,
                            double *restrict tk, double *restrict out)
{
    for (ptrdiff_t i = 0; i < ah; i++)
        for (ptrdiff_t b = 0; b < KW; b++) {
            double *d = tk + (i * KW + b) * 16;
            for (int l = 0; l < 16; l++) d[l] = 0;
            for (ptrdiff_t j = 0; j < aw; j++) {
                const double *s = du + (i * aw + j) * 16;
                double g = gw[j * KW + b];
                for (int l = 0; l < 16; l++) d[l] += g * s[l];
            }
        }
    for (ptrdiff_t a = 0; a < KH; a++)
        for (ptrdiff_t b = 0; b < KW; b++) {
            double *d = out + (a * KW + b) * 16;
            for (int l = 0; l < 16; l++) d[l] = 0;
            for (ptrdiff_t i = 0; i < ah; i++) {
                const double *s = tk + (i * KW + b) * 16;
                double g = gh[i * KH + a];
                for (int l = 0; l < 16; l++) d[l] += g * s[l];
            }
        }
}

/* 3x3 kernels (the common case): the same arithmetic, in the same order, on
 * 8-lane vectors held in registers (the generic loops above keep tk and res in
 * memory: three L1 accesses per multiply-add made the transform 5x a copy of U).
 * AH, AW are constants at every call site, so the loops unroll completely. */
#if defined(__GNUC__)
#define WG_HAVE_V8 1
typedef double wg_v8d __attribute__((vector_size(64)));
typedef float wg_v8f __attribute__((vector_size(32)));

static inline __attribute__((always_inline))
void wg_kt3_core(const double *restrict t, const double *restrict gh,
                 const double *restrict gw, const int AH, const int AW,
                 double *restrict res)
{
    wg_v8d tk[3][8], x[9];
    for (int k = 0; k < 9; k++) memcpy(&x[k], t + k * 16, sizeof(wg_v8d));
    for (int a = 0; a < 3; a++)
        for (int j = 0; j < AW; j++) {
            wg_v8d d = gw[j * 3] * x[a * 3];
            d += gw[j * 3 + 1] * x[a * 3 + 1];
            d += gw[j * 3 + 2] * x[a * 3 + 2];
            tk[a][j] = d;
        }
    for (int i = 0; i < AH; i++)
        for (int j = 0; j < AW; j++) {
            wg_v8d d = gh[i * 3] * tk[0][j];
            d += gh[i * 3 + 1] * tk[1][j];
            d += gh[i * 3 + 2] * tk[2][j];
            memcpy(res + (i * AW + j) * 16, &d, sizeof d);
        }
}

static inline __attribute__((always_inline))
void wg_kut3_core(const double *restrict du, const double *restrict gh,
                  const double *restrict gw, const int AH, const int AW,
                  double *restrict out)
{
    wg_v8d tk[8][3];
    for (int i = 0; i < AH; i++)
        for (int b = 0; b < 3; b++) {
            wg_v8d d = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int j = 0; j < AW; j++) {
                wg_v8d s;
                memcpy(&s, du + (i * AW + j) * 16, sizeof s);
                d += gw[j * 3 + b] * s;
            }
            tk[i][b] = d;
        }
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            wg_v8d d = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int i = 0; i < AH; i++) d += gh[i * 3 + a] * tk[i][b];
            memcpy(out + (a * 3 + b) * 16, &d, sizeof d);
        }
}

/* both 8-lane halves of a 16-lane block; 1 when handled */
static inline int wg_kt3(const double *t, ptrdiff_t KH, ptrdiff_t KW, const double *gh,
                         ptrdiff_t ah, const double *gw, ptrdiff_t aw, double *res)
{
    if (KH != 3 || KW != 3 || ah != aw) return 0;
    for (int h = 0; h < 16; h += 8) {
        switch (ah) {
        case 4: wg_kt3_core(t + h, gh, gw, 4, 4, res + h); break;
        case 6: wg_kt3_core(t + h, gh, gw, 6, 6, res + h); break;
        case 8: wg_kt3_core(t + h, gh, gw, 8, 8, res + h); break;
        default: return 0;
        }
    }
    return 1;
}

static inline int wg_kut3(const double *du, ptrdiff_t KH, ptrdiff_t KW, const double *gh,
                          ptrdiff_t ah, const double *gw, ptrdiff_t aw, double *out)
{
    if (KH != 3 || KW != 3 || ah != aw) return 0;
    for (int h = 0; h < 16; h += 8) {
        switch (ah) {
        case 4: wg_kut3_core(du + h, gh, gw, 4, 4, out + h); break;
        case 6: wg_kut3_core(du + h, gh, gw, 6, 6, out + h); break;
        case 8: wg_kut3_core(du + h, gh, gw, 8, 8, out + h); break;
        default: return 0;
        }
    }
    return 1;
}
#else
static inline int wg_kt3(const double *t, ptrdiff_t KH, ptrdiff_t KW, const double *gh,
                         ptrdiff_t ah, const double *gw, ptrdiff_t aw, double *res)
{ return 0; }
static inline int wg_kut3(const double *du, ptrdiff_t KH, ptrdiff_t KW, const double *gh,
                          ptrdiff_t ah, const double *gw, ptrdiff_t aw, double *out)
{ return 0; }
#endif

/* 16 float32 lanes of U from res; ``stream``: non-temporal when aligned (a U far
 * larger than the caches is written once and read back by BLAS much later: the
 * read-for-ownership of every line was most of the transform's time). */
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#include <stdint.h>
static inline void wg_store16_f(float *u, const double *res, int stream)
{
    __m512 v = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_loadu_pd(res))),
                                  _mm512_cvtpd_ps(_mm512_loadu_pd(res + 8)), 1);
    if (stream && ((uintptr_t)u & 63) == 0) _mm512_stream_ps(u, v);
    else _mm512_storeu_ps(u, v);
}
static inline void wg_sfence(void) { _mm_sfence(); }
#else
static inline void wg_store16_f(float *u, const double *res, int stream)
{
    (void)stream;
    for (int l = 0; l < 16; l++) u[l] = (float)res[l];
}
static inline void wg_sfence(void) {}
#endif
static inline void wg_store16_d(double *u, const double *res, int stream)
{
    (void)stream;
    for (int l = 0; l < 16; l++) u[l] = res[l];
}

/* Block (o0..o0+no) x (c0..c0+nc) of w (CO, CIG, KD, KH, KW); o0 within group grp.
 * Forward: U[p][grp][kd*CIG + c][o - grp*COG], lanes over o.
 * Adjoint: U[p][grp][kd'*COG + o - grp*COG][c], kd' = KD-1-kd, taps reversed,
 * lanes over c. scratch: 16*16*KD*K2 + (MAXP + 3*8) * 16 doubles. */
#define WG_KT_BLOCK(NAME, T, STORE16)                                                 \
static void NAME(const T *w, ptrdiff_t CIG, ptrdiff_t COG, ptrdiff_t KD,              \
                 ptrdiff_t KH, ptrdiff_t KW, const double *gh, ptrdiff_t ah,          \
                 const double *gw, ptrdiff_t aw, int adjoint, ptrdiff_t grp,           \
                 ptrdiff_t o0, ptrdiff_t no, ptrdiff_t c0, ptrdiff_t nc,               \
                 T *U, ptrdiff_t pstride, double *scratch, int stream)                 \
{                                                                                      \
    ptrdiff_t K2 = KH * KW, KK = KD * K2, P = ah * aw, G = pstride;                    \
    double *blk = scratch, *tk = blk + 16 * 16 * KK, *res = tk + 8 * 8 * 16;           \
    ptrdiff_t nl = adjoint ? nc : no, nr = adjoint ? no : nc, co = adjoint ? CIG : COG; \
    ptrdiff_t nrows = KD * (adjoint ? COG : CIG);                                      \
    (void)G;                                                                           \
    if (nl < 16) memset(blk, 0, 16 * 16 * KK * sizeof(double));                        \
    for (ptrdiff_t oo = 0; oo < no; oo++) {                                            \
        const T *src = w + ((grp * COG + o0 + oo) * CIG + c0) * KK;                    \
        if (!adjoint) {                                                                \
            for (ptrdiff_t q = 0; q < nc * KK; q++) blk[q * 16 + oo] = src[q];         \
        } else {                                                                       \
            for (ptrdiff_t cc = 0; cc < nc; cc++)                                      \
                for (ptrdiff_t q = 0; q < KK; q++)                                     \
                    blk[(oo * KK + KK - 1 - q) * 16 + cc] = src[cc * KK + q];          \
        }                                                                              \
    }                                                                                  \
    for (ptrdiff_t r = 0; r < nr; r++)                                                 \
        for (ptrdiff_t kd = 0; kd < KD; kd++) {                                        \
            if (!wg_kt3(blk + (r * KK + kd * K2) * 16, KH, KW, gh, ah, gw, aw, res))   \
                wg_kt16(blk + (r * KK + kd * K2) * 16, KH, KW, gh, ah, gw, aw, tk, res); \
            ptrdiff_t row = kd * (adjoint ? COG : CIG) + (adjoint ? o0 : c0) + r;      \
            T *u = U + (grp * nrows + row) * co + (adjoint ? c0 : o0);                 \
            if (nl == 16) {                                                            \
                for (ptrdiff_t p = 0; p < P; p++)                                      \
                    STORE16(u + p * pstride, res + p * 16, stream);                    \
            } else {                                                                   \
                for (ptrdiff_t p = 0; p < P; p++)                                      \
                    for (ptrdiff_t l = 0; l < nl; l++)                                 \
                        u[p * pstride + l] = (T)res[p * 16 + l];                       \
            }                                                                          \
        }                                                                              \
}

/* Adjoint of the forward block: dw[grp*COG + o][c][kd] from dU[p][grp][kd*CIG + c][o],
 * o in o0..o0+no (lanes), c in c0..c0+nc. */
#define WG_KUT_BLOCK(NAME, T)                                                         \
static void NAME(const T *dU, ptrdiff_t CIG, ptrdiff_t COG, ptrdiff_t KD,             \
                 ptrdiff_t KH, ptrdiff_t KW, const double *gh, ptrdiff_t ah,          \
                 const double *gw, ptrdiff_t aw, ptrdiff_t grp,                        \
                 ptrdiff_t o0, ptrdiff_t no, ptrdiff_t c0, ptrdiff_t nc,               \
                 T *dw, ptrdiff_t pstride, double *scratch)                            \
{                                                                                      \
    ptrdiff_t K2 = KH * KW, KK = KD * K2, P = ah * aw;                                 \
    double *blk = scratch, *du = blk + 16 * 16 * KK, *tk = du + 8 * 8 * 16;           \
    if (no < 16) memset(du, 0, P * 16 * sizeof(double));                              \
    for (ptrdiff_t cc = 0; cc < nc; cc++)                                              \
        for (ptrdiff_t kd = 0; kd < KD; kd++) {                                        \
            const T *s = dU + (grp * KD * CIG + kd * CIG + c0 + cc) * COG + o0;        \
            if (no == 16) {                                                            \
                for (ptrdiff_t p = 0; p < P; p++)                                      \
                    for (int l = 0; l < 16; l++) du[p * 16 + l] = s[p * pstride + l];  \
            } else {                                                                   \
                for (ptrdiff_t p = 0; p < P; p++)                                      \
                    for (ptrdiff_t l = 0; l < no; l++) du[p * 16 + l] = s[p * pstride + l]; \
            }                                                                          \
            if (!wg_kut3(du, KH, KW, gh, ah, gw, aw, blk + (cc * KK + kd * K2) * 16))  \
                wg_kut16(du, KH, KW, gh, ah, gw, aw, tk, blk + (cc * KK + kd * K2) * 16); \
        }                                                                              \
    for (ptrdiff_t oo = 0; oo < no; oo++) {                                            \
        T *dst = dw + ((grp * COG + o0 + oo) * CIG + c0) * KK;                         \
        for (ptrdiff_t q = 0; q < nc * KK; q++) dst[q] = (T)blk[q * 16 + oo];          \
    }                                                                                  \
}

WG_KT_BLOCK(wg_kt_block_f, float, wg_store16_f)
WG_KT_BLOCK(wg_kt_block_d, double, wg_store16_d)
WG_KUT_BLOCK(wg_kut_block_f, float)
WG_KUT_BLOCK(wg_kut_block_d, double)
#endif
