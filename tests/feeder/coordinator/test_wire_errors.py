"""Errors the coordinator sends: a message and a code, never a traceback or a path.

An unexpected exception inside a real handler, reached through a real Flight
call (a coordinator serving a snapshot whose schema is missing), goes out as an
internal error naming an error id; the log has the traceback; the server stays up.
"""

from __future__ import annotations

import dataclasses
import logging

import pyarrow.flight as flight
import pytest

from feeder.coordinator.config import FeederConfig
from feeder.coordinator.service import Coordinator
from feeder.coordinator.session import resolve
from feeder.protocol.messages import StaticRequest
from feeder.protocol.tickets import TicketSigner, new_key
from feeder.protocol.wire_errors import ErrorCode, error_code
from tests.feeder.tables import make_table


@pytest.fixture
def served(tmp_path):
    from pyiceberg.catalog.sql import SqlCatalog

    from jobs.catalog import embedded_catalog_properties

    (tmp_path / "warehouse").mkdir()
    cat = SqlCatalog("wire", **embedded_catalog_properties(tmp_path))
    cat.create_namespace("test")
    make_table(cat, files=1, rows_per_file=100, row_group_rows=100)
    return resolve(FeederConfig(table="test.feed"), cat)


def test_an_unexpected_handler_failure_is_an_internal_error_with_an_id(served, caplog):
    broken = dataclasses.replace(served, schema=None)  # a state no handler expects
    coordinator = Coordinator(broken, signer=TicketSigner(new_key()), slots=1)
    try:
        client = flight.connect(coordinator.endpoint)
        command = StaticRequest(columns=("id",)).to_command()
        with caplog.at_level(logging.ERROR), pytest.raises(flight.FlightInternalError) as failed:
            client.get_flight_info(flight.FlightDescriptor.for_command(command))
        message = str(failed.value)
        assert "Traceback" not in message and ".py" not in message and "/" not in message
        assert "NoneType" not in message  # not even the exception's own text
        assert error_code(failed.value) is ErrorCode.INTERNAL
        error_id = message.split("error id ")[1].split(")")[0]
        logged = [r for r in caplog.records if error_id in r.getMessage()]
        assert logged and logged[0].exc_info is not None
        # still up, and a bad request is a coded refusal without a traceback either
        with pytest.raises(flight.FlightServerError) as bad:
            list(client.do_action(flight.Action("lease", b"not json")))
        assert error_code(bad.value) is ErrorCode.INVALID_ARGUMENT
        assert "Traceback" not in str(bad.value) and ".py" not in str(bad.value)
        assert client.list_actions()
        client.close()
    finally:
        coordinator.close()
