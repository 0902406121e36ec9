"""The :class:`Layer` base class shared by every cconv layer.

A layer works on NumPy arrays in NHWC, batch first. Training uses an explicit
forward/backward pair instead of autodiff:

- ``forward(x, training)`` returns the output and, when ``training`` is True, keeps what
  ``backward`` needs (the arrays it caches are dropped when the layer is pickled);
- ``backward(dy)`` returns ``dL/dx`` and writes ``dL/dw`` for each trainable weight into
  ``layer.grads[name]`` (preallocated, same shape as the weight).

Weights are attributes named in ``_weight_names`` (Keras's ``get_weights()`` order); a
model may rebind them to views of one flat buffer so that an optimizer step is a handful
of NumPy calls, so assign new values with ``set_weights`` (which copies in place).
"""

import itertools
import re
from collections import defaultdict
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .._typing import ArrayLike, Config, DTypeLike, Shape
from .node import call_symbolic, is_symbolic

_name_counters = defaultdict(itertools.count)
_SUPPORTED_DTYPES = ("float32", "float64")


def _snake(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(base):
    """Keras-style unique names: ``dense``, ``dense_1``, ..."""
    n = next(_name_counters[base])
    return base if n == 0 else f"{base}_{n}"


def check_data_format(data_format):
    if data_format not in (None, "channels_last"):
        raise ValueError(
            f"data_format={data_format!r} is not supported: cconv works in NHWC "
            f'("channels_last") only.'
        )


class Layer:
    """Base class of all layers.

    Args:
        name: unique name (default: the class name in snake case plus a counter).
        trainable: whether ``fit`` updates the weights (and, for BatchNormalization,
            whether it runs in training mode during ``fit``, as in Keras 3).
        dtype: "float32" (default) or "float64"; weights and outputs use it.
        input_shape: shape of one sample (no batch axis); lets a layer start a
            Sequential model, like Keras's ``input_shape=`` argument.
    """

    _weight_names = ()          # Keras get_weights() order
    _trainable_names = ()       # the subset the optimizer updates
    _transient = ()             # forward caches, dropped when pickled

    def __init__(self, name: Optional[str] = None, trainable: bool = True,
                 dtype: DTypeLike = None, input_shape: Optional[Shape] = None):
        if dtype is None:
            dtype = "float32"
        dtype = np.dtype(dtype).name
        if dtype not in _SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be one of {_SUPPORTED_DTYPES}; got {dtype!r}.")
        self.dtype = dtype
        self.name = name if name is not None else unique_name(_snake(type(self).__name__))
        self.trainable = bool(trainable)
        self.built = False
        self.grads = {}
        self._input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._output_shape = None
        self._need_dx = True     # a model clears this on its first trained layer

    # ----- shapes and building -------------------------------------------------
    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Output shape of one sample given the input shape of one sample."""
        return tuple(input_shape)

    def _image_shape(self, input_shape):
        """``(height, width, channels)`` of one sample, or a ValueError naming the layer."""
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects samples of shape (height, width, "
                f"channels); got sample shape {tuple(input_shape)}."
            )
        return tuple(input_shape)

    def build(self, input_shape: Shape) -> None:
        """Create the weights for inputs of shape ``(batch,) + input_shape``
        (``input_shape`` may also include a leading ``None`` batch axis)."""
        input_shape = tuple(input_shape)
        if input_shape and input_shape[0] is None:
            input_shape = input_shape[1:]
        input_shape = tuple(int(d) for d in input_shape)
        self._output_shape = tuple(self.compute_output_shape(input_shape))
        self._build(input_shape)
        self._input_shape = input_shape
        self.built = True
        for n in self._trainable_names:
            if getattr(self, n, None) is not None:
                self.grads[n] = np.zeros_like(getattr(self, n))

    def _build(self, input_shape):
        pass

    @property
    def input_shape(self) -> Tuple[Optional[int], ...]:
        """``(None,) + sample shape`` once built (or given), else None."""
        return None if self._input_shape is None else (None,) + self._input_shape

    @property
    def output_shape(self) -> Tuple[Optional[int], ...]:
        return None if self._output_shape is None else (None,) + self._output_shape

    def _check_input(self, x):
        if not self.built:
            self.build(x.shape[1:])
        elif x.shape[1:] != self._input_shape:
            raise ValueError(
                f"Layer {self.name!r} expects inputs of shape (batch,) + {self._input_shape}; "
                f"got an array of shape {x.shape}."
            )

    # ----- computation -----------------------------------------------------------
    def __call__(self, x, training=False):
        """Apply the layer to a batch ``x`` of shape ``(batch,) + input_shape``;
        returns a NumPy array of shape ``(batch,) + output_shape``. On symbolic tensors
        (``cconv.Input``) records a graph node and returns a symbolic tensor."""
        if is_symbolic(x):
            return call_symbolic(self, x)
        x = np.asarray(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        if x.ndim < 2:
            raise ValueError(
                f"Layer {self.name!r} needs a batch of inputs (ndim >= 2); got shape {x.shape}."
            )
        self._check_input(x)
        return self.forward(x, training=training)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Output for a batch ``x``; caches for ``backward`` when ``training``."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """``dL/dx`` from ``dy = dL/dy`` (same shape as the last ``forward`` output);
        fills ``self.grads``. Needs a preceding ``forward(x, training=True)``."""
        raise NotImplementedError

    # ----- weights ------------------------------------------------------------------
    @property
    def weights(self) -> List[np.ndarray]:
        return [getattr(self, n) for n in self._weight_names if getattr(self, n, None) is not None]

    @property
    def trainable_weights(self) -> List[np.ndarray]:
        if not self.trainable:
            return []
        return [
            getattr(self, n) for n in self._trainable_names if getattr(self, n, None) is not None
        ]

    @property
    def non_trainable_weights(self) -> List[np.ndarray]:
        tw = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in tw]

    def _present_weight_names(self):
        return [n for n in self._weight_names if getattr(self, n, None) is not None]

    def get_weights(self) -> List[np.ndarray]:
        """Copies of the weights, Keras's order (e.g. kernel, bias)."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Copy ``weights`` (Keras's order and shapes) into the layer, in place."""
        names = self._present_weight_names()
        weights = list(weights)
        if len(weights) != len(names):
            raise ValueError(
                f"Layer {self.name!r} has {len(names)} weights ({', '.join(names) or 'none'}); "
                f"set_weights got {len(weights)}."
            )
        for n, w in zip(names, weights):
            cur = getattr(self, n)
            w = np.asarray(w)
            if w.shape != cur.shape:
                raise ValueError(
                    f"Layer {self.name!r}: weight {n!r} has shape {cur.shape}; "
                    f"set_weights got shape {w.shape}."
                )
        for n, w in zip(names, weights):
            getattr(self, n)[...] = w

    def count_params(self) -> int:
        return int(sum(w.size for w in self.weights))

    def _weight_regularizers(self):
        """``(weight name, regularizer)`` for each present trainable weight whose
        ``<name>_regularizer`` attribute is set (e.g. ``kernel_regularizer``)."""
        out = []
        for n in self._trainable_names:
            reg = getattr(self, n + "_regularizer", None)
            if reg is not None and getattr(self, n, None) is not None:
                out.append((n, reg))
        return out

    # ----- config ----------------------------------------------------------------------
    def get_config(self) -> Config:
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape is not None and not self.built:
            cfg["input_shape"] = list(self._input_shape)
        return cfg

    @classmethod
    def from_config(cls, config: Config):
        return cls(**config)

    def __getstate__(self):
        state = self.__dict__.copy()
        for k in self._transient:
            state.pop(k, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"
