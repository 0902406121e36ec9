"""``Sequential`` models: Keras's API (compile / fit / evaluate / predict / summary /
weights / save) over cconv layers, plus ready-made networks (:func:`lenet5`,
:func:`tutorial_cnn`) and :func:`load_model`.

Speed notes: a model keeps all trainable weights in one flat array (each layer's weights
are views into it) and all gradients in another, so the optimizer step is a few NumPy
calls; the final softmax (or sigmoid) is fused with the cross-entropy; inputs are
converted to the model dtype once per ``fit``/``predict`` call, not per batch.
"""

import math
import time

import numpy as np

from . import callbacks as _callbacks
from . import initializers as _initializers
from . import layers as _layers
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from . import plan as _plan
from .layers.base import unique_name

__all__ = ["Sequential", "load_model", "lenet5", "tutorial_cnn"]


def _shape_str(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


class Sequential:
    """A linear stack of layers.

    Args:
        layers: list of layers; the first may be ``cconv.Input(shape)`` (or a layer given
            ``input_shape=``), otherwise the model is built on the first data it sees.
        name: model name.

    Example::

        model = cconv.Sequential([
            cconv.Input((28, 28, 1)),
            cconv.layers.Conv2D(6, 5, padding="same", activation="relu"),
            cconv.layers.MaxPooling2D(),
            cconv.layers.Flatten(),
            cconv.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=5)
    """

    # Set (on the instance, only while it trains) by cconv.distributed.DistributedModel:
    # ``reducer(loss, batch_size, metrics) -> loss`` sums the gradients in ``_gflat`` (and the
    # loss and metric totals) over ranks. None: single process, no extra work per step.
    _step_reducer = None
    # False: inference and training run layer by layer, not through a compiled plan
    # (Keras's name; see cconv.plan).
    jit_compile = True

    def __init__(self, layers=None, name=None):
        self.name = name or unique_name("sequential")
        self._layers = []
        self._input_layer = None
        self.built = False
        self.compiled = False
        self.optimizer = self.loss = None
        self._metric_ids = []
        self.stop_training = False
        self.history = None
        self._packed = False
        for layer in layers or []:
            self.add(layer)

    # ----- structure -------------------------------------------------------------------
    def add(self, layer):
        """Append a layer (or set the input with ``cconv.Input``)."""
        if isinstance(layer, _layers.InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("cconv.Input must be the first element of a Sequential model.")
            self._input_layer = layer
            self._invalidate()
            return
        if not isinstance(layer, _layers.Layer):
            raise TypeError(f"Sequential.add expects a cconv layer; got {layer!r} of type {type(layer).__name__}.")
        if any(l is layer for l in self._layers):
            raise ValueError(f"Layer {layer.name!r} is already in the model.")
        self._layers.append(layer)
        self._invalidate()

    def pop(self):
        layer = self._layers.pop()
        self._invalidate()
        return layer

    def _invalidate(self):
        self.built = False
        self._packed = False
        self._fused = False

    @property
    def layers(self):
        return list(self._layers)

    def _declared_input_shape(self):
        if self._input_layer is not None:
            return self._input_layer.shape
        if self._layers and self._layers[0]._input_shape is not None:
            return self._layers[0]._input_shape
        return None

    def build(self, input_shape=None):
        """Build every layer for inputs of ``(batch,) + input_shape`` (a leading None is
        accepted). Without an argument uses the declared input shape."""
        if input_shape is None:
            input_shape = self._declared_input_shape()
            if input_shape is None:
                raise ValueError(
                    "The model has no input shape: start it with cconv.Input(shape), give the "
                    "first layer input_shape=..., or call it on data first."
                )
        input_shape = tuple(input_shape)
        if input_shape and input_shape[0] is None:
            input_shape = input_shape[1:]
        if not self._layers:
            raise ValueError("Cannot build an empty Sequential model; add layers first.")
        shape = tuple(int(d) for d in input_shape)
        self._input_shape = shape
        for layer in self._layers:
            if layer.built:
                if layer._input_shape != shape:
                    raise ValueError(
                        f"Layer {layer.name!r} was built for inputs {_shape_str((None,) + layer._input_shape)} "
                        f"but receives {_shape_str((None,) + shape)} in this model."
                    )
            else:
                layer.build(shape)
            if layer.dtype != self._layers[0].dtype:
                raise ValueError(
                    f"All layers must share one dtype; {layer.name!r} is {layer.dtype}, "
                    f"{self._layers[0].name!r} is {self._layers[0].dtype}."
                )
            shape = layer._output_shape
        self._output_shape = shape
        self.dtype = np.dtype(self._layers[0].dtype)
        # Backward can stop at the first layer that has trainable weights.
        self._first_trained = 0
        for i, layer in enumerate(self._layers):
            layer._need_dx = True
        for i, layer in enumerate(self._layers):
            if layer.trainable_weights:
                self._first_trained = i
                layer._need_dx = False
                break
        self.built = True
        self._packed = False

    def _ensure_built(self, x_shape=None):
        if not self.built:
            declared = self._declared_input_shape()
            self.build(declared if declared is not None else x_shape)

    @property
    def input_shape(self):
        self._ensure_built()
        return (None,) + self._input_shape

    @property
    def output_shape(self):
        self._ensure_built()
        return (None,) + self._output_shape

    # ----- weights -----------------------------------------------------------------------
    @property
    def weights(self):
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self):
        return [w for layer in self._layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [w for layer in self._layers for w in layer.non_trainable_weights]

    def get_weights(self):
        """Copies of every weight, layer by layer, in Keras's order and shapes."""
        self._ensure_built()
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Set every weight from a list in Keras's order (e.g. ``keras_model.get_weights()``).

        Raises:
            ValueError: wrong count or a shape mismatch (naming the layer and shapes).
        """
        self._ensure_built()
        weights = list(weights)
        n = sum(len(l.weights) for l in self._layers)
        if len(weights) != n:
            raise ValueError(f"Model {self.name!r} has {n} weight arrays; set_weights got {len(weights)}.")
        i = 0
        chunks = []
        for layer in self._layers:
            k = len(layer.weights)
            chunks.append((layer, weights[i:i + k]))
            i += k
        for layer, ws in chunks:               # validate everything before changing anything
            for name, cur, w in zip(layer._present_weight_names(), layer.weights, ws):
                if np.shape(w) != cur.shape:
                    raise ValueError(
                        f"Layer {layer.name!r}: weight {name!r} has shape {cur.shape}; got {np.shape(w)}."
                    )
        for layer, ws in chunks:
            layer.set_weights(ws)

    def count_params(self):
        self._ensure_built()
        return int(sum(w.size for w in self.weights))

    def _pack(self):
        """Point every trainable weight and gradient at views of two flat arrays."""
        entries = []
        for layer in self._layers:
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
        for layer, name, w in entries:
            n = w.size
            wv = wflat[off:off + n].reshape(w.shape)
            wv[...] = w
            gv = gflat[off:off + n].reshape(w.shape)
            setattr(layer, name, wv)
            layer.grads[name] = gv
            views.append((layer, name, wv))
            off += n
        self._wflat, self._gflat, self._views = wflat, gflat, views
        self._packed = True

    def _ensure_packed(self):
        if self._packed and all(getattr(l, n) is v for l, n, v in self._views):
            return
        self._pack()

    # ----- compile --------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, *, metrics=None, jit_compile=True):
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
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, _metrics.Metric)):
            metrics = [metrics]
        for m in metrics:          # fail early on unknown names
            if isinstance(m, str) and m.lower() not in ("accuracy", "acc"):
                _metrics.get(m)
        self._metric_ids = list(metrics)
        self.jit_compile = bool(jit_compile)
        self.compiled = True

    def _make_metrics(self, y_shape):
        out_shape = (None,) + self._output_shape
        return [_metrics.get(m, y_shape, out_shape) for m in self._metric_ids]

    @property
    def metrics_names(self):
        names = ["loss"]
        for m in self._metric_ids:
            names.append(m if isinstance(m, str) else m.name)
        return names

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(
                f"You must compile the model before calling {what}(): "
                f"model.compile(optimizer=..., loss=..., metrics=[...])."
            )

    def _setup_fusion(self):
        last = self._layers[-1]
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
                f"{what} has shape {x.shape}, the shape of ONE sample; the model expects a batch of "
                f"shape (batch,) + {self._input_shape}. Use x[None] for a single sample."
            )
        if x.shape[1:] != self._input_shape:
            raise ValueError(
                f"{what} has shape {x.shape} but the model expects inputs of shape "
                f"{_shape_str((None,) + self._input_shape)}."
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

    # ----- forward / backward ---------------------------------------------------------------------
    def _forward(self, x, training, logits=False):
        plan = None if training else _plan.get_plan(self, logits)
        if plan is not None:
            return plan(x)
        layers = self._layers
        for layer in layers[:-1]:
            x = layer.forward(x, training)
        last = layers[-1]
        return last.forward_logits(x, training) if logits else last.forward(x, training)

    def _train_step(self, xb, yb, metrics):
        fused = self._fused
        tplan = _plan.get_train_plan(self, fused)
        out = tplan.forward(xb) if tplan is not None else self._forward(xb, True, logits=fused)
        if fused:
            loss, g, pred = self.loss.fused_value_and_grad(yb, out)
        else:
            loss, g = self.loss.value_and_grad(yb, out)
            pred = out
        layers = self._layers
        last = len(layers) - 1
        stop = self._first_trained if tplan is None else len(layers)
        if tplan is not None:
            tplan.backward(g)
        for i in range(last, stop - 1, -1):
            layer = layers[i]
            if i == last and fused:
                g = layer.backward_logits(g)
            else:
                g = layer.backward(g)
        for m in metrics:
            m._update(yb, pred)
        if self._step_reducer is not None:   # cconv.distributed: allreduce self._gflat (+ loss, metrics)
            loss = self._step_reducer(loss, xb.shape[0], metrics)
        if self._gflat.size:
            self.optimizer.apply((self._gflat,), (self._wflat,))
        return loss

    def __call__(self, x, training=False):
        """Apply the model to a batch; returns a NumPy array (no progress bar, no batching)."""
        x = self._prepare_x(x)
        out = self._forward(x, training)
        return out

    def train_on_batch(self, x, y):
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
        cbs = [history] + list(callbacks or [])
        progbar = None
        if verbose:
            progbar = _callbacks.ProgbarLogger(verbose=verbose)
            cbs.append(progbar)
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        history.params = params
        return history, progbar, _callbacks.CallbackList(cbs, self, params)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
            validation_batch_size=None, validation_freq=1):
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
            the model or the loss.
        """
        self._require_compiled("fit")
        if verbose == "auto":
            verbose = 1
        batch_size = 32 if batch_size is None else int(batch_size)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive; got {batch_size}.")
        x, y, y_shape = self._prepare_xy(x, y)
        if validation_data is None and validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be in (0, 1); got {validation_split}.")
            split = int(math.floor(x.shape[0] * (1.0 - validation_split)))
            if split == 0 or split == x.shape[0]:
                raise ValueError(
                    f"validation_split={validation_split} leaves an empty training or validation set "
                    f"with {x.shape[0]} samples."
                )
            validation_data = (x[split:], y[split:])
            x, y = x[:split], y[:split]
            val_prepared = True
        else:
            val_prepared = False
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val).")
            if val_prepared:
                xv, yv = validation_data
                yv_shape = y_shape
            else:
                xv, yv, yv_shape = self._prepare_xy(validation_data[0], validation_data[1], what="_val")
        n = x.shape[0]
        if n == 0:
            raise ValueError("fit got an empty dataset (0 samples).")
        self._setup_fusion()
        self._ensure_packed()
        metrics = self._make_metrics(y_shape)
        steps = -(-n // batch_size)

        history, progbar, cb = self._fit_callbacks(callbacks, verbose, epochs, steps)
        batch_hooks = cb.wants_batch_begin or cb.wants_batch_end

        xbuf = np.empty((min(batch_size, n),) + x.shape[1:], dtype=x.dtype) if shuffle else None
        ybuf = np.empty((min(batch_size, n),) + y.shape[1:], dtype=y.dtype) if shuffle else None
        self.stop_training = False
        cb.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            for m in metrics:
                m.reset_state()
            cb.on_epoch_begin(epoch)
            order = np.random.permutation(n) if shuffle else None
            loss_sum = 0.0
            seen = 0
            for step in range(steps):
                lo = step * batch_size
                hi = min(lo + batch_size, n)
                if shuffle:
                    idx = order[lo:hi]
                    xb = xbuf[:hi - lo]
                    yb = ybuf[:hi - lo]
                    np.take(x, idx, axis=0, out=xb)
                    np.take(y, idx, axis=0, out=yb)
                else:
                    xb, yb = x[lo:hi], y[lo:hi]
                if batch_hooks:
                    cb.on_train_batch_begin(step)
                loss = self._train_step(xb, yb, metrics)
                if not math.isfinite(loss):
                    pass  # Keras keeps going too; TerminateOnNaN is not provided.
                loss_sum += loss * (hi - lo)
                seen += hi - lo
                if progbar is not None or batch_hooks:
                    logs = {"loss": loss_sum / seen}
                    for m in metrics:
                        logs[m.name] = m.result()
                    if progbar is not None:
                        progbar.update(step + 1, seen, logs)
                    if batch_hooks:
                        cb.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            logs = {"loss": loss_sum / max(seen, 1)}
            for m in metrics:
                logs[m.name] = m.result()
            if validation_data is not None and (epoch + 1) % validation_freq == 0:
                vals = self._evaluate(xv, yv, yv_shape, validation_batch_size or batch_size)
                for k, v in zip(self.metrics_names, vals):
                    logs["val_" + k] = v
            cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
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
        for lo in range(0, x.shape[0], batch_size):
            xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
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
        loss_sum = self._loss_sum(x, y, metrics, batch_size)
        return [loss_sum / max(x.shape[0], 1)] + [m.result() for m in metrics]

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto"):
        """Loss (and metrics) on ``(x, y)`` in inference mode.

        Returns:
            ``[loss, *metrics]`` as floats, or the loss alone when there are no metrics.
        """
        self._require_compiled("evaluate")
        x, y, y_shape = self._prepare_xy(x, y)
        self._setup_fusion()
        t0 = time.perf_counter()
        vals = self._evaluate(x, y, y_shape, 32 if batch_size is None else int(batch_size))
        if verbose not in (0, False):
            dt = time.perf_counter() - t0
            steps = -(-x.shape[0] // (32 if batch_size is None else int(batch_size)))
            parts = [f"{k}: {v:.4f}" for k, v in zip(self.metrics_names, vals)]
            print(f"{steps}/{steps} - {dt:.2f}s - " + " - ".join(parts)
                  + f" - {x.shape[0] / max(dt, 1e-9):,.0f} images/s")
        return vals if len(vals) > 1 else vals[0]

    def predict(self, x, batch_size=None, verbose="auto"):
        """Model outputs for ``x`` of shape ``(n,) + input_shape``, in batches of
        ``batch_size`` (default 32). Returns a fresh array ``(n,) + output_shape``.

        ``verbose="auto"`` shows a progress line only when there is more than one batch (so
        a single-image predict costs microseconds); ``verbose=1`` always, 0 never.
        """
        x = self._prepare_x(x)
        bs = 32 if batch_size is None else int(batch_size)
        if bs <= 0:
            raise ValueError(f"batch_size must be positive; got {bs}.")
        n = x.shape[0]
        steps = -(-n // bs)
        show = verbose == 1 or verbose is True or (verbose == "auto" and steps > 1)
        t0 = time.perf_counter() if show else 0.0
        if steps <= 1:
            out = self._forward(x, False)
            if np.may_share_memory(out, x):
                out = out.copy()
        else:
            out = np.empty((n,) + self._output_shape, dtype=self.dtype)
            for lo in range(0, n, bs):
                out[lo:lo + bs] = self._forward(x[lo:lo + bs], False)
        if show:
            dt = time.perf_counter() - t0
            print(f"{steps}/{steps} - {dt:.2f}s {dt / max(steps, 1) * 1e3:.0f}ms/step"
                  f" - {n / max(dt, 1e-9):,.0f} images/s")
        return out

    def predict_on_batch(self, x):
        """Outputs for one batch, no batching or printing."""
        return self.predict(x, batch_size=max(len(x), 1), verbose=0)

    # ----- summary / config / saving ---------------------------------------------------------------
    def summary(self, print_fn=None):
        """Print the layers, their output shapes and parameter counts, and the totals."""
        self._ensure_built()
        print_fn = print_fn or print
        rows = [(f"{l.name} ({type(l).__name__})", _shape_str(l.output_shape), f"{l.count_params():,}")
                for l in self._layers]
        w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("Layer (type)", "Output Shape", "Param #"))]
        line = "+" + "+".join("-" * (c + 2) for c in w) + "+"
        print_fn(f'Model: "{self.name}"')
        print_fn(line)
        print_fn(f"| {'Layer (type)':<{w[0]}} | {'Output Shape':<{w[1]}} | {'Param #':>{w[2]}} |")
        print_fn(line.replace("-", "="))
        for r in rows:
            print_fn(f"| {r[0]:<{w[0]}} | {r[1]:<{w[1]}} | {r[2]:>{w[2]}} |")
        print_fn(line)
        itemsize = self.dtype.itemsize
        tot = self.count_params()
        tr = int(sum(v.size for v in self.trainable_weights))

        def size(k):
            b = k * itemsize
            return f"{b / 1024:.2f} KB" if b >= 1024 else f"{b:.2f} B"
        print_fn(f" Total params: {tot:,} ({size(tot)})")
        print_fn(f" Trainable params: {tr:,} ({size(tr)})")
        print_fn(f" Non-trainable params: {tot - tr:,} ({size(tot - tr)})")

    def get_config(self):
        cfg = {"name": self.name, "layers": []}
        if self._input_layer is not None:
            cfg["layers"].append(_layers.serialize(self._input_layer))
        cfg["layers"] += [_layers.serialize(l) for l in self._layers]
        if self.built:
            cfg["build_input_shape"] = [None] + list(self._input_shape)
        return cfg

    @classmethod
    def from_config(cls, config):
        model = cls([_layers.deserialize(c) for c in config["layers"]], name=config.get("name"))
        shape = config.get("build_input_shape")
        if shape is not None:
            model.build(tuple(shape[1:]))
        return model

    def save(self, filepath):
        """Save architecture, weights, compile settings and optimizer state to one file
        (a NumPy ``.npz`` archive; no TensorFlow needed). See :func:`load_model`."""
        from . import saving
        saving.save_model(self, filepath)

    def save_weights(self, filepath):
        """Save the weights only (``.npz``), in ``get_weights()`` order."""
        from . import saving
        saving.save_weights(self, filepath)

    def load_weights(self, filepath):
        """Load weights saved by :meth:`save_weights` or :meth:`save`."""
        from . import saving
        saving.load_weights(self, filepath)

    def __getstate__(self):
        state = self.__dict__.copy()
        for k in ("_wflat", "_gflat", "_views", "_step_reducer", "_plan"):
            state.pop(k, None)
        state["_packed"] = False
        return state

    def __repr__(self):
        return f"<Sequential name={self.name!r}, {len(self._layers)} layers, built={self.built}>"


def load_model(filepath):
    """Load a model saved by :meth:`Sequential.save` (compiled again if it was)."""
    from . import saving
    return saving.load_model(filepath)


def lenet5(input_shape=(28, 28, 1), classes=10, compile=True):
    """The curriculum's LeNet-5 (DESIGN.md section 4)::

        Conv2D(6, 5, same, relu) -> MaxPool(2, 2) -> Conv2D(16, 5, valid, relu) -> MaxPool(2, 2)
        -> Flatten -> Dense(120, relu) -> Dense(84, relu) -> Dense(classes, softmax)

    Every kernel uses ``he_normal(seed=0)``. With ``compile=True`` it is compiled with Adam,
    categorical cross-entropy and accuracy. Inputs ``(batch,) + input_shape``; the spatial
    size must be at least 12 (28 for MNIST, 32 for LeNet's original input).
    """
    def he():
        return _initializers.HeNormal(seed=0)
    L = _layers
    model = Sequential([
        L.Input(input_shape),
        L.Conv2D(6, 5, padding="same", activation="relu", kernel_initializer=he()),
        L.MaxPooling2D(2, strides=2),
        L.Conv2D(16, 5, padding="valid", activation="relu", kernel_initializer=he()),
        L.MaxPooling2D(2, strides=2),
        L.Flatten(),
        L.Dense(120, activation="relu", kernel_initializer=he()),
        L.Dense(84, activation="relu", kernel_initializer=he()),
        L.Dense(classes, activation="softmax", kernel_initializer=he()),
    ], name="lenet5")
    model.build()
    if compile:
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def tutorial_cnn(input_shape=(32, 32, 3), classes=10, compile=True):
    """The TensorFlow CNN tutorial network (CIFAR-10 sized)::

        Conv2D(32, 3, relu) -> MaxPool(2) -> Conv2D(64, 3, relu) -> MaxPool(2)
        -> Conv2D(64, 3, relu) -> Flatten -> Dense(64, relu) -> Dense(classes)

    Outputs are logits; ``compile=True`` uses Adam and
    ``SparseCategoricalCrossentropy(from_logits=True)`` with accuracy, as the tutorial does.
    """
    L = _layers
    model = Sequential([
        L.Input(input_shape),
        L.Conv2D(32, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.Flatten(),
        L.Dense(64, activation="relu"),
        L.Dense(classes),
    ], name="tutorial_cnn")
    model.build()
    if compile:
        model.compile(optimizer="adam", loss=_losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    return model
