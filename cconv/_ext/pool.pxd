# Declarations of the pooling kernels, for other Cython code to ``cimport``:
#
#     from cconv._ext.pool cimport PoolGeom, max_pool2d_c
#
# NHWC C-contiguous buffers; no GIL; up to ``num_threads`` OpenMP threads; return 0, or -1
# when a workspace could not be allocated. Padded cells never take part: max pooling treats
# them as -inf, average pooling divides by the number of real cells in each window.

from cython cimport floating
from libc.stdint cimport int64_t

cdef struct PoolGeom:
    int64_t N, H, W, C        # input batch, height, width, channels
    int64_t KH, KW            # pool size
    int64_t OH, OW            # output height, width
    int64_t sh, sw            # strides
    int64_t pt, pl            # padding before (top, left)

# y (N, OH, OW, C) from x (N, H, W, C); ``is_max`` 1 for max pooling, 0 for average.
cdef int pool2d_forward_c(const floating *x, floating *y, PoolGeom g, bint is_max,
                          int num_threads) noexcept nogil

# dx (N, H, W, C) from dy (N, OH, OW, C). Max pooling sends each window's gradient to its
# first maximum in row-major order, or with ``all_ties`` (default False) to every cell equal
# to the maximum; overlapping windows accumulate.
cdef int pool2d_backward_c(const floating *dy, const floating *x, floating *dx, PoolGeom g,
                           bint is_max, int num_threads, bint all_ties=*) noexcept nogil
