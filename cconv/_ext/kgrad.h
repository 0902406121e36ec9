/* Kernel gradient of a convolution with few taps (KH * KW * C small, one group: the first
   layer of most CNNs), one image at a time, single-threaded.

   dw[k][co] = sum over output pixels p of xwin(p)[k] * dy[p][co], k = (kh, kw, c). im2col +
   GEMM runs this as a product whose inner dimension is the pixels and whose output is tiny
   (27 x 32 for a 3x3 RGB layer), so packing and the im2col copy cost more than the multiply
   (measured about 25 GFLOP/s). Here each pixel's dy row (CO values, one or two vectors) is
   multiplied by each of a block of taps, broadcast from the input, into accumulators that
   stay in registers for the whole image: per pixel KB taps x 2 vectors of fused
   multiply-adds and one load per tap.

   The image is copied once into a zero-padded buffer (Hp x Wp x C, the windows' extent) and
   dy into rows padded to whole vectors, so every tap is in bounds. A padding tap then adds
   0 * dy, which differs from the exact sum (no term) only when dy or x holds Inf or NaN: the
   copies report that and the caller takes the direct kernels for such an image.

   Summation order: for each weight, the image's pixels in raster order, then the sum is
   added to dw; it depends only on the inputs and the ISA path (isa.h). */
#ifndef CCONV_KGRAD_H
#define CCONV_KGRAD_H

#include <stdint.h>
#include <string.h>
#include "direct.h"

/* Most taps (KH * KW * C) the kernel takes. */
#define CCONV_KGRAD_MAX_TAPS 64

/* Vectors per padded dy row (vector of VB bytes). */
#define CCONV__KG_NV(g, VB, T) (((g)->CO * (int64_t)sizeof(T) + (VB) - 1) / (VB))

/* Scratch elements for one image, for the widest vectors (64 bytes) of either type. */
static inline int64_t cconv_kgrad_scratch(const void *geom)
{
    const cconv_geom *g = (const cconv_geom *)geom;
    int64_t hp = cconv_direct_hp(g), wp = cconv_direct_wp(g);
    int64_t cop = (g->CO + 15) / 16 * 16;
    return hp * wp * g->C + g->OH * g->OW * cop + 16;
}

#define CCONV_KGRAD_DEFINE(SUFFIX, T, ATTR, VB)                                                \
typedef T cconv__kgv_##SUFFIX __attribute__((vector_size(VB)));                                 \
                                                                                               \
/* acc[k][v] += x[off[k]] * d[v] over the pixels, NVB (1 or 2) vectors from vector v0, taps   \
   k0 .. k0 + KB (the ones past K read tap 0 and are not stored). */                           \
ATTR static void cconv__kgrad_block_##SUFFIX(const T *xp, const T *dyp, const int64_t *off,    \
                                             int64_t k0, int64_t K, int64_t v0, int nvb,       \
                                             const cconv_geom *g, int64_t Wp, int64_t cop,     \
                                             T *dw, T *db)                                     \
{                                                                                              \
    enum { VL = VB / sizeof(T), KB = VB == 64 ? 9 : 5 };                                       \
    typedef cconv__kgv_##SUFFIX V;                                                             \
    V a0[KB], a1[KB], s0 = {0}, s1 = {0};   /* s: the dy sums (bias gradient) */            \
    int64_t o[KB], oh, ow, k, l;                                                               \
    for (k = 0; k < KB; k++) {                                                                 \
        a0[k] = a1[k] = (V){0};                                                                \
        o[k] = k0 + k < K ? off[k0 + k] : 0;                                                   \
    }                                                                                          \
    for (oh = 0; oh < g->OH; oh++) {                                                           \
        const T *xr = xp + oh * g->sh * Wp * g->C;                                             \
        const T *dr = dyp + oh * g->OW * cop + v0 * VL;                                        \
        if (nvb == 2)                                                                          \
            for (ow = 0; ow < g->OW; ow++) {                                                   \
                const T *CCONV__RESTRICT xb = xr + ow * g->sw * g->C;                          \
                V d0, d1;                                                                      \
                memcpy(&d0, dr + ow * cop, VB);                                                \
                memcpy(&d1, dr + ow * cop + VL, VB);                                           \
                s0 += d0;                                                                      \
                s1 += d1;                                                                      \
                CCONV__UNROLL for (k = 0; k < KB; k++) {                                       \
                    const T xv = xb[o[k]];                                                     \
                    a0[k] += xv * d0;                                                          \
                    a1[k] += xv * d1;                                                          \
                }                                                                              \
            }                                                                                  \
        else                                                                                   \
            for (ow = 0; ow < g->OW; ow++) {                                                   \
                const T *CCONV__RESTRICT xb = xr + ow * g->sw * g->C;                          \
                V d0;                                                                          \
                memcpy(&d0, dr + ow * cop, VB);                                                \
                s0 += d0;                                                                      \
                CCONV__UNROLL for (k = 0; k < KB; k++) a0[k] += xb[o[k]] * d0;                 \
            }                                                                                  \
    }                                                                                          \
    for (l = 0; db && k0 == 0 && l < VL && v0 * VL + l < g->CO; l++) db[v0 * VL + l] += s0[l];\
    for (l = 0; db && k0 == 0 && nvb == 2 && l < VL && (v0 + 1) * VL + l < g->CO; l++)        \
        db[(v0 + 1) * VL + l] += s1[l];                                                        \
    for (k = 0; dw && k < KB && k0 + k < K; k++) {                                             \
        T *row = dw + (k0 + k) * g->CO;                                                        \
        for (l = 0; l < VL && v0 * VL + l < g->CO; l++) row[v0 * VL + l] += a0[k][l];          \
        for (l = 0; nvb == 2 && l < VL && (v0 + 1) * VL + l < g->CO; l++)                      \
            row[(v0 + 1) * VL + l] += a1[k][l];                                                \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* dw (KH, KW, C, CO) += kernel gradient of one image (dw may be NULL), db (CO) += bias        \
   gradient. Returns 1, adding nothing, when x or dy holds Inf or NaN. */                      \
ATTR static int cconv_kgrad_image_##SUFFIX(const T *dy, const T *x, T *dw, T *db,               \
                                           const cconv_geom *g, T *scratch)                    \
{                                                                                              \
    enum { VL = VB / sizeof(T) };                                                              \
    const int64_t Hp = cconv_direct_hp(g), Wp = cconv_direct_wp(g), C = g->C, CO = g->CO;      \
    const int64_t nv = CCONV__KG_NV(g, VB, T), cop = nv * VL, P = g->OH * g->OW;             \
    const int64_t K = g->KH * g->KW * C;                                                       \
    T *xp = scratch, *pad = scratch + Hp * Wp * C;                                             \
    const T *dyp = CO == cop ? dy : pad;  /* rows of whole vectors: read in place */          \
    int64_t off[CCONV_KGRAD_MAX_TAPS], h, c, p, k, v, kh, kw;                                  \
    int bad = 0;                                                                               \
    for (h = 0; h < Hp; h++) {          /* zero-padded copy of the windows' extent */          \
        int64_t ih = h - g->pt, w0 = g->pl < Wp ? g->pl : Wp;                                  \
        int64_t w1 = g->pl + g->W < Wp ? g->pl + g->W : Wp;   /* columns holding x */          \
        T *dst = xp + h * Wp * C;                                                              \
        const T *src = x + (ih * g->W + (w0 - g->pl)) * C;                                     \
        if (ih < 0 || ih >= g->H || w1 <= w0) {                                                \
            memset(dst, 0, (size_t)(Wp * C) * sizeof(T));                                      \
            continue;                                                                          \
        }                                                                                      \
        memset(dst, 0, (size_t)(w0 * C) * sizeof(T));                                          \
        for (c = 0; c < (w1 - w0) * C; c++) {                                                  \
            dst[w0 * C + c] = src[c];                                                          \
            bad |= src[c] - src[c] != 0;         /* true for Inf and NaN only */               \
        }                                                                                      \
        memset(dst + w1 * C, 0, (size_t)((Wp - w1) * C) * sizeof(T));                          \
    }                                                                                          \
    if (CO == cop)                                                                             \
        for (p = 0; p < P * CO; p++) bad |= dy[p] - dy[p] != 0;                                \
    else                                                                                       \
        for (p = 0; p < P; p++) {       /* dy rows padded to whole vectors */                  \
            for (c = 0; c < CO; c++) {                                                         \
                pad[p * cop + c] = dy[p * CO + c];                                             \
                bad |= dy[p * CO + c] - dy[p * CO + c] != 0;                                   \
            }                                                                                  \
            for (; c < cop; c++) pad[p * cop + c] = 0;                                         \
        }                                                                                      \
    if (bad) return 1;                  /* an Inf or NaN */                                    \
    for (kh = 0; kh < g->KH; kh++)      /* tap (kh, kw, c): offset in the padded image */      \
        for (kw = 0; kw < g->KW; kw++)                                                         \
            for (c = 0; c < C; c++)                                                            \
                off[(kh * g->KW + kw) * C + c] = (kh * g->dh * Wp + kw * g->dw) * C + c;       \
    for (k = 0; k < (dw ? K : 1); k += (VB == 64 ? 9 : 5))   /* db with the first taps */   \
        for (v = 0; v < nv; v += 2)                                                            \
            cconv__kgrad_block_##SUFFIX(xp, dyp, off, k, K, v, nv - v >= 2 ? 2 : 1, g, Wp, cop, \
                                        dw, db);                                               \
    return 0;                                                                                  \
}

CCONV_ISA_DEFINE_ALL(CCONV_KGRAD_DEFINE, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV_KGRAD_DEFINE, f64, double)

#define CCONV__KGRAD_API(SUF, T)                                                               \
static int cconv_kgrad_image_##SUF(const T *dy, const T *x, T *dw, T *db, const void *g,       \
                                   T *scratch)                                                 \
{                                                                                              \
    int r;                                                                                     \
    CCONV_ISA_DISPATCH(r = cconv_kgrad_image, SUF, (dy, x, dw, db, (const cconv_geom *)g,      \
                                                    scratch));                                 \
    return r;                                                                                  \
}
CCONV__KGRAD_API(f32, float)
CCONV__KGRAD_API(f64, double)

#endif
