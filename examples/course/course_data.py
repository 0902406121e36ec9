"""The course's ``lib['X_train']`` for the example programs, from MNIST's IDX files.

The course reads ``../data/MNIST.npz``; these programs read the IDX files in the folder given
as their first argument, by default ``../shared/data/mnist`` beside the repository (the
10,000-image test split, so the first dimension printed is 10000 where the course's is 50000).
"""
import os
import sys

from cconv.datasets import load_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(ROOT, "..", "shared", "data", "mnist")


def load_images():
    """MNIST images ``(m, 28, 28)`` float32 in [0, 1] (the folder from ``sys.argv[1]``)."""
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
    x, _ = load_mnist(path, subset="test")
    return x[..., 0]
