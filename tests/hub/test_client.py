"""The client library on its own terms: offline outbox (latest wins), reconnect, env defaults, TLS, refusals."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smartsession.hub import auth
from smartsession.hub.client import HubError, StudentPublisher, TeacherSubscriber, hub_url, join_class
from smartsession.hub.standalone import running_hub
from testkit.processes import free_port
from smartsession.schema import StateMessage


def state(engagement: float) -> StateMessage:
    return StateMessage("", "", 0, time.time(), "focused", engagement, 0.9)


@pytest.mark.slow
def test_offline_outbox_keeps_the_latest_and_delivers_them_once_the_hub_is_up(tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("SMARTSESSION_HUB_URL", f"http://127.0.0.1:{port}")
    secret = auth.load_secret(tmp_path)
    token = auth.student_token(secret, "c1", "s1")

    async def main():
        pub = StudentPublisher("c1", "s1", token, outbox_size=16, backoff=(0.05, 0.2))
        assert pub.url == f"http://127.0.0.1:{port}"
        async with pub:
            sent = [pub.publish(state(float(i))) for i in range(30)]
            await asyncio.sleep(0.5)  # several failed connection attempts, backing off
            assert not pub.connected.is_set()
            assert [m.seq for m in pub.outbox] == [m.seq for m in sent[-16:]]
            assert len({m.seq for m in sent}) == 30 and sorted(m.seq for m in sent) == [m.seq for m in sent]
            async with running_hub(data_dir=tmp_path, port=port) as (hub, url):
                teacher = TeacherSubscriber("c1", auth.teacher_token(secret, "c1"))
                async with teacher:
                    await pub.wait_connected(30)
                    await pub.wait_acked(sent[-1].seq, 30)
                    assert not pub.outbox
                hub.store.flush()
                stored = hub.store.states(hub.rooms["c1"].session_id)
                assert list(stored.engagement) == [float(i) for i in range(14, 30)]

    asyncio.run(asyncio.wait_for(main(), 60))


def test_refusals_stop_the_client_with_a_reason(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path) as (hub, url):
            info = hub.create_class("Refusals")
            ada = await asyncio.get_running_loop().run_in_executor(
                None, join_class, url, info["class_id"], info["join_code"], "Ada")
            wrong = StudentPublisher(info["class_id"], "someone-else", ada["token"], url=url, backoff=(0.05, 0.1))
            async with wrong:
                await kit.eventually(lambda: wrong.error)
            assert "4004" in str(wrong.error) and "another student" in str(wrong.error)
            teacher = TeacherSubscriber(info["class_id"], auth.teacher_token("not-the-secret", info["class_id"]),
                                        url=url)
            async with teacher:
                await kit.eventually(lambda: teacher.error)
            assert "4003" in str(teacher.error) and "signature" in str(teacher.error)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_without_a_url_the_error_says_what_to_set(monkeypatch):
    monkeypatch.delenv("SMARTSESSION_HUB_URL", raising=False)
    with pytest.raises(HubError, match="set SMARTSESSION_HUB_URL"):
        hub_url(None)


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


@pytest.mark.slow
def test_tls_with_a_self_signed_certificate_from_the_cafile_env(tmp_path, monkeypatch):
    certfile, keyfile = self_signed(tmp_path)

    async def main():
        async with running_hub(data_dir=tmp_path / "data", certfile=certfile, keyfile=keyfile) as (hub, url):
            assert url.startswith("https://")
            info = hub.create_class("Secure")
            with pytest.raises(HubError, match="cannot reach"):  # not trusted without the CA file
                await asyncio.get_running_loop().run_in_executor(
                    None, join_class, url, info["class_id"], info["join_code"], "Ada")
            monkeypatch.setenv("SMARTSESSION_HUB_CAFILE", certfile)
            pub = await StudentPublisher.join(url, info["class_id"], info["join_code"], "Ada")
            async with pub:
                await pub.wait_connected(30)
                sent = pub.publish(state(50.0))
                await pub.wait_acked(sent.seq, 30)

    asyncio.run(asyncio.wait_for(main(), 60))
