"""Learning-rate schedules with Keras 3's names, arguments and formulas; also reachable as
``cconv.optimizers.schedules`` (Keras's spelling).

A schedule maps the optimizer's step (``optimizer.iterations``: 0 for the first update) to a
learning rate: pass one as ``learning_rate=`` to any optimizer. Values are computed in float64
(Keras computes in float32, so values agree to about 1e-7 relative).

- ``ExponentialDecay``: ``lr0 * decay_rate ** (step / decay_steps)`` (``floor`` of the
  exponent with ``staircase=True``).
- ``InverseTimeDecay``: ``lr0 / (1 + decay_rate * step / decay_steps)`` (staircase: floor).
- ``PolynomialDecay``: ``(lr0 - end) * (1 - step / decay_steps) ** power + end``, the step
  capped at ``decay_steps`` (``cycle=True``: ``decay_steps`` grows by whole multiples).
- ``PiecewiseConstantDecay``: ``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
  ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary.
- ``CosineDecay``: optional linear warmup from ``initial_learning_rate`` to ``warmup_target``
  over ``warmup_steps``, then ``peak * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps))
  + alpha)`` with ``s`` capped at ``decay_steps``.
"""

import math

from .registry import Configurable

__all__ = [
    "LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "InverseTimeDecay",
    "PolynomialDecay", "CosineDecay", "serialize", "deserialize",
]


def _positive_steps(decay_steps, cls):
    if not decay_steps > 0:
        raise ValueError(f"{cls}: decay_steps must be > 0; got decay_steps={decay_steps!r}.")
    return decay_steps


class LearningRateSchedule(Configurable):
    """Base class: ``schedule(step) -> float``. Subclasses define ``__call__`` and
    ``get_config`` (so that a model using them can be saved)."""

    def __call__(self, step):
        raise NotImplementedError(f"{type(self).__name__} must define __call__(self, step).")

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} must define get_config() to be saved.")


class _Decay(LearningRateSchedule):
    """What the schedules that decay over ``decay_steps`` share: the arguments
    ``initial_learning_rate``, ``decay_steps`` (> 0; ``label`` names the schedule in the error)
    and ``name``."""

    def __init__(self, initial_learning_rate, decay_steps, name, label):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _positive_steps(decay_steps, label)
        self.name = name


class ExponentialDecay(_Decay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        super().__init__(initial_learning_rate, decay_steps, name, "ExponentialDecay")
        self.decay_rate = decay_rate
        self.staircase = staircase

    def __call__(self, step):
        p = float(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(ExponentialDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step):
        p = float(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)


class PiecewiseConstantDecay(LearningRateSchedule):
    """Constant pieces: ``values`` has one more entry than the increasing ``boundaries``."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                f"PiecewiseConstantDecay: boundaries must have one entry less than values; got "
                f"{len(boundaries)} boundaries {list(boundaries)} and {len(values)} values.")
        self.boundaries = list(boundaries)
        self.values = list(values)
        self.name = name

    def __call__(self, step):
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(_Decay):
    """``(lr0 - end_learning_rate) * (1 - step / decay_steps) ** power + end_learning_rate``."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        super().__init__(initial_learning_rate, decay_steps, name, "PolynomialDecay")
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle

    def __call__(self, step):
        step = float(step)
        decay_steps = float(self.decay_steps)
        if self.cycle:
            decay_steps *= 1.0 if step == 0 else math.ceil(step / self.decay_steps)
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        end = self.end_learning_rate
        return (self.initial_learning_rate - end) * (1.0 - p) ** self.power + end

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class CosineDecay(_Decay):
    """Cosine decay to ``alpha * peak`` over ``decay_steps``, after an optional linear warmup
    from ``initial_learning_rate`` to ``warmup_target`` (the peak) over ``warmup_steps``."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        super().__init__(initial_learning_rate, decay_steps, name, "CosineDecay")
        self.alpha = alpha
        self.warmup_target = warmup_target
        self.warmup_steps = warmup_steps

    def _decay(self, step, peak):
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return peak * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = float(step)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * step / self.warmup_steps + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


_CLASSES = {c.__name__: c for c in (ExponentialDecay, PiecewiseConstantDecay, InverseTimeDecay,
                                     PolynomialDecay, CosineDecay)}


def serialize(schedule):
    """``{"class_name", "config"}`` of a schedule (as Keras writes it in optimizer configs)."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config):
    """A schedule from :func:`serialize`'s dict.

    Raises:
        ValueError: unknown class name (the message lists the known ones).
    """
    cls = _CLASSES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"Unknown learning-rate schedule {config.get('class_name')!r}. "
                         f"Known: {', '.join(sorted(_CLASSES))}.")
    return cls.from_config(config.get("config") or {})
