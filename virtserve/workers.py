"""`virtserve run --workers N`: N processes serving the same listeners through SO_REUSEPORT.

The parent forks the workers before any event loop exists, then supervises them from an event
loop of its own: it forwards SIGTERM and SIGINT to every worker (each drains gracefully on its
own) and waits for them. A worker that exits while no stop was asked for takes the others down
with it, so a broken deployment fails loudly instead of serving at reduced capacity (HAProxy's
master does the same). The same loop runs the group's health checks once for all workers and
serves the runtime socket (groupcontrol.py), talking to each worker over a socketpair.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import traceback
from typing import Any, Callable

from virtserve.engine.config.model import Config

_FORWARDED = (signal.SIGTERM, signal.SIGINT)
_HELD = (*_FORWARDED, signal.SIGHUP)


def port_zero_binds(config: Config) -> list[str]:
    """Binds that ask for an ephemeral port: each worker would get a different one."""
    return [
        f"{bind.where + ': ' if bind.where else ''}frontend {fe.name} binds {bind.address}:0"
        for fe in config.frontends
        for bind in fe.binds
        if bind.port == 0
    ]


def run_workers(count: int, serve_one: Callable[[int, socket.socket], int],
                log: Callable[[str], None] | None = None, control: Any = None) -> int:
    """Fork ``count`` workers running ``serve_one(index, link)``; return the exit code for the parent.

    ``link`` is the worker's end of a socketpair whose other end the parent hands to
    ``control`` (a GroupControl: the shared checks and the runtime socket, run on the parent's
    event loop; SIGHUP to the parent goes to ``control.reload()``, or to every worker without one).

    0 when every worker stopped cleanly after a forwarded signal; otherwise the first non-zero
    exit code (or 1) of a worker that ended on its own.
    """
    say = log or (lambda msg: print(f"virtserve: {msg}", file=sys.stderr, flush=True))
    children: dict[int, int] = {}  # pid -> worker index
    links: dict[int, socket.socket] = {}  # worker index -> the parent's end of its link
    # Hold the signals while forking: a signal must reach either a worker's handler or the
    # parent's, never a half-started process's default action. The parent takes them once its
    # event loop has its handlers.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        for index in range(count):
            mine, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                mine.close()
                for other in links.values():
                    other.close()
                _become_worker(index, lambda i: serve_one(i, theirs), old_mask)  # never returns
            theirs.close()
            children[pid] = index
            links[index] = mine
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for child in children:
            _signal(child, signal.SIGTERM)
        raise
    say(f"{count} workers started: pids {', '.join(map(str, children))}")
    return asyncio.run(_supervise(children, links, control, old_mask, say))


async def _supervise(children: dict[int, int], links: dict[int, socket.socket], control: Any,
                     mask: set, say: Callable[[str], None]) -> int:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    stopping = False
    result = 0

    def stop_all(signum: int) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            _signal(child, signum)

    def reaped(pid: int, watch: int) -> None:
        nonlocal stopping, result
        loop.remove_reader(watch)
        os.close(watch)
        _, status = os.waitpid(pid, 0)
        index = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if not stopping:
            say(f"worker {index} (pid {pid}) exited with {_describe(code)}; stopping the others")
            result = code if code > 0 else 1
            stop_all(signal.SIGTERM)
        elif code not in (0, -signal.SIGTERM, -signal.SIGINT) and result == 0:
            result = code if code > 0 else 1
        if not children and not done.done():
            done.set_result(None)

    for pid in children:  # a pidfd becomes readable when its process ends: no SIGCHLD needed
        watch = os.pidfd_open(pid)
        loop.add_reader(watch, reaped, pid, watch)
    for sig in _FORWARDED:
        loop.add_signal_handler(sig, stop_all, sig)
    if control is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(control.reload()))
    else:
        loop.add_signal_handler(signal.SIGHUP, lambda: [_signal(c, signal.SIGHUP) for c in children])
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        if control is not None:
            await control.start(links, {index: pid for pid, index in children.items()})
    except Exception as exc:  # e.g. the kernel refused the IPVS table: nothing can serve right
        say(f"the group's checks did not start: {exc}; stopping the workers")
        traceback.print_exc()
        result = 1
        stop_all(signal.SIGTERM)
    try:
        await done
    finally:
        if control is not None:
            await control.close()
        for link in links.values():
            link.close()
    return result


def _become_worker(index: int, serve_one: Callable[[int], int], mask: set) -> None:
    code = 1
    try:
        for sig in _FORWARDED:
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's loop handles it
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
