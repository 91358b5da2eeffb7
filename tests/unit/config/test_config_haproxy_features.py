"""haproxy.cfg keywords of checks, persistence, TLS, PROXY and the stats page map onto the model."""
import pytest

from virtserve.engine.config import ConfigError
from virtserve.engine.config.haproxy import parse
from virtserve.engine.config.model import CheckSpec, CookieSpec, StickSpec


def _backend(text: str):
    return parse(text, source="h.cfg").backends[0]


def test_checks_httpchk_expect_and_per_server_timing():
    be = _backend("""\
backend app
    mode http
    option httpchk GET /robots.txt HTTP/1.0
    http-check expect status 200
    timeout check 2s
    timeout connect 1s
    server a 127.0.0.1:9001 check inter 500 rise 3 fall 4
    server b 127.0.0.1:9002 check
    server c 127.0.0.1:9003
""")
    base = CheckSpec(type="http", method="GET", request="/robots.txt", status=(200,), interval=2.0,
                     timeout=1.0, negotiate_timeout=2.0, rise=2, fall=3)
    assert be.check == base
    a, b, c = be.servers
    assert a.check == CheckSpec(type="http", method="GET", request="/robots.txt", status=(200,), interval=0.5,
                                timeout=1.0, negotiate_timeout=2.0, rise=3, fall=4)
    assert b.check is None and b.checked and not c.checked


def test_httpchk_host_header_in_the_version_becomes_the_virtual_host():
    be = _backend('backend app\n    mode http\n    option httpchk HEAD / HTTP/1.1\\r\\nHost:\\ www.example.com\n'
                  '    server a 127.0.0.1:9001 check\n')
    assert be.check.method == "HEAD" and be.check.virtualhost == "www.example.com"


def test_cookie_stick_redispatch_allbackups_slowstart():
    be = _backend("""\
backend app
    mode http
    cookie LB insert indirect nocache
    option redispatch
    option allbackups
    server web1-srv 127.0.0.1:9001 cookie web1-srv slowstart 10s
    server web2-srv 127.0.0.1:9002 cookie web2-srv backup
""")
    assert be.cookie == CookieSpec(name="LB", mode="insert", indirect=True, nocache=True)
    assert be.redispatch and be.allbackups and be.slowstart == 10.0
    assert [s.cookie for s in be.servers] == ["web1-srv", "web2-srv"]
    be = _backend("backend b\n    stick-table type ip size 10k expire 30m\n    stick on src\n    server a 127.0.0.1:1\n")
    assert be.stick == StickSpec(size=10_000, expire=1800.0)


def test_send_proxy_and_server_tls():
    be = _backend("backend b\n    server a 127.0.0.1:1 send-proxy-v2 ssl verify none sni str(app.internal)\n")
    (server,) = be.servers
    assert server.send_proxy == "v2" and server.ssl.verify == "none" and server.ssl.sni == "app.internal"


def test_a_stats_section_becomes_the_stats_listener():
    config = parse("""\
global
    stats socket /tmp/vs-test.sock level operator
listen stats
    bind 127.0.0.1:8404
    stats enable
    stats uri /stats
    stats realm Haproxy\\ Statistics
    stats auth haproxy:password
    stats hide-version
    stats admin if TRUE
listen web
    bind 127.0.0.1:8080
    server a 127.0.0.1:9001
""", source="h.cfg")
    stats = config.stats
    assert (stats.bind.address, stats.bind.port, stats.uri, stats.realm) == ("127.0.0.1", 8404, "/stats", "Haproxy Statistics")
    assert stats.auth == (("haproxy", "password"),) and stats.hide_version and stats.admin
    assert (stats.socket, stats.socket_level) == ("/tmp/vs-test.sock", "operator")
    assert [f.name for f in config.frontends] == ["web"]


@pytest.mark.parametrize("text, line, words", [
    ("backend b\n    http-check send meth GET\n", 2, "only `http-check expect"),
    ("backend b\n    server a 127.0.0.1:1 check inter soon\n", 2, "inter"),
    ("backend b\n    server a 127.0.0.1:1 disabled\n", 2, "not supported yet"),
    ("backend b\n    stick on hdr(x)\n", 2, "stick on src"),
    ("frontend f\n    bind :80 ssl\n    default_backend b\nbackend b\n", 2, "needs crt"),
    ("listen l\n    bind :80\n    stats enable\n    server a 127.0.0.1:1\n", 3, "stats page needs mode http"),
])
def test_feature_errors_name_the_line(text, line, words):
    with pytest.raises(ConfigError) as err:
        parse(text, source="h.cfg")
    assert f"h.cfg:{line}: " in str(err.value) and words in str(err.value)


def test_acls_use_backend_http_request_and_legacy_reqadd():
    from virtserve.engine.config.conditions import format_condition
    from virtserve.engine.config.haproxy import parse_with_notices

    config, notices = parse_with_notices("""\
frontend web
    mode http
    bind 127.0.0.1:8080
    acl is_api path_beg /api
    acl is_static path_end .css .js
    use_backend api if is_api || { hdr(host) -i api.example.com }
    use_backend static if is_static !is_api
    http-request set-header X-Frontend web
    http-request del-header X-Debug unless LOCALHOST
    http-request redirect scheme https code 301 if { hdr(host) -i old.example.com }
    reqadd X-Forwarded-Proto:\\ http
    default_backend app
backend app
    mode http
    server a 127.0.0.1:9001
backend api
    mode http
    server b 127.0.0.1:9002
backend static
    mode http
    server c 127.0.0.1:9003
""", source="h.cfg")
    (fe,) = config.frontends
    assert [r.backend for r in fe.routes] == ["api", "static"]
    assert format_condition(fe.routes[0].condition) == "is_api || { hdr(host) -i api.example.com }"
    assert [(type(r).__name__, getattr(r, "action", getattr(r, "type", ""))) for r in fe.rules] == [
        ("HeaderRuleSpec", "set-header"), ("HeaderRuleSpec", "del-header"),
        ("RedirectRuleSpec", "scheme"), ("HeaderRuleSpec", "add-header")]
    assert (fe.rules[3].name, fe.rules[3].value) == ("X-Forwarded-Proto", "http")
    assert any("h.cfg:11" in n and "http-request add-header X-Forwarded-Proto http" in n for n in notices)


@pytest.mark.parametrize("text, line, words", [
    ("frontend f\n    bind :80\n    use_backend x if nosuch\n    default_backend x\nbackend x\n", 3, "nosuch"),
    ("frontend f\n    bind :80\n    http-request tarpit\n    default_backend x\nbackend x\n", 3, "not supported"),
    ("frontend f\n    bind :80\n    reqadd nocolon\n    default_backend x\nbackend x\n", 3, "Name: value"),
    ("frontend f\n    bind :80\n    acl a frobnicate 1\n    default_backend x\nbackend x\n", 3, "acl a"),
])
def test_routing_errors_name_the_line(text, line, words):
    with pytest.raises(ConfigError) as err:
        parse(text, source="h.cfg")
    assert f"h.cfg:{line}: " in str(err.value) and words in str(err.value)
