"""Custom classes in model files (issue 32 item 5): register_keras_serializable (Keras's
decorator, as cconv.saving.* and cconv.utils.*), custom_object_scope and
load_model(..., custom_objects=...) for .keras, .npz and legacy .h5 files."""
import numpy as np
import pytest

import cconv
from cconv import layers as L
from cconv.registry import get_custom_objects


@cconv.saving.register_keras_serializable(package="cconv_tests")
class TimesK(L.Layer):
    """Multiplies by a constant; shape unchanged."""

    def __init__(self, k=2.0, **kwargs):
        super().__init__(**kwargs)
        self.k = k

    def call(self, x):
        return x * self.k

    def get_config(self):
        return dict(super().get_config(), k=self.k)


class PlusC(L.Layer):
    """Adds a constant (not registered: needs custom_objects)."""

    def __init__(self, c=1.0, **kwargs):
        super().__init__(**kwargs)
        self.c = c

    def call(self, x):
        return x + self.c

    def get_config(self):
        return dict(super().get_config(), c=self.c)


@cconv.utils.register_keras_serializable(package="cconv_tests", name="HalfMSE")
class HalfMSE(cconv.losses.MeanSquaredError):
    pass


def _model():
    inp = cconv.Input((4,))
    out = L.Dense(3, kernel_initializer=cconv.initializers.GlorotUniform(seed=0))(
        PlusC(0.5)(TimesK(3.0)(inp)))
    return cconv.Model(inp, out)


def test_the_decorator_registers_under_package_and_name():
    assert cconv.saving.register_keras_serializable is cconv.utils.register_keras_serializable
    assert get_custom_objects()["cconv_tests>TimesK"] is TimesK
    assert cconv.saving.get_registered_name(TimesK) == "cconv_tests>TimesK"
    assert cconv.saving.get_registered_object("cconv_tests>HalfMSE") is HalfMSE
    assert cconv.saving.get_registered_name(PlusC) == "PlusC"
    cfg = L.serialize(TimesK(4.0))
    assert cfg["registered_name"] == "cconv_tests>TimesK"
    assert L.deserialize(cfg).k == 4.0
    assert type(L.get("TimesK")) is TimesK          # by its bare name too
    assert type(cconv.losses.get("cconv_tests>HalfMSE")) is HalfMSE


def test_keras_agrees_on_the_registered_name():
    keras = pytest.importorskip("keras")

    @keras.saving.register_keras_serializable(package="cconv_tests")
    class TimesK(keras.layers.Layer):       # noqa: F811 (Keras's twin of the class above)
        def get_config(self):
            return super().get_config()
    assert keras.saving.get_registered_name(TimesK) == "cconv_tests>TimesK"


def test_bad_registrations_are_refused():
    with pytest.raises(ValueError, match="package"):
        cconv.saving.register_keras_serializable(package="a>b")
    with pytest.raises(ValueError, match="name"):
        cconv.saving.register_keras_serializable(package="p", name="")
    with pytest.raises(ValueError, match="get_config"):
        cconv.saving.register_keras_serializable()(type("NoConfig", (), {}))


@pytest.mark.parametrize("suffix", [".keras", ".npz", ".h5"])
def test_custom_layers_load_with_custom_objects(tmp_path, suffix):
    model = _model()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    path = tmp_path / f"m{suffix}"
    model.save(path)
    with pytest.raises(ValueError, match="PlusC.*custom_objects"):
        cconv.load_model(path)
    loaded = cconv.load_model(path, custom_objects={"PlusC": PlusC})
    assert [type(layer).__name__ for layer in loaded.layers][-3:] == ["TimesK", "PlusC",
                                                                      "Dense"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    with cconv.saving.custom_object_scope({"PlusC": PlusC}):
        again = cconv.load_model(path)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_custom_objects_must_be_a_dict(tmp_path):
    with pytest.raises(TypeError, match="custom_objects"):
        cconv.load_model(tmp_path / "m.keras", custom_objects=[PlusC])
    with pytest.raises(TypeError, match="custom_object_scope"):
        cconv.saving.custom_object_scope([PlusC])


def test_scopes_nest_and_end():
    assert cconv.saving.get_registered_object("PlusC") is None
    with cconv.utils.custom_object_scope({"PlusC": PlusC}):
        with cconv.utils.CustomObjectScope({"Other": TimesK}):
            assert cconv.saving.get_registered_object("PlusC") is PlusC
            assert type(L.get("Other")) is TimesK
        assert cconv.saving.get_registered_object("Other") is None
    assert cconv.saving.get_registered_object("PlusC") is None
    with pytest.raises(ValueError, match="Unknown layer 'PlusC'"):
        L.get("PlusC")


def test_a_registered_custom_loss_compiles_from_an_npz_file(tmp_path):
    model = _model()
    model.compile("sgd", HalfMSE())
    model.save(tmp_path / "m.npz")
    loaded = cconv.load_model(tmp_path / "m.npz", custom_objects={"PlusC": PlusC})
    assert type(loaded.loss) is HalfMSE


@cconv.saving.register_keras_serializable(package="cconv_tests")
class OffsetMAE(cconv.metrics.MeanAbsoluteError):
    """A registered custom metric."""


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_files_keep_custom_losses_and_metric_objects(tmp_path, suffix):
    model = cconv.Sequential([cconv.Input((4,)), L.Dense(2, activation="sigmoid")])
    model.compile("adam", HalfMSE(), metrics=["mae", OffsetMAE(name="off"),
                                              cconv.metrics.Precision(thresholds=0.3,
                                                                      name="p3")])
    rng = np.random.default_rng(0)
    x = rng.random((8, 4)).astype(np.float32)
    y = (rng.random((8, 2)) > 0.5).astype(np.float32)
    model.fit(x, y, verbose=0)
    model.save(tmp_path / f"m{suffix}")
    back = cconv.load_model(tmp_path / f"m{suffix}")
    assert type(back.loss) is HalfMSE
    assert back.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True), rel=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_reads_metric_objects_from_cconv_files(tmp_path, suffix):
    pytest.importorskip("tensorflow")
    import keras
    model = cconv.Sequential([cconv.Input((4,)), L.Dense(2, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy",
                  metrics=[cconv.metrics.Precision(thresholds=0.3, name="p3"),
                           cconv.metrics.MeanAbsoluteError(name="my_mae")])
    rng = np.random.default_rng(1)
    x = rng.random((8, 4)).astype(np.float32)
    y = (rng.random((8, 2)) > 0.5).astype(np.float32)
    model.save(tmp_path / f"m{suffix}")
    ours = model.evaluate(x, y, verbose=0, return_dict=True)
    theirs = keras.models.load_model(tmp_path / f"m{suffix}").evaluate(x, y, verbose=0,
                                                                        return_dict=True)
    assert theirs == pytest.approx(ours, rel=1e-5)


def test_custom_layers_cross_between_keras_and_cconv_by_registered_name(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    @keras.saving.register_keras_serializable(package="cconv_tests", name="TimesK")
    class KTimesK(keras.layers.Layer):
        def __init__(self, k=2.0, **kwargs):
            super().__init__(**kwargs)
            self.k = k

        def call(self, x):
            return x * self.k

        def get_config(self):
            return dict(super().get_config(), k=self.k)

    inp = keras.Input((4,))
    km = keras.Model(inp, keras.layers.Dense(2)(KTimesK(3.0)(inp)))
    km.save(tmp_path / "k.keras")
    cm = cconv.load_model(tmp_path / "k.keras")          # cconv's TimesK, same key
    assert type(cm.layers[1]) is TimesK and cm.layers[1].k == 3.0
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(cm.predict(x, verbose=0), km.predict(x, verbose=0), atol=1e-6)
    cm.save(tmp_path / "c.keras")                        # and back: Keras's class, same key
    back = keras.models.load_model(tmp_path / "c.keras")
    assert type(back.layers[1]) is KTimesK and back.layers[1].k == 3.0
    np.testing.assert_allclose(back.predict(x, verbose=0), km.predict(x, verbose=0), atol=1e-6)
