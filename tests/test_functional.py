"""Graph models: the functional API and subclassed models, against Keras 3 where it is
installed (predict, weight order, SGD-with-momentum and Adam trajectories)."""
import importlib.util
import os

import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import assert_close


class _AddForTest(L.Layer):
    """Elementwise sum of several inputs, following the multi-input layer contract
    (``_multi_input``; lists of shapes, arrays and gradients). Test-only stand-in."""

    _multi_input = True

    def build(self, input_shapes):
        shapes = {tuple(s) for s in input_shapes}
        if len(shapes) != 1:
            raise ValueError(f"_AddForTest needs equal shapes; got {input_shapes}.")
        self._input_shape = tuple(input_shapes[0])
        self._output_shape = self._input_shape
        self.built = True

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes[0])

    def forward(self, xs, training=False):
        self._n = len(xs)
        out = xs[0].copy()
        for x in xs[1:]:
            out += x
        return out

    def backward(self, dy):
        return [dy] * self._n


def _example(name):
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                        name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def course_lenet5(K, X):
    """The course's Functional LeNet-5 from examples/course_lenet5.py, run with the module
    K (cconv, or Keras for the reference)."""
    example = _example("course_lenet5")
    example.K = K
    return example.lenet5(X)


def _data(n=64, shape=(12, 12, 1), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + shape).astype(np.float32)
    ids = rng.integers(0, 10, n)
    x[np.arange(n), ids % shape[0], ids % shape[1], 0] += 2
    return x, np.eye(10, dtype=np.float32)[ids]


def _numeric_grad(model, x, y, eps=1e-6):
    """Central differences of the training loss over every trainable weight (float64)."""
    grads = []
    for w in model.trainable_weights:
        g = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            old = w[i]
            w[i] = old + eps
            hi = model.loss(y, model._forward(model._prepare_x(x), False))
            w[i] = old - eps
            lo = model.loss(y, model._forward(model._prepare_x(x), False))
            w[i] = old
            g[i] = (hi - lo) / (2 * eps)
        grads.append(g)
    return grads


def _analytic_grad(model, x, y):
    model._setup_fusion()
    model._ensure_packed()
    xb, yb, _ = model._prepare_xy(x, y)
    out = model._forward(xb, True, logits=model._fused)
    loss = model.loss.fused_value_and_grad if model._fused else model.loss.value_and_grad
    g = loss(yb, out)[1]
    model._backward(g, logits=model._fused)
    return [layer.grads[name].copy() for layer, name, _ in model._views]


# ----- without TensorFlow --------------------------------------------------------------------
def test_functional_chain_equals_sequential():
    x = cconv.Input((5,))
    d1, d2 = L.Dense(4, activation="tanh"), L.Dense(3)
    model = cconv.Model(inputs=x, outputs=d2(d1(x)))
    seq = cconv.Sequential([cconv.Input((5,)), L.Dense(4, activation="tanh"), L.Dense(3)])
    seq.set_weights(model.get_weights())
    data = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    planned = seq.predict(data, verbose=0)        # the compiled plan: C's tanh
    np.testing.assert_array_equal(model.predict(data, verbose=0), planned)  # a chain: same plan
    seq.jit_compile = model.jit_compile = False   # layer by layer: NumPy's tanh
    layered = model.predict(data, verbose=0)
    np.testing.assert_array_equal(layered, seq.predict(data, verbose=0))
    np.testing.assert_allclose(layered, planned, rtol=1e-6, atol=1e-7)
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Dense", "Dense"]
    assert model.get_layer(d1.name) is d1
    with pytest.raises(ValueError, match="No layer named"):
        model.get_layer("nope")


def test_skip_connection_and_shared_layer_gradients_match_finite_differences():
    """A residual block (tensor used twice) and a layer called twice (shared weights, one
    cache per call): the graph's backward equals central differences in float64."""
    x = cconv.Input((4,), dtype="float64")
    shared = L.Dense(4, activation="tanh", dtype="float64")
    h = shared(x)
    r = _AddForTest(dtype="float64")([x, shared(h)])        # shared layer, skip connection
    out = L.Dense(3, activation="softmax", dtype="float64")(r)
    model = cconv.Model(x, out)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(6, 4))
    ys = np.eye(3)[rng.integers(0, 3, 6)]
    got = _analytic_grad(model, xs, ys)
    want = _numeric_grad(model, xs, ys)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    assert len(model.layers) == 4 and model.count_params() == 20 + 15


def test_two_inputs_two_outputs_fit_predict_and_names():
    a, b = cconv.Input((3,), name="a"), cconv.Input((2,), name="b")
    h = _AddForTest()([L.Dense(4, name="da")(a), L.Dense(4, name="db")(b)])
    o1 = L.Dense(2, activation="softmax", name="cls")(h)
    o2 = L.Dense(1, name="reg")(h)
    model = cconv.Model([a, b], [o1, o2])
    model.compile("adam", loss={"cls": "categorical_crossentropy", "reg": "mse"},
                  loss_weights=[1.0, 0.5], metrics={"cls": ["accuracy"]})
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    y1, y2 = np.eye(2)[rng.integers(0, 2, 10)], rng.normal(size=(10, 1))
    hist = model.fit({"a": xa, "b": xb}, [y1, y2], epochs=2, batch_size=4, verbose=0)
    assert set(hist.history) == {"loss", "cls_loss", "cls_accuracy", "reg_loss"}
    p1, p2 = model.predict([xa, xb], verbose=0)
    assert p1.shape == (10, 2) and p2.shape == (10, 1)
    total, l1, _, l2 = model.evaluate([xa, xb], {"cls": y1, "reg": y2}, verbose=0)
    assert total == pytest.approx(l1 + 0.5 * l2, rel=1e-5)
    assert model.metrics_names == ["loss", "cls_loss", "cls_accuracy", "reg_loss"]
    with pytest.raises(ValueError, match="2 inputs"):
        model.predict(xa, verbose=0)


def test_summary_has_connected_to_column():
    x = cconv.Input((4,), name="inp")
    d = L.Dense(4, name="d")
    out = _AddForTest(name="plus")([x, d(x)])
    lines = []
    cconv.Model(x, out).summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "inp[0][0], d[0][0]" in text
    assert "Total params: 20" in text


def test_config_round_trip_and_npz_save(tmp_path):
    x = cconv.Input((4,))
    h = L.Dense(4, activation="relu")(x)
    model = cconv.Model(x, L.Add()([h, L.Dense(4)(h)]))
    model.save(tmp_path / "m.npz")
    loaded = cconv.load_model(tmp_path / "m.npz")
    data = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(data, verbose=0), model.predict(data, verbose=0))
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]


def test_symbolic_tensor_errors():
    x = cconv.Input((3,))
    with pytest.raises(TypeError, match="Data-dependent Python control flow"):
        bool(x)
    with pytest.raises(TypeError, match="not supported"):
        np.asarray(x)
    with pytest.raises(ValueError, match="takes one input tensor"):
        L.Dense(2)([x, x])
    d = L.Dense(2)
    d(x)
    with pytest.raises(ValueError, match="same input shape"):
        d(cconv.Input((5,)))
    other = cconv.Input((3,))
    with pytest.raises(ValueError, match="Graph disconnected"):
        cconv.Model(x, L.Dense(2)(other))
    # cconv.Input still starts a Sequential model.
    assert cconv.Sequential([x, L.Dense(2)]).output_shape == (None, 2)


class _Net(cconv.Model):
    def __init__(self):
        super().__init__()
        self.conv = L.Conv2D(4, 3, activation="relu")
        self.flat = L.Flatten()
        self.hidden = L.Dense(8, activation="relu")
        self.out = L.Dense(10, activation="softmax")

    def call(self, x):
        return self.out(self.hidden(self.flat(self.conv(x))))


class _Branchy(cconv.Model):
    def __init__(self):
        super().__init__()
        self.dense = L.Dense(2)

    def call(self, x):
        if x > 0:                 # data-dependent: refused
            return self.dense(x)
        return x


def test_subclassed_model_traces_on_first_data():
    net = _Net()
    x, y = _data(16, (6, 6, 1))
    net.compile("sgd", "categorical_crossentropy")
    net.fit(x, y, epochs=1, verbose=0)
    assert [l.name for l in net.layers] == [net.conv.name, net.flat.name, net.hidden.name,
                                            net.out.name]
    assert net.predict(x, verbose=0).shape == (16, 10)
    with pytest.raises(TypeError, match="Data-dependent Python control flow is not supported"):
        _Branchy().build((3,))


# ----- against Keras -------------------------------------------------------------------------
def _keras():
    return pytest.importorskip("keras", reason="Keras (tensorflow-cpu) is needed to compare")


def test_course_lenet5_predicts_like_keras():
    keras = _keras()
    km = course_lenet5(keras, keras.Input(shape=(28, 28, 1)))
    cm = course_lenet5(cconv, cconv.Input(shape=(28, 28, 1)))
    assert [type(l).__name__ for l in cm.layers] == [type(l).__name__ for l in km.layers]
    cm.set_weights(km.get_weights())
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype(np.float32)
    assert_close(cm.predict(x, verbose=0), km.predict(x, verbose=0), np.float32, "lenet5")


@pytest.mark.parametrize("opt", ["sgd_momentum", "adam"])
def test_course_lenet5_trajectory_matches_keras(opt):
    """Same weights, same batches: 2 epochs of losses and the final weights within 1e-4."""
    keras = _keras()
    x, y = _data(48)
    km = course_lenet5(keras, keras.Input(shape=(12, 12, 1)))
    cm = course_lenet5(cconv, cconv.Input(shape=(12, 12, 1)))
    cm.set_weights(km.get_weights())
    for m, mod in ((km, keras), (cm, cconv)):
        o = (mod.optimizers.SGD(learning_rate=0.05, momentum=0.9) if opt == "sgd_momentum"
             else mod.optimizers.Adam(learning_rate=0.002))
        m.compile(optimizer=o, loss="categorical_crossentropy", metrics=["accuracy"])
    hk = km.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    hc = cm.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(hc.history["loss"], hk.history["loss"], rtol=1e-4)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, float(np.abs(b).max()))


def _two_in_two_out(M, add):
    a, b = M.Input((6, 6, 4), name="img"), M.Input((3,), name="vec")
    conv = M.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")
    c1 = conv(a)
    r = add(name="res")([c1, conv(c1)])                  # shared conv + skip connection
    f = M.layers.Flatten(name="flat")(M.layers.MaxPooling2D(name="pool")(r))
    v = M.layers.Dense(16, activation="relu", name="vd")(b)
    h = add(name="join")([M.layers.Dense(16, activation="relu", name="fd")(f), v])
    o1 = M.layers.Dense(3, activation="softmax", name="cls")(h)
    o2 = M.layers.Dense(2, name="reg")(h)
    return M.Model(inputs=[a, b], outputs=[o1, o2])


@pytest.mark.parametrize("opt", ["sgd_momentum", "adam"])
def test_two_input_two_output_shared_residual_model_matches_keras(opt):
    keras = _keras()
    km = _two_in_two_out(keras, keras.layers.Add)
    cm = _two_in_two_out(cconv, _AddForTest)
    assert [l.name for l in cm.layers] == [l.name for l in km.layers]
    assert [w.shape for w in cm.get_weights()] == [w.shape for w in km.get_weights()]
    cm.set_weights(km.get_weights())
    rng = np.random.default_rng(3)
    xa, xb = rng.normal(size=(24, 6, 6, 4)).astype("f4"), rng.normal(size=(24, 3)).astype("f4")
    y1 = np.eye(3, dtype="f4")[rng.integers(0, 3, 24)]
    y2 = rng.normal(size=(24, 2)).astype("f4")
    pk, pc = km.predict([xa, xb], verbose=0), cm.predict([xa, xb], verbose=0)
    for a, b in zip(pc, pk):
        assert_close(a, b, np.float32, "predict")
    for m, mod in ((km, keras), (cm, cconv)):
        o = (mod.optimizers.SGD(learning_rate=0.02, momentum=0.9) if opt == "sgd_momentum"
             else mod.optimizers.Adam(learning_rate=0.002))
        m.compile(optimizer=o, loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.3])
    hk = km.fit([xa, xb], [y1, y2], batch_size=8, epochs=2, shuffle=False, verbose=0)
    hc = cm.fit([xa, xb], [y1, y2], batch_size=8, epochs=2, shuffle=False, verbose=0)
    for key in ("loss", "cls_loss", "reg_loss"):
        np.testing.assert_allclose(hc.history[key], hk.history[key], rtol=1e-4, err_msg=key)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, float(np.abs(b).max()))


def test_subclassed_model_matches_keras():
    keras = _keras()

    class KNet(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3, activation="relu")
            self.flat = keras.layers.Flatten()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.out = keras.layers.Dense(10, activation="softmax")

        def call(self, x):
            return self.out(self.hidden(self.flat(self.conv(x))))

    km, cm = KNet(), _Net()
    km(np.zeros((1, 6, 6, 1), np.float32))     # Keras builds a subclassed model by calling it
    cm.build((None, 6, 6, 1))
    assert [w.shape for w in cm.get_weights()] == [w.shape for w in km.get_weights()]
    cm.set_weights(km.get_weights())
    x, y = _data(16, (6, 6, 1))
    assert_close(cm.predict(x, verbose=0), km.predict(x, verbose=0), np.float32, "predict")
    for m, mod in ((km, keras), (cm, cconv)):
        m.compile(optimizer=mod.optimizers.Adam(learning_rate=0.01),
                  loss="categorical_crossentropy")
    hk = km.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    hc = cm.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(hc.history["loss"], hk.history["loss"], rtol=1e-4)


def test_examples_build_and_train_one_step():
    x, y = _data(8, (28, 28, 1))
    for model in (_example("residual_mnist").resnet(),
                  _example("course_lenet5").lenet5(cconv.Input(shape=(28, 28, 1)))):
        before = model.get_weights()
        model.train_on_batch(x, y)
        assert any(np.any(a != b) for a, b in zip(model.get_weights(), before))


def test_a_subclass_compile_with_its_own_arguments_is_applied_after_tracing():
    """Keras's distiller pattern: a subclassed model overrides compile with its own
    arguments and calls super().compile without a loss; the compile that waits for the
    model to be traced is the base compile's, given its own arguments again."""
    class Wrapper(cconv.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

        def compile(self, optimizer, metrics, alpha=0.1):
            super().compile(optimizer=optimizer, metrics=metrics, loss="mse")
            self.alpha = alpha

    m = Wrapper()
    m.compile(optimizer="sgd", metrics=["mae"], alpha=0.5)
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    history = m.fit(x, y, epochs=1, verbose=0).history
    assert m.alpha == 0.5 and set(history) == {"loss", "mae"}
