/* Single-threaded row-major GEMM used by the im2col convolution kernels.

   C[M,N] = alpha * op(A) @ op(B) + beta * C
   transa == 0: A is M x K (row stride lda);  transa == 1: A is stored K x M.
   transb == 0: B is K x N (row stride ldb);  transb == 1: B is stored N x K.
   beta == 0: C is written without being read.

   Each call runs on the calling thread only: the convolution kernels parallelise over work
   items with OpenMP and call this from every worker, so no second thread pool competes. */
#ifndef CCONV_GEMM_H
#define CCONV_GEMM_H

#include <stdint.h>
#include <string.h>

#define CCONV_DEFINE_GEMM(NAME, T)                                                          \
static void NAME(int transa, int transb, int64_t M, int64_t N, int64_t K, T alpha,         \
                 const T *A, int64_t lda, const T *B, int64_t ldb,                          \
                 T beta, T *C, int64_t ldc)                                                 \
{                                                                                           \
    int64_t i, j, k;                                                                        \
    for (i = 0; i < M; i++) {                                                               \
        T *c = C + i * ldc;                                                                 \
        if (beta == (T)0) { for (j = 0; j < N; j++) c[j] = (T)0; }                          \
        else if (beta != (T)1) { for (j = 0; j < N; j++) c[j] *= beta; }                   \
        for (k = 0; k < K; k++) {                                                           \
            T a = alpha * (transa ? A[k * lda + i] : A[i * lda + k]);                       \
            if (!transb) {                                                                  \
                const T *b = B + k * ldb;                                                   \
                for (j = 0; j < N; j++) c[j] += a * b[j];                                   \
            } else {                                                                        \
                for (j = 0; j < N; j++) c[j] += a * B[j * ldb + k];                         \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
}

CCONV_DEFINE_GEMM(cconv_sgemm, float)
CCONV_DEFINE_GEMM(cconv_dgemm, double)

#endif
