/* cconv/_ext/gemm.h -- header-only, single-threaded, thread-safe GEMM for the im2col kernels.
 *
 *   Row-major, single-threaded: C[M,N] = alpha * op(A) @ op(B) + beta * C.
 *   transa == 0: A is M x K, row stride lda;  transa == 1: A is stored K x M (op(A) = A^T), row stride lda.
 *   transb == 0: B is K x N, row stride ldb;  transb == 1: B is stored N x K, row stride ldb.
 *   beta == 0: C is only written, never read (NaN/garbage in C must not leak). M, N or K may be 0
 *   (K == 0: C = beta*C, or zeros when beta == 0). All sizes and strides are int64_t.
 *
 *   static void cconv_sgemm(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
 *                           const float *A, int64_t lda, const float *B, int64_t ldb,
 *                           float beta, float *C, int64_t ldc);
 *   static void cconv_dgemm(... same with double ...);
 *
 * Design (GotoBLAS/BLIS style, written for this project):
 *   - B is packed, per (column block jc, depth block pc), into zero-padded panels of width NR
 *     (the last panel gets a narrower width: NR, NR/2 or NR/4, so narrow N such as 6 or 16 does
 *     not run a 32-wide micro-kernel mostly on padding).
 *   - A is consumed one MR-row micro-panel at a time, either packed (MR x kc, zero padded, k-major)
 *     or read in place when it is only used for a couple of B panels (packing would then cost
 *     about as much as the arithmetic it feeds).
 *   - The micro-kernel keeps an MR x NR tile of C in vector registers, broadcasts one element of
 *     A per row and does MR x NR/VW fused multiply-adds per k.  Edge tiles use masked C
 *     loads/stores, so there is no scalar tail.
 *   - Depth blocking: K is split into ceil(K/KC) equal blocks; C is updated after each block.
 *     The k order inside a block and the block boundaries depend only on K and the ISA path,
 *     so results are bitwise reproducible (independent of alignment, call history, threads).
 *   - x86-64 with GCC/Clang (not Apple): kernels are compiled for AVX-512 (F+VL), AVX2+FMA and
 *     baseline SSE2 and chosen at run time (isa.h: target attributes, CPU check, CCONV_ISA).
 *     Elsewhere (aarch64, ...) GCC/Clang generic vectors; MSVC and other compilers: plain C.
 *   - Memory: one thread-local, 64-byte aligned scratch block (CCONV_GEMM_SCRATCH_BYTES, 576 KiB)
 *     allocated on a thread's first call and reused; on POSIX it is freed when the thread exits.
 *
 * Floating point: no special cases besides beta == 0 (C not read) and K == 0; alpha == 0 still
 * multiplies, so NaN/Inf in A or B propagate as IEEE arithmetic says.
 *
 * Test hooks (not for production use): define CCONV_GEMM_TESTING to get
 * cconv_gemm_force_isa(level) (-1 = automatic, 0 = generic, 1 = AVX2, 2 = AVX-512) and
 * cconv_gemm_isa_name() (isa.h's names). The forced level is a plain global of the including
 * translation unit.
 */
#ifndef CCONV_GEMM_H
#define CCONV_GEMM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isa.h"

#if defined(__unix__) || defined(__APPLE__)
#define CCONV__PTHREAD 1
#include <pthread.h>
#endif

#ifndef CCONV_GEMM_BBUF_BYTES
#define CCONV_GEMM_BBUF_BYTES (512 * 1024) /* packed B block (kc x nc), meant to live in L2 */
#endif
#define CCONV__ABUF_BYTES (64 * 1024)       /* one packed A micro-panel (MR x kc), L1 */
#define CCONV_GEMM_SCRATCH_BYTES (CCONV_GEMM_BBUF_BYTES + CCONV__ABUF_BYTES)
/* Depth block: K is split into ceil(K / CCONV_GEMM_KC) equal blocks (changes rounding: keep fixed). */
#ifndef CCONV_GEMM_KC
#define CCONV_GEMM_KC 256
#endif
/* A is read in place (not packed) when the B block has at most this many panels. */
#ifndef CCONV_GEMM_DIRECT_PANELS
#define CCONV_GEMM_DIRECT_PANELS 16
#endif

/* ------------------------------------------------------------------------------------------ */
/* Vector "ops" families. Each family P defines P_VT (vector type), P_VW (lanes), P_MT (mask  */
/* type), ZERO, LOAD, STORE, SET1, FMA(a,b,c)=a*b+c, MUL, MASK(n) (first n lanes),             */
/* MLOAD (masked lanes read as 0, no fault), MSTORE.  Loads/stores are unaligned.              */

#ifdef CCONV__X86
/* AVX-512 F, 16 x float */
#define CCONV_S16_VT __m512
#define CCONV_S16_VW 16
#define CCONV_S16_MT __mmask16
#define CCONV_S16_ZERO() _mm512_setzero_ps()
#define CCONV_S16_LOAD(p) _mm512_loadu_ps(p)
#define CCONV_S16_STORE(p, v) _mm512_storeu_ps((p), (v))
#define CCONV_S16_SET1(x) _mm512_set1_ps(x)
#define CCONV_S16_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define CCONV_S16_MUL(a, b) _mm512_mul_ps((a), (b))
#define CCONV_S16_MASK(n) ((__mmask16)((1u << (n)) - 1u))
#define CCONV_S16_MLOAD(p, m) _mm512_maskz_loadu_ps((m), (p))
#define CCONV_S16_MSTORE(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
/* AVX-512 VL, 8 x float (narrow edge panels) */
#define CCONV_S8V_VT __m256
#define CCONV_S8V_VW 8
#define CCONV_S8V_MT __mmask8
#define CCONV_S8V_ZERO() _mm256_setzero_ps()
#define CCONV_S8V_LOAD(p) _mm256_loadu_ps(p)
#define CCONV_S8V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define CCONV_S8V_SET1(x) _mm256_set1_ps(x)
#define CCONV_S8V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define CCONV_S8V_MUL(a, b) _mm256_mul_ps((a), (b))
#define CCONV_S8V_MASK(n) ((__mmask8)((1u << (n)) - 1u))
#define CCONV_S8V_MLOAD(p, m) _mm256_maskz_loadu_ps((m), (p))
#define CCONV_S8V_MSTORE(p, m, v) _mm256_mask_storeu_ps((p), (m), (v))
/* AVX-512 F, 8 x double */
#define CCONV_D8_VT __m512d
#define CCONV_D8_VW 8
#define CCONV_D8_MT __mmask8
#define CCONV_D8_ZERO() _mm512_setzero_pd()
#define CCONV_D8_LOAD(p) _mm512_loadu_pd(p)
#define CCONV_D8_STORE(p, v) _mm512_storeu_pd((p), (v))
#define CCONV_D8_SET1(x) _mm512_set1_pd(x)
#define CCONV_D8_FMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define CCONV_D8_MUL(a, b) _mm512_mul_pd((a), (b))
#define CCONV_D8_MASK(n) ((__mmask8)((1u << (n)) - 1u))
#define CCONV_D8_MLOAD(p, m) _mm512_maskz_loadu_pd((m), (p))
#define CCONV_D8_MSTORE(p, m, v) _mm512_mask_storeu_pd((p), (m), (v))
/* AVX-512 VL, 4 x double */
#define CCONV_D4V_VT __m256d
#define CCONV_D4V_VW 4
#define CCONV_D4V_MT __mmask8
#define CCONV_D4V_ZERO() _mm256_setzero_pd()
#define CCONV_D4V_LOAD(p) _mm256_loadu_pd(p)
#define CCONV_D4V_STORE(p, v) _mm256_storeu_pd((p), (v))
#define CCONV_D4V_SET1(x) _mm256_set1_pd(x)
#define CCONV_D4V_FMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define CCONV_D4V_MUL(a, b) _mm256_mul_pd((a), (b))
#define CCONV_D4V_MASK(n) ((__mmask8)((1u << (n)) - 1u))
#define CCONV_D4V_MLOAD(p, m) _mm256_maskz_loadu_pd((m), (p))
#define CCONV_D4V_MSTORE(p, m, v) _mm256_mask_storeu_pd((p), (m), (v))
/* AVX2 + FMA, 8 x float */
#define CCONV_S8_VT __m256
#define CCONV_S8_VW 8
#define CCONV_S8_MT __m256i
#define CCONV_S8_ZERO() _mm256_setzero_ps()
#define CCONV_S8_LOAD(p) _mm256_loadu_ps(p)
#define CCONV_S8_STORE(p, v) _mm256_storeu_ps((p), (v))
#define CCONV_S8_SET1(x) _mm256_set1_ps(x)
#define CCONV_S8_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define CCONV_S8_MUL(a, b) _mm256_mul_ps((a), (b))
#define CCONV_S8_MASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define CCONV_S8_MLOAD(p, m) _mm256_maskload_ps((p), (m))
#define CCONV_S8_MSTORE(p, m, v) _mm256_maskstore_ps((p), (m), (v))
/* AVX2 + FMA, 4 x double */
#define CCONV_D4_VT __m256d
#define CCONV_D4_VW 4
#define CCONV_D4_MT __m256i
#define CCONV_D4_ZERO() _mm256_setzero_pd()
#define CCONV_D4_LOAD(p) _mm256_loadu_pd(p)
#define CCONV_D4_STORE(p, v) _mm256_storeu_pd((p), (v))
#define CCONV_D4_SET1(x) _mm256_set1_pd(x)
#define CCONV_D4_FMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define CCONV_D4_MUL(a, b) _mm256_mul_pd((a), (b))
#define CCONV_D4_MASK(n) _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3))
#define CCONV_D4_MLOAD(p, m) _mm256_maskload_pd((p), (m))
#define CCONV_D4_MSTORE(p, m, v) _mm256_maskstore_pd((p), (m), (v))
#endif /* CCONV__X86 */

#if defined(CCONV__GNUVEC)
/* Generic 16-byte vectors (SSE2 on x86-64, NEON on aarch64, scalarised elsewhere). */
typedef float cconv__vsg __attribute__((vector_size(16)));
typedef double cconv__vdg __attribute__((vector_size(16)));
static inline cconv__vsg cconv__sg_set1(float x) { cconv__vsg v = {x, x, x, x}; return v; }
static inline cconv__vdg cconv__dg_set1(double x) { cconv__vdg v = {x, x}; return v; }
#define CCONV__GENVEC(NAME, T, VT)                                                                  \
    static inline VT NAME##_load(const T *p) { VT v; memcpy(&v, p, sizeof v); return v; }           \
    static inline void NAME##_store(T *p, VT v) { memcpy(p, &v, sizeof v); }                        \
    static inline VT NAME##_mload(const T *p, int n) {                                              \
        VT v = NAME##_set1((T)0); int j; for (j = 0; j < n; j++) v[j] = p[j]; return v; }           \
    static inline void NAME##_mstore(T *p, int n, VT v) { int j; for (j = 0; j < n; j++) p[j] = v[j]; }
CCONV__GENVEC(cconv__sg, float, cconv__vsg)
CCONV__GENVEC(cconv__dg, double, cconv__vdg)
#define CCONV_SG_VT cconv__vsg
#define CCONV_SG_VW 4
#define CCONV_DG_VT cconv__vdg
#define CCONV_DG_VW 2
#define CCONV_SG_MT int
#define CCONV_SG_ZERO() cconv__sg_set1(0.0f)
#define CCONV_SG_LOAD(p) cconv__sg_load(p)
#define CCONV_SG_STORE(p, v) cconv__sg_store((p), (v))
#define CCONV_SG_SET1(x) cconv__sg_set1(x)
#define CCONV_SG_FMA(a, b, c) ((a) * (b) + (c))
#define CCONV_SG_MUL(a, b) ((a) * (b))
#define CCONV_SG_MASK(n) (n)
#define CCONV_SG_MLOAD(p, m) cconv__sg_mload((p), (m))
#define CCONV_SG_MSTORE(p, m, v) cconv__sg_mstore((p), (m), (v))
#define CCONV_DG_MT int
#define CCONV_DG_ZERO() cconv__dg_set1(0.0)
#define CCONV_DG_LOAD(p) cconv__dg_load(p)
#define CCONV_DG_STORE(p, v) cconv__dg_store((p), (v))
#define CCONV_DG_SET1(x) cconv__dg_set1(x)
#define CCONV_DG_FMA(a, b, c) ((a) * (b) + (c))
#define CCONV_DG_MUL(a, b) ((a) * (b))
#define CCONV_DG_MASK(n) (n)
#define CCONV_DG_MLOAD(p, m) cconv__dg_mload((p), (m))
#define CCONV_DG_MSTORE(p, m, v) cconv__dg_mstore((p), (m), (v))
#else
/* Plain C: "vectors" of one lane. */
#define CCONV_SG_VT float
#define CCONV_SG_VW 1
#define CCONV_DG_VT double
#define CCONV_DG_VW 1
#define CCONV_SG_MT int
#define CCONV_SG_ZERO() 0.0f
#define CCONV_SG_LOAD(p) (*(p))
#define CCONV_SG_STORE(p, v) (*(p) = (v))
#define CCONV_SG_SET1(x) (x)
#define CCONV_SG_FMA(a, b, c) ((a) * (b) + (c))
#define CCONV_SG_MUL(a, b) ((a) * (b))
#define CCONV_SG_MASK(n) (n)
#define CCONV_SG_MLOAD(p, m) ((void)(m), *(p))
#define CCONV_SG_MSTORE(p, m, v) ((void)(m), *(p) = (v))
#define CCONV_DG_MT int
#define CCONV_DG_ZERO() 0.0
#define CCONV_DG_LOAD(p) (*(p))
#define CCONV_DG_STORE(p, v) (*(p) = (v))
#define CCONV_DG_SET1(x) (x)
#define CCONV_DG_FMA(a, b, c) ((a) * (b) + (c))
#define CCONV_DG_MUL(a, b) ((a) * (b))
#define CCONV_DG_MASK(n) (n)
#define CCONV_DG_MLOAD(p, m) ((void)(m), *(p))
#define CCONV_DG_MSTORE(p, m, v) ((void)(m), *(p) = (v))
#endif

/* ------------------------------------------------------------------------------------------ */
/* Micro-kernel: C[0:m, 0:n] = alpha * Apanel(MR x kc) @ Bpanel(kc x NV*VW) + beta * C.        */
/* AROW == 0: A element (i, k) is a[k*sa + i] (packed panel: sa = MR; or op(A) = A^T in place). */
/* AROW == 1: A element (i, k) is a[i*sa + k] (row-major A read in place, sa = lda).            */
/* b is a packed panel: element (k, j) is b[k*NV*VW + j].  m <= MR, 1 <= n <= NV*VW.           */
/* beta == 0: C is not read.                                                                    */
#define CCONV__KERNEL(NAME, ATTR, T, P, MR, NV, AROW)                                              \
    ATTR static void NAME(int64_t kc, const T *CCONV__RESTRICT a, int64_t sa,                      \
                          const T *CCONV__RESTRICT b, T *CCONV__RESTRICT c, int64_t ldc, int m,      \
                          int n, T alpha, T beta)                                                  \
    {                                                                                              \
        CCONV_##P##_VT acc[MR][NV];                                                                \
        int64_t k;                                                                                 \
        int i, v;                                                                                  \
        CCONV__UNROLL for (i = 0; i < MR; i++) {                                                   \
            CCONV__UNROLL for (v = 0; v < NV; v++) { acc[i][v] = CCONV_##P##_ZERO(); }             \
        }                                                                                          \
        for (k = 0; k < kc; k++) {                                                                 \
            CCONV_##P##_VT bv[NV];                                                                 \
            CCONV__UNROLL for (v = 0; v < NV; v++) { bv[v] = CCONV_##P##_LOAD(b + v * CCONV_##P##_VW); } \
            CCONV__UNROLL for (i = 0; i < MR; i++) {                                               \
                CCONV_##P##_VT av = CCONV_##P##_SET1(AROW ? a[i * sa + k] : a[k * sa + i]);        \
                CCONV__UNROLL for (v = 0; v < NV; v++) {                                           \
                    acc[i][v] = CCONV_##P##_FMA(av, bv[v], acc[i][v]);                             \
                }                                                                                  \
            }                                                                                      \
            b += NV * CCONV_##P##_VW;                                                              \
        }                                                                                          \
        {                                                                                          \
            const CCONV_##P##_VT va = CCONV_##P##_SET1(alpha), vb = CCONV_##P##_SET1(beta);        \
            const int rb = beta != (T)0;                                                           \
            CCONV__UNROLL for (i = 0; i < MR; i++) {                                               \
                if (i < m) {                                                                       \
                    T *cr = c + (int64_t)i * ldc;                                                  \
                    CCONV__UNROLL for (v = 0; v < NV; v++) {                                       \
                        const int rem = n - v * CCONV_##P##_VW;                                    \
                        CCONV_##P##_VT t = CCONV_##P##_MUL(va, acc[i][v]);                         \
                        T *cp = cr + v * CCONV_##P##_VW;                                           \
                        if (rem >= CCONV_##P##_VW) {                                               \
                            if (rb) t = CCONV_##P##_FMA(vb, CCONV_##P##_LOAD(cp), t);              \
                            CCONV_##P##_STORE(cp, t);                                              \
                        } else if (rem > 0) {                                                      \
                            const CCONV_##P##_MT mk = CCONV_##P##_MASK(rem);                       \
                            if (rb) t = CCONV_##P##_FMA(vb, CCONV_##P##_MLOAD(cp, mk), t);         \
                            CCONV_##P##_MSTORE(cp, mk, t);                                         \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

/* Kernel table of one ISA path: widths w[0] > w[1] >= w[2]; kp = A via (k*sa + i), kr = row-major A. */
#define CCONV__DEF_TYPES(T, S)                                                                     \
    typedef void (*cconv__kern_##S)(int64_t, const T *, int64_t, const T *, T *, int64_t, int, int, \
                                    T, T);                                                         \
    typedef struct {                                                                               \
        int mr, kc, w[3];                                                                          \
        cconv__kern_##S kp[3], kr[3];                                                              \
    } cconv__cfg_##S;
CCONV__DEF_TYPES(float, s)
CCONV__DEF_TYPES(double, d)

/* One ISA path = 6 kernels (3 widths x 2 A layouts) + its config. */
#define CCONV__PATH(NAME, ATTR, T, S, MR, KC, P0, NV0, P1, NV1, P2, NV2)                           \
    CCONV__KERNEL(NAME##_p0, ATTR, T, P0, MR, NV0, 0)                                              \
    CCONV__KERNEL(NAME##_r0, ATTR, T, P0, MR, NV0, 1)                                              \
    CCONV__KERNEL(NAME##_p1, ATTR, T, P1, MR, NV1, 0)                                              \
    CCONV__KERNEL(NAME##_r1, ATTR, T, P1, MR, NV1, 1)                                              \
    CCONV__KERNEL(NAME##_p2, ATTR, T, P2, MR, NV2, 0)                                              \
    CCONV__KERNEL(NAME##_r2, ATTR, T, P2, MR, NV2, 1)                                              \
    static const cconv__cfg_##S NAME##_cfg = {                                                     \
        MR, KC, {NV0 * CCONV_##P0##_VW, NV1 * CCONV_##P1##_VW, NV2 * CCONV_##P2##_VW},             \
        {NAME##_p0, NAME##_p1, NAME##_p2}, {NAME##_r0, NAME##_r1, NAME##_r2}};

#ifdef CCONV__X86
/* AVX-512: 12 x 32 float tile = 24 zmm accumulators; 12 x 16 double. */
CCONV__PATH(cconv__s512, CCONV__ATTR_AVX512, float, s, 12, CCONV_GEMM_KC, S16, 2, S16, 1, S8V, 1)
CCONV__PATH(cconv__d512, CCONV__ATTR_AVX512, double, d, 12, CCONV_GEMM_KC, D8, 2, D8, 1, D4V, 1)
/* AVX2: 6 x 16 float tile = 12 ymm accumulators; 6 x 8 double. */
CCONV__PATH(cconv__s256, CCONV__ATTR_AVX2, float, s, 6, CCONV_GEMM_KC, S8, 2, S8, 1, S8, 1)
CCONV__PATH(cconv__d256, CCONV__ATTR_AVX2, double, d, 6, CCONV_GEMM_KC, D4, 2, D4, 1, D4, 1)
#endif
#if defined(CCONV__GNUVEC)
#if defined(__aarch64__) || defined(__powerpc64__)
/* 32 vector registers (NEON / VSX): 8 x 2 tile. */
CCONV__PATH(cconv__sgen, , float, s, 8, CCONV_GEMM_KC, SG, 2, SG, 1, SG, 1)
CCONV__PATH(cconv__dgen, , double, d, 8, CCONV_GEMM_KC, DG, 2, DG, 1, DG, 1)
#else
/* 16 vector registers and no FMA (x86-64 baseline SSE2): 4 x 2 tile. */
CCONV__PATH(cconv__sgen, , float, s, 4, CCONV_GEMM_KC, SG, 2, SG, 1, SG, 1)
CCONV__PATH(cconv__dgen, , double, d, 4, CCONV_GEMM_KC, DG, 2, DG, 1, DG, 1)
#endif
#else
CCONV__PATH(cconv__sgen, , float, s, 4, CCONV_GEMM_KC, SG, 4, SG, 2, SG, 1)
CCONV__PATH(cconv__dgen, , double, d, 4, CCONV_GEMM_KC, DG, 4, DG, 2, DG, 1)
#endif

/* ------------------------------------------------------------------------------------------ */
/* Blocked driver (plain C; only the kernels are ISA specific). pre: B already packed by           \
   cconv__pack_all (the same blocks in the same order), or NULL to pack each block here. */        \
#define CCONV__DRIVER(T, S)                                                                        \
    /* Pack B[pc:pc+kc, jc:jc+nc] into zero-padded panels, element (k, j) at k*w + j; returns      \
       the elements written. */                                                                    \
    static int64_t cconv__pack_block_##S(const cconv__cfg_##S *cf, int tb, const T *B,             \
                                         int64_t ldb, int64_t pc, int64_t kc, int64_t jc,          \
                                         int64_t nc, T *bp)                                        \
    {                                                                                              \
        const int nr = cf->w[0];                                                                   \
        int64_t jr, k, j, total = 0;                                                               \
        for (jr = 0; jr < nc; jr += nr) {                                                          \
            const int n = (int)(nc - jr < nr ? nc - jr : nr);                                      \
            const int w = n > cf->w[1] ? cf->w[0] : n > cf->w[2] ? cf->w[1] : cf->w[2];            \
            if (bp && !tb) {                                                                       \
                const T *src = B + pc * ldb + jc + jr;                                             \
                for (k = 0; k < kc; k++) {                                                         \
                    memcpy(bp + k * w, src + k * ldb, (size_t)n * sizeof(T));                      \
                    if (w > n) memset(bp + k * w + n, 0, (size_t)(w - n) * sizeof(T));             \
                }                                                                                  \
            } else if (bp) {                                                                       \
                const T *src = B + (jc + jr) * ldb + pc;                                           \
                for (j = 0; j < n; j++)                                                            \
                    for (k = 0; k < kc; k++) bp[k * w + j] = src[j * ldb + k];                     \
                for (j = n; j < w; j++)                                                            \
                    for (k = 0; k < kc; k++) bp[k * w + j] = (T)0;                                 \
            }                                                                                      \
            if (bp) bp += kc * w;                                                                  \
            total += kc * w;                                                                       \
        }                                                                                          \
        return total;                                                                              \
    }                                                                                              \
    /* All of B's blocks as the driver packs them (out NULL: only count the elements). */          \
    static int64_t cconv__pack_all_##S(const cconv__cfg_##S *cf, int tb, int64_t K, int64_t N,     \
                                       const T *B, int64_t ldb, int64_t bcap, T *out)              \
    {                                                                                              \
        const int nr = cf->w[0];                                                                   \
        const int64_t nkb = (K + cf->kc - 1) / cf->kc, kcb = (K + nkb - 1) / nkb;                  \
        int64_t ncmax = bcap / kcb / nr * nr, jc, pc, total = 0;                                   \
        if (ncmax < nr) ncmax = nr;                                                                \
        for (jc = 0; jc < N; jc += ncmax)                                                          \
            for (pc = 0; pc < K; pc += kcb)                                                        \
                total += cconv__pack_block_##S(cf, tb, B, ldb, pc, K - pc < kcb ? K - pc : kcb,    \
                                               jc, N - jc < ncmax ? N - jc : ncmax,                \
                                               out ? out + total : 0);                             \
        return total;                                                                              \
    }                                                                                              \
    static void cconv__drive_##S(const cconv__cfg_##S *cf, int ta, int tb, int64_t M, int64_t N,   \
                                 int64_t K, T alpha, const T *A, int64_t lda, const T *B,          \
                                 int64_t ldb, T beta, T *C, int64_t ldc, T *bbuf, int64_t bcap,    \
                                 T *abuf, const T *pre)                                            \
    {                                                                                              \
        const int mr = cf->mr, nr = cf->w[0];                                                      \
        /* Equal depth blocks: depends only on K, so the summation order is fixed by the inputs. */\
        const int64_t nkb = (K + cf->kc - 1) / cf->kc;                                             \
        const int64_t kcb = (K + nkb - 1) / nkb;                                                   \
        int64_t ncmax = bcap / kcb / nr * nr;                                                      \
        int64_t jc, pc, ic, jr, k, i;                                                              \
        if (ncmax < nr) ncmax = nr;                                                                \
        for (jc = 0; jc < N; jc += ncmax) {                                                        \
            const int64_t nc = N - jc < ncmax ? N - jc : ncmax;                                    \
            const int direct = (nc + nr - 1) / nr <= CCONV_GEMM_DIRECT_PANELS;                     \
            for (pc = 0; pc < K; pc += kcb) {                                                      \
                const int64_t kc = K - pc < kcb ? K - pc : kcb;                                    \
                const T be = pc == 0 ? beta : (T)1;                                                \
                const T *bk = pre ? pre : bbuf;                                                    \
                const T *bp;                                                                       \
                if (pre) pre += cconv__pack_block_##S(cf, tb, B, ldb, pc, kc, jc, nc, 0);          \
                else cconv__pack_block_##S(cf, tb, B, ldb, pc, kc, jc, nc, bbuf);                  \
                for (ic = 0; ic < M; ic += mr) {                                                   \
                    const int m = (int)(M - ic < mr ? M - ic : mr);                                \
                    const T *ap;                                                                   \
                    int64_t sa;                                                                    \
                    int arow = 0;                                                                  \
                    if (direct && m == mr) {                                                       \
                        if (ta) { ap = A + pc * lda + ic; sa = lda; }                              \
                        else { ap = A + ic * lda + pc; sa = lda; arow = 1; }                       \
                    } else {                                                                       \
                        /* Pack A[ic:ic+m, pc:pc+kc] as element (i, k) at k*mr + i, rows >= m zero. */\
                        if (ta) {                                                                  \
                            const T *src = A + pc * lda + ic;                                      \
                            for (k = 0; k < kc; k++) {                                             \
                                for (i = 0; i < m; i++) abuf[k * mr + i] = src[k * lda + i];       \
                                for (; i < mr; i++) abuf[k * mr + i] = (T)0;                       \
                            }                                                                      \
                        } else {                                                                   \
                            const T *src = A + ic * lda + pc;                                      \
                            for (i = 0; i < m; i++)                                                \
                                for (k = 0; k < kc; k++) abuf[k * mr + i] = src[i * lda + k];      \
                            for (i = m; i < mr; i++)                                               \
                                for (k = 0; k < kc; k++) abuf[k * mr + i] = (T)0;                  \
                        }                                                                          \
                        ap = abuf;                                                                 \
                        sa = mr;                                                                   \
                    }                                                                              \
                    bp = bk;                                                                       \
                    for (jr = 0; jr < nc; jr += nr) {                                              \
                        const int n = (int)(nc - jr < nr ? nc - jr : nr);                          \
                        const int s = n > cf->w[1] ? 0 : n > cf->w[2] ? 1 : 2;                     \
                        (arow ? cf->kr[s] : cf->kp[s])(kc, ap, sa, bp, C + ic * ldc + jc + jr,     \
                                                       ldc, m, n, alpha, be);                      \
                        bp += kc * cf->w[s];                                                       \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
CCONV__DRIVER(float, s)
CCONV__DRIVER(double, d)

/* ------------------------------------------------------------------------------------------ */
/* Thread-local scratch.                                                                        */
#ifdef CCONV__PTHREAD
static pthread_key_t cconv__key;
static pthread_once_t cconv__key_once = PTHREAD_ONCE_INIT;
static int cconv__key_ok;
static void cconv__key_make(void) { cconv__key_ok = pthread_key_create(&cconv__key, free) == 0; }
#endif

static void *cconv__scratch(void)
{
    static CCONV__TLS void *buf;
    if (!buf) {
        char *raw = (char *)malloc(CCONV_GEMM_SCRATCH_BYTES + 64);
        if (!raw) return NULL;
#ifdef CCONV__PTHREAD
        /* Free the block when the thread exits (threads may come and go in the host program). */
        pthread_once(&cconv__key_once, cconv__key_make);
        if (cconv__key_ok) pthread_setspecific(cconv__key, raw);
#endif
        buf = raw + (64 - ((uintptr_t)raw & 63));
    }
    return buf;
}

#define CCONV__API(T, S, NAME)                                                                     \
    CCONV__UNUSED static void NAME(int transa, int transb, int64_t M, int64_t N, int64_t K,        \
                                   T alpha, const T *A, int64_t lda, const T *B, int64_t ldb,      \
                                   T beta, T *C, int64_t ldc)                                      \
    {                                                                                              \
        const cconv__cfg_##S *cf = &cconv__##S##gen_cfg;                                           \
        char *scratch;                                                                             \
        int64_t i, j, k;                                                                           \
        if (M <= 0 || N <= 0) return;                                                              \
        if (K <= 0) {                                                                              \
            for (i = 0; i < M; i++)                                                                \
                for (j = 0; j < N; j++) C[i * ldc + j] = beta == (T)0 ? (T)0 : beta * C[i * ldc + j]; \
            return;                                                                                \
        }                                                                                          \
        scratch = (char *)cconv__scratch();                                                        \
        if (!scratch) { /* out of memory: unblocked fallback, same result up to rounding */        \
            for (i = 0; i < M; i++)                                                                \
                for (j = 0; j < N; j++) {                                                          \
                    T s = 0;                                                                       \
                    for (k = 0; k < K; k++)                                                        \
                        s += A[transa ? k * lda + i : i * lda + k] * B[transb ? j * ldb + k : k * ldb + j]; \
                    C[i * ldc + j] = beta == (T)0 ? alpha * s : alpha * s + beta * C[i * ldc + j]; \
                }                                                                                  \
            return;                                                                                \
        }                                                                                          \
        CCONV__SELECT_##S                                                                          \
        cconv__drive_##S(cf, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,         \
                         (T *)scratch, CCONV_GEMM_BBUF_BYTES / (int64_t)sizeof(T),                 \
                         (T *)(scratch + CCONV_GEMM_BBUF_BYTES), 0);                               \
    }

#ifdef CCONV__X86
#define CCONV__SELECT_s                                                                            \
    switch (cconv__isa()) {                                                                        \
    case 2: cf = &cconv__s512_cfg; break;                                                          \
    case 1: cf = &cconv__s256_cfg; break;                                                          \
    default: break;                                                                                \
    }
#define CCONV__SELECT_d                                                                            \
    switch (cconv__isa()) {                                                                        \
    case 2: cf = &cconv__d512_cfg; break;                                                          \
    case 1: cf = &cconv__d256_cfg; break;                                                          \
    default: break;                                                                                \
    }
#else
#define CCONV__SELECT_s
#define CCONV__SELECT_d
#endif

CCONV__API(float, s, cconv_sgemm)
CCONV__API(double, d, cconv_dgemm)

/* op(B) packed once for many products with the same B (a layer's weights):
     NAME_packed_size(K, N)               elements of the packed copy of op(B) (K x N)
     NAME_pack(transb, K, N, B, ldb, Bp)  packs it; returns the ISA level it was packed for
     NAME_packed(transb, M, N, K, A, lda, B, ldb, Bp, level, C, ldc)
                                          C = A @ op(B), the same bits as NAME(0, transb, M, N,
                                          K, 1, A, lda, B, ldb, 0, C, ldc); B itself is used
                                          when the level in use is not `level` (or without
                                          scratch). */
#define CCONV__PACKED_API(T, S, NAME)                                                              \
    CCONV__UNUSED static int64_t NAME##_packed_size(int64_t K, int64_t N)                          \
    {                                                                                              \
        const cconv__cfg_##S *cf = &cconv__##S##gen_cfg;                                           \
        CCONV__SELECT_##S                                                                          \
        if (K <= 0 || N <= 0) return 0;                                                            \
        return cconv__pack_all_##S(cf, 0, K, N, 0, 0, CCONV_GEMM_BBUF_BYTES / (int64_t)sizeof(T), 0);\
    }                                                                                              \
    CCONV__UNUSED static int NAME##_pack(int tb, int64_t K, int64_t N, const T *B, int64_t ldb, T *Bp)\
    {                                                                                              \
        const cconv__cfg_##S *cf = &cconv__##S##gen_cfg;                                           \
        CCONV__SELECT_##S                                                                          \
        if (K > 0 && N > 0)                                                                        \
            cconv__pack_all_##S(cf, tb, K, N, B, ldb, CCONV_GEMM_BBUF_BYTES / (int64_t)sizeof(T), Bp);\
        return cconv__isa();                                                                       \
    }                                                                                              \
    CCONV__UNUSED static void NAME##_packed(int tb, int64_t M, int64_t N, int64_t K, const T *A,   \
                                            int64_t lda, const T *B, int64_t ldb, const T *Bp,     \
                                            int level, T *C, int64_t ldc)                          \
    {                                                                                              \
        const cconv__cfg_##S *cf = &cconv__##S##gen_cfg;                                           \
        char *scratch;                                                                             \
        CCONV__SELECT_##S                                                                          \
        if (M <= 0 || N <= 0) return;                                                              \
        if (K <= 0 || level != cconv__isa() || !(scratch = (char *)cconv__scratch())) {            \
            NAME(0, tb, M, N, K, (T)1, A, lda, B, ldb, (T)0, C, ldc);                              \
            return;                                                                                \
        }                                                                                          \
        cconv__drive_##S(cf, 0, tb, M, N, K, (T)1, A, lda, B, ldb, (T)0, C, ldc, (T *)scratch,     \
                         CCONV_GEMM_BBUF_BYTES / (int64_t)sizeof(T),                               \
                         (T *)(scratch + CCONV_GEMM_BBUF_BYTES), Bp);                              \
    }
CCONV__PACKED_API(float, s, cconv_sgemm)
CCONV__PACKED_API(double, d, cconv_dgemm)

/* Rows of the micro-panels of the ISA path in use (a product with M rows computes whole
   panels: the last one padded to this many rows). */
#define CCONV__MR_API(S, NAME)                                                                     \
    CCONV__UNUSED static int NAME##_mr(void)                                                       \
    {                                                                                              \
        const cconv__cfg_##S *cf = &cconv__##S##gen_cfg;                                           \
        CCONV__SELECT_##S                                                                          \
        return cf->mr;                                                                             \
    }
CCONV__MR_API(s, cconv_sgemm)
CCONV__MR_API(d, cconv_dgemm)

#ifdef CCONV_GEMM_TESTING
/* Cap the ISA level (-1 = automatic). Returns the level now in effect. */
CCONV__UNUSED static int cconv_gemm_force_isa(int level) { cconv__force_isa = level; return cconv__isa(); }
CCONV__UNUSED static const char *cconv_gemm_isa_name(void) { return cconv_isa_name(cconv__isa()); }
#endif

#endif /* CCONV_GEMM_H */
