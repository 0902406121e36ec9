"""``Sequential`` models: a chain of layers, which is a graph model (:class:`cconv.Model`)
whose graph is built once the input shape is known, as in Keras 3.

Until then the model is a list of layers (``add`` / ``pop`` change it); ``build`` (explicit,
or on the first data) calls each layer on the previous one's symbolic output, from the
``cconv.Input`` given first or one made for the input shape, and hands the chain to the graph
model: forward, backward, the fused final softmax/sigmoid, the compiled plan and training are
the graph model's.
"""


from typing import Optional, Sequence

import numpy as np

from .. import layers as _layers
from .. import saving as _saving
from .._typing import Config
from ..layers.base import sample_shape, unique_name
from ..layers.node import input_tensor
from ..trainers.trainer import Trainer
from ..trainers.trainer import shape_str as _shape_str
from .functional import (
    NESTED_MODEL_CLASSES,
    Model,
    deserialize_layer,
    keras_class_name,
    serialize_layer,
)

__all__ = ["Sequential"]


class Sequential(Model):
    """A linear stack of layers.

    Args:
        layers: list of layers; the first may be ``cconv.Input(shape)`` (or a layer given
            ``input_shape=``), otherwise the model is built on the first data it sees.
        name: model name.

    Example::

        model = cconv.Sequential([
            cconv.Input((28, 28, 1)),
            cconv.layers.Conv2D(6, 5, padding="same", activation="relu"),
            cconv.layers.MaxPooling2D(),
            cconv.layers.Flatten(),
            cconv.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=5)
    """

    def __init__(self, layers: Optional[Sequence[_layers.Layer]] = None,
                 name: Optional[str] = None):
        self._init_model(name or unique_name("sequential"))
        self._input_layer = None
        for layer in layers or []:
            self.add(layer)

    # ----- structure -----------------------------------------------------------------------------
    def add(self, layer: _layers.Layer) -> None:
        """Append a layer (or set the input with ``cconv.Input``)."""
        history = getattr(layer, "_keras_history", None)   # a symbolic tensor: cconv.Input
        if history is not None and isinstance(history[0], _layers.InputLayer):
            layer = history[0]
        if isinstance(layer, _layers.InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("cconv.Input must be the first element of a Sequential model.")
            self._input_layer = layer
            self._invalidate()
            return
        if not isinstance(layer, _layers.Layer):
            raise TypeError(f"Sequential.add expects a cconv layer; got {layer!r} of type "
                            f"{type(layer).__name__}.")
        if any(other is layer for other in self._layers):
            raise ValueError(f"Layer {layer.name!r} is already in the model.")
        self._layers.append(layer)
        self._invalidate()

    def pop(self) -> _layers.Layer:
        """Remove the last layer and return it.

        Raises:
            IndexError: the model has no layer.
        """
        if not self._layers:
            raise IndexError(f"Sequential model {self.name!r} has no layer to pop.")
        layer = self._layers.pop()
        self._invalidate()
        return layer

    def _invalidate(self):
        """Forget the graph: the next use builds it again for the current layers."""
        self._graph = None
        self.built = False
        self._packed = False
        self._fused = False

    def _declared_input_shape(self):
        if self._input_layer is not None:
            return self._input_layer.shape
        if not self._layers:
            return None
        try:         # a nested model first: its input, if it knows it
            first = self._layers[0].input_shape
        except ValueError:
            return None
        return None if first is None else sample_shape(first)

    def build(self, input_shape: Optional[Sequence[Optional[int]]] = None) -> None:
        """Build every layer for inputs of ``(batch,) + input_shape`` (a leading None is
        accepted) by calling the layers in turn on symbolic tensors. Without an argument uses
        the declared input shape.

        Raises:
            ValueError: no input shape, no layer, a layer built for other inputs, or layers
                of different dtypes.
        """
        if input_shape is None:
            input_shape = self._declared_input_shape()
            if input_shape is None:
                raise ValueError(
                    "The model has no input shape: start it with cconv.Input(shape), give the "
                    "first layer input_shape=..., or call it on data first."
                )
            input_shape = (None,) + tuple(input_shape)    # (a sample's first size may be None)
        input_shape = tuple(input_shape)
        if input_shape and input_shape[0] is None:
            input_shape = input_shape[1:]
        if not self._layers:
            raise ValueError("Cannot build an empty Sequential model; add layers first.")
        shape = tuple(None if d is None else int(d) for d in input_shape)
        chain = list(self._layers)
        dtypes = {layer.name: np.dtype(layer.dtype).name for layer in chain
                  if layer.built or not isinstance(layer, Model)}   # a model: once built
        if len(set(dtypes.values())) > 1:
            raise ValueError(f"All layers must share one dtype; got {dtypes}.")
        inp = self._input_layer
        if inp is None or inp.shape != shape:
            inp = _layers.InputLayer(shape, dtype=next(iter(dtypes.values()), "float32"))
        x = inputs = input_tensor(inp)
        for layer in chain:
            x = layer(x)
        self._init_graph(inputs, x)
        self._layers = chain        # Keras: a Sequential's layers leave out its InputLayer
        self._apply_pending_compile()

    # ----- forward / backward --------------------------------------------------------------------
    def chain_layers(self):
        """The layers in the order they run (a Sequential is always a chain), for
        :mod:`cconv.plan`; a nested model's own chain is inlined in its place, and a nested
        model that is no chain makes this None (the model runs layer by layer)."""
        chain = []
        for layer in self._layers:
            if not isinstance(layer, Model):
                chain.append(layer)
                continue
            inner = layer.chain_layers()
            if inner is None:
                return None
            chain += inner
        return chain

    # ----- a single input and output: the trainer's own data checks ------------------------------
    def _prepare_x(self, x, what="x"):
        if self._graph is None and self._declared_input_shape() is not None:
            self._ensure_built()
        if self._graph is not None and None in self._in_shapes[0]:
            return self._prepare_any_size(x, what)     # Input(shape=(None, None, C))
        return Trainer._prepare_x(self, x, what)

    _prepare_xy = Trainer._prepare_xy

    def _outputs_known(self, args):
        """One output, so ``compile`` applies at once unless an argument is given per output
        (loss weights, or a dict by output name: the output's name comes with the graph)."""
        return args["loss_weights"] is None and not any(
            isinstance(args[k], dict) for k in ("loss", "metrics", "weighted_metrics"))

    # ----- summary / config / saving -------------------------------------------------------------
    def _summary_rows(self):
        """``(column titles, rows of strings)`` for :meth:`summary`."""
        rows = [(f"{layer.name} ({keras_class_name(layer)})", _shape_str(layer.output_shape),
                 f"{layer.count_params():,}") for layer in self._layers]
        return ("Layer (type)", "Output Shape", "Param #"), rows

    def get_config(self) -> Config:
        cfg = {"name": self.name, "layers": []}
        if self._input_layer is not None:
            cfg["layers"].append(_layers.serialize(self._input_layer))
        cfg["layers"] += [serialize_layer(layer) for layer in self._layers]
        if self.built:
            cfg["build_input_shape"] = [None] + list(self._input_shape)
        return cfg

    @classmethod
    def from_config(cls, config: Config) -> "Sequential":
        model = cls([deserialize_layer(c) for c in config["layers"]], name=config.get("name"))
        shape = config.get("build_input_shape")
        if shape is not None:
            model.build(tuple(shape))      # the batch axis in front: a sample size may be None
        return model

    def __repr__(self):
        return f"<Sequential name={self.name!r}, {len(self._layers)} layers, built={self.built}>"


_saving.register_model_class(Sequential)
NESTED_MODEL_CLASSES["Sequential"] = Sequential
