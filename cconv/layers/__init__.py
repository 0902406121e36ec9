"""Keras-style layers (NHWC, float32 by default). See :class:`cconv.layers.Layer`."""

from ..registry import Registry
from .base import Layer
from .convolutional import Conv2D
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer, LeakyReLU, ReLU, Softmax
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D

# Keras aliases.
Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D

__all__ = [
    "Layer", "InputLayer", "Input", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dropout", "Activation", "ReLU",
    "LeakyReLU", "Softmax", "BatchNormalization", "Convolution2D", "MaxPool2D", "AvgPool2D",
    "GlobalAvgPool2D", "GlobalMaxPool2D", "get", "serialize", "deserialize",
]

# Every layer class by its name, plus Keras's aliases (case and underscores ignored).
REGISTRY = Registry("layer", Layer, {
    **{c.__name__: c for c in (
        InputLayer, Dense, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
        GlobalMaxPooling2D, Flatten, Dropout, Activation, ReLU, LeakyReLU, Softmax,
        BatchNormalization)},
    "Convolution2D": Conv2D, "MaxPool2D": MaxPool2D, "AvgPool2D": AvgPool2D,
    "GlobalAvgPool2D": GlobalAvgPool2D, "GlobalMaxPool2D": GlobalMaxPool2D,
})
get, serialize, deserialize = REGISTRY.get, REGISTRY.serialize, REGISTRY.deserialize
