"""Command line (also the ``cconv`` console script); see :data:`DESCRIPTION`."""
import argparse
import sys
import time

import numpy as np

from . import __version__, datasets, models, ops
from ._ext.parallel import set_num_threads

DESCRIPTION = """\
cconv demo    train LeNet-5 on scikit-learn's digits (or MNIST with --data mnist --path DIR),
              print test accuracy and images/s, and save the model
cconv check   convolve and pool real images and check them against NumPy
"""


def _reference_conv(x, kernel, pad):
    """Plain NumPy convolution (stride 1, symmetric padding) to check the compiled core."""
    x = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, :oh, :ow]
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel.astype(np.float64))


def check(args):
    """Convolve and pool real images (scikit-learn's 8x8 digits) and check against NumPy."""
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


def demo(args):
    """Train LeNet-5 on real digits, report accuracy and speed, save the model."""
    if args.threads:
        set_num_threads(args.threads)
    if args.data == "digits":
        try:
            # 8x8 -> a 24x24 digit in a 2-pixel border: MNIST's 28x28 layout, LeNet-5's input.
            (x, y), (xt, yt) = datasets.load_digits(upsample=3, pad=2)
        except ImportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        epochs = args.epochs or 12
        what = "scikit-learn digits, upsampled to 28x28"
    else:
        if not args.path:
            print(
                "error: --data mnist needs --path DIR (a folder with the MNIST IDX files)",
                file=sys.stderr,
            )
            return 2
        try:
            try:
                (x, y), (xt, yt) = datasets.load_mnist(args.path)
                what = "MNIST"
            except FileNotFoundError:
                xa, ya = datasets.load_mnist(args.path, subset="test")
                x, y, xt, yt = xa[:8000], ya[:8000], xa[8000:], ya[8000:]
                what = (
                    "MNIST t10k only (no training files): first 8,000 to train, last 2,000 to test"
                )
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        epochs = args.epochs or 3
    print(f"data: {what}; train {x.shape}, test {xt.shape}")
    np.random.seed(args.seed)
    model = models.lenet5(input_shape=x.shape[1:], classes=10)
    if not args.quiet:
        model.summary()
    verbose = 0 if args.quiet else 1
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=epochs, verbose=verbose)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(xt, batch_size=256, verbose=0)
    pred_s = time.perf_counter() - t0
    acc = float((pred.argmax(1) == yt.argmax(1)).mean())
    print(f"test accuracy: {acc * 100:.2f}% ({len(xt)} images)")
    print(f"training: {epochs * len(x) / train_s:,.0f} images/s; "
          f"predict: {len(xt) / pred_s:,.0f} images/s")
    if args.save:
        model.save(args.save)
        print(f"saved the trained model to {args.save} (load it with cconv.load_model)")
    if args.data == "digits" and acc < 0.97:
        print("test accuracy is below the 97% target", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cconv", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train LeNet-5 on real digits and report accuracy and images/s")
    d.add_argument("--data", choices=("digits", "mnist"), default="digits",
                   help="digits: scikit-learn's 8x8 digits (default); mnist: IDX files from --path")
    d.add_argument("--path", help="folder with the MNIST IDX files (gzip or raw)")
    d.add_argument("--epochs", type=int, default=None, help="default: 12 (digits), 3 (MNIST)")
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--save", default="cconv-lenet5.npz",
                   help="where to save the model ('' to skip)")
    d.add_argument("--threads", type=int, default=0, help="cconv threads (default: all)")
    d.add_argument("--seed", type=int, default=0, help="shuffling seed")
    d.add_argument("--quiet", action="store_true", help="no summary or progress bar")
    sub.add_parser("check", help="convolve and pool real images, checked against NumPy")
    args = parser.parse_args(argv)
    return {"demo": demo, "check": check}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
