"""Activation functions, Keras 3 names and formulas, with their derivatives.

Every activation is an :class:`Activation` object: calling it applies the function
(``cconv.activations.relu(x)`` returns a fresh array, input untouched), and layers use
:meth:`Activation.forward` / :meth:`Activation.backward` to train.

Shapes: any shape in, same shape out; ``softmax`` works along the last axis.
"""

import math

import numpy as np

from . import autograd as _autograd
from .registry import Registry

__all__ = [
    "Activation", "get", "serialize", "deserialize",
    "linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu", "elu", "gelu",
]


class Activation:
    """An element-wise (or last-axis, for softmax) activation with its derivative.

    Subclasses define ``_forward(z, out)`` and ``_backward(dy, z, a)``.
    ``needs_input`` says whether the derivative needs the pre-activation ``z``
    (otherwise the output ``a`` suffices and ``forward`` may work in place).
    """

    name = None
    needs_input = False

    def __call__(self, x):
        """Apply the activation to ``x`` (any shape); returns a fresh array (a tensor on
        the tape, differentiated by :meth:`backward`, for a ``cconv.autograd`` tensor)."""
        if _autograd.in_use and _autograd.is_tensor(x):
            return _autograd.activation_on_tape(self, x)
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        return self._forward(x, None)

    def forward(self, z, inplace=False):
        """``a = f(z)``; with ``inplace=True`` ``z`` may be overwritten (only when
        ``needs_input`` is False) and returned."""
        if inplace and not self.needs_input:
            return self._forward(z, z)
        return self._forward(z, None)

    def backward(self, dy, z, a):
        """``dL/dz`` from ``dy = dL/da``; ``z`` may be None unless ``needs_input``."""
        return self._backward(dy, z, a)

    def get_config(self):
        return {}

    def __repr__(self):
        return f"<activation {self.name}>"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))


class _Linear(Activation):
    name = "linear"

    def _forward(self, z, out):
        return z if out is not None else z.copy()

    def _backward(self, dy, z, a):
        return dy


class _ReLU(Activation):
    name = "relu"

    def _forward(self, z, out):
        return np.maximum(z, 0, out=out)

    def _backward(self, dy, z, a):
        return np.multiply(dy, a > 0)


class _Sigmoid(Activation):
    name = "sigmoid"

    def _forward(self, z, out):
        # Stable for large |z|: exp(-|z|) never overflows.
        e = np.exp(-np.abs(z))
        pos = z >= 0
        r = 1.0 / (1.0 + e)
        res = np.where(pos, r, e * r).astype(z.dtype, copy=False)
        if out is not None:
            out[...] = res
            return out
        return res

    def _backward(self, dy, z, a):
        return dy * a * (1 - a)


class _Tanh(Activation):
    name = "tanh"

    def _forward(self, z, out):
        return np.tanh(z, out=out)

    def _backward(self, dy, z, a):
        return dy * (1 - a * a)


class _Softmax(Activation):
    name = "softmax"

    def _forward(self, z, out):
        out = np.subtract(z, z.max(axis=-1, keepdims=True), out=out)
        np.exp(out, out=out)
        out /= out.sum(axis=-1, keepdims=True)
        return out

    def _backward(self, dy, z, a):
        return a * (dy - (dy * a).sum(axis=-1, keepdims=True))


class _LeakyReLU(Activation):
    name = "leaky_relu"

    def __init__(self, negative_slope=0.2):
        if negative_slope < 0:
            raise ValueError(f"leaky_relu: negative_slope must be >= 0, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def _forward(self, z, out):
        res = np.where(z > 0, z, z * z.dtype.type(self.negative_slope))
        if out is not None:
            out[...] = res
            return out
        return res

    def _backward(self, dy, z, a):
        # sign(a) == sign(z) because negative_slope >= 0 (a == 0 only where z <= 0).
        return np.where(a > 0, dy, dy * dy.dtype.type(self.negative_slope))

    def get_config(self):
        return {"negative_slope": self.negative_slope}


class _ELU(Activation):
    name = "elu"

    def __init__(self, alpha=1.0):
        self.alpha = float(alpha)

    def _forward(self, z, out):
        res = np.where(z > 0, z, self.alpha * np.expm1(np.minimum(z, 0))).astype(
            z.dtype, copy=False
        )
        if out is not None:
            out[...] = res
            return out
        return res

    def _backward(self, dy, z, a):
        # For z <= 0, a = alpha * (exp(z) - 1), so da/dz = a + alpha.
        return np.where(a > 0, dy, dy * (a + a.dtype.type(self.alpha)))

    def get_config(self):
        return {"alpha": self.alpha}


def _erf(x):
    try:
        from scipy.special import erf
        return erf(x)
    except ImportError:  # pragma: no cover - scipy ships with scikit-learn
        return np.vectorize(math.erf, otypes=[x.dtype])(x)


class _GELU(Activation):
    """``x * Phi(x)`` (``approximate=False``, Keras 3's default) or the tanh form."""

    name = "gelu"
    needs_input = True

    def __init__(self, approximate=False):
        self.approximate = bool(approximate)

    def _forward(self, z, out):
        if self.approximate:
            c = math.sqrt(2 / math.pi)
            res = 0.5 * z * (1 + np.tanh(c * (z + 0.044715 * z ** 3)))
        else:
            res = 0.5 * z * (1 + _erf(z / math.sqrt(2)))
        res = res.astype(z.dtype, copy=False)
        if out is not None:
            out[...] = res
            return out
        return res

    def _backward(self, dy, z, a):
        if self.approximate:
            c = math.sqrt(2 / math.pi)
            u = c * (z + 0.044715 * z ** 3)
            t = np.tanh(u)
            d = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * c * (1 + 3 * 0.044715 * z * z)
        else:
            cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
            pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
            d = cdf + z * pdf
        return (dy * d).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"approximate": self.approximate}


linear = _Linear()
relu = _ReLU()
sigmoid = _Sigmoid()
tanh = _Tanh()
softmax = _Softmax()
leaky_relu = _LeakyReLU()
elu = _ELU()
gelu = _GELU()

_DEFAULTS = {type(a): a for a in (linear, relu, sigmoid, tanh, softmax, leaky_relu, elu, gelu)}

# Activations are known by their names ("relu", "leaky_relu"; case and underscores ignored).
REGISTRY = Registry("activation", Activation, {a.name: type(a) for a in _DEFAULTS.values()},
                    from_name=lambda cls, name: _DEFAULTS[cls],
                    from_config=lambda cls, config: cls(**config))
deserialize = REGISTRY.deserialize


def get(identifier):
    """Resolve an activation: None or "linear" -> linear, a name, an :class:`Activation`,
    or a ``{"class_name": name, "config": {...}}`` dict.

    Raises:
        ValueError: unknown name; the message lists the known ones.
        TypeError: anything else (plain Python callables cannot be differentiated).
    """
    return linear if identifier is None else REGISTRY.get(identifier)


def serialize(activation):
    """Name (default settings) or ``{"class_name", "config"}`` dict."""
    activation = get(activation)
    cfg = activation.get_config()
    if not cfg or activation == _DEFAULTS[type(activation)]:
        return activation.name
    return {"class_name": activation.name, "config": cfg}
