"""Hash keys as HAProxy extracts them (src/lb_*.c get_server_*): bytes from the request or the
first client bytes, or None when the key is absent (the algorithm then falls back to round robin).

L7 keys read the request head the proxy rebuilt (ctx.request.head: request line, then headers as
received); only the scheduler that needs a key pays for finding it.
"""
from __future__ import annotations

from urllib.parse import urlsplit


def request_target(head: bytes) -> bytes:
    """The request-target of the request line: b"GET /a?b HTTP/1.1" -> b"/a?b"."""
    start = head.find(b" ") + 1
    end = head.find(b"\r\n")
    return head[start:head.rfind(b" ", start, end)]


def method(head: bytes) -> bytes:
    return head[:head.find(b" ")]


def uri_key(target: bytes, length: int = 0, depth: int = 0, whole: bool = False, path_only: bool = False) -> bytes:
    """get_server_uh: the URI up to '?' (unless whole), at most `length` bytes, stopping at the
    (depth+1)-th slash, i.e. `depth` directories; path-only drops an absolute-form's scheme and authority."""
    if path_only and not target.startswith(b"/"):
        parts = urlsplit(target)
        target = (parts.path or b"/") + ((b"?" + parts.query) if parts.query else b"")
    if length and len(target) > length:
        target = target[:length]
    end = 0
    slashes = 0
    n = len(target)
    while end < n:
        c = target[end]
        if c == 0x2F:  # '/'
            slashes += 1
            if slashes == depth + 1 and depth:
                break
        elif c == 0x3F and not whole:  # '?'
            break
        end += 1
    return target[:end]


def url_param(target: bytes, name: bytes) -> bytes | None:
    """get_server_ph: the value of `name` in the query string (delimiters & and ;)."""
    q = target.find(b"?")
    if q < 0:
        return None
    return form_param(target[q + 1:], name)


def form_param(query: bytes, name: bytes) -> bytes | None:
    prefix = name + b"="
    for part in query.replace(b";", b"&").split(b"&"):
        if part.startswith(prefix):
            value = part[len(prefix):]
            return value if value else None
    return None


def post_param(body: bytes, name: bytes, whole: bool) -> bytes | None:
    """get_server_ph_post: the value of `name` in an application/x-www-form-urlencoded body
    (pairs split on '&' only, as HAProxy does). `body` is the look-ahead window; when it is not
    the whole body (`whole` false), a value that runs to the window's end may be cut and counts
    as absent rather than hashing a part of it."""
    prefix = name + b"="
    start = 0
    n = len(body)
    while start < n:
        end = body.find(b"&", start)
        if end < 0:
            end = n
            if not whole:
                return None
        if body.startswith(prefix, start):
            return body[start + len(prefix):end] or None
        start = end + 1
    return None


def dechunk_first(piece: bytes) -> bytes:
    """The data of the first chunk the proxy re-framed (b"5\r\nhello\r\n" -> b"hello")."""
    at = piece.find(b"\r\n")
    return piece[at + 2:-2] if at >= 0 else b""


def header(head: bytes, name: bytes) -> bytes | None:
    """The first value of header `name` (first comma-separated element, trimmed), as HAProxy's
    http_find_header(..., full=0) gives get_server_hh."""
    lower = head.lower()
    needle = b"\r\n" + name.lower() + b":"
    at = lower.find(needle)
    if at < 0:
        return None
    start = at + len(needle)
    end = head.find(b"\r\n", start)
    value = head[start:end].split(b",", 1)[0].strip()
    return value or None


def domain_only(host: bytes) -> bytes:
    """use_domain_only: the most significant domain label ("1wt" of "haproxy.1wt.eu:80")."""
    host = host.rsplit(b":", 1)[0] if host.count(b":") == 1 else host
    labels = host.split(b".")
    return labels[-2] if len(labels) >= 2 else host


def rdp_cookie(payload: bytes, name: bytes = b"mstshash") -> bytes | None:
    """The RDP cookie `Cookie: NAME=value\\r\\n` in the client's X.224 Connection Request."""
    needle = b"Cookie: " + name + b"="
    at = payload.find(needle)
    if at < 0:
        return None
    start = at + len(needle)
    end = payload.find(b"\r\n", start)
    if end < 0:
        return None
    return payload[start:end] or None


def cookie(head: bytes, name: bytes) -> bytes | None:
    """The value of cookie `name` in the request's Cookie headers."""
    lower = head.lower()
    prefix = name + b"="
    pos = 0
    while True:
        at = lower.find(b"\r\ncookie:", pos)
        if at < 0:
            return None
        start = at + 9
        end = head.find(b"\r\n", start)
        for part in head[start:end].split(b";"):
            part = part.strip()
            if part.startswith(prefix):
                return part[len(prefix):]
        pos = end
