# Included by conv.pyx: the direct algorithm (direct.h), for few input channels and filters per
# group (LeNet's first layer, depthwise convolutions): one image per task, no im2col matrix.

cdef extern from "direct.h" nogil:
    int64_t cconv_direct_scratch(const void *g)
    bint cconv_dw_applies(const void *g)
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

cdef extern from "direct.h" nogil:
    void cconv_dw_forward_rows_f32(const float *x, const float *w, const float *bias, float *y,
                                   const void *g, float *scratch, int relu, int64_t r0,
                                   int64_t r1)
    void cconv_dw_forward_rows_f64(const double *x, const double *w, const double *bias,
                                   double *y, const void *g, double *scratch, int relu,
                                   int64_t r0, int64_t r1)
    void cconv_dw_backward_input_rows_f32(const float *dy, const float *w, float *dx,
                                          const void *g, float *scratch, int64_t r0, int64_t r1)
    void cconv_dw_backward_input_rows_f64(const double *dy, const double *w, double *dx,
                                          const void *g, double *scratch, int64_t r0,
                                          int64_t r1)
    void cconv_dw_backward_params_rows_f32(const float *dy, const float *x, float *dw,
                                           float *db, const void *g, float *scratch,
                                           int64_t r0, int64_t r1)
    void cconv_dw_backward_params_rows_f64(const double *dy, const double *x, double *dw,
                                           double *db, const void *g, double *scratch,
                                           int64_t r0, int64_t r1)

cdef extern from "kgrad.h" nogil:
    int CCONV_KGRAD_MAX_TAPS
    int64_t cconv_kgrad_scratch(const void *g)
    int cconv_kgrad_image_f32(const float *dy, const float *x, float *dw, float *db,
                              const void *g, float *scratch)
    int cconv_kgrad_image_f64(const double *dy, const double *x, double *dw, double *db,
                              const void *g, double *scratch)


cdef inline void direct_forward(const floating *x, const floating *w, const floating *bias,
                                floating *y, const ConvGeom *g, floating *scratch) noexcept nogil:
    if floating is float:
        cconv_direct_forward_f32(x, w, bias, y, g, scratch)
    else:
        cconv_direct_forward_f64(x, w, bias, y, g, scratch)


cdef inline void direct_backward_params(const floating *dy, const floating *x, floating *dw,
                                        floating *db, const ConvGeom *g,
                                        floating *scratch) noexcept nogil:
    if floating is float:
        cconv_direct_backward_params_f32(dy, x, dw, db, g, scratch)
    else:
        cconv_direct_backward_params_f64(dy, x, dw, db, g, scratch)


cdef inline void direct_backward_input(const floating *dy, const floating *w, floating *dx,
                                       const ConvGeom *g, floating *scratch) noexcept nogil:
    if floating is float:
        cconv_direct_backward_input_f32(dy, w, dx, g, scratch)
    else:
        cconv_direct_backward_input_f64(dy, w, dx, g, scratch)


cdef enum:
    # Units of work a small batch of large depthwise convolutions is cut into (row blocks of
    # its images), so that every thread has some
    DW_MIN_UNITS = 8
    # Multiply-adds of one image below which it stays one unit: waking a second thread cost
    # 1.5 ms under load here, 35x the whole 32x32x64 3x3 forward (0.04 ms on one thread)
    DW_SPLIT_MACS = 8388608


cdef inline int64_t dw_row_blocks(const ConvGeom *g) noexcept nogil:
    """Row blocks per image of the depthwise kernels (dwconv.h): from the shapes alone, never
    the thread count, as the kernel gradient's partial sums follow them. 1 from DW_MIN_UNITS
    images on, or for images of fewer than DW_SPLIT_MACS multiply-adds."""
    cdef int64_t r
    if (not cconv_dw_applies(g) or g.N >= DW_MIN_UNITS
            or g.OH * g.OW * g.CO * g.KH * g.KW < DW_SPLIT_MACS):
        return 1
    r = (DW_MIN_UNITS + g.N - 1) // g.N
    return r if r < g.OH else max(g.OH, 1)


cdef inline void dw_unit(int step, const floating *a, const floating *b, const floating *bias,
                         floating *out, floating *out2, const ConvGeom *g, int64_t u,
                         floating *scratch) noexcept nogil:
    """Unit u (image u // R, row block u % R, R = dw_row_blocks(g)) of a depthwise step:
    STEP_FORWARD x (a) -> y (out); STEP_INPUT_GRADIENT dy (a) -> dx (out); STEP_KERNEL_GRADIENT
    dw (out) and db (out2) += from dy (a) and x (b). b is the kernel for the first two."""
    cdef int64_t R = dw_row_blocks(g)
    cdef int64_t n = u // R
    cdef int64_t blk = u - n * R
    cdef int64_t rows = g.H if step == STEP_INPUT_GRADIENT else g.OH
    cdef int64_t r0 = blk * rows // R
    cdef int64_t r1 = (blk + 1) * rows // R
    cdef int64_t xs = g.H * g.W * g.C
    cdef int64_t ys = g.OH * g.OW * g.CO
    if step == STEP_FORWARD:
        if floating is float:
            cconv_dw_forward_rows_f32(a + n * xs, b, bias, out + n * ys, g, scratch, 0, r0, r1)
        else:
            cconv_dw_forward_rows_f64(a + n * xs, b, bias, out + n * ys, g, scratch, 0, r0, r1)
    elif step == STEP_INPUT_GRADIENT:
        if floating is float:
            cconv_dw_backward_input_rows_f32(a + n * ys, b, out + n * xs, g, scratch, r0, r1)
        else:
            cconv_dw_backward_input_rows_f64(a + n * ys, b, out + n * xs, g, scratch, r0, r1)
    else:
        if floating is float:
            cconv_dw_backward_params_rows_f32(a + n * ys, b + n * xs, out, out2, g, scratch,
                                              r0, r1)
        else:
            cconv_dw_backward_params_rows_f64(a + n * ys, b + n * xs, out, out2, g, scratch,
                                              r0, r1)


cdef inline bint padded_plane_fits(const ConvGeom *g) noexcept nogil:
    """Whether the zero-padded copy of one image that direct.h and kgrad.h read (the extent
    the windows cover) stays near x's size: huge dilation or padding would make it far
    larger."""
    cdef int64_t hp = (g.OH - 1) * g.sh + (g.KH - 1) * g.dh + 1
    cdef int64_t wp = (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1
    return hp * wp <= 4 * g.H * g.W + 65536


cdef inline bint use_direct(const ConvGeom *g) noexcept nogil:
    """Few input channels and filters per group (LeNet's first layer, depthwise): im2col rows
    would be a handful of scattered elements feeding a GEMM a few columns wide, so the direct
    kernels win. Pointwise convolutions need no im2col. Depthwise convolutions (groups == C >
    1, any depth multiplier) run direct.h's depthwise kernels (dwconv.h), which read x in
    place: no padded plane."""
    if g.groups == g.C and g.C > 1 and cconv_dw_applies(g) and not is_pointwise(g):
        return True
    return (g.C // g.groups <= DIRECT_MAX_CG and g.CO // g.groups <= DIRECT_MAX_COG
            and not is_pointwise(g) and padded_plane_fits(g))


cdef inline bint use_kgrad(const ConvGeom *g) noexcept nogil:
    """Kernel gradient: few taps (KH * KW * C, one group) and more filters than the direct
    kernels take, where im2col + GEMM is a product with a tiny output; kgrad.h accumulates
    each weight in registers instead (measured, one thread: 3x3 RGB -> 32 filters 2.1x
    faster, 5x5 x 2 channels -> 24 filters 2.4x; LeNet's 1 -> 6 stays with direct.h, 10%
    faster there)."""
    return (g.groups == 1 and g.KH * g.KW * g.C <= CCONV_KGRAD_MAX_TAPS and not is_pointwise(g)
            and not use_direct(g) and padded_plane_fits(g))


cdef inline int64_t direct_params_scratch(const ConvGeom *g) noexcept nogil:
    """Scratch elements of direct_params_images."""
    cdef int64_t s = cconv_direct_scratch(g)
    if use_kgrad(g) and cconv_kgrad_scratch(g) > s:
        s = cconv_kgrad_scratch(g)
    return s


cdef int direct_per_image(bint forward, const floating *src, const floating *kernel,
                          const floating *bias, floating *dst, const ConvGeom *g,
                          int num_threads) noexcept nogil:
    """The direct kernels, one image per task, one scratch buffer per thread: ``forward``
    maps x (src) to y (dst) adding ``bias``; otherwise dy (src) to dx (dst)."""
    cdef int64_t S = cconv_direct_scratch(g)
    cdef int64_t in_size = g.H * g.W * g.C
    cdef int64_t out_size = g.OH * g.OW * g.CO
    cdef bint dw = cconv_dw_applies(g)
    cdef int64_t units = g.N * dw_row_blocks(g)    # images, or row blocks of depthwise ones
    cdef int64_t n
    cdef floating *buf = NULL
    cdef int failed = 0
    cdef int *failed_p = &failed
    with parallel(num_threads=num_threads if num_threads < units else <int>units):
        buf = <floating *>malloc(S * sizeof(floating))
        for n in prange(units, schedule="dynamic"):
            if buf == NULL:
                failed_p[0] = 1
                continue
            if dw:
                dw_unit(STEP_FORWARD if forward else STEP_INPUT_GRADIENT, src, kernel, bias,
                        dst, NULL, g, n, buf)
            elif forward:
                direct_forward(src + n * in_size, kernel, bias, dst + n * out_size, g, buf)
            else:
                direct_backward_input(src + n * out_size, kernel, dst + n * in_size, g, buf)
        free(buf)
    return -WORKSPACE_DIRECT if failed else 0


cdef void direct_params_images(const floating *dy, const floating *x, floating *dw,
                               floating *db, const ConvGeom *g, int64_t n0, int64_t n1,
                               floating *scratch, const floating *kernel,
                               floating *dx) noexcept nogil:
    """Adds the kernel gradient (dw, unless NULL) and bias gradient (db) of units n0 .. n1
    (images; for depthwise convolutions row blocks, see dw_row_blocks): kgrad.h's for few taps
    (direct.h's for an image holding Inf or NaN), else direct.h's. ``scratch``:
    direct_params_scratch(g) elements. Depthwise only: with ``dx``, each unit's input
    gradient too (from ``kernel``), right after its kernel gradient."""
    cdef int64_t n
    cdef int64_t HWC = g.H * g.W * g.C
    cdef int64_t Q = g.OH * g.OW * g.CO
    cdef bint kgrad = use_kgrad(g)
    cdef int bad
    if cconv_dw_applies(g):
        for n in range(n0, n1):
            dw_unit(STEP_KERNEL_GRADIENT, dy, x, NULL, dw, db, g, n, scratch)
            if dx != NULL:
                dw_unit(STEP_INPUT_GRADIENT, dy, kernel, NULL, dx, NULL, g, n, scratch)
        return
    for n in range(n0, n1):
        bad = 1
        if kgrad:
            if floating is float:
                bad = cconv_kgrad_image_f32(dy + n * Q, x + n * HWC, dw, db, g, scratch)
            else:
                bad = cconv_kgrad_image_f64(dy + n * Q, x + n * HWC, dw, db, g, scratch)
        if bad:
            direct_backward_params(dy + n * Q, x + n * HWC, dw, db, g, scratch)
