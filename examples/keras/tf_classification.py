"""Image classification (TensorFlow tutorial, site/en/tutorials/images/classification.ipynb):
the flowers CNN, then the same CNN with a data-augmentation Sequential and Dropout.

Source: https://www.tensorflow.org/tutorials/images/classification
Ported to cconv: only the imports changed (``from tensorflow import keras`` /
``tf.keras`` -> ``import cconv as keras``, ``from tensorflow.keras import layers`` ->
``from cconv import layers``, ``from tensorflow.keras.models import Sequential`` ->
``from cconv.models import Sequential``); the flower photos and
``image_dataset_from_directory`` are swapped for a generated stand-in of the same shapes
(float32 (n, 180, 180, 3) in [0, 255], 5 classes), 10 + 15 epochs became 2 + 2 on 48 images,
the plots and the TensorFlow Lite conversion are left out, and the prediction on one image
reads a stand-in array instead of the sunflower download.
"""
import numpy as np
import cconv as keras
from cconv import layers
from cconv.models import Sequential

batch_size = 16  # 32 in the original
img_height = 180
img_width = 180

class_names = ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']


# Stand-in for tf.keras.utils.image_dataset_from_directory(data_dir, ...).
def load_split(n, seed):
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(0).random((5, img_height, img_width, 3))
    labels = rng.integers(0, 5, n)
    images = 255 * (0.6 * templates[labels] + 0.4 * rng.random((n, img_height, img_width, 3)))
    return images.astype("float32"), labels.astype("int32")


train_images, train_labels = load_split(48, seed=1)
val_images, val_labels = load_split(16, seed=2)

normalization_layer = layers.Rescaling(1./255)
normalized_images = normalization_layer(train_images)
first_image = normalized_images[0]
# Notice the pixel values are now in `[0,1]`.
print(np.min(first_image), np.max(first_image))

num_classes = len(class_names)

model = Sequential([
  layers.Rescaling(1./255, input_shape=(img_height, img_width, 3)),
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

model.summary()

epochs = 2  # 10 in the original
history = model.fit(
  train_images, train_labels,
  batch_size=batch_size,
  validation_data=(val_images, val_labels),
  epochs=epochs
)
first_model = model

data_augmentation = keras.Sequential(
  [
    layers.RandomFlip("horizontal",
                      input_shape=(img_height,
                                  img_width,
                                  3)),
    layers.RandomRotation(0.1),
    layers.RandomZoom(0.1),
  ]
)

augmented_images = data_augmentation(train_images[:9])

model = Sequential([
  data_augmentation,
  layers.Rescaling(1./255),
  layers.Conv2D(16, 3, padding='same', activation='relu'),
  layers.MaxPooling2D(),
  layers.Conv2D(32, 3, padding='same', activation='relu'),
  layers.MaxPooling2D(),
  layers.Conv2D(64, 3, padding='same', activation='relu'),
  layers.MaxPooling2D(),
  layers.Dropout(0.2),
  layers.Flatten(),
  layers.Dense(128, activation='relu'),
  layers.Dense(num_classes, name="outputs")
])

model.compile(optimizer='adam',
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=['accuracy'])

model.summary()

epochs = 2  # 15 in the original
history = model.fit(
  train_images, train_labels,
  batch_size=batch_size,
  validation_data=(val_images, val_labels),
  epochs=epochs
)

# Predict on new data (a stand-in array for tf.keras.utils.load_img(sunflower_path)).
img_array = val_images[:1]  # Create a batch
predictions = model.predict(img_array)
score = keras.ops.softmax(predictions[0])
print(
    "This image most likely belongs to {} with a {:.2f} percent confidence."
    .format(class_names[np.argmax(score)], 100 * np.max(score))
)
