"""Run under ``mpirun -n 2 python tests/mpi_worker.py OUTDIR`` (and ``mpirun -n 3 ...
OUTDIR three``) by tests/test_distributed.py.

Each scenario trains with :class:`cconv.distributed.DistributedModel` and saves, per rank,
the final weights and history to ``OUTDIR/<scenario>_rank<r>.npz``. The single-process
references are built in the test process from the same functions below, so both sides
share the data and the models.
"""
import os
import sys

import numpy as np

PER_RANK_BATCH = 8
N_MAIN = 2 * PER_RANK_BATCH * 4 + 1  # 65: 4 full global batches, then 1 sample (rank 1 gets none)
EPOCHS = 2


def main_data():
    rng = np.random.default_rng(0)
    x = rng.random((N_MAIN, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, N_MAIN)]
    return x, y


def lenet():
    import cconv
    return cconv.models.lenet5()             # Adam, categorical cross-entropy, accuracy


def bn_data():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(64, 6, 6, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -3.0]).astype(np.float32)
    y = rng.integers(0, 3, 64)
    return x, y


BN_MOMENTUM = 0.9


def bn_model():
    import cconv
    L = cconv.layers
    model = cconv.Sequential([
        cconv.Input((6, 6, 3)),
        L.BatchNormalization(momentum=BN_MOMENTUM),
        L.Conv2D(4, 3, activation="relu", kernel_initializer=cconv.initializers.HeNormal(seed=0)),
        L.Flatten(),
        L.Dense(3, activation="softmax", kernel_initializer=cconv.initializers.HeNormal(seed=1)),
    ])
    model.compile(optimizer=cconv.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


# 3 ranks: global steps of 24, 24, then 2 samples (ranks 0 and 1 one each, rank 2 none).
RANKS_EMPTY = 3
N_EMPTY = RANKS_EMPTY * PER_RANK_BATCH * 2 + 2


def empty_share_data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(N_EMPTY, 6, 6, 2)).astype(np.float32)
    y = (x[:, :3, :, 0].mean(axis=(1, 2)) + 0.3 * rng.normal(size=N_EMPTY) > 0).astype(np.float32)
    return x, y


def regularized_model(graph=False):
    """Weight regularizers on both kernels (their gradient is added after the reduction) and
    confusion metrics (whose state is per-threshold counts, summed over ranks); a
    Sequential, or with ``graph`` the same layers as a functional model."""
    import cconv
    L, M = cconv.layers, cconv.metrics
    layers = [
        L.Conv2D(4, 3, activation="relu", kernel_regularizer=cconv.regularizers.L2(0.05),
                 kernel_initializer=cconv.initializers.HeNormal(seed=2)),
        L.Flatten(),
        L.Dense(1, activation="sigmoid", kernel_regularizer=cconv.regularizers.L2(0.05),
                kernel_initializer=cconv.initializers.HeNormal(seed=3)),
    ]
    if graph:
        t = inp = cconv.Input((6, 6, 2))
        for layer in layers:
            t = layer(t)
        model = cconv.Model(inp, t)
    else:
        model = cconv.Sequential([cconv.Input((6, 6, 2))] + layers)
    model.compile(optimizer=cconv.optimizers.Adam(0.01), loss="binary_crossentropy",
                  metrics=["accuracy", M.Precision(), M.Recall(), M.AUC()])
    return model


def _recorder():
    import cconv

    class Recorder(cconv.callbacks.Callback):
        """Every rank's own weights at each epoch end (before fit's final broadcast), the
        on_test_* calls of the validation, and on_train_end's logs."""

        def __init__(self):
            super().__init__()
            self.epoch_weights, self.test_calls, self.end_logs = [], [], None

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_weights.append(self.model.get_weights())

        def on_test_begin(self, logs=None):
            self.test_calls.append("begin")

        def on_test_end(self, logs=None):
            self.test_calls.append("end")
            self.test_end_logs = dict(logs)

        def on_train_end(self, logs=None):
            self.end_logs = dict(logs)

    return Recorder()


def interleaved_shard(n, rank, size, b):
    """The sample indices rank ``rank`` trains on, in order, when ``sharded=False`` splits
    each global batch of ``size * b`` (used to build an explicit shard for ``sharded=True``)."""
    idx = []
    for lo in range(0, n, size * b):
        m = min(size * b, n - lo)
        base, rem = divmod(m, size)
        start = lo + rank * base + min(rank, rem)
        idx.extend(range(start, start + base + (rank < rem)))
    return np.array(idx, dtype=np.int64)


def save(outdir, name, rank, model, history, **extra):
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    for k, v in history.history.items():
        arrays["h_" + k] = np.array(v)
    arrays.update(extra)
    np.savez(os.path.join(outdir, f"{name}_rank{rank}.npz"), **arrays)


def main(outdir):
    import cconv
    from cconv.distributed import MPI, DistributedModel
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    cconv.set_num_threads(1)

    # 1. LeNet-5, Adam, shuffled: rank 1 starts from other weights (the broadcast must fix
    #    that); np.random is seeded differently per rank (only rank 0's order may count).
    x, y = main_data()
    model = lenet()
    if rank != 0:
        model.set_weights([w + 1.0 for w in model.get_weights()])
    dmodel = DistributedModel(model)
    np.random.seed(7 if rank == 0 else 1000 + rank)
    print(f"[rank {rank}] main: start", flush=True)
    hist = dmodel.fit(x, y, batch_size=PER_RANK_BATCH, epochs=EPOCHS, verbose=2, shuffle=True,
                      validation_data=(x[:20], y[:20]))
    save(outdir, "main", rank, model, hist)

    # 2. The same without shuffling, each rank given only its own samples (sharded=True),
    #    with MPI's blocking allreduce instead of the default sleeping poll.
    model = lenet()
    idx = interleaved_shard(N_MAIN, rank, size, PER_RANK_BATCH)
    hist = DistributedModel(model, wait="block").fit(
        x[idx],
        y[idx],
        batch_size=PER_RANK_BATCH,
        epochs=EPOCHS,
        verbose=0,
        shuffle=False,
        sharded=True,
    )
    save(outdir, "sharded", rank, model, hist)

    # 3. BatchNormalization: local batch statistics, moving statistics averaged over ranks.
    xb, yb = bn_data()
    model = bn_model()
    hist = DistributedModel(model).fit(xb, yb, batch_size=PER_RANK_BATCH, epochs=EPOCHS,
                                       verbose=0, shuffle=False)
    save(outdir, "bn", rank, model, hist)

    # 4. Checkpoints and saves are written by rank 0 alone: any write from another rank fails.
    from cconv import fileio
    if rank != 0:
        def refuse(*args, **kwargs):
            raise RuntimeError(f"rank {rank} tried to write {args[:1]}")
        fileio.atomic_write = refuse
    model = lenet()
    dmodel = DistributedModel(model)
    ck = cconv.callbacks.ModelCheckpoint(os.path.join(outdir, "ckpt-{epoch}.npz"), monitor="loss")
    hist = dmodel.fit(x, y, batch_size=PER_RANK_BATCH, epochs=EPOCHS, verbose=0, shuffle=False,
                      callbacks=[ck])
    dmodel.save(os.path.join(outdir, "final.npz"))
    dmodel.save_weights(os.path.join(outdir, "final-weights.npz"))
    save(outdir, "ckpt", rank, model, hist)
    print(f"[rank {rank}] done", flush=True)


def main_three(outdir):
    """3 ranks: a step that leaves rank 2 without a sample, weight regularizers, confusion
    metrics, validation callbacks."""
    import cconv
    from cconv.distributed import MPI, DistributedModel
    rank = MPI.COMM_WORLD.Get_rank()
    cconv.set_num_threads(1)
    x, y = empty_share_data()
    model = regularized_model()
    rec = _recorder()
    np.random.seed(7 if rank == 0 else 1000 + rank)
    dmodel = DistributedModel(model)
    hist = dmodel.fit(x, y, batch_size=PER_RANK_BATCH, epochs=EPOCHS, verbose=0, shuffle=True,
                      validation_data=(x[:10], y[:10]), callbacks=[rec])
    extra = {f"e{e}_w{i}": w for e, ws in enumerate(rec.epoch_weights) for i, w in enumerate(ws)}
    extra["test_calls"] = np.array(rec.test_calls)
    extra["end_logs"] = np.array([rec.end_logs[k] for k in sorted(rec.end_logs)])
    extra["end_keys"] = np.array(sorted(rec.end_logs))
    extra["eval"] = np.array(dmodel.evaluate(x[:2], y[:2], verbose=0))   # rank 2: no sample
    extra["eval_sharded"] = np.array(dmodel.evaluate(x[rank::3], y[rank::3], verbose=0,
                                                     sharded=True))
    refused = []
    for bad in (dict(x=x, y=y, sharded="yes"), dict(x=iter([(x, y)]))):
        try:
            dmodel.fit(verbose=0, **bad)
        except TypeError as e:
            refused.append(str(e))
    extra["refused"] = np.array(refused)
    assert model.distribution is None          # restored after each call, failed or not
    save(outdir, "empty", rank, model, hist, **extra)

    # The same as a graph (functional) model, without shuffling.
    model = regularized_model(graph=True)
    hist = DistributedModel(model).fit(x, y, batch_size=PER_RANK_BATCH, epochs=EPOCHS,
                                       verbose=0, shuffle=False)
    save(outdir, "graph", rank, model, hist)
    print(f"[rank {rank}] done", flush=True)


if __name__ == "__main__":
    (main_three if sys.argv[2:] == ["three"] else main)(sys.argv[1])
