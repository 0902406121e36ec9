"""Threads for repeated training steps on a machine that other processes may load.

A training step meets at several OpenMP barriers (the forward, the backward's chunks, the
gradient sums, the optimizer). When a busy process shares a core with one of the workers,
every barrier can wait out that worker's time slice: LeNet-5 training steps (batch 64) took
7.8 ms on 2 threads with one busy process per core where one thread took 4.5 ms and a quiet
machine 1.7 ms. Depending on how the scheduler placed the busy processes, 2 threads also ran
at 3.5 ms in the same conditions, so only a measurement tells which count is faster now.

:class:`LoadGuard` times each step and compares it with a one-thread step of the same batch
size: one is run (a *probe*) once a batch size comes twice in a row, and again whenever
``STALLS`` steps in a row took longer than the last one-thread step. A probe that beats
those steps sends the next ``BACKOFF_S`` seconds of steps to one thread; then the requested
count is tried again. On a quiet machine a step on 2 threads takes about half a one-thread
step, so after the first probe of each batch size nothing changes; batch sizes that change
from step to step (an epoch's last, short batch) are never probed. The thread count never
changes a result (every kernel is bit-identical for any count), only the time.
"""
import time

__all__ = ["LoadGuard"]

#: Steps in a row slower than the last one-thread step of their batch size before a probe.
STALLS = 3
#: Seconds of one-thread steps after a probe that beat the slow steps.
BACKOFF_S = 0.5
#: Seconds without probes after one that lost to the slow steps (several threads still pay).
PROBE_GAP_S = 2.0


class LoadGuard:
    """Chooses the threads of each call of a repeated step (``threads``) and learns from its
    time (``record``); keys are the steps' batch sizes. ``clock`` is replaceable for tests."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.serial_t = {}        # key: seconds of its last one-thread step
        self.probe = None         # the key whose next step runs on one thread, timed
        self.serial_until = -1.0  # clock time until which steps run on one thread
        self.no_probe_until = -1.0
        self.slow_key, self.slow = None, []   # the steps in a row slower than serial_t
        self.last_key = None      # the key of the step before
        self.wake = True          # the next multi-thread step wakes sleeping workers: not judged

    def threads(self, key, requested):
        """Threads for the next step of ``key`` when the caller asks for ``requested``."""
        if requested > 1 and (self.probe == key or self.clock() < self.serial_until):
            return 1
        return requested

    def record(self, key, requested, used, seconds):
        """The step of ``key`` just run on ``used`` of ``requested`` threads took ``seconds``."""
        if requested <= 1:
            return
        last, self.last_key = self.last_key, key
        if used == 1:
            self.wake = True
            if self.probe == key:
                self._probed(key, seconds)
            return
        wake, self.wake = self.wake, False
        serial = self.serial_t.get(key)
        if serial is None:
            if key == last:               # a batch size twice in a row: worth a probe
                self.probe = key
        elif wake:                        # the first after one-thread steps: workers woke up
            return
        elif seconds <= serial:
            self.slow = []
        else:
            if self.slow_key != key:
                self.slow_key, self.slow = key, []
            self.slow = (self.slow + [seconds])[-STALLS:]
            if len(self.slow) == STALLS and self.clock() >= self.no_probe_until:
                self.probe = key

    def _probed(self, key, seconds):
        """A probe of ``key`` took ``seconds``: back off to one thread if it beat the slow
        steps that asked for it, else leave probes alone for a while."""
        slow = self.slow if self.slow_key == key else []
        self.probe, self.serial_t[key], self.slow = None, seconds, []
        if not slow:                      # the first probe of this key
            return
        if seconds < min(slow):
            self.serial_until = self.clock() + BACKOFF_S
        else:
            self.no_probe_until = self.clock() + PROBE_GAP_S
