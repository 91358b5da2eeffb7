"""The stats page served in-band, on the binds of a proxy that serves traffic, as HAProxy does
with `stats uri` in a frontend, backend or listen: a request whose URI starts with the uri is
answered by the proxy (the page, `;csv`, or 401 with the realm), every other one is proxied.

The page itself is admin/page.py's (its HTML, CSV and credential check); this module only turns
it into a complete response for the request pipeline (l7/stages.py), which asks `answer(req)`
only of the proxies that have stats. Admin actions (a POST of the page's form) are served by the
stats listener and the runtime socket, not in-band: the page shows no form here.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from virtserve.engine.config.model import StatsSpec
    from virtserve.engine.engine import Engine
    from virtserve.engine.l7.pipeline import Request

_UNAUTHORIZED = b"<html><body><h1>401 Unauthorized</h1>\nYou need a valid user and password to access this content.\n</body></html>\n"
_NOT_ALLOWED = b"<html><body><h1>405 Method Not Allowed</h1>\nThe stats page answers GET and HEAD here.\n</body></html>\n"


class InbandStats:
    __slots__ = ("engine", "spec", "uri", "needs_auth", "challenge", "_app")

    def __init__(self, engine: Engine, spec: StatsSpec) -> None:
        self.engine = engine
        self.spec = spec
        self.uri = spec.uri.encode()
        self.needs_auth = bool(spec.auth)
        realm = spec.realm.replace('"', "")
        self.challenge = f'www-authenticate: Basic realm="{realm}"\r\n'.encode("latin-1", "replace")
        # Built with the proxy (the import of aiohttp.web and prometheus_client is paid at
        # start, not by the first request for the page).
        from virtserve.engine.admin.page import StatsApp

        self._app: Any = StatsApp(engine, dataclasses.replace(spec, admin=False))

    def answer(self, req: Request) -> bool:
        """True when req is for the page: req.reply then holds the whole response."""
        url = req.url if req.url[:1] == b"/" else req.origin_form()
        if not url.startswith(self.uri):
            return False
        app = self._app
        if self.needs_auth:
            given = req.headers.get(b"authorization")
            if not given or not app.authorized(given[-1].decode("latin-1")):
                _reply(req, 401, b"Unauthorized", b"text/html", _UNAUTHORIZED, self.challenge)
                return True
        if req.method not in (b"GET", b"HEAD"):
            _reply(req, 405, b"Method Not Allowed", b"text/html", _NOT_ALLOWED, b"allow: GET, HEAD\r\n")
        elif b";csv" in url[len(self.uri):]:
            from virtserve.engine.admin import view

            _reply(req, 200, b"OK", b"text/plain; charset=utf-8", view.csv_text(self.engine).encode())
        else:
            _reply(req, 200, b"OK", b"text/html; charset=utf-8", app.render().encode())
        if req.method == b"HEAD":
            req.reply = req.reply[:req.reply.index(b"\r\n\r\n") + 4]  # type: ignore[union-attr]
        return True


def _reply(req: Request, status: int, reason: bytes, ctype: bytes, body: bytes, extra: bytes = b"") -> None:
    closing = b"" if req.keep_alive else b"connection: close\r\n"
    req.reply = b"".join((b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                          b"cache-control: no-cache\r\n" % (status, reason, ctype, len(body)),
                          extra, closing, b"\r\n", body))
    req.status = status


def pages(engine: Engine) -> Callable[[StatsSpec], InbandStats]:
    """The factory the engine hands its frontends: one page per proxy's stats settings."""
    return lambda spec: InbandStats(engine, spec)
