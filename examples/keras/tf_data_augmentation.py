"""Data augmentation (TensorFlow tutorial, site/en/tutorials/images/data_augmentation.ipynb):
preprocessing Sequentials (Resizing + Rescaling, RandomFlip + RandomRotation) used inside a
model and over the data, then the flowers CNN trained on the augmented data.

Source: https://www.tensorflow.org/tutorials/images/data_augmentation
Ported to cconv: only the imports changed (``tf.keras`` -> ``import cconv as keras``,
``from tensorflow.keras import layers`` -> ``from cconv import layers``); the ``tf_flowers``
download is swapped for a generated stand-in (uint8 (n, 240, 320, 3) photos, 5 classes), the
``tf.data`` ``prepare`` function for one over NumPy arrays doing the same maps, 5 epochs became 2
on 48 images, and the plots and the ``tf.image`` / ``tf.random`` sections are left out, and
``result.numpy().min()`` is written ``np.min(result)`` (cconv returns NumPy arrays). The
tutorial builds the first model without data; the line marked "added" calls it on a batch.
"""
import numpy as np
import cconv as keras
from cconv import layers

batch_size = 16  # 32 in the original
num_classes = 5


# Stand-in for tfds.load('tf_flowers', ...): one noisy template per class, uint8 photos.
def load_split(n, seed):
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(0).random((num_classes, 240, 320, 3))
    labels = rng.integers(0, num_classes, n)
    images = 255 * (0.6 * templates[labels] + 0.4 * rng.random((n, 240, 320, 3)))
    return images.astype("uint8"), labels.astype("int32")


train_ds = load_split(48, seed=1)
val_ds = load_split(16, seed=2)
image, label = train_ds[0][:1], train_ds[1][:1]

IMG_SIZE = 180

resize_and_rescale = keras.Sequential([
  layers.Resizing(IMG_SIZE, IMG_SIZE),
  layers.Rescaling(1./255)
])

result = resize_and_rescale(image)
print("Min and max pixel values:", np.min(result), np.max(result))

data_augmentation = keras.Sequential([
  layers.RandomFlip("horizontal_and_vertical"),
  layers.RandomRotation(0.2),
])

for i in range(9):
  augmented_image = data_augmentation(result)

model = keras.Sequential([
  # Add the preprocessing layers you created earlier.
  resize_and_rescale,
  data_augmentation,
  layers.Conv2D(16, 3, padding='same', activation='relu'),
  layers.MaxPooling2D(),
  # Rest of your model.
])
model(image)  # added: build the model on a batch
augmented_model = model  # added: kept for the test


def prepare(ds, shuffle=False, augment=False):
  images, labels = ds
  if shuffle:  # (shuffled before the resize here: the same examples, NumPy indexing)
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]

  # Resize and rescale all datasets.
  images = resize_and_rescale(images)

  # Use data augmentation only on the training set.
  if augment:
    images = data_augmentation(images, training=True)

  return images, labels


train_ds = prepare(train_ds, shuffle=True, augment=True)
val_ds = prepare(val_ds)

model = keras.Sequential([
  layers.Conv2D(16, 3, padding='same', activation='relu'),
  layers.MaxPooling2D(),
  layers.Conv2D(32, 3, padding='same', activation='relu'),
  layers.MaxPooling2D(),
  layers.Conv2D(64, 3, padding='same', activation='relu'),
  layers.MaxPooling2D(),
  layers.Flatten(),
  layers.Dense(128, activation='relu'),
  layers.Dense(num_classes)
])

model.compile(optimizer='adam',
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=['accuracy'])

epochs = 2  # 5 in the original
history = model.fit(
  train_ds[0], train_ds[1],
  batch_size=batch_size,
  validation_data=val_ds,
  epochs=epochs
)

loss, acc = model.evaluate(val_ds[0], val_ds[1])
print("Accuracy", acc)
