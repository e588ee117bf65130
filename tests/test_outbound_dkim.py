"""DKIM signing of outgoing mail, checked on the bytes the SMTP sink received.

On SQLite and PostgreSQL: with a key and selector configured, every delivered
mail carries a signature that ``dkim.verify`` accepts against the public key
record (served by a DNS function, no network), over From, Subject, Message-ID
and the threading headers; a changed header breaks it. Without a key nothing
is signed; PKCS#1 and PKCS#8 keys both work, as do key files with CRLF line
endings, and an unreadable key stops the worker at start, not mail by mail.
"""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from helpdesk.settings import Settings, SettingsError
from mailgate.outbox_sender import OutboxWorker
from tests.test_outbound import (
    SENDER,
    Clock,
    agent_reply,
    customer_mail,
    deliver,
    header_names,
    make_worker,
)

SELECTOR = "hd2026"
FORMATS = {
    "pkcs1": serialization.PrivateFormat.TraditionalOpenSSL,
    "pkcs8": serialization.PrivateFormat.PKCS8,
}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_record(key: rsa.RSAPrivateKey) -> bytes:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def write_key(path: Path, key: rsa.RSAPrivateKey, fmt: str = "pkcs1", crlf: bool = False) -> str:
    pem = key.private_bytes(serialization.Encoding.PEM, FORMATS[fmt], serialization.NoEncryption())
    path.write_bytes(pem.replace(b"\n", b"\r\n") if crlf else pem)
    return str(path)


def dns_for(key: rsa.RSAPrivateKey, domain: str = "example.com"):  # type: ignore[no-untyped-def]
    """A DNS TXT lookup that knows only our selector's key record."""
    record = key_record(key)
    asked: list[bytes] = []

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name)
        return record if name == f"{SELECTOR}._domainkey.{domain}.".encode() else None

    lookup.asked = asked  # type: ignore[attr-defined]
    return lookup


def signature_tags(data: bytes) -> dict[str, str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    match = re.search(r"^DKIM-Signature:(.*?)(?=^\S)", head + "\r\nX:", re.S | re.M | re.I)
    assert match, "no DKIM-Signature header"
    value = re.sub(r"\s+", "", match.group(1))
    return dict(tag.split("=", 1) for tag in value.split(";") if tag)


def dkim_settings(settings: Settings, key_file: str, **extra: str) -> Settings:
    return replace(settings, dkim_key_file=key_file, dkim_selector=SELECTOR, **extra)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_acknowledgement_and_reply_verify(
    gateway, engine, relay, relay_settings, tmp_path, rsa_key, fmt
):
    signed = dkim_settings(relay_settings, write_key(tmp_path / "dkim.pem", rsa_key, fmt))
    gateway.send(
        customer_mail("<m1@customer.example>", subject="Drucker kaputt", cc="bob@customer.example"),
        mail_from=SENDER,
    )
    clock = Clock()
    worker = make_worker(engine, signed, clock)
    deliver(worker)
    agent_reply(
        engine, signed, text="Anbei die Anleitung.",
        attachments=[("anleitung.pdf", "application/pdf", b"%PDF-1.4 \x00\xff")],
    )  # fmt: skip
    clock.catch_up()
    deliver(worker)
    assert len(relay.messages) == 2

    dns = dns_for(rsa_key)
    for _, _, data in relay.messages:
        assert header_names(data)[0] == "dkim-signature"
        assert dkim.verify(data, dnsfunc=dns) is True
        tags = signature_tags(data)
        assert (tags["d"], tags["s"], tags["a"]) == ("example.com", SELECTOR, "rsa-sha256")
        signed_headers = set(tags["h"].lower().split(":"))
        assert {"from", "to", "subject", "date", "message-id", "in-reply-to", "references"} <= (
            signed_headers
        )
    assert dns.asked == [f"{SELECTOR}._domainkey.example.com.".encode()] * 2


def test_changed_header_or_body_fails_verification(
    gateway, engine, relay, relay_settings, tmp_path, rsa_key
):
    signed = dkim_settings(relay_settings, write_key(tmp_path / "dkim.pem", rsa_key))
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    deliver(make_worker(engine, signed, Clock()))
    [(_, _, data)] = relay.messages
    dns = dns_for(rsa_key)
    assert dkim.verify(data, dnsfunc=dns) is True
    assert dkim.verify(data.replace(b"Printer broken", b"Printer fixed!"), dnsfunc=dns) is False
    head, body = data.split(b"\r\n\r\n", 1)
    assert dkim.verify(head + b"\r\n\r\n" + body.replace(b"Hello", b"Hullo"), dnsfunc=dns) is False
    # Another key published for the selector: the signature no longer verifies.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert dkim.verify(data, dnsfunc=dns_for(other)) is False


def test_dkim_domain_overrides_the_mail_domain(
    gateway, engine, relay, relay_settings, tmp_path, rsa_key
):
    key_file = write_key(tmp_path / "dkim.pem", rsa_key)
    signed = dkim_settings(relay_settings, key_file, dkim_domain="mail.example.com")
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    deliver(make_worker(engine, signed, Clock()))
    [(_, _, data)] = relay.messages
    assert signature_tags(data)["d"] == "mail.example.com"
    assert dkim.verify(data, dnsfunc=dns_for(rsa_key, "mail.example.com")) is True


def test_key_file_with_crlf_line_endings_signs(
    gateway, engine, relay, relay_settings, tmp_path, rsa_key
):
    key_file = write_key(tmp_path / "dkim.pem", rsa_key, crlf=True)
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    assert deliver(make_worker(engine, dkim_settings(relay_settings, key_file), Clock())) == 1
    [(_, _, data)] = relay.messages
    assert dkim.verify(data, dnsfunc=dns_for(rsa_key)) is True


def test_without_a_key_nothing_is_signed(gateway, engine, relay, relay_settings):
    gateway.send(customer_mail("<m1@customer.example>"), mail_from=SENDER)
    deliver(make_worker(engine, relay_settings, Clock()))
    [(_, _, data)] = relay.messages
    assert "dkim-signature" not in header_names(data)


def test_an_unreadable_key_stops_the_worker_at_start(engine, relay_settings, tmp_path):
    bad = tmp_path / "dkim.pem"
    bad.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(SettingsError, match="DKIM"):
        OutboxWorker(
            sessions=None,  # type: ignore[arg-type]
            settings=dkim_settings(relay_settings, str(bad)),
        )
    with pytest.raises(SettingsError, match="DKIM"):
        OutboxWorker(
            sessions=None,  # type: ignore[arg-type]
            settings=dkim_settings(relay_settings, str(tmp_path / "missing.pem")),
        )
