"""Non-native byte orders keep their precision: '>f8' is computed in float64, '>f4' in float32,
and the results equal those of the same values in native order."""
import numpy as np
import pytest

from cconv import classic, layers, ops

SWAPPED = {np.float32: np.dtype(np.float32).newbyteorder("S"),
           np.float64: np.dtype(np.float64).newbyteorder("S")}


def _swapped(a):
    return a.astype(SWAPPED[a.dtype.type])


def _every_op(x, kernel, bias, dy, dy_pool, xd, kd):
    return [ops.conv2d(x, kernel, bias, padding="same"),
            *ops.conv2d_backward(dy, x, kernel, padding="same"),
            ops.max_pool2d(x, 2), ops.avg_pool2d(x, 2),
            ops.max_pool2d_backward(dy_pool, x, 2), ops.avg_pool2d_backward(dy_pool, x, 2),
            ops.dense(xd, kd), *ops.dense_backward(ops.dense(xd, kd), xd, kd)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_swapped_byte_order_gives_the_native_results_in_the_same_precision(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 6, 3)).astype(dtype)
    kernel = rng.standard_normal((3, 3, 3, 4)).astype(dtype)
    bias = rng.standard_normal(4).astype(dtype)
    dy = rng.standard_normal((2, 6, 6, 4)).astype(dtype)
    dy_pool = rng.standard_normal((2, 3, 3, 3)).astype(dtype)
    xd = rng.standard_normal((5, 7)).astype(dtype)
    kd = rng.standard_normal((7, 2)).astype(dtype)
    args = (x, kernel, bias, dy, dy_pool, xd, kd)
    native = _every_op(*args)
    swapped = _every_op(*[_swapped(a) for a in args])
    for a, b in zip(native, swapped):
        assert b.dtype == np.dtype(dtype) and b.dtype.isnative
        np.testing.assert_array_equal(a, b)


def test_big_endian_float64_is_not_rounded_to_float32():
    x = np.full((1, 3, 3, 1), 1e300, dtype=">f8")
    kernel = np.full((1, 1, 1, 1), 0.5, dtype=">f8")
    y = ops.conv2d(x, kernel)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, np.full((1, 3, 3, 1), 5e299))
    x = np.full((1, 2, 2, 1), 1 + 2.0**-40, dtype=">f8")   # not representable in float32
    assert ops.max_pool2d(x, 2)[0, 0, 0, 0] == 1 + 2.0**-40
    assert ops.dense(x.reshape(1, 4), np.ones((4, 1), ">f8"))[0, 0] == 4 * (1 + 2.0**-40)


def test_big_endian_input_to_float64_layers_and_classic_keeps_precision():
    x = np.full((1, 4, 4, 1), 1 + 2.0**-40, dtype=">f8")
    layer = layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", dtype="float64")
    assert layer(x)[0, 0, 0, 0] == 1 + 2.0**-40
    pooled = layers.MaxPooling2D(2, dtype="float64")(x)
    assert pooled.dtype == np.float64 and pooled[0, 0, 0, 0] == 1 + 2.0**-40
    z = classic.conv_forward(x, np.ones((1, 1, 1, 1), ">f8"), np.zeros((1, 1, 1, 1), ">f8"),
                             lambda a: a)
    assert z.dtype == np.float64 and z[0, 0, 0, 0] == 1 + 2.0**-40


def test_big_endian_float32_stays_float32():
    x = np.ones((1, 2, 2, 1), dtype=">f4")
    assert ops.conv2d(x, np.ones((1, 1, 1, 1), ">f4")).dtype == np.float32
    assert ops.avg_pool2d(x, 2).dtype == np.float32
