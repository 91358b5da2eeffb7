"""What the stats page, `show stat`, the CSV and the metrics show, read from the live objects at
the moment they ask. Every read of server state goes through the small accessors here, so when
health checks add statuses only this module learns them."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from virtserve.engine.admin.counters import Counters, summed
from virtserve.engine.admin.live import folded

if TYPE_CHECKING:
    from virtserve.engine.backend import Backend, Server
    from virtserve.engine.engine import Engine
    from virtserve.engine.frontend import Frontend

# HAProxy's CSV columns (management.txt, "show stat"), in its order, up to `algo`. Columns with
# nothing behind them here stay empty, as HAProxy leaves them.
CSV_FIELDS = (
    "pxname", "svname", "qcur", "qmax", "scur", "smax", "slim", "stot", "bin", "bout", "dreq",
    "dresp", "ereq", "econ", "eresp", "wretr", "wredis", "status", "weight", "act", "bck",
    "chkfail", "chkdown", "lastchg", "downtime", "qlimit", "pid", "iid", "sid", "throttle",
    "lbtot", "tracked", "type", "rate", "rate_lim", "rate_max", "check_status", "check_code",
    "check_duration", "hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other",
    "hanafail", "req_rate", "req_rate_max", "req_tot", "cli_abrt", "srv_abrt", "comp_in",
    "comp_out", "comp_byp", "comp_rsp", "lastsess", "last_chk", "last_agt", "qtime", "ctime",
    "rtime", "ttime", "agent_status", "agent_code", "agent_duration", "check_desc", "agent_desc",
    "check_rise", "check_fall", "check_health", "agent_rise", "agent_fall", "agent_health",
    "addr", "cookie", "mode", "algo",
)
TYPE_FRONTEND, TYPE_BACKEND, TYPE_SERVER = 0, 1, 2


# --- server state accessors --------------------------------------------------------------------

def server_status(s: Server) -> str:
    """UP, DOWN, MAINT or DRAIN, as HAProxy's stats name them."""
    admin = getattr(s, "admin", "")
    if admin == "maint":
        return "MAINT"
    if not s.up or not s.healthy:  # quiescent checks keep a failed server `up` at weight 0
        return "DOWN"
    return "DRAIN" if admin == "drain" else "UP"


def server_last_change(s: Server) -> float:
    """Seconds since the server's status last changed."""
    return max(0.0, time.monotonic() - getattr(s, "last_change", time.monotonic()))


# The checks' reasons (HAProxy's wording) -> HAProxy's short check status codes.
_CHECK_CODES = {
    "Layer4 check passed": "L4OK", "Layer4 connection problem": "L4CON", "Layer4 timeout": "L4TOUT",
    "Layer6 invalid response": "L6RSP", "Layer7 check passed": "L7OK", "Layer7 wrong status": "L7STS",
    "Layer7 invalid response": "L7RSP", "Layer7 timeout": "L7TOUT",
}


def server_check(s: Server) -> tuple[str, str, float | None]:
    """(check status like "L4OK", check code, duration in seconds) when checks run; else blanks."""
    result = s.last_check
    if result is None:
        return "", "", None
    status = _CHECK_CODES.get(result.reason, "L7OK" if result.ok else "L7RSP")
    return status, "" if result.code is None else str(result.code), result.duration


def check_machines(engine: Engine) -> dict[int, Any]:
    """The rise/fall machine of each checked server, by id(server) (checks/base.HealthMachine:
    rise, fall, health, failures), read when the stats are."""
    health = engine.health
    runner = health.runner if health is not None else None
    if runner is None:
        return {}
    return {id(check.server): check.health for check in runner.checks}


def _check_columns(s: Server, machine: Any) -> dict[str, Any]:
    """HAProxy's check columns that need the machine or the result's words."""
    result = s.last_check
    out: dict[str, Any] = {}
    if result is not None:
        out["check_desc"] = result.reason
        out["last_chk"] = result.info or result.reason
    if machine is not None:
        out.update(chkfail=machine.failures, check_rise=machine.rise, check_fall=machine.fall,
                   check_health=machine.health)
    return out


def backend_current(b: Backend) -> int:
    """A backend's current sessions, sampled now; its max sessions follows what is seen. The
    data path counts only per server, so a backend's max is at least its busiest server's max."""
    current = sum(s.active for s in b.servers)
    c = b.counters
    c.seen(current)
    c.seen(max((s.counters.max_cur for s in b.servers), default=0))
    return current


def backend_status(b: Backend) -> str:
    return "UP" if any(server_status(s) in ("UP", "DRAIN") for s in b.servers) or not b.servers else "DOWN"


# --- totals: summed from the one Counters each request went to (admin/accounting.py) ----------

def backend_counters(b: Backend) -> Counters:
    parts = [b.counters, *(s.counters for s in b.servers), *b.removed_counters]
    if b.fallback is not None:
        parts.append(b.fallback.counters)
    total = summed(parts)
    total.max_cur = b.counters.max_cur  # sampled when read (rows, metrics)
    return total


def frontend_counters(fe: Frontend) -> Counters:
    own = fe.counters
    if fe.tally:
        return own
    total = summed((own, backend_counters(fe.backend)))
    total.max_cur, total.denied = own.max_cur, own.denied
    return total


# --- rows ---------------------------------------------------------------------------------------

def _ms(seconds: float) -> int:
    return int(seconds * 1000 + 0.5)


def _common(c: Any) -> dict[str, Any]:
    h = c.hrsp
    return {
        "bin": c.bytes_in, "bout": c.bytes_out, "hrsp_1xx": h[1], "hrsp_2xx": h[2], "hrsp_3xx": h[3],
        "hrsp_4xx": h[4], "hrsp_5xx": h[5], "hrsp_other": h[0],
    }


def frontend_row(fe: Frontend, iid: int) -> dict[str, Any]:
    c = frontend_counters(fe)
    return {
        "pxname": fe.name, "svname": "FRONTEND", "scur": fe.current, "smax": c.max_cur,
        "slim": fe.maxconn or "", "stot": fe.total, "dreq": c.denied, "ereq": c.req_errors,
        "status": "OPEN", "pid": 1, "iid": iid, "sid": 0, "type": TYPE_FRONTEND,
        "req_tot": c.requests if fe.spec.mode == "http" else "", "mode": fe.spec.mode,
        **_common(c),
    }


def backend_row(b: Backend, iid: int, current: int) -> dict[str, Any]:
    c = backend_counters(b)
    active = [s for s in b.servers if not s.backup]
    return {
        "pxname": b.name, "svname": "BACKEND", "qcur": 0, "qmax": 0, "scur": current,
        "smax": c.max_cur, "stot": b.total, "dreq": c.denied, "econ": c.conn_errors,
        "eresp": c.resp_errors, "wretr": c.retries, "wredis": c.redispatches,
        "status": backend_status(b),
        "weight": sum(s.weight for s in active if server_status(s) == "UP"),
        "act": sum(1 for s in active if server_status(s) == "UP"),
        "bck": sum(1 for s in b.servers if s.backup and server_status(s) == "UP"),
        "lastchg": "", "pid": 1, "iid": iid, "sid": 0, "lbtot": b.total, "type": TYPE_BACKEND,
        "req_tot": c.requests if b.spec.mode == "http" else "", "cli_abrt": c.cli_aborts,
        "srv_abrt": c.srv_aborts, "qtime": 0, "ctime": _ms(c.ctime), "rtime": _ms(c.rtime),
        "ttime": _ms(c.ttime), "mode": b.spec.mode, "algo": b.spec.scheduler, **_common(c),
    }


def server_row(b: Backend, s: Server, iid: int, machine: Any = None) -> dict[str, Any]:
    c = s.counters
    status = server_status(s)
    check, code, duration = server_check(s)
    host = f"[{s.address}]" if ":" in s.address else s.address
    return {
        "pxname": b.name, "svname": s.name, "qcur": 0, "qmax": 0, "scur": s.active,
        "smax": c.max_cur, "slim": s.maxconn or "", "stot": s.total, "econ": c.conn_errors,
        "eresp": c.resp_errors, "wretr": c.retries, "wredis": c.redispatches, "status": status,
        "weight": s.weight, "act": 0 if s.backup else 1, "bck": 1 if s.backup else 0,
        "chkfail": getattr(s, "check_failures", "") if check else "",
        "lastchg": int(server_last_change(s)), "pid": 1, "iid": iid, "sid": s.index + 1,
        "lbtot": s.total, "type": TYPE_SERVER, "check_status": check, "check_code": code,
        "check_duration": "" if duration is None else _ms(duration),
        "cli_abrt": c.cli_aborts, "srv_abrt": c.srv_aborts, "qtime": 0, "ctime": _ms(c.ctime),
        "rtime": _ms(c.rtime), "ttime": _ms(c.ttime), "addr": f"{host}:{s.port}",
        "mode": b.spec.mode, **_common(c), **_check_columns(s, machine),
    }


def rows(engine: Engine) -> list[dict[str, Any]]:
    """Every frontend, then each backend's servers and the backend itself, as HAProxy lists
    them, with the bytes of the connections still open (live.py). A backend's max sessions is
    sampled here (the data path counts only per server)."""
    with folded(engine):
        return list(_rows(engine))


def _rows(engine: Engine) -> Iterator[dict[str, Any]]:
    iid = 0
    for fe in engine.frontends.values():
        iid += 1
        yield frontend_row(fe, iid)
    machines = check_machines(engine)
    for b in engine.backends.values():
        iid += 1
        for s in b.servers:
            yield server_row(b, s, iid, machines.get(id(s)))
        yield backend_row(b, iid, backend_current(b))


def csv_text(engine: Engine, keep: Callable[[dict[str, Any]], bool] | None = None) -> str:
    """HAProxy's CSV; `keep` picks rows (show stat's filters)."""
    lines = ["# " + ",".join(CSV_FIELDS)]
    for row in rows(engine):
        if keep is None or keep(row):
            lines.append(",".join(_csv_cell(row.get(f, "")) for f in CSV_FIELDS))
    return "\n".join(lines) + "\n"


def _csv_cell(value: Any) -> str:
    text = str(value)
    return text.replace(",", " ") if "," in text else text
