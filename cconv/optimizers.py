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
- Adagrad: ``a += g*g``; ``w -= lr * g / sqrt(a + epsilon)`` (``a`` starts at
  ``initial_accumulator_value``).
- Nadam: Adam with Nesterov momentum and Keras's momentum schedule
  ``u_t = beta_1 * (1 - 0.5 * 0.96**t)``.
- AdamW: Adam with ``weight_decay`` (default 0.004).

Every optimizer takes ``weight_decay``, ``clipnorm``, ``clipvalue`` and ``global_clipnorm``
(see :class:`Optimizer`) and a schedule from :mod:`cconv.optimizers.schedules` as its
learning rate.
"""

import inspect
import math
import re
import sys
from typing import Dict, Iterable, Sequence, Tuple

import numpy as np

from . import schedules as _schedules
from ._ext import optim as _optim
from ._ext.parallel import get_num_threads
from .registry import Registry

# ``cconv.optimizers.schedules`` as in Keras; also importable as a module path (like os.path).
schedules = _schedules
sys.modules[__name__ + ".schedules"] = _schedules

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "Nadam", "RMSprop", "schedules",
           "get", "serialize", "deserialize"]


class Optimizer:
    """Base class; the arguments below are accepted by every optimizer (keywords).

    Args:
        learning_rate: a float, a :mod:`cconv.optimizers.schedules` schedule, or a callable:
            called with the step (``iterations``) if it takes an argument, else with none
            (Keras's form). Settable at run time (callbacks do), except over a schedule.
        weight_decay: decoupled weight decay: before each update every variable not excluded
            (:meth:`exclude_from_weight_decay`) becomes ``w - w * weight_decay * lr``.
        clipnorm: clip each variable's gradient to this L2 norm.
        clipvalue: clip each gradient element to ``[-clipvalue, clipvalue]``.
        global_clipnorm: scale all gradients so that their joint L2 norm is at most this.
            At most one of the three clipping arguments.
        name: optional name.
    """

    _default_name = "optimizer"
    # The subclass's own constructor arguments, stored under the same attribute names, that
    # get_config adds (in this order) after the common ones.
    _config_attrs = ()

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None):
        self._learning_rate = None
        self.learning_rate = learning_rate
        self.weight_decay = _optional_nonnegative(weight_decay, "weight_decay")
        self.clipnorm = _optional_nonnegative(clipnorm, "clipnorm")
        self.clipvalue = _optional_nonnegative(clipvalue, "clipvalue")
        self.global_clipnorm = _optional_nonnegative(global_clipnorm, "global_clipnorm")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                f"Only one of clipnorm, clipvalue and global_clipnorm can be set; got "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}.")
        self.name = name or self._default_name
        self.iterations = 0
        self._exclude_pattern = None
        self._slots = []        # per variable: dict of state arrays

    # ----- learning rate ---------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The learning rate of the next step (float): a schedule's or callable's value at
        ``iterations``."""
        lr = self._learning_rate
        if isinstance(lr, float):
            return lr
        return float(lr(self.iterations) if self._lr_takes_step else lr())

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, _schedules.LearningRateSchedule) or callable(value):
            self._lr_takes_step = isinstance(value, _schedules.LearningRateSchedule) or \
                _takes_argument(value)
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, _schedules.LearningRateSchedule):
            raise TypeError(
                "This optimizer was created with a LearningRateSchedule as its learning_rate, so "
                "its learning rate cannot be set to a number; create it with a float instead.")
        try:
            lr = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"learning_rate must be a float, a schedule or a callable; got "
                            f"{value!r}.") from None
        if not lr >= 0:
            raise ValueError(f"learning_rate must be >= 0; got {value!r}.")
        self._learning_rate = lr

    def exclude_from_weight_decay(self, var_names=None):
        """Skip weight decay for variables whose name (``"kernel"``, ``"bias"``, ...) contains
        one of ``var_names`` (a regular expression search, as Keras). Needs the variable names,
        which a model's training step passes; plain :meth:`apply` calls decay everything."""
        self._exclude_pattern = re.compile("|".join(sorted(set(var_names)))) if var_names else None

    # ----- the step ----------------------------------------------------------------------------
    def apply(self, grads, variables, segments=None):
        """Update each array of ``variables`` in place from the matching ``grads`` (Keras order:
        clip the gradients, decay the weights, then the optimizer's rule). ``grads`` are not
        modified. A None gradient (``tape.gradient`` of a variable the loss does not use)
        leaves its variable and state as they are, as Keras skips it.

        Args:
            segments: optional, one entry per variable: a list of ``(name, start, stop)`` that
                splits the flattened array into Keras variables (a model passes its flat weight
                buffer this way) for per-variable ``clipnorm`` and weight-decay exclusions.
        """
        grads, variables = list(grads), list(variables)
        if len(grads) != len(variables):
            raise ValueError(f"apply: got {len(grads)} gradients for {len(variables)} variables.")
        if segments is None:
            segments = [None] * len(variables)
        while len(self._slots) < len(variables):
            self._slots.append(None)
        for i, (g, w) in enumerate(zip(grads, variables)):
            if g is None:
                continue
            if not isinstance(w, np.ndarray):
                raise TypeError(f"apply: variable {i} is a {type(w).__name__}; variables are "
                                f"the NumPy arrays to update in place "
                                f"(model.trainable_variables).")
            if np.shape(g) != w.shape:
                raise ValueError(
                    f"apply: gradient {i} has shape {g.shape}, its variable {w.shape}.")
        if any(g is None for g in grads):
            keep = [i for i, g in enumerate(grads) if g is not None]
        else:
            keep = None
        lr = self.learning_rate
        self._before_update(variables)
        scale = self._global_clip_scale(grads if keep is None else [grads[i] for i in keep])
        for i, (g, w, seg) in enumerate(zip(grads, variables, segments)):
            if g is None:
                continue
            if not isinstance(g, np.ndarray) or g.dtype != w.dtype:
                g = np.ascontiguousarray(g, dtype=w.dtype)
            s = self._slots[i]
            if s is None or s["_shape"] != w.shape or s["_dtype"] != w.dtype:
                s = self._slots[i] = self._new_slots(w)
                s["_shape"], s["_dtype"] = w.shape, w.dtype
            g = self._clip(g, s, seg, scale)
            self._decay_weights(w, s, seg, lr)
            self._update(g, w, s, lr)
        self.iterations += 1

    def apply_gradients(self, grads_and_vars: Iterable[Tuple[np.ndarray, np.ndarray]]) -> None:
        """Keras-style: ``apply_gradients(zip(grads, variables))``."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def _global_clip_scale(self, grads):
        """Keras's ``clip_by_global_norm`` factor (NaN when the norm is not finite), or None."""
        if not self.global_clipnorm:
            return None
        norm = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))
        c = self.global_clipnorm
        with np.errstate(divide="ignore", invalid="ignore"):
            return c * min(np.float64(1.0) / norm, 1.0 / c) + (norm - norm)

    def _clip(self, g, s, seg, scale):
        """The clipped gradient in a scratch array (``g`` itself when nothing clips)."""
        if scale is None and not self.clipnorm and not self.clipvalue:
            return g
        t = g.dtype.type
        out = s.get("clip")
        if out is None:
            out = s["clip"] = np.empty_like(g)
        if scale is not None:
            np.multiply(g, t(scale), out=out)
        elif self.clipvalue:
            np.clip(g, t(-self.clipvalue), t(self.clipvalue), out=out)
        else:
            c = t(self.clipnorm)
            gf, of = g.reshape(-1), out.reshape(-1)
            for _, a, b in seg or [("", 0, g.size)]:
                part = gf[a:b]
                norm = t(np.sqrt(np.dot(part, part)))
                np.multiply(part, c, out=of[a:b])
                of[a:b] /= max(norm, c)
        return out

    def _decay_weights(self, w, s, seg, lr):
        if not self.weight_decay:
            return
        t = w.dtype.type
        tmp = s["tmp"].reshape(-1)
        wf = w.reshape(-1)
        for name, a, b in seg or [("", 0, w.size)]:
            if self._exclude_pattern is not None and self._exclude_pattern.search(name):
                continue
            np.multiply(wf[a:b], t(self.weight_decay), out=tmp[a:b])
            tmp[a:b] *= t(lr)
            wf[a:b] -= tmp[a:b]

    def _before_update(self, variables):
        """Once per step, before the per-variable updates (Nadam's running product)."""

    def _new_slots(self, w):
        return {"tmp": np.empty_like(w)}

    def _update(self, g, w, s, lr):
        raise NotImplementedError

    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, _schedules.LearningRateSchedule):
            lr = _schedules.serialize(lr)
        elif not isinstance(lr, float):
            lr = self.learning_rate    # a plain callable cannot be saved: its current value
        cfg = {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
               "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm,
               "clipvalue": self.clipvalue}
        cfg.update((attr, getattr(self, attr)) for attr in self._config_attrs)
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = _schedules.deserialize(config["learning_rate"])
        return cls(**config)

    # State for save/load: iterations plus every slot array, in a stable order.
    def get_state(self) -> Tuple[int, Dict[str, np.ndarray]]:
        arrays = {}
        for i, s in enumerate(self._slots):
            if s is None:
                continue
            for k, v in s.items():
                if not k.startswith(("_", "tmp")) and k != "clip":   # not scratch buffers
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


def _fused(g, w):
    """Whether ``cconv._ext.optim`` can update ``w`` from ``g`` in one pass (same dtype,
    float32/float64, both C-contiguous; the results are NumPy's, bit for bit)."""
    return (g.dtype == w.dtype and w.dtype in (np.float32, np.float64)
            and g.flags.c_contiguous and w.flags.c_contiguous and g.shape == w.shape)


def _update_moments(g, m, v, tmp, beta_1, beta_2):
    """Adam's moment estimates in place: ``m += (g - m) * (1 - beta_1)``,
    ``v += (g*g - v) * (1 - beta_2)`` (``tmp`` is scratch)."""
    t = m.dtype.type
    np.subtract(g, m, out=tmp)
    tmp *= t(1 - beta_1)
    m += tmp
    np.square(g, out=tmp)
    tmp -= v
    tmp *= t(1 - beta_2)
    v += tmp


def _optional_nonnegative(value, arg):
    if value is None:
        return None
    if not (isinstance(value, (int, float, np.floating, np.integer)) and value >= 0):
        raise ValueError(f"{arg} must be a float >= 0 or None; got {arg}={value!r}.")
    return float(value)


def _takes_argument(fn):
    """Whether ``fn`` can be called with the step (one positional argument)."""
    try:
        inspect.signature(fn).bind(0)
    except TypeError:
        return False
    except ValueError:        # builtins without a signature: assume the step
        return True
    return True


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.
    Keras 3 defaults: learning_rate=0.01, momentum=0.0, nesterov=False."""

    _default_name = "SGD"
    _config_attrs = ("momentum", "nesterov")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"SGD: momentum must be in [0, 1]; got {momentum!r}.")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _new_slots(self, w):
        s = super()._new_slots(w)
        if self.momentum != 0:
            s["momentum"] = np.zeros_like(w)
        return s

    def _update(self, g, w, s, lr):
        t = w.dtype.type
        lr = t(lr)
        tmp = s["tmp"]
        if _fused(g, w):
            m = s.get("momentum", tmp)
            _optim.sgd(g.reshape(-1), w.reshape(-1), m.reshape(-1), lr, t(self.momentum),
                       self.momentum != 0, self.nesterov, get_num_threads())
            return
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


class Adam(Optimizer):
    """Adam, Keras 3: learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7
    (added outside the square root), amsgrad=False."""

    _default_name = "adam"
    _config_attrs = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
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

    def _update(self, g, w, s, lr):
        t = w.dtype.type
        step = t(self.iterations + 1)
        alpha = t(lr) * np.sqrt(t(1) - t(self.beta_2) ** step) / (t(1) - t(self.beta_1) ** step)
        m, v, tmp, tmp2 = s["m"], s["v"], s["tmp"], s["tmp2"]
        if _fused(g, w):
            v_hat = s["v_hat"] if self.amsgrad else v
            _optim.adam(*(a.reshape(-1) for a in (g, w, m, v, v_hat)), t(1 - self.beta_1),
                        t(1 - self.beta_2), alpha, t(self.epsilon), self.amsgrad,
                        get_num_threads())
            return
        _update_moments(g, m, v, tmp, self.beta_1, self.beta_2)
        if self.amsgrad:
            np.maximum(s["v_hat"], v, out=s["v_hat"])
            v = s["v_hat"]
        np.sqrt(v, out=tmp)
        tmp += t(self.epsilon)
        np.multiply(m, alpha, out=tmp2)
        tmp2 /= tmp
        w -= tmp2


class RMSprop(Optimizer):
    """RMSprop, Keras 3: learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
    centered=False (epsilon inside the square root, as Keras 3)."""

    _default_name = "rmsprop"
    _config_attrs = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
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

    def _update(self, g, w, s, lr):
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
        inc = g * t(lr)
        inc /= tmp
        if self.momentum > 0:
            m = s["momentum"]
            m *= t(self.momentum)
            m += inc
            w -= m
        else:
            w -= inc


class AdamW(Adam):
    """Adam with decoupled weight decay, Keras 3: ``weight_decay=0.004`` by default (each step
    first ``w -= w * weight_decay * lr``, then Adam's update); other arguments as Adam."""

    _default_name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a float; got weight_decay=None.")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad,
                         weight_decay=weight_decay, **kwargs)


class Adagrad(Optimizer):
    """Adagrad, Keras 3: learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7:
    ``a += g*g``; ``w -= lr * g / sqrt(a + epsilon)``."""

    _default_name = "adagrad"
    _config_attrs = ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not initial_accumulator_value >= 0:
            raise ValueError(f"Adagrad: initial_accumulator_value must be >= 0; got "
                             f"{initial_accumulator_value!r}.")
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def _new_slots(self, w):
        s = super()._new_slots(w)
        s["accumulator"] = np.full_like(w, self.initial_accumulator_value)
        return s

    def _update(self, g, w, s, lr):
        t = w.dtype.type
        a, tmp = s["accumulator"], s["tmp"]
        np.square(g, out=tmp)
        a += tmp
        np.add(a, t(self.epsilon), out=tmp)
        np.sqrt(tmp, out=tmp)
        inc = g * t(lr)
        inc /= tmp
        w -= inc


class Nadam(Optimizer):
    """Nadam (Adam with Nesterov momentum), Keras 3: learning_rate=0.001, beta_1=0.9,
    beta_2=0.999, epsilon=1e-7. With ``u_t = beta_1 * (1 - 0.5 * 0.96**t)`` and ``P_t`` the
    product of ``u_1 .. u_t``: ``m_hat = u_{t+1} m / (1 - P_t u_{t+1}) + (1 - u_t) g / (1 - P_t)``,
    ``v_hat = v / (1 - beta_2**t)``, ``w -= lr * m_hat / (sqrt(v_hat) + epsilon)``."""

    _default_name = "nadam"
    _config_attrs = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self._u_product = 1.0

    def _new_slots(self, w):
        s = super()._new_slots(w)
        s["m"] = np.zeros_like(w)
        s["v"] = np.zeros_like(w)
        return s

    def _u(self, t, step):
        return t(self.beta_1) * (t(1) - t(0.5) * t(0.96) ** t(step))

    def _before_update(self, variables):
        t = variables[0].dtype.type if variables else np.float32
        self._u_product = float(t(self._u_product) * self._u(t, self.iterations + 1))

    def _update(self, g, w, s, lr):
        t = w.dtype.type
        step = self.iterations + 1
        u_t, u_next = self._u(t, step), self._u(t, step + 1)
        p_t = t(self._u_product)
        m, v, tmp = s["m"], s["v"], s["tmp"]
        _update_moments(g, m, v, tmp, self.beta_1, self.beta_2)
        m_hat = m * u_next                      # Keras's order of operations
        m_hat /= t(1) - p_t * u_next
        g_part = g * (t(1) - u_t)
        g_part /= t(1) - p_t
        m_hat += g_part
        np.divide(v, t(1) - t(self.beta_2) ** t(step), out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += t(self.epsilon)
        m_hat *= t(lr)
        m_hat /= tmp
        w -= m_hat

    def get_state(self):
        iterations, arrays = super().get_state()
        arrays["u_product"] = np.array(self._u_product)
        return iterations, arrays

    def set_state(self, iterations, arrays, variables):
        super().set_state(iterations, arrays, variables)
        self._u_product = float(arrays["u_product"]) if "u_product" in arrays else 1.0


# Names accepted by get() (besides every class name, case and underscores ignored).
REGISTRY = Registry("optimizer", Optimizer, {
    "sgd": SGD, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad, "nadam": Nadam,
    "rmsprop": RMSprop})
get, serialize, deserialize = REGISTRY.get, REGISTRY.serialize, REGISTRY.deserialize
