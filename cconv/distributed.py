"""``cconv.distributed``: data-parallel training over MPI. The code is in
:mod:`cconv.distribute.mpi`; this module is its public import path."""
from .distribute.mpi import MPI, DistributedModel  # noqa: F401

__all__ = ["DistributedModel", "MPI"]
