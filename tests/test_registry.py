"""One lookup rule for named objects (cconv.registry): names match ignoring case and
underscores in every module, and everything serializes and deserializes."""

import pytest

import cconv
from cconv import activations, initializers, layers, losses, metrics, optimizers


@pytest.mark.parametrize("module,names,cls", [
    (optimizers, ["rmsprop", "RMSprop", "RMSPROP", "rms_prop"], optimizers.RMSprop),
    (losses, ["mse", "MSE", "mean_squared_error", "MeanSquaredError"], losses.MeanSquaredError),
    (metrics, ["mae", "MAE", "mean_absolute_error", "MeanAbsoluteError"],
     metrics.MeanAbsoluteError),
    (initializers, ["he_normal", "HeNormal", "HE_NORMAL"], initializers.HeNormal),
    (activations, ["leaky_relu", "LeakyReLU", "LEAKY_RELU"], type(activations.leaky_relu)),
    (layers, ["MaxPool2D", "max_pooling_2d", "maxpooling2d"], layers.MaxPooling2D),
])
def test_names_ignore_case_and_underscores(module, names, cls):
    for name in names:
        assert type(module.REGISTRY.get(name)) is cls or module.REGISTRY.lookup(name) is cls


@pytest.mark.parametrize("module,obj", [
    (optimizers, optimizers.Adam(learning_rate=0.01, amsgrad=True)),
    (losses, losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)),
    (metrics, metrics.SparseCategoricalAccuracy(name="acc")),
    (initializers, initializers.HeNormal(seed=3)),
    (layers, layers.Conv2D(4, 3, strides=2, padding="same")),
])
def test_serialize_round_trip(module, obj):
    cfg = module.serialize(obj)
    assert cfg["class_name"] == type(obj).__name__
    back = module.deserialize(cfg)
    assert type(back) is type(obj)
    assert module.serialize(back)["config"] == cfg["config"]


def test_activation_serialize_round_trip():
    act = activations.get({"class_name": "leaky_relu", "config": {"negative_slope": 0.1}})
    assert activations.deserialize(activations.serialize(act)) == act
    assert activations.serialize("ReLU") == "relu"


def test_unknown_names_and_types():
    for module, plural in [(optimizers, "optimizers"), (losses, "losses"), (metrics, "metrics"),
                           (initializers, "initializers"), (activations, "activations"),
                           (layers, "layers")]:
        with pytest.raises(ValueError, match=f"Known {plural}: "):
            module.get("no_such_thing")
        with pytest.raises(TypeError, match="got 3.5 of type float"):
            module.get(3.5)
    with pytest.raises(ValueError, match="Known layers: .*Convolution2D"):
        layers.deserialize({"class_name": "Conv3D", "config": {}})


def test_accuracy_still_resolves_from_shapes():
    assert type(metrics.get("ACC", (8,), (8, 3))) is metrics.SparseCategoricalAccuracy
    assert type(metrics.get("accuracy", (8, 1), (8, 1))) is metrics.BinaryAccuracy
    model = cconv.Sequential([cconv.Input((4,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="Adam", loss="CategoricalCrossentropy", metrics=["Accuracy"])
    assert model.metrics_names == ["loss", "Accuracy"]
