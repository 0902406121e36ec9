"""The course's Keras LeNet-5 (functional API) on cconv, unchanged but for the import.

The course writes ``import tensorflow.keras as K``; here it is ``import cconv as K``, and
``lenet5`` below is the course's function as its solutions write it (``K.Input`` -> layer
calls -> ``K.Model(inputs=X, outputs=output)``, he_normal(seed=0), Adam, categorical
cross-entropy, accuracy). It trains on the first 8,000 images of the MNIST test set and
validates on the last 2,000 (the only MNIST files the project keeps; see
``cconv.datasets.load_mnist``)::

    python examples/course_lenet5.py                      # MNIST in ../shared/data/mnist
    python examples/course_lenet5.py --data DIR --epochs 2
"""
import argparse
import os

import numpy as np

import cconv as K

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                            "data", "mnist")


def lenet5(X):
    """The course's function: X is K.Input(shape=(28, 28, 1)); returns the compiled model."""
    initializer = K.initializers.he_normal(seed=0)
    conv1 = K.layers.Conv2D(filters=6, kernel_size=(5, 5), padding="same", activation="relu",
                            kernel_initializer=initializer)(X)
    pool1 = K.layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2))(conv1)
    conv2 = K.layers.Conv2D(filters=16, kernel_size=(5, 5), padding="valid", activation="relu",
                            kernel_initializer=initializer)(pool1)
    pool2 = K.layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2))(conv2)
    flatten = K.layers.Flatten()(pool2)
    fc1 = K.layers.Dense(units=120, activation="relu", kernel_initializer=initializer)(flatten)
    fc2 = K.layers.Dense(units=84, activation="relu", kernel_initializer=initializer)(fc1)
    output = K.layers.Dense(units=10, activation="softmax", kernel_initializer=initializer)(fc2)
    model = K.Model(inputs=X, outputs=output)
    model.compile(optimizer=K.optimizers.Adam(), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    x, y = K.datasets.load_mnist(args.data, subset="test")
    X_train_c, Y_train_oh = x[:8000], y[:8000]
    X_valid_c, Y_valid_oh = x[8000:], y[8000:]

    # The course's main file from here on.
    np.random.seed(0)
    X = K.Input(shape=(28, 28, 1))
    model = lenet5(X)
    batch_size = 32
    epochs = args.epochs
    model.fit(X_train_c, Y_train_oh, batch_size=batch_size, epochs=epochs, verbose=True,
              validation_data=(X_valid_c, Y_valid_oh))
    Y_pred = model.predict(X_valid_c)
    print(Y_pred[0])
    Y_pred = np.argmax(Y_pred, 1)
    print(Y_pred[0:10])
    accuracy = float(np.mean(Y_pred == np.argmax(Y_valid_oh, 1)))
    print(f"validation accuracy: {accuracy:.2%}")
    return accuracy


if __name__ == "__main__":
    main()
