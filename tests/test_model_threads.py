"""Models across threads and processes: concurrent ``predict`` on one model is exact, and a
model pickles (with its compiled optimizer state) for multiprocessing."""
import multiprocessing
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import cconv
from cconv import layers as L


def _lenet():
    return cconv.models.lenet5(input_shape=(28, 28, 1), classes=10, compile=True)


def _small_cnn():
    model = cconv.Sequential([
        L.Input((12, 12, 3)),
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(4, 3, activation="relu"),
        L.AveragePooling2D(2) if hasattr(L, "AveragePooling2D") else L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(5, activation="softmax"),
    ])
    model.build()
    return model


@pytest.mark.parametrize("make", [_lenet, _small_cnn], ids=["lenet5", "small_cnn"])
def test_predict_from_threads_is_exact(make):
    model = make()
    shape = model.input_shape[1:]
    rng = np.random.default_rng(0)
    data = [
        rng.standard_normal((n,) + tuple(shape)).astype(model.dtype) for n in (1, 3, 7, 16, 40, 1)
    ]
    expected = [model.predict(x, verbose=0) for x in data]
    errors = []
    barrier = threading.Barrier(len(data))

    def work(i):
        try:
            barrier.wait()
            for _ in range(10):
                np.testing.assert_array_equal(model.predict(data[i], verbose=0), expected[i])
                np.testing.assert_array_equal(model.predict_on_batch(data[i]), expected[i])
        except BaseException as exc:  # reported in the main thread
            errors.append((i, exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(data))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _predict_in_child(blob, x):
    model = pickle.loads(blob)
    return model.predict(x, verbose=0)


def test_model_pickles_for_multiprocessing():
    model = _lenet()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 28, 28, 1)).astype(model.dtype)
    y = np.eye(10, dtype=model.dtype)[rng.integers(0, 10, 4)]
    model.train_on_batch(x, y)            # optimizer state exists
    want = model.predict(x, verbose=0)
    blob = pickle.dumps(model)
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.predict(x, verbose=0), want)
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # the unpickled model keeps training exactly like the original
    model.train_on_batch(x, y)
    again.train_on_batch(x, y)
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # and it runs in a fresh process (spawn: nothing inherited)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        got = pool.submit(_predict_in_child, pickle.dumps(model), x).result(timeout=300)
    np.testing.assert_array_equal(got, model.predict(x, verbose=0))
