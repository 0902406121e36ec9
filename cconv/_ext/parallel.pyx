"""Thread count of the compiled kernels and whether OpenMP was compiled in.

The count is a plain process-wide setting read by ``cconv.ops`` on every call and passed to
the kernels as ``num_threads``; it never changes OpenMP's global state, so other OpenMP code
in the process (NumPy's BLAS, TensorFlow) is left alone.
"""
import os

cdef extern from "omp_helpers.h":
    int CCONV_OPENMP
    int omp_get_max_threads() nogil


def _default_num_threads():
    """Threads to use by default: ``OMP_NUM_THREADS`` if set, else the cores this process may use."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        n = int(env)
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count() or 1
    return n if CCONV_OPENMP else 1


_num_threads = _default_num_threads()


def openmp_enabled():
    """True when the compiled core was built with OpenMP (kernels can use several threads)."""
    return bool(CCONV_OPENMP)


def get_num_threads():
    """Number of threads the compiled kernels use (1 when built without OpenMP)."""
    return _num_threads


def set_num_threads(n):
    """Set the number of threads the kernels use; returns the previous value.

    ``n`` is a positive int. ``None`` restores the default (``OMP_NUM_THREADS`` or the cores
    this process may use). Results are bit-identical whatever the thread count.
    Without OpenMP the count stays 1.
    """
    global _num_threads
    previous = _num_threads
    if n is None:
        _num_threads = _default_num_threads()
        return previous
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"set_num_threads: n must be a positive int or None, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _num_threads = n if CCONV_OPENMP else 1
    return previous
