"""Dropout masks from Philox4x32-10 (cconv/_ext/philox.h, cconv.ops.dropout, layers.Dropout):
a mask is a function of (seed, step, element index) only, so it is the same for any split of
the elements and any thread count; kept values are x * (1 / (1 - rate)) (TensorFlow's formula)."""
import pickle

import numpy as np
import pytest

import cconv
from cconv import layers as L
from cconv import ops
from cconv._ext import dropout as _dropext

SEED, STEP = 1234567, 3


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    before = cconv.get_num_threads()
    yield
    cconv.set_num_threads(before)


def _reference_keep(n, seed, step, rate, offset=0):
    """The rule of philox.h, written out with the reference block function: element j is
    kept when word j % 4 of Philox((j // 4, step), seed), divided by 2**32, is >= rate."""
    keep = np.empty(n, dtype=bool)
    key = (seed & 0xFFFFFFFF, seed >> 32)
    for i in range(n):
        j = offset + i
        b = j // 4
        words = _dropext.philox4x32_10((b & 0xFFFFFFFF, b >> 32, step & 0xFFFFFFFF, step >> 32),
                                       key)
        keep[i] = words[j % 4] / 2.0 ** 32 >= rate
    return keep


# ----- the generator ---------------------------------------------------------------------
@pytest.mark.parametrize("ctr, key, want", [
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
])
def test_philox_known_answers(ctr, key, want):
    # Random123's kat_vectors for philox4x32 with 10 rounds
    assert _dropext.philox4x32_10(ctr, key) == want


def test_threshold_is_ceil_of_rate_times_2_32():
    assert _dropext.threshold(0.0) == 0
    assert _dropext.threshold(0.5) == 1 << 31
    assert _dropext.threshold(0.1) == int(np.ceil(0.1 * 2.0 ** 32))
    assert _dropext.threshold(2.0 ** -32) == 1
    assert _dropext.threshold(np.nextafter(1.0, 0.0)) == 1 << 32


@pytest.mark.parametrize("offset", [0, 1, 3, 5, 61, 64, 1 << 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_follows_the_reference_rule(offset, dtype):
    n, rate = 203, 0.37
    x = np.ones(n, dtype=dtype)
    y = np.empty_like(x)
    _dropext.dropout(x, y, SEED, STEP, rate, offset, 1)
    np.testing.assert_array_equal(y != 0, _reference_keep(n, SEED, STEP, rate, offset))
    m = np.empty_like(x)
    _dropext.dropout_mask(m, SEED, STEP, rate, offset, 1)
    np.testing.assert_array_equal(m, y)


def test_large_seed_and_step_use_both_halves():
    x = np.ones(64, np.float32)
    base = ops.dropout(x, 0.5, 5, 7)
    for seed, step in [(5 + (1 << 32), 7), (5, 7 + (1 << 32))]:
        assert not np.array_equal(ops.dropout(x, 0.5, seed, step), base)
    np.testing.assert_array_equal(
        ops.dropout(np.ones(40, np.float64), 0.3, (1 << 64) - 1, (1 << 64) - 1) != 0,
        _reference_keep(40, (1 << 64) - 1, (1 << 64) - 1, 0.3))


# ----- split, threads, dtypes ----------------------------------------------------------------
@pytest.mark.parametrize("split", [1, 2, 3, 4, 63, 64, 65, 1000, 65536, 65537, 99999])
def test_two_calls_on_halves_equal_one_call(split):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(140001).astype(np.float32)
    whole = np.empty_like(x)
    _dropext.dropout(x, whole, SEED, STEP, 0.3, 0, 2)
    parts = np.empty_like(x)
    _dropext.dropout(x[:split], parts[:split], SEED, STEP, 0.3, 0, 1)
    _dropext.dropout(x[split:], parts[split:], SEED, STEP, 0.3, split, 1)
    np.testing.assert_array_equal(parts, whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_thread_count_gives_the_same_bits(threads, dtype):
    x = np.random.default_rng(1).standard_normal((16, 28, 28, 32)).astype(dtype)  # 401k
    cconv.set_num_threads(1)
    one = ops.dropout(x, 0.4, SEED, STEP)
    cconv.set_num_threads(2)
    two = ops.dropout(x, 0.4, SEED, STEP)
    assert one.tobytes() == two.tobytes()


def test_mask_is_the_same_for_float32_and_float64():
    x = np.random.default_rng(2).standard_normal(5000)
    a = ops.dropout(x.astype(np.float32), 0.25, SEED, STEP)
    b = ops.dropout(x, 0.25, SEED, STEP)
    np.testing.assert_array_equal(a != 0, b != 0)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_fraction_dropped_is_rate(rate):
    n = 10 ** 6
    y = ops.dropout(np.ones(n, np.float32), rate, SEED, STEP)
    frac = np.count_nonzero(y == 0) / n
    sigma = np.sqrt(rate * (1 - rate) / n)
    assert abs(frac - rate) < 5 * sigma, (frac, rate, sigma)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 1 / 3, 0.999])
def test_kept_values_are_x_times_the_scale_of_tensorflow(dtype, rate):
    # tf.nn.dropout (Keras 3's TensorFlow backend): scale = 1 / (1 - rate) in Python, cast to
    # x's dtype, then x * scale where kept, 0 elsewhere
    x = np.random.default_rng(3).standard_normal(4099).astype(dtype)
    y = ops.dropout(x, rate, SEED, STEP)
    assert y.dtype == dtype and y.shape == x.shape
    kept = y != 0
    assert kept.any()
    scale = dtype(1.0 / (1.0 - rate))
    np.testing.assert_array_equal(y[kept], x[kept] * scale)
    assert np.all(y[~kept] == 0)


def test_rate_zero_keeps_everything_unchanged():
    x = np.random.default_rng(4).standard_normal(999).astype(np.float32)
    np.testing.assert_array_equal(ops.dropout(x, 0.0, SEED, STEP), x)


def test_dropped_inf_and_nan_become_zero():
    x = np.full(256, np.nan, np.float32)
    x[::2] = np.inf
    y = ops.dropout(x, 0.5, SEED, STEP)
    keep = _reference_keep(256, SEED, STEP, 0.5)
    assert np.all(y[~keep] == 0) and not np.signbit(y[~keep]).any()
    assert np.isnan(y[1::2][keep[1::2]]).all() and np.isinf(y[::2][keep[::2]]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_equals_out_of_place(dtype):
    x = np.random.default_rng(5).standard_normal(70001).astype(dtype)
    want = ops.dropout(x, 0.3, SEED, STEP)
    _dropext.dropout(x, x, SEED, STEP, 0.3, 0, 2)
    np.testing.assert_array_equal(x, want)


def test_input_not_modified_and_output_is_new():
    x = np.random.default_rng(6).standard_normal((4, 5, 6, 3)).astype(np.float32)
    before = x.copy()
    y = ops.dropout(x, 0.5, SEED, STEP)
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(x, y) and y.flags.c_contiguous


def test_non_contiguous_and_other_dtypes():
    x = np.random.default_rng(7).standard_normal((6, 8)).astype(np.float64)
    np.testing.assert_array_equal(ops.dropout(x.T, 0.5, 1, 2),
                                  ops.dropout(np.ascontiguousarray(x.T), 0.5, 1, 2))
    assert ops.dropout(x.astype(np.float16), 0.5, 1, 2).dtype == np.float32
    assert ops.dropout(np.arange(12), 0.5, 1, 2).dtype == np.float64
    assert ops.dropout(np.zeros((0, 3), np.float32), 0.5, 1, 2).shape == (0, 3)


def test_dropout_mask_matches_dropout():
    x = np.ones((3, 7, 5), np.float32)
    m = ops.dropout_mask((3, 7, 5), 0.4, SEED, STEP, np.float32)
    np.testing.assert_array_equal(m, ops.dropout(x, 0.4, SEED, STEP))
    assert ops.dropout_mask((4,), 0.4, SEED, STEP).dtype == np.float32
    assert ops.dropout_mask((4,), 0.4, SEED, STEP, "float64").dtype == np.float64


# ----- steps ---------------------------------------------------------------------------------
def test_masks_of_consecutive_steps_are_independent():
    n, rate = 200_000, 0.5
    masks = [ops.dropout_mask((n,), rate, SEED, s) != 0 for s in range(4)]
    bound = 5 / np.sqrt(n)
    for a, b in zip(masks, masks[1:]):
        assert not np.array_equal(a, b)
        r = np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1]
        assert abs(r) < bound, r
    # and neighbouring elements of one mask (the words of one block, and of adjacent blocks)
    m = masks[0].astype(np.float64)
    for lag in (1, 2, 3, 4, 5):
        r = np.corrcoef(m[:-lag], m[lag:])[0, 1]
        assert abs(r) < bound, (lag, r)
    # different seeds, same step
    other = ops.dropout_mask((n,), rate, SEED + 1, 0) != 0
    r = np.corrcoef(masks[0].astype(np.float64), other.astype(np.float64))[0, 1]
    assert abs(r) < bound


# ----- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_rate_out_of_range_names_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        ops.dropout(np.ones(3, np.float32), rate, 0, 0)
    with pytest.raises(ValueError, match="rate"):
        ops.dropout_mask((3,), rate, 0, 0)


def test_bad_rate_type_seed_and_step_are_named():
    x = np.ones(3, np.float32)
    with pytest.raises(TypeError, match="rate"):
        ops.dropout(x, "0.5", 0, 0)
    with pytest.raises(ValueError, match="seed"):
        ops.dropout(x, 0.5, -1, 0)
    with pytest.raises(ValueError, match="seed"):
        ops.dropout(x, 0.5, 1 << 64, 0)
    with pytest.raises(ValueError, match="step"):
        ops.dropout(x, 0.5, 0, 1.5)
    with pytest.raises(TypeError, match="x"):
        ops.dropout(np.array(["a"]), 0.5, 0, 0)
    with pytest.raises(ValueError, match="noise_shape"):
        ops.dropout(np.ones((2, 3)), 0.5, 0, 0, noise_shape=(2, 2))
    with pytest.raises(ValueError, match="noise_shape"):
        ops.dropout(np.ones((2, 3)), 0.5, 0, 0, noise_shape=(2,))


# ----- noise_shape ---------------------------------------------------------------------------
def test_noise_shape_shares_the_mask_along_size_1_axes():
    x = np.random.default_rng(8).standard_normal((4, 3, 5, 6)).astype(np.float32)
    y = ops.dropout(x, 0.5, SEED, STEP, noise_shape=(None, 1, 1, 6))
    mask = ops.dropout_mask((4, 1, 1, 6), 0.5, SEED, STEP, np.float32)
    np.testing.assert_array_equal(y, x * mask)
    kept = y != 0
    assert (kept == kept[:, :1, :1, :]).all()      # whole channels kept or dropped
    # a noise shape equal to x's shape is plain dropout
    np.testing.assert_array_equal(ops.dropout(x, 0.5, SEED, STEP, noise_shape=(None,) * 4),
                                  ops.dropout(x, 0.5, SEED, STEP))


def test_layer_noise_shape_forward_backward_and_config():
    layer = L.Dropout(0.5, noise_shape=(None, 1, 1, None), seed=3)
    x = np.random.default_rng(9).standard_normal((4, 3, 5, 6)).astype(np.float32)
    y = layer.forward(x, training=True)
    kept = y != 0
    assert (kept == kept[:, :1, :1, :]).all()
    dy = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(dy) != 0, kept)
    cfg = layer.get_config()
    assert cfg["noise_shape"] == (None, 1, 1, None)
    assert L.Dropout.from_config(cfg).noise_shape == (None, 1, 1, None)


# ----- the layer -----------------------------------------------------------------------------
def test_layer_uses_its_seed_and_counts_steps():
    x = np.random.default_rng(10).standard_normal((8, 5, 5, 4)).astype(np.float32)
    layer = L.Dropout(0.3, seed=42)
    y0 = layer.forward(x, training=True)
    y1 = layer.forward(x, training=True)
    np.testing.assert_array_equal(y0, ops.dropout(x, 0.3, 42, 0))
    np.testing.assert_array_equal(y1, ops.dropout(x, 0.3, 42, 1))
    assert not np.array_equal(y0, y1)
    # inference: the identity, and the step does not move
    assert layer.forward(x, training=False) is x
    np.testing.assert_array_equal(layer.forward(x, training=True), ops.dropout(x, 0.3, 42, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_backward_is_dy_times_mask(dtype):
    layer = L.Dropout(0.4, seed=7)
    x = np.random.default_rng(11).standard_normal((6, 4, 4, 3)).astype(dtype)
    dy = np.random.default_rng(12).standard_normal(x.shape).astype(dtype)
    layer.forward(x, training=True)     # step 0
    y = layer.forward(x, training=True)  # step 1: the backward uses this one's mask
    mask = ops.dropout_mask(x.shape, 0.4, 7, 1, dtype)
    np.testing.assert_array_equal(y, x * mask)
    dx = layer.backward(dy)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, dy * mask)


def test_layer_stores_no_mask_and_pickles():
    layer = L.Dropout(0.5, seed=1)
    x = np.ones((2, 100), np.float32)
    layer.forward(x, training=True)
    assert not any(isinstance(v, np.ndarray) for v in vars(layer).values())
    clone = pickle.loads(pickle.dumps(layer))
    # the step counter travels with the layer: the clone continues the sequence
    np.testing.assert_array_equal(clone.forward(x, training=True), ops.dropout(x, 0.5, 1, 1))


def test_negative_seed_is_accepted():
    layer = L.Dropout(0.5, seed=-5)
    assert layer.get_config()["seed"] == -5
    y = layer.forward(np.ones((2, 50), np.float32), training=True)
    np.testing.assert_array_equal(y, ops.dropout(np.ones((2, 50), np.float32), 0.5,
                                                 (1 << 64) - 5, 0))


def test_unseeded_layers_follow_the_global_seed():
    cconv.utils.set_random_seed(11)
    a1, a2 = L.Dropout(0.5), L.Dropout(0.5)
    cconv.utils.set_random_seed(11)
    b1, b2 = L.Dropout(0.5), L.Dropout(0.5)
    x = np.ones((4, 64), np.float32)
    for a, b in ((a1, b1), (a2, b2)):
        np.testing.assert_array_equal(a.forward(x, training=True), b.forward(x, training=True))
    assert not np.array_equal(a1.forward(x, training=True), a2.forward(x, training=True))


def _fit_once(seed):
    cconv.utils.set_random_seed(seed)
    model = cconv.Sequential([
        L.Input((6, 6, 2)),
        L.Conv2D(4, 3, activation="relu"),
        L.Dropout(0.5),
        L.Flatten(),
        L.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 6, 6, 2)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 32)]
    hist = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    return hist.history["loss"], model.get_weights()


def test_fit_with_dropout_is_reproducible_after_set_random_seed(threads):
    cconv.set_num_threads(1)
    loss_a, w_a = _fit_once(5)
    cconv.set_num_threads(2)
    loss_b, w_b = _fit_once(5)
    assert loss_a == loss_b
    for a, b in zip(w_a, w_b):
        np.testing.assert_array_equal(a, b)
    loss_c, _ = _fit_once(6)
    assert loss_c != loss_a


def test_pickle_from_before_philox_still_loads():
    # a Dropout pickled when it held a NumPy generator (``_rng``) and no (seed, step)
    layer = L.Dropout(0.5, seed=1)
    state = layer.__getstate__()
    for k in ("_seed", "_step", "noise_shape"):
        state.pop(k)
    state["_rng"] = np.random.default_rng(3)
    old = L.Dropout.__new__(L.Dropout)
    old.__setstate__(state)
    want_seed = int(np.random.default_rng(3).integers(0, 1 << 64, dtype=np.uint64))
    x = np.ones((2, 30), np.float32)
    np.testing.assert_array_equal(old.forward(x, training=True), ops.dropout(x, 0.5, want_seed, 0))
    assert old.get_config()["noise_shape"] is None and "_rng" not in vars(old)


def test_keras_dropout_with_noise_shape_loads():
    keras = pytest.importorskip("keras", reason="Keras (tensorflow-cpu) is needed to compare")
    import json

    from cconv.saving.keras_files import layer_from_keras_config
    cfg = keras.layers.Dropout(0.3, noise_shape=(None, 1, 1, 4), seed=2).get_config()
    layer = layer_from_keras_config("Dropout", json.loads(json.dumps(cfg)))
    assert (layer.rate, layer.seed, layer.noise_shape) == (0.3, 2, (None, 1, 1, 4))


def test_rate_next_to_one_drops_everything():
    # ceil(rate * 2**32) == 2**32: no 32-bit word reaches it
    y = ops.dropout(np.ones(1000, np.float64), float(np.nextafter(1.0, 0.0)), SEED, STEP)
    assert not y.any()
