"""cconv.backend: Keras's ``keras.backend`` names (issue 32 item 5)."""
import numpy as np
import pytest

import cconv
import cconv.backend as K
from cconv import layers as L


@pytest.fixture(autouse=True)
def _defaults():
    yield
    K.set_floatx("float32")
    K.set_epsilon(1e-7)


def test_import_as_K_and_the_defaults_are_keras_defaults():
    import importlib
    assert importlib.import_module("cconv.backend") is cconv.backend is K
    assert (K.floatx(), K.epsilon(), K.image_data_format(), K.backend()) == \
        ("float32", 1e-7, "channels_last", "cconv")


def test_defaults_match_keras():
    keras = pytest.importorskip("keras")
    assert K.floatx() == keras.backend.floatx()
    assert K.epsilon() == keras.backend.epsilon()
    assert K.image_data_format() == keras.backend.image_data_format()


def test_clear_session_restarts_automatic_names_as_keras():
    K.clear_session()
    first = [L.Dense(2).name, L.Dense(2).name, L.Conv2D(1, 1).name, cconv.Sequential().name]
    K.clear_session()
    again = [L.Dense(2).name, L.Dense(2).name, L.Conv2D(1, 1).name, cconv.Sequential().name]
    assert first == again == ["dense", "dense_1", "conv2d", "sequential"]
    keras = pytest.importorskip("keras")
    keras.backend.clear_session()
    assert [keras.layers.Dense(2).name, keras.layers.Dense(2).name] == ["dense", "dense_1"]


def test_clear_session_keeps_existing_models_working():
    m = cconv.Sequential([cconv.Input((3,)), L.Dense(2)])
    x = np.ones((2, 3), np.float32)
    before = m.predict(x, verbose=0)
    K.clear_session()
    np.testing.assert_array_equal(m.predict(x, verbose=0), before)


def test_set_floatx_is_the_dtype_of_new_layers_and_inputs():
    K.set_floatx("float64")
    assert K.floatx() == "float64"
    d = L.Dense(2)
    inp = cconv.Input((3,))
    assert d.dtype == "float64" and inp.dtype in ("float64", np.float64)
    m = cconv.Model(inp, d(inp))
    out = m.predict(np.ones((2, 3)), verbose=0)
    assert out.dtype == np.float64
    assert L.Dense(2, dtype="float32").dtype == "float32"     # an explicit dtype wins
    K.set_floatx(np.float32)
    assert K.floatx() == "float32" and L.Dense(1).dtype == "float32"


@pytest.mark.parametrize("bad", ["float16", "int32", "bfloat16", "nope", None, 3])
def test_set_floatx_refuses_other_dtypes(bad):
    with pytest.raises(ValueError, match=r"set_floatx: value must be one of \['float32', "
                                         r"'float64'\]"):
        K.set_floatx(bad)
    assert K.floatx() == "float32"


def test_epsilon():
    K.set_epsilon(1e-5)
    assert K.epsilon() == 1e-5
    for bad in (0, -1e-3, float("nan"), "x", True):
        with pytest.raises(ValueError, match="set_epsilon"):
            K.set_epsilon(bad)
    assert K.epsilon() == 1e-5


def test_image_data_format_is_channels_last_only():
    K.set_image_data_format("channels_last")
    assert K.image_data_format() == "channels_last"
    with pytest.raises(ValueError, match="channels_first.*NHWC|NHWC.*channels_first"):
        K.set_image_data_format("channels_first")
    assert K.image_data_format() == "channels_last"


def test_is_keras_tensor_get_uid_standardize_dtype():
    assert K.is_keras_tensor(cconv.Input((3,))) and not K.is_keras_tensor(np.zeros(3))
    K.clear_session()
    assert [K.get_uid("x"), K.get_uid("x"), K.get_uid("y")] == [1, 2, 1]
    K.clear_session()
    assert K.get_uid("x") == 1
    assert K.standardize_dtype(np.float64) == "float64" == K.standardize_dtype("float64")
    assert K.standardize_dtype(None) == "float32"
    with pytest.raises(ValueError, match="standardize_dtype"):
        K.standardize_dtype("nope")
    keras = pytest.importorskip("keras")
    keras.backend.clear_session()
    assert [keras.backend.get_uid("x"), keras.backend.get_uid("x")] == [1, 2]
    assert keras.backend.standardize_dtype(np.float64) == "float64"


def test_ops_array_creation_follows_floatx():
    """``cconv.ops.ones`` / ``zeros`` (Keras's ``ops.ones``, used by the Sequential guide) make
    ``floatx()`` arrays unless given a dtype; the ``*_like`` forms keep the input's dtype."""
    from cconv import backend, ops
    assert ops.ones((2, 3)).dtype == np.float32 and ops.ones((2, 3)).tolist() == [[1] * 3] * 2
    assert ops.zeros((4,), dtype="float64").dtype == np.float64
    assert ops.ones_like(np.zeros(3, np.int32)).dtype == np.int32
    assert ops.zeros_like(np.ones((2, 2)), dtype="float32").dtype == np.float32
    before = backend.floatx()
    try:
        backend.set_floatx("float64")
        assert ops.ones((1,)).dtype == np.float64 and ops.zeros((1,)).dtype == np.float64
    finally:
        backend.set_floatx(before)
