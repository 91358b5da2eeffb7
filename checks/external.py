"""checktype external (ldirectord checkcommand, HAProxy external-check): run a command with the
server's address and port appended; exit 0 means alive. Killed when the timeout passes."""
from __future__ import annotations

import asyncio
import os

from virtserve.checks.base import EXT_ERR, EXT_OK, EXT_TOUT, Result
from virtserve.checks.connect import check_port
from virtserve.engine.config.model import CheckSpec


async def probe(address: str, port: int, spec: CheckSpec) -> Result:
    port = check_port(port, spec)
    env = {**os.environ, "REAL_ADDR": address, "REAL_PORT": str(port)}
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.command, address, str(port), env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        return Result(False, EXT_ERR, info=f"cannot run {spec.command[0]!r}: {exc.strerror or exc}")
    try:
        async with asyncio.timeout(spec.connect_timeout):
            _, err = await proc.communicate()
    except TimeoutError:
        return Result(False, EXT_TOUT)
    finally:
        if proc.returncode is None:  # timed out, or the check was cancelled: no orphans
            proc.kill()
            await proc.wait()
    if proc.returncode == 0:
        return Result(True, EXT_OK, code=0)
    info = err.decode(errors="replace").strip().splitlines()[-1][:200] if err.strip() else ""
    return Result(False, EXT_ERR, code=proc.returncode, info=info)
