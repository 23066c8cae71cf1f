/* freqdet.dct._banded: the frequency transform on a CPU, from pixels to the wire dtype.
 *
 * The same arithmetic as freqdet.dct.separable's torch path (which runs everywhere, GPUs
 * included). For an image X (H x W x 3, uint8 or float32, any strides) and each colour
 * component asked for: its row m of the colour matrix and offset b, the plane
 *
 *   P[h][w]         = sum_k m[k] * X[h][w][k] + b                                     (colour)
 *
 * and the per-axis operators of freqdet.dct.operators.axis_operator,
 *
 *   across[h][v][j] = sum_t col_weights[v][t][j] * P[h][col_index[t][j]]              (pass 1)
 *   out[c][i][j]    = scale[c] * sum_t row_weights[u_c][i][t] * across[row_index[i][t]][v_c][j]  (pass 2)
 *
 * with (u_c, v_c) the frequency pair of output channel c. No plane is transposed: pass 1
 * works one image row at a time, converting its colours into a line that stays in the L1
 * cache, gathering each tap's pixels for every cell once (for all v), then summing with
 * per-cell weights along j; its result is laid out so that pass 2 sums a few whole rows with
 * one weight each, for every v needed with a u in one sum, in chunks whose sources stay in
 * the L1 cache across the u. The stores write the wire dtype directly: int16 / int8 rounded
 * to nearest (half away from zero) and clamped, or float32. Components with the same operators
 * and channels (Cb and Cr) go as the planes of one group: one pass over the pixels converts
 * their colours, and each weight and index loaded serves every plane.
 *
 * With timed=True, banded_dct returns the seconds spent in the colour conversion, pass 1,
 * pass 2 and the stores (for tools/benchmark.py --stages); otherwise None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_GROUPS 8 /* groups */
#define CHUNK 512 /* floats of a pass-2 row summed for every u before moving on */

typedef struct {
    Py_buffer view;
    int held;
} Buffer;

static const char *item_format(const Py_buffer *view) {
    const char *got = view->format;
    if (got[0] == '@' || got[0] == '=' || got[0] == '<')
        got++;
    return got;
}

/* A buffer of `ndim` dimensions and one of the item `formats`; C-contiguous unless `strided`. */
static int get_buffer(PyObject *obj, Buffer *buffer, const char *formats, int ndim, int writable, int strided,
                      const char *name) {
    int flags = PyBUF_FORMAT | (strided ? PyBUF_STRIDES : PyBUF_C_CONTIGUOUS) | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &buffer->view, flags) < 0)
        return -1;
    buffer->held = 1;
    const char *got = item_format(&buffer->view);
    int same = strlen(got) == 1 && strchr(formats, got[0]) != NULL;
    /* int64 is 'l' on LP64 platforms and 'q' elsewhere. */
    if (!same && strcmp(formats, "q") == 0 && strcmp(got, "l") == 0 && buffer->view.itemsize == 8)
        same = 1;
    if (buffer->view.ndim != ndim || !same) {
        PyErr_Format(PyExc_ValueError, "banded_dct: %s: expected a %s%d-d array of format '%s', got %d-d '%s'", name,
                     strided ? "" : "C-contiguous ", ndim, formats, buffer->view.ndim, buffer->view.format);
        return -1;
    }
    return 0;
}

static void release(Buffer *buffers, int count) {
    for (int k = 0; k < count; k++)
        if (buffers[k].held)
            PyBuffer_Release(&buffers[k].view);
}

static inline double now(int timed) {
    if (!timed)
        return 0.0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The hot loops, compiled for AVX-512, AVX2 + FMA and the baseline; the loader picks one. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* Round to nearest (halves away from zero) and clamp to +-limit, without branches so that
 * the loops below compile to vector instructions. */
static inline int32_t round_clamp(float x, float limit) {
    x = x + copysignf(0.5f, x);
    x = x < -limit ? -limit : x;
    x = x > limit ? limit : x;
    return (int32_t)x;
}

#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

/* dst (= or +=) the weighted sum of m <= 6 rows of n floats, one weight per row: in one sweep
 * of 1, 2, 4 or 6 rows (the rows past m read with weight 0). */
INLINE void sum_rows(float *restrict dst, const float *const *rows, const float *w, int m, Py_ssize_t n,
                     int add) {
    const float *restrict a = rows[0];
    const float *restrict b = rows[m > 1 ? 1 : 0];
    const float *restrict c = rows[m > 2 ? 2 : 0];
    const float *restrict d = rows[m > 3 ? 3 : 0];
    const float *restrict e = rows[m > 4 ? 4 : 0];
    const float *restrict f = rows[m > 5 ? 5 : 0];
    const float wa = w[0], wb = m > 1 ? w[1] : 0.0f, wc = m > 2 ? w[2] : 0.0f, wd = m > 3 ? w[3] : 0.0f;
    const float we = m > 4 ? w[4] : 0.0f, wf = m > 5 ? w[5] : 0.0f;
    if (m == 1 && !add)
        for (Py_ssize_t k = 0; k < n; k++)
            dst[k] = wa * a[k];
    else if (m == 1)
        for (Py_ssize_t k = 0; k < n; k++)
            dst[k] += wa * a[k];
    else if (m == 2 && !add)
        for (Py_ssize_t k = 0; k < n; k++)
            dst[k] = wa * a[k] + wb * b[k];
    else if (m == 2)
        for (Py_ssize_t k = 0; k < n; k++)
            dst[k] += wa * a[k] + wb * b[k];
    else if (m <= 4 && !add)
        for (Py_ssize_t k = 0; k < n; k++)
            dst[k] = wa * a[k] + wb * b[k] + wc * c[k] + wd * d[k];
    else if (m <= 4)
        for (Py_ssize_t k = 0; k < n; k++)
            dst[k] += wa * a[k] + wb * b[k] + wc * c[k] + wd * d[k];
    else if (!add)
        for (Py_ssize_t k = 0; k < n; k++)
            dst[k] = wa * a[k] + wb * b[k] + wc * c[k] + wd * d[k] + we * e[k] + wf * f[k];
    else
        for (Py_ssize_t k = 0; k < n; k++)
            dst[k] += wa * a[k] + wb * b[k] + wc * c[k] + wd * d[k] + we * e[k] + wf * f[k];
}

/* dst = sum_t w[t] * rows[t] + offset over the taps of nonzero weight, n floats each. */
INLINE void weighted_sum(float *restrict dst, const float *const *rows, const float *w, Py_ssize_t taps,
                         Py_ssize_t offset, Py_ssize_t n) {
    const float *kept_rows[6];
    float kept_weights[6];
    int m = 0, added = 0;
    for (Py_ssize_t t = 0; t < taps; t++) {
        if (w[t] == 0.0f)
            continue;
        kept_rows[m] = rows[t] + offset;
        kept_weights[m++] = w[t];
        if (m == 6) {
            sum_rows(dst, kept_rows, kept_weights, 6, n, added);
            added = 1;
            m = 0;
        }
    }
    if (m)
        sum_rows(dst, kept_rows, kept_weights, m, n, added);
    else if (!added)
        memset(dst, 0, sizeof(float) * n);
}

typedef struct {
    const char *data;
    Py_ssize_t H, W, K, stride_h, stride_w, stride_k;
    int is_float;
} Image;

#define MAX_PLANES 3

/* One group's arguments and scratch: `planes` colour planes sharing operators and channels. */
typedef struct {
    Py_ssize_t planes;
    const float *colour;      /* (planes, K) */
    const float *bias;        /* (planes,) */
    const int32_t *col_index; /* (wc, cw): cw >= width, the cells past width padding of weight 0 */
    const float *col_weights; /* (nv, wc, cw) */
    const int64_t *row_index; /* (ch, wr) */
    const float *row_weights; /* (nu, ch, wr) */
    const int32_t *pairs;     /* (C, 2) */
    const float *scales;      /* (C,) */
    void *out;                /* (planes, C, ch, width) */
    int kind;                 /* 16, 8 or 32 bits */
    Py_ssize_t cw, width, wc, nv, ch, wr, nu, C;
    Py_ssize_t v_lo[8], v_hi[8];
    Py_ssize_t ring;   /* pass-1 rows kept: the most that one cell row reads */
    float *across;     /* (ring, planes, nv, cw): image row h in slot h % ring */
    Py_ssize_t *held;  /* (ring,): the image row each slot holds, or -1 */
    float *row;        /* (planes, nu, nv, cw): pass 2's sums for one cell row */
    int32_t *bases;    /* (ceil(cw / 16),): the smallest index each block of 16 cells reads */
    int32_t *spans;    /* (ceil(cw / 16),): 64 or 128 when its indices lie within that many floats of it, or 0 */
} Group;

/* A plane's value from a pixel's three channels: one expression for every memory layout, so
 * that uint8 pixels and the same pixels as float32 give the same numbers. */
INLINE float colour_value(const float *m, float bias, float x0, float x1, float x2) {
    return m[0] * x0 + m[1] * x1 + m[2] * x2 + bias;
}

/* lines[l * stride + w] = P[h][w] of each plane l of a group. */
VECTOR_CLONES static void colour_lines(const Image *x, Py_ssize_t h, const Group *p, float *restrict lines,
                                       Py_ssize_t stride) {
    const Py_ssize_t W = x->W;
    const float *m = p->colour, *bias = p->bias;
    float *restrict a = lines, *restrict b = lines + stride, *restrict c = lines + 2 * stride;
    if (!x->is_float && x->stride_k == 1 && x->stride_w == 3) { /* decoded JPEGs */
        const uint8_t *restrict row = (const uint8_t *)(x->data + h * x->stride_h);
        const float b0 = bias[0], b1 = p->planes > 1 ? bias[1] : 0.0f, b2 = p->planes > 2 ? bias[2] : 0.0f;
        if (p->planes == 1)
            for (Py_ssize_t w = 0; w < W; w++)
                a[w] = colour_value(m, b0, (float)row[3 * w], (float)row[3 * w + 1], (float)row[3 * w + 2]);
        else if (p->planes == 2)
            for (Py_ssize_t w = 0; w < W; w++) {
                const float x0 = (float)row[3 * w], x1 = (float)row[3 * w + 1], x2 = (float)row[3 * w + 2];
                a[w] = colour_value(m, b0, x0, x1, x2);
                b[w] = colour_value(m + 3, b1, x0, x1, x2);
            }
        else
            for (Py_ssize_t w = 0; w < W; w++) {
                const float x0 = (float)row[3 * w], x1 = (float)row[3 * w + 1], x2 = (float)row[3 * w + 2];
                a[w] = colour_value(m, b0, x0, x1, x2);
                b[w] = colour_value(m + 3, b1, x0, x1, x2);
                c[w] = colour_value(m + 6, b2, x0, x1, x2);
            }
        return;
    }
    const char *row = x->data + h * x->stride_h;
    for (Py_ssize_t w = 0; w < W; w++) {
        const char *at = row + w * x->stride_w;
        float v[3];
        for (int k = 0; k < 3; k++)
            v[k] = x->is_float ? *(const float *)(at + k * x->stride_k) : (float)*(const uint8_t *)(at + k * x->stride_k);
        for (Py_ssize_t l = 0; l < p->planes; l++)
            lines[l * stride + w] = colour_value(m + 3 * l, bias[l], v[0], v[1], v[2]);
    }
}

/* across[v][:] of one image row of one component from its colour line (LINE_PADDING readable
 * floats past its end), portably: gather each tap's pixels for every cell, then sum them per v
 * in blocks of BLOCK cells, which the compiler keeps in vector registers. */
#define BLOCK 16
#define LINE_PADDING 128
VECTOR_CLONES static void pass_columns(const Group *p, const float *restrict line, float *restrict gathered,
                                       float *restrict across) {
    const Py_ssize_t cw = p->cw, wc = p->wc, nv = p->nv;
    for (Py_ssize_t t = 0; t < wc; t++) {
        const int32_t *restrict index = p->col_index + t * cw;
        float *restrict g = gathered + t * cw;
        for (Py_ssize_t j = 0; j < cw; j++)
            g[j] = line[index[j]];
    }
    Py_ssize_t j0 = 0;
    for (; j0 + BLOCK <= cw; j0 += BLOCK)
        for (Py_ssize_t v = 0; v < nv; v++) {
            const float *restrict w = p->col_weights + v * wc * cw + j0;
            const float *restrict g = gathered + j0;
            float acc[BLOCK];
            for (int k = 0; k < BLOCK; k++)
                acc[k] = w[k] * g[k];
            for (Py_ssize_t t = 1; t < wc; t++)
                for (int k = 0; k < BLOCK; k++)
                    acc[k] += w[t * cw + k] * g[t * cw + k];
            for (int k = 0; k < BLOCK; k++)
                across[v * cw + j0 + k] = acc[k];
        }
    for (Py_ssize_t v = 0; v < nv; v++)
        for (Py_ssize_t j = j0; j < cw; j++) {
            float acc = 0.0f;
            for (Py_ssize_t t = 0; t < wc; t++)
                acc += p->col_weights[(v * wc + t) * cw + j] * gathered[t * cw + j];
            across[v * cw + j] = acc;
        }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define AVX512_ROUTINES 1
/* pass_columns with AVX-512, without the gathered copy: a block of 16 cells reads, over all its
 * taps, pixels within 64 floats from p->bases[block] (upscaled and slightly shrunk images), so
 * two permutes of two registers pick a tap's pixels, or within 128 (shrunk up to about twice),
 * four permutes; elsewhere a hardware gather, the slower way on the CPUs measured. Every v then
 * uses the pixels from a register. Needs cw a multiple of 16. */
static inline __attribute__((always_inline, target("avx512f"))) void
columns_avx512(const Group *p, const float *lines, Py_ssize_t stride, float *across, const int planes, const int nv) {
    const Py_ssize_t cw = p->cw, wc = p->wc;
    const __m512i upper = _mm512_set1_epi32(31);
    for (Py_ssize_t j = 0; j < cw; j += 16) {
        __m512 acc[MAX_PLANES][8], a[MAX_PLANES], b[MAX_PLANES], c[MAX_PLANES], d[MAX_PLANES];
        const int32_t base = p->bases[j / 16], span = p->spans[j / 16];
        for (int l = 0; l < planes; l++) {
            for (int v = 0; v < nv; v++)
                acc[l][v] = _mm512_setzero_ps();
            const float *source = lines + l * stride + base;
            a[l] = _mm512_loadu_ps(source), b[l] = _mm512_loadu_ps(source + 16);
            c[l] = _mm512_loadu_ps(source + 32), d[l] = _mm512_loadu_ps(source + 48);
        }
        for (Py_ssize_t t = 0; t < wc; t++) {
            const __m512i index = _mm512_loadu_si512(p->col_index + t * cw + j);
            const __m512i at = _mm512_sub_epi32(index, _mm512_set1_epi32(base));
            const __mmask16 high = _mm512_cmpgt_epi32_mask(at, upper);
            __m512 g[MAX_PLANES];
            for (int l = 0; l < planes; l++) {
                if (span == 64) {
                    g[l] = _mm512_mask_blend_ps(high, _mm512_permutex2var_ps(a[l], at, b[l]),
                                                _mm512_permutex2var_ps(c[l], at, d[l]));
                } else if (span == 128) { /* the second 64 floats from the L1 cache */
                    const float *source = lines + l * stride + base + 64;
                    const __m512 e = _mm512_permutex2var_ps(_mm512_loadu_ps(source), at, _mm512_loadu_ps(source + 16));
                    const __m512 f =
                        _mm512_permutex2var_ps(_mm512_loadu_ps(source + 32), at, _mm512_loadu_ps(source + 48));
                    const __mmask16 far = _mm512_cmpgt_epi32_mask(at, _mm512_set1_epi32(63));
                    g[l] = _mm512_mask_blend_ps(
                        far,
                        _mm512_mask_blend_ps(high, _mm512_permutex2var_ps(a[l], at, b[l]),
                                             _mm512_permutex2var_ps(c[l], at, d[l])),
                        _mm512_mask_blend_ps(_mm512_cmpgt_epi32_mask(at, _mm512_set1_epi32(95)), e, f));
                } else {
                    g[l] = _mm512_i32gather_ps(index, lines + l * stride, 4);
                }
            }
            for (int v = 0; v < nv; v++) {
                const __m512 weight = _mm512_loadu_ps(p->col_weights + (v * wc + t) * cw + j);
                for (int l = 0; l < planes; l++)
                    acc[l][v] = _mm512_fmadd_ps(weight, g[l], acc[l][v]);
            }
        }
        for (int l = 0; l < planes; l++)
            for (int v = 0; v < nv; v++)
                _mm512_storeu_ps(across + (l * nv + v) * cw + j, acc[l][v]);
    }
}
/* columns_avx512 compiled for each number of planes and of v, so that its accumulators stay in registers. */
__attribute__((target("avx512f"))) static void pass_columns_avx512(const Group *p, const float *lines,
                                                                   Py_ssize_t stride, float *across) {
#define CASE(P, V)                                                                                                   \
    case 16 * P + V:                                                                                                 \
        columns_avx512(p, lines, stride, across, P, V);                                                              \
        return;
#define CASES(P) CASE(P, 1) CASE(P, 2) CASE(P, 3) CASE(P, 4) CASE(P, 5) CASE(P, 6) CASE(P, 7) CASE(P, 8)
    switch (16 * p->planes + p->nv) {
        CASES(1)
        CASES(2)
        CASES(3)
    }
#undef CASES
#undef CASE
}
/* store_row with AVX-512: 16 values at a time, the tail under a mask (values rows are padded to
 * a multiple of 16 floats, the output is not). */
__attribute__((target("avx512f"))) static void store_row_avx512(const Group *p, Py_ssize_t i) {
    const Py_ssize_t cw = p->width;
    const __m512 half = _mm512_set1_ps(0.5f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512 limit = _mm512_set1_ps(p->kind == 16 ? 32767.0f : 127.0f);
    const __m512 low = _mm512_sub_ps(_mm512_setzero_ps(), limit);
    for (Py_ssize_t lc = 0; lc < p->planes * p->C; lc++) {
        const Py_ssize_t l = lc / p->C, c = lc % p->C;
        const float *values = p->row + ((l * p->nu + p->pairs[2 * c]) * p->nv + p->pairs[2 * c + 1]) * p->cw;
        const __m512 scale = _mm512_set1_ps(p->scales[c]);
        const Py_ssize_t offset = (lc * p->ch + i) * cw;
        for (Py_ssize_t k = 0; k < cw; k += 16) {
            const __mmask16 mask = cw - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cw - k)) - 1u);
            const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(values + k), scale);
            if (p->kind == 32) {
                _mm512_mask_storeu_ps((float *)p->out + offset + k, mask, x);
                continue;
            }
            const __m512 away = _mm512_castsi512_ps(
                _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(x), sign), _mm512_castps_si512(half)));
            const __m512i n = _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_add_ps(x, away), low), limit));
            if (p->kind == 16)
                _mm512_mask_cvtepi32_storeu_epi16((int16_t *)p->out + offset + k, mask, n);
            else
                _mm512_mask_cvtepi32_storeu_epi8((int8_t *)p->out + offset + k, mask, n);
        }
    }
}
static int has_avx512 = 0;
#endif

/* Cell row i of one group from the ring slots it reads (rows[t]: slot of tap t): every needed
 * (u, v) of every plane into p->row, chunk by chunk. */
VECTOR_CLONES static void pass_rows(const Group *p, Py_ssize_t i, const float *const *slots, const float **rows) {
    const Py_ssize_t cw = p->cw, nv = p->nv, wr = p->wr;
    const Py_ssize_t length = nv * cw;
    for (Py_ssize_t l = 0; l < p->planes; l++) {
        for (Py_ssize_t t = 0; t < wr; t++)
            rows[t] = slots[t] + l * length;
        float *row = p->row + l * p->nu * length;
        for (Py_ssize_t start = 0; start < length; start += CHUNK)
            for (Py_ssize_t u = 0; u < p->nu; u++) {
                const Py_ssize_t lo = p->v_lo[u] * cw > start ? p->v_lo[u] * cw : start;
                const Py_ssize_t hi_end = (p->v_hi[u] + 1) * cw;
                const Py_ssize_t end = start + CHUNK < hi_end ? start + CHUNK : hi_end;
                if (end > lo)
                    weighted_sum(row + u * length + lo, rows, p->row_weights + (u * p->ch + i) * wr, wr, lo, end - lo);
            }
    }
}

VECTOR_CLONES static void store_row(const Group *p, Py_ssize_t i) {
    const Py_ssize_t cw = p->width;
    for (Py_ssize_t lc = 0; lc < p->planes * p->C; lc++) {
        const Py_ssize_t l = lc / p->C, c = lc % p->C;
        const float *restrict values = p->row + ((l * p->nu + p->pairs[2 * c]) * p->nv + p->pairs[2 * c + 1]) * p->cw;
        const float scale = p->scales[c];
        const Py_ssize_t offset = (lc * p->ch + i) * cw;
        if (p->kind == 16) {
            int16_t *restrict target = (int16_t *)p->out + offset;
            for (Py_ssize_t k = 0; k < cw; k++)
                target[k] = (int16_t)round_clamp(scale * values[k], 32767.0f);
        } else if (p->kind == 8) {
            int8_t *restrict target = (int8_t *)p->out + offset;
            for (Py_ssize_t k = 0; k < cw; k++)
                target[k] = (int8_t)round_clamp(scale * values[k], 127.0f);
        } else {
            float *restrict target = (float *)p->out + offset;
            for (Py_ssize_t k = 0; k < cw; k++)
                target[k] = scale * values[k];
        }
    }
}

/* Cell row by cell row, each group in turn: the image rows a cell row reads go through the
 * colour conversion and pass 1 into the ring (unless it holds them already), then pass 2 and the
 * stores. The ring stays in the L2 cache, and nothing of the size of the image is written. */
static void compute(const Image *x, Group *groups, int count, float *lines, Py_ssize_t stride,
                    float *gathered, const float **slots, const float **rows, int timed, double *seconds) {
    for (int k = 0; k < count; k++) {
        Group *p = &groups[k];
        const Py_ssize_t length = p->planes * p->nv * p->cw;
        for (Py_ssize_t s = 0; s < p->ring; s++)
            p->held[s] = -1;
        for (Py_ssize_t i = 0; i < p->ch; i++) {
            for (Py_ssize_t t = 0; t < p->wr; t++) {
                const Py_ssize_t h = p->row_index[i * p->wr + t], slot = h % p->ring;
                float *across = p->across + slot * length;
                slots[t] = across;
                if (p->held[slot] == h)
                    continue;
                double start = now(timed);
                colour_lines(x, h, p, lines, stride);
                double mark = now(timed);
#ifdef AVX512_ROUTINES
                if (has_avx512 && p->cw % 16 == 0)
                    pass_columns_avx512(p, lines, stride, across);
                else
#endif
                    for (Py_ssize_t l = 0; l < p->planes; l++)
                        pass_columns(p, lines + l * stride, gathered, across + l * p->nv * p->cw);
                p->held[slot] = h;
                seconds[0] += mark - start;
                seconds[1] += now(timed) - mark;
            }
            double start = now(timed);
            pass_rows(p, i, slots, rows);
            double mark = now(timed);
#ifdef AVX512_ROUTINES
            if (has_avx512)
                store_row_avx512(p, i);
            else
#endif
                store_row(p, i);
            seconds[2] += mark - start;
            seconds[3] += now(timed) - mark;
        }
    }
}

/* Scratch memory kept between calls (per thread: the kernel runs without the GIL), so that
 * a data loader's stream of images does not pay fresh pages on every call. */
enum { LINES, GATHERED, SLOTS, ROWS, FIRST_GROUP };
#define SCRATCH (FIRST_GROUP + 5 * MAX_GROUPS)
static _Thread_local void *scratch_memory[SCRATCH];
static _Thread_local size_t scratch_size[SCRATCH];

static void *scratch_buffer(int k, size_t bytes) {
    if (bytes > scratch_size[k]) {
        void *grown = realloc(scratch_memory[k], bytes + bytes / 4 + 64);
        if (!grown)
            return NULL;
        scratch_memory[k] = grown;
        scratch_size[k] = bytes + bytes / 4 + 64;
    }
    return scratch_memory[k];
}

/* p->bases and p->spans (see columns_avx512). */
static void find_bases(Group *p) {
    for (Py_ssize_t block = 0; block < (p->cw + 15) / 16; block++) {
        int32_t lo = INT32_MAX, hi = -1;
        for (Py_ssize_t t = 0; t < p->wc; t++)
            for (Py_ssize_t j = 16 * block; j < 16 * block + 16 && j < p->cw; j++) {
                const int32_t index = p->col_index[t * p->cw + j];
                lo = index < lo ? index : lo;
                hi = index > hi ? index : hi;
            }
        p->bases[block] = lo;
        p->spans[block] = hi - lo < 64 ? 64 : hi - lo < 128 ? 128 : 0;
    }
}

enum { COLOUR, BIAS, COL_INDEX, COL_WEIGHTS, ROW_INDEX, ROW_WEIGHTS, PAIRS, SCALES, OUT, PER_GROUP };

/* Fill `p` from the buffers of one component; NULL or a message. */
static const char *check_group(Group *p, Buffer *b, const Image *x) {
    static const char *bad_shapes = "inconsistent shapes of a group's colours, operators, pairs, scales or output";
    p->planes = b[COLOUR].view.shape[0];
    p->colour = b[COLOUR].view.buf;
    p->bias = b[BIAS].view.buf;
    p->col_index = b[COL_INDEX].view.buf;
    p->col_weights = b[COL_WEIGHTS].view.buf;
    p->row_index = b[ROW_INDEX].view.buf;
    p->row_weights = b[ROW_WEIGHTS].view.buf;
    p->pairs = b[PAIRS].view.buf;
    p->scales = b[SCALES].view.buf;
    p->out = b[OUT].view.buf;
    const char code = item_format(&b[OUT].view)[0];
    p->kind = code == 'h' ? 16 : code == 'b' ? 8 : 32;
    p->wc = b[COL_INDEX].view.shape[0], p->cw = b[COL_INDEX].view.shape[1];
    p->nv = b[COL_WEIGHTS].view.shape[0];
    p->ch = b[ROW_INDEX].view.shape[0], p->wr = b[ROW_INDEX].view.shape[1];
    p->nu = b[ROW_WEIGHTS].view.shape[0];
    p->C = b[PAIRS].view.shape[0];
    p->width = b[OUT].view.shape[3];
    if (p->planes < 1 || p->planes > MAX_PLANES || b[COLOUR].view.shape[1] != x->K ||
        b[BIAS].view.shape[0] != p->planes || b[OUT].view.shape[0] != p->planes || b[COL_WEIGHTS].view.shape[1] != p->wc ||
        b[COL_WEIGHTS].view.shape[2] != p->cw || b[ROW_WEIGHTS].view.shape[1] != p->ch ||
        b[ROW_WEIGHTS].view.shape[2] != p->wr || b[PAIRS].view.shape[1] != 2 || b[SCALES].view.shape[0] != p->C ||
        b[OUT].view.shape[1] != p->C || b[OUT].view.shape[2] != p->ch || p->width > p->cw ||
        p->wc < 1 || p->wr < 1)
        return bad_shapes;
    if (p->nu > 8 || p->nv > 8)
        return "more than 8 frequencies along an axis";
    for (Py_ssize_t k = 0; k < p->cw * p->wc; k++)
        if (p->col_index[k] < 0 || p->col_index[k] >= x->W)
            return "a column index is outside the image";
    for (Py_ssize_t k = 0; k < p->ch * p->wr; k++)
        if (p->row_index[k] < 0 || p->row_index[k] >= x->H)
            return "a row index is outside the image";
    for (Py_ssize_t u = 0; u < p->nu; u++)
        p->v_lo[u] = p->nv, p->v_hi[u] = -1;
    for (Py_ssize_t c = 0; c < p->C; c++) {
        const Py_ssize_t u = p->pairs[2 * c], v = p->pairs[2 * c + 1];
        if (u < 0 || u >= p->nu || v < 0 || v >= p->nv)
            return "a frequency pair is outside the operators";
        p->v_lo[u] = v < p->v_lo[u] ? v : p->v_lo[u];
        p->v_hi[u] = v > p->v_hi[u] ? v : p->v_hi[u];
    }
    p->ring = 1;
    for (Py_ssize_t i = 0; i < p->ch; i++) {
        Py_ssize_t lo = x->H, hi = -1;
        for (Py_ssize_t t = 0; t < p->wr; t++) {
            const Py_ssize_t h = p->row_index[i * p->wr + t];
            lo = h < lo ? h : lo;
            hi = h > hi ? h : hi;
        }
        p->ring = hi - lo + 1 > p->ring ? hi - lo + 1 : p->ring;
    }
    return NULL;
}

static PyObject *banded_dct(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"image", "groups", "timed", NULL};
    PyObject *image_object, *groups_object;
    int timed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|p", keywords, &image_object, &groups_object, &timed))
        return NULL;
    PyObject *sequence = PySequence_Fast(groups_object, "banded_dct: groups must be a sequence");
    if (!sequence)
        return NULL;
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    Buffer image_buffer = {0};
    Buffer b[MAX_GROUPS][PER_GROUP];
    memset(b, 0, sizeof(b));
    Group groups[MAX_GROUPS];
    PyObject *result = NULL;
    const char *problem = NULL;
    static const char *names[PER_GROUP] = {"colour",      "bias",  "col_index", "col_weights", "row_index",
                                               "row_weights", "pairs", "scales",    "out"};
    static const char *formats[PER_GROUP] = {"f", "f", "i", "f", "q", "f", "i", "f", "hbf"};
    static const int dims[PER_GROUP] = {2, 1, 2, 3, 2, 3, 2, 1, 4};
    if (count < 1 || count > MAX_GROUPS) {
        PyErr_Format(PyExc_ValueError, "banded_dct: 1 to %d groups, got %zd", MAX_GROUPS, count);
        goto done;
    }
    if (get_buffer(image_object, &image_buffer, "Bf", 3, 0, 1, "image") < 0)
        goto done;
    const Py_buffer *view = &image_buffer.view;
    const Image x = {view->buf,        view->shape[0],   view->shape[1],   view->shape[2],
                     view->strides[0], view->strides[1], view->strides[2], item_format(view)[0] == 'f'};
    if (x.H < 1 || x.W < 1 || x.K != 3) {
        PyErr_SetString(PyExc_ValueError, "banded_dct: the image must be (H, W, 3), not empty");
        goto done;
    }
    Py_ssize_t taps = 1, gathered = 1;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *spec = PySequence_Fast_GET_ITEM(sequence, k);
        PyObject *items[PER_GROUP];
        if (!PyArg_ParseTuple(spec, "OOOOOOOOO;banded_dct: a group is (colour, bias, col_index, col_weights, "
                                    "row_index, row_weights, pairs, scales, out)",
                              &items[COLOUR], &items[BIAS], &items[COL_INDEX], &items[COL_WEIGHTS], &items[ROW_INDEX],
                              &items[ROW_WEIGHTS], &items[PAIRS], &items[SCALES], &items[OUT]))
            goto done;
        for (int a = 0; a < PER_GROUP; a++)
            if (get_buffer(items[a], &b[k][a], formats[a], dims[a], a == OUT, 0, names[a]) < 0)
                goto done;
        if ((problem = check_group(&groups[k], b[k], &x)))
            goto done;
        Group *p = &groups[k];
        taps = p->wc > taps ? p->wc : taps;
        taps = p->wr > taps ? p->wr : taps;
        gathered = p->wc * p->cw > gathered ? p->wc * p->cw : gathered;
        const size_t slot = sizeof(float) * p->planes * p->nv * p->cw;
        if (!(p->across = scratch_buffer(FIRST_GROUP + 5 * k, slot * p->ring)) ||
            !(p->held = scratch_buffer(FIRST_GROUP + 5 * k + 1, sizeof(Py_ssize_t) * p->ring)) ||
            !(p->row = scratch_buffer(FIRST_GROUP + 5 * k + 2, slot * p->nu)) ||
            !(p->bases = scratch_buffer(FIRST_GROUP + 5 * k + 3, sizeof(int32_t) * ((p->cw + 15) / 16))) ||
            !(p->spans = scratch_buffer(FIRST_GROUP + 5 * k + 4, sizeof(int32_t) * ((p->cw + 15) / 16)))) {
            PyErr_NoMemory();
            goto done;
        }
        find_bases(p);
    }
    /* Each plane's colour line, with LINE_PADDING floats past it that whole-vector loads read
     * (and never use); stride a multiple of 16 floats. */
    const Py_ssize_t stride = (x.W + LINE_PADDING + 15) / 16 * 16;
    float *lines = scratch_buffer(LINES, sizeof(float) * stride * MAX_PLANES);
    float *gather = scratch_buffer(GATHERED, sizeof(float) * gathered);
    const float **slots = scratch_buffer(SLOTS, sizeof(float *) * taps);
    const float **rows = scratch_buffer(ROWS, sizeof(float *) * taps);
    if (!lines || !gather || !slots || !rows) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t l = 0; l < MAX_PLANES; l++)
        memset(lines + l * stride + x.W, 0, sizeof(float) * (stride - x.W));
    double seconds[4] = {0.0, 0.0, 0.0, 0.0};
    Py_BEGIN_ALLOW_THREADS
    compute(&x, groups, (int)count, lines, stride, gather, slots, rows, timed, seconds);
    Py_END_ALLOW_THREADS
    if (timed)
        result = Py_BuildValue("(dddd)", seconds[0], seconds[1], seconds[2], seconds[3]);
    else
        result = Py_NewRef(Py_None);
done:
    if (problem)
        PyErr_Format(PyExc_ValueError, "banded_dct: %s", problem);
    for (Py_ssize_t k = 0; k < MAX_GROUPS; k++)
        release(b[k], PER_GROUP);
    release(&image_buffer, 1);
    Py_DECREF(sequence);
    return result;
}

/* use_avx512(flag): switch the AVX-512 routines on (where the CPU has them) or off; returns
 * whether they are now in use. The portable routines are then what runs, as on other CPUs. */
static PyObject *use_avx512(PyObject *self, PyObject *arg) {
    int wanted = PyObject_IsTrue(arg);
    if (wanted < 0)
        return NULL;
#ifdef AVX512_ROUTINES
    has_avx512 = wanted && __builtin_cpu_supports("avx512f");
    return PyBool_FromLong(has_avx512);
#else
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"use_avx512", use_avx512, METH_O,
     "use_avx512(flag) -> bool: switch the AVX-512 routines on (where the CPU has them) or off."},
    {"banded_dct", (PyCFunction)(void (*)(void))banded_dct, METH_VARARGS | METH_KEYWORDS,
     "banded_dct(image, groups, timed=False): the frequency transform of an (H, W, K) uint8 or float32 "
     "image, for each group (colour (P, K), bias (P,), col_index, col_weights, row_index, row_weights, pairs, "
     "scales, out (P, C, cells_h, cells_w)) of P colour planes sharing operators and channels, written into its "
     "out in out's dtype. With timed, returns the seconds of the colour conversion, pass 1, pass 2 and the "
     "stores."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_banded", "The frequency transform's CPU kernel.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__banded(void) {
#ifdef AVX512_ROUTINES
    __builtin_cpu_init();
    has_avx512 = __builtin_cpu_supports("avx512f");
#endif
    return PyModule_Create(&module);
}
