"""`virtserve check` names every error of a file, each as FILE:LINE: message, not only the
first: for TOML (each section, each server), haproxy.cfg and ldirectord.cf alike."""
import subprocess
import sys

import pytest

from virtserve.engine.config import ConfigError, load

NATIVE_PARSE = """\
grace = "x"

[frontend.web]
bind = "127.0.0.1:8080"
backend = "app"
maxconn = "many"

[backend.app]
servers = [{ address = "127.0.0.1" }, { address = "127.0.0.1:9001", weight = "heavy" }]

[backend.other]
servers = [{ address = "127.0.0.1:9002" }]
colour = "red"
"""

NATIVE_KEYS = """\
[frontend.web]
bind = "127.0.0.1"
backend = 3
maxconn = "many"
colour = "red"
size = 3

[backend.app]
retries = "x"
cookie = { name = "LB", mode = "eat" }
servers = [{ address = "127.0.0.1:1", weight = "w" }]
timeout = { connect = "soon" }
"""

NATIVE_CHECKS = """\
[frontend.web]
bind = "127.0.0.1:8080"
backend = "app"

[backend.app]
retries = -1
servers = [{ address = "127.0.0.1:9001" }]

[backend.more]
servers = [{ address = "127.0.0.1:9002", weight = 1000 }]

[frontend.two]
bind = "127.0.0.1:8080"
backend = "nowhere"
"""

HAPROXY = """\
global
    nosuchthing
frontend web
    bind 127.0.0.1:8080
    default_backend app
    timeout client forever
backend app
    balance roundrobin
    server a 127.0.0.1 check
    server b 127.0.0.1:9002 weight lots
"""

LDIRECTORD = """\
checktimeout=never
virtual=127.0.0.1:80
    real=127.0.0.1:81 masq
    scheduler=wlc
    frobnicate=yes
virtual=127.0.0.1:81
    real=127.0.0.1:82 masq heavy
quiescent=maybe
"""


@pytest.mark.parametrize("name,text,expected", [
    ("lb.toml", NATIVE_PARSE, [(1, "grace"), (6, "maxconn"), (9, "has no port"), (9, "weight"), (13, "colour")]),
    ("lb.toml", NATIVE_KEYS, [(2, "has no port"), (3, "'backend'"), (4, "maxconn"), (5, "colour"), (6, "size"),
                              (9, "retries"), (10, "cookie mode"), (11, "weight"), (12, "connect")]),
    ("lb.toml", NATIVE_CHECKS, [(6, "retries"), (10, "weight"), (13, "already bound"), (14, "nowhere")]),
    ("haproxy.cfg", HAPROXY, [(2, "nosuchthing"), (6, "timeout client"), (9, "needs a port"), (10, "weight")]),
    ("ldirectord.cf", LDIRECTORD, [(1, "checktimeout"), (5, "frobnicate"), (6, "needs service="), (7, "real="),
                                      (8, "quiescent")]),
])
def test_every_error_is_named_with_its_line(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(path)
    lines = str(err.value).splitlines()
    assert len(lines) == len(expected), lines
    for line, (number, words) in zip(lines, expected):
        assert line.startswith(f"{path}:{number}: ") and words in line, line

    result = subprocess.run([sys.executable, "-m", "virtserve", "check", str(path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    for number, words in expected:
        assert any(l.startswith(f"{path}:{number}: ") and words in l for l in result.stderr.splitlines()), \
            (number, words, result.stderr)
