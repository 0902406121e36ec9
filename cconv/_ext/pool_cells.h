/* Per-cell channel loops of pooling, in C so that `restrict` lets the compiler vectorise them
   (Cython has no restrict; with possible aliasing these loops stay scalar and branchy).
   NaN propagates: a window's maximum is NaN when any of its cells is. */
#ifndef CCONV_POOL_CELLS_H
#define CCONV_POOL_CELLS_H

#include <stdint.h>

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

#endif
