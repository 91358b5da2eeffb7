"""ldirectord's email alerts: `emailalert` (to whom), `emailalertfreq` (repeat while a server
stays down) and `emailalertstatus` (in which states of the engine to send: starting, running,
stopping, all or none), mailed through a configured SMTP relay.

smtplib runs in a worker thread, bounded by a timeout: a slow relay never blocks the event loop,
and mails are sent one at a time per backend, in order."""
from __future__ import annotations

import asyncio
import logging
import smtplib
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from virtserve.engine.config.model import AlertSpec

if TYPE_CHECKING:
    from virtserve.checks.base import Result
    from virtserve.engine.backend import Backend, Server
    from virtserve.engine.state import EngineState

log = logging.getLogger("virtserve.checks")

SMTP_TIMEOUT = 10.0  # seconds for one mail to reach the relay
QUEUE_MAX = 100  # mails waiting for the relay; beyond it, new ones are dropped (and logged)


def send_mail(spec: AlertSpec, subject: str, body: str) -> None:
    """Blocking: one mail to the relay (runs in a worker thread)."""
    msg = EmailMessage()
    msg["From"] = spec.sender
    msg["To"] = ", ".join(spec.to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=spec.sender.rpartition("@")[2] or None)
    msg.set_content(body)
    with smtplib.SMTP(spec.relay, spec.relay_port, timeout=SMTP_TIMEOUT) as smtp:
        smtp.send_message(msg)


class Alerter:
    """A state-change listener for one backend with an AlertSpec."""

    def __init__(self, state: EngineState, backend: Backend, spec: AlertSpec) -> None:
        self.state = state
        self.backend = backend
        self.spec = spec
        self.phase = "starting"  # then "running" (set by the engine), "stopping"
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_MAX)
        self.sent = 0
        self.down_since: dict[str, float] = {}  # server name -> wall time it went down
        self.last_mail: dict[str, float] = {}  # server name -> wall time of its last mail
        state.spawn(self._sender())
        if spec.freq > 0:
            state.spawn(self._repeat())

    def wanted(self) -> bool:
        status = self.spec.status
        return "none" not in status and ("all" in status or self.phase in status)

    def __call__(self, backend: Backend, server: Server, up: bool, result: Result | None) -> None:
        if up:
            self.down_since.pop(server.name, None)
        else:
            self.down_since[server.name] = self.last_mail[server.name] = time.time()
        if self.wanted():
            self.mail(server, up)

    def mail(self, server: Server, up: bool, again: bool = False) -> None:
        state = "UP" if up else "DOWN"
        subject = f"[virtserve] {self.backend.name}/{server.name} ({server.address}:{server.port}) is {state}"
        if again:
            subject += " (still)"
        body = (f"{self.backend.status_line(server, server.last_check)}\n\n"
                f"Engine state: {self.phase}\n")
        if not up and server.name in self.down_since:
            body += f"Down since: {formatdate(self.down_since[server.name], localtime=True)}\n"
        try:
            self.queue.put_nowait((subject, body))
        except asyncio.QueueFull:
            log.error("alert for %s/%s dropped: %d mails already wait for the relay",
                      self.backend.name, server.name, QUEUE_MAX)

    async def _sender(self) -> None:
        loop = self.state.loop
        while True:
            subject, body = await self.queue.get()
            try:
                await loop.run_in_executor(None, send_mail, self.spec, subject, body)
                self.sent += 1
            except (OSError, smtplib.SMTPException) as exc:
                log.error("alert mail to %s via %s:%d failed: %s", ", ".join(self.spec.to),
                          self.spec.relay, self.spec.relay_port, exc)

    async def _repeat(self) -> None:
        """emailalertfreq: mail again about each server still down, every freq seconds."""
        freq = self.spec.freq
        while True:
            await asyncio.sleep(min(freq, 1.0) if freq > 1.0 else freq)
            now = time.time()
            by_name = self.backend.by_name
            for name in list(self.down_since):
                server = by_name.get(name)
                if server is None or server.healthy:
                    continue
                if now - self.last_mail.get(name, 0.0) >= freq and self.wanted():
                    self.last_mail[name] = now
                    self.mail(server, False, again=True)
