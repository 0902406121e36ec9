"""Stateful metrics with Keras 3 names: ``update_state(y_true, y_pred)``, ``result()``,
``reset_state()``.

``compile(metrics=["accuracy"])`` resolves "accuracy"/"acc" the way Keras 3 does, from the
shapes of the labels and predictions: a single output unit -> :class:`BinaryAccuracy`;
labels of lower rank (or a last axis of 1 against several outputs) ->
:class:`SparseCategoricalAccuracy`; otherwise :class:`CategoricalAccuracy`.
"""

import numpy as np

from .registry import Registry

__all__ = [
    "Metric", "Mean", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy",
    "SparseCategoricalAccuracy", "MeanSquaredError", "MeanAbsoluteError", "get",
    "serialize", "deserialize",
]


class Metric:
    """Base class: a running (weighted) mean of per-sample values."""

    _default_name = "metric"

    def __init__(self, name=None):
        self.name = name or self._default_name
        self.reset_state()

    def reset_state(self):
        self._total = 0.0
        self._count = 0.0

    def result(self):
        """The current value (float); 0.0 before any update."""
        return self._total / self._count if self._count else 0.0

    def update_state(self, y_true, y_pred):
        values = self._values(np.asarray(y_true), np.asarray(y_pred))
        self._total += float(np.sum(values))
        self._count += values.size

    def _update(self, y_true, y_pred):
        """Fast path used by fit: inputs are already checked and converted."""
        values = self._values(y_true, y_pred)
        self._total += float(values.sum())
        self._count += values.size

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={self.result():.4f}>"


class Mean(Metric):
    """Weighted mean of the values given to ``update_state(values, sample_weight=None)``."""

    _default_name = "mean"

    def update_state(self, values, sample_weight=None):
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is None:
            self._total += float(values.sum())
            self._count += values.size
        else:
            w = np.broadcast_to(np.asarray(sample_weight, dtype=np.float64), values.shape)
            self._total += float((values * w).sum())
            self._count += float(w.sum())


class Accuracy(Metric):
    """Fraction of predictions exactly equal to the labels."""

    _default_name = "accuracy"

    def _values(self, y, p):
        return (y == p).reshape(-1)


class BinaryAccuracy(Metric):
    """Fraction of ``(y_pred > threshold) == y_true`` (Keras default threshold 0.5)."""

    _default_name = "binary_accuracy"

    def __init__(self, name=None, threshold=0.5):
        self.threshold = float(threshold)
        super().__init__(name)

    def _values(self, y, p):
        if y.ndim == p.ndim - 1:
            y = y.reshape(p.shape)
        return ((p > self.threshold) == (y > 0.5)).mean(axis=-1)


class CategoricalAccuracy(Metric):
    """Fraction of samples where ``argmax(y_pred) == argmax(y_true)`` (one-hot labels)."""

    _default_name = "categorical_accuracy"

    def _values(self, y, p):
        return (y.argmax(axis=-1) == p.argmax(axis=-1)).reshape(-1)


class SparseCategoricalAccuracy(Metric):
    """Fraction of samples where ``argmax(y_pred) == y_true`` (integer class ids)."""

    _default_name = "sparse_categorical_accuracy"

    def _values(self, y, p):
        if y.ndim == p.ndim:
            y = y.reshape(y.shape[:-1])
        return (p.argmax(axis=-1) == y).reshape(-1)


class MeanSquaredError(Metric):
    _default_name = "mean_squared_error"

    def _values(self, y, p):
        return np.square(y - p).mean(axis=-1).reshape(-1)


class MeanAbsoluteError(Metric):
    _default_name = "mean_absolute_error"

    def _values(self, y, p):
        return np.abs(y - p).mean(axis=-1).reshape(-1)


def _accuracy_for(name, y_true_shape, y_pred_shape):
    """Keras 3's "accuracy": the variant that fits the label and prediction shapes."""
    if y_true_shape is None or y_pred_shape is None:
        return CategoricalAccuracy(name=name)
    if y_pred_shape[-1] == 1:
        return BinaryAccuracy(name=name)
    if len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1] == 1 and y_pred_shape[-1] > 1):
        return SparseCategoricalAccuracy(name=name)
    return CategoricalAccuracy(name=name)


# Names accepted by get() (besides every class name, case and underscores ignored).
REGISTRY = Registry("metric", Metric, {
    "accuracy": Accuracy, "acc": Accuracy,   # resolved from shapes, see get()
    "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
}, classes=(Mean,), from_name=lambda cls, name: cls(name=name))
serialize, deserialize = REGISTRY.serialize, REGISTRY.deserialize


def get(identifier, y_true_shape=None, y_pred_shape=None):
    """Resolve a metric name, class, config dict or object. "accuracy"/"acc" need the label
    and prediction shapes (Keras 3's rule, see the module docstring); a metric made from a
    name keeps that name.

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    if isinstance(identifier, str) and REGISTRY.lookup(identifier) is Accuracy:
        return _accuracy_for(identifier, y_true_shape, y_pred_shape)
    return REGISTRY.get(identifier)
