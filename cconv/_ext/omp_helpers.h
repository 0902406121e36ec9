/* OpenMP as a compile-time switch: without OpenMP the few runtime calls cconv uses become
   serial stubs, so every kernel still compiles and runs on one thread. */
#ifndef CCONV_OMP_HELPERS_H
#define CCONV_OMP_HELPERS_H

#ifdef _OPENMP
#include <omp.h>
#define CCONV_OPENMP 1
#else
#define CCONV_OPENMP 0
#endif

/* GNU OpenMP (libgomp, what GCC links): after fork its thread pool is stale (no atfork
   handler), so a forked child cannot run a parallel region of more than one thread. */
#if defined(_OPENMP) && defined(__GNUC__) && !defined(__clang__)
#define CCONV_GNU_OPENMP 1
#else
#define CCONV_GNU_OPENMP 0
#endif

#ifndef _OPENMP
static int omp_get_max_threads(void) { return 1; }
static int omp_get_num_procs(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
#endif

#endif
