"""The shared epoch loop (cconv.trainers.epoch_iterator), the Trainer base class and saving
through a model's public API."""

import json

import numpy as np
import pytest

import cconv
from cconv import layers as L
from cconv.trainers.epoch_iterator import DEFAULT_BATCH_SIZE, ArrayDataAdapter, EpochIterator
from cconv.trainers.trainer import Trainer

from ._helpers import small_data as data
from ._helpers import small_model


def test_array_adapter_batches_in_the_shuffled_order():
    x = np.arange(10.0)[:, None]
    y = np.arange(10)[:, None] * 2
    adapter = ArrayDataAdapter(x, y, batch_size=4, shuffle=True)
    assert (adapter.num_batches, adapter.num_samples) == (3, 10)
    np.random.seed(5)
    want = np.random.permutation(10)
    np.random.seed(5)
    it = EpochIterator(adapter, initial_epoch=1, epochs=3)
    assert list(it.epochs()) == [1, 2]
    got = []
    for step, (xb, yb) in it.enumerate_epoch():
        assert len(xb) == (4 if step < 2 else 2)
        np.testing.assert_array_equal(yb, 2 * xb)
        got += list(xb[:, 0])
    np.testing.assert_array_equal(got, want)


def test_array_adapter_without_shuffle_yields_views_and_no_targets():
    x = np.zeros((5, 2))
    batches = list(ArrayDataAdapter(x, None, batch_size=2).get_numpy_iterator())
    assert [len(b[0]) for b in batches] == [2, 2, 1]
    assert all(b[1] is None and np.shares_memory(b[0], x) for b in batches)


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-3, ValueError), (True, TypeError),
                                     (2.5, TypeError)])
def test_bad_batch_size_is_named(method, bad, exc):
    m = small_model()
    x, y, _ = data(8)
    args = (x,) if method == "predict" else (x, y)
    with pytest.raises(exc, match="batch_size"):
        getattr(m, method)(*args, batch_size=bad, verbose=0)


def test_default_batch_size_is_32():
    m = small_model()
    x, y, _ = data(70)
    hist = m.fit(x, y, epochs=1, verbose=0)
    assert DEFAULT_BATCH_SIZE == 32 and hist.params["steps"] == 3


def test_sequential_is_a_trainer_with_its_compile_config():
    m = small_model(loss="mse", metrics=["mae"])
    assert isinstance(m, Trainer)
    cfg = m.get_compile_config()
    assert cfg["loss"]["class_name"] == "MeanSquaredError" and cfg["metrics"] == ["mae"]
    clone = cconv.Sequential.from_config(m.get_config())
    clone.compile_from_config(json.loads(json.dumps(cfg)))
    assert clone.metrics_names == ["loss", "mae"]
    assert type(clone.optimizer) is type(m.optimizer)
    assert small_model(compile=False).get_compile_config() is None


def test_files_without_class_name_still_load(tmp_path):
    """Model files written before the class name was stored load as Sequential."""
    m = small_model()
    x, y, _ = data(16)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "m.npz"
    m.save(path)
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("__cconv__")))
    assert meta.pop("class_name") == "Sequential"
    old = tmp_path / "old.npz"
    np.savez(old, __cconv__=np.array(json.dumps(meta)), **arrays)
    loaded = cconv.load_model(old)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), m.predict(x, verbose=0))
    assert loaded.optimizer.get_state()[0] == m.optimizer.get_state()[0]


def test_unknown_model_class_is_refused(tmp_path):
    m = small_model()
    path = tmp_path / "m.npz"
    m.save(path)
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("__cconv__")))
    meta["class_name"] = "Graph"
    np.savez(path, __cconv__=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(ValueError, match="'Graph'.*Sequential"):
        cconv.load_model(path)
    loaded = cconv.load_model(path, custom_objects={"Graph": cconv.Sequential})
    assert isinstance(loaded, cconv.Sequential)


def test_stop_training_mid_epoch_stops_at_once():
    class StopAfter2(cconv.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.last = batch
            if batch == 1:
                self.model.stop_training = True

    m = small_model()
    x, y, _ = data(40)
    cb = StopAfter2()
    hist = m.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[cb])
    assert cb.last == 1 and len(hist.history["loss"]) == 1


def test_a_model_without_trainable_layers_still_runs():
    m = cconv.Sequential([cconv.Input((4,)), L.Softmax()])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]]
    assert np.isfinite(m.fit(x, y, epochs=1, verbose=0).history["loss"][0])
