"""A generic TCP send/expect check (HAProxy tcp-check send/expect, ldirectord's simple
negotiate): send `send`, then read until the reply matches `expect` or the server closes."""
from __future__ import annotations

from virtserve.checks.base import L7_OK, L7_RSP, Result
from virtserve.checks.connect import CheckFailed, close, check_port, open_stream
from virtserve.checks.http import MAX_RESPONSE, pattern
from virtserve.engine.config.model import CheckSpec


async def probe(address: str, port: int, spec: CheckSpec) -> Result:
    try:
        reader, writer = await open_stream(address, check_port(port, spec), spec)
    except CheckFailed as failed:
        return failed.result
    try:
        if spec.send:
            writer.write(spec.send.encode("latin-1"))
        if not spec.expect:
            return Result(True, L7_OK)
        expected = pattern(spec.expect)
        seen = b""
        while len(seen) < MAX_RESPONSE:
            data = await reader.read(4096)
            if not data:
                break
            seen += data
            if expected.search(seen):
                return Result(True, L7_OK)
        shown = seen[:60].decode("latin-1", "replace").strip()
        return Result(False, L7_RSP, info=f"no match for {spec.expect!r} in {shown!r}")
    except OSError as exc:
        return Result(False, L7_RSP, info=f"connection lost: {exc.strerror or exc}")
    finally:
        close(writer)
