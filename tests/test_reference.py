"""Property tests against the slow NumPy reference, including what TensorFlow cannot do
(dilation with strides > 1, asymmetric explicit padding, any groups)."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cconv import ops

from . import reference as ref
from ._helpers import assert_close


@st.composite
def conv_problems(draw):
    groups = draw(st.integers(1, 3))
    # narrow groups run the direct kernels, wide ones im2col + GEMM: draw both
    wide = draw(st.booleans())
    cg = draw(st.integers(5, 6) if wide else st.integers(1, 3))
    cog = draw(st.integers(9, 10) if wide else st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["valid", "same", "explicit"]))
    pads = ((draw(st.integers(0, 3)), draw(st.integers(0, 3))),
            (draw(st.integers(0, 3)), draw(st.integers(0, 3))))
    extra_h, extra_w = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    # input at least the effective kernel, so every padding mode is valid
    h = (kh - 1) * dh + 1 + extra_h
    w = (kw - 1) * dw + 1 + extra_w
    n = draw(st.integers(1, 3))
    padding = pads if kind == "explicit" else kind
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**31))
    return (
        (n, h, w, groups * cg),
        (kh, kw, cg, groups * cog),
        (sh, sw),
        padding,
        (dh, dw),
        groups,
        dtype,
        seed,
    )


@settings(max_examples=60, deadline=None)
@given(conv_problems())
def test_conv2d_and_backward_match_reference(problem):
    x_shape, k_shape, strides, padding, dilation, groups, dtype, seed = problem
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal(k_shape).astype(dtype)
    bias = rng.standard_normal(k_shape[3]).astype(dtype)
    pads = ref.pads_for(x_shape[1:3], k_shape[:2], strides, dilation, padding)
    assert ops.compute_padding(x_shape[1:3], k_shape[:2], strides, padding, dilation) == pads

    y = ops.conv2d(x, kernel, bias, strides=strides, padding=padding, dilation_rate=dilation,
                   groups=groups)
    assert_close(y, ref.conv2d(x, kernel, bias, strides, pads, dilation, groups), dtype, "forward")

    dy = rng.standard_normal(y.shape).astype(dtype)
    got = ops.conv2d_backward(dy, x, kernel, strides=strides, padding=padding,
                              dilation_rate=dilation, groups=groups)
    want = ref.conv2d_backward(dy, x, kernel, strides, pads, dilation, groups)
    for name, a, b in zip(("dx", "dkernel", "dbias"), got, want):
        assert_close(a, b, dtype, name)


@st.composite
def pool_problems(draw):
    ph, pw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["valid", "same", "explicit"]))
    pads = ((draw(st.integers(0, ph - 1)), draw(st.integers(0, ph - 1))),
            (draw(st.integers(0, pw - 1)), draw(st.integers(0, pw - 1))))
    h, w = ph + draw(st.integers(0, 6)), pw + draw(st.integers(0, 6))
    shape = (draw(st.integers(1, 2)), h, w, draw(st.integers(1, 3)))
    return (
        shape,
        (ph, pw),
        (sh, sw),
        pads if kind == "explicit" else kind,
        draw(st.booleans()),
        draw(st.integers(0, 2**31)),
    )


@settings(max_examples=60, deadline=None)
@given(pool_problems(), st.sampled_from(["max", "avg"]))
def test_pooling_matches_reference(problem, mode):
    shape, pool, strides, padding, ties, seed = problem
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, shape).astype(np.float64) if ties else rng.standard_normal(shape)
    pads = ref.pads_for(shape[1:3], pool, strides, (1, 1), padding)
    fwd = ops.max_pool2d if mode == "max" else ops.avg_pool2d
    bwd = ops.max_pool2d_backward if mode == "max" else ops.avg_pool2d_backward
    y = fwd(x, pool, strides, padding)
    assert_close(y, ref.pool2d(x, pool, strides, pads, mode), np.float64, "forward")
    dy = rng.standard_normal(y.shape)
    dx = bwd(dy, x, pool, strides, padding)
    assert_close(dx, ref.pool2d_backward(dy, x, pool, strides, pads, mode), np.float64, "dx")


@st.composite
def winograd_problems(draw):
    """3x3, stride 1, dilation 1, >= 16 channels: the Winograd path (forward and dx)."""
    c, co = draw(st.integers(16, 19)), draw(st.integers(16, 19))
    kind = draw(st.sampled_from(["valid", "same", "explicit"]))
    pads = ((draw(st.integers(0, 3)), draw(st.integers(0, 3))),
            (draw(st.integers(0, 3)), draw(st.integers(0, 3))))
    h, w = draw(st.integers(3, 9)), draw(st.integers(3, 9))
    n = draw(st.integers(1, 3))
    padding = pads if kind == "explicit" else kind
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**31))
    return (n, h, w, c), (3, 3, c, co), padding, dtype, seed


@settings(max_examples=40, deadline=None)
@given(winograd_problems())
def test_winograd_conv2d_and_backward_match_reference(problem):
    x_shape, k_shape, padding, dtype, seed = problem
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal(k_shape).astype(dtype)
    bias = rng.standard_normal(k_shape[3]).astype(dtype)
    pads = ref.pads_for(x_shape[1:3], (3, 3), (1, 1), (1, 1), padding)
    y = ops.conv2d(x, kernel, bias, padding=padding)
    assert_close(y, ref.conv2d(x, kernel, bias, (1, 1), pads, (1, 1), 1), dtype, "forward")
    dy = rng.standard_normal(y.shape).astype(dtype)
    got = ops.conv2d_backward(dy, x, kernel, padding=padding)
    want = ref.conv2d_backward(dy, x, kernel, (1, 1), pads, (1, 1), 1)
    for name, a, b in zip(("dx", "dkernel", "dbias"), got, want):
        assert_close(a, b, dtype, name)
