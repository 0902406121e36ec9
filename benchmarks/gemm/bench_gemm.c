/* Correctness checks and single-thread speed of cconv/_ext/gemm.h.
 *
 * Build and run (from the repository root):
 *   gcc -O3 -fopenmp -o /tmp/bench_gemm benchmarks/gemm/bench_gemm.c -lm && /tmp/bench_gemm
 *
 * Options: --check-only, --bench-only, --time SECONDS (per shape and type, default 0.15),
 *          --shape M N K TRANSA TRANSB (time just that shape),
 *          --isa LEVEL (benchmark a lower ISA path: 0 generic, 1 AVX2+FMA, 2 AVX-512).
 * Every ISA path this CPU supports is checked (AVX-512, AVX2, generic); the benchmark uses the
 * path the automatic dispatch picks.
 */
#define CCONV_GEMM_TESTING 1
#include "../../cconv/_ext/gemm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static int failures = 0;

/* Reference in long double; error bound from |alpha| sum|a||b| + |beta c|. Returns 1 if ok. */
#define DEF_CHECK(T, S, GEMM, EPS)                                                                  \
    static int check_##S(int ta, int tb, int64_t M, int64_t N, int64_t K, T alpha, T beta,         \
                         int64_t pad, int offset, const char *isa)                                  \
    {                                                                                               \
        int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;                  \
        int64_t ra = ta ? K : M, rb = tb ? N : K;                                                   \
        T *A = (T *)malloc(sizeof(T) * (size_t)(ra * lda + 1 + offset));                            \
        T *B = (T *)malloc(sizeof(T) * (size_t)(rb * ldb + 1 + offset));                            \
        T *C = (T *)malloc(sizeof(T) * (size_t)(M * ldc + 1 + offset));                             \
        T *C0 = (T *)malloc(sizeof(T) * (size_t)(M * ldc + 1));                                     \
        T *a = A + offset, *b = B + offset, *c = C + offset;                                        \
        int64_t i, j, k, bad = 0;                                                                   \
        for (i = 0; i < ra * lda; i++) a[i] = (T)urand();                                           \
        for (i = 0; i < rb * ldb; i++) b[i] = (T)urand();                                           \
        for (i = 0; i < M * ldc; i++) C0[i] = beta == 0 ? (T)NAN : (T)urand();                      \
        memcpy(c, C0, sizeof(T) * (size_t)(M * ldc));                                               \
        GEMM(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);                                 \
        for (i = 0; i < M && bad < 5; i++)                                                          \
            for (j = 0; j < ldc && bad < 5; j++) {                                                  \
                long double s = 0, sa = 0, ref, tol;                                                \
                T got = c[i * ldc + j];                                                             \
                if (j >= N) { /* padding of C must be untouched */                                  \
                    if (memcmp(&got, &C0[i * ldc + j], sizeof(T))) bad++;                           \
                    continue;                                                                       \
                }                                                                                   \
                for (k = 0; k < K; k++) {                                                           \
                    long double x = a[ta ? k * lda + i : i * lda + k];                              \
                    long double y = b[tb ? j * ldb + k : k * ldb + j];                              \
                    s += x * y;                                                                     \
                    sa += fabsl(x * y);                                                             \
                }                                                                                   \
                ref = (long double)alpha * s + (beta == 0 ? 0 : (long double)beta * C0[i * ldc + j]); \
                tol = (long double)(2 * K + 4) * EPS *                                              \
                      (fabsl((long double)alpha) * sa + (beta == 0 ? 0 : fabsl((long double)beta * C0[i * ldc + j]))) + 1e-30L; \
                if (!(fabsl((long double)got - ref) <= tol)) {                                      \
                    if (bad < 3)                                                                    \
                        printf("  MISMATCH %s %s ta=%d tb=%d M=%lld N=%lld K=%lld pad=%lld beta=%g at (%lld,%lld): got %.9g want %.9Lg\n", \
                               #S, isa, ta, tb, (long long)M, (long long)N, (long long)K,           \
                               (long long)pad, (double)beta, (long long)i, (long long)j, (double)got, ref); \
                    bad++;                                                                          \
                }                                                                                   \
            }                                                                                       \
        free(A); free(B); free(C); free(C0);                                                        \
        if (bad) failures++;                                                                        \
        return bad == 0;                                                                            \
    }
DEF_CHECK(float, s, cconv_sgemm, 5.96e-8L)
DEF_CHECK(double, d, cconv_dgemm, 1.12e-16L)

/* Same inputs at different alignments, and concurrently from several threads: bitwise equal. */
static void check_determinism(void)
{
    const int64_t M = 77, N = 45, K = 300;
    float *A = malloc(sizeof(float) * (M * K + 16)), *B = malloc(sizeof(float) * (K * N + 16));
    float *ref = malloc(sizeof(float) * M * N), *C = malloc(sizeof(float) * (M * N + 16));
    int off, t, bad = 0;
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)urand();
    for (int64_t i = 0; i < K * N; i++) B[i] = (float)urand();
    cconv_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, ref, N);
    for (off = 1; off < 16; off += 3) {
        memmove(A + off, A, sizeof(float) * M * K);
        memmove(B + off, B, sizeof(float) * K * N);
        cconv_sgemm(0, 0, M, N, K, 1.0f, A + off, K, B + off, N, 0.0f, C + off, N);
        if (memcmp(C + off, ref, sizeof(float) * M * N)) {
            bad++;
            printf("  result differs with operands offset by %d floats\n", off);
        }
        memmove(A, A + off, sizeof(float) * M * K);
        memmove(B, B + off, sizeof(float) * K * N);
    }
    {
        int nt = 32; /* one C per call: calls may share A and B, never C */
        float *Cs = malloc(sizeof(float) * M * N * nt);
#pragma omp parallel for num_threads(4) schedule(dynamic, 1)
        for (t = 0; t < nt; t++)
            cconv_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, Cs + t * M * N, N);
        for (t = 0; t < nt; t++)
            if (memcmp(Cs + t * M * N, ref, sizeof(float) * M * N)) {
                bad++;
                printf("  result differs in concurrent call %d\n", t);
            }
        free(Cs);
    }
    printf("  determinism (alignment, 4 threads): %s\n", bad ? "FAILED" : "ok");
    failures += bad != 0;
    free(A); free(B); free(ref); free(C);
}

/* NaN/Inf in A or B must propagate even when alpha == 0 and into padded tiles. */
static void check_nan(void)
{
    const int64_t M = 13, N = 33, K = 5;
    float A[13 * 5], B[5 * 33], C[13 * 33];
    int bad = 0;
    for (int i = 0; i < M * K; i++) A[i] = 1.0f;
    for (int i = 0; i < K * N; i++) B[i] = 1.0f;
    A[12 * K + 2] = NAN;          /* row 12 -> NaN */
    B[1 * N + 32] = INFINITY;     /* column 32 -> Inf (or NaN in row 12) */
    cconv_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    for (int j = 0; j < N; j++) bad += !isnan(C[12 * N + j]);
    for (int i = 0; i < 12; i++) bad += !(isinf(C[i * N + 32]) && C[i * N + 32] > 0);
    for (int i = 0; i < 12; i++) bad += C[i * N + 0] != 5.0f;
    cconv_sgemm(0, 0, M, N, K, 0.0f, A, K, B, N, 0.0f, C, N); /* 0 * NaN = NaN */
    for (int j = 0; j < N; j++) bad += !isnan(C[12 * N + j]);
    bad += C[0] != 0.0f;
    printf("  NaN/Inf propagation: %s\n", bad ? "FAILED" : "ok");
    failures += bad != 0;
}

static void run_checks(void)
{
    static const int64_t sizes[] = {1, 2, 7, 12, 13, 17, 33, 65};
    static const float betas[] = {0.0f, 1.0f, 0.5f};
    int level, maxlevel = cconv_gemm_force_isa(-1);
    for (level = maxlevel; level >= 0; level--) {
        int n = 0, ok = 0;
        cconv_gemm_force_isa(level);
        printf("checking ISA path %s\n", cconv_gemm_isa_name());
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int im = 0; im < 8; im++)
                    for (int in = 0; in < 8; in++) {
                        int64_t M = sizes[im], N = sizes[in], K = sizes[(im * 3 + in * 5 + ta + 2 * tb) % 8];
                        float beta = betas[(im + in + ta) % 3];
                        int64_t pad = (im + in) % 2 ? 3 : 0;
                        ok += check_s(ta, tb, M, N, K, 1.0f, beta, pad, (im + in) % 5, cconv_gemm_isa_name());
                        ok += check_d(ta, tb, M, N, K, -1.5, (double)beta, pad, in % 3, cconv_gemm_isa_name());
                        n += 2;
                    }
        /* large: several depth blocks, several column blocks, many row panels, ragged edges */
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                ok += check_s(ta, tb, 61, 1000, 1000, 0.75f, 0.5f, 5, 1, cconv_gemm_isa_name());
                ok += check_d(ta, tb, 37, 777, 1001, 1.0, 0.0, 1, 1, cconv_gemm_isa_name());
                ok += check_s(ta, tb, 3136 / 4, 6, 25, 1.0f, 0.0f, 0, 0, cconv_gemm_isa_name());
                ok += check_s(ta, tb, 65, 7, 4100, 1.0f, 1.0f, 2, 0, cconv_gemm_isa_name());
                ok += check_d(ta, tb, 7, 1, 3000, 1.0, 1.0, 0, 0, cconv_gemm_isa_name());
                n += 5;
            }
        /* degenerate sizes: K == 0 scales C, M or N == 0 is a no-op */
        for (int ta = 0; ta < 2; ta++) {
            ok += check_s(ta, 1, 9, 17, 0, 1.0f, 0.0f, 1, 0, cconv_gemm_isa_name());
            ok += check_s(ta, 0, 9, 17, 0, 1.0f, 0.5f, 0, 0, cconv_gemm_isa_name());
            ok += check_d(ta, 0, 0, 17, 5, 1.0, 0.5, 0, 0, cconv_gemm_isa_name());
            ok += check_d(ta, 1, 9, 0, 5, 1.0, 0.5, 0, 0, cconv_gemm_isa_name());
            n += 4;
        }
        printf("  %d/%d cases ok\n", ok, n);
        check_nan();
    }
    cconv_gemm_force_isa(-1);
    check_determinism();
}

/* ------------------------------------------------------------------------------------------ */
static const struct { int64_t M, N, K; int ta, tb; } SHAPES[] = {
    /* keep in sync with compare_numpy.py */
    {3136, 64, 576, 0, 0},  {3136, 576, 64, 0, 1}, {576, 64, 3136, 1, 0}, {784, 16, 150, 0, 0},
    {784, 6, 25, 0, 0},     {1024, 32, 27, 0, 0},  {169, 64, 288, 0, 0},  {784, 96, 864, 0, 0},
    {256, 256, 256, 0, 0},  {1024, 1024, 1024, 0, 0},
};

#define DEF_BENCH(T, S, GEMM)                                                                       \
    static double bench_##S(int64_t M, int64_t N, int64_t K, int ta, int tb, double min_time)      \
    {                                                                                               \
        T *A = malloc(sizeof(T) * M * K), *B = malloc(sizeof(T) * K * N), *C = malloc(sizeof(T) * M * N); \
        double best = 1e30, t_end;                                                                  \
        int64_t reps = 1, i;                                                                        \
        for (i = 0; i < M * K; i++) A[i] = (T)urand();                                              \
        for (i = 0; i < K * N; i++) B[i] = (T)urand();                                              \
        GEMM(ta, tb, M, N, K, 1, A, ta ? M : K, B, tb ? K : N, 0, C, N);                            \
        t_end = omp_get_wtime() + min_time;                                                         \
        for (;;) {                                                                                  \
            double t0 = omp_get_wtime(), dt;                                                        \
            for (i = 0; i < reps; i++) GEMM(ta, tb, M, N, K, 1, A, ta ? M : K, B, tb ? K : N, 0, C, N); \
            dt = (omp_get_wtime() - t0) / reps;                                                     \
            if (dt < best) best = dt;                                                               \
            if (omp_get_wtime() > t_end) break;                                                     \
            if (dt * reps < 0.01) reps *= 2;                                                        \
        }                                                                                           \
        free(A); free(B); free(C);                                                                  \
        return 2.0 * M * N * K / best * 1e-9;                                                       \
    }
DEF_BENCH(float, s, cconv_sgemm)
DEF_BENCH(double, d, cconv_dgemm)

int main(int argc, char **argv)
{
    int do_check = 1, do_bench = 1;
    double t = 0.15;
    int64_t custom[5];
    int ncustom = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check-only")) do_bench = 0;
        else if (!strcmp(argv[i], "--bench-only")) do_check = 0;
        else if (!strcmp(argv[i], "--time") && i + 1 < argc) t = atof(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) cconv_gemm_force_isa(atoi(argv[++i]));
        else if (!strcmp(argv[i], "--shape") && i + 5 < argc) {
            for (int j = 0; j < 5; j++) custom[j] = atoll(argv[++i]);
            ncustom = 1;
            do_check = 0;
        }
    }
    if (do_check) {
        int forced = cconv_gemm_force_isa(-1);
        run_checks();
        cconv_gemm_force_isa(forced);
    }
    if (ncustom) {
        printf("%lldx%lldx%lld ta=%d tb=%d: f32 %.1f GF/s, f64 %.1f GF/s (%s)\n", (long long)custom[0],
               (long long)custom[1], (long long)custom[2], (int)custom[3], (int)custom[4],
               bench_s(custom[0], custom[1], custom[2], (int)custom[3], (int)custom[4], t),
               bench_d(custom[0], custom[1], custom[2], (int)custom[3], (int)custom[4], t), cconv_gemm_isa_name());
        do_bench = 0;
    }
    if (do_bench) {
        printf("# cconv gemm.h, single thread, ISA path %s\n", cconv_gemm_isa_name());
        printf("%-22s %-3s %10s %10s\n", "M x N x K", "op", "f32 GF/s", "f64 GF/s");
        for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
            double g32 = bench_s(SHAPES[s].M, SHAPES[s].N, SHAPES[s].K, SHAPES[s].ta, SHAPES[s].tb, t);
            double g64 = bench_d(SHAPES[s].M, SHAPES[s].N, SHAPES[s].K, SHAPES[s].ta, SHAPES[s].tb, t);
            char shape[64];
            snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)SHAPES[s].M,
                     (long long)SHAPES[s].N, (long long)SHAPES[s].K);
            printf("%-22s %c%c  %10.1f %10.1f\n", shape, SHAPES[s].ta ? 'T' : 'N', SHAPES[s].tb ? 'T' : 'N', g32, g64);
            fflush(stdout);
        }
    }
    if (failures) printf("FAILURES: %d\n", failures);
    return failures != 0;
}
