/* The worker's side of a scoreboard slot, in C: one call per request event and no Python
 * bytecode on the way. Same layout, same seqlock and same bucketing as the pure-Python
 * ScoreboardSlot in scoreboard.py, which remains the fallback and the reference (the tests
 * check one against the other). The layout (word indexes) and the histogram edges come from
 * Python at construction, so scoreboard.py stays the one place that defines them.
 *
 * Seqlock writer: seq odd, release fence, the data, release fence, seq even. On x86-64 the
 * fences only stop the compiler from moving stores; on arm64 they are real barriers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum {
    L_SEQ, L_STATE, L_HEARTBEAT, L_IN_FLIGHT, L_CONNECTIONS, L_BYTES_IN, L_BYTES_OUT,
    L_DURATION_SUM, L_REQUEST_START, L_GC_COUNT0, L_GC_PAUSE0, L_LINE_LEN, L_LINE_OFFSET,
    L_LINE_BYTES, L_STATUS0, L_HIST0, L_NBUCKETS, L_MEMORY_ALERT, L_COUNT
};

typedef struct {
    PyObject_HEAD
    Py_buffer buf;
    int has_buf;
    int64_t *q;
    double *d;
    int64_t seq;
    Py_ssize_t at[L_COUNT];
    double *edges;
    Py_ssize_t nedges;
} Recorder;

#define FENCE() __atomic_thread_fence(__ATOMIC_RELEASE)

static int
recorder_ready(Recorder *self)
{
    if (!self->has_buf) {
        PyErr_SetString(PyExc_ValueError, "the recorder was released");
        return 0;
    }
    return 1;
}

static int
recorder_init(Recorder *self, PyObject *args, PyObject *kwds)
{
    PyObject *buffer, *layout, *edges;
    if (!PyArg_ParseTuple(args, "OO!O!", &buffer, &PyTuple_Type, &layout, &PyTuple_Type, &edges))
        return -1;
    if (PyTuple_GET_SIZE(layout) != L_COUNT) {
        PyErr_Format(PyExc_ValueError, "layout needs %d entries", L_COUNT);
        return -1;
    }
    for (Py_ssize_t i = 0; i < L_COUNT; i++) {
        Py_ssize_t v = PyLong_AsSsize_t(PyTuple_GET_ITEM(layout, i));
        if (v < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "negative layout entry");
            return -1;
        }
        self->at[i] = v;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(edges);
    double *e = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(double));
    if (e == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        e[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(edges, i));
        if (e[i] == -1.0 && PyErr_Occurred()) {
            PyMem_Free(e);
            return -1;
        }
    }
    if (self->has_buf) {
        PyBuffer_Release(&self->buf);
        self->has_buf = 0;
    }
    PyMem_Free(self->edges);
    self->edges = e;
    self->nedges = n;
    if (PyObject_GetBuffer(buffer, &self->buf, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    self->has_buf = 1;
    Py_ssize_t words = self->buf.len / 8;
    Py_ssize_t line_end = self->at[L_LINE_OFFSET] + self->at[L_LINE_BYTES];
    Py_ssize_t hist_end = self->at[L_HIST0] + self->at[L_NBUCKETS];
    if (((uintptr_t)self->buf.buf) % 8 != 0 || hist_end > words || line_end > self->buf.len
        || self->at[L_NBUCKETS] != n + 1 || self->at[L_STATUS0] + 5 > words
        || self->at[L_MEMORY_ALERT] >= words) {
        PyBuffer_Release(&self->buf);
        self->has_buf = 0;
        PyErr_SetString(PyExc_ValueError, "the buffer does not hold this layout");
        return -1;
    }
    self->q = (int64_t *)self->buf.buf;
    self->d = (double *)self->buf.buf;
    int64_t s = self->q[self->at[L_SEQ]];
    self->seq = s + (s & 1); /* an odd value would be a torn bracket: round up */
    return 0;
}

static void
recorder_dealloc(Recorder *self)
{
    if (self->has_buf)
        PyBuffer_Release(&self->buf);
    PyMem_Free(self->edges);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline void
bracket_open(Recorder *self)
{
    self->q[self->at[L_SEQ]] = self->seq + 1;
    FENCE();
}

static inline void
bracket_close(Recorder *self)
{
    FENCE();
    self->seq += 2;
    self->q[self->at[L_SEQ]] = self->seq;
}

static int
get_i64(PyObject *o, int64_t *out)
{
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return 0;
    *out = (int64_t)v;
    return 1;
}

static int
get_f64(PyObject *o, double *out)
{
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred())
        return 0;
    *out = v;
    return 1;
}

static int
check_args(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
        return 0;
    }
    return 1;
}

static PyObject *
recorder_set_state(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t v;
    if (!check_args("set_state", nargs, 1) || !recorder_ready(self) || !get_i64(args[0], &v))
        return NULL;
    self->q[self->at[L_STATE]] = v;
    Py_RETURN_NONE;
}

static PyObject *
recorder_heartbeat(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    double v;
    if (!check_args("heartbeat", nargs, 1) || !recorder_ready(self) || !get_f64(args[0], &v))
        return NULL;
    self->d[self->at[L_HEARTBEAT]] = v;
    Py_RETURN_NONE;
}

static PyObject *
recorder_set_connections(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t v;
    if (!check_args("set_connections", nargs, 1) || !recorder_ready(self) || !get_i64(args[0], &v))
        return NULL;
    self->q[self->at[L_CONNECTIONS]] = v;
    Py_RETURN_NONE;
}

/* set_memory_alert(estimate): one word, no bracket (see scoreboard.py). */
static PyObject *
recorder_set_memory_alert(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t v;
    if (!check_args("set_memory_alert", nargs, 1) || !recorder_ready(self)
        || !get_i64(args[0], &v))
        return NULL;
    self->q[self->at[L_MEMORY_ALERT]] = v;
    Py_RETURN_NONE;
}

/* start_request(now, method, path): in flight, start time, and "METHOD path" truncated to
 * the line's room, written only when it differs from what the slot already shows. */
static PyObject *
recorder_start_request(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    double now;
    char *m, *p;
    Py_ssize_t mlen, plen;
    if (!check_args("start_request", nargs, 3) || !recorder_ready(self) || !get_f64(args[0], &now))
        return NULL;
    if (PyBytes_AsStringAndSize(args[1], &m, &mlen) < 0
        || PyBytes_AsStringAndSize(args[2], &p, &plen) < 0)
        return NULL;
    int64_t *q = self->q;
    q[self->at[L_IN_FLIGHT]] += 1;
    self->d[self->at[L_REQUEST_START]] = now;
    Py_ssize_t room = self->at[L_LINE_BYTES];
    if (mlen > room - 1)
        mlen = room - 1;
    if (plen > room - mlen - 1)
        plen = room - mlen - 1;
    Py_ssize_t len = mlen + 1 + plen;
    char *line = (char *)self->buf.buf + self->at[L_LINE_OFFSET];
    if (q[self->at[L_LINE_LEN]] != len || memcmp(line, m, (size_t)mlen) != 0
        || line[mlen] != ' ' || memcmp(line + mlen + 1, p, (size_t)plen) != 0) {
        memcpy(line, m, (size_t)mlen);
        line[mlen] = ' ';
        memcpy(line + mlen + 1, p, (size_t)plen);
        q[self->at[L_LINE_LEN]] = len;
    }
    Py_RETURN_NONE;
}

/* bisect_right(edges, x): the number of edges <= x (NaN sorts last, as in Python). */
static inline Py_ssize_t
bucket(const Recorder *self, double x)
{
    Py_ssize_t lo = 0, hi = self->nedges;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (x < self->edges[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* finish_request(now, status, duration_s, bytes_in, bytes_out): every counter of a finished
 * request in one seqlock bracket. */
static PyObject *
recorder_finish_request(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    double now, duration;
    int64_t status, bytes_in, bytes_out;
    if (!check_args("finish_request", nargs, 5) || !recorder_ready(self) || !get_f64(args[0], &now))
        return NULL;
    if (!get_i64(args[1], &status)) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return NULL;
        PyErr_Clear();
        status = 0; /* out of any range: counted as a server error, as in Python */
    }
    if (!get_f64(args[2], &duration) || !get_i64(args[3], &bytes_in)
        || !get_i64(args[4], &bytes_out))
        return NULL;
    int64_t *q = self->q;
    const Py_ssize_t *at = self->at;
    Py_ssize_t k = (status >= 100 && status < 600) ? (Py_ssize_t)(status / 100 - 1) : 4;
    Py_ssize_t i = bucket(self, duration);
    bracket_open(self);
    q[at[L_STATUS0] + k] += 1;
    q[at[L_IN_FLIGHT]] -= 1;
    if (bytes_in)
        q[at[L_BYTES_IN]] += bytes_in;
    q[at[L_BYTES_OUT]] += bytes_out;
    self->d[at[L_DURATION_SUM]] += duration;
    q[at[L_HIST0] + i] += 1;
    bracket_close(self);
    Py_RETURN_NONE;
}

static PyObject *
recorder_record_gc(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t generation;
    double pause;
    if (!check_args("record_gc", nargs, 2) || !recorder_ready(self)
        || !get_i64(args[0], &generation) || !get_f64(args[1], &pause))
        return NULL;
    Py_ssize_t g = (generation >= 0 && generation <= 2) ? (Py_ssize_t)generation : 2;
    bracket_open(self);
    self->q[self->at[L_GC_COUNT0] + g] += 1;
    self->d[self->at[L_GC_PAUSE0] + g] += pause;
    bracket_close(self);
    Py_RETURN_NONE;
}

static PyObject *
recorder_publish(Recorder *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_args("publish", nargs, 1))
        return NULL;
    Py_RETURN_NONE; /* nothing is ever batched */
}

static PyObject *
recorder_flush(Recorder *self, PyObject *unused)
{
    Py_RETURN_NONE;
}

static PyObject *
recorder_release(Recorder *self, PyObject *unused)
{
    if (self->has_buf) {
        PyBuffer_Release(&self->buf);
        self->has_buf = 0;
    }
    Py_RETURN_NONE;
}

static PyMethodDef recorder_methods[] = {
    {"set_state", (PyCFunction)(void (*)(void))recorder_set_state, METH_FASTCALL, NULL},
    {"heartbeat", (PyCFunction)(void (*)(void))recorder_heartbeat, METH_FASTCALL, NULL},
    {"set_connections", (PyCFunction)(void (*)(void))recorder_set_connections, METH_FASTCALL,
     NULL},
    {"set_memory_alert", (PyCFunction)(void (*)(void))recorder_set_memory_alert, METH_FASTCALL,
     NULL},
    {"start_request", (PyCFunction)(void (*)(void))recorder_start_request, METH_FASTCALL, NULL},
    {"finish_request", (PyCFunction)(void (*)(void))recorder_finish_request, METH_FASTCALL, NULL},
    {"record_gc", (PyCFunction)(void (*)(void))recorder_record_gc, METH_FASTCALL, NULL},
    {"publish", (PyCFunction)(void (*)(void))recorder_publish, METH_FASTCALL, NULL},
    {"flush", (PyCFunction)recorder_flush, METH_NOARGS, NULL},
    {"release", (PyCFunction)recorder_release, METH_NOARGS,
     "Give the slot's buffer back (the recorder cannot be used after)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "corral.stats._fastslot.Recorder",
    .tp_doc = "Recorder(buffer, layout, edges): the write side of one scoreboard slot.",
    .tp_basicsize = sizeof(Recorder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)recorder_init,
    .tp_dealloc = (destructor)recorder_dealloc,
    .tp_methods = recorder_methods,
};

static struct PyModuleDef fastslot_module = {
    PyModuleDef_HEAD_INIT, "_fastslot",
    "The scoreboard slot's write side in C (see corral.stats.scoreboard).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__fastslot(void)
{
    if (PyType_Ready(&RecorderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastslot_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RecorderType);
    if (PyModule_AddObject(m, "Recorder", (PyObject *)&RecorderType) < 0) {
        Py_DECREF(&RecorderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
