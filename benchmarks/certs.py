"""A throwaway self-signed certificate for the TLS scenarios, made with ``cryptography``.

Every proxy gets the same key (ECDSA P-256, what a tuned deployment serves), so a handshake
costs each of them the same signature work.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from pathlib import Path

__all__ = ["write_self_signed"]


def write_self_signed(directory: Path, name: str = "bench") -> Path:
    """Write ``NAME.pem`` (certificate then key, HAProxy's ``crt`` layout) and return its path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = Path(directory) / f"{name}.pem"
    path.write_bytes(pem)
    return path
