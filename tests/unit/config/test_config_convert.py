"""convert → load gives back the same model; mangled files give FILE:LINE errors, never a traceback."""
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from virtserve.engine.config import ConfigError, parse_native
from virtserve.engine.config.haproxy import parse as parse_haproxy
from virtserve.engine.config.model import BackendSpec, BindSpec, Config, FrontendSpec, ServerSpec, Timeouts
from virtserve.engine.config.toml_writer import to_toml

names = st.text(alphabet="abcdefghij-_0123456789", min_size=1, max_size=8)
times = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
hosts = st.sampled_from(["127.0.0.1", "127.0.0.2", "::1", "10.1.2.3", "fe80::1", "backend.example"])


@st.composite
def configs(draw):
    backends = []
    for i, name in enumerate(draw(st.lists(names, min_size=1, max_size=3, unique=True))):
        servers = tuple(
            ServerSpec(name=f"s{j}-{n}", address=draw(hosts), port=draw(st.integers(1, 65535)),
                       weight=draw(st.integers(0, 256)), maxconn=draw(st.integers(0, 10000)),
                       backup=draw(st.booleans()))
            for j, n in enumerate(draw(st.lists(names, max_size=4, unique=True))))
        backends.append(BackendSpec(
            name=name, mode=draw(st.sampled_from(["tcp", "http"])),
            scheduler=draw(st.sampled_from(["rr", "wrr", "wlc", "sh"])),
            scheduler_options=tuple(sorted(draw(st.dictionaries(st.sampled_from(["sh-port", "sh-fallback"]),
                                                               st.booleans(), max_size=2)).items())),
            servers=servers, retries=draw(st.integers(0, 10)), forwardfor=draw(st.booleans()),
            timeouts=Timeouts(connect=draw(times), server=draw(times), queue=draw(times))))
    frontends = []
    ports = iter(range(1000, 2000))
    for i, backend in enumerate(backends):
        if draw(st.booleans()):
            frontends.append(FrontendSpec(
                name=f"fe{i}", binds=(BindSpec(draw(hosts.filter(lambda h: "." in h or ":" in h)), next(ports)),),
                default_backend=backend.name, mode=backend.mode, maxconn=draw(st.integers(0, 5000)),
                forwardfor=draw(st.booleans()),
                timeouts=Timeouts(client=draw(times), http_request=draw(times), keep_alive=draw(times))))
    return Config(frontends=tuple(frontends), backends=tuple(backends), grace=draw(times))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_any_model_survives_convert_then_load(config):
    assert parse_native(to_toml(config), source="converted.toml") == config


VALID_TOML = """\
[defaults]
mode = "http"
timeout = { connect = "5s", client = "30s" }

[frontend.web]
bind = ["127.0.0.1:8080"]
backend = "app"

[backend.app]
scheduler = "wrr"
servers = [{ name = "a", address = "127.0.0.1:9001", weight = 2 }, { address = "127.0.0.1:9002" }]
"""

VALID_HAPROXY = """\
global
    daemon
defaults
    mode http
    timeout connect 5s
frontend web
    bind 127.0.0.1:8080
    default_backend app
backend app
    balance wrr
    server a 127.0.0.1:9001 weight 2
    server b 127.0.0.1:9002 backup
"""

_LOCATED = re.compile(r"^\S+:\d+(:|\.)")


def _mutate(text: str, data) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["delete", "duplicate", "char", "truncate", "swap"]))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "char" and lines[i]:
            j = data.draw(st.integers(0, len(lines[i]) - 1))
            c = data.draw(st.sampled_from(list("\"'[]{}=#:,\\ x9-")))
            lines[i] = lines[i][:j] + c + lines[i][j + 1:]
        elif op == "truncate":
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))] + "\n"
        elif op == "swap":
            k = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[k] = lines[k], lines[i]
    return "".join(lines)


@settings(max_examples=300)
@given(st.data())
def test_mangled_files_give_a_model_or_a_located_error(data):
    for parse, text, source in ((parse_native, VALID_TOML, "lb.toml"), (parse_haproxy, VALID_HAPROXY, "haproxy.cfg")):
        mangled = _mutate(text, data)
        try:
            assert isinstance(parse(mangled, source=source), Config)
        except ConfigError as exc:
            for line in str(exc).splitlines():
                assert line.startswith(source + ":") and re.match(r"^\S+:\d+: ", line), (mangled, line)


def test_rich_haproxy_and_ldirectord_files_convert_to_toml_that_loads_back_equal(tmp_path):
    from pathlib import Path

    from virtserve.engine.config import load, parse_native

    ldirectord = tmp_path / "ldirectord.cf"
    ldirectord.write_text("checktimeout=3\ncheckinterval=5\nquiescent=yes\nemailalert=ops@example.com\n"
                          "virtual=127.0.0.1:80\n  real=127.0.0.1:81 masq 2\n  real=127.0.0.1:82 gate\n"
                          "  fallback=127.0.0.1:99\n  service=http\n  request=\"test.html\"\n"
                          "  receive=\"still alive\"\n  scheduler=wlc\n  persistent=300\n  netmask=255.255.255.0\n")
    for path in (Path(__file__).with_name("rich_haproxy.cfg"), ldirectord):
        original = load(path)
        assert parse_native(to_toml(original), source="converted.toml") == original, path.name
