"""Storage credentials never cross Flight: nodes read an S3 table with their own environment."""

from __future__ import annotations

import json

import pytest

from feeder.client.client import FeederClient
from feeder.node.credentials import node_io_properties
from feeder.protocol.node_messages import RegisterAnswer
from feeder.protocol.storage import public_io_properties
from tests.feeder.local_feeder import ids_of, local_feeder
from tests.feeder.tables import make_table
from tests.support.relay import RecordingRelay

ROWS = 4_000


def test_nodes_read_an_s3_table_with_credentials_no_flight_message_carries(
    s3_catalog, s3_server, tmp_path, monkeypatch
):
    make_table(s3_catalog, files=2, rows_per_file=ROWS // 2)
    assert s3_server.secret_access_key in json.dumps(
        s3_catalog.load_table("test.feed").io.properties
    )
    for name, value in s3_server.env.items():  # what a node pod gets from its Secret
        monkeypatch.setenv(name, value)
    relays: list[RecordingRelay] = []

    def through_relay(endpoint: str) -> str:
        relays.append(RecordingRelay(int(endpoint.rsplit(":", 1)[1])))
        return f"grpc://127.0.0.1:{relays[-1].port}"

    with local_feeder(
        s3_catalog, cache_dir=tmp_path / "c", nodes=2, node_endpoint=through_relay
    ) as f:
        client = FeederClient(through_relay(f.endpoint), job="s3")
        assert sorted(ids_of(client.stream(0))) == list(range(ROWS))
        status = client.status()
    assert status["storage_bytes_read"] > 0  # the nodes really read the bucket
    wire = b"".join(relay.captured() for relay in relays)
    for relay in relays:
        relay.close()
    assert b"metadata_location" in wire and b"s3://" in wire  # the tap saw the register answers
    for secret in (s3_server.secret_access_key, s3_server.access_key_id):
        assert secret.encode() not in wire


def test_the_register_answer_drops_every_credential_and_nodes_add_their_own():
    sent = {
        "s3.endpoint": "http://127.0.0.1:9000",
        "s3.region": "eu-west-1",
        "s3.access-key-id": "AKIAXXXX",
        "s3.secret-access-key": "shh",
        "s3.session-token": "tok",
        "gcs.oauth2.token": "tok2",
        "adls.account-key": "k",
        "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
    }
    answer = RegisterAnswer(snapshot_id=1, metadata_location="s3://b/m.json", io_properties=sent)
    wire = answer.to_json()
    for secret in (b"AKIAXXXX", b"shh", b"tok", b"tok2", b'"k"'):
        assert secret not in wire
    assert (
        RegisterAnswer.from_json(wire).io_properties
        == public_io_properties(sent)
        == {
            "s3.endpoint": "http://127.0.0.1:9000",
            "s3.region": "eu-west-1",
            "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
        }
    )
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAENV",
        "AWS_SECRET_ACCESS_KEY": "envsecret",
        "AWS_REGION": "us-east-1",
        "ICEFEED_IO__GCS__OAUTH2__TOKEN": "gtok",
    }
    props = node_io_properties(answer.io_properties, env)
    assert props["s3.access-key-id"] == "AKIAENV"
    assert props["s3.secret-access-key"] == "envsecret"
    assert props["s3.region"] == "eu-west-1"  # the table's own region wins over the default
    assert props["gcs.oauth2.token"] == "gtok"


@pytest.mark.parametrize("name", ["s3.secret-access-key", "S3.Access-Key-Id", "x.password"])
def test_credential_names_are_recognised(name):
    assert public_io_properties({name: "v"}) == {}
