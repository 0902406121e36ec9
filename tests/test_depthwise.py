"""The depthwise kernels (dwconv.h: groups == channels > 1, any depth multiplier).

ops.conv2d and its gradients against the float64 NumPy reference for strides, dilation,
paddings, depth multipliers and channel counts that leave vector tails (float64 to 1e-10);
identical results for any thread count, row blocks of a small batch of large images included;
non-finite inputs; the compiled plan's direct node with its fused relu (a grouped Conv2D with
groups == channels) and DepthwiseConv2D / SeparableConv2D models through predict.
(Agreement with TensorFlow: the depthwise cases of test_keras_agreement.py.)"""
import numpy as np
import pytest

import cconv
from cconv import ops
from cconv import plan as cplan
from cconv._ext import conv as _conv
from cconv.layers import Conv2D, Dense, DepthwiseConv2D, Flatten, Input, SeparableConv2D

from . import reference
from ._helpers import assert_close

pytestmark = pytest.mark.usefixtures("restore_threads")

DTYPES = [np.float32, np.float64]

# x shape NHWC, kernel (kh, kw), depth multiplier, strides, padding, dilation
CASES = [
    ((2, 7, 9, 5), (3, 3), 1, 1, "same", 1),            # fewer channels than a vector
    ((1, 8, 8, 16), (3, 3), 2, 2, "same", 1),           # multiplier 2, stride 2
    ((2, 11, 10, 19), (3, 3), 1, 2, "valid", 1),        # odd sizes, vector + tail
    ((2, 9, 12, 37), (3, 3), 3, (2, 1), "same", 1),     # unequal strides, multiplier 3
    ((1, 12, 11, 24), (3, 3), 1, 1, "same", 2),         # dilation 2
    ((2, 13, 9, 6), (5, 4), 2, 1, "valid", (2, 1)),     # non-square kernel and dilation
    ((3, 5, 6, 33), (5, 5), 1, 1, "same", 1),           # 5x5 on a 5x6 image
    ((1, 9, 8, 10), (5, 3), 2, 1, "same", 1),           # 3-wide, 5 rows: 3 + 1 + 1
    ((1, 7, 8, 8), (3, 3), 1, 3, "same", 1),            # stride 3
    ((2, 3, 3, 12), (7, 7), 1, 1, "same", 1),           # most taps outside the image
    ((2, 10, 9, 4), (3, 2), 10, 2, "same", 1),          # multiplier 10
    ((1, 9, 9, 3), (1, 1), 2, 2, "same", 1),            # 1x1 strided
]


def _ids(cases):
    return [f"x{c[0]}-k{c[1]}-m{c[2]}-s{c[3]}-{c[4]}-d{c[5]}" for c in cases]


def _data(case, dtype, seed=0):
    x_shape, (kh, kw), m, strides, padding, dilation = case
    rng = np.random.default_rng(seed)
    c = x_shape[3]
    x = rng.uniform(-1, 1, x_shape).astype(dtype)
    kernel = rng.uniform(-1, 1, (kh, kw, 1, c * m)).astype(dtype)
    bias = rng.uniform(-1, 1, c * m).astype(dtype)
    kw_ = dict(strides=strides, padding=padding, dilation_rate=dilation, groups=c)
    return x, kernel, bias, kw_


def _pads(case):
    x_shape, k, _, strides, padding, dilation = case
    s = (strides, strides) if isinstance(strides, int) else strides
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    return s, d, reference.pads_for(x_shape[1:3], k, s, d, padding)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_depthwise_matches_reference(case, dtype):
    x, kernel, bias, kw = _data(case, dtype)
    y = ops.conv2d(x, kernel, bias, **kw)
    s, d, pads = _pads(case)
    assert y.dtype == dtype
    assert_close(y, reference.conv2d(x, kernel, bias, s, pads, d, kw["groups"]), dtype, "y")
    y_shape = y.shape
    for step in ("forward", "input_gradient", "kernel_gradient"):
        assert _conv.choose_algorithm(x.shape, kernel.shape, y_shape, s, d,
                                      (pads[0][0], pads[1][0]), kw["groups"], dtype,
                                      step) == _conv.DIRECT, step
    dy = np.random.default_rng(1).uniform(-1, 1, y_shape).astype(dtype)
    dx, dk, db = ops.conv2d_backward(dy, x, kernel, **kw)
    rdx, rdk, rdb = reference.conv2d_backward(dy, x, kernel, s, pads, d, kw["groups"])[:3]
    assert dx.dtype == dk.dtype == db.dtype == dtype
    assert_close(dx, rdx, dtype, "dx")
    assert_close(dk, rdk, dtype, "dkernel")
    assert_close(db, rdb, dtype, "dbias")
    # without a bias: the plain sum
    assert_close(ops.conv2d(x, kernel, None, **kw),
                 reference.conv2d(x, kernel, None, s, pads, d, kw["groups"]), dtype, "no bias")


# (x shape, multiplier, stride): the first two are large images in a small batch, which the
# kernels cut into row blocks (conv_direct.pxi's dw_row_blocks)
THREAD_CASES = [
    ((1, 64, 64, 256), 1, 1),
    ((3, 40, 40, 192), 3, 1),
    ((5, 17, 19, 40), 2, 2),
    ((16, 12, 12, 24), 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", THREAD_CASES, ids=[str(c) for c in THREAD_CASES])
def test_depthwise_identical_for_any_thread_count(case, dtype):
    x_shape, m, s = case
    rng = np.random.default_rng(3)
    c = x_shape[3]
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal((3, 3, 1, c * m)).astype(dtype)
    bias = rng.standard_normal(c * m).astype(dtype)
    kw = dict(strides=s, padding="same", groups=c)
    results = []
    for threads in (1, 2, 3):
        cconv.set_num_threads(threads)
        y = ops.conv2d(x, kernel, bias, **kw)
        dy = np.cos(y)
        results.append((y,) + tuple(ops.conv2d_backward(dy, x, kernel, **kw)))
    for other in results[1:]:
        for name, a, b in zip(("y", "dx", "dkernel", "dbias"), results[0], other):
            np.testing.assert_array_equal(a, b, err_msg=name)
    pads = reference.pads_for(x_shape[1:3], (3, 3), (s, s), (1, 1), "same")
    want = _dw_reference(x, kernel, bias, np.cos(results[0][0]), s, pads)
    for name, a, b in zip(("y", "dx", "dkernel", "dbias"), results[0], want):
        assert_close(a, b, dtype, name)


def test_depthwise_non_finite_inputs_match_the_reference():
    """Inf and NaN in x reach exactly the outputs and gradients whose windows hold them (the
    taps are summed in the reference's order; padding taps are skipped, never 0 * Inf)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 9, 10, 20))
    x[0, 4, 0, 3] = np.inf
    x[1, 0, 5, 17] = -np.inf
    x[1, 6, 6, 8] = np.nan
    kernel = rng.standard_normal((3, 3, 1, 40))
    kw = dict(padding="same", groups=20)
    pads = reference.pads_for((9, 10), (3, 3), (1, 1), (1, 1), "same")
    y = ops.conv2d(x, kernel, None, **kw)
    want = reference.conv2d(x, kernel, None, (1, 1), pads, (1, 1), 20)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12, equal_nan=True)
    dy = rng.standard_normal(y.shape)
    got = ops.conv2d_backward(dy, x, kernel, **kw)
    want = reference.conv2d_backward(dy, x, kernel, (1, 1), pads, (1, 1), 20)[:3]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, equal_nan=True)
    assert not np.all(np.isfinite(got[1])) and np.all(np.isfinite(got[1][:, :, :, :6]))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_depthwise_padding_taps_count_as_zeros_times_the_operand(dtype):
    """As in the zero-padded sum: an Inf weight on a tap that reaches the padding makes those
    outputs NaN, and an Inf in dy makes NaN the kernel-gradient taps that read padding for it
    (the kernels skip padding taps, then put these NaNs back)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 6, 7, 18)).astype(dtype)
    kernel = rng.standard_normal((3, 3, 1, 36)).astype(dtype)
    kernel[0, 0, 0, 5] = np.inf
    kernel[2, 1, 0, 30] = -np.inf
    kw = dict(padding="same", groups=18)
    pads = reference.pads_for((6, 7), (3, 3), (1, 1), (1, 1), "same")
    y = ops.conv2d(x, kernel, None, **kw)
    want = reference.conv2d(x, kernel, None, (1, 1), pads, (1, 1), 18)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert np.isnan(y[:, 0, :, 5]).all() and np.isnan(y[:, :, 0, 5]).all()
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy[0, 0, 3, 7] = np.inf
    dy[1, 5, 6, 20] = np.nan
    got = ops.conv2d_backward(dy, x, np.nan_to_num(kernel, posinf=1.0, neginf=-1.0), **kw)
    want = reference.conv2d_backward(dy, x, np.nan_to_num(kernel, posinf=1.0, neginf=-1.0),
                                     (1, 1), pads, (1, 1), 18)[:3]
    for name, a, b in zip(("dx", "dkernel", "dbias"), got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_array_equal(np.isinf(a), np.isinf(b), err_msg=name)
    assert np.isnan(got[1][0, :, 0, 7]).all()    # row 0's dy reads the top padding there


def _dw_reference(x, kernel, bias, dy, s, pads):
    """y, dx, dkernel, dbias of a depthwise convolution in float64, one NumPy slice per tap
    (reference.py's loops over every channel take minutes for 256 channels)."""
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    kh, kw, _, co = kernel.shape
    m = co // c
    (pt, pb), (pl, pr) = pads
    xp = np.repeat(np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0))), m, axis=3)
    oh, ow = dy.shape[1:3]
    k = np.asarray(kernel, np.float64)[:, :, 0, :]
    dy = np.asarray(dy, np.float64)
    y = np.zeros(dy.shape)
    dxp = np.zeros(xp.shape)
    dk = np.zeros(k.shape)
    for a in range(kh):
        for b in range(kw):
            win = (slice(None), slice(a, a + (oh - 1) * s + 1, s),
                   slice(b, b + (ow - 1) * s + 1, s))
            y += xp[win] * k[a, b]
            dxp[win] += dy * k[a, b]
            dk[a, b] = np.einsum("nijc,nijc->c", xp[win], dy)
    dx = dxp[:, pt:pt + h, pl:pl + w].reshape(n, h, w, c, m).sum(axis=4)
    return y + bias, dx, dk.reshape(kernel.shape), dy.sum(axis=(0, 1, 2))


def _layer_path(model, x):
    model.jit_compile = False
    try:
        return model.predict_on_batch(x)
    finally:
        model.jit_compile = True


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_depthwise_models_through_the_plan_equal_the_layer_path(dtype):
    """A grouped Conv2D with groups == channels is a native direct node of the plan, which
    calls the depthwise forward with its relu fused; DepthwiseConv2D and SeparableConv2D run
    the same kernels. predict equals the layer path, bit for bit across thread counts."""
    model = cconv.Sequential([
        Input((16, 16, 8), dtype=dtype),
        DepthwiseConv2D(3, padding="same", activation="relu", dtype=dtype),
        Conv2D(8, 3, groups=8, padding="same", activation="relu", dtype=dtype),
        Conv2D(16, 3, strides=2, groups=8, dtype=dtype),
        DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same", dtype=dtype),
        SeparableConv2D(12, 3, activation="relu", dtype=dtype),
        Flatten(dtype=dtype), Dense(4, dtype=dtype)])
    model.build()
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias[...] = rng.standard_normal(layer.bias.shape)
    plan = cplan.compile_plan(model)
    assert plan is not None
    assert model.layers[1].name in plan.native_layers   # the grouped, depthwise Conv2D
    for n in (1, 5):
        x = rng.standard_normal((n, 16, 16, 8)).astype(dtype)
        expected = _layer_path(model, x)
        first = None
        for threads in (1, 2):
            cconv.set_num_threads(threads)
            y = model.predict_on_batch(x)
            assert_close(y, expected, dtype, f"batch {n}, {threads} threads")
            if first is None:
                first = y
            else:
                np.testing.assert_array_equal(y, first)
