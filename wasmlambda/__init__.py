"""wasmlambda: a serverless worker running Python handlers in snapshotted WebAssembly sandboxes."""

__version__ = "0.1.0"

from .config import Settings, load_settings
from .errors import (
    BadRequest,
    CapacityExceeded,
    ClientGone,
    ConfigError,
    DeadlineExceeded,
    DeployError,
    FunctionNotFound,
    GuestError,
    GuestTrap,
    InvocationError,
    MemoryLimitExceeded,
    NotFound,
    PayloadTooLarge,
    RuntimeMissing,
    ServiceError,
    Unauthorized,
    WasmLambdaError,
)

__all__ = [
    "BadRequest",
    "CapacityExceeded",
    "ClientGone",
    "ConfigError",
    "DeadlineExceeded",
    "DeployError",
    "FunctionNotFound",
    "GuestError",
    "GuestTrap",
    "InvocationError",
    "MemoryLimitExceeded",
    "NotFound",
    "PayloadTooLarge",
    "RuntimeMissing",
    "ServiceError",
    "Settings",
    "Unauthorized",
    "WasmLambdaError",
    "load_settings",
]
