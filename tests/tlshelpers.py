"""TLS and PROXY protocol test helpers: certificates, TLS backends, external peers (HAProxy,
nginx, openssl, curl) run as real processes on loopback."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from virtserve.certs import LocalCA


def need(program: str) -> str:
    """The program's path, or skip the test saying which program is missing."""
    path = shutil.which(program) or next(
        (p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}") if os.access(p, os.X_OK)), None)
    if path is None:
        pytest.skip(f"{program} is not installed (Debian package: see .ci/run)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_context(ca: LocalCA, cert: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.path))
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # as browsers do: the listener must pick http/1.1
    if cert is not None:
        ctx.load_cert_chain(str(cert))
    return ctx


async def handshake(port: int, ctx: ssl.SSLContext, server_name: str | None,
                    host: str = "127.0.0.1") -> dict[str, Any]:
    """One TLS handshake with the listener: what was negotiated and the certificate served."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_name)
    try:
        sslobj = writer.get_extra_info("ssl_object")
        from cryptography import x509

        cert = x509.load_der_x509_certificate(sslobj.getpeercert(binary_form=True))
        return {"alpn": sslobj.selected_alpn_protocol(), "version": sslobj.version(),
                "cn": cert.subject.rfc4514_string(), "serial": cert.serial_number}
    finally:
        writer.close()


class TlsBackend:
    """An aiohttp HTTPS server (certificate from the CA) that reports the connections it saw."""

    def __init__(self, cert: Path) -> None:
        self.cert = cert
        self.port = 0
        self.peers: list[tuple[str, int]] = []
        self.sni: list[str | None] = []  # the server name of each handshake
        self._runner: web.AppRunner | None = None

    async def start(self) -> TlsBackend:
        async def hello(request: web.Request) -> web.Response:
            self.peers.append(request.transport.get_extra_info("peername")[:2])  # type: ignore[union-attr]
            return web.json_response({"sni": self.sni[-1] if self.sni else None,
                                      "headers": dict(request.headers)})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", hello)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert))
        ctx.sni_callback = lambda _obj, name, _ctx: self.sni.append(name)  # type: ignore[func-returns-value]
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Peer:
    """An external program (HAProxy, nginx) in its own process group, stopped at teardown."""

    def __init__(self, argv: list[str], tmp: Path, ports: list[int]) -> None:
        self.argv, self.tmp, self.ports = argv, tmp, ports
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> Peer:
        log = open(self.tmp / "peer.log", "wb")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        for port in self.ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.argv[0]} exited: {(self.tmp / 'peer.log').read_text()}")
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.argv[0]} did not listen on {port}") from None
                    await asyncio.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def haproxy(config: str) -> Peer:
    exe = need("haproxy")
    tmp = Path(tempfile.mkdtemp(prefix="vs-haproxy-"))
    (tmp / "haproxy.cfg").write_text(config)
    ports = [int(line.split(":")[-1].split()[0]) for line in config.splitlines()
             if line.strip().startswith("bind ")]
    return Peer([exe, "-db", "-f", str(tmp / "haproxy.cfg")], tmp, ports)


def nginx(servers: str) -> Peer:
    """nginx with the given server blocks (nginx-light: http only)."""
    exe = need("nginx")
    tmp = Path(tempfile.mkdtemp(prefix="vs-nginx-"))
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(f"""{user}daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;
    uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
{servers}
}}
""")
    ports = [int(line.split(":")[-1].split()[0].rstrip(";")) for line in servers.splitlines()
             if line.strip().startswith("listen ")]
    return Peer([exe, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(tmp / "nginx.conf")], tmp, ports)


async def run(*argv: str, timeout: float = 15, stdin: bytes = b"") -> tuple[int, str]:
    """Run a client program (curl, openssl) to completion; (exit status, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate(stdin)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")
