"""Shape layers: ZeroPadding2D, Cropping2D, UpSampling2D, Reshape, Permute, and Rescaling.

Each works on one input, NHWC, with Keras 3's arguments and numbers. None has weights.
"""

import math
import numbers

import numpy as np

from .. import ops as _ops
from .._validation import normalize_pair
from .base import Layer, check_data_format
from .node import spatial_shape

__all__ = ["ZeroPadding2D", "Cropping2D", "UpSampling2D", "Reshape", "Permute", "Rescaling"]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _amounts(value, arg_name, layer):
    """An int, ``(sym_h, sym_w)`` or ``((top, bottom), (left, right))`` -> the last form."""
    if _is_int(value):
        value = ((value, value), (value, value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        value = ((value[0], value[0]), (value[1], value[1]))
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ValueError(f"{layer}: {arg_name} must be an int, a pair of ints or a pair of pairs "
                         f"((top, bottom), (left, right)); got {arg_name}={value!r}.")
    return tuple(normalize_pair(v, arg_name, layer, minimum=0) for v in value)


def _pad(a, amounts):
    """``a`` (n, h, w, c) inside zeros: ``(n, top + h + bottom, left + w + right, c)`` for
    ``amounts`` ``((top, bottom), (left, right))``; what ``_crop`` removes, put back."""
    (t, b), (l, r) = amounts
    n, h, w, c = a.shape
    out = np.zeros((n, h + t + b, w + l + r, c), dtype=a.dtype)
    out[:, t:t + h, l:l + w] = a
    return out


def _crop(a, amounts):
    """``a`` (n, h, w, c) without its edges: ``(n, h - top - bottom, w - left - right, c)``,
    C-contiguous, for ``amounts`` ``((top, bottom), (left, right))``."""
    (t, b), (l, r) = amounts
    return np.ascontiguousarray(a[:, t:a.shape[1] - b, l:a.shape[2] - r])


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each image (Keras's ``ZeroPadding2D``).

    Args:
        padding: int (all sides), ``(sym_h, sym_w)`` or ``((top, bottom), (left, right))``,
            non-negative.

    Input shape: ``(batch, h, w, c)``. Output shape: ``(batch, top + h + bottom,
    left + w + right, c)``.
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.padding = _amounts(padding, "padding", "ZeroPadding2D")

    def compute_output_shape(self, input_shape):
        (t, b), (l, r) = self.padding
        self._image_shape(input_shape)
        return spatial_shape(lambda s: (s[0] + t + b, s[1] + l + r, s[2]), input_shape)

    def forward(self, x, training=False):
        return _pad(x, self.padding)

    def backward(self, dy):
        return _crop(dy, self.padding)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(padding=tuple(tuple(p) for p in self.padding), data_format="channels_last")
        return cfg


class Cropping2D(Layer):
    """Removes rows and columns at the edges of each image (Keras's ``Cropping2D``).

    Args:
        cropping: int (all sides), ``(sym_h, sym_w)`` or ``((top, bottom), (left, right))``,
            non-negative and smaller than the image together.

    Input shape: ``(batch, h, w, c)``. Output shape: ``(batch, h - top - bottom,
    w - left - right, c)``.
    """

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.cropping = _amounts(cropping, "cropping", "Cropping2D")

    def compute_output_shape(self, input_shape):
        (t, b), (l, r) = self.cropping
        h, w, c = self._image_shape(input_shape)
        if (h is not None and t + b >= h) or (w is not None and l + r >= w):
            raise ValueError(
                f"Cropping2D {self.name!r}: cropping {self.cropping} removes all of an input of "
                f"height {h} and width {w}; use a smaller cropping."
            )
        return spatial_shape(lambda s: (s[0] - t - b, s[1] - l - r, c), input_shape)

    def forward(self, x, training=False):
        return _crop(x, self.cropping)

    def backward(self, dy):
        return _pad(dy, self.cropping)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(cropping=tuple(tuple(p) for p in self.cropping), data_format="channels_last")
        return cfg


class UpSampling2D(Layer):
    """Upsamples each image by integer factors (Keras's ``UpSampling2D``).

    Args:
        size: int or ``(size_h, size_w)``: the factors.
        interpolation: ``"nearest"`` (repeat rows and columns) or ``"bilinear"`` (half-pixel
            centers, edges clamped, as ``tf.image.resize``; float32 matches TensorFlow bit for
            bit, float64 is computed in float64 where Keras computes in float32).

    Input shape: ``(batch, h, w, c)``. Output shape: ``(batch, h * size_h, w * size_w, c)``.
    """

    _transient = ("_x",)

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)
        self.size = normalize_pair(size, "size", "UpSampling2D")
        if not isinstance(interpolation, str) or interpolation.lower() not in ("nearest",
                                                                                "bilinear"):
            raise ValueError(
                f'UpSampling2D: interpolation must be "nearest" or "bilinear" (cconv does not '
                f"implement Keras's other methods); got interpolation={interpolation!r}."
            )
        self.interpolation = interpolation.lower()

    def compute_output_shape(self, input_shape):
        self._image_shape(input_shape)
        return spatial_shape(lambda s: (s[0] * self.size[0], s[1] * self.size[1], s[2]),
                             input_shape)

    def forward(self, x, training=False):
        if training:
            self._x = x
        return _ops.upsampling2d(x, self.size, self.interpolation)

    def backward(self, dy):
        return _ops.upsampling2d_backward(dy, self._x, self.size, self.interpolation)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(size=tuple(self.size), data_format="channels_last",
                   interpolation=self.interpolation)
        return cfg


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (Keras's ``Reshape``); one entry may be -1
    (inferred). Row-major order, as Keras with channels_last.

    Input shape: ``(batch, ...)``. Output shape: ``(batch,) + target_shape``.
    """

    _transient = ("_xshape",)

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            target = tuple(target_shape)
        except TypeError:
            raise TypeError(f"Reshape: target_shape must be a tuple of ints; "
                            f"got target_shape={target_shape!r}.") from None
        if not all(_is_int(d) and (d > 0 or d == -1) for d in target) or target.count(-1) > 1:
            raise ValueError(f"Reshape: target_shape must hold positive ints and at most one -1; "
                             f"got target_shape={target_shape!r}.")
        self.target_shape = tuple(int(d) for d in target)

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"Reshape {self.name!r}: cannot reshape samples of shape "
                                 f"{tuple(input_shape)} ({size} values) to {self.target_shape}.")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ValueError(f"Reshape {self.name!r}: target_shape {self.target_shape} holds "
                             f"{known} values but samples of shape {tuple(input_shape)} hold "
                             f"{size}.")
        return self.target_shape

    def forward(self, x, training=False):
        self._xshape = x.shape
        return x.reshape((x.shape[0],) + self._output_shape)

    def backward(self, dy):
        return dy.reshape(self._xshape)

    def get_config(self):
        cfg = super().get_config()
        cfg["target_shape"] = tuple(self.target_shape)
        return cfg


class Permute(Layer):
    """Permutes the axes of each sample (Keras's ``Permute``).

    Args:
        dims: a permutation of ``1 .. rank`` (axis 0, the batch, stays first), e.g.
            ``(2, 1)`` swaps the two axes of ``(batch, a, b)``.

    Output: a C-contiguous copy.
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        try:
            dims = tuple(dims)
        except TypeError:
            raise TypeError(f"Permute: dims must be a tuple of ints; got dims={dims!r}.") from None
        if not all(_is_int(d) for d in dims) or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Permute: dims must be a permutation of 1..{len(dims)} (the batch "
                             f"axis 0 cannot move); got dims={dims!r}.")
        self.dims = tuple(int(d) for d in dims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise ValueError(f"Permute {self.name!r}: dims {self.dims} need samples of rank "
                             f"{len(self.dims)}; got sample shape {tuple(input_shape)}.")
        return tuple(input_shape[d - 1] for d in self.dims)

    def forward(self, x, training=False):
        return np.ascontiguousarray(x.transpose((0,) + self.dims))

    def backward(self, dy):
        return np.ascontiguousarray(dy.transpose(np.argsort((0,) + self.dims)))

    def get_config(self):
        cfg = super().get_config()
        cfg["dims"] = tuple(self.dims)
        return cfg


class Rescaling(Layer):
    """``x * scale + offset`` (Keras's ``Rescaling``), e.g. ``Rescaling(1 / 255)``.

    Args:
        scale, offset: numbers, or arrays that broadcast against one sample without changing
            its shape (e.g. one value per channel).
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = self._value(scale, "scale")
        self.offset = self._value(offset, "offset")

    @staticmethod
    def _value(value, arg_name):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"Rescaling: {arg_name} must be a number or an array of numbers; "
                            f"got {arg_name}={value!r}.") from None
        return float(arr) if arr.ndim == 0 else arr

    def compute_output_shape(self, input_shape):
        known = tuple(1 << 20 if d is None else d for d in input_shape)   # None: any size
        for arg_name in ("scale", "offset"):
            shape = np.shape(getattr(self, arg_name))
            try:
                out = np.broadcast_shapes(known, shape)
            except ValueError:
                out = None
            if out != known:
                raise ValueError(f"Rescaling {self.name!r}: {arg_name} of shape {shape} does not "
                                 f"broadcast against samples of shape {tuple(input_shape)}.")
        return tuple(input_shape)

    def forward(self, x, training=False):
        t = x.dtype
        return x * np.asarray(self.scale, dtype=t) + np.asarray(self.offset, dtype=t)

    def backward(self, dy):
        return dy * np.asarray(self.scale, dtype=dy.dtype)

    def get_config(self):
        cfg = super().get_config()
        for arg_name in ("scale", "offset"):
            value = getattr(self, arg_name)
            cfg[arg_name] = value if isinstance(value, float) else value.tolist()
        return cfg
