"""cconv.utils.set_random_seed (issue 32 item 5): one seed fixes every random draw in cconv
(initializers without a seed, Dropout masks, fit's shuffling, augmentation layers without a
seed), so the same seed gives the same weights and the same training for any thread count."""
import numpy as np
import pytest

import cconv
from cconv import layers as L


@pytest.fixture(autouse=True)
def _threads():
    before = cconv.get_num_threads()
    yield
    cconv.set_num_threads(before)


def _model():
    """Unseeded initializers, Dropout and an augmentation layer: every random part."""
    return cconv.Sequential([
        cconv.Input((8, 8, 1)),
        L.RandomFlip("horizontal"),
        L.Conv2D(4, 3, activation="relu"),
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dropout(0.3),
        L.Dense(8, activation="relu"),
        L.Dense(3, activation="softmax"),
    ])


def _data():
    rng = np.random.default_rng(123)
    x = rng.normal(size=(48, 8, 8, 1)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 48)]
    return x, y


def _train(seed, threads):
    cconv.set_num_threads(threads)
    cconv.utils.set_random_seed(seed)
    m = _model()
    m.compile("adam", "categorical_crossentropy")
    initial = m.get_weights()
    x, y = _data()
    hist = m.fit(x, y, batch_size=8, epochs=2, shuffle=True, verbose=0)
    return initial, m.get_weights(), hist.history["loss"]


def test_same_seed_same_weights_and_training_for_1_and_2_threads():
    w0_a, w_a, loss_a = _train(7, 1)
    w0_b, w_b, loss_b = _train(7, 2)
    for a, b in zip(w0_a + w_a, w0_b + w_b):
        np.testing.assert_array_equal(a, b)
    assert loss_a == loss_b
    w0_c, _, loss_c = _train(8, 2)
    assert not np.array_equal(w0_a[0], w0_c[0]) and loss_c != loss_a


def test_the_seed_fixes_each_random_part():
    x = np.arange(4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6, 1)

    def draws():
        init = cconv.initializers.GlorotUniform()((3, 4))
        drop = L.Dropout(0.5)(np.ones((2, 10), np.float32), training=True)
        aug = L.RandomRotation(0.2)(x, training=True)
        order = np.random.permutation(10)          # what fit's shuffling draws from
        return init, drop, aug, order

    cconv.utils.set_random_seed(3)
    first = draws()
    cconv.utils.set_random_seed(3)
    second = draws()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    cconv.utils.set_random_seed(4)
    third = draws()
    assert all(not np.array_equal(a, c) for a, c in zip(first, third))


def test_explicit_seeds_do_not_depend_on_the_global_seed():
    cconv.utils.set_random_seed(1)
    a = cconv.initializers.HeNormal(seed=5)((3, 3))
    d1 = L.Dropout(0.5, seed=9)(np.ones((1, 20), np.float32), training=True)
    cconv.utils.set_random_seed(2)
    np.testing.assert_array_equal(a, cconv.initializers.HeNormal(seed=5)((3, 3)))
    np.testing.assert_array_equal(
        d1, L.Dropout(0.5, seed=9)(np.ones((1, 20), np.float32), training=True))


def test_python_random_is_seeded_too():
    import random
    cconv.utils.set_random_seed(11)
    a = random.random()
    cconv.utils.set_random_seed(11)
    assert random.random() == a


def test_an_initializer_made_before_the_seed_follows_it():
    init = cconv.initializers.RandomNormal()
    cconv.utils.set_random_seed(0)
    a = init((4,))
    cconv.utils.set_random_seed(0)
    np.testing.assert_array_equal(init((4,)), a)


def test_unseeded_initializers_pickle():
    import pickle
    init = pickle.loads(pickle.dumps(cconv.initializers.GlorotNormal()))
    assert init((2, 2)).shape == (2, 2)


@pytest.mark.parametrize("bad,err", [(1.5, TypeError), ("1", TypeError), (None, TypeError),
                                     (True, TypeError), (-1, ValueError), (2 ** 32, ValueError)])
def test_bad_seeds_are_refused(bad, err):
    with pytest.raises(err, match="set_random_seed: seed"):
        cconv.utils.set_random_seed(bad)
