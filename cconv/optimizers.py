"""Optimizers with Keras 3's update rules and defaults, computed in the variable's dtype
(float32 in practice, as Keras does).

``optimizer.apply(grads, variables)`` updates the arrays in ``variables`` in place; state
(momenta, velocities) is kept per position in the list. Models hand the optimizer one flat
array of all trainable weights, so a step is a dozen NumPy calls whatever the depth.

Update rules (``g`` gradient, ``w`` weight, ``t`` the 1-based step):

- SGD: ``m = momentum * m - lr * g``; ``w += m`` (nesterov: ``w += momentum * m - lr * g``);
  without momentum ``w -= lr * g``.
- Adam: ``m += (g - m) * (1 - beta_1)``; ``v += (g*g - v) * (1 - beta_2)``;
  ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``;
  ``w -= alpha * m / (sqrt(v) + epsilon)`` (epsilon outside the square root, 1e-7).
- RMSprop: ``v = rho * v + (1 - rho) * g*g``; ``w -= lr * g / sqrt(v + epsilon)``
  (centered: ``sqrt(v - a*a + epsilon)`` with ``a`` the mean gradient; momentum:
  ``m = momentum * m + increment``; ``w -= m``).
"""

from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ._typing import Config
from .registry import Registry

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "get", "serialize", "deserialize"]


class Optimizer:
    """Base class.

    Args:
        learning_rate: float (a plain float; schedules are not supported).
        name: optional name.
    """

    _default_name = "optimizer"

    def __init__(self, learning_rate: float = 0.001, name: Optional[str] = None):
        lr = float(learning_rate)
        if not lr >= 0:
            raise ValueError(f"learning_rate must be >= 0; got {learning_rate!r}.")
        self.learning_rate = lr
        self.name = name or self._default_name
        self.iterations = 0
        self._slots = []        # per variable: dict of state arrays

    def apply(self, grads: Sequence[np.ndarray], variables: Sequence[np.ndarray]) -> None:
        """Update each array of ``variables`` in place from the matching ``grads``."""
        grads, variables = list(grads), list(variables)
        if len(grads) != len(variables):
            raise ValueError(f"apply: got {len(grads)} gradients for {len(variables)} variables.")
        while len(self._slots) < len(variables):
            self._slots.append(None)
        for i, (g, w) in enumerate(zip(grads, variables)):
            if g.shape != w.shape:
                raise ValueError(
                    f"apply: gradient {i} has shape {g.shape}, its variable {w.shape}."
                )
            s = self._slots[i]
            if s is None or s["_shape"] != w.shape or s["_dtype"] != w.dtype:
                s = self._slots[i] = self._new_slots(w)
                s["_shape"], s["_dtype"] = w.shape, w.dtype
            self._update(g, w, s)
        self.iterations += 1

    def apply_gradients(self, grads_and_vars: Iterable[Tuple[np.ndarray, np.ndarray]]) -> None:
        """Keras-style: ``apply_gradients(zip(grads, variables))``."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def _new_slots(self, w):
        return {"tmp": np.empty_like(w)}

    def _update(self, g, w, s):
        raise NotImplementedError

    def get_config(self) -> Config:
        return {"name": self.name, "learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config: Config):
        return cls(**config)

    # State for save/load: iterations plus every slot array, in a stable order.
    def get_state(self) -> Tuple[int, Dict[str, np.ndarray]]:
        arrays = {}
        for i, s in enumerate(self._slots):
            if s is None:
                continue
            for k, v in s.items():
                if not k.startswith("_") and k != "tmp":
                    arrays[f"{i}.{k}"] = v
        return self.iterations, arrays

    def set_state(self, iterations: int, arrays: Dict[str, np.ndarray],
                  variables: Sequence[np.ndarray]) -> None:
        self.iterations = int(iterations)
        self._slots = [None] * len(variables)
        for i, w in enumerate(variables):
            s = self._new_slots(w)
            s["_shape"], s["_dtype"] = w.shape, w.dtype
            for k in list(s):
                if f"{i}.{k}" in arrays:
                    s[k][...] = arrays[f"{i}.{k}"]
            self._slots[i] = s

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.
    Keras 3 defaults: learning_rate=0.01, momentum=0.0, nesterov=False."""

    _default_name = "SGD"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 name: Optional[str] = None):
        super().__init__(learning_rate, name)
        if not 0 <= momentum <= 1:
            raise ValueError(f"SGD: momentum must be in [0, 1]; got {momentum!r}.")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _new_slots(self, w):
        s = super()._new_slots(w)
        if self.momentum != 0:
            s["momentum"] = np.zeros_like(w)
        return s

    def _update(self, g, w, s):
        t = w.dtype.type
        lr = t(self.learning_rate)
        tmp = s["tmp"]
        np.multiply(g, lr, out=tmp)
        if self.momentum == 0:
            w -= tmp
            return
        m = s["momentum"]
        m *= t(self.momentum)
        m -= tmp
        if self.nesterov:
            tmp2 = m * t(self.momentum)
            tmp2 -= tmp
            w += tmp2
        else:
            w += m

    def get_config(self) -> Config:
        cfg = super().get_config()
        cfg.update(momentum=self.momentum, nesterov=self.nesterov)
        return cfg


class Adam(Optimizer):
    """Adam, Keras 3: learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7
    (added outside the square root), amsgrad=False."""

    _default_name = "adam"

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, name: Optional[str] = None):
        super().__init__(learning_rate, name)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.amsgrad = bool(amsgrad)

    def _new_slots(self, w):
        s = super()._new_slots(w)
        s["m"] = np.zeros_like(w)
        s["v"] = np.zeros_like(w)
        s["tmp2"] = np.empty_like(w)
        if self.amsgrad:
            s["v_hat"] = np.zeros_like(w)
        return s

    def _update(self, g, w, s):
        t = w.dtype.type
        step = t(self.iterations + 1)
        alpha = (
            t(self.learning_rate)
            * np.sqrt(t(1) - t(self.beta_2) ** step)
            / (t(1) - t(self.beta_1) ** step)
        )
        m, v, tmp, tmp2 = s["m"], s["v"], s["tmp"], s["tmp2"]
        np.subtract(g, m, out=tmp)
        tmp *= t(1 - self.beta_1)
        m += tmp
        np.square(g, out=tmp)
        tmp -= v
        tmp *= t(1 - self.beta_2)
        v += tmp
        if self.amsgrad:
            np.maximum(s["v_hat"], v, out=s["v_hat"])
            v = s["v_hat"]
        np.sqrt(v, out=tmp)
        tmp += t(self.epsilon)
        np.multiply(m, alpha, out=tmp2)
        tmp2 /= tmp
        w -= tmp2

    def get_config(self) -> Config:
        cfg = super().get_config()
        cfg.update(
            beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon, amsgrad=self.amsgrad
        )
        return cfg


class RMSprop(Optimizer):
    """RMSprop, Keras 3: learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
    centered=False (epsilon inside the square root, as Keras 3)."""

    _default_name = "rmsprop"

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, name: Optional[str] = None):
        super().__init__(learning_rate, name)
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)
        self.centered = bool(centered)

    def _new_slots(self, w):
        s = super()._new_slots(w)
        s["velocity"] = np.zeros_like(w)
        if self.momentum > 0:
            s["momentum"] = np.zeros_like(w)
        if self.centered:
            s["average_gradient"] = np.zeros_like(w)
        return s

    def _update(self, g, w, s):
        t = w.dtype.type
        rho = t(self.rho)
        v, tmp = s["velocity"], s["tmp"]
        v *= rho
        np.square(g, out=tmp)
        tmp *= t(1 - self.rho)
        v += tmp
        if self.centered:
            a = s["average_gradient"]
            a *= rho
            a += g * t(1 - self.rho)
            np.square(a, out=tmp)
            np.subtract(v, tmp, out=tmp)
            tmp += t(self.epsilon)
        else:
            np.add(v, t(self.epsilon), out=tmp)
        np.sqrt(tmp, out=tmp)
        inc = g * t(self.learning_rate)
        inc /= tmp
        if self.momentum > 0:
            m = s["momentum"]
            m *= t(self.momentum)
            m += inc
            w -= m
        else:
            w -= inc

    def get_config(self) -> Config:
        cfg = super().get_config()
        cfg.update(
            rho=self.rho, momentum=self.momentum, epsilon=self.epsilon, centered=self.centered
        )
        return cfg


# Names accepted by get() (besides every class name, case and underscores ignored).
REGISTRY = Registry("optimizer", Optimizer, {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop})
get, serialize, deserialize = REGISTRY.get, REGISTRY.serialize, REGISTRY.deserialize
