"""The :class:`Layer` base class shared by every cconv layer.

A layer works on NumPy arrays in NHWC, batch first. Training uses an explicit
forward/backward pair instead of autodiff:

- ``forward(x, training)`` returns the output and, when ``training`` is True, keeps what
  ``backward`` needs (the arrays it caches are dropped when the layer is pickled);
- ``backward(dy)`` returns ``dL/dx`` and writes ``dL/dw`` for each trainable weight into
  ``layer.grads[name]`` (preallocated, same shape as the weight).

Weights are attributes named in ``_weight_names`` (Keras's ``get_weights()`` order; those
present are :attr:`Layer.weight_names`); a model may rebind them to views of one flat
buffer so that an optimizer step is a handful of NumPy calls, so assign new values with
``set_weights`` (which copies in place).

What models, the compiled plan and the file formats use of a layer is public and documented
here: ``weight_names`` / ``trainable_weight_names`` (the attributes behind ``weights``),
``weight_regularizers()``, ``input_shape`` / ``output_shape``, ``inbound_nodes`` (the
graph), ``compute_input_gradient``, ``require_backward()`` and ``get_forward_cache()`` /
``set_forward_cache()`` (the graph model's backward pass).

Custom layers come in two styles. cconv's defines ``forward`` and ``backward`` as above.
Keras's defines ``call(self, inputs)`` (NumPy arrays in, one NumPy array out; add a
``training=None`` parameter to receive the mode) and, to make weights, ``build(self,
input_shape)`` (given Keras's shape, batch axis ``None`` included) calling ``add_weight``
and keeping each weight in an attribute (``self.kernel = self.add_weight(...)``). After
``build`` the attributes holding those arrays become the layer's weights, and the output
shape comes from the layer's own ``compute_output_shape(input_shape)`` (Keras's form) or
else from running ``call`` once on a batch of two zero samples. Such a layer runs in
``predict``, ``evaluate`` and ``__call__``, in a Sequential or a graph model, and it trains
with automatic gradients (:mod:`cconv.autograd`): a training ``forward`` runs ``call`` on
tensors (the input and each weight wrapped, the NumPy operators, NumPy ufuncs such as
``np.exp``, and ``cconv.ops`` recording what it does) and ``backward`` runs that record
backwards. ``call`` must compute through those (an ``np.asarray`` or a NumPy function the
tape does not know leaves the tape: a TypeError or NotImplementedError names the layer).
Inference runs ``call`` on plain arrays. Called inside a ``cconv.GradientTape`` (or on a
tensor) a layer records itself on that tape: a Keras-style layer op by op, a built-in layer as
one node with its native backward.
"""

import functools
import inspect
import itertools
import re
from collections import defaultdict
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .. import autograd
from .. import backend as _backend
from .. import initializers as _initializers
from .. import regularizers as _regularizers
from .._typing import ArrayLike, Config, DTypeLike, Shape
from .node import call_symbolic, is_symbolic

_name_counters = _backend.name_scope_counters(defaultdict(itertools.count))
_KERAS_BUILDS = set()       # the build methods _keras_build made (never wrapped twice)
_SUPPORTED_DTYPES = ("float32", "float64")


def _snake(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(base):
    """Keras-style unique names: ``dense``, ``dense_1``, ..."""
    n = next(_name_counters[base])
    return base if n == 0 else f"{base}_{n}"


def sample_shape(shape):
    """A layer's shape in cconv's form: without its batch axis, as a tuple of ints
    (``(None, 4)`` and ``(4,)`` both give ``(4,)``); a list of shapes (a layer called on a
    list) gives a list of them. Inverse of ``Layer.input_shape``'s form."""
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return [sample_shape(s) for s in shape]
    shape = tuple(shape)
    if shape and shape[0] is None:
        shape = shape[1:]
    return tuple(int(d) for d in shape)


def _batch_shape(shape):
    """Keras's form of a sample shape (a list of them): ``(None,) + shape``."""
    if isinstance(shape, list):
        return [(None,) + s for s in shape]
    return (None,) + shape


def _is_keras_style(cls):
    """Whether layer class ``cls`` computes with Keras's ``call`` (it defines ``call`` and
    not cconv's ``forward``)."""
    return cls.call is not Layer.call and cls.forward is Layer.forward


def _keras_build(build):
    """Wrap a Keras-style layer class's own ``build``: it gets Keras's shape (batch axis
    ``None`` included, whichever form the caller used), and once the outermost ``build``
    returns (a ``super().build(...)`` inside it does nothing more) the layer finishes
    building (:meth:`Layer._finish_build`)."""
    @functools.wraps(build)
    def wrapper(self, input_shape):
        if self.__dict__.get("_in_build"):
            return build(self, input_shape)
        shape = sample_shape(input_shape)
        self._in_build = True
        try:
            build(self, _batch_shape(shape))
        finally:
            del self._in_build
        self._finish_build(shape)
    _KERAS_BUILDS.add(wrapper)
    return wrapper


#: Layer classes (and their subclasses) whose training output differs from their inference
#: output: dropout, batch statistics, random augmentation.
_TRAINING_DEPENDENT = frozenset({"Dropout", "BatchNormalization", "_RandomLayer"})


def acts_differently_in_training(layer) -> bool:
    """Whether ``layer`` computes differently in training than in inference (Dropout,
    BatchNormalization, the random augmentation layers; a model when one of its layers
    does). The tape runs the others in training mode even when called with
    ``training=False``, since their backward needs what a training forward keeps and their
    output is the same."""
    inner = getattr(layer, "layers", None)
    if isinstance(inner, list) and inner and layer not in inner:
        return any(acts_differently_in_training(lay) for lay in inner)
    return any(c.__name__ in _TRAINING_DEPENDENT for c in type(layer).__mro__)


def check_data_format(data_format):
    if data_format not in (None, "channels_last"):
        raise ValueError(
            f"data_format={data_format!r} is not supported: cconv works in NHWC "
            f'("channels_last") only.'
        )


class Layer:
    """Base class of all layers.

    Args:
        name: unique name (default: the class name in snake case plus a counter).
        trainable: whether ``fit`` updates the weights (and, for BatchNormalization,
            whether it runs in training mode during ``fit``, as in Keras 3).
        dtype: "float32" (default) or "float64"; weights and outputs use it.
        input_shape: shape of one sample (no batch axis); lets a layer start a
            Sequential model, like Keras's ``input_shape=`` argument.
    """

    _weight_names = ()          # Keras get_weights() order
    _trainable_names = ()       # the subset the optimizer updates
    _transient = ()             # forward caches, dropped when pickled
    _call_has_training_arg = True   # Keras's name: whether call() takes training=
    #: Whether ``backward`` computes ``dL/dx`` (it always fills ``grads``). A graph model
    #: sets it on each of its layers: False where every input is a model input or comes
    #: from layers without trainable weights, so the work is skipped (the built-in layers'
    #: ``backward`` then returns None for ``dL/dx``).
    compute_input_gradient = True

    def __init_subclass__(cls, **kwargs):
        """For each subclass: whether its ``call`` takes ``training``, and, for a Keras-style
        class, its own ``build`` wrapped by :func:`_keras_build`.

        Raises:
            TypeError: ``call`` defined below a class that computes with ``forward`` (a
                built-in layer's subclass), which would never run.
        """
        super().__init_subclass__(**kwargs)
        owner = {name: next(c for c in cls.__mro__ if name in vars(c))
                 for name in ("call", "forward")}
        if (owner["forward"] is not Layer and owner["call"] is not owner["forward"]
                and issubclass(owner["call"], owner["forward"])):
            base = cls.__bases__[0].__name__
            raise TypeError(
                f"{cls.__name__} (a subclass of {base}) defines call(), but {base} computes "
                f"with forward(x, training) and backward(dy), so that call() would never run. "
                f"Subclass cconv.layers.Layer to write a layer with call(), or override "
                f"forward (and backward).")
        cls._call_has_training_arg = "training" in inspect.signature(cls.call).parameters
        if _is_keras_style(cls) and "_tape_record" not in cls._transient:
            cls._transient = tuple(cls._transient) + ("_tape_record", "_added_losses")
        if (_is_keras_style(cls) and cls.build is not Layer.build
                and cls.build not in _KERAS_BUILDS):
            cls.build = _keras_build(cls.build)

    def __init__(self, name: Optional[str] = None, trainable: bool = True,
                 dtype: DTypeLike = None, input_shape: Optional[Shape] = None):
        if dtype is None:
            dtype = _backend.floatx()
        dtype = np.dtype(dtype).name
        if dtype not in _SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be one of {_SUPPORTED_DTYPES}; got {dtype!r}.")
        self.dtype = dtype
        self.name = name if name is not None else unique_name(_snake(type(self).__name__))
        self.trainable = bool(trainable)
        self.built = False
        self.grads = {}
        self._input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._output_shape = None

    # ----- shapes and building -------------------------------------------------
    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Output shape of one sample given the input shape of one sample."""
        return tuple(input_shape)

    def _image_shape(self, input_shape):
        """``(height, width, channels)`` of one sample, or a ValueError naming the layer."""
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects samples of shape (height, width, "
                f"channels); got sample shape {tuple(input_shape)}."
            )
        return tuple(input_shape)

    def build(self, input_shape: Shape) -> None:
        """Create the weights for inputs of shape ``(batch,) + input_shape``
        (``input_shape`` may also include a leading ``None`` batch axis). A Keras-style layer
        without its own ``build`` creates nothing here (as in Keras) and finishes building."""
        if self._keras_style:
            if not self.__dict__.get("_in_build"):
                self._finish_build(sample_shape(input_shape))
            return
        input_shape = tuple(input_shape)
        if input_shape and input_shape[0] is None:
            input_shape = input_shape[1:]
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
        self._output_shape = tuple(self.compute_output_shape(input_shape))
        self._build(input_shape)
        self._input_shape = input_shape
        self.built = True
        for n in self._trainable_names:
            if getattr(self, n, None) is not None:
                self.grads[n] = np.zeros_like(getattr(self, n))

    def _build(self, input_shape):
        pass

    @property
    def _keras_style(self):
        """Whether this layer computes with Keras's ``call`` (see the module docstring)."""
        return _is_keras_style(type(self))

    @property
    def _autodiff(self):
        """Whether this layer is differentiated by the tape: Keras-style, without its own
        ``backward``."""
        return self._keras_style and type(self).backward is Layer.backward

    def _finish_build(self, shape):
        """Finish building a Keras-style layer for sample shape(s) ``shape`` (no batch axis;
        a list for a layer called on a list): its ``add_weight`` arrays become its weights
        (:meth:`_bind_weights`), then its output shape is found
        (:meth:`_keras_output_shape`); the layer is built while ``call`` runs for that,
        as in Keras, so ``call`` cannot add weights."""
        self._bind_weights()
        self._input_shape = shape
        self.built = True
        try:
            self._output_shape = None
            self._output_shape = self._keras_output_shape(shape)
        except BaseException:
            self.built = False
            raise
        self.grads = {n: np.zeros_like(getattr(self, n)) for n in self._trainable_names}

    def _bind_weights(self):
        """Name each ``add_weight`` array by the first attribute of the layer that holds it:
        weights are attributes (``_weight_names``; trainable ones first, as Keras orders
        ``layer.weights``), so that ``set_weights`` and a model's flat weight buffer reach
        what ``call`` reads. Also notes the layers held in attributes (see
        :meth:`_run_call`).

        Raises:
            ValueError: an ``add_weight`` array that no attribute holds (only in a list, say).
        """
        held = {}
        sublayers = []
        for attr, value in vars(self).items():
            if isinstance(value, np.ndarray):
                held.setdefault(id(value), attr)
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(v, Layer) and v is not self:
                    sublayers.append(v)
        self._sublayers = tuple(sublayers)
        entries = self.__dict__.get("_added_weights")
        if not entries:
            return
        for e in entries:
            if "array" in e:
                attr = held.get(id(e["array"]))
                if attr is None:
                    raise ValueError(
                        f"Layer {self.name!r}: the weight {e['name']!r} made by add_weight is "
                        f"not held by an attribute of the layer. Keep each weight in its own "
                        f"attribute (self.{e['name']} = self.add_weight(...)): set_weights "
                        f"and training update the attribute, not a list or dict holding it."
                    )
                e["attr"] = attr
                del e["array"]
        trainable = list(dict.fromkeys(e["attr"] for e in entries if e["trainable"]))
        frozen = [a for a in dict.fromkeys(e["attr"] for e in entries) if a not in trainable]
        self._trainable_names = tuple(trainable)
        self._weight_names = tuple(trainable + frozen)
        self._weight_regularizer_map = {e["attr"]: e["regularizer"] for e in entries
                                        if e["regularizer"] is not None}

    def _keras_output_shape(self, shape):
        """A Keras-style layer's output sample shape for input sample shape(s) ``shape``:
        from its own ``compute_output_shape`` (Keras's form: batch axis in and out) when it
        defines one, else from ``call`` on a batch of two zero samples (in inference mode).

        Raises:
            ValueError: a shape that is not ``(batch,) + sample shape`` of known sizes, or a
                ``call`` that changes the number of samples.
        """
        if type(self).compute_output_shape is not Layer.compute_output_shape:
            out = self.compute_output_shape(_batch_shape(shape))
            dims = tuple(out)[1:] if isinstance(out, (list, tuple)) and out else None
            if dims is None or not all(isinstance(d, (int, np.integer)) and d >= 0
                                       for d in dims):
                raise ValueError(
                    f"Layer {self.name!r}: compute_output_shape({_batch_shape(shape)}) returned "
                    f"{out!r}; it must return the output shape with its batch axis first, "
                    f"e.g. (None, 10), every other size a known non-negative int."
                )
            return tuple(int(d) for d in dims)
        several = isinstance(shape, list)
        zeros = [np.zeros((2,) + s, self.dtype) for s in (shape if several else [shape])]
        try:
            with np.errstate(all="ignore"):
                out = self._run_call(zeros if several else zeros[0], False)
        except Exception as e:
            if hasattr(e, "add_note"):
                e.add_note(f"(cconv ran {type(self).__name__}.call on zeros of shape "
                           f"{[z.shape for z in zeros] if several else zeros[0].shape} to find "
                           f"layer {self.name!r}'s output shape; define "
                           f"compute_output_shape(input_shape) to give it instead.)")
            raise
        if out.ndim == 0 or out.shape[0] != 2:
            raise ValueError(
                f"Layer {self.name!r}: call changed the batch axis (a batch of 2 samples gave "
                f"an output of shape {out.shape}); a layer maps each sample to one output "
                f"sample."
            )
        return out.shape[1:]

    def add_weight(self, shape=None, initializer=None, dtype=None, *, trainable=True,
                   autocast=True, regularizer=None, constraint=None, aggregation="none",
                   overwrite_with_gradient=False, name=None):
        """Keras's ``add_weight`` for Keras-style layers: make a weight in ``build`` (or
        ``__init__``) and keep it in an attribute, ``self.kernel = self.add_weight(shape=(n,
        units))``; ``call`` reads that attribute as a NumPy array.

        Args:
            shape: tuple of ints (default ``()``, a scalar).
            initializer: a name, a :mod:`cconv.initializers` object or a callable
                ``(shape, dtype) -> array`` (default "glorot_uniform").
            dtype: the layer's dtype (the default; a layer's weights share it).
            trainable: whether training updates it (``trainable_weights``) or not.
            regularizer: a name or :mod:`cconv.regularizers` object; its penalty joins the
                loss as for built-in layers.
            name: the weight's name (Keras's variable name; default "variable").
            autocast, aggregation: accepted as Keras has them; no effect in cconv.
            constraint, overwrite_with_gradient: not supported (None, False only).

        Returns:
            the weight: a new NumPy array of ``shape``.

        Raises:
            ValueError: a bad shape, initializer result or dtype, an unsupported argument,
                or a layer already built (Keras's rule: no new weights after ``build``).
        """
        what = f"Layer {self.name!r}: add_weight"
        if self.built:
            raise ValueError(f"{what}(name={name!r}) was called after the layer was built; make "
                             f"weights in build(input_shape) or __init__, not in call.")
        if constraint is not None or overwrite_with_gradient:
            arg = "constraint" if constraint is not None else "overwrite_with_gradient"
            raise ValueError(f"{what}: {arg} is not supported by cconv; leave it at its "
                             f"default.")
        shape = () if shape is None else shape
        if not isinstance(shape, (list, tuple)) or not all(
                isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
            raise ValueError(f"{what}: shape must be a tuple of non-negative ints; got "
                             f"shape={shape!r}.")
        shape = tuple(int(d) for d in shape)
        dtype = self.dtype if dtype is None else np.dtype(dtype).name
        if dtype != self.dtype:
            raise ValueError(f"{what}: dtype={dtype!r} differs from the layer's dtype "
                             f"{self.dtype!r}; a layer's weights share its dtype (give dtype= "
                             f"to the layer).")
        if initializer is None:
            initializer = "glorot_uniform"
        if callable(initializer) and not isinstance(initializer, type):
            init = initializer
        else:
            init = _initializers.get(initializer)
        value = np.asarray(init(shape, dtype=dtype))
        if value.shape != shape:
            raise ValueError(f"{what}: the initializer gave an array of shape {value.shape} for "
                             f"shape {shape}.")
        array = np.array(value, dtype=dtype)
        self.__dict__.setdefault("_added_weights", []).append(
            {"array": array, "name": name or "variable", "trainable": bool(trainable),
             "regularizer": _regularizers.get(regularizer)})
        return array

    @property
    def input_shape(self) -> Tuple[Optional[int], ...]:
        """``(None,) + sample shape`` once built (or given), else None; a list of them for a
        layer built for a list of inputs. Models, the compiled plan and the Keras file
        writers read a layer's shapes here."""
        return None if self._input_shape is None else _batch_shape(self._input_shape)

    @property
    def output_shape(self) -> Tuple[Optional[int], ...]:
        """``(None,) + output sample shape`` once built, else None."""
        return None if self._output_shape is None else _batch_shape(self._output_shape)

    @property
    def inbound_nodes(self) -> list:
        """The :class:`~cconv.layers.node.Node` of each call of the layer on symbolic tensors,
        in call order (Keras 2's name); a graph model finds its own among them. Read it:
        only :class:`~cconv.layers.node.Node` appends to it."""
        return self.__dict__.get("_inbound_nodes", [])

    def _check_input(self, x):
        """Build the layer for batch ``x`` (a list of batches for a Keras-style layer called
        on a list), or check that ``x`` has the sample shapes it was built for."""
        shape = [a.shape[1:] for a in x] if isinstance(x, list) else x.shape[1:]
        if not self.built:
            self.build(shape)
        elif shape != self._input_shape:
            got = [a.shape for a in x] if isinstance(x, list) else x.shape
            raise ValueError(
                f"Layer {self.name!r} expects inputs of shape (batch,) + {self._input_shape}; "
                f"got an array of shape {got}."
            )

    def _as_batch(self, x):
        """``x`` as a NumPy batch (ndim >= 2) of the layer's dtype."""
        x = np.asarray(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        if x.ndim < 2:
            raise ValueError(
                f"Layer {self.name!r} needs a batch of inputs (ndim >= 2); got shape {x.shape}."
            )
        return x

    # ----- computation -----------------------------------------------------------
    def __call__(self, x, training=False):
        """Apply the layer to a batch ``x`` of shape ``(batch,) + input_shape`` (a Keras-style
        layer also to a list of batches); returns a NumPy array of shape
        ``(batch,) + output_shape``. On symbolic tensors (``cconv.Input``) records a graph
        node and returns a symbolic tensor.

        Raises:
            NotImplementedError: a layer class that defines neither ``call`` nor ``forward``.
        """
        self._require_computation()
        if is_symbolic(x):
            return call_symbolic(self, x)
        if autograd.in_use and autograd.wants_node(x):
            return self._taped_call(x, training)
        if self._keras_style and isinstance(x, (list, tuple)):
            x = [self._as_batch(a) for a in x]
            if len({a.shape[0] for a in x}) != 1:
                raise ValueError(f"Layer {self.name!r} needs a list of batches of one batch "
                                 f"size; got shapes {[a.shape for a in x]}.")
        else:
            x = self._as_batch(x)
        self._check_input(x)
        return self.forward(x, training=training)

    def call(self, inputs, training=None):
        """Keras's name for the computation. A Keras-style layer defines its own
        ``call(self, inputs)`` (optionally with ``training=None``): ``inputs`` is a NumPy
        batch ``(batch,) + input_shape`` (a list of batches when the layer is called on a
        list) and it returns one NumPy array ``(batch,) + output_shape``. Here: ``forward``
        in inference mode unless ``training``."""
        self._require_computation()
        return self.forward(inputs, training=bool(training))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Output for a batch ``x``; caches for ``backward`` when ``training``. A Keras-style
        layer runs its ``call`` (:meth:`_run_call`); in training on tensors, keeping the
        record that its ``backward`` runs backwards."""
        self._require_computation()
        if not training or not self._autodiff:
            return self._run_call(x, training)
        several = isinstance(x, list)
        with autograd.paused():
            xs = [autograd.variable(a, self.compute_input_gradient)
                  for a in (x if several else [x])]
            trainable = set(self.trainable_weight_names) if self.trainable else set()
            leaves = {n: autograd.variable(getattr(self, n), n in trainable)
                      for n in self.weight_names}
            out = self._call_on_tensors(xs if several else xs[0], True, leaves.get)
        self._tape_record = (out, xs, {n: t for n, t in leaves.items() if n in trainable})
        return self._check_output(out.value, x)

    def add_loss(self, loss) -> None:
        """Keras's ``add_loss``, called in ``call``: a scalar (or an array, summed) computed
        from the inputs and weights, added to the model's loss in ``fit`` / ``evaluate`` /
        ``compute_loss`` (:attr:`losses`); training differentiates it with the rest of
        ``call``. Each call of the layer starts a new list."""
        autograd.note_use()
        self.__dict__.setdefault("_added_losses", []).append(loss)

    @property
    def losses(self) -> List[float]:
        """The values given to :meth:`add_loss` during the layer's last call (Keras's
        name), each summed to a float."""
        return [float(np.sum(autograd.value_of(v)))
                for v in self.__dict__.get("_added_losses", ())]

    def _taped_call(self, x, training):
        """``self(x)`` on the tape (an open ``GradientTape``, or tensors in ``x``): returns a
        tensor. A Keras-style layer runs ``call`` on tensors (its weights are the tape's
        leaves for them); another layer records one node whose gradient is its native
        ``backward`` (so differentiate it after ``layer(x, training=True)``)."""
        several = isinstance(x, (list, tuple))
        values = [self._as_batch(autograd.value_of(a)) for a in (x if several else [x])]
        self._check_input(values if several else values[0])
        if self._autodiff:
            xs = [a if autograd.is_tensor(a) and a.dtype == v.dtype else
                  autograd.record(v, [a], lambda g: (g,)) if autograd.is_tensor(a) else
                  autograd.leaf(v) for a, v in zip(x if several else [x], values)]
            trainable = set(self.trainable_weight_names) if self.trainable else set()

            def wrap(name):
                w = getattr(self, name)
                return autograd.leaf(w) if name in trainable else autograd.constant(w)
            return self._call_on_tensors(xs if several else xs[0], training, wrap)
        run_training = bool(training) or not acts_differently_in_training(self)
        with autograd.paused():
            out = self.forward(values if several else values[0], training=run_training)
        # in inference mode Dropout (and an augmentation layer) pass their input through
        identity = (not run_training and not several and out.shape == values[0].shape
                    and np.array_equal(out, values[0]))
        cache = self.get_forward_cache()
        names = self.trainable_weight_names if self.trainable else []
        parents = list(x if several else [x]) + [getattr(self, n) for n in names]
        n_in = len(values)

        def vjp(g):
            if identity:
                return (g,) + (None,) * len(names)
            if not run_training:
                raise RuntimeError(
                    f"Layer {self.name!r} ({type(self).__name__}) was called with "
                    f"training=False inside the GradientTape, and in inference mode it "
                    f"computes differently from training, so cconv cannot differentiate it; "
                    f"call it as layer(x, training=True) to differentiate it.")
            with autograd.paused():
                self.set_forward_cache(cache)
                saved = self.compute_input_gradient     # a model may have turned it off
                self.compute_input_gradient = True
                try:
                    dx = self.backward(g)
                finally:
                    self.compute_input_gradient = saved
            dxs = list(dx) if several else [dx]
            return tuple(dxs[:n_in]) + tuple(self.grads[n].copy() for n in names)
        return autograd.record(out, parents, vjp)

    def _call_on_tensors(self, x, training, wrap):
        """``call(x)`` with each weight attribute replaced by ``wrap(name)`` (a tensor) for
        the length of the call; returns the output tensor.

        Raises:
            NotImplementedError: ``call`` returned something not computed on the tape.
        """
        names = self.weight_names
        saved = {n: getattr(self, n) for n in names}
        self.__dict__.pop("_added_losses", None)
        try:
            for n in names:
                setattr(self, n, wrap(n))
            if self._call_has_training_arg:
                out = self.call(x, training=bool(training))
            else:
                out = self.call(x)
        except TypeError as e:
            if hasattr(e, "add_note"):
                e.add_note(f"(while layer {self.name!r} ({type(self).__name__}) ran call on "
                           f"cconv.autograd tensors, to differentiate it)")
            raise
        finally:
            for n, w in saved.items():
                setattr(self, n, w)
        if isinstance(out, (list, tuple, dict)):
            raise ValueError(f"Layer {self.name!r}: call returned a {type(out).__name__}; a cconv "
                             f"layer has one output, one array.")
        if not autograd.is_tensor(out):
            raise NotImplementedError(
                f"Layer {self.name!r} ({type(self).__name__}): call returned a "
                f"{type(out).__name__}, not a tensor computed from its inputs, so cconv cannot "
                f"differentiate it. Compute with the operators, NumPy ufuncs (np.exp, ...) or "
                f"cconv.ops on the inputs and weights, without np.asarray / np.array / "
                f"float(), or define backward(self, dy).")
        return out

    def _run_call(self, x, training):
        """A Keras-style layer's ``call`` on ``x``, with ``training`` when ``call`` takes
        it; its result as one C-contiguous array of the layer's dtype.

        Raises:
            ValueError: not one array of numbers, or (once the output shape is known) not
                ``(batch,) + output_shape``.
            NotImplementedError: a layer held in an attribute has weights (they would be
                missing from the model's weights, counts and files).
        """
        self.__dict__.pop("_added_losses", None)
        out = self.call(x, training=bool(training)) if self._call_has_training_arg else self.call(x)
        if isinstance(out, (list, tuple, dict)):
            raise ValueError(f"Layer {self.name!r}: call returned a {type(out).__name__}; a cconv "
                             f"layer has one output, one array.")
        return self._check_output(out, x)

    def _check_output(self, out, x):
        """``call``'s result ``out`` for input ``x`` as one C-contiguous array of the layer's
        dtype, checked (see :meth:`_run_call`)."""
        out = np.asarray(out)
        if out.dtype.kind not in "fiub":
            raise ValueError(f"Layer {self.name!r}: call returned an array of dtype {out.dtype}; "
                             f"it must return numbers.")
        out = np.ascontiguousarray(out, dtype=self.dtype)
        n = (x[0] if isinstance(x, list) else x).shape[0]
        if self._output_shape is not None and out.shape != (n,) + tuple(self._output_shape):
            raise ValueError(f"Layer {self.name!r}: call returned shape {out.shape} for a batch of "
                             f"{n}; the layer's output shape is {(None,) + self._output_shape}.")
        for layer in self.__dict__.get("_sublayers", ()):
            if layer.weights:
                raise NotImplementedError(
                    f"Layer {self.name!r} holds layer {layer.name!r}, which has weights; cconv "
                    f"does not track the weights of layers inside a custom layer yet (they "
                    f"would be missing from get_weights, count_params and saved files). Call "
                    f"those layers in a model instead (the functional API or a subclassed "
                    f"cconv.Model).")
        return out

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """``dL/dx`` from ``dy = dL/dy`` (same shape as the last ``forward`` output);
        fills ``self.grads``. Needs a preceding ``forward(x, training=True)``. A Keras-style
        layer runs the record of that forward backwards (automatic gradients): ``dL/dx``
        is an array (a list for a list of inputs; zeros where the output does not depend on
        it), None when ``compute_input_gradient`` is False."""
        if not self._autodiff:
            raise NotImplementedError(self._no_backward_message())
        record = self.__dict__.get("_tape_record")
        if record is None:
            raise RuntimeError(f"Layer {self.name!r}: backward needs a preceding "
                               f"forward(x, training=True).")
        out, xs, leaves = record
        dy = np.asarray(dy)
        if dy.shape != out.shape:
            raise ValueError(f"Layer {self.name!r}: backward got dy of shape {dy.shape}; the "
                             f"last training output has shape {out.shape}.")
        root = autograd.sum(autograd.multiply(out, autograd.constant(dy.astype(out.dtype,
                                                                                copy=False))))
        for extra in self.__dict__.get("_added_losses", ()):   # add_loss: d(total)/d(extra) = 1
            if autograd.is_tensor(extra):
                root = autograd.add(root, autograd.sum(extra))
        grads = autograd.backprop(root) if root.requires_grad else {}
        for name, t in leaves.items():
            g = grads.get(id(t))
            if g is None:
                self.grads[name][...] = 0
            else:
                self.grads[name][...] = g
        if not self.compute_input_gradient:
            return None
        dxs = [np.zeros(t.shape, t.dtype) if grads.get(id(t)) is None else
               np.ascontiguousarray(grads[id(t)], dtype=t.dtype) for t in xs]
        return dxs if len(xs) > 1 or isinstance(self._input_shape, list) else dxs[0]

    def _require_computation(self):
        """Raise a NotImplementedError for a layer class that defines neither Keras's
        ``call`` nor cconv's ``forward``."""
        if type(self).call is Layer.call and type(self).forward is Layer.forward:
            raise NotImplementedError(
                f"Layer {self.name!r} ({type(self).__name__}) defines no computation: a custom "
                f"layer subclasses cconv.layers.Layer and defines call(self, inputs), as in "
                f"Keras (NumPy arrays in, one NumPy array out), or cconv's forward(x, "
                f"training) and backward(dy).")

    def require_backward(self) -> None:
        """Raise a NotImplementedError naming this layer if it defines no ``backward`` (the
        graph model calls it, before any backward runs, on each layer training must
        differentiate)."""
        if type(self).backward is Layer.backward and not self._keras_style:
            raise NotImplementedError(self._no_backward_message())

    def _no_backward_message(self):
        names = ", ".join(self._trainable_names) or "none"
        return (f"Layer {self.name!r} ({type(self).__name__}) cannot be trained through: it "
                f"defines forward but no backward (automatic gradients differentiate a layer "
                f"written Keras's way, with call(self, inputs), instead). Define "
                f"backward(self, dy): given dy = dL/d(output), of the output's shape, return "
                f"dL/d(input) (a list for a list of inputs) and write dL/dw into "
                f"self.grads[name] for each trainable weight (here: {names}). A layer without "
                f"trainable weights that no trainable layer precedes needs no backward.")

    # ----- weights ------------------------------------------------------------------
    @property
    def weights(self) -> List[np.ndarray]:
        return [getattr(self, n) for n in self._weight_names if getattr(self, n, None) is not None]

    @property
    def trainable_weights(self) -> List[np.ndarray]:
        if not self.trainable:
            return []
        return [
            getattr(self, n) for n in self._trainable_names if getattr(self, n, None) is not None
        ]

    @property
    def non_trainable_weights(self) -> List[np.ndarray]:
        tw = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in tw]

    @property
    def trainable_variables(self) -> List[np.ndarray]:
        """Keras 3's name for :attr:`trainable_weights`: the arrays themselves, so that
        ``optimizer.apply(grads, layer.trainable_variables)`` updates them in place."""
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> List[np.ndarray]:
        """Keras 3's name for :attr:`non_trainable_weights`."""
        return self.non_trainable_weights

    @property
    def variables(self) -> List[np.ndarray]:
        """Keras 3's name for :attr:`weights` (the arrays themselves)."""
        return self.weights

    @property
    def weight_names(self) -> List[str]:
        """The names of the attributes holding the layer's weights, in ``get_weights()``
        order (absent ones, e.g. a bias with ``use_bias=False``, left out). The model's flat
        weight buffer, the compiled plan and weight files reach the arrays through them."""
        return [n for n in self._weight_names if getattr(self, n, None) is not None]

    @property
    def trainable_weight_names(self) -> List[str]:
        """The names of the attributes holding the weights an optimizer updates while the
        layer is ``trainable`` (a subset of :attr:`weight_names`, in ``trainable_weights``
        order); ``grads`` has an entry for each. The trainer packs and steps them."""
        return [n for n in self._trainable_names if getattr(self, n, None) is not None]

    def get_forward_cache(self) -> dict:
        """What the last training ``forward`` kept for ``backward`` (the attributes a layer
        class names in ``_transient``): a layer called several times in a graph model has one
        set of caches, so the model saves them per call and restores them
        (:meth:`set_forward_cache`) before that call's ``backward``."""
        state = self.__dict__
        return {k: state[k] for k in self._transient if k in state}

    def set_forward_cache(self, cache: dict) -> None:
        """Put back what :meth:`get_forward_cache` returned."""
        self.__dict__.update(cache)

    def get_weights(self) -> List[np.ndarray]:
        """Copies of the weights, Keras's order (e.g. kernel, bias)."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Copy ``weights`` (Keras's order and shapes) into the layer, in place."""
        names = self.weight_names
        weights = list(weights)
        if len(weights) != len(names):
            raise ValueError(
                f"Layer {self.name!r} has {len(names)} weights ({', '.join(names) or 'none'}); "
                f"set_weights got {len(weights)}."
            )
        for n, w in zip(names, weights):
            cur = getattr(self, n)
            w = np.asarray(w)
            if w.shape != cur.shape:
                raise ValueError(
                    f"Layer {self.name!r}: weight {n!r} has shape {cur.shape}; "
                    f"set_weights got shape {w.shape}."
                )
        for n, w in zip(names, weights):
            getattr(self, n)[...] = w

    def count_params(self) -> int:
        return int(sum(w.size for w in self.weights))

    def weight_regularizers(self) -> List[tuple]:
        """``(weight name, regularizer)`` for each present trainable weight whose
        ``<name>_regularizer`` attribute is set (e.g. ``kernel_regularizer``; an
        ``add_weight(regularizer=...)`` for a Keras-style layer). The trainer adds their
        penalties to the loss and their gradients to ``grads``."""
        out = []
        added = self.__dict__.get("_weight_regularizer_map")   # a Keras-style layer's
        for n in self._trainable_names:
            reg = added.get(n) if added is not None else getattr(self, n + "_regularizer", None)
            if reg is not None and getattr(self, n, None) is not None:
                out.append((n, reg))
        return out

    # ----- config ----------------------------------------------------------------------
    def get_config(self) -> Config:
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape is not None and not self.built:
            cfg["input_shape"] = tuple(self._input_shape)
        return cfg

    @classmethod
    def from_config(cls, config: Config):
        return cls(**config)

    def __getstate__(self):
        state = self.__dict__.copy()
        for k in self._transient:
            state.pop(k, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"
