"""TLS: SSLContexts for listeners (termination) and for real servers, built from the config.

Listeners take HAProxy-style PEM files (certificate chain and private key in one file, or the key
beside it in FILE.key) and directories of them. The first certificate is the default; the SNI
callback picks another by server name, exact names first, then wildcards (`*.example.com` covers
one label). Each certificate gets its own SSLContext with the same settings, and the callback
points the handshake at it.

`CertStore` holds the contexts of one listener. A reload builds a complete new set and swaps it
in one assignment on the loop thread: a handshake in progress keeps the context it started with,
the next one sees the new set, so no handshake fails because of a reload. Files that do not load
(half written, key not matching yet) leave the old set serving, and the next change retries.

Certificates are read with `cryptography` for the checks the config check makes (the key matches
the certificate, dates, format), then loaded into OpenSSL through the stdlib ssl module.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from virtserve.engine.config.model import TlsBindSpec, TlsServerSpec

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger("virtserve.engine")

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
# Files a certificate directory may hold that are not certificates (HAProxy skips the same).
_NOT_CERTS = (".key", ".issuer", ".ocsp", ".sctl", ".csr", ".srl")


class CertError(ValueError):
    """A certificate or key that cannot serve: the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Cert:
    """A checked certificate file: where its chain and key are, the names it serves."""

    path: str
    keyfile: str | None  # None: the key is in `path`
    names: tuple[str, ...]  # DNS names (lowercase), wildcards as "*.example.com"
    not_after: dt.datetime


# --- reading and checking ---------------------------------------------------------------------


def cert_files(crt: tuple[str, ...]) -> list[str]:
    """The certificate files a `crt` list names, directories expanded in name order."""
    files: list[str] = []
    for entry in crt:
        if os.path.isdir(entry):
            for name in sorted(os.listdir(entry)):
                path = os.path.join(entry, name)
                if name.startswith(".") or name.endswith(_NOT_CERTS) or not os.path.isfile(path):
                    continue
                files.append(path)
        else:
            files.append(entry)
    return files


def read_cert(path: str, *, now: dt.datetime | None = None) -> Cert:
    """Check one PEM file; CertError says what is wrong with it."""
    # Imported here: a config without TLS starts without loading cryptography (~30 ms).
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CertError(f"{path}: cannot read certificate: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise CertError(f"{path}: not a PEM file (expected the certificate chain and the private key "
                        f"as -----BEGIN ...----- blocks)")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertError(f"{path}: no certificate in this PEM file (or a damaged one)") from None
    keyfile = None
    key_data = data if b"PRIVATE KEY-----" in data else None
    if key_data is None and os.path.isfile(path + ".key"):
        keyfile = path + ".key"
        with open(keyfile, "rb") as f:
            key_data = f.read()
    if key_data is None:
        raise CertError(f"{path}: no private key: put it in the same PEM file after the certificates "
                        f"(or in {os.path.basename(path)}.key)")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise CertError(f"{keyfile or path}: the private key is encrypted: store it without a "
                        f"passphrase (openssl pkey -in KEY -out KEY)") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError(f"{keyfile or path}: cannot read the private key: {exc}") from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != \
            leaf.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise CertError(f"{keyfile or path}: the private key does not match the certificate "
                        f"({_subject(leaf)})")
    now = now or dt.datetime.now(dt.timezone.utc)
    if leaf.not_valid_after_utc < now:
        raise CertError(f"{path}: the certificate ({_subject(leaf)}) expired on "
                        f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    if leaf.not_valid_before_utc > now:
        raise CertError(f"{path}: the certificate ({_subject(leaf)}) is not valid before "
                        f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")
    return Cert(path, keyfile, _names(leaf), leaf.not_valid_after_utc)


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID, NameOID

    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = san.get_values_for_type(x509.DNSName)  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(str(n).lower() for n in names)


def _subject(cert: x509.Certificate) -> str:
    names = _names(cert)
    return ", ".join(names) if names else cert.subject.rfc4514_string()


def check_bind(spec: TlsBindSpec) -> list[Cert]:
    """What `virtserve check` does for a TLS listener: every file and setting must load."""
    files = cert_files(spec.crt)
    if not files:
        raise CertError(f"no certificate file in {', '.join(spec.crt)}")
    certs = [read_cert(path) for path in files]
    _server_context(spec, certs[0])  # ciphers, CA file, OpenSSL's own view of the files
    if spec.verify != "none" and not spec.ca_file:
        raise CertError(f"verify {spec.verify} needs ca-file: the CAs that sign client certificates")
    return certs


def check_server(spec: TlsServerSpec) -> None:
    if spec.crt:
        read_cert(spec.crt)
    client_context(spec)


# --- listener side ----------------------------------------------------------------------------


def _no_password() -> bytes:
    raise CertError("the private key is encrypted")  # never prompt on the terminal


def _server_context(spec: TlsBindSpec, cert: Cert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[spec.min_version]
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    try:
        if spec.ciphers:
            ctx.set_ciphers(spec.ciphers)
    except ssl.SSLError:
        raise CertError(f"ciphers {spec.ciphers!r}: OpenSSL knows none of these ciphers") from None
    if spec.alpn:
        ctx.set_alpn_protocols(list(spec.alpn))
    if spec.verify != "none":
        ctx.verify_mode = _VERIFY[spec.verify]
        if spec.ca_file:
            _load_ca(ctx, spec.ca_file)
    try:
        ctx.load_cert_chain(cert.path, cert.keyfile, password=_no_password)
    except (ssl.SSLError, OSError) as exc:
        raise CertError(f"{cert.path}: OpenSSL cannot load it: {exc}") from None
    return ctx


def _load_ca(ctx: ssl.SSLContext, ca_file: str) -> None:
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise CertError(f"ca-file {ca_file}: cannot load CA certificates: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None


class CertStore:
    """The certificates of one TLS listener, by server name; reloadable in place."""

    def __init__(self, spec: TlsBindSpec) -> None:
        self.spec = spec
        self.exact: dict[str, ssl.SSLContext] = {}
        self.wildcard: dict[str, ssl.SSLContext] = {}  # "example.com" for "*.example.com"
        self.default: ssl.SSLContext
        self.certs: list[Cert] = []
        self.loads = 0  # successful loads, the first included
        self._stamp: tuple[Any, ...] = ()
        self._timer: Any = None
        self.load()
        # The context the listener is created with: it only routes to the current set.
        self.context = _server_context(spec, self.certs[0])
        self.context.sni_callback = self._pick

    def load(self) -> None:
        """Build the whole set from the files, then swap it in (CertError leaves the old one)."""
        stamp = self._fingerprint()
        certs = check_bind(self.spec)
        exact: dict[str, ssl.SSLContext] = {}
        wildcard: dict[str, ssl.SSLContext] = {}
        default = None
        for cert in certs:
            ctx = _server_context(self.spec, cert)
            default = default or ctx
            for name in cert.names:
                if name.startswith("*."):
                    wildcard.setdefault(name[2:], ctx)
                else:
                    exact.setdefault(name, ctx)
        self.exact, self.wildcard, self.default, self.certs = exact, wildcard, default, certs  # type: ignore[assignment]
        self._stamp = stamp
        self.loads += 1

    def _pick(self, sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        ctx = None
        if name:
            name = name.lower()
            ctx = self.exact.get(name) or self.wildcard.get(name.partition(".")[2])
        sslobj.context = ctx or self.default

    # --- reload when the files change ---------------------------------------------------------

    def _fingerprint(self) -> tuple[Any, ...]:
        paths = list(self.spec.crt) + cert_files(self.spec.crt) + [self.spec.ca_file]
        stamp = []
        for path in paths:
            for p in (path, path + ".key"):
                try:
                    st = os.stat(p)
                    stamp.append((p, st.st_mtime_ns, st.st_size, st.st_ino))
                except OSError:
                    stamp.append((p, None))
        return tuple(stamp)

    def reload_if_changed(self) -> bool:
        """Reload when a file changed since the last load; True when a new set is serving."""
        try:
            stamp = self._fingerprint()
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        try:
            self.load()
        except CertError as exc:
            self._stamp = stamp  # retried at the next change, not every tick
            log.error("TLS certificates not reloaded, the previous ones still serve: %s", exc)
            return False
        log.info("TLS certificates reloaded: %s", ", ".join(c.path for c in self.certs))
        return True

    def watch(self, loop: Any, interval: float) -> None:
        if interval <= 0:
            return

        def tick() -> None:
            self.reload_if_changed()
            self._timer = loop.call_later(interval, tick)

        self._timer = loop.call_later(interval, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def client_cert_headers(spec: TlsBindSpec, sslobj: ssl.SSLObject | None) -> bytes:
    """The request header lines that tell servers about the client certificate."""
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    lines = []
    if spec.client_verify_header:
        # The handshake only completes with a certificate that verified (or none at all).
        lines.append(f"{spec.client_verify_header}: {'SUCCESS' if der else 'NONE'}\r\n")
    if spec.client_subject_header:
        from cryptography import x509

        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string() if der else ""
        lines.append(f"{spec.client_subject_header}: {subject}\r\n")
    return "".join(lines).encode("utf-8", "replace").translate(None, b"\0")


# --- server side ------------------------------------------------------------------------------


def client_context(spec: TlsServerSpec) -> ssl.SSLContext:
    """The context for connections to one real server."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _VERSIONS[spec.min_version]
    if spec.verify == "none":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.check_hostname = bool(spec.sni)  # the chain is verified either way
        if spec.ca_file:
            _load_ca(ctx, spec.ca_file)
        else:
            ctx.load_default_certs()
    if spec.ciphers:
        try:
            ctx.set_ciphers(spec.ciphers)
        except ssl.SSLError:
            raise CertError(f"ciphers {spec.ciphers!r}: OpenSSL knows none of these ciphers") from None
    if spec.alpn:
        ctx.set_alpn_protocols(list(spec.alpn))
    if spec.crt:
        try:
            ctx.load_cert_chain(spec.crt, password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            raise CertError(f"{spec.crt}: OpenSSL cannot load it: {exc}") from None
    return ctx

