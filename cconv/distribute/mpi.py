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
  gradients (each scaled by the rank's sample count), the loss and the change of every
  metric's state (``metric.variables``: totals and counts, or Precision/Recall/AUC's
  confusion counts, so every metric is global). Each rank divides by the global sample
  count, adds the weight regularizers' gradient and takes the same optimizer step. The
  gradient is therefore the mean over the global batch, as single-process training on
  ``size * batch_size`` samples computes it. A rank with no sample in a step (a short last
  step) runs the same step with zero gradients: the allreduce, the regularizers and the
  optimizer, so it takes the same update as the others.
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
  effect at the end of the epoch, agreed over ranks. Validation calls the ``on_test_*``
  hooks as ``fit`` does (``on_test_batch_end`` logs are the rank's own running values;
  ``on_test_end`` and the ``val_*`` logs are global), and ``on_train_end`` gets the last
  epoch's logs. Files are written by rank 0 only:
  ``ModelCheckpoint`` callbacks run on rank 0 alone, and ``dmodel.save`` /
  ``dmodel.save_weights`` do nothing on the other ranks (every rank holds the same weights;
  one writer per file).
* **End.** Every rank holds identical weights (rank 0's are broadcast once more at the end
  of ``fit``, so no rounding in the MPI library can leave ranks apart).

``comm_time`` accumulates the seconds spent in the per-step allreduce (waiting for the
slowest rank included) and ``steps`` counts the steps, for measuring the communication share.

How it is built: ``DistributedModel.fit`` / ``evaluate`` set an :class:`MPIDistribution`
as the model's ``distribution`` (the scale-out protocol of :mod:`cconv.trainers.trainer`: the data
split, the per-step and evaluation reductions, the epoch-end averaging and stop agreement),
call the model's own ``fit`` / ``evaluate`` and restore the previous ``distribution``. So
one training loop serves one process and many, and this module uses only public members of
the model, its layers and its metrics (``tests/test_scale_out_interfaces.py`` checks that
it reads no other object's private attribute). ``x`` and ``validation_data`` must be arrays
(the model refuses generators and sequences while a distribution is set).
"""

import time

import numpy as np

from ..callbacks import ModelCheckpoint
from ..trainers.epoch_iterator import ArrayDataAdapter

try:
    from mpi4py import MPI
except Exception as exc:  # ImportError, or RuntimeError when no MPI library can be loaded
    raise ImportError(
        "cconv.distributed needs mpi4py and an MPI library: `apt-get install openmpi-bin "
        "libopenmpi-dev` (or your system's MPI), then `pip install mpi4py`. "
        f"Importing mpi4py failed with: {exc!r}"
    ) from exc

__all__ = ["DistributedModel", "MPI"]


def _metric_states(metrics):
    """Each metric's ``variables`` (float64 arrays that add over ranks).

    Raises:
        TypeError: a metric without ``variables`` / ``assign_variables``.
    """
    for m in metrics:
        if not (hasattr(m, "variables") and callable(getattr(m, "assign_variables", None))):
            raise TypeError(
                f"DistributedModel: metric {getattr(m, 'name', m)!r} ({type(m).__name__}) has "
                f"no variables/assign_variables (cconv.metrics.Metric's state interface), so "
                f"its state cannot be summed over ranks.")
    return [m.variables for m in metrics]


class MPIDistribution:
    """The ``distribution`` protocol of :mod:`cconv.trainers.trainer` over MPI: what a
    :class:`DistributedModel` sets as ``model.distribution`` for one ``fit`` or ``evaluate``
    (``sharded``: see the module docstring).

    Attributes:
        buffer: the per-step allreduce buffer (gradients, loss, sample count, metric state
            changes), allocated at the first step.
    """

    def __init__(self, dmodel, sharded=False):
        self.dmodel, self.model, self.comm = dmodel, dmodel.model, dmodel.comm
        self.rank, self.size = dmodel.rank, dmodel.size
        self.sharded = bool(sharded)
        self.buffer = None
        self._bases = None          # per metric: its variables after the last reduction

    # ----- data ----------------------------------------------------------------------------------
    def _split(self, m):
        """Start and count of this rank's part of ``m`` consecutive samples (rank 0 first)."""
        base, rem = divmod(m, self.size)
        return self.rank * base + min(self.rank, rem), base + (self.rank < rem)

    def distribute_data(self, x, y, batch_size, shuffle, sample_weight, training):
        """Training: this rank's own samples (``sharded``), or its part of each global step of
        ``size * batch_size`` samples in rank 0's order. Evaluation: this rank's consecutive
        part of the samples (or, ``sharded``, all of its own)."""
        if training:
            return self._training_adapter(x, y, batch_size, shuffle, sample_weight)
        if not self.sharded:
            start, cnt = self._split(x.shape[0])
            part = slice(start, start + cnt)
            x = x[part]
            y = None if y is None else y[part]
            sample_weight = None if sample_weight is None else sample_weight[part]
        return ArrayDataAdapter(x, y, batch_size, sample_weight=sample_weight)

    def _training_adapter(self, x, y, b, shuffle, sample_weight):
        n = x.shape[0]
        counts = self.comm.allgather(n)
        if self.sharded:
            if min(counts) == 0:
                raise ValueError(f"DistributedModel.fit: a rank has no samples "
                                 f"(samples per rank: {counts}).")
            return ArrayDataAdapter(x, y, b, shuffle, steps=min(-(-c // b) for c in counts),
                                    sample_weight=sample_weight)
        if any(c != n for c in counts):
            raise ValueError(
                f"DistributedModel.fit(sharded=False) needs the same data set on every rank; "
                f"samples per rank: {counts}. Pass sharded=True if each rank holds its own "
                f"part.")
        return ArrayDataAdapter(x, y, b * self.size, shuffle, permutation=self._root_order,
                                part=self._step_part, sample_weight=sample_weight)

    def _root_order(self, n):
        """Rank 0's ``np.random.permutation(n)``, on every rank."""
        order = np.random.permutation(n) if self.rank == 0 else np.empty(n, dtype=np.int64)
        order = order.astype(np.int64, copy=False)
        self.comm.Bcast(order, root=0)
        return order

    def _step_part(self, lo, hi):
        start, cnt = self._split(hi - lo)
        return lo + start, cnt

    # ----- begin and end ------------------------------------------------------------------------
    def on_train_begin(self):
        if not self.dmodel.synced:
            self.dmodel.broadcast_weights()

    on_test_begin = on_train_begin

    def on_epoch_begin(self, metrics):
        self._bases = _metric_states(metrics)

    def on_epoch_end(self):
        self._average_state()

    def should_stop(self, stop_training):
        """A stop asked on any rank stops every rank (agreed at the end of each epoch)."""
        return bool(self.comm.allreduce(bool(stop_training), op=MPI.LOR))

    def on_train_end(self):
        self._average_state()
        self.dmodel.broadcast_weights()

    def _average_state(self):
        """Average the weights that training changes without gradients (BatchNormalization's
        moving statistics: the non-trainable weights of trainable layers) over ranks: one
        allreduce."""
        arrays = [w for layer in self.model.layers if layer.trainable
                  for w in layer.non_trainable_weights]
        if not arrays or self.size == 1:
            return
        buf = np.concatenate([a.ravel() for a in arrays])
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        buf *= buf.dtype.type(1.0 / self.size)
        off = 0
        for a in arrays:
            a[...] = buf[off:off + a.size].reshape(a.shape)
            off += a.size

    # ----- reductions ----------------------------------------------------------------------------
    def _allreduce_step(self, buf):
        """Sum ``buf`` over ranks in place, waiting as ``dmodel.wait`` says; timed."""
        dmodel = self.dmodel
        t0 = time.perf_counter()
        if dmodel.wait == "poll":
            # Wait without spinning: a rank that finished early sleeps instead of taking the
            # core from a rank still computing (ranks sharing cores, or a busy machine).
            req = self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            while not req.Test():
                time.sleep(dmodel.poll_interval)
        else:
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        dmodel.comm_time += time.perf_counter() - t0
        dmodel.steps += 1

    def reduce_step(self, gradients, loss, samples, metrics):
        """ONE allreduce of the gradients (each scaled by the rank's sample count), the loss,
        the sample count and the metrics' state changes since the last reduction; each rank
        then holds the global batch's mean gradient and the global metric state."""
        states = _metric_states(metrics)
        bases = self._bases
        if bases is None:             # no epoch began (a lone step): metrics start at zero
            bases = [[np.zeros_like(v) for v in st] for st in states]
        sizes = [v.size for st in states for v in st]
        G = gradients.size
        total = G + 2 + sum(sizes)
        buf = self.buffer
        if buf is None or buf.size != total or buf.dtype != gradients.dtype:
            buf = self.buffer = np.empty(total, dtype=gradients.dtype)
        t = buf.dtype.type
        if samples:
            np.multiply(gradients, t(samples), out=buf[:G])
        else:
            buf[:G] = 0
        buf[G] = loss * samples if samples else 0.0
        buf[G + 1] = samples
        off = G + 2
        for st, base in zip(states, bases):
            for v, b in zip(st, base):
                buf[off:off + v.size] = (v - b).ravel()
                off += v.size
        self._allreduce_step(buf)
        n = float(buf[G + 1])
        if n:
            np.multiply(buf[:G], t(1.0 / n), out=gradients)
        off = G + 2
        new_bases = []
        for m, base in zip(metrics, bases):
            new = []
            for b in base:
                new.append(b + buf[off:off + b.size].astype(np.float64).reshape(b.shape))
                off += b.size
            m.assign_variables(new)
            new_bases.append(new)
        self._bases = new_bases
        return (float(buf[G]) / n if n else 0.0), int(round(n))

    def reduce_evaluation(self, loss_sum, samples, metrics):
        """One allreduce (float64) of the loss sum, the sample count and the metrics' state."""
        states = _metric_states(metrics)
        flat = np.concatenate([np.array([loss_sum, samples], dtype=np.float64)]
                              + [v.ravel() for st in states for v in st])
        self.comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        off = 2
        for m, st in zip(metrics, states):
            new = []
            for v in st:
                new.append(flat[off:off + v.size].reshape(v.shape))
                off += v.size
            m.assign_variables(new)
        return float(flat[0]), int(round(flat[1]))


class DistributedModel:
    """Wrap a compiled cconv model (a :class:`cconv.Sequential` or graph model) for
    synchronous data-parallel training.

    Every metric must expose its state as ``variables`` / ``assign_variables``
    (:class:`cconv.metrics.Metric` does); one that does not is refused with a TypeError
    when training starts (today: the per-output metrics of a multi-output graph model).

    Args:
        model: a compiled cconv model (built, or built on the first ``fit``).
        comm: an mpi4py communicator; default ``MPI.COMM_WORLD``.
        root: the rank whose weights every rank starts from (default 0).
        wait: how a rank waits for the others in the per-step allreduce. ``"poll"``
            (default): a non-blocking allreduce tested every ``poll_interval`` seconds with
            sleeps between, so a waiting rank leaves its core to ranks still computing; best
            when ranks share cores with each other or with other work (on a busy 2-core
            machine it doubled 2-rank throughput). ``"block"``: MPI's blocking
            ``Allreduce``, which busy-waits; lowest latency when every rank owns its cores.
        poll_interval: seconds between tests with ``wait="poll"`` (default 1e-4).

    Attributes ``rank``, ``size``, ``comm``, ``wait``, ``poll_interval``, ``comm_time``,
    ``steps``, ``synced`` (whether the ranks were given the root's weights); anything else
    (``summary``, ``save``, ``get_weights``, ``predict``, ...) is the wrapped model's
    (``predict`` is local to the rank: use :func:`cconv.dask.predict` to spread inference).
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
        self.poll_interval = float(poll_interval)
        self.comm_time = 0.0
        self.steps = 0
        self._synced = False
        self._last = None           # the last fit's / evaluate's MPIDistribution
        if model.built:
            self.broadcast_weights()

    def __getattr__(self, name):
        if name == "model":            # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.model, name)

    def __repr__(self):
        return f"<DistributedModel rank {self.rank}/{self.size} of {self.model!r}>"

    @property
    def synced(self):
        """Whether every rank holds the root's weights (after :meth:`broadcast_weights`)."""
        return self._synced

    @property
    def step_buffer(self):
        """The last step's allreduce buffer (gradients, loss, samples and metric variables),
        or None before any step; ``benchmarks/scaling.py`` times a bare allreduce of its
        size."""
        return None if self._last is None else self._last.buffer

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
        """Copy the root rank's weights (all of them) and optimizer state to every rank
        (building the model from its declared input shape if needed)."""
        model = self.model
        if not model.built:
            model.build()
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

    # ----- fit / evaluate ------------------------------------------------------------------------
    def _distributed(self, sharded, call, *args, **kwargs):
        """``call(*args, **kwargs)`` (the model's own fit or evaluate) with an
        :class:`MPIDistribution` as ``model.distribution``, restored afterwards."""
        if not isinstance(sharded, bool):
            raise TypeError(f"sharded must be True or False; got {sharded!r}.")
        model = self.model
        previous = model.distribution
        dist = MPIDistribution(self, sharded)
        model.distribution = dist
        try:
            return call(*args, **kwargs)
        finally:
            model.distribution = previous
            self._last = dist

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_data=None, shuffle=True, initial_epoch=0, validation_batch_size=None,
            validation_freq=1, sharded=False):
        """Train on every rank at once; call it on every rank with the same arguments.

        Args:
            x, y: arrays: the full data set, the same on every rank (``sharded=False``), or
                this rank's own samples (``sharded=True``).
            batch_size: samples PER RANK and step (default 32); a step trains on
                ``size * batch_size`` samples.
            epochs, verbose, callbacks, shuffle, initial_epoch, validation_batch_size,
                validation_freq: as in the model's ``fit``; only rank 0 prints, and
                ``ModelCheckpoint`` callbacks run on rank 0 only.
            validation_data: ``(x_val, y_val)`` (or with sample weights), full on every rank
                (split over ranks for the evaluation) or, with ``sharded=True``, this rank's
                part; the logged ``val_*`` values are global.
            sharded: see the module docstring.

        Returns:
            :class:`cconv.callbacks.History` with global values, on every rank.
        """
        verbose = 1 if verbose == "auto" else verbose
        if self.rank != 0:
            verbose = 0
            if isinstance(callbacks, (list, tuple)):   # one writer per checkpoint file: rank 0
                callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        return self._distributed(
            sharded, self.model.fit, x, y, batch_size=batch_size, epochs=epochs,
            verbose=verbose, callbacks=callbacks, validation_data=validation_data,
            shuffle=shuffle, initial_epoch=initial_epoch,
            validation_batch_size=validation_batch_size, validation_freq=validation_freq)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sharded=False):
        """Global loss (and metrics), each rank evaluating its part; call on every rank.

        ``x, y`` are the full set on every rank (split over ranks), or with ``sharded=True``
        this rank's part. Rank 0 prints unless ``verbose=0``.
        """
        t0 = time.perf_counter()
        vals = self._distributed(sharded, self.model.evaluate, x, y, batch_size=batch_size,
                                 verbose=0)
        if verbose not in (0, False) and self.rank == 0:
            dt = time.perf_counter() - t0
            shown = vals if isinstance(vals, list) else [vals]
            parts = [f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                     for k, v in zip(self.model.metrics_names, shown)]
            print(f"{self.size} ranks - {dt:.2f}s - " + " - ".join(parts), flush=True)
        return vals
