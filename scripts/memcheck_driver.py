"""Drive every compiled kernel over many geometries: the workload scripts/memcheck.sh runs
under valgrind. Small shapes (valgrind is ~50x slower) but every code path: strides > kernel,
dilation, same/explicit/asymmetric padding, groups and depthwise, pointwise (1x1) fast path,
several im2col tiles with a ragged last tile, zero-size dimensions, 1 and 2 threads, float32
and float64, forward and backward. Each result is checked against tests/reference.py so a
wrong read also shows up as a wrong number. Exit status 0 when all agree."""
import itertools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cconv  # noqa: E402
from cconv import ops  # noqa: E402
from tests import reference as ref  # noqa: E402


def close(a, b, dtype):
    b = np.asarray(b, np.float64)
    tol = (1e-9 if dtype == np.float64 else 1e-4) * max(1.0, float(np.max(np.abs(b), initial=0)))
    assert a.shape == b.shape and float(np.max(np.abs(a - b), initial=0)) <= tol


def main():
    rng = np.random.default_rng(0)
    conv_cases = [
        # x shape, kernel shape, strides, padding, dilation, groups
        ((2, 7, 6, 3), (3, 3, 3, 4), (1, 1), "valid", (1, 1), 1),
        ((2, 7, 6, 3), (3, 2, 3, 4), (2, 3), "same", (1, 1), 1),
        ((1, 9, 8, 4), (3, 3, 2, 6), (1, 2), ((2, 0), (1, 3)), (2, 1), 2),
        ((1, 6, 6, 4), (3, 3, 1, 4), (4, 4), 1, (1, 1), 4),          # depthwise, stride > kernel
        ((2, 5, 5, 3), (1, 1, 3, 5), (1, 1), "valid", (1, 1), 1),    # pointwise fast path
        ((1, 5, 5, 2), (5, 5, 2, 3), (1, 1), "valid", (1, 1), 1),    # kernel == input
        ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), "same", (1, 1), 1),     # 1x1 everything
        ((1, 4, 4, 2), (2, 2, 2, 3), (1, 1), "same", (9, 9), 1),     # dilation past the input
        ((1, 40, 40, 8), (3, 3, 8, 4), (1, 1), "same", (1, 1), 1),   # several tiles, ragged end
        ((0, 5, 5, 2), (3, 3, 2, 3), (1, 1), "valid", (1, 1), 1),    # empty batch
        ((1, 5, 5, 0), (3, 3, 0, 3), (1, 1), "same", (1, 1), 1),     # no input channels
        ((1, 5, 5, 2), (3, 3, 2, 0), (1, 1), "same", (1, 1), 1),     # no filters
    ]
    pool_cases = [
        ((2, 7, 6, 3), (2, 2), None, "valid"),
        ((2, 7, 6, 3), (3, 3), (2, 2), "same"),
        ((1, 8, 9, 2), (3, 2), (1, 1), ((2, 1), (0, 1))),
        ((1, 5, 5, 2), (2, 2), (4, 4), "valid"),                     # stride > pool
        ((1, 1, 1, 1), (1, 1), None, "same"),
        ((0, 4, 4, 2), (2, 2), None, "valid"),
        ((1, 4, 4, 0), (2, 2), None, "same"),
    ]
    n = 0
    for threads, dtype in itertools.product((1, 2), (np.float32, np.float64)):
        cconv.set_num_threads(threads)
        for xs, ks, s, p, d, g in conv_cases:
            x = rng.standard_normal(xs).astype(dtype)
            k = rng.standard_normal(ks).astype(dtype)
            b = rng.standard_normal(ks[3]).astype(dtype)
            y = ops.conv2d(x, k, b, strides=s, padding=p, dilation_rate=d, groups=g)
            pads = ops.compute_padding(xs[1:3], ks[:2], s, p, d)
            close(y, ref.conv2d(x, k, b, s, pads, d, g), dtype)
            dy = rng.standard_normal(y.shape).astype(dtype)
            got = ops.conv2d_backward(dy, x, k, strides=s, padding=p, dilation_rate=d, groups=g)
            for a, w in zip(got, ref.conv2d_backward(dy, x, k, s, pads, d, g)):
                close(a, w, dtype)
            n += 2
        for xs, pool, s, p in pool_cases:
            x = rng.standard_normal(xs).astype(dtype)
            x[..., :1] = np.round(x[..., :1])            # ties for the first-maximum rule
            st = pool if s is None else s
            pads = ops.compute_padding(xs[1:3], pool, st, p)
            for mode, fwd, bwd in (("max", ops.max_pool2d, ops.max_pool2d_backward),
                                   ("avg", ops.avg_pool2d, ops.avg_pool2d_backward)):
                y = fwd(x, pool, s, p)
                if y.size:
                    close(y, ref.pool2d(x, pool, st, pads, mode), dtype)
                dy = rng.standard_normal(y.shape).astype(dtype)
                dx = bwd(dy, x, pool, s, p)
                close(dx, ref.pool2d_backward(dy, x, pool, st, pads, mode) if dy.size
                      else np.zeros(x.shape), dtype)
                n += 2
    print(f"memcheck driver: {n} kernel calls agreed with the reference")


if __name__ == "__main__":
    main()
