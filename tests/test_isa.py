"""Instruction sets: cconv.isa(), the CCONV_ISA override, and the same results on every path."""
import os
import subprocess
import sys

import numpy as np
import pytest

import cconv
from cconv._ext.parallel import ISA_NAMES

from ._helpers import assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a child with CCONV_ISA set: every conv algorithm (direct, Winograd, pointwise,
# im2col) forward and backward, pooling and dense, float32 and float64, saved to argv[1].
CHILD = r"""
import sys
import numpy as np
import cconv
from cconv import ops
rng = np.random.default_rng(7)
out = {"isa": np.array(cconv.isa())}
cases = [((2, 9, 10, 1), (5, 5, 1, 6), 1, "same", 1),      # direct
         ((2, 9, 10, 16), (3, 3, 16, 20), 1, "same", 1),   # Winograd
         ((2, 7, 6, 8), (1, 1, 8, 12), 1, "valid", 1),     # pointwise
         ((2, 9, 10, 8), (3, 3, 8, 10), 2, "same", 1),     # im2col
         ((2, 9, 10, 8), (3, 3, 2, 8), 1, "same", 4),      # direct, grouped
         ((2, 9, 10, 3), (3, 3, 3, 40), 1, "same", 1),     # few taps: kgrad.h's dw
         ((2, 12, 13, 3), (3, 3, 3, 32), 1, "valid", 1),   # im2col rows read in place
         ((2, 9, 10, 37), (3, 3, 1, 74), 2, "same", 37),   # depthwise (dwconv.h), tails
         ((2, 11, 9, 24), (3, 3, 1, 24), 1, "valid", 24)]  # depthwise, whole vectors
for i, (xs, ks, s, p, g) in enumerate(cases):
    for dt in (np.float32, np.float64):
        x = rng.standard_normal(xs).astype(dt)
        k = rng.standard_normal(ks).astype(dt)
        b = rng.standard_normal(ks[3]).astype(dt)
        y = ops.conv2d(x, k, b, strides=s, padding=p, groups=g)
        dy = rng.standard_normal(y.shape).astype(dt)
        grads = ops.conv2d_backward(dy, x, k, strides=s, padding=p, groups=g)
        for name, a in zip(("y", "dx", "dk", "db"), (y, *grads)):
            out[f"{i}-{dt.__name__}-{name}"] = a
x = rng.standard_normal((2, 9, 9, 5))
out["max_pool"] = ops.max_pool2d(x, 3, 2, "same")
out["avg_pool"] = ops.avg_pool2d(x, 3, 2, "same")
out["dense"] = ops.dense(rng.standard_normal((7, 9)), rng.standard_normal((9, 4)))
# the plan's pooling, at every vector width (channel counts), with NaNs and ties
for c in (1, 3, 6, 16, 33):
    for dt in ("float32", "float64"):
        model = cconv.Sequential([cconv.Input((9, 9, c)),
                                  cconv.layers.MaxPooling2D(3, 2, padding="same", dtype=dt),
                                  cconv.layers.AveragePooling2D(2, 1, dtype=dt)])
        x = np.round(rng.standard_normal((3, 9, 9, c)), 1).astype(dt)
        x[x > 1.8] = np.nan
        out[f"plan_pool-{c}-{dt}"] = model.predict_on_batch(x)
# whole models through the compiled plan (im2col rows read in place, exact-size GEMM
# blocks, Winograd), with weights drawn here so that every child has the same
for name in ("tutorial_cnn", "lenet5"):
    model = getattr(cconv.models, name)(compile=False)
    model.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.2
                       for w in model.get_weights()])
    shape = (3, 32, 32, 3) if name == "tutorial_cnn" else (3, 28, 28, 1)
    xm = rng.standard_normal(shape).astype(np.float32)
    out[f"plan_{name}-float32"] = model.predict_on_batch(xm)
    out[f"plan_{name}_one-float32"] = model.predict_on_batch(xm[:1])
np.savez(sys.argv[1], **out)
"""


def _run(tmp_path, value):
    path = str(tmp_path / f"{value or 'auto'}.npz")
    env = dict(os.environ)
    env.pop("CCONV_ISA", None)
    if value:
        env["CCONV_ISA"] = value
    proc = subprocess.run([sys.executable, "-c", CHILD, path], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dict(np.load(path)), proc.stderr


def test_isa_names_the_instruction_set_in_use():
    assert cconv.isa() in ISA_NAMES
    assert ISA_NAMES == ("generic", "avx2", "avx512")


def test_every_isa_gives_the_same_results_within_rounding(tmp_path):
    auto, _ = _run(tmp_path, "")
    best = ISA_NAMES.index(str(auto["isa"]))
    for value in ISA_NAMES:
        got, err = _run(tmp_path, value)
        # asking for more than the CPU has runs the best it has, with a warning
        assert str(got["isa"]) == ISA_NAMES[min(ISA_NAMES.index(value), best)]
        assert ("CCONV_ISA" in err) == (ISA_NAMES.index(value) > best), err
        for key, expected in auto.items():
            if key != "isa":
                dtype = np.float32 if "float32" in key else np.float64
                assert got[key].dtype == expected.dtype
                if key.startswith("plan_pool"):     # pooling only selects and sums in order
                    assert got[key].tobytes() == expected.tobytes(), f"{value}: {key}"
                else:
                    assert_close(got[key], expected, dtype, f"CCONV_ISA={value}: {key}")


def test_an_invalid_isa_warns_naming_the_variable_and_the_valid_values():
    env = dict(os.environ, CCONV_ISA="sse9")
    proc = subprocess.run([sys.executable, "-c", "import cconv; print(cconv.isa())"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "CCONV_ISA='sse9'" in proc.stderr
    assert "generic, avx2, avx512" in proc.stderr
    assert proc.stdout.strip() in ISA_NAMES


@pytest.mark.parametrize("value", ["generic", "avx2"])
def test_the_override_caps_the_level(value):
    env = dict(os.environ, CCONV_ISA=value)
    proc = subprocess.run([sys.executable, "-c", "import cconv; print(cconv.isa())"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert ISA_NAMES.index(proc.stdout.strip()) <= ISA_NAMES.index(value)
