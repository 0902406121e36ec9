"""Data-parallel scaling: LeNet-5 training images/s with 1 and 2 MPI ranks.

    python benchmarks/scaling.py                 # launches mpirun -n 1 and -n 2 itself
    python benchmarks/scaling.py --ranks 1 2 4 --batch 64 --images 4096

Each rank uses ONE cconv thread (``cconv.set_num_threads(1)``) and a per-rank batch of
``--batch`` images (so 2 ranks train on a global batch twice as large: weak scaling, the
usual way data parallelism is used); each rank's epoch is ``--images`` random 28x28 images.
After a warm-up epoch, ``--epochs`` epochs are timed between barriers. Reported per run:

* images/s: all ranks' images / wall time;
* step ms: wall time / steps;
* wait: ``DistributedModel(wait=...)``: "poll" sleeps while it waits, "block" spins in MPI;
* speedup: against the plain single-process fit;
* comm ms/step: time inside the per-step allreduce, as rank 0 sees it (includes waiting for
  the slower rank) and its share of a step;
* compute ms: step ms - comm ms on rank 0 (forward, backward, optimizer; it grows when the
  ranks compete with other processes for the cores);
* pure allreduce ms: the same allreduce (gradient buffer + loss/metric slots) timed alone
  after a barrier, i.e. the cost of moving the data without load imbalance.

Measured on the shared 2-core development machine (load average about 4 from other work, so
two ranks got about one core between them): plain 4,700-5,800 images/s; 1 rank about the
same; 2 ranks 4,100 (poll, 23-25 % of a step in the allreduce, ~0.4 ms of it moving data)
and 2,500-3,400 (block, 45-49 %). Run it on idle cores for scaling numbers.

A plain single-process ``Sequential.fit`` (no MPI) is measured too, as the baseline for the
wrapper's own overhead. Output: a table, and JSON with ``--json FILE``.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:          # run from a checkout without installing
    sys.path.insert(0, ROOT)


def _data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return x, y


def plain(args):
    """Single process, no MPI: the baseline."""
    import cconv
    cconv.set_num_threads(1)
    x, y = _data(args.images, 0)
    model = cconv.models.lenet5()
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)           # warm-up
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, verbose=0)
    dt = time.perf_counter() - t0
    steps = -(-args.images // args.batch) * args.epochs
    return {"ranks": "plain", "images_per_s": args.images * args.epochs / dt,
            "step_ms": dt / steps * 1e3, "comm_ms": 0.0, "comm_share": 0.0, "pure_allreduce_ms": 0.0}


def worker(args):
    import cconv
    from cconv.distributed import MPI, DistributedModel
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    cconv.set_num_threads(1)
    x, y = _data(args.images, rank)
    dmodel = DistributedModel(cconv.models.lenet5(), wait=args.wait[0])
    dmodel.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, sharded=True)   # warm-up
    dmodel.comm_time, dmodel.steps = 0.0, 0
    comm.Barrier()
    t0 = time.perf_counter()
    dmodel.fit(x, y, batch_size=args.batch, epochs=args.epochs, verbose=0, sharded=True)
    comm.Barrier()
    dt = time.perf_counter() - t0
    steps = dmodel.steps
    # The bare allreduce of the same buffer, ranks aligned by a barrier before each call.
    buf = dmodel.step_buffer.copy()
    reps, pure = 50, 0.0
    for _ in range(reps):
        comm.Barrier()
        t = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        pure += time.perf_counter() - t
    comm_ms = dmodel.comm_time / steps * 1e3
    res = {"ranks": size, "images_per_s": args.images * size * args.epochs / dt,
           "step_ms": dt / steps * 1e3, "comm_ms": comm_ms, "comm_share": dmodel.comm_time / dt,
           "pure_allreduce_ms": pure / reps * 1e3, "buffer_floats": int(buf.size)}
    if rank == 0 and args.json:
        with open(args.json, "w") as f:
            json.dump(res, f)


def mpirun_cmd(n):
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if mpirun is None:
        sys.exit("mpirun not found: install OpenMPI (apt-get install openmpi-bin libopenmpi-dev) and mpi4py")
    cmd = [mpirun, "-n", str(n)]
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version:
        cmd.append("--oversubscribe")
        if os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
    return cmd


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=64, help="images per rank and step")
    p.add_argument("--images", type=int, default=4096, help="images per rank and epoch")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs")
    p.add_argument("--wait", nargs="+", default=["poll", "block"], choices=["poll", "block"],
                   help="DistributedModel(wait=...) modes to measure")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    load0 = os.getloadavg()[0]
    rows = [plain(args)]
    with tempfile.TemporaryDirectory() as tmp:
        for wait in args.wait:
            for n in args.ranks:
                out = os.path.join(tmp, f"r{n}.json")
                cmd = mpirun_cmd(n) + [sys.executable, "-m", "mpi4py", os.path.abspath(__file__), "--worker",
                                       "--batch", str(args.batch), "--images", str(args.images),
                                       "--epochs", str(args.epochs), "--wait", wait, "--json", out]
                subprocess.run(cmd, check=True, env=env, timeout=600)
                with open(out) as f:
                    rows.append(dict(json.load(f), wait=wait))
    base = rows[0]["images_per_s"]             # plain single-process fit
    print(f"LeNet-5 fit, 28x28x1, batch {args.batch} per rank, {args.images} images per rank and epoch, "
          f"1 cconv thread per rank, {os.cpu_count()} cores, load average before {load0:.2f}, after "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'ranks':>6} {'wait':>5} {'images/s':>10} {'speedup':>8} {'step ms':>8} {'compute ms':>10} {'comm ms':>8} "
          f"{'comm %':>7} {'pure allreduce ms':>18}")
    for r in rows:
        print(f"{r['ranks']!s:>6} {r.get('wait', '-'):>5} {r['images_per_s']:>10,.0f} {r['images_per_s'] / base:>7.2f}x {r['step_ms']:>8.2f} "
              f"{r['step_ms'] - r['comm_ms']:>10.2f} {r['comm_ms']:>8.2f} {100 * r['comm_share']:>6.1f}% "
              f"{r['pure_allreduce_ms']:>18.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
