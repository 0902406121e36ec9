"""Scaling out: synchronous data-parallel training over MPI (:mod:`~cconv.distribute.mpi`,
public as ``cconv.distributed``) and batch inference on a Dask cluster
(:mod:`~cconv.distribute.dask`, public as ``cconv.dask``). Both drive a model only through
its public API and the trainer's documented ``distribution`` hook. Nothing here is imported
by ``import cconv``: each needs its extra (``mpi4py`` and an MPI library; ``dask``)."""
