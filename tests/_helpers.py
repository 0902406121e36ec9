"""Helpers shared by the tests: the tolerance rule and the one finite-difference gradient."""

import numpy as np

__all__ = ["assert_close", "numeric_grad"]


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
