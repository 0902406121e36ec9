"""Saving and loading models and weights without TensorFlow.

Files are NumPy ``.npz`` archives (written to exactly the path given): a JSON document under
``__cconv__`` (format, architecture, compile settings) and arrays ``w0, w1, ...`` in
``get_weights()`` order, plus ``opt.*`` optimizer state for full models. They load with
``allow_pickle=False``: nothing in a file can run code.
"""

import json
import os

import numpy as np

from . import keras_files

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
    except Exception as e:   # not an npz, or not ours
        raise ValueError(f"{filepath!r} is not a cconv {what} file ({type(e).__name__}: {e}).") from None
    return meta, data


def _weights_arrays(model):
    return {f"w{i}": w for i, w in enumerate(model.get_weights())}


def _load_weight_list(meta, data, filepath):
    n = int(meta["num_weights"])
    missing = [f"w{i}" for i in range(n) if f"w{i}" not in data.files]
    if missing:
        raise ValueError(f"{filepath!r} is damaged: missing arrays {missing}.")
    return [data[f"w{i}"] for i in range(n)]


def _weights_h5(filepath):
    if keras_files.file_format(filepath, "weights") != "weights.h5":
        raise ValueError(f"{os.fspath(filepath)!r}: Keras weight files end in .weights.h5.")
    return filepath


def save_weights(model, filepath):
    if keras_files.file_format(filepath, "weights") != "npz":     # Keras's .weights.h5
        return keras_files.save_weights_h5(model, _weights_h5(filepath))
    weights = _weights_arrays(model)
    _write(filepath, {"format": "cconv.weights", "version": FORMAT_VERSION,
                      "num_weights": len(weights)}, weights)


def load_weights(model, filepath):
    if keras_files.file_format(filepath, "weights") != "npz":
        return keras_files.load_weights_h5(model, _weights_h5(filepath))
    meta, data = _read(filepath, "weights")
    if meta.get("format") not in ("cconv.weights", "cconv.model"):
        raise ValueError(f"{os.fspath(filepath)!r} is not a cconv weights file.")
    model.set_weights(_load_weight_list(meta, data, filepath))


def save_model(model, filepath):
    from . import losses, optimizers
    fmt = keras_files.file_format(filepath)
    if fmt == "keras":
        return keras_files.save_keras(model, filepath)
    if fmt != "npz":
        raise ValueError(f"Cannot save to {os.fspath(filepath)!r}: models are saved as .npz "
                         f"(cconv) or .keras (Keras 3); legacy .h5 is read only.")
    model._ensure_built()
    meta = {"format": "cconv.model", "version": FORMAT_VERSION, "config": model.get_config()}
    arrays = _weights_arrays(model)
    meta["num_weights"] = len(arrays)
    # The compile settings of a several-output model (its loss is a list) are not kept here.
    if model.compiled and getattr(model.loss, "losses", None) is None:
        metrics = []
        for m in model._metric_ids:
            if not isinstance(m, str):
                m = m.name
            metrics.append(m)
        meta["compile"] = {"optimizer": optimizers.serialize(model.optimizer),
                           "loss": losses.serialize(model.loss), "metrics": metrics}
        iterations, state = model.optimizer.get_state()
        meta["compile"]["iterations"] = iterations
        meta["compile"]["state_keys"] = sorted(state)
        arrays.update({f"opt.{k}": v for k, v in state.items()})
    _write(filepath, meta, arrays)


def load_model(filepath):
    from . import losses, optimizers
    fmt = keras_files.file_format(filepath)
    if fmt in ("keras", "h5"):
        read = keras_files.load_keras if fmt == "keras" else keras_files.load_h5
        return read(filepath)
    from .models import Model, Sequential
    meta, data = _read(filepath, "model")
    if meta.get("format") != "cconv.model":
        raise ValueError(
            f"{os.fspath(filepath)!r} holds {meta.get('format')!r}, not a model; "
            f"build the model and use model.load_weights() for weight files."
        )
    cls = Model if "input_layers" in meta["config"] else Sequential   # a graph or a chain
    model = cls.from_config(meta["config"])
    model.set_weights(_load_weight_list(meta, data, filepath))
    comp = meta.get("compile")
    if comp:
        model.compile(optimizer=optimizers.deserialize(comp["optimizer"]),
                      loss=losses.deserialize(comp["loss"]), metrics=comp["metrics"])
        state = {k: data[f"opt.{k}"] for k in comp.get("state_keys", [])}
        if state or comp.get("iterations"):
            model._ensure_packed()
            model.optimizer.set_state(comp.get("iterations", 0), state, [model._wflat])
    return model
