"""Which convolution algorithm runs (choose_algorithm), and that the choice never changes
what a result means: Inf and NaN give what the float64 direct sum gives on every path."""
import os
import subprocess
import sys

import numpy as np
import pytest

from cconv import ops
from cconv._ext import conv as _conv

from . import reference
from ._helpers import assert_close

# name, x shape, kernel shape, strides, padding, groups, algorithm for (forward, input
# gradient, kernel gradient)
CASES = [
    ("direct", (2, 9, 10, 1), (5, 5, 1, 6), 1, "same", 1,
     (_conv.DIRECT, _conv.IM2COL, _conv.DIRECT)),
    ("direct-grouped", (2, 9, 10, 8), (3, 3, 2, 8), 1, "same", 4,
     (_conv.DIRECT, _conv.DIRECT, _conv.DIRECT)),
    ("winograd", (2, 9, 10, 16), (3, 3, 16, 16), 1, "same", 1,
     (_conv.WINOGRAD, _conv.WINOGRAD, _conv.WINOGRAD)),
    ("pointwise", (2, 7, 6, 8), (1, 1, 8, 12), 1, "valid", 1,
     (_conv.POINTWISE, _conv.POINTWISE, _conv.POINTWISE)),
    ("im2col", (2, 9, 10, 8), (3, 3, 8, 10), 2, "same", 1,
     (_conv.IM2COL, _conv.IM2COL, _conv.IM2COL)),
    # few taps (3 * 3 * 3 <= 64), more filters than direct.h takes: kgrad.h's kernel gradient
    ("few-taps", (2, 9, 10, 3), (3, 3, 3, 16), 1, "same", 1,
     (_conv.IM2COL, _conv.IM2COL, _conv.DIRECT)),
    ("few-taps-strided", (3, 11, 9, 2), (5, 5, 2, 20), 2, "same", 1,
     (_conv.IM2COL, _conv.IM2COL, _conv.DIRECT)),
    # no padding, 32 filters: the im2col rows read in place (implicit.h) where the CPU has FMA
    ("im2col-in-place", (2, 12, 13, 3), (3, 3, 3, 32), 1, "valid", 1,
     (_conv.IM2COL, _conv.IM2COL, _conv.DIRECT)),
]
STEPS = ("forward", "input_gradient", "kernel_gradient")


def _geometry(x_shape, k_shape, strides, padding):
    oh, ow = ops.conv_output_shape(x_shape[1:3], k_shape[:2], strides, padding)
    pads = ops.compute_padding(x_shape[1:3], k_shape[:2], strides, padding)
    return (x_shape[0], oh, ow, k_shape[3]), (pads[0][0], pads[1][0])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_choose_algorithm_names_the_algorithm_of_each_step(case):
    _, x_shape, k_shape, strides, padding, groups, expected = case
    y_shape, pads = _geometry(x_shape, k_shape, strides, padding)
    for step, algorithm in zip(STEPS, expected):
        for dtype in (np.float32, np.float64):
            got = _conv.choose_algorithm(x_shape, k_shape, y_shape, (strides, strides),
                                         (1, 1), pads, groups, dtype, step)
            assert got == algorithm, (step, dtype)
            assert got in _conv.ALGORITHMS.values()
            # Inf or NaN in the operands: never Winograd
            got = _conv.choose_algorithm(x_shape, k_shape, y_shape, (strides, strides),
                                         (1, 1), pads, groups, dtype, step, finite=False)
            assert got != _conv.WINOGRAD


def test_choose_algorithm_rejects_an_unknown_step():
    with pytest.raises(ValueError, match="step must be one of"):
        _conv.choose_algorithm((1, 4, 4, 1), (3, 3, 1, 1), (1, 2, 2, 1), step="backward")


def assert_same_values(actual, expected, dtype, what):
    """Same NaN, +Inf and -Inf positions; the finite values close (float64 ``expected``)."""
    actual = np.asarray(actual, np.float64)
    for kind in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(kind(actual), kind(expected), f"{what}: {kind.__name__}")
    finite = np.isfinite(expected)
    assert_close(actual[finite], expected[finite], dtype, what)


def _poison(a, where, values):
    a = a.copy()
    for index, value in zip(where, values):
        a[index] = value
    return a


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("operand", ["x", "kernel", "dy"])
def test_inf_and_nan_give_what_the_direct_sum_gives(case, dtype, operand):
    name, x_shape, k_shape, s, padding, groups, _ = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal(k_shape).astype(dtype)
    bias = rng.standard_normal(k_shape[3]).astype(dtype)
    y_shape, _ = _geometry(x_shape, k_shape, s, padding)
    dy = rng.standard_normal(y_shape).astype(dtype)
    arrays = {"x": x, "kernel": kernel, "dy": dy}
    a = arrays[operand]
    # one +Inf, one -Inf and one NaN, at indices spread over the array
    where = [tuple(int(i) for i in np.unravel_index(k * a.size // 4, a.shape))
             for k in (1, 2, 3)]
    arrays[operand] = _poison(a, where, [np.inf, -np.inf, np.nan])
    x, kernel, dy = arrays["x"], arrays["kernel"], arrays["dy"]
    pads = reference.pads_for(x_shape[1:3], k_shape[:2], (s, s), (1, 1), padding)
    kw = dict(strides=s, padding=padding, groups=groups)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = reference.conv2d(x, kernel, bias, (s, s), pads, (1, 1), groups)
        expected_grads = reference.conv2d_backward(dy, x, kernel, (s, s), pads, (1, 1), groups)
    assert_same_values(ops.conv2d(x, kernel, bias, **kw), expected, dtype, f"{name} y")
    grads = ops.conv2d_backward(dy, x, kernel, **kw)
    for what, got, want in zip(("dx", "dkernel", "dbias"), grads, expected_grads):
        assert_same_values(got, want, dtype, f"{name} {what}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_inf_in_a_winograd_sized_input_stays_inf(dtype):
    """3x3, stride 1, 16 channels (Winograd's geometry): one Inf in x gives +-Inf in the
    outputs that read it, as the direct sum (and TensorFlow) do, not NaN."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 12, 12, 16)).astype(dtype)
    kernel = rng.standard_normal((3, 3, 16, 16)).astype(dtype)
    x[0, 5, 6, 3] = np.inf
    assert _conv.choose_algorithm(x.shape, kernel.shape, (1, 12, 12, 16), pads_before=(1, 1),
                                  dtype=dtype) == _conv.WINOGRAD
    y = ops.conv2d(x, kernel, padding="same")
    with np.errstate(invalid="ignore"):
        expected = reference.conv2d(x, kernel, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    assert np.isinf(expected).sum() == 144
    assert_same_values(y, expected, dtype, "y")


@pytest.mark.parametrize("out_hw, m", [
    ((13, 13), 4),   # 16 tiles of 36 products against 49 of 16
    ((15, 15), 4), ((56, 56), 4), ((3, 3), 4), ((4, 4), 4), ((7, 9), 4),
    ((6, 6), 2),     # a tie (144 either way): F(2x2), whose transforms cost less and round less
    ((5, 5), 2), ((2, 2), 2), ((2, 30), 2), ((1, 1), 2),
])
def test_winograd_tile_is_the_size_with_fewer_products(out_hw, m):
    """winograd.h's one rule for the tile size, from the output's height and width."""
    assert _conv.winograd_tile(*out_hw) == m
    oh, ow = out_hw
    products = {t: -(-oh // t) * -(-ow // t) * (t + 2) ** 2 for t in (2, 4)}
    assert products[m] <= products[6 - m]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, channels, padding", [
    ((8, 15, 15, 32), 64, "valid"),     # the tutorial CNN's second convolution: F(4x4)
    ((2, 14, 14, 128), 128, "same"),    # wider: F(4x4)
    ((4, 8, 8, 64), 64, "valid"),       # 6 x 6 output: F(2x2)
])
def test_winograd_tiles_of_both_sizes_stay_within_the_float32_tolerance(shape, channels,
                                                                        padding, dtype):
    """Both tile sizes, forward and gradients, against the float64 direct sum with unit-scale
    data and He-scaled kernels (F(4x4)'s float32 error: 2-6e-6 of the largest output,
    against 3-8e-7 for F(2x2); DESIGN.md's float32 tolerance is 1e-5)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    kernel = (rng.standard_normal((3, 3, shape[3], channels))
              / np.sqrt(9 * shape[3])).astype(dtype)
    bias = rng.standard_normal(channels).astype(dtype)
    pads = ((1, 1), (1, 1)) if padding == "same" else ((0, 0), (0, 0))
    y = ops.conv2d(x, kernel, bias, padding=padding)
    assert _conv.choose_algorithm(x.shape, kernel.shape, y.shape, pads_before=pads[0][:1] * 2,
                                  dtype=dtype) == _conv.WINOGRAD
    assert_close(y, reference.conv2d(x, kernel, bias, (1, 1), pads, (1, 1), 1), dtype, "y")
    dy = rng.standard_normal(y.shape).astype(dtype)
    got = ops.conv2d_backward(dy, x, kernel, padding=padding)
    want = reference.conv2d_backward(dy, x, kernel, (1, 1), pads, (1, 1), 1)
    for name, a, b in zip(("dx", "dkernel", "dbias"), got, want):
        assert_close(a, b, dtype, name)


# (x shape, kernel shape, strides or (strides, dilation)): the im2col forward reads its rows
# in place (implicit.h) where the CPU has FMA, with one group, CO a whole number of vectors
# and outputs at least 8 wide: from x without padding, from a zero-padded copy of each image
# with it; else im2col + GEMM
IN_PLACE = [((2, 32, 32, 3), (3, 3, 3, 32), 1), ((3, 14, 14, 6), (5, 5, 6, 16), 1),
            ((2, 20, 19, 4), (3, 3, 4, 48), 1), ((1, 12, 40, 8), (3, 3, 8, 64), 1),
            ((2, 21, 23, 3), (3, 3, 3, 32), 2), ((2, 11, 17, 2), (5, 3, 2, 16), 1),
            ((2, 20, 19, 4), (3, 3, 4, 32), (1, (2, 1))),     # rows dilated by 2
            ((2, 18, 18, 40), (3, 3, 40, 32), 2)]              # K = 360: two depth blocks


@pytest.mark.parametrize("x_shape, k_shape, s", IN_PLACE)
@pytest.mark.parametrize("padding", ["valid", "same", 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_rows_read_in_place_give_the_im2col_bits(x_shape, k_shape, s, padding, dtype):
    """Each output column's sums do not depend on the other filters: with one filter more
    (zeros), CO is no whole number of vectors and the same convolution takes im2col + GEMM;
    its first CO columns are, bit for bit, what the in-place path gives."""
    s, dilation = s if isinstance(s, tuple) else (s, 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal(k_shape).astype(dtype)
    bias = rng.standard_normal(k_shape[3]).astype(dtype)
    kw = dict(strides=s, dilation_rate=dilation, padding=padding)
    y = ops.conv2d(x, kernel, bias, **kw)
    wider = np.concatenate([kernel, np.zeros(k_shape[:3] + (1,), dtype)], axis=3)
    y_im2col = ops.conv2d(x, wider, np.append(bias, 0).astype(dtype), **kw)
    d = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    pads = tuple(p[0] for p in reference.pads_for(x_shape[1:3], k_shape[:2], (s, s), d,
                                                  padding))
    for shape, ks in ((y.shape, k_shape), (y_im2col.shape, wider.shape)):
        assert _conv.choose_algorithm(x_shape, ks, shape, (s, s), d, pads,
                                      dtype=dtype) == _conv.IM2COL
    np.testing.assert_array_equal(y_im2col[..., :k_shape[3]], y)


@pytest.mark.parametrize("kw", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("filters", [1, 2, 3, 5, 6, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_kernel_gradient_for_every_filter_count_and_width(kw, filters, dtype):
    """direct.h's kernel gradient blocks filters by 4, then 2, then 1 and taps by 4 or 5,
    then 1: every remainder combination against the float64 reference."""
    rng = np.random.default_rng(kw * 10 + filters)
    x = rng.standard_normal((2, 9, 21, 1)).astype(dtype)
    kernel = rng.standard_normal((3, kw, 1, filters)).astype(dtype)
    y_shape, _ = _geometry(x.shape, kernel.shape, 1, "valid")
    assert _conv.choose_algorithm(x.shape, kernel.shape, y_shape, dtype=dtype,
                                  step="kernel_gradient") == _conv.DIRECT
    dy = rng.standard_normal(y_shape).astype(dtype)
    _, dkernel, dbias = ops.conv2d_backward(dy, x, kernel, input_grad=False)
    _, want_k, want_b = reference.conv2d_backward(dy, x, kernel, (1, 1), ((0, 0), (0, 0)),
                                                  (1, 1), 1)
    assert_close(dkernel, want_k, dtype, "dkernel")
    assert_close(dbias, want_b, dtype, "dbias")


MEMORY_CHILD = r"""
import resource, sys
import numpy as np
import cconv
from cconv import ops
cconv.set_num_threads(1)
x = np.ones(eval(sys.argv[1]))
kernel = np.ones(eval(sys.argv[2]))
ops.conv2d(x[..., :16], kernel[:, :, :16, :1])   # load and warm up everything else first
with open("/proc/self/status") as f:
    vm = int(next(line for line in f if line.startswith("VmSize")).split()[1]) * 1024
# room for the output, not for the 20-34 MB workspace
resource.setrlimit(resource.RLIMIT_AS, (vm + 16 * 2**20, resource.RLIM_INFINITY))
try:
    ops.conv2d(x, kernel)
except MemoryError as exc:
    print(exc)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
@pytest.mark.parametrize("x_shape, k_shape, workspace", [
    ((1, 4, 4, 512), (3, 3, 512, 512), "the Winograd-transformed kernel"),
    ((1, 3, 3, 290000), (3, 3, 290000, 1), "the im2col tile"),
])
def test_memory_error_names_the_workspace_that_failed(x_shape, k_shape, workspace):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(x_shape), str(k_shape)],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"conv2d: could not allocate {workspace} (out of memory)"
