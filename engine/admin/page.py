"""The stats page: an aiohttp.web app on its own listener, as HAProxy's `stats enable`.

`GET <uri>` HTML (refreshes itself with a meta tag: no JavaScript), `GET <uri>;csv` HAProxy's
CSV, `POST <uri>` the admin form (when `stats admin`), `GET <metrics-uri>` Prometheus text.
Basic auth when `stats auth` is set: 401 with the realm otherwise.
"""
from __future__ import annotations

import base64
import hmac
import html
from urllib.parse import quote
from typing import TYPE_CHECKING, Any

from aiohttp import web

from virtserve.engine.admin import metrics, view
from virtserve.engine.admin.runtime import VERSION, CommandError, Runtime

if TYPE_CHECKING:
    from virtserve.engine.config.model import StatsSpec
    from virtserve.engine.engine import Engine

_COLORS = {"UP": "#c0f0c0", "DOWN": "#ff9090", "MAINT": "#c0c0ff", "DRAIN": "#ffd080", "OPEN": "#c0f0c0"}
_CSS = """body{font-family:sans-serif;font-size:13px;margin:1em}h1{font-size:18px}
table{border-collapse:collapse;margin-bottom:1.5em}th,td{border:1px solid #999;padding:2px 6px;text-align:right}
th{background:#d0d8e8}td.n{text-align:left;font-weight:bold}caption{text-align:left;font-weight:bold;
font-size:15px;padding:4px 0}tr.fe td,tr.be td{background:#eee}.st{text-align:center}"""
_COLS = ("Name", "Status", "LastChk", "Wght", "Cur", "Max", "Limit", "Total", "Queue", "Bytes in",
         "Bytes out", "Req err", "Denied", "Conn err", "Resp err", "Retr", "Redis", "2xx", "4xx",
         "5xx", "Ctime ms", "Rtime ms", "Ttime ms")


class StatsApp:
    def __init__(self, engine: Engine, spec: StatsSpec) -> None:
        self.engine = engine
        self.spec = spec
        self.runtime = Runtime(engine, "admin")
        self.registry = metrics.registry_for(engine)
        self.exposition = metrics.Exposition(engine)
        self._auth = {f"{u}:{p}".encode() for u, p in spec.auth}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._check_auth])
        uri = self.spec.uri
        app.router.add_get(uri, self._page)
        app.router.add_get(uri + ";csv", self._csv)
        if uri.endswith("/"):
            app.router.add_get(uri + "?stats;csv", self._csv)
        if self.spec.admin:
            app.router.add_post(uri, self._admin)
        if self.spec.metrics_uri:
            app.router.add_get(self.spec.metrics_uri, self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        bind = self.spec.bind
        assert bind is not None
        self._site = web.TCPSite(self._runner, bind.address, bind.port, reuse_address=True)
        try:
            await self._site.start()
        except OSError as exc:
            await self._runner.cleanup()
            where = f"{bind.where}: " if bind.where else ""
            raise OSError(exc.errno, f"{where}stats: cannot bind {bind.address}:{bind.port}: {exc.strerror}") from exc

    @property
    def address(self) -> tuple[str, int]:
        server = self._site._server  # type: ignore[union-attr]
        return server.sockets[0].getsockname()[:2]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers --------------------------------------------------------------------------

    @web.middleware
    async def _check_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._auth:
            header = request.headers.get("Authorization", "")
            given = b""
            if header[:6].lower() == "basic ":
                try:
                    given = base64.b64decode(header[6:].strip(), validate=True)
                except ValueError:
                    given = b""
            if not any(hmac.compare_digest(given, ok) for ok in self._auth):
                realm = self.spec.realm.replace('"', "")
                return web.Response(status=401, text="401 Unauthorized\n",
                                    headers={"WWW-Authenticate": f'Basic realm="{realm}"'})
        return await handler(request)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.exposition.render(), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def _csv(self, request: web.Request) -> web.Response:
        return web.Response(text=view.csv_text(self.engine), content_type="text/plain")

    async def _admin(self, request: web.Request) -> web.Response:
        form = await request.post()
        backend, action = str(form.get("b", "")), str(form.get("action", ""))
        servers = [str(s) for s in form.getall("s", [])]
        weight = str(form.get("weight", ""))
        status = "DONE"
        try:
            for name in servers:
                ref = f"{backend}/{name}"
                if action in ("ready", "drain", "maint"):
                    self.runtime.set_server([ref, "state", action])
                elif action == "weight":
                    self.runtime.set_server([ref, "weight", weight])
                else:
                    raise CommandError(f"unknown action {action!r}")
            if not servers:
                status = "NONE"
        except CommandError as exc:
            status = f"ERR: {exc}"
        raise web.HTTPSeeOther(location=f"{self.spec.uri}?st={quote(status)}")

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=self.render(request.query.get("st", "")), content_type="text/html")

    # --- HTML ------------------------------------------------------------------------------

    def render(self, result: str = "") -> str:
        spec = self.spec
        e = self.engine
        refresh = f'<meta http-equiv="refresh" content="{int(spec.refresh)}">' if spec.refresh else ""
        version = "" if spec.hide_version else f" version {VERSION}"
        out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Statistics Report</title>{refresh}"
               f"<style>{_CSS}</style></head><body><h1>virtserve{version}: statistics report</h1>"]
        if result:
            out.append(f"<p><b>Action: {html.escape(result)}</b></p>")
        rows = list(view.rows(e))
        fronts = {r["pxname"]: r for r in rows if r["type"] == view.TYPE_FRONTEND}
        for name, r in fronts.items():
            out.append(self._table(name, "frontend", [r], None))
        for b in e.backends.values():
            mine = [r for r in rows if r["type"] != view.TYPE_FRONTEND and r["pxname"] == b.name]
            out.append(self._table(b.name, "backend", mine, b.name if spec.admin else None))
        out.append("</body></html>")
        return "".join(out)

    def _table(self, name: str, kind: str, rows: list[dict[str, Any]], admin: str | None) -> str:
        esc = html.escape
        head = "".join(f"<th>{c}</th>" for c in (("",) if admin else ()) + _COLS)
        body = []
        for r in rows:
            srv = r["type"] == view.TYPE_SERVER
            cls = "" if srv else (' class="fe"' if r["type"] == view.TYPE_FRONTEND else ' class="be"')
            status = str(r.get("status", ""))
            if srv and r.get("lastchg", "") != "":
                status += f" {_age(int(r['lastchg']))}"
            color = _COLORS.get(str(r.get("status")), "#fff")
            chk = r.get("check_status", "")
            if chk and r.get("check_duration", "") != "":
                chk = f"{chk} in {r['check_duration']}ms"
            cells = [esc(str(r["svname"])), status, chk, r.get("weight", ""), r.get("scur", ""),
                     r.get("smax", ""), r.get("slim", ""), r.get("stot", ""), r.get("qcur", ""),
                     _bytes(r.get("bin", 0)), _bytes(r.get("bout", 0)), r.get("ereq", ""), r.get("dreq", ""),
                     r.get("econ", ""), r.get("eresp", ""), r.get("wretr", ""), r.get("wredis", ""),
                     r.get("hrsp_2xx", ""), r.get("hrsp_4xx", ""), r.get("hrsp_5xx", ""),
                     r.get("ctime", ""), r.get("rtime", ""), r.get("ttime", "")]
            tds = [f'<td class="n">{cells[0]}</td>', f'<td class="st" style="background:{color}">{esc(status)}</td>']
            tds += [f"<td>{esc(str(c))}</td>" for c in cells[2:]]
            if admin:
                box = (f'<td><input type="checkbox" name="s" value="{esc(str(r["svname"]))}"></td>'
                       if srv else "<td></td>")
                tds.insert(0, box)
            body.append(f"<tr{cls}>{''.join(tds)}</tr>")
        table = (f"<table><caption>{esc(name)} ({kind})</caption><tr>{head}</tr>{''.join(body)}</table>")
        if not admin:
            return table
        return (f'<form method="post" action="{esc(self.spec.uri)}">{table}'
                f'<input type="hidden" name="b" value="{esc(admin)}">Choose the action to perform on the '
                f'checked servers: <select name="action"><option value="ready">Set state to READY</option>'
                f'<option value="drain">Set state to DRAIN</option><option value="maint">Set state to MAINT'
                f'</option><option value="weight">Set weight to</option></select> '
                f'<input name="weight" size="4"> <input type="submit" value="Apply"></form>')


def _age(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds // 60 % 60}m"
    return f"{seconds // 86400}d{seconds // 3600 % 24}h"


def _bytes(n: Any) -> str:
    if not isinstance(n, int):
        return ""
    for unit in ("", "K", "M", "G"):
        if n < 10000:
            return f"{n}{unit}"
        n //= 1024
    return f"{n}T"
