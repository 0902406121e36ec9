"""cconv.utils.load_img / img_to_array / array_to_img / save_img agree with Keras 3's
keras.utils functions (issue 32 item 5: programs that read image files run unchanged)."""
import io

import numpy as np
import pytest

import cconv
from cconv import utils

pytest.importorskip("PIL")


def _image(shape=(10, 14, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=shape).astype(np.float32)


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale", "rgba"])
@pytest.mark.parametrize("target_size,interpolation,keep", [
    (None, "nearest", False), ((6, 9), "bilinear", False), ((6, 6), "bicubic", True),
    ((12, 20), "lanczos", False)])
def test_save_load_and_arrays_agree_with_keras(tmp_path, color_mode, target_size,
                                               interpolation, keep):
    keras = pytest.importorskip("keras")
    x = _image()
    utils.save_img(tmp_path / "a.png", x)
    keras.utils.save_img(tmp_path / "b.png", x)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    ours = utils.img_to_array(utils.load_img(tmp_path / "a.png", color_mode=color_mode,
                                             target_size=target_size,
                                             interpolation=interpolation,
                                             keep_aspect_ratio=keep))
    theirs = keras.utils.img_to_array(keras.utils.load_img(
        tmp_path / "a.png", color_mode=color_mode, target_size=target_size,
        interpolation=interpolation, keep_aspect_ratio=keep))
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    if target_size is not None:
        assert ours.shape[:2] == target_size


@pytest.mark.parametrize("shape", [(5, 7, 1), (5, 7, 3), (5, 7, 4)])
def test_array_to_img_agrees_with_keras_and_leaves_the_input(shape):
    keras = pytest.importorskip("keras")
    x = _image(shape) - 100.0
    before = x.copy()
    ours, theirs = utils.array_to_img(x), keras.utils.array_to_img(x)
    np.testing.assert_array_equal(x, before)
    assert ours.mode == theirs.mode
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    np.testing.assert_array_equal(np.asarray(utils.array_to_img(x, scale=False)),
                                  np.asarray(keras.utils.array_to_img(x, scale=False)))


def test_layouts_dtypes_and_bytes_io():
    x = _image((4, 6, 3))
    img = utils.array_to_img(x, scale=False)
    assert utils.img_to_array(img, data_format="channels_first").shape == (3, 4, 6)
    assert utils.img_to_array(img, dtype="float64").dtype == np.float64
    gray = utils.img_to_array(np.zeros((4, 6)))
    assert gray.shape == (4, 6, 1)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    buf.seek(0)
    assert utils.load_img(buf).size == (6, 4)
    cconv.backend.set_floatx("float64")
    try:
        assert utils.img_to_array(img).dtype == np.float64        # floatx, as Keras
    finally:
        cconv.backend.set_floatx("float32")


def test_bad_arguments_are_named(tmp_path):
    utils.save_img(tmp_path / "a.png", _image())
    with pytest.raises(ValueError, match="color_mode"):
        utils.load_img(tmp_path / "a.png", color_mode="cmyk")
    with pytest.raises(ValueError, match="interpolation"):
        utils.load_img(tmp_path / "a.png", target_size=(3, 3), interpolation="cubic")
    with pytest.raises(TypeError, match="path"):
        utils.load_img(3)
    with pytest.raises(ValueError, match="rank 3"):
        utils.array_to_img(np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        utils.array_to_img(np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="data_format"):
        utils.img_to_array(np.zeros((4, 4, 3)), data_format="nchw")
    with pytest.warns(UserWarning, match="RGBA"):
        utils.save_img(tmp_path / "c.jpg", _image((4, 4, 4)))
