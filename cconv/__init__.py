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
# saving.keras_files registers the .keras / .h5 / .weights.h5 formats with cconv.saving
from . import (  # noqa: E402
    activations,
    autograd,  # noqa: E402
    backend,
    callbacks,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    saving,
    schedules,
    trainers,
    utils,
)
from .autograd import GradientTape  # noqa: E402
from .layers import Input  # noqa: E402
from .models import Model, Sequential, load_model  # noqa: E402
from .saving import keras_files  # noqa: E402, F401  (registers the Keras formats)
from .saving.interop import from_keras  # noqa: E402

__all__ += ["autograd", "GradientTape"]

__all__ += [
    "Sequential", "Model", "Input", "load_model", "from_keras", "layers", "models",
    "optimizers", "losses", "metrics", "activations", "initializers", "callbacks", "datasets",
    "regularizers", "schedules", "utils", "saving", "trainers", "backend",
]
# --- end Keras-style API ---------------------------------------------------------------

# Modules that moved into subpackages keep their old import paths (``import cconv.trainer``,
# ``from cconv.functional import Model``, pickles that name ``cconv.sequential.Sequential``):
# each old name is the new module itself, not a copy.
_MOVED = {
    "trainer": "trainers.trainer",
    "epoch_iterator": "trainers.epoch_iterator",
    "load_guard": "trainers.load_guard",
    "sequential": "models.sequential",
    "functional": "models.functional",
    "fileio": "saving.fileio",
    "keras_files": "saving.keras_files",
    "interop": "saving.interop",
}


def _alias_moved_modules():
    import importlib
    import sys
    for old, new in _MOVED.items():
        module = importlib.import_module(f"{__name__}.{new}")
        sys.modules[f"{__name__}.{old}"] = module
        globals()[old] = module


_alias_moved_modules()
