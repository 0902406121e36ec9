"""Type aliases shared by the public API's annotations (ops, layers, models)."""

from typing import Any, Dict, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["ArrayLike", "Config", "DTypeLike", "IntOrPair", "Padding", "Shape"]

#: An int, or a pair ``(h, w)`` of ints.
IntOrPair = Union[int, Tuple[int, int], Sequence[int]]
#: ``"valid"``, ``"same"``, an int, ``(pad_h, pad_w)`` or ``((top, bottom), (left, right))``.
Padding = Union[str, int, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]
#: One sample's shape (no batch axis), e.g. ``(28, 28, 1)``.
Shape = Tuple[int, ...]
#: A JSON-able ``get_config()`` dict.
Config = Dict[str, Any]
#: A dtype given by name or object ("float32", np.float64, ...).
DTypeLike = Union[str, type, np.dtype, None]
