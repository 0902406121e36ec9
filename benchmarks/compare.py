"""Whole-model speed: cconv against ONNX Runtime, OpenVINO, PyTorch and Keras, each in its own
process.

    python benchmarks/compare.py                      # every model, 2 threads, 3 rounds
    python benchmarks/compare.py --loaded             # also rerun with one busy process per core
    python benchmarks/compare.py --quick              # one short round (a smoke run)
    python benchmarks/compare.py --runtimes cconv onnxruntime openvino --models resnet20

Models (``benchmarks/models.py``, ``GRAPHS``: each a graph of nodes that every runtime builds
for itself): ``lenet5`` and ``tutorial_cnn`` (the course's chains), ``mnist_convnet``
(keras-io's Simple MNIST convnet, with Dropout 0.5), ``resnet20`` (CIFAR ResNet-20: BatchNorm,
residual Adds, 1x1 stride-2 conv + BN shortcuts, GlobalAveragePooling2D), ``mobilenet32`` (a
MobileNet v1 for 32x32: depthwise 3x3 and pointwise 1x1 convolutions, BatchNorm, ReLU6) and
``mobilenet224`` (MobileNet v1 at 224x224x3, 1000 classes, inference only, batch 32).

Every runtime builds the same graph with the same weights, drawn once by cconv (BatchNorm's
gamma, beta and moving statistics drawn at random, so the check covers them) and converted:
cconv and Keras take them as they are (a Sequential for a chain, else a functional Model;
layer ``i`` is named ``n{i}``); PyTorch gets an ``nn.Module`` running the graph in NCHW
(kernels transposed, depthwise kernels as grouped convolutions, the first Dense after Flatten
re-ordered, TensorFlow's asymmetric "same" padding of stride-2 convolutions as an explicit
pad); ONNX Runtime and OpenVINO read one ONNX file per model exported from that module
(``torch.onnx.export(..., dynamo=False)``, opset 17). Each runtime's output on 8 images is
compared with cconv's before it is timed (a warning when they differ beyond 1e-3). Each
(round, runtime) is a fresh process (two OpenMP runtimes in one process slowed both about 10x
here), rounds interleave the runtimes, and the table reports medians over rounds. Metrics per
model:

* ``one image``: median latency of the runtime's fastest single-batch call (cconv and Keras
  ``predict_on_batch``, ONNX Runtime ``InferenceSession.run``, OpenVINO
  ``InferRequest.infer`` on a model compiled for that batch size, PyTorch ``module(x)`` under
  ``inference_mode``), microseconds;
* ``batch``: images/s of the same call on 256 images (32 for ``mobilenet224``);
* ``training``: images/s of one epoch of Adam, batch 64, categorical cross-entropy (cconv and
  Keras ``fit``, a plain PyTorch loop on logits; the ONNX runtimes do not train), the median
  over at least 3 epochs and 1.5 s after two warm-up epochs (epochs of 4096 images for
  LeNet-5, 2048 for the other chains, 1024 for ResNet-20 and the 32x32 MobileNet).

Next to each figure the table gives GFLOP/s: 2 x the multiply-adds of the convolutions and
Dense layers per image (``models.flops``) times images/s, 3x that for training. Ratios compare
cconv with the best peer measured in the same run: the faster of ONNX Runtime and OpenVINO
(or the fastest peer present) for inference, the faster of Keras and PyTorch for training;
above 1 means cconv is faster. ``--loaded`` repeats everything while one busy process per core
runs (the busy processes end themselves after ``--busy-limit`` seconds in any case) and
reports what share of its quiet throughput each runtime kept. Missing runtimes are skipped,
saying so (the ONNX runtimes need ``onnx`` and ``torch`` for the export). Install the peers
with ``pip install -e ".[bench]"`` and ``pip install openvino``. Output: a Markdown table on
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
from functools import partial

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:          # run from a checkout without installing
    sys.path.insert(0, ROOT)

from benchmarks.models import GRAPHS, flops, is_chain, same_pads, shapes  # noqa: E402
from benchmarks.table import compare_markdown  # noqa: E402

RUNTIMES = ["cconv", "onnxruntime", "openvino", "torch", "keras"]
# what a runtime's worker imports (the ONNX runtimes read a file exported from PyTorch)
IMPORTS = {"cconv": "cconv", "onnxruntime": "onnxruntime, onnx, torch",
           "openvino": "openvino, onnx, torch", "torch": "torch", "keras": "tensorflow"}
MODELS = GRAPHS
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
    x = rng.standard_normal((n,) + input_shape(spec), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return x, y


def input_shape(spec):
    return spec["nodes"][0][2]["shape"]


def batch_size(spec):
    return spec.get("batch", BATCH)


def train_images(name, spec, quick):
    """Images per timed training epoch: at least a few batches of 64, a few seconds at most
    for the slow runtimes on the big models."""
    if name == "lenet5":
        return 1024 if quick else 4096
    return (256 if quick else spec["train_images"]) if "train_images" in spec else \
        (512 if quick else 2048)


# ----------------------------------------------------------------------------- builders
def keras_like_layer(L, op, a, name):
    """The layer of one node in cconv or Keras (``L`` is ``cconv.layers`` or
    ``keras.layers``: the same constructors)."""
    if op == "conv":
        return L.Conv2D(a["filters"], a["kernel"], strides=a["strides"], padding=a["padding"],
                        activation=a["activation"], use_bias=a["use_bias"], name=name)
    if op == "dwconv":
        return L.DepthwiseConv2D(a["kernel"], strides=a["strides"], padding=a["padding"],
                                 activation=a["activation"], use_bias=a["use_bias"], name=name)
    if op == "bn":
        return L.BatchNormalization(name=name)
    if op == "act":
        if a["activation"] == "relu6":
            return L.ReLU(max_value=6.0, name=name)
        return L.Activation(a["activation"], name=name)
    if op == "maxpool":
        return L.MaxPooling2D(a["size"], name=name)
    if op == "flatten":
        return L.Flatten(name=name)
    if op == "dropout":
        return L.Dropout(a["rate"], name=name)
    if op == "dense":
        return L.Dense(a["units"], activation=a["activation"], name=name)
    if op == "gap":
        return L.GlobalAveragePooling2D(name=name)
    if op == "add":
        return L.Add(name=name)
    raise ValueError(f"unknown op {op!r}")


def build_keras_like(lib, spec):
    """cconv's or Keras's model of ``spec``: a Sequential for a chain (as users write those),
    else a functional Model. Layer ``i`` is named ``n{i}``."""
    nodes = spec["nodes"]
    inp = lib.Input(input_shape(spec))
    layers = [keras_like_layer(lib.layers, op, a, f"n{i}")
              for i, (op, _, a) in enumerate(nodes) if i]
    if is_chain(nodes):
        return lib.Sequential([inp] + layers)
    t = [inp]
    for (op, ins, _), layer in zip(nodes[1:], layers):
        t.append(layer([t[j] for j in ins]) if op == "add" else layer(t[ins[0]]))
    return lib.Model(t[0], t[-1])


def set_node_weights(model, weights):
    for i, ws in weights.items():
        model.get_layer(f"n{i}").set_weights(ws)


def build_cconv(spec):
    import cconv

    model = build_keras_like(cconv, spec)
    model.build()                  # a cconv Sequential builds its layers lazily otherwise
    return model


def build_keras(spec, weights):
    import keras

    model = build_keras_like(keras, spec)
    set_node_weights(model, weights)
    return model


def nchw_weights(spec, weights):
    """cconv/Keras weights per node as NCHW-runtime arrays: conv (cout, cin, kh, kw);
    depthwise (cin, 1, kh, kw); dense (out, in), the first dense after Flatten (and Dropout)
    re-ordered from (h, w, c) to (c, h, w) rows; BatchNorm unchanged."""
    nodes, shp, out = spec["nodes"], shapes(spec["nodes"]), {}
    for i, ws in weights.items():
        op, ins, _ = nodes[i]
        if op == "conv":
            ws = [np.ascontiguousarray(ws[0].transpose(3, 2, 0, 1))] + ws[1:]
        elif op == "dwconv":
            kh, kw, c, m = ws[0].shape
            ws = [np.ascontiguousarray(ws[0].transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw))] \
                + ws[1:]
        elif op == "dense":
            k, src = ws[0], ins[0]
            while nodes[src][0] in ("dropout", "act"):
                src = nodes[src][1][0]
            if nodes[src][0] == "flatten" and len(shp[nodes[src][1][0]]) == 3:
                h, w, c = shp[nodes[src][1][0]]
                k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
            ws = [np.ascontiguousarray(k.T)] + ws[1:]
        out[i] = ws
    return out


def build_torch(spec, weights):
    """A torch.nn.Module running the graph in NCHW; ``net.logits = True`` drops a final
    softmax (training uses the fused log-softmax loss, as PyTorch users write it)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    nodes, shp = spec["nodes"], shapes(spec["nodes"])
    params = nchw_weights(spec, weights)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.mods, self.pads, self.logits = nn.ModuleDict(), {}, False
            for i, (op, ins, a) in enumerate(nodes):
                cin = shp[ins[0]][-1] if ins else None
                if op in ("conv", "dwconv"):
                    k, st = a["kernel"], a["strides"]
                    (t, b), (lft, r) = [(0, 0) if a["padding"] == "valid" else
                                        same_pads(n, k, st) for n in shp[ins[0]][:2]]
                    sym = t == b and lft == r
                    if not sym:
                        self.pads[i] = (lft, r, t, b)
                    cout, groups = (a["filters"], 1) if op == "conv" else (cin, cin)
                    m = nn.Conv2d(cin, cout, k, stride=st, padding=(t, lft) if sym else 0,
                                  groups=groups, bias=a["use_bias"])
                elif op == "bn":
                    m = nn.BatchNorm2d(cin, eps=1e-3, momentum=0.01)
                elif op == "dense":
                    m = nn.Linear(shp[ins[0]][0], a["units"])
                elif op == "dropout":
                    m = nn.Dropout(a["rate"])
                else:
                    continue
                pnames = ["weight", "bias"] + (["running_mean", "running_var"] if op == "bn"
                                               else [])
                for pname, arr in zip(pnames, params.get(i, [])):
                    getattr(m, pname).data = torch.from_numpy(np.array(arr, np.float32))
                self.mods[str(i)] = m

        def act(self, y, name, last):
            if name == "relu":
                return F.relu(y)
            if name == "relu6":
                return F.relu6(y)
            if name == "softmax":
                return y if self.logits and last else F.softmax(y, dim=1)
            return y

        def forward(self, x):
            t, last = [x], len(nodes) - 1
            for i, (op, ins, a) in enumerate(nodes[1:], 1):
                y = t[ins[0]]
                if op in ("conv", "dwconv"):
                    if i in self.pads:
                        y = F.pad(y, self.pads[i])
                    y = self.act(self.mods[str(i)](y), a["activation"], i == last)
                elif op in ("bn", "dropout"):
                    y = self.mods[str(i)](y)
                elif op == "dense":
                    y = self.act(self.mods[str(i)](y), a["activation"], i == last)
                elif op == "act":
                    y = self.act(y, a["activation"], i == last)
                elif op == "maxpool":
                    y = F.max_pool2d(y, a["size"])
                elif op == "flatten":
                    y = torch.flatten(y, 1)
                elif op == "gap":
                    y = torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)
                elif op == "add":
                    y = y + t[ins[1]]
                t.append(y)
            return t[-1]

    return Net()


def export_onnx(model_names, weights_path, out_dir):
    """Each model as an ONNX file (NCHW, dynamic batch) exported from the PyTorch module with
    the TorchScript exporter (``dynamo=False``), opset 17; BatchNorm stays a node (ONNX
    Runtime and OpenVINO fold it into the convolution)."""
    import torch

    for name in model_names:
        spec = MODELS[name]
        net = build_torch(spec, load_weights(weights_path, name)).eval()
        h, w, c = input_shape(spec)
        torch.onnx.export(net, (torch.zeros(1, c, h, w),), os.path.join(out_dir, name + ".onnx"),
                          dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})


# ----------------------------------------------------------------------------- workers
def worker_cconv(spec, weights, threads, files):
    import cconv

    cconv.set_num_threads(threads)
    model = build_cconv(spec)
    set_node_weights(model, weights)
    loss = cconv.losses.CategoricalCrossentropy(from_logits=spec["from_logits"])
    model.compile(optimizer="adam", loss=loss)

    def train(x, y):
        model.fit(x, y, batch_size=TRAIN_BATCH, epochs=1, verbose=0, shuffle=False)
    return model.predict_on_batch, train


def worker_keras(spec, weights, threads, files):
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


def worker_torch(spec, weights, threads, files):
    import torch

    if torch.get_num_interop_threads() != 1:   # settable once per process, before any work
        torch.set_num_interop_threads(1)
    torch.set_num_threads(threads)
    net = build_torch(spec, weights).eval()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()

    def predict(x):
        with torch.inference_mode():
            return net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()

    def train(x, y):
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(y.argmax(1))
        net.train()
        net.logits = True          # on logits with the fused log-softmax loss
        for i in range(0, len(xt), TRAIN_BATCH):
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xt[i:i + TRAIN_BATCH]), yt[i:i + TRAIN_BATCH]).backward()
            opt.step()
        net.eval()
        net.logits = False
    return predict, train


def worker_onnxruntime(spec, weights, threads, files):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(files["onnx"], opts, providers=["CPUExecutionProvider"])

    def predict(x):
        return sess.run(None, {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    return predict, None


def worker_openvino(spec, weights, threads, files):
    """OpenVINO's CPU plugin on the same ONNX file, float32, ``threads`` threads, one stream;
    compiled once per batch size with that static shape (OpenVINO's advice: its dynamic-shape
    path is slower), outside the timing."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
              "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    requests = {}
    h, w, c = input_shape(spec)

    def predict(x):
        n = len(x)
        if n not in requests:
            model = core.read_model(files["onnx"])
            model.reshape([n, c, h, w])
            requests[n] = core.compile_model(model, "CPU", config).create_infer_request()
        req = requests[n]
        req.infer({0: np.ascontiguousarray(x.transpose(0, 3, 1, 2))}, share_inputs=True)
        return req.get_output_tensor(0).data.copy()
    return predict, None


def load_weights(path, name):
    """``{node index: [arrays]}`` of model ``name`` from the weights file."""
    stored, out = np.load(path), {}
    for key in stored.files:
        model, node, j = key.rsplit("/", 2)
        if model == name:
            out.setdefault(int(node), []).append((int(j), stored[key]))
    return {i: [a for _, a in sorted(ws, key=lambda p: p[0])] for i, ws in sorted(out.items())}


def run_worker(runtime, model_names, threads, quick, weights_path):
    """Measure one runtime on each model; print one JSON line."""
    results = {}
    for name in model_names:
        spec = MODELS[name]
        files = {"onnx": os.path.join(os.path.dirname(weights_path), name + ".onnx")}
        train_ok = spec.get("train", True)
        predict, train = globals()["worker_" + runtime](spec, load_weights(weights_path, name),
                                                        threads, files)
        n = train_images(name, spec, quick) if train_ok and train else 0
        x, y = data(spec, max(n, batch_size(spec), 8))
        # every predict takes NHWC; the NCHW runtimes convert inside it (counted, as for a
        # user holding NHWC images; a 256-image transpose is a few microseconds)
        one = x[:1]
        r = {"check": predict(x[:8]).tolist()}
        secs = 0.3 if quick else 1.5
        r["one_image_us"] = 1e6 * median_call(partial(predict, one), 10 if quick else 50, secs)
        xb = x[:batch_size(spec)]
        r["batch_images_s"] = len(xb) / median_call(partial(predict, xb), 2 if quick else 5,
                                                    secs)
        if n:
            # at least 3 epochs and `secs` seconds: a LeNet-5 epoch is 0.1-0.3 s, and with
            # busy neighbours the median of only 3 short epochs moved by 2x between runs
            r["train_images_s"] = n / median_call(partial(train, x[:n], y[:n]),
                                                  1 if quick else 3, secs)
        results[name] = r
    print("RESULT " + json.dumps(results), flush=True)


# ----------------------------------------------------------------------------- driver
def available(runtime):
    return subprocess.run([sys.executable, "-c", f"import {IMPORTS[runtime]}"],
                          capture_output=True).returncode == 0


def draw_weights(model_names, path):
    """Initial weights, drawn once by cconv for every model (Glorot uniform kernels, zero
    biases); BatchNorm's gamma, beta and moving statistics drawn at random around their
    initial values (1, 0, 0, 1), so that the output check covers them."""
    rng = np.random.default_rng(1)
    arrays = {}
    for name in model_names:
        spec = MODELS[name]
        model = build_cconv(spec)
        for i, (op, _, _) in enumerate(spec["nodes"]):
            if not i:
                continue
            ws = model.get_layer(f"n{i}").get_weights()
            if op == "bn":
                c = ws[0].shape
                ws = [rng.uniform(0.8, 1.2, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
                      rng.uniform(0.8, 1.2, c)]
            for j, w in enumerate(ws):
                arrays[f"{name}/{i}/{j}"] = np.asarray(w, np.float32)
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
                diff = float(np.max(np.abs(np.array(got[0]["check"]) - ref)))
                row["max_abs_diff_vs_cconv"] = diff
                if diff > 1e-3 * max(1.0, float(np.max(np.abs(ref)))):
                    print(f"WARNING: {name}: {rt} differs from cconv by {diff:.2e} (outputs "
                          f"up to {np.max(np.abs(ref)):.2e}): not the same model?",
                          file=sys.stderr)
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
    parser.add_argument("--export-onnx", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.export_onnx:
        return export_onnx(args.models, args.weights, os.path.dirname(args.weights))
    if args.worker:
        return run_worker(args.worker, args.models, args.threads, args.quick, args.weights)
    if args.quick:
        args.rounds = 1
    runtimes = []
    for rt in args.runtimes:
        if available(rt):
            runtimes.append(rt)
        else:
            print(f"skipping {rt}: `import {IMPORTS[rt]}` fails here "
                  f"(pip install -e \".[bench]\")", file=sys.stderr)
    results = {"threads": args.threads, "rounds": args.rounds, "runtimes": runtimes,
               "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "load_before": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
               "models": {name: {"flops": flops(MODELS[name]["nodes"]),
                                 "batch": batch_size(MODELS[name]),
                                 "input": list(input_shape(MODELS[name]))}
                          for name in args.models}}
    with tempfile.TemporaryDirectory() as tmp:
        weights_path = os.path.join(tmp, "weights.npz")
        draw_weights(args.models, weights_path)
        if {"onnxruntime", "openvino"} & set(runtimes):
            # in its own process too: PyTorch's exporter, not timed
            cmd = [sys.executable, os.path.abspath(__file__), "--export-onnx", "--weights",
                   weights_path, "--models", *args.models]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                  env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
            if proc.returncode:
                print(f"ONNX export failed, skipping ONNX Runtime and OpenVINO:\n"
                      f"{proc.stderr[-2000:]}", file=sys.stderr)
                runtimes = [r for r in runtimes if r not in ("onnxruntime", "openvino")]
                results["runtimes"] = runtimes
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
