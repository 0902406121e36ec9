# cython: language_level=3
"""2-D upsampling (nearest and bilinear), forward and backward, NHWC, float32 and float64.

Nearest repeats each pixel ``sh x sw`` times; its gradient sums each block, one input row per
task, the block read in row-major order. Bilinear reads four input pixels per output pixel
with precomputed row and column tables (``lo``, ``hi``, ``lerp``: see ``cconv.ops``) and
TensorFlow's formula ``top = tl + (tr - tl) * xl; bottom = bl + (br - bl) * xl;
out = top + (bottom - top) * yl``. Its gradient scatters each output pixel to its four
inputs in TensorFlow's order; the tasks are (image, channel block) pairs, which never share an
element, so every element is summed in the same order whatever the thread count.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset


cdef extern from "omp_helpers.h":
    pass

ctypedef fused floating:
    float
    double

cdef enum:
    # Channels per task of the bilinear gradient (a cache line of float32 or two of float64).
    CHANNEL_BLOCK = 16


cdef inline void _repeat_row(const floating *src, floating *dst, int64_t W, int64_t C,
                             int64_t sh, int64_t sw) noexcept nogil:
    """Write the input row ``src`` (W, C) into the ``sh`` output rows ``dst`` (sh, W*sw, C),
    each pixel repeated ``sw`` times along the row."""
    cdef int64_t OW = W * sw
    cdef int64_t w, j, i
    for w in range(W):
        for j in range(sw):
            memcpy(dst + (w * sw + j) * C, src + w * C, C * sizeof(floating))
    for i in range(1, sh):
        memcpy(dst + i * OW * C, dst, OW * C * sizeof(floating))


cdef inline void _sum_row_blocks(const floating *src, floating *dst, int64_t W, int64_t C,
                                 int64_t sh, int64_t sw) noexcept nogil:
    """Write into the input row ``dst`` (W, C) the sum of each ``sh x sw`` block of the output
    rows ``src`` (sh, W*sw, C), the block read in row-major order."""
    cdef int64_t OW = W * sw
    cdef int64_t w, i, j, c
    cdef const floating *s
    cdef floating *d
    for w in range(W):
        d = dst + w * C
        memset(d, 0, C * sizeof(floating))
        for i in range(sh):
            s = src + (i * OW + w * sw) * C
            for j in range(sw):
                for c in range(C):
                    d[c] += s[j * C + c]


cdef void _nearest(const floating[:, :, :, ::1] src, floating[:, :, :, ::1] dst, int64_t H,
                   int64_t W, int64_t sh, int64_t sw, bint backward, int num_threads):
    """Nearest upsampling by ``(sh, sw)`` of N images of H x W pixels (C channels), one task
    per input row and its ``sh`` output rows: forward (``src`` x (N, H, W, C), ``dst``
    y (N, H*sh, W*sw, C)) repeats the input row into them; backward (``src`` dy shaped like y,
    ``dst`` dx shaped like x) sums them into the input row."""
    cdef int64_t rows = src.shape[0] * H, C = src.shape[3]
    cdef int64_t row = W * C, block = sh * W * sw * C
    cdef int64_t r
    cdef const floating *a
    cdef floating *b
    if rows * W * C == 0:
        return
    a = &src[0, 0, 0, 0]
    b = &dst[0, 0, 0, 0]
    with nogil:
        for r in prange(rows, schedule="static", num_threads=num_threads):
            if backward:
                _sum_row_blocks(a + r * block, b + r * row, W, C, sh, sw)
            else:
                _repeat_row(a + r * row, b + r * block, W, C, sh, sw)


def nearest_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                    int64_t sh, int64_t sw, int num_threads):
    """Fill ``y`` (N, H*sh, W*sw, C) with each pixel of ``x`` (N, H, W, C) repeated."""
    _nearest(x, y, x.shape[1], x.shape[2], sh, sw, False, num_threads)


def nearest_backward(const floating[:, :, :, ::1] dy, floating[:, :, :, ::1] dx,
                     int64_t sh, int64_t sw, int num_threads):
    """Fill ``dx`` (N, H, W, C) with the sum of each ``sh x sw`` block of ``dy``
    (N, H*sh, W*sw, C)."""
    _nearest(dy, dx, dx.shape[1], dx.shape[2], sh, sw, True, num_threads)


cdef inline void _bilinear_row(const floating *x, floating *y, int64_t H, int64_t W,
                               int64_t C, int64_t OH, int64_t OW, int64_t it,
                               const int64_t *ylo, const int64_t *yhi, const floating *ylerp,
                               const int64_t *xlo, const int64_t *xhi,
                               const floating *xlerp) noexcept nogil:
    """Output row ``it`` = (n, oh) of ``y`` (N, OH, OW, C), interpolated from ``x``
    (N, H, W, C)."""
    cdef int64_t n = it // OH
    cdef int64_t oh = it - n * OH
    cdef int64_t ow, c
    cdef const floating *top = x + (n * H + ylo[oh]) * W * C
    cdef const floating *bot = x + (n * H + yhi[oh]) * W * C
    cdef const floating *tl
    cdef const floating *tr
    cdef const floating *bl
    cdef const floating *br
    cdef floating *out = y + it * OW * C
    cdef floating xl, t, b
    cdef floating yl = ylerp[oh]
    for ow in range(OW):
        xl = xlerp[ow]
        tl = top + xlo[ow] * C
        tr = top + xhi[ow] * C
        bl = bot + xlo[ow] * C
        br = bot + xhi[ow] * C
        for c in range(C):
            t = tl[c] + (tr[c] - tl[c]) * xl
            b = bl[c] + (br[c] - bl[c]) * xl
            out[ow * C + c] = t + (b - t) * yl


cdef inline void _bilinear_grad_block(const floating *dy, floating *dx, int64_t H, int64_t W,
                                      int64_t C, int64_t OH, int64_t OW, int64_t it,
                                      const int64_t *ylo, const int64_t *yhi,
                                      const floating *ylerp, const int64_t *xlo,
                                      const int64_t *xhi, const floating *xlerp) noexcept nogil:
    """Task ``it`` = (n, channel block) of the gradient: channels c0 .. c1 of image n of ``dx``
    (N, H, W, C), zeroed, then each pixel of ``dy`` (N, OH, OW, C) scattered to its four
    inputs."""
    cdef int64_t nblocks = (C + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
    cdef int64_t n = it // nblocks
    cdef int64_t c0 = (it - n * nblocks) * CHANNEL_BLOCK
    cdef int64_t c1 = c0 + CHANNEL_BLOCK if c0 + CHANNEL_BLOCK < C else C
    cdef int64_t oh, ow, c
    cdef floating *img = dx + n * H * W * C
    cdef const floating *g
    cdef floating *dtop
    cdef floating *dbot
    cdef floating xl, yl, up, down
    for oh in range(H):
        for ow in range(W):
            for c in range(c0, c1):
                img[(oh * W + ow) * C + c] = 0
    for oh in range(OH):
        yl = ylerp[oh]
        dtop = img + ylo[oh] * W * C
        dbot = img + yhi[oh] * W * C
        for ow in range(OW):
            xl = xlerp[ow]
            g = dy + ((n * OH + oh) * OW + ow) * C
            for c in range(c0, c1):
                up = (1 - yl) * g[c]
                down = yl * g[c]
                dtop[xlo[ow] * C + c] += (1 - xl) * up
                dtop[xhi[ow] * C + c] += xl * up
                dbot[xlo[ow] * C + c] += (1 - xl) * down
                dbot[xhi[ow] * C + c] += xl * down


cdef void _bilinear(const floating[:, :, :, ::1] src, floating[:, :, :, ::1] dst, int64_t H,
                    int64_t W, const int64_t[::1] ylo, const int64_t[::1] yhi,
                    const floating[::1] ylerp, const int64_t[::1] xlo, const int64_t[::1] xhi,
                    const floating[::1] xlerp, bint backward, int num_threads):
    """Bilinear resizing of N images of H x W pixels (C channels) to OH x OW (the table
    lengths): forward (``src`` x (N, H, W, C), ``dst`` y (N, OH, OW, C)) one task per output
    row; backward (``src`` dy shaped like y, ``dst`` dx shaped like x) one task per (image,
    channel block). Nothing is done when ``dst`` is empty."""
    cdef int64_t N = src.shape[0], C = src.shape[3], OH = ylo.shape[0], OW = xlo.shape[0]
    cdef int64_t tasks = N * ((C + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK if backward else OH)
    cdef int64_t it
    cdef const floating *a
    cdef floating *b
    if dst.shape[0] * dst.shape[1] * dst.shape[2] * dst.shape[3] == 0:
        return
    a = &src[0, 0, 0, 0]
    b = &dst[0, 0, 0, 0]
    with nogil:
        for it in prange(tasks, schedule="static", num_threads=num_threads):
            if backward:
                _bilinear_grad_block(a, b, H, W, C, OH, OW, it, &ylo[0], &yhi[0], &ylerp[0],
                                     &xlo[0], &xhi[0], &xlerp[0])
            else:
                _bilinear_row(a, b, H, W, C, OH, OW, it, &ylo[0], &yhi[0], &ylerp[0], &xlo[0],
                              &xhi[0], &xlerp[0])


def bilinear_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                     const int64_t[::1] ylo, const int64_t[::1] yhi, const floating[::1] ylerp,
                     const int64_t[::1] xlo, const int64_t[::1] xhi, const floating[::1] xlerp,
                     int num_threads):
    """Fill ``y`` (N, OH, OW, C) by bilinear interpolation of ``x`` (N, H, W, C) with the row
    tables ``ylo, yhi, ylerp`` (OH items) and column tables ``xlo, xhi, xlerp`` (OW items)."""
    _bilinear(x, y, x.shape[1], x.shape[2], ylo, yhi, ylerp, xlo, xhi, xlerp, False,
              num_threads)


def bilinear_backward(const floating[:, :, :, ::1] dy, floating[:, :, :, ::1] dx,
                      const int64_t[::1] ylo, const int64_t[::1] yhi,
                      const floating[::1] ylerp, const int64_t[::1] xlo,
                      const int64_t[::1] xhi, const floating[::1] xlerp, int num_threads):
    """Fill ``dx`` (N, H, W, C) with the gradient of ``bilinear_forward`` given ``dy``
    (N, OH, OW, C)."""
    _bilinear(dy, dx, dx.shape[1], dx.shape[2], ylo, yhi, ylerp, xlo, xhi, xlerp, True,
              num_threads)
