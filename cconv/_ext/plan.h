/* A compiled inference plan: a list of nodes (convolution with fused bias, activation and
   pooling; pooling; dense with fused bias and activation; activation), each reading the
   output of an earlier node (or the plan's input) and writing its own buffer, run for a
   whole batch in one call without the GIL. cconv/_ext/plan.pyx fills the descriptors;
   cconv/plan.py decides everything else (algorithms, buffer offsets, threads).

   Two ways to run, chosen by plan.py from the shapes:
     - by chunks: the batch is cut into chunks of CH images; each thread runs the WHOLE
       network on one chunk at a time, in its own arena (one parallel region, no barrier per
       layer). For small layers (LeNet) and large batches.
     - by layers: one parallel region; each node's work (im2col tiles, Winograd tile chunks,
       pooled rows, dense row blocks) is shared among the threads, a barrier after each node.
       For few images and large layers.
   Every output element is computed by the same arithmetic in either way and for any thread
   count (the GEMM's result for a row does not depend on the other rows of its call), so
   results are bit-identical for any number of threads.

   The per-type code is plan_impl.h, included once for float and once for double. */
#ifndef CCONV_PLAN_H
#define CCONV_PLAN_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "omp_helpers.h"
#include "gemm.h"
#include "direct.h"
#include "implicit.h"
#include "winograd.h"
#include "pool_cells.h"
#include "philox.h"

enum { CCONV_PLAN_CONV = 1, CCONV_PLAN_POOL = 2, CCONV_PLAN_DENSE = 3, CCONV_PLAN_ACT = 4,
       CCONV_PLAN_MERGE = 5, CCONV_PLAN_CONCAT = 6, CCONV_PLAN_GPOOL = 7,
       CCONV_PLAN_AFFINE = 8, CCONV_PLAN_DROPOUT = 9 };
enum { CCONV_ACT_LINEAR = 0, CCONV_ACT_RELU = 1, CCONV_ACT_SIGMOID = 2, CCONV_ACT_TANH = 3,
       CCONV_ACT_SOFTMAX = 4, CCONV_ACT_RELU6 = 5, CCONV_ACT_LEAKY = 6, CCONV_ACT_ELU = 7,
       CCONV_ACT_GELU = 8, CCONV_ACT_GELU_TANH = 9, CCONV_ACT_SILU = 10,
       CCONV_ACT_HARD_SIGMOID = 11, CCONV_ACT_HARD_SILU = 12 };
/* Merge nodes: Keras's Add, Subtract, Multiply, Average, Maximum, Minimum. */
enum { CCONV_MERGE_ADD = 0, CCONV_MERGE_SUB = 1, CCONV_MERGE_MUL = 2, CCONV_MERGE_AVG = 3,
       CCONV_MERGE_MAX = 4, CCONV_MERGE_MIN = 5 };
/* Most inputs of a merge or concatenate node. */
#define CCONV_PLAN_MAX_IN 8
/* A node index meaning "no tensor" (-1 is the plan's input). */
#define CCONV_PLAN_NONE (-2)
enum { CCONV_ALGO_IM2COL = 0, CCONV_ALGO_DIRECT = 1, CCONV_ALGO_WINOGRAD = 2,
       CCONV_ALGO_POINTWISE = 3 };
enum { CCONV_POOL_NONE = 0, CCONV_POOL_MAX = 1, CCONV_POOL_AVG = 2 };

/* Elements of one im2col tile and of one Winograd chunk's V and M. The tile is half of
   conv.pyx's since 2026-12-04 (a plan's tile shares the core's L2 with the chunk's
   activations; not measured at 128 Ki); a row's result does not depend on its tile. */
#define CCONV_PLAN_TILE_ELEMS 65536
#define CCONV_PLAN_WINO_ELEMS 262144
/* Elements per task when the chunks' partial weight gradients are summed. */
#define CCONV_PLAN_SUM_BLOCK 4096
/* Columns per task of a whole-batch dense kernel gradient (training). */
#define CCONV_PLAN_DW_COLS 64
/* Elements of GEMM operands to pack per run from which the nodes' packing is shared by the
   threads. */
#define CCONV_PLAN_PACK_SHARED 1048576
/* Rows of one dense block when the layers share the threads. */
#define CCONV_PLAN_DENSE_ROWS 16

typedef struct {
    int kind, act, algo, pool;   /* CCONV_PLAN_*, CCONV_ACT_*, CCONV_ALGO_*, CCONV_POOL_* */
    int input;                   /* producing node, -1: the plan's input */
    double alpha;                /* leaky_relu's negative slope, elu's alpha, dropout's rate */
    uint64_t seed, step;         /* training, dropout: the layer's seed and this step's
                                    counter (philox.h: the mask of element i of the batch is
                                    a function of seed, step and i only) */
    int ninputs;                 /* merge, concatenate: inputs (input is inputs[0]) */
    int inputs[CCONV_PLAN_MAX_IN];
    int64_t widths[CCONV_PLAN_MAX_IN];  /* concatenate: each input's channels */
    int merge;                   /* merge: CCONV_MERGE_* */
    int res;                     /* conv, dense: a tensor added after the batch norm and
                                    before the activation (a residual Add fused into the
                                    node's output tile); CCONV_PLAN_NONE: none */
    const void *bn[4];           /* conv, dense, affine: a batch norm's gamma, beta, moving
                                    mean, moving variance (the model's arrays; gamma, beta may
                                    be NULL), folded into st by each run */
    double eps;                  /* its epsilon */
    void *st;                    /* scale then shift, units each (the plan's): y = y * scale
                                    + shift per channel after the bias; NULL: none */
    cconv_geom g;                /* convolution, one image (g.N unused) */
    cconv_pool_geom pg;          /* pooling: the pool node's, or the one fused after a conv */
    int64_t rows, K, units;      /* dense: rows per image, input features, units */
    int64_t in_size, out_size;   /* elements per image of the input and the output */
    int64_t mid_size;            /* conv with fused pool: elements per image before the pool */
    int64_t out_off;             /* offset per image in the arena; -1: the plan's output */
    int64_t arg_off;             /* training, fused max pool: offset per image in args */
    int64_t tile;                /* rows per im2col tile, or tiles per Winograd chunk */
    int implicit;                /* im2col conv whose im2col rows are read in place from its
                                    input (implicit.h): no im2col tile, no packed B */
    int64_t nsplit;              /* Winograd, by layers: parts of CO per chunk of tiles, each
                                    its own unit of work (1: the whole CO); depthwise direct,
                                    by layers: blocks of output rows per image, each a unit */
    int64_t group;               /* conv with fused pool, by chunks: images per conv call */
    const void *w, *b;           /* kernel, bias (NULL: none): the model's arrays */
    void *dw, *db;               /* training: their gradients (the model's flat array) */
    int64_t dw_off, db_off;      /* training: their offsets in one chunk's partial gradients */
    int64_t w_size, b_size;      /* training: their elements */
    void *wino;                  /* Winograd: transformed kernel (E, C, CO), the plan's (E =
                                    cconv_plan_wino_e: 16 or 36 by the output's size) */
    void *bpack;                 /* the GEMM's B (kernel, or Winograd's E U[e]) packed once per
                                    run (gemm.h), the plan's; NULL: packed by each GEMM call */
    int64_t bpack_one;           /* elements of one packed B */
    int bpack_isa;               /* the ISA level it was packed for; -1: not packed */
    void *tpack;                 /* training, dense: the kernel transposed (units x K) packed
                                    once per backward for the input gradient, the plan's;
                                    NULL: packed by each chunk's GEMM */
    int tpack_isa;               /* the ISA level tpack was packed for */
    void *dzs;                   /* training, a dense node after the last conv and pool: its
                                    dL/dz for the whole batch (N x out_size), so that its
                                    kernel gradient is one product over the batch; NULL:
                                    per-chunk partial sums */
    int wgrad;                   /* training, Winograd conv: the kernel gradient is summed in
                                    the transformed domain (E, C, CO) in the chunk slices and
                                    turned into dw once, after the sums */
    int64_t w_part;              /* training: elements of dw's part of a chunk slice (w_size,
                                    or E x C x CO with wgrad) */
    void *wflip;                 /* training, wgrad with an input gradient: the transform of
                                    the flipped kernel (E', CO, C) for the input gradient's own
                                    tile size (cconv_wino_tile(H, W)), made once per backward,
                                    the plan's; NULL: conv.pyx's input gradient */
    int wflip_ok;                /* wflip holds this backward's kernel (its kernel is finite) */
} cconv_pnode;

typedef struct {
    cconv_pnode *nodes;
    int nnodes;
    int64_t in_size, out_size;   /* elements per image of the plan's input and output */
    int64_t arena_img;           /* arena elements per image (all node outputs) */
    int64_t mid_img;             /* by layers: conv output before a fused pool, per image */
    int64_t mid_scr;             /* by chunks: the same for nd->group images, per thread */
    int64_t scratch;             /* scratch elements per thread */
    int64_t chunk;               /* images per chunk (running by chunks) */
    void *arena;                 /* by chunks: threads x chunk x arena_img; by layers:
                                    N x (arena_img + mid_img) */
    void *scr;                   /* threads x scratch */
    int keep;                    /* training: every node output kept for the whole batch
                                    (arena N x arena_img, by chunks) */
    int32_t *args;               /* training: the input cell of each max-pool output */
    int64_t part_size;           /* training: one chunk's partial weight gradients */
    void *conv_backward;         /* training: conv.pyx's conv2d_backward_c for this type, as
                                    int (*)(dy, x, w, dx, dw, db, const cconv_geom *, N) */
    int wino_exact;              /* training: wgrad nodes take conv.pyx's gradients instead
                                    (the rerun after a non-finite Winograd kernel gradient) */
} cconv_plan;

/* Rows per im2col tile (conv.pyx's rule with CCONV_PLAN_TILE_ELEMS, from the shapes alone). */
static inline int64_t cconv_plan_tile_rows(const cconv_geom *g)
{
    int64_t k = g->KH * g->KW * g->C;
    int64_t t = CCONV_PLAN_TILE_ELEMS / (k > 0 ? k : 1);
    return t < 1 ? 1 : t;
}

/* Rows of the GEMM's widest micro-panel (gemm.h's AVX-512 MR): Winograd chunks hold whole
   panels of tiles. */
#define CCONV_PLAN_WINO_PANEL 12

/* A Winograd node's tile size m (winograd.h's rule, from its output's size) and the
   elements E = (m + 2)^2 of one transformed tile. */
static inline int cconv_plan_wino_m(const cconv_geom *g) { return cconv_wino_tile(g->OH, g->OW); }
static inline int64_t cconv_plan_wino_e(const cconv_geom *g)
{
    return cconv_wino_elems(cconv_plan_wino_m(g));
}

/* Winograd tiles of one image's output. */
static inline int64_t cconv_plan_wino_img_tiles(const cconv_geom *g)
{
    const int m = cconv_plan_wino_m(g);
    return ((g->OH + m - 1) / m) * ((g->OW + m - 1) / m);
}

/* Rows (tiles) of a Winograd node's GEMMs when one call covers at most nimg images: a unit
   holds at most nd->tile of them. */
static inline int64_t cconv_plan_wino_rows(const cconv_pnode *nd, int64_t nimg)
{
    const int64_t rows = nimg * cconv_plan_wino_img_tiles(&nd->g);
    return rows < nd->tile ? rows : nd->tile;
}

/* Winograd tiles per chunk: whole micro-panels (conv.pyx's rule). */
static inline int64_t cconv_plan_wino_tiles(const cconv_geom *g)
{
    int64_t tc = CCONV_PLAN_WINO_ELEMS / (cconv_plan_wino_e(g) * (g->C + g->CO));
    tc = (tc / CCONV_PLAN_WINO_PANEL) * CCONV_PLAN_WINO_PANEL;
    return tc < CCONV_PLAN_WINO_PANEL ? CCONV_PLAN_WINO_PANEL : tc;
}

/* Elements of conv output kept in a thread's scratch before a fused pool (by chunks). */
#define CCONV_PLAN_MID_ELEMS 32768

/* Fill nd->tile (im2col rows or Winograd tiles per unit of work), nd->group (the most
   images per conv call before a fused pool, by chunks) and nd->implicit (implicit.h). */
static void cconv_plan_prepare_node(cconv_pnode *nd, int is_f32)
{
    nd->tile = 1;
    nd->group = 1;
    nd->nsplit = 1;
    nd->implicit = 0;
    if (nd->kind != CCONV_PLAN_CONV) return;
    nd->implicit = nd->algo == CCONV_ALGO_IM2COL
                   && cconv_implicit_ok(&nd->g, is_f32 ? 4 : 8);
    if (nd->pool && nd->mid_size < CCONV_PLAN_MID_ELEMS)
        nd->group = CCONV_PLAN_MID_ELEMS / nd->mid_size;
    if (nd->algo == CCONV_ALGO_WINOGRAD) nd->tile = cconv_plan_wino_tiles(&nd->g);
    else if (nd->algo != CCONV_ALGO_DIRECT) nd->tile = cconv_plan_tile_rows(&nd->g);
}

/* Parts of CO a Winograd node's tiles are split into when its layer has T tiles to share
   among nthreads threads (by layers). With fewer tiles per thread than one micro-panel of
   rows, the E GEMMs read all of U (E x C x CO) for a few rows each, and reading U
   costs more than the products: split by output channels instead, so that each thread reads
   only its part of U. The parts are whole multiples of 16 channels (full vectors for the
   GEMM's panels and the transforms); the most parts is the largest power of two <= nthreads.
   An output channel's result does not depend on the part it is computed in. */
static inline int64_t cconv_plan_wino_split(const cconv_pnode *nd, int64_t T, int nthreads)
{
    int64_t s = 1;
    if (nd->kind != CCONV_PLAN_CONV || nd->algo != CCONV_ALGO_WINOGRAD
        || nd->act == CCONV_ACT_SOFTMAX || T >= CCONV_PLAN_WINO_PANEL * (int64_t)nthreads)
        return 1;
    while (2 * s <= nthreads && nd->g.CO % (32 * s) == 0) s *= 2;
    return s;
}

/* K x N of the B matrix of node nd's GEMMs (0 x 0: none), and how many such B (for
   Winograd E x nsplit: B number e * nsplit + s is columns s * N .. (s + 1) * N of U[e]). */
static int64_t cconv_plan_gemm_b(const cconv_pnode *nd, int64_t *N, int64_t *count)
{
    *count = 1;
    *N = 0;
    if (nd->kind == CCONV_PLAN_DENSE) { *N = nd->units; return nd->K; }
    if (nd->kind != CCONV_PLAN_CONV || nd->algo == CCONV_ALGO_DIRECT || nd->implicit) return 0;
    *N = nd->g.CO;
    if (nd->algo == CCONV_ALGO_WINOGRAD) {
        *count = cconv_plan_wino_e(&nd->g) * nd->nsplit;
        *N = nd->g.CO / nd->nsplit;
        return nd->g.C;
    }
    return nd->g.KH * nd->g.KW * nd->g.C;
}

/* Sets nd->bpack_one (elements of one packed B, for the ISA level in use) and marks nothing
   packed yet; returns the elements of the node's whole packed-B buffer (0: no GEMM). */
static int64_t cconv_plan_bpack_init(cconv_pnode *nd, int is_f32)
{
    int64_t N, count, K = cconv_plan_gemm_b(nd, &N, &count);
    nd->bpack_isa = -1;
    nd->bpack_one = K <= 0 || N <= 0 ? 0
                    : is_f32 ? cconv_sgemm_packed_size(K, N) : cconv_dgemm_packed_size(K, N);
    return count * nd->bpack_one;
}

/* Elements of dense node nd's packed transposed kernel (tpack), 0 for other nodes. */
static int64_t cconv_plan_tpack_size(const cconv_pnode *nd, int is_f32)
{
    if (nd->kind != CCONV_PLAN_DENSE || nd->K <= 0 || nd->units <= 0) return 0;
    return is_f32 ? cconv_sgemm_packed_size(nd->units, nd->K)
                  : cconv_dgemm_packed_size(nd->units, nd->K);
}

/* Scratch elements one thread needs for node nd when one call covers at most nimg images
   (esize: bytes of one element). */
static int64_t cconv_plan_node_scratch(const cconv_pnode *nd, int64_t nimg, int64_t esize)
{
    const cconv_geom *g = &nd->g;
    int64_t n;
    if (nd->kind == CCONV_PLAN_GPOOL) return 2 * nd->units + 2;  /* its double sums, aligned */
    if (nd->kind != CCONV_PLAN_CONV) return 0;
    switch (nd->algo) {
    case CCONV_ALGO_DIRECT:
        return cconv_direct_scratch(g);
    case CCONV_ALGO_WINOGRAD:
        n = cconv_plan_wino_rows(nd, nimg);
        return cconv_plan_wino_e(g) * (cconv_wino_plane(n * g->C, esize)
                                       + cconv_wino_plane(n * g->CO, esize))
               + g->C + 4 * g->CO;
    case CCONV_ALGO_POINTWISE:
        return 0;
    default:
        if (nd->implicit) return 0;
        n = nimg * g->OH * g->OW;
        return (n < nd->tile ? n : nd->tile) * g->KH * g->KW * g->C;
    }
}

/* Rows of op(A) @ B one at a time, with the GEMM's exact arithmetic per element (gemm.h: K in
   ceil(K / CCONV_GEMM_KC) equal depth blocks, each summed from zero with one FMA per term
   (a multiply and an add on the generic path) in k order, then added to C), but without
   packing B: for a few rows, packing B costs more than the products. With N >= one vector
   (VB bytes), the columns go in vectors held in registers across a depth block, up to 8 at
   once (8 independent sums hide the multiply-add latency); the last vector is moved back to
   end at N, and where it overlaps its neighbour only its own columns are added to C. */
#define CCONV__PLAN_RBLOCK(T, NV)                                                              \
    if (nv - v0 >= NV) {                                                                       \
        vt_ acc_[NV];                                                                          \
        for (q = 0; q < NV; q++) acc_[q] = (vt_){0};                                           \
        for (k = pc; k < pc + kc; k++) {                                                       \
            const T a = A[i * lda + k];                                                        \
            const T *b = B + k * ldb;                                                          \
            for (q = 0; q < NV; q++) {                                                         \
                vt_ bv;                                                                        \
                memcpy(&bv, b + CCONV__PLAN_COL(v0 + q), sizeof bv);                           \
                acc_[q] += a * bv;                                                             \
            }                                                                                  \
        }                                                                                      \
        for (q = 0; q < NV; q++) {                                                             \
            T *cp = C + i * ldc + CCONV__PLAN_COL(v0 + q), tmp[VW];                            \
            int64_t from = (v0 + q) * VW - CCONV__PLAN_COL(v0 + q), l;                         \
            memcpy(tmp, &acc_[q], sizeof tmp);                                                 \
            if (pc == 0) memcpy(cp, tmp, sizeof tmp);                                          \
            else for (l = from; l < VW; l++) cp[l] = cp[l] + tmp[l];                           \
        }                                                                                      \
        v0 += NV;                                                                              \
        continue;                                                                              \
    }
#define CCONV__PLAN_COL(v) ((v) * VW < N - VW ? (v) * VW : N - VW)
#define CCONV_PLAN_ROWS_DEFINE(SUF, T, ATTR, MULADD, VB)                                       \
ATTR static void cconv_plan_rows_##SUF(int64_t M, int64_t N, int64_t K, const T *A,           \
                                       int64_t lda, const T *B, int64_t ldb, T *C, int64_t ldc)  \
{                                                                                              \
    enum { VW = (VB) / sizeof(T) };                                                            \
    typedef T vt_ __attribute__((vector_size(VB)));                                            \
    int64_t nkb = (K + CCONV_GEMM_KC - 1) / CCONV_GEMM_KC, kcb = (K + nkb - 1) / nkb;          \
    int64_t nv = (N + VW - 1) / VW, i, j0, j, k, pc, v0, q;                                    \
    T acc[256];                                                                                \
    for (i = 0; i < M; i++) {                                                                  \
        if (N >= VW) {                                                                         \
            for (pc = 0; pc < K; pc += kcb) {                                                  \
                int64_t kc = K - pc < kcb ? K - pc : kcb;                                      \
                for (v0 = 0; v0 < nv;) {                                                       \
                    CCONV__PLAN_RBLOCK(T, 8)                                                   \
                    CCONV__PLAN_RBLOCK(T, 4)                                                   \
                    CCONV__PLAN_RBLOCK(T, 2)                                                   \
                    CCONV__PLAN_RBLOCK(T, 1)                                                   \
                }                                                                              \
            }                                                                                  \
            continue;                                                                          \
        }                                                                                      \
        for (j0 = 0; j0 < N; j0 += 256) {                                                      \
            int64_t nj = N - j0 < 256 ? N - j0 : 256;                                          \
            T *CCONV__RESTRICT c = C + i * ldc + j0;                                           \
            for (pc = 0; pc < K; pc += kcb) {                                                  \
                int64_t kc = K - pc < kcb ? K - pc : kcb;                                      \
                for (j = 0; j < nj; j++) acc[j] = (T)0;                                        \
                for (k = pc; k < pc + kc; k++) {                                               \
                    const T a = A[i * lda + k];                                                \
                    const T *CCONV__RESTRICT b = B + k * ldb + j0;                             \
                    for (j = 0; j < nj; j++) acc[j] = MULADD(a, b[j], acc[j]);                 \
                }                                                                              \
                if (pc == 0) for (j = 0; j < nj; j++) c[j] = acc[j];                           \
                else for (j = 0; j < nj; j++) c[j] = c[j] + acc[j];                            \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}
#define CCONV__PLAN_FMA_F(a, b, c) __builtin_fmaf((a), (b), (c))
#define CCONV__PLAN_FMA_D(a, b, c) __builtin_fma((a), (b), (c))
#define CCONV__PLAN_MULADD(a, b, c) ((a) * (b) + (c))
#if defined(CCONV__X86)
CCONV_PLAN_ROWS_DEFINE(f32_avx512, float, CCONV__ATTR_AVX512, CCONV__PLAN_FMA_F, 64)
CCONV_PLAN_ROWS_DEFINE(f64_avx512, double, CCONV__ATTR_AVX512, CCONV__PLAN_FMA_D, 64)
CCONV_PLAN_ROWS_DEFINE(f32_avx2, float, CCONV__ATTR_AVX2, CCONV__PLAN_FMA_F, 32)
CCONV_PLAN_ROWS_DEFINE(f64_avx2, double, CCONV__ATTR_AVX2, CCONV__PLAN_FMA_D, 32)
#endif
CCONV_PLAN_ROWS_DEFINE(f32_base, float, , CCONV__PLAN_MULADD, 16)
CCONV_PLAN_ROWS_DEFINE(f64_base, double, , CCONV__PLAN_MULADD, 16)

#if defined(CCONV__X86)
#define CCONV__PLAN_ROWS(SUF, ARGS)                                                            \
    do {                                                                                       \
        int lvl_ = cconv__isa();                                                               \
        if (lvl_ >= 2) cconv_plan_rows_##SUF##_avx512 ARGS;                                    \
        else if (lvl_ == 1) cconv_plan_rows_##SUF##_avx2 ARGS;                                 \
        else cconv_plan_rows_##SUF##_base ARGS;                                                \
    } while (0)
#else
#define CCONV__PLAN_ROWS(SUF, ARGS) cconv_plan_rows_##SUF##_base ARGS
#endif

/* Up to this many rows, cconv_plan_rows_* replaces the GEMM (same results). */
#define CCONV_PLAN_FEW_ROWS 4

/* Whether Winograd node nd's GEMMs ever read its packed B when one call covers at most nimg
   images: each multiplies at most nd->tile of their tiles. cconv_plan_gemm runs the rows
   after the last whole MR-row panel on U itself when the exact-row kernels take that shape
   or the rows are few, so GEMMs under one panel never need the packed copy (one image of
   the tutorial CNN: its third convolution has a single tile). */
static int cconv_plan_wino_packs(const cconv_pnode *nd, int64_t nimg, int is_f32)
{
    const int64_t mr = is_f32 ? cconv_sgemm_mr() : cconv_dgemm_mr();
    const int64_t rows = cconv_plan_wino_rows(nd, nimg);
    if (rows >= mr) return 1;
    return !(cconv_implicit_gemm_ok(nd->g.CO / nd->nsplit, nd->g.C, is_f32 ? 4 : 8)
             || rows <= CCONV_PLAN_FEW_ROWS);
}

#define PT float
#define PF(name) name##_f32
#define P_GEMM cconv_sgemm
#define P_GEMM_PACK cconv_sgemm_pack
#define P_GEMM_PACKED cconv_sgemm_packed
#define P_GEMM_MR cconv_sgemm_mr
#define P_GEMM_EXACT cconv_implicit_gemm_f32
#define P_ROWS(ARGS) CCONV__PLAN_ROWS(f32, ARGS)
#define P_EXP expf
#define P_TANH tanhf
#define P_SQRT sqrtf
#define P_ERF erff
#define P_EXPM1 expm1f
#define P_DIRECT cconv_direct_forward_relu_f32
#define P_DW_ROWS cconv_dw_forward_rows_f32
#define P_IMPLICIT cconv_implicit_rows_f32
#define P_WINO_K cconv_wino_kernel_f32
#define P_WINO_IN cconv_wino_input_f32
#define P_WINO_OUT cconv_wino_output_f32
#define P_WINO_DY cconv_wino_dy_f32
#define P_WINO_KG cconv_wino_kernel_grad_f32
#define P_FINITE cconv_wino_finite_f32
#define P_POOL_ROWS cconv_pool_rows_f32
#define P_DROPOUT cconv_dropout_f32
#include "plan_impl.h"

#define PT double
#define PF(name) name##_f64
#define P_GEMM cconv_dgemm
#define P_GEMM_PACK cconv_dgemm_pack
#define P_GEMM_PACKED cconv_dgemm_packed
#define P_GEMM_MR cconv_dgemm_mr
#define P_GEMM_EXACT cconv_implicit_gemm_f64
#define P_ROWS(ARGS) CCONV__PLAN_ROWS(f64, ARGS)
#define P_EXP exp
#define P_TANH tanh
#define P_SQRT sqrt
#define P_ERF erf
#define P_EXPM1 expm1
#define P_DIRECT cconv_direct_forward_relu_f64
#define P_DW_ROWS cconv_dw_forward_rows_f64
#define P_IMPLICIT cconv_implicit_rows_f64
#define P_WINO_K cconv_wino_kernel_f64
#define P_WINO_IN cconv_wino_input_f64
#define P_WINO_OUT cconv_wino_output_f64
#define P_WINO_DY cconv_wino_dy_f64
#define P_WINO_KG cconv_wino_kernel_grad_f64
#define P_FINITE cconv_wino_finite_f64
#define P_POOL_ROWS cconv_pool_rows_f64
#define P_DROPOUT cconv_dropout_f64
#include "plan_impl.h"

#endif
