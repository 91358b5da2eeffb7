"""service smtp (ldirectord): the 220 banner, then EHLO answered with 250, then QUIT."""
from __future__ import annotations

import asyncio
import socket

from virtserve.checks.base import L7_OK, L7_RSP, L7_STS, Result
from virtserve.checks.connect import CheckFailed, close, check_port, open_stream
from virtserve.engine.config.model import CheckSpec


async def _reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One SMTP reply (multi-line `250-...` continued until `250 ...`): code and last text."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("closed by the server")
        if len(line) < 4 or not line[:3].isdigit():
            return -1, line.decode("latin-1", "replace").strip()
        if line[3:4] != b"-":
            return int(line[:3]), line[4:].decode("latin-1", "replace").strip()


async def probe(address: str, port: int, spec: CheckSpec) -> Result:
    try:
        reader, writer = await open_stream(address, check_port(port, spec), spec)
    except CheckFailed as failed:
        return failed.result
    try:
        code, text = await _reply(reader)
        if code != 220:
            return Result(False, L7_STS if code > 0 else L7_RSP, code=code if code > 0 else None, info=text)
        writer.write(f"EHLO {spec.virtualhost or socket.gethostname()}\r\n".encode())
        code, text = await _reply(reader)
        if code != 250:
            return Result(False, L7_STS if code > 0 else L7_RSP, code=code if code > 0 else None, info=text)
        writer.write(b"QUIT\r\n")
        return Result(True, L7_OK, code=250, info=text)
    except OSError as exc:
        return Result(False, L7_RSP, info=f"connection lost: {exc.strerror or exc}")
    finally:
        close(writer)
