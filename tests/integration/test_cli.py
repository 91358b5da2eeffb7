"""The `virtserve` command as a user runs it: check, run (with a graceful stop), demo."""
import asyncio
import re
import signal
import sys

import aiohttp
import pytest

pytestmark = pytest.mark.timeout(60)

LISTENING = re.compile(rb"listening on ([\d.]+):(\d+)")


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, list[tuple[str, int]], bytes]:
    """Start `python -m virtserve ARGS`; return it with the addresses it says it listens on
    and what it printed until then."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "virtserve", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    seen: list[tuple[str, int]] = []
    out = b""
    async with asyncio.timeout(20):
        while not seen or (args[0] == "demo" and b"Stop:" not in out):
            line = await proc.stdout.readline()
            assert line, f"virtserve exited before listening: {out.decode()}"
            out += line
            m = LISTENING.search(line)
            if m:
                seen.append((m.group(1).decode(), int(m.group(2))))
    return proc, seen, out


def _write(tmp_path, text: str):
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


async def _check(path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "virtserve", "check", str(path),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, (out + err).decode()


async def test_check_accepts_a_valid_config_with_a_summary(tmp_path):
    path = _write(tmp_path, '[listen.web]\nbind = "127.0.0.1:0"\nservers = [{ address = "127.0.0.1:9001" }, { address = "127.0.0.1:9002" }]\n')
    code, out = await _check(path)
    assert code == 0
    assert out.count("\n") == 1 and "valid" in out and "2 server(s)" in out


async def test_check_names_file_line_and_problem(tmp_path):
    path = _write(tmp_path, '[listen.web]\nbind = "127.0.0.1:0"\nscheduler = "nope"\n'
                            'servers = [{ address = "127.0.0.1:9001" }]\n')
    code, out = await _check(path)
    assert code == 1
    assert out.startswith(f"{path}:3: ") and "nope" in out


async def test_check_reports_toml_syntax_errors_with_line(tmp_path):
    path = _write(tmp_path, '[listen.web]\nbind = "127.0.0.1:0\n')
    code, out = await _check(path)
    assert code == 1 and out.startswith(f"{path}:2: ")


async def test_run_serves_then_drains_in_flight_requests_on_sigterm(tmp_path, backends):
    (slow,) = await backends("slow")
    path = _write(tmp_path, f'grace = "5s"\n[listen.web]\nbind = "127.0.0.1:0"\n'
                            f'servers = [{{ address = "127.0.0.1:{slow.port}" }}]\n')
    proc, ((host, port),), _ = await _start("run", str(path))
    try:
        async with aiohttp.ClientSession() as s:
            assert await (await s.get(f"http://{host}:{port}/")).text() == "slow"
            in_flight = asyncio.ensure_future(s.get(f"http://{host}:{port}/slow/1"))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            response = await asyncio.wait_for(in_flight, 10)
            assert response.status == 200 and await response.text() == "slow"
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        with pytest.raises(OSError):
            await asyncio.open_connection(host, port)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_demo_alternates_between_named_backends_and_stops_on_sigint():
    proc, _, out = await _start("demo", "--port", "0")
    url = re.search(rb"curl (http://\S+)", out).group(1).decode()
    try:
        async with aiohttp.ClientSession() as s:
            bodies = [await (await s.get(url)).text() for _ in range(4)]
        assert [b.split()[2] for b in bodies] == ["web1", "web2", "web1", "web2"]
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
