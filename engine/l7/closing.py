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
    if _CONNECTION.search(head) is None:
        return head[:-2] + b"connection: close\r\n\r\n" if head.endswith(b"\r\n\r\n") else head
    first = True

    def replace(_: re.Match[bytes]) -> bytes:
        nonlocal first
        if first:
            first = False
            return b"\r\nconnection: close"
        return b""  # a second Connection line would contradict the first

    return _CONNECTION.sub(replace, head)
