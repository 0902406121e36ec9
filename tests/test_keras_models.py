"""Agreement with Keras 3 (TensorFlow backend): every layer alone (forward and gradients),
LeNet-5 and the tutorial CNN, optimizer steps, training trajectories, from_keras.

float32 throughout: outputs agree to about 1e-5 of their magnitude."""
import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import assert_close

pytestmark = pytest.mark.tensorflow

keras = pytest.importorskip(
    "keras", reason="Keras (tensorflow-cpu) is needed for the agreement tests"
)
tf = pytest.importorskip("tensorflow", reason="TensorFlow is needed for the agreement tests")
K = keras.layers

# (keras layer factory, cconv layer factory, sample shape)
PAIRS = [
    (lambda: K.Dense(5, activation="relu"), lambda: L.Dense(5, activation="relu"), (7,)),
    (lambda: K.Dense(4, activation="softmax"), lambda: L.Dense(4, activation="softmax"), (6,)),
    (lambda: K.Dense(3, activation="gelu"), lambda: L.Dense(3, activation="gelu"), (2, 6)),
    (lambda: K.Conv2D(4, 3, padding="same", activation="relu"),
     lambda: L.Conv2D(4, 3, padding="same", activation="relu"), (8, 7, 3)),
    (lambda: K.Conv2D(6, (3, 2), strides=(2, 1), activation="tanh"),
     lambda: L.Conv2D(6, (3, 2), strides=(2, 1), activation="tanh"), (9, 8, 2)),
    (lambda: K.Conv2D(4, 3, dilation_rate=2, groups=2, activation="elu"),
     lambda: L.Conv2D(4, 3, dilation_rate=2, groups=2, activation="elu"), (9, 9, 4)),
    (lambda: K.MaxPooling2D(), lambda: L.MaxPooling2D(), (8, 6, 3)),
    (lambda: K.MaxPooling2D(3, strides=2, padding="same"),
     lambda: L.MaxPooling2D(3, strides=2, padding="same"), (7, 8, 2)),
    (lambda: K.AveragePooling2D(2), lambda: L.AveragePooling2D(), (8, 6, 3)),
    (lambda: K.AveragePooling2D(3, strides=2, padding="same"),
     lambda: L.AveragePooling2D(3, strides=2, padding="same"), (7, 8, 2)),
    (lambda: K.GlobalAveragePooling2D(), lambda: L.GlobalAveragePooling2D(), (5, 4, 3)),
    (lambda: K.GlobalMaxPooling2D(), lambda: L.GlobalMaxPooling2D(), (5, 4, 3)),
    (lambda: K.Flatten(), lambda: L.Flatten(), (3, 4, 5)),
    (lambda: K.Activation("sigmoid"), lambda: L.Activation("sigmoid"), (6,)),
    (lambda: K.Activation("leaky_relu"), lambda: L.Activation("leaky_relu"), (6,)),
    (lambda: K.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.1),
     lambda: L.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.1), (10,)),
    (lambda: K.LeakyReLU(), lambda: L.LeakyReLU(), (10,)),
    (lambda: K.Softmax(), lambda: L.Softmax(), (3, 5)),
    (lambda: K.Dropout(0.3), lambda: L.Dropout(0.3), (6,)),          # inference: identity
    (lambda: K.BatchNormalization(), lambda: L.BatchNormalization(), (4, 4, 3)),
]


@pytest.mark.parametrize(
    "kf,cf,shape", PAIRS, ids=[type(c()).__name__ + str(i) for i, (_, c, _) in enumerate(PAIRS)]
)
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_each_layer_matches_keras(kf, cf, shape, training):
    if training and isinstance(cf(), L.Dropout):
        pytest.skip("dropout masks come from different random generators")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    kl, cl = kf(), cf()
    kl.build((None,) + shape)
    cl.build(shape)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in kl.get_weights()]
    kl.set_weights(weights)
    cl.set_weights(weights)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        yk = kl(xt, training=training)
        r = tf.constant(rng.normal(size=yk.shape).astype(np.float32))
        obj = tf.reduce_sum(yk * r)
    gk = tape.gradient(obj, [xt] + kl.trainable_weights)
    yc = cl.forward(x, training=training)
    assert_close(yc, yk.numpy(), np.float32, "forward")
    if isinstance(cl, L.BatchNormalization):   # moving statistics updated the same way
        for a, b in zip(cl.get_weights(), kl.get_weights()):
            assert_close(a, b, np.float32, "bn weights")
    if not training and not isinstance(cl, (L.BatchNormalization, L.Dropout)):
        cl.forward(x, training=True)       # backward needs the caches of a training forward
    dx = cl.backward(r.numpy())
    assert_close(dx, gk[0].numpy(), np.float32, "dx")
    if training or not isinstance(cl, L.BatchNormalization):
        for name, g in zip(cl._trainable_names, gk[1:]):
            assert_close(cl.grads[name], g.numpy(), np.float32, f"d{name}")


def keras_lenet5(input_shape=(28, 28, 1)):
    he = keras.initializers.HeNormal(seed=0)
    return keras.Sequential([
        keras.Input(input_shape),
        K.Conv2D(6, 5, padding="same", activation="relu", kernel_initializer=he),
        K.MaxPooling2D(2, strides=2),
        K.Conv2D(16, 5, padding="valid", activation="relu", kernel_initializer=he),
        K.MaxPooling2D(2, strides=2),
        K.Flatten(),
        K.Dense(120, activation="relu", kernel_initializer=he),
        K.Dense(84, activation="relu", kernel_initializer=he),
        K.Dense(10, activation="softmax", kernel_initializer=he),
    ])


def keras_tutorial_cnn():
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        K.Conv2D(32, 3, activation="relu"), K.MaxPooling2D(2),
        K.Conv2D(64, 3, activation="relu"), K.MaxPooling2D(2),
        K.Conv2D(64, 3, activation="relu"), K.Flatten(),
        K.Dense(64, activation="relu"), K.Dense(10),
    ])


@pytest.mark.parametrize("which", ["lenet5", "tutorial_cnn"])
def test_reference_models_predict_like_keras(which):
    km = keras_lenet5() if which == "lenet5" else keras_tutorial_cnn()
    cm = getattr(cconv.models, which)()
    cm.set_weights(km.get_weights())
    x = np.random.default_rng(0).random((16,) + km.input_shape[1:]).astype(np.float32)
    assert_close(cm.predict(x, verbose=0), km.predict(x, verbose=0), np.float32, which)
    assert_close(cm.predict(x[:1], verbose=0), km(x[:1]).numpy(), np.float32, which + " batch 1")
    assert cm.count_params() == km.count_params()


def _trajectory_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12, 12, 1)).astype(np.float32)
    ids = rng.integers(0, 10, n)
    x[np.arange(n), ids, ids, 0] += 2
    return x, np.eye(10, dtype=np.float32)[ids]


@pytest.mark.parametrize("opt", ["sgd_momentum", "adam", "rmsprop"])
def test_training_trajectory_matches_keras(opt):
    """Same initial weights, same batches (shuffle=False): per-epoch losses and the final
    weights agree with Keras after 3 epochs of 6 steps."""
    x, y = _trajectory_data()
    km = keras_lenet5((12, 12, 1))
    cm = cconv.models.lenet5((12, 12, 1), compile=False)
    cm.set_weights(km.get_weights())
    make = {
        "sgd_momentum": (
            lambda m: m.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=False)
        ),
        "adam": (lambda m: m.optimizers.Adam(learning_rate=0.002)),
        "rmsprop": (lambda m: m.optimizers.RMSprop(learning_rate=0.001)),
    }[opt]
    km.compile(optimizer=make(keras), loss="categorical_crossentropy", metrics=["accuracy"])
    cm.compile(optimizer=make(cconv), loss="categorical_crossentropy", metrics=["accuracy"])
    hk = km.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    hc = cm.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(hc.history["loss"], hk.history["loss"], rtol=1e-4)
    assert hc.history["loss"][-1] < hc.history["loss"][0]
    for a, b in zip(cm.get_weights(), km.get_weights()):
        scale = max(1.0, float(np.abs(b).max()))
        assert np.abs(a - b).max() <= 1e-4 * scale, "weights drifted from Keras"
    np.testing.assert_allclose(
        cm.evaluate(x, y, verbose=0), km.evaluate(x, y, verbose=0), rtol=1e-4
    )


def test_batchnorm_model_trains_like_keras():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 6, 6, 2)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 32)]
    km = keras.Sequential([keras.Input((6, 6, 2)), K.Conv2D(4, 3), K.BatchNormalization(),
                           K.ReLU(), K.GlobalAveragePooling2D(), K.Dense(3, activation="softmax")])
    cm = cconv.from_keras(km)
    for m, mod in ((km, keras), (cm, cconv)):
        m.compile(optimizer=mod.optimizers.SGD(learning_rate=0.1), loss="categorical_crossentropy")
    hk = km.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    hc = cm.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(hc.history["loss"], hk.history["loss"], rtol=1e-4)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, float(np.abs(b).max()))
    assert_close(cm.predict(x, verbose=0), km.predict(x, verbose=0), np.float32, "after training")


def test_from_keras_round_trip_and_errors():
    km = keras.Sequential([keras.Input((10, 10, 3)), K.Conv2D(4, 3, activation="relu"),
                           K.AveragePooling2D(2), K.Dropout(0.2), K.Flatten(),
                           K.Dense(5), K.Softmax()])
    km.compile(
        optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    cm = cconv.from_keras(km)
    x = np.random.default_rng(0).random((4, 10, 10, 3)).astype(np.float32)
    assert_close(cm.predict(x, verbose=0), km.predict(x, verbose=0), np.float32, "from_keras")
    assert [c.name for c in cm.layers] == [k.name for k in km.layers]
    assert isinstance(
        cm.optimizer, cconv.optimizers.Adam
    ) and cm.optimizer.learning_rate == pytest.approx(0.01)
    bad = keras.Sequential([keras.Input((4,)), K.Dense(3), K.LayerNormalization()])
    with pytest.raises(ValueError, match="LayerNormalization.*Supported layers"):
        cconv.from_keras(bad)
    reg = keras.Sequential([keras.Input((4,)), K.Dense(3, activity_regularizer="l2")])
    with pytest.raises(ValueError, match="activity_regularizer"):   # kernel/bias ones convert
        cconv.from_keras(reg)


def test_optimizer_steps_match_keras():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(50,)).astype(np.float32)
    grads = [rng.normal(size=(50,)).astype(np.float32) for _ in range(5)]
    for name, kw in [
        ("SGD", dict(learning_rate=0.1)),
        ("SGD", dict(learning_rate=0.1, momentum=0.9)),
        ("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
        ("Adam", dict(learning_rate=0.01)),
        ("Adam", dict(amsgrad=True)),
        ("RMSprop", dict()),
        ("RMSprop", dict(momentum=0.5, centered=True)),
    ]:
        kv = keras.Variable(w0.copy())
        ko = getattr(keras.optimizers, name)(**kw)
        cw = w0.copy()
        co = getattr(cconv.optimizers, name)(**kw)
        for g in grads:
            ko.apply_gradients([(tf.constant(g), kv)])
            co.apply([g], [cw])
        np.testing.assert_allclose(cw, kv.numpy(), rtol=1e-6, atol=1e-7, err_msg=f"{name} {kw}")


def test_losses_match_keras():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 5)).astype(np.float32)
    p = tf.nn.softmax(z).numpy()
    ids = rng.integers(0, 5, 6)
    y = np.eye(5, dtype=np.float32)[ids]
    yb = rng.integers(0, 2, (6, 5)).astype(np.float32)
    s = tf.sigmoid(z).numpy()
    cases = [
        (cconv.losses.CategoricalCrossentropy(), keras.losses.CategoricalCrossentropy(), y, p),
        (
            cconv.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
            keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
            y,
            z,
        ),
        (
            cconv.losses.SparseCategoricalCrossentropy(),
            keras.losses.SparseCategoricalCrossentropy(),
            ids,
            p,
        ),
        (cconv.losses.BinaryCrossentropy(), keras.losses.BinaryCrossentropy(), yb, s),
        (
            cconv.losses.BinaryCrossentropy(from_logits=True),
            keras.losses.BinaryCrossentropy(from_logits=True),
            yb,
            z,
        ),
        (cconv.losses.MeanSquaredError(), keras.losses.MeanSquaredError(), yb, z),
    ]
    for c, k, yt, yp in cases:
        assert c(yt, yp) == pytest.approx(float(k(yt, yp)), rel=1e-5), type(c).__name__
