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
 * with (u_c, v_c) the frequency pair of output channel c. No plane is transposed. The groups
 * advance together, cell row by cell row, and share a small ring of colour lines: each image row
 * is read and converted once, for every component at once, when a cell row first needs it.
 * Pass 1 runs on the image rows a cell row needs that its group's ring (in the L2 cache) lacks,
 * gathering each tap's pixels for every cell once (for all v), then summing with per-cell
 * weights along j; its result is laid out so that pass 2 sums a few whole rows with one weight
 * each. Components with the same operators and channels (Cb and Cr) go as the planes of one
 * group, so that each weight and index loaded serves every plane. A JPEG's own stored plane comes
 * as a view whose three channels are the plane itself (stride 0 between them; freqdet.io.planes)
 * with the colour row (1, 0, 0), and is read as one channel. The stores write the wire
 * dtype directly: int16 / int8 rounded to nearest, halves to even (as torch.round and numpy.rint),
 * and saturated to +-32767 / +-127, or float32; with AVX-512 (16 cells) or AVX2 and FMA (8 cells)
 * pass 2 sums the cells of every u paired with one v from the same loaded rows and stores them at
 * once, elsewhere it fills a row buffer (in chunks whose sources stay in the L1 cache across the u)
 * that the stores then read. The loader picks the AVX-512 routines, else the AVX2 ones, else the
 * portable loops (use_routines), which are compiled for the build's baseline ISA only: what a CPU
 * without AVX2 runs is what use_routines("portable") runs everywhere. A float image holding a NaN
 * or an infinity is refused before any of them runs.
 *
 * With timed=True, banded_dct returns the seconds spent in the colour conversion, pass 1, and
 * pass 2 with the stores (one loop with AVX-512 or AVX2; for tools/benchmark.py --stages); otherwise None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
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

/* Round to nearest, halves to even (the default rounding mode, as the vector routines' conversions,
 * torch.round and numpy.rint), and clamp to +-limit, without branches so that the loops below compile
 * to vector instructions: adding 1.5 * 2^23 leaves no fraction bits, so the sum is x rounded, exactly
 * for |x| < 2^22 (larger x stay beyond the limit). rintf where float sums carry excess precision. */
static inline int32_t round_clamp(float x, float limit) {
#if FLT_EVAL_METHOD == 0
    const float shift = 12582912.0f;
    x = (x + shift) - shift;
#else
    x = rintf(x);
#endif
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
#define MAX_COLOURS 8 /* distinct colour rows (components) over all groups */

/* One group's arguments and scratch: `planes` colour planes sharing operators and channels. */
typedef struct {
    Py_ssize_t planes;
    const float *colour;      /* (planes, K) */
    const float *bias;        /* (planes,) */
    int plane[MAX_PLANES];    /* each plane's line in the shared colour lines */
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
    int with_v[8], u_of[8][8], c_of[8][8]; /* per v: how many channels have it, their u and channel */
    Py_ssize_t ring;   /* pass-1 rows kept: the most that one cell row reads */
    float *across;     /* (ring, planes, nv, cw): image row h in slot h % ring */
    Py_ssize_t *held;  /* (ring,): the image row each slot holds, or -1 */
    float *row;        /* (planes, nu, nv, cw): pass 2's sums for one cell row */
    int32_t *bases;    /* (ceil(cw / 16),): the smallest index each block of 16 cells reads */
    int32_t *spans;    /* (ceil(cw / 16),): 1 to 4 when its indices lie within that many 64 floats of it, or 0 */
    float *packed;     /* (cw / 8, nv, wc, 8): col_weights block by block, for the AVX2 routines */
    int columns;       /* the routines of pass 1: PORTABLE, AVX2 (needs taps in a row, see plan_columns) or AVX512 */
} Group;

/* The distinct colour rows of all groups and a ring of their lines: image row h converted for
 * every component, in slot h % size, kept while any group's cell rows of this step or the last
 * read it. */
typedef struct {
    Py_ssize_t count;
    float matrix[MAX_COLOURS][3], bias[MAX_COLOURS];
    Py_ssize_t size, stride; /* slots; floats per line (LINE_PADDING readable floats past the image) */
    float *lines;            /* (size, count, stride) */
    Py_ssize_t *held;        /* (size,): the image row each slot holds, or -1 */
} Colours;

/* What one call's passes share: the routines in use, read once while the call holds the GIL (so that
 * use_routines in another thread changes nothing mid-call), and scratch arrays on the heap sized by
 * the most taps of any operator (`taps`), which have no bound. */
typedef struct {
    int routines;
    float *gathered;       /* (wc * cw of any group): pass_columns' pixels of each tap */
    const float **slots;   /* (taps,): the ring slot each row tap of a cell row reads */
    const float **rows;    /* (taps,): pass_rows' rows of one plane */
    const float **lines;   /* (taps * MAX_PLANES,): the colour lines pass 1 reads for a cell row */
    float **targets;       /* (taps,): the ring slots it writes them to */
    Py_ssize_t *tap;       /* (taps,): pass_rows_vector's row taps of nonzero weight */
    float (*weight)[8];    /* (8 * taps, 8): their weights, [v * taps + t][n] */
    const float **sources; /* (taps,): their rows of one plane and v */
} Work;

/* A plane's value from a pixel's three channels: one expression for every memory layout, so
 * that uint8 pixels and the same pixels as float32 give the same numbers. */
INLINE float colour_value(const float *m, float bias, float x0, float x1, float x2) {
    return m[0] * x0 + m[1] * x1 + m[2] * x2 + bias;
}

INLINE float pixel(const Image *x, const char *at, int k) {
    return x->is_float ? *(const float *)(at + k * x->stride_k) : (float)*(const uint8_t *)(at + k * x->stride_k);
}

/* lines[q * stride + w] = P[h][w] of every colour q, portably. */
static void colour_lines(const Image *x, Py_ssize_t h, const Colours *c, float *restrict lines) {
    const Py_ssize_t W = x->W, stride = c->stride;
    float *restrict a = lines, *restrict b = lines + stride, *restrict d = lines + 2 * stride;
    const float *ma = c->matrix[0], *mb = c->matrix[1], *md = c->matrix[2];
    const float ba = c->bias[0], bb = c->bias[1], bd = c->bias[2];
    if (!x->is_float && x->stride_k == 1 && x->stride_w == 3 && c->count <= 3) { /* decoded JPEGs */
        const uint8_t *restrict row = (const uint8_t *)(x->data + h * x->stride_h);
        if (c->count == 1)
            for (Py_ssize_t w = 0; w < W; w++)
                a[w] = colour_value(ma, ba, (float)row[3 * w], (float)row[3 * w + 1], (float)row[3 * w + 2]);
        else if (c->count == 2)
            for (Py_ssize_t w = 0; w < W; w++) {
                const float x0 = (float)row[3 * w], x1 = (float)row[3 * w + 1], x2 = (float)row[3 * w + 2];
                a[w] = colour_value(ma, ba, x0, x1, x2);
                b[w] = colour_value(mb, bb, x0, x1, x2);
            }
        else
            for (Py_ssize_t w = 0; w < W; w++) {
                const float x0 = (float)row[3 * w], x1 = (float)row[3 * w + 1], x2 = (float)row[3 * w + 2];
                a[w] = colour_value(ma, ba, x0, x1, x2);
                b[w] = colour_value(mb, bb, x0, x1, x2);
                d[w] = colour_value(md, bd, x0, x1, x2);
            }
        return;
    }
    if (!x->is_float && x->stride_k == 0 && x->stride_w == 1) { /* one stored plane, each channel it */
        const uint8_t *restrict row = (const uint8_t *)(x->data + h * x->stride_h);
        for (Py_ssize_t q = 0; q < c->count; q++)
            for (Py_ssize_t w = 0; w < W; w++)
                lines[q * stride + w] = colour_value(c->matrix[q], c->bias[q], (float)row[w], (float)row[w], (float)row[w]);
        return;
    }
    const char *row = x->data + h * x->stride_h;
    for (Py_ssize_t w = 0; w < W; w++) {
        const char *at = row + w * x->stride_w;
        const float x0 = pixel(x, at, 0), x1 = pixel(x, at, 1), x2 = pixel(x, at, 2);
        for (Py_ssize_t q = 0; q < c->count; q++)
            lines[q * stride + w] = colour_value(c->matrix[q], c->bias[q], x0, x1, x2);
    }
}

/* across[v][:] of one image row of one component from its colour line (LINE_PADDING readable
 * floats past its end), portably: gather each tap's pixels for every cell, then sum them per v
 * in blocks of BLOCK cells, which the compiler keeps in vector registers. */
#define BLOCK 16
#define LINE_PADDING 256
INLINE void columns_portable(const Group *p, const float *restrict line, float *restrict gathered,
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
/* Pass 1 of `count` image rows (their planes' lines in lines[r * planes + l], results in across[r])
 * by the portable loops. */
INLINE void columns_rows(const Group *p, Py_ssize_t count, const float *const *lines, float *const *across,
                         float *gathered) {
    for (Py_ssize_t r = 0; r < count; r++)
        for (Py_ssize_t l = 0; l < p->planes; l++)
            columns_portable(p, lines[r * p->planes + l], gathered, across[r] + l * p->nv * p->cw);
}
static void pass_columns(const Group *p, Py_ssize_t count, const float *const *lines, float *const *across,
                         float *gathered) {
    columns_rows(p, count, lines, across, gathered);
}

/* The routines in use: the best the CPU has unless use_routines asked for less. Written and read
 * only while holding the GIL: a call reads it once, into its Work. */
enum { PORTABLE, AVX2, AVX512 };
static const char *routine_names[] = {"portable", "avx2", "avx512"};
static int routines = PORTABLE;

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define VECTOR_ROUTINES 1
/* pass_columns with AVX-512, without the gathered copy: a block of 16 cells reads, over all its
 * taps, pixels within 64 * p->spans[block] floats from p->bases[block]. The first 64 stay in four
 * registers and two permutes pick a tap's pixels there (upscaled and slightly shrunk images);
 * each further 64 (shrunk images, up to 256 floats) two more permutes of loads from the L1 cache;
 * beyond, a hardware gather, the slowest way on the CPUs measured. Every v then uses the pixels
 * from a register. The `count` image rows (their planes' lines in lines[r * planes + l], results
 * in across_rows[r]) go through the block j in turn, which keeps its weights in the L1 cache.
 * Needs cw a multiple of 16. */
static inline __attribute__((always_inline, target("avx512f"))) void
columns_block_avx512(const Group *p, Py_ssize_t j, Py_ssize_t count, const float *const *lines,
                     float *const *across_rows, const int planes, const int nv, const int quarters) {
    const Py_ssize_t cw = p->cw, wc = p->wc;
    const int32_t base = p->bases[j / 16];
    for (Py_ssize_t r = 0; r < count; r++) {
        const float *const *line = lines + r * planes;
        float *across = across_rows[r];
        __m512 acc[MAX_PLANES][8], a[MAX_PLANES], b[MAX_PLANES], c[MAX_PLANES], d[MAX_PLANES];
        for (int l = 0; l < planes; l++) {
            for (int v = 0; v < nv; v++)
                acc[l][v] = _mm512_setzero_ps();
            const float *source = line[l] + base;
            a[l] = _mm512_loadu_ps(source), b[l] = _mm512_loadu_ps(source + 16);
            c[l] = _mm512_loadu_ps(source + 32), d[l] = _mm512_loadu_ps(source + 48);
        }
        for (Py_ssize_t t = 0; t < wc; t++) {
            const __m512i index = _mm512_loadu_si512(p->col_index + t * cw + j);
            const __m512i at = _mm512_sub_epi32(index, _mm512_set1_epi32(base));
            const __mmask16 high = _mm512_test_epi32_mask(at, _mm512_set1_epi32(32)); /* which 32 of a 64 */
            __m512 g[MAX_PLANES];
            for (int l = 0; l < planes; l++) {
                if (!quarters) {
                    g[l] = _mm512_i32gather_ps(index, line[l], 4);
                    continue;
                }
                g[l] = _mm512_mask_blend_ps(high, _mm512_permutex2var_ps(a[l], at, b[l]),
                                            _mm512_permutex2var_ps(c[l], at, d[l]));
                for (int q = 1; q < quarters; q++) {
                    const float *source = line[l] + base + 64 * q;
                    const __m512 e = _mm512_permutex2var_ps(_mm512_loadu_ps(source), at, _mm512_loadu_ps(source + 16));
                    const __m512 f =
                        _mm512_permutex2var_ps(_mm512_loadu_ps(source + 32), at, _mm512_loadu_ps(source + 48));
                    const __mmask16 here = _mm512_cmpeq_epi32_mask(_mm512_srli_epi32(at, 6), _mm512_set1_epi32(q));
                    g[l] = _mm512_mask_mov_ps(g[l], here, _mm512_mask_blend_ps(high, e, f));
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
/* Block by block (16 cells), the way its span allows (see columns_block_avx512). */
static inline __attribute__((always_inline, target("avx512f"))) void
columns_avx512(const Group *p, Py_ssize_t count, const float *const *lines, float *const *across_rows,
               const int planes, const int nv) {
    for (Py_ssize_t j = 0; j < p->cw; j += 16)
        switch (p->spans[j / 16]) {
        case 1:
            columns_block_avx512(p, j, count, lines, across_rows, planes, nv, 1);
            break;
        case 2:
            columns_block_avx512(p, j, count, lines, across_rows, planes, nv, 2);
            break;
        case 3:
        case 4: /* a fourth 64 read in vain for 3 */
            columns_block_avx512(p, j, count, lines, across_rows, planes, nv, 4);
            break;
        default:
            columns_block_avx512(p, j, count, lines, across_rows, planes, nv, 0);
        }
}
/* columns_avx512 compiled for each number of planes and of v, so that its accumulators stay in registers. */
__attribute__((target("avx512f"))) static void pass_columns_avx512(const Group *p, Py_ssize_t count,
                                                                   const float *const *lines, float *const *across) {
#define CASE(P, V)                                                                                                   \
    case 16 * P + V:                                                                                                 \
        columns_avx512(p, count, lines, across, P, V);                                                               \
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
/* Every colour's values of 16 pixels (their channels in x0, x1, x2) into lines[q * stride + w],
 * the first n of them. Masked stores only for fewer than 16: on the AMD EPYC measured (Zen 5),
 * plain stores in place of masked ones with every lane on made the transform about 10% faster. */
static inline __attribute__((always_inline, target("avx512f"))) void
colour_block(const Colours *c, float *lines, Py_ssize_t w, Py_ssize_t n, __m512 x0, __m512 x1, __m512 x2) {
    for (Py_ssize_t q = 0; q < c->count; q++) {
        const float *m = c->matrix[q];
        __m512 y = _mm512_fmadd_ps(_mm512_set1_ps(m[0]), x0, _mm512_set1_ps(c->bias[q]));
        y = _mm512_fmadd_ps(_mm512_set1_ps(m[1]), x1, y);
        y = _mm512_fmadd_ps(_mm512_set1_ps(m[2]), x2, y);
        if (n == 16)
            _mm512_storeu_ps(lines + q * c->stride + w, y);
        else
            _mm512_mask_storeu_ps(lines + q * c->stride + w, (__mmask16)((1u << n) - 1u), y);
    }
}

/* colour_lines with AVX-512, 16 pixels at a time: a decoded JPEG's packed uint8 pixels widened
 * and de-interleaved in registers, other layouts (and the last pixels) read one by one; the same
 * arithmetic for all. */
__attribute__((target("avx512f"))) static void colour_lines_avx512(const Image *x, Py_ssize_t h, const Colours *c,
                                                                   float *lines) {
    const Py_ssize_t W = x->W;
    const char *row = x->data + h * x->stride_h;
    Py_ssize_t w = 0;
    if (!x->is_float && x->stride_k == 1 && x->stride_w == 3) {
        /* Pixel j's channel k is float 3j + k of the three registers v0, v1, v2 below: the first
         * permute takes it from v0 or v1 (the low 5 bits of 3j + k), the second keeps that or
         * takes it from v2 (float 3j + k - 32 there). */
        const __m512i pixel_index = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        __m512i first[3], second[3];
        for (int k = 0; k < 3; k++) {
            first[k] = _mm512_add_epi32(_mm512_mullo_epi32(pixel_index, _mm512_set1_epi32(3)), _mm512_set1_epi32(k));
            const __mmask16 in_v2 = _mm512_cmpgt_epi32_mask(first[k], _mm512_set1_epi32(31));
            second[k] = _mm512_mask_sub_epi32(pixel_index, in_v2, first[k], _mm512_set1_epi32(16));
        }
        for (; w + 16 <= W; w += 16) {
            const __m128i *at = (const __m128i *)(row + 3 * w);
            const __m512 v0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(at)));
            const __m512 v1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(at + 1)));
            const __m512 v2 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(at + 2)));
            __m512 channel[3];
            for (int k = 0; k < 3; k++)
                channel[k] = _mm512_permutex2var_ps(_mm512_permutex2var_ps(v0, first[k], v1), second[k], v2);
            colour_block(c, lines, w, 16, channel[0], channel[1], channel[2]);
        }
    } else if (!x->is_float && x->stride_k == 0 && x->stride_w == 1) { /* one stored plane, each channel it */
        for (; w + 16 <= W; w += 16) {
            const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + w))));
            colour_block(c, lines, w, 16, v, v, v);
        }
    }
    for (; w < W; w += 16) {
        const Py_ssize_t n = W - w < 16 ? W - w : 16;
        float values[3][16] = {{0.0f}};
        for (Py_ssize_t j = 0; j < n; j++) {
            const char *at = row + (w + j) * x->stride_w;
            for (int k = 0; k < 3; k++)
                values[k][j] = pixel(x, at, k);
        }
        colour_block(c, lines, w, n, _mm512_loadu_ps(values[0]), _mm512_loadu_ps(values[1]),
                     _mm512_loadu_ps(values[2]));
    }
}

/* 16 sums into output element `at` onward in the wire dtype: int16 / int8 clamped and rounded (halves
 * to even, the default rounding mode), as store_row writes them, or float32; under `mask` only for the
 * last cells of a row (output rows are not padded), by plain stores otherwise (see colour_block). */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) void
store_cells_avx512(const Group *p, Py_ssize_t at, __m512 x, __mmask16 mask) {
    const int whole = mask == (__mmask16)0xFFFF;
    if (p->kind == 32) {
        float *target = (float *)p->out + at;
        if (whole)
            _mm512_storeu_ps(target, x);
        else
            _mm512_mask_storeu_ps(target, mask, x);
        return;
    }
    const __m512 limit = _mm512_set1_ps(p->kind == 16 ? 32767.0f : 127.0f);
    const __m512i r =
        _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(x, _mm512_sub_ps(_mm512_setzero_ps(), limit)), limit));
    if (p->kind == 16) {
        int16_t *target = (int16_t *)p->out + at;
        if (whole)
            _mm256_storeu_si256((__m256i *)target, _mm512_cvtepi32_epi16(r));
        else
            _mm256_mask_storeu_epi16(target, mask, _mm512_cvtepi32_epi16(r));
    } else {
        int8_t *target = (int8_t *)p->out + at;
        if (whole)
            _mm_storeu_si128((__m128i *)target, _mm512_cvtepi32_epi8(r));
        else
            _mm_mask_storeu_epi8(target, mask, _mm512_cvtepi32_epi8(r));
    }
}
/* Pass 2 and the stores of cell row i for one plane l and one v with AVX-512: 16 cells at a time,
 * each of the `taps` ring rows they read (source[t]) loaded once and summed with weight[t][n] (the
 * row weight times the channel's scale) into the `count` channels pairing a u with v, which go
 * straight to the wire dtype (store_cells_avx512). */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) void
rows_avx512(const Group *p, Py_ssize_t i, Py_ssize_t l, Py_ssize_t v, const float *const *source, int taps,
            const float (*weight)[8], const int count) {
    const Py_ssize_t width = p->width;
    Py_ssize_t offset[8];
    for (int n = 0; n < count; n++)
        offset[n] = ((l * p->C + p->c_of[v][n]) * p->ch + i) * width;
    for (Py_ssize_t k = 0; k < width; k += 16) {
        const __mmask16 mask = width - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (width - k)) - 1u);
        __m512 acc[8];
        for (int n = 0; n < count; n++)
            acc[n] = _mm512_setzero_ps();
        for (int t = 0; t < taps; t++) {
            const __m512 x = _mm512_loadu_ps(source[t] + k);
            for (int n = 0; n < count; n++)
                acc[n] = _mm512_fmadd_ps(_mm512_set1_ps(weight[t][n]), x, acc[n]);
        }
        for (int n = 0; n < count; n++)
            store_cells_avx512(p, offset[n] + k, acc[n], mask);
    }
}
/* rows_avx512 compiled for each number of channels paired with v. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
rows_any_avx512(const Group *p, Py_ssize_t i, Py_ssize_t l, Py_ssize_t v, const float *const *source, int taps,
                const float (*weight)[8]) {
#define CASE(N)                                                                                                      \
    case N:                                                                                                          \
        rows_avx512(p, i, l, v, source, taps, weight, N);                                                            \
        break;
    switch (p->with_v[v]) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
    }
#undef CASE
}

/* The same three routines with AVX2 and FMA, 8 values at a time, for CPUs without AVX-512. */

/* Pass 1 of one plane's line for 8 cells from j, one v per accumulator, where each cell reads
 * taps 0, 1, ... from its first index (see plan_columns): a cell's pixels are 4-float loads from
 * its first tap, made tap-major vectors by 4x4 transposes in registers (AVX2 has no permute across
 * more than 8 floats, and its hardware gather is slow on the CPUs measured). */
static inline __attribute__((always_inline, target("avx2,fma"))) void
columns_block_avx2(const Group *p, Py_ssize_t j, const float *line, float *across, const int nv) {
    const Py_ssize_t cw = p->cw, wc = p->wc;
    const float *weights = p->packed + j * nv * wc; /* the block's weights, in the order read */
    const int32_t *first = p->col_index + j;
    __m256 acc[8];
    for (int v = 0; v < nv; v++)
        acc[v] = _mm256_setzero_ps();
    for (Py_ssize_t t0 = 0; t0 < wc; t0 += 4) {
        /* a[c]: taps t0 .. t0 + 3 of cell c in the low half, of cell c + 4 in the high half; a 4x4
         * transpose within each half then makes tap t0 + t of cells 0 .. 7 in g[t]. */
        const float *at = line + t0;
        __m256 a[4], g[4];
        for (int c = 0; c < 4; c++)
            a[c] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(at + first[c])),
                                        _mm_loadu_ps(at + first[c + 4]), 1);
        const Py_ssize_t taps = wc - t0 < 4 ? wc - t0 : 4;
        const __m256 low01 = _mm256_unpacklo_ps(a[0], a[1]), low23 = _mm256_unpacklo_ps(a[2], a[3]);
        g[0] = _mm256_shuffle_ps(low01, low23, 0x44);
        g[1] = g[2] = g[3] = _mm256_shuffle_ps(low01, low23, 0xEE);
        if (taps > 2) {
            const __m256 high01 = _mm256_unpackhi_ps(a[0], a[1]), high23 = _mm256_unpackhi_ps(a[2], a[3]);
            g[2] = _mm256_shuffle_ps(high01, high23, 0x44);
            g[3] = _mm256_shuffle_ps(high01, high23, 0xEE);
        }
        for (int t = 0; t < 4; t++) /* unrolled: g stays in registers */
            if (t < taps)
                for (int v = 0; v < nv; v++)
                    acc[v] = _mm256_fmadd_ps(_mm256_loadu_ps(weights + (v * wc + t0 + t) * 8), g[t], acc[v]);
    }
    for (int v = 0; v < nv; v++)
        _mm256_storeu_ps(across + v * cw + j, acc[v]);
}
/* Pass 1 of `count` image rows (as pass_columns_avx512 takes them), block of 8 cells by block;
 * compiled for each number of v. Needs cw a multiple of 8, taps in a row and p->packed. */
__attribute__((target("avx2,fma"))) static void pass_columns_avx2(const Group *p, Py_ssize_t count,
                                                                const float *const *lines, float *const *across) {
    const Py_ssize_t planes = p->planes, nv = p->nv, cw = p->cw;
    for (Py_ssize_t j = 0; j < cw; j += 8)
        for (Py_ssize_t r = 0; r < count; r++)
            for (Py_ssize_t l = 0; l < planes; l++) {
                const float *line = lines[r * planes + l];
                float *target = across[r] + l * nv * cw;
#define CASE(V)                                                                                                      \
    case V:                                                                                                          \
        columns_block_avx2(p, j, line, target, V);                                                                   \
        break;
                switch (nv) {
                    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
                }
#undef CASE
            }
}

/* pass_columns compiled for AVX2 and FMA: pass 1 of the vector routines where theirs cannot serve
 * (see plan_columns). */
__attribute__((target("avx2,fma"))) static void pass_columns_portable_avx2(const Group *p, Py_ssize_t count,
                                                                         const float *const *lines,
                                                                         float *const *across, float *gathered) {
    columns_rows(p, count, lines, across, gathered);
}

/* Every colour's values of n <= 8 pixels (their channels in x0, x1, x2) into lines[q * stride + w]. */
static inline __attribute__((always_inline, target("avx2,fma"))) void
colour_block_avx2(const Colours *c, float *lines, Py_ssize_t w, Py_ssize_t n, __m256 x0, __m256 x1, __m256 x2) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (Py_ssize_t q = 0; q < c->count; q++) {
        const float *m = c->matrix[q];
        __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(m[0]), x0, _mm256_set1_ps(c->bias[q]));
        y = _mm256_fmadd_ps(_mm256_set1_ps(m[1]), x1, y);
        y = _mm256_fmadd_ps(_mm256_set1_ps(m[2]), x2, y);
        if (n == 8)
            _mm256_storeu_ps(lines + q * c->stride + w, y);
        else
            _mm256_maskstore_ps(lines + q * c->stride + w, mask, y);
    }
}
/* colour_lines with AVX2, 8 pixels at a time: a decoded JPEG's 24 bytes of packed uint8 pixels
 * de-interleaved by byte shuffles of two overlapping 16-byte loads and widened, other layouts
 * (and the last pixels) read one by one; the same arithmetic for all. */
__attribute__((target("avx2,fma"))) static void colour_lines_avx2(const Image *x, Py_ssize_t h, const Colours *c,
                                                                float *lines) {
    const Py_ssize_t W = x->W;
    const char *row = x->data + h * x->stride_h;
    Py_ssize_t w = 0;
    if (!x->is_float && x->stride_k == 1 && x->stride_w == 3) {
        /* Byte 3j + k (pixel j, channel k) from the first load (bytes 0-15) while it lies there,
         * else from the second (bytes 8-23); -1 bytes of a shuffle read as 0. */
        __m128i from_first[3], from_second[3];
        for (int k = 0; k < 3; k++) {
            int8_t first[16], second[16];
            for (int j = 0; j < 16; j++) {
                const int at = 3 * j + k;
                first[j] = j < 8 && at < 16 ? (int8_t)at : -1;
                second[j] = j < 8 && at >= 16 ? (int8_t)(at - 8) : -1;
            }
            from_first[k] = _mm_loadu_si128((const __m128i *)first);
            from_second[k] = _mm_loadu_si128((const __m128i *)second);
        }
        for (; w + 8 <= W; w += 8) {
            const __m128i a = _mm_loadu_si128((const __m128i *)(row + 3 * w));
            const __m128i b = _mm_loadu_si128((const __m128i *)(row + 3 * w + 8));
            __m256 channel[3];
            for (int k = 0; k < 3; k++) {
                const __m128i bytes = _mm_or_si128(_mm_shuffle_epi8(a, from_first[k]), _mm_shuffle_epi8(b, from_second[k]));
                channel[k] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
            }
            colour_block_avx2(c, lines, w, 8, channel[0], channel[1], channel[2]);
        }
    } else if (!x->is_float && x->stride_k == 0 && x->stride_w == 1) { /* one stored plane, each channel it */
        for (; w + 8 <= W; w += 8) {
            const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + w))));
            colour_block_avx2(c, lines, w, 8, v, v, v);
        }
    }
    for (; w < W; w += 8) {
        const Py_ssize_t n = W - w < 8 ? W - w : 8;
        float values[3][8] = {{0.0f}};
        for (Py_ssize_t j = 0; j < n; j++) {
            const char *at = row + (w + j) * x->stride_w;
            for (int k = 0; k < 3; k++)
                values[k][j] = pixel(x, at, k);
        }
        colour_block_avx2(c, lines, w, n, _mm256_loadu_ps(values[0]), _mm256_loadu_ps(values[1]),
                          _mm256_loadu_ps(values[2]));
    }
}

/* 8 sums clamped to +-limit and rounded to nearest (halves to even, the default rounding mode), as int32. */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256i rounded_avx2(__m256 x, __m256 limit) {
    const __m256 low = _mm256_sub_ps(_mm256_setzero_ps(), limit);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(x, low), limit));
}
/* 8 cells of `count` channels (acc[n]) in the wire dtype at target[n] + offset bytes; int16 and
 * int8 two channels at a time (one pack and one permute for both). */
static inline __attribute__((always_inline, target("avx2,fma"))) void
store_block_avx2(const Group *p, char *const *target, size_t offset, const __m256 *acc, const int count) {
    if (p->kind == 32) {
        for (int n = 0; n < count; n++)
            _mm256_storeu_ps((float *)(target[n] + offset), acc[n]);
        return;
    }
    const __m256 limit = _mm256_set1_ps(p->kind == 16 ? 32767.0f : 127.0f);
    int n = 0;
    for (; n + 1 < count; n += 2) {
        const __m256i both = _mm256_permute4x64_epi64( /* channel n's 8 words, then n + 1's */
            _mm256_packs_epi32(rounded_avx2(acc[n], limit), rounded_avx2(acc[n + 1], limit)), 0xD8);
        if (p->kind == 16) {
            _mm_storeu_si128((__m128i *)(target[n] + offset), _mm256_castsi256_si128(both));
            _mm_storeu_si128((__m128i *)(target[n + 1] + offset), _mm256_extracti128_si256(both, 1));
        } else {
            const __m256i bytes = _mm256_packs_epi16(both, both); /* the 8 bytes of each in its half */
            _mm_storel_epi64((__m128i *)(target[n] + offset), _mm256_castsi256_si128(bytes));
            _mm_storel_epi64((__m128i *)(target[n + 1] + offset), _mm256_extracti128_si256(bytes, 1));
        }
    }
    for (; n < count; n++) {
        const __m256i r = rounded_avx2(acc[n], limit);
        const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        if (p->kind == 16)
            _mm_storeu_si128((__m128i *)(target[n] + offset), words);
        else
            _mm_storel_epi64((__m128i *)(target[n] + offset), _mm_packs_epi16(words, words));
    }
}
/* Pass 2 and the stores as rows_avx512 does them, 8 cells at a time; the last cells of a row
 * through a small buffer (output rows are not padded). */
static inline __attribute__((always_inline, target("avx2,fma"))) void
rows_avx2(const Group *p, Py_ssize_t i, Py_ssize_t l, Py_ssize_t v, const float *const *source, int taps,
          const float (*weight)[8], const int count) {
    const Py_ssize_t width = p->width;
    const size_t item = p->kind / 8;
    char *target[8];
    for (int n = 0; n < count; n++)
        target[n] = (char *)p->out + ((l * p->C + p->c_of[v][n]) * p->ch + i) * width * item;
    for (Py_ssize_t k = 0; k < width; k += 8) {
        __m256 acc[8];
        for (int n = 0; n < count; n++)
            acc[n] = _mm256_setzero_ps();
        for (int t = 0; t < taps; t++) {
            const __m256 x = _mm256_loadu_ps(source[t] + k);
            for (int n = 0; n < count; n++)
                acc[n] = _mm256_fmadd_ps(_mm256_set1_ps(weight[t][n]), x, acc[n]);
        }
        if (width - k >= 8) {
            store_block_avx2(p, target, k * item, acc, count);
            continue;
        }
        char buffer[8][32], *into[8];
        for (int n = 0; n < count; n++)
            into[n] = buffer[n];
        store_block_avx2(p, into, 0, acc, count);
        for (int n = 0; n < count; n++)
            memcpy(target[n] + k * item, buffer[n], (width - k) * item);
    }
}
/* rows_avx2 compiled for each number of channels paired with v. */
__attribute__((target("avx2,fma"))) static void rows_any_avx2(const Group *p, Py_ssize_t i, Py_ssize_t l,
                                                            Py_ssize_t v, const float *const *source, int taps,
                                                            const float (*weight)[8]) {
#define CASE(N)                                                                                                      \
    case N:                                                                                                          \
        rows_avx2(p, i, l, v, source, taps, weight, N);                                                              \
        break;
    switch (p->with_v[v]) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
    }
#undef CASE
}

/* The best routines the CPU has. */
static int cpu_routines(void) {
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return AVX512;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? AVX2 : PORTABLE;
}

/* Pass 2 and the stores of cell row i with the vector routines: for every plane and v, over the
 * ring rows with a nonzero weight, the row weights times the channels' scales. */
static void pass_rows_vector(const Group *p, Py_ssize_t i, const Work *work) {
    const Py_ssize_t wr = p->wr;
    Py_ssize_t *tap = work->tap;
    float(*weight)[8] = work->weight;
    const float **source = work->sources;
    int taps = 0;
    for (Py_ssize_t t = 0; t < wr; t++) {
        int used = 0;
        for (Py_ssize_t u = 0; u < p->nu; u++)
            used |= p->row_weights[(u * p->ch + i) * wr + t] != 0.0f;
        if (used)
            tap[taps++] = t;
    }
    for (Py_ssize_t v = 0; v < p->nv; v++)
        for (int t = 0; t < taps; t++)
            for (int n = 0; n < p->with_v[v]; n++)
                weight[v * taps + t][n] =
                    p->row_weights[(p->u_of[v][n] * p->ch + i) * wr + tap[t]] * p->scales[p->c_of[v][n]];
    for (Py_ssize_t l = 0; l < p->planes; l++)
        for (Py_ssize_t v = 0; v < p->nv; v++) {
            for (int t = 0; t < taps; t++)
                source[t] = work->slots[tap[t]] + (l * p->nv + v) * p->cw;
            if (work->routines == AVX512)
                rows_any_avx512(p, i, l, v, source, taps, weight + v * taps);
            else
                rows_any_avx2(p, i, l, v, source, taps, weight + v * taps);
        }
}
#endif

/* Cell row i of one group from the ring slots it reads (rows[t]: slot of tap t): every needed
 * (u, v) of every plane into p->row, chunk by chunk. */
static void pass_rows(const Group *p, Py_ssize_t i, const float *const *slots, const float **rows) {
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

static void store_row(const Group *p, Py_ssize_t i) {
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

/* The colour lines of image row h (converting it unless the ring holds it). */
static const float *colour_row(const Image *x, Py_ssize_t h, Colours *c, int routines, int timed, double *seconds) {
    const Py_ssize_t slot = h % c->size;
    float *lines = c->lines + slot * c->count * c->stride;
    if (c->held[slot] != h) {
        const double start = now(timed);
#ifdef VECTOR_ROUTINES
        if (routines == AVX512)
            colour_lines_avx512(x, h, c, lines);
        else if (routines == AVX2)
            colour_lines_avx2(x, h, c, lines);
        else
#endif
            colour_lines(x, h, c, lines);
        c->held[slot] = h;
        seconds[0] += now(timed) - start;
    }
    return lines;
}

/* Cell row i of group p: the image rows it reads through pass 1 into the group's ring (unless it
 * holds them already), then pass 2 and the stores. */
static void cell_row(const Image *x, Group *p, Py_ssize_t i, Colours *c, const Work *work, int timed,
                     double *seconds) {
    const Py_ssize_t length = p->planes * p->nv * p->cw;
    const float **slots = work->slots, **lines = work->lines;
    float **targets = work->targets;
    Py_ssize_t count = 0;
    for (Py_ssize_t t = 0; t < p->wr; t++) {
        const Py_ssize_t h = p->row_index[i * p->wr + t], slot = h % p->ring;
        float *across = p->across + slot * length;
        slots[t] = across;
        if (p->held[slot] == h)
            continue;
        const float *colours = colour_row(x, h, c, work->routines, timed, seconds);
        for (Py_ssize_t l = 0; l < p->planes; l++)
            lines[count * p->planes + l] = colours + p->plane[l] * c->stride;
        targets[count++] = across;
        p->held[slot] = h;
    }
    if (count) {
        const double start = now(timed);
#ifdef VECTOR_ROUTINES
        if (p->columns == AVX512)
            pass_columns_avx512(p, count, lines, targets);
        else if (p->columns == AVX2)
            pass_columns_avx2(p, count, lines, targets);
        else if (work->routines >= AVX2)
            pass_columns_portable_avx2(p, count, lines, targets, work->gathered);
        else
#endif
            pass_columns(p, count, lines, targets, work->gathered);
        seconds[1] += now(timed) - start;
    }
    const double start = now(timed);
#ifdef VECTOR_ROUTINES
    if (work->routines >= AVX2) {
        pass_rows_vector(p, i, work);
        seconds[2] += now(timed) - start;
        return;
    }
#endif
    pass_rows(p, i, slots, work->rows);
    store_row(p, i);
    seconds[2] += now(timed) - start;
}

/* The groups' cell rows of step s of `steps`: group p does its rows up to (s + 1) * ch / steps. */
static Py_ssize_t rows_until(const Group *p, Py_ssize_t s, Py_ssize_t steps) { return (s + 1) * p->ch / steps; }

/* Step by step, every group its share of cell rows, so that the groups read the image rows
 * together and each is converted once. The rings stay in the L2 cache, and nothing of the size
 * of the image is written. */
static void compute(const Image *x, Group *groups, int count, Py_ssize_t steps, Colours *c, const Work *work,
                    int timed, double *seconds) {
    Py_ssize_t done[MAX_GROUPS];
    for (Py_ssize_t s = 0; s < c->size; s++)
        c->held[s] = -1;
    for (int k = 0; k < count; k++) {
        done[k] = 0;
        for (Py_ssize_t s = 0; s < groups[k].ring; s++)
            groups[k].held[s] = -1;
    }
    for (Py_ssize_t s = 0; s < steps; s++)
        for (int k = 0; k < count; k++)
            for (; done[k] < rows_until(&groups[k], s, steps); done[k]++)
                cell_row(x, &groups[k], done[k], c, work, timed, seconds);
}

/* Colour slots enough that no line is converted twice: the span of image rows that the cell
 * rows of two consecutive steps read, over all groups. */
static Py_ssize_t colour_ring_size(const Group *groups, int count, Py_ssize_t steps, Py_ssize_t H) {
    Py_ssize_t size = 1, previous_lo = H, previous_hi = -1;
    for (Py_ssize_t s = 0; s < steps; s++) {
        Py_ssize_t lo = H, hi = -1;
        for (int k = 0; k < count; k++) {
            const Group *p = &groups[k];
            for (Py_ssize_t i = s ? rows_until(p, s - 1, steps) : 0; i < rows_until(p, s, steps); i++)
                for (Py_ssize_t t = 0; t < p->wr; t++) {
                    const Py_ssize_t h = p->row_index[i * p->wr + t];
                    lo = h < lo ? h : lo;
                    hi = h > hi ? h : hi;
                }
        }
        const Py_ssize_t both_lo = lo < previous_lo ? lo : previous_lo, both_hi = hi > previous_hi ? hi : previous_hi;
        if (both_hi >= both_lo && both_hi - both_lo + 1 > size)
            size = both_hi - both_lo + 1;
        previous_lo = lo, previous_hi = hi;
    }
    return size;
}

/* Each group plane's colour row among the distinct ones (the same row and offset: the same line). */
static const char *find_colours(Group *groups, int count, Colours *c) {
    memset(c, 0, sizeof(*c)); /* the rows past count read as 0 by the portable colour loops */
    for (int k = 0; k < count; k++)
        for (Py_ssize_t l = 0; l < groups[k].planes; l++) {
            const float *m = groups[k].colour + 3 * l, b = groups[k].bias[l];
            Py_ssize_t q = 0;
            while (q < c->count && !(c->matrix[q][0] == m[0] && c->matrix[q][1] == m[1] && c->matrix[q][2] == m[2] &&
                                     c->bias[q] == b))
                q++;
            if (q == c->count) {
                if (c->count == MAX_COLOURS)
                    return "more than 8 distinct colour rows";
                memcpy(c->matrix[q], m, sizeof(float) * 3);
                c->bias[q] = b;
                c->count++;
            }
            groups[k].plane[l] = (int)q;
        }
    return NULL;
}

/* Scratch memory kept between calls (per thread: the kernel runs without the GIL), so that
 * a data loader's stream of images does not pay fresh pages on every call; freed when its thread
 * ends (or, for the thread that frees the module, then). */
enum { LINES, LINES_HELD, GATHERED, SLOTS, ROWS, LINE_POINTERS, TARGETS, TAPS, WEIGHTS, SOURCES, FIRST_GROUP };
#define SCRATCH (FIRST_GROUP + 6 * MAX_GROUPS)
typedef struct {
    void *memory[SCRATCH];
    size_t size[SCRATCH];
} Scratch;
static pthread_key_t scratch_key;
static atomic_int scratch_holders; /* threads holding a Scratch (scratch_threads) */

static void free_scratch(void *data) {
    Scratch *s = data;
    for (int k = 0; k < SCRATCH; k++)
        free(s->memory[k]);
    free(s);
    atomic_fetch_sub(&scratch_holders, 1);
}

/* The calling thread's scratch, made on its first call; NULL without memory. */
static Scratch *thread_scratch(void) {
    Scratch *s = pthread_getspecific(scratch_key);
    if (s)
        return s;
    if (!(s = calloc(1, sizeof(*s))))
        return NULL;
    if (pthread_setspecific(scratch_key, s)) {
        free(s);
        return NULL;
    }
    atomic_fetch_add(&scratch_holders, 1);
    return s;
}

static void *scratch_buffer(Scratch *s, int k, size_t bytes) {
    if (bytes > s->size[k]) {
        void *grown = realloc(s->memory[k], bytes + bytes / 4 + 64);
        if (!grown)
            return NULL;
        s->memory[k] = grown;
        s->size[k] = bytes + bytes / 4 + 64;
    }
    return s->memory[k];
}

/* p->bases and p->spans (see columns_avx512); p->columns, the pass-1 routines for `routines` (those
 * of the call): AVX2 where each cell reads taps 0, 1, ... from its first index (or has no weight there) and
 * 4-float loads from there stay within its colour line (what resizes make), with p->packed; W: the
 * image width. */
static void plan_columns(Group *p, Py_ssize_t W, int routines) {
    for (Py_ssize_t block = 0; block < (p->cw + 15) / 16; block++) {
        int32_t lo = INT32_MAX, hi = -1;
        for (Py_ssize_t t = 0; t < p->wc; t++)
            for (Py_ssize_t j = 16 * block; j < 16 * block + 16 && j < p->cw; j++) {
                const int32_t index = p->col_index[t * p->cw + j];
                lo = index < lo ? index : lo;
                hi = index > hi ? index : hi;
            }
        p->bases[block] = lo;
        p->spans[block] = hi - lo < 256 ? (hi - lo) / 64 + 1 : 0;
    }
    p->columns = routines == AVX512 && p->cw % 16 == 0 ? AVX512 : routines >= AVX2 && p->cw % 8 == 0 ? AVX2 : PORTABLE;
    if (p->columns != AVX2)
        return;
    const Py_ssize_t loaded = (p->wc + 3) / 4 * 4; /* taps the AVX2 transposes load per cell */
    for (Py_ssize_t j = 0; j < p->cw; j++) {
        const int32_t first = p->col_index[j];
        if (first + loaded > W + LINE_PADDING)
            p->columns = PORTABLE;
        for (Py_ssize_t t = 1; t < p->wc; t++) {
            int weighted = 0;
            for (Py_ssize_t v = 0; v < p->nv; v++)
                weighted |= p->col_weights[(v * p->wc + t) * p->cw + j] != 0.0f;
            if (p->col_index[t * p->cw + j] != first + t && weighted)
                p->columns = PORTABLE;
        }
    }
    for (Py_ssize_t j = 0; p->columns == AVX2 && j < p->cw; j += 8)
        for (Py_ssize_t vt = 0; vt < p->nv * p->wc; vt++)
            memcpy(p->packed + j * p->nv * p->wc + vt * 8, p->col_weights + vt * p->cw + j, sizeof(float) * 8);
}

enum { COLOUR, BIAS, COL_INDEX, COL_WEIGHTS, ROW_INDEX, ROW_WEIGHTS, PAIRS, SCALES, OUT, PER_GROUP };

/* The first value of a float image that is not finite, as "nan", "inf" or "-inf" (its row, column and
 * channel in at), or NULL. */
static const char *non_finite(const Image *x, Py_ssize_t at[3]) {
    if (!x->is_float)
        return NULL;
    for (Py_ssize_t h = 0; h < x->H; h++)
        for (Py_ssize_t w = 0; w < x->W; w++)
            for (Py_ssize_t k = 0; k < x->K; k++) {
                const float value = *(const float *)(x->data + h * x->stride_h + w * x->stride_w + k * x->stride_k);
                if (!isfinite(value)) {
                    at[0] = h, at[1] = w, at[2] = k;
                    return isnan(value) ? "nan" : value > 0 ? "inf" : "-inf";
                }
            }
    return NULL;
}

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
    for (Py_ssize_t v = 0; v < 8; v++)
        p->with_v[v] = 0;
    for (Py_ssize_t c = 0; c < p->C; c++) {
        const int32_t u = p->pairs[2 * c], v = p->pairs[2 * c + 1];
        for (int n = 0; n < p->with_v[v]; n++)
            if (p->u_of[v][n] == u)
                return "a frequency pair is asked for twice";
        p->u_of[v][p->with_v[v]] = u, p->c_of[v][p->with_v[v]] = (int)c;
        p->with_v[v]++;
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
    Py_ssize_t at[3];
    const char *found = non_finite(&x, at);
    if (found) {
        PyErr_Format(PyExc_ValueError,
                     "banded_dct: the image holds %s at pixel (%zd, %zd), channel %zd: the transform needs finite "
                     "values; replace them (numpy.nan_to_num, say) or leave the image out",
                     found, at[0], at[1], at[2]);
        goto done;
    }
    Scratch *scratch = thread_scratch();
    if (!scratch) {
        PyErr_NoMemory();
        goto done;
    }
    Work work = {.routines = routines};
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
        if (!(p->across = scratch_buffer(scratch, FIRST_GROUP + 6 * k, slot * p->ring)) ||
            !(p->held = scratch_buffer(scratch, FIRST_GROUP + 6 * k + 1, sizeof(Py_ssize_t) * p->ring)) ||
            !(p->row = scratch_buffer(scratch, FIRST_GROUP + 6 * k + 2, slot * p->nu)) ||
            !(p->bases = scratch_buffer(scratch, FIRST_GROUP + 6 * k + 3, sizeof(int32_t) * ((p->cw + 15) / 16))) ||
            !(p->spans = scratch_buffer(scratch, FIRST_GROUP + 6 * k + 4, sizeof(int32_t) * ((p->cw + 15) / 16))) ||
            !(p->packed = scratch_buffer(scratch, FIRST_GROUP + 6 * k + 5, sizeof(float) * p->nv * p->wc * p->cw))) {
            PyErr_NoMemory();
            goto done;
        }
        plan_columns(p, x.W, work.routines);
    }
    Py_ssize_t steps = 1;
    for (Py_ssize_t k = 0; k < count; k++)
        steps = groups[k].ch > steps ? groups[k].ch : steps;
    Colours colours;
    if ((problem = find_colours(groups, (int)count, &colours)))
        goto done;
    /* Each colour line has LINE_PADDING floats past the image that whole-vector loads read (and
     * never use); stride a multiple of 16 floats. */
    colours.stride = (x.W + LINE_PADDING + 15) / 16 * 16;
    colours.size = colour_ring_size(groups, (int)count, steps, x.H);
    const Py_ssize_t line_count = colours.size * colours.count;
    colours.lines = scratch_buffer(scratch, LINES, sizeof(float) * colours.stride * line_count);
    colours.held = scratch_buffer(scratch, LINES_HELD, sizeof(Py_ssize_t) * colours.size);
    work.gathered = scratch_buffer(scratch, GATHERED, sizeof(float) * gathered);
    work.slots = scratch_buffer(scratch, SLOTS, sizeof(float *) * taps);
    work.rows = scratch_buffer(scratch, ROWS, sizeof(float *) * taps);
    work.lines = scratch_buffer(scratch, LINE_POINTERS, sizeof(float *) * taps * MAX_PLANES);
    work.targets = scratch_buffer(scratch, TARGETS, sizeof(float *) * taps);
    work.tap = scratch_buffer(scratch, TAPS, sizeof(Py_ssize_t) * taps);
    work.weight = scratch_buffer(scratch, WEIGHTS, sizeof(float[8]) * 8 * taps);
    work.sources = scratch_buffer(scratch, SOURCES, sizeof(float *) * taps);
    if (!colours.lines || !colours.held || !work.gathered || !work.slots || !work.rows || !work.lines ||
        !work.targets || !work.tap || !work.weight || !work.sources) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t l = 0; l < line_count; l++)
        memset(colours.lines + l * colours.stride + x.W, 0, sizeof(float) * (colours.stride - x.W));
    double seconds[3] = {0.0, 0.0, 0.0};
    Py_BEGIN_ALLOW_THREADS
    compute(&x, groups, (int)count, steps, &colours, &work, timed, seconds);
    Py_END_ALLOW_THREADS
    if (timed)
        result = Py_BuildValue("(ddd)", seconds[0], seconds[1], seconds[2]);
    else {
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    if (problem)
        PyErr_Format(PyExc_ValueError, "banded_dct: %s", problem);
    for (Py_ssize_t k = 0; k < MAX_GROUPS; k++)
        release(b[k], PER_GROUP);
    release(&image_buffer, 1);
    Py_DECREF(sequence);
    return result;
}

/* use_routines(name): switch to the named routines ("avx512", "avx2" or "portable"), or to the
 * best below them that the CPU has; returns the name of those now in use. Tests run each. */
static PyObject *use_routines(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!name)
        return PyErr_Format(PyExc_TypeError, "use_routines: a name, one of 'avx512', 'avx2', 'portable'");
    int wanted = 0;
    while (wanted < 3 && strcmp(name, routine_names[wanted]))
        wanted++;
    if (wanted == 3)
        return PyErr_Format(PyExc_ValueError, "use_routines: %R is not one of 'avx512', 'avx2', 'portable'", arg);
#ifdef VECTOR_ROUTINES
    const int best = cpu_routines();
    routines = wanted < best ? wanted : best;
    return PyUnicode_FromString(routine_names[routines]);
#else
    return PyUnicode_FromString("portable");
#endif
}

/* routines(): the name of the routines in use, as use_routines returns it. */
static PyObject *routines_in_use(PyObject *self, PyObject *unused) { return PyUnicode_FromString(routine_names[routines]); }

/* portable_isa(): the widest x86 vector extension the portable loops are compiled for. They carry no
 * target attribute and no clones, so it is the build's baseline: what a CPU without AVX2 runs. */
static PyObject *portable_isa(PyObject *self, PyObject *unused) {
#if defined(__AVX512F__)
    return PyUnicode_FromString("avx512f");
#elif defined(__AVX2__)
    return PyUnicode_FromString("avx2");
#elif defined(__AVX__)
    return PyUnicode_FromString("avx");
#elif defined(__SSE2__)
    return PyUnicode_FromString("sse2");
#else
    return PyUnicode_FromString("none");
#endif
}

/* scratch_threads(): how many threads hold the kernel's scratch memory (freed when they end). */
static PyObject *scratch_threads(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(atomic_load(&scratch_holders));
}

static PyMethodDef methods[] = {
    {"routines", routines_in_use, METH_NOARGS, "routines() -> str: 'avx512', 'avx2' or 'portable', the routines in use."},
    {"portable_isa", portable_isa, METH_NOARGS,
     "portable_isa() -> str: the widest x86 vector extension ('sse2', 'avx', 'avx2', 'avx512f', or 'none') the "
     "portable routines are compiled for: the build's baseline."},
    {"scratch_threads", scratch_threads, METH_NOARGS,
     "scratch_threads() -> int: how many threads hold the kernel's scratch memory (freed when a thread ends)."},
    {"use_routines", use_routines, METH_O,
     "use_routines(name) -> str: use the 'avx512', 'avx2' or 'portable' routines, or the best below them that "
     "the CPU has; returns the name of those in use."},
    {"banded_dct", (PyCFunction)(void (*)(void))banded_dct, METH_VARARGS | METH_KEYWORDS,
     "banded_dct(image, groups, timed=False): the frequency transform of an (H, W, K) uint8 or float32 "
     "image, for each group (colour (P, K), bias (P,), col_index, col_weights, row_index, row_weights, pairs, "
     "scales, out (P, C, cells_h, cells_w)) of P colour planes sharing operators and channels, written into its "
     "out in out's dtype. With timed, returns the seconds of the colour conversion, pass 1, and pass 2 "
     "with the stores."},
    {NULL, NULL, 0, NULL},
};

/* The module's end (at the interpreter's): the scratch of the thread that ends it, as no thread end follows. */
static void free_module(void *unused) {
    Scratch *s = pthread_getspecific(scratch_key);
    if (s) {
        pthread_setspecific(scratch_key, NULL);
        free_scratch(s);
    }
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_banded", "The frequency transform's CPU kernel.", -1,
                                    methods, NULL, NULL, NULL, free_module};

static int key_made = -1;
static void make_key(void) { key_made = pthread_key_create(&scratch_key, free_scratch); }

PyMODINIT_FUNC PyInit__banded(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_key);
    if (key_made != 0)
        return PyErr_Format(PyExc_ImportError, "freqdet.dct._banded: no thread-local key for its scratch memory");
#ifdef VECTOR_ROUTINES
    __builtin_cpu_init();
    routines = cpu_routines();
#endif
    return PyModule_Create(&module);
}
