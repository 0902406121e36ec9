"""cconv: fast, Keras-exact 2-D convolution and pooling on a compiled OpenMP core.

``cconv.ops`` is the NumPy API (forward and backward); ``cconv.classic`` offers the four
curriculum functions on the same core.
"""
from . import classic, ops
from ._ext.parallel import get_num_threads, openmp_enabled, set_num_threads

__version__ = "0.1.0"

__all__ = ["ops", "classic", "get_num_threads", "set_num_threads", "openmp_enabled"]

# --- Keras-style API (issue 3: layers, models, training) -------------------------------
from . import (activations, callbacks, datasets, initializers, layers, losses,  # noqa: E402
               metrics, models, optimizers)
from .interop import from_keras  # noqa: E402
from .layers import Input  # noqa: E402
from .models import Sequential, load_model  # noqa: E402

__all__ += [
    "Sequential", "Input", "load_model", "from_keras", "layers", "models", "optimizers",
    "losses", "metrics", "activations", "initializers", "callbacks", "datasets",
]
# --- end Keras-style API ---------------------------------------------------------------
