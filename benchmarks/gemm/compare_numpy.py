"""Print NumPy's (OpenBLAS) GFLOP/s for the shapes bench_gemm.c measures.

Run single-threaded so the numbers are comparable with the single-threaded C GEMM:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python benchmarks/gemm/compare_numpy.py

(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset so OpenBLAS picks its own best kernel for this CPU.)
`--shape M N K TRANSA TRANSB` times just that shape.
"""
import sys
import time

import numpy as np

# (M, N, K, transa, transb) -- keep in sync with SHAPES in bench_gemm.c
SHAPES = [
    (3136, 64, 576, 0, 0),
    (3136, 576, 64, 0, 1),
    (576, 64, 3136, 1, 0),
    (784, 16, 150, 0, 0),
    (784, 6, 25, 0, 0),
    (1024, 32, 27, 0, 0),
    (169, 64, 288, 0, 0),
    (784, 96, 864, 0, 0),
    (256, 256, 256, 0, 0),
    (1024, 1024, 1024, 0, 0),
]


def bench(M, N, K, ta, tb, dtype, min_time=0.2):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    opA = A.T if ta else A
    opB = B.T if tb else B
    C = np.empty((M, N), dtype=dtype)
    np.matmul(opA, opB, out=C)  # warm up (and let OpenBLAS allocate its buffers)
    reps, best = 1, float("inf")
    t_end = time.perf_counter() + min_time
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            np.matmul(opA, opB, out=C)
        dt = (time.perf_counter() - t0) / reps
        best = min(best, dt)
        if time.perf_counter() > t_end:
            break
        if dt * reps < 0.01:
            reps *= 2
    return 2.0 * M * N * K / best * 1e-9


def main():
    shapes = SHAPES
    if len(sys.argv) == 7 and sys.argv[1] == "--shape":  # --shape M N K TRANSA TRANSB
        shapes = [tuple(int(x) for x in sys.argv[2:7])]
    try:
        from threadpoolctl import threadpool_info
        info = [d for d in threadpool_info() if d.get("user_api") == "blas"]
        if info:
            print("# BLAS: %s %s arch=%s threads=%s" % (info[0].get("internal_api"), info[0].get("version"),
                                                      info[0].get("architecture"), info[0].get("num_threads")))
    except ImportError:
        pass
    print("# numpy %s, python %s" % (np.__version__, sys.version.split()[0]))
    print("%-22s %-3s %10s %10s" % ("M x N x K", "op", "f32 GF/s", "f64 GF/s"))
    for M, N, K, ta, tb in shapes:
        g32 = bench(M, N, K, ta, tb, np.float32)
        g64 = bench(M, N, K, ta, tb, np.float64)
        op = ("T" if ta else "N") + ("T" if tb else "N")
        print("%-22s %-3s %10.1f %10.1f" % ("%dx%dx%d" % (M, N, K), op, g32, g64))


if __name__ == "__main__":
    main()
