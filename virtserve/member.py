"""One worker of a group (`virtserve run --workers N`): serves the listeners (SO_REUSEPORT) and
runs no checks of its own. Its parent runs them once and sends each verdict over the worker's
link; the worker applies them as its own checks would (verdicts.py). The runtime socket is the
parent's; the stats page is the first worker's (two processes cannot bind one port without
SO_REUSEPORT, and one page whose admin form reaches every worker beats N pages at random)."""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import signal
import socket
from typing import Any

from virtserve import verdicts
from virtserve.channel import Channel, Message, read_first
from virtserve.engine.admin.runtime import Runtime
from virtserve.engine.config import load
from virtserve.engine.config.model import Config, ConfigError
from virtserve.engine.engine import Engine
from virtserve.engine.health import Health

log = logging.getLogger("virtserve.engine")

HELLO_TIMEOUT = 60.0  # the parent starts its checks (and programs IPVS) before it says hello


def for_member(config: Config, index: int) -> Config:
    """What worker `index` serves of `config`: no runtime socket, the stats page on worker 0 only."""
    stats = config.stats
    if stats is None:
        return config
    return dataclasses.replace(config, stats=dataclasses.replace(
        stats, socket="", bind=stats.bind if index == 0 else None))


class KernelElsewhere:
    """The engine's Director in a worker: the parent programs the kernel; this only says which
    frontends it took (those get no userspace listener here)."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def decide(self, config: object) -> set[str]:
        return set(self.names)

    def apply(self, config: object, backends: object) -> None:
        pass  # the parent's Director programs the table

    def close(self) -> None:
        pass


def _told_by_the_parent(record: logging.LogRecord) -> bool:
    """A worker's filter: verdicts and operator changes are logged once, by the parent that
    decides them, not once more per worker applying them."""
    return not (record.funcName in ("set_status", "set_admin") and record.pathname.endswith("backend.py"))


class Member:
    """The worker's end of its link: verdicts in, runtime commands in, answers out."""

    def __init__(self, engine: Engine, level: str, index: int = 0, workers: int = 1) -> None:
        self.engine = engine
        self.runtime = MemberRuntime(engine, level, index, workers)
        self.channel: Channel | None = None

    def on_message(self, msg: Message) -> None:
        kind = msg.get("t")
        if kind == "state":
            now = asyncio.get_running_loop().time()
            for item in msg["items"]:
                verdicts.apply(self.engine.backends, item, now)
        elif kind == "cmd":
            text = self.runtime.execute(msg["line"])
            if msg.get("id") is not None:
                self.send({"t": "answer", "id": msg["id"], "text": text})

    def send(self, msg: Message) -> None:
        if self.channel is not None:
            self.channel.send(msg)


class MemberRuntime(Runtime):
    """`show info` says which worker of how many answers (HAProxy's Nbproc and Process_num)."""

    def __init__(self, engine: Engine, level: str, index: int, workers: int) -> None:
        super().__init__(engine, level)
        self.index, self.workers = index, workers

    def show_info(self, args: list[str]) -> str:
        return super().show_info(args).replace(
            "\nNbproc: 1\nProcess_num: 1\n", f"\nNbproc: {self.workers}\nProcess_num: {self.index + 1}\n")


class RelayRuntime(Runtime):
    """The stats page's runtime in the first worker: a change made here is sent on to the others."""

    def __init__(self, engine: Engine, level: str, member: Member) -> None:
        super().__init__(engine, level)
        self.member = member

    def set_server(self, args: list[str]) -> str:
        answer = super().set_server(args)  # a refused change raises and goes nowhere
        self.member.send({"t": "fanout", "line": "set server " + " ".join(args)})
        return answer


def serve_member(path: str, index: int, link: socket.socket) -> int:
    """The worker's main: wait for the parent's hello, then serve until told to stop."""
    hello = read_first(link, HELLO_TIMEOUT)
    if hello is None:
        return 0  # the parent is stopping before we started
    import uvloop

    return uvloop.run(_serve(path, index, link, set(hello["in_kernel"]), hello["workers"]))


async def _serve(path: str, index: int, link: socket.socket, in_kernel: set[str], workers: int) -> int:
    from virtserve.api import Balancer

    logging.getLogger("virtserve.engine").addFilter(_told_by_the_parent)
    config = load(path)
    lb = Balancer(for_member(config, index), reuse_port=True)
    engine = lb.engine
    engine.make_health = functools.partial(Health, local_checks=False)
    engine.make_director = lambda *args: KernelElsewhere(in_kernel)  # type: ignore[assignment,return-value]
    await lb.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    member = Member(engine, config.stats.socket_level if config.stats is not None else "admin", index, workers)
    # The parent gone (killed): nobody checks the servers any more, so stop serving too.
    member.channel = await Channel.open(link, member.on_message, on_lost=stop.set)
    stats = engine.admin.stats if engine.admin is not None else None
    if stats is not None:
        stats.runtime = RelayRuntime(engine, "admin", member)
    member.send({"t": "ready"})
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloading = asyncio.Lock()

    async def reload() -> None:
        async with reloading:
            try:
                await lb.reload(for_member(load(path), index))
            except (ConfigError, OSError, RuntimeError) as exc:
                log.error("worker %d: reload rejected, the running config keeps serving:\n%s", index + 1, exc)
            member.send({"t": "ready"})  # the verdicts of the servers it has now

    loop.add_signal_handler(signal.SIGHUP, lambda: _spawn(engine, reload()))
    await stop.wait()
    log.info("worker %d stopping: draining for up to %.1fs", index + 1, lb.config.grace)
    await lb.stop(grace=lb.config.grace)
    return 0


def _spawn(engine: Engine, coro: Any) -> None:
    assert engine.state is not None
    engine.state.spawn(coro)
