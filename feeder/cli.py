"""The feeder's command line: ``icefeed feeder serve|status|refresh`` (and ``python -m feeder``).

Registration imports argparse only; the feeder (pyspark, pyiceberg) is imported
when a command runs. ``serve`` builds a :class:`~feeder.coordinator.config.FeederConfig`
from the options given; every default comes from there, never repeated here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from feeder.coordinator.config import FeederConfig
from feeder.coordinator.session import DEFAULT_READY_TIMEOUT
from jobs.errors import CatalogError, FeederError, SpecError
from jobs.exit_codes import exit_code_for

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``feeder`` command and its ``serve`` / ``status`` / ``refresh`` subcommands."""
    parser = subparsers.add_parser("feeder", help="serve an Iceberg table to PyTorch over Flight")
    add_commands(parser)


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve``, ``status`` and ``refresh`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="feeder_command", required=True, metavar="SUBCOMMAND")

    serve = sub.add_parser("serve", help="run a feeder in the foreground until SIGTERM")
    add_serve_arguments(serve)
    serve.set_defaults(func=run_serve)

    _add_client_command(sub, "status", "print a running feeder's status", _status, 10.0)
    _add_client_command(
        sub,
        "refresh",
        "serve the table's current snapshot to each job's next epoch",
        _refresh,
        120.0,
    )


def _add_client_command(sub: Any, name: str, help_text: str, func: Any, timeout: float) -> None:
    """Add a subcommand that calls a running feeder at ENDPOINT."""
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument("endpoint", help="coordinator endpoint, e.g. grpc://host:8815")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument("--job", default="default", help="job name sent with the call")
    parser.add_argument("--timeout", type=float, default=timeout, help="seconds to wait")
    _add_client_tls(parser)
    parser.set_defaults(func=func)


def _add_client_tls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-ca", help="PEM roots to trust for grpc+tls")
    parser.add_argument("--tls-client-cert", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-client-key", help="PEM private key of --tls-client-cert")
    parser.add_argument("--tls-server-name", help="name to check the server certificate against")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser``."""
    parser.add_argument("table", help="Iceberg table identifier, e.g. ns.name")
    parser.add_argument("--catalog", help="catalog name (default: configured or embedded)")
    parser.add_argument("--columns", help="comma-separated projection (default: all)")
    parser.add_argument("--filter", dest="row_filter", help='row filter, e.g. "x > 3"')
    parser.add_argument("--snapshot-id", type=int, help="serve this snapshot (default: current)")
    parser.add_argument("--nodes", type=int, help="data nodes (default: one per task slot)")
    host_help = f"bind address (default: {_default('host')}; 0.0.0.0 on k8s)"
    parser.add_argument("--host", help=host_help)
    port_help = f"coordinator port (default: {_default('port')}: any free)"
    parser.add_argument("--port", type=int, help=port_help)
    parser.add_argument("--cache-dir", help="node cache dir (default: SPARK_LOCAL_DIRS)")
    parser.add_argument(
        "--local-dir",
        help="data nodes serve short-circuit local reads on a Unix socket in this dir, to "
        "consumers that see it (same host or a shared node-local volume; default: off)",
    )
    parser.add_argument(
        "--journal-dir",
        help="where the coordinator journals what a driver restart must not lose "
        "(default: <cache-dir>/icefeed-journal; none without --cache-dir)",
    )
    parser.add_argument(
        "--cache-capacity",
        dest="cache_capacity_bytes",
        type=byte_quantity,
        help="most each node caches: bytes or a quantity like 100Gi, 500M "
        "(default: the free disk under its cache dir)",
    )
    slice_help = f"slice size target, bytes (default: {_default('slice_bytes')})"
    parser.add_argument("--slice-bytes", type=int, help=slice_help)
    parser.add_argument(
        "--no-row-copy",
        action="store_true",
        help="cache no row-major copy of fixed-width columns: ~half the disk, slower shuffle",
    )
    lease_help = f"dynamic-mode lease, seconds (default: {_default('lease_seconds')})"
    parser.add_argument("--lease-seconds", type=float, help=lease_help)
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics here")
    parser.add_argument(
        "--node-metrics-port", type=int, help="each data node serves its own /metrics on this port"
    )
    parser.add_argument("--tls-cert", help="PEM certificate (enables grpc+tls)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--tls-ca", help="PEM roots the session trusts (default: --tls-cert)")
    parser.add_argument(
        "--tls-client-ca", help="require client certificates signed by this CA (mutual TLS)"
    )
    parser.add_argument("--tls-server-name", help="name to check server certificates against")
    parser.add_argument(
        "--advertise-host", help="name data nodes advertise (default: bind host or FQDN)"
    )
    parser.add_argument(
        "--locality",
        action="store_true",
        help="dynamic mode: build MIX windows per host, so consumers lease their own host's "
        "windows first (mixes within what a host holds; default: off)",
    )
    parser.add_argument(
        "--locality-host",
        help="the host the data nodes report for locality (default: $ICEFEED_HOST, else the "
        "hostname; on Kubernetes the chart sets ICEFEED_HOST to the node name)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without TLS (clear text: trusted networks only)",
    )
    parser.add_argument(
        "--follow",
        dest="follow_seconds",
        type=float,
        metavar="SECONDS",
        help="poll the catalog every SECONDS and serve each new snapshot of the table "
        "to each job's next epoch, caching only the data files it added",
    )
    parser.add_argument("--ready-timeout", type=float, default=DEFAULT_READY_TIMEOUT)
    parser.add_argument("--endpoint-file", help="write the endpoint here once ready")


_UNITS = {
    "": 1,
    **{p: 1000**i for i, p in enumerate(("k", "M", "G", "T", "P"), start=1)},
    **{p + "i": 1024**i for i, p in enumerate(("K", "M", "G", "T", "P"), start=1)},
}


def byte_quantity(text: str) -> int:
    """Parse a byte count: an integer or a Kubernetes quantity (``100Gi``, ``500M``, ``2k``).

    Args:
        text: the option's value.

    Returns:
        The number of bytes.

    Raises:
        argparse.ArgumentTypeError: not a whole number of bytes with one of those suffixes.
    """
    value = text.strip()
    digits = value.rstrip("".join({c for unit in _UNITS for c in unit}))
    unit = value[len(digits) :]
    if not digits.isdigit() or unit not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a byte count (an integer, or one with a suffix among "
            f"{', '.join(u for u in _UNITS if u)})"
        )
    return int(digits) * _UNITS[unit]


def _default(setting: str) -> object:
    """The default of a FeederConfig field, for help texts (never repeated here)."""
    return next(f.default for f in dataclasses.fields(FeederConfig) if f.name == setting)


def serve_config(args: argparse.Namespace) -> FeederConfig:
    """Return the FeederConfig the ``serve`` options describe (options not given: defaults).

    Raises:
        SpecError: a bad option value, naming the setting.
    """
    from feeder.protocol.config import TLSConfig

    given: dict[str, Any] = {
        "catalog": args.catalog,
        "columns": [c.strip() for c in args.columns.split(",")] if args.columns else None,
        "row_filter": args.row_filter,
        "snapshot_id": args.snapshot_id,
        "nodes": args.nodes,
        "host": args.host,
        "port": args.port,
        "cache_dir": args.cache_dir,
        "local_dir": args.local_dir,
        "journal_dir": args.journal_dir,
        "cache_capacity_bytes": args.cache_capacity_bytes,
        "slice_bytes": args.slice_bytes,
        "lease_seconds": args.lease_seconds,
        "metrics_port": args.metrics_port,
        "node_metrics_port": args.node_metrics_port,
        "row_copy": False if args.no_row_copy else None,
        "tls": (
            TLSConfig(
                cert_file=args.tls_cert,
                key_file=args.tls_key,
                ca_file=args.tls_ca,
                client_ca_file=args.tls_client_ca,
                server_name=args.tls_server_name,
            )
            if args.tls_cert or args.tls_key
            else None
        ),
        "advertise_host": args.advertise_host,
        "insecure": True if args.insecure else None,
        "follow_seconds": args.follow_seconds,
        "locality": True if args.locality else None,
        "locality_host": args.locality_host,
    }
    return FeederConfig(table=args.table, **{k: v for k, v in given.items() if v is not None})


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; the token comes from ICEFEED_TOKEN(_FILE), never argv."""
    from feeder.coordinator.session import serve

    config = serve_config(args)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping the feeder", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        feeder = serve(config)
        try:
            feeder.wait_ready(args.ready_timeout)
            status = feeder.status()
            print(
                f"feeder serving {status['table']} snapshot {status['snapshot_id']} at "
                f"{feeder.endpoint}: {status['slices']} slices, {status['rows']} rows",
                flush=True,
            )
            if args.endpoint_file:
                tmp = Path(args.endpoint_file + ".tmp")
                tmp.write_text(feeder.endpoint + "\n")
                tmp.replace(args.endpoint_file)
            stop.wait()
        finally:
            feeder.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _client(args: argparse.Namespace) -> Any:
    """The FeederClient a ``status`` / ``refresh`` command calls the feeder with."""
    from feeder.client.client import FeederClient
    from feeder.protocol.config import TLSConfig

    tls = (
        TLSConfig(
            ca_file=args.tls_ca,
            client_cert_file=args.tls_client_cert,
            client_key_file=args.tls_client_key,
            server_name=args.tls_server_name,
        )
        if args.tls_ca
        else None
    )
    return FeederClient(args.endpoint, job=args.job, tls=tls, timeout=args.timeout)


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.status()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    _print_status(status)
    return 0


def _refresh(args: argparse.Namespace) -> int:
    with _client(args) as client:
        answer = client.refresh()
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    elif not answer["changed"]:
        print(f"feeder already serves snapshot {answer['snapshot_id']}")
    else:
        print(
            f"feeder refreshing from snapshot {answer['from_snapshot_id']} to "
            f"{answer['snapshot_id']}: {answer['kept_slices']} slices kept, "
            f"{answer['added_slices']} new slices to cache; each job moves at its next epoch"
        )
    return 0


def _print_status(status: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{status['table']}[/bold] snapshot {status['snapshot_id']} at {status['endpoint']}: "
        f"{'ready' if status['ready'] else 'caching'} — {status['slices_cached']}/"
        f"{status['slices']} slices, {status['rows']} rows, "
        f"{status['bytes_cached']:,} bytes cached, "
        f"{status['storage_bytes_read']:,} bytes read from storage"
    )
    nodes = Table(title="data nodes")
    columns = (
        "node",
        "location",
        "host",
        "alive",
        "slices",
        "cache bytes",
        "rows served",
        "of them local",
    )
    for column in (*columns, "errors"):
        nodes.add_column(column)
    for node in status["nodes"]:
        nodes.add_row(
            node["node_id"],
            node["location"],
            node.get("host") or "-",
            "yes" if node["alive"] else "[red]dead[/red]",
            str(node["slices_cached"]),
            f"{node['cache_bytes']:,}",
            f"{node['rows_served']:,}",
            f"{node.get('rows_served_local', 0):,}",
            str(node["errors"]),
        )
    console.print(nodes)
    if status["jobs"]:
        jobs = Table(title="jobs")
        for column in ("job", "modes", "epochs", "consumers", "leased on host"):
            jobs.add_column(column)
        for name, job in sorted(status["jobs"].items()):
            share = (job.get("locality") or {}).get("local_share")
            local = "-" if share is None else f"{share:.1%}"
            jobs.add_row(
                name, ",".join(job["modes"]), str(job["epochs"]), str(job["consumers"]), local
            )
        console.print(jobs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m feeder serve TABLE ...``, ``status ENDPOINT`` or ``refresh ENDPOINT``;
    returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m feeder", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    add_commands(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (SpecError, CatalogError, FeederError) as exc:
        print(f"feeder: error: {exc}", file=sys.stderr)
        return int(exit_code_for(exc))
