"""The four convolution functions of a well-known ML curriculum, compiled.

Same names and signatures as the NumPy versions students write, NHWC throughout:

* ``A_prev``: ``(m, h_prev, w_prev, c_prev)``
* ``W``: ``(kh, kw, c_prev, c_new)``; ``b``: ``(1, 1, 1, c_new)``
* ``padding``: ``"same"`` (TensorFlow's rule, see ``cconv.ops.compute_padding``),
  ``"valid"`` or explicit ``(ph, pw)``; ``stride``: ``(sh, sw)``.
"""
import numpy as np

from . import ops

__all__ = ["conv_forward", "conv_backward", "pool_forward", "pool_backward"]


def _bias_vector(b, W, op):
    b = np.asarray(b)
    c_new = np.shape(W)[-1] if np.ndim(W) == 4 else None
    if c_new is not None and b.size != c_new:
        raise ValueError(f"{op}: b must have shape (1, 1, 1, {c_new}) to match W, got {b.shape}")
    return b.reshape(-1)


def _pool_mode(mode, op):
    if mode not in ("max", "avg"):
        raise ValueError(f'{op}: mode must be "max" or "avg", got {mode!r}')
    return mode == "max"


def conv_forward(A_prev, W, b, activation, padding="same", stride=(1, 1)):
    """``activation(conv(A_prev, W) + b)``: ``(m, h_new, w_new, c_new)``."""
    if not callable(activation):
        raise TypeError(f"conv_forward: activation must be callable, got {activation!r}")
    Z = ops.conv2d(A_prev, W, _bias_vector(b, W, "conv_forward"), strides=stride, padding=padding)
    return activation(Z)


def conv_backward(dZ, A_prev, W, b, padding="same", stride=(1, 1)):
    """Gradients ``(dA_prev, dW, db)`` of a convolution; ``db`` is ``(1, 1, 1, c_new)``."""
    _bias_vector(b, W, "conv_backward")
    dA_prev, dW, db = ops.conv2d_backward(dZ, A_prev, W, strides=stride, padding=padding)
    return dA_prev, dW, db.reshape(1, 1, 1, -1)


def pool_forward(A_prev, kernel_shape, stride=(1, 1), mode="max"):
    """Max or average pooling without padding: ``(m, h_new, w_new, c_prev)``."""
    is_max = _pool_mode(mode, "pool_forward")
    pool = ops.max_pool2d if is_max else ops.avg_pool2d
    return pool(A_prev, tuple(kernel_shape), strides=stride, padding="valid")


def pool_backward(dA, A_prev, kernel_shape, stride=(1, 1), mode="max"):
    """Gradient of ``pool_forward`` with respect to ``A_prev``."""
    is_max = _pool_mode(mode, "pool_backward")
    grad = ops.max_pool2d_backward if is_max else ops.avg_pool2d_backward
    return grad(dA, A_prev, tuple(kernel_shape), strides=stride, padding="valid")
