"""convert → load over the whole model: any valid Config, with TLS binds and servers, stats (the
listener's and in-band), persistence, checks, alerts, routing and http-request rules, logs and
the IPVS fields, is written as native TOML that loads back to an equal Config."""
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from virtserve.certs import LocalCA
from virtserve.engine.config import ConfigError, parse_native, validate
from virtserve.engine.config.conditions import define_acl, parse_condition
from virtserve.engine.config.model import (
    ALERT_STATUSES,
    COOKIE_MODES,
    AlertSpec,
    BackendSpec,
    BindSpec,
    CheckSpec,
    Config,
    CookieSpec,
    FrontendSpec,
    IpvsGlobalSpec,
    IpvsSpec,
    IpvsSyncSpec,
    LogSpec,
    PersistentSpec,
    RedirectSpec,
    ServerSpec,
    StatsSpec,
    StickSpec,
    Timeouts,
    TlsBindSpec,
    TlsServerSpec,
)
from virtserve.engine.config.rules import HeaderRuleSpec, RedirectRuleSpec, RouteSpec
from virtserve.engine.config.toml_writer import to_toml

# Certificates that validation reads (TLS binds and servers), made once for the module.
_DIR = Path(tempfile.mkdtemp(prefix="vs-roundtrip-"))
_CA = LocalCA.load_or_create(_DIR / "ca")
_CA.issue(["localhost", "127.0.0.1"], _DIR / "site.pem")
_CA.issue(["client"], _DIR / "client.pem", client=True)
CA_FILE = str(next((_DIR / "ca").glob("*.crt"), None) or next((_DIR / "ca").glob("*.pem")))
SITE, CLIENT = str(_DIR / "site.pem"), str(_DIR / "client.pem")

names = st.text(alphabet="abcdefghij-_0123456789", min_size=1, max_size=8)
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ._-/:\"'\\é", min_size=1, max_size=12)
times = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=0.001, max_value=1e5, allow_nan=False, allow_infinity=False)
hosts = st.sampled_from(["127.0.0.1", "127.0.0.2", "::1", "10.1.2.3", "fe80::1", "backend.example"])
ips = st.sampled_from(["127.0.0.1", "127.0.0.2", "::1", "10.1.2.3"])
_NAMED = define_acl(define_acl({}, "is_api", "path_beg /api /v1"), "is_local", "src 127.0.0.0/8 ::1")
HTTP_CONDITIONS = ["{ path_beg /api }", "is_api", "!is_api || { hdr(host) -i example.com }",
                   "{ path_end -i .css .js } is_local", "{ method POST }", "{ url_sub -m sub q= }"]
TCP_CONDITIONS = ["{ src 10.0.0.0/8 }", "is_local", "!is_local"]


@st.composite
def conditions(draw, mode):
    text = draw(st.none() | st.sampled_from(HTTP_CONDITIONS if mode == "http" else TCP_CONDITIONS))
    return None if text is None else parse_condition(text, _NAMED, unless=draw(st.booleans()))


@st.composite
def rules(draw):
    out = []
    for _ in range(draw(st.integers(0, 3))):
        cond = draw(conditions("http"))
        kind = draw(st.sampled_from(["add-header", "set-header", "del-header", "redirect"]))
        if kind == "redirect":
            rtype = draw(st.sampled_from(["location", "prefix", "scheme"]))
            target = {"location": "/moved", "prefix": "https://new.example", "scheme": "https"}[rtype]
            drop = draw(st.booleans())
            out.append(RedirectRuleSpec(rtype, target, code=draw(st.sampled_from([301, 302, 303, 307, 308])),
                                        drop_query=drop, append_slash=drop and draw(st.booleans()), condition=cond))
        else:
            value = "" if kind == "del-header" else draw(st.sampled_from(["yes", "a b", "x=\"1\"", "é"]))
            out.append(HeaderRuleSpec(kind, draw(st.sampled_from(["X-One", "X-Forwarded-For", "Via"])), value, cond))
    return tuple(out)


@st.composite
def page(draw, inband):
    kw = {}
    if not inband:
        kw["bind"] = BindSpec(draw(ips), draw(st.integers(1, 999)))
        kw["metrics_uri"] = draw(st.sampled_from(["/metrics", "", "/m"]))
        if draw(st.booleans()):
            kw["socket"], kw["socket_level"] = "/run/vs.sock", draw(st.sampled_from(["user", "operator", "admin"]))
    return StatsSpec(uri=draw(st.sampled_from(["/", "/stats", "/a/b"])),
                     realm=draw(st.sampled_from(["HAProxy Statistics", "LB", "Haproxy Statistics"])),
                     auth=tuple(draw(st.lists(st.tuples(st.sampled_from(["ops", "admin"]),
                                                         st.sampled_from(["pw", "p:w", "secret"])), max_size=2))),
                     hide_version=draw(st.booleans()), admin=draw(st.booleans()), refresh=draw(times), **kw)


@st.composite
def checks(draw):
    kind = draw(st.sampled_from(["connect", "http", "https", "smtp", "tcp", "external", "agent", "on", "off"]))
    return CheckSpec(
        type=kind, interval=draw(positive), timeout=draw(times), negotiate_timeout=draw(times),
        rise=draw(st.integers(1, 10)), fall=draw(st.integers(1, 10)), port=draw(st.integers(0, 65535)),
        request=draw(st.sampled_from(["/", "/robots.txt", "/test.html"])),
        receive=draw(st.sampled_from(["", "still alive", "^OK$"])), method=draw(st.sampled_from(["GET", "HEAD"])),
        virtualhost=draw(st.sampled_from(["", "www.example"])),
        status=tuple(draw(st.lists(st.integers(100, 599), max_size=3))),
        send=draw(st.sampled_from(["", "PING\r\n"])), expect=draw(st.sampled_from(["", "PONG"])),
        command=("/bin/true",) if kind == "external" else ())


@st.composite
def servers(draw, backend, cookies):
    out = []
    for j, n in enumerate(draw(st.lists(names, max_size=3, unique=True))):
        u = draw(st.integers(0, 100))
        checked = draw(st.booleans())  # not checked: no check of its own (it would never run)
        tls = None
        if draw(st.integers(0, 3)) == 0:
            tls = TlsServerSpec(verify=draw(st.sampled_from(["none", "required"])), ca_file=CA_FILE,
                                sni=draw(st.sampled_from(["", "localhost"])), crt=draw(st.sampled_from(["", CLIENT])),
                                min_version=draw(st.sampled_from(["TLSv1.2", "TLSv1.3"])),
                                alpn=tuple(draw(st.lists(st.sampled_from(["http/1.1", "h2"]), max_size=1))))
        out.append(ServerSpec(
            name=f"s{j}-{n}", address=draw(hosts), port=draw(st.integers(1, 65535)), weight=draw(st.integers(0, 256)),
            maxconn=draw(st.integers(0, 10000)), backup=draw(st.booleans()), ssl=tls,
            send_proxy=draw(st.sampled_from(["", "v1", "v2"])), checked=checked,
            check=draw(st.none() | checks()) if checked else None, cookie=f"c{j}" if cookies and draw(st.booleans()) else "",
            forward=draw(st.sampled_from(["masq", "gate", "ipip"])), u_threshold=u,
            l_threshold=draw(st.integers(0, u))))
    return tuple(out)


@st.composite
def backends(draw, name):
    mode = draw(st.sampled_from(["tcp", "http"]))
    persistence = draw(st.sampled_from(["none", "persistent", "stick"] + (["cookie"] if mode == "http" else [])))
    kw = {}
    if persistence == "cookie":
        cmode = draw(st.sampled_from(COOKIE_MODES))
        insert = cmode == "insert"  # the others take no insert-only options (persistence.cookie says so)
        kw["cookie"] = CookieSpec(name=draw(st.sampled_from(["LB", "SERVERID"])), mode=cmode,
                                  indirect=insert and draw(st.booleans()), nocache=insert and draw(st.booleans()),
                                  httponly=draw(st.booleans()), secure=draw(st.booleans()),
                                  domain=draw(st.sampled_from(["", ".example.com"])),
                                  maxidle=draw(times) if insert else 0.0, maxlife=draw(times) if insert else 0.0)
    elif persistence == "persistent":
        kw["persistent"] = PersistentSpec(timeout=draw(times), netmask=draw(st.integers(0, 32)),
                                          netmask6=draw(st.integers(0, 128)))
    elif persistence == "stick":
        kw["stick"] = StickSpec(size=draw(st.integers(1, 10**6)), expire=draw(times))
    if draw(st.booleans()):
        kw["alert"] = AlertSpec(to=("ops@example.com",), relay=draw(st.sampled_from(["127.0.0.1", "mail.example"])),
                                relay_port=draw(st.integers(1, 65535)), sender=draw(st.sampled_from(["vs@localhost", "lb@x"])),
                                freq=draw(times), status=tuple(draw(st.lists(st.sampled_from(ALERT_STATUSES),
                                                                             min_size=1, max_size=2, unique=True))))
    if mode == "http":
        kw["rules"] = draw(rules())
        kw["stats"] = draw(st.none() | page(True))
        kw["httpclose"] = draw(st.booleans())
    if draw(st.booleans()):
        kw["ipvs"] = draw(st.sampled_from([IpvsSpec(), IpvsSpec("udp", one_packet=True), IpvsSpec("fwm", fwmark=7)]))
    return BackendSpec(
        name=name, mode=mode, scheduler=draw(st.sampled_from(["rr", "wrr", "wlc", "lc", "sh"])),
        servers=draw(servers(name, persistence == "cookie")), retries=draw(st.integers(0, 10)),
        forwardfor=draw(st.booleans()), check=draw(st.none() | checks()), quiescent=draw(st.booleans()),
        slowstart=draw(times), allbackups=draw(st.booleans()), redispatch=draw(st.booleans()),
        fallback=draw(st.none() | st.builds(lambda h, p: ServerSpec("fallback", h, p), ips, st.integers(1, 65535))),
        shutdown_sessions=draw(st.booleans()),
        timeouts=Timeouts(connect=draw(times), server=draw(times), queue=draw(times)), **kw)


@st.composite
def binds(draw, port, mode):
    tls = None
    if mode == "http" and draw(st.booleans()):
        verify = draw(st.sampled_from(["none", "optional", "required"]))
        tls = TlsBindSpec(crt=(SITE,), min_version=draw(st.sampled_from(["TLSv1.2", "TLSv1.3"])),
                          ciphers=draw(st.sampled_from(["", "ECDHE+AESGCM"])),
                          alpn=tuple(draw(st.lists(st.sampled_from(["http/1.1", "h2"]), min_size=1, max_size=2, unique=True))),
                          verify=verify, ca_file=CA_FILE if verify != "none" else "",
                          client_subject_header=draw(st.sampled_from(["", "X-Client-DN"])),
                          client_verify_header=draw(st.sampled_from(["", "X-Client-Verify"])), watch=draw(times))
    return BindSpec(draw(ips), port, ssl=tls, accept_proxy=draw(st.booleans()))


@st.composite
def configs(draw):
    backs = [draw(backends(name)) for name in draw(st.lists(names, min_size=1, max_size=3, unique=True))]
    fronts = []
    ports = iter(range(1000, 2000))
    for i, backend in enumerate(backs):
        if not draw(st.booleans()):
            continue
        mode = backend.mode
        kw = {}
        others = [b.name for b in backs if b.mode == mode]
        kw["routes"] = tuple(RouteSpec(draw(st.sampled_from(others)), draw(conditions(mode)))
                             for _ in range(draw(st.integers(0, 2))))
        if mode == "http":
            kw["rules"] = draw(rules())
            kw["stats"] = draw(st.none() | page(True))
            kw["httpclose"] = draw(st.booleans())
            if draw(st.booleans()):
                kw["redirect"] = RedirectSpec(scheme="https", code=draw(st.sampled_from([301, 302, 303, 307, 308])),
                                              port=draw(st.integers(0, 65535)))
        fronts.append(FrontendSpec(
            name=f"fe{i}", binds=tuple(draw(binds(next(ports), mode)) for _ in range(draw(st.integers(1, 2)))),
            default_backend=backend.name, mode=mode, maxconn=draw(st.integers(0, 5000)),
            forwardfor=draw(st.booleans()), forward=draw(st.sampled_from(["userspace", "auto"])),
            timeouts=Timeouts(client=draw(times), http_request=draw(times), keep_alive=draw(times),
                              handshake=draw(times)), **kw))
    top = {}
    if draw(st.booleans()):
        top["stats"] = draw(page(False))
    if draw(st.booleans()):
        top["log"] = LogSpec(target=draw(st.sampled_from(["stdout", "stderr", "/var/log/vs.log", "udp@127.0.0.1:514",
                                                          "unix@/dev/log"])),
                             format=draw(st.sampled_from(["auto", "httplog", "tcplog"])), dontlognull=draw(st.booleans()),
                             facility=draw(st.sampled_from(["local0", "daemon", "local7"])),
                             tag=draw(st.sampled_from(["virtserve", "lb"])))
    if draw(st.booleans()):
        syncs = draw(st.lists(st.sampled_from(["master", "backup"]), unique=True, max_size=2))
        seconds = st.just(0.0) | st.integers(1, 2147483).map(float)  # the kernel counts whole seconds
        top["ipvs"] = IpvsGlobalSpec(tcp=draw(seconds), tcpfin=draw(seconds), udp=draw(seconds),
                                     sync=tuple(IpvsSyncSpec(s, "lo", draw(st.integers(0, 255))) for s in syncs))
    return Config(frontends=tuple(fronts), backends=tuple(backs), grace=draw(times), workers=draw(st.integers(1, 8)),
                  autoreload=draw(st.booleans()), **top)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(configs())
def test_any_model_survives_convert_then_load(config):
    try:
        validate(config)
    except ConfigError:
        assume(False)
    text = to_toml(config)
    assert parse_native(text, source="converted.toml") == config, text
