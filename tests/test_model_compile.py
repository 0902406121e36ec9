"""``compile`` takes the same keyword arguments on every model kind (the graph model passes
what it does not handle per output on to the trainer's compile), and each one has the same
effect on a Sequential and a graph model; per-output ``weighted_metrics`` follow Keras."""
import inspect

import numpy as np
import pytest

import cconv
from cconv import layers as L
from cconv import plan as _plan
from cconv.trainers.trainer import Trainer

# A value for every argument of the trainer's compile; the test below fails when the trainer
# gains an argument that is not listed here (and so not tested on every model kind).
COMPILE_ARGS = {
    "optimizer": "adam",
    "loss": "mae",
    "loss_weights": 0.5,
    "metrics": ["mse"],
    "weighted_metrics": ["mse"],
    "jit_compile": False,
}


def _models(seed=0):
    """The same Dense network as a Sequential, a functional Model and a subclassed Model,
    with the same weights."""
    seq = cconv.Sequential([cconv.Input((5,)), L.Dense(4, activation="relu"), L.Dense(2)])
    x = cconv.Input((5,))
    fun = cconv.Model(x, L.Dense(2)(L.Dense(4, activation="relu")(x)))

    class Net(cconv.Model):
        def __init__(self):
            super().__init__()
            self.hidden = L.Dense(4, activation="relu")
            self.out = L.Dense(2)

        def call(self, x):
            return self.out(self.hidden(x))

    sub = Net()
    sub.build((None, 5))
    weights = [np.random.default_rng(seed).normal(size=w.shape).astype("float32")
               for w in seq.get_weights()]
    for m in (seq, fun, sub):
        m.set_weights(weights)
    return {"sequential": seq, "functional": fun, "subclassed": sub}


def _data(n=12):
    rng = np.random.default_rng(1)
    return (rng.normal(size=(n, 5)).astype("float32"), rng.normal(size=(n, 2)).astype("float32"),
            rng.uniform(0.1, 2.0, size=n))


def test_compile_args_cover_the_trainers_compile():
    params = set(inspect.signature(Trainer.compile).parameters) - {"self"}
    assert params == set(COMPILE_ARGS)


@pytest.mark.parametrize("arg", sorted(COMPILE_ARGS) + ["all"])
def test_every_compile_argument_acts_the_same_on_every_model_kind(arg):
    kwargs = dict(COMPILE_ARGS) if arg == "all" else {arg: COMPILE_ARGS[arg]}
    kwargs.setdefault("loss", "mse")
    x, y, w = _data()
    results = {}
    for kind, model in _models().items():
        model.compile(**kwargs)
        hist = model.fit(x, y, sample_weight=w, batch_size=4, epochs=2, shuffle=False,
                         verbose=0).history
        results[kind] = (hist, model.get_weights(), model.jit_compile,
                         _plan.get_plan(model) is None)
    ref_hist, ref_weights, ref_jit, ref_noplan = results["sequential"]
    assert ref_jit is kwargs.get("jit_compile", True)
    if ref_jit is False:
        assert ref_noplan
    for kind, (hist, weights, jit, noplan) in results.items():
        assert list(hist) == list(ref_hist), kind
        for k in hist:
            np.testing.assert_allclose(hist[k], ref_hist[k], rtol=1e-5, err_msg=f"{kind} {k}")
        for a, b in zip(weights, ref_weights):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=kind)
        assert jit is ref_jit and noplan is ref_noplan, kind
    if "weighted_metrics" in kwargs:
        want = "weighted_mse" if "mse" in kwargs.get("metrics", []) else "mse"
        assert want in ref_hist


def test_unknown_compile_keyword_is_refused_by_every_model_kind():
    models = _models()

    class Late(cconv.Model):          # compiled before it is traced
        def __init__(self):
            super().__init__()
            self.out = L.Dense(2)

        def call(self, x):
            return self.out(x)

    models["untraced"] = Late()
    for model in models.values():
        with pytest.raises(TypeError, match="unexpected keyword argument 'jit'"):
            model.compile("sgd", "mse", jit=False)


def test_subclassed_model_keeps_compile_arguments_until_traced():
    class Late(cconv.Model):
        def __init__(self):
            super().__init__()
            self.out = L.Dense(2)

        def call(self, x):
            return self.out(x)

    model = Late()
    model.compile("sgd", "mse", metrics=["mae"], weighted_metrics=["mae"], jit_compile=False)
    x, y, w = _data()
    hist = model.fit(x, y, sample_weight=w, verbose=0).history
    assert list(hist) == ["loss", "mae", "weighted_mae"]
    assert model.jit_compile is False


def test_one_output_loss_weight_scales_the_loss_as_keras():
    """``loss_weights`` on a one-output model (a number, a one-item list or a dict by output
    name) multiplies the loss; metric names stay Keras's (no output prefix)."""
    keras = pytest.importorskip("keras", reason="compares with Keras")
    x, y, _ = _data()
    init = [np.random.default_rng(2).normal(size=s).astype("float32")
            for s in [(5, 2), (2,)]]
    histories = {}
    for lw in (0.5, [0.5], {"out": 0.5}):
        km = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2, name="out")])
        km.compile("sgd", "mse", loss_weights=lw, metrics=["mae"])
        km.set_weights(init)
        cm = cconv.Sequential([cconv.Input((5,)), L.Dense(2, name="out")])
        cm.compile("sgd", "mse", loss_weights=lw, metrics=["mae"])
        cm.set_weights(init)
        kh = km.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
        ch = cm.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
        assert sorted(ch) == sorted(kh), lw
        for k in kh:
            np.testing.assert_allclose(ch[k], kh[k], rtol=1e-5, err_msg=f"{lw} {k}")
        histories[str(lw)] = ch
    assert len({str(h) for h in histories.values()}) == 1


def _two_outputs(mod):
    a = mod.Input((3,), name="a")
    o1 = mod.layers.Dense(2, name="o1")(a)
    o2 = mod.layers.Dense(1, name="o2")(a)
    return mod.Model(a, [o1, o2])


@pytest.mark.parametrize("weighted", [[["mae"], ["mse"]], {"o2": ["mse"]}])
def test_weighted_metrics_per_output_match_keras(weighted):
    keras = pytest.importorskip("keras", reason="Keras (tensorflow-cpu) is needed to compare")
    km, cm = _two_outputs(keras), _two_outputs(cconv)
    cm.set_weights(km.get_weights())
    args = dict(loss=["mse", "mae"], metrics=[["mae"], ["mae"]], weighted_metrics=weighted)
    km.compile("sgd", **args)
    cm.compile("sgd", **args)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = [rng.normal(size=(8, 2)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")]
    w = rng.uniform(0.1, 2.0, size=8)
    want = km.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    got = cm.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert list(got) == [k for k in cm.metrics_names]
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k] == pytest.approx(float(want[k]), rel=1e-5), k
