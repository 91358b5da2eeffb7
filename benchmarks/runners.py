"""Start and stop the processes of a benchmark: backends and the proxies under test.

Every runner is a context manager that always cleans up (the process group is killed, temp
dirs removed) and exposes what a measurement needs:

* ``pid`` / ``pids()`` - the process and its descendants, for CPU and RSS readings;
* ``host``, ``port``, ``url`` - where the load generator points;
* ``startup_s`` - seconds from spawn to the first HTTP 200 through it;
* ``describe()`` - kind, mode, version and the exact config text, for the JSON report.

Proxies get an equivalent config on loopback in front of the same backends: one process or
thread, round robin, keep-alive to the client and pooled keep-alive to the servers, no logging.
"""

from __future__ import annotations

import atexit
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from . import proc

__all__ = [
    "Unavailable",
    "StartError",
    "free_port",
    "probe_http",
    "Managed",
    "BackendServer",
    "NginxBackendServer",
    "BackendSet",
    "backend_kind",
    "ProxyRunner",
    "VirtserveRunner",
    "HAProxyRunner",
    "NginxRunner",
    "DirectRunner",
    "RUNNERS",
    "find_tool",
    "make_runner",
    "tool_version",
]

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"

Address = tuple[str, int]


class Unavailable(RuntimeError):
    """The target cannot run here (tool not installed, mode not supported)."""


class StartError(RuntimeError):
    """The process died or never became ready; ``log`` holds the tail of its output."""

    def __init__(self, message: str, log: str = "") -> None:
        last = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "")
        super().__init__(f"{message}: {last}" if last else message)
        self.log = log


# ----------------------------------------------------------------------------- helpers


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (the kernel's pick for a bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def find_tool(name: str) -> str | None:
    """Look in PATH and in the sbin directories that a non-login PATH may miss."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


_PROBE = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


_INSECURE: ssl.SSLContext | None = None


def _insecure_context() -> ssl.SSLContext:
    """A client context that accepts the benchmark's self-signed certificate."""
    global _INSECURE
    if _INSECURE is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _INSECURE = ctx
    return _INSECURE


def probe_http(host: str, port: int, timeout: float = 1.0, *, tls: bool = False) -> int | None:
    """One GET /; the status code, or None when nothing answered (refused, reset, timeout)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            s = _insecure_context().wrap_socket(raw) if tls else raw
            s.sendall(_PROBE)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    if not data.startswith(b"HTTP/1."):
        return None
    try:
        return int(data[9:12])
    except ValueError:
        return None


def _tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path | None, n: int = 2000) -> str:
    if path is None:
        return ""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-n:].decode("utf-8", "replace").strip()


def tool_version(argv: list[str]) -> str | None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    out = (r.stdout + "\n" + r.stderr).strip()
    return out.splitlines()[0].strip() if out else None


def _kill_group(p: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    # The leader may be gone while children (nginx workers) linger: kill the group regardless.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
        pass
    for stream in (p.stdin, p.stdout, p.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


_LIVE: set["Managed"] = set()


@atexit.register
def _cleanup_live() -> None:
    for m in list(_LIVE):
        try:
            m.stop()
        except Exception:  # pragma: no cover - best effort at exit
            pass


# ----------------------------------------------------------------------------- base


class Managed:
    """A process we started: context manager, pid tree, loopback address."""

    name: str = "process"
    host: str = LOOPBACK
    port: int = 0
    startup_s: float | None = None
    tls: bool = False

    def __init__(self) -> None:
        self.popen: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.tmpdir: Path | None = None
        self.log_path: Path | None = None

    # context manager -------------------------------------------------------
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    # process ---------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.popen.pid

    def pids(self) -> list[int]:
        """The process and its live descendants (read when asked: workers may fork late)."""
        return proc.tree(self.pid)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _mktemp(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"vsbench-{self.name}-")
            self.tmpdir = Path(self._tmp.name)
        assert self.tmpdir is not None
        return self.tmpdir

    def _spawn(self, argv: list[str], *, stdout=None, cwd: Path | None = None,
               env: Mapping[str, str] | None = None) -> subprocess.Popen:
        tmp = self._mktemp()
        self.log_path = tmp / "output.log"
        log = open(self.log_path, "ab")
        try:
            full_env = dict(os.environ)
            full_env.setdefault("PYTHONUNBUFFERED", "1")
            if env:
                full_env.update(env)
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log if stdout is None else stdout,
                stderr=log,
                cwd=str(cwd or tmp),
                env=full_env,
                start_new_session=True,  # own process group: killpg takes workers too
            )
        finally:
            log.close()
        _LIVE.add(self)
        return self.popen

    def _wait_ready(self, t0: float, timeout: float, *, http: bool = True) -> float:
        """Poll until an HTTP 200 comes back through host:port; seconds since ``t0``."""
        deadline = t0 + timeout
        while True:
            if self.popen is not None and self.popen.poll() is not None:
                raise StartError(
                    f"{self.name} exited with {self.popen.returncode} before it was ready",
                    _tail(self.log_path),
                )
            if http:
                if probe_http(self.host, self.port, timeout=1.0, tls=self.tls) == 200:
                    return time.perf_counter() - t0
            elif _tcp_accepts(self.host, self.port):
                return time.perf_counter() - t0
            if time.perf_counter() > deadline:
                raise StartError(
                    f"{self.name} did not answer on {self.host}:{self.port} within {timeout:.0f}s",
                    _tail(self.log_path),
                )
            time.sleep(0.002)

    def stop(self) -> None:
        if self.popen is not None:
            _kill_group(self.popen)
        _LIVE.discard(self)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "port": self.port}


# ----------------------------------------------------------------------------- backends


class BackendServer(Managed):
    """benchmarks/backend.py as a subprocess; it reports its own (kernel-chosen) port."""

    def __init__(self, *, size: int = 100, name: str = "b1", python: str = sys.executable,
                 host: str = LOOPBACK, start_timeout: float = 15.0) -> None:
        super().__init__()
        self.size = size
        self.name = name
        self.python = python
        self.host = host
        self.start_timeout = start_timeout

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def start(self) -> None:
        argv = [self.python, str(HERE / "backend.py"), "--host", self.host, "--port", "0",
                "--size", str(self.size)]
        t0 = time.perf_counter()
        p = self._spawn(argv, stdout=subprocess.PIPE)
        line = _read_line(p, self.start_timeout)
        if not line.strip().isdigit():
            raise StartError(f"backend {self.name} did not report a port ({line!r})",
                             _tail(self.log_path))
        self.port = int(line)
        self.startup_s = time.perf_counter() - t0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kind": "builtin", "size": self.size}


def _read_line(p: subprocess.Popen, timeout: float) -> str:
    assert p.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    fd = p.stdout.fileno()
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(fd, 256)
            if not chunk:
                break
            buf += chunk
    finally:
        sel.close()
    return buf.split(b"\n", 1)[0].decode("ascii", "replace")


class NginxBackendServer(Managed):
    """nginx serving one static file of ``size`` bytes on every path: one process, sendfile.

    C on the backend side leaves more of the shared cores to the proxy under test.
    """

    def __init__(self, *, size: int = 100, name: str = "b1", host: str = LOOPBACK,
                 start_timeout: float = 15.0, **_: Any) -> None:
        super().__init__()
        self.size = size
        self.name = name
        self.host = host
        self.start_timeout = start_timeout
        self.config_text = ""

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def start(self) -> None:
        exe = find_tool("nginx")
        if not exe:
            raise Unavailable("nginx is not installed")
        tmp = self._mktemp()
        (tmp / "www").mkdir()
        (tmp / "www" / "body").write_bytes((b"x" * (self.size - 1) + b"\n") if self.size else b"")
        self.port = free_port(self.host)
        self.config_text = _nginx_head(tmp, workers=1, master=False) + f"""\
http {{
    access_log off;
    sendfile on;
    etag off;
    client_body_temp_path {tmp}/client_body;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    default_type text/plain;
    server {{
        listen {self.host}:{self.port} backlog=4096;
        location / {{
            root {tmp}/www;
            try_files /body =404;
        }}
    }}
}}
"""
        cfg = tmp / "nginx.conf"
        cfg.write_text(self.config_text)
        t0 = time.perf_counter()
        self._spawn(_nginx_command(exe, cfg, tmp))
        self.startup_s = self._wait_ready(t0, self.start_timeout)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kind": "nginx", "size": self.size}


def _nginx_head(tmp: Path, *, workers: int, master: bool = True, preamble: str = "") -> str:
    """The main context of an nginx.conf that keeps every file in ``tmp`` and stays in front."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""\
{preamble}{user}daemon off;
master_process {'on' if master else 'off'};
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 8192;
}}
"""


def _nginx_command(exe: str, config: Path, tmp: Path) -> list[str]:
    return [exe, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(config)]


def backend_kind(kind: str = "auto") -> str:
    """'nginx' or 'builtin'; 'auto' picks nginx when it is installed."""
    if kind == "auto":
        return "nginx" if find_tool("nginx") else "builtin"
    if kind == "nginx" and not find_tool("nginx"):
        raise Unavailable("nginx is not installed: use --backend builtin")
    if kind not in ("nginx", "builtin"):
        raise ValueError(f"unknown backend kind {kind!r}; known: auto, nginx, builtin")
    return kind


class BackendSet:
    """N identical backends, started and stopped together."""

    def __init__(self, count: int = 2, *, size: int = 100, python: str = sys.executable,
                 kind: str = "builtin") -> None:
        cls = NginxBackendServer if backend_kind(kind) == "nginx" else BackendServer
        self.kind = backend_kind(kind)
        self.servers = [cls(size=size, name=f"b{i + 1}", python=python) for i in range(count)]

    def __enter__(self) -> "BackendSet":
        try:
            for s in self.servers:
                s.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    @property
    def addresses(self) -> list[Address]:
        return [s.address for s in self.servers]

    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    def describe(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.servers]


# ----------------------------------------------------------------------------- proxies


class ProxyRunner(Managed):
    """A proxy under test, configured in front of ``backends`` and listening on loopback."""

    kind: ClassVar[str] = ""
    modes: ClassVar[frozenset[str]] = frozenset({"http", "tcp"})
    supports_tls: ClassVar[bool] = False
    default_start_timeout: ClassVar[float] = 15.0

    def __init__(self, backends: Sequence[Address], *, mode: str = "http",
                 host: str = LOOPBACK, port: int | None = None,
                 start_timeout: float | None = None, tls: bool = False, workers: int = 1,
                 **options: Any) -> None:
        super().__init__()
        if mode not in self.modes:
            raise Unavailable(self.mode_unavailable(mode))
        if not backends:
            raise ValueError("at least one backend is needed")
        reason = self.unavailable_reason()
        if reason:
            raise Unavailable(reason)
        self.name = self.kind
        self.backends = list(backends)
        self.mode = mode
        self.host = host
        self.requested_port = port
        self.start_timeout = start_timeout or self.default_start_timeout
        self.tls = tls
        self.workers = workers
        self.certfile: Path | None = None  # written at start when ``tls``
        self.options = dict(options)
        self.config_text = ""
        if self.tls and not self.supports_tls:
            raise Unavailable(f"{self.kind} runner does not terminate TLS here")

    # what subclasses provide -----------------------------------------------
    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the target can run here, else why not."""
        return None

    @classmethod
    def version(cls) -> str | None:
        return None

    @classmethod
    def mode_unavailable(cls, mode: str) -> str:
        return f"{cls.kind} runner does not support mode {mode!r}"

    def render_config(self, tmp: Path) -> str:
        raise NotImplementedError

    def command(self, config_path: Path, tmp: Path) -> list[str]:
        raise NotImplementedError

    config_name: ClassVar[str] = "proxy.conf"

    # lifecycle -------------------------------------------------------------
    def start(self) -> None:
        tmp = self._mktemp()
        self.port = self.requested_port or free_port(self.host)
        if self.tls:
            from .certs import write_self_signed

            self.certfile = write_self_signed(tmp)
        self.config_text = self.render_config(tmp)
        cfg = tmp / self.config_name
        cfg.write_text(self.config_text)
        argv = self.command(cfg, tmp)
        t0 = time.perf_counter()
        self._spawn(argv)
        # Through a tcp-mode proxy the backend still speaks HTTP, so the probe works for both.
        self.startup_s = self._wait_ready(t0, self.start_timeout, http=True)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "kind": self.kind,
            "mode": self.mode,
            "tls": self.tls,
            "workers": self.workers,
            "version": self.version(),
            "backends": [f"{h}:{p}" for h, p in self.backends],
            "options": self.options,
            "config": self.config_text,
        }


_COMPILE_VIRTSERVE = """\
import compileall, importlib
for name in ("virtserve", "virtserve.engine", "virtserve.schedulers", "virtserve.checks"):
    for path in importlib.import_module(name).__path__:
        compileall.compile_dir(path, quiet=2)
"""


class VirtserveRunner(ProxyRunner):
    """``<python> -m virtserve run CONFIG`` with a native TOML config."""

    kind = "virtserve"
    config_name = "virtserve.toml"
    supports_tls = True
    default_start_timeout = 20.0

    def __init__(self, backends: Sequence[Address], *, python: str = sys.executable,
                 **kw: Any) -> None:
        self.python = python
        super().__init__(backends, **kw)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None  # decided by trying: the CLI either serves or fails with its own message

    @classmethod
    def version(cls) -> str | None:
        try:
            from importlib.metadata import version

            return "virtserve " + version("virtserve")
        except Exception:
            return None

    def render_config(self, tmp: Path) -> str:
        scheduler = self.options.get("scheduler", "rr")
        servers = ", ".join(
            f'{{ name = "b{i + 1}", address = "{h}:{p}" }}' for i, (h, p) in enumerate(self.backends)
        )
        bind = f'"{self.host}:{self.port}"'
        if self.tls:
            bind = f'{{ address = {bind}, ssl = {{ crt = "{self.certfile}" }} }}'
        return (
            "[listen.bench]\n"
            f"bind = {bind}\n"
            f'mode = "{self.mode}"\n'
            f'scheduler = "{scheduler}"\n'
            f"servers = [ {servers} ]\n"
        )

    def command(self, config_path: Path, tmp: Path) -> list[str]:
        argv = [self.python, "-m", "virtserve", "run", str(config_path)]
        return argv + ["--workers", str(self.workers)] if self.workers > 1 else argv

    _compiled: ClassVar[set[str]] = set()  # interpreters whose bytecode for virtserve is written

    def start(self) -> None:
        # An installed package has its bytecode written at install time; an editable checkout
        # run with PYTHONDONTWRITEBYTECODE=1 would compile every module at every start, and the
        # start-up figure would measure the compiler. Write it once, as pip install would.
        if self.python not in self._compiled:
            self._compiled.add(self.python)
            subprocess.run([self.python, "-c", _COMPILE_VIRTSERVE], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120, check=False)
        try:
            super().start()
        except StartError as e:
            if self.tls and self.popen is not None and self.popen.poll() is not None:
                raise Unavailable(f"virtserve has no TLS listener yet ({e})") from None
            raise


class HAProxyRunner(ProxyRunner):
    """HAProxy, one thread, its best keep-alive config (``http-reuse always``), no logging."""

    kind = "haproxy"
    config_name = "haproxy.cfg"
    supports_tls = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if find_tool("haproxy") else "haproxy is not installed"

    @classmethod
    def version(cls) -> str | None:
        exe = find_tool("haproxy")
        return tool_version([exe, "-v"]) if exe else None

    def render_config(self, tmp: Path) -> str:
        reuse = self.options.get("http_reuse", "always")
        lines = [
            "global",
            f"    nbthread {self.workers}",
            "    maxconn 8192",
        ]
        if self.tls:  # no resumption: wrk would resume sessions, every handshake must be full
            lines += ["    tune.ssl.cachesize 0", "    ssl-default-bind-options no-tls-tickets"]
        lines += [
            "",
            "defaults",
            f"    mode {self.mode}",
            "    timeout connect 5s",
            "    timeout client 30s",
            "    timeout server 30s",
        ]
        if self.mode == "http":
            lines += ["    option http-keep-alive", f"    http-reuse {reuse}"]
        lines += [
            "",
            "frontend fe",
            f"    bind {self.host}:{self.port}" + (f" ssl crt {self.certfile} alpn http/1.1" if self.tls else ""),
            "    default_backend be",
            "",
            "backend be",
            "    balance roundrobin",
        ]
        lines += [f"    server b{i + 1} {h}:{p}" for i, (h, p) in enumerate(self.backends)]
        return "\n".join(lines) + "\n"

    def command(self, config_path: Path, tmp: Path) -> list[str]:
        exe = find_tool("haproxy")
        assert exe
        return [exe, "-db", "-f", str(config_path)]  # -db: foreground, no daemon, no master


class NginxRunner(ProxyRunner):
    """nginx as a reverse proxy: one worker, upstream keepalive, no access log."""

    kind = "nginx"
    config_name = "nginx.conf"
    modes = frozenset({"http", "tcp"})  # tcp: with the stream module (not in nginx-light)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if find_tool("nginx") else "nginx is not installed"

    @staticmethod
    def stream_module() -> str | None:
        """'' when stream is built in, the .so to load when it is dynamic, None when absent."""
        exe = find_tool("nginx")
        if not exe:
            return None
        try:
            r = subprocess.run([exe, "-V"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        flags = r.stdout + r.stderr
        if "--with-stream " in flags + " ":
            return ""
        if "--with-stream=dynamic" in flags:
            for d in ("/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/lib64/nginx/modules"):
                so = os.path.join(d, "ngx_stream_module.so")
                if os.path.exists(so):
                    return so
        return None

    def __init__(self, backends: Sequence[Address], *, mode: str = "http", **kw: Any) -> None:
        if mode == "tcp" and self.stream_module() is None:
            raise Unavailable("this nginx has no stream module (nginx-light): install "
                              "nginx-full or libnginx-mod-stream for L4")
        super().__init__(backends, mode=mode, **kw)

    @classmethod
    def version(cls) -> str | None:
        exe = find_tool("nginx")
        return tool_version([exe, "-v"]) if exe else None

    def render_config(self, tmp: Path) -> str:
        servers = "\n".join(f"        server {h}:{p};" for h, p in self.backends)
        if self.mode == "tcp":
            return self._render_stream(tmp, servers)
        # No session resumption (cache or tickets): every new connection is a full handshake.
        tls = (f"""    ssl_certificate {self.certfile};
    ssl_certificate_key {self.certfile};
    ssl_session_cache off;
    ssl_session_tickets off;
""" if self.tls else "")
        return _nginx_head(tmp, workers=self.workers) + f"""\
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream be {{
{servers}
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {self.host}:{self.port} backlog=4096{" ssl" if self.tls else ""};
{tls}        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

    def _render_stream(self, tmp: Path, servers: str) -> str:
        so = self.stream_module()
        load = f"load_module {so};\n" if so else ""
        return _nginx_head(tmp, workers=self.workers, preamble=load) + f"""\
stream {{
    upstream be {{
{servers}
    }}
    server {{
        listen {self.host}:{self.port} backlog=4096;
        proxy_pass be;
    }}
}}
"""

    def command(self, config_path: Path, tmp: Path) -> list[str]:
        exe = find_tool("nginx")
        assert exe
        return _nginx_command(exe, config_path, tmp)


class DirectRunner(ProxyRunner):
    """No proxy: the load goes straight to the first backend (the ceiling of the setup).

    Its ``pid`` is that backend's, so "proxy CPU" here is the backend's own CPU.
    """

    kind = "direct"

    @classmethod
    def mode_unavailable(cls, mode: str) -> str:
        return "direct has no TLS: the backends speak plain HTTP"

    def __init__(self, backends: Sequence[Address], *, backend_pids: Sequence[int] = (),
                 **kw: Any) -> None:
        super().__init__(backends, **kw)
        self._backend_pid = backend_pids[0] if backend_pids else None

    def start(self) -> None:
        if self.tls:
            raise Unavailable(self.mode_unavailable("tls"))
        self.host, self.port = self.backends[0]
        t0 = time.perf_counter()
        if probe_http(self.host, self.port) != 200:
            raise StartError(f"backend {self.host}:{self.port} does not answer 200")
        self.startup_s = None
        self._probe_s = time.perf_counter() - t0

    @property
    def pid(self) -> int:
        if self._backend_pid is None:
            raise RuntimeError("direct runner was not given the backend's pid")
        return self._backend_pid

    def pids(self) -> list[int]:
        return [self.pid] if self._backend_pid is not None else []

    def stop(self) -> None:  # nothing of ours to stop: the backend belongs to its BackendSet
        _LIVE.discard(self)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


RUNNERS: dict[str, type[ProxyRunner]] = {
    "virtserve": VirtserveRunner,
    "haproxy": HAProxyRunner,
    "nginx": NginxRunner,
    "direct": DirectRunner,
}


def make_runner(kind: str, backends: BackendSet, *, mode: str = "http", **options: Any) -> ProxyRunner:
    """Build (not start) the runner ``kind`` in front of ``backends``."""
    try:
        cls = RUNNERS[kind]
    except KeyError:
        raise ValueError(f"unknown target {kind!r}; known: {', '.join(RUNNERS)}") from None
    if cls is DirectRunner:
        return DirectRunner(backends.addresses, backend_pids=backends.pids(), mode=mode, **options)
    return cls(backends.addresses, mode=mode, **options)
