"""Weight regularizers with Keras 3's names and formulas, for ``kernel_regularizer=`` and
``bias_regularizer=`` of Conv2D and Dense.

A regularizer adds a penalty of the weights to the training loss (and to the reported loss, as
Keras does): ``L1(l1)``: ``l1 * sum(|w|)``; ``L2(l2)``: ``l2 * sum(w**2)``; ``L1L2(l1, l2)``:
both. Its gradient (``l1 * sign(w) + 2 * l2 * w``) is added to the weight's gradient in each
training step. ``l1``, ``l2`` and ``l1_l2`` are the classes under Keras's lower-case names
(defaults 0.01, 0.01 and 0 / 0); the string names "l1", "l2" use the same defaults and
"l1_l2" uses Keras's documented 0.01 / 0.01.
"""

import math

import numpy as np

from .registry import Configurable

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize",
           "deserialize"]


def _factor(value, name):
    if value is None:
        return 0.0
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite float >= 0; got {name}={value!r}.")
    return float(value)


class Regularizer(Configurable):
    """Base class: ``regularizer(w) -> float`` penalty; ``add_gradient(w, out)`` adds its
    gradient with respect to ``w`` into ``out`` (same shape) in place."""

    def __call__(self, w):
        return 0.0

    def add_gradient(self, w, out):
        pass


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)`` (Keras defaults 0.0 and 0.0)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1")
        self.l2 = _factor(l2, "l2")

    def __call__(self, w):
        total = 0.0
        if self.l1:
            total += float(w.dtype.type(self.l1) * np.abs(w).sum())
        if self.l2:
            total += float(w.dtype.type(self.l2) * np.square(w).sum())
        return total

    def add_gradient(self, w, out):
        t = w.dtype.type
        if self.l1:
            out += np.sign(w) * t(self.l1)
        if self.l2:
            out += w * t(2 * self.l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """``l1 * sum(|w|)`` (Keras default 0.01)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """``l2 * sum(w**2)`` (Keras default 0.01)."""

    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2

_CLASSES = {c.__name__: c for c in (L1, L2, L1L2)}
_NAMES = {"l1": L1, "l2": L2, "l1l2": L1L2, "l1_l2": lambda: L1L2(0.01, 0.01)}


def get(identifier):
    """A regularizer from None, a name ("l1", "l2", "l1_l2"), a class name, a
    :class:`Regularizer`, or a ``{"class_name", "config"}`` dict.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    if isinstance(identifier, str):
        make = _NAMES.get(identifier.lower()) or _CLASSES.get(identifier)
        if make is None:
            raise ValueError(f"Unknown regularizer {identifier!r}. Known regularizers: "
                             f"{', '.join(sorted(_NAMES))}.")
        return make()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise TypeError(f"regularizer must be None, a name, a Regularizer or a config dict; got "
                    f"{identifier!r}.")


def serialize(regularizer):
    """``{"class_name", "config"}``, or None for None."""
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


def deserialize(config):
    cls = _CLASSES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"Unknown regularizer class {config.get('class_name')!r}. Known: "
                         f"{', '.join(sorted(_CLASSES))}.")
    return cls.from_config(config.get("config") or {})
