"""A local stand-in for BigQuery's load-job API (offline): multipart job uploads and job reads.

It does what the real service does with a load job that matters to us: it refuses a job id that
already ran (409 "duplicate"), checks every newline-delimited JSON row against the schema of the
job (field names, REQUIRED fields, value types: INT64, FLOAT64, STRING, TIMESTAMP, JSON) and
appends the rows to the table, creating it on the first load (CREATE_IF_NEEDED) and adding new
nullable fields when the job allows it (ALLOW_FIELD_ADDITION).
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from .receivers import LocalServer

_UPLOAD = re.compile(r"^/upload/bigquery/v2/projects/([^/]+)/jobs\?uploadType=multipart")
_JOB = re.compile(r"^/bigquery/v2/projects/([^/]+)/jobs/([^/?]+)")


def _check_value(name: str, kind: str, value: Any) -> str | None:
    if value is None:
        return None
    ok = {
        "INT64": isinstance(value, int) and not isinstance(value, bool),
        "FLOAT64": isinstance(value, int | float) and not isinstance(value, bool),
        "STRING": isinstance(value, str),
        "JSON": isinstance(value, dict | list),
    }.get(kind)
    if kind == "TIMESTAMP":
        try:
            ok = isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
        except ValueError:
            ok = False
    return None if ok else f"{name}: {value!r} is not a valid {kind}"


class FakeBigQuery(LocalServer):
    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = {}  # "project.dataset.table" -> schema, rows
        self.jobs: dict[str, dict[str, Any]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                m = _UPLOAD.match(self.path)
                if not m:
                    return self._send(404, {"error": {"code": 404, "message": self.path}})
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                msg = email.message_from_bytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw,
                    policy=email.policy.HTTP,
                )
                meta_part, data_part = list(msg.iter_parts())
                job = json.loads(meta_part.get_content())
                data = data_part.get_payload(decode=True).decode()
                code, doc = fake.load(m.group(1), job, data)
                self._send(code, doc)

            def do_GET(self) -> None:
                m = _JOB.match(self.path)
                job = fake.jobs.get(m.group(2)) if m else None
                if job is None:
                    return self._send(404, {"error": {"code": 404, "message": "Not found"}})
                self._send(200, job)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.serve(Handler)

    def load(self, project: str, job: dict, data: str) -> tuple[int, dict]:
        job_id = job["jobReference"]["jobId"]
        if job_id in self.jobs:
            return 409, {
                "error": {
                    "code": 409,
                    "message": f"Already Exists: Job {project}:{job_id}",
                    "errors": [{"reason": "duplicate", "message": "Already Exists"}],
                    "status": "ALREADY_EXISTS",
                }
            }
        load = job["configuration"]["load"]
        dest = load["destinationTable"]
        name = f"{dest['projectId']}.{dest['datasetId']}.{dest['tableId']}"
        fields = {f["name"]: f for f in load["schema"]["fields"]}
        errors = []
        if load.get("sourceFormat") != "NEWLINE_DELIMITED_JSON":
            errors.append(f"sourceFormat {load.get('sourceFormat')}")
        table = self.tables.get(name)
        if table is None and load.get("createDisposition") != "CREATE_IF_NEEDED":
            errors.append(f"Not found: Table {name}")
        if table is not None:
            added = set(fields) - set(table["schema"])
            if added and "ALLOW_FIELD_ADDITION" not in load.get("schemaUpdateOptions", []):
                errors.append(f"Provided Schema does not match Table {name}: {sorted(added)}")
            if any(f["mode"] == "REQUIRED" for n, f in fields.items() if n in added):
                errors.append("new fields must be NULLABLE")
        rows = [json.loads(line) for line in data.splitlines() if line.strip()]
        for i, row in enumerate(rows):
            for key in row:
                if key not in fields:
                    errors.append(f"row {i}: no such field: {key}")
            for fname, f in fields.items():
                if f.get("mode") == "REQUIRED" and row.get(fname) is None:
                    errors.append(f"row {i}: missing required field {fname}")
                err = _check_value(fname, f["type"], row.get(fname))
                if err:
                    errors.append(f"row {i}: {err}")
        resource = {
            "kind": "bigquery#job",
            "id": f"{project}:{job_id}",
            "jobReference": job["jobReference"],
            "configuration": job["configuration"],
            "status": {"state": "DONE"},
            "statistics": {"creationTime": "0", "startTime": "0", "endTime": "1"},
        }
        if errors:
            resource["status"]["errorResult"] = {"reason": "invalid", "message": errors[0]}
            resource["status"]["errors"] = [{"reason": "invalid", "message": e} for e in errors]
        else:
            if table is None:
                table = self.tables[name] = {"schema": {}, "rows": []}
            table["schema"].update(fields)
            table["rows"].extend(rows)
            resource["statistics"]["load"] = {"outputRows": str(len(rows))}
        self.jobs[job_id] = resource
        return 200, resource
