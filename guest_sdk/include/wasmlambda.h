/*
 * wasmlambda.h: write a wasmlambda function in C.
 *
 *     #include "wasmlambda.h"
 *
 *     static int hello(const wl_request *request, wl_buffer *response) {
 *         char name[64];
 *         if (!wl_json_string(request->event, request->event_len, "name", name, sizeof name))
 *             return wl_fail(response, "the event needs a \"name\" string");
 *         wl_append(response, "{\"hello\": ");
 *         wl_append_json_string(response, name);
 *         return wl_append(response, "}");
 *     }
 *
 *     WL_HANDLER(hello)
 *
 * Build with `python -m guest_sdk build DIR` (a folder holding f.c): it runs
 * clang for wasm32-wasi and packages f.wasm, which the worker deploys and
 * serves like a Python function, over the same HTTP API.
 *
 * The handler gets the request's JSON event as bytes and writes its JSON
 * result into `response`; it returns WL_OK, or the result of wl_fail(), whose
 * message the caller receives as a 502 GuestError.  Memory is reclaimed when
 * the worker discards the instance, so a handler may simply malloc.
 * wl_invoke() calls another deployed function (C or Python) in-process.
 *
 * Under the hood this header implements the worker's guest ABI (the same
 * one the Python runtime's shim speaks): exports `wl_reserve(n) -> ptr` and
 * `wl_handle(n) -> (ptr << 32) | len`; requests are `I` + request id + NUL +
 * timeout ms + NUL + request head + NUL + event; responses are `0` + JSON or
 * `E` + error JSON.
 */
#ifndef WASMLAMBDA_H
#define WASMLAMBDA_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WL_OK 0
#define WL_FAILED 1

typedef struct {
    const char *event;      /* the JSON event, not NUL-terminated */
    size_t event_len;
    const char *request_id; /* NUL-terminated */
    int timeout_ms;
    const char *head;       /* the HTTP request head ("METHOD target\r\nname: value\r\n..."),
                               NUL-terminated; empty for a nested call */
} wl_request;

typedef struct {
    char *data;
    size_t len;
    size_t capacity;
    int failed;             /* set when memory ran out */
} wl_buffer;

typedef int (*wl_handler_fn)(const wl_request *request, wl_buffer *response);

/* Append raw bytes / a C string / printf-formatted text to the response. */
static inline int wl_append_bytes(wl_buffer *buffer, const char *data, size_t len) {
    if (buffer->failed) return WL_FAILED;
    if (buffer->len + len > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 256;
        while (capacity < buffer->len + len) capacity *= 2;
        char *grown = realloc(buffer->data, capacity);
        if (grown == NULL) { buffer->failed = 1; return WL_FAILED; }
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->len, data, len);
    buffer->len += len;
    return WL_OK;
}

static inline int wl_append(wl_buffer *buffer, const char *text) {
    return wl_append_bytes(buffer, text, strlen(text));
}

static inline int wl_appendf(wl_buffer *buffer, const char *format, ...) {
    char small[256];
    va_list args;
    va_start(args, format);
    int needed = vsnprintf(small, sizeof small, format, args);
    va_end(args);
    if (needed < 0) return WL_FAILED;
    if ((size_t)needed < sizeof small) return wl_append_bytes(buffer, small, (size_t)needed);
    char *large = malloc((size_t)needed + 1);
    if (large == NULL) { buffer->failed = 1; return WL_FAILED; }
    va_start(args, format);
    vsnprintf(large, (size_t)needed + 1, format, args);
    va_end(args);
    int status = wl_append_bytes(buffer, large, (size_t)needed);
    free(large);
    return status;
}

/* Append `text` as a quoted, escaped JSON string. */
static inline int wl_append_json_string(wl_buffer *buffer, const char *text) {
    wl_append_bytes(buffer, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        switch (*c) {
            case '"': wl_append_bytes(buffer, "\\\"", 2); break;
            case '\\': wl_append_bytes(buffer, "\\\\", 2); break;
            case '\n': wl_append_bytes(buffer, "\\n", 2); break;
            case '\r': wl_append_bytes(buffer, "\\r", 2); break;
            case '\t': wl_append_bytes(buffer, "\\t", 2); break;
            default:
                if (*c < 0x20) wl_appendf(buffer, "\\u%04x", *c);
                else wl_append_bytes(buffer, (const char *)c, 1);
        }
    }
    return wl_append_bytes(buffer, "\"", 1);
}

/* Replace the response with an error message; return the handler's status. */
static inline int wl_fail(wl_buffer *response, const char *message) {
    response->len = 0;
    wl_append(response, message);
    return WL_FAILED;
}

/*
 * Find the string value of a top-level "key" in a JSON object and copy it
 * (unescaped: \" \\ \/ \n \t \r; other escapes are copied as is) into `out`.
 * Returns 1 if found and it fit, 0 otherwise.  A small helper for small
 * events, not a JSON parser: nested objects holding the same key may match.
 */
static inline int wl_json_string(const char *json, size_t len, const char *key, char *out, size_t out_size) {
    size_t key_len = strlen(key);
    for (size_t i = 0; i + key_len + 2 < len; i++) {
        if (json[i] != '"' || memcmp(json + i + 1, key, key_len) != 0 || json[i + 1 + key_len] != '"') continue;
        size_t j = i + key_len + 2;
        while (j < len && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r')) j++;
        if (j >= len || json[j] != ':') continue;
        j++;
        while (j < len && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r')) j++;
        if (j >= len || json[j] != '"') return 0;
        size_t n = 0;
        for (j++; j < len && json[j] != '"'; j++) {
            char c = json[j];
            if (c == '\\' && j + 1 < len) {
                char e = json[++j];
                c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
            }
            if (n + 1 >= out_size) return 0;
            out[n++] = c;
        }
        if (j >= len) return 0;
        out[n] = '\0';
        return 1;
    }
    return 0;
}

/* ---- calling other functions ---- */

__attribute__((import_module("wasmlambda"), import_name("host_call")))
int32_t wl__host_call(const char *request, int32_t size);
__attribute__((import_module("wasmlambda"), import_name("host_read")))
void wl__host_read(char *response);

/*
 * Call another deployed function in-process, as wasmlambda_guest.invoke does
 * in Python: `event` is its JSON event.  On success its JSON result is
 * appended to `result` and WL_OK returned; otherwise the error message
 * (naming the callee) is appended and WL_FAILED returned.  Same limits and
 * billing as an HTTP call; the callee's cost goes onto this request's bill.
 */
static inline int wl_invoke(const char *function, const char *event, size_t event_len, wl_buffer *result) {
    /* The host's byte lane: NUL "invoke" NUL "call" NUL function NUL event. */
    wl_buffer request = {0};
    wl_append_bytes(&request, "\0invoke\0call\0", 13);
    wl_append_bytes(&request, function, strlen(function) + 1);
    wl_append_bytes(&request, event, event_len);
    if (request.failed) { free(request.data); result->failed = 1; return WL_FAILED; }
    int32_t size = wl__host_call(request.data, (int32_t)request.len);
    free(request.data);
    if (size < 0) { wl_append(result, "the host failed to answer a service call"); return WL_FAILED; }
    char *answer = malloc(size > 0 ? (size_t)size : 1);
    if (answer == NULL) { result->failed = 1; return WL_FAILED; }
    wl__host_read(answer);
    /* "0" + the result, as the callee wrote it, or {"error": "<message>"} */
    size_t n = (size_t)size;
    int status;
    if (n > 1 && answer[0] == '0') {
        status = wl_append_bytes(result, answer + 1, n - 1);
    } else {
        char message[1024];
        if (!wl_json_string(answer, n, "error", message, sizeof message))
            strcpy(message, "the host's answer could not be read");
        wl_append(result, message);
        status = WL_FAILED;
    }
    free(answer);
    return status;
}

/* ---- the ABI; everything below is called by the worker, not by you ---- */

static char *wl__input;
static size_t wl__input_capacity;
static wl_buffer wl__response;

__attribute__((export_name("wl_reserve")))
char *wl_reserve(size_t size) {
    if (size > wl__input_capacity) {
        char *grown = realloc(wl__input, size);
        if (grown == NULL) return NULL;
        wl__input = grown;
        wl__input_capacity = size;
    }
    return wl__input;
}

static int64_t wl__packed(const wl_buffer *buffer) {
    return ((int64_t)(uint32_t)(uintptr_t)buffer->data << 32) | (int64_t)(uint32_t)buffer->len;
}

static int64_t wl__dispatch(wl_handler_fn handler, size_t size) {
    wl_buffer *out = &wl__response;
    out->len = 0;
    out->failed = 0;
    if (size == 0 || wl__input[0] != 'I') {
        wl_append(out, "0null");  /* `L` (load) and anything else: nothing to do */
        return out->failed ? -1 : wl__packed(out);
    }
    /* I <request id> NUL <timeout ms> NUL <request head> NUL <event> */
    char *id = wl__input + 1, *end = wl__input + size;
    char *timeout = memchr(id, '\0', (size_t)(end - id));
    char *head = timeout ? memchr(timeout + 1, '\0', (size_t)(end - timeout - 1)) : NULL;
    char *event = head ? memchr(head + 1, '\0', (size_t)(end - head - 1)) : NULL;
    if (event == NULL) return -1;
    wl_request request = {event + 1, (size_t)(end - event - 1), id, atoi(timeout + 1), head + 1};
    wl_buffer result = {0};
    int status = handler(&request, &result);
    if (status == WL_OK && !result.failed) {
        wl_append_bytes(out, "0", 1);
        wl_append_bytes(out, result.data, result.len);
    } else {
        wl_append(out, "E{\"phase\": \"handler\", \"type\": \"Error\", \"message\": ");
        if (result.failed) {
            wl_append_json_string(out, "the handler ran out of memory");
        } else {
            wl_append_bytes(&result, "", 1);  /* NUL-terminate the message */
            wl_append_json_string(out, result.failed ? "the handler ran out of memory" : result.data);
        }
        wl_append(out, ", \"traceback\": \"\", \"file\": null, \"line\": null}");
    }
    free(result.data);
    return out->failed ? -1 : wl__packed(out);
}

#define WL_HANDLER(handler)                                   \
    __attribute__((export_name("wl_handle")))                 \
    int64_t wl_handle(size_t size) { return wl__dispatch(handler, size); }

#endif /* WASMLAMBDA_H */
