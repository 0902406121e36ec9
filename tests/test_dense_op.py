"""cconv.ops.dense / dense_backward (the Dense layer's maths on cconv's GEMM and threads)."""
import numpy as np
import pytest

import cconv
from cconv import ops

from ._helpers import assert_close


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 400, 120), (1, 3, 2), (5, 1, 7), (300, 17, 2)])
def test_dense_and_gradients_match_numpy(shape, dtype, rng):
    m, k, n = shape
    x = rng.standard_normal((m, k)).astype(dtype)
    w = rng.standard_normal((k, n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    y = ops.dense(x, w, b)
    assert y.dtype == dtype
    assert_close(y, x.astype(np.float64) @ w + b, dtype, "y")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = ops.dense_backward(dy, x, w)
    assert_close(dx, dy.astype(np.float64) @ w.T.astype(np.float64), dtype, "dx")
    assert_close(dw, x.T.astype(np.float64) @ dy, dtype, "dkernel")
    assert_close(db, dy.astype(np.float64).sum(axis=0), dtype, "dbias")
    assert ops.dense_backward(dy, x, w, input_grad=False)[0] is None


def test_dense_on_higher_rank_inputs(rng):
    x = rng.standard_normal((2, 3, 5))
    w = rng.standard_normal((5, 4))
    np.testing.assert_allclose(ops.dense(x, w), x @ w, rtol=1e-12)
    dx, dw, db = ops.dense_backward(np.ones((2, 3, 4)), x, w)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (4,)


def test_dense_is_thread_count_invariant(rng, monkeypatch):
    monkeypatch.setattr(ops, "_GRAIN", 1)
    x = rng.standard_normal((37, 50)).astype(np.float32)
    w = rng.standard_normal((50, 29)).astype(np.float32)
    dy = rng.standard_normal((37, 29)).astype(np.float32)
    before = cconv.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            cconv.set_num_threads(n)
            results.append([ops.dense(x, w), *ops.dense_backward(dy, x, w)])
    finally:
        cconv.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: ops.dense(np.zeros(3), np.zeros((3, 2))),
            r"x must be at least 2-D .* got shape \(3,\)",
        ),
        (lambda: ops.dense(np.zeros((4, 3)), np.zeros((3, 2, 1))), r"kernel must be 2-D"),
        (
            lambda: ops.dense(np.zeros((4, 3)), np.zeros((5, 2))),
            r"x has 3 features .* \(5, 2\) expects 5",
        ),
        (
            lambda: ops.dense(np.zeros((4, 3)), np.zeros((3, 2)), np.zeros(3)),
            r"bias must have shape \(2,\)",
        ),
        (
            lambda: ops.dense_backward(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((3, 2))),
            r"dy must have the output shape \(4, 2\)",
        ),
    ],
)
def test_dense_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_conv2d_backward_can_skip_the_input_gradient(rng):
    x = rng.standard_normal((2, 6, 6, 3))
    k = rng.standard_normal((3, 3, 3, 4))
    dy = rng.standard_normal((2, 4, 4, 4))
    dx, dk, db = ops.conv2d_backward(dy, x, k, input_grad=False)
    full = ops.conv2d_backward(dy, x, k)
    assert dx is None
    np.testing.assert_array_equal(dk, full[1])
    np.testing.assert_array_equal(db, full[2])
