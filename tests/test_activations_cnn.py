"""Keras 3's activations of modern CNNs (relu6, silu/swish, hard_sigmoid, hard_silu/hard_swish,
mish, softplus, softsign, selu, exponential, log_softmax): values and dtypes against
``keras.activations``, derivatives against float64 finite differences and TensorFlow's
GradientTape, no overflow warnings for large inputs, names / aliases / configs as Keras's, and
models using them (Conv2D ``activation="swish"``, Dense ``activation="relu6"``) predicting and
training one step as Keras does."""
import warnings

import numpy as np
import pytest

import cconv
from cconv import activations as A
from cconv import autograd as ag
from cconv import layers as L

from ._helpers import keras_or_skip, numeric_grad

# Keras 3 name -> the name it serializes as (the alias resolves to the same function).
NAMES = {"relu6": "relu6", "silu": "silu", "swish": "silu", "hard_sigmoid": "hard_sigmoid",
         "hard_silu": "hard_silu", "hard_swish": "hard_silu", "mish": "mish",
         "softplus": "softplus", "softsign": "softsign", "selu": "selu",
         "exponential": "exponential", "log_softmax": "log_softmax"}
CANONICAL = sorted(set(NAMES.values()))
DTYPES = [np.float32, np.float64]

# Kinks (0, 6, +-3), tiny and huge magnitudes, and a smooth range; two rows (log_softmax works
# along the last axis).
_EDGES = [-1e30, -1e4, -300.0, -100.0, -88.0, -30.0, -20.0, -17.0, -15.0, -6.0, -3.0, -1e-8,
          -1e-30, 0.0, 1e-30, 1e-8, 3.0, 6.0, 15.0, 17.0, 20.0, 30.0, 88.0, 100.0, 300.0, 1e4,
          1e30]
X = np.concatenate([np.linspace(-8, 8, 161), _EDGES, np.random.default_rng(5).normal(
    scale=5, size=92)]).reshape(2, -1)

# Elementwise |got - want| <= RTOL * |want| + ATOL: a few units in the last place. Forward
# values agree to float rounding; the gradients of float32 mish/softplus differ a little more
# (TensorFlow's float32 softplus is a piecewise approximation; ours is NumPy's logaddexp, the
# closer of the two to the float64 values).
FWD_TOL = {np.float32: (1e-6, 1e-7), np.float64: (1e-13, 1e-15)}
GRAD_TOL = {np.float32: (1e-5, 1e-6), np.float64: (1e-12, 1e-14)}


def _close(got, want, dtype, tol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == dtype, (what, got.dtype, got.shape)
    finite = np.isfinite(want)
    assert np.array_equal(np.isfinite(got), finite), f"{what}: inf/nan at other places"
    np.testing.assert_array_equal(got[~finite], want[~finite], err_msg=what)
    rtol, atol = tol[dtype]
    err = np.abs(got[finite].astype(np.float64) - want[finite])
    bad = err > rtol * np.abs(want[finite].astype(np.float64)) + atol
    assert not bad.any(), (f"{what}: at x={X[finite][bad][:5]} got {got[finite][bad][:5]}, "
                           f"want {want[finite][bad][:5]}")


def _inputs(name, dtype):
    x = X.astype(dtype)
    if name == "selu":
        # TensorFlow's float kernel computes scale * alpha * (exp(x) - 1), which rounds to 0
        # for tiny negative x (and its gradient, read from that 0, takes the right-hand
        # slope); Keras's numpy backend's expm1 and ours keep the exact value (checked below).
        x = np.where((x < 0) & (x > -1e-6), dtype(-1e-3), x)
    return x


def _backward(act, dy, x):
    a = act.forward(x)
    return act.backward(dy, x if act.needs_input else None, a)


@pytest.fixture
def no_float_warnings():
    """Overflow, invalid and divide-by-zero raise (NumPy's underflow stays quiet)."""
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        yield


# ----- values ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(NAMES))
def test_forward_matches_keras(name, dtype, no_float_warnings):
    keras = keras_or_skip()
    x = _inputs(name, dtype)
    x0 = x.copy()
    got = A.get(name)(x)
    np.testing.assert_array_equal(x, x0)                       # the input is left alone
    with np.errstate(all="ignore"):
        want = np.asarray(keras.activations.get(name)(x))
    _close(got, want, dtype, FWD_TOL, name)
    assert getattr(A, name) is A.get(name)                     # exported at cconv.activations


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CANONICAL)
def test_forward_in_place_and_out_of_place_agree(name, dtype, no_float_warnings):
    act = A.get(name)
    x = _inputs(name, dtype)
    want = act.forward(x)
    z = x.copy()
    got = act.forward(z, inplace=True)
    np.testing.assert_array_equal(got, want)
    if act.needs_input:
        np.testing.assert_array_equal(z, x)                    # z is kept for the backward


def test_formulas_at_chosen_points():
    x = np.array([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0, 6.0, 7.0])
    np.testing.assert_array_equal(A.relu6(x), [0, 0, 0, 0, 1.5, 3, 4, 6, 6])
    np.testing.assert_allclose(A.hard_sigmoid(x), np.clip(x + 3, 0, 6) / 6, rtol=1e-15)
    np.testing.assert_allclose(A.hard_swish(x), x * np.clip(x + 3, 0, 6) / 6, rtol=1e-15)
    np.testing.assert_allclose(A.swish(x), x / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(A.mish(x), x * np.tanh(np.log1p(np.exp(x))), rtol=1e-15)
    np.testing.assert_allclose(A.softplus(x), np.log1p(np.exp(x)), rtol=1e-15)
    np.testing.assert_allclose(A.softsign(x), x / (1 + np.abs(x)), rtol=1e-15)
    np.testing.assert_allclose(A.exponential(x), np.exp(x), rtol=1e-15)
    np.testing.assert_allclose(
        A.selu(x), 1.0507009873554805 * np.where(x >= 0, x, 1.6732632423543772 * np.expm1(x)),
        rtol=1e-15)
    ls = A.log_softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]]))
    np.testing.assert_allclose(np.exp(ls).sum(-1), 1)
    np.testing.assert_allclose(ls[1], -np.log(3))
    # Keras 3's hard_sigmoid, not Keras 2's 0.2 x + 0.5
    assert A.hard_sigmoid(np.array([1.0]))[0] == 4 / 6
    # integers are computed in float32, as the other activations
    assert A.relu6(np.array([1, 7])).dtype == np.float32


def test_large_magnitudes_are_exact_limits(no_float_warnings):
    for dtype in DTYPES:
        x = np.array([-1e30, -1e4, 1e4, 1e30], dtype)
        limit = np.array([-0.0, -0.0, x[2], x[3]], dtype)
        np.testing.assert_array_equal(A.silu(x), limit)
        np.testing.assert_array_equal(A.mish(x), limit)
        np.testing.assert_array_equal(A.softplus(x), np.maximum(limit, 0))
        np.testing.assert_array_equal(A.softsign(x[[0, 3]]), [-1, 1])
        np.testing.assert_array_equal(A.exponential(x), [0, 0, np.inf, np.inf])
        for name in ("silu", "mish", "softplus", "softsign"):
            g = _backward(A.get(name), np.ones_like(x), x)
            assert np.isfinite(g).all() and g.dtype == dtype, (name, g)


# ----- derivatives -------------------------------------------------------------------------
@pytest.mark.parametrize("name", CANONICAL)
def test_gradient_matches_finite_differences(name):
    act = A.get(name)
    rng = np.random.default_rng(3)
    x = rng.normal(scale=4, size=(3, 40))
    if name == "exponential":
        x = x / 3            # the differences of a sum of exp(12)s would lose the small terms
    # keep away from the kinks (0, 6, -3, 3), where the slope jumps
    for kink in (-3.0, 0.0, 3.0, 6.0):
        x = np.where(np.abs(x - kink) < 1e-3, kink + 0.5, x)
    w = rng.normal(size=x.shape)
    got = _backward(act, w, x.copy())
    want = numeric_grad(lambda v: float(np.sum(act.forward(v) * w)), x.copy())
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(NAMES))
def test_gradient_matches_tensorflow(name, dtype, no_float_warnings):
    keras = keras_or_skip()
    import tensorflow as tf
    x = _inputs(name, dtype)
    if name == "exponential":
        x = np.clip(x, -80, 80)       # exp(x) * dy stays finite in float32
    dy = np.random.default_rng(7).normal(size=x.shape).astype(dtype)
    got = _backward(A.get(name), dy, x)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = keras.activations.get(name)(xt)
    want = tape.gradient(y, xt, output_gradients=tf.constant(dy)).numpy()
    _close(got, want, dtype, GRAD_TOL, name)


def test_selu_tiny_negative_inputs_keep_the_left_slope():
    """Where TensorFlow's float selu rounds ``exp(x) - 1`` to 0 (|x| < 6e-8 in float32), the
    value and slope here are Keras's numpy backend's: ``scale * alpha * expm1(x)`` and
    ``scale * alpha * exp(x)``."""
    sa = 1.0507009873554805 * 1.6732632423543772
    for dtype in DTYPES:
        x = np.array([-1e-8, -1e-30], dtype)
        np.testing.assert_allclose(A.selu(x), sa * x.astype(np.float64), rtol=1e-6)
        np.testing.assert_allclose(_backward(A.selu, np.ones_like(x), x), sa, rtol=1e-6)
        assert _backward(A.selu, np.ones(1, dtype), np.zeros(1, dtype))[0] == dtype(
            1.0507009873554805)                               # at 0: TensorFlow's slope


@pytest.mark.parametrize("name", CANONICAL)
def test_on_the_autograd_tape(name):
    """Called on a cconv tensor (inside a custom layer's ``call``), each records its own
    derivative."""
    act = A.get(name)
    x = np.random.default_rng(11).normal(scale=3, size=(3, 5))
    w = np.random.default_rng(12).normal(size=x.shape)
    leaf = ag.variable(x)
    y = act(leaf)
    assert isinstance(y, ag.Tensor)
    np.testing.assert_array_equal(y.value, act(x))
    got = ag.backprop(y, w)[id(leaf)]
    np.testing.assert_allclose(got, _backward(act, w, x), rtol=1e-15)


# ----- names, aliases, configs -------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_aliases_and_serialization_as_keras(name):
    act = A.get(name)
    assert act.name == NAMES[name] and act.get_config() == {}
    assert A.get(name.upper()) is act and A.get(name.replace("_", "")) is act
    assert A.serialize(name) == A.serialize(act) == NAMES[name]
    assert A.deserialize(A.serialize(act)) is act
    assert A.get({"class_name": name, "config": {}}) == act
    assert A.deserialize(cconv.activations.REGISTRY.serialize(act)) == act
    assert name in A.REGISTRY.known()
    keras = keras_or_skip()
    assert keras.activations.serialize(keras.activations.get(name)) == A.serialize(act)
    assert A.get(keras.activations.serialize(keras.activations.get(name))) is act


def test_layers_take_the_new_names_and_keep_them_in_their_config():
    for name in NAMES:
        layer = L.Activation(name)
        assert layer.get_config()["activation"] == NAMES[name]
        again = L.Activation.from_config(layer.get_config())
        assert again.activation is A.get(name)
    conv = L.Conv2D(4, 3, activation="swish")
    cfg = conv.get_config()
    assert cfg["activation"] == "silu"
    assert L.Conv2D.from_config(cfg).activation is A.silu
    assert L.Dense(3, activation="hard_swish").get_config()["activation"] == "hard_silu"


@pytest.mark.parametrize("name", sorted(NAMES))
def test_activation_layer_matches_keras(name):
    keras = keras_or_skip()
    x = _inputs(name, np.float32)[:, 40:120]      # moderate values: a layer's typical input
    got = L.Activation(name)(x)
    want = np.asarray(keras.layers.Activation(name)(x))
    _close(got, want, np.float32, FWD_TOL, name)


# ----- models ------------------------------------------------------------------------------
MODEL_CASES = [("swish", "relu6"), ("hard_swish", "mish"), ("selu", "softplus"),
               ("softsign", "hard_sigmoid"), ("hard_silu", "log_softmax"),
               ("silu", "exponential")]


def _model(mod, conv_act, dense_act):
    return mod.Sequential([
        mod.Input((7, 7, 2)),
        mod.layers.Conv2D(4, 3, activation=conv_act),
        mod.layers.Conv2D(3, 3, strides=2, padding="same", activation=conv_act),
        mod.layers.Flatten(),
        mod.layers.Dense(6, activation=dense_act),
        mod.layers.Dense(3, activation=dense_act),
    ])


@pytest.mark.parametrize("conv_act,dense_act", MODEL_CASES)
def test_model_predicts_and_trains_one_step_as_keras(conv_act, dense_act):
    keras = keras_or_skip()
    rng = np.random.default_rng(21)
    x = rng.normal(size=(8, 7, 7, 2)).astype(np.float32)
    y = rng.normal(size=(8, 3)).astype(np.float32)
    keras.utils.set_random_seed(4)
    km = _model(keras, conv_act, dense_act)
    km.set_weights([w * 0.5 for w in km.get_weights()])   # keeps exponential's outputs small
    cm = _model(cconv, conv_act, dense_act)
    cm.set_weights(km.get_weights())

    want, got = km.predict(x, verbose=0), cm.predict(x, verbose=0)
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= 1e-5 * scale, (np.abs(got - want).max(), scale)

    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    cm.compile(optimizer=cconv.optimizers.SGD(0.1), loss="mse")
    hk = km.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    hc = cm.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(hc.history["loss"], hk.history["loss"], rtol=1e-5)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        scale = max(1.0, float(np.abs(b).max()))
        assert np.abs(a - b).max() <= 1e-5 * scale, "weights differ from Keras's after a step"
    # the step moved the weights: the comparison above is not of the initial weights
    assert any(np.abs(a - b).max() > 1e-4 for a, b in
               zip(cm.get_weights(), [w * 0.5 for w in _initial(keras, conv_act, dense_act)]))


def _initial(keras, conv_act, dense_act):
    keras.utils.set_random_seed(4)
    return _model(keras, conv_act, dense_act).get_weights()


# ----- ONNX export -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(set(NAMES) - {"mish", "log_softmax"}))
def test_onnx_export_of_the_real_activations(name, tmp_path):
    """The exporter maps activations by name; these are now cconv's own objects."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    second = "linear" if name == "exponential" else name     # exp(exp(x)) would overflow
    model = cconv.Sequential([cconv.Input((5, 4, 2)), L.Conv2D(3, 2, activation=name),
                              L.Activation(second)])
    x = np.random.default_rng(2).normal(scale=2, size=(3, 5, 4, 2)).astype(np.float32)
    path = tmp_path / "act.onnx"
    model.export(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    want = model.predict(x, verbose=0)
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= 1e-5 * scale, name


@pytest.mark.parametrize("name", ["mish", "log_softmax"])
def test_onnx_export_refuses_what_it_cannot_write(name, tmp_path):
    pytest.importorskip("onnx")
    model = cconv.Sequential([cconv.Input((4,)), L.Dense(3, activation=name)])
    with pytest.raises(ValueError, match=f"activation '{name}'"):
        model.export(tmp_path / "act.onnx")


# ----- model files -------------------------------------------------------------------------
def test_keras_files_with_the_new_activations_load_both_ways(tmp_path):
    keras = keras_or_skip()
    km = keras.Sequential([
        keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, activation="swish"),
        keras.layers.Activation("hard_swish"), keras.layers.Flatten(),
        keras.layers.Dense(4, activation="relu6"), keras.layers.Dense(3, activation="selu"),
        keras.layers.Activation("log_softmax")])
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype(np.float32)
    want = km.predict(x, verbose=0)
    km.save(tmp_path / "k.keras")
    cm = cconv.load_model(tmp_path / "k.keras")
    assert [getattr(layer, "activation", None) for layer in cm.layers][:2] == [A.silu,
                                                                                A.hard_silu]
    np.testing.assert_allclose(cm.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    cm.save(tmp_path / "c.keras")
    back = keras.saving.load_model(tmp_path / "c.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
