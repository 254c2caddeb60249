"""A self-signed certificate for ``smartsession serve --self-signed``: browsers only give pages the camera on https.

The certificate lives in the data directory and is reused while it still covers the host names asked for.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

CERT_NAME = "selfsigned.crt"
KEY_NAME = "selfsigned.key"
VALID_DAYS = 365


def _names(hosts: list[str]) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    dns, ips = {"localhost"}, {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    for host in hosts:
        if not host or host in ("0.0.0.0", "::"):
            continue
        try:
            ips.add(ipaddress.ip_address(host))
        except ValueError:
            dns.add(host)
    return dns, ips


def _covers(cert, dns: set[str], ips: set) -> bool:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    fresh = cert.not_valid_after_utc - dt.timedelta(days=7) > dt.datetime.now(dt.timezone.utc)
    try:
        leaf = not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        leaf = False
    # Certificates made before were marked CA:TRUE (able to sign others): replaced once.
    return fresh and leaf and dns <= set(san.get_values_for_type(x509.DNSName)) and ips <= set(
        san.get_values_for_type(x509.IPAddress)
    )


def self_signed_certificate(directory: str | os.PathLike, hosts: list[str]) -> tuple[Path, Path]:
    """Return ``(certfile, keyfile)`` in ``directory``, valid for ``hosts`` plus localhost/127.0.0.1/::1.

    An existing certificate is kept when it covers every name and is not about to expire, so students who
    already accepted it in their browser are not asked again.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    certfile, keyfile = directory / CERT_NAME, directory / KEY_NAME
    dns, ips = _names(hosts)
    if certfile.exists() and keyfile.exists():
        if _covers(x509.load_pem_x509_certificate(certfile.read_bytes()), dns, ips):
            return certfile, keyfile

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SmartSession"),
            x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname()[:64] or "localhost"),
        ]
    )
    now = dt.datetime.now(dt.timezone.utc)
    san = [x509.DNSName(d) for d in sorted(dns)] + [x509.IPAddress(i) for i in sorted(ips, key=str)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        # A server certificate that can sign nothing else: trusting it (as students' browsers and our kernels
        # do) trusts this server only.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return certfile, keyfile


def trust_bundle(directory: str | os.PathLike, certfile: str | os.PathLike) -> Path:
    """A CA bundle in ``directory``: the system's CAs plus ``certfile``, for clients that only verify by default."""
    import ssl

    paths = ssl.get_default_verify_paths()
    system = next((Path(p) for p in (paths.cafile, paths.openssl_cafile) if p and Path(p).is_file()), None)
    bundle = Path(directory) / "trust.pem"
    parts = [system.read_text()] if system else []
    bundle.write_text("\n".join([*parts, Path(certfile).read_text()]))
    return bundle
