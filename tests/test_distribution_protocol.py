"""The trainer's scale-out hook, ``model.distribution`` (the protocol in cconv/trainer.py's
docstring), exercised in one process: the calls come at the documented points, a
pass-through distribution changes nothing, and a step with no sample runs the same path
(reduction, regularizers, optimizer) as a step with samples."""
import pickle

import numpy as np
import pytest

import cconv
from cconv.trainers.epoch_iterator import ArrayDataAdapter
from cconv.trainers.trainer import DISTRIBUTION_METHODS


def _model():
    L = cconv.layers
    init = cconv.initializers.HeNormal
    model = cconv.Sequential([
        cconv.Input((4,)),
        L.Dense(5, activation="relu", kernel_initializer=init(seed=0),
                kernel_regularizer=cconv.regularizers.L2(0.1)),
        L.Dense(3, activation="softmax", kernel_initializer=init(seed=1),
                kernel_regularizer=cconv.regularizers.L2(0.1)),
    ])
    model.compile(optimizer=cconv.optimizers.Adam(0.05), loss="categorical_crossentropy",
                  metrics=["accuracy", cconv.metrics.Precision()])
    return model


def _data(rng, n=20):
    return rng.normal(size=(n, 4)).astype(np.float32), np.eye(3)[rng.integers(0, 3, n)]


class PassThrough:
    """One process as the whole job: every hook recorded, nothing changed."""

    def __init__(self, stop_after=None):
        self.calls, self.stop_after, self.epochs = [], stop_after, 0

    def distribute_data(self, x, y, batch_size, shuffle, sample_weight, training):
        self.calls.append(f"distribute_data(training={training})")
        return ArrayDataAdapter(x, y, batch_size, shuffle=shuffle, sample_weight=sample_weight)

    def on_train_begin(self):
        self.calls.append("on_train_begin")

    def on_test_begin(self):
        self.calls.append("on_test_begin")

    def on_epoch_begin(self, metrics):
        assert all(m.result() == 0.0 for m in metrics)      # just reset
        self.calls.append("on_epoch_begin")

    def reduce_step(self, gradients, loss, samples, metrics):
        self.calls.append("reduce_step")
        return loss, samples

    def on_epoch_end(self):
        self.epochs += 1
        self.calls.append("on_epoch_end")

    def should_stop(self, stop_training):
        self.calls.append("should_stop")
        return stop_training or self.epochs == self.stop_after

    def on_train_end(self):
        self.calls.append("on_train_end")

    def reduce_evaluation(self, loss_sum, samples, metrics):
        self.calls.append("reduce_evaluation")
        return loss_sum, samples


def test_distribution_must_implement_the_protocol():
    model = _model()
    assert model.distribution is None
    with pytest.raises(TypeError, match="distribution must be None or an object with the "
                                        "methods .* lacks distribute_data, on_train_begin"):
        model.distribution = object()
    assert model.distribution is None
    dist = PassThrough()
    model.distribution = dist
    assert model.distribution is dist
    assert set(DISTRIBUTION_METHODS) <= set(dir(dist))
    assert pickle.loads(pickle.dumps(model)).distribution is None   # it does not travel
    model.distribution = None


def test_a_pass_through_distribution_changes_nothing_and_is_called_in_order(rng):
    x, y = _data(rng)
    plain, hooked = _model(), _model()
    dist = PassThrough()
    hooked.distribution = dist
    kw = dict(batch_size=8, epochs=2, verbose=0, shuffle=False, validation_data=(x[:6], y[:6]))
    h1 = plain.fit(x, y, **kw)
    h2 = hooked.fit(x, y, **kw)
    assert h1.history == h2.history
    for a, b in zip(plain.get_weights(), hooked.get_weights()):
        np.testing.assert_array_equal(a, b)
    epoch = ["on_epoch_begin"] + ["reduce_step"] * 3 + ["on_epoch_end", "reduce_evaluation",
                                                        "should_stop"]
    assert dist.calls == (["distribute_data(training=True)", "distribute_data(training=False)",
                           "on_train_begin"] + epoch * 2 + ["on_train_end"])
    dist.calls.clear()
    assert hooked.evaluate(x, y, verbose=0) == plain.evaluate(x, y, verbose=0)
    assert dist.calls == ["distribute_data(training=False)", "on_test_begin",
                          "reduce_evaluation"]


def test_a_stop_is_agreed_at_epoch_ends_only(rng):
    x, y = _data(rng)

    class StopAtFirstBatch(cconv.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = True

    model = _model()
    model.distribution = dist = PassThrough()
    hist = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[StopAtFirstBatch()])
    assert len(hist.history["loss"]) == 1 and dist.calls.count("reduce_step") == 3
    model.distribution = dist = PassThrough(stop_after=2)      # another process asked
    hist = model.fit(x, y, batch_size=8, epochs=5, verbose=0)
    assert len(hist.history["loss"]) == 2 and model.stop_training


def test_streams_are_refused_under_a_distribution(rng):
    x, y = _data(rng)
    model = _model()
    model.distribution = PassThrough()
    with pytest.raises(TypeError, match="x must be an array when the model has a distribution"):
        model.fit(((x[i:i + 4], y[i:i + 4]) for i in range(0, 20, 4)), verbose=0)
    with pytest.raises(TypeError, match="validation_data must be an array when the model"):
        model.fit(x, y, verbose=0, validation_data=iter([(x, y)]))


class Capture(PassThrough):
    """Records the step's data gradient (before the regularizers)."""

    def reduce_step(self, gradients, loss, samples, metrics):
        self.gradients, self.loss, self.samples = gradients.copy(), loss, samples
        return loss, samples


class OtherRanksOnly(PassThrough):
    """This process has no sample; the others' reduced gradient is ``gradients``."""

    def __init__(self, gradients, loss, samples):
        super().__init__()
        self.global_step = gradients, loss, samples

    def reduce_step(self, gradients, loss, samples, metrics):
        assert samples == 0 and loss == 0.0 and not gradients.any()
        gradients[...] = self.global_step[0]
        return self.global_step[1], self.global_step[2]


def test_a_step_without_samples_takes_the_regularized_optimizer_step(rng):
    """What a rank with no part of a short step does: the reduced gradient arrives, then the
    regularizers' gradient and the optimizer, as on a rank with samples: same weights."""
    x, y = _data(rng, 6)
    with_data, without = _model(), _model()
    for step in range(3):                    # Adam's state moves too
        with_data.distribution = cap = Capture()
        loss = with_data.train_on_batch(x, y)
        without.distribution = OtherRanksOnly(cap.gradients, cap.loss, cap.samples)
        loss_empty = without.train_on_batch(x[:0], y[:0])
        assert cap.samples == 6 and cap.gradients.any()
        assert loss_empty[0] == loss[0]      # the penalty is added to the global loss alike
        for a, b in zip(with_data.get_weights(), without.get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=f"step {step}")


def test_a_step_without_samples_is_refused_without_a_distribution(rng):
    x, y = _data(rng, 4)
    model = _model()
    before = model.get_weights()
    with pytest.raises(ValueError, match="A training batch has 0 samples"):
        model.train_on_batch(x[:0], y[:0])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
