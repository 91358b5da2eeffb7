"""Access logs in HAProxy's httplog and tcplog formats: to a file (reopened on SIGUSR1), to
syslog over UDP and UNIX datagrams; option dontlognull."""
import asyncio
import os
import re
import signal
import socket

import aiohttp
import pytest
from admin_helpers import admin_topology

pytestmark = pytest.mark.timeout(30)

DATE = r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d\.\d{3}"
# %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %{+Q}r
HTTPLOG = re.compile(
    rf'^(?P<client>[\d.]+):(?P<port>\d+) \[(?P<date>{DATE})\] (?P<fe>\S+) (?P<be>\S+)/(?P<srv>\S+) '
    r"(?P<TR>-?\d+)/(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/(?P<Tr>-?\d+)/(?P<Ta>\d+) (?P<status>-?\d+) (?P<bytes>\d+) "
    r"- - (?P<term>[-A-Za-z]{4}) (?P<ac>\d+)/(?P<fc>\d+)/(?P<bc>\d+)/(?P<sc>\d+)/(?P<rc>\d+) "
    r'(?P<sq>\d+)/(?P<bq>\d+) "(?P<request>[^"]*)"$')
# %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq
TCPLOG = re.compile(
    rf"^(?P<client>[\d.]+):(?P<port>\d+) \[(?P<date>{DATE})\] (?P<fe>\S+) (?P<be>\S+)/(?P<srv>\S+) "
    r"(?P<Tw>-?\d+)/(?P<Tc>-?\d+)/(?P<Tt>\d+) (?P<bytes>\d+) (?P<term>[-A-Za-z]{2}) "
    r"(?P<ac>\d+)/(?P<fc>\d+)/(?P<bc>\d+)/(?P<sc>\d+)/(?P<rc>\d+) (?P<sq>\d+)/(?P<bq>\d+)$")


async def _lines(path, n):
    async with asyncio.timeout(5):
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= n:
                return lines
            await asyncio.sleep(0.02)


async def test_httplog_to_file_and_reopen_on_sigusr1(backends, balancer, tmp_path):
    web1, web2 = await backends("web1", "web2")
    log = tmp_path / "access.log"
    lb = await balancer(admin_topology([web1.port, web2.port], log={"target": str(log)}))
    async with aiohttp.ClientSession() as s:
        assert (await s.get(lb.url + "/hello?x=1")).status == 200
        assert (await s.get(lb.url + "/status/404")).status == 404
    lines = await _lines(log, 2)
    first, second = (HTTPLOG.match(line) for line in lines)
    assert first and second, lines
    assert first["client"] == "127.0.0.1" and first["fe"] == "vs" and first["be"] == "vs"
    assert first["srv"] == "s1" and first["status"] == "200" and first["term"] == "----"
    assert first["request"] == "GET /hello?x=1 HTTP/1.1" and int(first["bytes"]) > len("web1")
    assert int(first["Ta"]) >= int(first["Tr"]) >= 0 and first["Tw"] == "0"
    assert second["srv"] == "s2" and second["status"] == "404" and second["sc"] == "1"
    os.rename(log, tmp_path / "access.log.1")  # logrotate moves it, then signals
    os.kill(os.getpid(), signal.SIGUSR1)
    await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as s:
        assert (await s.get(lb.url + "/after")).status == 200
    (line,) = await _lines(log, 1)
    assert HTTPLOG.match(line)["request"] == "GET /after HTTP/1.1"
    assert len((tmp_path / "access.log.1").read_text().splitlines()) == 2


async def test_httplog_errors_and_nosrv(backends, balancer, tmp_path, raw_server):
    async def garbage(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP\r\n\r\n")
        await writer.drain()

    bad = await raw_server(garbage)
    log = tmp_path / "access.log"
    lb = await balancer(admin_topology([bad.port], log={"target": str(log)}))
    async with aiohttp.ClientSession() as s:
        assert (await s.get(lb.url + "/x")).status == 502
    reader, writer = await asyncio.open_connection(*lb.address)
    writer.write(b"BROKEN\r\n\r\n")
    await reader.read()
    writer.close()
    lines = await _lines(log, 2)
    m502, m400 = (HTTPLOG.match(line) for line in lines)
    assert m502["status"] == "502" and m502["term"] == "SH--" and m502["srv"] == "s1"
    assert m400["status"] == "400" and m400["srv"] == "<NOSRV>" and m400["request"] == "<BADREQ>"
    assert m400["term"].startswith("CR")


async def test_tcplog_to_syslog_udp(backends, balancer):
    (web1,) = await backends("web1")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    port = sink.getsockname()[1]
    try:
        lb = await balancer(admin_topology([web1.port], mode="tcp", log={"target": f"udp@127.0.0.1:{port}",
                                                                       "facility": "local3"}))
        async with aiohttp.ClientSession() as s:
            assert await (await s.get(lb.url)).text() == "web1"
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            data = await loop.sock_recv(sink, 4096)
    finally:
        sink.close()
    text = data.decode()
    head = re.match(r"^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ virtserve\[\d+\]: (.*)$", text)
    assert head and head[1] == str(19 * 8 + 6)  # local3.info
    m = TCPLOG.match(head[2])
    assert m, head[2]
    assert m["fe"] == "vs" and m["srv"] == "s1" and m["term"] == "--" and int(m["bytes"]) > 0
    assert int(m["Tt"]) >= int(m["Tc"]) >= 0


async def test_dontlognull_and_unix_syslog(backends, balancer, tmp_path):
    (web1,) = await backends("web1")
    path = str(tmp_path / "log.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    sink.setblocking(False)
    try:
        lb = await balancer(admin_topology([web1.port], mode="tcp",
                                           log={"target": f"unix@{path}", "dontlognull": True}))
        _, writer = await asyncio.open_connection(*lb.address)  # connects, sends nothing
        writer.close()
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as s:
            assert await (await s.get(lb.url)).text() == "web1"
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            data = await loop.sock_recv(sink, 4096)
        await asyncio.sleep(0.1)
        with pytest.raises(BlockingIOError):
            sink.recv(4096)  # the null connection left no line
    finally:
        sink.close()
    m = TCPLOG.match(data.decode().split(": ", 1)[1])
    assert m and int(m["bytes"]) > 0


async def test_tcplog_format_on_an_http_frontend(backends, balancer, tmp_path):
    (web1,) = await backends("web1")
    log = tmp_path / "access.log"
    lb = await balancer(admin_topology([web1.port], log={"target": str(log), "format": "tcplog"}))
    async with aiohttp.ClientSession() as s:
        assert (await s.get(lb.url + "/hello")).status == 200
    (line,) = await _lines(log, 1)
    m = TCPLOG.match(line)
    assert m, line
    assert m["fe"] == "vs" and m["srv"] == "s1" and m["term"] == "--" and int(m["bytes"]) > len("web1")
