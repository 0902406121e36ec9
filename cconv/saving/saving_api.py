"""Saving and loading models and weights without TensorFlow.

Files are NumPy ``.npz`` archives (written to exactly the path given): a JSON document under
``__cconv__`` (format, architecture, compile settings) and arrays ``w0, w1, ...`` in
``get_weights()`` order, plus ``opt.*`` optimizer state for full models. They load with
``allow_pickle=False``: nothing in a file can run code. Keras 3 ``.keras`` archives, Keras
``.weights.h5`` files and legacy ``.h5`` models (read and write) go through
:mod:`cconv.saving.keras_files`; the suffix decides, and any other suffix is a ``ValueError``.

This module imports no model class: it works from a model's public API (``get_config``,
``get_weights`` / ``set_weights``, ``get_compile_config`` / ``compile_from_config``,
``get_optimizer_state`` / ``set_optimizer_state``), and model classes register themselves
with :func:`register_model_class` so that :func:`load_model` can rebuild them.
"""

import json
import os

import numpy as np

from ..registry import CustomObjectScope
from . import fileio

FORMAT_VERSION = 1

# Other file formats by the name file_format() gives them: {"save": fn, "load": fn}, filled
# by the modules that implement them (cconv.saving.keras_files registers "keras", "h5",
# "weights.h5"), so that this module imports none of them.
_FORMATS = {}


def register_format(name, save=None, load=None):
    """Route paths whose :func:`file_format` is ``name`` to ``save(model, path)`` /
    ``load(path)`` (models) or ``save(model, path)`` / ``load(model, path)`` (weights)."""
    _FORMATS[name] = {"save": save, "load": load}


def _handler(fmt, action, filepath):
    fn = _FORMATS.get(fmt, {}).get(action)
    if fn is None:
        raise ValueError(f"Cannot {action} {os.fspath(filepath)!r}: {fmt} files are "
                         f"{'read only' if action == 'save' else 'not supported'} in cconv; "
                         f"models are saved as .npz (cconv) or .keras (Keras 3).")
    return fn


def file_format(filepath, what="model"):
    """The format a path's suffix names: "npz" (cconv's own), "keras" (``.keras``),
    "h5" (legacy Keras ``.h5``/``.hdf5``) or "weights.h5" (``.weights.h5``).

    Raises:
        ValueError: any other suffix (the message lists the accepted ones).
    """
    name = os.fspath(filepath).lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".weights.h5"):
        return "weights.h5"
    if name.endswith(".keras"):
        return "keras"
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    accepted = ('".npz" (cconv) or ".keras" (Keras 3)' if what == "model"
                else '".npz" (cconv) or ".weights.h5" (Keras 3)')
    raise ValueError(f"Cannot tell the file format of {os.fspath(filepath)!r} from its suffix; "
                     f"use {accepted}.")


def write_archive(filepath, meta, arrays):
    """Atomically (see ``cconv.saving.fileio.atomic_write``): readers never see a partial file."""
    fileio.atomic_write(
        filepath, lambda f: np.savez(f, __cconv__=np.array(json.dumps(meta)), **arrays))


def read_archive(filepath, what):
    """``(meta, {name: array})``, every count and type checked before anything is allocated."""
    return fileio.read_npz(filepath, what)


def _load_weight_list(meta, data, filepath):
    """The weights ``w0 ...`` (their count and presence checked by ``_read``)."""
    return [data[f"w{i}"] for i in range(meta["num_weights"])]


def _weights_format(filepath, action="save"):
    fmt = file_format(filepath, "weights")
    if fmt == "keras" and action == "load":     # Keras 3 reads a .keras file's weights too
        return "keras.weights"
    if fmt not in ("npz", "weights.h5"):
        raise ValueError(f"{os.fspath(filepath)!r}: weights are saved as .npz (cconv) or "
                         f".weights.h5 (Keras 3)"
                         f"{'' if action == 'save' else ' and loaded from those or a .keras file'}"
                         f".")
    return fmt


def save_weights(model, filepath):
    """Write ``model.get_weights()`` alone (``.npz``, or Keras's ``.weights.h5``)."""
    fmt = _weights_format(filepath)
    if fmt != "npz":
        return _handler(fmt, "save", filepath)(model, filepath)
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    write_archive(filepath, {"format": "cconv.weights", "version": FORMAT_VERSION,
                      "num_weights": len(weights)}, weights)


def load_weights(model, filepath):
    """``model.set_weights`` from a weights file or a full model file (``.npz``, Keras's
    ``.weights.h5``, or the weights of a Keras 3 ``.keras`` archive, as Keras 3 reads them)."""
    fmt = _weights_format(filepath, "load")
    if fmt != "npz":
        return _handler(fmt, "load", filepath)(model, filepath)
    meta, data = read_archive(filepath, "weights")
    if meta.get("format") not in ("cconv.weights", "cconv.model"):
        raise ValueError(f"{os.fspath(filepath)!r} is not a cconv weights file.")
    model.set_weights(_load_weight_list(meta, data, filepath))


def save_model(model, filepath):
    """Write ``model`` (architecture, weights, compile settings, optimizer state) as ``.npz``,
    or as a Keras 3 ``.keras`` archive."""
    fmt = file_format(filepath)
    if fmt != "npz":
        return _handler(fmt, "save", filepath)(model, filepath)
    weights = model.get_weights()              # builds the model if needed
    meta = {"format": "cconv.model", "version": FORMAT_VERSION,
            "class_name": type(model).__name__, "config": model.get_config(),
            "num_weights": len(weights)}
    arrays = {f"w{i}": w for i, w in enumerate(weights)}
    compile_config = model.get_compile_config()
    if compile_config is not None:
        iterations, state = model.get_optimizer_state()
        meta["compile"] = dict(compile_config, iterations=iterations, state_keys=sorted(state))
        arrays.update({f"opt.{k}": v for k, v in state.items()})
    write_archive(filepath, meta, arrays)


def register_model_class(cls):
    """Make ``cls`` (a model class with ``from_config``) loadable by :func:`load_model`;
    returns ``cls`` (usable as a class decorator)."""
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


_MODEL_CLASSES = {}


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """The model saved in ``filepath`` (``.npz``, ``.keras`` or legacy ``.h5``), compiled
    again if it was.

    Args:
        custom_objects: ``{name: class}`` for the custom classes the file names (layers,
            losses, metrics, initializers, model classes) that are not registered with
            ``cconv.saving.register_keras_serializable`` (or, for model classes,
            :func:`register_model_class`); looked up as within
            ``cconv.saving.custom_object_scope(custom_objects)``.
        compile, safe_mode: Keras's arguments, accepted (cconv files hold no code; the
            model is compiled when the file has compile settings).

    Raises:
        TypeError: ``custom_objects`` is not a dict. ValueError: see the formats' loaders.
    """
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise TypeError(f"load_model: custom_objects must be a dict of name -> class; got "
                        f"{type(custom_objects).__name__}.")
    with CustomObjectScope(custom_objects):
        return _load_model(filepath, custom_objects)


def _load_model(filepath, custom_objects):
    fmt = file_format(filepath)
    if fmt != "npz":
        return _handler(fmt, "load", filepath)(filepath)
    meta, data = read_archive(filepath, "model")
    if meta.get("format") != "cconv.model":
        raise ValueError(
            f"{os.fspath(filepath)!r} holds {meta.get('format')!r}, not a model; "
            f"build the model and use model.load_weights() for weight files."
        )
    class_name = meta.get("class_name", "Sequential")     # files before class_name existed
    cls = dict(_MODEL_CLASSES, **(custom_objects or {})).get(class_name)
    if cls is None and "input_layers" in meta["config"]:   # a subclassed model: its graph
        cls = _MODEL_CLASSES.get("Model")
    if cls is None:
        raise ValueError(f"{os.fspath(filepath)!r} holds a {class_name!r} model; known model "
                         f"classes: {', '.join(sorted(_MODEL_CLASSES))}.")
    model = cls.from_config(meta["config"])
    model.set_weights(_load_weight_list(meta, data, filepath))
    comp = meta.get("compile")
    if comp:
        model.compile_from_config(comp)
        state = {k: data[f"opt.{k}"] for k in comp.get("state_keys", [])}
        if state or comp.get("iterations"):
            restore_optimizer_state(model, comp.get("iterations", 0), state, filepath)
    return model


def restore_optimizer_state(model, iterations, state, filepath):
    """``model.set_optimizer_state(iterations, state)`` for a step count and slot arrays
    read from ``filepath``, once they are checked against the slots the compiled model's
    optimizer keeps (their names, e.g. ``"0.m"``, and shapes, e.g. ``(n_weights,)``).

    A slot the file lacks starts at zero, as before the first step.

    Raises:
        ValueError: naming ``filepath``: the step count is not an int >= 0, or the file
            holds a slot this optimizer does not keep (saved by another optimizer or
            configuration) or one of another shape. The optimizer is then left as it was.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) \
            or iterations < 0:
        raise ValueError(f"{os.fspath(filepath)!r} is damaged: the optimizer's step count "
                         f"must be an int >= 0, got {iterations!r}.")
    before = model.get_optimizer_state()
    model.set_optimizer_state(0, {})            # fresh slots: the names and shapes it keeps
    fresh = model.get_optimizer_state()[1]
    unknown = sorted(k for k in state if k not in fresh)
    wrong = [f"{k!r} has shape {np.shape(state[k])}, the model's {fresh[k].shape}"
             for k in sorted(state) if k in fresh and np.shape(state[k]) != fresh[k].shape]
    if unknown or wrong:
        model.set_optimizer_state(*before)
        name = type(model.optimizer).__name__
        what = (f"it holds optimizer slots {unknown[:5]} that this {name} does not keep "
                f"(it keeps {sorted(fresh)})" if unknown else
                f"optimizer slot {wrong[0]}")
        raise ValueError(f"{os.fspath(filepath)!r} does not fit this model: {what}.")
    model.set_optimizer_state(int(iterations), state)
