# The single-threaded GEMM of gemm.h, declared once for every module that calls it:
#     from cconv._ext.gemm cimport cconv_sgemm, cconv_dgemm
# Row-major C[M,N] = alpha * op(A) @ op(B) + beta * C; see gemm.h for the argument rules.
from libc.stdint cimport int64_t

cdef extern from "gemm.h" nogil:
    void cconv_sgemm(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc)
    void cconv_dgemm(int transa, int transb, int64_t M, int64_t N, int64_t K, double alpha,
                     const double *A, int64_t lda, const double *B, int64_t ldb,
                     double beta, double *C, int64_t ldc)
