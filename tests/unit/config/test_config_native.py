from textwrap import dedent

import pytest

import virtserve.engine.config as config_pkg
from virtserve.engine.config import (
    BackendSpec,
    BindSpec,
    Config,
    ConfigError,
    FrontendSpec,
    ServerSpec,
    Timeouts,
    parse_native,
)
from virtserve.schedulers import base as schedulers


@pytest.fixture
def wlc(monkeypatch):
    """Register stand-ins for schedulers this branch may not have yet; restored after the test."""
    schedulers.names()  # load the built-ins first, so none of them can clash with a stand-in later
    for name in ("wlc", "sh"):
        if name not in schedulers._REGISTRY:
            monkeypatch.setitem(schedulers._REGISTRY, name, schedulers.Scheduler)


def parse(text: str) -> Config:
    return parse_native(dedent(text), source="lb.toml")


EXAMPLE = """\
    # optional global settings
    grace = "10s"              # stop: time in-flight work may take

    [defaults]                  # inherited by every frontend/backend/listen
    mode = "http"               # tcp | http
    retries = 3
    forwardfor = false
    timeout = { connect = "5s", client = "50s", server = "50s", http-request = "10s", keep-alive = "10s", queue = "5s" }

    [frontend.web]
    bind = ["127.0.0.1:8080", "[::1]:8080"]   # or a single string; port 0 = ephemeral
    mode = "http"
    backend = "app"            # default backend
    maxconn = 0
    forwardfor = true
    timeout = { client = "30s" }

    [backend.app]
    mode = "http"
    scheduler = "rr"
    scheduler-options = { sh-port = true }   # optional
    retries = 2
    servers = [
      { name = "web1", address = "127.0.0.1:9001", weight = 2, maxconn = 100 },
      { name = "web2", address = "127.0.0.1", port = 9002, backup = true },
    ]

    [listen.demo]
    bind = "127.0.0.1:8081"
    mode = "tcp"
    scheduler = "wlc"
    servers = [
      { address = "10.0.0.1:22" },
      { address = "[fd00::2]:22", weight = 0 },
    ]
"""


def test_example_round_trip(wlc):
    web_timeouts = Timeouts(connect=5, client=30, server=50, http_request=10, keep_alive=10, queue=5)
    expected = Config(
        frontends=(
            FrontendSpec(
                name="web",
                binds=(BindSpec("127.0.0.1", 8080), BindSpec("::1", 8080)),
                default_backend="app",
                mode="http",
                timeouts=web_timeouts,
                maxconn=0,
                forwardfor=True,
            ),
            FrontendSpec(name="demo", binds=(BindSpec("127.0.0.1", 8081),), default_backend="demo", mode="tcp"),
        ),
        backends=(
            BackendSpec(
                name="app",
                mode="http",
                scheduler="rr",
                scheduler_options=(("sh-port", True),),
                servers=(
                    ServerSpec("web1", "127.0.0.1", 9001, weight=2, maxconn=100),
                    ServerSpec("web2", "127.0.0.1", 9002, backup=True),
                ),
                retries=2,
            ),
            BackendSpec(
                name="demo",
                mode="tcp",
                scheduler="wlc",
                servers=(ServerSpec("s1", "10.0.0.1", 22), ServerSpec("s2", "fd00::2", 22, weight=0)),
                retries=3,
            ),
        ),
        grace=10.0,
    )
    config = parse(EXAMPLE)
    assert config == expected
    assert config.source == "lb.toml"
    # where: sections at their header, binds and servers at their entry
    web, demo = config.frontends
    assert web.where == "lb.toml:10"
    assert [b.where for b in web.binds] == ["lb.toml:11", "lb.toml:11"]
    assert config.backend("app").where == "lb.toml:18"
    assert [s.where for s in config.backend("app").servers] == ["lb.toml:24", "lb.toml:25"]
    assert demo.where == config.backend("demo").where == "lb.toml:28"
    assert [s.where for s in config.backend("demo").servers] == ["lb.toml:33", "lb.toml:34"]


def test_minimal_config_takes_model_defaults():
    config = parse("""\
        [frontend.f]
        bind = "127.0.0.1:0"
        backend = "b"
        [backend.b]
    """)
    assert config == Config(
        frontends=(FrontendSpec("f", (BindSpec("127.0.0.1", 0),), "b"),),
        backends=(BackendSpec("b"),),
    )
    assert config.backend("b").servers == ()  # no servers is allowed: requests get a 503


def test_defaults_are_inherited_and_overridden_per_key():
    config = parse("""\
        [defaults]
        mode = "tcp"
        retries = 5
        forwardfor = true
        maxconn = 1000
        scheduler = "rr"
        timeout = { connect = "1s", client = "2s", server = "3s", queue = 4 }

        [frontend.f]
        bind = ":7000"
        backend = "b"
        maxconn = 10
        timeout = { client = "20s" }

        [backend.b]
        retries = 0
        forwardfor = false
        timeout = { server = "30s", http_request = "1m" }
    """)
    (f,), (b,) = config.frontends, config.backends
    assert f.mode == b.mode == "tcp"
    assert f.maxconn == 10 and f.forwardfor is True
    assert f.timeouts == Timeouts(connect=1, client=20, server=3, http_request=10, keep_alive=10, queue=4)
    assert b.retries == 0 and b.forwardfor is False and b.scheduler == "rr"
    assert b.timeouts == Timeouts(connect=1, client=2, server=30, http_request=60, keep_alive=10, queue=4)
    assert f.binds == (BindSpec("0.0.0.0", 7000),)  # HAProxy's `bind :port`: every IPv4 address


def test_scheduler_options_follow_their_scheduler(wlc):
    config = parse("""\
        [defaults]
        scheduler = "sh"
        scheduler-options = { sh-port = true, sh_fallback = true }
        [backend.inherits]
        [backend.own-scheduler]
        scheduler = "rr"
        [backend.own-options]
        scheduler_options = { list = [1, 2] }
    """)
    inherits, own_scheduler, own_options = config.backends
    assert inherits.scheduler == "sh"
    assert inherits.options == {"sh-port": True, "sh-fallback": True}
    assert inherits.scheduler_options == (("sh-fallback", True), ("sh-port", True))  # sorted
    assert own_scheduler.scheduler == "rr" and own_scheduler.scheduler_options == ()
    assert own_options.scheduler == "sh" and own_options.options == {"list": (1, 2)}


def test_dashes_and_underscores_are_the_same_key():
    dashes = parse("""\
        [defaults]
        timeout = { http-request = "3s", keep-alive = "4s" }
        [backend.b]
        scheduler-options = { sh-port = true }
    """)
    underscores = parse("""\
        [defaults]
        timeout = { http_request = "3s", keep_alive = "4s" }
        [backend.b]
        scheduler_options = { sh_port = true }
    """)
    assert dashes == underscores
    assert dashes.backends[0].timeouts.http_request == 3.0


def test_bare_numbers_are_seconds_and_units_mix():
    config = parse("""\
        grace = 2.5
        [backend.b]
        timeout = { connect = 1, server = "1.5s", queue = "250ms", client = "2m", keep-alive = "1h", http-request = "1d" }
    """)
    assert config.grace == 2.5
    assert config.backends[0].timeouts == Timeouts(
        connect=1, server=1.5, queue=0.25, client=120, keep_alive=3600, http_request=86400
    )


def test_listen_is_a_frontend_and_backend_of_one_name():
    config = parse("""\
        [listen.ssh]
        bind = ["0.0.0.0:2222", "[::]:2222"]
        mode = "tcp"
        maxconn = 50
        retries = 1
        servers = [{ address = "10.0.0.1", port = 22 }]
    """)
    (f,), (b,) = config.frontends, config.backends
    assert f == FrontendSpec("ssh", (BindSpec("0.0.0.0", 2222), BindSpec("::", 2222)), "ssh", mode="tcp", maxconn=50)
    assert b == BackendSpec("ssh", mode="tcp", retries=1, servers=(ServerSpec("s1", "10.0.0.1", 22),))


def test_sections_keep_document_order_across_kinds():
    config = parse("""\
        [listen.a]
        bind = "127.0.0.1:1"
        [backend.b]
        [frontend.c]
        bind = "127.0.0.1:2"
        backend = "b"
        [listen.d]
        bind = "127.0.0.1:3"
    """)
    assert [f.name for f in config.frontends] == ["a", "c", "d"]
    assert [b.name for b in config.backends] == ["a", "b", "d"]


def test_array_of_tables_servers_and_dotted_sections():
    config = parse("""\
        frontend.f.bind = "127.0.0.1:80"
        frontend.f.backend = "b"

        [[backend.b.servers]]
        name = "one"
        address = "app.internal:8080"

        [[backend.b.servers]]
        address = "127.0.0.2:8080"
        weight = 256
    """)
    assert config.backend("b").servers == (
        ServerSpec("one", "app.internal", 8080),
        ServerSpec("s2", "127.0.0.2", 8080, weight=256),
    )
    assert [s.where for s in config.backend("b").servers] == ["lb.toml:4", "lb.toml:8"]
    assert config.frontends[0].where == "lb.toml:1"


def test_quoted_section_names():
    config = parse("""\
        [backend."api.v1"]
        [frontend."front door"]
        bind = "127.0.0.1:80"
        backend = "api.v1"
    """)
    assert config.frontends[0].default_backend == "api.v1"
    assert config.frontends[0].where == "lb.toml:2"


def test_empty_document_is_an_empty_config():
    assert parse("") == Config()


def test_load_reads_toml_and_names_the_file(tmp_path):
    path = tmp_path / "lb.toml"
    path.write_text(dedent(EXAMPLE).replace('"wlc"', '"rr"'))
    config = config_pkg.load(path)
    assert config.source == str(path)
    assert config.frontends[0].where == f"{path}:10"
    assert config == config_pkg.load_native(str(path))


def test_load_errors_carry_the_file_name(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[frontend.f]\nbind = \"127.0.0.1:80\"\nbackend = \"nope\"\n")
    with pytest.raises(ConfigError) as info:
        config_pkg.load(path)
    assert info.value.where == f"{path}:3"
    assert str(info.value).startswith(f"{path}:3: ")


def test_load_rejects_unknown_formats(tmp_path):
    with pytest.raises(ConfigError) as info:
        config_pkg.load(tmp_path / "lb.xml")
    assert info.value.where == str(tmp_path / "lb.xml")
    assert "is not supported" in info.value.message and "lb.xml" in info.value.message


def test_load_missing_or_binary_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        config_pkg.load(tmp_path / "missing.toml")
    assert info.value.where == str(tmp_path / "missing.toml")
    assert "cannot read config: No such file or directory" in info.value.message
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"grace = '\xff'")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config_pkg.load(binary)
