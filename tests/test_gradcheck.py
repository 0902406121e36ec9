"""Finite-difference checks of every gradient, float64 (central differences)."""
import numpy as np
import pytest

from cconv import ops

from ._helpers import numeric_grad as _numeric_grad


def numeric_grad(f, a, dy):
    """d sum(f(a) * dy) / da by central differences."""
    return _numeric_grad(lambda v: np.sum(f(v) * dy), a)


@pytest.mark.parametrize(
    "x_shape,k_shape,kw",
    [
        ((2, 6, 5, 2), (3, 2, 2, 3), dict(strides=(2, 1), padding="same")),
        ((1, 7, 7, 4), (3, 3, 2, 4), dict(padding=((2, 0), (1, 1)), dilation_rate=2, groups=2)),
        ((2, 6, 6, 3), (2, 2, 3, 2), dict(strides=2, dilation_rate=2, padding=1)),
    ],
)
def test_conv2d_gradients_match_finite_differences(x_shape, k_shape, kw, rng):
    x = rng.standard_normal(x_shape)
    kernel = rng.standard_normal(k_shape)
    bias = rng.standard_normal(k_shape[3])
    dy = rng.standard_normal(ops.conv2d(x, kernel, bias, **kw).shape)
    dx, dk, db = ops.conv2d_backward(dy, x, kernel, **kw)
    np.testing.assert_allclose(
        dx,
        numeric_grad(lambda a: ops.conv2d(a, kernel, bias, **kw), x.copy(), dy),
        rtol=1e-6,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        dk,
        numeric_grad(lambda a: ops.conv2d(x, a, bias, **kw), kernel.copy(), dy),
        rtol=1e-6,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        db,
        numeric_grad(lambda a: ops.conv2d(x, kernel, a, **kw), bias.copy(), dy),
        rtol=1e-6,
        atol=1e-7,
    )


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("kw", [dict(pool_size=2), dict(pool_size=3, strides=1, padding="same"),
                                dict(pool_size=(3, 2), strides=(2, 1), padding=((1, 2), (0, 1)))])
def test_pool_gradients_match_finite_differences(mode, kw, rng):
    # distinct values, so the max is never tied and the function is differentiable
    x = rng.permutation(2 * 7 * 6 * 3).reshape(2, 7, 6, 3) / 10.0
    fwd = ops.max_pool2d if mode == "max" else ops.avg_pool2d
    bwd = ops.max_pool2d_backward if mode == "max" else ops.avg_pool2d_backward
    dy = rng.standard_normal(fwd(x, **kw).shape)
    np.testing.assert_allclose(
        bwd(dy, x, **kw), numeric_grad(lambda a: fwd(a, **kw), x.copy(), dy), rtol=1e-6, atol=1e-7
    )
