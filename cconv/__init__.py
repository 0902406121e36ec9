"""cconv: fast, Keras-exact 2-D convolution and pooling on a compiled OpenMP core.

``cconv.ops`` is the NumPy API (forward and backward); ``cconv.classic`` offers the four
curriculum functions on the same core.
"""
import os as _os

# OpenMP workers that spin after a parallel loop steal the cores from other thread pools in the
# process (NumPy's BLAS, TensorFlow, the user's own threads): measured 4x slowdowns here. GNU
# OpenMP reads its spin count once, when it is loaded, so bound it before the kernels load it
# (about a millisecond of spinning instead of the default's much longer), unless the user chose.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "20000"

from . import classic, ops  # noqa: E402
from ._ext.parallel import get_num_threads, isa, openmp_enabled, set_num_threads  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ops", "classic", "get_num_threads", "set_num_threads", "openmp_enabled", "isa"]

# --- Keras-style API: layers, models, training -----------------------------------------
# keras_files registers the .keras / .h5 / .weights.h5 formats with cconv.saving
from . import (  # noqa: E402
    activations,
    callbacks,
    datasets,
    functional,
    initializers,
    keras_files,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    schedules,
    sequential,
    utils,
)
from .interop import from_keras  # noqa: E402
from .layers import Input  # noqa: E402
from .models import Model, Sequential, load_model  # noqa: E402

__all__ += [
    "Sequential", "Model", "Input", "load_model", "functional", "from_keras", "layers", "models",
    "optimizers",
    "losses", "metrics", "activations", "initializers", "callbacks", "datasets",
    "regularizers", "schedules", "utils", "keras_files", "sequential",
]
# --- end Keras-style API ---------------------------------------------------------------
