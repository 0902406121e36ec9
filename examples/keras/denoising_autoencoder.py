"""Convolutional autoencoder for image denoising (keras-io, examples/vision/autoencoder.py,
by Santiago L. Valdarrama).

Source: https://keras.io/examples/vision/autoencoder/
Ported to cconv: only the imports changed (``from cconv import layers``,
``from cconv.models import Model``); ``mnist.load_data()`` is swapped for a generated
stand-in of the same shapes and dtypes, 50 + 100 epochs became 2 + 2 on 256 images, and the
matplotlib ``display`` calls are left out.
"""
import numpy as np
from cconv import layers
from cconv.models import Model


def preprocess(array):
    """Normalizes the supplied array and reshapes it."""
    array = array.astype("float32") / 255.0
    array = np.reshape(array, (len(array), 28, 28, 1))
    return array


def noise(array):
    """Adds random noise to each image in the supplied array."""
    noise_factor = 0.4
    noisy_array = array + noise_factor * np.random.normal(
        loc=0.0, scale=1.0, size=array.shape
    )
    return np.clip(noisy_array, 0.0, 1.0)


# Stand-in for mnist.load_data(): smooth blobs drawn as uint8 (n, 28, 28) images.
def load_data(n_train=256, n_test=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]

    def make(n):
        cy, cx = rng.uniform(8, 20, (2, n, 1, 1))
        r = rng.uniform(3, 7, (n, 1, 1))
        x = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        return (255 * x).astype("uint8"), rng.integers(0, 10, n).astype("uint8")

    return make(n_train), make(n_test)


np.random.seed(0)
# Since we only need images from the dataset to encode and decode, we
# won't use the labels.
(train_data, _), (test_data, _) = load_data()

# Normalize and reshape the data
train_data = preprocess(train_data)
test_data = preprocess(test_data)

# Create a copy of the data with added noise
noisy_train_data = noise(train_data)
noisy_test_data = noise(test_data)

input = layers.Input(shape=(28, 28, 1))

# Encoder
x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(input)
x = layers.MaxPooling2D((2, 2), padding="same")(x)
x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
x = layers.MaxPooling2D((2, 2), padding="same")(x)

# Decoder
x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
x = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)

# Autoencoder
autoencoder = Model(input, x)
autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
autoencoder.summary()

history = autoencoder.fit(
    x=train_data,
    y=train_data,
    epochs=2,  # 50 in the original
    batch_size=128,
    shuffle=True,
    validation_data=(test_data, test_data),
)

predictions = autoencoder.predict(test_data)

history_denoise = autoencoder.fit(
    x=noisy_train_data,
    y=train_data,
    epochs=2,  # 100 in the original
    batch_size=128,
    shuffle=True,
    validation_data=(noisy_test_data, test_data),
)

predictions = autoencoder.predict(noisy_test_data)
