# Included by conv.pyx: im2col + GEMM, the general algorithm: tiles of output positions are
# unfolded into rows of the im2col matrix (per thread) and multiplied by the kernel (gemm.h).
# Pointwise convolutions use the same tile loops with the input as the matrix.

cdef extern from "implicit.h" nogil:
    int cconv_implicit_ok(const void *g, int elem)
    void cconv_implicit_rows_f32(const float *x, const float *w, const float *bias, float *y,
                                 const void *g, int64_t r0, int64_t r1, int relu)
    void cconv_implicit_rows_f64(const double *x, const double *w, const double *bias,
                                 double *y, const void *g, int64_t r0, int64_t r1, int relu)
    int64_t cconv_implicit_plane(const void *g)
    void cconv_implicit_pad_f32(const float *x, const void *g, float *plane)
    void cconv_implicit_pad_f64(const double *x, const void *g, double *plane)


cdef inline void implicit_rows(const floating *x, const floating *w, const floating *bias,
                               floating *y, const ConvGeom *g, int64_t r0,
                               int64_t r1) noexcept nogil:
    """Rows r0..r1 of y = conv(x, w) + bias with the im2col rows read in place from x: the
    bits of im2col + GEMM + bias (implicit.h), where cconv_implicit_ok allows it."""
    if floating is float:
        cconv_implicit_rows_f32(x, w, bias, y, g, r0, r1, 0)
    else:
        cconv_implicit_rows_f64(x, w, bias, y, g, r0, r1, 0)


cdef inline ConvGeom plane_geom(const ConvGeom *g) noexcept nogil:
    """The geometry of the same convolution on one image's zero-padded plane
    (cconv_implicit_pad): the windows' extent, no padding, one image."""
    cdef ConvGeom p = g[0]
    p.N = 1
    p.H = (g.OH - 1) * g.sh + (g.KH - 1) * g.dh + 1
    p.W = (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1
    p.pt = 0
    p.pl = 0
    return p


cdef inline bint use_planes(const ConvGeom *g, int elem) noexcept nogil:
    """A padded convolution whose rows can be read in place from per-image padded planes of
    at most PLANE_ELEMS elements (one group; implicit.h's other conditions)."""
    cdef ConvGeom p
    if (g.groups != 1 or g.N <= 0 or g.OH <= 0 or g.OW <= 0
            or (g.pt == 0 and g.pl == 0 and cconv_implicit_ok(g, elem))):
        return False
    p = plane_geom(g)
    return cconv_implicit_plane(g) <= PLANE_ELEMS and cconv_implicit_ok(&p, elem)


cdef int forward_planes(const floating *x, const floating *kernel, const floating *bias,
                        floating *y, const ConvGeom *g, int num_threads) noexcept nogil:
    """y = conv(x, kernel) + bias for a padded convolution (use_planes): each image copied
    into a zero-padded plane, its rows read in place from it (the bits of im2col + GEMM).
    Units: images, each split into ``parts`` runs of output rows when there are fewer
    images than threads (each part pads its image again)."""
    cdef ConvGeom p = plane_geom(g)
    cdef int64_t S = cconv_implicit_plane(g), P = g.OH * g.OW
    cdef int64_t parts = (num_threads + g.N - 1) // g.N if g.N < num_threads else 1
    cdef int64_t units = g.N * parts, u, n, q
    cdef floating *plane = NULL
    cdef int failed = 0
    cdef int *failed_p = &failed
    if num_threads > units:
        num_threads = <int>units
    with parallel(num_threads=num_threads):
        plane = <floating *>malloc((S + 1) * sizeof(floating))
        for u in prange(units, schedule="dynamic"):
            if plane == NULL:
                failed_p[0] = 1
                continue
            n = u // parts
            q = u - n * parts
            if floating is float:
                cconv_implicit_pad_f32(x + n * g.H * g.W * g.C, g, plane)
                cconv_implicit_rows_f32(plane, kernel, bias, y + n * P * g.CO, &p,
                                        q * P // parts, (q + 1) * P // parts, 0)
            else:
                cconv_implicit_pad_f64(x + n * g.H * g.W * g.C, g, plane)
                cconv_implicit_rows_f64(plane, kernel, bias, y + n * P * g.CO, &p,
                                        q * P // parts, (q + 1) * P // parts, 0)
        free(plane)
    return -WORKSPACE_IM2COL if failed else 0


cdef inline int64_t tile_rows(const ConvGeom *g, int64_t total) noexcept nogil:
    """Rows of the im2col matrix per tile (at most ``total``): a function of the shapes alone."""
    cdef int64_t k = g.KH * g.KW * (g.C // g.groups)
    cdef int64_t t = TILE_ELEMS // (k if k > 0 else 1)
    if t < 1:
        t = 1
    return t if t < total else total


cdef inline int64_t params_tile_rows(const ConvGeom *g, int64_t total) noexcept nogil:
    """Rows of the im2col matrix per tile of the kernel gradient: up to PARAMS_TILE_SCALE
    times ``tile_rows`` while that leaves PARAMS_MIN_TILES tiles (each tile's GEMM then
    reduces over more rows per pass over the K x CO gradient); shapes alone decide."""
    cdef int64_t t = tile_rows(g, total)
    cdef int64_t big = total // PARAMS_MIN_TILES
    if big > PARAMS_TILE_SCALE * t:
        big = PARAMS_TILE_SCALE * t
    return big if big > t else t


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
    """The adjoint of im2col for rows p0..p1 of one image:
    dx[n, ih, iw, gi * CG + c] += col[...]."""
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


cdef int forward_tiles(const floating *x, const floating *kernel, const floating *bias,
                       floating *y, const ConvGeom *g, bint pointwise,
                       int num_threads) noexcept nogil:
    """y = conv(x, kernel) + bias, tiles of output positions in parallel, one GEMM per tile
    and group; ``pointwise``: x is the im2col matrix itself."""
    cdef int64_t CG = g.C // g.groups
    cdef int64_t COg = g.CO // g.groups
    cdef int64_t K = g.KH * g.KW * CG
    cdef int64_t R = g.N * g.OH * g.OW          # rows of the batch's im2col matrix
    cdef int64_t CO = g.CO                      # a local: stores to y cannot change it
    cdef int64_t TP, ntiles, t, r0, rows, gi, r, c, lda
    cdef floating *col = NULL
    cdef floating *yt
    cdef const floating *A
    cdef int failed = 0
    cdef int *failed_p = &failed
    cdef floating *packed = NULL
    cdef int level = -1
    cdef bint implicit = not pointwise and cconv_implicit_ok(g, sizeof(floating))
    if not pointwise and use_planes(g, sizeof(floating)):
        return forward_planes(x, kernel, bias, y, g, num_threads)
    TP = tile_rows(g, R)
    ntiles = (R + TP - 1) // TP
    if num_threads > ntiles:
        num_threads = <int>ntiles
    if g.groups == 1 and ntiles > 1 and not implicit:  # the kernel packed once for all GEMMs
        packed = <floating *>malloc((gemm_packed_size(kernel, K, CO) + 1) * sizeof(floating))
        if packed != NULL:
            level = gemm_pack(NO_TRANS, K, CO, kernel, CO, packed)
    with parallel(num_threads=num_threads):
        col = NULL
        if not pointwise and not implicit:
            col = <floating *>malloc((TP * K + 1) * sizeof(floating))
        for t in prange(ntiles, schedule="dynamic"):
            r0 = t * TP
            rows = R - r0 if R - r0 < TP else TP
            if implicit:
                implicit_rows(x, kernel, bias, y, g, r0, r0 + rows)
                continue
            if not pointwise and col == NULL:
                failed_p[0] = 1
                continue
            yt = y + r0 * CO
            for gi in range(g.groups):
                if pointwise:
                    A = x + r0 * g.C + gi * CG
                    lda = g.C
                else:
                    im2col(x, col, g, r0, r0 + rows, gi)
                    A = col
                    lda = K
                if packed != NULL:
                    gemm_packed(NO_TRANS, rows, CO, K, A, lda, kernel, CO, packed, level, yt, CO)
                else:
                    gemm(NO_TRANS, NO_TRANS, rows, COg, K, A, lda, kernel + gi * COg, CO, 0,
                         yt + gi * COg, CO)
            if bias != NULL:
                for r in range(rows):
                    for c in range(CO):
                        yt[r * CO + c] += bias[c]
        free(col)
    free(packed)
    return -WORKSPACE_IM2COL if failed else 0


cdef void tiles_params(const floating *dy, const floating *x, floating *dw, floating *db,
                       const ConvGeom *g, int64_t TP, int64_t t0, int64_t t1, bint pointwise,
                       floating *col) noexcept nogil:
    """Adds the kernel gradient (dw, unless NULL) and bias gradient (db) of tiles t0 .. t1 of
    TP output positions: dw += col^T @ dy_tile per group; ``col`` holds one tile."""
    cdef int64_t CG = g.C // g.groups
    cdef int64_t COg = g.CO // g.groups
    cdef int64_t K = g.KH * g.KW * CG
    cdef int64_t R = g.N * g.OH * g.OW
    cdef int64_t CO = g.CO                      # a local: stores to db cannot change it
    cdef int64_t t, r0, rows, gi, r, c, lda
    cdef const floating *dyt
    cdef const floating *A
    for t in range(t0, t1):
        r0 = t * TP
        rows = R - r0 if R - r0 < TP else TP
        dyt = dy + r0 * CO
        if dw != NULL:
            for gi in range(g.groups):
                if pointwise:
                    A = x + r0 * g.C + gi * CG
                    lda = g.C
                else:
                    im2col(x, col, g, r0, r0 + rows, gi)
                    A = col
                    lda = K
                gemm(TRANS, NO_TRANS, K, COg, rows, A, lda, dyt + gi * COg, CO, 1,
                     dw + gi * COg, CO)
        for r in range(rows):
            for c in range(CO):
                db[c] += dyt[r * CO + c]


cdef int input_im2col(const floating *dy, const floating *kernel, floating *dx,
                      const ConvGeom *g, int num_threads) noexcept nogil:
    """Input gradient: dcol = dy_tile @ W^T, scattered back with col2im; one image per task
    (tiles of one image overlap in dx), tiles and groups in a fixed order."""
    cdef int64_t CG = g.C // g.groups
    cdef int64_t COg = g.CO // g.groups
    cdef int64_t K = g.KH * g.KW * CG
    cdef int64_t P = g.OH * g.OW
    cdef int64_t HWC = g.H * g.W * g.C
    cdef int64_t TP = tile_rows(g, P) if P > 0 else 1
    cdef int64_t ntiles = (P + TP - 1) // TP
    cdef int64_t n, t, p0, rows, gi
    cdef floating *dcol = NULL
    cdef const floating *dyt
    cdef int failed = 0
    cdef int *failed_p = &failed
    cdef floating *packed = NULL
    cdef int level = -1
    if g.groups == 1 and g.N * ntiles > 1:   # W^T packed once for all tiles' GEMMs
        packed = <floating *>malloc((gemm_packed_size(kernel, g.CO, K) + 1) * sizeof(floating))
        if packed != NULL:
            level = gemm_pack(TRANS, g.CO, K, kernel, g.CO, packed)
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
                    if packed != NULL:
                        gemm_packed(TRANS, rows, K, g.CO, dyt, g.CO, kernel, g.CO, packed,
                                    level, dcol, K)
                    else:
                        gemm(NO_TRANS, TRANS, rows, K, COg, dyt + gi * COg, g.CO,
                             kernel + gi * COg, g.CO, 0, dcol, K)
                    col2im_add(dcol, dx + n * HWC, g, p0, p0 + rows, gi)
        free(dcol)
    free(packed)
    return -WORKSPACE_IM2COL if failed else 0
