# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Optimizer updates in one pass over the weights (cconv.optimizers calls them for C-contiguous
arrays of one dtype). Each element goes through the same IEEE operations, in the same order, as
the NumPy expressions they replace (no fused multiply-add: this module is compiled for the
baseline instruction set), so the results are bit for bit those of the NumPy path, for any
thread count (each element is computed alone). No GIL; arrays from PARALLEL_ELEMS elements on
are split among ``num_threads`` threads (after a backward pass they come from memory, and one
core does not saturate it), smaller ones run on the calling thread."""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf
from libc.stdint cimport int64_t


cdef extern from "omp_helpers.h":
    pass

cdef enum:
    PARALLEL_ELEMS = 32768


def adam(const floating[::1] g, floating[::1] w, floating[::1] m, floating[::1] v,
         floating[::1] v_hat, floating c1, floating c2, floating alpha, floating eps,
         bint amsgrad, int num_threads=1):
    """Adam, in place: m += (g - m) * c1; v += (g*g - v) * c2 (c1 = 1 - beta_1,
    c2 = 1 - beta_2); with ``amsgrad`` v_hat = max(v_hat, v) is used for v;
    w -= m * alpha / (sqrt(v) + eps). All arrays have g's length."""
    cdef int64_t i, n = g.shape[0]
    cdef floating gi, mi, vi, r
    cdef int nt = num_threads if n >= PARALLEL_ELEMS and num_threads > 1 else 1
    with nogil:
        for i in prange(n, schedule="static", num_threads=nt):
            gi = g[i]
            mi = m[i] + (gi - m[i]) * c1
            vi = v[i] + (gi * gi - v[i]) * c2
            m[i] = mi
            v[i] = vi
            if amsgrad:
                if vi != vi or vi > v_hat[i]:      # np.maximum: a NaN on either side stays
                    v_hat[i] = vi
                vi = v_hat[i]
            if floating is float:
                r = sqrtf(vi)
            else:
                r = sqrt(vi)
            w[i] = w[i] - (mi * alpha) / (r + eps)


def sgd(const floating[::1] g, floating[::1] w, floating[::1] m, floating lr,
        floating momentum, bint use_momentum, bint nesterov, int num_threads=1):
    """SGD, in place: w -= g * lr; with momentum m = m * momentum - g * lr, then
    w += m (nesterov: w += m * momentum - g * lr)."""
    cdef int64_t i, n = g.shape[0]
    cdef floating step, mi
    cdef int nt = num_threads if n >= PARALLEL_ELEMS and num_threads > 1 else 1
    with nogil:
        for i in prange(n, schedule="static", num_threads=nt):
            step = g[i] * lr
            if not use_momentum:
                w[i] = w[i] - step
            else:
                mi = m[i] * momentum - step
                m[i] = mi
                if nesterov:
                    w[i] = w[i] + (mi * momentum - step)
                else:
                    w[i] = w[i] + mi
