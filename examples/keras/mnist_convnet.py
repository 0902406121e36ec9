"""Simple MNIST convnet (keras-io, examples/vision/mnist_convnet.py, by fchollet).

Source: https://keras.io/examples/vision/mnist_convnet/
Ported to cconv: only the import changed (``import cconv as keras``, ``from cconv import
layers``); ``keras.datasets.mnist.load_data()`` is swapped for a generated stand-in of the same
shapes and dtypes (uint8 images (n, 28, 28), integer labels), and 15 epochs became 2 on 512
images so the program runs in seconds.
"""
import numpy as np
import cconv as keras
from cconv import layers

# Model / data parameters
num_classes = 10
input_shape = (28, 28, 1)


# Stand-in for keras.datasets.mnist.load_data(): one noisy template per class, uint8.
def load_data(n_train=512, n_test=128, seed=0):
    rng = np.random.default_rng(seed)
    templates = rng.random((10, 28, 28))

    def make(n):
        y = rng.integers(0, 10, n).astype("uint8")
        x = 0.6 * templates[y] + 0.4 * rng.random((n, 28, 28))
        return (255 * x).astype("uint8"), y

    return make(n_train), make(n_test)


(x_train, y_train), (x_test, y_test) = load_data()

# Scale images to the [0, 1] range
x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
# Make sure images have shape (28, 28, 1)
x_train = np.expand_dims(x_train, -1)
x_test = np.expand_dims(x_test, -1)
print("x_train shape:", x_train.shape)
print(x_train.shape[0], "train samples")
print(x_test.shape[0], "test samples")

# convert class vectors to binary class matrices
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]
)

model.summary()

batch_size = 128
epochs = 2  # 15 in the original

model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.1)

score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
