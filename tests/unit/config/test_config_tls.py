"""TLS and PROXY protocol settings in TOML: what they parse to, and the file:line errors of bad
settings and bad certificates (key not matching, expired, not PEM) found at check time."""
from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from virtserve.certs import LocalCA
from virtserve.engine.config import load
from virtserve.engine.config.model import ConfigError, RedirectSpec, TlsBindSpec, TlsServerSpec

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = LocalCA.load_or_create(d)
    ca.issue(["site.test"], d / "certs" / "site.pem")
    return d, ca


def write(tmp_path, text: str):
    path = tmp_path / "lb.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_bind_tables_server_ssl_send_proxy_and_redirect(pki, tmp_path):
    d, _ = pki
    config = load(write(tmp_path, f"""\
        [listen.web]
        bind = ["127.0.0.1:8080",
                {{ address = "127.0.0.1:8443", accept-proxy = true, ssl = {{ crt = "{d}/certs", min-version = "TLSv1.3", verify = "required", ca-file = "{d}/ca.pem", client-subject-header = "X-Client-DN" }} }}]
        redirect = {{ scheme = "https", code = 301, port = 8443 }}
        servers = [
          {{ address = "127.0.0.1:9001", send-proxy = "v2", ssl = {{ sni = "app.test", ca-file = "{d}/ca.pem" }} }},
          {{ address = "127.0.0.1:9002", ssl = true, send-proxy = true }},
        ]
        """))
    fe, be = config.frontends[0], config.backends[0]
    plain, tls = fe.binds
    assert plain.ssl is None and not plain.accept_proxy
    assert tls.accept_proxy and tls.ssl == TlsBindSpec(
        crt=(str(d / "certs"),), min_version="TLSv1.3", verify="required", ca_file=str(d / "ca.pem"),
        client_subject_header="X-Client-DN")
    assert fe.redirect == RedirectSpec("https", 301, 8443)
    assert be.servers[0].send_proxy == "v2" and be.servers[0].ssl == TlsServerSpec(sni="app.test", ca_file=str(d / "ca.pem"))
    assert be.servers[1].send_proxy == "v1" and be.servers[1].ssl == TlsServerSpec()


def test_certificate_paths_are_relative_to_the_config_file(pki, tmp_path):
    d, ca = pki
    ca.issue(["rel.test"], tmp_path / "tls" / "rel.pem")
    config = load(write(tmp_path, """\
        [listen.web]
        bind = { address = "127.0.0.1:8443", ssl = { crt = "tls/rel.pem" } }
        servers = [{ address = "127.0.0.1:9001" }]
        """))
    assert config.frontends[0].binds[0].ssl.crt == (str(tmp_path / "tls" / "rel.pem"),)


def _error(tmp_path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load(write(tmp_path, text))
    return exc.value


def test_key_that_does_not_match_the_certificate(pki, tmp_path):
    _, ca = pki
    a = ca.issue(["a.test"], tmp_path / "a.pem").read_text()
    b = ca.issue(["b.test"], tmp_path / "b.pem").read_text()
    key_b = b[b.index("-----BEGIN PRIVATE KEY"):]
    (tmp_path / "mixed.pem").write_text(a[:a.index("-----BEGIN PRIVATE KEY")] + key_b)
    e = _error(tmp_path, """\
        [listen.web]
        servers = [{ address = "127.0.0.1:9001" }]
        bind = { address = "127.0.0.1:8443", ssl = { crt = "mixed.pem" } }
        """)
    assert e.where == f"{tmp_path / 'lb.toml'}:3"
    assert "mixed.pem: the private key does not match the certificate (a.test)" in e.message


def test_expired_and_not_yet_valid_certificates(pki, tmp_path):
    _, ca = pki
    now = dt.datetime.now(dt.timezone.utc)
    ca.issue(["old.test"], tmp_path / "old.pem", days=1, not_before=now - dt.timedelta(days=30))
    ca.issue(["new.test"], tmp_path / "new.pem", not_before=now + dt.timedelta(days=30))
    for name, words in (("old", "expired on"), ("new", "is not valid before")):
        e = _error(tmp_path, f"""\
            [listen.web]
            bind = {{ address = "127.0.0.1:8443", ssl = {{ crt = "{name}.pem" }} }}
            servers = [{{ address = "127.0.0.1:9001" }}]
            """)
        assert e.where.endswith("lb.toml:2") and words in e.message and f"({name}.test)" in e.message


@pytest.mark.parametrize("content, words", [
    ("just text\n", "not a PEM file"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "no certificate in this PEM file"),
    (None, "no private key"),
    ("missing", "cannot read certificate"),
])
def test_wrong_format(pki, tmp_path, content, words):
    d, _ = pki
    target = tmp_path / "bad.pem"
    if content is None:  # a certificate without its key
        target.write_text((d / "ca.pem").read_text())
    elif content != "missing":
        target.write_text(content)
    e = _error(tmp_path, """\
        [listen.web]
        bind = [{ address = "127.0.0.1:8443", ssl = { crt = "bad.pem" } }]
        servers = [{ address = "127.0.0.1:9001" }]
        """)
    assert e.where.endswith("lb.toml:2") and words in e.message, e


def test_encrypted_key_is_refused_without_prompting(pki, tmp_path):
    from cryptography.hazmat.primitives import serialization

    _, ca = pki
    pem = ca.issue(["enc.test"], tmp_path / "plain.pem").read_bytes()
    key = serialization.load_pem_private_key(pem[pem.index(b"-----BEGIN PRIVATE KEY"):], None)
    enc = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"secret"))
    (tmp_path / "enc.pem").write_bytes(pem[:pem.index(b"-----BEGIN PRIVATE KEY")] + enc)
    e = _error(tmp_path, """\
        [listen.web]
        bind = { address = "127.0.0.1:8443", ssl = { crt = "enc.pem" } }
        servers = [{ address = "127.0.0.1:9001" }]
        """)
    assert "the private key is encrypted" in e.message


@pytest.mark.parametrize("setting, words", [
    ('ssl = { crt = "certs", min-version = "SSLv3" }', "expected one of 'TLSv1.2', 'TLSv1.3'"),
    ('ssl = { crt = "certs", verify = "required" }', "verify required needs ca-file"),
    ('ssl = { crt = "certs", ciphers = "NOPE-NOTHING" }', "OpenSSL knows none of these ciphers"),
    ('ssl = { crt = "certs", client-verify-header = "Bad Header" }', "is not a header name"),
    ('ssl = { cert = "certs" }', "did you mean 'crt'"),
    ('ssl = { }', "has no crt"),
    ('accept-proxy = "yes"', "expected true or false"),
])
def test_bad_bind_settings_name_their_line(pki, tmp_path, setting, words):
    d, _ = pki
    (tmp_path / "certs").mkdir(exist_ok=True)
    (tmp_path / "certs" / "site.pem").write_text((d / "certs" / "site.pem").read_text())
    e = _error(tmp_path, f"""\
        [listen.web]
        servers = [{{ address = "127.0.0.1:9001" }}]
        bind = {{ address = "127.0.0.1:8443", {setting} }}
        """)
    assert e.where.endswith("lb.toml:3") and words in e.message, e


@pytest.mark.parametrize("setting, words", [
    ('send-proxy = "v3"', "expected one of 'v1', 'v2'"),
    ('ssl = { verify = "optional" }', "expected one of 'none', 'required'"),
    ('ssl = { ca-file = "nowhere.pem" }', "ca-file"),
])
def test_bad_server_settings_name_their_line(tmp_path, setting, words):
    e = _error(tmp_path, f"""\
        [listen.web]
        bind = "127.0.0.1:8080"
        servers = [
          {{ address = "127.0.0.1:9001", {setting} }},
        ]
        """)
    assert e.where.endswith("lb.toml:4") and words in e.message, e


def test_redirect_needs_http_and_a_known_code(tmp_path):
    e = _error(tmp_path, """\
        [listen.web]
        bind = "127.0.0.1:8080"
        mode = "tcp"
        redirect = "https"
        servers = [{ address = "127.0.0.1:9001" }]
        """)
    assert e.where.endswith("lb.toml:4") and "redirect needs mode http" in e.message
    e = _error(tmp_path, """\
        [listen.web]
        bind = "127.0.0.1:8080"
        redirect = { code = 304 }
        servers = [{ address = "127.0.0.1:9001" }]
        """)
    assert e.where.endswith("lb.toml:3") and "301, 302, 303, 307, 308" in e.message
