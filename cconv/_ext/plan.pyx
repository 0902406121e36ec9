# cython: language_level=3
"""The native side of a compiled inference plan (plan.h): node descriptors, buffers, and
one GIL-free call per batch. ``cconv.plan`` builds the node list and decides algorithms,
buffer offsets, chunk size and threads; this module trusts those decisions and only checks
the arrays handed to :meth:`NativePlan.run`."""
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport calloc, free

import numpy as np

cnp.import_array()


cdef extern from "plan.h" nogil:
    ctypedef struct cconv_geom:
        int64_t N, H, W, C, KH, KW, CO, OH, OW, sh, sw, dh, dw, pt, pl, groups
    ctypedef struct cconv_pool_geom:
        int64_t H, W, C, KH, KW, OH, OW, sh, sw, pt, pl
    ctypedef struct cconv_pnode:
        int kind, act, algo, pool, input
        cconv_geom g
        cconv_pool_geom pg
        int64_t rows, K, units, in_size, out_size, mid_size, out_off, arg_off, tile, group
        const void *w
        const void *b
        void *wino
    ctypedef struct cconv_plan:
        cconv_pnode *nodes
        int nnodes
        int64_t in_size, out_size, arena_img, mid_img, mid_scr, scratch, chunk
        void *arena
        void *scr
        int keep
        int32_t *args
    enum:
        CCONV_PLAN_CONV, CCONV_PLAN_POOL, CCONV_PLAN_DENSE, CCONV_PLAN_ACT
        CCONV_ACT_LINEAR, CCONV_ACT_RELU, CCONV_ACT_SIGMOID, CCONV_ACT_TANH, CCONV_ACT_SOFTMAX
        CCONV_ALGO_IM2COL, CCONV_ALGO_DIRECT, CCONV_ALGO_WINOGRAD, CCONV_ALGO_POINTWISE
        CCONV_POOL_NONE, CCONV_POOL_MAX, CCONV_POOL_AVG
    void cconv_plan_prepare_node(cconv_pnode *nd)
    int64_t cconv_plan_node_scratch(const cconv_pnode *nd, int64_t nimg)
    void cconv_plan_run_f32(const cconv_plan *p, const float *x, float *y, int64_t N,
                            int nthreads, int by_layers)
    void cconv_plan_run_f64(const cconv_plan *p, const double *x, double *y, int64_t N,
                            int nthreads, int by_layers)
    void cconv_plan_act_grad_f32(float *dz, const float *da, const float *a, int64_t n, int act,
                                 int nthreads)
    void cconv_plan_act_grad_f64(double *dz, const double *da, const double *a, int64_t n,
                                 int act, int nthreads)
    void cconv_plan_unpool_f32(float *dmid, const float *dy, const int32_t *arg, int64_t N,
                               int64_t out, int64_t mid, int nthreads)
    void cconv_plan_unpool_f64(double *dmid, const double *dy, const int32_t *arg, int64_t N,
                               int64_t out, int64_t mid, int nthreads)
    void cconv_plan_dense_backward_f32(const float *x, const float *dz, const float *w,
                                       float *dx, float *dw, float *db, int64_t R, int64_t K,
                                       int64_t U, int nthreads)
    void cconv_plan_dense_backward_f64(const double *x, const double *dz, const double *w,
                                       double *dx, double *dw, double *db, int64_t R, int64_t K,
                                       int64_t U, int nthreads)


#: The codes of plan.h's enums, for cconv.plan.
KINDS = {"conv": CCONV_PLAN_CONV, "pool": CCONV_PLAN_POOL, "dense": CCONV_PLAN_DENSE,
         "act": CCONV_PLAN_ACT}
ACTIVATIONS = {"linear": CCONV_ACT_LINEAR, "relu": CCONV_ACT_RELU, "sigmoid": CCONV_ACT_SIGMOID,
               "tanh": CCONV_ACT_TANH, "softmax": CCONV_ACT_SOFTMAX}
ALGOS = {"im2col": CCONV_ALGO_IM2COL, "direct": CCONV_ALGO_DIRECT,
         "winograd": CCONV_ALGO_WINOGRAD, "pointwise": CCONV_ALGO_POINTWISE}
POOLS = {None: CCONV_POOL_NONE, "max": CCONV_POOL_MAX, "avg": CCONV_POOL_AVG}


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
    cdef list keep, group_cap, wino_arrs
    cdef object arena_arr, scr_arr, args_arr
    cdef public int64_t batch
    cdef public int threads, by_layers
    cdef public object key                  # cconv.plan's record of what it prepared for
    cdef int is_f32

    def __cinit__(self):
        self.p.nodes = NULL

    def __init__(self, list nodes, int64_t in_size, int64_t out_size, int64_t arena_img,
                 int64_t mid_img, dtype):
        cdef int i
        cdef cconv_pnode *nd
        self.dtype = np.dtype(dtype)
        self.is_f32 = self.dtype == np.float32
        self.keep, self.group_cap, self.wino_arrs = [], [], []
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
            cconv_plan_prepare_node(nd)
            self.group_cap.append(nd.group)
            if nd.algo == CCONV_ALGO_WINOGRAD and nd.kind == CCONV_PLAN_CONV:
                # U (16, C, CO), then the kernel it came from (NaN: never equal, so the first
                # call transforms)
                u = np.full(25 * nd.g.C * nd.g.CO, np.nan, dtype=self.dtype)
                self.wino_arrs.append(u)
                nd.wino = cnp.PyArray_DATA(<cnp.ndarray>u)
        self.p.in_size, self.p.out_size = in_size, out_size
        self.p.arena_img, self.p.mid_img = arena_img, mid_img
        self.batch = -1
        self.threads = 0

    def __dealloc__(self):
        free(self.p.nodes)

    def prepare(self, int64_t batch, int threads, int64_t chunk, bint by_layers,
                bint keep=False, int64_t args_img=0):
        """Size the buffers for ``batch`` images on ``threads`` threads, by chunks of
        ``chunk`` images or (``by_layers``) node by node. Reuses the buffers when they fit.
        ``keep`` (training, by chunks): every node output stays for the whole batch, and
        fused max pools record their winning cells (``args_img`` int32 per image)."""
        cdef int64_t arena = (batch * (self.p.arena_img + self.p.mid_img) if by_layers
                              else (batch if keep else threads * chunk) * self.p.arena_img)
        cdef int64_t scratch = 0, mid_scr = 0, nimg
        cdef int i
        cdef cconv_pnode *nd
        for i in range(self.p.nnodes):
            nd = &self.p.nodes[i]
            nimg = batch if by_layers else chunk
            if nd.kind == CCONV_PLAN_CONV and nd.pool and not by_layers:
                nd.group = max(1, min(self.group_cap[i], chunk))
                nimg = nd.group
                mid_scr = max(mid_scr, nd.group * nd.mid_size)
            scratch = max(scratch, cconv_plan_node_scratch(nd, nimg))
        self.p.mid_scr = mid_scr
        self.p.scratch = scratch + mid_scr + 16
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

    @property
    def buffer_bytes(self):
        """Bytes of the plan's own buffers (activation arena, per-thread scratch, Winograd
        kernels); the weights belong to the model."""
        total = sum(a.nbytes for a in self.wino_arrs)
        for a in (self.arena_arr, self.scr_arr, self.args_arr):
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


    def kept(self, int i):
        """Training: node ``i``'s output for the prepared batch, (batch, out_size), and its
        recorded max-pool cells (int32, same shape) or None. Views of the plan's buffers."""
        cdef cconv_pnode *nd = &self.p.nodes[i]
        cdef int64_t n = self.batch
        out = self.arena_arr[nd.out_off * n:(nd.out_off + nd.out_size) * n].reshape(n, -1)
        arg = None
        if nd.arg_off >= 0:
            arg = self.args_arr[nd.arg_off * n:(nd.arg_off + nd.out_size) * n].reshape(n, -1)
        return out, arg


def act_grad(cnp.ndarray dz, cnp.ndarray da, cnp.ndarray a, int act, int threads):
    """dz = da * f'(a) for plan.h's activation ``act`` (arrays of one dtype and size,
    C-contiguous; dz may be da). Internal: cconv.plan checks the arrays."""
    cdef void *zp = cnp.PyArray_DATA(dz)
    cdef const void *dp = cnp.PyArray_DATA(da)
    cdef const void *ap = cnp.PyArray_DATA(a)
    cdef int64_t n = a.size
    cdef bint f32 = dz.dtype.itemsize == 4
    with nogil:
        if f32:
            cconv_plan_act_grad_f32(<float *>zp, <const float *>dp, <const float *>ap, n, act,
                                    threads)
        else:
            cconv_plan_act_grad_f64(<double *>zp, <const double *>dp, <const double *>ap, n,
                                    act, threads)


def unpool(cnp.ndarray dmid, cnp.ndarray dy, cnp.ndarray arg, int threads):
    """dmid (N, mid) = dy (N, out) sent to the cells ``arg`` (N, out) recorded by a fused max
    pool. Internal."""
    cdef int64_t N = dy.shape[0], out = dy.size // max(N, 1), mid = dmid.size // max(N, 1)
    cdef void *mp = cnp.PyArray_DATA(dmid)
    cdef const void *dp = cnp.PyArray_DATA(dy)
    cdef const int32_t *ip = <const int32_t *>cnp.PyArray_DATA(arg)
    cdef bint f32 = dy.dtype.itemsize == 4
    with nogil:
        if f32:
            cconv_plan_unpool_f32(<float *>mp, <const float *>dp, ip, N, out, mid, threads)
        else:
            cconv_plan_unpool_f64(<double *>mp, <const double *>dp, ip, N, out, mid, threads)


cdef void *_opt(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


def dense_backward(cnp.ndarray x, cnp.ndarray dz, cnp.ndarray w, dx, dw, db, int threads):
    """Dense gradients over R = dz.shape[0] rows (plan.h); dx, dw, db may be None.
    Internal."""
    cdef int64_t R = dz.shape[0], U = w.shape[1], K = w.shape[0]
    cdef const void *xp = cnp.PyArray_DATA(x)
    cdef const void *zp = cnp.PyArray_DATA(dz)
    cdef const void *wp = cnp.PyArray_DATA(w)
    cdef void *dxp = _opt(dx)
    cdef void *dwp = _opt(dw)
    cdef void *dbp = _opt(db)
    cdef bint f32 = w.dtype.itemsize == 4
    with nogil:
        if f32:
            cconv_plan_dense_backward_f32(<const float *>xp, <const float *>zp,
                                          <const float *>wp, <float *>dxp, <float *>dwp,
                                          <float *>dbp, R, K, U, threads)
        else:
            cconv_plan_dense_backward_f64(<const double *>xp, <const double *>zp,
                                          <const double *>wp, <double *>dxp, <double *>dwp,
                                          <double *>dbp, R, K, U, threads)


cdef void _fill_node(cconv_pnode *nd, dict s) except *:
    nd.kind, nd.act = s["kind"], s.get("act", 0)
    nd.algo, nd.pool = s.get("algo", 0), s.get("pool", 0)
    nd.input = s["input"]
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
