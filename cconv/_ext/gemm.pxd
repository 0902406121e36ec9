# The single-threaded GEMM of gemm.h, declared once for every module that calls it:
#     from cconv._ext.gemm cimport NO_TRANS, TRANS, gemm
# Row-major C[M,N] = alpha * op(A) @ op(B) + beta * C; see gemm.h for the argument rules.
from cython cimport floating
from libc.stdint cimport int64_t

cdef extern from "gemm.h" nogil:
    void cconv_sgemm(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc)
    void cconv_dgemm(int transa, int transb, int64_t M, int64_t N, int64_t K, double alpha,
                     const double *A, int64_t lda, const double *B, int64_t ldb,
                     double beta, double *C, int64_t ldc)

cdef enum:
    NO_TRANS = 0    # op(X) = X: A is M x K (B is K x N) as stored
    TRANS = 1       # op(X) = X^T: A is stored K x M (B is stored N x K)


cdef inline void gemm(int transa, int transb, int64_t M, int64_t N, int64_t K,
                      const floating *A, int64_t lda, const floating *B, int64_t ldb,
                      floating beta, floating *C, int64_t ldc) noexcept nogil:
    """C = op(A) @ op(B) + beta * C (alpha 1) in the precision of the arrays."""
    if floating is float:
        cconv_sgemm(transa, transb, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc)
    else:
        cconv_dgemm(transa, transb, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc)
