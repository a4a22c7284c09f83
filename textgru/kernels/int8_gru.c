/* Fused int8 kernels for TextGRU inference on the CPU (textgru.native).
 *
 * Built by textgru.native at first use with the machine's C compiler (-O3 -march=native); loaded with ctypes.
 * The int8 products take the best instruction set the build targets: AVX512-VNNI (`vpdpbusd`), else AVX2
 * (`vpmaddubsw` on |x| and sign-adjusted weights, which cannot saturate since |x|, |w| <= 127), else plain C loops.
 * All three compute the same integer sums. TEXTGRU_NO_AVX512 and TEXTGRU_GENERIC force the lesser paths (tests).
 *
 * Conventions:
 *  - activations are quantised per row, symmetric: q = round(x / s) with s = max|x| / 127, stored as q + 128 (u8);
 *    the recurrent state too, row by row at every step;
 *  - weights are int8 per output feature (scale w_scale[n]), packed for VNNI as [N/16][K/4][16][4]: 16 output
 *    features by 4 consecutive inputs, one 64-byte vector per (block, input group); N and K padded with zeros;
 *  - y[m, n] = s[m] * w_scale[n] * (sum_k u8[m, k] * w[n, k] - 128 * colsum[n]) + bias[n], where colsum[n] is
 *    sum_k w[n, k], so the +128 offset of the activations cancels exactly.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512VNNI__) && defined(__AVX512F__) && defined(__AVX512BW__) && !defined(TEXTGRU_GENERIC) && \
    !defined(TEXTGRU_NO_AVX512)
#define TEXTGRU_VNNI 1
#define TEXTGRU_AVX2 0
#include <immintrin.h>
#elif defined(__AVX2__) && defined(__FMA__) && !defined(TEXTGRU_GENERIC)
#define TEXTGRU_VNNI 0
#define TEXTGRU_AVX2 1
#include <immintrin.h>
#else
#define TEXTGRU_VNNI 0
#define TEXTGRU_AVX2 0
#endif

/* Which product code this build runs: 2 = AVX512-VNNI, 1 = AVX2, 0 = plain C. */
int textgru_kernel_isa(void) { return TEXTGRU_VNNI ? 2 : TEXTGRU_AVX2; }

/* ---- products: y (M x N, row stride ldy) = dequant(A_u8 (M x Kp, row stride lda) . W) ---- */

#if TEXTGRU_VNNI
static inline __attribute__((always_inline)) void tile(const uint8_t *a, int lda, const int8_t *w, int kg_count,
                                                       const float *a_scale, const float *w_scale,
                                                       const int32_t *offset, const float *bias, float *y, int ldy,
                                                       const int MR, const int NR) {
    __m512i acc[4][4];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
    for (int kg = 0; kg < kg_count; ++kg) {
        __m512i b[4];
        for (int j = 0; j < NR; ++j) b[j] = _mm512_loadu_si512((const void *)(w + ((size_t)j * kg_count + kg) * 64));
        for (int i = 0; i < MR; ++i) {
            int32_t four;
            memcpy(&four, a + (size_t)i * lda + (size_t)kg * 4, 4);
            const __m512i av = _mm512_set1_epi32(four);
            for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, b[j]);
        }
    }
    for (int i = 0; i < MR; ++i) {
        const __m512 sa = _mm512_set1_ps(a_scale[i]);
        for (int j = 0; j < NR; ++j) {
            const __m512 scale = _mm512_mul_ps(sa, _mm512_loadu_ps(w_scale + j * 16));
            const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], _mm512_loadu_si512(offset + j * 16)));
            _mm512_storeu_ps(y + (size_t)i * ldy + j * 16, _mm512_fmadd_ps(v, scale, _mm512_loadu_ps(bias + j * 16)));
        }
    }
}
#endif

#if TEXTGRU_AVX2
/* MR rows x one block of 16 outputs (two 8-output halves). x = u8 - 128 is the signed activation; the sums are
   sum_k x * w directly, so the epilogue does not subtract the offset. */
static inline __attribute__((always_inline)) void tile_avx2(const uint8_t *a, int lda, const int8_t *w,
                                                            int kg_count, const float *a_scale, const float *w_scale,
                                                            const float *bias, float *y, int ldy, const int MR) {
    __m256i acc[4][2];
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    for (int kg = 0; kg < kg_count; ++kg) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + (size_t)kg * 64));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + (size_t)kg * 64 + 32));
        for (int i = 0; i < MR; ++i) {
            int32_t four;
            memcpy(&four, a + (size_t)i * lda + (size_t)kg * 4, 4);
            const __m256i x = _mm256_xor_si256(_mm256_set1_epi32(four), flip); /* u8 - 128 as s8 */
            const __m256i ax = _mm256_abs_epi8(x);
            acc[i][0] = _mm256_add_epi32(acc[i][0],
                                         _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, x)), ones));
            acc[i][1] = _mm256_add_epi32(acc[i][1],
                                         _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, x)), ones));
        }
    }
    for (int i = 0; i < MR; ++i) {
        const __m256 sa = _mm256_set1_ps(a_scale[i]);
        for (int h = 0; h < 2; ++h) {
            const __m256 scale = _mm256_mul_ps(sa, _mm256_loadu_ps(w_scale + h * 8));
            const __m256 v = _mm256_cvtepi32_ps(acc[i][h]);
            _mm256_storeu_ps(y + (size_t)i * ldy + h * 8, _mm256_fmadd_ps(v, scale, _mm256_loadu_ps(bias + h * 8)));
        }
    }
}
#endif

/* Np = N rounded up to 16; y needs Np columns (ldy >= Np); w_scale, offset (= 128 * colsum) and bias have Np. */
void textgru_qgemm(const uint8_t *a, int lda, const float *a_scale, int m, const int8_t *w, int kp, int np,
                   const float *w_scale, const int32_t *offset, const float *bias, float *y, int ldy) {
    const int kg_count = kp / 4, blocks = np / 16;
#if TEXTGRU_VNNI
    /* column panels outermost: a panel of 4 x 16 outputs (K x 64 bytes of weights) stays in L1 over all rows */
    int nb = 0;
    for (; nb + 4 <= blocks; nb += 4) {
        const int8_t *panel = w + (size_t)nb * kg_count * 64;
        int i = 0;
        for (; i + 4 <= m; i += 4)
            tile(a + (size_t)i * lda, lda, panel, kg_count, a_scale + i, w_scale + nb * 16, offset + nb * 16,
                 bias + nb * 16, y + (size_t)i * ldy + nb * 16, ldy, 4, 4);
        for (; i < m; ++i)
            tile(a + (size_t)i * lda, lda, panel, kg_count, a_scale + i, w_scale + nb * 16, offset + nb * 16,
                 bias + nb * 16, y + (size_t)i * ldy + nb * 16, ldy, 1, 4);
    }
    for (; nb < blocks; ++nb) {
        const int8_t *panel = w + (size_t)nb * kg_count * 64;
        int i = 0;
        for (; i + 4 <= m; i += 4)
            tile(a + (size_t)i * lda, lda, panel, kg_count, a_scale + i, w_scale + nb * 16, offset + nb * 16,
                 bias + nb * 16, y + (size_t)i * ldy + nb * 16, ldy, 4, 1);
        for (; i < m; ++i)
            tile(a + (size_t)i * lda, lda, panel, kg_count, a_scale + i, w_scale + nb * 16, offset + nb * 16,
                 bias + nb * 16, y + (size_t)i * ldy + nb * 16, ldy, 1, 1);
    }
#elif TEXTGRU_AVX2
    (void)offset;
    for (int nb = 0; nb < blocks; ++nb) {
        const int8_t *panel = w + (size_t)nb * kg_count * 64;
        int i = 0;
        for (; i + 4 <= m; i += 4)
            tile_avx2(a + (size_t)i * lda, lda, panel, kg_count, a_scale + i, w_scale + nb * 16, bias + nb * 16,
                      y + (size_t)i * ldy + nb * 16, ldy, 4);
        for (; i < m; ++i)
            tile_avx2(a + (size_t)i * lda, lda, panel, kg_count, a_scale + i, w_scale + nb * 16, bias + nb * 16,
                      y + (size_t)i * ldy + nb * 16, ldy, 1);
    }
#else
    int32_t acc[16];
    for (int i = 0; i < m; ++i) {
        const uint8_t *row = a + (size_t)i * lda;
        for (int nb = 0; nb < blocks; ++nb) {
            const int8_t *wb = w + (size_t)nb * kg_count * 64;
            for (int c = 0; c < 16; ++c) acc[c] = 0;
            for (int kg = 0; kg < kg_count; ++kg)
                for (int c = 0; c < 16; ++c)
                    for (int q = 0; q < 4; ++q)
                        acc[c] += (int32_t)row[kg * 4 + q] * (int32_t)wb[((size_t)kg * 16 + c) * 4 + q];
            float *out = y + (size_t)i * ldy + nb * 16;
            for (int c = 0; c < 16; ++c) {
                const int n = nb * 16 + c;
                out[c] = (float)(acc[c] - offset[n]) * (a_scale[i] * w_scale[n]) + bias[n];
            }
        }
    }
#endif
}

/* ---- per-row layer norm and quantisation ---- */

static void norm_row(const float *x, int k, const float *gamma, const float *beta, float eps, float *out) {
    float mean = 0.f, var = 0.f;
    for (int j = 0; j < k; ++j) mean += x[j];
    mean /= (float)k;
    for (int j = 0; j < k; ++j) {
        const float d = x[j] - mean;
        var += d * d;
    }
    const float rstd = 1.f / sqrtf(var / (float)k + eps);
    for (int j = 0; j < k; ++j) out[j] = (x[j] - mean) * rstd * gamma[j] + beta[j];
}

/* out (M x K) = LayerNorm(x) row by row. */
void textgru_layer_norm(const float *x, int ldx, int m, int k, const float *gamma, const float *beta, float eps,
                        float *out, int ldo) {
    for (int i = 0; i < m; ++i) norm_row(x + (size_t)i * ldx, k, gamma, beta, eps, out + (size_t)i * ldo);
}

/* q (M x kp, u8) and scale (M) from x (M x K): LayerNorm first when gamma is not NULL. Columns k..kp-1 get 128. */
void textgru_quantize_rows(const float *x, int ldx, int m, int k, const float *gamma, const float *beta, float eps,
                           uint8_t *q, int kp, float *scale, float *scratch) {
    for (int i = 0; i < m; ++i) {
        const float *row = x + (size_t)i * ldx;
        if (gamma) {
            norm_row(row, k, gamma, beta, eps, scratch);
            row = scratch;
        }
        float amax = 0.f;
        for (int j = 0; j < k; ++j) amax = fmaxf(amax, fabsf(row[j]));
        const float s = amax > 1e-30f ? amax / 127.f : 1.f, inv = 1.f / s; /* tiny rows: 1/s would overflow */
        uint8_t *qi = q + (size_t)i * kp;
        for (int j = 0; j < k; ++j) qi[j] = (uint8_t)(int)(row[j] * inv + 128.5f); /* in [1, 255.5]: rounds */
        for (int j = k; j < kp; ++j) qi[j] = 128;
        scale[i] = s;
    }
}

/* ---- one direction of one GRU layer over a batch of packed rows ---- */

static inline float sigmoid(float v) {
    v = fminf(fmaxf(v, -30.f), 30.f);
    return 1.f / (1.f + expf(-v));
}

#if TEXTGRU_VNNI
/* 1 / (1 + exp(-v)) on 16 lanes: exp as 2^n * p(f), p the degree-6 Taylor polynomial of 2^f on |f| <= 0.5
   (relative error ~1e-7), the reciprocal as rcp14 and one Newton step (~1e-8). */
static inline __m512 sigmoid16(__m512 v) {
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-30.f)), _mm512_set1_ps(30.f));
    const __m512 t = _mm512_mul_ps(v, _mm512_set1_ps(-1.44269504088896341f)); /* -v * log2(e) */
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.540353039e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.333355815e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618129108e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550410866e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402265070e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471806e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
    const __m512 d = _mm512_add_ps(_mm512_scalef_ps(p, n), _mm512_set1_ps(1.f));
    const __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.f)));
}

/* The gate math of one row for lanes j .. j+15; returns how many lanes it did (0 when fewer than 16 remain). */
static inline int gates16(const float *xt, const float *g, float *hb, float *ot, int hs, int j, int accumulate) {
    if (j + 16 > hs) return 0;
    const __m512 r = sigmoid16(_mm512_add_ps(_mm512_loadu_ps(xt + j), _mm512_loadu_ps(g + j)));
    const __m512 z = sigmoid16(_mm512_add_ps(_mm512_loadu_ps(xt + hs + j), _mm512_loadu_ps(g + hs + j)));
    const __m512 a = _mm512_fmadd_ps(r, _mm512_loadu_ps(g + 2 * hs + j), _mm512_loadu_ps(xt + 2 * hs + j));
    const __m512 two = _mm512_set1_ps(2.f);
    const __m512 n = _mm512_fmsub_ps(two, sigmoid16(_mm512_mul_ps(two, a)), _mm512_set1_ps(1.f)); /* tanh */
    const __m512 h = _mm512_fmadd_ps(z, _mm512_sub_ps(_mm512_loadu_ps(hb + j), n), n);
    _mm512_storeu_ps(hb + j, h);
    _mm512_storeu_ps(ot + j, accumulate ? _mm512_add_ps(_mm512_loadu_ps(ot + j), h) : h);
    return 16;
}
#endif

/*
 * Rows are sorted by length, longest first; row b's tokens are x rows offsets[b] .. offsets[b] + lengths[b] - 1.
 * xproj (tokens x ldx) holds this direction's input products with the input bias, gates r, z, n (torch's order)
 * at columns 0..3H-1. The recurrent weights are packed as for textgru_qgemm (N = 3H, padded to np; K = H padded
 * to kp). With `reverse`, step s of row b reads and writes token lengths[b] - 1 - s (the backward direction).
 * out (tokens x ldo): the new state is written (accumulate = 0) or added (accumulate = 1, the residual `add`).
 * When `index` is not NULL, token t's input products are row index[t] of xproj (a per-vocabulary table).
 * Scratch: h (B x H floats), hq (B x kp bytes), gh (B x np floats), qscale (B floats).
 */
void textgru_gru_direction(const float *xproj, int ldx, const int64_t *index, const int64_t *offsets,
                           const int64_t *lengths, int batch,
                           const int8_t *w, int h_size, int kp, int np, const float *w_scale, const int32_t *offset,
                           const float *bias, int reverse, float *out, int ldo, int accumulate, float *h, uint8_t *hq,
                           float *gh, float *qscale) {
    const int hs = h_size;
    memset(h, 0, sizeof(float) * (size_t)batch * hs);
    memset(hq, 128, (size_t)batch * kp);
    for (int b = 0; b < batch; ++b) qscale[b] = 1.f; /* the zero state */
    int active = batch;
    for (int s = 0;; ++s) {
        while (active > 0 && lengths[active - 1] <= s) --active;
        if (active == 0) break;
        /* this step's input rows are scattered (a vocabulary table, or tokens far apart): start fetching them so
           they arrive while the recurrent product runs */
        for (int b = 0; b < active; ++b) {
            const int64_t t = offsets[b] + (reverse ? lengths[b] - 1 - s : s);
            const char *row = (const char *)(xproj + (size_t)(index ? index[t] : t) * ldx);
            for (int byte = 0; byte < 3 * hs * (int)sizeof(float); byte += 64) __builtin_prefetch(row + byte, 0, 3);
        }
        textgru_qgemm(hq, kp, qscale, active, w, kp, np, w_scale, offset, bias, gh, np);
        for (int b = 0; b < active; ++b) {
            const int64_t t = offsets[b] + (reverse ? lengths[b] - 1 - s : s);
            const float *xt = xproj + (size_t)(index ? index[t] : t) * ldx, *g = gh + (size_t)b * np;
            float *restrict hb = h + (size_t)b * hs, *restrict ot = out + (size_t)t * ldo;
            uint8_t *restrict qb = hq + (size_t)b * kp;
            int j = 0;
#if TEXTGRU_VNNI
            for (int done; (done = gates16(xt, g, hb, ot, hs, j, accumulate)) > 0;) j += done;
#endif
            for (; j < hs; ++j) {
                const float r = sigmoid(xt[j] + g[j]);
                const float z = sigmoid(xt[hs + j] + g[hs + j]);
                const float n = 2.f * sigmoid(2.f * (xt[2 * hs + j] + r * g[2 * hs + j])) - 1.f; /* tanh */
                const float hn = n + z * (hb[j] - n);
                hb[j] = hn;
                ot[j] = accumulate ? ot[j] + hn : hn;
            }
            /* the state's own scale (a fixed 1/127 would lose small states) for the next step's product */
            float amax = 0.f;
            for (int i = 0; i < hs; ++i) amax = fmaxf(amax, fabsf(hb[i]));
            const float scale = amax > 1e-30f ? amax / 127.f : 1.f, inv = 1.f / scale; /* 1/tiny would overflow */
            for (int i = 0; i < hs; ++i) qb[i] = (uint8_t)(int)(hb[i] * inv + 128.5f); /* in [1, 255.5]: rounds */
            qscale[b] = scale;
        }
    }
}

/* ---- attention pooling (structured self-attention): weights = softmax_t(heads . tanh(scorer . x_t)) ---- */

/*
 * x (tokens x width), rows packed in row order (row b: offsets[b] .. + lengths[b]); scores (tokens x lds) holds
 * scorer . x_t at columns 0..A-1; heads (nh x A). pooled (batch x nh * width) is written for every row (zeros for
 * empty rows). Scratch: w (tokens x nh floats), th (A floats).
 */
void textgru_attention_pool(const float *x, int width, const float *scores, int lds, int a_size, const float *heads,
                            int nh, const int64_t *offsets, const int64_t *lengths, int batch, float *pooled,
                            float *w, float *th) {
    for (int b = 0; b < batch; ++b) {
        float *out = pooled + (size_t)b * nh * width;
        memset(out, 0, sizeof(float) * (size_t)nh * width);
        const int64_t start = offsets[b], len = lengths[b];
        if (len <= 0) continue;
        for (int64_t t = start; t < start + len; ++t) {
            const float *s = scores + (size_t)t * lds;
            for (int a = 0; a < a_size; ++a) th[a] = 2.f * sigmoid(2.f * s[a]) - 1.f; /* tanh */
            for (int h = 0; h < nh; ++h) {
                const float *hw = heads + (size_t)h * a_size;
                float dot = 0.f;
                for (int a = 0; a < a_size; ++a) dot += th[a] * hw[a];
                w[t * nh + h] = dot;
            }
        }
        for (int h = 0; h < nh; ++h) {
            float top = -FLT_MAX, total = 0.f;
            for (int64_t t = start; t < start + len; ++t) top = fmaxf(top, w[t * nh + h]);
            for (int64_t t = start; t < start + len; ++t) total += (w[t * nh + h] = expf(w[t * nh + h] - top));
            const float inv = 1.f / total;
            float *o = out + (size_t)h * width;
            for (int64_t t = start; t < start + len; ++t) {
                const float wt = w[t * nh + h] * inv;
                const float *xt = x + (size_t)t * width;
                for (int j = 0; j < width; ++j) o[j] += wt * xt[j];
            }
        }
    }
}
