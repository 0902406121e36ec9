"""A small residual network on MNIST with the functional API: two residual blocks
(``x + conv(conv(x))`` through ``cconv.layers.Add``), global average pooling, softmax.

Trains on the first 8,000 images of the MNIST test set, validates on the last 2,000::

    python examples/residual_mnist.py [--data DIR] [--epochs 3]
"""
import argparse
import os

import numpy as np

import cconv

L = cconv.layers
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                            "data", "mnist")


def residual_block(x, filters, name):
    """``relu(x + conv(relu(conv(x))))``; ``x`` must have ``filters`` channels."""
    r = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv1")(x)
    r = L.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(r)
    return L.Activation("relu", name=f"{name}_out")(L.Add(name=f"{name}_add")([x, r]))


def resnet(input_shape=(28, 28, 1), classes=10, filters=16):
    x = cconv.Input(shape=input_shape)
    h = L.Conv2D(filters, 3, padding="same", activation="relu", name="stem")(x)
    h = L.MaxPooling2D(name="pool1")(h)                        # 14 x 14
    h = residual_block(h, filters, "block1")
    h = L.MaxPooling2D(name="pool2")(h)                        # 7 x 7
    h = residual_block(h, filters, "block2")
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(classes, activation="softmax", name="probs")(h)
    model = cconv.Model(inputs=x, outputs=out, name="resnet_mini")
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    x, y = cconv.datasets.load_mnist(args.data, subset="test")
    np.random.seed(0)
    model = resnet()
    model.summary()
    model.fit(x[:8000], y[:8000], batch_size=32, epochs=args.epochs,
              validation_data=(x[8000:], y[8000:]), verbose=2)
    loss, accuracy = model.evaluate(x[8000:], y[8000:], verbose=0)
    print(f"validation accuracy: {accuracy:.2%}")
    return accuracy


if __name__ == "__main__":
    main()
