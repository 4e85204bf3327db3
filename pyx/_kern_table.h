/* The table of one instruction-set level's register kernels: pyx/_kern.c fills
 * one per level it is compiled for (fc_kern_baseline, fc_kern_avx2,
 * fc_kern_avx512), and the Cython modules call through the selected one
 * (pyx/_kernels.h). The contracts are those of the headers that implement them:
 * _direct_tile.h, _direct_rows.h, _winograd_tf.h, _winograd_xf.h, _winograd_kt.h. */
#ifndef FASTCONV_KERN_TABLE_H
#define FASTCONV_KERN_TABLE_H
#include <stddef.h>

typedef struct fc_kern {
    const char *name;
    /* grad_weight register block: output channels x taps, and the taps with
     * fewer channels than gw_nr (each level's largest block that fits) */
    int gw_nr, gw_nk, gw_nk_few;
    /* direct */
    void (*tile_f32)(const float *, const float *, const ptrdiff_t *, ptrdiff_t, ptrdiff_t,
                     ptrdiff_t, float *);
    void (*tile_f64)(const double *, const double *, const ptrdiff_t *, ptrdiff_t, ptrdiff_t,
                     ptrdiff_t, double *);
    void (*tile4_f32)(const float *, const float *, const ptrdiff_t *, ptrdiff_t, ptrdiff_t,
                      ptrdiff_t, ptrdiff_t, float *, ptrdiff_t);
    void (*tile4_f64)(const double *, const double *, const ptrdiff_t *, ptrdiff_t, ptrdiff_t,
                      ptrdiff_t, ptrdiff_t, double *, ptrdiff_t);
    void (*pairs4_f32)(const float *, const float *, const ptrdiff_t *, ptrdiff_t, ptrdiff_t,
                       ptrdiff_t, ptrdiff_t, const ptrdiff_t *, ptrdiff_t, float *, ptrdiff_t);
    void (*pairs4_f64)(const double *, const double *, const ptrdiff_t *, ptrdiff_t, ptrdiff_t,
                       ptrdiff_t, ptrdiff_t, const ptrdiff_t *, ptrdiff_t, double *, ptrdiff_t);
    void (*quad1_f32)(const float *, const float *, const ptrdiff_t *, ptrdiff_t, ptrdiff_t,
                      ptrdiff_t, const ptrdiff_t *, float *);
    void (*quad1_f64)(const double *, const double *, const ptrdiff_t *, ptrdiff_t, ptrdiff_t,
                      ptrdiff_t, const ptrdiff_t *, double *);
    void (*gw_f32)(const float *, const ptrdiff_t *, const float *, ptrdiff_t, ptrdiff_t,
                   double *, ptrdiff_t, int, int);
    void (*gw_f64)(const double *, const ptrdiff_t *, const double *, ptrdiff_t, ptrdiff_t,
                   double *, ptrdiff_t, int, int);
    void (*rows4_f32)(const float *, const float *, const ptrdiff_t *, ptrdiff_t, ptrdiff_t,
                      ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t,
                      int, int);
    void (*rows4_f64)(const double *, const double *, const ptrdiff_t *, ptrdiff_t, ptrdiff_t,
                      ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, double *, ptrdiff_t,
                      int, int);
    /* winograd */
    int (*wg_tf_match)(int, const double *, const double *);
    int (*wg_tf_lanes_f)(ptrdiff_t);
    int (*wg_tf_lanes_d)(ptrdiff_t);
    void (*wg_in_tile_f)(int, const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                         ptrdiff_t, float *, ptrdiff_t);
    void (*wg_in_tile_f8)(int, const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                          ptrdiff_t, float *, ptrdiff_t);
    void (*wg_in_tile_d)(int, const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                         ptrdiff_t, double *, ptrdiff_t);
    void (*wg_out_tile_f)(int, const float *, ptrdiff_t, float *, ptrdiff_t, ptrdiff_t,
                          ptrdiff_t, ptrdiff_t, ptrdiff_t);
    void (*wg_out_tile_f8)(int, const float *, ptrdiff_t, float *, ptrdiff_t, ptrdiff_t,
                           ptrdiff_t, ptrdiff_t, ptrdiff_t);
    void (*wg_out_tile_d)(int, const double *, ptrdiff_t, double *, ptrdiff_t, ptrdiff_t,
                          ptrdiff_t, ptrdiff_t, ptrdiff_t);
    void (*wg_gy_tile_f)(int, const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                         ptrdiff_t, float *, ptrdiff_t);
    void (*wg_gy_tile_f8)(int, const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                          ptrdiff_t, float *, ptrdiff_t);
    void (*wg_gy_tile_d)(int, const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                         ptrdiff_t, double *, ptrdiff_t);
    void (*wg_transpose_ld_f)(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t);
    void (*wg_transpose_ld_d)(const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t, double *,
                              ptrdiff_t);
    void (*wg_transpose_f)(const float *, ptrdiff_t, ptrdiff_t, float *);
    void (*wg_transpose_d)(const double *, ptrdiff_t, ptrdiff_t, double *);
    void (*wg_axpy_f)(float *, const float *, float, ptrdiff_t, int);
    void (*wg_axpy_d)(double *, const double *, double, ptrdiff_t, int);
    void (*wg_kt_block_f)(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                          const double *, ptrdiff_t, const double *, ptrdiff_t, int, ptrdiff_t,
                          ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t,
                          double *, int);
    void (*wg_kt_block_d)(const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                          const double *, ptrdiff_t, const double *, ptrdiff_t, int, ptrdiff_t,
                          ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, double *, ptrdiff_t,
                          double *, int);
    void (*wg_kut_block_f)(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                           const double *, ptrdiff_t, const double *, ptrdiff_t, ptrdiff_t,
                           ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t,
                           double *);
    void (*wg_kut_block_d)(const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                           const double *, ptrdiff_t, const double *, ptrdiff_t, ptrdiff_t,
                           ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, double *, ptrdiff_t,
                           double *);
    void (*wg_sfence)(void);
    /* the largest |v| of n float32 values, as the bits of its magnitude (Inf and
     * NaN above every finite value): the dispatcher's overflow guard */
    int (*absmax_bits)(const int *, ptrdiff_t);
} fc_kern;

#if defined(__GNUC__) || defined(__clang__)
#define FC_HIDDEN __attribute__((visibility("hidden")))
#else
#define FC_HIDDEN
#endif
extern FC_HIDDEN const fc_kern fc_kern_baseline;
#ifdef FC_HAVE_AVX2
extern FC_HIDDEN const fc_kern fc_kern_avx2;
#endif
#ifdef FC_HAVE_AVX512
extern FC_HIDDEN const fc_kern fc_kern_avx512;
#endif
#endif
