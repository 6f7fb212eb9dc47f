"""wasmlambda: a serverless worker running Python handlers in snapshotted WebAssembly sandboxes."""

__version__ = "0.1.0"

from .config import Settings, load_settings  # noqa: E402
from .errors import (  # noqa: E402
    BadRequest,
    CapacityExceeded,
    ConfigError,
    DeadlineExceeded,
    DeployError,
    FunctionNotFound,
    GuestError,
    GuestTrap,
    InvocationError,
    MemoryLimitExceeded,
    PayloadTooLarge,
    RuntimeMissing,
    ServiceError,
    WasmLambdaError,
)

__all__ = [
    "BadRequest",
    "CapacityExceeded",
    "ConfigError",
    "DeadlineExceeded",
    "DeployError",
    "FunctionNotFound",
    "GuestError",
    "GuestTrap",
    "InvocationError",
    "MemoryLimitExceeded",
    "PayloadTooLarge",
    "RuntimeMissing",
    "ServiceError",
    "Settings",
    "WasmLambdaError",
    "__version__",
    "load_settings",
]
