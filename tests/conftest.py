import os

import numpy as np
import pytest

# Keep TensorFlow quiet and on the CPU in tests.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def assert_close(actual, expected, dtype, what=""):
    """float64: 1e-10 relative; float32: 1e-5 of the expected values' magnitude."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    tol = (1e-10 if np.dtype(dtype) == np.float64 else 1e-5) * scale
    err = float(np.max(np.abs(actual - expected), initial=0.0))
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:.3g} (scale {scale:.3g})"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
