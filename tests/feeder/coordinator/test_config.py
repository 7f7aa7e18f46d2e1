"""FeederConfig / TLSConfig validation at the edge, and where the token comes from."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import pytest
from pydantic import SecretStr

from feeder.coordinator.config import FeederConfig
from feeder.node.settings import NodeSettings
from feeder.protocol.config import TLSConfig, load_token
from jobs.errors import SpecError


def test_explicit_token_wins_over_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ICEFEED_TOKEN", "from-env")
    assert load_token("explicit").get_secret_value() == "explicit"
    assert load_token(SecretStr("s")).get_secret_value() == "s"
    assert load_token().get_secret_value() == "from-env"


def test_token_file_is_read_when_env_is_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("ICEFEED_TOKEN", raising=False)
    path = tmp_path / "tok"
    path.write_text("  sekrit-value\n")
    monkeypatch.setenv("ICEFEED_TOKEN_FILE", str(path))
    assert load_token().get_secret_value() == "sekrit-value"


def test_no_token_anywhere_is_none(monkeypatch):
    monkeypatch.delenv("ICEFEED_TOKEN", raising=False)
    monkeypatch.delenv("ICEFEED_TOKEN_FILE", raising=False)
    assert load_token() is None


def test_bad_token_sources_raise_spec_error_without_the_secret(monkeypatch, tmp_path):
    monkeypatch.delenv("ICEFEED_TOKEN", raising=False)
    with pytest.raises(SpecError):
        load_token("   ")
    monkeypatch.setenv("ICEFEED_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(SpecError, match="cannot read"):
        load_token()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.setenv("ICEFEED_TOKEN_FILE", str(empty))
    with pytest.raises(SpecError, match="empty"):
        load_token()


def test_token_never_in_repr():
    cfg = FeederConfig(table="ns.t", token="hunter2-secret")
    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in str(cfg.token)
    assert cfg.token.get_secret_value() == "hunter2-secret"


def test_config_normalises_and_validates():
    cfg = FeederConfig(table="ns.t", columns=["a", "b"], cache_dir="/tmp/x", local_dir="/run/f")
    assert cfg.columns == ("a", "b")
    assert str(cfg.cache_dir) == "/tmp/x"
    assert str(cfg.node_settings().local_dir) == "/run/f"  # the nodes get it
    assert FeederConfig(table="ns.t").local_dir is None  # local reads are off by default
    with pytest.raises(TypeError):
        FeederConfig("ns.t")  # keyword-only


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"table": ""}, "table"),
        ({"columns": []}, "columns"),
        ({"columns": ["a", "a"]}, "columns"),
        ({"nodes": 0}, "nodes"),
        ({"port": 70000}, "port"),
        ({"metrics_port": -1}, "metrics_port"),
        ({"slice_bytes": 0}, "slice_bytes"),
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"snapshot_id": "12"}, "snapshot_id"),
        ({"row_copy": "no"}, "row_copy"),
        ({"cache_capacity_bytes": -1}, "cache_capacity_bytes"),
        ({"cache_capacity_bytes": "10Gi"}, "cache_capacity_bytes"),
        ({"local_dir": 5}, "local_dir"),
        ({"local_dir": " "}, "local_dir"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(SpecError, match=field):
        FeederConfig(**{"table": "ns.t", **kwargs})


def test_tls_config_checks_files(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("CERT")
    key.write_text("KEY")
    tls = TLSConfig(cert, key)
    assert tls.server_certificates() == [(b"CERT", b"KEY")]
    assert tls.root_certs() == b"CERT"
    assert TLSConfig(ca_file=cert).root_certs() == b"CERT"
    with pytest.raises(SpecError, match="cert_file"):
        TLSConfig(tmp_path / "nope.pem", key)
    with pytest.raises(SpecError, match="together"):
        TLSConfig(cert_file=cert)
    with pytest.raises(SpecError):
        TLSConfig()
    with pytest.raises(SpecError, match="server"):
        TLSConfig(ca_file=cert).server_certificates()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batch_rows": 0}, "batch_rows"),
        ({"batch_rows": None}, "batch_rows"),
        ({"batch_rows": 2.5}, "batch_rows"),
        ({"heartbeat_seconds": 0}, "heartbeat_seconds"),
        ({"columns": "abc"}, "not one string"),
    ],
)
def test_node_settings_are_validated_by_the_feeder_config(kwargs, field):
    with pytest.raises(SpecError, match=field):
        FeederConfig(**{"table": "ns.t", **kwargs})


def test_nodes_get_every_node_setting_of_the_config_and_nothing_else():
    tls_free = FeederConfig(
        table="ns.t",
        host="0.0.0.0",
        insecure=True,
        token="tok-123",
        cache_dir="/tmp/c",
        heartbeat_seconds=0.5,
        batch_rows=250,
        row_copy=False,
        cache_capacity_bytes=5000,
        slice_bytes=7,
    )
    settings = tls_free.node_settings()
    assert type(settings) is NodeSettings
    assert settings == NodeSettings(
        host="0.0.0.0",
        insecure=True,
        token=SecretStr("tok-123"),
        cache_dir=Path("/tmp/c"),
        heartbeat_seconds=0.5,
        batch_rows=250,
        row_copy=False,
        cache_capacity_bytes=5000,
    )
    assert {f.name for f in fields(NodeSettings)} < set(FeederConfig.field_names())
    assert "tok-123" not in repr(settings)


def test_serve_takes_feeder_config_fields_and_names_the_valid_ones():
    import feeder

    with pytest.raises(SpecError, match=r"unknown setting\(s\) \['colums'\].*columns"):
        feeder.serve("ns.t", colums=["a"])
    with pytest.raises(SpecError, match="batch_rows"):
        feeder.serve("ns.t", batch_rows=0)
    with pytest.raises(SpecError, match="unknown setting"):
        feeder.serve(FeederConfig(table="ns.t"), spark_conf={})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "feeder.example"])
def test_a_non_loopback_bind_without_tls_is_refused_unless_insecure(host):
    with pytest.raises(SpecError, match=r"without TLS.*--insecure"):
        FeederConfig(table="ns.t", host=host)
    with pytest.raises(SpecError, match="without TLS"):
        NodeSettings(host=host)
    assert FeederConfig(table="ns.t", host=host, insecure=True).node_settings().insecure
    for loopback in ("127.0.0.1", "::1", "localhost"):
        assert FeederConfig(table="ns.t", host=loopback).host == loopback


def test_advertised_host_is_the_override_the_bind_host_or_a_name_for_a_wildcard(tmp_path):
    import socket

    from tests.feeder.protocol.test_auth import make_self_signed

    assert NodeSettings(host="127.0.0.1").advertised_host() == "127.0.0.1"
    assert NodeSettings(host="127.0.0.1", advertise_host="n0.x").advertised_host() == "n0.x"
    tls = make_self_signed(tmp_path)
    assert NodeSettings(host="0.0.0.0", tls=tls).advertised_host() == socket.getfqdn()
    plain = NodeSettings(host="0.0.0.0", insecure=True).advertised_host()
    assert plain == socket.gethostbyname(socket.gethostname())


def test_insecure_binds_are_warned_about_in_the_log(caplog):
    from feeder.protocol.config import warn_if_insecure

    with caplog.at_level(logging.WARNING, logger="feeder.protocol.config"):
        warn_if_insecure("the coordinator", "127.0.0.1", None)
        assert caplog.records == []
        warn_if_insecure("the coordinator", "0.0.0.0", None)
    assert "WITHOUT TLS" in caplog.text and "0.0.0.0" in caplog.text
