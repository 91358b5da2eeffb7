"""Runtime frontend: what a client connection needs from its listener, resolved once from the
config so the data path reads plain attributes."""
from __future__ import annotations

from typing import TYPE_CHECKING

from virtserve.engine.config.model import FrontendSpec

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend
    from virtserve.engine.state import EngineState
    from virtserve.engine.upstream.pool import UpstreamPool


class Frontend:
    def __init__(self, spec: FrontendSpec, backend: Backend, state: EngineState, pool: UpstreamPool) -> None:
        self.spec = spec
        self.name = spec.name
        self.backend = backend
        self.state = state
        self.pool = pool
        ft, bt = spec.timeouts, backend.spec.timeouts
        self.t_client = ft.client
        self.t_http_request = ft.http_request
        self.t_keep_alive = ft.keep_alive
        self.t_connect = bt.connect
        self.t_server = bt.server
        self.retries = backend.spec.retries
        self.forwardfor = spec.forwardfor or backend.spec.forwardfor
        self.maxconn = spec.maxconn
        self.scheme = b"http"
        self.current = 0  # client connections open now
        self.total = 0  # client connections accepted
