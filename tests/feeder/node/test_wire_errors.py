"""Errors a data node sends: a message and a code, never a traceback or a path (real Flight).

A node whose cache files were removed under it fails a read with an internal
error: the client gets an error id, the node's log holds the traceback under
that id, and the node keeps serving.
"""

from __future__ import annotations

import logging
import pathlib

import pyarrow.flight as flight
import pytest

from feeder.protocol.auth import call_options
from feeder.protocol.messages import StaticRequest
from feeder.protocol.wire_errors import ErrorCode, error_code
from tests.feeder.local_feeder import local_feeder
from tests.feeder.tables import make_table


@pytest.fixture
def catalog(tmp_path):
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties

    (tmp_path / "warehouse").mkdir()
    cat = SqlCatalog("wire", **embedded_catalog_properties(tmp_path))
    cat.create_namespace("test")
    make_table(cat, files=1, rows_per_file=300, row_group_rows=100)
    return cat


def _assert_clean(message: str, *paths: str) -> None:
    assert "Traceback" not in message
    assert ".py" not in message and ".arrow" not in message
    assert "/" not in message.split(". Detail:")[0]
    for path in paths:
        assert path not in message


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_slice_whose_cache_and_data_files_vanished_is_an_internal_error_with_an_id(
    catalog, tmp_path, caplog, shuffle
):
    cache = tmp_path / "cache"
    with local_feeder(catalog, cache_dir=cache, nodes=1, slice_bytes=1 << 30) as feed:
        coord = flight.connect(feed.endpoint)
        request = StaticRequest(job="wire", shuffle=shuffle)
        info = coord.get_flight_info(flight.FlightDescriptor.for_command(request.to_command()))
        (endpoint,) = info.endpoints
        removed = [p for p in cache.rglob("*") if p.is_file()]
        assert removed
        # the node would cache a vanished slice again from the table: take the table's
        # data files away too, so that fails inside the node (an unexpected error)
        location = catalog.load_table("test.feed").location().removeprefix("file://")
        data_files = list(pathlib.Path(location).rglob("*.parquet"))
        assert data_files
        for path in removed + data_files:
            path.unlink()
        node = flight.connect(endpoint.locations[0].uri.decode())
        options = call_options(None, "wire")
        with caplog.at_level(logging.ERROR), pytest.raises(flight.FlightInternalError) as failed:
            node.do_get(endpoint.ticket, options).read_all()
        message = str(failed.value)
        _assert_clean(message, str(cache), str(tmp_path))
        assert error_code(failed.value) is ErrorCode.INTERNAL
        error_id = message.split("error id ")[1].split(")")[0]
        logged = [r for r in caplog.records if error_id in r.getMessage()]
        assert logged and logged[0].exc_info is not None  # the traceback stays in the log
        # the node is still up: it answers the next call with a coded refusal
        with pytest.raises(flight.FlightUnauthenticatedError) as forged:
            node.do_get(flight.Ticket(b"forged.ticket"), options).read_all()
        assert error_code(forged.value) is ErrorCode.UNAUTHENTICATED
        _assert_clean(str(forged.value))
        with pytest.raises(flight.FlightServerError) as unserved:
            list(node.do_action(flight.Action("drop", b""), options))
        assert error_code(unserved.value) is ErrorCode.UNIMPLEMENTED
        _assert_clean(str(unserved.value))
        node.close()
        coord.close()
