"""Compile a model into a native inference plan: one GIL-free call per batch instead of one
Python call (validation, allocation, fork-join) per layer.

The model's graph (nested models inlined; one input, one output) becomes a list of
segments. A native segment is a list of nodes (``cconv/_ext/plan.h``), each reading the
outputs of earlier nodes by index, so any graph fits:

- ``Conv2D``, ``DepthwiseConv2D`` (a grouped convolution) and ``SeparableConv2D`` (a depthwise
  node, then a pointwise one) with an epilogue applied to
  each output tile while it is in cache: bias, a following ``BatchNormalization`` folded in
  (scale and shift per channel, from the layer's arrays at each call), a residual ``Add``
  (its other operand read in place), then the activation; a following
  ``MaxPooling2D``/``AveragePooling2D`` fused in; a ``ZeroPadding2D`` before it folded into
  its padding;
- ``MaxPooling2D``/``AveragePooling2D``, ``GlobalAveragePooling2D``/``GlobalMaxPooling2D``;
- ``Dense`` with the same epilogue (the final softmax included);
- ``Add``/``Subtract``/``Multiply``/``Average``/``Maximum``/``Minimum`` of same-shape inputs,
  ``Concatenate`` on the channels, a ``BatchNormalization`` of its own;
- ``Activation``/``Softmax``/``ReLU``/``LeakyReLU`` layers, fused into the node before them
  when they are its output's one reader.

``Flatten`` and inference-mode ``Dropout`` cost nothing (the data does not move). The graph
is cut where one tensor alone is live; a piece holding a layer without a native node runs
through its layers' ``forward`` between native segments. Activations with a native form:
linear, relu, sigmoid, tanh, softmax, relu6, leaky_relu, elu, gelu (both forms), silu,
hard_sigmoid, hard_silu. Activation arenas are planned from the graph's liveness
(``_assign_offsets``).

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

import itertools
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


def _conv_algo(kshape, groups, dtype, shape, out, strides, dilation, pads):
    """"direct", "winograd", "pointwise", "im2col": what ``ops.conv2d`` runs for this
    convolution (``cconv._ext.conv.choose_algorithm``, the one rule), or None (grouped, not
    direct)."""
    algo = _conv.choose_algorithm((1,) + tuple(shape), tuple(kshape), (1,) + tuple(out),
                                  strides, dilation, pads, groups, dtype)
    return algo if groups == 1 or algo == "direct" else None


def _finite_or_no_winograd(nodes, x):
    """False when ``x`` holds Inf or NaN and a node runs Winograd: its transforms would turn
    what the direct sum gives (+-inf) into NaN, so such a batch runs layer by layer, where
    ``ops`` takes an exact path (docs/reliability.md)."""
    return not any(n.get("algo") == _native.ALGOS["winograd"] for n in nodes) or bool(
        np.isfinite(x).all())


def _usable(dtype, *arrays):
    """Whether the native code can read every array in place (None: no array)."""
    return all(w is None or (w.dtype == dtype and w.flags.c_contiguous) for w in arrays)


def _act_spec(act):
    """``(code, alpha)`` of plan.h's form of an activation object, or None: not native."""
    name = getattr(act, "name", None)
    if name == "leaky_relu":
        return _native.ACTIVATIONS[name], act.negative_slope
    if name == "elu":
        return _native.ACTIVATIONS[name], act.alpha
    if name == "gelu" and getattr(act, "approximate", False):
        return _native.ACTIVATIONS["gelu_tanh"], 0.0
    code = _native.ACTIVATIONS.get(name)
    return None if code is None else (code, 0.0)


def _layer_act(layer, logits=False):
    """``(code, alpha)`` of a layer's activation (linear for ``logits``); None: not native."""
    if isinstance(layer, _layers.ReLU):         # ReLU and LeakyReLU layers
        if layer.threshold != 0 or layer.max_value not in (None, 6.0):
            return None
        if layer.max_value == 6.0:
            return (_native.ACTIVATIONS["relu6"], 0.0) if layer.negative_slope == 0 else None
        if layer.negative_slope == 0:
            return _native.ACTIVATIONS["relu"], 0.0
        return _native.ACTIVATIONS["leaky_relu"], layer.negative_slope
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return (_native.ACTIVATIONS["linear"], 0.0) if logits else _act_spec(act)


class _Pointwise:
    """The geometry of a ``SeparableConv2D``'s pointwise convolution (1 x 1, stride 1)."""

    kernel_size, strides, dilation_rate, padding = (1, 1), (1, 1), (1, 1), "valid"

    def __init__(self, layer):
        self.layer, self.dtype = layer, layer.dtype


_MERGES = {_layers.Add: "add", _layers.Subtract: "subtract", _layers.Multiply: "multiply",
           _layers.Average: "average", _layers.Maximum: "maximum", _layers.Minimum: "minimum"}
_LINEAR = 0
_CONVS = (_layers.Conv2D, _layers.DepthwiseConv2D, _layers.SeparableConv2D)


class _Builder:
    """Collects the nodes of one native segment from graph steps ``(layer, input ids, output
    id, output shape)``. Tensors are known by ids; ``node_of[id]`` is the node that makes
    it (-1: the segment's input), ``shape_of[id]`` its sample shape. ``uses[id]`` counts the
    steps (and the model output) that read a tensor, over the whole graph: a node takes a
    following layer into its epilogue only when that layer is its output's one reader."""

    def __init__(self, in_id, shape, uses=None, training=False):
        self.nodes, self.work, self.training = [], 0, training
        self.in_shape, self.in_id = tuple(shape), in_id
        self.node_of, self.shape_of = {in_id: -1}, {in_id: tuple(shape)}
        self.pad_of = {}                      # id -> (source id, zero padding) of ZeroPadding2D
        self.uses = uses if uses is not None else {}
        self.out_id = in_id
        self.steps, self.logits = [], False  # the steps added, whether the last is logits

    @property
    def shape(self):
        return self.shape_of[self.out_id]

    def _new(self, node, ins, out_id, out_shape, layer=None):
        src = [self.node_of[i] for i in ins]
        node["layer"], node["shapes"] = layer, (self.shape_of[ins[0]], tuple(out_shape))
        node["input"], node["in_size"] = src[0], math.prod(self.shape_of[ins[0]])
        node.setdefault("inputs", src)
        node.setdefault("res", _native.NONE)
        node.setdefault("act", _LINEAR)
        node["out_size"] = math.prod(out_shape)
        self.nodes.append(node)
        self._set(out_id, len(self.nodes) - 1, out_shape)
        return True

    def _set(self, out_id, node, shape):
        self.node_of[out_id], self.shape_of[out_id] = node, tuple(shape)
        self.out_id = out_id

    def _sole(self, tensor, *kinds):
        """The node making ``tensor`` when it is of one of ``kinds`` and ``tensor`` has no
        other reader (a later layer may join its epilogue), else None."""
        i = self.node_of.get(tensor, -1)
        if i < 0 or self.uses.get(tensor, 1) != 1:
            return None
        node = self.nodes[i]
        return node if node["kind"] in [_native.KINDS[k] for k in kinds] else None

    def conv(self, layer, ins, out_id, out, logits=False):
        """``Conv2D`` or ``DepthwiseConv2D`` (a grouped convolution, its kernel (KH, KW, C, M)
        read as (KH, KW, 1, C M))."""
        if isinstance(layer, _layers.DepthwiseConv2D):
            return self._conv(layer, layer.kernel, None, layer.bias, _layer_act(layer, logits),
                              ins, out_id, out)
        return self._conv(layer, layer.kernel, layer.groups, layer.bias,
                          _layer_act(layer, logits), ins, out_id, out)

    def separable(self, layer, ins, out_id, out, logits=False):
        """``SeparableConv2D``: its depthwise convolution, then a pointwise one (the bias and
        activation), the depthwise output a tensor of the segment's own."""
        h, w = out[:2]
        mid = (h, w, layer.depthwise_kernel.shape[2] * layer.depthwise_kernel.shape[3])
        mid_id = ("separable", out_id)
        if not self._conv(layer, layer.depthwise_kernel, None, None,
                          (_LINEAR, 0.0), ins, mid_id, mid):
            return False
        self.uses[mid_id] = 1
        return self._conv(_Pointwise(layer), layer.pointwise_kernel, 1, layer.bias,
                          _layer_act(layer, logits), [mid_id], out_id, out)

    def _conv(self, layer, kernel, groups, bias, act, ins, out_id, out):
        """A convolution node of ``kernel`` (``groups`` None: depthwise) with the geometry of
        ``layer`` (kernel_size, strides, padding, dilation_rate)."""
        x = ins[0]
        pad = ((0, 0), (0, 0))
        if x in self.pad_of:                        # a ZeroPadding2D folded into the padding
            x, pad = self.pad_of[x]
        shape = self.shape_of[x]
        padded = (shape[0] + sum(pad[0]), shape[1] + sum(pad[1]))
        if groups is None:
            (kh, kw, c, m), groups = kernel.shape, shape[2]
            kshape = (kh, kw, 1, c * m)
        else:
            kshape = kernel.shape
        pads = _ops.compute_padding(padded, layer.kernel_size, layer.strides, layer.padding,
                                    layer.dilation_rate)
        pt, pl = pads[0][0] + pad[0][0], pads[1][0] + pad[1][0]
        algo = _conv_algo(kshape, groups, layer.dtype, shape, out, layer.strides,
                          layer.dilation_rate, (pt, pl))
        if (algo is None or act is None or not _usable(layer.dtype, kernel, bias)
                or (self.training and pad != ((0, 0), (0, 0)))):
            return False
        (h, w, c), (kh, kw) = shape, layer.kernel_size
        g = (h, w, c, kh, kw, out[2], out[0], out[1], *layer.strides, *layer.dilation_rate,
             pt, pl, groups)
        self.work += out[0] * out[1] * out[2] * kh * kw * c // groups
        self.shape_of.setdefault(x, shape)
        return self._new({"kind": _native.KINDS["conv"], "act": act[0], "alpha": act[1],
                          "algo": _native.ALGOS[algo], "g": g, "w": kernel, "b": bias,
                          "units": out[2], "mid_size": math.prod(out)},
                         [x], out_id, out, getattr(layer, "layer", layer))

    def pool(self, layer, ins, out_id, out):
        shape = self.shape_of[ins[0]]
        pads = _ops.compute_padding(shape[:2], layer.pool_size, layer.strides, layer.padding)
        pg = (*shape, *layer.pool_size, out[0], out[1], *layer.strides, pads[0][0],
              pads[1][0])
        kind = _native.POOLS["max" if isinstance(layer, _layers.MaxPooling2D) else "avg"]
        self.work += math.prod(out) * layer.pool_size[0] * layer.pool_size[1]
        conv = self._sole(ins[0], "conv")
        if conv is not None and (conv.get("pool") or conv["res"] != _native.NONE
                                 or (self.training and kind == _native.POOLS["avg"])):
            conv = None          # (training: an average pool's gradient needs the conv output)
        if conv is not None:     # fuse: pool the conv's output in cache
            conv["pool"], conv["pg"], conv["out_size"] = kind, pg, math.prod(out)
            conv["shapes"] = (conv["shapes"][0], tuple(out))
            conv["pool_layer"] = layer
            self._set(out_id, self.node_of[ins[0]], out)
            return True
        return self._new({"kind": _native.KINDS["pool"], "pool": kind, "pg": pg}, ins, out_id,
                         out, layer)

    def dense(self, layer, ins, out_id, out, logits=False):
        act = _layer_act(layer, logits)
        shape = self.shape_of[ins[0]]
        if act is None or not _usable(layer.dtype, layer.kernel, layer.bias):
            return False
        rows, k = math.prod(shape[:-1]), shape[-1]
        self.work += rows * k * layer.units
        return self._new({"kind": _native.KINDS["dense"], "act": act[0], "alpha": act[1],
                          "rows": rows, "K": k, "units": layer.units, "w": layer.kernel,
                          "b": layer.bias}, ins, out_id, out, layer)

    def activation(self, layer, ins, out_id, out, logits=False):
        act = _layer_act(layer, logits)
        if act is None:
            return False
        if act[0] == _LINEAR:
            self._set(out_id, self.node_of[ins[0]], out)
            return True
        node = self._sole(ins[0], "conv", "dense", "merge", "affine", "gpool", "concat")
        if node is not None and not node.get("pool") and node["act"] == _LINEAR:
            node["act"], node["alpha"] = act                  # fuse into the epilogue
            self._set(out_id, self.node_of[ins[0]], out)
            return True
        return self._new({"kind": _native.KINDS["act"], "act": act[0], "alpha": act[1],
                          "units": out[-1]}, ins, out_id, out, layer)

    def batch_norm(self, layer, ins, out_id, out):
        """Inference: folded into the epilogue of the conv or dense node before it (its
        output's one reader), else a node of its own."""
        bn = (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
        if self.training or not _usable(layer.dtype, *bn):
            return False
        node = self._sole(ins[0], "conv", "dense")
        if (node is not None and not node.get("pool") and node["act"] == _LINEAR
                and node["res"] == _native.NONE and "bn" not in node):
            node["bn"], node["eps"] = bn, float(layer.epsilon)
            self._set(out_id, self.node_of[ins[0]], out)
            return True
        return self._new({"kind": _native.KINDS["affine"], "bn": bn,
                          "eps": float(layer.epsilon), "units": out[-1]}, ins, out_id, out,
                         layer)

    def merge(self, layer, ins, out_id, out):
        shapes = {self.shape_of[i] for i in ins}
        if (self.training or len(shapes) != 1 or len(ins) > _native.MAX_INPUTS
                or any(i in self.pad_of for i in ins)):
            return False              # broadcasting merges run as layers
        op = _MERGES[type(layer)]
        if op == "add" and len(ins) == 2:
            # the residual Add: into the epilogue of whichever operand's node runs later
            # (the other operand is ready by then)
            later = max(ins, key=lambda i: self.node_of[i])
            other = ins[1] if later == ins[0] else ins[0]
            node = self._sole(later, "conv", "dense")
            if (node is not None and not node.get("pool") and node["act"] == _LINEAR
                    and node["res"] == _native.NONE and later != other):
                node["res"] = self.node_of[other]
                self._set(out_id, self.node_of[later], out)
                return True
        return self._new({"kind": _native.KINDS["merge"], "merge": _native.MERGES[op],
                          "units": out[-1]}, ins, out_id, out, layer)

    def concat(self, layer, ins, out_id, out):
        shapes = [self.shape_of[i] for i in ins]
        rank = len(out)
        if (self.training or layer.axis not in (-1, rank) or len(ins) > _native.MAX_INPUTS
                or any(i in self.pad_of for i in ins)):
            return False
        return self._new({"kind": _native.KINDS["concat"], "units": out[-1],
                          "widths": [s[-1] for s in shapes]}, ins, out_id, out, layer)

    def global_pool(self, layer, ins, out_id, out):
        shape = self.shape_of[ins[0]]
        if self.training:
            return False
        self.work += math.prod(shape)
        kind = _native.POOLS["max" if isinstance(layer, _layers.GlobalMaxPooling2D) else "avg"]
        return self._new({"kind": _native.KINDS["gpool"], "pool": kind, "units": shape[-1]},
                         ins, out_id, out, layer)

    def zero_padding(self, layer, ins, out_id, out, readers):
        """Folded into the padding of the convolutions that read it (its only readers)."""
        if (self.training or ins[0] in self.pad_of or not readers
                or not all(type(r) in _CONVS for r in readers)):
            return False
        self.pad_of[out_id] = (ins[0], tuple(tuple(p) for p in layer.padding))
        self.shape_of[out_id] = tuple(out)
        self.out_id = out_id
        return True

    def add(self, layer, ins, out_id, out, logits=False, readers=()):
        """Append the step ``layer(ins) -> out_id`` of output shape ``out`` (its
        ``forward_logits`` when ``logits``); False when it has no native node."""
        out = tuple(out)
        kind = type(layer)
        if isinstance(layer, (_layers.Flatten, _layers.InputLayer)) or (
                kind is _layers.Dropout and (not self.training or layer.rate == 0)):
            if ins[0] in self.pad_of:
                return False
            self._set(out_id, self.node_of[ins[0]], out)     # the data does not move
            return True
        if kind is _layers.ZeroPadding2D:
            return self.zero_padding(layer, ins, out_id, out, readers)
        if kind is _layers.Dropout:          # training, with a rate: masks from philox.h
            if getattr(layer, "noise_shape", None) is not None or ins[0] in self.pad_of:
                return False
            return self._new({"kind": _native.KINDS["dropout"], "alpha": layer.rate,
                              "units": out[-1]}, ins, out_id, out, layer)
        if any(i in self.pad_of for i in ins) and kind not in _CONVS:
            return False
        if kind is _layers.Conv2D or (kind is _layers.DepthwiseConv2D and not self.training):
            return self.conv(layer, ins, out_id, out, logits)
        if kind is _layers.SeparableConv2D and not self.training:
            return self.separable(layer, ins, out_id, out, logits)
        if kind in (_layers.MaxPooling2D, _layers.AveragePooling2D):
            return self.pool(layer, ins, out_id, out)
        if kind is _layers.Dense:
            return self.dense(layer, ins, out_id, out, logits)
        if kind in (_layers.Activation, _layers.Softmax, _layers.ReLU, _layers.LeakyReLU):
            return self.activation(layer, ins, out_id, out, logits)
        if kind is _layers.BatchNormalization:
            return self.batch_norm(layer, ins, out_id, out)
        if kind in _MERGES:
            return self.merge(layer, ins, out_id, out)
        if kind is _layers.Concatenate:
            return self.concat(layer, ins, out_id, out)
        if kind in (_layers.GlobalAveragePooling2D, _layers.GlobalMaxPooling2D):
            return self.global_pool(layer, ins, out_id, out)
        return False

    def finish(self, dtype):
        """The segment as a :class:`_NativeSegment` (None when it has no node, or its output
        is not its last node's)."""
        if not self.nodes or self.node_of.get(self.out_id) != len(self.nodes) - 1:
            return None
        arena = _assign_offsets(self.nodes)
        mid = max([n.get("mid_size", 0) for n in self.nodes if n.get("pool")] or [0])
        sizes = (math.prod(self.in_shape), math.prod(self.shape), arena, mid, dtype)
        seg = _NativeSegment(lambda: _native.NativePlan(self.nodes, *sizes), self.shape, dtype,
                             self.work, arena)
        seg.native_nodes = self.nodes
        return seg


def _reads(node):
    """The nodes whose outputs ``node`` reads (-1: the plan's input)."""
    reads = list(node["inputs"])
    if node["res"] != _native.NONE:
        reads.append(node["res"])
    return reads


def _assign_offsets(nodes):
    """Give every node but the last an offset (elements per image) in the arena, reusing the
    space of outputs no later node reads; returns the arena's elements per image."""
    last_use = {}
    for i, node in enumerate(nodes):
        for r in _reads(node):
            last_use[r] = i
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
    """Graph steps without a native node, run by their layers' ``forward`` in inference
    mode (the last step's ``forward_logits`` when ``logits``): ``steps`` as
    :func:`_flat_graph`'s, reading tensor ``in_id`` and giving tensor ``out_id``."""

    def __init__(self, steps, in_id, out_id, logits=False):
        self.steps, self.in_id, self.out_id, self.logits = list(steps), in_id, out_id, logits

    def __call__(self, x):
        vals = {self.in_id: x}
        last = len(self.steps) - 1
        for i, (layer, ins, out, multi, _) in enumerate(self.steps):
            arg = [vals[t] for t in ins] if multi else vals[ins[0]]
            if i == last and self.logits:
                vals[out] = layer.forward_logits(arg, False)
            else:
                vals[out] = layer.forward(arg, False)
        return vals[self.out_id]


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


def _any_size(shape):
    """Whether an input shape has a size known only at call time (None past the batch
    axis; ``Input(shape=(None, None, 3))``): such a model runs layer by layer."""
    shapes = shape if isinstance(shape, list) else [shape]
    return any(d is None for s in shapes for d in tuple(s)[1:])


def _flat_graph(model):
    """``(steps, input ids, output ids)`` of a built model with its nested models inlined:
    ``steps`` lists ``(layer, input ids, output id, multi, output sample shape)`` in
    execution order (``multi``: the layer takes a list). Tensors are numbered: the inputs
    first. None when a nested model has several outputs."""
    count = itertools.count(len(model._inputs))

    def inline(m, in_ids):
        slots, steps = dict(enumerate(in_ids)), []
        for node, ins, out, _ in m._plan:
            layer, ids = node.layer, [slots[s] for s in ins]
            if hasattr(layer, "_plan") and hasattr(layer, "_out_slots"):   # a nested model
                inner = inline(layer, ids)
                if inner is None or len(inner[1]) != 1:
                    return None
                steps += inner[0]
                slots[out] = inner[1][0]
                continue
            slots[out] = next(count)
            steps.append((layer, ids, slots[out], node.multi,
                          tuple(node.outputs[0].shape[1:])))
        return steps, [slots[s] for s in m._out_slots]

    ins = list(range(len(model._inputs)))
    flat = inline(model, ins)
    return None if flat is None else (flat[0], ins, flat[1])


def _pieces(steps, in_id):
    """Cut ``steps`` where one tensor alone is live (every later step reads only it or what
    comes after it): ``[(first, end, input id, output id)]``, each piece a one-input,
    one-output graph that can run on its own (natively or layer by layer)."""
    last_use = {}
    for i, (_, ins, _, _, _) in enumerate(steps):
        for t in ins:
            last_use[t] = i
    pieces, start, live, cur_in = [], 0, {in_id}, in_id
    for i, (_, _, out, _, _) in enumerate(steps):
        live = {t for t in live if last_use.get(t, -1) > i}
        live.add(out)
        if live == {out}:
            pieces.append((start, i + 1, cur_in, out))
            start, cur_in = i + 1, out
    return pieces


def _readers(steps):
    """Tensor id -> the layers that read it."""
    readers = {}
    for layer, ins, _, _, _ in steps:
        for t in ins:
            readers.setdefault(t, []).append(layer)
    return readers


def _build_piece(builder, steps, piece, readers, logits_at):
    """Add the steps of ``piece`` to ``builder``; False at the first without a native
    node."""
    first, end = piece[0], piece[1]
    for i in range(first, end):
        layer, ins, out, _, shape = steps[i]
        if not builder.add(layer, ins, out, shape, i == logits_at, readers.get(out, ())):
            return False
        builder.steps.append(steps[i])
        builder.logits = i == logits_at
    return True


def compile_plan(model, logits=False):
    """Compile a built model's inference path; returns a :class:`Plan`, or None when no
    layer has a native node (then the layer-by-layer path is as fast) or the model has
    several inputs or outputs (it runs node by node).

    The graph (nested models inlined) is cut where one tensor alone is live; a piece whose
    every layer has a native node joins the native segment being built, any other piece
    runs layer by layer between native segments.
    ``logits=True`` compiles the path that stops before the last layer's activation (the
    model's ``_forward(x, False, logits=True)``, for a loss fused with it)."""
    shape = model.input_shape          # builds the model first if needed
    if isinstance(shape, list) or _any_size(shape):
        return None
    flat = _flat_graph(model)
    if flat is None or len(flat[1]) != 1 or len(flat[2]) != 1 or not flat[0]:
        return None
    steps, (in_id,), (out_id,) = flat
    if steps[-1][2] != out_id:
        return None
    uses, readers = {out_id: 1}, _readers(steps)
    for t, rs in readers.items():
        uses[t] = uses.get(t, 0) + len(rs)
    dtype, logits_at = model.dtype, len(steps) - 1 if logits else -1
    segments, builder, native, fallback, weights = [], None, [], [], []
    shapes = {in_id: tuple(shape[1:])}
    shapes.update((s[2], s[4]) for s in steps)
    for piece in _pieces(steps, in_id):
        trial = _Builder(piece[2], shapes[piece[2]], uses)
        piece_layers = [s[0] for s in steps[piece[0]:piece[1]]]
        if _build_piece(trial, steps, piece, readers, logits_at):
            if builder is None:
                builder = _Builder(piece[2], shapes[piece[2]], uses)
            _build_piece(builder, steps, piece, readers, logits_at)
            native += [l.name for l in piece_layers]
            weights += [(l, n, getattr(l, n)) for l in piece_layers for n in l.weight_names]
            continue
        _flush(builder, segments, dtype)
        builder = None
        if not segments or not isinstance(segments[-1], _LayerSegment):
            segments.append(_LayerSegment([], piece[2], piece[3]))
        segments[-1].steps += steps[piece[0]:piece[1]]
        segments[-1].out_id = piece[3]
        segments[-1].logits = piece[1] - 1 == logits_at
        fallback += [l.name for l in piece_layers]
    _flush(builder, segments, dtype)
    if not any(isinstance(s, _NativeSegment) for s in segments):
        return None
    return Plan(segments, weights, native, fallback, model.layers, tuple(model.input_shape[1:]))


def _flush(builder, segments, dtype):
    """Append the builder's native segment; a builder of data-free steps only (Flatten,
    ...) or whose output is not its last node's runs its steps as layers."""
    if builder is None:
        return
    seg = builder.finish(dtype)
    if seg is None:
        seg = _LayerSegment(builder.steps, builder.in_id, builder.out_id, builder.logits)
    segments.append(seg)


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
        if layer.weights and not (layer.trainable and layer.trainable_weights):
            return False
        if not builder.add(layer, [i], i + 1, layer.output_shape[1:], logits and i == last):
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
        self._dropouts = [(i, n["layer"]) for i, n in enumerate(self.nodes)
                          if n["kind"] == _native.KINDS["dropout"]]
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
        for i, layer in self._dropouts:     # the layer path's (seed, step) sequence
            self.native.set_dropout(i, layer._seed, layer._step % (1 << 64))
            layer._step += 1
        self._x = np.ascontiguousarray(x)
        self._y = np.empty((n,) + tuple(self.out_shape), self.dtype)
        self.native.run(self._x, self._y)
        return self._y

    def backward(self, g):
        g = np.ascontiguousarray(g, dtype=self.dtype)
        self.native.backward(self._x, self._y, g, self._first)


def compile_train_plan(model, logits=False):
    """A :class:`TrainPlan` for ``model`` (built, weights packed), or None when a layer has no
    native training node (BatchNormalization, a Dropout with a noise_shape, a frozen layer,
    softmax before the last layer, ...). A Dropout with a rate is a node: its masks are the
    layer path's (the same seed and step sequence, philox.h)."""
    chain = model.chain_layers()
    if chain is None or _any_size(model.input_shape):   # no chain: layer by layer
        return None
    builder = _Builder(0, model.input_shape[1:], training=True)
    if (not _trainable_nodes(builder, chain, logits)
            or builder.node_of[builder.out_id] != len(builder.nodes) - 1
            or not any(n.get("w") is not None for n in builder.nodes)):
        return None
    checks = [(model, "_gflat", getattr(model, "_gflat", None))]
    for layer in model.layers:
        checks += [(layer, n, getattr(layer, n)) for n in layer.weight_names]
    return TrainPlan(builder, model, tuple(tuple(c[k] for c in checks) for k in range(3)))


def get_train_plan(model, logits=False):
    """The model's cached :class:`TrainPlan` (as :func:`get_plan`), or None."""
    return _cached(model, ("train", logits), compile_train_plan, logits)
