"""cconv.utils.PyDataset / Sequence (Keras 3's keras.utils.PyDataset) in fit, evaluate and
predict, and callable metric objects (issue 32 item 5)."""
import numpy as np
import pytest

import cconv
from cconv import layers as L
from cconv.utils import PyDataset, Sequence


class Batches(PyDataset):
    def __init__(self, x, y=None, batch_size=8, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.begins = self.ends = 0

    def __len__(self):
        return int(np.ceil(len(self.x) / self.batch_size))

    def __getitem__(self, i):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[s] if self.y is None else (self.x[s], self.y[s])

    def on_epoch_begin(self):
        self.begins += 1

    def on_epoch_end(self):
        self.ends += 1


def _data(n=20):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x @ rng.normal(size=(4, 2))).astype(np.float32)


def _model():
    m = cconv.Sequential([cconv.Input((4,)), L.Dense(2, kernel_initializer=
                                                     cconv.initializers.GlorotUniform(seed=1))])
    m.compile("sgd", "mse", metrics=["mae"])
    return m


def test_fit_evaluate_predict_take_a_pydataset_and_agree_with_arrays():
    x, y = _data()
    ds = Batches(x, y, workers=2, use_multiprocessing=False, max_queue_size=4)
    assert (ds.workers, ds.use_multiprocessing, ds.max_queue_size) == (2, False, 4)
    a, b = _model(), _model()
    ha = a.fit(ds, epochs=3, shuffle=False, verbose=0)
    hb = b.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    assert ds.begins == 3 and ds.ends == 3
    np.testing.assert_allclose(a.evaluate(ds, verbose=0), b.evaluate(x, y, verbose=0),
                               rtol=1e-6)
    np.testing.assert_allclose(a.predict(Batches(x), verbose=0), b.predict(x, verbose=0),
                               rtol=1e-6)


def test_sequence_is_pydataset_and_num_batches_alone_works():
    assert Sequence is PyDataset

    class ByNumBatches(Sequence):      # no super().__init__, no __len__: Keras allows both
        def __init__(self, x, y):
            self.x, self.y = x, y

        @property
        def num_batches(self):
            return 2

        def __getitem__(self, i):
            return self.x[i * 10:(i + 1) * 10], self.y[i * 10:(i + 1) * 10]

    x, y = _data()
    ds = ByNumBatches(x, y)
    assert len(ds) == 2 and ds.workers == 1 and ds.max_queue_size == 10
    h = _model().fit(ds, epochs=2, shuffle=True, verbose=0)
    assert len(h.history["loss"]) == 2


def test_a_pydataset_without_len_or_getitem_says_what_to_define():
    class Empty(PyDataset):
        pass
    with pytest.raises(NotImplementedError, match="__len__"):
        len(Empty())
    with pytest.raises(NotImplementedError, match="__getitem__"):
        Empty()[0]


@pytest.mark.parametrize("kwargs,arg", [({"workers": 0}, "workers"),
                                        ({"workers": 1.5}, "workers"),
                                        ({"max_queue_size": 0}, "max_queue_size"),
                                        ({"use_multiprocessing": "yes"}, "use_multiprocessing")])
def test_bad_constructor_arguments_are_named(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        Batches(np.zeros((4, 4)), **kwargs)


def test_agrees_with_keras_pydataset():
    keras = pytest.importorskip("keras")
    x, y = _data()

    class KBatches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8]

    km = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    km.compile("sgd", "mse")
    cm = _model()
    cm.set_weights(km.get_weights())
    np.testing.assert_allclose(cm.evaluate(Batches(x, y), verbose=0)[0],
                               km.evaluate(KBatches(), verbose=0), rtol=1e-5)


# ----- callable metric objects ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["MeanAbsoluteError", "MeanSquaredError", "BinaryAccuracy",
                                  "CategoricalAccuracy", "Precision", "Recall", "AUC"])
def test_calling_a_metric_updates_it_and_returns_the_result_as_keras(name):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(1)
    batches = [(np.eye(3, dtype=np.float32)[rng.integers(0, 3, 6)],
                rng.random((6, 3)).astype(np.float32)) for _ in range(2)]
    ours, theirs = getattr(cconv.metrics, name)(), getattr(keras.metrics, name)()
    for yt, yp in batches:
        np.testing.assert_allclose(ours(yt, yp), float(theirs(yt, yp)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.result(), float(theirs.result()), rtol=1e-5, atol=1e-7)
    ours.reset_state()
    theirs.reset_state()
    yt, yp = batches[0]
    w = np.arange(6, dtype=np.float32)
    np.testing.assert_allclose(ours(yt, yp, sample_weight=w),
                               float(theirs(yt, yp, sample_weight=w)), rtol=1e-5, atol=1e-7)


def test_calling_a_mean_metric():
    m = cconv.metrics.Mean()
    assert m([1.0, 2.0, 3.0]) == 2.0
    assert m([5.0]) == 2.75
    m.reset_state()
    assert m.result() == 0.0


class Slow(Batches):
    """Batches that take a while to read, recording the reading threads."""

    def __getitem__(self, i):
        import threading
        import time
        time.sleep(0.02)
        self.threads.add(threading.get_ident())
        if i == self.fail_at:
            raise RuntimeError(f"cannot read batch {i}")
        return super().__getitem__(i)


@pytest.mark.parametrize("shuffle", [False, True])
def test_workers_read_batches_on_several_threads_in_order(shuffle):
    x, y = _data(96)
    results = []
    for workers in (1, 3):
        ds = Slow(x, y, batch_size=8, workers=workers, max_queue_size=4)
        ds.threads, ds.fail_at = set(), None
        cconv.utils.set_random_seed(0)
        m = _model()
        h = m.fit(ds, epochs=2, shuffle=shuffle, verbose=0)
        results.append((h.history["loss"], m.get_weights(), len(ds.threads)))
        assert ds.ends == 2
    (loss1, w1, threads1), (loss3, w3, threads3) = results
    assert loss1 == loss3
    for a, b in zip(w1, w3):
        np.testing.assert_array_equal(a, b)
    assert threads3 > 1


def test_an_error_in_a_worker_reaches_fit():
    x, y = _data(64)
    ds = Slow(x, y, batch_size=8, workers=2)
    ds.threads, ds.fail_at = set(), 5
    with pytest.raises(RuntimeError, match="cannot read batch 5"):
        _model().fit(ds, epochs=1, shuffle=False, verbose=0)
