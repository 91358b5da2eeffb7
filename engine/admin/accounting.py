"""The end of a request (mode http) or a connection (mode tcp): its counters added to its
frontend, backend and server, its times to the histograms, and its log line when logging is on.

Called once per request or connection from the data path, never per chunk: the protocols carry
plain per-exchange numbers (bytes, loop times) and hand them over here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend, Server
    from virtserve.engine.frontend import Frontend
    from virtserve.engine.l4.relay import TcpClientProtocol
    from virtserve.engine.l7.protocol import Exchange, HttpProxyProtocol


def http_done(client: HttpProxyProtocol, ex: Exchange | None, status: int, term: str, now: float) -> None:
    """A request was answered (status, or 0 when the client saw nothing) or abandoned.
    `term` is HAProxy's two-letter termination state ("--" for a normal end)."""
    fe = client.fe
    fc = fe.counters
    fc.requests += 1
    if ex is None or ex.reply is not None:
        # Refused before a request existed (bad head, timeout), or answered by the proxy
        # itself (a redirect rule): no backend took part, as HAProxy counts them.
        if ex is None:
            fc.req_errors += 1
        else:
            fc.bytes_in += ex.bytes_in
            fc.bytes_out += ex.bytes_out
        fc.status(status)
        if fe.log is not None:
            fe.log.http(client, ex, status, term, now)
        return
    be = ex.backend or fe.backend  # the route's backend when rules chose one
    bc = be.counters
    bc.requests += 1
    n_in, n_out = ex.bytes_in, ex.bytes_out
    fc.bytes_in += n_in
    fc.bytes_out += n_out
    fc.status(status)
    bc.bytes_in += n_in
    bc.bytes_out += n_out
    bc.status(status)
    total = now - ex.t_begin
    response = ex.t_resp - ex.t_head if ex.t_resp else -1.0
    bc.request_time(total, response)
    s = ex.server or ex.last_server
    if s is not None:
        sc = s.counters
        sc.bytes_in += n_in
        sc.bytes_out += n_out
        sc.status(status)
        sc.request_time(total, response)
        if status == 502 or status == 504:
            sc.resp_errors += 1
    if status == 502 or status == 504:
        bc.resp_errors += 1
    elif status == 400 or status == 408:
        fc.req_errors += 1
    if term[0] == "C":
        fc.cli_aborts += 1
        bc.cli_aborts += 1
    if fe.log is not None:
        fe.log.http(client, ex, status, term, now)


def connected(fe: Frontend, s: Server, seconds: float, backend: Backend | None = None) -> None:
    """A new server connection was established after `seconds`. `backend`: s's, when a route
    chose other than the frontend's default."""
    s.counters.connect_time(seconds)
    (backend or fe.backend).counters.connect_time(seconds)


def connect_failed(fe: Frontend, s: Server, retrying: bool, backend: Backend | None = None) -> None:
    sc, bc = s.counters, (backend or fe.backend).counters
    sc.conn_errors += 1
    bc.conn_errors += 1
    if retrying:
        sc.retries += 1
        bc.retries += 1


def redispatched(fe: Frontend, failed: Server, backend: Backend | None = None) -> None:
    failed.counters.redispatches += 1
    (backend or fe.backend).counters.redispatches += 1


def tcp_done(client: TcpClientProtocol, s: Server | None, term: str, now: float) -> None:
    """A relayed connection ended."""
    fe = client.fe
    n_in, n_out = client.n_in, client.n_out
    fc, bc = fe.counters, client.backend.counters
    fc.bytes_in += n_in
    fc.bytes_out += n_out
    bc.bytes_in += n_in
    bc.bytes_out += n_out
    total = now - client.t_accept
    bc.request_time(total, -1.0)
    if s is not None:
        sc = s.counters
        sc.bytes_in += n_in
        sc.bytes_out += n_out
        sc.request_time(total, -1.0)
    if fe.log is not None and (n_in or not fe.log.dontlognull):
        fe.log.tcp(client, s, term, now)
