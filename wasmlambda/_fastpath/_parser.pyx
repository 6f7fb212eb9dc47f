# cython: language_level=3
"""Cython twin of wasmlambda/http/_parser_py.py: the same decisions (accept,
FALLBACK to h11, 413, 431), made by scanning the buffer with C character
tables instead of regular expressions.  The result types are the spec's."""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memcmp

from wasmlambda.http._parser_py import FALLBACK, MAX_HEAD, ParsedRequest, ParseError, _REASONS

cdef unsigned char TOKEN[256]
cdef unsigned char VCHAR[256]
cdef unsigned char FIELD[256]  # visible characters, obs-text, and the two spaces inside values


cdef void _init_tables():
    cdef int c
    for c in range(256):
        VCHAR[c] = 0x21 <= c <= 0x7e
        FIELD[c] = VCHAR[c] or c >= 0x80 or c == 0x20 or c == 0x09
        TOKEN[c] = (b"0"[0] <= c <= b"9"[0]) or (b"a"[0] <= c <= b"z"[0]) or (b"A"[0] <= c <= b"Z"[0]) \
            or c in b"-!#$%&'*+.^_`|~"

_init_tables()

cdef bytes HTTP11 = b"HTTP/1.1"
cdef bytes CONTENT_LENGTH = b"content-length"
cdef bytes HOST = b"host"
cdef bytes CONNECTION = b"connection"
cdef frozenset FALLBACK_HEADERS = frozenset((b"transfer-encoding", b"expect", b"upgrade"))


cdef inline bint _is_space(unsigned char c):
    return c == 0x20 or c == 0x09


cdef class RequestParser:
    cdef object _body_limit
    cdef bytearray _buffer
    cdef object _head

    def __init__(self, body_limit):
        self._body_limit = body_limit
        self._buffer = bytearray()
        self._head = None

    def feed(self, data):
        self._buffer += data

    @property
    def buffered(self):
        return bytes(self._buffer)

    def next(self):
        cdef Py_ssize_t head_length, body_length, total
        if self._head is None:
            parsed = self._parse_head()
            if parsed is None or parsed is FALLBACK:
                return parsed
            self._head = parsed
        request, head_length, body_length = self._head
        total = head_length + body_length
        if PyByteArray_GET_SIZE(self._buffer) < total:
            return None
        body = bytes(self._buffer[head_length:total])
        del self._buffer[:total]
        self._head = None
        return request._replace(body=body)

    cdef object _parse_head(self):
        cdef bytearray buffer = self._buffer
        cdef Py_ssize_t end = buffer.find(b"\r\n\r\n")
        cdef const unsigned char *data
        cdef Py_ssize_t i, start, name_end, value_start, value_end, line_end
        cdef Py_ssize_t hosts = 0
        cdef bint keep_alive = True
        cdef object content_length = None
        if end < 0:
            if PyByteArray_GET_SIZE(buffer) > MAX_HEAD:
                raise ParseError(431, f"the request head is longer than {MAX_HEAD} bytes")
            if buffer.count(b"\n") != buffer.count(b"\r\n"):
                return FALLBACK  # bare LF line endings: h11 accepts them, we would wait forever
            return None
        if end + 4 > MAX_HEAD:
            raise ParseError(431, f"the request head is longer than {MAX_HEAD} bytes")
        data = <const unsigned char *> PyByteArray_AS_STRING(buffer)

        # METHOD SP target SP HTTP/1.1 CRLF
        i = 0
        while i < end and TOKEN[data[i]]:
            i += 1
        if i == 0 or i >= end or data[i] != b" "[0]:
            return FALLBACK
        method = PyBytes_FromStringAndSize(<const char *> data, i)
        if method == b"HEAD":
            return FALLBACK  # an answer without its body: h11 frames it
        start = i = i + 1
        while i < end and VCHAR[data[i]]:
            i += 1
        if i == start or i >= end or data[i] != b" "[0]:
            return FALLBACK
        target = PyBytes_FromStringAndSize(<const char *> data + start, i - start)
        i += 1
        if end - i < 8 or memcmp(data + i, <const char *> HTTP11, 8) != 0:
            return FALLBACK
        i += 8
        if i != end and (i + 1 >= end or data[i] != b"\r"[0] or data[i + 1] != b"\n"[0]):
            return FALLBACK
        i += 2

        headers = []
        while i < end:
            start = i
            while i < end and TOKEN[data[i]]:
                i += 1
            if i == start or i >= end or data[i] != b":"[0]:
                return FALLBACK
            name_end = i
            i += 1
            line_end = i
            # data holds at least end + 4 bytes, so data[line_end + 1] is readable
            while line_end < end and not (data[line_end] == 13 and data[line_end + 1] == 10):
                if not FIELD[data[line_end]]:
                    return FALLBACK
                line_end += 1
            value_start = i
            value_end = line_end
            while value_start < value_end and _is_space(data[value_start]):
                value_start += 1
            while value_end > value_start and _is_space(data[value_end - 1]):
                value_end -= 1
            name = PyBytes_FromStringAndSize(<const char *> data + start, name_end - start).lower()
            value = PyBytes_FromStringAndSize(<const char *> data + value_start, value_end - value_start)
            if name == CONTENT_LENGTH:
                if content_length is not None or not value.isdigit():
                    return FALLBACK
                content_length = int(value)
            elif name == HOST:
                hosts += 1
            elif name == CONNECTION:
                if b"close" in [token.strip() for token in value.lower().split(b",")]:
                    keep_alive = False
            elif name in FALLBACK_HEADERS:
                return FALLBACK
            headers.append((name, value))
            i = line_end + 2
        if hosts != 1:
            return FALLBACK
        body_length = content_length if content_length is not None else 0
        limit = self._body_limit(target.partition(b"?")[0].decode("ascii"))
        if body_length > limit:
            raise ParseError(413, f"the request body is larger than {limit} bytes")
        return ParsedRequest(method, target, headers, b"", keep_alive), end + 4, body_length


cdef bytes _identity = b"server: wasmlambda\r\n"


def set_worker_id(bytes worker_id):
    global _identity
    _identity = b"server: wasmlambda\r\nx-wasmlambda-worker: %s\r\n" % worker_id


def serialize_response(int status, list headers, bytes body, bint keep_alive):
    if status == 204 or status == 304:  # bodiless by definition (RFC 9110 6.4.1)
        parts = [b"HTTP/1.1 %d %s\r\n%s" % (status, _REASONS.get(status, b""), _identity)]
        body = b""
    else:
        parts = [b"HTTP/1.1 %d %s\r\n%scontent-length: %d\r\n"
                 % (status, _REASONS.get(status, b""), _identity, len(body))]
    for name, value in headers:
        parts.append(name)
        parts.append(b": ")
        parts.append(value)
        parts.append(b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)
