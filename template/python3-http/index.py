"""python3-http entry program: a threaded WSGI server on $http_port (else the port of
upstream_url, else 5000) that calls function/handler.py's handle(event, context) for each
request. Standard library only; the handler's own packages come from ./.packages (local runs)
or the image's site-packages."""

import os
import socket
import sys
import traceback
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".packages"))
sys.path.insert(0, os.path.join(HERE, "function"))

import handler  # noqa: E402  (the user's code, found through the paths above)

MAX_BODY = int(os.environ.get("max_body_bytes", 16 << 20))


class Event:
    def __init__(self, environ, body):
        self.body = body
        self.headers = {
            k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            self.headers["Content-Type"] = environ["CONTENT_TYPE"]
        if environ.get("CONTENT_LENGTH"):
            self.headers["Content-Length"] = environ["CONTENT_LENGTH"]
        self.method = environ["REQUEST_METHOD"]
        self.query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        self.path = environ.get("PATH_INFO", "/")


class Context:
    def __init__(self):
        self.hostname = os.environ.get("HOSTNAME", socket.gethostname())


def as_bytes(body):
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, (dict, list)):
        import json

        return json.dumps(body).encode()
    return str(body).encode()


class TooLarge(Exception):
    pass


def read_chunked(stream):
    """A chunked request body (the watchdog streams bodies chunked unless
    http_buffer_req_body=true, which the Dockerfile sets)."""
    out = bytearray()
    while True:
        size = int(stream.readline(64).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline(8192).strip():  # trailers, then the blank line
                pass
            return bytes(out)
        if len(out) + size > MAX_BODY:
            raise TooLarge()
        out += stream.read(size)
        stream.readline(8)


def app(environ, start_response):
    def fail(status, text):
        start_response(status, [("Content-Type", "text/plain")])
        return [text.encode()]

    try:
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = read_chunked(environ["wsgi.input"])
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > MAX_BODY:
                raise TooLarge()
            body = environ["wsgi.input"].read(length) if length else b""
    except TooLarge:
        return fail("413 Payload Too Large", "request body over %d bytes\n" % MAX_BODY)
    except ValueError:
        return fail("400 Bad Request", "invalid request body framing\n")
    try:
        res = handler.handle(Event(environ, body), Context())
    except Exception:
        traceback.print_exc()
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"the handler raised an exception (see the function's logs)\n"]
    if isinstance(res, dict):
        status = int(res.get("statusCode", 200))
        headers = [(str(k), str(v)) for k, v in (res.get("headers") or {}).items()]
        out = as_bytes(res.get("body"))
        if isinstance(res.get("body"), (dict, list)) and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
    else:
        status, headers, out = 200, [], as_bytes(res)
    from http import HTTPStatus

    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    start_response("%d %s" % (status, reason), headers)
    return [out]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def port():
    if os.environ.get("http_port"):
        return int(os.environ["http_port"])
    url = urlsplit(os.environ.get("upstream_url", ""))
    return url.port or 5000


if __name__ == "__main__":
    with make_server("127.0.0.1", port(), app, server_class=Server, handler_class=Quiet) as srv:
        print("python3-http listening on 127.0.0.1:%d" % port(), file=sys.stderr, flush=True)
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass
