"""The layers of cconv/layers/merging.py, reshaping.py, conv_transpose.py and depthwise.py:
Keras 3 agreement (forward, input and weight
gradients through tf.GradientTape, float32 and float64), config round trips, argument errors,
and one optimizer step of a Sequential model made of them."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cconv
from cconv import layers as L

from . import reference
from ._helpers import assert_close

DTYPES = [np.float32, np.float64]

# (keras layer factory, cconv layer factory, sample shape); keyword arguments are shared.
SINGLE = [
    ("Conv2DTranspose", dict(filters=3, kernel_size=3, strides=2, padding="same"), (5, 4, 2)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=(3, 2), strides=(2, 3)), (4, 5, 3)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=4, strides=2, padding="same",
                             output_padding=1), (3, 5, 2)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=3, strides=3, output_padding=(2, 1),
                             activation="relu"), (3, 3, 2)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=2, strides=3), (3, 4, 1)),
    ("Conv2DTranspose", dict(filters=3, kernel_size=5, padding="same", use_bias=False), (5, 6, 2)),
    ("DepthwiseConv2D", dict(kernel_size=3, depth_multiplier=2, padding="same"), (6, 5, 3)),
    ("DepthwiseConv2D", dict(kernel_size=(3, 2), strides=2, activation="relu"), (7, 6, 2)),
    ("DepthwiseConv2D", dict(kernel_size=3, strides=2, dilation_rate=2, padding="same"),
     (9, 8, 2)),
    ("SeparableConv2D", dict(filters=4, kernel_size=3, padding="same", depth_multiplier=2),
     (6, 5, 3)),
    ("SeparableConv2D", dict(filters=3, kernel_size=(2, 3), strides=2, activation="tanh"),
     (7, 6, 2)),
    ("UpSampling2D", dict(size=(2, 3)), (3, 4, 2)),
    ("UpSampling2D", dict(size=3, interpolation="bilinear"), (3, 4, 2)),
    ("UpSampling2D", dict(size=(2, 1), interpolation="bilinear"), (5, 3, 19)),
    ("ZeroPadding2D", dict(padding=((1, 2), (0, 3))), (3, 4, 2)),
    ("ZeroPadding2D", dict(padding=1), (2, 3, 1)),
    ("Cropping2D", dict(cropping=((1, 0), (2, 1))), (5, 6, 2)),
    ("Cropping2D", dict(cropping=1), (4, 3, 2)),
    ("Reshape", dict(target_shape=(-1, 2)), (3, 4, 2)),
    ("Reshape", dict(target_shape=(6, 4)), (3, 4, 2)),
    ("Permute", dict(dims=(3, 1, 2)), (3, 4, 2)),
    ("Permute", dict(dims=(2, 1)), (3, 5)),
    # Keras casts a Python float scale to float32 before float64 (1 / 255 loses digits
    # there): these scales are exact in float32.
    ("Rescaling", dict(scale=0.375, offset=-1.0), (3, 4, 2)),
    ("Rescaling", dict(scale=[0.5, 2.0], offset=0.25), (3, 4, 2)),
]


def _tol_dtype(cls, kwargs, dtype):
    # Keras resizes float64 images in float32 (tf.image.resize's ResizeBilinear casts to
    # float): compare cconv's float64 result with float32's tolerance.
    if kwargs.get("interpolation") == "bilinear":
        return np.float32
    return dtype


def _tf_run(kl, xs, rng, dtype):
    """Keras outputs, the random cotangent and the gradients (inputs, then trainables)."""
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is needed for Keras agreement")
    xts = [tf.constant(x) for x in xs]
    with tf.GradientTape() as tape:
        tape.watch(xts)
        yk = kl(xts if len(xts) > 1 else xts[0])
        r = rng.normal(size=tuple(yk.shape)).astype(dtype)
        obj = tf.reduce_sum(yk * tf.constant(r))
    grads = tape.gradient(obj, xts + list(kl.trainable_weights))
    return yk.numpy(), r, [g.numpy() for g in grads]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cls,kwargs,shape", SINGLE,
                         ids=[f"{c}{i}" for i, (c, _, _) in enumerate(SINGLE)])
def test_single_input_layer_matches_keras(cls, kwargs, shape, dtype):
    keras = pytest.importorskip("keras", reason="Keras is needed for the agreement tests")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2,) + shape).astype(dtype)
    kl = getattr(keras.layers, cls)(dtype=np.dtype(dtype).name, **kwargs)
    cl = getattr(L, cls)(dtype=np.dtype(dtype).name, **kwargs)
    kl.build((None,) + shape)
    cl.build(shape)
    weights = [rng.uniform(-1, 1, w.shape).astype(dtype) for w in kl.get_weights()]
    kl.set_weights(weights)
    cl.set_weights(weights)
    yk, r, gk = _tf_run(kl, [x], rng, dtype)
    tol = _tol_dtype(cls, kwargs, dtype)
    yc = cl.forward(x, training=True)
    assert yc.dtype == dtype
    assert cl.output_shape == tuple(kl.compute_output_shape((None,) + shape))
    assert_close(yc, yk, tol, "forward")
    dx = cl.backward(r)
    assert dx.dtype == dtype
    assert_close(dx, gk[0], tol, "dx")
    for name, g in zip(cl._trainable_names, gk[1:]):
        assert_close(cl.grads[name], g, tol, f"d{name}")


def test_bilinear_float32_is_bit_identical_to_keras():
    keras = pytest.importorskip("keras", reason="Keras is needed for the agreement tests")
    x = np.random.default_rng(3).normal(size=(2, 5, 7, 3)).astype(np.float32)
    for size in [(2, 2), (3, 5), (1, 7)]:
        yk = keras.layers.UpSampling2D(size, interpolation="bilinear")(x).numpy()
        yc = L.UpSampling2D(size, interpolation="bilinear")(x)
        np.testing.assert_array_equal(yc, yk)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_conv_transpose_dilated_matches_reference(dtype):
    # TensorFlow's CPU kernels refuse dilation in Conv2DTranspose: compare with the slow
    # reference convolution's input and kernel gradients instead.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 4, 5, 3)).astype(dtype)
    layer = L.Conv2DTranspose(2, (3, 2), dilation_rate=(2, 3), padding="same", dtype=dtype)
    layer.build(x.shape[1:])
    y = layer.forward(x, training=True)
    assert y.shape == (2, 4, 5, 2)
    kernel, bias = layer.get_weights()
    pads = reference.pads_for((4, 5), (3, 2), (1, 1), (2, 3), "same")
    ref = reference.conv2d_backward(x, np.zeros(y.shape), kernel, (1, 1), pads, (2, 3), 1)[0]
    assert_close(y, ref + bias, dtype, "forward")
    dy = rng.normal(size=y.shape).astype(dtype)
    dx = layer.backward(dy)
    assert_close(dx, reference.conv2d(dy, kernel, None, (1, 1), pads, (2, 3), 1), dtype, "dx")
    dk = reference.conv2d_backward(x, dy, kernel, (1, 1), pads, (2, 3), 1)[1]
    assert_close(layer.grads["kernel"], dk, dtype, "dkernel")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_depthwise_unequal_strides_match_reference(dtype):
    # TensorFlow's CPU depthwise kernel refuses different row and column strides.
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 7, 6, 2)).astype(dtype)
    layer = L.SeparableConv2D(3, (3, 2), strides=(2, 1), depth_multiplier=2, dtype=dtype)
    layer.build(x.shape[1:])
    dk, pk, bias = [rng.normal(size=w.shape).astype(dtype) for w in layer.get_weights()]
    layer.set_weights([dk, pk, bias])
    y = layer.forward(x, training=True)
    grouped = dk.reshape(3, 2, 1, 4)
    mid = reference.conv2d(x, grouped, None, (2, 1), ((0, 0), (0, 0)), (1, 1), 2)
    assert_close(y, reference.conv2d(mid, pk, bias, (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
                 dtype, "forward")
    dy = rng.normal(size=y.shape).astype(dtype)
    dx = layer.backward(dy)
    dmid, dpk, _ = reference.conv2d_backward(dy, mid, pk, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    rdx, rdk, _ = reference.conv2d_backward(dmid, x, grouped, (2, 1), ((0, 0), (0, 0)), (1, 1), 2)
    assert_close(dx, rdx, dtype, "dx")
    assert_close(layer.grads["pointwise_kernel"], dpk, dtype, "dpointwise")
    assert_close(layer.grads["depthwise_kernel"], rdk.reshape(dk.shape), dtype, "ddepthwise")


@st.composite
def _transpose_problems(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (1, 1) if max(s) > 1 else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["valid", "same"]))
    op = draw(st.sampled_from([None, "draw"]))
    if op is not None:
        op = tuple(draw(st.integers(0, s[i] - 1)) for i in range(2))
        if padding == "same" and any((k[i] - 1) * d[i] % 2 == 1 and op[i] == 0 for i in range(2)):
            op = None       # an even effective kernel needs output_padding >= 1 with "same"
    n = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return k, s, d, padding, op, n, draw(st.integers(1, 3)), draw(st.integers(1, 3))


def _transpose_size(n, k, s, d, padding, op):
    """Keras 3's output size of a transposed convolution, written afresh."""
    ke = (k - 1) * d + 1
    if padding == "valid":
        return (n - 1) * s + ke + (max(ke, s) - ke if op is None else op)
    return n * s if op is None else (n - 1) * s + ke % 2 + op


@settings(max_examples=40, deadline=None)
@given(_transpose_problems())
def test_conv2d_transpose_matches_reference(problem):
    k, s, d, padding, op, n, cin, cout = problem
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2,) + n + (cin,))
    kernel = rng.normal(size=k + (cout, cin))
    bias = rng.normal(size=cout)
    out = tuple(_transpose_size(n[i], k[i], s[i], d[i], padding, None if op is None else op[i])
                for i in range(2))
    y = cconv.ops.conv2d_transpose(x, kernel, bias, s, padding, op, d)
    assert y.shape == (2,) + out + (cout,)
    pads = reference.pads_for(out, k, s, d, padding)
    ref = reference.conv2d_backward(x, np.zeros(y.shape), kernel, s, pads, d, 1)[0]
    assert_close(y, ref + bias, np.float64, "forward")
    dy = rng.normal(size=y.shape)
    dx, dk, db = cconv.ops.conv2d_transpose_backward(dy, x, kernel, s, padding, op, d)
    assert_close(dx, reference.conv2d(dy, kernel, None, s, pads, d, 1), np.float64, "dx")
    assert_close(dk, reference.conv2d_backward(x, dy, kernel, s, pads, d, 1)[1], np.float64,
                 "dkernel")
    assert_close(db, dy.sum(axis=(0, 1, 2)), np.float64, "dbias")


def test_ops_errors_name_the_argument():
    x = np.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="channels"):
        cconv.ops.conv2d_transpose(x, np.zeros((3, 3, 5, 3)))
    with pytest.raises(ValueError, match="bias"):
        cconv.ops.conv2d_transpose(x, np.zeros((3, 3, 5, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="output_padding"):
        cconv.ops.conv2d_transpose(x, np.zeros((3, 3, 5, 2)), strides=2, output_padding=2)
    with pytest.raises(ValueError, match="padding"):
        cconv.ops.conv2d_transpose(x, np.zeros((3, 3, 5, 2)), padding=1)
    with pytest.raises(ValueError, match="dy must have"):
        cconv.ops.conv2d_transpose_backward(np.zeros((1, 4, 4, 5)), x, np.zeros((3, 3, 5, 2)))
    with pytest.raises(ValueError, match="interpolation"):
        cconv.ops.upsampling2d(x, 2, "area")
    with pytest.raises(ValueError, match="size"):
        cconv.ops.upsampling2d(x, 0)
    with pytest.raises(ValueError, match="dy must have"):
        cconv.ops.upsampling2d_backward(np.zeros((1, 8, 7, 2)), x, 2)
    with pytest.raises(ValueError, match="x must be 4-D"):
        cconv.ops.upsampling2d(np.zeros((4, 4, 2)), 2)


def test_caches_are_not_pickled():
    x = np.ones((2, 5, 5, 2), np.float32)
    for layer in (L.SeparableConv2D(2, 3), L.UpSampling2D(), L.Cropping2D(1), L.Multiply()):
        args = [x, x] if isinstance(layer, L.Multiply) else x
        if not isinstance(layer, L.Multiply):
            layer.build(x.shape[1:])
        layer.forward(args, training=True)
        clone = pickle.loads(pickle.dumps(layer))
        assert not {"_x", "_mid", "_xs", "_xshape"} & set(vars(clone))
        assert clone.get_config() == layer.get_config()


# --------------------------------------------------------------------------- merging
MERGES = [
    ("Add", {}, [(4, 3), (4, 3), (4, 3)]),
    ("Add", {}, [(4, 3), (1, 3)]),
    ("Add", {}, [(2, 4, 3), (3,)]),      # lower rank: axes inserted after the batch axis
    ("Subtract", {}, [(2, 3, 2), (2, 3, 2)]),
    ("Multiply", {}, [(4, 3), (4, 3), (4, 3)]),
    ("Multiply", {}, [(4, 3), (4, 1)]),
    ("Multiply", {}, [(1, 3), (2, 1, 1)]),
    ("Average", {}, [(5,), (5,), (5,)]),
    ("Maximum", {}, [(4, 3), (4, 3), (4, 3)]),
    ("Maximum", {}, [(4, 3), (1, 3)]),
    ("Minimum", {}, [(4, 3), (4, 3)]),
    ("Concatenate", {}, [(3, 2, 2), (3, 2, 1), (3, 2, 4)]),
    ("Concatenate", dict(axis=1), [(1, 4), (3, 4)]),
    ("Concatenate", dict(axis=-2), [(2, 1, 3), (2, 2, 3)]),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cls,kwargs,shapes", MERGES,
                         ids=[f"{c}{i}" for i, (c, _, _) in enumerate(MERGES)])
def test_merge_layer_matches_keras(cls, kwargs, shapes, dtype):
    keras = pytest.importorskip("keras", reason="Keras is needed for the agreement tests")
    rng = np.random.default_rng(11)
    # small integers make ties, where Maximum's and Minimum's gradient rule shows
    xs = [rng.integers(-2, 3, size=(2,) + s).astype(dtype) for s in shapes]
    kl = getattr(keras.layers, cls)(dtype=np.dtype(dtype).name, **kwargs)
    cl = getattr(L, cls)(dtype=np.dtype(dtype).name, **kwargs)
    assert cl._multi_input
    yk, r, gk = _tf_run(kl, xs, rng, dtype)
    cl.build(shapes)
    assert cl.output_shape == (None,) + cl.compute_output_shape(shapes)
    assert cl.output_shape == (None,) + yk.shape[1:]
    yc = cl.forward(xs, training=True)
    assert yc.dtype == dtype
    assert_close(yc, yk, dtype, "forward")
    dxs = cl.backward(r)
    assert len(dxs) == len(xs)
    for i, (a, b) in enumerate(zip(dxs, gk)):
        assert a.dtype == dtype
        assert_close(a, b, dtype, f"dx{i}")
    assert not any(np.may_share_memory(a, r) for a in dxs)


def test_maximum_ties_go_to_the_first_input():
    x = np.array([[1.0, 2.0, 3.0]])
    layer = L.Maximum()
    layer.forward([x, x.copy(), np.array([[1.0, 0.0, 3.0]])], training=True)
    g0, g1, g2 = layer.backward(np.ones((1, 3)))
    np.testing.assert_array_equal(g0, [[1, 1, 1]])
    np.testing.assert_array_equal(g1 + g2, [[0, 0, 0]])


def test_merge_call_checks_inputs():
    layer = L.Add()
    y = layer([np.ones((2, 3)), np.ones((2, 3))])
    assert y.dtype == np.float32 and y.shape == (2, 3)
    with pytest.raises(ValueError, match="sample shapes"):
        layer([np.ones((2, 4)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="batch sizes"):
        L.Add()([np.ones((2, 3)), np.ones((3, 3))])
    with pytest.raises(ValueError, match="at least 2 inputs"):
        L.Add()([np.ones((2, 3))])
    with pytest.raises(ValueError, match="needs 2 inputs"):
        L.Subtract().build([(3,), (3,), (3,)])
    with pytest.raises(ValueError, match="incompatible shapes"):
        L.Multiply().build([(3, 2), (3, 4)])
    with pytest.raises(ValueError, match="every axis but"):
        L.Concatenate().build([(3, 2), (4, 2)])
    with pytest.raises(ValueError, match="batch axis"):
        L.Concatenate(axis=0).build([(3, 2), (3, 2)])
    with pytest.raises(TypeError, match="list of arrays"):
        L.Add()(np.ones((2, 3)))


# --------------------------------------------------------------------------- config, errors
CONFIG_LAYERS = [
    lambda: L.Conv2DTranspose(3, (3, 2), strides=2, padding="same", output_padding=(1, 1),
                              activation="relu", use_bias=False),
    lambda: L.DepthwiseConv2D(3, strides=2, depth_multiplier=3, dilation_rate=1),
    lambda: L.SeparableConv2D(4, 3, padding="same", depth_multiplier=2, activation="tanh"),
    lambda: L.UpSampling2D((2, 3), interpolation="bilinear"),
    lambda: L.ZeroPadding2D(((1, 2), (0, 3))),
    lambda: L.Cropping2D(((1, 0), (2, 1))),
    lambda: L.Reshape((-1, 3)),
    lambda: L.Permute((2, 1, 3)),
    lambda: L.Rescaling([0.5, 2.0, 1.0], offset=0.25),
]


@pytest.mark.parametrize("make", CONFIG_LAYERS, ids=lambda f: type(f()).__name__)
def test_config_round_trip(make):
    layer = make()
    layer.build((7, 6, 3))
    clone = L.deserialize(L.serialize(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    clone.build((7, 6, 3))
    clone.set_weights(layer.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 7, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(clone(x), layer(x))


@pytest.mark.parametrize("cls", ["Add", "Subtract", "Multiply", "Average", "Maximum",
                                 "Minimum", "Concatenate"])
def test_merge_config_round_trip(cls):
    layer = getattr(L, cls)(**({"axis": 1} if cls == "Concatenate" else {}))
    clone = L.deserialize(L.serialize(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


BAD = [
    (lambda: L.Conv2DTranspose(0, 3), "filters"),
    (lambda: L.Conv2DTranspose(2, 3, strides=2, output_padding=2), "output_padding"),
    (lambda: L.Conv2DTranspose(2, 3, strides=2, dilation_rate=2), "dilation_rate"),
    (lambda: L.Conv2DTranspose(2, 2, padding="same", output_padding=0).build((4, 4, 1)),
     "output_padding"),
    (lambda: L.Conv2DTranspose(2, 3, padding="full"), "padding"),
    (lambda: L.DepthwiseConv2D(3, depth_multiplier=0), "depth_multiplier"),
    (lambda: L.DepthwiseConv2D(5).build((3, 3, 2)), "too small"),
    (lambda: L.SeparableConv2D(-1, 3), "filters"),
    (lambda: L.SeparableConv2D(2, (3, 0)), "kernel_size"),
    (lambda: L.UpSampling2D(0), "size"),
    (lambda: L.UpSampling2D(2, interpolation="bicubic"), "interpolation"),
    (lambda: L.ZeroPadding2D(-1), "padding"),
    (lambda: L.ZeroPadding2D((1, 2, 3)), "padding"),
    (lambda: L.Cropping2D(((2, 2), (0, 0))).build((4, 5, 1)), "cropping"),
    (lambda: L.Cropping2D("a"), "cropping"),
    (lambda: L.Reshape((-1, -1)), "target_shape"),
    (lambda: L.Reshape((5, 5)).build((3, 4, 2)), "target_shape"),
    (lambda: L.Reshape((-1, 5)).build((3, 4, 2)), "Reshape"),
    (lambda: L.Permute((0, 1, 2)), "dims"),
    (lambda: L.Permute((2, 1)).build((3, 4, 2)), "dims"),
    (lambda: L.Rescaling([1.0, 2.0]).build((3, 4, 3)), "scale"),
    (lambda: L.Conv2DTranspose(2, 3, data_format="channels_first"), "data_format"),
]


@pytest.mark.parametrize("make,word", BAD, ids=[w + str(i) for i, (_, w) in enumerate(BAD)])
def test_bad_arguments_raise_naming_the_argument(make, word):
    with pytest.raises((ValueError, TypeError), match=word):
        make()


def test_inputs_are_not_modified():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 4, 4, 2)).astype(np.float32)
    keep = x.copy()
    for layer in (L.Rescaling(2.0), L.ZeroPadding2D(1), L.Cropping2D(1), L.UpSampling2D(),
                  L.Permute((2, 1, 3)), L.Conv2DTranspose(2, 3, strides=2),
                  L.SeparableConv2D(2, 3), L.DepthwiseConv2D(3)):
        layer.build(x.shape[1:])
        y = layer.forward(x, training=True)
        layer.backward(np.ones_like(y))
    for layer in (L.Add(), L.Multiply(), L.Maximum(), L.Concatenate()):
        layer.forward([x, x], training=True)
        layer.backward(np.ones((2, 4, 4, 4 if isinstance(layer, L.Concatenate) else 2),
                               np.float32))
    np.testing.assert_array_equal(x, keep)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling_same_result_for_any_thread_count(interpolation):
    x = np.random.default_rng(4).normal(size=(3, 33, 17, 40)).astype(np.float32)
    dy = np.random.default_rng(5).normal(size=(3, 66, 51, 40)).astype(np.float32)
    before = cconv.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            cconv.set_num_threads(n)
            results.append((cconv.ops.upsampling2d(x, (2, 3), interpolation),
                            cconv.ops.upsampling2d_backward(dy, x, (2, 3), interpolation)))
    finally:
        cconv.set_num_threads(before)
    for y, dx in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])


# --------------------------------------------------------------------------- in a model
def _stack(mod, dtype):
    k = mod.layers
    kw = {"dtype": np.dtype(dtype).name}
    return [
        k.Rescaling(0.5, offset=0.25, **kw),
        k.ZeroPadding2D(((1, 0), (2, 1)), **kw),
        k.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu", **kw),
        k.Cropping2D(((1, 2), (0, 1)), **kw),
        k.DepthwiseConv2D(3, strides=2, depth_multiplier=2, **kw),
        k.UpSampling2D((2, 1), interpolation="bilinear", **kw),
        k.SeparableConv2D(4, (3, 2), padding="same", activation="tanh", **kw),
        k.UpSampling2D(2, **kw),
        k.Permute((2, 1, 3), **kw),
        k.Reshape((-1, 8), **kw),
        k.Flatten(**kw),
        k.Dense(3, **kw),
    ]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_sequential_sgd_step_matches_keras(dtype):
    keras = pytest.importorskip("keras", reason="Keras is needed for the agreement tests")
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4, 5, 6, 2)).astype(dtype)
    y = rng.normal(size=(4, 3)).astype(dtype)
    km = keras.Sequential([keras.Input((5, 6, 2), dtype=np.dtype(dtype).name)]
                          + _stack(keras, dtype))
    cm = cconv.Sequential([cconv.Input((5, 6, 2), dtype=np.dtype(dtype).name)]
                          + _stack(cconv, dtype))
    weights = [rng.uniform(-0.5, 0.5, w.shape).astype(dtype) for w in km.get_weights()]
    km.set_weights(weights)
    cm.set_weights(weights)
    assert_close(cm.predict(x, verbose=0), km.predict(x, verbose=0), np.float32, "predict")
    for m, mod in ((km, keras), (cm, cconv)):
        m.compile(optimizer=mod.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="mse")
        m.train_on_batch(x, y)
        m.train_on_batch(x, y)
    # bilinear resizing runs in float32 inside Keras even for float64 models
    for a, b in zip(cm.get_weights(), km.get_weights()):
        assert_close(a, b, np.float32, "weights after two steps")


def test_from_keras_converts_these_layers():
    keras = pytest.importorskip("keras", reason="Keras is needed for the agreement tests")
    km = keras.Sequential([keras.Input((5, 6, 2))] + _stack(keras, np.float32))
    cm = cconv.from_keras(km)
    assert [type(l).__name__ for l in cm.layers] == [type(l).__name__ for l in km.layers]
    x = np.random.default_rng(3).normal(size=(3, 5, 6, 2)).astype(np.float32)
    assert_close(cm.predict(x, verbose=0), km.predict(x, verbose=0), np.float32, "predict")
