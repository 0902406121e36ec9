"""The one argument validator: ops and layers accept and refuse the same values with the
same exception types, each naming the argument."""

import numpy as np
import pytest

from cconv import layers as L
from cconv import ops

X = np.zeros((1, 8, 8, 2), np.float32)
K = np.zeros((3, 3, 2, 4), np.float32)

# (argument, bad value, exception): each checked on ops.conv2d and layers.Conv2D.
CONV_CASES = [
    ("strides", True, TypeError),
    ("strides", (1, True), TypeError),
    ("strides", (1, 2.0), TypeError),
    ("strides", 1.5, TypeError),
    ("strides", "1", TypeError),
    ("strides", None, TypeError),
    ("strides", (1, 2, 3), ValueError),
    ("strides", 0, ValueError),
    ("strides", (1, -1), ValueError),
    ("dilation_rate", False, TypeError),
    ("dilation_rate", (2.0, 1), TypeError),
    ("dilation_rate", 0, ValueError),
    ("groups", True, TypeError),
    ("groups", 1.0, TypeError),
    ("groups", 0, ValueError),
]


@pytest.mark.parametrize("arg,value,exc", CONV_CASES)
def test_conv_ops_and_layer_agree(arg, value, exc):
    with pytest.raises(exc, match=rf"^conv2d: {arg}"):
        ops.conv2d(X, K, **{arg: value})
    with pytest.raises(exc, match=rf"^Conv2D: {arg}"):
        L.Conv2D(4, 3, **{arg: value})


@pytest.mark.parametrize("value,exc", [
    (True, TypeError), ((2, 2.0), TypeError), ((2, False), TypeError), (2.0, TypeError),
    ((2, 2, 2), ValueError), (0, ValueError), ((2, -2), ValueError)])
def test_pool_ops_and_layer_agree(value, exc):
    with pytest.raises(exc, match=r"^max_pool2d: pool_size"):
        ops.max_pool2d(X, value)
    with pytest.raises(exc, match=r"^MaxPooling2D: pool_size"):
        L.MaxPooling2D(value)
    with pytest.raises(exc, match=r"^avg_pool2d: strides"):
        ops.avg_pool2d(X, 2, strides=value)
    with pytest.raises(exc, match=r"^AveragePooling2D: strides"):
        L.AveragePooling2D(2, strides=value)


@pytest.mark.parametrize("make,arg", [
    (lambda v: L.Conv2D(v, 3), "filters"),
    (lambda v: L.Conv2D(4, v), "kernel_size"),
    (lambda v: L.Dense(v), "units"),
])
def test_layer_counts_refuse_bools_and_floats(make, arg):
    for value in (True, 4.0, "4", None):
        with pytest.raises(TypeError, match=arg):
            make(value)
    with pytest.raises(ValueError, match=arg):
        make(0)


def test_numpy_ints_are_accepted_everywhere():
    n = np.int64(2)
    assert ops.conv2d(X, K, strides=(n, 1)).shape == (1, 3, 6, 4)
    layer = L.Conv2D(np.int32(4), (n, n), strides=n, dilation_rate=np.int8(1), groups=n)
    assert (layer.filters, layer.kernel_size, layer.strides, layer.groups) == (4, (2, 2), (2, 2), 2)
    assert L.MaxPooling2D(n).pool_size == (2, 2)


def test_padding_mode_errors_agree():
    with pytest.raises(ValueError, match="padding"):
        L.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="padding"):
        ops.conv2d(X, K, padding="full")
    with pytest.raises(TypeError, match="padding"):
        L.MaxPooling2D(2, padding=1.0)
    with pytest.raises(TypeError, match="padding"):
        ops.max_pool2d(X, 2, padding=1.0)
