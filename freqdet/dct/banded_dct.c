/* freqdet.dct._banded: the frequency transform's two banded passes on a CPU, in one call.
 *
 * The same arithmetic as freqdet.dct.separable's torch path (which runs everywhere, GPUs
 * included): for one Y, Cb or Cr plane P (H x W, float32) and the per-axis operators of
 * freqdet.dct.operators.axis_operator,
 *
 *   across[h][v][j] = sum_t col_weights[v][j][t] * P[h][col_index[j][t]]        (pass 1)
 *   out[c][i][j]    = scale[c] * sum_t row_weights[u_c][i][t] * across[row_index[i][t]][v_c][j]
 *
 * with (u_c, v_c) the frequency pair of output channel c. Pass 1 runs on the transposed
 * plane so that its inner loop walks contiguous memory, pass 2 only computes the pairs
 * asked for and writes the wire dtype directly: int16 / int8 rounded to nearest (half
 * away from zero) and clamped, or float32. No float copy of the output is made.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Py_buffer view;
    int held;
} Buffer;

static int get_buffer(PyObject *obj, Buffer *buffer, const char *format, int ndim, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &buffer->view, flags) < 0)
        return -1;
    buffer->held = 1;
    const char *got = buffer->view.format;
    if (got[0] == '@' || got[0] == '=' || got[0] == '<')
        got++;
    /* int64 is 'l' on LP64 platforms and 'q' elsewhere. */
    int same = format == NULL || strcmp(got, format) == 0 ||
               (strcmp(format, "q") == 0 && strcmp(got, "l") == 0 && buffer->view.itemsize == 8);
    if (buffer->view.ndim != ndim || !same) {
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous %d-d array of format '%s', got %d-d '%s'",
                     name, ndim, format ? format : "any", buffer->view.ndim, buffer->view.format);
        return -1;
    }
    return 0;
}

static void release(Buffer *buffers, int count) {
    for (int k = 0; k < count; k++)
        if (buffers[k].held)
            PyBuffer_Release(&buffers[k].view);
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

static inline void axpy(float *restrict acc, const float *restrict source, float weight, Py_ssize_t n) {
    for (Py_ssize_t k = 0; k < n; k++)
        acc[k] += weight * source[k];
}

static inline void store_int16(int16_t *restrict target, const float *restrict values, Py_ssize_t n) {
    for (Py_ssize_t k = 0; k < n; k++)
        target[k] = (int16_t)round_clamp(values[k], 32767.0f);
}

static inline void store_int8(int8_t *restrict target, const float *restrict values, Py_ssize_t n) {
    for (Py_ssize_t k = 0; k < n; k++)
        target[k] = (int8_t)round_clamp(values[k], 127.0f);
}

/* Both passes (see the top of this file); scratch: transposed W*H, across_t and across nv*cw*H, row C*cw. */
VECTOR_CLONES static void compute(const float *plane, Py_ssize_t H, Py_ssize_t W, const int64_t *col_index,
                                  const float *col_weights, Py_ssize_t cw, Py_ssize_t wc, Py_ssize_t nv,
                                  const int64_t *row_index, const float *row_weights, Py_ssize_t ch, Py_ssize_t wr,
                                  const int32_t *pairs, const float *scales, Py_ssize_t C, int kind, void *out,
                                  float *transposed, float *across_t, float *across, float *row) {
    const Py_ssize_t tile = 32;
    for (Py_ssize_t h0 = 0; h0 < H; h0 += tile)
        for (Py_ssize_t w0 = 0; w0 < W; w0 += tile)
            for (Py_ssize_t h = h0; h < h0 + tile && h < H; h++)
                for (Py_ssize_t w = w0; w < w0 + tile && w < W; w++)
                    transposed[w * H + h] = plane[h * W + w];
    /* Each input column is read once per cell and stays in cache for every v. */
    memset(across_t, 0, sizeof(float) * cw * nv * H);
    for (Py_ssize_t j = 0; j < cw; j++)
        for (Py_ssize_t t = 0; t < wc; t++) {
            const float *source = transposed + col_index[j * wc + t] * H;
            for (Py_ssize_t v = 0; v < nv; v++) {
                const float weight = col_weights[(v * cw + j) * wc + t];
                if (weight != 0.0f)
                    axpy(across_t + (j * nv + v) * H, source, weight, H);
            }
        }
    for (Py_ssize_t j0 = 0; j0 < cw; j0 += tile)
        for (Py_ssize_t h0 = 0; h0 < H; h0 += tile)
            for (Py_ssize_t v = 0; v < nv; v++)
                for (Py_ssize_t j = j0; j < j0 + tile && j < cw; j++)
                    for (Py_ssize_t h = h0; h < h0 + tile && h < H; h++)
                        across[(h * nv + v) * cw + j] = across_t[(j * nv + v) * H + h];
    /* Each pass-1 row is read once per cell row and stays in cache for every channel. */
    for (Py_ssize_t i = 0; i < ch; i++) {
        memset(row, 0, sizeof(float) * C * cw);
        for (Py_ssize_t t = 0; t < wr; t++) {
            const float *source = across + row_index[i * wr + t] * nv * cw;
            for (Py_ssize_t c = 0; c < C; c++) {
                const float weight = row_weights[(pairs[2 * c] * ch + i) * wr + t] * scales[c];
                if (weight != 0.0f)
                    axpy(row + c * cw, source + pairs[2 * c + 1] * cw, weight, cw);
            }
        }
        for (Py_ssize_t c = 0; c < C; c++) {
            const float *acc = row + c * cw;
            const Py_ssize_t offset = (c * ch + i) * cw;
            if (kind == 16) {
                store_int16((int16_t *)out + offset, acc, cw);
            } else if (kind == 8) {
                store_int8((int8_t *)out + offset, acc, cw);
            } else {
                memcpy((float *)out + offset, acc, sizeof(float) * cw);
            }
        }
    }
}

/* Scratch memory kept between calls (per thread: the kernel runs without the GIL), so that
 * a data loader's stream of images does not pay fresh pages on every call. */
static _Thread_local float *scratch_memory[4];
static _Thread_local size_t scratch_size[4];

static float *scratch_buffer(int k, size_t count) {
    if (count > scratch_size[k]) {
        float *grown = realloc(scratch_memory[k], sizeof(float) * (count + count / 4));
        if (!grown)
            return NULL;
        scratch_memory[k] = grown;
        scratch_size[k] = count + count / 4;
    }
    return scratch_memory[k];
}

static PyObject *banded_dct(PyObject *self, PyObject *args) {
    PyObject *objects[8];
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &objects[0], &objects[1], &objects[2], &objects[3], &objects[4],
                          &objects[5], &objects[6], &objects[7]))
        return NULL;
    enum { PLANE, COL_INDEX, COL_WEIGHTS, ROW_INDEX, ROW_WEIGHTS, PAIRS, SCALES, OUT };
    static const char *names[8] = {"plane", "col_index", "col_weights", "row_index", "row_weights", "pairs",
                                   "scales", "out"};
    static const char *formats[8] = {"f", "q", "f", "q", "f", "i", "f", NULL};
    static const int dims[8] = {2, 2, 3, 2, 3, 2, 1, 3};
    Buffer b[8];
    memset(b, 0, sizeof(b));
    for (int k = 0; k < 8; k++)
        if (get_buffer(objects[k], &b[k], formats[k], dims[k], k == OUT, names[k]) < 0) {
            release(b, 8);
            return NULL;
        }
    const Py_ssize_t H = b[PLANE].view.shape[0], W = b[PLANE].view.shape[1];
    const Py_ssize_t cw = b[COL_INDEX].view.shape[0], wc = b[COL_INDEX].view.shape[1];
    const Py_ssize_t nv = b[COL_WEIGHTS].view.shape[0];
    const Py_ssize_t ch = b[ROW_INDEX].view.shape[0], wr = b[ROW_INDEX].view.shape[1];
    const Py_ssize_t nu = b[ROW_WEIGHTS].view.shape[0];
    const Py_ssize_t C = b[PAIRS].view.shape[0];
    const char *out_format = b[OUT].view.format;
    if (out_format[0] == '@' || out_format[0] == '=' || out_format[0] == '<')
        out_format++;
    int kind = out_format[0] == 'h' ? 16 : out_format[0] == 'b' ? 8 : out_format[0] == 'f' ? 32 : 0;
    if (!kind || b[COL_WEIGHTS].view.shape[1] != cw || b[COL_WEIGHTS].view.shape[2] != wc ||
        b[ROW_WEIGHTS].view.shape[1] != ch || b[ROW_WEIGHTS].view.shape[2] != wr || b[PAIRS].view.shape[1] != 2 ||
        b[SCALES].view.shape[0] != C || b[OUT].view.shape[0] != C || b[OUT].view.shape[1] != ch ||
        b[OUT].view.shape[2] != cw) {
        PyErr_SetString(PyExc_ValueError, "banded_dct: inconsistent shapes, or out is not int16, int8 or float32");
        release(b, 8);
        return NULL;
    }
    const float *plane = b[PLANE].view.buf;
    const int64_t *col_index = b[COL_INDEX].view.buf, *row_index = b[ROW_INDEX].view.buf;
    const float *col_weights = b[COL_WEIGHTS].view.buf, *row_weights = b[ROW_WEIGHTS].view.buf;
    const int32_t *pairs = b[PAIRS].view.buf;
    const float *scales = b[SCALES].view.buf;
    for (Py_ssize_t k = 0; k < cw * wc; k++)
        if (col_index[k] < 0 || col_index[k] >= W) {
            PyErr_SetString(PyExc_ValueError, "banded_dct: a column index is outside the plane");
            release(b, 8);
            return NULL;
        }
    for (Py_ssize_t k = 0; k < ch * wr; k++)
        if (row_index[k] < 0 || row_index[k] >= H) {
            PyErr_SetString(PyExc_ValueError, "banded_dct: a row index is outside the plane");
            release(b, 8);
            return NULL;
        }
    for (Py_ssize_t c = 0; c < C; c++)
        if (pairs[2 * c] < 0 || pairs[2 * c] >= nu || pairs[2 * c + 1] < 0 || pairs[2 * c + 1] >= nv) {
            PyErr_SetString(PyExc_ValueError, "banded_dct: a frequency pair is outside the operators");
            release(b, 8);
            return NULL;
        }

    const size_t sizes[4] = {(size_t)(W * H), (size_t)(cw * nv * H), (size_t)(H * nv * cw), (size_t)(C * cw)};
    float *scratch[4];
    for (int k = 0; k < 4; k++)
        if (!(scratch[k] = scratch_buffer(k, sizes[k]))) {
            release(b, 8);
            return PyErr_NoMemory();
        }
    float *transposed = scratch[0], *across_t = scratch[1], *across = scratch[2], *row = scratch[3];
    Py_BEGIN_ALLOW_THREADS
    compute(plane, H, W, col_index, col_weights, cw, wc, nv, row_index, row_weights, ch, wr, pairs, scales, C, kind,
            b[OUT].view.buf, transposed, across_t, across, row);
    Py_END_ALLOW_THREADS
    release(b, 8);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"banded_dct", banded_dct, METH_VARARGS,
     "banded_dct(plane, col_index, col_weights, row_index, row_weights, pairs, scales, out): the frequency "
     "transform's two passes over one plane, written into out (C, cells_h, cells_w) in its dtype."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_banded", "The frequency transform's CPU kernel.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__banded(void) { return PyModule_Create(&module); }
