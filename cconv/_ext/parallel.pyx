"""Thread count of the compiled kernels and whether OpenMP was compiled in.

The count is a plain process-wide setting read by ``cconv.ops`` on every call and passed to
the kernels as ``num_threads``; it never changes OpenMP's global state, so other OpenMP code
in the process (NumPy's BLAS, TensorFlow) is left alone.
"""
import os
import warnings

cdef extern from "omp_helpers.h":
    int CCONV_OPENMP
    int omp_get_max_threads() nogil

cdef extern from "isa.h":
    int cconv_isa_level()
    const char *cconv_isa_name(int level)
    int cconv_isa_env_status()

#: The values ``CCONV_ISA`` accepts, lowest first.
ISA_NAMES = tuple(cconv_isa_name(i).decode() for i in range(3))


def isa():
    """The instruction set the kernels use: ``"avx512"``, ``"avx2"`` or ``"generic"``.

    Decided once, when cconv is imported: the best this CPU supports (x86-64 builds with
    GCC/Clang; every other build is ``"generic"``), capped by the environment variable
    ``CCONV_ISA`` (one of ``ISA_NAMES``) when it is set. Results may differ in the last bits
    between instruction sets (fused multiply-adds); quote this value in bug reports.
    """
    return cconv_isa_name(cconv_isa_level()).decode()


def _check_isa_env():
    """Warn when ``CCONV_ISA`` is invalid (then ignored) or asks for more than the CPU has."""
    requested = os.environ.get("CCONV_ISA", "")
    if cconv_isa_env_status() < 0:
        warnings.warn(
            f"CCONV_ISA={requested!r} is not one of {', '.join(ISA_NAMES)}; ignoring it "
            f"(cconv uses {isa()!r})", RuntimeWarning)
    elif requested and requested != isa():
        warnings.warn(
            f"CCONV_ISA={requested!r}: this CPU or build does not support it; cconv uses "
            f"{isa()!r}", RuntimeWarning)


_check_isa_env()


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


#: The most threads ``set_num_threads`` accepts: the kernels take the count as a C int, and an
#: absurd count would make the OpenMP runtime try to start that many threads.
MAX_THREADS = 4096

_num_threads = min(_default_num_threads(), MAX_THREADS)


def openmp_enabled():
    """True when the compiled core was built with OpenMP (kernels can use several threads)."""
    return bool(CCONV_OPENMP)


def get_num_threads():
    """Number of threads the compiled kernels use (1 when built without OpenMP)."""
    return _num_threads


def set_num_threads(n):
    """Set the number of threads the kernels use; returns the previous value.

    ``n`` is an int from 1 to 4096. ``None`` restores the default (``OMP_NUM_THREADS`` or the cores
    this process may use). Results are bit-identical whatever the thread count.
    Without OpenMP the count stays 1.
    """
    global _num_threads
    previous = _num_threads
    if n is None:
        _num_threads = min(_default_num_threads(), MAX_THREADS)
        return previous
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"set_num_threads: n must be a positive int or None, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    if n > MAX_THREADS:
        raise ValueError(f"set_num_threads: n must be <= {MAX_THREADS}, got {n}")
    _num_threads = n if CCONV_OPENMP else 1
    return previous
