"""cconv.ops against TensorFlow 2 (forward and all gradients through tf.GradientTape)."""
import numpy as np
import pytest

from cconv import ops
from cconv._ext import conv as _conv
from cconv._validation import normalize_pair

from ._helpers import assert_close
from .reference import pads_for

pytestmark = pytest.mark.tensorflow

tf = pytest.importorskip("tensorflow", reason="TensorFlow is needed for the agreement tests")

DTYPES = [np.float32, np.float64]

# (x shape NHWC, kernel shape, strides, padding, dilation, groups)
CONV_CASES = [
    ((2, 9, 9, 3), (3, 3, 3, 4), 1, "valid", 1, 1),
    ((2, 9, 9, 3), (3, 3, 3, 4), 1, "same", 1, 1),
    ((1, 8, 8, 2), (2, 2, 2, 3), 1, "same", 1, 1),          # even kernel, same: extra pad after
    ((1, 8, 8, 2), (4, 4, 2, 3), 2, "same", 1, 1),
    ((2, 11, 7, 3), (3, 2, 3, 5), (2, 1), "valid", 1, 1),   # non-square everything
    ((2, 11, 7, 3), (5, 3, 3, 2), (1, 3), "same", 1, 1),
    ((3, 10, 12, 4), (3, 3, 4, 6), 1, "valid", (2, 1), 1),  # dilation
    ((3, 10, 12, 4), (3, 3, 4, 6), 1, "same", 2, 1),
    ((2, 8, 8, 4), (3, 3, 2, 6), 1, "same", 1, 2),          # groups
    ((2, 9, 8, 6), (3, 3, 2, 9), (2, 1), "valid", 1, 3),
    ((2, 8, 8, 4), (3, 3, 1, 4), 1, "same", 1, 4),          # depthwise
    ((2, 8, 8, 4), (3, 3, 1, 8), 2, "same", 1, 4),          # depthwise, multiplier 2
    ((2, 9, 11, 16), (3, 3, 1, 16), 1, "same", 1, 16),      # depthwise: whole vectors
    ((2, 13, 12, 19), (3, 3, 1, 38), 2, "valid", 1, 19),    # multiplier 2, odd channels
    ((1, 12, 11, 24), (3, 3, 1, 24), 1, "same", 2, 24),     # depthwise, dilation 2
    ((3, 7, 8, 33), (5, 5, 1, 33), 2, "same", 1, 33),       # 5x5, stride 2, vector tails
    ((1, 6, 5, 8), (3, 2, 1, 80), 1, "same", 1, 8),         # multiplier 10
    ((1, 6, 5, 7), (1, 1, 7, 3), 1, "valid", 1, 1),          # 1x1 pointwise
    ((1, 6, 5, 7), (1, 1, 7, 3), 2, "same", 1, 1),           # 1x1 strided
    ((4, 28, 28, 1), (5, 5, 1, 6), 1, "same", 1, 1),         # LeNet conv1
    ((4, 14, 14, 6), (5, 5, 6, 16), 1, "valid", 1, 1),       # LeNet conv2
    ((2, 7, 7, 3), (3, 3, 3, 2), 1, ((1, 2), (0, 3)), 1, 1),  # explicit asymmetric padding
    ((2, 7, 7, 3), (3, 3, 3, 2), 2, 1, 1, 1),                 # explicit int padding
    ((2, 7, 6, 3), (3, 2, 3, 2), 1, (2, 1), 1, 1),            # explicit pair padding
    ((1, 5, 5, 2), (5, 5, 2, 3), 1, "valid", 1, 1),           # kernel == input
    ((2, 40, 40, 8), (3, 3, 8, 16), 1, "same", 1, 1),         # several im2col tiles
] + [  # 3x3, stride 1, >= 16 channels both ways: Winograd F(2x2, 3x3), forward and dx
    ((2, 9, 7, 16), (3, 3, 16, 16), 1, "same", 1, 1),          # partial tiles, bottom and right
    ((1, 10, 11, 17), (3, 3, 17, 20), 1, "valid", 1, 1),       # batch 1, odd channel counts
    ((2, 6, 5, 24), (3, 3, 24, 16), 1, ((1, 2), (0, 3)), 1, 1),  # explicit asymmetric
    ((3, 8, 8, 32), (3, 3, 32, 16), 1, ((3, 0), (2, 4)), 1, 1),  # padding beyond the kernel
    ((1, 2, 2, 16), (3, 3, 16, 16), 1, "same", 1, 1),          # one tile
    ((1, 4, 3, 16), (3, 3, 16, 18), 1, "valid", 1, 1),         # 2x1 output: im2col (too small)
    ((4, 40, 40, 16), (3, 3, 16, 16), 1, "same", 1, 1),        # several chunks of tiles
]
WINOGRAD_CASES = CONV_CASES[-7:]


def _ids(cases):
    return [f"x{c[0]}-k{c[1]}-s{c[2]}-{c[3]}-d{c[4]}-g{c[5]}" for c in cases]


def _tf_conv(x, kernel, bias, strides, padding, dilation, groups):
    """TensorFlow's convolution; explicit padding is applied with tf.pad, and tf.nn.convolution
    is used because its dilated path (space-to-batch) has CPU gradients."""
    s = normalize_pair(strides, "strides", "test")
    d = normalize_pair(dilation, "dilation_rate", "test")
    if not isinstance(padding, str):
        (pt, pb), (pl, pr) = pads_for(x.shape[1:3], kernel.shape[:2], s, d, padding)
        x = tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]])
        padding = "valid"
    if groups > 1 and groups == x.shape[3] and kernel.shape[2] == 1:
        dk = tf.reshape(kernel, (kernel.shape[0], kernel.shape[1], groups, -1))
        y = tf.nn.depthwise_conv2d(x, dk, (1, s[0], s[1], 1), padding.upper(), dilations=d)
    elif groups > 1:  # TF has no CPU gradient for grouped conv: one conv per group
        parts = zip(tf.split(x, groups, axis=3), tf.split(kernel, groups, axis=3))
        y = tf.concat([tf.nn.convolution(xg, kg, strides=s, padding=padding.upper(),
                                         dilations=d) for xg, kg in parts], axis=3)
    else:
        y = tf.nn.convolution(x, kernel, strides=s, padding=padding.upper(), dilations=d)
    return y + bias


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CONV_CASES, ids=_ids(CONV_CASES))
def test_conv2d_forward_and_gradients_match_tensorflow(case, dtype):
    x_shape, k_shape, strides, padding, dilation, groups = case
    rng = np.random.default_rng(abs(hash(str(case))) % 2**32)
    x = rng.uniform(-1, 1, x_shape).astype(dtype)
    kernel = rng.uniform(-1, 1, k_shape).astype(dtype)
    bias = rng.uniform(-1, 1, k_shape[3]).astype(dtype)

    y = ops.conv2d(x, kernel, bias, strides=strides, padding=padding, dilation_rate=dilation,
                   groups=groups)
    tx, tk, tb = (tf.constant(a) for a in (x, kernel, bias))
    with tf.GradientTape() as tape:
        tape.watch([tx, tk, tb])
        ty = _tf_conv(tx, tk, tb, strides, padding, dilation, groups)
        dy = tf.constant(rng.uniform(-1, 1, ty.shape).astype(dtype))
        loss = tf.reduce_sum(ty * dy)
    gx, gk, gb = tape.gradient(loss, [tx, tk, tb])
    assert y.dtype == dtype
    assert_close(y, ty.numpy(), dtype, "forward")

    dx, dk, db = ops.conv2d_backward(dy.numpy(), x, kernel, strides=strides, padding=padding,
                                     dilation_rate=dilation, groups=groups)
    assert dx.dtype == dk.dtype == db.dtype == dtype
    assert_close(dx, gx.numpy(), dtype, "dx")
    assert_close(dk, gk.numpy(), dtype, "dkernel")
    assert_close(db, gb.numpy(), dtype, "dbias")


POOL_CASES = [
    ((2, 8, 8, 3), 2, None, "valid"),
    ((2, 9, 7, 3), 2, None, "valid"),
    ((2, 9, 7, 3), 2, None, "same"),
    ((2, 9, 7, 3), 3, 1, "same"),         # overlapping windows, padding on both sides
    ((1, 10, 11, 2), (3, 2), (2, 1), "valid"),
    ((1, 10, 11, 2), (3, 2), (2, 3), "same"),
    ((3, 5, 5, 4), 5, None, "valid"),     # pool == input
    ((2, 7, 7, 2), 2, 3, "valid"),        # stride larger than pool: cells without gradient
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=[str(c) for c in POOL_CASES])
def test_pooling_matches_tensorflow(case, mode, ties, dtype):
    x_shape, pool, strides, padding = case
    rng = np.random.default_rng(7)
    if ties:  # small integers: many equal values in every window
        x = rng.integers(-2, 3, x_shape).astype(dtype)
    else:
        x = rng.uniform(-1, 1, x_shape).astype(dtype)
    tf_pool = tf.nn.max_pool2d if mode == "max" else tf.nn.avg_pool2d
    fwd = ops.max_pool2d if mode == "max" else ops.avg_pool2d
    bwd = ops.max_pool2d_backward if mode == "max" else ops.avg_pool2d_backward
    p = normalize_pair(pool, "pool_size", "test")
    s = p if strides is None else normalize_pair(strides, "strides", "test")
    tx = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tx)
        ty = tf_pool(tx, p, s, padding.upper())
        dy = tf.constant(rng.uniform(-1, 1, ty.shape).astype(dtype))
        loss = tf.reduce_sum(ty * dy)
    gx = tape.gradient(loss, tx)
    y = fwd(x, pool, strides=strides, padding=padding)
    assert y.dtype == dtype
    assert_close(y, ty.numpy(), dtype, "forward")
    dx = bwd(dy.numpy(), x, pool, strides=strides, padding=padding)
    assert_close(dx, gx.numpy(), dtype, "dx")


def test_max_pool_gradient_goes_to_first_maximum():
    """TensorFlow's rule: in a window [[2, 2], [1, 2]] only the top-left cell gets the gradient."""
    x = np.array([[2.0, 2.0], [1.0, 2.0]]).reshape(1, 2, 2, 1)
    dx = ops.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 2)
    tx = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tx)
        y = tf.nn.max_pool2d(tx, 2, 2, "VALID")
    np.testing.assert_array_equal(dx, tape.gradient(y, tx).numpy())
    np.testing.assert_array_equal(dx.reshape(2, 2), [[1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=_ids(WINOGRAD_CASES))
def test_winograd_cases_take_the_winograd_path(case):
    """Guards the cases above against a threshold change that would silently skip Winograd."""
    x_shape, k_shape, strides, padding, dilation, groups = case
    oh, ow = ops.conv_output_shape(x_shape[1:3], k_shape[:2], strides, padding)
    y_shape = (x_shape[0], oh, ow, k_shape[3])
    for step, out_hw in (("forward", (oh, ow)), ("input_gradient", x_shape[1:3])):
        got = _conv.choose_algorithm(x_shape, k_shape, y_shape, step=step)
        assert (got == _conv.WINOGRAD) == (min(out_hw) >= 2), (step, out_hw)
