"""`virtserve run --workers N`: several processes serve one listener (SO_REUSEPORT), and the
parent forwards a stop to all of them."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import pytest

from virtserve.benchmarks import proc

pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ESTABLISHED, LISTEN = "01", "0A"


def _sockets_on(pid: int, port: int, state: str = ESTABLISHED) -> int:
    """How many TCP sockets in ``state`` with local port ``port`` process ``pid`` holds."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, inode = fields[1], fields[9]
            if int(local.split(":")[1], 16) == port and fields[3] == state:
                inodes.add(inode)
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


async def _run(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "virtserve", "run", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def _get(port: int) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    return head, reader, writer


async def _wait_listening(port: int, parent: asyncio.subprocess.Process) -> None:
    while True:
        assert parent.returncode is None, (await parent.stdout.read()).decode()
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        w.close()
        return


async def test_two_workers_both_serve_and_stop_together(tmp_path, backends):
    b1, b2 = await backends("b1", "b2")
    port = _free_port()
    cfg = tmp_path / "lb.toml"
    cfg.write_text(f'[listen.web]\nbind = "127.0.0.1:{port}"\nservers = [ '
                   f'{{ address = "127.0.0.1:{b1.port}" }}, {{ address = "127.0.0.1:{b2.port}" }} ]\n')
    parent = await _run(str(cfg), "--workers", "2")
    try:
        async with asyncio.timeout(20):
            await _wait_listening(port, parent)
            workers = proc.descendants(parent.pid)
            # Both must listen before the connections: the second may bind a moment later.
            while len(workers) < 2 or not all(_sockets_on(p, port, LISTEN) for p in workers):
                await asyncio.sleep(0.05)
                workers = proc.descendants(parent.pid)
            assert len(workers) == 2, workers
            # Each connection lands on one worker (kernel hash of the 4-tuple); with 24 held
            # open, a worker that never accepts would show 0 of them.
            conns = [await _get(port) for _ in range(24)]
            assert all(head.startswith(b"HTTP/1.1 200") for head, _, _ in conns)
            held = {pid: _sockets_on(pid, port) for pid in workers}
            assert sum(held.values()) == 24, held
            assert all(n > 0 for n in held.values()), held
            for _, _, writer in conns:
                writer.close()

            parent.send_signal(signal.SIGTERM)
            assert await parent.wait() == 0
            for pid in workers:  # the workers went with it, not orphaned
                assert not os.path.exists(f"/proc/{pid}") or proc.read_stat(pid).state == "Z"
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


async def test_a_worker_that_cannot_bind_stops_the_rest_with_an_error(tmp_path, backends):
    (b1,) = await backends("b1")
    with socket.socket() as squatter:  # holds the port without SO_REUSEPORT
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        cfg = tmp_path / "lb.toml"
        cfg.write_text(f'[listen.web]\nbind = "127.0.0.1:{port}"\n'
                       f'servers = [ {{ address = "127.0.0.1:{b1.port}" }} ]\n')
        parent = await _run(str(cfg), "--workers", "2")
        async with asyncio.timeout(30):
            out = (await parent.stdout.read()).decode()
            assert await parent.wait() == 1
        assert f"cannot bind 127.0.0.1:{port}" in out and "stopping the others" in out


async def test_workers_from_the_config_refuse_port_zero(tmp_path):
    cfg = tmp_path / "lb.toml"  # `workers` in the file, no flag: the same rules apply
    cfg.write_text('workers = 2\n[listen.web]\nbind = "127.0.0.1:0"\n'
                   'servers = [ { address = "127.0.0.1:9" } ]\n')
    parent = await _run(str(cfg))
    async with asyncio.timeout(20):
        out = (await parent.stdout.read()).decode()
        assert await parent.wait() == 1
    assert "2 workers need fixed ports" in out and f"{cfg}:3" in out


async def test_a_bad_workers_setting_names_its_line(tmp_path):
    cfg = tmp_path / "lb.toml"
    cfg.write_text('grace = "1s"\nworkers = 0\n[listen.web]\nbind = "127.0.0.1:0"\n'
                   'servers = [ { address = "127.0.0.1:9" } ]\n')
    proc_ = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "virtserve", "check", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    async with asyncio.timeout(20):
        out = (await proc_.stdout.read()).decode()
        assert await proc_.wait() == 1
    assert out.startswith(f"{cfg}:2: ") and "workers must be from 1 to 256" in out
