"""Batch inference over Dask arrays: :func:`predict` maps ``model.predict`` over the blocks.

::

    import dask.array as da
    from dask.distributed import Client, LocalCluster
    import cconv, cconv.dask

    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    x = da.from_zarr(...)                      # (n, 28, 28, 1), chunked along the batch axis
    y = cconv.dask.predict(model, x, batch_size=256)   # lazy (n, 10) dask array
    y.compute()

The model travels to the workers pickled once per worker (``client.scatter(model,
broadcast=True)`` when a ``dask.distributed`` client is active, otherwise one
``dask.delayed`` node in the graph), never once per block. Models pickle without their
training caches or flat buffers (see ``Trainer.__getstate__``). Only the model's public
interface is used: ``built``/``build``, ``input_shape``, ``output_shape``, ``dtype`` and
``predict``.
"""

import threading

import numpy as np

from .._ext.parallel import set_num_threads

try:
    import dask
    import dask.array as da
except ImportError as exc:
    raise ImportError(
        "cconv.dask needs Dask: `pip install 'dask[distributed]'` (or 'dask[array]' for the "
        f"local schedulers). Importing it failed with: {exc!r}"
    ) from exc

__all__ = ["predict"]

# A model object keeps per-call caches on its layers, so one worker process runs one block
# at a time through it; cconv's own OpenMP threads parallelise within the block.
_LOCK = threading.Lock()


def _predict_block(block, model, batch_size, num_threads, out_shape):
    with _LOCK:
        if num_threads is not None:
            set_num_threads(num_threads)
        if block.shape[0] == 0:
            return np.empty((0,) + out_shape, dtype=model.dtype)
        return model.predict(block, batch_size=batch_size, verbose=0)


def _sample_shapes(model, x_shape):
    """``(input, output)`` shapes of one sample, from the model's public ``input_shape`` and
    ``output_shape``; an unbuilt model is built first (its declared input shape, else
    ``x_shape``).

    Raises:
        ValueError: a model with several inputs or outputs.
    """
    if not model.built:
        try:
            model.build()                       # the declared input shape, if any
        except ValueError:
            model.build((None,) + tuple(x_shape))
    shapes = {"input": model.input_shape, "output": model.output_shape}
    for what, shape in shapes.items():
        if isinstance(shape, list):
            raise ValueError(f"cconv.dask.predict takes a model with one input and one "
                             f"output; this model's {what} shapes are {shape}.")
    return tuple(shapes["input"][1:]), tuple(shapes["output"][1:])


def _active_client():
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:          # no client in this process
        return None


def predict(model, x, batch_size=None, client=None, num_threads=None):
    """Model outputs for a Dask array, computed block by block on the Dask scheduler.

    Args:
        model: a built ``cconv.Sequential`` (anything picklable with the same ``predict``).
        x: a ``dask.array.Array`` (or a NumPy array, chunked here by ``batch_size * 8``)
            of shape ``(n,) + model.input_shape[1:]``. Chunks along the non-batch axes are
            merged first, so every block holds whole samples.
        batch_size: the batch size of ``predict`` inside each block (default 32).
        client: a ``dask.distributed.Client``; default the active one, if any. Without one
            the current (threaded, process or synchronous) scheduler runs the blocks.
        num_threads: if given, ``cconv.set_num_threads(num_threads)`` in each worker before
            it predicts (e.g. 1 when each worker owns one core).

    Returns:
        A lazy ``dask.array.Array`` ``(n,) + model.output_shape[1:]`` in the model's dtype,
        chunked along the batch axis like ``x``. Call ``.compute()`` for a NumPy array.

    Raises:
        ValueError: ``x`` has the wrong shape for the model, or the model has several inputs
            or outputs.
    """
    bs = 32 if batch_size is None else int(batch_size)
    if bs <= 0:
        raise ValueError(f"batch_size must be positive; got {bs}.")
    if not isinstance(x, da.Array):
        x = np.asarray(x)
        x = da.from_array(x, chunks=(bs * 8,) + x.shape[1:])
    in_shape, out_shape = _sample_shapes(model, x.shape[1:])
    if x.ndim != len(in_shape) + 1 or tuple(x.shape[1:]) != in_shape:
        raise ValueError(
            f"x has shape {x.shape} but the model expects inputs of shape (batch,) + {in_shape}.")
    if x.dtype != model.dtype:
        x = x.astype(model.dtype)
    if any(len(c) > 1 for c in x.chunks[1:]):
        x = x.rechunk({i: -1 for i in range(1, x.ndim)})

    if client is None:
        client = _active_client()
    if client is not None:
        model_ref = client.scatter(model, broadcast=True, hash=False)
    else:
        model_ref = dask.delayed(model, pure=True)

    ndim_out = 1 + len(out_shape)
    return da.map_blocks(
        _predict_block, x, model_ref, bs, num_threads, out_shape,
        dtype=model.dtype,
        chunks=(x.chunks[0],) + tuple((d,) for d in out_shape),
        drop_axis=list(range(1, x.ndim)),
        new_axis=list(range(1, ndim_out)),
        meta=np.empty((0,) * ndim_out, dtype=model.dtype),
    )
