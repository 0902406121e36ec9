"""Data-parallel training of LeNet-5 over MPI, one process per rank.

    mpirun -n 2 python examples/train_mpi.py
    # as root (containers, CI):  mpirun --allow-run-as-root --oversubscribe -n 2 python examples/train_mpi.py
    # optional: python -m mpi4py examples/train_mpi.py aborts every rank if one raises

Every rank loads the same digits (scikit-learn's 8x8 digits laid out as 28x28, like MNIST;
random data when scikit-learn is missing) and wraps the same model; each step trains on
32 samples per rank, with one allreduce of the gradients. Rank 0 prints the progress bar and
the global metrics; at the end every rank checks it holds the same weights.
"""
import numpy as np

import cconv
from cconv.distributed import MPI, DistributedModel


def load():
    try:
        return cconv.datasets.load_digits(upsample=3, pad=2)
    except ImportError:
        rng = np.random.default_rng(0)
        x = rng.random((1600, 28, 28, 1), dtype=np.float32)
        y = cconv.datasets.to_categorical(rng.integers(0, 10, 1600), 10)
        return (x[:1280], y[:1280]), (x[1280:], y[1280:])


def main():
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    cconv.set_num_threads(1)           # one core per rank; raise it when ranks own more cores
    (x, y), (x_test, y_test) = load()
    model = cconv.models.lenet5()      # Adam, categorical cross-entropy, accuracy
    dmodel = DistributedModel(model)   # rank 0's weights on every rank
    if rank == 0:
        print(f"{size} ranks, {x.shape[0]} training images, batch 32 per rank "
              f"({32 * size} per step)", flush=True)
    np.random.seed(0)
    dmodel.fit(x, y, batch_size=32, epochs=3, validation_data=(x_test, y_test), verbose=2)
    loss, acc = dmodel.evaluate(x_test, y_test, verbose=0)
    # Every rank compares its weights with rank 0's.
    mine = np.concatenate([w.ravel() for w in model.get_weights()])
    root = comm.bcast(mine if rank == 0 else None, root=0)
    same = comm.allreduce(int(np.array_equal(mine, root)), op=MPI.MIN)
    if rank == 0:
        print(f"test loss {loss:.4f} - test accuracy {acc:.4f}")
        print(f"weights identical on all {size} ranks: {bool(same)}")
        print(f"allreduce time: {dmodel.comm_time:.2f}s over {dmodel.steps} steps "
              f"({dmodel.comm_time / max(dmodel.steps, 1) * 1e3:.2f} ms/step)")


if __name__ == "__main__":
    main()
