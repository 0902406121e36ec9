"""Which convolution algorithm runs (choose_algorithm), and that the choice never changes
what a result means: Inf and NaN give what the float64 direct sum gives on every path."""
import numpy as np
import pytest

from cconv import ops
from cconv._ext import conv as _conv

# name, x shape, kernel shape, strides, padding, groups, algorithm for (forward, input
# gradient, kernel gradient)
CASES = [
    ("direct", (2, 9, 10, 1), (5, 5, 1, 6), 1, "same", 1,
     (_conv.DIRECT, _conv.IM2COL, _conv.DIRECT)),
    ("direct-grouped", (2, 9, 10, 8), (3, 3, 2, 8), 1, "same", 4,
     (_conv.DIRECT, _conv.DIRECT, _conv.DIRECT)),
    ("winograd", (2, 9, 10, 16), (3, 3, 16, 16), 1, "same", 1,
     (_conv.WINOGRAD, _conv.WINOGRAD, _conv.WINOGRAD)),
    ("pointwise", (2, 7, 6, 8), (1, 1, 8, 12), 1, "valid", 1,
     (_conv.POINTWISE, _conv.POINTWISE, _conv.POINTWISE)),
    ("im2col", (2, 9, 10, 6), (3, 3, 6, 10), 2, "same", 1,
     (_conv.IM2COL, _conv.IM2COL, _conv.IM2COL)),
]
STEPS = ("forward", "input_gradient", "kernel_gradient")


def _geometry(x_shape, k_shape, strides, padding):
    oh, ow = ops.conv_output_shape(x_shape[1:3], k_shape[:2], strides, padding)
    pads = ops.compute_padding(x_shape[1:3], k_shape[:2], strides, padding)
    return (x_shape[0], oh, ow, k_shape[3]), (pads[0][0], pads[1][0])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_choose_algorithm_names_the_algorithm_of_each_step(case):
    _, x_shape, k_shape, strides, padding, groups, expected = case
    y_shape, pads = _geometry(x_shape, k_shape, strides, padding)
    for step, algorithm in zip(STEPS, expected):
        for dtype in (np.float32, np.float64):
            got = _conv.choose_algorithm(x_shape, k_shape, y_shape, (strides, strides),
                                         (1, 1), pads, groups, dtype, step)
            assert got == algorithm, (step, dtype)
            assert got in _conv.ALGORITHMS.values()
            # Inf or NaN in the operands: never Winograd
            got = _conv.choose_algorithm(x_shape, k_shape, y_shape, (strides, strides),
                                         (1, 1), pads, groups, dtype, step, finite=False)
            assert got != _conv.WINOGRAD


def test_choose_algorithm_rejects_an_unknown_step():
    with pytest.raises(ValueError, match="step must be one of"):
        _conv.choose_algorithm((1, 4, 4, 1), (3, 3, 1, 1), (1, 2, 2, 1), step="backward")
