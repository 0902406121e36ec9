"""Stateful metrics with Keras 3 names: ``update_state(y_true, y_pred)``, ``result()``,
``reset_state()``, and the state itself as ``variables`` (float64 arrays that add over
parts of the data; ``assign_variables`` sets them), which is how distributed training sums
a metric over processes.

Also top-k accuracies, ``Precision``, ``Recall`` and ``AUC`` (weighted confusion counts per
threshold, compared in float32 as Keras does), ``MeanSquaredError`` and ``MeanAbsoluteError``,
each under Keras's string names ("top_k_categorical_accuracy", "precision", "auc", "mse", ...).

``compile(metrics=["accuracy"])`` resolves "accuracy"/"acc" the way Keras 3 does, from the
shapes of the labels and predictions: a single output unit -> :class:`BinaryAccuracy`;
labels of lower rank (or a last axis of 1 against several outputs) ->
:class:`SparseCategoricalAccuracy`; otherwise :class:`CategoricalAccuracy`.
"""

import numpy as np

from .registry import Configurable, Registry

__all__ = [
    "Metric", "Mean", "Accuracy", "BinaryAccuracy", "CategoricalAccuracy",
    "SparseCategoricalAccuracy", "MeanSquaredError", "MeanAbsoluteError",
    "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "Precision", "Recall", "AUC",
    "get", "serialize", "deserialize",
]


class Metric(Configurable):
    """Base class: a running (weighted) mean of per-sample values. Totals and counts are
    accumulated in float64 whatever the inputs' dtype (a float32 sum of many values would
    lose digits)."""

    _default_name = "metric"
    #: Whether fit and evaluate pass this metric the sample (or class) weights: True for a
    #: metric given to ``compile(weighted_metrics=...)`` (set by the trainer's metric
    #: containers, :mod:`cconv.trainers`), False for ``compile(metrics=...)``.
    weighted = False
    # The attributes holding the state, in the order of ``variables``; a subclass that keeps
    # other state names its attributes here.
    _state_names = ("_total", "_count")

    def __init__(self, name=None):
        self.name = name or self._default_name
        self.reset_state()

    def reset_state(self):
        self._total = 0.0
        self._count = 0.0

    @property
    def variables(self):
        """The state, as Keras 3's ``metric.variables``: a list of float64 arrays (copies).
        ``[total, count]`` (0-d) for the mean-style metrics; ``[true_positives,
        false_positives, true_negatives, false_negatives]`` (one value per threshold) for
        :class:`Precision`, :class:`Recall` and :class:`AUC`.

        States add: updates split into parts give states whose element-wise sum is the
        state of all the updates on one metric (``cconv.distributed`` sums them over ranks,
        then sets the sum with :meth:`assign_variables`).
        """
        return [np.array(getattr(self, n), dtype=np.float64) for n in self._state_names]

    def assign_variables(self, values):
        """Set the state from a list like :attr:`variables` (the arrays are copied).

        Raises:
            TypeError: ``values`` is not a list or tuple, or holds something that is not
                numbers. ValueError: a wrong count or shape (named in the message); nothing
                is changed then.
        """
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"{type(self).__name__}.assign_variables: values must be a list "
                            f"of arrays like metric.variables; got {type(values).__name__}.")
        names = self._state_names
        if len(values) != len(names):
            raise ValueError(f"{type(self).__name__}.assign_variables: values must hold "
                             f"{len(names)} arrays (the metric's variables); got "
                             f"{len(values)}.")
        new = []
        for i, (name, v) in enumerate(zip(names, values)):
            cur = np.shape(getattr(self, name))
            a = np.asarray(v)
            if a.dtype.kind not in "fiub":
                raise TypeError(f"{type(self).__name__}.assign_variables: values[{i}] must "
                                f"be numbers; got dtype {a.dtype}.")
            if a.shape != cur:
                raise ValueError(f"{type(self).__name__}.assign_variables: values[{i}] must "
                                 f"have shape {cur}; got {a.shape}.")
            new.append(float(a) if a.ndim == 0 else np.array(a, dtype=np.float64))
        for name, v in zip(names, new):
            setattr(self, name, v)

    def result(self):
        """The current value (float); 0.0 before any update."""
        return self._total / self._count if self._count else 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch; ``sample_weight`` (one weight per sample) makes the result a weighted
        mean, as Keras's: ``sum(value_i * w_i) / sum(w_i)`` (a sample with several values, e.g.
        a spatial output, first averages them)."""
        self._update(np.asarray(y_true), np.asarray(y_pred),
                     None if sample_weight is None else np.asarray(sample_weight))

    def _update(self, y_true, y_pred, sample_weight=None):
        """:meth:`update_state` on arrays (fit and evaluate call ``update_state``, Keras's
        name; a subclass may override either)."""
        values = self._values(y_true, y_pred)
        if sample_weight is None:
            self._total += float(values.sum(dtype=np.float64))
            self._count += values.size
            return
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        per = np.asarray(values, dtype=np.float64).reshape(w.size, -1).mean(axis=1)
        self._total += float((per * w).sum())
        self._count += float(w.sum())

    def __call__(self, *args, **kwargs):
        """``metric(y_true, y_pred, sample_weight=None)``, as Keras's: :meth:`update_state`
        with the arguments, then the :meth:`result` (a float) over every update so far
        (:meth:`reset_state` starts again)."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name}

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


def _same_rank(y, p):
    """Keras's ``squeeze_or_expand_to_same_rank``: labels ``(n,)`` against predictions
    ``(n, 1)`` (or the reverse) get the trailing axis of 1."""
    if y.ndim == p.ndim - 1 and p.shape[-1] == 1:
        y = y.reshape(p.shape)
    elif p.ndim == y.ndim - 1 and y.shape[-1] == 1:
        p = p.reshape(y.shape)
    return y, p


class MeanSquaredError(Metric):
    """Mean over samples of ``mean((y_true - y_pred)**2, axis=-1)``."""

    _default_name = "mean_squared_error"

    def _values(self, y, p):
        y, p = _same_rank(y, p)
        return np.square(y - p).mean(axis=-1).reshape(-1)


class MeanAbsoluteError(Metric):
    """Mean over samples of ``mean(|y_true - y_pred|, axis=-1)``."""

    _default_name = "mean_absolute_error"

    def _values(self, y, p):
        y, p = _same_rank(y, p)
        return np.abs(y - p).mean(axis=-1).reshape(-1)


def _in_top_k(ids, p, k):
    """Whether each class id is among the ``k`` largest scores of its row (ties at the border
    count as in, a non-finite score or an id out of range as out: TensorFlow's in_top_k)."""
    p = p.reshape(-1, p.shape[-1])
    ids = ids.reshape(-1).astype(np.int64)
    valid = (ids >= 0) & (ids < p.shape[-1])
    target = p[np.arange(p.shape[0]), np.where(valid, ids, 0)]
    above = (p > target[:, None]).sum(axis=-1)
    return (above < k) & valid & np.isfinite(target)


class TopKCategoricalAccuracy(Metric):
    """Fraction of samples whose one-hot label's class is among the ``k`` (default 5) highest
    predictions."""

    _default_name = "top_k_categorical_accuracy"

    def __init__(self, k=5, name=None):
        self.k = int(k)
        super().__init__(name)

    def _values(self, y, p):
        return _in_top_k(y.argmax(axis=-1), p, self.k)

    def get_config(self):
        return {"name": self.name, "k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Fraction of samples whose integer label is among the ``k`` (default 5) highest
    predictions."""

    _default_name = "sparse_top_k_categorical_accuracy"

    def _values(self, y, p):
        return _in_top_k(y, p, self.k)


# ----- confusion-matrix metrics: Precision, Recall, AUC -----------------------------------------
_NEG_INF = -1e10      # Keras's stand-in for -inf (predictions outside the top k)
_EPSILON = 1e-7       # Keras's backend.epsilon(): AUC's end thresholds are -eps and 1 + eps


def _weights_like(sample_weight, p):
    """Per-prediction weights: ``sample_weight`` of shape ``(n,)`` (or broadcastable),
    broadcast over the prediction's trailing axes; ones when None."""
    if sample_weight is None:
        return np.ones(p.shape, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim < p.ndim:
        w = w.reshape(w.shape + (1,) * (p.ndim - w.ndim))
    return np.broadcast_to(w, p.shape)


def _counts_above(p, w, thresholds):
    """For each threshold ``t``: the sum of ``w`` over predictions ``p > t`` (1-D arrays)."""
    order = np.argsort(p, kind="stable")
    cum = np.concatenate(([0.0], np.cumsum(w[order])))
    return cum[-1] - cum[np.searchsorted(p[order], thresholds, side="right")]


def _keep_top_k(p, k):
    """``p`` with every value outside its row's ``k`` largest set to Keras's -1e10 (ties: the
    lower index first, as ``top_k``)."""
    keep = np.argsort(-p, axis=-1, kind="stable")[..., :k]
    out = np.full(p.shape, _NEG_INF)
    np.put_along_axis(out, keep, np.take_along_axis(p, keep, -1), -1)
    return out


def _thresholds(thresholds, default):
    values = [default] if thresholds is None else (
        [thresholds] if np.ndim(thresholds) == 0 else list(thresholds))
    if thresholds is not None and any(not 0 <= float(t) <= 1 for t in values):
        raise ValueError(f"thresholds must be in [0, 1]; got thresholds={thresholds!r}.")
    return np.array(values, dtype=np.float64)


class _ConfusionMetric(Metric):
    """Weighted true/false positive/negative counts per threshold, accumulated over updates.
    Labels count as positive when nonzero; a prediction is positive when ``> threshold``."""

    top_k = class_id = None
    _from_logits = False
    _state_names = ("true_positives", "false_positives", "true_negatives", "false_negatives")

    def reset_state(self):
        n = len(self.thresholds)
        self.true_positives, self.false_positives = np.zeros(n), np.zeros(n)
        self.true_negatives, self.false_negatives = np.zeros(n), np.zeros(n)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y, p = _same_rank(np.asarray(y_true), np.asarray(y_pred))
        if self._from_logits:
            p = 1.0 / (1.0 + np.exp(-p))
        w = _weights_like(sample_weight, p)
        if self.top_k is not None:
            p = _keep_top_k(p, self.top_k)
        if self.class_id is not None:
            y, p, w = y[..., self.class_id], p[..., self.class_id], w[..., self.class_id]
        pos = (y != 0).reshape(-1)
        p, w = p.reshape(-1), w.reshape(-1)
        self._accumulate(p, np.where(pos, w, 0.0), np.where(pos, 0.0, w))

    def _update(self, y_true, y_pred, sample_weight=None):
        self.update_state(y_true, y_pred, sample_weight)

    def _accumulate(self, p, w_pos, w_neg):
        # Compared in float32, as Keras's float32 metric variables do (ties at a threshold).
        p, t = p.astype(np.float32), self.thresholds.astype(np.float32)
        tp = _counts_above(p, w_pos, t)
        fp = _counts_above(p, w_neg, t)
        self.true_positives += tp
        self.false_positives += fp
        self.false_negatives += w_pos.sum() - tp
        self.true_negatives += w_neg.sum() - fp

    def _single(self, values):
        values = [float(v) for v in values]
        return values[0] if len(values) == 1 else values

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={self.result()!r}>"


class Precision(_ConfusionMetric):
    """``tp / (tp + fp)`` (0 when nothing is predicted positive), Keras 3.

    Args:
        thresholds: a float or a list in [0, 1] (default 0.5); a list gives a list of results.
        top_k: only each row's ``k`` highest predictions can be positive.
        class_id: only this class (last axis index) counts.
        name: default "precision".
    """

    _default_name = "precision"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        self.init_thresholds, self.top_k, self.class_id = thresholds, top_k, class_id
        self.thresholds = _thresholds(thresholds, 0.5 if top_k is None else _NEG_INF)
        super().__init__(name)

    def result(self):
        den = self.true_positives + self.false_positives
        return self._single(np.divide(self.true_positives, den, out=np.zeros_like(den),
                                      where=den != 0))

    def get_config(self):
        return {"name": self.name, "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Recall(Precision):
    """``tp / (tp + fn)`` (0 without positive labels); arguments as :class:`Precision`;
    default name "recall"."""

    _default_name = "recall"

    def result(self):
        den = self.true_positives + self.false_negatives
        return self._single(np.divide(self.true_positives, den, out=np.zeros_like(den),
                                      where=den != 0))


class AUC(_ConfusionMetric):
    """Area under the ROC (or precision-recall) curve, Keras 3's approximation: counts at
    ``num_thresholds`` (200) thresholds evenly spaced in [0, 1] (the ends moved out by 1e-7),
    then a Riemann sum with ``summation_method`` "interpolation" (trapezoids; for PR, Davis &
    Goadrich's interpolation), "minoring" or "majoring". Predictions are clipped to [0, 1]
    (``from_logits=True``: a sigmoid first) and every label and prediction counts as one
    binary decision (``multi_label=False``).

    Raises:
        ValueError: an unknown curve or summation method, num_thresholds < 2, multi_label.
    """

    _default_name = "auc"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        if str(curve).upper() not in ("ROC", "PR"):
            raise ValueError(f"AUC: curve must be 'ROC' or 'PR'; got curve={curve!r}.")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"AUC: summation_method must be 'interpolation', 'minoring' or "
                             f"'majoring'; got summation_method={summation_method!r}.")
        if multi_label or num_labels is not None or label_weights is not None:
            raise ValueError("AUC: multi_label, num_labels and label_weights are not supported.")
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            n = len(inner) + 2
            even = np.allclose(inner, np.arange(1, n - 1) / (n - 1), rtol=0, atol=_EPSILON)
        else:
            if num_thresholds <= 1:
                raise ValueError(f"AUC: num_thresholds must be > 1; got {num_thresholds!r}.")
            n = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)]
            even = True
        self.num_thresholds, self._even = n, even
        self.thresholds = np.array([0.0 - _EPSILON] + inner + [1.0 + _EPSILON])
        self.curve, self.summation_method = str(curve).upper(), summation_method
        self._from_logits = bool(from_logits)
        super().__init__(name)

    def _accumulate(self, p, w_pos, w_neg):
        if not self._even:
            return super()._accumulate(p, w_pos, w_neg)
        # Keras's bucketing for evenly spaced thresholds, in float32 as Keras computes it.
        n = self.num_thresholds
        p32 = np.clip(p.astype(np.float32), 0, 1)
        bucket = np.maximum(np.ceil(p32 * np.float32(n - 1)) - 1, 0).astype(np.int64)
        tp = np.cumsum(np.bincount(bucket, w_pos, minlength=n)[::-1])[::-1]
        fp = np.cumsum(np.bincount(bucket, w_neg, minlength=n)[::-1])[::-1]
        self.true_positives += tp
        self.false_positives += fp
        self.false_negatives += w_pos.sum() - tp
        self.true_negatives += w_neg.sum() - fp

    def result(self):
        tp, fp, tn, fn = (self.true_positives, self.false_positives, self.true_negatives,
                          self.false_negatives)
        if self.curve == "PR" and self.summation_method == "interpolation":
            return _interpolated_pr_auc(tp, fp, fn)
        recall = _div0(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _div0(fp, fp + tn), recall
        else:
            x, y = recall, _div0(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))

    def get_config(self):
        cfg = {"name": self.name, "num_thresholds": self.num_thresholds, "curve": self.curve,
               "summation_method": self.summation_method, "from_logits": self._from_logits}
        if self._init_from_thresholds:
            cfg["thresholds"] = [float(t) for t in self.thresholds[1:-1]]
        return cfg


def _div0(a, b):
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def _interpolated_pr_auc(tp, fp, fn):
    """Keras's closed-form interpolation of the PR curve between thresholds (Davis & Goadrich
    2006): precision varies as ``(tp_a + slope * (p - p_a)) / p`` within each interval."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _div0(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = np.where(both, _div0(p[:-1], np.maximum(p[1:], 0)), 1.0)
    safe_log = np.log(np.where(ratio > 0, ratio, 1.0))
    area = _div0(slope * (dtp + intercept * safe_log), np.maximum(tp[1:] + fn[1:], 0))
    return float(np.sum(area))


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
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "precision": Precision, "recall": Recall, "auc": AUC,
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
