"""A FAKE Kubernetes API server (in-process, 127.0.0.1) for the sparkapps client tests.

No real API server or Spark operator can run here, so this FAKE implements the
few REST endpoints icefeed calls, strictly:

- ``POST/GET/PUT/DELETE /apis/sparkoperator.k8s.io/v1beta2/namespaces/{ns}/{plural}[/{name}]``
  and ``GET /apis/sparkoperator.k8s.io/v1beta2[/namespaces/{ns}]/{plural}`` (lists, with
  an equality ``labelSelector``) for ``sparkapplications`` and
  ``scheduledsparkapplications``. A POST body must carry the matching apiVersion, kind,
  metadata.name and namespace; a taken name answers 409 AlreadyExists, an unknown one
  404; a PUT must carry the current ``resourceVersion`` (else 409 Conflict).
  ``dryRun=All`` checks everything and stores nothing; ``fieldValidation=Strict``
  refuses fields the installed CRD's schema does not declare (400), as the real
  server does.
- ``GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}``: the CRDs
  "installed" with :meth:`FakeKubeApiServer.install_crds` (else 404; 403 with
  ``crd_reads_forbidden``, as for an account RBAC does not let read them).
- ``GET /api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.kind=K,involvedObject.name=N``.
- ``GET /api/v1/namespaces/{ns}/pods/{pod}/log?container=spark-kubernetes-driver``
  serves the driver log once the fake operator has "started" the driver; with
  ``follow=true`` it streams a :class:`LogPipe` (chunked) until the test closes it.

It plays the operator's part: each GET of a SparkApplication advances it one
step along a script of ``(state, errorMessage)`` (default SUBMITTED → RUNNING →
COMPLETED) and records an event for each new state (and the driver pod's
``Started``); an update that changes the spec starts the script again (the
operator re-runs it). Every request is recorded, and anything it does not
understand is recorded in ``unexpected`` and answered 404, so tests can assert the
client sent exactly what the real API expects.
"""

from __future__ import annotations

import itertools
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
KINDS = {
    "sparkapplications": "SparkApplication",
    "scheduledsparkapplications": "ScheduledSparkApplication",
}
DRIVER_CONTAINER = "spark-kubernetes-driver"
DEFAULT_SCRIPT = (("SUBMITTED", ""), ("RUNNING", ""), ("COMPLETED", ""))
#: the reason the operator records for each state (its event recorder)
STATE_REASONS = {
    "SUBMITTED": ("Normal", "SparkApplicationSubmitted"),
    "RUNNING": ("Normal", "SparkDriverRunning"),
    "COMPLETED": ("Normal", "SparkApplicationCompleted"),
    "FAILED": ("Warning", "SparkApplicationFailed"),
    "SUBMISSION_FAILED": ("Warning", "SparkApplicationSubmissionFailed"),
}
JSON = "application/json"


@dataclass
class Request:
    """One request the FAKE received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any = None


@dataclass
class _App:
    obj: dict[str, Any]
    script: list[tuple[str, str]]
    step: int = -1  # -1: created, no status yet (the operator has not seen it)
    lingering: int = 0  # GETs still answered after a DELETE (finalizers at work)


class LogPipe:
    """A driver log written while a client follows it; :meth:`close` ends the container."""

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._closed = False
        self._changed = threading.Condition()
        self.followers = 0  # streams opened so far

    def write(self, text: str) -> None:
        """Append ``text`` to the log."""
        with self._changed:
            self._pieces.append(text)
            self._changed.notify_all()

    def close(self) -> None:
        """The container ended: every follower's stream ends after what was written."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def stream(self) -> Iterator[str]:
        """Yield the pieces as they are written, until closed."""
        sent = 0
        while True:
            with self._changed:
                self._changed.wait_for(self._has_news(sent), 30)
                pieces, closed = self._pieces[sent:], self._closed
            sent += len(pieces)
            yield from pieces
            if closed and not pieces:
                return

    def _has_news(self, sent: int) -> Callable[[], bool]:
        return lambda: self._closed or len(self._pieces) > sent


def strict_unknown_fields(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Return the dotted paths in ``value`` that ``schema`` does not declare (as the server)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is None:
            extra = schema.get("additionalProperties")
            if not isinstance(extra, Mapping):
                return []
            return [
                u for k, v in value.items() for u in strict_unknown_fields(v, extra, f"{path}.{k}")
            ]
        out = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key not in properties:
                out.append(where)
            else:
                out += strict_unknown_fields(item, properties[key], where)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [
            u for i, v in enumerate(value) for u in strict_unknown_fields(v, schema["items"], path)
        ]
    return []


@dataclass
class FakeKubeApiServer:
    """The FAKE server's state; use as a context manager to run it on a free port."""

    scripts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    driver_logs: dict[str, str] = field(default_factory=dict)
    log_pipes: dict[str, LogPipe] = field(default_factory=dict)
    log_waiting: dict[str, int] = field(default_factory=dict)
    linger_after_delete: int = 0
    on_follow: Callable[[], object] | None = None  # called as a client starts following a log
    crds: dict[str, dict[str, Any]] = field(default_factory=dict)
    crd_reads_forbidden: bool = False  # the caller may not GET CRDs (RBAC); the server uses them
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    objects: dict[tuple[str, str, str], _App] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _versions: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """``http://127.0.0.1:PORT`` for ``kubernetes.client.Configuration(host=...)``."""
        assert self._server is not None, "the FAKE server is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def writes(self) -> list[Request]:
        """The requests that were not reads."""
        return [r for r in self.requests if r.method != "GET"]

    def script(self, name: str, *steps: tuple[str, str]) -> None:
        """Play ``steps`` (state, errorMessage) for application ``name``."""
        self.scripts[name] = list(steps)

    def install_crds(self, folder: Path) -> None:
        """Serve the CRD files in ``folder`` as the cluster's installed CRDs."""
        for file in sorted(folder.glob("*.yaml")):
            document = yaml.safe_load(file.read_text(encoding="utf-8"))
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                self.crds[document["metadata"]["name"]] = document

    def log_pipe(self, app: str) -> LogPipe:
        """Return the pipe that ``follow=true`` on ``app``'s driver log streams."""
        return self.log_pipes.setdefault(app, LogPipe())

    def __enter__(self) -> FakeKubeApiServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # silence stderr
                return

            def _handle(self) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                request = Request(
                    self.command, parsed.path, urllib.parse.parse_qs(parsed.query), body
                )
                with fake.lock:
                    fake.requests.append(request)
                    code, payload, content_type = fake.dispatch(request)
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                if isinstance(payload, LogPipe):
                    self._stream(payload)
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, pipe: LogPipe) -> None:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                for piece in pipe.stream():
                    data = piece.encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.close_connection = True

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        for pipe in self.log_pipes.values():
            pipe.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # --- the fake API ------------------------------------------------------------

    @staticmethod
    def _status(code: int, reason: str, message: str) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure" if code >= 400 else "Success",
            "message": message,
            "reason": reason,
            "code": code,
        }

    def _error(self, code: int, reason: str, message: str) -> tuple[int, Any, str]:
        return code, self._status(code, reason, message), JSON

    def _reject(self, request: Request, why: str) -> tuple[int, Any, str]:
        self.unexpected.append(f"{request.method} {request.path}: {why}")
        return self._error(404, "NotFound", why)

    def dispatch(self, request: Request) -> tuple[int, Any, str]:
        parts = request.path.strip("/").split("/")
        if parts[:3] == ["apis", GROUP, VERSION] and len(parts) == 4 and request.method == "GET":
            return self._list(request, None, parts[3])
        if parts[:3] == ["apis", GROUP, VERSION] and len(parts) >= 6 and parts[3] == "namespaces":
            return self._custom(request, parts[4], parts[5], parts[6] if len(parts) > 6 else None)
        crds = ["apis", "apiextensions.k8s.io", "v1", "customresourcedefinitions"]
        if parts[:4] == crds and len(parts) == 5 and request.method == "GET":
            crd = self.crds.get(parts[4])
            if self.crd_reads_forbidden:
                return self._error(403, "Forbidden", "cannot get customresourcedefinitions")
            if crd is None:
                return self._error(404, "NotFound", f'crd "{parts[4]}" not found')
            return 200, crd, JSON
        if parts[:3] == ["api", "v1", "namespaces"] and request.method == "GET":
            if len(parts) == 5 and parts[4] == "events":
                return self._events(request, parts[3])
            if len(parts) == 7 and parts[4] == "pods" and parts[6] == "log":
                return self._log(request, parts[3], parts[5])
        return self._reject(request, "not an endpoint the FAKE knows")

    def _list(self, request: Request, namespace: str | None, plural: str) -> tuple[int, Any, str]:
        if plural not in KINDS:
            return self._reject(request, f"unknown plural {plural!r}")
        wanted: dict[str, str] = {}
        for term in ",".join(request.query.get("labelSelector", [])).split(","):
            key, sep, value = term.partition("=")
            if term and (not sep or "!" in key):
                return self._reject(request, f"label selector term {term!r}")
            if term:
                wanted[key] = value
        items = [
            app.obj
            for (ns, kind_plural, _), app in self.objects.items()
            if kind_plural == plural
            and namespace in (None, ns)
            and all(app.obj["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        kind = KINDS[plural]
        return (
            200,
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": f"{kind}List", "items": items},
            JSON,
        )

    def _refused(self, request: Request, plural: str) -> tuple[int, Any, str] | None:
        """Check a POST/PUT body: kind, apiVersion, the query, strict fields."""
        body = request.body or {}
        if body.get("apiVersion") != f"{GROUP}/{VERSION}" or body.get("kind") != KINDS[plural]:
            return self._error(400, "BadRequest", "apiVersion/kind mismatch")
        dry_run = request.query.get("dryRun")
        if dry_run not in (None, ["All"]):
            return self._error(400, "BadRequest", f"invalid dryRun {dry_run}")
        validation = request.query.get("fieldValidation", ["Warn"])[0]
        crd = self.crds.get(f"{plural}.{GROUP}")
        if validation == "Strict" and crd is not None:
            (version,) = [v for v in crd["spec"]["versions"] if v["name"] == VERSION]
            unknown = strict_unknown_fields(body, version["schema"]["openAPIV3Schema"])
            if unknown:
                fields = ", ".join(f'unknown field "{u}"' for u in unknown)
                return self._error(400, "BadRequest", f"strict decoding error: {fields}")
        return None

    def _custom(
        self, request: Request, namespace: str, plural: str, name: str | None
    ) -> tuple[int, Any, str]:
        if plural not in KINDS:
            return self._reject(request, f"unknown plural {plural!r}")
        dry_run = "dryRun" in request.query
        if name is None and request.method == "GET":
            return self._list(request, namespace, plural)
        if name is None and request.method == "POST":
            refused = self._refused(request, plural)
            if refused:
                return refused
            meta = request.body.get("metadata") or {}
            if meta.get("namespace", namespace) != namespace or not meta.get("name"):
                return self._error(400, "BadRequest", "metadata mismatch")
            key = (namespace, plural, meta["name"])
            if key in self.objects:
                message = f'{plural}.{GROUP} "{meta["name"]}" already exists'
                return self._error(409, "AlreadyExists", message)
            obj = json.loads(json.dumps(request.body))
            obj["metadata"].update(
                namespace=namespace,
                uid=f"uid-{len(self.requests)}",
                resourceVersion=str(next(self._versions)),
            )
            if not dry_run:
                script = self.scripts.get(meta["name"], list(DEFAULT_SCRIPT))
                self.objects[key] = _App(obj=obj, script=script)
            return 201, obj, JSON
        if name is None:
            return self._reject(request, f"{request.method} on a collection")
        key = (namespace, plural, name)
        app = self.objects.get(key)
        if app is None:
            return self._error(404, "NotFound", f'{plural}.{GROUP} "{name}" not found')
        if app.lingering:  # deleted, finalizers still at work
            app.lingering -= 1
            if app.lingering == 0:
                del self.objects[key]
            if request.method != "GET":
                return self._error(409, "Conflict", "the object is being deleted")
            return 200, app.obj, JSON
        if request.method == "GET":
            if plural == "sparkapplications":
                self._advance(app, namespace, name)
            return 200, app.obj, JSON
        if request.method == "PUT":
            return self._update(request, plural, app, name, dry_run)
        if request.method == "DELETE":
            if self.linger_after_delete:
                app.lingering = self.linger_after_delete
                app.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            else:
                del self.objects[key]
            return 200, self._status(200, "", "deleted"), JSON
        return self._reject(request, f"method {request.method}")

    def _update(
        self, request: Request, plural: str, app: _App, name: str, dry_run: bool
    ) -> tuple[int, Any, str]:
        refused = self._refused(request, plural)
        if refused:
            return refused
        meta = request.body.get("metadata") or {}
        if meta.get("name") != name:
            return self._error(400, "BadRequest", "the name in the body differs from the URL")
        current = app.obj["metadata"]["resourceVersion"]
        if meta.get("resourceVersion") != current:
            message = (
                "the object has been modified; please apply your changes to the latest version"
            )
            return self._error(409, "Conflict", message)
        obj = json.loads(json.dumps(request.body))
        obj["metadata"].update(
            uid=app.obj["metadata"]["uid"], resourceVersion=str(next(self._versions))
        )
        if "status" in app.obj:
            obj["status"] = app.obj["status"]
        if not dry_run:
            if obj.get("spec") != app.obj.get("spec"):
                app.step = -1  # the operator re-runs an application whose spec changed
                obj.pop("status", None)
            app.obj = obj
        return 200, obj, JSON

    def _advance(self, app: _App, namespace: str, name: str) -> None:
        before = app.obj.get("status", {}).get("applicationState", {}).get("state")
        app.step = min(app.step + 1, len(app.script) - 1)
        state, error = app.script[app.step]
        app.obj["status"] = self._app_status(name, state, error)
        if state == before:
            return
        kind, reason = STATE_REASONS.get(state, ("Normal", f"SparkApplication{state.title()}"))
        message = f"SparkApplication {name} is {state}" + (f": {error}" if error else "")
        self._record(namespace, "SparkApplication", name, kind, reason, message)
        if before in (None, "", "SUBMITTED") and "driverInfo" in app.obj["status"]:
            pod = app.obj["status"]["driverInfo"]["podName"]
            self._record(namespace, "Pod", pod, "Normal", "Started", "Started container")

    def _record(
        self, namespace: str, kind: str, name: str, type_: str, reason: str, message: str
    ) -> None:
        stamp = f"2026-01-01T00:00:{len(self.events):02d}Z"
        self.events.append(
            {
                "metadata": {"namespace": namespace, "name": f"{name}.{len(self.events)}"},
                "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
                "type": type_,
                "reason": reason,
                "message": message,
                "count": 1,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
            }
        )

    def _events(self, request: Request, namespace: str) -> tuple[int, Any, str]:
        wanted: dict[str, str] = {}
        for term in ",".join(request.query.get("fieldSelector", [])).split(","):
            key, sep, value = term.partition("=")
            if key not in ("involvedObject.kind", "involvedObject.name") or not sep:
                return self._reject(request, f"field selector term {term!r}")
            wanted[key.split(".")[1]] = value
        items = [
            e
            for e in self.events
            if e["metadata"]["namespace"] == namespace
            and all(e["involvedObject"][k] == v for k, v in wanted.items())
        ]
        return 200, {"apiVersion": "v1", "kind": "EventList", "items": items}, JSON

    @staticmethod
    def _app_status(name: str, state: str, error: str) -> dict[str, Any]:
        status: dict[str, Any] = {"applicationState": {"state": state}}
        if error:
            status["applicationState"]["errorMessage"] = error
        if state not in ("", "SUBMITTED"):
            status["driverInfo"] = {"podName": f"{name}-driver"}
            status["sparkApplicationId"] = f"spark-{name}"
            # Executors finish (or fail) before the app's own state says so: a
            # client must never judge the application from these.
            status["executorState"] = {f"{name}-exec-1": "FAILED" if state == "RUNNING" else state}
        return status

    def _log(self, request: Request, namespace: str, pod: str) -> tuple[int, Any, str]:
        if request.query.get("container") != [DRIVER_CONTAINER]:
            return self._reject(request, f"log without container={DRIVER_CONTAINER}")
        for (ns, plural, name), app in self.objects.items():
            started = app.obj.get("status", {}).get("driverInfo", {}).get("podName")
            if ns == namespace and plural == "sparkapplications" and started == pod:
                if self.log_waiting.get(name):
                    self.log_waiting[name] -= 1
                    message = (
                        f'container "{DRIVER_CONTAINER}" in pod "{pod}" is waiting to start: '
                        "ContainerCreating"
                    )
                    return self._error(400, "BadRequest", message)
                if request.query.get("follow") == ["true"] and name in self.log_pipes:
                    self.log_pipes[name].followers += 1
                    if self.on_follow is not None:
                        self.on_follow()
                    return 200, self.log_pipes[name], "text/plain"
                text = self.driver_logs.get(name, f"log of {pod}\n")
                tail = request.query.get("tailLines")
                if tail:
                    text = "".join(text.splitlines(keepends=True)[-int(tail[0]) :])
                return 200, text.encode(), "text/plain"
        return self._error(404, "NotFound", f'pods "{pod}" not found')
