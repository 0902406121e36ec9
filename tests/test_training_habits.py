"""Everyday Keras training habits, each checked against Keras on the same model, weights and
data: learning-rate schedules, gradient clipping, weight decay, AdamW / Adagrad / Nadam,
regularizers, callbacks and metrics."""
import csv

import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import assert_same_training as _assert_same_training
from ._helpers import keras_or_skip as _keras
from ._helpers import keras_pair as _pair
from ._helpers import tiny_data as _data


def _train_both(km, cm, make_opt, epochs=2, **fit):
    keras = _keras()
    km.compile(optimizer=make_opt(keras), loss="categorical_crossentropy")
    cm.compile(optimizer=make_opt(cconv), loss="categorical_crossentropy")
    x, y = _data()
    kw = dict(batch_size=8, epochs=epochs, shuffle=False, verbose=0, **fit)
    return km.fit(x, y, **kw), cm.fit(x, y, **kw)


# ----- learning-rate schedules -------------------------------------------------------------------
SCHEDULES = {
    "exponential": dict(cls="ExponentialDecay", initial_learning_rate=0.1, decay_steps=3,
                        decay_rate=0.5),
    "exponential_stair": dict(cls="ExponentialDecay", initial_learning_rate=0.1, decay_steps=3,
                              decay_rate=0.5, staircase=True),
    "piecewise": dict(cls="PiecewiseConstantDecay", boundaries=[2, 4], values=[0.1, 0.05, 0.01]),
    "inverse_time": dict(cls="InverseTimeDecay", initial_learning_rate=0.1, decay_steps=2,
                         decay_rate=0.5),
    "polynomial": dict(cls="PolynomialDecay", initial_learning_rate=0.1, decay_steps=4,
                       end_learning_rate=0.01, power=2.0),
    "polynomial_cycle": dict(cls="PolynomialDecay", initial_learning_rate=0.1, decay_steps=4,
                             cycle=True),
    "cosine": dict(cls="CosineDecay", initial_learning_rate=0.1, decay_steps=5, alpha=0.1),
    "cosine_warmup": dict(cls="CosineDecay", initial_learning_rate=0.0, decay_steps=4,
                          warmup_target=0.1, warmup_steps=3),
}


def _schedule(mod, spec):
    kw = dict(spec)
    return getattr(mod.optimizers.schedules, kw.pop("cls"))(**kw)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_values_match_keras(name):
    keras = _keras()
    ks, cs = _schedule(keras, SCHEDULES[name]), _schedule(cconv, SCHEDULES[name])
    for step in range(12):
        assert cs(step) == pytest.approx(float(ks(step)), rel=1e-6, abs=1e-9), step
    again = cconv.optimizers.schedules.deserialize(cconv.optimizers.schedules.serialize(cs))
    assert type(again) is type(cs) and again.get_config() == cs.get_config()


@pytest.mark.parametrize("name", ["exponential", "piecewise", "cosine_warmup", "polynomial"])
def test_schedule_trains_like_keras(name):
    keras = _keras()
    km, cm = _pair(keras)
    hk, hc = _train_both(km, cm, lambda m: m.optimizers.SGD(_schedule(m, SCHEDULES[name])))
    _assert_same_training(km, cm, hk, hc)
    assert cm.optimizer.learning_rate == pytest.approx(float(km.optimizer.learning_rate), rel=1e-6)


def test_callable_learning_rate_of_the_step():
    keras = _keras()
    km, cm = _pair(keras)
    km.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(
        0.1, 1, 0.8)), loss="categorical_crossentropy")
    cm.compile(optimizer=cconv.optimizers.SGD(lambda step: 0.1 * 0.8 ** step),
               loss="categorical_crossentropy")
    x, y = _data()
    hk = km.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    hc = cm.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _assert_same_training(km, cm, hk, hc)
    no_arg = cconv.optimizers.Adam(lambda: 0.25)      # Keras's form: no argument
    assert no_arg.learning_rate == 0.25


def test_learning_rate_is_settable_and_schedules_serialize(tmp_path):
    opt = cconv.optimizers.Adam(0.01)
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5 and opt.get_config()["learning_rate"] == 0.5
    sched = cconv.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    opt = cconv.optimizers.SGD(sched, momentum=0.5, clipnorm=1.0)
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        opt.learning_rate = 0.1
    cfg = cconv.optimizers.serialize(opt)
    assert cfg["config"]["learning_rate"] == {"class_name": "ExponentialDecay",
                                              "config": sched.get_config()}
    back = cconv.optimizers.deserialize(cfg)
    assert isinstance(back.get_config()["learning_rate"], dict) and back.clipnorm == 1.0
    x, y = _data(8)
    m = cconv.Sequential([cconv.Input((6, 6, 1)), L.Flatten(), L.Dense(3, activation="softmax")])
    m.compile(optimizer=cconv.optimizers.Nadam(sched), loss="categorical_crossentropy")
    m.fit(x, y, epochs=2, verbose=0)
    m.save(tmp_path / "m.npz")
    m2 = cconv.load_model(tmp_path / "m.npz")
    assert m2.optimizer.learning_rate == m.optimizer.learning_rate
    m.fit(x, y, epochs=1, verbose=0, shuffle=False)
    m2.fit(x, y, epochs=1, verbose=0, shuffle=False)        # Nadam's state travelled
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="Only one of clipnorm"):
        cconv.optimizers.SGD(clipnorm=1.0, clipvalue=1.0)


# ----- clipping, weight decay and the new optimizers ---------------------------------------------
OPTIMIZERS = {
    "sgd_clipnorm": lambda m: m.optimizers.SGD(0.5, clipnorm=0.05),
    "adam_global_clipnorm": lambda m: m.optimizers.Adam(0.01, global_clipnorm=0.05),
    "rmsprop_clipvalue": lambda m: m.optimizers.RMSprop(0.01, clipvalue=0.01),
    "sgd_weight_decay": lambda m: m.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.1),
    "adamw": lambda m: m.optimizers.AdamW(0.01, weight_decay=0.05),
    "adagrad": lambda m: m.optimizers.Adagrad(0.1),
    "nadam": lambda m: m.optimizers.Nadam(0.01),
    "nadam_schedule_clip": lambda m: m.optimizers.Nadam(
        m.optimizers.schedules.InverseTimeDecay(0.01, 2, 0.5), clipnorm=0.1, weight_decay=0.01),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_trains_like_keras(name):
    keras = _keras()
    km, cm = _pair(keras)
    hk, hc = _train_both(km, cm, OPTIMIZERS[name])
    _assert_same_training(km, cm, hk, hc)


def test_weight_decay_exclusion_by_name():
    keras = _keras()
    km, cm = _pair(keras)
    for m, mod in ((km, keras), (cm, cconv)):
        opt = mod.optimizers.AdamW(0.01, weight_decay=0.5)
        opt.exclude_from_weight_decay(var_names=["bias"])
        m.compile(optimizer=opt, loss="categorical_crossentropy")
    x, y = _data()
    hk = km.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    hc = cm.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _assert_same_training(km, cm, hk, hc)


def test_optimizer_does_not_modify_the_gradients():
    g = np.array([3.0, -4.0], np.float32)
    w = np.zeros(2, np.float32)
    cconv.optimizers.SGD(1.0, clipnorm=1.0).apply([g], [w])
    np.testing.assert_array_equal(g, [3.0, -4.0])
    np.testing.assert_allclose(w, [-0.6, 0.8], rtol=1e-6)
    assert isinstance(cconv.optimizers.get("adamw"), cconv.optimizers.AdamW)
    with pytest.raises(ValueError, match="weight_decay"):
        cconv.optimizers.AdamW(weight_decay=None)


# ----- regularizers ------------------------------------------------------------------------------
REGULARIZERS = {
    "l1": (cconv.regularizers.L1(0.01), None),
    "l2": (cconv.regularizers.L2(0.05), cconv.regularizers.L2(0.1)),
    "l1_l2": (cconv.regularizers.L1L2(l1=0.01, l2=0.02), cconv.regularizers.L1(0.02)),
}


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_regularizers_train_like_keras(name):
    keras = _keras()
    kr, br = REGULARIZERS[name]
    km, cm = _pair(keras, kernel_regularizer=kr, bias_regularizer=br)
    x, y = _data()
    hk, hc = _train_both(km, cm, lambda m: m.optimizers.SGD(0.1, momentum=0.5),
                         validation_data=(x[:8], y[:8]))
    _assert_same_training(km, cm, hk, hc)
    np.testing.assert_allclose(hc.history["val_loss"], hk.history["val_loss"], rtol=1e-4)
    assert cm.evaluate(x, y, verbose=0) == pytest.approx(km.evaluate(x, y, verbose=0), rel=1e-4)
    penalty = sum(float(l) for l in km.losses)
    assert cm._regularization_loss_and_grads(grads=False) == pytest.approx(penalty, rel=1e-5)


def test_regularizer_names_and_serialization(tmp_path):
    R = cconv.regularizers
    assert R.get("l2").get_config() == {"l2": 0.01} and R.get("L1L2").get_config() == {
        "l1": 0.0, "l2": 0.0}
    assert R.get("l1_l2").get_config() == {"l1": 0.01, "l2": 0.01}
    assert R.l1_l2 is R.L1L2 and R.get(None) is None
    with pytest.raises(ValueError, match="Known regularizers"):
        R.get("l3")
    with pytest.raises(ValueError, match="l2 must be"):
        R.L2(-1.0)
    d = L.Dense(3, kernel_regularizer="l2", bias_regularizer=R.L1(0.5))
    d2 = L.Dense.from_config(d.get_config())
    assert d2.kernel_regularizer.get_config() == {"l2": 0.01}
    assert d2.bias_regularizer.get_config() == {"l1": 0.5}
    m = cconv.Sequential([cconv.Input((6, 6, 1)), L.Conv2D(2, 3, kernel_regularizer="l1"),
                          L.Flatten(), d])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    m.save(tmp_path / "r.npz")
    m2 = cconv.load_model(tmp_path / "r.npz")
    assert m2.layers[0].kernel_regularizer.get_config() == {"l1": 0.01}
    x, y = _data(8)
    assert m2.evaluate(x, y, verbose=0) == pytest.approx(m.evaluate(x, y, verbose=0), rel=1e-6)


# ----- utils -------------------------------------------------------------------------------------
def test_to_categorical_matches_keras():
    keras = _keras()
    for y, n in (([0, 2, 1], None), ([[1], [0]], 3), (np.arange(6).reshape(2, 3) % 4, 5)):
        got = cconv.utils.to_categorical(y, n)
        want = keras.utils.to_categorical(y, n)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert cconv.datasets.to_categorical is cconv.utils.to_categorical
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        cconv.utils.to_categorical([0, 2], 2)


# ----- callbacks ---------------------------------------------------------------------------------
def _fit_both_with(make_callbacks, epochs=4, lr=0.05, **fit):
    keras = _keras()
    km, cm = _pair(keras)
    x, y = _data()
    hk = hc = None
    for m, mod in ((km, keras), (cm, cconv)):
        m.compile(optimizer=mod.optimizers.SGD(lr), loss="categorical_crossentropy")
        h = m.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=make_callbacks(mod), **fit)
        hk, hc = (h, hc) if m is km else (hk, h)
    return km, cm, hk, hc


def test_learning_rate_scheduler_like_keras():
    def schedule(epoch, lr):
        return lr if epoch < 1 else lr * 0.5
    km, cm, hk, hc = _fit_both_with(
        lambda mod: [mod.callbacks.LearningRateScheduler(schedule)], epochs=3)
    np.testing.assert_allclose(hc.history["learning_rate"], hk.history["learning_rate"], rtol=1e-6)
    np.testing.assert_allclose(hc.history["loss"], hk.history["loss"], rtol=1e-4)
    one_arg = cconv.callbacks.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))
    m = cconv.Sequential([cconv.Input((6, 6, 1)), L.Flatten(), L.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = _data(8)
    h = m.fit(x, y, epochs=2, verbose=0, callbacks=[one_arg])
    np.testing.assert_allclose(h.history["learning_rate"], [0.01, 0.02])
    bad = cconv.callbacks.LearningRateScheduler(lambda epoch: 1)
    with pytest.raises(ValueError, match="should be a float"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[bad])


def test_reduce_lr_on_plateau_like_keras():
    # A large min_delta makes "no improvement" certain, so reductions follow patience/cooldown.
    km, cm, hk, hc = _fit_both_with(lambda mod: [mod.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=1, min_delta=1.0, cooldown=1, min_lr=0.01)],
        epochs=7)
    np.testing.assert_allclose(hc.history["learning_rate"], hk.history["learning_rate"], rtol=1e-6)
    assert len(set(hc.history["learning_rate"])) > 2         # it did reduce, several times
    np.testing.assert_allclose(hc.history["loss"], hk.history["loss"], rtol=1e-4)


def test_csv_logger_like_keras(tmp_path):
    x, y = _data()
    km, cm, hk, hc = _fit_both_with(lambda mod: [mod.callbacks.CSVLogger(
        tmp_path / f"{mod.__name__}.csv")], epochs=2, validation_data=(x[:8], y[:8]))
    rows = {}
    for name in ("keras", "cconv"):
        with open(tmp_path / f"{name}.csv", newline="") as f:
            rows[name] = list(csv.reader(f))
    assert rows["cconv"][0] == rows["keras"][0] == ["epoch", "loss", "val_loss"]
    for rc, rk in zip(rows["cconv"][1:], rows["keras"][1:]):
        assert rc[0] == rk[0]
        np.testing.assert_allclose([float(v) for v in rc[1:]], [float(v) for v in rk[1:]],
                                   rtol=1e-4)
    log = cconv.callbacks.CSVLogger(tmp_path / "more.csv", separator=";", append=True)
    m = cconv.Sequential([cconv.Input((6, 6, 1)), L.Flatten(), L.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    m.fit(x, y, epochs=1, verbose=0, callbacks=[log])
    m.fit(x, y, epochs=1, verbose=0, callbacks=[log])
    lines = (tmp_path / "more.csv").read_text().splitlines()
    assert lines[0] == "epoch;loss;val_loss" and len(lines) == 3 and lines[2].endswith(";NA")


def test_terminate_on_nan_stops_at_the_first_nan_batch(capsys):
    keras = _keras()
    x, y = _data()
    y[13] = np.nan                                       # sample 13 is in batch 1 (batch size 8)
    seen = {}
    for mod in (keras, cconv):
        km, cm = _pair(keras)
        m = km if mod is keras else cm
        m.compile(optimizer=mod.optimizers.SGD(0.01), loss="categorical_crossentropy")
        batches = []
        cbs = [mod.callbacks.TerminateOnNaN(),
               mod.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))]
        h = m.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=cbs)
        seen[mod.__name__] = (batches, len(h.history["loss"]))
    assert seen["cconv"] == seen["keras"] == ([0, 1], 1)
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    m = cconv.Sequential([cconv.Input((6, 6, 1)), L.Flatten(), L.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1"):
        m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
              callbacks=[cconv.callbacks.TerminateOnNaN(raise_error=True)])


def test_lambda_callback_hooks_like_keras():
    calls = {}
    for mod in (_keras(), cconv):
        log = []
        cb = mod.callbacks.LambdaCallback(
            on_train_begin=lambda logs: log.append(("train_begin", isinstance(logs, dict))),
            on_epoch_begin=lambda e, logs: log.append(("epoch_begin", e)),
            on_train_batch_begin=lambda b, logs: log.append(("batch_begin", b)),
            on_train_batch_end=lambda b, logs: log.append(("batch_end", b, "loss" in logs)),
            on_epoch_end=lambda e, logs: log.append(("epoch_end", e, sorted(logs))),
            on_train_end=lambda logs: log.append(("train_end", isinstance(logs, dict))),
            note="kept")
        assert cb.note == "kept"
        m = mod.Sequential([mod.Input((6, 6, 1)), mod.layers.Flatten(), mod.layers.Dense(3)])
        m.compile(optimizer="sgd", loss="mse")
        x, y = _data(12)
        m.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False, callbacks=[cb])
        calls[mod.__name__] = log
    assert calls["cconv"] == calls["keras"]


def test_history_plot(tmp_path, monkeypatch):
    x, y = _data(16)
    m = cconv.Sequential([cconv.Input((6, 6, 1)), L.Flatten(), L.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    h = m.fit(x, y, epochs=3, verbose=0, validation_split=0.25)
    with pytest.raises(ValueError, match="recorded"):
        h.plot(tmp_path / "x.png", keys=["auc"])
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="cconv\\[plot\\]"):
        h.plot(tmp_path / "h.png")
    monkeypatch.undo()
    pytest.importorskip("matplotlib", reason="History.plot draws with matplotlib")
    out = h.plot(tmp_path / "h.png")
    assert out == tmp_path / "h.png" and (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


# ----- metrics -----------------------------------------------------------------------------------
def _metric_data(seed=0, n=30, c=4):
    rng = np.random.default_rng(seed)
    p = rng.random((n, c)).astype(np.float32)
    p[:5] = np.round(p[:5], 1)                          # ties at top-k borders and thresholds
    p[5] = [0.0, 1.0, 0.5, 1e-8][:c]                    # the AUC's end buckets
    ids = rng.integers(0, c, n)
    return np.eye(c, dtype=np.float32)[ids], p, ids, rng.random(n).astype(np.float32)


METRIC_CASES = {
    "topk2": ("TopKCategoricalAccuracy", dict(k=2), "onehot"),
    "topk5": ("TopKCategoricalAccuracy", dict(), "onehot"),
    "sparse_topk": ("SparseTopKCategoricalAccuracy", dict(k=2), "ids"),
    "sparse_topk_col": ("SparseTopKCategoricalAccuracy", dict(k=1), "ids_col"),
    "precision": ("Precision", dict(), "onehot"),
    "precision_thresholds": ("Precision", dict(thresholds=[0.3, 0.5, 0.8]), "onehot"),
    "precision_topk": ("Precision", dict(top_k=2), "onehot"),
    "precision_class": ("Precision", dict(class_id=1, thresholds=0.4), "onehot"),
    "recall": ("Recall", dict(), "onehot"),
    "recall_topk_class": ("Recall", dict(top_k=1, class_id=2), "onehot"),
    "auc": ("AUC", dict(), "onehot"),
    "auc_pr": ("AUC", dict(curve="PR"), "onehot"),
    "auc_minoring": ("AUC", dict(num_thresholds=7, summation_method="minoring"), "onehot"),
    "auc_majoring_pr": ("AUC", dict(curve="PR", summation_method="majoring"), "onehot"),
    "auc_thresholds": ("AUC", dict(thresholds=[0.2, 0.5, 0.9]), "onehot"),
    "auc_logits": ("AUC", dict(from_logits=True), "logits"),
    "mse": ("MeanSquaredError", dict(), "onehot"),
    "mae_col": ("MeanAbsoluteError", dict(), "col"),
}


@pytest.mark.parametrize("case", sorted(METRIC_CASES))
def test_metric_matches_keras(case):
    keras = _keras()
    cls, kw, kind = METRIC_CASES[case]
    km, cmet = getattr(keras.metrics, cls)(**kw), getattr(cconv.metrics, cls)(**kw)
    weighted = cls in ("Precision", "Recall", "AUC")
    for seed in (0, 1):                                  # two updates accumulate
        y, p, ids, w = _metric_data(seed)
        if kind == "ids":
            y = ids
        elif kind == "ids_col":
            y = ids[:, None]
        elif kind == "logits":
            p = (p - 0.5) * 8
        elif kind == "col":
            y, p = y[:, 0], p[:, :1]
        sw = {"sample_weight": w} if weighted and seed == 1 else {}
        km.update_state(y, p, **sw)
        cmet.update_state(y, p, **sw)
    want = np.asarray(km.result(), dtype=np.float64)
    np.testing.assert_allclose(np.asarray(cmet.result()), want, rtol=1e-5, atol=1e-6)
    cmet.reset_state()
    assert np.all(np.asarray(cmet.result()) == 0)


def test_metrics_by_name_in_fit_like_keras():
    keras = _keras()
    names = ["precision", "recall", "auc", "top_k_categorical_accuracy", "mse", "mae"]
    km, cm = _pair(keras)
    for m, mod in ((km, keras), (cm, cconv)):
        m.compile(optimizer=mod.optimizers.SGD(0.05), loss="categorical_crossentropy",
                  metrics=names + [mod.metrics.TopKCategoricalAccuracy(k=1, name="top1")])
    x, y = _data()
    hk = km.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    hc = cm.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert sorted(hc.history) == sorted(hk.history)
    for k in hk.history:
        np.testing.assert_allclose(hc.history[k], hk.history[k], rtol=1e-4, atol=1e-6, err_msg=k)
    for name in names:
        assert isinstance(cconv.metrics.get(name), type(cconv.metrics.get(name)))
    assert isinstance(cconv.metrics.get("AUC"), cconv.metrics.AUC)
    with pytest.raises(ValueError, match="curve"):
        cconv.metrics.AUC(curve="PRGAIN")
