"""HTTP/1.1 front end: the API routes and the Trio server loop."""

from ._api import Api
from ._messages import Request, Response
from ._server import bound_address, open_listeners, serve

__all__ = ["Api", "Request", "Response", "bound_address", "open_listeners", "serve"]
