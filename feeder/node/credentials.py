"""A data node's storage credentials: from its own environment, never from the coordinator.

The ``register`` answer carries only non-secret FileIO properties (see
:mod:`feeder.protocol.storage`). The node adds the credentials its pod or
process was given — on Kubernetes from a Secret, as environment variables:

* ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``
  (and ``AWS_REGION`` / ``AWS_ENDPOINT_URL`` when the answer names none);
* any pyiceberg FileIO property as ``ICEFEED_IO__<NAME>``, the name upper-cased
  with ``.`` written ``__`` and ``-`` written ``_`` (e.g.
  ``ICEFEED_IO__GCS__OAUTH2__TOKEN``) — the same spelling pyiceberg uses for
  ``PYICEBERG_CATALOG__…`` variables.

Without any of them, pyarrow's own credential chain applies (instance roles,
``~/.aws``, workload identity).
"""

from __future__ import annotations

from collections.abc import Mapping

IO_ENV_PREFIX = "ICEFEED_IO__"

_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "s3.access-key-id",
    "AWS_SECRET_ACCESS_KEY": "s3.secret-access-key",
    "AWS_SESSION_TOKEN": "s3.session-token",
}
_AWS_DEFAULTS = {
    "AWS_REGION": "s3.region",
    "AWS_DEFAULT_REGION": "s3.region",
    "AWS_ENDPOINT_URL_S3": "s3.endpoint",
    "AWS_ENDPOINT_URL": "s3.endpoint",
}


def node_io_properties(sent: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Return the FileIO properties a node reads the table with.

    Args:
        sent: the non-secret properties of the ``register`` answer.
        environ: the node's environment (``os.environ``).

    Returns:
        ``sent``, plus the credentials (and defaults) found in ``environ``;
        ``ICEFEED_IO__*`` variables win over everything.
    """
    properties = dict(sent)
    for variable, name in _AWS_DEFAULTS.items():
        value = environ.get(variable, "").strip()
        if value and name not in properties:
            properties[name] = value
    for variable, name in _AWS_ENV.items():
        value = environ.get(variable, "").strip()
        if value:
            properties[name] = value
    for variable, value in environ.items():
        if variable.startswith(IO_ENV_PREFIX) and value.strip():
            raw = variable[len(IO_ENV_PREFIX) :].lower()
            properties[raw.replace("__", ".").replace("_", "-")] = value.strip()
    return properties
