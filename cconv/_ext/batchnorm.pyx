# cython: language_level=3
"""BatchNormalization training, forward and backward (kernels in batchnorm.h), over an array
seen as ``(M, C)``: M rows (batch x height x width) of C contiguous channels. No GIL; one
parallel region per call on ``num_threads`` threads; results identical for any thread count.
``cconv.ops.batch_norm_train`` / ``batch_norm_backward`` validate and call these."""
from cython cimport floating
from libc.stdint cimport int64_t


cdef extern from "batchnorm.h" nogil:
    int cconv_bn_forward_f32(const float *x, float *y, int64_t M, int64_t C, double eps,
                             const float *gamma, const float *beta, int relu, double *mean,
                             double *var, float *mean_t, float *rstd, int nthreads)
    int cconv_bn_forward_f64(const double *x, double *y, int64_t M, int64_t C, double eps,
                             const double *gamma, const double *beta, int relu, double *mean,
                             double *var, double *mean_t, double *rstd, int nthreads)
    int cconv_bn_backward_f32(const float *dy, const float *x, float *dx, int64_t M, int64_t C,
                              const float *mean_t, const float *rstd, const float *gamma,
                              const float *beta, int relu, float *dgamma, float *dbeta,
                              int nthreads)
    int cconv_bn_backward_f64(const double *dy, const double *x, double *dx, int64_t M,
                              int64_t C, const double *mean_t, const double *rstd,
                              const double *gamma, const double *beta, int relu,
                              double *dgamma, double *dbeta, int nthreads)


cdef inline const floating *_opt(const floating[::1] a) noexcept:
    if a is None:
        return NULL
    return &a[0]


def forward(const floating[:, ::1] x, floating[:, ::1] y, const floating[::1] gamma,
            const floating[::1] beta, double eps, bint relu, double[::1] mean, double[::1] var,
            floating[::1] mean_t, floating[::1] rstd, int num_threads=1):
    """y = ((x - mean_t) * rstd) * gamma + beta (gamma / beta None: absent), relu optional;
    fills mean, var (float64), mean_t = mean rounded, rstd = 1 / sqrt(var + eps) rounded.
    x: (M, C), M >= 1, C >= 1; every vector (C,)."""
    cdef int64_t M = x.shape[0], C = x.shape[1]
    cdef const floating *g = _opt(gamma)
    cdef const floating *b = _opt(beta)
    cdef int rc
    with nogil:
        if floating is float:
            rc = cconv_bn_forward_f32(&x[0, 0], &y[0, 0], M, C, eps, g, b, relu, &mean[0],
                                      &var[0], &mean_t[0], &rstd[0], num_threads)
        else:
            rc = cconv_bn_forward_f64(&x[0, 0], &y[0, 0], M, C, eps, g, b, relu, &mean[0],
                                      &var[0], &mean_t[0], &rstd[0], num_threads)
    if rc:
        raise MemoryError("batch_norm_train: cannot allocate the per-block sums")


def backward(const floating[:, ::1] dy, const floating[:, ::1] x, floating[:, ::1] dx,
             const floating[::1] mean_t, const floating[::1] rstd, const floating[::1] gamma,
             const floating[::1] beta, bint relu, floating[::1] dgamma, floating[::1] dbeta,
             int num_threads=1):
    """dx, dgamma, dbeta of ``forward`` (same x, mean_t, rstd, gamma, beta, relu)."""
    cdef int64_t M = x.shape[0], C = x.shape[1]
    cdef const floating *g = _opt(gamma)
    cdef const floating *b = _opt(beta)
    cdef int rc
    with nogil:
        if floating is float:
            rc = cconv_bn_backward_f32(&dy[0, 0], &x[0, 0], &dx[0, 0], M, C, &mean_t[0],
                                       &rstd[0], g, b, relu, &dgamma[0], &dbeta[0], num_threads)
        else:
            rc = cconv_bn_backward_f64(&dy[0, 0], &x[0, 0], &dx[0, 0], M, C, &mean_t[0],
                                       &rstd[0], g, b, relu, &dgamma[0], &dbeta[0], num_threads)
    if rc:
        raise MemoryError("batch_norm_backward: cannot allocate the per-block sums")
