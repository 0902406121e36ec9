"""Export a cconv model to ONNX: ``model.export("m.onnx", format="onnx")`` (Keras 3's name).

The graph is written with the ``onnx`` package (``pip install "cconv[onnx]"``), opset 17 by
default (any opset from 13 to the installed ``onnx``'s newest may be asked for: the ops used
did not change meaning in between), so that a model trained in cconv serves in ONNX Runtime,
OpenVINO or TensorRT.

What the file holds:

- Inputs and outputs are cconv's: NHWC images (any rank for other tensors), named after the
  model's inputs and outputs (``model.input_names`` / ``model.output_names``), batch axis
  symbolic (``"batch"``), the model's dtype.
- Inside, the convolution part runs in NCHW (ONNX's layout): a ``Transpose`` after an image
  input, and one back to NHWC before whatever needs cconv's own order (``Flatten``,
  ``Dense``, ``Reshape``, ``Permute``, an output). Element-wise layers run in whichever layout
  their input has, so a chain of convolutions, activations and pools has no transposes
  between them.
- Padding comes from cconv's own rule, :func:`cconv.ops.compute_padding` (TensorFlow's "same":
  the extra row/column after), written as explicit ``pads``; average pooling divides by the
  real cells (``count_include_pad=0``); ``BatchNormalization`` is its inference form
  ``x * inv + off`` with ``inv`` and ``off`` computed exactly as cconv computes them.
- Weights are initializers (copies: the model is not touched); a shared layer's weights are
  stored once.

Layers (exact classes; a subclass may compute something else and is refused, as is any layer
without an ONNX form, e.g. a Keras-style custom layer, with a ValueError naming it):
``InputLayer``, ``Dense``, ``Conv2D``, ``DepthwiseConv2D``, ``SeparableConv2D``,
``Conv2DTranspose``, ``MaxPooling2D``, ``AveragePooling2D``, ``GlobalMaxPooling2D``,
``GlobalAveragePooling2D``, ``BatchNormalization``, ``Dropout`` (the identity),
``Activation``, ``ReLU``, ``LeakyReLU``, ``Softmax``, ``Flatten``, ``Reshape``, ``Permute``,
``ZeroPadding2D``, ``Cropping2D``, ``UpSampling2D`` (nearest and bilinear), ``Rescaling``,
``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``, ``Minimum``, ``Concatenate``.
Activations (:mod:`cconv.activations`, by name): linear, relu, sigmoid, tanh, softmax,
leaky_relu, elu, gelu (exact and tanh forms), and Keras 3's selu, swish/silu, relu6,
hard_sigmoid, hard_silu/hard_swish, softplus, softsign, exponential where an activation of
that name exists.

Dtypes: float32 and float64 models are written in their own dtype (ONNX allows float64 for
every op used). ONNX Runtime's CPU provider has no float64 kernel for ``Conv``,
``ConvTranspose``, ``AveragePool``, the global pools, ``Resize``, ``Erf``, ``Elu`` and a few
more: a float64 model with those layers loads there only as a float32 copy,
``export(..., dtype="float32")`` (weights rounded once to float32).
"""

import math
import os
from typing import Optional, Union

import numpy as np

from .. import layers as _layers
from .. import ops as _ops
from .fileio import atomic_write

__all__ = ["export", "export_onnx", "to_onnx", "FORMATS", "DEFAULT_OPSET", "MIN_OPSET"]

FORMATS = ("onnx",)
DEFAULT_OPSET = 17
MIN_OPSET = 13          # Softmax on one axis, Pad/Unsqueeze/Resize with tensor inputs

_NATURAL, _NCHW = "natural", "nchw"    # cconv's layout (NHWC for images) / ONNX's
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError(
            'Exporting to ONNX needs the onnx package: pip install "cconv[onnx]" '
            "(or pip install onnx)."
        ) from None
    return onnx, helper, numpy_helper


# ----- the graph being written -----------------------------------------------------------------
class _Graph:
    """ONNX nodes and initializers, and where each cconv tensor lives in them.

    Each symbolic tensor of the model maps to ONNX value names by layout: ``natural`` (cconv's
    own axis order) and, for rank-4 tensors, ``nchw``; a missing layout is made by one
    ``Transpose`` when first needed, and kept.
    """

    def __init__(self, dtype, opset):
        self.onnx, self.helper, self.numpy_helper = _import_onnx()
        self.dtype = np.dtype(dtype)
        self.opset = opset
        self.elem_type = self.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.nodes, self.initializers = [], []
        self._taken = set()
        self._weights = {}            # (id(layer), role) -> initializer name (shared layers)
        self._values = {}             # id(KerasTensor) -> {layout: value name}
        self._ranks = {}              # id(KerasTensor) -> rank with the batch axis

    # names, nodes, constants
    def unique(self, base):
        base = str(base).replace(" ", "_") or "v"
        name, i = base, 1
        while name in self._taken:
            name, i = f"{base}_{i}", i + 1
        self._taken.add(name)
        return name

    def add(self, op, inputs, base, **attrs):
        """Append one node; returns its (single) output's name."""
        out = self.unique(f"{base}/{op}")
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def constant(self, array, base, dtype=None):
        """A new initializer holding ``array`` in ``dtype`` (default: the graph's dtype)."""
        arr = np.ascontiguousarray(np.asarray(array, dtype=dtype or self.dtype))
        name = self.unique(base)
        self.initializers.append(self.numpy_helper.from_array(arr.copy(), name))
        return name

    def ints(self, values, base):
        return self.constant(np.asarray(values, dtype=np.int64), base, dtype=np.int64)

    def weight(self, layer, role, array):
        """``array`` (already in ONNX's layout) as an initializer, once per layer and role."""
        key = (id(layer), role)
        if key not in self._weights:
            self._weights[key] = self.constant(array, f"{layer.name}/{role}")
        return self._weights[key]

    def scalar(self, value, base):
        return self.constant(np.asarray(value, dtype=self.dtype), base)

    def sample_constant(self, array, rank, layout, base):
        """A constant that broadcasts against one sample as cconv's does (``array``'s axes
        aligned to the sample's last axes), for a tensor of ``rank`` (batch axis included) in
        ``layout``."""
        arr = np.asarray(array, dtype=np.float64)
        if arr.ndim:
            arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
            if layout == _NCHW:
                arr = arr.transpose(_TO_NCHW)
        return self.constant(arr, base)

    # tensors and layouts
    def set(self, tensor, name, layout=_NATURAL):
        self._values[id(tensor)] = {layout: name}
        self._ranks[id(tensor)] = tensor.ndim

    def alias(self, tensor, source):
        """``tensor`` holds the same values as ``source`` (an identity layer)."""
        self._values[id(tensor)] = self._values[id(source)]
        self._ranks[id(tensor)] = self._ranks[id(source)]

    def layouts(self, tensor):
        return self._values[id(tensor)]

    def preferred(self, tensor):
        """The layout an element-wise layer keeps: NCHW when the tensor has it already."""
        return _NCHW if _NCHW in self._values[id(tensor)] else _NATURAL

    def get(self, tensor, layout=_NATURAL):
        """The value name of ``tensor`` in ``layout`` (transposed once if needed)."""
        vals = self._values[id(tensor)]
        if tensor.ndim != 4:
            layout = _NATURAL
        if layout not in vals:
            other = vals[_NCHW if layout == _NATURAL else _NATURAL]
            perm = _TO_NCHW if layout == _NCHW else _TO_NHWC
            vals[layout] = self.add("Transpose", [other], f"{tensor.name}/to_{layout}",
                                    perm=perm)
        return vals[layout]


# ----- activations -----------------------------------------------------------------------------
_SELU_ALPHA, _SELU_SCALE = 1.67326324235437728481, 1.05070098735548049342


def _activation(g, act, x, layout, rank, layer):
    """Apply ``act`` (a :class:`cconv.activations.Activation`) to value ``x``; returns the
    output value's name. ``layout``/``rank`` say which axis is the channels (softmax)."""
    name = act.name
    cfg = act.get_config()
    base = layer.name
    channel_axis = 1 if (layout == _NCHW and rank == 4) else -1

    def refuse():
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}): activation {name!r} with settings "
            f"{cfg} has no ONNX form in cconv's exporter; supported: {sorted(_ACT_KEYS)}."
        )

    if name not in _ACT_KEYS or set(cfg) - _ACT_KEYS[name]:
        refuse()
    if name == "linear":
        return x
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
              "softsign": "Softsign", "exponential": "Exp"}
    if name in simple:
        return g.add(simple[name], [x], base)
    if name == "softmax":
        return g.add("Softmax", [x], base, axis=channel_axis)
    if name == "leaky_relu":
        return g.add("LeakyRelu", [x], base, alpha=float(cfg.get("negative_slope", 0.2)))
    if name == "elu":
        return g.add("Elu", [x], base, alpha=float(cfg.get("alpha", 1.0)))
    if name == "selu":
        return g.add("Selu", [x], base, alpha=_SELU_ALPHA, gamma=_SELU_SCALE)
    if name in ("swish", "silu"):
        return g.add("Mul", [x, g.add("Sigmoid", [x], base)], base)
    if name == "relu6":
        return g.add("Clip", [x, g.scalar(0, f"{base}/zero"), g.scalar(6, f"{base}/six")], base)
    if name == "hard_sigmoid":        # Keras 3: relu6(x + 3) / 6
        return g.add("HardSigmoid", [x], base, alpha=1.0 / 6, beta=0.5)
    if name in ("hard_silu", "hard_swish"):
        return g.add("Mul", [x, g.add("HardSigmoid", [x], base, alpha=1.0 / 6, beta=0.5)], base)
    if name == "gelu":
        half_x = g.add("Mul", [x, g.scalar(0.5, f"{base}/half")], base)
        one = g.scalar(1.0, f"{base}/one")
        if cfg.get("approximate", False):
            # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
            cube = g.add("Mul", [x, g.add("Mul", [x, x], base)], base)
            inner = g.add("Add", [x, g.add("Mul", [cube, g.scalar(0.044715, f"{base}/c")],
                                           base)], base)
            t = g.add("Tanh", [g.add("Mul", [inner, g.scalar(math.sqrt(2 / math.pi),
                                                                f"{base}/k")], base)], base)
        else:
            # 0.5 x (1 + erf(x / sqrt(2)))
            t = g.add("Erf", [g.add("Div", [x, g.scalar(math.sqrt(2), f"{base}/sqrt2")],
                                    base)], base)
        return g.add("Mul", [half_x, g.add("Add", [one, t], base)], base)
    refuse()   # pragma: no cover - every key of _ACT_KEYS is handled above


# activation name -> the config keys the exporter understands
_ACT_KEYS = {
    "linear": set(), "relu": set(), "sigmoid": set(), "tanh": set(), "softmax": set(),
    "leaky_relu": {"negative_slope"}, "elu": {"alpha"}, "gelu": {"approximate"},
    "selu": set(), "swish": set(), "silu": set(), "relu6": set(), "hard_sigmoid": set(),
    "hard_silu": set(), "hard_swish": set(), "softplus": set(), "softsign": set(),
    "exponential": set(),
}


# ----- layers ----------------------------------------------------------------------------------
_CONVERTERS = {}


def _converts(*classes):
    def register(fn):
        for cls in classes:
            _CONVERTERS[cls] = fn
        return fn
    return register


def _spatial(layer, tensor):
    """``(height, width)`` of an image tensor, as ints."""
    h, w = tensor.shape[1:3]
    if h is None or w is None:
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}): ONNX export needs a "
                         f"known height and width; got input shape {tensor.shape}.")
    return int(h), int(w)


def _onnx_pads(pads):
    """``((top, bottom), (left, right))`` -> ONNX's ``[top, left, bottom, right]``."""
    (t, b), (l, r) = pads
    return [int(t), int(l), int(b), int(r)]


def _window_pads(layer, tensor, kernel, strides, padding, dilation=(1, 1)):
    """ONNX ``pads`` by cconv's one padding rule (:func:`cconv.ops.compute_padding`)."""
    return _onnx_pads(_ops.compute_padding(_spatial(layer, tensor), kernel, strides, padding,
                                           dilation))


def _finish(g, layer, y, layout, rank):
    """The layer's activation (if any) on ``y``; returns ``(value, layout)``."""
    act = getattr(layer, "activation", None)
    if act is not None:
        y = _activation(g, act, y, layout, rank, layer)
    return y, layout


def _conv(g, layer, x, kernel_oihw, bias, strides, padding, dilation, groups, tensor, role):
    ins = [x, g.weight(layer, role, kernel_oihw)]
    if bias is not None:
        ins.append(g.weight(layer, "bias", bias))
    kh, kw = kernel_oihw.shape[2:]
    return g.add("Conv", ins, layer.name, kernel_shape=[kh, kw], strides=list(strides),
                 dilations=list(dilation), group=int(groups),
                 pads=_window_pads(layer, tensor, (kh, kw), strides, padding, dilation))


@_converts(_layers.Conv2D)
def _conv2d(g, layer, inputs, out):
    (t,) = inputs
    y = _conv(g, layer, g.get(t, _NCHW), layer.kernel.transpose(3, 2, 0, 1), layer.bias,
              layer.strides, layer.padding, layer.dilation_rate, layer.groups, t, "kernel")
    return _finish(g, layer, y, _NCHW, 4)


def _depthwise_oihw(kernel):
    """Keras's ``(kh, kw, c, m)`` -> ONNX's grouped ``(c * m, 1, kh, kw)`` (output channel
    ``c * m + j`` reads input channel ``c``, as cconv's grouped convolution)."""
    kh, kw, c, m = kernel.shape
    return kernel.reshape(kh, kw, 1, c * m).transpose(3, 2, 0, 1)


@_converts(_layers.DepthwiseConv2D)
def _depthwise(g, layer, inputs, out):
    (t,) = inputs
    y = _conv(g, layer, g.get(t, _NCHW), _depthwise_oihw(layer.kernel), layer.bias,
              layer.strides, layer.padding, layer.dilation_rate, layer.kernel.shape[2], t,
              "kernel")
    return _finish(g, layer, y, _NCHW, 4)


@_converts(_layers.SeparableConv2D)
def _separable(g, layer, inputs, out):
    (t,) = inputs
    mid = _conv(g, layer, g.get(t, _NCHW), _depthwise_oihw(layer.depthwise_kernel), None,
                layer.strides, layer.padding, layer.dilation_rate,
                layer.depthwise_kernel.shape[2], t, "depthwise_kernel")
    pk = layer.pointwise_kernel.transpose(3, 2, 0, 1)
    ins = [mid, g.weight(layer, "pointwise_kernel", pk)]
    if layer.bias is not None:
        ins.append(g.weight(layer, "bias", layer.bias))
    y = g.add("Conv", ins, layer.name, kernel_shape=[1, 1])
    return _finish(g, layer, y, _NCHW, 4)


@_converts(_layers.Conv2DTranspose)
def _conv_transpose(g, layer, inputs, out):
    """cconv's transposed convolution is the input gradient of the convolution from its
    output size back to its input size: ONNX ``ConvTranspose`` with that convolution's pads,
    and ``output_padding`` for the rows/columns the convolution's stride skipped."""
    (t,) = inputs
    n = _spatial(layer, t)
    k, s, d = layer.kernel_size, layer.strides, layer.dilation_rate
    size = _ops.conv_transpose_output_shape(n, k, s, layer.padding, layer.output_padding, d)
    pads = _ops.compute_padding(size, k, s, layer.padding, d)
    extra = []
    for i in range(2):
        ke = (k[i] - 1) * d[i] + 1
        extra.append(size[i] - ((n[i] - 1) * s[i] + ke - pads[i][0] - pads[i][1]))
    if not all(0 <= e < max(s[i], d[i]) for i, e in enumerate(extra)):   # pragma: no cover
        raise ValueError(f"Layer {layer.name!r} (Conv2DTranspose): output size {size} has no "
                         f"ONNX ConvTranspose form (output_padding {extra}).")
    ins = [g.get(t, _NCHW), g.weight(layer, "kernel", layer.kernel.transpose(3, 2, 0, 1))]
    if layer.bias is not None:
        ins.append(g.weight(layer, "bias", layer.bias))
    y = g.add("ConvTranspose", ins, layer.name, kernel_shape=list(k), strides=list(s),
              dilations=list(d), pads=_onnx_pads(pads), output_padding=extra)
    return _finish(g, layer, y, _NCHW, 4)


@_converts(_layers.MaxPooling2D, _layers.AveragePooling2D)
def _pool(g, layer, inputs, out):
    (t,) = inputs
    attrs = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                 pads=_window_pads(layer, t, layer.pool_size, layer.strides, layer.padding))
    if isinstance(layer, _layers.AveragePooling2D):
        op = "AveragePool"
        attrs["count_include_pad"] = 0      # divide by the real cells, as cconv and TF
    else:
        op = "MaxPool"
    return g.add(op, [g.get(t, _NCHW)], layer.name, **attrs), _NCHW


@_converts(_layers.GlobalAveragePooling2D, _layers.GlobalMaxPooling2D)
def _global_pool(g, layer, inputs, out):
    (t,) = inputs
    op = ("GlobalAveragePool" if isinstance(layer, _layers.GlobalAveragePooling2D)
          else "GlobalMaxPool")
    y = g.add(op, [g.get(t, _NCHW)], layer.name)          # (batch, c, 1, 1)
    if layer.keepdims:
        return y, _NCHW
    return g.add("Flatten", [y], layer.name, axis=1), _NATURAL


@_converts(_layers.Dense)
def _dense(g, layer, inputs, out):
    (t,) = inputs
    x = g.get(t, _NATURAL)
    kernel = g.weight(layer, "kernel", layer.kernel)
    bias = None if layer.bias is None else g.weight(layer, "bias", layer.bias)
    if t.ndim == 2:
        y = g.add("Gemm", [x, kernel] + ([bias] if bias else []), layer.name)
    else:
        y = g.add("MatMul", [x, kernel], layer.name)
        if bias:
            y = g.add("Add", [y, bias], layer.name)
    return _finish(g, layer, y, _NATURAL, out.ndim)


@_converts(_layers.Activation, _layers.Softmax)
def _activation_layer(g, layer, inputs, out):
    (t,) = inputs
    layout = g.preferred(t)
    return _finish(g, layer, g.get(t, layout), layout, t.ndim)


@_converts(_layers.ReLU, _layers.LeakyReLU)
def _relu(g, layer, inputs, out):
    """Keras's ReLU: ``max_value`` if ``x >= max_value``, ``x`` if ``x >= threshold``, else
    ``negative_slope * (x - threshold)``."""
    (t,) = inputs
    layout = g.preferred(t)
    x = g.get(t, layout)
    mx, slope, thr, base = layer.max_value, layer.negative_slope, layer.threshold, layer.name
    if thr == 0 and mx is None:
        y = (g.add("Relu", [x], base) if slope == 0
             else g.add("LeakyRelu", [x], base, alpha=float(slope)))
    elif thr == 0 and slope == 0:
        y = g.add("Clip", [x, g.scalar(0, f"{base}/zero"), g.scalar(mx, f"{base}/max")], base)
    else:
        thr_c = g.scalar(thr, f"{base}/threshold")
        below = g.add("Mul", [g.add("Sub", [x, thr_c], base),
                              g.scalar(slope, f"{base}/slope")], base)
        y = g.add("Where", [g.add("GreaterOrEqual", [x, thr_c], base), x, below], base)
        if mx is not None:
            mx_c = g.scalar(mx, f"{base}/max")
            y = g.add("Where", [g.add("GreaterOrEqual", [x, mx_c], base), mx_c, y], base)
    return y, layout


@_converts(_layers.Dropout)
def _identity(g, layer, inputs, out):
    return None


@_converts(_layers.BatchNormalization)
def _batch_norm(g, layer, inputs, out):
    """The inference form cconv runs: ``x * inv + off``, ``inv = gamma / sqrt(var + eps)``,
    ``off = beta - mean * inv``, computed in the layer's dtype as cconv computes them."""
    (t,) = inputs
    layout = g.preferred(t)
    inv, off = layer.inference_scale_offset()
    y = g.add("Mul", [g.get(t, layout), g.sample_constant(inv, t.ndim, layout,
                                                            f"{layer.name}/inv")], layer.name)
    y = g.add("Add", [y, g.sample_constant(off, t.ndim, layout, f"{layer.name}/offset")],
              layer.name)
    return y, layout


@_converts(_layers.Rescaling)
def _rescaling(g, layer, inputs, out):
    (t,) = inputs
    layout = g.preferred(t)
    scaled = not (np.ndim(layer.scale) == 0 and layer.scale == 1.0)
    shifted = bool(np.any(np.asarray(layer.offset) != 0))
    if not (scaled or shifted):
        return None
    y = g.get(t, layout)
    if scaled:
        y = g.add("Mul", [y, g.sample_constant(layer.scale, t.ndim, layout,
                                               f"{layer.name}/scale")], layer.name)
    if shifted:
        y = g.add("Add", [y, g.sample_constant(layer.offset, t.ndim, layout,
                                               f"{layer.name}/offset")], layer.name)
    return y, layout


@_converts(_layers.Flatten)
def _flatten(g, layer, inputs, out):
    (t,) = inputs
    return g.add("Flatten", [g.get(t, _NATURAL)], layer.name, axis=1), _NATURAL


@_converts(_layers.Reshape)
def _reshape(g, layer, inputs, out):
    (t,) = inputs
    shape = g.ints([0] + list(layer.target_shape), f"{layer.name}/shape")   # 0: keep batch
    return g.add("Reshape", [g.get(t, _NATURAL), shape], layer.name), _NATURAL


@_converts(_layers.Permute)
def _permute(g, layer, inputs, out):
    (t,) = inputs
    return (g.add("Transpose", [g.get(t, _NATURAL)], layer.name, perm=[0] + list(layer.dims)),
            _NATURAL)


def _image_axes(layout):
    """The (height, width) axes of a rank-4 image tensor in ``layout``."""
    return (2, 3) if layout == _NCHW else (1, 2)


@_converts(_layers.ZeroPadding2D)
def _zero_pad(g, layer, inputs, out):
    (t,) = inputs
    layout = g.preferred(t)
    (top, bottom), (left, right) = layer.padding
    begin, end = [0, 0, 0, 0], [0, 0, 0, 0]
    ah, aw = _image_axes(layout)
    begin[ah], begin[aw], end[ah], end[aw] = top, left, bottom, right
    pads = g.ints(begin + end, f"{layer.name}/pads")
    return g.add("Pad", [g.get(t, layout), pads], layer.name, mode="constant"), layout


@_converts(_layers.Cropping2D)
def _crop(g, layer, inputs, out):
    (t,) = inputs
    layout = g.preferred(t)
    h, w = _spatial(layer, t)
    (top, bottom), (left, right) = layer.cropping
    ins = [g.get(t, layout), g.ints([top, left], f"{layer.name}/starts"),
           g.ints([h - bottom, w - right], f"{layer.name}/ends"),
           g.ints(list(_image_axes(layout)), f"{layer.name}/axes")]
    return g.add("Slice", ins, layer.name), layout


@_converts(_layers.UpSampling2D)
def _upsample(g, layer, inputs, out):
    """Nearest: ``out[i] = in[floor(i / s)]`` (``asymmetric`` coordinates, ``floor``).
    Bilinear: half-pixel centers with edges clamped, TensorFlow's and cconv's rule
    (``half_pixel``)."""
    (t,) = inputs
    sh, sw = layer.size
    scales = g.constant(np.array([1, 1, sh, sw], dtype=np.float32), f"{layer.name}/scales",
                        dtype=np.float32)
    if layer.interpolation == "nearest":
        attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                     nearest_mode="floor")
    else:
        attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    return g.add("Resize", [g.get(t, _NCHW), "", scales], layer.name, **attrs), _NCHW


_MERGE_OPS = {_layers.Add: "Add", _layers.Subtract: "Sub", _layers.Multiply: "Mul",
              _layers.Average: "Add", _layers.Maximum: "Max", _layers.Minimum: "Min"}


@_converts(*_MERGE_OPS)
def _merge(g, layer, inputs, out):
    """Left to right, ``((x0 op x1) op x2) ...`` as cconv; an input of lower rank gets axes
    of size 1 after the batch axis (``Unsqueeze``), as Keras and cconv broadcast it."""
    rank = out.ndim
    same_rank = all(t.ndim == rank for t in inputs)
    layout = (_NCHW if same_rank and rank == 4 and any(g.preferred(t) == _NCHW for t in inputs)
              else _NATURAL)
    xs = []
    for t in inputs:
        x = g.get(t, layout)
        if t.ndim < rank:
            axes = g.ints(list(range(1, rank - t.ndim + 1)), f"{layer.name}/axes")
            x = g.add("Unsqueeze", [x, axes], layer.name)
        xs.append(x)
    op = _MERGE_OPS[type(layer)]
    y = xs[0]
    for x in xs[1:]:
        y = g.add(op, [y, x], layer.name)
    if isinstance(layer, _layers.Average):
        y = g.add("Div", [y, g.scalar(len(xs), f"{layer.name}/count")], layer.name)
    return y, layout


@_converts(_layers.Concatenate)
def _concatenate(g, layer, inputs, out):
    rank = out.ndim
    axis = layer.axis + rank if layer.axis < 0 else layer.axis   # cconv's order, batch = 0
    layout = (_NCHW if rank == 4 and any(g.preferred(t) == _NCHW for t in inputs)
              else _NATURAL)
    if layout == _NCHW:
        axis = _TO_NCHW.index(axis)
    xs = [g.get(t, layout) for t in inputs]
    return g.add("Concat", xs, layer.name, axis=axis), layout


def supported_layers():
    """The layer classes the exporter writes, by name (sorted)."""
    return sorted(cls.__name__ for cls in _CONVERTERS)


# ----- the model -------------------------------------------------------------------------------
def _check_opset(opset_version):
    onnx, _, _ = _import_onnx()
    newest = onnx.defs.onnx_opset_version()
    if (not isinstance(opset_version, (int, np.integer)) or isinstance(opset_version, bool)
            or not MIN_OPSET <= opset_version <= newest):
        raise ValueError(f"export: opset_version must be an int from {MIN_OPSET} to {newest} "
                         f"(the installed onnx's newest); got opset_version={opset_version!r}.")
    return int(opset_version)


def _export_dtype(model, dtype):
    if dtype is None:
        return np.dtype(model.dtype)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f'export: dtype must be None (the model\'s), "float32" or "float64"; '
                         f"got dtype={dtype!r}.")
    return dt


def _graph_parts(model):
    """``(inputs, outputs, nodes, input names, output names)`` of a cconv model, built here
    from its declared input shape if needed; ``nodes`` in an order where each node comes
    after the nodes it reads (a depth-first walk back from the outputs)."""
    from ..trainers.trainer import Trainer
    if not isinstance(model, Trainer):
        raise TypeError(f"export: model must be a cconv model (Sequential or Model); got "
                        f"{type(model).__name__}.")
    if not getattr(model, "built", False):
        try:
            model.build()
        except ValueError as exc:
            raise ValueError(f"export: model {model.name!r} is not built and has no declared "
                             f"input shape ({exc}); build it (model.build(input_shape)) or "
                             f"call it on data first.") from None
    inputs, outputs = list(model.inputs), list(model.outputs)
    order, done = [], set()
    stack = [(t.node, False) for t in reversed(outputs)]
    while stack:                                 # iterative post-order: deep models are fine
        node, expanded = stack.pop()
        if node in done:
            continue
        if expanded:
            done.add(node)
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((t.node, False) for t in reversed(node.inbound_tensors)
                     if t.node not in done)
    return (inputs, outputs, [n for n in order if not n.is_input],
            list(model.input_names), list(model.output_names))


def to_onnx(model, opset_version: int = DEFAULT_OPSET, dtype=None):
    """The ONNX graph of ``model`` as an ``onnx.ModelProto`` (checked with
    ``onnx.checker``); see the module docstring for what it holds.

    Args:
        model: a cconv ``Sequential`` or ``Model`` (built, or with a declared input shape).
        opset_version: the ONNX opset, from 13 to the installed ``onnx``'s newest (default 17).
        dtype: None (the model's dtype), "float32" or "float64": the graph's dtype; weights
            are rounded to it once.

    Inputs ``(batch,) + sample shape`` per model input (NHWC images), outputs likewise,
    batch symbolic.

    Raises:
        ImportError: the ``onnx`` package is missing (``pip install "cconv[onnx]"``).
        ValueError: a layer or activation with no ONNX form (naming the layer and its class),
            a bad ``opset_version`` or ``dtype``, a model that cannot be built.
        TypeError: ``model`` is not a cconv model.
    """
    onnx, helper, _ = _import_onnx()
    opset = _check_opset(opset_version)
    ins, outs, nodes, in_names, out_names = _graph_parts(model)
    g = _Graph(_export_dtype(model, dtype), opset)

    def value_info(name, tensor):
        dims = ["batch"] + [d if d is not None else f"{name}_{i}"
                            for i, d in enumerate(tensor.shape[1:], 1)]
        return helper.make_tensor_value_info(name, g.elem_type, dims)

    graph_inputs, seen = [], set()
    for t, name in zip(ins, in_names):
        if id(t) in seen:
            continue
        seen.add(id(t))
        name = g.unique(name)
        graph_inputs.append(value_info(name, t))
        g.set(t, name)
    for node in nodes:
        layer = node.layer
        convert = _CONVERTERS.get(type(layer))
        if convert is None:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no ONNX form in cconv's "
                f"exporter (custom layers and subclasses of built-in layers are not exported); "
                f"supported layers: {', '.join(supported_layers())}."
            )
        out = node.outputs[0]
        result = convert(g, layer, list(node.inbound_tensors), out)
        if result is None:                        # an identity at inference
            g.alias(out, node.inbound_tensors[0])
        else:
            g.set(out, *result)
    graph_outputs = []
    for t, name in zip(outs, out_names):
        name = g.unique(name)
        g.nodes.append(helper.make_node("Identity", [g.get(t, _NATURAL)], [name],
                                        name=g.unique(f"{name}/output")))
        graph_outputs.append(value_info(name, t))
    graph = helper.make_graph(g.nodes, str(model.name), graph_inputs, graph_outputs,
                              initializer=g.initializers)
    opset_id = helper.make_opsetid("", opset)
    proto = helper.make_model(graph, opset_imports=[opset_id], producer_name="cconv",
                              producer_version=_version(),
                              doc_string=f"cconv model {model.name!r}, inputs and outputs NHWC")
    # The oldest IR version that holds this opset, so that older runtimes read the file.
    proto.ir_version = helper.find_min_ir_version_for([opset_id])
    onnx.checker.check_model(proto)
    return proto


def _version():
    from .. import __version__
    return str(__version__)


def export_onnx(model, filepath: Union[str, os.PathLike], opset_version: int = DEFAULT_OPSET,
                dtype=None, verbose: Optional[bool] = None) -> None:
    """Write ``model`` as an ONNX file at ``filepath`` (atomically: the file is replaced
    only once complete). Arguments and errors as :func:`to_onnx`; ``verbose`` prints where
    it went."""
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"export: filepath must be a str or os.PathLike; got "
                        f"{type(filepath).__name__}.")
    data = to_onnx(model, opset_version=opset_version, dtype=dtype).SerializeToString()
    atomic_write(filepath, lambda f: f.write(data))
    if verbose:
        print(f"Saved artifact at '{os.fspath(filepath)}'.")


def export(model, filepath: Union[str, os.PathLike], format: str = "onnx",
           verbose: Optional[bool] = None, **kwargs) -> None:
    """``model.export(filepath, format="onnx", ...)``: the one format cconv writes for serving.

    Keyword arguments: ``opset_version`` (default 17) and ``dtype`` (see :func:`to_onnx`).

    Raises:
        ValueError: ``format`` is not one of :data:`FORMATS`; what :func:`export_onnx`
            raises.
        TypeError: an unknown keyword argument.
    """
    if not isinstance(format, str) or format.lower() not in FORMATS:
        raise ValueError(f"export: format must be one of {list(FORMATS)} (cconv writes no "
                         f"TensorFlow SavedModel); got format={format!r}.")
    unknown = sorted(set(kwargs) - {"opset_version", "dtype"})
    if unknown:
        raise TypeError(f"export: unexpected keyword argument(s) {unknown}; format 'onnx' "
                        f"takes opset_version and dtype.")
    export_onnx(model, filepath, verbose=verbose, **kwargs)
