"""cconv.trainers.load_guard: training steps move to one thread while several threads lose to it (a
busy machine), and back; the thread count never changes a result. Clocks here are fake."""
import threading

import numpy as np
import pytest

import cconv
from cconv import load_guard as lg
from cconv._ext.parallel import capped_threads


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def steps(guard, key, seconds, count, requested=2):
    """Run ``count`` steps of ``key`` that take ``seconds`` on 2 threads and ``seconds[1]``
    on one (``seconds`` = (multi, single)); the threads each step used."""
    used = []
    for _ in range(count):
        t = guard.threads(key, requested)
        guard.clock.now += seconds[t == 1]
        guard.record(key, requested, t, seconds[t == 1])
        used.append(t)
    return used


def test_first_steps_probe_one_thread_once_then_stay_on_the_requested_count():
    guard = lg.LoadGuard(FakeClock())
    # a batch size seen twice in a row gets the one-thread probe
    assert steps(guard, 64, (1e-3, 2e-3), 10) == [2, 2, 1] + [2] * 7
    assert guard.serial_t == {64: 2e-3}
    assert steps(guard, 32, (1e-3, 2e-3), 4) == [2, 2, 1, 2]  # each batch size once
    assert steps(guard, 64, (1e-3, 2e-3), 100) == [2] * 100


def test_batch_sizes_that_change_every_step_are_not_probed():
    guard = lg.LoadGuard(FakeClock())
    for n in range(1, 50):
        assert steps(guard, n, (1e-3, 2e-3), 1) == [2]
    assert guard.serial_t == {}


def test_slow_steps_back_off_to_one_thread_until_the_back_off_ends():
    guard = lg.LoadGuard(FakeClock())
    steps(guard, 64, (1e-3, 2e-3), 5)
    # now 2 threads take 8 ms and one 4 ms (a busy neighbour preempts the workers): a lone
    # slow step is noise; STALLS in a row ask for a probe, which wins: one thread
    used = steps(guard, 64, (8e-3, 4e-3), lg.STALLS + 1)
    assert used == [2] * lg.STALLS + [1]
    assert guard.serial_until == pytest.approx(guard.clock.now + lg.BACKOFF_S)
    n = int(lg.BACKOFF_S / 4e-3) - 1
    assert steps(guard, 64, (8e-3, 4e-3), n) == [1] * n
    guard.clock.now = guard.serial_until
    # the load went: back on 2 threads (the first wakes the workers and is not judged)
    assert steps(guard, 64, (1e-3, 4e-3), 10) == [2] * 10


def test_slow_steps_that_still_beat_one_thread_keep_the_threads():
    guard = lg.LoadGuard(FakeClock())
    steps(guard, 64, (1e-3, 2e-3), 5)
    # both slower now, 2 threads still faster: one probe, then none for PROBE_GAP_S
    used = steps(guard, 64, (3e-3, 5e-3), lg.STALLS + 1 + 100)
    assert used == [2] * lg.STALLS + [1] + [2] * 100
    assert guard.serial_t[64] == 5e-3
    # after that a step slower than the new one-thread time asks again
    guard.clock.now += lg.PROBE_GAP_S
    assert steps(guard, 64, (6e-3, 5e-3), lg.STALLS + 1) == [2] * lg.STALLS + [1]


def test_inference_settings_probe_at_once_and_back_off_without_a_probe():
    """The plan's settings (``INFERENCE``): the first call of a key asks for the probe, a call
    is slow only over 3x the one-thread time, and STALLS slow calls back off at once; the
    back-off's one-thread calls time the key anew."""
    guard = lg.LoadGuard(FakeClock(), **lg.INFERENCE)
    assert steps(guard, 1, (1e-4, 2e-4), 5) == [2, 1, 2, 2, 2]
    assert steps(guard, 1, (5e-4, 2e-4), 10) == [2] * 10   # slower, not 3x: kept
    used = steps(guard, 1, (5e-3, 3e-4), lg.STALLS + 2)
    assert used == [2] * lg.STALLS + [1] * 2
    assert guard.serial_t[1] == 3e-4 and guard.probe is None
    guard.clock.now = guard.serial_until
    # still stalled: the first call wakes the workers, STALLS more back off again
    assert steps(guard, 1, (5e-3, 3e-4), lg.STALLS + 2) == [2] * (lg.STALLS + 1) + [1]


@pytest.mark.parametrize("kwargs, message", [
    ({"probe_after": 0}, "probe_after must be an int >= 1, got 0"),
    ({"probe_after": 1.5}, "probe_after must be an int >= 1, got 1.5"),
    ({"probe_after": True}, "probe_after must be an int >= 1, got True"),
    ({"stall_ratio": 0.5}, "stall_ratio must be a number >= 1, got 0.5"),
    ({"stall_ratio": float("nan")}, "stall_ratio must be a number >= 1, got nan"),
    ({"stall_ratio": "3"}, "stall_ratio must be a number >= 1, got '3'"),
])
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lg.LoadGuard(**kwargs)


def test_one_requested_thread_is_left_alone():
    guard = lg.LoadGuard(FakeClock())
    assert steps(guard, 64, (1e-3, 1e-3), 20, requested=1) == [1] * 20
    assert guard.serial_t == {} and guard.probe is None


def test_capped_threads_is_per_python_thread(restore_threads):
    cconv.set_num_threads(3)
    seen = []
    with capped_threads(1):
        assert cconv.get_num_threads() == 1
        other = threading.Thread(target=lambda: seen.append(cconv.get_num_threads()))
        other.start()
        other.join()
        with capped_threads(5):           # a cap never raises the count
            assert cconv.get_num_threads() == 3
        assert cconv.get_num_threads() == 1
    assert seen == [3] and cconv.get_num_threads() == 3
    assert cconv.set_num_threads(2) == 3


@pytest.mark.parametrize("n, error, message", [
    (0, ValueError, "capped_threads: n must be >= 1, got 0"),
    (-2, ValueError, "capped_threads: n must be >= 1, got -2"),
    (5000, ValueError, "capped_threads: n must be <= 4096, got 5000"),
    (1.5, TypeError, "capped_threads: n must be a positive int, got 1.5"),
    (True, TypeError, "capped_threads: n must be a positive int, got True"),
    (None, TypeError, "capped_threads: n must be a positive int, got None"),
])
def test_capped_threads_rejects_bad_counts(n, error, message, restore_threads):
    cconv.set_num_threads(2)
    with pytest.raises(error, match=message):
        with capped_threads(n):
            pass
    assert cconv.get_num_threads() == 2


@pytest.mark.skipif(not cconv.openmp_enabled(), reason="built without OpenMP: always one thread")
@pytest.mark.parametrize("model_fn", [cconv.models.lenet5, cconv.models.tutorial_cnn])
def test_fit_with_backed_off_steps_gives_the_same_weights(model_fn, restore_threads):
    """Steps the guard sends to one thread (a fake clock makes every 2-thread step look
    slow) train to the same bits as steps on 2 threads."""
    cconv.set_num_threads(2)
    rng = np.random.default_rng(0)
    models = [model_fn(), model_fn()]
    models[1].set_weights(models[0].get_weights())
    x = rng.standard_normal((16 * 16,) + models[0].input_shape[1:]).astype(np.float32)
    labels = rng.integers(0, 10, len(x))
    y = labels if model_fn is cconv.models.tutorial_cnn else np.eye(10, dtype=np.float32)[labels]
    used = []

    def clock():                          # 2 threads "take" 10x as long as one
        clock.now += 1e-3 if cconv.get_num_threads() == 1 else 1e-2
        return clock.now
    clock.now = 100.0
    guard = models[1]._load_guard = lg.LoadGuard(clock)
    threads = guard.threads

    def recorded(key, requested):
        used.append(threads(key, requested))
        return used[-1]
    guard.threads = recorded
    for m in models:
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    # two steps, the first probe, wake-up, STALLS slow steps, a winning probe, its back-off
    assert used == [2, 2, 1, 2] + [2] * lg.STALLS + [1] * (12 - lg.STALLS)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_array_equal(a, b)
