"""The training half of a model: compile / fit / evaluate / predict / train_on_batch, the
flat weight packing and saving, written once for every model class (Keras 3's
``Trainer``). Its one subclass is :class:`cconv.Model` (:mod:`cconv.models.functional`),
the base of every model (:class:`cconv.Sequential` included), which provides the members
below.

What a subclass provides:

``layers`` (property)
    Every layer once, in weight order (``get_weights`` / ``set_weights`` follow it).
``_ensure_built(x_shape=None)``
    Build the model if needed (``x_shape``: one sample's shape, for a model without a
    declared input). A built model has ``built = True``, ``_input_shape`` and
    ``_output_shape`` (one sample's shapes, tuples of ints) and ``dtype`` (``np.dtype``).
``_forward(x, training, logits=False)``
    The model's output for the batch ``x``; with ``logits=True`` the output layer stops
    before its activation (``layer.forward_logits``), for the fused softmax/sigmoid loss.
``_backward(dy, logits=False)``
    Back-propagate ``dy = dL/d(output)`` (or ``dL/d(logits)`` with ``logits=True``) in
    reverse order of the last ``_forward(..., training=True)``, leaving each trainable
    layer's gradients in ``layer.grads``; no return value.
``_setup_fusion()``
    Called once the model is compiled and its data checked, before ``fit``, ``evaluate``
    and ``train_on_batch`` run steps: sets ``_fused``, whether ``_forward(..., logits=True)``
    stops before an output activation that the loss fuses (``loss.fused_activation``, the
    loss's ``fused_value_and_grad``), or False to never fuse.
``_require_backward()``
    Called by ``fit`` and ``train_on_batch`` before anything runs: raises when a layer that
    training must differentiate cannot be (a Keras-style custom layer without ``backward``),
    so no forward pass, moving statistic or callback has run when it refuses.
``get_config()`` / ``from_config(config)`` (classmethod)
    The architecture as JSON-able data, for :mod:`cconv.saving`.

Scale-out: the ``distribution`` protocol
    ``model.distribution`` is None (one process, the default) or an object with the methods
    below, which ``fit`` and ``evaluate`` call at fixed points, so that one loop serves one
    process and many (:class:`cconv.distributed.DistributedModel` sets its MPI
    implementation for the length of its own ``fit``/``evaluate``; Keras 3's counterpart is
    ``keras.distribution``). Every process runs the same calls in the same order, so a
    distribution may communicate (collectively) in any of them. What a process prints and
    which callbacks it runs are ``fit``'s own arguments (``verbose``, ``callbacks``), chosen
    by the caller per process.

    ``distribute_data(x, y, batch_size, shuffle, sample_weight, training)``
        The data adapter (:mod:`cconv.trainers.epoch_iterator`) over this process's part of prepared
        arrays (``y`` and ``sample_weight`` may be None): fit's training data
        (``training=True``; its steps must be the same on every process, and a batch may be
        empty) or data to evaluate (evaluate, fit's validation). Generators and sequences
        are refused (TypeError) while a distribution is set.
    ``on_train_begin()`` / ``on_test_begin()``
        In ``fit`` (before the callbacks' ``on_train_begin``) / ``evaluate``, once the data
        is checked and the model built: e.g. give every process the same weights.
    ``on_epoch_begin(metrics)``
        At each epoch's start, ``metrics`` (the metric objects) just reset.
    ``reduce_step(gradients, loss, samples, metrics) -> (loss, samples)``
        In every training step, after forward, backward and the metric updates on this
        process's batch of ``samples`` samples (0: forward and backward skipped), before the
        regularizer and the optimizer. ``gradients`` is the flat gradient array (the mean
        over this process's batch; zeros for 0 samples), to be replaced IN PLACE by the
        gradient of the step's global batch; ``loss`` is this batch's mean loss (0.0 for 0
        samples); ``metrics`` must hold the global state on return (their ``variables``,
        see :mod:`cconv.metrics`). Returns the global batch's mean loss and sample count.
        Then every process adds the regularizer's gradient and applies the optimizer alike.
        (``train_on_batch`` calls it too, with no ``on_epoch_begin`` before it.)
    ``on_epoch_end()``
        After each epoch's last step, before its logs and validation: e.g. average the
        state that trains without gradients (BatchNormalization's moving statistics).
    ``should_stop(stop_training) -> bool``
        After the callbacks' ``on_epoch_end``, with this process's ``stop_training``:
        whether every process stops now (True sets ``stop_training``). Without a
        distribution ``fit`` also stops after the batch that set it.
    ``on_train_end()``
        After the last epoch, before the callbacks' ``on_train_end``.
    ``reduce_evaluation(loss_sum, samples, metrics) -> (loss_sum, samples)``
        At the end of each evaluation (``evaluate``, fit's validation): this process's sum
        of per-batch mean losses times batch sizes and its sample count; returns the global
        ones, ``metrics`` then holding the global state (the ``on_test_batch_end`` logs
        before it are this process's running values).

Speed notes: all trainable weights live in one flat array (each layer's weights are views
into it) and all gradients in another, so the optimizer step is a few NumPy calls; inputs
are converted to the model dtype once per ``fit``/``predict`` call, not per batch.
"""

import inspect
import math
import numbers
import os
import time
import warnings
from typing import List, Optional, Sequence, Union

import numpy as np

from .. import autograd
from .. import callbacks as _callbacks
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from .. import registry as _registry
from .. import saving as _saving
from .._ext.parallel import capped_threads, get_num_threads
from .._typing import ArrayLike, Config
from .._validation import check_int, is_int
from ..layers import base as _layers_base
from .epoch_iterator import (
    ArrayDataAdapter,
    EpochIterator,
    GeneratorDataAdapter,
    SequenceDataAdapter,
    check_batch_size,
    data_kind,
)
from .load_guard import LoadGuard

__all__ = ["Trainer", "shape_str", "DISTRIBUTION_METHODS"]

#: The methods of the ``distribution`` protocol (see the module docstring).
DISTRIBUTION_METHODS = ("distribute_data", "on_train_begin", "on_test_begin", "on_epoch_begin",
                        "reduce_step", "on_epoch_end", "should_stop", "on_train_end",
                        "reduce_evaluation")


def _metric_config(metric):
    """A compiled metric as JSON: a name as given, a metric object serialised (its class and
    settings, so ``MeanAbsoluteError(name="x")`` comes back as itself), else its name."""
    if isinstance(metric, str):
        return metric
    if isinstance(metric, _metrics.Metric):
        return _metrics.serialize(metric)
    return getattr(metric, "name", getattr(metric, "__name__", repr(metric)))


def shape_str(shape):
    """``(None, 28, 28, 1)``-style text for a shape with an optional None."""
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return "(" + inner + (",)" if len(shape) == 1 else ")")


def _logs(loss, metrics):
    logs = {"loss": loss}
    for m in metrics:
        logs[m.name] = m.result()
    return logs


class FunctionMetric(_metrics.Metric):
    """A metric given as a plain function ``fn(y_true, y_pred)`` (of ``cconv.ops`` or NumPy)
    returning per-sample values (or one value per batch): their running mean, weighted by
    ``sample_weight`` as every cconv metric (Keras's ``MeanMetricWrapper``)."""

    _default_name = "custom_metric"

    def __init__(self, fn, name=None):
        self.fn = fn
        super().__init__(name or getattr(fn, "__name__", None) or self._default_name)

    def _values(self, y_true, y_pred):
        return np.atleast_1d(np.asarray(autograd.value_of(self.fn(y_true, y_pred)),
                                        dtype=np.float64))


def _function_metrics(metrics):
    """compile's ``metrics`` with each plain function wrapped in a :class:`FunctionMetric`
    (lists, lists of lists and dicts item by item)."""
    if isinstance(metrics, (list, tuple)):
        return type(metrics)(_function_metrics(m) for m in metrics)
    if isinstance(metrics, dict) and "class_name" not in metrics:
        return {k: _function_metrics(v) for k, v in metrics.items()}
    if (callable(metrics) and not isinstance(metrics, (type, _metrics.Metric))
            and getattr(metrics, "__module__", None) != _metrics.__name__):
        return FunctionMetric(metrics)
    return metrics


def _metric_list(metrics):
    """``compile``'s metrics as a list, unknown names rejected early."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, _metrics.Metric)):
        metrics = [metrics]
    for m in metrics:
        _metrics.get(m)
    return list(metrics)


def _unclashed(name, taken):
    """A weighted metric's name: ``weighted_<name>`` when an unweighted metric has it
    (Keras's rule)."""
    return "weighted_" + name if name in taken else name


def _check_fraction(validation_split):
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real):
        raise TypeError(f"validation_split must be a float in [0, 1); got "
                        f"{validation_split!r}.")
    if not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be in [0, 1); got {validation_split}.")


def _check_class_weight(class_weight):
    if class_weight is None:
        return
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{class index: weight}}; got "
                        f"{type(class_weight).__name__}.")
    for k, v in class_weight.items():
        if not is_int(k):
            raise TypeError(f"class_weight keys must be int class indices; got {k!r}.")
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"class_weight[{k}] must be a number; got {v!r}.")


def _check_fit_args(epochs, initial_epoch, validation_split, validation_freq, steps_per_epoch,
                    validation_steps, class_weight):
    """fit's scalar arguments, checked before anything is converted or trained.

    Raises:
        TypeError / ValueError: naming the argument and its value.
    """
    epochs = check_int(epochs, "epochs", where="fit", minimum=0)
    initial_epoch = check_int(initial_epoch, "initial_epoch", where="fit", minimum=0)
    if initial_epoch > epochs:
        raise ValueError(f"fit: initial_epoch={initial_epoch} is greater than "
                         f"epochs={epochs} (epochs is the index of the last epoch + 1).")
    _check_fraction(validation_split)
    check_int(validation_freq, "validation_freq", where="fit")
    for name, v in (("steps_per_epoch", steps_per_epoch), ("validation_steps",
                                                           validation_steps)):
        if v is not None:
            check_int(v, name, where="fit")
    _check_class_weight(class_weight)


_STEP_OWNERS = {}     # (model class, hook) -> the user class defining it, or None


def _custom_step_owner(model, hook):
    """The name of the user class (outside cconv) that defines ``hook`` (``train_step``,
    ``test_step`` or ``predict_step``) for ``model``, or None (cconv's own loop runs).
    Answered once per class (``predict_on_batch`` asks on every call)."""
    if hook in vars(model):
        return type(model).__qualname__
    key = (type(model), hook)
    if key not in _STEP_OWNERS:
        owner = None
        for cls in type(model).__mro__:
            if hook in vars(cls):
                owner = None if cls.__module__.partition(".")[0] == "cconv" else \
                    cls.__qualname__
                break
        _STEP_OWNERS[key] = owner
    return _STEP_OWNERS[key]


def unpack_x_y_sample_weight(data):
    """``(x, y, sample_weight)`` from a step's ``data`` (``x``, ``(x,)``, ``(x, y)`` or
    ``(x, y, sample_weight)``; missing parts None), as ``keras.utils``'s function."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError(f"data must be x, (x,), (x, y) or (x, y, sample_weight); got a tuple "
                     f"of {len(data)} items.")


def _step_data(batch):
    """What a custom step gets for a batch: ``x`` alone when there are no labels, else
    ``(x, y)`` or ``(x, y, sample_weight)`` (Keras's forms)."""
    parts = tuple(b for b in batch if b is not None)
    return parts[0] if len(parts) == 1 else parts


def _batch_size(batch):
    x = batch[0]
    return int(np.shape(x[0] if isinstance(x, (list, tuple)) else x)[0])


def _float_logs(logs, hook):
    """A step's returned logs as ``{name: float}``.

    Raises:
        TypeError: ``hook`` returned something other than a dict.
    """
    if not isinstance(logs, dict):
        raise TypeError(f"{hook}() must return a dict of logs ({{name: value}}, Keras's "
                        f"contract); got {type(logs).__name__}.")
    out = {}
    for k, v in logs.items():
        v = autograd.value_of(v)
        out[k] = float(np.asarray(v)) if np.size(v) == 1 else v
    return out


class TapeLoss(_losses.Loss):
    """A loss whose gradient comes from the tape: a plain function ``fn(y_true, y_pred)`` of
    ``cconv.ops`` (or NumPy on tensors) returning per-sample losses (or a scalar), or a
    :class:`cconv.losses.Loss` subclass that defines only ``call``. The batch loss is the
    mean of what it returns (Keras's reduction); ``y_true`` arrives as given (a float
    array)."""

    _default_name = "custom_loss"

    def __init__(self, fn, name=None):
        super().__init__(name or getattr(fn, "__name__", None) or self._default_name)
        self.fn = fn

    def call(self, y_true, y_pred):
        return np.asarray(autograd.value_of(self.fn(y_true, y_pred)))

    def prepare_targets(self, y, output_shape, dtype=np.float32):
        y = np.asarray(y)
        return y.astype(dtype) if y.dtype.kind in "biuf" else y

    def _value_and_grad(self, y_true, y_pred):
        p = autograd.variable(y_pred)
        with autograd.paused():
            loss = autograd.mean(self.fn(y_true, p))
        if not autograd.is_tensor(loss):
            raise TypeError(f"Loss {self.name!r}: the function returned a "
                            f"{type(loss).__name__} not computed from y_pred on the tape; "
                            f"compute it with cconv.ops (or NumPy ufuncs) on y_pred.")
        grads = autograd.backprop(loss) if loss.requires_grad else {}
        g = grads.get(id(p))
        g = np.zeros_like(y_pred) if g is None else np.asarray(g, dtype=y_pred.dtype)
        return float(loss.value), g


def _tape_losses(loss):
    """compile's ``loss`` with each plain function (or ``Loss`` subclass defining only
    ``call``) wrapped in a :class:`TapeLoss`; names, known losses and None unchanged."""
    if isinstance(loss, (list, tuple)):
        return type(loss)(_tape_losses(v) for v in loss)
    if isinstance(loss, dict) and "class_name" not in loss:
        return {k: _tape_losses(v) for k, v in loss.items()}
    if isinstance(loss, _losses.Loss):
        has_grad = any("_value_and_grad" in vars(c) or "value_and_grad" in vars(c)
                       for c in type(loss).__mro__ if c is not _losses.Loss)
        return loss if has_grad else TapeLoss(loss.call, loss.name)
    if (callable(loss) and not isinstance(loss, type)
            and getattr(loss, "__module__", None) != _losses.__name__):
        return TapeLoss(loss)
    name = loss.get("class_name") if isinstance(loss, dict) else loss
    if isinstance(name, str):
        # a saved function loss comes back by its name: a registered function or one in
        # load_model's custom_objects (Keras saves and finds function losses the same way)
        found = _registry.get_registered_object(name)
        if callable(found) and not isinstance(found, type):
            return TapeLoss(found, name)
    return loss


def _bad_loss_message(loss, epoch, step):
    return (f"The training loss became {loss} at epoch {epoch + 1}, step {step + 1} (batch "
            f"index {step}); the weights are no longer finite from there on. Check the "
            f"data, the labels and the learning rate (callbacks.TerminateOnNaN stops training "
            f"at the first such batch).")


class Trainer:
    """compile / fit / evaluate / predict for any model class (see the module docstring)."""

    _distribution = None      # see the ``distribution`` property
    # False: inference and training run layer by layer, not through a compiled plan
    # (Keras's name; see cconv.plan).
    jit_compile = True

    def __init__(self):
        self.compiled = False
        self.optimizer = self.loss = None
        self._metric_ids = []
        self.stop_training = False
        self.history = None
        self._packed = False

    @property
    def distribution(self):
        """The scale-out hook: None (one process, the default) or an object implementing the
        distribution protocol of this module's docstring, which ``fit`` and ``evaluate`` call
        at fixed points (:class:`cconv.distributed.DistributedModel` sets one for the length of
        its own ``fit`` and ``evaluate``). Keras 3's counterpart is ``keras.distribution``.

        Raises:
            TypeError: on assignment, an object that lacks a method of the protocol.
        """
        return self._distribution

    @distribution.setter
    def distribution(self, value):
        if value is not None:
            missing = [name for name in DISTRIBUTION_METHODS
                       if not callable(getattr(value, name, None))]
            if missing:
                raise TypeError(f"distribution must be None or an object with the methods "
                                f"{', '.join(DISTRIBUTION_METHODS)} (see "
                                f"cconv.trainers.trainer); got {type(value).__name__}, which "
                                f"lacks {', '.join(missing)}.")
        self._distribution = value

    # ----- weights -----------------------------------------------------------------------
    @property
    def weights(self) -> List[np.ndarray]:
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> List[np.ndarray]:
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> List[np.ndarray]:
        return [w for layer in self.layers for w in layer.non_trainable_weights]

    @property
    def trainable_variables(self) -> List[np.ndarray]:
        """Keras 3's name for the trainable weights: the arrays themselves (views of the
        model's flat weight buffer, made now if the model has none yet, so the same arrays
        serve every later step), for ``tape.gradient(loss, model.trainable_variables)`` and
        ``optimizer.apply(grads, model.trainable_variables)``, which updates them in place.
        (An inner model that packed its own buffer since is not undone here: the arrays are
        those the layers hold now, which is what the tape recorded.)"""
        self._ensure_built()
        if not self._packed:
            self._ensure_packed()
        return self.trainable_weights

    @property
    def losses(self) -> List[float]:
        """The values the layers gave ``add_loss`` in the model's last call (Keras's name);
        ``fit``, ``evaluate`` and :meth:`compute_loss` add them to the loss."""
        return [v for layer in self.layers for v in layer.losses]

    @property
    def non_trainable_variables(self) -> List[np.ndarray]:
        """Keras 3's name for :attr:`non_trainable_weights`."""
        return self.non_trainable_weights

    @property
    def variables(self) -> List[np.ndarray]:
        """Keras 3's name for :attr:`weights` (trainable first, layer by layer)."""
        self._ensure_built()
        if not self._packed:
            self._ensure_packed()
        return self.weights

    def get_weights(self) -> List[np.ndarray]:
        """Copies of every weight, layer by layer, in Keras's order and shapes."""
        self._ensure_built()
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Set every weight from a list in Keras's order (e.g. ``keras_model.get_weights()``).

        Raises:
            ValueError: wrong count or a shape mismatch (naming the layer and shapes).
        """
        self._ensure_built()
        weights = list(weights)
        layers = self.layers
        n = sum(len(layer.weights) for layer in layers)
        if len(weights) != n:
            raise ValueError(
                f"Model {self.name!r} has {n} weight arrays; set_weights got {len(weights)}.")
        chunks = []
        i = 0
        for layer in layers:
            k = len(layer.weights)
            chunks.append((layer, weights[i:i + k]))
            i += k
        for layer, ws in chunks:               # validate everything before changing anything
            for name, cur, w in zip(layer.weight_names, layer.weights, ws):
                if np.shape(w) != cur.shape:
                    raise ValueError(f"Layer {layer.name!r}: weight {name!r} has shape "
                                     f"{cur.shape}; got {np.shape(w)}.")
        for layer, ws in chunks:
            layer.set_weights(ws)

    def count_params(self) -> int:
        self._ensure_built()
        return int(sum(w.size for w in self.weights))

    def _pack(self):
        """Point every trainable weight and gradient at views of two flat arrays."""
        entries = []
        for layer in self.layers:
            if not layer.trainable:
                continue
            entries += [(layer, name, getattr(layer, name))
                        for name in layer.trainable_weight_names]
        total = sum(w.size for _, _, w in entries)
        wflat = np.empty(total, dtype=self.dtype)
        gflat = np.zeros(total, dtype=self.dtype)
        off = 0
        views = []
        segments = []      # (weight name, start, stop): each Keras variable in the flat array
        for layer, name, w in entries:
            n = w.size
            wv = wflat[off:off + n].reshape(w.shape)
            wv[...] = w
            gv = gflat[off:off + n].reshape(w.shape)
            setattr(layer, name, wv)
            layer.grads[name] = gv
            views.append((layer, name, wv))
            segments.append((name, off, off + n))
            off += n
        self._wflat, self._gflat, self._views = wflat, gflat, views
        self._segments = segments
        self._penalized = any(layer.weight_regularizers() for layer in self.layers)
        self._packed = True

    def _ensure_packed(self):
        if self._packed and all(getattr(lay, n) is v for lay, n, v in self._views):
            return
        self._pack()

    def get_optimizer_state(self):
        """``(iterations, {name: array})``: the optimizer's step count and slot arrays."""
        return self.optimizer.get_state()

    def set_optimizer_state(self, iterations: int, state: dict) -> None:
        """Restore :meth:`get_optimizer_state`'s result (the model must be compiled)."""
        self._ensure_packed()
        self.optimizer.set_state(iterations, state, (self._wflat,))

    # ----- compile --------------------------------------------------------------------------
    def compile(self, optimizer: Union[str, dict, _optimizers.Optimizer] = "rmsprop",
                loss=None, *, loss_weights=None, metrics=None, weighted_metrics=None,
                jit_compile: bool = True) -> None:
        """Configure training: the one ``compile`` of every model (Keras 3's arguments).

        Args:
            optimizer: name ("adam", "sgd", "rmsprop") or optimizer object.
            loss: name ("categorical_crossentropy", "sparse_categorical_crossentropy",
                "binary_crossentropy", "mse", "mae") or loss object; with several outputs a
                list (output order) or dict (output names), or one loss for every output.
            loss_weights: the total loss is ``sum(loss_weights[i] * loss_i)``: a list, a
                dict by output name, or (one output) a number.
            metrics: list of names ("accuracy", ...) or metric objects; as in Keras they
                ignore sample and class weights. With several outputs a flat list applies to
                every output, a list of lists or a dict gives each output its own; they are
                logged as ``<output>_<metric>``.
            weighted_metrics: metrics that use the sample (or class) weights: weighted means
                ``sum(value_i * w_i) / sum(w_i)``; a name that is also in ``metrics`` is
                logged as ``weighted_<name>`` (Keras's rule).
            jit_compile: False runs inference and training layer by layer instead of
                through a compiled plan (:mod:`cconv.plan`); results agree to float rounding.

        A model whose outputs are not known yet (a subclassed model before it is traced; a
        ``Sequential`` without an input shape given per-output arguments) checks the
        arguments' names now and applies them when it is built.

        Raises:
            ValueError: an unknown name (the message lists the known ones), or lists/dicts
                that do not match the outputs.
        """
        loss = _tape_losses(loss)
        metrics, weighted_metrics = _function_metrics(metrics), _function_metrics(weighted_metrics)
        if loss is None and (_custom_step_owner(self, "train_step") is not None
                             or _custom_step_owner(self, "compute_loss") is not None):
            # Keras: a model with its own train_step (or compute_loss) needs no compiled loss
            self.jit_compile = bool(jit_compile)
            self.optimizer = _optimizers.get(optimizer)
            self.loss = None
            self._metric_ids = _metric_list(metrics)
            self._weighted_metric_ids = _metric_list(weighted_metrics)
            self.compiled = True
            return
        args = dict(optimizer=optimizer, loss=loss, loss_weights=loss_weights,
                    metrics=metrics, weighted_metrics=weighted_metrics,
                    jit_compile=jit_compile)
        if self._compile_when_built(args):
            return
        self.jit_compile = bool(jit_compile)
        self.optimizer = _optimizers.get(optimizer)
        self._compile_outputs(loss, loss_weights, metrics, weighted_metrics)
        self.compiled = True

    def _compile_when_built(self, args):
        """Whether ``compile(**args)`` must wait for the model's outputs (then the model
        keeps ``args`` and applies them when built); a model class decides."""
        return False

    def _compile_outputs(self, loss, loss_weights, metrics, weighted_metrics):
        """The loss and metrics of a model with one output (a model with several outputs
        overrides this)."""
        if loss_weights is not None:
            raise ValueError("loss_weights needs a model that knows its outputs.")
        self.loss = _losses.get(loss)
        self._metric_ids = _metric_list(metrics)
        self._weighted_metric_ids = _metric_list(weighted_metrics)

    def get_compile_config(self) -> Optional[Config]:
        """The compile arguments as JSON-able data (None when not compiled, or compiled
        without a loss for a custom ``train_step``: such a model is saved uncompiled)."""
        if not self.compiled or self.loss is None:
            return None
        loss = self.loss
        if isinstance(loss, TapeLoss):      # a function: saved by name, as Keras does
            loss = {"class_name": loss.name, "config": {"name": loss.name}}
        else:
            loss = _losses.serialize(loss)
        config = {"optimizer": _optimizers.serialize(self.optimizer), "loss": loss,
                  "metrics": [_metric_config(m) for m in self._metric_ids]}
        weighted = getattr(self, "_weighted_metric_ids", [])
        if weighted:
            config["weighted_metrics"] = [_metric_config(m) for m in weighted]
        return config

    def compile_from_config(self, config: Config) -> None:
        """Compile from :meth:`get_compile_config`'s result."""
        def metrics(entries):
            return [_metrics.deserialize(m) if isinstance(m, dict) else m for m in entries]
        extra = ({"weighted_metrics": metrics(config["weighted_metrics"])}
                 if config.get("weighted_metrics") else {})
        loss = _tape_losses(config["loss"])        # a saved function loss, found by name
        if not isinstance(loss, TapeLoss):
            loss = _losses.deserialize(loss)
        self.compile(optimizer=_optimizers.deserialize(config["optimizer"]), loss=loss,
                     metrics=metrics(config["metrics"]), **extra)

    def _make_metrics(self, y_shape):
        """The metric objects, in their initial state: ``metrics`` (unweighted), then
        ``weighted_metrics`` (``weighted = True``; renamed ``weighted_<name>`` on a clash, as
        Keras). A metric object given to compile is reused, so it is reset here: every
        evaluate, validation run and train_on_batch starts from nothing, as in Keras (fit
        also resets them at each epoch)."""
        out_shape = (None,) + self._output_shape
        out = [_metrics.get(m, y_shape, out_shape) for m in self._metric_ids]
        names = {m.name for m in out}
        for mid in getattr(self, "_weighted_metric_ids", []):
            m = _metrics.get(mid, y_shape, out_shape)
            m.name = _unclashed(m.name, names)
            names.add(m.name)
            m.weighted = True
            out.append(m)
        for m in out:
            m.reset_state()
        return out

    @property
    def metrics_names(self) -> List[str]:
        names = ["loss"] + [m if isinstance(m, str) else m.name for m in self._metric_ids]
        for m in getattr(self, "_weighted_metric_ids", []):
            names.append(_unclashed(m if isinstance(m, str) else m.name, names))
        return names

    def _refuse_custom_steps(self, what, *hooks):
        """A loop that cannot run an overridden step (the distributed loop's ``_run_epochs``:
        ``fit``, ``evaluate``, ``predict`` and ``train_on_batch`` run them) refuses rather
        than ignore it.

        Raises:
            NotImplementedError: naming the class and the method.
        """
        for hook in hooks:
            owner = _custom_step_owner(self, hook)
            if owner is not None:
                raise NotImplementedError(
                    f"{owner} overrides {hook}(), which cconv does not run yet: {what}() "
                    f"would ignore it and use its built-in loop. Remove the override to use "
                    f"the built-in loop (the compiled loss, metrics and optimizer).")

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(
                f"You must compile the model before calling {what}(): "
                f"model.compile(optimizer=..., loss=..., metrics=[...])."
            )

    # ----- data checks ----------------------------------------------------------------------
    def _prepare_x(self, x, what="x"):
        if x is None:
            raise ValueError(f"{what} is required.")
        kind = data_kind(x, what)         # before any conversion: never np.asarray a stranger
        if kind != "array":
            raise TypeError(f"{what} must be an array here; got a {kind} "
                            f"({type(x).__name__}).")
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{what} must be numeric; got dtype {x.dtype}.")
        self._ensure_built(x.shape[1:] if x.ndim >= 1 else None)
        if x.ndim == len(self._input_shape) and x.shape == self._input_shape:
            raise ValueError(
                f"{what} has shape {x.shape}, the shape of ONE sample; the model expects a batch "
                f"of shape (batch,) + {self._input_shape}. Use x[None] for a single sample."
            )
        if x.shape[1:] != self._input_shape:
            raise ValueError(
                f"{what} has shape {x.shape} but the model expects inputs of shape "
                f"{shape_str((None,) + self._input_shape)}."
            )
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        return x

    def _prepare_xy(self, x, y, what=""):
        x = self._prepare_x(x, "x" + what)
        if y is None:
            raise ValueError(f"y{what} (the labels) is required.")
        if data_kind(y, "y" + what) != "array":
            raise TypeError(f"y{what} must be an array; got {type(y).__name__}.")
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"x{what} has {x.shape[0]} samples but y{what} has shape {y.shape}; "
                f"they need the same number of samples."
            )
        y_raw_shape = y.shape
        y = self.loss.prepare_targets(y, (None,) + self._output_shape, dtype=self.dtype)
        return x, y, y_raw_shape

    def _sample_weights(self, sample_weight, class_weight, y, n, what=""):
        """Per-sample weights ``(n,)`` in the model dtype from ``sample_weight`` or
        ``class_weight`` (Keras's rule: one-hot labels by their argmax, class ids rounded),
        or None.

        Raises:
            ValueError: both given, a wrong length, or labels without one class per sample.
            TypeError: weights that are not numbers.
        """
        if sample_weight is not None and class_weight is not None:
            raise ValueError("You cannot use class_weight and sample_weight at the same time.")
        if sample_weight is not None:
            if data_kind(sample_weight, "sample_weight" + what) != "array":
                raise TypeError(f"sample_weight{what} must be an array of numbers; got "
                                f"{type(sample_weight).__name__}.")
            w = np.asarray(sample_weight)
            if w.dtype.kind not in "fiub":
                raise TypeError(f"sample_weight{what} must be numeric; got dtype {w.dtype}.")
            if w.ndim == 2 and w.shape[1] == 1:
                w = w[:, 0]
            if w.shape != (n,):
                raise ValueError(f"sample_weight{what} must have shape ({n},), one weight per "
                                 f"sample; got shape {w.shape}.")
            return w.astype(self.dtype, copy=False)
        if class_weight is None:
            return None
        if getattr(self.loss, "losses", None) is not None:
            raise ValueError("class_weight is only supported for models with a single output.")
        ids = y
        if ids.ndim > 1:
            ids = ids.argmax(axis=-1) if ids.shape[-1] != 1 else ids[..., 0]
        if ids.ndim != 1:
            raise ValueError(f"class_weight needs one class per sample; the labels y{what} "
                             f"have shape {y.shape}.")
        ids = np.round(ids).astype(np.int64)
        w = np.ones(n, dtype=self.dtype)
        for c, v in class_weight.items():
            w[ids == c] = v
        return w

    def _stream_batch(self, raw, step, what, class_weight):
        """``((x, y[, w]), raw y shape)`` from one batch of a generator or sequence."""
        if not isinstance(raw, (tuple, list)) or len(raw) not in (2, 3):
            size = f" of length {len(raw)}" if isinstance(raw, (tuple, list)) else ""
            raise TypeError(f"{what}: every batch must be a tuple (x, y) or (x, y, "
                            f"sample_weight); batch {step} is a {type(raw).__name__}{size}.")
        where = f" of batch {step} of {what}"
        x, y, y_shape = self._prepare_xy(raw[0], raw[1], where)
        w = self._sample_weights(raw[2] if len(raw) == 3 else None, class_weight, y,
                                 x.shape[0], where)
        return ((x, y) if w is None else (x, y, w)), y_shape

    def _stream_x(self, raw, step, what):
        """``((x, None), None)`` from one batch of a generator or sequence for predict:
        ``x``, or a tuple whose first element is ``x``."""
        x = raw[0] if isinstance(raw, tuple) else raw
        return (self._prepare_x(x, f"x of batch {step} of {what}"), None), None

    def _stream_adapter(self, kind, data, what, prepare, steps=None, shuffle=False):
        """The adapter for a generator/iterator or a sequence; its first batch is read and
        checked now (building the model if needed), before anything trains."""
        name = f"{what} ({type(data).__name__})"
        if kind == "sequence":
            adapter = SequenceDataAdapter(data, prepare, name, shuffle)
        else:
            adapter = GeneratorDataAdapter(data, prepare, name, steps)
        adapter.peek()
        return adapter

    def _array_adapter(self, x, y, batch_size, shuffle=False, sample_weight=None,
                       training=False):
        """The adapter over prepared arrays for fit's training data (``training``) or an
        evaluation: all of them, or under a :attr:`distribution` this process's part."""
        dist = self._distribution
        if dist is None:
            return ArrayDataAdapter(x, y, batch_size, shuffle=shuffle, sample_weight=sample_weight)
        return dist.distribute_data(x, y, batch_size, shuffle, sample_weight, training)

    def _data(self, x, y, sample_weight, class_weight, batch_size, shuffle, steps, what="x",
              training=False):
        """``(adapter, raw y shape)`` for fit/evaluate data of any kind (arrays, a generator,
        a sequence), checked before anything trains.

        Raises:
            TypeError: a generator or sequence while a :attr:`distribution` is set (it splits
                arrays only).
        """
        if x is None:
            raise ValueError(f"{what} is required.")
        kind = data_kind(x, what)
        if kind == "array":
            x, y, y_shape = self._prepare_xy(x, y)
            w = self._sample_weights(sample_weight, class_weight, y, x.shape[0])
            return self._array_adapter(x, y, batch_size, shuffle, w, training), y_shape
        if self._distribution is not None:
            raise TypeError(f"{what} must be an array when the model has a distribution "
                            f"(each process takes its part of the arrays); got a {kind} "
                            f"(an object of type {type(x).__name__}).")
        for name, v in (("y", y), ("sample_weight", sample_weight)):
            if v is not None:
                raise ValueError(f"{name} must be None when {what} is a {kind} "
                                 f"({type(x).__name__}): its batches carry it.")
        adapter = self._stream_adapter(
            kind, x, what, lambda raw, i: self._stream_batch(raw, i, what, class_weight),
            steps, shuffle)
        return adapter, adapter.y_shape

    # ----- one step ---------------------------------------------------------------------------
    def _loss_grad(self, yb, out, sample_weight=None):
        """``(loss, dL/d(output or logits), prediction)`` for one batch; with weights Keras's
        ``sum(loss_i * w_i) / batch_size``, the gradient scaled sample by sample before
        ``_backward`` (so the layer path and the compiled plan both see it)."""
        fused = self._fused
        if sample_weight is None:
            if fused:
                return self.loss.fused_value_and_grad(yb, out)
            loss, g = self.loss.value_and_grad(yb, out)
            return loss, g, out
        if fused:
            per, g, pred = self.loss.fused_per_sample_and_grad(yb, out)
        else:
            (per, g), pred = self.loss.per_sample_and_grad(yb, out), out
        loss, g = _losses.apply_sample_weight(per, g, sample_weight)
        return loss, g, pred

    def _train_step(self, xb, yb, metrics, sample_weight=None):
        """One optimizer step on the batch; returns ``(loss, samples)``, global under a
        :attr:`distribution` (the step's mean loss with the regularizer penalty, and the
        step's sample count). Its threads come from the model's :class:`LoadGuard`, which
        times the step's own work (not the distribution's reduction, which waits for peers).

        A batch of 0 samples (under a distribution only: a process with no part of a short
        step) skips forward, backward and the metric updates; its gradients are zeros, and
        the step goes on as on every other process: the reduction, the regularizer's
        gradient and the optimizer.

        Raises:
            ValueError: a batch of 0 samples without a distribution.
        """
        dist = self._distribution
        n = xb.shape[0]
        if n == 0 and dist is None:
            raise ValueError(f"A training batch has 0 samples (x has shape {xb.shape}); a step "
                             f"needs at least one.")
        guard = self.__dict__.get("_load_guard")
        if guard is None:
            guard = self._load_guard = LoadGuard()
        requested = get_num_threads()
        used = guard.threads(n, requested) if n else requested
        with capped_threads(used):
            t0 = guard.clock()
            if n:
                out = self._forward(xb, True, logits=self._fused)
                loss, g, pred = self._loss_grad(yb, out, sample_weight)
                added = self.losses if autograd.in_use else None
                if added:                 # add_loss: their gradients come with backward
                    loss += sum(added)
                self._backward(g, logits=self._fused)
                for m in metrics:
                    m.update_state(yb, pred, sample_weight if m.weighted else None)
            else:                         # nothing to learn from here: a zero contribution
                self._gflat[...] = 0
                loss = 0.0
            seconds = guard.clock() - t0
            samples = n
            if dist is not None:          # e.g. cconv.distributed: allreduce the gradients
                loss, samples = dist.reduce_step(self._gflat, loss, n, metrics)
            t0 = guard.clock()
            if self._penalized:           # weight regularizers: into the loss and the gradients
                loss += self._regularization_loss_and_grads()
            if self._gflat.size:
                self._apply_optimizer()
            if n:
                guard.record(n, requested, used, seconds + guard.clock() - t0)
        return loss, samples

    def _regularization_loss_and_grads(self, grads=True):
        """The sum of the trainable weights' regularizer penalties (Keras adds it to the loss it
        reports, in training and evaluation); with ``grads``, adds each penalty's gradient into
        its weight's gradient (``layer.grads``)."""
        total = 0.0
        for layer in self.layers:
            if not layer.trainable:
                continue
            for name, reg in layer.weight_regularizers():
                w = getattr(layer, name)
                total += reg(w)
                if grads:
                    reg.add_gradient(w, layer.grads[name])
        return total

    def _apply_optimizer(self):
        """One optimizer step on the flat weights; the segments let it clip per variable and
        skip excluded variables' weight decay."""
        self.optimizer.apply((self._gflat,), (self._wflat,), segments=(self._segments,))

    def __call__(self, x: ArrayLike, training: bool = False) -> np.ndarray:
        """Apply the model to a batch; returns a NumPy array (no progress bar, no batching).
        Inside a :class:`cconv.GradientTape` (or on a tensor) returns a tensor recorded as
        one node of the tape (:meth:`_taped_call`)."""
        if autograd.in_use and autograd.wants_node(x):
            return self._taped_call(x, training)
        return self._forward(self._prepare_x(x), training)

    def _taped_call(self, x, training):
        """The model on the tape: the usual forward (compiled plan or layers) runs now, and
        the node's gradient is the usual backward, giving each trainable variable's
        gradient (``trainable_variables``). A later call of the model replaces what the
        backward needs, so differentiate before calling the model again (a RuntimeError says
        so otherwise). When ``x`` is a tensor that needs a gradient (another model's output)
        a chain model records its layers one by one instead, so the gradient reaches ``x``.

        Raises:
            NotImplementedError: several outputs, or a branching graph that ``x``'s gradient
                would have to cross.
        """
        if not autograd.is_tensor(x):
            x = autograd.watched(x) or x     # tape.watch(x): the gradient must reach x
        xb = self._prepare_x(autograd.value_of(x))
        if not self._packed:      # the arrays trainable_variables will give (never re-packed
            self._ensure_packed()  # here: an inner model's own buffer stays in use)
        if len(self._outputs) != 1:
            raise NotImplementedError(
                f"Model {self.name!r} has {len(self._outputs)} outputs: cconv's GradientTape "
                f"differentiates models with one output; call its layers on the tape, or train "
                f"it with fit.")
        if autograd.is_tensor(x) and x.requires_grad:
            # gradients must reach x (a GAN's generator under its discriminator): the layers
            # one by one on the tape, each a node with its native backward
            chain = self.chain_layers()
            if chain is None:
                raise NotImplementedError(
                    f"Model {self.name!r} was called on a tensor that needs a gradient (the "
                    f"output of another model or op on the tape); cconv sends gradients into "
                    f"a model's input only through a chain of layers (a Sequential-like "
                    f"graph), and this graph branches.")
            h = x if x.dtype == self.dtype else autograd.cast(x, self.dtype)
            for layer in chain:
                h = layer(h, training=training)
            return h
        run_training = bool(training) or not _layers_base.acts_differently_in_training(self)
        with autograd.paused():
            out = self._forward(xb, run_training)
        stamp = object()
        self._tape_stamp = stamp
        variables = self.trainable_weights
        names = [(layer, n) for layer in self.layers if layer.trainable
                 for n in layer.trainable_weight_names]

        def vjp(g):
            if not run_training:
                raise RuntimeError(
                    f"Model {self.name!r} was called with training=False inside the "
                    f"GradientTape, and a layer of it (Dropout, BatchNormalization, "
                    f"augmentation) computes differently in inference, so cconv cannot "
                    f"differentiate it; call it as model(x, training=True) to differentiate "
                    f"it.")
            if self.__dict__.get("_tape_stamp") is not stamp:
                raise RuntimeError(
                    f"Model {self.name!r} was called again inside the tape after the call "
                    f"being differentiated; take the gradient before calling it again (one "
                    f"training call per tape).")
            with autograd.paused():
                self._backward(np.ascontiguousarray(g, dtype=self.dtype))
            return (None,) + tuple(layer.grads[n].copy() for layer, n in names)
        return autograd.record(out, [x] + variables, vjp)

    # ----- Keras's step API: compute_loss, metrics, train_step, test_step -------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss of ``y_pred`` against ``y`` (Keras 3's signature): the batch mean
        (Keras's ``sum(loss_i * w_i) / batch_size`` with ``sample_weight``) plus the weight
        regularizers' penalties; a tensor on the tape when ``y_pred`` is one (its gradient is
        the loss's own), else a float.

        Raises:
            ValueError: no loss was compiled (a model with its own ``train_step`` may compile
                without one, and then computes its loss itself).
        """
        if self.loss is None:
            raise ValueError("No loss to compute: compile(loss=...) was given none. Pass a "
                             "loss to compile(), or compute the loss in train_step yourself.")
        pv = np.asarray(autograd.value_of(y_pred))
        yv = self.loss.prepare_targets(y, pv.shape, dtype=pv.dtype)
        if sample_weight is None:
            value, grad = self.loss.value_and_grad(yv, pv)
        else:
            per, grad = self.loss.per_sample_and_grad(yv, pv)
            value, grad = _losses.apply_sample_weight(per, np.array(grad), sample_weight)
        if self.__dict__.get("_penalized"):
            value += self._regularization_loss_and_grads(grads=False)
        value += sum(self.losses)
        if not autograd.is_tensor(y_pred):
            return float(value)
        penalties = [(getattr(layer, n), reg) for layer in self.layers if layer.trainable
                     for n, reg in layer.weight_regularizers()]

        def vjp(g):
            out = [g * grad]
            for w, reg in penalties:
                d = np.zeros_like(w)
                reg.add_gradient(w, d)
                out.append(g * d)
            return tuple(out)
        return autograd.record(np.asarray(value, dtype=pv.dtype),
                               [y_pred] + [w for w, _ in penalties], vjp)

    @property
    def metrics(self) -> list:
        """Keras's ``model.metrics``: the ``loss`` tracker (a :class:`cconv.metrics.Mean`)
        and the compiled metrics, once ``fit`` / ``evaluate`` with a custom step (or
        ``train_step`` / ``test_step``) made them; a model may override it with its own
        list (``fit`` resets them at each epoch, ``evaluate`` before it starts)."""
        return list(self.__dict__.get("_step_metrics", ()))

    def _step_metrics_for(self, y):
        """Make :attr:`metrics` for labels like ``y`` (None: the loss tracker only)."""
        tracker = _metrics.Mean(name="loss")
        compiled = []
        if y is not None and (self._metric_ids or getattr(self, "_weighted_metric_ids", [])):
            compiled = self._make_metrics(np.shape(y))
        self._step_metrics = [tracker] + compiled

    def compute_metrics(self, x, y, y_pred, sample_weight=None) -> dict:
        """Update the compiled metrics with a batch (Keras 3's signature) and return every
        metric's result, ``{name: float}`` (:meth:`get_metrics_result`)."""
        if "_step_metrics" not in self.__dict__:
            self._step_metrics_for(y)
        pv = np.asarray(autograd.value_of(y_pred))
        for m in self.__dict__["_step_metrics"][1:]:
            m.update_state(y, pv, sample_weight if m.weighted else None)
        return self.get_metrics_result()

    def get_metrics_result(self) -> dict:
        """``{metric name: result}`` for each of :attr:`metrics`."""
        return {m.name: float(m.result()) for m in self.metrics}

    def train_step(self, data) -> dict:
        """One training step on ``data`` (``x``, ``(x, y)`` or ``(x, y, sample_weight)``),
        Keras 3's default: the forward pass and :meth:`compute_loss` on a
        :class:`cconv.GradientTape`, ``optimizer.apply`` on :attr:`trainable_variables`,
        then the metrics; returns the logs. ``fit`` runs a subclass's override (its built-in
        loop, with the same arithmetic, runs when there is none)."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        with autograd.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)   # None: skipped
        return self._update_step_metrics(loss, x, y, y_pred, sample_weight)

    def test_step(self, data) -> dict:
        """One evaluation step (Keras 3's default): inference, :meth:`compute_loss`, the
        metrics; returns the logs. ``evaluate`` runs a subclass's override."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        if "training" in inspect.signature(self.compute_loss).parameters:
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
        else:                     # an override with Keras's older signature
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        return self._update_step_metrics(loss, x, y, y_pred, sample_weight)

    def _update_step_metrics(self, loss, x, y, y_pred, sample_weight):
        if "_step_metrics" not in self.__dict__:
            self._step_metrics_for(y)
        n = np.shape(autograd.value_of(x[0] if isinstance(x, (list, tuple)) else x))[0]
        self.__dict__["_step_metrics"][0].update_state(float(autograd.value_of(loss)),
                                                       sample_weight=n)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def _custom_data(self, x, y, sample_weight, batch_size, shuffle, steps, what):
        """The adapter for a loop of custom steps: arrays (``y`` and ``sample_weight``
        optional, not converted by the loss) or a generator / sequence, whose batches go to
        the step as they are."""
        if self._distribution is not None:
            raise NotImplementedError("A model with its own train_step / test_step runs on one "
                                      "process: unset model.distribution.")
        kind = data_kind(x, what)
        if kind != "array":
            return self._stream_adapter(
                kind, x, what, lambda raw, i: (tuple(raw) if isinstance(raw, (tuple, list))
                                               else (raw,), None), steps, shuffle)
        x = self._prepare_x(x, what)
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or y.shape[0] != x.shape[0]:
                raise ValueError(f"{what} has {x.shape[0]} samples but y has shape "
                                 f"{y.shape}; they need the same number of samples.")
        w = None if sample_weight is None else np.asarray(sample_weight)
        if w is not None and y is None:
            raise ValueError("sample_weight needs y.")
        return ArrayDataAdapter(x, y, batch_size, shuffle=shuffle, sample_weight=w, steps=steps)

    def _reset_step_metrics(self):
        for m in self.metrics:
            m.reset_state()

    def _fit_custom(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
                    validation_data, shuffle, class_weight, sample_weight, initial_epoch,
                    steps_per_epoch, validation_steps, validation_batch_size,
                    validation_freq):
        """fit for a model that overrides ``train_step`` (or ``test_step`` with validation):
        the epoch/batch loop calls ``self.train_step(batch)``; the logs are what it
        returns."""
        if class_weight is not None:
            raise NotImplementedError("class_weight with a custom train_step: weight the "
                                      "samples in train_step (sample_weight) instead.")
        batch_size = check_batch_size(batch_size)
        if validation_split:
            if data_kind(x, "x") != "array":
                raise ValueError("validation_split is only supported for arrays.")
            arrays = [np.asarray(x)] + [None if a is None else np.asarray(a)
                                        for a in (y, sample_weight)]
            (x, y, sample_weight), (xv, yv, wv) = self._split(arrays, validation_split)
            validation_data = (xv, yv) if wv is None else (xv, yv, wv)
        adapter = self._custom_data(x, y, sample_weight, batch_size, shuffle, steps_per_epoch,
                                    "x")
        self._step_metrics_for(None if y is None or data_kind(y, "y") != "array" else y)
        iterator = EpochIterator(adapter, initial_epoch, epochs, steps_per_epoch)
        history, progbar, cb = self._fit_callbacks(callbacks, verbose, epochs,
                                                   iterator.num_batches)
        val_bs = batch_size if validation_batch_size is None else validation_batch_size
        self.stop_training = False
        cb.on_train_begin()
        last = {}
        try:
            for epoch in iterator.epochs():
                self._reset_step_metrics()
                cb.on_epoch_begin(epoch)
                logs, seen = {}, 0
                for i, batch in iterator.enumerate_epoch():
                    cb.on_train_batch_begin(i)
                    logs = _float_logs(self.train_step(_step_data(batch)), "train_step")
                    seen += _batch_size(batch)
                    if progbar is not None:
                        progbar.update(i + 1, seen, logs)
                    cb.on_train_batch_end(i, logs)
                    if self.stop_training:
                        break
                logs = dict(logs)
                if validation_data is not None and (epoch + 1) % validation_freq == 0:
                    val = validation_data
                    vx = val[0] if isinstance(val, (tuple, list)) else val
                    vy = val[1] if isinstance(val, (tuple, list)) and len(val) > 1 else None
                    vw = val[2] if isinstance(val, (tuple, list)) and len(val) > 2 else None
                    vlogs = self._evaluate_custom(vx, vy, vw, val_bs, validation_steps, None)
                    logs.update({"val_" + k: v for k, v in vlogs.items()})
                cb.on_epoch_end(epoch, logs)
                last = logs
                if self.stop_training or iterator.ran_out:
                    break
        finally:
            iterator.close()
        cb.on_train_end(last)
        self.history = history
        history.model = self
        return history

    def _evaluate_custom(self, x, y, sample_weight, batch_size, steps, cb):
        """evaluate's loop for a model with its own ``test_step`` (or a custom
        ``train_step``'s validation): ``{name: value}`` from the last step's logs."""
        adapter = self._custom_data(x, y, sample_weight, check_batch_size(batch_size), False,
                                    steps, "x")
        self._step_metrics_for(y if y is not None and data_kind(y, "y") == "array" else None)
        self._reset_step_metrics()
        it = EpochIterator(adapter, 0, 1, steps)
        logs = {}
        try:
            if cb is not None:
                cb.on_test_begin()
            for i, batch in it.enumerate_epoch():
                if cb is not None:
                    cb.on_test_batch_begin(i)
                logs = _float_logs(self.test_step(_step_data(batch)), "test_step")
                if cb is not None:
                    cb.on_test_batch_end(i, logs)
            if cb is not None:
                cb.on_test_end(logs)
        finally:
            it.close()
        return logs

    def train_on_batch(self, x: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None,
                       class_weight: Optional[dict] = None) -> Union[float, List[float]]:
        """One optimizer step on ``(x, y)`` (optionally weighted); returns the loss (and
        metrics as a list)."""
        self._require_compiled("train_on_batch")
        if (_custom_step_owner(self, "train_step") is not None
                or _custom_step_owner(self, "compute_loss") is not None):
            self._step_metrics_for(y)
            data = (x, y) if sample_weight is None else (x, y, sample_weight)
            logs = _float_logs(self.train_step(data), "train_step")
            vals = list(logs.values())
            return vals if len(vals) > 1 else vals[0]
        _check_class_weight(class_weight)
        x, y, y_shape = self._prepare_xy(x, y)
        w = self._sample_weights(sample_weight, class_weight, y, x.shape[0])
        self._setup_fusion()
        self._require_backward()
        self._ensure_packed()
        metrics = self._make_metrics(y_shape)
        loss, _ = self._train_step(x, y, metrics, w)
        return [loss] + [m.result() for m in metrics] if metrics else loss

    # ----- fit --------------------------------------------------------------------------------
    def _fit_callbacks(self, callbacks, verbose, epochs, steps):
        """(History, progress bar or None, CallbackList) for a fit of ``epochs`` x ``steps``."""
        history = _callbacks.History()
        # after the user's callbacks, as Keras: it records what they add to the logs
        # (``learning_rate``)
        cbs = _callbacks.check_callbacks(callbacks, "fit") + [history]
        progbar = None
        if verbose:
            progbar = _callbacks.ProgbarLogger(verbose=verbose)
            cbs.append(progbar)
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        history.params = params
        return history, progbar, _callbacks.CallbackList(cbs, self, params)

    def _split(self, arrays, validation_split):
        """Keras's rule: the LAST ``validation_split`` of the samples, taken before shuffling,
        is the validation part; ``(training arrays, validation arrays)`` (None stays None)."""
        n = arrays[0].shape[0]
        split = int(math.floor(n * (1.0 - validation_split)))
        if split == 0 or split == n:
            raise ValueError(f"validation_split={validation_split} leaves an empty training or "
                             f"validation set with {n} samples.")
        return ([None if a is None else a[:split] for a in arrays],
                [None if a is None else a[split:] for a in arrays])

    def _fit_data(self, x, y, sample_weight, class_weight, batch_size, shuffle, steps,
                  validation_split):
        """``(adapter, y shape, validation part or None)``; arrays lose their validation part
        (``validation_split``; sample weights are split with them, class weights apply to the
        training part only, as Keras)."""
        kind = "array" if x is None else data_kind(x, "x")
        if kind != "array" or not validation_split:
            adapter, y_shape = self._data(x, y, sample_weight, class_weight, batch_size,
                                          shuffle, steps, training=True)
            if kind != "array" and validation_split:
                raise ValueError(f"validation_split is only supported for arrays; x is a "
                                 f"{kind} ({type(x).__name__}). Pass validation_data instead.")
            return adapter, y_shape, None
        x, y, y_shape = self._prepare_xy(x, y)
        w = self._sample_weights(sample_weight, None, y, x.shape[0])
        (x, y, w), (xv, yv, wv) = self._split([x, y, w], validation_split)
        if class_weight is not None:
            w = self._sample_weights(None, class_weight, y, x.shape[0])
        val = self._array_adapter(xv, yv, batch_size, sample_weight=wv), y_shape
        return self._array_adapter(x, y, batch_size, shuffle, w, training=True), y_shape, val

    def _validation_data(self, validation_data, batch_size, steps):
        """``(adapter, y shape)`` for ``validation_data``: ``(x_val, y_val)``,
        ``(x_val, y_val, sample_weight_val)``, a generator or a sequence."""
        if isinstance(validation_data, (tuple, list)):
            if len(validation_data) not in (2, 3):
                raise ValueError(f"validation_data must be a tuple (x_val, y_val) or (x_val, "
                                 f"y_val, sample_weight_val); got {len(validation_data)} items.")
            xv, yv = validation_data[0], validation_data[1]
            wv = validation_data[2] if len(validation_data) == 3 else None
            if data_kind(xv, "x_val") != "array":
                raise TypeError(f"x_val in validation_data must be an array; got "
                                f"{type(xv).__name__} (pass a generator or sequence itself as "
                                f"validation_data).")
            xv, yv, y_shape = self._prepare_xy(xv, yv, what="_val")
            wv = self._sample_weights(wv, None, yv, xv.shape[0], "_val")
            return self._array_adapter(xv, yv, batch_size, sample_weight=wv), y_shape
        kind = data_kind(validation_data, "validation_data")
        if kind == "array":
            raise ValueError("validation_data must be a tuple (x_val, y_val), a generator or a "
                             "sequence; got an array alone.")
        return self._data(validation_data, None, None, None, batch_size, False, steps,
                          "validation_data")

    def _run_epochs(self, iterator, metrics, cb, progbar, step, validate=None,
                    validation_freq=1):
        """The epoch/batch loop of :meth:`fit`.

        ``step(batch, metrics) -> (loss, samples)`` trains on one batch; ``validate()`` returns
        ``[loss, *metrics]`` on the validation set. A :attr:`distribution` gets
        ``on_epoch_begin(metrics)``, ``on_epoch_end()`` (before the epoch's logs are made) and
        ``should_stop(stop_training)`` (after the callbacks' ``on_epoch_end``); without one,
        ``stop_training`` is also checked after every batch. A callback may set
        ``model._initial_epoch`` in
        ``on_train_begin`` (``BackupAndRestore``) to resume at that epoch. The first loss that
        is NaN or infinite gives one ``RuntimeWarning`` naming the epoch and step. Returns the
        last epoch's logs (``{}`` when no epoch ran), for ``on_train_end`` as Keras.
        """
        self._refuse_custom_steps("fit", "train_step")
        dist = self._distribution
        batch_hooks = cb.wants_batch_begin or cb.wants_batch_end
        resume = self.__dict__.pop("_initial_epoch", None)
        if resume is not None:
            iterator.initial_epoch = int(resume)
        warned = False
        last = {}
        try:
            for epoch in iterator.epochs():
                for m in metrics:
                    m.reset_state()
                if dist is not None:
                    dist.on_epoch_begin(metrics)
                cb.on_epoch_begin(epoch)
                loss_sum = 0.0
                seen = steps = 0
                for i, batch in iterator.enumerate_epoch():
                    if batch_hooks:
                        cb.on_train_batch_begin(i)
                    loss, nb = step(batch, metrics)
                    if not warned and not math.isfinite(loss):
                        warned = True
                        warnings.warn(_bad_loss_message(loss, epoch, i), RuntimeWarning,
                                      stacklevel=3)
                    loss_sum += loss * nb
                    seen += nb
                    steps += 1
                    if progbar is not None or batch_hooks:
                        logs = _logs(loss_sum / seen, metrics)
                        if progbar is not None:
                            progbar.update(i + 1, seen, logs)
                        if batch_hooks:
                            cb.on_train_batch_end(i, logs)
                    if dist is None and self.stop_training:
                        break
                if steps == 0 and iterator.ran_out:
                    break                           # no data left for this epoch
                if dist is not None:
                    dist.on_epoch_end()
                logs = _logs(loss_sum / max(seen, 1), metrics)
                if validate is not None and (epoch + 1) % validation_freq == 0:
                    for k, v in zip(self.metrics_names, validate()):
                        logs["val_" + k] = v
                cb.on_epoch_end(epoch, logs)
                last = logs
                if dist is not None and dist.should_stop(bool(self.stop_training)):
                    self.stop_training = True       # agreed: every process stops here
                if self.stop_training or iterator.ran_out:
                    break
        finally:
            iterator.close()
        return last

    def _fit_step(self, batch, metrics):
        w = batch[2] if len(batch) == 3 else None
        return self._train_step(batch[0], batch[1], metrics, w)

    def fit(self, x=None, y=None, batch_size: Optional[int] = None, epochs: int = 1,
            verbose: Union[str, int] = "auto",
            callbacks: Optional[Sequence[_callbacks.Callback]] = None,
            validation_split: float = 0.0, validation_data=None, shuffle: bool = True,
            class_weight: Optional[dict] = None, sample_weight: Optional[ArrayLike] = None,
            initial_epoch: int = 0, steps_per_epoch: Optional[int] = None,
            validation_steps: Optional[int] = None,
            validation_batch_size: Optional[int] = None,
            validation_freq: int = 1) -> _callbacks.History:
        """Train for ``epochs`` passes over the data (Keras 3's arguments, in Keras's order).

        Args:
            x: inputs ``(n,) + input_shape``; or a generator/iterator, or a sequence
                (``__len__`` and ``__getitem__``, like Keras's ``PyDataset``), yielding
                batches ``(x, y)`` or ``(x, y, sample_weight)`` (then ``y`` and
                ``sample_weight`` are None). Streams are read one batch ahead on a background
                thread. y: labels for the loss (one-hot, class ids, ...).
            batch_size: default 32 (arrays only; a stream's batches are its own).
            epochs: number of epochs (ending index, with ``initial_epoch``).
            verbose: "auto"/1 progress bar, 2 one line per epoch, 0 silent.
            callbacks: list of :class:`cconv.callbacks.Callback`.
            validation_split: fraction in [0, 1) of the arrays, taken from the END before
                shuffling, to evaluate on after each epoch (Keras's rule).
            validation_data: ``(x_val, y_val)``, ``(x_val, y_val, sample_weight_val)``, a
                generator or a sequence; overrides validation_split.
            shuffle: reshuffle the training samples (a sequence's batch order) each epoch
                (``np.random`` state).
            class_weight: ``{class index: weight}``, turned into per-sample weights from the
                labels (one-hot: their argmax; class ids: rounded), as Keras.
            sample_weight: one weight per sample, ``(n,)``. With weights the loss is Keras's
                ``sum(loss_i * w_i) / batch_size``; only weighted_metrics use the weights.
            steps_per_epoch: batches per epoch (default: the whole data; a generator runs
                until exhausted); later epochs continue where the last one stopped.
            validation_steps: batches per validation run (default: all of it).
            validation_freq: validate after every ``validation_freq``-th epoch.

        Returns:
            :class:`cconv.callbacks.History`; ``history.history`` maps "loss", metric names
            and "val_*" to per-epoch lists.

        Raises:
            RuntimeError: not compiled. TypeError / ValueError: a bad argument (named in the
            message), data that is not an array, generator or sequence, or input or label
            shapes that do not fit the model or the loss; all raised before any weight
            changes, except for a stream's later batches.
        """
        self._require_compiled("fit")
        verbose = 1 if verbose == "auto" else verbose
        _check_fit_args(epochs, initial_epoch, validation_split, validation_freq,
                        steps_per_epoch, validation_steps, class_weight)
        validating = validation_data is not None or validation_split > 0
        if (_custom_step_owner(self, "train_step") is not None
                or _custom_step_owner(self, "compute_loss") is not None
                or validating and _custom_step_owner(self, "test_step") is not None):
            return self._fit_custom(x, y, batch_size, epochs, verbose, callbacks,
                                    validation_split, validation_data, shuffle, class_weight,
                                    sample_weight, initial_epoch, steps_per_epoch,
                                    validation_steps, validation_batch_size, validation_freq)
        batch_size = check_batch_size(batch_size)
        val_bs = check_batch_size(batch_size if validation_batch_size is None
                                  else validation_batch_size, "validation_batch_size")
        adapter, y_shape, val = self._fit_data(x, y, sample_weight, class_weight, batch_size,
                                               shuffle, steps_per_epoch, validation_split)
        if adapter.num_samples == 0:
            raise ValueError("fit got an empty dataset (0 samples).")
        if validation_data is not None:
            val = self._validation_data(validation_data, val_bs, validation_steps)
        self._setup_fusion()
        self._require_backward()
        self._ensure_packed()
        metrics = self._make_metrics(y_shape)
        iterator = EpochIterator(adapter, initial_epoch, epochs, steps_per_epoch)
        history, progbar, cb = self._fit_callbacks(callbacks, verbose, epochs,
                                                   iterator.num_batches)
        val_it = None if val is None else EpochIterator(val[0], 0, 1, validation_steps)
        validate = None if val is None else (
            lambda: self._evaluate_iterator(val_it, val[1], "validation_data", cb))
        self.stop_training = False
        dist = self._distribution
        if dist is not None:
            dist.on_train_begin()
        cb.on_train_begin()
        try:
            logs = self._run_epochs(iterator, metrics, cb, progbar, self._fit_step, validate,
                                    validation_freq)
        finally:
            if val_it is not None:
                val_it.close()
        if dist is not None:
            dist.on_train_end()
        cb.on_train_end(logs)
        self.history = history
        history.model = self
        return history

    # ----- evaluate / predict -------------------------------------------------------------------
    def _eval_batch(self, batch, metrics):
        """The loss of one batch ``(x, y[, w])`` in inference mode; ``metrics`` are updated."""
        xb, yb = batch[0], batch[1]
        w = batch[2] if len(batch) == 3 else None
        fused = self._fused
        out = self._forward(xb, False, logits=fused)
        if fused:
            loss, _, pred = self._loss_grad(yb, out, w)
        else:
            pred = out
            per = self.loss.call(yb, out)
            loss = float(np.mean(per)) if w is None else _losses.weighted_mean(per, w)
        for m in metrics:
            m.update_state(yb, pred, w if m.weighted else None)
        added = self.losses if autograd.in_use else None
        return loss + sum(added) if added else loss

    def _evaluate_iterator(self, iterator, y_shape, what="x", cb=None):
        """``[loss, *metrics]`` over one epoch of ``iterator`` (an :class:`EpochIterator`), as
        Keras's evaluate: metrics reset, and a new pass from the first batch (a generator goes
        on where it stopped). ``cb`` (a :class:`cconv.callbacks.CallbackList` or None) gets
        the ``on_test_*`` hooks; batch logs hold the running loss and metrics (of this
        process's part under a :attr:`distribution`, whose ``reduce_evaluation`` makes the
        results global)."""
        metrics = self._make_metrics(y_shape)
        iterator.close()
        self._ensure_packed()
        penalty = self._regularization_loss_and_grads(grads=False) if self._penalized else 0.0
        begin = cb is not None and cb.wants("on_test_batch_begin")
        end = cb is not None and cb.wants("on_test_batch_end")
        if cb is not None:
            cb.on_test_begin()
        loss_sum, n = 0.0, 0
        for i, batch in iterator.enumerate_epoch():
            if begin:
                cb.on_test_batch_begin(i)
            nb = batch[0].shape[0]
            loss_sum += self._eval_batch(batch, metrics) * nb
            n += nb
            if end:
                cb.on_test_batch_end(i, _logs(loss_sum / n + penalty, metrics))
        if n == 0 and iterator.num_batches != 0 and iterator.adapter.num_samples != 0:
            raise ValueError(f"{what} ran out of data: no batch left to evaluate (a generator "
                             f"without validation_steps/steps is used up by its first pass; "
                             f"use a sequence, or a generator that repeats with steps).")
        if self._distribution is not None:
            loss_sum, n = self._distribution.reduce_evaluation(loss_sum, n, metrics)
        vals = [loss_sum / max(n, 1) + penalty] + [m.result() for m in metrics]
        if cb is not None:
            cb.on_test_end(dict(zip(self.metrics_names, vals)))
        return vals

    def evaluate(self, x=None, y=None, batch_size: Optional[int] = None,
                 verbose: Union[str, int] = "auto", *,
                 sample_weight: Optional[ArrayLike] = None, steps: Optional[int] = None,
                 callbacks: Optional[Sequence[_callbacks.Callback]] = None,
                 return_dict: bool = False) -> Union[float, List[float], dict]:
        """Loss (and metrics) on ``(x, y)`` in inference mode, in batches of ``batch_size``
        (default 32); ``x`` may also be a generator or sequence of ``(x, y[, w])`` batches.
        Metrics start from nothing at every call (a metric object given to compile is reset).

        Args:
            sample_weight: one weight per sample (Keras's weighted loss and metrics).
            steps: evaluate only this many batches.
            callbacks: :class:`cconv.callbacks.Callback` objects; they get Keras's
                ``on_test_begin``, ``on_test_batch_begin/end`` (running loss and metrics) and
                ``on_test_end`` (the results).
            return_dict: return ``{"loss": ..., metric name: ...}``.

        Returns:
            ``[loss, *metrics]`` as floats, the loss alone when there are no metrics, or a
            dict with ``return_dict=True``.

        Raises:
            NotImplementedError: the model's class overrides ``test_step``.
        """
        self._require_compiled("evaluate")
        if (_custom_step_owner(self, "test_step") is not None
                or _custom_step_owner(self, "compute_loss") is not None):
            cbs = _callbacks.check_callbacks(callbacks, "evaluate")
            logs = self._evaluate_custom(x, y, sample_weight, batch_size, steps,
                                         self._loop_callbacks(cbs, 0, None))
            if return_dict:
                return logs
            vals = list(logs.values())
            return vals if len(vals) > 1 else vals[0]
        batch_size = check_batch_size(batch_size)
        if steps is not None:
            steps = check_int(steps, "steps")
        cbs = _callbacks.check_callbacks(callbacks, "evaluate")
        adapter, y_shape = self._data(x, y, sample_weight, None, batch_size, False, steps)
        self._setup_fusion()
        if self._distribution is not None:
            self._distribution.on_test_begin()
        t0 = time.perf_counter()
        it = EpochIterator(adapter, 0, 1, steps)
        cb = self._loop_callbacks(cbs, verbose, it.num_batches)
        try:
            vals = self._evaluate_iterator(it, y_shape, cb=cb)
        finally:
            it.close()
        if verbose not in (0, False):
            dt = time.perf_counter() - t0
            n = adapter.num_samples
            shown = it.num_batches if it.num_batches is not None else "?"
            parts = [f"{k}: {v:.4f}" for k, v in zip(self.metrics_names, vals)]
            rate = "" if n is None else f" - {n / max(dt, 1e-9):,.0f} images/s"
            print(f"{shown}/{shown} - {dt:.2f}s - " + " - ".join(parts) + rate)
        if return_dict:
            return dict(zip(self.metrics_names, vals))
        return vals if len(vals) > 1 else vals[0]

    def _loop_callbacks(self, callbacks, verbose, steps):
        """A :class:`cconv.callbacks.CallbackList` for evaluate/predict (Keras's params: one
        epoch of ``steps``), or None without callbacks."""
        if not callbacks:
            return None
        return _callbacks.CallbackList(callbacks, self,
                                       {"verbose": verbose, "epochs": 1, "steps": steps})

    def _predict_batch(self, i, xb, cb, out=None):
        """The outputs for the batch ``xb`` (written into ``out`` when given, else a fresh
        array), between ``cb``'s ``on_predict_batch_begin`` and ``on_predict_batch_end``
        (logs ``{"outputs": ...}``) when ``cb`` is not None."""
        if cb is not None:
            cb.on_predict_batch_begin(i)
        if out is None:
            out = np.array(self._forward(xb, False), copy=True)
        else:
            out[...] = self._forward(xb, False)
        if cb is not None:
            cb.on_predict_batch_end(i, {"outputs": out})
        return out

    def _predict_stream(self, x, kind, steps, cb):
        adapter = self._stream_adapter(kind, x, "x", lambda raw, i: self._stream_x(raw, i, "x"),
                                       steps)
        it = EpochIterator(adapter, 0, 1, steps)
        outs = []
        try:
            for i, batch in it.enumerate_epoch():
                outs.append(self._predict_batch(i, batch[0], cb))
        finally:
            it.close()
        if not outs:
            return np.empty((0,) + self._output_shape, dtype=self.dtype)
        return np.concatenate(outs, axis=0)

    def predict(self, x, batch_size: Optional[int] = None, verbose: Union[str, int] = "auto",
                *, steps: Optional[int] = None,
                callbacks: Optional[Sequence[_callbacks.Callback]] = None) -> np.ndarray:
        """Model outputs for ``x`` of shape ``(n,) + input_shape`` (or a generator/sequence of
        batches ``x`` or ``(x, ...)``), in batches of ``batch_size`` (default 32). Returns a
        fresh array ``(n,) + output_shape`` (``(0,) + output_shape`` for 0 samples).

        ``steps`` predicts only that many batches. ``verbose="auto"`` shows a progress line
        only when there is more than one batch (so a single-image predict costs
        microseconds); ``verbose=1`` always, 0 never. ``callbacks`` get Keras's
        ``on_predict_begin``, ``on_predict_batch_begin``, ``on_predict_batch_end`` (logs
        ``{"outputs": the batch's outputs}``) and ``on_predict_end``.

        A model class that overrides ``predict_step(data)`` gets each batch ``x`` there and
        its results (arrays) are concatenated along the batch axis (Keras's contract).
        """
        batch_size = check_batch_size(batch_size)
        if _custom_step_owner(self, "predict_step") is not None:
            return self._predict_custom(x, batch_size, steps)
        if steps is not None:
            steps = check_int(steps, "steps")
        cbs = _callbacks.check_callbacks(callbacks, "predict")
        kind = "array" if x is None else data_kind(x, "x")
        if kind != "array":
            cb = self._loop_callbacks(cbs, verbose, steps)
            if cb is not None:
                cb.on_predict_begin()
            out = self._predict_stream(x, kind, steps, cb)
            if cb is not None:
                cb.on_predict_end()
            return out
        x = self._prepare_x(x)
        if steps is not None:
            x = x[:steps * batch_size]
        adapter = ArrayDataAdapter(x, None, batch_size)
        n, steps = x.shape[0], adapter.num_batches
        cb = self._loop_callbacks(cbs, verbose, steps)
        if cb is not None:
            cb.on_predict_begin()
        show = verbose == 1 or verbose is True or (verbose == "auto" and steps > 1)
        t0 = time.perf_counter() if show else 0.0
        if n == 0:
            out = np.empty((0,) + self._output_shape, dtype=self.dtype)
            show = False
        elif steps <= 1 and cb is None:
            out = self._forward(x, False)
            if np.may_share_memory(out, x):
                out = out.copy()
        else:
            out = np.empty((n,) + self._output_shape, dtype=self.dtype)
            lo = 0
            for i, (xb, _) in enumerate(adapter.get_numpy_iterator()):
                self._predict_batch(i, xb, cb, out[lo:lo + xb.shape[0]])
                lo += xb.shape[0]
        if cb is not None:
            cb.on_predict_end()
        if show:
            dt = time.perf_counter() - t0
            print(f"{steps}/{steps} - {dt:.2f}s {dt / max(steps, 1) * 1e3:.0f}ms/step"
                  f" - {n / max(dt, 1e-9):,.0f} images/s")
        return out

    def predict_step(self, data):
        """One prediction step (Keras 3's default): the model on ``data``'s ``x`` in
        inference mode. ``predict`` runs a subclass's override."""
        x, _, _ = unpack_x_y_sample_weight(data)
        return self(x, training=False)

    def _predict_custom(self, x, batch_size, steps):
        """predict for a model that overrides ``predict_step``: its results per batch,
        concatenated (a list / dict of them item by item)."""
        adapter = self._custom_data(x, None, None, batch_size, False, steps, "x")
        it = EpochIterator(adapter, 0, 1, steps)
        outs = []
        try:
            for _, batch in it.enumerate_epoch():
                outs.append(autograd.value_of(self.predict_step(_step_data(batch))))
        finally:
            it.close()
        if not outs:
            raise ValueError("predict got no batch to predict.")
        first = outs[0]
        if isinstance(first, dict):
            return {k: np.concatenate([o[k] for o in outs]) for k in first}
        if isinstance(first, (list, tuple)):
            return [np.concatenate([o[i] for o in outs]) for i in range(len(first))]
        return np.concatenate([np.asarray(o) for o in outs])

    def predict_on_batch(self, x: ArrayLike) -> np.ndarray:
        """Outputs for one batch, no batching or printing (an array's whole batch in one
        forward pass: a served single image pays microseconds of Python)."""
        if _custom_step_owner(self, "predict_step") is not None:
            return np.asarray(autograd.value_of(self.predict_step(x)))
        x = self._prepare_x(x)
        if x.shape[0] == 0:
            return np.empty((0,) + self._output_shape, dtype=self.dtype)
        out = self._forward(x, False)
        return out.copy() if np.may_share_memory(out, x) else out

    # ----- saving ------------------------------------------------------------------------------
    def save(self, filepath: Union[str, os.PathLike]) -> None:
        """Save architecture, weights, compile settings and optimizer state to one file
        (a NumPy ``.npz`` archive; no TensorFlow needed). See :func:`cconv.load_model`."""
        _saving.save_model(self, filepath)

    def save_weights(self, filepath: Union[str, os.PathLike]) -> None:
        """Save the weights only (``.npz``), in ``get_weights()`` order."""
        _saving.save_weights(self, filepath)

    def load_weights(self, filepath: Union[str, os.PathLike]) -> None:
        """Load weights saved by :meth:`save_weights` or :meth:`save`."""
        _saving.load_weights(self, filepath)

    def export(self, filepath: Union[str, os.PathLike], format: str = "onnx",
               verbose: Optional[bool] = None, **kwargs) -> None:
        """Write the model for serving (Keras 3's name): ``format="onnx"``, the one format,
        needs ``pip install "cconv[onnx]"``; keyword arguments ``opset_version`` (default 17)
        and ``dtype``. See :mod:`cconv.saving.onnx_export`."""
        from ..saving import onnx_export
        onnx_export.export(self, filepath, format=format, verbose=verbose, **kwargs)

    def __getstate__(self):
        state = self.__dict__.copy()
        for k in ("_wflat", "_gflat", "_views", "_segments", "_distribution", "_plans",
                  "_step_runner", "_load_guard"):
            state.pop(k, None)
        state["_packed"] = False
        return state
