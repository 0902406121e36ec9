#!/usr/bin/env bash
# Run cconv's kernels under valgrind memcheck and fail on any invalid read, invalid write,
# invalid/mismatched free or use of uninitialised memory inside cconv's own code.
#
#   scripts/memcheck.sh            # scripts/memcheck_driver.py: every kernel, many geometries
#   scripts/memcheck.sh --tests    # also tests/test_inputs.py and tests/test_errors.py
#   scripts/memcheck.sh --asan     # AddressSanitizer build instead (also the AVX-512 paths)
#
# Needs valgrind and an in-place build (python setup.py build_ext --inplace) or an installed
# cconv. PYTHONMALLOC=malloc makes Python's allocations visible to valgrind. The log is kept
# in ${MEMCHECK_LOG:-memcheck.log}.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

if [ "${1:-}" = "--asan" ]; then
    # AddressSanitizer instead of valgrind: covers the AVX-512 paths valgrind cannot run.
    # Builds a copy of the tracked files with -fsanitize=address (gcc) and runs the driver.
    PYA="${PYTHON:-python}"
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/cconv-asan.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
    (cd "$ROOT" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$WORK"
    (cd "$WORK" && CFLAGS="-fsanitize=address -fno-omit-frame-pointer" LDFLAGS="-fsanitize=address" \
        "$PYA" setup.py build_ext --inplace >build.log 2>&1) || { tail -20 "$WORK/build.log"; exit 1; }
    cd "$WORK"
    LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 \
        PYTHONMALLOC=malloc "$PYA" scripts/memcheck_driver.py
    echo "asan: no AddressSanitizer error in the driver's kernel calls"
    exit 0
fi
PY="$("${PYTHON:-python}" -c "import sys; print(sys.executable)")"  # the real binary, not a shim
LOG="${MEMCHECK_LOG:-$ROOT/memcheck.log}"
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
cd "$ROOT"

run() {
    PYTHONMALLOC=malloc OMP_WAIT_POLICY=passive valgrind --tool=memcheck --error-exitcode=0 \
        --leak-check=no --track-origins=no --num-callers=30 --log-file="$LOG.part" "$PY" "$@"
    cat "$LOG.part" >> "$LOG"
    rm -f "$LOG.part"
}

: > "$LOG"
run scripts/memcheck_driver.py
if [ "${1:-}" = "--tests" ]; then
    run -m pytest -q -p no:cacheprovider tests/test_inputs.py tests/test_errors.py
fi

# Count error blocks by kind and by where they are: cconv's own code on the stack (conv.c,
# pool.c, parallel.c, cconv/_ext), glibc's dynamic loader (valgrind flags its optimised
# strncmp reading past an rpath string while modules load), or elsewhere. The run fails on
# any block in cconv and on any invalid access outside the loader; uninitialised-value
# reports inside CPython itself (e.g. int.from_bytes) are listed but do not fail it.
counts=$(awk '
    function flush() {
        if (kind != "") {
            where = hit ? " in cconv" : (ld ? " in the dynamic loader" : " elsewhere")
            n[kind where]++
        }
        kind = ""
    }
    /==[0-9]+== (Invalid (read|write|free)|Mismatched free|Source and destination overlap)/ { flush(); kind = "invalid"; hit = 0; ld = 0; next }
    /==[0-9]+== (Conditional jump|Use of uninitialised|Syscall param.*uninitialised)/ { flush(); kind = "uninitialised"; hit = 0; ld = 0; next }
    kind != "" && /cconv\/_ext|[( ]conv\.c:|[( ]pool\.c:|[( ]parallel\.c:/ { hit = 1 }
    kind != "" && /\(dl-(load|open|deps|lookup|reloc)\.c:/ { ld = 1 }
    kind != "" && /^==[0-9]+== $/ { flush() }
    END { flush(); for (k in n) print k ": " n[k] }' "$LOG" | sort)
# fail on: anything with cconv on the stack, and any invalid access outside the loader
in_cconv=$(printf '%s\n' "$counts" | awk -F': ' '/in cconv|^invalid elsewhere/ {s += $2} END {print s + 0}')
summary=$(grep "ERROR SUMMARY" "$LOG" | sed 's/^==[0-9]*== //')
echo "valgrind memcheck, error blocks by kind (${counts:+see below}):"
printf '%s\n' "${counts:-none}" | sed 's/^/  /'
echo "$summary"
if [ "$in_cconv" != 0 ]; then
    echo "memcheck: $in_cconv error(s) in cconv or invalid accesses outside the loader; see $LOG" >&2
    exit 1
fi
echo "memcheck: no invalid read/write/free and no uninitialised use in cconv's code"
exit 0
