"""The local HTTP front door: a static page (the demo's storefront), local-only control routes, and the
API (gateway.py).

GET /                 the page (<static_dir>/index.html), with its config injected (no key: the page
                      gets shopper tokens from POST /_local/shopper-token)
GET /static/...       the page's files
/_local/...           control routes of the local stack only (see docs/local.md); no credential
anything else         API Gateway: the template's routes, at /<path> and at /<stage>/<path>
"""

from __future__ import annotations

import json
import mimetypes
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nextpick_local.standin.gateway import ApiGateway, HttpRequest, HttpResponse, json_response

# (method, path) -> handler(request body) -> response.
ControlRoutes = Mapping[tuple[str, str], Callable[[bytes], HttpResponse]]


def page_config_script(config: Mapping[str, Any]) -> bytes:
    """What the storefront reads its API URL and demo shoppers from: `window.NEXTPICK_CONFIG`."""
    payload = json.dumps(dict(config)).replace("</", "<\\/")
    return f"<script>window.NEXTPICK_CONFIG = {payload};</script>\n".encode()


def storefront(config: Mapping[str, Any], static_dir: Path) -> HttpResponse:
    index = static_dir / "index.html"
    if not index.is_file():
        return HttpResponse(
            404, [("Content-Type", "text/plain")], b"storefront not installed (static/index.html)"
        )
    html = index.read_bytes()
    script = page_config_script(config)
    # Before the page's own scripts, so they find the config when they run.
    head = html.find(b"</head>")
    html = html[:head] + script + html[head:] if head >= 0 else script + html
    return HttpResponse(
        200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")], html
    )


def static_file(relative: str, static_dir: Path) -> HttpResponse:
    root = static_dir.resolve()
    target = (root / relative).resolve()
    if root not in target.parents or not target.is_file():
        return HttpResponse(404, [("Content-Type", "text/plain")], b"not found")
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return HttpResponse(200, [("Content-Type", kind)], target.read_bytes())


class _FrontDoorServer(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: with 32 clients connecting at once (bench/load.py) the
    # kernel's accept queue overflowed and 6-32 connections of a 5 s run were reset before any answer
    # (docs/load-test.md). API Gateway never refuses a connection; 128 is Linux's classic SOMAXCONN.
    request_queue_size = 128


class LocalHttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        gateway: ApiGateway,
        control: ControlRoutes,
        page_config: Mapping[str, Any],
        static_dir: Path,
    ) -> None:
        self.static_dir = static_dir
        self.gateway = gateway
        self.control = control
        self.page_config = page_config
        self._server = _FrontDoorServer((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def route(self, request: HttpRequest) -> HttpResponse:
        path = urlsplit(request.target).path
        if request.method == "GET" and path in ("/", "/index.html"):
            return storefront(self.page_config, self.static_dir)
        if request.method == "GET" and path.startswith("/static/"):
            return static_file(path[len("/static/") :], self.static_dir)
        if path.startswith("/_local/"):
            handler = self.control.get((request.method, path))
            if handler is None:
                return json_response(404, {"message": f"no local control route {request.method} {path}"})
            return handler(request.body)
        return self.gateway.handle(request)


def _handler_class(server: LocalHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "nextpick-local"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = HttpRequest(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
            )
            try:
                response = server.route(request)
            except Exception as error:
                response = json_response(
                    500, {"message": f"local stack error: {type(error).__name__}: {error}"}
                )
            self.send_response(response.status)
            for name, value in response.headers:
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            # Request lines would drown the console; the functions' logs have every request.
            pass

    return Handler
