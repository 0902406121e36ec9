# cython: language_level=3, boundscheck=False, wraparound=False
"""A third-party extension that calls cconv's compiled kernels directly, without the GIL.

It owns its buffers (plain ``malloc``), fills them, and calls ``conv2d_forward_c`` and
``pool2d_forward_c`` from ``cconv``'s ``.pxd`` files inside ``with nogil`` for float32 and
float64. ``run(dtype)`` returns the results as NumPy arrays (copied out) so a test can check
them; ``selfcheck()`` compares them against a naive loop written here.
"""
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.math cimport fabs

from cconv._ext.conv cimport ConvGeom, conv2d_forward_c
from cconv._ext.pool cimport PoolGeom, pool2d_forward_c

import numpy as np

# Shapes of the demo: x (N, H, W, C), kernel (3, 3, C, CO), "valid" conv, then 2x2/2 max pool.
cdef enum:
    N = 2
    H = 7
    W = 6
    C = 3
    CO = 4
    K = 3


cdef ConvGeom conv_geom() noexcept nogil:
    cdef ConvGeom g
    g.N = N; g.H = H; g.W = W; g.C = C
    g.KH = K; g.KW = K; g.CO = CO
    g.OH = H - K + 1; g.OW = W - K + 1
    g.sh = 1; g.sw = 1; g.dh = 1; g.dw = 1
    g.pt = 0; g.pl = 0
    g.groups = 1
    return g


cdef PoolGeom pool_geom(ConvGeom cg) noexcept nogil:
    cdef PoolGeom g
    g.N = cg.N; g.H = cg.OH; g.W = cg.OW; g.C = cg.CO
    g.KH = 2; g.KW = 2
    g.OH = cg.OH // 2; g.OW = cg.OW // 2
    g.sh = 2; g.sw = 2
    g.pt = 0; g.pl = 0
    return g


ctypedef fused real:
    float
    double


cdef int run_typed(real *x, real *kernel, real *bias, real *y, real *p,
                   ConvGeom cg, PoolGeom pg) noexcept nogil:
    """Fill inputs deterministically, then convolve and pool: all without the GIL."""
    cdef int64_t i
    cdef int status
    for i in range(cg.N * cg.H * cg.W * cg.C):
        x[i] = <real>((i * 7) % 11) / 11 - <real>0.5
    for i in range(cg.KH * cg.KW * cg.C * cg.CO):
        kernel[i] = <real>((i * 5) % 13) / 13 - <real>0.25
    for i in range(cg.CO):
        bias[i] = <real>i / 10
    status = conv2d_forward_c(<const real *>x, <const real *>kernel, <const real *>bias, y, cg, 2)
    if status != 0:
        return status
    return pool2d_forward_c(<const real *>y, p, pg, True, 2)


def run(dtype):
    """Run the demo in ``float32`` or ``float64``; returns ``(x, kernel, bias, y, pooled)``."""
    dtype = np.dtype(dtype)
    cdef ConvGeom cg = conv_geom()
    cdef PoolGeom pg = pool_geom(cg)
    cdef int64_t nx = cg.N * cg.H * cg.W * cg.C
    cdef int64_t nk = cg.KH * cg.KW * cg.C * cg.CO
    cdef int64_t ny = cg.N * cg.OH * cg.OW * cg.CO
    cdef int64_t np_ = pg.N * pg.OH * pg.OW * pg.C
    cdef size_t item = dtype.itemsize
    cdef char *buf = <char *>malloc((nx + nk + cg.CO + ny + np_) * item)
    cdef int status
    if buf == NULL:
        raise MemoryError()
    try:
        if dtype == np.float32:
            with nogil:
                status = run_typed(<float *>buf, <float *>buf + nx, <float *>buf + nx + nk,
                                   <float *>buf + nx + nk + CO, <float *>buf + nx + nk + CO + ny,
                                   cg, pg)
        elif dtype == np.float64:
            with nogil:
                status = run_typed(<double *>buf, <double *>buf + nx, <double *>buf + nx + nk,
                                   <double *>buf + nx + nk + CO,
                                   <double *>buf + nx + nk + CO + ny, cg, pg)
        else:
            raise TypeError(f"run: dtype must be float32 or float64, got {dtype}")
        if status != 0:
            raise MemoryError("cconv kernel could not allocate its workspace")
        flat = np.frombuffer((<char *>buf)[:(nx + nk + CO + ny + np_) * item], dtype=dtype).copy()
    finally:
        free(buf)
    x = flat[:nx].reshape(N, H, W, C)
    kernel = flat[nx:nx + nk].reshape(K, K, C, CO)
    bias = flat[nx + nk:nx + nk + CO]
    y = flat[nx + nk + CO:nx + nk + CO + ny].reshape(N, cg.OH, cg.OW, CO)
    pooled = flat[nx + nk + CO + ny:].reshape(N, pg.OH, pg.OW, CO)
    return x, kernel, bias, y, pooled


def selfcheck():
    """Compare ``run`` with a naive NumPy loop for both dtypes; returns the max errors."""
    errors = {}
    for dtype in (np.float32, np.float64):
        x, kernel, bias, y, pooled = run(dtype)
        xd, kd = x.astype(np.float64), kernel.astype(np.float64)
        ref = np.zeros(y.shape)
        for i in range(y.shape[1]):
            for j in range(y.shape[2]):
                ref[:, i, j, :] = np.einsum("nabc,abco->no", xd[:, i:i + K, j:j + K, :], kd)
        ref += bias
        oh, ow = pooled.shape[1:3]
        ref_pool = ref[:, :2 * oh, :2 * ow].reshape(N, oh, 2, ow, 2, CO).max(axis=(2, 4))
        errors[np.dtype(dtype).name] = max(float(np.max(np.abs(y - ref))),
                                           float(np.max(np.abs(pooled - ref_pool))))
    return errors
