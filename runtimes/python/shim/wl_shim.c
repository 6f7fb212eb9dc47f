/*
 * wasmlambda guest shim: the ABI between the host and CPython compiled to a
 * wasm32-wasi reactor.
 *
 * Exports (everything else is internal):
 *   wl_reserve(n) -> ptr   a persistent input buffer of at least n bytes
 *   wl_handle(n)  -> i64   run _wl_runtime.invoke(input[1:n]) for an `I`
 *                          request (the hot path: one Python call less), else
 *                          _wl_runtime.handle(input[0:n]); returns
 *                          (ptr << 32) | len of the response bytes, or -1 if the
 *                          Python layer itself failed (never for handler errors)
 *   wizer.initialize       boots the interpreter once, at snapshot time
 *
 * Imports (module "wasmlambda"), the way guests reach host services:
 *   host_call(ptr, len) -> i32   hand the host a request; the response's
 *                                length, or -1 if the host failed
 *   host_read(ptr)               copy that pending response into guest memory
 *   host_call(0, 0) -> 0         "about to block": sent before every
 *                                poll_oneoff (sleep, select), so that a call
 *                                the host runs on its event loop's thread can
 *                                be moved to a sandbox thread (the host traps
 *                                it there) instead of blocking the loop
 * Python sees them as the builtin module `_wl_host` (`call(bytes) -> bytes`).
 *
 * Both buffers persist across calls, so a warm request costs the host one
 * wl_handle call (plus wl_reserve only when the input outgrows the buffer).
 * The response points straight into a bytes object kept alive until the next
 * call: no copy on the guest side.
 */
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <wasi/api.h>

void _initialize(void);

__attribute__((import_module("wasmlambda"), import_name("host_call")))
int32_t wl_host_call(const char *request, int32_t size);
__attribute__((import_module("wasmlambda"), import_name("host_read")))
void wl_host_read(char *response);

static PyObject *host_call(PyObject *module, PyObject *request) {
    if (!PyBytes_Check(request)) {
        PyErr_SetString(PyExc_TypeError, "_wl_host.call takes bytes");
        return NULL;
    }
    int32_t size = wl_host_call(PyBytes_AS_STRING(request), (int32_t)PyBytes_GET_SIZE(request));
    if (size < 0) {
        PyErr_SetString(PyExc_RuntimeError, "the host failed to answer a service call");
        return NULL;
    }
    PyObject *response = PyBytes_FromStringAndSize(NULL, size);
    if (response != NULL) {
        wl_host_read(PyBytes_AS_STRING(response));
    }
    return response;
}

/* Linked with -Wl,--wrap=__wasi_poll_oneoff (runtimes/python/build.py). */
__wasi_errno_t __real___wasi_poll_oneoff(const __wasi_subscription_t *in, __wasi_event_t *out,
                                         __wasi_size_t count, __wasi_size_t *events);

static int in_call; /* inside wl_handle: the host is there to hear (not so under Wizer) */

__wasi_errno_t __wrap___wasi_poll_oneoff(const __wasi_subscription_t *in, __wasi_event_t *out,
                                         __wasi_size_t count, __wasi_size_t *events) {
    if (in_call) {
        wl_host_call(NULL, 0);
    }
    return __real___wasi_poll_oneoff(in, out, count, events);
}

static PyMethodDef host_methods[] = {
    {"call", host_call, METH_O, "Send a request to the host's services; returns the response."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef host_module = {PyModuleDef_HEAD_INIT, "_wl_host", NULL, -1, host_methods};

static PyObject *init_host_module(void) {
    return PyModule_Create(&host_module);
}

static char *input_buffer;
static size_t input_capacity;
static PyObject *handle_function;
static PyObject *invoke_function;
static PyObject *last_response;

__attribute__((export_name("wl_reserve")))
char *wl_reserve(size_t size) {
    if (size > input_capacity) {
        char *grown = realloc(input_buffer, size);
        if (grown == NULL) {
            return NULL;
        }
        input_buffer = grown;
        input_capacity = size;
    }
    return input_buffer;
}

__attribute__((export_name("wl_handle")))
int64_t wl_handle(size_t size) {
    Py_CLEAR(last_response);
    int invoking = size > 0 && input_buffer[0] == 'I';
    PyObject *request = invoking ? PyBytes_FromStringAndSize(input_buffer + 1, (Py_ssize_t)size - 1)
                                 : PyBytes_FromStringAndSize(input_buffer, (Py_ssize_t)size);
    if (request == NULL) {
        PyErr_Clear();
        return -1;
    }
    in_call = 1;
    PyObject *response = PyObject_CallOneArg(invoking ? invoke_function : handle_function, request);
    in_call = 0;
    Py_DECREF(request);
    if (response == NULL || !PyBytes_Check(response)) {
        Py_XDECREF(response);
        PyErr_Print();
        return -1;
    }
    last_response = response;
    uint32_t address = (uint32_t)(uintptr_t)PyBytes_AS_STRING(response);
    return ((int64_t)address << 32) | (int64_t)(uint32_t)PyBytes_GET_SIZE(response);
}

static int boot(void) {
    if (PyImport_AppendInittab("_wl_host", init_host_module) != 0) {
        return -1;
    }
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.site_import = 0;
    config.write_bytecode = 0;
    config.install_signal_handlers = 0;
    config.module_search_paths_set = 1;
    if (PyStatus_Exception(PyConfig_SetString(&config, &config.home, L"/usr/local")) ||
        PyStatus_Exception(PyWideStringList_Append(&config.module_search_paths,
                                                   L"/usr/local/lib/python3.11"))) {
        PyConfig_Clear(&config);
        return -1;
    }
    PyStatus status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        return -1;
    }
    PyObject *runtime = PyImport_ImportModule("_wl_runtime");
    if (runtime == NULL) {
        PyErr_Print();
        return -1;
    }
    handle_function = PyObject_GetAttrString(runtime, "handle");
    invoke_function = PyObject_GetAttrString(runtime, "invoke");
    Py_DECREF(runtime);
    if (handle_function == NULL || invoke_function == NULL) {
        PyErr_Print();
        return -1;
    }
    return 0;
}

/* Wizer runs this once; the resulting memory is the base snapshot. */
__attribute__((export_name("wizer.initialize")))
void wizer_initialize(void) {
    _initialize();  /* crt1-reactor ctors: preopens and environ */
    if (boot() != 0) {
        abort();  /* makes Wizer fail loudly instead of snapshotting a broken image */
    }
}

/* Target for `wizer -r _initialize=wl_noop`, so hosts cannot re-run the ctors. */
__attribute__((export_name("wl_noop")))
void wl_noop(void) {}
