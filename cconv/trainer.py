"""The training half of a model: compile / fit / evaluate / predict / train_on_batch, the
flat weight packing and saving, written once for every model class (Keras 3's
``Trainer``). :class:`cconv.Sequential` is a :class:`Trainer`; a graph model reuses it by
providing the members below.

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
``_output_layer`` (property)
    The layer that produces the output (its activation may be fused with the loss), or
    None to never fuse.
``get_config()`` / ``from_config(config)`` (classmethod)
    The architecture as JSON-able data, for :mod:`cconv.saving`.

Speed notes: all trainable weights live in one flat array (each layer's weights are views
into it) and all gradients in another, so the optimizer step is a few NumPy calls; inputs
are converted to the model dtype once per ``fit``/``predict`` call, not per batch.
"""

import math
import os
import time
from typing import List, Optional, Sequence, Union

import numpy as np

from . import callbacks as _callbacks
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from . import saving as _saving
from ._typing import ArrayLike, Config
from .epoch_iterator import ArrayDataAdapter, EpochIterator, check_batch_size

__all__ = ["Trainer", "shape_str"]


def shape_str(shape):
    """``(None, 28, 28, 1)``-style text for a shape with an optional None."""
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return "(" + inner + (",)" if len(shape) == 1 else ")")


def _logs(loss, metrics):
    logs = {"loss": loss}
    for m in metrics:
        logs[m.name] = m.result()
    return logs


class Trainer:
    """compile / fit / evaluate / predict for any model class (see the module docstring)."""

    # Set (on the instance, only while it trains) by cconv.distributed.DistributedModel:
    # ``reducer(loss, batch_size, metrics) -> loss`` sums the gradients in ``_gflat`` (and the
    # loss and metric totals) over ranks. None: single process, no extra work per step.
    _step_reducer = None
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
            for name, cur, w in zip(layer._present_weight_names(), layer.weights, ws):
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
            for name in layer._trainable_names:
                w = getattr(layer, name, None)
                if w is not None:
                    entries.append((layer, name, w))
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
        self._penalized = any(layer._weight_regularizers() for layer in self.layers)
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
                loss: Union[str, dict, _losses.Loss, None] = None, *,
                metrics: Optional[Sequence[Union[str, _metrics.Metric]]] = None,
                jit_compile: bool = True) -> None:
        """Configure training.

        Args:
            optimizer: name ("adam", "sgd", "rmsprop") or optimizer object.
            loss: name ("categorical_crossentropy", "sparse_categorical_crossentropy",
                "binary_crossentropy", "mse", "mae") or loss object.
            metrics: list of names ("accuracy", ...) or metric objects (keyword only).
            jit_compile: False runs inference and training layer by layer instead of
                through a compiled plan (:mod:`cconv.plan`); results agree to float rounding.

        Raises:
            ValueError: an unknown name (the message lists the known ones).
        """
        self.jit_compile = bool(jit_compile)
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, _metrics.Metric)):
            metrics = [metrics]
        for m in metrics:          # fail early on unknown names
            _metrics.get(m)
        self._metric_ids = list(metrics)
        self.compiled = True

    def get_compile_config(self) -> Optional[Config]:
        """The compile arguments as JSON-able data (None when not compiled)."""
        if not self.compiled:
            return None
        return {"optimizer": _optimizers.serialize(self.optimizer),
                "loss": _losses.serialize(self.loss),
                "metrics": [m if isinstance(m, str) else m.name for m in self._metric_ids]}

    def compile_from_config(self, config: Config) -> None:
        """Compile from :meth:`get_compile_config`'s result."""
        self.compile(optimizer=_optimizers.deserialize(config["optimizer"]),
                     loss=_losses.deserialize(config["loss"]), metrics=config["metrics"])

    def _make_metrics(self, y_shape):
        out_shape = (None,) + self._output_shape
        return [_metrics.get(m, y_shape, out_shape) for m in self._metric_ids]

    @property
    def metrics_names(self) -> List[str]:
        return ["loss"] + [m if isinstance(m, str) else m.name for m in self._metric_ids]

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(
                f"You must compile the model before calling {what}(): "
                f"model.compile(optimizer=..., loss=..., metrics=[...])."
            )

    def _setup_fusion(self):
        last = self._output_layer
        act = getattr(last, "activation", None)
        self._fused = bool(
            self.loss.fused_activation is not None and act is not None
            and hasattr(last, "forward_logits") and act.name == self.loss.fused_activation
        )

    # ----- data checks ----------------------------------------------------------------------
    def _prepare_x(self, x, what="x"):
        if x is None:
            raise ValueError(f"{what} is required.")
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
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"x{what} has {x.shape[0]} samples but y{what} has shape {y.shape}; "
                f"they need the same number of samples."
            )
        y_raw_shape = y.shape
        y = self.loss.prepare_targets(y, (None,) + self._output_shape, dtype=self.dtype)
        return x, y, y_raw_shape

    # ----- one step ---------------------------------------------------------------------------
    def _train_step(self, xb, yb, metrics):
        fused = self._fused
        out = self._forward(xb, True, logits=fused)
        if fused:
            loss, g, pred = self.loss.fused_value_and_grad(yb, out)
        else:
            loss, g = self.loss.value_and_grad(yb, out)
            pred = out
        self._backward(g, logits=fused)
        for m in metrics:
            m._update(yb, pred)
        if self._step_reducer is not None:   # cconv.distributed: allreduce the gradients
            loss = self._step_reducer(loss, xb.shape[0], metrics)
        if self._penalized:               # weight regularizers: into the loss and the gradients
            loss += self._regularization_loss_and_grads()
        if self._gflat.size:
            self._apply_optimizer()
        return loss

    def _regularization_loss_and_grads(self, grads=True):
        """The sum of the trainable weights' regularizer penalties (Keras adds it to the loss it
        reports, in training and evaluation); with ``grads``, adds each penalty's gradient into
        its weight's gradient (``layer.grads``)."""
        total = 0.0
        for layer in self.layers:
            if not layer.trainable:
                continue
            for name, reg in layer._weight_regularizers():
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
        """Apply the model to a batch; returns a NumPy array (no progress bar, no batching)."""
        return self._forward(self._prepare_x(x), training)

    def train_on_batch(self, x: ArrayLike, y: ArrayLike) -> Union[float, List[float]]:
        """One optimizer step on ``(x, y)``; returns the loss (and metrics as a list)."""
        self._require_compiled("train_on_batch")
        x, y, y_shape = self._prepare_xy(x, y)
        self._setup_fusion()
        self._ensure_packed()
        metrics = self._make_metrics(y_shape)
        loss = self._train_step(x, y, metrics)
        return [loss] + [m.result() for m in metrics] if metrics else loss

    # ----- fit --------------------------------------------------------------------------------
    def _fit_callbacks(self, callbacks, verbose, epochs, steps):
        """(History, progress bar or None, CallbackList) for a fit of ``epochs`` x ``steps``."""
        history = _callbacks.History()
        # after the user's callbacks, as Keras: it records what they add to the logs
        # (``learning_rate``)
        cbs = list(callbacks or []) + [history]
        progbar = None
        if verbose:
            progbar = _callbacks.ProgbarLogger(verbose=verbose)
            cbs.append(progbar)
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        history.params = params
        return history, progbar, _callbacks.CallbackList(cbs, self, params)

    def _validation_set(self, x, y, y_shape, validation_split, validation_data):
        """``(x, y, (x_val, y_val, y_val_shape) or None)``: the training set without the
        validation part (Keras's rule: the LAST ``validation_split`` of the samples, taken
        before shuffling) and the prepared validation set."""
        if validation_data is None and validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be in (0, 1); got {validation_split}.")
            split = int(math.floor(x.shape[0] * (1.0 - validation_split)))
            if split == 0 or split == x.shape[0]:
                raise ValueError(
                    f"validation_split={validation_split} leaves an empty training or "
                    f"validation set with {x.shape[0]} samples."
                )
            return x[:split], y[:split], (x[split:], y[split:], y_shape)
        if validation_data is None:
            return x, y, None
        if len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (x_val, y_val).")
        return x, y, self._prepare_xy(validation_data[0], validation_data[1], what="_val")

    def _run_epochs(self, iterator, metrics, cb, progbar, step, validate=None,
                    validation_freq=1, hooks=None):
        """The epoch/batch loop shared by :meth:`fit` and ``DistributedModel.fit``.

        ``step(batch, metrics) -> (loss, samples)`` trains on one batch; ``validate()`` returns
        ``[loss, *metrics]`` on the validation set. ``hooks`` (optional) has
        ``on_epoch_begin()``, ``on_epoch_end()`` (before the epoch's logs are made) and
        ``stop_requested() -> bool`` (after each epoch; without hooks: ``stop_training``, also
        checked after every batch).
        """
        batch_hooks = cb.wants_batch_begin or cb.wants_batch_end
        for epoch in iterator.epochs():
            for m in metrics:
                m.reset_state()
            if hooks is not None:
                hooks.on_epoch_begin()
            cb.on_epoch_begin(epoch)
            loss_sum = 0.0
            seen = 0
            for i, batch in iterator.enumerate_epoch():
                if batch_hooks:
                    cb.on_train_batch_begin(i)
                loss, nb = step(batch, metrics)
                loss_sum += loss * nb
                seen += nb
                if progbar is not None or batch_hooks:
                    logs = _logs(loss_sum / seen, metrics)
                    if progbar is not None:
                        progbar.update(i + 1, seen, logs)
                    if batch_hooks:
                        cb.on_train_batch_end(i, logs)
                if hooks is None and self.stop_training:
                    break
            if hooks is not None:
                hooks.on_epoch_end()
            logs = _logs(loss_sum / max(seen, 1), metrics)
            if validate is not None and (epoch + 1) % validation_freq == 0:
                for k, v in zip(self.metrics_names, validate()):
                    logs["val_" + k] = v
            cb.on_epoch_end(epoch, logs)
            if hooks.stop_requested() if hooks is not None else self.stop_training:
                break

    def _fit_step(self, batch, metrics):
        xb, yb = batch
        return self._train_step(xb, yb, metrics), xb.shape[0]

    def fit(self, x: ArrayLike = None, y: ArrayLike = None, batch_size: Optional[int] = None,
            epochs: int = 1, verbose: Union[str, int] = "auto",
            callbacks: Optional[Sequence[_callbacks.Callback]] = None,
            validation_split: float = 0.0, validation_data: Optional[tuple] = None,
            shuffle: bool = True, initial_epoch: int = 0,
            validation_batch_size: Optional[int] = None,
            validation_freq: int = 1) -> _callbacks.History:
        """Train for ``epochs`` passes over ``(x, y)``.

        Args:
            x: inputs ``(n,) + input_shape``. y: labels for the loss (one-hot, class ids, ...).
            batch_size: default 32. epochs: number of epochs (ending index, with
                ``initial_epoch``).
            verbose: "auto"/1 progress bar, 2 one line per epoch, 0 silent.
            callbacks: list of :class:`cconv.callbacks.Callback`.
            validation_split: fraction of the data, taken from the END before shuffling, to
                evaluate on after each epoch (Keras's rule).
            validation_data: ``(x_val, y_val)``; overrides validation_split.
            shuffle: reshuffle the training samples each epoch (``np.random`` state).

        Returns:
            :class:`cconv.callbacks.History`; ``history.history`` maps "loss", metric names
            and "val_*" to per-epoch lists.

        Raises:
            RuntimeError: not compiled. ValueError: input or label shapes that do not fit
            the model or the loss, or a batch size below 1.
        """
        self._require_compiled("fit")
        verbose = 1 if verbose == "auto" else verbose
        batch_size = check_batch_size(batch_size)
        val_bs = check_batch_size(validation_batch_size or batch_size, "validation_batch_size")
        x, y, y_shape = self._prepare_xy(x, y)
        x, y, val = self._validation_set(x, y, y_shape, validation_split, validation_data)
        if x.shape[0] == 0:
            raise ValueError("fit got an empty dataset (0 samples).")
        self._setup_fusion()
        self._ensure_packed()
        metrics = self._make_metrics(y_shape)
        iterator = EpochIterator(ArrayDataAdapter(x, y, batch_size, shuffle=shuffle),
                                 initial_epoch, epochs)
        history, progbar, cb = self._fit_callbacks(callbacks, verbose, epochs,
                                                   iterator.num_batches)
        validate = None if val is None else (lambda: self._evaluate(*val, val_bs))
        self.stop_training = False
        cb.on_train_begin()
        self._run_epochs(iterator, metrics, cb, progbar, self._fit_step, validate,
                         validation_freq)
        cb.on_train_end()
        self.history = history
        history.model = self
        return history

    # ----- evaluate / predict -------------------------------------------------------------------
    def _loss_sum(self, x, y, metrics, batch_size):
        """Sum over ``(x, y)`` of each batch's mean loss times its size, in inference mode;
        ``metrics`` are updated on the way (the distributed evaluate reuses this)."""
        fused = self._fused
        loss_sum = 0.0
        for xb, yb in ArrayDataAdapter(x, y, batch_size).get_numpy_iterator():
            out = self._forward(xb, False, logits=fused)
            if fused:
                loss, _, pred = self.loss.fused_value_and_grad(yb, out)
            else:
                pred = out
                loss = float(np.mean(self.loss._per_sample(yb, out)))
            loss_sum += loss * xb.shape[0]
            for m in metrics:
                m._update(yb, pred)
        return loss_sum

    def _evaluate(self, x, y, y_shape, batch_size):
        metrics = self._make_metrics(y_shape)
        loss = self._loss_sum(x, y, metrics, batch_size) / max(x.shape[0], 1)
        self._ensure_packed()
        if self._penalized:
            loss += self._regularization_loss_and_grads(grads=False)
        return [loss] + [m.result() for m in metrics]

    def evaluate(self, x: ArrayLike = None, y: ArrayLike = None, batch_size: Optional[int] = None,
                 verbose: Union[str, int] = "auto") -> Union[float, List[float]]:
        """Loss (and metrics) on ``(x, y)`` in inference mode, in batches of ``batch_size``
        (default 32).

        Returns:
            ``[loss, *metrics]`` as floats, or the loss alone when there are no metrics.
        """
        self._require_compiled("evaluate")
        batch_size = check_batch_size(batch_size)
        x, y, y_shape = self._prepare_xy(x, y)
        self._setup_fusion()
        t0 = time.perf_counter()
        vals = self._evaluate(x, y, y_shape, batch_size)
        if verbose not in (0, False):
            dt = time.perf_counter() - t0
            steps = -(-x.shape[0] // batch_size)
            parts = [f"{k}: {v:.4f}" for k, v in zip(self.metrics_names, vals)]
            print(f"{steps}/{steps} - {dt:.2f}s - " + " - ".join(parts)
                  + f" - {x.shape[0] / max(dt, 1e-9):,.0f} images/s")
        return vals if len(vals) > 1 else vals[0]

    def predict(self, x: ArrayLike, batch_size: Optional[int] = None,
                verbose: Union[str, int] = "auto") -> np.ndarray:
        """Model outputs for ``x`` of shape ``(n,) + input_shape``, in batches of
        ``batch_size`` (default 32). Returns a fresh array ``(n,) + output_shape``.

        ``verbose="auto"`` shows a progress line only when there is more than one batch (so
        a single-image predict costs microseconds); ``verbose=1`` always, 0 never.
        """
        batch_size = check_batch_size(batch_size)
        x = self._prepare_x(x)
        adapter = ArrayDataAdapter(x, None, batch_size)
        n, steps = x.shape[0], adapter.num_batches
        show = verbose == 1 or verbose is True or (verbose == "auto" and steps > 1)
        t0 = time.perf_counter() if show else 0.0
        if steps <= 1:
            out = self._forward(x, False)
            if np.may_share_memory(out, x):
                out = out.copy()
        else:
            out = np.empty((n,) + self._output_shape, dtype=self.dtype)
            lo = 0
            for xb, _ in adapter.get_numpy_iterator():
                out[lo:lo + xb.shape[0]] = self._forward(xb, False)
                lo += xb.shape[0]
        if show:
            dt = time.perf_counter() - t0
            print(f"{steps}/{steps} - {dt:.2f}s {dt / max(steps, 1) * 1e3:.0f}ms/step"
                  f" - {n / max(dt, 1e-9):,.0f} images/s")
        return out

    def predict_on_batch(self, x: ArrayLike) -> np.ndarray:
        """Outputs for one batch, no batching or printing."""
        return self.predict(x, batch_size=max(len(x), 1), verbose=0)

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

    def __getstate__(self):
        state = self.__dict__.copy()
        for k in ("_wflat", "_gflat", "_views", "_segments", "_step_reducer", "_plans",
                  "_train_plan"):
            state.pop(k, None)
        state["_packed"] = False
        return state
