"""Automatic gradients (cconv.autograd): every op on the tape passes a finite-difference
gradient check in float64; NumPy operators and ufuncs on tensors record themselves; the tape
refuses what it cannot differentiate by name; GradientTape agrees with TensorFlow's."""
import numpy as np
import pytest

import cconv
from cconv import autograd as ag
from cconv import ops


def _rng(seed=0):
    return np.random.default_rng(seed)


def numeric_grad(f, arrays, i, eps=1e-6):
    """Central differences of the scalar ``sum(f(*arrays) * w)`` in ``arrays[i]``."""
    x = arrays[i]
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + eps
        up = f(*arrays)
        x[idx] = old - eps
        down = f(*arrays)
        x[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def check(fn, *arrays, rtol=1e-6, atol=1e-8, seed=1):
    """fn on tensors: the tape's gradient of ``sum(fn(...) * w)`` (w random) equals the
    finite differences, for every operand."""
    arrays = [np.array(a, dtype="float64") for a in arrays]
    out = fn(*arrays)
    w = _rng(seed).normal(size=np.shape(ag.value_of(out)))

    def scalar(*arrs):
        return float(np.sum(np.asarray(ag.value_of(fn(*arrs))) * w))

    leaves = [ag.variable(a) for a in arrays]
    y = fn(*leaves)
    assert isinstance(y, ag.Tensor)
    np.testing.assert_allclose(y.value, ag.value_of(out), rtol=1e-12, atol=1e-12)
    grads = ag.backprop(y, w)
    for i, t in enumerate(leaves):
        want = numeric_grad(scalar, arrays, i)
        got = grads.get(id(t), np.zeros_like(want))
        assert got.shape == t.shape
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"operand {i}")


R = _rng(42)
A34 = R.normal(size=(3, 4))
B34 = R.normal(size=(3, 4))
B4 = R.normal(size=(4,))
POS34 = R.uniform(0.5, 2.0, size=(3, 4))
IMG = R.normal(size=(2, 6, 6, 3))
KER = R.normal(size=(3, 3, 3, 4))
BIAS = R.normal(size=(4,))

ELEMENTWISE = {
    "add": (ops.add, [A34, B4]),
    "subtract": (ops.subtract, [A34, B34]),
    "multiply": (ops.multiply, [A34, B4]),
    "divide": (ops.divide, [A34, POS34]),
    "power": (ops.power, [POS34, B34]),
    "maximum": (ops.maximum, [A34, B34]),
    "minimum": (ops.minimum, [A34, B34]),
    "negative": (ops.negative, [A34]),
    "exp": (ops.exp, [A34]),
    "log": (ops.log, [POS34]),
    "sqrt": (ops.sqrt, [POS34]),
    "square": (ops.square, [A34]),
    "absolute": (ops.absolute, [A34]),
    "tanh": (ops.tanh, [A34]),
    "sigmoid": (ops.sigmoid, [A34]),
    "softplus": (ops.softplus, [A34]),
    "relu": (ops.relu, [A34]),
    "clip": (lambda x: ops.clip(x, -0.5, 0.5), [A34]),
    "where": (lambda a, b: ops.where(A34 > 0, a, b), [A34, B34]),
    "leaky_relu": (ops.leaky_relu, [A34]),
    "cast": (lambda x: ops.cast(x, "float64") * 2, [A34]),
    "softmax": (ops.softmax, [A34]),
    "softmax_axis0": (lambda x: ops.softmax(x, axis=0), [A34]),
    "log_softmax": (ops.log_softmax, [A34]),
}
SHAPES = {
    "matmul": (ops.matmul, [A34, R.normal(size=(4, 5))]),
    "matmul_batched": (ops.matmul, [R.normal(size=(2, 3, 4)), R.normal(size=(4, 2))]),
    "matmul_vector": (ops.matmul, [A34, B4]),
    "matmul_vector_left": (ops.matmul, [R.normal(size=(3,)), A34]),
    "sum": (ops.sum, [A34]),
    "sum_axis": (lambda x: ops.sum(x, axis=1, keepdims=True), [A34]),
    "mean": (lambda x: ops.mean(x, axis=0), [A34]),
    "max": (lambda x: ops.max(x, axis=-1), [A34]),
    "min": (ops.min, [A34]),
    "var": (lambda x: ops.var(x, axis=0), [A34]),
    "std": (lambda x: ops.std(x, axis=-1, keepdims=True), [A34]),
    "reshape": (lambda x: ops.reshape(x, (2, 6)), [A34]),
    "transpose": (ops.transpose, [R.normal(size=(2, 3, 4))]),
    "transpose_axes": (lambda x: ops.transpose(x, (1, 2, 0)), [R.normal(size=(2, 3, 4))]),
    "expand_dims": (lambda x: ops.expand_dims(x, 1), [A34]),
    "squeeze": (lambda x: ops.squeeze(x, 1), [R.normal(size=(3, 1, 4))]),
    "concatenate": (lambda a, b: ops.concatenate([a, b], axis=1), [A34, B34]),
    "getitem": (lambda x: x[1:, [0, 2, 2]], [A34]),
}
NATIVE = {
    "conv2d": (lambda x, k, b: ops.conv2d(x, k, b, padding="same"), [IMG, KER, BIAS]),
    "conv2d_strided": (lambda x, k: ops.conv2d(x, k, strides=2, padding="valid"), [IMG, KER]),
    "conv2d_transpose": (lambda x, k, b: ops.conv2d_transpose(x, k, b, strides=2,
                                                              padding="same"),
                         [IMG, R.normal(size=(3, 3, 2, 3)), R.normal(size=(2,))]),
    "dense": (ops.dense, [A34, R.normal(size=(4, 5)), R.normal(size=(5,))]),
    "max_pool2d": (lambda x: ops.max_pool2d(x, 2), [IMG]),
    "avg_pool2d": (lambda x: ops.avg_pool2d(x, 3, 2, "same"), [IMG]),
    "upsampling2d": (lambda x: ops.upsampling2d(x, 2, "bilinear"), [IMG]),
    "conv": (lambda x, k: ops.conv(x, k, 1, "same", dilation_rate=2), [IMG, KER]),
    "max_pool": (lambda x: ops.max_pool(x, 2, 1), [IMG]),
    "average_pool": (lambda x: ops.average_pool(x, 2, padding="same"), [IMG]),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_gradient_check_elementwise(name):
    fn, args = ELEMENTWISE[name]
    check(fn, *args)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_gradient_check_products_reductions_shapes(name):
    fn, args = SHAPES[name]
    check(fn, *args)


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_gradient_check_native_ops(name):
    fn, args = NATIVE[name]
    check(fn, *args, rtol=1e-5, atol=1e-7)


NUMPY = {
    "operators": lambda a, b: (a * b + 2.0) / (1.5 + b * b) - a @ b.T @ a ** 2,
    "ufuncs": lambda a, b: np.exp(np.tanh(a)) * np.sqrt(np.square(b) + 1) + np.maximum(a, b),
    "functions": lambda a, b: np.sum(np.mean(np.reshape(a * b, (4, 3)), axis=0)) + np.max(a),
    "neg_abs_T": lambda a, b: b @ abs(-a).T + np.log(np.abs(b) + 1)[:, :3],
}


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_numpy_operators_and_functions_are_recorded(name):
    check(NUMPY[name], A34, B34)


def test_every_op_has_a_gradient_check():
    names = set(ELEMENTWISE) | set(SHAPES) | set(NATIVE)
    for op in ("matmul", "add", "subtract", "multiply", "divide", "power", "maximum",
               "minimum", "negative", "exp", "log", "sqrt", "square", "absolute", "tanh",
               "sigmoid", "softplus", "relu", "clip", "where", "sum", "mean", "max", "min",
               "reshape", "transpose", "expand_dims", "squeeze", "concatenate", "softmax",
               "log_softmax", "conv2d", "conv2d_transpose", "dense", "max_pool2d",
               "avg_pool2d", "upsampling2d", "var", "std", "leaky_relu", "cast", "conv",
               "max_pool", "average_pool"):
        assert op in names, op
        assert callable(getattr(ops, op))


def test_ops_on_arrays_return_arrays_as_numpy():
    assert isinstance(ops.matmul(A34, A34.T), np.ndarray)
    np.testing.assert_allclose(ops.softmax(A34).sum(-1), 1.0)
    np.testing.assert_allclose(ops.sum(A34, axis=0), A34.sum(0))
    assert ops.abs is ops.absolute
    assert ops.multiply(A34.astype("float32"), 2).dtype == np.float32
    assert type(ops.conv2d(IMG, KER)) is np.ndarray
    assert ops.conv2d.__doc__ and "convolution" in ops.conv2d.__doc__


def test_float32_tensors_keep_their_dtype():
    x = ag.variable(A34.astype("float32"))
    y = ops.relu(x * 2 + 1.0) @ np.ones((4, 2), "float32")
    assert y.dtype == np.float32
    g = ag.backprop(ops.sum(y))
    assert g[id(x)].dtype == np.float32


def test_unknown_numpy_function_is_refused_by_name():
    x = ag.variable(A34)
    with pytest.raises(TypeError, match=r"no gradient for numpy\.sin"):
        np.sin(x)
    with pytest.raises(TypeError, match=r"no gradient for numpy\.cumsum"):
        np.cumsum(x)
    assert np.shape(x) == (3, 4) and (x > 0).dtype == bool


def test_gradient_tape_on_raw_arrays():
    w = A34.copy()
    b = B4.copy()
    with cconv.GradientTape() as tape:
        loss = ops.mean(ops.square(ops.matmul(B34.T, w) + 1.0)) + ops.sum(ops.multiply(b, b))
    gw, gb = tape.gradient(loss, [w, b])
    np.testing.assert_allclose(gw, B34 @ (2 * (B34.T @ w + 1.0) / 16), rtol=1e-10)
    np.testing.assert_allclose(gb, 2 * b)
    with cconv.GradientTape() as tape:
        unseen = ops.sum(b * b)     # NumPy on two plain arrays happens off the tape
    assert tape.gradient(unseen, b) is None
    assert cconv.autograd.GradientTape is cconv.GradientTape


def test_gradient_tape_rules():
    w = A34.copy()
    other = B34.copy()
    with cconv.GradientTape() as tape:
        loss = ops.sum(ops.multiply(w, 3.0))
    gw, gother = tape.gradient(loss, [w, other])
    np.testing.assert_allclose(gw, np.full_like(w, 3.0))
    assert gother is None
    with pytest.raises(RuntimeError, match="non-persistent"):
        tape.gradient(loss, w)
    with cconv.GradientTape(persistent=True) as tape:
        loss = ops.sum(ops.multiply(w, 3.0))
    np.testing.assert_allclose(tape.gradient(loss, w), 3.0)
    assert tape.gradient(loss, other) is None
    np.testing.assert_allclose(tape.gradient(loss, other, unconnected_gradients="zero"), 0)
    assert tape.gradient(loss, {"w": w})["w"].shape == w.shape
    with cconv.GradientTape() as tape:
        value = float(ops.sum(w))
    with pytest.raises(TypeError, match="target must be a tensor"):
        tape.gradient(value, w)


def test_gradient_tape_agrees_with_tensorflow():
    tf = pytest.importorskip("tensorflow")
    w, x = A34.copy(), IMG[:, :4, :4, :].copy()
    k = KER.copy()
    with cconv.GradientTape() as tape:
        h = ops.relu(ops.conv2d(x, k, padding="same"))
        h = ops.max_pool2d(h, 2)
        z = ops.reshape(h, (2, -1)) @ np.ones((16, 3))
        loss = ops.mean(ops.log_softmax(z)) + ops.sum(ops.tanh(w))
    gk, gw = tape.gradient(loss, [k, w])
    tk, tw = tf.Variable(k), tf.Variable(w)
    with tf.GradientTape() as ttape:
        h = tf.nn.relu(tf.nn.conv2d(x, tk, 1, "SAME"))
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        z = tf.reshape(h, (2, -1)) @ np.ones((16, 3))
        tloss = tf.reduce_mean(tf.nn.log_softmax(z)) + tf.reduce_sum(tf.tanh(tw))
    want_k, want_w = ttape.gradient(tloss, [tk, tw])
    np.testing.assert_allclose(float(loss.value), float(tloss), rtol=1e-10)
    np.testing.assert_allclose(gk, want_k.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(gw, want_w.numpy(), rtol=1e-10)


def test_keras_named_ops_agree_with_keras_ops():
    keras = pytest.importorskip("keras")
    kops = keras.ops
    x, k = IMG.astype("float32"), KER.astype("float32")
    pairs = [
        (ops.conv(x, k, padding="same"), kops.conv(x, k, padding="same")),
        (ops.max_pool(x, 2), kops.max_pool(x, 2)),
        (ops.average_pool(x, 3, 2, "same"), kops.average_pool(x, 3, 2, "same")),
        (ops.leaky_relu(x), kops.leaky_relu(x)),
        (ops.var(x, axis=(1, 2)), kops.var(x, axis=(1, 2))),
        (ops.std(x, axis=-1), kops.std(x, axis=-1)),
        (ops.log_softmax(x), kops.log_softmax(x)),
        (ops.softplus(x), kops.softplus(x)),
    ]
    for got, want in pairs:
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "linear", "elu",
                                  "gelu", "leaky_relu"])
def test_gradient_check_activations_on_tensors(name):
    """cconv.activations called on a tensor (Keras's keras.activations.relu(x) inside call)
    record themselves with their own derivative."""
    check(getattr(cconv.activations, name), A34)
