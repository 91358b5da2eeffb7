"""The proxy's own responses, as HAProxy's default errorfiles word them, built once at import."""
from __future__ import annotations

_PAGES = {
    400: ("Bad request", "Your browser sent an invalid request."),
    405: ("Method Not Allowed", "A request was made of a resource using a request method not supported by that resource."),
    408: ("Request Time-out", "Your browser didn't send a complete request in time."),
    431: ("Request Header Fields Too Large", "The request's header fields are too large."),
    502: ("Bad Gateway", "The server returned an invalid or incomplete response."),
    503: ("Service Unavailable", "No server is available to handle this request."),
    504: ("Gateway Time-out", "The server didn't respond in time."),
}


def _build(code: int, reason: str, text: str) -> bytes:
    body = f"<html><body><h1>{code} {reason}</h1>\n{text}\n</body></html>\n".encode()
    head = (
        f"HTTP/1.1 {code} {reason}\r\n"
        f"content-length: {len(body)}\r\n"
        "cache-control: no-cache\r\n"
        "content-type: text/html\r\n"
        "connection: close\r\n\r\n"
    ).encode()
    return head + body


ERROR = {code: _build(code, reason, text) for code, (reason, text) in _PAGES.items()}
