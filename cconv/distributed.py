"""Synchronous data-parallel training over MPI (through mpi4py).

Run one Python process per rank (``mpirun -n 2 python train.py``); on each, wrap the same
compiled model and call ``fit`` with the same arguments::

    import cconv
    from cconv.distributed import DistributedModel

    model = cconv.models.lenet5()                 # compiled: Adam, cross-entropy, accuracy
    dmodel = DistributedModel(model)              # every rank now holds rank 0's weights
    dmodel.fit(x, y, batch_size=32, epochs=3)     # 32 samples per rank and step

What happens:

* **Start.** Rank 0's weights (trainable and not) and optimizer state are broadcast to every
  rank, so ranks need not seed their initialisers alike.
* **Each step.** Every rank runs forward and backward on its own part of the step's batch;
  then ONE allreduce (``MPI_Iallreduce`` waited on without spinning, or with
  ``wait="block"`` a blocking ``MPI_Allreduce``) sums, in a single buffer, the flattened
  gradients (each scaled by the rank's sample count), the loss and the metric totals. Each
  rank divides by the global sample count and takes the same optimizer step. The gradient
  is therefore the mean over the global batch, as single-process training on
  ``size * batch_size`` samples computes it.
* **Data.** ``sharded=False`` (default): every rank passes the same full ``(x, y)``; the
  step's global batch of ``size * batch_size`` samples (in the order that rank 0's
  ``np.random.permutation`` gives, broadcast each epoch, or in order with ``shuffle=False``)
  is split into consecutive parts, rank 0 first. So ``fit`` on 2 ranks with batch ``b``
  visits the samples exactly as single-process ``fit`` with batch ``2 b`` and the same
  ``np.random`` seed on rank 0. ``sharded=True``: each rank passes only its own samples and
  shuffles them itself; an epoch has as many steps as the rank with the fewest batches, so a
  larger shard's tail is skipped in that epoch (a different tail each epoch when shuffled).
* **BatchNormalization.** Like Keras's default ``BatchNormalization(synchronized=False)``
  under a distribution strategy: the forward pass normalises with the statistics of the
  rank's LOCAL batch, and each rank updates its moving mean/variance from them. At the end
  of each epoch (and of ``fit``) the moving statistics are averaged over ranks, which is what
  Keras's mirrored variables report on read. Because the moving-average update is linear,
  averaging once per epoch gives the same result as averaging after every step. (The
  averaged variance is the mean of the local variances; it leaves out the spread between the
  ranks' batch means.)
* **Logs.** Loss and metrics are global (over every rank's samples); the progress bar is
  printed by rank 0 only and its images/s counts all ranks. Callbacks run on every rank with
  the same global logs, so ``EarlyStopping`` decides alike everywhere; a stop request takes
  effect at the end of the epoch, agreed over ranks. Files are written by rank 0 only:
  ``ModelCheckpoint`` callbacks run on rank 0 alone, and ``dmodel.save`` /
  ``dmodel.save_weights`` do nothing on the other ranks (every rank holds the same weights;
  one writer per file).
* **End.** Every rank holds identical weights (rank 0's are broadcast once more at the end
  of ``fit``, so no rounding in the MPI library can leave ranks apart).

``comm_time`` accumulates the seconds spent in the per-step allreduce (waiting for the
slowest rank included) and ``steps`` counts the steps, for measuring the communication share.
"""

import time

import numpy as np

from .callbacks import ModelCheckpoint
from .trainers.epoch_iterator import ArrayDataAdapter, EpochIterator, check_batch_size

try:
    from mpi4py import MPI
except Exception as exc:  # ImportError, or RuntimeError when no MPI library can be loaded
    raise ImportError(
        "cconv.distributed needs mpi4py and an MPI library: `apt-get install openmpi-bin "
        "libopenmpi-dev` (or your system's MPI), then `pip install mpi4py`. "
        f"Importing mpi4py failed with: {exc!r}"
    ) from exc

__all__ = ["DistributedModel", "MPI"]


class _EpochHooks:
    """What a distributed epoch adds to the shared loop (``Trainer._run_epochs``)."""

    def __init__(self, dmodel, metrics):
        self.dmodel, self.metrics = dmodel, metrics

    def on_epoch_begin(self):
        self.dmodel._reset_bases(self.metrics)

    def on_epoch_end(self):
        self.dmodel._average_state()

    def stop_requested(self):
        """A stop asked on any rank stops every rank (agreed at the end of each epoch)."""
        model = self.dmodel.model
        if self.dmodel.comm.allreduce(bool(model.stop_training), op=MPI.LOR):
            model.stop_training = True
        return model.stop_training


class DistributedModel:
    """Wrap a compiled :class:`cconv.Sequential` for synchronous data-parallel training.

    Args:
        model: a compiled ``cconv.Sequential`` (built, or built on the first ``fit``).
        comm: an mpi4py communicator; default ``MPI.COMM_WORLD``.
        root: the rank whose weights every rank starts from (default 0).
        wait: how a rank waits for the others in the per-step allreduce. ``"poll"``
            (default): a non-blocking allreduce tested every ``poll_interval`` seconds with
            sleeps between, so a waiting rank leaves its core to ranks still computing; best
            when ranks share cores with each other or with other work (on a busy 2-core
            machine it doubled 2-rank throughput). ``"block"``: MPI's blocking
            ``Allreduce``, which busy-waits; lowest latency when every rank owns its cores.
        poll_interval: seconds between tests with ``wait="poll"`` (default 1e-4).

    Attributes ``rank``, ``size``, ``comm``; anything else (``summary``, ``save``,
    ``get_weights``, ``predict``, ...) is the wrapped model's (``predict`` is local to the
    rank: use :func:`cconv.dask.predict` to spread inference).
    """

    def __init__(self, model, comm=None, root=0, wait="poll", poll_interval=1e-4):
        self.model = model
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.root = int(root)
        if wait not in ("poll", "block"):
            raise ValueError(f'wait must be "poll" or "block"; got {wait!r}.')
        if wait == "poll" and not poll_interval > 0:
            raise ValueError(f"poll_interval must be positive; got {poll_interval!r}.")
        self.wait = wait
        self._poll = float(poll_interval) if wait == "poll" else 0.0
        self.comm_time = 0.0
        self.steps = 0
        self._synced = False
        if model.built:
            self.broadcast_weights()

    def __getattr__(self, name):
        if name == "model":            # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.model, name)

    def __repr__(self):
        return f"<DistributedModel rank {self.rank}/{self.size} of {self.model!r}>"

    def save(self, filepath):
        """``model.save(filepath)`` on rank 0; nothing on the other ranks (no collective)."""
        if self.rank == 0:
            self.model.save(filepath)

    def save_weights(self, filepath):
        """``model.save_weights(filepath)`` on rank 0; nothing on the other ranks."""
        if self.rank == 0:
            self.model.save_weights(filepath)

    # ----- collective helpers --------------------------------------------------------------------
    def _agree(self, what, value):
        """Raise the same ValueError on every rank when ``value`` differs between ranks."""
        values = self.comm.allgather(value)
        if any(v != values[0] for v in values):
            raise ValueError(f"DistributedModel: {what} differs between ranks: {values}.")

    def broadcast_weights(self):
        """Copy the root rank's weights (all of them) and optimizer state to every rank."""
        model = self.model
        model._ensure_built()
        weights = model.weights
        self._agree("the model's weight shapes", [(w.shape, str(w.dtype)) for w in weights])
        if weights:
            flat = np.concatenate([w.ravel() for w in weights]) if self.rank == self.root else \
                np.empty(sum(w.size for w in weights), dtype=weights[0].dtype)
            self.comm.Bcast(flat, root=self.root)
            if self.rank != self.root:
                out, off = [], 0
                for w in weights:
                    out.append(flat[off:off + w.size].reshape(w.shape))
                    off += w.size
                model.set_weights(out)
        opt = getattr(model, "optimizer", None)
        if opt is not None:
            state = self.comm.bcast(
                opt.get_state() if self.rank == self.root else None, root=self.root
            )
            if self.rank != self.root and (state[0] or state[1]):
                model.set_optimizer_state(state[0], state[1])
        self._synced = True

    def _average_state(self):
        """Average the weights that training changes without gradients (BatchNormalization's
        moving statistics) over ranks: one allreduce."""
        arrays = [getattr(layer, name) for layer in self.model.layers if layer.trainable
                  for name in layer._weight_names
                  if name not in layer._trainable_names and getattr(layer, name, None) is not None]
        if not arrays or self.size == 1:
            return
        buf = np.concatenate([a.ravel() for a in arrays])
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        buf *= buf.dtype.type(1.0 / self.size)
        off = 0
        for a in arrays:
            a[...] = buf[off:off + a.size].reshape(a.shape)
            off += a.size

    # ----- the per-step reduction (models.Sequential calls it inside _train_step) ----------------
    def _setup_reducer(self, metrics):
        g = self.model._gflat
        self._nm = len(metrics)
        self._buf = np.zeros(g.size + 2 + 2 * self._nm, dtype=g.dtype)
        self._reset_bases(metrics)

    def _reset_bases(self, metrics):
        self._base = [(m._total, m._count) for m in metrics]

    def _reduce_step(self, loss, nb, metrics):
        g = self.model._gflat
        G = g.size
        buf = self._buf
        t = buf.dtype.type
        if nb:
            np.multiply(g, t(nb), out=buf[:G])
        else:
            buf[:G] = 0
        e = buf[G:]
        e[0] = loss * nb if nb else 0.0
        e[1] = nb
        for i, m in enumerate(metrics):
            bt, bc = self._base[i]
            e[2 + 2 * i] = m._total - bt
            e[3 + 2 * i] = m._count - bc
        t0 = time.perf_counter()
        if self._poll:
            # Wait without spinning: a rank that finished early sleeps instead of taking the
            # core from a rank still computing (ranks sharing cores, or a busy machine).
            req = self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            while not req.Test():
                time.sleep(self._poll)
        else:
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        self.comm_time += time.perf_counter() - t0
        self.steps += 1
        n = float(e[1])
        np.multiply(buf[:G], t(1.0 / n), out=g)
        for i, m in enumerate(metrics):
            bt, bc = self._base[i]
            m._total = bt + float(e[2 + 2 * i])
            m._count = bc + float(e[3 + 2 * i])
        self._reset_bases(metrics)
        self._last_n = int(round(n))
        return float(e[0]) / n

    def _empty_step(self, metrics):
        """This rank has no sample in the step (a short last batch): still join the allreduce
        and take the same optimizer step."""
        model = self.model
        loss = self._reduce_step(0.0, 0, metrics)
        if model._gflat.size:
            model._apply_optimizer()
        return loss

    # ----- fit / evaluate ------------------------------------------------------------------------
    def _split(self, m):
        """Start and count of this rank's part of ``m`` consecutive samples (rank 0 first)."""
        base, rem = divmod(m, self.size)
        return self.rank * base + min(self.rank, rem), base + (self.rank < rem)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_data=None, shuffle=True, initial_epoch=0, validation_batch_size=None,
            validation_freq=1, sharded=False):
        """Train on every rank at once; call it on every rank with the same arguments.

        Args:
            x, y: the full data set, the same on every rank (``sharded=False``), or this
                rank's own samples (``sharded=True``).
            batch_size: samples PER RANK and step (default 32); a step trains on
                ``size * batch_size`` samples.
            epochs, verbose, callbacks, shuffle, initial_epoch, validation_freq: as in
                :meth:`cconv.Sequential.fit`; only rank 0 prints.
            validation_data: ``(x_val, y_val)``, full on every rank (split over ranks for the
                evaluation) or, with ``sharded=True``, this rank's part; the logged
                ``val_*`` values are global.
            sharded: see the module docstring.

        Returns:
            :class:`cconv.callbacks.History` with global values, on every rank.
        """
        model = self.model
        model._require_compiled("fit")
        verbose = 1 if verbose == "auto" else verbose
        if self.rank != 0:
            verbose = 0
        b = check_batch_size(batch_size)
        val_bs = check_batch_size(validation_batch_size or b, "validation_batch_size")
        x, y, y_shape = model._prepare_xy(x, y)
        if not self._synced:
            self.broadcast_weights()
        x, y, val = model._validation_set(x, y, y_shape, 0.0, validation_data)
        adapter = self._fit_adapter(x, y, b, shuffle, sharded)
        model._setup_fusion()
        model._ensure_packed()
        metrics = model._make_metrics(y_shape)
        if self.rank != 0 and callbacks:   # one writer per checkpoint file: rank 0
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        iterator = EpochIterator(adapter, initial_epoch, epochs)
        history, progbar, cb = model._fit_callbacks(callbacks, verbose, epochs,
                                                    iterator.num_batches)
        validate = None if val is None else (lambda: self._evaluate(*val, val_bs, sharded))
        self._setup_reducer(metrics)
        model.stop_training = False
        model._step_reducer = self._reduce_step
        try:
            cb.on_train_begin()
            model._run_epochs(iterator, metrics, cb, progbar, self._fit_step, validate,
                              validation_freq, _EpochHooks(self, metrics))
        finally:
            model._step_reducer = None
        self._average_state()
        self.broadcast_weights()
        cb.on_train_end()
        history.model = model
        model.history = history
        return history

    def _fit_adapter(self, x, y, b, shuffle, sharded):
        """The data adapter for this rank: its own samples (``sharded``), or its part of
        each global step of ``size * b`` samples in rank 0's order."""
        n = x.shape[0]
        counts = self.comm.allgather(n)
        if sharded:
            if min(counts) == 0:
                raise ValueError(f"DistributedModel.fit: a rank has no samples "
                                 f"(samples per rank: {counts}).")
            return ArrayDataAdapter(x, y, b, shuffle, steps=min(-(-c // b) for c in counts))
        if any(c != n for c in counts):
            raise ValueError(
                f"DistributedModel.fit(sharded=False) needs the same data set on every rank; "
                f"samples per rank: {counts}. Pass sharded=True if each rank holds its own "
                f"part.")
        if n == 0:
            raise ValueError("fit got an empty dataset (0 samples).")
        return ArrayDataAdapter(x, y, b * self.size, shuffle, permutation=self._root_order,
                                part=self._step_part)

    def _root_order(self, n):
        """Rank 0's ``np.random.permutation(n)``, on every rank."""
        order = np.random.permutation(n) if self.rank == 0 else np.empty(n, dtype=np.int64)
        order = order.astype(np.int64, copy=False)
        self.comm.Bcast(order, root=0)
        return order

    def _step_part(self, lo, hi):
        start, cnt = self._split(hi - lo)
        return lo + start, cnt

    def _fit_step(self, batch, metrics):
        xb, yb = batch
        if xb.shape[0]:
            loss = self.model._train_step(xb, yb, metrics)
        else:
            loss = self._empty_step(metrics)
        return loss, self._last_n

    def _evaluate(self, x, y, y_shape, batch_size, sharded):
        """Global ``[loss, *metrics]``: each rank evaluates its part, one allreduce of the sums."""
        model = self.model
        if not sharded:
            start, cnt = self._split(x.shape[0])
            x, y = x[start:start + cnt], y[start:start + cnt]
        model._setup_fusion()
        metrics = model._make_metrics(y_shape)
        loss_sum = model._loss_sum(x, y, metrics, batch_size)
        sums = np.array([loss_sum, x.shape[0]] + [v for m in metrics for v in (m._total, m._count)],
                        dtype=np.float64)
        self.comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
        out = [sums[0] / max(sums[1], 1)]
        model._ensure_packed()
        if model._penalized:          # weight regularizers, as Sequential.evaluate adds them
            out[0] += model._regularization_loss_and_grads(grads=False)
        for i in range(len(metrics)):
            t, c = sums[2 + 2 * i], sums[3 + 2 * i]
            out.append(float(t / c) if c else 0.0)
        return [float(v) for v in out]

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sharded=False):
        """Global loss (and metrics), each rank evaluating its part; call on every rank.

        ``x, y`` are the full set on every rank (split over ranks), or with ``sharded=True``
        this rank's part. Rank 0 prints unless ``verbose=0``.
        """
        model = self.model
        model._require_compiled("evaluate")
        bs = check_batch_size(batch_size)
        x, y, y_shape = model._prepare_xy(x, y)
        if not self._synced:
            self.broadcast_weights()
        t0 = time.perf_counter()
        vals = self._evaluate(x, y, y_shape, bs, sharded)
        if verbose not in (0, False) and self.rank == 0:
            dt = time.perf_counter() - t0
            parts = [f"{k}: {v:.4f}" for k, v in zip(model.metrics_names, vals)]
            print(f"{self.size} ranks - {dt:.2f}s - " + " - ".join(parts), flush=True)
        return vals if len(vals) > 1 else vals[0]
