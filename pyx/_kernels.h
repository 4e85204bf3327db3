/* What a Cython module includes to call the register kernels: every level that
 * setup.py compiled (pyx/_kern.c, tables in _kern_table.h), the CPU's own level,
 * and the selection. The kernels' names below call through the selected table,
 * so the Cython code reads as if it called one set of functions.
 *
 * Levels: 0 baseline, 1 avx2 (AVX2 + FMA), 2 avx512 (F, BW, DQ, VL). */
#ifndef FASTCONV_KERNELS_H
#define FASTCONV_KERNELS_H
#include "_kconst.h"
#include "_kern_table.h"

static const fc_kern *fc_k = &fc_kern_baseline;

/* The table of level ``id``, or NULL where that level was not compiled. */
static const fc_kern *fc_table(int id)
{
    switch (id) {
    case 0: return &fc_kern_baseline;
#ifdef FC_HAVE_AVX2
    case 1: return &fc_kern_avx2;
#endif
#ifdef FC_HAVE_AVX512
    case 2: return &fc_kern_avx512;
#endif
    default: return NULL;
    }
}

/* The highest level this CPU (and its operating system: the feature tests
 * include the XSAVE state checks) can run. */
static int fc_cpu_level(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
#endif
    return 0;
}

/* Select level ``id``; -1 if it was not compiled or this CPU cannot run it
 * (the selection is then unchanged). */
static int fc_select(int id)
{
    const fc_kern *t = fc_table(id);
    if (t == NULL || id > fc_cpu_level()) return -1;
    fc_k = t;
    return 0;
}

#define fc_tile_f32 (fc_k->tile_f32)
#define fc_tile_f64 (fc_k->tile_f64)
#define fc_tile4_f32 (fc_k->tile4_f32)
#define fc_tile4_f64 (fc_k->tile4_f64)
#define fc_pairs4_f32 (fc_k->pairs4_f32)
#define fc_pairs4_f64 (fc_k->pairs4_f64)
#define fc_quad1_f32 (fc_k->quad1_f32)
#define fc_quad1_f64 (fc_k->quad1_f64)
#define fc_gw_f32 (fc_k->gw_f32)
#define fc_gw_f64 (fc_k->gw_f64)
#define fc_rows4_f32 (fc_k->rows4_f32)
#define fc_rows4_f64 (fc_k->rows4_f64)
#define FC_GW_NR (fc_k->gw_nr)
#define FC_GW_NK (fc_k->gw_nk)
#define FC_GW_NK_FEW (fc_k->gw_nk_few)
#define wg_tf_match (fc_k->wg_tf_match)
#define wg_tf_lanes_f (fc_k->wg_tf_lanes_f)
#define wg_tf_lanes_d (fc_k->wg_tf_lanes_d)
#define wg_in_tile_f (fc_k->wg_in_tile_f)
#define wg_in_tile_f8 (fc_k->wg_in_tile_f8)
#define wg_in_tile_d (fc_k->wg_in_tile_d)
#define wg_out_tile_f (fc_k->wg_out_tile_f)
#define wg_out_tile_f8 (fc_k->wg_out_tile_f8)
#define wg_out_tile_d (fc_k->wg_out_tile_d)
#define wg_gy_tile_f (fc_k->wg_gy_tile_f)
#define wg_gy_tile_f8 (fc_k->wg_gy_tile_f8)
#define wg_gy_tile_d (fc_k->wg_gy_tile_d)
#define wg_transpose_ld_f (fc_k->wg_transpose_ld_f)
#define wg_transpose_ld_d (fc_k->wg_transpose_ld_d)
#define wg_transpose_f (fc_k->wg_transpose_f)
#define wg_transpose_d (fc_k->wg_transpose_d)
#define wg_axpy_f (fc_k->wg_axpy_f)
#define wg_axpy_d (fc_k->wg_axpy_d)
#define wg_kt_block_f (fc_k->wg_kt_block_f)
#define wg_kt_block_d (fc_k->wg_kt_block_d)
#define wg_kut_block_f (fc_k->wg_kut_block_f)
#define wg_kut_block_d (fc_k->wg_kut_block_d)
#define wg_sfence (fc_k->wg_sfence)
#define fc_absmax_bits (fc_k->absmax_bits)
#endif
