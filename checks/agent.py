"""HAProxy agent-check: connect to the agent (usually its own `port`), read one line of words:
`up`/`ready`, `down`/`failed`/`stopped`, `drain`, `maint`, and `N%` (the weight as a percent of
the configured one), each optional, separated by spaces or commas; text after `#` is a comment."""
from __future__ import annotations

from virtserve.checks.base import AGENT_DOWN, AGENT_DRAIN, AGENT_MAINT, AGENT_RSP, AGENT_UP, Result
from virtserve.checks.connect import CheckFailed, close, check_port, open_stream
from virtserve.engine.config.model import CheckSpec

_UP = {"up", "ready"}
_DOWN = {"down", "failed", "stopped"}


def parse(line: str) -> Result:
    words = line.split("#", 1)[0].replace(",", " ").lower().split()
    if not words:
        return Result(False, AGENT_RSP, info="empty reply")
    ok, reason, drain, pct = True, AGENT_UP, False, None
    for word in words:
        if word.endswith("%") and word[:-1].isdigit():
            pct = int(word[:-1])
        elif word in _UP:
            ok, reason = True, AGENT_UP
        elif word in _DOWN:
            ok, reason = False, AGENT_DOWN
        elif word == "maint":
            ok, reason = False, AGENT_MAINT
        elif word == "drain":
            drain, reason = True, AGENT_DRAIN
        else:
            return Result(False, AGENT_RSP, info=f"unknown word {word!r}")
    return Result(ok, reason, info=line.strip()[:100], weight_pct=pct, drain=drain)


async def probe(address: str, port: int, spec: CheckSpec) -> Result:
    try:
        reader, writer = await open_stream(address, check_port(port, spec), spec)
    except CheckFailed as failed:
        return failed.result
    try:
        if spec.send:
            writer.write(spec.send.encode("latin-1"))
        line = await reader.readline()
    except OSError as exc:
        return Result(False, AGENT_RSP, info=f"connection lost: {exc.strerror or exc}")
    finally:
        close(writer)
    return parse(line.decode("latin-1", "replace"))
