# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Dropout masks from Philox4x32-10 (philox.h), without the GIL. Element j's mask depends only
on (seed, step, j), so the chunks given to threads (CHUNK elements each, a multiple of the
64-element batch) change nothing: results are bit for bit the same for any thread count.
cconv.ops.dropout validates and calls these for C-contiguous float32/float64 arrays."""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "omp_helpers.h":
    pass

cdef extern from "philox.h" nogil:
    void cconv_philox4x32_10(const uint32_t *ctr, const uint32_t *key, uint32_t *out)
    uint64_t cconv_dropout_threshold(double rate)
    void cconv_dropout_f32(const float *x, float *y, int64_t n, int64_t offset,
                           uint64_t seed, uint64_t step, double rate)
    void cconv_dropout_f64(const double *x, double *y, int64_t n, int64_t offset,
                           uint64_t seed, uint64_t step, double rate)
    void cconv_dropout_mask_f32(float *m, int64_t n, int64_t offset, uint64_t seed,
                                uint64_t step, double rate)
    void cconv_dropout_mask_f64(double *m, int64_t n, int64_t offset, uint64_t seed,
                                uint64_t step, double rate)

cdef enum:
    # Elements per thread task: 64 Ki (256 KiB of float32) keeps a task in L2 and gives a
    # (256, 28, 28, 32) batch about 100 tasks. A multiple of 64 (one Philox batch).
    CHUNK = 65536


def philox4x32_10(ctr, key):
    """One Philox4x32-10 block: four uint32 counter words and two key words in, four words
    out (a tuple). For the known-answer tests."""
    cdef uint32_t c[4]
    cdef uint32_t k[2]
    cdef uint32_t o[4]
    cdef int i
    for i in range(4):
        c[i] = ctr[i]
    for i in range(2):
        k[i] = key[i]
    cconv_philox4x32_10(c, k, o)
    return (o[0], o[1], o[2], o[3])


def threshold(double rate):
    """ceil(rate * 2**32): an element is kept when its 32-bit word is at least this."""
    return cconv_dropout_threshold(rate)


cdef void _chunks(const floating *x, floating *y, int64_t n, uint64_t seed, uint64_t step,
                  double rate, int64_t offset, int num_threads) noexcept nogil:
    """y[0:n] = dropout of x[0:n] (x NULL: the mask itself), by CHUNK-element thread tasks."""
    cdef int64_t nchunks = (n + CHUNK - 1) // CHUNK
    cdef int64_t c, start, length
    cdef int nt = num_threads if nchunks > 1 and num_threads > 1 else 1
    for c in prange(nchunks, schedule="static", num_threads=nt):
        start = c * CHUNK
        length = n - start if n - start < CHUNK else CHUNK
        if floating is float:
            if x == NULL:
                cconv_dropout_mask_f32(y + start, length, offset + start, seed, step, rate)
            else:
                cconv_dropout_f32(x + start, y + start, length, offset + start, seed, step,
                                  rate)
        else:
            if x == NULL:
                cconv_dropout_mask_f64(y + start, length, offset + start, seed, step, rate)
            else:
                cconv_dropout_f64(x + start, y + start, length, offset + start, seed, step,
                                  rate)


def dropout(const floating[::1] x, floating[::1] y, uint64_t seed, uint64_t step,
            double rate, int64_t offset=0, int num_threads=1):
    """y[i] = x[i] * scale where element offset + i is kept, else 0 (scale = 1 / (1 - rate)
    rounded once to the dtype). y may be x (in place). rate in [0, 1), offset >= 0."""
    cdef int64_t n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError("dropout: x and y differ in length")
    if n == 0:
        return
    with nogil:
        _chunks(&x[0], &y[0], n, seed, step, rate, offset, num_threads)


def dropout_mask(floating[::1] m, uint64_t seed, uint64_t step, double rate,
                 int64_t offset=0, int num_threads=1):
    """m[i] = scale where element offset + i is kept, else 0: the mask ``dropout`` applies."""
    cdef int64_t n = m.shape[0]
    if n == 0:
        return
    with nogil:
        _chunks(<const floating *>NULL, &m[0], n, seed, step, rate, offset, num_threads)
