"""The end of a request (mode http) or a connection (mode tcp): its counters, its times to the
histograms, and its log line when logging is on.

Called once per request or connection from the data path, never per chunk: the protocols carry
plain per-exchange numbers (bytes, loop times) and hand them over here. Each end updates one
Counters: its server's, or its backend's own when no server took it, or its frontend's when it
never became a request (a refused head). Backend and frontend totals are summed when read
(view.backend_counters, view.frontend_counters); only a frontend whose backend also serves other
frontends (`fe.tally`) keeps its own totals as well, as those sums cannot tell frontends apart.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from virtserve.engine.admin.counters import AVG_WINDOW, BUCKETS, STATUS_CLASS

if TYPE_CHECKING:
    from virtserve.engine.backend import Server
    from virtserve.engine.frontend import Frontend
    from virtserve.engine.l4.relay import TcpClientProtocol
    from virtserve.engine.l7.protocol import Exchange, HttpProxyProtocol


def http_done(client: HttpProxyProtocol, ex: Exchange | None, status: int, term: str, now: float) -> None:
    """A request was answered (status, or 0 when the client saw nothing) or abandoned.
    `term` is HAProxy's two-letter termination state ("--" for a normal end)."""
    fe = client.fe
    if ex is None:  # refused before a request existed (bad head, timeout)
        c = fe.counters
        c.requests += 1
        c.req_errors += 1
        c.hrsp[STATUS_CLASS[status]] += 1
        if fe.log is not None:
            fe.log.http(client, None, status, term, now)
        return
    if ex.reply is not None:  # answered by the proxy itself (a redirect rule): no backend
        c = fe.counters
        c.requests += 1
        c.bytes_in += ex.bytes_in
        c.bytes_out += ex.bytes_out
        c.hrsp[STATUS_CLASS[status]] += 1
        if fe.log is not None:
            fe.log.http(client, ex, status, term, now)
        return
    s = ex.server or ex.last_server
    c = s.counters if s is not None else (ex.backend or fe.backend).counters
    c.requests += 1
    c.bytes_in += ex.bytes_in
    c.bytes_out += ex.bytes_out
    c.hrsp[STATUS_CLASS[status]] += 1
    total = now - ex.t_begin
    c.rt_hist[0 if total <= 0.001 else bisect_left(BUCKETS, total)] += 1
    c.rt_sum += total
    n = c.rt_count = c.rt_count + 1
    if n > AVG_WINDOW:
        n = AVG_WINDOW
    # Running averages over the last ~AVG_WINDOW samples (HAProxy's swrate_add_dynamic).
    c.ttime += (total - c.ttime) / n
    if ex.t_resp:
        c.rtime += (ex.t_resp - ex.t_head - c.rtime) / n
    if status >= 400 or term != "--":
        _errors(fe, c, status, term)
    if fe.tally:
        _frontend_tally(fe, ex, status, term)
    if fe.log is not None:
        fe.log.http(client, ex, status, term, now)


def _errors(fe: Frontend, c: object, status: int, term: str) -> None:
    if status == 502 or status == 504:
        c.resp_errors += 1  # type: ignore[attr-defined]
    elif status == 400 or status == 408:
        c.req_errors += 1  # type: ignore[attr-defined]
    if term[0] == "C":
        c.cli_aborts += 1  # type: ignore[attr-defined]


def _frontend_tally(fe: Frontend, ex: Exchange, status: int, term: str) -> None:
    fc = fe.counters
    fc.requests += 1
    fc.bytes_in += ex.bytes_in
    fc.bytes_out += ex.bytes_out
    fc.hrsp[STATUS_CLASS[status]] += 1
    if status == 400 or status == 408:
        fc.req_errors += 1
    if term[0] == "C":
        fc.cli_aborts += 1


def tunnel_opened(client: HttpProxyProtocol, ex: Exchange, now: float) -> None:
    """An Upgrade was answered 101: the request is accounted (and logged) now; from here on the
    exchange carries the tunnel's own bytes, accounted when it closes (tunnel_closed) and shown
    while it lives (live.py)."""
    http_done(client, ex, 101, "--", now)
    ex.bytes_in = len(ex.early)  # sent on to the server with the switch
    ex.bytes_out = 0


def tunnel_closed(client: HttpProxyProtocol, ex: Exchange) -> None:
    s = ex.server or ex.last_server
    c = s.counters if s is not None else (ex.backend or client.fe.backend).counters
    c.bytes_in += ex.bytes_in
    c.bytes_out += ex.bytes_out
    if client.fe.tally:
        fc = client.fe.counters
        fc.bytes_in += ex.bytes_in
        fc.bytes_out += ex.bytes_out


def connected(fe: Frontend, s: Server, seconds: float) -> None:
    """A new server connection was established after `seconds`."""
    s.counters.connect_time(seconds)


def connect_failed(fe: Frontend, s: Server, retrying: bool) -> None:
    sc = s.counters
    sc.conn_errors += 1
    if retrying:
        sc.retries += 1


def redispatched(fe: Frontend, failed: Server) -> None:
    failed.counters.redispatches += 1


def tcp_done(client: TcpClientProtocol, s: Server | None, term: str, now: float) -> None:
    """A relayed connection ended."""
    fe = client.fe
    n_in, n_out = client.n_in, client.n_out
    c = s.counters if s is not None else client.backend.counters
    c.bytes_in += n_in
    c.bytes_out += n_out
    total = now - client.t_accept
    c.rt_hist[0 if total <= 0.001 else bisect_left(BUCKETS, total)] += 1
    c.rt_sum += total
    n = c.rt_count = c.rt_count + 1
    c.ttime += (total - c.ttime) / (n if n < AVG_WINDOW else AVG_WINDOW)
    if fe.tally:
        fc = fe.counters
        fc.bytes_in += n_in
        fc.bytes_out += n_out
    if fe.log is not None and (n_in or not fe.log.dontlognull):
        fe.log.tcp(client, s, term, now)
