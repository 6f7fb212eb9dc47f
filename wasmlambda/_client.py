"""A small HTTP client for the CLI's remote commands (deploy, invoke, …)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from .errors import WasmLambdaError

DEFAULT_URL = "http://127.0.0.1:8080"


class ClientError(WasmLambdaError):
    """The worker could not be reached, or it answered with an error."""


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> ClientError:
        """The worker's error as one line (and the guest traceback, if any)."""
        try:
            error = self.json()["error"]
        except (ValueError, KeyError, TypeError):
            return ClientError(f"HTTP {self.status}: {self.body[:200].decode(errors='replace')}")
        message = f"{error.get('type', 'Error')}: {error.get('message', '')}"
        if self.status == 401:
            message += (" -- pass --token, set WASMLAMBDA_ADMIN_TOKEN, or run this on the worker's machine "
                        "(it reads DATA_DIR/admin-token)")
        failure = ClientError(message)
        failure.logs = error.get("traceback") or ""
        return failure


class WorkerClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 300, token: str | None = None) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ClientError(f"--url must look like http://HOST:PORT, got {url!r}")
        self.url = f"http://{parts.hostname}:{parts.port or 80}"
        self._host, self._port, self._timeout = parts.hostname, parts.port or 80, timeout
        self._token = token

    def request(self, method: str, path: str, body: bytes | None = None, token: str | None = None) -> Reply:
        """``token`` (an invoke key) replaces the admin token for this request."""
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        headers = {}
        if token or self._token:
            headers["Authorization"] = f"Bearer {token or self._token}"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ClientError(f"cannot reach the worker at {self.url}: {reason} "
                              "(is `wasmlambda serve` running there?)") from None
        finally:
            connection.close()

    def checked(self, method: str, path: str, body: bytes | None = None) -> Reply:
        """Like :meth:`request`, raising the worker's error for non-2xx answers."""
        reply = self.request(method, path, body)
        if reply.status >= 300:
            raise reply.error()
        return reply
