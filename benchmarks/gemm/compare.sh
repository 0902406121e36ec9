#!/bin/bash
# Interleaved cconv-vs-NumPy comparison (fair on a shared machine): for each shape, ROUNDS
# alternating runs of bench_gemm and compare_numpy.py; prints a markdown table of the best
# GFLOP/s per cell.   Usage: bash benchmarks/gemm/compare.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
bin=${TMPDIR:-/tmp}/bench_gemm_cmp
gcc -O3 -fopenmp -o "$bin" benchmarks/gemm/bench_gemm.c -lm
raw=$(mktemp)
shapes=("3136 64 576 0 0" "3136 576 64 0 1" "576 64 3136 1 0" "784 16 150 0 0" "784 6 25 0 0"
        "1024 32 27 0 0" "169 64 288 0 0" "784 96 864 0 0" "256 256 256 0 0" "1024 1024 1024 0 0")
for sh in "${shapes[@]}"; do
  for ((r = 0; r < rounds; r++)); do
    "$bin" --shape $sh --time 0.1 | sed -E "s/.*f32 ([0-9.]+).*f64 ([0-9.]+).*/$sh me \1 \2/" >> "$raw"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
      python3 benchmarks/gemm/compare_numpy.py --shape $sh | tail -1 | awk -v s="$sh" '{print s, "np", $3, $4}' >> "$raw"
  done
done
python3 - "$raw" <<'PY'
import sys
d = {}
for line in open(sys.argv[1]):
    f = line.split()
    e = d.setdefault(tuple(f[:5]), {})
    o = e.get(f[5], (0.0, 0.0))
    e[f[5]] = (max(o[0], float(f[6])), max(o[1], float(f[7])))
print("| M x N x K | op | cconv f32 | NumPy f32 | ratio | cconv f64 | NumPy f64 | ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for k, e in d.items():
    (a, b), (c, g) = e["me"], e["np"]
    op = ("T" if k[3] == "1" else "N") + ("T" if k[4] == "1" else "N")
    print(f"| {k[0]}x{k[1]}x{k[2]} | {op} | {a:.1f} | {c:.1f} | {a/c:.2f} | {b:.1f} | {g:.1f} | {b/g:.2f} |")
PY
rm -f "$raw"
