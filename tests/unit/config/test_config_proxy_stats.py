"""Per-proxy settings of the request path: the stats page in-band (frontend, backend, listen),
backend http-request rules and option httpclose, from haproxy.cfg and TOML, with file:line errors."""
import pytest

from virtserve.engine.config import ConfigError, parse_native
from virtserve.engine.config.haproxy import parse as parse_haproxy
from virtserve.engine.config.model import StatsSpec
from virtserve.engine.config.rules import HeaderRuleSpec
from virtserve.engine.config.toml_writer import to_toml

TOML = """\
[defaults]
mode = "http"
httpclose = true

[frontend.web]
bind = "127.0.0.1:8080"
backend = "app"
stats = { uri = "/lb-stats", realm = "LB", refresh = "5s" }

[backend.app]
servers = [{ address = "127.0.0.1:9001" }]
stats = true
acl = { is_api = "path_beg /api" }
rules = [{ set-header = ["X-Api", "1"], if = "is_api" }, { del-header = "X-Debug" }]

[backend.other]
httpclose = false
servers = [{ address = "127.0.0.1:9002" }]
"""


def test_toml_per_proxy_stats_rules_and_httpclose():
    config = parse_native(TOML, source="lb.toml")
    web, (app, other) = config.frontends[0], config.backends
    assert web.stats == StatsSpec(uri="/lb-stats", realm="LB", refresh=5.0)
    assert app.stats == StatsSpec()  # stats = true: the defaults (uri "/")
    assert other.stats is None and config.stats is None
    assert [r.action for r in app.rules] == ["set-header", "del-header"]
    assert app.rules[0].condition is not None
    assert (web.httpclose, app.httpclose, other.httpclose) == (True, True, False)
    assert parse_native(to_toml(config), source="converted.toml") == config


@pytest.mark.parametrize("text,line,words", [
    (TOML.replace('realm = "LB"', 'bind = "127.0.0.1:1"'), 8, "unknown key 'bind'"),
    (TOML.replace('uri = "/lb-stats"', 'uri = "lb-stats"'), 8, "starting with '/'"),
    (TOML.replace('if = "is_api"', 'if = "is_apy"'), 14, "is_apy"),
    (TOML.replace('[backend.other]', '[backend.other]\nrules = [{ add-header = ["Connection", "x"] }]'), 17,
     "owns this header"),
    (TOML.replace('[backend.other]', '[backend.other]\nroutes = []'), 17, "unknown key 'routes'"),
    (TOML.replace('mode = "http"', 'mode = "tcp"').replace('rules = [{ set-header = ["X-Api", "1"], if = "is_api" }, '
                                                          '{ del-header = "X-Debug" }]', ''), 12,
     "stats page needs mode http"),
])
def test_toml_errors_name_the_line(text, line, words):
    with pytest.raises(ConfigError) as err:
        parse_native(text, source="lb.toml")
    assert f"lb.toml:{line}: " in str(err.value) and words in str(err.value), str(err.value)


CFG = """\
defaults
    mode http
    option httpclose
frontend fe
    bind :8080
    stats enable
    stats uri /fe
    default_backend be
backend be
    stats uri /be
    stats auth a:b
    acl is_v1 path_beg /v1
    http-request set-header X-V 1 if is_v1
    option http-server-close
    server s 127.0.0.1:9001
listen both
    bind :8081
    stats realm Both\\ of\\ us
    http-request add-header X-Both yes
    server s 127.0.0.1:9002
listen stats
    bind :8404
    stats uri /
"""


def test_haproxy_stats_go_to_the_proxy_that_serves_them():
    config = parse_haproxy(CFG, source="h.cfg")
    fe, both_fe = config.frontends
    be, both_be = config.backends
    assert fe.stats == StatsSpec(uri="/fe") and be.stats == StatsSpec(uri="/be", auth=(("a", "b"),))
    # A listen: its page answers whatever reaches its backend; its rules are its frontend's.
    assert both_fe.stats is None and both_be.stats == StatsSpec(realm="Both of us")
    assert both_fe.rules and not both_be.rules
    assert be.rules == (HeaderRuleSpec("set-header", "X-V", "1", be.rules[0].condition),)
    # The stats-only section stays the stats listener.
    assert config.stats is not None and config.stats.bind is not None and config.stats.bind.port == 8404
    # option httpclose from defaults; http-server-close in a section overrides it there.
    assert (fe.httpclose, be.httpclose, both_fe.httpclose) == (True, False, True)
    assert parse_native(to_toml(config), source="c.toml").frontends == config.frontends


def test_haproxy_backend_rule_errors_name_the_line():
    text = CFG.replace("http-request set-header X-V 1 if is_v1", "http-request set-header X-V 1 if is_v2")
    with pytest.raises(ConfigError) as err:
        parse_haproxy(text, source="h.cfg")
    assert "h.cfg:13: " in str(err.value) and "is_v2" in str(err.value)


def test_haproxy_stats_admin_in_band_is_noticed():
    from virtserve.engine.config.haproxy import parse_with_notices

    text = "defaults\n    mode http\nbackend b\n    stats uri /s\n    stats admin if TRUE\n    server a 127.0.0.1:1\n"
    config, notices = parse_with_notices(text, source="h.cfg")
    assert config.backends[0].stats is not None and config.backends[0].stats.admin
    assert any(n.startswith("h.cfg:5: notice: stats admin: the page served in-band") for n in notices)


def test_haproxy_stats_in_defaults_reach_every_http_proxy():
    text = ("defaults\n    mode http\n    stats enable\n    stats uri /proxy-stats\n    stats realm haproxy\\ statistics\n"
            "    stats show-legends\n"
            "frontend public\n    bind :80\n    default_backend app\n"
            "backend app\n    server a 127.0.0.1:1\n"
            "backend raw\n    mode tcp\n    server b 127.0.0.1:2\n")
    from virtserve.engine.config.haproxy import parse_with_notices

    config, notices = parse_with_notices(text, source="h.cfg")
    page = StatsSpec(uri="/proxy-stats", realm="haproxy statistics")
    assert config.frontends[0].stats == page and config.backends[0].stats == page
    assert config.backends[1].stats is None  # mode tcp: nothing to serve it on, as HAProxy ignores it
    assert any(n.startswith("h.cfg:6: notice: stats show-legends") for n in notices)
