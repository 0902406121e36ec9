"""Inference speed through the compiled plan (cconv.plan) against the layer-by-layer path,
in one process, interleaved rounds, medians.

    python benchmarks/plan_speed.py [--threads 2] [--rounds 7] [--dtype float32] [--train]

Prints, per model and batch size, microseconds per call of ``predict_on_batch`` and images
per second for both paths, the plan's scheme (chunks or layers, threads) and its buffer
bytes next to the bytes of one batch's layer outputs, and the load average (the machine may
be shared: compare the two columns, not runs).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cconv  # noqa: E402
from cconv import plan as cplan  # noqa: E402


def _time_call(fn, x, min_seconds=0.2):
    """Seconds per call of fn(x), over as many calls as fit in ``min_seconds``."""
    fn(x)
    reps, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(x)
        t = time.perf_counter() - t0
        if t >= min_seconds:
            return t / reps
        reps *= 2 if t < min_seconds / 8 else 1 + int(min_seconds / max(t, 1e-9))


def bench(model, batch, rounds, dtype):
    x = np.random.default_rng(0).standard_normal((batch,) + model.input_shape[1:]).astype(dtype)
    plan_t, layer_t = [], []
    for _ in range(rounds):
        model.jit_compile = True
        plan_t.append(_time_call(model.predict_on_batch, x))
        model.jit_compile = False
        layer_t.append(_time_call(model.predict_on_batch, x))
    model.jit_compile = True
    plan = cplan.get_plan(model)
    seg = plan.segments[0]
    scheme = f"{'layers' if seg.native.by_layers else 'chunks'}/{seg.native.threads}t"
    activations = batch * x.itemsize * sum(np.prod(l.output_shape[1:]) for l in model.layers)
    return (statistics.median(plan_t), statistics.median(layer_t), scheme, plan.buffer_bytes,
            activations)


def bench_train(make, rounds, dtype, batch=64, steps=20):
    """Training images/s (Adam, ``batch``) through the plan and layer by layer (medians)."""
    model = make()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch * steps,) + model.input_shape[1:]).astype(dtype)
    labels = rng.integers(0, model.output_shape[-1], batch * steps)
    y = labels if model.name == "tutorial_cnn" else np.eye(10, dtype=dtype)[labels]
    times = {True: [], False: []}
    for _ in range(rounds):
        for jit in (True, False):
            model.jit_compile = jit
            model.fit(x[:batch], y[:batch], batch_size=batch, verbose=0)
            t0 = time.perf_counter()
            model.fit(x, y, batch_size=batch, verbose=0, shuffle=False)
            times[jit].append(time.perf_counter() - t0)
    return [batch * steps / statistics.median(times[j]) for j in (True, False)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--train", action="store_true", help="also time training (Adam, batch 64)")
    args = ap.parse_args()
    cconv.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}; threads {args.threads}; {args.dtype}")
    print("| model | batch | plan us/call | layers us/call | plan images/s | layers images/s "
          "| speed-up | scheme | plan buffers | one batch's activations |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for make in (cconv.models.lenet5, cconv.models.tutorial_cnn):
        model = make(compile=False)
        if args.dtype != "float32":
            model = cconv.Sequential.from_config(_with_dtype(model.get_config(), args.dtype))
        for batch in (int(b) for b in args.batches.split(",")):
            tp, tl, scheme, nbytes, act = bench(model, batch, args.rounds, args.dtype)
            print(f"| {model.name} | {batch} | {tp * 1e6:.1f} | {tl * 1e6:.1f} | "
                  f"{batch / tp:,.0f} | {batch / tl:,.0f} | {tl / tp:.2f}x | {scheme} | "
                  f"{nbytes / 1024:.0f} KiB | {act / 1024:.0f} KiB |")
    if args.train:
        print("\n| model | training plan images/s | layers images/s | speed-up |")
        print("|---|---|---|---|")
        for make in (cconv.models.lenet5, cconv.models.tutorial_cnn):
            tp, tl = bench_train(make, args.rounds, args.dtype)
            print(f"| {make.__name__} | {tp:,.0f} | {tl:,.0f} | {tp / tl:.2f}x |")
    print(f"load average after: {os.getloadavg()}")


def _with_dtype(config, dtype):
    for layer in config["layers"]:
        layer["config"]["dtype"] = dtype
    return config


if __name__ == "__main__":
    main()
