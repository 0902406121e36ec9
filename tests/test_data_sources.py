"""Data for fit/evaluate/predict beyond plain arrays: sample and class weights (checked
against Keras 3), generators and sequences (checked against the same arrays), bounded memory
while streaming, argument checks before any weight changes, BackupAndRestore, and the
training-time error reports."""
import threading
import tracemalloc
import warnings

import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import assert_same_training as _assert_same_training
from ._helpers import keras_or_skip as _keras
from ._helpers import keras_pair as _pair
from ._helpers import tiny_data as _data

WEIGHTS = np.linspace(0.2, 2.0, 24).astype(np.float32)
CLASS_WEIGHT = {0: 1.0, 1: 2.5, 2: 0.5}


def _compile_both(km, cm, keras, loss="categorical_crossentropy", jit_compile=True):
    metrics = dict(metrics=["accuracy"], weighted_metrics=["accuracy"])
    km.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss, **metrics)
    cm.compile(optimizer=cconv.optimizers.SGD(0.05), loss=loss, jit_compile=jit_compile,
               **metrics)


def _assert_same_history(hk, hc, keys):
    for k in keys:
        np.testing.assert_allclose(hc.history[k], hk.history[k], rtol=1e-4, atol=1e-6,
                                   err_msg=k)


# ----- weights against Keras ---------------------------------------------------------------------
@pytest.mark.tensorflow
@pytest.mark.parametrize("jit_compile", [True, False])
def test_sample_weight_trains_like_keras(jit_compile):
    keras = _keras()
    km, cm = _pair(keras)
    _compile_both(km, cm, keras, jit_compile=jit_compile)
    x, y = _data()
    kw = dict(batch_size=8, epochs=2, shuffle=False, verbose=0, sample_weight=WEIGHTS)
    hk, hc = km.fit(x, y, **kw), cm.fit(x, y, **kw)
    _assert_same_training(km, cm, hk, hc)
    _assert_same_history(hk, hc, ["loss", "accuracy", "weighted_accuracy"])


@pytest.mark.tensorflow
@pytest.mark.parametrize("labels", ["one_hot", "class_ids"])
def test_class_weight_trains_like_keras(labels):
    keras = _keras()
    km, cm = _pair(keras)
    loss = "categorical_crossentropy" if labels == "one_hot" else \
        "sparse_categorical_crossentropy"
    _compile_both(km, cm, keras, loss)
    x, y = _data()
    if labels == "class_ids":
        y = y.argmax(axis=1)
    kw = dict(batch_size=8, epochs=2, shuffle=False, verbose=0, class_weight=CLASS_WEIGHT)
    hk, hc = km.fit(x, y, **kw), cm.fit(x, y, **kw)
    _assert_same_training(km, cm, hk, hc)
    _assert_same_history(hk, hc, ["loss", "accuracy", "weighted_accuracy"])


@pytest.mark.tensorflow
def test_weighted_validation_data_like_keras():
    keras = _keras()
    km, cm = _pair(keras)
    _compile_both(km, cm, keras)
    x, y = _data()
    xv, yv = _data(10, seed=3)
    wv = np.linspace(2.0, 0.1, 10).astype(np.float32)
    kw = dict(batch_size=8, epochs=2, shuffle=False, verbose=0, sample_weight=WEIGHTS,
              validation_data=(xv, yv, wv))
    hk, hc = km.fit(x, y, **kw), cm.fit(x, y, **kw)
    _assert_same_training(km, cm, hk, hc)
    keys = ["loss", "accuracy", "weighted_accuracy"]
    _assert_same_history(hk, hc, keys + ["val_" + k for k in keys])


@pytest.mark.tensorflow
def test_evaluate_return_dict_and_sample_weight_like_keras():
    keras = _keras()
    km, cm = _pair(keras)
    _compile_both(km, cm, keras)
    x, y = _data(20, seed=5)
    for kw in ({}, {"sample_weight": np.linspace(0.0, 3.0, 20)}):
        want = km.evaluate(x, y, batch_size=8, verbose=0, return_dict=True, **kw)
        got = cm.evaluate(x, y, batch_size=8, verbose=0, return_dict=True, **kw)
        assert set(got) == set(want) == {"loss", "accuracy", "weighted_accuracy"}
        for k in want:
            assert abs(got[k] - float(want[k])) <= 1e-5 * max(1.0, abs(float(want[k]))), k
        as_list = cm.evaluate(x, y, batch_size=8, verbose=0, **kw)
        assert as_list == [got["loss"], got["accuracy"], got["weighted_accuracy"]]


def test_metrics_weighted_mean_and_loss_sum_over_batch_size():
    """Keras's rules by hand: loss = sum(l_i * w_i) / n; a weighted metric
    sum(a_i w_i) / sum(w_i), a plain one ignores the weights."""
    m = cconv.Sequential([cconv.Input((4,)), L.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"],
              weighted_metrics=["accuracy", "mse"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 10)]
    w = rng.uniform(0, 2, 10)
    p = m.predict(x, verbose=0)
    per = -np.log(np.sum(p * y, axis=1))
    acc = (p.argmax(1) == y.argmax(1)).astype(float)
    assert m.metrics_names == ["loss", "accuracy", "weighted_accuracy", "mse"]
    loss, plain, accuracy, mse = m.evaluate(x, y, batch_size=4, verbose=0, sample_weight=w)
    np.testing.assert_allclose(loss, np.sum(per * w) / 10, rtol=1e-5)
    np.testing.assert_allclose(plain, acc.mean(), rtol=1e-6)
    np.testing.assert_allclose(accuracy, np.sum(acc * w) / np.sum(w), rtol=1e-6)
    se = np.mean((p - y) ** 2, axis=1)
    np.testing.assert_allclose(mse, np.sum(se * w) / np.sum(w), rtol=1e-5)


# ----- generators and sequences ------------------------------------------------------------------
def _model(jit_compile=True):
    m = cconv.Sequential([cconv.Input((6, 6, 1)), L.Conv2D(4, 3, activation="relu"),
                          L.MaxPooling2D(2), L.Flatten(), L.Dense(3, activation="softmax")])
    m.compile(optimizer=cconv.optimizers.Adam(0.01), loss="categorical_crossentropy",
              metrics=["accuracy"], jit_compile=jit_compile)
    return m


def _same_start(*models):
    w = models[0].get_weights()
    for m in models[1:]:
        m.set_weights(w)


class Batches:
    """A sequence that subclasses nothing: ``__len__`` and ``__getitem__`` only (plus the
    optional ``on_epoch_end``)."""

    def __init__(self, x, y, w=None, batch_size=8):
        self.x, self.y, self.w, self.b = x, y, w, batch_size
        self.epochs_ended = 0

    def __len__(self):
        return -(-len(self.x) // self.b)

    def __getitem__(self, i):
        s = slice(i * self.b, (i + 1) * self.b)
        return (self.x[s], self.y[s]) if self.w is None else (self.x[s], self.y[s], self.w[s])

    def on_epoch_end(self):
        self.epochs_ended += 1


def _generator(x, y, w=None, batch_size=8, repeat=1):
    for _ in range(repeat):
        for i in range(0, len(x), batch_size):
            s = slice(i, i + batch_size)
            yield (x[s], y[s]) if w is None else (x[s], y[s], w[s])


@pytest.mark.parametrize("weighted", [False, True])
def test_generator_and_sequence_train_like_the_arrays(weighted):
    x, y = _data()
    xv, yv = _data(10, seed=3)
    w = WEIGHTS if weighted else None
    ma, mg, ms = _model(), _model(), _model()
    _same_start(ma, mg, ms)
    kw = dict(epochs=3, shuffle=False, verbose=0)
    ha = ma.fit(x, y, batch_size=8, sample_weight=w, validation_data=(xv, yv), **kw)
    hg = mg.fit(_generator(x, y, w, repeat=3), steps_per_epoch=3,
                validation_data=Batches(xv, yv, batch_size=32), **kw)
    seq = Batches(x, y, w)
    hs = ms.fit(seq, validation_data=(xv, yv), **kw)
    assert seq.epochs_ended == 3
    for h in (hg, hs):
        assert set(h.history) == set(ha.history)
        for k in ha.history:
            np.testing.assert_allclose(h.history[k], ha.history[k], rtol=1e-6, err_msg=k)
    for m in (mg, ms):
        for a, b in zip(m.get_weights(), ma.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mg.evaluate(_generator(x, y, w), verbose=0),
                               ma.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0),
                               rtol=1e-6)
    np.testing.assert_allclose(ms.predict(Batches(x, y), verbose=0),
                               ma.predict(x, verbose=0), rtol=1e-6, atol=1e-7)


def test_generator_without_steps_runs_until_exhausted_and_class_weight_applies():
    x, y = _data()
    ma, mg = _model(), _model()
    _same_start(ma, mg)
    ha = ma.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                class_weight=CLASS_WEIGHT)
    hg = mg.fit(_generator(x, y), epochs=1, verbose=0, class_weight=CLASS_WEIGHT)
    np.testing.assert_allclose(hg.history["loss"], ha.history["loss"], rtol=1e-6)
    with pytest.warns(UserWarning, match="ran out of data"):     # Keras's warning and rule
        h = _model().fit(_generator(x, y), epochs=3, verbose=0)
    assert len(h.history["loss"]) == 1


def test_sequence_shuffle_visits_every_batch_once_per_epoch():
    x, y = _data()
    seen = []

    class Tagged(Batches):
        def __getitem__(self, i):
            seen.append(i)
            return super().__getitem__(i)

    np.random.seed(0)
    _model().fit(Tagged(x, y), epochs=2, shuffle=True, verbose=0)
    # batch 0 is read once ahead to build and check the model
    assert seen[0] == 0 and sorted(seen[1:]) == [0, 1, 1, 2, 2]


def test_an_error_in_the_stream_reaches_fit_and_the_thread_stops():
    x, y = _data()

    def broken():
        yield x[:8], y[:8]
        yield x[8:16], y[8:16]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        _model().fit(broken(), epochs=1, verbose=0)
    assert not [t for t in threading.enumerate() if t.name == "cconv-prefetch"]


def test_streaming_2000_batches_keeps_memory_bounded():
    m = cconv.Sequential([cconv.Input((16, 16, 1)), L.Conv2D(2, 3, activation="relu"),
                          L.MaxPooling2D(2), L.Flatten(), L.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    yb = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 64)]

    def stream(n=2000):
        for _ in range(n):        # a fresh 64 KiB float32 batch each time: 125 MiB streamed
            yield rng.normal(size=(64, 16, 16, 1)).astype(np.float32), yb

    m.fit(stream(20), epochs=1, verbose=0)               # warm up caches and plans
    tracemalloc.start()
    try:
        h = m.fit(stream(), steps_per_epoch=1000, epochs=2, verbose=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(h.history["loss"]) == 2
    assert peak < 64 * 2 ** 20, f"peak traced memory {peak / 2 ** 20:.1f} MiB"


class Explosive:
    """Neither array, sequence nor iterator; converting it would exhaust memory."""

    def __array__(self, *a, **k):
        raise AssertionError("np.asarray was called on the data object")

    def __len__(self):
        raise AssertionError("len() was called on the data object")


class HugeSequence:
    """A 'sequence' whose items are not batches (np.asarray of it would take all memory)."""

    def __len__(self):
        return 10 ** 12

    def __getitem__(self, i):
        return 1.0


def test_bad_data_objects_are_type_errors_before_any_conversion():
    m = _model()
    x, y = _data()
    with pytest.raises(TypeError, match=r"x must be .*got an object of type .*Explosive"):
        m.fit(Explosive(), y, verbose=0)
    with pytest.raises(TypeError, match=r"validation_data must be .*Explosive"):
        m.fit(x, y, verbose=0, validation_data=Explosive())
    with pytest.raises(TypeError, match=r"x must be .*Explosive"):
        m.predict(Explosive())
    with pytest.raises(TypeError, match=r"x must be .*Explosive"):
        m.evaluate(Explosive(), y, verbose=0)
    w0 = m.get_weights()
    with pytest.raises(TypeError, match=r"every batch must be a tuple .*batch 0 is a float"):
        m.fit(HugeSequence(), verbose=0)
    with pytest.raises(TypeError, match=r"x is a list of something other than numbers"):
        m.fit([object()] * 3, y[:3], verbose=0)
    for a, b in zip(m.get_weights(), w0):
        np.testing.assert_array_equal(a, b)


# ----- argument checks before any weight changes ----------------------------------------------
BAD_FIT_ARGS = {
    "validation_freq=0": (dict(validation_freq=0, validation_split=0.25), ValueError,
                          "validation_freq"),
    "epochs=-1": (dict(epochs=-1), ValueError, "epochs"),
    "epochs=2.5": (dict(epochs=2.5), TypeError, "epochs"),
    "initial_epoch>epochs": (dict(epochs=2, initial_epoch=3), ValueError, "initial_epoch"),
    "validation_split=1": (dict(validation_split=1.0), ValueError, "validation_split"),
    "validation_split=-0.1": (dict(validation_split=-0.1), ValueError, "validation_split"),
    "batch_size=0": (dict(batch_size=0), ValueError, "batch_size"),
    "batch_size=2.0": (dict(batch_size=2.0), TypeError, "batch_size"),
    "validation_batch_size=0": (dict(validation_batch_size=0, validation_split=0.25),
                                ValueError, "validation_batch_size"),
    "steps_per_epoch=0": (dict(steps_per_epoch=0), ValueError, "steps_per_epoch"),
    "validation_steps=-2": (dict(validation_steps=-2), ValueError, "validation_steps"),
    "class_weight=list": (dict(class_weight=[1.0, 2.0, 3.0]), TypeError, "class_weight"),
    "class_weight_key": (dict(class_weight={"a": 1.0}), TypeError, "class_weight"),
    "sample_weight_length": (dict(sample_weight=np.ones(23)), ValueError, "sample_weight"),
    "both_weights": (dict(sample_weight=np.ones(24), class_weight={0: 2.0}), ValueError,
                     "class_weight and sample_weight"),
    "weighted_validation_length": (dict(validation_data=(_data(10)[0], _data(10)[1],
                                                         np.ones(9))),
                                   ValueError, "sample_weight_val"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIT_ARGS))
def test_bad_fit_arguments_raise_before_any_weight_changes(case):
    kwargs, error, name = BAD_FIT_ARGS[case]
    m = _model()
    x, y = _data()
    w0 = m.get_weights()
    steps = []
    cb = cconv.callbacks.LambdaCallback(on_train_batch_begin=lambda b, logs: steps.append(b))
    with pytest.raises(error, match=name):
        m.fit(x, y, verbose=0, callbacks=[cb], **kwargs)
    assert steps == []
    for a, b in zip(m.get_weights(), w0):
        np.testing.assert_array_equal(a, b)


def test_stream_with_y_or_validation_split_is_rejected():
    x, y = _data()
    with pytest.raises(ValueError, match="y must be None"):
        _model().fit(_generator(x, y), y, verbose=0)
    with pytest.raises(ValueError, match="validation_split is only supported for arrays"):
        _model().fit(Batches(x, y), validation_split=0.2, verbose=0)


# ----- NaN losses, checkpoints, predict ----------------------------------------------------------
def test_nan_loss_warns_once_with_epoch_and_step_and_terminate_on_nan_stops():
    x, y = _data()
    y[13] = np.nan                                     # batch index 1 with batch size 8
    batches = []
    cbs = [cconv.callbacks.TerminateOnNaN(),
           cconv.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))]
    with pytest.warns(RuntimeWarning, match=r"epoch 1, step 2 \(batch index 1\)") as rec:
        h = _model().fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=cbs)
    assert batches == [0, 1] and len(h.history["loss"]) == 1
    assert len([r for r in rec if r.category is RuntimeWarning]) == 1
    with pytest.warns(RuntimeWarning, match="epoch 1, step 2") as rec:   # once per fit
        _model().fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    assert len([r for r in rec if r.category is RuntimeWarning]) == 1


def test_model_checkpoint_missing_filepath_key_is_a_clear_error(tmp_path):
    x, y = _data()
    ckpt = cconv.callbacks.ModelCheckpoint(str(tmp_path / "m-{val_loss:.2f}.npz"))
    with pytest.raises(KeyError, match=r"'val_loss'.*available keys: epoch, accuracy, loss"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[ckpt])
    ok = cconv.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.npz"))
    _model().fit(x, y, epochs=1, verbose=0, callbacks=[ok], validation_split=0.25)
    assert len(list(tmp_path.glob("m-01-*.npz"))) == 1


def test_predict_on_zero_samples_returns_an_empty_array():
    m = _model()
    out = m.predict(np.zeros((0, 6, 6, 1), np.float32), verbose=0)
    assert out.shape == (0, 3) and out.dtype == m.dtype
    fresh = cconv.Sequential([L.Flatten(), L.Dense(2)])
    assert fresh.predict(np.zeros((0, 3, 3)), verbose=0).shape == (0, 2)
    assert m.predict(_generator(*_data(16)), steps=1, verbose=0).shape == (8, 3)
    assert m.predict(np.zeros((20, 6, 6, 1)), batch_size=8, steps=2, verbose=0).shape == (16, 3)


# ----- BackupAndRestore -------------------------------------------------------------------------
class Crash(cconv.callbacks.Callback):
    def __init__(self, epoch, batch=1):
        super().__init__()
        self.epoch, self.batch = epoch, batch
        self.current = None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("jit_compile", [True, False])
def test_backup_and_restore_resumes_like_an_uninterrupted_run(tmp_path, jit_compile):
    x, y = _data()
    schedule = cconv.optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.7)
    make = lambda: _compiled(schedule, jit_compile)                  # noqa: E731
    ref, a = make(), make()
    _same_start(ref, a)
    w_start = ref.get_weights()
    kw = dict(batch_size=8, epochs=5, shuffle=False, verbose=0)
    h_ref = ref.fit(x, y, **kw)
    backup = cconv.callbacks.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="simulated crash"):
        a.fit(x, y, callbacks=[backup, Crash(epoch=2)], **kw)        # the third epoch
    assert (tmp_path / "backup" / "backup.npz").exists()
    b = make()                                                       # a fresh process, say
    b.set_weights(w_start)
    epochs = []
    h = b.fit(x, y, callbacks=[backup, cconv.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: epochs.append(e))], **kw)
    assert epochs == [2, 3, 4]
    np.testing.assert_allclose(h.history["loss"], h_ref.history["loss"][2:], rtol=1e-6)
    for u, v in zip(b.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
    assert b.optimizer.iterations == ref.optimizer.iterations
    assert not (tmp_path / "backup").exists()                        # deleted at a normal end


def _compiled(lr, jit_compile):
    m = _model()
    m.compile(optimizer=cconv.optimizers.Adam(lr), loss="categorical_crossentropy",
              metrics=["accuracy"], jit_compile=jit_compile)
    return m


def test_backup_and_restore_arguments_and_keep(tmp_path):
    with pytest.raises(ValueError, match="save_freq"):
        cconv.callbacks.BackupAndRestore(tmp_path, save_freq="batch")
    x, y = _data()
    m = _model()
    m.fit(x, y, epochs=2, verbose=0,
          callbacks=[cconv.callbacks.BackupAndRestore(tmp_path / "k", delete_checkpoint=False)])
    assert (tmp_path / "k" / "backup.npz").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = m.fit(x, y, epochs=2, verbose=0,
                  callbacks=[cconv.callbacks.BackupAndRestore(tmp_path / "k")])
    assert h.history == {}                      # both epochs were done: nothing to resume
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("bad, error, match", [
    (["nope"], ValueError, "Unknown metric 'nope'"),
    ([3], TypeError, "metric must be a name"),
])
def test_bad_weighted_metrics_are_refused_at_compile(bad, error, match):
    m = cconv.Sequential([cconv.Input((4,)), L.Dense(3, activation="softmax")])
    with pytest.raises(error, match=match):
        m.compile(optimizer="sgd", loss="categorical_crossentropy", weighted_metrics=bad)
