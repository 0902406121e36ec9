"""Merging layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot,
and Keras's lowercase helpers that make and call them (``add``, ..., ``concatenate``,
``dot``).

They take SEVERAL inputs (``_multi_input = True``): ``build`` and ``compute_output_shape`` take
a list of sample shapes (no batch axis), ``forward`` a list of arrays and ``backward`` returns a
list of input gradients in input order.

Elementwise merges follow Keras 3: inputs are combined left to right
(``((x0 op x1) op x2) ...``); sample shapes may differ where one of them is 1 (broadcast), and
an input of lower rank gets axes of size 1 inserted after the batch axis, as Keras does.
"""

import numpy as np

from .base import Layer
from .node import call_symbolic, is_symbolic

__all__ = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
           "dot", "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate"]


class _Merge(Layer):
    """Base of the merging layers: list-of-inputs plumbing, shape checks and broadcasting."""

    _multi_input = True
    _transient = ("_xs",)
    _num_inputs = None          # None: any number >= 2
    _keeps_inputs = False       # backward needs the inputs (Multiply, Maximum)

    def _check_count(self, n):
        want = self._num_inputs
        if (want is not None and n != want) or n < 2:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} needs "
                f"{want if want is not None else 'at least 2'} inputs; got {n}."
            )

    def _shapes(self, input_shapes):
        """A list of sample shapes as tuples of ints (a leading None batch axis is dropped)."""
        if not isinstance(input_shapes, (list, tuple)) or not all(
                isinstance(s, (list, tuple)) for s in input_shapes):
            raise ValueError(f"{type(self).__name__} {self.name!r} takes a list of input shapes; "
                             f"got {input_shapes!r}.")
        shapes = [tuple(s[1:]) if s and s[0] is None else tuple(s) for s in input_shapes]
        self._check_count(len(shapes))
        return [tuple(None if d is None else int(d) for d in s) for s in shapes]

    def compute_output_shape(self, input_shapes):
        """The output's sample shape for a list of input shapes (sample shapes, or shapes
        with the batch axis None in front: a sample shape that starts with a size known only
        at call time must be given that way)."""
        return self._merged_shape(self._shapes(input_shapes))

    def _merged_shape(self, shapes):
        """The output's sample shape for a list of sample shapes (None: a size known at
        call time, which matches any size)."""
        rank = max(len(s) for s in shapes)
        out = []
        for dims in zip(*[(1,) * (rank - len(s)) + s for s in shapes]):
            big = {d for d in dims if d != 1 and d is not None}
            if len(big) > 1:
                raise ValueError(f"{type(self).__name__} {self.name!r}: inputs have incompatible "
                                 f"shapes {shapes} (each axis must match or be 1).")
            out.append(big.pop() if big else (None if None in dims else 1))
        return tuple(out)

    def build(self, input_shapes):
        shapes = self._shapes(input_shapes)
        self._output_shape = tuple(self._merged_shape(shapes))
        self._input_shape = shapes
        self.built = True

    @property
    def input_shape(self):
        """``[(None,) + sample shape, ...]`` once built, else None."""
        return None if self._input_shape is None else [(None,) + s for s in self._input_shape]

    def __call__(self, xs, training=False):
        """Apply the layer to a list of batches; returns one NumPy array. On symbolic tensors
        (``cconv.Input`` and layer outputs) records a graph node and returns a symbolic tensor."""
        if is_symbolic(xs):
            return call_symbolic(self, xs)
        if not isinstance(xs, (list, tuple)):
            raise TypeError(f"{type(self).__name__} {self.name!r} takes a list of arrays; "
                            f"got {type(xs).__name__}.")
        xs = [np.asarray(x) for x in xs]
        xs = [x if x.dtype == self.dtype else x.astype(self.dtype) for x in xs]
        self._check_count(len(xs))
        if any(x.ndim < 2 for x in xs):
            raise ValueError(f"Layer {self.name!r} needs batches of inputs (ndim >= 2); "
                             f"got shapes {[x.shape for x in xs]}.")
        if len({x.shape[0] for x in xs}) > 1:
            raise ValueError(f"Layer {self.name!r}: the inputs have different batch sizes "
                             f"(shapes {[x.shape for x in xs]}).")
        shapes = [x.shape[1:] for x in xs]
        if not self.built:
            self.build(shapes)
        elif len(shapes) != len(self._input_shape) or any(
                len(s) != len(b) or any(d is not None and d != n for d, n in zip(b, s))
                for s, b in zip(shapes, self._input_shape)):
            raise ValueError(f"Layer {self.name!r} expects inputs of sample shapes "
                             f"{self._input_shape}; got arrays of shapes {[x.shape for x in xs]}.")
        return self.forward(xs, training=training)

    def _aligned(self, xs):
        """Inputs with axes of size 1 inserted after the batch axis up to the output's rank."""
        rank = len(self._output_shape) + 1
        return [x.reshape(x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:]) for x in xs]

    @staticmethod
    def _reduce_to(g, shape, dy):
        """``g`` (the output's shape) summed over the axes that ``shape`` broadcast along; a
        fresh array (never ``dy`` or a view of it)."""
        lead = g.ndim - len(shape)       # None: a size known at call time, the output's
        shape = tuple(g.shape[lead + i] if d is None else d for i, d in enumerate(shape))
        full = g.shape[:1] + (1,) * (lead - 1) + shape
        axes = tuple(i for i in range(1, g.ndim) if full[i] == 1 and g.shape[i] != 1)
        if axes:   # accumulated in float64: a float32 sum over h x w adds them one by one
            g = g.sum(axis=axes, keepdims=True, dtype=np.float64).astype(g.dtype, copy=False)
        g = g.reshape(g.shape[:1] + tuple(shape))
        return g.copy() if np.may_share_memory(g, dy) else np.ascontiguousarray(g)

    def _grads(self, gs, dy):
        """Per-input gradients (output-shaped) reduced to each input's shape."""
        return [self._reduce_to(g, s, dy) for g, s in zip(gs, self._input_shape)]

    def forward(self, xs, training=False):
        if not self.built:
            self.build([x.shape[1:] for x in xs])
        xs = self._aligned(xs)
        if training and self._keeps_inputs:
            self._xs = xs
        return self._merge(xs)


class Add(_Merge):
    """Elementwise sum of the inputs (Keras's ``Add``)."""

    def _merge(self, xs):
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out = out + x
        return out

    def backward(self, dy):
        return self._grads([dy] * len(self._input_shape), dy)


class Subtract(_Merge):
    """``x0 - x1`` for exactly two inputs (Keras's ``Subtract``)."""

    _num_inputs = 2

    def _merge(self, xs):
        return xs[0] - xs[1]

    def backward(self, dy):
        return self._grads([dy, -dy], dy)


class Multiply(_Merge):
    """Elementwise product of the inputs (Keras's ``Multiply``)."""

    _keeps_inputs = True

    def _merge(self, xs):
        out = xs[0] * xs[1]
        for x in xs[2:]:
            out = out * x
        return out

    def backward(self, dy):
        xs = self._xs
        gs = []
        for i in range(len(xs)):
            g = dy
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            gs.append(g)
        return self._grads(gs, dy)


class Average(_Merge):
    """Elementwise mean of the inputs (Keras's ``Average``: the sum, then divided by the
    number of inputs)."""

    def _merge(self, xs):
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out = out + x
        out /= out.dtype.type(len(xs))
        return out

    def backward(self, dy):
        g = dy / dy.dtype.type(len(self._input_shape))
        return self._grads([g] * len(self._input_shape), dy)


class Maximum(_Merge):
    """Elementwise maximum of the inputs (Keras's ``Maximum``). Gradient: as
    ``tf.maximum`` chained left to right, each output element's gradient goes to the FIRST
    input holding the maximum (a tie between ``a`` and ``b`` sends it to ``a``)."""

    _keeps_inputs = True
    _select = staticmethod(np.greater_equal)
    _combine = staticmethod(np.maximum)

    def _merge(self, xs):
        out = self._combine(xs[0], xs[1])
        for x in xs[2:]:
            out = self._combine(out, x)
        return out

    def backward(self, dy):
        xs = self._xs
        running = [xs[0]]
        for x in xs[1:-1]:
            running.append(self._combine(running[-1], x))
        gs = [None] * len(xs)
        g = dy
        zero = dy.dtype.type(0)
        for i in range(len(xs) - 1, 0, -1):
            keep = self._select(running[i - 1], xs[i])     # the left operand wins ties
            gs[i] = np.where(keep, zero, g)
            g = np.where(keep, g, zero)
        gs[0] = g
        return self._grads(gs, dy)


class Minimum(Maximum):
    """Elementwise minimum of the inputs (Keras's ``Minimum``); ties send the gradient to
    the first input holding the minimum, as ``tf.minimum``."""

    _select = staticmethod(np.less_equal)
    _combine = staticmethod(np.minimum)


class Concatenate(_Merge):
    """Concatenates the inputs along ``axis`` (Keras's ``Concatenate``).

    Args:
        axis: axis of the full arrays (batch axis 0 included; default -1, the channels).
            The batch axis cannot be concatenated; every other axis must match.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
            raise TypeError(f"Concatenate: axis must be an int; got axis={axis!r}.")
        self.axis = int(axis)

    def _sample_axis(self, rank):
        """The axis within a sample (0-based, no batch axis) of a sample of ``rank`` axes."""
        axis = self.axis + rank + 1 if self.axis < 0 else self.axis
        if not 1 <= axis <= rank:
            raise ValueError(f"Concatenate {self.name!r}: axis={self.axis} is out of range for "
                             f"inputs of rank {rank + 1} (the batch axis 0 cannot be "
                             f"concatenated).")
        return axis - 1

    def _merged_shape(self, shapes):
        if len({len(s) for s in shapes}) > 1:
            raise ValueError(f"Concatenate {self.name!r}: inputs must have the same rank; got "
                             f"sample shapes {shapes}.")
        a = self._sample_axis(len(shapes[0]))
        rest = {s[:a] + s[a + 1:] for s in shapes}
        if len(rest) > 1:
            raise ValueError(f"Concatenate {self.name!r}: inputs must match on every axis but "
                             f"axis={self.axis}; got sample shapes {shapes}.")
        size = None if any(s[a] is None for s in shapes) else sum(s[a] for s in shapes)
        return shapes[0][:a] + (size,) + shapes[0][a + 1:]

    _transient = ("_xs", "_sizes")

    def forward(self, xs, training=False):
        if not self.built:
            self.build([x.shape[1:] for x in xs])
        axis = self._sample_axis(len(self._output_shape)) + 1
        if training:       # the sizes along the axis (known at call time only, maybe)
            self._sizes = [x.shape[axis] for x in xs]
        return np.concatenate(xs, axis=axis)

    def backward(self, dy):
        axis = self._sample_axis(len(self._output_shape)) + 1
        cuts = np.cumsum(self._sizes)[:-1]
        return [g.copy() for g in np.split(dy, cuts, axis=axis)]

    def get_config(self):
        cfg = super().get_config()
        cfg["axis"] = self.axis
        return cfg


class Dot(_Merge):
    """Batched dot products of two inputs along an axis of each (Keras's ``Dot``): for
    ``x`` of shape ``(batch, n)`` and ``y`` of shape ``(batch, n)`` with ``axes=1`` the output
    is ``(batch, 1)``; for ``(batch, m, n)`` and ``(batch, k, n)`` with ``axes=2`` it is
    ``(batch, m, k)``: the sizes of ``x`` but the axis, then those of ``y`` but the axis
    (``(batch, 1)`` when none is left).

    Args:
        axes: an int (the same axis of both inputs) or a pair ``(axis of x, axis of y)``,
            axes of the full arrays (batch axis 0, which cannot be one of them).
        normalize: L2-normalize each input along its axis first (the products are then
            cosine similarities), as Keras: ``x * min(1 / sqrt(sum(x**2)), 1e7)``.
    """

    _num_inputs = 2
    _transient = ("_xs", "_dot_cache")
    _EPSILON = 1e-7         # Keras's backend.epsilon(), the normalization's floor

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, bool) or not isinstance(axes, (int, np.integer, list, tuple)):
            raise TypeError(f"Dot: axes must be an int or a pair of ints; got axes={axes!r}.")
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2 or not all(isinstance(a, (int, np.integer))
                                         and not isinstance(a, bool) for a in axes):
                raise ValueError(f"Dot: axes must be an int or a pair of ints; got "
                                 f"axes={axes!r}.")
            axes = (int(axes[0]), int(axes[1]))
        else:
            axes = int(axes)
        self.axes = axes
        self.normalize = bool(normalize)

    def _full_axes(self, ranks):
        """The axes of ``x`` and ``y`` (full arrays of ``ranks``), made non-negative.

        Raises:
            ValueError: an axis out of range or the batch axis."""
        pair = [self.axes] * 2 if isinstance(self.axes, int) else list(self.axes)
        out = []
        for a, r in zip(pair, ranks):
            full = a + r if a < 0 else a
            if not 1 <= full < r:
                raise ValueError(f"Dot {self.name!r}: axes={self.axes} is out of range for "
                                 f"inputs of ranks {tuple(ranks)} (the batch axis 0 cannot "
                                 f"be one of them).")
            out.append(full)
        return out

    def _merged_shape(self, shapes):
        s1, s2 = list(shapes[0]), list(shapes[1])
        a1, a2 = self._full_axes((len(s1) + 1, len(s2) + 1))
        d1, d2 = s1.pop(a1 - 1), s2.pop(a2 - 1)
        if d1 is not None and d2 is not None and d1 != d2:
            raise ValueError(f"Dot {self.name!r}: the inputs' sizes along axes {self.axes} "
                             f"differ: {d1} != {d2} (sample shapes {shapes}).")
        return tuple(s1 + s2) or (1,)

    def _l2(self, x, axis):
        """``(x * inv, inv, sum of squares)`` with ``inv = min(1 / sqrt(sum(x**2)), 1/eps)``."""
        sq = np.sum(x * x, axis=axis, keepdims=True)
        with np.errstate(divide="ignore"):
            inv = np.minimum(1 / np.sqrt(sq), x.dtype.type(1 / self._EPSILON))
        return x * inv, inv, sq

    def forward(self, xs, training=False):
        if not self.built:
            self.build([x.shape[1:] for x in xs])
        x, y = xs
        a1, a2 = self._full_axes((x.ndim, y.ndim))
        norms = None
        if self.normalize:
            (x, ix, sx), (y, iy, sy) = self._l2(x, a1), self._l2(y, a2)
            norms = (xs[0], ix, sx, xs[1], iy, sy)
        xm, ym = np.moveaxis(x, a1, -1), np.moveaxis(y, a2, -1)
        n, c = x.shape[0], xm.shape[-1]
        X = np.ascontiguousarray(xm).reshape(n, -1, c)
        Y = np.ascontiguousarray(ym).reshape(n, -1, c)
        out = np.matmul(X, Y.transpose(0, 2, 1))
        if training:
            self._dot_cache = (X, Y, xm.shape, ym.shape, a1, a2, norms)
        return out.reshape((n,) + (xm.shape[1:-1] + ym.shape[1:-1] or (1,)))

    def _l2_backward(self, g, x, inv, sq, axis):
        """Through ``x * min(1 / sqrt(sum(x**2)), 1/eps)`` (no gradient through the floor)."""
        free = inv < x.dtype.type(1 / self._EPSILON)
        dot = np.sum(g * x, axis=axis, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.where(free, dot * inv / np.where(free, sq, 1), 0)
        return g * inv - x * corr.astype(x.dtype, copy=False)

    def backward(self, dy):
        X, Y, xshape, yshape, a1, a2, norms = self._dot_cache
        g = dy.reshape(X.shape[0], X.shape[1], Y.shape[1])
        dx = np.moveaxis(np.matmul(g, Y).reshape(xshape), -1, a1)
        dyy = np.moveaxis(np.matmul(g.transpose(0, 2, 1), X).reshape(yshape), -1, a2)
        if norms is not None:
            x, ix, sx, y, iy, sy = norms
            dx = self._l2_backward(dx, x, ix, sx, a1)
            dyy = self._l2_backward(dyy, y, iy, sy, a2)
        return [np.ascontiguousarray(dx), np.ascontiguousarray(dyy)]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axes=self.axes, normalize=self.normalize)
        return cfg


# ----- Keras's functional helpers: make the layer and call it -------------------------------
def _like(inputs, kwargs):
    """The layer's arguments: on symbolic tensors its dtype defaults to theirs (a float64
    graph stays float64), as the layers recorded by arithmetic do."""
    if is_symbolic(inputs) and "dtype" not in kwargs:
        return dict(kwargs, dtype=inputs[0].dtype)
    return kwargs


def add(inputs, **kwargs):
    """``Add(**kwargs)(inputs)`` (Keras's ``layers.add``): the elementwise sum of a list of
    tensors (symbolic, or NumPy batches of equal or broadcastable sample shapes)."""
    return Add(**_like(inputs, kwargs))(inputs)


def subtract(inputs, **kwargs):
    """``Subtract(**kwargs)(inputs)``: ``inputs[0] - inputs[1]`` (exactly two tensors)."""
    return Subtract(**_like(inputs, kwargs))(inputs)


def multiply(inputs, **kwargs):
    """``Multiply(**kwargs)(inputs)``: the elementwise product of a list of tensors."""
    return Multiply(**_like(inputs, kwargs))(inputs)


def average(inputs, **kwargs):
    """``Average(**kwargs)(inputs)``: the elementwise mean of a list of tensors."""
    return Average(**_like(inputs, kwargs))(inputs)


def maximum(inputs, **kwargs):
    """``Maximum(**kwargs)(inputs)``: the elementwise maximum of a list of tensors."""
    return Maximum(**_like(inputs, kwargs))(inputs)


def minimum(inputs, **kwargs):
    """``Minimum(**kwargs)(inputs)``: the elementwise minimum of a list of tensors."""
    return Minimum(**_like(inputs, kwargs))(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """``Concatenate(axis=axis, **kwargs)(inputs)``: a list of tensors of shapes ``(batch,
    ..., c_i, ...)`` joined along ``axis`` (default -1, the channels), every other axis
    equal."""
    return Concatenate(axis=axis, **_like(inputs, kwargs))(inputs)


def dot(inputs, axes=-1, normalize=False, **kwargs):
    """``Dot(axes=axes, normalize=normalize, **kwargs)(inputs)`` (Keras's ``layers.dot``):
    batched dot products of two tensors along ``axes``."""
    return Dot(axes=axes, normalize=normalize, **_like(inputs, kwargs))(inputs)
