"""Health-check settings in TOML: what they become in the model, and file:line errors."""
from textwrap import dedent

import pytest

from unit.config.test_config_native_errors import error

from virtserve.engine.config import parse_native
from virtserve.engine.config.model import AlertSpec, CheckSpec, ServerSpec


def parse(text: str):
    return parse_native(dedent(text), source="lb.toml")


def test_full_example():
    b = parse("""\
        [backend.app]
        check = { type = "http", request = "/health", receive = "ok", interval = "2s", timeout = "1s", rise = 2, fall = 3 }
        quiescent = true
        slowstart = "30s"
        allbackups = true
        fallback = "127.0.0.1:9000"
        on-marked-down = "shutdown-sessions"
        alert = { to = "ops@example.com", relay = "127.0.0.1:2525", freq = "5m", status = ["starting", "running"] }
        servers = [
          { name = "a", address = "10.0.0.1:80" },
          { name = "b", address = "10.0.0.2:80", check = false },
          { name = "c", address = "10.0.0.3:80", check = { port = 8081, fall = 1 } },
          { name = "d", address = "10.0.0.4:80", backup = true },
        ]
    """).backends[0]
    http = CheckSpec(type="http", request="/health", receive="ok", interval=2.0, timeout=1.0, rise=2, fall=3)
    assert b.check == http
    assert (b.quiescent, b.slowstart, b.allbackups, b.shutdown_sessions) == (True, 30.0, True, True)
    assert b.fallback == ServerSpec("fallback", "127.0.0.1", 9000)
    assert b.alert == AlertSpec(to=("ops@example.com",), relay="127.0.0.1", relay_port=2525, freq=300.0,
                                status=("starting", "running"))
    a, nocheck, own, backup = b.servers
    assert b.check_of(a) == http and b.check_of(nocheck) is None and backup.backup
    assert b.check_of(own) == CheckSpec(type="http", request="/health", receive="ok", interval=2.0,
                                        timeout=1.0, rise=2, fall=1, port=8081)


def test_shorthands_and_defaults():
    b = parse("""\
        [backend.app]
        check = "on"
        servers = [{ address = "10.0.0.1:80", check = { type = "smtp" } }, { address = "10.0.0.2:80" }]
    """).backends[0]
    assert b.check == CheckSpec(type="on")
    assert b.check_of(b.servers[0]) == CheckSpec(type="smtp")
    assert (b.quiescent, b.slowstart, b.fallback, b.alert) == (False, 0.0, None, None)
    b = parse("""\
        [backend.app]
        check = true
        servers = [{ address = "10.0.0.1:80" }]
    """).backends[0]
    assert b.check == CheckSpec()
    b = parse("""\
        [backend.app]
        servers = [{ address = "10.0.0.1:80" }]
    """).backends[0]
    assert b.check is None  # no check configured: servers are always up


@pytest.mark.parametrize("line, message", [
    ('check = { type = "htp" }', "'type' in the check of [backend.app]: expected one of connect"),
    ('check = { receive = "(" }', "bad regular expression '('"),
    ('check = { rise = 0 }', "rise must be a whole number of 1 or more, got 0"),
    ('check = { interval = "-1s" }', "time must not be negative"),
    ('check = { interval = 0 }', "interval must be more than 0"),
    ('check = { port = 70000 }', "port 70000 is out of range 0..65535"),
    ('check = { status = [200, 700] }', "expected an HTTP status (100..599)"),
    ('check = { type = "external" }', 'an external check needs command = ["/path/to/check"]'),
    ('check = { bogus = 1 }', "unknown key 'bogus' in the check of [backend.app]"),
    ('check = 5', "'check' in [backend.app]: expected a table like"),
    ('on-marked-down = "kill"', "expected one of 'shutdown-sessions', 'none', got 'kill'"),
    ('fallback = "127.0.0.1"', "has no port"),
    ('alert = { relay = "127.0.0.1:25" }', "has no recipient"),
    ('alert = { to = "a@b", status = "sometimes" }', "expected all, none, starting, running, stopping"),
    ('slowstart = "fast"', "bad time 'fast'"),
    ('checktype = "on"', "did you mean 'check'?"),
])
def test_errors_name_the_line(line, message):
    e = error(f"""\
        [backend.app]
        {line}  # <-
        servers = [{{ address = "10.0.0.1:80" }}]
    """)
    assert message in e.message, e.message


def test_server_check_error_names_the_server_line():
    e = error("""\
        [backend.app]
        servers = [
          { address = "10.0.0.1:80" },
          { address = "10.0.0.2:80", check = "yes" },  # <-
        ]
    """)
    assert "expected true, false or a table" in e.message
