"""Keras-style custom layers (``call``, ``build``, ``add_weight``) in cconv models: they are
nodes of the graph with their weights, run in predict and ``__call__``, agree with Keras
running the same class body, train through automatic gradients, and refuse what cconv cannot do
without a ``backward``, layers that compute nothing) with errors that name them."""
import numpy as np
import pytest

import cconv
from cconv import layers as L


def _keras():
    return pytest.importorskip("keras", reason="Keras (tensorflow-cpu) is needed to compare")


def _scale_class(base):
    """A per-feature affine layer, written once for cconv's and Keras's Layer: a trainable
    scale, a trainable shift and a frozen offset, all from add_weight in build."""

    class ScaleShift(base):
        def build(self, input_shape):
            self.seen_shape = tuple(input_shape)
            n = input_shape[-1]
            self.scale = self.add_weight(shape=(n,), initializer="ones", name="scale")
            self.shift = self.add_weight(shape=(n,), initializer="zeros", name="shift")
            self.offset = self.add_weight(shape=(), initializer="ones", trainable=False,
                                          name="offset")

        def call(self, x):
            return x * self.scale + self.shift + self.offset

    return ScaleShift


class Double(L.Layer):
    """call only: no build, no weights."""

    def call(self, x):
        return 2 * x


class WeightedSum(L.Layer):
    """call on a list of two tensors."""

    def call(self, inputs):
        a, b = inputs
        return a + 3 * b


class Nothing(L.Layer):
    """Defines neither call nor forward."""


def _data(n=5, shape=(4,), seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype("float32")


def _scale_model():
    x = cconv.Input((4,))
    h = _scale_class(L.Layer)(name="scale_shift")(x)
    return cconv.Model(x, L.Dense(3, name="dense")(h))


def test_add_weight_layer_is_a_graph_node_with_its_weights():
    model = _scale_model()
    layer = model.get_layer("scale_shift")
    assert layer.seen_shape == (None, 4)          # Keras's form: batch axis included
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "ScaleShift", "Dense"]
    assert layer.count_params() == 9 and model.count_params() == 9 + 15
    assert [w.shape for w in model.get_weights()] == [(4,), (4,), (), (4, 3), (3,)]
    assert len(layer.trainable_weights) == 2 and len(layer.non_trainable_weights) == 1
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "scale_shift (ScaleShift)" in text and "Total params: 24" in text
    assert "Non-trainable params: 1 " in text


def test_add_weight_layer_predicts_with_the_weights_set():
    model = _scale_model()
    x = _data()
    new = [np.arange(4.0), np.full(4, 0.5), np.array(2.0), np.ones((4, 3)), np.zeros(3)]
    model.set_weights(new)
    want = (x * np.arange(4.0) + 0.5 + 2.0) @ np.ones((4, 3))
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5)
    np.testing.assert_allclose(model(x), want, rtol=1e-5)
    layer = model.get_layer("scale_shift")
    np.testing.assert_allclose(layer(x), x * np.arange(4.0) + 2.5, rtol=1e-6)


def test_add_weight_layer_agrees_with_keras():
    keras = _keras()
    kx = keras.Input((4,))
    km = keras.Model(kx, keras.layers.Dense(3)(_scale_class(keras.layers.Layer)()(kx)))
    cm = _scale_model()
    assert cm.count_params() == km.count_params()
    assert [w.shape for w in cm.get_weights()] == [tuple(w.shape) for w in km.get_weights()]
    rng = np.random.default_rng(3)
    weights = [rng.normal(size=w.shape).astype("float32") for w in km.get_weights()]
    km.set_weights(weights)
    cm.set_weights(weights)
    x = _data(seed=4)
    np.testing.assert_allclose(cm.predict(x, verbose=0), km.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)


def test_call_only_layer_runs_in_predict_and_call():
    x = cconv.Input((4,))
    model = cconv.Model(x, L.Dense(2)(Double()(x)))
    data = _data()
    dense = model.layers[-1]
    want = 2 * data @ dense.kernel + dense.bias
    np.testing.assert_allclose(model.predict(data, verbose=0), want, rtol=1e-5)
    np.testing.assert_allclose(model(data), want, rtol=1e-5)
    seq = cconv.Sequential([cconv.Input((4,)), Double(), L.Dense(2)])
    seq.set_weights(model.get_weights())
    np.testing.assert_allclose(seq.predict(data, verbose=0), want, rtol=1e-5)


def test_call_gets_training_when_it_takes_it():
    class Records(L.Layer):
        def call(self, x, training=None):
            self.modes.append(training)
            return x

    layer = Records()
    layer.modes = []
    x = cconv.Input((3,))
    model = cconv.Model(x, L.Dense(1)(layer(x)))
    layer.modes.clear()
    model.predict(_data(shape=(3,)), verbose=0)
    model(_data(shape=(3,)), training=True)
    assert layer.modes == [False, True]


def test_list_input_layer_in_a_graph():
    a, b = cconv.Input((3,)), cconv.Input((3,))
    out = WeightedSum()([a, b])
    assert out.shape == (None, 3)
    model = cconv.Model([a, b], out)
    x1, x2 = _data(shape=(3,)), _data(shape=(3,), seed=1)
    np.testing.assert_allclose(model.predict([x1, x2], verbose=0), x1 + 3 * x2, rtol=1e-6)
    np.testing.assert_allclose(WeightedSum()([x1, x2]), x1 + 3 * x2, rtol=1e-6)


def test_output_shape_from_keras_style_compute_output_shape():
    class Pairs(L.Layer):
        def compute_output_shape(self, input_shape):
            return (input_shape[0], input_shape[1] // 2, 2)

        def call(self, x):
            return x.reshape(x.shape[0], -1, 2)

    out = Pairs()(cconv.Input((6,)))
    assert out.shape == (None, 3, 2)

    class Wrong(Pairs):
        def call(self, x):
            return x

    model = cconv.Model(inp := cconv.Input((6,)), Wrong(name="wrong")(inp))
    with pytest.raises(ValueError, match=r"'wrong'.*shape \(2, 6\).*\(None, 3, 2\)"):
        model.predict(_data(n=2, shape=(6,)), verbose=0)


def test_output_shape_inferred_from_call():
    class Sums(L.Layer):
        def call(self, x):
            return x.sum(axis=-1, keepdims=True)

    assert Sums()(cconv.Input((5, 4))).shape == (None, 5, 1)


@pytest.mark.parametrize("kind", ["functional", "sequential"])
@pytest.mark.parametrize("how", ["fit", "train_on_batch"])
def test_training_through_a_layer_without_backward_uses_automatic_gradients(kind, how):
    """The layer defines only build and call: its backward comes from the tape, and one SGD
    step moves its weights (and the Dense after it) as the hand-derived gradient says."""
    if kind == "functional":
        model = _scale_model()
    else:
        model = cconv.Sequential([cconv.Input((4,)), _scale_class(L.Layer)(name="scale_shift"),
                                  L.Dense(3)])
    model.compile(cconv.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(7)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    scale, shift, offset, kernel, bias = [w.astype("float64") for w in model.get_weights()]
    x, y = _data(), _data(shape=(3,), seed=2)
    h = x * scale + shift + offset
    dout = 2 * (h @ kernel + bias - y) / y.size
    dh = dout @ kernel.T
    want = [scale - 0.1 * (dh * x).sum(0), shift - 0.1 * dh.sum(0), offset,
            kernel - 0.1 * h.T @ dout, bias - 0.1 * dout.sum(0)]
    if how == "fit":
        model.fit(x, y, verbose=0, batch_size=len(x), shuffle=False)
    else:
        model.train_on_batch(x, y)
    for got, w in zip(model.get_weights(), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def test_training_through_a_custom_layer_agrees_with_keras():
    keras = _keras()
    kx = keras.Input((4,))
    km = keras.Model(kx, keras.layers.Dense(3)(_scale_class(keras.layers.Layer)()(kx)))
    cm = _scale_model()
    rng = np.random.default_rng(3)
    weights = [rng.normal(size=w.shape).astype("float32") for w in km.get_weights()]
    km.set_weights(weights)
    cm.set_weights(weights)
    km.compile(keras.optimizers.Adam(0.01), "mse")
    cm.compile(cconv.optimizers.Adam(0.01), "mse")
    x, y = _data(n=16, seed=4), _data(n=16, shape=(3,), seed=5)
    hk = km.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    hc = cm.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(hc, hk, rtol=1e-4)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_training_through_a_call_that_leaves_the_tape_is_refused():
    """np.asarray inside call returns a plain array: the layer cannot be differentiated, and
    training says so, naming the layer."""
    class Detached(L.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return np.asarray(x * self.w)

    x = cconv.Input((4,))
    model = cconv.Model(x, L.Dense(3)(Detached(name="detached")(x)))
    model.compile("sgd", "mse")
    with pytest.raises(NotImplementedError, match=r"'detached' \(Detached\).*np\.asarray"):
        model.fit(_data(), _data(shape=(3,)), verbose=0)


def test_training_before_the_first_trainable_layer_needs_no_backward():
    """Keras trains such a model; nothing is differentiated through the custom layer."""
    x = cconv.Input((4,))
    model = cconv.Model(x, L.Dense(1)(Double()(x)))
    model.compile("sgd", "mse")
    data, y = _data(), _data(shape=(1,), seed=5)
    before = model.get_weights()
    model.fit(data, y, verbose=0, epochs=2)
    assert not np.array_equal(before[0], model.get_weights()[0])


def test_training_with_a_user_backward():
    class Scale(L.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x, training=None):
            if training:
                self._x = x
            return x * self.w

        def backward(self, dy):
            self.grads["w"][...] = (dy * self._x).sum(axis=0)
            return dy * self.w

    x = cconv.Input((4,))
    model = cconv.Model(x, Scale()(x))
    model.compile(cconv.optimizers.SGD(0.1), "mse")
    data, y = _data(), _data(seed=6)
    grad = (2 * (data - y) / data.size * data).sum(axis=0)
    model.train_on_batch(data, y)
    np.testing.assert_allclose(model.get_weights()[0], 1 - 0.1 * grad, rtol=1e-5)


def test_layer_that_computes_nothing_is_refused_when_applied():
    with pytest.raises(NotImplementedError, match=r"'nothing' \(Nothing\) defines no computation"):
        Nothing()(cconv.Input((3,)))
    with pytest.raises(NotImplementedError, match=r"defines no computation.*call\(self, inputs\)"):
        Nothing()(np.ones((2, 3)))


def test_regularizer_of_add_weight_joins_the_loss():
    class Scale(L.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                     regularizer=cconv.regularizers.L2(0.5))

        def call(self, x):
            return x * self.w

    x = cconv.Input((4,))
    model = cconv.Model(x, Scale()(x))
    model.compile("sgd", "mse")
    data = _data()
    assert model.evaluate(data, data, verbose=0) == pytest.approx(0.5 * 4)


def test_custom_layer_model_saves_and_loads(tmp_path):
    cls = _scale_class(L.Layer)
    L.REGISTRY.register(cls)
    L.REGISTRY.register(WeightedSum)
    try:
        a, b = cconv.Input((4,)), cconv.Input((4,))
        h = WeightedSum()([cls()(a), b])
        model = cconv.Model([a, b], L.Dense(2)(h))
        model.set_weights([w + 0.25 for w in model.get_weights()])
        x = [_data(), _data(seed=7)]
        for name in ("m.npz", "m.keras"):
            if name.endswith(".keras"):
                pytest.importorskip("h5py")
            model.save(tmp_path / name)
            back = cconv.load_model(tmp_path / name)
            np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                                       rtol=1e-6)
    finally:
        L.REGISTRY.unregister("ScaleShift")
        L.REGISTRY.unregister("WeightedSum")


def test_add_weight_refusals():
    class InAList(L.Layer):
        def build(self, input_shape):
            self.ws = [self.add_weight(shape=(2,), name="w0")]

        def call(self, x):
            return x * self.ws[0]

    with pytest.raises(ValueError, match=r"'w0' made by add_weight is not held by an attribute"):
        InAList()(cconv.Input((2,)))

    class Late(L.Layer):
        def call(self, x):
            self.w = self.add_weight(shape=(2,), name="late")
            return x

    with pytest.raises(ValueError, match=r"add_weight\(name='late'\) was called after"):
        Late()(cconv.Input((2,)))
    layer = Double()
    for kwargs, match in (({"shape": (2, None)}, "shape must be a tuple"),
                          ({"constraint": "non_neg"}, "constraint is not supported"),
                          ({"dtype": "float64"}, "differs from the layer's dtype")):
        with pytest.raises(ValueError, match=match):
            layer.add_weight(**kwargs)


def test_layer_holding_a_weighted_layer_is_refused():
    class Block(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = L.Dense(3)

        def call(self, x):
            return self.inner(x)

    with pytest.raises(NotImplementedError, match=r"holds layer 'dense.*which has weights"):
        Block()(cconv.Input((4,)))


def test_call_returning_several_values_is_refused():
    class Two(L.Layer):
        def call(self, x):
            return x, x

    with pytest.raises(ValueError, match="call returned a tuple; a cconv layer has one output"):
        Two()(cconv.Input((4,)))


def test_call_override_of_a_built_in_layer_is_refused():
    """Built-in layers compute with forward; a call() below one would silently never run."""
    with pytest.raises(TypeError, match=r"MyDense \(a subclass of Dense\) defines call\(\)"):
        class MyDense(L.Dense):
            def call(self, x):
                return x


def _activity_class(base, ops_module):
    """Keras's guide layer: add_loss(rate * sum(square(inputs))) in call."""

    class ActivityRegularization(base):
        def __init__(self, rate=1e-2, **kwargs):
            super().__init__(**kwargs)
            self.rate = rate

        def call(self, inputs):
            self.add_loss(self.rate * ops_module.sum(ops_module.square(inputs)))
            return inputs

    return ActivityRegularization


def test_add_loss_trains_and_agrees_with_keras():
    keras = _keras()
    models = []
    for lib, base, ops_module in ((keras, keras.layers.Layer, keras.ops),
                                  (cconv, L.Layer, cconv.ops)):
        x = lib.Input((4,))
        h = _activity_class(base, ops_module)(0.05)(lib.layers.Dense(3)(x))
        models.append(lib.Model(x, lib.layers.Dense(1)(h)))
    km, cm = models
    rng = np.random.default_rng(8)
    weights = [rng.normal(size=w.shape).astype("float32") for w in km.get_weights()]
    km.set_weights(weights)
    cm.set_weights(weights)
    km.compile(keras.optimizers.SGD(0.05), "mse")
    cm.compile(cconv.optimizers.SGD(0.05), "mse")
    x, y = _data(n=16, seed=9), _data(n=16, shape=(1,), seed=10)
    hk = km.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    hc = cm.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(hc, hk, rtol=1e-4)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cm.evaluate(x, y, verbose=0), km.evaluate(x, y, verbose=0),
                               rtol=1e-4)
    layer = cm.layers[2]
    layer(x[:, :3])
    assert layer.losses == [pytest.approx(0.05 * float(np.sum(x[:, :3] ** 2)), rel=1e-5)]
    assert cm.losses == layer.losses
