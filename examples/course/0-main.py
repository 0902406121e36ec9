#!/usr/bin/env python3
"""The course's 0-main: conv_forward on MNIST, "valid", ReLU (its plots left out)."""
import numpy as np

from cconv.classic import conv_forward
from course_data import load_images

if __name__ == "__main__":
    np.random.seed(0)
    X_train = load_images()
    m, h, w = X_train.shape
    X_train_c = X_train.reshape((-1, h, w, 1))

    W = np.random.randn(3, 3, 1, 2)
    b = np.random.randn(1, 1, 1, 2)

    def relu(Z):
        return np.maximum(Z, 0)

    A = conv_forward(X_train_c, W, b, relu, padding='valid')
    print(A.shape)
