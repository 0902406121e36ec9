# Included by conv.pyx: pointwise convolutions (1x1, stride 1, no padding). The input itself
# is the im2col matrix, so the forward pass and the kernel gradient run conv_im2col.pxi's
# tile loops without building it; the input gradient is one GEMM per tile.

cdef inline bint is_pointwise(const ConvGeom *g) noexcept nogil:
    """1x1 kernel, stride 1, no padding: the input itself is the im2col matrix."""
    return (g.KH == 1 and g.KW == 1 and g.sh == 1 and g.sw == 1 and g.pt == 0 and g.pl == 0
            and g.OH == g.H and g.OW == g.W)


cdef int input_pointwise(const floating *dy, const floating *kernel, floating *dx,
                         const ConvGeom *g, int num_threads) noexcept nogil:
    """dx (N, H, W, C) = dy @ W^T per group, tiles of output positions in parallel."""
    cdef int64_t CG = g.C // g.groups
    cdef int64_t COg = g.CO // g.groups
    cdef int64_t P = g.OH * g.OW
    cdef int64_t TP = tile_rows(g, P) if P > 0 else 1
    cdef int64_t ntiles = (P + TP - 1) // TP
    cdef int64_t n, t, p0, rows, gi, it
    for it in prange(g.N * ntiles, schedule="static", num_threads=num_threads):
        n = it // ntiles
        t = it - n * ntiles
        p0 = t * TP
        rows = P - p0 if P - p0 < TP else TP
        for gi in range(g.groups):
            gemm(NO_TRANS, TRANS, rows, CG, COg, dy + (n * P + p0) * g.CO + gi * COg, g.CO,
                 kernel + gi * COg, g.CO, 0, dx + (n * P + p0) * g.C + gi * CG, g.C)
    return 0
