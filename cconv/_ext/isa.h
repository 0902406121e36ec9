/* cconv/_ext/isa.h -- the one place that knows about compilers and instruction sets.
 *
 * Compiler portability: CCONV__RESTRICT, CCONV__UNUSED, CCONV__TLS, CCONV__UNROLL.
 *
 * Instruction sets: on x86-64 with GCC/Clang (not Apple) the kernels are compiled three times,
 * for AVX-512 (F+VL), AVX2+FMA and the baseline (SSE2), with the target attributes
 * CCONV__ATTR_AVX512 / CCONV__ATTR_AVX2, and one is picked at run time (CCONV__X86 is defined
 * then). Elsewhere only the baseline exists (GCC/Clang generic vectors, or plain C).
 *
 * The level in use is decided once, when the module is loaded: the best the CPU supports,
 * capped by the environment variable CCONV_ISA ("generic", "avx2" or "avx512"; unset or empty:
 * automatic; any other value is ignored and cconv warns at import). cconv.isa() reports it.
 *
 *   cconv__isa()              level in use: CCONV_ISA_GENERIC, CCONV_ISA_AVX2, CCONV_ISA_AVX512
 *   cconv_isa_name(level)     "generic", "avx2", "avx512" (NULL outside 0 .. 2)
 *   cconv_isa_env_status()    CCONV_ISA was: 0 unset or empty, 1 valid, -1 invalid
 *   CCONV_ISA_DEFINE_ALL(DEFINE, SUF, T)  DEFINE(SUF_<isa>, T, ATTR, vector bytes) per level
 *   CCONV_ISA_DISPATCH(NAME, SUF, ARGS)   calls NAME_SUF_<isa> ARGS for the level in use
 *
 * Test hook: cconv_gemm_force_isa(level) caps the level further (-1 = no cap); a plain global
 * of the including translation unit. */
#ifndef CCONV_ISA_H
#define CCONV_ISA_H

#include <stdlib.h>
#include <string.h>

/* CCONV_GEMM_PORTABLE: build only the plain-C path (what MSVC gets); used to test it with gcc. */
#if defined(__GNUC__) && !defined(CCONV_GEMM_PORTABLE)
#define CCONV__GNUVEC 1
#endif
#if defined(CCONV__GNUVEC) && defined(__x86_64__) && !defined(__APPLE__) \
    && !defined(CCONV_GEMM_NO_DISPATCH)
#define CCONV__X86 1
#include <immintrin.h>
#define CCONV__ATTR_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define CCONV__ATTR_AVX2 __attribute__((target("avx2,fma")))
#endif

#if defined(__GNUC__)
#define CCONV__RESTRICT __restrict__
#define CCONV__UNUSED __attribute__((unused))
#define CCONV__TLS __thread
#if defined(__clang__)
#define CCONV__UNROLL _Pragma("unroll")
#else
#define CCONV__UNROLL _Pragma("GCC unroll 32")
#endif
#elif defined(_MSC_VER)
#define CCONV__RESTRICT __restrict
#define CCONV__UNUSED
#define CCONV__TLS __declspec(thread)
#define CCONV__UNROLL
#else
#define CCONV__RESTRICT
#define CCONV__UNUSED
#define CCONV__TLS _Thread_local
#define CCONV__UNROLL
#endif

#define CCONV_ISA_GENERIC 0
#define CCONV_ISA_AVX2 1
#define CCONV_ISA_AVX512 2

static int cconv__isa_level = -1;  /* decided once (cconv__isa_init) */
static int cconv__isa_env = 0;     /* CCONV_ISA: 0 unset or empty, 1 valid, -1 invalid */
static int cconv__force_isa = -1;  /* test hook: cap (-1 = none) */

CCONV__UNUSED static const char *cconv_isa_name(int level)
{
    static const char *const names[3] = {"generic", "avx2", "avx512"};
    return level >= 0 && level < 3 ? names[level] : NULL;
}

/* The best level this CPU runs. */
CCONV__UNUSED static int cconv__isa_cpu(void)
{
    int lvl = CCONV_ISA_GENERIC;
#ifdef CCONV__X86
    __builtin_cpu_init(); /* may run from a constructor, before the compiler's own init */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        lvl = CCONV_ISA_AVX512;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        lvl = CCONV_ISA_AVX2;
#endif
    return lvl;
}

CCONV__UNUSED static void cconv__isa_init(void)
{
    const char *env = getenv("CCONV_ISA");
    int lvl = cconv__isa_cpu(), want = -1, i;
    if (env && *env) {
        for (i = 0; i < 3; i++)
            if (!strcmp(env, cconv_isa_name(i))) want = i;
        cconv__isa_env = want >= 0 ? 1 : -1;
    }
    cconv__isa_level = want >= 0 && want < lvl ? want : lvl;
}

#if defined(__GNUC__)
/* Decide when the module is loaded, before any OpenMP thread can ask. */
__attribute__((constructor)) static void cconv__isa_load(void) { cconv__isa_init(); }
#endif

CCONV__UNUSED static inline int cconv__isa(void)
{
    int lvl = cconv__isa_level;
    if (lvl < 0) { /* compilers without constructors: the first call decides */
        cconv__isa_init();
        lvl = cconv__isa_level;
    }
    return cconv__force_isa >= 0 && cconv__force_isa < lvl ? cconv__force_isa : lvl;
}

CCONV__UNUSED static int cconv_isa_level(void) { return cconv__isa(); }

CCONV__UNUSED static int cconv_isa_env_status(void)
{
    cconv__isa();
    return cconv__isa_env;
}

/* DEFINE(SUFFIX, T, ATTR, VB) once per level, VB being the vector width in bytes. */
#if defined(CCONV__X86)
#define CCONV_ISA_DEFINE_ALL(DEFINE, SUF, T)                                                   \
    DEFINE(SUF##_avx512, T, CCONV__ATTR_AVX512, 64)                                            \
    DEFINE(SUF##_avx2, T, CCONV__ATTR_AVX2, 32)                                                \
    DEFINE(SUF##_base, T, , 16)
#define CCONV_ISA_DISPATCH(NAME, SUF, ARGS)                                                    \
    do {                                                                                       \
        int lvl_ = cconv__isa();                                                               \
        if (lvl_ >= CCONV_ISA_AVX512) NAME##_##SUF##_avx512 ARGS;                              \
        else if (lvl_ == CCONV_ISA_AVX2) NAME##_##SUF##_avx2 ARGS;                             \
        else NAME##_##SUF##_base ARGS;                                                         \
    } while (0)
#else
#define CCONV_ISA_DEFINE_ALL(DEFINE, SUF, T) DEFINE(SUF##_base, T, , 16)
#define CCONV_ISA_DISPATCH(NAME, SUF, ARGS) NAME##_##SUF##_base ARGS
#endif

#endif /* CCONV_ISA_H */
