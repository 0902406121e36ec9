"""NumPy in, NumPy out: 2-D convolution and pooling, forward and backward.

Layout is NHWC (``channels_last``) everywhere:

* ``x``: ``(batch, height, width, channels)``
* ``kernel``: ``(kernel_h, kernel_w, channels // groups, filters)``; ``bias``: ``(filters,)``
* outputs: ``(batch, out_h, out_w, filters)`` (convolution) or ``(batch, out_h, out_w,
  channels)`` (pooling).

Semantics follow Keras 3 / TensorFlow 2 (see ``conv_output_shape`` and ``compute_padding`` for
the one rule every function here uses). This module validates and decides; the arithmetic runs
in the compiled core (``cconv._ext``), without the GIL, on ``cconv.get_num_threads()`` threads.

Dtypes: float32 and float64 are computed in their own precision and kept, in either byte
order (results are native). When arguments mix them the result is float64. float16 is
computed in float32 and returns float32 (never truncated back). Booleans and integers become
float64. Anything else (complex, object, strings, ``None``) raises ``TypeError``. Inputs are
never modified; results are fresh C-contiguous arrays.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

from . import backend as _backend
from ._ext import batchnorm as _bn
from ._ext import blas as _blas
from ._ext import conv as _conv
from ._ext import dropout as _dropext
from ._ext import pool as _poolext
from ._ext import resample as _resample
from ._ext.parallel import get_num_threads, threads_for
from ._typing import IntOrPair, Padding
from ._validation import INDEX_LIMIT, check_int, is_int, normalize_pair

__all__ = [
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "avg_pool2d",
    "max_pool2d_backward",
    "avg_pool2d_backward",
    "conv_output_shape",
    "compute_padding",
    "dense",
    "dense_backward",
    "conv2d_transpose",
    "conv2d_transpose_backward",
    "conv_transpose_output_shape",
    "upsampling2d",
    "upsampling2d_backward",
    "channel_sum",
    "dropout",
    "dropout_mask",
    "batch_norm_train",
    "batch_norm_backward",
]

# Every size, stride, dilation and padding amount, and every index the kernels form from them
# (input + padding + effective kernel + stride), must stay below INDEX_LIMIT (2**62, in
# cconv._validation): the kernels index with signed 64-bit integers.

# Work (multiply-adds or cells visited) below which one more thread costs more than it
# saves: waking a thread and the barrier after a parallel loop take microseconds.
_GRAIN = 1 << 18


def _threads(work):
    """Threads for a call doing ``work`` elementary operations (results never depend on it)."""
    return threads_for(max(1, min(get_num_threads(), int(work) // _GRAIN)))


# Rows summed in float32 before a block's sum joins the float64 total (``channel_sum``).
_SUM_BLOCK = 32


def channel_sum(a: np.ndarray, b: Optional[np.ndarray] = None,
                 per_sample: bool = False) -> np.ndarray:
    """Per-channel sums of ``a``, or of ``a * b`` (``b`` shaped like ``a``), in float64: the
    one reduction every per-channel statistic and bias gradient uses (the ops' bias
    gradients, BatchNormalization, GlobalAveragePooling2D).

    Args:
        a, b: ``(batch, ..., channels)``.
        per_sample: sum over the axes between the first and the last (``(batch, channels)``)
            instead of over every axis but the last (``(channels,)``).

    float64 data is summed as ``a.sum(axis)`` sums it, bit for bit. Other data is accumulated
    in float64 without a float64 copy of ``a``: NumPy sums pairwise only along the contiguous
    axis (the channels' here), so a float32 ``a.sum(axis=(0, 1, 2))`` adds ``batch * h * w``
    values one after another and loses ~1e-5 of the result. Few channels: ``einsum`` casts in
    chunks (a product of two float32 values is exact in float64). Many channels (where
    ``einsum`` is slower than the float32 sum): blocks of ``_SUM_BLOCK`` rows in float32, the
    blocks in float64 (error ~1e-8 relative, at the float32 sum's speed).
    """
    c = a.shape[-1]
    n = a.shape[0] if per_sample else 1
    m = int(np.prod(a.shape[1 if per_sample else 0:-1], dtype=np.int64))
    a3 = a.reshape(n, m, c)
    b3 = None if b is None else b.reshape(n, m, c)
    if a.dtype == np.float64:
        s = np.add.reduce(a3 if b3 is None else a3 * b3, axis=1)
    elif c < 16:
        s = (np.einsum("nmc->nc", a3, dtype=np.float64) if b3 is None
             else np.einsum("nmc,nmc->nc", a3, b3, dtype=np.float64))
    else:
        p = a3 if b3 is None else a3 * b3
        k = _SUM_BLOCK
        mk = m - m % k
        s = np.add.reduce(np.add.reduce(p[:, :mk].reshape(n, mk // k, k, c), axis=2), axis=1,
                          dtype=np.float64)
        if mk < m:
            s += np.add.reduce(p[:, mk:], axis=1, dtype=np.float64)
    return s if per_sample else s[0]


# ------------------------------------------------------------- batch normalization (training)
def _bn_vector(op, name, v, c):
    if v is not None and v.shape != (c,):
        raise ValueError(f"{op}: {name} must have shape ({c},), one value per channel of x "
                         f"(its last axis), got {v.shape}")


def _bn_setup(op, named, vectors, followers=()):
    """(dtype, arrays) of ``named`` (None stays None), x first, rank >= 2; the arrays in
    ``followers`` (float64 statistics) take the dtype of the others without deciding it."""
    present = {k: v for k, v in named.items() if v is not None and k not in followers}
    dtype, arrs = _arrays(op, **present)
    conv = dict(zip(present, arrs))
    for k in followers:
        conv[k] = np.ascontiguousarray(_as_array(named[k], k, op), dtype=dtype)
    x = conv["x"]
    if x.ndim < 2:
        raise ValueError(f"{op}: x must have shape (batch, ..., channels), at least 2-D; "
                         f"got shape {x.shape}")
    for name in vectors:
        _bn_vector(op, name, conv.get(name), x.shape[-1])
    return dtype, [conv.get(k) for k in named]


def batch_norm_train(x: ArrayLike, gamma: Optional[ArrayLike] = None,
                     beta: Optional[ArrayLike] = None, epsilon: float = 1e-3,
                     relu: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Batch normalization with the batch's statistics (Keras's ``BatchNormalization`` in
    training), over the last axis: ``y = (x - mean) * rstd * gamma + beta``.

    Args:
        x: ``(batch, ..., channels)``; the statistics are over every axis but the last.
        gamma, beta: ``(channels,)``, or None (Keras's ``scale=False`` / ``center=False``).
        epsilon: added to the variance, positive.
        relu: return ``max(y, 0)`` instead (a following ReLU fused; pass the same flag to
            ``batch_norm_backward``).

    Returns:
        ``(y, mean, var, rstd)``: ``y`` shaped like ``x``; ``mean`` and ``var`` (the biased
        variance) in float64, summed in float64; ``rstd = 1 / sqrt(var + epsilon)`` in ``x``'s
        dtype. The variance is that of ``x`` centred on the mean rounded to ``x``'s dtype,
        corrected by that rounding; ``y = ((x - mean_t) * rstd) * gamma + beta`` with
        ``mean_t`` that rounded mean. float64 results are those of the NumPy expressions
        (``x.mean(axis)``, ``np.mean(np.square(x - mean), axis)``, ...) bit for bit; float32
        sums run in float64 over fixed blocks of rows. Identical for any thread count.
    """
    op = "batch_norm_train"
    dtype, (x, gamma, beta) = _bn_setup(op, dict(x=x, gamma=gamma, beta=beta),
                                        ("gamma", "beta"))
    eps = float(epsilon)
    if not eps > 0 or not np.isfinite(eps):
        raise ValueError(f"{op}: epsilon must be positive and finite, got {epsilon!r}")
    c = x.shape[-1]
    m = x.size // c if c else 0
    y = _empty(x.shape, dtype, op, "y")
    if m == 0 or c == 0:      # nothing to average: NaN statistics (0 / 0), as NumPy's mean
        nan = np.full(c, np.nan)
        return y, nan, nan.copy(), nan.astype(dtype)
    mean, var = np.empty(c), np.empty(c)
    mean_t, rstd = np.empty(c, dtype), np.empty(c, dtype)
    _bn.forward(x.reshape(m, c), y.reshape(m, c), gamma, beta, eps, bool(relu), mean, var,
                mean_t, rstd, _threads(4 * x.size))
    return y, mean, var, rstd


def batch_norm_backward(dy: ArrayLike, x: ArrayLike, mean: ArrayLike, rstd: ArrayLike,
                        gamma: Optional[ArrayLike] = None, beta: Optional[ArrayLike] = None,
                        relu: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradient of ``batch_norm_train``: ``(dx, dgamma, dbeta)``.

    Args:
        dy: the gradient of ``y``, shaped like ``x``.
        x, gamma, beta, relu: as given to ``batch_norm_train``.
        mean, rstd: what it returned (``mean`` is used rounded to the dtype, as the forward).

    ``dbeta = sum(dy)`` and ``dgamma = sum(dy * xhat)`` (``xhat = (x - mean) * rstd``,
    recomputed) are summed in float64 and rounded to the dtype; ``dx = (gamma * rstd / m) *
    (m * dy - dbeta - xhat * dgamma)`` with ``m`` the values per channel (float64: the NumPy
    expressions' bits). With ``relu``, ``dy`` is first masked by ``y > 0``. ``dgamma`` and
    ``dbeta`` are returned even when ``gamma`` / ``beta`` are None.
    """
    op = "batch_norm_backward"
    dtype, (x, dy, mean, rstd, gamma, beta) = _bn_setup(
        op, dict(x=x, dy=dy, mean=mean, rstd=rstd, gamma=gamma, beta=beta),
        ("mean", "rstd", "gamma", "beta"), followers=("mean",))
    if dy.shape != x.shape:
        raise ValueError(f"{op}: dy must have the shape of x {x.shape}, got {dy.shape}")
    c = x.shape[-1]
    m = x.size // c if c else 0
    dx = _empty(x.shape, dtype, op, "dx")
    dgamma, dbeta = np.zeros(c, dtype), np.zeros(c, dtype)
    if m == 0 or c == 0:
        return dx, dgamma, dbeta
    _bn.backward(dy.reshape(m, c), x.reshape(m, c), dx.reshape(m, c), mean, rstd, gamma, beta,
                 bool(relu), dgamma, dbeta, _threads(4 * x.size))
    return dx, dgamma, dbeta


_PADDING_HELP = (
    '"valid", "same", an int, a pair (pad_h, pad_w) or ((top, bottom), (left, right)) '
    "of non-negative ints"
)


# --------------------------------------------------------------------------- arguments
def _explicit_padding(padding, op):
    """An int, a pair or ((top, bottom), (left, right)) -> ((top, bottom), (left, right))."""
    if is_int(padding):
        pads = ((int(padding),) * 2, (int(padding),) * 2)
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(is_int(p) for p in padding):
            pads = ((int(padding[0]),) * 2, (int(padding[1]),) * 2)
        elif all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(q) for q in p)
            for p in padding
        ):
            pads = tuple((int(p[0]), int(p[1])) for p in padding)
        else:
            raise TypeError(f"{op}: padding must be {_PADDING_HELP}, got {padding!r}")
    else:
        raise TypeError(f"{op}: padding must be {_PADDING_HELP}, got {padding!r}")
    if min(pads[0] + pads[1]) < 0:
        raise ValueError(f"{op}: padding amounts must be >= 0, got {padding!r}")
    if max(pads[0] + pads[1]) >= INDEX_LIMIT:
        raise ValueError(f"{op}: padding {padding!r} is too large (each amount must be < 2**62)")
    return pads


def _input_size(input_size, op):
    """(height, width) as non-negative Python ints."""
    if hasattr(input_size, "__len__") and not isinstance(input_size, (str, bytes)):
        size = tuple(input_size)
        if len(size) == 2 and all(is_int(v) for v in size):
            size = (int(size[0]), int(size[1]))
            if min(size) < 0:
                raise ValueError(f"{op}: input_size must be non-negative, got {input_size!r}")
            return size
    raise TypeError(f"{op}: input_size must be a pair of ints (height, width), got {input_size!r}")


def compute_padding(
    input_size: Sequence[int],
    kernel_size: IntOrPair,
    strides: IntOrPair = 1,
    padding: Padding = "valid",
    dilation_rate: IntOrPair = 1,
) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Padding amounts ``((top, bottom), (left, right))`` for a 2-D window operation.

    The one rule for every op: ``input_size`` is ``(height, width)``; the effective kernel is
    ``(k - 1) * dilation + 1``. ``"valid"`` pads nothing; ``"same"`` pads
    ``max((ceil(n / s) - 1) * s + k_eff - n, 0)`` cells in total with the smaller half before
    (TensorFlow's rule: the extra cell goes to the bottom/right); anything else is explicit.
    """
    return _geometry(input_size, kernel_size, strides, padding, dilation_rate, "compute_padding")[1]


def conv_output_shape(
    input_size: Sequence[int],
    kernel_size: IntOrPair,
    strides: IntOrPair = 1,
    padding: Padding = "valid",
    dilation_rate: IntOrPair = 1,
) -> Tuple[int, int]:
    """Output ``(height, width)`` of a 2-D window operation on ``input_size = (height, width)``.

    ``"same"``: ``ceil(n / s)``; otherwise ``floor((n + pad_before + pad_after - k_eff) / s) + 1``
    with ``k_eff = (k - 1) * dilation + 1``. Raises ``ValueError`` when the (effective) kernel
    is larger than the padded input.
    """
    return _geometry(input_size, kernel_size, strides, padding, dilation_rate, "conv_output_shape")[
        0
    ]


def _geometry(input_size, kernel_size, strides, padding, dilation_rate, op):
    """(out_h, out_w), ((top, bottom), (left, right)) after validating every argument."""
    n = _input_size(input_size, op)
    k = normalize_pair(kernel_size, "kernel_size", op)
    s = normalize_pair(strides, "strides", op)
    d = normalize_pair(dilation_rate, "dilation_rate", op)
    k_eff = tuple((k[i] - 1) * d[i] + 1 for i in range(2))
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            pads = ((0, 0), (0, 0))
        elif mode == "same":
            out = tuple(-(-n[i] // s[i]) for i in range(2))
            total = tuple(max((out[i] - 1) * s[i] + k_eff[i] - n[i], 0) for i in range(2))
            pads = tuple((t // 2, t - t // 2) for t in total)
            _check_index_range(n, pads, k_eff, s, op)
            return out, pads
        else:
            raise ValueError(f'{op}: padding must be {_PADDING_HELP}, got "{padding}"')
    else:
        pads = _explicit_padding(padding, op)
    padded = tuple(n[i] + pads[i][0] + pads[i][1] for i in range(2))
    if padded[0] < k_eff[0] or padded[1] < k_eff[1]:
        raise ValueError(
            f"{op}: the effective kernel {k_eff} (kernel_size {k}, dilation_rate {d}) is larger "
            f"than the padded input {padded} (input {n}, padding {pads}); use a smaller kernel, "
            'more padding or padding="same"'
        )
    _check_index_range(n, pads, k_eff, s, op)
    out = tuple((padded[i] - k_eff[i]) // s[i] + 1 for i in range(2))
    return out, pads


def _check_index_range(n, pads, k_eff, s, op):
    for i, axis in enumerate(("height", "width")):
        if n[i] + pads[i][0] + pads[i][1] + k_eff[i] + s[i] >= INDEX_LIMIT:
            raise ValueError(
                f"{op}: along {axis}, input {n[i]} + padding {pads[i]} + effective kernel "
                f"{k_eff[i]} + stride {s[i]} exceeds the 64-bit index range (2**62) of the kernels"
            )


def _empty(shape, dtype, op, what="output"):
    """np.empty with an error that names the op and the shape when the size is impossible."""
    try:
        return np.empty(shape, dtype=dtype)
    except MemoryError:
        nbytes = np.dtype(dtype).itemsize * int(np.prod([int(v) for v in shape], dtype=object))
        raise MemoryError(
            f"{op}: cannot allocate the {what} of shape {shape} ({nbytes} bytes)"
        ) from None
    except ValueError as exc:
        raise ValueError(
            f"{op}: the {what} shape {shape} is too large to allocate ({exc})"
        ) from None


def _float_dtype(arrays, op):
    """The dtype an op computes in: float32 when every float input is float32 or float16.

    Precision follows the item size, whatever the byte order: ``'>f8'`` is computed in
    float64 and ``'>f4'`` in float32 (the arrays are then converted to native order).
    """
    kinds = []
    for name, a in arrays:
        dt = a.dtype
        if dt.kind == "f" and dt.itemsize <= 8:
            kinds.append(np.float64 if dt.itemsize == 8 else np.float32)
        elif dt.kind in "biu":
            kinds.append(np.float64)
        else:
            raise TypeError(
                f"{op}: {name} has dtype {dt}, which cconv cannot compute with; "
                "use float32 or float64 (integers and booleans are accepted and become float64)"
            )
    return np.float64 if np.float64 in kinds else np.float32


def _as_array(value, name, op, what="an array"):
    """``np.asarray(value)``; TypeError naming ``name`` for None (which must be ``what``) and
    for what NumPy cannot convert (ragged nested lists and the like)."""
    if value is None:
        raise TypeError(f"{op}: {name} must be {what}, got None")
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(f"{op}: {name} could not be converted to an array: {exc}") from None


def _arrays(op, **named):
    """Validate and convert named array arguments to C-contiguous arrays of one float dtype."""
    arrs = [(name, _as_array(value, name, op)) for name, value in named.items()]
    dtype = _float_dtype(arrs, op)
    return dtype, [np.ascontiguousarray(a, dtype=dtype) for _, a in arrs]


def _arrays_with_bias(op, x, kernel, bias):
    """``_arrays`` of x, kernel and bias, a bias of None staying None:
    ``(dtype, x, kernel, bias)``."""
    if bias is None:
        dtype, (x, kernel) = _arrays(op, x=x, kernel=kernel)
        return dtype, x, kernel, None
    dtype, (x, kernel, bias) = _arrays(op, x=x, kernel=kernel, bias=bias)
    return dtype, x, kernel, bias


def _check_bias(op, bias, kernel, axis):
    """A bias must be None or ``(kernel.shape[axis],)``, one value per filter."""
    if bias is not None and bias.shape != (kernel.shape[axis],):
        raise ValueError(
            f"{op}: bias must have shape ({kernel.shape[axis]},) to match kernel shape "
            f"{kernel.shape}, got {bias.shape}"
        )


def _check_dy(op, dy, expected, forward, x, kernel):
    """``dy`` must have the shape ``expected`` of ``forward``'s output on x with kernel."""
    if dy.shape != expected:
        raise ValueError(
            f"{op}: dy must have the output shape {expected} of {forward} on x {x.shape} with "
            f"kernel {kernel.shape}, got {dy.shape}"
        )


def _weight_grads(op, dtype, x, kernel, input_grad):
    """Fresh ``(dx, dkernel)`` shaped like x and kernel; dx is None without ``input_grad``."""
    dx = _empty(x.shape, dtype, op, "dx") if input_grad else None
    return dx, _empty(kernel.shape, dtype, op, "dkernel")


def _zero_fill(*grads):
    """Zero the gradients that are not None (nothing flows back from an empty output)."""
    for grad in grads:
        if grad is not None:
            grad.fill(0)


def _check_rank(a, name, op, rank=4, what="(batch, height, width, channels)"):
    if a.ndim != rank:
        raise ValueError(f"{op}: {name} must be {rank}-D {what}, got shape {a.shape}")


def _conv_setup(op, x, kernel, strides, padding, dilation_rate, groups):
    """Checks shared by conv2d and conv2d_backward; returns (out_hw, pads, strides, dilation)."""
    _check_rank(x, "x", op)
    _check_rank(kernel, "kernel", op, what="(kernel_h, kernel_w, in_channels // groups, filters)")
    groups = check_int(groups, "groups", op)
    cin, cout = x.shape[3], kernel.shape[3]
    if groups > max(cin, 1):
        raise ValueError(
            f"{op}: groups={groups} is larger than the {cin} channels of x (shape {x.shape})"
        )
    if kernel.shape[2] * groups != cin:
        raise ValueError(
            f"{op}: x has {cin} channels (shape {x.shape}) but kernel shape {kernel.shape} with "
            f"groups={groups} expects {kernel.shape[2] * groups} "
            "(x channels must equal kernel.shape[2] * groups)"
        )
    if cout % groups != 0:
        raise ValueError(
            f"{op}: the number of filters {cout} (kernel shape {kernel.shape}) must be divisible "
            f"by groups={groups}"
        )
    if kernel.shape[0] < 1 or kernel.shape[1] < 1:
        raise ValueError(f"{op}: kernel height and width must be >= 1, got shape {kernel.shape}")
    out, pads = _geometry(x.shape[1:3], kernel.shape[:2], strides, padding, dilation_rate, op)
    strides = normalize_pair(strides, "strides", op)
    return out, pads, strides, normalize_pair(dilation_rate, "dilation_rate", op)


# --------------------------------------------------------------------------- convolution
def conv2d(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: Optional[ArrayLike] = None,
    strides: IntOrPair = 1,
    padding: Padding = "valid",
    dilation_rate: IntOrPair = 1,
    groups: int = 1,
) -> np.ndarray:
    """2-D convolution (cross-correlation, as in Keras/TensorFlow), NHWC.

    Args:
        x: ``(batch, height, width, channels)``.
        kernel: ``(kernel_h, kernel_w, channels // groups, filters)``.
        bias: ``(filters,)`` or None.
        strides: int or ``(stride_h, stride_w)``, positive.
        padding: ``"valid"``, ``"same"`` (TensorFlow's rule), an int, ``(pad_h, pad_w)`` or
            ``((top, bottom), (left, right))``.
        dilation_rate: int or pair, positive; may be combined with strides > 1.
        groups: positive int dividing both ``channels`` and ``filters``
            (``groups == channels`` is a depthwise convolution).

    Returns:
        ``(batch, out_h, out_w, filters)``, sizes from ``conv_output_shape``.

    Raises:
        TypeError: an argument of the wrong type (``None``, complex data, a float padding).
        ValueError: ranks, channel counts, non-positive strides/dilation, unknown padding, or
            a kernel larger than the padded input; the message names the shapes.
    """
    op = "conv2d"
    dtype, x, kernel, bias = _arrays_with_bias(op, x, kernel, bias)
    (oh, ow), pads, s, d = _conv_setup(op, x, kernel, strides, padding, dilation_rate, groups)
    _check_bias(op, bias, kernel, 3)
    y = _empty((x.shape[0], oh, ow, kernel.shape[3]), dtype, op)
    _conv.conv2d_forward(x, kernel, bias, y, s, d, (pads[0][0], pads[1][0]), int(groups),
                         _threads(y.size * kernel.shape[0] * kernel.shape[1] * kernel.shape[2]))
    return y


def conv2d_backward(
    dy: ArrayLike,
    x: ArrayLike,
    kernel: ArrayLike,
    strides: IntOrPair = 1,
    padding: Padding = "valid",
    dilation_rate: IntOrPair = 1,
    groups: int = 1,
    *,
    input_grad: bool = True,
) -> Tuple[Optional[np.ndarray], np.ndarray, np.ndarray]:
    """Gradients of ``conv2d`` with respect to its input, kernel and bias.

    Args:
        dy: gradient of the loss with respect to the output, ``(batch, out_h, out_w, filters)``.
        x, kernel, strides, padding, dilation_rate, groups: as given to ``conv2d``.
        input_grad: False skips ``dx`` (returned as None), e.g. for a network's first layer.

    Returns:
        ``(dx, dkernel, dbias)`` shaped like ``x``, ``kernel`` and ``(filters,)``.
    """
    op = "conv2d_backward"
    dtype, (dy, x, kernel) = _arrays(op, dy=dy, x=x, kernel=kernel)
    (oh, ow), pads, s, d = _conv_setup(op, x, kernel, strides, padding, dilation_rate, groups)
    _check_dy(op, dy, (x.shape[0], oh, ow, kernel.shape[3]), "conv2d", x, kernel)
    dx, dkernel = _weight_grads(op, dtype, x, kernel, input_grad)
    dbias = _empty((kernel.shape[3],), dtype, op, "dbias")
    work = 2 * dy.size * kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
    if dy.size == 0:
        # Nothing flows back from an empty output. (The direct kernel's scratch planes also
        # assume a non-empty output: calling it here wrote out of bounds.)
        _zero_fill(dx, dkernel, dbias)
        return dx, dkernel, dbias
    _conv.conv2d_backward(dy, x, kernel, dx, dkernel, dbias, s, d, (pads[0][0], pads[1][0]),
                          int(groups), _threads(work))
    return dx, dkernel, dbias


# --------------------------------------------------------------------------- pooling
def _pool_setup(op, x, pool_size, strides, padding):
    _check_rank(x, "x", op)
    pool = normalize_pair(pool_size, "pool_size", op)
    strides = pool if strides is None else normalize_pair(strides, "strides", op)
    out, pads = _geometry(x.shape[1:3], pool, strides, padding, 1, op)
    if (x.shape[1] == 0 and out[0] > 0) or (x.shape[2] == 0 and out[1] > 0):
        raise ValueError(
            f"{op}: x has zero height or width (shape {x.shape}) but padding {padding!r} makes "
            f"{out[0]}x{out[1]} windows that hold no real cell"
        )
    if not isinstance(padding, str):
        for i, axis in enumerate(("height", "width")):
            if max(pads[i]) >= pool[i]:
                raise ValueError(
                    f"{op}: padding {pads[i]} along {axis} must be smaller than pool_size "
                    f"{pool[i]}, or some windows would hold no real cell"
                )
    return out, pads, pool, strides


def _pool_forward(op, is_max, x, pool_size, strides, padding):
    dtype, (x,) = _arrays(op, x=x)
    (oh, ow), pads, pool, strides = _pool_setup(op, x, pool_size, strides, padding)
    y = _empty((x.shape[0], oh, ow, x.shape[3]), dtype, op)
    _poolext.pool2d_forward(x, y, is_max, pool, strides, (pads[0][0], pads[1][0]),
                            _threads(y.size * pool[0] * pool[1]))
    return y


def _pool_backward(op, is_max, dy, x, pool_size, strides, padding, all_ties=False):
    dtype, (dy, x) = _arrays(op, dy=dy, x=x)
    (oh, ow), pads, pool, strides = _pool_setup(op, x, pool_size, strides, padding)
    expected = (x.shape[0], oh, ow, x.shape[3])
    if dy.shape != expected:
        raise ValueError(
            f"{op}: dy must have the pooled shape {expected} of x {x.shape} with pool_size "
            f"{pool}, strides {strides}, padding {padding!r}, got {dy.shape}"
        )
    dx = _empty(x.shape, dtype, op, "dx")
    _poolext.pool2d_backward(dy, x, dx, is_max, pool, strides, (pads[0][0], pads[1][0]),
                             _threads(dy.size * pool[0] * pool[1]), all_ties)
    return dx


def max_pool2d(
    x: ArrayLike,
    pool_size: IntOrPair,
    strides: Optional[IntOrPair] = None,
    padding: Padding = "valid",
) -> np.ndarray:
    """Max pooling, NHWC: ``(batch, h, w, c)`` -> ``(batch, out_h, out_w, c)``.

    ``pool_size`` and ``strides`` are ints or pairs (``strides`` defaults to ``pool_size``);
    ``padding`` as in ``conv2d``. Padded cells never win (they act as -inf); explicit padding
    must be smaller than the pool size. NaN propagates.
    """
    return _pool_forward("max_pool2d", True, x, pool_size, strides, padding)


def avg_pool2d(
    x: ArrayLike,
    pool_size: IntOrPair,
    strides: Optional[IntOrPair] = None,
    padding: Padding = "valid",
) -> np.ndarray:
    """Average pooling, NHWC: ``(batch, h, w, c)`` -> ``(batch, out_h, out_w, c)``.

    Each window is divided by the number of real (non-padded) cells it covers, as TensorFlow
    does for ``"same"``; explicit padding follows the same rule.
    """
    return _pool_forward("avg_pool2d", False, x, pool_size, strides, padding)


def max_pool2d_backward(
    dy: ArrayLike,
    x: ArrayLike,
    pool_size: IntOrPair,
    strides: Optional[IntOrPair] = None,
    padding: Padding = "valid",
) -> np.ndarray:
    """Gradient of ``max_pool2d``: ``dy`` ``(batch, out_h, out_w, c)`` -> ``dx`` like ``x``.

    Each window's gradient goes to its first maximum in row-major order (TensorFlow's choice
    among ties); overlapping windows accumulate.
    """
    return _pool_backward("max_pool2d_backward", True, dy, x, pool_size, strides, padding)


def avg_pool2d_backward(
    dy: ArrayLike,
    x: ArrayLike,
    pool_size: IntOrPair,
    strides: Optional[IntOrPair] = None,
    padding: Padding = "valid",
) -> np.ndarray:
    """Gradient of ``avg_pool2d``: ``dy`` ``(batch, out_h, out_w, c)`` -> ``dx`` like ``x``."""
    return _pool_backward("avg_pool2d_backward", False, dy, x, pool_size, strides, padding)


# --------------------------------------------------------------------------- dense
def _dense_setup(op, x, kernel):
    if x.ndim < 2:
        raise ValueError(
            f"{op}: x must be at least 2-D (batch, ..., in_features), got shape {x.shape}"
        )
    if kernel.ndim != 2:
        raise ValueError(f"{op}: kernel must be 2-D (in_features, units), got shape {kernel.shape}")
    if x.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"{op}: x has {x.shape[-1]} features (shape {x.shape}) but kernel shape "
            f"{kernel.shape} expects {kernel.shape[0]}"
        )
    # the row count explicitly: reshape(-1, 0) is ambiguous when in_features is 0
    return x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1])


def dense(x: ArrayLike, kernel: ArrayLike, bias: Optional[ArrayLike] = None) -> np.ndarray:
    """``x @ kernel + bias`` on cconv's GEMM and threads (Keras's ``Dense`` without activation).

    Args:
        x: ``(batch, ..., in_features)``.
        kernel: ``(in_features, units)``; bias: ``(units,)`` or None.

    Returns:
        ``(batch, ..., units)``.
    """
    op = "dense"
    dtype, x, kernel, bias = _arrays_with_bias(op, x, kernel, bias)
    x2 = _dense_setup(op, x, kernel)
    _check_bias(op, bias, kernel, 1)
    y = _empty((x2.shape[0], kernel.shape[1]), dtype, op)
    _blas.matmul(x2, kernel, y, False, False, _threads(y.size * kernel.shape[0]))
    if bias is not None:
        y += bias
    return y.reshape(x.shape[:-1] + (kernel.shape[1],))


def dense_backward(
    dy: ArrayLike, x: ArrayLike, kernel: ArrayLike, *, input_grad: bool = True
) -> Tuple[Optional[np.ndarray], np.ndarray, np.ndarray]:
    """Gradients of ``dense``: ``(dx, dkernel, dbias)`` shaped like ``x``, ``kernel`` and
    ``(units,)``; ``input_grad=False`` skips ``dx`` (None)."""
    op = "dense_backward"
    dtype, (dy, x, kernel) = _arrays(op, dy=dy, x=x, kernel=kernel)
    x2 = _dense_setup(op, x, kernel)
    _check_dy(op, dy, x.shape[:-1] + (kernel.shape[1],), "dense", x, kernel)
    dy2 = dy.reshape(x2.shape[0], kernel.shape[1])
    work = x2.shape[0] * kernel.size
    dx, dkernel = _weight_grads(op, dtype, x, kernel, input_grad)
    _blas.matmul(x2, dy2, dkernel, True, False, _threads(work))
    if dx is not None:
        _blas.matmul(dy2, kernel, dx.reshape(x2.shape), False, True, _threads(work))
    return dx, dkernel, channel_sum(dy2).astype(dtype)


# ----------------------------------------------------------------------- transposed convolution
def conv_transpose_output_shape(
    input_size: Sequence[int],
    kernel_size: IntOrPair,
    strides: IntOrPair = 1,
    padding: str = "valid",
    output_padding: Optional[IntOrPair] = None,
    dilation_rate: IntOrPair = 1,
) -> Tuple[int, int]:
    """Output ``(height, width)`` of a transposed convolution (Keras 3's rule).

    Per axis, with ``k_eff = (k - 1) * dilation + 1``: ``"valid"`` gives
    ``(n - 1) * s + k_eff + output_padding`` (default ``output_padding``
    ``max(k_eff, s) - k_eff``); ``"same"`` gives ``n * s`` without ``output_padding``, else
    ``(n - 1) * s + k_eff % 2 + output_padding``.
    """
    return _conv_transpose_geometry(input_size, kernel_size, strides, padding, output_padding,
                                    dilation_rate, "conv_transpose_output_shape")[0]


def _conv_transpose_geometry(input_size, kernel_size, strides, padding, output_padding,
                             dilation_rate, op):
    """(out_h, out_w), pads of the convolution whose input gradient the transpose is."""
    n = _input_size(input_size, op)
    k = normalize_pair(kernel_size, "kernel_size", op)
    s = normalize_pair(strides, "strides", op)
    d = normalize_pair(dilation_rate, "dilation_rate", op)
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f'{op}: padding must be "valid" or "same", got {padding!r}')
    mode = padding.lower()
    if output_padding is not None:
        if is_int(output_padding):
            output_padding = (output_padding, output_padding)
        if not (isinstance(output_padding, (tuple, list)) and len(output_padding) == 2
                and all(is_int(v) and 0 <= v < s[i] for i, v in enumerate(output_padding))):
            raise ValueError(f"{op}: output_padding must be None or non-negative ints smaller "
                             f"than strides {s}, got {output_padding!r}")
    if min(n) < 1:
        raise ValueError(f"{op}: input height and width must be >= 1, got {n}")
    out = []
    for i in range(2):
        ke = (k[i] - 1) * d[i] + 1
        if mode == "valid":
            extra = max(ke, s[i]) - ke if output_padding is None else output_padding[i]
            out.append((n[i] - 1) * s[i] + ke + extra)
        elif output_padding is None:
            out.append(n[i] * s[i])
        else:
            out.append((n[i] - 1) * s[i] + ke % 2 + output_padding[i])
    out = tuple(out)
    back, pads = _geometry(out, k, s, mode, d, op)
    if back != n:
        raise ValueError(
            f"{op}: output_padding={output_padding!r} gives an output of size {out} whose "
            f'"{mode}" convolution has size {back}, not the input size {n} (an even kernel with '
            '"same" padding needs output_padding >= 1 or None)'
        )
    return out, pads, s, d


def _conv_transpose_setup(op, x, kernel, strides, padding, output_padding, dilation_rate):
    _check_rank(x, "x", op)
    _check_rank(kernel, "kernel", op, what="(kernel_h, kernel_w, filters, in_channels)")
    if kernel.shape[3] != x.shape[3]:
        raise ValueError(
            f"{op}: x has {x.shape[3]} channels (shape {x.shape}) but kernel shape "
            f"{kernel.shape} expects {kernel.shape[3]} (kernel is (kh, kw, filters, in_channels))"
        )
    if kernel.shape[0] < 1 or kernel.shape[1] < 1:
        raise ValueError(f"{op}: kernel height and width must be >= 1, got shape {kernel.shape}")
    return _conv_transpose_geometry(x.shape[1:3], kernel.shape[:2], strides, padding,
                                    output_padding, dilation_rate, op)


def conv2d_transpose(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: Optional[ArrayLike] = None,
    strides: IntOrPair = 1,
    padding: str = "valid",
    output_padding: Optional[IntOrPair] = None,
    dilation_rate: IntOrPair = 1,
) -> np.ndarray:
    """Transposed 2-D convolution (Keras's ``Conv2DTranspose``), NHWC.

    The input gradient of ``conv2d`` computed by the same kernels: ``x`` plays the part of
    that convolution's output gradient.

    Args:
        x: ``(batch, height, width, in_channels)``.
        kernel: ``(kernel_h, kernel_w, filters, in_channels)`` (Keras's layout).
        bias: ``(filters,)`` or None.
        strides, dilation_rate: ints or pairs, positive.
        padding: ``"valid"`` or ``"same"``.
        output_padding: None or ints (pair) smaller than ``strides``; see
            ``conv_transpose_output_shape``.

    Returns:
        ``(batch, out_h, out_w, filters)``.
    """
    op = "conv2d_transpose"
    dtype, x, kernel, bias = _arrays_with_bias(op, x, kernel, bias)
    (oh, ow), pads, s, d = _conv_transpose_setup(op, x, kernel, strides, padding, output_padding,
                                                 dilation_rate)
    _check_bias(op, bias, kernel, 2)
    y = _empty((x.shape[0], oh, ow, kernel.shape[2]), dtype, op)
    if x.size == 0 or y.size == 0:
        y.fill(0)
    else:
        # y is the convolution's "x" argument only for its shape: with no kernel or bias
        # gradient requested the kernel never reads it.
        work = x.size * kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
        _conv.conv2d_backward(x, y, kernel, y, None, None, s, d, (pads[0][0], pads[1][0]), 1,
                              _threads(work))
    if bias is not None:
        y += bias
    return y


def conv2d_transpose_backward(
    dy: ArrayLike,
    x: ArrayLike,
    kernel: ArrayLike,
    strides: IntOrPair = 1,
    padding: str = "valid",
    output_padding: Optional[IntOrPair] = None,
    dilation_rate: IntOrPair = 1,
    *,
    input_grad: bool = True,
) -> Tuple[Optional[np.ndarray], np.ndarray, np.ndarray]:
    """Gradients of ``conv2d_transpose``: ``(dx, dkernel, dbias)`` shaped like ``x``,
    ``kernel`` and ``(filters,)``. ``dx`` is ``conv2d(dy, kernel)``, ``dkernel`` the kernel
    gradient of that convolution; ``input_grad=False`` skips ``dx`` (None)."""
    op = "conv2d_transpose_backward"
    dtype, (dy, x, kernel) = _arrays(op, dy=dy, x=x, kernel=kernel)
    (oh, ow), pads, s, d = _conv_transpose_setup(op, x, kernel, strides, padding, output_padding,
                                                 dilation_rate)
    _check_dy(op, dy, (x.shape[0], oh, ow, kernel.shape[2]), "conv2d_transpose", x, kernel)
    dx, dkernel = _weight_grads(op, dtype, x, kernel, input_grad)
    dbias = channel_sum(dy).astype(dtype)
    if dy.size == 0 or x.size == 0:
        _zero_fill(dx, dkernel)
        return dx, dkernel, dbias
    before = (pads[0][0], pads[1][0])
    work = x.size * kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
    if dx is not None:
        _conv.conv2d_forward(dy, kernel, None, dx, s, d, before, 1, _threads(work))
    _conv.conv2d_backward(x, dy, kernel, None, dkernel, None, s, d, before, 1, _threads(work))
    return dx, dkernel, dbias


# --------------------------------------------------------------------------- upsampling
_INTERPOLATIONS = ("nearest", "bilinear")


def _upsampling_setup(op, x, size, interpolation):
    _check_rank(x, "x", op)
    sh, sw = normalize_pair(size, "size", op)
    if not isinstance(interpolation, str) or interpolation.lower() not in _INTERPOLATIONS:
        raise ValueError(f"{op}: interpolation must be one of {_INTERPOLATIONS}, "
                         f"got {interpolation!r}")
    if x.shape[1] * sh >= INDEX_LIMIT or x.shape[2] * sw >= INDEX_LIMIT:
        raise ValueError(f"{op}: the upsampled size of x {x.shape} by {size!r} is too large")
    return (sh, sw), interpolation.lower()


def _bilinear_table(in_size, out_size, dtype):
    """Rows (or columns) ``lo``, ``hi`` and weight ``lerp`` of bilinear resizing with half-pixel
    centers (TensorFlow's ResizeBilinear): ``src = (i + 0.5) * (in / out) - 0.5``,
    ``lo = max(floor(src), 0)``, ``hi = min(ceil(src), in - 1)``, ``lerp = src - floor(src)``,
    each step rounded to ``dtype`` (TensorFlow computes in float32)."""
    t = np.dtype(dtype).type
    scale = t(in_size) / t(out_size)
    src = (np.arange(out_size, dtype=dtype) + t(0.5)) * scale - t(0.5)
    floor = np.floor(src)
    lo = np.maximum(floor, 0).astype(np.int64)
    hi = np.minimum(np.ceil(src), in_size - 1).astype(np.int64)
    return lo, hi, np.ascontiguousarray(src - floor, dtype=dtype)


def upsampling2d(x: ArrayLike, size: IntOrPair = 2, interpolation: str = "nearest") -> np.ndarray:
    """Upsampling by integer factors (Keras's ``UpSampling2D``), NHWC.

    Args:
        x: ``(batch, height, width, channels)``.
        size: int or ``(size_h, size_w)``, positive.
        interpolation: ``"nearest"`` (repeat each pixel) or ``"bilinear"`` (half-pixel
            centers, as ``tf.image.resize``; edges clamp).

    Returns:
        ``(batch, height * size_h, width * size_w, channels)``.
    """
    op = "upsampling2d"
    dtype, (x,) = _arrays(op, x=x)
    (sh, sw), mode = _upsampling_setup(op, x, size, interpolation)
    n, h, w, c = x.shape
    y = _empty((n, h * sh, w * sw, c), dtype, op)
    if mode == "nearest":
        _resample.nearest_forward(x, y, sh, sw, _threads(y.size))
    else:
        _resample.bilinear_forward(x, y, *_bilinear_table(h, h * sh, dtype),
                                   *_bilinear_table(w, w * sw, dtype), _threads(4 * y.size))
    return y


def upsampling2d_backward(dy: ArrayLike, x: ArrayLike, size: IntOrPair = 2,
                          interpolation: str = "nearest") -> np.ndarray:
    """Gradient of ``upsampling2d``: ``dy`` ``(batch, h * size_h, w * size_w, c)`` -> ``dx``
    shaped like ``x`` (only ``x``'s shape is used)."""
    op = "upsampling2d_backward"
    dtype, (dy, x) = _arrays(op, dy=dy, x=x)
    (sh, sw), mode = _upsampling_setup(op, x, size, interpolation)
    n, h, w, c = x.shape
    if dy.shape != (n, h * sh, w * sw, c):
        raise ValueError(f"{op}: dy must have the upsampled shape {(n, h * sh, w * sw, c)} of x "
                         f"{x.shape} with size {(sh, sw)}, got {dy.shape}")
    dx = _empty(x.shape, dtype, op, "dx")
    if mode == "nearest":
        _resample.nearest_backward(dy, dx, sh, sw, _threads(dy.size))
    else:
        _resample.bilinear_backward(dy, dx, *_bilinear_table(h, h * sh, dtype),
                                    *_bilinear_table(w, w * sw, dtype), _threads(4 * dy.size))
    return dx


# ----- dropout: masks from a counter-based generator (Philox4x32-10, cconv/_ext/philox.h) -----
# Element j of a call (its C-order position, or its position in ``noise_shape``) is kept when
# Philox(counter = (j // 4, step), key = seed) word j % 4, read as u = word / 2**32, is >= rate;
# kept values are x * (1 / (1 - rate)), the scale rounded once to x's dtype (TensorFlow's
# formula, which Keras 3's default backend runs). The mask is a function of (seed, step, j) only:
# no thread count or chunking changes it, and the backward recomputes it instead of storing it.

_DROPOUT_GRAIN = 1 << 16   # elements per thread task in _ext/dropout.pyx (its CHUNK)


def _check_rate(rate, op):
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.integer,
                                                                    np.floating)):
        raise TypeError(f"{op}: rate must be a float in [0, 1), got {rate!r}")
    if not 0.0 <= float(rate) < 1.0:   # also refuses NaN
        raise ValueError(f"{op}: rate must be in [0, 1), got {rate!r}; "
                         "rate is the fraction of elements set to zero")
    return float(rate)


def _check_u64(value, name, op):
    if not is_int(value) or not 0 <= int(value) < 1 << 64:
        raise ValueError(f"{op}: {name} must be an int in [0, 2**64), got {value!r}")
    return int(value)


def _noise_shape(noise_shape, shape, op):
    """Keras's noise_shape: one entry per axis of x, None meaning x's size; each entry x's
    size or 1 (the mask is then shared along that axis)."""
    try:
        ns = tuple(noise_shape)
    except TypeError:
        raise ValueError(f"{op}: noise_shape must be a tuple of ints or None, "
                         f"got {noise_shape!r}") from None
    if len(ns) != len(shape):
        raise ValueError(f"{op}: noise_shape {ns!r} must have one entry per axis of x, whose "
                         f"shape is {shape}")
    out = []
    for n, d in zip(ns, shape):
        if n is None:
            n = d
        if not is_int(n) or int(n) not in (d, 1):
            raise ValueError(f"{op}: noise_shape {ns!r} cannot be broadcast to x's shape "
                             f"{shape}: each entry must be None, 1 or x's size on that axis")
        out.append(int(n))
    return tuple(out)


def dropout_mask(shape, rate: float, seed: int, step: int = 0, dtype=None) -> np.ndarray:
    """The mask :func:`dropout` applies: ``1 / (1 - rate)`` (in ``dtype``) where an element of
    an array of ``shape`` is kept, 0 where it is dropped. ``dtype``: float32 (default
    ``cconv.backend.floatx()``) or float64."""
    op = "dropout_mask"
    rate = _check_rate(rate, op)
    seed = _check_u64(seed, "seed", op)
    step = _check_u64(step, "step", op)
    dtype = np.dtype(_backend.floatx() if dtype is None else dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dtype}")
    m = _empty(tuple(int(d) for d in shape), dtype, op, "mask")
    _dropext.dropout_mask(m.reshape(-1), seed, step, rate, 0,
                          _threads(m.size * 16))
    return m


def dropout(x: ArrayLike, rate: float, seed: int, step: int = 0,
            noise_shape: Optional[Sequence[Optional[int]]] = None) -> np.ndarray:
    """Dropout in training: each element of ``x`` is kept with probability ``1 - rate`` and
    scaled by ``1 / (1 - rate)``, or set to 0 (also where ``x`` is inf or NaN).

    Args:
        x: any shape; float32 stays float32, float64 float64 (dtype rules: module docstring).
        rate: float in [0, 1), the fraction dropped.
        seed, step: ints in [0, 2**64). The mask is a function of (seed, step, element index)
            only: the same arguments give the same mask for any thread count. Dropout layers
            pass their seed and a step counted per training call.
        noise_shape: Keras's: one entry per axis, None or x's size (a mask entry per
            element along that axis) or 1 (one mask entry shared along it); the index of a
            mask entry is its C-order position in ``noise_shape``.

    Returns:
        A new array shaped like ``x``; ``x`` is not modified. The gradient of this function
        with respect to ``x`` is this function applied to ``dy`` with the same arguments.
    """
    op = "dropout"
    rate = _check_rate(rate, op)
    seed = _check_u64(seed, "seed", op)
    step = _check_u64(step, "step", op)
    dtype, (x,) = _arrays(op, x=x)
    if noise_shape is not None:
        ns = _noise_shape(noise_shape, x.shape, op)
        if ns != x.shape:   # a mask over the noise shape, broadcast
            mask = dropout_mask(ns, rate, seed, step, dtype)
            y = np.multiply(x, mask)
            np.copyto(y, 0, where=mask == 0)   # dropped is 0 even for inf or NaN x
            return y
    y = _empty(x.shape, dtype, op)
    # ~16 operations per element (a tenth of a Philox block and the scaling)
    _dropext.dropout(x.reshape(-1), y.reshape(-1), seed, step, rate, 0,
                     _threads(x.size * 16))
    return y


# ----- differentiable ops (Keras's ``keras.ops`` names), recorded on cconv's tape ----------------
# Each takes NumPy arrays (returning a NumPy result, as NumPy would) or tensors of
# ``cconv.autograd`` (returning a tensor that remembers how to differentiate it): a custom
# layer's ``call``, a custom loss or a ``GradientTape`` loop is written once with them. The
# native ops above (conv2d, pooling, dense, conv2d_transpose, upsampling2d) also accept tensors:
# they then record themselves with their own ``*_backward`` as the gradient.
from . import autograd as _ag  # noqa: E402  (autograd reads this module's native ops lazily)


def _differentiable(name, doc):
    taped = getattr(_ag, name)

    def fn(*args, **kwargs):
        if _ag.wants_node(args) or _ag.holds_tensor(kwargs):
            return taped(*args, **kwargs)
        return _ag.value_of(taped(*args, **kwargs))
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc + (" Arrays in, an array out; a ``cconv.autograd.Tensor`` in (or a "
                        "``GradientTape`` open), a tensor out, differentiable.")
    return fn


matmul = _differentiable("matmul", "Matrix product ``x1 @ x2`` (NumPy's ``matmul`` shapes).")
add = _differentiable("add", "``x1 + x2``, broadcast.")
subtract = _differentiable("subtract", "``x1 - x2``, broadcast.")
multiply = _differentiable("multiply", "``x1 * x2``, broadcast.")
divide = _differentiable("divide", "``x1 / x2``, broadcast.")
power = _differentiable("power", "``x1 ** x2``, broadcast.")
maximum = _differentiable("maximum", "Elementwise maximum, broadcast (ties: gradient to x1).")
minimum = _differentiable("minimum", "Elementwise minimum, broadcast (ties: gradient to x1).")
negative = _differentiable("negative", "``-x``, same shape.")
exp = _differentiable("exp", "``e ** x``, same shape.")
log = _differentiable("log", "Natural logarithm, same shape.")
sqrt = _differentiable("sqrt", "Square root, same shape.")
square = _differentiable("square", "``x * x``, same shape.")
absolute = _differentiable("absolute", "``|x|``, same shape.")
tanh = _differentiable("tanh", "Hyperbolic tangent, same shape.")
sigmoid = _differentiable("sigmoid", "``1 / (1 + exp(-x))``, same shape.")
softplus = _differentiable("softplus", "``log(1 + exp(x))``, same shape.")
relu = _differentiable("relu", "``max(x, 0)``, same shape.")
clip = _differentiable("clip", "``x`` limited to ``[x_min, x_max]``, same shape.")
where = _differentiable("where", "``x1`` where ``condition``, else ``x2`` (broadcast).")
mean = _differentiable("mean", "Mean over ``axis`` (None: all); ``keepdims`` keeps size-1 axes.")
reshape = _differentiable("reshape", "``x`` with shape ``newshape`` (one -1 allowed).")
transpose = _differentiable("transpose", "Axes permuted by ``axes`` (None: reversed).")
expand_dims = _differentiable("expand_dims", "A size-1 axis inserted at ``axis``.")
squeeze = _differentiable("squeeze", "Size-1 axes (those in ``axis``) removed.")
concatenate = _differentiable("concatenate", "A list of arrays joined along ``axis``.")
softmax = _differentiable("softmax", "Softmax along ``axis`` (default -1), same shape.")
log_softmax = _differentiable("log_softmax", "Log-softmax along ``axis`` (default -1), stable.")
stop_gradient = _differentiable("stop_gradient", "``x``'s value; no gradient flows through.")
var = _differentiable("var", "Variance over ``axis`` (None: all), divided by the count.")
std = _differentiable("std", "Standard deviation over ``axis`` (None: all).")
leaky_relu = _differentiable("leaky_relu", "``x`` if positive else ``negative_slope * x``.")
cast = _differentiable("cast", "``x`` as ``dtype`` (the gradient cast back).")
conv = _differentiable("conv", "Keras's ``ops.conv``: 2-D convolution, NHWC, no bias.")
max_pool = _differentiable("max_pool", "Keras's ``ops.max_pool``: 2-D max pooling, NHWC.")
average_pool = _differentiable("average_pool",
                               "Keras's ``ops.average_pool``: 2-D average pooling, NHWC.")


def _native_or_taped(array_fn, name):
    """``array_fn`` itself for arrays (no change, a type check more); on tensors (or under
    an open tape) ``cconv.autograd``'s op of that ``name``, which runs ``array_fn`` and its
    ``*_backward``."""
    taped = getattr(_ag, name)

    def fn(x, *args, **kwargs):
        if _ag.in_use and (_ag.wants_node(x) or _ag.holds_tensor(args)
                           or _ag.holds_tensor(kwargs)):
            return taped(x, *args, **kwargs)
        return array_fn(x, *args, **kwargs)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = array_fn.__doc__
    fn.__wrapped__ = array_fn
    fn.array_function = array_fn
    return fn


conv2d = _native_or_taped(conv2d, "conv2d")
conv2d_transpose = _native_or_taped(conv2d_transpose, "conv2d_transpose")
dense = _native_or_taped(dense, "dense")
max_pool2d = _native_or_taped(max_pool2d, "max_pool2d")
avg_pool2d = _native_or_taped(avg_pool2d, "avg_pool2d")
upsampling2d = _native_or_taped(upsampling2d, "upsampling2d")

__all__ += ["matmul", "add", "subtract", "multiply", "divide", "power", "maximum", "minimum",
            "negative", "exp", "log", "sqrt", "square", "absolute", "abs", "tanh", "sigmoid",
            "softplus", "relu", "clip", "where", "sum", "mean", "max", "min", "reshape",
            "transpose", "expand_dims", "squeeze", "concatenate", "softmax", "log_softmax",
            "stop_gradient", "var", "std", "leaky_relu", "cast", "conv", "max_pool",
            "average_pool"]



def _creation_dtype(dtype):
    """Keras's rule for new arrays: ``dtype`` if given, else the default float type."""
    return np.dtype(_backend.floatx() if dtype is None else dtype)


def ones(shape, dtype=None) -> np.ndarray:
    """A new array of ones of ``shape`` (Keras's ``ops.ones``; ``dtype`` defaults to
    ``cconv.backend.floatx()``, float32)."""
    return np.ones(shape, dtype=_creation_dtype(dtype))


def zeros(shape, dtype=None) -> np.ndarray:
    """A new array of zeros of ``shape`` (Keras's ``ops.zeros``; ``dtype`` defaults to
    ``cconv.backend.floatx()``)."""
    return np.zeros(shape, dtype=_creation_dtype(dtype))


def ones_like(x, dtype=None) -> np.ndarray:
    """Ones of ``x``'s shape and (unless ``dtype`` is given) dtype (Keras's ``ops.ones_like``)."""
    x = np.asarray(x)
    return np.ones(x.shape, dtype=x.dtype if dtype is None else np.dtype(dtype))


def zeros_like(x, dtype=None) -> np.ndarray:
    """Zeros of ``x``'s shape and (unless ``dtype`` is given) dtype (Keras's
    ``ops.zeros_like``)."""
    x = np.asarray(x)
    return np.zeros(x.shape, dtype=x.dtype if dtype is None else np.dtype(dtype))


__all__ += ["ones", "zeros", "ones_like", "zeros_like"]

# Keras's ``ops.sum`` / ``max`` / ``min`` / ``abs`` are served by name (PEP 562) rather than
# defined here, where they would shadow the builtins this module's functions use.
_BUILTIN_NAMES = {
    "sum": _differentiable("sum", "Sum over ``axis`` (None: all); ``keepdims`` keeps size-1 axes."),
    "max": _differentiable("max", "Maximum over ``axis`` (None: all); ties share the gradient."),
    "min": _differentiable("min", "Minimum over ``axis`` (None: all); ties share the gradient."),
    "abs": absolute,
}


def __getattr__(name):
    try:
        return _BUILTIN_NAMES[name]
    except KeyError:
        raise AttributeError(f"module 'cconv.ops' has no attribute {name!r}") from None
