"""tests.support.s3: moto's S3 server on loopback, with its bucket and random credentials."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError

from tests.support.s3 import S3Server, running_s3

pytestmark = pytest.mark.slow


def test_server_serves_its_bucket_on_loopback_and_stops_on_exit() -> None:
    with running_s3(bucket="probe") as server:
        assert server.endpoint.startswith("http://127.0.0.1:")
        client = server.client()
        client.put_object(Bucket="probe", Key="a/b.txt", Body=b"hello")
        assert server.list_keys("a/") == ["a/b.txt"]
        assert client.get_object(Bucket="probe", Key="a/b.txt")["Body"].read() == b"hello"
    with pytest.raises(EndpointConnectionError):
        server.client().list_buckets()


def test_credentials_are_random_per_server_and_given_as_env_and_properties(
    s3_server: S3Server,
) -> None:
    with running_s3() as other:
        assert other.secret_access_key != s3_server.secret_access_key
    props = s3_server.fileio_properties()
    assert props["s3.endpoint"] == s3_server.endpoint
    assert props["s3.secret-access-key"] == s3_server.env["AWS_SECRET_ACCESS_KEY"]
    assert props["py-io-impl"] == "pyiceberg.io.pyarrow.PyArrowFileIO"
    assert s3_server.secret_access_key not in repr(s3_server)
