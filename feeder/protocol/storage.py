"""Which FileIO properties may cross the wire: never a storage credential.

The coordinator opens the table with the catalog's FileIO properties, which may
hold object-store credentials (``s3.secret-access-key`` …). A data node needs
the non-secret ones (endpoint, region, addressing style, FileIO class) to read
the same files, and takes its credentials from its own environment (see
:mod:`feeder.node.credentials`). :func:`public_io_properties` is applied to
every ``register`` answer, so no code path can send a credential to a node.
"""

from __future__ import annotations

from collections.abc import Mapping

# a property whose name contains one of these is a credential (or may be one)
SECRET_MARKERS = (
    "secret",
    "key",
    "token",
    "password",
    "credential",
    "sas",
    "signature",
    "session",
)


def is_secret_property(name: str) -> bool:
    """Return True if the FileIO property ``name`` is (or may be) a credential.

    Args:
        name: a pyiceberg FileIO property name, e.g. ``"s3.secret-access-key"``.

    Returns:
        True for any name containing a marker of :data:`SECRET_MARKERS`.
    """
    lowered = name.lower()
    return any(marker in lowered for marker in SECRET_MARKERS)


def public_io_properties(properties: Mapping[str, str]) -> dict[str, str]:
    """Return ``properties`` without any credential (see :func:`is_secret_property`).

    Args:
        properties: FileIO properties, possibly holding credentials.

    Returns:
        A new dict of the non-secret properties only.
    """
    return {k: v for k, v in properties.items() if not is_secret_property(k)}
