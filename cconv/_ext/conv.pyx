# cython: language_level=3
"""2-D convolution, forward and backward, NHWC, float32 and float64.

Four algorithms, each in its own include file, and one function that chooses among them
(``choose``; ``choose_algorithm`` from Python), from the shapes alone:

* direct (``conv_direct.pxi``, ``direct.h``): few channels and filters per group; and the
  kernel gradient of few taps (KH * KW * C <= 64, ``kgrad.h``) with more filters;
* Winograd F(2x2, 3x3) or F(4x4, 3x3) by the output's size (``conv_winograd.pxi``,
  ``winograd.h``): 3x3, stride 1, many channels;
* pointwise (``conv_pointwise.pxi``): 1x1, stride 1, no padding: the input is the matrix;
* im2col + GEMM (``conv_im2col.pxi``): everything else.

The GEMM (``gemm.h``) is single-threaded and called from every OpenMP worker, so that one
thread pool does all the work.

Determinism: the work is cut into tiles and blocks whose sizes depend on the shapes only,
never on the thread count, and partial sums are reduced in a fixed order, so results are
bit-identical for any ``num_threads``.
"""
from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

import numpy as np


cdef extern from "omp_helpers.h":
    pass

from cconv._ext.gemm cimport NO_TRANS, TRANS, gemm, gemm_pack, gemm_packed, gemm_packed_size

cdef enum:
    # Input channels and filters per group up to which the direct kernels (direct.h) replace
    # im2col + GEMM (measured: LeNet's 1->6 first layer 2.7x faster forward; 3->32 slower).
    DIRECT_MAX_CG = 4
    DIRECT_MAX_COG = 8
    # Elements of one im2col tile (per thread): 128 Ki elements, half a float32 L2 (1 MB on
    # Zen 4; the stride-2 56x56x64->128 forward 4% faster than with 64 Ki: each GEMM's
    # 227 rows amortise the packed kernel's reads better)
    TILE_ELEMS = 131072
    # Most elements of the zero-padded image plane (per thread) through which a padded
    # convolution reads its im2col rows in place (implicit.h; 4 MB of float32; the stride-2
    # 56x56x64->128 forward's 57x57x64 plane: 18% faster than im2col tiles, one thread)
    PLANE_ELEMS = 1048576
    # The kernel gradient's tiles: up to twice as many rows while at least 16 tiles remain
    # (stride-2 56x56x64->128 at batch 32: 20% faster than 113-row tiles; Zen 4)
    PARAMS_TILE_SCALE = 2
    PARAMS_MIN_TILES = 16
    # Elements of all per-block partial kernel gradients together, and the most blocks (4 MB
    # of float32: stride-2 56x56x64->128's 14 blocks of 576 x 128 cost 10% less to zero and
    # reduce than 56 did)
    PARTIAL_ELEMS = 1048576
    MAX_BLOCKS = 64
    # Winograd F(2x2, 3x3): channels (in and out) from which it replaces im2col + GEMM, and the
    # default elements of one chunk's transformed input + GEMM output (per thread).
    WINO_MIN_C = 16
    # fewest blocks of partial sums for the Winograd kernel gradient (parallelism)
    WINO_MIN_BLOCKS = 8
    WINO_CHUNK_ELEMS = 262144
    # Partial-sum elements from which the kernel gradient's final reduction runs in parallel
    REDUCE_PARALLEL = 65536

ctypedef enum Algorithm:
    ALGO_DIRECT
    ALGO_WINOGRAD
    ALGO_POINTWISE
    ALGO_IM2COL

ctypedef enum Step:
    STEP_FORWARD
    STEP_INPUT_GRADIENT
    STEP_KERNEL_GRADIENT

include "conv_direct.pxi"
include "conv_winograd.pxi"
include "conv_pointwise.pxi"
include "conv_im2col.pxi"


cdef Algorithm choose(const ConvGeom *g, Step step, size_t itemsize,
                      bint finite) noexcept nogil:
    """The algorithm for one step of a convolution, from the shapes alone (never the thread
    count). ``finite``: False when an operand holds Inf or NaN; Winograd's transforms would
    then turn Inf into NaN where the direct sum gives +-Inf, so another algorithm runs."""
    if step == STEP_FORWARD:
        if use_direct(g):
            return ALGO_DIRECT
        if finite and use_winograd(g, False, itemsize):
            return ALGO_WINOGRAD
    elif step == STEP_INPUT_GRADIENT:
        if finite and use_winograd(g, True, itemsize):
            return ALGO_WINOGRAD
        if use_direct(g) and g.groups > 1:  # with one group, GEMM + col2im measured faster
            return ALGO_DIRECT
    else:
        if finite and use_winograd(g, False, itemsize) and wino_grad_tile(g) > 0:
            return ALGO_WINOGRAD
        if use_direct(g) or use_kgrad(g):
            return ALGO_DIRECT
    return ALGO_POINTWISE if is_pointwise(g) else ALGO_IM2COL


cdef Algorithm choose_exact(const ConvGeom *g, Step step, const floating *a, int64_t na,
                            const floating *b, int64_t nb, int num_threads) noexcept nogil:
    """``choose``, after checking the two operands a, b of the step for Inf and NaN when it
    would be Winograd (the only algorithm that transforms its operands)."""
    cdef Algorithm algo = choose(g, step, sizeof(floating), True)
    if algo == ALGO_WINOGRAD and not (all_finite(a, na, num_threads)
                                      and all_finite(b, nb, num_threads)):
        algo = choose(g, step, sizeof(floating), False)
    return algo


#: The algorithms, as ``choose_algorithm`` names them.
DIRECT = "direct"
WINOGRAD = "winograd"
POINTWISE = "pointwise"
IM2COL = "im2col"
ALGORITHMS = {ALGO_DIRECT: DIRECT, ALGO_WINOGRAD: WINOGRAD, ALGO_POINTWISE: POINTWISE,
              ALGO_IM2COL: IM2COL}
#: The steps of a convolution ``choose_algorithm`` accepts.
STEPS = {"forward": STEP_FORWARD, "input_gradient": STEP_INPUT_GRADIENT,
         "kernel_gradient": STEP_KERNEL_GRADIENT}


def choose_algorithm(tuple x_shape, tuple kernel_shape, tuple y_shape, tuple strides=(1, 1),
                     tuple dilation=(1, 1), tuple pads_before=(0, 0), int groups=1,
                     dtype=np.float32, str step="forward", bint finite=True):
    """The algorithm the kernels run for one step of a convolution: ``"direct"``,
    ``"winograd"``, ``"pointwise"`` or ``"im2col"`` (for tests and benchmarks).

    Shapes are NHWC ``x_shape``, ``(kh, kw, c // groups, filters)`` ``kernel_shape`` and the
    output's ``y_shape``; ``pads_before`` is the (top, left) padding; ``step`` one of
    ``"forward"``, ``"input_gradient"``, ``"kernel_gradient"``; ``finite`` False when the
    operands of that step hold Inf or NaN (checked on every call for Winograd).
    """
    if step not in STEPS:
        raise ValueError(f"choose_algorithm: step must be one of {sorted(STEPS)}, got {step!r}")
    cdef ConvGeom g = make_geom(x_shape, kernel_shape, y_shape, strides, dilation, pads_before,
                                groups)
    return ALGORITHMS[choose(&g, STEPS[step], np.dtype(dtype).itemsize, finite)]


cdef int conv2d_forward_c(const floating *x, const floating *kernel, const floating *bias,
                          floating *y, ConvGeom g, int num_threads) noexcept nogil:
    cdef Algorithm algo
    cdef int64_t nk = g.KH * g.KW * (g.C // g.groups) * g.CO
    if g.N * g.OH * g.OW == 0 or g.CO == 0:
        return 0
    algo = choose_exact(&g, STEP_FORWARD, x, g.N * g.H * g.W * g.C, kernel, nk, num_threads)
    if algo == ALGO_DIRECT:
        return direct_per_image(True, x, kernel, bias, y, &g, num_threads)
    if algo == ALGO_WINOGRAD:
        return forward_winograd(x, kernel, bias, y, &g, num_threads)
    return forward_tiles(x, kernel, bias, y, &g, algo == ALGO_POINTWISE, num_threads)


cdef int backward_params(const floating *dy, const floating *x, floating *dkernel,
                         floating *dbias, const ConvGeom *g, Algorithm algo,
                         int num_threads, const floating *kernel, floating *dx) noexcept nogil:
    """Kernel and bias gradients of the direct, pointwise and im2col algorithms: per-block
    partial sums over fixed blocks of work units (images for the direct kernels, im2col tiles
    otherwise), then a reduction over blocks in block order (independent of the thread
    count). With ``dx`` (depthwise only, see conv2d_backward_c) each unit's input gradient
    too, from ``kernel``."""
    cdef int64_t K = g.KH * g.KW * (g.C // g.groups)
    cdef int64_t KC = K * g.CO
    cdef int64_t R = g.N * g.OH * g.OW
    cdef bint direct = algo == ALGO_DIRECT
    cdef bint pointwise = algo == ALGO_POINTWISE
    cdef int64_t TP = params_tile_rows(g, R) if R > 0 else 1
    cdef int64_t nunits = g.N * dw_row_blocks(g) if direct else (R + TP - 1) // TP
    cdef int64_t per_block = KC + g.CO
    cdef int64_t scratch = direct_params_scratch(g) if direct else TP * K
    cdef bint needs_scratch = direct or (not pointwise and dkernel != NULL)
    cdef int64_t nblocks, b, e, u0, u1
    cdef floating *partial
    cdef floating *pw
    cdef floating *col = NULL
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
        if needs_scratch:
            col = <floating *>malloc((scratch + 1) * sizeof(floating))
        for b in prange(nblocks, schedule="dynamic"):
            if needs_scratch and col == NULL:
                failed_p[0] = 1
                continue
            pw = partial + b * per_block
            u0 = b * nunits // nblocks
            u1 = (b + 1) * nunits // nblocks
            if direct:
                direct_params_images(dy, x, pw if dkernel != NULL else NULL, pw + KC, g, u0, u1,
                                     col, kernel, dx)
            else:
                tiles_params(dy, x, pw if dkernel != NULL else NULL, pw + KC, g, TP, u0, u1,
                             pointwise, col)
        free(col)
    if not failed:
        # (one thread for a small reduction: waking a worker cost ~1 ms under load, 20x the
        # depthwise 32x32x64 kernel gradient it followed)
        for e in prange(per_block, schedule="static",
                        num_threads=num_threads if nblocks * per_block >= REDUCE_PARALLEL else 1):
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
                        const ConvGeom *g, Algorithm algo, int num_threads) noexcept nogil:
    if algo == ALGO_WINOGRAD:
        return input_winograd(dy, kernel, dx, g, num_threads)
    if algo == ALGO_DIRECT:
        return direct_per_image(False, dy, kernel, NULL, dx, g, num_threads)
    if algo == ALGO_POINTWISE:
        return input_pointwise(dy, kernel, dx, g, num_threads)
    return input_im2col(dy, kernel, dx, g, num_threads)


cdef int kernel_gradient(const floating *dy, const floating *x, floating *dkernel,
                         floating *dbias, const ConvGeom *g, int num_threads) noexcept nogil:
    """dkernel and dbias (either may be NULL). Winograd's kernel gradient is checked after the
    fact: its transforms only add, subtract and multiply, so an Inf or NaN in x or dy always
    leaves a non-finite value in dkernel, which is much smaller than x and dy. Then the exact
    algorithm runs again."""
    cdef Algorithm algo = choose(g, STEP_KERNEL_GRADIENT, sizeof(floating), True)
    cdef int status, m
    if algo == ALGO_WINOGRAD and dkernel != NULL:
        m = wino_grad_tile(g)
        status = params_winograd(dy, x, dkernel, dbias, g, m, wino_grad_blocks(g, m),
                                 num_threads)
        if status != 0 or all_finite(dkernel, 9 * g.C * g.CO, num_threads):
            return status
    if algo == ALGO_WINOGRAD:  # (also the bias gradient alone: no Winograd for it)
        algo = choose(g, STEP_KERNEL_GRADIENT, sizeof(floating), False)
    return backward_params(dy, x, dkernel, dbias, g, algo, num_threads, NULL, NULL)


cdef int conv2d_backward_c(const floating *dy, const floating *x, const floating *kernel,
                           floating *dx, floating *dkernel, floating *dbias,
                           ConvGeom g, int num_threads) noexcept nogil:
    cdef int status = 0
    cdef Algorithm algo
    cdef int64_t nx = g.N * g.H * g.W * g.C
    cdef int64_t nk = g.KH * g.KW * (g.C // g.groups) * g.CO
    cdef int64_t ny = g.N * g.OH * g.OW * g.CO
    if ny == 0:  # no output: every gradient is zero
        if dkernel != NULL:
            memset(dkernel, 0, nk * sizeof(floating))
        if dbias != NULL:
            memset(dbias, 0, g.CO * sizeof(floating))
        if dx != NULL:
            memset(dx, 0, nx * sizeof(floating))
        return 0
    if (dx != NULL and (dkernel != NULL or dbias != NULL) and cconv_dw_applies(&g)
            and choose(&g, STEP_KERNEL_GRADIENT, sizeof(floating), True) == ALGO_DIRECT
            and choose(&g, STEP_INPUT_GRADIENT, sizeof(floating), True) == ALGO_DIRECT):
        # depthwise: each unit's kernel and input gradients together, while its dy is in
        # cache (one pass over dy from memory instead of two)
        return backward_params(dy, x, dkernel, dbias, &g, ALGO_DIRECT, num_threads, kernel, dx)
    if dkernel != NULL or dbias != NULL:
        status = kernel_gradient(dy, x, dkernel, dbias, &g, num_threads)
    if status == 0 and dx != NULL:
        algo = choose_exact(&g, STEP_INPUT_GRADIENT, dy, ny, kernel, nk, num_threads)
        status = backward_input(dy, kernel, dx, &g, algo, num_threads)
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
    cdef ConvGeom g = make_geom(
        (x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
        (kernel.shape[0], kernel.shape[1], kernel.shape[2], kernel.shape[3]),
        (y.shape[0], y.shape[1], y.shape[2], y.shape[3]), strides, dilation, pads_before, groups)
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
    cdef ConvGeom g = make_geom(
        (x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
        (kernel.shape[0], kernel.shape[1], kernel.shape[2], kernel.shape[3]),
        (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]), strides, dilation, pads_before,
        groups)
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
