"""Mangled files of every format give a model or FILE:LINE errors, never a traceback; rich files
convert to TOML that loads back equal."""
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from virtserve.engine.config import ConfigError, parse_native
from virtserve.engine.config.haproxy import parse as parse_haproxy
from virtserve.engine.config.model import Config
from virtserve.engine.config.toml_writer import to_toml

# The convert -> load round trip of any model: test_config_roundtrip.py.


VALID_TOML = """\
[defaults]
mode = "http"
timeout = { connect = "5s", client = "30s" }

[frontend.web]
bind = ["127.0.0.1:8080"]
backend = "app"

[backend.app]
scheduler = "wrr"
servers = [{ name = "a", address = "127.0.0.1:9001", weight = 2 }, { address = "127.0.0.1:9002" }]
"""

VALID_HAPROXY = """\
global
    daemon
defaults
    mode http
    timeout connect 5s
frontend web
    bind 127.0.0.1:8080
    default_backend app
backend app
    balance wrr
    server a 127.0.0.1:9001 weight 2
    server b 127.0.0.1:9002 backup
"""

VALID_LDIRECTORD = """\
checktimeout=3
checkinterval=5
quiescent=yes
virtual=127.0.0.1:80
    real=127.0.0.1:81 masq 2
    real=127.0.0.1:82 gate
    fallback=127.0.0.1:99
    service=http
    request="test.html"
    receive="still alive"
    scheduler=wlc
    persistent=300
"""

# The SUSE guide's example (as tests/integration/test_guide_haproxy.py loads it): stats in-band,
# cookies, checks, legacy reqadd, httpclose.
VALID_GUIDE = """\
global
  maxconn 256
  daemon
defaults
  mode    http
  retries 3
  option redispatch
  timeout connect   5000
  timeout client    50s
frontend LB
  bind 127.0.0.1:8080
  reqadd X-Forwarded-Proto:\\ http
  default_backend LB
backend LB
  stats enable
  stats uri /stats
  stats realm Haproxy\\ Statistics
  stats auth haproxy:password
  balance roundrobin
  option  httpclose
  option forwardfor
  cookie LB insert
  http-request set-header X-Seen yes if { path_beg /api }
  option httpchk GET /robots.txt HTTP/1.0
  server web1-srv 127.0.0.1:9001 cookie web1-srv check
  server web2-srv 127.0.0.1:9002 cookie web2-srv check
"""

_LOCATED = re.compile(r"^\S+:\d+(:|\.)")


def _mutate(text: str, data) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["delete", "duplicate", "char", "truncate", "swap"]))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "char" and lines[i]:
            j = data.draw(st.integers(0, len(lines[i]) - 1))
            c = data.draw(st.sampled_from(list("\"'[]{}=#:,\\ x9-")))
            lines[i] = lines[i][:j] + c + lines[i][j + 1:]
        elif op == "truncate":
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))] + "\n"
        elif op == "swap":
            k = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[k] = lines[k], lines[i]
    return "".join(lines)


@settings(max_examples=300, deadline=None)  # timings vary on a shared machine; the test bounds nothing
@given(st.data())
def test_mangled_files_give_a_model_or_a_located_error(data):
    from virtserve.engine.config.ldirectord import parse as parse_ldirectord

    for parse, text, source in ((parse_native, VALID_TOML, "lb.toml"), (parse_haproxy, VALID_HAPROXY, "haproxy.cfg"),
                                (parse_haproxy, VALID_GUIDE, "guide.cfg"),
                                (parse_ldirectord, VALID_LDIRECTORD, "ldirectord.cf"),
                                (parse_native, to_toml(parse_haproxy(VALID_GUIDE)), "guide.toml")):
        mangled = _mutate(text, data)
        try:
            assert isinstance(parse(mangled, source=source), Config)
        except ConfigError as exc:
            for line in str(exc).splitlines():
                assert line.startswith(source + ":") and re.match(r"^\S+:\d+: ", line), (mangled, line)


def test_rich_haproxy_and_ldirectord_files_convert_to_toml_that_loads_back_equal(tmp_path):
    from pathlib import Path

    from virtserve.engine.config import load, parse_native

    ldirectord = tmp_path / "ldirectord.cf"
    ldirectord.write_text("checktimeout=3\ncheckinterval=5\nquiescent=yes\nemailalert=ops@example.com\n"
                          "virtual=127.0.0.1:80\n  real=127.0.0.1:81 masq 2\n  real=127.0.0.1:82 gate\n"
                          "  fallback=127.0.0.1:99\n  service=http\n  request=\"test.html\"\n"
                          "  receive=\"still alive\"\n  scheduler=wlc\n  persistent=300\n  netmask=255.255.255.0\n")
    for path in (Path(__file__).with_name("rich_haproxy.cfg"), ldirectord):
        original = load(path)
        assert parse_native(to_toml(original), source="converted.toml") == original, path.name
