"""Every refusal names the file, the line to fix, and what is wrong.

The offending line of each document is marked `# <-`; the helper asserts the error's
"lb.toml:LINE" is exactly that line.
"""
from textwrap import dedent

import pytest

from virtserve.engine.config import ConfigError, parse_native

GOOD_BACKEND = """
[backend.app]
servers = [{ address = "127.0.0.1:9001" }]
"""


def error(text: str) -> ConfigError:
    text = dedent(text)
    marked = [n for n, line in enumerate(text.splitlines(), 1) if "# <-" in line]
    assert len(marked) == 1, "mark the offending line with '# <-'"
    with pytest.raises(ConfigError) as info:
        parse_native(text, source="lb.toml")
    # Every error of the file is reported (the section's others too): the marked line's is one.
    found = [e for e in getattr(info.value, "errors", [info.value]) if e.where == f"lb.toml:{marked[0]}"]
    assert found, info.value
    assert f"lb.toml:{marked[0]}: {found[0].message}" in str(info.value).splitlines()
    return found[0]


# --- TOML syntax: tomllib's "at line N, column M" becomes FILE:LINE


def test_syntax_error():
    e = error("""\
        [frontend.web]
        bind = "127.0.0.1:80"
        backend =   # <-
    """)
    assert e.message == "TOML syntax error: Invalid value (column 13)"


def test_syntax_error_at_end_of_file():
    e = error("""\
        [backend.app]
        servers = [  # <-""")
    assert e.message == "TOML syntax error: Invalid value at end of file"


def test_section_declared_twice():
    e = error("""\
        [backend.app]
        [backend.app]  # <-
    """)
    assert e.message.startswith("TOML syntax error: Cannot declare ('backend', 'app') twice")


# --- unknown keys are errors, with a suggestion


def test_unknown_key_close_to_a_known_one():
    e = error("""\
        [backend.app]
        retries = 2
        forwardfr = true  # <-
    """)
    assert e.message == "unknown key 'forwardfr' in [backend.app] — did you mean 'forwardfor'?"


def test_unknown_key_lists_the_allowed_ones():
    e = error("""\
        [backend.app]
        foo = 1  # <-
    """)
    assert e.message == (
        "unknown key 'foo' in [backend.app] (allowed: mode, scheduler, scheduler-options, "
        "retries, forwardfor, timeout, servers, check, quiescent, slowstart, allbackups, fallback, "
        "on-marked-down, alert, cookie, persistent, stick, redispatch, ipvs, acl, rules, stats, httpclose)"
    )


@pytest.mark.parametrize(
    ("section", "key", "hint"),
    [
        ("[frontend.web]", "default_backend", "backend"),
        ("[backend.app]", "balance", "scheduler"),
        ("[defaults]", "balance", "scheduler"),
        ("[backend.app]", "server", "servers"),
        ("[listen.demo]", "timeouts", "timeout"),
    ],
)
def test_other_formats_words_point_to_ours(section, key, hint):
    e = error(f"""\
        {section}
        {key} = "x"  # <-
    """)
    assert e.message == f"unknown key {key!r} in {section} — did you mean {hint!r}?"


def test_unknown_top_level_key():
    e = error("""\
        grace = "1s"
        frontends = {}  # <-
    """)
    assert e.message == "unknown key 'frontends' in the top level — did you mean 'frontend'?"


def test_unknown_key_in_the_second_server_points_at_its_line():
    e = error("""\
        [backend.app]
        servers = [
          { name = "web1", address = "127.0.0.1:9001" },
          { name = "web2", address = "127.0.0.1:9002", wieght = 3 },  # <-
        ]
    """)
    assert e.message == "unknown key 'wieght' in server 'web2' in [backend.app] — did you mean 'weight'?"


def test_unknown_timeout():
    e = error("""\
        [frontend.web]
        bind = "127.0.0.1:80"
        backend = "app"
        timeout = { cleint = "5s" }  # <-
    """ + GOOD_BACKEND)
    assert e.message == "unknown key 'cleint' in the timeouts of [frontend.web] — did you mean 'client'?"


def test_a_backend_key_in_a_listen_section():
    e = error("""\
        [listen.demo]
        bind = "127.0.0.1:80"
        backend = "app"  # <-
    """)
    assert e.message.startswith("unknown key 'backend' in [listen.demo]")


def test_same_key_with_dash_and_underscore():
    e = error("""\
        [defaults]
        timeout = { http-request = "1s", http_request = "2s" }  # <-
    """)
    assert e.message == "'http-request' and 'http_request' in the timeouts of [defaults] are the same key: keep one"


def test_section_without_a_name():
    e = error("""\
        [frontend]
        bind = "127.0.0.1:80"  # <-
    """)
    assert e.message == "[frontend.bind] is not a section: a frontend needs a name, like [frontend.web]"


# --- wrong types and values


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('retries = "3"', "'retries' in [backend.app]: expected a whole number, got '3'"),
        ('forwardfor = "yes"', "'forwardfor' in [backend.app]: expected true or false, got 'yes'"),
        ('mode = "https"', "'mode' in [backend.app]: expected one of 'tcp', 'http', got 'https'"),
        ("scheduler = 1", "'scheduler' in [backend.app]: expected a string, got 1"),
        ('timeout = "5s"', "the timeouts of [backend.app] must be a table, got '5s'"),
        ("scheduler-options = { nested = { a = 1 } }",
         "'scheduler-options' in [backend.app]: option 'nested' must be a string, number, boolean "
         "or a list of them, got a table"),
        ('servers = { address = "127.0.0.1:1" }',
         "'servers' in [backend.app]: expected a list of tables like [{ address = \"127.0.0.1:9001\" }], "
         "got a table"),
    ],
)
def test_wrong_types_in_a_backend(line, message):
    e = error(f"""\
        [backend.app]
        {line}  # <-
    """)
    assert e.message == message


def test_wrong_type_in_a_server():
    e = error("""\
        [backend.app]
        servers = [{ address = "127.0.0.1:1", weight = true }]  # <-
    """)
    assert e.message == "'weight' in server #1 in [backend.app]: expected a whole number, got True"


def test_server_that_is_not_a_table():
    e = error("""\
        [backend.app]
        servers = [
          "127.0.0.1:1",  # <-
        ]
    """)
    assert e.message == "server #1 in [backend.app] must be a table, got '127.0.0.1:1'"


def test_bad_time_unit():
    e = error("""\
        [frontend.web]
        bind = "127.0.0.1:80"
        backend = "app"
        [frontend.web.timeout]
        client = "30s"
        server = "30x"  # <-
    """ + GOOD_BACKEND)
    assert e.message == "'server' in the timeouts of [frontend.web]: bad time unit 'x' in '30x' (units: us, ms, s, m, h, d)"


def test_bad_grace():
    e = error("""\
        grace = "soon"  # <-
    """)
    assert e.message.startswith("'grace' in the top level: bad time 'soon'")


def test_bad_time_in_defaults_is_reported_even_if_nothing_inherits_it():
    e = error("""\
        [defaults]
        timeout = { queue = "-5s" }  # <-
    """)
    assert e.message == "'queue' in the timeouts of [defaults]: time must not be negative, got '-5s'"


# --- frontends


def test_frontend_without_bind():
    e = error("""\
        [frontend.web]  # <-
        backend = "app"
    """ + GOOD_BACKEND)
    assert e.message == '[frontend.web] has no bind: add bind = "127.0.0.1:8080" (port 0 picks a free port)'


def test_frontend_with_empty_bind_list():
    e = error("""\
        [frontend.web]
        bind = []  # <-
        backend = "app"
    """ + GOOD_BACKEND)
    assert e.message == "frontend 'web' has no bind address to listen on"


def test_frontend_without_backend():
    e = error("""\
        [frontend.web]  # <-
        bind = "127.0.0.1:80"
    """)
    assert e.message == '[frontend.web] has no backend: add backend = "<name>"'


def test_bind_without_port():
    e = error("""\
        [frontend.web]
        bind = [
          "127.0.0.1:80",
          "127.0.0.2",  # <-
        ]
        backend = "app"
    """ + GOOD_BACKEND)
    assert e.message == "bind '127.0.0.2' in [frontend.web] has no port: write 'host:port' (port 0 picks a free port)"


def test_bind_port_out_of_range():
    e = error("""\
        [frontend.web]
        bind = ["127.0.0.1:80", "127.0.0.1:65536"]  # <-
        backend = "app"
    """ + GOOD_BACKEND)
    assert e.message == "frontend 'web': bind 127.0.0.1:65536: port 65536 is out of range 0..65535"


def test_bind_that_is_not_an_address():
    e = error("""\
        [frontend.web]
        bind = 8080  # <-
        backend = "app"
    """ + GOOD_BACKEND)
    assert e.message == ("'bind' in [frontend.web]: expected an address (or a table with address, ssl, accept-proxy) "
                         "or a list of them, got 8080")


def test_bind_with_unbracketed_ipv6_port():
    e = error("""\
        [frontend.web]
        bind = "::1:8080:x"  # <-
        backend = "app"
    """ + GOOD_BACKEND)
    assert "write an IPv6 address with a port as '[addr]:port'" in e.message


def test_backend_not_found():
    e = error("""\
        [frontend.web]
        bind = "127.0.0.1:80"
        backend = "ap"  # <-
    """ + GOOD_BACKEND)
    assert e.message == "frontend 'web': backend 'ap' not found — did you mean 'app'?"


def test_mode_mismatch_points_at_the_reference():
    e = error("""\
        [frontend.web]
        bind = "127.0.0.1:80"
        mode = "tcp"
        backend = "app"  # <-

        [backend.app]
        mode = "http"
    """)
    assert e.message == (
        "mode mismatch: frontend 'web' is mode tcp but its backend 'app' is mode http (defined at lb.toml:6)"
    )


def test_mode_mismatch_through_defaults():
    e = error("""\
        [defaults]
        mode = "tcp"
        [frontend.web]
        bind = "127.0.0.1:80"
        backend = "app"  # <-
        [backend.app]
        mode = "http"
    """)
    assert "frontend 'web' is mode tcp but its backend 'app' is mode http" in e.message


def test_negative_maxconn():
    e = error("""\
        [frontend.web]
        bind = "127.0.0.1:80"
        backend = "app"
        maxconn = -5  # <-
    """ + GOOD_BACKEND)
    assert e.message == "frontend 'web': maxconn must be 0 or more, got -5"


def test_duplicate_bind_across_frontends():
    e = error("""\
        [frontend.a]
        bind = "127.0.0.1:80"
        backend = "app"
        [frontend.b]
        bind = ["127.0.0.1:0", "127.0.0.1:80"]  # <-
        backend = "app"
    """ + GOOD_BACKEND)
    assert e.message == "frontend 'b': 127.0.0.1:80 is already bound by frontend 'a' (at lb.toml:2)"


def test_duplicate_frontend_name_between_frontend_and_listen():
    e = error("""\
        [frontend.demo]
        bind = "127.0.0.1:80"
        backend = "app"
    """ + GOOD_BACKEND + """
        [listen.demo]  # <-
        bind = "127.0.0.1:81"
    """)
    assert e.message == "duplicate frontend name 'demo' (first defined at lb.toml:1)"


def test_duplicate_backend_name_between_backend_and_listen():
    e = error("""\
        [backend.demo]
        [listen.demo]  # <-
        bind = "127.0.0.1:81"
    """)
    assert e.message == "duplicate backend name 'demo' (first defined at lb.toml:1)"


# --- backends and servers


def test_unknown_scheduler():
    e = error("""\
        [backend.app]
        scheduler = "rrr"  # <-
    """)
    assert e.message.startswith("backend 'app': unknown scheduler 'rrr' — did you mean 'rr'? (known: ")
    assert "rr" in e.message.split("(known: ")[1]


def test_unknown_scheduler_inherited_from_defaults():
    e = error("""\
        [defaults]
        scheduler = "zzz-none"  # <-
        [backend.app]
    """)
    assert e.message.startswith("backend 'app': unknown scheduler 'zzz-none' (known: ")


def test_negative_retries():
    e = error("""\
        [backend.app]
        retries = -1  # <-
    """)
    assert e.message == "backend 'app': retries must be 0 or more, got -1"


def test_weight_out_of_range_points_at_the_weight():
    e = error("""\
        [[backend.app.servers]]
        address = "127.0.0.1:9001"
        weight = 257  # <-
    """)
    assert e.message == "server 's1' in backend 'app': weight 257 is out of range 0..256"


def test_negative_weight_inline():
    e = error("""\
        [backend.app]
        servers = [
          { name = "a", address = "127.0.0.1:1" },
          { name = "b", address = "127.0.0.1:2", weight = -1 },  # <-
        ]
    """)
    assert e.message == "server 'b' in backend 'app': weight -1 is out of range 0..256"


def test_server_port_out_of_range_in_address():
    e = error("""\
        [backend.app]
        servers = [{ address = "127.0.0.1:70000" }]  # <-
    """)
    assert e.message == "server 's1' in backend 'app': port 70000 is out of range 1..65535"


def test_server_port_zero_as_its_own_key():
    e = error("""\
        [[backend.app.servers]]
        address = "127.0.0.1"
        port = 0  # <-
    """)
    assert e.message == "server 's1' in backend 'app': port 0 is out of range 1..65535"


def test_server_without_port():
    e = error("""\
        [[backend.app.servers]]
        name = "web1"
        address = "127.0.0.1"  # <-
    """)
    assert e.message == "server 'web1' in [backend.app]: address '127.0.0.1' has no port: write 'host:port' or add port = N"


def test_server_port_given_twice():
    e = error("""\
        [[backend.app.servers]]
        address = "127.0.0.1:80"
        port = 81  # <-
    """)
    assert e.message == "server #1 in [backend.app]: port given twice, in address '127.0.0.1:80' and as 'port'"


def test_server_without_address():
    e = error("""\
        [backend.app]
        servers = [
          { name = "web1", port = 80 },  # <-
        ]
    """)
    assert e.message == "server 'web1' in [backend.app] has no address: add address = \"host:port\""


def test_server_with_bad_address():
    e = error("""\
        [backend.app]
        servers = [{ address = "127.0.0.1:http" }]  # <-
    """)
    assert e.message == "'address' in server #1 in [backend.app]: bad address '127.0.0.1:http': port 'http' is not a number"


def test_server_with_wildcard_address():
    e = error("""\
        [backend.app]
        servers = [{ address = "*:80" }]  # <-
    """)
    assert e.message == "server 's1' in backend 'app': needs the address of a real server, got '*'"


def test_duplicate_server_names():
    e = error("""\
        [backend.app]
        servers = [
          { name = "web", address = "127.0.0.1:1" },
          { name = "web", address = "127.0.0.1:2" },  # <-
        ]
    """)
    assert e.message == "duplicate server name 'web' in backend 'app' (first defined at lb.toml:3)"


def test_generated_server_name_colliding_with_a_given_one():
    e = error("""\
        [backend.app]
        servers = [
          { address = "127.0.0.1:1" },
          { name = "s1", address = "127.0.0.1:2" },  # <-
        ]
    """)
    assert e.message == "duplicate server name 's1' in backend 'app' (first defined at lb.toml:3)"
