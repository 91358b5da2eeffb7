"""A local certificate authority and the certificates it signs, made with `cryptography`.

For the demo and tests (`virtserve cert`), never for the public internet: the CA key sits in a
file next to its certificate. Server and client certificates are written HAProxy-style: one PEM
with the certificate, the CA certificate after it (the chain) and the private key.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = dt.timedelta(days=1)


@dataclass
class LocalCA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    path: Path  # ca.pem: the CA certificate, what clients (and ca-file) trust

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike[str], name: str = "virtserve local CA") -> LocalCA:
        """DIR/ca.pem and DIR/ca.key: read when present, else made."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "ca.pem", directory / "ca.key"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            return cls(cert, key, cert_path)  # type: ignore[arg-type]
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + 3650 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(key_path, _key_pem(key), private=True)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert, key, cert_path)

    def issue(self, names: list[str], path: str | os.PathLike[str], *, client: bool = False,
              days: float = 825, not_before: dt.datetime | None = None) -> Path:
        """Write a certificate for names (DNS names, wildcards, IP addresses) signed by this CA,
        as one PEM: certificate, CA certificate, private key. `client`: for client auth."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or dt.datetime.now(dt.timezone.utc) - DAY
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = (cert.public_bytes(serialization.Encoding.PEM)
               + self.cert.public_bytes(serialization.Encoding.PEM) + _key_pem(key))
        _write(path, pem, private=True)
        return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write whole or not at all: a reader (a watching listener) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_certs(directory: str | os.PathLike[str], names: list[str], *, client: list[str] | None = None,
               days: float = 825) -> dict[str, Path]:
    """`virtserve cert`: the CA (made once) and a server certificate for names, plus client
    certificates; returns the paths by role."""
    ca = LocalCA.load_or_create(directory)
    out = {"ca": ca.path}
    # Server certificates in certs/ (a directory to give `crt`), apart from the CA's own files.
    out["server"] = ca.issue(names, Path(directory) / "certs" / f"{_file_name(names[0])}.pem", days=days)
    for name in client or ():
        out[f"client:{name}"] = ca.issue([name], Path(directory) / "clients" / f"{_file_name(name)}.pem",
                                         client=True, days=days)
    return out


def _file_name(name: str) -> str:
    return name.replace("*", "wildcard").replace("/", "_").replace(":", "_")
