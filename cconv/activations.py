"""Activation functions, Keras 3 names and formulas, with their derivatives.

Every activation is an :class:`Activation` object: calling it applies the function
(``cconv.activations.relu(x)`` returns a fresh array, input untouched), and layers use
:meth:`Activation.forward` / :meth:`Activation.backward` to train.

Shapes: any shape in, same shape out; ``softmax`` and ``log_softmax`` work along the last
axis.

Every function computes in its input's dtype (float32 stays float32) with Keras 3's formula,
rearranged only where Keras's literal form would overflow (``exp`` of a large ``|x|``), so the
results agree with ``keras.activations`` to float rounding and no overflow warning is raised;
``exponential`` overflows to ``inf`` as Keras's does, silently.
"""

import math

import numpy as np

from . import autograd as _autograd
from .registry import Registry

__all__ = [
    "Activation", "get", "serialize", "deserialize",
    "linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu", "elu", "gelu",
    "relu6", "silu", "swish", "hard_sigmoid", "hard_silu", "hard_swish", "mish", "softplus",
    "softsign", "selu", "exponential", "log_softmax",
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


def _stable_sigmoid(z):
    """``1 / (1 + exp(-z))`` in ``z``'s dtype, stable for large ``|z|``: ``exp(-|z|)`` never
    overflows (``e / (1 + e)`` for negative ``z``)."""
    e = np.exp(-np.abs(z))
    r = 1.0 / (1.0 + e)
    return np.where(z >= 0, r, e * r).astype(z.dtype, copy=False)


def _emit(res, out):
    """``res``, or written into ``out`` (an in-place forward) and ``out`` returned."""
    if out is not None:
        out[...] = res
        return out
    return res


class _Sigmoid(Activation):
    name = "sigmoid"

    def _forward(self, z, out):
        return _emit(_stable_sigmoid(z), out)

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


# ----- Keras 3's activations of modern CNNs (MobileNet, EfficientNet, YOLO, ...) -----------------
class _ReLU6(Activation):
    """``min(max(x, 0), 6)``; derivative 1 on ``0 < x < 6`` (read from ``a``), else 0."""

    name = "relu6"

    def _forward(self, z, out):
        out = np.maximum(z, 0, out=out)
        return np.minimum(out, 6, out=out)

    def _backward(self, dy, z, a):
        return np.where((a > 0) & (a < 6), dy, 0)


class _SiLU(Activation):
    """``x * sigmoid(x)`` (Keras's ``silu``, alias ``swish``); derivative
    ``s * (1 + x * (1 - s))`` with ``s = sigmoid(x)`` (TensorFlow's form)."""

    name = "silu"
    needs_input = True

    def _forward(self, z, out):
        return _emit(z * _stable_sigmoid(z), out)

    def _backward(self, dy, z, a):
        s = _stable_sigmoid(z)
        return dy * (s * (1 + z * (1 - s)))


def _relu6_of_shift(z):
    """``relu6(x + 3)`` in ``z``'s dtype (a fresh array)."""
    r = z + z.dtype.type(3)
    np.maximum(r, 0, out=r)
    return np.minimum(r, 6, out=r)


class _HardSigmoid(Activation):
    """Keras 3's ``relu6(x + 3) / 6`` (not Keras 2's ``0.2 x + 0.5``); derivative ``1 / 6``
    on ``-3 < x < 3`` (where ``0 < a < 1``), else 0."""

    name = "hard_sigmoid"

    def _forward(self, z, out):
        r = _relu6_of_shift(z)
        return np.divide(r, 6, out=r if out is None else out)

    def _backward(self, dy, z, a):
        return np.where((a > 0) & (a < 1), dy / 6, 0)


class _HardSiLU(Activation):
    """``x * relu6(x + 3) / 6`` (Keras's ``hard_silu``, alias ``hard_swish``); derivative
    ``hard_sigmoid(x) + x / 6`` on ``-3 < x < 3``, 0 below, 1 above."""

    name = "hard_silu"
    needs_input = True

    def _forward(self, z, out):
        r = _relu6_of_shift(z)
        np.divide(r, 6, out=r)
        return np.multiply(z, r, out=out)

    def _backward(self, dy, z, a):
        r = z + z.dtype.type(3)
        h = np.minimum(np.maximum(r, 0), 6) / 6
        return dy * h + np.where((r > 0) & (r < 6), dy * z / 6, 0)


def _softplus(z):
    """``log(1 + exp(x))`` without overflow (``np.logaddexp(x, 0)``, Keras's numpy form)."""
    return np.logaddexp(z, z.dtype.type(0))


class _Mish(Activation):
    """``x * tanh(softplus(x))``; derivative ``t + x * (1 - t^2) * sigmoid(x)``,
    ``t = tanh(softplus(x))``."""

    name = "mish"
    needs_input = True

    def _forward(self, z, out):
        return np.multiply(z, np.tanh(_softplus(z)), out=out)

    def _backward(self, dy, z, a):
        t = np.tanh(_softplus(z))
        return dy * (t + z * (1 - t * t) * _stable_sigmoid(z))


class _Softplus(Activation):
    """``log(1 + exp(x))``; derivative ``sigmoid(x)``."""

    name = "softplus"
    needs_input = True

    def _forward(self, z, out):
        return _emit(_softplus(z), out)

    def _backward(self, dy, z, a):
        return dy * _stable_sigmoid(z)


class _Softsign(Activation):
    """``x / (1 + |x|)``; derivative ``1 / (1 + |x|)^2`` (divided twice: no overflow)."""

    name = "softsign"
    needs_input = True

    def _forward(self, z, out):
        return np.divide(z, 1 + np.abs(z), out=out)

    def _backward(self, dy, z, a):
        q = 1 + np.abs(z)
        return dy / q / q


# SELU's constants (Klambauer et al. 2017), as Keras and TensorFlow write them.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SELU_SCALE_ALPHA = 1.7580993408473768599402175208123


class _SELU(Activation):
    """``scale * (x if x >= 0 else alpha * expm1(x))``, Keras's constants; derivative
    ``scale`` where ``a >= 0``, else ``a + scale * alpha`` (TensorFlow's SeluGrad)."""

    name = "selu"

    def _forward(self, z, out):
        t = z.dtype.type
        neg = t(_SELU_ALPHA) * np.expm1(np.minimum(z, 0))
        return np.multiply(t(_SELU_SCALE), np.where(z >= 0, z, neg), out=out)

    def _backward(self, dy, z, a):
        t = dy.dtype.type
        return np.where(a < 0, dy * (a + t(_SELU_SCALE_ALPHA)), dy * t(_SELU_SCALE))


class _Exponential(Activation):
    """``exp(x)`` (``inf`` past the dtype's range, as Keras, without a warning); derivative
    ``a``."""

    name = "exponential"

    def _forward(self, z, out):
        with np.errstate(over="ignore"):
            return np.exp(z, out=out)

    def _backward(self, dy, z, a):
        return dy * a


class _LogSoftmax(Activation):
    """``x - max(x) - log(sum(exp(x - max(x))))`` along the last axis (Keras's numpy form);
    derivative ``dy - exp(a) * sum(dy)``."""

    name = "log_softmax"

    def _forward(self, z, out):
        out = np.subtract(z, z.max(axis=-1, keepdims=True), out=out)
        out -= np.log(np.exp(out).sum(axis=-1, keepdims=True))
        return out

    def _backward(self, dy, z, a):
        return dy - np.exp(a) * dy.sum(axis=-1, keepdims=True)


linear = _Linear()
relu = _ReLU()
sigmoid = _Sigmoid()
tanh = _Tanh()
softmax = _Softmax()
leaky_relu = _LeakyReLU()
elu = _ELU()
gelu = _GELU()
relu6 = _ReLU6()
silu = swish = _SiLU()
hard_sigmoid = _HardSigmoid()
hard_silu = hard_swish = _HardSiLU()
mish = _Mish()
softplus = _Softplus()
softsign = _Softsign()
selu = _SELU()
exponential = _Exponential()
log_softmax = _LogSoftmax()

_DEFAULTS = {type(a): a for a in (linear, relu, sigmoid, tanh, softmax, leaky_relu, elu, gelu,
                                  relu6, silu, hard_sigmoid, hard_silu, mish, softplus,
                                  softsign, selu, exponential, log_softmax)}
# Keras 3's aliases: the same function, serialized under its own name ("swish" -> "silu").
_ALIASES = {"swish": silu, "hard_swish": hard_silu}

# Activations are known by their names ("relu", "leaky_relu"; case and underscores ignored).
REGISTRY = Registry("activation", Activation,
                    {**{a.name: type(a) for a in _DEFAULTS.values()},
                     **{alias: type(a) for alias, a in _ALIASES.items()}},
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
