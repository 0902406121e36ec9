"""One epoch/batch loop for ``fit``, ``evaluate`` and ``predict`` (single process and
:mod:`cconv.distributed`), fed by a data adapter, as Keras 3's ``trainers/epoch_iterator.py``.

The data-adapter interface (what :class:`EpochIterator` calls; each source of data is a class
with these members: :class:`ArrayDataAdapter` for in-memory arrays (with optional sample
weights), :class:`GeneratorDataAdapter` for Python generators and iterators,
:class:`SequenceDataAdapter` for objects with ``__len__`` and ``__getitem__``):

``num_batches``
    Steps per epoch (int), or None when unknown until the data runs out (a generator).
``num_samples``
    Samples per epoch (int), or None when unknown.
``on_epoch_begin()``
    Called once at the start of every pass over the data, before the first batch is asked
    for (the array adapter draws its shuffled order here).
``on_epoch_end()``
    Called on the consumer's thread once the pass's last batch has been used (a sequence's
    own ``on_epoch_end`` runs here); not called for a pass left unfinished.
``get_numpy_iterator()``
    Yields the pass's batches as tuples ``(x, y)`` or ``(x, y, sample_weight)`` of NumPy
    arrays already in the model's dtype (``y`` is None for ``predict``). A yielded batch may be
    overwritten by the next one (the array adapter reuses one buffer), so a consumer must be
    done with it before asking again.

The stream adapters turn each raw batch into that form with a ``prepare(raw, step) ->
(batch, y_shape)`` function the model gives them (it checks and converts the batch), and
read one batch ahead on a background thread (:func:`prefetch`): at most
:data:`PREFETCH_BATCHES` prepared batches wait in the queue, so memory stays bounded by a few
batches whatever the stream's length. A prepared array that may be the source's own memory
(the very array it yielded, or a view) is copied (:func:`detached`), so a source that refills
one buffer for every batch cannot change a batch read ahead.

The array adapter draws one ``np.random.permutation(n)`` per shuffled epoch and nothing else,
so training trajectories depend only on NumPy's global random state, as they always have.
"""

import numbers
import queue
import threading
import warnings

import numpy as np

from .._validation import check_int

__all__ = ["DEFAULT_BATCH_SIZE", "PREFETCH_BATCHES", "check_batch_size", "data_kind",
           "ArrayDataAdapter", "GeneratorDataAdapter", "SequenceDataAdapter", "EpochIterator",
           "detached", "prefetch"]

DEFAULT_BATCH_SIZE = 32
# Prepared batches a stream adapter's background thread may hold ready ahead of the consumer.
PREFETCH_BATCHES = 1


def check_batch_size(batch_size, name="batch_size"):
    """``batch_size`` as a positive int; None -> :data:`DEFAULT_BATCH_SIZE` (32).

    Raises:
        TypeError: not an int. ValueError: zero or negative.
    """
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    return check_int(batch_size, name)


def _numeric_nested(obj):
    """Whether a list/tuple holds only numbers, NumPy arrays and such lists (no conversion)."""
    stack = [obj]
    while stack:
        for v in stack.pop():
            if isinstance(v, (list, tuple)):
                stack.append(v)
            elif not isinstance(v, (numbers.Number, np.generic, np.ndarray)):
                return False
    return True


def data_kind(obj, name):
    """What ``obj`` is, judged from its type alone (nothing is converted or called):
    ``"array"`` (a NumPy array, a list/tuple of numbers, or an array-like object with
    ``__array__`` and ``shape``, or a dict of arrays by name), ``"sequence"`` (``__len__``
    and ``__getitem__``, like Keras's ``PyDataset``) or ``"iterator"`` (a generator, an
    iterator or another iterable).

    Raises:
        TypeError: anything else, naming the argument ``name`` and the type.
    """
    if isinstance(obj, np.ndarray):
        return "array"
    if isinstance(obj, (list, tuple)):
        if _numeric_nested(obj):
            return "array"
        raise TypeError(f"{name} is a {type(obj).__name__} of something other than numbers "
                        f"or arrays; pass a NumPy array, a generator or a sequence of batches.")
    if isinstance(obj, dict) and obj and all(
            isinstance(v, (np.ndarray, list, tuple)) or hasattr(type(v), "__array__")
            for v in obj.values()):
        return "array"              # arrays by input/output name (a graph model's inputs)
    if not isinstance(obj, (str, bytes, dict, set, frozenset)):
        t = type(obj)
        if (hasattr(t, "__array__") or hasattr(t, "__array_interface__")) \
                and hasattr(obj, "shape"):
            return "array"
        if hasattr(t, "__len__") and hasattr(t, "__getitem__"):
            return "sequence"
        if hasattr(t, "__next__") or hasattr(t, "__iter__"):
            return "iterator"
    raise TypeError(
        f"{name} must be a NumPy array (or array-like with __array__ and shape), a list of "
        f"numbers, a generator/iterator yielding (x, y) or (x, y, sample_weight) batches, or a "
        f"sequence with __len__ and __getitem__ returning batches; got an object of type "
        f"{type(obj).__module__}.{type(obj).__qualname__}.")


class ArrayDataAdapter:
    """Batches of in-memory arrays, optionally in a fresh random order every epoch.

    Args:
        x: inputs ``(n, ...)``. y: targets ``(n, ...)`` or None (``predict``).
        batch_size: samples per step (positive int).
        shuffle: draw a new order at every :meth:`on_epoch_begin`; batches are then gathered
            into a reused buffer (``np.take``), otherwise they are views of ``x`` and ``y``.
        steps: steps per epoch (default ``ceil(n / batch_size)``; fewer stops early, and a
            step past the data yields empty batches).
        permutation: ``n -> order`` used when shuffling (default ``np.random.permutation``;
            :mod:`cconv.distributed` passes one that broadcasts rank 0's order).
        part: ``(lo, hi) -> (start, count)``: the samples this process takes from the step's
            positions ``[lo, hi)`` of the epoch order (default all of them;
            :mod:`cconv.distributed` splits each step over ranks).
        sample_weight: per-sample weights ``(n,)`` or None; with weights the batches are
            ``(x, y, sample_weight)``.
    """

    def __init__(self, x, y=None, batch_size=DEFAULT_BATCH_SIZE, shuffle=False, steps=None,
                 permutation=None, part=None, sample_weight=None):
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.num_samples = int(x.shape[0])
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.num_batches = -(-self.num_samples // self.batch_size) if steps is None else steps
        self._permutation = permutation or np.random.permutation
        self._part = part
        self._order = None
        self._xbuf = self._ybuf = None

    def on_epoch_begin(self):
        if self.shuffle:
            self._order = self._permutation(self.num_samples)

    def on_epoch_end(self):
        pass

    def _gather(self, idx):
        """Rows ``idx`` of x and y, in the reused buffers (grown to the largest batch)."""
        cnt = len(idx)
        if self._xbuf is None or self._xbuf.shape[0] < cnt:
            self._xbuf = np.empty((cnt,) + self.x.shape[1:], dtype=self.x.dtype)
            if self.y is not None:
                self._ybuf = np.empty((cnt,) + self.y.shape[1:], dtype=self.y.dtype)
        xb = np.take(self.x, idx, axis=0, out=self._xbuf[:cnt])
        yb = None if self.y is None else np.take(self.y, idx, axis=0, out=self._ybuf[:cnt])
        if self.sample_weight is not None:
            return xb, yb, self.sample_weight[idx]
        return xb, yb

    def get_numpy_iterator(self):
        n, b = self.num_samples, self.batch_size
        w = self.sample_weight
        for step in range(self.num_batches):
            lo = min(step * b, n)
            hi = min(lo + b, n)
            start, cnt = (lo, hi - lo) if self._part is None else self._part(lo, hi)
            if self._order is not None and self.shuffle:
                yield self._gather(self._order[start:start + cnt])
            else:
                stop = start + cnt
                batch = self.x[start:stop], None if self.y is None else self.y[start:stop]
                yield batch if w is None else batch + (w[start:stop],)


_DONE = object()


def _source_arrays(raw):
    """The NumPy arrays in one raw batch of a source (inside tuples, lists and dicts)."""
    found, stack = [], [raw]
    while stack:
        v = stack.pop()
        if isinstance(v, np.ndarray):
            found.append(v)
        elif isinstance(v, (tuple, list)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    return found


def detached(batch, raw):
    """``batch`` (a tuple of prepared arrays or None) with a copy of every array that may be
    memory the source still holds: an array of ``raw`` (the raw batch) itself, or any array
    that does not own its data (a view). A source may then refill one buffer for every batch
    while the previous batch, read ahead, waits or trains."""
    given = _source_arrays(raw)
    return tuple(a if a is None or (a.flags.owndata and not any(a is g for g in given))
                 else a.copy() for a in batch)


def prefetch(source, depth=PREFETCH_BATCHES):
    """Yield what the iterator ``source`` yields, produced on one background thread that
    stays at most ``depth`` items ahead; an exception in ``source`` is raised here. Closing
    this generator (or leaving a loop over it) stops the thread and waits for it, so the
    source is never read by two threads at once."""
    q = queue.Queue(maxsize=max(int(depth), 1))
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run():
        try:
            for item in source:
                if not put((True, item)):
                    return
            put((True, _DONE))
        except BaseException as e:        # handed to the consumer, raised there
            put((False, e))

    thread = threading.Thread(target=run, name="cconv-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()


class _StreamAdapter:
    """What the generator and sequence adapters share: the ``prepare`` function (its batches
    :func:`detached` from the source), the first batch read ahead (:meth:`peek`, so the model
    can be built and checked before training) and the prefetch thread."""

    num_samples = None

    def __init__(self, prepare, name, use_prefetch=True):
        self._prepare = prepare
        self.name = name
        self.use_prefetch = bool(use_prefetch)
        self.y_shape = None
        self._peeked = False

    def peek(self):
        """The first prepared batch (prepared once, before training; it is also the first
        batch yielded)."""
        if self._first is None:
            if self._peeked:
                raise RuntimeError(f"{self.name}: peek() after the first batch was used.")
            self._peeked = True
            raw = self._raw(0)
            if raw is _DONE:
                raise ValueError(f"{self.name} yielded no batch.")
            self._first = self._prepared(raw, 0)
            self.y_shape = self._first[1]
        return self._first[0]

    def _prepared(self, raw, step):
        """``(batch, y shape)`` for the raw batch ``step``, detached from the source."""
        batch, y_shape = self._prepare(raw, step)
        return detached(batch, raw), y_shape

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass

    def get_numpy_iterator(self):
        it = self._batches()
        return prefetch(it) if self.use_prefetch else it


class GeneratorDataAdapter(_StreamAdapter):
    """Batches from a Python generator, iterator or iterable yielding ``(x, y)`` or
    ``(x, y, sample_weight)`` (``predict``: ``x`` or ``(x,)``). One pass reads ``steps``
    batches (None: until the generator is exhausted); the next pass continues where it
    stopped, as Keras reads a generator."""

    def __init__(self, source, prepare, name="x", steps=None, use_prefetch=True):
        super().__init__(prepare, name, use_prefetch)
        self._it = iter(source)
        self.num_batches = steps
        self._first = None
        self._first_used = False

    def _raw(self, step):
        try:
            return next(self._it)
        except StopIteration:
            return _DONE

    def _batches(self):
        step = 0
        while self.num_batches is None or step < self.num_batches:
            if self._first is not None and not self._first_used:
                self._first_used = True
                batch, self._first = self._first[0], None     # not kept alive afterwards
                yield batch
            else:
                raw = self._raw(step)
                if raw is _DONE:
                    return
                yield self._prepared(raw, step)[0]
            step += 1


class SequenceDataAdapter(_StreamAdapter):
    """Batches ``seq[0] ... seq[len(seq) - 1]`` of an object with ``__len__`` and
    ``__getitem__`` (Keras's ``PyDataset``, or any class), each ``(x, y)`` or
    ``(x, y, sample_weight)``. ``shuffle`` visits the batches in a new random order every pass
    (``np.random.permutation``); ``seq.on_epoch_begin()`` is called before a pass and
    ``seq.on_epoch_end()`` once its last batch has been used, when they exist (Keras's
    ``PyDataset`` hooks, :class:`cconv.utils.PyDataset`). With ``seq.workers > 1`` (Keras's
    ``PyDataset`` argument) that many threads read ``seq[i]`` up to ``seq.max_queue_size``
    batches ahead; batches are still prepared and used in order. A pass is always the whole
    sequence (the :class:`EpochIterator` splits passes into epochs of
    ``steps_per_epoch``)."""

    def __init__(self, seq, prepare, name="x", shuffle=False, use_prefetch=True):
        super().__init__(prepare, name, use_prefetch)
        n = len(seq)
        if not isinstance(n, numbers.Integral) or n < 0:
            raise TypeError(f"{name}: len() of the sequence must be an int >= 0; got {n!r}.")
        self._seq = seq
        self._len = self.num_batches = int(n)
        self.shuffle = bool(shuffle)
        self._order = None
        self._first = None

    def _raw(self, i):
        if i >= self._len:
            return _DONE
        return self._seq[i]

    def on_epoch_begin(self):
        begin = getattr(self._seq, "on_epoch_begin", None)
        if callable(begin):
            begin()
        self._order = np.random.permutation(self._len) if self.shuffle else None

    def on_epoch_end(self):
        end = getattr(self._seq, "on_epoch_end", None)
        if callable(end):
            end()

    def _indices(self):
        return [int(self._order[step]) if self._order is not None else step
                for step in range(self.num_batches)]

    def _batches(self):
        workers, ahead = _workers_of(self._seq)
        if workers > 1:
            yield from self._parallel_batches(workers, ahead)
            return
        for i in self._indices():
            if i == 0 and self._first is not None:
                batch, self._first = self._first[0], None     # the peeked batch, used once
            else:
                batch = self._prepared(self._seq[i], i)[0]
            yield batch

    def _parallel_batches(self, workers, ahead):
        """The pass's batches in order, ``seq[i]`` read by ``workers`` threads at most
        ``ahead`` batches ahead (Keras's ``PyDataset(workers=...)``); each is prepared here,
        in order. Leaving early cancels the reads not started and waits for the others."""
        from concurrent.futures import ThreadPoolExecutor
        indices = self._indices()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cconv-pydataset")
        pending = {}
        try:
            nxt = 0
            for pos, i in enumerate(indices):
                while nxt < len(indices) and nxt < pos + ahead:
                    j = indices[nxt]
                    if not (j == 0 and self._first is not None):
                        pending[nxt] = pool.submit(self._seq.__getitem__, j)
                    nxt += 1
                if i == 0 and self._first is not None and pos not in pending:
                    batch, self._first = self._first[0], None
                else:
                    batch = self._prepared(pending.pop(pos).result(), i)[0]
                yield batch
        finally:
            for future in pending.values():
                future.cancel()
            pool.shutdown(wait=True)


def _workers_of(seq):
    """``(workers, batches read ahead)`` a sequence asks for through Keras's ``PyDataset``
    arguments (``workers``, ``max_queue_size``); ``(1, 1)`` when it names none or they are
    not ints >= 1."""
    def positive(value, default):
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
        return int(value) if ok else default
    workers = positive(getattr(seq, "workers", 1), 1)
    return workers, max(workers, positive(getattr(seq, "max_queue_size", workers), workers))


class EpochIterator:
    """Epochs ``initial_epoch .. epochs - 1`` over a data adapter.

    ``for epoch in it.epochs(): for step, batch in it.enumerate_epoch(): ...``; then
    :meth:`close`.

    Without ``steps_per_epoch`` an epoch is one whole pass over the data. With it (Keras 3's
    rule) an epoch takes that many batches, continuing the current pass where the last epoch
    stopped; a pass of known length (arrays, a sequence) used up within an epoch ends that
    epoch early with a warning, and the next epoch starts a new pass. A generator that runs
    out ends the epoch with a warning and sets :attr:`ran_out` (fit then stops). When a
    pass's last batch has been used, the adapter's ``on_epoch_end`` runs (on this thread).
    """

    def __init__(self, adapter, initial_epoch=0, epochs=1, steps_per_epoch=None):
        self.adapter = adapter
        self.initial_epoch = int(initial_epoch)
        self.num_epochs = int(epochs)
        self.steps_per_epoch = steps_per_epoch
        self.ran_out = False
        self._current = None
        self._seen = 0

    @property
    def num_batches(self):
        return self.steps_per_epoch or self.adapter.num_batches

    def epochs(self):
        return range(self.initial_epoch, self.num_epochs)

    def enumerate_epoch(self):
        """``(step, batch)`` for one epoch (a new pass starts with the adapter's
        ``on_epoch_begin``)."""
        return enumerate(self._epoch())

    def _new_pass(self):
        self.close()
        self.adapter.on_epoch_begin()
        self._current = iter(self.adapter.get_numpy_iterator())
        self._seen = 0

    def _ran_out(self):
        self.ran_out = True
        warnings.warn("Your input ran out of data; interrupting training. Make sure that your "
                      "dataset or generator can generate at least `steps_per_epoch * epochs` "
                      "batches.", stacklevel=4)

    def _end_pass(self):
        """The pass's last batch has been used: stop its thread, then the adapter's
        ``on_epoch_end``; the next epoch starts a new pass."""
        self.close()
        self.adapter.on_epoch_end()

    def _epoch(self):
        spe = self.steps_per_epoch
        if self._current is None or spe is None:
            self._new_pass()
        n = self.adapter.num_batches
        step = 0
        while spe is None or step < spe:
            if n is not None and self._seen >= n:
                if spe:
                    warnings.warn(
                        f"Your input ran out of data: its pass of {n} batches was used up "
                        f"after {step} of the {spe} steps of this epoch, which ends there; the "
                        f"next epoch starts a new pass (Keras's rule). A steps_per_epoch that "
                        f"divides {n} gives every epoch all its steps.", stacklevel=4)
                break
            try:
                batch = next(self._current)
            except StopIteration:
                self._current = None
                if spe or step == 0:
                    self._ran_out()
                break
            self._seen += 1
            step += 1
            yield batch
        if n is not None and self._seen >= n:
            self._end_pass()

    def close(self):
        """Stop the current pass (and its prefetch thread, if any)."""
        cur, self._current = self._current, None
        close = getattr(cur, "close", None)
        if close is not None:
            close()
