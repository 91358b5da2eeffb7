"""Telling the client its connection closes after this response, as HAProxy does.

Responses pass through as bytes; only a response the proxy will follow by closing the client
connection has its head edited (its Connection header set to `close`), so keep-alive responses
cost nothing. A client told `close` does not send its next request on a dying socket."""
from __future__ import annotations

# A Connection header line's start. The head passed llhttp's strict parser, so the name is
# followed by the colon directly (whitespace before it is refused there): a byte search does.
_CONNECTION = b"\r\nconnection:"


def mark_close(head: bytes) -> bytes:
    """The response head (status line to the blank line's first CRLF, as persist.edit_response
    passes it) with `connection: close` in place of its Connection headers, or added."""
    low = head.lower()
    at = low.find(_CONNECTION)
    if at < 0:
        return head[:-2] + b"connection: close\r\n\r\n" if head.endswith(b"\r\n\r\n") else head
    end = low.find(b"\r\n", at + 2)
    nxt = low.find(_CONNECTION, end)
    if nxt < 0:  # the usual case: one Connection line
        return head[:at] + b"\r\nconnection: close" + head[end:]
    out = [head[:at], b"\r\nconnection: close"]
    # A second Connection line would contradict the first: dropped.
    at = nxt
    while at >= 0:
        out.append(head[end:at])
        end = low.find(b"\r\n", at + 2)
        at = low.find(_CONNECTION, end)
    out.append(head[end:])
    return b"".join(out)
