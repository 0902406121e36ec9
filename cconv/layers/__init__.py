"""Keras-style layers (NHWC, float32 by default). See :class:`cconv.layers.Layer`."""

from ..registry import Registry
from .base import Layer
from .conv_transpose import Conv2DTranspose
from .convolutional import Conv2D
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer, LeakyReLU, ReLU, Softmax
from .depthwise import DepthwiseConv2D, SeparableConv2D
from .merging import (
    Add,
    Average,
    Concatenate,
    Dot,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from .node import layer_input, layer_output
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D
from .preprocessing import (
    CenterCrop,
    Normalization,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    Resizing,
)
from .reshaping import Cropping2D, Permute, Rescaling, Reshape, UpSampling2D, ZeroPadding2D

# Keras's ``layer.input`` / ``layer.output``: the tensors of the layer's first call on symbolic
# tensors (cconv/layers/node.py); a model overrides them with its own inputs and outputs.
Layer.input = property(layer_input, doc=layer_input.__doc__)
Layer.output = property(layer_output, doc=layer_output.__doc__)

# Keras aliases.
Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
Convolution2DTranspose = Conv2DTranspose
SeparableConvolution2D = SeparableConv2D

__all__ = [
    "Layer", "InputLayer", "Input", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dropout", "Activation", "ReLU",
    "LeakyReLU", "Softmax", "BatchNormalization", "Convolution2D", "MaxPool2D", "AvgPool2D",
    "GlobalAvgPool2D", "GlobalMaxPool2D", "get", "serialize", "deserialize",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "Dot",
    "dot",
    "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Reshape", "Permute", "Rescaling",
    "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "Convolution2DTranspose",
    "SeparableConvolution2D",
    "Resizing", "CenterCrop", "RandomCrop", "RandomFlip", "RandomRotation", "RandomZoom",
    "RandomTranslation", "RandomContrast", "RandomBrightness", "Normalization",
]

# Every layer class by its name, plus Keras's aliases (case and underscores ignored).
REGISTRY = Registry("layer", Layer, {
    **{c.__name__: c for c in (
        InputLayer, Dense, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
        GlobalMaxPooling2D, Flatten, Dropout, Activation, ReLU, LeakyReLU, Softmax,
        BatchNormalization,
        Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot,
        ZeroPadding2D, Cropping2D, UpSampling2D, Reshape, Permute, Rescaling,
        Conv2DTranspose, DepthwiseConv2D, SeparableConv2D,
        Resizing, CenterCrop, RandomCrop, RandomFlip, RandomRotation, RandomZoom,
        RandomTranslation, RandomContrast, RandomBrightness, Normalization)},
    "Convolution2D": Conv2D, "MaxPool2D": MaxPool2D, "AvgPool2D": AvgPool2D,
    "GlobalAvgPool2D": GlobalAvgPool2D, "GlobalMaxPool2D": GlobalMaxPool2D,
    "Convolution2DTranspose": Conv2DTranspose, "SeparableConvolution2D": SeparableConv2D,
})
get, serialize, deserialize = REGISTRY.get, REGISTRY.serialize, REGISTRY.deserialize

# Keras layers outside convolutional-network work: cconv does not implement them and says so
# by name (a plain AttributeError would read like a typo).
OUT_OF_SCOPE = frozenset({
    "Embedding", "LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "RNN",
    "LSTMCell", "GRUCell", "SimpleRNNCell", "StackedRNNCells", "Bidirectional", "TimeDistributed",
    "MultiHeadAttention", "GroupQueryAttention", "Attention", "AdditiveAttention",
    "TextVectorization", "StringLookup", "IntegerLookup", "Hashing", "CategoryEncoding",
})


def __getattr__(name):
    if name in OUT_OF_SCOPE:
        raise AttributeError(
            f"cconv.layers.{name} is not supported: cconv covers convolutional networks "
            f"(convolution, pooling, dense, normalization, merging, reshaping and image "
            f"preprocessing layers); {name} is outside that scope. Build that part of the "
            f"model with Keras.")
    raise AttributeError(f"module 'cconv.layers' has no attribute {name!r}")
