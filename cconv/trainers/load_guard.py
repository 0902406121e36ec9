"""Threads for repeated calls (training steps, the plan's node-by-node inference calls) on a
machine that other processes may load.

A training step meets at several OpenMP barriers (the forward, the backward's chunks, the
gradient sums, the optimizer), and a plan's node-by-node call at one per node. When a busy
process shares a core with one of the workers, every barrier can wait out that worker's time
slice: LeNet-5 training steps (batch 64) took 7.8 ms on 2 threads with one busy process per
core where one thread took 4.5 ms and a quiet machine 1.7 ms; one image of the tutorial CNN
node by node took 5.5 ms where it takes 60-90 us quiet and 110-160 us on one thread.
Depending on how the scheduler placed the busy processes, 2 threads also ran LeNet-5's steps
at 3.5 ms in the same conditions, so only a measurement tells which count is faster now.

:class:`LoadGuard` times each call and compares it with the last one-thread call of the same
key (the batch size): one is run (a *probe*) once a key comes ``probe_after`` times in a
row. ``STALLS`` calls in a row slower than ``stall_ratio`` times that one-thread time (not
counting the first after one-thread calls, which wakes the sleeping workers) either ask for
another probe, which must beat them (``probe_stalls=True``), or stand for one
(``probe_stalls=False``); a back-off sends the next ``BACKOFF_S`` seconds of calls to one
thread, then the requested count is tried again. On a quiet machine several threads take
about half a one-thread call, so after the first probe of each key nothing changes. The
thread count never changes a result (every kernel is bit-identical for any count), only the
time.

Its users: ``Trainer._train_step`` (``LoadGuard()``: the defaults) and the plan's node-by-node
segments (``LoadGuard(**INFERENCE)``, ``cconv/plan.py``).
"""
import time

__all__ = ["LoadGuard", "INFERENCE"]

#: Slow calls in a row (of one key) before a probe or a back-off.
STALLS = 3
#: Seconds of one-thread calls after a back-off.
BACKOFF_S = 0.5
#: Seconds without probes after one that lost to the slow calls (several threads still pay).
PROBE_GAP_S = 2.0

#: The plan's node-by-node inference calls: see :class:`LoadGuard` for why they differ.
INFERENCE = {"probe_after": 1, "stall_ratio": 3.0, "probe_stalls": False}


class LoadGuard:
    """Chooses the threads of each call of a repeated step (``threads``) and learns from its
    time (``record``); keys are the calls' batch sizes, times are seconds of ``clock``.

    Args:
        clock: a function giving seconds (``time.perf_counter``; replaceable for tests).
        probe_after: calls of a key in a row (of at least 2 threads) before its first probe.
            Training: 2, so that batch sizes that change from step to step (an epoch's last,
            short batch) are never probed. Inference node by node: 1; such a call is a few
            images (fewer chunks than threads), so its probe costs about 0.1 ms.
        stall_ratio: a call is slow when it takes over ``stall_ratio`` times the key's last
            one-thread call. Training: 1.0 (steps are milliseconds long: any step that loses
            to one thread is worth a probe). Inference node by node: 3.0; a call lasts about
            0.1 ms, where a quiet machine has lone spikes, while a preempted worker costs a
            whole time slice (5.5 ms against 110-160 us on one thread).
        probe_stalls: with True (training), ``STALLS`` slow calls in a row ask for a probe,
            and only a probe that beats them backs off (a probe that loses pauses probes for
            ``PROBE_GAP_S``): slow steps on several threads may still beat one thread (3.5 ms
            against 4.5 ms above). With False (inference), they back off at once: calls over
            3x the one-thread time lose to it anyway.
    """

    def __init__(self, clock=time.perf_counter, probe_after=2, stall_ratio=1.0,
                 probe_stalls=True):
        if isinstance(probe_after, bool) or not isinstance(probe_after, int) or probe_after < 1:
            raise ValueError(f"LoadGuard: probe_after must be an int >= 1, got {probe_after!r}")
        if isinstance(stall_ratio, bool) or not isinstance(stall_ratio, (int, float)) or not (
                stall_ratio >= 1.0):
            raise ValueError(f"LoadGuard: stall_ratio must be a number >= 1, got "
                             f"{stall_ratio!r}")
        self.clock, self.probe_after = clock, probe_after
        self.stall_ratio, self.probe_stalls = float(stall_ratio), bool(probe_stalls)
        self.serial_t = {}        # key: seconds of its last one-thread call
        self.probe = None         # the key whose next call runs on one thread, timed
        self.serial_until = -1.0  # clock time until which calls run on one thread
        self.no_probe_until = -1.0
        self.slow_key, self.slow = None, []   # the calls in a row slower than the ratio
        self.last_key, self.streak = None, 0  # the key of the call before; its calls in a row
        self.wake = True          # the next multi-thread call wakes sleeping workers: not judged

    def threads(self, key, requested):
        """Threads for the next call of ``key`` when the caller asks for ``requested``."""
        if requested > 1 and (self.probe == key or self.clock() < self.serial_until):
            return 1
        return requested

    def record(self, key, requested, used, seconds):
        """The call of ``key`` just run on ``used`` of ``requested`` threads took ``seconds``."""
        if requested <= 1:
            return
        self.streak = self.streak + 1 if key == self.last_key else 1
        self.last_key = key
        if used == 1:
            self.wake, self.serial_t[key] = True, seconds
            if self.probe == key:
                self._probed(key, seconds)
            return
        wake, self.wake = self.wake, False
        serial = self.serial_t.get(key)
        if serial is None:
            if self.streak >= self.probe_after:
                self.probe = key
        elif wake:                        # the first after one-thread calls: workers woke up
            return
        elif seconds <= self.stall_ratio * serial:
            self.slow = []
        else:
            if self.slow_key != key:
                self.slow_key, self.slow = key, []
            self.slow = (self.slow + [seconds])[-STALLS:]
            if len(self.slow) == STALLS:
                self._stalled(key)

    def _stalled(self, key):
        """``STALLS`` calls of ``key`` in a row were slow: ask for a probe, or back off."""
        if not self.probe_stalls:
            self.serial_until, self.slow = self.clock() + BACKOFF_S, []
        elif self.clock() >= self.no_probe_until:
            self.probe = key

    def _probed(self, key, seconds):
        """A probe of ``key`` took ``seconds``: back off to one thread if it beat the slow
        calls that asked for it, else leave probes alone for a while."""
        slow = self.slow if self.slow_key == key else []
        self.probe, self.slow = None, []
        if not slow:                      # the first probe of this key
            return
        if seconds < min(slow):
            self.serial_until = self.clock() + BACKOFF_S
        else:
            self.no_probe_until = self.clock() + PROBE_GAP_S
