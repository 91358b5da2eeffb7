import tomllib
from textwrap import dedent

from virtserve.engine.config.toml_lines import TomlLines


def lines(text: str) -> TomlLines:
    tomllib.loads(text)  # the locator only ever sees documents tomllib accepted
    return TomlLines(text)


def test_headers_keys_and_inline_tables():
    doc = lines(dedent("""\
        grace = "10s"
        [defaults]
        timeout = { connect = "5s", "http-request" = "10s" }
        [frontend.web]
        bind = ["127.0.0.1:8080",
          "[::1]:8080"]
    """))
    assert doc.get(("grace",)) == 1
    assert doc.get(("defaults",)) == 2
    assert doc.get(("defaults", "timeout", "http-request")) == 3
    assert doc.get(("frontend",)) == 4
    assert doc.get(("frontend", "web", "bind", 0)) == 5
    assert doc.get(("frontend", "web", "bind", 1)) == 6
    assert doc.get(("frontend", "web", "missing")) is None
    assert doc.nearest(("frontend", "web", "missing")) == 4


def test_array_of_inline_tables_entries_on_their_lines():
    doc = lines(dedent("""\
        [backend.app]
        servers = [
          { name = "web1", address = "127.0.0.1:9001" },

          { name = "web2", address = "127.0.0.1", port = 9002 },  # comment, with [brackets]
        ]
    """))
    assert doc.get(("backend", "app", "servers")) == 2
    assert doc.get(("backend", "app", "servers", 0, "name")) == 3
    assert doc.get(("backend", "app", "servers", 1)) == 5
    assert doc.get(("backend", "app", "servers", 1, "port")) == 5


def test_array_of_tables_headers_and_nesting():
    doc = lines(dedent("""\
        [[backend.app.servers]]
        name = "a"
        [[backend.app.servers]]
        name = "b"
        [backend.app.servers.extra]
        weight = 3
    """))
    assert doc.get(("backend", "app", "servers", 0)) == 1
    assert doc.get(("backend", "app", "servers", 1, "name")) == 4
    assert doc.get(("backend", "app", "servers", 1, "extra", "weight")) == 6


def test_strings_that_look_like_structure_are_skipped():
    doc = lines(dedent('''\
        a = """
        [not.a.table]
        b = 1
        """
        c = 'x = [ {'
        d = "quote \\" [ { inside"
        e = \'\'\'
        f = 2\'\'\'
        g = 1979-05-27 07:32:00
        [t]
        h = 1
    '''))
    assert doc.get(("a",)) == 1
    assert doc.get(("not",)) is None and doc.get(("b",)) is None and doc.get(("f",)) is None
    assert doc.get(("c",)) == 5
    assert doc.get(("d",)) == 6
    assert doc.get(("g",)) == 9
    assert doc.get(("t", "h")) == 11


def test_quoted_and_dotted_keys():
    doc = lines(dedent("""\
        [frontend."my.web"]
        timeout.client = "5s"
        "a b" . 'c' = 1
        "esc\\u0041" = 2
    """))
    assert doc.get(("frontend", "my.web")) == 1
    assert doc.get(("frontend", "my.web", "timeout")) == 2
    assert doc.get(("frontend", "my.web", "timeout", "client")) == 2
    assert doc.get(("frontend", "my.web", "a b", "c")) == 3
    assert doc.get(("frontend", "my.web", "escA")) == 4


def test_implicit_table_takes_its_explicit_header_line():
    doc = lines(dedent("""\
        [a.b.c]
        x = 1
        [a.b]
        y = 2
    """))
    assert doc.get(("a",)) == 1
    assert doc.get(("a", "b")) == 3


def test_text_tomllib_never_saw_does_not_hang():
    TomlLines("a = \n[b\nc = }\n{ ] ,")
