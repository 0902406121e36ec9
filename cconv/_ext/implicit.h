/* The im2col forward with the im2col matrix read in place ("implicit im2col"), for
   convolutions without groups or width dilation whose windows lie inside x (conv.pyx copies
   a padded convolution's image into a zero-padded plane first: cconv_implicit_pad).

   Row (oh, ow) of the im2col matrix is, for each kh, a run of KW C contiguous elements of x
   starting at x[oh sh + kh dh, ow sw, 0], and the rows of one output row are sw C elements
   apart. So the GEMM's micro-kernel can broadcast its A operand straight from x: no im2col
   tile is written or read back, and bias and relu are applied to the accumulators before
   the one store of each output. Each output is the sum GEMM forms (gemm.h: K in
   ceil(K / CCONV_GEMM_KC) equal depth blocks, each a chain of fused multiply-adds in k order
   from zero, added to the output after the first; times alpha = 1), then + bias, then relu
   as cconv_plan_epilogue does it: the same bits as im2col + GEMM + bias (a padding tap is a
   0 in the im2col row and in the padded plane alike).

   Rows go in blocks of up to 12 (AVX-512; 6 with AVX2) rows of one output row. The same
   kernels give plain products (cconv_implicit_gemm_*) gemm.h's bits in blocks of the exact
   number of rows: the compiled plan runs products under one micro-panel, and the rows after
   the last whole panel, that way. Needs the ISA's fused multiply-add: the _ok functions say
   0 on the generic path, where im2col + GEMM stay. */
#ifndef CCONV_IMPLICIT_H
#define CCONV_IMPLICIT_H

#include <stdint.h>
#include "gemm.h"
#include "direct.h"

/* The MR rows of one block, NV vectors of columns, taps k0 .. k1 (k = kh L + j): y[i ldy +
   ..] = (add ? y[..] : 0) + the sum over those k of a[i rs + kh hs + j] w[k ldw + ..], then
   + bias, relu (bias may be NULL). */
#define CCONV__IMPL_KERNEL(NAME, ATTR, T, P, MR, NV)                                           \
    ATTR static void NAME(const T *CCONV__RESTRICT a, int64_t rs, int64_t hs, int64_t L,      \
                          int64_t k0, int64_t k1, const T *CCONV__RESTRICT w, int64_t ldw,    \
                          T *CCONV__RESTRICT y, int64_t ldy, const T *bias, int relu, int add) \
    {                                                                                          \
        CCONV_##P##_VT acc[MR][NV];                                                            \
        int64_t k = k0, kh = k0 / L, j0 = k0 - kh * L, j;                                      \
        int i, v;                                                                              \
        CCONV__UNROLL for (i = 0; i < MR; i++)                                                 \
            CCONV__UNROLL for (v = 0; v < NV; v++) acc[i][v] = CCONV_##P##_ZERO();             \
        while (k < k1) {                                                                       \
            const int64_t jn = L - j0 < k1 - k ? L - j0 : k1 - k;                              \
            const T *ak = a + kh * hs + j0, *wk = w + (kh * L + j0) * ldw;                     \
            for (j = 0; j < jn; j++) {                                                         \
                CCONV_##P##_VT bv[NV];                                                         \
                CCONV__UNROLL for (v = 0; v < NV; v++)                                         \
                    bv[v] = CCONV_##P##_LOAD(wk + j * ldw + v * CCONV_##P##_VW);               \
                CCONV__UNROLL for (i = 0; i < MR; i++) {                                       \
                    CCONV_##P##_VT av = CCONV_##P##_SET1(ak[i * rs + j]);                      \
                    CCONV__UNROLL for (v = 0; v < NV; v++)                                     \
                        acc[i][v] = CCONV_##P##_FMA(av, bv[v], acc[i][v]);                     \
                }                                                                              \
            }                                                                                  \
            k += jn;                                                                           \
            kh++;                                                                              \
            j0 = 0;                                                                            \
        }                                                                                      \
        CCONV__UNROLL for (i = 0; i < MR; i++) {                                               \
            CCONV__UNROLL for (v = 0; v < NV; v++) {                                           \
                CCONV_##P##_VT t = acc[i][v], z = CCONV_##P##_ZERO();                          \
                T *yp = y + i * ldy + v * CCONV_##P##_VW;                                      \
                if (add) t = CCONV_##P##_LOAD(yp) + t;                                         \
                if (bias) t = t + CCONV_##P##_LOAD(bias + v * CCONV_##P##_VW);                 \
                if (relu) { /* t < 0 ? 0 : t, lane by lane (NaN and -0 stay) */                \
                    __typeof__(t < z) neg = t < z;                                             \
                    t = (__typeof__(t))((__typeof__(neg))t & ~neg);                            \
                }                                                                              \
                CCONV_##P##_STORE(yp, t);                                                      \
            }                                                                                  \
        }                                                                                      \
    }

/* Kernels for 1 .. 12 rows, with 2 and with 1 vector of columns. */
#define CCONV__IMPL_MRS(X, SUF, ATTR, T, P)                                                    \
    X(SUF, ATTR, T, P, 1) X(SUF, ATTR, T, P, 2) X(SUF, ATTR, T, P, 3) X(SUF, ATTR, T, P, 4)    \
    X(SUF, ATTR, T, P, 5) X(SUF, ATTR, T, P, 6) X(SUF, ATTR, T, P, 7) X(SUF, ATTR, T, P, 8)    \
    X(SUF, ATTR, T, P, 9) X(SUF, ATTR, T, P, 10) X(SUF, ATTR, T, P, 11) X(SUF, ATTR, T, P, 12)
#define CCONV__IMPL_DEF(SUF, ATTR, T, P, MR)                                                   \
    CCONV__IMPL_KERNEL(cconv__impl_##SUF##_##MR##_2, ATTR, T, P, MR, 2)                        \
    CCONV__IMPL_KERNEL(cconv__impl_##SUF##_##MR##_1, ATTR, T, P, MR, 1)
#define CCONV__IMPL_CASE(SUF, ATTR, T, P, MR)                                                  \
    case MR:                                                                                   \
        (two ? cconv__impl_##SUF##_##MR##_2 : cconv__impl_##SUF##_##MR##_1)(                   \
            a, rs, hs, L, k0, k1, w + j0, ldw, y + j0, ldy, bj, relu, add);                    \
        break;

/* One ISA path for type T, blocks of up to MRMAX rows (MRMAX <= 12): the kernels; a block
   of mr rows over all N columns (N a whole number of vectors), in gemm.h's depth blocks,
   bias and relu with the last; the driver over rows r0 .. r1
   of a convolution's output (r = (n OH + oh) OW + ow), each run of rows inside one output
   row in ceil(len / MRMAX) blocks of as equal sizes as can be; and C = A @ B in such blocks. */
#define CCONV__IMPL_PATH(SUF, ATTR, T, P, MRMAX)                                               \
    CCONV__IMPL_MRS(CCONV__IMPL_DEF, SUF, ATTR, T, P)                                          \
    ATTR static void cconv__impl_block_##SUF(int mr, const T *a, int64_t rs, int64_t hs,       \
                                             int64_t KH, int64_t L, const T *w, int64_t ldw,   \
                                             int64_t N, T *y, int64_t ldy, const T *bias_,     \
                                             int relu_)                                        \
    {                                                                                          \
        const int64_t VW = CCONV_##P##_VW, K = KH * L;                                         \
        const int64_t nkb = (K + CCONV_GEMM_KC - 1) / CCONV_GEMM_KC, kcb = (K + nkb - 1) / nkb; \
        int64_t j0, k0;                                                                        \
        for (j0 = 0; j0 < N; j0 += (N - j0 >= 2 * VW ? 2 : 1) * VW) {                          \
            const int two = N - j0 >= 2 * VW;                                                  \
            for (k0 = 0; k0 < K; k0 += kcb) {                                                  \
                const int64_t k1 = K - k0 < kcb ? K : k0 + kcb;                                \
                const int last = k1 == K, add = k0 > 0, relu = last ? relu_ : 0;               \
                const T *bj = bias_ && last ? bias_ + j0 : 0;                                  \
                switch (mr) { CCONV__IMPL_MRS(CCONV__IMPL_CASE, SUF, ATTR, T, P) }             \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    ATTR static void cconv__impl_rows_##SUF(const T *x, const T *w, const T *bias, T *y,       \
                                            const cconv_geom *g, int64_t r0, int64_t r1,      \
                                            int relu)                                          \
    {                                                                                          \
        const int64_t P_ = g->OH * g->OW, CO = g->CO;                                          \
        const int64_t rs = g->sw * g->C, hs = g->dh * g->W * g->C, L = g->KW * g->C;          \
        int64_t r = r0;                                                                        \
        while (r < r1) {                                                                       \
            int64_t n = r / P_, oh = (r - n * P_) / g->OW, ow = r - n * P_ - oh * g->OW;       \
            int64_t len = g->OW - ow < r1 - r ? g->OW - ow : r1 - r;                           \
            int64_t nb = (len + MRMAX - 1) / MRMAX, b, at = ow;                                \
            const T *xr = x + (n * g->H + oh * g->sh) * g->W * g->C;                           \
            T *yr = y + (r - ow) * CO;                                                         \
            for (b = 0; b < nb; b++) {                                                         \
                const int mr = (int)(len / nb + (b < len % nb));                               \
                cconv__impl_block_##SUF(mr, xr + at * rs, rs, hs, g->KH, L, w, CO, CO,         \
                                        yr + at * CO, CO, bias, relu);                         \
                at += mr;                                                                      \
            }                                                                                  \
            r += len;                                                                          \
        }                                                                                      \
    }                                                                                          \
    ATTR static void cconv__impl_gemm_##SUF(int64_t M, int64_t N, int64_t K, const T *A,       \
                                            int64_t lda, const T *B, int64_t ldb, T *C,       \
                                            int64_t ldc)                                       \
    {                                                                                          \
        int64_t nb = (M + MRMAX - 1) / MRMAX, b, at = 0;                                       \
        for (b = 0; b < nb; b++) {                                                             \
            const int mr = (int)(M / nb + (b < M % nb));                                       \
            cconv__impl_block_##SUF(mr, A + at * lda, lda, 0, 1, K, B, ldb, N, C + at * ldc,   \
                                    ldc, 0, 0);                                                \
            at += mr;                                                                          \
        }                                                                                      \
    }

#ifdef CCONV__X86
CCONV__IMPL_PATH(f32_avx512, CCONV__ATTR_AVX512, float, S16, 12)
CCONV__IMPL_PATH(f64_avx512, CCONV__ATTR_AVX512, double, D8, 12)
CCONV__IMPL_PATH(f32_avx2, CCONV__ATTR_AVX2, float, S8, 6)
CCONV__IMPL_PATH(f64_avx2, CCONV__ATTR_AVX2, double, D4, 6)
#endif

/* Output width from which rows are read in place: narrower output rows make blocks of few
   rows, whose few accumulators reuse each loaded kernel vector a few times only (a 4 x 3
   output of 144-deep rows ran at half the GEMM's speed), so im2col + GEMM stay there. */
#define CCONV_IMPLICIT_MIN_OW 8

/* 1 when this build and CPU run the forward of geometry geom (a cconv_geom) in place for
   elements of elem bytes: one group, no padding (every window inside x), width dilation 1,
   CO a whole number of vectors, OW >= CCONV_IMPLICIT_MIN_OW. */
CCONV__UNUSED static int cconv_implicit_ok(const void *geom, int elem)
{
#ifdef CCONV__X86
    const cconv_geom *g = (const cconv_geom *)geom;
    int lvl = cconv__isa();
    int64_t vw = (lvl >= CCONV_ISA_AVX512 ? 64 : 32) / elem;
    if (lvl < CCONV_ISA_AVX2 || g->groups != 1 || g->dw != 1 || g->pt != 0 || g->pl != 0)
        return 0;
    if ((g->OH - 1) * g->sh + (g->KH - 1) * g->dh >= g->H || (g->OW - 1) * g->sw + g->KW > g->W)
        return 0;
    return g->CO % vw == 0 && g->OH >= 1
           && g->OW >= CCONV_IMPLICIT_MIN_OW;
#else
    (void)geom; (void)elem;
    return 0;
#endif
}

/* 1 when cconv_implicit_gemm_f32 / _f64 run a product of depth K and N columns for
   elements of elem bytes here: the CPU's FMA, K <= CCONV_GEMM_KC, N a whole number of
   vectors. */
CCONV__UNUSED static int cconv_implicit_gemm_ok(int64_t N, int64_t K, int elem)
{
#ifdef CCONV__X86
    int lvl = cconv__isa();
    return lvl >= CCONV_ISA_AVX2 && K <= CCONV_GEMM_KC && K >= 1 && N >= 1
           && N % ((lvl >= CCONV_ISA_AVX512 ? 64 : 32) / elem) == 0;
#else
    (void)N; (void)K; (void)elem;
    return 0;
#endif
}

/* Elements of the zero-padded plane of one image of geometry geom: the rows and columns its
   windows read (direct.h's extent), times C. */
CCONV__UNUSED static int64_t cconv_implicit_plane(const void *geom)
{
    const cconv_geom *g = (const cconv_geom *)geom;
    return cconv_direct_hp(g) * cconv_direct_wp(g) * g->C;
}

/* cconv_implicit_rows_f32 / _f64 (x, w, bias, y, geom, r0, r1, relu): y rows r0 .. r1
   (r = (n OH + oh) OW + ow) = conv(x, w) + bias (bias may be NULL), then relu when
   relu != 0; only where cconv_implicit_ok(geom, sizeof(T)) said 1.
   cconv_implicit_gemm_f32 / _f64 (M, N, K, A, lda, B, ldb, C, ldc): C = A @ B (row-major,
   C only written), the bits of gemm.h's product, in blocks of rows without padding rows to
   a whole micro-panel; only where cconv_implicit_gemm_ok said 1.
   cconv_implicit_pad_f32 / _f64 (x, geom, plane): image x (H, W, C) of geometry geom into
   plane (cconv_implicit_plane elements), zeros where the windows read padding; geom with
   H, W = the plane's extent and pt = pl = 0 then describes the same convolution on plane. */
#define CCONV__IMPL_PAD(T, S)                                                                  \
    CCONV__UNUSED static void cconv_implicit_pad_##S(const T *x, const void *geom, T *plane)  \
    {                                                                                          \
        const cconv_geom *g = (const cconv_geom *)geom;                                        \
        const int64_t Hp = cconv_direct_hp(g), Wp = cconv_direct_wp(g), C = g->C;              \
        const int64_t w0 = g->pl < Wp ? g->pl : Wp;                                            \
        const int64_t w1 = g->pl + g->W < Wp ? g->pl + g->W : Wp; /* columns holding x */     \
        int64_t h;                                                                             \
        for (h = 0; h < Hp; h++) {                                                             \
            const int64_t ih = h - g->pt;                                                      \
            T *dst = plane + h * Wp * C;                                                       \
            if (ih < 0 || ih >= g->H || w1 <= w0) {                                            \
                memset(dst, 0, (size_t)(Wp * C) * sizeof(T));                                  \
                continue;                                                                      \
            }                                                                                  \
            memset(dst, 0, (size_t)(w0 * C) * sizeof(T));                                      \
            memcpy(dst + w0 * C, x + (ih * g->W + (w0 - g->pl)) * C,                           \
                   (size_t)((w1 - w0) * C) * sizeof(T));                                       \
            memset(dst + w1 * C, 0, (size_t)((Wp - w1) * C) * sizeof(T));                      \
        }                                                                                      \
    }
CCONV__IMPL_PAD(float, f32)
CCONV__IMPL_PAD(double, f64)

#ifdef CCONV__X86
#define CCONV__IMPL_API(T, S)                                                                  \
    CCONV__UNUSED static void cconv_implicit_rows_##S(const T *x, const T *w, const T *bias,  \
                                                      T *y, const void *geom, int64_t r0,     \
                                                      int64_t r1, int relu)                   \
    {                                                                                          \
        const cconv_geom *g = (const cconv_geom *)geom;                                        \
        if (cconv__isa() >= CCONV_ISA_AVX512)                                                  \
            cconv__impl_rows_##S##_avx512(x, w, bias, y, g, r0, r1, relu);                     \
        else                                                                                   \
            cconv__impl_rows_##S##_avx2(x, w, bias, y, g, r0, r1, relu);                       \
    }                                                                                          \
    CCONV__UNUSED static void cconv_implicit_gemm_##S(int64_t M, int64_t N, int64_t K,         \
                                                      const T *A, int64_t lda, const T *B,    \
                                                      int64_t ldb, T *C, int64_t ldc)         \
    {                                                                                          \
        if (cconv__isa() >= CCONV_ISA_AVX512)                                                  \
            cconv__impl_gemm_##S##_avx512(M, N, K, A, lda, B, ldb, C, ldc);                    \
        else                                                                                   \
            cconv__impl_gemm_##S##_avx2(M, N, K, A, lda, B, ldb, C, ldc);                      \
    }
#else
#define CCONV__IMPL_API(T, S)                                                                  \
    CCONV__UNUSED static void cconv_implicit_rows_##S(const T *x, const T *w, const T *bias,  \
                                                      T *y, const void *geom, int64_t r0,     \
                                                      int64_t r1, int relu)                   \
    {                                                                                          \
        (void)x; (void)w; (void)bias; (void)y; (void)geom; (void)r0; (void)r1; (void)relu;     \
    }                                                                                          \
    CCONV__UNUSED static void cconv_implicit_gemm_##S(int64_t M, int64_t N, int64_t K,         \
                                                      const T *A, int64_t lda, const T *B,    \
                                                      int64_t ldb, T *C, int64_t ldc)         \
    {                                                                                          \
        (void)M; (void)N; (void)K; (void)A; (void)lda; (void)B; (void)ldb; (void)C; (void)ldc; \
    }
#endif
CCONV__IMPL_API(float, f32)
CCONV__IMPL_API(double, f64)

#endif /* CCONV_IMPLICIT_H */
