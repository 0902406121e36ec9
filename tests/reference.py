"""Slow, obviously-correct NumPy references for the ops (float64 loops, no cleverness).

Padding amounts come from explicit ((top, bottom), (left, right)) tuples so that these
functions test the maths independently of cconv's padding rule; ``pads_for`` computes
TensorFlow's "same" rule from scratch for the tests that need it.
"""
import math

import numpy as np


def pads_for(n, k, s, d, padding):
    """((top, bottom), (left, right)) for padding "valid"/"same" or explicit, written afresh."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        out = []
        for i in range(2):
            ke = (k[i] - 1) * d[i] + 1
            o = math.ceil(n[i] / s[i])
            total = max((o - 1) * s[i] + ke - n[i], 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if isinstance(padding[0], int):
        return ((padding[0],) * 2, (padding[1],) * 2)
    return tuple(tuple(p) for p in padding)


def conv2d(x, kernel, bias, strides, pads, dilation, groups):
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    n, h, w, c = x.shape
    kh, kw, cg, co = kernel.shape
    sh, sw = strides
    dh, dw = dilation
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    cog = co // groups
    y = np.zeros((n, oh, ow, co))
    for g in range(groups):
        for i in range(oh):
            for j in range(ow):
                for a in range(kh):
                    for b in range(kw):
                        patch = xp[:, i * sh + a * dh, j * sw + b * dw, g * cg:(g + 1) * cg]
                        y[:, i, j, g * cog : (g + 1) * cog] += (
                            patch @ kernel[a, b, :, g * cog : (g + 1) * cog]
                        )
    if bias is not None:
        y += np.asarray(bias, np.float64)
    return y


def conv2d_backward(dy, x, kernel, strides, pads, dilation, groups):
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    dy = np.asarray(dy, np.float64)
    n, h, w, c = x.shape
    kh, kw, cg, co = kernel.shape
    sh, sw = strides
    dh, dw = dilation
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    dxp = np.zeros_like(xp)
    dk = np.zeros_like(kernel)
    _, oh, ow, _ = dy.shape
    cog = co // groups
    for g in range(groups):
        for i in range(oh):
            for j in range(ow):
                for a in range(kh):
                    for b in range(kw):
                        r, s = i * sh + a * dh, j * sw + b * dw
                        d = dy[:, i, j, g * cog:(g + 1) * cog]
                        patch = xp[:, r, s, g * cg:(g + 1) * cg]
                        dk[a, b, :, g * cog:(g + 1) * cog] += patch.T @ d
                        dxp[:, r, s, g * cg : (g + 1) * cg] += (
                            d @ kernel[a, b, :, g * cog : (g + 1) * cog].T
                        )
    dx = dxp[:, pt:pt + h, pl:pl + w, :]
    return dx, dk, dy.sum(axis=(0, 1, 2))


def _windows(h, w, pool, strides, pads):
    (pt, pb), (pl, pr) = pads
    oh = (h + pt + pb - pool[0]) // strides[0] + 1
    ow = (w + pl + pr - pool[1]) // strides[1] + 1
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * strides[0] - pt, j * strides[1] - pl
            rows = [r for r in range(r0, r0 + pool[0]) if 0 <= r < h]
            cols = [c for c in range(c0, c0 + pool[1]) if 0 <= c < w]
            yield i, j, rows, cols, (oh, ow)


def pool2d(x, pool, strides, pads, mode):
    x = np.asarray(x, np.float64)
    n, h, w, c = x.shape
    out = None
    for i, j, rows, cols, shape in _windows(h, w, pool, strides, pads):
        if out is None:
            out = np.zeros((n,) + shape + (c,))
        cells = x[:, rows][:, :, cols].reshape(n, -1, c)
        out[:, i, j] = cells.max(axis=1) if mode == "max" else cells.mean(axis=1)
    return out


def pool2d_backward(dy, x, pool, strides, pads, mode):
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    n, h, w, c = x.shape
    dx = np.zeros_like(x)
    for i, j, rows, cols, _ in _windows(h, w, pool, strides, pads):
        cells = [(r, q) for r in rows for q in cols]  # row-major order
        for b in range(n):
            for ch in range(c):
                if mode == "max":
                    vals = [x[b, r, q, ch] for r, q in cells]
                    r, q = cells[int(np.argmax(vals))]  # argmax: first maximum
                    dx[b, r, q, ch] += dy[b, i, j, ch]
                else:
                    for r, q in cells:
                        dx[b, r, q, ch] += dy[b, i, j, ch] / len(cells)
    return dx
