"""The error tree.  Each error knows the HTTP status it maps to, so the HTTP
layer renders every failure the same way: ``{"error": {"type", "message"}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class WasmLambdaError(Exception):
    """Base of every error the worker reports on purpose."""

    status: ClassVar[int] = 500
    # What the guest printed or logged before failing, when it got that far.
    logs: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "message": str(self)}


class ConfigError(WasmLambdaError):
    """Bad settings; the CLI exits with code 2."""


class BadRequest(WasmLambdaError):
    """The request itself is malformed (for example an event that is not JSON)."""

    status = 400


class PayloadTooLarge(BadRequest):
    status = 413


class Unauthorized(WasmLambdaError):
    """The request lacks the admin token (or the function's invoke key)."""

    status = 401


class DeployError(WasmLambdaError):
    """A package that cannot be deployed: bad archive, syntax or import error."""

    status = 400


class NotFound(WasmLambdaError):
    status = 404


class FunctionNotFound(NotFound):
    pass


class InvocationError(WasmLambdaError):
    """The function ran but did not produce a result."""

    status = 502


class GuestError(InvocationError):
    """The handler raised; the guest traceback goes back to the caller."""

    def __init__(self, message: str, guest_type: str, traceback: str) -> None:
        super().__init__(message)
        self.guest_type = guest_type
        self.traceback = traceback

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "guest_type": self.guest_type, "traceback": self.traceback}


class GuestTrap(InvocationError):
    """The WebAssembly instance trapped; it is discarded."""


class DeadlineExceeded(InvocationError):
    status = 504


class MemoryLimitExceeded(InvocationError):
    status = 507


class ClientGone(WasmLambdaError):
    """The caller closed its connection before its call started; nothing ran (nobody reads the answer)."""

    status = 499


class CapacityExceeded(WasmLambdaError):
    """Too much queued work; the client should retry after ``retry_after`` seconds."""

    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(WasmLambdaError):
    """A store the worker depends on (the cluster's shared code store) cannot be reached."""

    status = 503


class ServiceError(WasmLambdaError):
    """A host service failed; the message names the service and the phase."""

    status = 502


class RuntimeMissing(ConfigError):
    """The guest runtime has not been built for this source tree."""
