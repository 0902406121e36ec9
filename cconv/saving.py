"""Saving and loading models and weights without TensorFlow.

Files are NumPy ``.npz`` archives (written to exactly the path given): a JSON document under
``__cconv__`` (format, architecture, compile settings) and arrays ``w0, w1, ...`` in
``get_weights()`` order, plus ``opt.*`` optimizer state for full models. They load with
``allow_pickle=False``: nothing in a file can run code.

This module imports no model class: it works from a model's public API (``get_config``,
``get_weights`` / ``set_weights``, ``get_compile_config`` / ``compile_from_config``,
``get_optimizer_state`` / ``set_optimizer_state``), and model classes register themselves
with :func:`register_model_class` so that :func:`load_model` can rebuild them.
"""

import json
import os

import numpy as np

FORMAT_VERSION = 1


def _write(filepath, meta, arrays):
    filepath = os.fspath(filepath)
    d = os.path.dirname(filepath)
    if d and not os.path.isdir(d):
        raise FileNotFoundError(f"Cannot save to {filepath!r}: directory {d!r} does not exist.")
    tmp = filepath + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, __cconv__=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, filepath)


def _read(filepath, what):
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such file: {filepath!r}.")
    try:
        data = np.load(filepath, allow_pickle=False)
        meta = json.loads(str(data["__cconv__"]))
    except Exception as e:  # not an npz, or not ours
        raise ValueError(
            f"{filepath!r} is not a cconv {what} file ({type(e).__name__}: {e})."
        ) from None
    return meta, data


def _load_weight_list(meta, data, filepath):
    n = int(meta["num_weights"])
    missing = [f"w{i}" for i in range(n) if f"w{i}" not in data.files]
    if missing:
        raise ValueError(f"{filepath!r} is damaged: missing arrays {missing}.")
    return [data[f"w{i}"] for i in range(n)]


def save_weights(model, filepath):
    """Write ``model.get_weights()`` alone."""
    weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    _write(filepath, {"format": "cconv.weights", "version": FORMAT_VERSION,
                      "num_weights": len(weights)}, weights)


def load_weights(model, filepath):
    """``model.set_weights`` from a weights file or a full model file."""
    meta, data = _read(filepath, "weights")
    if meta.get("format") not in ("cconv.weights", "cconv.model"):
        raise ValueError(f"{os.fspath(filepath)!r} is not a cconv weights file.")
    model.set_weights(_load_weight_list(meta, data, filepath))


def save_model(model, filepath):
    """Write ``model`` (architecture, weights, compile settings, optimizer state)."""
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
    _write(filepath, meta, arrays)


def register_model_class(cls):
    """Make ``cls`` (a model class with ``from_config``) loadable by :func:`load_model`;
    returns ``cls`` (usable as a class decorator)."""
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


_MODEL_CLASSES = {}


def load_model(filepath, custom_objects=None):
    """The model saved in ``filepath``, compiled again if it was.

    Args:
        custom_objects: ``{class_name: model class}`` for model classes not registered with
            :func:`register_model_class`.
    """
    meta, data = _read(filepath, "model")
    if meta.get("format") != "cconv.model":
        raise ValueError(
            f"{os.fspath(filepath)!r} holds {meta.get('format')!r}, not a model; "
            f"build the model and use model.load_weights() for weight files."
        )
    class_name = meta.get("class_name", "Sequential")     # files before class_name existed
    cls = dict(_MODEL_CLASSES, **(custom_objects or {})).get(class_name)
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
            model.set_optimizer_state(comp.get("iterations", 0), state)
    return model
