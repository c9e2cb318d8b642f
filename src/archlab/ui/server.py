"""`archlab ui`: a small web server over the memory (stdlib http.server, Jinja2 pages).

Pages are rendered on the server with inline SVG plots; the one script, for a live run's
progress, is served from here too, so nothing is ever loaded from another host. Every
string from the memory is escaped (autoescape), and a Content-Security-Policy allows no
inline script, so even an escaping mistake could not run candidate or model text.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import traceback
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import jinja2
from rich.console import Console

from archlab.errors import ArchlabError
from archlab.memory.store import Memory
from archlab.report import templates
from archlab.ui import views

_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

#: path pattern -> (view, template); a None template answers the view's result as JSON
_ROUTES: list[tuple[re.Pattern[str], Callable[..., dict[str, Any]], str | None]] = [
    (re.compile(r"/"), views.runs, "runs.html.j2"),
    (re.compile(r"/runs/([^/]+)"), views.run_page, "run.html.j2"),
    (re.compile(r"/candidates/([^/]+)"), views.candidate_page, "candidate.html.j2"),
    (re.compile(r"/api/runs/([^/]+)"), views.progress, None),
]


def _route(path: str) -> tuple[Callable[..., dict[str, Any]], str | None, tuple[str, ...]] | None:
    for pattern, view, template in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return view, template, match.groups()
    return None


def _json_default(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


class UIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, memory: Memory, host: str = "127.0.0.1", port: int = 0, log: bool = True
    ) -> None:
        self.memory, self.host, self.log = memory, host, log
        self.pages = templates(jinja2.PackageLoader("archlab.ui", "templates"))
        self.pages.globals.update(
            run_href=views.run_href,
            candidate_href=views.candidate_href,
            weights_href=views.weights_href,
        )
        self.script = resources.files("archlab.ui").joinpath("live.js").read_bytes()
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a reader closed the tab
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: UIServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log:
            super().log_message(format, *args)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")  # the memory changes under a live run
        self.end_headers()
        self.wfile.write(body)

    def _page(self, status: int, template: str, **context: Any) -> None:
        self._send(status, self._html(template, **context), "text/html; charset=utf-8")

    def _html(self, template: str, **context: Any) -> bytes:
        return self.server.pages.get_template(template).render(**context).encode()

    def _host_allowed(self) -> bool:
        """Bound to loopback, answer only requests addressed to loopback: a web page that
        rebinds its own DNS name to 127.0.0.1 must not read the memory."""
        if self.server.host not in _LOOPBACK:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in _LOOPBACK

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if not self._host_allowed():
            self._page(403, "error.html.j2", title="Forbidden", message="unexpected Host header")
            return
        if path == "/live.js":
            self._send(200, self.server.script, "text/javascript; charset=utf-8")
            return
        if path.startswith("/weights/"):
            self._weights(path.removeprefix("/weights/"))
            return
        route = _route(path)
        if route is None:
            self._page(404, "error.html.j2", title="Not found", message=f"no page at {path}")
            return
        view, template, args = route
        content_type = "text/html; charset=utf-8"
        try:  # the whole answer is made before any of it is sent
            context = view(self.server.memory, *args)
            if template is None:
                status, content_type = 200, "application/json"
                body = json.dumps(context, default=_json_default).encode()
            else:
                status, body = 200, self._html(template, **context)
        except views.NotFound as e:
            status, body = 404, self._html("error.html.j2", title="Not found", message=str(e))
        except ArchlabError as e:  # e.g. the memory stayed locked: try again later
            title = "Memory unavailable"
            status, body = 503, self._html("error.html.j2", title=title, message=str(e))
        except Exception:
            traceback.print_exc(file=sys.stderr)
            message = "see the server's log"
            status, body = 500, self._html("error.html.j2", title="Error", message=message)
        self._send(status, body, content_type)

    def _weights(self, name: str) -> None:
        """A candidate's kept weights, as a download."""
        try:
            filename, body = views.weights_file(self.server.memory, name)
        except views.NotFound as e:
            self._page(404, "error.html.j2", title="Not found", message=str(e))
            return
        except ArchlabError as e:  # locked memory, or a file that is not what was recorded
            self._page(503, "error.html.j2", title="Weights unavailable", message=str(e))
            return
        disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
        self._send(200, body, "application/octet-stream", disposition)


def serve(memory: Memory, host: str, port: int, console: Console) -> None:
    """Serve until Ctrl-C."""
    try:
        server = UIServer(memory, host, port)
    except OSError as e:
        raise ArchlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    console.print(f"archlab ui on {server.url} (Ctrl-C stops it)", highlight=False, markup=False)
    with server, contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
