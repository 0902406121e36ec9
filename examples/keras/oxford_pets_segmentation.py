"""Image segmentation with a U-Net-like architecture (keras-io,
examples/vision/oxford_pets_image_segmentation.py, by fchollet).

Source: https://keras.io/examples/vision/oxford_pets_image_segmentation/
Ported to cconv: only the imports changed (``import cconv as keras``, ``from cconv import
layers``); the Oxford-IIIT Pets download and its ``tf.data`` loader are swapped for a
generated stand-in of the same shapes (float32 (n, 160, 160, 3) images, uint8 (n, 160, 160, 1)
masks of classes 0, 1, 2: a disc, its rim and the background, as the trimaps after the
original's ``- 1``), 50 epochs became 2 on 16 images, batch size 32 became 8, and the
display of the masks is left out.
"""
import numpy as np
import cconv as keras
from cconv import layers

img_size = (160, 160)
num_classes = 3
batch_size = 8  # 32 in the original


# Stand-in for the pets and their trimaps: a bright disc (class 0), its rim (class 2) and the
# background (class 1) on noise.
def load_split(n, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:img_size[0], 0:img_size[1]]
    cy, cx = rng.uniform(50, 110, (2, n, 1, 1))
    r = rng.uniform(25, 45, (n, 1, 1))
    dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    masks = np.where(dist < r - 3, 0, np.where(dist < r + 3, 2, 1)).astype("uint8")
    images = 255 * (0.5 * (masks == 0)[..., None] + 0.5 * rng.random((n,) + img_size + (3,)))
    return images.astype("float32"), masks[..., None]


train_input, train_target = load_split(16, seed=1)
val_input, val_target = load_split(8, seed=2)


def get_model(img_size, num_classes):
    inputs = keras.Input(shape=img_size + (3,))

    ### [First half of the network: downsampling inputs] ###

    # Entry block
    x = layers.Conv2D(32, 3, strides=2, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    previous_block_activation = x  # Set aside residual

    # Blocks 1, 2, 3 are identical apart from the feature depth.
    for filters in [64, 128, 256]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        # Project residual
        residual = layers.Conv2D(filters, 1, strides=2, padding="same")(
            previous_block_activation
        )
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    ### [Second half of the network: upsampling inputs] ###

    for filters in [256, 128, 64, 32]:
        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.Activation("relu")(x)
        x = layers.Conv2DTranspose(filters, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.UpSampling2D(2)(x)

        # Project residual
        residual = layers.UpSampling2D(2)(previous_block_activation)
        residual = layers.Conv2D(filters, 1, padding="same")(residual)
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    # Add a per-pixel classification layer
    outputs = layers.Conv2D(num_classes, 3, activation="softmax", padding="same")(x)

    # Define the model
    model = keras.Model(inputs, outputs)
    return model


# Build model
model = get_model(img_size, num_classes)
model.summary()

# Configure the model for training.
# We use the "sparse" version of categorical_crossentropy
# because our target data is integers.
model.compile(
    optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy"
)

callbacks = [
    keras.callbacks.ModelCheckpoint("oxford_segmentation.keras", save_best_only=True)
]

# Train the model, doing validation at the end of each epoch.
epochs = 2  # 50 in the original
history = model.fit(
    train_input,
    train_target,
    batch_size=batch_size,
    epochs=epochs,
    validation_data=(val_input, val_target),
    callbacks=callbacks,
    verbose=2,
)

# Generate predictions for all images in the validation set
val_preds = model.predict(val_input)
mask = np.argmax(val_preds[0], axis=-1)
print(mask.shape)
