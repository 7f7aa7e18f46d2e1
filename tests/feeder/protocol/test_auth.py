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
from jobs.errors import SpecError


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


#: what gRPC says when the client refuses the server's certificate (not a timeout);
#: OpenSSL writes "certificate verify failed", BoringSSL "CERTIFICATE_VERIFY_FAILED"
CERTIFICATE_REFUSED = r"(?i)certificate[ _]verify[ _]failed"


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
        with pytest.raises(flight.FlightUnavailableError, match=CERTIFICATE_REFUSED):
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


def make_cert(
    tmp_path: Path,
    stem: str,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    issuer: tuple[Path, Path] | None = None,
) -> tuple[Path, Path]:
    """Write a certificate (a CA when ``issuer`` is None) for ``dns``/``ips``; return its files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
    sign_key, issuer_name = key, name
    if issuer is not None:
        issuer_cert = x509.load_pem_x509_certificate(issuer[0].read_bytes())
        sign_key = serialization.load_pem_private_key(issuer[1].read_bytes(), None)
        issuer_name = issuer_cert.subject
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(sign_key, hashes.SHA256())
    cert_file, key_file = tmp_path / f"{stem}.pem", tmp_path / f"{stem}-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_a_certificate_for_a_dns_name_is_checked_against_the_server_name_override(tmp_path):
    ca = make_cert(tmp_path, "ca")
    cert, key = make_cert(tmp_path, "node", dns=("node-0.datanodes.icefeed.test",), issuer=ca)
    server_tls = TLSConfig(cert, key)
    server = EchoJobServer(
        location_uri("127.0.0.1", 0, server_tls),
        middleware=server_middleware(None),
        **server_tls_kwargs(server_tls),
    )
    location = location_uri("127.0.0.1", server.port, server_tls)
    try:
        # dialled by address, the name the certificate carries does not match: refused
        wrong = connect(location, tls=TLSConfig(ca_file=ca[0]))
        with pytest.raises(flight.FlightUnavailableError):
            echo(wrong, call_options(None, "x", 5))
        wrong.close()
        named = TLSConfig(ca_file=ca[0], server_name="node-0.datanodes.icefeed.test")
        right = connect(location, tls=named)
        assert echo(right, call_options(None, "named", 5)) == "named"
        right.close()
    finally:
        server.shutdown()


def test_mutual_tls_refuses_clients_without_a_certificate_of_the_client_ca(tmp_path):
    ca = make_cert(tmp_path, "ca")
    other_ca = make_cert(tmp_path, "other-ca")
    server_cert = make_cert(tmp_path, "server", dns=("localhost",), ips=("127.0.0.1",), issuer=ca)
    good = make_cert(tmp_path, "trainer", issuer=ca)
    forged = make_cert(tmp_path, "intruder", issuer=other_ca)
    server_tls = TLSConfig(*server_cert, client_ca_file=ca[0])
    server = EchoJobServer(
        location_uri("127.0.0.1", 0, server_tls),
        middleware=server_middleware(None),
        **server_tls_kwargs(server_tls),
    )
    location = location_uri("127.0.0.1", server.port, server_tls)
    try:
        for refused in (
            TLSConfig(ca_file=ca[0]),
            TLSConfig(ca_file=ca[0], client_cert_file=forged[0], client_key_file=forged[1]),
        ):
            client = connect(location, tls=refused)
            with pytest.raises(flight.FlightError):
                echo(client, call_options(None, "x", 5))
            client.close()
        trainer = TLSConfig(ca_file=ca[0], client_cert_file=good[0], client_key_file=good[1])
        client = connect(location, tls=trainer)
        assert echo(client, call_options(None, "mtls", 5)) == "mtls"
        client.close()
        # a session's own certificate doubles as its client identity (nodes -> coordinator)
        session = connect(location, tls=TLSConfig(*server_cert, ca_file=ca[0]))
        assert echo(session, call_options(None, "self", 5)) == "self"
        session.close()
    finally:
        server.shutdown()


def test_tls_config_pairs_client_files_and_checks_the_server_name(tmp_path):
    ca = make_cert(tmp_path, "ca")
    with pytest.raises(SpecError, match="client_cert_file and client_key_file"):
        TLSConfig(ca_file=ca[0], client_cert_file=ca[0])
    with pytest.raises(SpecError, match="server_name"):
        TLSConfig(ca_file=ca[0], server_name=" ")
    with pytest.raises(SpecError, match="client_ca_file"):
        TLSConfig(ca_file=ca[0], client_ca_file=tmp_path / "missing.pem")
