"""Memory: no growth over many calls, impossible sizes refused cleanly, the valgrind script.

scripts/memcheck.sh (valgrind memcheck over scripts/memcheck_driver.py) takes about a minute
and a half; it runs here whenever valgrind is installed (CCONV_MEMCHECK=0 skips it).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cconv import classic, ops

ROOT = Path(__file__).resolve().parent.parent


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _small_calls(rng):
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    b = np.zeros(4, np.float32)
    dy = np.ones((2, 8, 8, 4), np.float32)
    dyp = np.ones((2, 4, 4, 3), np.float32)
    xd = x.astype(np.float64)

    def once():
        ops.conv2d(x, k, b, padding="same")
        ops.conv2d_backward(dy, x, k, padding="same")
        ops.max_pool2d(x, 2)
        ops.avg_pool2d(xd, 2)
        ops.max_pool2d_backward(dyp, x, 2)
        ops.avg_pool2d_backward(dyp, xd, 2)
        classic.conv_forward(xd, k, b.reshape(1, 1, 1, 4), np.tanh, padding="valid")
        try:                     # the error paths must not leak either
            ops.conv2d(x, k[:, :, :2])
        except ValueError:
            pass
    return once


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc (Linux)")
def test_rss_stays_flat_over_10k_calls():
    once = _small_calls(np.random.default_rng(0))
    for _ in range(250):           # warm up: allocator pools, caches, lazily built objects
        once()
    before = _rss_bytes()
    for _ in range(1250):          # 1250 rounds of 8 calls: 10,000 calls
        once()
    grown = _rss_bytes() - before
    # leaking one small output (>= 500 bytes) or workspace per call would add >= 5 MB
    assert grown < 2 * 2**20, f"RSS grew by {grown / 2**20:.2f} MiB over 10,000 calls"


@pytest.mark.parametrize(
    "call",
    [
        # a batch that cannot be materialised (a broadcast view of 2**40 images)
        lambda: ops.conv2d(
            np.broadcast_to(np.zeros((1, 1, 1, 1), np.float32), (2**40, 4, 4, 1)),
            np.ones((1, 1, 1, 1), np.float32),
        ),
        lambda: ops.max_pool2d(np.broadcast_to(np.zeros(1), (2**20, 2**10, 2**10, 1)), 2),
        # outputs whose size overflows: padding makes 2**41 x 2**41 windows
        lambda: ops.conv2d(np.zeros((1, 2, 2, 1)), np.ones((1, 1, 1, 1)), padding=2**40),
        lambda: ops.avg_pool2d(np.zeros((1, 2, 2, 1)), (2**62, 1), strides=1, padding="same"),
        # an output of 2**46 bytes
        lambda: ops.conv2d(
            np.zeros((1, 2, 2, 1)), np.ones((1, 1, 1, 2**20)), padding=((2**21, 0), (0, 0))
        ),
        lambda: ops.conv2d_backward(
            np.zeros((1, 1, 1, 1)), np.zeros((1, 2, 2, 1)), np.ones((1, 1, 1, 1)), padding=2**61
        ),
        lambda: ops.conv_output_shape((2**62, 1), 1),
    ],
)
def test_impossible_sizes_raise(call):
    with pytest.raises((MemoryError, ValueError)) as info:
        call()
    assert str(info.value)


def test_allocation_failure_message_names_the_op():
    with pytest.raises((MemoryError, ValueError), match=r"conv2d: .*shape"):
        ops.conv2d(np.zeros((1, 2, 2, 1)), np.ones((1, 1, 1, 2**20)), padding=((2**21, 0), (0, 0)))


@pytest.mark.skipif(os.environ.get("CCONV_MEMCHECK") == "0", reason="CCONV_MEMCHECK=0")
@pytest.mark.skipif(
    shutil.which("valgrind") is None,
    reason="valgrind is not installed (apt-get install valgrind): scripts/memcheck.sh needs it",
)
@pytest.mark.slow
def test_memcheck_script(tmp_path):
    env = dict(os.environ, MEMCHECK_LOG=str(tmp_path / "memcheck.log"), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "memcheck.sh")], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no invalid read/write/free" in proc.stdout
