"""cconv: fast, Keras-exact 2-D convolution and pooling on a compiled OpenMP core.

``cconv.ops`` is the NumPy API (forward and backward); ``cconv.classic`` offers the four
curriculum functions on the same core.
"""
from . import classic, ops
from ._ext.parallel import get_num_threads, openmp_enabled, set_num_threads

__version__ = "0.1.0"

__all__ = ["ops", "classic", "get_num_threads", "set_num_threads", "openmp_enabled"]
