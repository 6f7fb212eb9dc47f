"""The sandbox's ``ssl``: no TLS here (no sockets), but the module imports.

CPython's own ssl.py needs the ``_ssl`` extension (OpenSSL), which the
WebAssembly build does not have, so ``import ssl`` would fail, and with it
every library that imports ssl without using it (anyio, which Starlette
needs; HTTP client libraries).  This module replaces it in the guest's
standard library: the names such libraries touch at import time exist;
making a TLS context raises an error that says why.
"""

import enum

__all__ = ["CERT_NONE", "CERT_OPTIONAL", "CERT_REQUIRED", "HAS_ALPN", "HAS_SNI", "OPENSSL_VERSION", "MemoryBIO",
           "Purpose", "SSLContext", "SSLEOFError", "SSLError", "SSLObject", "SSLSocket", "SSLSyscallError",
           "SSLWantReadError", "SSLWantWriteError", "SSLZeroReturnError", "TLSVersion", "create_default_context"]

OPENSSL_VERSION = "none (TLS is not available in the wasmlambda sandbox)"
OPENSSL_VERSION_INFO = (0, 0, 0, 0, 0)
OPENSSL_VERSION_NUMBER = 0
HAS_ALPN = HAS_SNI = HAS_ECDH = HAS_NPN = HAS_NEVER_CHECK_COMMON_NAME = False
HAS_TLSv1_3 = HAS_TLSv1_2 = False
_WHY = "TLS is not available in the wasmlambda sandbox (it has no sockets; the host makes network calls)"


class SSLError(OSError):
    pass


class SSLZeroReturnError(SSLError):
    pass


class SSLWantReadError(SSLError):
    pass


class SSLWantWriteError(SSLError):
    pass


class SSLSyscallError(SSLError):
    pass


class SSLEOFError(SSLError):
    pass


class SSLCertVerificationError(SSLError, ValueError):
    pass


CertificateError = SSLCertVerificationError


class VerifyMode(enum.IntEnum):
    CERT_NONE = 0
    CERT_OPTIONAL = 1
    CERT_REQUIRED = 2


CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED = VerifyMode


class TLSVersion(enum.IntEnum):
    MINIMUM_SUPPORTED = -2
    SSLv3 = 768
    TLSv1 = 769
    TLSv1_1 = 770
    TLSv1_2 = 771
    TLSv1_3 = 772
    MAXIMUM_SUPPORTED = -1


class _SSLMethod(enum.IntEnum):
    PROTOCOL_TLS = 2
    PROTOCOL_TLS_CLIENT = 16
    PROTOCOL_TLS_SERVER = 17


PROTOCOL_TLS, PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER = _SSLMethod
PROTOCOL_SSLv23 = PROTOCOL_TLS
OP_ALL = OP_NO_SSLv2 = OP_NO_SSLv3 = OP_NO_TLSv1 = OP_NO_TLSv1_1 = OP_NO_COMPRESSION = 0


class Purpose(enum.Enum):
    SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
    CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"


class SSLContext:
    def __init__(self, *args, **kwargs):
        raise SSLError(_WHY)


class SSLObject:
    def __init__(self, *args, **kwargs):
        raise SSLError(_WHY)


class SSLSocket:
    def __init__(self, *args, **kwargs):
        raise SSLError(_WHY)


class MemoryBIO:
    def __init__(self, *args, **kwargs):
        raise SSLError(_WHY)


def create_default_context(*args, **kwargs):
    raise SSLError(_WHY)
