"""TLS: the server and channel credentials of ``transport.grpc.tls``."""

from __future__ import annotations

import os

import grpc

from node_comm import ConfigError

from .config import TlsConfig


def read_file(path: str | None, key: str) -> bytes | None:
    """The bytes of the file at ``path`` (option ``tls.<key>``), or ``None`` when not set."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        where = "" if os.path.isabs(path) else f" (relative: resolved against the working directory {os.getcwd()!r})"
        raise ConfigError(f"transport.grpc.tls.{key}: cannot read {path!r}{where}: {exc}") from exc


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """Credentials of a listening node; checks client certificates when ``tls.client_auth``."""
    cert = read_file(tls.cert_file, "cert_file")
    key = read_file(tls.key_file, "key_file")
    if cert is None or key is None:
        raise ConfigError("transport.grpc.tls: a listening node needs cert_file and key_file")
    ca = read_file(tls.ca_file, "ca_file")
    if tls.client_auth and ca is None:
        raise ConfigError("transport.grpc.tls.client_auth needs ca_file (the CA of client certificates)")
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=ca if tls.client_auth else None,
        require_client_auth=tls.client_auth,
    )


def channel_credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    """Credentials of a dialling node: the CA to trust and, optionally, its own certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=read_file(tls.ca_file, "ca_file"),
        private_key=read_file(tls.key_file, "key_file"),
        certificate_chain=read_file(tls.cert_file, "cert_file"),
    )
