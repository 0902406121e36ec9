"""Convert Keras models to cconv (Keras needed only for the conversion itself)."""

import inspect

from .. import layers as _layers
from .. import losses, optimizers
from ..models import Sequential
from ..models.functional import model_from_graph_config
from .keras_files import layer_from_keras_config

__all__ = ["from_keras"]


def _convert_layer(kl):
    return layer_from_keras_config(type(kl).__name__, kl.get_config(), "from_keras")


def from_keras(keras_model, compile=True):
    """Build a cconv model equal to a Keras Sequential or Functional model (architecture
    from the layers' configs, then ``set_weights(keras_model.get_weights())``).

    Args:
        keras_model: a built ``keras.Sequential`` or functional ``keras.Model`` (Keras 3)
            made of layers cconv supports (``cconv.layers``' classes, e.g. Dense, Conv2D,
            pooling, Flatten, Dropout, Activation, ReLU, LeakyReLU, Softmax,
            BatchNormalization).
        compile: when the Keras model is compiled with Adam/SGD/RMSprop and a supported loss,
            compile the cconv model the same way (optimizer state is not copied).

    Raises:
        ValueError: a layer or option that cannot be converted (named in the message), or
            a model that is not built.
        TypeError: a subclassed Keras model.
    """
    kind = type(keras_model).__name__
    if kind == "Functional":
        model = model_from_graph_config(
            keras_model.get_config(),
            lambda e: layer_from_keras_config(e["class_name"], e["config"], "from_keras"))
    elif kind == "Sequential":
        model = _from_sequential(keras_model)
    else:
        raise TypeError(f"from_keras converts keras.Sequential and functional keras.Model "
                        f"models; got {kind} (a subclassed model has no graph to convert).")
    model.set_weights(keras_model.get_weights())
    compiled = getattr(keras_model, "compiled", False)
    if compile and compiled and getattr(keras_model, "optimizer", None) is not None:
        _copy_compile(keras_model, model)
    return model


def _from_sequential(keras_model):
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
    try:
        if isinstance(loss, str):
            loss = losses.get(loss)
        elif loss is not None and type(loss).__name__ in losses.REGISTRY.classes():
            lcfg = loss.get_config()
            cls = losses.REGISTRY.classes()[type(loss).__name__]
            params = inspect.signature(cls).parameters
            loss = cls(**{k: v for k, v in lcfg.items() if k in params and k != "name"})
        else:
            return
    except ValueError:
        return
    compiled = keras_model.get_compile_config() or {}     # Keras's public compile record
    metrics = [m for m in compiled.get("metrics") or [] if isinstance(m, str)]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
