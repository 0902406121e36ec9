"""Max pooling propagates NaN, as NumPy and PyTorch do (TensorFlow's CPU kernel skips it)."""
import numpy as np
import pytest

from cconv import classic, ops

from . import reference as ref

DTYPES = [np.float32, np.float64]
CASES = [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"), ((3, 2), (1, 1), "valid"),
         ((2, 3), (3, 2), "same")]


def _with_nans(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (2, 7, 8, 5)).astype(dtype)   # ties too
    x[rng.random(x.shape) < 0.15] = np.nan
    x[0, :, :, 0] = np.nan                                  # a channel of NaN only
    x[1, :, :, 1] = 1.0                                     # one without NaN
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool,strides,padding", CASES)
def test_max_pool_forward_is_nan_where_a_window_holds_nan(dtype, pool, strides, padding):
    """NumPy's ``max`` over each window's real cells: NaN wins, padding never does."""
    x = _with_nans(dtype)
    pads = ops.compute_padding(x.shape[1:3], pool, strides, padding)
    y = ops.max_pool2d(x, pool, strides, padding)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ref.pool2d(x, pool, strides, pads, "max").astype(dtype))
    assert np.isnan(y[0, :, :, 0]).all() and not np.isnan(y[1, :, :, 1]).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool,strides,padding", CASES)
def test_max_pool_gradient_goes_to_the_first_nan(dtype, pool, strides, padding):
    """As PyTorch's and NumPy's argmax: NaN counts as the maximum, the first one (row-major)
    gets the window's gradient; windows without NaN keep the first-maximum rule."""
    x = _with_nans(dtype, seed=1)
    pads = ops.compute_padding(x.shape[1:3], pool, strides, padding)
    y = ops.max_pool2d(x, pool, strides, padding)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    dx = ops.max_pool2d_backward(dy, x, pool, strides, padding)
    want = ref.pool2d_backward(dy, x, pool, strides, pads, "max")
    np.testing.assert_allclose(dx, want, rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert not np.isnan(dx).any()                 # the gradient itself stays finite


@pytest.mark.parametrize("dtype", DTYPES)
def test_course_rule_sends_the_gradient_to_every_nan_cell(dtype):
    x = np.array([[1, np.nan], [np.nan, 2]], dtype).reshape(1, 2, 2, 1)
    dA = np.full((1, 1, 1, 1), 3, dtype)
    assert np.isnan(classic.pool_forward(x, (2, 2), (2, 2))).all()
    got = classic.pool_backward(dA, x, (2, 2), (2, 2))
    np.testing.assert_array_equal(got.reshape(2, 2), [[0, 3], [3, 0]])
    got = classic.pool_backward(dA, x, (2, 2), (2, 2), semantics="tensorflow")
    np.testing.assert_array_equal(got.reshape(2, 2), [[0, 3], [0, 0]])


def test_average_pooling_propagates_nan():
    x = np.ones((1, 4, 4, 1))
    x[0, 0, 0, 0] = np.nan
    y = ops.avg_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and np.isfinite(y.reshape(-1)[1:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avg_pool_gradient_of_tiling_windows_is_written_once(dtype):
    """Windows that tile the image store each cell's share instead of adding it to zeros:
    the same bits, signed zeros and NaN included (0 + -0.0 is +0.0)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8, 6, 5)).astype(dtype)
    dy = rng.standard_normal((3, 4, 3, 5)).astype(dtype)
    dy[0, 0, 0, :2] = -0.0
    dy[1, 1, 1, 0] = np.nan
    dx = ops.avg_pool2d_backward(dy, x, 2, 2)
    expected = np.zeros_like(x) + np.repeat(np.repeat(dy / dtype(4), 2, axis=1), 2, axis=2)
    assert dx.tobytes() == expected.tobytes()
