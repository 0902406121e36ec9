"""Automatic gradients: a small reverse-mode tape over NumPy arrays.

A :class:`Tensor` wraps one NumPy array (``value``) and remembers the operation that made it
(``parents`` and ``vjp``, the vector-Jacobian product: given ``dL/d(output)``, the
gradients with respect to each parent). Operations on tensors (the operators ``+ - * / @
**``, NumPy ufuncs and functions such as ``np.exp`` and ``np.sum`` through NumPy's
``__array_ufunc__`` / ``__array_function__`` protocols, and the functions of
:mod:`cconv.ops`: ``matmul``, ``relu``, ``softmax``, ``conv2d``, ``max_pool2d``, ...) return
tensors; :func:`backprop` runs the graph backwards. Convolution, pooling, dense,
transposed convolution and upsampling use the native backward kernels of the built-in layers
(``ops.conv2d_backward``, ...); everything else is a few NumPy lines per op. Shapes follow
NumPy's broadcasting; a gradient has its operand's shape.

Where it is used:

* a Keras-style custom layer (``call`` only, see :mod:`cconv.layers.base`) trains: its
  training ``forward`` runs ``call`` on tensors (its input and weights wrapped) and its
  ``backward`` runs that small graph backwards;
* :class:`GradientTape` (Keras / TensorFlow's name) records while it is open: inside it a
  raw NumPy array used in a taped operation (a weight, ``model.trainable_variables``)
  becomes a *leaf* the tape can differentiate with respect to, and calling a model or a
  layer records one node that runs the native backward (the compiled plan included).

Gradients are NumPy arrays of the operand's dtype. Integer and boolean operands are
constants (no gradient).
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

__all__ = ["Tensor", "GradientTape", "backprop", "record", "constant", "variable",
           "is_tensor", "is_recording", "wants_node", "holds_tensor", "loss_on_tape",
           "activation_on_tape", "paused",
           "leaf", "value_of", "stop_gradient"]

_state = threading.local()

#: False until the first tensor or tape exists in the process: until then ``cconv.ops``'s
#: native functions skip even the check for tensors (a served single image pays nothing).
in_use = False


def _tapes():
    tapes = getattr(_state, "tapes", None)
    if tapes is None:
        tapes = _state.tapes = []
    return tapes


def _paused_depth():
    return getattr(_state, "paused", 0)


def note_use() -> None:
    """Mark custom-gradient machinery as used in this process (:data:`in_use`): a layer's
    ``add_loss`` calls it so that models start collecting ``losses``."""
    global in_use
    in_use = True


def is_recording() -> bool:
    """Whether a :class:`GradientTape` is open (and not paused) in this thread."""
    return bool(_tapes()) and not _paused_depth()


@contextlib.contextmanager
def paused():
    """While inside: open tapes do not turn raw arrays into leaves (code that runs its own
    native backward, such as a model's forward pass, runs under it)."""
    _state.paused = _paused_depth() + 1
    try:
        yield
    finally:
        _state.paused -= 1


class Tensor:
    """An array on the tape: ``value`` (a NumPy array), the ``parents`` it was computed
    from and ``vjp(g) -> tuple`` (one gradient or None per parent, for ``g = dL/dvalue``).
    ``requires_grad``: whether a gradient can flow into it (a leaf made to be
    differentiated, or computed from one). ``source``: for a leaf, the array it stands for.

    Supports NumPy's operators, indexing, ``.T``, ``.shape`` / ``.dtype`` / ``.ndim``,
    ``.sum`` / ``.mean`` / ``.max`` / ``.reshape`` / ``.transpose``, NumPy ufuncs and
    functions listed in :data:`UFUNCS` / :data:`FUNCTIONS`; ``np.asarray(t)`` gives the
    value (leaving the tape). ``numpy()`` also gives the value, as Keras's tensors do.
    """

    __array_priority__ = 1000

    def __init__(self, value, parents=(), vjp=None, requires_grad=None, source=None):
        global in_use
        in_use = True
        self.value = value if isinstance(value, np.ndarray) else np.asarray(value)
        self.parents = tuple(parents)
        self.vjp = vjp
        if requires_grad is None:
            requires_grad = any(p.requires_grad for p in self.parents)
        self.requires_grad = bool(requires_grad)
        self.source = source

    # ----- array-like surface --------------------------------------------------------------
    shape = property(lambda self: self.value.shape)
    dtype = property(lambda self: self.value.dtype)
    ndim = property(lambda self: self.value.ndim)
    size = property(lambda self: self.value.size)
    T = property(lambda self: transpose(self))

    def __len__(self):
        return len(self.value)

    def numpy(self) -> np.ndarray:
        """The value (a NumPy array, off the tape)."""
        return self.value

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype, copy=False)

    def __float__(self):
        return float(self.value)

    def __repr__(self):
        return f"<cconv.autograd.Tensor shape={self.shape} dtype={self.dtype}>"

    def __add__(self, o):
        return add(self, o)

    def __radd__(self, o):
        return add(o, self)

    def __sub__(self, o):
        return subtract(self, o)

    def __rsub__(self, o):
        return subtract(o, self)

    def __mul__(self, o):
        return multiply(self, o)

    def __rmul__(self, o):
        return multiply(o, self)

    def __truediv__(self, o):
        return divide(self, o)

    def __rtruediv__(self, o):
        return divide(o, self)

    def __matmul__(self, o):
        return matmul(self, o)

    def __rmatmul__(self, o):
        return matmul(o, self)

    def __pow__(self, o):
        return power(self, o)

    def __rpow__(self, o):
        return power(o, self)

    def __neg__(self):
        return negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return absolute(self)

    def __getitem__(self, index):
        return getitem(self, index)

    def __lt__(self, o):
        return self.value < value_of(o)

    def __le__(self, o):
        return self.value <= value_of(o)

    def __gt__(self, o):
        return self.value > value_of(o)

    def __ge__(self, o):
        return self.value >= value_of(o)

    __hash__ = object.__hash__

    def __setitem__(self, index, value):
        raise TypeError("A cconv.autograd.Tensor cannot be assigned to in place (the tape "
                        "would lose what it held); build a new one, e.g. with ops.where or "
                        "ops.concatenate.")

    def sum(self, axis=None, keepdims=False):
        return sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return min(self, axis, keepdims)

    def reshape(self, *shape):
        return reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def astype(self, dtype):
        return cast(self, dtype)

    # ----- NumPy protocols ---------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs.get("out") is not None:
            raise TypeError(f"cconv.autograd.Tensor: numpy.{ufunc.__name__}.{method} (or out=) "
                            f"is not differentiable; write the result to a new array.")
        if ufunc.__name__ in _PASSTHROUGH_UFUNCS:
            return ufunc(*[value_of(a) for a in inputs], **kwargs)
        op = UFUNCS.get(ufunc.__name__)
        if op is None or kwargs:
            raise TypeError(
                f"cconv's tape has no gradient for numpy.{ufunc.__name__}"
                f"{' with ' + ', '.join(kwargs) if kwargs and op else ''}; use the "
                f"differentiable ops of cconv.ops (matmul, add, multiply, exp, log, ...) or "
                f"numpy's {', '.join(sorted(UFUNCS))}.")
        return op(*inputs)

    def __array_function__(self, func, types, args, kwargs):
        name = func.__name__
        if name in _PASSTHROUGH_FUNCTIONS:
            return func(*[value_of(a) for a in args],
                        **{k: value_of(v) for k, v in kwargs.items()})
        op = FUNCTIONS.get(name)
        if op is None:
            raise TypeError(
                f"cconv's tape has no gradient for numpy.{name}; use the differentiable ops of "
                f"cconv.ops or numpy's {', '.join(sorted(FUNCTIONS))}.")
        return op(*args, **kwargs)


def is_tensor(x) -> bool:
    """Whether ``x`` is a :class:`Tensor`."""
    return isinstance(x, Tensor)


def value_of(x):
    """``x``'s NumPy value (the array itself for an array, ``value`` for a tensor; lists of
    them element by element)."""
    if isinstance(x, Tensor):
        return x.value
    if isinstance(x, (list, tuple)):
        return type(x)(value_of(v) for v in x)
    return x


def constant(x) -> Tensor:
    """``x`` as a tensor that needs no gradient."""
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x), requires_grad=False)


def variable(x, requires_grad=True) -> Tensor:
    """A leaf tensor standing for array ``x`` (its ``source``), to differentiate with
    respect to."""
    a = np.asarray(x)
    return Tensor(a, requires_grad=requires_grad and a.dtype.kind == "f", source=x)


def leaf(x):
    """``x`` as a tensor: a tensor itself; a raw array becomes the innermost open tape's
    leaf for it (the same leaf for the same array object, so ``tape.gradient(loss,
    [array])`` finds it) while a tape records, else a constant."""
    if isinstance(x, Tensor):
        return x
    if is_recording() and isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return _tapes()[-1].leaf_for(x)
    return Tensor(np.asarray(x), requires_grad=False)


def holds_tensor(x) -> bool:
    """Whether ``x`` is a tensor, or a list, tuple or dict holding one (at any depth)."""
    if isinstance(x, Tensor):
        return True
    if isinstance(x, (list, tuple)):
        return any(holds_tensor(v) for v in x)
    if isinstance(x, dict):
        return any(holds_tensor(v) for v in x.values())
    return False


def watched(x):
    """The leaf of array ``x`` if an open tape was told to ``watch`` it (its gradient is
    wanted, e.g. a saliency map's input), else None."""
    if isinstance(x, np.ndarray) and is_recording():
        for tape in reversed(_tapes()):
            if id(x) in tape.watched:
                return tape.leaf_for(x)
    return None


def wants_node(x) -> bool:
    """Whether a call on ``x`` must go on the tape: ``x`` holds a tensor, or a tape
    records."""
    return is_recording() or holds_tensor(x)


def record(value, parents, vjp) -> Tensor:
    """A new tensor of ``value`` computed from ``parents`` (tensors, or arrays taken by
    :func:`leaf`); ``vjp(g)`` returns one gradient (or None) per parent. This is how code
    with its own backward (a model, a built-in layer) joins the tape."""
    parents = tuple(leaf(p) for p in parents)
    if not any(p.requires_grad for p in parents):
        return Tensor(value, requires_grad=False)
    return Tensor(value, parents, vjp)


def stop_gradient(x) -> Tensor:
    """``x``'s value as a constant: no gradient flows through it."""
    return Tensor(value_of(x), requires_grad=False)


def _unbroadcast(g, shape):
    """Sum ``g`` (of a broadcast result's shape) down to an operand's ``shape``."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _result_dtype(*arrays):
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    return np.result_type(*floats) if floats else None


def _cast(g, like):
    return g if like.dtype.kind != "f" or g.dtype == like.dtype else g.astype(like.dtype)


def _op(value, parents, vjp):
    """A tensor from an elementwise or shape op: parents already tensors."""
    if not any(p.requires_grad for p in parents):
        return Tensor(value, requires_grad=False)

    def checked(g):
        out = vjp(g)
        return tuple(None if (d is None or not p.requires_grad) else
                     _cast(_unbroadcast(np.asarray(d), p.shape), p.value)
                     for p, d in zip(parents, out))
    return Tensor(value, parents, checked)


def _binary(x1, x2):
    """Both operands as tensors, and the values to compute with: a Python number stays a
    Python number so that NumPy keeps the other operand's dtype (``x * 2`` stays float32)."""
    a, b = leaf(x1), leaf(x2)
    av = x1 if isinstance(x1, (int, float)) and not isinstance(x1, bool) else a.value
    bv = x2 if isinstance(x2, (int, float)) and not isinstance(x2, bool) else b.value
    return a, b, av, bv


# ----- elementwise ------------------------------------------------------------------------------
def add(x1, x2):
    """``x1 + x2`` (broadcast)."""
    a, b, av, bv = _binary(x1, x2)
    return _op(av + bv, (a, b), lambda g: (g, g))


def subtract(x1, x2):
    """``x1 - x2`` (broadcast)."""
    a, b, av, bv = _binary(x1, x2)
    return _op(av - bv, (a, b), lambda g: (g, -g))


def multiply(x1, x2):
    """``x1 * x2`` (broadcast)."""
    a, b, av, bv = _binary(x1, x2)
    return _op(av * bv, (a, b), lambda g: (g * bv, g * av))


def divide(x1, x2):
    """``x1 / x2`` (broadcast)."""
    a, b, av, bv = _binary(x1, x2)
    out = av / bv
    return _op(out, (a, b), lambda g: (g / bv, -g * out / bv))


def power(x1, x2):
    """``x1 ** x2`` (broadcast); the gradient for ``x2`` needs ``x1 > 0``."""
    a, b, av, bv = _binary(x1, x2)
    out = av ** bv

    def vjp(g):
        ga = g * bv * av ** (bv - 1) if a.requires_grad else None
        gb = None
        if b.requires_grad:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = g * out * np.log(av)
        return ga, gb
    return _op(out, (a, b), vjp)


def maximum(x1, x2):
    """Elementwise maximum; a tie sends the gradient to ``x1`` (as TensorFlow)."""
    a, b, av, bv = _binary(x1, x2)
    m = av >= bv
    return _op(np.maximum(av, bv), (a, b), lambda g: (g * m, g * ~m))


def minimum(x1, x2):
    """Elementwise minimum; a tie sends the gradient to ``x1``."""
    a, b, av, bv = _binary(x1, x2)
    m = av <= bv
    return _op(np.minimum(av, bv), (a, b), lambda g: (g * m, g * ~m))


def _unary(fn, dfn):
    """An elementwise op: ``fn(value)``, gradient ``g * dfn(value, out)``."""
    def op(x):
        t = leaf(x)
        out = fn(t.value)
        return _op(out, (t,), lambda g: (g * dfn(t.value, out),))
    return op


negative = _unary(np.negative, lambda x, y: -1)
exp = _unary(np.exp, lambda x, y: y)
log = _unary(np.log, lambda x, y: 1 / x)
sqrt = _unary(np.sqrt, lambda x, y: 0.5 / y)
square = _unary(np.square, lambda x, y: 2 * x)
absolute = _unary(np.abs, lambda x, y: np.sign(x))
tanh = _unary(np.tanh, lambda x, y: 1 - y * y)
relu = _unary(lambda x: np.maximum(x, 0), lambda x, y: x > 0)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype, copy=False)


sigmoid = _unary(_sigmoid, lambda x, y: y * (1 - y))
softplus = _unary(lambda x: np.logaddexp(x, 0).astype(x.dtype, copy=False),
                  lambda x, y: _sigmoid(x))
for _f, _n in ((negative, "negative"), (exp, "exp"), (log, "log"), (sqrt, "sqrt"),
               (square, "square"), (absolute, "absolute"), (tanh, "tanh"), (relu, "relu"),
               (sigmoid, "sigmoid"), (softplus, "softplus")):
    _f.__name__ = _f.__qualname__ = _n
    _f.__doc__ = f"Elementwise {_n} of a tensor or array (same shape)."


def clip(x, x_min, x_max):
    """``x`` limited to ``[x_min, x_max]``; no gradient where it is clipped."""
    t = leaf(x)
    lo, hi = value_of(x_min), value_of(x_max)
    out = np.clip(t.value, lo, hi)
    inside = (t.value >= lo) & (t.value <= hi)
    return _op(out, (t,), lambda g: (g * inside,))


def where(condition, x1, x2):
    """``x1`` where ``condition``, else ``x2`` (broadcast)."""
    c = np.asarray(value_of(condition), bool)
    a, b, av, bv = _binary(x1, x2)
    return _op(np.where(c, av, bv), (a, b), lambda g: (g * c, g * ~c))


def cast(x, dtype):
    """``x`` as ``dtype`` (the gradient cast back)."""
    t = leaf(x)
    return _op(t.value.astype(dtype), (t,), lambda g: (g,))


# ----- products, reductions, shapes -----------------------------------------------------------
def matmul(x1, x2):
    """Matrix product (NumPy's ``matmul`` rules: batches broadcast, 1-D operands promoted)."""
    a, b, av, bv = _binary(x1, x2)
    out = np.matmul(av, bv)

    def vjp(g):
        a2 = av[None, :] if av.ndim == 1 else av
        b2 = bv[:, None] if bv.ndim == 1 else bv
        g2 = g
        if av.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if bv.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = np.matmul(g2, np.swapaxes(b2, -1, -2)) if a.requires_grad else None
        gb = np.matmul(np.swapaxes(a2, -1, -2), g2) if b.requires_grad else None
        if ga is not None and av.ndim == 1:
            ga = np.squeeze(ga, -2)
        if gb is not None and bv.ndim == 1:
            gb = np.squeeze(gb, -1)
        return ga, gb
    return _op(out, (a, b), vjp)


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = axis if isinstance(axis, (tuple, list)) else (axis,)
    return tuple(int(a) % ndim for a in axis)


def _expand(g, shape, axis, keepdims):
    """A reduction's gradient ``g`` broadcast back to the operand ``shape``."""
    if not keepdims:
        for a in sorted(_axes(axis, len(shape))):
            g = np.expand_dims(g, a)
    return np.broadcast_to(g, shape)


def sum(x, axis=None, keepdims=False):  # noqa: A001  (Keras's name)
    """Sum over ``axis`` (None: every axis)."""
    t = leaf(x)
    out = np.sum(t.value, axis=axis, keepdims=keepdims)
    return _op(out, (t,), lambda g: (_expand(g, t.shape, axis, keepdims),))


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis`` (None: every axis)."""
    t = leaf(x)
    out = np.mean(t.value, axis=axis, keepdims=keepdims)
    n = int(np.prod([t.shape[a] for a in _axes(axis, t.ndim)]))
    return _op(out, (t,), lambda g: (_expand(g, t.shape, axis, keepdims) / (n or 1),))


def _extreme(fn):
    def op(x, axis=None, keepdims=False):
        t = leaf(x)
        out = fn(t.value, axis=axis, keepdims=True)
        hit = t.value == out
        count = np.sum(hit, axis=axis, keepdims=True)

        def vjp(g):
            g = _expand(g, out.shape, axis, keepdims) if not keepdims else g
            return (np.where(hit, g / count, 0),)
        return _op(out if keepdims else np.squeeze(out, axis=_axes(axis, t.ndim)), (t,), vjp)
    return op


max = _extreme(np.max)  # noqa: A001
min = _extreme(np.min)  # noqa: A001
max.__name__, min.__name__ = "max", "min"
max.__doc__ = "Maximum over ``axis``; tied maxima share the gradient equally."
min.__doc__ = "Minimum over ``axis``; tied minima share the gradient equally."


def reshape(x, newshape):
    """``x`` with shape ``newshape`` (one ``-1`` allowed)."""
    t = leaf(x)
    return _op(np.reshape(t.value, newshape), (t,), lambda g: (np.reshape(g, t.shape),))


def transpose(x, axes=None):
    """Axes permuted (reversed when ``axes`` is None)."""
    t = leaf(x)
    out = np.transpose(t.value, axes)
    inverse = None if axes is None else np.argsort(axes)
    return _op(out, (t,), lambda g: (np.transpose(g, inverse),))


def expand_dims(x, axis):
    """``x`` with a new axis of size 1 at ``axis``."""
    t = leaf(x)
    return _op(np.expand_dims(t.value, axis), (t,), lambda g: (np.reshape(g, t.shape),))


def squeeze(x, axis=None):
    """``x`` without axes of size 1 (those in ``axis``)."""
    t = leaf(x)
    return _op(np.squeeze(t.value, axis), (t,), lambda g: (np.reshape(g, t.shape),))


def concatenate(xs, axis=0):
    """Tensors joined along ``axis``."""
    ts = [leaf(x) for x in xs]
    out = np.concatenate([t.value for t in ts], axis=axis)
    cuts = np.cumsum([t.shape[axis] for t in ts])[:-1]
    return _op(out, tuple(ts), lambda g: tuple(np.split(g, cuts, axis=axis)))


def getitem(x, index):
    """``x[index]`` (basic and integer-array indexing)."""
    t = leaf(x)
    index = value_of(index)

    def vjp(g):
        out = np.zeros(t.shape, dtype=g.dtype)
        np.add.at(out, index, g)
        return (out,)
    return _op(t.value[index], (t,), vjp)


def var(x, axis=None, keepdims=False):
    """Variance over ``axis`` (population: divided by the count), Keras's ``ops.var``."""
    centred = subtract(x, mean(x, axis, keepdims=True))
    return mean(multiply(centred, centred), axis, keepdims)


def std(x, axis=None, keepdims=False):
    """Standard deviation over ``axis`` (``sqrt(var)``), Keras's ``ops.std``."""
    return sqrt(var(x, axis, keepdims))


def leaky_relu(x, negative_slope=0.2):
    """``x`` where positive, ``negative_slope * x`` elsewhere (Keras's default slope 0.2)."""
    t = leaf(x)
    pos = t.value > 0
    slope = np.where(pos, 1, negative_slope).astype(t.dtype if t.dtype.kind == "f" else None)
    return _op(t.value * slope, (t,), lambda g: (g * slope,))


def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """Keras's ``ops.conv`` (2-D, NHWC, no bias): :func:`conv2d`."""
    if data_format not in (None, "channels_last"):
        raise ValueError(f"conv: data_format={data_format!r} is not supported; cconv works "
                         f"in channels_last (NHWC).")
    return conv2d(inputs, kernel, None, strides, padding, dilation_rate)


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Keras's ``ops.max_pool`` (2-D, NHWC): :func:`max_pool2d`."""
    if data_format not in (None, "channels_last"):
        raise ValueError(f"max_pool: data_format={data_format!r} is not supported; cconv "
                         f"works in channels_last (NHWC).")
    return max_pool2d(inputs, pool_size, strides, padding)


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """Keras's ``ops.average_pool`` (2-D, NHWC): :func:`avg_pool2d`."""
    if data_format not in (None, "channels_last"):
        raise ValueError(f"average_pool: data_format={data_format!r} is not supported; "
                         f"cconv works in channels_last (NHWC).")
    return avg_pool2d(inputs, pool_size, strides, padding)


def softmax(x, axis=-1):
    """Softmax along ``axis`` (max subtracted first)."""
    t = leaf(x)
    z = t.value - np.max(t.value, axis=axis, keepdims=True)
    e = np.exp(z)
    out = e / np.sum(e, axis=axis, keepdims=True)
    return _op(out, (t,), lambda g: (out * (g - np.sum(g * out, axis=axis, keepdims=True)),))


def log_softmax(x, axis=-1):
    """Log of the softmax along ``axis``, computed stably."""
    t = leaf(x)
    z = t.value - np.max(t.value, axis=axis, keepdims=True)
    out = z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
    p = np.exp(out)
    return _op(out, (t,), lambda g: (g - p * np.sum(g, axis=axis, keepdims=True),))


# ----- the native ops, with the built-in layers' backward ----------------------------------
def _native(forward, backward_fn, x, weights, kw):
    """A native op with its own backward: ``forward(x, *weights, **kw)`` and
    ``backward_fn(g, xv, wvs) -> gradients for (x, *weights)``."""
    ts = [leaf(x)] + [None if w is None else leaf(w) for w in weights]
    present = [t for t in ts if t is not None]
    vals = [None if t is None else t.value for t in ts]
    out = forward(vals[0], *vals[1:], **kw)

    def vjp(g):
        grads = backward_fn(g, vals, ts[0].requires_grad)
        return tuple(d for d, t in zip(grads, ts) if t is not None)
    return _op(out, tuple(present), vjp)


def _ops():
    from . import ops
    return ops


def _array_fn(name):
    """``cconv.ops``'s function ``name`` on arrays only (never back onto the tape)."""
    fn = getattr(_ops(), name)
    return getattr(fn, "array_function", fn)


def conv2d(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1, groups=1):
    """:func:`cconv.ops.conv2d` on the tape; backward by ``ops.conv2d_backward``."""
    ops = _ops()
    kw = dict(strides=strides, padding=padding, dilation_rate=dilation_rate, groups=groups)

    def back(g, v, input_grad):
        return ops.conv2d_backward(g, v[0], v[1], input_grad=input_grad, **kw)
    return _native(lambda xv, k, b: _array_fn("conv2d")(xv, k, b, **kw), back, x,
                   (kernel, bias), {})


def conv2d_transpose(x, kernel, bias=None, strides=1, padding="valid", output_padding=None,
                     dilation_rate=1):
    """:func:`cconv.ops.conv2d_transpose` on the tape; backward by
    ``ops.conv2d_transpose_backward``."""
    ops = _ops()
    kw = dict(strides=strides, padding=padding, output_padding=output_padding,
              dilation_rate=dilation_rate)

    def back(g, v, input_grad):
        return ops.conv2d_transpose_backward(g, v[0], v[1], input_grad=input_grad, **kw)
    return _native(lambda xv, k, b: _array_fn("conv2d_transpose")(xv, k, b, **kw), back, x,
                   (kernel, bias), {})


def dense(x, kernel, bias=None):
    """:func:`cconv.ops.dense` on the tape; backward by ``ops.dense_backward``."""
    ops = _ops()

    def back(g, v, input_grad):
        return ops.dense_backward(g, v[0], v[1], input_grad=input_grad)
    return _native(lambda xv, k, b: _array_fn("dense")(xv, k, b), back, x, (kernel, bias), {})


def _pool(name):
    def op(x, pool_size, strides=None, padding="valid"):
        ops = _ops()
        fwd, bwd = _array_fn(name), getattr(ops, name + "_backward")
        kw = dict(pool_size=pool_size, strides=strides, padding=padding)
        return _native(lambda xv: fwd(xv, **kw), lambda g, v, _: (bwd(g, v[0], **kw),), x,
                       (), {})
    op.__name__ = name
    op.__doc__ = f":func:`cconv.ops.{name}` on the tape; backward by ``ops.{name}_backward``."
    return op


max_pool2d = _pool("max_pool2d")
avg_pool2d = _pool("avg_pool2d")


def upsampling2d(x, size=2, interpolation="nearest"):
    """:func:`cconv.ops.upsampling2d` on the tape; backward by ``ops.upsampling2d_backward``."""
    ops = _ops()
    kw = dict(size=size, interpolation=interpolation)
    return _native(lambda xv: _array_fn("upsampling2d")(xv, **kw),
                   lambda g, v, _: (ops.upsampling2d_backward(g, v[0], **kw),), x, (), {})


#: NumPy ufuncs a tensor differentiates (by ``__array_ufunc__``).
UFUNCS = {"add": add, "subtract": subtract, "multiply": multiply, "true_divide": divide,
          "divide": divide, "power": power, "maximum": maximum, "minimum": minimum,
          "negative": negative, "exp": exp, "log": log, "sqrt": sqrt, "square": square,
          "absolute": absolute, "tanh": tanh, "matmul": matmul}
#: NumPy functions a tensor differentiates (by ``__array_function__``).
FUNCTIONS = {"sum": sum, "mean": mean, "max": max, "amax": max, "min": min, "amin": min,
             "reshape": reshape, "transpose": transpose, "expand_dims": expand_dims,
             "squeeze": squeeze, "concatenate": concatenate, "where": where,
             "clip": lambda a, a_min=None, a_max=None, min=None, max=None: clip(
                 a, a_min if a_min is not None else min, a_max if a_max is not None else max),
             "matmul": matmul, "dot": matmul}
_PASSTHROUGH_UFUNCS = {"greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
                       "isfinite", "isnan", "isinf", "sign", "logical_and", "logical_or",
                       "logical_not"}
_PASSTHROUGH_FUNCTIONS = {"shape", "ndim", "size", "result_type", "argmax", "argmin",
                          "isclose", "allclose", "array_equal", "zeros_like", "ones_like",
                          "empty_like", "full_like"}


# ----- running the tape backwards ------------------------------------------------------------
def backprop(root: Tensor, seed=None, targets=None) -> dict:
    """Run the graph below ``root`` backwards from ``seed = dL/d(root)`` (default ones);
    returns ``{id(tensor): gradient}`` for every tensor reached that requires a gradient
    (leaves included; the tensors stay alive as long as ``root`` does). With ``targets`` (a
    set of tensor ids) only the nodes on a path to one of them run their backward (so a
    model called in inference mode that the wanted gradients do not cross is never asked
    for one)."""
    if seed is None:
        seed = np.ones(root.shape, dtype=root.dtype if root.dtype.kind == "f" else "float64")
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        stack.extend((p, False) for p in t.parents if p.requires_grad and id(p) not in seen)
    useful = None
    if targets is not None:
        useful = set()
        for t in order:                       # parents come before their children
            if id(t) in targets or any(id(p) in useful for p in t.parents):
                useful.add(id(t))
    grads = {id(root): np.asarray(seed)}
    for t in reversed(order):
        g = grads.get(id(t))
        if g is None or not t.parents or useful is not None and id(t) not in useful:
            continue
        for p, d in zip(t.parents, t.vjp(g)):
            if d is None or not p.requires_grad or useful is not None and id(p) not in useful:
                continue
            prev = grads.get(id(p))
            grads[id(p)] = d if prev is None else prev + d
    return grads


def activation_on_tape(activation, x) -> Tensor:
    """A :class:`cconv.activations.Activation` applied to tensor ``x``, recorded with the
    activation's own derivative (``activation.backward(dy, z, a)``)."""
    z = x.value if x.dtype.kind == "f" else x.value.astype(np.float32)
    a = activation.forward(z)
    return record(a, [x], lambda g: (activation.backward(np.asarray(g, dtype=a.dtype), z, a),))


def loss_on_tape(loss, y_true, y_pred, per_sample=False) -> Tensor:
    """A loss object's value on tensor ``y_pred``, recorded with the loss's own gradient
    (``loss.prepare_targets`` and ``value_and_grad`` / ``per_sample_and_grad`` of a
    :class:`cconv.losses.Loss`): the batch mean, or with ``per_sample`` the per-sample
    losses (shape ``y_pred.shape[:-1]``)."""
    p = y_pred.value
    if p.dtype.kind != "f":
        p = p.astype(np.float32)
    y = loss.prepare_targets(value_of(y_true), p.shape, dtype=p.dtype)
    if not per_sample:
        value, grad = loss.value_and_grad(y, p)
        return record(np.asarray(value, dtype=p.dtype), [y_pred], lambda g: (g * grad,))
    per, grad = loss.per_sample_and_grad(y, p)
    per = np.asarray(per)
    scale = grad * per.size
    return record(per, [y_pred], lambda g: (scale * np.reshape(g, g.shape + (1,) * (
        scale.ndim - np.ndim(g))),))


class GradientTape:
    """Records operations for automatic differentiation (TensorFlow's ``GradientTape``, used
    by Keras custom training loops)::

        with cconv.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = loss_fn(y, y_pred)      # cconv.ops, NumPy ufuncs on tensors, or a loss
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)

    While the tape is open, a model or layer called on data records one node that runs its
    native backward (call it with ``training=True`` to differentiate it), and a raw float
    array met by a taped op becomes a leaf: gradients are taken with respect to the arrays
    themselves (``model.trainable_variables`` are the weight arrays).

    Args:
        persistent: allow several ``gradient`` calls (else one, as TensorFlow).
        watch_accessed_variables: accepted for TensorFlow's signature (every array used is
            watched).
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True):
        self.persistent = bool(persistent)
        self.watch_accessed_variables = bool(watch_accessed_variables)
        self.leaves = {}
        self.watched = set()
        self.used = False

    def __enter__(self):
        global in_use
        in_use = True
        _tapes().append(self)
        return self

    def __exit__(self, *exc):
        tapes = _tapes()
        if self in tapes:
            tapes.remove(self)
        return False

    def leaf_for(self, array) -> Tensor:
        """The leaf tensor standing for ``array`` on this tape (made on first use)."""
        entry = self.leaves.get(id(array))
        if entry is None or entry.source is not array:
            entry = self.leaves[id(array)] = variable(array)
        return entry

    def watch(self, x) -> None:
        """Watch array(s) ``x``: a model or layer then called on ``x`` itself sends the
        gradient into it (``tape.gradient(loss, x)``: a saliency map). Arrays used by
        ``cconv.ops`` are watched anyway."""
        for v in x if isinstance(x, (list, tuple)) else [x]:
            if isinstance(v, np.ndarray):
                self.leaf_for(v)
                self.watched.add(id(v))

    def gradient(self, target, sources, output_gradients=None,
                 unconnected_gradients="none"):
        """``d target / d source`` for each of ``sources`` (an array, a tensor, or a list or
        dict of them: the result has the same structure), each of the source's shape.

        Args:
            target: the tensor to differentiate (summed when not a scalar).
            output_gradients: ``d L / d target`` (default ones).
            unconnected_gradients: ``"none"`` (None for a source the target does not depend
                on, as TensorFlow) or ``"zero"``.

        Raises:
            RuntimeError: a second call on a tape that is not persistent.
            TypeError: ``target`` is not a tensor computed on the tape.
        """
        if self.used and not self.persistent:
            raise RuntimeError("A non-persistent GradientTape can only compute one gradient; "
                               "use GradientTape(persistent=True) for several.")
        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(f"unconnected_gradients must be 'none' or 'zero'; got "
                             f"{unconnected_gradients!r}.")
        if not isinstance(target, Tensor):
            raise TypeError(
                f"tape.gradient: target must be a tensor computed inside the tape (from a "
                f"model or layer call, cconv.ops, or NumPy on tensors); got "
                f"{type(target).__name__}. A plain number or array has left the tape (e.g. "
                f"through float() or np.asarray()).")
        self.used = True
        seed = None if output_gradients is None else np.asarray(value_of(output_gradients))
        if seed is not None and seed.shape != target.shape:
            raise ValueError(f"tape.gradient: output_gradients has shape {seed.shape}; the "
                             f"target has shape {target.shape}.")
        def tensor_of(src):
            t = src if isinstance(src, Tensor) else self.leaves.get(id(src))
            return None if t is not None and isinstance(src, np.ndarray) and \
                t.source is not src else t

        flat = list(sources.values()) if isinstance(sources, dict) else (
            list(sources) if isinstance(sources, (list, tuple)) else [sources])
        targets = {id(t) for t in map(tensor_of, flat) if t is not None}
        grads = backprop(target, seed, targets) if target.requires_grad else {}

        def one(src):
            t = tensor_of(src)
            g = None if t is None else grads.get(id(t))
            shape = np.shape(value_of(src))
            if g is None:
                if unconnected_gradients == "zero":
                    return np.zeros(shape, np.asarray(value_of(src)).dtype)
                return None
            g = np.asarray(g)
            dtype = np.asarray(value_of(src)).dtype
            return np.ascontiguousarray(g.astype(dtype, copy=False).reshape(shape))

        if isinstance(sources, dict):
            return {k: one(v) for k, v in sources.items()}
        if isinstance(sources, (list, tuple)):
            return type(sources)(one(s) for s in sources)
        return one(sources)
