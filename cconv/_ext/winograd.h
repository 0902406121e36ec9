/* Winograd F(2x2, 3x3) transforms for 3x3, stride-1, dilation-1, ungrouped convolutions.

   A 2x2 block of outputs ("tile") needs a 4x4 block of input; with
       B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
       G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
       A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
   the tile is  Y = A^T [ (G g G^T) .* (B^T d B) ] A  summed over input channels, so the 36
   multiplications of a direct 2x2 tile become 16: one (tiles x Cin) @ (Cin x Cout) GEMM for each
   of the 16 elements e of the transformed 4x4 tile. conv.pyx drives it:

     U[e][ci][co]  = (G g[ci, co] G^T)[e]          cconv_wino_kernel_*  (once per call)
     V[e][t][ci]   = (B^T d[t, ci] B)[e]           cconv_wino_input_*   (per chunk of tiles)
     M[e]          = V[e] @ U[e]                   cconv_sgemm / cconv_dgemm (16 per chunk)
     y[t]          = A^T M[:, t] A (+ bias)        cconv_wino_output_*  (per chunk)

   Tiles are numbered over the whole batch, t = (n * TH + th) * TW + tw, TH = ceil(OH / 2),
   TW = ceil(OW / 2); tile t reads input rows 2 th - pt .. 2 th - pt + 3 (zero outside) and
   columns likewise, and writes the outputs of its 2x2 block that exist (partial tiles at the
   bottom/right edge compute into a trash row). pt and pl may be negative or larger than 2.

   The transforms are additions only, vectorised over channels (NHWC keeps them contiguous);
   they are compiled for AVX-512, AVX2 and baseline and picked at run time like direct.h. The
   order of every sum is fixed by the code, so results depend on the inputs and ISA path only. */
#ifndef CCONV_WINOGRAD_H
#define CCONV_WINOGRAD_H

#include <stdint.h>
#include <string.h>
#include "gemm.h"

/* Transformed kernel for the "effective" kernel g[kh][kw][ci][co] (3, 3, Cin, Cout) read from
   w (3, 3, C, CO): flip == 0: g = w (Cin = C, Cout = CO), the forward convolution;
   flip == 1: g[kh][kw][ci][co] = w[2 - kh][2 - kw][co][ci] (Cin = CO, Cout = C), the input
   gradient. U is (16, Cin, Cout). Computed in double, then rounded once. */
#define CCONV_WINO_KERNEL_DEFINE(SUF, T, ATTR, VB)                                             \
ATTR static void cconv_wino_kernel_##SUF(const T *CCONV__RESTRICT w, int64_t C, int64_t CO,    \
                                         int flip, T *CCONV__RESTRICT U)                       \
{                                                                                              \
    /* By tiles of 16 x 16 (c, k) channel pairs, k along w's contiguous CO axis: the tile's 16 \
       transformed elements go to a local block first, then to U, where element (c, k) of U[e] \
       is at c * CO + k (flip == 0) or k * C + c (flip == 1). Reading and writing U[e] in      \
       place would touch 25 streams whose strides are multiples of 4 KiB. */                   \
    const int64_t plane = C * CO;                                                              \
    int64_t c0, k0, cc, kk;                                                                    \
    int i, j, e;                                                                               \
    for (c0 = 0; c0 < C; c0 += 16)                                                             \
        for (k0 = 0; k0 < CO; k0 += 16) {                                                      \
            const int64_t nc = C - c0 < 16 ? C - c0 : 16, nk = CO - k0 < 16 ? CO - k0 : 16;    \
            T ub[16][16][16];                                        /* [e][c][k] */           \
            for (cc = 0; cc < nc; cc++) {                                                      \
                const T *CCONV__RESTRICT wt[9];                                                \
                for (i = 0; i < 3; i++)                                                        \
                    for (j = 0; j < 3; j++)                                                    \
                        wt[i * 3 + j] = w + ((flip ? (2 - i) * 3 + (2 - j) : i * 3 + j) * C    \
                                             + c0 + cc) * CO + k0;                             \
                for (kk = 0; kk < nk; kk++) {                                                  \
                    double g[3][3], a[4][3];                                                   \
                    for (i = 0; i < 3; i++)                                                    \
                        for (j = 0; j < 3; j++) g[i][j] = (double)wt[i * 3 + j][kk];           \
                    for (j = 0; j < 3; j++) {                                                  \
                        a[0][j] = g[0][j];                                                     \
                        a[1][j] = 0.5 * (g[0][j] + g[1][j] + g[2][j]);                         \
                        a[2][j] = 0.5 * (g[0][j] - g[1][j] + g[2][j]);                         \
                        a[3][j] = g[2][j];                                                     \
                    }                                                                          \
                    for (i = 0; i < 4; i++) {                                                  \
                        ub[i * 4 + 0][cc][kk] = (T)a[i][0];                                    \
                        ub[i * 4 + 1][cc][kk] = (T)(0.5 * (a[i][0] + a[i][1] + a[i][2]));      \
                        ub[i * 4 + 2][cc][kk] = (T)(0.5 * (a[i][0] - a[i][1] + a[i][2]));      \
                        ub[i * 4 + 3][cc][kk] = (T)a[i][2];                                    \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            for (e = 0; e < 16; e++)                                                           \
                if (!flip)                                                                     \
                    for (cc = 0; cc < nc; cc++)                                                \
                        memcpy(U + e * plane + (c0 + cc) * CO + k0, ub[e][cc],                 \
                               (size_t)nk * sizeof(T));                                        \
                else                                                                           \
                    for (kk = 0; kk < nk; kk++)                                                \
                        for (cc = 0; cc < nc; cc++)                                            \
                            U[e * plane + (k0 + kk) * C + c0 + cc] = ub[e][cc][kk];            \
        }                                                                                      \
}
CCONV_ISA_DEFINE_ALL(CCONV_WINO_KERNEL_DEFINE, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV_WINO_KERNEL_DEFINE, f64, double)
static void cconv_wino_kernel_f32(const float *w, int64_t C, int64_t CO, int flip, float *U)
{
    CCONV_ISA_DISPATCH(cconv_wino_kernel, f32, (w, C, CO, flip, U));
}
static void cconv_wino_kernel_f64(const double *w, int64_t C, int64_t CO, int flip, double *U)
{
    CCONV_ISA_DISPATCH(cconv_wino_kernel, f64, (w, C, CO, flip, U));
}

/* Kernel gradient from the gradient of the transformed kernel: dk (3, 3, C, CO) = G^T dU G for
   every (c, co), dU (16, C, CO). Computed in double, rounded once. */
#define CCONV_WINO_KERNEL_GRAD_DEFINE(SUF, T, ATTR, VB)                                        \
ATTR static void cconv_wino_kernel_grad_##SUF(const T *CCONV__RESTRICT dU, int64_t C,          \
                                              int64_t CO, T *CCONV__RESTRICT dk)               \
{                                                                                              \
    /* By blocks of 16 (c, co) pairs through local copies, as cconv_wino_kernel_* */           \
    const int64_t plane = C * CO;                                                              \
    int64_t e0, e, n;                                                                          \
    int i, j;                                                                                  \
    for (e0 = 0; e0 < plane; e0 += 16) {                                                       \
        T ub[16][16], kb[9][16];                                                               \
        n = plane - e0 < 16 ? plane - e0 : 16;                                                 \
        for (i = 0; i < 16; i++) memcpy(ub[i], dU + i * plane + e0, (size_t)n * sizeof(T));    \
        for (e = 0; e < n; e++) {                                                              \
            double u[4][4], a[3][4];                                                           \
            for (i = 0; i < 4; i++)                                                            \
                for (j = 0; j < 4; j++) u[i][j] = (double)ub[i * 4 + j][e];                    \
            for (j = 0; j < 4; j++) {                                                          \
                a[0][j] = u[0][j] + 0.5 * (u[1][j] + u[2][j]);                                 \
                a[1][j] = 0.5 * (u[1][j] - u[2][j]);                                           \
                a[2][j] = 0.5 * (u[1][j] + u[2][j]) + u[3][j];                                 \
            }                                                                                  \
            for (i = 0; i < 3; i++) {                                                          \
                kb[i * 3 + 0][e] = (T)(a[i][0] + 0.5 * (a[i][1] + a[i][2]));                   \
                kb[i * 3 + 1][e] = (T)(0.5 * (a[i][1] - a[i][2]));                             \
                kb[i * 3 + 2][e] = (T)(0.5 * (a[i][1] + a[i][2]) + a[i][3]);                   \
            }                                                                                  \
        }                                                                                      \
        for (i = 0; i < 9; i++) memcpy(dk + i * plane + e0, kb[i], (size_t)n * sizeof(T));     \
    }                                                                                          \
}
CCONV_ISA_DEFINE_ALL(CCONV_WINO_KERNEL_GRAD_DEFINE, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV_WINO_KERNEL_GRAD_DEFINE, f64, double)
static void cconv_wino_kernel_grad_f32(const float *dU, int64_t C, int64_t CO, float *dk)
{
    CCONV_ISA_DISPATCH(cconv_wino_kernel_grad, f32, (dU, C, CO, dk));
}
static void cconv_wino_kernel_grad_f64(const double *dU, int64_t C, int64_t CO, double *dk)
{
    CCONV_ISA_DISPATCH(cconv_wino_kernel_grad, f64, (dU, C, CO, dk));
}

/* One channel step (c .. c + lanes) of each transform, over any type VT with + and - (a GCC
   vector or the scalar T); LD(p) reads a VT at p, ST(p, v) writes one. */
#define CCONV__WINO_IN_STEP(VT, LD, ST)                                                        \
    {                                                                                          \
        /* rows: r = B^T d */                                                                  \
        const VT r00 = LD(p00 + c) - LD(p20 + c), r01 = LD(p01 + c) - LD(p21 + c);            \
        const VT r02 = LD(p02 + c) - LD(p22 + c), r03 = LD(p03 + c) - LD(p23 + c);            \
        const VT r10 = LD(p10 + c) + LD(p20 + c), r11 = LD(p11 + c) + LD(p21 + c);            \
        const VT r12 = LD(p12 + c) + LD(p22 + c), r13 = LD(p13 + c) + LD(p23 + c);            \
        const VT r20 = LD(p20 + c) - LD(p10 + c), r21 = LD(p21 + c) - LD(p11 + c);            \
        const VT r22 = LD(p22 + c) - LD(p12 + c), r23 = LD(p23 + c) - LD(p13 + c);            \
        const VT r30 = LD(p10 + c) - LD(p30 + c), r31 = LD(p11 + c) - LD(p31 + c);            \
        const VT r32 = LD(p12 + c) - LD(p32 + c), r33 = LD(p13 + c) - LD(p33 + c);            \
        /* columns: r B */                                                                     \
        ST(v0 + c, r00 - r02); ST(v1 + c, r01 + r02); ST(v2 + c, r02 - r01); ST(v3 + c, r01 - r03); \
        ST(v4 + c, r10 - r12); ST(v5 + c, r11 + r12); ST(v6 + c, r12 - r11); ST(v7 + c, r11 - r13); \
        ST(v8 + c, r20 - r22); ST(v9 + c, r21 + r22); ST(v10 + c, r22 - r21); ST(v11 + c, r21 - r23); \
        ST(v12 + c, r30 - r32); ST(v13 + c, r31 + r32); ST(v14 + c, r32 - r31); ST(v15 + c, r31 - r33); \
    }
#define CCONV__WINO_OUT_STEP(VT, LD, ST)                                                       \
    {                                                                                          \
        /* s = A^T m (2 x 4), then s A (2 x 2) */                                              \
        const VT s00 = LD(m0 + c) + LD(m4 + c) + LD(m8 + c);                                   \
        const VT s01 = LD(m1 + c) + LD(m5 + c) + LD(m9 + c);                                   \
        const VT s02 = LD(m2 + c) + LD(m6 + c) + LD(m10 + c);                                  \
        const VT s03 = LD(m3 + c) + LD(m7 + c) + LD(m11 + c);                                  \
        const VT s10 = LD(m4 + c) - LD(m8 + c) - LD(m12 + c);                                  \
        const VT s11 = LD(m5 + c) - LD(m9 + c) - LD(m13 + c);                                  \
        const VT s12 = LD(m6 + c) - LD(m10 + c) - LD(m14 + c);                                 \
        const VT s13 = LD(m7 + c) - LD(m11 + c) - LD(m15 + c);                                 \
        const VT bv = LD(b + c);                                                               \
        ST(y00 + c, (s00 + s01 + s02) + bv);                                                   \
        ST(y01 + c, (s01 - s02 - s03) + bv);                                                   \
        ST(y10 + c, (s10 + s11 + s12) + bv);                                                   \
        ST(y11 + c, (s11 - s12 - s13) + bv);                                                   \
    }
#define CCONV__WINO_DY_STEP(VT, LD, ST)                                                        \
    {                                                                                          \
        /* dM = A dY A^T, A = [[1, 0], [1, 1], [1, -1], [0, -1]] (the adjoint of A^T . A) */    \
        const VT a = LD(q00 + c), b = LD(q01 + c), d = LD(q10 + c), f = LD(q11 + c);           \
        const VT z10 = a + d, z11 = b + f, z20 = a - d, z21 = b - f;                           \
        ST(v0 + c, a); ST(v1 + c, a + b); ST(v2 + c, a - b); ST(v3 + c, -b);                   \
        const VT s5 = z10 + z11;                                                               \
        ST(v4 + c, z10); ST(v5 + c, s5); ST(v6 + c, z10 - z11); ST(v7 + c, -z11);               \
        ST(acc + c, LD(acc + c) + s5);                                                         \
        ST(v8 + c, z20); ST(v9 + c, z20 + z21); ST(v10 + c, z20 - z21); ST(v11 + c, -z21);     \
        ST(v12 + c, -d); ST(v13 + c, -d - f); ST(v14 + c, f - d); ST(v15 + c, f);              \
    }
#define CCONV__WINO_SLD(p) (*(p))
#define CCONV__WINO_SST(p, v) (*(p) = (v))
#if defined(__GNUC__)
/* GCC/Clang vectors of VB bytes: the target attribute of the enclosing function decides the
   instructions (zmm, ymm or xmm); memcpy makes the loads and stores unaligned-safe. */
#define CCONV__WINO_VLD(p) __extension__({ cconv__wv_ v_; memcpy(&v_, (p), sizeof v_); v_; })
#define CCONV__WINO_VST(p, v) __extension__({ cconv__wv_ w_ = (v); memcpy((p), &w_, sizeof w_); })
#define CCONV__WINO_VLOOP1(VB, T, CN, STEP)                                                    \
    {                                                                                          \
        typedef T cconv__wv_ __attribute__((vector_size(VB)));                                 \
        const int64_t lanes_ = (int64_t)(VB / sizeof(T));                                      \
        for (; c + lanes_ <= (CN); c += lanes_) STEP(cconv__wv_, CCONV__WINO_VLD, CCONV__WINO_VST) \
    }
/* full vectors, then half and quarter ones for channel counts such as 12 or 24 */
#define CCONV__WINO_VLOOP(VB, T, CN, STEP)                                                     \
    CCONV__WINO_VLOOP1(VB, T, CN, STEP)                                                        \
    if (VB / 2 >= 16) CCONV__WINO_VLOOP1(VB / 2 >= 16 ? VB / 2 : 16, T, CN, STEP)              \
    if (VB / 4 >= 16) CCONV__WINO_VLOOP1(VB / 4 >= 16 ? VB / 4 : 16, T, CN, STEP)
#else
#define CCONV__WINO_VLOOP(VB, T, CN, STEP)
#endif

/* Q *CCONV__RESTRICT P0 .. P15 = BASE, BASE + S, .., BASE + 15 S: the 16 planes of a chunk's
   transformed tiles (Q is T or const T), one per element e of the 4x4 transformed tile. */
#define CCONV__WINO_PLANES(Q, P, BASE, S)                                                      \
    Q *CCONV__RESTRICT P##0 = (BASE), *CCONV__RESTRICT P##1 = P##0 + (S);                      \
    Q *CCONV__RESTRICT P##2 = P##0 + 2 * (S), *CCONV__RESTRICT P##3 = P##0 + 3 * (S);          \
    Q *CCONV__RESTRICT P##4 = P##0 + 4 * (S), *CCONV__RESTRICT P##5 = P##0 + 5 * (S);          \
    Q *CCONV__RESTRICT P##6 = P##0 + 6 * (S), *CCONV__RESTRICT P##7 = P##0 + 7 * (S);          \
    Q *CCONV__RESTRICT P##8 = P##0 + 8 * (S), *CCONV__RESTRICT P##9 = P##0 + 9 * (S);          \
    Q *CCONV__RESTRICT P##10 = P##0 + 10 * (S), *CCONV__RESTRICT P##11 = P##0 + 11 * (S);      \
    Q *CCONV__RESTRICT P##12 = P##0 + 12 * (S), *CCONV__RESTRICT P##13 = P##0 + 13 * (S);      \
    Q *CCONV__RESTRICT P##14 = P##0 + 14 * (S), *CCONV__RESTRICT P##15 = P##0 + 15 * (S);
/* Tile t0 as (image n, tile row th, tile column tw); then the next tile, row-major over the
   batch (tiles t = (n * TH + th) * TW + tw). */
#define CCONV__WINO_FIRST_TILE(t0)                                                             \
    n = (t0) / (TH * TW);                                                                      \
    th = ((t0) - n * TH * TW) / TW;                                                            \
    tw = (t0) - (n * TH + th) * TW;
#define CCONV__WINO_NEXT_TILE if (++tw == TW) { tw = 0; if (++th == TH) { th = 0; n++; } }
/* Q *CCONV__RESTRICT P00, P01, P10, P11: the 2x2 block of tile (n, th, tw) in A (N, OH, OW,
   CO); cells of a partial tile outside A point at F01, F10 and F11 instead. */
#define CCONV__WINO_BLOCK(Q, P, A, F01, F10, F11)                                              \
    const int64_t oh_ = 2 * th, ow_ = 2 * tw;                                                  \
    const int hb_ = oh_ + 1 < OH, wb_ = ow_ + 1 < OW;                                          \
    Q *base_ = (A) + ((n * OH + oh_) * OW + ow_) * CO;                                         \
    Q *CCONV__RESTRICT P##00 = base_;                                                          \
    Q *CCONV__RESTRICT P##01 = wb_ ? base_ + CO : (F01);                                       \
    Q *CCONV__RESTRICT P##10 = hb_ ? base_ + OW * CO : (F10);                                  \
    Q *CCONV__RESTRICT P##11 = hb_ && wb_ ? base_ + (OW + 1) * CO : (F11);

/* V[e * vs + (t - t0) * C + c] for tiles t0 .. t0 + nt - 1 of in (N, IH, IW, C); zeros holds
   at least C zeros (it stands in for input cells outside the image). */
#define CCONV_WINO_DEFINE(SUF, T, ATTR, VB)                                                        \
ATTR static void cconv_wino_input_##SUF(const T *in, int64_t IH, int64_t IW, int64_t C,        \
                                        int64_t TH, int64_t TW, int64_t pt, int64_t pl,        \
                                        int64_t t0, int64_t nt, T *V, int64_t vs,              \
                                        const T *zeros)                                        \
{                                                                                              \
    int64_t t, n, th, tw, c;                                                                   \
    int i, j;                                                                                  \
    CCONV__WINO_FIRST_TILE(t0)                                                                 \
    for (t = 0; t < nt; t++) {                                                                 \
        const T *p[4][4];                                                                      \
        const int64_t ih0 = 2 * th - pt, iw0 = 2 * tw - pl;                                    \
        for (i = 0; i < 4; i++)                                                                \
            for (j = 0; j < 4; j++) {                                                          \
                const int64_t ih = ih0 + i, iw = iw0 + j;                                      \
                p[i][j] = (ih >= 0 && ih < IH && iw >= 0 && iw < IW)                           \
                              ? in + ((n * IH + ih) * IW + iw) * C : zeros;                    \
            }                                                                                  \
        {                                                                                      \
            const T *CCONV__RESTRICT p00 = p[0][0], *CCONV__RESTRICT p01 = p[0][1];            \
            const T *CCONV__RESTRICT p02 = p[0][2], *CCONV__RESTRICT p03 = p[0][3];            \
            const T *CCONV__RESTRICT p10 = p[1][0], *CCONV__RESTRICT p11 = p[1][1];            \
            const T *CCONV__RESTRICT p12 = p[1][2], *CCONV__RESTRICT p13 = p[1][3];            \
            const T *CCONV__RESTRICT p20 = p[2][0], *CCONV__RESTRICT p21 = p[2][1];            \
            const T *CCONV__RESTRICT p22 = p[2][2], *CCONV__RESTRICT p23 = p[2][3];            \
            const T *CCONV__RESTRICT p30 = p[3][0], *CCONV__RESTRICT p31 = p[3][1];            \
            const T *CCONV__RESTRICT p32 = p[3][2], *CCONV__RESTRICT p33 = p[3][3];            \
            CCONV__WINO_PLANES(T, v, V + t * C, vs)                                            \
            c = 0;                                                                             \
            CCONV__WINO_VLOOP(VB, T, C, CCONV__WINO_IN_STEP)                                   \
            for (; c < C; c++) { CCONV__WINO_IN_STEP(T, CCONV__WINO_SLD, CCONV__WINO_SST) }    \
        }                                                                                      \
        CCONV__WINO_NEXT_TILE                                                                  \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* out (N, OH, OW, CO) for tiles t0 .. t0 + nt - 1 from M[e * ms + (t - t0) * CO + co]:       \
   channels 0 .. CN - 1 (CN <= CO; the caller offsets M, bias and out for a later part);      \
   bias holds CN values (zeros when there is none); trash holds 3 * CO writable elements. */  \
ATTR static void cconv_wino_output_##SUF(const T *M, int64_t ms, int64_t CO, int64_t CN,       \
                                         const T *bias, T *out, int64_t OH, int64_t OW,        \
                                         int64_t TH, int64_t TW, int64_t t0, int64_t nt,       \
                                         T *trash)                                             \
{                                                                                              \
    int64_t t, n, th, tw, c;                                                                   \
    CCONV__WINO_FIRST_TILE(t0)                                                                 \
    for (t = 0; t < nt; t++) {                                                                 \
        CCONV__WINO_BLOCK(T, y, out, trash, trash + CO, trash + 2 * CO)                        \
        CCONV__WINO_PLANES(const T, m, M + t * CO, ms)                                         \
        const T *CCONV__RESTRICT b = bias;                                                     \
        c = 0;                                                                                 \
        CCONV__WINO_VLOOP(VB, T, CN, CCONV__WINO_OUT_STEP)                                     \
        for (; c < CN; c++) { CCONV__WINO_OUT_STEP(T, CCONV__WINO_SLD, CCONV__WINO_SST) }      \
        CCONV__WINO_NEXT_TILE                                                                  \
    }                                                                                          \
}                                                                                              \
                                                                                               \
/* dM[e * ms + (t - t0) * CO + co] for tiles t0 .. t0 + nt - 1 of dy (N, OH, OW, CO): the      \
   gradient of the 16 GEMM outputs (cells of partial tiles outside dy read as zeros); adds
   each tile's sum (dM[5]) to acc (CO), tile after tile: the bias gradient. */       \
ATTR static void cconv_wino_dy_##SUF(const T *dy, int64_t OH, int64_t OW, int64_t CO,          \
                                     int64_t TH, int64_t TW, int64_t t0, int64_t nt, T *dM,    \
                                     int64_t ms, const T *zeros, T *CCONV__RESTRICT acc)       \
{                                                                                              \
    int64_t t, n, th, tw, c;                                                                   \
    CCONV__WINO_FIRST_TILE(t0)                                                                 \
    for (t = 0; t < nt; t++) {                                                                 \
        CCONV__WINO_BLOCK(const T, q, dy, zeros, zeros, zeros)                                 \
        CCONV__WINO_PLANES(T, v, dM + t * CO, ms)                                              \
        c = 0;                                                                                 \
        CCONV__WINO_VLOOP(VB, T, CO, CCONV__WINO_DY_STEP)                                      \
        for (; c < CO; c++) { CCONV__WINO_DY_STEP(T, CCONV__WINO_SLD, CCONV__WINO_SST) }       \
        CCONV__WINO_NEXT_TILE                                                                  \
    }                                                                                          \
}

CCONV_ISA_DEFINE_ALL(CCONV_WINO_DEFINE, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV_WINO_DEFINE, f64, double)

/* *ok = 1 when none of p[0 .. n) is Inf or NaN (x - x == 0 exactly for finite x), else 0:
   the check before Winograd, whose transforms would turn one Inf into NaN (Inf - Inf) where
   the direct sum gives +-Inf. A flag as wide as a double lets every ISA vectorise it. */
#define CCONV_WINO_FINITE(SUF, T, ATTR, VB)                                                    \
ATTR static void cconv_wino_finite_##SUF(const T *p, int64_t n, int *ok)                       \
{                                                                                              \
    int64_t i, bad = 0;                                                                        \
    for (i = 0; i < n; i++) bad |= !(p[i] - p[i] == (T)0);                                     \
    *ok = !bad;                                                                                \
}
CCONV_ISA_DEFINE_ALL(CCONV_WINO_FINITE, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV_WINO_FINITE, f64, double)

#define CCONV__WINO_API(SUF, T)                                                                \
static void cconv_wino_input_##SUF(const T *in, int64_t IH, int64_t IW, int64_t C, int64_t TH, \
                                   int64_t TW, int64_t pt, int64_t pl, int64_t t0, int64_t nt, \
                                   T *V, int64_t vs, const T *zeros)                           \
{ CCONV_ISA_DISPATCH(cconv_wino_input, SUF, (in, IH, IW, C, TH, TW, pt, pl, t0, nt, V, vs, zeros)); } \
static void cconv_wino_output_##SUF(const T *M, int64_t ms, int64_t CO, int64_t CN,           \
                                    const T *bias, T *out, int64_t OH, int64_t OW, int64_t TH, \
                                    int64_t TW, int64_t t0, int64_t nt, T *trash)              \
{ CCONV_ISA_DISPATCH(cconv_wino_output, SUF, (M, ms, CO, CN, bias, out, OH, OW, TH, TW, t0, nt, trash)); } \
static void cconv_wino_dy_##SUF(const T *dy, int64_t OH, int64_t OW, int64_t CO, int64_t TH,    \
                                int64_t TW, int64_t t0, int64_t nt, T *dM, int64_t ms,          \
                                const T *zeros, T *acc)                                        \
{ CCONV_ISA_DISPATCH(cconv_wino_dy, SUF, (dy, OH, OW, CO, TH, TW, t0, nt, dM, ms, zeros, acc)); } \
static int cconv_wino_finite_##SUF(const T *p, int64_t n)                                      \
{ int ok; CCONV_ISA_DISPATCH(cconv_wino_finite, SUF, (p, n, &ok)); return ok; }

CCONV__WINO_API(f32, float)
CCONV__WINO_API(f64, double)

#endif
