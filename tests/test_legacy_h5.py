"""Writing legacy Keras .h5 model files (issue 32 item 5): Keras 2's layout, written through
cconv.saving.fileio.atomic_write, read back by cconv and by Keras 3; ModelCheckpoint("x.h5")."""
import json
import os

import numpy as np
import pytest

import cconv
from cconv import layers as L

h5py = pytest.importorskip("h5py")


def _sequential():
    m = cconv.Sequential([
        cconv.Input((8, 8, 1)),
        L.Conv2D(4, 3, activation="relu", kernel_initializer=cconv.initializers.HeNormal(seed=0)),
        L.BatchNormalization(),
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dropout(0.2, seed=1),
        L.Dense(3, activation="softmax",
                kernel_initializer=cconv.initializers.GlorotUniform(seed=1)),
    ])
    m.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    return m


def _functional():
    inp = cconv.Input((6, 6, 2))
    a = L.Conv2D(3, 3, padding="same", activation="relu",
                 kernel_initializer=cconv.initializers.HeNormal(seed=2))(inp)
    b = L.Conv2D(3, 1, kernel_initializer=cconv.initializers.HeNormal(seed=3))(inp)
    x = L.Add()([a, b])
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(2, kernel_initializer=cconv.initializers.GlorotUniform(seed=4))(x)
    return cconv.Model(inp, out)


def _data(shape, classes=3, n=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n,) + shape).astype(np.float32)
    return x, np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]


def test_the_file_has_keras_2s_layout(tmp_path):
    m = _sequential()
    x, y = _data((8, 8, 1))
    m.fit(x, y, epochs=1, verbose=0)
    m.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        config = json.loads(f.attrs["model_config"])
        assert config["class_name"] == "Sequential"
        assert json.loads(f.attrs["training_config"])["optimizer_config"]["class_name"] == "Adam"
        group = f["model_weights"]
        names = [n.decode() for n in group.attrs["layer_names"]]
        assert names == [layer.name for layer in m.layers]
        bn = m.layers[1]
        wn = [n.decode() for n in group[bn.name].attrs["weight_names"]]
        assert wn == [f"{bn.name}/{w}:0" for w in ("gamma", "beta", "moving_mean",
                                                     "moving_variance")]
        for name, w in zip(wn, bn.get_weights()):
            np.testing.assert_array_equal(group[bn.name][name][()], w)
        assert len(group[m.layers[2].name].attrs["weight_names"]) == 0     # no weights
    assert os.listdir(tmp_path) == ["m.h5"]                       # no temporary file left


@pytest.mark.parametrize("make,shape", [(_sequential, (8, 8, 1)), (_functional, (6, 6, 2))])
def test_cconv_reads_its_h5_files_back(tmp_path, make, shape):
    m = make()
    x, _ = _data(shape)
    m.save(tmp_path / "m.h5")
    back = cconv.load_model(tmp_path / "m.h5")
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
    if m.compiled:
        assert type(back.optimizer).__name__ == "Adam"


@pytest.mark.parametrize("make,shape", [(_sequential, (8, 8, 1)), (_functional, (6, 6, 2))])
def test_keras_3_reads_the_h5_files(tmp_path, make, shape):
    pytest.importorskip("tensorflow")
    import keras
    m = make()
    x, _ = _data(shape)
    m.save(tmp_path / "m.h5")
    km = keras.models.load_model(tmp_path / "m.h5")
    np.testing.assert_allclose(km.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-5)
    assert km.count_params() == m.count_params()
    if m.compiled:
        assert type(km.optimizer).__name__ == "Adam"


def test_model_checkpoint_writes_h5_every_epoch(tmp_path):
    m = _sequential()
    x, y = _data((8, 8, 1))
    path = str(tmp_path / "ckpt-{epoch:02d}.h5")
    m.fit(x, y, epochs=2, verbose=0, callbacks=[cconv.callbacks.ModelCheckpoint(path)])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-01.h5", "ckpt-02.h5"]
    back = cconv.load_model(tmp_path / "ckpt-02.h5")
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    m = _functional()
    m.save(tmp_path / "m.h5")
    before = (tmp_path / "m.h5").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        m.save(tmp_path / "m.h5")
    assert (tmp_path / "m.h5").read_bytes() == before
    assert os.listdir(tmp_path) == ["m.h5"]


class FrozenFirst(L.Layer):
    """A custom layer that adds its non-trainable weight first."""

    def build(self, input_shape):
        self.count = self.add_weight((1,), initializer="ones", trainable=False)
        self.scale = self.add_weight((input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale


def test_weights_are_in_the_legacy_order_trainable_first(tmp_path):
    inp = cconv.Input((3,))
    layer = FrozenFirst(name="ff")
    m = cconv.Model(inp, layer(inp))
    layer.set_weights([np.array([1, 2, 3], np.float32), np.array([7.0], np.float32)])
    m.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        names = [n.decode() for n in f["model_weights/ff"].attrs["weight_names"]]
        assert names == ["ff/scale:0", "ff/count:0"]
    back = cconv.load_model(tmp_path / "m.h5", custom_objects={"FrozenFirst": FrozenFirst})
    for a, b in zip(back.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nested_models_in_h5_files_both_readers(tmp_path):
    inner = cconv.Sequential([cconv.Input((4,)), L.Dense(3, name="d"),
                              L.BatchNormalization(name="bn")], name="inner")
    inp = cconv.Input((4,))
    m = cconv.Model(inp, L.Dense(2)(inner(inp)))
    inner.layers[1].set_weights([np.full(3, v, np.float32) for v in (2.0, 0.5, 0.1, 3.0)])
    x = np.random.default_rng(0).random((5, 4)).astype(np.float32)
    m.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        names = [n.decode() for n in f["model_weights/inner"].attrs["weight_names"]]
    assert names == ["inner/d/kernel:0", "inner/d/bias:0", "inner/bn/gamma:0",
                     "inner/bn/beta:0", "inner/bn/moving_mean:0", "inner/bn/moving_variance:0"]
    back = cconv.load_model(tmp_path / "m.h5")
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
    pytest.importorskip("tensorflow")
    import keras
    km = keras.models.load_model(tmp_path / "m.h5")
    np.testing.assert_allclose(km.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-6)
