"""One epoch/batch loop for ``fit``, ``evaluate`` and ``predict`` (single process and
:mod:`cconv.distributed`), fed by a data adapter, as Keras 3's ``trainers/epoch_iterator.py``.

The data-adapter interface (what :class:`EpochIterator` calls; a new source of data, e.g. a
Python generator, a sequence object with ``__len__`` and ``__getitem__`` or sample weights,
is a new class with these members):

``num_batches``
    Steps per epoch (int), or None when unknown until the data runs out (a generator).
``num_samples``
    Samples per epoch (int), or None when unknown.
``on_epoch_begin()``
    Called once at the start of every epoch, before the first batch is asked for (the array
    adapter draws its shuffled order here).
``get_numpy_iterator()``
    Yields the epoch's batches as tuples ``(x, y)`` of NumPy arrays already in the model's
    dtype (``y`` is None for ``predict``; a later adapter with sample weights yields
    ``(x, y, sample_weight)``). A yielded batch may be overwritten by the next one (the array
    adapter reuses one buffer), so a consumer must be done with it before asking again.

The array adapter draws one ``np.random.permutation(n)`` per shuffled epoch and nothing else,
so training trajectories depend only on NumPy's global random state, as they always have.
"""

import numpy as np

from ._validation import check_int

__all__ = ["DEFAULT_BATCH_SIZE", "check_batch_size", "ArrayDataAdapter", "EpochIterator"]

DEFAULT_BATCH_SIZE = 32


def check_batch_size(batch_size, name="batch_size"):
    """``batch_size`` as a positive int; None -> :data:`DEFAULT_BATCH_SIZE` (32).

    Raises:
        TypeError: not an int. ValueError: zero or negative.
    """
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    return check_int(batch_size, name)


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
    """

    def __init__(self, x, y=None, batch_size=DEFAULT_BATCH_SIZE, shuffle=False, steps=None,
                 permutation=None, part=None):
        self.x, self.y = x, y
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

    def _gather(self, idx):
        """Rows ``idx`` of x and y, in the reused buffers (grown to the largest batch)."""
        cnt = len(idx)
        if self._xbuf is None or self._xbuf.shape[0] < cnt:
            self._xbuf = np.empty((cnt,) + self.x.shape[1:], dtype=self.x.dtype)
            if self.y is not None:
                self._ybuf = np.empty((cnt,) + self.y.shape[1:], dtype=self.y.dtype)
        xb = np.take(self.x, idx, axis=0, out=self._xbuf[:cnt])
        yb = None if self.y is None else np.take(self.y, idx, axis=0, out=self._ybuf[:cnt])
        return xb, yb

    def get_numpy_iterator(self):
        n, b = self.num_samples, self.batch_size
        for step in range(self.num_batches):
            lo = min(step * b, n)
            hi = min(lo + b, n)
            start, cnt = (lo, hi - lo) if self._part is None else self._part(lo, hi)
            if self._order is not None and self.shuffle:
                yield self._gather(self._order[start:start + cnt])
            else:
                stop = start + cnt
                yield self.x[start:stop], None if self.y is None else self.y[start:stop]


class EpochIterator:
    """Epochs ``initial_epoch .. epochs - 1`` over a data adapter.

    ``for epoch in it.epochs(): for step, batch in it.enumerate_epoch(): ...``
    """

    def __init__(self, adapter, initial_epoch=0, epochs=1):
        self.adapter = adapter
        self.initial_epoch = int(initial_epoch)
        self.num_epochs = int(epochs)

    @property
    def num_batches(self):
        return self.adapter.num_batches

    def epochs(self):
        return range(self.initial_epoch, self.num_epochs)

    def enumerate_epoch(self):
        """``(step, batch)`` for one epoch, the adapter told first that the epoch begins."""
        self.adapter.on_epoch_begin()
        return enumerate(self.adapter.get_numpy_iterator())
