"""Picks the hot-path HTTP parser: the Cython twin unless extensions are off."""

from .. import _fastpath
from . import _parser_py
from ._parser_py import FALLBACK, MAX_HEAD, ParsedRequest, ParseError

_implementation = _fastpath.pick("_parser", _parser_py)
RequestParser = _implementation.RequestParser
serialize_response = _implementation.serialize_response
set_worker_id = _implementation.set_worker_id

__all__ = ["FALLBACK", "MAX_HEAD", "ParseError", "ParsedRequest", "RequestParser", "serialize_response",
           "set_worker_id"]
