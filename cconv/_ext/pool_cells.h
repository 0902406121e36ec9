/* Per-cell channel loops of pooling, in C so that `restrict` lets the compiler vectorise them
   (Cython has no restrict; with possible aliasing these loops stay scalar and branchy).
   NaN propagates: a window's maximum is NaN when any of its cells is. */
#ifndef CCONV_POOL_CELLS_H
#define CCONV_POOL_CELLS_H

#include <stdint.h>
#include <string.h>

#include "isa.h"

#define CCONV__PR CCONV__RESTRICT

#define CCONV_POOL_CELLS(SUF, T, IDX)                                                              \
/* m = max(m, x) per channel; NaN in x wins and stays. */                                    \
static inline void cconv_pool_max_##SUF(T *CCONV__PR m, const T *CCONV__PR x, int64_t C)       \
{                                                                                             \
    int64_t c;                                                                                \
    for (c = 0; c < C; c++) m[c] = ((x[c] > m[c]) | (x[c] != x[c])) ? x[c] : m[c];              \
}                                                                                             \
static inline void cconv_pool_add_##SUF(T *CCONV__PR s, const T *CCONV__PR x, int64_t C)       \
{                                                                                             \
    int64_t c;                                                                                \
    for (c = 0; c < C; c++) s[c] += x[c];                                                     \
}                                                                                             \
/* Max-pool gradient of one window [h0, h1) x [w0, w1): each channel's dy goes to the first  \
   cell (row-major) holding its maximum, NaN counting as the maximum (the first NaN wins).     \
   One backward scan keeps a running maximum m and its cell; taking ties (and earlier NaNs)   \
   on the way back lands on the first such cell, without branches. IDX, the cell index type,  \
   has the width of T so the selects vectorise (int32 needs H * W < 2^31 cells). m and idx   \
   are scratch of C items. */                                                                \
static inline void cconv_pool_maxgrad_##SUF(T *CCONV__PR dxn, const T *CCONV__PR xn,          \
                                            T *CCONV__PR m, const T *CCONV__PR dy,            \
                                            IDX *CCONV__PR idx, int64_t W, int64_t C,          \
                                            int64_t h0, int64_t h1, int64_t w0, int64_t w1)    \
{                                                                                             \
    int64_t h, w, c;                                                                          \
    const IDX last = (IDX)((h1 - 1) * W + (w1 - 1));                                          \
    for (c = 0; c < C; c++) { m[c] = xn[(int64_t)last * C + c]; idx[c] = last; }              \
    for (h = h1 - 1; h >= h0; h--)                                                            \
        for (w = (h == h1 - 1 ? w1 - 2 : w1 - 1); w >= w0; w--) {                             \
            const IDX cell = (IDX)(h * W + w);                                                \
            const T *CCONV__PR x = xn + (int64_t)cell * C;                                    \
            for (c = 0; c < C; c++) {                                                         \
                int take = (x[c] != x[c]) | ((x[c] >= m[c]) & (m[c] == m[c]));                \
                m[c] = take ? x[c] : m[c];                                                    \
                idx[c] = take ? cell : idx[c];                                                \
            }                                                                                 \
        }                                                                                     \
    for (c = 0; c < C; c++) dxn[(int64_t)idx[c] * C + c] += dy[c];                            \
}                                                                                             \
/* Average-pool gradient of one window: each of its (h1 - h0) x (w1 - w0) cells gets         \
   dy / count added, or with `assign` stored as 0 + dy / count (windows that tile the image: \
   the same bits without zeroing dx first; share: scratch of C items). */                     \
static inline void cconv_pool_avggrad_##SUF(T *CCONV__PR dxn, const T *CCONV__PR dy,          \
                                            T *CCONV__PR share, int64_t W, int64_t C,          \
                                            int64_t h0, int64_t h1, int64_t w0, int64_t w1,    \
                                            int assign)                                        \
{                                                                                             \
    int64_t h, w, c;                                                                          \
    const T count = (T)((h1 - h0) * (w1 - w0));                                               \
    for (c = 0; c < C; c++) share[c] = dy[c] / count;                                         \
    for (h = h0; h < h1; h++)                                                                 \
        for (w = w0; w < w1; w++) {                                                           \
            T *CCONV__PR d = dxn + (h * W + w) * C;                                           \
            if (assign) for (c = 0; c < C; c++) d[c] = (T)0 + share[c];                       \
            else for (c = 0; c < C; c++) d[c] += share[c];                                    \
        }                                                                                     \
}                                                                                             \
/* The same window's gradient under the rule "every cell equal to the maximum gets dy" (ties  \
   all win; with a NaN in the window the maximum is NaN and every NaN cell gets dy). Two      \
   scans: the maximum m, then a masked add that leaves the other cells' bits untouched. */    \
static inline void cconv_pool_maxgrad_ties_##SUF(T *CCONV__PR dxn, const T *CCONV__PR xn,     \
                                                 T *CCONV__PR m, const T *CCONV__PR dy,       \
                                                 int64_t W, int64_t C, int64_t h0, int64_t h1, \
                                                 int64_t w0, int64_t w1)                      \
{                                                                                             \
    int64_t h, w, c;                                                                          \
    for (c = 0; c < C; c++) m[c] = xn[(h0 * W + w0) * C + c];                                 \
    for (h = h0; h < h1; h++)                                                                 \
        for (w = w0; w < w1; w++) cconv_pool_max_##SUF(m, xn + (h * W + w) * C, C);           \
    for (h = h0; h < h1; h++)                                                                 \
        for (w = w0; w < w1; w++) {                                                           \
            const T *CCONV__PR x = xn + (h * W + w) * C;                                      \
            T *CCONV__PR d = dxn + (h * W + w) * C;                                           \
            for (c = 0; c < C; c++) {                                                         \
                int hit = (x[c] == m[c]) | ((x[c] != x[c]) & (m[c] != m[c]));                 \
                d[c] = hit ? d[c] + dy[c] : d[c];                                             \
            }                                                                                 \
        }                                                                                     \
}

CCONV_POOL_CELLS(f32, float, int32_t)
CCONV_POOL_CELLS(f64, double, int64_t)
CCONV_POOL_CELLS(f32_wide, float, int64_t)

/* ---- Whole windows, for the compiled plan (plan_impl.h): each window's channels are kept in
   vector registers across its cells, then stored once. Three widths per ISA (VB, VB/2, VB/4
   bytes) so that 6 or 16 channels still run in vectors; a last vector that would run past C
   is moved back to end at C (it recomputes a few channels from the same inputs: the same
   values). Below the narrowest width, scalars. The arithmetic per channel is the
   channel-by-channel loops': max takes the first cell, then each later cell that is greater
   or NaN (inference), or greater or the first NaN (training, with its cell in arg); average
   sums the cells in row-major order, then multiplies by 1 / count. Bit-identical results for
   every ISA and width. */
typedef struct {
    int64_t H, W, C, KH, KW, OH, OW, sh, sw, pt, pl;
} cconv_pool_geom;

/* One later cell (h, w) of a window into CCONV__POOL_WIN's running m_ (and a_). */
#define CCONV__POOL_CELL(T, IDX, VT, IT, mode, h, w)                                            \
    do {                                                                                        \
        memcpy(&v_, x + ((h) * g->W + (w)) * C + c0, sizeof v_);                                \
        if (mode == 0) m_ += v_;                                                                \
        else {                                                                                  \
            if (mode == 1) t_ = (v_ > m_) | (v_ != v_);                                         \
            else t_ = (v_ > m_) | ((v_ != v_) & (m_ == m_));                                    \
            m_ = (VT)(((IT)v_ & t_) | ((IT)m_ & ~t_));                                          \
            if (mode == 2) a_ = ((io_ + (IDX)(((h) * g->W + (w)) * C)) & t_) | (a_ & ~t_);      \
        }                                                                                       \
    } while (0)

/* Channels [c0, c0 + L) of one window (rows h0..h1, columns w0..w1) of image x into yr (and
   their winning cells into ar when ar is not NULL). VT: vector of L elements of T, IT: vector
   of L integers of T's width. */
#define CCONV__POOL_WIN(T, IDX, VT, IT, L, mode)                                                     \
    do {                                                                                        \
        VT m_, v_;                                                                              \
        IT a_, io_, t_;                                                                         \
        int64_t l_, h_, w_;                                                                     \
        memcpy(&m_, x + (h0 * g->W + w0) * C + c0, sizeof m_);                                  \
        memcpy(&io_, iota_, sizeof io_);                                                        \
        io_ += (IDX)c0;                                                                         \
        a_ = io_ + (IDX)((h0 * g->W + w0) * C);                                                 \
        if (h1 - h0 == 2 && w1 - w0 == 2) {    /* the common 2 x 2 window, unrolled */          \
            CCONV__POOL_CELL(T, IDX, VT, IT, mode, h0, w0 + 1);                                 \
            CCONV__POOL_CELL(T, IDX, VT, IT, mode, h0 + 1, w0);                                 \
            CCONV__POOL_CELL(T, IDX, VT, IT, mode, h0 + 1, w0 + 1);                             \
        } else                                                                                  \
            for (h_ = h0; h_ < h1; h_++)                                                        \
                for (w_ = h_ == h0 ? w0 + 1 : w0; w_ < w1; w_++)                                \
                    CCONV__POOL_CELL(T, IDX, VT, IT, mode, h_, w_);                             \
        if (mode == 0) m_ *= (T)1 / (T)((h1 - h0) * (w1 - w0));                                 \
        memcpy(yr + c0, &m_, sizeof m_);                                                        \
        if (mode == 2 && sizeof(IDX) == sizeof(int32_t)) memcpy(ar + c0, &a_, sizeof a_);       \
        else if (mode == 2) for (l_ = 0; l_ < L; l_++) ar[c0 + l_] = (int32_t)a_[l_];           \
    } while (0)

/* All channels of one window at width L (C >= L). */
#define CCONV__POOL_CHANNELS(T, IDX, VT, IT, L, mode)                                                \
    for (c0 = 0; c0 < C; c0 += L) {                                                             \
        if (c0 + L > C) c0 = C - L;                                                             \
        CCONV__POOL_WIN(T, IDX, VT, IT, L, mode);                                                    \
    }

/* One window at width L in each mode (a compile-time constant inside the expansion). */
#define CCONV__POOL_MODES(T, IDX, VT, IT, L)                                                    \
    if (mode == 0) { CCONV__POOL_CHANNELS(T, IDX, VT, IT, L, 0) }                               \
    else if (mode == 1) { CCONV__POOL_CHANNELS(T, IDX, VT, IT, L, 1) }                          \
    else { CCONV__POOL_CHANNELS(T, IDX, VT, IT, L, 2) }

/* Bytes of a vector of at least one T. */
#define CCONV__POOL_VB(B, T) ((B) > (int)sizeof(T) ? (B) : (int)sizeof(T))

#define CCONV__POOL_ROWS_DEFINE(SUF, T, ATTR, VB, IDX)                                          \
ATTR static void cconv_pool_rows_##SUF(const cconv_pool_geom *g, int mode, const T *x, T *y,    \
                                       int64_t oh0, int64_t oh1, int32_t *arg)                  \
{                                                                                               \
    typedef T vt1_ __attribute__((vector_size(VB)));                                            \
    typedef IDX it1_ __attribute__((vector_size(VB)));                                          \
    typedef T vt2_ __attribute__((vector_size(CCONV__POOL_VB(VB / 2, T))));                     \
    typedef IDX it2_ __attribute__((vector_size(CCONV__POOL_VB(VB / 2, T))));                   \
    typedef T vt4_ __attribute__((vector_size(CCONV__POOL_VB(VB / 4, T))));                     \
    typedef IDX it4_ __attribute__((vector_size(CCONV__POOL_VB(VB / 4, T))));                   \
    static const IDX iota_[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};      \
    const int64_t C = g->C, L1 = VB / (int64_t)sizeof(T);                                       \
    int64_t oh, ow, c0;                                                                         \
    for (oh = oh0; oh < oh1; oh++)                                                              \
        for (ow = 0; ow < g->OW; ow++) {                                                        \
            int64_t h0 = oh * g->sh - g->pt, w0 = ow * g->sw - g->pl;                           \
            int64_t h1 = h0 + g->KH < g->H ? h0 + g->KH : g->H;                                 \
            int64_t w1 = w0 + g->KW < g->W ? w0 + g->KW : g->W;                                 \
            T *CCONV__PR yr = y + (oh * g->OW + ow) * C;                                        \
            int32_t *CCONV__PR ar = arg ? arg + (oh * g->OW + ow) * C : 0;                      \
            if (h0 < 0) h0 = 0;                                                                 \
            if (w0 < 0) w0 = 0;                                                                 \
            if (C >= L1) { CCONV__POOL_MODES(T, IDX, vt1_, it1_, L1) }                          \
            else if (C >= L1 / 2 && L1 >= 2) { CCONV__POOL_MODES(T, IDX, vt2_, it2_, L1 / 2) }  \
            else if (C >= L1 / 4 && L1 >= 8) { CCONV__POOL_MODES(T, IDX, vt4_, it4_, L1 / 4) }  \
            else {                                                                              \
                typedef T vts_ __attribute__((vector_size(sizeof(T))));                         \
                typedef IDX its_ __attribute__((vector_size(sizeof(T))));                       \
                CCONV__POOL_MODES(T, IDX, vts_, its_, 1)                                        \
            }                                                                                   \
        }                                                                                       \
}
#define CCONV__POOL_ROWS_F32(SUF, T, ATTR, VB) CCONV__POOL_ROWS_DEFINE(SUF, T, ATTR, VB, int32_t)
#define CCONV__POOL_ROWS_F64(SUF, T, ATTR, VB) CCONV__POOL_ROWS_DEFINE(SUF, T, ATTR, VB, int64_t)
CCONV_ISA_DEFINE_ALL(CCONV__POOL_ROWS_F32, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV__POOL_ROWS_F64, f64, double)

/* mode: 0 average, 1 max, 2 max recording each output's input cell in arg (one image: x
   (H, W, C), y and arg (OH, OW, C), output rows oh0..oh1). */
#define cconv_pool_rows_f32(ARGS) CCONV_ISA_DISPATCH(cconv_pool_rows, f32, ARGS)
#define cconv_pool_rows_f64(ARGS) CCONV_ISA_DISPATCH(cconv_pool_rows, f64, ARGS)

#endif
