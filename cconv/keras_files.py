"""Keras model files without TensorFlow: Keras 3 ``.keras`` archives (read and write),
legacy full-model ``.h5`` files (read) and ``.weights.h5`` weight files (read and write).

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
"""

import datetime
import inspect
import io
import json
import os
import warnings
import zipfile

import numpy as np

from . import initializers as _initializers
from . import layers as _layers
from . import losses as _losses
from . import optimizers as _optimizers
from .functional import Model, graph_config, map_graph, model_from_graph_config
from .layers.base import _snake
from .saving import file_format, register_format
from .sequential import Sequential

__all__ = ["load_keras", "save_keras", "load_h5", "save_weights_h5", "load_weights_h5",
           "layer_from_keras_config", "file_format"]

KERAS_VERSION = "3.15.1"     # the Keras whose layout the written files follow

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


def _layer_kwargs(cls_name, cls, cfg, where):
    if cls_name in _KEEP:
        return {k: cfg[k] for k in _KEEP[cls_name] if k in cfg}
    accepted = _init_params(cls)
    unknown = sorted(k for k in cfg if k not in accepted and k not in _SKIP_KEYS
                     and k not in _MUST_BE_DEFAULT and k not in _IGNORED
                     and cfg[k] is not None)
    if unknown:
        raise ValueError(f"{where} ({cls_name}) has Keras arguments cconv does not support: "
                         f"{', '.join(f'{k}={cfg[k]!r}' for k in unknown)}.")
    return {k: cfg[k] for k in cfg if k in accepted and k not in _SKIP_KEYS}


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
        raise ValueError(f"{where} is a {cls_name}, which cconv does not support. Supported "
                         f"layers: {_layers.REGISTRY.known()}.")
    if cfg.get("data_format") not in (None, "channels_last"):
        raise ValueError(f"{where} uses data_format={cfg['data_format']!r}; only channels_last "
                         f"is supported.")
    dtype = _dtype_name(cfg.get("dtype"), where)
    if cls_name == "InputLayer":
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        shape = shape[1:] if shape is not None else cfg.get("shape")
        return cls(shape=shape, name=cfg.get("name"), dtype=dtype)
    bad = [k for k, default in _MUST_BE_DEFAULT.items() if k in cfg and cfg[k] != default
           and not (k == "lora_rank" and not cfg[k])]
    bad += [k for k in cfg if k.endswith(("_regularizer", "_constraint"))
            and k not in _MUST_BE_DEFAULT and cfg[k] is not None]
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
    return cls(name=cfg.get("name"), trainable=cfg.get("trainable", True), **kwargs)


def _entry_to_layer(entry):
    return layer_from_keras_config(entry["class_name"], dict(entry.get("config") or {}))


def model_from_keras_config(config):
    """A cconv Sequential or graph Model from a Keras model config
    (``{"class_name": "Sequential" | "Functional" | "Model", "config": {...}}``).

    Raises:
        ValueError: a subclassed Keras model (no config cconv can rebuild), or an unsupported
            layer or argument.
    """
    kind = config.get("class_name")
    inner = config.get("config") or {}
    if kind in ("Functional", "Model") and "layers" in inner:
        return model_from_graph_config(inner, _entry_to_layer)
    if kind != "Sequential":
        raise ValueError(f"Cannot rebuild a Keras model of class {kind!r}: only Sequential and "
                         f"Functional models are supported (a subclassed model's code is not in "
                         f"its file).")
    layers = []
    for entry in inner.get("layers", []):
        cfg = entry.get("config") or {}
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if not layers and entry["class_name"] != "InputLayer" and shape is not None:
            layers.append(_layers.InputLayer(shape[1:]))   # Keras 2: shape on the first layer
        layers.append(_entry_to_layer(entry))
    model = Sequential(layers, name=inner.get("name"))
    build = (config.get("build_config") or {}).get("input_shape")
    if model._declared_input_shape() is not None or build is not None:
        model.build(None if model._declared_input_shape() is not None else build)
    return model


# ----- layers: cconv -> Keras config ---------------------------------------------------------
def _keras_object(cfg, module):
    return {"module": module, "class_name": cfg["class_name"], "config": cfg.get("config") or {},
            "registered_name": None}


def _keras_layer_entry(layer, input_shapes):
    """Keras 3's serialisation of a cconv layer; ``input_shapes``: the shapes (batch axis
    included) it was built for, a list of them for a multi-input layer, or None."""
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
        elif k == "activation" and not isinstance(v, str):
            raise ValueError(f"Layer {layer.name!r}: activation {v!r} has settings that a Keras "
                             f"config cannot name; use an Activation/LeakyReLU layer instead.")
    entry = {"module": "keras.layers", "class_name": name, "config": cfg, "registered_name": None}
    if input_shapes is not None:
        entry["build_config"] = {"input_shape": input_shapes}
    return entry


def _node_input_shapes(model, layer):
    nodes = model._model_nodes(layer)
    if not nodes or nodes[0].is_input:
        return None
    shapes = [list(t.shape) for t in nodes[0].inbound_tensors]
    return shapes if nodes[0].multi else shapes[0]


def _keras_model_config(model):
    """``config.json``'s content for a cconv model (Sequential or graph Model)."""
    model._ensure_built()
    if not isinstance(model, Sequential):
        inner = graph_config(model, lambda l: _keras_layer_entry(l, _node_input_shapes(model, l)))
        out = {"module": "keras.src.models.functional", "class_name": "Functional",
               "config": inner, "registered_name": "Functional",
               "build_config": {"input_shape": None}}
    else:
        entries, shape = [], [None] + list(model._input_shape)
        inp = model._input_layer or _layers.InputLayer(model._input_shape, dtype=model.dtype.name)
        entries.append(_keras_layer_entry(inp, None))
        for layer in model.layers:
            entries.append(_keras_layer_entry(layer, [None] + list(layer._input_shape)))
        out = {"module": "keras", "class_name": "Sequential",
               "config": {"name": model.name, "trainable": True, "layers": entries},
               "registered_name": None, "build_config": {"input_shape": shape}}
    compile_config = _keras_compile_config(model)
    if compile_config is not None:
        out["compile_config"] = compile_config
    return out


def _keras_loss(loss):
    return None if loss is None else _keras_object(_losses.serialize(loss), "keras.losses")


def _keras_compile_config(model):
    if not model.compiled or model.optimizer is None:
        return None
    multi = getattr(model.loss, "losses", None)
    if multi is not None:   # several outputs (cconv.functional._MultiLoss)
        loss = [_keras_loss(l) for l in multi]
        weights = list(model.loss.weights)
        metrics = [[m for j, m in model._metric_ids if j == i and isinstance(m, str)]
                   for i in range(len(multi))]
    else:
        loss, weights = _keras_loss(model.loss), None
        metrics = [m for m in model._metric_ids if isinstance(m, str)]
    return {"optimizer": _keras_object(_optimizers.serialize(model.optimizer), "keras.optimizers"),
            "loss": loss, "loss_weights": weights, "metrics": metrics or None,
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


# ----- compile settings: Keras -> cconv ---------------------------------------------------------
def _from_keras_object(value, classes, what):
    """A cconv loss/optimizer from a Keras name or serialised object (unknown args dropped
    only when they are Keras bookkeeping: reduction, dtype, schedules are refused)."""
    if value is None or isinstance(value, str):
        return value
    cls = classes.get(value.get("class_name"))
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
        return (metrics.get("config") or {}).get("name")
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
        optimizer = _from_keras_object(config.get("optimizer"), _optimizers.REGISTRY.classes(),
                                       "optimizer")
        loss = config.get("loss")
        if isinstance(loss, dict) and "class_name" not in loss:
            loss = {k: _from_keras_object(v, _losses.REGISTRY.classes(), "loss")
                    for k, v in loss.items()}
        elif isinstance(loss, (list, tuple)):
            loss = [_from_keras_object(v, _losses.REGISTRY.classes(), "loss") for v in loss]
        else:
            loss = _from_keras_object(loss, _losses.REGISTRY.classes(), "loss")
        kwargs = {"metrics": _metric_names(config.get("metrics"))}
        if config.get("loss_weights") is not None:
            kwargs["loss_weights"] = config["loss_weights"]
        model.compile(optimizer=optimizer, loss=loss, **kwargs)
    except (ValueError, TypeError, KeyError) as exc:
        warnings.warn(f"The model was loaded uncompiled: its compile settings cannot be used "
                      f"by cconv ({exc}). Call model.compile(...) before training.", stacklevel=2)


# ----- weights: model.weights.h5 ----------------------------------------------------------------
def _keras_layer_order(model):
    """The layers in Keras's ``model.layers`` order for this model (a Sequential's without
    its InputLayer; a graph's by Keras's graph order, InputLayers included)."""
    if not isinstance(model, Sequential):
        return map_graph(model._inputs, model._outputs)[1]
    return model.layers


def _weight_keys(layers):
    """``layers/<snake class name>[_k]`` per layer, as Keras's saving_lib names them."""
    used, keys = {}, []
    for layer in layers:
        base = _snake(type(layer).__name__)
        n = used.get(base, 0)
        used[base] = n + 1
        keys.append(f"layers/{base}" if n == 0 else f"layers/{base}_{n}")
    return keys


def _write_weights(model, f):
    f.create_group("vars").attrs["name"] = model.name
    layers = _keras_layer_order(model)
    for layer, key in zip(layers, _weight_keys(layers)):
        group = f.create_group(key).create_group("vars")
        group.attrs["name"] = layer.name
        for i, w in enumerate(layer.get_weights()):
            group.create_dataset(str(i), data=w)


def _read_weights(model, f, filepath):
    """Set every layer's weights from a ``model.weights.h5`` layout, matching layers by the
    name stored with their group (Keras 3.x) or else by Keras's key order."""
    layers = _keras_layer_order(model)
    groups = f["layers"] if "layers" in f else {}
    by_name = {}
    for key in groups:
        vars_ = groups[key].get("vars")
        if vars_ is not None and "name" in vars_.attrs:
            by_name[str(vars_.attrs["name"])] = vars_
    for layer, key in zip(layers, _weight_keys(layers)):
        n = len(layer.weights)
        group = by_name.get(layer.name)
        if group is None:
            group = f[key + "/vars"] if key + "/vars" in f else None
        if n == 0:
            continue
        if group is None or len(group) != n:
            raise ValueError(f"{os.fspath(filepath)!r}: no {n} weight arrays for layer "
                             f"{layer.name!r} ({type(layer).__name__}) under {key!r}.")
        layer.set_weights([np.asarray(group[str(i)]) for i in range(n)])



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
    """``(offset, shape)`` of each trainable weight in the model's flat weight array."""
    model._ensure_packed()
    out, off = [], 0
    for _, _, w in model._views:
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


def _read_optimizer(model, f):
    """Restore Keras's optimizer variables into the compiled model's optimizer (skipped
    with a warning when they do not fit, as Keras does)."""
    groups = _keras_slot_groups(model.optimizer) if model.compiled else None
    if groups is None or "optimizer/vars" not in f:
        return
    stored = f["optimizer/vars"]
    slices = _weight_slices(model)
    names = [n for g in groups for n in g]
    if len(stored) != 2 + len(names) * len(slices):
        warnings.warn(f"Optimizer state not loaded: the file has {len(stored)} optimizer "
                      f"variables, {type(model.optimizer).__name__} here needs "
                      f"{2 + len(names) * len(slices)}.", stacklevel=2)
        return
    flats = {n: np.empty(model._wflat.shape, model.dtype) for n in names}
    i = 2
    for group in groups:
        for off, shape in slices:
            size = int(np.prod(shape, dtype=np.int64))
            for name in group:
                flats[name][off:off + size] = np.asarray(stored[str(i)]).reshape(-1)
                i += 1
    model.optimizer.set_state(int(np.asarray(stored["0"])),
                              {f"0.{n}": v for n, v in flats.items()}, [model._wflat])


def save_weights_h5(model, filepath):
    """Write ``model``'s weights as a Keras 3 ``.weights.h5`` file (what
    ``keras_model.load_weights`` reads)."""
    model._ensure_built()
    with _h5py().File(os.fspath(filepath), "w") as f:
        _write_weights(model, f)


def load_weights_h5(model, filepath):
    """Set ``model``'s weights from a Keras 3 ``.weights.h5`` file."""
    model._ensure_built()
    with _h5py().File(os.fspath(filepath), "r") as f:
        _read_weights(model, f, filepath)


# ----- whole models ------------------------------------------------------------------------------
def save_keras(model, filepath):
    """Write ``model`` as a Keras 3 ``.keras`` archive that ``keras.models.load_model``
    opens (architecture, weights, compile settings and optimizer state).

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
    filepath = os.fspath(filepath)
    tmp = filepath + ".tmp"
    with zipfile.ZipFile(tmp, "w") as zf:
        zf.writestr("metadata.json", json.dumps(meta))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", buf.getvalue())
    os.replace(tmp, filepath)


def load_keras(filepath):
    """Read a Keras 3 ``.keras`` archive into a cconv model (compiled when the file has
    compile settings cconv supports).

    Raises:
        ValueError: not a Keras archive, an unsupported layer or argument (named).
    """
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such file: {filepath!r}.")
    try:
        with zipfile.ZipFile(filepath) as zf:
            config = json.loads(zf.read("config.json"))
            weights = zf.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{filepath!r} is not a Keras .keras archive ({exc}).") from None
    model = model_from_keras_config(config)
    compile_from_keras(model, config.get("compile_config"))
    h5py = _h5py()
    try:
        f = h5py.File(io.BytesIO(weights), "r")
    except OSError as exc:
        raise ValueError(f"{filepath!r}: its model.weights.h5 is not an HDF5 file "
                         f"({exc}).") from None
    with f:
        _read_weights(model, f, filepath)
        _read_optimizer(model, f)
    return model


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def load_h5(filepath):
    """Read a legacy full-model Keras ``.h5`` file (Keras 2, or Keras 3's ``.h5`` writer).

    Raises:
        ValueError: a weights-only file, an unsupported layer or argument (named).
    """
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such file: {filepath!r}.")
    with _h5py().File(filepath, "r") as f:
        if "model_config" not in f.attrs:
            raise ValueError(f"{filepath!r} holds no model config (a weights-only file?); "
                             f"build the model and call model.load_weights().")
        model = model_from_keras_config(json.loads(_text(f.attrs["model_config"])))
        group = f["model_weights"] if "model_weights" in f else f
        layers = {l.name: l for l in model.layers}
        for name in (_text(n) for n in group.attrs["layer_names"]):
            names = [_text(w) for w in group[name].attrs["weight_names"]]
            if names:
                layers[name].set_weights([np.asarray(group[name][w]) for w in names])
        training = f.attrs.get("training_config")
    if training is not None:
        t = json.loads(_text(training))
        compile_from_keras(model, {"optimizer": t.get("optimizer_config"), "loss": t.get("loss"),
                                   "metrics": t.get("metrics"),
                                   "loss_weights": t.get("loss_weights")})
    return model


# The suffixes this module reads and writes, for cconv.saving's dispatch by suffix.
register_format("keras", save=save_keras, load=load_keras)
register_format("h5", load=load_h5)
register_format("weights.h5", save=save_weights_h5, load=load_weights_h5)
