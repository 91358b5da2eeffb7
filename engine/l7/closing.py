"""Telling the client its connection closes after this response, as HAProxy does.

Responses pass through as bytes; only a response the proxy will follow by closing the client
connection has its head edited (its Connection header set to `close`), so keep-alive responses
cost nothing. A client told `close` does not send its next request on a dying socket."""
from __future__ import annotations

import re

# A Connection header line (name case-insensitive, any value up to the line's end).
_CONNECTION = re.compile(rb"\r\nconnection[ \t]*:[^\r\n]*", re.IGNORECASE)


def mark_close(head: bytes) -> bytes:
    """The response head (status line to the blank line's first CRLF, as persist.edit_response
    passes it) with `connection: close` in place of its Connection headers, or added."""
    m = _CONNECTION.search(head)
    if m is None:
        return head[:-2] + b"connection: close\r\n\r\n" if head.endswith(b"\r\n\r\n") else head
    # A second Connection line would contradict the first: dropped.
    return head[:m.start()] + b"\r\nconnection: close" + _CONNECTION.sub(b"", head[m.end():])
