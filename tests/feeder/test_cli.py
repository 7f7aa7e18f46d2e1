"""``icefeed feeder status`` against a real coordinator; ``feeder serve`` refusing bad input
and, as a real ``python -m feeder serve`` process, serving a table until SIGTERM."""

from __future__ import annotations

import argparse
import json

import pytest

from feeder.cli import main as feeder_main
from feeder.client.client import FeederClient
from jobs.errors import SpecError
from sparkapps.cli import main
from tests.feeder.local_feeder import ids_of, local_feeder
from tests.feeder.tables import make_table


def test_status_json_and_table(catalog, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # a table wide enough to show every column whole
    make_table(catalog, files=1, rows_per_file=1000, row_group_rows=250)
    with local_feeder(catalog, cache_dir=tmp_path / "c", nodes=1, locality_host="rack7-n3") as f:
        assert main(["feeder", "status", f.endpoint, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["ready"] and status["rows"] == 1000 and status["version"] == 1
        assert main(["feeder", "status", f.endpoint]) == 0
        out = capsys.readouterr().out
        assert "test.feed" in out and status["nodes"][0]["node_id"] in out
        assert status["nodes"][0]["host"] == "rack7-n3" and "rack7-n3" in out  # (locality)


def test_status_of_a_dead_endpoint_fails_with_exit_1(capsys):
    # A FeederError: the request was fine, the work failed (jobs.exit_codes).
    assert main(["feeder", "status", "grpc://127.0.0.1:1", "--timeout", "1"]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_serve_refuses_an_unknown_table_before_starting_anything(catalog, capsys):
    assert feeder_main(["serve", "test.nope"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["feeder", "serve", "test.nope", "--columns", "a,b"]) == 2


def test_serve_no_row_copy_flag_reaches_serve(monkeypatch, capsys):
    """Argument plumbing only (serve itself runs for real in test_session.py): a stand-in
    for ``serve`` records the FeederConfig it gets and refuses, as a bad table would."""
    import feeder.coordinator.session as serve_module
    from feeder.coordinator.config import FeederConfig
    from jobs.errors import SpecError

    seen: list[FeederConfig] = []

    def refuse(config: FeederConfig, **kwargs: object) -> None:
        seen.append(config)
        raise SpecError(f"table {config.table} not found")

    monkeypatch.setattr(serve_module, "serve", refuse)
    assert feeder_main(["serve", "test.t", "--no-row-copy"]) == 2
    assert feeder_main(["serve", "test.t", "--port", "8815", "--columns", "a, b"]) == 2
    assert feeder_main(["serve", "test.t", "--cache-capacity", "100Gi"]) == 2
    assert feeder_main(["serve", "test.t", "--cache-capacity", "5000"]) == 2
    assert feeder_main(["serve", "test.t", "--follow", "300"]) == 2
    assert [c.row_copy for c in seen] == [False, True, True, True, True]
    assert [c.cache_capacity_bytes for c in seen] == [None, None, 100 * 2**30, 5000, None]
    assert [c.follow_seconds for c in seen] == [None, None, None, None, 300.0]
    assert seen[1] == FeederConfig(table="test.t", port=8815, columns=("a", "b"))
    assert seen[0] == FeederConfig(table="test.t", row_copy=False)  # the rest: defaults
    assert "not found" in capsys.readouterr().err


def test_serve_refuses_a_bad_option_value_before_starting_anything(capsys):
    assert feeder_main(["serve", "test.t", "--port", "70000"]) == 2
    assert "port: 70000" in capsys.readouterr().err


def test_python_dash_m_feeder_serve_refuses_an_unknown_table(catalog):
    """The SparkApplication's entry, ``python -m feeder serve``, run as a real process."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "feeder", "serve", "test.nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "test.nope" in result.stderr and "not found" in result.stderr


def _spawn_serve(table: str, tmp_path, cache):
    """``python -m feeder serve TABLE`` with one node, writing its endpoint under tmp_path."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "feeder", "serve", table, "--nodes", "1"]
    command += ["--endpoint-file", str(tmp_path / "endpoint"), "--cache-dir", str(cache)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _endpoint_of(proc, endpoint_file) -> str:
    """The endpoint a ``python -m feeder serve`` process writes once ready (300 s at most)."""
    import time

    deadline = time.monotonic() + 300
    while not endpoint_file.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no endpoint file after 300 s"
        time.sleep(0.1)  # polling a file the server writes atomically, bounded
    return str(endpoint_file.read_text().strip())


@pytest.mark.spark
@pytest.mark.slow
def test_python_dash_m_feeder_serve_serves_every_row_until_sigterm(catalog, tmp_path):
    """``python -m feeder serve`` as a real process (its own Spark): it writes its
    endpoint once ready, serves every row, and exits 0 on SIGTERM with its cache gone."""
    import signal

    make_table(catalog, "test.sub", files=1, rows_per_file=2000, row_group_rows=500)
    cache = tmp_path / "cache"
    proc = _spawn_serve("test.sub", tmp_path, cache)
    try:
        client = FeederClient(_endpoint_of(proc, tmp_path / "endpoint"))
        assert client.status()["ready"]
        assert sorted(ids_of(client.stream(0))) == list(range(2000))
        assert sorted(ids_of(client.stream(0, mode="dynamic", seed=3))) == list(range(2000))
        assert list(cache.rglob("*.arrow")), "the node cached nothing under --cache-dir"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        assert list(cache.rglob("*.arrow")) == []  # the node deleted its cache on stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serve_refuses_a_wildcard_bind_without_tls_unless_insecure(capsys):
    from feeder.cli import add_serve_arguments, serve_config

    assert feeder_main(["serve", "ns.t", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "without TLS" in err and "--insecure" in err
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    config = serve_config(parser.parse_args(["ns.t", "--host", "0.0.0.0", "--insecure"]))
    assert config.insecure and config.host == "0.0.0.0"


def test_locality_options_reach_the_feeder_config_and_a_bad_host_is_refused():
    from feeder.cli import add_serve_arguments, serve_config

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    config = serve_config(parser.parse_args(["ns.t", "--locality", "--locality-host", "gpu-7"]))
    assert config.locality and config.locality_host == "gpu-7"
    assert config.node_settings().locality_host == "gpu-7"
    plain = serve_config(parser.parse_args(["ns.t"]))
    assert not plain.locality and plain.locality_host is None
    with pytest.raises(SpecError, match="locality_host"):
        serve_config(parser.parse_args(["ns.t", "--locality-host", "not a host"]))


def test_cache_capacity_takes_bytes_or_a_kubernetes_quantity():
    from feeder.cli import byte_quantity

    assert byte_quantity("750Gi") == 750 * 2**30
    assert byte_quantity("2k") == 2000 and byte_quantity("3M") == 3_000_000
    assert byte_quantity("123") == 123
    for bad in ("", "Gi", "1.5Gi", "10GB", "-1", "1 Gi"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a byte count"):
            byte_quantity(bad)


@pytest.mark.spark
@pytest.mark.slow
def test_icefeed_feeder_refresh_moves_a_running_feeder_to_the_appended_snapshot(
    catalog, tmp_path, capsys
):
    """``icefeed feeder refresh ENDPOINT`` against a real ``python -m feeder serve``
    process, after a pyiceberg append to the catalog both use."""
    import time

    from tests.feeder.tables import sample_arrow

    table = make_table(catalog, "test.sub", files=2, rows_per_file=1000, row_group_rows=500)
    proc = _spawn_serve("test.sub", tmp_path, tmp_path / "c")
    try:
        endpoint = _endpoint_of(proc, tmp_path / "endpoint")
        client = FeederClient(endpoint, job="train")
        assert sorted(ids_of(client.stream(0))) == list(range(2000))

        table.append(sample_arrow(1000, start=2000))
        new = table.current_snapshot().snapshot_id
        assert main(["feeder", "refresh", endpoint, "--json"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["changed"] and answer["snapshot_id"] == new
        assert answer["kept_slices"] >= 2 and answer["added_slices"] >= 1
        deadline = time.monotonic() + 120
        while not (status := client.status())["ready"]:
            assert time.monotonic() < deadline, status
            time.sleep(0.1)  # polling the status the new slices' caching changes, bounded
        assert status["snapshot_id"] == new and status["rows"] == 3000
        assert sorted(ids_of(client.stream(1))) == list(range(3000))
        assert main(["feeder", "refresh", endpoint]) == 0
        assert f"already serves snapshot {new}" in capsys.readouterr().out
    finally:
        proc.terminate()
        proc.communicate(timeout=120)
