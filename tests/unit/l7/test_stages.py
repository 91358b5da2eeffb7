"""The request stages around a frontend's rules (engine/l7/stages.py), sans-IO: HAProxy's order
(frontend rules, frontend stats, routing, the backend's rules, the backend's stats), the backend
stage chosen by where the request is routed, and option httpclose."""
from __future__ import annotations

from virtserve.engine.config.conditions import parse_condition
from virtserve.engine.config.model import BackendSpec, FrontendSpec, StatsSpec
from virtserve.engine.config.rules import HeaderRuleSpec, RedirectRuleSpec, RouteSpec
from virtserve.engine.l7.pipeline import Pipeline, Request
from virtserve.engine.l7.stages import build


class Backend:
    """Stands for engine/backend.Backend: hashable, with its spec."""

    def __init__(self, spec: BackendSpec) -> None:
        self.spec, self.name = spec, spec.name


class Page:
    """Stands for admin/inband.InbandStats: answers the URIs under its prefix."""

    def __init__(self, spec: StatsSpec) -> None:
        self.uri, self.needs_auth = spec.uri.encode(), bool(spec.auth)

    def answer(self, req: Request) -> bool:
        if not req.url.startswith(self.uri):
            return False
        req.reply, req.status = b"PAGE " + self.uri, 200
        return True


def _req(url: bytes, keep_alive: bool = True) -> Request:
    return Request(b"GET", url, {}, "127.0.0.1", [], keep_alive)


def _stages(front: FrontendSpec, *backends: BackendSpec):
    objs = {b.name: Backend(b) for b in backends}
    pipeline = Pipeline(front.rules, front.routes, objs) if front.rules or front.routes else None
    default = objs[front.default_backend]
    used = [default, *(objs[r.backend] for r in front.routes)]
    return build(front, pipeline, default, used, Page), objs


def test_nothing_configured_means_no_stages():
    stages, _ = _stages(FrontendSpec("f", (), "app"), BackendSpec("app"))
    assert stages is None


def test_order_frontend_rules_then_stats_then_the_routed_backend():
    redirect = RedirectRuleSpec("location", "/elsewhere", condition=parse_condition("{ path_beg /old }"))
    front = FrontendSpec("f", (), "app", rules=(redirect,), stats=StatsSpec(uri="/fe"),
                         routes=(RouteSpec("api", parse_condition("{ path_beg /api }")),))
    app = BackendSpec("app", stats=StatsSpec(uri="/app-stats"))
    api = BackendSpec("api", stats=StatsSpec(uri="/api/stats", auth=(("a", "b"),)),
                      rules=(HeaderRuleSpec("add-header", "X-Api", "1"),))
    stages, objs = _stages(front, app, api)
    assert b"authorization" in stages.capture  # a page asks for credentials

    assert stages.run(_req(b"/old/x")).reply.startswith(b"HTTP/1.1 302")  # the frontend's redirect first
    assert stages.run(_req(b"/fe/x")).reply == b"PAGE /fe"  # then the frontend's page
    assert stages.run(_req(b"/app-stats")).reply == b"PAGE /app-stats"  # routed to app: its page
    req = stages.run(_req(b"/api/stats"))
    assert req.reply == b"PAGE /api/stats" and req.backend is objs["api"]
    assert b"X-Api" in req.parts  # the backend's rules ran before its page answered
    req = stages.run(_req(b"/api/app-stats"))  # routed to api: app's page is not consulted
    assert req.reply is None and req.parts == [b"X-Api", b": ", b"1", b"\r\n"]
    req = stages.run(_req(b"/plain"))
    assert req.reply is None and req.parts == [] and req.keep_alive


def test_httpclose_of_the_frontend_or_the_routed_backend():
    front = FrontendSpec("f", (), "app", routes=(RouteSpec("closing", parse_condition("{ path_beg /c }")),))
    stages, _ = _stages(front, BackendSpec("app"), BackendSpec("closing", httpclose=True))
    req = stages.run(_req(b"/c/1"))
    assert not req.keep_alive and req.parts == [b"connection", b": ", b"close", b"\r\n"]
    req = stages.run(_req(b"/other"))
    assert req.keep_alive and req.parts == []

    stages, _ = _stages(FrontendSpec("f", (), "app", httpclose=True, stats=StatsSpec(uri="/s")), BackendSpec("app"))
    req = stages.run(_req(b"/s"))
    assert req.reply == b"PAGE /s" and not req.keep_alive  # its own answers close too
