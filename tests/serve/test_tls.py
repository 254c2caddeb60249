"""`smartsession serve --self-signed`: a certificate for this host, https pages, kernels that trust it.

Browsers only give a page the camera on https (or localhost), so a classroom on a LAN needs this.
"""

from __future__ import annotations

import ipaddress
import ssl
import urllib.error
import urllib.request

import pytest
from cryptography import x509

from smartsession.serve.testing import kernel_id, running_server
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
    # It verifies as its own trust anchor, as kernels and test clients use it.
    context = ssl.create_default_context(cafile=str(cert))
    assert context.cert_store_stats()["x509_ca"] == 1


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
