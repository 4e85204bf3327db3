/* One instruction-set level's register kernels and their table. setup.py
 * compiles this file once per level, with that level's target flags and
 * -DFC_LEVEL_ID / -DFC_LEVEL_NAME, and links every level into the modules that
 * use them; pyx/_kernels.h picks one at run time. */
#include "_direct_tile.h"
#include "_direct_rows.h"
#include "_winograd_tf.h"
#include "_winograd_xf.h"
#include "_winograd_kt.h"
#include "_kern_table.h"

#ifndef FC_LEVEL_NAME
#define FC_LEVEL_NAME baseline
#endif
#define FC_STR_(x) #x
#define FC_STR(x) FC_STR_(x)
#define FC_CAT_(a, b) a##b
#define FC_CAT(a, b) FC_CAT_(a, b)

/* grad_weight blocks (channels x taps, taps with fewer channels): NR*NK
 * accumulators + NR gy vectors + 1 input vector in 32 registers (AVX-512) or
 * 16 (AVX2, SSE2); the shapes were picked by timing the candidates that fit. */
#if FC_LEVEL_ID == 2
#define FC_GW_SHAPE 4, 6, 3
#elif FC_LEVEL_ID == 1
#define FC_GW_SHAPE 3, 4, 3
#else
#define FC_GW_SHAPE 4, 2, 3
#endif

/* float transforms of 16 lanes exist only where a register holds 16 */
#if FC_RB == 64
#define WG_F16(name) name##_f
#else
#define WG_F16(name) name##_f8
#endif

static void fc_sfence_(void) { wg_sfence(); }

/* Without the sign bit, the order of a float's bits read as a non-negative int
 * is the order of the magnitudes, Inf and NaN above every finite one: an int
 * max, which every level vectorizes, where a float max with NaN semantics
 * would not be. */
static int fc_absmax_bits(const int *u, ptrdiff_t n)
{
    int m = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        int v = u[i] & 0x7fffffff;
        m = v > m ? v : m;
    }
    return m;
}

FC_HIDDEN const fc_kern FC_CAT(fc_kern_, FC_LEVEL_NAME) = {
    FC_STR(FC_LEVEL_NAME), FC_GW_SHAPE,
    fc_tile_f32, fc_tile_f64, fc_tile4_f32, fc_tile4_f64, fc_pairs4_f32, fc_pairs4_f64,
    fc_quad1_f32, fc_quad1_f64, fc_gw_float, fc_gw_double, fc_rows4_f32, fc_rows4_f64,
    wg_tf_match, wg_tf_lanes_f, wg_tf_lanes_d,
    WG_F16(wg_in_tile), wg_in_tile_f8, wg_in_tile_d,
    WG_F16(wg_out_tile), wg_out_tile_f8, wg_out_tile_d,
    WG_F16(wg_gy_tile), wg_gy_tile_f8, wg_gy_tile_d,
    wg_transpose_ld_f, wg_transpose_ld_d, wg_transpose_f, wg_transpose_d,
    wg_axpy_f, wg_axpy_d,
    wg_kt_block_f, wg_kt_block_d, wg_kut_block_f, wg_kut_block_d,
    fc_sfence_, fc_absmax_bits,
};
