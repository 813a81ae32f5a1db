"""A local stand-in for the Kubeflow Pipelines v2beta1 REST API, for tests of run submission.

It serves the paths the ``kfp`` client (CLI and SDK, 2.x) calls to submit a run from a
pipeline package, over HTTP, and applies the server's rules for runtime parameters against
the submitted pipeline spec's ``root.inputDefinitions``:

- each value's JSON type must match the declared ``parameterType`` (STRING: a string;
  NUMBER_INTEGER: an integral number; NUMBER_DOUBLE: a number; BOOLEAN: a bool; LIST: a list;
  STRUCT: a mapping), the rule released KFP 2.x servers apply ("requires type STRING" for a
  list sent to a STRING parameter);
- a parameter without ``defaultValue`` that is not ``isOptional`` must be given;
- a parameter the pipeline does not declare is refused.

What it does not model: it accepts the run and stops there (no Argo workflow, no driver, no
pods; ``state`` stays PENDING); the newest drivers also turn a non-string value into text for
a STRING input at task start, which this stand-in, like the released servers, refuses at
submission; no auth, multi-user profiles, pipeline upload or recurring runs. A refused request
answers like the real server's gRPC gateway: HTTP 400 with ``{"code": 3, "message": ...}``.

    with KfpApiServer() as api:
        os.environ["KF_PIPELINES_ENDPOINT"] = api.url
        # kfp run create -e r1ov -f pipelines/r1ov.yaml key=value ...
        api.runs  # what was accepted, with runtime_config and service_account
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1"
INVALID_ARGUMENT = 3  # gRPC status code the gateway sends with HTTP 400
NOT_FOUND = 5


class Refused(Exception):
    def __init__(self, message: str, status: int = 400, code: int = INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _matches(kind: str, value: Any) -> bool:
    if kind == "STRING":
        return isinstance(value, str)
    if kind == "BOOLEAN":
        return isinstance(value, bool)
    if kind == "NUMBER_INTEGER":
        return isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
    if kind == "NUMBER_DOUBLE":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "LIST":
        return isinstance(value, list)
    if kind == "STRUCT":
        return isinstance(value, dict)
    raise Refused(f"unsupported parameter type {kind}")


def _json_type(value: Any) -> str:
    return {bool: "bool", int: "number", float: "number", str: "string", list: "list", dict: "struct"}.get(
        type(value), type(value).__name__
    )


def check_parameters(pipeline_spec: dict[str, Any], parameters: dict[str, Any]) -> None:
    """Raise Refused unless ``parameters`` satisfy the pipeline's root input definitions."""
    spec = pipeline_spec.get("pipeline_spec", pipeline_spec)  # with platform config the client wraps it
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    for name, value in parameters.items():
        if name not in declared:
            raise Refused(f"unknown input parameter {name!r}: the pipeline declares {sorted(declared)}")
        kind = declared[name]["parameterType"]
        if not _matches(kind, value):
            raise Refused(f"input parameter {name} requires type {kind}, but got {_json_type(value)} {value!r}")
    missing = [
        name
        for name, definition in declared.items()
        if name not in parameters and "defaultValue" not in definition and not definition.get("isOptional")
    ]
    if missing:
        raise Refused(f"missing required input parameters: {sorted(missing)}")


class KfpApiServer:
    """Experiments and runs in memory; ``runs`` keeps every accepted run body as sent."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.refusals: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> KfpApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the API ---------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]) -> dict[str, Any]:
        if not path.startswith(PREFIX):
            raise Refused(f"no route for {path}", status=404, code=NOT_FOUND)
        path = path[len(PREFIX) :]
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        with self._lock:
            if (method, path) == ("GET", "/healthz"):
                return {"multi_user": False}
            if (method, path) == ("GET", "/experiments"):
                return {"experiments": self._list_experiments(query)}
            if (method, path) == ("POST", "/experiments"):
                if not body.get("display_name"):
                    raise Refused("experiment display_name is required")
                experiment = {
                    **body,
                    "experiment_id": str(uuid.uuid4()),
                    "created_at": now,
                    "storage_state": "AVAILABLE",
                }
                self.experiments[experiment["experiment_id"]] = experiment
                return experiment
            if (method, path) == ("POST", "/runs"):
                return self._create_run(body, now)
            if method == "GET" and path.startswith("/runs/"):
                run_id = path.removeprefix("/runs/")
                if run_id not in self.runs:
                    raise Refused(f"run {run_id} not found", status=404, code=NOT_FOUND)
                return self.runs[run_id]
        raise Refused(f"no route for {method} {PREFIX}{path}", status=404, code=NOT_FOUND)

    def _list_experiments(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        wanted = None
        if "filter" in query:  # the client filters by name: {"predicates": [{"key": "name", "string_value": ...}]}
            for predicate in json.loads(query["filter"][0]).get("predicates", []):
                if predicate.get("key") in ("name", "display_name"):
                    wanted = predicate.get("string_value", predicate.get("stringValue"))
        return [e for e in self.experiments.values() if wanted is None or e["display_name"] == wanted]

    def _create_run(self, body: dict[str, Any], now: str) -> dict[str, Any]:
        if body.get("experiment_id") and body["experiment_id"] not in self.experiments:
            raise Refused(f"experiment {body['experiment_id']} not found", status=404, code=NOT_FOUND)
        spec = body.get("pipeline_spec")
        if not spec:
            raise Refused("a run needs pipeline_spec (this stand-in holds no uploaded pipelines)")
        check_parameters(spec, (body.get("runtime_config") or {}).get("parameters") or {})
        run = {**body, "run_id": str(uuid.uuid4()), "created_at": now, "state": "PENDING", "storage_state": "AVAILABLE"}
        self.runs[run["run_id"]] = run
        return run

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    status, answer = 200, api.route(method, url.path, parse_qs(url.query), body)
                except Refused as refused:
                    api.refusals.append(str(refused))
                    status = refused.status
                    answer = {"error": str(refused), "code": refused.code, "message": str(refused), "details": []}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
