"""Bytes still moving on live connections, shown while they move.

The data path counts bytes per connection (L4: `n_in`/`n_out` on the client protocol) or per
exchange (L7: `bytes_in`/`bytes_out`, a tunnel's too) and hands them to the Counters once, when
the connection or request ends (accounting.py). A long-lived connection would show 0 bytes
until it closed. So a reader (stats page, CSV, `show stat`, metrics) folds the running numbers
of the live connections into the Counters they will go to, reads, and takes them out again:
nothing is added on the data path, and a scrape costs one walk over the live connections.

The fold and its undo happen within one synchronous read (no await between them), so no data
path callback ever sees the folded values, and a connection is either live (in `state.conns`,
not yet accounted) or accounted, never both: the protocols leave `state.conns` before they
account.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from virtserve.engine.l4.relay import TcpClientProtocol
from virtserve.engine.l7.protocol import HttpProxyProtocol
from virtserve.engine.rawpaths import rawrelay

if TYPE_CHECKING:
    from virtserve.engine.admin.counters import Counters
    from virtserve.engine.engine import Engine
    from virtserve.engine.l7.protocol import Exchange

# The L4 connections: the transport relay's, and the raw relay's where the platform has it.
_RELAYS: tuple[type, ...] = (TcpClientProtocol,) + ((rawrelay.RawConn,) if rawrelay is not None else ())
_folding: set[int] = set()  # engines being read now (a read inside a read folds nothing more)


@contextmanager
def folded(engine: Engine) -> Iterator[None]:
    """Within the block, the Counters include the live connections' bytes."""
    key = id(engine)
    state = engine.state
    if key in _folding or state is None:
        yield
        return
    added = running_bytes(state.conns)
    for c, n_in, n_out in added:
        c.bytes_in += n_in
        c.bytes_out += n_out
    _folding.add(key)
    try:
        yield
    finally:
        _folding.discard(key)
        for c, n_in, n_out in added:
            c.bytes_in -= n_in
            c.bytes_out -= n_out


def running_bytes(conns: Iterator[object] | set[object]) -> list[tuple[Counters, int, int]]:
    """(counters, bytes in, bytes out) the live connections will add when they end: each to the
    Counters accounting.py would pick for it."""
    out: list[tuple[Counters, int, int]] = []
    for conn in conns:
        if isinstance(conn, _RELAYS):
            n_in, n_out = conn.n_in, conn.n_out
            if n_in or n_out:
                s = conn.server or conn.last_server
                out.append((s.counters if s is not None else conn.backend.counters, n_in, n_out))
                if conn.fe.tally:
                    out.append((conn.fe.counters, n_in, n_out))
        elif isinstance(conn, HttpProxyProtocol):
            ex = conn.current
            if ex is not None:
                _exchange(conn, ex, out)
            for ex in conn.queue:  # pipelined (or the one whose body is arriving)
                _exchange(conn, ex, out)
    return out


def _exchange(client: HttpProxyProtocol, ex: Exchange, out: list[tuple[Counters, int, int]]) -> None:
    n_in, n_out = ex.bytes_in, ex.bytes_out
    if not (n_in or n_out):
        return
    fe = client.fe
    if ex.reply is not None:  # the proxy's own answer: counted on the frontend
        out.append((fe.counters, n_in, n_out))
        return
    s = ex.server or ex.last_server
    out.append((s.counters if s is not None else (ex.backend or fe.backend).counters, n_in, n_out))
    if fe.tally:
        out.append((fe.counters, n_in, n_out))
