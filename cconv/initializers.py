"""Weight initializers with Keras 3 names, formulas and defaults.

An initializer is called with a shape and a dtype and returns a fresh array:
``HeNormal(seed=0)((5, 5, 1, 6))``. Fans follow Keras: for a Dense kernel ``(in, out)``
``fan_in = in``; for a Conv2D kernel ``(kh, kw, cin, cout)`` ``fan_in = kh * kw * cin`` and
``fan_out = kh * kw * cout``.

Seeds: as in Keras 3, an initializer built with an integer seed returns the same values
every time it is called with the same shape. The random stream is NumPy's, so values differ
from Keras's (same distribution); copy weights with ``set_weights`` to get Keras's numbers.
Without a seed, each call draws on from one global generator that
``cconv.utils.set_random_seed(seed)`` restarts: the same seed then gives the same weights.
"""

import math

import numpy as np

from . import backend as _backend
from .registry import Configurable, Registry

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform",
    "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal",
    "HeUniform", "LecunNormal", "LecunUniform", "get", "serialize", "deserialize",
    "glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal",
    "lecun_uniform", "zeros", "ones",
]


def compute_fans(shape):
    """``(fan_in, fan_out)`` for a weight shape, Keras's rule."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer(Configurable):
    """Base class: ``__call__(shape, dtype="float32") -> ndarray`` of that shape."""

    def __call__(self, shape, dtype="float32"):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class _Random(Initializer):
    def __init__(self, seed=None):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be None or an int, got {seed!r}")
        self.seed = None if seed is None else int(seed)

    def _rng(self):
        # An int seed gives the same values at every call (Keras 3 behaviour); without one,
        # each call draws on from the global generator (cconv.utils.set_random_seed).
        if self.seed is None:
            return _backend.global_generator()
        return np.random.default_rng(self.seed)

    def get_config(self):
        return {"seed": self.seed}

    def __setstate__(self, state):
        state.pop("_unseeded", None)     # pickles made before the global generator
        self.__dict__.update(state)


def _truncated_normal(rng, shape, stddev):
    """Normal(0, stddev) resampled outside two standard deviations (Keras's rule)."""
    n = math.prod(shape)
    out = rng.standard_normal(n)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * stddev).reshape(shape)


class _Normal(_Random):
    """The arguments of RandomNormal and TruncatedNormal: ``mean``, ``stddev``, ``seed``."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomNormal(_Normal):
    def __call__(self, shape, dtype="float32"):
        return self._rng().normal(self.mean, self.stddev, size=shape).astype(dtype)


class RandomUniform(_Random):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, dtype="float32"):
        return self._rng().uniform(self.minval, self.maxval, size=shape).astype(dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class TruncatedNormal(_Normal):
    def __call__(self, shape, dtype="float32"):
        return (self.mean + _truncated_normal(self._rng(), tuple(shape), self.stddev)).astype(dtype)


class VarianceScaling(_Random):
    """Keras's ``VarianceScaling``: ``scale / n`` variance, ``n`` from ``mode``.

    ``distribution``: "truncated_normal" (stddev ``sqrt(scale / n) / 0.8796...``, cut at two
    stddevs), "untruncated_normal" or "uniform" (limit ``sqrt(3 * scale / n)``).
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if mode not in self._MODES:
            raise ValueError(f"Unknown mode {mode!r}; known: {', '.join(self._MODES)}.")
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in self._DISTS:
            raise ValueError(
                f"Unknown distribution {distribution!r}; known: {', '.join(self._DISTS)}."
            )
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def __call__(self, shape, dtype="float32"):
        shape = tuple(int(s) for s in shape)
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "truncated_normal":
            w = _truncated_normal(rng, shape, math.sqrt(scale) / 0.87962566103423978)
        elif self.distribution == "untruncated_normal":
            w = rng.normal(0.0, math.sqrt(scale), size=shape)
        else:
            limit = math.sqrt(3.0 * scale)
            w = rng.uniform(-limit, limit, size=shape)
        return np.asarray(w, dtype=dtype)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


class _Preset(VarianceScaling):
    _preset = {}

    def __init__(self, seed=None):
        super().__init__(seed=seed, **self._preset)

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_Preset):
    """Uniform in ``[-limit, limit]``, ``limit = sqrt(6 / (fan_in + fan_out))``."""
    _preset = dict(scale=1.0, mode="fan_avg", distribution="uniform")


class GlorotNormal(_Preset):
    """Truncated normal, stddev ``sqrt(2 / (fan_in + fan_out))``."""
    _preset = dict(scale=1.0, mode="fan_avg", distribution="truncated_normal")


class HeNormal(_Preset):
    """Truncated normal, stddev ``sqrt(2 / fan_in)``."""
    _preset = dict(scale=2.0, mode="fan_in", distribution="truncated_normal")


class HeUniform(_Preset):
    """Uniform in ``[-limit, limit]``, ``limit = sqrt(6 / fan_in)``."""
    _preset = dict(scale=2.0, mode="fan_in", distribution="uniform")


class LecunNormal(_Preset):
    """Truncated normal, stddev ``sqrt(1 / fan_in)``."""
    _preset = dict(scale=1.0, mode="fan_in", distribution="truncated_normal")


class LecunUniform(_Preset):
    """Uniform in ``[-limit, limit]``, ``limit = sqrt(3 / fan_in)``."""
    _preset = dict(scale=1.0, mode="fan_in", distribution="uniform")


# Keras's functional aliases: ``cconv.initializers.he_normal(seed=0)``.
glorot_uniform, glorot_normal = GlorotUniform, GlorotNormal
he_normal, he_uniform = HeNormal, HeUniform
lecun_normal, lecun_uniform = LecunNormal, LecunUniform
zeros, ones = Zeros, Ones



def _from_config(cls, config):
    config.pop("input_axes", None)    # Keras 3.1x extras we don't use
    config.pop("output_axes", None)
    return cls(**config)


# Names accepted by get() (besides every class name, case and underscores ignored).
REGISTRY = Registry("initializer", Initializer, {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal, "he_normal": HeNormal, "he_uniform": HeUniform,
    "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
}, from_config=_from_config)
get, serialize, deserialize = REGISTRY.get, REGISTRY.serialize, REGISTRY.deserialize
