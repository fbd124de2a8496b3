"""HTTP front of the annotation app: the standard library's threading server, a static page and a JSON API.

Routes: ``GET /`` the page; ``GET /api/session``; ``GET /api/items?annotator=NAME``; ``POST /api/labels``
with JSON ``{"annotator", "item", "label"}``; ``GET /api/agreement``; ``GET /api/qrels[?annotator=NAME]``
(a download). Writes require ``Content-Type: application/json`` (a cross-site form cannot send it
without a preflight this server refuses), and requests must name this server in ``Host`` (no DNS
rebinding of a loopback server).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Container
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from negclean.annotate.app import AnnotationApp

_STATIC = {
    "/": ("app.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
_MAX_BODY = 64 * 1024


def _static(name: str) -> bytes:
    return resources.files("negclean.annotate").joinpath("static", name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: AnnotationServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # -- plumbing -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, status: int = 200) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        return host in self.server.allowed_hosts

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    # -- routes ---------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "unexpected Host header")
        path = urlsplit(self.path).path
        app = self.server.app
        try:
            if path in _STATIC:
                name, ctype = _STATIC[path]
                return self._send(200, _static(name), ctype)
            if path == "/api/session":
                return self._json(app.session())
            if path == "/api/items":
                return self._json(app.items(self._query().get("annotator")))
            if path == "/api/agreement":
                return self._json(app.agreement())
            if path == "/api/qrels":
                who = self._query().get("annotator") or None
                fname = f"qrels.{who or 'consensus'}.tsv".replace(" ", "_")
                return self._send(
                    200,
                    app.qrels(who).encode(),
                    "text/tab-separated-values; charset=utf-8",
                    {"Content-Disposition": f'attachment; filename="{fname}"'},
                )
        except ValueError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        return self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "unexpected Host header")
        if urlsplit(self.path).path != "/api/labels":
            return self._error(HTTPStatus.NOT_FOUND, "POST goes to /api/labels")
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (Content-Type: application/json)")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= _MAX_BODY:
            return self._error(HTTPStatus.BAD_REQUEST, "empty or oversized body")
        try:
            body = json.loads(self.rfile.read(length))
            result = self.server.app.label(
                str(body.get("annotator", "")), str(body.get("item", "")), str(body.get("label", ""))
            )
        except (json.JSONDecodeError, AttributeError):
            return self._error(HTTPStatus.BAD_REQUEST, 'body must be a JSON object {"annotator", "item", "label"}')
        except ValueError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except KeyError as exc:
            return self._error(HTTPStatus.NOT_FOUND, exc.args[0])
        return self._json(result)


class AnnotationServer(ThreadingHTTPServer):
    """Serves one AnnotationApp; ``port=0`` picks a free port (see ``url``)."""

    daemon_threads = True

    def __init__(self, app: AnnotationApp, *, host: str = "127.0.0.1", port: int = 8765, verbose: bool = False):
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.app = app
        self.verbose = verbose
        self.allowed_hosts: Container[str] = {"127.0.0.1", "localhost", "::1", host.lower()}
        if host in ("0.0.0.0", "::"):  # bound to every interface on purpose: accept any Host
            self.allowed_hosts = _Anything()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):  # the typeshed address type allows bytes; TCP servers give str
            host = host.decode()
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{shown}:{port}/"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread (tests, notebooks); stop with ``shutdown()`` then ``server_close()``."""
        t = threading.Thread(target=self.serve_forever, name="negclean-annotate", daemon=True)
        t.start()
        return t


class _Anything:
    def __contains__(self, item: object) -> bool:
        return True
