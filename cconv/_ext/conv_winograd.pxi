# Included by conv.pyx: Winograd F(2x2, 3x3) and F(4x4, 3x3) (winograd.h) for 3x3, stride-1
# convolutions with many channels: forward, input gradient (a convolution of dy with the flipped kernel) and
# kernel gradient (through the transformed kernel).

cdef extern from "winograd.h" nogil:
    int cconv_wino_tile(int64_t oh, int64_t ow)
    int64_t cconv_wino_elems(int m)
    int64_t cconv_wino_plane(int64_t n, int64_t elem_bytes)
    void cconv_wino_kernel_f32(int m, const float *w, int64_t C, int64_t CO, int flip, float *U)
    void cconv_wino_kernel_f64(int m, const double *w, int64_t C, int64_t CO, int flip,
                               double *U)
    void cconv_wino_input_f32(int m, const float *inp, int64_t IH, int64_t IW, int64_t C,
                              int64_t TH, int64_t TW, int64_t pt, int64_t pl, int64_t t0,
                              int64_t nt, float *V, int64_t vs, const float *zeros)
    void cconv_wino_input_f64(int m, const double *inp, int64_t IH, int64_t IW, int64_t C,
                              int64_t TH, int64_t TW, int64_t pt, int64_t pl, int64_t t0,
                              int64_t nt, double *V, int64_t vs, const double *zeros)
    void cconv_wino_kernel_grad_f32(int m, const float *dU, int64_t C, int64_t CO, float *dk)
    void cconv_wino_kernel_grad_f64(int m, const double *dU, int64_t C, int64_t CO, double *dk)
    void cconv_wino_dy_f32(int m, const float *dy, int64_t OH, int64_t OW, int64_t CO,
                           int64_t TH, int64_t TW, int64_t t0, int64_t nt, float *dM,
                           int64_t ms, const float *zeros, float *acc)
    void cconv_wino_dy_f64(int m, const double *dy, int64_t OH, int64_t OW, int64_t CO,
                           int64_t TH, int64_t TW, int64_t t0, int64_t nt, double *dM,
                           int64_t ms, const double *zeros, double *acc)
    void cconv_wino_output_f32(int m, const float *M, int64_t ms, int64_t CO, int64_t CN,
                               const float *bias, float *out, int64_t OH, int64_t OW,
                               int64_t TH, int64_t TW, int64_t t0, int64_t nt, float *trash)
    void cconv_wino_output_f64(int m, const double *M, int64_t ms, int64_t CO, int64_t CN,
                               const double *bias, double *out, int64_t OH, int64_t OW,
                               int64_t TH, int64_t TW, int64_t t0, int64_t nt, double *trash)
    int cconv_wino_finite_f32(const float *p, int64_t n)
    int cconv_wino_finite_f64(const double *p, int64_t n)


def winograd_tile(int64_t oh, int64_t ow):
    """The m of the Winograd F(m x m, 3x3) that tiles an ``oh`` x ``ow`` output (2 or 4;
    ``winograd.h``'s ``cconv_wino_tile``, the one rule for conv.pyx and the plan)."""
    return cconv_wino_tile(oh, ow)


cdef inline void wino_kernel(int m, const floating *w, int64_t C, int64_t CO, int flip,
                             floating *U) noexcept nogil:
    if floating is float:
        cconv_wino_kernel_f32(m, w, C, CO, flip, U)
    else:
        cconv_wino_kernel_f64(m, w, C, CO, flip, U)


cdef inline void wino_kernel_grad(int m, const floating *dU, int64_t C, int64_t CO,
                                  floating *dk) noexcept nogil:
    if floating is float:
        cconv_wino_kernel_grad_f32(m, dU, C, CO, dk)
    else:
        cconv_wino_kernel_grad_f64(m, dU, C, CO, dk)


cdef inline void wino_input(int m, const floating *inp, int64_t IH, int64_t IW, int64_t C,
                            int64_t TH, int64_t TW, int64_t pt, int64_t pl, int64_t t0,
                            int64_t nt, floating *V, int64_t vs,
                            const floating *zeros) noexcept nogil:
    if floating is float:
        cconv_wino_input_f32(m, inp, IH, IW, C, TH, TW, pt, pl, t0, nt, V, vs, zeros)
    else:
        cconv_wino_input_f64(m, inp, IH, IW, C, TH, TW, pt, pl, t0, nt, V, vs, zeros)


cdef inline void wino_dy(int m, const floating *dy, int64_t OH, int64_t OW, int64_t CO,
                         int64_t TH, int64_t TW, int64_t t0, int64_t nt, floating *dM,
                         int64_t ms, const floating *zeros, floating *acc) noexcept nogil:
    if floating is float:
        cconv_wino_dy_f32(m, dy, OH, OW, CO, TH, TW, t0, nt, dM, ms, zeros, acc)
    else:
        cconv_wino_dy_f64(m, dy, OH, OW, CO, TH, TW, t0, nt, dM, ms, zeros, acc)


cdef inline void wino_output(int m, const floating *M, int64_t ms, int64_t CO,
                             const floating *bias, floating *out, int64_t OH, int64_t OW,
                             int64_t TH, int64_t TW, int64_t t0, int64_t nt,
                             floating *trash) noexcept nogil:
    if floating is float:
        cconv_wino_output_f32(m, M, ms, CO, CO, bias, out, OH, OW, TH, TW, t0, nt, trash)
    else:
        cconv_wino_output_f64(m, M, ms, CO, CO, bias, out, OH, OW, TH, TW, t0, nt, trash)


cdef inline bint wino_finite(const floating *p, int64_t n) noexcept nogil:
    if floating is float:
        return cconv_wino_finite_f32(p, n)
    else:
        return cconv_wino_finite_f64(p, n)


cdef enum:
    FINITE_BLOCK = 65536    # elements per task of the Inf/NaN check


cdef bint all_finite(const floating *p, int64_t n, int num_threads) noexcept nogil:
    """No Inf or NaN in p[0 .. n): Winograd runs only then (its transforms subtract, and
    Inf - Inf is NaN where the direct sum gives +-Inf). Blocks in parallel; the blocks left
    are skipped once one holds a non-finite value."""
    cdef int64_t nblocks = (n + FINITE_BLOCK - 1) // FINITE_BLOCK
    cdef int64_t b, lo
    cdef int bad = 0
    cdef int *bad_p = &bad
    if num_threads > nblocks:
        num_threads = <int>nblocks
    if num_threads <= 1:
        return wino_finite(p, n)
    for b in prange(nblocks, schedule="static", num_threads=num_threads):
        if bad_p[0] == 0:
            lo = b * FINITE_BLOCK
            if not wino_finite(p + lo, n - lo if n - lo < FINITE_BLOCK else FINITE_BLOCK):
                bad_p[0] = 1
    return bad == 0


# Winograd F(2x2, 3x3) and F(4x4, 3x3) (winograd.h). Elements (per thread) of the transformed input and GEMM
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
    the E GEMMs are too thin: measured slower for 8->8 and 12->12, faster from 16->16), an
    output (x for the input gradient) of at least 2x2 (a 2x2 tile for one output wastes 3/4)
    and a transformed kernel (E x C x CO for the output's tile size) that is small next to
    32 MB or the output. Depends on the shapes alone, never on the thread count."""
    cdef int64_t oh = g.H if input_gradient else g.OH
    cdef int64_t ow = g.W if input_gradient else g.OW
    cdef int64_t ucost = cconv_wino_elems(cconv_wino_tile(oh, ow)) * g.C * g.CO * <int64_t>itemsize
    cdef int64_t out_bytes = g.N * oh * ow * (g.C if input_gradient else g.CO) * <int64_t>itemsize
    return (g.KH == 3 and g.KW == 3 and g.sh == 1 and g.sw == 1 and g.dh == 1 and g.dw == 1
            and g.groups == 1 and g.C >= WINO_MIN_C and g.CO >= WINO_MIN_C
            and oh >= 2 and ow >= 2 and (ucost <= WINO_KERNEL_BYTES or ucost <= out_bytes))


cdef int winograd_conv(const floating *inp, int64_t N, int64_t IH, int64_t IW, int64_t Cin,
                       const floating *U, int64_t Cout, const floating *bias, floating *out,
                       int64_t OH, int64_t OW, int64_t pt, int64_t pl,
                       int num_threads) noexcept nogil:
    """out (N, OH, OW, Cout) = conv3x3(inp (N, IH, IW, Cin), padding before pt, pl) + bias with
    the kernel already transformed into U (E, Cin, Cout) for F(m x m, 3x3), m =
    cconv_wino_tile(OH, OW). Chunks of TC consecutive tiles of the whole batch are
    independent: input transform, E GEMMs, output transform."""
    cdef int m = cconv_wino_tile(OH, OW)
    cdef int64_t E = cconv_wino_elems(m)
    cdef int64_t TH = (OH + m - 1) // m
    cdef int64_t TW = (OW + m - 1) // m
    cdef int64_t T = N * TH * TW
    cdef int64_t TC = wino_chunk_tiles(Cin, Cout, T, E)
    cdef int64_t vs = cconv_wino_plane(TC * Cin, sizeof(floating))
    cdef int64_t ms = cconv_wino_plane(TC * Cout, sizeof(floating))
    cdef int64_t nchunks, ch, t0, nt, e
    cdef int64_t S
    cdef floating *buf = NULL
    cdef floating *V
    cdef floating *M
    cdef floating *zeros
    cdef int failed = 0
    cdef int *failed_p = &failed
    nchunks = (T + TC - 1) // TC
    # V (E planes of TC x Cin, vs apart), M (E of TC x Cout, ms apart), zeros (Cin and the
    # bias stand-in, Cout), trash
    S = E * (vs + ms) + Cin + Cout + 3 * Cout
    with parallel(num_threads=num_threads if num_threads < nchunks else <int>nchunks):
        buf = <floating *>malloc(S * sizeof(floating))
        if buf != NULL:
            memset(buf + E * (vs + ms), 0, (Cin + Cout) * sizeof(floating))
        for ch in prange(nchunks, schedule="dynamic"):
            if buf == NULL:
                failed_p[0] = 1
                continue
            V = buf
            M = buf + E * vs
            zeros = M + E * ms
            t0 = ch * TC
            nt = T - t0 if T - t0 < TC else TC
            wino_input(m, inp, IH, IW, Cin, TH, TW, pt, pl, t0, nt, V, vs, zeros)
            for e in range(E):
                gemm(NO_TRANS, NO_TRANS, nt, Cout, Cin, V + e * vs, Cin,
                     U + e * Cin * Cout, Cout, 0, M + e * ms, Cout)
            wino_output(m, M, ms, Cout, bias if bias != NULL else zeros + Cin,
                        out, OH, OW, TH, TW, t0, nt, zeros + Cin + Cout)
        free(buf)
    return -WORKSPACE_WINO_CHUNK if failed else 0


cdef int forward_winograd(const floating *x, const floating *kernel, const floating *bias,
                          floating *y, const ConvGeom *g, int num_threads) noexcept nogil:
    cdef int m = cconv_wino_tile(g.OH, g.OW)
    cdef floating *U = <floating *>malloc(cconv_wino_elems(m) * g.C * g.CO * sizeof(floating))
    cdef int status
    if U == NULL:
        return -WORKSPACE_WINO_KERNEL
    wino_kernel(m, kernel, g.C, g.CO, 0, U)
    status = winograd_conv(x, g.N, g.H, g.W, g.C, U, g.CO, bias, y, g.OH, g.OW, g.pt, g.pl,
                           num_threads)
    free(U)
    return status


cdef inline int64_t wino_chunk_tiles(int64_t Cin, int64_t Cout, int64_t T,
                                     int64_t E) noexcept nogil:
    """Tiles per chunk: whole GEMM micro-panels (MR = 12 / 6), from the shapes only (E: the
    elements of one transformed tile)."""
    cdef int64_t TC = wino_chunk_elems // (E * (Cin + Cout))
    TC = (TC // 12) * 12
    if TC < 12:
        TC = 12
    return TC if TC < T else T


cdef inline int64_t wino_grad_blocks(const ConvGeom *g, int m) noexcept nogil:
    """Blocks of chunks with their own partial dU (E x C x CO) for the kernel gradient by
    F(m x m) tiles; 0 when fewer than WINO_MIN_BLOCKS fit the partial-sum budget."""
    cdef int64_t E = cconv_wino_elems(m)
    cdef int64_t T = g.N * ((g.OH + m - 1) // m) * ((g.OW + m - 1) // m)
    cdef int64_t TC = wino_chunk_tiles(g.C, g.CO, T, E)
    cdef int64_t nchunks = (T + TC - 1) // TC
    cdef int64_t nb = PARTIAL_ELEMS // (E * g.C * g.CO + g.CO)
    if nb > MAX_BLOCKS:
        nb = MAX_BLOCKS
    if nb > nchunks:
        nb = nchunks
    return nb if nb >= WINO_MIN_BLOCKS or nb == nchunks else 0


cdef inline int wino_grad_tile(const ConvGeom *g) noexcept nogil:
    """The tile size m of the Winograd kernel gradient: the forward's (cconv_wino_tile) when
    its partial sums fit the budget in enough blocks, else 2 when F(2x2)'s smaller ones do
    (56x56x64->64: 7 blocks of F(4x4)'s 36 x 64 x 64; im2col there took 20 ms against F(2x2)'s
    13, batch 8, one thread), else 0: im2col + GEMM. From the shapes alone."""
    cdef int m = cconv_wino_tile(g.OH, g.OW)
    if wino_grad_blocks(g, m) > 0:
        return m
    if m != 2 and wino_grad_blocks(g, 2) > 0:
        return 2
    return 0


cdef int params_winograd(const floating *dy, const floating *x, floating *dkernel,
                         floating *dbias, const ConvGeom *g, int m, int64_t nblocks,
                         int num_threads) noexcept nogil:
    """Kernel (and bias) gradient through the transformed kernel: per chunk
    dU[e] += V[e]^T @ dM[e] (V: input transform of x, dM = A dY A^T), partial sums per fixed
    block of chunks, reduced in block order, then dk = G^T dU G. dbias sums the element of
    dM that is the sum of each m x m dy tile alongside (m: wino_grad_tile's)."""
    cdef int64_t C = g.C, CO = g.CO
    cdef int64_t E = cconv_wino_elems(m)
    cdef int64_t TH = (g.OH + m - 1) // m
    cdef int64_t TW = (g.OW + m - 1) // m
    cdef int64_t T = g.N * TH * TW
    cdef int64_t TC = wino_chunk_tiles(C, CO, T, E)
    cdef int64_t nchunks = (T + TC - 1) // TC
    cdef int64_t UE = E * C * CO
    cdef int64_t per_block = UE + CO
    cdef int64_t vs = cconv_wino_plane(TC * C, sizeof(floating))
    cdef int64_t ms = cconv_wino_plane(TC * CO, sizeof(floating))
    cdef int64_t S = E * (vs + ms) + (C if C > CO else CO)
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
            memset(buf + E * (vs + ms), 0, (S - E * (vs + ms)) * sizeof(floating))
        for b in prange(nblocks, schedule="static"):
            if buf == NULL:
                failed_p[0] = 1
                continue
            pw = partial + b * per_block
            V = buf
            dM = buf + E * vs
            zeros = dM + E * ms
            for ch in range(b * nchunks // nblocks, (b + 1) * nchunks // nblocks):
                t0 = ch * TC
                nt = T - t0 if T - t0 < TC else TC
                wino_input(m, x, g.H, g.W, C, TH, TW, g.pt, g.pl, t0, nt, V, vs, zeros)
                wino_dy(m, dy, g.OH, g.OW, CO, TH, TW, t0, nt, dM, ms, zeros, pw + UE)
                for e in range(E):
                    gemm(TRANS, NO_TRANS, C, CO, nt, V + e * vs, C, dM + e * ms, CO, 1,
                         pw + e * C * CO, CO)
        free(buf)
    if not failed:
        # reduce the blocks in block order into block 0
        for i in prange(per_block, schedule="static", num_threads=num_threads):
            s = partial[i]
            for b in range(1, nblocks):
                s = s + partial[b * per_block + i]
            partial[i] = s
        wino_kernel_grad(m, partial, C, CO, dkernel)
        if dbias != NULL:
            memcpy(dbias, partial + UE, CO * sizeof(floating))
    free(partial)
    return -WORKSPACE_WINO_CHUNK if failed else 0


cdef int input_winograd(const floating *dy, const floating *kernel, floating *dx,
                        const ConvGeom *g, int num_threads) noexcept nogil:
    """Stride 1: dx is the 3x3 convolution of dy with the kernel flipped in both spatial axes
    and its channel axes swapped, padded by 2 - pt on top and 2 - pl on the left (the padding
    after follows from the output size H, W), without bias."""
    cdef int m = cconv_wino_tile(g.H, g.W)
    cdef floating *U = <floating *>malloc(cconv_wino_elems(m) * g.C * g.CO * sizeof(floating))
    cdef int status
    if U == NULL:
        return -WORKSPACE_WINO_KERNEL
    wino_kernel(m, kernel, g.C, g.CO, 1, U)
    status = winograd_conv(dy, g.N, g.OH, g.OW, g.CO, U, g.C, NULL, dx, g.H, g.W,
                           2 - g.pt, 2 - g.pl, num_threads)
    free(U)
    return status
