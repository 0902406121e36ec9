"""Pooling layers: MaxPooling2D, AveragePooling2D, GlobalMaxPooling2D, GlobalAveragePooling2D."""

from typing import Optional

import numpy as np

from .. import ops as _ops
from .._typing import Config, IntOrPair, Shape
from .._validation import normalize_padding_mode, normalize_pair
from .base import Layer, check_data_format
from .node import spatial_shape

__all__ = ["MaxPooling2D", "AveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling2D"]


class _Pooling2D(Layer):
    _transient = ("_x",)
    _op = _op_backward = None

    def __init__(self, pool_size: IntOrPair = (2, 2), strides: Optional[IntOrPair] = None,
                 padding: str = "valid", data_format: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        where = type(self).__name__
        self.pool_size = normalize_pair(pool_size, "pool_size", where)
        self.strides = (self.pool_size if strides is None
                        else normalize_pair(strides, "strides", where))
        self.padding = normalize_padding_mode(padding, where)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = self._image_shape(input_shape)
        try:     # a None size (known at call time) stays None; the other is checked now
            return spatial_shape(lambda s: _ops.conv_output_shape(
                s[:2], self.pool_size, self.strides, self.padding) + (c,), (h, w, c))
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__} {self.name!r}: input of spatial size {(h, w)} "
                             f"is too small for pool_size={self.pool_size} ({exc})") from None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self._x = x
        return getattr(_ops, self._op)(
            x, self.pool_size, strides=self.strides, padding=self.padding
        )

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return getattr(_ops, self._op_backward)(dy, self._x, self.pool_size, strides=self.strides,
                                                  padding=self.padding)

    def get_config(self) -> Config:
        cfg = super().get_config()
        cfg.update(pool_size=tuple(self.pool_size), strides=tuple(self.strides),
                   padding=self.padding)
        return cfg


class MaxPooling2D(_Pooling2D):
    """Max over ``pool_size`` windows moved by ``strides`` (default: ``pool_size``).

    Padded cells ("same") never win. The gradient goes to the first maximum of each
    window in row-major order, as TensorFlow does.

    Input shape: ``(batch, h, w, c)``; output ``(batch, oh, ow, c)`` with ``oh`` as Conv2D.
    """

    _op, _op_backward = "max_pool2d", "max_pool2d_backward"


class AveragePooling2D(_Pooling2D):
    """Mean over ``pool_size`` windows; with "same" padding each window is divided by
    its number of real (unpadded) cells, as TensorFlow does. Shapes as MaxPooling2D."""

    _op, _op_backward = "avg_pool2d", "avg_pool2d_backward"


class _GlobalPooling2D(Layer):
    _transient = ("_x", "_y")

    def __init__(self, data_format: Optional[str] = None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        c = self._image_shape(input_shape)[2]
        return (1, 1, c) if self.keepdims else (c,)

    def get_config(self) -> Config:
        cfg = super().get_config()
        cfg["keepdims"] = self.keepdims
        return cfg


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over height and width: ``(batch, h, w, c)`` -> ``(batch, c)``
    (``(batch, 1, 1, c)`` with ``keepdims=True``)."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self._x = x
        n, h, w, c = x.shape
        # summed in float64 (a float32 sum over h x w adds the cells one after another)
        y = (_ops.channel_sum(x, per_sample=True) / (h * w)).astype(x.dtype)
        return y.reshape(n, 1, 1, c) if self.keepdims else y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        n, h, w, c = self._x.shape
        g = dy.reshape(n, 1, 1, c) * dy.dtype.type(1.0 / (h * w))
        return np.broadcast_to(g, self._x.shape).copy()


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Max over height and width: ``(batch, h, w, c)`` -> ``(batch, c)``.

    The gradient is shared equally among tied maxima, as ``tf.reduce_max``'s is.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        y = x.max(axis=(1, 2), keepdims=True)
        if training:
            self._x, self._y = x, y
        return y if self.keepdims else y.reshape(x.shape[0], x.shape[3])

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x = self._x
        n, c = x.shape[0], x.shape[3]
        mask = (x == self._y).astype(x.dtype)
        mask /= mask.sum(axis=(1, 2), keepdims=True)
        return mask * dy.reshape(n, 1, 1, c)
