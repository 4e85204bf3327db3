/* The vector register of the instruction-set level this translation unit is
 * compiled for (pyx/_kern.c is compiled once per level, see setup.py).
 *
 * FC_LEVEL_ID: 0 baseline (SSE2 on x86-64; the portable C any other target
 * compiles), 1 avx2 (AVX2 + FMA), 2 avx512 (AVX-512F/BW/DQ/VL).
 *
 * Register tiles are written in vectors of exactly one register (FC_RB bytes):
 * GCC keeps a vector type wider than the target's registers in stack memory,
 * so a tile written for 64-byte registers runs from memory on a CPU that has
 * only 32-byte ones. A 64-byte "granule" (FC_VL_F32 floats / FC_VL_F64
 * doubles) stays the unit of the layouts the Cython side plans; a level splits
 * each granule into FC_G registers.
 */
#ifndef FASTCONV_SIMD_H
#define FASTCONV_SIMD_H
#include <stddef.h>
#include <string.h>
#include "_kconst.h"

#ifndef FC_LEVEL_ID
#define FC_LEVEL_ID 0
#endif

#if FC_LEVEL_ID == 2
#define FC_RB 64                      /* bytes per vector register */
#elif FC_LEVEL_ID == 1
#define FC_RB 32
#else
#define FC_RB 16
#endif
#define FC_G (FC_GRANULE / FC_RB)     /* registers per granule */
#define FC_LF (FC_RB / 4)             /* float lanes per register */
#define FC_LD (FC_RB / 8)             /* double lanes per register */

#if defined(__GNUC__) || defined(__clang__)
#define FC_HAVE_VEC 1
typedef float fc_vf __attribute__((vector_size(FC_RB)));
typedef double fc_vd __attribute__((vector_size(FC_RB)));
/* Load once, use from a register: without this GCC folds a loaded vector into
 * every multiply-add that uses it as a memory operand (NR*NK loads instead of
 * NR + NK per step in the grad_weight block). "x" names an SSE/AVX register of
 * the vector's own width, which every x86 level has. */
#if defined(__x86_64__) || defined(__i386__)
#define FC_IN_REGISTER(v) __asm__("" : "+x"(v))
#else
#define FC_IN_REGISTER(v) ((void)0)
#endif
#endif

#endif
