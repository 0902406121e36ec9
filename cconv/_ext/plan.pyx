# cython: language_level=3
"""The native side of a compiled inference plan (plan.h): node descriptors, buffers, and
one GIL-free call per batch. ``cconv.plan`` builds the node list and decides algorithms,
buffer offsets, chunk size and threads; this module trusts those decisions and only checks
the arrays handed to :meth:`NativePlan.run`."""
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport calloc, free

from cconv._ext.conv cimport WINO_KERNEL_BYTES, ConvGeom, conv2d_backward_c

import numpy as np

cnp.import_array()


cdef extern from "plan.h" nogil:
    ctypedef struct cconv_geom:
        int64_t N, H, W, C, KH, KW, CO, OH, OW, sh, sw, dh, dw, pt, pl, groups
    ctypedef struct cconv_pool_geom:
        int64_t H, W, C, KH, KW, OH, OW, sh, sw, pt, pl
    ctypedef struct cconv_pnode:
        int kind, act, algo, pool, input
        double alpha
        uint64_t seed, step
        int ninputs
        int inputs[8]
        int64_t widths[8]
        int merge, res
        const void *bn[4]
        double eps
        void *st
        cconv_geom g
        cconv_pool_geom pg
        int64_t rows, K, units, in_size, out_size, mid_size, out_off, arg_off, tile, nsplit
        int64_t group
        int implicit
        const void *w
        const void *b
        void *dw
        void *db
        int64_t dw_off, db_off, w_size, b_size
        void *wino
        void *bpack
        int64_t bpack_one
        int bpack_isa
        void *tpack
        int tpack_isa
        void *dzs
        int wgrad
        int64_t w_part
        void *wflip
        int wflip_ok
    ctypedef struct cconv_plan:
        cconv_pnode *nodes
        int nnodes
        int64_t in_size, out_size, arena_img, mid_img, mid_scr, scratch, chunk
        void *arena
        void *scr
        int keep
        int32_t *args
        int64_t part_size
        void *conv_backward
        int wino_exact
    enum:
        CCONV_PLAN_CONV, CCONV_PLAN_POOL, CCONV_PLAN_DENSE, CCONV_PLAN_ACT, CCONV_PLAN_MERGE
        CCONV_PLAN_CONCAT, CCONV_PLAN_GPOOL, CCONV_PLAN_AFFINE, CCONV_PLAN_DROPOUT
        CCONV_ACT_LINEAR, CCONV_ACT_RELU, CCONV_ACT_SIGMOID, CCONV_ACT_TANH, CCONV_ACT_SOFTMAX
        CCONV_ACT_RELU6, CCONV_ACT_LEAKY, CCONV_ACT_ELU, CCONV_ACT_GELU, CCONV_ACT_GELU_TANH
        CCONV_ACT_SILU, CCONV_ACT_HARD_SIGMOID, CCONV_ACT_HARD_SILU
        CCONV_MERGE_ADD, CCONV_MERGE_SUB, CCONV_MERGE_MUL, CCONV_MERGE_AVG, CCONV_MERGE_MAX
        CCONV_MERGE_MIN, CCONV_PLAN_MAX_IN, CCONV_PLAN_NONE
        CCONV_ALGO_IM2COL, CCONV_ALGO_DIRECT, CCONV_ALGO_WINOGRAD, CCONV_ALGO_POINTWISE
        CCONV_POOL_NONE, CCONV_POOL_MAX, CCONV_POOL_AVG
    void cconv_plan_prepare_node(cconv_pnode *nd, int is_f32)
    int64_t cconv_plan_node_scratch(const cconv_pnode *nd, int64_t nimg, int64_t esize)
    int64_t cconv_plan_bpack_init(cconv_pnode *nd, int is_f32)
    int64_t cconv_plan_tpack_size(const cconv_pnode *nd, int is_f32)
    int64_t cconv_plan_wino_split(const cconv_pnode *nd, int64_t T, int nthreads)
    int cconv_plan_wino_packs(const cconv_pnode *nd, int64_t nimg, int is_f32)
    int64_t cconv_plan_wino_img_tiles(const cconv_geom *g)
    int cconv_wino_tile(int64_t oh, int64_t ow)
    int cconv_dw_applies(const void *geom)
    int64_t cconv_wino_elems(int m)
    enum: CCONV_PLAN_FEW_ROWS
    void cconv_plan_run_f32(const cconv_plan *p, const float *x, float *y, int64_t N,
                            int nthreads, int by_layers)
    void cconv_plan_run_f64(const cconv_plan *p, const double *x, double *y, int64_t N,
                            int nthreads, int by_layers)
    int cconv_plan_backward_f32(const cconv_plan *p, const float *x, const float *y,
                                const float *g, int64_t N, int nthreads, float *part,
                                float *bufs, int64_t maxsz, int first)
    int cconv_plan_backward_f64(const cconv_plan *p, const double *x, const double *y,
                                const double *g, int64_t N, int nthreads, double *part,
                                double *bufs, int64_t maxsz, int first)


#: The codes of plan.h's enums, for cconv.plan.
KINDS = {"conv": CCONV_PLAN_CONV, "pool": CCONV_PLAN_POOL, "dense": CCONV_PLAN_DENSE,
         "act": CCONV_PLAN_ACT, "merge": CCONV_PLAN_MERGE, "concat": CCONV_PLAN_CONCAT,
         "gpool": CCONV_PLAN_GPOOL, "affine": CCONV_PLAN_AFFINE, "dropout": CCONV_PLAN_DROPOUT}
ACTIVATIONS = {"linear": CCONV_ACT_LINEAR, "relu": CCONV_ACT_RELU, "sigmoid": CCONV_ACT_SIGMOID,
               "tanh": CCONV_ACT_TANH, "softmax": CCONV_ACT_SOFTMAX, "relu6": CCONV_ACT_RELU6,
               "leaky_relu": CCONV_ACT_LEAKY, "elu": CCONV_ACT_ELU, "gelu": CCONV_ACT_GELU,
               "gelu_tanh": CCONV_ACT_GELU_TANH, "silu": CCONV_ACT_SILU,
               "hard_sigmoid": CCONV_ACT_HARD_SIGMOID, "hard_silu": CCONV_ACT_HARD_SILU}
MERGES = {"add": CCONV_MERGE_ADD, "subtract": CCONV_MERGE_SUB, "multiply": CCONV_MERGE_MUL,
          "average": CCONV_MERGE_AVG, "maximum": CCONV_MERGE_MAX, "minimum": CCONV_MERGE_MIN}
#: Most inputs of a merge or concatenate node; the index meaning "no tensor".
MAX_INPUTS, NONE = CCONV_PLAN_MAX_IN, CCONV_PLAN_NONE
ALGOS = {"im2col": CCONV_ALGO_IM2COL, "direct": CCONV_ALGO_DIRECT,
         "winograd": CCONV_ALGO_WINOGRAD, "pointwise": CCONV_ALGO_POINTWISE}
POOLS = {None: CCONV_POOL_NONE, "max": CCONV_POOL_MAX, "avg": CCONV_POOL_AVG}


cdef ConvGeom _conv_geom(const cconv_geom *g, int64_t N) noexcept nogil:
    cdef ConvGeom c
    c.N, c.H, c.W, c.C, c.KH, c.KW, c.CO = N, g.H, g.W, g.C, g.KH, g.KW, g.CO
    c.OH, c.OW, c.sh, c.sw, c.dh, c.dw = g.OH, g.OW, g.sh, g.sw, g.dh, g.dw
    c.pt, c.pl, c.groups = g.pt, g.pl, g.groups
    return c


cdef int _conv_backward_f32(const float *dy, const float *x, const float *w, float *dx,
                            float *dw, float *db, const cconv_geom *g, int64_t N) noexcept nogil:
    """conv.pyx's gradients of one chunk of N images, on the calling thread."""
    return conv2d_backward_c(dy, x, w, dx, dw, db, _conv_geom(g, N), 1)


cdef int _conv_backward_f64(const double *dy, const double *x, const double *w, double *dx,
                            double *dw, double *db, const cconv_geom *g,
                            int64_t N) noexcept nogil:
    return conv2d_backward_c(dy, x, w, dx, dw, db, _conv_geom(g, N), 1)


cdef const void *_ptr(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef class NativePlan:
    """Descriptors of ``nodes`` (dicts from :func:`cconv.plan.compile_plan`) over weights
    owned by the model (kept alive here), with buffers for one batch size.

    Args:
        nodes: list of dicts, keys as the fields of ``cconv_pnode`` in plan.h, plus ``w``
            and ``b`` (C-contiguous arrays of ``dtype`` or None).
        in_size, out_size: elements of one input and one output sample.
        arena_img, mid_img: arena and pre-pool elements per image.
        dtype: numpy float32 or float64.
    """
    cdef cconv_plan p
    cdef object dtype
    cdef list keep, group_cap, wino_arrs, tile_cap, dense_pack
    cdef dict bpack_arrs                    # conv node index: its packed-B array
    cdef dict tpack_arrs                    # dense node index: its packed transposed kernel
    cdef dict wflip_arrs                    # Winograd node index: its flipped kernel's transform
    cdef object arena_arr, scr_arr, args_arr, part_arr, bufs_arr, dzs_arr
    cdef public int64_t batch
    cdef public int threads, by_layers
    cdef public object key                  # cconv.plan's record of what it prepared for
    cdef int is_f32
    cdef int64_t all_part               # training: partial-gradient elements of all nodes

    def __cinit__(self):
        self.p.nodes = NULL

    def __init__(self, list nodes, int64_t in_size, int64_t out_size, int64_t arena_img,
                 int64_t mid_img, dtype):
        cdef int i
        cdef int64_t nb
        cdef cconv_pnode *nd
        self.dtype = np.dtype(dtype)
        self.is_f32 = self.dtype == np.float32
        self.keep, self.group_cap, self.wino_arrs, self.tile_cap = [], [], [], []
        self.dense_pack = []                # (node, elements) of dense B packed on first need
        self.bpack_arrs, self.tpack_arrs, self.wflip_arrs = {}, {}, {}
        self.p.nodes = <cconv_pnode *>calloc(max(len(nodes), 1), sizeof(cconv_pnode))
        if self.p.nodes == NULL:
            raise MemoryError("NativePlan: could not allocate the node descriptors")
        self.p.nnodes = len(nodes)
        for i, spec in enumerate(nodes):
            nd = &self.p.nodes[i]
            _fill_node(nd, spec)
            for a in (spec.get("w"), spec.get("b")):  # the model's arrays: kept alive
                if a is not None:
                    self.keep.append(a)
            nd.w = _ptr(spec.get("w"))
            nd.b = _ptr(spec.get("b"))
            bn = spec.get("bn")
            if bn is not None:         # a folded batch norm: its arrays, and scale, shift
                for k in range(4):
                    if bn[k] is not None:
                        self.keep.append(bn[k])
                    nd.bn[k] = _ptr(bn[k])
                nd.eps = spec["eps"]
            st = spec.get("st")
            if st is None and bn is not None:
                st = np.empty(2 * nd.units, dtype=self.dtype)
            if st is not None:         # a constant scale and shift (Rescaling) or the fold's
                self.keep.append(st)
                nd.st = <void *>_ptr(st)
            for a in (spec.get("dw"), spec.get("db")):  # training: the model's gradients
                if a is not None:
                    self.keep.append(a)
            nd.dw = <void *>_ptr(spec.get("dw"))
            nd.db = <void *>_ptr(spec.get("db"))
            self.p.part_size = max(self.p.part_size, nd.db_off + nd.b_size,
                                   nd.dw_off + nd.w_part)
            cconv_plan_prepare_node(nd, self.is_f32)
            self.group_cap.append(nd.group)
            self.tile_cap.append(nd.tile)
            if nd.algo == CCONV_ALGO_WINOGRAD and nd.kind == CCONV_PLAN_CONV:
                # U (E, C, CO), then the kernel it came from (NaN: never equal, so the first
                # call transforms)
                u = np.full((cconv_wino_elems(cconv_wino_tile(nd.g.OH, nd.g.OW)) + 9)
                            * nd.g.C * nd.g.CO, np.nan, dtype=self.dtype)
                self.wino_arrs.append(u)
                nd.wino = cnp.PyArray_DATA(<cnp.ndarray>u)
            nb = cconv_plan_bpack_init(nd, self.is_f32)
            if nb > 0 and nd.kind == CCONV_PLAN_DENSE:
                self.dense_pack.append((i, nb))   # allocated by prepare for enough rows
            elif nb > 0 and nd.algo != CCONV_ALGO_WINOGRAD:
                self._bpack_alloc(i, nb)          # the GEMM's B, packed once per run (plan.h)
            # Winograd's packed U: allocated by prepare once units reach a whole GEMM panel
        self.all_part = self.p.part_size
        self.p.in_size, self.p.out_size = in_size, out_size
        self.p.arena_img, self.p.mid_img = arena_img, mid_img
        self.p.conv_backward = (<void *>_conv_backward_f32 if self.is_f32
                                else <void *>_conv_backward_f64)
        self.batch = -1
        self.threads = 0

    def __dealloc__(self):
        free(self.p.nodes)

    cdef _bpack_alloc(self, int i, int64_t nb):
        """A new packed-B buffer of nb elements for conv node i (replacing its old one)."""
        packed = np.empty(nb, dtype=self.dtype)
        self.bpack_arrs[i] = packed
        self.p.nodes[i].bpack = cnp.PyArray_DATA(<cnp.ndarray>packed)

    def prepare(self, int64_t batch, int threads, int64_t chunk, bint by_layers,
                bint keep=False, int64_t args_img=0):
        """Size the buffers for ``batch`` images on ``threads`` threads, by chunks of
        ``chunk`` images or (``by_layers``) node by node. Reuses the buffers when they fit.
        ``keep`` (training, by chunks): every node output stays for the whole batch, and
        fused max pools record their winning cells (``args_img`` int32 per image)."""
        cdef int64_t arena = (batch * (self.p.arena_img + self.p.mid_img) if by_layers
                              else (batch if keep else threads * chunk) * self.p.arena_img)
        cdef int64_t scratch = 0, mid_scr = 0, nimg, units, split, parts
        cdef int i
        cdef cconv_pnode *nd
        for i in range(self.p.nnodes):
            nd = &self.p.nodes[i]
            nimg = batch if by_layers else chunk
            nd.tile = self.tile_cap[i]
            split = 1
            if by_layers and nd.kind == CCONV_PLAN_CONV and nd.algo != CCONV_ALGO_DIRECT:
                # few images: smaller units of work, so that every thread gets some (a row's
                # or a tile's result does not depend on the unit it is computed in); few
                # Winograd tiles: parts of the output channels too (plan.h)
                units = batch * (cconv_plan_wino_img_tiles(&nd.g)
                                 if nd.algo == CCONV_ALGO_WINOGRAD else nd.g.OH * nd.g.OW)
                split = cconv_plan_wino_split(nd, units, threads)
                # units per thread, rounded up (C division here: setup.py's cdivision, so
                # -(-a // b) would round down: 49 tiles on 2 threads became units of 24, 24
                # and 1, and one thread did nearly all the work)
                parts = max(1, threads // split)
                nd.tile = max(1, min(nd.tile, (units + parts - 1) // parts))
            if nd.kind == CCONV_PLAN_CONV and nd.algo == CCONV_ALGO_DIRECT:
                # a depthwise layer with fewer images than threads: blocks of output rows
                nd.nsplit = 1
                if by_layers and batch < threads and cconv_dw_applies(&nd.g):
                    nd.nsplit = max(1, min(nd.g.OH, (threads + batch - 1) // batch))
            if nd.kind == CCONV_PLAN_CONV and nd.algo == CCONV_ALGO_WINOGRAD:
                nd.nsplit = split
                nb = cconv_plan_bpack_init(nd, self.is_f32)   # packed again by the next run
                if (self.bpack_arrs[i].size < nb if nd.bpack != NULL
                        else cconv_plan_wino_packs(nd, nimg, self.is_f32)):
                    self._bpack_alloc(i, nb)
            if nd.kind == CCONV_PLAN_CONV and nd.pool and not by_layers:
                nd.group = max(1, min(self.group_cap[i], chunk))
                nimg = nd.group
                mid_scr = max(mid_scr, nd.group * nd.mid_size)
            scratch = max(scratch, cconv_plan_node_scratch(nd, nimg, self.dtype.itemsize))
        self.p.mid_scr = mid_scr
        self.p.scratch = scratch + mid_scr + 16
        for i, nb in self.dense_pack:
            nd = &self.p.nodes[i]
            if nd.bpack == NULL and batch * nd.rows > CCONV_PLAN_FEW_ROWS:
                # fewer rows run unpacked (plan_impl.h's cconv_plan_run)
                packed = np.empty(nb, dtype=self.dtype)
                self.wino_arrs.append(packed)
                nd.bpack = cnp.PyArray_DATA(<cnp.ndarray>packed)
        if self.arena_arr is None or self.arena_arr.size < arena + 1:
            self.arena_arr = np.empty(arena + 1, dtype=self.dtype)
        if self.scr_arr is None or self.scr_arr.size < threads * self.p.scratch:
            self.scr_arr = np.empty(threads * self.p.scratch, dtype=self.dtype)
        if keep and (self.args_arr is None or self.args_arr.size < batch * args_img + 1):
            self.args_arr = np.empty(batch * args_img + 1, dtype=np.int32)
        self.p.keep = keep
        self.p.args = (<int32_t *>cnp.PyArray_DATA(<cnp.ndarray>self.args_arr)
                       if self.args_arr is not None else NULL)
        self.p.arena = cnp.PyArray_DATA(<cnp.ndarray>self.arena_arr)
        self.p.scr = cnp.PyArray_DATA(<cnp.ndarray>self.scr_arr)
        self.p.chunk = chunk
        self.batch, self.threads, self.by_layers = batch, threads, by_layers

    def set_dropout(self, int i, uint64_t seed, uint64_t step):
        """Training: the (seed, step) of dropout node i's next forward and backward."""
        if not 0 <= i < self.p.nnodes or self.p.nodes[i].kind != CCONV_PLAN_DROPOUT:
            raise ValueError(f"NativePlan.set_dropout: node {i} is no dropout node")
        self.p.nodes[i].seed, self.p.nodes[i].step = seed, step

    @property
    def tiles(self):
        """Per node, the im2col rows or Winograd tiles of one unit of work (1 for nodes
        without tiles)."""
        return [self.p.nodes[i].tile for i in range(self.p.nnodes)]

    @property
    def implicit(self):
        """Per node, whether its im2col rows are read in place from its input (implicit.h)."""
        return [bool(self.p.nodes[i].implicit) for i in range(self.p.nnodes)]

    @property
    def packed(self):
        """Per node, whether it holds its GEMM's B packed (Winograd nodes once a call gives
        them a whole panel of tiles, dense nodes enough rows; other convolutions always)."""
        return [self.p.nodes[i].bpack != NULL for i in range(self.p.nnodes)]

    @property
    def splits(self):
        """Per node, the parts of its output channels that are separate units of work
        (Winograd by layers with few tiles, plan.h; 1 for every other node)."""
        return [self.p.nodes[i].nsplit if self.p.nodes[i].kind == CCONV_PLAN_CONV else 1
                for i in range(self.p.nnodes)]

    @property
    def buffer_bytes(self):
        """Bytes of the plan's own buffers (activation arena, per-thread scratch, Winograd
        kernels, packed GEMM operands); the weights belong to the model."""
        total = sum(a.nbytes for a in self.wino_arrs + list(self.bpack_arrs.values())
                    + list(self.tpack_arrs.values()) + list(self.wflip_arrs.values()))
        for a in (self.arena_arr, self.scr_arr, self.args_arr, self.part_arr, self.bufs_arr,
                  self.dzs_arr):
            if a is not None:
                total += a.nbytes
        return total

    def run(self, cnp.ndarray x, cnp.ndarray y):
        """y = plan(x) for a batch prepared with :meth:`prepare`; one GIL-free call."""
        cdef int64_t n = self.batch
        if (x.dtype is not self.dtype and x.dtype != self.dtype) or y.dtype != self.dtype:
            raise TypeError(f"NativePlan.run: x and y must be {self.dtype}; got {x.dtype}, "
                            f"{y.dtype}")
        if (not cnp.PyArray_IS_C_CONTIGUOUS(x) or not cnp.PyArray_IS_C_CONTIGUOUS(y)
                or x.shape[0] != n or y.shape[0] != n or x.size != n * self.p.in_size
                or y.size != n * self.p.out_size or not cnp.PyArray_ISWRITEABLE(y)):
            raise ValueError(f"NativePlan.run: expected C-contiguous x with {n} x "
                             f"{self.p.in_size} and writable y with {n} x {self.p.out_size} "
                             f"elements; got shapes {(<object>x).shape}, {(<object>y).shape}")
        cdef const void *xp = cnp.PyArray_DATA(x)
        cdef void *yp = cnp.PyArray_DATA(y)
        cdef int nt = self.threads, bl = self.by_layers
        with nogil:
            if self.is_f32:
                cconv_plan_run_f32(&self.p, <const float *>xp, <float *>yp, n, nt, bl)
            else:
                cconv_plan_run_f64(&self.p, <const double *>xp, <double *>yp, n, nt, bl)


    def backward(self, cnp.ndarray x, cnp.ndarray y, cnp.ndarray g, int first):
        """Training: the gradients of the kept forward of ``x`` (output ``y``) for
        dL/d(output) ``g`` (same shape as y), written into the nodes' ``dw``/``db``; the
        nodes before ``first`` get none. Internal: cconv.plan passes the forward's arrays."""
        cdef int64_t n = self.batch, ch = self.p.chunk, maxsz = 1, nb
        cdef int i, status
        cdef cconv_pnode *nd
        if g.dtype != self.dtype or not cnp.PyArray_IS_C_CONTIGUOUS(g) or g.size != y.size:
            raise ValueError("NativePlan.backward: g must be a C-contiguous array like y")
        for i in range(self.p.nnodes):
            maxsz = max(maxsz, self.p.nodes[i].in_size, self.p.nodes[i].out_size)
        for i in range(first + 1, self.p.nnodes):     # nodes with an input gradient
            nd = &self.p.nodes[i]
            nb = cconv_plan_tpack_size(nd, self.is_f32)
            if nb > 0 and i not in self.tpack_arrs:
                self.tpack_arrs[i] = np.empty(nb, dtype=self.dtype)
                nd.tpack = cnp.PyArray_DATA(<cnp.ndarray>self.tpack_arrs[i])
            # Winograd kgrad nodes: the flipped kernel's transform for the input gradient,
            # where conv.pyx's input gradient would be Winograd too (use_winograd's rule
            # without the output-size allowance: at most WINO_KERNEL_BYTES), for dx's tiles
            nb = cconv_wino_elems(cconv_wino_tile(nd.g.H, nd.g.W)) * nd.g.C * nd.g.CO
            if (nd.wgrad and nd.wflip == NULL and nd.g.H >= 2 and nd.g.W >= 2
                    and nb * self.dtype.itemsize <= WINO_KERNEL_BYTES):
                self.wflip_arrs[i] = np.empty(nb, dtype=self.dtype)
                nd.wflip = cnp.PyArray_DATA(<cnp.ndarray>self.wflip_arrs[i])
        # the dense nodes after the last conv and pool: dz kept for the whole batch
        cdef int tail = self.p.nnodes
        cdef int64_t dzs = 0
        while tail > first and self.p.nodes[tail - 1].kind in (CCONV_PLAN_DENSE, CCONV_PLAN_ACT):
            tail -= 1
        # and a chunk's partial gradients cover the nodes before them (their offsets come first)
        self.p.part_size = self.all_part
        for i in range(tail, self.p.nnodes):
            if self.p.nodes[i].kind == CCONV_PLAN_DENSE:
                dzs += n * self.p.nodes[i].out_size
                self.p.part_size = min(self.p.part_size, self.p.nodes[i].dw_off)
        if dzs and (self.dzs_arr is None or self.dzs_arr.size < dzs):
            self.dzs_arr = np.empty(dzs, dtype=self.dtype)
        cdef char *dzp = (<char *>cnp.PyArray_DATA(<cnp.ndarray>self.dzs_arr) if dzs
                          else NULL)
        cdef int64_t isz = self.dtype.itemsize
        for i in range(tail, self.p.nnodes):
            if self.p.nodes[i].kind == CCONV_PLAN_DENSE:
                self.p.nodes[i].dzs = dzp
                dzp += n * self.p.nodes[i].out_size * isz
        cdef int64_t nchunks = (n + ch - 1) // ch
        cdef int64_t per_thread = 2 * ch * maxsz + ch * self.p.mid_img
        if self.part_arr is None or self.part_arr.size < nchunks * self.p.part_size + 1:
            self.part_arr = np.empty(nchunks * self.p.part_size + 1, dtype=self.dtype)
        if self.bufs_arr is None or self.bufs_arr.size < self.threads * per_thread:
            self.bufs_arr = np.empty(self.threads * per_thread, dtype=self.dtype)
        cdef const void *xp = cnp.PyArray_DATA(x)
        cdef const void *yp = cnp.PyArray_DATA(y)
        cdef const void *gp = cnp.PyArray_DATA(g)
        cdef void *pp = cnp.PyArray_DATA(<cnp.ndarray>self.part_arr)
        cdef void *bp = cnp.PyArray_DATA(<cnp.ndarray>self.bufs_arr)
        self.p.wino_exact = 0
        status = self._backward(xp, yp, gp, pp, bp, maxsz, first)
        if status == 1:   # a Winograd kernel gradient not finite: conv.pyx's exact ones
            self.p.wino_exact = 1
            try:
                status = self._backward(xp, yp, gp, pp, bp, maxsz, first)
            finally:
                self.p.wino_exact = 0
        if status:
            raise MemoryError("NativePlan.backward: could not allocate a workspace")

    cdef int _backward(self, const void *xp, const void *yp, const void *gp, void *pp, void *bp,
                       int64_t maxsz, int first):
        cdef int status
        cdef int64_t n = self.batch
        cdef int nt = self.threads
        with nogil:
            if self.is_f32:
                status = cconv_plan_backward_f32(&self.p, <const float *>xp, <const float *>yp,
                                                 <const float *>gp, n, nt, <float *>pp,
                                                 <float *>bp, maxsz, first)
            else:
                status = cconv_plan_backward_f64(&self.p, <const double *>xp,
                                                 <const double *>yp, <const double *>gp, n, nt,
                                                 <double *>pp, <double *>bp, maxsz, first)
        return status


cdef void _fill_node(cconv_pnode *nd, dict s) except *:
    nd.kind, nd.act = s["kind"], s.get("act", 0)
    nd.algo, nd.pool = s.get("algo", 0), s.get("pool", 0)
    nd.input = s["input"]
    nd.alpha = s.get("alpha", 0.0)
    inputs = s.get("inputs") or [nd.input]
    widths = s.get("widths") or [0] * len(inputs)
    if len(inputs) > CCONV_PLAN_MAX_IN:
        raise ValueError(f"NativePlan: a node has {len(inputs)} inputs; at most "
                         f"{CCONV_PLAN_MAX_IN}")
    nd.ninputs = len(inputs)
    for k in range(nd.ninputs):
        nd.inputs[k], nd.widths[k] = inputs[k], widths[k]
    nd.merge = s.get("merge", 0)
    nd.res = s.get("res", CCONV_PLAN_NONE)
    g = s.get("g")
    if g is not None:
        (nd.g.H, nd.g.W, nd.g.C, nd.g.KH, nd.g.KW, nd.g.CO, nd.g.OH, nd.g.OW, nd.g.sh, nd.g.sw,
         nd.g.dh, nd.g.dw, nd.g.pt, nd.g.pl, nd.g.groups) = g
        nd.g.N = 1
    pg = s.get("pg")
    if pg is not None:
        (nd.pg.H, nd.pg.W, nd.pg.C, nd.pg.KH, nd.pg.KW, nd.pg.OH, nd.pg.OW, nd.pg.sh, nd.pg.sw,
         nd.pg.pt, nd.pg.pl) = pg
    nd.rows, nd.K, nd.units = s.get("rows", 0), s.get("K", 0), s.get("units", 1)
    nd.in_size, nd.out_size = s["in_size"], s["out_size"]
    nd.mid_size, nd.out_off = s.get("mid_size", 0), s["out_off"]
    nd.arg_off = s.get("arg_off", -1)
    nd.dw_off, nd.db_off = s.get("dw_off", 0), s.get("db_off", 0)
    nd.w_size, nd.b_size = s.get("w_size", 0), s.get("b_size", 0)
    nd.wgrad = s.get("wgrad", 0)
    nd.w_part = s.get("w_part", nd.w_size)
