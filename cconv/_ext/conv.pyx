# cython: language_level=3
"""2-D convolution, forward and backward, NHWC, float32 and float64.

Algorithm: im2col on tiles of output positions, then a GEMM per tile and group
(``gemm.h``, single-threaded, called from every OpenMP worker so that one thread pool does
all the work). 1x1 convolutions with stride 1 and no padding skip im2col entirely.

Determinism: the work is cut into tiles and blocks whose sizes depend on the shapes only,
never on the thread count, and partial sums are reduced in a fixed order, so results are
bit-identical for any ``num_threads``.
"""
from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset


cdef extern from "omp_helpers.h":
    pass

cdef extern from "gemm.h" nogil:
    void cconv_sgemm(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc)
    void cconv_dgemm(int transa, int transb, int64_t M, int64_t N, int64_t K, double alpha,
                     const double *A, int64_t lda, const double *B, int64_t ldb,
                     double beta, double *C, int64_t ldc)

cdef enum:
    # Input channels and filters per group up to which the direct kernels (direct.h) replace
    # im2col + GEMM (measured: LeNet's 1->6 first layer 2.7x faster forward; 3->32 slower).
    DIRECT_MAX_CG = 4
    DIRECT_MAX_COG = 8
    # Elements of one im2col tile (per thread): 64 Ki elements keep a float32 tile in L2.
    TILE_ELEMS = 65536
    # Elements of all per-block partial kernel gradients together, and the most blocks.
    PARTIAL_ELEMS = 4194304
    MAX_BLOCKS = 64


cdef extern from "direct.h" nogil:
    int64_t cconv_direct_scratch(const void *g)
    void cconv_direct_forward_f32(const float *x, const float *w, const float *bias, float *y,
                                  const void *g, float *scratch)
    void cconv_direct_forward_f64(const double *x, const double *w, const double *bias,
                                  double *y, const void *g, double *scratch)
    void cconv_direct_backward_params_f32(const float *dy, const float *x, float *dw, float *db,
                                          const void *g, float *scratch)
    void cconv_direct_backward_params_f64(const double *dy, const double *x, double *dw,
                                          double *db, const void *g, double *scratch)
    void cconv_direct_backward_input_f32(const float *dy, const float *w, float *dx,
                                         const void *g, float *scratch)
    void cconv_direct_backward_input_f64(const double *dy, const double *w, double *dx,
                                         const void *g, double *scratch)


cdef inline bint use_direct(const ConvGeom *g) noexcept nogil:
    """Few input channels and filters per group (LeNet's first layer, depthwise): im2col rows
    would be a handful of scattered elements feeding a GEMM a few columns wide, so the direct
    kernels win. Pointwise convolutions need no im2col."""
    cdef int64_t hp = (g.OH - 1) * g.sh + (g.KH - 1) * g.dh + 1   # padded plane (direct.h)
    cdef int64_t wp = (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1
    return (g.C // g.groups <= DIRECT_MAX_CG and g.CO // g.groups <= DIRECT_MAX_COG
            and not is_pointwise(g)
            # huge dilation or padding would make the padded planar copy far larger than x
            and hp * wp <= 4 * g.H * g.W + 65536)


cdef int forward_direct(const floating *x, const floating *kernel, const floating *bias,
                        floating *y, const ConvGeom *g, int num_threads) noexcept nogil:
    """One image per task; each thread keeps one scratch buffer."""
    cdef int64_t S = cconv_direct_scratch(g)
    cdef int64_t n
    cdef floating *buf = NULL
    cdef int failed = 0
    cdef int *failed_p = &failed
    with parallel(num_threads=num_threads if num_threads < g.N else <int>g.N):
        buf = <floating *>malloc(S * sizeof(floating))
        for n in prange(g.N, schedule="dynamic"):
            if buf == NULL:
                failed_p[0] = 1
                continue
            if floating is float:
                cconv_direct_forward_f32(x + n * g.H * g.W * g.C, kernel, bias,
                                         y + n * g.OH * g.OW * g.CO, g, buf)
            else:
                cconv_direct_forward_f64(x + n * g.H * g.W * g.C, kernel, bias,
                                         y + n * g.OH * g.OW * g.CO, g, buf)
        free(buf)
    return -1 if failed else 0


cdef inline void gemm(int transa, int transb, int64_t M, int64_t N, int64_t K,
                      const floating *A, int64_t lda, const floating *B, int64_t ldb,
                      floating beta, floating *C, int64_t ldc) noexcept nogil:
    if floating is float:
        cconv_sgemm(transa, transb, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc)
    else:
        cconv_dgemm(transa, transb, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc)


cdef inline int64_t tile_rows(const ConvGeom *g, int64_t total) noexcept nogil:
    """Rows of the im2col matrix per tile (at most ``total``): a function of the shapes alone."""
    cdef int64_t k = g.KH * g.KW * (g.C // g.groups)
    cdef int64_t t = TILE_ELEMS // (k if k > 0 else 1)
    if t < 1:
        t = 1
    return t if t < total else total


cdef inline bint is_pointwise(const ConvGeom *g) noexcept nogil:
    """1x1 kernel, stride 1, no padding: the input itself is the im2col matrix."""
    return (g.KH == 1 and g.KW == 1 and g.sh == 1 and g.sw == 1 and g.pt == 0 and g.pl == 0
            and g.OH == g.H and g.OW == g.W)


cdef inline void copy_n(floating *dst, const floating *src, int64_t count) noexcept nogil:
    cdef int64_t i
    if count >= 32:
        memcpy(dst, src, count * sizeof(floating))
    else:
        for i in range(count):
            dst[i] = src[i]


cdef inline void add_n(floating *dst, const floating *src, int64_t count) noexcept nogil:
    cdef int64_t i
    for i in range(count):
        dst[i] += src[i]


cdef void im2col(const floating *x, floating *col, const ConvGeom *g,
                 int64_t r0, int64_t r1, int64_t gi) noexcept nogil:
    """Rows r0..r1 of the batch's im2col matrix for group gi, one row per output position
    r = (n * OH + oh) * OW + ow: col[r - r0, (kh * KW + kw) * CG + c] = x[n, ih, iw, gi * CG + c]
    (0 in the padding). Rows may span several images."""
    cdef int64_t CG = g.C // g.groups
    cdef int64_t K = g.KH * g.KW * CG
    cdef int64_t P = g.OH * g.OW
    cdef int64_t n = r0 // P
    cdef int64_t oh = (r0 - n * P) // g.OW
    cdef int64_t ow = r0 - n * P - oh * g.OW
    # a whole kernel row is one contiguous run of x when groups == 1 and dilation_w == 1
    cdef bint runs = g.groups == 1 and g.dw == 1
    cdef int64_t r, kh, kw, ih, iw, iw0
    cdef bint inside_w
    cdef const floating *src
    cdef floating *dst
    for r in range(r0, r1):
        iw0 = ow * g.sw - g.pl
        inside_w = iw0 >= 0 and iw0 + (g.KW - 1) * g.dw < g.W
        for kh in range(g.KH):
            ih = oh * g.sh - g.pt + kh * g.dh
            dst = col + (r - r0) * K + kh * g.KW * CG
            if ih < 0 or ih >= g.H:
                memset(dst, 0, g.KW * CG * sizeof(floating))
                continue
            src = x + ((n * g.H + ih) * g.W) * g.C + gi * CG
            if inside_w and runs:
                copy_n(dst, src + iw0 * g.C, g.KW * CG)
                continue
            for kw in range(g.KW):
                iw = iw0 + kw * g.dw
                if iw < 0 or iw >= g.W:
                    memset(dst + kw * CG, 0, CG * sizeof(floating))
                else:
                    copy_n(dst + kw * CG, src + iw * g.C, CG)
        ow += 1
        if ow == g.OW:
            ow = 0
            oh += 1
            if oh == g.OH:
                oh = 0
                n += 1


cdef void col2im_add(const floating *col, floating *dxn, const ConvGeom *g,
                     int64_t p0, int64_t p1, int64_t gi) noexcept nogil:
    """The adjoint of im2col for rows p0..p1 of one image: dx[n, ih, iw, gi * CG + c] += col[...]."""
    cdef int64_t CG = g.C // g.groups
    cdef int64_t K = g.KH * g.KW * CG
    cdef int64_t oh = p0 // g.OW
    cdef int64_t ow = p0 - oh * g.OW
    cdef bint runs = g.groups == 1 and g.dw == 1
    cdef int64_t p, kh, kw, ih, iw, iw0
    cdef bint inside_w
    cdef const floating *src
    cdef floating *dst
    for p in range(p0, p1):
        iw0 = ow * g.sw - g.pl
        inside_w = iw0 >= 0 and iw0 + (g.KW - 1) * g.dw < g.W
        for kh in range(g.KH):
            ih = oh * g.sh - g.pt + kh * g.dh
            if ih < 0 or ih >= g.H:
                continue
            src = col + (p - p0) * K + kh * g.KW * CG
            dst = dxn + ih * g.W * g.C + gi * CG
            if inside_w and runs:
                add_n(dst + iw0 * g.C, src, g.KW * CG)
                continue
            for kw in range(g.KW):
                iw = iw0 + kw * g.dw
                if iw >= 0 and iw < g.W:
                    add_n(dst + iw * g.C, src + kw * CG, CG)
        ow += 1
        if ow == g.OW:
            ow = 0
            oh += 1


cdef int conv2d_forward_c(const floating *x, const floating *kernel, const floating *bias,
                          floating *y, ConvGeom g, int num_threads) noexcept nogil:
    cdef int64_t CG = g.C // g.groups
    cdef int64_t COg = g.CO // g.groups
    cdef int64_t K = g.KH * g.KW * CG
    cdef int64_t R = g.N * g.OH * g.OW          # rows of the batch's im2col matrix
    cdef bint pointwise = is_pointwise(&g)
    cdef int64_t TP, ntiles, t, r0, rows, gi, r, c, lda
    cdef floating *col = NULL
    cdef floating *yt
    cdef const floating *A
    cdef int failed = 0
    cdef int *failed_p = &failed
    if R == 0 or g.CO == 0:
        return 0
    if use_direct(&g):
        return forward_direct(x, kernel, bias, y, &g, num_threads)
    TP = tile_rows(&g, R)
    ntiles = (R + TP - 1) // TP
    if num_threads > ntiles:
        num_threads = <int>ntiles
    with parallel(num_threads=num_threads):
        col = NULL
        if not pointwise:
            col = <floating *>malloc((TP * K + 1) * sizeof(floating))
        for t in prange(ntiles, schedule="dynamic"):
            if not pointwise and col == NULL:
                failed_p[0] = 1
                continue
            r0 = t * TP
            rows = R - r0 if R - r0 < TP else TP
            yt = y + r0 * g.CO
            for gi in range(g.groups):
                if pointwise:
                    A = x + r0 * g.C + gi * CG
                    lda = g.C
                else:
                    im2col(x, col, &g, r0, r0 + rows, gi)
                    A = col
                    lda = K
                gemm(0, 0, rows, COg, K, A, lda, kernel + gi * COg, g.CO, 0, yt + gi * COg, g.CO)
            if bias != NULL:
                for r in range(rows):
                    for c in range(g.CO):
                        yt[r * g.CO + c] += bias[c]
        free(col)
    return -1 if failed else 0


cdef int backward_params(const floating *dy, const floating *x, floating *dkernel,
                         floating *dbias, const ConvGeom *g, int num_threads) noexcept nogil:
    """Kernel and bias gradients: per-block partial sums over fixed blocks of tiles, then a
    reduction over blocks in block order (independent of the thread count)."""
    cdef int64_t CG = g.C // g.groups
    cdef int64_t COg = g.CO // g.groups
    cdef int64_t K = g.KH * g.KW * CG
    cdef int64_t KC = K * g.CO
    cdef int64_t R = g.N * g.OH * g.OW
    cdef bint pointwise = is_pointwise(g)
    cdef bint direct = use_direct(g)
    cdef int64_t TP = tile_rows(g, R) if R > 0 else 1
    # units of work: images for the direct kernels, im2col tiles otherwise
    cdef int64_t nunits = g.N if direct else (R + TP - 1) // TP
    cdef int64_t per_block = KC + g.CO
    cdef int64_t scratch = cconv_direct_scratch(g) if direct else TP * K
    cdef int64_t nblocks, b, t, r0, rows, gi, r, c, e, lda, HWC = g.H * g.W * g.C, Q = g.OH * g.OW * g.CO
    cdef floating *partial
    cdef floating *pw
    cdef floating *col = NULL
    cdef const floating *dyt
    cdef const floating *A
    cdef floating s
    cdef int failed = 0
    cdef int *failed_p = &failed
    nblocks = PARTIAL_ELEMS // (per_block if per_block > 0 else 1)
    if nblocks > MAX_BLOCKS:
        nblocks = MAX_BLOCKS
    if nblocks > nunits:
        nblocks = nunits
    if nblocks < 1:
        nblocks = 1
    partial = <floating *>calloc(nblocks * per_block + 1, sizeof(floating))
    if partial == NULL:
        return -1
    with parallel(num_threads=num_threads if num_threads < nblocks else <int>nblocks):
        col = NULL
        if direct or (not pointwise and dkernel != NULL):
            col = <floating *>malloc((scratch + 1) * sizeof(floating))
        for b in prange(nblocks, schedule="dynamic"):
            if (direct or (not pointwise and dkernel != NULL)) and col == NULL:
                failed_p[0] = 1
                continue
            pw = partial + b * per_block
            if direct:
                for t in range(b * nunits // nblocks, (b + 1) * nunits // nblocks):
                    if floating is float:
                        cconv_direct_backward_params_f32(dy + t * Q, x + t * HWC,
                                                         pw if dkernel != NULL else NULL,
                                                         pw + KC, g, col)
                    else:
                        cconv_direct_backward_params_f64(dy + t * Q, x + t * HWC,
                                                         pw if dkernel != NULL else NULL,
                                                         pw + KC, g, col)
                continue
            for t in range(b * nunits // nblocks, (b + 1) * nunits // nblocks):
                r0 = t * TP
                rows = R - r0 if R - r0 < TP else TP
                dyt = dy + r0 * g.CO
                if dkernel != NULL:
                    for gi in range(g.groups):
                        if pointwise:
                            A = x + r0 * g.C + gi * CG
                            lda = g.C
                        else:
                            im2col(x, col, g, r0, r0 + rows, gi)
                            A = col
                            lda = K
                        gemm(1, 0, K, COg, rows, A, lda, dyt + gi * COg, g.CO, 1,
                             pw + gi * COg, g.CO)
                for r in range(rows):
                    for c in range(g.CO):
                        pw[KC + c] += dyt[r * g.CO + c]
        free(col)
    if not failed:
        for e in prange(per_block, schedule="static", num_threads=num_threads):
            s = 0
            for b in range(nblocks):
                s = s + partial[b * per_block + e]
            if e < KC:
                if dkernel != NULL:
                    dkernel[e] = s
            elif dbias != NULL:
                dbias[e - KC] = s
    free(partial)
    return -1 if failed else 0


cdef int input_direct(const floating *dy, const floating *kernel, floating *dx,
                      const ConvGeom *g, int num_threads) noexcept nogil:
    cdef int64_t S = cconv_direct_scratch(g)
    cdef int64_t n
    cdef floating *buf = NULL
    cdef int failed = 0
    cdef int *failed_p = &failed
    with parallel(num_threads=num_threads if num_threads < g.N else <int>g.N):
        buf = <floating *>malloc(S * sizeof(floating))
        for n in prange(g.N, schedule="dynamic"):
            if buf == NULL:
                failed_p[0] = 1
                continue
            if floating is float:
                cconv_direct_backward_input_f32(dy + n * g.OH * g.OW * g.CO, kernel,
                                                dx + n * g.H * g.W * g.C, g, buf)
            else:
                cconv_direct_backward_input_f64(dy + n * g.OH * g.OW * g.CO, kernel,
                                                dx + n * g.H * g.W * g.C, g, buf)
        free(buf)
    return -1 if failed else 0


cdef int backward_input(const floating *dy, const floating *kernel, floating *dx,
                        const ConvGeom *g, int num_threads) noexcept nogil:
    """Input gradient: dcol = dy_tile @ W^T, scattered back with col2im; one image per task
    (tiles of one image overlap in dx), tiles and groups in a fixed order."""
    cdef int64_t CG = g.C // g.groups
    cdef int64_t COg = g.CO // g.groups
    cdef int64_t K = g.KH * g.KW * CG
    cdef int64_t P = g.OH * g.OW
    cdef int64_t HWC = g.H * g.W * g.C
    cdef bint pointwise = is_pointwise(g)
    cdef int64_t TP = tile_rows(g, P) if P > 0 else 1
    cdef int64_t ntiles = (P + TP - 1) // TP
    cdef int64_t n, t, p0, rows, gi, it
    cdef floating *dcol = NULL
    cdef const floating *dyt
    cdef int failed = 0
    cdef int *failed_p = &failed
    if use_direct(g) and g.groups > 1:  # with one group, GEMM + col2im measured faster
        return input_direct(dy, kernel, dx, g, num_threads)
    if pointwise:
        for it in prange(g.N * ntiles, schedule="static", num_threads=num_threads):
            n = it // ntiles
            t = it - n * ntiles
            p0 = t * TP
            rows = P - p0 if P - p0 < TP else TP
            for gi in range(g.groups):
                gemm(0, 1, rows, CG, COg, dy + (n * P + p0) * g.CO + gi * COg, g.CO,
                     kernel + gi * COg, g.CO, 0, dx + (n * P + p0) * g.C + gi * CG, g.C)
        return 0
    with parallel(num_threads=num_threads if num_threads < g.N else <int>g.N):
        dcol = <floating *>malloc((TP * K + 1) * sizeof(floating))
        for n in prange(g.N, schedule="dynamic"):
            if dcol == NULL:
                failed_p[0] = 1
                continue
            memset(dx + n * HWC, 0, HWC * sizeof(floating))
            for t in range(ntiles):
                p0 = t * TP
                rows = P - p0 if P - p0 < TP else TP
                dyt = dy + (n * P + p0) * g.CO
                for gi in range(g.groups):
                    gemm(0, 1, rows, K, COg, dyt + gi * COg, g.CO, kernel + gi * COg, g.CO,
                         0, dcol, K)
                    col2im_add(dcol, dx + n * HWC, g, p0, p0 + rows, gi)
        free(dcol)
    return -1 if failed else 0


cdef int conv2d_backward_c(const floating *dy, const floating *x, const floating *kernel,
                           floating *dx, floating *dkernel, floating *dbias,
                           ConvGeom g, int num_threads) noexcept nogil:
    cdef int status = 0
    if dkernel != NULL or dbias != NULL:
        status = backward_params(dy, x, dkernel, dbias, &g, num_threads)
    if status == 0 and dx != NULL and g.N > 0:
        if g.OH * g.OW == 0 or g.CO == 0:
            memset(dx, 0, g.N * g.H * g.W * g.C * sizeof(floating))
        else:
            status = backward_input(dy, kernel, dx, &g, num_threads)
    return status


cdef ConvGeom make_geom(tuple xshape, tuple kshape, tuple yshape, tuple strides,
                        tuple dilation, tuple pads_before, int64_t groups):
    cdef ConvGeom g
    g.N, g.H, g.W, g.C = xshape
    g.KH, g.KW = kshape[0], kshape[1]
    g.CO = kshape[3]
    g.OH, g.OW = yshape[1], yshape[2]
    g.sh, g.sw = strides
    g.dh, g.dw = dilation
    g.pt, g.pl = pads_before
    g.groups = groups
    return g


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] kernel,
                   const floating[::1] bias, floating[:, :, :, ::1] y,
                   tuple strides, tuple dilation, tuple pads_before, int groups, int num_threads):
    """Fill ``y`` (N, OH, OW, CO) with conv(x, kernel) + bias. Arguments are validated by
    ``cconv.ops``; this function trusts them."""
    cdef ConvGeom g = make_geom((x.shape[0], x.shape[1], x.shape[2], x.shape[3]), (kernel.shape[0], kernel.shape[1], kernel.shape[2], kernel.shape[3]), (y.shape[0], y.shape[1], y.shape[2], y.shape[3]),
                                strides, dilation, pads_before, groups)
    cdef const floating *bptr = NULL
    cdef int status
    cdef const floating *xp = &x[0, 0, 0, 0] if x.size else NULL
    cdef const floating *kp = &kernel[0, 0, 0, 0] if kernel.size else NULL
    cdef floating *yp = &y[0, 0, 0, 0] if y.size else NULL
    if bias is not None and bias.shape[0] > 0:
        bptr = &bias[0]
    with nogil:
        status = conv2d_forward_c(xp, kp, bptr, yp, g, num_threads)
    if status:
        raise MemoryError("conv2d: could not allocate the im2col workspace")


def conv2d_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] kernel, floating[:, :, :, ::1] dx,
                    floating[:, :, :, ::1] dkernel, floating[::1] dbias,
                    tuple strides, tuple dilation, tuple pads_before, int groups, int num_threads):
    """Fill ``dx``, ``dkernel`` and ``dbias`` (any may be None) from ``dy``."""
    cdef ConvGeom g = make_geom((x.shape[0], x.shape[1], x.shape[2], x.shape[3]), (kernel.shape[0], kernel.shape[1], kernel.shape[2], kernel.shape[3]), (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]),
                                strides, dilation, pads_before, groups)
    cdef floating *dxp = NULL
    cdef floating *dkp = NULL
    cdef floating *dbp = NULL
    cdef int status
    if dx is not None and dx.size:
        dxp = &dx[0, 0, 0, 0]
    if dkernel is not None and dkernel.size:
        dkp = &dkernel[0, 0, 0, 0]
    if dbias is not None and dbias.shape[0]:
        dbp = &dbias[0]
    cdef const floating *dyp = &dy[0, 0, 0, 0] if dy.size else NULL
    cdef const floating *xp = &x[0, 0, 0, 0] if x.size else NULL
    cdef const floating *kp = &kernel[0, 0, 0, 0] if kernel.size else NULL
    with nogil:
        status = conv2d_backward_c(dyp, xp, kp, dxp, dkp, dbp, g, num_threads)
    if status:
        raise MemoryError("conv2d_backward: could not allocate a workspace")
