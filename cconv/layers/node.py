"""Symbolic tensors and nodes: what calling a layer on ``cconv.Input(...)`` records.

A :class:`KerasTensor` holds no data: a shape ``(None,) + sample_shape``, a dtype and
``_keras_history = (layer, node_index, tensor_index)``, the :class:`Node` that produced it.
Calling a layer on KerasTensors builds the layer for their shapes (once), appends a Node to
``layer.inbound_nodes`` and returns the Node's output tensor. :class:`cconv.Model` walks
these nodes back from its outputs to get its graph (see ``cconv/functional.py``).

This module imports nothing from cconv so that the layers (``Layer.__call__``,
``cconv.Input``) and the models can all use it.
"""

__all__ = ["KerasTensor", "Node", "is_symbolic", "call_symbolic", "input_tensor",
           "layer_input", "layer_output", "spatial_shape"]

#: What a size known only at call time (None) stands for while an image layer's output
#: shape is worked out: large enough for any kernel, crop or padding check to pass.
_ANY_SIZE = 1 << 20


def spatial_shape(compute, input_shape):
    """``compute(shape)`` for an image layer whose output sizes depend each on the same
    axis of the input (convolutions, pooling, padding, cropping, upsampling), where a size
    of the sample shape ``input_shape`` may be None (``Input(shape=(None, None, C))``):
    the output's size on such an axis is None, every known size is checked and computed
    as usual."""
    shape = tuple(input_shape)
    out = tuple(compute(tuple(_ANY_SIZE if d is None else d for d in shape)))
    return tuple(None if i < len(shape) - 1 and shape[i] is None else d
                 for i, d in enumerate(out))

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
        self.shape = (None,) + tuple(None if d is None else int(d) for d in shape)
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

    # Arithmetic records layers, as Keras records operations: tensor (+, -, *) tensor makes
    # an Add / Subtract / Multiply layer (shapes broadcast as those layers do); tensor with a
    # number (+, -, *, /) and -tensor make a Rescaling layer (``x * scale + offset``: ``x / c``
    # is ``x * (1 / c)``, which can differ from a division in the last bit unless ``c`` is a
    # power of two). Unlike Keras's operations they are layers of the model (``model.layers``).
    def __add__(self, other):
        return _arith(self, other, "add")

    def __radd__(self, other):
        return _arith(self, other, "add")

    def __sub__(self, other):
        return _arith(self, other, "subtract")

    def __rsub__(self, other):
        return _arith(self, other, "rsubtract")

    def __mul__(self, other):
        return _arith(self, other, "multiply")

    def __rmul__(self, other):
        return _arith(self, other, "multiply")

    def __truediv__(self, other):
        return _arith(self, other, "divide")

    def __neg__(self):
        return _arith(self, -1.0, "multiply")

    def __pos__(self):
        return self

    def _unsupported(self, other=None):
        raise TypeError(
            f"This arithmetic on symbolic tensors is not supported ({self!r}): cconv records "
            f"x + y, x - y, x * y between tensors, +, -, *, / with a number, and -x, as "
            f"layers; use layers for the rest (cconv.layers.Activation, Rescaling, ...)."
        )

    __rtruediv__ = __matmul__ = __rmatmul__ = __pow__ = __rpow__ = _unsupported
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _unsupported

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
        # a size known only at call time (None) goes with the batch axis in front, so that
        # build does not take the first None for the batch axis
        unknown = any(d is None for s in (shape if multi else [shape]) for d in s)
        try:
            layer.build(_batch_shape(shape) if unknown else shape)
        except TypeError:
            if not unknown:
                raise
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) cannot take inputs of shape "
                f"{_batch_shape(shape)}: it needs every size but the batch's known, and None "
                f"is a size known only at call time (Input(shape=(None, None, C))). Put a "
                f"GlobalAveragePooling2D or GlobalMaxPooling2D before it.") from None
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
    unknown = any(d is None for s in (shape if multi else [shape]) for d in s)
    if keras_style or unknown:      # as built (shared layers see the shapes they were built for)
        out_shape = layer.output_shape[1:]
    else:
        out_shape = layer.compute_output_shape(shape)
    return Node(layer, tensors, out_shape, multi=multi).outputs[0]


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) or (
        type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0
        and getattr(getattr(value, "dtype", None), "kind", "") in "iuf")


def _arith(tensor, other, op):
    """The layer call that ``tensor <op> other`` stands for (see ``KerasTensor.__add__``).

    Raises:
        TypeError: an operand that is neither a symbolic tensor nor a number (naming it).
    """
    from . import merging, reshaping  # at call time: the layers import this module

    if isinstance(other, KerasTensor):
        if op == "divide":
            raise TypeError(f"Division of a symbolic tensor by a symbolic tensor is not "
                            f"supported ({tensor!r} / {other!r}); cconv has no Divide layer.")
        cls = {"add": merging.Add, "subtract": merging.Subtract,
               "multiply": merging.Multiply}[op]
        return cls(dtype=tensor.dtype)([tensor, other])
    if not _is_number(other):
        raise TypeError(
            f"Arithmetic on a symbolic tensor ({tensor!r}) needs another symbolic tensor or a "
            f"number; got {type(other).__name__} {other!r}. Constant arrays: use "
            f"cconv.layers.Rescaling(scale, offset).")
    c = float(other)
    if op == "divide" and c == 0:
        raise ZeroDivisionError(f"Division of symbolic tensor {tensor!r} by zero.")
    scale, offset = {"add": (1.0, c), "subtract": (1.0, -c), "rsubtract": (-1.0, c),
                     "multiply": (c, 0.0), "divide": (1.0 / c if op == "divide" else 0, 0.0)}[op]
    return reshaping.Rescaling(scale, offset, dtype=tensor.dtype)(tensor)


def _first_node(layer, what):
    nodes = layer.inbound_nodes
    if not nodes:
        raise AttributeError(f"The layer {layer.name} has never been called and thus has no "
                             f"defined {what}.")
    return nodes[0]


def layer_input(layer):
    """Keras's ``layer.input``: the tensor(s) the layer's first call took (a list for a layer
    called on a list; an InputLayer's own tensor).

    Raises:
        AttributeError: the layer was never called on symbolic tensors.
    """
    node = _first_node(layer, "input")
    if node.is_input:
        return node.outputs[0]
    return list(node.inbound_tensors) if node.multi else node.inbound_tensors[0]


def layer_output(layer):
    """Keras's ``layer.output``: the tensor the layer's first call made (Keras 3 takes the
    first call of a layer called several times).

    Raises:
        AttributeError: the layer was never called on symbolic tensors.
    """
    return _first_node(layer, "output").outputs[0]
