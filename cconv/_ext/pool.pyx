# cython: language_level=3
"""Max and average pooling, forward and backward, NHWC, float32 and float64.

Each output position reads its window's real cells (padding never takes part); channels are
the innermost loop so every step reads contiguous memory. Work is split over output rows, or
over images when windows overlap in height (their gradients would collide in dx), so each
result is computed in one fixed order whatever the thread count.
"""
from cython.parallel cimport parallel, prange
from libc.stdint cimport INT32_MAX, int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset


cdef extern from "omp_helpers.h":
    pass

cdef extern from "pool_cells.h" nogil:
    void cconv_pool_max_f32(float *m, const float *x, int64_t C)
    void cconv_pool_max_f64(double *m, const double *x, int64_t C)
    void cconv_pool_add_f32(float *s, const float *x, int64_t C)
    void cconv_pool_add_f64(double *s, const double *x, int64_t C)
    void cconv_pool_maxgrad_f32(float *dxn, const float *xn, const float *m, const float *dy,
                                int32_t *idx, int64_t W, int64_t C, int64_t h0, int64_t h1,
                                int64_t w0, int64_t w1)
    void cconv_pool_maxgrad_f32_wide(float *dxn, const float *xn, const float *m,
                                     const float *dy, int64_t *idx, int64_t W, int64_t C,
                                     int64_t h0, int64_t h1, int64_t w0, int64_t w1)
    void cconv_pool_maxgrad_f64(double *dxn, const double *xn, const double *m,
                                const double *dy, int64_t *idx, int64_t W, int64_t C,
                                int64_t h0, int64_t h1, int64_t w0, int64_t w1)
    void cconv_pool_avggrad_f32(float *dxn, const float *dy, float *share, int64_t W,
                                int64_t C, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                                int assign)
    void cconv_pool_avggrad_f64(double *dxn, const double *dy, double *share, int64_t W,
                                int64_t C, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                                int assign)
    void cconv_pool_maxgrad_ties_f32(float *dxn, const float *xn, float *m, const float *dy,
                                     int64_t W, int64_t C, int64_t h0, int64_t h1, int64_t w0,
                                     int64_t w1)
    void cconv_pool_maxgrad_ties_f64(double *dxn, const double *xn, double *m,
                                     const double *dy, int64_t W, int64_t C, int64_t h0,
                                     int64_t h1, int64_t w0, int64_t w1)


cdef inline void cell_max(floating *m, const floating *x, int64_t C) noexcept nogil:
    if floating is float:
        cconv_pool_max_f32(m, x, C)
    else:
        cconv_pool_max_f64(m, x, C)


cdef inline void cell_add(floating *s, const floating *x, int64_t C) noexcept nogil:
    if floating is float:
        cconv_pool_add_f32(s, x, C)
    else:
        cconv_pool_add_f64(s, x, C)


cdef inline void window(const PoolGeom *g, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1,
                        int64_t *w0, int64_t *w1) noexcept nogil:
    """The real cells [h0, h1) x [w0, w1) of the window at output (oh, ow)."""
    h0[0] = oh * g.sh - g.pt
    w0[0] = ow * g.sw - g.pl
    h1[0] = h0[0] + g.KH if h0[0] + g.KH < g.H else g.H
    w1[0] = w0[0] + g.KW if w0[0] + g.KW < g.W else g.W
    if h0[0] < 0:
        h0[0] = 0
    if w0[0] < 0:
        w0[0] = 0


cdef void forward_row(const floating *x, floating *y, const PoolGeom *g, bint is_max,
                      int64_t n, int64_t oh) noexcept nogil:
    cdef int64_t ow, h, w, c, h0, h1, w0, w1
    cdef int64_t C = g.C
    cdef const floating *xn = x + n * g.H * g.W * C
    cdef const floating *xr
    cdef floating *yr
    cdef floating inv
    cdef bint first
    for ow in range(g.OW):
        window(g, oh, ow, &h0, &h1, &w0, &w1)
        yr = y + ((n * g.OH + oh) * g.OW + ow) * C
        first = True
        for h in range(h0, h1):
            for w in range(w0, w1):
                xr = xn + (h * g.W + w) * C
                if first:
                    memcpy(yr, xr, C * sizeof(floating))
                    first = False
                elif is_max:
                    cell_max(yr, xr, C)
                else:
                    cell_add(yr, xr, C)
        if not is_max:
            inv = (<floating>1) / ((h1 - h0) * (w1 - w0))
            for c in range(C):
                yr[c] *= inv


cdef void backward_row(const floating *dy, const floating *x, floating *dx, const PoolGeom *g,
                       bint is_max, int64_t n, int64_t oh, floating *best,
                       int64_t *idx, bint all_ties, bint assign=False) noexcept nogil:
    """Gradient of one output row; ``best`` (window maxima or shares) and ``idx`` (the cell
    receiving each channel's gradient) are per-thread scratch of C items. ``all_ties``: max
    pooling's gradient goes to every cell equal to the maximum, not only the first.
    ``assign`` (average pooling whose windows tile the image): the row's cells are stored,
    not added to, so dx needs no zeroing first."""
    cdef int64_t ow, h, w, c, h0, h1, w0, w1
    cdef int64_t C = g.C
    cdef int64_t HWC = g.H * g.W * C
    cdef const floating *xn = x + n * HWC
    cdef floating *dxn = dx + n * HWC
    cdef const floating *dyr
    cdef const floating *xr
    cdef floating *dxr
    for ow in range(g.OW):
        window(g, oh, ow, &h0, &h1, &w0, &w1)
        dyr = dy + ((n * g.OH + oh) * g.OW + ow) * C
        if is_max and all_ties:
            if floating is float:
                cconv_pool_maxgrad_ties_f32(dxn, xn, best, dyr, g.W, C, h0, h1, w0, w1)
            else:
                cconv_pool_maxgrad_ties_f64(dxn, xn, best, dyr, g.W, C, h0, h1, w0, w1)
        elif is_max:
            if floating is float:
                if g.H * g.W < INT32_MAX:  # 32-bit cell indices vectorise with float32
                    cconv_pool_maxgrad_f32(dxn, xn, best, dyr, <int32_t *>idx, g.W, C,
                                           h0, h1, w0, w1)
                else:
                    cconv_pool_maxgrad_f32_wide(dxn, xn, best, dyr, idx, g.W, C, h0, h1, w0, w1)
            else:
                cconv_pool_maxgrad_f64(dxn, xn, best, dyr, idx, g.W, C, h0, h1, w0, w1)
        elif floating is float:        # each real cell gets its share, dy / count
            cconv_pool_avggrad_f32(dxn, dyr, best, g.W, C, h0, h1, w0, w1, assign)
        else:
            cconv_pool_avggrad_f64(dxn, dyr, best, g.W, C, h0, h1, w0, w1, assign)


cdef int pool2d_forward_c(const floating *x, floating *y, PoolGeom g, bint is_max,
                          int num_threads) noexcept nogil:
    cdef int64_t it
    cdef int64_t nitems = g.N * g.OH
    if nitems == 0 or g.OW == 0 or g.C == 0:
        return 0
    for it in prange(nitems, schedule="static", num_threads=num_threads):
        forward_row(x, y, &g, is_max, it // g.OH, it % g.OH)
    return 0


cdef int pool2d_backward_c(const floating *dy, const floating *x, floating *dx, PoolGeom g,
                           bint is_max, int num_threads, bint all_ties=False) noexcept nogil:
    # Windows that overlap in height send gradient to the same rows: then one task per image.
    # Each task first zeroes the part of dx it owns (in parallel, while it is in cache).
    cdef bint by_row = g.KH <= g.sh
    # average windows that tile the image exactly: every dx cell written once, not zeroed
    cdef bint tiles = (not is_max and g.KH == g.sh and g.KW == g.sw and g.pt == 0
                       and g.pl == 0 and g.OH * g.sh == g.H and g.OW * g.sw == g.W)
    cdef int64_t nitems = g.N * g.OH if by_row else g.N
    cdef int64_t rowsize = g.W * g.C
    cdef int64_t it, n, oh, r0, r1
    cdef floating *best = NULL
    cdef int64_t *idx = NULL
    cdef int failed = 0
    cdef int *failed_p = &failed
    if g.N == 0 or g.H * g.W * g.C == 0:
        return 0
    if g.OH == 0 or g.OW == 0:
        memset(dx, 0, g.N * g.H * rowsize * sizeof(floating))
        return 0
    with parallel(num_threads=num_threads):
        best = <floating *>malloc(g.C * sizeof(floating))
        idx = <int64_t *>malloc(g.C * sizeof(int64_t))
        for it in prange(nitems, schedule="static"):
            if best == NULL or idx == NULL:
                failed_p[0] = 1
                continue
            if by_row:
                n = it // g.OH
                oh = it % g.OH
                # input rows [oh * sh - pt, (oh + 1) * sh - pt), the first and last task
                # stretched to the image's edges: together they cover every row once
                r0 = 0 if oh == 0 else oh * g.sh - g.pt
                r1 = g.H if oh == g.OH - 1 else (oh + 1) * g.sh - g.pt
                r0 = 0 if r0 < 0 else (g.H if r0 > g.H else r0)
                r1 = r0 if r1 < r0 else (g.H if r1 > g.H else r1)
                if not tiles:
                    memset(dx + (n * g.H + r0) * rowsize, 0,
                           (r1 - r0) * rowsize * sizeof(floating))
                backward_row(dy, x, dx, &g, is_max, n, oh, best, idx, all_ties, tiles)
            else:
                memset(dx + it * g.H * rowsize, 0, g.H * rowsize * sizeof(floating))
                for oh in range(g.OH):
                    backward_row(dy, x, dx, &g, is_max, it, oh, best, idx, all_ties)
        free(best)
        free(idx)
    return -1 if failed else 0


cdef PoolGeom make_geom(tuple xshape, tuple yshape, tuple pool_size, tuple strides,
                        tuple pads_before):
    cdef PoolGeom g
    g.N, g.H, g.W, g.C = xshape
    g.OH, g.OW = yshape[1], yshape[2]
    g.KH, g.KW = pool_size
    g.sh, g.sw = strides
    g.pt, g.pl = pads_before
    return g


def pool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, bint is_max,
                   tuple pool_size, tuple strides, tuple pads_before, int num_threads):
    """Fill ``y`` with the max or average pooling of ``x`` (arguments checked by cconv.ops)."""
    cdef PoolGeom g = make_geom((x.shape[0], x.shape[1], x.shape[2], x.shape[3]), (y.shape[0], y.shape[1], y.shape[2], y.shape[3]), pool_size, strides,
                                pads_before)
    cdef const floating *xp = &x[0, 0, 0, 0] if x.size else NULL
    cdef floating *yp = &y[0, 0, 0, 0] if y.size else NULL
    with nogil:
        pool2d_forward_c(xp, yp, g, is_max, num_threads)


def pool2d_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                    floating[:, :, :, ::1] dx, bint is_max, tuple pool_size, tuple strides,
                    tuple pads_before, int num_threads, bint all_ties=False):
    """Fill ``dx`` with the gradient of max or average pooling given ``dy``; ``all_ties``
    gives max pooling's gradient to every cell equal to the window's maximum."""
    cdef PoolGeom g = make_geom((x.shape[0], x.shape[1], x.shape[2], x.shape[3]), (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]), pool_size, strides,
                                pads_before)
    cdef const floating *dyp = &dy[0, 0, 0, 0] if dy.size else NULL
    cdef const floating *xp = &x[0, 0, 0, 0] if x.size else NULL
    cdef floating *dxp = &dx[0, 0, 0, 0] if dx.size else NULL
    cdef int status
    with nogil:
        status = pool2d_backward_c(dyp, xp, dxp, g, is_max, num_threads, all_ties)
    if status:
        raise MemoryError("pool2d_backward: could not allocate a workspace")
