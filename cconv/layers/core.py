"""Core layers: Input, Dense, Activation, ReLU, LeakyReLU, Softmax, Dropout, Flatten."""

import math
from typing import Optional, Sequence, Union

import numpy as np

from .. import activations as _activations
from .. import backend as _backend
from .. import initializers as _initializers
from .. import ops as _ops
from .. import regularizers as _regularizers
from .._typing import Config, DTypeLike, Shape
from .._validation import check_int
from ..activations import Activation
from ..initializers import Initializer
from .base import Layer, check_data_format
from .node import KerasTensor, input_tensor

__all__ = ["InputLayer", "Input", "Dense", "Activation", "ReLU", "LeakyReLU", "Softmax",
           "Dropout", "Flatten"]


class InputLayer(Layer):
    """Declares the shape of one sample; the first element of a Sequential model.

    Args:
        shape: sample shape without the batch axis, e.g. ``(28, 28, 1)``.
    """

    def __init__(self, shape: Sequence[int], batch_size: Optional[int] = None,
                 name: Optional[str] = None, dtype: DTypeLike = None):
        try:      # None: a size known only at call time (fully convolutional models)
            shape = tuple(None if d is None else int(d) for d in shape)
        except TypeError:
            raise TypeError(
                f"Input shape must be a tuple of ints (or None), e.g. (28, 28, 1) or (None, "
                f"None, 3); got {shape!r}."
            ) from None
        if any(d is not None and d <= 0 for d in shape):
            raise ValueError(f"Input shape dimensions must be positive; got {shape!r}.")
        super().__init__(name=name, dtype=dtype)
        self._input_shape = shape
        self.shape = shape
        self.batch_size = batch_size
        self._output_shape = shape
        self.built = True

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy

    def get_config(self) -> Config:
        return {"shape": tuple(self.shape), "batch_size": self.batch_size, "name": self.name,
                "dtype": self.dtype}


def Input(shape: Optional[Sequence[int]] = None, batch_size: Optional[int] = None,
          name: Optional[str] = None, dtype: DTypeLike = None,
          batch_shape: Optional[Sequence[Optional[int]]] = None) -> KerasTensor:
    """``cconv.Input((28, 28, 1))``: a symbolic batch of samples of that shape (a
    :class:`~cconv.layers.node.KerasTensor` of shape ``(None,) + shape``). Call layers on it
    and pass it to ``cconv.Model(inputs, outputs)``, or make it the first element of a
    Sequential model. ``batch_shape=(None,) + shape`` is accepted instead of ``shape``."""
    if batch_shape is not None:
        shape = tuple(batch_shape)[1:]
    return input_tensor(InputLayer(shape, batch_size=batch_size, name=name, dtype=dtype))


class _ActivatedLayer(Layer):
    """A linear map followed by an activation. ``forward_logits`` stops before the
    activation and ``backward_logits`` starts after it, so a model can fuse the final
    softmax/sigmoid with the loss."""

    _transient = ("_x", "_xshape", "_z", "_a")

    def _set_activation(self, activation):
        self.activation = _activations.get(activation)

    def _set_kernel_args(self, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer=None, bias_regularizer=None):
        """The arguments every kernel-and-bias layer takes (Dense, Conv2D); the regularizers
        are penalties on the kernel and bias (see :mod:`cconv.regularizers`)."""
        self._set_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel = self.bias = None

    def _kernel_config(self):
        return dict(activation=_activations.serialize(self.activation), use_bias=self.use_bias,
                    kernel_initializer=_initializers.serialize(self.kernel_initializer),
                    bias_initializer=_initializers.serialize(self.bias_initializer),
                    kernel_regularizer=_regularizers.serialize(self.kernel_regularizer),
                    bias_regularizer=_regularizers.serialize(self.bias_regularizer))

    def _set_grads(self, dk, db):
        """Store the kernel and bias gradients (in the model's flat gradient views)."""
        if self.trainable:
            self.grads["kernel"][...] = dk
            if self.bias is not None:
                self.grads["bias"][...] = db

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        z = self._linear(x, training)
        act = self.activation
        if act.name == "linear":
            return z
        if training:
            if act.needs_input:
                self._z = z
                a = act.forward(z)
            else:
                self._z = None
                a = act.forward(z, inplace=True)
            self._a = a
            return a
        return act.forward(z, inplace=True)

    def forward_logits(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """The pre-activation output ``z`` (the logits for a softmax layer)."""
        return self._linear(x, training)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        if self.activation.name != "linear":
            dy = self.activation.backward(dy, self._z, self._a)
        return self.backward_logits(dy)


class Dense(_ActivatedLayer):
    """Densely connected layer: ``activation(x @ kernel + bias)``.

    Args:
        units: output size.
        activation: name or :class:`cconv.activations.Activation` (default: linear).
        use_bias: add a bias vector.
        kernel_initializer, bias_initializer: names or initializer objects.
        kernel_regularizer, bias_regularizer: None, a name ("l1", "l2", "l1_l2") or a
            :mod:`cconv.regularizers` object; its penalty joins the loss.

    Input shape: ``(batch, ..., in)``. Output shape: ``(batch, ..., units)``.
    Weights: kernel ``(in, units)``, bias ``(units,)``.
    """

    _weight_names = ("kernel", "bias")
    _trainable_names = ("kernel", "bias")

    def __init__(self, units: int, activation: Union[str, Activation, None] = None,
                 use_bias: bool = True,
                 kernel_initializer: Union[str, Initializer] = "glorot_uniform",
                 bias_initializer: Union[str, Initializer] = "zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_int(units, "units", "Dense")
        self._set_kernel_args(activation, use_bias, kernel_initializer, bias_initializer,
                              kernel_regularizer, bias_regularizer)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1:
            raise ValueError(
                f"Dense {self.name!r} needs inputs of rank >= 2; got sample shape {input_shape}."
            )
        return tuple(input_shape[:-1]) + (self.units,)

    def _build(self, input_shape):
        self.kernel = self.kernel_initializer((input_shape[-1], self.units), self.dtype)
        if self.use_bias:
            self.bias = self.bias_initializer((self.units,), self.dtype)

    def _linear(self, x, training):
        if training:
            self._x = x
        return _ops.dense(x, self.kernel, self.bias)

    def backward_logits(self, dz: np.ndarray) -> np.ndarray:
        dx, dk, db = _ops.dense_backward(dz, self._x, self.kernel,
                                         input_grad=self.compute_input_gradient)
        self._set_grads(dk, db)
        return dx

    def get_config(self) -> Config:
        cfg = super().get_config()
        cfg.update(units=self.units, **self._kernel_config())
        return cfg


class Activation(_ActivatedLayer):
    """Applies an activation function: ``Activation("relu")``. Shape unchanged."""

    def __init__(self, activation: Union[str, Activation, None], **kwargs):
        super().__init__(**kwargs)
        self._set_activation(activation)

    def _linear(self, x, training):
        return x

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        act = self.activation
        if act.name == "linear":
            return x
        a = act.forward(x)              # never in place: x may be the caller's array
        if training:
            self._z = x if act.needs_input else None
            self._a = a
        return a

    def backward_logits(self, dz: np.ndarray) -> np.ndarray:
        return dz

    def get_config(self) -> Config:
        cfg = super().get_config()
        cfg["activation"] = _activations.serialize(self.activation)
        return cfg


class Softmax(Activation):
    """Softmax over the last axis. Shape unchanged."""

    def __init__(self, axis: int = -1, **kwargs):
        if axis != -1:
            raise ValueError(f"Softmax: only axis=-1 is supported; got axis={axis!r}.")
        super().__init__("softmax", **kwargs)
        self.axis = -1

    def get_config(self) -> Config:
        cfg = Layer.get_config(self)
        cfg["axis"] = self.axis
        return cfg


class ReLU(Layer):
    """Keras's ReLU layer::

        f(x) = max_value                      if x >= max_value
             = x                              if threshold <= x < max_value
             = negative_slope * (x - threshold) otherwise
    """

    _transient = ("_x",)

    def __init__(self, max_value: Optional[float] = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0:
            raise ValueError(f"ReLU: max_value must be >= 0 or None; got {max_value!r}.")
        if negative_slope < 0:
            raise ValueError(f"ReLU: negative_slope must be >= 0; got {negative_slope!r}.")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)

    def _plain(self):
        return self.max_value is None and self.negative_slope == 0 and self.threshold == 0

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self._x = x
        if self._plain():
            return np.maximum(x, 0)
        t = x.dtype.type
        if self.negative_slope == 0 and self.threshold == 0:      # ReLU(6.): two passes
            y = np.maximum(x, 0)
            return np.minimum(y, t(self.max_value), out=y)
        y = np.where(x >= self.threshold, x, t(self.negative_slope) * (x - t(self.threshold)))
        if self.max_value is not None:
            y = np.where(x >= self.max_value, t(self.max_value), y)
        return y.astype(x.dtype, copy=False)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x = self._x
        if self._plain():
            return np.multiply(dy, x > 0)
        if self.negative_slope == 0 and self.threshold == 0:
            # dy where 0 <= x < max_value, dy * 0 below (as dy * negative_slope), 0 above
            g = np.multiply(dy, x >= 0)
            np.putmask(g, x >= self.max_value, 0)
            return g
        g = np.where(x >= self.threshold, dy, dy * dy.dtype.type(self.negative_slope))
        if self.max_value is not None:
            g = np.where(x >= self.max_value, 0, g)
        return g.astype(dy.dtype, copy=False)

    def get_config(self) -> Config:
        cfg = super().get_config()
        cfg.update(
            max_value=self.max_value, negative_slope=self.negative_slope, threshold=self.threshold
        )
        return cfg


class LeakyReLU(ReLU):
    """``x`` for ``x >= 0``, ``negative_slope * x`` otherwise (Keras default 0.3)."""

    def __init__(self, negative_slope: float = 0.3, **kwargs):
        super().__init__(negative_slope=negative_slope, **kwargs)

    def get_config(self) -> Config:
        cfg = Layer.get_config(self)
        cfg["negative_slope"] = self.negative_slope
        return cfg


class Dropout(Layer):
    """Sets a fraction ``rate`` of inputs to zero during training and scales the rest
    by ``1 / (1 - rate)``; the identity at inference. Shape unchanged.

    Masks come from a counter-based generator (Philox4x32-10, :func:`cconv.ops.dropout`): the
    mask of a training call is a function of (the layer's seed, the call's step, the element's
    index) only, so no thread count changes it and the backward recomputes it rather than
    keeping it. The step counts the layer's training calls (0, 1, 2, ...).

    Args:
        rate: float in [0, 1).
        noise_shape: Keras's: None (a mask entry per element) or one entry per axis of the
            input (batch axis included), each None (the input's size), that size, or 1 (one
            mask entry shared along that axis, e.g. ``(None, 1, 1, None)`` drops whole
            channels).
        seed: int for a reproducible mask sequence; None draws the layer's seed from the
            global seed at creation (reproducible after ``cconv.utils.set_random_seed``).
            Masks differ from Keras's (another generator).
    """

    _transient = ("_drop_call",)

    def __init__(self, rate: float, noise_shape: Optional[Sequence[Optional[int]]] = None,
                 seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) \
                or not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be in [0, 1); got {rate!r}.")
        if noise_shape is not None:
            try:
                noise_shape = tuple(noise_shape)
            except TypeError:
                raise ValueError(f"Dropout: noise_shape must be None or a tuple of ints and "
                                 f"Nones; got {noise_shape!r}.") from None
            noise_shape = tuple(None if n is None else check_int(n, "noise_shape", "Dropout")
                                for n in noise_shape)
        self.rate = float(rate)
        self.noise_shape = noise_shape
        self.seed = seed
        if seed is not None:
            self._seed = int(seed) % (1 << 64)
        else:   # the next child of the global seed (the n-th after set_random_seed is fixed)
            self._seed = int(_backend.make_generator(None).integers(
                0, 1 << 64, dtype=np.uint64))
        self._step = 0     # training calls so far: the next call's Philox counter

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training or self.rate == 0:
            self._drop_call = None
            return x
        call = (self._seed, self._step % (1 << 64))
        self._step += 1
        self._drop_call = call
        return _ops.dropout(x, self.rate, call[0], call[1], self.noise_shape)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        # d(dropout)/dx is the same mask: dropout of dy with the forward's (seed, step)
        call = self.__dict__.get("_drop_call")
        if call is None:
            return dy
        return _ops.dropout(dy, self.rate, call[0], call[1], self.noise_shape)

    def __setstate__(self, state):
        # pickles made when Dropout held a NumPy generator (``_rng``) and drew masks from it:
        # the seed is drawn from that generator, so such a pickle still trains reproducibly
        rng = state.pop("_rng", None)
        if "_seed" not in state:
            state["_seed"] = int((rng if rng is not None else _backend.make_generator(None))
                                 .integers(0, 1 << 64, dtype=np.uint64))
            state["_step"] = 0
        state.setdefault("noise_shape", None)
        state.pop("_mask", None)
        super().__setstate__(state)

    def get_config(self) -> Config:
        cfg = super().get_config()
        cfg.update(rate=self.rate, seed=self.seed, noise_shape=self.noise_shape)
        return cfg


class Flatten(Layer):
    """Flattens each sample: ``(batch, d1, d2, ...)`` -> ``(batch, d1 * d2 * ...)``
    (row-major, the same order as Keras with channels_last)."""

    _transient = ("_xshape",)

    def __init__(self, data_format: Optional[str] = None, **kwargs):
        check_data_format(data_format)
        super().__init__(**kwargs)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (int(math.prod(input_shape)),)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._xshape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy.reshape(self._xshape)
