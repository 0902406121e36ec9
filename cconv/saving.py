"""Saving and loading models and weights without TensorFlow.

Files are NumPy ``.npz`` archives (written to exactly the path given): a JSON document under
``__cconv__`` (format, architecture, compile settings) and arrays ``w0, w1, ...`` in
``get_weights()`` order, plus ``opt.*`` optimizer state for full models. They load with
``allow_pickle=False``: nothing in a file can run code.
"""

import json
import os

import numpy as np

from . import fileio

FORMAT_VERSION = 1


def _write(filepath, meta, arrays):
    """Atomically (see ``cconv.fileio.atomic_write``): readers never see a partial file."""
    fileio.atomic_write(
        filepath, lambda f: np.savez(f, __cconv__=np.array(json.dumps(meta)), **arrays))


def _read(filepath, what):
    """``(meta, {name: array})``, every count and type checked before anything is allocated."""
    return fileio.read_npz(filepath, what)


def _weights_arrays(model):
    return {f"w{i}": w for i, w in enumerate(model.get_weights())}


def _load_weight_list(meta, data, filepath):
    """The weights ``w0 ...`` (their count and presence checked by ``_read``)."""
    return [data[f"w{i}"] for i in range(meta["num_weights"])]


def save_weights(model, filepath):
    weights = _weights_arrays(model)
    _write(filepath, {"format": "cconv.weights", "version": FORMAT_VERSION,
                      "num_weights": len(weights)}, weights)


def load_weights(model, filepath):
    meta, data = _read(filepath, "weights")
    if meta.get("format") not in ("cconv.weights", "cconv.model"):
        raise ValueError(f"{os.fspath(filepath)!r} is not a cconv weights file.")
    model.set_weights(_load_weight_list(meta, data, filepath))


def save_model(model, filepath):
    from . import losses, optimizers
    model._ensure_built()
    meta = {"format": "cconv.model", "version": FORMAT_VERSION, "config": model.get_config()}
    arrays = _weights_arrays(model)
    meta["num_weights"] = len(arrays)
    if model.compiled:
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
    from .models import Sequential
    meta, data = _read(filepath, "model")
    if meta.get("format") != "cconv.model":
        raise ValueError(
            f"{os.fspath(filepath)!r} holds {meta.get('format')!r}, not a model; "
            f"build the model and use model.load_weights() for weight files."
        )
    model = Sequential.from_config(meta["config"])
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
