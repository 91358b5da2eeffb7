"""`virtserve run --workers N`: N processes serving the same listeners through SO_REUSEPORT.

The parent forks the workers before any event loop exists, then only supervises: it forwards
SIGTERM and SIGINT to every worker (each drains gracefully on its own) and waits for them. A
worker that exits while no stop was asked for takes the others down with it, so a broken
deployment fails loudly instead of serving at reduced capacity (HAProxy's master does the same).
"""
from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Callable

from virtserve.engine.config.model import Config

_FORWARDED = (signal.SIGTERM, signal.SIGINT)


def port_zero_binds(config: Config) -> list[str]:
    """Binds that ask for an ephemeral port: each worker would get a different one."""
    return [
        f"{bind.where + ': ' if bind.where else ''}frontend {fe.name} binds {bind.address}:0"
        for fe in config.frontends
        for bind in fe.binds
        if bind.port == 0
    ]


def run_workers(count: int, serve_one: Callable[[int], int],
                log: Callable[[str], None] | None = None) -> int:
    """Fork ``count`` workers running ``serve_one(index)``; return the exit code for the parent.

    0 when every worker stopped cleanly after a forwarded signal; otherwise the first non-zero
    exit code (or 1) of a worker that ended on its own.
    """
    say = log or (lambda msg: print(f"virtserve: {msg}", file=sys.stderr, flush=True))
    children: dict[int, int] = {}  # pid -> worker index
    # Hold the forwarded signals while forking: a signal must reach either a worker's handler
    # or the parent's forwarder, never a half-started process's default action.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
    try:
        for index in range(count):
            pid = os.fork()
            if pid == 0:
                _become_worker(index, serve_one, old_mask)  # never returns
            children[pid] = index
        stopping = False

        def forward(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True
            for child in children:
                _signal(child, signum)

        for sig in _FORWARDED:
            signal.signal(sig, forward)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    say(f"{count} workers started: pids {', '.join(map(str, children))}")

    result = 0
    while children:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:  # pragma: no cover - reaped elsewhere
            break
        index = children.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if not stopping:
            say(f"worker {index} (pid {pid}) exited with {_describe(code)}; stopping the others")
            stopping = True
            result = code if code > 0 else 1
            for child in children:
                _signal(child, signal.SIGTERM)
        elif code not in (0, -signal.SIGTERM, -signal.SIGINT) and result == 0:
            result = code if code > 0 else 1
    return result


def _become_worker(index: int, serve_one: Callable[[int], int], mask: set) -> None:
    code = 1
    try:
        for sig in _FORWARDED:
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        code = serve_one(index)
    except KeyboardInterrupt:
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # the parent reports the exit code; the traceback says why
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
