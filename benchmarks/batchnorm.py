"""BatchNormalization training step (forward + backward) on float32: the former NumPy code
against the native kernels (ops.batch_norm_train / batch_norm_backward), 1 and 2 threads.

    python benchmarks/batchnorm.py [--repeat 20]

Prints one row per shape and thread count: milliseconds (best of --repeat) and the speed-up,
with the load average at the start of the row (the machine is shared)."""
import argparse
import math
import os
import time

import numpy as np

import cconv
from cconv import ops

SHAPES = [(64, 32, 32, 16), (64, 16, 16, 32), (64, 8, 8, 64), (256, 28, 28, 32)]


def numpy_step(x, dy, gamma, beta, eps=1e-3):
    """The former BatchNormalization.forward(training=True) + backward."""
    m = math.prod(x.shape[:-1])
    mean = ops.channel_sum(x) / m
    mean_t = mean.astype(x.dtype)
    xc = x - mean_t
    var = ops.channel_sum(xc, xc) / m - np.square(mean - mean_t)
    rstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xc *= rstd
    y = xc * gamma
    y += beta
    dbeta = ops.channel_sum(dy).astype(dy.dtype)
    dgamma = ops.channel_sum(dy, xc).astype(dy.dtype)
    t = dy.dtype.type
    dx = (gamma * rstd * t(1.0 / m)) * (t(m) * dy - dbeta - xc * dgamma)
    return y, dx


def native_step(x, dy, gamma, beta, eps=1e-3):
    y, mean, _, rstd = ops.batch_norm_train(x, gamma, beta, eps)
    dx = ops.batch_norm_backward(dy, x, mean, rstd, gamma, beta)[0]
    return y, dx


def best(fn, repeat, *args):
    fn(*args)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"isa {cconv.isa()}; ms per forward+backward, best of {args.repeat}")
    print("| shape | threads | NumPy (ms) | native (ms) | speed-up | load (1 min) |")
    print("|---|---|---|---|---|---|")
    for shape in SHAPES:
        x = rng.normal(size=shape).astype(np.float32)
        dy = rng.normal(size=shape).astype(np.float32)
        c = shape[-1]
        gamma = rng.uniform(0.5, 1.5, c).astype(np.float32)
        beta = rng.normal(size=c).astype(np.float32)
        for n in (1, 2):
            cconv.set_num_threads(n)
            load = os.getloadavg()[0]
            old = best(numpy_step, args.repeat, x, dy, gamma, beta)
            new = best(native_step, args.repeat, x, dy, gamma, beta)
            print(f"| {shape} | {n} | {old:.2f} | {new:.2f} | {old / new:.1f}x | {load:.2f} |")


if __name__ == "__main__":
    main()
