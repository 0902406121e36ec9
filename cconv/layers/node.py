"""Symbolic tensors and nodes: what calling a layer on ``cconv.Input(...)`` records.

A :class:`KerasTensor` holds no data: a shape ``(None,) + sample_shape``, a dtype and
``_keras_history = (layer, node_index, tensor_index)``, the :class:`Node` that produced it.
Calling a layer on KerasTensors builds the layer for their shapes (once), appends a Node to
``layer.inbound_nodes`` and returns the Node's output tensor. :class:`cconv.Model` walks
these nodes back from its outputs to get its graph (see ``cconv/functional.py``).

This module imports nothing from cconv so that the layers (``Layer.__call__``,
``cconv.Input``) and the models can all use it.
"""

__all__ = ["KerasTensor", "Node", "is_symbolic", "call_symbolic", "input_tensor"]

_CONTROL_FLOW = (
    "{what} a symbolic tensor ({tensor}): its value is unknown while a model is traced. "
    "Data-dependent Python control flow is not supported (if/while on tensor values, bool(), "
    "float(), int(), len(), NumPy conversion) in a cconv model's call(); express the "
    "computation with layers (e.g. cconv.layers.Activation, Add, Concatenate) or build the "
    "model with the functional API."
)


class KerasTensor:
    """A symbolic batch: ``shape`` is ``(None,) + sample shape``; ``dtype`` a NumPy name.

    Only layers can be applied to it. Anything that needs its values raises TypeError.
    """

    def __init__(self, shape, dtype, history, name=None):
        self.shape = (None,) + tuple(int(d) for d in shape)
        self.dtype = dtype
        self._keras_history = history     # (layer, node_index, tensor_index)
        self.name = name or history[0].name

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def node(self):
        layer, node_index, _ = self._keras_history
        return layer.inbound_nodes[node_index]

    def __repr__(self):
        shape = "(" + ", ".join("None" if d is None else str(d) for d in self.shape) + (
            ",)" if len(self.shape) == 1 else ")")
        return f"<KerasTensor shape={shape}, dtype={self.dtype}, name={self.name}>"

    def _refuse(self, what):
        raise TypeError(_CONTROL_FLOW.format(what=what, tensor=repr(self)))

    def __bool__(self):
        self._refuse("bool() (an `if` or `while` test) was called on")

    def __float__(self):
        self._refuse("float() was called on")

    def __int__(self):
        self._refuse("int() was called on")

    def __index__(self):
        self._refuse("An index was taken from")

    def __len__(self):
        self._refuse("len() was called on")

    def __iter__(self):
        self._refuse("Iteration was attempted over")

    def __array__(self, dtype=None, copy=None):
        self._refuse("NumPy conversion was attempted on")

    def __getitem__(self, key):
        self._refuse("Indexing was attempted on")

    def _compare(self, other):
        self._refuse("A comparison was made with")

    __lt__ = __le__ = __gt__ = __ge__ = _compare

    def _arith(self, other):
        raise TypeError(
            f"Arithmetic on symbolic tensors is not supported ({self!r}); use layers "
            f"(cconv.layers.Add, Subtract, Multiply, Rescaling, Activation)."
        )

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _arith
    __truediv__ = __rtruediv__ = __matmul__ = __neg__ = __pow__ = _arith

    __hash__ = object.__hash__


class Node:
    """One call of ``layer`` on ``inbound_tensors`` (a list); ``outputs`` is a list of one
    KerasTensor. ``call_index`` is the node's index in ``layer.inbound_nodes``;
    ``multi`` tells whether the layer was given a list (multi-input layers);
    ``forward_cache`` holds a shared layer's forward caches of this call during a training
    step (the graph model's, see ``cconv/models/functional.py``)."""

    def __init__(self, layer, inbound_tensors, output_shape, multi=False, name=None):
        nodes = layer.__dict__.setdefault("_inbound_nodes", [])
        self.layer = layer
        self.inbound_tensors = list(inbound_tensors)
        self.multi = bool(multi)
        self.call_index = len(nodes)
        dtype = getattr(layer.dtype, "name", layer.dtype)    # a model's dtype is a np.dtype
        self.outputs = [KerasTensor(output_shape, dtype, (layer, self.call_index, 0),
                                    name=name)]
        self.forward_cache = None
        nodes.append(self)

    @property
    def is_input(self):
        return not self.inbound_tensors

    @property
    def parent_nodes(self):
        return [t.node for t in self.inbound_tensors]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["forward_cache"] = None
        return state

    def __repr__(self):
        return f"<Node {self.layer.name}[{self.call_index}]>"


def _batch_shape(shape):
    """``(None,) + shape``, for each shape of a list."""
    if isinstance(shape, list):
        return [(None,) + tuple(s) for s in shape]
    return (None,) + tuple(shape)


def _sample_shape(shape):
    """Inverse of :func:`_batch_shape`."""
    if isinstance(shape, list):
        return [tuple(s[1:]) for s in shape]
    return tuple(shape[1:])


def is_symbolic(x):
    """True for a KerasTensor or a non-empty list/tuple of them."""
    if isinstance(x, (list, tuple)):
        return bool(x) and all(isinstance(t, KerasTensor) for t in x)
    return isinstance(x, KerasTensor)


def input_tensor(input_layer):
    """The KerasTensor of an InputLayer (made on first use)."""
    nodes = input_layer.inbound_nodes
    if not nodes:
        return Node(input_layer, [], input_layer.shape, name=input_layer.name).outputs[0]
    return nodes[0].outputs[0]


def call_symbolic(layer, inputs):
    """Record ``layer(inputs)`` on KerasTensors: build the layer for their shapes (once;
    a shared layer must see the shapes it was built for) and return the output tensor.

    A Keras-style layer (one that defines ``call``, see ``cconv/layers/base.py``) takes a
    list when it is given one, as Keras passes it to ``call``; its output shape is the one
    found when it was built.

    Raises:
        ValueError: a list given to a single-input layer, or shapes a shared layer was not
            built for.
    """
    keras_style = getattr(layer, "_keras_style", False)
    if keras_style:
        multi = isinstance(inputs, (list, tuple))
    else:
        multi = bool(getattr(layer, "_multi_input", False))
    if multi:
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        shape = [t.shape[1:] for t in tensors]
    else:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(
                    f"Layer {layer.name!r} ({type(layer).__name__}) takes one input tensor; got a "
                    f"list of {len(inputs)}. Combine tensors with a merging layer (Add, "
                    f"Concatenate) first."
                )
            inputs = inputs[0]
        tensors = [inputs]
        shape = inputs.shape[1:]
    if not layer.built:
        layer.build(shape)
    elif keras_style and layer.input_shape != _batch_shape(shape):
        raise ValueError(
            f"Layer {layer.name!r} was built for inputs of sample shape "
            f"{_sample_shape(layer.input_shape)} and cannot be called on sample shape {shape} "
            f"(a shared layer needs the same input shapes at every call)."
        )
    elif not multi and layer.input_shape != (None,) + tuple(shape):
        raise ValueError(
            f"Layer {layer.name!r} was built for inputs {layer.input_shape} and cannot "
            f"be called on a tensor of shape {(None,) + tuple(shape)} (a shared layer needs "
            f"the same input shape at every call)."
        )
    out_shape = layer.output_shape[1:] if keras_style else layer.compute_output_shape(shape)
    return Node(layer, tensors, out_shape, multi=multi).outputs[0]
