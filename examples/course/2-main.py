#!/usr/bin/env python3
"""The course's 2-main: conv_backward, "valid"; prints (dA_prev, dW, db).

dA_prev and db depend only on the random W and dZ, so they match the course's published
output digit for digit; dW depends on the images (here MNIST's test split).
"""
import numpy as np

from cconv.classic import conv_backward
from course_data import load_images

if __name__ == "__main__":
    np.random.seed(0)
    X_train = load_images()
    _, h, w = X_train.shape
    X_train_c = X_train[:10].reshape((-1, h, w, 1))

    W = np.random.randn(3, 3, 1, 2)
    b = np.random.randn(1, 1, 1, 2)

    dZ = np.random.randn(10, h - 2, w - 2, 2)
    print(conv_backward(dZ, X_train_c, W, b, padding="valid"))
