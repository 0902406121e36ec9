"""The four convolution functions of a well-known ML curriculum, compiled.

Same names and signatures as the NumPy versions students write, NHWC throughout:

* ``A_prev``: ``(m, h_prev, w_prev, c_prev)``
* ``W``: ``(kh, kw, c_prev, c_new)``; ``b``: ``(1, 1, 1, c_new)``
* ``padding``: ``"same"`` (TensorFlow's rule, see ``cconv.ops.compute_padding``),
  ``"valid"`` or explicit ``(ph, pw)``; ``stride``: ``(sh, sw)``.
"""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

from . import ops
from .ops import IntOrPair, Padding

__all__ = ["conv_forward", "conv_backward", "pool_forward", "pool_backward"]


def _bias_vector(b, W, op):
    if b is None:
        raise TypeError(f"{op}: b must be an array of shape (1, 1, 1, c_new), got None")
    try:
        b = np.asarray(b)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(f"{op}: b could not be converted to an array: {exc}") from None
    try:
        w_shape = np.shape(W)
    except Exception:  # a ragged W: ops reports it, naming the argument
        w_shape = ()
    c_new = w_shape[-1] if len(w_shape) == 4 else None
    if c_new is not None and b.size != c_new:
        raise ValueError(f"{op}: b must have shape (1, 1, 1, {c_new}) to match W, got {b.shape}")
    return b.reshape(-1)


def _pool_mode(mode, op):
    if mode not in ("max", "avg"):
        raise ValueError(f'{op}: mode must be "max" or "avg", got {mode!r}')
    return mode == "max"


def _kernel_shape(kernel_shape, op):
    try:
        shape = tuple(kernel_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) != 2:
        raise TypeError(f"{op}: kernel_shape must be a pair (kh, kw), got {kernel_shape!r}")
    return shape


def conv_forward(
    A_prev: ArrayLike,
    W: ArrayLike,
    b: ArrayLike,
    activation: Callable[[np.ndarray], np.ndarray],
    padding: Padding = "same",
    stride: IntOrPair = (1, 1),
) -> np.ndarray:
    """``activation(conv(A_prev, W) + b)``: ``(m, h_new, w_new, c_new)``.

    ``A_prev`` ``(m, h_prev, w_prev, c_prev)``, ``W`` ``(kh, kw, c_prev, c_new)``, ``b``
    ``(1, 1, 1, c_new)``; ``activation`` is any callable on the pre-activation array.
    """
    if not callable(activation):
        raise TypeError(f"conv_forward: activation must be callable, got {activation!r}")
    Z = ops.conv2d(A_prev, W, _bias_vector(b, W, "conv_forward"), strides=stride, padding=padding)
    return activation(Z)


def conv_backward(
    dZ: ArrayLike,
    A_prev: ArrayLike,
    W: ArrayLike,
    b: ArrayLike,
    padding: Padding = "same",
    stride: IntOrPair = (1, 1),
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dA_prev, dW, db)`` of a convolution; ``db`` is ``(1, 1, 1, c_new)``.

    ``dZ`` ``(m, h_new, w_new, c_new)`` is the gradient with respect to the convolution's
    output; ``dA_prev`` is shaped like ``A_prev`` and ``dW`` like ``W``.
    """
    _bias_vector(b, W, "conv_backward")
    dA_prev, dW, db = ops.conv2d_backward(dZ, A_prev, W, strides=stride, padding=padding)
    return dA_prev, dW, db.reshape(1, 1, 1, -1)


def pool_forward(
    A_prev: ArrayLike,
    kernel_shape: Sequence[int],
    stride: IntOrPair = (1, 1),
    mode: str = "max",
) -> np.ndarray:
    """Max or average pooling without padding: ``(m, h_prev, w_prev, c)`` -> ``(m, h_new, w_new, c)``.

    ``kernel_shape`` is ``(kh, kw)``; ``mode`` is ``"max"`` or ``"avg"``.
    """
    is_max = _pool_mode(mode, "pool_forward")
    pool = ops.max_pool2d if is_max else ops.avg_pool2d
    return pool(A_prev, _kernel_shape(kernel_shape, "pool_forward"), strides=stride, padding="valid")


def pool_backward(
    dA: ArrayLike,
    A_prev: ArrayLike,
    kernel_shape: Sequence[int],
    stride: IntOrPair = (1, 1),
    mode: str = "max",
) -> np.ndarray:
    """Gradient of ``pool_forward`` with respect to ``A_prev``.

    ``dA`` ``(m, h_new, w_new, c)`` -> ``dA_prev`` ``(m, h_prev, w_prev, c)``.
    """
    is_max = _pool_mode(mode, "pool_backward")
    grad = ops.max_pool2d_backward if is_max else ops.avg_pool2d_backward
    return grad(dA, A_prev, _kernel_shape(kernel_shape, "pool_backward"), strides=stride,
                padding="valid")
