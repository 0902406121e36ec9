"""What ``compile`` makes of a model with several inputs or outputs: the packed-array
helpers, the per-output arguments, the total loss and the per-output metrics (Keras 3 keeps
the same parts in ``trainers/compile_utils.py``).

A model with several inputs or outputs presents them to the trainer as ONE flat array per
batch: each sample's arrays flattened and concatenated, in input/output order (:func:`pack`),
split again (:func:`unpack`) by the graph model, by :class:`MultiOutputLoss` and by
:class:`OutputMetric`.
"""

import numpy as np

from .. import losses as _losses

__all__ = ["as_list", "pack", "unpack", "by_name", "per_output_metrics", "MultiOutputLoss",
           "OutputMetric"]


def as_list(value):
    """``(list of values, their names or None)`` from one value, a list/tuple or a dict."""
    if isinstance(value, dict):
        return list(value.values()), list(value)
    if isinstance(value, (list, tuple)):
        return list(value), None
    return [value], None


def pack(arrays, n):
    """One ``(n, total)`` array: each array's samples flattened, side by side."""
    return np.concatenate([a.reshape(n, -1) for a in arrays], axis=1)


def unpack(flat, shapes):
    """Inverse of :func:`pack` for sample shapes ``shapes``; fresh contiguous arrays."""
    out, lo = [], 0
    for s in shapes:
        size = int(np.prod(s, dtype=np.int64))
        out.append(np.ascontiguousarray(flat[:, lo:lo + size]).reshape((flat.shape[0],) + s))
        lo += size
    return out


def by_name(value, names, what):
    """A per-output (or per-input) argument as a list in ``names`` order: a single value is
    repeated, a list must have one entry per name, a dict is looked up by name."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{what}: unknown names {unknown}; the model's are {names}.")
        return [value.get(n) for n in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{what}: got {len(value)} entries for {len(names)} "
                             f"({', '.join(names)}); give one per name or a dict.")
        return list(value)
    return [value] * len(names)


def per_output_metrics(metrics, names, what):
    """``compile``'s ``metrics`` (or ``weighted_metrics``) as one list per output: a flat
    list (or one metric) applies to every output; a list of lists (output order) or a dict
    (output names) gives each output its own."""
    if isinstance(metrics, (list, tuple)) and not any(isinstance(m, (list, tuple, dict))
                                                      for m in metrics):
        metrics = [list(metrics)] * len(names)
    return [[] if m is None else list(m) if isinstance(m, (list, tuple)) else [m]
            for m in by_name(metrics, names, what)]


class MultiOutputLoss(_losses.Loss):
    """``sum_i weight_i * loss_i(y_i, out_i)`` over a model's outputs, on packed arrays.

    ``y`` and ``out`` are ``(batch, total)`` arrays (see :func:`pack`); ``shapes`` are the
    outputs' sample shapes; an output whose loss is None gets a zero gradient.
    """

    _default_name = "loss"

    def __init__(self, losses, weights, names):
        super().__init__()
        self.losses, self.weights, self.names = losses, weights, names
        self.shapes = None

    def target_shape(self, i):
        shape = self.shapes[i]
        if self.losses[i] is None:
            return (0,)
        return shape[:-1] if self.losses[i].sparse else shape

    def split(self, y, out):
        ys = unpack(y, [self.target_shape(i) for i in range(len(self.shapes))])
        ys = [yi.astype(np.intp) if l is not None and l.sparse else yi
              for yi, l in zip(ys, self.losses)]
        return ys, unpack(out, self.shapes)

    def value_and_grad(self, y, out):
        ys, outs = self.split(y, out)
        total, grads = 0.0, []
        for loss, w, yi, oi in zip(self.losses, self.weights, ys, outs):
            if loss is None:
                grads.append(np.zeros_like(oi))
                continue
            value, g = loss.value_and_grad(yi, oi)
            total += w * value
            grads.append(g if w == 1 else g * g.dtype.type(w))
        return total, pack(grads, out.shape[0])

    def call(self, y, out):
        """Per-sample losses (Keras's name): ``sum_i weight_i * loss_i``, each output's
        loss averaged over its sample's values."""
        ys, outs = self.split(y, out)
        per = np.zeros(out.shape[0])
        for loss, w, yi, oi in zip(self.losses, self.weights, ys, outs):
            if loss is not None:
                per += w * loss.call(yi, oi).reshape(out.shape[0], -1).mean(axis=1)
        return per


class OutputMetric:
    """A metric of one output of a packed multi-output model, named ``<output>_<metric>``
    (just ``<metric>`` when the model has one output, as Keras names it); with ``metric=None``
    the mean of that output's (unweighted) loss, ``<output>_loss``."""

    def __init__(self, multi, index, metric):
        self.multi, self.index, self.metric = multi, index, metric
        suffix = "loss" if metric is None else metric.name
        one = len(multi.names) == 1 and metric is not None
        self.name = suffix if one else f"{multi.names[index]}_{suffix}"
        self.reset_state()

    def reset_state(self):
        self._total, self._count = 0.0, 0
        if self.metric is not None:
            self.metric.reset_state()

    @property
    def weighted(self):
        """Whether fit passes the sample weights (:attr:`cconv.metrics.Metric.weighted`): a
        per-output loss is weighted as the loss is; a metric as compiled."""
        return self.metric is None or self.metric.weighted

    def update_state(self, y, out, sample_weight=None):
        """Add a packed batch (Keras's name): this output's part of ``y`` and ``out``."""
        ys, outs = self.multi.split(y, out)
        yi, oi = ys[self.index], outs[self.index]
        if self.metric is not None:
            self.metric.update_state(yi, oi, sample_weight)
        elif self.multi.losses[self.index] is not None:
            per = self.multi.losses[self.index].call(yi, oi)
            per = per.reshape(oi.shape[0], -1).mean(axis=1)
            if sample_weight is not None:     # Keras: sum(loss * w) / batch size
                per = per * sample_weight
            self._total += float(per.sum(dtype=np.float64))
            self._count += oi.shape[0]

    def result(self):
        if self.metric is not None:
            return self.metric.result()
        return self._total / self._count if self._count else 0.0

    @property
    def variables(self):
        """The state as :attr:`cconv.metrics.Metric.variables` has it (float64 copies that
        add over parts of the data): this output's loss total and count, then the wrapped
        metric's variables."""
        own = [np.array(self._total, dtype=np.float64), np.array(self._count, dtype=np.float64)]
        return own + ([] if self.metric is None else self.metric.variables)

    def assign_variables(self, values):
        """Set the state from a list like :attr:`variables` (the wrapped metric checks its
        part first, so a wrong list changes nothing).

        Raises:
            ValueError: a wrong number of arrays, or arrays the wrapped metric refuses.
        """
        values = list(values)
        expected = 2 + (0 if self.metric is None else len(self.metric.variables))
        if len(values) != expected:
            raise ValueError(f"{self.name}: assign_variables needs {expected} arrays (like "
                             f"its variables); got {len(values)}.")
        if self.metric is not None:
            self.metric.assign_variables(values[2:])
        self._total, self._count = float(values[0]), float(values[1])
