"""The rule evaluator (engine/l7/pipeline.py), sans-IO: matches, conditions, header edits,
redirect answers and route choice on plain request values."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from virtserve.engine.config.conditions import define_acl, parse_acl, parse_condition
from virtserve.engine.config.rules import HeaderRuleSpec, RedirectRuleSpec, RouteSpec
from virtserve.engine.l7.pipeline import Pipeline, Request, compile_match, path_of


def _req(url: bytes = b"/", method: bytes = b"GET", headers: list[tuple[bytes, bytes]] = (), src: str = "127.0.0.1",
         keep_alive: bool = True) -> Request:
    parts: list[bytes] = []
    seen: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
        seen.setdefault(name.lower(), []).append(value)
    return Request(method, url, seen, src, parts, keep_alive)


def _match(text: str, req: Request) -> bool:
    return compile_match(parse_acl(text), set())(req)


def _lines(req: Request) -> list[bytes]:
    return [b"".join(req.parts[i:i + 4]) for i in range(0, len(req.parts), 4)]


def test_path_of_request_targets():
    assert path_of(b"/a/b?c=d") == b"/a/b"
    assert path_of(b"http://host:80/x?y") == b"/x"
    assert path_of(b"http://host") == b""
    assert path_of(b"*") == b"*"


def test_string_matches():
    req = _req(b"/Static/app.JS?v=1")
    assert _match("path_beg /Static", req) and not _match("path_beg /static", req)
    assert _match("path_beg -i /static", req)
    assert _match("path_end -i .js .css", req) and not _match("path_end .js", req)
    assert _match("url_end v=1", req) and not _match("path_end v=1", req)
    assert _match("path_sub app", req)
    assert _match("path_dir Static", req) and not _match("path_dir Stat", req)
    assert _match("path /Static/app.JS", req) and not _match("path /Static", req)
    assert _match("method GET", req) and not _match("method get", req) and _match("method -i get", req)


def test_header_matches_every_occurrence_and_value():
    req = _req(headers=[(b"Host", b"www.Example.com:8080"), (b"X-Tag", b"a, b"), (b"X-Tag", b"c")])
    assert _match("hdr_dom(host) -i example.com", req)
    assert _match("hdr_dom(host) -i www.example.com", req)
    assert not _match("hdr_dom(host) -i ample.com", req)
    assert not _match("hdr(host) -i www.example.com", req)  # the port is part of the value
    assert _match("hdr_beg(host) www.", req) and _match("hdr_end(host) :8080", req)
    assert _match("hdr(x-tag) b", req) and _match("hdr(x-tag) c", req) and not _match("hdr(x-tag) a,", req)
    assert _match("hdr(x-tag) -m found", req) and not _match("hdr(x-none) -m found", req)
    assert not _match("hdr(x-none) a", req)  # no sample: false (and true negated)


def test_source_matches():
    assert _match("src 10.0.0.0/8", _req(src="10.2.3.4"))
    assert _match("src 10.0.0.0/8", _req(src="::ffff:10.2.3.4"))  # a v4 client on a v6 socket
    assert not _match("src 10.0.0.0/8", _req(src="11.0.0.1"))
    assert _match("src ::1", _req(src="::1")) and not _match("src ::1", _req(src="127.0.0.1"))
    assert not _match("src 10.0.0.0/8", _req(src=""))  # unknown client (a UNIX socket)


def _pipeline(rules=(), routes=(), named=None):
    named = named or {}
    def cond(text):
        return parse_condition(text, named) if text else None
    specs = [HeaderRuleSpec(a, n, v, cond(c)) if a != "redirect" else RedirectRuleSpec(n, v, condition=cond(c))
             for a, n, v, c in rules]
    return Pipeline(tuple(specs), tuple(RouteSpec(b, cond(c)) for b, c in routes), {"api": "API", "web": "WEB"})


def test_header_edits_in_order():
    p = _pipeline([("add-header", "X-A", "1", ""), ("set-header", "X-B", "new", ""), ("del-header", "X-C", "", ""),
                   ("add-header", "X-A", "2", "{ hdr(x-b) new }")])
    req = p.run(_req(headers=[(b"X-B", b"old"), (b"x-c", b"gone"), (b"X-b", b"old2"), (b"Keep", b"k")]))
    assert _lines(req) == [b"Keep: k\r\n", b"X-A: 1\r\n", b"X-B: new\r\n", b"X-A: 2\r\n"]
    assert req.backend is None and req.reply is None
    assert p.capture == {b"x-b", b"x-c"}  # read by a condition, or edited by set/del-header


def test_routes_first_match_and_conditions_see_edits():
    named = define_acl({}, "is_api", "path_beg /api")
    p = _pipeline([("set-header", "Host", "api.internal", "{ path_beg /v2 }")],
                  [("api", "is_api || { hdr(host) api.internal }"), ("web", "")], named)
    assert p.run(_req(b"/api/x")).backend == "API"
    assert p.run(_req(b"/v2/x", headers=[(b"Host", b"x")])).backend == "API"
    assert p.run(_req(b"/other")).backend == "WEB"
    assert _pipeline(routes=[("api", "!{ path_beg /api }")]).run(_req(b"/api")).backend is None


def test_unless_and_groups():
    named = define_acl(define_acl({}, "a", "path_beg /a"), "b", "method POST")
    test = Pipeline((), (RouteSpec("api", parse_condition("unless a b || !a", named)),), {"api": 1})
    assert test.run(_req(b"/a", b"POST")).backend is None  # a b holds: unless refuses
    assert test.run(_req(b"/x")).backend is None  # !a holds
    assert test.run(_req(b"/a", b"GET")).backend == 1


def test_redirect_answers_and_stops_the_rules():
    p = _pipeline([("redirect", "prefix", "https://n.example", "{ path_beg /p }"),
                   ("redirect", "scheme", "https", "{ path_beg /s }"),
                   ("add-header", "X-After", "1", "")], [("api", "")])
    req = p.run(_req(b"/p/q?x=1"))
    assert req.reply == (b"HTTP/1.1 302 Found\r\ncontent-length: 0\r\nlocation: https://n.example/p/q?x=1\r\n"
                         b"cache-control: no-cache\r\n\r\n")
    assert req.status == 302 and req.backend is None and _lines(req) == []
    req = p.run(_req(b"http://h/s", headers=[(b"Host", b"h:81")], keep_alive=False))
    assert req.reply.endswith(b"location: https://h:81/s\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n")
    req = p.run(_req(b"/s", headers=[]))
    assert req.status == 400 and not req.keep_alive  # no Host to redirect to
    req = p.run(_req(b"/other"))
    assert req.reply is None and req.backend == "API" and _lines(req) == [b"X-After: 1\r\n"]


def test_redirect_codes_and_query_options():
    rule = RedirectRuleSpec("prefix", "/", code=301, drop_query=True, append_slash=True)
    req = Pipeline((rule,), (), {}).run(_req(b"/dir?x"))
    assert req.reply == b"HTTP/1.1 301 Moved Permanently\r\ncontent-length: 0\r\nlocation: /dir/\r\n\r\n"
    rule = RedirectRuleSpec("location", "/fixed", code=308)
    assert Pipeline((rule,), (), {}).run(_req(b"/any")).reply.startswith(b"HTTP/1.1 308 Permanent Redirect\r\n")


@given(st.lists(st.tuples(st.sampled_from([b"X-A", b"x-a", b"X-B", b"Other"]), st.binary(min_size=0, max_size=5)
                          .filter(lambda v: b"\r" not in v and b"\n" not in v)), max_size=8))
def test_set_header_leaves_exactly_one(headers):
    req = _pipeline([("set-header", "X-A", "v", "")]).run(_req(headers=headers))
    lines = _lines(req)
    assert [line for line in lines if line.lower().startswith(b"x-a:")] == [b"X-A: v\r\n"]
    others = [n + b": " + v + b"\r\n" for n, v in headers if n.lower() != b"x-a"]
    assert lines[:-1] == others  # the rest untouched, in order


@given(st.binary(max_size=12), st.lists(st.binary(min_size=1, max_size=4), min_size=1, max_size=3))
def test_beg_end_sub_agree_with_bytes(sample, values):
    values = [v for v in values if b" " not in v and b"\\" not in v and b"'" not in v and b'"' not in v]
    text_values = [v.decode("latin-1") for v in values]
    if not values or any(not t.isprintable() or t.startswith("-") or t in ("{", "}") for t in text_values):
        return
    url = b"/" + sample.replace(b"?", b"")
    req = _req(url)
    words = " ".join(text_values)
    encoded = [t.encode() for t in text_values]
    assert _match(f"path_beg {words}", req) == any(url.startswith(v) for v in encoded)
    assert _match(f"path_end {words}", req) == any(url.endswith(v) for v in encoded)
    assert _match(f"path_sub {words}", req) == any(v in url for v in encoded)
