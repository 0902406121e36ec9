"""cconv.classic: the course's rules by default (tied maxima, symmetric "same"), TensorFlow's
with semantics="tensorflow"."""
import os
import subprocess
import sys

import numpy as np
import pytest

import cconv
from cconv import classic, ops

from . import reference as ref
from ._helpers import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = os.path.join(ROOT, "..", "shared", "data", "mnist")
DTYPES = [np.float32, np.float64]


def identity(z):
    return z


def course_pool_backward(dA, A_prev, kernel_shape, stride):
    """The course's loop, written afresh: every cell equal to the maximum gets the gradient."""
    (kh, kw), (sh, sw) = kernel_shape, stride
    dA_prev = np.zeros(A_prev.shape)
    m, h_new, w_new, c = dA.shape
    for i in range(m):
        for y in range(h_new):
            for x in range(w_new):
                for ch in range(c):
                    rows, cols = slice(y * sh, y * sh + kh), slice(x * sw, x * sw + kw)
                    window = A_prev[i, rows, cols, ch]
                    mask = window == np.max(window)
                    dA_prev[i, rows, cols, ch] += mask * dA[i, y, x, ch]
    return dA_prev


def course_pads(h, w, kh, kw, sh, sw):
    """The course's symmetric "same" amounts (floored)."""
    return ((h - 1) * sh + kh - h) // 2, ((w - 1) * sw + kw - w) // 2


# ----------------------------------------------------------------------------- published values
def test_conv_backward_reproduces_the_published_2_main_values():
    np.random.seed(0)
    X = np.random.default_rng(5).uniform(0, 1, (10, 28, 28, 1))  # dA_prev and db ignore X
    W = np.random.randn(3, 3, 1, 2)
    b = np.random.randn(1, 1, 1, 2)
    dZ = np.random.randn(10, 26, 26, 2)
    for semantics in ("course", "tensorflow"):
        dA_prev, dW, db = classic.conv_backward(dZ, X, W, b, padding="valid",
                                                semantics=semantics)
        np.testing.assert_allclose(db, [[[[-113.18404846, -121.902714]]]], rtol=1e-9)
        np.testing.assert_allclose(dA_prev[0, 0, :3, 0], [-4.24205748, 0.19390938, -2.80168847],
                                   rtol=1e-8)
        assert dA_prev.shape == X.shape and dW.shape == W.shape


# ----------------------------------------------------------------------------- tie rule
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_backward_gives_every_tied_maximum_the_gradient(dtype):
    A = np.zeros((1, 2, 2, 1), dtype)
    dA = np.ones((1, 1, 1, 1), dtype)
    course = classic.pool_backward(dA, A, (2, 2), stride=(2, 2))
    assert course.dtype == dtype
    np.testing.assert_array_equal(course.reshape(2, 2), [[1, 1], [1, 1]])
    tf_rule = classic.pool_backward(dA, A, (2, 2), stride=(2, 2), semantics="tensorflow")
    np.testing.assert_array_equal(tf_rule.reshape(2, 2), [[1, 0], [0, 0]])
    two = np.array([[2, 2], [1, 0]], dtype).reshape(1, 2, 2, 1)  # two equal maxima
    got = classic.pool_backward(3 * dA, two, (2, 2), stride=(2, 2))
    np.testing.assert_array_equal(got.reshape(2, 2), [[3, 3], [0, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel_shape,stride", [((3, 3), (3, 3)), ((3, 3), (1, 1)),
                                                 ((2, 3), (1, 2)), ((3, 2), (2, 1)),
                                                 ((2, 2), (3, 3))])
def test_pool_backward_ties_match_the_course_loop(kernel_shape, stride, dtype):
    """Small integers (many ties); stride < kernel makes windows overlap: gradients add."""
    rng = np.random.default_rng(3)
    A = rng.integers(-1, 2, (2, 9, 8, 3)).astype(dtype)
    oh = (9 - kernel_shape[0]) // stride[0] + 1
    ow = (8 - kernel_shape[1]) // stride[1] + 1
    dA = rng.standard_normal((2, oh, ow, 3)).astype(dtype)
    got = classic.pool_backward(dA, A, kernel_shape, stride)
    assert got.dtype == dtype
    assert_close(got, course_pool_backward(dA, A, kernel_shape, stride), dtype, "dA_prev")
    assert_close(classic.pool_forward(A, kernel_shape, stride),
                 ref.pool2d(A, kernel_shape, stride, ((0, 0), (0, 0)), "max"), dtype, "A")


def test_overlapping_windows_add_their_gradients():
    A = np.zeros((1, 3, 3, 1))
    dA = np.arange(1.0, 5.0).reshape(1, 2, 2, 1)   # 2x2 windows, stride 1: the centre is in all
    got = classic.pool_backward(dA, A, (2, 2), (1, 1)).reshape(3, 3)
    np.testing.assert_array_equal(got, [[1, 3, 2], [4, 10, 6], [3, 7, 4]])


# ----------------------------------------------------------------------------- "same" padding
@pytest.mark.parametrize("dtype", DTYPES)
def test_course_same_is_symmetric_np_pad_then_valid(dtype):
    rng = np.random.default_rng(11)
    A = rng.standard_normal((2, 9, 8, 2)).astype(dtype)
    for s in (1, 2, 3):
        for k in (2, 3, 4, 5):
            W = rng.standard_normal((k, k, 2, 3)).astype(dtype)
            b = rng.standard_normal((1, 1, 1, 3)).astype(dtype)
            ph, pw = course_pads(9, 8, k, k, s, s)
            Z = classic.conv_forward(A, W, b, identity, "same", (s, s))
            A_pad = np.pad(A, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
            want = ref.conv2d(A_pad, W, b.reshape(-1), (s, s), ((0, 0), (0, 0)), (1, 1), 1)
            assert Z.dtype == dtype
            assert_close(Z, want, dtype, f"Z k={k} s={s}")
            dZ = rng.standard_normal(Z.shape).astype(dtype)   # the forward's shape is accepted
            dA_prev, dW, db = classic.conv_backward(dZ, A, W, b, "same", (s, s))
            dA_pad, dW_ref, db_ref = ref.conv2d_backward(dZ, A_pad, W, (s, s), ((0, 0), (0, 0)),
                                                         (1, 1), 1)
            assert_close(dA_prev, dA_pad[:, ph:ph + 9, pw:pw + 8], dtype, f"dA k={k} s={s}")
            assert_close(dW, dW_ref, dtype, f"dW k={k} s={s}")
            assert_close(db.reshape(-1), db_ref, dtype, f"db k={k} s={s}")


def test_course_same_shapes_from_the_course():
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    A = np.ones((1, 28, 28, 1))
    b = np.zeros((1, 1, 1, 1))
    course_shape = classic.conv_forward(A, np.ones((3, 3, 1, 1)), b, relu, "same", (2, 2)).shape
    assert course_shape == (1, 27, 27, 1)
    tf_shape = classic.conv_forward(A, np.ones((3, 3, 1, 1)), b, relu, "same", (2, 2),
                                    semantics="tensorflow").shape
    assert tf_shape == (1, 14, 14, 1)
    A8 = np.ones((1, 8, 8, 1))
    assert classic.conv_forward(A8, np.ones((2, 2, 1, 1)), b, relu, "same").shape == (1, 7, 7, 1)
    assert classic.conv_forward(A8, np.ones((2, 2, 1, 1)), b, relu, "same",
                                semantics="tensorflow").shape == (1, 8, 8, 1)


def test_conv_backward_matches_finite_differences_in_course_mode():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((2, 7, 6, 2))
    W = rng.standard_normal((3, 2, 2, 3))
    b = rng.standard_normal((1, 1, 1, 3))
    args = ("same", (2, 3))
    Z = classic.conv_forward(A, W, b, identity, *args)
    dZ = rng.standard_normal(Z.shape)
    grads = classic.conv_backward(dZ, A, W, b, *args)
    eps = 1e-6
    for name, arr, grad in zip(("A_prev", "W", "b"), (A, W, b), grads):
        fd = np.zeros(arr.shape)
        for i in np.ndindex(arr.shape):
            saved = arr[i]
            arr[i] = saved + eps
            up = np.sum(classic.conv_forward(A, W, b, identity, *args) * dZ)
            arr[i] = saved - eps
            down = np.sum(classic.conv_forward(A, W, b, identity, *args) * dZ)
            arr[i] = saved
            fd[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7, err_msg=name)


def test_pool_backward_matches_finite_differences_in_course_mode():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((1, 7, 7, 2))              # no ties: the gradient exists
    dA = rng.standard_normal((1, 3, 3, 2))
    got = classic.pool_backward(dA, A, (3, 3), (2, 2))
    eps = 1e-6
    fd = np.zeros(A.shape)
    for i in np.ndindex(A.shape):
        saved = A[i]
        A[i] = saved + eps
        up = np.sum(classic.pool_forward(A, (3, 3), (2, 2)) * dA)
        A[i] = saved - eps
        down = np.sum(classic.pool_forward(A, (3, 3), (2, 2)) * dA)
        A[i] = saved
        fd[i] = (up - down) / (2 * eps)
    np.testing.assert_allclose(got, fd, atol=1e-8)


# ----------------------------------------------------------------------------- threads
@pytest.mark.skipif(not cconv.openmp_enabled(), reason="built without OpenMP: always one thread")
@pytest.mark.parametrize("dtype", DTYPES)
def test_course_mode_is_bit_identical_for_1_2_and_3_threads(dtype, restore_threads, monkeypatch):
    monkeypatch.setattr(ops, "_GRAIN", 1)
    rng = np.random.default_rng(8)
    A = rng.integers(-1, 2, (5, 30, 27, 4)).astype(dtype)
    W = rng.standard_normal((3, 3, 4, 6)).astype(dtype)
    b = rng.standard_normal((1, 1, 1, 6)).astype(dtype)
    results = {}
    for n in (1, 2, 3):
        cconv.set_num_threads(n)
        Z = classic.conv_forward(A, W, b, identity, "same", (2, 2))
        out = [Z, *classic.conv_backward(np.cos(Z), A, W, b, "same", (2, 2))]
        for k, s in (((3, 3), (3, 3)), ((3, 3), (1, 1)), ((2, 2), (2, 2))):
            P = classic.pool_forward(A, k, s)
            out.append(classic.pool_backward(np.cos(P), A, k, s))
        results[n] = out
    for n in (2, 3):
        for a, b_ in zip(results[1], results[n]):
            np.testing.assert_array_equal(a, b_)


# ----------------------------------------------------------------------------- errors
def test_bad_semantics_is_a_clear_value_error():
    A = np.zeros((1, 4, 4, 1))
    W, b = np.zeros((2, 2, 1, 1)), np.zeros((1, 1, 1, 1))
    calls = {
        "conv_forward": lambda s: classic.conv_forward(A, W, b, identity, semantics=s),
        "conv_backward": lambda s: classic.conv_backward(np.zeros((1, 4, 4, 1)), A, W, b,
                                                         semantics=s),
        "pool_forward": lambda s: classic.pool_forward(A, (2, 2), semantics=s),
        "pool_backward": lambda s: classic.pool_backward(np.zeros((1, 3, 3, 1)), A, (2, 2),
                                                         semantics=s),
    }
    for name, call in calls.items():
        for bad in ("Course", "tf", None, 1):
            with pytest.raises(ValueError, match=f'{name}: semantics must be "course" or '
                                                 f'"tensorflow", got {bad!r}'):
                call(bad)


# ----------------------------------------------------------------------------- TensorFlow mode
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensorflow_mode_matches_tensorflow(dtype):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is needed for the agreement tests")
    rng = np.random.default_rng(9)
    A = rng.integers(-1, 2, (2, 11, 10, 3)).astype(dtype)  # tied maxima everywhere
    W = rng.standard_normal((4, 3, 3, 5)).astype(dtype)
    b = rng.standard_normal((1, 1, 1, 5)).astype(dtype)
    kw = dict(padding="same", stride=(2, 3), semantics="tensorflow")
    tA, tW = tf.constant(A), tf.constant(W)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([tA, tW])
        tZ = tf.nn.conv2d(tA, tW, (1, 2, 3, 1), "SAME") + b.reshape(-1)
        tP = tf.nn.max_pool2d(tA, (3, 3), (2, 2), "VALID")
        dZ = tf.constant(rng.standard_normal(tZ.shape).astype(dtype))
        dP = tf.constant(rng.standard_normal(tP.shape).astype(dtype))
        loss_z, loss_p = tf.reduce_sum(tZ * dZ), tf.reduce_sum(tP * dP)
    Z = classic.conv_forward(A, W, b, identity, **kw)
    assert_close(Z, tZ.numpy(), dtype, "Z")
    dA_prev, dW, _ = classic.conv_backward(dZ.numpy(), A, W, b, **kw)
    assert_close(dA_prev, tape.gradient(loss_z, tA).numpy(), dtype, "dA_prev")
    assert_close(dW, tape.gradient(loss_z, tW).numpy(), dtype, "dW")
    P = classic.pool_forward(A, (3, 3), (2, 2), semantics="tensorflow")
    assert_close(P, tP.numpy(), dtype, "pool")
    dA = classic.pool_backward(dP.numpy(), A, (3, 3), (2, 2), semantics="tensorflow")
    assert_close(dA, tape.gradient(loss_p, tA).numpy(), dtype, "pool dA_prev")


# ----------------------------------------------------------------------------- example
def test_example_3_main_prints_repeated_gradients_on_the_background():
    if not os.path.exists(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz")):
        pytest.skip(f"the MNIST files are not in {MNIST}")
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.join("examples", "course", "3-main.py"), MNIST],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    np.random.seed(0)
    first = np.random.randn(10, 9, 9, 2)[0, 0, 0]  # the top-left window: all background
    numbers = [float(t) for t in out.stdout.replace("[", " ").replace("]", " ").split()[:6]]
    np.testing.assert_allclose(numbers, np.tile(first, 3), rtol=1e-6)
