"""Conv2DTranspose: the transposed 2-D convolution on the core's convolution kernels."""

import numpy as np

from .. import activations as _activations
from .. import initializers as _initializers
from .. import ops as _ops
from .._validation import normalize_padding_mode, normalize_pair
from .base import check_data_format
from .core import _ActivatedLayer
from .node import spatial_shape

__all__ = ["Conv2DTranspose"]


class Conv2DTranspose(_ActivatedLayer):
    """Transposed 2-D convolution layer, Keras 3's ``Conv2DTranspose`` in NHWC.

    Its forward pass is the input gradient of a convolution, its backward pass a forward
    convolution (input gradient) and that convolution's kernel gradient.

    Args:
        filters: number of output channels.
        kernel_size: int or ``(kh, kw)``.
        strides: int or ``(sh, sw)``; default 1.
        padding: "valid" or "same" (output ``input * strides`` without ``output_padding``).
        output_padding: None, int or ``(ph, pw)``, each smaller than the stride: the output
            grows by this many rows/columns (see ``cconv.ops.conv_transpose_output_shape``).
        dilation_rate: int or ``(dh, dw)``; as in Keras, not together with strides > 1.
        activation, use_bias, kernel_initializer, bias_initializer: as for ``Conv2D``.

    Input shape: ``(batch, height, width, channels)``.
    Output shape: ``(batch, new_height, new_width, filters)``.
    Weights: kernel ``(kh, kw, filters, channels)`` (Keras's layout), bias ``(filters,)``.

    Raises:
        ValueError: a non-positive size, output_padding not smaller than strides, strides and
            dilation both > 1, or an output_padding for which no output size fits (an even
            kernel with "same" padding and output_padding 0).
    """

    _weight_names = ("kernel", "bias")
    _trainable_names = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters <= 0:
            raise ValueError(f"Conv2DTranspose: filters must be a positive int; "
                             f"got filters={filters!r}.")
        self.filters = int(filters)
        self.kernel_size = normalize_pair(kernel_size, "kernel_size", "Conv2DTranspose")
        self.strides = normalize_pair(strides, "strides", "Conv2DTranspose")
        self.padding = normalize_padding_mode(padding, "Conv2DTranspose")
        self.dilation_rate = normalize_pair(dilation_rate, "dilation_rate", "Conv2DTranspose")
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = normalize_pair(output_padding, "output_padding",
                                                 "Conv2DTranspose", minimum=0)
            if any(p >= s for p, s in zip(self.output_padding, self.strides)):
                raise ValueError(
                    f"Conv2DTranspose: output_padding must be smaller than strides on each "
                    f"axis; got output_padding={self.output_padding}, strides={self.strides}."
                )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"Conv2DTranspose: strides > 1 cannot be combined with dilation_rate > 1 (as "
                f"in Keras); got strides={self.strides}, dilation_rate={self.dilation_rate}."
            )
        self._set_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel = self.bias = None

    def _geometry_args(self):
        return dict(strides=self.strides, padding=self.padding,
                    output_padding=self.output_padding, dilation_rate=self.dilation_rate)

    def compute_output_shape(self, input_shape):
        self._image_shape(input_shape)
        try:     # a None size (known at call time) stays None
            oh, ow, _ = spatial_shape(lambda s: _ops.conv_transpose_output_shape(
                s[:2], self.kernel_size, **self._geometry_args()) + (1,),
                tuple(input_shape[:2]) + (1,))
        except ValueError as exc:
            raise ValueError(f"Conv2DTranspose {self.name!r}: {exc}") from None
        return (oh, ow, self.filters)

    def _build(self, input_shape):
        kh, kw = self.kernel_size
        self.kernel = self.kernel_initializer((kh, kw, self.filters, input_shape[-1]), self.dtype)
        if self.use_bias:
            self.bias = self.bias_initializer((self.filters,), self.dtype)

    def _linear(self, x, training):
        if training:
            self._x = x
        return _ops.conv2d_transpose(x, self.kernel, self.bias, **self._geometry_args())

    def backward_logits(self, dz):
        dx, dk, db = _ops.conv2d_transpose_backward(dz, self._x, self.kernel,
                                                    input_grad=self.compute_input_gradient,
                                                    **self._geometry_args())
        if self.trainable:
            self.grads["kernel"][...] = dk
            if self.bias is not None:
                self.grads["bias"][...] = db
        return dx

    def get_config(self):
        cfg = super().get_config()
        out_pad = self.output_padding
        cfg.update(filters=self.filters, kernel_size=tuple(self.kernel_size),
                   strides=tuple(self.strides), padding=self.padding,
                   output_padding=None if out_pad is None else tuple(out_pad),
                   dilation_rate=tuple(self.dilation_rate),
                   activation=_activations.serialize(self.activation), use_bias=self.use_bias,
                   kernel_initializer=_initializers.serialize(self.kernel_initializer),
                   bias_initializer=_initializers.serialize(self.bias_initializer))
        return cfg
