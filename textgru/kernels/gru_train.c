/* The GRU recurrence of TextGRU's training step on the CPU, fp32, forward and backward (textgru.modeling_textgru's
 * `_StepwiseGRU`, when textgru is installed and a C compiler is at hand).
 *
 * Built at first use by textgru.kernels (-O3 -march=native, no -ffast-math: IEEE arithmetic, FMA contraction
 * allowed) and called with ctypes, once per layer for the forward pass and once for the backward pass. It replaces
 * only the per-step loop: a small matmul and a handful of elementwise ops per step, which in PyTorch cost their
 * dispatch more than their arithmetic. The input projections and the weight and input gradients stay one PyTorch
 * matmul per layer. Same equations and layouts as the PyTorch loop (`_gru_recurrence` and `_StepwiseGRU.backward`):
 *
 *   r, z = sigmoid(gates_in[r, z] + h W_hh[r, z]^T + b_hh[r, z])
 *   n    = tanh(gates_in[n] + r * (h W_hh[n]^T + b_hh[n]))
 *   h'   = n + z * (h - n)
 *
 * Layouts (all contiguous, row-major): gates_in (D, T, B, 3H) = x W_ih^T + b_ih; whh_t (D, H, 3H) = W_hh^T;
 * whh (D, 3H, H) = W_hh; bhh (D, 3H); states, cand, rec_n, grad_states, grad_n (D, T, B, H); rz, (D, T, B, 2H);
 * grad_rec (D, T, B, 3H). D directions are independent and run on up to `threads` threads.
 *
 * The products are register-tiled with GCC/Clang vector extensions (16 lanes where the build has AVX-512, 8 with
 * AVX, 4 otherwise); exp is 2^n * p(f) with a degree-6 polynomial (relative error ~1e-7), sigmoid 1 / (1 + exp(-v))
 * with an exact division, tanh from expm1 (a Taylor polynomial near 0): relative error ~3e-7 everywhere.
 */
#include <pthread.h>
#include <stdint.h>
#if defined(__AVX__) && !defined(TEXTGRU_GENERIC)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && !defined(TEXTGRU_NO_AVX512) && !defined(TEXTGRU_GENERIC)
#define VL 16
#ifndef NRV
#define NRV 4
#endif
#elif defined(__AVX__) && !defined(TEXTGRU_GENERIC)
#define VL 8
#ifndef NRV
#define NRV 2
#endif
#else
#define VL 4
#ifndef NRV
#define NRV 2
#endif
#endif
#ifndef MR
#define MR 4
#endif

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));

/* Lanes of the vectors this build computes with (16, 8 or 4). */
int textgru_train_vector_width(void) { return VL; }

static inline vf ld(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void st(float *p, vf v) { memcpy(p, &v, sizeof v); }
/* a broadcast (`(vf){0} + x` would cost an add first: 0 + x is not x for x = -0) */
#if VL == 16
static inline vf bc(float x) { return (vf)_mm512_set1_ps(x); }
#elif VL == 8
static inline vf bc(float x) { return (vf)_mm256_set1_ps(x); }
#else
static inline vf bc(float x) { return (vf){x, x, x, x}; }
#endif
static inline vf vclamp(vf v, float lo, float hi) {
    vi below = v < bc(lo), above = v > bc(hi);
    vi bits = (vi)v;
    bits = (below & (vi)bc(lo)) | (~below & bits);
    bits = (above & (vi)bc(hi)) | (~above & bits);
    return (vf)bits;
}

/* exp(v), v clamped to [-87, 87] (NaN stays NaN): 2^n * p(f) with t = v log2(e) = n + f, |f| <= 0.5, p the
   degree-6 polynomial of 2^f (relative error ~1e-7); 2^n is built in the exponent bits, n in [-126, 126], so the
   result is always a normal float. */
static inline vf vexp(vf v) {
    v = vclamp(v, -87.f, 87.f);
    const vf t = v * bc(1.44269504088896341f);
    const vf n = (t + bc(12582912.f)) - bc(12582912.f); /* round to nearest (1.5 * 2^23) */
    const vf f = t - n;
    vf p = bc(1.540353039e-4f);
    p = p * f + bc(1.333355815e-3f);
    p = p * f + bc(9.618129108e-3f);
    p = p * f + bc(5.550410866e-2f);
    p = p * f + bc(2.402265070e-1f);
    p = p * f + bc(6.931471806e-1f);
    p = p * f + bc(1.f);
    const vf whole = (vf)((vi)n & (vi)(n == n)); /* NaN -> 0 before the integer conversion (p is NaN already) */
    const vi e = (__builtin_convertvector(whole, vi) + 127) << 23;
    return p * (vf)e;
}

/* 1 / (1 + exp(-v)); below -87 it returns ~1.6e-38 (torch: smaller denormals, then 0), above 87 exactly 1. */
static inline vf vsigmoid(vf v) { return bc(1.f) / (bc(1.f) + vexp(-v)); }

/* tanh(a) = sign(a) * -m / (2 + m) with m = expm1(-2|a|): m from its Taylor polynomial where |2a| < 0.5 (there
   1 - exp would cancel and lose the relative accuracy of small values), from exp elsewhere. Relative error ~3e-7
   everywhere, exact sign and zero; +-inf -> +-1, NaN -> NaN. */
static inline vf vtanh(vf a) {
    const vi sign = (vi)a & (vi)bc(-0.f);
    const vf y = (vf)((vi)a ^ sign) * bc(-2.f); /* -2|a| */
    vf q = bc(1.f / 40320.f);
    q = q * y + bc(1.f / 5040.f);
    q = q * y + bc(1.f / 720.f);
    q = q * y + bc(1.f / 120.f);
    q = q * y + bc(1.f / 24.f);
    q = q * y + bc(1.f / 6.f);
    q = q * y + bc(0.5f);
    q = q * y + bc(1.f);
    const vi small = y > bc(-0.5f);
    const vf m = (vf)((small & (vi)(y * q)) | (~small & (vi)(vexp(y) - bc(1.f))));
    return (vf)((vi)(-m / (bc(2.f) + m)) | sign);
}

static inline float ssigmoid(float v) { return vsigmoid(bc(v))[0]; }
static inline float stanh(float v) { return vtanh(bc(v))[0]; }

/* ---- products: c (M x N, row stride ldc) [+]= a (M x K, lda) . w (K x N, ldw) ---- */

static inline __attribute__((always_inline)) void tile(const int mr, const int nrv, int K, const float *a, int lda,
                                                       const float *w, int ldw, float *c, int ldc, int accumulate) {
    vf acc[MR][NRV];
    for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nrv; ++j) acc[i][j] = accumulate ? ld(c + (size_t)i * ldc + j * VL) : bc(0.f);
    for (int k = 0; k < K; ++k) {
        vf b[NRV];
        for (int j = 0; j < nrv; ++j) b[j] = ld(w + (size_t)k * ldw + j * VL);
        for (int i = 0; i < mr; ++i) {
            const vf av = bc(a[(size_t)i * lda + k]);
            for (int j = 0; j < nrv; ++j) acc[i][j] += av * b[j];
        }
    }
    for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nrv; ++j) st(c + (size_t)i * ldc + j * VL, acc[i][j]);
}

static void gemm_panel(int M, int N, int K, const float *a, int lda, const float *w, int ldw, float *c, int ldc,
                       int accumulate) {
    int n0 = 0;
    for (; n0 + NRV * VL <= N; n0 += NRV * VL) {
        int m = 0;
        for (; m + MR <= M; m += MR)
            tile(MR, NRV, K, a + (size_t)m * lda, lda, w + n0, ldw, c + (size_t)m * ldc + n0, ldc, accumulate);
        for (; m < M; ++m) tile(1, NRV, K, a + (size_t)m * lda, lda, w + n0, ldw, c + (size_t)m * ldc + n0, ldc, accumulate);
    }
    for (; n0 + VL <= N; n0 += VL) {
        int m = 0;
        for (; m + MR <= M; m += MR)
            tile(MR, 1, K, a + (size_t)m * lda, lda, w + n0, ldw, c + (size_t)m * ldc + n0, ldc, accumulate);
        for (; m < M; ++m) tile(1, 1, K, a + (size_t)m * lda, lda, w + n0, ldw, c + (size_t)m * ldc + n0, ldc, accumulate);
    }
    for (int m = 0; m < M && n0 < N; ++m) /* the last N % VL columns */
        for (int n = n0; n < N; ++n) {
            float s = accumulate ? c[(size_t)m * ldc + n] : 0.f;
            for (int k = 0; k < K; ++k) s += a[(size_t)m * lda + k] * w[(size_t)k * ldw + n];
            c[(size_t)m * ldc + n] = s;
        }
}

/* K in blocks of KC rows of w, so a column panel of w (KC x NRV * VL floats: 32 KB at AVX-512) stays in L1 while
   every row tile of a passes over it. */
#define KC 128
static void gemm(int M, int N, int K, const float *a, int lda, const float *w, int ldw, float *c, int ldc,
                 int accumulate) {
    for (int k0 = 0; k0 < K; k0 += KC)
        gemm_panel(M, N, K - k0 < KC ? K - k0 : KC, a + k0, lda, w + (size_t)k0 * ldw, ldw, c, ldc, accumulate || k0);
}

/* The product on its own (tests, benchmarks/native_profile.py). */
void textgru_train_gemm(int M, int N, int K, const float *a, int lda, const float *w, int ldw, float *c, int ldc,
                        int accumulate) {
    gemm(M, N, K, a, lda, w, ldw, c, ldc, accumulate);
}

/* ---- one direction, forward: every step's states, and what the backward pass needs ---- */

static void forward_direction(int T, int B, int H, const float *gates_in, const float *whh_t, const float *bhh,
                              float *states, float *rz, float *cand, float *rec_n, float *rec) {
    const int H3 = 3 * H;
    for (int t = 0; t < T; ++t) {
        const float *h = t ? states + (size_t)(t - 1) * B * H : NULL;
        for (int b = 0; b < B; ++b) memcpy(rec + (size_t)b * H3, bhh, sizeof(float) * H3);
        if (h) gemm(B, H3, H, h, H, whh_t, H3, rec, H3, 1);
        for (int b = 0; b < B; ++b) {
            const float *g = gates_in + ((size_t)t * B + b) * H3, *q = rec + (size_t)b * H3;
            const float *hb = h ? h + (size_t)b * H : NULL;
            float *out = states + ((size_t)t * B + b) * H, *rzb = rz + ((size_t)t * B + b) * 2 * H;
            float *nb = cand + ((size_t)t * B + b) * H, *qn = rec_n + ((size_t)t * B + b) * H;
            int j = 0;
            for (; j + VL <= H; j += VL) {
                const vf r = vsigmoid(ld(g + j) + ld(q + j));
                const vf z = vsigmoid(ld(g + H + j) + ld(q + H + j));
                const vf qnj = ld(q + 2 * H + j);
                const vf n = vtanh(ld(g + 2 * H + j) + r * qnj);
                const vf hp = hb ? ld(hb + j) : bc(0.f);
                st(rzb + j, r);
                st(rzb + H + j, z);
                st(nb + j, n);
                st(qn + j, qnj);
                st(out + j, n + z * (hp - n));
            }
            for (; j < H; ++j) {
                const float r = ssigmoid(g[j] + q[j]), z = ssigmoid(g[H + j] + q[H + j]), qnj = q[2 * H + j];
                const float n = stanh(g[2 * H + j] + r * qnj);
                const float hp = hb ? hb[j] : 0.f;
                rzb[j] = r;
                rzb[H + j] = z;
                nb[j] = n;
                qn[j] = qnj;
                out[j] = n + z * (hp - n);
            }
        }
    }
}

/* ---- one direction, backward: d(pre-activations) of every step, the recurrent matmul's included ---- */

static void backward_direction(int T, int B, int H, const float *grad_states, const float *states, const float *rz,
                               const float *cand, const float *rec_n, const float *whh, float *grad_rec,
                               float *grad_n, float *carry) {
    const int H3 = 3 * H;
    memset(carry, 0, sizeof(float) * (size_t)B * H); /* d(loss)/d(h_t) from the steps after t */
    for (int t = T - 1; t >= 0; --t) {
        const float *hprev = t ? states + (size_t)(t - 1) * B * H : NULL;
        for (int b = 0; b < B; ++b) {
            const size_t row = (size_t)t * B + b;
            const float *gs = grad_states + row * H, *rzb = rz + row * 2 * H, *nb = cand + row * H;
            const float *qn = rec_n + row * H, *hp = hprev ? hprev + (size_t)b * H : NULL;
            float *gh = carry + (size_t)b * H, *gr = grad_rec + row * H3, *gn = grad_n + row * H;
            int j = 0;
            for (; j + VL <= H; j += VL) {
                const vf dh = ld(gh + j) + ld(gs + j);
                const vf r = ld(rzb + j), z = ld(rzb + H + j), n = ld(nb + j);
                const vf h = hp ? ld(hp + j) : bc(0.f);
                const vf dn = dh * (bc(1.f) - z) * (bc(1.f) - n * n);
                st(gn + j, dn);
                st(gr + j, dn * ld(qn + j) * r * (bc(1.f) - r));
                st(gr + H + j, dh * (h - n) * z * (bc(1.f) - z));
                st(gr + 2 * H + j, dn * r);
                st(gh + j, dh * z);
            }
            for (; j < H; ++j) {
                const float dh = gh[j] + gs[j], r = rzb[j], z = rzb[H + j], n = nb[j], h = hp ? hp[j] : 0.f;
                const float dn = dh * (1.f - z) * (1.f - n * n);
                gn[j] = dn;
                gr[j] = dn * qn[j] * r * (1.f - r);
                gr[H + j] = dh * (h - n) * z * (1.f - z);
                gr[2 * H + j] = dn * r;
                gh[j] = dh * z;
            }
        }
        if (t) gemm(B, H, H3, grad_rec + (size_t)t * B * H3, H3, whh, H, carry, H, 1); /* h_{t-1}'s share */
    }
}

/* ---- entry points: directions on up to `threads` threads ---- */

typedef struct {
    int backward, d0, d1, T, B, H;
    const float *a, *b, *c, *d, *e, *f;
    float *o1, *o2, *o3, *o4;
    int failed;
} job_t;

static void *run_job(void *arg) {
    job_t *j = (job_t *)arg;
    const size_t TBH = (size_t)j->T * j->B * j->H, H3 = 3 * (size_t)j->H;
    float *scratch = malloc(sizeof(float) * (size_t)j->B * H3);
    if (!scratch) {
        j->failed = 1;
        return NULL;
    }
    for (int d = j->d0; d < j->d1; ++d) {
        if (!j->backward) /* a gates_in, b whh_t, c bhh; o1 states, o2 rz, o3 cand, o4 rec_n */
            forward_direction(j->T, j->B, j->H, j->a + d * TBH * 3, j->b + d * (size_t)j->H * H3, j->c + d * H3,
                              j->o1 + d * TBH, j->o2 + d * TBH * 2, j->o3 + d * TBH, j->o4 + d * TBH, scratch);
        else /* a grad_states, b states, c rz, d cand, e rec_n, f whh; o1 grad_rec, o2 grad_n */
            backward_direction(j->T, j->B, j->H, j->a + d * TBH, j->b + d * TBH, j->c + d * TBH * 2, j->d + d * TBH,
                               j->e + d * TBH, j->f + d * (size_t)j->H * H3, j->o1 + d * TBH * 3, j->o2 + d * TBH,
                               scratch);
    }
    free(scratch);
    return NULL;
}

/* Returns 0, or -1 when memory ran out (the outputs are then incomplete). */
static int run_directions(job_t base, int D, int threads) {
    if (threads < 1) threads = 1;
    if (threads > D) threads = D;
    job_t jobs[8];
    pthread_t ids[8];
    int started[8] = {0};
    if (threads > 8) threads = 8;
    for (int i = 0; i < threads; ++i) {
        jobs[i] = base;
        jobs[i].d0 = D * i / threads;
        jobs[i].d1 = D * (i + 1) / threads;
        jobs[i].failed = 0;
    }
    for (int i = 1; i < threads; ++i) started[i] = pthread_create(&ids[i], NULL, run_job, &jobs[i]) == 0;
    for (int i = 1; i < threads; ++i)
        if (!started[i]) run_job(&jobs[i]); /* no thread to be had: run it here */
    run_job(&jobs[0]);
    int failed = jobs[0].failed;
    for (int i = 1; i < threads; ++i) {
        if (started[i]) pthread_join(ids[i], NULL);
        failed |= jobs[i].failed;
    }
    return failed ? -1 : 0;
}

int textgru_gru_train_forward(int D, int T, int B, int H, const float *gates_in, const float *whh_t,
                              const float *bhh, float *states, float *rz, float *cand, float *rec_n, int threads) {
    job_t job = {0, 0, 0, T, B, H, gates_in, whh_t, bhh, NULL, NULL, NULL, states, rz, cand, rec_n, 0};
    return run_directions(job, D, threads);
}

int textgru_gru_train_backward(int D, int T, int B, int H, const float *grad_states, const float *states,
                               const float *rz, const float *cand, const float *rec_n, const float *whh,
                               float *grad_rec, float *grad_n, int threads) {
    job_t job = {1, 0, 0, T, B, H, grad_states, states, rz, cand, rec_n, whh, grad_rec, grad_n, NULL, NULL, 0};
    return run_directions(job, D, threads);
}
