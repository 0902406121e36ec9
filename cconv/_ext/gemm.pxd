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

    int64_t cconv_sgemm_packed_size(int64_t K, int64_t N)
    int64_t cconv_dgemm_packed_size(int64_t K, int64_t N)
    int cconv_sgemm_pack(int transb, int64_t K, int64_t N, const float *B, int64_t ldb,
                         float *Bp)
    int cconv_dgemm_pack(int transb, int64_t K, int64_t N, const double *B, int64_t ldb,
                         double *Bp)
    void cconv_sgemm_packed(int transb, int64_t M, int64_t N, int64_t K, const float *A,
                            int64_t lda, const float *B, int64_t ldb, const float *Bp,
                            int level, float *C, int64_t ldc)
    void cconv_dgemm_packed(int transb, int64_t M, int64_t N, int64_t K, const double *A,
                            int64_t lda, const double *B, int64_t ldb, const double *Bp,
                            int level, double *C, int64_t ldc)

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


cdef inline int64_t gemm_packed_size(const floating *B, int64_t K, int64_t N) noexcept nogil:
    """Elements of op(B) (K x N) packed by gemm_pack (B only selects the precision)."""
    if floating is float:
        return cconv_sgemm_packed_size(K, N)
    else:
        return cconv_dgemm_packed_size(K, N)


cdef inline int gemm_pack(int transb, int64_t K, int64_t N, const floating *B, int64_t ldb,
                          floating *Bp) noexcept nogil:
    """Pack op(B) once for many gemm_packed calls; returns the ISA level it is packed for."""
    if floating is float:
        return cconv_sgemm_pack(transb, K, N, B, ldb, Bp)
    else:
        return cconv_dgemm_pack(transb, K, N, B, ldb, Bp)


cdef inline void gemm_packed(int transb, int64_t M, int64_t N, int64_t K, const floating *A,
                             int64_t lda, const floating *B, int64_t ldb, const floating *Bp,
                             int level, floating *C, int64_t ldc) noexcept nogil:
    """C = A @ op(B) from op(B) packed by gemm_pack: gemm(NO_TRANS, transb, ..., beta 0)'s
    bits (B itself is used when the ISA level is not ``level``)."""
    if floating is float:
        cconv_sgemm_packed(transb, M, N, K, A, lda, B, ldb, Bp, level, C, ldc)
    else:
        cconv_dgemm_packed(transb, M, N, K, A, lda, B, ldb, Bp, level, C, ldc)
