"""HAProxy's runtime API commands, as text in and text out (management.txt, "stats socket").

Sans-IO: `Runtime.execute(line)` parses one command line (several separated by ';') and acts on
the live engine through Backend's setters, the one place state changes. The UNIX socket
(`socket.py`) and the stats page's admin form both come here.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Callable

from virtserve.engine.admin import view
from virtserve.engine.config.model import CheckSpec, ServerSpec
from virtserve.engine.config.units import split_host_port
from virtserve.engine.config.validate import WEIGHT_MAX

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend, Server
    from virtserve.engine.engine import Engine

LEVELS = {"user": 0, "operator": 1, "admin": 2}
VERSION = "0.1.0"


class CommandError(Exception):
    """A command refused: its message is the answer, as HAProxy answers on the socket."""


class Runtime:
    def __init__(self, engine: Engine, level: str = "admin") -> None:
        self.engine = engine
        self.level = LEVELS[level]
        self.started = time.time()
        self._commands: list[tuple[tuple[str, ...], int, Callable[[list[str]], str]]] = [
            (("help",), 0, self.help),
            (("show", "info"), 0, self.show_info),
            (("show", "stat"), 0, self.show_stat),
            (("show", "servers", "state"), 0, self.show_servers_state),
            (("show", "sess"), 0, self.show_sess),
            (("set", "server"), 2, self.set_server),
            (("enable", "server"), 2, self.enable_server),
            (("disable", "server"), 2, self.disable_server),
            (("add", "server"), 2, self.add_server),
            (("del", "server"), 2, self.del_server),
            (("set", "maxconn", "frontend"), 2, self.set_maxconn_frontend),
            (("set", "maxconn", "server"), 2, self.set_maxconn_server),
            (("set", "weight"), 2, self.set_weight),
            (("get", "weight"), 0, self.get_weight),
        ]

    def execute(self, line: str) -> str:
        """The answer to one line: each ';'-separated command's output, HAProxy-style."""
        return "".join(self._one(cmd.split()) for cmd in line.split(";") if cmd.strip())

    def _one(self, words: list[str]) -> str:
        for prefix, level, fn in self._commands:
            if tuple(words[:len(prefix)]) == prefix:
                if level > self.level:
                    return "Permission denied\n\n"
                try:
                    return fn(words[len(prefix):])
                except CommandError as exc:
                    return f"{exc}\n\n"
        return "Unknown command. Please enter one of the following commands only :\n" + self.help([])

    # --- show ------------------------------------------------------------------------------

    def help(self, args: list[str]) -> str:
        return "\n".join(f"  {' '.join(p)}" for p, level, _ in self._commands if level <= self.level) + "\n\n"

    def show_info(self, args: list[str]) -> str:
        e = self.engine
        up = int(time.time() - self.started)
        cur = sum(f.current for f in e.frontends.values())
        cum = sum(f.total for f in e.frontends.values())
        reqs = sum(view.frontend_counters(f).requests for f in e.frontends.values())
        info = [
            ("Name", "virtserve"), ("Version", VERSION), ("Nbthread", 1),
            ("Nbproc", 1), ("Process_num", 1), ("Pid", os.getpid()),
            ("Uptime", f"{up // 86400}d {up // 3600 % 24}h{up // 60 % 60:02d}m{up % 60:02d}s"),
            ("Uptime_sec", up), ("Maxconn", sum(f.maxconn for f in e.frontends.values())),
            ("CurrConns", cur), ("CumConns", cum), ("CumReq", reqs),
            ("Stopping", int(bool(e.state and e.state.draining))),
            ("Run_queue", 0),
        ]
        return "".join(f"{k}: {v}\n" for k, v in info) + "\n"

    def show_stat(self, args: list[str]) -> str:
        """show stat [{<iid>|<proxy>} <type> <sid>]: type is a mask (1 frontends, 2 backends,
        4 servers, -1 all), sid a server's id (-1 all), as HAProxy filters."""
        if not args:
            return view.csv_text(self.engine) + "\n"
        if len(args) != 3:
            raise CommandError("Require '{<iid>|<proxy>} <type> <sid>' or nothing.")
        proxy, mask, sid = args[0], _signed_int(args[1], "type"), _signed_int(args[2], "sid")
        bits = {view.TYPE_FRONTEND: 1, view.TYPE_BACKEND: 2, view.TYPE_SERVER: 4}

        def keep(row: dict[str, object]) -> bool:
            if proxy != "-1" and proxy not in (row["pxname"], str(row["iid"])):
                return False
            if mask != -1 and not mask & bits[row["type"]]:  # type: ignore[index]
                return False
            return sid == -1 or row["type"] != view.TYPE_SERVER or row["sid"] == sid

        return view.csv_text(self.engine, keep) + "\n"

    def show_servers_state(self, args: list[str]) -> str:
        lines = ["1", "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state "
                      "srv_uweight srv_iweight srv_time_since_last_change srv_check_status "
                      "srv_check_result srv_check_health srv_check_state srv_agent_state "
                      "bk_f_forced_id srv_f_forced_id srv_fqdn srv_port"]
        machines = view.check_machines(self.engine)
        for be_id, b in enumerate(self.engine.backends.values(), start=1):
            if args and b.name != args[0]:
                continue
            for s in b.servers:
                # check result as HAProxy's CHK_RES_*: 0 unknown, 2 failed, 3 passed
                result = 0 if s.last_check is None else (3 if s.last_check.ok else 2)
                machine = machines.get(id(s))
                health = machine.health if machine is not None else 0
                # HAProxy: op_state 0 stopped, 2 running; admin_state bit 0x01 maint, 0x08 drain
                op = 2 if s.up else 0
                admin = {"": 0, "maint": 1, "drain": 8}[getattr(s, "admin", "")]
                lines.append(f"{be_id} {b.name} {s.index + 1} {s.name} {s.address} {op} {admin} "
                             f"{getattr(s, 'uweight', s.weight)} {s.spec.weight} "
                             f"{int(view.server_last_change(s))} 1 {result} {health} 0 0 0 0 - {s.port}")
        return "\n".join(lines) + "\n\n"

    def show_sess(self, args: list[str]) -> str:
        e = self.engine
        if e.state is None:
            return "\n"
        now = e.state.now
        out = []
        for conn in list(e.state.conns):
            fe = getattr(conn, "fe", None)
            ctx = getattr(conn, "ctx", None)
            if fe is None or ctx is None:
                continue  # server-side connections are listed with their client
            ex = getattr(conn, "current", None)
            s = getattr(conn, "server", None) or (getattr(ex, "server", None) if ex is not None else None)
            age = max(0, int(now - getattr(conn, "t_accept", now)))
            proto = "tcpv6" if ":" in ctx.client_ip else "tcpv4"
            out.append(f"0x{id(conn):x}: proto={proto} src={ctx.client_ip}:{ctx.client_port} "
                       f"fe={fe.name} be={fe.backend.name} srv={s.name if s else '<none>'} age={age}s")
        return "\n".join(out) + ("\n" if out else "") + "\n"

    # --- change ----------------------------------------------------------------------------

    def _server(self, ref: str) -> tuple[Backend, Server]:
        b_name, sep, s_name = ref.partition("/")
        if not sep:
            raise CommandError("Require 'backend/server'.")
        b = self.engine.backends.get(b_name)
        if b is None:
            raise CommandError("No such backend.")
        s = b.by_name.get(s_name)
        if s is None:
            raise CommandError("No such server.")
        return b, s

    def set_server(self, args: list[str]) -> str:
        if len(args) < 3:
            raise CommandError("'set server <b>/<s>' expects 'weight <w>', 'state ready|drain|maint' "
                               "or 'maxconn <n>'.")
        b, s = self._server(args[0])
        what, value = args[1], args[2]
        if what == "weight":
            return self._weight(b, s, value)
        if what == "state":
            return self.state(b, s, value)
        if what == "maxconn":
            s.maxconn = _int(value, "maxconn")
            return "\n"
        raise CommandError("'set server <b>/<s>' only supports 'weight', 'state' and 'maxconn'.")

    def set_weight(self, args: list[str]) -> str:
        if len(args) != 2:
            raise CommandError("Require 'backend/server' and 'weight' or 'weight%'.")
        b, s = self._server(args[0])
        return self._weight(b, s, args[1])

    def get_weight(self, args: list[str]) -> str:
        if len(args) != 1:
            raise CommandError("Require 'backend/server'.")
        _, s = self._server(args[0])
        return f"{s.weight} (initial {s.spec.weight})\n\n"

    def _weight(self, b: Backend, s: Server, value: str) -> str:
        if value.endswith("%"):  # relative to the initial (config) weight, as HAProxy
            pct = _int(value[:-1], "weight")
            weight = (s.spec.weight * pct + 50) // 100
        else:
            weight = _int(value, "weight")
        if not 0 <= weight <= WEIGHT_MAX:
            raise CommandError(f"Weight must be between 0 and {WEIGHT_MAX}.")
        b.set_user_weight(s, weight)
        return "\n"

    def state(self, b: Backend, s: Server, state: str) -> str:
        admin = {"ready": "", "drain": "drain", "maint": "maint"}.get(state)
        if admin is None:
            raise CommandError("'set server <srv> state' expects 'ready', 'drain' and 'maint'.")
        b.set_admin(s, admin)
        return "\n"

    def enable_server(self, args: list[str]) -> str:
        b, s = self._server(args[0] if args else "")
        b.set_admin(s, "")
        return "\n"

    def disable_server(self, args: list[str]) -> str:
        b, s = self._server(args[0] if args else "")
        b.set_admin(s, "maint")
        return "\n"

    def add_server(self, args: list[str]) -> str:
        """add server B/S ADDR:PORT [weight N] [maxconn N] [backup] [check] [enabled]: as
        HAProxy's dynamic servers, created in maintenance unless `enabled` (then `enable
        server`); checked only with `check` (the backend's check, else a connect check)."""
        if len(args) < 2:
            raise CommandError("'add server' expects <backend>/<server> <addr>:<port> [options].")
        b_name, sep, s_name = args[0].partition("/")
        b = self.engine.backends.get(b_name)
        if not sep or not s_name:
            raise CommandError("Require 'backend/server'.")
        if b is None:
            raise CommandError("No such backend.")
        if s_name in b.by_name:
            raise CommandError("Already exists a server with the same name in backend.")
        try:
            host, port = split_host_port(args[1])
        except ValueError as exc:
            raise CommandError(f"Invalid address: {exc}.") from None
        if not host or port is None or not 0 < port < 65536:
            raise CommandError(f"Invalid address '{args[1]}': expects <addr>:<port>.")
        kw: dict[str, object] = {"checked": False}
        enabled = False
        rest = args[2:]
        while rest:
            word = rest.pop(0)
            if word in ("weight", "maxconn") and rest:
                kw[word] = _int(rest.pop(0), word)
            elif word == "backup":
                kw["backup"] = True
            elif word == "check":
                kw["checked"] = True
                if b.spec.check is None:  # HAProxy: `check` alone is a connect check
                    kw["check"] = CheckSpec()
            elif word == "enabled":
                enabled = True
            elif word == "disabled":
                enabled = False
            else:
                raise CommandError(f"'{word}' : unknown keyword (supported: weight, maxconn, backup, check, "
                                   "enabled).")
        if not 0 <= int(kw.get("weight", 1)) <= WEIGHT_MAX:
            raise CommandError(f"Weight must be between 0 and {WEIGHT_MAX}.")
        spec = ServerSpec(s_name, host, port, **kw)  # type: ignore[arg-type]
        server = b.add_server(spec, admin="" if enabled else "maint")
        if spec.checked:
            self._checks(create=True).watch(b, server)
        return "New server registered.\n\n"

    def _checks(self, create: bool = False):  # type: ignore[no-untyped-def]
        """The engine's check runner (made for the first server checked at run time)."""
        health = self.engine.health
        if health is None:
            return None
        if health.runner is None and create:
            from virtserve.checks.runner import CheckRunner

            health.runner = CheckRunner(health.state, health.backends)
        return health.runner

    def del_server(self, args: list[str]) -> str:
        """As HAProxy: only a server in maintenance (or drain) with nothing in flight."""
        b, s = self._server(args[0] if args else "")
        if getattr(s, "admin", "") == "":
            raise CommandError("Only servers in maintenance mode can be deleted.")
        if s.active:
            raise CommandError("Server still has connections attached to it, cannot remove it.")
        checks = self._checks()
        if checks is not None:
            checks.unwatch(s)
        b.remove_server(s)
        pool = self.engine.pool
        if pool is not None:  # its parked keep-alive connections go with it
            while (conn := pool.acquire(s)) is not None:
                conn.transport.close()
        return "Server deleted.\n\n"

    def set_maxconn_frontend(self, args: list[str]) -> str:
        if len(args) != 2:
            raise CommandError("Require 'frontend' and 'value'.")
        fe = self.engine.frontends.get(args[0])
        if fe is None:
            raise CommandError("No such frontend.")
        fe.maxconn = _int(args[1], "maxconn")
        if not fe.maxconn:
            fe.maxconn = 1 << 30  # 0 lifts the limit, as a value no count reaches
        _admit(fe)
        return "\n"

    def set_maxconn_server(self, args: list[str]) -> str:
        if len(args) != 2:
            raise CommandError("Require 'backend/server' and 'value'.")
        _, s = self._server(args[0])
        s.maxconn = _int(args[1], "maxconn")
        return "\n"


def _admit(fe) -> None:  # type: ignore[no-untyped-def]
    """A raised maxconn admits the connections waiting for a slot."""
    waiting = fe.waiting
    while waiting and fe.current < fe.maxconn:
        waiting.popleft().admit(fe._protocol(fe))


def _signed_int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CommandError(f"Invalid {what} '{text}': expects a whole number.") from None


def _int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"Invalid {what} '{text}': expects a whole number.") from None
    if value < 0:
        raise CommandError(f"Invalid {what} '{text}': must be 0 or more.")
    return value
