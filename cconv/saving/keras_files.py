"""Keras model files without TensorFlow: Keras 3 ``.keras`` archives, legacy full-model
``.h5`` files (Keras 2's layout) and ``.weights.h5`` weight files, each read and written.

A ``.keras`` file is a zip archive of ``metadata.json``, ``config.json`` (the model's
architecture and compile settings, Keras 3's serialisation) and ``model.weights.h5``
(HDF5: each layer's weights under ``layers/<key>/vars/0, 1, ...``, where ``<key>`` is the
layer's class name in snake case made unique in ``model.layers`` order: ``dense``,
``dense_1``, ...; the ``vars`` group carries the layer name). HDF5 goes through ``h5py``,
imported only when a Keras file is read or written (``pip install "cconv[keras-files]"``).

Layers are mapped by class name to cconv's layer registry and built from their Keras
config; a Keras argument cconv does not implement must be at its default, otherwise the
error names the layer and the argument. Compile settings and the optimizer state of SGD,
Adam and RMSprop (``optimizer/vars``: iterations, learning rate, then the slots in Keras's
order) go both ways in ``.keras`` files, so training continues where it stopped.

Weights are matched as Keras matches them: a layer's come from the group its place in the
model names (``layers/dense_1``), never from the layer name stored with the group (the
writer's name, which another process may have given another layer); a legacy ``.h5`` must
have weights for every layer that has some.

Files are untrusted input. Zip members are read only when unencrypted, stored or deflated,
and no larger by their headers than what they can hold (:data:`_JSON_LIMIT` for the JSON,
:func:`_weights_limit` of the model for the weights); HDF5 objects are reached through hard
links only (never a soft or external link), datasets must keep their data in the file (no
external or virtual storage), and every dataset's dtype and shape is checked against the
model before any is read, the model being changed only once all were read. Anything else is
a ``ValueError`` naming the file and what is wrong (``docs/reliability.md`` lists the checks).
"""

import datetime
import inspect
import io
import json
import os
import warnings
import zipfile

import numpy as np

from .. import initializers as _initializers
from .. import layers as _layers
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from ..layers.base import _snake
from ..models.functional import (
    Model,
    graph_config,
    keras_class_name,
    map_graph,
    model_from_graph_config,
)
from ..models.sequential import Sequential
from ..registry import get_registered_name, get_registered_object
from . import file_format, fileio, register_format

__all__ = ["load_keras", "save_keras", "load_h5", "save_h5", "save_weights_h5",
           "load_weights_keras", "load_weights_h5",
           "layer_from_keras_config", "file_format"]

KERAS_VERSION = "3.15.1"     # the Keras whose layout the written files follow
_JSON_LIMIT = 16 << 20       # bytes a .keras archive's config.json may inflate to

_SKIP_KEYS = {"name", "trainable", "dtype", "data_format"}
# Keras options we do not implement; loading is refused unless they are at their defaults.
_MUST_BE_DEFAULT = {
    "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
    "kernel_constraint": None, "bias_constraint": None, "beta_regularizer": None,
    "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None,
    "noise_shape": None, "synchronized": False, "renorm": False, "renorm_clipping": None,
    "quantization_config": None, "lora_rank": None,
}
# Arguments whose value does not change the computation of a loaded model.
_IGNORED = {"lora_alpha", "renorm_momentum", "sparse", "ragged", "optional", "batch_size",
            "beta_initializer", "gamma_initializer", "moving_mean_initializer",
            "moving_variance_initializer", "kernel_initializer", "bias_initializer",
            "input_axes", "output_axes"}
_KEEP = {
    "Dense": ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer",
              "kernel_regularizer", "bias_regularizer"),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "dilation_rate", "groups",
               "activation", "use_bias", "kernel_initializer", "bias_initializer",
               "kernel_regularizer", "bias_regularizer"),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "AveragePooling2D": ("pool_size", "strides", "padding"),
    "GlobalAveragePooling2D": ("keepdims",),
    "GlobalMaxPooling2D": ("keepdims",),
    "Flatten": (),
    "Dropout": ("rate", "seed", "noise_shape"),
    "Activation": ("activation",),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "LeakyReLU": ("negative_slope",),
    "Softmax": ("axis",),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
}


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError('Keras .keras and .h5 files need h5py: pip install "cconv[keras-files]" '
                          '(or pip install h5py).') from None
    return h5py


# ----- layers: Keras config -> cconv ---------------------------------------------------------
def _activation(value, where):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):  # Keras serialises some activations as dicts
        kind = value.get("class_name")
        name = value.get("config") if kind == "function" else kind
        if isinstance(name, str):
            return name
    raise ValueError(f"{where}: cannot convert activation {value!r}; use a named activation.")


def _dtype_name(value, where):
    if isinstance(value, dict):   # Keras 3 DTypePolicy
        value = (value.get("config") or {}).get("name")
    if value in (None, "float32", "float64"):
        return value
    raise ValueError(f"{where}: dtype {value!r} is not supported (float32 or float64).")


def _init_params(cls):
    """Constructor argument names of ``cls`` and its bases (``**kwargs`` chains)."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names.update(inspect.signature(klass.__init__).parameters)
    return names - {"self", "kwargs", "args"}


def _passed_keys(cls_name, cls):
    """The Keras config keys handed to the cconv constructor of ``cls``: the table's for a
    built-in conversion, else every argument the constructor takes."""
    if cls_name in _KEEP:
        return set(_KEEP[cls_name])
    return _init_params(cls) - _SKIP_KEYS


def _layer_kwargs(cls_name, cls, cfg, where):
    passed = _passed_keys(cls_name, cls)
    if cls_name not in _KEEP:
        unknown = sorted(k for k in cfg if k not in passed and k not in _SKIP_KEYS
                         and k not in _MUST_BE_DEFAULT and k not in _IGNORED
                         and cfg[k] is not None)
        if unknown:
            raise ValueError(f"{where} ({cls_name}) has Keras arguments cconv does not "
                             f"support: {', '.join(f'{k}={cfg[k]!r}' for k in unknown)}.")
    return {k: cfg[k] for k in cfg if k in passed}


def layer_from_keras_config(cls_name, cfg, where="Keras model"):
    """A cconv layer equal to the Keras layer of class ``cls_name`` and config ``cfg``
    (weights are set separately).

    Raises:
        ValueError: a layer class cconv lacks, or a Keras argument cconv does not implement
            set to a non-default value (both named in the message).
    """
    where = f"{where}: layer {cfg.get('name')!r}"
    cls = _layers.REGISTRY.names.get(cls_name)
    if cls is None:
        raise ValueError(f"{where} is a {cls_name}, which cconv does not support (a custom "
                         f"layer: decorate its class with "
                         f"cconv.saving.register_keras_serializable() or pass "
                         f"load_model(..., custom_objects={{{cls_name!r}: cls}})). Supported "
                         f"layers: {_layers.REGISTRY.known()}.")
    if cfg.get("data_format") not in (None, "channels_last"):
        raise ValueError(f"{where} uses data_format={cfg['data_format']!r}; only channels_last "
                         f"is supported.")
    dtype = _dtype_name(cfg.get("dtype"), where)
    if cls_name == "InputLayer":
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        shape = shape[1:] if shape is not None else cfg.get("shape")
        return cls(shape=shape, name=cfg.get("name"), dtype=dtype)
    passed = _passed_keys(cls_name, cls)     # e.g. Dense's and Conv2D's regularizers
    bad = [k for k, default in _MUST_BE_DEFAULT.items() if k in cfg and cfg[k] != default
           and k not in passed and not (k == "lora_rank" and not cfg[k])]
    bad += [k for k in cfg if k.endswith(("_regularizer", "_constraint"))
            and k not in _MUST_BE_DEFAULT and k not in passed and cfg[k] is not None]
    if bad:
        raise ValueError(f"{where} ({cls_name}) sets "
                         f"{', '.join(f'{k}={cfg[k]!r}' for k in bad)}, which cconv does not "
                         f"support.")
    kwargs = _layer_kwargs(cls_name, cls, cfg, where)
    if "activation" in kwargs:
        kwargs["activation"] = _activation(kwargs["activation"], where)
    for k in [k for k in kwargs if k.endswith("_initializer")]:
        if isinstance(kwargs[k], dict):
            try:
                kwargs[k] = _initializers.deserialize(kwargs[k])
            except (ValueError, TypeError):
                kwargs.pop(k)   # weights are loaded anyway; it only matters for rebuilds
    if cls_name == "BatchNormalization":
        axis = kwargs.get("axis")
        if isinstance(axis, (list, tuple)):
            axis = axis[0] if len(axis) == 1 else axis
        kwargs["axis"] = -1 if axis in (-1, 3) else axis
    if cls_name == "Softmax" and kwargs.get("axis") in (3, [-1]):
        kwargs["axis"] = -1
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:   # a value of the wrong kind (units="many", an unknown regularizer class, ...)
        return cls(name=cfg.get("name"), trainable=cfg.get("trainable", True), **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} ({cls_name}): {str(exc)[:500]}") from None


def _custom_class(entry, base):
    """The custom subclass of ``base`` an entry names by its ``registered_name`` or
    ``class_name`` (a ``custom_object_scope`` / ``load_model(custom_objects=...)`` entry or a
    class registered with ``register_keras_serializable``), or None."""
    for key in (entry.get("registered_name"), entry.get("class_name")):
        cls = get_registered_object(key) if isinstance(key, str) else None
        if isinstance(cls, type) and issubclass(cls, base):
            return cls
    return None


def _custom_layer_class(entry):
    """The custom layer class an entry names (its ``registered_name`` or ``class_name`` in a
    ``custom_object_scope`` / ``load_model(custom_objects=...)`` or registered with
    ``register_keras_serializable``), or None for cconv's own layers."""
    cls = _custom_class(entry, _layers.Layer)
    if cls is not None:
        return cls
    name = entry.get("class_name")
    if isinstance(name, str) and name not in _layers.REGISTRY.names:
        try:
            cls = _layers.REGISTRY.lookup(name)      # registered, by its bare name
        except ValueError:
            return None
        return cls if cls not in _layers.REGISTRY.names.values() else None
    return None


def _entry_to_layer(entry):
    if entry.get("class_name") in ("Sequential", "Functional", "Model"):   # a nested model
        return model_from_keras_config(entry)
    custom = _custom_layer_class(entry)
    if custom is None:
        return layer_from_keras_config(entry["class_name"], dict(entry.get("config") or {}))
    cfg = dict(entry.get("config") or {})
    where = f"Keras model: layer {cfg.get('name')!r} ({entry.get('class_name')})"
    dtype = _dtype_name(cfg.get("dtype"), where)
    if dtype is None:
        cfg.pop("dtype", None)
    else:
        cfg["dtype"] = dtype
    try:    # the custom class's own from_config (Layer's: cls(**config))
        return custom.from_config(cfg)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {custom.__name__}.from_config failed: {str(exc)[:400]} "
                         f"(a custom layer's get_config must return its constructor's "
                         f"arguments).") from None


def model_from_keras_config(config):
    """A cconv Sequential or graph Model from a Keras model config
    (``{"class_name": "Sequential" | "Functional" | "Model", "config": {...}}``).

    Raises:
        ValueError: a subclassed Keras model (no config cconv can rebuild), or an unsupported
            layer or argument.
    """
    kind = config.get("class_name")
    inner = config.get("config") or {}
    cls = _custom_model_class(config)
    if cls is not None and not issubclass(cls, Sequential) and "layers" in inner:
        return model_from_graph_config(inner, _entry_to_layer, cls=cls)
    if kind in ("Functional", "Model") and "layers" in inner:
        return model_from_graph_config(inner, _entry_to_layer)
    if cls is None and kind != "Sequential":
        raise ValueError(f"Cannot rebuild a Keras model of class {kind!r}: its code is not in "
                         f"the file. Pass custom_objects={{{kind!r}: cls}} to load_model (or "
                         f"register the class with cconv.saving.register_keras_serializable) "
                         f"when it is a subclass of Sequential or of a functional Model; other "
                         f"subclassed models cannot be rebuilt from a config.")
    layers = []
    for entry in inner.get("layers", []):
        cfg = entry.get("config") or {}
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if not layers and entry["class_name"] != "InputLayer" and shape is not None:
            layers.append(_layers.InputLayer(shape[1:]))   # Keras 2: shape on the first layer
        layers.append(_entry_to_layer(entry))
    model = (cls or Sequential)(layers, name=inner.get("name"))
    build = (config.get("build_config") or {}).get("input_shape")
    if model._declared_input_shape() is not None or build is not None:
        model.build(None if model._declared_input_shape() is not None else build)
    return model


def _custom_model_class(config):
    """The user's model class a Keras config names (a subclass of Sequential, or of Model
    built as a graph), registered or given in ``custom_objects``; None for Keras's own
    classes or a name nothing answers."""
    if config.get("class_name") in ("Sequential", "Functional", "Model"):
        return None
    for name in (config.get("registered_name"), config.get("class_name")):
        found = get_registered_object(name) if name else None
        if isinstance(found, type) and issubclass(found, Model):
            return found
    return None


def _model_class_entry(model, builtin):
    """``(class_name, registered_name, module)`` of a model's Keras config: Keras's own
    for cconv's classes and for a subclass with its own ``call`` (written as the graph it
    traced, which Keras rebuilds without the code), the user's class (as Keras writes a
    subclass of Sequential or of a functional Model) otherwise."""
    cls = type(model)
    if cls in (Sequential, Model) or (not issubclass(cls, Sequential) and cls.call is not
                                      Model.call):
        return builtin     # a traced subclass (its own call) is written as its graph
    return cls.__name__, get_registered_name(cls), cls.__module__


# ----- layers: cconv -> Keras config ---------------------------------------------------------
def _keras_object(cfg, module):
    registered = cfg.get("registered_name")      # a class registered by the user
    return {"module": module, "class_name": cfg["class_name"], "config": cfg.get("config") or {},
            "registered_name": registered}


def _keras_metric(metric):
    """A compile metric as Keras writes it: a name as it is, an object serialised."""
    if isinstance(metric, str):
        return metric
    return _keras_object(_metrics.serialize(metric), "keras.metrics")


def _keras_layer_entry(layer, input_shapes):
    """Keras 3's serialisation of a cconv layer; ``input_shapes``: the shapes (batch axis
    included) it was built for, a list of them for a multi-input layer, or None. A nested
    model's entry is its own model config, inline (Keras's way)."""
    if isinstance(layer, Model):
        entry = _keras_model_config(layer)
        entry.pop("compile_config", None)
        return entry
    name = type(layer).__name__
    if isinstance(layer, _layers.InputLayer):
        cfg = {"batch_shape": [None] + list(layer.shape), "dtype": layer.dtype, "sparse": False,
               "name": layer.name}
        return {"module": "keras.layers", "class_name": name, "config": cfg,
                "registered_name": None}
    cfg = dict(layer.get_config())
    cfg.pop("input_shape", None)
    for k, v in list(cfg.items()):
        if k.endswith("_initializer") and isinstance(v, dict):
            cfg[k] = _keras_object(v, "keras.initializers")
        elif k.endswith("_regularizer") and isinstance(v, dict):
            cfg[k] = _keras_object(v, "keras.regularizers")
        elif k == "activation" and not isinstance(v, str):
            raise ValueError(f"Layer {layer.name!r}: activation {v!r} has settings that a Keras "
                             f"config cannot name; use an Activation/LeakyReLU layer instead.")
    entry = {"module": "keras.layers", "class_name": name, "config": cfg, "registered_name": None}
    if type(layer) not in _layers.REGISTRY.names.values():      # a custom layer (Keras's form)
        entry["module"] = type(layer).__module__
        entry["registered_name"] = get_registered_name(type(layer))
    if input_shapes is not None:
        entry["build_config"] = {"input_shape": input_shapes}
    return entry


def _node_input_shapes(model, layer):
    nodes = model.layer_nodes(layer)
    if not nodes or nodes[0].is_input:
        return None
    shapes = [list(t.shape) for t in nodes[0].inbound_tensors]
    return shapes if nodes[0].multi else shapes[0]


def _build(model):
    """Build ``model`` for its declared input if it is not built yet (Keras's ``build()``
    without a shape; a ValueError for a model that declares none)."""
    if not model.built:
        model.build()


def _keras_model_config(model):
    """``config.json``'s content for a cconv model (Sequential or graph Model)."""
    _build(model)
    if not isinstance(model, Sequential):
        inner = graph_config(model, lambda l: _keras_layer_entry(l, _node_input_shapes(model, l)))
        name, registered, module = _model_class_entry(
            model, ("Functional", "Functional", "keras.src.models.functional"))
        out = {"module": module, "class_name": name, "config": inner,
               "registered_name": registered, "build_config": {"input_shape": None}}
    else:
        entries, shape = [], list(model.input_shape)
        entries.append(_keras_layer_entry(model.inputs[0].node.layer, None))   # its InputLayer
        for layer in model.layers:
            entries.append(_keras_layer_entry(layer, list(layer.input_shape)))
        name, registered, module = _model_class_entry(model, ("Sequential", None, "keras"))
        out = {"module": module, "class_name": name,
               "config": {"name": model.name, "trainable": True, "layers": entries},
               "registered_name": registered, "build_config": {"input_shape": shape}}
    compile_config = _keras_compile_config(model)
    if compile_config is not None:
        out["compile_config"] = compile_config
    return out


def _keras_loss(loss):
    """A compiled loss as Keras writes it: a loss object serialised, a function loss (a
    ``TapeLoss``, which holds it as ``fn``) by its name, found again through a registered
    function or ``custom_objects`` when the file is loaded."""
    if loss is None:
        return None
    if callable(getattr(loss, "fn", None)):
        return loss.name
    return _keras_object(_losses.serialize(loss), "keras.losses")


def _keras_compile_config(model):
    if not model.compiled or model.optimizer is None:
        return None
    multi = getattr(model.loss, "losses", None)
    if multi is not None:   # several outputs (cconv.trainers.compile_utils.MultiOutputLoss)
        loss = [_keras_loss(l) for l in multi]
        weights = list(model.loss.weights)
        metrics = [[_keras_metric(m) for j, m in model._metric_ids if j == i]
                   for i in range(len(multi))]
        weighted = [[_keras_metric(m) for j, m in model._weighted_metric_ids if j == i]
                    for i in range(len(multi))]
    else:
        loss, weights = _keras_loss(model.loss), None
        metrics = [_keras_metric(m) for m in model._metric_ids]
        weighted = [_keras_metric(m) for m in model._weighted_metric_ids]
    return {"optimizer": _keras_object(_optimizers.serialize(model.optimizer), "keras.optimizers"),
            "loss": loss, "loss_weights": weights, "metrics": metrics or None,
            "weighted_metrics": weighted if any(weighted) else None, "run_eagerly": False,
            "steps_per_execution": 1, "jit_compile": False}


# ----- compile settings: Keras -> cconv ---------------------------------------------------------
def _from_keras_object(value, registry, what):
    """A cconv loss/optimizer from a Keras name or serialised object (unknown args dropped
    only when they are Keras bookkeeping: reduction, dtype, schedules are refused). A custom
    class registered with ``register_keras_serializable`` or in a ``custom_object_scope``
    (by the entry's ``registered_name`` or ``class_name``) comes before ``registry``'s own."""
    if value is None or isinstance(value, str):
        return value
    cls = _custom_class(value, registry.base) or registry.classes().get(value.get("class_name"))
    if cls is None:
        raise ValueError(f"{what} {value.get('class_name')!r} is not supported")
    cfg = value.get("config") or {}
    if any(isinstance(v, dict) for v in cfg.values()):
        raise ValueError(f"{what} {value['class_name']} has a schedule or nested object")
    params = _init_params(cls)
    return cls(**{k: v for k, v in cfg.items() if k in params})


def _metric_names(metrics):
    if metrics is None:
        return None
    if isinstance(metrics, dict) and "class_name" in metrics:
        cls = (_custom_class(metrics, _metrics.Metric)
               or _metrics.REGISTRY.classes().get(metrics.get("class_name")))
        cfg = metrics.get("config") or {}
        if cls is not None:      # the object itself (its settings and name kept)
            try:
                params = _init_params(cls)
                return cls(**{k: v for k, v in cfg.items() if k in params})
            except (TypeError, ValueError):
                pass
        return cfg.get("name")
    if isinstance(metrics, dict):
        return {k: _metric_names(v) for k, v in metrics.items()}
    if isinstance(metrics, (list, tuple)):
        return [_metric_names(m) for m in metrics]
    return metrics


def compile_from_keras(model, config):
    """Compile ``model`` from a Keras ``compile_config``; settings cconv lacks leave the
    model uncompiled with a warning (as Keras does for unknown objects)."""
    if not config:
        return
    try:
        optimizer = _from_keras_object(config.get("optimizer"), _optimizers.REGISTRY,
                                       "optimizer")
        loss = config.get("loss")
        if isinstance(loss, dict) and "class_name" not in loss:
            loss = {k: _from_keras_object(v, _losses.REGISTRY, "loss")
                    for k, v in loss.items()}
        elif isinstance(loss, (list, tuple)):
            loss = [_from_keras_object(v, _losses.REGISTRY, "loss") for v in loss]
        else:
            loss = _from_keras_object(loss, _losses.REGISTRY, "loss")
        kwargs = {"metrics": _metric_names(config.get("metrics"))}
        if config.get("weighted_metrics"):
            kwargs["weighted_metrics"] = _metric_names(config["weighted_metrics"])
        if config.get("loss_weights") is not None:
            kwargs["loss_weights"] = config["loss_weights"]
        model.compile(optimizer=optimizer, loss=loss, **kwargs)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        warnings.warn(f"The model was loaded uncompiled: its compile settings cannot be used "
                      f"by cconv ({exc}). Call model.compile(...) before training.", stacklevel=2)


# ----- reading untrusted files ----------------------------------------------------------------
def _check_exists(filepath):
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such file: {filepath!r}.")


def _parse_json(data, filepath, what):
    """``json.loads(data)``; a ValueError naming the file and ``what`` when it is not JSON
    (or nested too deep to parse)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:   # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{filepath!r} is damaged: {what} is not JSON ({type(exc).__name__}: "
                         f"{str(exc)[:200]}).") from None


def _check_keras_config(config, filepath, what):
    """The JSON types of a Keras model config that cconv relies on (ValueError naming the file
    and the place): an object with a string ``class_name`` and an object ``config`` whose
    ``layers`` is a list of such objects; ``compile_config`` / ``build_config`` objects."""
    fileio.check_serialized(config, what, filepath)
    inner = config.get("config") or {}
    layers = fileio.expect_type(inner.get("layers", []), (list,), f'{what}["config"]["layers"]',
                            filepath)
    for i, entry in enumerate(layers):
        fileio.check_serialized(entry, f'{what}["config"]["layers"][{i}]', filepath)
    for key in ("compile_config", "build_config"):
        if config.get(key) is not None:
            fileio.expect_type(config[key], (dict,), f'{what}["{key}"]', filepath)


def _model_from_file_config(config, filepath, what):
    """:func:`model_from_keras_config` of a config read from ``filepath``: its types checked
    first, and any failure to rebuild it a ValueError naming the file."""
    _check_keras_config(config, filepath, what)
    try:
        return model_from_keras_config(config)
    except ValueError as exc:
        raise ValueError(f"{filepath!r}: {str(exc)[:800]}") from None
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"{filepath!r} is damaged: its {what} cannot be rebuilt "
                         f"({type(exc).__name__}: {str(exc)[:300]}).") from None


def _open_h5(source, filepath, what=""):
    """``h5py.File(source, "r")`` (a path or a file object); a ValueError naming the file
    when it is not HDF5."""
    h5py = _h5py()
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise ValueError(f"{filepath!r}{what} is not an HDF5 file, or is damaged "
                         f"({type(exc).__name__}: {str(exc)[:200]}).") from None


def _h5_get(parent, path, filepath):
    """The HDF5 object at ``path`` (``"a/b/c"``) below group ``parent``, or None when absent.
    Every step must be a hard link: a soft link, an external link (which would open another
    file) or a user-defined link anywhere on the way is refused, as Keras refuses them."""
    h5py = _h5py()
    kinds = {h5py.h5l.TYPE_SOFT: "a soft link (SoftLink)",
             h5py.h5l.TYPE_EXTERNAL: "an external link (ExternalLink)"}
    obj = parent
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"{filepath!r} is damaged: HDF5 path {path!r} has a part {part!r}.")
        if not isinstance(obj, h5py.Group):
            raise ValueError(f"{filepath!r} is damaged: {path!r} runs through a dataset.")
        key = part.encode()
        if not obj.id.links.exists(key):
            return None
        kind = obj.id.links.get_info(key).type
        if kind != h5py.h5l.TYPE_HARD:
            raise ValueError(f"{filepath!r}: {path!r} goes through "
                             f"{kinds.get(kind, 'a user-defined link')}; cconv follows no "
                             f"links in a Keras file (they can point into other files).")
        obj = obj[part]
    return obj


def _h5_group(parent, path, filepath):
    """:func:`_h5_get` of a group (None when absent)."""
    obj = _h5_get(parent, path, filepath)
    if obj is not None and not isinstance(obj, _h5py().Group):
        raise ValueError(f"{filepath!r} is damaged: {path!r} is not a group.")
    return obj


def _h5_dataset(parent, path, filepath):
    """The dataset at ``path`` below ``parent`` (:func:`_h5_get`), which must keep its data
    in the file: external raw storage (bytes of any other file) and virtual datasets (mapped
    from other files) are refused, and so are chunks larger than the dataset and 1 MiB
    (HDF5 inflates a whole chunk to read any of it). Nothing is read."""
    ds = _h5_get(parent, path, filepath)
    if ds is None:
        raise ValueError(f"{filepath!r} is damaged: no dataset {path!r} in {parent.name!r}.")
    if not isinstance(ds, _h5py().Dataset):
        raise ValueError(f"{filepath!r} is damaged: {path!r} is not a dataset.")
    if ds.external:
        raise ValueError(f"{filepath!r}: dataset {path!r} has external storage (its data "
                         f"would come from {str(ds.external[0][0])[:200]!r}); cconv reads "
                         f"only data inside the file.")
    if ds.is_virtual:
        raise ValueError(f"{filepath!r}: dataset {path!r} is virtual (mapped from other "
                         f"files); cconv reads only data inside the file.")
    if ds.chunks is not None:
        chunk = size = ds.dtype.itemsize
        for c, n in zip(ds.chunks, ds.shape):
            chunk, size = chunk * c, size * n
        if chunk > max(size, 1 << 20):
            raise ValueError(f"{filepath!r}: dataset {path!r} of shape {ds.shape} has chunks of "
                             f"shape {ds.chunks} ({chunk} bytes), larger than the dataset.")
    return ds


def _h5_mismatch(ds, shape, kinds):
    """What keeps dataset ``ds`` from holding an array of ``shape`` with a dtype of one of
    the NumPy ``kinds`` (``"f"``, ``"iu"``), from its declared dtype and shape alone; None
    when it fits."""
    if ds.dtype.kind not in kinds:
        return f"has dtype {ds.dtype} (numbers of kind {kinds!r} expected)"
    if ds.shape != tuple(shape):
        return f"has shape {ds.shape}, not {tuple(shape)}"
    return None


def _h5_read(ds, path, filepath):
    """The array of a checked dataset (HDF5 errors, e.g. a damaged chunk, as ValueError)."""
    try:
        return np.asarray(ds[()])
    except Exception as exc:
        raise ValueError(f"{filepath!r} is damaged: dataset {path!r} cannot be read "
                         f"({type(exc).__name__}: {str(exc)[:200]}).") from None


def _h5_attr(obj, name, filepath):
    """Attribute ``name`` of HDF5 ``obj``, or None when absent; its declared size is checked
    against the file's size before it is read."""
    if name not in obj.attrs:
        return None
    h5py = _h5py()
    attr = h5py.h5a.open(obj.id, name.encode())
    nbytes = attr.dtype.itemsize
    for n in attr.shape or ():
        nbytes *= n
    if nbytes > obj.file.id.get_filesize():
        raise ValueError(f"{filepath!r} is damaged: attribute {name!r} claims shape "
                         f"{attr.shape} of {attr.dtype}, more than the file holds.")
    try:
        return obj.attrs[name]
    except Exception as exc:
        raise ValueError(f"{filepath!r} is damaged: attribute {name!r} cannot be read "
                         f"({type(exc).__name__}: {str(exc)[:200]}).") from None


def _as_text(value, filepath, what):
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise ValueError(f"{filepath!r} is damaged: {what} is not UTF-8 text.") from None
    if isinstance(value, str):
        return value
    raise ValueError(f"{filepath!r} is damaged: {what} must be text, got "
                     f"{type(value).__name__}.")


def _h5_text(obj, name, filepath):
    """A text attribute (``model_config``, ``training_config``), or None when absent."""
    value = _h5_attr(obj, name, filepath)
    return None if value is None else _as_text(value, filepath, name)


def _h5_names(obj, name, filepath):
    """A list-of-names attribute of a legacy file (``layer_names``, ``weight_names``), also
    when Keras split it into ``<name>0``, ``<name>1``, ... for size; None when absent."""
    parts = [_h5_attr(obj, name, filepath)]
    if parts[0] is None:
        parts = []
        while f"{name}{len(parts)}" in obj.attrs:
            parts.append(_h5_attr(obj, f"{name}{len(parts)}", filepath))
        if not parts:
            return None
    names = []
    for part in parts:
        part = np.asarray(part)
        if part.ndim > 1:
            raise ValueError(f"{filepath!r} is damaged: attribute {name!r} has shape "
                             f"{part.shape}; a list of names expected.")
        names += [_as_text(n.item() if isinstance(n, np.generic) else n, filepath,
                           f"an item of {name!r}") for n in part.reshape(-1)]
    return names


def _weights_limit(model):
    """The most bytes a ``model.weights.h5`` for ``model`` may inflate to: 64 per weight
    value (float64, the weight and up to seven optimizer variables), 256 KiB of HDF5
    bookkeeping per layer and 1 MiB."""
    layers = _keras_layer_order(model)
    values = sum(w.size for layer in layers for w in layer.weights)
    return 64 * values + (256 << 10) * len(layers) + (1 << 20)


def _load_layer_weights(found, filepath):
    """Set layers' weights from HDF5 datasets, ``found``: ``(layer, [(path, dataset), ...])``
    pairs (as many datasets as the layer has weights). Every dataset's dtype and shape is
    checked against its weight first, then all are read, then all set: a refusal leaves
    every layer as it was, and nothing larger than the model is allocated."""
    for layer, items in found:
        for (path, ds), w in zip(items, layer.weights):
            kinds = "f" if w.dtype.kind == "f" else "iu"   # a count (Normalization) is an int
            problem = _h5_mismatch(ds, w.shape, kinds)
            if problem:
                what = "floats" if kinds == "f" else "integers"
                raise ValueError(f"{filepath!r}: dataset {path!r} {problem}; layer "
                                 f"{layer.name!r} ({type(layer).__name__}) needs {what} of "
                                 f"shape {w.shape} there.")
    values = [(layer, [_h5_read(ds, path, filepath) for path, ds in items])
              for layer, items in found]
    for layer, arrays in values:
        layer.set_weights(arrays)


# ----- weights: model.weights.h5 ----------------------------------------------------------------
def _keras_layer_order(model):
    """The layers in Keras's ``model.layers`` order for this model (a Sequential's without
    its InputLayer; a graph's by Keras's graph order, InputLayers included)."""
    if not isinstance(model, Sequential):
        return map_graph(model.inputs, model.outputs)[1]
    return model.layers


def _weight_keys(layers):
    """``layers/<snake class name>[_k]`` per layer, as Keras's saving_lib names them."""
    used, keys = {}, []
    for layer in layers:
        base = _snake(keras_class_name(layer))
        n = used.get(base, 0)
        used[base] = n + 1
        keys.append(f"layers/{base}" if n == 0 else f"layers/{base}_{n}")
    return keys


def _weight_groups(model, prefix="layers"):
    """``(layer, key)`` for every layer, a nested model's layers under its own key
    (Keras: ``layers/sequential/layers/dense``; the nested model's own ``vars`` is empty)."""
    layers, out = _keras_layer_order(model), []
    for layer, key in zip(layers, _weight_keys(layers)):
        key = prefix + key[len("layers"):]
        out.append((layer, key))
        if isinstance(layer, Model):
            out += _weight_groups(layer, key + "/layers")
    return out


def _write_weights(model, f):
    f.create_group("vars").attrs["name"] = model.name
    for layer, key in _weight_groups(model):
        group = f.require_group(key).create_group("vars")
        group.attrs["name"] = layer.name
        for i, w in enumerate([] if isinstance(layer, Model) else layer.get_weights()):
            group.create_dataset(str(i), data=w)


def _read_weights(model, f, filepath):
    """Set every layer's weights from a ``model.weights.h5`` layout, each layer's from the
    group Keras's saving names for its place in the model (:func:`_weight_keys`:
    ``layers/dense``, ``layers/dense_1``, ...), as Keras matches them. The layer name stored
    with a group is the writer's and is not used: a process that had made other layers first
    stores its second Dense, named ``dense_1``, under ``layers/dense``. Keras 2.13's
    ``_layer_checkpoint_dependencies`` stands for ``layers`` where only it is present.
    Everything is checked before anything is read (:func:`_load_layer_weights`)."""
    root = "layers"
    if _h5_get(f, "layers", filepath) is None and \
            _h5_get(f, "_layer_checkpoint_dependencies", filepath) is not None:
        root = "_layer_checkpoint_dependencies"
    found = []
    for layer, key in _weight_groups(model, root):
        n = 0 if isinstance(layer, Model) else len(layer.weights)
        if n == 0:
            continue
        group = _h5_group(f, key + "/vars", filepath)
        if group is None or len(group) != n:
            raise ValueError(f"{filepath!r}: no {n} weight arrays for layer {layer.name!r} "
                             f"({type(layer).__name__}) under {key!r}.")
        paths = [f"{key}/vars/{i}" for i in range(n)]
        found.append((layer, [(p, _h5_dataset(f, p, filepath)) for p in paths]))
    _load_layer_weights(found, filepath)



# ----- optimizer state: optimizer/vars ----------------------------------------------------------
def _keras_slot_groups(optimizer):
    """cconv slot names in Keras's order of optimizer variables (after ``iterations`` and
    ``learning_rate``): one list per group, the names of a group interleaved per model
    variable (Keras's ``add_optimizer_variables``); None for an optimizer Keras lacks."""
    kind = type(optimizer).__name__
    if kind == "Adam":
        return [("m", "v")] + ([("v_hat",)] if optimizer.amsgrad else [])
    if kind == "SGD":
        return [("momentum",)] if optimizer.momentum != 0 else []
    if kind == "RMSprop":
        return ([("velocity",)] + ([("momentum",)] if optimizer.momentum > 0 else [])
                + ([("average_gradient",)] if optimizer.centered else []))
    return None


def _weight_slices(model):
    """``(offset, shape)`` of each trainable weight in the model's flat weight array, which
    holds them in ``model.trainable_weights`` order (:mod:`cconv.trainers.trainer`)."""
    out, off = [], 0
    for w in model.trainable_weights:
        out.append((off, w.shape))
        off += w.size
    return out


def _write_optimizer(model, f):
    groups = _keras_slot_groups(model.optimizer) if model.compiled else None
    if groups is None:
        return
    iterations, state = model.optimizer.get_state()
    slices = _weight_slices(model)
    vals = [np.int64(iterations), np.float32(model.optimizer.learning_rate)]
    for names in groups:
        for off, shape in slices:
            for name in names:
                flat = state.get(f"0.{name}")
                size = int(np.prod(shape, dtype=np.int64))
                vals.append(np.zeros(shape, model.dtype) if flat is None
                            else flat[off:off + size].reshape(shape))
    group = f.create_group("optimizer").create_group("vars")
    group.attrs["name"] = model.optimizer.name
    for i, v in enumerate(vals):
        group.create_dataset(str(i), data=v)


def _read_optimizer(model, f, filepath):
    """Restore Keras's optimizer variables (``optimizer/vars``: iterations, a scalar
    integer; the learning rate, a scalar float; then the slots, one float array per weight
    in :func:`_keras_slot_groups`'s order) into the compiled model's optimizer. Variables
    that do not fit this optimizer (their count, or one's dtype or shape) are skipped, all
    of them, with a warning naming the file, as Keras does; a hostile dataset (a link,
    external storage) is refused like any other (ValueError)."""
    groups = _keras_slot_groups(model.optimizer) if model.compiled else None
    stored = _h5_group(f, "optimizer/vars", filepath) if groups is not None else None
    if stored is None:
        return
    slices = _weight_slices(model)
    expected = [((), "iu"), ((), "f")]
    expected += [(shape, "f") for group in groups for _, shape in slices for _ in group]
    kind = type(model.optimizer).__name__
    if len(stored) != len(expected):
        warnings.warn(f"{filepath!r}: optimizer state not loaded: the file has {len(stored)} "
                      f"optimizer variables, {kind} here needs {len(expected)}.", stacklevel=3)
        return
    paths = [f"optimizer/vars/{i}" for i in range(len(expected))]
    datasets = [_h5_dataset(f, p, filepath) for p in paths]
    for path, ds, (shape, kinds) in zip(paths, datasets, expected):
        problem = _h5_mismatch(ds, shape, kinds)
        if problem:
            warnings.warn(f"{filepath!r}: optimizer state not loaded: {path!r} {problem} for "
                          f"{kind} here.", stacklevel=3)
            return
    values = iter([_h5_read(ds, p, filepath) for p, ds in zip(paths, datasets)])
    iterations, _ = int(next(values)), next(values)     # the learning rate is compile's
    size = sum(int(np.prod(shape, dtype=np.int64)) for _, shape in slices)
    flats = {n: np.empty(size, model.dtype) for g in groups for n in g}
    for group in groups:
        for off, shape in slices:
            size = int(np.prod(shape, dtype=np.int64))
            for name in group:
                flats[name][off:off + size] = next(values).reshape(-1)
    model.set_optimizer_state(iterations, {f"0.{n}": v for n, v in flats.items()})


def save_weights_h5(model, filepath):
    """Write ``model``'s weights as a Keras 3 ``.weights.h5`` file (what
    ``keras_model.load_weights`` reads), atomically (``cconv.saving.fileio.atomic_write``: a failed
    save leaves the previous file whole)."""
    _build(model)
    h5py = _h5py()

    def write(fileobj):
        with h5py.File(fileobj, "w") as f:
            _write_weights(model, f)
    fileio.atomic_write(filepath, write)


def load_weights_h5(model, filepath):
    """Set ``model``'s weights from a Keras 3 ``.weights.h5`` file (each layer's from the
    group its place in the model names, as Keras does: :func:`_read_weights`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5 file, a weight missing or not fitting its layer, a link or
            data outside the file (named with the file); the model is then left as it was.
    """
    _build(model)
    filepath = os.fspath(filepath)
    _check_exists(filepath)
    with _open_h5(filepath, filepath) as f:
        _read_weights(model, f, filepath)


# ----- whole models ------------------------------------------------------------------------------
def save_keras(model, filepath):
    """Write ``model`` as a Keras 3 ``.keras`` archive that ``keras.models.load_model``
    opens (architecture, weights, compile settings and optimizer state), atomically
    (``cconv.saving.fileio.atomic_write``).

    Raises:
        ValueError: a layer Keras cannot rebuild from a config (named).
    """
    config = _keras_model_config(model)
    buf = io.BytesIO()
    with _h5py().File(buf, "w") as f:
        _write_weights(model, f)
        _write_optimizer(model, f)
    meta = {"keras_version": KERAS_VERSION,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}

    def write(fileobj):
        with zipfile.ZipFile(fileobj, "w") as zf:
            zf.writestr("metadata.json", json.dumps(meta))
            zf.writestr("config.json", json.dumps(config))
            zf.writestr("model.weights.h5", buf.getvalue())
    fileio.atomic_write(filepath, write)


def _read_member(zf, name, limit, filepath):
    try:
        return fileio.read_member(zf, name, limit, deflated=True)
    except ValueError as exc:
        raise ValueError(f"{filepath!r} is not a Keras .keras archive, or is damaged: "
                         f"{exc}.") from None


def load_keras(filepath):
    """Read a Keras 3 ``.keras`` archive into a cconv model (compiled when the file has
    compile settings cconv supports). ``config.json`` may inflate to at most
    :data:`_JSON_LIMIT` bytes, ``model.weights.h5`` to :func:`_weights_limit` of the model
    the config describes.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a Keras archive, a damaged or hostile one, an unsupported layer or
            argument (the message names the file and what is wrong).
    """
    filepath = os.fspath(filepath)
    zf = _open_keras_archive(filepath)
    with zf:
        config = _parse_json(_read_member(zf, "config.json", _JSON_LIMIT, filepath),
                             filepath, "config.json")
        model = _model_from_file_config(config, filepath, "config.json")
        weights = _read_member(zf, "model.weights.h5", _weights_limit(model), filepath)
    compile_from_keras(model, config.get("compile_config"))
    with _open_h5(io.BytesIO(weights), filepath, ": its model.weights.h5") as f:
        _read_weights(model, f, filepath)
        _read_optimizer(model, f, filepath)
    return model


def _open_keras_archive(filepath):
    """The ``.keras`` zip archive at ``filepath``, open.

    Raises:
        FileNotFoundError: no such file. ValueError: not a zip archive (naming the file).
    """
    _check_exists(filepath)
    try:
        return zipfile.ZipFile(filepath)
    except Exception as exc:   # BadZipFile, or a damaged directory (struct.error, ...)
        raise ValueError(f"{filepath!r} is not a Keras .keras archive ({type(exc).__name__}: "
                         f"{str(exc)[:200]}).") from None


def load_weights_keras(model, filepath):
    """Set ``model``'s weights from the ``model.weights.h5`` inside a Keras 3 ``.keras``
    archive (Keras 3's ``model.load_weights("x.keras")``): each layer's from the group its
    place in the model names, as :func:`load_weights_h5`; the archive's architecture is not
    used and its optimizer state is left out.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a Keras archive, or weights that do not fit the model (named with
            the file); the model is then left as it was.
    """
    _build(model)
    filepath = os.fspath(filepath)
    zf = _open_keras_archive(filepath)
    with zf:
        weights = _read_member(zf, "model.weights.h5", _weights_limit(model), filepath)
    with _open_h5(io.BytesIO(weights), filepath, ": its model.weights.h5") as f:
        _read_weights(model, f, filepath)


def _read_legacy_weights(model, group, filepath):
    """Set the weights of a legacy ``.h5`` file's model (``model_weights``: ``layer_names``,
    each layer's group with its ``weight_names``). The names come from the same file as the
    model's config; the file must hold weights for every layer that has some, and only for
    those (Keras: "Layer count mismatch"). Checked before anything is read."""
    weighted = {layer.name: layer for layer in model.layers if layer.weights}
    names = _h5_names(group, "layer_names", filepath)
    saved = {}
    for name in names or []:
        layer_group = _h5_group(group, name, filepath)
        if layer_group is None:
            raise ValueError(f"{filepath!r} is damaged: layer_names lists {name!r}, which has "
                             f"no group in the file.")
        weight_names = _h5_names(layer_group, "weight_names", filepath) or []
        if not weight_names:
            continue
        if name in saved:
            raise ValueError(f"{filepath!r} is damaged: layer_names lists {name!r} twice.")
        if name not in weighted:
            raise ValueError(f"{filepath!r} is damaged: it has weights for a layer {name!r}, "
                             f"which its model has no layer with weights named.")
        saved[name] = (layer_group, weight_names)
    missing = [name for name in weighted if name not in saved]
    if missing:
        raise ValueError(f"{filepath!r}: Layer count mismatch: the model has {len(weighted)} "
                         f"layers with weights, the file {len(saved)} (missing: "
                         f"{fileio.short_list(missing)[1:-1]})"
                         f"{'; it has no layer_names attribute' if names is None else ''}.")
    found = []
    for name, layer in weighted.items():
        layer_group, weight_names = saved[name]
        if len(weight_names) != len(layer.weights):
            raise ValueError(f"{filepath!r}: Weight count mismatch for layer {name!r}: it has "
                             f"{len(layer.weights)} weights, the file {len(weight_names)} "
                             f"saved weight(s).")
        items = [(f"{name}/{w}", _h5_dataset(layer_group, w, filepath)) for w in weight_names]
        found.append((layer, _from_legacy_order(layer, items)))
    _load_layer_weights(found, filepath)


def _legacy_positions(layer):
    """For each weight in the legacy order (trainable, then non-trainable: Keras's
    ``_legacy_weights``), its index in ``layer.weights`` (``get_weights()`` order)."""
    trainable = {id(w) for w in layer.trainable_weights}
    index = range(len(layer.weights))
    return ([i for i in index if id(layer.weights[i]) in trainable]
            + [i for i in index if id(layer.weights[i]) not in trainable])


def _from_legacy_order(layer, items):
    """``items`` listed in the legacy order, put in ``get_weights()`` order."""
    ordered = [None] * len(items)
    for item, i in zip(items, _legacy_positions(layer)):
        ordered[i] = item
    return ordered


def load_h5(filepath):
    """Read a legacy full-model Keras ``.h5`` file (Keras 2, or Keras 3's ``.h5`` writer).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5 file, a weights-only file, a damaged or hostile one, an
            unsupported layer or argument (the message names the file and what is wrong).
    """
    filepath = os.fspath(filepath)
    _check_exists(filepath)
    with _open_h5(filepath, filepath) as f:
        text = _h5_text(f, "model_config", filepath)
        if text is None:
            raise ValueError(f"{filepath!r} holds no model config (a weights-only file?); "
                             f"build the model and call model.load_weights().")
        model = _model_from_file_config(_parse_json(text, filepath, "model_config"), filepath,
                                        "model_config")
        group = _h5_group(f, "model_weights", filepath)
        _read_legacy_weights(model, f if group is None else group, filepath)
        training = _h5_text(f, "training_config", filepath)
    if training is not None:
        t = fileio.expect_type(_parse_json(training, filepath, "training_config"), (dict,),
                           "training_config", filepath)
        compile_from_keras(model, {"optimizer": t.get("optimizer_config"), "loss": t.get("loss"),
                                   "metrics": t.get("metrics"),
                                   "weighted_metrics": t.get("weighted_metrics"),
                                   "loss_weights": t.get("loss_weights")})
    return model


def _legacy_weight_names(layer):
    """``(dataset names, arrays)`` of ``layer``'s weights in the legacy order (trainable, then
    non-trainable, as Keras's ``_legacy_weights``), named ``<layer>/<weight>:0`` as Keras 2
    named them."""
    names, weights = layer.weight_names, layer.weights
    order = _legacy_positions(layer)
    return ([f"{layer.name}/{names[i]}:0" for i in order],
            [np.array(weights[i]) for i in order])


def _legacy_training_config(model):
    """A legacy ``.h5`` file's ``training_config`` (Keras's: the compile settings, the
    optimizer under ``optimizer_config``), or None for a model that is not compiled."""
    comp = _keras_compile_config(model)
    if comp is None:
        return None
    optimizer = comp.pop("optimizer")
    comp["optimizer_config"] = {"class_name": optimizer["class_name"],
                                "config": optimizer["config"]}
    return comp


def save_h5(model, filepath):
    """Write ``model`` as a legacy Keras ``.h5`` file (Keras 2's layout, which Keras 3's
    ``keras.models.load_model`` and cconv's :func:`load_h5` read), atomically
    (``cconv.saving.fileio.atomic_write``): root attributes ``model_config`` (the
    architecture, JSON), ``training_config`` (compile settings, when compiled),
    ``keras_version`` and ``backend``; group ``model_weights`` with ``layer_names`` (every
    layer, Keras's ``model.layers`` order) and one group per layer whose ``weight_names``
    attribute lists its datasets (``dense/kernel:0``, ``dense/bias:0``: trainable weights
    first). The optimizer's state is not written (``.keras`` files keep it).

    Raises:
        ValueError: a layer Keras cannot rebuild from a config (named).
    """
    config = _keras_model_config(model)
    config.pop("compile_config", None)
    model_config = {"class_name": config["class_name"], "config": config["config"]}
    training = _legacy_training_config(model)
    layers = _keras_layer_order(model)
    h5py = _h5py()

    def write(fileobj):
        with h5py.File(fileobj, "w") as f:
            f.attrs["keras_version"] = KERAS_VERSION
            f.attrs["backend"] = "tensorflow"
            f.attrs["model_config"] = json.dumps(model_config).encode("utf8")
            if training is not None:
                f.attrs["training_config"] = json.dumps(training).encode("utf8")
            group = f.create_group("model_weights")
            group.attrs["layer_names"] = np.array([l.name.encode("utf8") for l in layers])
            group.attrs["backend"] = b"tensorflow"
            group.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
            for layer in sorted(layers, key=lambda l: l.name):
                layer_group = group.create_group(layer.name)
                names, values = _legacy_weight_names(layer)
                layer_group.attrs["weight_names"] = (
                    np.array([n.encode("utf8") for n in names]) if names
                    else np.array([], dtype=np.float64))     # Keras's empty list
                for name, value in zip(names, values):
                    layer_group.create_dataset(name, data=value)
            top = group.create_group("top_level_model_weights")
            top.attrs["weight_names"] = np.array([], dtype=np.float64)
    fileio.atomic_write(filepath, write)


# The suffixes this module reads and writes, for cconv.saving's dispatch by suffix.
register_format("keras", save=save_keras, load=load_keras)
register_format("h5", save=save_h5, load=load_h5)
register_format("weights.h5", save=save_weights_h5, load=load_weights_h5)
register_format("keras.weights", load=load_weights_keras)
