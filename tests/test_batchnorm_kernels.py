"""BatchNormalization's native training kernels (``ops.batch_norm_train`` /
``ops.batch_norm_backward``, cconv/_ext/batchnorm.h) against the NumPy formulas they replaced:
float64 bit for bit, float32 within a few roundings of float64; identical for any thread
count; errors that name the argument."""
import math

import numpy as np
import pytest

import cconv
from cconv import layers as L
from cconv import ops

EPS = 1e-3


def _channel_sum(a, b=None):
    """The float64 per-channel sums the NumPy layer used (ops.channel_sum)."""
    return ops.channel_sum(a, b)


def _numpy_forward(x, gamma, beta, eps=EPS):
    """The previous BatchNormalization.forward(training=True), verbatim."""
    m = math.prod(x.shape[:-1])
    mean = _channel_sum(x) / m
    mean_t = mean.astype(x.dtype)
    xc = x - mean_t
    var = _channel_sum(xc, xc) / m - np.square(mean - mean_t)
    rstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xc *= rstd
    y = xc * gamma if gamma is not None else xc.copy()
    if beta is not None:
        y += beta
    return y, mean, var, rstd, xc


def _numpy_backward(dy, xhat, rstd, gamma):
    """The previous BatchNormalization.backward, verbatim."""
    m = math.prod(dy.shape[:-1])
    dbeta = _channel_sum(dy).astype(dy.dtype)
    dgamma = _channel_sum(dy, xhat).astype(dy.dtype)
    g = rstd if gamma is None else gamma * rstd
    t = dy.dtype.type
    return (g * t(1.0 / m)) * (t(m) * dy - dbeta - xhat * dgamma), dgamma, dbeta


def _data(shape, dtype, affine, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[-1]
    x = (rng.normal(size=shape) * 2 + 3).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype) if affine in ("both", "gamma") else None
    beta = rng.normal(size=c).astype(dtype) if affine in ("both", "beta") else None
    return x, dy, gamma, beta


def _native(x, dy, gamma, beta, relu=False):
    y, mean, var, rstd = ops.batch_norm_train(x, gamma, beta, EPS, relu=relu)
    dx, dgamma, dbeta = ops.batch_norm_backward(dy, x, mean, rstd, gamma, beta, relu=relu)
    return dict(y=y, mean=mean, var=var, rstd=rstd, dx=dx, dgamma=dgamma, dbeta=dbeta)


def _reference(x, dy, gamma, beta):
    y, mean, var, rstd, xhat = _numpy_forward(x, gamma, beta)
    dx, dgamma, dbeta = _numpy_backward(dy, xhat, rstd, gamma)
    return dict(y=y, mean=mean, var=var, rstd=rstd, dx=dx, dgamma=dgamma, dbeta=dbeta)


def _rel(a, b):
    b = np.asarray(b, np.float64)
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


SHAPES = [(8, 6, 5, 1), (8, 6, 5, 3), (4, 7, 5, 17), (2, 9, 9, 64), (300, 1), (129, 3),
          (37, 16), (5, 40), (1, 1, 1, 8), (64, 32, 32, 16)]
AFFINE = ["both", "gamma", "beta", "none"]


@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float64_is_the_numpy_formulas_bit_for_bit(shape, affine):
    x, dy, gamma, beta = _data(shape, np.float64, affine)
    got, want = _native(x, dy, gamma, beta), _reference(x, dy, gamma, beta)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("affine", ["both", "none"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float32_within_a_few_roundings_of_float64(shape, affine):
    x, dy, gamma, beta = _data(shape, np.float32, affine)
    got = _native(x, dy, gamma, beta)
    exact = _reference(*(None if a is None else a.astype(np.float64) for a in (x, dy, gamma,
                                                                                 beta)))
    old = _reference(x, dy, gamma, beta)
    for name in exact:
        assert got[name].dtype == old[name].dtype, name
        if shape[:-1] == (1, 1, 1) and name in ("dx", "dgamma"):
            continue        # one value per channel: xhat = 0, dx = 0 up to rounding
        # no further from float64 than the NumPy float32 code (within one more rounding)
        bound = max(4e-7, 1.5 * _rel(old[name], exact[name]))
        assert _rel(got[name], exact[name]) <= bound, name


@pytest.mark.skipif(not cconv.openmp_enabled(), reason="built without OpenMP: always one thread")
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 32, 32, 16), (16, 9, 7, 3), (33, 17), (4, 8, 8, 64),
                                   (1000, 1)], ids=str)
def test_bit_identical_for_1_2_and_3_threads(shape, dtype, relu, restore_threads, monkeypatch):
    monkeypatch.setattr(ops, "_GRAIN", 1)      # let even small calls use every thread
    x, dy, gamma, beta = _data(shape, dtype, "both", seed=3)
    runs = {}
    for n in (1, 2, 3):
        cconv.set_num_threads(n)
        runs[n] = _native(x, dy, gamma, beta, relu=relu)
    for n in (2, 3):
        for name, value in runs[1].items():
            np.testing.assert_array_equal(runs[n][name], value, err_msg=f"{name}, {n} threads")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 5, 4, 3), (50, 17), (3, 4, 4, 32)], ids=str)
def test_fused_relu_is_bn_then_relu(shape, dtype):
    x, dy, gamma, beta = _data(shape, dtype, "both", seed=5)
    beta = beta * 2          # about half the outputs negative
    fused = _native(x, dy, gamma, beta, relu=True)
    plain = _native(x, dy, gamma, beta)
    np.testing.assert_array_equal(fused["y"], np.maximum(plain["y"], 0))
    masked = _native(x, np.multiply(dy, plain["y"] > 0), gamma, beta)
    for name in ("dx", "dgamma", "dbeta", "mean", "var", "rstd"):
        np.testing.assert_array_equal(fused[name], masked[name], err_msg=name)


def test_inputs_are_not_modified_and_outputs_are_fresh():
    x, dy, gamma, beta = _data((4, 5, 5, 8), np.float32, "both")
    copies = [a.copy() for a in (x, dy, gamma, beta)]
    got = _native(x, dy, gamma, beta)
    for a, b in zip((x, dy, gamma, beta), copies):
        np.testing.assert_array_equal(a, b)
    assert got["y"].flags.c_contiguous and not np.shares_memory(got["y"], x)


def test_noncontiguous_and_mixed_inputs():
    x, dy, gamma, beta = _data((4, 6, 5, 8), np.float64, "both")
    xs = np.asfortranarray(x)
    got = _native(xs, dy[..., ::1], gamma, beta)
    want = _reference(x, dy, gamma, beta)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # float64 statistics with float32 data stay float32 (the mean does not decide the dtype)
    x32, dy32, g32, b32 = _data((4, 6, 5, 8), np.float32, "both")
    y, mean, var, rstd = ops.batch_norm_train(x32, g32, b32)
    assert y.dtype == rstd.dtype == np.float32 and mean.dtype == var.dtype == np.float64
    dx, dgamma, dbeta = ops.batch_norm_backward(dy32, x32, mean, rstd, g32, b32)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == np.float32


def test_empty_batch():
    y, mean, var, rstd = ops.batch_norm_train(np.zeros((0, 4), np.float32))
    assert y.shape == (0, 4) and np.isnan(mean).all() and np.isnan(rstd).all()
    dx, dgamma, dbeta = ops.batch_norm_backward(np.zeros((0, 4)), np.zeros((0, 4)), mean, rstd)
    assert dx.shape == (0, 4) and not dgamma.any() and not dbeta.any()


@pytest.mark.parametrize("call,match", [
    (lambda: ops.batch_norm_train(np.ones(5)), r"x must have shape \(batch, \.\.\., channels\)"),
    (lambda: ops.batch_norm_train(np.ones((2, 3)), np.ones(4)),
     r"gamma must have shape \(3,\).*got \(4,\)"),
    (lambda: ops.batch_norm_train(np.ones((2, 3)), None, np.ones((3, 1))),
     r"beta must have shape \(3,\).*got \(3, 1\)"),
    (lambda: ops.batch_norm_train(np.ones((2, 3)), epsilon=0), "epsilon must be positive"),
    (lambda: ops.batch_norm_train(np.ones((2, 3)), epsilon=float("nan")),
     "epsilon must be positive"),
    (lambda: ops.batch_norm_backward(np.ones((2, 4)), np.ones((2, 3)), np.ones(3), np.ones(3)),
     r"dy must have the shape of x \(2, 3\), got \(2, 4\)"),
    (lambda: ops.batch_norm_backward(np.ones((2, 3)), np.ones((2, 3)), np.ones(2), np.ones(3)),
     r"mean must have shape \(3,\)"),
    (lambda: ops.batch_norm_backward(np.ones((2, 3)), np.ones((2, 3)), np.ones(3), np.ones(1)),
     r"rstd must have shape \(3,\)"),
])
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_layer_large_input_matches_the_numpy_layer_float64():
    """The layer on 64x32x32x16, training step in float64: the former NumPy layer's bits,
    moving statistics and gradients included; scale=False / center=False too."""
    for kw in ({}, {"scale": False}, {"center": False}):
        x, dy, _, _ = _data((64, 32, 32, 16), np.float64, "none", seed=7)
        bn = L.BatchNormalization(dtype="float64", momentum=0.9, **kw)
        bn.build(x.shape[1:])
        if bn.gamma is not None:
            bn.gamma[...] = np.linspace(0.5, 1.5, 16)
        bn.grads = {k: np.zeros(16) for k in ("gamma", "beta") if getattr(bn, k) is not None}
        gamma = None if bn.gamma is None else bn.gamma.copy()
        y = bn.forward(x, training=True)
        dx = bn.backward(dy)
        want = _reference(x, dy, gamma, bn.beta)
        np.testing.assert_array_equal(y, want["y"])
        np.testing.assert_array_equal(dx, want["dx"])
        np.testing.assert_array_equal(bn.moving_mean, want["mean"] * (1 - 0.9))
        np.testing.assert_array_equal(bn.moving_variance, 0.9 + want["var"] * (1 - 0.9))
        for k in bn.grads:
            np.testing.assert_array_equal(bn.grads[k], want["d" + k])


def test_layer_after_dense_2d_input():
    x, dy, _, _ = _data((32, 5), np.float32, "none", seed=9)
    bn = L.BatchNormalization()
    bn.build(x.shape[1:])
    bn.grads = {"gamma": np.zeros(5, np.float32), "beta": np.zeros(5, np.float32)}
    y = bn.forward(x, training=True)
    dx = bn.backward(dy)
    want = _reference(x, dy, bn.gamma, bn.beta)
    assert _rel(y, want["y"]) < 1e-6 and _rel(dx, want["dx"]) < 1e-5
    assert _rel(bn.grads["gamma"], want["dgamma"]) < 1e-6
