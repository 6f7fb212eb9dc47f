"""A bare WSGI app (PEP 3333, no framework): echoes what it was sent.

`f.py` defines no `f(event)` but an `app(environ, start_response)`, so the
worker serves it as a WSGI app under /run/wsgi_echo/<path>.
"""

import json
import sys


def app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    print("echoing", len(body), "bytes", file=environ["wsgi.errors"])
    if environ["PATH_INFO"] == "/raw":  # the body back as it came, whatever it is
        start_response("200 OK", [("Content-Type", environ.get("CONTENT_TYPE") or "application/octet-stream")])
        return [body]
    document = {
        "method": environ["REQUEST_METHOD"],
        "script_name": environ["SCRIPT_NAME"],
        "path_info": environ["PATH_INFO"],
        "query_string": environ["QUERY_STRING"],
        "content_type": environ.get("CONTENT_TYPE", ""),
        "body": body.decode("utf-8", "replace"),
        "user_agent": environ.get("HTTP_USER_AGENT", ""),
        "python": sys.version.split()[0],
    }
    start_response("200 OK", [("Content-Type", "application/json"), ("X-Echo", "yes")])
    return [json.dumps(document).encode()]
