"""The build: without OpenMP it still compiles, runs serially and says so."""
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.build, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the serial build check uses gcc on Linux"
)
def test_build_without_openmp_runs_serially(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        "*.so", "*.pyd", "build", ".git", "*.egg-info", ".hypothesis", "__pycache__", "*.c"))
    env = dict(os.environ, CCONV_DISABLE_OPENMP="1")
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src, env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "WITHOUT OpenMP" in build.stdout
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import numpy as np, cconv; from cconv import ops;"
            "cconv.set_num_threads(4);"
            "x = np.arange(2*6*6*3, dtype=float).reshape(2, 6, 6, 3);"
            "y = ops.conv2d(x, np.ones((3, 3, 3, 2)), padding='same');"
            "dx, dk, db = ops.conv2d_backward(np.ones_like(y), x, np.ones((3, 3, 3, 2)),"
            " padding='same');"
            "print(cconv.openmp_enabled(), cconv.get_num_threads(), y[0, 2, 2, 0], db[0])",
        ],
        cwd=src,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    # the centre of an all-ones 3x3x3 window sums 27 consecutive-ish values of x
    x_sum = sum((r * 6 + c) * 3 + ch for r in (1, 2, 3) for c in (1, 2, 3) for ch in range(3))
    assert check.stdout.split() == ["False", "1", f"{float(x_sum)}", f"{2 * 6 * 6 * 1.0}"]
