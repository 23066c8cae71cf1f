/*
 * freqdet.io._jpeg: read a JPEG's quantized DCT coefficients with libjpeg, without decoding
 * pixels (entropy decoding only: no inverse DCT, no upsampling, no colour conversion).
 *
 * read_coefficients(data) -> (width, height, color_space, components)
 *   data:        the bytes of a JPEG file
 *   color_space: libjpeg's J_COLOR_SPACE of the file (1 grayscale, 3 YCbCr, 4 CMYK, 5 YCCK, 2 RGB)
 *   components:  one tuple per component,
 *                (rows, cols, h_samp, v_samp, coefficients, quantization)
 *                coefficients: bytes of int16, rows x cols blocks x 64, natural (row-major) order
 *                quantization: bytes of uint16, the component's 64 quantizers, natural order
 *
 * Corrupt data is an error, never a partly grey result: libjpeg's warnings (truncated
 * files, corrupt entropy-coded data) raise ValueError like its errors do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>

struct error_manager {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo) {
    struct error_manager *err = (struct error_manager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) { /* a warning: corrupt or truncated data */
        on_error(cinfo);
    }
}

static PyObject *read_coefficients(PyObject *self, PyObject *args) {
    Py_buffer data;
    struct jpeg_decompress_struct cinfo;
    struct error_manager err;
    PyObject *volatile components = NULL;
    PyObject *result;
    jvirt_barray_ptr *arrays;
    int c;

    if (!PyArg_ParseTuple(args, "y*", &data)) {
        return NULL;
    }
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    err.message[0] = '\0';
    jpeg_create_decompress(&cinfo);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        Py_XDECREF(components);
        PyErr_Format(PyExc_ValueError, "libjpeg: %s", err.message);
        return NULL;
    }
    jpeg_mem_src(&cinfo, (const unsigned char *)data.buf, (unsigned long)data.len);
    jpeg_read_header(&cinfo, TRUE);
    arrays = jpeg_read_coefficients(&cinfo);

    components = PyList_New(cinfo.num_components);
    if (components == NULL) {
        longjmp(err.jump, 1);
    }
    for (c = 0; c < cinfo.num_components; c++) {
        jpeg_component_info *comp = &cinfo.comp_info[c];
        JDIMENSION rows = comp->height_in_blocks, cols = comp->width_in_blocks, r;
        Py_ssize_t row_bytes = (Py_ssize_t)cols * DCTSIZE2 * sizeof(JCOEF);
        PyObject *coefficients = PyBytes_FromStringAndSize(NULL, row_bytes * rows);
        PyObject *quantization = PyBytes_FromStringAndSize(NULL, DCTSIZE2 * sizeof(unsigned short));
        PyObject *entry;
        char *out;
        unsigned short *quant;
        int k;

        if (coefficients == NULL || quantization == NULL || comp->quant_table == NULL) {
            Py_XDECREF(coefficients);
            Py_XDECREF(quantization);
            snprintf(err.message, sizeof(err.message), "component %d has no coefficients or quantization table", c);
            longjmp(err.jump, 1);
        }
        out = PyBytes_AS_STRING(coefficients);
        for (r = 0; r < rows; r++) {
            JBLOCKARRAY block_row = (*cinfo.mem->access_virt_barray)((j_common_ptr)&cinfo, arrays[c], r, 1, FALSE);
            memcpy(out + r * row_bytes, block_row[0], row_bytes);
        }
        quant = (unsigned short *)PyBytes_AS_STRING(quantization);
        for (k = 0; k < DCTSIZE2; k++) {
            quant[k] = (unsigned short)comp->quant_table->quantval[k];
        }
        entry = Py_BuildValue("(IIiiNN)", rows, cols, comp->h_samp_factor, comp->v_samp_factor, coefficients, quantization);
        if (entry == NULL) {
            longjmp(err.jump, 1);
        }
        PyList_SET_ITEM(components, c, entry);
    }
    jpeg_finish_decompress(&cinfo);
    result = Py_BuildValue("(IIiO)", cinfo.image_width, cinfo.image_height, (int)cinfo.jpeg_color_space, components);
    Py_DECREF(components);
    jpeg_destroy_decompress(&cinfo);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"read_coefficients", read_coefficients, METH_VARARGS,
     "read_coefficients(data) -> (width, height, color_space, components): a JPEG's quantized "
     "DCT coefficients, without decoding pixels."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpeg", "libjpeg coefficient reader for freqdet.", -1, methods};

PyMODINIT_FUNC PyInit__jpeg(void) { return PyModule_Create(&module); }
