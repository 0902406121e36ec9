/* BatchNormalization training kernels, NHWC seen as M rows of C channels (C contiguous).

   Forward: three passes over x (sum; sum of squares of x - mean; y = xhat * gamma + beta),
   backward: two passes over dy and x (sums of dy and dy * xhat; dx). xhat is never stored: it
   is recomputed as (x - mean) * rstd, the same operations in the same order, so the same bits.
   Everything runs in one OpenMP parallel region per call.

   Sums are accumulated in double:
   - float32 (fast mode): the rows are cut into blocks of a fixed number of elements (a
     function of the shape only); each block's sum is accumulated alone (four rows at a time),
     the blocks are then added in block order. The result never depends on the thread count.
   - float64 (exact mode): NumPy's own order, bit for bit (``np.add.reduce`` over the rows:
     row after row per channel; for one channel NumPy's pairwise sum of the whole column), the
     tasks being groups of channels. float64 training therefore gives the bits of the NumPy
     formulas it replaced.

   Elementwise passes read "super rows" of L = k * C elements (k rows), L a multiple of 16
   where that stays small, the per-channel parameters repeated k times, so that even C = 1 or
   3 runs full vectors. The module is compiled without floating-point contraction: each
   element goes through the IEEE operations written, in that order (float64 bit identity). */
#ifndef CCONV_BATCHNORM_H
#define CCONV_BATCHNORM_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isa.h"
#include "omp_helpers.h"

#define CCONV__BR CCONV__RESTRICT

/* Elements per block of the float32 sums (64 KiB of float32: stays in L2 between the passes
   of a block; 64 blocks for 64x32x32x16). */
#define CCONV_BN_BLOCK 16384
/* Widest super row, in elements. */
#define CCONV_BN_SPAN_MAX 512
/* Channels per task of the float64 (exact) sums: a cache line. */
#define CCONV_BN_CHUNK 8

typedef struct {
    int64_t M, C;      /* rows, channels */
    int64_t k, L;      /* rows per super row, L = k * C elements */
    int64_t Mr;        /* full super rows */
    int64_t tail_w;    /* elements of the last, partial super row ((M % k) * C) */
    int64_t R;         /* super rows per block */
    int64_t nblk;      /* full-or-short blocks of super rows (the partial super row apart) */
    int64_t ntask;     /* nblk, plus one when tail_w > 0 */
} cconv_bn_geom;

static int64_t cconv__bn_gcd(int64_t a, int64_t b)
{
    while (b) { int64_t t = a % b; a = b; b = t; }
    return a;
}

static void cconv_bn_geom_init(cconv_bn_geom *g, int64_t M, int64_t C)
{
    g->M = M;
    g->C = C;
    g->k = 16 / cconv__bn_gcd(C, 16);
    if (g->k * C > CCONV_BN_SPAN_MAX) g->k = 1;
    g->L = g->k * C;
    g->Mr = M / g->k;
    g->tail_w = (M % g->k) * C;
    g->R = CCONV_BN_BLOCK / g->L;
    if (g->R < 1) g->R = 1;
    g->nblk = (g->Mr + g->R - 1) / g->R;
    g->ntask = g->nblk + (g->tail_w > 0);
}

/* Task t of the blocked passes: its first element and its rows of width w. */
static inline void cconv_bn_task(const cconv_bn_geom *g, int64_t t, int64_t *off, int64_t *rows,
                                 int64_t *w)
{
    if (t < g->nblk) {
        int64_t r0 = t * g->R, r1 = r0 + g->R < g->Mr ? r0 + g->R : g->Mr;
        *off = r0 * g->L;
        *rows = r1 - r0;
        *w = g->L;
    } else {
        *off = g->Mr * g->L;
        *rows = 1;
        *w = g->tail_w;
    }
}

/* ------------------------------------------------------------------ per-ISA row kernels */
/* Columns are taken 16 at a time (CCONV_BN_V, a fixed trip count the compiler turns into
   whole vectors, with the sums held in registers across the rows), the last W % 16 one by
   one, with the same operations: the column split never changes a result. */
#define CCONV_BN_V 16
#define CCONV_BN_COLS(J0, W, ...)                                                               \
    for (J0 = 0; J0 + CCONV_BN_V <= (W); J0 += CCONV_BN_V) {                                    \
        enum { NV = CCONV_BN_V };                                                               \
        __VA_ARGS__                                                                             \
    }                                                                                           \
    if (J0 < (W)) {                                                                             \
        const int64_t NV = (W) - J0;                                                            \
        __VA_ARGS__                                                                             \
    }

#define CCONV_BN_DEFINE(SUF, T, ATTR, VB)                                                        \
/* acc[j] += the sum over `rows` rows of width W of x, or (sq) of (x - mean)^2, the difference \
   in T and its square in double; four rows at a time (blocked mode). */                        \
ATTR static void cconv_bn_rsum_##SUF(const T *CCONV__BR x, int64_t rows, int64_t W,            \
                                     const T *CCONV__BR mean, int sq, double *CCONV__BR acc)    \
{                                                                                               \
    int64_t r, j0, j;                                                                           \
    CCONV_BN_COLS(j0, W, {                                                                      \
        double a[CCONV_BN_V];                                                                   \
        const T *CCONV__BR p = x + j0;                                                          \
        const T *CCONV__BR mu = mean + j0;                                                      \
        for (j = 0; j < NV; j++) a[j] = acc[j0 + j];                                            \
        if (!sq) {                                                                              \
            for (r = 0; r + 4 <= rows; r += 4, p += 4 * W)                                      \
                for (j = 0; j < NV; j++)                                                        \
                    a[j] += ((double)p[j] + (double)p[j + W])                                   \
                            + ((double)p[j + 2 * W] + (double)p[j + 3 * W]);                    \
            for (; r < rows; r++, p += W)                                                       \
                for (j = 0; j < NV; j++) a[j] += (double)p[j];                                  \
        } else {                                                                                \
            for (r = 0; r + 4 <= rows; r += 4, p += 4 * W)                                      \
                for (j = 0; j < NV; j++) {                                                      \
                    double d0 = (double)(T)(p[j] - mu[j]);                                      \
                    double d1 = (double)(T)(p[j + W] - mu[j]);                                  \
                    double d2 = (double)(T)(p[j + 2 * W] - mu[j]);                              \
                    double d3 = (double)(T)(p[j + 3 * W] - mu[j]);                              \
                    a[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);                          \
                }                                                                               \
            for (; r < rows; r++, p += W)                                                       \
                for (j = 0; j < NV; j++) {                                                      \
                    double d = (double)(T)(p[j] - mu[j]);                                       \
                    a[j] += d * d;                                                              \
                }                                                                               \
        }                                                                                       \
        for (j = 0; j < NV; j++) acc[j0 + j] = a[j];                                            \
    })                                                                                          \
}                                                                                               \
/* sdy[j] += sum of dy, sdx[j] += sum of dy * xhat (xhat = (x - mean) * rstd in T, the        \
   product in double); with relu, dy is first multiplied by (xhat * gamma + beta > 0). */       \
ATTR static void cconv_bn_rdsum_##SUF(const T *CCONV__BR dy, const T *CCONV__BR x,             \
                                      int64_t rows, int64_t W, const T *CCONV__BR mean,         \
                                      const T *CCONV__BR rstd, const T *CCONV__BR gamma,        \
                                      const T *CCONV__BR beta, int relu,                        \
                                      double *CCONV__BR sdy, double *CCONV__BR sdx)             \
{                                                                                               \
    int64_t r, j0, j;                                                                           \
    CCONV_BN_COLS(j0, W, {                                                                      \
        double a[CCONV_BN_V], b[CCONV_BN_V];                                                    \
        const T *CCONV__BR xa = x + j0, *CCONV__BR d = dy + j0;                                 \
        const T *CCONV__BR mu = mean + j0, *CCONV__BR rs = rstd + j0;                           \
        const T *CCONV__BR ga = gamma + j0, *CCONV__BR be = beta + j0;                          \
        for (j = 0; j < NV; j++) { a[j] = sdy[j0 + j]; b[j] = sdx[j0 + j]; }                    \
        for (r = 0; r + 2 <= rows; r += 2, xa += 2 * W, d += 2 * W)                             \
            for (j = 0; j < NV; j++) {                                                          \
                T h0 = (xa[j] - mu[j]) * rs[j], h1 = (xa[j + W] - mu[j]) * rs[j];               \
                T g0 = d[j], g1 = d[j + W];                                                     \
                if (relu) {                                                                     \
                    g0 = g0 * (T)(h0 * ga[j] + be[j] > 0);                                      \
                    g1 = g1 * (T)(h1 * ga[j] + be[j] > 0);                                      \
                }                                                                               \
                a[j] += (double)g0 + (double)g1;                                                \
                b[j] += (double)g0 * (double)h0 + (double)g1 * (double)h1;                      \
            }                                                                                   \
        for (; r < rows; r++, xa += W, d += W)                                                  \
            for (j = 0; j < NV; j++) {                                                          \
                T h = (xa[j] - mu[j]) * rs[j], g = d[j];                                        \
                if (relu) g = g * (T)(h * ga[j] + be[j] > 0);                                   \
                a[j] += (double)g;                                                              \
                b[j] += (double)g * (double)h;                                                  \
            }                                                                               \
        for (j = 0; j < NV; j++) { sdy[j0 + j] = a[j]; sdx[j0 + j] = b[j]; }                    \
    })                                                                                          \
}                                                                                               \
/* y = ((x - mean) * rstd) * gamma (+ beta), then with relu max(y, 0) as np.maximum. */         \
ATTR static void cconv_bn_rnorm_##SUF(const T *CCONV__BR x, T *CCONV__BR y, int64_t rows,      \
                                      int64_t W, const T *CCONV__BR mean,                       \
                                      const T *CCONV__BR rstd, const T *CCONV__BR gamma,        \
                                      const T *CCONV__BR beta, int relu)                        \
{                                                                                               \
    int64_t r, j;                                                                               \
    for (r = 0; r < rows; r++) {                                                                \
        const T *CCONV__BR a = x + r * W;                                                       \
        T *CCONV__BR o = y + r * W;                                                             \
        if (beta) {                                                                             \
            if (relu)                                                                           \
                for (j = 0; j < W; j++) {                                                       \
                    T v = ((a[j] - mean[j]) * rstd[j]) * gamma[j] + beta[j];                    \
                    o[j] = (v >= 0) | (v != v) ? v : (T)0;                                      \
                }                                                                               \
            else                                                                                \
                for (j = 0; j < W; j++)                                                         \
                    o[j] = ((a[j] - mean[j]) * rstd[j]) * gamma[j] + beta[j];                   \
        } else {                                                                                \
            if (relu)                                                                           \
                for (j = 0; j < W; j++) {                                                       \
                    T v = ((a[j] - mean[j]) * rstd[j]) * gamma[j];                              \
                    o[j] = (v >= 0) | (v != v) ? v : (T)0;                                      \
                }                                                                               \
            else                                                                                \
                for (j = 0; j < W; j++) o[j] = ((a[j] - mean[j]) * rstd[j]) * gamma[j];          \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
/* dx = k * ((m * dy - dbeta) - xhat * dgamma), dy masked as in rdsum with relu. */            \
ATTR static void cconv_bn_rdx_##SUF(const T *CCONV__BR dy, const T *CCONV__BR x,               \
                                    T *CCONV__BR dx, int64_t rows, int64_t W,                   \
                                    const T *CCONV__BR mean, const T *CCONV__BR rstd,           \
                                    const T *CCONV__BR gamma, const T *CCONV__BR beta,          \
                                    int relu, T tm, const T *CCONV__BR dbeta,                   \
                                    const T *CCONV__BR dgamma, const T *CCONV__BR kk)           \
{                                                                                               \
    int64_t r, j;                                                                               \
    for (r = 0; r < rows; r++) {                                                                \
        const T *CCONV__BR a = x + r * W, *CCONV__BR d = dy + r * W;                            \
        T *CCONV__BR o = dx + r * W;                                                            \
        if (relu)                                                                               \
            for (j = 0; j < W; j++) {                                                           \
                T h = (a[j] - mean[j]) * rstd[j];                                               \
                T g = d[j] * (T)(h * gamma[j] + beta[j] > 0);                                   \
                o[j] = kk[j] * ((tm * g - dbeta[j]) - h * dgamma[j]);                           \
            }                                                                                   \
        else                                                                                    \
            for (j = 0; j < W; j++) {                                                           \
                T h = (a[j] - mean[j]) * rstd[j];                                               \
                o[j] = kk[j] * ((tm * d[j] - dbeta[j]) - h * dgamma[j]);                        \
            }                                                                                   \
    }                                                                                           \
}

CCONV_ISA_DEFINE_ALL(CCONV_BN_DEFINE, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV_BN_DEFINE, f64, double)

/* ---------------------------------------------------- exact (NumPy-order) float64 sums */
/* Value i (of column c) of what is summed: 0 x, 1 (x - mean)^2, 2 dy (masked), 3 dy * xhat. */
typedef struct {
    const double *x, *dy;
    int64_t C;
    double mean, rstd, gamma, beta;
    int what, relu;
} cconv_bn_col;

static inline double cconv__bn_val(const cconv_bn_col *s, int64_t i)
{
    double a = s->x[i * s->C];
    double d, h, g;
    if (s->what == 0) return a;
    if (s->what == 1) { d = a - s->mean; return d * d; }
    h = (a - s->mean) * s->rstd;
    g = s->dy[i * s->C];
    if (s->relu) g = g * (double)(h * s->gamma + s->beta > 0);
    return s->what == 2 ? g : g * h;
}

/* NumPy's pairwise_sum (numpy/_core/src/umath/loops_utils.h.src) of values [i0, i0 + n). */
static double cconv__bn_pairwise(const cconv_bn_col *s, int64_t i0, int64_t n)
{
    int64_t i, j;
    if (n < 8) {
        double res = 0.;
        for (i = 0; i < n; i++) res += cconv__bn_val(s, i0 + i);
        return res;
    }
    if (n <= 128) {
        double r[8], res;
        for (j = 0; j < 8; j++) r[j] = cconv__bn_val(s, i0 + j);
        for (i = 8; i < n - (n % 8); i += 8)
            for (j = 0; j < 8; j++) r[j] += cconv__bn_val(s, i0 + i + j);
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += cconv__bn_val(s, i0 + i);
        return res;
    } else {
        int64_t n2 = n / 2;
        n2 -= n2 % 8;
        return cconv__bn_pairwise(s, i0, n2) + cconv__bn_pairwise(s, i0 + n2, n - n2);
    }
}

/* Channels [c0, c0 + n) (n <= CCONV_BN_CHUNK) of an M x C float64 array: out = 0 + the rows
   one after another (np.add.reduce's order for C > 1), of x or (sq) (x - mean)^2. */
static void cconv__bn_csum(const double *x, int64_t M, int64_t C, int64_t c0, int64_t n,
                           const double *mean, int sq, double *out)
{
    double a[CCONV_BN_CHUNK], mu[CCONV_BN_CHUNK];
    int64_t r, j;
    for (j = 0; j < n; j++) { a[j] = 0.; mu[j] = sq ? mean[c0 + j] : 0.; }
    x += c0;
    if (n == CCONV_BN_CHUNK) {
        if (sq)
            for (r = 0; r < M; r++)
                for (j = 0; j < CCONV_BN_CHUNK; j++) {
                    double d = x[r * C + j] - mu[j];
                    a[j] += d * d;
                }
        else
            for (r = 0; r < M; r++)
                for (j = 0; j < CCONV_BN_CHUNK; j++) a[j] += x[r * C + j];
    } else {
        for (r = 0; r < M; r++)
            for (j = 0; j < n; j++) {
                double d = x[r * C + j] - mu[j];
                a[j] += sq ? d * d : x[r * C + j];
            }
    }
    for (j = 0; j < n; j++) out[c0 + j] = a[j];
}

/* The same for the backward sums: sdy = 0 + dy rows, sdx = 0 + (dy * xhat) rows. */
static void cconv__bn_cdsum(const double *dy, const double *x, int64_t M, int64_t C, int64_t c0,
                            int64_t n, const double *mean, const double *rstd,
                            const double *gamma, const double *beta, int relu, double *sdy,
                            double *sdx)
{
    double a[CCONV_BN_CHUNK], b[CCONV_BN_CHUNK], mu[CCONV_BN_CHUNK], rs[CCONV_BN_CHUNK];
    double ga[CCONV_BN_CHUNK], be[CCONV_BN_CHUNK];
    int64_t r, j;
    for (j = 0; j < n; j++) {
        a[j] = b[j] = 0.;
        mu[j] = mean[c0 + j];
        rs[j] = rstd[c0 + j];
        ga[j] = gamma ? gamma[c0 + j] : 1.;
        be[j] = beta ? beta[c0 + j] : 0.;
    }
    x += c0;
    dy += c0;
    for (r = 0; r < M; r++)
        for (j = 0; j < n; j++) {
            double h = (x[r * C + j] - mu[j]) * rs[j], g = dy[r * C + j];
            if (relu) g = g * (double)(h * ga[j] + be[j] > 0);
            a[j] += g;
            b[j] += g * h;
        }
    for (j = 0; j < n; j++) { sdy[c0 + j] = a[j]; sdx[c0 + j] = b[j]; }
}

/* ------------------------------------------------------------------------------ drivers */
/* Blocked sums (float32): task t accumulates into part[t * L ...]; out[c] = for each of the k
   lanes of channel c in lane order, the tasks' sums in task order. */
static void cconv__bn_fold(const cconv_bn_geom *g, const double *part, double *out)
{
    int64_t t, c, i;
    for (c = 0; c < g->C; c++) out[c] = 0.;
    for (i = 0; i < g->k; i++)
        for (c = 0; c < g->C; c++) {
            double s = 0.;
            for (t = 0; t < g->ntask; t++) s += part[t * g->L + i * g->C + c];
            out[c] += s;
        }
}

/* The drivers meet at one barrier per pass: after the sums, every thread folds the partial
   sums itself (the same operations, so the same bits; a few thousand additions) into its own
   per-channel values, instead of one thread folding while the others wait at two barriers;
   thread 0 writes the outputs. A preempted thread on a loaded machine stalls each barrier. */
#define CCONV_BN_DRIVERS(SUF, T)                                                                \
/* Forward, training: mean and var (float64; var that of x centred on mean rounded to T,      \
   corrected by that rounding), mean_t = (T)mean, rstd = (T)(1 / sqrt(var + eps)),             \
   y = ((x - mean_t) * rstd) * gamma + beta (gamma, beta may be NULL), then relu if asked.     \
   Returns 0, or -1 when scratch memory cannot be allocated. */                                 \
static int cconv_bn_forward_##SUF(const T *x, T *y, int64_t M, int64_t C, double eps,          \
                                  const T *gamma, const T *beta, int relu, double *mean,       \
                                  double *var, T *mean_t, T *rstd, int nthreads)                \
{                                                                                               \
    cconv_bn_geom g;                                                                            \
    const int exact = sizeof(T) == sizeof(double);                                              \
    const int64_t nchunk = (C + CCONV_BN_CHUNK - 1) / CCONV_BN_CHUNK;                           \
    double *part, *scr;                                                                         \
    T *pg, *pb;                                                                                 \
    int64_t i, per;                                                                             \
    if (nthreads < 1) nthreads = 1;                                                             \
    cconv_bn_geom_init(&g, M, C);                                                               \
    /* per thread: sums and means (2 C doubles), its expanded mean_t and rstd (2 L T) */       \
    per = 2 * C + (2 * g.L * (int64_t)sizeof(T) + 7) / 8;                                       \
    /* the partial sums of each pass apart: a thread still folding the first pass's never      \
       meets another writing the second's */                                                    \
    part = (double *)malloc(sizeof(double) * (size_t)(2 * (exact ? C : g.ntask * g.L)));        \
    scr = (double *)malloc(sizeof(double) * (size_t)(per * nthreads));                          \
    pg = (T *)malloc(sizeof(T) * (size_t)(2 * g.L));                                            \
    if (!part || !scr || !pg) { free(part); free(scr); free(pg); return -1; }                   \
    pb = pg + g.L;                                                                              \
    for (i = 0; i < g.L; i++) {                                                                 \
        pg[i] = gamma ? gamma[i % C] : (T)1;                                                    \
        pb[i] = beta ? beta[i % C] : (T)0;                                                      \
    }                                                                                           \
    _Pragma("omp parallel num_threads(nthreads)")                                               \
    {                                                                                           \
        int64_t t, off, rows, w, c, j;                                                          \
        const int me = omp_get_thread_num();                                                    \
        double *sum = scr + per * me, *mu = sum + C;                                            \
        T *pm = (T *)(mu + C), *pr = pm + g.L;                                                  \
        int sq;                                                                                 \
        for (sq = 0; sq < 2; sq++) {                                                            \
            double *part_ = part + sq * (exact ? C : g.ntask * g.L);                            \
            if (exact && C == 1) {                                                              \
                _Pragma("omp single")                                                           \
                {                                                                               \
                    cconv_bn_col s = {(const double *)x, NULL, 1, mu[0], 0., 0., 0., sq, 0};     \
                    part_[0] = 0. + cconv__bn_pairwise(&s, 0, M);                               \
                }                                                                               \
            } else if (exact) {                                                                 \
                _Pragma("omp for schedule(static)")                                             \
                for (t = 0; t < nchunk; t++) {                                                  \
                    int64_t c0 = t * CCONV_BN_CHUNK;                                            \
                    cconv__bn_csum((const double *)x, M, C, c0,                                 \
                                   C - c0 < CCONV_BN_CHUNK ? C - c0 : CCONV_BN_CHUNK, mu,       \
                                   sq, part_);                                                  \
                }                                                                               \
            } else {                                                                            \
                _Pragma("omp for schedule(static)")                                             \
                for (t = 0; t < g.ntask; t++) {                                                 \
                    double *acc = part_ + t * g.L;                                              \
                    memset(acc, 0, sizeof(double) * (size_t)g.L);                               \
                    cconv_bn_task(&g, t, &off, &rows, &w);                                      \
                    CCONV_ISA_DISPATCH(cconv_bn_rsum, SUF, (x + off, rows, w, pm, sq, acc));    \
                }                                                                               \
            }                                                                                   \
            if (exact) memcpy(sum, part_, sizeof(double) * (size_t)C);                          \
            else cconv__bn_fold(&g, part_, sum);                                                \
            if (!sq) {                                                                          \
                for (c = 0; c < C; c++) mu[c] = sum[c] / (double)M;                             \
                for (j = 0; j < g.L; j++) pm[j] = (T)mu[j % C];                                 \
                if (me == 0)                                                                    \
                    for (c = 0; c < C; c++) { mean[c] = mu[c]; mean_t[c] = (T)mu[c]; }         \
            } else {                                                                            \
                for (c = 0; c < C; c++) {                                                       \
                    double dm = mu[c] - (double)(T)mu[c];                                       \
                    sum[c] = sum[c] / (double)M - dm * dm;          /* the variance */          \
                }                                                                               \
                for (j = 0; j < g.L; j++) pr[j] = (T)(1.0 / sqrt(sum[j % C] + eps));           \
                if (me == 0)                                                                    \
                    for (c = 0; c < C; c++) { var[c] = sum[c]; rstd[c] = pr[c]; }               \
            }                                                                                   \
        }                                                                                       \
        _Pragma("omp for schedule(static) nowait")                                              \
        for (t = 0; t < g.ntask; t++) {                                                         \
            cconv_bn_task(&g, t, &off, &rows, &w);                                              \
            CCONV_ISA_DISPATCH(cconv_bn_rnorm, SUF, (x + off, y + off, rows, w, pm, pr, pg,     \
                                                     beta ? pb : NULL, relu));                  \
        }                                                                                       \
    }                                                                                           \
    free(part);                                                                                 \
    free(scr);                                                                                  \
    free(pg);                                                                                   \
    return 0;                                                                                   \
}                                                                                               \
/* Backward, training: dbeta = (T)sum(dy), dgamma = (T)sum(dy * xhat) (double sums; with relu \
   dy first multiplied by (y > 0), y recomputed), dx = k * ((m * dy - dbeta) - xhat * dgamma) \
   with k = (gamma * rstd) * (T)(1 / m). mean_t, rstd: the forward's. 0, or -1 (memory). */     \
static int cconv_bn_backward_##SUF(const T *dy, const T *x, T *dx, int64_t M, int64_t C,       \
                                   const T *mean_t, const T *rstd, const T *gamma,             \
                                   const T *beta, int relu, T *dgamma, T *dbeta,               \
                                   int nthreads)                                                \
{                                                                                               \
    cconv_bn_geom g;                                                                            \
    const int exact = sizeof(T) == sizeof(double);                                              \
    const int64_t nchunk = (C + CCONV_BN_CHUNK - 1) / CCONV_BN_CHUNK;                           \
    double *part, *scr;                                                                         \
    T *pm, *pr, *pg, *pb;                                                                       \
    int64_t i, per;                                                                             \
    if (nthreads < 1) nthreads = 1;                                                             \
    cconv_bn_geom_init(&g, M, C);                                                               \
    /* per thread: the two sums (2 C doubles), expanded dbeta, dgamma and k (3 L T) */         \
    per = 2 * C + (3 * g.L * (int64_t)sizeof(T) + 7) / 8;                                       \
    part = (double *)malloc(sizeof(double) * (size_t)(exact ? 2 * C : 2 * g.ntask * g.L));      \
    scr = (double *)malloc(sizeof(double) * (size_t)(per * nthreads));                          \
    pm = (T *)malloc(sizeof(T) * (size_t)(4 * g.L));                                            \
    if (!part || !scr || !pm) { free(part); free(scr); free(pm); return -1; }                   \
    pr = pm + g.L; pg = pm + 2 * g.L; pb = pm + 3 * g.L;                                        \
    for (i = 0; i < g.L; i++) {                                                                 \
        pm[i] = mean_t[i % C];                                                                  \
        pr[i] = rstd[i % C];                                                                    \
        pg[i] = gamma ? gamma[i % C] : (T)1;                                                    \
        pb[i] = beta ? beta[i % C] : (T)0;                                                      \
    }                                                                                           \
    _Pragma("omp parallel num_threads(nthreads)")                                               \
    {                                                                                           \
        int64_t t, off, rows, w, c, j;                                                          \
        const int me = omp_get_thread_num();                                                    \
        double *sdy = scr + per * me, *sdx = sdy + C;                                           \
        T *pdb = (T *)(sdx + C), *pdg = pdb + g.L, *pk = pdg + g.L;                             \
        const T rm = (T)(1.0 / (double)M);                                                      \
        if (exact && C == 1) {                                                                  \
            _Pragma("omp single")                                                               \
            {                                                                                   \
                cconv_bn_col s = {(const double *)x, (const double *)dy, 1, (double)pm[0],      \
                                  (double)pr[0], (double)pg[0], (double)pb[0], 2, relu};        \
                part[0] = 0. + cconv__bn_pairwise(&s, 0, M);                                    \
                s.what = 3;                                                                     \
                part[1] = 0. + cconv__bn_pairwise(&s, 0, M);                                    \
            }                                                                                   \
        } else if (exact) {                                                                     \
            _Pragma("omp for schedule(static)")                                                 \
            for (t = 0; t < nchunk; t++) {                                                      \
                int64_t c0 = t * CCONV_BN_CHUNK;                                                \
                cconv__bn_cdsum((const double *)dy, (const double *)x, M, C, c0,                \
                                C - c0 < CCONV_BN_CHUNK ? C - c0 : CCONV_BN_CHUNK,              \
                                (const double *)mean_t, (const double *)rstd,                   \
                                (const double *)gamma, (const double *)beta, relu, part,        \
                                part + C);                                                      \
            }                                                                                   \
        } else {                                                                                \
            _Pragma("omp for schedule(static)")                                                 \
            for (t = 0; t < g.ntask; t++) {                                                     \
                double *a = part + t * g.L, *b = part + (g.ntask + t) * g.L;                    \
                memset(a, 0, sizeof(double) * (size_t)g.L);                                     \
                memset(b, 0, sizeof(double) * (size_t)g.L);                                     \
                cconv_bn_task(&g, t, &off, &rows, &w);                                          \
                CCONV_ISA_DISPATCH(cconv_bn_rdsum, SUF, (dy + off, x + off, rows, w, pm, pr,    \
                                                         pg, pb, relu, a, b));                  \
            }                                                                                   \
        }                                                                                       \
        if (exact) {                                                                            \
            memcpy(sdy, part, sizeof(double) * (size_t)C);                                      \
            memcpy(sdx, part + C, sizeof(double) * (size_t)C);                                  \
        } else {                                                                                \
            cconv__bn_fold(&g, part, sdy);                                                      \
            cconv__bn_fold(&g, part + g.ntask * g.L, sdx);                                      \
        }                                                                                       \
        for (j = 0; j < g.L; j++) {                                                             \
            c = j % C;                                                                          \
            pdb[j] = (T)sdy[c];                                                                 \
            pdg[j] = (T)sdx[c];                                                                 \
            pk[j] = (gamma ? gamma[c] * rstd[c] : rstd[c]) * rm;                                \
        }                                                                                       \
        if (me == 0)                                                                            \
            for (c = 0; c < C; c++) { dbeta[c] = pdb[c]; dgamma[c] = pdg[c]; }                  \
        _Pragma("omp for schedule(static) nowait")                                              \
        for (t = 0; t < g.ntask; t++) {                                                         \
            cconv_bn_task(&g, t, &off, &rows, &w);                                              \
            CCONV_ISA_DISPATCH(cconv_bn_rdx, SUF, (dy + off, x + off, dx + off, rows, w, pm,    \
                                                   pr, pg, pb, relu, (T)M, pdb, pdg, pk));      \
        }                                                                                       \
    }                                                                                           \
    free(part);                                                                                 \
    free(scr);                                                                                  \
    free(pm);                                                                                   \
    return 0;                                                                                   \
}

CCONV_BN_DRIVERS(f32, float)
CCONV_BN_DRIVERS(f64, double)

#endif
