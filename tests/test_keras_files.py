"""Keras model files: ``.keras`` archives both ways (Keras writes -> cconv reads with
TensorFlow and Keras unimportable; cconv writes -> Keras reads), legacy ``.h5``,
``.weights.h5``, and the errors for unknown suffixes and unsupported layers."""
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import assert_close

h5py = pytest.importorskip("h5py", reason="Keras files need h5py (the keras-files extra)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The child refuses TensorFlow and Keras, then loads each file and saves its predictions.
CHILD = textwrap.dedent("""
    import sys
    sys.modules["tensorflow"] = None
    sys.modules["keras"] = None
    import numpy as np
    import cconv
    try:
        import keras  # noqa: F401
        raise SystemExit("keras importable in the child")
    except ImportError:
        pass
    for path in sys.argv[2:]:
        model = cconv.load_model(path)
        data = np.load(sys.argv[1])
        x = [data[k] for k in sorted(data.files)] if len(data.files) > 1 else data["x"]
        out = model.predict(x, verbose=0)
        out = out if isinstance(out, list) else [out]
        np.savez(path + ".out.npz", *out)
        print(path, type(model).__name__, model.compiled)
""")


def _cconv_model():
    x = cconv.Input((8, 8, 2), name="img")
    he = cconv.initializers.HeNormal(seed=0)
    conv = L.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=he, name="c1")
    c = conv(x)
    c = L.BatchNormalization(name="bn")(L.MaxPooling2D(name="pool")(c))
    f = L.Flatten(name="flat")(L.Conv2D(3, 2, strides=2, name="c2")(c))
    h = L.Dense(8, activation="relu", name="h")(L.Dropout(0.2, name="drop")(f))
    shared = L.Dense(8, activation="tanh", name="shared")
    h = shared(shared(h))                                      # one layer called twice
    out1 = L.Dense(3, activation="softmax", name="cls")(h)
    out2 = L.Dense(1, name="reg")(h)
    return cconv.Model(inputs=x, outputs=[out1, out2], name="two_heads")


def _x(shape=(5, 8, 8, 2)):
    return np.random.default_rng(0).random(shape).astype(np.float32)


def _keras():
    return pytest.importorskip("keras", reason="Keras (tensorflow-cpu) is needed to compare")


def _perturb(model):
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype(w.dtype)
                       for w in model.get_weights()])


def test_keras_writes_cconv_reads_without_tensorflow(tmp_path):
    keras = _keras()
    K = keras.layers
    x = keras.Input((8, 8, 2))
    c = K.Conv2D(4, 3, padding="same", activation="relu")(x)
    r = K.Add()([c, K.Conv2D(4, 3, padding="same")(c)]) if hasattr(L, "Add") else c
    b = K.BatchNormalization()(K.MaxPooling2D()(r))
    y = K.Dense(3, activation="softmax")(K.Dropout(0.3)(K.Flatten()(b)))
    functional = keras.Model(x, y)
    functional.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                       loss="categorical_crossentropy", metrics=["accuracy"])
    seq = keras.Sequential([keras.Input((8, 8, 2)), K.Conv2D(2, 3), K.ReLU(),
                            K.GlobalAveragePooling2D(), K.Dense(2)])
    for m in (functional, seq):
        _perturb(m)
    paths = [str(tmp_path / "f.keras"), str(tmp_path / "s.keras"), str(tmp_path / "f.h5")]
    functional.save(paths[0])
    seq.save(paths[1])
    functional.save(paths[2])           # the legacy HDF5 format
    np.savez(tmp_path / "x.npz", x=_x())
    run = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "x.npz")] + paths,
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "f.keras Model True" in run.stdout and "s.keras Sequential False" in run.stdout
    for path, km in zip(paths, (functional, seq, functional)):
        got = np.load(path + ".out.npz")["arr_0"]
        assert_close(got, km.predict(_x(), verbose=0), np.float32, path)


def test_cconv_writes_keras_reads(tmp_path):
    keras = _keras()
    model = _cconv_model()
    _perturb(model)
    model.compile("adam", loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                  metrics={"cls": ["accuracy"]})
    model.save(tmp_path / "m.keras")
    km = keras.models.load_model(tmp_path / "m.keras")
    assert [l.name for l in km.layers] == [l.name for l in model.layers]
    for a, b in zip(model.predict(_x(), verbose=0), km.predict(_x(), verbose=0)):
        assert_close(a, b, np.float32, "predict")
    assert type(km.optimizer).__name__ == "Adam"
    seq = cconv.Sequential([cconv.Input((6,)), L.Dense(4, activation="tanh"), L.Dense(2)])
    seq.save(tmp_path / "s.keras")
    ks = keras.models.load_model(tmp_path / "s.keras")
    x = _x((3, 6))
    assert_close(ks.predict(x, verbose=0), seq.predict(x, verbose=0), np.float32, "sequential")
    seq.save_weights(tmp_path / "s.weights.h5")
    ks.set_weights([w * 0 for w in ks.get_weights()])
    ks.load_weights(tmp_path / "s.weights.h5")
    assert_close(ks.predict(x, verbose=0), seq.predict(x, verbose=0), np.float32, "weights")


def test_keras_round_trip_without_tensorflow(tmp_path):
    model = _cconv_model()
    _perturb(model)
    model.compile("sgd", loss=["categorical_crossentropy", "mse"])
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
    loaded = cconv.load_model(tmp_path / "m.keras")
    for a, b in zip(loaded.predict(_x(), verbose=0), model.predict(_x(), verbose=0)):
        np.testing.assert_array_equal(a, b)
    assert loaded.compiled and [l.name for l in loaded.layers] == [l.name for l in model.layers]
    model.save_weights(tmp_path / "w.weights.h5")
    other = _cconv_model()
    other.load_weights(tmp_path / "w.weights.h5")
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def _write_keras(path, layers):
    """A hand-made .keras archive (no Keras needed) holding a Sequential of ``layers``."""
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "s", "layers": [
                  {"class_name": "InputLayer", "config": {"batch_shape": [None, 4]}}] + layers},
              "build_config": {"input_shape": [None, 4]}}
    weights = io.BytesIO()
    h5py.File(weights, "w").close()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", weights.getvalue())


def test_unknown_suffix_and_unsupported_layer_errors(tmp_path, monkeypatch):
    model = cconv.Sequential([cconv.Input((4,)), L.Dense(2)])
    for bad in ("m.txt", "m"):      # ("m.h5" is written now: tests/test_legacy_h5.py)
        with pytest.raises(ValueError, match="npz|keras"):
            model.save(tmp_path / bad)
        assert not (tmp_path / bad).exists()
    with pytest.raises(ValueError, match="suffix"):
        cconv.load_model(tmp_path / "m.txt")
    with pytest.raises(ValueError, match="suffix"):
        model.save_weights(tmp_path / "w.bin")
    _write_keras(tmp_path / "ln.keras", [{"class_name": "LayerNormalization",
                                          "config": {"name": "ln"}}])
    with pytest.raises(ValueError, match="'ln' is a LayerNormalization, which cconv does not"):
        cconv.load_model(tmp_path / "ln.keras")
    # Dense and Conv2D keep kernel/bias regularizers (see test_regularizers_survive_...);
    # an activity regularizer, or a regularizer class cconv lacks, is refused by name.
    _write_keras(tmp_path / "reg.keras", [{"class_name": "Dense", "config": {
        "name": "d", "units": 2, "activity_regularizer": {"class_name": "L2"}}}])
    with pytest.raises(ValueError, match="'d'.*activity_regularizer"):
        cconv.load_model(tmp_path / "reg.keras")
    _write_keras(tmp_path / "reg.keras", [{"class_name": "Dense", "config": {
        "name": "d", "units": 2, "kernel_regularizer": {
            "class_name": "OrthogonalRegularizer", "config": {"factor": 0.01}}}}])
    with pytest.raises(ValueError, match="'d'.*OrthogonalRegularizer"):
        cconv.load_model(tmp_path / "reg.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a Keras .keras archive"):
        cconv.load_model(tmp_path / "junk.keras")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="keras-files"):
        model.save(tmp_path / "m.keras")


def test_from_keras_converts_functional_models():
    keras = _keras()
    K = keras.layers
    a, b = keras.Input((5,), name="a"), keras.Input((3,), name="b")
    shared = K.Dense(4, activation="relu", name="shared")
    h = K.Dense(4, name="ha")(a)
    hb = K.Dense(4, name="hb")(b)
    outs = [K.Dense(2, name="o1")(shared(h)), K.Dense(1, name="o2")(shared(hb))]
    km = keras.Model([a, b], outs)
    _perturb(km)
    cm = cconv.from_keras(km)
    xs = [_x((4, 5)), _x((4, 3))]
    for got, want in zip(cm.predict(xs, verbose=0), km.predict(xs, verbose=0)):
        assert_close(got, want, np.float32, "from_keras functional")
    assert [l.name for l in cm.layers] == [l.name for l in km.layers]


@pytest.mark.parametrize("opt", ["adam", "sgd_momentum"])
def test_optimizer_state_carries_over_both_ways(tmp_path, opt):
    """Train one epoch on one side, save, load on the other: a second epoch on both sides
    ends at the same weights (iterations and slots were carried over)."""
    keras = _keras()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 32)]

    def make(mod):
        inp = mod.Input((6,))
        hidden = mod.layers.Dense(5, activation="tanh")(inp)
        out = mod.layers.Dense(3, activation="softmax")(hidden)
        model = mod.Model(inp, out)
        o = (mod.optimizers.Adam(0.01) if opt == "adam"
             else mod.optimizers.SGD(0.05, momentum=0.9))
        model.compile(optimizer=o, loss="categorical_crossentropy")
        return model

    for first, second in (("keras", "cconv"), ("cconv", "keras")):
        km, cm = make(keras), make(cconv)
        cm.set_weights(km.get_weights())
        a = km if first == "keras" else cm
        a.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        path = tmp_path / f"{first}.keras"
        a.save(path)
        b = cconv.load_model(path) if second == "cconv" else keras.models.load_model(path)
        for m in (a, b):
            m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-6, err_msg=f"{first}->{second}")


def test_reads_a_keras2_style_h5_file(tmp_path):
    """A legacy file as tf.keras 2 wrote it (class "Model", list-style inbound nodes,
    batch_input_shape, "name:0" weight names), made here with h5py alone."""
    import h5py
    config = {"class_name": "Model", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, 3], "dtype": "float32", "name": "input_1"}},
        {"class_name": "Dense", "name": "dense", "inbound_nodes": [[["input_1", 0, 0, {}]]],
         "config": {"name": "dense", "trainable": True, "dtype": "float32", "units": 2,
                    "activation": "relu", "use_bias": True,
                    "kernel_initializer": {"class_name": "GlorotUniform",
                                           "config": {"seed": None}},
                    "bias_initializer": {"class_name": "Zeros", "config": {}},
                    "kernel_regularizer": None, "bias_regularizer": None,
                    "activity_regularizer": None, "kernel_constraint": None,
                    "bias_constraint": None}}],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["dense", 0, 0]]}}
    kernel = np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]], np.float32)
    bias = np.array([0.1, -0.2], np.float32)
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = b"2.11.0"
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"input_1", b"dense"]
        g.create_group("input_1").attrs["weight_names"] = []
        d = g.create_group("dense")
        d.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        d.create_dataset("dense/kernel:0", data=kernel)
        d.create_dataset("dense/bias:0", data=bias)
    model = cconv.load_model(tmp_path / "old.h5")
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.maximum(x @ kernel + bias, 0),
                               rtol=1e-6)
    assert [l.name for l in model.layers] == ["input_1", "dense"]


# The writer makes a Dense before its model, so the model's layers are named dense_1 and
# dense_2 but stored under layers/dense and layers/dense_1 (names are per process); the
# reader, a fresh process, names its own layers dense and dense_1.
STALE_NAMES = textwrap.dedent("""
    import sys
    import numpy as np
    import cconv
    from cconv import layers as L
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "write":
        L.Dense(4)
    model = cconv.Sequential([cconv.Input((4,)), L.Dense(4), L.Dense(4)])
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    if mode == "write":
        rng = np.random.default_rng(0)
        model.set_weights([rng.normal(size=w.shape).astype(w.dtype)
                           for w in model.get_weights()])
        model.save_weights(path)
        np.save(path + ".want.npy", model.predict(x, verbose=0))
    else:
        model.load_weights(path)
        np.save(path + ".got.npy", model.predict(x, verbose=0))
""")


def test_weights_are_matched_by_key_across_processes(tmp_path):
    """cconv to cconv: the stored layer names are the writer's, not the reader's."""
    path = str(tmp_path / "w.weights.h5")
    for mode in ("write", "read"):
        run = subprocess.run([sys.executable, "-c", STALE_NAMES, mode, path], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
    with h5py.File(path, "r") as f:        # the situation: a stale name under each key
        assert f["layers/dense/vars"].attrs["name"] == "dense_1"
    np.testing.assert_array_equal(np.load(path + ".got.npy"), np.load(path + ".want.npy"))


def test_keras_weights_file_is_matched_by_key(tmp_path):
    """Keras names its model's Dense layers dense_1, dense_2 after an earlier Dense and
    stores them under layers/dense, layers/dense_1: cconv (whose layers are named dense and
    dense_1, as in a fresh process) loads each where Keras does."""
    keras = _keras()
    keras.backend.clear_session()
    keras.layers.Dense(4)
    km = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(4)])
    _perturb(km)
    km.save_weights(tmp_path / "k.weights.h5")
    with h5py.File(tmp_path / "k.weights.h5", "r") as f:
        assert f["layers/dense/vars"].attrs["name"] == "dense_1"
    cm = cconv.Sequential([cconv.Input((4,)), L.Dense(4, name="dense"),
                           L.Dense(4, name="dense_1")])
    cm.load_weights(tmp_path / "k.weights.h5")
    x = _x((3, 4))
    assert_close(cm.predict(x, verbose=0), km.predict(x, verbose=0), np.float32, "by key")


def test_regularizers_survive_keras_files_both_ways(tmp_path):
    """Keras writes a model with kernel and bias regularizers, cconv reads them with their
    factors (the evaluated loss, penalties included, is Keras's); cconv writes it back and
    Keras reads the same regularizers."""
    keras = _keras()
    K, R = keras.layers, keras.regularizers
    km = keras.Sequential([keras.Input((6, 6, 2)),
                           K.Conv2D(3, 3, kernel_regularizer=R.L2(0.03),
                                    bias_regularizer=R.L1(0.02)),
                           K.Flatten(),
                           K.Dense(2, kernel_regularizer=R.L1L2(l1=0.01, l2=0.005))])
    _perturb(km)
    km.compile(optimizer="sgd", loss="mse")
    km.save(tmp_path / "k.keras")
    cm = cconv.load_model(tmp_path / "k.keras")
    want = {"conv2d": {"kernel": ("L2", {"l2": 0.03}), "bias": ("L1", {"l1": 0.02})},
            "dense": {"kernel": ("L1L2", {"l1": 0.01, "l2": 0.005}), "bias": None}}
    x = _x((4, 6, 6, 2))
    y = np.random.default_rng(2).normal(size=(4, 2)).astype(np.float32)
    keras_loss = km.evaluate(x, y, verbose=0)
    for model, module in ((cm, cconv), (keras.models.load_model(_resave(cm, tmp_path)), keras)):
        for layer in model.layers:
            for weight, expected in want.get(type(layer).__name__.lower(), {}).items():
                reg = getattr(layer, weight + "_regularizer")
                if expected is None:
                    assert reg is None
                    continue
                assert type(reg).__name__ == expected[0]
                assert isinstance(reg, module.regularizers.Regularizer)
                config = reg.get_config()
                for k, v in expected[1].items():
                    assert float(config[k]) == pytest.approx(v), (layer.name, weight, k)
        np.testing.assert_allclose(model.evaluate(x, y, verbose=0), keras_loss, rtol=1e-5)


def _resave(model, tmp_path):
    model.save(tmp_path / "c.keras")
    return tmp_path / "c.keras"


class _Scale(L.Layer):
    """Test-only layer outside the built-in conversion table: ``factor * x``."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def forward(self, x, training=False):
        return x * x.dtype.type(self.factor)


def test_registered_layers_load_from_their_keras_arguments(tmp_path):
    """Layer classes without a hand-written table take the Keras arguments their
    constructor accepts; others must be None, a set regularizer is refused by name."""
    L.REGISTRY.register(_Scale, "Scale")
    try:
        _registered_scale_loads(tmp_path)
    finally:
        L.REGISTRY.unregister("Scale")


def _registered_scale_loads(tmp_path):
    good = {"name": "s", "factor": 2.0, "dtype": {"class_name": "DTypePolicy",
                                                  "config": {"name": "float32"}},
            "depthwise_constraint": None}
    _write_keras(tmp_path / "ok.keras", [{"class_name": "Scale", "config": good}])
    model = cconv.load_model(tmp_path / "ok.keras")
    np.testing.assert_array_equal(model.predict(np.ones((2, 4)), verbose=0), np.full((2, 4), 2.0))
    for extra, match in (({"mode": "fancy"}, "does not support: mode='fancy'"),
                         ({"scale_regularizer": "l2"}, "sets scale_regularizer='l2'")):
        bad = [{"class_name": "Scale", "config": {**good, **extra}}]
        _write_keras(tmp_path / "bad.keras", bad)
        with pytest.raises(ValueError, match=match):
            cconv.load_model(tmp_path / "bad.keras")


@pytest.mark.parametrize("writer", ["cconv", "keras"])
def test_weighted_metrics_survive_keras_files_both_ways(tmp_path, writer):
    """compile(weighted_metrics=...) is kept by .keras files (they were written as None, so a
    reloaded model lost them), whichever library wrote the file; metric objects keep their
    settings."""
    keras = pytest.importorskip("keras", reason="compares with Keras")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")
    w = np.linspace(0.5, 2.0, 8)
    lib = cconv if writer == "cconv" else keras
    model = lib.Sequential([lib.Input((4,)), lib.layers.Dense(2)])
    model.compile("sgd", "mse", metrics=["mae"],
                  weighted_metrics=["mae", lib.metrics.MeanSquaredError(name="wmse")])
    path = tmp_path / "m.keras"
    model.save(path)
    for reader in (cconv, keras):
        back = reader.models.load_model(path)
        got = back.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
        assert {"mae", "weighted_mae", "wmse"} <= set(got), (reader.__name__, got)


def test_a_sequential_subclass_comes_back_as_itself_from_keras_files(tmp_path):
    """A subclass of Sequential is written under its own class name (as Keras writes it) and
    rebuilt as that class from custom_objects or a registration (without it, a ValueError
    saying so, as Keras needs the class too); it came back as a plain Sequential."""
    pytest.importorskip("h5py")

    class Stack(cconv.Sequential):
        def describe(self):
            return f"{len(self.layers)} layers"

    model = Stack([cconv.Input((4,)), cconv.layers.Dense(3), cconv.layers.Dense(2)])
    model.compile("sgd", "mse")
    path = tmp_path / "m.keras"
    model.save(path)
    back = cconv.load_model(path, custom_objects={"Stack": Stack})
    assert type(back) is Stack and back.describe() == "2 layers"
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match=r"'Stack'.*custom_objects"):   # as Keras: needs it
        cconv.load_model(path)
