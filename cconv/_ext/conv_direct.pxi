# Included by conv.pyx: the direct algorithm (direct.h), for few input channels and filters per
# group (LeNet's first layer, depthwise convolutions): one image per task, no im2col matrix.

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
    kernels win. Pointwise convolutions need no im2col."""
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
            if forward:
                direct_forward(src + n * in_size, kernel, bias, dst + n * out_size, g, buf)
            else:
                direct_backward_input(src + n * out_size, kernel, dst + n * in_size, g, buf)
        free(buf)
    return -WORKSPACE_DIRECT if failed else 0


cdef void direct_params_images(const floating *dy, const floating *x, floating *dw,
                               floating *db, const ConvGeom *g, int64_t n0, int64_t n1,
                               floating *scratch) noexcept nogil:
    """Adds the kernel gradient (dw, unless NULL) and bias gradient (db) of images n0 .. n1:
    kgrad.h's for few taps (direct.h's for an image holding Inf or NaN), else direct.h's.
    ``scratch``: direct_params_scratch(g) elements."""
    cdef int64_t n
    cdef int64_t HWC = g.H * g.W * g.C
    cdef int64_t Q = g.OH * g.OW * g.CO
    cdef bint kgrad = use_kgrad(g)
    cdef int bad
    for n in range(n0, n1):
        bad = 1
        if kgrad:
            if floating is float:
                bad = cconv_kgrad_image_f32(dy + n * Q, x + n * HWC, dw, db, g, scratch)
            else:
                bad = cconv_kgrad_image_f64(dy + n * Q, x + n * HWC, dw, db, g, scratch)
        if bad:
            direct_backward_params(dy + n * Q, x + n * HWC, dw, db, g, scratch)
