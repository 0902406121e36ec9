"""Convert Keras models to cconv (Keras needed only for the conversion itself)."""

import inspect

from . import initializers, losses, optimizers
from . import layers as _layers
from .models import Sequential

__all__ = ["from_keras"]

_SKIP_KEYS = {"name", "trainable", "dtype", "data_format"}
# Keras options we do not implement; converting is refused unless they are at their defaults.
_MUST_BE_DEFAULT = {
    "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
    "kernel_constraint": None, "bias_constraint": None, "beta_regularizer": None,
    "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None,
    "noise_shape": None, "synchronized": False, "renorm": False, "renorm_clipping": None,
    "quantization_config": None, "lora_rank": None,
}
_KEEP = {
    "Dense": ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer"),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups",
               "activation", "use_bias", "kernel_initializer", "bias_initializer"),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "AveragePooling2D": ("pool_size", "strides", "padding"),
    "GlobalAveragePooling2D": ("keepdims",),
    "GlobalMaxPooling2D": ("keepdims",),
    "Flatten": (),
    "Dropout": ("rate", "seed"),
    "Activation": ("activation",),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "LeakyReLU": ("negative_slope",),
    "Softmax": ("axis",),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
}


def _activation(value, where):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):  # Keras serialises some activations as dicts
        name = (
            value.get("config")
            if value.get("class_name") == "function"
            else value.get("class_name")
        )
        if isinstance(name, str):
            return name
    raise ValueError(f"{where}: cannot convert activation {value!r}; use a named activation.")


def _convert_layer(kl):
    cls = type(kl).__name__
    if cls not in _KEEP:
        raise ValueError(
            f"from_keras: cannot convert layer {kl.name!r} of type {cls}. Supported layers: "
            f"{', '.join(sorted(_KEEP))}."
        )
    cfg = kl.get_config()
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise ValueError(f"from_keras: layer {kl.name!r} uses data_format={cfg['data_format']!r}; "
                         f"only channels_last is supported.")
    bad = [k for k, default in _MUST_BE_DEFAULT.items() if k in cfg and cfg[k] != default
           and not (k == "lora_rank" and not cfg[k])]
    if bad:
        raise ValueError(
            f"from_keras: layer {kl.name!r} ({cls}) sets "
            f"{', '.join(f'{k}={cfg[k]!r}' for k in bad)}, which cconv does not support."
        )
    kwargs = {k: cfg[k] for k in _KEEP[cls] if k in cfg}
    if "activation" in kwargs:
        kwargs["activation"] = _activation(kwargs["activation"], f"layer {kl.name!r}")
    for k in ("kernel_initializer", "bias_initializer"):
        if k in kwargs and isinstance(kwargs[k], dict):
            try:
                kwargs[k] = initializers.deserialize(kwargs[k])
            except (ValueError, TypeError):
                kwargs.pop(
                    k
                )  # weights are copied anyway; the initializer only matters for rebuilds
    if cls == "BatchNormalization":
        axis = kwargs.get("axis")
        if isinstance(axis, (list, tuple)):
            axis = axis[0] if len(axis) == 1 else axis
        kwargs["axis"] = -1 if axis in (-1, 3) else axis
    if cls == "Softmax" and kwargs.get("axis") in (3, [-1]):
        kwargs["axis"] = -1
    return getattr(_layers, cls)(
        name=cfg.get("name"), trainable=cfg.get("trainable", True), **kwargs
    )


def from_keras(keras_model, compile=True):
    """Build a cconv :class:`~cconv.models.Sequential` equal to a Keras Sequential model
    (architecture from each layer's config, then ``set_weights(keras_model.get_weights())``).

    Args:
        keras_model: a built ``keras.Sequential`` (Keras 3) made of supported layers: Dense,
            Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
            GlobalMaxPooling2D, Flatten, Dropout, Activation, ReLU, LeakyReLU, Softmax,
            BatchNormalization.
        compile: when the Keras model is compiled with Adam/SGD/RMSprop and a supported loss,
            compile the cconv model the same way (optimizer state is not copied).

    Raises:
        ValueError: a layer or option that cannot be converted (named in the message), or
            a model that is not built.
        TypeError: not a Keras Sequential model.
    """
    if type(keras_model).__name__ != "Sequential":
        raise TypeError(
            f"from_keras converts keras.Sequential models; got {type(keras_model).__name__}."
        )
    try:
        input_shape = tuple(keras_model.input_shape)
    except (AttributeError, ValueError):
        raise ValueError("from_keras: the Keras model is not built; give it a keras.Input(shape) "
                         "or call it on data first.") from None
    if any(d is None for d in input_shape[1:]):
        raise ValueError(f"from_keras: input shape {input_shape} has unknown dimensions; "
                         f"cconv needs a fixed sample shape.")
    model = Sequential(
        [_layers.Input(input_shape[1:])] + [_convert_layer(kl) for kl in keras_model.layers],
        name=keras_model.name,
    )
    model.build()
    model.set_weights(keras_model.get_weights())
    if (
        compile
        and getattr(keras_model, "compiled", False)
        and getattr(keras_model, "optimizer", None) is not None
    ):
        _copy_compile(keras_model, model)
    return model


def _copy_compile(keras_model, model):
    opt = keras_model.optimizer
    name = type(opt).__name__
    keys = {"SGD": ("learning_rate", "momentum", "nesterov"),
            "Adam": ("learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad"),
            "RMSprop": ("learning_rate", "rho", "momentum", "epsilon", "centered")}
    if name not in keys:
        return
    cfg = opt.get_config()
    if not isinstance(cfg.get("learning_rate"), (int, float)):
        return   # a schedule
    optimizer = getattr(optimizers, name)(**{k: cfg[k] for k in keys[name]})
    loss = getattr(keras_model, "loss", None)
    if loss is None:
        return
    try:
        if isinstance(loss, str):
            loss = losses.get(loss)
        elif loss is not None:
            lcfg = loss.get_config()
            cls = losses.REGISTRY.lookup(type(loss).__name__)
            params = inspect.signature(cls).parameters
            loss = cls(**{k: v for k, v in lcfg.items() if k in params and k != "name"})
    except ValueError:
        return
    metrics = []
    for m in (
        getattr(keras_model, "_compile_config", None)
        and keras_model._compile_config.config.get("metrics")
        or []
    ):
        if isinstance(m, str):
            metrics.append(m)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
