"""Fork safety: a child forked after kernels ran on two threads runs its own calls (serially)
instead of hanging inside OpenMP. Each scenario runs in a subprocess with a timeout."""
import os
import subprocess
import sys

import pytest

import cconv
from cconv._ext.parallel import GNU_OPENMP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only"),
    pytest.mark.skipif(not cconv.openmp_enabled(), reason="built without OpenMP: no threads"),
]

SETUP = r"""
import os, sys, time
import numpy as np
import cconv
from cconv import ops
cconv.set_num_threads(2)
x = np.random.default_rng(0).standard_normal((8, 32, 32, 16)).astype(np.float32)
kernel = np.ones((3, 3, 16, 16), np.float32)
expected = ops.conv2d(x, kernel), ops.max_pool2d(x, 2)   # on two threads: OpenMP's pool runs


def work(_=None):
    y, p = ops.conv2d(x, kernel), ops.max_pool2d(x, 2)
    return bool(np.array_equal(y, expected[0]) and np.array_equal(p, expected[1]))
"""

FORK = SETUP + r"""
pid = os.fork()
if pid == 0:
    ok = work() and cconv.get_num_threads() == 1
    cconv.set_num_threads(1)
    ok = ok and work()
    os._exit(0 if ok else 3)
for _ in range(300):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.1)
os.kill(pid, 9)
os.waitpid(pid, 0)
sys.exit("the forked child hung")
"""

POOL = SETUP + r"""
import multiprocessing
with multiprocessing.get_context("fork").Pool(2) as pool:
    results = pool.map_async(work, range(4)).get(timeout=30)
assert all(results), results
assert work() and cconv.get_num_threads() == 2   # the parent keeps its threads
"""


def _run(code):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_a_forked_child_runs_conv_and_pooling_after_the_parent_used_two_threads():
    proc = _run(FORK)
    assert proc.returncode == 0, proc.stderr


def test_a_multiprocessing_fork_pool_maps_conv_and_pooling():
    proc = _run(POOL)
    assert proc.returncode == 0, proc.stderr


def test_threads_in_a_forked_child_warn_with_gnu_openmp_and_never_hang():
    """GNU OpenMP cannot start threads in the child: set_num_threads(2) warns, the child
    stays on one thread; other runtimes restart their pool and get two threads back."""
    expected = 1 if GNU_OPENMP else 2
    code = FORK.replace("    cconv.set_num_threads(1)\n", f"""    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cconv.set_num_threads(2)
    ok = ok and cconv.get_num_threads() == {expected}
    ok = ok and (len(caught) == 1) == {GNU_OPENMP}
""")
    assert code != FORK
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
