"""Preprocessing and augmentation layers, with Keras 3's names, arguments and defaults:
Resizing, CenterCrop, RandomCrop, RandomFlip, RandomRotation, RandomZoom,
RandomTranslation, RandomContrast, RandomBrightness and Normalization.

Images are NHWC batches, ``(batch, height, width, channels)``, of the layer's dtype
(float32 or float64); coordinates are in pixels, angles in degrees (Keras's factor is a
fraction of a full turn). None of these layers has trainable weights; Normalization keeps
its statistics as non-trainable weights (Keras's ``mean``, ``variance``, ``count``, in the
attributes ``adapt_mean``, ``adapt_variance``, ``count``).

Random layers (every ``Random*`` layer):

- change the input only in training (``forward(x, training=True)``, ``fit``, or a direct
  call ``layer(x)``, whose ``training`` defaults to True as in Keras); in inference
  (``predict``, ``evaluate``, ``layer(x, training=False)``) they return the input itself,
  except RandomCrop, which then crops the largest centered window of the target aspect ratio
  and resizes it (see its docstring);
- draw from one ``numpy.random.Generator`` per layer, seeded by ``seed``: two layers made
  with the same seed transform the same calls alike (the draws are NumPy's, so they differ
  from Keras's; the transforms, given the same draws, equal Keras's);
- expose Keras's two steps, ``get_random_transformation(images)`` (the draws, under Keras's
  dictionary keys) and ``transform_images(images, transformation)``.

Backward passes are exact: the flip, crop and resize gradients, and for the affine layers
(RandomRotation, RandomZoom, RandomTranslation) the adjoint of the sampling that ran
(TensorFlow registers, for ``ImageProjectiveTransformV3``, the inverse transform of the
gradient instead, which differs near the borders and for zooms). A model runs them only for
layers that a trainable layer precedes (``Model._plan_backward``); augmentation placed right
after the input costs no backward.

Work per pixel: bilinear resizing runs on the compiled kernels of ``UpSampling2D``
(``cconv/_ext/resample.pyx``: any sizes, TensorFlow's half-pixel rule, every thread);
the affine sampling, the flips, nearest resizing and the color layers are vectorised NumPy.
"""

import math
import numbers

import numpy as np

from .. import backend as _backend
from .. import ops as _ops
from .base import Layer, check_data_format

__all__ = ["Resizing", "CenterCrop", "RandomCrop", "RandomFlip", "RandomRotation",
           "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness",
           "Normalization"]

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("nearest", "bilinear")
_EPSILON = 1e-7          # keras.backend.epsilon(): Normalization's smallest standard deviation
_NO_FORWARD = object()


# ----- argument checks -------------------------------------------------------------------------
def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(value, arg, layer):
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or value < 1:
        raise ValueError(f"{layer}: {arg} must be a positive int (pixels); got {arg}={value!r}.")
    return int(value)


def _option(value, arg, layer, options):
    if not isinstance(value, str) or value.lower() not in options:
        raise ValueError(f"{layer}: {arg} must be one of {options}; got {arg}={value!r}.")
    return value.lower()


def _float(value, arg, layer):
    if not _is_number(value):
        raise ValueError(f"{layer}: {arg} must be a number; got {arg}={value!r}.")
    return float(value)


def _seed(value, layer):
    if value is not None and not (isinstance(value, numbers.Integral)
                                  and not isinstance(value, bool)):
        raise ValueError(f"{layer}: seed must be None or an int; got seed={value!r}.")
    return None if value is None else int(value)


def _factor(value, arg, layer, low, high, low_open=False):
    """Keras's factor rule: a number ``f`` gives ``(max(-|f|, low), |f|)``, a pair
    ``(a, b)`` gives ``(min, max)``; every number given must lie in ``[low, high]`` (``low``
    itself excluded with ``low_open``)."""
    bounds = f"{'(' if low_open else '['}{low}, {high}]"
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    ok = (len(items) == 2 if isinstance(value, (tuple, list)) else True) and all(
        _is_number(v) and (v > low if low_open else v >= low) and v <= high for v in items)
    if not ok:
        raise ValueError(f"{layer}: {arg} must be a number or a pair (lower, upper) of numbers "
                         f"in {bounds}; got {arg}={value!r}.")
    if isinstance(value, (tuple, list)):
        lower, upper = sorted(float(v) for v in value)
        return lower, upper
    f = abs(float(value))
    return max(-f, float(low)), f


def _as_given(factor):
    """A factor argument as Keras's config holds it (a pair as a tuple: JSON's lists back)."""
    return tuple(factor) if isinstance(factor, (tuple, list)) else factor


def _value_range(value, layer):
    if not (isinstance(value, (tuple, list)) and len(value) == 2
            and all(_is_number(v) for v in value)):
        raise ValueError(f"{layer}: value_range must be a pair (low, high) of numbers, e.g. "
                         f"(0, 255) or (0, 1); got value_range={value!r}.")
    return value


def _check_images(x, what, layer):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{layer}: {what} must be a batch of images (batch, height, width, "
                         f"channels); got an array of shape {x.shape}.")
    return x


# ----- resizing (TensorFlow's tf.image.resize, antialias=False) ---------------------------------
def _nearest_index(in_size, out_size):
    """The source row (or column) of each output one in nearest-neighbour resizing with
    half-pixel centers (TensorFlow's ResizeNearestNeighbor, float32 arithmetic, as for every
    dtype): ``min(floor((i + 0.5) * in / out), in - 1)``."""
    f = np.float32
    scale = f(in_size) / f(out_size)
    src = np.floor((np.arange(out_size, dtype=f) + f(0.5)) * scale).astype(np.int64)
    return np.clip(src, 0, in_size - 1)


def _sum_into(dy, index, size, axis):
    """The transpose of ``take(index, axis)``: ``dy``'s slices along ``axis`` summed into
    ``size`` slices (``index`` non-decreasing, as nearest resizing makes it)."""
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    shape = list(dy.shape)
    shape[axis] = size
    out = np.zeros(shape, dtype=dy.dtype)
    where = [slice(None)] * dy.ndim
    where[axis] = index[starts]
    out[tuple(where)] = np.add.reduceat(dy, starts, axis=axis)
    return out


def _resize(x, size, interpolation):
    """``x`` (n, h, w, c) resized to ``size`` = (out_h, out_w)."""
    n, h, w, c = x.shape
    oh, ow = size
    if (oh, ow) == (h, w):
        return x.copy()
    if interpolation == "nearest":
        return np.ascontiguousarray(
            x[:, _nearest_index(h, oh)][:, :, _nearest_index(w, ow)])
    x = np.ascontiguousarray(x)
    y = np.empty((n, oh, ow, c), dtype=x.dtype)
    if y.size:
        _ops._resample.bilinear_forward(x, y, *_ops._bilinear_table(h, oh, x.dtype),
                                        *_ops._bilinear_table(w, ow, x.dtype),
                                        _ops._threads(4 * y.size))
    return y


def _resize_backward(dy, in_hw, interpolation):
    """The gradient of :func:`_resize` for an input of ``in_hw`` = (h, w)."""
    n, oh, ow, c = dy.shape
    h, w = in_hw
    if (oh, ow) == (h, w):
        return dy.copy()
    if interpolation == "nearest":
        return _sum_into(_sum_into(dy, _nearest_index(h, oh), h, 1), _nearest_index(w, ow), w, 2)
    dy = np.ascontiguousarray(dy)
    dx = np.zeros((n, h, w, c), dtype=dy.dtype)
    if dy.size:
        _ops._resample.bilinear_backward(dy, dx, *_ops._bilinear_table(h, oh, dy.dtype),
                                         *_ops._bilinear_table(w, ow, dy.dtype),
                                         _ops._threads(4 * dy.size))
    return dx


class _Box:
    """A crop (``top``, ``left``, rows, columns: Python slicing, clipped to the image), an
    optional padding (``pad`` = (rows, columns) of ``fill`` added on both sides, after the
    crop) and a resize to ``size``: the three steps of Resizing, CenterCrop, RandomCrop and
    Keras's ``smart_resize``; :meth:`apply` runs them, :meth:`backward` their gradient."""

    def __init__(self, in_hw, top, left, rows, cols, size, interpolation="bilinear",
                 pad=(0, 0), fill=0.0):
        h, w = in_hw
        self.in_hw = in_hw
        self.t0, self.t1 = min(top, h), min(top + rows, h)
        self.l0, self.l1 = min(left, w), min(left + cols, w)
        self.pad, self.fill = pad, fill
        self.size, self.interpolation = tuple(size), interpolation

    def apply(self, x):
        y = x[:, self.t0:self.t1, self.l0:self.l1]
        ph, pw = self.pad
        if ph or pw:
            n, h, w, c = y.shape
            padded = np.full((n, h + 2 * ph, w + 2 * pw, c), self.fill, dtype=x.dtype)
            padded[:, ph:ph + h, pw:pw + w] = y
            y = padded
        return _resize(y, self.size, self.interpolation)

    def backward(self, dy):
        ph, pw = self.pad
        inner = (self.t1 - self.t0 + 2 * ph, self.l1 - self.l0 + 2 * pw)
        g = _resize_backward(dy, inner, self.interpolation)
        g = g[:, ph:inner[0] - ph, pw:inner[1] - pw]
        h, w = self.in_hw
        dx = np.zeros((dy.shape[0], h, w, dy.shape[3]), dtype=dy.dtype)
        dx[:, self.t0:self.t1, self.l0:self.l1] = g
        return dx


def _smart_box(in_hw, size):
    """Keras's ``smart_resize``: the largest centered window of the target aspect ratio
    (sizes by Python float division, as Keras for known shapes), resized bilinearly."""
    h, w = in_hw
    th, tw = size
    ch = max(min(h, int(float(w * th) / tw)), 1)
    cw = max(min(w, int(float(h * tw) / th)), 1)
    return _Box(in_hw, int(float(h - ch) / 2), int(float(w - cw) / 2), ch, cw, size)


# ----- affine sampling (TensorFlow's ImageProjectiveTransformV3) -------------------------------
def _map_coordinate(c, n, mode):
    """Input coordinates ``c`` (float array) along an axis of ``n`` pixels, mapped inside by
    ``fill_mode`` with TensorFlow's rules and arithmetic (``image_ops.h``: "reflect" is
    ``d c b a | a b c d | d c b a``, "wrap" ``a b c d | a b c d``, "nearest" clamps; then
    every mode but "constant" clamps to ``[0, n - 1]``)."""
    if mode == "constant":
        return c
    t = c.dtype.type
    if n <= 1:
        return np.zeros_like(c)
    if mode == "reflect":
        sz2 = 2 * n
        neg = c < 0
        cn = c[neg]
        cn = (sz2 * np.trunc(-cn / t(sz2)).astype(np.int64)).astype(c.dtype) + cn
        cn = np.where(cn < -n, cn + t(sz2), -cn - t(1))
        pos = c > n - 1
        cp = c[pos]
        cp = cp - (sz2 * np.trunc(cp / t(sz2)).astype(np.int64)).astype(c.dtype)
        cp = np.where(cp >= n, t(sz2) - cp - t(1), cp)
    elif mode == "wrap":
        sz = n - 1
        neg = c < 0
        cn = c[neg]
        cn = cn + (n * (np.trunc(-cn / t(sz)).astype(np.int64) + 1)).astype(c.dtype)
        pos = c > n - 1
        cp = c[pos]
        cp = cp - (n * np.trunc(cp / t(sz)).astype(np.int64)).astype(c.dtype)
    else:   # nearest
        return np.clip(c, t(0), t(n - 1))
    out = c.copy()
    out[neg] = cn
    out[pos] = cp
    return np.clip(out, t(0), t(n - 1))


class _Sampler:
    """Where each output pixel of an affine (projective) transform reads the input: Keras's
    8-number transforms ``(a0, a1, a2, b0, b1, b2, c0, c1)`` per image map output ``(x, y)``
    to input ``((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k)``, ``k = c0 x + c1 y + 1``;
    coordinates are mapped by ``fill_mode`` and read with ``interpolation``, by TensorFlow's
    rules: "nearest" rounds halves away from zero; "bilinear" weights the four neighbours as
    ``(y1 - y)((x1 - x) v00 + (x - x0) v01) + (y - y0)((x1 - x) v10 + (x - x0) v11)``, and
    each neighbour beyond the image reads ``fill_value`` (so with "constant" a point half a
    pixel outside blends the edge with it); ``k == 0`` gives ``fill_value``. Arithmetic in the
    images' dtype and in TensorFlow's order (float32: the same bits as TensorFlow's kernel)."""

    def __init__(self, transforms, shape, dtype, interpolation, fill_mode, fill_value):
        n, h, w, _ = shape
        t = np.dtype(dtype).type
        m = np.asarray(transforms, dtype=dtype).reshape(n, 8)
        a0, a1, a2, b0, b1, b2, c0, c1 = (m[:, i, None, None] for i in range(8))
        ox = np.arange(w, dtype=dtype)[None, None, :]
        oy = np.arange(h, dtype=dtype)[None, :, None]
        with np.errstate(all="ignore"):
            k = c0 * ox + c1 * oy + t(1)
            xs = (a0 * ox + a1 * oy + a2) / k
            ys = (b0 * ox + b1 * oy + b2) / k
            bad = (k == 0) | ~np.isfinite(xs) | ~np.isfinite(ys)
            xs = _map_coordinate(np.where(bad, t(0), xs), w, fill_mode)
            ys = _map_coordinate(np.where(bad, t(0), ys), h, fill_mode)
        self.bad = bad if bad.any() else None
        self.shape, self.fill_value = shape, fill_value
        # Indices into the image framed by one pixel of fill_value on every side: an index
        # beyond the image (any distance) reads the frame.
        stride = w + 2
        base = (np.arange(n, dtype=np.int64) * ((h + 2) * stride))[:, None, None]

        def index(yi, xi):
            rows = base + (np.clip(yi, -1, h).astype(np.int64) + 1) * stride
            rows += np.clip(xi, -1, w).astype(np.int64) + 1
            return rows.ravel()

        if interpolation == "nearest":
            self.index = [index(_round_half_away(ys), _round_half_away(xs))]
            self.weights = None
        else:
            x0, y0 = np.floor(xs), np.floor(ys)
            x1, y1 = x0 + t(1), y0 + t(1)
            i00 = index(y0, x0)
            if fill_mode == "constant":      # any neighbour may lie anywhere outside
                self.index = [i00, index(y0, x1), index(y1, x0), index(y1, x1)]
            else:                            # x0 in [0, w - 1]: x1 at most the frame
                self.index = [i00, i00 + 1, i00 + stride, i00 + (stride + 1)]
            self.weights = [(x1 - xs).ravel(), (xs - x0).ravel(),
                            (y1 - ys).ravel(), (ys - y0).ravel()]

    def _planes(self, x):
        """``x`` (n, h, w, c) as c planes of the framed images, ``(c, n * (h + 2) * (w + 2))``:
        each channel's gathers and arithmetic then run on contiguous vectors (3.5x faster
        than on ``(pixels, c)`` rows for c = 3, with the same operations in the same order)."""
        n, h, w, c = x.shape
        p = np.empty((c, n, h + 2, w + 2), dtype=x.dtype)
        p[:, :, 1:h + 1, 1:w + 1] = x.transpose(3, 0, 1, 2)
        p[:, :, [0, h + 1]] = self.fill_value
        p[:, :, 1:h + 1, [0, w + 1]] = self.fill_value
        return p.reshape(c, -1)

    def apply(self, x):
        n, h, w, c = x.shape
        planes = self._planes(x)
        out = np.empty((c, n * h * w), dtype=x.dtype)
        for ch in range(c):
            p = planes[ch]
            if self.weights is None:
                out[ch] = p.take(self.index[0])
                continue
            wx0, wx1, wy0, wy1 = self.weights
            i00, i01, i10, i11 = self.index
            top = wx0 * p.take(i00)
            top += wx1 * p.take(i01)
            top *= wy0
            bottom = wx0 * p.take(i10)
            bottom += wx1 * p.take(i11)
            bottom *= wy1
            top += bottom
            out[ch] = top
        y = np.ascontiguousarray(out.T).reshape(n, h, w, c)
        if self.bad is not None:
            y[self.bad] = self.fill_value
        return y

    def backward(self, dy):
        """The adjoint of :meth:`apply` (sums in float64, one ``bincount`` per channel)."""
        n, h, w, c = self.shape
        g = dy.reshape(-1, c)
        if self.bad is not None:
            g = np.where(self.bad.reshape(-1, 1), 0, g)
        size = n * (h + 2) * (w + 2)
        if self.weights is None:
            index, coeff = self.index[0], None
        else:
            wx0, wx1, wy0, wy1 = (v.astype(np.float64) for v in self.weights)
            index = np.concatenate(self.index)
            coeff = np.stack([wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1])
        dx = np.empty((c, n, h + 2, w + 2), dtype=dy.dtype)
        for ch in range(c):
            gc = g[:, ch].astype(np.float64)
            wts = gc if coeff is None else (coeff * gc).ravel()
            dx[ch] = np.bincount(index, weights=wts, minlength=size).reshape(n, h + 2, w + 2)
        return np.ascontiguousarray(dx[:, :, 1:h + 1, 1:w + 1].transpose(1, 2, 3, 0))


def _round_half_away(v):
    """``std::round``: to the nearest integer, halves away from zero (exact)."""
    a = np.abs(v)
    r = np.floor(a)
    r += (a - r) >= 0.5
    return np.copysign(r, v)


# ----- the shared base of the image layers ----------------------------------------------------
class _ImageLayer(Layer):
    """Image in, image out (NHWC); ``forward`` keeps in ``_cache`` what ``backward`` needs
    (None for the identity)."""

    _transient = ("_cache",)

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_data_format(data_format)

    def compute_output_shape(self, input_shape):
        return self._image_shape(input_shape)

    def backward(self, dy):
        cache = self.__dict__.get("_cache", _NO_FORWARD)
        if cache is _NO_FORWARD:
            raise RuntimeError(f"{type(self).__name__} {self.name!r}: backward needs a forward "
                               f"pass first.")
        return dy if cache is None else cache.backward(dy)

    def get_config(self):
        cfg = super().get_config()
        cfg["data_format"] = "channels_last"
        return cfg


class _RandomLayer(_ImageLayer):
    """A random augmentation: identity in inference; in training, draws from its own seeded
    generator (:meth:`get_random_transformation`) and applies the draw
    (:meth:`transform_images`). A direct call ``layer(x)`` is a training call, as in Keras."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.seed = _seed(seed, type(self).__name__)
        self._rng = _backend.make_generator(None if self.seed is None else self.seed % (1 << 64))

    def __call__(self, x, training=True):
        """Apply the layer to a batch; ``training`` defaults to True, as Keras's layers do
        when called directly (models pass their own mode)."""
        return super().__call__(x, training=training)

    def call(self, inputs, training=True):
        return self.forward(inputs, training=bool(training))

    def forward(self, x, training=False):
        if not training:
            self._cache = None
            return x
        y, self._cache = self._transform(x, self._draw(x.shape, self._rng))
        return y

    def get_random_transformation(self, data, training=True, seed=None):
        """Keras's first step: the random draw for the batch ``data`` (n, h, w, c), as a
        dict under Keras's keys (see each layer), or None when not ``training``. ``seed``:
        draw from a fresh generator seeded so instead of the layer's own."""
        if not training:
            return None
        data = _check_images(data, "data", type(self).__name__)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        return self._draw(data.shape, rng)

    def transform_images(self, images, transformation, training=True):
        """Keras's second step: ``images`` (n, h, w, c) transformed by ``transformation``
        (from :meth:`get_random_transformation`, or made by hand with the same keys);
        ``images`` themselves (cast to the layer's dtype) when not ``training`` or
        ``transformation`` is None."""
        images = _check_images(images, "images", type(self).__name__).astype(self.dtype,
                                                                            copy=False)
        if not training or transformation is None:
            return images
        return self._transform(images, transformation)[0]

    def _uniform(self, rng, low, high, shape):
        """Keras's ``uniform(shape, minval, maxval)`` from ``rng``, in the layer's dtype."""
        return (low + (high - low) * rng.random(shape)).astype(self.dtype)

    def get_config(self):
        cfg = super().get_config()
        cfg["seed"] = self.seed
        return cfg


class _AffineLayer(_RandomLayer):
    """RandomRotation, RandomZoom, RandomTranslation: one affine transform per image,
    sampled by :class:`_Sampler`."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        name = type(self).__name__
        self.fill_mode = _option(fill_mode, "fill_mode", name, _FILL_MODES)
        self.interpolation = _option(interpolation, "interpolation", name, _INTERPOLATIONS)
        self.fill_value = _float(fill_value, "fill_value", name)

    def _matrix(self, transformation, shape):
        raise NotImplementedError

    def _transform(self, x, transformation):
        sampler = _Sampler(self._matrix(transformation, x.shape), x.shape, x.dtype,
                           self.interpolation, self.fill_mode, self.fill_value)
        return sampler.apply(x), sampler

    def get_config(self):
        cfg = super().get_config()
        cfg.update(fill_mode=self.fill_mode, fill_value=self.fill_value,
                   interpolation=self.interpolation)
        return cfg


# ----- deterministic image layers ---------------------------------------------------------------
class Resizing(_ImageLayer):
    """Resizes images to ``(height, width)`` (Keras's ``Resizing``; ``tf.image.resize`` with
    half-pixel centers and no antialiasing), in training and inference alike.

    Args:
        height, width: the output size in pixels (positive ints).
        interpolation: "bilinear" (default; the compiled kernels of UpSampling2D) or
            "nearest". Keras's "bicubic", "lanczos3", "lanczos5" and "area" are not
            implemented (ValueError).
        crop_to_aspect_ratio: first crop the largest centered window of the target aspect
            ratio (no distortion).
        pad_to_aspect_ratio: first pad the short side with ``fill_value`` to the target
            aspect ratio (Keras's rule: the same number of rows or columns on both sides).
        fill_mode: "constant" only (Keras's only mode).
        fill_value: the padding value (a number).
        antialias: False only (Keras's default).

    Input shape: ``(batch, h, w, c)``. Output shape: ``(batch, height, width, c)``.
    Backward: the exact gradient (the bilinear kernel's transpose; nearest sums the output
    pixels that read each input pixel).
    """

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0,
                 antialias=False, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height = _positive_int(height, "height", "Resizing")
        self.width = _positive_int(width, "width", "Resizing")
        if not isinstance(interpolation, str) or interpolation.lower() not in _INTERPOLATIONS:
            raise ValueError(f'Resizing: interpolation must be "bilinear" or "nearest" (cconv '
                             f"does not implement Keras's bicubic, lanczos or area resizing); "
                             f"got interpolation={interpolation!r}.")
        self.interpolation = interpolation.lower()
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio = bool(pad_to_aspect_ratio)
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError("Resizing: only one of crop_to_aspect_ratio and pad_to_aspect_ratio "
                             "can be True.")
        if fill_mode != "constant":
            raise ValueError(f'Resizing: fill_mode must be "constant" (Keras\'s only mode); got '
                             f"fill_mode={fill_mode!r}.")
        self.fill_mode = "constant"
        self.fill_value = _float(fill_value, "fill_value", "Resizing")
        if antialias:
            raise ValueError("Resizing: antialias=True is not implemented by cconv; use "
                             "antialias=False (Keras's default).")
        self.antialias = False

    def compute_output_shape(self, input_shape):
        h, w, c = self._image_shape(input_shape)
        return (self.height, self.width, c)

    def _box(self, in_hw):
        h, w = in_hw
        th, tw = self.height, self.width
        f = np.float32          # Keras's TensorFlow backend sizes the box in float32
        if self.crop_to_aspect_ratio:
            ch = max(min(h, int(f(w * th) / f(tw))), 1)
            cw = max(min(w, int(f(h * tw) / f(th))), 1)
            return _Box(in_hw, int(f(h - ch) / f(2)), int(f(w - cw) / f(2)), ch, cw,
                        (th, tw), self.interpolation)
        pad = (0, 0)
        if self.pad_to_aspect_ratio:
            ph = max(h, int(f(w * th) / f(tw)))
            pw = max(w, int(f(h * tw) / f(th)))
            pad = (int(f(ph - h) / f(2)), int(f(pw - w) / f(2)))
        return _Box(in_hw, 0, 0, h, w, (th, tw), self.interpolation, pad, self.fill_value)

    def forward(self, x, training=False):
        box = self._box(x.shape[1:3])
        self._cache = box
        return box.apply(x)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(height=self.height, width=self.width, interpolation=self.interpolation,
                   crop_to_aspect_ratio=self.crop_to_aspect_ratio,
                   pad_to_aspect_ratio=self.pad_to_aspect_ratio, fill_mode=self.fill_mode,
                   fill_value=self.fill_value, antialias=self.antialias)
        return cfg


class CenterCrop(_ImageLayer):
    """Crops the central ``(height, width)`` window of each image (Keras's ``CenterCrop``),
    in training and inference alike. Start row ``(h - height) // 2``, column
    ``(w - width) // 2``. An image smaller than the target on either axis is instead
    cropped to the largest centered window of the target aspect ratio and resized
    bilinearly (Keras's ``smart_resize``).

    Input shape: ``(batch, h, w, c)``. Output shape: ``(batch, height, width, c)``.
    """

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height = _positive_int(height, "height", "CenterCrop")
        self.width = _positive_int(width, "width", "CenterCrop")

    def compute_output_shape(self, input_shape):
        h, w, c = self._image_shape(input_shape)
        return (self.height, self.width, c)

    def forward(self, x, training=False):
        h, w = x.shape[1:3]
        size = (self.height, self.width)
        if h >= self.height and w >= self.width:
            box = _Box((h, w), (h - self.height) // 2, (w - self.width) // 2, *size, size)
        else:
            box = _smart_box((h, w), size)
        self._cache = box
        return box.apply(x)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(height=self.height, width=self.width)
        return cfg


# ----- random geometric layers -----------------------------------------------------------------
class RandomCrop(_RandomLayer):
    """Crops a random ``(height, width)`` window (Keras's ``RandomCrop``).

    Training: when the images are larger than the target on both axes, one window position
    per batch (Keras's rule: every image of the batch at the same place), top row uniform in
    ``0 .. h - height`` and left column in ``0 .. w - width``; otherwise Keras's fallback: a
    ``(height, width)`` slice at the corner of the centered window of the target aspect ratio,
    resized bilinearly when the slice is smaller.
    Inference: the largest centered window of the target aspect ratio, resized bilinearly to
    ``(height, width)`` (Keras's ``smart_resize``, as documented by Keras and done by Keras 2;
    Keras 3.15 returns the input uncropped there, whatever the output shape it declared).

    Args:
        height, width: the output size in pixels.
        seed: int or None.

    Transformation: ``(top, left)``.
    Input shape: ``(batch, h, w, c)``. Output shape: ``(batch, height, width, c)``.
    """

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.height = _positive_int(height, "height", "RandomCrop")
        self.width = _positive_int(width, "width", "RandomCrop")

    def compute_output_shape(self, input_shape):
        h, w, c = self._image_shape(input_shape)
        return (self.height, self.width, c)

    def forward(self, x, training=False):
        if training:
            return super().forward(x, training)
        box = _smart_box(x.shape[1:3], (self.height, self.width))
        self._cache = box
        return box.apply(x)

    def _draw(self, shape, rng):
        h, w = shape[1:3]
        if h > self.height and w > self.width:
            return (int(rng.integers(0, h - self.height + 1)),
                    int(rng.integers(0, w - self.width + 1)))
        ch = max(min(h, int(float(w * self.height) / self.width)), 1)
        cw = max(min(w, int(float(h * self.width) / self.height)), 1)
        return int(float(h - ch) / 2), int(float(w - cw) / 2)

    def _transform(self, x, transformation):
        top, left = (int(v) for v in transformation)
        box = _Box(x.shape[1:3], top, left, self.height, self.width, (self.height, self.width))
        return box.apply(x), box

    def get_config(self):
        cfg = super().get_config()
        cfg.update(height=self.height, width=self.width)
        return cfg


class _Flip:
    def __init__(self, flips, mode):
        self.flips, self.mode = flips, mode

    def apply(self, x):
        y = x.copy()
        f = self.flips
        if self.mode == "horizontal":
            y[f] = x[f, :, ::-1]
        elif self.mode == "vertical":
            y[f] = x[f, ::-1]
        else:
            y[f] = x[f, ::-1, ::-1]
        return y

    backward = apply     # a flip is its own transpose


class RandomFlip(_RandomLayer):
    """Flips images at random (Keras's ``RandomFlip``): each image with probability 1/2.

    Args:
        mode: "horizontal" (left-right), "vertical" (top-bottom) or
            "horizontal_and_vertical" (default; Keras's rule: one draw per image flips it
            both ways, or not at all).
        seed: int or None.

    Transformation: ``{"flips": bool array (n, 1, 1, 1)}``.
    Input and output shape: ``(batch, h, w, c)``.
    """

    _MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.mode = _option(mode, "mode", "RandomFlip", self._MODES)

    def _draw(self, shape, rng):
        return {"flips": (rng.random(shape[0]) <= 0.5).reshape(-1, 1, 1, 1),
                "input_shape": tuple(shape)}

    def _transform(self, x, transformation):
        flips = np.asarray(transformation["flips"], dtype=bool).reshape(-1)
        if flips.shape != (x.shape[0],):
            raise ValueError(f"RandomFlip: transformation['flips'] holds {flips.size} values for "
                             f"a batch of {x.shape[0]} images.")
        op = _Flip(flips, self.mode)
        return op.apply(x), op

    def get_config(self):
        cfg = super().get_config()
        cfg["mode"] = self.mode
        return cfg


class RandomRotation(_AffineLayer):
    """Rotates images at random about their center (Keras's ``RandomRotation``).

    Args:
        factor: a fraction of a full turn: a number ``f`` (angles uniform in ``[-f, f] x
            360`` degrees) or a pair ``(lower, upper)``, each in ``[-1, 1]``; positive angles
            turn counter-clockwise. ``factor=(0.25, 0.25)`` turns every image by 90 degrees.
        fill_mode: "reflect" (default), "wrap", "constant" or "nearest": how points outside
            the image are read (TensorFlow's rules).
        interpolation: "bilinear" (default) or "nearest".
        seed: int or None.
        fill_value: the value of points outside the image with ``fill_mode="constant"``.

    Transformation: ``{"angle": degrees (n,), "rotation_matrix": (n, 8)}`` (the matrix is
    Keras's, computed in the layer's dtype; only ``angle`` is read back).
    Input and output shape: ``(batch, h, w, c)``.
    """

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self.factor = _factor(factor, "factor", "RandomRotation", -1, 1)

    def _draw(self, shape, rng):
        angle = self._uniform(rng, self.factor[0] * 360.0, self.factor[1] * 360.0, shape[0])
        return {"angle": angle, "rotation_matrix": self._matrix({"angle": angle}, shape)}

    def _matrix(self, transformation, shape):
        """Keras's ``_compute_affine_matrix`` for a rotation about the center, step by step
        in the layer's dtype."""
        _, h, w, _ = shape
        t = np.dtype(self.dtype).type
        angle = np.asarray(transformation["angle"], dtype=self.dtype).reshape(-1)
        rad = angle * t(math.pi / 180.0)
        cx = t(0.5) * (t(w) - t(1))
        cy = t(0.5) * (t(h) - t(1))
        cos, sin = np.cos(rad), np.sin(rad)
        zero = np.zeros_like(cos)
        a2 = (cx - cx * cos) - cy * -sin
        b2 = (cy - cx * sin) - cy * cos
        return np.stack([cos, -sin, a2, sin, cos, b2, zero, zero], axis=1)

    def get_config(self):
        cfg = super().get_config()
        cfg["factor"] = tuple(self.factor)
        return cfg


class RandomZoom(_AffineLayer):
    """Zooms images at random about their center (Keras's ``RandomZoom``).

    Args:
        height_factor: a number ``f`` or a pair ``(lower, upper)`` in ``(-1, 1]``: the
            vertical zoom is ``1 + u``, ``u`` uniform in ``[lower, upper]`` (``[-f, f]``);
            positive values zoom out (the image shrinks), negative ones zoom in.
        width_factor: the same for the horizontal zoom, or None (default): the vertical
            zoom is used for both axes (aspect ratio kept).
        fill_mode, interpolation, seed, fill_value: as RandomRotation's.

    Transformation: ``{"height_zoom": (n, 1), "width_zoom": (n, 1)}``.
    Input and output shape: ``(batch, h, w, c)``.
    """

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self.height_factor = _as_given(height_factor)
        self.height_lower, self.height_upper = _factor(height_factor, "height_factor",
                                                       "RandomZoom", -1, 1, low_open=True)
        self.width_factor = _as_given(width_factor)
        if width_factor is not None:
            self.width_lower, self.width_upper = _factor(width_factor, "width_factor",
                                                         "RandomZoom", -1, 1, low_open=True)

    def _draw(self, shape, rng):
        n = shape[0]
        hz = self._uniform(rng, 1.0 + self.height_lower, 1.0 + self.height_upper, (n, 1))
        wz = hz if self.width_factor is None else self._uniform(
            rng, 1.0 + self.width_lower, 1.0 + self.width_upper, (n, 1))
        return {"height_zoom": hz, "width_zoom": wz, "input_shape": tuple(shape)}

    def _matrix(self, transformation, shape):
        """Keras's ``_get_zoom_matrix``: output ``(x, y)`` reads input
        ``(zx x + (w - 1) / 2 (1 - zx), zy y + (h - 1) / 2 (1 - zy))``."""
        _, h, w, _ = shape
        t = np.dtype(self.dtype).type
        zx = np.asarray(transformation["width_zoom"], dtype=self.dtype).reshape(-1)
        zy = np.asarray(transformation["height_zoom"], dtype=self.dtype).reshape(-1)
        x_off = ((t(w) - t(1)) / t(2)) * (t(1) - zx)
        y_off = ((t(h) - t(1)) / t(2)) * (t(1) - zy)
        zero = np.zeros_like(zx)
        return np.stack([zx, zero, x_off, zero, zy, y_off, zero, zero], axis=1)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(height_factor=self.height_factor, width_factor=self.width_factor)
        return cfg


class RandomTranslation(_AffineLayer):
    """Shifts images at random (Keras's ``RandomTranslation``).

    Args:
        height_factor: a number ``f`` or a pair ``(lower, upper)`` in ``[-1, 1]``, a
            fraction of the height: the vertical shift is ``u x height`` pixels, ``u``
            uniform in ``[lower, upper]`` (``[-f, f]``); positive values move the image down.
        width_factor: the same for the horizontal shift (positive: to the right).
        fill_mode, interpolation, seed, fill_value: as RandomRotation's.

    Transformation: ``{"translations": (n, 2)}``, ``(dx, dy)`` in pixels.
    Input and output shape: ``(batch, h, w, c)``.
    """

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self.height_factor = _as_given(height_factor)
        self.height_lower, self.height_upper = _factor(height_factor, "height_factor",
                                                       "RandomTranslation", -1, 1)
        self.width_factor = _as_given(width_factor)
        self.width_lower, self.width_upper = _factor(width_factor, "width_factor",
                                                     "RandomTranslation", -1, 1)

    def _draw(self, shape, rng):
        n, h, w, _ = shape
        t = np.dtype(self.dtype).type
        dy = self._uniform(rng, self.height_lower, self.height_upper, (n, 1)) * t(h)
        dx = self._uniform(rng, self.width_lower, self.width_upper, (n, 1)) * t(w)
        return {"translations": np.concatenate([dx, dy], axis=1), "input_shape": tuple(shape)}

    def _matrix(self, transformation, shape):
        """Keras's ``_get_translation_matrix``: output ``(x, y)`` reads input
        ``(x - dx, y - dy)``."""
        tr = np.asarray(transformation["translations"], dtype=self.dtype).reshape(-1, 2)
        one, zero = np.ones(len(tr), self.dtype), np.zeros(len(tr), self.dtype)
        return np.stack([one, zero, -tr[:, 0], zero, one, -tr[:, 1], zero, zero], axis=1)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(height_factor=self.height_factor, width_factor=self.width_factor)
        return cfg


# ----- random color layers -----------------------------------------------------------------------
class _Clip:
    """``clip(v, low, high)`` after a per-image affine map of the pixels; the gradient passes
    where ``low <= v <= high`` (TensorFlow's ``clip_by_value`` rule)."""

    def __init__(self, v, low, high):
        self.keep = (v >= low) & (v <= high)

    def mask(self, dy):
        return np.where(self.keep, dy, dy.dtype.type(0))


class _Contrast(_Clip):
    def __init__(self, v, low, high, factor, hw):
        super().__init__(v, low, high)
        self.factor, self.hw = factor, hw

    def backward(self, dy):
        g = self.mask(dy)
        mean_g = (_ops.channel_sum(g, per_sample=True) / self.hw)[:, None, None, :]
        f = self.factor.astype(np.float64)
        return (f * g + (1.0 - f) * mean_g).astype(dy.dtype)


class _Brightness(_Clip):
    def backward(self, dy):
        return self.mask(dy)


class RandomContrast(_RandomLayer):
    """Changes the contrast of images at random (Keras's ``RandomContrast``): each image
    gets one factor ``f``, and each pixel value becomes ``(x - mean) * f + mean``, ``mean``
    its channel's mean over the image (summed in float64), clipped to ``value_range``.

    Args:
        factor: a number or a pair in ``[0, 1]``, with Keras 3.15's rule: a number ``f``
            is the pair ``(0, f)`` and ``f`` is uniform in ``[1 - lower, 1 + upper]``, so
            ``factor=0.2`` gives ``[1, 1.2]`` and ``factor=(0.2, 0.2)`` gives ``[0.8, 1.2]``.
        value_range: ``(low, high)``, the range of the images' values (default ``(0, 255)``);
            outputs are clipped to it.
        seed: int or None.

    Transformation: ``{"contrast_factor": (n, 1, 1, 1)}``.
    Input and output shape: ``(batch, h, w, c)``.
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(factor, "factor", "RandomContrast", 0, 1)
        self.value_range = _as_given(_value_range(value_range, "RandomContrast"))
        if self.value_range[0] > self.value_range[1]:
            raise ValueError(f"RandomContrast: value_range must be (low, high) with low <= "
                             f"high; got value_range={value_range!r}.")

    def _draw(self, shape, rng):
        return {"contrast_factor": self._uniform(rng, 1.0 - self.factor[0],
                                                 1.0 + self.factor[1], (shape[0], 1, 1, 1))}

    def _transform(self, x, transformation):
        n, h, w, c = x.shape
        f = np.asarray(transformation["contrast_factor"], dtype=x.dtype).reshape(-1, 1, 1, 1)
        mean = (_ops.channel_sum(x, per_sample=True) / (h * w)).astype(x.dtype)
        mean = mean[:, None, None, :]
        v = (x - mean) * f + mean
        low, high = (x.dtype.type(b) for b in self.value_range)
        return np.clip(v, low, high), _Contrast(v, low, high, f, h * w)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(factor=tuple(self.factor), value_range=self.value_range)
        return cfg


class RandomBrightness(_RandomLayer):
    """Changes the brightness of images at random (Keras's ``RandomBrightness``): each
    image gets ``delta = u * (high - low)``, ``u`` uniform in ``factor``'s range, added to
    every value, then clipped to ``value_range``.

    Args:
        factor: a number ``f`` (the range ``[-f, f]``) or a pair ``(lower, upper)``, in
            ``[-1, 1]``: -1 makes an image black, 1 white.
        value_range: ``(low, high)`` (default ``(0, 255)``; kept sorted, as Keras does).
        seed: int or None.

    Transformation: ``{"rgb_delta": (n, 1, 1, 1)}``.
    Input and output shape: ``(batch, h, w, c)``.
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _factor(factor, "factor", "RandomBrightness", -1, 1)
        self.value_range = sorted(_value_range(value_range, "RandomBrightness"))

    def _draw(self, shape, rng):
        lo, hi = self.value_range
        u = self._uniform(rng, self.factor[0], self.factor[1], (shape[0], 1, 1, 1))
        return {"rgb_delta": (u * np.dtype(self.dtype).type(hi - lo)).astype(self.dtype)}

    def _transform(self, x, transformation):
        delta = np.asarray(transformation["rgb_delta"], dtype=x.dtype).reshape(-1, 1, 1, 1)
        v = x + delta
        low, high = (x.dtype.type(b) for b in self.value_range)
        return np.clip(v, low, high), _Brightness(v, low, high)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(factor=tuple(self.factor), value_range=list(self.value_range))
        return cfg


# ----- Normalization ---------------------------------------------------------------------------
def _batches(data):
    """``data`` as an iterator of arrays: one array, or Keras's iterables of batches (a
    ``PyDataset``/``Sequence``, a list or generator of arrays; an ``(x, y)`` batch gives x)."""
    if isinstance(data, np.ndarray) or (hasattr(data, "__array__")
                                        and not isinstance(data, (list, tuple))):
        yield np.asarray(data)
        return
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(
            data, (list, tuple)):
        items = (data[i] for i in range(len(data)))
    elif hasattr(data, "__iter__"):
        items = iter(data)
    else:
        raise TypeError(f"Normalization.adapt: data must be an array or an iterable of "
                        f"batches (arrays); got {type(data).__name__}.")
    for batch in items:
        if isinstance(batch, tuple):
            batch = batch[0]
        yield np.asarray(batch)


class Normalization(Layer):
    """Shifts and scales inputs to zero mean and unit variance (Keras's ``Normalization``):
    ``(x - mean) / max(sqrt(variance), 1e-7)``, or its inverse ``mean + x * max(sqrt(variance),
    1e-7)`` with ``invert=True``.

    Args:
        axis: the axis or axes (of the full input, batch axis 0 included, negative from the
            end) that keep their own mean and variance; the others are averaged over. -1
            (default) gives one per channel; None one for everything. The batch axis
            cannot be kept.
        mean, variance: given together, the statistics (numbers or arrays broadcast to the
            kept axes, aligned from the right); the layer then has no weights. Else they come
            from :meth:`adapt` (mean 0 and variance 1 until then).
        invert: apply the inverse transformation.

    Weights (non-trainable, Keras's order, without ``mean``/``variance`` arguments):
    ``mean`` and ``variance`` shaped like the kept axes, in the layer's dtype, and ``count``,
    an int64 scalar: the number of values each statistic was computed from (Keras 3.15 keeps
    it for old files and leaves it 0).

    Input and output shape: any ``(batch, ...)``.
    """

    _weight_names = ("adapt_mean", "adapt_variance", "count")

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis is None:
            axis = ()
        elif isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
            axis = (int(axis),)
        elif isinstance(axis, (tuple, list)) and all(
                isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis):
            axis = tuple(int(a) for a in axis)
        else:
            raise ValueError(f"Normalization: axis must be an int, a tuple of ints or None; got "
                             f"axis={axis!r}.")
        self.axis = axis
        if (mean is None) != (variance is None):
            raise ValueError(f"Normalization: mean and variance must be given together; got "
                             f"mean={mean!r} and variance={variance!r}.")
        if mean is not None:
            try:
                m = np.asarray(mean, dtype=np.float64)
                v = np.asarray(variance, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"Normalization: mean and variance must be numbers or arrays of "
                                 f"numbers; got mean={mean!r}, variance={variance!r}.") from None
            if m.shape != v.shape:
                raise ValueError(f"Normalization: mean and variance must have the same shape; "
                                 f"got mean shape {m.shape} and variance shape {v.shape}.")
            if m.ndim > len(self.axis):
                raise ValueError(f"Normalization: mean of shape {m.shape} has more axes than "
                                 f"axis={self.axis} keeps ({len(self.axis)}).")
            if np.any(v < 0):
                raise ValueError("Normalization: variance must be non-negative.")
        self.input_mean, self.input_variance = mean, variance
        self.invert = bool(invert)
        self.adapt_mean = self.adapt_variance = self.count = None

    def _axes(self, sample_shape):
        """(kept axes, reduced axes, broadcast shape) for inputs ``(batch,) + sample_shape``."""
        ndim = len(sample_shape) + 1
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(f"Normalization {self.name!r}: axis {self.axis} is out of range for "
                             f"inputs of shape {(None,) + tuple(sample_shape)} (ndim {ndim}).")
        keep = tuple(sorted({a % ndim for a in self.axis}))
        if 0 in keep:
            raise ValueError(f"Normalization {self.name!r}: axis {self.axis} keeps the batch axis "
                             f"0 of inputs of shape {(None,) + tuple(sample_shape)}; keep "
                             f"sample axes (e.g. axis=-1) or use axis=None.")
        full = (1,) + tuple(sample_shape)
        reduce = tuple(d for d in range(ndim) if d not in keep)
        return keep, reduce, tuple(full[d] if d in keep else 1 for d in range(ndim))

    def _build(self, input_shape):
        keep, self._reduce_axis, self._broadcast_shape = self._axes(input_shape)
        shape = tuple(input_shape[d - 1] for d in keep)
        if self.input_mean is None:
            self.adapt_mean = np.zeros(shape, self.dtype)
            self.adapt_variance = np.ones(shape, self.dtype)
            self.count = np.zeros((), np.int64)
            return
        ndim = len(self._broadcast_shape)
        stats = []
        for arg, value in (("mean", self.input_mean), ("variance", self.input_variance)):
            a = np.asarray(value, dtype=np.float64)
            expanded = [1] * ndim
            for i in range(1, a.ndim + 1):
                expanded[keep[-i]] = a.shape[-i]
            try:
                a = np.broadcast_to(a.reshape(expanded), self._broadcast_shape)
            except ValueError:
                raise ValueError(f"Normalization {self.name!r}: {arg} of shape {np.shape(value)} "
                                 f"does not broadcast to the kept axes {keep} of inputs of "
                                 f"shape {(None,) + tuple(input_shape)}.") from None
            stats.append(a.astype(self.dtype))
        self._fixed = tuple(stats)

    def _stats(self):
        if self.input_mean is not None:
            return self._fixed
        return (self.adapt_mean.reshape(self._broadcast_shape),
                self.adapt_variance.reshape(self._broadcast_shape))

    def adapt(self, data):
        """Compute the mean and variance of ``data`` over the reduced axes (in float64, by
        batch, merged with Chan's formula) and store them as the layer's weights.

        Args:
            data: an array ``(batch, ...)``, or an iterable of such batches (a list, a
                generator, a ``PyDataset``/``Sequence``; ``(x, y)`` batches give x).

        Raises:
            ValueError: a layer made with ``mean``/``variance``, no data, or batches whose
                kept axes differ from the layer's.
        """
        if self.input_mean is not None:
            raise ValueError(f"Normalization {self.name!r} was given mean and variance; adapt "
                             f"has nothing to compute.")
        total = None
        for batch in _batches(data):
            if batch.ndim < 1 or batch.dtype.kind not in "biuf":
                raise ValueError(f"Normalization.adapt: batches must be arrays of numbers with "
                                 f"a batch axis; got dtype {batch.dtype}, shape {batch.shape}.")
            if not self.built:
                self.build(batch.shape[1:])
            keep, reduce, _ = self._axes(batch.shape[1:])
            want = self.adapt_mean.shape
            got = tuple(batch.shape[d] for d in keep)
            if got != want:
                raise ValueError(f"Normalization {self.name!r} keeps axes of sizes {want} (built "
                                 f"for inputs {self.input_shape}); adapt got a batch of shape "
                                 f"{batch.shape}.")
            b = batch.astype(np.float64)
            count = math.prod(batch.shape[d] for d in reduce)
            if count == 0:
                continue
            mean = b.mean(axis=reduce)
            m2 = np.square(b - b.mean(axis=reduce, keepdims=True)).sum(axis=reduce)
            if total is None:
                total = [count, mean, m2]
            else:
                n0, mean0, m20 = total
                n = n0 + count
                delta = mean - mean0
                total = [n, mean0 + delta * (count / n), m20 + m2 + delta ** 2 * (n0 * count / n)]
        if total is None:
            raise ValueError(f"Normalization {self.name!r}: adapt got no data.")
        n, mean, m2 = total
        self.adapt_mean[...] = mean
        self.adapt_variance[...] = m2 / n
        self.count[...] = n

    def _scale(self, dtype):
        mean, var = self._stats()
        return mean, np.maximum(np.sqrt(var), np.dtype(dtype).type(_EPSILON))

    def forward(self, x, training=False):
        mean, scale = self._scale(x.dtype)
        return mean + x * scale if self.invert else (x - mean) / scale

    def backward(self, dy):
        """``dy / max(sqrt(variance), 1e-7)`` (times it with ``invert``): the statistics are
        constants."""
        _, scale = self._scale(dy.dtype)
        return dy * scale if self.invert else dy / scale

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=tuple(self.axis), invert=self.invert,
                   mean=np.array(self.input_mean).tolist(),
                   variance=np.array(self.input_variance).tolist())
        return cfg
