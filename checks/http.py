"""negotiate for service http/https (ldirectord) and HAProxy's httpchk: send `request` with
`method` and `virtualhost`, then judge the status (expected codes, or any 2xx/3xx) and match
`receive` as a regular expression against the response (head and body, as ldirectord does)."""
from __future__ import annotations

import re
import ssl
from functools import lru_cache

from virtserve.checks.base import L7_OK, L7_RSP, L7_STS, Result
from virtserve.checks.connect import CheckFailed, close, check_port, open_stream
from virtserve.engine.config.model import CheckSpec

MAX_RESPONSE = 64 * 1024  # bytes read from a check response; more is not looked at


@lru_cache(maxsize=256)
def pattern(text: str) -> re.Pattern[bytes]:
    return re.compile(text.encode(), re.DOTALL | re.MULTILINE)


def _tls() -> ssl.SSLContext:
    # As ldirectord and HAProxy's `check-ssl` without `verify`: the check asks whether the
    # service answers, not whether its certificate is trusted.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def request_bytes(address: str, port: int, spec: CheckSpec) -> bytes:
    host = spec.virtualhost or (f"[{address}]" if ":" in address else address)
    path = spec.request if spec.request.startswith("/") else "/" + spec.request
    return (f"{spec.method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: virtserve-check\r\n"
            f"Accept: */*\r\nConnection: close\r\n\r\n").encode("latin-1")


def judge(response: bytes, spec: CheckSpec) -> Result:
    """The verdict on a whole (possibly truncated) response."""
    line, _, _ = response.partition(b"\r\n")
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return Result(False, L7_RSP, info="not an HTTP response")
    code = int(parts[1])
    text = parts[2].decode("latin-1", "replace") if len(parts) > 2 else ""
    good = code in spec.status if spec.status else 200 <= code < 400
    if not good:
        return Result(False, L7_STS, code=code, info=text)
    if spec.receive and pattern(spec.receive).search(response) is None:
        return Result(False, L7_RSP, code=code, info=f"no match for {spec.receive!r}")
    return Result(True, L7_OK, code=code, info=text)


async def probe(address: str, port: int, spec: CheckSpec) -> Result:
    tls = _tls() if spec.type == "https" else None
    port = check_port(port, spec)
    try:
        reader, writer = await open_stream(address, port, spec, tls, spec.virtualhost or address)
    except CheckFailed as failed:
        return failed.result
    chunks: list[bytes] = []
    size = 0
    try:
        writer.write(request_bytes(address, port, spec))
        while size < MAX_RESPONSE:
            data = await reader.read(MAX_RESPONSE - size)
            if not data:
                break
            chunks.append(data)
            size += len(data)
    except OSError as exc:
        if not chunks:
            return Result(False, L7_RSP, info=f"connection lost: {exc.strerror or exc}")
    finally:
        close(writer)
    if not chunks:
        return Result(False, L7_RSP, info="empty response")
    return judge(b"".join(chunks), spec)
