/* Winograd F(2x2, 3x3) and F(4x4, 3x3) transforms for 3x3, stride-1, dilation-1, ungrouped
   convolutions.

   An m x m block of outputs ("tile", m = 2 or 4) needs an (m + 2) x (m + 2) block of input;
   with, for m = 2,
       B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
       G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
       A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
   and, for m = 4, from the points 0, 1, -1, 2, -1/2 and infinity,
       B^T = [[1, 3/2, -2, -3/2, 1, 0], [0, -1, -5/2, -1/2, 1, 0], [0, 1, 1/2, -5/2, 1, 0],
              [0, -1/2, -1, 1/2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 1, 3/2, -2, -3/2, 1]]
       G   = [[1, 0, 0], [-1/3, -1/3, -1/3], [1/3, -1/3, 1/3], [1/15, 2/15, 4/15],
              [-16/15, 8/15, -4/15], [0, 0, 1]]
       A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -1/2, 0], [0, 1, 1, 4, 1/4, 0],
              [0, 1, -1, 8, -1/8, 1]]
   (the usual points 0, 1, -1, 2, -2 put 4 and 5 into B^T and 8 into both ends of A^T's last
   row; with -1/2 instead of -2 the float32 error of a 56 x 56 x 64 -> 64 layer fell from
   8.5e-6 to 2.7e-6 of its largest output),
   the tile is  Y = A^T [ (G g G^T) .* (B^T d B) ] A  summed over input channels, so the 9 m^2
   multiplications of a direct tile become E = (m + 2)^2 (16 or 36: 2.25 or 4 per output
   instead of 9): one (tiles x Cin) @ (Cin x Cout) GEMM for each of the E elements e of the
   transformed tile. conv.pyx drives it:

     U[e][ci][co]  = (G g[ci, co] G^T)[e]          cconv_wino_kernel_*  (once per call)
     V[e][t][ci]   = (B^T d[t, ci] B)[e]           cconv_wino_input_*   (per chunk of tiles)
     M[e]          = V[e] @ U[e]                   cconv_sgemm / cconv_dgemm (E per chunk)
     y[t]          = A^T M[:, t] A (+ bias)        cconv_wino_output_*  (per chunk)

   m is a function of the output's height and width alone (cconv_wino_tile), so every caller
   of one convolution (conv.pyx, the plan, the forward and its gradients) tiles it alike.
   Tiles are numbered over the whole batch, t = (n * TH + th) * TW + tw, TH = ceil(OH / m),
   TW = ceil(OW / m); tile t reads input rows m th - pt .. m th - pt + m + 1 (zero outside)
   and columns likewise, and writes the outputs of its m x m block that exist (partial tiles
   at the bottom/right edge compute into a trash row). pt and pl may be negative or larger
   than 2.

   The transforms of tiles are additions, subtractions and products by powers of two (3/2 t
   is computed as t + t / 2), so a fused multiply-add the compiler may form rounds exactly as
   the separate operations would; they are vectorised over channels (NHWC keeps them
   contiguous), compiled for AVX-512, AVX2 and baseline and picked at run time like direct.h.
   The order of every sum is fixed by the code, so results depend on the inputs and ISA path
   only. F(4x4) rounds more than F(2x2): in float32, with unit-scale inputs and He-scaled
   kernels, its largest error is 2.3e-6, 2.7e-6 and 5.5e-6 of the largest output for
   15 x 15 x 32 -> 64, 56 x 56 x 64 -> 64 and 14 x 14 x 256 -> 256 (F(2x2): 2.6e-7, 3.7e-7,
   7.9e-7; the direct sum about 2.5e-7), inside the float32 tolerance of the tests (1e-5);
   float64 stays near 1e-14. Its input transform adds up to 7 inputs' worth per axis (49 per
   tile, F(2x2) 4), so float32 inputs above about 7e36 can overflow where the direct sum
   would not. */
#ifndef CCONV_WINOGRAD_H
#define CCONV_WINOGRAD_H

#include <stdint.h>
#include <string.h>
#include "gemm.h"

/* The tile size m (2 or 4) of a Winograd convolution whose output is oh x ow: the one with
   fewer products per channel pair, ceil(oh / m) ceil(ow / m) (m + 2)^2, F(2x2) on a tie (its
   transforms are cheaper and round less). 13 x 13: 16 tiles of 36 (576) against 49 of 16
   (784); 6 x 6: 144 both ways, F(2x2); 2 x 2: F(2x2). The one rule for every caller. */
static inline int cconv_wino_tile(int64_t oh, int64_t ow)
{
    int64_t c2 = ((oh + 1) / 2) * ((ow + 1) / 2) * 16, c4 = ((oh + 3) / 4) * ((ow + 3) / 4) * 36;
    return c4 < c2 ? 4 : 2;
}

/* Elements of one transformed tile, (m + 2)^2. */
static inline int64_t cconv_wino_elems(int m) { return (int64_t)(m + 2) * (m + 2); }

/* Elements from one plane of a chunk's transformed tiles (V, M, dM) to the next, for planes
   of n elements of elem_bytes: n rounded up to whole 64-byte lines, an odd number of them.
   Planes a multiple of 4 KiB apart (48 tiles x 64 channels x 4 bytes) all map to one set of
   the L1 cache, and the 36 loads of one F(4x4) output step then came from L2; an odd number
   of lines puts up to 64 planes in different sets. Layout only: no result changes. */
static inline int64_t cconv_wino_plane(int64_t n, int64_t elem_bytes)
{
    const int64_t line = 64 / elem_bytes, lines = (n + line - 1) / line;
    return (lines | 1) * line;
}

/* The 1-D transforms of the kernel and of its gradient, in double, for lanes 0 .. 15 of x
   (each x[i][l], y[i][l] one row of 16 (c, k) pairs): G x (3 -> m + 2) and G^T x (m + 2 -> 3).
   F(4x4)'s thirds and fifteenths are divisions (never a product that a compiler could fuse
   with an add, so that conv.pyx and the plan, compiled apart, round alike). */
static inline void cconv__wino_g16(int m, double (*x)[16], double (*y)[16], int xs, int ys)
{
    int l;
    if (m == 2) {
        for (l = 0; l < 16; l++) {
            const double x0 = x[0][l], x1 = x[xs][l], x2 = x[2 * xs][l];
            y[0][l] = x0;
            y[ys][l] = 0.5 * (x0 + x1 + x2);
            y[2 * ys][l] = 0.5 * (x0 - x1 + x2);
            y[3 * ys][l] = x2;
        }
        return;
    }
    for (l = 0; l < 16; l++) {
        const double x0 = x[0][l], x1 = x[xs][l], x2 = x[2 * xs][l];
        y[0][l] = x0;
        y[ys][l] = -(x0 + x1 + x2) / 3;
        y[2 * ys][l] = ((x0 - x1) + x2) / 3;
        y[3 * ys][l] = ((x0 + x1 * 2) + x2 * 4) / 15;
        y[4 * ys][l] = -(((x0 * 4 - x1 * 2) + x2) * 4) / 15;
        y[5 * ys][l] = x2;
    }
}
static inline void cconv__wino_gt16(int m, double (*x)[16], double (*y)[16], int xs, int ys)
{
    int l;
    if (m == 2) {
        for (l = 0; l < 16; l++) {
            const double x0 = x[0][l], x1 = x[xs][l], x2 = x[2 * xs][l], x3 = x[3 * xs][l];
            y[0][l] = x0 + 0.5 * (x1 + x2);
            y[ys][l] = 0.5 * (x1 - x2);
            y[2 * ys][l] = 0.5 * (x1 + x2) + x3;
        }
        return;
    }
    for (l = 0; l < 16; l++) {
        const double x0 = x[0][l], x1 = x[xs][l], x2 = x[2 * xs][l], x3 = x[3 * xs][l];
        const double x4 = x[4 * xs][l], x5 = x[5 * xs][l];
        y[0][l] = x0 + ((x2 - x1) / 3 + (x3 - x4 * 16) / 15);
        y[ys][l] = (x3 * 2 + x4 * 8) / 15 - (x1 + x2) / 3;
        y[2 * ys][l] = ((x2 - x1) / 3 + ((x3 - x4) * 4) / 15) + x5;
    }
}

/* Transformed kernel for the "effective" kernel g[kh][kw][ci][co] (3, 3, Cin, Cout) read from
   w (3, 3, C, CO): flip == 0: g = w (Cin = C, Cout = CO), the forward convolution;
   flip == 1: g[kh][kw][ci][co] = w[2 - kh][2 - kw][co][ci] (Cin = CO, Cout = C), the input
   gradient. U is (E, Cin, Cout), E = (m + 2)^2. Computed in double, then rounded once. */
#define CCONV_WINO_KERNEL_DEFINE(SUF, T, ATTR, VB)                                             \
ATTR static void cconv_wino_kernel_##SUF(int m, const T *CCONV__RESTRICT w, int64_t C,         \
                                         int64_t CO, int flip, T *CCONV__RESTRICT U)           \
{                                                                                              \
    /* By tiles of 16 x 16 (c, k) channel pairs, k along w's contiguous CO axis: the tile's E  \
       transformed elements go to a local block first, then to U, where element (c, k) of U[e] \
       is at c * CO + k (flip == 0) or k * C + c (flip == 1). Reading and writing U[e] in      \
       place would touch E + 9 streams whose strides are multiples of 4 KiB. The transforms    \
       run on the 16 k of one c at once (lanes). */                                            \
    const int64_t plane = C * CO, E = cconv_wino_elems(m);                                     \
    const int n2 = m + 2;                                                                      \
    int64_t c0, k0, cc, kk;                                                                    \
    int i, j, e;                                                                               \
    for (c0 = 0; c0 < C; c0 += 16)                                                             \
        for (k0 = 0; k0 < CO; k0 += 16) {                                                      \
            const int64_t nc = C - c0 < 16 ? C - c0 : 16, nk = CO - k0 < 16 ? CO - k0 : 16;    \
            T ub[36][16][16];                                        /* [e][c][k] */           \
            for (cc = 0; cc < nc; cc++) {                                                      \
                double g[9][16], a[18][16], u[36][16];                /* [row][lane] */        \
                for (i = 0; i < 3; i++)                                                        \
                    for (j = 0; j < 3; j++) {                                                  \
                        const T *wt = w + ((flip ? (2 - i) * 3 + (2 - j) : i * 3 + j) * C      \
                                           + c0 + cc) * CO + k0;                               \
                        for (kk = 0; kk < 16; kk++)                                            \
                            g[i * 3 + j][kk] = kk < nk ? (double)wt[kk] : 0.0;                 \
                    }                                                                          \
                for (j = 0; j < 3; j++) cconv__wino_g16(m, g + j, a + j, 3, 3);   /* G g */    \
                for (i = 0; i < n2; i++)                                   /* (G g) G^T */     \
                    cconv__wino_g16(m, a + 3 * i, u + n2 * i, 1, 1);                           \
                for (e = 0; e < E; e++)                                                        \
                    for (kk = 0; kk < 16; kk++) ub[e][cc][kk] = (T)u[e][kk];                   \
            }                                                                                  \
            for (e = 0; e < E; e++)                                                            \
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
static void cconv_wino_kernel_f32(int m, const float *w, int64_t C, int64_t CO, int flip,
                                  float *U)
{
    CCONV_ISA_DISPATCH(cconv_wino_kernel, f32, (m, w, C, CO, flip, U));
}
static void cconv_wino_kernel_f64(int m, const double *w, int64_t C, int64_t CO, int flip,
                                  double *U)
{
    CCONV_ISA_DISPATCH(cconv_wino_kernel, f64, (m, w, C, CO, flip, U));
}

/* Kernel gradient from the gradient of the transformed kernel: dk (3, 3, C, CO) = G^T dU G for
   every (c, co), dU (E, C, CO). Computed in double, rounded once. */
#define CCONV_WINO_KERNEL_GRAD_DEFINE(SUF, T, ATTR, VB)                                        \
ATTR static void cconv_wino_kernel_grad_##SUF(int m, const T *CCONV__RESTRICT dU, int64_t C,   \
                                              int64_t CO, T *CCONV__RESTRICT dk)               \
{                                                                                              \
    /* By blocks of 16 (c, co) pairs (lanes), as cconv_wino_kernel_* */                        \
    const int64_t plane = C * CO, E = cconv_wino_elems(m);                                     \
    const int n2 = m + 2;                                                                      \
    int64_t e0, e, n;                                                                          \
    int i;                                                                                     \
    for (e0 = 0; e0 < plane; e0 += 16) {                                                       \
        double u[36][16], a[18][16], k[9][16];                      /* [row][lane] */          \
        T kb[9][16];                                                                           \
        n = plane - e0 < 16 ? plane - e0 : 16;                                                 \
        for (i = 0; i < E; i++)                                                                \
            for (e = 0; e < 16; e++) u[i][e] = e < n ? (double)dU[i * plane + e0 + e] : 0.0;  \
        for (i = 0; i < n2; i++) cconv__wino_gt16(m, u + i, a + i, n2, n2);   /* G^T u */      \
        for (i = 0; i < 3; i++) cconv__wino_gt16(m, a + n2 * i, k + 3 * i, 1, 1);  /* (.) G */ \
        for (i = 0; i < 9; i++)                                                                \
            for (e = 0; e < 16; e++) kb[i][e] = (T)k[i][e];                                    \
        for (i = 0; i < 9; i++) memcpy(dk + i * plane + e0, kb[i], (size_t)n * sizeof(T));     \
    }                                                                                          \
}
CCONV_ISA_DEFINE_ALL(CCONV_WINO_KERNEL_GRAD_DEFINE, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV_WINO_KERNEL_GRAD_DEFINE, f64, double)
static void cconv_wino_kernel_grad_f32(int m, const float *dU, int64_t C, int64_t CO, float *dk)
{
    CCONV_ISA_DISPATCH(cconv_wino_kernel_grad, f32, (m, dU, C, CO, dk));
}
static void cconv_wino_kernel_grad_f64(int m, const double *dU, int64_t C, int64_t CO,
                                       double *dk)
{
    CCONV_ISA_DISPATCH(cconv_wino_kernel_grad, f64, (m, dU, C, CO, dk));
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
ATTR static void cconv_wino2_input_##SUF(const T *in, int64_t IH, int64_t IW, int64_t C,        \
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
ATTR static void cconv_wino2_output_##SUF(const T *M, int64_t ms, int64_t CO, int64_t CN,       \
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
ATTR static void cconv_wino2_dy_##SUF(const T *dy, int64_t OH, int64_t OW, int64_t CO,          \
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

/* F(4x4, 3x3): the 1-D transforms (each applied to the columns, then to the rows of a tile),
   over any type VT with +, - and a product by the scalar type S, for the points 0, 1, -1, 2,
   -1/2 (see the top of this file). Every product is by a power of two, exact (1.5 t is
   t + t / 2), so a contracted multiply-add rounds as the separate operations do. */
/* B^T d (6 -> 6) */
#define CCONV__W4_BT(VT, S, d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5)                   \
    {                                                                                          \
        const VT t13_ = (d1) - (d3), t24_ = (d2) - (d4), e42_ = (d4) - (d2);                   \
        o0 = (((d0) + (d4)) - (S)2 * (d2)) + (t13_ + (S)0.5 * t13_);                           \
        o1 = ((d4) - (d1)) - ((S)2 * (d2) + (S)0.5 * ((d2) + (d3)));                           \
        o2 = ((d4) + (d1)) + ((S)0.5 * ((d2) - (d3)) - (S)2 * (d3));                           \
        o3 = e42_ - (S)0.5 * t13_;                                                             \
        o4 = e42_ + (S)2 * t13_;                                                               \
        o5 = (((d5) + (d1)) - (S)2 * (d3)) + (t24_ + (S)0.5 * t24_);                           \
    }
/* A^T m (6 -> 4) */
#define CCONV__W4_AT(VT, S, m0, m1, m2, m3, m4, m5, o0, o1, o2, o3)                           \
    {                                                                                          \
        const VT s12_ = (m1) + (m2), d12_ = (m1) - (m2);                                       \
        o0 = ((m0) + s12_) + ((m3) + (m4));                                                    \
        o1 = d12_ + ((S)2 * (m3) - (S)0.5 * (m4));                                             \
        o2 = s12_ + ((S)4 * (m3) + (S)0.25 * (m4));                                            \
        o3 = (d12_ + ((S)8 * (m3) - (S)0.125 * (m4))) + (m5);                                  \
    }
/* A y (4 -> 6): the adjoint of A^T, for the gradient of the E products */
#define CCONV__W4_A(VT, S, y0, y1, y2, y3, o0, o1, o2, o3, o4, o5)                            \
    {                                                                                          \
        const VT ev_ = (y0) + (y2), od_ = (y1) + (y3);                                         \
        o0 = (y0);                                                                             \
        o1 = ev_ + od_;                                                                        \
        o2 = ev_ - od_;                                                                        \
        o3 = ((y0) + (S)4 * (y2)) + ((S)2 * (y1) + (S)8 * (y3));                               \
        o4 = ((y0) + (S)0.25 * (y2)) - ((S)0.5 * (y1) + (S)0.125 * (y3));                      \
        o5 = (y3);                                                                             \
    }
/* One channel step of each F(4x4) transform: p[6][6] the input cells, v[36] the planes. */
#define CCONV__W4_IN_STEP(VT, LD, ST)                                                          \
    {                                                                                          \
        VT d_[6][6], r_[6][6], o_[6];                                                          \
        int i_, j_;                                                                            \
        CCONV__UNROLL for (i_ = 0; i_ < 6; i_++)                                               \
            CCONV__UNROLL for (j_ = 0; j_ < 6; j_++) d_[i_][j_] = LD(p[i_][j_] + c);           \
        CCONV__UNROLL for (j_ = 0; j_ < 6; j_++)                                               \
            CCONV__W4_BT(VT, wt_, d_[0][j_], d_[1][j_], d_[2][j_], d_[3][j_], d_[4][j_],       \
                         d_[5][j_], r_[0][j_], r_[1][j_], r_[2][j_], r_[3][j_], r_[4][j_],     \
                         r_[5][j_])                                                            \
        CCONV__UNROLL for (i_ = 0; i_ < 6; i_++) {                                             \
            CCONV__W4_BT(VT, wt_, r_[i_][0], r_[i_][1], r_[i_][2], r_[i_][3], r_[i_][4],       \
                         r_[i_][5], o_[0], o_[1], o_[2], o_[3], o_[4], o_[5])                  \
            CCONV__UNROLL for (j_ = 0; j_ < 6; j_++) ST(v[i_ * 6 + j_] + c, o_[j_]);           \
        }                                                                                      \
    }
#define CCONV__W4_OUT_STEP(VT, LD, ST)                                                         \
    {                                                                                          \
        VT m_[6][6], s_[4][6], o_[4];                                                          \
        const VT bv_ = LD(b + c);                                                              \
        int i_, j_;                                                                            \
        CCONV__UNROLL for (i_ = 0; i_ < 6; i_++)                                               \
            CCONV__UNROLL for (j_ = 0; j_ < 6; j_++) m_[i_][j_] = LD(mp[i_ * 6 + j_] + c);     \
        CCONV__UNROLL for (j_ = 0; j_ < 6; j_++)                                               \
            CCONV__W4_AT(VT, wt_, m_[0][j_], m_[1][j_], m_[2][j_], m_[3][j_], m_[4][j_],       \
                         m_[5][j_], s_[0][j_], s_[1][j_], s_[2][j_], s_[3][j_])                \
        CCONV__UNROLL for (i_ = 0; i_ < 4; i_++) {                                             \
            CCONV__W4_AT(VT, wt_, s_[i_][0], s_[i_][1], s_[i_][2], s_[i_][3], s_[i_][4],       \
                         s_[i_][5], o_[0], o_[1], o_[2], o_[3])                                \
            CCONV__UNROLL for (j_ = 0; j_ < 4; j_++) ST(yp[i_][j_] + c, o_[j_] + bv_);         \
        }                                                                                      \
    }
#define CCONV__W4_DY_STEP(VT, LD, ST)                                                          \
    {                                                                                          \
        VT q_[4][4], z_[6][4], o_[6];                                                          \
        int i_, j_;                                                                            \
        CCONV__UNROLL for (i_ = 0; i_ < 4; i_++)                                               \
            CCONV__UNROLL for (j_ = 0; j_ < 4; j_++) q_[i_][j_] = LD(qp[i_][j_] + c);          \
        CCONV__UNROLL for (j_ = 0; j_ < 4; j_++)                                               \
            CCONV__W4_A(VT, wt_, q_[0][j_], q_[1][j_], q_[2][j_], q_[3][j_], z_[0][j_],        \
                        z_[1][j_], z_[2][j_], z_[3][j_], z_[4][j_], z_[5][j_])                 \
        CCONV__UNROLL for (i_ = 0; i_ < 6; i_++) {                                             \
            CCONV__W4_A(VT, wt_, z_[i_][0], z_[i_][1], z_[i_][2], z_[i_][3], o_[0], o_[1],     \
                        o_[2], o_[3], o_[4], o_[5])                                            \
            CCONV__UNROLL for (j_ = 0; j_ < 6; j_++) ST(v[i_ * 6 + j_] + c, o_[j_]);           \
            if (i_ == 1) ST(acc + c, LD(acc + c) + o_[1]);     /* the tile's sum, dM[7] */     \
        }                                                                                      \
    }

/* P[4][4] (of type Q *): the 4x4 block of tile (n, th, tw) in A (N, OH, OW, CO), cells
   outside A at F; and P36[36]: the tile's element in each of the 36 planes of X, S apart. */
#define CCONV__W4_BLOCK(Q, P, A, F, QX, P36, X, S)                                             \
    Q *P[4][4];                                                                                \
    QX *P36[36];                                                                               \
    for (i = 0; i < 4; i++)                                                                    \
        for (j = 0; j < 4; j++) {                                                              \
            const int64_t oh = 4 * th + i, ow = 4 * tw + j;                                    \
            P[i][j] = oh < OH && ow < OW ? (A) + ((n * OH + oh) * OW + ow) * CO : (F);         \
        }                                                                                      \
    for (i = 0; i < 36; i++) P36[i] = (X) + i * (S) + t * CO;

/* The F(4x4) tile transforms, with the same arguments and layouts as the F(2x2) ones above
   (E = 36 planes; a partial tile's cells outside out all write the one trash row). */
#define CCONV_WINO4_DEFINE(SUF, T, ATTR, VB)                                                   \
ATTR static void cconv_wino4_input_##SUF(const T *in, int64_t IH, int64_t IW, int64_t C,       \
                                         int64_t TH, int64_t TW, int64_t pt, int64_t pl,       \
                                         int64_t t0, int64_t nt, T *V, int64_t vs,             \
                                         const T *zeros)                                       \
{                                                                                              \
    typedef T wt_;                                                                             \
    int64_t t, n, th, tw, c;                                                                   \
    int i, j;                                                                                  \
    CCONV__WINO_FIRST_TILE(t0)                                                                 \
    for (t = 0; t < nt; t++) {                                                                 \
        const T *p[6][6];                                                                      \
        T *v[36];                                                                              \
        const int64_t ih0 = 4 * th - pt, iw0 = 4 * tw - pl;                                    \
        for (i = 0; i < 6; i++)                                                                \
            for (j = 0; j < 6; j++) {                                                          \
                const int64_t ih = ih0 + i, iw = iw0 + j;                                      \
                p[i][j] = (ih >= 0 && ih < IH && iw >= 0 && iw < IW)                           \
                              ? in + ((n * IH + ih) * IW + iw) * C : zeros;                    \
            }                                                                                  \
        for (i = 0; i < 36; i++) v[i] = V + i * vs + t * C;                                    \
        c = 0;                                                                                 \
        CCONV__WINO_VLOOP(VB, T, C, CCONV__W4_IN_STEP)                                         \
        for (; c < C; c++) { CCONV__W4_IN_STEP(T, CCONV__WINO_SLD, CCONV__WINO_SST) }          \
        CCONV__WINO_NEXT_TILE                                                                  \
    }                                                                                          \
}                                                                                              \
                                                                                               \
ATTR static void cconv_wino4_output_##SUF(const T *M, int64_t ms, int64_t CO, int64_t CN,      \
                                          const T *bias, T *out, int64_t OH, int64_t OW,       \
                                          int64_t TH, int64_t TW, int64_t t0, int64_t nt,      \
                                          T *trash)                                            \
{                                                                                              \
    typedef T wt_;                                                                             \
    int64_t t, n, th, tw, c;                                                                   \
    int i, j;                                                                                  \
    const T *b = bias;                                                                         \
    CCONV__WINO_FIRST_TILE(t0)                                                                 \
    for (t = 0; t < nt; t++) {                                                                 \
        CCONV__W4_BLOCK(T, yp, out, trash, const T, mp, M, ms)                                 \
        c = 0;                                                                                 \
        CCONV__WINO_VLOOP(VB, T, CN, CCONV__W4_OUT_STEP)                                       \
        for (; c < CN; c++) { CCONV__W4_OUT_STEP(T, CCONV__WINO_SLD, CCONV__WINO_SST) }        \
        CCONV__WINO_NEXT_TILE                                                                  \
    }                                                                                          \
}                                                                                              \
                                                                                               \
ATTR static void cconv_wino4_dy_##SUF(const T *dy, int64_t OH, int64_t OW, int64_t CO,         \
                                      int64_t TH, int64_t TW, int64_t t0, int64_t nt, T *dM,   \
                                      int64_t ms, const T *zeros, T *CCONV__RESTRICT acc)      \
{                                                                                              \
    typedef T wt_;                                                                             \
    int64_t t, n, th, tw, c;                                                                   \
    int i, j;                                                                                  \
    CCONV__WINO_FIRST_TILE(t0)                                                                 \
    for (t = 0; t < nt; t++) {                                                                 \
        CCONV__W4_BLOCK(const T, qp, dy, zeros, T, v, dM, ms)                                  \
        c = 0;                                                                                 \
        CCONV__WINO_VLOOP(VB, T, CO, CCONV__W4_DY_STEP)                                        \
        for (; c < CO; c++) { CCONV__W4_DY_STEP(T, CCONV__WINO_SLD, CCONV__WINO_SST) }         \
        CCONV__WINO_NEXT_TILE                                                                  \
    }                                                                                          \
}
CCONV_ISA_DEFINE_ALL(CCONV_WINO4_DEFINE, f32, float)
CCONV_ISA_DEFINE_ALL(CCONV_WINO4_DEFINE, f64, double)

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

/* The tile transforms of F(m x m, 3x3), m = 2 or 4 (cconv_wino_tile), at the CPU's ISA level. */
#define CCONV__WINO_API(SUF, T)                                                                \
static void cconv_wino_input_##SUF(int m, const T *in, int64_t IH, int64_t IW, int64_t C,      \
                                   int64_t TH, int64_t TW, int64_t pt, int64_t pl, int64_t t0, \
                                   int64_t nt, T *V, int64_t vs, const T *zeros)               \
{                                                                                              \
    if (m == 4) CCONV_ISA_DISPATCH(cconv_wino4_input, SUF, (in, IH, IW, C, TH, TW, pt, pl, t0, nt, V, vs, zeros)); \
    else CCONV_ISA_DISPATCH(cconv_wino2_input, SUF, (in, IH, IW, C, TH, TW, pt, pl, t0, nt, V, vs, zeros)); \
}                                                                                              \
static void cconv_wino_output_##SUF(int m, const T *M, int64_t ms, int64_t CO, int64_t CN,     \
                                    const T *bias, T *out, int64_t OH, int64_t OW, int64_t TH, \
                                    int64_t TW, int64_t t0, int64_t nt, T *trash)              \
{                                                                                              \
    if (m == 4) CCONV_ISA_DISPATCH(cconv_wino4_output, SUF, (M, ms, CO, CN, bias, out, OH, OW, TH, TW, t0, nt, trash)); \
    else CCONV_ISA_DISPATCH(cconv_wino2_output, SUF, (M, ms, CO, CN, bias, out, OH, OW, TH, TW, t0, nt, trash)); \
}                                                                                              \
static void cconv_wino_dy_##SUF(int m, const T *dy, int64_t OH, int64_t OW, int64_t CO,        \
                                int64_t TH, int64_t TW, int64_t t0, int64_t nt, T *dM,         \
                                int64_t ms, const T *zeros, T *acc)                            \
{                                                                                              \
    if (m == 4) CCONV_ISA_DISPATCH(cconv_wino4_dy, SUF, (dy, OH, OW, CO, TH, TW, t0, nt, dM, ms, zeros, acc)); \
    else CCONV_ISA_DISPATCH(cconv_wino2_dy, SUF, (dy, OH, OW, CO, TH, TW, t0, nt, dM, ms, zeros, acc)); \
}                                                                                              \
static int cconv_wino_finite_##SUF(const T *p, int64_t n)                                      \
{ int ok; CCONV_ISA_DISPATCH(cconv_wino_finite, SUF, (p, n, &ok)); return ok; }

CCONV__WINO_API(f32, float)
CCONV__WINO_API(f64, double)

#endif
