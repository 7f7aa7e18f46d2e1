"""Where a CleanSpec's YAML comes from: a local path, ``file://`` or an object-store URI.

A spec baked into an image, mounted from a ConfigMap (a path) or kept next to
the data (``s3://bucket/specs/flights.yaml``) is read the same way. Object
stores are read with pyarrow's filesystems, which take their credentials and
endpoint from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL`` …),
as the clean job's Spark reads do.
"""

from __future__ import annotations

from pathlib import Path

from jobs.errors import SpecError

#: Largest spec read (a spec is a few KB; this guards against pointing at data).
MAX_SPEC_BYTES = 1 << 20


def is_uri(location: str) -> bool:
    """True for ``scheme://…`` locations (``file://`` included)."""
    return "://" in location


def read_spec_text(location: str | Path) -> str:
    """Return the text of the spec at ``location``.

    Args:
        location: A local path, a ``file://`` URI or a URI pyarrow can open
            (``s3://``, ``gs://``, ``hdfs://``).

    Returns:
        The file's text (UTF-8).

    Raises:
        SpecError: the location cannot be read, is too large or not UTF-8.
    """
    text = str(location)
    if not is_uri(text):
        try:
            data = Path(text).read_bytes()
        except OSError as exc:
            raise SpecError(f"cannot read spec {text!r}: {exc.strerror}") from None
    else:
        data = _read_uri(text)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"spec {text!r} is {len(data):,} bytes; a CleanSpec is at most 1 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec {text!r} is not UTF-8 text: {exc}") from None


def _read_uri(uri: str) -> bytes:
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            return bytes(stream.read(MAX_SPEC_BYTES + 1))
    except (OSError, ValueError) as exc:
        raise SpecError(
            f"cannot read spec {uri!r}: {exc} (object stores take credentials and endpoint "
            "from the environment, e.g. AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL)"
        ) from None
