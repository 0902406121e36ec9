"""Inputs are never modified; layouts, dtypes and odd sizes are handled as documented."""
import numpy as np
import pytest

from cconv import classic, ops

from . import reference as ref
from ._helpers import assert_close


def test_inputs_are_not_modified(rng):
    x = rng.standard_normal((2, 6, 6, 2))
    kernel = rng.standard_normal((3, 3, 2, 3))
    bias = rng.standard_normal(3)
    dy = rng.standard_normal((2, 6, 6, 3))
    dyp = rng.standard_normal((2, 3, 3, 2))
    copies = [a.copy() for a in (x, kernel, bias, dy, dyp)]
    ops.conv2d(x, kernel, bias, padding="same")
    ops.conv2d_backward(dy, x, kernel, padding="same")
    for f in (ops.max_pool2d, ops.avg_pool2d):
        f(x, 2)
    for f in (ops.max_pool2d_backward, ops.avg_pool2d_backward):
        f(dyp, x, 2)
    for a, b in zip((x, kernel, bias, dy, dyp), copies):
        np.testing.assert_array_equal(a, b)


def test_outputs_are_fresh_c_contiguous(rng):
    x = rng.standard_normal((1, 4, 4, 2))
    y = ops.conv2d(x, np.ones((1, 1, 2, 2)))
    assert y.flags.c_contiguous and y.flags.owndata
    assert not np.shares_memory(y, x)


def test_non_contiguous_and_fortran_inputs(rng):
    base = rng.standard_normal((4, 12, 10, 6))
    x = base[::2, 1::2, :, ::2]                      # strided view
    kernel = np.asfortranarray(rng.standard_normal((3, 2, 3, 4)))
    want = ref.conv2d(x, kernel, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    assert_close(ops.conv2d(x, kernel), want, np.float64)
    assert_close(
        ops.max_pool2d(np.asfortranarray(x), 2),
        ref.pool2d(x, (2, 2), (2, 2), ((0, 0), (0, 0)), "max"),
        np.float64,
    )


def test_dtype_rules(rng):
    x32 = rng.standard_normal((1, 5, 5, 2)).astype(np.float32)
    k32 = rng.standard_normal((3, 3, 2, 2)).astype(np.float32)
    assert ops.conv2d(x32, k32).dtype == np.float32
    assert ops.conv2d(x32, k32.astype(np.float64)).dtype == np.float64      # mixed -> float64
    assert ops.conv2d(x32.astype(np.float16), k32.astype(np.float16)).dtype == np.float32  # upcast
    xi = rng.integers(-3, 3, (1, 5, 5, 2))
    assert ops.conv2d(xi, k32).dtype == np.float64                           # ints -> float64
    assert ops.max_pool2d(xi.astype(bool), 2).dtype == np.float64
    # lists work like arrays
    assert_close(ops.max_pool2d(xi.tolist(), 2), ops.max_pool2d(xi, 2), np.float64)


def test_nan_and_inf_propagate():
    x = np.zeros((1, 4, 4, 1))
    x[0, 0, 0, 0] = np.nan
    x[0, 3, 3, 0] = np.inf
    y = ops.conv2d(x, np.ones((2, 2, 1, 1)), strides=2)
    assert np.isnan(y[0, 0, 0, 0]) and np.isinf(y[0, 1, 1, 0]) and y[0, 0, 1, 0] == 0
    m = ops.max_pool2d(x, 2)
    assert np.isnan(m[0, 0, 0, 0]) and m[0, 1, 1, 0] == np.inf
    x[0, 0, 1, 0] = 5.0  # NaN wins even when a larger number follows it
    assert np.isnan(ops.max_pool2d(x, 2)[0, 0, 0, 0])
    assert np.isnan(ops.avg_pool2d(x, 2)[0, 0, 0, 0])


def test_zero_size_batch_and_channels(rng):
    y = ops.conv2d(np.zeros((0, 5, 5, 2)), np.ones((3, 3, 2, 4)), np.ones(4))
    assert y.shape == (0, 3, 3, 4)
    dx, dk, db = ops.conv2d_backward(
        np.zeros((0, 3, 3, 4)), np.zeros((0, 5, 5, 2)), np.ones((3, 3, 2, 4))
    )
    assert dx.shape == (0, 5, 5, 2) and np.all(dk == 0) and np.all(db == 0)
    y = ops.conv2d(np.zeros((2, 5, 5, 0)), np.ones((3, 3, 0, 4)), np.arange(4.0))
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(4.0), (2, 3, 3, 4)))
    assert ops.max_pool2d(np.zeros((0, 4, 4, 3)), 2).shape == (0, 2, 2, 3)


def test_output_shape_and_padding_helpers():
    # one rule for everything: "same" puts the extra padding cell after
    assert ops.compute_padding((8, 8), (2, 2), 1, "same") == ((0, 1), (0, 1))
    assert ops.compute_padding((7, 8), (3, 4), 2, "same") == ((1, 1), (1, 1))
    assert ops.compute_padding((5, 5), (3, 3), 1, "same", dilation_rate=2) == ((2, 2), (2, 2))
    assert ops.conv_output_shape((7, 8), (3, 4), 2, "same") == (4, 4)
    assert ops.conv_output_shape((7, 8), (3, 4), (2, 3), "valid") == (3, 2)
    assert ops.conv_output_shape((7, 8), 3, 1, "valid", dilation_rate=3) == (1, 2)
    assert ops.compute_padding((7, 8), 3, 1, ((1, 2), (3, 0))) == ((1, 2), (3, 0))
    assert ops.conv_output_shape((7, 8), 3, 1, (1, 2)) == (7, 10)


def test_classic_functions_match_ops(rng):
    """With semantics="tensorflow" the curriculum functions are cconv.ops under other names."""
    A = rng.standard_normal((2, 8, 7, 3))
    W = rng.standard_normal((3, 3, 3, 4))
    b = rng.standard_normal((1, 1, 1, 4))
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    Z = ops.conv2d(A, W, b.reshape(-1), strides=(2, 1), padding="same")
    np.testing.assert_array_equal(
        classic.conv_forward(A, W, b, relu, "same", (2, 1), "tensorflow"), relu(Z))
    np.testing.assert_array_equal(
        classic.conv_forward(A, W, b, relu, "valid"), relu(ops.conv2d(A, W, b.reshape(-1)))
    )
    dZ = rng.standard_normal(Z.shape)
    dA, dW, db = classic.conv_backward(dZ, A, W, b, "same", (2, 1), "tensorflow")
    want = ops.conv2d_backward(dZ, A, W, strides=(2, 1), padding="same")
    np.testing.assert_array_equal(dA, want[0])
    np.testing.assert_array_equal(dW, want[1])
    assert db.shape == (1, 1, 1, 4)
    np.testing.assert_array_equal(db.reshape(-1), want[2])
    P = classic.pool_forward(A, (2, 2), (2, 2), "avg")
    np.testing.assert_array_equal(P, ops.avg_pool2d(A, 2, 2))
    np.testing.assert_array_equal(classic.pool_forward(A, (3, 2)), ops.max_pool2d(A, (3, 2), 1))
    dP = rng.standard_normal(P.shape)
    np.testing.assert_array_equal(
        classic.pool_backward(dP, A, (2, 2), (2, 2), "avg"), ops.avg_pool2d_backward(dP, A, 2, 2)
    )
    with pytest.raises(ValueError, match='mode must be "max" or "avg"'):
        classic.pool_forward(A, (2, 2), mode="min")
    with pytest.raises(TypeError, match="activation must be callable"):
        classic.conv_forward(A, W, b, "relu")
    with pytest.raises(ValueError, match=r"b must have shape \(1, 1, 1, 4\)"):
        classic.conv_forward(A, W, np.zeros((1, 1, 1, 3)), relu)


@pytest.mark.parametrize(
    "k_shape,groups", [((3, 3, 1, 6), 1), ((3, 3, 1, 2), 2), ((3, 3, 8, 16), 1)]
)
def test_inf_in_the_input_reaches_only_the_gradients_it_touches(k_shape, groups, rng):
    """An Inf in x's first column is read by kernel column 0 only (valid padding): the other
    kernel columns' gradients stay finite, in the direct and in the GEMM kernels."""
    x = rng.standard_normal((2, 7, 7, k_shape[2] * groups))
    x[0, 3, 0, 0] = np.inf
    kernel = rng.standard_normal(k_shape)
    dy = rng.standard_normal((2, 5, 5, k_shape[3]))
    _, dk, _ = ops.conv2d_backward(dy, x, kernel, groups=groups)
    want = ref.conv2d_backward(dy, x, kernel, (1, 1), ((0, 0), (0, 0)), (1, 1), groups)[1]
    assert np.all(np.isfinite(dk[:, 1:]))
    assert not np.all(np.isfinite(dk[:, 0]))
    np.testing.assert_allclose(dk, want, rtol=1e-10, equal_nan=True)


def test_huge_dilation_with_same_padding_stays_small(rng):
    """Every tap but the centre falls in the padding: the result is the centre tap alone, and
    no workspace is sized by the (enormous) padded input."""
    x = rng.standard_normal((2, 5, 6, 1))
    kernel = rng.standard_normal((3, 3, 1, 2))
    y = ops.conv2d(x, kernel, padding="same", dilation_rate=100_000)
    np.testing.assert_allclose(y, x * kernel[1, 1, 0], rtol=1e-12)
    dx, dk, db = ops.conv2d_backward(
        np.ones_like(y), x, kernel, padding="same", dilation_rate=100_000
    )
    np.testing.assert_allclose(dx[..., 0], np.full(x.shape[:3], kernel[1, 1, 0].sum()), rtol=1e-12)
    assert np.count_nonzero(dk) == 2


def test_kernels_called_directly_with_an_empty_output_zero_the_gradients():
    """Embedders call the compiled kernels without cconv.ops' checks: an empty output must give
    zero gradients, not a crash (the direct kernel once sized a memset by a negative extent)."""
    from cconv._ext import conv as _conv

    dy, x, k = np.zeros((3, 0, 0, 2)), np.zeros((3, 0, 0, 1)), np.ones((1, 4, 1, 2))
    dx, dk, db = np.full(x.shape, 7.0), np.full(k.shape, 7.0), np.full(2, 7.0)
    _conv.conv2d_backward(dy, x, k, dx, dk, db, (2, 2), (1, 1), (0, 1), 1, 1)
    assert not dk.any() and not db.any()
