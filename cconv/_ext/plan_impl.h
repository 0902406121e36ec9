/* The per-type body of plan.h, included once per element type with PT (the type), PF (the
   name suffix) and P_* (the kernels of that type) defined; undefines them at its end. No
   include guard on purpose. */

/* Activation over rows x width elements, in place (cconv.activations' formulas; alpha:
   leaky_relu's negative slope, elu's alpha). */
static void PF(cconv_plan_act)(PT *y, int64_t rows, int64_t width, int act, double alpha)
{
    int64_t i, j, n = rows * width;
    const PT a = (PT)alpha;
    switch (act) {
    case CCONV_ACT_RELU:
        for (i = 0; i < n; i++) y[i] = y[i] < (PT)0 ? (PT)0 : y[i];
        break;
    case CCONV_ACT_SIGMOID:
        for (i = 0; i < n; i++) {
            PT z = y[i], e = P_EXP(-(z < 0 ? -z : z)), r = (PT)1 / ((PT)1 + e);
            y[i] = z >= 0 ? r : e * r;
        }
        break;
    case CCONV_ACT_TANH:
        for (i = 0; i < n; i++) y[i] = P_TANH(y[i]);
        break;
    case CCONV_ACT_SOFTMAX:
        for (i = 0; i < rows; i++) {
            PT *r = y + i * width, m = r[0], s = 0;
            for (j = 1; j < width; j++) m = (r[j] > m || r[j] != r[j]) ? r[j] : m;
            for (j = 0; j < width; j++) { r[j] = P_EXP(r[j] - m); s += r[j]; }
            for (j = 0; j < width; j++) r[j] /= s;
        }
        break;
    case CCONV_ACT_RELU6:
        for (i = 0; i < n; i++) {
            PT v = y[i] < (PT)0 ? (PT)0 : y[i];
            y[i] = v > (PT)6 ? (PT)6 : v;
        }
        break;
    case CCONV_ACT_LEAKY:
        for (i = 0; i < n; i++) y[i] = y[i] > (PT)0 ? y[i] : y[i] * a;
        break;
    case CCONV_ACT_ELU:
        for (i = 0; i < n; i++)
            y[i] = y[i] > (PT)0 ? y[i] : a * P_EXPM1(y[i]);
        break;
    case CCONV_ACT_GELU:
        for (i = 0; i < n; i++)
            y[i] = (PT)0.5 * y[i] * ((PT)1 + P_ERF(y[i] * (PT)0.7071067811865476));
        break;
    case CCONV_ACT_GELU_TANH:
        for (i = 0; i < n; i++) {
            PT z = y[i];
            y[i] = (PT)0.5 * z * ((PT)1 + P_TANH((PT)0.7978845608028654
                                                 * (z + (PT)0.044715 * z * z * z)));
        }
        break;
    case CCONV_ACT_SILU:
        for (i = 0; i < n; i++) {
            PT z = y[i], e = P_EXP(-(z < 0 ? -z : z)), r = (PT)1 / ((PT)1 + e);
            y[i] = z * (z >= 0 ? r : e * r);
        }
        break;
    case CCONV_ACT_HARD_SIGMOID:
    case CCONV_ACT_HARD_SILU:
        for (i = 0; i < n; i++) {
            PT v = y[i] + (PT)3;
            v = v < (PT)0 ? (PT)0 : v > (PT)6 ? (PT)6 : v;
            y[i] = act == CCONV_ACT_HARD_SILU ? y[i] * (v / (PT)6) : v / (PT)6;
        }
        break;
    default:
        break;
    }
}

/* bias (may be NULL) then activation over rows x width; with relu, one pass. */
static void PF(cconv_plan_epilogue)(PT *y, int64_t rows, int64_t width, const PT *bias, int act,
                                    double alpha)
{
    int64_t i, j;
    if (bias && act == CCONV_ACT_RELU) {
        for (i = 0; i < rows; i++) {
            PT *CCONV__RESTRICT r = y + i * width;
            for (j = 0; j < width; j++) {
                const PT v = r[j] + bias[j];
                r[j] = v < (PT)0 ? (PT)0 : v;
            }
        }
        return;
    }
    if (bias)
        for (i = 0; i < rows; i++)
            for (j = 0; j < width; j++) y[i * width + j] += bias[j];
    PF(cconv_plan_act)(y, rows, width, act, alpha);
}

/* Whether node nd's output goes through cconv_plan_post (a folded batch norm or a fused
   residual): its kernel then applies the bias only. */
static inline int PF(cconv_plan_has_post)(const cconv_pnode *nd)
{
    return nd->st != NULL || nd->res != CCONV_PLAN_NONE;
}

/* The rest of a node's epilogue after its bias, over channels c0 .. c0 + cn of rows rows
   (row stride ld) of y: the folded batch norm (y * scale + shift, nd->st), the residual res
   (same layout as y; NULL: none), then the activation (Keras's order: BatchNormalization,
   Add, then the activation layer). */
static void PF(cconv_plan_post)(const cconv_pnode *nd, PT *y, const PT *res, int64_t rows,
                                int64_t ld, int64_t c0, int64_t cn)
{
    const PT *s = (const PT *)nd->st, *t = s ? s + nd->units + c0 : 0;
    /* relu and relu6 clamp in the same pass (lo, hi); other activations after it */
    const int clamp = nd->act == CCONV_ACT_RELU || nd->act == CCONV_ACT_RELU6;
    const PT lo = clamp ? (PT)0 : -(PT)INFINITY;
    const PT hi = nd->act == CCONV_ACT_RELU6 ? (PT)6 : (PT)INFINITY;
    int64_t i, j;
    if (s) s += c0;
    for (i = 0; i < rows; i++) {
        PT *CCONV__RESTRICT r = y + i * ld;
        const PT *q = res ? res + i * ld : 0;
        if (s && q)
            for (j = 0; j < cn; j++) {
                PT v = r[j] * s[j] + t[j] + q[j];
                v = v < lo ? lo : v;
                r[j] = v > hi ? hi : v;
            }
        else if (s)
            for (j = 0; j < cn; j++) {
                PT v = r[j] * s[j] + t[j];
                v = v < lo ? lo : v;
                r[j] = v > hi ? hi : v;
            }
        else if (q)
            for (j = 0; j < cn; j++) {
                PT v = r[j] + q[j];
                v = v < lo ? lo : v;
                r[j] = v > hi ? hi : v;
            }
        if (!clamp && ld != cn) PF(cconv_plan_act)(r, 1, cn, nd->act, nd->alpha);
    }
    if (!clamp && ld == cn) PF(cconv_plan_act)(y, rows, cn, nd->act, nd->alpha);
}

/* dst[0:n] = src[0:n] for the short runs of im2col, inline, where memcpy would be a library
   call per run: whole 64-byte blocks, the last one moved back to end at n (copying a few
   elements twice: the same values); under one block, two overlapping 32- or 16-byte moves. */
static inline void PF(cconv_plan_copy)(PT *dst, const PT *src, int64_t n)
{
    enum { E = 64 / sizeof(PT) };
    int64_t i;
    if (n < E / 4) {
        for (i = 0; i < n; i++) dst[i] = src[i];
        return;
    }
    if (n < E / 2) {
        memcpy(dst, src, 16);
        memcpy(dst + n - E / 4, src + n - E / 4, 16);
        return;
    }
    if (n < E) {
        memcpy(dst, src, 32);
        memcpy(dst + n - E / 2, src + n - E / 2, 32);
        return;
    }
    for (i = 0; i < n; i += E) {
        if (i + E > n) i = n - E;
        memcpy(dst + i, src + i, 64);
    }
}

/* Rows r0..r1 of the im2col matrix of consecutive images (one group), row r = (n OH + oh) OW
   + ow: col[r - r0][(kh KW + kw) C + c] = x[n, ih, iw, c] (0 in the padding). */
static void PF(cconv_plan_im2col)(const PT *x, PT *col, const cconv_geom *g, int64_t r0,
                                  int64_t r1)
{
    int64_t K = g->KH * g->KW * g->C, P = g->OH * g->OW, r, kh, kw, ih, iw, iw0;
    int64_t n = r0 / P, oh = (r0 - n * P) / g->OW, ow = r0 - n * P - oh * g->OW;
    for (r = r0; r < r1; r++) {
        const PT *xn = x + n * g->H * g->W * g->C;
        int inside_w;
        iw0 = ow * g->sw - g->pl;
        inside_w = iw0 >= 0 && iw0 + (g->KW - 1) * g->dw < g->W;
        for (kh = 0; kh < g->KH; kh++) {
            PT *dst = col + (r - r0) * K + kh * g->KW * g->C;
            const PT *src;
            ih = oh * g->sh - g->pt + kh * g->dh;
            if (ih < 0 || ih >= g->H) {
                memset(dst, 0, (size_t)(g->KW * g->C) * sizeof(PT));
                continue;
            }
            src = xn + ih * g->W * g->C;
            if (inside_w && g->dw == 1) {
                PF(cconv_plan_copy)(dst, src + iw0 * g->C, g->KW * g->C);
                continue;
            }
            for (kw = 0; kw < g->KW; kw++) {
                iw = iw0 + kw * g->dw;
                if (iw < 0 || iw >= g->W) memset(dst + kw * g->C, 0, (size_t)g->C * sizeof(PT));
                else PF(cconv_plan_copy)(dst + kw * g->C, src + iw * g->C, g->C);
            }
        }
        if (++ow == g->OW) { ow = 0; if (++oh == g->OH) { oh = 0; n++; } }
    }
}

/* The epilogue after the bias (cconv_plan_post, or the activation alone) of channels co0 ..
   co0 + cn of the outputs of Winograd tiles t0..t0+nt of consecutive images (each tile is
   an m x m block of one image's output); res: the residual of those images, or NULL. */
static void PF(cconv_plan_wino_act)(const cconv_pnode *nd, PT *y, const PT *res, int64_t t0,
                                    int64_t nt, int64_t co0, int64_t cn)
{
    const cconv_geom *g = &nd->g;
    const int m = cconv_plan_wino_m(g), post = PF(cconv_plan_has_post)(nd);
    int64_t TH = (g->OH + m - 1) / m, TW = (g->OW + m - 1) / m, t, oh, ow;
    if (nd->act == CCONV_ACT_LINEAR && !post) return;
    for (t = t0; t < t0 + nt; t++) {
        int64_t n = t / (TH * TW), th = (t - n * TH * TW) / TW, tw = t - n * TH * TW - th * TW;
        int64_t base = n * g->OH * g->OW * g->CO + co0;
        for (oh = m * th; oh < m * th + m && oh < g->OH; oh++) {
            int64_t ow1 = m * tw + m < g->OW ? m * tw + m : g->OW;
            int64_t at = base + (oh * g->OW + m * tw) * g->CO;
            if (post) PF(cconv_plan_post)(nd, y + at, res ? res + at : 0, ow1 - m * tw, g->CO,
                                          co0, cn);
            else
                for (ow = m * tw; ow < ow1; ow++)
                    PF(cconv_plan_act)(y + base + (oh * g->OW + ow) * g->CO, 1, cn, nd->act,
                                       nd->alpha);
        }
    }
}

/* C (M x N) = A @ B for node nd's B number e (B: K x N, row stride ldb), from its packed
   copy when the run packed one; the same bits every way. The GEMM pads its last micro-panel
   to whole MR rows (25 Winograd tiles: 2 panels and 1 row cost 3 panels): under one panel,
   and for the rows after the last whole one, blocks of the exact rows run instead
   (implicit.h's kernels where they apply, else the row kernel for a few rows). */
static void PF(cconv_plan_gemm)(const cconv_pnode *nd, int64_t e, int64_t M, int64_t N,
                                int64_t K, const PT *A, int64_t lda, const PT *B, int64_t ldb,
                                PT *C, int64_t ldc)
{
    int64_t mr = P_GEMM_MR(), rest = M % mr;
    int exact = cconv_implicit_gemm_ok(N, K, (int)sizeof(PT));
    if (rest > 0 && (exact || rest <= CCONV_PLAN_FEW_ROWS)) {
        M -= rest;
        if (exact) P_GEMM_EXACT(rest, N, K, A + M * lda, lda, B, ldb, C + M * ldc, ldc);
        else P_ROWS((rest, N, K, A + M * lda, lda, B, ldb, C + M * ldc, ldc));
        if (M == 0) return;
    }
    if (nd->bpack && nd->bpack_isa >= 0)
        P_GEMM_PACKED(0, M, N, K, A, lda, B, ldb, (const PT *)nd->bpack + e * nd->bpack_one,
                      nd->bpack_isa, C, ldc);
    else
        P_GEMM(0, 0, M, N, K, 1, A, lda, B, ldb, 0, C, ldc);
}

/* Units of work of a convolution over n consecutive images: one per image (direct), per
   im2col tile of rows, or per chunk of Winograd tiles and part of CO (both across the
   images; unit u is part u / chunks of chunk u % chunks, so that a static schedule gives
   each thread one part of U). */
static int64_t PF(cconv_plan_conv_units)(const cconv_pnode *nd, int64_t n)
{
    const cconv_geom *g = &nd->g;
    int64_t all;
    if (nd->algo == CCONV_ALGO_DIRECT) return n * nd->nsplit;
    if (nd->algo == CCONV_ALGO_WINOGRAD)
        return (n * cconv_plan_wino_img_tiles(g) + nd->tile - 1) / nd->tile * nd->nsplit;
    all = n * g->OH * g->OW;
    return (all + nd->tile - 1) / nd->tile;
}

/* Unit u of the convolution of n consecutive images: x (n, H, W, C) -> y (n, OH, OW, CO),
   bias, folded batch norm, residual res (laid out as y; NULL: none) and activation
   included. */
static void PF(cconv_plan_conv_unit)(const cconv_pnode *nd, const PT *x, PT *y, int64_t n,
                                     int64_t u, PT *scr, const PT *res)
{
    const int post = PF(cconv_plan_has_post)(nd);
    const int relu = nd->act == CCONV_ACT_RELU && !post;   /* fused into the kernel */
    const cconv_geom *g = &nd->g;
    const PT *w = (const PT *)nd->w, *b = (const PT *)nd->b;
    int64_t P = g->OH * g->OW, K = g->KH * g->KW * g->C, CO = g->CO;
    int64_t R = n * P, r0 = u * nd->tile, rows, e;
    if (nd->algo == CCONV_ALGO_DIRECT && nd->nsplit > 1) {
        /* a depthwise image in blocks of output rows (dwconv.h: an element's sum does not
           depend on its block) */
        const int64_t img = u / nd->nsplit, rb = (g->OH + nd->nsplit - 1) / nd->nsplit;
        const int64_t r0 = (u - img * nd->nsplit) * rb, r1 = r0 + rb < g->OH ? r0 + rb : g->OH;
        PT *yu = y + img * P * CO, *yr = yu + r0 * g->OW * CO;
        if (r0 >= r1) return;
        P_DW_ROWS(x + img * g->H * g->W * g->C, w, b, yu, g, scr, relu, r0, r1);
        if (post) PF(cconv_plan_post)(nd, yr, res ? res + (yr - y) : 0, (r1 - r0) * g->OW, CO,
                                      0, CO);
        else if (!relu) PF(cconv_plan_act)(yr, (r1 - r0) * g->OW, CO, nd->act, nd->alpha);
        return;
    }
    if (nd->algo == CCONV_ALGO_DIRECT) {
        PT *yu = y + u * P * CO;
        P_DIRECT(x + u * g->H * g->W * g->C, w, b, yu, g, scr, relu);
        if (post) PF(cconv_plan_post)(nd, yu, res ? res + u * P * CO : 0, P, CO, 0, CO);
        else if (!relu) PF(cconv_plan_act)(yu, P, CO, nd->act, nd->alpha);
        return;
    }
    if (nd->algo == CCONV_ALGO_WINOGRAD) {
        const int m = cconv_plan_wino_m(g);
        int64_t E = cconv_wino_elems(m), TH = (g->OH + m - 1) / m, TW = (g->OW + m - 1) / m;
        int64_t T = n * TH * TW, TC = nd->tile;
        int64_t S = nd->nsplit, chunks = (T + TC - 1) / TC, s = u / chunks;
        int64_t t0 = (u - s * chunks) * TC, nt = T - t0 < TC ? T - t0 : TC, C = g->C;
        int64_t nb = CO / S, co0 = s * nb;     /* this unit's output channels */
        int64_t vs = cconv_wino_plane(nt * C, sizeof(PT)), ms = cconv_wino_plane(nt * CO, sizeof(PT));
        PT *V = scr, *M = scr + E * vs, *zeros = M + E * ms;
        memset(zeros, 0, (size_t)(C + CO) * sizeof(PT));
        P_WINO_IN(m, x, g->H, g->W, C, TH, TW, g->pt, g->pl, t0, nt, V, vs, zeros);
        for (e = 0; e < E; e++)  /* (few tiles: not padded to whole 12-row panels) */
            PF(cconv_plan_gemm)(nd, e * S + s, nt, nb, C, V + e * vs, C,
                                (const PT *)nd->wino + e * C * CO + co0, CO,
                                M + e * ms + co0, CO);
        P_WINO_OUT(m, M + co0, ms, CO, nb, (b ? b : zeros + C) + co0, y + co0, g->OH, g->OW,
                   TH, TW, t0, nt, zeros + C + CO);
        PF(cconv_plan_wino_act)(nd, y, res, t0, nt, co0, nb);
        return;
    }
    rows = R - r0 < nd->tile ? R - r0 : nd->tile;
    if (nd->implicit) {  /* bias and relu applied by the kernel, as the epilogue would */
        P_IMPLICIT(x, w, b, y, g, r0, r0 + rows, relu);
        if (post) PF(cconv_plan_post)(nd, y + r0 * CO, res ? res + r0 * CO : 0, rows, CO, 0, CO);
        else if (!relu) PF(cconv_plan_act)(y + r0 * CO, rows, CO, nd->act, nd->alpha);
        return;
    }
    if (nd->algo == CCONV_ALGO_POINTWISE) {
        PF(cconv_plan_gemm)(nd, 0, rows, CO, K, x + r0 * g->C, g->C, w, CO, y + r0 * CO, CO);
    } else {
        PF(cconv_plan_im2col)(x, scr, g, r0, r0 + rows);
        PF(cconv_plan_gemm)(nd, 0, rows, CO, K, scr, K, w, CO, y + r0 * CO, CO);
    }
    PF(cconv_plan_epilogue)(y + r0 * CO, rows, CO, b, post ? CCONV_ACT_LINEAR : nd->act,
                            nd->alpha);
    if (post) PF(cconv_plan_post)(nd, y + r0 * CO, res ? res + r0 * CO : 0, rows, CO, 0, CO);
}

/* Pooled rows oh0..oh1 of one image: x (H, W, C) -> y (OH, OW, C); with arg (training, max
   only) the input cell of each output too (pool_cells.h). */
static void PF(cconv_plan_pool_rows)(const cconv_pool_geom *g, int is_max, const PT *x, PT *y,
                                     int64_t oh0, int64_t oh1, int32_t *arg)
{
    P_POOL_ROWS((g, arg ? 2 : is_max, x, y, oh0, oh1, arg));
}

/* Dense rows r0..r1: y = act(post(x @ w + b)) (res: the residual, laid out as y, or NULL). */
static void PF(cconv_plan_dense_rows)(const cconv_pnode *nd, const PT *x, PT *y, int64_t r0,
                                      int64_t r1, const PT *res)
{
    const int post = PF(cconv_plan_has_post)(nd);
    const int64_t U = nd->units;
    if (r1 <= r0) return;
    PF(cconv_plan_gemm)(nd, 0, r1 - r0, U, nd->K, x + r0 * nd->K, nd->K,
                        (const PT *)nd->w, U, y + r0 * U, U);
    PF(cconv_plan_epilogue)(y + r0 * U, r1 - r0, U, (const PT *)nd->b,
                            post ? CCONV_ACT_LINEAR : nd->act, nd->alpha);
    if (post) PF(cconv_plan_post)(nd, y + r0 * U, res ? res + r0 * U : 0, r1 - r0, U, 0, U);
}

/* Elements per image of node nd's input number k (a concatenate's inputs differ). */
static inline int64_t PF(cconv_plan_in_img)(const cconv_pnode *nd, int k)
{
    return nd->kind == CCONV_PLAN_CONCAT ? nd->widths[k] * (nd->out_size / nd->units)
                                         : nd->in_size;
}

/* Merge node nd over n elements of each input: out = op(ins[0], ins[1], ...) in Keras's
   order (left to right; Average: the sum, then divided by the count; Maximum, Minimum:
   NaN wins, as np.maximum). */
static void PF(cconv_plan_merge)(const cconv_pnode *nd, const PT *const *ins, PT *out,
                                 int64_t n)
{
    int64_t j;
    int k;
    const PT *a = ins[0];
    for (k = 1; k < nd->ninputs; k++) {
        const PT *CCONV__RESTRICT b = ins[k];
        switch (nd->merge) {
        case CCONV_MERGE_ADD:
        case CCONV_MERGE_AVG:
            for (j = 0; j < n; j++) out[j] = a[j] + b[j];
            break;
        case CCONV_MERGE_SUB:
            for (j = 0; j < n; j++) out[j] = a[j] - b[j];
            break;
        case CCONV_MERGE_MUL:
            for (j = 0; j < n; j++) out[j] = a[j] * b[j];
            break;
        case CCONV_MERGE_MAX:
            for (j = 0; j < n; j++)
                out[j] = a[j] != a[j] ? a[j] : b[j] != b[j] ? b[j] : a[j] >= b[j] ? a[j] : b[j];
            break;
        default:
            for (j = 0; j < n; j++)
                out[j] = a[j] != a[j] ? a[j] : b[j] != b[j] ? b[j] : a[j] <= b[j] ? a[j] : b[j];
        }
        a = out;
    }
    if (nd->merge == CCONV_MERGE_AVG)
        for (j = 0; j < n; j++) out[j] /= (PT)nd->ninputs;
}

/* Global pooling of one image: x (H W, C) -> y (C); average summed in double (as
   ops.channel_sum), maximum with NaN winning. */
static void PF(cconv_plan_gpool)(const cconv_pnode *nd, const PT *x, PT *y, double *acc)
{
    const int64_t C = nd->units, P = nd->in_size / C;
    int64_t p, c;
    if (nd->pool == CCONV_POOL_MAX) {
        memcpy(y, x, (size_t)C * sizeof(PT));
        for (p = 1; p < P; p++)
            for (c = 0; c < C; c++) {
                const PT v = x[p * C + c];
                y[c] = (v > y[c] || v != v) ? v : y[c];
            }
        return;
    }
    for (c = 0; c < C; c++) acc[c] = 0;
    for (p = 0; p < P; p++)
        for (c = 0; c < C; c++) acc[c] += (double)x[p * C + c];
    for (c = 0; c < C; c++) y[c] = (PT)(acc[c] / (double)P);
}

/* Node nd on images 0..n (one thread), images n0.. of the batch: ins its inputs (ins[0] for
   one-input nodes), res its residual (NULL: none), out; scr: the thread's scratch, whose
   first mid_scr elements hold the conv output of nd->group images before a fused pool. */
static void PF(cconv_plan_node_chunk)(const cconv_pnode *nd, const PT *const *ins,
                                      const PT *res, PT *out, int64_t n, PT *scr,
                                      int64_t mid_scr, int32_t *arg, int64_t n0)
{
    int64_t k, u, nu, gsz = 1, rows, off;
    const PT *in = ins[0];
    switch (nd->kind) {
    case CCONV_PLAN_CONV:
        /* with a fused pool, groups of images whose conv output fits the mid scratch */
        for (k = 0; k < n; k += gsz) {
            int64_t m;
            PT *dst = nd->pool ? scr : out + k * nd->out_size;
            gsz = nd->pool ? nd->group : n;
            m = n - k < gsz ? n - k : gsz;
            nu = PF(cconv_plan_conv_units)(nd, m);
            for (u = 0; u < nu; u++)
                PF(cconv_plan_conv_unit)(nd, in + k * nd->in_size, dst, m, u,
                                         nd->pool ? scr + mid_scr : scr,
                                         res ? res + k * nd->out_size : 0);
            for (u = 0; nd->pool && u < m; u++)
                PF(cconv_plan_pool_rows)(&nd->pg, nd->pool == CCONV_POOL_MAX,
                                         dst + u * nd->mid_size, out + (k + u) * nd->out_size,
                                         0, nd->pg.OH, arg ? arg + (k + u) * nd->out_size : 0);
        }
        break;
    case CCONV_PLAN_POOL:
        for (k = 0; k < n; k++)
            PF(cconv_plan_pool_rows)(&nd->pg, nd->pool == CCONV_POOL_MAX, in + k * nd->in_size,
                                     out + k * nd->out_size, 0, nd->pg.OH,
                                     arg ? arg + k * nd->out_size : 0);
        break;
    case CCONV_PLAN_DENSE:
        PF(cconv_plan_dense_rows)(nd, in, out, 0, n * nd->rows, res);
        break;
    case CCONV_PLAN_MERGE:
        PF(cconv_plan_merge)(nd, ins, out, n * nd->out_size);
        PF(cconv_plan_act)(out, n * nd->out_size / nd->units, nd->units, nd->act, nd->alpha);
        break;
    case CCONV_PLAN_CONCAT:
        rows = n * (nd->out_size / nd->units);
        for (off = 0, u = 0; u < nd->ninputs; off += nd->widths[u], u++)
            for (k = 0; k < rows; k++)
                memcpy(out + k * nd->units + off, ins[u] + k * nd->widths[u],
                       (size_t)nd->widths[u] * sizeof(PT));
        PF(cconv_plan_act)(out, rows, nd->units, nd->act, nd->alpha);
        break;
    case CCONV_PLAN_GPOOL:
        for (k = 0; k < n; k++)
            PF(cconv_plan_gpool)(nd, in + k * nd->in_size, out + k * nd->out_size,
                                 (double *)(((uintptr_t)scr + 7) & ~(uintptr_t)7));
        PF(cconv_plan_act)(out, n, nd->units, nd->act, nd->alpha);
        break;
    case CCONV_PLAN_DROPOUT:   /* element i of the batch: its mask from (seed, step, i) */
        P_DROPOUT(in, out, n * nd->out_size, n0 * nd->out_size, nd->seed, nd->step, nd->alpha);
        break;
    case CCONV_PLAN_AFFINE:
        memcpy(out, in, (size_t)(n * nd->out_size) * sizeof(PT));
        PF(cconv_plan_post)(nd, out, res, n * nd->out_size / nd->units, nd->units, 0, nd->units);
        break;
    default:
        memcpy(out, in, (size_t)(n * nd->out_size) * sizeof(PT));
        PF(cconv_plan_act)(out, n * nd->out_size / nd->units, nd->units, nd->act, nd->alpha);
    }
}

/* Where tensor v (a node's output; -1: the plan's input x) of image i0 starts: the arena
   holds cap images of each node output. */
static inline const PT *PF(cconv_plan_at)(const cconv_plan *p, int v, const PT *x,
                                          const PT *arena, int64_t cap, int64_t i0)
{
    return v < 0 ? x + i0 * p->in_size
                 : arena + p->nodes[v].out_off * cap + i0 * p->nodes[v].out_size;
}

/* Node nd's inputs and residual (images from i0, arena of cap images). */
static inline const PT *PF(cconv_plan_inputs)(const cconv_plan *p, const cconv_pnode *nd,
                                              const PT *x, const PT *arena, int64_t cap,
                                              int64_t i0, const PT **ins)
{
    int k;
    for (k = 0; k < nd->ninputs; k++)
        ins[k] = PF(cconv_plan_at)(p, nd->inputs[k], x, arena, cap, i0);
    return nd->res == CCONV_PLAN_NONE ? 0 : PF(cconv_plan_at)(p, nd->res, x, arena, cap, i0);
}

/* The whole network on chunks of p->chunk images, each chunk by one thread. With p->keep
   (training) every node's output stays in a batch-wide arena and fused max pools record
   their winning cells in p->args. */
static void PF(cconv_plan_run_chunks)(const cconv_plan *p, const PT *x, PT *y, int64_t N,
                                      int nthreads)
{
    int64_t CH = p->chunk, nchunks = (N + CH - 1) / CH, c;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (c = 0; c < nchunks; c++) {
        int tid = omp_get_thread_num(), i;
        int64_t n0 = c * CH, n = N - n0 < CH ? N - n0 : CH;
        int64_t cap = p->keep ? N : CH;
        PT *arena = (PT *)p->arena + (p->keep ? 0 : (int64_t)tid * CH * p->arena_img);
        PT *scr = (PT *)p->scr + (int64_t)tid * p->scratch;
        const PT *xc = x + n0 * p->in_size, *ins[CCONV_PLAN_MAX_IN], *res;
        for (i = 0; i < p->nnodes; i++) {
            const cconv_pnode *nd = &p->nodes[i];
            int64_t i0 = p->keep ? n0 : 0;
            PT *out = nd->out_off < 0 ? y + n0 * p->out_size
                                      : arena + nd->out_off * cap + i0 * nd->out_size;
            int32_t *arg = p->keep && nd->arg_off >= 0 ? p->args + nd->arg_off * N
                                                         + n0 * nd->out_size : 0;
            res = PF(cconv_plan_inputs)(p, nd, xc - i0 * p->in_size, arena, cap, i0, ins);
            PF(cconv_plan_node_chunk)(nd, ins, res, out, n, scr, p->mid_scr, arg, n0);
        }
    }
}

/* Node nd on the whole batch, its work shared by the threads of the enclosing region. */
static void PF(cconv_plan_node_shared)(const cconv_plan *p, const cconv_pnode *nd,
                                       const PT *const *ins, const PT *res, PT *out, int64_t N,
                                       PT *scr, PT *mid)
{
    int64_t t, units, nb;
    const cconv_pool_geom *pg = &nd->pg;
    PT *dst = nd->pool ? mid : out;
    const PT *in = ins[0];
    int64_t psrc = nd->in_size;
    if (nd->kind == CCONV_PLAN_CONV) {
        units = PF(cconv_plan_conv_units)(nd, N);
        #pragma omp for schedule(static)
        for (t = 0; t < units; t++)
            PF(cconv_plan_conv_unit)(nd, in, dst, N, t, scr, res);
        psrc = nd->mid_size;
    }
    if (nd->kind == CCONV_PLAN_POOL || (nd->kind == CCONV_PLAN_CONV && nd->pool)) {
        const PT *src = nd->kind == CCONV_PLAN_POOL ? in : mid;
        units = N * pg->OH;
        #pragma omp for schedule(static)
        for (t = 0; t < units; t++) {
            int64_t n = t / pg->OH, oh = t - n * pg->OH;
            PF(cconv_plan_pool_rows)(pg, nd->pool == CCONV_POOL_MAX, src + n * psrc,
                                     out + n * nd->out_size, oh, oh + 1, 0);
        }
    } else if (nd->kind == CCONV_PLAN_DENSE) {
        nb = (N * nd->rows + CCONV_PLAN_DENSE_ROWS - 1) / CCONV_PLAN_DENSE_ROWS;
        #pragma omp for schedule(static)
        for (t = 0; t < nb; t++) {
            int64_t r1 = (t + 1) * CCONV_PLAN_DENSE_ROWS;
            PF(cconv_plan_dense_rows)(nd, in, out, t * CCONV_PLAN_DENSE_ROWS,
                                      r1 < N * nd->rows ? r1 : N * nd->rows, res);
        }
    } else if (nd->kind != CCONV_PLAN_CONV) {   /* elementwise nodes: images shared */
        #pragma omp for schedule(static)
        for (t = 0; t < N; t++) {
            const PT *one[CCONV_PLAN_MAX_IN];
            int k;
            for (k = 0; k < nd->ninputs; k++) one[k] = ins[k] + t * PF(cconv_plan_in_img)(nd, k);
            PF(cconv_plan_node_chunk)(nd, one, res ? res + t * nd->out_size : 0,
                                      out + t * nd->out_size, 1, scr, 0, 0, t);
        }
    }
}

/* The network node by node over the whole batch, each node's work shared by the threads. */
static void PF(cconv_plan_run_layers)(const cconv_plan *p, const PT *x, PT *y, int64_t N,
                                      int nthreads)
{
    #pragma omp parallel num_threads(nthreads)
    {
        int tid = omp_get_thread_num(), i;
        PT *arena = (PT *)p->arena;
        PT *mid = arena + N * p->arena_img;
        PT *scr = (PT *)p->scr + (int64_t)tid * p->scratch;
        const PT *ins[CCONV_PLAN_MAX_IN], *res;
        for (i = 0; i < p->nnodes; i++) {
            const cconv_pnode *nd = &p->nodes[i];
            PT *out = nd->out_off < 0 ? y : arena + nd->out_off * N;
            res = PF(cconv_plan_inputs)(p, nd, x, arena, N, 0, ins);
            PF(cconv_plan_node_shared)(p, nd, ins, res, out, N, scr, mid);
        }
    }
}

/* ---- training: the backward pass (conv gradients are conv.pyx's kernels, passed in as
   p->conv_backward) ---- */

/* dz = da * f'(a) for the activation whose output is a (dz may be da); one loop per
   activation, so each vectorises. */
static void PF(cconv_plan_act_grad)(PT *dz, const PT *da, const PT *a, int64_t n, int act)
{
    int64_t i;
    switch (act) {
    case CCONV_ACT_RELU:
        for (i = 0; i < n; i++) dz[i] = da[i] * (PT)(a[i] > 0);
        break;
    case CCONV_ACT_SIGMOID:
        for (i = 0; i < n; i++) dz[i] = da[i] * a[i] * ((PT)1 - a[i]);
        break;
    case CCONV_ACT_TANH:
        for (i = 0; i < n; i++) dz[i] = da[i] * ((PT)1 - a[i] * a[i]);
        break;
    default:
        if (dz != da) memcpy(dz, da, (size_t)n * sizeof(PT));
    }
}

typedef int (*PF(cconv_plan_conv_bwd_t))(const PT *dy, const PT *x, const PT *w, PT *dx, PT *dw,
                                         PT *db, const cconv_geom *g, int64_t N);

/* Average-pool gradient of one image: dx (H, W, C) from dy (OH, OW, C) (pool.pyx's order). */
static void PF(cconv_plan_avg_unpool)(const cconv_pool_geom *g, const PT *dy, PT *dx)
{
    int64_t oh, ow, h, w, c, C = g->C;
    memset(dx, 0, (size_t)(g->H * g->W * C) * sizeof(PT));
    for (oh = 0; oh < g->OH; oh++)
        for (ow = 0; ow < g->OW; ow++) {
            int64_t h0 = oh * g->sh - g->pt, w0 = ow * g->sw - g->pl;
            int64_t h1 = h0 + g->KH < g->H ? h0 + g->KH : g->H;
            int64_t w1 = w0 + g->KW < g->W ? w0 + g->KW : g->W;
            const PT *d = dy + (oh * g->OW + ow) * C;
            if (h0 < 0) h0 = 0;
            if (w0 < 0) w0 = 0;
            for (h = h0; h < h1; h++)
                for (w = w0; w < w1; w++)
                    for (c = 0; c < C; c++)
                        dx[(h * g->W + w) * C + c] += d[c] / (PT)((h1 - h0) * (w1 - w0));
        }
}

/* Winograd input gradient of n images (a wgrad node with wflip_ok): dx (n, H, W, C) = the
   3x3 convolution of dz (n, OH, OW, CO) with the flipped kernel, whose transform is
   nd->wflip, padded by 2 - pt, 2 - pl: conv.pyx's input_winograd, the same arithmetic tile
   for tile. Returns -1 when its scratch could not be allocated. */
static int PF(cconv_plan_wino_dx)(const cconv_pnode *nd, const PT *dz, PT *dx, int64_t n)
{
    const cconv_geom *g = &nd->g;
    const int m = cconv_wino_tile(g->H, g->W);   /* the tiles of dx, this convolution's output */
    int64_t Ci = g->CO, Co = g->C;            /* this convolution's input and output channels */
    int64_t E = cconv_wino_elems(m), TH = (g->H + m - 1) / m, TW = (g->W + m - 1) / m;
    int64_t T = n * TH * TW, TC = cconv_plan_wino_tiles(g), t0, nt, e, vs, ms;
    PT *buf, *V, *M, *zeros;
    if (TC > T) TC = T;
    vs = cconv_wino_plane(TC * Ci, sizeof(PT));
    ms = cconv_wino_plane(TC * Co, sizeof(PT));
    /* V (E planes vs apart), M (E planes ms apart), zeros (Ci, and the bias stand-in Co),
       trash */
    buf = (PT *)malloc((size_t)(E * (vs + ms) + Ci + 4 * Co) * sizeof(PT));
    if (!buf) return -1;
    V = buf;
    M = V + E * vs;
    zeros = M + E * ms;
    memset(zeros, 0, (size_t)(Ci + Co) * sizeof(PT));
    for (t0 = 0; t0 < T; t0 += TC) {
        nt = T - t0 < TC ? T - t0 : TC;
        P_WINO_IN(m, dz, g->OH, g->OW, Ci, TH, TW, 2 - g->pt, 2 - g->pl, t0, nt, V, vs, zeros);
        for (e = 0; e < E; e++)
            P_GEMM(0, 0, nt, Co, Ci, 1, V + e * vs, Ci, (const PT *)nd->wflip + e * Ci * Co,
                   Co, 0, M + e * ms, Co);
        P_WINO_OUT(m, M, ms, Co, Co, zeros + Ci, dx, g->H, g->W, TH, TW, t0, nt,
                   zeros + Ci + Co);
    }
    free(buf);
    return 0;
}

/* Winograd kernel gradient of n images in the transformed domain (a wgrad node):
   dU (E, C, CO) = sum over tiles of V[e]^T dM[e] (V: the input transform of x, dM that of
   dz), db (CO, may be NULL) = the sum of dz, as conv.pyx's params_winograd does per block.
   Returns -1 when its scratch could not be allocated. */
static int PF(cconv_plan_wino_dw)(const cconv_pnode *nd, const PT *dz, const PT *x, PT *dU,
                                  PT *db, int64_t n)
{
    const cconv_geom *g = &nd->g;
    const int m = cconv_plan_wino_m(g);
    int64_t C = g->C, CO = g->CO, E = cconv_wino_elems(m), TH = (g->OH + m - 1) / m;
    int64_t TW = (g->OW + m - 1) / m, T = n * TH * TW;
    int64_t TC = cconv_plan_wino_tiles(g), t0, nt, e, Z = C > CO ? C : CO, vs, ms;
    PT *buf, *V, *dM, *zeros, *acc;
    if (TC > T) TC = T;
    vs = cconv_wino_plane(TC * C, sizeof(PT));
    ms = cconv_wino_plane(TC * CO, sizeof(PT));
    buf = (PT *)malloc((size_t)(E * (vs + ms) + Z + CO) * sizeof(PT));
    if (!buf) return -1;
    V = buf;
    dM = V + E * vs;
    zeros = dM + E * ms;
    acc = db ? db : zeros + Z;                 /* the bias gradient, or somewhere to put it */
    memset(zeros, 0, (size_t)(Z + CO) * sizeof(PT));
    if (T <= 0) memset(dU, 0, (size_t)(E * C * CO) * sizeof(PT));
    if (db) memset(db, 0, (size_t)CO * sizeof(PT));
    /* the first chunk of tiles stores its products (beta 0), the others add to them: no pass
       that zeroes dU first (36 x C x CO per call with F(4x4): 0.6 MB for 64 -> 64) */
    for (t0 = 0; t0 < T; t0 += TC) {
        nt = T - t0 < TC ? T - t0 : TC;
        P_WINO_IN(m, x, g->H, g->W, C, TH, TW, g->pt, g->pl, t0, nt, V, vs, zeros);
        P_WINO_DY(m, dz, g->OH, g->OW, CO, TH, TW, t0, nt, dM, ms, zeros, acc);
        for (e = 0; e < E; e++)
            P_GEMM(1, 0, C, CO, nt, 1, V + e * vs, C, dM + e * ms, CO, t0 == 0 ? 0 : 1,
                   dU + e * C * CO, CO);
    }
    free(buf);
    return 0;
}

/* Gradients of node nd for n images: dz (after the activation's derivative), its input x,
   its recorded max-pool cells arg; partial weight gradients into part, dx (may be NULL);
   mid: scratch for a fused pool's unpooled gradient. Returns -1 when conv.pyx could not
   allocate a workspace. */
static int PF(cconv_plan_node_grad)(const cconv_plan *p, const cconv_pnode *nd, const PT *dz,
                                    const PT *x, const int32_t *arg, PT *part, PT *dx, PT *mid,
                                    int64_t n)
{
    int64_t k, r, u, R = n * nd->rows;
    PT *dw = part + nd->dw_off, *db = nd->b ? part + nd->db_off : 0;
    if (nd->kind == CCONV_PLAN_DENSE) {
        if (nd->dzs) db = 0;     /* the whole batch's, after the chunks (dense_dw) */
        else P_GEMM(1, 0, nd->K, nd->units, R, 1, x, nd->K, dz, nd->units, 0, dw, nd->units);
        for (u = 0; db && u < nd->units; u++) {
            PT s = 0;
            for (r = 0; r < R; r++) s += dz[r * nd->units + u];
            db[u] = s;
        }
        if (dx && nd->tpack)     /* the same bits as the unpacked call */
            P_GEMM_PACKED(1, R, nd->K, nd->units, dz, nd->units, (const PT *)nd->w, nd->units,
                          (const PT *)nd->tpack, nd->tpack_isa, dx, nd->K);
        else if (dx)
            P_GEMM(0, 1, R, nd->K, nd->units, 1, dz, nd->units, (const PT *)nd->w, nd->units,
                   0, dx, nd->K);
        return 0;
    }
    if (nd->kind == CCONV_PLAN_CONV) {
        if (nd->pool) {
            for (k = 0; k < n; k++) {
                PT *d = mid + k * nd->mid_size;
                memset(d, 0, (size_t)nd->mid_size * sizeof(PT));
                for (r = 0; r < nd->out_size; r++)
                    d[arg[k * nd->out_size + r]] += dz[k * nd->out_size + r];
            }
            dz = mid;
        }
        if (nd->wgrad && !p->wino_exact) {
            if (PF(cconv_plan_wino_dw)(nd, dz, x, dw, db, n)) return -1;
            if (!dx) return 0;
            /* conv.pyx's rule: Winograd only for finite operands (Inf - Inf would be NaN) */
            if (nd->wflip && nd->wflip_ok && P_FINITE(dz, n * nd->g.OH * nd->g.OW * nd->g.CO))
                return PF(cconv_plan_wino_dx)(nd, dz, dx, n);
            dw = db = 0;
        }
        return ((PF(cconv_plan_conv_bwd_t))p->conv_backward)(dz, x, (const PT *)nd->w, dx, dw,
                                                             db, &nd->g, n);
    }
    if (nd->kind == CCONV_PLAN_POOL && dx) {
        for (k = 0; k < n; k++) {
            PT *d = dx + k * nd->in_size;
            if (nd->pool == CCONV_POOL_AVG) {
                PF(cconv_plan_avg_unpool)(&nd->pg, dz + k * nd->out_size, d);
                continue;
            }
            memset(d, 0, (size_t)nd->in_size * sizeof(PT));
            for (r = 0; r < nd->out_size; r++)
                d[arg[k * nd->out_size + r]] += dz[k * nd->out_size + r];
        }
    }
    return 0;
}

/* Task k of the whole-batch kernel gradients of the dense nodes with dzs: columns
   k' * CCONV_PLAN_DW_COLS .. of dw = X^T dz and db = the column sums of dz, for the k'-th
   block of those nodes' columns in node order (x: the plan's input, N images). */
static void PF(cconv_plan_dense_dw)(const cconv_plan *p, const PT *x, int64_t N, int64_t k)
{
    int i;
    for (i = 0; i < p->nnodes; i++) {
        const cconv_pnode *nd = &p->nodes[i];
        int64_t nb, u0, ub, u, r, R = N * nd->rows;
        const PT *X, *dz;
        if (!nd->dzs) continue;
        nb = (nd->units + CCONV_PLAN_DW_COLS - 1) / CCONV_PLAN_DW_COLS;
        if (k >= nb) {
            k -= nb;
            continue;
        }
        u0 = k * CCONV_PLAN_DW_COLS;
        ub = nd->units - u0 < CCONV_PLAN_DW_COLS ? nd->units - u0 : CCONV_PLAN_DW_COLS;
        X = nd->input < 0 ? x : (const PT *)p->arena + p->nodes[nd->input].out_off * N;
        dz = (const PT *)nd->dzs;
        P_GEMM(1, 0, nd->K, ub, R, 1, X, nd->K, dz + u0, nd->units, 0, (PT *)nd->dw + u0,
               nd->units);
        for (u = u0; nd->db && u < u0 + ub; u++) {
            PT s = 0;
            for (r = 0; r < R; r++) s += dz[r * nd->units + u];
            ((PT *)nd->db)[u] = s;
        }
        return;
    }
}

/* Once per backward, before the chunks: the dense kernels transposed and packed, and the
   Winograd kernels flipped and transformed (when finite), for every chunk's input gradient
   (nodes after `first`, the only ones with one). */
static void PF(cconv_plan_backward_weights)(const cconv_plan *p, int first)
{
    int i;
    for (i = first + 1; i < p->nnodes; i++) {
        cconv_pnode *nd = &p->nodes[i];
        if (nd->tpack) nd->tpack_isa = P_GEMM_PACK(1, nd->units, nd->K, (const PT *)nd->w,
                                                   nd->units, (PT *)nd->tpack);
        if (nd->wflip) {
            nd->wflip_ok = P_FINITE((const PT *)nd->w, 9 * nd->g.C * nd->g.CO);
            if (nd->wflip_ok) P_WINO_K(cconv_wino_tile(nd->g.H, nd->g.W), (const PT *)nd->w,
                                       nd->g.C, nd->g.CO, 1, (PT *)nd->wflip);
        }
    }
}

/* After the chunk sums: each node's summed gradients (in chunk 0's slice p_part) into its
   dw and db; a wgrad node's dU becomes dk = G^T dU G there. Returns 1 when such a dk is
   not finite (conv.pyx's after-the-fact check: an Inf or NaN in x or dz always leaves one;
   the caller then runs the backward again with the exact kernel gradients, wino_exact),
   else 0. The dense nodes with dzs wrote theirs already. */
static int PF(cconv_plan_store_grads)(const cconv_plan *p, const PT *p_part)
{
    int i, nonfinite = 0;
    for (i = 0; i < p->nnodes; i++) {
        const cconv_pnode *nd = &p->nodes[i];
        if (nd->dzs) continue;
        if (nd->dw && nd->wgrad && !p->wino_exact) {
            P_WINO_KG(cconv_plan_wino_m(&nd->g), p_part + nd->dw_off, nd->g.C, nd->g.CO,
                      (PT *)nd->dw);
            if (!P_FINITE((const PT *)nd->dw, nd->w_size)) nonfinite = 1;
        } else if (nd->dw) {
            memcpy(nd->dw, p_part + nd->dw_off, (size_t)nd->w_size * sizeof(PT));
        }
        if (nd->db) memcpy(nd->db, p_part + nd->db_off, (size_t)nd->b_size * sizeof(PT));
    }
    return nonfinite;
}

/* The backward pass of a kept training forward, by chunks: every thread takes whole chunks
   of images through all nodes (from the last to node `first`, the first with weights), each
   chunk's weight gradients into its own slice of p_part; then the slices are summed in chunk
   order into each node's dw/db. Dense nodes with dzs keep dz for the whole batch instead, and
   their dw and db come from one product over the batch, tasks beside the sums (p->part_size
   then covers only the other nodes, whose offsets come first). g: dL/d(output) (N, out_size); y: the forward's output;
   bufs: per thread 2 x chunk x maxsz + chunk x mid_img elements. Returns -1 on a failed
   workspace allocation, 1 when a wgrad node's kernel gradient is not finite (then run it
   again with p->wino_exact). */
static int PF(cconv_plan_backward)(const cconv_plan *p, const PT *x, const PT *y, const PT *g,
                                   int64_t N, int nthreads, PT *p_part, PT *bufs, int64_t maxsz,
                                   int first)
{
    int64_t CH = p->chunk, nchunks = (N + CH - 1) / CH, c, e;
    int64_t nsum = (p->part_size + CCONV_PLAN_SUM_BLOCK - 1) / CCONV_PLAN_SUM_BLOCK, ntasks = 0;
    int failed = 0, i;
    PF(cconv_plan_backward_weights)(p, first);
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(|:failed)
    for (c = 0; c < nchunks; c++) {
        int tid = omp_get_thread_num(), j;
        int64_t n0 = c * CH, n = N - n0 < CH ? N - n0 : CH;
        PT *ba = bufs + (int64_t)tid * (2 * CH * maxsz + CH * p->mid_img), *bb = ba + CH * maxsz;
        PT *mid = bb + CH * maxsz;
        const PT *cur = g + n0 * p->out_size;
        for (j = p->nnodes - 1; j >= first; j--) {
            const cconv_pnode *nd = &p->nodes[j];
            const PT *arena = (const PT *)p->arena;
            const PT *a = nd->out_off < 0 ? y + n0 * p->out_size
                                          : arena + nd->out_off * N + n0 * nd->out_size;
            const PT *xin = nd->input < 0 ? x + n0 * p->in_size
                : arena + p->nodes[nd->input].out_off * N + n0 * nd->in_size;
            const int32_t *arg = nd->arg_off >= 0 ? p->args + nd->arg_off * N + n0 * nd->out_size
                                                  : 0;
            PT *dx;
            if (nd->dzs) {          /* dz into the whole batch's (a plain copy when linear) */
                PT *t = (PT *)nd->dzs + n0 * nd->out_size;
                PF(cconv_plan_act_grad)(t, cur, a, n * nd->out_size, nd->act);
                cur = t;
            } else if (nd->act != CCONV_ACT_LINEAR) {
                PT *t = cur == ba ? ba : cur == bb ? bb : ba;
                PF(cconv_plan_act_grad)(t, cur, a, n * nd->out_size, nd->act);
                cur = t;
            }
            if (nd->kind == CCONV_PLAN_DROPOUT) {   /* the forward's mask, recomputed */
                PT *t = cur == ba ? ba : cur == bb ? bb : ba;
                P_DROPOUT(cur, t, n * nd->out_size, n0 * nd->out_size, nd->seed, nd->step,
                          nd->alpha);
                cur = t;
                continue;
            }
            if (nd->kind == CCONV_PLAN_ACT) continue;
            dx = j > first ? (cur == ba ? bb : ba) : 0;
            failed |= PF(cconv_plan_node_grad)(p, nd, cur, xin, arg, p_part + c * p->part_size,
                                               dx, mid, n) != 0;
            cur = dx;
        }
    }
    if (failed) return -1;
    for (i = 0; i < p->nnodes; i++)
        if (p->nodes[i].dzs) ntasks += (p->nodes[i].units + CCONV_PLAN_DW_COLS - 1)
                                       / CCONV_PLAN_DW_COLS;
    /* chunk 0's slice += each later chunk's, in chunk order, by blocks of elements; and the
       dense nodes' whole-batch gradients */
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (e = 0; e < nsum + ntasks; e++) {
        int64_t e0 = e * CCONV_PLAN_SUM_BLOCK, k, cc;
        int64_t e1 = e0 + CCONV_PLAN_SUM_BLOCK < p->part_size ? e0 + CCONV_PLAN_SUM_BLOCK
                                                               : p->part_size;
        if (e >= nsum) {
            PF(cconv_plan_dense_dw)(p, x, N, e - nsum);
            continue;
        }
        for (cc = 1; cc < nchunks; cc++) {
            const PT *CCONV__RESTRICT src = p_part + cc * p->part_size;
            PT *CCONV__RESTRICT dst = p_part;
            for (k = e0; k < e1; k++) dst[k] += src[k];
        }
    }
    return PF(cconv_plan_store_grads)(p, p_part);
}

/* Run the plan on x (N images) into y; by_layers picks the scheme. Winograd kernels are
   transformed again first when the weights changed since the last call. */
static void PF(cconv_plan_run)(const cconv_plan *p, const PT *x, PT *y, int64_t N, int nthreads,
                               int by_layers)
{
    int i;
    int64_t c, packed = 0;
    for (i = 0; i < p->nnodes; i++) {     /* batch norms folded: inference_scale_offset's */
        const cconv_pnode *nd = &p->nodes[i];
        const PT *gamma = (const PT *)nd->bn[0], *beta = (const PT *)nd->bn[1];
        const PT *mean = (const PT *)nd->bn[2], *var = (const PT *)nd->bn[3];
        PT *sc = (PT *)nd->st, *sh = sc + nd->units;
        if (!mean) continue;             /* formulas, in the same order, in the layer's type */
        for (c = 0; c < nd->units; c++) {
            PT inv = (PT)1 / P_SQRT(var[c] + (PT)nd->eps);
            if (gamma) inv = inv * gamma[c];
            sc[c] = inv;
            sh[c] = beta ? -mean[c] * inv + beta[c] : -mean[c] * inv;
        }
    }
    for (i = 0; i < p->nnodes; i++) {
        const cconv_pnode *nd = &p->nodes[i];
        size_t kbytes = (size_t)(9 * nd->g.C * nd->g.CO) * sizeof(PT);
        int64_t ue;
        if (nd->kind != CCONV_PLAN_CONV || nd->algo != CCONV_ALGO_WINOGRAD) continue;
        /* wino holds U (E, C, CO), then the kernel it was computed from */
        ue = cconv_plan_wino_e(&nd->g) * nd->g.C * nd->g.CO;
        if (memcmp((PT *)nd->wino + ue, nd->w, kbytes) == 0) continue;
        P_WINO_K(cconv_plan_wino_m(&nd->g), (const PT *)nd->w, nd->g.C, nd->g.CO, 0,
                 (PT *)nd->wino);
        memcpy((PT *)nd->wino + ue, nd->w, kbytes);
        p->nodes[i].bpack_isa = -1;         /* U changed: pack it again below */
    }
    if (N <= 0) return;
    /* B packed once for all the run's GEMMs; the nodes shared by the threads when there is
       much to pack (MobileNet at 224 x 224: 13 MB of pointwise kernels, a millisecond on
       one thread); each node's packing is the same whichever thread does it */
    for (i = 0; i < p->nnodes; i++) {
        int64_t nb, count;
        packed += cconv_plan_gemm_b(&p->nodes[i], &nb, &count) * nb * count;
    }
    #pragma omp parallel for schedule(dynamic, 1) num_threads(packed >= CCONV_PLAN_PACK_SHARED ? nthreads : 1)
    for (i = 0; i < p->nnodes; i++) {
        cconv_pnode *nd = &p->nodes[i];
        int64_t nb, count, e, K = cconv_plan_gemm_b(nd, &nb, &count);
        const int wino = nd->algo == CCONV_ALGO_WINOGRAD && nd->kind == CCONV_PLAN_CONV;
        const PT *B = wino ? (const PT *)nd->wino : (const PT *)nd->w;
        /* Winograd's U is packed again only when it was transformed again (checked above);
           the other nodes' B is the model's array, which may have changed in place */
        if (wino && nd->bpack && nd->bpack_isa == cconv__isa()) continue;
        nd->bpack_isa = -1;
        /* dense rows that few run on cconv_plan_rows_*, without B packed */
        if (!nd->bpack || (nd->kind == CCONV_PLAN_DENSE && N * nd->rows <= CCONV_PLAN_FEW_ROWS))
            continue;
        /* Winograd: B number e * S + s is columns s * nb .. (s + 1) * nb of U[e] (K x CO) */
        for (e = 0; e < count; e++)
            nd->bpack_isa = wino ? P_GEMM_PACK(0, K, nb, B + e / nd->nsplit * K * nd->g.CO
                                               + e % nd->nsplit * nb, nd->g.CO,
                                               (PT *)nd->bpack + e * nd->bpack_one)
                                 : P_GEMM_PACK(0, K, nb, B, nb, (PT *)nd->bpack);
    }
    if (by_layers) PF(cconv_plan_run_layers)(p, x, y, N, nthreads);
    else PF(cconv_plan_run_chunks)(p, x, y, N, nthreads);
}

#undef PT
#undef PF
#undef P_GEMM
#undef P_GEMM_PACK
#undef P_GEMM_PACKED
#undef P_GEMM_MR
#undef P_GEMM_EXACT
#undef P_ROWS
#undef P_EXP
#undef P_TANH
#undef P_SQRT
#undef P_ERF
#undef P_EXPM1
#undef P_DIRECT
#undef P_DW_ROWS
#undef P_IMPLICIT
#undef P_WINO_K
#undef P_WINO_IN
#undef P_WINO_OUT
#undef P_WINO_DY
#undef P_WINO_KG
#undef P_FINITE
#undef P_POOL_ROWS
#undef P_DROPOUT
