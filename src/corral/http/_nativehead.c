/* The request head's llhttp check and field split in C: the native half of corral.http.native.
 *
 * One call per head that missed the head cache (connection.py, _HEADS):
 *
 *     split(head: bytes, method_len: int) -> (headers, special, dropped) | str
 *
 * does what the pure-Python core does with httptools plus bytes.split (corral.http.headfields,
 * the reference): llhttp checks the whole head (a fresh parser each call, the verdict the Python
 * side's "fresh parser decides" rule gives), an unknown method is retried as "GET" (RFC 9110 §9.1:
 * any token is a method; llhttp knows a fixed list), and the field lines are then split exactly
 * as headfields._Fields splits them: on CRLF, at the first ":", the name ASCII-lower-cased, the
 * value stripped of SP/HTAB, a name in the special set goes to `special` (and `headers`), a name
 * with "_" to `dropped`. A refusal returns llhttp's reason (latin-1), the text httptools puts in
 * its HttpParserError, so the ProtocolError raised in Python is the same one.
 *
 * Why a vendored llhttp rather than the one inside httptools' parser .so: that module is loaded
 * RTLD_LOCAL and exports no C API, so reaching its llhttp symbols means dlopen()ing another
 * package's private file by path and trusting its ABI; the vendored copy (vendor/llhttp, MIT,
 * the same 9.4.3 the httptools 0.9.0 sdist carries) builds anywhere a C compiler does, and the
 * agreement tests (tests/unit/test_native_head.py) catch a drift between the two copies.
 *
 * Memory safety: every access is inside [head, head + len) with lengths from Py_buffer; the only
 * allocation is the GET-retry copy, sized 3 + len - method_len with method_len checked to lie in
 * [0, len]; no fixed-size buffers, no recursion, one pass per line.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "llhttp.h"

static PyObject *special_names = NULL; /* frozenset of lower-cased names, from set_special() */
static llhttp_settings_t settings;

/* httptools' cb_on_headers_complete with a protocol that has no callbacks: 1 ("no body, stop")
 * for an upgrade, else 0. */
static int
on_headers_complete(llhttp_t *parser)
{
    return parser->upgrade ? 1 : 0;
}

/* NULL when llhttp accepts `data`, else its reason (a string literal inside llhttp.c). */
static const char *
llhttp_verdict(const char *data, size_t len)
{
    llhttp_t parser;
    llhttp_errno_t err;
    const char *reason;

    llhttp_init(&parser, HTTP_REQUEST, &settings);
    err = llhttp_execute(&parser, data, len);
    if (err == HPE_OK)
        return NULL;
    if (err == HPE_PAUSED_UPGRADE && parser.upgrade == 1)
        return NULL; /* httptools raises HttpParserUpgrade; the head itself parsed fine */
    reason = llhttp_get_error_reason(&parser);
    return reason != NULL ? reason : "";
}

/* The verdict of headfields.PythonHead.validate: the head as sent, then (unknown method) the
 * head with the method replaced by GET. Returns 0 and sets *reason, or -1 on MemoryError. */
static int
head_verdict(const char *head, Py_ssize_t len, Py_ssize_t method_len, const char **reason)
{
    char *alt;
    Py_ssize_t alt_len;

    *reason = llhttp_verdict(head, (size_t)len);
    if (*reason == NULL || (method_len == 3 && memcmp(head, "GET", 3) == 0))
        return 0;
    alt_len = 3 + (len - method_len);
    alt = PyMem_Malloc((size_t)alt_len);
    if (alt == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(alt, "GET", 3);
    memcpy(alt + 3, head + method_len, (size_t)(len - method_len));
    *reason = llhttp_verdict(alt, (size_t)alt_len);
    PyMem_Free(alt);
    return 0;
}

static int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* One field line (no CRLF) as _Fields._split handles it. Returns -1 with an exception set. */
static int
add_line(const char *line, Py_ssize_t len, PyObject *headers, PyObject *special,
         PyObject *dropped)
{
    const char *colon = memchr(line, ':', (size_t)len);
    Py_ssize_t name_len = colon != NULL ? colon - line : len;
    const char *value = colon != NULL ? colon + 1 : line + len;
    const char *end = line + len;
    PyObject *name, *val, *pair;
    char *out;
    int has_underscore = 0, is_special, rc;

    name = PyBytes_FromStringAndSize(NULL, name_len);
    if (name == NULL)
        return -1;
    out = PyBytes_AS_STRING(name);
    for (Py_ssize_t i = 0; i < name_len; i++) {
        char c = line[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        has_underscore |= (c == '_');
    }
    is_special = PySet_Contains(special_names, name);
    if (is_special < 0)
        goto fail_name;
    if (!is_special && has_underscore) {
        rc = PyList_Append(dropped, name);
        Py_DECREF(name);
        return rc;
    }
    while (value < end && is_ows(*value))
        value++;
    while (end > value && is_ows(end[-1]))
        end--;
    val = PyBytes_FromStringAndSize(value, end - value);
    if (val == NULL)
        goto fail_name;
    pair = PyTuple_Pack(2, name, val);
    Py_DECREF(name);
    Py_DECREF(val);
    if (pair == NULL)
        return -1;
    rc = PyList_Append(headers, pair);
    if (rc == 0 && is_special)
        rc = PyList_Append(special, pair);
    Py_DECREF(pair);
    return rc;
fail_name:
    Py_DECREF(name);
    return -1;
}

/* head[first+2 : -4] split on CRLF, as bytes.split does (every piece, empty ones included). */
static int
split_block(const char *head, Py_ssize_t len, PyObject *headers, PyObject *special,
            PyObject *dropped)
{
    const char *crlf = len >= 2 ? memchr(head, '\r', (size_t)len) : NULL;
    Py_ssize_t first = -1, start, stop, pos;

    while (crlf != NULL) { /* head.find(b"\r\n") */
        Py_ssize_t at = crlf - head;
        if (at + 1 < len && head[at + 1] == '\n') {
            first = at;
            break;
        }
        crlf = at + 1 < len ? memchr(head + at + 1, '\r', (size_t)(len - at - 1)) : NULL;
    }
    start = first + 2;
    stop = len - 4;
    if (start > len)
        start = len;
    if (stop < 0)
        stop = 0;
    if (start >= stop)
        return 0; /* an empty block: _Fields adds nothing */
    pos = start;
    for (;;) {
        const char *line = head + pos;
        Py_ssize_t left = stop - pos, n = 0;
        while (n + 1 < left && !(line[n] == '\r' && line[n + 1] == '\n'))
            n++;
        if (n + 1 >= left) { /* no CRLF left: the last piece is the rest */
            return add_line(line, left, headers, special, dropped);
        }
        if (add_line(line, n, headers, special, dropped) < 0)
            return -1;
        pos += n + 2;
    }
}

static PyObject *
nativehead_split(PyObject *module, PyObject *args)
{
    const char *head, *reason;
    Py_ssize_t len, method_len;
    PyObject *headers = NULL, *special = NULL, *dropped = NULL, *result;

    (void)module;
    if (!PyArg_ParseTuple(args, "y#n:split", &head, &len, &method_len))
        return NULL;
    if (special_names == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_special() was not called");
        return NULL;
    }
    if (method_len < 0 || method_len > len) {
        PyErr_SetString(PyExc_ValueError, "method_len outside the head");
        return NULL;
    }
    if (head_verdict(head, len, method_len, &reason) < 0)
        return NULL;
    if (reason != NULL)
        return PyUnicode_DecodeLatin1(reason, (Py_ssize_t)strlen(reason), NULL);
    headers = PyList_New(0);
    special = PyList_New(0);
    dropped = PyList_New(0);
    if (headers == NULL || special == NULL || dropped == NULL
        || split_block(head, len, headers, special, dropped) < 0) {
        Py_XDECREF(headers);
        Py_XDECREF(special);
        Py_XDECREF(dropped);
        return NULL;
    }
    result = PyTuple_Pack(3, headers, special, dropped);
    Py_DECREF(headers);
    Py_DECREF(special);
    Py_DECREF(dropped);
    return result;
}

static PyObject *
nativehead_set_special(PyObject *module, PyObject *names)
{
    (void)module;
    if (!PyFrozenSet_CheckExact(names)) {
        PyErr_SetString(PyExc_TypeError, "set_special() takes a frozenset of bytes");
        return NULL;
    }
    Py_INCREF(names);
    Py_XSETREF(special_names, names);
    Py_RETURN_NONE;
}

static PyObject *
nativehead_llhttp_version(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("(iii)", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
                         LLHTTP_VERSION_PATCH);
}

static PyMethodDef nativehead_methods[] = {
    {"split", nativehead_split, METH_VARARGS,
     "split(head, method_len) -> (headers, special, dropped), or llhttp's reason (str)."},
    {"set_special", nativehead_set_special, METH_O,
     "set_special(frozenset): the lower-cased names that also go to `special`."},
    {"llhttp_version", nativehead_llhttp_version, METH_NOARGS,
     "The vendored llhttp's (major, minor, patch)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef nativehead_module = {
    PyModuleDef_HEAD_INIT, "_nativehead",
    "The request head's llhttp check and field split in C (see corral.http.native).", -1,
    nativehead_methods,
};

PyMODINIT_FUNC
PyInit__nativehead(void)
{
    llhttp_settings_init(&settings);
    settings.on_headers_complete = on_headers_complete;
    return PyModule_Create(&nativehead_module);
}
