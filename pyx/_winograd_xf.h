/* Scaled vector adds for the Winograd tile transforms (pyx/_winograd.pyx).
 * restrict: the source and destination never overlap, so the compiler emits the
 * vector loop without a run-time alias check (the check and loop setup cost
 * more than the work for 16-64 channels). */
#ifndef FASTCONV_WINOGRAD_XF_H
#define FASTCONV_WINOGRAD_XF_H
#include <stddef.h>

static inline void wg_axpy_f(float *restrict d, const float *restrict s, float a,
                             ptrdiff_t n, int first)
{
    ptrdiff_t i;
    if (first) {
        for (i = 0; i < n; i++) d[i] = a * s[i];
    } else {
        for (i = 0; i < n; i++) d[i] += a * s[i];
    }
}

static inline void wg_axpy_d(double *restrict d, const double *restrict s, double a,
                             ptrdiff_t n, int first)
{
    ptrdiff_t i;
    if (first) {
        for (i = 0; i < n; i++) d[i] = a * s[i];
    } else {
        for (i = 0; i < n; i++) d[i] += a * s[i];
    }
}

#endif

/* dst (cols x rows) = transpose of src (rows x cols), both row-major; 8x8 blocks
 * in AVX registers where available (the channel-first <-> channel-last layout
 * changes were half of the non-GEMM time done one element at a time). */
#ifdef __AVX__
#include <immintrin.h>
static inline void wg_tr8x8(const float *s, ptrdiff_t ls, float *d, ptrdiff_t ld)
{
    __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ls);
    __m256 r2 = _mm256_loadu_ps(s + 2 * ls), r3 = _mm256_loadu_ps(s + 3 * ls);
    __m256 r4 = _mm256_loadu_ps(s + 4 * ls), r5 = _mm256_loadu_ps(s + 5 * ls);
    __m256 r6 = _mm256_loadu_ps(s + 6 * ls), r7 = _mm256_loadu_ps(s + 7 * ls);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + ld, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

/* dst[j*ldd + i] = src[i*lds + j], i < rows, j < cols */
static void wg_transpose_ld_f(const float *src, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t lds,
                              float *dst, ptrdiff_t ldd)
{
    ptrdiff_t i0, j0, i, j, i1, j1;
    for (i0 = 0; i0 < rows; i0 += 32) {
        i1 = i0 + 32 < rows ? i0 + 32 : rows;
        for (j0 = 0; j0 < cols; j0 += 32) {
            j1 = j0 + 32 < cols ? j0 + 32 : cols;
            i = i0;
#ifdef __AVX__
            for (; i + 8 <= i1; i += 8) {
                for (j = j0; j + 8 <= j1; j += 8)
                    wg_tr8x8(src + i * lds + j, lds, dst + j * ldd + i, ldd);
                for (; j < j1; j++)
                    for (ptrdiff_t k = i; k < i + 8; k++)
                        dst[j * ldd + k] = src[k * lds + j];
            }
#endif
            for (; i < i1; i++)
                for (j = j0; j < j1; j++)
                    dst[j * ldd + i] = src[i * lds + j];
        }
    }
}

static void wg_transpose_f(const float *src, ptrdiff_t rows, ptrdiff_t cols, float *dst)
{
    wg_transpose_ld_f(src, rows, cols, cols, dst, rows);
}

static void wg_transpose_ld_d(const double *src, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t lds,
                              double *dst, ptrdiff_t ldd)
{
    ptrdiff_t i0, j0, i, j, i1, j1;
    for (i0 = 0; i0 < rows; i0 += 16) {
        i1 = i0 + 16 < rows ? i0 + 16 : rows;
        for (j0 = 0; j0 < cols; j0 += 16) {
            j1 = j0 + 16 < cols ? j0 + 16 : cols;
            for (i = i0; i < i1; i++)
                for (j = j0; j < j1; j++)
                    dst[j * ldd + i] = src[i * lds + j];
        }
    }
}

static void wg_transpose_d(const double *src, ptrdiff_t rows, ptrdiff_t cols, double *dst)
{
    wg_transpose_ld_d(src, rows, cols, cols, dst, rows);
}
