"""The config model of a frontend's request rules and routes (HAProxy `acl`, `http-request`,
`use_backend`), as frozen dataclasses any format can build.

A condition is HAProxy's: an OR (`||`, `or`) of AND groups of ACL terms, each term an ACL (named,
or anonymous `{ ... }`) that may be negated (`!`); `unless` negates the whole. An ACL is one or
more matches OR'ed (several `acl NAME` lines with one name). A match reads one sample (the path,
the URL, a header, the client address, the method) and compares it with its values in one way
(exact, prefix, suffix, substring, domain or directory word, found, address/CIDR).

Conditions are written as text in every format and parsed by engine/config/conditions.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Samples a match reads; `hdr` takes the header name as its argument.
FETCHES = ("path", "url", "hdr", "src", "method", "always_true", "always_false")
# How the sample is compared with the values (HAProxy's `-m` methods), "ip" for addresses.
MATCH_METHODS = ("str", "beg", "end", "sub", "dom", "dir", "found", "ip")
HEADER_ACTIONS = ("add-header", "set-header", "del-header")
REDIRECT_TYPES = ("location", "prefix", "scheme")
REDIRECT_CODES = (301, 302, 303, 307, 308)


@dataclass(frozen=True, slots=True)
class Match:
    """One criterion: `path_beg -i /api /static` is Match("path", "", "beg", ("/api", "/static"), True)."""

    fetch: str  # one of FETCHES
    arg: str = ""  # hdr: the header name, lower case
    method: str = "str"  # one of MATCH_METHODS
    values: tuple[str, ...] = ()  # any one matching is enough
    ignore_case: bool = False  # -i


@dataclass(frozen=True, slots=True)
class Acl:
    """A named ACL (its matches OR'ed) or an anonymous one (name "", one match)."""

    name: str
    matches: tuple[Match, ...]
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Term:
    acl: Acl
    negate: bool = False  # `!name`


@dataclass(frozen=True, slots=True)
class Condition:
    """`if A B || !C` is Condition(((A, B), (!C,))): true when every term of some group is."""

    any_of: tuple[tuple[Term, ...], ...]
    unless: bool = False  # `unless`: the rule applies when the condition is false


@dataclass(frozen=True, slots=True)
class HeaderRuleSpec:
    """`http-request add-header|set-header|del-header NAME [VALUE] [if|unless COND]`.
    Values are literal text (HAProxy's %[...] sample expressions are not evaluated)."""

    action: str  # one of HEADER_ACTIONS
    name: str
    value: str = ""  # empty for del-header
    condition: Condition | None = None
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class RedirectRuleSpec:
    """`http-request redirect location|prefix|scheme TARGET [code N] [drop-query] [append-slash]
    [if|unless COND]`: answered by the proxy, no server is asked, later rules are skipped."""

    type: str  # one of REDIRECT_TYPES
    target: str
    code: int = 302
    drop_query: bool = False  # prefix/scheme: leave the query string out of the Location
    append_slash: bool = False  # with drop_query: end the Location with "/"
    condition: Condition | None = None
    where: str = field(default="", compare=False)


RuleSpec = HeaderRuleSpec | RedirectRuleSpec


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """`use_backend NAME if|unless COND`: the first route whose condition holds picks the
    backend; none: the frontend's default_backend."""

    backend: str
    condition: Condition | None = None  # None: always (as `use_backend NAME` alone)
    where: str = field(default="", compare=False)
