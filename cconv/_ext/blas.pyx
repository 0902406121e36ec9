# cython: language_level=3
"""Matrix products on the same single-threaded GEMM as the convolutions (gemm.h), split over
OpenMP threads by blocks of the output: each element of C is computed by one GEMM call over
the full depth, so results do not depend on the thread count, and no second thread pool
(NumPy's BLAS) competes with cconv's own threads during training."""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t


cdef extern from "omp_helpers.h":
    pass

from cconv._ext.gemm cimport gemm


cdef void gemm_blocks(bint transa, bint transb, int64_t M, int64_t N, int64_t K,
                      const floating *A, int64_t lda, const floating *B, int64_t ldb,
                      floating beta, floating *C, int64_t ldc, int num_threads) noexcept nogil:
    """C = op(A) @ op(B) + beta * C, the rows (or, for few rows, the columns) of C split into
    one block per thread."""
    cdef bint by_rows = M >= N
    cdef int64_t total = M if by_rows else N
    cdef int64_t nblocks = num_threads if num_threads < total else total
    cdef int64_t b, lo, hi
    if nblocks < 1:
        nblocks = 1
    for b in prange(nblocks, schedule="static", num_threads=<int>nblocks):
        lo = b * total // nblocks
        hi = (b + 1) * total // nblocks
        if by_rows:
            gemm(transa, transb, hi - lo, N, K, A + (lo if transa else lo * lda), lda, B, ldb,
                 beta, C + lo * ldc, ldc)
        else:
            gemm(transa, transb, M, hi - lo, K, A, lda, B + (lo * ldb if transb else lo), ldb,
                 beta, C + lo, ldc)


def matmul(const floating[:, ::1] a, const floating[:, ::1] b, floating[:, ::1] out,
           bint transpose_a, bint transpose_b, int num_threads):
    """out = op(a) @ op(b) (op transposes when asked); shapes checked by cconv.ops."""
    cdef int64_t M = out.shape[0]
    cdef int64_t N = out.shape[1]
    cdef int64_t K = a.shape[0] if transpose_a else a.shape[1]
    if M == 0 or N == 0:
        return
    with nogil:
        gemm_blocks(transpose_a, transpose_b, M, N, K, &a[0, 0] if a.shape[0] and a.shape[1] else NULL,
                    a.shape[1], &b[0, 0] if b.shape[0] and b.shape[1] else NULL, b.shape[1],
                    0, &out[0, 0], N, num_threads)
