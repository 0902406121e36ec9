"""Image classification from scratch (keras-io, examples/vision/image_classification_from_scratch.py,
by fchollet): a small Xception-like network with data augmentation.

Source: https://keras.io/examples/vision/image_classification_from_scratch/
Ported to cconv: only the imports changed (``import cconv as keras``, ``from cconv import
layers``); the Cats vs Dogs download and ``image_dataset_from_directory`` are swapped for a
generated stand-in of the same shapes (float32 (n, 180, 180, 3) images in [0, 255], labels
0/1), augmented by the same ``data_augmentation`` function (the original maps it over the
``tf.data`` dataset), 25 epochs became 2 on 16 images, and the prediction on one image reads a
stand-in array instead of ``PetImages/Cat/6779.jpg``.
"""
import numpy as np
import cconv as keras
from cconv import layers

image_size = (180, 180)
batch_size = 8  # 128 in the original


# Stand-in for image_dataset_from_directory("PetImages", ...): two noisy class templates.
def load_split(n, seed):
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(0).random((2,) + image_size + (3,))
    labels = rng.integers(0, 2, n)
    images = 255 * (0.6 * templates[labels] + 0.4 * rng.random((n,) + image_size + (3,)))
    return images.astype("float32"), labels.astype("int32")


train_images, train_labels = load_split(16, seed=1)
val_images, val_labels = load_split(8, seed=2)

data_augmentation_layers = [
    layers.RandomFlip("horizontal"),
    layers.RandomRotation(0.1),
]


def data_augmentation(images):
    for layer in data_augmentation_layers:
        images = layer(images)
    return images


# Apply `data_augmentation` to the training images (the original maps it over train_ds).
train_images = data_augmentation(train_images)


def make_model(input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)

    # Entry block
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(128, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    previous_block_activation = x  # Set aside residual

    for size in [256, 512, 728]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        # Project residual
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(
            previous_block_activation
        )
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    x = layers.SeparableConv2D(1024, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    x = layers.GlobalAveragePooling2D()(x)
    if num_classes == 2:
        units = 1
    else:
        units = num_classes

    x = layers.Dropout(0.25)(x)
    # We specify activation=None so as to return logits
    outputs = layers.Dense(units, activation=None)(x)
    return keras.Model(inputs, outputs)


model = make_model(input_shape=image_size + (3,), num_classes=2)
keras.utils.plot_model(model, show_shapes=True)

epochs = 2  # 25 in the original

callbacks = [
    keras.callbacks.ModelCheckpoint("save_at_{epoch}.keras"),
]
model.compile(
    optimizer=keras.optimizers.Adam(3e-4),
    loss=keras.losses.BinaryCrossentropy(from_logits=True),
    metrics=[keras.metrics.BinaryAccuracy(name="acc")],
)
history = model.fit(
    train_images,
    train_labels,
    batch_size=batch_size,
    epochs=epochs,
    callbacks=callbacks,
    validation_data=(val_images, val_labels),
)

# Run inference on new data (a stand-in array for keras.utils.load_img(...)).
img_array = val_images[0]
img_array = keras.ops.expand_dims(img_array, 0)  # Create batch axis

predictions = model.predict(img_array)
score = float(keras.ops.sigmoid(predictions[0][0]))
print(f"This image is {100 * (1 - score):.2f}% cat and {100 * score:.2f}% dog.")
