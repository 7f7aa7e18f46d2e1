"""A FAKE Kubernetes API server (in-process, 127.0.0.1) for the sparkapps client tests.

No real API server or Spark operator can run here, so this FAKE implements the
few REST endpoints icefeed calls, strictly:

- ``POST/GET/DELETE /apis/sparkoperator.k8s.io/v1beta2/namespaces/{ns}/{plural}[/{name}]``
  for ``sparkapplications`` and ``scheduledsparkapplications``; a POST body must
  carry the matching apiVersion, kind, metadata.name and namespace; a second
  POST of the same name answers 409 AlreadyExists, an unknown name 404.
- ``GET /api/v1/namespaces/{ns}/pods/{pod}/log?container=spark-kubernetes-driver``
  serves the driver log once the fake operator has "started" the driver.

It plays the operator's part: each GET of a SparkApplication advances it one
step along a script of ``(state, errorMessage)`` (default SUBMITTED → RUNNING →
COMPLETED). Every request is recorded, and anything it does not understand is
recorded in ``unexpected`` and answered 404, so tests can assert the client
sent exactly what the real API expects.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
KINDS = {
    "sparkapplications": "SparkApplication",
    "scheduledsparkapplications": "ScheduledSparkApplication",
}
DRIVER_CONTAINER = "spark-kubernetes-driver"
DEFAULT_SCRIPT = (("SUBMITTED", ""), ("RUNNING", ""), ("COMPLETED", ""))


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


@dataclass
class FakeKubeApiServer:
    """The FAKE server's state; use as a context manager to run it on a free port."""

    scripts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    driver_logs: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    objects: dict[tuple[str, str, str], _App] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """``http://127.0.0.1:PORT`` for ``kubernetes.client.Configuration(host=...)``."""
        assert self._server is not None, "the FAKE server is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, name: str, *steps: tuple[str, str]) -> None:
        """Play ``steps`` (state, errorMessage) for application ``name``."""
        self.scripts[name] = list(steps)

    def __enter__(self) -> FakeKubeApiServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
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
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
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

    def _reject(self, request: Request, why: str) -> tuple[int, Any, str]:
        self.unexpected.append(f"{request.method} {request.path}: {why}")
        return 404, self._status(404, "NotFound", why), "application/json"

    def dispatch(self, request: Request) -> tuple[int, Any, str]:
        parts = request.path.strip("/").split("/")
        if parts[:3] == ["apis", GROUP, VERSION] and len(parts) >= 6 and parts[3] == "namespaces":
            return self._custom(request, parts[4], parts[5], parts[6] if len(parts) > 6 else None)
        if (
            parts[:3] == ["api", "v1", "namespaces"]
            and len(parts) == 7
            and parts[4] == "pods"
            and parts[6] == "log"
            and request.method == "GET"
        ):
            return self._log(request, parts[3], parts[5])
        return self._reject(request, "not an endpoint the FAKE knows")

    def _custom(
        self, request: Request, namespace: str, plural: str, name: str | None
    ) -> tuple[int, Any, str]:
        if plural not in KINDS:
            return self._reject(request, f"unknown plural {plural!r}")
        json_type = "application/json"
        if request.method == "POST" and name is None:
            body = request.body or {}
            if body.get("apiVersion") != f"{GROUP}/{VERSION}" or body.get("kind") != KINDS[plural]:
                return 400, self._status(400, "BadRequest", "apiVersion/kind mismatch"), json_type
            meta = body.get("metadata") or {}
            if meta.get("namespace", namespace) != namespace or not meta.get("name"):
                return 400, self._status(400, "BadRequest", "metadata mismatch"), json_type
            key = (namespace, plural, meta["name"])
            if key in self.objects:
                message = f'{plural}.{GROUP} "{meta["name"]}" already exists'
                return 409, self._status(409, "AlreadyExists", message), json_type
            obj = json.loads(json.dumps(body))
            obj["metadata"].update(namespace=namespace, uid=f"uid-{len(self.objects)}")
            script = self.scripts.get(meta["name"], list(DEFAULT_SCRIPT))
            self.objects[key] = _App(obj=obj, script=script)
            return 201, obj, json_type
        if name is None:
            return self._reject(request, f"{request.method} on a collection")
        app = self.objects.get((namespace, plural, name))
        if app is None:
            message = f'{plural}.{GROUP} "{name}" not found'
            return 404, self._status(404, "NotFound", message), json_type
        if request.method == "GET":
            if plural == "sparkapplications":
                app.step = min(app.step + 1, len(app.script) - 1)
                app.obj["status"] = self._app_status(name, *app.script[app.step])
            return 200, app.obj, json_type
        if request.method == "DELETE":
            del self.objects[(namespace, plural, name)]
            return 200, self._status(200, "", "deleted"), json_type
        return self._reject(request, f"method {request.method}")

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
                text = self.driver_logs.get(name, f"log of {pod}\n")
                tail = request.query.get("tailLines")
                if tail:
                    text = "".join(text.splitlines(keepends=True)[-int(tail[0]) :])
                return 200, text.encode(), "text/plain"
        return 404, self._status(404, "NotFound", f'pods "{pod}" not found'), "application/json"
