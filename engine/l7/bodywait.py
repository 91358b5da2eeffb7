"""Hold a request's pick until the first body bytes are in: `balance url_param NAME check_post`.

The scheduler (schedulers/hashsched.py UrlParam) says how many bytes it wants from the request
head (body_wanted: 0 for anything but a form POST whose query string lacks the parameter). While
they are missing, a BodyWait stands in the exchange's `conn` slot: the protocol's body path writes
to it as it would to a server, it keeps the bytes in `ex.pending` (where bytes for a server still
connecting wait anyway), and once it has enough (or the message ended) the pick is made on them
and the exchange goes on as any other: the head and every body byte are sent, in order, to the
server picked. Nothing is lost; reading pauses past MAX_PENDING_BODY as on the normal path; the
client's timeout runs meanwhile (on_deadline answers 408).

Only backends whose scheduler has a look-ahead pay anything: protocol.py calls hold() only when
`backend.body_lookahead` is set.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from virtserve.engine.l7.protocol import _BODY, MAX_PENDING_BODY
from virtserve.schedulers import keys

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend
    from virtserve.engine.l7.protocol import Exchange, HttpProxyProtocol

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def hold(proto: HttpProxyProtocol, ex: Exchange, backend: Backend) -> bool:
    """Before a pick: put the body window in the pick context and return False, or, when the
    bytes the scheduler wants are not all in yet, park the exchange and return True."""
    ctx = proto.ctx
    ctx.payload = b""
    want = backend.scheduler.body_wanted(ex.head, ex.chunked)  # type: ignore[attr-defined]
    if not want:
        return False
    if ex.complete or ex.pending_size >= want:
        ctx.payload = window(ex, want)
        return False
    ex.conn = BodyWait(proto, ex, want)  # type: ignore[assignment]
    if keys.header(ex.head, b"expect") is not None and not ex.pending:
        # The client waits for a go-ahead before sending the body we wait for.
        proto.transport.write(CONTINUE)
    return True


def window(ex: Exchange, want: int) -> bytes:
    if ex.chunked:
        return keys.dechunk_first(ex.pending[0]) if ex.pending else b""
    return b"".join(ex.pending)[:want]


class _Sink:
    """The transport side of a BodyWait: what the protocol calls on ex.conn.transport."""

    __slots__ = ("wait",)

    def __init__(self, wait: BodyWait) -> None:
        self.wait = wait

    def write(self, data: bytes) -> None:
        self.wait.received(data)

    def abort(self) -> None:
        self.wait.ex = None  # the client went away or timed out: nothing to pick for

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class BodyWait:
    """Stands in ex.conn while the pick waits for body bytes (see the module's doc)."""

    __slots__ = ("proto", "client", "ex", "want", "transport", "deadline")

    def __init__(self, proto: HttpProxyProtocol, ex: Exchange, want: int) -> None:
        self.proto = proto
        self.client = proto  # the protocol clears client/ex when it abandons the exchange
        self.ex: Exchange | None = ex
        self.want = want
        self.transport = _Sink(self)
        self.deadline = 0.0

    def received(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:
            return
        ex.pending.append(data)
        ex.pending_size += len(data)
        if ex.pending_size > MAX_PENDING_BODY:
            self.proto._pause(_BODY)  # the server connection resumes it once attached
        if ex.pending_size >= self.want or ex.chunked:
            # Enough: the pick runs once the parser is done with the bytes at hand (not inside
            # its callback), and what follows goes to ex.pending until a server is attached.
            ex.conn = None
            self.ex = None
            self.proto.state.loop.call_soon(_dispatch, self.proto, ex)


def _dispatch(proto: HttpProxyProtocol, ex: Exchange) -> None:
    if proto.closed or proto.current is not ex or ex.conn is not None:
        return
    proto._dispatch(ex, None)
