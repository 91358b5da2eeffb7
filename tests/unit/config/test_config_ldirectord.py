"""ldirectord.cf parses into the same model as the native TOML, with ldirectord's defaults."""
import pytest

from virtserve.engine.config import ConfigError, parse_native
from virtserve.engine.config.ldirectord import parse, parse_with_notices
from virtserve.engine.config.model import CheckSpec

LDIRECTORD = """\
# Global Directives
checktimeout=3
checkinterval=5
autoreload=yes
logfile="/var/log/ldirectord.log"
quiescent=yes

virtual=127.0.0.1:8080
\tchecktype=negotiate
\tfallback=127.0.0.1:9000 gate
\tprotocol=tcp
\treal=127.0.0.1:9001 gate
\treal=127.0.0.1:9002 masq 3
\treceive="still alive"
\trequest="test.html"
\tscheduler=wlc
\tservice=http
\tpersistent=600
\tnetmask=255.255.255.0
"""

TOML = """\
autoreload = true

[listen."127.0.0.1:8080"]
bind = "127.0.0.1:8080"
mode = "tcp"
scheduler = "wlc"
quiescent = true
fallback = { name = "fallback", address = "127.0.0.1:9000" }
persistent = { timeout = 600, netmask = 24 }
check = { type = "http", request = "/test.html", receive = "still alive", interval = 5, timeout = 3, negotiate-timeout = 30, rise = 1, fall = 1 }
servers = [
  { name = "127.0.0.1:9001", address = "127.0.0.1:9001" },
  { name = "127.0.0.1:9002", address = "127.0.0.1:9002", weight = 3 },
]
"""


def test_same_service_as_toml_gives_an_equal_model():
    assert parse(LDIRECTORD, source="ldirectord.cf") == parse_native(TOML, source="lb.toml")


def test_defaults_are_ldirectords():
    config = parse("virtual=127.0.0.1:80\n    real=127.0.0.1:81\n", source="l.cf")
    (backend,) = config.backends
    assert backend.scheduler == "wrr" and backend.quiescent is True and backend.mode == "tcp"
    assert backend.check == CheckSpec(type="http", interval=10, timeout=5, negotiate_timeout=30, rise=1, fall=1)
    assert backend.servers[0].weight == 1


def test_gate_and_ipip_are_served_as_nat_with_a_notice_and_ranges_expand():
    config, notices = parse_with_notices(
        "virtual=127.0.0.1:80\n  real=127.0.0.2->127.0.0.4:80 ipip 2\n  checktype=connect\n", source="l.cf")
    assert [(s.address, s.weight) for s in config.backends[0].servers] == [
        ("127.0.0.2", 2), ("127.0.0.3", 2), ("127.0.0.4", 2)]
    assert any("l.cf:2" in n and "NAT" in n for n in notices)


@pytest.mark.parametrize("text, line, words", [
    ("virtual=127.0.0.1:80\n  real=127.0.0.1\n", 2, "needs a port"),
    ("virtual=127.0.0.1:80\n  real=127.0.0.1:81 bogus\n", 2, "unexpected 'bogus'"),
    ("virtual=127.0.0.1:80\n  frobnicate=1\n", 2, "unknown directive 'frobnicate'"),
    ("frobnicate=1\n", 1, "unknown directive"),
    ("  real=127.0.0.1:81\n", 1, "outside of a virtual"),
    ("virtual=127.0.0.1:80\n  protocol=udp\n  real=127.0.0.1:81\n", 2, "IPVS"),
    ("virtual=127.0.0.1:80\n  checktype=magic\n", 2, "checktype must be"),
    ("virtual=127.0.0.1:21\n  real=127.0.0.1:22\n", 1, "needs service="),
    ("virtual=127.0.0.1:80\n  service=mysql\n", 2, "not supported"),
    ("quiescent=maybe\nvirtual=127.0.0.1:80\n", 1, "yes or no"),
    ("virtual=127.0.0.1:80\n  checkinterval=soon\n", 2, "number of seconds"),
    ("virtual=127.0.0.1:80\n  scheduler=nope\n  real=127.0.0.1:81\n", 1, "unknown scheduler"),
    ("virtual=127.0.0.1:80\n  real=127.0.0.1:81\n  receive=\"[\"\n", 3, "not a valid regular expression"),
])
def test_errors_name_the_line(text, line, words):
    with pytest.raises(ConfigError) as err:
        parse(text, source="l.cf")
    assert str(err.value).startswith(f"l.cf:{line}: ") and words in str(err.value)
