"""Simulated consumers against one coordinator: ``python -m tests.bench.coordinator_load``.

One load process runs many simulated consumers over a few threads and Flight
clients (1,000 OS threads or processes on 2 cores would measure the scheduler,
not the coordinator). Each simulated consumer keeps its own state and, per
epoch, asks for its static plan (``get_flight_info``, rank ``i`` of the world),
then leases dynamic units (``lease`` → ``heartbeat`` → ``done``) until the
coordinator answers ``epoch_done``; it reads no data from the nodes. Each names this
machine's host with its leases, as a ``FeederClient`` does (locality). A thread
owns a fixed share of the consumers and gives each one request in turn; a
consumer told to retry later (``retry_after``, the end of an epoch) is passed
over until then, as the real client's back-off would.

Protocol with the parent (``tests/bench/test_bench_coordinator.py``): a spec
line on stdin; ``ready`` on stdout once connected; the parent's ``go`` line on
stdin starts the clock; one JSON line of results on stdout at the end.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow.flight as flight

from feeder.protocol.auth import call_options, connect
from feeder.protocol.hosts import local_host
from feeder.protocol.messages import LeaseRequest, StaticRequest
from feeder.protocol.mix import MixParams

#: the host every simulated consumer names (this machine's, as the data nodes report)
HOST = local_host()

STATIC_JOB, DYNAMIC_JOB = "static", "dynamic"


@dataclass
class Consumer:
    """One simulated consumer: where it is in its epochs and its held lease."""

    index: int
    epoch: int = 0
    step: str = "plan"  # plan → lease → heartbeat → done → lease ... → (next epoch) plan
    lease: str | None = None
    rows: int = 0
    retry_at: float = 0.0


@dataclass
class Log:
    """What one thread saw: (action, start, seconds) per request, and its errors."""

    calls: list[tuple[str, float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rows_done: dict[int, int] = field(default_factory=dict)  # epoch → rows acknowledged


class Load:
    """The consumers of one load process and the Flight clients they share."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.mix = MixParams(block_rows=spec["block_rows"], window_rows=spec["window_rows"])
        self.clients = [connect(spec["endpoint"]) for _ in range(spec["clients"])]
        self.options = {
            job: call_options(None, job, timeout=60.0) for job in (STATIC_JOB, DYNAMIC_JOB)
        }
        self.session: str | None = None

    def _act(self, client: flight.FlightClient, name: str, body: bytes) -> dict[str, Any]:
        (result,) = client.do_action(flight.Action(name, body), self.options[DYNAMIC_JOB])
        answer: dict[str, Any] = json.loads(result.body.to_pybytes())
        return answer

    def step(self, client: flight.FlightClient, c: Consumer, log: Log) -> None:
        """Send consumer ``c``'s next request and move it on; log the call's latency."""
        spec, action = self.spec, c.step
        start = time.monotonic()
        if action == "plan":
            request = StaticRequest(
                job=STATIC_JOB,
                epoch=c.epoch,
                seed=1,
                mix=self.mix,
                rank=c.index,
                world_size=spec["world_size"],
            )
            descriptor = flight.FlightDescriptor.for_command(request.to_command())
            client.get_flight_info(descriptor, self.options[STATIC_JOB])
            c.step = "lease"
        elif action == "lease":
            body = LeaseRequest(
                job=DYNAMIC_JOB,
                epoch=c.epoch,
                seed=1,
                mix=self.mix,
                consumer=f"c{c.index}",
                host=HOST,  # as a FeederClient does: the lease path with locality's work
            ).to_body()
            answer = self._act(client, "lease", body)
            if answer.get("unit") is not None:
                c.lease, c.step = answer["lease"], "heartbeat"
                c.rows = answer["unit"]["stop"] - answer["unit"]["start"]
                self.session = answer["session"]
            elif answer.get("epoch_done"):
                c.epoch, c.step = c.epoch + 1, "plan"
            else:
                c.retry_at = time.monotonic() + float(answer["retry_after"])
        else:  # heartbeat or done of the held lease
            body: dict[str, Any] = {
                "job": DYNAMIC_JOB,
                "epoch": c.epoch,
                "consumer": f"c{c.index}",
                "session": self.session,
            }
            if action == "heartbeat":
                body["progress"] = {c.lease: c.rows}
            else:
                body["lease"] = c.lease
            answer = self._act(client, action, json.dumps(body).encode())
            if action == "heartbeat" and answer.get("lost"):
                log.errors.append(f"c{c.index}: heartbeat lost {answer['lost']}")
            if action == "done" and not answer.get("acknowledged"):
                log.errors.append(f"c{c.index}: done not acknowledged: {answer}")
            elif action == "done":
                log.rows_done[c.epoch] = log.rows_done.get(c.epoch, 0) + c.rows
            c.step = "done" if action == "heartbeat" else "lease"
        log.calls.append((action, start, time.monotonic() - start))

    def run_thread(self, consumers: list[Consumer], client: flight.FlightClient, log: Log) -> None:
        """Give each unfinished consumer one request in turn until all ran every epoch."""
        epochs = self.spec["epochs"]
        try:
            while True:
                live = [c for c in consumers if c.epoch < epochs]
                if not live:
                    return
                now = time.monotonic()
                due = [c for c in live if c.retry_at <= now]
                if not due:  # every consumer of this thread backs off: the client's wait
                    time.sleep(min(c.retry_at for c in live) - now)
                    continue
                for c in due:
                    self.step(client, c, log)
        except Exception as exc:  # reported to the parent, which fails the bench
            log.errors.append(f"{type(exc).__name__}: {exc}")


def main() -> None:
    """Run the spec's consumers; print ``ready``, wait for ``go``, print the results."""
    spec = json.loads(sys.stdin.readline())
    load = Load(spec)
    consumers = [Consumer(i) for i in range(spec["first"], spec["first"] + spec["consumers"])]
    threads, epochs = spec["threads"], spec["epochs"]
    logs = [Log() for _ in range(threads)]
    workers = [
        threading.Thread(
            target=load.run_thread,
            args=(consumers[t::threads], load.clients[t % len(load.clients)], logs[t]),
            name=f"load-{t}",
        )
        for t in range(threads)
    ]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    end = time.monotonic()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out = {
        "start": start,
        "end": end,
        "cpu_seconds": cpu,
        "calls": [call for log in logs for call in log.calls],
        "errors": [e for log in logs for e in log.errors],
        "rows_done": {e: sum(log.rows_done.get(e, 0) for log in logs) for e in range(epochs)},
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
