"""The Functional API guide, "A toy ResNet model" (keras-io, guides/functional_api.py, by
fchollet).

Source: https://keras.io/guides/functional_api/#a-toy-resnet-model
Ported to cconv: only the imports changed (``import cconv as keras``, ``from cconv import
layers``); ``keras.datasets.cifar10.load_data()`` is swapped for a generated stand-in of the
same shapes and dtypes, and the guide's first 1000 samples became 256 (3 epochs instead of 1,
to see the loss fall).
"""
import numpy as np
import cconv as keras
from cconv import layers

inputs = keras.Input(shape=(32, 32, 3), name="img")
x = layers.Conv2D(32, 3, activation="relu")(inputs)
x = layers.Conv2D(64, 3, activation="relu")(x)
block_1_output = layers.MaxPooling2D(3)(x)

x = layers.Conv2D(64, 3, activation="relu", padding="same")(block_1_output)
x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
block_2_output = layers.add([x, block_1_output])

x = layers.Conv2D(64, 3, activation="relu", padding="same")(block_2_output)
x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
block_3_output = layers.add([x, block_2_output])

x = layers.Conv2D(64, 3, activation="relu")(block_3_output)
x = layers.GlobalAveragePooling2D()(x)
x = layers.Dense(256, activation="relu")(x)
x = layers.Dropout(0.5)(x)
outputs = layers.Dense(10)(x)

model = keras.Model(inputs, outputs, name="toy_resnet")
model.summary()

keras.utils.plot_model(model, "mini_resnet.png", show_shapes=True)


# Stand-in for keras.datasets.cifar10.load_data(): one noisy template per class, uint8.
def load_data(n_train=256, n_test=64, seed=0):
    rng = np.random.default_rng(seed)
    templates = rng.random((10, 32, 32, 3))

    def make(n):
        y = rng.integers(0, 10, (n, 1)).astype("uint8")
        x = 0.6 * templates[y[:, 0]] + 0.4 * rng.random((n, 32, 32, 3))
        return (255 * x).astype("uint8"), y

    return make(n_train), make(n_test)


(x_train, y_train), (x_test, y_test) = load_data()

x_train = x_train.astype("float32") / 255.0
x_test = x_test.astype("float32") / 255.0
y_train = keras.utils.to_categorical(y_train, 10)
y_test = keras.utils.to_categorical(y_test, 10)

model.compile(
    optimizer=keras.optimizers.RMSprop(1e-3),
    loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    metrics=["acc"],
)
# We restrict the data to the first 1000 samples so as to limit execution time
# on Colab. Try to train on the entire dataset until convergence!
history = model.fit(
    x_train[:1000],
    y_train[:1000],
    batch_size=64,
    epochs=3,  # 1 in the guide
    validation_split=0.2,
)
