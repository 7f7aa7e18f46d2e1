"""Load the Iceberg catalog: pyiceberg's own configuration first, else an embedded one.

Resolution order for ``load_catalog(name)``:

1. pyiceberg's configuration — ``.pyiceberg.yaml`` (in ``$PYICEBERG_HOME``,
   the home directory or the working directory) or ``PYICEBERG_CATALOG__<NAME>__<KEY>``
   environment variables. If it defines the catalog ``name`` (default: pyiceberg's
   default catalog name), that catalog is used as configured.
2. Otherwise the **embedded default**: a SQLite ``SqlCatalog`` at
   ``$ICEFEED_HOME/catalog.db`` with its warehouse at ``$ICEFEED_HOME/warehouse``.
   ``ICEFEED_HOME`` defaults to ``./.icefeed``. Nothing to start, nothing to install.

Credentials (catalog passwords, S3 keys) come from that configuration or the
environment only; icefeed never takes them as code arguments and never logs them.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.errors import CatalogError

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

log = logging.getLogger(__name__)

EMBEDDED_CATALOG_NAME = "icefeed"


_URI_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


def mask_credentials(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` in ``text`` by ``***``."""
    return _URI_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)


def icefeed_home() -> Path:
    """Return the folder of the embedded catalog (``$ICEFEED_HOME`` or ``./.icefeed``)."""
    return Path(os.environ.get("ICEFEED_HOME", ".icefeed")).resolve()


def embedded_catalog_properties(home: Path | None = None) -> dict[str, str]:
    """Return the properties of the embedded SQLite catalog under ``home``."""
    root = (home or icefeed_home()).resolve()
    return {
        "type": "sql",
        "uri": f"sqlite:///{root / 'catalog.db'}",
        "warehouse": (root / "warehouse").as_uri(),
    }


def load_catalog(name: str | None = None) -> Catalog:
    """Return the pyiceberg catalog ``name``, or the embedded default if none is configured.

    A pyiceberg configuration (``.pyiceberg.yaml`` or ``PYICEBERG_CATALOG__...``
    variables) always wins; without one, the embedded SQLite catalog under
    ``$ICEFEED_HOME`` (default ``./.icefeed``) is used.

    Args:
        name: the catalog's name; None for pyiceberg's default catalog.

    Returns:
        The loaded catalog.

    Raises:
        CatalogError: a configured catalog cannot be loaded (the message names the
            catalog, never its credentials).
    """
    from pyiceberg.catalog import load_catalog as pyiceberg_load_catalog
    from pyiceberg.utils.config import Config

    config = Config()
    wanted = name or config.get_default_catalog_name()
    configured = config.get_catalog_config(wanted)
    if configured is not None:
        try:
            # Pass the fresh config: pyiceberg's own load_catalog reads the environment
            # once at import, so PYICEBERG_CATALOG__ variables set later would be missed.
            catalog = pyiceberg_load_catalog(wanted, **configured)  # type: ignore[arg-type]
        except Exception as exc:  # pyiceberg raises many types; we add the context
            # `from None`: the cause's text may quote a URI with its password.
            first_line = mask_credentials((str(exc).splitlines() or [""])[0])
            raise CatalogError(
                f"could not load the configured Iceberg catalog {wanted!r}: "
                f"{type(exc).__name__}: {first_line}; "
                "check its .pyiceberg.yaml / PYICEBERG_CATALOG__ settings"
            ) from None
        log.info("using configured Iceberg catalog %r", wanted)
        return catalog
    if name is not None and name != EMBEDDED_CATALOG_NAME:
        raise CatalogError(
            f"no Iceberg catalog named {name!r} is configured; define it in .pyiceberg.yaml "
            f"or PYICEBERG_CATALOG__{name.upper()}__URI, or omit the name for the embedded catalog"
        )
    home = icefeed_home()
    (home / "warehouse").mkdir(parents=True, exist_ok=True)
    from pyiceberg.catalog.sql import SqlCatalog

    log.info("using the embedded Iceberg catalog under %s", home)
    return SqlCatalog(EMBEDDED_CATALOG_NAME, **embedded_catalog_properties(home))
