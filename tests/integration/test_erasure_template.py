"""The erasure's facts in code agree with template.yaml (issue 9): the numbers of the stated bound, the
log's prefixes, the marker's TTL attribute, the compactor's narrow grants, the lifecycle, the routes."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from nextpick.adapters.s3_event_log import CHECKPOINT_KEY, LOG_PREFIXES
from nextpick.domain import erasure
from nextpick.settings import Settings
from nextpick_local.standin.aws_resources import Stack, find_template, load_template
from nextpick_local.standin.gateway import routes_of


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_the_bound_is_made_of_the_templates_numbers(template: dict[str, Any]) -> None:
    resources, parameters = template["Resources"], template["Parameters"]
    stream = resources["EventLogShipperFunction"]["Properties"]["Events"]["StateStream"]["Properties"]
    firehose = resources["EventLogStream"]["Properties"]["ExtendedS3DestinationConfiguration"]
    compactor = resources["EventLogCompactionFunction"]["Properties"]
    assert stream["MaximumBatchingWindowInSeconds"] == erasure.SHIPPER_BATCHING_SECONDS
    assert firehose["BufferingHints"]["IntervalInSeconds"] == erasure.FIREHOSE_BUFFER_SECONDS
    assert compactor["Timeout"] == erasure.COMPACTION_TIMEOUT_SECONDS
    assert compactor["Events"]["Compaction"]["Properties"]["Schedule"] == {"Ref": "LogCompactionSchedule"}
    assert parameters["LogCompactionSchedule"]["Default"] == Settings().log_compaction_schedule
    assert erasure.schedule_seconds(parameters["LogCompactionSchedule"]["Default"]) == 6 * 3600
    api_env = resources["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert api_env["LOG_COMPACTION_SCHEDULE"] == {"Ref": "LogCompactionSchedule"}


def test_retention_covers_the_training_window(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    retention = parameters["EventLogRetentionDays"]["Default"]
    assert retention == Settings().event_log_retention_days >= parameters["TrainingWindowDays"]["Default"]
    rules = {
        rule["Id"]: rule
        for rule in template["Resources"]["ModelBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    for prefix in LOG_PREFIXES:
        (rule,) = [r for r in rules.values() if r.get("Prefix") == prefix]
        assert rule["ExpirationInDays"] == {"Ref": "EventLogRetentionDays"}
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1


def test_compaction_reads_exactly_firehoses_prefixes(template: dict[str, Any]) -> None:
    firehose = template["Resources"]["EventLogStream"]["Properties"]["ExtendedS3DestinationConfiguration"]
    assert firehose["Prefix"].startswith(LOG_PREFIXES[0])
    assert firehose["ErrorOutputPrefix"].startswith(LOG_PREFIXES[1])


def test_the_compactor_runs_alone_and_checkpoints_where_its_role_may_write(template: dict[str, Any]) -> None:
    """Its grants are held to tests/integration/iam_allow_list.py (test_least_privilege.py)."""
    properties = template["Resources"]["EventLogCompactionFunction"]["Properties"]
    assert properties["Role"] == {"Fn::GetAtt": ["EventLogCompactionFunctionRole", "Arn"]}
    assert CHECKPOINT_KEY.startswith("runs/compaction/")
    assert properties["ReservedConcurrentExecutions"] == 1
    assert properties["LoggingConfig"]["LogGroup"] == {"Ref": "EventLogCompactionLogGroup"}


def test_the_state_tables_ttl_is_the_markers_attribute(stack: Stack) -> None:
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName=stack.state_table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_the_api_routes_erasure_and_export_to_the_api_function(stack: Stack) -> None:
    routes = {(r.method, r.resource): r for r in routes_of(stack.resources)}
    for route in (("DELETE", "/users/{user_id}"), ("GET", "/users/{user_id}/data")):
        assert routes[route].function == "ApiFunction"


def test_every_makefile_built_function_has_its_build_target(template: dict[str, Any]) -> None:
    """`sam build` runs `make build-<LogicalId>` in the function's CodeUri; a missing target fails the
    build only there (found adding EventLogCompactionFunction)."""
    repo = find_template().parent
    for logical_id, resource in template["Resources"].items():
        if resource.get("Metadata", {}).get("BuildMethod") != "makefile":
            continue
        makefile = (
            repo
            / resource["Properties"].get("CodeUri", resource["Properties"].get("ContentUri"))
            / "Makefile"
        )
        targets = {
            t for line in makefile.read_text().splitlines() if ":" in line for t in line.split(":")[0].split()
        }
        expected = f"build-{logical_id}"
        assert expected in targets or "build-%" in targets, f"{makefile}: no {expected} target"
