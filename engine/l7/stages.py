"""A frontend's request processing when more than its own rules take part: the stats page
served in-band, the http-request rules of the backend a request is routed to, and `option
httpclose`. Sans-IO, like l7/pipeline.py, whose Request it works on.

HAProxy's order: the frontend's http-request rules, its stats uri, use_backend; then the
backend's http-request rules and its stats uri. A frontend with none of these has no Stages
(its plain Pipeline, or nothing, as before): the cost is only paid where configured.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from virtserve.engine.l7.pipeline import Pipeline, Request

_CLOSE = (b"connection", b": ", b"close", b"\r\n")


class _Stage:
    """What one backend adds: its rules (a Pipeline without routes), its page, httpclose."""

    __slots__ = ("rules", "stats", "close")

    def __init__(self, rules: Pipeline | None, stats: Any, close: bool) -> None:
        self.rules, self.stats, self.close = rules, stats, close


class Stages:
    __slots__ = ("front", "stats", "close", "default", "stages", "capture")

    def __init__(self, front: Pipeline | None, stats: Any, close: bool, default: Any,
                 stages: dict[Any, _Stage]) -> None:
        self.front = front  # the frontend's rules and routes
        self.stats = stats  # the frontend's page (an object with answer(req) -> bool), or None
        self.close = close
        self.default = default
        self.stages = stages  # backend object -> its stage, for the backends that have one
        capture = set(front.capture) if front is not None else set()
        for stage in stages.values():
            if stage.rules is not None:
                capture |= stage.rules.capture
        if any(page is not None and page.needs_auth for page in (stats, *(s.stats for s in stages.values()))):
            capture.add(b"authorization")
        self.capture = frozenset(capture)

    def run(self, req: Request) -> Request:
        close = self.close
        if close:
            req.keep_alive = False  # the proxy's own answers say close too
        front = self.front
        if front is not None and front.run(req).reply is not None:
            return req
        if self.stats is not None and self.stats.answer(req):
            return req
        stage = self.stages.get(req.backend if req.backend is not None else self.default)
        if stage is not None:
            if stage.close and not close:
                close, req.keep_alive = True, False
            if stage.rules is not None and stage.rules.run(req).reply is not None:
                return req
            if stage.stats is not None and stage.stats.answer(req):
                return req
        if close:
            req.parts += _CLOSE  # the server closes its side after the response, and so do we
        return req

    def route_source(self, src: str) -> Any:
        return self.front.route_source(src) if self.front is not None else None


def build(spec: Any, front: Pipeline | None, default: Any, used: Iterable[Any],
          stats_page: Callable[[Any], Any] | None) -> Stages | None:
    """Stages for a frontend (spec) whose requests may reach the `used` backends (runtime objects
    with a .spec), or None when neither it nor they have stats, backend rules or httpclose."""
    pages = stats_page if stats_page is not None else (lambda s: None)
    stages: dict[Any, _Stage] = {}
    for backend in used:
        b = backend.spec
        if b.rules or b.stats is not None or b.httpclose:
            stages[backend] = _Stage(Pipeline(b.rules, (), {}) if b.rules else None,
                                     pages(b.stats) if b.stats is not None else None, b.httpclose)
    if not stages and spec.stats is None and not spec.httpclose:
        return None
    return Stages(front, pages(spec.stats) if spec.stats is not None else None, spec.httpclose,
                  default, stages)
