"""`nextpick compact-log` and `nextpick export-user USER` (issue 9, docs/privacy.md).

* `compact-log` runs `EventLogCompactionFunction` once on the running local stack, as its schedule would
  (`POST /_local/compact-log`), and prints the run's counts. On AWS the same is
  `aws lambda invoke --function-name <EventLogCompactionFunctionName> out.json`.
* `export-user` answers an access request: the API's export (`GET /users/{user_id}/data`) plus every
  line of the S3 event log that names the shopper, in every version of every object (an erased
  shopper's lines may wait in an old version until compaction deletes it). It reads the log through
  the local stack's stand-in, or with `--aws` through the usual credentials.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nextpick.adapters.s3_event_log import S3EventLog
from nextpick.domain.compaction import LogObject
from nextpick.domain.erasure import user_lines
from nextpick_local.errors import CommandError, UsageError
from nextpick_local.http_client import JsonClient, Unreachable
from nextpick_local.ops.target import local_state
from nextpick_local.ops.target import names as target
from nextpick_training.parquet_log import json_lines_of

EXIT_FAILURE = 1


def _call(api_url: str, credential: str | None, method: str, path: str) -> tuple[int, Any]:
    try:
        return JsonClient(api_url, credential).request(method, path)
    except Unreachable as error:
        raise CommandError(f"{error}; is the stack running (`nextpick serve --demo`)?") from error


def compact_log(args: argparse.Namespace) -> int:
    state = local_state(args.state_file)
    print("compacting the event log (EventLogCompactionFunction, scheduled event) ...", file=sys.stderr)
    code, body = _call(state["api_url"], None, "POST", "/_local/compact-log")
    print(json.dumps(body, indent=2))
    return 0 if code == 200 else EXIT_FAILURE


def log_lines_of(s3: Any, bucket: str, user_id: str) -> list[dict[str, Any]]:
    """Every line naming the shopper in every version of the event log, with where it is."""
    log = S3EventLog(bucket, s3)
    found: list[dict[str, Any]] = []
    for obj in log.list_objects():
        versions = [(obj.version_id, True), *((version, False) for version in obj.older_versions)]
        for version_id, current in versions:
            body = log.read(LogObject(obj.key, version_id, obj.last_modified))
            # A Parquet object (issue 14) is read as the JSON records it holds.
            for line in user_lines(json_lines_of(body or b""), user_id):
                try:
                    record: Any = json.loads(line)
                except ValueError:
                    record = line.decode(errors="replace")
                found.append({"key": obj.key, "version_id": version_id, "current": current, "record": record})
    return found


def export_user(args: argparse.Namespace) -> int:
    if args.aws and not (args.api_url and args.server_key):
        raise UsageError("--aws needs --api-url and --server-key (or the admin key) for the API's export")
    api_url, key = args.api_url, args.server_key
    if not args.aws:
        state = local_state(args.state_file)
        api_url, key = api_url or state["api_url"], key or state["server_key"]
    code, exported = _call(api_url, key, "GET", f"/users/{args.user_id}/data")
    if code != 200:
        raise CommandError(f"GET /users/{args.user_id}/data answered {code}: {exported}")
    names = target(args)  # for the local stack, also points this process's boto3 at its stand-in
    import boto3

    lines = log_lines_of(boto3.client("s3"), names.model_bucket, args.user_id)
    print(json.dumps({"api": exported, "event_log": lines}, indent=2))
    return 0
