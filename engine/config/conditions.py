"""HAProxy's ACL and condition text -> the rule model (engine/config/rules.py). Sans-IO.

    parse_acl("path_beg -i /api /static")                 -> Match
    define_acl(named, "is_api", "path_beg /api", where)   -> named, with is_api added (or OR'ed)
    parse_condition("is_api || { hdr(host) -i api.example.com }", named) -> Condition
    format_condition(condition)                          -> text that parses back to it

Every format writes conditions this way (TOML strings, haproxy.cfg words), so they accept and
refuse the same things. Errors are ValueErrors whose message says what is wrong; the caller adds
the file and line.
"""
from __future__ import annotations

import ipaddress
from typing import Mapping

from virtserve.engine.config.rules import Acl, Condition, Match, Term

# criterion -> (fetch, match method). The suffixed names are HAProxy's shorthands for `-m`.
CRITERIA: dict[str, tuple[str, str]] = {
    "path": ("path", "str"), "path_beg": ("path", "beg"), "path_end": ("path", "end"),
    "path_sub": ("path", "sub"), "path_dir": ("path", "dir"), "path_dom": ("path", "dom"),
    "url": ("url", "str"), "url_beg": ("url", "beg"), "url_end": ("url", "end"),
    "url_sub": ("url", "sub"), "url_dir": ("url", "dir"), "url_dom": ("url", "dom"),
    "hdr": ("hdr", "str"), "hdr_beg": ("hdr", "beg"), "hdr_end": ("hdr", "end"),
    "hdr_sub": ("hdr", "sub"), "hdr_dir": ("hdr", "dir"), "hdr_dom": ("hdr", "dom"),
    "req.hdr": ("hdr", "str"),
    "src": ("src", "ip"), "method": ("method", "str"),
    "always_true": ("always_true", "found"), "always_false": ("always_false", "found"),
}
_WITH_ARG = frozenset({"hdr"})  # fetches that take (NAME)
_NO_VALUES = frozenset({"always_true", "always_false"})
_STRING_METHODS = ("str", "beg", "end", "sub", "dom", "dir", "found")

# HAProxy's predefined ACLs that make sense here.
PREDEFINED: dict[str, Acl] = {
    "TRUE": Acl("TRUE", (Match("always_true", method="found"),)),
    "FALSE": Acl("FALSE", (Match("always_false", method="found"),)),
    "LOCALHOST": Acl("LOCALHOST", (Match("src", method="ip", values=("127.0.0.1/8", "::1")),)),
    "METH_CONNECT": Acl("METH_CONNECT", (Match("method", values=("CONNECT",)),)),
    "METH_DELETE": Acl("METH_DELETE", (Match("method", values=("DELETE",)),)),
    "METH_GET": Acl("METH_GET", (Match("method", values=("GET", "HEAD")),)),
    "METH_HEAD": Acl("METH_HEAD", (Match("method", values=("HEAD",)),)),
    "METH_OPTIONS": Acl("METH_OPTIONS", (Match("method", values=("OPTIONS",)),)),
    "METH_POST": Acl("METH_POST", (Match("method", values=("POST",)),)),
    "METH_PUT": Acl("METH_PUT", (Match("method", values=("PUT",)),)),
    "METH_TRACE": Acl("METH_TRACE", (Match("method", values=("TRACE",)),)),
}

_OR = ("||", "or")


def split_words(text: str, *, comments: bool = False) -> list[str]:
    """haproxy.cfg's word splitting: blanks separate, "..." and '...' quote, backslash escapes
    (a quoted empty string is a word); with `comments`, an unquoted # ends the line."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    started = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and quote != "'" and i + 1 < n:
            word.append(text[i + 1])
            started = True
            i += 2
            continue
        if quote:
            if c == quote:
                quote = ""
            else:
                word.append(c)
        elif c in "\"'":
            quote = c
            started = True
        elif c == "#" and comments:
            break
        elif c in " \t\r\n":
            if started:
                words.append("".join(word))
                word, started = [], False
        else:
            word.append(c)
            started = True
        i += 1
    if quote:
        raise ValueError(f"unterminated {quote} quote")
    if started:
        words.append("".join(word))
    return words


def parse_acl(text: str | list[str]) -> Match:
    """`CRITERION [FLAGS] [VALUES...]` (the part after `acl NAME`, or inside `{ }`)."""
    words = split_words(text) if isinstance(text, str) else list(text)
    if not words:
        raise ValueError("an ACL needs a criterion, like path_beg /api")
    criterion, arg = _criterion(words[0])
    fetch, method = CRITERIA[criterion]
    ignore_case = False
    i = 1
    while i < len(words) and words[i].startswith("-"):
        flag = words[i]
        if flag == "--":
            i += 1
            break
        if flag == "-i":
            ignore_case = True
        elif flag == "-m":
            if i + 1 >= len(words):
                raise ValueError(f"-m needs a match method ({', '.join(_STRING_METHODS)})")
            method = words[i + 1]
            if fetch in ("src", *_NO_VALUES) or method not in _STRING_METHODS:
                allowed = "none" if fetch in ("src", *_NO_VALUES) else ", ".join(_STRING_METHODS)
                raise ValueError(f"-m {method}: not a match method for {criterion} (allowed: {allowed})")
            i += 1
        elif flag in ("-f", "-M", "-u", "-n"):
            raise ValueError(f"{criterion}: flag {flag} is not supported (give the values inline)")
        else:
            break  # a value that begins with '-' (HAProxy does the same after the known flags)
        i += 1
    values = tuple(words[i:])
    if fetch in _NO_VALUES:
        if values:
            raise ValueError(f"{criterion} takes no values, got {' '.join(values)}")
    elif not values and method != "found":
        raise ValueError(f"{words[0]} has no value to compare with: add at least one")
    elif values and method == "found":
        raise ValueError(f"{words[0]} -m found takes no values, got {' '.join(values)}")
    if fetch == "src":
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"src: {value!r} is not an address or network (like 10.0.0.0/8)") from None
    if fetch == "method":
        for value in values:
            if not value or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in value):
                raise ValueError(f"method: {value!r} is not an HTTP method")
    return Match(fetch, arg, method, values, ignore_case)


def _criterion(word: str) -> tuple[str, str]:
    name, paren, rest = word.partition("(")
    arg = ""
    if paren:
        if not rest.endswith(")"):
            raise ValueError(f"{word}: missing ')'")
        arg = rest[:-1].strip()
    if name not in CRITERIA:
        known = ", ".join(sorted(k for k in CRITERIA if not k.startswith("always")))
        raise ValueError(f"unknown ACL criterion {name!r} (supported: {known})")
    fetch = CRITERIA[name][0]
    if fetch in _WITH_ARG:
        if not arg:
            raise ValueError(f"{name} needs a header name, like {name}(host)")
        if "," in arg:
            raise ValueError(f"{word}: header occurrences are not supported: write {name}({arg.split(',')[0]})")
        if not _is_token(arg):
            raise ValueError(f"{word}: {arg!r} is not a header name")
        arg = arg.lower()
    elif paren:
        raise ValueError(f"{name} takes no argument, got {word}")
    return name, arg


def define_acl(named: Mapping[str, Acl], name: str, text: str | list[str], where: str = "") -> dict[str, Acl]:
    """`acl NAME CRITERION ...`: a copy of `named` with NAME defined, or OR'ed with its earlier
    lines (as HAProxy does with several declarations of one name)."""
    if not name or not all(c.isalnum() or c in "_-.:" for c in name):
        raise ValueError(f"ACL name {name!r} may hold only letters, digits and - _ . :")
    if name in PREDEFINED:
        raise ValueError(f"ACL name {name!r} is predefined: choose another")
    match = parse_acl(text)
    out = dict(named)
    before = out.get(name)
    out[name] = Acl(name, (match,), where) if before is None else Acl(name, before.matches + (match,), before.where)
    return out


def parse_condition(text: str | list[str], named: Mapping[str, Acl] | None = None, *,
                    unless: bool = False) -> Condition:
    """A condition: ACL names and anonymous `{ criterion ... }` ACLs, each optionally negated
    with `!`; side by side they AND, `||` (or `or`) ORs. A leading `if` or `unless` is taken."""
    words = split_words(text) if isinstance(text, str) else list(text)
    named = named or {}
    if words and words[0] in ("if", "unless"):
        unless = unless != (words[0] == "unless")
        words = words[1:]
    if not words:
        raise ValueError("empty condition: name an ACL or write one inside { }")
    groups: list[tuple[Term, ...]] = []
    group: list[Term] = []
    i, n = 0, len(words)
    while i < n:
        word = words[i]
        if word in _OR:
            if not group:
                raise ValueError(f"{word!r} with no condition before it")
            groups.append(tuple(group))
            group = []
            i += 1
            continue
        negate = False
        while word.startswith("!"):
            negate = not negate
            word = word[1:]
            if not word:  # `! name` or `! { ... }`
                i += 1
                if i >= n:
                    raise ValueError("'!' with nothing after it")
                word = words[i]
        if word == "{" or word.startswith("{"):
            inner, i = _anonymous(words, i, word)
            group.append(Term(Acl("", (parse_acl(inner),)), negate))
            continue
        if word == "}":
            raise ValueError("'}' without a '{' before it")
        acl = named.get(word) or PREDEFINED.get(word)
        if acl is None:
            hint = " (an anonymous ACL is written inside { }, like { path_beg /api })" if word in CRITERIA or "(" in word else ""
            raise ValueError(f"unknown ACL {word!r}{hint}")
        group.append(Term(acl, negate))
        i += 1
    if not group:
        raise ValueError(f"{words[-1]!r} with no condition after it")
    groups.append(tuple(group))
    return Condition(tuple(groups), unless)


def _anonymous(words: list[str], i: int, word: str) -> tuple[list[str], int]:
    """The words of `{ ... }` starting at words[i]; returns them and the index after `}`.
    As in HAProxy, the braces are words of their own."""
    if word != "{":
        raise ValueError(f"{word!r}: put blanks around the braces, like {{ path_beg /api }}")
    inner: list[str] = []
    i += 1
    while i < len(words):
        w = words[i]
        if w == "}":
            if not inner:
                raise ValueError("empty { }: write a criterion inside, like { path_beg /api }")
            return inner, i + 1
        if w == "{":
            raise ValueError("'{' inside { }: anonymous ACLs do not nest")
        inner.append(w)
        i += 1
    raise ValueError("'{' without a closing '}'")


def format_match(m: Match) -> str:
    """A match as ACL text (criterion, flags, values) that parse_acl turns back into it."""
    criterion = next((c for c, fm in CRITERIA.items() if fm == (m.fetch, m.method) and c != "req.hdr"), None)
    flags = []
    if criterion is None:
        criterion = next(c for c, fm in CRITERIA.items() if fm[0] == m.fetch)
        flags += ["-m", m.method]
    if m.arg:
        criterion += f"({m.arg})"
    if m.ignore_case:
        flags.insert(0, "-i")
    values = [_quote(v) for v in m.values]
    if values and (values[0].startswith("-")):
        flags.append("--")
    return " ".join([criterion, *flags, *values])


def format_condition(condition: Condition) -> str:
    """The condition as text (without if/unless) that parse_condition turns back into it, given
    the same named ACLs."""
    groups = []
    for group in condition.any_of:
        terms = []
        for term in group:
            acl = term.acl
            text = acl.name if acl.name else "{ " + format_match(acl.matches[0]) + " }"
            terms.append(("!" if term.negate else "") + text)
        groups.append(" ".join(terms))
    return " || ".join(groups)


def _quote(value: str) -> str:
    if value and not any(c in value for c in " \t\r\n\"'\\{}#") and value not in ("||", "or", "!"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TCHAR for c in text)


def is_header_name(text: str) -> bool:
    """An RFC 9110 field name (a token)."""
    return _is_token(text)
