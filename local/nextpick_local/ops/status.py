"""What is live: the model version and its metrics, the published versions, the last retrain decision,
and how many items each table holds. Works against the local stack and against real AWS alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nextpick.adapters.model_registry import current_pointer, list_versions, read_manifest


@dataclass(frozen=True)
class Names:
    """The physical names the commands need (from the local state file, stack outputs or flags)."""

    model_bucket: str
    items_table: str
    state_table: str
    event_bus: str
    model_prefix: str = "models/"
    runs_prefix: str = "runs/"


def _count(dynamodb: Any, table: str) -> int:
    total = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, Select="COUNT"):
        total += int(page["Count"])
    return total


def last_run(s3: Any, bucket: str, prefix: str) -> dict[str, Any] | None:
    """The newest `runs/<timestamp>.json` (keys sort by time), without its traceback. Only the prefix's
    own keys: `runs/compaction/` holds the log compaction's checkpoint, not a retrain's record."""
    newest = None
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    for page in pages:
        for entry in page.get("Contents", []):
            if newest is None or entry["Key"] > newest:
                newest = entry["Key"]
    if newest is None:
        return None
    run: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=newest)["Body"].read())
    run.pop("error", None)
    return run


def status(s3: Any, dynamodb: Any, names: Names) -> dict[str, Any]:
    pointer = current_pointer(s3, names.model_bucket, names.model_prefix)
    live: dict[str, Any] | None = None
    if pointer is not None:
        manifest = read_manifest(s3, names.model_bucket, names.model_prefix, pointer["version"])
        live = {
            "version": pointer["version"],
            "published_at": pointer.get("published_at"),
            "num_items": manifest.get("num_items"),
            "metrics": manifest.get("metrics", {}),
            "training_window": manifest.get("training_window", {}),
        }
    run = last_run(s3, names.model_bucket, names.runs_prefix)
    return {
        "live_model": live,
        "versions": len(list_versions(s3, names.model_bucket, names.model_prefix)),
        "last_retrain": (
            {
                key: run.get(key)
                for key in (
                    "status",
                    "reason",
                    "started_at",
                    "published_version",
                    "candidate_metrics",
                    "engine",
                )
            }
            if run
            else None
        ),
        "tables": {
            names.items_table: _count(dynamodb, names.items_table),
            names.state_table: _count(dynamodb, names.state_table),
        },
    }


def describe_status(report: dict[str, Any]) -> str:
    """The status as a few human lines (the CLI's output)."""
    live = report["live_model"]
    lines = []
    if live is None:
        lines.append("live model: none published yet")
    else:
        metrics = ", ".join(f"{k}={v}" for k, v in live["metrics"].items())
        lines.append(
            f"live model: {live['version']} (published {live['published_at']}, {live['num_items']} items)"
        )
        lines.append(f"  metrics: {metrics or '-'}")
    lines.append(f"versions published: {report['versions']}")
    run = report["last_retrain"]
    if run:
        lines.append(f"last retrain: {run['status']} at {run['started_at']}: {run['reason']}")
    for table, count in report["tables"].items():
        lines.append(f"table {table}: {count} items")
    return "\n".join(lines)
