"""A real feeder (coordinator and thread data nodes) in its own process, for RSS measurements.

``python -m tests.feeder.coordinator.bounded_process HOME`` builds a one-slice
table under HOME, starts a local feeder, prints ``endpoint <uri>`` and serves
until its stdin closes. The test measures this process's RSS from outside
(``/proc/<pid>/status``), so nothing of the test's own memory counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pyiceberg.catalog.sql import SqlCatalog

from jobs.catalog import embedded_catalog_properties
from tests.feeder.local_feeder import local_feeder
from tests.feeder.tables import make_table


def main(home: Path) -> None:
    """Serve a one-slice feeder until stdin closes."""
    (home / "warehouse").mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog("bounded", **embedded_catalog_properties(home))
    catalog.create_namespace("test")
    make_table(catalog, files=1, rows_per_file=100, row_group_rows=100)
    with local_feeder(catalog, cache_dir=home / "cache", nodes=1, slice_bytes=1 << 30) as feed:
        print("endpoint", feed.endpoint, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
