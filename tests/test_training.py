"""Sequential, losses, metrics, optimizers, callbacks, saving: behaviour without Keras."""
import io
import pickle

import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import numeric_grad, small_model
from ._helpers import small_data as data

# ----- losses ------------------------------------------------------------------------------------
LOSS_CASES = [
    (cconv.losses.CategoricalCrossentropy(), "prob"),
    (cconv.losses.CategoricalCrossentropy(label_smoothing=0.1), "prob"),
    (cconv.losses.CategoricalCrossentropy(from_logits=True), "logits"),
    (cconv.losses.SparseCategoricalCrossentropy(), "prob"),
    (cconv.losses.SparseCategoricalCrossentropy(from_logits=True), "logits"),
    (cconv.losses.BinaryCrossentropy(), "sigm"),
    (cconv.losses.BinaryCrossentropy(from_logits=True), "logits"),
    (cconv.losses.MeanSquaredError(), "logits"),
    (cconv.losses.MeanAbsoluteError(), "logits"),
]


@pytest.mark.parametrize(
    "loss,kind", LOSS_CASES, ids=[f"{type(loss).__name__}-{k}" for loss, k in LOSS_CASES]
)
def test_loss_gradients_match_finite_differences(loss, kind):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 4))
    if kind == "prob":
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    elif kind == "sigm":
        p = 1 / (1 + np.exp(-z))
    else:
        p = z
    ids = rng.integers(0, 4, 5)
    if loss.sparse:
        y = ids
    elif isinstance(loss, cconv.losses.BinaryCrossentropy):
        y = rng.integers(0, 2, (5, 4)).astype(float)
    else:
        y = np.eye(4)[ids]
    yt = loss.prepare_targets(y, (None, 4), dtype=np.float64)
    val, g = loss.value_and_grad(yt, p)
    assert val == pytest.approx(loss(y, p), rel=1e-12)
    np.testing.assert_allclose(
        g, numeric_grad(lambda q: loss.value_and_grad(yt, q)[0], p), rtol=1e-5, atol=1e-8
    )
    if loss.fused_activation:            # fused on logits == unfused on probabilities
        zz = z if kind != "sigm" else z
        fv, fg, fp = loss.fused_value_and_grad(yt, zz)
        np.testing.assert_allclose(fp, p, rtol=1e-12)
        assert fv == pytest.approx(val, rel=1e-9)
        np.testing.assert_allclose(
            fg,
            numeric_grad(lambda q: loss.fused_value_and_grad(yt, q)[0], zz),
            rtol=1e-5,
            atol=1e-8,
        )


def test_cross_entropy_is_stable_and_clipped():
    cce = cconv.losses.CategoricalCrossentropy()
    # probabilities are clipped to [1e-7, 1 - 1e-7] like Keras
    assert cce([[0, 1.0]], [[1.0, 0.0]]) == pytest.approx(-np.log(1e-7), rel=1e-6)
    z = np.array([[1000.0, -1000.0]])
    v, g, p = cce.fused_value_and_grad(np.array([[0.0, 1.0]]), z)
    assert v == pytest.approx(2000.0) and np.isfinite(g).all()


def test_unknown_names_list_known_ones():
    with pytest.raises(ValueError, match="Known losses: .*categorical_crossentropy"):
        cconv.losses.get("cross_entropyy")
    with pytest.raises(ValueError,
                       match="Known optimizers: adagrad, adam, adamw, nadam, rmsprop, sgd"):
        cconv.optimizers.get("adamx")
    with pytest.raises(ValueError, match="Known metrics"):
        cconv.metrics.get("f1")
    m = small_model(compile=False)
    with pytest.raises(ValueError, match="Known losses"):
        m.compile(optimizer="adam", loss="nll")
    with pytest.raises(ValueError, match="Known metrics"):
        m.compile(optimizer="adam", loss="mse", metrics=["precision@k"])


def test_accuracy_resolution_follows_keras():
    M = cconv.metrics
    assert isinstance(M.get("accuracy", (None, 10), (None, 10)), M.CategoricalAccuracy)
    assert isinstance(M.get("accuracy", (None,), (None, 10)), M.SparseCategoricalAccuracy)
    assert isinstance(M.get("acc", (None, 1), (None, 10)), M.SparseCategoricalAccuracy)
    assert isinstance(M.get("accuracy", (None, 1), (None, 1)), M.BinaryAccuracy)
    m = M.CategoricalAccuracy()
    m.update_state(np.eye(3)[[0, 1, 2, 0]], np.eye(3)[[0, 1, 1, 0]])
    assert m.result() == 0.75
    m.reset_state()
    assert m.result() == 0.0


# ----- optimizers (formulas; agreement with Keras is in test_keras_models.py) --------------------
def test_optimizer_update_rules():
    g = np.array([0.5, -1.0], np.float32)
    w = np.array([1.0, 2.0], np.float32)
    sgd = cconv.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    sgd.apply([g], [w])
    sgd.apply([g], [w])
    m1 = -0.1 * g
    m2 = 0.9 * m1 - 0.1 * g
    np.testing.assert_allclose(w, np.array([1.0, 2.0]) + m1 + m2, rtol=1e-6)
    w = np.array([1.0, 2.0], np.float32)
    adam = cconv.optimizers.Adam(learning_rate=0.01)
    adam.apply([g], [w])
    # first step: m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1
    alpha = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9)
    expect = np.array([1.0, 2.0]) - alpha * 0.1 * g / (np.sqrt(0.001 * g * g) + 1e-7)
    np.testing.assert_allclose(w, expect, rtol=1e-6)
    assert adam.iterations == 1
    d = cconv.optimizers.get("sgd")
    assert d.learning_rate == 0.01 and d.momentum == 0 and not d.nesterov
    a = cconv.optimizers.get("adam")
    assert (a.learning_rate, a.beta_1, a.beta_2, a.epsilon) == (0.001, 0.9, 0.999, 1e-7)


# ----- Sequential --------------------------------------------------------------------------------
def test_fit_evaluate_predict_history():
    x, y, ids = data()
    m = small_model()
    h = m.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_split=0.25)
    assert list(h.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(v) == 3 for v in h.history.values()) and h.epoch == [0, 1, 2]
    assert h.history["loss"][-1] < h.history["loss"][0]
    res = m.evaluate(x, y, verbose=0)
    assert isinstance(res, list) and len(res) == 2
    p = m.predict(x, verbose=0)
    assert p.shape == (40, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(m.predict(x[:1], verbose=0), p[:1], rtol=1e-5, atol=1e-7)
    # sparse labels and no metrics: evaluate returns a scalar
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert isinstance(m.evaluate(x, ids, verbose=0), float)
    m.fit(x, ids, epochs=1, verbose=0)


def test_fit_does_not_modify_inputs_and_predict_returns_fresh_arrays():
    x, y, _ = data()
    x0, y0 = x.copy(), y.copy()
    m = small_model()
    m.fit(x, y, epochs=1, verbose=0)
    m.predict(x, verbose=0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    ident = cconv.Sequential([cconv.Input((3,)), L.Dropout(0.5)])
    xi = np.ones((2, 3), np.float32)
    out = ident.predict(xi)
    assert not np.shares_memory(out, xi)


def test_errors_fit_before_compile_shapes_and_labels():
    x, y, ids = data()
    m = small_model(compile=False)
    with pytest.raises(RuntimeError, match="compile"):
        m.fit(x, y)
    m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match=r"\(40, 7, 7, 1\).*\(None, 6, 6, 1\)"):
        m.fit(np.zeros((40, 7, 7, 1)), y)
    with pytest.raises(ValueError, match="ONE sample"):
        m.predict(np.zeros((6, 6, 1)))
    with pytest.raises(ValueError, match=r"\(40, 3\).*\(batch, 4\)"):
        m.fit(x, y[:, :3])
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        m.fit(x, ids)
    with pytest.raises(ValueError, match="40 samples.*\\(39, 4\\)"):
        m.fit(x, y[:39])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        m.fit(x, ids + 1)
    with pytest.raises(ValueError, match="categorical_crossentropy"):
        m.fit(x, y)


def test_summary_and_weights_in_keras_order():
    m = small_model()
    buf = io.StringIO()
    m.summary(print_fn=lambda s: buf.write(s + "\n"))
    out = buf.getvalue()
    assert "(None, 4, 4, 3)" in out and "Total params: 82" in out and "Conv2D" in out
    assert [w.shape for w in m.get_weights()] == [(3, 3, 1, 3), (3,), (12, 4), (4,)]
    with pytest.raises(ValueError, match="4 weight arrays"):
        m.set_weights(m.get_weights()[:3])
    with pytest.raises(ValueError, match="kernel"):
        m.set_weights([np.zeros((3, 3, 1, 4)), np.zeros(3), np.zeros((12, 4)), np.zeros(4)])


def test_save_load_and_pickle_round_trips(tmp_path):
    x, y, _ = data()
    m = small_model()
    m.fit(x, y, epochs=2, verbose=0, shuffle=False)
    p = m.predict(x, verbose=0)
    m.save(tmp_path / "m.npz")
    m2 = cconv.load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(m2.predict(x, verbose=0), p)
    assert m2.optimizer.iterations == m.optimizer.iterations
    # continued training is identical for the original and the reloaded model
    m.fit(x, y, epochs=1, verbose=0, shuffle=False)
    m2.fit(x, y, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(m2.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)
    m3 = small_model()
    m.save_weights(tmp_path / "w.npz")
    m3.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(m3.predict(x, verbose=0), m.predict(x, verbose=0))
    m4 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m4.predict(x, verbose=0), m.predict(x, verbose=0))
    m4.fit(x, y, epochs=1, verbose=0, shuffle=False)     # repacks its flat buffers
    m.fit(x, y, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(m4.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)
    with pytest.raises(FileNotFoundError):
        cconv.load_model(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a cconv"):
        cconv.load_model(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="not a model"):
        cconv.load_model(tmp_path / "w.npz")


def test_callbacks_early_stopping_and_checkpoint(tmp_path):
    x, y, _ = data()
    m = small_model(optimizer=cconv.optimizers.SGD(learning_rate=0.0))   # never improves
    es = cconv.callbacks.EarlyStopping(monitor="loss", patience=2)
    h = m.fit(x, y, epochs=20, verbose=0, callbacks=[es], shuffle=False)
    assert len(h.epoch) == 3 and es.stopped_epoch == 2
    seen = []

    class Rec(cconv.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, sorted(logs)))
    m = small_model()
    ck = cconv.callbacks.ModelCheckpoint(str(tmp_path / "ck-{epoch:02d}.npz"), monitor="val_loss",
                                         save_best_only=True)
    m.fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[ck, Rec()], validation_split=0.5)
    assert (tmp_path / "ck-01.npz").exists()
    assert seen[0] == (0, ["accuracy", "loss"]) and len(seen) == 4
    assert cconv.load_model(tmp_path / "ck-01.npz").predict(x[:2], verbose=0).shape == (2, 4)


def test_progress_bar_and_silence(capsys):
    x, y, _ = data()
    m = small_model()
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    m.evaluate(x, y, verbose=0)
    m.predict(x, verbose=0)
    m.predict(x[:1])                                      # one batch: silent by default
    assert capsys.readouterr().out == ""
    m.fit(x, y, epochs=2, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "5/5 [" in out and "loss:" in out and "accuracy:" in out
    assert "images/s" in out


def test_tutorial_cnn_and_lenet5_definitions():
    le = cconv.models.lenet5()
    assert le.count_params() == 61706 and le.output_shape == (None, 10)
    assert [type(layer).__name__ for layer in le.layers] == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dense",
        "Dense",
    ]
    assert isinstance(le.optimizer, cconv.optimizers.Adam)
    tc = cconv.models.tutorial_cnn()
    assert tc.count_params() == 122570 and tc.output_shape == (None, 10)
    assert tc.loss.from_logits


@pytest.mark.parametrize("suffix", [".npz", ".keras", ".h5"])
def test_metric_objects_come_back_from_every_model_file(tmp_path, suffix):
    """A metric object's class and settings are saved, not just its name: a .npz file stored
    ``MeanAbsoluteError(name="x")`` as "x", which load_model then refused as unknown."""
    pytest.importorskip("h5py")
    model = cconv.Sequential([cconv.Input((4,)), L.Dense(2)])
    model.compile("sgd", "mse", metrics=[cconv.metrics.MeanAbsoluteError(name="x"), "mae"],
                  weighted_metrics=[cconv.metrics.Precision(thresholds=0.3)])
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    y = (np.random.default_rng(1).random((6, 2)) > 0.5).astype("float32")
    path = tmp_path / ("m" + suffix)
    model.save(path)
    back = cconv.load_model(path)
    assert back.evaluate(x, y, verbose=0, return_dict=True) == \
        model.evaluate(x, y, verbose=0, return_dict=True)
    precision = [m for m in back._make_metrics(None) if m.name == "precision"][0]
    assert float(np.ravel(precision.thresholds)[0]) == pytest.approx(0.3)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_summary_counts_optimizer_params_as_keras(optimizer):
    """After training, Keras's summary adds an "Optimizer params" line (the step count, the
    learning rate and the slots: Adam's two moments per weight) and counts it in the total;
    sizes in KB. cconv prints the same numbers."""
    keras = pytest.importorskip("keras", reason="compares with Keras's summary")
    import re

    def numbers(lines):
        text = "\n".join(lines)
        return {k: int(v.replace(",", "")) for k, v in
                re.findall(r"(Total|Trainable|Non-trainable|Optimizer) params: ([\d,]+)", text)}

    x, y = np.zeros((4, 6, 6, 1), np.float32), np.zeros((4, 3), np.float32)
    found = {}
    for lib in (keras, cconv):
        model = lib.Sequential([lib.Input((6, 6, 1)), lib.layers.Conv2D(2, 3),
                                lib.layers.Flatten(), lib.layers.Dense(3)])
        model.compile(optimizer, "mse")
        model.fit(x, y, verbose=0)
        lines = []
        model.summary(print_fn=lambda s, **kw: lines.append(s))
        found[lib.__name__] = numbers(lines)
    assert found["cconv"] == found["keras"]
