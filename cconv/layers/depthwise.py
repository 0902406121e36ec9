"""DepthwiseConv2D and SeparableConv2D: grouped convolutions on the core's ``groups``.

A depthwise kernel ``(kh, kw, channels, depth_multiplier)`` (Keras's layout) is, reshaped in
place to ``(kh, kw, 1, channels * depth_multiplier)``, the kernel of a convolution with
``groups = channels``: output channel ``c * depth_multiplier + m`` reads input channel ``c``,
the order Keras uses.
"""

import numpy as np

from .. import activations as _activations
from .. import initializers as _initializers
from .. import ops as _ops
from .._validation import normalize_padding_mode, normalize_pair
from .base import check_data_format
from .core import _ActivatedLayer
from .node import spatial_shape

__all__ = ["DepthwiseConv2D", "SeparableConv2D"]


def _positive_int(value, arg_name, layer):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{layer}: {arg_name} must be a positive int; got {arg_name}={value!r}.")
    return int(value)


class _DepthwiseBase(_ActivatedLayer):
    """Arguments, output shape and the depthwise step shared by both layers."""

    def _init_depthwise(self, kernel_size, strides, padding, data_format, dilation_rate,
                        depth_multiplier, activation, use_bias, depthwise_initializer,
                        bias_initializer):
        layer = type(self).__name__
        check_data_format(data_format)
        self.kernel_size = normalize_pair(kernel_size, "kernel_size", layer)
        self.strides = normalize_pair(strides, "strides", layer)
        self.padding = normalize_padding_mode(padding, layer)
        self.dilation_rate = normalize_pair(dilation_rate, "dilation_rate", layer)
        self.depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier", layer)
        self._set_activation(activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = _initializers.get(depthwise_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)

    def _spatial_output(self, input_shape):
        self._image_shape(input_shape)
        try:     # a None size (known at call time) stays None
            return spatial_shape(lambda s: _ops.conv_output_shape(
                s[:2], self.kernel_size, self.strides, self.padding, self.dilation_rate) + (1,),
                tuple(input_shape[:2]) + (1,))[:2]
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__} {self.name!r}: input of spatial size "
                             f"{tuple(input_shape[:2])} is too small ({exc})") from None

    def _depthwise_args(self, kernel):
        """(kernel as a grouped-conv kernel, conv keyword arguments)."""
        kh, kw, c, m = kernel.shape
        return kernel.reshape(kh, kw, 1, c * m), dict(
            strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate,
            groups=c)

    def _depthwise_config(self):
        cfg = _ActivatedLayer.get_config(self)
        cfg.update(kernel_size=tuple(self.kernel_size), strides=tuple(self.strides),
                   padding=self.padding, dilation_rate=tuple(self.dilation_rate),
                   depth_multiplier=self.depth_multiplier,
                   activation=_activations.serialize(self.activation), use_bias=self.use_bias,
                   depthwise_initializer=_initializers.serialize(self.depthwise_initializer),
                   bias_initializer=_initializers.serialize(self.bias_initializer))
        return cfg


class DepthwiseConv2D(_DepthwiseBase):
    """Depthwise 2-D convolution, Keras 3's ``DepthwiseConv2D`` in NHWC: each input channel
    is convolved with its own ``depth_multiplier`` filters.

    Args:
        kernel_size: int or ``(kh, kw)``.
        strides, padding, dilation_rate: as for ``Conv2D`` (strides and dilation may be
            combined, as Keras does).
        depth_multiplier: filters per input channel.
        activation, use_bias: as for ``Conv2D``.
        depthwise_initializer, bias_initializer: names or initializer objects.

    Input shape: ``(batch, h, w, channels)``.
    Output shape: ``(batch, new_h, new_w, channels * depth_multiplier)``.
    Weights: kernel ``(kh, kw, channels, depth_multiplier)``, bias
    ``(channels * depth_multiplier,)``.
    """

    _weight_names = ("kernel", "bias")
    _trainable_names = ("kernel", "bias")

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self._init_depthwise(kernel_size, strides, padding, data_format, dilation_rate,
                             depth_multiplier, activation, use_bias, depthwise_initializer,
                             bias_initializer)
        self.kernel = self.bias = None

    def compute_output_shape(self, input_shape):
        oh, ow = self._spatial_output(input_shape)
        return (oh, ow, input_shape[2] * self.depth_multiplier)

    def _build(self, input_shape):
        kh, kw = self.kernel_size
        c, m = input_shape[-1], self.depth_multiplier
        self.kernel = self.depthwise_initializer((kh, kw, c, m), self.dtype)
        if self.use_bias:
            self.bias = self.bias_initializer((c * m,), self.dtype)

    def _linear(self, x, training):
        if training:
            self._x = x
        kernel, args = self._depthwise_args(self.kernel)
        return _ops.conv2d(x, kernel, self.bias, **args)

    def backward_logits(self, dz):
        kernel, args = self._depthwise_args(self.kernel)
        dx, dk, db = _ops.conv2d_backward(dz, self._x, kernel,
                                          input_grad=self.compute_input_gradient, **args)
        if self.trainable:
            self.grads["kernel"][...] = dk.reshape(self.kernel.shape)
            if self.bias is not None:
                self.grads["bias"][...] = db
        return dx

    def get_config(self):
        return self._depthwise_config()


class SeparableConv2D(_DepthwiseBase):
    """Depthwise separable 2-D convolution, Keras 3's ``SeparableConv2D`` in NHWC: a
    depthwise convolution (no bias) followed by a 1x1 convolution to ``filters`` channels.

    Args:
        filters: number of output channels.
        kernel_size, strides, padding, dilation_rate, depth_multiplier: of the depthwise step,
            as for ``DepthwiseConv2D``.
        activation, use_bias: as for ``Conv2D`` (bias and activation after the 1x1 step).
        depthwise_initializer, pointwise_initializer, bias_initializer: names or objects.

    Input shape: ``(batch, h, w, channels)``. Output shape: ``(batch, new_h, new_w, filters)``.
    Weights (Keras's order): depthwise_kernel ``(kh, kw, channels, depth_multiplier)``,
    pointwise_kernel ``(1, 1, channels * depth_multiplier, filters)``, bias ``(filters,)``.
    """

    _weight_names = ("depthwise_kernel", "pointwise_kernel", "bias")
    _trainable_names = ("depthwise_kernel", "pointwise_kernel", "bias")
    _transient = _DepthwiseBase._transient + ("_mid",)

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters = _positive_int(filters, "filters", "SeparableConv2D")
        self._init_depthwise(kernel_size, strides, padding, data_format, dilation_rate,
                             depth_multiplier, activation, use_bias, depthwise_initializer,
                             bias_initializer)
        self.pointwise_initializer = _initializers.get(pointwise_initializer)
        self.depthwise_kernel = self.pointwise_kernel = self.bias = None

    def compute_output_shape(self, input_shape):
        oh, ow = self._spatial_output(input_shape)
        return (oh, ow, self.filters)

    def _build(self, input_shape):
        kh, kw = self.kernel_size
        c, m = input_shape[-1], self.depth_multiplier
        self.depthwise_kernel = self.depthwise_initializer((kh, kw, c, m), self.dtype)
        self.pointwise_kernel = self.pointwise_initializer((1, 1, c * m, self.filters),
                                                          self.dtype)
        if self.use_bias:
            self.bias = self.bias_initializer((self.filters,), self.dtype)

    def _linear(self, x, training):
        kernel, args = self._depthwise_args(self.depthwise_kernel)
        mid = _ops.conv2d(x, kernel, None, **args)
        if training:
            self._x, self._mid = x, mid
        return _ops.conv2d(mid, self.pointwise_kernel, self.bias)

    def backward_logits(self, dz):
        dmid, dpk, db = _ops.conv2d_backward(dz, self._mid, self.pointwise_kernel)
        kernel, args = self._depthwise_args(self.depthwise_kernel)
        dx, ddk, _ = _ops.conv2d_backward(dmid, self._x, kernel,
                                          input_grad=self.compute_input_gradient, **args)
        if self.trainable:
            self.grads["depthwise_kernel"][...] = ddk.reshape(self.depthwise_kernel.shape)
            self.grads["pointwise_kernel"][...] = dpk
            if self.bias is not None:
                self.grads["bias"][...] = db
        return dx

    def get_config(self):
        cfg = self._depthwise_config()
        cfg.update(filters=self.filters,
                   pointwise_initializer=_initializers.serialize(self.pointwise_initializer))
        return cfg
