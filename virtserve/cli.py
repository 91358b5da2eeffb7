"""The `virtserve` command: run, check, demo, bench."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from virtserve.engine.config import load
from virtserve.engine.config.model import ConfigError


def _run_loop(coro) -> None:  # type: ignore[no-untyped-def]
    import uvloop

    uvloop.run(coro)


async def _serve(path: str, watch: bool = False, reuse_port: bool = False, config=None) -> int:  # type: ignore[no-untyped-def]
    from virtserve.api import Balancer

    log = logging.getLogger("virtserve.engine")
    # `config`: already loaded by the caller (a second parse of the file cost start-up time).
    lb = await Balancer(config if config is not None else load(path), reuse_port=reuse_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloading = asyncio.Lock()

    async def reload(why: str) -> None:
        async with reloading:
            log.info("reloading %s (%s)", path, why)
            try:
                await lb.reload(path)
            except (ConfigError, OSError) as exc:
                log.error("reload rejected, the running config keeps serving:\n%s", exc)

    loop.add_signal_handler(signal.SIGHUP, lambda: lb.engine.state.spawn(reload("SIGHUP")))
    if watch:
        lb.engine.state.spawn(_watch(path, reload))
    await stop.wait()
    logging.getLogger("virtserve.engine").info("stopping: draining for up to %.1fs", lb.config.grace)
    await lb.stop(grace=lb.config.grace)
    return 0


async def _watch(path: str, reload) -> None:  # type: ignore[no-untyped-def]
    """ldirectord's autoreload: reload when the file changes (checked every second)."""
    import os

    def stamp() -> tuple[float, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_mtime, st.st_size

    last = stamp()
    while True:
        await asyncio.sleep(1.0)
        now = stamp()
        if now is not None and now != last:
            last = now
            await reload("file changed")


def cmd_run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    workers = args.workers if args.workers is not None else config.workers
    if workers > 1:
        return _run_workers(workers, args.config, config, args.watch or config.autoreload)
    try:
        _run_loop(_serve(args.config, args.watch or config.autoreload, config=config))
    except OSError as exc:
        print(f"virtserve: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_workers(workers: int, path: str, config, watch: bool = False) -> int:  # type: ignore[no-untyped-def]
    from virtserve.workers import port_zero_binds, run_workers

    ephemeral = port_zero_binds(config)
    if ephemeral:
        print(f"virtserve: {workers} workers need fixed ports (with port 0 every worker "
              f"would listen on a port of its own): {'; '.join(ephemeral)}", file=sys.stderr)
        return 1

    def serve_one(index: int, link) -> int:  # type: ignore[no-untyped-def]
        from virtserve.member import serve_member

        try:
            return serve_member(path, index, link)
        except (OSError, ConfigError) as exc:
            print(f"virtserve worker {index}: {exc}", file=sys.stderr)
            return 1

    from virtserve.groupcontrol import GroupControl

    return run_workers(workers, serve_one, control=GroupControl(path, config, watch))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.config}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"Configuration file is valid: {args.config}: {config.summary()}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from virtserve.engine.config.toml_writer import to_toml

    try:
        config = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.write(f"# virtserve native config converted from {args.config}\n{to_toml(config)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from virtserve.demo import run_demo

    with contextlib.suppress(KeyboardInterrupt):
        try:
            _run_loop(run_demo(port=args.port, mode=args.mode, tls=args.tls, cert_dir=args.cert_dir))
        except OSError as exc:
            print(f"virtserve demo: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_ctl(args: argparse.Namespace) -> int:
    from virtserve.engine.admin.socket import send

    try:
        answer = send(args.socket, " ".join(args.words))
    except OSError as exc:
        print(f"virtserve ctl: {args.socket}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    sys.stdout.write(answer)
    # HAProxy answers refusals in words; say so in the exit status too, for scripts.
    refused = ("Unknown command", "No such", "Require", "Invalid", "Permission denied", "Only servers",
               "Server still", "Already exists", "Weight must", "'")
    return 1 if answer.startswith(refused) else 0
def cmd_cert(args: argparse.Namespace) -> int:
    from virtserve.certs import make_certs

    made = make_certs(args.dir, args.names, client=args.client, days=args.days)
    print(f"CA (trust this; ca-file for client certificates): {made.pop('ca')}")
    print(f"server certificate for {', '.join(args.names)} (chain + key): {made.pop('server')}")
    for role, path in made.items():
        print(f"client certificate {role.partition(':')[2]}: {path}")
    print(f'bind: {{ address = "127.0.0.1:8443", ssl = {{ crt = "{args.dir}/certs" }} }}')
    return 0


def cmd_bench(argv: list[str]) -> int:
    from virtserve.benchmarks import main as bench_main

    return bench_main(argv, prog="virtserve bench")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the harness has its own options: hand them over untouched
        return cmd_bench(argv[1:])
    parser = argparse.ArgumentParser(prog="virtserve", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="serve a config file (SIGHUP reloads it)")
    p.add_argument("config")
    p.add_argument("--workers", "-w", type=_positive, default=None, metavar="N",
                   help="serve from N processes sharing the listeners (SO_REUSEPORT); "
                        "default: the config's `workers`, else 1")
    p.add_argument("--watch", action="store_true", help="reload when the file changes (autoreload)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("check", help="validate a config file (like haproxy -c)")
    p.add_argument("config")
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("convert", help="print a config (haproxy.cfg, ldirectord.cf, TOML) as native TOML")
    p.add_argument("config")
    p.set_defaults(fn=cmd_convert)
    p = sub.add_parser("demo", help="two local backends behind a virtual server on 127.0.0.1:8080")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--mode", choices=("http", "tcp"), default="http")
    p.add_argument("--tls", action="store_true",
                   help="serve HTTPS (certificates from `virtserve cert`, made if missing)")
    p.add_argument("--cert-dir", default="virtserve-certs", help="where --tls finds or makes them")
    p.set_defaults(fn=cmd_demo)
    p = sub.add_parser("ctl", help="send a runtime API command to a stats socket (like socat)")
    p.add_argument("socket", help="the path of `stats socket`")
    p.add_argument("words", nargs="+", metavar="COMMAND", help='e.g. show stat, "set server app/s1 state drain"')
    p.set_defaults(fn=cmd_ctl)
    p = sub.add_parser("cert", help="make a local CA and certificates signed by it (demo, tests)")
    p.add_argument("names", nargs="*", default=["localhost", "127.0.0.1"],
                   help="DNS names (wildcards allowed) and IP addresses (default: localhost 127.0.0.1)")
    p.add_argument("--dir", default="virtserve-certs", help="output directory (default virtserve-certs)")
    p.add_argument("--client", action="append", metavar="NAME",
                   help="also make a client certificate with this name (repeatable)")
    p.add_argument("--days", type=float, default=825, help="validity in days (default 825)")
    p.set_defaults(fn=cmd_cert)
    sub.add_parser("bench", help="benchmark against HAProxy and nginx (virtserve bench --help)")
    from virtserve.engine.ipvs import cli as ipvs_cli

    ipvs_cli.add_parser(sub)
    args = parser.parse_args(argv)
    # `check` speaks like `haproxy -c`: plain lines; a server logs with time and subsystem.
    plain = args.command in ("check", "convert")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(message)s" if plain else "%(asctime)s %(name)s %(levelname)s %(message)s")
    return args.fn(args)
