#!/usr/bin/env python3
"""The course's 1-main: max pooling of MNIST and its negative, 2x2, stride 2 (plots left out)."""
import numpy as np

from cconv.classic import pool_forward
from course_data import load_images

if __name__ == "__main__":
    np.random.seed(0)
    X_train = load_images()
    m, h, w = X_train.shape
    X_train_a = X_train.reshape((-1, h, w, 1))
    X_train_b = 1 - X_train_a
    X_train_c = np.concatenate((X_train_a, X_train_b), axis=3)

    print(X_train_c.shape)
    A = pool_forward(X_train_c, (2, 2), stride=(2, 2))
    print(A.shape)
