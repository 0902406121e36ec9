"""Keras's ``keras.backend`` names for cconv: ``import cconv.backend as K``.

* :func:`clear_session` resets the automatic layer and model names (the next ``Dense`` is
  ``dense`` again); the random state is left as it is (as in Keras, where unseeded
  objects draw their seeds from Python's ``random``, which ``clear_session`` keeps).
* :func:`floatx` / :func:`set_floatx`: the dtype of new layers and ``Input`` made without a
  ``dtype`` ("float32" by default; "float32" or "float64", the two cconv computes in).
* :func:`epsilon` / :func:`set_epsilon`: Keras's fuzz factor (1e-7 by default); cconv's losses
  keep Keras's own constant 1e-7 (a value read here, not a setting they follow).
* :func:`image_data_format`: always "channels_last" (NHWC, cconv's only layout);
  :func:`set_image_data_format` accepts only that.
* :func:`is_keras_tensor`, :func:`get_uid`, :func:`standardize_dtype`: as Keras's.
* :func:`make_generator`: the ``numpy.random.Generator`` of a random layer (Dropout, the
  augmentation layers) built without a seed: a child of the global seed, one per layer in
  creation order; :func:`global_generator`: the one unseeded initializers draw from at each
  call. So ``cconv.utils.set_random_seed(s)`` makes every later unseeded draw reproducible;
  all draws are NumPy's, in Python, so thread counts play no part. (Dropout draws only its
  64-bit seed from its generator; its masks come from Philox in C, ``cconv.ops.dropout``, a
  function of (seed, step, element) that no thread count changes either.)

This module imports nothing else from cconv (every other module may import it).
"""

import threading

import numpy as np

__all__ = ["clear_session", "floatx", "set_floatx", "epsilon", "set_epsilon",
           "image_data_format", "set_image_data_format", "backend", "make_generator",
           "global_generator", "global_seed", "is_keras_tensor", "get_uid", "standardize_dtype",
           "reset_global_seed", "name_scope_counters"]

_FLOATX = ["float32"]
_EPSILON = [1e-7]
_SUPPORTED_FLOATX = ("float32", "float64")

_lock = threading.Lock()
# The global random state: a SeedSequence whose children seed each unseeded generator, and
# the int it was made from (None: fresh entropy).
_seed_state = {"seed": None, "sequence": np.random.SeedSequence(), "generator": None}
# Every counter of automatic names, registered by the module that keeps it (layers/base.py's
# unique_name): clear_session empties each.
_NAME_COUNTERS = []


def backend():
    """The backend's name, as Keras's ``keras.backend.backend()``: ``"cconv"``."""
    return "cconv"


def floatx():
    """The default dtype of new layers and ``Input`` (a string: "float32" or "float64")."""
    return _FLOATX[0]


def set_floatx(value):
    """Set the default dtype of layers and ``Input`` made afterwards without ``dtype``.

    Args:
        value: "float32" or "float64" (a NumPy dtype naming one of them is accepted too).

    Raises:
        ValueError: any other dtype (cconv computes in float32 and float64 only).
    """
    try:
        name = None if value is None else np.dtype(value).name
    except TypeError:
        name = None
    if name not in _SUPPORTED_FLOATX:
        raise ValueError(f"set_floatx: value must be one of {list(_SUPPORTED_FLOATX)}; got "
                         f"value={value!r} (cconv computes in float32 and float64 only).")
    _FLOATX[0] = name


def epsilon():
    """Keras's fuzz factor (a float, 1e-7 by default)."""
    return _EPSILON[0]


def set_epsilon(value):
    """Set the fuzz factor :func:`epsilon` returns.

    Raises:
        ValueError: not a finite number > 0.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"set_epsilon: value must be a number > 0; got {value!r}.") from None
    if isinstance(value, bool) or not np.isfinite(v) or v <= 0:
        raise ValueError(f"set_epsilon: value must be a finite number > 0; got {value!r}.")
    _EPSILON[0] = v


def image_data_format():
    """Always ``"channels_last"``: images are ``(batch, height, width, channels)``."""
    return "channels_last"


def set_image_data_format(data_format):
    """Accepts ``"channels_last"`` only.

    Raises:
        ValueError: any other value ("channels_first" included: cconv's kernels are NHWC
            only; transpose the data with ``np.transpose(x, (0, 2, 3, 1))`` instead).
    """
    if data_format != "channels_last":
        raise ValueError(f"set_image_data_format: data_format must be 'channels_last' (cconv "
                         f"computes in NHWC only; transpose NCHW data with "
                         f"np.transpose(x, (0, 2, 3, 1))); got data_format={data_format!r}.")


def name_scope_counters(counters):
    """Register ``counters`` (a dict-like of automatic-name counters) for
    :func:`clear_session` to empty; returns it."""
    _NAME_COUNTERS.append(counters)
    return counters


def global_seed():
    """The int given to the last :func:`reset_global_seed` (``set_random_seed``), or None."""
    return _seed_state["seed"]


def reset_global_seed(seed=None):
    """Restart the global random state from ``seed`` (an int >= 0) or, with None, from fresh
    entropy. :func:`cconv.utils.set_random_seed` calls it (and seeds NumPy's and Python's
    global generators too)."""
    with _lock:
        _seed_state["seed"] = seed
        _seed_state["sequence"] = np.random.SeedSequence(seed)
        _seed_state["generator"] = None


def make_generator(seed=None):
    """A ``numpy.random.Generator``: seeded by ``seed`` when it is given, else by the next
    child of the global seed (reproducible after ``set_random_seed``: the n-th unseeded
    generator made after it is always the same)."""
    if seed is not None:
        return np.random.default_rng(seed)
    with _lock:
        child = _seed_state["sequence"].spawn(1)[0]
    return np.random.default_rng(child)


def global_generator():
    """The one ``numpy.random.Generator`` that unseeded initializers draw from at each call
    (restarted by :func:`reset_global_seed`: after ``set_random_seed(s)`` the same calls give
    the same values)."""
    with _lock:
        if _seed_state["generator"] is None:
            # spawn key (2**32 - 1,) keeps it apart from make_generator's children 0, 1, ...
            seq = _seed_state["sequence"]
            _seed_state["generator"] = np.random.default_rng(np.random.SeedSequence(
                seq.entropy, spawn_key=(2 ** 32 - 1,)))
        return _seed_state["generator"]


def is_keras_tensor(x):
    """Whether ``x`` is a symbolic tensor (``cconv.Input(...)`` or a layer's output on one)."""
    from .layers.node import is_symbolic
    return is_symbolic(x)


_UIDS = {}


def get_uid(prefix=""):
    """Keras's ``get_uid``: 1, 2, 3, ... for successive calls with the same ``prefix``
    (restarted by :func:`clear_session`)."""
    with _lock:
        _UIDS[prefix] = _UIDS.get(prefix, 0) + 1
        return _UIDS[prefix]


def standardize_dtype(dtype):
    """A dtype's name as a string (``np.float32`` -> ``"float32"``); None gives
    :func:`floatx`.

    Raises:
        ValueError: not a dtype NumPy knows.
    """
    if dtype is None:
        return floatx()
    try:
        return np.dtype(getattr(dtype, "name", dtype)).name
    except TypeError:
        raise ValueError(f"standardize_dtype: {dtype!r} is not a dtype.") from None


def clear_session(free_memory=True):
    """Reset cconv's global state as Keras's ``clear_session`` does: automatic names start
    again (``dense``, ``dense_1``, ... and ``sequential``, ``functional``). The global random
    state goes on where it was (a script seeded once by ``set_random_seed`` stays
    reproducible). Existing layers and models keep their names and weights.

    Args:
        free_memory: accepted for Keras's signature (Python's garbage collector runs).
    """
    for counters in _NAME_COUNTERS:
        counters.clear()
    _UIDS.clear()
    if free_memory:
        import gc
        gc.collect()
