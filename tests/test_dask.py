"""Batch inference on Dask: cconv.dask.predict equals in-process predict, and
models survive pickling (the way they travel to Dask workers)."""
import os
import pickle

import numpy as np
import pytest

import cconv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bn_model():
    L = cconv.layers
    model = cconv.Sequential([
        cconv.Input((8, 8, 2)),
        L.Conv2D(4, 3, padding="same", kernel_initializer=cconv.initializers.HeNormal(seed=0)),
        L.BatchNormalization(),
        L.Activation("relu"),
        L.AveragePooling2D(2),
        L.Flatten(),
        L.Dense(3, activation="softmax", kernel_initializer=cconv.initializers.HeNormal(seed=1)),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("make", [cconv.models.lenet5, cconv.models.tutorial_cnn, _bn_model])
def test_trained_model_pickles(make, rng):
    model = make()
    shape = model.input_shape[1:]
    x = rng.random((6,) + shape, dtype=np.float32)
    classes = model.output_shape[-1]
    y = rng.integers(0, classes, 6)
    if model.loss.__class__.__name__ == "CategoricalCrossentropy":
        y = np.eye(classes, dtype=np.float32)[y]
    model.train_on_batch(x, y)                 # optimizer state, packed buffers, caches
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    # Training goes on identically from the clone (optimizer state travelled too).
    model.train_on_batch(x, y)
    clone.train_on_batch(x, y)
    for a, b in zip(clone.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_predict_local_scheduler(rng):
    da = pytest.importorskip(
        "dask.array", reason="dask is not installed (pip install 'dask[distributed]')"
    )
    import cconv.dask
    model = _bn_model()
    x = rng.random((50, 8, 8, 2), dtype=np.float32)
    xd = da.from_array(x, chunks=(16, 8, 4, 2))         # split along width too: merged first
    y = cconv.dask.predict(model, xd, batch_size=7)
    assert y.shape == (50, 3) and y.dtype == np.float32 and y.chunks[0] == (16, 16, 16, 2)
    np.testing.assert_array_equal(y.compute(scheduler="sync"), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="expects inputs of shape"):
        cconv.dask.predict(model, da.zeros((4, 8, 8, 3), chunks=2))


def test_predict_on_local_cluster(rng, monkeypatch):
    pytest.importorskip(
        "dask.array", reason="dask is not installed (pip install 'dask[distributed]')"
    )
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                                            "(pip install 'dask[distributed]')")
    import dask.array as da

    import cconv.dask
    # Worker processes must import this checkout's cconv even when it is not installed.
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    model = cconv.models.lenet5()
    x = rng.random((200, 28, 28, 1), dtype=np.float32)
    expected = model.predict(x, verbose=0)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        y = cconv.dask.predict(model, da.from_array(x, chunks=50), batch_size=32, num_threads=1)
        got = y.compute()
        assert len(client.scheduler_info()["workers"]) == 2
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_predict_builds_an_unbuilt_model_and_refuses_several_outputs(rng):
    pytest.importorskip(
        "dask.array", reason="dask is not installed (pip install 'dask[distributed]')"
    )
    import cconv.dask
    L = cconv.layers
    model = cconv.Sequential([L.Flatten(), L.Dense(3, kernel_initializer="ones")])
    assert not model.built
    x = rng.random((10, 4, 4, 1), dtype=np.float32)
    y = cconv.dask.predict(model, x, batch_size=4)        # built from x's sample shape
    assert model.built and model.input_shape == (None, 4, 4, 1)
    np.testing.assert_array_equal(y.compute(scheduler="sync"), model.predict(x, verbose=0))
    inp = cconv.Input((4,))
    two = cconv.Model(inp, [L.Dense(2)(inp), L.Dense(1)(inp)])
    with pytest.raises(ValueError, match="one input and one output; this model's output shapes"):
        cconv.dask.predict(two, np.zeros((3, 4), np.float32))
