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

from cconv._ext.gemm cimport NO_TRANS, TRANS, gemm

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
    # Winograd F(2x2, 3x3): channels (in and out) from which it replaces im2col + GEMM, and the
    # default elements of one chunk's transformed input + GEMM output (per thread).
    WINO_MIN_C = 16
    # bytes of the transformed kernel (16 x C x CO) always allowed; beyond, up to the output's size
    WINO_KERNEL_BYTES = 33554432
    # fewest blocks of partial sums for the Winograd kernel gradient (parallelism)
    WINO_MIN_BLOCKS = 8
    WINO_CHUNK_ELEMS = 262144


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


cdef extern from "winograd.h" nogil:
    void cconv_wino_kernel_f32(const float *w, int64_t C, int64_t CO, int flip, float *U)
    void cconv_wino_kernel_f64(const double *w, int64_t C, int64_t CO, int flip, double *U)
    void cconv_wino_input_f32(const float *inp, int64_t IH, int64_t IW, int64_t C, int64_t TH,
                              int64_t TW, int64_t pt, int64_t pl, int64_t t0, int64_t nt,
                              float *V, int64_t vs, const float *zeros)
    void cconv_wino_input_f64(const double *inp, int64_t IH, int64_t IW, int64_t C, int64_t TH,
                              int64_t TW, int64_t pt, int64_t pl, int64_t t0, int64_t nt,
                              double *V, int64_t vs, const double *zeros)
    void cconv_wino_kernel_grad_f32(const float *dU, int64_t C, int64_t CO, float *dk)
    void cconv_wino_kernel_grad_f64(const double *dU, int64_t C, int64_t CO, double *dk)
    void cconv_wino_dy_f32(const float *dy, int64_t OH, int64_t OW, int64_t CO, int64_t TH,
                           int64_t TW, int64_t t0, int64_t nt, float *dM, int64_t ms,
                           const float *zeros, float *acc)
    void cconv_wino_dy_f64(const double *dy, int64_t OH, int64_t OW, int64_t CO, int64_t TH,
                           int64_t TW, int64_t t0, int64_t nt, double *dM, int64_t ms,
                           const double *zeros, double *acc)
    void cconv_wino_output_f32(const float *M, int64_t ms, int64_t CO, const float *bias,
                               float *out, int64_t OH, int64_t OW, int64_t TH, int64_t TW,
                               int64_t t0, int64_t nt, float *trash)
    void cconv_wino_output_f64(const double *M, int64_t ms, int64_t CO, const double *bias,
                               double *out, int64_t OH, int64_t OW, int64_t TH, int64_t TW,
                               int64_t t0, int64_t nt, double *trash)


cdef inline void wino_kernel(const floating *w, int64_t C, int64_t CO, int flip,
                             floating *U) noexcept nogil:
    if floating is float:
        cconv_wino_kernel_f32(w, C, CO, flip, U)
    else:
        cconv_wino_kernel_f64(w, C, CO, flip, U)


cdef inline void wino_kernel_grad(const floating *dU, int64_t C, int64_t CO,
                                  floating *dk) noexcept nogil:
    if floating is float:
        cconv_wino_kernel_grad_f32(dU, C, CO, dk)
    else:
        cconv_wino_kernel_grad_f64(dU, C, CO, dk)


cdef inline void wino_input(const floating *inp, int64_t IH, int64_t IW, int64_t C, int64_t TH,
                            int64_t TW, int64_t pt, int64_t pl, int64_t t0, int64_t nt,
                            floating *V, int64_t vs, const floating *zeros) noexcept nogil:
    if floating is float:
        cconv_wino_input_f32(inp, IH, IW, C, TH, TW, pt, pl, t0, nt, V, vs, zeros)
    else:
        cconv_wino_input_f64(inp, IH, IW, C, TH, TW, pt, pl, t0, nt, V, vs, zeros)


cdef inline void wino_dy(const floating *dy, int64_t OH, int64_t OW, int64_t CO, int64_t TH,
                         int64_t TW, int64_t t0, int64_t nt, floating *dM, int64_t ms,
                         const floating *zeros, floating *acc) noexcept nogil:
    if floating is float:
        cconv_wino_dy_f32(dy, OH, OW, CO, TH, TW, t0, nt, dM, ms, zeros, acc)
    else:
        cconv_wino_dy_f64(dy, OH, OW, CO, TH, TW, t0, nt, dM, ms, zeros, acc)


cdef inline void wino_output(const floating *M, int64_t ms, int64_t CO, const floating *bias,
                             floating *out, int64_t OH, int64_t OW, int64_t TH, int64_t TW,
                             int64_t t0, int64_t nt, floating *trash) noexcept nogil:
    if floating is float:
        cconv_wino_output_f32(M, ms, CO, bias, out, OH, OW, TH, TW, t0, nt, trash)
    else:
        cconv_wino_output_f64(M, ms, CO, bias, out, OH, OW, TH, TW, t0, nt, trash)


# Winograd F(2x2, 3x3) (winograd.h). Elements (per thread) of the transformed input and GEMM
# output of one chunk of tiles: a function of the shapes only, never of the thread count.
cdef int64_t wino_chunk_elems = WINO_CHUNK_ELEMS


def _set_winograd_chunk_elems(int64_t elems):
    """Benchmark hook: per-thread elements of one Winograd chunk (returns the previous)."""
    global wino_chunk_elems
    cdef int64_t before = wino_chunk_elems
    if elems > 0:
        wino_chunk_elems = elems
    return before


cdef inline bint use_winograd(const ConvGeom *g, bint input_gradient,
                              size_t itemsize) noexcept nogil:
    """3x3, stride 1, dilation 1, one group, at least WINO_MIN_C channels in and out (below,
    the 16 GEMMs are too thin: measured slower for 8->8 and 12->12, faster from 16->16), an
    output (x for the input gradient) of at least 2x2 (a 2x2 tile for one output wastes 3/4)
    and a transformed kernel that is small next to 32 MB or the output. Depends on the shapes
    alone, never on the thread count."""
    cdef int64_t oh = g.H if input_gradient else g.OH
    cdef int64_t ow = g.W if input_gradient else g.OW
    cdef int64_t ucost = 16 * g.C * g.CO * <int64_t>itemsize
    cdef int64_t out_bytes = g.N * oh * ow * (g.C if input_gradient else g.CO) * <int64_t>itemsize
    return (g.KH == 3 and g.KW == 3 and g.sh == 1 and g.sw == 1 and g.dh == 1 and g.dw == 1
            and g.groups == 1 and g.C >= WINO_MIN_C and g.CO >= WINO_MIN_C
            and oh >= 2 and ow >= 2 and (ucost <= WINO_KERNEL_BYTES or ucost <= out_bytes))


def _uses_winograd(tuple xshape, tuple kshape, tuple yshape, tuple strides, tuple dilation,
                   int groups, int itemsize, bint input_gradient):
    """Test hook: whether the forward pass (or the input gradient) of this geometry runs
    Winograd."""
    cdef ConvGeom g = make_geom(xshape, kshape, yshape, strides, dilation, (0, 0), groups)
    return use_winograd(&g, input_gradient, itemsize)


cdef int winograd_conv(const floating *inp, int64_t N, int64_t IH, int64_t IW, int64_t Cin,
                       const floating *U, int64_t Cout, const floating *bias, floating *out,
                       int64_t OH, int64_t OW, int64_t pt, int64_t pl,
                       int num_threads) noexcept nogil:
    """out (N, OH, OW, Cout) = conv3x3(inp (N, IH, IW, Cin), padding before pt, pl) + bias with
    the kernel already transformed into U (16, Cin, Cout). Chunks of TC consecutive tiles of
    the whole batch are independent: input transform, 16 GEMMs, output transform."""
    cdef int64_t TH = (OH + 1) // 2
    cdef int64_t TW = (OW + 1) // 2
    cdef int64_t T = N * TH * TW
    cdef int64_t TC = wino_chunk_tiles(Cin, Cout, T)
    cdef int64_t nchunks, ch, t0, nt, e
    cdef int64_t S
    cdef floating *buf = NULL
    cdef floating *V
    cdef floating *M
    cdef floating *zeros
    cdef int failed = 0
    cdef int *failed_p = &failed
    nchunks = (T + TC - 1) // TC
    # V (16 x TC x Cin), M (16 x TC x Cout), zeros (Cin and the bias stand-in, Cout), trash
    S = 16 * TC * (Cin + Cout) + Cin + Cout + 3 * Cout
    with parallel(num_threads=num_threads if num_threads < nchunks else <int>nchunks):
        buf = <floating *>malloc(S * sizeof(floating))
        if buf != NULL:
            memset(buf + 16 * TC * (Cin + Cout), 0, (Cin + Cout) * sizeof(floating))
        for ch in prange(nchunks, schedule="dynamic"):
            if buf == NULL:
                failed_p[0] = 1
                continue
            V = buf
            M = buf + 16 * TC * Cin
            zeros = M + 16 * TC * Cout
            t0 = ch * TC
            nt = T - t0 if T - t0 < TC else TC
            wino_input(inp, IH, IW, Cin, TH, TW, pt, pl, t0, nt, V, nt * Cin, zeros)
            for e in range(16):
                gemm(NO_TRANS, NO_TRANS, nt, Cout, Cin, V + e * nt * Cin, Cin,
                     U + e * Cin * Cout, Cout, 0, M + e * nt * Cout, Cout)
            wino_output(M, nt * Cout, Cout, bias if bias != NULL else zeros + Cin,
                        out, OH, OW, TH, TW, t0, nt, zeros + Cin + Cout)
        free(buf)
    return -WORKSPACE_WINO_CHUNK if failed else 0


cdef int forward_winograd(const floating *x, const floating *kernel, const floating *bias,
                          floating *y, const ConvGeom *g, int num_threads) noexcept nogil:
    cdef floating *U = <floating *>malloc(16 * g.C * g.CO * sizeof(floating))
    cdef int status
    if U == NULL:
        return -WORKSPACE_WINO_KERNEL
    wino_kernel(kernel, g.C, g.CO, 0, U)
    status = winograd_conv(x, g.N, g.H, g.W, g.C, U, g.CO, bias, y, g.OH, g.OW, g.pt, g.pl,
                           num_threads)
    free(U)
    return status


cdef inline int64_t wino_chunk_tiles(int64_t Cin, int64_t Cout, int64_t T) noexcept nogil:
    """Tiles per chunk: whole GEMM micro-panels (MR = 12 / 6), from the shapes only."""
    cdef int64_t TC = wino_chunk_elems // (16 * (Cin + Cout))
    TC = (TC // 12) * 12
    if TC < 12:
        TC = 12
    return TC if TC < T else T


cdef inline int64_t wino_grad_blocks(const ConvGeom *g) noexcept nogil:
    """Blocks of chunks with their own partial dU (16 x C x CO) for the kernel gradient;
    0 when fewer than WINO_MIN_BLOCKS fit the partial-sum budget (then im2col + GEMM runs)."""
    cdef int64_t T = g.N * ((g.OH + 1) // 2) * ((g.OW + 1) // 2)
    cdef int64_t TC = wino_chunk_tiles(g.C, g.CO, T)
    cdef int64_t nchunks = (T + TC - 1) // TC
    cdef int64_t nb = PARTIAL_ELEMS // (16 * g.C * g.CO + g.CO)
    if nb > MAX_BLOCKS:
        nb = MAX_BLOCKS
    if nb > nchunks:
        nb = nchunks
    return nb if nb >= WINO_MIN_BLOCKS or nb == nchunks else 0


cdef int params_winograd(const floating *dy, const floating *x, floating *dkernel,
                         floating *dbias, const ConvGeom *g, int64_t nblocks,
                         int num_threads) noexcept nogil:
    """Kernel (and bias) gradient through the transformed kernel: per chunk
    dU[e] += V[e]^T @ dM[e] (V: input transform of x, dM = A dY A^T), partial sums per fixed
    block of chunks, reduced in block order, then dk = G^T dU G. dbias sums dM[5] (the sum
    of each 2x2 dy tile) alongside."""
    cdef int64_t C = g.C, CO = g.CO
    cdef int64_t TH = (g.OH + 1) // 2
    cdef int64_t TW = (g.OW + 1) // 2
    cdef int64_t T = g.N * TH * TW
    cdef int64_t TC = wino_chunk_tiles(C, CO, T)
    cdef int64_t nchunks = (T + TC - 1) // TC
    cdef int64_t UE = 16 * C * CO
    cdef int64_t per_block = UE + CO
    cdef int64_t S = 16 * TC * (C + CO) + (C if C > CO else CO)
    cdef int64_t b, ch, t0, nt, e, i
    cdef floating *partial
    cdef floating *pw
    cdef floating *buf = NULL
    cdef floating *V
    cdef floating *dM
    cdef floating *zeros
    cdef floating s
    cdef int failed = 0
    cdef int *failed_p = &failed
    partial = <floating *>calloc(nblocks * per_block + 1, sizeof(floating))
    if partial == NULL:
        return -WORKSPACE_PARTIAL
    with parallel(num_threads=num_threads if num_threads < nblocks else <int>nblocks):
        buf = <floating *>malloc(S * sizeof(floating))
        if buf != NULL:
            memset(buf + 16 * TC * (C + CO), 0, (S - 16 * TC * (C + CO)) * sizeof(floating))
        for b in prange(nblocks, schedule="static"):
            if buf == NULL:
                failed_p[0] = 1
                continue
            pw = partial + b * per_block
            V = buf
            dM = buf + 16 * TC * C
            zeros = dM + 16 * TC * CO
            for ch in range(b * nchunks // nblocks, (b + 1) * nchunks // nblocks):
                t0 = ch * TC
                nt = T - t0 if T - t0 < TC else TC
                wino_input(x, g.H, g.W, C, TH, TW, g.pt, g.pl, t0, nt, V, nt * C, zeros)
                wino_dy(dy, g.OH, g.OW, CO, TH, TW, t0, nt, dM, nt * CO, zeros, pw + UE)
                for e in range(16):
                    gemm(TRANS, NO_TRANS, C, CO, nt, V + e * nt * C, C, dM + e * nt * CO, CO, 1,
                         pw + e * C * CO, CO)
        free(buf)
    if not failed:
        # reduce the blocks in block order into block 0
        for i in prange(per_block, schedule="static", num_threads=num_threads):
            s = partial[i]
            for b in range(1, nblocks):
                s = s + partial[b * per_block + i]
            partial[i] = s
        wino_kernel_grad(partial, C, CO, dkernel)
        if dbias != NULL:
            memcpy(dbias, partial + UE, CO * sizeof(floating))
    free(partial)
    return -WORKSPACE_WINO_CHUNK if failed else 0


cdef int input_winograd(const floating *dy, const floating *kernel, floating *dx,
                        const ConvGeom *g, int num_threads) noexcept nogil:
    """Stride 1: dx is the 3x3 convolution of dy with the kernel flipped in both spatial axes
    and its channel axes swapped, padded by 2 - pt on top and 2 - pl on the left (the padding
    after follows from the output size H, W), without bias."""
    cdef floating *U = <floating *>malloc(16 * g.C * g.CO * sizeof(floating))
    cdef int status
    if U == NULL:
        return -WORKSPACE_WINO_KERNEL
    wino_kernel(kernel, g.C, g.CO, 1, U)
    status = winograd_conv(dy, g.N, g.OH, g.OW, g.CO, U, g.C, NULL, dx, g.H, g.W,
                           2 - g.pt, 2 - g.pl, num_threads)
    free(U)
    return status


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
        return direct_per_image(True, x, kernel, bias, y, &g, num_threads)
    if use_winograd(&g, False, sizeof(floating)):
        return forward_winograd(x, kernel, bias, y, &g, num_threads)
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
                gemm(NO_TRANS, NO_TRANS, rows, COg, K, A, lda, kernel + gi * COg, g.CO, 0,
                     yt + gi * COg, g.CO)
            if bias != NULL:
                for r in range(rows):
                    for c in range(g.CO):
                        yt[r * g.CO + c] += bias[c]
        free(col)
    return -WORKSPACE_IM2COL if failed else 0


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
        return -WORKSPACE_PARTIAL
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
                    direct_backward_params(dy + t * Q, x + t * HWC,
                                           pw if dkernel != NULL else NULL, pw + KC, g, col)
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
                        gemm(TRANS, NO_TRANS, K, COg, rows, A, lda, dyt + gi * COg, g.CO, 1,
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
    if failed:
        return -(WORKSPACE_DIRECT if direct else WORKSPACE_IM2COL)
    return 0


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
    if use_winograd(g, True, sizeof(floating)):
        return input_winograd(dy, kernel, dx, g, num_threads)
    if use_direct(g) and g.groups > 1:  # with one group, GEMM + col2im measured faster
        return direct_per_image(False, dy, kernel, NULL, dx, g, num_threads)
    if pointwise:
        for it in prange(g.N * ntiles, schedule="static", num_threads=num_threads):
            n = it // ntiles
            t = it - n * ntiles
            p0 = t * TP
            rows = P - p0 if P - p0 < TP else TP
            for gi in range(g.groups):
                gemm(NO_TRANS, TRANS, rows, CG, COg, dy + (n * P + p0) * g.CO + gi * COg, g.CO,
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
                    gemm(NO_TRANS, TRANS, rows, K, COg, dyt + gi * COg, g.CO, kernel + gi * COg,
                         g.CO, 0, dcol, K)
                    col2im_add(dcol, dx + n * HWC, g, p0, p0 + rows, gi)
        free(dcol)
    return -WORKSPACE_IM2COL if failed else 0


cdef int conv2d_backward_c(const floating *dy, const floating *x, const floating *kernel,
                           floating *dx, floating *dkernel, floating *dbias,
                           ConvGeom g, int num_threads) noexcept nogil:
    cdef int status = 0
    cdef int64_t nb = 0
    if g.N * g.OH * g.OW == 0 or g.CO == 0:  # no output: every gradient is zero
        if dkernel != NULL:
            memset(dkernel, 0, g.KH * g.KW * (g.C // g.groups) * g.CO * sizeof(floating))
        if dbias != NULL:
            memset(dbias, 0, g.CO * sizeof(floating))
        if dx != NULL:
            memset(dx, 0, g.N * g.H * g.W * g.C * sizeof(floating))
        return 0
    if dkernel != NULL and use_winograd(&g, False, sizeof(floating)):
        nb = wino_grad_blocks(&g)
    if nb > 0:
        status = params_winograd(dy, x, dkernel, dbias, &g, nb, num_threads)
    elif dkernel != NULL or dbias != NULL:
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


WORKSPACE_NAMES = {
    WORKSPACE_DIRECT: "the direct kernels' padded planes",
    WORKSPACE_IM2COL: "the im2col tile",
    WORKSPACE_PARTIAL: "the partial sums of the kernel gradient",
    WORKSPACE_WINO_KERNEL: "the Winograd-transformed kernel",
    WORKSPACE_WINO_CHUNK: "the Winograd chunk of transformed tiles",
}


def raise_workspace_error(op, int status):
    """MemoryError naming the workspace behind a kernel's status -WORKSPACE_*."""
    name = WORKSPACE_NAMES.get(-status, f"a workspace (status {status})")
    raise MemoryError(f"{op}: could not allocate {name} (out of memory)")


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
        raise_workspace_error("conv2d", status)


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
        raise_workspace_error("conv2d_backward", status)
