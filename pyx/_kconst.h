/* Constants of the direct kernels' contracts, the same at every instruction-set
 * level: the Cython side plans its layouts with them (pyx/_direct.pyx) and each
 * level's register tiles implement them (pyx/_direct_tile.h, _direct_rows.h). */
#ifndef FASTCONV_KCONST_H
#define FASTCONV_KCONST_H
#define FC_GRANULE 64    /* bytes of one planned vector: the layouts' unit at every level */
#define FC_VL_F32 (FC_GRANULE / 4)
#define FC_VL_F64 (FC_GRANULE / 8)
#define FC_TILE 64       /* outputs per forward register tile (flat layout) */
#define FC_OBLOCK 4      /* output channels per forward tile */
#define FC_GW_NR_MAX 4   /* grad_weight blocks are instantiated up to 4 channels x */
#define FC_GW_NK_MAX 6   /*   6 taps; each level's table says which it uses */
#define FC_GW_ACC 4      /* double lanes kept per weight between grad_weight calls */
#define FC_GW_OCH 128    /* output channels per grad_weight task, at most */
#define FC_ROWS_KMAX 7   /* kernel rows the row blocks are compiled for (2..7) */
#endif
