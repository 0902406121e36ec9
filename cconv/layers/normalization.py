"""BatchNormalization over the channel (last) axis, Keras 3 semantics."""

from typing import Union

import numpy as np

from .. import initializers as _initializers
from .. import ops as _ops
from .._typing import Config, Shape
from ..initializers import Initializer
from .base import Layer

__all__ = ["BatchNormalization"]


class BatchNormalization(Layer):
    """Normalises each channel: ``gamma * (x - mean) / sqrt(var + epsilon) + beta``.

    In training (``fit``, or ``layer(x, training=True)``) ``mean``/``var`` are the batch's
    (biased variance over every axis but the last), and the moving statistics are updated::

        moving_mean = moving_mean * momentum + mean * (1 - momentum)
        moving_variance = moving_variance * momentum + var * (1 - momentum)

    At inference (``predict``, ``evaluate``) the moving statistics are used. A layer with
    ``trainable=False`` always runs in inference mode, as in Keras 3.

    Args:
        axis: -1 only (channels_last).
        momentum: default 0.99. epsilon: default 1e-3.
        center, scale: whether ``beta`` / ``gamma`` exist.

    Input shape: any, ``(batch, ..., channels)``; output shape: the same.
    Weights (Keras order): gamma, beta (trainable), moving_mean, moving_variance, each
    ``(channels,)``.
    """

    _weight_names = ("gamma", "beta", "moving_mean", "moving_variance")
    _trainable_names = ("gamma", "beta")
    _transient = ("_x", "_mean", "_rstd", "_mode")

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True,
                 beta_initializer: Union[str, Initializer] = "zeros",
                 gamma_initializer: Union[str, Initializer] = "ones",
                 moving_mean_initializer: Union[str, Initializer] = "zeros",
                 moving_variance_initializer: Union[str, Initializer] = "ones", **kwargs):
        super().__init__(**kwargs)
        if axis not in (-1, [-1], (-1,)):
            raise ValueError(
                f"BatchNormalization: only axis=-1 (channels_last) is supported; got axis={axis!r}."
            )
        if not 0 <= momentum <= 1:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1]; got {momentum!r}.")
        if epsilon <= 0:
            raise ValueError(f"BatchNormalization: epsilon must be positive; got {epsilon!r}.")
        self.axis = -1
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = _initializers.get(beta_initializer)
        self.gamma_initializer = _initializers.get(gamma_initializer)
        self.moving_mean_initializer = _initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = _initializers.get(moving_variance_initializer)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) < 1:
            raise ValueError(f"BatchNormalization {self.name!r} needs inputs of rank >= 2.")
        return tuple(input_shape)

    def _build(self, input_shape):
        c = (input_shape[-1],)
        if self.scale:
            self.gamma = self.gamma_initializer(c, self.dtype)
        if self.center:
            self.beta = self.beta_initializer(c, self.dtype)
        self.moving_mean = self.moving_mean_initializer(c, self.dtype)
        self.moving_variance = self.moving_variance_initializer(c, self.dtype)

    def inference_scale_offset(self):
        """``(inv, off)``, per channel, such that inference computes ``x * inv + off``:
        TensorFlow's form, ``inv = gamma / sqrt(moving_variance + epsilon)`` and
        ``off = beta - moving_mean * inv``, in the layer's dtype. The one place this fold is
        written: the layer's inference forward and exporters use it."""
        t = np.dtype(self.moving_variance.dtype).type
        inv = 1.0 / np.sqrt(self.moving_variance + t(self.epsilon))
        if self.gamma is not None:
            inv = inv * self.gamma
        off = -self.moving_mean * inv
        if self.beta is not None:
            off = off + self.beta
        return inv, off

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        training = training and self.trainable
        if training:
            # ops.batch_norm_train: statistics summed in float64 (a float32 sum over batch x
            # height x width loses ~1e-5 of the mean), the variance that of x centred on the
            # mean rounded to x's dtype, corrected by the rounding; float64 is the plain
            # two-pass ``mean((x - mean) ** 2)``, bit for bit.
            y, mean, var, rstd = _ops.batch_norm_train(x, self.gamma, self.beta, self.epsilon)
            mom = np.float64(self.momentum)     # the update in float64, rounded once
            self.moving_mean[...] = self.moving_mean * mom + mean * (1.0 - mom)
            self.moving_variance[...] = self.moving_variance * mom + var * (1.0 - mom)
            self._x, self._mean, self._rstd, self._mode = x, mean, rstd, "train"
            return y
        inv, off = self.inference_scale_offset()
        self._rstd, self._mode = inv, "infer"
        return x * inv + off

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """``dx = gamma * rstd / m * (m * dy - dbeta - xhat * dgamma)`` with ``m`` the values
        per channel; ``dbeta = sum(dy)`` and ``dgamma = sum(dy * xhat)`` are summed in float64
        (``ops.batch_norm_backward``): the bracket cancels, so their float32 rounding errors,
        not those of a naive float32 sum, are what it amplifies."""
        if self._mode == "infer":
            return dy * self._rstd
        dx, dgamma, dbeta = _ops.batch_norm_backward(dy, self._x, self._mean, self._rstd,
                                                     self.gamma, self.beta)
        if self.trainable:
            if self.gamma is not None:
                self.grads["gamma"][...] = dgamma
            if self.beta is not None:
                self.grads["beta"][...] = dbeta
        return dx

    def get_config(self) -> Config:
        cfg = super().get_config()
        ser = _initializers.serialize
        cfg.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center,
                   scale=self.scale, beta_initializer=ser(self.beta_initializer),
                   gamma_initializer=ser(self.gamma_initializer),
                   moving_mean_initializer=ser(self.moving_mean_initializer),
                   moving_variance_initializer=ser(self.moving_variance_initializer))
        return cfg
