"""HTTP/1.1 front end: the API routes and the Trio server loop."""

from ._api import Api
from ._messages import Request, Response
from ._server import ServerLimits, bound_address, open_listeners, serve, shared_port_socket

__all__ = ["Api", "Request", "Response", "ServerLimits", "bound_address", "open_listeners", "serve",
           "shared_port_socket"]
