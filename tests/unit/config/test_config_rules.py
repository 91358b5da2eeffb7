"""Rules and routes in TOML and on the model: the schema, and every mistake named with its
file:line."""
from __future__ import annotations

import dataclasses

import pytest

from virtserve.engine.config import native
from virtserve.engine.config.model import ConfigError
from virtserve.engine.config.conditions import define_acl, parse_condition
from virtserve.engine.config.rules import HeaderRuleSpec, RedirectRuleSpec, RouteSpec
from virtserve.engine.config.validate import validate

BACKENDS = '''
[backend.app]
servers = [{ address = "127.0.0.1:8001" }]
[backend.api]
servers = [{ address = "127.0.0.1:8002" }]
[backend.raw]
mode = "tcp"
servers = [{ address = "127.0.0.1:8003" }]
'''


def _parse(frontend: str, backends: str = BACKENDS):
    return native.parse('[frontend.web]\nbind = "127.0.0.1:0"\nbackend = "app"\n' + frontend + "\n" + backends,
                        source="t.toml")


def test_full_schema_to_model():
    config = _parse('''acl = { is_api = ["path_beg /api", "hdr(host) -i api.example.com"] }
rules = [
  { add-header = ["X-Via", "virtserve"] },
  { set-header = ["X-Api", "1"], if = "is_api" },
  { del-header = "X-Debug", unless = "LOCALHOST" },
  { redirect = { scheme = "https", code = 301 }, if = "{ hdr(host) -i old.example.com }" },
  { redirect = { prefix = "/", drop-query = true, append-slash = true } },
]
routes = [{ backend = "api", if = "is_api" }, { backend = "app" }]''')
    fe = config.frontends[0]
    named = define_acl(define_acl({}, "is_api", "path_beg /api"), "is_api", "hdr(host) -i api.example.com")
    assert fe.rules == (
        HeaderRuleSpec("add-header", "X-Via", "virtserve"),
        HeaderRuleSpec("set-header", "X-Api", "1", parse_condition("is_api", named)),
        HeaderRuleSpec("del-header", "X-Debug", "", parse_condition("LOCALHOST", {}, unless=True)),
        RedirectRuleSpec("scheme", "https", 301, condition=parse_condition("{ hdr(host) -i old.example.com }")),
        RedirectRuleSpec("prefix", "/", drop_query=True, append_slash=True),
    )
    assert fe.routes == (RouteSpec("api", parse_condition("is_api", named)), RouteSpec("app"))
    assert [r.where for r in fe.rules] == [f"t.toml:{n}" for n in (6, 7, 8, 9, 10)]
    assert fe.routes[0].where == "t.toml:12"


def test_listen_sections_take_rules_too():
    config = native.parse('[listen.web]\nbind = "127.0.0.1:0"\nservers = [{ address = "127.0.0.1:1" }]\n'
                          'rules = [{ add-header = ["X-A", "1"] }]\n', source="l.toml")
    assert config.frontends[0].rules == (HeaderRuleSpec("add-header", "X-A", "1"),)


@pytest.mark.parametrize("frontend, line, message", [
    ('acl = { a = "path_begin /x" }', 4, "acl 'a' in [frontend.web]: unknown ACL criterion 'path_begin'"),
    ('acl = { a = 3 }', 4, "expected ACL text"),
    ('rules = { add-header = ["A", "b"] }', 4, "expected a list of tables"),
    ('rules = [{ add-header = ["A"] }]', 4, 'add-header takes ["Name", "value"]'),
    ('rules = [{ add-header = ["A", "b"], del-header = "C" }]', 4, "exactly one action"),
    ('rules = [{ if = "TRUE" }]', 4, "exactly one action"),
    ('rules = [{ add-header = ["A", "b"], when = "TRUE" }]', 4, "unknown key 'when'"),
    ('rules = [\n  { add-header = ["A", "b"] },\n  { del-header = "A", if = "nope" },\n]', 6,
     "rule #2 in [frontend.web]: if 'nope': unknown ACL 'nope'"),
    ('rules = [{ del-header = "A", if = "TRUE", unless = "FALSE" }]', 4, "not both"),
    ('rules = [{ redirect = { code = 301 } }]', 4, "exactly one of location, prefix, scheme"),
    ('rules = [{ redirect = { scheme = "https", code = 304 } }]', 4, "redirect code must be one of 301, 302, 303, 307, 308"),
    ('rules = [{ redirect = { location = "a b" } }]', 4, "without blanks"),
    ('rules = [{ redirect = { scheme = "ht/tps" } }]', 4, "not a URL scheme"),
    ('rules = [{ redirect = { prefix = "/x", append-slash = true } }]', 4, "append-slash works with drop-query"),
    ('rules = [{ add-header = ["Bad Name", "b"] }]', 4, "'Bad Name' is not a valid header name"),
    ('rules = [{ set-header = ["Content-Length", "1"] }]', 4, "the proxy owns this header"),
    ('rules = [{ del-header = "Transfer-Encoding" }]', 4, "the proxy owns this header"),
    ('rules = [{ add-header = ["X-A", "a\\r\\nb"] }]', 4, "may not hold CR, LF or NUL"),
    ('\n\nroutes = [{ backend = "nope", if = "TRUE" }]', 6, "use_backend 'nope': backend not found"),
    ('routes = [{ backend = "ap", if = "TRUE" }]', 4, "did you mean 'app'"),
    ('routes = [{ backend = "raw" }]', 4, "mode mismatch"),
    ('routes = [{ if = "TRUE" }]', 4, "has no backend"),
    ('routes = [{ backend = "api", if = "{ path_beg /a" }]', 4, "without a closing '}'"),
])
def test_errors_name_file_and_line(frontend, line, message):
    with pytest.raises(ConfigError) as err:
        _parse(frontend)
    assert err.value.where == f"t.toml:{line}"
    assert message in err.value.message


def test_tcp_frontends_route_on_source_only():
    tcp = '[frontend.t]\nmode = "tcp"\nbind = "127.0.0.1:0"\nbackend = "raw"\n'
    more = '[backend.raw2]\nmode = "tcp"\nservers = [{ address = "127.0.0.1:8004" }]\n'
    config = native.parse(tcp + 'routes = [{ backend = "raw2", if = "{ src 10.0.0.0/8 }" }]\n' + BACKENDS + more, source="t.toml")
    assert config.frontends[0].routes[0].backend == "raw2"
    with pytest.raises(ConfigError, match="in mode tcp only src can be tested") as err:
        native.parse(tcp + 'routes = [{ backend = "raw2", if = "{ path_beg /a }" }]\n' + BACKENDS + more, source="t.toml")
    assert err.value.where == "t.toml:5"
    with pytest.raises(ConfigError, match="http-request rules need mode http"):
        native.parse(tcp + 'rules = [{ del-header = "A" }]\n' + BACKENDS, source="t.toml")


def test_model_built_by_another_format_is_checked_the_same():
    config = _parse("")
    fe = config.frontends[0]
    bad = dataclasses.replace(fe, routes=(RouteSpec("missing", where="h.cfg:9"),))
    with pytest.raises(ConfigError) as err:
        validate(dataclasses.replace(config, frontends=(bad,)))
    assert err.value.where == "h.cfg:9"
    bad = dataclasses.replace(fe, rules=(RedirectRuleSpec("location", "/x", code=200, where="h.cfg:4"),))
    with pytest.raises(ConfigError, match="redirect code") as err:
        validate(dataclasses.replace(config, frontends=(bad,)))
    assert err.value.where == "h.cfg:4"
