"""virtserve's benchmark harness: virtserve against HAProxy, nginx and a direct connection.

Run ``python -m benchmarks --quick`` from the repository root (or ``python -m
virtserve.benchmarks``). The fair figure is requests per proxy CPU-second, read from /proc,
because the load generator, the backends and the proxy share the machine's cores.

Modules:
    backend   fixed-response uvloop HTTP/1.1 server (subprocess; self-contained)
    loadgen   built-in closed-loop load generator (subprocess; self-contained)
    load      wrk or loadgen -> LoadResult
    proc      CPU seconds and peak RSS from /proc; machine facts
    runners   virtserve / HAProxy / nginx / direct as context-managed subprocesses
    scenarios Scenario table, the interleaved measurement loop, start-up timing
    report    markdown rendering
    plots     PNG throughput bars and latency curves (matplotlib, optional)
    progress  the stderr progress bar
    certs     a self-signed certificate for the TLS scenarios
    cli       argument parsing; ``main(argv)``

Importing this package is cheap: submodules load on first use.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m benchmarks") -> int:
    """Entry point for ``virtserve bench`` and ``python -m benchmarks``."""
    from .cli import main as _main

    return _main(argv, prog=prog)
