"""Keras's ``keras.models`` namespace: :class:`Model` (a graph of layers: the functional API
and subclassed models, in :mod:`~cconv.models.functional`), :class:`Sequential` (a ``Model``
whose graph is a chain, in :mod:`~cconv.models.sequential`), :func:`load_model`,
:func:`clone_model`, and the
ready-made networks :func:`lenet5` and :func:`tutorial_cnn` (:mod:`~cconv.models.networks`).
"""

from ..saving import load_model
from .functional import Model, clone_model
from .networks import lenet5, tutorial_cnn
from .sequential import Sequential

__all__ = ["Sequential", "Model", "load_model", "clone_model", "lenet5", "tutorial_cnn"]
