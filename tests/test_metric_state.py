"""A metric's state as ``variables`` (Keras 3's name): float64 copies that add over parts of
the data, and ``assign_variables`` to set them; distributed training sums them over ranks."""
import numpy as np
import pytest

import cconv

M = cconv.metrics


def _metrics():
    return [M.BinaryAccuracy(), M.MeanSquaredError(), M.Precision(), M.Recall(),
            M.Precision(thresholds=[0.2, 0.5, 0.8]), M.AUC(), M.AUC(curve="PR"),
            M.AUC(thresholds=[0.1, 0.35, 0.9])]


def _data(rng, n=40):
    y = (rng.random(n) > 0.5).astype(np.float32)
    p = np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1).astype(np.float32)
    w = rng.random(n)
    return y[:, None], p[:, None], w


@pytest.mark.parametrize("weighted", [False, True])
def test_states_of_parts_add_up_to_the_state_of_the_whole(rng, weighted):
    y, p, w = _data(rng)
    for whole, a, b in zip(_metrics(), _metrics(), _metrics()):
        ws = (w, w[:17], w[17:]) if weighted else (None, None, None)
        whole.update_state(y, p, sample_weight=ws[0])
        a.update_state(y[:17], p[:17], sample_weight=ws[1])
        b.update_state(y[17:], p[17:], sample_weight=ws[2])
        summed = [u + v for u, v in zip(a.variables, b.variables)]
        for s, t in zip(summed, whole.variables):
            np.testing.assert_allclose(s, t, rtol=1e-12, atol=1e-12, err_msg=whole.name)
        a.assign_variables(summed)
        np.testing.assert_allclose(a.result(), whole.result(), rtol=1e-12, atol=1e-12,
                                   err_msg=whole.name)


def test_variables_are_float64_copies_in_keras_order(rng):
    y, p, _ = _data(rng)
    acc, prec = M.BinaryAccuracy(), M.Precision(thresholds=[0.3, 0.6])
    for m in (acc, prec):
        m.update_state(y, p)
    total, count = acc.variables
    assert total.shape == count.shape == () and count == y.size
    assert [v.shape for v in prec.variables] == [(2,)] * 4
    assert all(v.dtype == np.float64 for v in acc.variables + prec.variables)
    before = acc.result(), prec.result()
    for m in (acc, prec):
        for v in m.variables:
            v += 100.0                      # a copy: the metric is unchanged
    assert (acc.result(), prec.result()) == before
    tp = prec.variables[0]
    assert np.array_equal(tp, prec.true_positives)
    acc.reset_state()
    assert [float(v) for v in acc.variables] == [0.0, 0.0]


def test_assign_variables_copies_and_checks_before_changing_anything(rng):
    y, p, _ = _data(rng)
    m = M.Precision()
    m.update_state(y, p)
    state = m.variables
    given = [np.array([3.0]), np.array([1.0]), np.array([0.0]), np.array([0.0])]
    m.assign_variables(given)
    assert m.result() == pytest.approx(0.75)
    given[0][0] = 0.0                       # the metric holds its own copy
    assert m.result() == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"values\[1\] must have shape \(1,\)"):
        m.assign_variables([np.ones(1), np.ones(2), np.ones(1), np.ones(1)])
    with pytest.raises(ValueError, match="must hold 4 arrays"):
        m.assign_variables(state[:3])
    with pytest.raises(TypeError, match="values must be a list"):
        m.assign_variables(np.ones(4))
    with pytest.raises(TypeError, match=r"values\[0\] must be numbers"):
        m.assign_variables([np.array(["a"]), np.ones(1), np.ones(1), np.ones(1)])
    assert m.result() == pytest.approx(0.75)      # unchanged by the refused calls
    mean = M.Mean()
    with pytest.raises(ValueError, match=r"values\[0\] must have shape \(\)"):
        mean.assign_variables([np.ones(2), 1.0])
    mean.assign_variables([6.0, 4])
    assert mean.result() == 1.5


def test_a_multi_output_model_metrics_have_variables_that_add():
    """The per-output metrics of a model with two outputs (what compile makes of them) have
    variables too, so the distributed reduction can sum them: two halves' states add up to
    the whole batch's, and assigning the sum gives the whole batch's results."""
    inp = cconv.Input((4,))
    a = cconv.layers.Dense(3, activation="softmax", name="a")(inp)
    b = cconv.layers.Dense(1, name="b")(inp)
    model = cconv.Model(inp, [a, b])
    model.compile("sgd", ["categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], ["mae"]])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    ys = [np.eye(3, dtype=np.float32)[rng.integers(0, 3, 10)],
          rng.normal(size=(10, 1)).astype(np.float32)]
    xp, yp, shapes = model._prepare_xy(x, ys)
    out = model._forward(xp, False)
    whole, parts = model._make_metrics(shapes), [model._make_metrics(shapes) for _ in range(2)]
    for m in whole:
        m.update_state(yp, out)
    for half, part in zip((slice(0, 4), slice(4, 10)), parts):
        for m in part:
            m.update_state(yp[half], out[half])
    for m, p0, p1 in zip(whole, *parts):
        summed = [u + v for u, v in zip(p0.variables, p1.variables)]
        for got, want in zip(summed, m.variables):
            np.testing.assert_allclose(got, want, rtol=1e-12)
        p0.assign_variables(summed)
        assert p0.result() == pytest.approx(m.result(), rel=1e-12)
    with pytest.raises(ValueError, match="assign_variables needs"):
        parts[0][0].assign_variables([0.0])
