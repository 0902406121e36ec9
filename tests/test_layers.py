"""A common check suite over every cconv layer: build, output shape, backward against
central finite differences (float64), weights round trip, config round trip, inputs
untouched, pickling; then layer-specific errors."""
import pickle

import numpy as np
import pytest

import cconv
from cconv import layers as L

from ._helpers import numeric_grad

# (factory, sample input shape). Kinks (relu, max) are kept away from by random inputs.
LAYER_CASES = [
    (lambda: L.Dense(4, activation="tanh"), (5,)),
    (lambda: L.Dense(3, activation="softmax"), (6,)),
    (lambda: L.Dense(3, use_bias=False), (2, 5)),                       # rank-3 input
    (lambda: L.Conv2D(3, 3, padding="same", activation="sigmoid"), (6, 5, 2)),
    (lambda: L.Conv2D(4, (3, 2), strides=(2, 1), padding="valid"), (7, 6, 2)),
    (lambda: L.Conv2D(4, 3, dilation_rate=2, groups=2, activation="elu"), (7, 7, 4)),
    (lambda: L.MaxPooling2D(2), (6, 6, 3)),
    (lambda: L.MaxPooling2D(3, strides=2, padding="same"), (7, 6, 2)),
    (lambda: L.AveragePooling2D(2), (6, 6, 3)),
    (lambda: L.AveragePooling2D(3, strides=2, padding="same"), (7, 6, 2)),
    (lambda: L.GlobalAveragePooling2D(), (4, 5, 3)),
    (lambda: L.GlobalMaxPooling2D(keepdims=True), (4, 5, 3)),
    (lambda: L.Flatten(), (3, 4, 2)),
    (lambda: L.Activation("gelu"), (7,)),
    (lambda: L.Activation("leaky_relu"), (7,)),
    (lambda: L.ReLU(max_value=0.6, negative_slope=0.1, threshold=0.2), (9,)),
    (lambda: L.LeakyReLU(), (9,)),
    (lambda: L.Softmax(), (3, 5)),
    (lambda: L.BatchNormalization(), (4, 4, 3)),
    (lambda: L.BatchNormalization(center=False), (6,)),
]
IDS = [f"{f().__class__.__name__}-{i}" for i, (f, _) in enumerate(LAYER_CASES)]


def _make(factory, shape, dtype="float64"):
    layer = factory()
    layer.dtype = dtype
    layer.build(shape)
    rng = np.random.default_rng(0)
    # Non-trivial weights (biases, BN gamma/beta) so their gradients are exercised.
    layer.set_weights([w + rng.normal(0, 0.3, w.shape) if n in ("bias", "gamma", "beta") else w
                       for n, w in zip(layer.weight_names, layer.weights)])
    return layer


@pytest.mark.parametrize("factory,shape", LAYER_CASES, ids=IDS)
def test_layer_backward_matches_finite_differences(factory, shape):
    layer = _make(factory, shape)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2,) + shape)
    y = layer.forward(x, training=True)
    assert y.shape == (2,) + layer._output_shape
    r = rng.normal(size=y.shape)                        # loss = sum(r * y)
    dx = layer.backward(r)
    grads = {k: v.copy() for k, v in layer.grads.items()}

    def loss(xv):
        return float((layer.forward(xv, training=True) * r).sum())

    num = numeric_grad(loss, x)
    np.testing.assert_allclose(dx, num, rtol=1e-5, atol=1e-6)
    for name, g in grads.items():
        numw = numeric_grad(lambda _: loss(x), getattr(layer, name))
        np.testing.assert_allclose(g, numw, rtol=1e-5, atol=1e-6, err_msg=f"grad of {name}")


@pytest.mark.parametrize("factory,shape", LAYER_CASES, ids=IDS)
def test_layer_common_contract(factory, shape):
    layer = factory()
    x = np.random.default_rng(2).normal(size=(3,) + shape).astype(np.float32)
    x0 = x.copy()
    y = layer(x)                                         # builds on first call
    assert layer.built and y.dtype == np.float32
    assert y.shape == (3,) + tuple(layer.compute_output_shape(shape))
    assert layer.output_shape == (None,) + y.shape[1:]
    layer(x, training=True)
    np.testing.assert_array_equal(x, x0)                 # inputs never modified
    # get/set_weights round trip, Keras order and shapes, copies not views.
    ws = layer.get_weights()
    layer.set_weights([w + 1 for w in ws])
    for a, b in zip(layer.get_weights(), ws):
        np.testing.assert_array_equal(a, b + 1)
    ws[0:0] = []
    # config round trip gives an equivalent layer.
    clone = type(layer).from_config(layer.get_config())
    clone.build(shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), layer(x), rtol=1e-6)
    # pickle round trip (caches dropped, weights kept).
    again = pickle.loads(pickle.dumps(layer))
    np.testing.assert_allclose(again(x), layer(x), rtol=1e-6)
    assert layer.count_params() == sum(w.size for w in layer.weights)


def test_weight_shapes_and_order_follow_keras():
    c = L.Conv2D(8, (3, 5), groups=2)
    c.build((10, 10, 4))
    assert [w.shape for w in c.get_weights()] == [(3, 5, 2, 8), (8,)]
    d = L.Dense(7)
    d.build((5,))
    assert [w.shape for w in d.get_weights()] == [(5, 7), (7,)]
    bn = L.BatchNormalization()
    bn.build((4, 4, 3))
    assert [w.tolist() for w in bn.get_weights()] == [[1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1]]
    assert len(bn.trainable_weights) == 2 and len(bn.non_trainable_weights) == 2


def test_batchnorm_training_vs_inference_and_moving_stats():
    bn = L.BatchNormalization(momentum=0.9)
    x = np.random.default_rng(3).normal(2.0, 3.0, size=(50, 4)).astype(np.float32)
    y = bn(x, training=True)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(0), x.var(0) / (x.var(0) + 1e-3), rtol=1e-4)
    np.testing.assert_allclose(bn.moving_mean, 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance, 0.9 + 0.1 * x.var(0), rtol=1e-5)
    y_inf = bn(x, training=False)
    np.testing.assert_allclose(
        y_inf, (x - bn.moving_mean) / np.sqrt(bn.moving_variance + 1e-3), rtol=1e-5
    )
    frozen = L.BatchNormalization(trainable=False)
    frozen(x, training=True)                            # Keras 3: frozen BN is inference-only
    np.testing.assert_array_equal(frozen.moving_mean, 0)


def test_dropout_scales_and_is_identity_at_inference():
    d = L.Dropout(0.25, seed=0)
    x = np.ones((200, 50), np.float32)
    assert d(x) is x or np.array_equal(d(x), x)
    y = d(x, training=True)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_array_equal(d.backward(np.ones_like(y)), y)


def test_layer_errors_name_the_argument():
    with pytest.raises(ValueError, match="filters"):
        L.Conv2D(0, 3)
    with pytest.raises(ValueError, match="padding"):
        L.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size"):
        L.Conv2D(4, (3, 3, 3))
    with pytest.raises(ValueError, match="groups"):
        L.Conv2D(5, 3, groups=2)
    with pytest.raises(ValueError, match="channels_last|NHWC"):
        L.Conv2D(4, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="too small"):
        L.Conv2D(4, 5).build((3, 3, 1))
    with pytest.raises(ValueError, match="divisible"):
        L.Conv2D(4, 3, groups=2).build((8, 8, 3))
    with pytest.raises(ValueError, match="units"):
        L.Dense(0)
    with pytest.raises(ValueError, match="rate"):
        L.Dropout(1.0)
    with pytest.raises(ValueError, match="Known activations: .*relu"):
        L.Dense(3, activation="swishy")
    with pytest.raises(ValueError, match="Known initializers: .*he_normal"):
        L.Dense(3, kernel_initializer="he_bogus")
    d = L.Dense(3)
    d.build((4,))
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        d(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="kernel"):
        d.set_weights([np.zeros((5, 3)), np.zeros(3)])
    with pytest.raises(ValueError, match="2 weights"):
        d.set_weights([np.zeros((4, 3))])


def test_activations_match_formulas():
    A = cconv.activations
    x = np.linspace(-4, 4, 41)
    np.testing.assert_allclose(A.relu(x), np.maximum(x, 0))
    np.testing.assert_allclose(A.sigmoid(x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(A.tanh(x), np.tanh(x))
    np.testing.assert_allclose(A.leaky_relu(x), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(A.elu(x), np.where(x > 0, x, np.expm1(x)))
    from math import erf
    np.testing.assert_allclose(A.gelu(x), [0.5 * v * (1 + erf(v / 2 ** 0.5)) for v in x], rtol=1e-7)
    s = A.softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]]))
    np.testing.assert_allclose(s.sum(1), 1)
    np.testing.assert_allclose(s[1], 1 / 3)
    x0 = x.copy()
    A.relu(x)
    np.testing.assert_array_equal(x, x0)
    assert A.get(None).name == "linear" and A.get("ReLU").name == "relu"


def test_initializers_distributions_and_seeds():
    inits = cconv.initializers
    w = inits.HeNormal(seed=0)((5, 5, 16, 120))
    assert np.abs(w).max() <= 2 * np.sqrt(2 / 400) / 0.8796256610342398 + 1e-6
    assert abs(w.std() - np.sqrt(2 / 400)) < 0.05 * np.sqrt(2 / 400)
    # an int seed gives the same values every time
    np.testing.assert_array_equal(w, inits.he_normal(seed=0)((5, 5, 16, 120)))
    g = inits.get("glorot_uniform")((300, 200))
    lim = np.sqrt(6 / 500)
    assert g.dtype == np.float32 and np.abs(g).max() <= lim and np.abs(g).max() > 0.95 * lim
    assert np.all(inits.get("zeros")((3,)) == 0) and np.all(inits.get("ones")((3,)) == 1)
    for name in ("glorot_normal", "he_uniform", "lecun_normal"):
        assert inits.get(name)((4, 4)).shape == (4, 4)
    with pytest.raises(ValueError, match="Known initializers"):
        inits.get("nope")
