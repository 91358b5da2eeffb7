"""The stats page: an aiohttp.web app on its own listener, as HAProxy's `stats enable`.

`GET <uri>` HTML (refreshes itself with a meta tag: no JavaScript), `GET <uri>;csv` HAProxy's
CSV, `POST <uri>` the admin form (when `stats admin`), `GET <metrics-uri>` Prometheus text.
Basic auth when `stats auth` is set: 401 with the realm otherwise.
"""
from __future__ import annotations

import base64
import hmac
import html
import time
from urllib.parse import quote
from typing import TYPE_CHECKING, Any

from aiohttp import web

from virtserve.engine.admin import metrics, view
from virtserve.engine.admin.runtime import VERSION, CommandError, Runtime

if TYPE_CHECKING:
    from virtserve.engine.config.model import StatsSpec
    from virtserve.engine.engine import Engine

# Row colours as HAProxy's stats page: the whole row tells the server's state at a glance.
_ROW = {"UP": "up", "DOWN": "down", "MAINT": "maint", "DRAIN": "drain"}
_CSS = """body{font-family:Arial,Helvetica,sans-serif;font-size:12px;margin:10px;color:#000}
h1{font-size:17px;margin:0 0 2px}p.info{margin:0 0 8px;color:#333}
table{border-collapse:collapse;margin:2px 0 4px}caption{text-align:left;font-weight:bold;font-size:14px;
padding:8px 0 3px}th,td{border:1px solid #999;padding:2px 5px;white-space:nowrap}
th{background:#20406a;color:#fff;font-weight:normal}th.g{background:#2c5888}
td{text-align:right;font-variant-numeric:tabular-nums}td.n{text-align:left;font-weight:bold}td.t{text-align:left}
tr.px td{background:#e8e8d0;font-weight:bold}tr.up td,td.up{background:#c0ffc0}tr.bup td,td.bup{background:#b0d0ff}
tr.down td,td.down{background:#ff9090}tr.maint td,td.maint{background:#d8a060}tr.drain td,td.drain{background:#30a4ff}
td.z{color:#999}table.leg td{text-align:left;padding:2px 8px}form{margin:0 0 6px}"""
_LEGEND = (("up", "active UP"), ("bup", "backup UP"), ("drain", "DRAIN: no new work, current work finishes"),
           ("maint", "MAINT: out of service"), ("down", "DOWN: failed its checks"))
# (group, columns): two header rows, as HAProxy groups its columns
_GROUPS = (("", ("Name", "Status", "LastChk", "Wght", "Act", "Bck")),
           ("Queue", ("Cur",)), ("Sessions", ("Cur", "Max", "Limit", "Total")),
           ("Bytes", ("In", "Out")), ("Denied", ("Req",)), ("Errors", ("Req", "Conn", "Resp")),
           ("Warnings", ("Retr", "Redis")), ("Responses", ("2xx", "4xx", "5xx")),
           ("Avg. time ms", ("Connect", "Response", "Total")))


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

    def authorized(self, header: str) -> bool:
        """Whether an Authorization header value gives credentials of `stats auth` (or none are
        asked). Also used by the page served in-band (admin/inband.py)."""
        if not self._auth:
            return True
        given = b""
        if header[:6].lower() == "basic ":
            try:
                given = base64.b64decode(header[6:].strip(), validate=True)
            except ValueError:
                given = b""
        return any(hmac.compare_digest(given, ok) for ok in self._auth)

    @web.middleware
    async def _check_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._auth:
            if not self.authorized(request.headers.get("Authorization", "")):
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
        rows = list(view.rows(e))
        fronts = [r for r in rows if r["type"] == view.TYPE_FRONTEND]
        up = int(time.time() - self.runtime.started)
        out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Statistics Report</title>{refresh}"
               f"<style>{_CSS}</style></head><body><h1>virtserve{version}: statistics report</h1>"
               f'<p class="info">uptime {_age(up)}; {sum(int(r["scur"]) for r in fronts)} current '
               f'sessions, {sum(int(r["stot"]) for r in fronts)} in all; '
               f'{"refreshed every " + _age(int(spec.refresh)) if spec.refresh else "not refreshed"}</p>']
        out.append('<table class="leg"><tr>' + "".join(f'<td class="{c}">{t}</td>' for c, t in _LEGEND)
                   + "</tr></table>")
        if result:
            out.append(f"<p><b>Action: {html.escape(result)}</b></p>")
        for r in fronts:
            out.append(self._table(str(r["pxname"]), "frontend", [r], None))
        for b in e.backends.values():
            mine = [r for r in rows if r["type"] != view.TYPE_FRONTEND and r["pxname"] == b.name]
            out.append(self._table(b.name, "backend", mine, b.name if spec.admin else None))
        out.append("</body></html>")
        return "".join(out)

    def _table(self, name: str, kind: str, rows: list[dict[str, Any]], admin: str | None) -> str:
        esc = html.escape
        box = '<th rowspan="2"></th>' if admin else ""
        top = box + "".join(f'<th colspan="{len(cols)}" class="g">{g}</th>' if g else
                            "".join(f'<th rowspan="2">{c}</th>' for c in cols) for g, cols in _GROUPS)
        sub = "".join(f"<th>{c}</th>" for g, cols in _GROUPS if g for c in cols)
        body = []
        for r in rows:
            srv = r["type"] == view.TYPE_SERVER
            status = str(r.get("status", ""))
            cls = "px"
            if srv:
                cls = _ROW.get(status, "")
                if cls == "up" and r.get("bck"):
                    cls = "bup"
                if r.get("lastchg", "") != "":
                    status += f" {_age(int(r['lastchg']))}"
            chk = r.get("check_status", "")
            if chk and r.get("check_duration", "") != "":
                chk = f"{chk} in {r['check_duration']}ms"
            yes = {1: "Y", 0: "-"}
            numbers = [r.get("qcur", ""), r.get("scur", ""), r.get("smax", ""), r.get("slim", ""),
                       r.get("stot", ""), _bytes(r.get("bin", 0)), _bytes(r.get("bout", 0)), r.get("dreq", ""),
                       r.get("ereq", ""), r.get("econ", ""), r.get("eresp", ""), r.get("wretr", ""),
                       r.get("wredis", ""), r.get("hrsp_2xx", ""), r.get("hrsp_4xx", ""), r.get("hrsp_5xx", ""),
                       r.get("ctime", ""), r.get("rtime", ""), r.get("ttime", "")]
            tds = [f'<td class="n">{esc(str(r["svname"]))}</td>', f'<td class="t">{esc(status)}</td>',
                   f'<td class="t">{esc(str(chk))}</td>', f"<td>{r.get('weight', '')}</td>",
                   f"<td>{yes.get(r.get('act'), '') if srv else ''}</td>",
                   f"<td>{yes.get(r.get('bck'), '') if srv else ''}</td>"]
            tds += [f'<td class="z">0</td>' if str(c) in ("0", "0B") else f"<td>{esc(str(c))}</td>"
                    for c in numbers]
            if admin:
                tds.insert(0, f'<td><input type="checkbox" name="s" value="{esc(str(r["svname"]))}"></td>'
                           if srv else "<td></td>")
            body.append(f'<tr class="{cls}">{"".join(tds)}</tr>')
        table = (f"<table><caption>{esc(name)} ({kind})</caption><tr>{top}</tr><tr>{sub}</tr>"
                 f"{''.join(body)}</table>")
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
