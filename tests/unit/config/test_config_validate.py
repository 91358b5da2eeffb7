"""validate() on models built in code, as haproxy.cfg and ldirectord.cf parsers will build them."""
import dataclasses

import pytest

from virtserve.engine.config import (
    BackendSpec,
    BindSpec,
    Config,
    ConfigError,
    FrontendSpec,
    ServerSpec,
    Timeouts,
    validate,
)


def config(*, frontends=None, backends=None, **kwargs) -> Config:
    if backends is None:
        backends = (BackendSpec("app", servers=(ServerSpec("s1", "127.0.0.1", 9001),), where="f.cfg:5"),)
    if frontends is None:
        frontends = (FrontendSpec("web", (BindSpec("127.0.0.1", 8080, where="f.cfg:2"),), "app", where="f.cfg:1"),)
    return Config(frontends=frontends, backends=backends, source="f.cfg", **kwargs)


def refused(cfg: Config, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate(cfg, **kwargs)
    return info.value


def test_a_sound_config_passes():
    validate(config())
    validate(Config())


def test_where_falls_back_to_the_spec_then_the_source():
    e = refused(config(frontends=(FrontendSpec("web", (BindSpec("127.0.0.1", 80),), "nope", where="f.cfg:1"),)))
    assert (e.where, e.message) == ("f.cfg:1", "frontend 'web': backend 'nope' not found")
    e = refused(config(frontends=(FrontendSpec("web", (BindSpec("127.0.0.1", 80),), "nope"),)))
    assert e.where == "f.cfg"


def test_locate_hook_gives_the_line_of_the_field():
    asked = []

    def locate(spec, field):
        asked.append((type(spec).__name__, field))
        return "f.cfg:42" if field == "weight" else ""

    backend = BackendSpec("app", servers=(ServerSpec("s1", "10.0.0.1", 80, weight=300, where="f.cfg:6"),))
    e = refused(config(backends=(backend,)), locate=locate)
    assert (e.where, e.message) == ("f.cfg:42", "server 's1' in backend 'app': weight 300 is out of range 0..256")
    assert ("ServerSpec", "weight") in asked


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": 0}, "server 's1' in backend 'app': port 0 is out of range 1..65535"),
        ({"port": 65536}, "port 65536 is out of range 1..65535"),
        ({"weight": -1}, "weight -1 is out of range 0..256"),
        ({"maxconn": -1}, "maxconn must be 0 or more, got -1"),
        ({"port": 80.0}, "port must be a whole number, got 80.0"),
        ({"address": ""}, "needs the address of a real server, got ''"),
    ],
)
def test_server_ranges(change, message):
    server = dataclasses.replace(ServerSpec("s1", "127.0.0.1", 9001, where="f.cfg:6"), **change)
    e = refused(config(backends=(BackendSpec("app", servers=(server,)),)))
    assert e.where == "f.cfg:6"
    assert message in e.message


def test_weight_bounds_are_inclusive():
    servers = (ServerSpec("a", "10.0.0.1", 1, weight=0), ServerSpec("b", "10.0.0.1", 65535, weight=256))
    validate(config(backends=(BackendSpec("app", servers=servers),)))


def test_backend_checks():
    e = refused(config(backends=(BackendSpec("app", mode="udp", where="f.cfg:5"),)))
    # Every error is named: the frontend's mode mismatch (f.cfg:1) comes too.
    assert ("f.cfg:5", "backend 'app': mode must be one of tcp, http, got 'udp'") in [(x.where, x.message) for x in e.errors]
    e = refused(config(backends=(BackendSpec("app", scheduler="zzz-none"),)))
    assert e.message.startswith("backend 'app': unknown scheduler 'zzz-none' (known: ")
    e = refused(config(backends=(BackendSpec("app", timeouts=Timeouts(queue=-1)),)))
    assert e.message == "backend 'app': timeout queue must be a time of 0 or more, got -1"
    e = refused(config(backends=(BackendSpec("app", timeouts=Timeouts(http_request=float("nan"))),)))
    assert "timeout http-request must be a time of 0 or more" in e.message


def test_duplicates():
    app = BackendSpec("app", where="f.cfg:5")
    e = refused(config(backends=(app, dataclasses.replace(app, where="f.cfg:9"))))
    assert (e.where, e.message) == ("f.cfg:9", "duplicate backend name 'app' (first defined at f.cfg:5)")

    web = FrontendSpec("web", (BindSpec("127.0.0.1", 80),), "app", where="f.cfg:1")
    other = FrontendSpec("web", (BindSpec("127.0.0.1", 81),), "app", where="f.cfg:3")
    e = refused(config(frontends=(web, other)))
    assert (e.where, e.message) == ("f.cfg:3", "duplicate frontend name 'web' (first defined at f.cfg:1)")

    servers = (ServerSpec("x", "10.0.0.1", 1, where="f.cfg:6"), ServerSpec("x", "10.0.0.2", 1, where="f.cfg:7"))
    e = refused(config(backends=(BackendSpec("app", servers=servers),)))
    assert (e.where, e.message) == ("f.cfg:7", "duplicate server name 'x' in backend 'app' (first defined at f.cfg:6)")


def test_same_server_name_in_two_backends_is_fine():
    server = ServerSpec("s1", "10.0.0.1", 80)
    validate(config(backends=(BackendSpec("app", servers=(server,)), BackendSpec("other", servers=(server,)))))


def test_frontend_checks():
    e = refused(config(frontends=(FrontendSpec("web", (), "app", where="f.cfg:1"),)))
    assert (e.where, e.message) == ("f.cfg:1", "frontend 'web' has no bind address to listen on")
    e = refused(config(frontends=(FrontendSpec("web", (BindSpec("::1", -1, where="f.cfg:2"),), "app"),)))
    assert (e.where, e.message) == ("f.cfg:2", "frontend 'web': bind [::1]:-1: port -1 is out of range 0..65535")
    e = refused(config(frontends=(FrontendSpec("", (BindSpec("::1", 1),), "app", where="f.cfg:1"),)))
    assert e.message == "a frontend needs a non-empty name"
    e = refused(config(grace=-1.0))
    assert (e.where, e.message) == ("f.cfg", "grace must be a time of 0 or more, got -1.0")


def test_mode_mismatch():
    e = refused(config(frontends=(FrontendSpec("web", (BindSpec("127.0.0.1", 80),), "app", mode="tcp"),)))
    assert e.message == "mode mismatch: frontend 'web' is mode tcp but its backend 'app' is mode http (defined at f.cfg:5)"


def test_duplicate_binds_compare_normalised_addresses():
    a = FrontendSpec("a", (BindSpec("::1", 80, where="f.cfg:1"),), "app")
    b = FrontendSpec("b", (BindSpec("0:0:0:0:0:0:0:1", 80, where="f.cfg:3"),), "app")
    e = refused(config(frontends=(a, b)))
    assert (e.where, e.message) == (
        "f.cfg:3", "frontend 'b': [0:0:0:0:0:0:0:1]:80 is already bound by frontend 'a' (at f.cfg:1)"
    )


def test_duplicate_bind_within_one_frontend():
    web = FrontendSpec("web", (BindSpec("LocalHost", 80), BindSpec("localhost", 80, where="f.cfg:2")), "app")
    e = refused(config(frontends=(web,)))
    assert e.message == "frontend 'web': localhost:80 is already bound by the same frontend"


def test_ephemeral_and_distinct_binds_do_not_collide():
    a = FrontendSpec("a", (BindSpec("127.0.0.1", 0), BindSpec("127.0.0.1", 80)), "app")
    b = FrontendSpec("b", (BindSpec("127.0.0.1", 0), BindSpec("127.0.0.2", 80), BindSpec("127.0.0.1", 81)), "app")
    validate(config(frontends=(a, b)))
