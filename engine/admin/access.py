"""Access logs in HAProxy's httplog and tcplog formats, to stdout, a file or syslog.

    httplog: 127.0.0.1:41234 [25/Nov/2026:12:00:01.123] web app/s1 0/0/1/2/3 200 129 - - ---- 1/1/0/1/0 0/0 "GET / HTTP/1.1"
    tcplog:  127.0.0.1:41236 [25/Nov/2026:12:00:01.456] db db/s2 0/1/503 512 -- 1/1/0/1/0 0/0

Built only when logging is on; the data path tests `fe.log is not None` and nothing more.
The accept date comes from the loop time the data path already took, shifted by one wall-clock
offset read at start, so a log line costs no clock call.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from virtserve.engine.config.units import split_host_port

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    from virtserve.engine.backend import Server
    from virtserve.engine.config.model import LogSpec
    from virtserve.engine.engine import Engine

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FACILITY = {n: i for i, n in enumerate(
    ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
     "ftp", "ntp", "audit", "alert", "cron2", *(f"local{i}" for i in range(8))))}
_INFO = 6


class Sink:
    """Where lines go: write(line) for one line without its newline."""

    def write(self, line: str) -> None: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


class StreamSink(Sink):
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


class FileSink(Sink):
    """Appends; reopened on SIGUSR1, so logrotate can move the file away first."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def write(self, line: str) -> None:
        self.file.write(line + "\n")

    def reopen(self) -> None:
        old = self.file
        self.file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        old.close()

    def close(self) -> None:
        self.file.close()


class SyslogSink(Sink):
    """RFC 3164 datagrams over UDP or a UNIX datagram socket, as HAProxy's `log` lines."""

    def __init__(self, target: str, facility: str, tag: str) -> None:
        self.pri = _FACILITY[facility] * 8 + _INFO
        self.tag = f"{tag}[{os.getpid()}]"
        self.host = socket.gethostname().split(".")[0]
        if target.startswith("udp@"):
            host, port = split_host_port(target[4:])
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.addr: Any = (host, port)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.addr = target[5:]
        self.sock.setblocking(False)

    def write(self, line: str) -> None:
        t = time.localtime()
        stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        try:
            self.sock.sendto(f"<{self.pri}>{stamp} {self.host} {self.tag}: {line}".encode(), self.addr)
        except OSError:
            pass  # a syslog that is away or full loses lines, never blocks the proxy

    def close(self) -> None:
        self.sock.close()


def open_sink(spec: LogSpec) -> Sink:
    t = spec.target
    if t == "stdout":
        return StreamSink(sys.stdout)
    if t == "stderr":
        return StreamSink(sys.stderr)
    if t.startswith(("udp@", "unix@")):
        return SyslogSink(t, spec.facility, spec.tag)
    return FileSink(t)


class AccessLog:
    """One per engine, shared by its frontends (`fe.log`)."""

    def __init__(self, spec: LogSpec, engine: Engine, loop: AbstractEventLoop) -> None:
        self.spec = spec
        self.engine = engine
        self.dontlognull = spec.dontlognull
        # `format = "tcplog"` logs http frontends as connections too, as `option tcplog` does
        # there; httplog on a tcp frontend falls back to tcplog, as in HAProxy.
        self.tcplog_http = spec.format == "tcplog"
        self.sink = open_sink(spec)
        self.offset = time.time() - loop.time()  # loop time -> wall time
        self._loop = loop
        if isinstance(self.sink, FileSink):
            loop.add_signal_handler(signal.SIGUSR1, self.sink.reopen)

    def close(self) -> None:
        if isinstance(self.sink, FileSink):
            self._loop.remove_signal_handler(signal.SIGUSR1)
        self.sink.close()

    def _date(self, loop_time: float) -> str:
        wall = loop_time + self.offset
        t = time.localtime(wall)
        return (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:"
                f"{t.tm_sec:02d}.{int(wall * 1000) % 1000:03d}")

    def _conns(self, fe: Any, s: Server | None, retries: int) -> str:
        act = sum(f.current for f in self.engine.frontends.values())
        be = sum(x.active for x in fe.backend.servers)
        return f"{act}/{fe.current}/{be}/{s.active if s is not None else 0}/{retries}"

    def http(self, client: Any, ex: Any, status: int, term: str, now: float) -> None:
        fe = client.fe
        ctx = client.ctx
        if ex is None:
            if self.dontlognull and term[1] == "R" and status == 408:
                return  # a connection that sent nothing complete: option dontlognull
            begin = client._t_begin or now
            date, srv, timers = self._date(begin), f"{fe.backend.name}/<NOSRV>", f"-1/-1/-1/-1/{_ms(now - begin)}"
            line, n_out, s, retries = "<BADREQ>", 0, None, 0
        else:
            s = ex.server or ex.last_server
            # A redirect answered by the proxy names the frontend (HAProxy: "fe/<NOSRV>").
            be = fe.name if ex.reply is not None else (ex.backend or fe.backend).name
            srv = f"{be}/{s.name if s is not None else '<NOSRV>'}"
            tr = _ms(ex.t_head - ex.t_begin)
            tc = _ms(ex.t_conn) if s is not None else -1
            rt = _ms(ex.t_resp - ex.t_head - ex.t_conn) if ex.t_resp else -1
            timers = f"{tr}/0/{tc}/{rt}/{_ms(now - ex.t_begin)}"
            date = self._date(ex.t_begin)
            head = ex.head
            line = head[:head.find(b"\r\n")].decode("latin-1").replace('"', "%22")
            n_out, retries = ex.bytes_out, ex.tries
        if self.tcplog_http:
            tc = timers.split("/")[2]
            self.sink.write(
                f"{ctx.client_ip}:{ctx.client_port} [{date}] {fe.name} {srv} 0/{tc}/{timers.rsplit('/', 1)[1]} "
                f"{n_out} {term} {self._conns(fe, s, retries)} 0/0")
            return
        self.sink.write(
            f"{ctx.client_ip}:{ctx.client_port} [{date}] {fe.name} {srv} {timers} "
            f"{status if status else -1} {n_out} - - {term}-- {self._conns(fe, s, retries)} 0/0 \"{line}\"")

    def tcp(self, client: Any, s: Server | None, term: str, now: float) -> None:
        fe = client.fe
        ctx = client.ctx
        tc = _ms(client.t_connect - client.t_accept) if client.t_connect else -1
        srv = f"{client.backend.name}/{s.name if s is not None else '<NOSRV>'}"
        self.sink.write(
            f"{ctx.client_ip}:{ctx.client_port} [{self._date(client.t_accept)}] {fe.name} {srv} "
            f"0/{tc}/{_ms(now - client.t_accept)} {client.n_out} {term} "
            f"{self._conns(fe, s, client.tries)} 0/0")


def _ms(seconds: float) -> int:
    return int(seconds * 1000 + 0.5)
