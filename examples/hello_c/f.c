/* hello_c: the hello example in C, built to WebAssembly and served like the Python one. */
#include "wasmlambda.h"

static int hello(const wl_request *request, wl_buffer *response) {
    char name[128];
    if (!wl_json_string(request->event, request->event_len, "name", name, sizeof name)) {
        strcpy(name, "world");
    }
    wl_append(response, "{\"hello\": ");
    wl_append_json_string(response, name);
    return wl_append(response, "}");
}

WL_HANDLER(hello)
