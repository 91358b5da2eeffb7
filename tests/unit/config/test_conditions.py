"""The ACL and condition parser (engine/config/conditions.py): HAProxy's syntax, clear errors,
and text that parses back to the same condition."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from virtserve.engine.config.conditions import (
    PREDEFINED,
    define_acl,
    format_condition,
    format_match,
    parse_acl,
    parse_condition,
    split_words,
)
from virtserve.engine.config.rules import Acl, Condition, Match, Term


def test_criteria_and_flags():
    assert parse_acl("path_beg /api /static") == Match("path", "", "beg", ("/api", "/static"))
    assert parse_acl("hdr(Host) -i Example.com") == Match("hdr", "host", "str", ("Example.com",), True)
    assert parse_acl("hdr_dom(host) -i example.com") == Match("hdr", "host", "dom", ("example.com",), True)
    assert parse_acl("hdr_end(host) .example.com") == Match("hdr", "host", "end", (".example.com",))
    assert parse_acl("path_end .css .js") == Match("path", "", "end", (".css", ".js"))
    assert parse_acl("path /exact") == Match("path", "", "str", ("/exact",))
    assert parse_acl("src 10.0.0.0/8 ::1") == Match("src", "", "ip", ("10.0.0.0/8", "::1"))
    assert parse_acl("method GET HEAD") == Match("method", "", "str", ("GET", "HEAD"))
    assert parse_acl("path -m beg -i /A") == Match("path", "", "beg", ("/A",), True)
    assert parse_acl("hdr(x-flag) -m found") == Match("hdr", "x-flag", "found", ())
    assert parse_acl("path_beg -- -weird") == Match("path", "", "beg", ("-weird",))
    assert parse_acl(["path_beg", "/a b"]) == Match("path", "", "beg", ("/a b",))


@pytest.mark.parametrize("text, message", [
    ("", "needs a criterion"),
    ("path_begin /api", "unknown ACL criterion 'path_begin'"),
    ("path_beg", "has no value"),
    ("hdr /x", "needs a header name"),
    ("hdr(host /x", "missing ')'"),
    ("hdr(host,1) x", "occurrences are not supported"),
    ("path(x) /a", "takes no argument"),
    ("src not-an-ip", "not an address or network"),
    ("src -m beg 10.", "not a match method"),
    ("path -m regex x", "not a match method"),
    ("path -f /etc/list", "-f is not supported"),
    ("method GE T(", "not an HTTP method"),
    ("hdr(host) -m found x", "takes no values"),
])
def test_acl_errors(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_acl(text)


def test_named_acls_or_their_declarations():
    named = define_acl({}, "is_static", "path_end .css")
    named = define_acl(named, "is_static", "path_beg /static", "f:3")
    assert named["is_static"].matches == (Match("path", "", "end", (".css",)), Match("path", "", "beg", ("/static",)))
    with pytest.raises(ValueError, match="predefined"):
        define_acl({}, "TRUE", "path /")
    with pytest.raises(ValueError, match="may hold only"):
        define_acl({}, "a b", "path /")


def test_condition_and_or_not_anonymous():
    named = define_acl(define_acl({}, "a", "path_beg /a"), "b", "method POST")
    a, b = Term(named["a"]), Term(named["b"])
    anon = Acl("", (Match("hdr", "host", "str", ("x",), True),))
    assert parse_condition("a b", named) == Condition(((a, b),))
    assert parse_condition("a || b", named) == Condition(((a,), (b,)))
    assert parse_condition("a or !b", named) == Condition(((a,), (Term(named["b"], True),)))
    assert parse_condition("! a", named) == Condition(((Term(named["a"], True),),))
    assert parse_condition("a { hdr(host) -i x }", named) == Condition(((a, Term(anon)),))
    assert parse_condition("!{ hdr(host) -i x }", named) == Condition(((Term(anon, True),),))
    assert parse_condition("unless a", named) == Condition(((a,),), unless=True)
    assert parse_condition("if a", named, unless=True) == Condition(((a,),), unless=True)
    assert parse_condition("TRUE", {}) == Condition(((Term(PREDEFINED["TRUE"]),),))


@pytest.mark.parametrize("text, message", [
    ("", "empty condition"),
    ("if", "empty condition"),
    ("nope", "unknown ACL 'nope'"),
    ("path_beg /api", "anonymous ACL is written inside { }"),
    ("a ||", "with no condition after it"),
    ("|| a", "with no condition before it"),
    ("a || || a", "with no condition before it"),
    ("{ path_beg /a", "without a closing"),
    ("{path_beg /a }", "put blanks around the braces"),
    ("{ }", "empty { }"),
    ("{ path_beg { /a } }", "do not nest"),
    ("a }", "without a '{'"),
    ("!", "nothing after it"),
    ('{ path_beg "/a }', "unterminated"),
])
def test_condition_errors(text, message):
    named = define_acl({}, "a", "path_beg /a")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("{", r"\{").replace("|", r"\|")):
        parse_condition(text, named)


def test_words_quotes_and_escapes():
    assert split_words(r'''a "b c" 'd\ e' f\ g ""''') == ["a", "b c", "d\\ e", "f g", ""]


# --- text that parses back ------------------------------------------------------------------

_value = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="{}"), min_size=1, max_size=8) | \
    st.sampled_from(["a b", "-x", "||", "!", 'q"uote', "back\\slash"])
_match = st.one_of(
    st.builds(Match, st.sampled_from(["path", "url", "method"]), st.just(""),
              st.sampled_from(["str", "beg", "end", "sub", "dom", "dir"]),
              st.lists(_value, min_size=1, max_size=3).map(tuple), st.booleans()),
    st.builds(Match, st.just("hdr"), st.sampled_from(["host", "x-env"]),
              st.sampled_from(["str", "beg", "end", "sub", "dom", "dir"]),
              st.lists(_value, min_size=1, max_size=3).map(tuple), st.booleans()),
    st.builds(Match, st.just("src"), st.just(""), st.just("ip"),
              st.lists(st.sampled_from(["10.0.0.0/8", "127.0.0.1", "::1", "2001:db8::/32"]), min_size=1, max_size=2).map(tuple),
              st.just(False)),
)


def test_every_method_of_methods_formats_back():
    m = Match("method", "", "beg", ("PO",), False)
    assert format_match(m) == "method -m beg PO" and parse_acl(format_match(m)) == m


@given(_match)
def test_match_formats_back(m):
    # method values must be tokens: only the string fetches take arbitrary text
    if m.fetch == "method":
        m = Match("method", "", m.method, tuple("GET" for _ in m.values), m.ignore_case)
    assert parse_acl(format_match(m)) == m


_named = {"is_a": Acl("is_a", (Match("path", "", "beg", ("/a",)),)),
          "is_b": Acl("is_b", (Match("src", "", "ip", ("10.0.0.0/8",)), Match("method", "", "str", ("GET",))))}
_term = st.builds(Term, st.sampled_from(list(_named.values())) | _match.filter(lambda m: m.fetch != "method").map(lambda m: Acl("", (m,))),
                  st.booleans())


@given(st.lists(st.lists(_term, min_size=1, max_size=3).map(tuple), min_size=1, max_size=3).map(tuple), st.booleans())
def test_condition_formats_back(groups, unless):
    condition = Condition(groups, unless)
    assert parse_condition(format_condition(condition), _named, unless=unless) == condition
