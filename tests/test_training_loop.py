"""The training loop's promises (issue 30): metric objects start from nothing at every epoch,
evaluate and validation; overridden train/test/predict steps are refused, not ignored;
``steps_per_epoch`` continues a pass across epochs as Keras 3 does; a source that refills one
buffer cannot corrupt batches read ahead; callbacks get Keras's hooks and logs dicts in fit,
evaluate and predict (checked against Keras 3)."""
import warnings

import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import keras_or_skip as _keras
from ._helpers import keras_pair as _pair
from ._helpers import small_data as data
from ._helpers import small_model
from ._helpers import tiny_data as _data


# ----- metric objects are reset (item 2) ---------------------------------------------------------
def _regression_model():
    m = cconv.Sequential([cconv.Input((4,)), L.Dense(1)])
    m.compile("sgd", "mse", metrics=[cconv.metrics.MeanAbsoluteError(), "mae"])
    return m


def test_a_metric_object_restarts_at_every_evaluate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.uniform(0, 20, size=(40, 1)).astype(np.float32)
    m = _regression_model()
    want = float(np.mean(np.abs(m.predict(x, verbose=0).astype(np.float64) - y)))
    for xs, ys in ((x, y), (x[:10], y[:10] + 100), (x, y)):
        loss, mae_obj, mae_str = m.evaluate(xs, ys, batch_size=8, verbose=0)
        assert mae_obj == mae_str
    np.testing.assert_allclose(mae_obj, want, rtol=1e-6)


def test_a_metric_object_restarts_at_every_train_on_batch():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.uniform(0, 20, size=(8, 1)).astype(np.float32)
    m = _regression_model()
    for _ in range(3):
        _, mae_obj, mae_str = m.train_on_batch(x, y)
        assert mae_obj == mae_str


def test_validation_metrics_do_not_carry_training_state():
    x, y, _ = data(48)
    m = small_model(metrics=[cconv.metrics.CategoricalAccuracy(name="acc_obj"),
                             cconv.metrics.Precision(name="prec_obj"),
                             "categorical_accuracy", "precision"])
    xv, yv = x[32:], y[32:]
    h = m.fit(x[:32], y[:32], batch_size=8, epochs=1, verbose=0, validation_data=(xv, yv))
    logs = h.history
    assert logs["val_acc_obj"] == logs["val_categorical_accuracy"]
    assert logs["val_prec_obj"] == logs["val_precision"]
    assert logs["acc_obj"] == logs["categorical_accuracy"]
    again = m.evaluate(xv, yv, batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(again["acc_obj"], logs["val_acc_obj"][0], rtol=1e-12)
    np.testing.assert_allclose(again["prec_obj"], logs["val_prec_obj"][0], rtol=1e-12)


def test_metric_sums_are_accumulated_in_float64():
    """float32 sums lose the 1 in 1e8 + 1; the metric's result keeps it."""
    y = np.array([[1e8], [1.0]], dtype=np.float32)
    mae = cconv.metrics.MeanAbsoluteError()
    mae.update_state(y, np.zeros_like(y))
    assert mae.result() == (1e8 + 1.0) / 2


# ----- overridden train_step, test_step and predict_step run (item 3) ----------------------------
# (their behaviour: tests/test_custom_training.py)
class _TrainStep(cconv.Sequential):
    calls = 0

    def train_step(self, data):
        type(self).calls += 1
        return {}


class _TestStep(cconv.Sequential):
    def test_step(self, data):
        return {}


class _PredictStep(cconv.Sequential):
    def predict_step(self, data):
        return data


def _stack():
    return [cconv.Input((4,)), L.Dense(2)]


def _xy(n=16):
    rng = np.random.default_rng(2)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)


def test_an_overridden_predict_step_runs():
    m = _PredictStep(_stack())
    x, _ = _xy()
    np.testing.assert_array_equal(m.predict(x, batch_size=5, verbose=0), x)
    np.testing.assert_array_equal(m.predict_on_batch(x), x)


def test_the_distributed_loop_refuses_an_overridden_step():
    m = _TrainStep(_stack())
    with pytest.raises(NotImplementedError, match=r"_TrainStep overrides train_step\(\)"):
        m._run_epochs(None, [], None, None, None)


def test_steps_that_are_not_used_are_not_refused():
    x, y = _xy()
    m = _TestStep(_stack())             # fit without validation runs no test step
    m.compile("sgd", "mse")
    m.fit(x, y, verbose=0)
    m.predict(x, verbose=0)


def test_overridden_train_and_test_steps_run():
    x, y = _xy()
    _TrainStep.calls = 0
    m = _TrainStep(_stack())
    m.compile("sgd", "mse")
    before = m.get_weights()
    history = m.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert _TrainStep.calls == 4 and history.history == {}
    for a, b in zip(m.get_weights(), before):        # this train_step changes nothing
        np.testing.assert_array_equal(a, b)
    m = _TestStep(_stack())
    m.compile("sgd", "mse")
    assert m.evaluate(x, y, verbose=0, return_dict=True) == {}


def test_a_functional_model_subclass_runs_its_train_step():
    class MyModel(cconv.Model):
        def train_step(self, data):
            x, y = data
            return {"samples": len(x)}

    inp = cconv.Input((4,))
    m = MyModel(inp, L.Dense(2)(inp))
    m.compile("sgd", "mse")
    x, y = _xy()
    assert m.fit(x, y, batch_size=16, verbose=0).history == {"samples": [16.0]}


# ----- steps_per_epoch continues a pass (item 6) -------------------------------------------------
class _Recorder(cconv.callbacks.Callback):
    """Appends ``("trained", epoch, batch index)`` to ``events`` after each trained batch."""

    def __init__(self, events):
        super().__init__()
        self.events = events

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("trained", self.epoch, batch))


def _batches_per_epoch(events):
    out = {}
    for e in events:
        if e[0] == "trained":
            out[e[1]] = out.get(e[1], 0) + 1
    return [out[k] for k in sorted(out)]


@pytest.mark.tensorflow
def test_steps_per_epoch_over_arrays_trains_every_epoch_like_keras():
    keras = _keras()
    km, cm = _pair(keras)
    for m, mod in ((km, keras), (cm, cconv)):
        m.compile(optimizer=mod.optimizers.SGD(0.05), loss="categorical_crossentropy")
    x, y = _data()                         # 24 samples: 6 batches of 4
    kw = dict(batch_size=4, steps_per_epoch=4, epochs=3, shuffle=False, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hk = km.fit(x, y, **kw)
    events = []
    with pytest.warns(UserWarning, match="ran out of data.*after 2 of the 4 steps"):
        hc = cm.fit(x, y, callbacks=[_Recorder(events)], **kw)
    assert _batches_per_epoch(events) == [4, 2, 4]      # Keras: a short epoch, then a new pass
    assert len(hc.history["loss"]) == 3
    np.testing.assert_allclose(hc.history["loss"], hk.history["loss"], rtol=1e-4)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


class _Seq:
    """Six batches of one sample; records reads and ``on_epoch_end`` in ``events``."""

    def __init__(self, x, y, events):
        self.x, self.y, self.events = x, y, events

    def __len__(self):
        return 6

    def __getitem__(self, i):
        self.events.append(("read", i))
        return self.x[i:i + 1], self.y[i:i + 1]

    def on_epoch_end(self):
        self.events.append(("end",))


def test_steps_per_epoch_over_a_sequence_uses_every_batch_and_ends_passes_after_training():
    x, y, _ = data(6)
    m = small_model()
    events = []
    seq = _Seq(x, y, events)
    with pytest.warns(UserWarning, match="ran out of data"):
        m.fit(seq, steps_per_epoch=4, epochs=5, shuffle=False, verbose=0,
              callbacks=[_Recorder(events)])
    assert _batches_per_epoch(events) == [4, 2, 4, 2, 4]
    reads = [e[1] for e in events if e[0] == "read"]
    assert set(reads[:7]) == set(range(6))                  # batches 4 and 5 are used
    trained = [e for e in events if e[0] == "trained"]
    ends = [i for i, e in enumerate(events) if e == ("end",)]
    assert len(ends) == 2                                   # two whole passes
    for end in ends:        # after the pass's last batch has trained, before the next read
        assert events[end - 1] == ("trained", events[end - 1][1], 1)
        assert events.index(trained[0]) < end
        later_reads = [e for e in events[end + 1:] if e[0] == "read"]
        assert not later_reads or later_reads[0] == ("read", 0)


def test_a_sequence_without_steps_ends_each_pass_after_its_last_batch_trained():
    x, y, _ = data(6)
    m = small_model()
    events = []
    m.fit(_Seq(x, y, events), epochs=2, shuffle=False, verbose=0,
          callbacks=[_Recorder(events)])
    ends = [i for i, e in enumerate(events) if e == ("end",)]
    assert len(ends) == 2
    for end in ends:
        assert events[end - 1][0] == "trained" and events[end - 1][2] == 5


def test_validation_steps_evaluate_the_same_first_batches_every_epoch_as_keras():
    x, y, _ = data(48)
    m = small_model(compile=False)
    m.compile(cconv.optimizers.SGD(0.0), "categorical_crossentropy",    # weights stay put
              metrics=["categorical_accuracy"])
    h = m.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_data=(x, y),
              validation_steps=2)
    first = m.evaluate(x[:16], y[:16], batch_size=8, verbose=0)
    for k, v in zip(["val_loss", "val_categorical_accuracy"], first):
        np.testing.assert_allclose(h.history[k], [v] * 3, rtol=1e-6)


# ----- a source refilling one buffer (item 7) ----------------------------------------------------
def _refilling(x, y, batch, with_y=True):
    """Yields the same two arrays every time (a view of them for a short last batch),
    refilled with the next batch."""
    xb = np.empty((batch,) + x.shape[1:], x.dtype)
    yb = np.empty((batch,) + y.shape[1:], y.dtype)
    for lo in range(0, len(x), batch):
        k = min(batch, len(x) - lo)
        xs, ys = (xb, yb) if k == batch else (xb[:k], yb[:k])
        xs[...], ys[...] = x[lo:lo + k], y[lo:lo + k]
        yield (xs, ys) if with_y else xs


def _fresh(x, y, batch):
    for lo in range(0, len(x), batch):
        yield x[lo:lo + batch].copy(), y[lo:lo + batch].copy()


def test_a_generator_refilling_one_buffer_trains_like_fresh_batches():
    x, y, _ = data(160)
    a, b = small_model(), small_model()
    b.set_weights(a.get_weights())
    ha = a.fit(_fresh(x, y, 8), epochs=1, verbose=0)
    hb = b.fit(_refilling(x, y, 8), epochs=1, verbose=0)
    assert hb.history["loss"] == ha.history["loss"]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_a_generator_refilling_one_buffer_predicts_like_the_arrays():
    x, y, _ = data(160)
    m = small_model()
    want = m.predict(x, batch_size=8, verbose=0)
    got = m.predict(_refilling(x, y, 8, with_y=False), verbose=0)
    np.testing.assert_array_equal(got, want)


def test_a_sequence_returning_one_buffer_evaluates_like_the_arrays():
    x, y, _ = data(64)

    class OneBuffer:
        xb, yb = np.empty((8,) + x.shape[1:], x.dtype), np.empty((8, 4), y.dtype)

        def __len__(self):
            return 8

        def __getitem__(self, i):
            self.xb[...], self.yb[...] = x[8 * i:8 * i + 8], y[8 * i:8 * i + 8]
            return self.xb, self.yb

    m = small_model()
    want = m.evaluate(x, y, batch_size=8, verbose=0)
    np.testing.assert_allclose(m.evaluate(OneBuffer(), verbose=0), want, rtol=1e-6)


# ----- callbacks: Keras's hooks and logs (callbacks bullet) --------------------------------------
_HOOKS = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
          "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
          "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
          "on_predict_batch_begin", "on_predict_batch_end"]


def _hook_recorder(base):
    """A callback class (of ``base``) recording ``(hook, index, logs)`` for every hook."""
    class Rec(base):
        def __init__(self):
            super().__init__()
            self.events = []

    def make(hook):
        indexed = "batch" in hook or "epoch" in hook

        def record(self, *args, **kwargs):
            index = args[0] if indexed else None
            logs = kwargs["logs"] if "logs" in kwargs else args[-1] if len(args) > indexed \
                else "missing"
            self.events.append((hook, index, logs))
        return record

    for hook in _HOOKS:
        setattr(Rec, hook, make(hook))
    return Rec


def _comparable(events):
    """Hook, index and log keys; logs must be dicts."""
    out = []
    for hook, index, logs in events:
        assert isinstance(logs, dict), (hook, logs)
        out.append((hook, index, sorted(logs)))
    return out


@pytest.mark.tensorflow
def test_callbacks_get_keras_hooks_and_logs_in_fit_evaluate_and_predict():
    keras = _keras()
    km, cm = _pair(keras)
    for m, mod in ((km, keras), (cm, cconv)):
        m.compile(optimizer=mod.optimizers.SGD(0.05), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = _data()
    recs = []
    for m, mod in ((km, keras), (cm, cconv)):
        rec = _hook_recorder(mod.callbacks.Callback)()
        m.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
              validation_data=(x[:10], y[:10]), callbacks=[rec])
        m.evaluate(x, y, batch_size=16, verbose=0, callbacks=[rec])
        m.predict(x, batch_size=16, verbose=0, callbacks=[rec])
        recs.append(rec.events)
    ke, ce = recs
    assert _comparable(ce) == _comparable(ke)
    for (hook, _, kl), (_, _, cl) in zip(ke, ce):
        for k, v in kl.items():
            if k == "outputs":
                np.testing.assert_allclose(cl[k], np.asarray(v), rtol=1e-4, atol=1e-6)
            else:
                np.testing.assert_allclose(cl[k], float(v), rtol=1e-4, atol=1e-6,
                                           err_msg=f"{hook} {k}")


def test_predict_callbacks_see_each_batch_of_arrays_and_streams():
    x, y, _ = data(20)
    m = small_model()
    want = m.predict(x, batch_size=8, verbose=0)
    Rec = _hook_recorder(cconv.callbacks.Callback)
    for source in (x, _refilling(x, y, 8, with_y=False)):
        rec = Rec()
        got = m.predict(source, batch_size=8, verbose=0, callbacks=rec)   # one callback: ok
        np.testing.assert_array_equal(got, want)
        hooks = [e[0] for e in rec.events]
        assert hooks == ["on_predict_begin"] + ["on_predict_batch_begin",
                                                "on_predict_batch_end"] * 3 + ["on_predict_end"]
        outs = [e[2]["outputs"] for e in rec.events if e[0] == "on_predict_batch_end"]
        np.testing.assert_array_equal(np.concatenate(outs), want)
    rec = Rec()
    m.predict(x[:3], verbose=0, callbacks=[rec])        # one batch still calls the hooks
    assert [e[0] for e in rec.events] == ["on_predict_begin", "on_predict_batch_begin",
                                          "on_predict_batch_end", "on_predict_end"]


def test_evaluate_callbacks_end_with_the_returned_results():
    x, y, _ = data(20)
    m = small_model(metrics=["categorical_accuracy"])
    rec = _hook_recorder(cconv.callbacks.Callback)()
    got = m.evaluate(x, y, batch_size=8, verbose=0, callbacks=[rec], return_dict=True)
    assert rec.events[0] == ("on_test_begin", None, {})
    assert rec.events[-1] == ("on_test_end", None, got)
    assert [e[1] for e in rec.events if e[0] == "on_test_batch_end"] == [0, 1, 2]


def test_keras_on_batch_aliases_are_called_during_fit():
    seen = []

    class Old(cconv.callbacks.Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, sorted(logs)))

    x, y, _ = data(16)
    small_model().fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[Old()])
    logs = ["accuracy", "loss"]
    assert seen == [("begin", 0), ("end", 0, logs), ("begin", 1), ("end", 1, logs)]


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
@pytest.mark.parametrize("bad,match", [("x", r"callbacks must be a list.*str"),
                                       ([object()], r"callbacks\[0\] must be a cconv")])
def test_bad_callbacks_are_type_errors(method, bad, match):
    m = small_model()
    x, y, _ = data(8)
    args = (x,) if method == "predict" else (x, y)
    with pytest.raises(TypeError, match=rf"{method}: {match}"):
        getattr(m, method)(*args, verbose=0, callbacks=bad)
