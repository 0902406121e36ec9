"""``get_config()`` uses Keras 3's Python types (tuples where Keras has tuples: kernel_size,
strides, pool_size, dilation_rate, explicit padding, size, cropping, ...), for every layer
class cconv and Keras both have, and ``from_config`` takes the lists that JSON turns them
into."""
import json

import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import PREPROCESSING_CONFIG_CASES

# Constructor arguments per layer class (defaults first, then explicit forms); every class
# cconv and Keras both have must be listed (see the first test).
CASES = {
    "InputLayer": [dict(shape=(4,)), dict(shape=(8, 8, 3))],
    "Dense": [dict(units=3)],
    "Conv2D": [dict(filters=2, kernel_size=3),
               dict(filters=2, kernel_size=(5, 3), strides=2, padding="same", dilation_rate=1)],
    "Conv2DTranspose": [dict(filters=2, kernel_size=3),
                        dict(filters=2, kernel_size=(3, 2), strides=2, output_padding=1)],
    "DepthwiseConv2D": [dict(kernel_size=3), dict(kernel_size=(3, 1), dilation_rate=2)],
    "SeparableConv2D": [dict(filters=2, kernel_size=3), dict(filters=2, kernel_size=3, strides=2)],
    "MaxPooling2D": [dict(), dict(pool_size=3, strides=1, padding="same")],
    "AveragePooling2D": [dict(pool_size=2), dict(pool_size=(2, 3))],
    "GlobalAveragePooling2D": [dict(), dict(keepdims=True)],
    "GlobalMaxPooling2D": [dict(), dict(keepdims=True)],
    "Flatten": [dict()],
    "Dropout": [dict(rate=0.5)],
    "Activation": [dict(activation="relu")],
    "ReLU": [dict(), dict(max_value=6.0)],
    "LeakyReLU": [dict()],
    "Softmax": [dict()],
    "BatchNormalization": [dict()],
    "Add": [dict()], "Subtract": [dict()], "Multiply": [dict()], "Average": [dict()],
    "Maximum": [dict()], "Minimum": [dict()], "Concatenate": [dict(), dict(axis=1)],
    "Dot": [dict(axes=1), dict(axes=(1, 2), normalize=True)],
    "ZeroPadding2D": [dict(), dict(padding=2), dict(padding=(1, 2)),
                      dict(padding=((1, 2), (3, 4)))],
    "Cropping2D": [dict(), dict(cropping=2), dict(cropping=((1, 0), (0, 2)))],
    "UpSampling2D": [dict(), dict(size=3), dict(size=(2, 3), interpolation="bilinear")],
    "Reshape": [dict(target_shape=(2, -1))],
    "Permute": [dict(dims=(2, 1))],
    "Rescaling": [dict(scale=0.5), dict(scale=[1.0, 2.0], offset=[0.0, 1.0])],
    **PREPROCESSING_CONFIG_CASES,
}
PARAMS = [(name, kwargs) for name, all_kwargs in CASES.items() for kwargs in all_kwargs]
IDS = [f"{name}-{i}" for name, all_kwargs in CASES.items() for i in range(len(all_kwargs))]


def _keras():
    return pytest.importorskip("keras", reason="Keras (tensorflow-cpu) is needed to compare")


def _same(got, want, where):
    """``got`` has ``want``'s Python types (tuple vs list) and values, recursively; dicts
    are compared on their common keys (Keras adds bookkeeping keys cconv has no use for)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        for k in set(got) & set(want):
            _same(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        kind = tuple if isinstance(want, tuple) else list     # Keras's TrackedList is a list
        assert type(got) is kind, f"{where}: {got!r} is a {type(got).__name__}, Keras " \
                                  f"gives {want!r}"
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} vs Keras {want!r}"


def test_cases_cover_every_layer_keras_also_has():
    keras = _keras()
    shared = {name for name in L.REGISTRY.classes() if hasattr(keras.layers, name)}
    assert shared == set(CASES)


@pytest.mark.parametrize("name,kwargs", PARAMS, ids=IDS)
def test_get_config_has_keras_types(name, kwargs):
    keras = _keras()
    want = getattr(keras.layers, name)(**kwargs).get_config()
    got = getattr(L, name)(**kwargs).get_config()
    if name == "InputLayer":     # Keras keeps the batch axis in batch_shape
        want["shape"] = want["batch_shape"][1:]
    common = set(got) & set(want) - {"dtype", "name"}
    assert common, name
    for key in sorted(common):
        _same(got[key], want[key], f"{name}.get_config()[{key!r}]")


@pytest.mark.parametrize("name,kwargs", PARAMS, ids=IDS)
def test_from_config_takes_tuples_and_json_lists(name, kwargs):
    config = getattr(L, name)(**kwargs).get_config()
    from_json = json.loads(json.dumps(config))
    for cfg in (config, from_json):
        assert getattr(L, name).from_config(dict(cfg)).get_config() == config


def test_kernel_size_compares_equal_to_a_tuple():
    assert L.Conv2D(6, 5).get_config()["kernel_size"] == (5, 5)
    assert L.MaxPooling2D().get_config()["pool_size"] == (2, 2)


@pytest.mark.parametrize("suffix", [".npz", ".keras"])
def test_models_with_tuple_configs_save_and_load(tmp_path, suffix):
    if suffix == ".keras":
        pytest.importorskip("h5py")
    model = cconv.Sequential([
        cconv.Input((8, 8, 2)), L.ZeroPadding2D(((1, 0), (0, 1))),
        L.Conv2D(3, (3, 2), strides=(1, 2), dilation_rate=1), L.Cropping2D(((1, 0), (0, 0))),
        L.UpSampling2D((2, 1)), L.MaxPooling2D((2, 2)), L.Reshape((-1,)), L.Dense(2)])
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype("float32")
    model.save(tmp_path / ("m" + suffix))
    back = cconv.load_model(tmp_path / ("m" + suffix))
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
    assert [l.get_config() for l in back.layers] == [l.get_config() for l in model.layers]
