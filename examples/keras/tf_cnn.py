"""Convolutional Neural Network (CNN) (TensorFlow tutorial, site/en/tutorials/images/cnn.ipynb).

Source: https://www.tensorflow.org/tutorials/images/cnn
Ported to cconv: only the import changed (``from tensorflow.keras import datasets, layers,
models`` -> ``from cconv import datasets, layers, models``); ``datasets.cifar10.load_data()`` is
swapped for a generated stand-in of the same shapes and dtypes (uint8 (n, 32, 32, 3) images,
(n, 1) labels), 10 epochs became 2 on 512 images, and the matplotlib plots are left out.
"""
import numpy as np
from cconv import layers, losses, models


# Stand-in for datasets.cifar10.load_data(): one noisy template per class, uint8.
def load_data(n_train=512, n_test=128, seed=0):
    rng = np.random.default_rng(seed)
    templates = rng.random((10, 32, 32, 3))

    def make(n):
        y = rng.integers(0, 10, (n, 1)).astype("uint8")
        x = 0.6 * templates[y[:, 0]] + 0.4 * rng.random((n, 32, 32, 3))
        return (255 * x).astype("uint8"), y

    return make(n_train), make(n_test)


(train_images, train_labels), (test_images, test_labels) = load_data()

# Normalize pixel values to be between 0 and 1
train_images, test_images = train_images / 255.0, test_images / 255.0

class_names = ['airplane', 'automobile', 'bird', 'cat', 'deer',
               'dog', 'frog', 'horse', 'ship', 'truck']

model = models.Sequential()
model.add(layers.Conv2D(32, (3, 3), activation='relu', input_shape=(32, 32, 3)))
model.add(layers.MaxPooling2D((2, 2)))
model.add(layers.Conv2D(64, (3, 3), activation='relu'))
model.add(layers.MaxPooling2D((2, 2)))
model.add(layers.Conv2D(64, (3, 3), activation='relu'))

model.summary()

model.add(layers.Flatten())
model.add(layers.Dense(64, activation='relu'))
model.add(layers.Dense(10))

model.summary()

model.compile(optimizer='adam',
              loss=losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=['accuracy'])

history = model.fit(train_images, train_labels, epochs=2,  # 10 in the original
                    validation_data=(test_images, test_labels))

test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=2)
print(test_acc)
