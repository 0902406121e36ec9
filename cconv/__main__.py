"""Command line: ``python -m cconv demo`` (also the ``cconv`` console script)."""
import argparse
import sys
import time

import numpy as np


def _reference_conv(x, kernel, pad):
    """Plain NumPy convolution (stride 1, symmetric padding) to check the compiled core."""
    x = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, :oh, :ow]
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel.astype(np.float64))


def core_demo(args):
    """Convolve and pool real images (scikit-learn's 8x8 digits) and check against NumPy."""
    from . import ops

    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("the demo reads scikit-learn's digits: pip install 'cconv[digits]'", file=sys.stderr)
        return 1
    images = load_digits().images.astype(np.float32)[..., None] / 16.0  # (1797, 8, 8, 1)
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
    kernel = np.stack([sobel, sobel.T], axis=-1)[:, :, None, :]        # (3, 3, 1, 2)
    t0 = time.perf_counter()
    edges = ops.conv2d(images, kernel, padding="same")
    pooled = ops.max_pool2d(np.abs(edges), 2)
    dx, dk, db = ops.conv2d_backward(np.ones_like(edges), images, kernel, padding="same")
    elapsed = time.perf_counter() - t0
    err = np.abs(edges - _reference_conv(images, kernel, 1)).max()
    print(f"digits {images.shape} -> sobel edges {edges.shape} -> max-pooled {pooled.shape}")
    print(f"forward+backward in {elapsed * 1e3:.2f} ms; max |cconv - NumPy reference| = {err:.2e}")
    return 0 if err < 1e-5 else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cconv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="convolve and pool real images, checked against NumPy")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return core_demo(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
