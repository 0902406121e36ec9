/* Direct convolution for few input channels per group (the first layer of most CNNs, and
   depthwise convolutions), one image at a time, single-threaded.

   im2col + GEMM is a poor fit there: each im2col row is a handful of scattered elements, so
   building the matrix costs more than the multiply. Instead the image is copied once into a
   zero-padded planar buffer xT[c][hp][wp]; then every kernel tap is a contiguous
   multiply-add over a whole output row ("vectorise over output width"), whatever the number
   of filters. With stride 1 the outputs of a few filters are accumulated in registers, tile
   by tile, and written NHWC from the stack; otherwise output rows are accumulated
   transposed (yT[co][ow]) and written back NHWC.

   The loops are plain C compiled three times (AVX-512, AVX2+FMA, baseline) and picked at run
   time by isa.h, as gemm.h's are. Summation order is fixed by the loops, so results
   depend only on the inputs and the ISA path.

   Geometry: cconv_geom mirrors ConvGeom in conv.pxd field for field (16 int64_t). */
#ifndef CCONV_DIRECT_H
#define CCONV_DIRECT_H

#include <stdint.h>
#include <string.h>
#include "gemm.h"

typedef struct {
    int64_t N, H, W, C, KH, KW, CO, OH, OW, sh, sw, dh, dw, pt, pl, groups;
} cconv_geom;

#include "dwconv.h"

/* Padded planar extent actually read by the windows. */
static inline int64_t cconv_direct_hp(const cconv_geom *g) { return (g->OH - 1) * g->sh + (g->KH - 1) * g->dh + 1; }
static inline int64_t cconv_direct_wp(const cconv_geom *g) { return (g->OW - 1) * g->sw + (g->KW - 1) * g->dw + 1; }

/* Filters the forward pass accumulates at once, in registers (8 vectors of accumulators fit
   AVX2's 16 registers beside the operands). */
#define CCONV__DIRECT_COB 8

/* Zeroed elements after the planar input: the stride-1 forward reads whole tiles of outputs,
   so its last tile reads up to 2 vectors minus one element past the plane. */
#define CCONV__DIRECT_SLACK 64

/* One full block of cconv__direct_block: JB outputs (one vector of VB bytes) for
   CCONV__DIRECT_COB filters with stride 1, the accumulators held in GNU C vectors (so in
   registers). Other compilers leave it empty: the block's plain loops then run instead,
   with the same arithmetic in the same order. */
#if defined(__GNUC__)
#define CCONV__DIRECT_VBLOCK(T, VB)                                                            \
    if (nv == JB && sw == 1) {                                                                 \
        typedef T cconv__dv __attribute__((vector_size(VB)));                                  \
        cconv__dv vacc[COB], vs;                                                               \
        for (cb = 0; cb < COB; cb++) vacc[cb] = (cconv__dv){0};                                \
        for (kh = 0; kh < g->KH; kh++) {                                                       \
            int64_t hp = oh * g->sh + kh * g->dh;                                              \
            for (kw = 0; kw < g->KW; kw++) {                                                   \
                for (c = 0; c < CG; c++) {                                                     \
                    const T *wv = wt + ((kh * g->KW + kw) * CG + c) * COB;                     \
                    memcpy(&vs, xT + ((c0 + c) * Hp + hp) * Wp + kw * g->dw + j, sizeof vs);   \
                    for (cb = 0; cb < COB; cb++) vacc[cb] += wv[cb] * vs;                      \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (cb = 0; cb < nco; cb++) memcpy(yT + cb * len + j, &vacc[cb], sizeof vs);          \
        return;                                                                                \
    }
#else
#define CCONV__DIRECT_VBLOCK(T, VB)
#endif

/* Vectors of outputs per tile of the stride-1 forward: 2 where 32 registers hold 2 x 8
   accumulators beside the operands (AVX-512), else 1. */
#define CCONV__DIRECT_NJ(VB) ((VB) >= 64 ? 2 : 1)

/* cconv__direct_tile's body for exactly NCV filters, the accumulators held in GNU C vectors
   (so in registers); other compilers run the tile's plain loops, with the same arithmetic in
   the same order. */
#if defined(__GNUC__)
#define CCONV__DIRECT_VTILE(T, VB, NCV)                                                        \
    if (NC == NCV) {                                                                           \
        typedef T cconv__dv __attribute__((vector_size(VB)));                                  \
        cconv__dv vacc[NCV][NJ], vs[NJ];                                                       \
        for (cb = 0; cb < NCV; cb++) for (n = 0; n < NJ; n++) vacc[cb][n] = (cconv__dv){0};     \
        for (kh = 0; kh < g->KH; kh++) {                                                       \
            for (kw = 0; kw < g->KW; kw++) {                                                   \
                const T *src = xT + (c0 * Hp + kh * g->dh) * Wp + kw * g->dw + j;              \
                const T *wv = wt + (kh * g->KW + kw) * CG * NCV;                               \
                for (c = 0; c < CG; c++, src += Hp * Wp, wv += NCV) {                          \
                    for (n = 0; n < NJ; n++) memcpy(&vs[n], src + n * JB, sizeof vs[n]);       \
                    for (cb = 0; cb < NCV; cb++) {                                             \
                        const T wb = wv[cb];                                                   \
                        for (n = 0; n < NJ; n++) vacc[cb][n] += wb * vs[n];                    \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (cb = 0; cb < NCV; cb++)                                                           \
            for (n = 0; n < NJ; n++) {                                                         \
                typedef __typeof__(vs[0] < vs[0]) cconv__dm;                                   \
                cconv__dv t = vacc[cb][n] + bv[cb];                                            \
                if (relu) t = (cconv__dv)((cconv__dm)t & ~(t < (cconv__dv){0}));               \
                memcpy(tile + cb * NJ * JB + n * JB, &t, VB);                                  \
            }                                                                                  \
        return;                                                                                \
    }
#else
#define CCONV__DIRECT_VTILE(T, VB, NCV)
#endif

/* The stride-1 forward's tile (positions j .. j + e of the plane, from row oh, column ow) to
   y, NCV filters from co0 on per position (a constant where it can be, so the copy unrolls). */
#define CCONV__DIRECT_SCATTER(T, NCV)                                                          \
    for (v = 0; v < e; v++) {                                                                  \
        if (ow < OW) {                                                                         \
            T *CCONV__RESTRICT yo = y + (oh * OW + ow) * CO + co0;                             \
            for (cb = 0; cb < (NCV); cb++) yo[cb] = tile[cb * NJ * JB + v];                    \
        }                                                                                      \
        if (++ow == Wp) { ow = 0; oh++; }                                                      \
    }

/* Scratch elements one thread needs: planar input (or input gradient) plus one transposed row. */
static inline int64_t cconv_direct_scratch(const void *geom)
{
    const cconv_geom *g = (const cconv_geom *)geom;
    if (cconv_dw_applies(g)) return cconv_dw_scratch(g);
    /* transposed outputs: the forward's rows with stride > 1, the kernel gradient's padded dy plane */
    return g->C * cconv_direct_hp(g) * cconv_direct_wp(g) + CCONV__DIRECT_SLACK
           + g->CO * g->OH * cconv_direct_wp(g)
           + g->KH * g->KW * (g->C / g->groups) * CCONV__DIRECT_COB + 16;
}

/* The sizes every direct kernel reads from g: the padded plane Hp x Wp, the channels CG and
   filters COg of one group, OW and the column stride sw. */
#define CCONV__DIRECT_SIZES(g)                                                                 \
    int64_t Hp = cconv_direct_hp(g), Wp = cconv_direct_wp(g);                                  \
    int64_t CG = (g)->C / (g)->groups, COg = (g)->CO / (g)->groups;                            \
    int64_t OW = (g)->OW, sw = (g)->sw;

/* The end of one tap's dot product in cconv_direct_backward_params: the entries from j0 on,
   the 16 lanes summed pairwise, added to the gradient DST. */
#define CCONV__DK_FINISH(acc, src, j0, DST)                                                    \
    do {                                                                                       \
        int64_t j_, l_;                                                                        \
        for (j_ = (j0); j_ < len; j_++) acc[0] += src[j_ * sw] * d[j_];                        \
        for (l_ = 8; l_ > 0; l_ /= 2)                                                          \
            for (j_ = 0; j_ < l_; j_++) acc[j_] += acc[j_ + l_];                               \
        DST += acc[0];                                                                         \
    } while (0)

#if defined(__GNUC__)
/* Kernel gradient, sw == 1, one group: the dot products of NB filters' dy rows (from co0)
   with the NK taps kw0.. of input row `row` (tap row kh, channel c), all NB x NK sums in
   vectors of 16 lanes at once, so that each dy and each input vector loaded serves several
   multiply-adds. Every sum is the per-tap loop's: lanes over j in steps of 16, then
   CCONV__DK_FINISH. */
#define CCONV__DK_BLOCK(T, NB, NK)                                                             \
    do {                                                                                       \
        typedef T cconv__v16 __attribute__((vector_size(16 * sizeof(T))));                    \
        cconv__v16 a_[NB][NK], dv_[NB], xv_;                                                   \
        int64_t b_, k_;                                                                        \
        for (b_ = 0; b_ < NB; b_++)                                                            \
            for (k_ = 0; k_ < NK; k_++) a_[b_][k_] = (cconv__v16){0};                          \
        for (j = 0; j + 16 <= len; j += 16) {                                                  \
            for (b_ = 0; b_ < NB; b_++)                                                        \
                memcpy(&dv_[b_], dyT + (co0 + b_) * dstride + j, sizeof dv_[b_]);              \
            for (k_ = 0; k_ < NK; k_++) {                                                      \
                memcpy(&xv_, row + (kw0 + k_) * g->dw + j, sizeof xv_);                        \
                for (b_ = 0; b_ < NB; b_++) a_[b_][k_] += xv_ * dv_[b_];                       \
            }                                                                                  \
        }                                                                                      \
        for (b_ = 0; b_ < NB; b_++)                                                            \
            for (k_ = 0; k_ < NK; k_++) {                                                      \
                const T *CCONV__RESTRICT d = dyT + (co0 + b_) * dstride;                       \
                const T *CCONV__RESTRICT src = row + (kw0 + k_) * g->dw;                       \
                T acc[16];                                                                     \
                memcpy(acc, &a_[b_][k_], sizeof acc);                                          \
                CCONV__DK_FINISH(acc, src, j,                                                  \
                                 dw[((kh * g->KW + kw0 + k_) * CG + c) * g->CO + co0 + b_]);   \
            }                                                                                  \
    } while (0)

/* All of dw for one output pass (row oh, or the whole plane), in CCONV__DK_BLOCKs of NBV
   filters x NKV taps, then the filters and taps left over one at a time. */
#define CCONV__DK_BLOCKS(T, NBV, NKV)                                                          \
    for (co0 = 0; co0 < g->CO; co0 += nb) {                                                    \
        nb = g->CO - co0 >= NBV ? NBV : g->CO - co0 >= 2 ? 2 : 1;                              \
        for (kh = 0; kh < g->KH; kh++)                                                         \
            for (c = 0; c < CG; c++) {                                                         \
                const T *CCONV__RESTRICT row = xT + (c * Hp + oh * g->sh + kh * g->dh) * Wp;   \
                for (kw0 = 0; kw0 + NKV <= g->KW; kw0 += NKV) {                                \
                    if (nb == NBV) CCONV__DK_BLOCK(T, NBV, NKV);                               \
                    else if (nb == 2) CCONV__DK_BLOCK(T, 2, NKV);                              \
                    else CCONV__DK_BLOCK(T, 1, NKV);                                           \
                }                                                                              \
                for (; kw0 < g->KW; kw0++) {                                                   \
                    if (nb == NBV) CCONV__DK_BLOCK(T, NBV, 1);                                 \
                    else if (nb == 2) CCONV__DK_BLOCK(T, 2, 1);                                \
                    else CCONV__DK_BLOCK(T, 1, 1);                                             \
                }                                                                              \
            }                                                                                  \
    }
/* The blocking that fits the registers: 16 lanes of T in 1 vector (float, AVX-512): 4 x 5
   sums for 5-wide kernels (25 of the 32 registers; LeNet's 5 x 5), else 4 x 4; in 2: 2 x 2;
   else 1 x 2. Filters left over go 2 at a time, then 1. The blocking never changes a sum. */
#define CCONV__DK_DRIVE(T, VB)                                                                 \
    if (16 * sizeof(T) <= (VB) && g->KW == 5) { CCONV__DK_BLOCKS(T, 4, 5) }                    \
    else if (16 * sizeof(T) <= (VB)) { CCONV__DK_BLOCKS(T, 4, 4) }                             \
    else if (16 * sizeof(T) <= 2 * (VB)) { CCONV__DK_BLOCKS(T, 2, 2) }                         \
    else { CCONV__DK_BLOCKS(T, 1, 2) }
#define CCONV__DK_BLOCKED 1
#else
#define CCONV__DK_DRIVE(T, VB)
#define CCONV__DK_BLOCKED 0
#endif

#define CCONV_DIRECT_DEFINE(SUFFIX, T, ATTR, VB)                                                 \
/* Copy one image into the zero-padded planar buffer; returns 1 when it holds Inf or NaN. */   \
ATTR static int cconv_direct_planar_##SUFFIX(const T *x, T *xT, const cconv_geom *g)           \
{                                                                                              \
    int64_t Hp = cconv_direct_hp(g), Wp = cconv_direct_wp(g), c, hp, wp;                      \
    int bad = 0;                                                                               \
    memset(xT, 0, (size_t)(g->C * Hp * Wp + CCONV__DIRECT_SLACK) * sizeof(T));                 \
    for (hp = 0; hp < Hp; hp++) {                                                              \
        int64_t ih = hp - g->pt;                                                               \
        if (ih < 0 || ih >= g->H) continue;                                                    \
        if (g->C == 1) {            /* one channel: each row is one contiguous copy */         \
            int64_t w0 = g->pl > 0 ? 0 : -g->pl, w1 = Wp - g->pl < g->W ? Wp - g->pl : g->W;   \
            T *CCONV__RESTRICT o = xT + hp * Wp + g->pl;                                       \
            const T *CCONV__RESTRICT r = x + ih * g->W;                                        \
            for (wp = w0; wp < w1; wp++) {                                                     \
                o[wp] = r[wp];                                                                 \
                bad |= !(r[wp] - r[wp] == (T)0);                                               \
            }                                                                                  \
            continue;                                                                          \
        }                                                                                      \
        for (wp = 0; wp < Wp; wp++) {                                                          \
            int64_t iw = wp - g->pl;                                                           \
            if (iw < 0 || iw >= g->W) continue;                                                \
            for (c = 0; c < g->C; c++) {                                                       \
                T v = x[(ih * g->W + iw) * g->C + c];                                          \
                xT[(c * Hp + hp) * Wp + wp] = v;                                               \
                bad |= !(v - v == (T)0);                                                       \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    return bad;                                                                                \
}                                                                                              \
                                                                                               \
/* Accumulate yT[co0 + cb][j .. j + nv) for the nco filters whose tap weights wt holds         \
   (CCONV__DIRECT_COB per tap, zero past nco), in registers across all taps: each tap is one   \
   load of the input row and a multiply-add per filter. Each output sums its taps in the       \
   order kh, kw, c from zero, exactly as one multiply-add per tap over a whole row would.  */ \
ATTR static inline void cconv__direct_block_##SUFFIX(const T *xT, const T *wt, T *yT,          \
                                                     int64_t len, int64_t nco, int64_t j,      \
                                                     int64_t nv, int64_t oh, int64_t c0,       \
                                                     const cconv_geom *g)                      \
{                                                                                              \
    enum { JB = VB / sizeof(T), COB = CCONV__DIRECT_COB };                                     \
    CCONV__DIRECT_SIZES(g)                                                                     \
    T acc[COB][JB];                                                                            \
    int64_t kh, kw, c, cb, v;                                                                  \
    (void)OW; (void)COg;                                                                       \
    CCONV__DIRECT_VBLOCK(T, VB)                                                                \
    for (cb = 0; cb < COB; cb++) for (v = 0; v < JB; v++) acc[cb][v] = (T)0;                   \
    for (kh = 0; kh < g->KH; kh++) {                                                           \
        int64_t hp = oh * g->sh + kh * g->dh;                                                  \
        for (kw = 0; kw < g->KW; kw++) {                                                       \
            for (c = 0; c < CG; c++) {                                                         \
                const T *CCONV__RESTRICT src = xT + ((c0 + c) * Hp + hp) * Wp + kw * g->dw     \
                                               + j * sw;                                       \
                const T *CCONV__RESTRICT wv = wt + ((kh * g->KW + kw) * CG + c) * COB;         \
                if (nv == JB && sw == 1) {                                                     \
                    for (cb = 0; cb < COB; cb++)                                               \
                        for (v = 0; v < JB; v++) acc[cb][v] += wv[cb] * src[v];                \
                } else {                                                                       \
                    for (cb = 0; cb < COB; cb++)                                               \
                        for (v = 0; v < nv; v++) acc[cb][v] += wv[cb] * src[v * sw];           \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    for (cb = 0; cb < nco; cb++)                                                               \
        for (v = 0; v < nv; v++) yT[cb * len + j + v] = acc[cb][v];                            \
}                                                                                              \
                                                                                               \
/* Stride 1: outputs j .. j + NJ * JB of the padded plane read as one long row (pitch Wp), for \
   NC filters whose tap weights wt holds (NC per tap), into tile (NC rows of NJ * JB). All     \
   NJ * NC accumulators stay in registers across the taps; each tap is NJ loads of the input  \
   row and NJ multiply-adds per filter, summed in the order kh, kw, c from zero, as the block  \
   kernel does; then bv[cb] is added and, with relu, negatives become +0 (NaN and -0 stay).  \
   The last tile of a plane reads into the zeroed slack past it. */                          \
ATTR static inline void cconv__direct_tile_##SUFFIX(const T *xT, const T *wt, const T *bv,     \
                                                    int relu, T *tile, int64_t j, int64_t c0,  \
                                                    int64_t NC, const cconv_geom *g)           \
{                                                                                              \
    enum { JB = VB / sizeof(T), NJ = CCONV__DIRECT_NJ(VB), COB = CCONV__DIRECT_COB };         \
    CCONV__DIRECT_SIZES(g)                                                                     \
    int64_t kh, kw, c, cb, n, v;                                                               \
    (void)OW; (void)COg; (void)sw; (void)v;                                                    \
    CCONV__DIRECT_VTILE(T, VB, 8)                                                              \
    CCONV__DIRECT_VTILE(T, VB, 6)                                                              \
    CCONV__DIRECT_VTILE(T, VB, 4)                                                              \
    {                                                                                          \
        T acc[COB][NJ * JB];                                                                   \
        for (cb = 0; cb < NC; cb++) for (v = 0; v < NJ * JB; v++) acc[cb][v] = (T)0;           \
        for (kh = 0; kh < g->KH; kh++)                                                         \
            for (kw = 0; kw < g->KW; kw++)                                                     \
                for (c = 0; c < CG; c++) {                                                     \
                    const T *CCONV__RESTRICT src = xT + ((c0 + c) * Hp + kh * g->dh) * Wp      \
                                                   + kw * g->dw + j;                           \
                    const T *CCONV__RESTRICT wv = wt + ((kh * g->KW + kw) * CG + c) * NC;      \
                    for (cb = 0; cb < NC; cb++)                                                \
                        for (v = 0; v < NJ * JB; v++) acc[cb][v] += wv[cb] * src[v];           \
                }                                                                              \
        for (cb = 0; cb < NC; cb++)                                                            \
            for (n = 0; n < NJ * JB; n++) {                                                    \
                const T val = acc[cb][n] + bv[cb];                                             \
                tile[cb * NJ * JB + n] = relu && val < (T)0 ? (T)0 : val;                      \
            }                                                                                  \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* y (OH, OW, CO) of one image = conv(x) + bias (bias may be NULL), then max(., 0) with relu  \
   (the compiled plan's fused activation). Filters go in blocks of CCONV__DIRECT_COB within a \
   group. With stride 1 the whole padded plane (row pitch Wp) is one long row of outputs, cut \
   into tiles (cconv__direct_tile; the columns past OW of each row are computed too and      \
   thrown away, which keeps the tiles long and simple), each written to y from the stack     \
   while it is in cache. Otherwise each output row is computed in blocks of one vector into  \
   the transposed rows yT, then written back NHWC. */                                        \
ATTR static void cconv_direct_forward_##SUFFIX(const T *x, const T *w, const T *bias, T *y,    \
                                               const cconv_geom *g, T *scratch, int relu)      \
{                                                                                              \
    enum { JB = VB / sizeof(T), COB = CCONV__DIRECT_COB, NJ = CCONV__DIRECT_NJ(VB) };         \
    CCONV__DIRECT_SIZES(g)                                                                     \
    int64_t plane = g->sh == 1 && sw == 1, len = plane ? (g->OH - 1) * Wp + OW : OW;          \
    int64_t taps = g->KH * g->KW * CG, CO = g->CO, oh, ow, co, co0, nco, NC, t, cb, j;         \
    T *xT = scratch, *yT = scratch + g->C * Hp * Wp + CCONV__DIRECT_SLACK;                    \
    T *wt = yT + CO * g->OH * Wp, tile[COB * NJ * JB], bv[COB];                                \
    CCONV__DW_RUN(g, cconv__dw_forward_##SUFFIX(x, w, bias, y, g, scratch, relu, 0, g->OH))    \
    cconv_direct_planar_##SUFFIX(x, xT, g);                                                    \
    for (co0 = 0; co0 < CO; co0 += nco) {                                                      \
        int64_t gend = (co0 / COg + 1) * COg, c0 = (co0 / COg) * CG;                           \
        nco = gend - co0 < COB ? gend - co0 : COB;                                             \
        NC = !plane ? COB : nco <= 4 ? 4 : nco <= 6 ? 6 : COB;  /* the tile's filters */       \
        for (t = 0; t < taps; t++)                                                             \
            for (cb = 0; cb < NC; cb++)                                                        \
                wt[t * NC + cb] = cb < nco ? w[t * CO + co0 + cb] : (T)0;                      \
        if (!plane) {                                                                          \
            for (oh = 0; oh < g->OH; oh++)                                                     \
                for (j = 0; j < len; j += JB)                                                  \
                    cconv__direct_block_##SUFFIX(xT, wt, yT + co0 * len + oh * CO * len, len,  \
                                                 nco, j, len - j < JB ? len - j : JB, oh, c0,  \
                                                 g);                                           \
            continue;                                                                          \
        }                                                                                      \
        for (cb = 0; cb < NC; cb++) bv[cb] = bias && cb < nco ? bias[co0 + cb] : (T)0;         \
        for (j = 0; j < len; j += NJ * JB) {                                                   \
            int64_t v, e = len - j < NJ * JB ? len - j : NJ * JB;                              \
            cconv__direct_tile_##SUFFIX(xT, wt, bv, relu, tile, j, c0, NC, g);                 \
            oh = j / Wp;                                                                       \
            ow = j - oh * Wp;                                                                  \
            if (nco == 8) CCONV__DIRECT_SCATTER(T, 8)                                          \
            else if (nco == 6) CCONV__DIRECT_SCATTER(T, 6)                                     \
            else if (nco == 4) CCONV__DIRECT_SCATTER(T, 4)                                     \
            else CCONV__DIRECT_SCATTER(T, nco)                                                 \
        }                                                                                      \
    }                                                                                          \
    if (plane) return;                                                                         \
    for (co = 0; co < CO; co++) {              /* back to NHWC, one filter at a time */       \
        const T b0 = bias ? bias[co] : (T)0;                                                   \
        const T *CCONV__RESTRICT yr = yT + co * len;                                           \
        T *CCONV__RESTRICT yo = y + co;                                                        \
        for (oh = 0; oh < g->OH; oh++, yr += CO * len)                                         \
            for (ow = 0; ow < OW; ow++, yo += CO) {                                            \
                const T val = yr[ow] + b0;                                                     \
                *yo = relu && val < (T)0 ? (T)0 : val;                                         \
            }                                                                                  \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* dw (KH, KW, CG, CO) += kernel gradient of one image; db (CO) += bias gradient. With      \
   stride 1 each weight's gradient is one long dot product over the padded plane, dy being    \
   zero in the padding columns; an image holding Inf/NaN takes the row-by-row loop instead, so \
   that no 0 * Inf from a padding column reaches a gradient. */                              \
ATTR static void cconv_direct_backward_params_##SUFFIX(const T *dy, const T *x, T *dw, T *db,  \
                                                       const cconv_geom *g, T *scratch)        \
{                                                                                              \
    CCONV__DIRECT_SIZES(g)                                                                     \
    int64_t oh, ow, co, kh, kw, c, l, j;                                                       \
    T *xT = scratch, *dyT = scratch + g->C * Hp * Wp + CCONV__DIRECT_SLACK;                   \
    int bad;                                                                                   \
    CCONV__DW_RUN(g, cconv__dw_params_##SUFFIX(dy, x, dw, db, g, scratch, 0, g->OH))           \
    bad = cconv_direct_planar_##SUFFIX(x, xT, g);                                              \
    int plane = g->sh == 1 && sw == 1 && !bad;                                                 \
    int blocked = CCONV__DK_BLOCKED && sw == 1 && g->groups == 1;                              \
    int64_t len = plane ? (g->OH - 1) * Wp + OW : OW;     /* dy entries per pass */           \
    int64_t pitch = plane ? Wp : OW;                                                           \
    for (oh = 0; oh < (plane ? 1 : g->OH); oh++) {                                             \
        for (j = 0; j < (plane ? g->OH : 1); j++) {         /* dy rows, transposed */          \
            const T *dr = dy + ((plane ? j : oh) * OW) * g->CO;                                \
            const int64_t S = plane ? g->OH * Wp : OW;    /* one filter's dy */                \
            T *CCONV__RESTRICT o = dyT + j * pitch;                                            \
            for (ow = 0; ow < OW; ow++)      /* dy read in order, each filter a stream */      \
                for (co = 0; co < g->CO; co++) o[co * S + ow] = dr[ow * g->CO + co];           \
            for (co = 0; co < g->CO; co++)                                                     \
                for (ow = OW; ow < pitch && j + 1 < g->OH; ow++) o[co * S + ow] = (T)0;        \
        }                                                                                      \
        if (dw && blocked) {                                                                   \
            int64_t co0, kw0, nb, dstride = plane ? g->OH * Wp : OW;                           \
            CCONV__DK_DRIVE(T, VB)                                                             \
        }                                                                                      \
        for (co = 0; co < g->CO; co++) {                                                       \
            const T *CCONV__RESTRICT d = dyT + co * (plane ? g->OH * Wp : OW);                 \
            int64_t c0 = (co / COg) * CG;                                                      \
            if (db) { /* 16 lanes summed pairwise, as the weights' dot products */             \
                T acc[16] = {0};                                                               \
                for (j = 0; j + 16 <= len; j += 16)                                            \
                    for (l = 0; l < 16; l++) acc[l] += d[j + l];                               \
                for (; j < len; j++) acc[0] += d[j];                                           \
                for (l = 8; l > 0; l /= 2)                                                     \
                    for (j = 0; j < l; j++) acc[j] += acc[j + l];                              \
                db[co] += acc[0];                                                              \
            }                                                                                  \
            if (!dw || blocked) continue;                                                      \
            for (kh = 0; kh < g->KH; kh++) {                                                   \
                int64_t hp = oh * g->sh + kh * g->dh;                                          \
                for (c = 0; c < CG; c++) {                                                     \
                    const T *CCONV__RESTRICT row = xT + ((c0 + c) * Hp + hp) * Wp;             \
                    T *dwc = dw + (kh * g->KW * CG + c) * g->CO + co;                          \
                    kw = 0;                                                                    \
                    if (sw == 1) /* 4 taps at a time: 4 independent sums share each d load */  \
                        for (; kw + 4 <= g->KW; kw += 4) {                                     \
                            const T *CCONV__RESTRICT s0 = row + kw * g->dw;                    \
                            const T *CCONV__RESTRICT s1 = s0 + g->dw;                          \
                            const T *CCONV__RESTRICT s2 = s1 + g->dw;                          \
                            const T *CCONV__RESTRICT s3 = s2 + g->dw;                          \
                            T a0[16] = {0}, a1[16] = {0}, a2[16] = {0}, a3[16] = {0};          \
                            for (j = 0; j + 16 <= len; j += 16)                                \
                                for (l = 0; l < 16; l++) {                                     \
                                    const T dv = d[j + l];                                     \
                                    a0[l] += s0[j + l] * dv;                                   \
                                    a1[l] += s1[j + l] * dv;                                   \
                                    a2[l] += s2[j + l] * dv;                                   \
                                    a3[l] += s3[j + l] * dv;                                   \
                                }                                                              \
                            CCONV__DK_FINISH(a0, s0, j, dwc[(kw + 0) * CG * g->CO]);           \
                            CCONV__DK_FINISH(a1, s1, j, dwc[(kw + 1) * CG * g->CO]);           \
                            CCONV__DK_FINISH(a2, s2, j, dwc[(kw + 2) * CG * g->CO]);           \
                            CCONV__DK_FINISH(a3, s3, j, dwc[(kw + 3) * CG * g->CO]);           \
                        }                                                                      \
                    for (; kw < g->KW; kw++) {                                                 \
                        const T *CCONV__RESTRICT src = row + kw * g->dw;                       \
                        T acc[16] = {0};                                                       \
                        if (sw == 1) /* the same sums, with unit-stride loads the compiler sees */\
                            for (j = 0; j + 16 <= len; j += 16)                                \
                                for (l = 0; l < 16; l++) acc[l] += src[j + l] * d[j + l];      \
                        else                                                                   \
                            for (j = 0; j + 16 <= len; j += 16)                                \
                                for (l = 0; l < 16; l++) acc[l] += src[(j + l) * sw] * d[j + l];\
                        CCONV__DK_FINISH(acc, src, j, dwc[kw * CG * g->CO]);                   \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* dx (H, W, C) of one image from dy (OH, OW, CO). */                                         \
ATTR static void cconv_direct_backward_input_##SUFFIX(const T *dy, const T *w, T *dx,          \
                                                      const cconv_geom *g, T *scratch)         \
{                                                                                              \
    CCONV__DIRECT_SIZES(g)                                                                     \
    int64_t oh, ow, co, kh, kw, c, ih, iw;                                                     \
    T *dxT = scratch, *dyT = scratch + g->C * Hp * Wp;                                         \
    CCONV__DW_RUN(g, cconv__dw_backward_input_##SUFFIX(dy, w, dx, g, scratch, 0, g->H))        \
    memset(dxT, 0, (size_t)(g->C * Hp * Wp) * sizeof(T));                                      \
    for (oh = 0; oh < g->OH; oh++) {                                                           \
        for (ow = 0; ow < OW; ow++)                                                            \
            for (co = 0; co < g->CO; co++)                                                     \
                dyT[co * OW + ow] = dy[(oh * OW + ow) * g->CO + co];                           \
        for (co = 0; co < g->CO; co++) {                                                       \
            const T *CCONV__RESTRICT d = dyT + co * OW;                                        \
            int64_t c0 = (co / COg) * CG;                                                      \
            for (kh = 0; kh < g->KH; kh++) {                                                   \
                int64_t hp = oh * g->sh + kh * g->dh;                                          \
                for (kw = 0; kw < g->KW; kw++) {                                               \
                    for (c = 0; c < CG; c++) {                                                 \
                        const T wv = w[((kh * g->KW + kw) * CG + c) * g->CO + co];             \
                        T *CCONV__RESTRICT dst = dxT + ((c0 + c) * Hp + hp) * Wp + kw * g->dw; \
                        if (sw == 1) { for (ow = 0; ow < OW; ow++) dst[ow] += wv * d[ow]; }    \
                        else { for (ow = 0; ow < OW; ow++) dst[ow * sw] += wv * d[ow]; }       \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    for (ih = 0; ih < g->H; ih++) {                                                            \
        int64_t hp = ih + g->pt;                                                               \
        for (iw = 0; iw < g->W; iw++) {                                                        \
            int64_t wp = iw + g->pl;                                                           \
            T *o = dx + (ih * g->W + iw) * g->C;                                               \
            if (hp >= Hp || wp >= Wp) { for (c = 0; c < g->C; c++) o[c] = (T)0; continue; }    \
            for (c = 0; c < g->C; c++) o[c] = dxT[(c * Hp + hp) * Wp + wp];                    \
        }                                                                                      \
    }                                                                                          \
}

CCONV_ISA_DEFINE_ALL(CCONV_DW_DEFINE, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV_DW_DEFINE, f64, double)
CCONV_ISA_DEFINE_ALL(CCONV_DIRECT_DEFINE, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV_DIRECT_DEFINE, f64, double)

#define CCONV__DIRECT_API(SUF, T)                                                              \
static void cconv_direct_forward_##SUF(const T *x, const T *w, const T *bias, T *y,            \
                                       const void *g, T *scratch)                              \
{                                                                                              \
    const cconv_geom *geom = (const cconv_geom *)g;                                            \
    CCONV_ISA_DISPATCH(cconv_direct_forward, SUF, (x, w, bias, y, geom, scratch, 0));          \
}                                                                                              \
static void cconv_direct_forward_relu_##SUF(const T *x, const T *w, const T *bias, T *y,       \
                                            const void *g, T *scratch, int relu)               \
{                                                                                              \
    const cconv_geom *geom = (const cconv_geom *)g;                                            \
    CCONV_ISA_DISPATCH(cconv_direct_forward, SUF, (x, w, bias, y, geom, scratch, relu));       \
}                                                                                              \
static void cconv_direct_backward_params_##SUF(const T *dy, const T *x, T *dw, T *db,          \
                                               const void *g, T *scratch)                      \
{                                                                                              \
    const cconv_geom *geom = (const cconv_geom *)g;                                            \
    CCONV_ISA_DISPATCH(cconv_direct_backward_params, SUF, (dy, x, dw, db, geom, scratch));     \
}                                                                                              \
static void cconv_direct_backward_input_##SUF(const T *dy, const T *w, T *dx,                  \
                                              const void *g, T *scratch)                       \
{                                                                                              \
    const cconv_geom *geom = (const cconv_geom *)g;                                            \
    CCONV_ISA_DISPATCH(cconv_direct_backward_input, SUF, (dy, w, dx, geom, scratch));          \
}

CCONV__DIRECT_API(f32, float)
CCONV__DIRECT_API(f64, double)
CCONV__DW_API(f32, float)
CCONV__DW_API(f64, double)

#endif
