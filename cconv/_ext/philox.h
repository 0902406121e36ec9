/* cconv/_ext/philox.h -- Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers:
 * as easy as 1, 2, 3", SC 2011) and the Dropout masks drawn from it.
 *
 * Self-contained plain C (C99): static inline functions, no globals, no other cconv header, so
 * any translation unit (a .pyx, plan_impl.h) may include it. Each function is single-threaded;
 * callers split the elements among threads however they like, because:
 *
 *   element j's mask depends ONLY on (seed, step, j).
 *
 * So two calls on the halves of an array (second one with offset = first's length) equal one
 * call on the whole, and no thread count or chunking changes any mask.
 *
 * The generator. One Philox4x32-10 call maps a 128-bit counter and a 64-bit key to four
 * 32-bit words. Dropout uses
 *     counter = (j / 4 as 64 bits, step as 64 bits)  -> words c0 c1 c2 c3 =
 *               (lo32(j/4), hi32(j/4), lo32(step), hi32(step))
 *     key     = seed                                 -> k0 k1 = (lo32(seed), hi32(seed))
 * and element j takes word j % 4 of its block, w. Its uniform is u = w * 2**-32 in [0, 1)
 * (exact in double) and it is KEPT when u >= rate (TensorFlow's `random >= rate`). That test
 * is done on integers: u >= rate  <=>  w >= ceil(rate * 2**32) (cconv_dropout_threshold), so
 * masks are the same for float32 and float64 data and the same on every compiler.
 *
 * Kept values: y = x * scale with scale = 1 / (1 - rate) computed in double and rounded once
 * to the element type. That is TensorFlow's formula (tf.nn.dropout / stateless_dropout, which
 * Keras 3's default backend calls: `scale = 1 / keep_prob`, converted to x's dtype, then
 * `x * scale`), and what cconv's Dropout computed before. (Keras's NumPy and JAX backends
 * divide, x / (1 - rate), which can differ in the last bit.) Dropped values are exactly 0,
 * also where x is inf or NaN (TensorFlow's `where(keep, x * scale, 0)`).
 *
 * API (rate in [0, 1), a double also for float data, so that a mask does not depend on the
 * dtype; n >= 0; offset >= 0; x may equal y):
 *   cconv_philox4x32_10(ctr[4], key[2], out[4])           one block, the reference function
 *   cconv_dropout_threshold(rate)                         ceil(rate * 2**32), in [0, 2**32]
 *   cconv_dropout_f32(x, y, n, offset, seed, step, rate)  y[i] = keep(offset + i) ? x[i] * scale : 0
 *   cconv_dropout_f64(...)                                the same for double
 *   cconv_dropout_mask_f32(m, n, offset, seed, step, rate) m[i] = keep(offset + i) ? scale : 0
 *   cconv_dropout_mask_f64(...)                           the same for double
 * The backward of dropout is the same function applied to dy with the same (seed, step,
 * offset): dx = keep ? dy * scale : 0.
 *
 * Known answers (Random123's kat_vectors), checked by tests/test_dropout.py:
 *   ctr 0 0 0 0, key 0 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8
 *   ctr 243f6a88 85a308d3 13198a2e 03707344, key a4093822 299f31d0
 *       -> d16cfe09 94fdcceb 5001e420 24126ea1
 */
#ifndef CCONV_PHILOX_H
#define CCONV_PHILOX_H
#include <stdint.h>
#include <string.h>  /* memcpy: the bit select of the stores */

#define CCONV_PHILOX_M0 0xD2511F53u  /* round multipliers */
#define CCONV_PHILOX_M1 0xCD9E8D57u
#define CCONV_PHILOX_W0 0x9E3779B9u  /* Weyl key increments (golden ratio, sqrt(3) - 1) */
#define CCONV_PHILOX_W1 0xBB67AE85u

/* Blocks computed together: 16 independent counters per round let the compiler keep the
 * 32x32->64-bit multiplies in vector registers (pmuludq). 64 elements per batch. */
#define CCONV_PHILOX_LANES 16

#if defined(__GNUC__)
#define CCONV__PHILOX_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define CCONV__PHILOX_RESTRICT __restrict
#else
#define CCONV__PHILOX_RESTRICT
#endif

/* One Philox4x32-10 block: out = Philox(ctr, key). The reference the batched code follows. */
static inline void cconv_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                                       uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    int r;
    for (r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)CCONV_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)CCONV_PHILOX_M1 * c2;
        c0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        c2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        k0 += CCONV_PHILOX_W0;  /* the key bump between rounds (after the last is unused) */
        k1 += CCONV_PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* One round on CCONV_PHILOX_LANES counters held as four word arrays (the same round as
 * cconv_philox4x32_10). A loop of its own over the lanes, so that the compiler vectorises it
 * (one pmuludq per two lanes' products); inside the rounds loop it did not. */
static inline void cconv__philox_round(uint32_t *CCONV__PHILOX_RESTRICT c0,
                                       uint32_t *CCONV__PHILOX_RESTRICT c1,
                                       uint32_t *CCONV__PHILOX_RESTRICT c2,
                                       uint32_t *CCONV__PHILOX_RESTRICT c3,
                                       uint32_t k0, uint32_t k1)
{
    int l;
    for (l = 0; l < CCONV_PHILOX_LANES; l++) {
        uint64_t p0 = (uint64_t)CCONV_PHILOX_M0 * c0[l];
        uint64_t p1 = (uint64_t)CCONV_PHILOX_M1 * c2[l];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[l] ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[l] ^ k1;
        c1[l] = (uint32_t)p1;
        c3[l] = (uint32_t)p0;
        c0[l] = n0;
        c2[l] = n2;
    }
}

/* The words of CCONV_PHILOX_LANES consecutive blocks block0, block0 + 1, ... in element order:
 * words[4 * l + w] = word w of block block0 + l (element 4 * (block0 + l) + w). */
static inline void cconv__philox_words(uint64_t seed, uint64_t step, uint64_t block0,
                                       uint32_t words[4 * CCONV_PHILOX_LANES])
{
    uint32_t c[4][CCONV_PHILOX_LANES];
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    int l, r;
    for (l = 0; l < CCONV_PHILOX_LANES; l++) {
        uint64_t b = block0 + (uint64_t)l;
        c[0][l] = (uint32_t)b;
        c[1][l] = (uint32_t)(b >> 32);
        c[2][l] = (uint32_t)step;
        c[3][l] = (uint32_t)(step >> 32);
    }
    for (r = 0; r < 10; r++) {
        cconv__philox_round(c[0], c[1], c[2], c[3], k0, k1);
        k0 += CCONV_PHILOX_W0;
        k1 += CCONV_PHILOX_W1;
    }
    for (l = 0; l < CCONV_PHILOX_LANES; l++) {
        words[4 * l + 0] = c[0][l];
        words[4 * l + 1] = c[1][l];
        words[4 * l + 2] = c[2][l];
        words[4 * l + 3] = c[3][l];
    }
}

/* ceil(rate * 2**32) for rate in [0, 1): element kept when its word w >= this (u >= rate with
 * u = w * 2**-32). rate * 2**32 is exact in double, so is its ceiling; 2**32 (nothing kept)
 * only for rate within 2**-32 of 1. rate <= 0 (or NaN) gives 0: everything kept. */
static inline uint64_t cconv_dropout_threshold(double rate)
{
    double t;
    if (!(rate > 0.0)) return 0;
    if (rate >= 1.0) return (uint64_t)1 << 32;
    t = rate * 4294967296.0;
    return (uint64_t)t + ((double)(uint64_t)t < t ? 1u : 0u);  /* ceil without libm */
}

/* The loop shared by the four entry points: for each batch of up to 64 elements (16 blocks),
 * the words, then one pass over the batch's part of [offset, offset + n). STORE(i, kept) is
 * the per-element statement: i indexes x/y/m, kept is a 0/1 int. Branch-free so that it
 * vectorises; full batches get a loop of constant length. */
#define CCONV__DROPOUT_LOOP(STORE)                                                             \
    do {                                                                                       \
        uint32_t words_[4 * CCONV_PHILOX_LANES];                                               \
        uint64_t t_ = cconv_dropout_threshold(rate);                                           \
        int64_t j_ = offset, end_ = offset + n, e_;                                            \
        if (t_ > 0xFFFFFFFFu) { /* rate within 2**-32 of 1: nothing is kept */                 \
            for (e_ = 0; e_ < n; e_++) { int64_t i = e_; STORE(i, 0); }                        \
            break;                                                                             \
        }                                                                                      \
        while (j_ < end_) {                                                                    \
            const uint32_t t32_ = (uint32_t)t_;                                                \
            int64_t first_ = (j_ / 4) * 4; /* element 0 of the batch's first block */          \
            int64_t stop_ = first_ + 4 * CCONV_PHILOX_LANES;                                   \
            cconv__philox_words(seed, step, (uint64_t)(j_ / 4), words_);                       \
            if (j_ == first_ && stop_ <= end_) { /* a full batch */                            \
                int64_t base_ = first_ - offset, q_;                                           \
                for (q_ = 0; q_ < 4 * CCONV_PHILOX_LANES; q_++) {                              \
                    int64_t i = base_ + q_;                                                    \
                    STORE(i, words_[q_] >= t32_);                                              \
                }                                                                              \
            } else {                                                                           \
                if (stop_ > end_) stop_ = end_;                                                \
                for (e_ = j_; e_ < stop_; e_++) {                                              \
                    int64_t i = e_ - offset;                                                   \
                    STORE(i, words_[e_ - first_] >= t32_);                                     \
                }                                                                              \
            }                                                                                  \
            j_ = stop_;                                                                        \
        }                                                                                      \
    } while (0)

/* The stores. The product is computed whatever the mask, then its bits are ANDed with an
 * all-ones or all-zeros word (+0.0 when dropped, also for inf or NaN x): branch-free, so it
 * vectorises even without -fno-trapping-math, where `kept ? x * scale : 0` did not. */
#define CCONV__DROP_STORE_F32(i, kept)                                                         \
    {                                                                                          \
        float v_ = x[i] * scale;                                                               \
        uint32_t b_;                                                                           \
        memcpy(&b_, &v_, sizeof b_);                                                           \
        b_ &= (uint32_t)0 - (uint32_t)(kept);                                                  \
        memcpy(&v_, &b_, sizeof b_);                                                           \
        y[i] = v_;                                                                             \
    }
#define CCONV__DROP_STORE_F64(i, kept)                                                         \
    {                                                                                          \
        double v_ = x[i] * scale;                                                              \
        uint64_t b_;                                                                           \
        memcpy(&b_, &v_, sizeof b_);                                                           \
        b_ &= (uint64_t)0 - (uint64_t)(kept);                                                  \
        memcpy(&v_, &b_, sizeof b_);                                                           \
        y[i] = v_;                                                                             \
    }
#define CCONV__MASK_STORE_F32(i, kept) { m[i] = (kept) ? scale : 0.0f; }
#define CCONV__MASK_STORE_F64(i, kept) { m[i] = (kept) ? scale : 0.0; }

/* y[i] = keep(offset + i) ? x[i] * scale : 0 for i in [0, n); x may equal y. */
static inline void cconv_dropout_f32(const float *x, float *y, int64_t n, int64_t offset,
                                     uint64_t seed, uint64_t step, double rate)
{
    const float scale = (float)(1.0 / (1.0 - rate));
    CCONV__DROPOUT_LOOP(CCONV__DROP_STORE_F32);
}

static inline void cconv_dropout_f64(const double *x, double *y, int64_t n, int64_t offset,
                                     uint64_t seed, uint64_t step, double rate)
{
    const double scale = 1.0 / (1.0 - rate);
    CCONV__DROPOUT_LOOP(CCONV__DROP_STORE_F64);
}

/* m[i] = keep(offset + i) ? scale : 0: the mask itself (x * m equals cconv_dropout_* for
 * finite x). */
static inline void cconv_dropout_mask_f32(float *m, int64_t n, int64_t offset, uint64_t seed,
                                          uint64_t step, double rate)
{
    const float scale = (float)(1.0 / (1.0 - rate));
    CCONV__DROPOUT_LOOP(CCONV__MASK_STORE_F32);
}

static inline void cconv_dropout_mask_f64(double *m, int64_t n, int64_t offset, uint64_t seed,
                                          uint64_t step, double rate)
{
    const double scale = 1.0 / (1.0 - rate);
    CCONV__DROPOUT_LOOP(CCONV__MASK_STORE_F64);
}

#endif /* CCONV_PHILOX_H */
