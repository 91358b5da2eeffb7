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


def _tcp_on(port: int, state: str) -> dict[str, int]:
    """inode -> peer port of the TCP sockets in ``state`` with local port ``port``."""
    found = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
                found[fields[9]] = int(fields[2].split(":")[1], 16)
    return found


def _held_by(pid: int, inodes: dict[str, int]) -> list[int]:
    """The peer ports of those sockets that process ``pid`` holds."""
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held.append(inodes[target[8:-1]])
    return held


def _sockets_on(pid: int, port: int, state: str = ESTABLISHED) -> int:
    """How many TCP sockets in ``state`` with local port ``port`` process ``pid`` holds."""
    return len(_held_by(pid, _tcp_on(port, state)))


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


# --- health checks run once for the group, runtime changes reach every worker -----------------

INTERVAL = 0.3  # seconds between two checks of one server


def _group_config(path, port: int, servers, *, extra: str = "", backend: str = "") -> None:
    """A TOML config: listen `web` on port, servers s1..sN on the given HealthBackends, checked
    every INTERVAL (rise 1, fall 3: on a loaded machine one probe of a healthy server may time out)."""
    entries = ", ".join(f'{{ name = "s{i + 1}", address = "127.0.0.1:{b.port}" }}'
                        for i, b in enumerate(servers))
    path.write_text(f'grace = "1s"\n{extra}\n[listen.web]\nbind = "127.0.0.1:{port}"\n'
                    f'check = {{ type = "http", request = "/health", interval = "{int(INTERVAL * 1000)}ms", '
                    f'timeout = "2s", rise = 1, fall = 3 }}\n{backend}\nservers = [ {entries} ]\n')


async def _start_group(cfg, port: int, count: int = 2) -> tuple[asyncio.subprocess.Process, list[int]]:
    parent = await _run(str(cfg), "--workers", str(count))
    await _wait_listening(port, parent)
    workers = proc.descendants(parent.pid)
    while len(workers) < count or not all(_sockets_on(p, port, LISTEN) for p in workers):
        await asyncio.sleep(0.05)
        workers = proc.descendants(parent.pid)
    return parent, workers


async def _stop(parent: asyncio.subprocess.Process) -> str:
    if parent.returncode is None:
        parent.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(10):
            await parent.wait()
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
    out = (await parent.stdout.read()).decode()
    print(out)  # shown when the test fails
    return out


async def _answers_per_worker(port: int, workers: list[int], conns: int = 24,
                              rounds: int = 2) -> dict[int, list[str]]:
    """`conns` connections held open at once (the kernel spreads them over the workers), each
    asked `rounds` times: the backends that answered, by the pid of the worker that served."""
    held = []
    try:
        for _ in range(conns):
            held.append(await asyncio.open_connection("127.0.0.1", port))
        while sum(_sockets_on(p, port) for p in workers) < conns:
            await asyncio.sleep(0.01)  # accepted, not yet in a worker's fd table
        where = {}
        for pid in workers:  # which worker holds which connection: by local port of the client
            where[pid] = _client_ports_on(pid, port)
        out: dict[int, list[str]] = {pid: [] for pid in workers}
        for reader, writer in held:
            client_port = writer.get_extra_info("sockname")[1]
            pid = next(p for p, ports in where.items() if client_port in ports)
            for _ in range(rounds):
                writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):  # a reload's race
                    out[pid].append("closed")
                    break
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                out[pid].append(body.decode() if head.startswith(b"HTTP/1.1 200") else (head + body).decode())
        return out
    finally:
        for _, writer in held:
            writer.close()


def _client_ports_on(pid: int, port: int) -> set[int]:
    """The peer ports of the established connections to local `port` that `pid` holds."""
    return set(_held_by(pid, _tcp_on(port, ESTABLISHED)))


async def _until_every_worker_answers(port: int, workers: list[int], expected: set[str]) -> dict:
    """Ask again until every answer, on every worker, is one of `expected` (each worker serving
    some connections), and return the last answers."""
    while True:
        answers = await _answers_per_worker(port, workers)
        if all(answers.values()) and all(set(a) <= expected for a in answers.values()):
            return answers
        await asyncio.sleep(0.1)


async def _checks_in(backend, seconds: float) -> int:
    before = backend.checks
    await asyncio.sleep(seconds)
    return backend.checks - before


async def test_checks_run_once_and_every_worker_follows_their_verdict(tmp_path, health_backends):
    web1, web2 = await health_backends("web1", "web2")
    port = _free_port()
    cfg = tmp_path / "lb.toml"
    _group_config(cfg, port, [web1, web2])
    parent, workers = await _start_group(cfg, port)
    try:
        async with asyncio.timeout(40):
            answers = await _answers_per_worker(port, workers)
            assert all(set(a) == {"web1", "web2"} for a in answers.values()), answers  # rr in each
            # One checker: about one check per interval (two workers checking would make twice).
            window = 10 * INTERVAL
            counted = await asyncio.gather(_checks_in(web1, window), _checks_in(web2, window))
            assert all(3 <= n <= window / INTERVAL + 2 for n in counted), counted

            web1.status = 500  # both workers must stop sending to it, not only the one that saw it
            answers = await _until_every_worker_answers(port, workers, {"web2"})
            assert all(len(a) >= 2 for a in answers.values()), answers
            web1.status = 200
            await _until_every_worker_answers(port, workers, {"web1", "web2"})
            answers = await _answers_per_worker(port, workers)
            assert all(set(a) == {"web1", "web2"} for a in answers.values()), answers
    finally:
        out = await _stop(parent)
    assert parent.returncode == 0, out
    assert out.count("Server web/s1 is DOWN") >= 1


async def test_the_runtime_socket_reaches_every_worker(tmp_path, health_backends):
    from virtserve.engine.admin.socket import send

    web1, web2 = await health_backends("web1", "web2")
    port = _free_port()
    cfg = tmp_path / "lb.toml"
    sock = tmp_path / "admin.sock"
    _group_config(cfg, port, [web1, web2], extra=f'[stats]\nsocket = "{sock}"\n')
    parent, workers = await _start_group(cfg, port)
    ctl = lambda line: asyncio.to_thread(send, str(sock), line)  # noqa: E731
    try:
        async with asyncio.timeout(40):
            while not sock.exists() or (await ctl("show info")).startswith("No worker"):
                await asyncio.sleep(0.05)
            assert await ctl("set server web/s1 state drain") == "\n"
            # Each worker, asked on its own (@N as HAProxy's master CLI): drained everywhere.
            for n in (1, 2):
                assert await ctl(f"@{n} get weight web/s1") == "0 (initial 1)\n\n"
                info = await ctl(f"@{n} show info")
                assert f"Nbproc: 2\nProcess_num: {n}\n" in info
                pid = int(info.split("\nPid: ")[1].split()[0])
                assert pid in workers and f"Process_num: {n}\n" in await ctl(f"@!{pid} show info")
            answers = await _answers_per_worker(port, workers)
            assert all(a and set(a) == {"web2"} for a in answers.values()), answers
            assert (await ctl("set server web/s1 state ready")) == "\n"
            answers = await _answers_per_worker(port, workers)
            assert all(set(a) == {"web1", "web2"} for a in answers.values()), answers
            assert (await ctl("set server web/nope state drain")) == "No such server.\n\n"
            assert (await ctl("@7 show info")).startswith("No such worker '@7'")
    finally:
        out = await _stop(parent)
    assert parent.returncode == 0, out


async def test_an_alert_is_mailed_once_not_once_per_worker(tmp_path, health_backends, unused_tcp_port):
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    subjects: list[str] = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope):
            import email
            subjects.append(email.message_from_bytes(envelope.content)["Subject"])
            return "250 OK"

    controller = controller_mod.Controller(Inbox(), hostname="127.0.0.1", port=unused_tcp_port)
    controller.start()
    web1, web2 = await health_backends("web1", "web2")
    port = _free_port()
    cfg = tmp_path / "lb.toml"
    _group_config(cfg, port, [web1, web2],
                  backend=f'alert = {{ to = ["ops@example.com"], relay = "127.0.0.1:{unused_tcp_port}" }}')
    parent, workers = await _start_group(cfg, port)
    try:
        async with asyncio.timeout(40):
            web1.status = 500
            while not any("web/s1" in subject for subject in subjects):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # a second worker's mail would have come by now
            down = f"[virtserve] web/s1 (127.0.0.1:{web1.port}) is DOWN"
            assert subjects.count(down) == 1, subjects
    finally:
        controller.stop()
        out = await _stop(parent)
    assert parent.returncode == 0, out


async def test_sighup_reloads_the_group_and_its_checks(tmp_path, health_backends):
    web1, web2, web3 = await health_backends("web1", "web2", "web3")
    web1.status = 500
    port = _free_port()
    cfg = tmp_path / "lb.toml"
    _group_config(cfg, port, [web1, web2])
    parent, workers = await _start_group(cfg, port)
    try:
        async with asyncio.timeout(40):
            await _until_every_worker_answers(port, workers, {"web2"})
            _group_config(cfg, port, [web1, web2, web3])  # s3 added; s1 stays, down
            parent.send_signal(signal.SIGHUP)
            answers = await _until_every_worker_answers(port, workers, {"web2", "web3"})
            assert all(set(a) == {"web2", "web3"} for a in answers.values()), answers
            window = 10 * INTERVAL
            counted = await asyncio.gather(_checks_in(web1, window), _checks_in(web3, window))
            assert all(3 <= n <= window / INTERVAL + 2 for n in counted), counted
            # A server added by the reload that fails is seen down by every worker too.
            web3.status = 500
            await _until_every_worker_answers(port, workers, {"web2"})

            cfg.write_text(cfg.read_text() + "[[[nonsense\n")  # a broken file changes nothing
            parent.send_signal(signal.SIGHUP)
            await asyncio.sleep(3 * INTERVAL)
            web3.status = 200
            await _until_every_worker_answers(port, workers, {"web2", "web3"})
            assert parent.returncode is None and proc.descendants(parent.pid) == workers
    finally:
        out = await _stop(parent)
    assert parent.returncode == 0, out
    assert "reload rejected" in out


async def test_a_worker_killed_takes_the_group_down_and_so_does_the_parent(tmp_path, health_backends):
    web1, = await health_backends("web1")
    port = _free_port()
    cfg = tmp_path / "lb.toml"
    _group_config(cfg, port, [web1])
    parent, workers = await _start_group(cfg, port)
    async with asyncio.timeout(20):
        os.kill(workers[1], signal.SIGKILL)
        out = await _stop_after_exit(parent)
    assert parent.returncode == 1 and "exited with signal SIGKILL; stopping the others" in out, out

    # The parent killed: the workers have no checks any more, and stop rather than serve blind.
    parent, workers = await _start_group(cfg, port)
    async with asyncio.timeout(20):
        parent.kill()
        await parent.wait()
        while any(os.path.exists(f"/proc/{pid}") and proc.read_stat(pid).state != "Z" for pid in workers):
            await asyncio.sleep(0.05)


async def _stop_after_exit(parent: asyncio.subprocess.Process) -> str:
    out = (await parent.stdout.read()).decode()
    await parent.wait()
    return out


async def test_the_stats_page_admin_form_reaches_every_worker(tmp_path, health_backends):
    import aiohttp

    from virtserve.engine.admin.socket import send

    web1, web2 = await health_backends("web1", "web2")
    port, stats_port = _free_port(), _free_port()
    cfg = tmp_path / "lb.toml"
    sock = tmp_path / "admin.sock"
    _group_config(cfg, port, [web1, web2], extra=f'[stats]\nbind = "127.0.0.1:{stats_port}"\n'
                                                 f'admin = true\nsocket = "{sock}"\n')
    parent, workers = await _start_group(cfg, port)
    try:
        async with asyncio.timeout(40):
            url = f"http://127.0.0.1:{stats_port}/"
            async with aiohttp.ClientSession() as session:
                while True:  # the page is the first worker's: up once it has started
                    try:
                        async with session.get(url) as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.05)
                async with session.post(url, data={"b": "web", "s": "s1", "action": "maint"},
                                        allow_redirects=False) as resp:
                    assert resp.status == 303 and resp.headers["Location"].endswith("st=DONE")
            answers = await _until_every_worker_answers(port, workers, {"web2"})
            assert all(a and set(a) == {"web2"} for a in answers.values()), answers
            for n in (1, 2):
                assert await asyncio.to_thread(send, str(sock), f"@{n} get weight web/s1") == "0 (initial 1)\n\n"
    finally:
        out = await _stop(parent)
    assert parent.returncode == 0, out
