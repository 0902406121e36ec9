"""Training callbacks (Keras 3 names): :class:`Callback`, :class:`History`,
:class:`ProgbarLogger`, :class:`EarlyStopping`, :class:`ModelCheckpoint`,
:class:`ReduceLROnPlateau`, :class:`LearningRateScheduler`, :class:`CSVLogger`,
:class:`TerminateOnNaN`, :class:`LambdaCallback`, :class:`BackupAndRestore`.

Hooks receive ``logs`` dicts, never None (as Keras): floats (``loss``, metric names, ``val_*``
at epoch end), ``{}`` where there is nothing to report (``on_train_begin``,
``on_epoch_begin``, ``on_*_batch_begin``), ``{"outputs": array}`` at ``on_predict_batch_end``.
``fit`` calls the ``on_train_*`` and epoch hooks and, for each validation, the ``on_test_*``
hooks; ``evaluate(callbacks=)`` the ``on_test_*`` hooks; ``predict(callbacks=)`` the
``on_predict_*`` hooks. Per-batch hooks are only called for callbacks that override them, so
an unused hook costs nothing per step.
"""

import csv
import math
import os
import sys
import time
import warnings

import numpy as np

from . import saving as _saving
from .saving import fileio as _fileio

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping",
           "ModelCheckpoint", "ReduceLROnPlateau", "LearningRateScheduler", "CSVLogger",
           "TerminateOnNaN", "LambdaCallback", "BackupAndRestore"]


class Callback:
    """Base class; override any hook. ``self.model`` and ``self.params`` are set by fit."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)       # Keras's alias

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass


def check_callbacks(callbacks, where):
    """``callbacks`` as a new list: None -> ``[]``, one :class:`Callback` -> ``[it]`` (Keras
    accepts both), or a list/tuple of them.

    Raises:
        TypeError: anything else, naming ``where`` (``"fit"``, ...) and the culprit.
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"{where}: callbacks must be a list of cconv.callbacks.Callback "
                        f"objects; got {type(callbacks).__name__}.")
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(f"{where}: callbacks[{i}] must be a cconv.callbacks.Callback; got "
                            f"{type(cb).__module__}.{type(cb).__qualname__}.")
    return list(callbacks)


_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
                "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")


def _overrides(cb, hook):
    """Whether ``cb`` defines ``hook`` itself (in its class, or on the instance as
    :class:`LambdaCallback` does); for a training batch hook, also Keras's older alias
    (``on_batch_begin`` / ``on_batch_end``), which the default hook calls."""
    if getattr(type(cb), hook) is not getattr(Callback, hook) or hook in vars(cb):
        return True
    alias = hook.replace("on_train_batch_", "on_batch_")
    return alias != hook and _overrides(cb, alias)


class CallbackList:
    """Calls each hook on every callback, in order, with a ``logs`` dict (``{}`` for None, as
    Keras); a per-batch hook only on the callbacks that override it (:meth:`wants`)."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)
        self._batch = {hook: [cb for cb in self.callbacks if _overrides(cb, hook)]
                       for hook in _BATCH_HOOKS}

    def wants(self, hook):
        """Whether any callback overrides the per-batch ``hook`` (e.g.
        ``"on_test_batch_end"``), so a loop can skip making its logs."""
        return bool(self._batch[hook])

    @property
    def wants_batch_begin(self):
        return self.wants("on_train_batch_begin")

    @property
    def wants_batch_end(self):
        return self.wants("on_train_batch_end")

    def _run(self, hook, logs):
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            getattr(cb, hook)(logs)

    def _run_batch(self, hook, batch, logs):
        logs = {} if logs is None else logs
        for cb in self._batch[hook]:
            getattr(cb, hook)(batch, logs=logs)

    def on_train_begin(self, logs=None): self._run("on_train_begin", logs)
    def on_train_end(self, logs=None): self._run("on_train_end", logs)
    def on_test_begin(self, logs=None): self._run("on_test_begin", logs)
    def on_test_end(self, logs=None): self._run("on_test_end", logs)
    def on_predict_begin(self, logs=None): self._run("on_predict_begin", logs)
    def on_predict_end(self, logs=None): self._run("on_predict_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._run_batch("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._run_batch("on_train_batch_end", batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._run_batch("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._run_batch("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._run_batch("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._run_batch("on_predict_batch_end", batch, logs)


class History(Callback):
    """Records the epoch logs: ``history.history["loss"]`` is a list, one value an epoch;
    ``history.epoch`` the epoch indices."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def plot(self, path, keys=None):
        """Draw each quantity per epoch (``loss`` and each metric, with its ``val_`` twin on
        the same axes) and save the figure to ``path`` (format from the extension: .png, .pdf,
        .svg), atomically as models are (``cconv.saving.fileio.atomic_write``). Needs matplotlib
        (``pip install 'cconv[plot]'``).

        Args:
            keys: names to draw (default: every recorded name without the ``val_`` prefix).

        Returns:
            ``path``.

        Raises:
            ImportError: matplotlib is missing. ValueError: nothing recorded, or an unknown key.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib "
                              "(or pip install 'cconv[plot]').") from None
        names = [k for k in self.history if not k.startswith("val_")] if keys is None else keys
        unknown = [k for k in names if k not in self.history]
        if not names or unknown:
            raise ValueError(f"History.plot: nothing to draw for {unknown or names}; recorded: "
                             f"{sorted(self.history)}.")
        epochs = [e + 1 for e in self.epoch] or list(range(1, len(self.history[names[0]]) + 1))
        fig = Figure(figsize=(5, 3 * len(names)))
        axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
        for ax, k in zip(axes, names):
            for key in (k, "val_" + k):
                if key in self.history:
                    values = self.history[key]
                    ax.plot(epochs[:len(values)], values, marker="o", label=key)
            ax.set_xlabel("epoch")
            ax.set_ylabel(k)
            ax.legend()
        fig.tight_layout()
        fmt = os.path.splitext(os.fspath(path))[1][1:] or None    # None: matplotlib's default
        _fileio.atomic_write(path, lambda f: fig.savefig(f, format=fmt))
        return path


def _fmt_value(v):
    """A log value for printing: 4 decimals, or each of a list's (a metric with several
    thresholds)."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(f"{float(x):.4f}" for x in np.ravel(v)) + "]"
    return f"{v:.4f}"


def _fmt_time(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s"


class ProgbarLogger(Callback):
    """Prints a progress bar per epoch: steps, ETA, running loss and metrics, images/s.

    ``verbose=1``: a live bar (redrawn at most every ``interval`` seconds on a terminal;
    elsewhere only the final line of each epoch); ``verbose=2``: one line per epoch.
    Fit feeds it through :meth:`update` rather than per-batch hooks, to stay cheap.
    """

    def __init__(self, verbose=1, interval=0.1, stream=None, width=30):
        super().__init__()
        self.verbose = verbose
        self.interval = interval
        self.stream = stream
        self.width = width

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def on_train_begin(self, logs=None):
        out = self._out()
        self._live = self.verbose == 1 and hasattr(out, "isatty") and out.isatty()

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs", 1)
        if self.verbose:
            print(f"Epoch {epoch + 1}/{epochs}", file=self._out(), flush=True)
        self._t0 = time.perf_counter()
        self._last = 0.0
        self._seen = 0

    def update(self, step, seen, logs, force=False):
        """Called by fit after each step with the running logs; cheap unless a redraw is due."""
        self._seen = seen
        if not self._live:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self._draw(step, logs, now - self._t0, final=False)

    def _draw(self, step, logs, elapsed, final):
        steps = self.params.get("steps") or step
        n = len(str(steps))
        frac = min(step / steps, 1.0) if steps else 1.0
        done = int(self.width * frac)
        bar = (
            "=" * max(done - 1, 0)
            + (">" if done < self.width and done else "=" if done else "")
            + "." * (self.width - done)
        )
        rate = self._seen / elapsed if elapsed > 0 else float("inf")
        if final:
            per_step = elapsed / max(step, 1)
            timing = f"{_fmt_time(elapsed)} {per_step * 1e3:.0f}ms/step"
        else:
            eta = elapsed / max(step, 1) * (steps - step)
            timing = f"ETA: {_fmt_time(eta)}"
        parts = [f"{step:>{n}}/{steps} [{bar}] - {timing}"]
        parts += [f"{k}: {_fmt_value(v)}" for k, v in logs.items()]
        parts.append(f"{rate:,.0f} images/s")
        line = " - ".join(parts)
        out = self._out()
        if self._live:
            out.write("\r" + line + " " * max(0, getattr(self, "_prev_len", 0) - len(line)))
            self._prev_len = len(line)
            if final:
                out.write("\n")
        else:
            out.write(line + "\n")
        out.flush()

    def on_epoch_end(self, epoch, logs=None):
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self._t0
        self._draw(self.params.get("steps") or 0, logs or {}, elapsed, final=True)


# Metric names (substrings) that improve upwards, as Keras's metrics' ``_direction = "up"``.
_HIGHER_IS_BETTER = ("acc", "precision", "recall", "auc")


class _MonitorMixin:
    def _init_monitor(self, monitor, mode, min_delta=0.0):
        if mode not in ("auto", "min", "max"):
            warnings.warn(
                f"{type(self).__name__}: mode {mode!r} is unknown, using 'auto'.", stacklevel=3
            )
            mode = "auto"
        self.monitor, self.mode = monitor, mode
        self.min_delta = abs(min_delta)
        if mode == "auto":
            name = monitor[4:] if monitor.startswith("val_") else monitor
            mode = ("min" if ("loss" in name or "error" in name) else
                    "max" if any(k in name for k in _HIGHER_IS_BETTER) else None)
            if mode is None:
                raise ValueError(
                    f"{type(self).__name__}: cannot tell whether monitor={monitor!r} should be "
                    f"minimised or maximised; pass mode='min' or mode='max'."
                )
        self._better = np.less if mode == "min" else np.greater
        self._sign = -1.0 if mode == "min" else 1.0

    def _is_improvement(self, current, reference):
        if reference is None:
            return True
        return bool(self._better(current - self._sign * self.min_delta, reference))

    def _get(self, logs):
        v = (logs or {}).get(self.monitor)
        if v is None:
            warnings.warn(
                f"{type(self).__name__} is monitoring {self.monitor!r}, which is not in the logs "
                f"(available: {', '.join(sorted(logs or {}))}).", stacklevel=3)
        return v


class EarlyStopping(_MonitorMixin, Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras 3).

    Args:
        monitor: log key, default "val_loss". min_delta: smallest change that counts.
        patience: epochs without improvement before stopping. verbose: print when stopping.
        mode: "auto" (min for losses, max for accuracies), "min" or "max".
        baseline: a value the monitor must beat. restore_best_weights: on stop, restore the
            weights of the best epoch. start_from_epoch: epochs to wait before monitoring.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self._init_monitor(monitor, mode, min_delta)
        self.patience, self.verbose = int(patience), verbose
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = int(start_from_epoch)

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = self._get(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_MonitorMixin, Callback):
    """Save the model (or its weights) at the end of every epoch, or only when
    ``monitor`` improves (``save_best_only``).

    Args:
        filepath: may hold ``{epoch}`` and log keys, e.g. ``"ckpt-{epoch:02d}-{val_loss:.2f}.npz"``
            (``epoch`` is 1-based, as in Keras).
        monitor, mode: as EarlyStopping. save_best_only: only keep improvements.
        save_weights_only: ``model.save_weights`` instead of ``model.save``.
        initial_value_threshold: a value the first saved epoch must beat.
    """

    def __init__(
        self,
        filepath,
        monitor="val_loss",
        verbose=0,
        save_best_only=False,
        save_weights_only=False,
        mode="auto",
        save_freq="epoch",
        initial_value_threshold=None,
    ):
        super().__init__()
        if save_freq != "epoch":
            raise ValueError(
                f"ModelCheckpoint: only save_freq='epoch' is supported; got {save_freq!r}."
            )
        self.filepath = os.fspath(filepath)
        self.verbose, self.save_best_only, self.save_weights_only = (
            verbose,
            save_best_only,
            save_weights_only,
        )
        self._init_monitor(monitor, mode)
        self.best = initial_value_threshold

    def _path(self, epoch, logs):
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as e:
            raise KeyError(
                f"ModelCheckpoint: filepath {self.filepath!r} uses the key {e.args[0]!r}, "
                f"which is not in the logs of epoch {epoch + 1}; available keys: "
                f"{', '.join(['epoch'] + sorted(logs))}"
                + (" (val_* keys need validation_data or validation_split)."
                   if str(e.args[0]).startswith("val_") else ".")) from None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self._path(epoch, logs)
        if self.save_best_only:
            current = self._get(logs)
            if current is None or not self._is_improvement(current, self.best):
                return
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


def _current_lr(model):
    return float(model.optimizer.learning_rate)


class ReduceLROnPlateau(_MonitorMixin, Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs (Keras 3). Adds ``learning_rate`` to the epoch logs.

    Args:
        monitor: log key, default "val_loss". factor: in (0, 1). patience: epochs without
            improvement. verbose: print reductions. mode: "auto", "min" or "max".
        min_delta: smallest change that counts as an improvement (1e-4).
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: the learning rate never goes below this.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0; got "
                             f"factor={factor}.")
        self._init_monitor(monitor, mode, min_delta)
        self.factor, self.min_lr, self.patience = factor, min_lr, patience
        self.verbose, self.cooldown = verbose, cooldown
        self._reset()

    def _reset(self):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = _current_lr(self.model)
        current = self._get(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and self._reduce(epoch):
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def _reduce(self, epoch):
        old = _current_lr(self.model)
        if not old > np.float32(self.min_lr):
            return False
        new = max(old * self.factor, self.min_lr)
        self.model.optimizer.learning_rate = new
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
        return True


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)`` (or
    ``schedule(epoch)``); ``epoch`` counts from 0. Adds ``learning_rate`` to the epoch logs.

    Raises:
        ValueError: the schedule returned something other than a float.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = _current_lr(self.model)
        try:
            lr = self.schedule(epoch, lr)
        except TypeError:          # Keras's older one-argument form
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, np.float32, np.float64)):
            raise ValueError(f"The output of the schedule function should be a float; got {lr!r}.")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _current_lr(self.model)


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` (0-based) then the log keys in sorted order (with
    ``val_`` twins added when validation has not run yet), as Keras does.

    Args:
        filename: the file. separator: field separator. append: append to an existing file
            (no second header).
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.csv_file = self.writer = self.keys = None

    def on_train_begin(self, logs=None):
        self.append_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                self.append_header = not f.readline()
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer = self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(k.startswith("val_") for k in self.keys):
                self.keys += ["val_" + k for k in self.keys]
        if self.writer is None:
            self.writer = csv.writer(self.csv_file, delimiter=self.sep)
            if self.append_header:
                self.writer.writerow(["epoch"] + self.keys)
        self.writer.writerow([epoch] + [_csv_value(logs.get(k, "NA")) for k in self.keys])
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


def _csv_value(v):
    """Keras's cell for a list-valued log (a metric with several thresholds): ``"[a, b]"``."""
    if isinstance(v, (list, tuple, np.ndarray)) and np.ndim(v) > 0:
        return f'"[{", ".join(map(str, v))}]"'
    return v


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite (that batch's epoch still
    ends normally). ``raise_error=True`` raises ``RuntimeError`` instead."""

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                               f"{loss}. Terminating training immediately.")
        print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions, Keras's signatures: ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_begin(logs)``, ``on_train_end(logs)``,
    ``on_train_batch_begin(batch, logs)``, ``on_train_batch_end(batch, logs)``. ``logs`` is
    always a dict. Extra keyword arguments become attributes."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        self.__dict__.update(kwargs)
        for hook, fn in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_train_batch_begin", on_train_batch_begin),
                         ("on_train_batch_end", on_train_batch_end)):
            if fn is not None:
                setattr(self, hook, _indexed_hook(fn))
        for hook, fn in (("on_train_begin", on_train_begin), ("on_train_end", on_train_end)):
            if fn is not None:
                setattr(self, hook, _logs_hook(fn))


def _indexed_hook(fn):
    def hook(index, logs=None):
        return fn(index, logs if logs is not None else {})
    return hook


def _logs_hook(fn):
    def hook(logs=None):
        return fn(logs if logs is not None else {})
    return hook


class BackupAndRestore(Callback):
    """Back up the weights, the optimizer state and the epoch to ``backup_dir`` so that an
    interrupted ``fit`` resumes where it stopped (Keras 3).

    When ``fit`` starts and a backup exists, the weights, optimizer state (step count, slots
    and a settable learning rate) are restored and training continues at the epoch after the
    last backed-up one. Each backup replaces the previous one atomically (a crash while
    saving leaves the previous backup whole). When ``fit`` ends normally (not by an
    exception) the backup is deleted if ``delete_checkpoint``.

    Args:
        backup_dir: folder of the backup file (``backup.npz``); created when needed.
        save_freq: ``"epoch"`` (back up after every epoch), an int ``n`` (after every ``n``
            batches instead; a resume then reruns the interrupted epoch from those weights,
            as Keras does) or False (never back up; only restore).
        delete_checkpoint: delete the backup when training ends normally.

    The global NumPy random state is not backed up: a resumed ``shuffle=True`` run draws new
    orders (the weights restored are exact).
    """

    FILE = "backup.npz"

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("BackupAndRestore: backup_dir is required.")
        if save_freq is not False and save_freq != "epoch" and (
                isinstance(save_freq, bool) or not isinstance(save_freq, int)
                or save_freq < 1):
            raise ValueError(f"BackupAndRestore: save_freq must be 'epoch', a positive int or "
                             f"False; got {save_freq!r}.")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = bool(delete_checkpoint)
        self._file = os.path.join(self.backup_dir, self.FILE)
        self._epochs_done = 0
        self._batches = 0
        if save_freq not in (False, "epoch"):
            self.on_train_batch_end = self._batch_end      # per-batch hook only when needed

    def on_train_begin(self, logs=None):
        self._batches = 0
        self._epochs_done = 0
        if os.path.exists(self._file):
            self._restore()

    def _damaged(self, what):
        return ValueError(f"{self._file!r} is not a usable BackupAndRestore backup: {what}.")

    def _check_backup(self, meta, arrays):
        """The backup's own fields (``_saving.read_archive`` checked the weights' count and types):
        ``epoch`` an int >= 0; ``optimizer`` absent or a dict whose ``state_keys`` (strings)
        name arrays the file holds and whose ``learning_rate`` is None or a finite float >= 0
        (the step count and slots are checked against the model on restoring)."""
        if meta.get("format") != "cconv.backup":
            raise ValueError(f"{self._file!r} is not a cconv BackupAndRestore file.")
        epoch = meta.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise self._damaged(f'"epoch" (the epochs done) must be an int >= 0, got {epoch!r}')
        opt = meta.get("optimizer")
        if opt is None:
            return
        if not isinstance(opt, dict):
            raise self._damaged(f'"optimizer" must be a dict, got {type(opt).__name__}')
        keys = opt.get("state_keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise self._damaged('"optimizer"["state_keys"] must be a list of str')
        missing = [k for k in keys if "opt." + k not in arrays]
        if missing:
            raise self._damaged(f"{len(missing)} optimizer arrays are missing: {missing[:5]}")
        lr = opt.get("learning_rate")
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))
                               or not math.isfinite(lr) or lr < 0):
            raise self._damaged(f'"optimizer"["learning_rate"] must be a float >= 0 or None, '
                                f'got {lr!r}')

    def _restore(self):
        """Weights, optimizer state and epoch from the backup, all checked first (a
        ValueError naming the file leaves the model as it was)."""
        meta, arrays = _saving.read_archive(self._file, "backup")
        self._check_backup(meta, arrays)
        model = self.model
        old_weights = model.get_weights()
        try:
            model.set_weights([arrays[f"w{i}"] for i in range(meta["num_weights"])])
        except ValueError as e:
            raise ValueError(f"{self._file!r} does not fit this model: {e}") from None
        opt = meta.get("optimizer")
        if opt is not None and model.optimizer is not None:
            try:
                _saving.restore_optimizer_state(
                    model, opt.get("iterations"),
                    {k: arrays["opt." + k] for k in opt["state_keys"]}, self._file)
            except ValueError:
                model.set_weights(old_weights)
                raise
            if opt.get("learning_rate") is not None:
                try:
                    model.optimizer.learning_rate = opt["learning_rate"]
                except TypeError:           # built on a schedule: the step count sets it
                    pass
        self._epochs_done = meta["epoch"]
        model._initial_epoch = self._epochs_done

    def _save(self):
        model = self.model
        weights = model.get_weights()
        arrays = {f"w{i}": w for i, w in enumerate(weights)}
        meta = {"format": "cconv.backup", "version": 1, "num_weights": len(weights),
                "epoch": self._epochs_done}
        if model.optimizer is not None:
            iterations, state = model.get_optimizer_state()
            try:
                lr = float(model.optimizer.learning_rate)
            except (TypeError, ValueError):
                lr = None
            meta["optimizer"] = {"iterations": int(iterations), "state_keys": sorted(state),
                                 "learning_rate": lr}
            arrays.update({"opt." + k: v for k, v in state.items()})
        os.makedirs(self.backup_dir, exist_ok=True)
        _saving.write_archive(self._file, meta, arrays)

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_done = epoch + 1
        self._batches = 0
        if self.save_freq == "epoch":
            self._save()

    def _batch_end(self, batch, logs=None):
        self._batches += 1
        if self._batches % self.save_freq == 0:
            self._save()

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.exists(self._file):
            os.remove(self._file)
            try:
                os.rmdir(self.backup_dir)            # only when nothing else is in it
            except OSError:
                pass
