"""``Sequential`` models: a chain of cconv layers with Keras's API (compile / fit /
evaluate / predict from :class:`cconv.trainer.Trainer`, plus summary and config).

The final softmax (or sigmoid) is fused with the cross-entropy (see ``_forward`` /
``_backward``).
"""


from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import layers as _layers
from . import plan as _plan
from . import saving as _saving
from ._typing import Config
from .layers.base import unique_name
from .trainer import Trainer
from .trainer import shape_str as _shape_str

__all__ = ["Sequential"]


class Sequential(Trainer):
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
        super().__init__()
        self.name = name or unique_name("sequential")
        self._layers = []
        self._input_layer = None
        self.built = False
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
        layer = self._layers.pop()
        self._invalidate()
        return layer

    def _invalidate(self):
        self.built = False
        self._packed = False
        self._fused = False

    @property
    def layers(self) -> List[_layers.Layer]:
        return list(self._layers)

    def _declared_input_shape(self):
        if self._input_layer is not None:
            return self._input_layer.shape
        if self._layers and self._layers[0]._input_shape is not None:
            return self._layers[0]._input_shape
        return None

    def build(self, input_shape: Optional[Sequence[Optional[int]]] = None) -> None:
        """Build every layer for inputs of ``(batch,) + input_shape`` (a leading None is
        accepted). Without an argument uses the declared input shape."""
        if input_shape is None:
            input_shape = self._declared_input_shape()
            if input_shape is None:
                raise ValueError(
                    "The model has no input shape: start it with cconv.Input(shape), give the "
                    "first layer input_shape=..., or call it on data first."
                )
        input_shape = tuple(input_shape)
        if input_shape and input_shape[0] is None:
            input_shape = input_shape[1:]
        if not self._layers:
            raise ValueError("Cannot build an empty Sequential model; add layers first.")
        shape = tuple(int(d) for d in input_shape)
        self._input_shape = shape
        for layer in self._layers:
            if layer.built:
                if layer._input_shape != shape:
                    raise ValueError(
                        f"Layer {layer.name!r} was built for inputs "
                        f"{_shape_str((None,) + layer._input_shape)} but receives "
                        f"{_shape_str((None,) + shape)} in this model."
                    )
            else:
                layer.build(shape)
            if layer.dtype != self._layers[0].dtype:
                raise ValueError(
                    f"All layers must share one dtype; {layer.name!r} is {layer.dtype}, "
                    f"{self._layers[0].name!r} is {self._layers[0].dtype}."
                )
            shape = layer._output_shape
        self._output_shape = shape
        self.dtype = np.dtype(self._layers[0].dtype)
        # Backward can stop at the first layer that has trainable weights.
        self._first_trained = 0
        for layer in self._layers:
            layer._need_dx = True
        for i, layer in enumerate(self._layers):
            if layer.trainable_weights:
                self._first_trained = i
                layer._need_dx = False
                break
        self.built = True
        self._packed = False

    def _ensure_built(self, x_shape=None):
        if not self.built:
            declared = self._declared_input_shape()
            self.build(declared if declared is not None else x_shape)

    @property
    def input_shape(self) -> Tuple[Optional[int], ...]:
        self._ensure_built()
        return (None,) + self._input_shape

    @property
    def output_shape(self) -> Tuple[Optional[int], ...]:
        self._ensure_built()
        return (None,) + self._output_shape

    # ----- forward / backward --------------------------------------------------------------------
    def _chain_layers(self):
        """The layers in the order they run when the model is a chain (a Sequential always
        is), for :mod:`cconv.plan`; None for a graph that is not one."""
        return self._layers

    def _planned_forward(self, x, training, logits=False):
        """The output through the compiled plan (:mod:`cconv.plan`), or None when the model
        has no plan for ``x``. In training the plan keeps what its backward needs until the
        next :meth:`_planned_backward`."""
        if training:
            tplan = _plan.get_train_plan(self, logits)
            if tplan is not None and tplan.accepts(x):
                self._train_plan = tplan
                return tplan.forward(x)
            return None
        plan = _plan.get_plan(self, logits)
        return plan(x) if plan is not None and plan.accepts(x) else None

    def _planned_backward(self, g):
        """Back-propagate ``g`` through the training plan if the forward pass ran through
        it; returns whether it did."""
        tplan = self.__dict__.pop("_train_plan", None)
        if tplan is not None:
            tplan.backward(g)
        return tplan is not None

    def _forward(self, x, training, logits=False):
        """The output (the last layer's logits with ``logits``): through the compiled plan
        when the layers allow it, else layer by layer."""
        y = self._planned_forward(x, training, logits)
        if y is not None:
            return y
        layers = self._layers
        for layer in layers[:-1]:
            x = layer.forward(x, training)
        last = layers[-1]
        return last.forward_logits(x, training) if logits else last.forward(x, training)

    def _backward(self, g, logits=False):
        """Back-propagate from the output down to the first layer with trainable weights
        (through the training plan when the forward pass ran through it).

        Raises:
            NotImplementedError: a layer on that path defines no ``backward`` (a Keras-style
                custom layer), before any layer's backward runs.
        """
        if self._planned_backward(g):
            return
        layers = self._layers
        for layer in layers[self._first_trained:]:
            layer._require_backward()
        last = len(layers) - 1
        for i in range(last, self._first_trained - 1, -1):
            layer = layers[i]
            if i == last and logits:
                g = layer.backward_logits(g)
            else:
                g = layer.backward(g)

    @property
    def _output_layer(self):
        return self._layers[-1]

    # ----- summary / config / saving -------------------------------------------------------------
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
        print_fn(f" Total params: {tot:,} ({size(tot)})")
        print_fn(f" Trainable params: {tr:,} ({size(tr)})")
        print_fn(f" Non-trainable params: {tot - tr:,} ({size(tot - tr)})")

    def _summary_rows(self):
        """``(column titles, rows of strings)`` for :meth:`summary`."""
        rows = [(f"{layer.name} ({type(layer).__name__})", _shape_str(layer.output_shape),
                 f"{layer.count_params():,}") for layer in self._layers]
        return ("Layer (type)", "Output Shape", "Param #"), rows

    def get_config(self) -> Config:
        cfg = {"name": self.name, "layers": []}
        if self._input_layer is not None:
            cfg["layers"].append(_layers.serialize(self._input_layer))
        cfg["layers"] += [_layers.serialize(layer) for layer in self._layers]
        if self.built:
            cfg["build_input_shape"] = [None] + list(self._input_shape)
        return cfg

    @classmethod
    def from_config(cls, config: Config) -> "Sequential":
        model = cls([_layers.deserialize(c) for c in config["layers"]], name=config.get("name"))
        shape = config.get("build_input_shape")
        if shape is not None:
            model.build(tuple(shape[1:]))
        return model

    def __repr__(self):
        return f"<Sequential name={self.name!r}, {len(self._layers)} layers, built={self.built}>"


_saving.register_model_class(Sequential)
