"""Image classification with ConvMixer (keras-io, examples/vision/convmixer.py, by Sayak Paul).

Source: https://keras.io/examples/vision/convmixer/
Ported to cconv: only the imports changed (``import cconv as keras``, ``from cconv import
layers``); ``keras.datasets.cifar10.load_data()`` is swapped for a generated stand-in of the
same shapes and dtypes, the ``tf.data`` pipeline for NumPy arrays augmented by the same
``augment_images``, 10 epochs became 2 on 108 training images, and the patch-embedding plots are left
out (their weights are still read).
"""
import numpy as np
import cconv as keras
from cconv import layers

learning_rate = 0.001
weight_decay = 0.0001
batch_size = 128
num_epochs = 2  # 10 in the original


# Stand-in for keras.datasets.cifar10.load_data(): one noisy template per class, uint8.
def load_data(n_train=120, n_test=32, seed=0):
    rng = np.random.default_rng(seed)
    templates = rng.random((10, 32, 32, 3))

    def make(n):
        y = rng.integers(0, 10, (n, 1)).astype("uint8")
        x = 0.6 * templates[y[:, 0]] + 0.4 * rng.random((n, 32, 32, 3))
        return (255 * x).astype("uint8"), y

    return make(n_train), make(n_test)


(x_train, y_train), (x_test, y_test) = load_data()
val_split = 0.1

val_indices = int(len(x_train) * val_split)
new_x_train, new_y_train = x_train[val_indices:], y_train[val_indices:]
x_val, y_val = x_train[:val_indices], y_train[:val_indices]

print(f"Training data samples: {len(new_x_train)}")
print(f"Validation data samples: {len(x_val)}")
print(f"Test data samples: {len(x_test)}")

image_size = 32

augmentation_layers = [
    keras.layers.RandomCrop(image_size, image_size),
    keras.layers.RandomFlip("horizontal"),
]


def augment_images(images):
    for layer in augmentation_layers:
        images = layer(images, training=True)
    return images


# The original builds tf.data pipelines here; the arrays are augmented once instead.
train_images = augment_images(new_x_train.astype("float32"))


def activation_block(x):
    x = layers.Activation("gelu")(x)
    return layers.BatchNormalization()(x)


def conv_stem(x, filters: int, patch_size: int):
    x = layers.Conv2D(filters, kernel_size=patch_size, strides=patch_size)(x)
    return activation_block(x)


def conv_mixer_block(x, filters: int, kernel_size: int):
    # Depthwise convolution.
    x0 = x
    x = layers.DepthwiseConv2D(kernel_size=kernel_size, padding="same")(x)
    x = layers.Add()([activation_block(x), x0])  # Residual.

    # Pointwise convolution.
    x = layers.Conv2D(filters, kernel_size=1)(x)
    x = activation_block(x)

    return x


def get_conv_mixer_256_8(
    image_size=32, filters=256, depth=8, kernel_size=5, patch_size=2, num_classes=10
):
    """ConvMixer-256/8: https://openreview.net/pdf?id=TVHS5Y4dNvM.
    The hyperparameter values are taken from the paper.
    """
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(scale=1.0 / 255)(inputs)

    # Extract patch embeddings.
    x = conv_stem(x, filters, patch_size)

    # ConvMixer blocks.
    for _ in range(depth):
        x = conv_mixer_block(x, filters, kernel_size)

    # Classification block.
    x = layers.GlobalAvgPool2D()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)

    return keras.Model(inputs, outputs)


def run_experiment(model):
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate, weight_decay=weight_decay
    )

    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    checkpoint_filepath = "checkpoint.keras"  # "/tmp/checkpoint.keras" in the original
    checkpoint_callback = keras.callbacks.ModelCheckpoint(
        checkpoint_filepath,
        monitor="val_accuracy",
        save_best_only=True,
        save_weights_only=False,
    )

    history = model.fit(
        train_images,
        new_y_train,
        batch_size=batch_size,
        validation_data=(x_val, y_val),
        epochs=num_epochs,
        callbacks=[checkpoint_callback],
    )

    model.load_weights(checkpoint_filepath)
    _, accuracy = model.evaluate(x_test, y_test)
    print(f"Test accuracy: {round(accuracy * 100, 2)}%")

    return history, model


conv_mixer_model = get_conv_mixer_256_8()
history, conv_mixer_model = run_experiment(conv_mixer_model)

# Visualizing the learned patch embeddings (the plots are left out).
patch_embeddings = conv_mixer_model.layers[2].get_weights()[0]
print(patch_embeddings.shape)

# First, we find the index of the depthwise convolution layers.
for i, layer in enumerate(conv_mixer_model.layers):
    if isinstance(layer, layers.DepthwiseConv2D):
        if layer.get_config()["kernel_size"] == (5, 5):
            print(i, layer)

idx = 26  # Taking a kernel from the middle of the network.
kernel = conv_mixer_model.layers[idx].get_weights()[0]
kernel = np.expand_dims(kernel.squeeze(), axis=2)
print(kernel.shape)
