"""Compile a model into a native inference plan: one GIL-free call per batch instead of one
Python call (validation, allocation, fork-join) per layer.

A plan is a list of segments. A native segment is a list of nodes (``cconv/_ext/plan.h``),
each reading the output of an earlier node (by index: graphs fit, not only chains):

- ``Conv2D`` with its bias and activation applied to each output tile while it is in cache,
  and a following ``MaxPooling2D``/``AveragePooling2D`` fused in (the convolution's output
  never reaches a batch-sized buffer when the plan runs by chunks);
- ``MaxPooling2D``/``AveragePooling2D`` on their own;
- ``Dense`` with bias and activation (the final softmax included);
- ``Activation``/``Softmax`` layers, fused into the preceding node when it has none.

``Flatten`` and inference-mode ``Dropout`` cost nothing (the data does not move). Any other
layer (``BatchNormalization``, ...) runs through its own ``forward`` between native segments.
Activations with a native form: linear, relu, sigmoid, tanh, softmax.

Threads by shape: when the batch gives every thread chunks of images, each thread runs the
whole network on its chunks (one parallel region, no barrier per layer); with fewer images
than that and enough work per image, every node's work is shared by the threads instead.
Either way each output element is computed by the same arithmetic, so results are
bit-identical for any thread count, and they equal the layer-by-layer path to float rounding
(bit-identical where both use the same kernel: GEMM, direct and Winograd convolutions,
pooling, relu).
Node-by-node calls are timed by a :class:`cconv.trainers.load_guard.LoadGuard` per segment (the one
guard that training steps use, with its inference settings): calls that stall (another
process took a core from one of their threads), three in a row, send the next half second of
node-by-node calls to one thread; the thread count never changes a result.

Opt out: ``CCONV_PLAN=0`` in the environment, or ``model.jit_compile = False`` (Keras's
name), or ``model.compile(..., jit_compile=False)``.

Example::

    plan = cconv.plan.compile_plan(model)   # None when no layer has a native node
    y = plan(x)                             # x: (batch,) + input_shape, the model's dtype
"""

import math
import operator
import os

import numpy as np

from . import layers as _layers
from . import ops as _ops
from ._ext import conv as _conv
from ._ext import plan as _native
from ._ext.parallel import get_num_threads
from .trainers.load_guard import INFERENCE, LoadGuard

__all__ = ["compile_plan", "get_plan", "Plan", "compile_train_plan", "get_train_plan",
           "TrainPlan"]

# Per-thread bytes of a chunk's activations: chunks of images whose node outputs fit in a
# core's L2 cache (with room for the kernels and scratch).
_CHUNK_BYTES = 1 << 18
_MAX_CHUNK = 64
# Multiply-adds of a whole batch below which one thread runs it (a fork costs microseconds).
_SERIAL_WORK = 1 << 18
# Multiply-adds per image from which a batch with fewer chunks than threads shares each node's
# work among the threads (one barrier per node) instead of giving whole chunks to threads.
_SHARED_WORK = 1 << 21

def _enabled():
    return os.environ.get("CCONV_PLAN", "1") != "0"


def _conv_algo(layer, shape, out, pads):
    """"direct", "winograd", "pointwise", "im2col": what ``ops.conv2d`` runs for this layer
    (``cconv._ext.conv.choose_algorithm``, the one rule), or None (grouped, not direct)."""
    algo = _conv.choose_algorithm((1,) + tuple(shape), layer.kernel.shape, (1,) + tuple(out),
                                  layer.strides, layer.dilation_rate, pads, layer.groups,
                                  layer.dtype)
    return algo if layer.groups == 1 or algo == "direct" else None


def _finite_or_no_winograd(nodes, x):
    """False when ``x`` holds Inf or NaN and a node runs Winograd: its transforms would turn
    what the direct sum gives (+-inf) into NaN, so such a batch runs layer by layer, where
    ``ops`` takes an exact path (docs/reliability.md)."""
    return not any(n.get("algo") == _native.ALGOS["winograd"] for n in nodes) or bool(
        np.isfinite(x).all())


def _usable(w, dtype):
    """A weight the native code can read in place (None: no weight)."""
    return w is None or (w.dtype == dtype and w.flags.c_contiguous)


def _act_code(layer, logits=False):
    """plan.h's code of the layer's activation (linear for ``logits``); None: not native."""
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return _native.ACTIVATIONS["linear"] if logits else _native.ACTIVATIONS.get(act.name)


class _Builder:
    """Collects the nodes of one native segment; ``value`` is the node whose output is the
    segment's current value (-1: the segment's input) and ``shape`` its sample shape."""

    def __init__(self, shape, training=False):
        self.nodes, self.value, self.shape, self.in_shape, self.work = [], -1, shape, shape, 0
        self.training = training

    def _add(self, node, out_shape, layer=None):
        node["layer"], node["shapes"] = layer, (tuple(self.shape), tuple(out_shape))
        node["input"], node["in_size"] = self.value, math.prod(self.shape)
        node["out_size"] = math.prod(out_shape)
        self.nodes.append(node)
        self.value, self.shape = len(self.nodes) - 1, tuple(out_shape)

    def _last(self, kind):
        """The node producing the current value if it is of ``kind``, else None."""
        if self.value >= 0 and self.nodes[self.value]["kind"] == _native.KINDS[kind]:
            return self.nodes[self.value]
        return None

    def conv(self, layer, logits=False):
        out = layer.output_shape[1:]
        pads = _ops.compute_padding(self.shape[:2], layer.kernel_size, layer.strides,
                                    layer.padding, layer.dilation_rate)
        algo = _conv_algo(layer, self.shape, out, (pads[0][0], pads[1][0]))
        act = _act_code(layer, logits)
        if algo is None or act is None or not (_usable(layer.kernel, layer.dtype)
                                               and _usable(layer.bias, layer.dtype)):
            return False
        (h, w, c), (kh, kw) = self.shape, layer.kernel_size
        g = (h, w, c, kh, kw, out[2], out[0], out[1], *layer.strides, *layer.dilation_rate,
             pads[0][0], pads[1][0], layer.groups)
        self.work += out[0] * out[1] * out[2] * kh * kw * c // layer.groups
        self._add({"kind": _native.KINDS["conv"], "act": act, "algo": _native.ALGOS[algo],
                   "g": g, "w": layer.kernel, "b": layer.bias, "units": out[2],
                   "mid_size": math.prod(out)}, out, layer)
        return True

    def pool(self, layer):
        out = layer.output_shape[1:]
        pads = _ops.compute_padding(self.shape[:2], layer.pool_size, layer.strides, layer.padding)
        pg = (*self.shape, *layer.pool_size, out[0], out[1], *layer.strides, pads[0][0],
              pads[1][0])
        kind = _native.POOLS["max" if isinstance(layer, _layers.MaxPooling2D) else "avg"]
        self.work += math.prod(out) * layer.pool_size[0] * layer.pool_size[1]
        conv = self._last("conv")
        if self.training and kind == _native.POOLS["avg"]:
            conv = None          # its gradient would need the whole conv output
        if conv is not None and not conv.get("pool"):      # fuse: pool the conv's output in cache
            conv["pool"], conv["pg"], conv["out_size"] = kind, pg, math.prod(out)
            conv["shapes"] = (conv["shapes"][0], tuple(out))
            conv["pool_layer"] = layer
            self.shape = tuple(out)
            return True
        self._add({"kind": _native.KINDS["pool"], "pool": kind, "pg": pg}, out, layer)
        return True

    def dense(self, layer, logits=False):
        act = _act_code(layer, logits)
        if act is None or not (_usable(layer.kernel, layer.dtype)
                               and _usable(layer.bias, layer.dtype)):
            return False
        rows, k = math.prod(self.shape[:-1]), self.shape[-1]
        self.work += rows * k * layer.units
        self._add({"kind": _native.KINDS["dense"], "act": act, "rows": rows, "K": k,
                   "units": layer.units, "w": layer.kernel, "b": layer.bias},
                  self.shape[:-1] + (layer.units,), layer)
        return True

    def activation(self, layer, logits=False):
        act = _act_code(layer, logits)
        if act is None:
            return False
        if act == _native.ACTIVATIONS["linear"]:
            return True
        node = self._last("conv") or self._last("dense")
        if node is not None and not node.get("pool") and node["act"] == 0:
            node["act"] = act                               # fuse into the epilogue
            return True
        self._add({"kind": _native.KINDS["act"], "act": act, "units": self.shape[-1]},
                  self.shape, layer)
        return True

    def add(self, layer, logits=False):
        """Append ``layer`` (its ``forward_logits`` when ``logits``); False when it has no
        native node."""
        if isinstance(layer, (_layers.Flatten, _layers.Dropout, _layers.InputLayer)):
            self.shape = layer.output_shape[1:]          # the data does not move
            return True
        if type(layer) is _layers.Conv2D:
            return self.conv(layer, logits)
        if type(layer) in (_layers.MaxPooling2D, _layers.AveragePooling2D):
            return self.pool(layer)
        if type(layer) is _layers.Dense:
            return self.dense(layer, logits)
        if type(layer) in (_layers.Activation, _layers.Softmax):
            return self.activation(layer, logits)
        return False

    def finish(self, dtype):
        """The segment as a :class:`_NativeSegment` (None when it has no node)."""
        if not self.nodes or self.value != len(self.nodes) - 1:
            return None
        arena = _assign_offsets(self.nodes)
        mid = max([n.get("mid_size", 0) for n in self.nodes if n.get("pool")] or [0])
        sizes = (math.prod(self.in_shape), math.prod(self.shape), arena, mid, dtype)
        seg = _NativeSegment(lambda: _native.NativePlan(self.nodes, *sizes), self.shape, dtype,
                             self.work, arena)
        seg.native_nodes = self.nodes
        return seg


def _assign_offsets(nodes):
    """Give every node but the last an offset (elements per image) in the arena, reusing the
    space of outputs no later node reads; returns the arena's elements per image."""
    last_use = {}
    for i, node in enumerate(nodes):
        last_use[node["input"]] = i
    live, top = [], 0                  # (offset, size, node) of outputs still to be read
    for i, node in enumerate(nodes):
        live = [b for b in live if last_use.get(b[2], -1) >= i]
        if i == len(nodes) - 1:
            node["out_off"] = -1
            break
        size, off = node["out_size"], 0
        for b_off, b_size, _ in sorted(live):          # first gap that fits
            if b_off - off >= size:
                break
            off = max(off, b_off + b_size)
        node["out_off"] = off
        live.append((off, size, i))
        top = max(top, off + size)
    return top


class _NativeSegment:
    """A native segment. Each concurrent caller (Python threads sharing a model) takes its
    own :class:`NativePlan` (buffers for the last batch size and thread count it saw) from a
    free list; one is enough for a single caller."""

    def __init__(self, make_native, out_shape, dtype, work, arena_img):
        self._make_native = make_native
        self.native = make_native()           # the first instance (introspection, tests)
        self._free, self._all = [self.native], [self.native]
        self.out_shape, self.dtype = tuple(out_shape), np.dtype(dtype)
        self.work, self.arena_img = work, arena_img
        # node-by-node calls wait at one barrier per node: a worker that another process
        # preempts stalls the whole call, so their threads come from a load guard
        self.guard = LoadGuard(**INFERENCE)
        self._by_layers = {}                  # (images, threads) -> node by node?

    def _chunks(self, n, threads):
        """``(chunk size, by layers)`` for ``n`` images on ``threads`` threads."""
        chunk = _CHUNK_BYTES // max(1, self.arena_img * self.dtype.itemsize)
        chunk = max(1, min(chunk, _MAX_CHUNK, -(-n // 8)))
        return chunk, -(-n // chunk) < threads and self.work >= _SHARED_WORK

    def _node_by_node(self, n, threads):
        """Whether ``n`` images on ``threads`` threads run node by node (remembered per
        pair: every call asks)."""
        key = (n, threads)
        found = self._by_layers.get(key)
        if found is None:
            found = self._by_layers[key] = self._chunks(n, threads)[1]
        return found

    def _prepare(self, native, n, threads):
        """Chunk size, scheme and threads for ``n`` images (none of them changes a result)."""
        chunk, by_layers = self._chunks(n, threads)
        nchunks = -(-n // chunk)
        native.key = (n, threads)
        if n * self.work < _SERIAL_WORK:
            threads = 1
        elif not by_layers:
            threads = min(threads, nchunks)
        native.prepare(n, threads, chunk, by_layers)

    def __call__(self, x):
        try:
            native = self._free.pop()         # atomic under the GIL
        except IndexError:
            native = self._make_native()
            self._all.append(native)
        try:
            n, requested = x.shape[0], get_num_threads()
            timed = requested > 1 and self._node_by_node(n, requested)   # guarded
            threads = self.guard.threads(n, requested) if timed else requested
            key = (n, threads)
            if key != native.key:
                self._prepare(native, *key)
            if not x.flags.c_contiguous:
                x = np.ascontiguousarray(x)
            y = np.empty((n,) + self.out_shape, dtype=self.dtype)
            if timed:
                t0 = self.guard.clock()
                native.run(x, y)
                self.guard.record(n, requested, threads, self.guard.clock() - t0)
            else:
                native.run(x, y)
        finally:
            self._free.append(native)
        return y

    @property
    def buffer_bytes(self):
        return sum(n.buffer_bytes for n in self._all)


class _LayerSegment:
    """Layers without a native node, run by their own ``forward`` in inference mode (the
    last one's ``forward_logits`` when ``logits``)."""

    def __init__(self, layers, logits=False):
        self.layers, self.logits = list(layers), logits

    def __call__(self, x):
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == last and self.logits:
                x = layer.forward_logits(x, False)
            else:
                x = layer.forward(x, False)
        return x


class Plan:
    """A compiled model: call it on a batch ``x`` (C-contiguous or not, the model's dtype,
    shape ``(batch,) + input_shape``) for the model's inference-mode output.

    Attributes:
        segments: the native and layer-by-layer segments, in order.
        native_layers, fallback_layers: names of the layers in each kind of segment.
    """

    def __init__(self, segments, weights, native_layers, fallback_layers, layers=None,
                 input_shape=None):
        self.segments = segments
        self._layers_seen, self.input_shape = layers, input_shape
        self._wlayers, self._wnames, self._warrays = (
            tuple(w[i] for w in weights) for i in range(3))
        self.native_layers, self.fallback_layers = native_layers, fallback_layers
        self._run = segments[0] if len(segments) == 1 else self._run_segments
        self._nodes = [n for seg in segments if isinstance(seg, _NativeSegment)
                       for n in seg.native_nodes]

    def accepts(self, x):
        """Whether the plan gives what the layer path gives for ``x`` (False only for Inf or
        NaN inputs of a plan that runs Winograd; the caller then runs layer by layer)."""
        return _finite_or_no_winograd(self._nodes, x)

    def _run_segments(self, x):
        for seg in self.segments:
            x = seg(x)
        return x

    def __call__(self, x):
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"The plan expects inputs of shape (batch,) + {self.input_shape}; "
                             f"got {x.shape}.")
        return self._run(x)

    def is_current(self, layers):
        """True while the model has the same layers and weight arrays it was compiled with."""
        return layers == self._layers_seen and all(
            map(operator.is_, map(getattr, self._wlayers, self._wnames), self._warrays))

    @property
    def buffer_bytes(self):
        """Bytes of the plan's own buffers (activations, scratch) as sized by the last call."""
        return sum(s.buffer_bytes for s in self.segments if isinstance(s, _NativeSegment))


def _flush(builder, pending, segments, dtype):
    seg = builder.finish(dtype) if builder is not None else None
    if seg is not None:
        segments.append(seg)
    elif builder is not None and pending:
        segments.append(_LayerSegment(pending))     # only data-free layers: run as layers


def _any_size(shape):
    """Whether an input shape has a size known only at call time (None past the batch
    axis; ``Input(shape=(None, None, 3))``): such a model runs layer by layer."""
    shapes = shape if isinstance(shape, list) else [shape]
    return any(d is None for s in shapes for d in tuple(s)[1:])


def compile_plan(model, logits=False):
    """Compile a built model's inference path; returns a :class:`Plan`, or None when no
    layer has a native node (then the layer-by-layer path is as fast) or the model is a graph
    that is not a chain (``model.chain_layers()`` is None: several inputs or outputs, a
    merge, a branch, a shared layer), which runs node by node.
    ``logits=True`` compiles the path that stops before the last layer's activation (the
    model's ``_forward(x, False, logits=True)``, for a loss fused with it)."""
    shape = model.input_shape          # builds the model first if needed
    chain = model.chain_layers()
    if chain is None or _any_size(shape):
        return None
    dtype, shape = model.dtype, shape[1:]
    segments, builder, pending, native, fallback, weights = [], None, [], [], [], []
    last = len(chain) - 1
    for i, layer in enumerate(chain):
        if builder is None:
            builder, pending = _Builder(shape), []
        if builder.add(layer, logits and i == last):
            pending.append(layer)
            native.append(layer.name)
            weights += [(layer, n, getattr(layer, n)) for n in layer.weight_names]
        else:
            _flush(builder, pending, segments, dtype)
            builder = None
            if not segments or not isinstance(segments[-1], _LayerSegment):
                segments.append(_LayerSegment([]))
            segments[-1].layers.append(layer)
            segments[-1].logits = logits and i == last
            fallback.append(layer.name)
        shape = layer.output_shape[1:]
    _flush(builder, pending, segments, dtype)
    if not any(isinstance(s, _NativeSegment) for s in segments):
        return None
    return Plan(segments, weights, native, fallback, model.layers, tuple(model.input_shape[1:]))


def _cached(model, key, compile_fn, *args):
    """The model's plan under ``key``, compiled by ``compile_fn(model, *args)`` on first use
    and again after the model's layers or weight arrays change; None when disabled."""
    if getattr(model, "jit_compile", True) is False or not _enabled():
        return None
    plans = model.__dict__.get("_plans")
    if plans is None:
        plans = model._plans = {}
    cached = plans.get(key)
    if cached is not None and cached[0].is_current(model.layers):
        return cached[1]
    plan = compile_fn(model, *args)
    plans[key] = (plan if plan is not None else _Unplannable(model), plan)
    return plan


def get_plan(model, logits=False):
    """The model's cached inference plan (of its logits path with ``logits=True``), compiled
    on first use and again after its layers or weight arrays change; None when disabled
    (``jit_compile=False``, ``CCONV_PLAN=0``) or when no layer has a native node."""
    return _cached(model, logits, compile_plan, logits)


class _Unplannable:
    """Remembers that a model's layers have no native node (until they change)."""

    def __init__(self, model):
        self._layers_seen = model.layers
        self._wlayers = self._wnames = self._warrays = ()

    is_current = Plan.is_current


# ----- training --------------------------------------------------------------------------------
_TRAIN_ACTS = {_native.ACTIVATIONS[a] for a in ("linear", "relu", "sigmoid", "tanh")}


def _trainable_nodes(builder, chain, logits):
    """Add every layer of ``chain`` (a model's :meth:`~cconv.Model.chain_layers`) to
    ``builder`` for training; False when one has no native training node (then the whole
    step runs layer by layer)."""
    last = len(chain) - 1
    for i, layer in enumerate(chain):
        if isinstance(layer, _layers.Dropout) and layer.rate > 0:
            return False
        if layer.weights and not (layer.trainable and layer.trainable_weights):
            return False
        if not builder.add(layer, logits and i == last):
            return False
    return builder.nodes and all(n.get("act", 0) in _TRAIN_ACTS for n in builder.nodes)


class TrainPlan:
    """A native training forward (every node's output kept, fused max pools recording their
    winning cells) and its backward pass, which writes the gradients into the layers'
    ``grads`` arrays (the model's flat gradient array). The loss and the optimizer stay the
    model's. ``forward(x)`` returns the output (the logits when compiled with ``logits``);
    ``backward(g)`` takes dL/d(output) for the same batch."""

    def __init__(self, builder, model, checks):
        self.nodes, self.dtype = builder.nodes, np.dtype(model.dtype)
        self.out_shape, self.work = builder.shape, builder.work
        self._wlayers, self._wnames, self._warrays = checks
        self._layers_seen = model.layers
        top = arg_top = part = 0
        for node in self.nodes:           # every output kept: no reuse
            node["out_off"], node["arg_off"] = top, -1
            top += node["out_size"]
            if node.get("pool") == _native.POOLS["max"]:
                node["arg_off"] = arg_top
                arg_top += node["out_size"]
            layer = node["layer"]
            if node.get("w") is not None:   # gradients: the model's arrays, and chunk slices
                node["dw"], node["dw_off"], node["w_size"] = (layer.grads["kernel"], part,
                                                              node["w"].size)
                node["w_part"] = node["w"].size
                if (node["kind"] == _native.KINDS["conv"]
                        and node.get("algo") == _native.ALGOS["winograd"]):
                    # the kernel gradient summed as the transformed (E, C, CO) (plan.h), E
                    # for the tile size of the output (OH, OW: g[6], g[7])
                    node["wgrad"] = 1
                    e = (_conv.winograd_tile(node["g"][6], node["g"][7]) + 2) ** 2
                    node["w_part"] = e * node["g"][2] * node["g"][5]
                part += node["w_part"]
            if node.get("b") is not None:
                node["db"], node["db_off"], node["b_size"] = (layer.grads["bias"], part,
                                                              node["b"].size)
                part += node["b"].size
        self.nodes[-1]["out_off"] = -1
        mid = max([n.get("mid_size", 0) for n in self.nodes if n.get("pool")] or [0])
        self.native = _native.NativePlan(self.nodes, math.prod(builder.in_shape),
                                         math.prod(self.out_shape), top, mid, model.dtype)
        self._args_img = arg_top
        self._first = next(i for i, n in enumerate(self.nodes) if n.get("w") is not None)
        self._n, self._x, self._y = -1, None, None

    is_current = Plan.is_current

    def accepts(self, x):
        """As :meth:`Plan.accepts`."""
        return _finite_or_no_winograd(self.nodes, x)

    def forward(self, x):
        n, threads = x.shape[0], get_num_threads()
        if (n, threads) != self._n:
            chunk = max(1, min(_MAX_CHUNK, -(-n // 8)))
            self.native.prepare(n, min(threads, -(-n // chunk)), chunk, False, True,
                                self._args_img)
            self._n = (n, threads)
        self._x = np.ascontiguousarray(x)
        self._y = np.empty((n,) + tuple(self.out_shape), self.dtype)
        self.native.run(self._x, self._y)
        return self._y

    def backward(self, g):
        g = np.ascontiguousarray(g, dtype=self.dtype)
        self.native.backward(self._x, self._y, g, self._first)


def compile_train_plan(model, logits=False):
    """A :class:`TrainPlan` for ``model`` (built, weights packed), or None when a layer has no
    native training node (BatchNormalization, Dropout with a rate, a frozen layer, softmax
    before the last layer, ...)."""
    chain = model.chain_layers()
    if chain is None or _any_size(model.input_shape):   # no chain: layer by layer
        return None
    builder = _Builder(model.input_shape[1:], training=True)
    if (not _trainable_nodes(builder, chain, logits) or builder.value != len(builder.nodes) - 1
            or not any(n.get("w") is not None for n in builder.nodes)):
        return None
    checks = [(model, "_gflat", getattr(model, "_gflat", None))]
    for layer in model.layers:
        checks += [(layer, n, getattr(layer, n)) for n in layer.weight_names]
    return TrainPlan(builder, model, tuple(tuple(c[k] for c in checks) for k in range(3)))


def get_train_plan(model, logits=False):
    """The model's cached :class:`TrainPlan` (as :func:`get_plan`), or None."""
    return _cached(model, ("train", logits), compile_train_plan, logits)
