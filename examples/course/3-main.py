#!/usr/bin/env python3
"""The course's 3-main: max-pool backward, 3x3 windows, stride 3, on MNIST and its negative.

The background ties in every cell of a window, and the course gives the window's gradient to
every tied cell: the output shows windows of repeated gradients.
"""
import numpy as np

from cconv.classic import pool_backward
from course_data import load_images

if __name__ == "__main__":
    np.random.seed(0)
    X_train = load_images()
    _, h, w = X_train.shape
    X_train_a = X_train[:10].reshape((-1, h, w, 1))
    X_train_b = 1 - X_train_a
    X_train_c = np.concatenate((X_train_a, X_train_b), axis=3)

    dA = np.random.randn(10, h // 3, w // 3, 2)
    print(pool_backward(dA, X_train_c, (3, 3), stride=(3, 3)))
