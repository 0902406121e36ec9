"""Nested models (issue 32 item 1): a Model or Sequential is a layer of another model, as in
Keras 3: called on symbolic tensors or arrays, placed in a Sequential or a graph, one entry
of ``layers`` and one row of ``summary``, frozen whole by ``trainable = False``, trained
through, inlined in the compiled plan when it is a chain, saved inline in configs. Checked
against Keras 3.15 with the same program where Keras is installed."""
import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import keras_or_skip


def _conv_base(K, name="base"):
    """A small convolutional Sequential with BatchNormalization (weights of both kinds)."""
    return K.Sequential([K.Input((8, 8, 2)), K.layers.Conv2D(4, 3, activation="relu"),
                         K.layers.BatchNormalization(), K.layers.MaxPooling2D()], name=name)


def _transfer(K, base):
    """Keras's transfer-learning program: a base model called on an Input, then a head."""
    x = K.Input((8, 8, 2))
    h = base(x)
    h = K.layers.GlobalAveragePooling2D()(h)
    y = K.layers.Dense(3)(h)
    return K.Model(x, y)


def _close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 8, 8, 2)).astype("float32"),
            rng.standard_normal((n, 3)).astype("float32"))


def _kinds(model):
    """Layer class names, Keras's ``Functional`` for a graph model in both libraries."""
    return [type(l).__name__.replace("Model", "Functional") if type(l).__name__ == "Model"
            else type(l).__name__ for l in model.layers]


def test_a_model_called_on_a_tensor_is_one_layer_with_keras_weight_order():
    keras = keras_or_skip()
    km, cm = _transfer(keras, _conv_base(keras)), _transfer(cconv, _conv_base(cconv))
    assert _kinds(cm) == _kinds(km) == ["InputLayer", "Sequential", "GlobalAveragePooling2D",
                                        "Dense"]
    assert [w.shape for w in cm.get_weights()] == [w.shape for w in km.get_weights()]
    assert cm.count_params() == km.count_params()
    assert len(cm.trainable_weights) == len(km.trainable_weights)
    assert len(cm.non_trainable_weights) == len(km.non_trainable_weights)
    assert cm.layers[1].output_shape == km.layers[1].output.shape
    x, _ = _data()
    cm.set_weights(km.get_weights())
    _close(cm.predict(x, verbose=0), km.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    # the nested model still works alone, on arrays, with the same weights
    _close(cm.layers[1](x), km.layers[1](x).numpy(), rtol=1e-5, atol=1e-5)


def test_freezing_a_nested_model_freezes_all_of_it_as_in_keras():
    keras = keras_or_skip()
    kb, cb = _conv_base(keras), _conv_base(cconv)
    km, cm = _transfer(keras, kb), _transfer(cconv, cb)
    kb.trainable = cb.trainable = False
    assert [l.trainable for l in cb.layers] == [l.trainable for l in kb.layers] == [False] * 3
    assert len(cm.trainable_weights) == len(km.trainable_weights) == 2
    assert len(cm.non_trainable_weights) == len(km.non_trainable_weights) == 6
    assert cb.trainable_weights == [] and len(cb.non_trainable_weights) == 6
    cm.set_weights(km.get_weights())
    x, y = _data()
    for m in (km, cm):
        m.compile(optimizer=m is km and keras.optimizers.SGD(0.1) or cconv.optimizers.SGD(0.1),
                  loss="mse")
    before = cb.get_weights()
    for _ in range(3):
        kl = km.train_on_batch(x, y)
        cl = cm.train_on_batch(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(before, cb.get_weights()))
    _close(cl, kl, rtol=1e-4)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        _close(a, b, rtol=1e-4, atol=1e-5)
    # unfrozen and compiled again (Keras's rule), the base trains again
    cb.trainable = True
    cm.compile(optimizer=cconv.optimizers.SGD(0.1), loss="mse")
    cm.train_on_batch(x, y)
    assert not np.array_equal(before[0], cb.get_weights()[0])


@pytest.mark.parametrize("frozen_bn", [False, True])
def test_training_through_a_nested_model_matches_keras(frozen_bn):
    keras = keras_or_skip()
    kb, cb = _conv_base(keras), _conv_base(cconv)
    km, cm = _transfer(keras, kb), _transfer(cconv, cb)
    if frozen_bn:           # the fine-tuning guide: BatchNormalization stays frozen
        kb.layers[1].trainable = cb.layers[1].trainable = False
    cm.set_weights(km.get_weights())
    km.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    cm.compile(optimizer=cconv.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    x, y = _data()
    for _ in range(3):
        kl = float(km.train_on_batch(x, y))
        cl = float(cm.train_on_batch(x, y))
        _close(cl, kl, rtol=1e-4)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        _close(a, b, rtol=2e-4, atol=2e-5)


def test_a_model_inside_a_sequential_matches_keras():
    keras = keras_or_skip()

    def program(K):
        base = _conv_base(K)
        return K.Sequential([base, K.layers.Flatten(), K.layers.Dense(3)])
    km, cm = program(keras), program(cconv)
    km.build((None, 8, 8, 2))
    cm.build((8, 8, 2))
    assert _kinds(cm) == _kinds(km) == ["Sequential", "Flatten", "Dense"]
    assert cm.count_params() == km.count_params()
    cm.set_weights(km.get_weights())
    x, y = _data()
    _close(cm.predict(x, verbose=0), km.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    km.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    cm.compile(optimizer=cconv.optimizers.Adam(0.01), loss="mse")
    kh = km.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]
    ch = cm.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]
    _close(np.array(ch), np.array(kh), rtol=1e-3)


def test_a_shared_nested_model_sums_its_gradients_like_keras():
    """A siamese program: one model applied to two inputs."""
    keras = keras_or_skip()

    def program(K):
        tower = K.Sequential([K.Input((5,)), K.layers.Dense(4, activation="tanh")], name="t")
        a, b = K.Input((5,)), K.Input((5,))
        y = K.layers.Dense(1)(K.layers.Concatenate()([tower(a), tower(b)]))
        return K.Model([a, b], y)
    km, cm = program(keras), program(cconv)
    assert _kinds(cm) == _kinds(km)
    cm.set_weights(km.get_weights())
    rng = np.random.default_rng(3)
    xa, xb = (rng.standard_normal((8, 5)).astype("float32") for _ in range(2))
    y = rng.standard_normal((8, 1)).astype("float32")
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    cm.compile(optimizer=cconv.optimizers.SGD(0.1), loss="mse")
    for _ in range(2):
        km.train_on_batch([xa, xb], y)
        cm.train_on_batch([xa, xb], y)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        _close(a, b, rtol=1e-4, atol=1e-6)


def test_a_nested_model_with_several_inputs_trains_like_keras():
    keras = keras_or_skip()

    def program(K):
        a, b = K.Input((4,)), K.Input((4,))
        inner = K.Model([a, b], K.layers.Dense(3)(K.layers.Add()([a, b])), name="inner")
        p, q = K.Input((4,)), K.Input((4,))
        y = K.layers.Dense(2)(inner([K.layers.Dense(4)(p), q]))
        return K.Model([p, q], y)
    km, cm = program(keras), program(cconv)
    assert _kinds(cm) == _kinds(km)
    cm.set_weights(km.get_weights())
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((6, 4)).astype("float32") for _ in range(2)]
    y = rng.standard_normal((6, 2)).astype("float32")
    _close(cm.predict(xs, verbose=0), km.predict(xs, verbose=0), rtol=1e-5, atol=1e-6)
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    cm.compile(optimizer=cconv.optimizers.SGD(0.1), loss="mse")
    km.train_on_batch(xs, y)
    cm.train_on_batch(xs, y)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        _close(a, b, rtol=1e-4, atol=1e-6)


def test_summary_shows_a_nested_model_as_one_row():
    cm = _transfer(cconv, _conv_base(cconv, name="the_base"))
    lines = []
    cm.summary(print_fn=lines.append)
    rows = [l for l in lines if l.startswith("| the_base ")]
    assert len(rows) == 1 and "(Sequential)" in rows[0] and "(None, 3, 3, 4)" in rows[0]
    assert f"{cm.layers[1].count_params():,}" in rows[0]
    assert not any("conv2d" in l for l in lines)
    cm.layers[1].trainable = False
    lines = []
    cm.summary(print_fn=lines.append)
    assert any(l.startswith(" Trainable params: 15 ") for l in lines)


def test_the_plan_inlines_a_nested_chain_and_agrees_with_layer_by_layer():
    inner = cconv.Sequential([cconv.Input((8, 8, 2)), L.Conv2D(4, 3, activation="relu"),
                              L.MaxPooling2D()])
    outer = cconv.Sequential([inner, L.Flatten(), L.Dense(3)])
    outer.build((8, 8, 2))
    chain = outer.chain_layers()
    assert [type(l).__name__ for l in chain] == ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    x, y = _data()
    planned = outer.predict(x, verbose=0)
    outer.jit_compile = False
    _close(outer.predict(x, verbose=0), planned, rtol=1e-5, atol=1e-6)
    # trained through the native training plan and layer by layer: the same numbers
    twin = cconv.Sequential([cconv.Sequential([cconv.Input((8, 8, 2)),
                                               L.Conv2D(4, 3, activation="relu"),
                                               L.MaxPooling2D()]), L.Flatten(), L.Dense(3)])
    twin.build((8, 8, 2))
    twin.set_weights(outer.get_weights())
    outer.jit_compile = True
    twin.jit_compile = False
    for m in (outer, twin):
        m.compile(optimizer=cconv.optimizers.SGD(0.1), loss="mse")
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(outer.get_weights(), twin.get_weights()):
        _close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("outer_kind", ["functional", "sequential"])
def test_npz_files_keep_nested_models(tmp_path, outer_kind):
    base = _conv_base(cconv)
    if outer_kind == "functional":
        model = _transfer(cconv, base)
    else:
        model = cconv.Sequential([base, L.Flatten(), L.Dense(3)])
        model.build((8, 8, 2))
    x, y = _data()
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "m.npz")
    model.save(path)
    loaded = cconv.models.load_model(path)
    assert _kinds(loaded) == _kinds(model)
    assert [l.name for l in loaded.layers[_kinds(loaded).index("Sequential")].layers] == [
        l.name for l in base.layers]
    _close(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6,
                 atol=1e-7)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_subclassed_model_holding_a_model_tracks_it_as_one_layer():
    class Classifier(cconv.Model):
        def __init__(self):
            super().__init__()
            self.base = _conv_base(cconv)
            self.pool = L.GlobalAveragePooling2D()
            self.head = L.Dense(3)

        def call(self, x):
            return self.head(self.pool(self.base(x)))
    m = Classifier()
    m.build((8, 8, 2))
    assert _kinds(m) == ["Sequential", "GlobalAveragePooling2D", "Dense"]
    x, y = _data()
    m.compile(optimizer="sgd", loss="mse")
    m.fit(x, y, epochs=1, verbose=0)
    assert m.predict(x, verbose=0).shape == (16, 3)


def test_nested_model_errors_name_the_model_and_shapes():
    base = _conv_base(cconv, name="the_base")
    with pytest.raises(ValueError, match=r"the_base.*\(None, 8, 8, 2\).*\(None, 9, 9, 2\)"):
        base(cconv.Input((9, 9, 2)))
    a = cconv.Input((3,))
    two = cconv.Model(a, [L.Dense(1)(a), L.Dense(2)(a)], name="two_heads")
    with pytest.raises(NotImplementedError, match="two_heads.*2 outputs"):
        two(cconv.Input((3,)))
    p, q = cconv.Input((3,)), cconv.Input((3,))
    adder = cconv.Model([p, q], L.Add()([p, q]), name="adder")
    with pytest.raises(ValueError, match="adder.*2 inputs.*1 tensors"):
        adder([cconv.Input((3,))])


def test_an_unbuilt_sequential_is_built_by_its_first_call():
    inner = cconv.Sequential([L.Dense(3), L.Dense(2)], name="lazy")
    x = cconv.Input((5,))
    y = inner(x)
    assert y.shape == (None, 2) and inner.built and inner.input_shape == (None, 5)
    outer = cconv.Model(x, y)
    assert [w.shape for w in outer.get_weights()] == [(5, 3), (3,), (3, 2), (2,)]


def test_keras_files_with_nested_models_read_and_write_both_ways(tmp_path):
    keras = keras_or_skip()
    pytest.importorskip("h5py")
    x, _ = _data()
    # Keras writes, cconv reads: the nested Sequential comes back as one layer, frozen
    kb = _conv_base(keras)
    km = _transfer(keras, kb)
    kb.trainable = False
    kpath = str(tmp_path / "from_keras.keras")
    km.save(kpath)
    cm = cconv.models.load_model(kpath)
    assert _kinds(cm) == _kinds(km)
    assert [l.trainable for l in cm.layers[1].layers] == [False] * 3
    assert len(cm.trainable_weights) == len(km.trainable_weights)
    _close(cm.predict(x, verbose=0), km.predict(x, verbose=0))
    # cconv writes (a graph and a Sequential around a model), Keras reads
    seq = cconv.Sequential([_conv_base(cconv), L.Flatten(), L.Dense(3)])
    seq.build((8, 8, 2))
    for model in (_transfer(cconv, _conv_base(cconv)), seq):
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, _data()[1], epochs=1, verbose=0)
        cpath = str(tmp_path / f"{model.name}.keras")
        model.save(cpath)
        back = keras.saving.load_model(cpath)
        assert _kinds(model) == _kinds(back)
        _close(back.predict(x, verbose=0), model.predict(x, verbose=0))
        again = cconv.models.load_model(cpath)
        _close(again.predict(x, verbose=0), model.predict(x, verbose=0), 1e-6, 1e-7)


def test_clone_model_makes_new_layers_with_new_weights_like_keras():
    keras = keras_or_skip()
    for K in (keras, cconv):
        student = K.Sequential([K.Input((8, 8, 2)), K.layers.Conv2D(3, 3),
                                K.layers.Flatten(), K.layers.Dense(2)], name="student")
        twin = K.models.clone_model(student)
        assert type(twin) is type(student) and twin.name == student.name
        assert [l.name for l in twin.layers] == [l.name for l in student.layers]
        assert all(a is not b for a, b in zip(twin.layers, student.layers))
        assert [w.shape for w in twin.get_weights()] == [w.shape for w in student.get_weights()]
        assert not np.array_equal(twin.get_weights()[0], student.get_weights()[0])
        graph = _transfer(K, _conv_base(K))
        copy = K.models.clone_model(graph)
        assert _kinds(copy) == _kinds(graph)
        assert copy.count_params() == graph.count_params()
        assert copy.layers[1] is not graph.layers[1]
    # clone_function: Keras's argument, here keeping each layer (sharing) or copying it
    base = cconv.Sequential([cconv.Input((4,)), L.Dense(3), L.Dense(2)])
    shared = cconv.models.clone_model(base, clone_function=lambda layer: layer)
    assert all(a is b for a, b in zip(shared.layers, base.layers))
    x = np.ones((2, 4), "float32")
    np.testing.assert_array_equal(shared.predict(x, verbose=0), base.predict(x, verbose=0))
    any_size = cconv.Sequential([cconv.Input((None, None, 1)), L.Conv2D(2, 3),
                                 L.GlobalMaxPooling2D()])
    assert cconv.models.clone_model(any_size).input_shape == (None, None, None, 1)
    with pytest.raises(NotImplementedError, match="input_tensors"):
        cconv.models.clone_model(base, input_tensors=[cconv.Input((4,))])


def test_gradients_through_nested_models_match_finite_differences():
    """float64: a trainable layer before a nested graph model (its input gradient is
    needed), the nested model called twice (shared weights), a frozen nested model too."""
    from .test_functional import _analytic_grad, _numeric_grad

    a = cconv.Input((4,), dtype="float64")
    h = L.Dense(4, activation="tanh", dtype="float64")(a)
    inner = cconv.Model(a, L.Dense(3, dtype="float64")(L.add([a, h])), name="inner")
    frozen = cconv.Sequential([cconv.Input((3,), dtype="float64"),
                               L.Dense(3, activation="tanh", dtype="float64")], name="frozen")
    frozen.trainable = False
    x = cconv.Input((4,), dtype="float64")
    p = L.Dense(4, activation="tanh", dtype="float64")(x)
    both = L.concatenate([frozen(inner(p)), inner(x)])
    model = cconv.Model(x, L.Dense(3, activation="softmax", dtype="float64")(both))
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    rng = np.random.default_rng(5)
    xs = rng.normal(size=(5, 4))
    ys = np.eye(3)[rng.integers(0, 3, 5)]
    got = _analytic_grad(model, xs, ys)
    want = _numeric_grad(model, xs, ys)
    assert len(got) == len(want) == 2 + 4 + 2       # frozen's weights are not trained
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-8)
