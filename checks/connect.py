"""checktype connect: a TCP connection opens within the timeout, then is closed."""
from __future__ import annotations

import asyncio
import errno
import os
import ssl

from virtserve.checks.base import L4_CON, L4_OK, L4_TOUT, L6_RSP, Result
from virtserve.engine.config.model import CheckSpec

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class CheckFailed(Exception):
    """A probe step failed; carries the Result to report."""

    def __init__(self, result: Result) -> None:
        self.result = result


async def open_stream(address: str, port: int, spec: CheckSpec, tls: ssl.SSLContext | None = None,
                      server_hostname: str | None = None) -> Stream:
    """Connect within the connect timeout; failures become the Layer4 (or Layer6) results."""
    try:
        async with asyncio.timeout(spec.connect_timeout):
            return await asyncio.open_connection(address, port, ssl=tls,
                                                 server_hostname=server_hostname if tls else None)
    except TimeoutError:
        raise CheckFailed(Result(False, L4_TOUT)) from None
    except ssl.SSLError as exc:
        raise CheckFailed(Result(False, L6_RSP, info=exc.reason or str(exc))) from None
    except OSError as exc:
        info = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.ECONNREFUSED:
            info = "Connection refused"
        raise CheckFailed(Result(False, L4_CON, info=info)) from None


def close(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()  # no lingering FIN/TIME_WAIT handshake for a probe


def check_port(port: int, spec: CheckSpec) -> int:
    return spec.port or port


async def probe(address: str, port: int, spec: CheckSpec) -> Result:
    try:
        _, writer = await open_stream(address, check_port(port, spec), spec)
    except CheckFailed as failed:
        return failed.result
    close(writer)
    return Result(True, L4_OK)
