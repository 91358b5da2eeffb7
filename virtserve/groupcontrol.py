"""The parent of a worker group (`virtserve run --workers N`): runs the health checks once
(checkplane.py) and tells every worker each verdict; serves the runtime API socket for the group.

The runtime socket, as HAProxy's master CLI: a change (`set server B/S state drain`, `set weight`,
`enable|disable server`, `add|del server`, `set maxconn ...`) reaches every worker and the
parent's own copy of the backends (which the IPVS table follows); the answer is the workers' one
answer, or each worker's when they differ. A read (`show ...`, `get weight`, `help`) is answered
by the first worker; `@N <command>` addresses worker N (1-based), `@!PID` the worker with that pid.
The stats page is served by the first worker; its admin form's changes are sent here and on to
the others, so they too reach every worker.

Reload (SIGHUP to the parent, or the file changing with autoreload): the parent reads the file;
if it does not load, nothing changes anywhere. Otherwise the parent's checks move to the new
backends (servers that stay keep their verdict) and each worker is sent SIGHUP and reloads the
same file; once reloaded, a worker asks for and gets every server's current verdict.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket

from virtserve import verdicts
from virtserve.channel import Channel, Message
from virtserve.checkplane import CheckPlane
from virtserve.engine.admin.runtime import Runtime
from virtserve.engine.admin.socket import RuntimeSocket
from virtserve.engine.backend import Backend, Server
from virtserve.engine.config import load
from virtserve.engine.config.model import Config, ConfigError

log = logging.getLogger("virtserve.engine")

READS = ("show", "get", "help")  # first words of the commands that change nothing
ANSWER_TIMEOUT = 10.0


class GroupControl:
    def __init__(self, path: str, config: Config, watch: bool = False) -> None:
        self.path = path
        self.config = config
        self.watch = watch
        self.plane = CheckPlane(config, self._publish)
        self.runtime: Runtime | None = None
        self.channels: dict[int, Channel] = {}  # worker index -> its link
        self.pids: dict[int, int] = {}  # worker index -> pid
        self.ready: set[int] = set()  # workers that read their link (and got the snapshot)
        self.socket: RuntimeSocket | None = None
        self._pending: dict[int, asyncio.Future[str]] = {}
        self._ids = itertools.count(1)
        self._reloading = asyncio.Lock()

    async def start(self, links: dict[int, socket.socket], pids: dict[int, int]) -> None:
        self.pids = pids
        in_kernel = self.plane.start()
        stats = self.config.stats
        self.runtime = Runtime(self.plane, stats.socket_level if stats is not None else "admin")  # type: ignore[arg-type]
        for index, sock in links.items():
            channel = self.channels[index] = await Channel.open(
                sock, lambda msg, i=index: self._on_message(i, msg))
            channel.send({"t": "hello", "in_kernel": sorted(in_kernel), "workers": len(links)})
        if stats is not None and stats.socket:
            self.socket = GroupSocket(self, stats.socket)
            await self.socket.start()
        if self.watch:
            from virtserve.cli import _watch

            assert self.plane.state is not None
            self.plane.state.spawn(_watch(self.path, lambda why: self.reload()))

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
            self.socket = None
        self.plane.close()
        for channel in self.channels.values():
            channel.close()

    # --- verdicts ----------------------------------------------------------------------------

    def _publish(self, backend: Backend, server: Server) -> None:
        message = {"t": "state", "items": [verdicts.encode(backend, server)]}
        for index in self.ready:
            self.channels[index].send(message)

    def _on_message(self, index: int, msg: Message) -> None:
        kind = msg.get("t")
        if kind == "ready":  # started or reloaded: every verdict, then each change as it comes
            self.ready.add(index)
            items = [verdicts.encode(b, s) for b, s in self.plane.snapshot()]
            self.channels[index].send({"t": "state", "items": items})
        elif kind == "answer":
            future = self._pending.pop(msg["id"], None)
            if future is not None and not future.done():
                future.set_result(msg["text"])
        elif kind == "fanout":  # a change made on a worker's stats page: to the others
            assert self.runtime is not None
            self.runtime.execute(msg["line"])
            for other in self.ready - {index}:
                self.channels[other].send({"t": "cmd", "line": msg["line"]})

    # --- reload ------------------------------------------------------------------------------

    async def reload(self) -> None:
        if self.plane.state is None:  # still starting: the workers read the file as it is now
            return
        async with self._reloading:
            log.info("reloading %s for %d workers", self.path, len(self.channels))
            try:
                config = load(self.path)
                self.plane.reload(config)
            except (ConfigError, OSError, RuntimeError) as exc:
                log.error("reload rejected, the running config keeps serving:\n%s", exc)
                return
            self.config = config
            for pid in self.pids.values():
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass

    # --- runtime API -------------------------------------------------------------------------

    async def ask(self, index: int, line: str) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        ident = next(self._ids)
        self._pending[ident] = future
        self.channels[index].send({"t": "cmd", "id": ident, "line": line})
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                return await future
        except TimeoutError:
            return f"Worker {index + 1} did not answer.\n\n"
        finally:
            self._pending.pop(ident, None)

    async def command(self, line: str) -> str:
        """The answer to one line from the runtime socket (commands separated by ';')."""
        out = []
        for command in line.split(";"):
            words = command.split()
            if words:
                out.append(await self._one(words))
        return "".join(out)

    async def _one(self, words: list[str]) -> str:
        assert self.runtime is not None
        if not self.ready:
            return "No worker is ready yet.\n\n"
        if words[0].startswith("@"):
            index = self._target(words[0])
            if index is None:
                return f"No such worker '{words[0]}': use @1..@{len(self.channels)} or @!PID.\n\n"
            return await self.ask(index, " ".join(words[1:])) if words[1:] else "\n"
        line = " ".join(words)
        if words[0] in READS:
            return await self.ask(min(self.ready), line)
        mine = self.runtime.execute(line)  # the parent's copy; its level check speaks for all
        if mine.startswith("Permission denied"):
            return mine
        workers = sorted(self.ready)
        answers = await asyncio.gather(*(self.ask(i, line) for i in workers))
        if len(set(answers)) == 1:
            return answers[0]
        return "".join(f"[worker {i + 1} pid {self.pids.get(i)}] {a}" for i, a in zip(workers, answers))

    def _target(self, word: str) -> int | None:
        if word.startswith("@!"):
            pid = word[2:]
            return next((i for i, p in self.pids.items() if str(p) == pid and i in self.ready), None)
        number = word[1:]
        index = int(number) - 1 if number.isdigit() else -1
        return index if index in self.ready else None


class GroupSocket(RuntimeSocket):
    """The stats socket served by the parent: each line goes through GroupControl.command."""

    def __init__(self, control: GroupControl, path: str) -> None:
        assert control.runtime is not None
        super().__init__(control.runtime, path)
        self.control = control

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10.0)
            answer = await self.control.command(line.decode("utf-8", "replace").strip())
            writer.write(answer.encode())
            await writer.drain()
        except (ConnectionError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()
