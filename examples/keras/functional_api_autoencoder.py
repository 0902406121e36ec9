"""The Functional API guide, "All models are callable, just like layers" (keras-io,
guides/functional_api.py, by fchollet): an encoder and a decoder model nested in an
autoencoder, and an ensemble of models averaged with ``layers.average``.

Source: https://keras.io/guides/functional_api/#all-models-are-callable-just-like-layers
Ported to cconv: only the imports changed (``import cconv as keras``, ``from cconv import
layers``). The guide only builds these models; the lines marked "added" train them on a
generated stand-in so the test sees them learn.
"""
import numpy as np
import cconv as keras
from cconv import layers

encoder_input = keras.Input(shape=(28, 28, 1), name="img")
x = layers.Conv2D(16, 3, activation="relu")(encoder_input)
x = layers.Conv2D(32, 3, activation="relu")(x)
x = layers.MaxPooling2D(3)(x)
x = layers.Conv2D(32, 3, activation="relu")(x)
x = layers.Conv2D(16, 3, activation="relu")(x)
encoder_output = layers.GlobalMaxPooling2D()(x)

encoder = keras.Model(encoder_input, encoder_output, name="encoder")
encoder.summary()

decoder_input = keras.Input(shape=(16,), name="encoded_img")
x = layers.Reshape((4, 4, 1))(decoder_input)
x = layers.Conv2DTranspose(16, 3, activation="relu")(x)
x = layers.Conv2DTranspose(32, 3, activation="relu")(x)
x = layers.UpSampling2D(3)(x)
x = layers.Conv2DTranspose(16, 3, activation="relu")(x)
decoder_output = layers.Conv2DTranspose(1, 3, activation="relu")(x)

decoder = keras.Model(decoder_input, decoder_output, name="decoder")
decoder.summary()

autoencoder_input = keras.Input(shape=(28, 28, 1), name="img")
encoded_img = encoder(autoencoder_input)
decoded_img = decoder(encoded_img)
autoencoder = keras.Model(autoencoder_input, decoded_img, name="autoencoder")
autoencoder.summary()


def get_model():
    inputs = keras.Input(shape=(128,))
    outputs = layers.Dense(1)(inputs)
    return keras.Model(inputs, outputs)


model1 = get_model()
model2 = get_model()
model3 = get_model()

inputs = keras.Input(shape=(128,))
y1 = model1(inputs)
y2 = model2(inputs)
y3 = model3(inputs)
outputs = layers.average([y1, y2, y3])
ensemble_model = keras.Model(inputs=inputs, outputs=outputs)

# added: train the autoencoder on smooth stand-in images
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:28, 0:28]
cy, cx = rng.uniform(8, 20, (2, 256, 1, 1))
images = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)[..., None].astype("float32")
autoencoder.compile(optimizer="adam", loss="mse")
history = autoencoder.fit(images, images, batch_size=32, epochs=3)
# added: train the ensemble on a linear stand-in target
features = rng.normal(size=(256, 128)).astype("float32")
target = features[:, :1] - features[:, 1:2]
ensemble_model.compile(optimizer="adam", loss="mse")
ensemble_history = ensemble_model.fit(features, target, batch_size=32, epochs=3)
