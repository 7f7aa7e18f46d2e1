"""An S3-compatible server on 127.0.0.1 (moto) for warehouse-on-object-store tests.

``running_s3()`` starts moto's ``ThreadedMotoServer`` in this process on a
free loopback port, creates one bucket with boto3, and stops the server on
exit. Its credentials are random per run and handed out the way a deployment
would: as an environment-like dict (``AWS_ACCESS_KEY_ID`` …) and as pyiceberg
catalog properties (``s3.access-key-id`` …); no library code holds them.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

REGION = "us-east-1"


@dataclass(frozen=True, kw_only=True)
class S3Server:
    """A running S3-compatible endpoint, its bucket and credentials (secret kept out of repr)."""

    endpoint: str
    bucket: str
    region: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        """The credentials as AWS environment variables (what a pod would get from a Secret)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def fileio_properties(self) -> dict[str, str]:
        """pyiceberg properties that point PyArrowFileIO (pyarrow's S3FileSystem) at this server."""
        return {
            "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
            "s3.endpoint": self.endpoint,
            "s3.access-key-id": self.access_key_id,
            "s3.secret-access-key": self.secret_access_key,
            "s3.region": self.region,
            # Path-style URLs (http://host:port/bucket/key): pyarrow uses them unless
            # s3.force-virtual-addressing is set; Java Iceberg (Spark) reads the other key.
            "s3.path-style-access": "true",
            "s3.force-virtual-addressing": "false",
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix`` (follows pagination)."""
        paginator = self.client().get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return keys


@contextlib.contextmanager
def running_s3(bucket: str = "icefeed-test") -> Iterator[S3Server]:
    """Run moto's S3 server on 127.0.0.1 with ``bucket`` created; stop it on exit."""
    from moto.server import ThreadedMotoServer

    # werkzeug logs one line per request at INFO; keep test output readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto_server.start()  # returns once the socket is bound and the thread serves
    try:
        host, port = moto_server.get_host_and_port()
        server = S3Server(
            endpoint=f"http://{host}:{port}",
            bucket=bucket,
            region=REGION,
            access_key_id="AKIA" + secrets.token_hex(8).upper(),
            secret_access_key=secrets.token_urlsafe(30),
        )
        server.client().create_bucket(Bucket=bucket)
        log.info("moto S3 server on %s with bucket %s", server.endpoint, bucket)
        yield server
    finally:
        moto_server.stop()
