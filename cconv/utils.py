"""Small helpers under Keras's ``keras.utils`` names."""

import numpy as np

__all__ = ["to_categorical"]


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encode integer class ids, Keras 3's rule: ``y`` of shape ``s`` gives
    ``s + (num_classes,)``, except that a trailing axis of 1 is dropped first (``(n, 1)`` ->
    ``(n, num_classes)``).

    Args:
        y: integer class ids in ``[0, num_classes)``.
        num_classes: default ``max(y) + 1``.
        dtype: of the result (float32 by default).

    Raises:
        ValueError: a class id outside ``[0, num_classes)``.
    """
    y = np.asarray(y)
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise ValueError("to_categorical: class ids must be whole numbers; got non-integral "
                         "values.")
    y = y.astype(np.int64)
    shape = y.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    y = y.reshape(-1)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    num_classes = int(num_classes)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"to_categorical: class ids must be in [0, {num_classes}); got "
                         f"{y.min()}..{y.max()}.")
    out = np.zeros((y.size, num_classes), dtype=dtype)
    out[np.arange(y.size), y] = 1
    return out.reshape(shape + (num_classes,))
