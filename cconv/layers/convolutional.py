"""Conv2D: 2-D convolution (cross-correlation, as Keras) on the compiled core."""

from typing import Optional, Union

import numpy as np

from .. import ops as _ops
from .._typing import Config, IntOrPair, Shape
from .._validation import check_int, normalize_padding_mode, normalize_pair
from ..activations import Activation
from ..initializers import Initializer
from .base import check_data_format
from .core import _ActivatedLayer
from .node import spatial_shape

__all__ = ["Conv2D"]


class Conv2D(_ActivatedLayer):
    """2-D convolution layer, Keras 3's ``Conv2D`` in NHWC.

    Args:
        filters: number of output channels.
        kernel_size: int or ``(kh, kw)``.
        strides: int or ``(sh, sw)``; default 1.
        padding: "valid" (no padding) or "same" (output ``ceil(n / s)``, the extra padded
            row/column at the bottom/right as TensorFlow does).
        dilation_rate: int or ``(dh, dw)``.
        groups: split the input channels into ``groups`` groups, each convolved with
            ``filters // groups`` filters. ``filters`` and the input channels must be
            divisible by ``groups``.
        activation: name or activation object (default: linear).
        use_bias: add a bias per filter.
        kernel_initializer, bias_initializer: names or initializer objects.
        kernel_regularizer, bias_regularizer: None, a name ("l1", "l2", "l1_l2") or a
            :mod:`cconv.regularizers` object; its penalty joins the loss.

    Input shape: ``(batch, height, width, channels)``.
    Output shape: ``(batch, new_height, new_width, filters)``.
    Weights: kernel ``(kh, kw, channels // groups, filters)``, bias ``(filters,)``.

    Raises:
        ValueError: a non-positive size, indivisible groups, or an input too small for the
            (dilated) kernel with "valid" padding.
    """

    _weight_names = ("kernel", "bias")
    _trainable_names = ("kernel", "bias")

    def __init__(self, filters: int, kernel_size: IntOrPair, strides: IntOrPair = 1,
                 padding: str = "valid", data_format: Optional[str] = None,
                 dilation_rate: IntOrPair = 1, groups: int = 1,
                 activation: Union[str, Activation, None] = None, use_bias: bool = True,
                 kernel_initializer: Union[str, Initializer] = "glorot_uniform",
                 bias_initializer: Union[str, Initializer] = "zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.filters = check_int(filters, "filters", "Conv2D")
        self.kernel_size = normalize_pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = normalize_pair(strides, "strides", "Conv2D")
        self.padding = normalize_padding_mode(padding, "Conv2D")
        self.dilation_rate = normalize_pair(dilation_rate, "dilation_rate", "Conv2D")
        self.groups = check_int(groups, "groups", "Conv2D")
        if self.filters % self.groups:
            raise ValueError(
                f"Conv2D: filters must be divisible by groups; got filters={self.filters}, "
                f"groups={self.groups}."
            )
        self._set_kernel_args(activation, use_bias, kernel_initializer, bias_initializer,
                              kernel_regularizer, bias_regularizer)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = self._image_shape(input_shape)
        if c % self.groups:
            raise ValueError(
                f"Conv2D {self.name!r}: input channels ({c}) must be divisible by "
                f"groups ({self.groups})."
            )
        try:     # a None size (known at call time) stays None; the other is checked now
            return spatial_shape(lambda s: _ops.conv_output_shape(
                s[:2], self.kernel_size, self.strides, self.padding, self.dilation_rate)
                + (self.filters,), (h, w, c))
        except ValueError as exc:
            raise ValueError(f"Conv2D {self.name!r}: input of spatial size {(h, w)} is too small "
                             f"({exc})") from None

    def _build(self, input_shape):
        kh, kw = self.kernel_size
        self.kernel = self.kernel_initializer(
            (kh, kw, input_shape[-1] // self.groups, self.filters), self.dtype
        )
        if self.use_bias:
            self.bias = self.bias_initializer((self.filters,), self.dtype)

    def _linear(self, x, training):
        if training:
            self._x = x
        return _ops.conv2d(x, self.kernel, self.bias, strides=self.strides, padding=self.padding,
                             dilation_rate=self.dilation_rate, groups=self.groups)

    def backward_logits(self, dz: np.ndarray) -> np.ndarray:
        dx, dk, db = _ops.conv2d_backward(dz, self._x, self.kernel, strides=self.strides,
                                             padding=self.padding, dilation_rate=self.dilation_rate,
                                             groups=self.groups,
                                             input_grad=self.compute_input_gradient)
        self._set_grads(dk, db)
        return dx

    def get_config(self) -> Config:
        cfg = super().get_config()
        cfg.update(
            filters=self.filters,
            kernel_size=tuple(self.kernel_size),
            strides=tuple(self.strides),
            padding=self.padding,
            dilation_rate=tuple(self.dilation_rate),
            groups=self.groups,
            **self._kernel_config(),
        )
        return cfg
