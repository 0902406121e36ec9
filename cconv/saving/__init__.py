"""Saving and loading, with no TensorFlow: cconv's own ``.npz`` files and the registry of
model classes and file formats (:mod:`~cconv.saving.saving_api`), atomic writes and the checks
of untrusted archives (:mod:`~cconv.saving.fileio`), Keras 3 ``.keras`` / ``.weights.h5`` and
legacy ``.h5`` files (:mod:`~cconv.saving.keras_files`, registered here by suffix when
``cconv`` is imported), and converting a live Keras model (:mod:`~cconv.saving.interop`)."""

from ..registry import (
    CustomObjectScope,
    custom_object_scope,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
)
from .saving_api import (
    FORMAT_VERSION,
    file_format,
    load_model,
    load_weights,
    read_archive,
    register_format,
    register_model_class,
    restore_optimizer_state,
    save_model,
    save_weights,
    write_archive,
)

__all__ = ["FORMAT_VERSION", "file_format", "load_model", "load_weights", "read_archive",
           "register_format", "register_model_class", "restore_optimizer_state", "save_model",
           "save_weights", "write_archive", "register_keras_serializable",
           "custom_object_scope", "CustomObjectScope", "get_custom_objects",
           "get_registered_name", "get_registered_object"]
