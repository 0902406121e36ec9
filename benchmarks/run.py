"""cconv against TensorFlow (and PyTorch when installed), same arrays.

    python benchmarks/run.py                 # everything, Markdown table + JSON
    python benchmarks/run.py --only ops      # ops | dw | pool | models | memory
    python benchmarks/run.py --quick         # fewer repeats (a smoke run)
    python benchmarks/run.py --same-process  # ops and pool with every runtime in one process
    python benchmarks/run.py --rounds 5      # ops and pool: 5 interleaved rounds (default 3)

The ops and pool suites measure each runtime in its own process (the same seeded arrays in
each): OpenMP workers of one runtime spinning beside another's thread pool slowed both here,
so one process showed cconv's stride-2 forward+backward at half its speed alone. The
runtimes take turns over ``--rounds`` rounds and each time is the median over rounds.
"Forward+backward" computes the output and all three gradients in every runtime (TensorFlow's
graph is made to return the output, which its gradients do not need and it would prune).

Times are medians of repeated runs after warm-up; ratios are ``other / cconv`` (above 1:
cconv is faster). These machines are shared and noisy: compare ratios, not raw times.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cconv  # noqa: E402
from cconv import ops  # noqa: E402

# name, batch, (h, w, cin), cout, kernel, strides, padding
CONV_CASES = [
    ("lenet conv1 28x28x1->6 k5 same", 64, (28, 28, 1), 6, 5, 1, "same"),
    ("lenet conv2 14x14x6->16 k5", 64, (14, 14, 6), 16, 5, 1, "valid"),
    ("32x32x3->32 k3", 64, (32, 32, 3), 32, 3, 1, "valid"),
    ("15x15x32->64 k3", 64, (15, 15, 32), 64, 3, 1, "valid"),
    ("28x28x96->96 k3 same", 64, (28, 28, 96), 96, 3, 1, "same"),
    ("b32 56x56x64->64 k3 same", 32, (56, 56, 64), 64, 3, 1, "same"),
    ("b32 56x56x64->128 k3 s2 same", 32, (56, 56, 64), 128, 3, 2, "same"),
]
# depthwise: name, batch, (h, w, channels), depth multiplier, kernel, strides, padding
DW_CASES = [
    ("dw 1x32x32x64 k3 same", 1, (32, 32, 64), 1, 3, 1, "same"),
    ("dw 256x32x32x64 k3 same", 256, (32, 32, 64), 1, 3, 1, "same"),
    ("dw 64x112x112x32 k3 s2 same", 64, (112, 112, 32), 1, 3, 2, "same"),
    ("dw 32x56x56x128 k3 same", 32, (56, 56, 128), 1, 3, 1, "same"),
]
POOL_SHAPE = (64, 32, 32, 32)


def median_time(fn, repeat, min_time=0.2):
    """Median seconds per call: warm up twice, then time ``repeat`` calls (more if fast)."""
    fn()
    fn()
    times = []
    t_start = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - t_start < min_time and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def conv_flops(batch, hwc, cout, k, strides, padding):
    oh, ow = ops.conv_output_shape(hwc[:2], k, strides, padding)
    return 2.0 * batch * oh * ow * cout * k * k * hwc[2]


# --------------------------------------------------------------------------- frameworks
def tf_conv_fns(x, kernel, bias, strides, padding):
    import tensorflow as tf

    tx, tk, tb = tf.constant(x), tf.Variable(kernel), tf.Variable(bias)
    pad = padding.upper()

    @tf.function
    def fwd(a):
        return tf.nn.bias_add(tf.nn.conv2d(a, tk, strides, pad), tb)

    @tf.function
    def fwd_bwd(a):
        with tf.GradientTape() as tape:
            tape.watch(a)
            y = tf.nn.bias_add(tf.nn.conv2d(a, tk, strides, pad), tb)
        # y is returned too: the gradients do not need it, and tf.function would otherwise
        # prune the forward convolution (stride-2 56x56x64->128: 44 ms "forward+backward"
        # against 62 with the forward that cconv's time includes)
        return [y] + tape.gradient(y, [a, tk, tb], output_gradients=tf.ones_like(y))

    return (lambda: fwd(tx).numpy()), (lambda: [g.numpy() for g in fwd_bwd(tx)])


def torch_conv_fns(x, kernel, bias, strides, padding):
    import torch
    import torch.nn.functional as F

    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    tk = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
    tb = torch.from_numpy(bias.copy()).requires_grad_(True)
    if padding == "same" and strides != 1:
        return None, None  # PyTorch's padding="same" does not allow strides
    pad = padding if padding in ("same", "valid") else 0

    def fwd():
        with torch.no_grad():
            return F.conv2d(tx, tk, tb, strides, pad).numpy()

    def fwd_bwd():
        tx.grad = tk.grad = tb.grad = None
        y = F.conv2d(tx, tk, tb, strides, pad)
        y.backward(torch.ones_like(y))
        return tx.grad, tk.grad, tb.grad

    return fwd, fwd_bwd


def cconv_conv_fns(x, kernel, bias, strides, padding):
    def fwd():
        return ops.conv2d(x, kernel, bias, strides=strides, padding=padding)

    dy = np.ones_like(fwd())

    def fwd_bwd():
        ops.conv2d(x, kernel, bias, strides=strides, padding=padding)
        return ops.conv2d_backward(dy, x, kernel, strides=strides, padding=padding)

    return fwd, fwd_bwd


def tf_dw_fns(x, kernel, bias, strides, padding):
    """TensorFlow's depthwise convolution (kernel (kh, kw, c, multiplier)) + bias."""
    import tensorflow as tf

    tx, tk, tb = tf.constant(x), tf.Variable(kernel), tf.Variable(bias)
    st, pad = (1, strides, strides, 1), padding.upper()

    @tf.function
    def fwd(a):
        return tf.nn.bias_add(tf.nn.depthwise_conv2d(a, tk, st, pad), tb)

    @tf.function
    def fwd_bwd(a):
        with tf.GradientTape() as tape:
            tape.watch(a)
            y = tf.nn.bias_add(tf.nn.depthwise_conv2d(a, tk, st, pad), tb)
        return [y] + tape.gradient(y, [a, tk, tb], output_gradients=tf.ones_like(y))

    return (lambda: fwd(tx).numpy()), (lambda: [g.numpy() for g in fwd_bwd(tx)])


def cconv_dw_fns(x, kernel, bias, strides, padding):
    """cconv's depthwise convolution: the grouped convolution DepthwiseConv2D runs."""
    kh, kw, c, m = kernel.shape
    k = kernel.reshape(kh, kw, 1, c * m)
    kw_ = dict(strides=strides, padding=padding, groups=c)

    def fwd():
        return ops.conv2d(x, k, bias, **kw_)

    dy = np.ones_like(fwd())

    def fwd_bwd():
        ops.conv2d(x, k, bias, **kw_)
        return ops.conv2d_backward(dy, x, k, **kw_)

    return fwd, fwd_bwd


def have(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# --------------------------------------------------------------------------- suites
def bench_ops(repeat, frameworks, runtimes=None, show=True):
    """Rows of the conv cases for the runtimes measured here (default: cconv and
    ``frameworks``); ``show`` prints each row (it needs cconv's time)."""
    runtimes = ["cconv"] + list(frameworks) if runtimes is None else runtimes
    rows = []
    rng = np.random.default_rng(0)
    for name, batch, hwc, cout, k, strides, padding in CONV_CASES:
        x = rng.standard_normal((batch,) + hwc, dtype=np.float32)
        kernel = rng.standard_normal((k, k, hwc[2], cout), dtype=np.float32) * 0.1
        bias = rng.standard_normal(cout, dtype=np.float32)
        flops = conv_flops(batch, hwc, cout, k, strides, padding)
        fns = {}
        if "cconv" in runtimes:
            fns["cconv"] = cconv_conv_fns(x, kernel, bias, strides, padding)
        if "tensorflow" in runtimes:
            fns["tensorflow"] = tf_conv_fns(x, kernel, bias, strides, padding)
        if "torch" in runtimes:
            fns["torch"] = torch_conv_fns(x, kernel, bias, strides, padding)
        for phase, idx, mult in (("forward", 0, 1.0), ("forward+backward", 1, 3.0)):
            row = {"case": name, "phase": phase}
            for fw, pair in fns.items():
                if pair[idx] is not None:
                    t = median_time(pair[idx], repeat)
                    row[fw + "_ms"] = t * 1e3
                    row[fw + "_gflops"] = mult * flops / t / 1e9
            rows.append(row)
            if show:
                print_row(row, frameworks)
    return rows


def bench_dw(repeat, frameworks, runtimes=None, show=True):
    """As :func:`bench_ops`, for the depthwise cases (cconv and TensorFlow)."""
    runtimes = ["cconv"] + list(frameworks) if runtimes is None else runtimes
    rows = []
    rng = np.random.default_rng(2)
    for name, batch, hwc, mult, k, strides, padding in DW_CASES:
        x = rng.standard_normal((batch,) + hwc, dtype=np.float32)
        kernel = rng.standard_normal((k, k, hwc[2], mult), dtype=np.float32) * 0.1
        bias = rng.standard_normal(hwc[2] * mult, dtype=np.float32)
        oh, ow = ops.conv_output_shape(hwc[:2], k, strides, padding)
        flops = 2.0 * batch * oh * ow * hwc[2] * mult * k * k
        fns = {}
        if "cconv" in runtimes:
            fns["cconv"] = cconv_dw_fns(x, kernel, bias, strides, padding)
        if "tensorflow" in runtimes:
            fns["tensorflow"] = tf_dw_fns(x, kernel, bias, strides, padding)
        for phase, idx, mult_f in (("forward", 0, 1.0), ("forward+backward", 1, 3.0)):
            row = {"case": name, "phase": phase}
            for fw, pair in fns.items():
                t = median_time(pair[idx], repeat)
                row[fw + "_ms"] = t * 1e3
                row[fw + "_gflops"] = mult_f * flops / t / 1e9
            rows.append(row)
            if show:
                print_row(row, frameworks)
    return rows


def bench_pool(repeat, frameworks, runtimes=None, show=True):
    """As :func:`bench_ops`, for max and average pooling."""
    runtimes = ["cconv"] + list(frameworks) if runtimes is None else runtimes
    rows = []
    x = np.random.default_rng(1).standard_normal(POOL_SHAPE, dtype=np.float32)
    for mode in ("max", "avg"):
        fwd = ops.max_pool2d if mode == "max" else ops.avg_pool2d
        bwd = ops.max_pool2d_backward if mode == "max" else ops.avg_pool2d_backward
        dy = np.ones_like(fwd(x, 2))
        fns = {}
        if "cconv" in runtimes:
            fns["cconv"] = (lambda: fwd(x, 2), lambda: (fwd(x, 2), bwd(dy, x, 2)))
        if "tensorflow" in runtimes:
            import tensorflow as tf

            tfp = tf.nn.max_pool2d if mode == "max" else tf.nn.avg_pool2d
            tx = tf.constant(x)

            @tf.function
            def tf_fwd(a, tfp=tfp):
                return tfp(a, 2, 2, "VALID")

            @tf.function
            def tf_bwd(a, tfp=tfp):
                with tf.GradientTape() as tape:
                    tape.watch(a)
                    y = tfp(a, 2, 2, "VALID")
                # y returned so that the forward is not pruned (as for the convolutions)
                return y, tape.gradient(y, a, output_gradients=tf.ones_like(y))

            fns["tensorflow"] = (lambda f=tf_fwd, a=tx: f(a).numpy(),
                                 lambda f=tf_bwd, a=tx: [t.numpy() for t in f(a)])
        if "torch" in runtimes:
            import torch
            import torch.nn.functional as F

            tpool = F.max_pool2d if mode == "max" else F.avg_pool2d
            tt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)

            def t_fwd(tpool=tpool):
                with torch.no_grad():
                    return tpool(tt, 2).numpy()

            def t_bwd(tpool=tpool):
                tt.grad = None
                y = tpool(tt, 2)
                y.backward(torch.ones_like(y))
                return tt.grad

            fns["torch"] = (t_fwd, t_bwd)
        for phase, idx in (("forward", 0), ("forward+backward", 1)):
            row = {"case": f"{mode} pool 2x2 64x32x32x32", "phase": phase}
            for fw, pair in fns.items():
                row[fw + "_ms"] = median_time(pair[idx], repeat) * 1e3
            rows.append(row)
            if show:
                print_row(row, frameworks)
    return rows


SUITES = {"ops": bench_ops, "dw": bench_dw, "pool": bench_pool}


def isolated(suite, repeat, frameworks, quick, rounds=1):
    """``suite``'s rows with each runtime measured in its own process (this script with
    ``--worker``), merged case by case and printed. With several ``rounds`` the runtimes
    take turns (the order reversed every other round, so that a noisy spell on this shared
    machine does not hit one runtime only) and each time is the median over rounds."""
    merged = None
    runtimes = ["cconv"] + list(frameworks)
    for r in range(rounds):
        for runtime in (runtimes if r % 2 == 0 else runtimes[::-1]):
            out = os.path.join(HERE, "results", f".worker-{suite}-{runtime}.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--only", suite, "--worker",
                   runtime, "--json", out] + (["--quick"] if quick else [])
            subprocess.run(cmd, check=True)
            with open(out) as f:
                rows = json.load(f)[suite]
            os.remove(out)
            if merged is None:
                merged = [{k: (v if k in ("case", "phase") else [v]) for k, v in row.items()}
                          for row in rows]
                continue
            for row, other in zip(merged, rows):
                for k, v in other.items():
                    if k not in ("case", "phase"):
                        row.setdefault(k, []).append(v)
    for row in merged:
        for k, v in row.items():
            if k not in ("case", "phase"):
                row[k] = statistics.median(v)
        print_row(row, frameworks)
    return merged


MEMORY_SCRIPT = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from cconv import ops
def rss(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
batch = int(sys.argv[2])
x = np.random.default_rng(0).standard_normal((batch, 56, 56, 64), dtype=np.float32)
k = np.ones((3, 3, 64, 64), np.float32) * 0.01
b = np.zeros(64, np.float32)
dy = np.ones((batch, 56, 56, 64), np.float32)
ops.conv2d(x[:1], k, b, padding="same"); ops.conv2d_backward(dy[:1], x[:1], k, padding="same")
base = rss('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')
y = ops.conv2d(x, k, b, padding="same")
dx, dk, db = ops.conv2d_backward(dy, x, k, padding="same")
peak = rss('VmHWM')
outputs = y.nbytes + dx.nbytes + dk.nbytes + db.nbytes
print(peak - base, outputs, y.nbytes)
"""


def bench_memory():
    """Peak memory of one conv forward+backward (56x56x64->64 k3) beyond inputs and outputs."""
    rows = []
    for batch in (8, 32, 128):
        out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, os.path.dirname(HERE), str(batch)],
                             capture_output=True, text=True, check=True).stdout.split()
        grew, outputs, ybytes = (int(v) for v in out)
        # below zero when the call reused memory freed earlier in the process: nothing extra
        extra = max(grew - outputs, 0)
        limit = max(64 << 20, 2 * ybytes)
        row = {"case": f"conv fwd+bwd 56x56x64->64 k3, batch {batch}", "extra_MB": extra / 2**20,
               "limit_MB": limit / 2**20, "ok": extra <= limit}
        print(f"| {row['case']} | extra {row['extra_MB']:.1f} MB | limit {row['limit_MB']:.0f} MB | {'ok' if row['ok'] else 'OVER'} |")
        rows.append(row)
    return rows


def print_row(row, frameworks):
    parts = [row["case"], row["phase"], f"{row['cconv_ms']:.2f}"]
    for fw in frameworks:
        if fw + "_ms" in row:
            parts += [f"{row[fw + '_ms']:.2f}", f"{row[fw + '_ms'] / row['cconv_ms']:.2f}x"]
        else:
            parts += ["-", "-"]
    if "cconv_gflops" in row:
        parts.append(f"{row['cconv_gflops']:.0f}")
    print("| " + " | ".join(parts) + " |", flush=True)


def header(frameworks, what):
    cols = ["case", "phase", "cconv ms"]
    for fw in frameworks:
        cols += [f"{fw} ms", f"{fw}/cconv"]
    if what == "ops":
        cols.append("cconv GFLOP/s")
    print("\n| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["ops", "dw", "pool", "models", "memory"], action="append")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "latest.json"))
    parser.add_argument("--rounds", type=int, default=3,
                        help="ops and pool: rounds of one process per runtime (median)")
    parser.add_argument("--same-process", action="store_true",
                        help="ops and pool: every runtime in this one process")
    parser.add_argument("--worker", choices=["cconv", "tensorflow", "torch"],
                        help=argparse.SUPPRESS)   # internal: measure one runtime, write JSON
    args = parser.parse_args(argv)
    suites = args.only or ["ops", "dw", "pool", "models", "memory"]
    repeat = 3 if args.quick else 10
    if args.worker:      # no other runtime imported here, not even to check that it exists
        results = {s: SUITES[s](repeat, [], [args.worker], show=False)
                   for s in suites if s in SUITES}
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f)
        return
    frameworks = [fw for fw in ("tensorflow", "torch") if have(fw) and not (fw == "torch" and args.no_torch)]
    print(f"cconv {cconv.__version__}, {cconv.get_num_threads()} threads, OpenMP {cconv.openmp_enabled()}, "
          f"{platform.processor() or platform.machine()}, compared with: {', '.join(frameworks) or 'nothing'}")
    results = {"threads": cconv.get_num_threads(), "frameworks": frameworks,
               "same_process": args.same_process, "rounds": max(1, args.rounds),
               "load_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
               "date": time.strftime("%Y-%m-%d %H:%M")}
    for suite in ("ops", "dw", "pool"):
        if suite in suites:
            header(frameworks, "ops" if suite == "dw" else suite)
            results[suite] = (SUITES[suite](repeat, frameworks) if args.same_process
                              else isolated(suite, repeat, frameworks, args.quick,
                                            max(1, args.rounds)))
    if "models" in suites:
        from benchmarks import models as model_bench

        results["models"] = model_bench.run(repeat, frameworks)
    if "memory" in suites and sys.platform.startswith("linux"):
        print("\n| memory case | peak extra | limit | |\n|---|---|---|---|")
        results["memory"] = bench_memory()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
