"""Transfer learning and fine-tuning (TensorFlow tutorial,
site/en/tutorials/images/transfer_learning.ipynb): a frozen convolutional base called with
``training=False`` inside a new model with data augmentation, then fine-tuning its top layers.

Source: https://www.tensorflow.org/tutorials/images/transfer_learning
Ported to cconv: only the imports changed (``tf.keras`` -> ``import cconv as keras``). Swapped
for stand-ins: the cats_and_dogs_filtered download (generated float32 (n, 160, 160, 3) images in
[0, 255], labels 0/1, arrays instead of ``tf.data``), and the pretrained
``keras.applications.MobileNetV2(include_top=False, weights='imagenet')`` base (no download:
a small functional convolutional base with the same 5x5 feature maps, built by
``small_base``; ``preprocess_input`` becomes the tutorial's own alternative, the
``Rescaling(1./127.5, offset=-1)`` layer). 10 + 10 epochs became 2 + 2 on 48 images,
``fine_tune_at`` 100 became 3 for the small base, and the plots are left out.
"""
import numpy as np
import cconv as keras

BATCH_SIZE = 16  # 32 in the original
IMG_SIZE = (160, 160)


# Stand-in for image_dataset_from_directory(cats_and_dogs_filtered/...): two noisy templates.
def load_split(n, seed):
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(0).random((2,) + IMG_SIZE + (3,))
    labels = rng.integers(0, 2, n)
    images = 255 * (0.6 * templates[labels] + 0.4 * rng.random((n,) + IMG_SIZE + (3,)))
    return images.astype("float32"), labels.astype("float32")


train_dataset = load_split(48, seed=1)
validation_dataset = load_split(16, seed=2)
test_dataset = load_split(16, seed=3)

data_augmentation = keras.Sequential([
  keras.layers.RandomFlip('horizontal'),
  keras.layers.RandomRotation(0.2),
])

rescale = keras.layers.Rescaling(1./127.5, offset=-1)
preprocess_input = rescale

# Create the base model (a small stand-in for MobileNetV2, see the docstring)
IMG_SHAPE = IMG_SIZE + (3,)


def small_base(input_shape):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.SeparableConv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(128, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(inputs, x, name="small_base")


base_model = small_base(IMG_SHAPE)

image_batch, label_batch = train_dataset[0][:BATCH_SIZE], train_dataset[1][:BATCH_SIZE]
feature_batch = base_model(image_batch)
print(feature_batch.shape)

base_model.trainable = False

# Let's take a look at the base model architecture
base_model.summary()

global_average_layer = keras.layers.GlobalAveragePooling2D()
feature_batch_average = global_average_layer(feature_batch)
print(feature_batch_average.shape)

prediction_layer = keras.layers.Dense(1)
prediction_batch = prediction_layer(feature_batch_average)
print(prediction_batch.shape)

inputs = keras.Input(shape=(160, 160, 3))
x = data_augmentation(inputs)
x = preprocess_input(x)
x = base_model(x, training=False)
x = global_average_layer(x)
x = keras.layers.Dropout(0.2)(x)
outputs = prediction_layer(x)
model = keras.Model(inputs, outputs)

base_learning_rate = 0.0001
model.compile(optimizer=keras.optimizers.Adam(learning_rate=base_learning_rate),
              loss=keras.losses.BinaryCrossentropy(from_logits=True),
              metrics=[keras.metrics.BinaryAccuracy(threshold=0.5, name='accuracy')])

model.summary()

print(len(model.trainable_variables))

initial_epochs = 2  # 10 in the original

loss0, accuracy0 = model.evaluate(*validation_dataset)

history = model.fit(*train_dataset,
                    batch_size=BATCH_SIZE,
                    epochs=initial_epochs,
                    validation_data=validation_dataset)

base_model.trainable = True

# Let's take a look to see how many layers are in the base model
print("Number of layers in the base model: ", len(base_model.layers))

# Fine-tune from this layer onwards
fine_tune_at = 3  # 100 in the original (MobileNetV2 has 154 layers)

# Freeze all the layers before the `fine_tune_at` layer
for layer in base_model.layers[:fine_tune_at]:
  layer.trainable = False

model.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True),
              optimizer=keras.optimizers.RMSprop(learning_rate=base_learning_rate/10),
              metrics=[keras.metrics.BinaryAccuracy(threshold=0.5, name='accuracy')])

model.summary()

print(len(model.trainable_variables))

fine_tune_epochs = 2  # 10 in the original
total_epochs = initial_epochs + fine_tune_epochs

history_fine = model.fit(*train_dataset,
                         batch_size=BATCH_SIZE,
                         epochs=total_epochs,
                         initial_epoch=len(history.epoch),
                         validation_data=validation_dataset)

loss, accuracy = model.evaluate(*test_dataset)
print('Test accuracy :', accuracy)

# Retrieve a batch of images from the test set
image_batch, label_batch = test_dataset[0][:BATCH_SIZE], test_dataset[1][:BATCH_SIZE]
predictions = model.predict_on_batch(image_batch).flatten()

# Apply a sigmoid since our model returns logits
predictions = keras.ops.sigmoid(predictions)
predictions = np.where(np.asarray(predictions) < 0.5, 0, 1)

print('Predictions:\n', predictions)
print('Labels:\n', label_batch)
