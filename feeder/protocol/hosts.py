"""The host a data node or consumer runs on: what locality compares (PROTOCOL.md, *Locality*).

A host is a name, compared for equality only: on Kubernetes the node name
(``spec.nodeName`` through the downward API into ``ICEFEED_HOST``), elsewhere
this machine's hostname; an explicit override wins over both (tests simulate
several hosts on one machine that way).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping

from jobs.errors import SpecError

#: the environment variable that names this process's host (the chart sets it from
#: ``spec.nodeName``)
HOST_ENV = "ICEFEED_HOST"
#: a host name: 1 to 253 letters, digits and ``. _ -`` (a Kubernetes node name, a DNS
#: name), starting with a letter or digit
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


def check_host(value: object, what: str = "host") -> str:
    """Return ``value`` if it is a valid host name.

    Raises:
        SpecError: it is not; the message names ``what`` and what is valid.
    """
    if not isinstance(value, str) or not HOST_NAME.fullmatch(value):
        raise SpecError(
            f"{what}: {str(value)[:64]!r} is not a host name: 1 to 253 letters, digits or "
            "'._-', starting with a letter or digit (a Kubernetes node name)"
        )
    return value


def local_host(override: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Return this process's host: ``override``, else ``$ICEFEED_HOST``, else the hostname.

    Raises:
        SpecError: the override or ``$ICEFEED_HOST`` is not a valid host name.
    """
    if override is not None:
        return check_host(override)
    env = os.environ if environ is None else environ
    named = env.get(HOST_ENV)
    if named:
        return check_host(named, HOST_ENV)
    name = socket.gethostname()
    return name if HOST_NAME.fullmatch(name) else "unknown-host"
