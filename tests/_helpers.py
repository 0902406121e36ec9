"""Helpers shared by the tests (the one place tests import shared code from): the tolerance
rule, the one finite-difference gradient, and the small models and data sets that several
test files train."""

import ast

import numpy as np
import pytest

import cconv
from cconv import layers as L

__all__ = ["assert_close", "numeric_grad", "small_model", "small_data", "keras_or_skip",
           "tiny_data", "keras_pair", "assert_same_training",
           "PREPROCESSING_CONFIG_CASES", "private_reads"]


def assert_close(actual, expected, dtype, what=""):
    """float64: 1e-10 relative; float32: 1e-5 of the expected values' magnitude."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    tol = (1e-10 if np.dtype(dtype) == np.float64 else 1e-5) * scale
    err = float(np.max(np.abs(actual - expected), initial=0.0))
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:.3g} (scale {scale:.3g})"


def numeric_grad(f, a, eps=1e-6):
    """``d f(a) / d a`` for a scalar ``f`` by central differences, one element at a time.

    ``a`` (float64) is perturbed in place and restored exactly, so ``f`` may also read it
    through another reference (a layer's weight array): ``numeric_grad(lambda _: loss(),
    layer.kernel)``.
    """
    g = np.zeros(a.shape, dtype=np.float64)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        up = f(a)
        a[i] = old - eps
        down = f(a)
        a[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


# ----- small models and data that several test files train ------------------------------------
def small_model(compile=True, **kw):
    """A seeded 6x6x1 -> 4-class Sequential (Conv2D, MaxPooling2D, Dense), compiled with
    Adam, categorical cross-entropy and accuracy unless told otherwise."""
    m = cconv.Sequential(
        [
            cconv.Input((6, 6, 1)),
            L.Conv2D(
                3, 3, activation="relu", kernel_initializer=cconv.initializers.HeNormal(seed=1)
            ),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(
                4, activation="softmax", kernel_initializer=cconv.initializers.GlorotUniform(seed=2)
            ),
        ]
    )
    if compile:
        m.compile(
            optimizer=kw.get("optimizer", "adam"),
            loss=kw.get("loss", "categorical_crossentropy"),
            metrics=kw.get("metrics", ["accuracy"]),
        )
    return m


def small_data(n=40, seed=0):
    """``(x, one-hot y, class ids)`` for :func:`small_model`, with a learnable signal."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(size=(n, 6, 6, 1)).astype(np.float32)
    x[np.arange(n), y, y, 0] += 3.0                     # learnable signal
    return x, np.eye(4, dtype=np.float32)[y], y


def keras_or_skip():
    """The ``keras`` module, or a skip with the reason when TensorFlow is absent."""
    pytest.importorskip("tensorflow", reason="agreement tests need TensorFlow/Keras")
    import keras
    return keras


def tiny_data(n=24, seed=0):
    """``(x, one-hot y)``: 6x6x1 images of 3 classes for :func:`keras_pair`."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 6, 6, 1)).astype(np.float32)
    x[np.arange(n), ids, ids, 0] += 2.0
    return x, np.eye(3, dtype=np.float32)[ids]


def keras_pair(keras, kernel_regularizer=None, bias_regularizer=None):
    """The same tiny CNN in Keras and cconv, with Keras's initial weights."""
    def stack(mod, reg):
        kr, br = reg(kernel_regularizer), reg(bias_regularizer)
        return [mod.layers.Conv2D(4, 3, activation="relu", kernel_regularizer=kr,
                                  bias_regularizer=br),
                mod.layers.MaxPooling2D(2), mod.layers.Flatten(),
                mod.layers.Dense(3, activation="softmax", kernel_regularizer=kr)]
    km = keras.Sequential([keras.Input((6, 6, 1))]
                          + stack(keras, lambda r: _keras_regularizer(keras, r)))
    cm = cconv.Sequential([cconv.Input((6, 6, 1))] + stack(cconv, lambda r: r))
    cm.set_weights(km.get_weights())
    return km, cm


def _keras_regularizer(keras, reg):
    if reg is None:
        return None
    return keras.regularizers.deserialize(
        {"class_name": type(reg).__name__, "config": reg.get_config()})


def assert_same_training(km, cm, hk, hc):
    """The Keras and cconv runs of a :func:`keras_pair` trained alike: losses and weights."""
    np.testing.assert_allclose(hc.history["loss"], hk.history["loss"], rtol=1e-4)
    for a, b in zip(cm.get_weights(), km.get_weights()):
        scale = max(1.0, float(np.abs(b).max()))
        assert np.abs(a - b).max() <= 1e-4 * scale, "weights drifted from Keras"


# ----- layer configurations -----------------------------------------------------------------------
# Constructor arguments of the preprocessing layers for the config tests (test_layer_config checks
# every layer's config against Keras; test_preprocessing checks these in more detail).
PREPROCESSING_CONFIG_CASES = {
    "Resizing": [dict(height=4, width=5), dict(height=3, width=7, interpolation="nearest",
                                               crop_to_aspect_ratio=True),
                 dict(height=6, width=2, pad_to_aspect_ratio=True, fill_value=2.5)],
    "CenterCrop": [dict(height=3, width=4)],
    "RandomCrop": [dict(height=3, width=4, seed=3)],
    "RandomFlip": [dict(), dict(mode="vertical", seed=2)],
    "RandomRotation": [dict(factor=0.1), dict(factor=(-0.2, 0.3), fill_mode="constant",
                                              interpolation="nearest", seed=1, fill_value=2.0)],
    "RandomZoom": [dict(height_factor=0.1), dict(height_factor=(-0.2, 0.3), width_factor=0.4,
                                                 fill_mode="wrap", seed=4)],
    "RandomTranslation": [dict(height_factor=0.1, width_factor=(-0.2, 0.1)),
                          dict(height_factor=(0.1, 0.2), width_factor=0.3,
                               fill_mode="nearest", interpolation="nearest", fill_value=1.0)],
    "RandomContrast": [dict(factor=0.2), dict(factor=(0.1, 0.3), value_range=(0, 1), seed=5)],
    "RandomBrightness": [dict(factor=0.2), dict(factor=(-0.1, 0.3), value_range=(1, 0),
                                                seed=5)],
    "Normalization": [dict(), dict(axis=None, mean=2.0, variance=3.0),
                      dict(axis=(1, 3), invert=True), dict(mean=[1.0, 2.0], variance=[3.0, 4.0])],
}


# ----- the package's interfaces ------------------------------------------------------------------
def private_reads(source):
    """``(line, expression)`` of each attribute access ``obj._name`` (not a dunder) whose
    ``obj`` is not the plain name ``self`` or ``cls``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            found.append((node.lineno, ast.unparse(node)))
    return found
