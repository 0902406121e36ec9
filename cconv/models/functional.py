"""Graph models: Keras's functional API and subclassed models.

``cconv.Input(shape)`` returns a symbolic :class:`~cconv.layers.node.KerasTensor`; calling a
layer on symbolic tensors records a :class:`~cconv.layers.node.Node` and returns new ones;
``cconv.Model(inputs, outputs)`` collects the nodes between them::

    x = cconv.Input((28, 28, 1))
    h = cconv.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = cconv.layers.Dense(10, activation="softmax")(cconv.layers.Flatten()(h))
    model = cconv.Model(inputs=x, outputs=y)

A subclass of :class:`Model` that defines ``call(self, x)`` is traced once, on symbolic
inputs, into the same kind of graph (on ``build(input_shape)`` or the first data it sees).

How it runs (one rule per question):

- Order: nodes run in Keras's order (``map_graph``: decreasing depth from the outputs, ties
  in first-visit order of a depth-first walk from the outputs); ``model.layers`` is Keras's
  list for the same graph (InputLayers included), so ``get_weights()`` matches Keras's.
- Backward runs the nodes in reverse; a tensor used by several nodes gets the sum of their
  gradients. Nodes with no trainable weight upstream are skipped, and a layer whose inputs
  are all model inputs does not compute its input gradient.
- Shared layers (one layer called several times) share their weights. Each layer keeps ONE
  set of forward caches (``layer.get_forward_cache()``), so for a shared layer the graph
  saves them per node after each training forward (``node.forward_cache``) and puts them
  back (``layer.set_forward_cache``) before that node's backward; its weight gradients
  (which ``backward`` overwrites) are summed over its nodes and written back once at the end
  of the backward pass.
- Training is :class:`~cconv.trainers.trainer.Trainer`'s compile/fit/evaluate/predict loop: a
  model with several inputs or outputs presents them to it as ONE flat array per batch
  (each sample's arrays flattened and concatenated, in input/output order), split again
  inside :meth:`Model._forward`, the loss (:class:`MultiOutputLoss`) and the metrics. Losses
  and metrics per output are given as lists (output order) or dicts (output names: the
  names of the layers that produce the outputs); ``loss_weights`` likewise.
"""

from typing import Callable, List, Optional

import numpy as np

from .. import layers as _layers
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from ..layers.base import _snake, unique_name
from ..layers.node import KerasTensor, input_tensor, is_symbolic
from ..saving import register_model_class
from ..trainers.compile_utils import (
    MultiOutputLoss,
    OutputMetric,
    as_list,
    by_name,
    pack,
    per_output_metrics,
    unpack,
)
from ..trainers.step_runner import StepRunner
from ..trainers.trainer import Trainer, _unclashed
from ..trainers.trainer import shape_str as _shape_str

__all__ = ["Model", "Input", "KerasTensor", "clone_model"]

Input = _layers.Input


# ----- graph ----------------------------------------------------------------------------------
def _depth_first(outputs):
    """Nodes from inputs to outputs (post-order DFS) and each layer's first-visit index."""
    finished, in_progress, order, first_seen = set(), set(), [], {}

    def visit(tensor):
        node = tensor.node
        if node in finished:
            return
        if node in in_progress:
            raise ValueError(f"The graph has a cycle at layer {node.layer.name!r}.")
        first_seen.setdefault(node.layer, len(first_seen))
        in_progress.add(node)
        for t in node.inbound_tensors:
            visit(t)
        in_progress.discard(node)
        finished.add(node)
        order.append(node)

    for t in outputs:
        visit(t)
    return order, first_seen


def map_graph(inputs, outputs):
    """``(nodes, layers)``: the nodes in execution order and the layers in Keras's order
    (Keras 3's ``keras/src/ops/function.py::map_graph``, same depth and tie rules).

    Raises:
        ValueError: a tensor that cannot be computed from ``inputs`` (naming the layer).
    """
    order, first_seen = _depth_first(outputs)
    node_depth, layer_depth = {}, {}
    for node in reversed(order):
        depth = max(node_depth.setdefault(node, 0), layer_depth.get(node.layer, 0))
        layer_depth[node.layer] = node_depth[node] = depth
        for parent in node.parent_nodes:
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for t in inputs:   # unused inputs still belong to the model
        if t.node not in node_depth:
            node_depth[t.node] = layer_depth[t.node.layer] = 0
            first_seen[t.node.layer] = -1
    by_depth = sorted(set(layer_depth.values()), reverse=True)
    layers = []
    for d in by_depth:
        layers += sorted((l for l, ld in layer_depth.items() if ld == d), key=first_seen.get)
    nodes = [n for d in sorted(set(node_depth.values()), reverse=True)
             for n in node_depth if node_depth[n] == d]
    known = {id(t) for t in inputs}
    for node in nodes:
        for t in node.inbound_tensors:
            if id(t) not in known:
                raise ValueError(
                    f"Graph disconnected: layer {node.layer.name!r} needs tensor {t!r}, which "
                    f"cannot be computed from the model's inputs "
                    f"{[x.name for x in inputs]}; pass it in inputs=[...]."
                )
        if not node.is_input:
            known.update(id(t) for t in node.outputs)
    return [n for n in nodes if not n.is_input], layers


def _list_property(attr, doc):
    """A read-only property giving a new list of ``self.<attr>``, which callers may change
    without touching the model."""
    return property(lambda self: list(getattr(self, attr)), doc=doc + " (A new list.)")


# ----- the model --------------------------------------------------------------------------------
class _NestedGrads(dict):
    """A nested model's ``grads`` as its outer model sees them: keys ``"<layer>/<weight>"``
    (the model's :attr:`Model.trainable_weight_names`), values the inner layers' own
    ``grads`` arrays, read and assigned through (so the outer model's flat gradient array
    reaches the inner layers)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def _split(self, key):
        return self.model.weight_owner(key)

    def __getitem__(self, key):
        layer, name = self._split(key)
        return layer.grads[name]

    def __setitem__(self, key, value):
        layer, name = self._split(key)
        layer.grads[name] = value

    def __contains__(self, key):
        try:
            layer, name = self._split(key)
        except AttributeError:
            return False
        return name in layer.grads

    def keys(self):
        return list(self.model.trainable_weight_names)

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def items(self):
        return [(k, self[k]) for k in self.keys()]

    def values(self):
        return [self[k] for k in self.keys()]

    def __reduce__(self):
        return (_NestedGrads, (self.model,))


@register_model_class
class Model(Trainer, _layers.Layer):
    """A model made of a graph of layers: ``Model(inputs, outputs)`` (functional API) or a
    subclass that defines ``call`` (traced once on symbolic inputs).

    Args:
        inputs: a symbolic tensor from :func:`cconv.Input`, or a list (or dict) of them.
        outputs: a symbolic tensor computed from ``inputs`` by layer calls, or a list (or
            dict: its keys become the output names) of them.
        name: model name (default "functional", or the subclass name in snake case).

    The base of every cconv model (as in Keras, :class:`~cconv.models.sequential.Sequential` is a
    ``Model`` whose graph is a chain): ``compile`` / ``fit`` / ``evaluate`` / ``predict``
    (from :class:`~cconv.trainers.trainer.Trainer`), ``summary``, ``layers``, ``get_layer``,
    ``get_weights`` / ``set_weights``, ``save``, and the compiled plan for a graph that is a
    chain (:mod:`cconv.plan`, which asks :meth:`chain_layers`). Graph configs, ``.keras``
    files and ``summary`` read the graph through ``inputs``, ``outputs``, ``layers``,
    :meth:`layer_nodes` and :meth:`node_index`. With several inputs
    ``x`` is a list (input order) or a dict (input names); with several outputs ``y`` and
    ``predict``'s result are lists (output order; ``y`` may be a dict by output name).

    Raises:
        TypeError: inputs/outputs that are not symbolic tensors. ValueError: a disconnected
            graph, duplicate layer names, inputs that do not come from ``cconv.Input``.
    """

    def __init__(self, inputs=None, outputs=None, name=None):
        if name is None:
            sub = type(self) is not Model
            name = unique_name(_snake(type(self).__name__) if sub else "functional")
        self._init_model(name)
        if inputs is None and outputs is None:
            if type(self).call is Model.call:
                raise TypeError("Model needs inputs= and outputs= (or subclass it and define "
                                "call).")
            return
        if inputs is None or outputs is None:
            raise TypeError("Model needs both inputs= and outputs=.")
        self._init_graph(inputs, outputs)

    def __init_subclass__(cls, **kwargs):
        """A model class is a layer class whose computation is its graph: the checks
        :class:`~cconv.layers.Layer` makes of a layer subclass's ``call`` / ``forward`` do
        not apply (a subclassed model defines ``call`` and is traced)."""
        super(_layers.Layer, cls).__init_subclass__(**kwargs)
        cls._call_has_training_arg = False

    def _init_model(self, name):
        """The state every model starts with: no graph yet, no layers, not built."""
        self.__dict__.setdefault("_tracked", [])
        self._graph = None
        super().__init__()
        self.name = name
        self._layers = []
        self.built = False
        self.dtype = np.dtype("float32")
        self._input_shape = self._output_shape = None
        self.__dict__["_trainable"] = True
        self.__dict__["grads"] = _NestedGrads(self)

    # ----- structure ---------------------------------------------------------------------------
    def __setattr__(self, name, value):
        """Track layers assigned as attributes (also in lists), in assignment order. A
        weight name ``"<layer>/<weight>"`` (:attr:`weight_names`) sets that layer's weight."""
        if "/" in name:
            layer, attr = self.weight_owner(name)
            setattr(layer, attr, value)
            return
        tracked = self.__dict__.setdefault("_tracked", [])
        found = value if isinstance(value, (list, tuple)) else [value]
        for v in found if name != "_layers" else ():
            if isinstance(v, _layers.Layer) and all(v is not t for t in tracked):
                tracked.append(v)
        object.__setattr__(self, name, value)

    def call(self, inputs):
        """Subclasses compose their layers here; traced once on symbolic inputs."""
        raise NotImplementedError("Subclasses of cconv.Model define call(self, inputs).")

    @property
    def layers(self) -> List[_layers.Layer]:
        """The model's layers (a new list), in weight order."""
        return list(self._layers)

    def _init_graph(self, inputs, outputs):
        ins, in_names = as_list(inputs)
        outs, out_names = as_list(outputs)
        for what, ts in (("inputs", ins), ("outputs", outs)):
            bad = [t for t in ts if not isinstance(t, KerasTensor)]
            if bad or not ts:
                raise TypeError(f"Model {what} must be symbolic tensors (from cconv.Input and "
                                f"layer calls); got {bad[0] if bad else ts!r}.")
        for t in ins:
            if not t.node.is_input:
                raise ValueError(f"Model input {t!r} was not made by cconv.Input; give the "
                                 f"cconv.Input tensor the graph starts from.")
        self._given_inputs, self._given_outputs = inputs, outputs
        nodes, layers = map_graph(ins, outs)
        names = [l.name for l in layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Layer names must be unique in a model; repeated: {dup}.")
        self._inputs, self._outputs, self._nodes = ins, outs, nodes
        self._input_names = in_names or [t.node.layer.name for t in ins]
        self._output_names = out_names or [t.node.layer.name for t in outs]
        self._layers = layers
        slot = {id(t): i for i, t in enumerate(ins)}
        for node in nodes:
            slot[id(node.outputs[0])] = len(slot)
        self._plan = [(node, [slot[id(t)] for t in node.inbound_tensors],
                       slot[id(node.outputs[0])], sum(n.layer is node.layer for n in nodes) > 1)
                      for node in nodes]
        self._out_slots = [slot[id(t)] for t in outs]
        self._graph = (ins, outs)
        self._fuse_step = -1
        self._build_graph()

    def build(self, input_shape=None):
        """Build the graph. A subclassed model is traced here on inputs of
        ``(batch,) + input_shape`` (a list of shapes for several inputs); a functional
        model is built when created and ignores ``input_shape``."""
        if self._graph is None:
            self._trace(input_shape)
            return
        self._build_graph()

    def _ensure_built(self, x_shape=None):
        """Build the model if needed: for its declared input shape, else for ``x_shape``
        (one sample's shape, from the first data it sees)."""
        if not self.built:
            declared = self._declared_input_shape()   # with the batch axis: it may hold None
            self.build((None,) + tuple(declared) if declared is not None else x_shape)

    def _build_graph(self):
        """Shapes, dtype and backward flags of the graph made by :meth:`_init_graph`."""
        layers = [n.layer for n in self._nodes]
        dtypes = sorted({np.dtype(l.dtype).name for l in layers})
        if len(dtypes) > 1:
            raise ValueError(f"All layers of model {self.name!r} must share one dtype; "
                             f"got {dtypes}.")
        self.dtype = np.dtype(dtypes[0] if dtypes else self._inputs[0].dtype)
        self._in_shapes = [t.shape[1:] for t in self._inputs]
        self._out_shapes = [t.shape[1:] for t in self._outputs]
        self._input_shape = self._flat_shape(self._in_shapes)
        self._output_shape = self._flat_shape(self._out_shapes)
        self._plan_backward()
        self.built = True
        self._packed = False

    @staticmethod
    def _flat_shape(shapes):
        if len(shapes) == 1:
            return shapes[0]
        return (int(sum(np.prod(s, dtype=np.int64) for s in shapes)),)

    def _trace(self, input_shape):
        if input_shape is None:
            raise ValueError(f"Model {self.name!r} is not built: call model.build(input_shape) "
                             f"or give it data first.")
        several = isinstance(input_shape, list) and input_shape and isinstance(
            input_shape[0], (list, tuple))
        shapes = [tuple(s) for s in input_shape] if several else [tuple(input_shape)]
        shapes = [s[1:] if s and s[0] is None else s for s in shapes]
        dtype = self._tracked[0].dtype if self._tracked else None
        ins = [Input(s, dtype=dtype) for s in shapes]
        outs = self.call(ins if several else ins[0])
        if not is_symbolic(outs) and not isinstance(outs, dict):
            raise TypeError(f"{type(self).__name__}.call must return the result of layer calls "
                            f"(symbolic tensors) when traced; got {type(outs).__name__}.")
        self._init_graph(ins if several else ins[0], outs)
        self._apply_pending_compile()
        used = [l for l in self._layers if not isinstance(l, _layers.InputLayer)]
        self._layers = self._tracked + [l for l in used if all(l is not t for t in self._tracked)]

    def _graph_tensors(self, what):
        """The graph's input or output tensors (building a model that declares its input).

        Raises:
            AttributeError: a model without a graph yet (Keras's error for a Sequential
                without an input, or a subclassed model never built).
        """
        if self._graph is None and self._declared_input_shape() is not None:
            self.build()
        if self._graph is None:
            raise AttributeError(self._no_graph_message(what))
        return list(self._inputs if what == "inputs" else self._outputs)

    @property
    def inputs(self):
        """The model's input tensors (a new list): Keras's ``model.inputs``."""
        return self._graph_tensors("inputs")

    @property
    def outputs(self):
        """The model's output tensors (a new list): Keras's ``model.outputs``."""
        return self._graph_tensors("outputs")

    def _structure(self, what):
        tensors = self._graph_tensors(what)
        given = self.__dict__.get("_given_" + what)
        if isinstance(given, dict):
            return dict(given)
        if isinstance(given, (list, tuple)):
            return list(tensors)
        return tensors[0] if len(tensors) == 1 else tensors

    @property
    def input(self):
        """Keras's ``model.input``: the inputs as given to ``Model(inputs, ...)`` (a tensor, a
        list or a dict); a Sequential's input tensor. (Keras 3.15's ``Sequential.input`` is
        instead the tensor of the Sequential's first call as a layer, an AttributeError
        before one.)"""
        return self._structure("inputs")

    @property
    def output(self):
        """Keras's ``model.output``: the outputs as given to ``Model(..., outputs)`` (a
        tensor, a list or a dict); a Sequential's output tensor."""
        return self._structure("outputs")
    input_names = _list_property("_input_names", "The names of the model's inputs.")
    output_names = _list_property("_output_names", "The names of the model's outputs.")

    @property
    def input_shape(self):
        """``(None,) + sample shape`` of the input (a list of them for several inputs),
        Keras's form; the model is built first if needed (for its declared input)."""
        self._ensure_built()
        shapes = [(None,) + s for s in self._in_shapes]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        self._ensure_built()
        shapes = [(None,) + s for s in self._out_shapes]
        return shapes[0] if len(shapes) == 1 else shapes

    def _declared_input_shape(self):
        return None if self._graph is None else self._in_shapes[0]

    def get_layer(self, name=None, index=None):
        """The layer called ``name`` (or at position ``index`` of ``model.layers``).

        Raises:
            ValueError: no such layer (the message lists the names).
        """
        if index is not None:
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No layer named {name!r} in model {self.name!r}; layers: "
                         f"{[l.name for l in self._layers]}.")

    # ----- a model is a layer (nested models) -----------------------------------------------
    # Keras's rule: a model called on symbolic tensors is ONE layer of the outer model (one
    # entry of ``outer.layers``, one row of its summary); its weights are its layers' weights
    # in its own order, reached by the outer model through the names "<layer>/<weight>".
    @property
    def trainable(self):
        """Whether ``fit`` updates the model's weights. Setting it sets every layer's
        ``trainable`` (Keras's rule), so ``base.trainable = False`` freezes a nested model
        whole: its weights move to the outer model's ``non_trainable_weights`` (compile the
        outer model again after changing it, as in Keras)."""
        return self.__dict__.get("_trainable", True)

    @trainable.setter
    def trainable(self, value):
        value = bool(value)
        self.__dict__["_trainable"] = value
        for layer in self.__dict__.get("_layers") or self.__dict__.get("_tracked", []):
            layer.trainable = value
        self.__dict__["_packed"] = False

    @property
    def trainable_weights(self) -> List[np.ndarray]:
        """The weights ``fit`` updates, layer by layer; none while the model is frozen."""
        if not self.trainable:
            return []
        return super().trainable_weights

    @property
    def non_trainable_weights(self) -> List[np.ndarray]:
        """The other weights (all of them while the model is frozen)."""
        if not self.trainable:
            return self.weights
        return super().non_trainable_weights

    @property
    def weight_names(self) -> List[str]:
        """``"<layer name>/<weight name>"`` for each weight, in ``get_weights()`` order: what
        an outer model (packing weights, the compiled plan, files) reads through
        ``getattr(model, name)`` when this model is one of its layers."""
        return [f"{layer.name}/{n}" for layer in self._layers for n in layer.weight_names]

    @property
    def trainable_weight_names(self) -> List[str]:
        """As :attr:`weight_names`, for the weights of the trainable layers (``grads`` has an
        entry for each)."""
        return [f"{layer.name}/{n}" for layer in self._layers if layer.trainable
                for n in layer.trainable_weight_names]

    def weight_owner(self, name):
        """``(layer, attribute)`` holding the weight called ``name`` in
        :attr:`weight_names` (``"<layer name>/<weight name>"``, nested models' names inside).

        Raises:
            AttributeError: no layer of the model has that weight.
        """
        for layer in self.__dict__.get("_layers", ()):
            prefix = layer.name + "/"
            if name.startswith(prefix) and name[len(prefix):] in layer.weight_names:
                return layer, name[len(prefix):]
        raise AttributeError(f"Model {self.__dict__.get('name')!r} has no weight {name!r}.")

    def _no_graph_message(self, what):
        return (f"{type(self).__name__} model {self.__dict__.get('name')!r} has no defined "
                f"{what} yet: build it (model.build(input_shape), or give it "
                f"cconv.Input(shape) first, or data).")

    def __getattr__(self, name):
        # a property that raised AttributeError lands here: keep its message
        if name in ("inputs", "outputs", "input", "output") and "_graph" in self.__dict__:
            raise AttributeError(self._no_graph_message(name))
        if "/" in name and "_layers" in self.__dict__:
            layer, attr = self.weight_owner(name)
            return getattr(layer, attr)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def weight_regularizers(self) -> List[tuple]:
        """``(weight name, regularizer)`` of the trainable layers' penalised weights."""
        return [(f"{layer.name}/{n}", reg) for layer in self._layers if layer.trainable
                for n, reg in layer.weight_regularizers()]

    @property
    def _multi_input(self):
        return self._graph is not None and len(self._inputs) > 1

    @property
    def compute_input_gradient(self):
        """Whether :meth:`backward` returns ``dL/d(inputs)``: set by an outer model that
        needs it (a trainable layer before this model); False for a model used alone."""
        return self.__dict__.get("_wants_input_gradient", False)

    @compute_input_gradient.setter
    def compute_input_gradient(self, value):
        self.__dict__["_wants_input_gradient"] = bool(value)
        if self._graph is not None:
            self._plan_backward()

    def compute_output_shape(self, input_shape):
        """The output's sample shape (the model is built for one input shape)."""
        self._ensure_built()
        return self._out_shapes[0]

    def _call_symbolic(self, inputs):
        """Record this model as one layer of the graph being built: one node, whose output
        has the model's output shape.

        Raises:
            ValueError: tensors whose shapes differ from the model's inputs, or a wrong
                number of them. NotImplementedError: a model with several outputs.
        """
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if isinstance(inputs, dict):
            tensors = by_name(inputs, self._input_names, "inputs") if self._graph else list(
                inputs.values())
        if self._graph is None:     # built for its declared input, else for these tensors
            shapes = [t.shape[1:] for t in tensors]
            self._ensure_built(shapes if len(shapes) > 1 else shapes[0])
        if len(tensors) != len(self._inputs):
            raise ValueError(f"Model {self.name!r} has {len(self._inputs)} inputs "
                             f"{self._input_names}; it was called on {len(tensors)} tensors.")
        for t, shape, name in zip(tensors, self._in_shapes, self._input_names):
            if tuple(t.shape[1:]) != tuple(shape):
                raise ValueError(f"Model {self.name!r}: input {name!r} expects shape "
                                 f"{_shape_str((None,) + tuple(shape))}; it was called on a "
                                 f"tensor of shape {_shape_str(t.shape)}.")
        if len(self._outputs) != 1:
            raise NotImplementedError(
                f"Model {self.name!r} has {len(self._outputs)} outputs; cconv nests models of "
                f"one output only (call its layers instead, or split it into models of one "
                f"output each).")
        from ..layers.node import Node
        return Node(self, tensors, self._out_shapes[0], multi=len(tensors) > 1).outputs[0]

    def forward(self, x, training=False):
        """The model as a layer of an outer model: its output for batch ``x`` (a list of
        batches for several inputs), computed layer by layer; with ``training`` keeps what
        :meth:`backward` needs."""
        self._ensure_built()
        if isinstance(x, (list, tuple)):
            x = x[0] if len(x) == 1 else pack([np.asarray(a) for a in x], np.shape(x[0])[0])
        if training:
            self._plan_backward()
        return self._layer_forward(x, training)

    def backward(self, dy):
        """Back-propagate ``dy`` through the model's layers (after ``forward(x, True)``),
        leaving each layer's weight gradients in its ``grads``; returns ``dL/dx`` (a list
        for several inputs; None where not computed, see :attr:`compute_input_gradient`)."""
        dxs = self._layer_backward(dy)
        return dxs if len(dxs) > 1 else dxs[0]

    def require_backward(self) -> None:
        """As :meth:`Layer.require_backward`, for each layer training must differentiate."""
        self._plan_backward()
        self._require_backward()

    def get_forward_cache(self) -> dict:
        """Every node's forward caches (the model called several times in an outer graph)."""
        return {"nodes": [(n.layer.get_forward_cache(), n.forward_cache)
                          for n, _, _, _ in self._plan]}

    def set_forward_cache(self, cache: dict) -> None:
        for (node, _, _, _), (own, saved) in zip(self._plan, cache.get("nodes", ())):
            node.layer.set_forward_cache(own)
            node.forward_cache = saved

    # ----- forward / backward ------------------------------------------------------------------
    def _plan_backward(self):
        """Which nodes backward must run (a trainable weight at or before them) and which
        layers must compute their input gradient (a node whose parents need one)."""
        wanted = self.compute_input_gradient
        needs, need_dx = {t.node: wanted for t in self._inputs}, {}
        for node, _, _, _ in self._plan:
            layer = node.layer
            parents = any(needs.get(p, False) for p in node.parent_nodes)
            needs[node] = bool(layer.trainable_weights) or parents
            need_dx[layer] = need_dx.get(layer, False) or parents or node.multi
        for layer, flag in need_dx.items():
            layer.compute_input_gradient = flag
        self._needs_backward = [needs[node] for node, _, _, _ in self._plan]

    def _setup_fusion(self):
        """Fuse the final softmax/sigmoid with the loss (its ``forward_logits``) when the model
        has one output, made by an unshared layer that nothing else in the graph uses."""
        self._plan_backward()
        self._fused, self._fuse_step = False, -1
        if len(self._outputs) != 1 or isinstance(self.loss, MultiOutputLoss):
            return
        node, _, out_slot, shared = self._plan[-1]
        act = getattr(node.layer, "activation", None)
        used = any(out_slot in ins for _, ins, _, _ in self._plan)
        if (self.loss.fused_activation is not None and act is not None and not shared
                and not used and self._out_slots[0] == out_slot
                and hasattr(node.layer, "forward_logits")
                and act.name == self.loss.fused_activation):
            self._fused, self._fuse_step = True, len(self._plan) - 1

    def chain_layers(self):
        """The layers in execution order when the graph is a chain (one input, one output,
        each node reading only the previous node's output, no shared layer), else None: the
        compiled plan (:mod:`cconv.plan`) runs a model that is a chain. A nested model that is
        a chain is inlined (its layers in its place); any other makes the graph no chain."""
        if len(self._inputs) != 1 or len(self._outputs) != 1:
            return None
        layers, prev = [], 0
        for node, ins, out, shared in self._plan:
            if shared or node.multi or ins != [prev]:
                return None
            inner = node.layer.chain_layers() if isinstance(node.layer, Model) else None
            if isinstance(node.layer, Model) and inner is None:
                return None
            layers += inner if inner is not None else [node.layer]   # a nested chain inlined
            prev = out
        return layers if self._out_slots == [prev] else None

    def _runner(self):
        """The model's :class:`~cconv.trainers.step_runner.StepRunner` (plan or layers)."""
        runner = self.__dict__.get("_step_runner")
        if runner is None:
            runner = self._step_runner = StepRunner(self, self._layer_forward,
                                                    self._layer_backward)
        return runner

    def _forward(self, x, training, logits=False):
        """The output for a (packed) batch: through the compiled plan or layer by layer,
        as the model's :class:`~cconv.trainers.step_runner.StepRunner` decides."""
        return self._runner().forward(x, training, logits)

    def _backward(self, g, logits=False):
        """Back-propagate ``g`` through whatever ran the last training forward."""
        self._runner().backward(g, logits)

    def _layer_forward(self, x, training, logits=False):
        """Run the graph layer by layer on a (packed) batch; returns the (packed) outputs,
        the final logits instead of the activated output when ``logits`` and the loss is
        fused."""
        vals = [None] * (len(self._inputs) + len(self._plan))
        xs = [x] if len(self._inputs) == 1 else unpack(x, self._in_shapes)
        vals[:len(xs)] = xs
        fuse = self._fuse_step if logits else -1
        for i, (node, ins, out, shared) in enumerate(self._plan):
            layer = node.layer
            arg = [vals[s] for s in ins] if node.multi else vals[ins[0]]
            run = layer.forward_logits if i == fuse else layer.forward
            vals[out] = run(arg, training)
            if training and shared:
                node.forward_cache = layer.get_forward_cache()
        outs = [vals[s] for s in self._out_slots]
        return outs[0] if len(outs) == 1 else pack(outs, outs[0].shape[0])

    def _require_backward(self):
        """Raise before training when a node that backward must run belongs to a layer that
        defines no ``backward`` (a Keras-style custom layer).

        Raises:
            NotImplementedError: naming the layer and what to define.
        """
        for (node, _, _, _), needed in zip(self._plan, self._needs_backward):
            if needed:
                node.layer.require_backward()

    def _layer_backward(self, g, logits=False):
        """Back-propagate ``g = dL/d(outputs)`` (packed; dL/d(logits) with ``logits``) through
        the graph's layers in reverse node order, summing gradients of tensors used several
        times and the weight gradients of shared layers (see the module docstring). Returns
        ``dL/d(input)`` per input (None where no layer computed it).

        Raises:
            NotImplementedError: a node that must be differentiated belongs to a layer that
                defines no ``backward`` (a Keras-style custom layer), before any backward runs.
        """
        self._require_backward()
        gs = [g] if len(self._outputs) == 1 else unpack(g, self._out_shapes)
        grads, sums = {}, {}
        n_in = len(self._inputs)
        for s, gi in zip(self._out_slots, gs):
            _accumulate(grads, s, gi)
        for i in range(len(self._plan) - 1, -1, -1):
            node, ins, out, shared = self._plan[i]
            dy = grads.pop(out, None)
            if dy is None or not self._needs_backward[i]:
                continue
            layer = node.layer
            if shared:
                layer.set_forward_cache(node.forward_cache)
            fused = logits and i == self._fuse_step
            dx = layer.backward_logits(dy) if fused else layer.backward(dy)
            if shared and layer.trainable:
                _sum_weight_grads(sums, layer)
            for s, d in zip(ins, dx if node.multi else [dx]):
                if d is not None:
                    _accumulate(grads, s, d)
        for layer, acc in sums.values():
            for name, total in acc.items():
                layer.grads[name][...] = total
        return [grads.get(s) for s in range(n_in)]

    def __call__(self, x, training=False):
        """Apply the model to a batch (a list or dict of batches for several inputs);
        returns an array, or a list of arrays for several outputs. On symbolic tensors the
        model becomes one layer of the graph being built (a nested model: one node, one
        entry of the outer model's ``layers``) and a symbolic tensor is returned."""
        if is_symbolic(x) or isinstance(x, dict) and is_symbolic(list(x.values())):
            return self._call_symbolic(x)
        return self._unpack_outputs(super().__call__(x, training))

    def _unpack_outputs(self, out):
        return out if len(self._outputs) == 1 else unpack(out, self._out_shapes)

    def predict(self, x, batch_size=None, verbose="auto", *, steps=None, callbacks=None):
        """Outputs for ``x`` (a list or dict of arrays for several inputs), in batches;
        an array, or a list of arrays (output order) for several outputs. The other
        arguments are :meth:`Trainer.predict`'s."""
        return self._unpack_outputs(super().predict(x, batch_size, verbose, steps=steps,
                                                    callbacks=callbacks))


    # ----- compile and data ------------------------------------------------------------------
    def _compile_when_built(self, args):
        """A model that does not know its outputs yet (a subclassed model before it is
        traced, or a model whose :meth:`_outputs_known` says so for these arguments) checks
        the names now and keeps the arguments for when it is built."""
        if self._graph is not None or self._outputs_known(args):
            return False
        _optimizers.get(args["optimizer"])      # names refused now, not at the first fit
        for name in ("metrics", "weighted_metrics"):
            value = args[name]
            if value is not None and not isinstance(value, (list, tuple, dict)):
                raise TypeError(f"{name} must be a list (or a dict by output name); got "
                                f"{type(value).__name__}.")
        self._pending_compile = args
        self.compiled = True
        return True

    def _outputs_known(self, args):
        """Whether ``compile(**args)`` can be applied before the graph exists."""
        return False

    def _compile_outputs(self, loss, loss_weights, metrics, weighted_metrics):
        """Per-output losses and metrics (see :meth:`Trainer.compile`); one output without
        loss weights compiles as a plain single-output model."""
        self._packed = False
        if self._graph is None:      # a Sequential not built yet: one output, named later
            return super()._compile_outputs(loss, loss_weights, metrics, weighted_metrics)
        self._packed = False        # the trainable weights may have changed (Keras: recompile)
        names = self._output_names
        loss_list = by_name(loss, names, "loss")
        metric_lists = per_output_metrics(metrics, names, "metrics")
        weighted_lists = per_output_metrics(weighted_metrics, names, "weighted_metrics")
        if len(names) == 1 and loss_weights is None:
            return super()._compile_outputs(loss_list[0], None, metric_lists[0],
                                            weighted_lists[0])
        weights = [1.0 if w is None else float(w) for w in
                   by_name(1.0 if loss_weights is None else loss_weights, names, "loss_weights")]
        losses = [None if l is None else _losses.get(l) for l in loss_list]
        self.loss = MultiOutputLoss(losses, weights, names)
        self.loss.shapes = self._out_shapes
        self._metric_ids = [(i, m) for i, ms in enumerate(metric_lists) for m in ms]
        self._weighted_metric_ids = [(i, m) for i, ms in enumerate(weighted_lists) for m in ms]

    def _apply_pending_compile(self):
        """The compile that waited for the model's outputs (see :meth:`_compile_when_built`):
        the arguments :meth:`Trainer.compile` got, given to it again (not to ``self.compile``,
        which a subclass may override with its own arguments, Keras's distiller pattern)."""
        pending = self.__dict__.pop("_pending_compile", None)
        if pending is not None:
            Trainer.compile(self, **pending)

    @property
    def metrics_names(self):
        if not isinstance(self.loss, MultiOutputLoss):
            return super().metrics_names
        return ["loss"] + [m.name for m in self._make_metrics(None)]

    def _make_metrics(self, y_shape):
        if not isinstance(self.loss, MultiOutputLoss):
            return super()._make_metrics(y_shape)
        out = []
        for i in range(len(self._output_names)):
            if len(self._output_names) > 1 and self.loss.losses[i] is not None:
                out.append(OutputMetric(self.loss, i, None))
            yshape = None if y_shape is None else y_shape[i]
            pshape = (None,) + self._out_shapes[i]
            taken = set()
            for weighted, ids in ((False, self._metric_ids), (True, self._weighted_metric_ids)):
                for j, m in ids:
                    if j != i:
                        continue
                    metric = _metrics.get(m, yshape, pshape)
                    if weighted:
                        metric.name = _unclashed(metric.name, taken)
                        metric.weighted = True
                    taken.add(metric.name)
                    out.append(OutputMetric(self.loss, i, metric))
        return out

    def _prepare_x(self, x, what="x"):
        xs, _ = as_list(x)
        if isinstance(x, dict):
            xs = by_name(x, self._input_names, what) if self._graph else xs
        if self._graph is None:
            shapes = [np.shape(a)[1:] for a in xs]
            self.build(shapes if len(xs) > 1 else shapes[0])
        if len(self._inputs) == 1:
            if len(xs) != 1:
                raise ValueError(f"Model {self.name!r} has one input; {what} is a list of "
                                 f"{len(xs)}.")
            if None in self._in_shapes[0]:
                return self._prepare_any_size(xs[0], what)
            return super()._prepare_x(xs[0], what)
        if len(xs) != len(self._inputs):
            raise ValueError(f"Model {self.name!r} has {len(self._inputs)} inputs "
                             f"{self._input_names}; {what} has {len(xs)} arrays.")
        arrays = []
        for a, shape, name in zip(xs, self._in_shapes, self._input_names):
            a = np.asarray(a)
            if a.dtype.kind not in "fiub" or a.ndim == 0 or a.shape[1:] != shape:
                raise ValueError(f"{what}[{name!r}] has shape {a.shape} and dtype {a.dtype}; "
                                 f"input {name!r} expects numbers of shape "
                                 f"{_shape_str((None,) + shape)}.")
            arrays.append(a)
        counts = {a.shape[0] for a in arrays}
        if len(counts) != 1:
            raise ValueError(f"The arrays of {what} have different numbers of samples: "
                             f"{[a.shape[0] for a in arrays]}.")
        return pack(arrays, arrays[0].shape[0]).astype(self.dtype, copy=False)

    def _prepare_any_size(self, x, what):
        """``x`` checked against an input with sizes known only at call time (``Input(shape=
        (None, None, 3))``): the known sizes must match; converted to the model's dtype.

        Raises:
            TypeError: not an array of numbers. ValueError: a shape that does not fit.
        """
        shape = self._in_shapes[0]
        if isinstance(x, (list, tuple, dict)) or not hasattr(x, "__array__") and not \
                isinstance(x, np.ndarray):
            raise TypeError(f"{what} must be an array for an input of shape "
                            f"{_shape_str((None,) + shape)}; got {type(x).__name__}.")
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{what} must be numeric; got dtype {x.dtype}.")
        if x.ndim != len(shape) + 1 or any(
                d is not None and d != n for d, n in zip(shape, x.shape[1:])):
            raise ValueError(f"{what} has shape {x.shape} but the model expects inputs of "
                             f"shape {_shape_str((None,) + shape)} (None: any size).")
        return x.astype(self.dtype, copy=False)

    def _prepare_xy(self, x, y, what=""):
        if self._graph is None:
            self._prepare_x(x, "x" + what)     # trace a subclassed model (and compile it)
        if not isinstance(self.loss, MultiOutputLoss):
            ys, _ = as_list(y)
            if len(ys) != 1:
                raise ValueError(f"Model {self.name!r} has one output; y{what} has {len(ys)} "
                                 f"arrays.")
            return super()._prepare_xy(x, ys[0], what)
        x = self._prepare_x(x, "x" + what)
        n = x.shape[0]
        if isinstance(y, dict):
            ys = by_name(y, self._output_names, "y" + what)
        else:
            ys = as_list(y)[0]
        if len(ys) != len(self._outputs):
            raise ValueError(f"Model {self.name!r} has {len(self._outputs)} outputs "
                             f"{self._output_names}; y{what} has {len(ys)} arrays.")
        prepared, raw_shapes = [], []
        for yi, loss, shape, name in zip(ys, self.loss.losses, self._out_shapes,
                                         self._output_names):
            if loss is None:
                prepared.append(np.zeros((n, 0), self.dtype))
                raw_shapes.append(None)
                continue
            yi = np.asarray(yi)
            if yi.ndim == 0 or yi.shape[0] != n:
                raise ValueError(f"x{what} has {n} samples but y{what}[{name!r}] has shape "
                                 f"{yi.shape}; they need the same number of samples.")
            raw_shapes.append(yi.shape)
            prepared.append(loss.prepare_targets(yi, (None,) + shape, dtype=self.dtype))
        return x, pack(prepared, n).astype(self.dtype, copy=False), raw_shapes


    # ----- summary / config ------------------------------------------------------------------
    def summary(self, print_fn: Optional[Callable[[str], None]] = None) -> None:
        """Print the layers, their output shapes and parameter counts, and the totals."""
        self._ensure_built()
        print_fn = print_fn or print
        heads, rows = self._summary_rows()
        w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
        line = "+" + "+".join("-" * (c + 2) for c in w) + "+"

        def fmt(cells):   # numbers right-aligned, text left-aligned
            return "| " + " | ".join(f"{c:>{w[i]}}" if heads[i] == "Param #" else f"{c:<{w[i]}}"
                                     for i, c in enumerate(cells)) + " |"
        print_fn(f'Model: "{self.name}"')
        print_fn(line)
        print_fn(fmt(heads))
        print_fn(line.replace("-", "="))
        for r in rows:
            print_fn(fmt(r))
        print_fn(line)
        itemsize = self.dtype.itemsize
        tot = self.count_params()
        tr = int(sum(v.size for v in self.trainable_weights))

        def size(k):
            b = k * itemsize
            return f"{b / 1024:.2f} KB" if b >= 1024 else f"{b:.2f} B"
        weights = tot
        opt = self._optimizer_param_count()
        print_fn(f" Total params: {tot + opt:,} ({size(tot + opt)})")
        print_fn(f" Trainable params: {tr:,} ({size(tr)})")
        print_fn(f" Non-trainable params: {weights - tr:,} ({size(weights - tr)})")
        if opt:
            print_fn(f" Optimizer params: {opt:,} ({size(opt)})")

    def _optimizer_param_count(self):
        """The optimizer's variables once it has taken a step, as Keras's summary counts them
        (its step count and learning rate, then its slots: Adam's two moments per weight); 0
        before (Keras shows none for an optimizer not built yet)."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is None or not optimizer.iterations:
            return 0
        _, slots = optimizer.get_state()
        return 2 + int(sum(np.size(a) for a in slots.values()))

    def layer_nodes(self, layer):
        """``layer``'s nodes (:class:`~cconv.layers.node.Node`: its calls on symbolic tensors)
        that belong to this model, in call order: a layer shared with another model has
        nodes of both. Graph configs and ``.keras`` files describe each layer by them."""
        mine = set(self._nodes) | {t.node for t in self._inputs}
        return [n for n in layer.inbound_nodes if n in mine]

    def _summary_rows(self):
        """Layer, output shape and parameter count, plus "Connected to": the tensors each
        layer is called on, ``layer[node][tensor]`` in Keras's notation."""
        rows = []
        for layer in self._layers:
            nodes = self.layer_nodes(layer)
            shape = _shape_str(nodes[0].outputs[0].shape) if nodes else "?"
            links = [f"{t.node.layer.name}[{self.node_index(t.node)}][0]"
                     for n in nodes for t in n.inbound_tensors]
            rows.append((f"{layer.name} ({keras_class_name(layer)})", shape,
                         f"{layer.count_params():,}", ", ".join(links) or "-"))
        return ("Layer (type)", "Output Shape", "Param #", "Connected to"), rows

    def node_index(self, node):
        """The position of ``node`` among :meth:`layer_nodes` of its layer: Keras's node index
        (``keras_history``, ``layer[node][tensor]`` in ``summary``)."""
        return self.layer_nodes(node.layer).index(node)

    def get_compile_config(self):
        """As :meth:`Trainer.get_compile_config`; None for several outputs (per-output
        losses are not kept in ``.npz`` files: compile again after loading; ``.keras`` files
        keep them)."""
        if isinstance(self.loss, MultiOutputLoss):
            return None
        return super().get_compile_config()

    def get_config(self):
        """Keras 3's Functional config: layers (each with its ``inbound_nodes``) in
        ``model.layers`` order, ``input_layers`` and ``output_layers``."""
        self._ensure_built()
        return graph_config(self, serialize_layer)

    @classmethod
    def from_config(cls, config):
        return model_from_graph_config(config, deserialize_layer, cls=Model)

    def __repr__(self):
        return (f"<{type(self).__name__} name={self.name!r}, {len(self._layers)} layers, "
                f"built={self.built}>")


def keras_class_name(layer):
    """The class name Keras shows for ``layer`` (``summary``): ``Functional`` for a graph
    ``Model`` (Keras's class of ``keras.Model(inputs, outputs)``)."""
    return "Functional" if type(layer) is Model else type(layer).__name__


#: Model classes a config may nest as layers, by class name (``Sequential`` adds itself).
NESTED_MODEL_CLASSES = {"Model": Model, "Functional": Model}


def serialize_layer(layer):
    """``{"class_name", "config"}`` of a layer of a model's config; a nested model's entry
    holds its own config inline (Keras's way)."""
    if isinstance(layer, Model):
        return {"class_name": type(layer).__name__, "config": layer.get_config()}
    return _layers.serialize(layer)


def deserialize_layer(entry):
    """Inverse of :func:`serialize_layer`: a layer, or a nested model (a subclassed model's
    entry, which holds its traced graph, is rebuilt as a graph ``Model``)."""
    cfg = entry.get("config") or {}
    cls = NESTED_MODEL_CLASSES.get(entry.get("class_name"))
    if cls is None and isinstance(cfg, dict) and "input_layers" in cfg and "layers" in cfg:
        cls = Model
    if cls is not None:
        return cls.from_config(cfg)
    return _layers.deserialize(entry)


def clone_model(model, input_tensors=None, clone_function=None, call_function=None,
                recursive=False, **kwargs):
    """Keras's ``keras.models.clone_model``: a new model of the same architecture, made of
    new layers (each from its config, Keras's default ``clone_function``, so with NEW
    weights drawn by its initializers; copy them with ``set_weights`` if wanted).

    Args:
        model: a Sequential or graph model (a subclassed model clones as the graph model it
            was traced to).
        clone_function: ``layer -> new layer``, called on every layer but the InputLayers
            (Keras's argument); default: ``type(layer).from_config(layer.get_config())``.
        recursive: with ``clone_function``, apply it inside nested models too (else a
            nested model is cloned whole by ``clone_function``).

    Raises:
        NotImplementedError: ``input_tensors``, ``call_function`` or other Keras arguments
            (not supported; the message names them). TypeError: not a cconv model.
    """
    if not isinstance(model, Model):
        raise TypeError(f"clone_model expects a cconv model; got {type(model).__name__}.")
    unsupported = {k: v for k, v in dict(kwargs, input_tensors=input_tensors,
                                         call_function=call_function).items() if v is not None}
    if unsupported:
        raise NotImplementedError(f"clone_model: {', '.join(sorted(unsupported))} is not "
                                  f"supported by cconv; clone without it.")
    if not model.built:
        model.build()       # for its declared input (an error names what is missing)
    config = model.get_config()
    if clone_function is None:
        return type(model).from_config(config)
    by_name = {layer.name: layer for layer in model.layers}
    by_name.update({t.node.layer.name: t.node.layer for t in model.inputs})

    def clone(entry):
        layer = by_name[entry.get("config", {}).get("name", entry.get("name"))]
        if isinstance(layer, _layers.InputLayer):
            return deserialize_layer(entry)
        if recursive and isinstance(layer, Model):
            return clone_model(layer, clone_function=clone_function, recursive=True)
        return clone_function(layer)

    if "input_layers" not in config:                       # a Sequential
        from .sequential import Sequential as _Sequential
        twin = _Sequential([clone(e) for e in config["layers"]], name=config.get("name"))
        shape = config.get("build_input_shape")
        if shape is not None:
            twin.build(tuple(shape))
        return twin
    return model_from_graph_config(config, clone, cls=Model)


def _tensor_config(model, t):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(t.shape), "dtype": t.dtype,
                       "keras_history": [t.node.layer.name, model.node_index(t.node), 0]}}


def graph_config(model, serialize):
    """A graph model's config in Keras 3's Functional layout; ``serialize(layer)`` gives
    each layer's ``{"class_name", "config", ...}`` entry."""
    entries, layers = [], model.layers
    inputs = [t.node.layer for t in model.inputs]
    for layer in [l for l in inputs if all(l is not m for m in layers)] + layers:
        entry = dict(serialize(layer))
        nodes = []
        for node in model.layer_nodes(layer):
            if node.is_input:
                continue
            args = [_tensor_config(model, t) for t in node.inbound_tensors]
            nodes.append({"args": [args if node.multi else args[0]], "kwargs": {}})
        entry.update(name=layer.name, inbound_nodes=nodes)
        entries.append(entry)

    def ends(tensors):
        refs = [[t.node.layer.name, model.node_index(t.node), 0] for t in tensors]
        return refs[0] if len(refs) == 1 else refs
    return {"name": model.name, "trainable": True, "layers": entries,
            "input_layers": ends(model.inputs), "output_layers": ends(model.outputs)}


def _inbound_refs(node_data):
    """``([(layer name, node index, tensor index)], several)`` from a Keras 3 node dict
    ``{"args": [...], "kwargs": {}}`` or a legacy ``[[name, node, tensor, kwargs], ...]``;
    ``several``: the layer was called on a list (in a legacy entry: on more than one
    tensor)."""
    if isinstance(node_data, dict):
        arg = node_data["args"][0]
        several = isinstance(arg, list)
        refs = [t["config"]["keras_history"] for t in (arg if several else [arg])]
        return [tuple(r[:3]) for r in refs], several
    return [tuple(r[:3]) for r in node_data], len(node_data) > 1


def model_from_graph_config(config, deserialize, cls=None):
    """Rebuild a graph model from :func:`graph_config`'s layout (also Keras 2's legacy
    ``inbound_nodes`` lists): create each layer with ``deserialize(entry)`` and replay its
    calls once their input tensors exist."""
    made, pending, tensors = [], [], {}
    for entry in config["layers"]:
        layer = deserialize(entry)
        name = entry.get("name", layer.name)
        made.append(layer)
        if isinstance(layer, _layers.InputLayer):
            tensors[(name, 0)] = input_tensor(layer)
        pending.append((name, layer, list(entry.get("inbound_nodes") or [])))
    done = {name: 0 for name, _, _ in pending}
    progress = True
    while progress:
        progress = False
        for name, layer, nodes in pending:
            while nodes:
                refs, several = _inbound_refs(nodes[0])
                if any((r[0], r[1]) not in tensors for r in refs):
                    break
                args = [tensors[(r[0], r[1])] for r in refs]
                multi = several or getattr(layer, "_multi_input", False)
                tensors[(name, done[name])] = layer(args if multi else args[0])
                done[name] += 1
                nodes.pop(0)
                progress = True
    left = [name for name, _, nodes in pending if nodes]
    if left:
        raise ValueError(f"Model config {config.get('name')!r}: cannot connect layers {left} "
                         f"(their inputs are missing from the config).")

    def ends(refs):
        single = bool(refs) and isinstance(refs[0], str)
        found = [tensors[(r[0], r[1])] for r in ([refs] if single else refs)]
        return found[0] if single else found
    model = (cls or Model)(ends(config["input_layers"]), ends(config["output_layers"]),
                           name=config.get("name"))
    if {id(l) for l in made} == {id(l) for l in model.layers}:
        model._layers = made    # the saved order (a traced subclassed model's own order)
    return model


def _accumulate(grads, slot, g):
    grads[slot] = g if slot not in grads else grads[slot] + g


def _sum_weight_grads(sums, layer):
    """Add ``layer.grads`` (this node's weight gradients) to the running sums."""
    names = [n for n in layer.trainable_weight_names if n in layer.grads]
    if id(layer) not in sums:
        sums[id(layer)] = (layer, {n: layer.grads[n].copy() for n in names})
    else:
        acc = sums[id(layer)][1]
        for n in names:
            acc[n] += layer.grads[n]
