"""Whole-model speed: cconv against ONNX Runtime, PyTorch and Keras, each in its own process.

    python benchmarks/compare.py                      # LeNet-5 and the TF-tutorial CNN, 2 threads
    python benchmarks/compare.py --loaded             # also rerun with one busy process per core
    python benchmarks/compare.py --quick              # one short round (a smoke run)
    python benchmarks/compare.py --runtimes cconv onnxruntime --models lenet5

Every runtime builds the same architecture with the same weights (drawn once by cconv and
converted: NHWC kernels to NCHW, the first Dense after Flatten re-ordered) and is checked
against cconv's output before it is timed. Each (round, runtime) is a fresh process (two
OpenMP runtimes in one process slowed both about 10x here), rounds interleave the runtimes,
and the table reports medians over rounds. Metrics per model:

* ``one image``: median latency of the runtime's fastest single-batch call (cconv and Keras
  ``predict_on_batch``, ONNX Runtime ``InferenceSession.run``, PyTorch ``module(x)`` under
  ``inference_mode``), microseconds;
* ``batch 256``: images/s of the same call on 256 images;
* ``training``: images/s of one epoch of Adam, batch 64, categorical cross-entropy (cconv and
  Keras ``fit``, a plain PyTorch loop; ONNX Runtime does not train), the median over at least
  3 epochs and 1.5 s after two warm-up epochs.

Ratios compare cconv with the best peer measured in the same run: ONNX Runtime (or the
fastest peer present) for inference, the faster of Keras and PyTorch for training; above 1
means cconv is faster. ``--loaded`` repeats everything while one busy process per core runs
(the busy processes end themselves after ``--busy-limit`` seconds in any case) and reports
what share of its quiet throughput each runtime kept. Missing runtimes are skipped, saying
so. Install the peers with ``pip install -e ".[bench]"``. Output: a Markdown table on
stdout (also written next to the JSON as ``.md``) and JSON (``--json``).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:          # run from a checkout without installing
    sys.path.insert(0, ROOT)

from benchmarks.table import compare_markdown  # noqa: E402

RUNTIMES = ["cconv", "onnxruntime", "torch", "keras"]
IMPORT_NAME = {"cconv": "cconv", "onnxruntime": "onnxruntime", "torch": "torch",
               "keras": "tensorflow"}
MODELS = {
    # (kind, filters/units, kernel, padding, activation) ... as in DESIGN.md's two networks
    "lenet5": {"input": (28, 28, 1), "from_logits": False, "layers": [
        ("conv", 6, 5, "same", "relu"), ("maxpool", 2), ("conv", 16, 5, "valid", "relu"),
        ("maxpool", 2), ("flatten",), ("dense", 120, "relu"), ("dense", 84, "relu"),
        ("dense", 10, "softmax")]},
    "tutorial_cnn": {"input": (32, 32, 3), "from_logits": True, "layers": [
        ("conv", 32, 3, "valid", "relu"), ("maxpool", 2), ("conv", 64, 3, "valid", "relu"),
        ("maxpool", 2), ("conv", 64, 3, "valid", "relu"), ("flatten",),
        ("dense", 64, "relu"), ("dense", 10, None)]},
}
BATCH = 256
TRAIN_BATCH = 64


# ----------------------------------------------------------------------------- timing
def median_call(fn, min_calls, min_seconds):
    """Median seconds per call of ``fn`` after two warm-up calls."""
    fn()
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 100_000:
            break
    return statistics.median(times)


def data(spec, n, seed=0):
    """``n`` NHWC float32 images and one-hot labels, the same in every process."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + spec["input"], dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return x, y


# ----------------------------------------------------------------------------- builders
def build_cconv(spec):
    import cconv
    from cconv import layers as L

    stack = [cconv.Input(spec["input"])]
    for kind, *a in spec["layers"]:
        if kind == "conv":
            stack.append(L.Conv2D(a[0], a[1], padding=a[2], activation=a[3]))
        elif kind == "maxpool":
            stack.append(L.MaxPooling2D(a[0]))
        elif kind == "flatten":
            stack.append(L.Flatten())
        else:
            stack.append(L.Dense(a[0], activation=a[1]))
    return cconv.Sequential(stack)


def build_keras(spec, weights):
    import keras

    L = keras.layers
    stack = [keras.Input(spec["input"])]
    for kind, *a in spec["layers"]:
        if kind == "conv":
            stack.append(L.Conv2D(a[0], a[1], padding=a[2], activation=a[3]))
        elif kind == "maxpool":
            stack.append(L.MaxPooling2D(a[0]))
        elif kind == "flatten":
            stack.append(L.Flatten())
        else:
            stack.append(L.Dense(a[0], activation=a[1]))
    model = keras.Sequential(stack)
    model.set_weights(weights)
    return model


def nchw_weights(spec, weights):
    """cconv/Keras weights as NCHW-runtime arrays: conv (cout, cin, kh, kw); dense (out, in),
    the first dense after Flatten re-ordered from (h, w, c) to (c, h, w) rows."""
    out, it, shape, flat_hwc = [], iter(weights), spec["input"], None
    for kind, *a in spec["layers"]:
        if kind == "conv":
            k, b = next(it), next(it)
            out += [np.ascontiguousarray(k.transpose(3, 2, 0, 1)), b]
            ke = a[1]
            shape = (shape[0] - (ke - 1 if a[2] == "valid" else 0),
                     shape[1] - (ke - 1 if a[2] == "valid" else 0), a[0])
        elif kind == "maxpool":
            shape = (shape[0] // a[0], shape[1] // a[0], shape[2])
        elif kind == "flatten":
            flat_hwc = shape
        else:
            k, b = next(it), next(it)
            if flat_hwc is not None:
                h, w, c = flat_hwc
                k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
                flat_hwc = None
            out += [np.ascontiguousarray(k.T), b]
    return out


def build_torch(spec, weights):
    import torch
    from torch import nn

    mods, it, cin = [], iter(nchw_weights(spec, weights)), spec["input"][2]
    acts = {"relu": nn.ReLU, "softmax": lambda: nn.Softmax(dim=1)}
    for kind, *a in spec["layers"]:
        if kind == "conv":
            m = nn.Conv2d(cin, a[0], a[1], padding=(a[1] // 2 if a[2] == "same" else 0))
            cin = a[0]
        elif kind == "maxpool":
            mods.append(nn.MaxPool2d(a[0]))
            continue
        elif kind == "flatten":
            mods.append(nn.Flatten())
            continue
        else:
            w = next(it)
            m = nn.Linear(w.shape[1], a[0])
            m.weight.data = torch.from_numpy(w.copy())
            m.bias.data = torch.from_numpy(next(it).copy())
            mods.append(m)
            if a[1]:
                mods.append(acts[a[1]]())
            continue
        m.weight.data = torch.from_numpy(next(it).copy())
        m.bias.data = torch.from_numpy(next(it).copy())
        mods.append(m)
        if a[3]:
            mods.append(acts[a[3]]())
    return nn.Sequential(*mods)


def build_onnx(spec, weights):
    """The same network as an ONNX graph (NCHW), built with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, it = [], [], iter(nchw_weights(spec, weights))
    cur, n = "x", 0

    def add(op, inputs, **attrs):
        nonlocal cur, n
        n += 1
        out = f"t{n}"
        nodes.append(helper.make_node(op, [cur] + inputs, [out], **attrs))
        cur = out

    def param(arr):
        name = f"w{len(inits)}"
        inits.append(numpy_helper.from_array(arr, name))
        return name

    for kind, *a in spec["layers"]:
        if kind == "conv":
            k, b = next(it), next(it)
            pad = a[1] // 2 if a[2] == "same" else 0
            add("Conv", [param(k), param(b)], kernel_shape=[a[1], a[1]], pads=[pad] * 4)
            act = a[3]
        elif kind == "maxpool":
            add("MaxPool", [], kernel_shape=[a[0], a[0]], strides=[a[0], a[0]])
            act = None
        elif kind == "flatten":
            add("Flatten", [], axis=1)
            act = None
        else:
            k, b = next(it), next(it)
            add("Gemm", [param(k), param(b)], transB=1)
            act = a[1]
        if act == "relu":
            add("Relu", [])
        elif act == "softmax":
            add("Softmax", [], axis=1)
    h, w, c = spec["input"]
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, h, w])],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


# ----------------------------------------------------------------------------- workers
def worker_cconv(spec, weights, threads, quick):
    import cconv

    cconv.set_num_threads(threads)
    model = build_cconv(spec)
    model.set_weights(weights)
    loss = cconv.losses.CategoricalCrossentropy(from_logits=spec["from_logits"])
    model.compile(optimizer="adam", loss=loss)

    def train(x, y):
        model.fit(x, y, batch_size=TRAIN_BATCH, epochs=1, verbose=0, shuffle=False)
    return model.predict_on_batch, train


def worker_keras(spec, weights, threads, quick):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    model = build_keras(spec, weights)
    model.compile(optimizer="adam",
                  loss=keras.losses.CategoricalCrossentropy(from_logits=spec["from_logits"]))

    def train(x, y):
        model.fit(x, y, batch_size=TRAIN_BATCH, epochs=1, verbose=0, shuffle=False)
    return (lambda x: np.asarray(model.predict_on_batch(x))), train


def worker_torch(spec, weights, threads, quick):
    import torch

    if torch.get_num_interop_threads() != 1:   # settable once per process, before any work
        torch.set_num_interop_threads(1)
    torch.set_num_threads(threads)
    net = build_torch(spec, weights).eval()
    # training on logits with the fused log-softmax loss (what PyTorch users write)
    logits = net[:-1] if isinstance(net[-1], torch.nn.Softmax) else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()

    def predict(x):
        with torch.inference_mode():
            return net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()

    def train(x, y):
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(y.argmax(1))
        logits.train()
        for i in range(0, len(xt), TRAIN_BATCH):
            opt.zero_grad(set_to_none=True)
            loss_fn(logits(xt[i:i + TRAIN_BATCH]), yt[i:i + TRAIN_BATCH]).backward()
            opt.step()
        logits.eval()
    return predict, train


def worker_onnxruntime(spec, weights, threads, quick):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(build_onnx(spec, weights), opts,
                                providers=["CPUExecutionProvider"])

    def predict(x):
        return sess.run(None, {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    return predict, None


def run_worker(runtime, model_names, threads, quick, weights_path):
    """Measure one runtime on each model; print one JSON line."""
    results = {}
    stored = np.load(weights_path)
    for name in model_names:
        spec = MODELS[name]
        weights = [stored[f"{name}/{i}"] for i in range(len(stored.files))
                   if f"{name}/{i}" in stored.files]
        predict, train = globals()["worker_" + runtime](spec, weights, threads, quick)
        x, y = data(spec, 1024 if quick else 4096)
        # every predict takes NHWC; the NCHW runtimes convert inside it (counted, as for a
        # user holding NHWC images; a 256-image transpose is a few microseconds)
        one = x[:1]
        r = {"check": predict(x[:8]).tolist()}
        secs = 0.3 if quick else 1.5
        r["one_image_us"] = 1e6 * median_call(lambda: predict(one), 50, secs)
        xb = x[:BATCH]
        r["batch_images_s"] = BATCH / median_call(lambda: predict(xb), 5, secs)
        if train is not None:
            n = len(x) if name == "lenet5" else len(x) // 2
            # at least 3 epochs and `secs` seconds: a LeNet-5 epoch is 0.1-0.3 s, and with
            # busy neighbours the median of only 3 short epochs moved by 2x between runs
            r["train_images_s"] = n / median_call(lambda: train(x[:n], y[:n]), 1 if quick else 3,
                                                  secs)
        results[name] = r
    print("RESULT " + json.dumps(results), flush=True)


# ----------------------------------------------------------------------------- driver
def available(runtime):
    probe = f"import {IMPORT_NAME[runtime]}" + (", onnx" if runtime == "onnxruntime" else "")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def draw_weights(model_names, path):
    """Initial weights, drawn once by cconv (Glorot uniform, zero biases) for every model."""
    import cconv

    arrays = {}
    for name in model_names:
        model = build_cconv(MODELS[name])
        model.build()
        for i, w in enumerate(model.get_weights()):
            arrays[f"{name}/{i}"] = w
    np.savez(path, **arrays)


def busy_processes(count, limit_s):
    """``count`` processes spinning on one core each; they exit after ``limit_s`` anyway."""
    code = f"import time\nend = time.time() + {limit_s}\nwhile time.time() < end: pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def one_round(runtimes, args, weights_path):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    out = {}
    for rt in runtimes:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", rt, "--threads",
               str(args.threads), "--weights", weights_path, "--models", *args.models]
        if args.quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{rt}: worker failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}",
                  file=sys.stderr)
            continue
        out[rt] = json.loads(lines[-1][len("RESULT "):])
    return out


def summarize(rounds, model_names):
    """Medians over rounds, and each runtime's largest deviation from cconv's output."""
    summary = {}
    for name in model_names:
        per_rt = {}
        ref = next((np.array(r["cconv"][name]["check"]) for r in rounds if "cconv" in r), None)
        for rt in RUNTIMES:
            got = [r[rt][name] for r in rounds if rt in r and name in r[rt]]
            if not got:
                continue
            row = {k: statistics.median(g[k] for g in got) for k in got[0] if k != "check"}
            if ref is not None:
                row["max_abs_diff_vs_cconv"] = float(np.max(np.abs(np.array(got[0]["check"])
                                                                    - ref)))
            per_rt[rt] = row
        summary[name] = per_rt
    return summary


def measure(runtimes, args, weights_path, label):
    rounds = []
    for i in range(args.rounds):
        order = runtimes if i % 2 == 0 else runtimes[::-1]     # interleave, alternate order
        print(f"[{label}] round {i + 1}/{args.rounds}: {', '.join(order)}", file=sys.stderr,
              flush=True)
        rounds.append(one_round(order, args, weights_path))
    return summarize(rounds, args.models)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=RUNTIMES)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--loaded", action="store_true",
                        help="also measure with one busy process per core")
    parser.add_argument("--busy-limit", type=float, default=1800,
                        help="seconds after which busy processes exit on their own")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "compare.json"))
    parser.add_argument("--worker", choices=RUNTIMES, help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args.worker, args.models, args.threads, args.quick, args.weights)
    if args.quick:
        args.rounds = 1
    runtimes = []
    for rt in args.runtimes:
        if available(rt):
            runtimes.append(rt)
        else:
            print(f"skipping {rt}: `import {IMPORT_NAME[rt]}` fails here "
                  f"(pip install -e \".[bench]\")", file=sys.stderr)
    results = {"threads": args.threads, "rounds": args.rounds, "runtimes": runtimes,
               "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "load_before": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M")}
    with tempfile.TemporaryDirectory() as tmp:
        weights_path = os.path.join(tmp, "weights.npz")
        draw_weights(args.models, weights_path)
        results["quiet"] = measure(runtimes, args, weights_path, "quiet")
        if args.loaded:
            busy = busy_processes(os.cpu_count() or 1, args.busy_limit)
            try:
                results["loaded"] = measure(runtimes, args, weights_path, "loaded")
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
    table = compare_markdown(results)
    print(table)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.splitext(args.json)[0] + ".md", "w") as f:
        f.write(table)
    print(f"JSON: {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
