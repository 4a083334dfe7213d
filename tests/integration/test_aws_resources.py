"""aws_resources builds, in a moto account, exactly the stateful resources template.yaml declares.

The `aws` (moto) and `stack` (create_stack("nextpick-test")) fixtures come from conftest.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from moto.server import ThreadedMotoServer

from nextpick.settings import Settings
from nextpick_local.standin.aws_resources import (
    Stack,
    TemplateError,
    create_stack,
    find_template,
    load_template,
)
from nextpick_local.standin.dispatch import KinesisDispatcher, StreamDispatcher
from nextpick_local.standin.event_sources import event_sources
from nextpick_local.standin.functions import functions_of
from nextpick_local.standin.gateway import routes_of
from nextpick_local.standin.stack import LocalStack
from nextpick_training.parquet_log import parquet_rows

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef
    from mypy_boto3_firehose.type_defs import RecordTypeDef

REGION = "us-east-1"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return properties


@pytest.mark.parametrize("logical_id", ["StateTable", "ItemsTable"])
def test_tables_match_the_template(stack: Stack, template: dict[str, Any], logical_id: str) -> None:
    declared = _properties(template, logical_id)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    table = dynamodb.describe_table(TableName=stack.refs[logical_id])["Table"]

    assert table["KeySchema"] == declared["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(declared["AttributeDefinitions"], key=str)
    assert table["BillingModeSummary"]["BillingMode"] == declared["BillingMode"]
    if "StreamSpecification" in declared:
        assert table["StreamSpecification"] == {
            "StreamEnabled": True,
            "StreamViewType": declared["StreamSpecification"]["StreamViewType"],
        }
        assert stack.stream_arns[logical_id] == table["LatestStreamArn"]
    else:
        assert "StreamSpecification" not in table
    backups = dynamodb.describe_continuous_backups(TableName=stack.refs[logical_id])
    recovery = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert recovery["PointInTimeRecoveryStatus"] == "ENABLED"


def test_state_table_streams_new_images(stack: Stack) -> None:
    """The log shipper reads the outbox from NEW_IMAGE; without it, accepted events never reach the log."""
    table = boto3.client("dynamodb", region_name=REGION).describe_table(TableName=stack.state_table)["Table"]
    assert table["StreamSpecification"]["StreamViewType"] in {"NEW_IMAGE", "NEW_AND_OLD_IMAGES"}


def test_bucket_is_versioned_encrypted_and_private(stack: Stack) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.get_bucket_versioning(Bucket=stack.model_bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=stack.model_bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=stack.model_bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())


def test_queues_are_encrypted(stack: Stack) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    for url in (stack.bus_dead_letter_queue_url, stack.event_log_failure_queue_url):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["SqsManagedSseEnabled"] == "true"


def test_every_log_group_is_encrypted_with_the_stacks_rotated_key(
    stack: Stack, template: dict[str, Any]
) -> None:
    declared = {
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Logs::LogGroup"
    }
    groups = boto3.client("logs", region_name=REGION).describe_log_groups(
        logGroupNamePrefix=f"/nextpick/{stack.name}/"
    )
    keys = {group["logGroupName"]: group.get("kmsKeyId") for group in groups["logGroups"]}
    assert {stack.refs[logical_id] for logical_id in declared} == set(keys)
    assert set(keys.values()) == {stack.arns["LogsKey"]}
    kms = boto3.client("kms", region_name=REGION)
    assert kms.get_key_rotation_status(KeyId=stack.arns["LogsKey"])["KeyRotationEnabled"]


def test_bus_rule_has_the_declared_pattern(stack: Stack, template: dict[str, Any]) -> None:
    declared = _properties(template, "BusEventFunction")["Events"]["ShopBus"]["Properties"]["Pattern"]
    rule_name, bus_name = stack.rules["BusEventFunction.ShopBus"]
    assert bus_name == stack.event_bus
    rule = boto3.client("events", region_name=REGION).describe_rule(Name=rule_name, EventBusName=bus_name)
    assert json.loads(rule["EventPattern"]) == declared


def test_schedule_rule_has_the_default_schedule(stack: Stack) -> None:
    rule_name, bus_name = stack.rules["RetrainStateMachine.Schedule"]
    rule = boto3.client("events", region_name=REGION).describe_rule(Name=rule_name, EventBusName=bus_name)
    assert rule["ScheduleExpression"] == stack.parameters["RetrainSchedule"] == "rate(1 day)"


def _entry(
    stack: Stack, source: str, detail_type: str, detail: dict[str, Any]
) -> PutEventsRequestEntryTypeDef:
    return {
        "Source": source,
        "DetailType": detail_type,
        "Detail": json.dumps(detail),
        "EventBusName": stack.event_bus,
    }


def test_bus_rule_delivers_shop_events_only(stack: Stack) -> None:
    events, sqs = boto3.client("events", region_name=REGION), boto3.client("sqs", region_name=REGION)
    # The function is not deployed here: a test queue stands in as the rule's target.
    probe_url = sqs.create_queue(QueueName="bus-probe")["QueueUrl"]
    probe_arn = sqs.get_queue_attributes(QueueUrl=probe_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule_name, bus_name = stack.rules["BusEventFunction.ShopBus"]
    events.put_targets(Rule=rule_name, EventBusName=bus_name, Targets=[{"Id": "probe", "Arn": probe_arn}])

    tracked = {"event_id": "evt-1", "user_id": "u-1", "item_id": "i-1", "event_type": "view"}
    response = events.put_events(
        Entries=[
            _entry(stack, "nextpick.shop", "ShopperEvent", tracked),
            _entry(stack, "nextpick.shop", "CatalogItem", {"item_id": "i-1"}),
            _entry(stack, "someone.else", "ShopperEvent", tracked),
            _entry(stack, "nextpick.shop", "ModelPublished", {}),
        ]
    )
    assert response["FailedEntryCount"] == 0

    messages = sqs.receive_message(QueueUrl=probe_url, MaxNumberOfMessages=10)["Messages"]
    delivered = [json.loads(message["Body"]) for message in messages]
    assert sorted(event["detail-type"] for event in delivered) == ["CatalogItem", "ShopperEvent"]
    assert {event["source"] for event in delivered} == {"nextpick.shop"}
    shopper = next(event for event in delivered if event["detail-type"] == "ShopperEvent")
    assert shopper["detail"] == tracked


def test_firehose_lands_batches_under_events(stack: Stack) -> None:
    firehose, s3 = boto3.client("firehose", region_name=REGION), boto3.client("s3", region_name=REGION)
    records: list[RecordTypeDef] = [
        {"Data": json.dumps({"event_id": f"evt-{n}"}).encode() + b"\n"} for n in range(3)
    ]
    # One Firehose record per log record, converted to Parquet rows as the template says (issue 14).
    response = firehose.put_record_batch(DeliveryStreamName=stack.event_log_stream, Records=records)
    assert response["FailedPutCount"] == 0

    objects = s3.list_objects_v2(Bucket=stack.model_bucket)["Contents"]
    assert [(obj["Key"].startswith("events/"), obj["Key"].endswith(".parquet")) for obj in objects] == [
        (True, True)
    ]
    body = s3.get_object(Bucket=stack.model_bucket, Key=objects[0]["Key"])["Body"].read()
    assert [row["event_id"] for row in parquet_rows(body)] == ["evt-0", "evt-1", "evt-2"]


def test_delivery_stream_writes_to_the_bucket_with_the_declared_prefixes(
    stack: Stack, template: dict[str, Any]
) -> None:
    declared = _properties(template, "EventLogStream")["ExtendedS3DestinationConfiguration"]
    description = boto3.client("firehose", region_name=REGION).describe_delivery_stream(
        DeliveryStreamName=stack.event_log_stream
    )["DeliveryStreamDescription"]
    destination = description["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert destination["BucketARN"] == f"arn:aws:s3:::{stack.model_bucket}"
    assert destination["Prefix"] == declared["Prefix"]
    assert destination["ErrorOutputPrefix"] == declared["ErrorOutputPrefix"]


def test_env_names_the_created_resources(stack: Stack) -> None:
    for function in ("ApiFunction", "BusEventFunction", "EventLogShipperFunction", "RetrainFunction"):
        settings = Settings.from_env(stack.env(function))
        assert settings.state_table_name == stack.state_table == "nextpick-test-StateTable"
        assert settings.items_table_name == stack.items_table == "nextpick-test-ItemsTable"
        assert settings.model_bucket_name == stack.model_bucket == "nextpick-test-modelbucket"
        assert settings.event_bus_name == stack.event_bus == "nextpick-test-bus"
        assert settings.event_log_stream_name == stack.event_log_stream == "nextpick-test-EventLogStream"
        assert settings.model_refresh_seconds == 60
        assert settings.exclude_purchased_default is True
    assert stack.env()["POWERTOOLS_SERVICE_NAME"] == "nextpick"


def test_parameters_override_defaults(aws: None) -> None:
    stack = create_stack(
        "nextpick-tuned", parameters={"ModelRefreshSeconds": 5, "ExcludePurchasedDefault": "false"}
    )
    settings = Settings.from_env(stack.env("ApiFunction"))
    assert settings.model_refresh_seconds == 5
    assert settings.exclude_purchased_default is False


def test_unknown_parameter_is_refused(aws: None) -> None:
    with pytest.raises(TemplateError, match="ModelRefreshSecs"):
        create_stack("nextpick-typo", parameters={"ModelRefreshSecs": 5})


def test_unknown_function_is_refused(stack: Stack) -> None:
    with pytest.raises(KeyError, match="ApiFunction"):
        stack.env("ApiFunc")


def test_creating_again_reuses_the_resources(stack: Stack) -> None:
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=stack.model_bucket, Key="models/current.json", Body=b"{}"
    )
    assert create_stack("nextpick-test") == stack
    assert boto3.client("s3", region_name=REGION).get_object(
        Bucket=stack.model_bucket, Key="models/current.json"
    )


def test_stacks_do_not_share_resources(stack: Stack) -> None:
    other = create_stack("nextpick-other")
    assert not set(other.refs.values()) & set(stack.refs.values())


def test_moto_server_through_endpoint_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local stack's way: a moto server reached over HTTP, clients from an injected session."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION)
        stack = create_stack("nextpick-local", session=session, endpoint_url=endpoint)
        assert stack.bus_dead_letter_queue_url.startswith(endpoint)
        dynamodb = session.client("dynamodb", endpoint_url=endpoint)
        assert stack.state_table in dynamodb.list_tables()["TableNames"]
        assert stack.stream_arns["StateTable"].startswith("arn:aws:dynamodb:")
    finally:
        server.stop()


# ------------------------------------------------------------------------ templates that grow


def _grown_template(tmp_path: Path) -> Path:
    """template.yaml plus what later changes will add: a second image function on the items table's
    stream, alarms (one on a queue, one on a function), a dashboard, an SNS topic, and gradual
    deployment of the API function (AutoPublishAlias + DeploymentPreference)."""
    template = load_template()
    resources = template["Resources"]
    resources["ItemsTable"]["Properties"]["StreamSpecification"] = {"StreamViewType": "NEW_IMAGE"}
    resources["ApiFunction"]["Properties"]["AutoPublishAlias"] = "live"
    resources["ApiFunction"]["Properties"]["DeploymentPreference"] = {
        "Type": "Canary10Percent5Minutes",
        "Alarms": [{"Ref": "ApiErrorsAlarm"}],
    }
    resources["CatalogRefreshFunction"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "PackageType": "Image",
            "Timeout": 120,
            "ImageConfig": {"Command": ["nextpick_training.catalog_refresh.lambda_handler"]},
            # Every function has its own written-out role (template.yaml, "execution roles").
            "Role": {"Fn::GetAtt": ["CatalogRefreshFunctionRole", "Arn"]},
            "Events": {
                "ItemsStream": {
                    "Type": "DynamoDB",
                    "Properties": {
                        "Stream": {"Fn::GetAtt": ["ItemsTable", "StreamArn"]},
                        "StartingPosition": "LATEST",
                        "BatchSize": 10,
                    },
                }
            },
        },
        "Metadata": resources["RetrainFunction"]["Metadata"],
    }
    resources["AlarmTopic"] = {"Type": "AWS::SNS::Topic"}
    resources["DeadLetterAlarm"] = {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [
                {"Name": "QueueName", "Value": {"Fn::GetAtt": ["BusDeadLetterQueue", "QueueName"]}}
            ],
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "AlarmActions": [{"Ref": "AlarmTopic"}],
        },
    }
    resources["ApiErrorsAlarm"] = {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "Namespace": "AWS/Lambda",
            "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "ApiFunction"}}],
            "Statistic": "Sum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
    }
    resources["Dashboard"] = {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardBody": {
                "Fn::Sub": '{"widgets": [{"type": "text", "properties": {"markdown": "${AWS::StackName}"}}]}'
            }
        },
    }
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template))
    return path


def test_a_grown_template_keeps_working_and_says_what_it_skipped(aws: None, tmp_path: Path) -> None:
    stack = create_stack("nextpick-grown", template_path=_grown_template(tmp_path))

    notes = "\n".join(stack.notes)
    # Unknown to moto, or referring to what the stand-in emulates: skipped, each with a reason.
    assert "ApiErrorsAlarm (AWS::CloudWatch::Alarm) not created" in notes
    assert "ServerlessDeploymentApplication (AWS::CodeDeploy::Application) not created" in notes
    # What moto covers is created from the template.
    topics = boto3.client("sns", region_name=REGION).list_topics()["Topics"]
    assert [t["TopicArn"] for t in topics] == [stack.refs["AlarmTopic"]]  # !Ref of a topic: its ARN
    assert boto3.client("cloudwatch", region_name=REGION).list_dashboards()["DashboardEntries"]
    # Functions are discovered generically, with the translator's Globals merged in.
    functions = functions_of(stack.resources, find_template().parent)
    refresh = functions["CatalogRefreshFunction"]
    assert refresh.image and refresh.timeout == 120 and refresh.memory == 1024
    assert refresh.handler == "nextpick_training.catalog_refresh.lambda_handler"
    assert stack.env("CatalogRefreshFunction")["ITEMS_TABLE_NAME"] == stack.items_table
    # The API still reaches the function behind its alias.
    routes = routes_of(stack.resources)
    api_events = load_template()["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    assert {r.function for r in routes} == {"ApiFunction"}
    assert len(routes) == sum(1 for event in api_events if event["Type"] == "Api")


def test_a_grown_templates_stream_trigger_gets_a_dispatcher(aws: None, tmp_path: Path) -> None:
    stack = create_stack("nextpick-grown", template_path=_grown_template(tmp_path))
    local = LocalStack(cast(Any, None), cast(Any, None), stack, stack.env())

    sources = event_sources(local, lambda function, event: None, 0, lambda machine, event: None)

    streams = [w for w in sources.workers if isinstance(w, StreamDispatcher)]
    assert sorted(w.function for w in streams) == [
        "CatalogArtifactFunction",
        "CatalogRefreshFunction",
        "EventLogShipperFunction",
        "StreamEventFunction",
    ]
    kinesis = next(w for w in streams if w.function == "StreamEventFunction")
    assert isinstance(kinesis, KinesisDispatcher) and kinesis.stream_arn == stack.arns["EventStream"]
    items_stream = next(w for w in streams if w.function == "CatalogRefreshFunction")
    assert items_stream.stream_arn == stack.stream_arns["ItemsTable"]
    assert set(sources.schedulers) == {
        "RetrainStateMachine",  # the retrain's schedule starts its state machine (issue 14)
        "EventLogCompactionFunction",
        "OnlineReportFunction",
        "CatalogArtifactFunction",  # the daily reconciliation (docs/catalog-artifact.md)
    }
    # The retrain every `retrain_every` (0: on demand), any other schedule at its own rate.
    assert sources.schedulers["RetrainStateMachine"]._every == 0
    assert sources.schedulers["EventLogCompactionFunction"]._every == 6 * 3600
    assert sources.schedulers["OnlineReportFunction"]._every == 24 * 3600
    assert sources.schedulers["CatalogArtifactFunction"]._every == 24 * 3600
    assert sources.unsupported == []
