"""Bearer-token middleware and TLS against a real Flight server on loopback."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pyarrow.flight as flight
import pytest

from feeder.protocol.auth import (
    call_options,
    caller_job,
    connect,
    location_uri,
    server_middleware,
    server_tls_kwargs,
)
from feeder.protocol.config import TLSConfig


class EchoJobServer(flight.FlightServerBase):
    """Answers every action with the caller's x-icefeed-job header."""

    def do_action(self, context, action):
        yield flight.Result((caller_job(context) or "<none>").encode())


def echo(client: flight.FlightClient, options: flight.FlightCallOptions) -> str:
    return b"".join(r.body.to_pybytes() for r in client.do_action("echo", options)).decode()


@pytest.fixture()
def guarded():
    server = EchoJobServer("grpc://127.0.0.1:0", middleware=server_middleware("s3cret"))
    yield server
    server.shutdown()


def test_calls_without_the_token_are_unauthenticated(guarded):
    client = connect(location_uri("127.0.0.1", guarded.port, None))
    for options in (
        call_options(None, "j", 5),
        call_options("wrong", "j", 5),
        call_options("s3cret-but-longer", "j", 5),
        flight.FlightCallOptions(headers=[(b"authorization", b"s3cret")], timeout=5),
    ):
        with pytest.raises(flight.FlightUnauthenticatedError):
            echo(client, options)
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.list_actions(call_options(None, None, 5)))
    client.close()


def test_right_token_passes_and_job_header_reaches_the_handler(guarded):
    client = connect(location_uri("127.0.0.1", guarded.port, None))
    assert echo(client, call_options("s3cret", "train-a", 5)) == "train-a"
    assert echo(client, call_options("s3cret", None, 5)) == "<none>"
    client.close()


def test_open_server_accepts_calls_without_token():
    server = EchoJobServer("grpc://127.0.0.1:0", middleware=server_middleware(None))
    try:
        client = connect(location_uri("127.0.0.1", server.port, None))
        assert echo(client, call_options(None, "j", 5)) == "j"
        client.close()
    finally:
        server.shutdown()


def make_self_signed(tmp_path: Path) -> TLSConfig:
    """Generate a self-signed certificate for 127.0.0.1/localhost with `cryptography`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    tmp_path.mkdir(parents=True, exist_ok=True)

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TLSConfig(cert_file, key_file)


def unrelated_ca(tmp_path: Path) -> TLSConfig:
    """A client config trusting only a CA that signed nothing the servers use
    (same subject and names as :func:`make_self_signed`, another key)."""
    other = make_self_signed(tmp_path / "unrelated-ca")
    return TLSConfig(ca_file=other.cert_file)


def test_tls_with_self_signed_certificate(tmp_path):
    tls = make_self_signed(tmp_path)
    location = location_uri("127.0.0.1", 0, tls)
    assert location.startswith("grpc+tls://")
    server = EchoJobServer(location, middleware=server_middleware("t"), **server_tls_kwargs(tls))
    try:
        client = connect(location_uri("127.0.0.1", server.port, tls), tls=tls)
        assert echo(client, call_options("t", "tls-job", 10)) == "tls-job"
        client.close()
        # a client that trusts an unrelated CA must refuse the server's certificate
        stranger = connect(location_uri("127.0.0.1", server.port, tls), tls=unrelated_ca(tmp_path))
        with pytest.raises(flight.FlightError):
            echo(stranger, call_options("t", "x", 3))
        stranger.close()
        # a plaintext client cannot talk to the TLS server
        plain = connect(location_uri("127.0.0.1", server.port, None))
        with pytest.raises(flight.FlightError):
            echo(plain, call_options("t", "x", 3))
        plain.close()
    finally:
        server.shutdown()


def test_location_uri_brackets_ipv6():
    assert location_uri("::1", 5, None) == "grpc://[::1]:5"
    assert location_uri("h", 5, None) == "grpc://h:5"
