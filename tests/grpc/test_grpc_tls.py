"""TLS and mutual TLS from config; a plaintext dialler to a TLS node is refused clearly."""

from __future__ import annotations

import datetime
import ipaddress
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import grpc_config

from node_comm import CallContext, ConfigError, ConnectFailedError, Node
from node_comm_grpc.config import TlsConfig

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _write_pair(dir: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert_path, key_path = dir / f"{name}.crt", dir / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
    dns: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server or dns:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
        if server:
            names += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-comm test CA")])
    ca_cert = _cert("node-comm test CA", ca_key, ca_name, ca_key, ca=True)
    ca_file, _ = _write_pair(d, "ca", ca_cert, ca_key)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = _cert("localhost", srv_key, ca_name, ca_key, server=True)
    server_cert, server_key = _write_pair(d, "server", srv_cert, srv_key)
    files = {"ca": ca_file, "server_cert": server_cert, "server_key": server_key}
    # Certificates naming node ids: "a" and "alice" by common name, "b" (a server) by a DNS name.
    for name in ("a", "alice"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{name}_cert"], files[f"{name}_key"] = _write_pair(d, name, _cert(name, key, ca_name, ca_key), key)
    key = ec.generate_private_key(ec.SECP256R1())
    files["b_cert"], files["b_key"] = _write_pair(
        d, "b", _cert("node b", key, ca_name, ca_key, server=True, dns=("b",)), key
    )
    return files


def server_tls(pki: dict[str, str]) -> TlsConfig:
    return TlsConfig(cert_file=pki["server_cert"], key_file=pki["server_key"])


async def test_tls(nodes, pki) -> None:
    b = await nodes("b", grpc_config("b", tls=server_tls(pki)))
    a = await nodes("a", grpc_config("a", port=None, tls=TlsConfig(ca_file=pki["ca"])))
    b.register("echo", lambda p, ctx: p)
    a.register("echo", lambda p, ctx: p)
    await a.connect("b", b.address)
    assert await a.call("b", "echo", "secret") == "secret"
    assert await b.call("a", "echo", "back") == "back"


async def test_tls_with_server_name_override(nodes, pki) -> None:
    b = await nodes("b", grpc_config("b", tls=server_tls(pki)))
    tls = TlsConfig(ca_file=pki["ca"], server_name="localhost")
    a = await nodes("a", grpc_config("a", port=None, tls=tls))
    b.register("echo", lambda p, ctx: p)
    await a.connect("b", b.address)
    assert await a.call("b", "echo", 1) == 1


def mtls(pki: dict[str, str], name: str, **extra: Any) -> TlsConfig:
    """Mutual TLS with the certificate of ``name`` (``server``, ``a``, ``alice`` or ``b``)."""
    return TlsConfig(
        cert_file=pki[f"{name}_cert"], key_file=pki[f"{name}_key"], ca_file=pki["ca"], client_auth=True, **extra
    )


async def test_mutual_tls(nodes, pki) -> None:
    b = await nodes("b", grpc_config("b", tls=mtls(pki, "server")))
    seen: list[tuple[bool, str | None]] = []

    def echo(p: Any, ctx: CallContext) -> Any:
        seen.append((ctx.authenticated, ctx.peer_identity))
        return p

    b.register("echo", echo)
    a = await nodes(
        "a",
        grpc_config("a", port=None, tls=TlsConfig(ca_file=pki["ca"], cert_file=pki["a_cert"], key_file=pki["a_key"])),
    )
    await a.connect("b", b.address)
    assert await a.call("b", "echo", "mtls") == "mtls"
    assert seen == [(True, "a")]  # authenticated by its certificate, whose subject names it
    # without a client certificate the server refuses
    c = await nodes("c", grpc_config("c", port=None, tls=TlsConfig(ca_file=pki["ca"])))
    with pytest.raises(ConnectFailedError):
        await c.connect("b", b.address, timeout=5)
    assert b.connected_nodes == ["a"]


async def test_a_certificate_cannot_claim_another_node_id_by_default(nodes, pki) -> None:
    """Under client_auth, node ids are bound to certificates unless bind_node_id is false."""
    b = await nodes("b", grpc_config("b", tls=mtls(pki, "server")))
    b.register("echo", lambda p, ctx: p)
    bob = await nodes(
        "bob",
        grpc_config(
            "bob", port=None, tls=TlsConfig(ca_file=pki["ca"], cert_file=pki["alice_cert"], key_file=pki["alice_key"])
        ),
    )
    with pytest.raises(ConnectFailedError, match="node id 'bob' is not named by the client certificate"):
        await bob.connect("b", b.address, timeout=5)
    assert b.connected_nodes == []
    # Turned off explicitly, the certificate only proves membership of the CA.
    b2 = await nodes("b2", grpc_config("b2", tls=mtls(pki, "server", bind_node_id=False)))
    b2.register("who", lambda p, ctx: ctx.peer_identity)
    await bob.connect("b2", b2.address, timeout=5)
    assert await bob.call("b2", "who") == "alice"


async def test_a_dialler_binding_node_ids_checks_the_server_certificate(nodes, pki) -> None:
    server_tls = mtls(pki, "server")  # certificate for localhost: names no node id
    b = await nodes("b", grpc_config("b", tls=server_tls))
    a_tls = TlsConfig(ca_file=pki["ca"], cert_file=pki["a_cert"], key_file=pki["a_key"], bind_node_id=True)
    a = await nodes("a", grpc_config("a", port=None, tls=a_tls))
    with pytest.raises(ConnectFailedError, match="must name 'b'"):
        await a.connect("b", b.address, timeout=5)
    await b.stop()
    real_b = await nodes("b", grpc_config("b", tls=mtls(pki, "b")))  # names "b"
    real_b.register("who", lambda p, ctx: ctx.peer_identity)
    await a.connect("b", real_b.address, timeout=5)
    a.register("who", lambda p, ctx: ctx.peer_identity)
    assert await real_b.call("a", "who") == "b"  # a's view of b: the name its certificate proved


def test_bind_node_id_on_a_listening_node_needs_client_auth() -> None:
    with pytest.raises(ConfigError, match="bind_node_id"):
        Node("x", grpc_config("x", tls=TlsConfig(cert_file="c", key_file="k", bind_node_id=True)))


async def test_plaintext_dialler_to_tls_node_is_refused(nodes, pki) -> None:
    b = await nodes("b", grpc_config("b", tls=server_tls(pki)))
    a = await nodes("a")
    t0 = time.monotonic()
    with pytest.raises(ConnectFailedError, match="TLS"):
        await a.connect("b", b.address, timeout=5)
    assert time.monotonic() - t0 < 5
    assert b.connected_nodes == []


async def test_connect_any_over_tls_and_never_with_bound_node_ids(nodes, pki) -> None:
    """``node-comm ping ADDRESS`` without a NODE_ID: over TLS the server's certificate is verified as
    usual; a dialler binding node ids to certificates cannot check an id it does not know, so it
    refuses to dial without one (nothing is sent)."""
    b = await nodes("b", grpc_config("b", tls=server_tls(pki)))
    a = await nodes("a", grpc_config("a", port=None, tls=TlsConfig(ca_file=pki["ca"])))
    assert await a.transport.connect_any(b.address, 5) == "b"
    assert a.connected_nodes == ["b"]
    bound = TlsConfig(ca_file=pki["ca"], cert_file=pki["a_cert"], key_file=pki["a_key"], bind_node_id=True)
    a2 = await nodes("a2", grpc_config("a2", port=None, tls=bound))
    with pytest.raises(ConfigError, match=r"tls\.bind_node_id is on: .* the node id must be given"):
        await a2.transport.connect_any(b.address, 5)
    assert sorted(b.connected_nodes) == ["a"]
