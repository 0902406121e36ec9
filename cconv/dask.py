"""``cconv.dask``: batch inference on a Dask cluster. The code is in
:mod:`cconv.distribute.dask`; this module is its public import path."""
from .distribute.dask import predict  # noqa: F401

__all__ = ["predict"]
