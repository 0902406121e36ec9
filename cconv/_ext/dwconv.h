/* Depthwise convolution (groups == C > 1, depth multiplier M = CO / C), NHWC, vectorised over
   channels: the case of direct.h that its planar kernels serve badly (every channel its own
   plane, a handful of taps per plane). Included by direct.h, whose entry points call these
   kernels when cconv_dw_applies(g).

   NHWC makes the channels the contiguous axis, and output channel c * M + m reads input
   channel c only. With M == 1 every output pixel is a sum over taps of x[ih, iw, :] *
   w[kh, kw, :], whole vectors of channels at a time; with M > 1 the input (rows needed) is
   first copied with each channel repeated M times (the "expanded" image, H x W x CO), which
   reduces it to M == 1 over CO channels. The kernel is (KH, KW, 1, CO), so w[kh, kw, :] is a
   contiguous vector of CO weights.

   Forward and input gradient are one "gather": out[q, p, :] = bias + sum over the taps that
   reach (q, p) of src[row, col, :] * w[kh, kw, :]. Forward: src = x, out = y. Input gradient:
   src = dy, out = dx, a tap reaching input (ih, iw) from output (oh, ow) with
   oh * sh - pt + kh * dh == ih (and the same for columns). Taps outside the image are
   skipped in the loops (for finite values skipping a zero product changes no bit, as a sum
   started at +0 is never -0); the NaN that the zero-padded sum gets from 0 * Inf is put back
   afterwards where it arises: forward outputs whose padding taps hold a non-finite weight
   (cconv__dw_padding_nan, only when the kernel is not all finite), kernel-gradient taps in
   the padding where dy is not finite (dy * 0 added at the borders).
   Along each axis the taps reaching one position form an arithmetic progression in k
   (cconv__dw_axis), so a run of up to CCONV__DW_NP output pixels with the same taps is one
   register tile: NP vectors of accumulators, each tap one weight vector loaded and NP input
   vectors multiplied into it. Each output element sums its taps in ascending (kh, kw) from
   zero, then adds the bias (then relu), whatever the tile it falls in; so results do not
   depend on how rows are split among threads.

   Kernel gradient: dw[kh, kw, co] += sum over output pixels in row-major order of
   x[ih, iw, co / M] * dy[oh, ow, co] (db[co] += dy[oh, ow, co] likewise), the running sums
   (3 x 3 taps, or up to 8 of one kernel row, x one vector of channels) held in registers along
   CCONV__DW_KCHUNK output pixels of a row and kept in dw between chunks.

   Compiled per ISA by CCONV_ISA_DEFINE_ALL (CCONV_DW_DEFINE) with GNU C vectors; with other
   compilers (or CCONV_GEMM_PORTABLE, see isa.h) cconv_dw_applies is 0 and direct.h's planar
   kernels run instead. */
#ifndef CCONV_DWCONV_H
#define CCONV_DWCONV_H

#include <stdint.h>
#include <string.h>

/* Output pixels of one gather tile (accumulators: NP vectors, beside one weight and one input
   vector: 10 of AVX2's 16 registers). */
#define CCONV__DW_NP 8
/* Output pixels of a row the kernel gradient takes at a time, all channels of them (so that
   memory is read in whole runs of pixels), its running sums reloaded from dw between chunks */
#define CCONV__DW_KCHUNK 16

/* Whether direct.h's entry points run the depthwise kernels for g: one input channel per
   group, several groups (C == 1 is an ordinary convolution, LeNet's first layer, which the
   planar kernels vectorise over the width). */
static inline int cconv_dw_applies(const void *geom)
{
#if defined(CCONV__GNUVEC)
    const cconv_geom *g = (const cconv_geom *)geom;
    return g->groups == g->C && g->C > 1;
#else
    (void)geom;
    return 0;
#endif
}

/* int64 entries of the per-column tap table (5 per output column of the widest gather). */
static inline int64_t cconv__dw_ci_elems(const cconv_geom *g)
{
    return 5 * (g->W > g->OW ? g->W : g->OW);
}

/* Scratch elements (of T, either float or double) the depthwise kernels need for one image:
   the column table (as T elements, rounded to 16 bytes), then, with M > 1, the expanded
   image (H x W x CO; the input gradient's per-multiplier sums use the same room). */
static inline int64_t cconv_dw_scratch(const cconv_geom *g)
{
    return 2 * cconv__dw_ci_elems(g) + 8 + (g->CO > g->C ? g->H * g->W * g->CO : 0) + 16;
}

/* Scratch (T elements) in front of the expanded image: the column table, with room to align
   it to 8 bytes (the compiled plan's per-thread scratch may start at any float). */
#define CCONV__DW_XE_OFFSET(g, T) ((cconv__dw_ci_elems(g) * 8 + 16 + 15) / 16 * 16 / sizeof(T))
/* The column table in scratch, aligned to 8 bytes. */
#define CCONV__DW_CI(scratch) ((int64_t *)(void *)(((uintptr_t)(scratch) + 7) & ~(uintptr_t)7))

/* One axis of a gather. The taps k = k0 + i * ks (i < n) of a K-tap kernel (dilation d,
   stride s, padding before pad) reach output position q from source positions
   s0 + i * ss in [0, S). Forward (fwd): the source is the input, position q * s - pad + k * d.
   Input gradient: q is an input position and the source is dy, position
   (q + pad - k * d) / s where that divides. n == 0 when no tap reaches q. */
static inline void cconv__dw_axis(int fwd, int64_t q, int64_t K, int64_t s, int64_t d,
                                  int64_t pad, int64_t S, int64_t *out)
{
    int64_t k, n = 0, first = 0, step = 1;
    for (k = 0; k < K; k++) {
        int64_t src;
        if (fwd) src = q * s - pad + k * d;
        else {
            int64_t t = q + pad - k * d;
            if (t < 0 || t % s) continue;
            src = t / s;
        }
        if (src < 0 || src >= S) continue;
        if (n == 0) first = k;
        else if (n == 1) step = k - first;
        n++;
    }
    out[0] = first;
    out[1] = n;
    out[2] = step;
    out[3] = n == 0 ? 0 : fwd ? q * s - pad + first * d : (q + pad - first * d) / s;
    out[4] = fwd ? step * d : -(step * d) / s;
}

/* The gather's channel loop for vectors of L lanes and NPC pixels (a constant for whole tiles):
   out[j * os + c] = bias[c] + sum over a < na, k < nk of src[a * ra + k * ka + j * ps + c] *
   w[a * wa + k * wk + c], then relu; for channels c.. while L of them remain. */
#define CCONV__DW_GATHER(T, L, NPC)                                                            \
    for (; c + (int64_t)(L) <= C; c += (L)) {                                                  \
        typedef T cconv__v __attribute__((vector_size((L) * sizeof(T))));                      \
        typedef __typeof__((cconv__v){0} < (cconv__v){0}) cconv__m;                            \
        cconv__v acc[NPC], xv, wv, bv = {0};                                                   \
        int64_t a, k, j;                                                                       \
        for (j = 0; j < (NPC); j++) acc[j] = (cconv__v){0};                                    \
        for (a = 0; a < na; a++)                                                               \
            for (k = 0; k < nk; k++) {                                                         \
                const T *s_ = src + a * ra + k * ka + c;                                       \
                memcpy(&wv, w + a * wa + k * wk + c, sizeof wv);                               \
                for (j = 0; j < (NPC); j++) {                                                  \
                    memcpy(&xv, s_ + j * ps, sizeof xv);                                       \
                    acc[j] += xv * wv;                                                         \
                }                                                                              \
            }                                                                                  \
        if (bias) memcpy(&bv, bias + c, sizeof bv);                                            \
        for (j = 0; j < (NPC); j++) {                                                          \
            cconv__v t = acc[j] + bv;                                                          \
            if (relu) t = (cconv__v)((cconv__m)t & ~(t < (cconv__v){0}));                      \
            memcpy(out + j * os + c, &t, sizeof t);                                            \
        }                                                                                      \
    }

/* One pass of the kernel gradient over output row oh for channels c .. c + L: the NR x NK
   taps (kp + r, wp + k), r < NR, k < NK (constants, so that the accumulators stay in
   registers and the input addresses are a few row pointers plus multiples of the column step),
   and with dob the bias. Each output pixel loads dy once and adds x * dy into every tap of the
   pass that reaches the image (away from the borders all of them: no test there). */
#define CCONV__DW_KPASS(T, L, NR, NK)                                                          \
    do {                                                                                       \
        typedef T cconv__v __attribute__((vector_size((L) * sizeof(T))));                      \
        cconv__v acc[NR][NK], bacc = {0}, dv, xv;                                              \
        const int64_t RS = g->dh * g->W * CO, CS = g->dw * CO;                                 \
        int64_t r, k, ow;                                                                      \
        for (r = 0; r < (NR); r++)                                                             \
            for (k = 0; k < (NK); k++)                                                         \
                memcpy(&acc[r][k], dw + ((kp + r) * g->KW + wp + k) * CO + c, sizeof dv);      \
        if (dob) memcpy(&bacc, db + c, sizeof bacc);                                           \
        for (ow = owa; ow < owb; ow++) {                                                       \
            const int64_t *ct = ci + 5 * ow;                                                   \
            const T *x0 = src + ((ihb + kp * g->dh) * g->W + ow * g->sw - g->pl + wp * g->dw)  \
                                    * CO + c;                                                  \
            memcpy(&dv, dyr + ow * CO + c, sizeof dv);                                         \
            if (dob) bacc += dv;                                                               \
            if (full && ct[1] == g->KW) {                                                      \
                CCONV__UNROLL for (r = 0; r < (NR); r++)                                       \
                    CCONV__UNROLL for (k = 0; k < (NK); k++) {                                 \
                        memcpy(&xv, x0 + r * RS + k * CS, sizeof xv);                          \
                        acc[r][k] += xv * dv;                                                  \
                    }                                                                          \
            } else {                                                                           \
                CCONV__UNROLL for (r = 0; r < (NR); r++)                                       \
                    CCONV__UNROLL for (k = 0; k < (NK); k++)                                   \
                        if (kp + r >= kh0 && kp + r < kh1 && wp + k >= ct[0]                   \
                            && wp + k < ct[0] + ct[1]) {                                       \
                            memcpy(&xv, x0 + r * RS + k * CS, sizeof xv);                      \
                            acc[r][k] += xv * dv;                                              \
                        } else     /* a padding zero times dy: NaN where dy is Inf or NaN */   \
                            acc[r][k] += dv * (cconv__v){0};                                   \
            }                                                                                  \
        }                                                                                      \
        for (r = 0; r < (NR); r++)                                                             \
            for (k = 0; k < (NK); k++)                                                         \
                memcpy(dw + ((kp + r) * g->KW + wp + k) * CO + c, &acc[r][k], sizeof dv);      \
        if (dob) memcpy(db + c, &bacc, sizeof bacc);                                           \
    } while (0)

/* The kernel gradient of output row oh for channels c.. in vectors of L lanes while L of them
   remain, in passes (the bias in the first): a 3-wide kernel 3 rows at a time (a 3x3 kernel in
   one pass), other widths one row at a time, 8, 4, 2, 1 taps a pass; without dw, the bias
   alone. (x is read where a tap lies inside the image only: the pointer x0 is formed from
   offsets that may point outside, which the flat address arithmetic tolerates.) */
#define CCONV__DW_KGRAD(T, L)                                                                  \
    for (; c + (int64_t)(L) <= CO; c += (L)) {                                                 \
        int64_t kp, wp, left, ow;                                                              \
        int dob = db != NULL;                                                                  \
        if (!dw) {                                                                             \
            typedef T cconv__v __attribute__((vector_size((L) * sizeof(T))));                  \
            cconv__v bacc, dv;                                                                 \
            memcpy(&bacc, db + c, sizeof bacc);                                                \
            for (ow = owa; ow < owb; ow++) {                                                   \
                memcpy(&dv, dyr + ow * CO + c, sizeof dv);                                     \
                bacc += dv;                                                                    \
            }                                                                                  \
            memcpy(db + c, &bacc, sizeof bacc);                                                \
            continue;                                                                          \
        }                                                                                      \
        for (kp = 0; kp < g->KH; kp += g->KW == 3 && g->KH - kp >= 3 ? 3 : 1) {                \
            wp = 0;                                                                            \
            if (g->KW == 3 && g->KH - kp >= 3) { CCONV__DW_KPASS(T, L, 3, 3); dob = 0; continue; }\
            for (; wp < g->KW; wp += left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1) {      \
                left = g->KW - wp;                                                             \
                if (left >= 8) CCONV__DW_KPASS(T, L, 1, 8);                                    \
                else if (left >= 4) CCONV__DW_KPASS(T, L, 1, 4);                               \
                else if (left >= 2) CCONV__DW_KPASS(T, L, 1, 2);                               \
                else CCONV__DW_KPASS(T, L, 1, 1);                                              \
                dob = 0;                                                                       \
            }                                                                                  \
        }                                                                                      \
    }

#define CCONV_DW_DEFINE(SUFFIX, T, ATTR, VB)                                                   \
/* One gather tile: np (<= CCONV__DW_NP) pixels, out pixel pitch os, source pixel pitch ps;   \
   na x nk taps, source steps ra, ka and weight steps wa, wk (see CCONV__DW_GATHER); C        \
   channels in vectors of VB bytes, then of 16 bytes, then one at a time. */                  \
ATTR static void cconv__dw_tile_##SUFFIX(const T *src, int64_t ra, int64_t ka, int64_t ps,     \
                                         const T *w, int64_t wa, int64_t wk, int64_t na,       \
                                         int64_t nk, const T *bias, int relu, T *out,          \
                                         int64_t os, int64_t np, int64_t C)                    \
{                                                                                              \
    while (np > 0) {   /* runs of 8, 4, 2, 1 pixels: constant counts keep acc in registers */ \
        const int64_t b = np >= 8 ? 8 : np >= 4 ? 4 : np >= 2 ? 2 : 1;                         \
        int64_t c = 0;                                                                         \
        if (b == 8) {                                                                          \
            CCONV__DW_GATHER(T, VB / sizeof(T), 8)                                             \
            CCONV__DW_GATHER(T, 16 / sizeof(T), 8)                                             \
            CCONV__DW_GATHER(T, 1, 8)                                                          \
        } else if (b == 4) {                                                                   \
            CCONV__DW_GATHER(T, VB / sizeof(T), 4)                                             \
            CCONV__DW_GATHER(T, 16 / sizeof(T), 4)                                             \
            CCONV__DW_GATHER(T, 1, 4)                                                          \
        } else if (b == 2) {                                                                   \
            CCONV__DW_GATHER(T, VB / sizeof(T), 2)                                             \
            CCONV__DW_GATHER(T, 16 / sizeof(T), 2)                                             \
            CCONV__DW_GATHER(T, 1, 2)                                                          \
        } else {                                                                               \
            CCONV__DW_GATHER(T, VB / sizeof(T), 1)                                             \
            CCONV__DW_GATHER(T, 16 / sizeof(T), 1)                                             \
            CCONV__DW_GATHER(T, 1, 1)                                                          \
        }                                                                                      \
        np -= b;                                                                               \
        if (np > 0) {                                                                          \
            src += b * ps;                                                                     \
            out += b * os;                                                                     \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* Rows q0 .. q1 of out (QH x QW pixels of CO channels) from src (SH x SW x CO): the forward  \
   (fwd: src the input, out y, plus bias, relu) or the input gradient (src dy, out dx; no     \
   bias). ci: the column table (cconv__dw_ci_elems(g) int64 entries). Pixels of one row go in \
   runs that share their taps: with a column stride qs (input gradient: the stride sw, so    \
   that successive pixels of a run read successive dy columns), at most CCONV__DW_NP long.  */\
ATTR static void cconv__dw_gather_rows_##SUFFIX(int fwd, const T *src, const T *w,             \
                                                const T *bias, int relu, T *out,               \
                                                const cconv_geom *g, int64_t q0, int64_t q1,   \
                                                int64_t *ci)                                   \
{                                                                                              \
    const int64_t CO = g->CO, KW = g->KW;                                                      \
    const int64_t QW = fwd ? g->OW : g->W, SH = fwd ? g->H : g->OH, SW = fwd ? g->W : g->OW;   \
    const int64_t qs = fwd ? 1 : g->sw, ps = (fwd ? g->sw : 1) * CO;                           \
    int64_t q, p, r, rt[5];                                                                    \
    for (p = 0; p < QW; p++)                                                                   \
        cconv__dw_axis(fwd, p, KW, g->sw, g->dw, g->pl, SW, ci + 5 * p);                       \
    for (q = q0; q < q1; q++) {                                                                \
        cconv__dw_axis(fwd, q, g->KH, g->sh, g->dh, g->pt, SH, rt);                            \
        for (r = 0; r < qs && r < QW; r++) {                                                   \
            int64_t n;                                                                         \
            for (p = r; p < QW; p += n * qs) {                                                 \
                const int64_t *ct = ci + 5 * p;                                                \
                int64_t na = rt[1], nk = ct[1];                                                \
                const T *s = src;                                                              \
                const T *wp = w;                                                               \
                for (n = 1; n < CCONV__DW_NP && p + n * qs < QW; n++)                          \
                    if (ct[5 * n * qs] != ct[0] || ct[5 * n * qs + 1] != ct[1]) break;         \
                if (na > 0 && nk > 0) {                                                        \
                    s = src + (rt[3] * SW + ct[3]) * CO;                                       \
                    wp = w + (rt[0] * KW + ct[0]) * CO;                                        \
                } else na = nk = 0;                                                            \
                cconv__dw_tile_##SUFFIX(s, rt[4] * SW * CO, ct[4] * CO, ps, wp,                \
                                        rt[2] * KW * CO, ct[2] * CO, na, nk, bias, relu,       \
                                        out + (q * QW + p) * CO, qs * CO, n, CO);              \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* Input rows ih0 .. ih1 (clipped to the image) expanded: xe[ih, iw, c * M + m] = x[ih, iw, c].*/\
ATTR static void cconv__dw_expand_##SUFFIX(const T *x, T *xe, const cconv_geom *g,             \
                                           int64_t ih0, int64_t ih1)                           \
{                                                                                              \
    const int64_t C = g->C, M = g->CO / g->C;                                                  \
    int64_t p, c, m;                                                                           \
    if (ih0 < 0) ih0 = 0;                                                                      \
    if (ih1 > g->H) ih1 = g->H;                                                                \
    for (p = ih0 * g->W; p < ih1 * g->W; p++)                                                  \
        for (c = 0; c < C; c++)                                                                \
            for (m = 0; m < M; m++) xe[p * g->CO + c * M + m] = x[p * C + c];                  \
}                                                                                              \
                                                                                               \
/* The padding taps the gather skips are zeros times weights: NaN where a weight is Inf or    \
   NaN (as the zero-padded sum gives). Rows oh0 .. oh1 of y get that NaN wherever a window   \
   reaching past the image has a non-finite weight on a padding tap; nothing to do (one scan \
   of the kernel) when every weight is finite. */                                            \
ATTR static void cconv__dw_padding_nan_##SUFFIX(const T *w, T *y, const cconv_geom *g,         \
                                                int64_t oh0, int64_t oh1)                      \
{                                                                                              \
    const int64_t CO = g->CO, taps = g->KH * g->KW;                                            \
    int64_t i, oh, ow, kh, kw, c, rt[5], ct[5];                                                \
    int bad = 0;                                                                               \
    for (i = 0; i < taps * CO; i++) bad |= !(w[i] - w[i] == (T)0);                             \
    if (!bad) return;                                                                          \
    for (oh = oh0; oh < oh1; oh++) {                                                           \
        cconv__dw_axis(1, oh, g->KH, g->sh, g->dh, g->pt, g->H, rt);                           \
        for (ow = 0; ow < g->OW; ow++) {                                                       \
            cconv__dw_axis(1, ow, g->KW, g->sw, g->dw, g->pl, g->W, ct);                       \
            if (rt[1] == g->KH && ct[1] == g->KW) continue;                                    \
            for (kh = 0; kh < g->KH; kh++)                                                     \
                for (kw = 0; kw < g->KW; kw++) {                                               \
                    const T *wt = w + (kh * g->KW + kw) * CO;                                  \
                    T *yo = y + (oh * g->OW + ow) * CO;                                        \
                    if (kh >= rt[0] && kh < rt[0] + rt[1] && kw >= ct[0] && kw < ct[0] + ct[1])\
                        continue;                                                              \
                    for (c = 0; c < CO; c++)                                                   \
                        if (!(wt[c] - wt[c] == (T)0)) yo[c] += wt[c] * (T)0;                   \
                }                                                                              \
        }                                                                                      \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* Output rows oh0 .. oh1 of y (OH, OW, CO) of one image x (H, W, C): conv + bias (bias may be \
   NULL), then max(., 0) with relu. scratch: cconv_dw_scratch(g) elements. */                 \
ATTR static void cconv__dw_forward_##SUFFIX(const T *x, const T *w, const T *bias, T *y,       \
                                            const cconv_geom *g, T *scratch, int relu,         \
                                            int64_t oh0, int64_t oh1)                          \
{                                                                                              \
    const T *src = x;                                                                          \
    if (oh1 <= oh0) return;                                                                    \
    if (g->CO != g->C) {                                                                       \
        T *xe = scratch + CCONV__DW_XE_OFFSET(g, T);                                           \
        cconv__dw_expand_##SUFFIX(x, xe, g, oh0 * g->sh - g->pt,                               \
                                  (oh1 - 1) * g->sh - g->pt + (g->KH - 1) * g->dh + 1);        \
        src = xe;                                                                              \
    }                                                                                          \
    cconv__dw_gather_rows_##SUFFIX(1, src, w, bias, relu, y, g, oh0, oh1,                      \
                                   CCONV__DW_CI(scratch));                                \
    cconv__dw_padding_nan_##SUFFIX(w, y, g, oh0, oh1);                                         \
}                                                                                              \
                                                                                               \
/* Input rows ih0 .. ih1 of dx (H, W, C) of one image from dy (OH, OW, CO). With M > 1 the    \
   gather fills dxe (H, W, CO) in scratch and dx[., c] = sum over m (ascending) of            \
   dxe[., c * M + m]. */                                                                      \
ATTR static void cconv__dw_backward_input_##SUFFIX(const T *dy, const T *w, T *dx,             \
                                                   const cconv_geom *g, T *scratch,            \
                                                   int64_t ih0, int64_t ih1)                   \
{                                                                                              \
    const int64_t C = g->C, M = g->CO / g->C;                                                  \
    int64_t *ci = CCONV__DW_CI(scratch), p, c, m;                                         \
    T *dxe;                                                                                    \
    if (M == 1) {                                                                              \
        cconv__dw_gather_rows_##SUFFIX(0, dy, w, NULL, 0, dx, g, ih0, ih1, ci);                \
        return;                                                                                \
    }                                                                                          \
    dxe = scratch + CCONV__DW_XE_OFFSET(g, T);                                                 \
    cconv__dw_gather_rows_##SUFFIX(0, dy, w, NULL, 0, dxe, g, ih0, ih1, ci);                   \
    for (p = ih0 * g->W; p < ih1 * g->W; p++)                                                  \
        for (c = 0; c < C; c++) {                                                              \
            const T *e = dxe + p * g->CO + c * M;                                              \
            T s = e[0];                                                                        \
            for (m = 1; m < M; m++) s += e[m];                                                 \
            dx[p * C + c] = s;                                                                 \
        }                                                                                      \
}                                                                                              \
                                                                                               \
/* dw (KH, KW, 1, CO) += the kernel gradient of output rows oh0 .. oh1 of one image, db (CO)  \
   += its bias gradient (either may be NULL). Per row, per vector of channels, per pass of    \
   up to NT taps (all 9 of a 3x3 kernel at once): each output pixel loads dy once and adds    \
   x * dy into every tap of the pass that reaches the image (all of them away from the        \
   borders: no test there). */                                                                \
ATTR static void cconv__dw_params_##SUFFIX(const T *dy, const T *x, T *dw, T *db,              \
                                           const cconv_geom *g, T *scratch, int64_t oh0,       \
                                           int64_t oh1)                                        \
{                                                                                              \
    const int64_t CO = g->CO;                                            \
    int64_t *ci = CCONV__DW_CI(scratch), rt[5], oh, ow;                                   \
    const T *src = x;                                                                          \
    if (oh1 <= oh0) return;                                                                    \
    if (g->CO != g->C) {                                                                       \
        T *xe = scratch + CCONV__DW_XE_OFFSET(g, T);                                           \
        cconv__dw_expand_##SUFFIX(x, xe, g, oh0 * g->sh - g->pt,                               \
                                  (oh1 - 1) * g->sh - g->pt + (g->KH - 1) * g->dh + 1);        \
        src = xe;                                                                              \
    }                                                                                          \
    for (ow = 0; ow < g->OW; ow++)                                                             \
        cconv__dw_axis(1, ow, g->KW, g->sw, g->dw, g->pl, g->W, ci + 5 * ow);                  \
    for (oh = oh0; oh < oh1; oh++) {                                                           \
        const int64_t ihb = oh * g->sh - g->pt;                                                \
        const T *dyr = dy + oh * g->OW * CO;                                                   \
        int64_t kh0, kh1, full, c, owa, owb;                                                   \
        cconv__dw_axis(1, oh, g->KH, g->sh, g->dh, g->pt, g->H, rt);                           \
        kh0 = rt[0];                                                                           \
        kh1 = rt[0] + rt[1];                                                                   \
        full = rt[1] == g->KH;                                                                 \
        for (owa = 0; owa < g->OW; owa = owb) { /* chunks: all channels of a few pixels */   \
            owb = owa + CCONV__DW_KCHUNK < g->OW ? owa + CCONV__DW_KCHUNK : g->OW;             \
            c = 0;                                                                             \
            CCONV__DW_KGRAD(T, VB / sizeof(T))                                                 \
            CCONV__DW_KGRAD(T, 16 / sizeof(T))                                                 \
            CCONV__DW_KGRAD(T, 1)                                                              \
        }                                                                                      \
    }                                                                                          \
}

/* In direct.h's kernels: run STMT (the depthwise kernel) and return when g is depthwise. */
#if defined(CCONV__GNUVEC)
#define CCONV__DW_RUN(g, STMT) if (cconv_dw_applies(g)) { STMT; return; }
#else
#undef CCONV_DW_DEFINE
#define CCONV_DW_DEFINE(SUFFIX, T, ATTR, VB)
#define CCONV__DW_RUN(g, STMT)
#endif

/* The row-range entry points (conv_direct.pxi cuts a small batch into row blocks with them), for
   the ISA in use; only called where cconv_dw_applies(g). r0 .. r1: output rows (forward,
   kernel gradient) or input rows (input gradient) of one image; scratch:
   cconv_direct_scratch(g) elements. Expanded by direct.h after the kernels. */
#if defined(CCONV__GNUVEC)
#define CCONV__DW_API(SUF, T)                                                                  \
static void cconv_dw_forward_rows_##SUF(const T *x, const T *w, const T *bias, T *y,           \
                                        const void *g, T *scratch, int relu, int64_t r0,       \
                                        int64_t r1)                                            \
{                                                                                              \
    const cconv_geom *geom = (const cconv_geom *)g;                                            \
    CCONV_ISA_DISPATCH(cconv__dw_forward, SUF, (x, w, bias, y, geom, scratch, relu, r0, r1));  \
}                                                                                              \
static void cconv_dw_backward_input_rows_##SUF(const T *dy, const T *w, T *dx, const void *g,  \
                                               T *scratch, int64_t r0, int64_t r1)             \
{                                                                                              \
    const cconv_geom *geom = (const cconv_geom *)g;                                            \
    CCONV_ISA_DISPATCH(cconv__dw_backward_input, SUF, (dy, w, dx, geom, scratch, r0, r1));     \
}                                                                                              \
static void cconv_dw_backward_params_rows_##SUF(const T *dy, const T *x, T *dw, T *db,         \
                                                const void *g, T *scratch, int64_t r0,         \
                                                int64_t r1)                                    \
{                                                                                              \
    const cconv_geom *geom = (const cconv_geom *)g;                                            \
    CCONV_ISA_DISPATCH(cconv__dw_params, SUF, (dy, x, dw, db, geom, scratch, r0, r1));         \
}
#else
#define CCONV__DW_API(SUF, T)                                                                  \
static void cconv_dw_forward_rows_##SUF(const T *x, const T *w, const T *bias, T *y,           \
                                        const void *g, T *scratch, int relu, int64_t r0,       \
                                        int64_t r1)                                            \
{ (void)x; (void)w; (void)bias; (void)y; (void)g; (void)scratch; (void)relu; (void)r0; (void)r1; } \
static void cconv_dw_backward_input_rows_##SUF(const T *dy, const T *w, T *dx, const void *g,  \
                                               T *scratch, int64_t r0, int64_t r1)             \
{ (void)dy; (void)w; (void)dx; (void)g; (void)scratch; (void)r0; (void)r1; }                   \
static void cconv_dw_backward_params_rows_##SUF(const T *dy, const T *x, T *dw, T *db,         \
                                                const void *g, T *scratch, int64_t r0,         \
                                                int64_t r1)                                    \
{ (void)dy; (void)x; (void)dw; (void)db; (void)g; (void)scratch; (void)r0; (void)r1; }
#endif

#endif /* CCONV_DWCONV_H */
