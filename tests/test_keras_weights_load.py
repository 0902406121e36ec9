"""model.load_weights("x.keras") reads the weights of a Keras 3 archive, as Keras 3 does
(keras-io's ConvMixer: ModelCheckpoint("checkpoint.keras") then model.load_weights of it)."""
import numpy as np
import pytest

import cconv
from cconv import layers as L

pytest.importorskip("h5py")


def _model(seed):
    init = cconv.initializers.GlorotUniform(seed=seed)
    return cconv.Sequential([cconv.Input((6, 6, 1)), L.Conv2D(2, 3, kernel_initializer=init),
                             L.BatchNormalization(), L.Flatten(),
                             L.Dense(3, kernel_initializer=init)])


def test_load_weights_of_a_cconv_keras_file(tmp_path):
    a, b = _model(0), _model(1)
    a.compile("adam", "mse")
    a.save(tmp_path / "ckpt.keras")
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 1)).astype(np.float32)
    assert not np.array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
    b.load_weights(tmp_path / "ckpt.keras")
    np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        b.save_weights(tmp_path / "w.keras")          # Keras 3 refuses it too


def test_load_weights_of_a_model_checkpoint_keras_file(tmp_path):
    m = _model(0)
    m.compile("adam", "mse")
    x = np.random.default_rng(1).normal(size=(16, 6, 6, 1)).astype(np.float32)
    y = np.random.default_rng(2).normal(size=(16, 3)).astype(np.float32)
    path = str(tmp_path / "checkpoint.keras")
    m.fit(x, y, epochs=2, verbose=0, validation_data=(x, y),
          callbacks=[cconv.callbacks.ModelCheckpoint(path, monitor="val_loss",
                                                     save_best_only=True)])
    fresh = _model(5)
    fresh.load_weights(path)
    best = cconv.load_model(path)
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), best.predict(x, verbose=0))


def test_weights_that_do_not_fit_leave_the_model_as_it_was(tmp_path):
    _model(0).save(tmp_path / "m.keras")
    other = cconv.Sequential([cconv.Input((6, 6, 1)), L.Conv2D(5, 3), L.BatchNormalization(),
                              L.Flatten(), L.Dense(3)])
    before = other.get_weights()
    with pytest.raises(ValueError, match="m.keras"):
        other.load_weights(tmp_path / "m.keras")
    for a, b in zip(before, other.get_weights()):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "junk.keras").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a Keras .keras archive"):
        other.load_weights(tmp_path / "junk.keras")
    with pytest.raises(FileNotFoundError):
        other.load_weights(tmp_path / "none.keras")


def test_load_weights_of_a_keras_written_archive(tmp_path):
    pytest.importorskip("tensorflow")
    import keras
    km = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3),
                           keras.layers.BatchNormalization(), keras.layers.Flatten(),
                           keras.layers.Dense(3)])
    km.save(tmp_path / "k.keras")
    cm = _model(3)
    cm.load_weights(tmp_path / "k.keras")
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 1)).astype(np.float32)
    np.testing.assert_allclose(cm.predict(x, verbose=0), km.predict(x, verbose=0), atol=1e-5)
