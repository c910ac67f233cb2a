"""TLS and mutual TLS to the NATS server from config; a node without them is refused clearly."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node_comm import CallContext, ConfigError, Node
from node_comm_nats import NatsTlsConfig
from tests.natsd import NatsServer

from .conftest import nats_config

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _issue(d: Path, name: str, ca: tuple[Any, Any] | None, *, server: bool = False) -> tuple[str, str, Any]:
    """A key and certificate named ``name``, signed by ``ca`` (self-signed CA when ``None``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = (subject, key) if ca is None else (ca[0].subject, ca[1])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
        # Key identifiers: Python 3.13's strict X.509 verification requires them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca is None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = d / f"{name}.crt", d / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path), (cert, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("nats-pki")
    ca_file, _, ca = _issue(d, "ca", None)
    server_cert, server_key, _ = _issue(d, "server", ca, server=True)
    client_cert, client_key, _ = _issue(d, "client", ca)
    return {
        "ca": ca_file,
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


@pytest.fixture
def tls_server(pki: dict[str, str]) -> Iterator[NatsServer]:
    """A server that requires TLS and a client certificate signed by the test CA (mutual TLS)."""
    conf = (
        f'tls {{ cert_file: "{pki["server_cert"]}", key_file: "{pki["server_key"]}", '
        f'ca_file: "{pki["ca"]}", verify: true }}'
    )
    server = NatsServer(extra_conf=conf).start()
    try:
        yield server
    finally:
        server.stop()


async def test_mutual_tls_from_config(tls_server: NatsServer, pki: dict[str, str]) -> None:
    tls = NatsTlsConfig(ca_file=pki["ca"], cert_file=pki["client_cert"], key_file=pki["client_key"])
    url = f"tls://127.0.0.1:{tls_server.port}"

    async def echo(payload: Any, ctx: CallContext) -> Any:
        return payload

    async with (
        Node("a", nats_config("a", url, "tls", tls=tls)) as a,
        Node("b", nats_config("b", url, "tls", tls=tls)) as b,
    ):
        b.register("echo", echo)
        await a.connect("b")
        assert await a.call("b", "echo", {"over": "tls"}) == {"over": "tls"}


@pytest.mark.parametrize("which", ["plaintext", "no client certificate"])
async def test_a_node_without_tls_or_its_certificate_is_refused(
    tls_server: NatsServer, pki: dict[str, str], which: str
) -> None:
    if which == "plaintext":
        cfg = nats_config("x", tls_server.url, "tls", start_timeout=1.0)
    else:
        cfg = nats_config(
            "x", f"tls://127.0.0.1:{tls_server.port}", "tls", start_timeout=1.0, tls=NatsTlsConfig(ca_file=pki["ca"])
        )
    node = Node("x", cfg)
    with pytest.raises(ConfigError, match="cannot connect to the NATS servers") as info:
        await node.start()
    text = str(info.value)
    assert f"127.0.0.1:{tls_server.port}" in text and "TLS options" in text
    if which == "plaintext":
        # nats-py upgrades a plaintext URL when the server requires TLS, then cannot verify the
        # server without the CA: refused at once, not at start_timeout. (Without a client
        # certificate the server's refusal shows as a TLS alert or a reset, by timing.)
        assert "CERTIFICATE_VERIFY_FAILED" in text
