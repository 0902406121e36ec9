import os

import numpy as np
import pytest

import cconv

# Keep TensorFlow quiet and on the CPU in tests.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def restore_threads():
    """Put the kernels' thread count back after the test."""
    before = cconv.get_num_threads()
    yield
    cconv.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
