"""Conv2D: 2-D convolution (cross-correlation, as Keras) on the compiled core."""

import numpy as np

from .. import activations as _activations
from .. import initializers as _initializers
from .base import check_data_format, normalize_padding, normalize_tuple
from .core import _ActivatedLayer

__all__ = ["Conv2D"]


def _ops():
    from .. import ops
    return ops


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

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters <= 0:
            raise ValueError(f"Conv2D: filters must be a positive int; got filters={filters!r}.")
        self.filters = int(filters)
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size")
        self.strides = normalize_tuple(strides, 2, "strides")
        self.padding = normalize_padding(padding)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate")
        if not isinstance(groups, (int, np.integer)) or groups <= 0:
            raise ValueError(f"Conv2D: groups must be a positive int; got groups={groups!r}.")
        self.groups = int(groups)
        if self.filters % self.groups:
            raise ValueError(
                f"Conv2D: filters must be divisible by groups; got filters={self.filters}, "
                f"groups={self.groups}."
            )
        self._set_activation(activation)
        self._set_regularizers(kernel_regularizer, bias_regularizer)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel = self.bias = None

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"Conv2D {self.name!r} expects samples of shape (height, width, channels); "
                f"got sample shape {tuple(input_shape)}."
            )
        h, w, c = input_shape
        if c % self.groups:
            raise ValueError(
                f"Conv2D {self.name!r}: input channels ({c}) must be divisible by "
                f"groups ({self.groups})."
            )
        try:
            oh, ow = _ops().conv_output_shape((h, w), self.kernel_size, self.strides, self.padding,
                                              self.dilation_rate)
        except ValueError as exc:
            raise ValueError(f"Conv2D {self.name!r}: input of spatial size {(h, w)} is too small "
                             f"({exc})") from None
        return (oh, ow, self.filters)

    def _build(self, input_shape):
        kh, kw = self.kernel_size
        self.kernel = self.kernel_initializer((kh, kw, input_shape[-1] // self.groups, self.filters), self.dtype)
        if self.use_bias:
            self.bias = self.bias_initializer((self.filters,), self.dtype)

    def _linear(self, x, training):
        if training:
            self._x = x
        return _ops().conv2d(x, self.kernel, self.bias, strides=self.strides, padding=self.padding,
                             dilation_rate=self.dilation_rate, groups=self.groups)

    def backward_logits(self, dz):
        dx, dk, db = _ops().conv2d_backward(dz, self._x, self.kernel, strides=self.strides,
                                             padding=self.padding, dilation_rate=self.dilation_rate,
                                             groups=self.groups, input_grad=self._need_dx)
        if self.trainable:
            self.grads["kernel"][...] = dk
            if self.bias is not None:
                self.grads["bias"][...] = db
        return dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=list(self.kernel_size), strides=list(self.strides),
                   padding=self.padding, dilation_rate=list(self.dilation_rate), groups=self.groups,
                   activation=_activations.serialize(self.activation), use_bias=self.use_bias,
                   kernel_initializer=_initializers.serialize(self.kernel_initializer),
                   bias_initializer=_initializers.serialize(self.bias_initializer),
                   **self._regularizer_config())
        return cfg
