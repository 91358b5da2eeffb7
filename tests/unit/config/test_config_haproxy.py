"""haproxy.cfg parses into the same model as the native TOML, with every error as FILE:LINE."""
import pytest

from virtserve.engine.config import ConfigError, ConfigErrors, parse_native
from virtserve.engine.config.haproxy import parse, parse_with_notices

HAPROXY = """\
global
    daemon
    log /dev/log local0
    nbthread 4

defaults
    mode http
    timeout connect 5000      # bare numbers are milliseconds
    timeout client 30s
    timeout server 1m
    timeout http-request 10s
    timeout http-keep-alive 2s
    retries 2
    option httplog

frontend web
    bind 127.0.0.1:8080
    bind [::1]:8080
    option forwardfor
    maxconn 500
    default_backend app

backend app
    balance wrr
    server web1 127.0.0.1:9001 weight 3 maxconn 10
    server web2 127.0.0.1:9002
    server sorry 127.0.0.1:9003 backup

listen mail
    bind 127.0.0.1:2525
    mode tcp
    balance sh
    timeout client 1h
    server m1 127.0.0.1:2526
    server m2 127.0.0.1:2527
"""

TOML = """\
[defaults]
mode = "http"
retries = 2
timeout = { connect = "5s", client = "30s", server = "1m", http-request = "10s", keep-alive = "2s" }

[frontend.web]
bind = ["127.0.0.1:8080", "[::1]:8080"]
forwardfor = true
maxconn = 500
backend = "app"

[backend.app]
scheduler = "wrr"
servers = [
  { name = "web1", address = "127.0.0.1:9001", weight = 3, maxconn = 10 },
  { name = "web2", address = "127.0.0.1:9002" },
  { name = "sorry", address = "127.0.0.1:9003", backup = true },
]

[listen.mail]
bind = "127.0.0.1:2525"
mode = "tcp"
scheduler = "sh"
timeout = { client = "1h" }
servers = [{ name = "m1", address = "127.0.0.1:2526" }, { name = "m2", address = "127.0.0.1:2527" }]
"""


def test_same_topology_as_toml_gives_an_equal_model():
    assert parse(HAPROXY, source="haproxy.cfg") == parse_native(TOML, source="lb.toml")


def test_process_keywords_are_accepted_with_one_notice_each():
    _, notices = parse_with_notices(HAPROXY, source="haproxy.cfg")
    assert "haproxy.cfg:2: notice: global 'daemon' has no effect in virtserve" in notices
    assert any(n.startswith("haproxy.cfg:4:") and "nbthread" in n for n in notices)
    assert any(n.startswith("haproxy.cfg:14:") and "httplog" in n for n in notices)


def test_listen_with_address_on_the_section_line_and_quoting():
    config = parse('listen "web site" 127.0.0.1:80,127.0.0.1:81\n  mode http\n'
                   '  server a 127.0.0.1:9001 # comment\n  server b\\ c 127.0.0.1:9002\n', source="h.cfg")
    (fe,) = config.frontends
    assert fe.name == "web site" and [(b.address, b.port) for b in fe.binds] == [("127.0.0.1", 80), ("127.0.0.1", 81)]
    assert [s.name for s in config.backends[0].servers] == ["a", "b c"]


def test_balance_arguments_become_scheduler_options():
    from virtserve.engine.config.haproxy import _Parser, _Proxy, _kw_balance
    proxy = _Proxy("backend", "b", "h.cfg:1", None)
    _kw_balance(_Parser("h.cfg"), proxy, ["uri", "len", "10", "depth", "2", "whole"], "h.cfg:2")
    assert proxy.settings["scheduler"] == "uri"
    assert proxy.settings["scheduler_options"] == {"len": 10, "depth": 2, "whole": True}
    _kw_balance(_Parser("h.cfg"), proxy, ["url_param", "userid"], "h.cfg:2")
    assert proxy.settings["scheduler_options"] == {"param": "userid"}
    _kw_balance(_Parser("h.cfg"), proxy, ["hdr(Host)", "use_domain_only"], "h.cfg:3")
    assert proxy.settings["scheduler_options"] == {"header": "Host", "use-domain-only": True}
    _kw_balance(_Parser("h.cfg"), proxy, ["random(3)"], "h.cfg:4")
    assert (proxy.settings["scheduler"], proxy.settings["scheduler_options"]) == ("random", {"draws": 3})


def test_every_error_is_reported_with_file_and_line_in_order():
    text = ("frontend x\n  bind :80\n  bogus 1\n  timeout client 5q\n  default_backend y\n"
            "backend y\n  server a 10.0.0.1\n  server b 10.0.0.2:80 weight\n  option nonsense\n")
    with pytest.raises(ConfigErrors) as err:
        parse(text, source="bad.cfg")
    lines = str(err.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == ["bad.cfg:3", "bad.cfg:4", "bad.cfg:7", "bad.cfg:8", "bad.cfg:9"]
    assert "unknown keyword 'bogus'" in lines[0]
    assert "'q'" in lines[1]
    assert "needs a port" in lines[2]
    assert "weight needs a value" in lines[3]
    assert "nonsense" in lines[4]


@pytest.mark.parametrize("text, line, words", [
    ('frontend x\n  bind 127.0.0.1:80 "oops\n  default_backend x\nbackend x\n', 2, "unterminated quote"),
    ("server a 127.0.0.1:80\n", 1, "outside of any section"),
    ("backend b\n  bind :80\n", 2, "not allowed in a backend"),
    ("frontend f\n  bind :80\n", 1, "no default_backend"),
    ("frontend f\n  bind :80\n  default_backend nope\n", 3, "'nope' not found"),
    ("backend b\n  balance nosuch\n", 2, "unknown scheduler 'nosuch'"),
    ("backend b\n  server a 127.0.0.1:70000\n", 2, "port"),
    ("global\n  frobnicate\n", 2, "unknown keyword 'frobnicate' in section 'global'"),
    ("listen l\n  bind :80\n  mode udp\n", 3, "mode must be"),
])
def test_errors_name_the_line(text, line, words):
    with pytest.raises(ConfigError) as err:
        parse(text, source="h.cfg")
    assert str(err.value).startswith(f"h.cfg:{line}: ") and words in str(err.value)


def test_every_haproxy_algorithm_loads_by_its_haproxy_words():
    for balance in ("roundrobin", "static-rr", "leastconn", "first", "source", "uri len 10 depth 2",
                    "url_param userid", "hdr(host) use_domain_only", "random(3)", "rdp-cookie(mstshash)"):
        mode = "tcp" if balance.startswith("rdp") else "http"
        config = parse(f"backend b\n  mode {mode}\n  balance {balance}\n  hash-type consistent djb2\n"
                       "  server a 127.0.0.1:1\n", source="h.cfg")
        assert config.backends[0].scheduler == balance.split()[0].split("(")[0]


def test_hard_stop_after_is_the_grace_time():
    config = parse("global\n  hard-stop-after 30s\nlisten l\n  bind :80\n  server a 127.0.0.1:1\n", source="h.cfg")
    assert config.grace == 30.0
