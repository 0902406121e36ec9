"""Bad input: clear exceptions naming the argument and the shapes."""
import numpy as np
import pytest

from cconv import ops

X = np.zeros((2, 8, 8, 4))
K = np.zeros((3, 3, 4, 6))


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (
            lambda: ops.conv2d(np.zeros((8, 8, 4)), K),
            ValueError,
            r"x must be 4-D .* got shape \(8, 8, 4\)",
        ),
        (lambda: ops.conv2d(X, np.zeros((3, 3, 4))), ValueError, r"kernel must be 4-D"),
        (
            lambda: ops.conv2d(X, np.zeros((3, 3, 3, 6))),
            ValueError,
            r"x has 4 channels .* \(3, 3, 3, 6\)",
        ),
        (
            lambda: ops.conv2d(X, np.zeros((3, 3, 2, 5)), groups=2),
            ValueError,
            r"filters 5 .* divisible by groups=2",
        ),
        (lambda: ops.conv2d(X, K, groups=0), ValueError, r"groups must be a positive int"),
        (
            lambda: ops.conv2d(X, K, np.zeros(5)),
            ValueError,
            r"bias must have shape \(6,\) .* got \(5,\)",
        ),
        (
            lambda: ops.conv2d(X, np.zeros((9, 3, 4, 6))),
            ValueError,
            r"effective kernel \(9, 3\) .* larger than the padded input \(8, 8\)",
        ),
        (lambda: ops.conv2d(X, K, dilation_rate=4), ValueError, r"effective kernel \(9, 9\)"),
        (lambda: ops.conv2d(X, K, strides=0), ValueError, r"strides must be positive"),
        (lambda: ops.conv2d(X, K, strides=(1, -1)), ValueError, r"strides must be positive"),
        (lambda: ops.conv2d(X, K, strides=1.5), TypeError, r"strides must be an int or a pair"),
        (lambda: ops.conv2d(X, K, dilation_rate=0), ValueError, r"dilation_rate must be positive"),
        (
            lambda: ops.conv2d(X, K, padding="full"),
            ValueError,
            r'padding must be "valid", "same".* got "full"',
        ),
        (lambda: ops.conv2d(X, K, padding=-1), ValueError, r"padding amounts must be >= 0"),
        (lambda: ops.conv2d(X, K, padding=(1, 2, 3)), TypeError, r"padding must be"),
        (lambda: ops.conv2d(X, K, padding=1.0), TypeError, r"padding must be"),
        (lambda: ops.conv2d(None, K), TypeError, r"x must be an array, got None"),
        (lambda: ops.conv2d(X.astype(complex), K), TypeError, r"x has dtype complex128"),
        (lambda: ops.conv2d(X, K.astype(object)), TypeError, r"kernel has dtype object"),
        (
            lambda: ops.conv2d(X, np.zeros((3, 3, 4, 6), dtype=np.longdouble)),
            TypeError,
            r"float32 or float64",
        ),
        (lambda: ops.conv2d([[1, 2], [3]], K), TypeError, r"x could not be converted"),
        (
            lambda: ops.conv2d_backward(np.zeros((2, 6, 6, 5)), X, K),
            ValueError,
            r"dy must have the output shape \(2, 6, 6, 6\) .* got \(2, 6, 6, 5\)",
        ),
        (lambda: ops.max_pool2d(X, 0), ValueError, r"pool_size must be positive"),
        (lambda: ops.max_pool2d(X, 9), ValueError, r"larger than the padded input"),
        (lambda: ops.avg_pool2d(X, 2, strides=0), ValueError, r"strides must be positive"),
        (
            lambda: ops.max_pool2d(X, 2, padding=2),
            ValueError,
            r"padding \(2, 2\) along height must be smaller than pool_size 2",
        ),
        (lambda: ops.avg_pool2d(np.zeros((8, 8)), 2), ValueError, r"x must be 4-D"),
        (
            lambda: ops.max_pool2d_backward(np.zeros((2, 3, 3, 4)), X, 2),
            ValueError,
            r"dy must have the pooled shape \(2, 4, 4, 4\)",
        ),
        (lambda: ops.avg_pool2d(X, 2, padding="SAME_LOWER"), ValueError, r"padding must be"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_padding_strings_are_case_insensitive():
    assert ops.conv2d(X, K, padding="SAME").shape == (2, 8, 8, 6)
