"""The four convolution functions of a well-known ML curriculum, compiled.

Same names and signatures as the NumPy versions students write, NHWC throughout:

* ``A_prev``: ``(m, h_prev, w_prev, c_prev)``
* ``W``: ``(kh, kw, c_prev, c_new)``; ``b``: ``(1, 1, 1, c_new)``
* ``padding``: ``"same"``, ``"valid"`` or explicit ``(ph, pw)``; ``stride``: ``(sh, sw)``.

Every function takes ``semantics``:

* ``"course"`` (the default) follows the course's own rules. ``"same"`` pads symmetrically,
  ``ph = ((h_prev - 1) * sh + kh - h_prev) // 2`` on both sides (``pw`` alike), so the output
  is ``(h_prev + 2 * ph - kh) // sh + 1`` high (28x28, 3x3 kernel, stride 2 -> 27x27).
  Max pooling's gradient goes to EVERY cell equal to its window's maximum
  (``mask = window == window.max()``): ``pool_backward(np.ones((1, 1, 1, 1)),
  np.zeros((1, 2, 2, 1)), (2, 2), stride=(2, 2))`` is ``[[1, 1], [1, 1]]``. A NaN in a window
  makes its maximum NaN (``pool_forward``) and its gradient goes to every NaN cell.
* ``"tensorflow"`` follows ``cconv.ops`` (TensorFlow's rules, like ``cconv.layers``):
  ``"same"`` gives ``ceil(h_prev / sh)`` rows with the extra padding cell at the bottom/right
  (``cconv.ops.compute_padding``; 28x28, 3x3, stride 2 -> 14x14), and max pooling's gradient
  goes to the FIRST maximum of each window in row-major order (the example gives
  ``[[1, 0], [0, 0]]``).

Both run on the compiled core, in float32 and float64, with results bit-identical for any
thread count; ``"valid"`` and explicit padding mean the same in both. ``conv_backward`` accepts
the ``dZ`` that ``conv_forward`` with the same arguments produces.
"""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

from . import ops
from ._validation import normalize_pair
from .ops import IntOrPair, Padding

__all__ = ["conv_forward", "conv_backward", "pool_forward", "pool_backward"]

_SEMANTICS = ("course", "tensorflow")


def _bias_vector(b, W, op):
    b = ops._as_array(b, "b", op, "an array of shape (1, 1, 1, c_new)")
    try:
        w_shape = np.shape(W)
    except Exception:  # a ragged W: ops reports it, naming the argument
        w_shape = ()
    c_new = w_shape[-1] if len(w_shape) == 4 else None
    if c_new is not None and b.size != c_new:
        raise ValueError(f"{op}: b must have shape (1, 1, 1, {c_new}) to match W, got {b.shape}")
    return b.reshape(-1)


def _is_course(semantics, op):
    """True for the course's rules, False for TensorFlow's; anything else is a ValueError."""
    if not isinstance(semantics, str) or semantics not in _SEMANTICS:
        raise ValueError(f'{op}: semantics must be "course" or "tensorflow", got {semantics!r}')
    return semantics == "course"


def _padding(padding, A_prev, W, stride, semantics, op):
    """The padding ``cconv.ops`` gets: the course's symmetric ``(ph, pw)`` for ``"same"`` in
    course mode, ``padding`` unchanged otherwise (and for arrays ops will reject anyway).

    ``ph = ((h_prev - 1) * sh + kh - h_prev) // 2`` (floored, never below 0), ``pw`` alike.
    """
    course = _is_course(semantics, op)
    if not (course and isinstance(padding, str) and padding.lower() == "same"):
        return padding
    try:
        a_shape, w_shape = np.shape(A_prev), np.shape(W)
    except Exception:  # a ragged array: ops reports it, naming the argument
        return padding
    if len(a_shape) != 4 or len(w_shape) != 4:
        return padding  # ops names the bad rank
    sh, sw = normalize_pair(stride, "stride", op)
    (h, w), (kh, kw) = a_shape[1:3], w_shape[:2]
    return (max(((h - 1) * sh + kh - h) // 2, 0), max(((w - 1) * sw + kw - w) // 2, 0))


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
    semantics: str = "course",
) -> np.ndarray:
    """``activation(conv(A_prev, W) + b)``: ``(m, h_new, w_new, c_new)``.

    ``A_prev`` ``(m, h_prev, w_prev, c_prev)``, ``W`` ``(kh, kw, c_prev, c_new)``, ``b``
    ``(1, 1, 1, c_new)``; ``activation`` is any callable on the pre-activation array.
    ``padding="same"``: ``h_new = (h_prev + 2 * ph - kh) // sh + 1`` with the course's
    symmetric ``ph`` (``semantics="course"``), or ``ceil(h_prev / sh)``
    (``semantics="tensorflow"``); see the module docstring.
    """
    op = "conv_forward"
    if not callable(activation):
        raise TypeError(f"{op}: activation must be callable, got {activation!r}")
    padding = _padding(padding, A_prev, W, stride, semantics, op)
    Z = ops.conv2d(A_prev, W, _bias_vector(b, W, op), strides=stride, padding=padding)
    return activation(Z)


def conv_backward(
    dZ: ArrayLike,
    A_prev: ArrayLike,
    W: ArrayLike,
    b: ArrayLike,
    padding: Padding = "same",
    stride: IntOrPair = (1, 1),
    semantics: str = "course",
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dA_prev, dW, db)`` of a convolution; ``db`` is ``(1, 1, 1, c_new)``.

    ``dZ`` ``(m, h_new, w_new, c_new)`` is the gradient with respect to the convolution's
    output, shaped like what ``conv_forward`` with the same ``padding``, ``stride`` and
    ``semantics`` returns; ``dA_prev`` is shaped like ``A_prev`` and ``dW`` like ``W``.
    """
    op = "conv_backward"
    _bias_vector(b, W, op)
    padding = _padding(padding, A_prev, W, stride, semantics, op)
    dA_prev, dW, db = ops.conv2d_backward(dZ, A_prev, W, strides=stride, padding=padding)
    return dA_prev, dW, db.reshape(1, 1, 1, -1)


def pool_forward(
    A_prev: ArrayLike,
    kernel_shape: Sequence[int],
    stride: IntOrPair = (1, 1),
    mode: str = "max",
    semantics: str = "course",
) -> np.ndarray:
    """Max or average pooling without padding: ``(m, h_prev, w_prev, c)`` ->
    ``(m, h_new, w_new, c)``.

    ``kernel_shape`` is ``(kh, kw)``; ``mode`` is ``"max"`` or ``"avg"``. Both ``semantics``
    give the same result here; a window holding NaN has the maximum NaN.
    """
    _is_course(semantics, "pool_forward")
    is_max = _pool_mode(mode, "pool_forward")
    pool = ops.max_pool2d if is_max else ops.avg_pool2d
    return pool(A_prev, _kernel_shape(kernel_shape, "pool_forward"), strides=stride,
                padding="valid")


def pool_backward(
    dA: ArrayLike,
    A_prev: ArrayLike,
    kernel_shape: Sequence[int],
    stride: IntOrPair = (1, 1),
    mode: str = "max",
    semantics: str = "course",
) -> np.ndarray:
    """Gradient of ``pool_forward`` with respect to ``A_prev``.

    ``dA`` ``(m, h_new, w_new, c)`` -> ``dA_prev`` ``(m, h_prev, w_prev, c)``. Max mode gives
    each window's gradient to every cell equal to its maximum (``semantics="course"``) or to
    its first maximum in row-major order (``"tensorflow"``); overlapping windows add. Average
    mode shares it equally among the window's cells.
    """
    op = "pool_backward"
    all_ties = _is_course(semantics, op)
    is_max = _pool_mode(mode, op)
    kernel_shape = _kernel_shape(kernel_shape, op)
    name = "max_pool2d_backward" if is_max else "avg_pool2d_backward"
    return ops._pool_backward(name, is_max, dA, A_prev, kernel_shape, stride, "valid",
                              all_ties=all_ties)
