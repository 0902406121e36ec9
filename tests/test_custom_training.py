"""Custom training the Keras way (issue 32 item 3): GradientTape loops over
``model.trainable_variables`` with ``optimizer.apply``, overridden ``train_step`` /
``test_step`` run by ``fit`` / ``evaluate`` (``compile()`` without a loss then), custom losses
as plain functions of ``cconv.ops``; each against Keras 3 running the same program where
Keras has it."""
import numpy as np
import pytest

import cconv
from cconv import layers as L
from cconv import ops


def _keras():
    return pytest.importorskip("keras", reason="Keras (tensorflow-cpu) is needed to compare")


def _images(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 8, 8, 2)).astype("float32"),
            rng.integers(0, 3, size=(n,)).astype("int64"))


def _cnn(lib):
    return lib.Sequential([lib.Input((8, 8, 2)), lib.layers.Conv2D(4, 3, activation="relu"),
                           lib.layers.MaxPooling2D(2), lib.layers.Flatten(),
                           lib.layers.Dense(3)])


def _same_weights(cm, km, seed=1):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(scale=0.3, size=w.shape).astype("float32") for w in km.get_weights()]
    km.set_weights(weights)
    cm.set_weights(weights)


def test_trainable_variables_are_the_weight_arrays():
    model = _cnn(cconv)
    tv = model.trainable_variables
    assert [v.shape for v in tv] == [w.shape for w in model.trainable_weights]
    assert all(a is b for a, b in zip(tv, model.trainable_variables))
    assert len(model.variables) == 4 and model.non_trainable_variables == []
    layer = model.layers[0]
    assert layer.trainable_variables[0] is layer.kernel and layer.variables[1] is layer.bias


def test_gradient_tape_loop_agrees_with_keras():
    keras = _keras()
    import tensorflow as tf
    x, y = _images()
    km, cm = _cnn(keras), _cnn(cconv)
    _same_weights(cm, km)
    kopt, copt = keras.optimizers.Adam(0.01), cconv.optimizers.Adam(0.01)
    kloss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    closs = cconv.losses.SparseCategoricalCrossentropy(from_logits=True)
    kacc = keras.metrics.SparseCategoricalAccuracy()
    cacc = cconv.metrics.SparseCategoricalAccuracy()
    for step in range(3):
        xb, yb = x[step * 5:step * 5 + 5], y[step * 5:step * 5 + 5]
        with tf.GradientTape() as tape:
            logits = km(xb, training=True)
            kl = kloss(yb, logits)
        grads = tape.gradient(kl, km.trainable_variables)
        kopt.apply(grads, km.trainable_variables)
        kacc.update_state(yb, logits)
        with cconv.GradientTape() as tape:
            logits = cm(xb, training=True)
            cl = closs(yb, logits)
        grads = tape.gradient(cl, cm.trainable_variables)
        assert [g.shape for g in grads] == [v.shape for v in cm.trainable_variables]
        copt.apply(grads, cm.trainable_variables)
        cacc.update_state(yb, logits)
        np.testing.assert_allclose(float(cl), float(kl), rtol=1e-5)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert cacc.result() == pytest.approx(float(kacc.result()))


def test_tape_loop_through_a_custom_layer_and_ops_loss():
    """A Keras-style layer with its own weight, called in a model, and a loss written with
    cconv.ops: the gradients equal the hand-derived ones."""
    class Scale(L.Layer):
        def build(self, input_shape):
            self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return ops.tanh(x) * self.s

    inp = cconv.Input((3,))
    model = cconv.Model(inp, L.Dense(1, use_bias=False)(Scale()(inp)))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)).astype("float32"), rng.normal(size=(6, 1)).astype("float32")
    with cconv.GradientTape() as tape:
        pred = model(x, training=True)
        loss = ops.mean(ops.square(pred - y))
    gs, gk = tape.gradient(loss, model.trainable_variables)
    s, k = model.get_weights()
    h = np.tanh(x) * s
    d = 2 * (h @ k - y) / y.size
    np.testing.assert_allclose(gk, h.T @ d, rtol=1e-5)
    np.testing.assert_allclose(gs, ((d @ k.T) * np.tanh(x)).sum(0), rtol=1e-5)


def test_layer_called_in_a_tape():
    dense = L.Dense(2)
    x = np.ones((3, 4), "float32")
    dense(x)
    with cconv.GradientTape() as tape:
        loss = ops.sum(dense(x, training=True))
    gk, gb = tape.gradient(loss, [dense.kernel, dense.bias])
    np.testing.assert_allclose(gk, np.full((4, 2), 3.0))
    np.testing.assert_allclose(gb, [3.0, 3.0])


def test_tape_misuse_is_refused_with_the_reason():
    model = _cnn(cconv)
    x, _ = _images(4)
    grads = []
    for training in (False, True):        # inference mode: the same numbers as training here
        with cconv.GradientTape() as tape:
            out = ops.sum(model(x, training=training))
        grads.append(tape.gradient(out, model.trainable_variables))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b)
    dropping = cconv.Sequential([cconv.Input((8, 8, 2)), L.Flatten(), L.Dropout(0.5),
                                 L.Dense(3)])
    with cconv.GradientTape() as tape:
        out = ops.sum(dropping(x))
    with pytest.raises(RuntimeError, match=r"training=False.*Dropout.*training=True"):
        tape.gradient(out, dropping.trainable_variables)
    with cconv.GradientTape() as tape:
        first = ops.sum(model(x, training=True))
        model(x, training=True)
    with pytest.raises(RuntimeError, match="called again"):
        tape.gradient(first, model.trainable_variables)


def test_optimizer_apply_on_user_arrays():
    w = np.array([1.0, 2.0], "float32")
    v = np.ones((2, 2), "float32")
    opt = cconv.optimizers.SGD(0.5)
    opt.apply([np.array([1.0, 1.0], "float32"), np.ones((2, 2), "float32")], [w, v])
    np.testing.assert_allclose(w, [0.5, 1.5])
    np.testing.assert_allclose(v, 0.5)
    assert opt.iterations == 1


def _guide_model(lib, base):
    """Keras's guide "Customizing what happens in fit()": train_step with compute_loss and
    self.metrics, test_step, on a small dense model."""

    class CustomModel(base):
        def train_step(self, data):
            x, y = data
            with tape_of(lib)() as tape:
                y_pred = self(x, training=True)
                loss = self.compute_loss(y=y, y_pred=y_pred)
            trainable_vars = self.trainable_variables
            gradients = tape.gradient(loss, trainable_vars)
            self.optimizer.apply(gradients, trainable_vars)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

        def test_step(self, data):
            x, y = data
            y_pred = self(x, training=False)
            loss = self.compute_loss(y=y, y_pred=y_pred)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

    inputs = lib.Input((4,))
    return CustomModel(inputs, lib.layers.Dense(1)(lib.layers.Dense(8, activation="relu")(inputs)))


def tape_of(lib):
    if lib is cconv:
        return cconv.GradientTape
    import tensorflow as tf
    return tf.GradientTape


def test_overridden_train_step_and_test_step_agree_with_keras():
    keras = _keras()
    km, cm = _guide_model(keras, keras.Model), _guide_model(cconv, cconv.Model)
    _same_weights(cm, km)
    km.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    cm.compile(optimizer=cconv.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    kh = km.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                validation_data=(x[:8], y[:8])).history
    ch = cm.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                validation_data=(x[:8], y[:8])).history
    assert set(ch) == set(kh)
    for k in kh:
        np.testing.assert_allclose(ch[k], kh[k], rtol=1e-4, err_msg=k)
    ke = km.evaluate(x, y, verbose=0, return_dict=True)
    ce = cm.evaluate(x, y, verbose=0, return_dict=True)
    assert set(ce) == set(ke)
    for k in ke:
        np.testing.assert_allclose(ce[k], ke[k], rtol=1e-4)


def test_train_step_without_a_compiled_loss():
    """The guide's lower-level example: compile() with only an optimizer, the loss and the
    trackers made in the model (a metrics property)."""
    loss_tracker = cconv.metrics.Mean(name="loss")
    mae_metric = cconv.metrics.MeanAbsoluteError(name="mae")

    class CustomModel(cconv.Model):
        def train_step(self, data):
            x, y = data
            with cconv.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = cconv.losses.mean_squared_error(y, y_pred)
            gradients = tape.gradient(ops.mean(loss), self.trainable_variables)
            self.optimizer.apply(gradients, self.trainable_variables)
            loss_tracker.update_state(loss)
            mae_metric.update_state(y, y_pred)
            return {"loss": loss_tracker.result(), "mae": mae_metric.result()}

        @property
        def metrics(self):
            return [loss_tracker, mae_metric]

    inputs = cconv.Input((4,))
    model = CustomModel(inputs, L.Dense(1)(inputs))
    model.compile(optimizer="adam")
    assert model.loss is None
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [0.0]], "float32")
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0).history
    assert set(history) == {"loss", "mae"} and len(history["loss"]) == 5
    assert history["loss"][-1] < history["loss"][0]
    with pytest.raises(ValueError, match="A loss is required"):
        cconv.Sequential([cconv.Input((4,)), L.Dense(1)]).compile(optimizer="adam")


def test_super_train_step_is_keras_default():
    """A train_step that adds to the default one (super().train_step) trains as the built-in
    loop does."""
    class Counting(cconv.Sequential):
        steps = 0

        def train_step(self, data):
            type(self).steps += 1
            return super().train_step(data)

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    a = Counting([cconv.Input((4,)), L.Dense(2)])
    b = cconv.Sequential([cconv.Input((4,)), L.Dense(2)])
    b.set_weights(a.get_weights())
    for m in (a, b):
        m.compile(cconv.optimizers.SGD(0.1), "mse", metrics=["mae"])
    ha = a.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    hb = b.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    assert Counting.steps == 4
    for k in hb:
        np.testing.assert_allclose(ha[k], hb[k], rtol=1e-5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-7)
    assert a.train_on_batch(x, y) == pytest.approx(b.train_on_batch(x, y), rel=1e-5)


def test_a_loss_that_is_a_function_of_ops():
    """compile(loss=fn) with fn written with cconv.ops trains exactly as the built-in mse."""
    def my_mse(y_true, y_pred):
        return ops.mean(ops.square(y_pred - y_true), axis=-1)

    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    a = cconv.Sequential([cconv.Input((4,)), L.Dense(2)])
    b = cconv.Sequential([cconv.Input((4,)), L.Dense(2)])
    b.set_weights(a.get_weights())
    a.compile(cconv.optimizers.SGD(0.1), loss=my_mse)
    b.compile(cconv.optimizers.SGD(0.1), loss="mse")
    ha = a.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    hb = b.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(ha, hb, rtol=1e-5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-7)
    assert a.evaluate(x, y, verbose=0) == pytest.approx(b.evaluate(x, y, verbose=0), rel=1e-5)


def test_a_loss_subclass_defining_only_call():
    class Huberish(cconv.losses.Loss):
        _default_name = "huberish"

        def call(self, y_true, y_pred):
            d = y_pred - y_true
            return ops.mean(ops.sqrt(d * d + 1.0) - 1.0, axis=-1)

    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
    m = cconv.Sequential([cconv.Input((4,)), L.Dense(1)])
    m.compile(cconv.optimizers.SGD(0.1), loss=Huberish())
    h = m.fit(x, y, epochs=4, batch_size=16, verbose=0).history["loss"]
    assert h[-1] < h[0]


def _conv_block_class(base, ops_module):
    """A custom convolution layer written only with ops (Keras's ops.conv / ops.max_pool /
    ops.relu, cconv's same names): kernel and bias from add_weight."""

    class ConvBlock(base):
        def __init__(self, filters, **kwargs):
            super().__init__(**kwargs)
            self.filters = filters

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(3, 3, input_shape[-1], self.filters),
                                          initializer="glorot_uniform", name="kernel")
            self.bias = self.add_weight(shape=(self.filters,), initializer="zeros",
                                        name="bias")

        def call(self, x):
            z = ops_module.conv(x, self.kernel, padding="same") + self.bias
            return ops_module.max_pool(ops_module.relu(z), 2)

    return ConvBlock


def test_a_custom_conv_layer_trains_as_in_keras():
    keras = _keras()
    models = []
    for lib, base, ops_module in ((keras, keras.layers.Layer, keras.ops),
                                  (cconv, L.Layer, cconv.ops)):
        x = lib.Input((8, 8, 2))
        h = _conv_block_class(base, ops_module)(4)(x)
        models.append(lib.Model(x, lib.layers.Dense(3)(lib.layers.Flatten()(h))))
    km, cm = models
    assert cm.count_params() == km.count_params()
    _same_weights(cm, km)
    km.compile(keras.optimizers.Adam(0.01),
               keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cm.compile(cconv.optimizers.Adam(0.01),
               cconv.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _images(16)
    hk = km.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    hc = cm.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(hc, hk, rtol=1e-4)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_a_metric_that_is_a_function_of_ops():
    def abs_error(y_true, y_pred):
        return ops.mean(ops.absolute(y_pred - y_true), axis=-1)

    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    m = cconv.Sequential([cconv.Input((4,)), L.Dense(2)])
    m.compile("sgd", "mse", metrics=[abs_error, "mae"])
    logs = m.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)
    assert logs["abs_error"] == pytest.approx(logs["mae"], rel=1e-6)
    h = m.fit(x, y, epochs=2, batch_size=8, verbose=0).history
    np.testing.assert_allclose(h["abs_error"], h["mae"], rtol=1e-6)


def test_gan_style_gradients_cross_a_model_into_another():
    """Keras's DCGAN train_step: the generator's gradients come through the discriminator
    (its input gradient); TensorFlow gives the same numbers."""
    keras = _keras()
    import tensorflow as tf

    def pair(lib):
        gen = lib.Sequential([lib.Input((4,)), lib.layers.Dense(8, activation="relu"),
                              lib.layers.Dense(6)])
        disc = lib.Sequential([lib.Input((6,)), lib.layers.Dense(5, activation="tanh"),
                               lib.layers.Dense(1)])
        return gen, disc

    (kg, kd), (cg, cd) = pair(keras), pair(cconv)
    _same_weights(cg, kg, seed=2)
    _same_weights(cd, kd, seed=3)
    z = np.random.default_rng(9).normal(size=(5, 4)).astype("float32")
    with tf.GradientTape() as tape:
        kloss = tf.reduce_mean(kd(kg(z, training=True), training=True) ** 2)
    kgrads = tape.gradient(kloss, kg.trainable_variables)
    with cconv.GradientTape() as tape:
        closs = ops.mean(cd(cg(z, training=True), training=True) ** 2)
    cgrads = tape.gradient(closs, cg.trainable_variables)
    np.testing.assert_allclose(float(closs), float(kloss), rtol=1e-5)
    for a, b in zip(cgrads, kgrads):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-6)
    with cconv.GradientTape() as tape:
        closs = ops.mean(cd(cg(z, training=True), training=True) ** 2)
    dgrads = tape.gradient(closs, cd.trainable_variables)
    assert all(g is not None and g.shape == v.shape
               for g, v in zip(dgrads, cd.trainable_variables))


def test_saving_models_with_custom_training(tmp_path):
    """A model compiled without a loss (its own train_step) saves uncompiled; a loss that is
    a function is saved by its name, which loading asks for."""
    class NoLoss(cconv.Sequential):
        def train_step(self, data):
            return {}

    m = NoLoss([cconv.Input((4,)), L.Dense(2)])
    m.compile("adam")
    assert m.get_compile_config() is None
    m.save(tmp_path / "m.keras")
    back = cconv.load_model(tmp_path / "m.keras", custom_objects={"NoLoss": NoLoss})
    # rebuilt as its class (a Sequential subclass), whose train_step needs no loss: the
    # .keras file's optimizer-only compile settings apply again, as in Keras
    assert type(back) is NoLoss and back.compiled and back.loss is None
    assert type(back.optimizer).__name__ == "Adam"

    def my_loss(y_true, y_pred):
        return ops.mean(ops.square(y_pred - y_true), axis=-1)

    n = cconv.Sequential([cconv.Input((4,)), L.Dense(2)])
    n.compile("sgd", loss=my_loss)
    assert n.get_compile_config()["loss"]["class_name"] == "my_loss"
    n.save(tmp_path / "n.npz")
    with pytest.raises(ValueError, match=r"Unknown loss 'my_loss'.*custom_objects"):
        cconv.load_model(tmp_path / "n.npz")


def test_optimizer_apply_skips_none_gradients_and_casts():
    w, v = np.ones(2, "float32"), np.ones(3, "float32")
    opt = cconv.optimizers.Adam(0.1)
    opt.apply([None, np.ones(3)], [w, v])          # float64 gradient for a float32 variable
    np.testing.assert_array_equal(w, 1.0)
    assert v.dtype == np.float32 and np.all(v < 1.0)
    with pytest.raises(ValueError, match=r"gradient 0 has shape \(3,\), its variable \(2,\)"):
        opt.apply([np.ones(3, "float32")], [w])
    with pytest.raises(TypeError, match="variable 0 is a list"):
        opt.apply([np.ones(2, "float32")], [[1.0, 2.0]])


def _distiller(lib, ops_module):
    """Keras's knowledge-distillation example, reduced: compute_loss overridden (a frozen
    teacher called in inference mode inside it), compile() with no loss."""

    class Distiller(lib.Model):
        def setup(self, teacher, alpha=0.3, temperature=2.0):
            self.teacher, self.alpha, self.temperature = teacher, alpha, temperature

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         allow_empty=False):
            teacher_pred = self.teacher(x, training=False)
            student_loss = ops_module.mean(ops_module.square(y_pred - y))
            distill = ops_module.mean(ops_module.square(
                ops_module.softmax(teacher_pred / self.temperature, axis=1)
                - ops_module.softmax(y_pred / self.temperature, axis=1)))
            return self.alpha * student_loss + (1 - self.alpha) * distill

    x = lib.Input((4,))
    student = Distiller(x, lib.layers.Dense(3)(x))
    tx = lib.Input((4,))
    teacher = lib.Model(tx, lib.layers.Dense(3)(tx))
    teacher.trainable = False
    student.setup(teacher)
    return student, teacher


def _dense_of(model, cls):
    return next(layer for layer in model.layers if isinstance(layer, cls))


def test_overridden_compute_loss_trains_as_in_keras():
    keras = _keras()
    (ks, kt), (cs, ct) = _distiller(keras, keras.ops), _distiller(cconv, cconv.ops)
    _same_weights(_dense_of(cs, L.Dense), _dense_of(ks, keras.layers.Dense), seed=4)
    _same_weights(ct, kt, seed=5)
    ks.compile(optimizer=keras.optimizers.SGD(0.5))
    cs.compile(optimizer=cconv.optimizers.SGD(0.5))
    assert cs.loss is None
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 3)).astype("float32")
    hk = ks.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    hc = cs.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(hc, hk, rtol=1e-4)
    for a, b in zip(_dense_of(cs, L.Dense).get_weights(),
                    _dense_of(ks, keras.layers.Dense).get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(ct.get_weights(), kt.get_weights()):     # the teacher is frozen
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(cs.evaluate(x, y, verbose=0), ks.evaluate(x, y, verbose=0),
                               rtol=1e-4)


def test_kl_divergence_agrees_with_keras():
    """Keras's KLDivergence (the distillation loss): value, per-sample function, and the
    gradient through the tape, against TensorFlow."""
    keras = _keras()
    import tensorflow as tf
    rng = np.random.default_rng(11)
    y = rng.dirichlet(np.ones(5), size=6).astype("float32")
    p = rng.dirichlet(np.ones(5), size=6).astype("float32")
    y[0, 0], p[1, 1] = 0.0, 0.0                      # clipped entries
    kl = cconv.losses.get("kl_divergence")
    assert isinstance(kl, cconv.losses.KLDivergence)
    np.testing.assert_allclose(kl(y, p), float(keras.losses.KLDivergence()(y, p)), rtol=1e-5)
    np.testing.assert_allclose(cconv.losses.kl_divergence(y, p),
                               keras.losses.kl_divergence(y, p), rtol=1e-5)
    tp = tf.Variable(p)
    with tf.GradientTape() as tape:
        tl = keras.losses.KLDivergence()(y, tf.nn.softmax(tp))
    want = tape.gradient(tl, tp).numpy()
    pv = p.copy()
    with cconv.GradientTape() as tape:
        loss = kl(y, ops.softmax(pv))
    np.testing.assert_allclose(tape.gradient(loss, pv), want, rtol=1e-4, atol=1e-7)


def test_a_model_holding_separately_trained_models_trains_its_student():
    """The distillation program's shape: a subclassed model holding a teacher (trained by
    its own fit, so with its own weight buffer) and a student it calls; its compute_loss
    calls the teacher in inference mode. The student's variables get gradients and move."""
    class Distiller(cconv.Model):
        def __init__(self, student, teacher):
            super().__init__()
            self.teacher = teacher
            self.student = student

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         allow_empty=False):
            t = self.teacher(x, training=False)
            return ops.mean(ops.square(y_pred - t)) + ops.mean(ops.square(y_pred - y))

        def call(self, x):
            return self.student(x)

    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
    teacher = cconv.Sequential([cconv.Input((4,)), L.Dense(2)])
    teacher.compile("sgd", "mse")
    teacher.fit(x, y, verbose=0)
    teacher.trainable = False            # else, as in Keras, the teacher trains too
    student = cconv.Sequential([cconv.Input((4,)), L.Dense(2)])
    d = Distiller(student, teacher)
    d.compile(optimizer=cconv.optimizers.SGD(0.1))
    before = student.get_weights()
    teacher_before = teacher.get_weights()
    with cconv.GradientTape() as tape:
        loss = d.compute_loss(x, y, d(x, training=True))
    grads = dict(zip(map(id, d.trainable_variables), tape.gradient(loss, d.trainable_variables)))
    assert all(grads[id(w)] is not None for w in student.trainable_weights)
    history = d.fit(x, y, epochs=3, batch_size=8, verbose=0).history["loss"]
    assert history[-1] < history[0]
    assert not np.allclose(student.get_weights()[0], before[0])
    for a, b in zip(teacher.get_weights(), teacher_before):
        np.testing.assert_array_equal(a, b)


def test_dcgan_generator_step_through_an_inference_mode_discriminator():
    """Keras's DCGAN generator step calls the discriminator without training=: its Dropout
    passes through, and the generator's gradients agree with TensorFlow's."""
    keras = _keras()
    import tensorflow as tf

    def pair(lib):
        gen = lib.Sequential([lib.Input((4,)), lib.layers.Dense(8),
                              lib.layers.LeakyReLU(negative_slope=0.2), lib.layers.Dense(6)])
        disc = lib.Sequential([lib.Input((6,)), lib.layers.Dense(5),
                               lib.layers.LeakyReLU(negative_slope=0.2),
                               lib.layers.Dropout(0.3), lib.layers.Dense(1)])
        return gen, disc

    (kg, kd), (cg, cd) = pair(keras), pair(cconv)
    _same_weights(cg, kg, seed=6)
    _same_weights(cd, kd, seed=7)
    z = np.random.default_rng(13).normal(size=(5, 4)).astype("float32")
    labels = np.zeros((5, 1), "float32")
    kloss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
    closs_fn = cconv.losses.BinaryCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        kl = kloss_fn(labels, kd(kg(z)))
    want = tape.gradient(kl, kg.trainable_weights)
    with cconv.GradientTape() as tape:
        cl = closs_fn(labels, cd(cg(z)))
    got = tape.gradient(cl, cg.trainable_weights)
    np.testing.assert_allclose(float(cl), float(kl), rtol=1e-5)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-6)


def test_saliency_gradient_with_respect_to_a_watched_input():
    """tape.watch(images); model(images); tape.gradient(score, images): the input gradient
    of a CNN (Keras's saliency recipe), as TensorFlow computes it."""
    keras = _keras()
    import tensorflow as tf
    km, cm = _cnn(keras), _cnn(cconv)
    _same_weights(cm, km, seed=8)
    x, _ = _images(3)
    tx = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tx)
        kscore = tf.reduce_sum(km(tx)[:, 1])
    want = tape.gradient(kscore, tx).numpy()
    with cconv.GradientTape() as tape:
        tape.watch(x)
        score = ops.sum(cm(x)[:, 1])
    got = tape.gradient(score, x)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".npz", ".h5"])
def test_a_function_loss_comes_back_through_custom_objects(tmp_path, suffix):
    """A model compiled with a plain function loss is saved with the function's name and
    compiled again on load when ``custom_objects`` (or a registration) names it; the .npz
    path refused it as an unknown loss class, and .keras files named it 'TapeLoss'."""
    pytest.importorskip("h5py")
    from cconv import ops

    def my_loss(y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)

    x = np.ones((6, 4), np.float32)
    y = np.zeros((6, 2), np.float32)
    model = cconv.Sequential([cconv.Input((4,)), cconv.layers.Dense(2)])
    model.compile("sgd", my_loss)
    model.fit(x, y, verbose=0)
    path = tmp_path / ("m" + suffix)
    model.save(path)
    back = cconv.load_model(path, custom_objects={"my_loss": my_loss})
    assert back.loss.name == "my_loss"
    assert back.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))
    back.fit(x, y, verbose=0)        # and it trains
