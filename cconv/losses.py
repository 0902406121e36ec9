"""Losses with Keras 3 names, formulas and the "sum_over_batch_size" reduction.

A loss object is called like Keras's: ``loss(y_true, y_pred) -> float`` (the mean of the
per-sample losses). Training uses :meth:`Loss.value_and_grad`, which also returns
``dL/dy_pred``; when the model ends in the activation named by ``fused_activation``
(softmax for the cross-entropies, sigmoid for binary cross-entropy, with
``from_logits=False``) it calls :meth:`Loss.fused_value_and_grad` on the logits instead,
exactly as Keras does with the logits it keeps behind its softmax/sigmoid outputs.

Shapes: ``y_pred`` is ``(batch, ..., classes)``; ``y_true`` has the same shape, except for
``SparseCategoricalCrossentropy`` where it holds integer class ids of shape
``(batch, ...)`` or ``(batch, ..., 1)``.
"""

from typing import Optional, Tuple, Union

import numpy as np

from . import autograd as _autograd
from ._typing import ArrayLike, Config, DTypeLike
from .registry import Configurable, Registry

__all__ = [
    "Loss", "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "BinaryCrossentropy",
    "MeanSquaredError", "MeanAbsoluteError", "get", "serialize", "deserialize",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
    "mean_squared_error", "mean_absolute_error", "weighted_mean", "apply_sample_weight",
    "KLDivergence", "kl_divergence",
]

EPSILON = 1e-7   # keras.backend.epsilon()


def _shape(dims):
    return "(" + ", ".join(["batch"] + [str(d) for d in dims]) + ")"


def _mean(values):
    """The mean of all ``values`` (per-sample or per-pixel losses) as a float, accumulated in
    float64: the loss over a batch of images is a sum over batch x height x width."""
    return float(np.mean(values, dtype=np.float64))


def _logsumexp_softmax(z):
    """``(lse, p)`` along the last axis, computed once and stably."""
    m = z.max(axis=-1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=-1, keepdims=True)
    e /= s
    return m + np.log(s), e


class Loss(Configurable):
    """Base class. Subclasses implement :meth:`call` (per-sample losses, Keras's name) and
    ``_value_and_grad(y_true, y_pred)``."""

    fused_activation = None
    sparse = False

    def __init__(self, name: Optional[str] = None):
        self.name = name or self._default_name

    # ----- public API ------------------------------------------------------------------
    def __call__(self, y_true: ArrayLike, y_pred: ArrayLike) -> float:
        """Mean loss over the batch (float); a tensor on the tape for a ``cconv.autograd``
        tensor ``y_pred`` (its gradient: the loss's own)."""
        if _autograd.is_tensor(y_pred):
            return _autograd.loss_on_tape(self, y_true, y_pred)
        y_pred = np.asarray(y_pred)
        if not np.issubdtype(y_pred.dtype, np.floating):
            y_pred = y_pred.astype(np.float32)
        y_true = self.prepare_targets(y_true, y_pred.shape, dtype=y_pred.dtype)
        return _mean(self.call(y_true, y_pred))

    def call(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """The unreduced losses, as Keras's ``Loss.call``: one per sample (per pixel for a
        spatial output, shape ``y_pred.shape[:-1]``), ``y_true`` already passed through
        :meth:`prepare_targets`. ``evaluate`` and the per-output metrics of a multi-output
        model use them to weight samples."""
        raise NotImplementedError(f"{type(self).__name__} defines no call(y_true, y_pred).")

    def value_and_grad(self, y_true: np.ndarray,
                       y_pred: np.ndarray) -> Tuple[float, np.ndarray]:
        """``(mean loss, dL/dy_pred)``; ``y_true`` already passed through
        :meth:`prepare_targets`."""
        return self._value_and_grad(y_true, y_pred)

    def fused_value_and_grad(self, y_true: np.ndarray,
                             logits: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
        """``(mean loss, dL/dlogits, activation(logits))`` for a model ending in
        ``fused_activation``."""
        raise NotImplementedError

    def per_sample_and_grad(self, y_true: np.ndarray,
                            y_pred: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(per-sample losses, dL/dy_pred)`` of the unweighted mean (see
        :func:`apply_sample_weight`)."""
        _, grad = self.value_and_grad(y_true, y_pred)
        return self.call(y_true, y_pred), grad

    def prepare_targets(self, y: ArrayLike, output_shape: Tuple[Optional[int], ...],
                        dtype: DTypeLike = np.float32) -> np.ndarray:
        """Check ``y`` against the model output shape ``(batch, ...)`` and convert it
        once (float for dense targets, integer ids for sparse ones).

        Raises:
            ValueError: shapes that cannot match, naming both.
        """
        y = np.asarray(y)
        out = tuple(output_shape)
        if y.ndim == len(out) - 1 and out[-1] == 1:
            y = y.reshape(y.shape + (1,))
        if y.shape[1:] != out[1:] or (out[0] is not None and y.shape[0] != out[0]):
            raise ValueError(
                f"{self.name}: labels y have shape {y.shape} but the model output has shape "
                f"{_shape(out[1:])}; they must match"
                + (" (use sparse_categorical_crossentropy for integer class ids)."
                   if y.ndim == len(out) - 1 else ".")
            )
        return y if y.dtype == dtype else y.astype(dtype)

    def get_config(self) -> Config:
        return {"name": self.name}


class _CrossEntropy(Loss):
    """What the three cross-entropies share: ``from_logits``, optional label smoothing and
    the fused path. Subclasses define ``_from_logits(y, z) -> (per-sample loss, dL/dz,
    activation(z))`` and, for probability inputs, ``_prob_per_sample(y, p)`` and
    ``_prob_value_and_grad(y, p)``; ``_activation`` names the activation fused with the loss."""

    _activation = None
    _smoothing = False      # whether the loss takes label_smoothing

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0,
                 name: Optional[str] = None):
        super().__init__(name)
        self.from_logits = bool(from_logits)
        self.fused_activation = None if self.from_logits else self._activation
        if self._smoothing:
            self.label_smoothing = float(label_smoothing)
            if not 0 <= self.label_smoothing <= 1:
                raise ValueError(f"label_smoothing must be in [0, 1]; got {label_smoothing!r}.")

    def _smooth(self, y):
        """Label smoothing: ``y * (1 - ls) + ls / classes`` (2 classes for the binary loss)."""
        ls = self.label_smoothing
        if ls:
            y = y * y.dtype.type(1 - ls) + y.dtype.type(ls / self._smoothing_classes(y))
        return y

    def call(self, y, p):
        if self.from_logits:
            return self._from_logits(y, p)[0]
        return self._prob_per_sample(y, p)

    def _value_and_grad(self, y, p):
        if self.from_logits:
            per, grad, _ = self._from_logits(y, p)
            return _mean(per), grad
        return self._prob_value_and_grad(y, p)

    def fused_value_and_grad(self, y, z):
        per, grad, p = self._from_logits(y, z)
        return _mean(per), grad, p

    def fused_per_sample_and_grad(self, y, z):
        """``(per-sample losses, dL/dlogits of their mean, activation(logits))``."""
        per, grad, p = self._from_logits(y, z)
        return per.reshape(grad.shape[:-1]), grad, p

    def per_sample_and_grad(self, y, p):
        if self.from_logits:
            per, grad, _ = self._from_logits(y, p)
            return per.reshape(grad.shape[:-1]), grad
        return super().per_sample_and_grad(y, p)

    def get_config(self) -> Config:
        cfg = {"name": self.name, "from_logits": self.from_logits}
        if self._smoothing:
            cfg["label_smoothing"] = self.label_smoothing
        return cfg


class CategoricalCrossentropy(_CrossEntropy):
    """``-sum(y_true * log(y_pred))`` over the last axis, averaged over the batch.

    Args:
        from_logits: ``y_pred`` are logits (softmax applied inside, stably).
        label_smoothing: ``y_true * (1 - ls) + ls / classes``.
    With probabilities, ``y_pred`` is renormalised to sum to one and clipped to
    ``[1e-7, 1 - 1e-7]`` as Keras does.
    """

    _default_name = "categorical_crossentropy"
    _activation = "softmax"
    _smoothing = True

    def _smoothing_classes(self, y):
        return y.shape[-1]

    def _from_logits(self, y, z):
        y = self._smooth(y)
        lse, p = _logsumexp_softmax(z)
        ysum = y.sum(axis=-1)
        per = ysum * lse[..., 0] - (y * z).sum(axis=-1)
        grad = p * ysum[..., None] - y
        grad *= grad.dtype.type(1.0 / per.size)
        return per, grad, p

    def _prob_per_sample(self, y, p):
        y = self._smooth(y)
        q = np.clip(p / p.sum(axis=-1, keepdims=True), EPSILON, 1 - EPSILON)
        return -(y * np.log(q)).sum(axis=-1)

    def _prob_value_and_grad(self, y, p):
        y = self._smooth(y)
        s = p.sum(axis=-1, keepdims=True)
        q = p / s
        qc = np.clip(q, EPSILON, 1 - EPSILON)
        per = -(y * np.log(qc)).sum(axis=-1)
        w = -y / qc * ((q >= EPSILON) & (q <= 1 - EPSILON))
        grad = (w - (w * q).sum(axis=-1, keepdims=True)) / s
        grad *= grad.dtype.type(1.0 / per.size)
        return _mean(per), grad.astype(p.dtype, copy=False)


class SparseCategoricalCrossentropy(_CrossEntropy):
    """Categorical cross-entropy with integer class ids as targets.

    ``y_true``: ints in ``[0, classes)``, shape ``(batch, ...)`` or ``(batch, ..., 1)``.
    """

    _default_name = "sparse_categorical_crossentropy"
    _activation = "softmax"
    sparse = True

    def __init__(self, from_logits: bool = False, name: Optional[str] = None):
        super().__init__(from_logits, name=name)

    def prepare_targets(self, y, output_shape, dtype=None):
        y = np.asarray(y)
        out = tuple(output_shape)
        if y.ndim == len(out) and y.shape[-1] == 1:
            y = y.reshape(y.shape[:-1])
        if y.shape[1:] != out[1:-1] or (out[0] is not None and y.shape[0] != out[0]):
            raise ValueError(
                f"{self.name}: labels y have shape {y.shape} but the model output has shape "
                f"{_shape(out[1:])}; integer class ids of shape "
                f"{_shape(out[1:-1])} are needed"
                + (" (use categorical_crossentropy for one-hot labels)."
                   if y.shape[1:] == out[1:] else ".")
            )
        if not np.issubdtype(y.dtype, np.integer):
            yi = y.astype(np.int64)
            if not np.array_equal(yi, y):
                raise ValueError(
                    f"{self.name}: labels must be integer class ids; got non-integer values."
                )
            y = yi
        if y.size and (y.min() < 0 or y.max() >= out[-1]):
            raise ValueError(
                f"{self.name}: class ids must be in [0, {out[-1]}); got values from {y.min()} "
                f"to {y.max()}."
            )
        return y.astype(np.intp, copy=False)

    def _from_logits(self, y, z):
        c = z.shape[-1]
        z2 = z.reshape(-1, c)
        lse, p = _logsumexp_softmax(z2)
        idx = y.reshape(-1)
        rows = np.arange(idx.size)
        per = lse[:, 0] - z2[rows, idx]
        grad = p.copy()
        grad[rows, idx] -= 1
        grad *= grad.dtype.type(1.0 / idx.size)
        return per, grad.reshape(z.shape), p.reshape(z.shape)

    def _prob_per_sample(self, y, p):
        return self._from_logits(y, np.log(np.clip(p, EPSILON, 1 - EPSILON)))[0]

    def _prob_value_and_grad(self, y, p):
        pc = np.clip(p, EPSILON, 1 - EPSILON)
        per, gl, _ = self._from_logits(y, np.log(pc))
        grad = gl / pc * ((p >= EPSILON) & (p <= 1 - EPSILON))
        return _mean(per), grad.astype(p.dtype, copy=False)


class BinaryCrossentropy(_CrossEntropy):
    """``-(y log p + (1 - y) log(1 - p))`` averaged over the last axis then the batch;
    ``p`` clipped to ``[1e-7, 1 - 1e-7]`` unless ``from_logits``.

    Args:
        from_logits: ``y_pred`` are logits (stable sigmoid cross-entropy).
        label_smoothing: ``y_true * (1 - ls) + 0.5 * ls``.
    """

    _default_name = "binary_crossentropy"
    _activation = "sigmoid"
    _smoothing = True

    def _smoothing_classes(self, y):
        return 2

    def _from_logits(self, y, z):
        y = self._smooth(y)
        elem = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        e = np.exp(-np.abs(z))
        p = np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)
        grad = (p - y) * z.dtype.type(1.0 / z.size)
        return elem.mean(axis=-1), grad, p

    def _prob_per_sample(self, y, p):
        y = self._smooth(y)
        o = np.clip(p, EPSILON, 1 - EPSILON)
        return -(y * np.log(o) + (1 - y) * np.log(1 - o)).mean(axis=-1)

    def _prob_value_and_grad(self, y, p):
        per = self._prob_per_sample(y, p)
        y = self._smooth(y)
        o = np.clip(p, EPSILON, 1 - EPSILON)
        grad = -(y / o - (1 - y) / (1 - o)) * ((p >= EPSILON) & (p <= 1 - EPSILON)) / p.size
        return _mean(per), grad.astype(p.dtype, copy=False)


class _ElementwiseLoss(Loss):
    """``mean(f(y_true - y_pred))`` over the last axis, then the batch, for an even ``f``
    (``_f``); ``_grad(d)`` is the gradient of the batch mean with respect to ``y_pred`` from
    ``d = y_pred - y_true`` (a fresh array, shaped like ``y_pred``, that it may overwrite)."""

    def call(self, y, p):
        return self._f(y - p).mean(axis=-1)

    def _value_and_grad(self, y, p):
        d = p - y
        return _mean(self._f(d)), self._grad(d)


class MeanSquaredError(_ElementwiseLoss):
    """``mean((y_true - y_pred) ** 2)`` over the last axis, then the batch."""

    _default_name = "mean_squared_error"
    _f = staticmethod(np.square)

    @staticmethod
    def _grad(d):
        d *= d.dtype.type(2.0 / d.size)
        return d


class MeanAbsoluteError(_ElementwiseLoss):
    """``mean(|y_true - y_pred|)`` over the last axis, then the batch."""

    _default_name = "mean_absolute_error"
    _f = staticmethod(np.abs)

    @staticmethod
    def _grad(d):
        return np.sign(d) * d.dtype.type(1.0 / d.size)


class KLDivergence(Loss):
    """Kullback-Leibler divergence ``sum(y_true * log(y_true / y_pred))`` over the last axis,
    averaged over the batch; both clipped to ``[1e-7, 1]`` first, as Keras does (no gradient
    where ``y_pred`` is clipped)."""

    _default_name = "kl_divergence"

    @staticmethod
    def _clipped(y, p):
        eps = 1e-7
        return np.clip(y, eps, 1), np.clip(p, eps, 1)

    def call(self, y, p):
        yc, pc = self._clipped(y, p)
        return np.sum(yc * np.log(yc / pc), axis=-1)

    def _value_and_grad(self, y, p):
        yc, pc = self._clipped(y, p)
        per = np.sum(yc * np.log(yc / pc), axis=-1)
        inside = (p >= 1e-7) & (p <= 1)
        grad = np.where(inside, -yc / pc, 0) / max(per.size, 1)
        return _mean(per), grad.astype(p.dtype, copy=False)


def weighted_mean(per, sample_weight):
    """Keras 3's "sum_over_batch_size" reduction with per-sample weights:
    ``sum(loss_i * w_i) / loss.size`` (``per``: ``(batch, ...)``; each sample's weight applies to
    all its values)."""
    per = np.asarray(per).reshape(len(sample_weight), -1)
    w = np.asarray(sample_weight, dtype=np.float64)
    return float((per * w[:, None]).sum() / max(per.size, 1))


def apply_sample_weight(per, grad, sample_weight):
    """``(weighted loss, gradient)`` from :meth:`Loss.per_sample_and_grad`'s result: the loss
    by :func:`weighted_mean`, the gradient of the unweighted mean scaled sample by sample (in
    place), which is the gradient of the weighted loss."""
    w = np.asarray(sample_weight, dtype=grad.dtype)
    grad *= w.reshape(w.shape + (1,) * (grad.ndim - 1))
    return weighted_mean(per, sample_weight), grad


def _functional(cls, **fixed):
    def f(y_true, y_pred, **kwargs):
        loss = cls(**fixed, **kwargs)
        if _autograd.is_tensor(y_pred):
            return _autograd.loss_on_tape(loss, y_true, y_pred, per_sample=True)
        y_pred = np.asarray(y_pred)
        if not np.issubdtype(y_pred.dtype, np.floating):
            y_pred = y_pred.astype(np.float32)
        return loss.call(
            loss.prepare_targets(y_true, y_pred.shape, dtype=y_pred.dtype), y_pred
        )

    f.__name__ = cls._default_name
    f.__doc__ = (f"Per-sample {cls._default_name} (shape ``y_pred.shape[:-1]``); "
                 f"see :class:`{cls.__name__}`.")
    return f


categorical_crossentropy = _functional(CategoricalCrossentropy)
sparse_categorical_crossentropy = _functional(SparseCategoricalCrossentropy)
binary_crossentropy = _functional(BinaryCrossentropy)
mean_squared_error = _functional(MeanSquaredError)
mean_absolute_error = _functional(MeanAbsoluteError)
kl_divergence = _functional(KLDivergence)



def _from_name(cls, name):
    """A loss made from a name keeps the name given ("mse"), as Keras does."""
    loss = cls()
    if name in REGISTRY.names:
        loss.name = name
    return loss


# Names accepted by get() (besides every class name, case and underscores ignored).
REGISTRY = Registry("loss", Loss, {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "kl_divergence": KLDivergence, "kld": KLDivergence,
}, from_name=_from_name, plural="losses")
serialize, deserialize = REGISTRY.serialize, REGISTRY.deserialize


def get(identifier: Union[str, dict, Loss, type]) -> Loss:
    """Resolve a loss from a name ("categorical_crossentropy", "mse", ...), a class name,
    a :class:`Loss` or a config dict.

    Raises:
        ValueError: no loss, or an unknown name; the message lists the known ones.
    """
    if identifier is None:
        raise ValueError(f"A loss is required. Known losses: {REGISTRY.known()}.")
    return REGISTRY.get(identifier)
