"""Ready-made networks: the curriculum's :func:`lenet5` and the TensorFlow tutorial's
:func:`tutorial_cnn` (the benchmarks' two chains)."""

from .. import initializers as _initializers
from .. import layers as _layers
from .. import losses as _losses
from .._typing import Shape
from .sequential import Sequential

__all__ = ["lenet5", "tutorial_cnn"]


def lenet5(input_shape: Shape = (28, 28, 1), classes: int = 10,
           compile: bool = True) -> Sequential:
    """The curriculum's LeNet-5::

        Conv2D(6, 5, same, relu) -> MaxPool(2, 2) -> Conv2D(16, 5, valid, relu) -> MaxPool(2, 2)
        -> Flatten -> Dense(120, relu) -> Dense(84, relu) -> Dense(classes, softmax)

    Every kernel uses ``he_normal(seed=0)``. With ``compile=True`` it is compiled with Adam,
    categorical cross-entropy and accuracy. Inputs ``(batch,) + input_shape``; the spatial
    size must be at least 12 (28 for MNIST, 32 for LeNet's original input).
    """
    def he():
        return _initializers.HeNormal(seed=0)
    L = _layers
    model = Sequential([
        L.Input(input_shape),
        L.Conv2D(6, 5, padding="same", activation="relu", kernel_initializer=he()),
        L.MaxPooling2D(2, strides=2),
        L.Conv2D(16, 5, padding="valid", activation="relu", kernel_initializer=he()),
        L.MaxPooling2D(2, strides=2),
        L.Flatten(),
        L.Dense(120, activation="relu", kernel_initializer=he()),
        L.Dense(84, activation="relu", kernel_initializer=he()),
        L.Dense(classes, activation="softmax", kernel_initializer=he()),
    ], name="lenet5")
    model.build()
    if compile:
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def tutorial_cnn(input_shape: Shape = (32, 32, 3), classes: int = 10,
                 compile: bool = True) -> Sequential:
    """The TensorFlow CNN tutorial network (CIFAR-10 sized)::

        Conv2D(32, 3, relu) -> MaxPool(2) -> Conv2D(64, 3, relu) -> MaxPool(2)
        -> Conv2D(64, 3, relu) -> Flatten -> Dense(64, relu) -> Dense(classes)

    Outputs are logits; ``compile=True`` uses Adam and
    ``SparseCategoricalCrossentropy(from_logits=True)`` with accuracy, as the tutorial does.
    """
    L = _layers
    model = Sequential([
        L.Input(input_shape),
        L.Conv2D(32, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.Flatten(),
        L.Dense(64, activation="relu"),
        L.Dense(classes),
    ], name="tutorial_cnn")
    model.build()
    if compile:
        model.compile(
            optimizer="adam",
            loss=_losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    return model
