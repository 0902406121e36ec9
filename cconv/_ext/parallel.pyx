"""Thread count of the compiled kernels, whether OpenMP was compiled in, the instruction set.

The count is a plain process-wide setting read by ``cconv.ops`` on every call and passed to
the kernels as ``num_threads``; it never changes OpenMP's global state, so other OpenMP code
in the process (NumPy's BLAS, TensorFlow) is left alone.

Fork: a child forked (``os.fork``, a ``multiprocessing`` pool with the fork start method)
after cconv ran kernels on several threads inherits GNU OpenMP's pool of threads without the
threads themselves; its next parallel region would wait for them forever. So such a child runs
every kernel on one thread (a one-thread team never touches the pool): for good with GNU
OpenMP, until it calls ``set_num_threads`` with other runtimes. See ``docs/reliability.md``.
"""
import os
import threading
import warnings
from contextlib import contextmanager

cdef extern from "omp_helpers.h":
    int CCONV_OPENMP
    int CCONV_GNU_OPENMP
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

#: True when the OpenMP runtime is GNU's (libgomp), which cannot start threads in a child
#: forked after it ran threads.
GNU_OPENMP = bool(CCONV_GNU_OPENMP)

# Whether kernels ran on several threads in this process (then OpenMP has a pool of threads),
# and whether this process is a child forked after that (then its kernels run serially).
_threads_started = False
_forked_after_threads = False


def _after_fork_in_child():
    global _forked_after_threads
    if _threads_started:
        _forked_after_threads = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threads_for(n):
    """The threads one kernel call runs on when it asks for ``n`` (``cconv.ops`` asks
    ``min(get_num_threads(), work / grain)``): ``n``, and remembers that threads ran."""
    global _threads_started
    if n > 1:
        _threads_started = True
    return n


def openmp_enabled():
    """True when the compiled core was built with OpenMP (kernels can use several threads)."""
    return bool(CCONV_OPENMP)


# Per Python thread: a cap on the count for the calls it makes (``capped_threads``).
_local = threading.local()


def get_num_threads():
    """Number of threads the compiled kernels use: 1 when built without OpenMP, and in a
    child forked after kernels ran on several threads (until it calls ``set_num_threads``);
    at most the cap of an enclosing ``capped_threads`` of the calling Python thread."""
    if _forked_after_threads:
        return 1
    cap = getattr(_local, "cap", 0)
    return cap if 0 < cap < _num_threads else _num_threads


def _thread_count(n, what, accepted="a positive int"):
    """``n`` as an int from 1 to MAX_THREADS, else a TypeError or ValueError naming ``what``
    (and, for a wrong type, what it accepts)."""
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"{what}: n must be {accepted}, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"{what}: n must be >= 1, got {n}")
    if n > MAX_THREADS:
        raise ValueError(f"{what}: n must be <= {MAX_THREADS}, got {n}")
    return n


@contextmanager
def capped_threads(n):
    """Within the block, this Python thread's kernel calls use at most ``n`` (an int from 1
    to ``MAX_THREADS``) threads; other Python threads and the process-wide setting are
    untouched. Results are bit-identical whatever the count, so only speed changes
    (``cconv.load_guard``)."""
    n = _thread_count(n, "capped_threads")
    previous = getattr(_local, "cap", 0)
    _local.cap = n
    try:
        yield
    finally:
        _local.cap = previous


def set_num_threads(n):
    """Set the number of threads the kernels use; returns the previous value.

    ``n`` is an int from 1 to 4096. ``None`` restores the default (``OMP_NUM_THREADS`` or the cores
    this process may use). Results are bit-identical whatever the thread count.
    Without OpenMP the count stays 1.

    In a child forked after kernels ran on several threads, kernels run serially until this
    is called. With GNU OpenMP (GCC builds) such a child can never start threads again (its
    inherited pool has no threads), so there it stays serial and ``n > 1`` warns: use the
    ``spawn`` or ``forkserver`` start method for multi-threaded workers.
    """
    global _num_threads, _forked_after_threads
    previous = 1 if _forked_after_threads else _num_threads
    if n is None:
        n = min(_default_num_threads(), MAX_THREADS)
    else:
        n = _thread_count(n, "set_num_threads", "a positive int or None")
    _num_threads = n if CCONV_OPENMP else 1
    if not _forked_after_threads:
        return previous
    if not CCONV_GNU_OPENMP:  # LLVM's and Intel's runtimes restart their pool after fork
        _forked_after_threads = False
    elif _num_threads > 1:
        warnings.warn(
            "set_num_threads: this process was forked after cconv ran on several threads; "
            "GNU OpenMP cannot start threads in it again, so its kernels stay on one thread "
            "(start workers with multiprocessing's 'spawn' or 'forkserver' method instead)",
            RuntimeWarning, stacklevel=2)
    return previous
