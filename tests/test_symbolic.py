"""The symbolic surface (issue 32 item 2): ``layer.input`` / ``layer.output``,
``model.inputs`` / ``outputs`` / ``input`` / ``output``, the lowercase merging helpers and
arithmetic on symbolic tensors, each against Keras 3.15 running the same program."""
import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import keras_or_skip, numeric_grad


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _base(K):
    return K.Sequential([K.Input((8, 8, 1)), K.layers.Conv2D(3, 3, activation="relu"),
                         K.layers.MaxPooling2D(), K.layers.Flatten(), K.layers.Dense(4)])


def test_a_feature_extractor_from_layer_outputs_matches_keras():
    keras = keras_or_skip()
    kb, cb = _base(keras), _base(cconv)
    cb.set_weights(kb.get_weights())
    kf = keras.Model(kb.inputs, [l.output for l in kb.layers])
    cf = cconv.Model(cb.inputs, [l.output for l in cb.layers])
    x = np.random.default_rng(0).standard_normal((5, 8, 8, 1)).astype("float32")
    kouts, couts = kf.predict(x, verbose=0), cf.predict(x, verbose=0)
    assert [o.shape for o in couts] == [o.shape for o in kouts]
    for c, k in zip(couts, kouts):
        _close(c, k)
    assert cf.count_params() == kf.count_params()


def test_graph_model_feature_extractor_includes_its_input_layer_like_keras():
    keras = keras_or_skip()

    def program(K):
        x = K.Input((6,))
        h = K.layers.Dense(4, activation="relu", name="h")(x)
        return K.Model(x, K.layers.Dense(2, name="y")(h))
    km, cm = program(keras), program(cconv)
    cm.set_weights(km.get_weights())
    kf = keras.Model(km.input, [l.output for l in km.layers])
    cf = cconv.Model(cm.input, [l.output for l in cm.layers])
    x = np.random.default_rng(1).standard_normal((3, 6)).astype("float32")
    for c, k in zip(cf.predict(x, verbose=0), kf.predict(x, verbose=0)):
        _close(c, k)
    # one layer's output, as the transfer-learning guides do
    mid = cconv.Model(cm.input, cm.get_layer("h").output)
    _close(mid.predict(x, verbose=0), keras.Model(km.input, km.get_layer("h").output)
           .predict(x, verbose=0))


def test_input_and_output_follow_keras_rules():
    keras = keras_or_skip()
    for K in (keras, cconv):
        d = K.layers.Dense(2)
        with pytest.raises(AttributeError, match="has never been called"):
            _ = d.output
        with pytest.raises(AttributeError, match="has never been called"):
            _ = d.input
        a, b = K.Input((3,)), K.Input((3,))
        out_a = d(a)
        d(b)
        assert d.input is a and d.output is out_a      # Keras 3: the first call's tensors
        add = K.layers.Add()
        s = add([a, b])
        assert list(add.input) == [a, b] and add.output is s
        m = K.Model([a, b], [out_a, s])
        assert m.inputs == [a, b] and m.input == [a, b] and m.outputs == [out_a, s]
        single = K.Model(a, out_a)
        assert single.input is a and single.output is out_a
        assert single.inputs == [a] and single.outputs == [out_a]
        assert K.Model([a], [out_a]).input == [a]       # the structure as given
        seq = K.Sequential([K.Input((4,)), K.layers.Dense(3)])
        assert seq.inputs[0].shape == (None, 4) and seq.outputs[0].shape == (None, 3)
        assert seq.layers[0].input is seq.inputs[0] and seq.layers[0].output is seq.outputs[0]
    # Keras 3.15's Sequential.input is the tensor of its first call as a layer (an
    # AttributeError before one); cconv gives a built Sequential's own input and output
    seq = cconv.Sequential([cconv.Input((4,)), L.Dense(3)])
    assert seq.input is seq.inputs[0] and seq.output is seq.outputs[0]
    lazy = cconv.Sequential([L.Dense(2)])
    with pytest.raises(AttributeError, match="no defined inputs"):
        _ = lazy.inputs
    lazy.build((5,))
    assert lazy.input.shape == (None, 5)


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "average", "maximum",
                                  "minimum", "concatenate"])
def test_lowercase_helpers_match_keras(name):
    keras = keras_or_skip()
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((4, 3, 5)).astype("float32") for _ in range(2)]

    def program(K):
        a, b = K.Input((3, 5)), K.Input((3, 5))
        fn = getattr(K.layers, name)
        y = fn([a, b], axis=1) if name == "concatenate" else fn([a, b])
        return K.Model([a, b], K.layers.Dense(2)(y))
    km, cm = program(keras), program(cconv)
    assert [type(l).__name__ for l in cm.layers] == [type(l).__name__ for l in km.layers]
    cm.set_weights(km.get_weights())
    _close(cm.predict(xs, verbose=0), km.predict(xs, verbose=0))
    # on arrays too
    fn = getattr(L, name)
    kfn = getattr(keras.layers, name)
    got = fn(xs, axis=1) if name == "concatenate" else fn(xs)
    want = kfn(xs, axis=1) if name == "concatenate" else kfn(xs)
    _close(got, np.asarray(want))


def test_helpers_take_layer_arguments():
    a, b = cconv.Input((4,)), cconv.Input((4,))
    y = L.add([a, b], name="the_sum")
    assert y.node.layer.name == "the_sum"
    assert L.concatenate([a, b], axis=-1, name="cat").shape == (None, 8)
    with pytest.raises(ValueError, match="Subtract.*needs 2 inputs; got 3"):
        L.subtract([a, b, a])


def test_arithmetic_on_symbolic_tensors_matches_keras():
    keras = keras_or_skip()

    def program(K):
        x = K.Input((6,))
        h = K.layers.Dense(6, name="d1")(x)
        h += x                      # a residual, as the keras-io programs write it
        h = h * 2 - 1
        h = -h / 4 + 0.5
        g = K.layers.Dense(6, name="d2")(h)
        y = 1 - (g - h) * h
        return K.Model(x, y)
    km, cm = program(keras), program(cconv)
    assert cm.count_params() == km.count_params()
    assert [w.shape for w in cm.get_weights()] == [w.shape for w in km.get_weights()]
    cm.set_weights(km.get_weights())
    x = np.random.default_rng(3).standard_normal((7, 6)).astype("float32")
    _close(cm.predict(x, verbose=0), km.predict(x, verbose=0))
    # and it trains alike (gradients through Add, Subtract, Multiply and the scalings)
    y = np.random.default_rng(4).standard_normal((7, 6)).astype("float32")
    km.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    cm.compile(optimizer=cconv.optimizers.SGD(0.01), loss="mse")
    for _ in range(2):
        kl, cl = km.train_on_batch(x, y), cm.train_on_batch(x, y)
        _close(cl, kl, 1e-4)
    for c, k in zip(cm.get_weights(), km.get_weights()):
        _close(c, k, 1e-4)


def test_arithmetic_makes_the_matching_layers():
    a, b = cconv.Input((3,)), cconv.Input((3,))
    kinds = {"a + b": (a + b, "Add"), "a - b": (a - b, "Subtract"), "a * b": (a * b, "Multiply"),
             "a * 2": (a * 2, "Rescaling"), "2 * a": (2 * a, "Rescaling"),
             "-a": (-a, "Rescaling"), "a / 4": (a / 4, "Rescaling"), "a + 1": (a + 1, "Rescaling"),
             "3 - a": (3 - a, "Rescaling")}
    for what, (t, kind) in kinds.items():
        assert type(t.node.layer).__name__ == kind, what
    m = cconv.Model([a, b], [t for t, _ in kinds.values()])
    xa = np.array([[1, 2, 3]], "float32")
    xb = np.array([[4, 5, 6]], "float32")
    outs = m.predict([xa, xb], verbose=0)
    want = [xa + xb, xa - xb, xa * xb, xa * 2, 2 * xa, -xa, xa / 4, xa + 1, 3 - xa]
    for got, w in zip(outs, want):
        np.testing.assert_array_equal(got, w)
    assert +a is a


def test_unsupported_arithmetic_says_what_is_supported():
    a, b = cconv.Input((3,)), cconv.Input((3,))
    with pytest.raises(TypeError, match="no Divide layer"):
        a / b
    with pytest.raises(TypeError, match="needs another symbolic tensor or a number.*ndarray"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="not supported"):
        a ** 2
    with pytest.raises(TypeError, match="not supported"):
        1 / a
    with pytest.raises(ZeroDivisionError, match="by zero"):
        a / 0
    with pytest.raises(ValueError, match="incompatible shapes"):
        a + cconv.Input((4,))
    with pytest.raises(TypeError, match="bool"):
        bool(a)


def _any_size_program(K):
    """A fully convolutional classifier for images of any size (Keras's
    ``Input(shape=(None, None, C))``), with a residual and a scaling on the way."""
    x = K.Input((None, None, 3))
    h = K.layers.Conv2D(4, 3, padding="same", activation="relu")(x / 2)
    h = K.layers.BatchNormalization()(h)
    h = h + K.layers.Conv2D(4, 1)(h)
    h = K.layers.MaxPooling2D()(h)
    h = K.layers.Conv2D(5, 3, strides=2)(h)
    return K.Model(x, K.layers.Dense(2)(K.layers.GlobalAveragePooling2D()(h)))


def test_inputs_of_any_image_size_match_keras():
    keras = keras_or_skip()
    km, cm = _any_size_program(keras), _any_size_program(cconv)
    # Keras records x / 2 and h + ... as operations, cconv as layers: compare the others
    ops = ("Rescaling", "Add", "TrueDivide")
    assert [l.output.shape for l in cm.layers if type(l).__name__ not in ops] == [
        tuple(l.output.shape) for l in km.layers if type(l).__name__ not in ops]
    assert cm.count_params() == km.count_params()
    assert [w.shape for w in cm.get_weights()] == [w.shape for w in km.get_weights()]
    cm.set_weights(km.get_weights())
    rng = np.random.default_rng(5)
    for size in ((12, 12), (17, 23), (9, 30)):
        x = rng.standard_normal((3,) + size + (3,)).astype("float32")
        _close(cm.predict(x, verbose=0), km.predict(x, verbose=0))
        _close(cm(x), km(x).numpy())
    x = rng.standard_normal((6, 14, 10, 3)).astype("float32")
    y = rng.standard_normal((6, 2)).astype("float32")
    km.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    cm.compile(optimizer=cconv.optimizers.SGD(0.05), loss="mse")
    for _ in range(2):
        _close(cm.train_on_batch(x, y), km.train_on_batch(x, y), 1e-4)
    for c, k in zip(cm.get_weights(), km.get_weights()):
        _close(c, k, 1e-4)


def test_a_sequential_of_any_image_size():
    keras = keras_or_skip()

    def program(K):
        return K.Sequential([K.Input((None, None, 1)), K.layers.Conv2D(3, 3, activation="relu"),
                             K.layers.AveragePooling2D(2, padding="same"),
                             K.layers.GlobalMaxPooling2D(), K.layers.Dense(2)])
    km, cm = program(keras), program(cconv)
    cm.build()
    assert cm.input_shape == (None, None, None, 1) and cm.output_shape == (None, 2)
    cm.set_weights(km.get_weights())
    x = np.random.default_rng(6).standard_normal((2, 11, 7, 1)).astype("float32")
    _close(cm.predict(x, verbose=0), km.predict(x, verbose=0))
    # an output of any size: predict and calls work
    fcn = cconv.Sequential([cconv.Input((None, None, 3)), L.Conv2D(2, 3, padding="same")])
    assert fcn.predict(np.zeros((2, 5, 6, 3)), verbose=0).shape == (2, 5, 6, 2)
    assert fcn(np.zeros((1, 4, 9, 3))).shape == (1, 4, 9, 2)


def test_any_size_errors_name_the_shapes():
    x = cconv.Input((None, None, 3))
    with pytest.raises(ValueError, match=r"flatten.*\(None, None, None, 3\).*GlobalAverage"):
        L.Flatten()(x)
    m = cconv.Model(x, L.GlobalMaxPooling2D()(L.Conv2D(2, 5)(x)))
    with pytest.raises(ValueError, match=r"\(1, 8, 8, 2\).*\(None, None, None, 3\)"):
        m.predict(np.zeros((1, 8, 8, 2)), verbose=0)
    with pytest.raises(ValueError, match="larger than the padded input"):
        m.predict(np.zeros((1, 3, 3, 3)), verbose=0)
    with pytest.raises(ValueError, match="too small"):
        L.Conv2D(2, 5)(cconv.Input((None, 3, 3)))


def test_a_fully_convolutional_network_of_any_size_matches_keras():
    """A small U-Net: every image layer with sizes of None, output of any size too."""
    keras = keras_or_skip()

    def program(K):
        x = K.Input((None, None, 2))
        a = K.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
        h = K.layers.MaxPooling2D()(a)
        h = K.layers.SeparableConv2D(6, 3, padding="same")(h)
        h = K.layers.DepthwiseConv2D(3, padding="same")(h)
        h = K.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(h)
        h = K.layers.concatenate([h, a])
        h = K.layers.Cropping2D(1)(K.layers.ZeroPadding2D(1)(h))
        h = K.layers.AveragePooling2D(2)(K.layers.UpSampling2D(2)(h))
        return K.Model(x, K.layers.Conv2D(1, 1)(h))
    km, cm = program(keras), program(cconv)
    assert [tuple(l.output.shape) for l in km.layers] == [l.output.shape for l in cm.layers]
    cm.set_weights(km.get_weights())
    rng = np.random.default_rng(7)
    for size in ((8, 8), (12, 18)):
        x = rng.standard_normal((2,) + size + (2,)).astype("float32")
        out = cm.predict(x, verbose=0)
        assert out.shape == (2,) + size + (1,)
        _close(out, km.predict(x, verbose=0))


@pytest.mark.parametrize("shapes, axes, normalize", [
    (((5,), (5,)), 1, False),
    (((5,), (5,)), -1, True),
    (((3, 4), (2, 4)), 2, False),
    (((3, 4), (3, 2)), (1, 1), True),
    (((3, 4), (4, 2)), (2, 1), False),
])
def test_dot_matches_keras_forward_and_training(shapes, axes, normalize):
    keras = keras_or_skip()

    def program(K):
        a, b = K.Input(shapes[0]), K.Input(shapes[1])
        d = K.layers.dot([K.layers.Dense(shapes[0][-1])(a), b], axes=axes, normalize=normalize)
        return K.Model([a, b], K.layers.Dense(1)(K.layers.Flatten()(d)))
    km, cm = program(keras), program(cconv)
    assert [l.output.shape for l in cm.layers] == [tuple(l.output.shape) for l in km.layers]
    cm.set_weights(km.get_weights())
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((6,) + s).astype("float32") for s in shapes]
    y = rng.standard_normal((6, 1)).astype("float32")
    _close(cm.predict(xs, verbose=0), km.predict(xs, verbose=0))
    km.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    cm.compile(optimizer=cconv.optimizers.SGD(0.05), loss="mse")
    for _ in range(2):
        _close(cm.train_on_batch(xs, y), km.train_on_batch(xs, y), 1e-4)
    for c, k in zip(cm.get_weights(), km.get_weights()):
        _close(c, k, 1e-4)
    # on arrays, and the layer's config
    layer = L.Dot(axes=axes, normalize=normalize)
    _close(layer(xs), np.asarray(keras.layers.Dot(axes=axes, normalize=normalize)(xs)))
    assert L.deserialize(L.serialize(layer)).get_config() == layer.get_config()


def test_dot_refuses_bad_axes_naming_them():
    a, b = cconv.Input((3, 4)), cconv.Input((3, 5))
    with pytest.raises(ValueError, match=r"sizes along axes 2 differ: 4 != 5"):
        L.Dot(axes=2)([a, b])
    with pytest.raises(ValueError, match="batch axis"):
        L.Dot(axes=0)([a, b])
    with pytest.raises(TypeError, match="axes must be an int or a pair"):
        L.Dot(axes="last")
    with pytest.raises(ValueError, match="axes must be an int or a pair"):
        L.Dot(axes=(1, 2, 3))
    with pytest.raises(ValueError, match="needs 2 inputs; got 3"):
        L.dot([a, a, a], axes=1)


@pytest.mark.parametrize("axes, normalize", [(2, False), ((1, 1), True), ((2, 1), True)])
def test_dot_backward_matches_finite_differences(axes, normalize):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 4))
    y = rng.standard_normal((2, 3, 4)) if axes != (2, 1) else rng.standard_normal((2, 4, 3))
    layer = L.Dot(axes=axes, normalize=normalize, dtype="float64")
    out = layer.forward([x, y], training=True)
    w = rng.standard_normal(out.shape)
    dx, dy = layer.backward(w)
    loss = lambda _: float(np.sum(layer.forward([x, y]) * w))   # noqa: E731
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dy, numeric_grad(loss, y), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("suffix", ["keras", "npz"])
def test_models_of_any_image_size_save_and_load(tmp_path, suffix):
    keras = keras_or_skip()
    pytest.importorskip("h5py")
    x_in = cconv.Input((None, None, 3))
    model = cconv.Model(x_in, L.Dense(2)(L.GlobalMaxPooling2D()(L.Conv2D(2, 3)(x_in))))
    path = str(tmp_path / f"m.{suffix}")
    model.save(path)
    loaded = cconv.models.load_model(path)
    assert loaded.input_shape == (None, None, None, 3)
    x = np.random.default_rng(10).standard_normal((2, 9, 11, 3)).astype("float32")
    _close(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    if suffix == "keras":
        back = keras.saving.load_model(path)
        assert tuple(back.input_shape) == (None, None, None, 3)
        _close(back.predict(x, verbose=0), model.predict(x, verbose=0))
