"""Intro to Autoencoders, "Second example: Image denoising" (TensorFlow tutorial,
site/en/tutorials/generative/autoencoder.ipynb): a subclassed ``Model`` holding an encoder
and a decoder ``Sequential`` of strided convolutions and transposed convolutions.

Source: https://www.tensorflow.org/tutorials/generative/autoencoder#second_example_image_denoising
Ported to cconv: only the imports changed (``from tensorflow.keras import layers, losses`` ->
``from cconv import layers, losses``, ``from tensorflow.keras.models import Model`` ->
``from cconv.models import Model``, ``tf.keras.Sequential`` -> ``keras.Sequential`` with
``import cconv as keras``); ``fashion_mnist.load_data()`` is swapped for a generated stand-in of
the same shapes, the ``tf.random.normal`` / ``tf.clip_by_value`` noise for NumPy's, ``.numpy()``
for ``np.asarray`` (cconv returns NumPy arrays), 10 epochs became 2 on 512 images, and the
plots are left out.
"""
import numpy as np
import cconv as keras
from cconv import layers, losses
from cconv.models import Model


# Stand-in for fashion_mnist.load_data(): smooth blobs drawn as uint8 (n, 28, 28) images.
def load_data(n_train=512, n_test=128, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]

    def make(n):
        cy, cx = rng.uniform(8, 20, (2, n, 1, 1))
        r = rng.uniform(3, 7, (n, 1, 1))
        x = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        return (255 * x).astype("uint8"), rng.integers(0, 10, n).astype("uint8")

    return make(n_train), make(n_test)


(x_train, _), (x_test, _) = load_data()

x_train = x_train.astype('float32') / 255.
x_test = x_test.astype('float32') / 255.

x_train = x_train[..., np.newaxis]
x_test = x_test[..., np.newaxis]

print(x_train.shape)

noise_factor = 0.2
rng = np.random.default_rng(1)
x_train_noisy = x_train + noise_factor * rng.normal(size=x_train.shape)
x_test_noisy = x_test + noise_factor * rng.normal(size=x_test.shape)

x_train_noisy = np.clip(x_train_noisy, 0., 1.).astype('float32')
x_test_noisy = np.clip(x_test_noisy, 0., 1.).astype('float32')


class Denoise(Model):
  def __init__(self):
    super(Denoise, self).__init__()
    self.encoder = keras.Sequential([
      layers.Input(shape=(28, 28, 1)),
      layers.Conv2D(16, (3, 3), activation='relu', padding='same', strides=2),
      layers.Conv2D(8, (3, 3), activation='relu', padding='same', strides=2)])

    self.decoder = keras.Sequential([
      layers.Conv2DTranspose(8, kernel_size=3, strides=2, activation='relu', padding='same'),
      layers.Conv2DTranspose(16, kernel_size=3, strides=2, activation='relu', padding='same'),
      layers.Conv2D(1, kernel_size=(3, 3), activation='sigmoid', padding='same')])

  def call(self, x):
    encoded = self.encoder(x)
    decoded = self.decoder(encoded)
    return decoded


autoencoder = Denoise()

autoencoder.compile(optimizer='adam', loss=losses.MeanSquaredError())

history = autoencoder.fit(x_train_noisy, x_train,
                          epochs=2,  # 10 in the original
                          shuffle=True,
                          validation_data=(x_test_noisy, x_test))

autoencoder.encoder.summary()

autoencoder.decoder.summary()

encoded_imgs = np.asarray(autoencoder.encoder(x_test_noisy))
decoded_imgs = np.asarray(autoencoder.decoder(encoded_imgs))

encoder = autoencoder.encoder  # added: kept for the test
decoder = autoencoder.decoder  # added: kept for the test
