"""`smartsession serve --self-signed`: a certificate for this host, https pages, kernels that trust it.

Browsers only give a page the camera on https (or localhost), so a classroom on a LAN needs this.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import urllib.error
import urllib.request

import pytest
from cryptography import x509

from testkit.serving import kernel_id, running_server
from smartsession.serve.tls import self_signed_certificate


def test_certificate_names_the_host_and_is_reused(tmp_path):
    cert, key = self_signed_certificate(tmp_path, ["192.168.1.20", "teacher-laptop"])
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "teacher-laptop"} <= set(san.get_values_for_type(x509.DNSName))
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("192.168.1.20")} <= set(
        san.get_values_for_type(x509.IPAddress)
    )
    assert key.stat().st_mode & 0o077 == 0
    assert self_signed_certificate(tmp_path, ["192.168.1.20"]) == (cert, key)
    # A new address is not covered: a new certificate is made.
    self_signed_certificate(tmp_path, ["10.0.0.7"])
    assert x509.load_pem_x509_certificate(cert.read_bytes()).serial_number != parsed.serial_number
    # A server certificate, not a CA: trusting it trusts this server and signs nothing else.
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert not leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    # It verifies as its own trust anchor, as kernels and test clients use it: a real handshake, by name and by IP.
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    for name in ("localhost", "127.0.0.1"):
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            accepted = []
            thread = threading.Thread(target=lambda: accepted.append(server_side.wrap_socket(listener.accept()[0],
                                                                                             server_side=True)))
            thread.start()
            client = ssl.create_default_context(cafile=str(cert))
            with client.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=name) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
            thread.join(10)
            accepted[0].close()


def test_a_certificate_made_as_a_ca_is_replaced(tmp_path):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    now = dt.datetime.now(dt.timezone.utc)
    old = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=300))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(
               ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(key, hashes.SHA256()))
    (tmp_path / "selfsigned.crt").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "selfsigned.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert, _ = self_signed_certificate(tmp_path, [])
    fresh = x509.load_pem_x509_certificate(cert.read_bytes())
    assert fresh.serial_number != 1 and fresh.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_self_signed_server_answers_https_and_its_kernels_trust_it(tmp_path, dashboards):
    with running_server(tmp_path, pool_size=1, dashboards=dashboards, self_signed=True) as srv:
        assert srv.url.startswith("https://127.0.0.1:") and srv.join_url.startswith("https://")
        assert srv.certfile and srv.health()["ok"] is True
        with pytest.raises((urllib.error.URLError, ssl.SSLError)):
            urllib.request.urlopen(srv.url + "smartsession/health", timeout=10)  # untrusted without the cert
        plain = srv.url.replace("https://", "http://") + "smartsession/health"
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(plain, timeout=10).read()
        # Pool kernels finish Voila's handshake over wss and reach the hub over https.
        srv.wait_warm(180)
        page = srv.request(srv.join_url)
        assert page.status == 200
        assert f"Using pre-heated kernel: {kernel_id(page.text)}" in srv.log_text()
        assert f"class {srv.class_id}" in page.text
        assert f"hub https://127.0.0.1:{srv.url.rsplit(':', 1)[1].rstrip('/')} ok" in page.text
        # Under https every cookie a page sets is Secure: the _xsrf cookie (SameSite=Strict; the page's script
        # reads it), the join code's and the seat's (HttpOnly too), so none travels over plain http.
        with urllib.request.urlopen(srv.join_url, timeout=120, context=srv.ssl_context) as again:
            cookies = {c.split("=", 1)[0]: c for c in again.headers.get_all("Set-Cookie")}
        assert "Secure" in cookies["_xsrf"] and "SameSite=Strict" in cookies["_xsrf"], cookies
        for name in (f"ss-student-join-{srv.class_id}", f"ss-student-seat-{srv.class_id}"):
            assert all(flag in cookies[name] for flag in ("Secure", "HttpOnly", "SameSite=Strict")), cookies
