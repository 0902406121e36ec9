"""Small datasets for examples and tests, as NHWC float32 images in [0, 1].

- :func:`load_digits`: scikit-learn's 8x8 handwritten digits (ships with scikit-learn, an
  optional dependency: ``pip install 'cconv[digits]'``).
- :func:`load_mnist`: MNIST from IDX files (gzip or raw) in a folder you name; cconv
  ships no data and downloads nothing.
"""

import gzip
import os

import numpy as np

from .utils import to_categorical  # noqa: F401  (its old home; cconv.utils is Keras's)

__all__ = ["load_digits", "load_mnist", "to_categorical"]


def load_digits(test_size=0.2, one_hot=True, upsample=1, pad=0, seed=0):
    """scikit-learn's 1,797 8x8 digit images with a fixed, stratified train/test split.

    Args:
        test_size: fraction held out for testing (default 0.2: 1,437 / 360 images).
        one_hot: labels one-hot ``(n, 10)`` float32 (else int64 ids ``(n,)``).
        upsample: integer factor for nearest-neighbour upsampling.
        pad: zero border added after upsampling; ``upsample=3, pad=2`` gives 28x28 images
            laid out like MNIST (a 24x24 digit in a 2-pixel border).
        seed: the split's random seed (the split is the same on every call).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``; ``x`` float32 ``(n, s, s, 1)`` in [0, 1]
        with ``s = 8 * upsample + 2 * pad``.

    Raises:
        ImportError: scikit-learn is not installed (says how to install it).
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError:
        raise ImportError(
            "load_digits needs scikit-learn: pip install scikit-learn "
            "(or pip install 'cconv[digits]')."
        ) from None
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1); got {test_size!r}.")
    upsample = int(upsample)
    if upsample < 1:
        raise ValueError(f"upsample must be a positive int; got {upsample!r}.")
    d = _sk_load_digits()
    x = (d.images.astype(np.float32) / np.float32(16.0))[..., None]
    if upsample > 1:
        x = x.repeat(upsample, axis=1).repeat(upsample, axis=2)
    if pad:
        if int(pad) < 0:
            raise ValueError(f"pad must be >= 0; got {pad!r}.")
        x = np.pad(x, ((0, 0), (int(pad), int(pad)), (int(pad), int(pad)), (0, 0)))
    y = d.target.astype(np.int64)
    # Stratified split with NumPy only: the same test fraction of every class.
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test[idx[:int(round(len(idx) * test_size))]] = True
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    rng.shuffle(tr)
    ytr, yte = y[tr], y[te]
    if one_hot:
        ytr, yte = to_categorical(ytr, 10), to_categorical(yte, 10)
    return (np.ascontiguousarray(x[tr]), ytr), (np.ascontiguousarray(x[te]), yte)


_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(path, stem):
    for name in (
        stem + ".gz",
        stem,
        stem.replace("-idx", ".idx") + ".gz",
        stem.replace("-idx", ".idx"),
    ):
        p = os.path.join(path, name)
        if os.path.exists(p):
            return p
    return None


def read_idx(filepath):
    """Read one IDX file (gzip or raw) into a NumPy array of its stored type and shape."""
    opener = gzip.open if filepath.endswith(".gz") else open
    with opener(filepath, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{filepath!r} is not an IDX file (bad magic number).")
    types = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in types:
        raise ValueError(f"{filepath!r}: unknown IDX element type 0x{data[2]:02x}.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dt = np.dtype(types[data[2]])
    start = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dt.itemsize
    if len(data) - start != expected:
        raise ValueError(
            f"{filepath!r} is truncated or damaged: header says {shape} ({expected} bytes) but "
            f"{len(data) - start} bytes follow."
        )
    return np.frombuffer(data, dtype=dt, offset=start).reshape(shape).astype(dt.newbyteorder("="))


def load_mnist(path, subset=None, one_hot=True):
    """MNIST from the IDX files in the folder ``path`` (``train-images-idx3-ubyte[.gz]``,
    ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
    ``t10k-labels-idx1-ubyte[.gz]``).

    Args:
        path: the folder.
        subset: None for both splits, or "train" / "test" for one.
        one_hot: labels one-hot ``(n, 10)`` float32 (else int64 ids).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, or ``(x, y)`` when ``subset`` is given;
        ``x`` float32 ``(n, 28, 28, 1)`` in [0, 1].

    Raises:
        FileNotFoundError: the folder or a needed file is missing (names the files looked for).
        ValueError: a file is not a valid IDX file, or images and labels disagree.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"MNIST folder {path!r} does not exist.")
    if subset not in (None, "train", "test"):
        raise ValueError(f'subset must be None, "train" or "test"; got {subset!r}.')

    def one(split):
        files = []
        for stem in _MNIST_FILES[split]:
            p = _find(path, stem)
            if p is None:
                raise FileNotFoundError(
                    f"MNIST {split} file {stem}[.gz] not found in {path!r} "
                    f"(found: {', '.join(sorted(os.listdir(path))) or 'nothing'})."
                )
            files.append(p)
        images, labels = read_idx(files[0]), read_idx(files[1])
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"MNIST {split}: images {images.shape} and labels {labels.shape} do not match."
            )
        x = (images.astype(np.float32) / np.float32(255.0))[..., None]
        y = labels.astype(np.int64)
        return x, (to_categorical(y, 10) if one_hot else y)

    if subset is not None:
        return one(subset)
    return one("train"), one("test")
