# Declarations of the convolution kernels, for other Cython code to ``cimport``:
#
#     from cconv._ext.conv cimport ConvGeom, conv2d_forward_c
#
# All arrays are C-contiguous NHWC buffers; the kernel is (KH, KW, C // groups, CO); every
# function runs without the GIL, uses up to ``num_threads`` OpenMP threads and returns 0, or
# minus one of the WORKSPACE_* codes below when that workspace could not be allocated.

from cython cimport floating
from libc.stdint cimport int64_t

cdef enum:
    WORKSPACE_DIRECT = 1        # the direct kernels' padded planes (per thread)
    WORKSPACE_IM2COL = 2        # one im2col (or col2im) tile (per thread)
    WORKSPACE_PARTIAL = 3       # per-block partial sums of the kernel and bias gradients
    WORKSPACE_WINO_KERNEL = 4   # the Winograd-transformed kernel (E x C x CO)
    WORKSPACE_WINO_CHUNK = 5    # one chunk of Winograd-transformed tiles (per thread)

# Winograd: bytes of the transformed kernel (16 x C x CO) always allowed; beyond, up to the
# output's size (conv_winograd.pxi's use_winograd; plan.pyx's flipped kernels)
cdef enum:
    WINO_KERNEL_BYTES = 33554432

cdef struct ConvGeom:
    int64_t N, H, W, C        # input batch, height, width, channels
    int64_t KH, KW, CO        # kernel height, width, output channels
    int64_t OH, OW            # output height, width
    int64_t sh, sw            # strides
    int64_t dh, dw            # dilation
    int64_t pt, pl            # padding before (top, left); padding after is implied by OH, OW
    int64_t groups

# y (N, OH, OW, CO) = conv(x (N, H, W, C), kernel) + bias; bias may be NULL.
cdef int conv2d_forward_c(const floating *x, const floating *kernel, const floating *bias,
                          floating *y, ConvGeom g, int num_threads) noexcept nogil

# Gradients from dy (N, OH, OW, CO). Any of dx (N, H, W, C), dkernel (KH, KW, C // groups, CO)
# and dbias (CO,) may be NULL to skip that gradient.
cdef int conv2d_backward_c(const floating *dy, const floating *x, const floating *kernel,
                           floating *dx, floating *dkernel, floating *dbias,
                           ConvGeom g, int num_threads) noexcept nogil
