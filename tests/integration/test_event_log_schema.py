"""The Parquet event log's declarations (issue 14): the Glue table, Firehose's record-format conversion,
the Athena workgroup and the lifecycle in template.yaml agree with each other and with the records the
log carries (`log_record()`, `Erasure.log_record()`), under moto's Glue and Firehose."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from nextpick.domain.erasure import Erasure
from nextpick.domain.events import EventType, ReviewEvent, SearchEvent, TrackedEvent
from nextpick.domain.impressions import Impression, Surface, new_recommendation_id
from nextpick.domain.log_schema import COLUMN_NAMES, COLUMNS, PARTITION_KEYS
from nextpick_local.standin.aws_resources import find_template, load_template
from nextpick_training.parquet_log import json_lines_to_parquet, parquet_rows

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HIVE_TYPE_OF_VALUE = {
    str: "string",
    int: "int",
    float: "double",
    bool: "boolean",
    list: "array<string>",
    dict: "map<string,string>",
}


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_template(find_template())["Resources"]
    return resources


def every_record() -> list[dict[str, Any]]:
    """One record of every kind the log holds, with every optional field set."""
    context: dict[str, str | int | float | bool] = {"page": "home", "slot": 3, "ratio": 0.5, "promo": True}
    tracked = TrackedEvent(
        event_id="e1",
        user_id="u1",
        item_id="i1",
        event_type=EventType.RATE,
        rating=4,
        quantity=2,
        price=9.5,
        session_id="s1",
        context=context,
        timestamp=T0,
    )
    review = ReviewEvent(
        event_id="e2",
        user_id="u1",
        item_id="i1",
        event_type="review",
        rating=5,
        text="Fine.\nReally.",
        session_id="s1",
        context=context,
        timestamp=T0,
    )
    search = SearchEvent(
        event_id="e3",
        user_id="u1",
        event_type="search",
        query="red shoes",
        clicked_items=["i2"],
        session_id="s1",
        context=context,
        timestamp=T0,
    ).resolved(["i1", "i2"])
    tombstone = json.loads(Erasure("u1", T0, "req-1").log_record())
    impression = Impression(
        recommendation_id=new_recommendation_id(),
        surface=Surface.SIMILAR,
        user_id="u1",
        model_version="v1",
        variant="control",
        items=["i1", "i2"],
        served_at=T0,
        shadow=True,
        item_id="i3",
        context={"page": "pdp"},
    ).log_record()
    return [e.log_record(T0) for e in (tracked, review, search)] + [tombstone, impression]


def test_the_columns_are_exactly_the_fields_the_records_carry_with_their_types() -> None:
    records = every_record()
    carried = {key for record in records for key in record}
    assert carried == set(COLUMN_NAMES)
    types = dict(COLUMNS)
    for record in records:
        for key, value in record.items():
            if value is not None:
                assert types[key] == HIVE_TYPE_OF_VALUE[type(value)], key


def test_the_glue_table_declares_the_schema_columns_in_order(resources: dict[str, Any]) -> None:
    table = resources["EventLogTable"]["Properties"]["TableInput"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert columns == list(COLUMNS)
    assert [(k["Name"], k["Type"]) for k in table["PartitionKeys"]] == [(k, "string") for k in PARTITION_KEYS]
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert table["Parameters"]["projection.enabled"] == "true"
    assert {table["Parameters"][f"projection.{k}.digits"] for k in ("month", "day")} == {"2"}


def test_firehose_converts_to_that_table_where_the_table_reads(resources: dict[str, Any]) -> None:
    destination = resources["EventLogStream"]["Properties"]["ExtendedS3DestinationConfiguration"]
    conversion = destination["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert "OpenXJsonSerDe" in conversion["InputFormatConfiguration"]["Deserializer"]
    assert conversion["OutputFormatConfiguration"]["Serializer"]["ParquetSerDe"]["Compression"] == "SNAPPY"
    schema = conversion["SchemaConfiguration"]
    table = resources["EventLogTable"]["Properties"]
    assert schema["DatabaseName"] == {"Ref": "EventLogDatabaseName"}
    assert resources["EventLogDatabase"]["Properties"]["DatabaseInput"]["Name"] == {
        "Ref": "EventLogDatabaseName"
    }
    assert table["DatabaseName"] == {"Ref": "EventLogDatabase"}
    assert schema["TableName"] == table["TableInput"]["Name"]
    assert schema["RoleARN"] == {"Fn::GetAtt": ["EventLogDeliveryRole", "Arn"]}
    # Conversion requires an uncompressed object (Snappy is inside the Parquet) and a 64 MB+ buffer.
    assert destination["CompressionFormat"] == "UNCOMPRESSED"
    assert destination["BufferingHints"]["SizeInMBs"] >= 64
    assert destination["FileExtension"] == ".parquet"
    # Firehose's Hive partitions are the table's projected partitions, under its location.
    assert destination["Prefix"] == "events/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
    location = table["TableInput"]["StorageDescriptor"]["Location"]["Fn::Sub"]
    template = table["TableInput"]["Parameters"]["storage.location.template"]["Fn::Sub"]
    assert location == "s3://${ModelBucket}/events/"
    assert template == location + "year=${!year}/month=${!month}/day=${!day}/"
    # The delivery role may read that table's schema.
    (statement,) = [
        s
        for s in resources["EventLogDeliveryRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        if s["Sid"] == "ReadEventLogSchema"
    ]
    assert "glue:GetTable" in statement["Action"]
    assert statement["Resource"][-1]["Fn::Sub"].endswith(
        "table/${EventLogDatabaseName}/" + schema["TableName"]
    )


def test_the_retrain_queries_that_table_in_the_stacks_workgroup(resources: dict[str, Any]) -> None:
    env = resources["RetrainFunction"]["Properties"]["Environment"]["Variables"]
    table = resources["EventLogTable"]["Properties"]["TableInput"]
    work_group = resources["EventLogWorkGroup"]["Properties"]
    assert env["EVENT_LOG_ENGINE"] == "athena"
    assert env["EVENT_LOG_DATABASE"] == {"Ref": "EventLogDatabaseName"}
    assert env["EVENT_LOG_TABLE"] == table["Name"]
    assert env["EVENT_LOG_WORK_GROUP"] == work_group["Name"] == {"Fn::Sub": "${AWS::StackName}-event-log"}
    statements = resources["RetrainFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (query,) = [s for s in statements if s["Sid"] == "QueryEventLog"]
    assert query["Resource"]["Fn::Sub"].endswith(":workgroup/${AWS::StackName}-event-log")
    results = work_group["WorkGroupConfiguration"]["ResultConfiguration"]["OutputLocation"]["Fn::Sub"]
    assert results == "s3://${ModelBucket}/athena-results/"
    (write,) = [s for s in statements if s["Sid"] == "WriteQueryResults"]
    assert write["Resource"]["Fn::Sub"] == "${ModelBucket.Arn}/athena-results/*"


def test_old_partitions_are_tiered_then_expired_by_parameters(resources: dict[str, Any]) -> None:
    rules = {r["Id"]: r for r in resources["ModelBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    log = rules["expire-event-log"]
    assert log["Prefix"] == "events/"
    assert log["Transitions"] == [
        {"StorageClass": "GLACIER_IR", "TransitionInDays": {"Ref": "EventLogArchiveDays"}}
    ]
    assert log["ExpirationInDays"] == {"Ref": "EventLogRetentionDays"}
    assert rules["expire-query-results"]["Prefix"] == "athena-results/"
    parameters = load_template(find_template())["Parameters"]
    assert int(parameters["EventLogArchiveDays"]["Default"]) < int(
        parameters["EventLogRetentionDays"]["Default"]
    )
    assert int(parameters["EventLogArchiveDays"]["Default"]) > int(
        parameters["TrainingWindowDays"]["Default"]
    )


def resolved(value: Any, names: dict[str, str]) -> Any:
    """The template's table input with its references replaced (moto's CloudFormation has no Glue)."""
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"]
            for name, replacement in names.items():
                text = text.replace("${" + name + "}", replacement)
            return text.replace("${!", "${")
        return {k: resolved(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v, names) for v in value]
    return value


def test_under_moto_the_declared_table_and_stream_convert_every_record_to_its_columns(
    resources: dict[str, Any],
) -> None:
    table_input = resolved(
        resources["EventLogTable"]["Properties"]["TableInput"], {"ModelBucket": "log-bucket"}
    )
    destination = resources["EventLogStream"]["Properties"]["ExtendedS3DestinationConfiguration"]
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "nextpick_event_log"})
        glue.create_table(DatabaseName="nextpick_event_log", TableInput=table_input)
        declared = glue.get_table(DatabaseName="nextpick_event_log", Name=table_input["Name"])["Table"]
        columns = [(c["Name"], c["Type"]) for c in declared["StorageDescriptor"]["Columns"]]
        # The stream's conversion names exactly this table (the API accepts the template's settings).
        conversion = json.loads(json.dumps(destination["DataFormatConversionConfiguration"]))
        conversion["SchemaConfiguration"].update(
            DatabaseName="nextpick_event_log",
            RoleARN="arn:aws:iam::123456789012:role/delivery",
            Region="us-east-1",
            CatalogId="123456789012",
        )
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="log-bucket")
        firehose = boto3.client("firehose", region_name="us-east-1")
        firehose.create_delivery_stream(
            DeliveryStreamName="log",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/delivery",
                "BucketARN": "arn:aws:s3:::log-bucket",
                "Prefix": "events/",
                "FileExtension": destination["FileExtension"],
                "DataFormatConversionConfiguration": conversion,
            },
        )
        stored = firehose.describe_delivery_stream(DeliveryStreamName="log")["DeliveryStreamDescription"]
        (described,) = stored["Destinations"]
        schema = described["ExtendedS3DestinationDescription"]["DataFormatConversionConfiguration"][
            "SchemaConfiguration"
        ]
        assert (schema["DatabaseName"], schema["TableName"]) == (declared["DatabaseName"], declared["Name"])
    assert columns == list(COLUMNS)
    # Every record converts to a row of those columns carrying its values (context values as text).
    records = every_record()
    body = json_lines_to_parquet(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    assert body is not None
    rows = parquet_rows(body)
    assert list(rows[0]) == [name for name, _ in columns]
    for record, row in zip(records, rows, strict=True):
        expected = {**record}
        if "context" in expected:
            expected["context"] = {
                k: v if isinstance(v, str) else json.dumps(v) for k, v in record["context"].items()
            }
        assert {k: v for k, v in row.items() if v is not None} == expected
