"""Thread count: settable, validated, and without effect on any result bit."""
import numpy as np
import pytest

import cconv
from cconv import ops
from cconv._ext import conv as _conv


def _all_ops(x, kernel, bias, dy_conv, dy_pool):
    out = []
    # groups=2 (4 channels, 8 filters a group) runs the direct kernels; groups=1 im2col + GEMM
    for groups, k in ((2, kernel), (1, np.concatenate([kernel, kernel[:, :, ::-1]], axis=2))):
        kw = dict(strides=(2, 1), padding="same", dilation_rate=1, groups=groups)
        out += [ops.conv2d(x, k, bias, **kw), *ops.conv2d_backward(dy_conv, x, k, **kw)]
    for fwd, bwd in (
        (ops.max_pool2d, ops.max_pool2d_backward),
        (ops.avg_pool2d, ops.avg_pool2d_backward),
    ):
        out += [fwd(x, 3, 2, "same"), bwd(dy_pool, x, 3, 2, "same")]
    return out


@pytest.mark.skipif(not cconv.openmp_enabled(), reason="built without OpenMP: always one thread")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_are_bit_identical_for_1_and_2_threads(dtype, restore_threads, monkeypatch):
    monkeypatch.setattr(ops, "_GRAIN", 1)  # let even small calls use every thread
    rng = np.random.default_rng(0)
    # large enough for many im2col tiles and several kernel-gradient blocks
    x = rng.standard_normal((5, 48, 40, 8)).astype(dtype)
    kernel = rng.standard_normal((3, 3, 4, 16)).astype(dtype)
    bias = rng.standard_normal(16).astype(dtype)
    dy_conv = rng.standard_normal((5, 24, 40, 16)).astype(dtype)
    dy_pool = rng.standard_normal((5, 24, 20, 8)).astype(dtype)
    results = {}
    for n in (1, 2, 3):
        cconv.set_num_threads(n)
        assert cconv.get_num_threads() == n
        results[n] = _all_ops(x, kernel, bias, dy_conv, dy_pool)
    for n in (2, 3):
        for a, b in zip(results[1], results[n]):
            np.testing.assert_array_equal(a, b)


def test_set_num_threads_validates_and_returns_previous(restore_threads):
    previous = cconv.set_num_threads(1)
    assert cconv.set_num_threads(None) == 1
    assert cconv.get_num_threads() >= 1
    with pytest.raises(ValueError, match="n must be >= 1"):
        cconv.set_num_threads(0)
    with pytest.raises(TypeError, match="positive int"):
        cconv.set_num_threads(1.5)
    assert previous >= 1


def test_default_respects_omp_num_threads():
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import cconv; print(cconv.get_num_threads(), cconv.openmp_enabled())",
        ],
        env={"OMP_NUM_THREADS": "3", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == ("3" if out[1] == "True" else "1")


@pytest.mark.skipif(not cconv.openmp_enabled(), reason="built without OpenMP: always one thread")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_is_bit_identical_for_1_2_and_3_threads(dtype, restore_threads, monkeypatch):
    monkeypatch.setattr(ops, "_GRAIN", 1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 29, 30, 16)).astype(dtype)     # 384 F(4x4) tiles: 3 chunks
    kernel = rng.standard_normal((3, 3, 16, 24)).astype(dtype)
    bias = rng.standard_normal(24).astype(dtype)
    dy = rng.standard_normal((6, 29, 30, 24)).astype(dtype)
    assert _conv.choose_algorithm(x.shape, kernel.shape, dy.shape, pads_before=(1, 1),
                                  dtype=dtype) == _conv.WINOGRAD
    results = {}
    for n in (1, 2, 3):
        cconv.set_num_threads(n)
        results[n] = [ops.conv2d(x, kernel, bias, padding="same"),
                      *ops.conv2d_backward(dy, x, kernel, padding="same")]
    for n in (2, 3):
        for a, b in zip(results[1], results[n]):
            np.testing.assert_array_equal(a, b)
