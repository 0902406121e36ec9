"""The embeddable core: a separate Cython extension cimports cconv's kernels and runs them.

examples/embed/ is built against the cconv this test process imports (in place or installed),
exactly as a third-party package would build against the wheel: only the .pxd files that ship
next to cconv's compiled modules are needed.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import cconv
from cconv import ops

from . import reference as ref
from ._helpers import assert_close

pytestmark = [pytest.mark.build, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "embed"


def _compiler_missing():
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is None


def _cython_missing():
    return importlib.util.find_spec("Cython") is None


@pytest.fixture(scope="module")
def embed_demo(tmp_path_factory):
    if _compiler_missing():
        pytest.skip("no C compiler on PATH: cannot build the embed example")
    if _cython_missing():
        pytest.skip("Cython is not installed (it is in the [test] extra)")
    build = tmp_path_factory.mktemp("embed")
    for name in ("embed_demo.pyx", "setup.py"):
        shutil.copy(EXAMPLE / name, build / name)
    cconv_root = str(Path(cconv.__file__).resolve().parent.parent)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([cconv_root, os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=build,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"building examples/embed failed:\n{proc.stdout}\n{proc.stderr}"
    so = next(build.glob("embed_demo*.so"), None) or next(build.glob("embed_demo*.pyd"))
    spec = importlib.util.spec_from_file_location("embed_demo", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedded_kernels_match_ops_and_reference(embed_demo, dtype):
    x, kernel, bias, y, pooled = embed_demo.run(dtype)
    assert y.dtype == dtype and pooled.dtype == dtype
    want = ref.conv2d(x, kernel, bias, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    assert_close(y, want, dtype, "embedded conv2d")
    np.testing.assert_array_equal(y, ops.conv2d(x, kernel, bias))
    np.testing.assert_array_equal(pooled, ops.max_pool2d(y, 2))


def test_embedded_selfcheck(embed_demo):
    errors = embed_demo.selfcheck()
    assert errors["float64"] < 1e-12 and errors["float32"] < 1e-5, errors


def test_embedded_rejects_other_dtypes(embed_demo):
    with pytest.raises(TypeError, match="float32 or float64"):
        embed_demo.run(np.int32)
